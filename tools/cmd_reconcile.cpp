// `narae reconcile` (three-way reconciliation of a day: switch log, ledger,
// external file) and `narae bench reconcile` (builds a day of n payments with
// planted breaks and times the reconciliation). The work is in
// tools/reconcile.cpp; this file parses arguments, opens the ledger as a
// read-only follower (a running switch is never stopped), prints a table or
// JSON and sets the exit code: 0 no break, 1 breaks, 2 usage/input/I/O error.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "ledger/ledger.hpp"
#include "switch/authorizer.hpp"
#include "switch/settlement.hpp"
#include "tools/cli.hpp"
#include "tools/progress.hpp"
#include "tools/reconcile.hpp"
#include "tools/statement.hpp"

namespace narae::tools {
namespace {

namespace fs = std::filesystem;
using ledger::Ledger;

constexpr int kExitOk = 0;
constexpr int kExitBreaks = 1;
constexpr int kExitError = 2;
constexpr size_t kTableBreaksDefault = 50;

int Fail(const char* command, bool json, const std::string& message) {
  std::fprintf(stderr, "narae %s: %s\n", command, message.c_str());
  if (json) {
    std::printf("%s\n", nlohmann::json({{"ok", false}, {"error", message}}).dump().c_str());
  }
  return kExitError;
}

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string CurrencyText(uint16_t n) {
  std::optional<Currency> c = FindCurrency(n);
  return c ? std::string(c->alpha) : std::to_string(n);
}
std::string Amount(uint16_t currency, unsigned __int128 minor) {
  std::optional<Currency> c = FindCurrency(currency);
  return FormatMinor(minor, c ? c->exponent : 0);
}
std::string Amounts(const ReconcileTotal& t) {
  std::string s;
  for (const auto& [cur, minor] : t.minor_by_currency) {
    if (!s.empty()) s += ", ";
    s += CurrencyText(cur) + " " + Amount(cur, minor);
  }
  return s;
}

nlohmann::ordered_json TotalJson(const ReconcileTotal& t) {
  nlohmann::ordered_json amounts = nlohmann::ordered_json::object();
  for (const auto& [cur, minor] : t.minor_by_currency) {
    amounts[CurrencyText(cur)] = {{"minor", UInt128ToString(minor)},
                                  {"amount", Amount(cur, minor)}};
  }
  return {{"count", t.count}, {"amounts", amounts}};
}

nlohmann::ordered_json OptMinor(const std::optional<uint64_t>& v) {
  return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json();
}

void PrintJson(const ReconcileReport& r) {
  nlohmann::ordered_json j;
  j["ok"] = true;
  j["balanced"] = r.ok();
  j["day"] = FormatDate(uint64_t{r.day} * kNsPerDay);
  j["switch_records_scanned"] = r.switch_records_scanned;
  j["switch_payments"] = r.switch_payments;
  j["ledger_payments"] = r.ledger_payments;
  j["file_rows"] = r.file_rows;
  j["file_rows_other_days"] = r.file_rows_other_days;
  j["matched"] = TotalJson(r.matched);
  j["released"] = TotalJson(r.released);
  j["unmatched"] = TotalJson(r.unmatched);
  j["breaks_total"] = r.breaks.size();
  nlohmann::ordered_json classes = nlohmann::ordered_json::object();
  for (size_t c = 0; c < kBreakClassCount; ++c) {
    classes[BreakClassName(static_cast<BreakClass>(c))] = TotalJson(r.by_class[c]);
  }
  j["by_class"] = classes;
  nlohmann::ordered_json breaks = nlohmann::ordered_json::array();
  for (const ReconcileBreak& b : r.breaks) {
    breaks.push_back({{"class", BreakClassName(b.cls)},
                      {"rrn", b.rrn},
                      {"payment_id", b.payment_id.IsZero() ? "" : b.payment_id.ToHex()},
                      {"order_ref", b.order_ref},
                      {"file_line", b.file_line},
                      {"currency", CurrencyText(b.currency)},
                      {"switch_minor", OptMinor(b.switch_minor)},
                      {"ledger_minor", OptMinor(b.ledger_minor)},
                      {"file_minor", OptMinor(b.file_minor)},
                      {"detail", b.detail}});
  }
  j["breaks"] = breaks;
  std::printf("%s\n", j.dump().c_str());
}

std::string OptAmount(uint16_t currency, const std::optional<uint64_t>& v) {
  return v ? Amount(currency, *v) : "-";
}

void PrintTable(const ReconcileReport& r, size_t breaks_max) {
  std::printf("reconcile %s: %s\n", FormatDate(uint64_t{r.day} * kNsPerDay).c_str(),
              r.ok() ? "OK, no breaks" : "BREAKS");
  std::printf("  switch log  %llu payments of the day (%llu records read)\n",
              static_cast<unsigned long long>(r.switch_payments),
              static_cast<unsigned long long>(r.switch_records_scanned));
  std::printf("  ledger      %llu payment transfers booked during the day\n",
              static_cast<unsigned long long>(r.ledger_payments));
  std::printf("  file        %llu rows of the day (%llu rows of other days ignored)\n",
              static_cast<unsigned long long>(r.file_rows),
              static_cast<unsigned long long>(r.file_rows_other_days));
  std::printf("\n  %-22s %10s  %s\n", "", "count", "amount");
  auto line = [](const char* name, const ReconcileTotal& t) {
    std::printf("  %-22s %10llu  %s\n", name, static_cast<unsigned long long>(t.count),
                Amounts(t).c_str());
  };
  line("matched", r.matched);
  line("released", r.released);
  line("unmatched", r.unmatched);
  std::printf("\n");
  for (size_t c = 0; c < kBreakClassCount; ++c) {
    line(BreakClassName(static_cast<BreakClass>(c)), r.by_class[c]);
  }
  if (r.breaks.empty()) return;
  const size_t shown = std::min(breaks_max, r.breaks.size());
  std::printf("\nbreaks (%zu of %zu%s):\n", shown, r.breaks.size(),
              shown < r.breaks.size() ? "; --all or --json for every one" : "");
  std::printf("  %-22s %-12s %-32s %-16s %6s %4s %12s %12s %12s  %s\n", "class", "rrn",
              "payment_id", "order_ref", "line", "cur", "switch", "ledger", "file", "detail");
  for (size_t i = 0; i < shown; ++i) {
    const ReconcileBreak& b = r.breaks[i];
    std::printf("  %-22s %-12s %-32s %-16s %6s %4s %12s %12s %12s  %s\n", BreakClassName(b.cls),
                b.rrn.empty() ? "-" : b.rrn.c_str(),
                b.payment_id.IsZero() ? "-" : b.payment_id.ToHex().c_str(),
                b.order_ref.empty() ? "-" : b.order_ref.c_str(),
                b.file_line ? std::to_string(b.file_line).c_str() : "-",
                CurrencyText(b.currency).c_str(), OptAmount(b.currency, b.switch_minor).c_str(),
                OptAmount(b.currency, b.ledger_minor).c_str(),
                OptAmount(b.currency, b.file_minor).c_str(), b.detail.c_str());
  }
}

// Progress on a terminal: one line per phase.
class PhaseProgress {
 public:
  explicit PhaseProgress(bool quiet) : quiet_(quiet) {}
  void operator()(const char* phase, uint64_t done) {
    if (phase != phase_) {
      phase_ = phase;
      bar_ = std::make_unique<Progress>(phase, 0, quiet_);
    }
    bar_->Update(done);
  }
  void Finish() { bar_.reset(); }

 private:
  bool quiet_;
  const char* phase_ = nullptr;
  std::unique_ptr<Progress> bar_;
};

Result<uint32_t> ParseDayArg(const std::string& text) {
  if (text.size() != 10)
    return Status::InvalidArgument("--day must be YYYY-MM-DD, not '" + text + "'");
  Result<uint64_t> ns = ParseDateBound(text, false);
  if (!ns.ok()) return Status::InvalidArgument("--day: no such day '" + text + "'");
  return static_cast<uint32_t>(*ns / kNsPerDay);
}

Result<ReconcileFileFormat> FormatFor(const std::string& format, const std::string& file) {
  if (!format.empty()) return ParseReconcileFileFormat(format);
  return fs::path(file).extension() == ".json" ? ReconcileFileFormat::kJson
                                               : ReconcileFileFormat::kCsv;
}

// ---- reconcile -----------------------------------------------------------------

struct ReconcileArgs {
  std::string data, day, file, format;
  bool json = false;
  bool all = false;
};

int RunReconcile(const ReconcileArgs& a) {
  const char* cmd = "reconcile";
  Result<uint32_t> day = ParseDayArg(a.day);
  if (!day.ok()) return Fail(cmd, a.json, day.status().message());
  Result<ReconcileFileFormat> format = FormatFor(a.format, a.file);
  if (!format.ok()) return Fail(cmd, a.json, format.status().message());
  const uint64_t now_ns = NowNs();
  if (uint64_t{*day} * kNsPerDay > now_ns) {
    return Fail(cmd, a.json, "day " + a.day + " has not begun");
  }
  std::error_code ec;
  if (!fs::is_regular_file(fs::path(a.data) / "CURRENT", ec)) {
    return Fail(cmd, a.json, "no ledger at " + a.data);
  }
  // The file is parsed while the ledger opens (a follower replays the
  // primary's recent log: seconds on a busy bank).
  std::optional<Result<std::vector<FileRow>>> rows;
  std::thread parse([&] { rows = ReadReconcileFile(a.file, *format); });
  ledger::Options o;
  o.path = a.data;
  o.read_only = true;  // a follower: works while narae-switch runs
  Result<std::unique_ptr<Ledger>> ledger = Ledger::Open(o);
  parse.join();
  if (!rows->ok()) return Fail(cmd, a.json, rows->status().message());
  if (!ledger.ok()) return Fail(cmd, a.json, ledger.status().ToString());
  PhaseProgress progress(a.json);
  Result<ReconcileReport> report =
      Reconcile(**ledger, ReconcileRequest{*day, now_ns}, **rows,
                [&](const char* phase, uint64_t done) { progress(phase, done); });
  progress.Finish();
  (void)(*ledger)->Close();
  if (!report.ok()) return Fail(cmd, a.json, report.status().ToString());
  if (report->switch_payments == 0 && report->ledger_payments == 0 && !a.json) {
    std::fprintf(stderr, "narae reconcile: note: no payments in the switch log or ledger on %s\n",
                 a.day.c_str());
  }
  if (a.json) {
    PrintJson(*report);
  } else {
    PrintTable(*report, a.all ? report->breaks.size() : kTableBreaksDefault);
  }
  return report->ok() ? kExitOk : kExitBreaks;
}

// ---- bench reconcile ---------------------------------------------------------------

struct BenchArgs {
  std::string data;
  uint64_t rows = 1'000'000;
  uint64_t break_every = 1000;  // one planted break per this many payments (0 = none)
  bool keep = false;
  bool json = false;
};

constexpr uint32_t kBenchCurrency = 408;  // KPW
constexpr uint64_t kBenchCustomers = 1000;
constexpr uint64_t kBenchBankId = 9408, kBenchMerchantId = 5000, kBenchCustomerBase = 10000;
constexpr uint64_t kBenchBatch = 4000;  // payments per ledger group (<= kBatchEventsMax / 2)
constexpr uint64_t kBenchRrnBase = 1'000'000'000;

// What payment i is, and which break (if any) it plants.
struct BenchPlan {
  bool hold = false;
  int planted = -1;  // a BreakClass value, or -1
};
BenchPlan PlanFor(uint64_t i, uint64_t every) {
  BenchPlan p;
  p.hold = i % 5 == 0;
  if (every != 0 && i % every == (every / 2 + 1) % every) {
    p.planted = static_cast<int>((i / every) % kBreakClassCount);
    if (p.planted == int(BreakClass::kLatePresentment) ||
        p.planted == int(BreakClass::kStaleHold)) {
      p.hold = true;
    }
  }
  return p;
}

Status BuildBenchDay(Ledger& ledger, std::atomic<uint64_t>& clock_ns, uint32_t day,
                     const BenchArgs& a, std::ofstream& csv,
                     std::array<uint64_t, kBreakClassCount>* expected) {
  using ledger::Account;
  using ledger::AccountId;
  using ledger::Transfer;
  using ledger::TransferId;
  namespace tf = ledger::transfer_flags;
  const uint64_t day_ns = uint64_t{day} * kNsPerDay;
  clock_ns = day_ns - kNsPerDay;  // accounts and funding the day before
  std::vector<Account> accounts;
  auto acc = [&](uint64_t id, uint16_t code) {
    Account x;
    x.id = AccountId::From(id);
    x.ledger = kBenchCurrency;
    x.code = code;
    accounts.push_back(x);
  };
  acc(kBenchBankId, uint16_t(ledger::AccountCode::kBankCash));
  acc(kBenchMerchantId, uint16_t(ledger::AccountCode::kMerchantClearing));
  for (uint64_t c = 0; c < kBenchCustomers; ++c) {
    acc(kBenchCustomerBase + c, uint16_t(ledger::AccountCode::kCustomerDeposit));
  }
  Result<std::vector<ledger::AccountOutcome>> made = ledger.CreateAccounts(accounts);
  if (!made.ok()) return made.status();
  const std::string date = FormatDate(day_ns);
  csv << "order_ref,rrn,payment_id,amount,currency,date\n";
  std::vector<Transfer> late_posts;
  const uint64_t step_ns = (20 * 3600 * kNsPerSecond) / std::max<uint64_t>(a.rows, 1);
  std::string line;
  for (uint64_t first = 0; first < a.rows; first += kBenchBatch) {
    const uint64_t last = std::min(a.rows, first + kBenchBatch);
    std::vector<Transfer> payments, posts;
    std::vector<std::pair<std::string, std::string>> records;
    std::string rows;
    for (uint64_t i = first; i < last; ++i) {
      const BenchPlan plan = PlanFor(i, a.break_every);
      if (plan.planted >= 0) (*expected)[static_cast<size_t>(plan.planted)]++;
      char key_text[64];
      std::snprintf(key_text, sizeof key_text, "%sBENCH%016llu",
                    std::string(switching::kRequestRecordPrefix).c_str(),
                    static_cast<unsigned long long>(i));
      const std::string key = key_text;
      const uint64_t amount = 100 + (i * 7919) % 100'000;
      Transfer t;
      t.id = switching::RequestTransferId(key, 1);
      t.debit_account_id = AccountId::From(kBenchCustomerBase + i % kBenchCustomers);
      t.credit_account_id = AccountId::From(kBenchMerchantId);
      t.amount_minor = amount;
      t.ledger = kBenchCurrency;
      t.code = plan.hold ? switching::kTransferCodeHold : switching::kTransferCodePurchase;
      if (plan.hold) {
        t.flags = tf::kPending;
        t.timeout_s = 7 * 24 * 3600;
      }
      if (plan.planted != int(BreakClass::kMissingInLedger)) payments.push_back(t);
      if (plan.hold && plan.planted != int(BreakClass::kStaleHold) &&
          plan.planted != int(BreakClass::kMissingInLedger)) {
        Transfer post;
        post.id = switching::RequestTransferId(key, 3);
        post.pending_id = t.id;
        post.amount_minor = amount;
        post.flags = tf::kPostPendingTransfer;
        (plan.planted == int(BreakClass::kLatePresentment) ? late_posts : posts).push_back(post);
      }
      const std::string rrn = RrnFromNumber(kBenchRrnBase + i);
      if (plan.planted != int(BreakClass::kMissingInSwitchLog)) {
        switching::RequestRecord r;
        r.kind = plan.hold ? switching::RequestKind::kHold : switching::RequestKind::kPurchase;
        r.amount_minor = amount;
        r.currency = kBenchCurrency;
        r.debit = t.debit_account_id;
        r.credit = t.credit_account_id;
        r.transfer = t.id;
        r.captured_minor = plan.planted == int(BreakClass::kStaleHold) ? 0 : amount;
        r.day = day;
        r.rrn = rrn;
        records.emplace_back(key, switching::EncodeRequestRecord(r));
      }
      if (plan.planted == int(BreakClass::kDeliveryShareNotMoved)) {
        // A share due at capture that never reached the logistics office.
        switching::PaymentInfo info;
        info.rrn = rrn;
        info.split.kind = switching::SplitKind::kAtCapture;
        info.split.amount_minor = std::min<uint64_t>(50, amount);
        records.emplace_back(switching::PaymentInfoKey(t.id), switching::EncodePaymentInfo(info));
      }
      if (plan.planted == int(BreakClass::kMissingInFile) ||
          plan.planted == int(BreakClass::kStaleHold)) {
        continue;
      }
      const uint64_t file_amount =
          plan.planted == int(BreakClass::kAmountMismatch) ? amount + 1 : amount;
      const char* currency = plan.planted == int(BreakClass::kCurrencyMismatch) ? "USD" : "KPW";
      line = "ORD-" + std::to_string(i) + ",";
      if (plan.planted == int(BreakClass::kMissingInSwitchLog)) {
        line += "," + t.id.ToHex();
      } else {
        line += rrn + ",";
      }
      line += "," + FormatMinor(file_amount, 2) + "," + currency + "," + date + "\n";
      rows += line;
      if (plan.planted == int(BreakClass::kDuplicate)) rows += line;
    }
    csv << rows;
    clock_ns = day_ns + first * step_ns;
    Status failed = Status::Ok();
    Status st = ledger.Execute([&](ledger::Txn& txn) {
      for (const auto& [k, v] : records) txn.PutAux(k, v);
      for (const auto* batch : {&payments, &posts}) {
        for (const ledger::TransferOutcome& o : txn.CreateTransfers(*batch)) {
          if (o.result != ledger::CreateTransferResult::kOk && failed.ok()) {
            failed = Status::Internal(std::string("bench transfer: ") + ResultName(o.result));
          }
        }
      }
    });
    if (!st.ok()) return st;
    if (!failed.ok()) return failed;
  }
  clock_ns = day_ns + kNsPerDay + 3600 * kNsPerSecond;  // presented the next day
  for (size_t i = 0; i < late_posts.size(); i += ledger::kBatchEventsMax) {
    const size_t n = std::min(ledger::kBatchEventsMax, late_posts.size() - i);
    Result<std::vector<ledger::TransferOutcome>> out =
        ledger.CreateTransfers(std::span<const Transfer>(late_posts.data() + i, n));
    if (!out.ok()) return out.status();
  }
  return Status::Ok();
}

int RunBenchReconcile(const BenchArgs& a) {
  const char* cmd = "bench reconcile";
  if (a.rows == 0 || a.rows > kReconcileRowsMax) return Fail(cmd, a.json, "--rows 1..20000000");
  std::error_code ec;
  if (fs::exists(a.data, ec)) return Fail(cmd, a.json, a.data + " exists");
  fs::create_directories(a.data, ec);
  if (ec) return Fail(cmd, a.json, "cannot create " + a.data + ": " + ec.message());
  const std::string db = (fs::path(a.data) / "db").string();
  const std::string file = (fs::path(a.data) / "day.csv").string();
  const uint64_t now_ns = NowNs();
  const uint32_t day = static_cast<uint32_t>(now_ns / kNsPerDay) - 2;
  std::array<uint64_t, kBreakClassCount> expected{};
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::atomic<uint64_t> clock_ns{0};
    ledger::Options o;
    o.path = db;
    o.clock_ns = [&clock_ns] { return clock_ns.load(); };
    Result<std::unique_ptr<Ledger>> ledger = Ledger::Open(o);
    if (!ledger.ok()) return Fail(cmd, a.json, ledger.status().ToString());
    std::ofstream csv(file, std::ios::binary);
    Status st = BuildBenchDay(**ledger, clock_ns, day, a, csv, &expected);
    csv.close();
    Status closed = (*ledger)->Close();
    if (!st.ok()) return Fail(cmd, a.json, "building the day: " + st.ToString());
    if (!closed.ok() || !csv) return Fail(cmd, a.json, "writing the day failed");
  }
  const double build_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // The measured part: what `narae reconcile` does after parsing arguments.
  // As `narae reconcile` does it: the file parsed while the ledger opens.
  const auto t1 = std::chrono::steady_clock::now();
  std::optional<Result<std::vector<FileRow>>> parsed;
  std::chrono::steady_clock::time_point parsed_at;
  std::thread parse([&] {
    parsed = ReadReconcileFile(file, ReconcileFileFormat::kCsv);
    parsed_at = std::chrono::steady_clock::now();
  });
  ledger::Options o;
  o.path = db;
  o.read_only = true;
  Result<std::unique_ptr<Ledger>> ledger = Ledger::Open(o);
  const auto opened_at = std::chrono::steady_clock::now();
  parse.join();
  if (!parsed->ok()) return Fail(cmd, a.json, parsed->status().ToString());
  if (!ledger.ok()) return Fail(cmd, a.json, ledger.status().ToString());
  const std::vector<FileRow>* rows = &**parsed;
  const auto t2 = std::chrono::steady_clock::now();
  Result<ReconcileReport> report = Reconcile(**ledger, ReconcileRequest{day, now_ns}, *rows);
  const auto t3 = std::chrono::steady_clock::now();
  (void)(*ledger)->Close();
  if (!report.ok()) return Fail(cmd, a.json, report.status().ToString());
  auto secs = [](auto d) { return std::chrono::duration<double>(d).count(); };
  bool as_planted = true;
  nlohmann::ordered_json classes = nlohmann::ordered_json::object();
  for (size_t c = 0; c < kBreakClassCount; ++c) {
    as_planted = as_planted && report->by_class[c].count == expected[c];
    classes[BreakClassName(static_cast<BreakClass>(c))] = {{"planted", expected[c]},
                                                           {"found", report->by_class[c].count}};
  }
  nlohmann::ordered_json j = {
      {"bench", "reconcile"},
      {"payments", a.rows},
      {"file_rows", rows->size()},
      {"build_s", build_s},
      {"parse_s", secs(parsed_at - t1)},
      {"open_s", secs(opened_at - t1)},
      {"reconcile_s", secs(t3 - t2)},
      {"total_s", secs(t3 - t1)},
      {"rows_per_second",
       static_cast<uint64_t>(static_cast<double>(rows->size()) / std::max(secs(t3 - t1), 1e-9))},
      {"matched", report->matched.count},
      {"breaks", report->breaks.size()},
      {"breaks_as_planted", as_planted},
      {"by_class", classes}};
  if (!a.json) {
    std::printf("reconcile bench: %llu payments, %zu file rows, one break per %llu payments\n",
                static_cast<unsigned long long>(a.rows), rows->size(),
                static_cast<unsigned long long>(a.break_every));
    std::printf("  build %.2f s (not timed below)\n", build_s);
    std::printf(
        "  parse file %.2f s while opening the ledger %.2f s; reconcile %.2f s; total %.2f s\n",
        secs(parsed_at - t1), secs(opened_at - t1), secs(t3 - t2), secs(t3 - t1));
    std::printf("  matched %llu, breaks %zu (%s)\n",
                static_cast<unsigned long long>(report->matched.count), report->breaks.size(),
                as_planted ? "exactly as planted" : "NOT as planted");
  }
  std::printf("%s\n", j.dump().c_str());
  if (!a.keep) fs::remove_all(a.data, ec);
  return as_planted ? kExitOk : kExitBreaks;
}

}  // namespace

void RegisterReconcileCommands(CLI::App& app) {
  static ReconcileArgs args;  // NOLINT: lives for the process
  auto* r = app.add_subcommand(
      "reconcile",
      "Three-way reconciliation of a day: switch authorization log, ledger, external file");
  r->add_option("--data", args.data, "Data folder (may be in use by narae-switch)")->required();
  r->add_option("--day", args.day, "The UTC day, YYYY-MM-DD")->required();
  r->add_option("--file", args.file, "The external file (orders export, settlement report)")
      ->required();
  r->add_option("--format", args.format, "csv or json (default: from the file name, else csv)");
  r->add_flag("--json", args.json, "JSON output (every break)");
  r->add_flag("--all", args.all, "List every break in the table (default: the first 50)");
  r->callback([] { SetExitCode(RunReconcile(args)); });

  static BenchArgs bench_args;  // NOLINT
  CLI::App* bench = app.get_subcommand("bench");
  auto* b = bench->add_subcommand(
      "reconcile", "Builds a day of payments with planted breaks and times `narae reconcile`");
  b->add_option("--data", bench_args.data, "Work folder (created; removed unless --keep)")
      ->required();
  b->add_option("--rows", bench_args.rows, "Payments (and file rows)")->capture_default_str();
  b->add_option("--break-every", bench_args.break_every,
                "One planted break per this many payments, cycling through the classes "
                "(0 = none)")
      ->capture_default_str();
  b->add_flag("--keep", bench_args.keep, "Keep the ledger and day.csv");
  b->add_flag("--json", bench_args.json, "Print only the JSON line");
  b->callback([] { SetExitCode(RunBenchReconcile(bench_args)); });
}

}  // namespace narae::tools
