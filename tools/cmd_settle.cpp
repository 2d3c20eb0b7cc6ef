// Settlement commands for bank staff: `narae day close|show|list`, `narae
// fees set|show`, `narae bank add|list`, `narae settle` (+ `interbank`,
// `report`) and `narae bench settle`. The work is in switch/settlement.cpp;
// this file parses arguments, opens the ledger (DIR/ledger; `day close`,
// `fees set`, `bank add`, `settle` and `settle interbank` go through the
// running switch's admin interface when there is one
// (tools/admin_client.hpp), readers follow it read-only), prints
// tables for people or one JSON object with --json, and sets the exit code:
// 0 success, 1 refused (closed twice, open day, a merchant's batch failed),
// 2 usage, input or I/O error. See docs/settlement.md.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/bank.hpp"
#include "switch/settlement.hpp"
#include "tools/admin_client.hpp"
#include "tools/cli.hpp"
#include "tools/statement.hpp"

namespace narae::tools {
namespace {

using json = nlohmann::json;
namespace sw = narae::switching;

struct Common {
  std::string data;
  std::string master_key_file;  // default DIR/master.key (report signing)
  bool json = false;
};

void AddCommon(CLI::App* cmd, Common* c) {
  cmd->add_option("--data", c->data, "data folder (ledger in DIR/ledger, keys in DIR/keys)")
      ->required();
  cmd->add_flag("--json", c->json, "print one JSON object");
}

void Fail(const Common& c, const Status& s) { ReportFailure(c.json, s); }

void Print(const Common& c, json j, const std::string& text) {
  if (c.json) {
    j["ok"] = true;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s", text.c_str());
  }
}

Result<std::unique_ptr<ledger::Ledger>> OpenLedger(const std::string& data, bool read_only) {
  ledger::Options o;
  o.path = data + "/ledger";
  o.read_only = read_only;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(o.path + "/CURRENT", ec)) {
    return Status::IOError("no ledger at " + o.path);
  }
  auto l = ledger::Ledger::Open(o);
  if (!l.ok()) {
    std::string m = l.status().message();
    std::transform(m.begin(), m.end(), m.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    if (m.find("lock") != std::string::npos) {
      return Status::IOError("the ledger at " + o.path +
                             " is in use (is narae-switch running? stop it first)");
    }
    return Status::IOError(l.status().ToString());
  }
  return l;
}

std::string Money(uint64_t v) { return std::to_string(v); }

// A write operation (switch/admin_ops.hpp) through the running switch, or
// on the ledger opened directly.
Result<json> RunWrite(const Common& c, std::string_view op, const json& args) {
  const std::string data = c.data;
  return RunWriteOp(data, op, args, [data](bool) -> Result<DirectStore> {
    auto l = OpenLedger(data, false);
    if (!l.ok()) return l.status();
    DirectStore store;
    store.ledger = std::move(*l);
    return store;
  });
}

json DayJson(const sw::DayRecord& d) {
  return json{{"day", d.day},
              {"date", d.date},
              {"open_ns", d.open_ns},
              {"close_ns", d.close_ns},
              {"close", FormatDateTime(d.close_ns)},
              {"closed_at_ns", d.closed_at_ns}};
}
std::string DayText(const sw::DayRecord& d) {
  return "day " + std::to_string(d.day) + "  " + d.date + "  (" +
         (d.open_ns == 0 ? std::string("start") : FormatDateTime(d.open_ns)) + ", " +
         FormatDateTime(d.close_ns) + "]\n";
}

// One merchant's line of `narae settle`, from its JSON (sw::MerchantSettlementJson).
std::string SettlementText(const json& m, const char* state) {
  const auto u = [&m](const char* key) { return m.value(key, uint64_t{0}); };
  char buf[256];
  std::snprintf(
      buf, sizeof buf, "%-15s %03u %-8s captures %s (%u) refunds %s (%u) fees %s delivery %s ",
      m.value("merchant", std::string()).c_str(), static_cast<unsigned>(u("currency")), state,
      Money(u("captures_minor")).c_str(), static_cast<unsigned>(u("captures_count")),
      Money(u("refunds_minor")).c_str(), static_cast<unsigned>(u("refunds_count")),
      Money(u("fees_minor")).c_str(), Money(u("delivery_minor")).c_str());
  std::string out = buf;
  out += u("recovery_minor") > 0 ? "recovered " + Money(u("recovery_minor"))
                                 : "payout " + Money(u("payout_minor"));
  return out + "\n";
}

// ---- day -----------------------------------------------------------------------

void RegisterDay(CLI::App& app) {
  CLI::App* day = app.add_subcommand("day", "business days (cut-over)");
  day->require_subcommand(1);
  struct Opts {
    Common c;
    std::string at, day;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* close = day->add_subcommand("close", "close the open business day (now or --at)");
  AddCommon(close, &o->c);
  close->add_option("--at", o->at, "cut-over instant (2026-11-28T18:00:00Z or unix ns)");
  close->callback([o] {
    std::optional<uint64_t> at;
    if (!o->at.empty()) {
      Result<uint64_t> t = ParseInstant(o->at);
      if (!t.ok()) return Fail(o->c, t.status());
      at = *t;
    }
    json args = json::object();
    if (at) args["at_ns"] = *at;
    Result<json> r = RunWrite(o->c, "day.close", args);
    if (!r.ok()) return Fail(o->c, r.status());
    Result<sw::DayRecord> d = sw::DecodeDayRecord(r->dump());
    if (!d.ok()) return Fail(o->c, d.status());
    Print(o->c, DayJson(*d), "closed " + DayText(*d));
  });
  CLI::App* show = day->add_subcommand("show", "show a closed business day");
  AddCommon(show, &o->c);
  show->add_option("--day", o->day, "day number or date (YYYY-MM-DD)")->required();
  show->callback([o] {
    auto l = OpenLedger(o->c.data, true);
    if (!l.ok()) return Fail(o->c, l.status());
    Result<uint32_t> n = sw::ResolveDay(**l, o->day);
    if (!n.ok()) return Fail(o->c, n.status());
    Result<sw::DayRecord> d = sw::GetDay(**l, *n);
    if (!d.ok()) return Fail(o->c, d.status());
    Print(o->c, DayJson(*d), DayText(*d));
  });
  CLI::App* list = day->add_subcommand("list", "list the closed business days");
  AddCommon(list, &o->c);
  list->callback([o] {
    auto l = OpenLedger(o->c.data, true);
    if (!l.ok()) return Fail(o->c, l.status());
    Result<std::vector<sw::DayRecord>> days = sw::ListDays(**l);
    if (!days.ok()) return Fail(o->c, days.status());
    json arr = json::array();
    std::string text;
    for (const sw::DayRecord& d : *days) {
      arr.push_back(DayJson(d));
      text += DayText(d);
    }
    if (days->empty()) text = "no business day closed yet\n";
    Print(o->c, json{{"days", arr}}, text);
  });
}

// ---- fees ----------------------------------------------------------------------

Result<std::vector<sw::DeliveryBand>> ParseBands(const std::string& text) {
  std::vector<sw::DeliveryBand> out;
  size_t pos = 0;
  while (pos < text.size() && out.size() <= sw::kFeeBandsMax) {
    size_t end = text.find(',', pos);
    std::string item = text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    size_t colon = item.find(':');
    if (colon == std::string::npos) return Status::InvalidArgument("band: UP_TO_M:SHARE_MINOR");
    try {
      size_t a = 0, b = 0;
      uint64_t up = std::stoull(item.substr(0, colon), &a);
      uint64_t share = std::stoull(item.substr(colon + 1), &b);
      if (a != colon || b != item.size() - colon - 1 || up > sw::kDistanceMetersMax) {
        return Status::InvalidArgument("band: UP_TO_M:SHARE_MINOR with digits only");
      }
      out.push_back({static_cast<uint32_t>(up), share});
    } catch (const std::exception&) {
      return Status::InvalidArgument("band: UP_TO_M:SHARE_MINOR with digits only");
    }
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return out;
}

json FeeJson(const sw::FeeSchedule& f) { return json::parse(sw::EncodeFeeSchedule(f)); }
std::string FeeText(const sw::FeeSchedule& f) {
  std::string bands;
  for (const sw::DeliveryBand& b : f.delivery_bands) {
    if (!bands.empty()) bands += ",";
    bands += (b.up_to_m == 0 ? std::string("rest") : std::to_string(b.up_to_m) + "m") + ":" +
             std::to_string(b.share_minor);
  }
  char buf[320];
  std::snprintf(buf, sizeof buf, "%-15s %03u v%-3u from %s  %u bps + %s  min %s max %s  bands %s\n",
                f.merchant_id.c_str(), f.currency, f.version,
                FormatDateTime(f.effective_from_ns).c_str(), f.bps, Money(f.fixed_minor).c_str(),
                Money(f.min_minor).c_str(), f.max_minor == 0 ? "none" : Money(f.max_minor).c_str(),
                bands.empty() ? "none" : bands.c_str());
  return buf;
}

void RegisterFees(CLI::App& app) {
  CLI::App* fees = app.add_subcommand("fees", "merchant fee schedules (versioned)");
  fees->require_subcommand(1);
  struct Opts {
    Common c;
    sw::FeeSchedule f;
    std::string from, bands = "10000:0,50000:0,0:0";
  };
  auto o = std::make_shared<Opts>();
  o->f.merchant_id = "*";
  o->f.currency = 408;
  CLI::App* set = fees->add_subcommand("set", "add a new version of a fee schedule");
  AddCommon(set, &o->c);
  set->add_option("--merchant", o->f.merchant_id, "merchant id, or * for the default");
  set->add_option("--currency", o->f.currency, "ISO 4217 numeric (default 408)");
  set->add_option("--bps", o->f.bps, "percentage in basis points (0..10000)");
  set->add_option("--fixed", o->f.fixed_minor, "fixed fee per capture, minor units");
  set->add_option("--min", o->f.min_minor, "minimum fee per capture, minor units");
  set->add_option("--max", o->f.max_minor, "maximum fee per capture (0: none)");
  set->add_option("--bands", o->bands,
                  "delivery bands UP_TO_M:SHARE_MINOR,... (0 = no upper bound), "
                  "default 10000:0,50000:0,0:0");
  set->add_option("--from", o->from, "effective from (instant; default now)");
  set->callback([o] {
    sw::FeeSchedule f = o->f;
    Result<std::vector<sw::DeliveryBand>> bands = ParseBands(o->bands);
    if (!bands.ok()) return Fail(o->c, bands.status());
    f.delivery_bands = *bands;
    if (!o->from.empty()) {
      Result<uint64_t> t = ParseInstant(o->from);
      if (!t.ok()) return Fail(o->c, t.status());
      f.effective_from_ns = *t;
    }
    json band_args = json::array();
    for (const sw::DeliveryBand& b : f.delivery_bands) {
      band_args.push_back({{"up_to_m", b.up_to_m}, {"share_minor", b.share_minor}});
    }
    json args{{"merchant", f.merchant_id},
              {"currency", f.currency},
              {"bps", f.bps},
              {"fixed_minor", f.fixed_minor},
              {"min_minor", f.min_minor},
              {"max_minor", f.max_minor},
              {"bands", band_args},
              {"effective_from_ns", f.effective_from_ns}};
    Result<json> stored = RunWrite(o->c, "fees.set", args);
    if (!stored.ok()) return Fail(o->c, stored.status());
    Result<sw::FeeSchedule> r = sw::DecodeFeeSchedule(stored->dump());
    if (!r.ok()) return Fail(o->c, r.status());
    Print(o->c, FeeJson(*r), "new version: " + FeeText(*r));
  });
  CLI::App* show = fees->add_subcommand("show", "list every version of the fee schedules");
  AddCommon(show, &o->c);
  show->add_option("--merchant", o->f.merchant_id, "only this merchant (* = the default)");
  show->callback([o, show] {
    const bool filter = show->count("--merchant") > 0;
    auto l = OpenLedger(o->c.data, true);
    if (!l.ok()) return Fail(o->c, l.status());
    Result<std::vector<sw::FeeSchedule>> all = sw::ListFeeSchedules(**l);
    if (!all.ok()) return Fail(o->c, all.status());
    json arr = json::array();
    std::string text;
    for (const sw::FeeSchedule& f : *all) {
      if (filter && f.merchant_id != o->f.merchant_id) continue;
      arr.push_back(FeeJson(f));
      text += FeeText(f);
    }
    if (arr.empty()) text = "no fee schedule (captures carry no fee)\n";
    Print(o->c, json{{"schedules", arr}}, text);
  });
}

// ---- bank (other banks) ----------------------------------------------------------

// "  stand-in 408: 500000 a day, 100000 a payment (minor units)" per term, or
// the refusal.
std::string StandInText(const sw::OtherBank& b) {
  if (b.stand_in.empty()) return "  no stand-in agreement: its cards and SIMs are declined (57)\n";
  std::string text;
  for (const sw::StandInTerms& t : b.stand_in) {
    const uint64_t single = t.single_max_minor != 0 ? t.single_max_minor : t.daily_max_minor;
    text += "  stand-in " + std::to_string(t.currency) + ": " + Money(t.daily_max_minor) +
            " a day, " + Money(single) + " a payment (minor units)\n";
  }
  return text;
}

// What `bank add` and `bank list` print under the bank's name: its BIN
// ranges, SIM issuers, field-32 acquirer id, interbank accounts and stand-in.
std::string BankDetailText(const sw::OtherBank& b) {
  std::string text;
  for (const sw::BinRange& r : b.bin_ranges) text += "  BIN range " + r.low + "-" + r.high + "\n";
  for (const std::string& s : b.sim_issuers) text += "  SIM issuer " + s + "\n";
  text += b.acquirer_id.empty()
              ? std::string("  no acquirer id: its acquirer host cannot send us requests\n")
              : "  acquirer id " + b.acquirer_id + " (field 32 of its requests)\n";
  for (const sw::InterbankAccount& a : b.accounts) {
    text += "  interbank account " + std::to_string(a.currency) + " " + a.account.ToHex() + "\n";
  }
  return text + StandInText(b);
}

void RegisterOtherBanks(CLI::App& app) {
  CLI::App* bank = app.add_subcommand("bank", "other banks (BIN ranges, SIM issuers, interbank)");
  bank->require_subcommand(1);
  struct Opts {
    Common c;
    sw::OtherBank b;
    std::vector<std::string> ranges;
    std::vector<uint16_t> currencies{408};
    std::vector<std::string> stand_in;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* add = bank->add_subcommand("add", "register another bank and its interbank accounts");
  AddCommon(add, &o->c);
  add->add_option("--id", o->b.id, "bank id (1..15 of A-Z a-z 0-9 _ -)")->required();
  add->add_option("--name", o->b.name, "name");
  add->add_option("--bin-range", o->ranges, "LOW-HIGH card BIN range (repeatable)");
  add->add_option("--sim-issuer", o->b.sim_issuers, "SIM token prefix (repeatable)");
  add->add_option("--acquirer-id", o->b.acquirer_id,
                  "field 32 its acquirer host sends for its merchants (1..11 digits)");
  add->add_option("--currencies", o->currencies, "ISO 4217 numeric codes")->delimiter(',');
  add->add_option("--stand-in", o->stand_in,
                  "CUR:DAILY_MAX[:SINGLE_MAX] stand-in agreement, minor units (repeatable; "
                  "without one the bank's cards and SIMs are declined)");
  add->callback([o] {
    for (const std::string& r : o->ranges) {
      if (r.find('-') == std::string::npos) {
        return Fail(o->c, Status::InvalidArgument("--bin-range LOW-HIGH"));
      }
    }
    json args{{"id", o->b.id},
              {"name", o->b.name},
              {"bin_ranges", o->ranges},
              {"sim_issuers", o->b.sim_issuers},
              {"acquirer_id", o->b.acquirer_id},
              {"currencies", o->currencies},
              {"stand_in", o->stand_in}};
    Result<json> added = RunWrite(o->c, "bank.add", args);
    if (!added.ok()) return Fail(o->c, added.status());
    Result<sw::OtherBank> r = sw::DecodeOtherBank(added->dump());
    if (!r.ok()) return Fail(o->c, r.status());
    std::string text = "added bank " + r->id + "\n" + BankDetailText(*r);
    Print(o->c, json::parse(sw::EncodeOtherBank(*r)), text);
  });
  CLI::App* list = bank->add_subcommand("list", "list the other banks");
  AddCommon(list, &o->c);
  list->callback([o] {
    auto l = OpenLedger(o->c.data, true);
    if (!l.ok()) return Fail(o->c, l.status());
    Result<std::vector<sw::OtherBank>> banks = sw::ListOtherBanks(**l);
    if (!banks.ok()) return Fail(o->c, banks.status());
    json arr = json::array();
    std::string text;
    for (const sw::OtherBank& b : *banks) {
      arr.push_back(json::parse(sw::EncodeOtherBank(b)));
      text += b.id + "  " + b.name + "\n" + BankDetailText(b);
    }
    Print(o->c, json{{"banks", arr}}, text);
  });
}

// ---- settle ----------------------------------------------------------------------

Status WriteFileAtomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Status::IOError("cannot write " + tmp);
    f << content;
    f.flush();
    if (!f) return Status::IOError("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IOError("cannot rename " + tmp + ": " + ec.message());
  return Status::Ok();
}

void RegisterSettle(CLI::App& app) {
  struct Opts {
    Common c;
    std::string day, merchant, out, format = "csv", keys_dir;
    uint16_t currency = 408;
    bool dry_run = false, sign = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* settle = app.add_subcommand(
      "settle", "settle a closed business day (each merchant once; interbank; reports)");
  settle->require_subcommand(0, 1);
  settle->add_option("--data", o->c.data, "data folder (ledger in DIR/ledger)");
  settle->add_option("--day", o->day, "day number or date (YYYY-MM-DD)");
  settle->add_option("--merchant", o->merchant, "only this merchant");
  settle->add_flag("--dry-run", o->dry_run, "compute and print, post nothing");
  settle->add_flag("--json", o->c.json, "print one JSON object");
  settle->callback([o, settle] {
    if (!settle->get_subcommands().empty()) return;  // interbank / report
    if (o->c.data.empty() || o->day.empty()) {
      return Fail(o->c, Status::InvalidArgument("settle needs --data and --day"));
    }
    // Through the running switch, or on the ledger opened directly.
    json args{{"day", o->day}, {"merchant", o->merchant}, {"dry_run", o->dry_run}};
    Result<json> r = RunWrite(o->c, "settle", args);
    if (!r.ok()) return Fail(o->c, r.status());
    const json& s = *r;
    std::string text = "business day " + std::to_string(s.value("day", 0u)) +
                       (o->dry_run ? " (dry run)" : "") + ": " +
                       std::to_string(s.value("captures", uint64_t{0})) + " captures\n";
    for (const json& m : s.value("settled", json::array())) {
      text += SettlementText(m, o->dry_run ? "would" : "settled");
    }
    for (const json& m : s.value("already_settled", json::array())) {
      text += SettlementText(m, "already");
    }
    const json failed = s.value("failed", json::array());
    for (const json& f : failed) {
      text += f.value("merchant", std::string()) + " " + std::to_string(f.value("currency", 0u)) +
              " FAILED: " + f.value("reason", std::string()) + "\n";
    }
    if (!failed.empty()) SetExitCode(1);
    Print(o->c, s, text);
  });

  CLI::App* ib = settle->add_subcommand(
      "interbank", "net the day per bank, post the nets, write the central bank instructions");
  AddCommon(ib, &o->c);
  ib->add_option("--day", o->day, "day number or date (YYYY-MM-DD)")->required();
  ib->add_option("--out", o->out, "instruction file to write")->required();
  ib->add_flag("--dry-run", o->dry_run, "compute and write, post nothing");
  ib->callback([o] {
    // Through the running switch, or on the ledger opened directly; the
    // instruction file is written here either way.
    Result<json> r =
        RunWrite(o->c, "settle.interbank", json{{"day", o->day}, {"dry_run", o->dry_run}});
    if (!r.ok()) return Fail(o->c, r.status());
    const json instructions = r->value("instructions", json());
    if (!instructions.is_string()) {
      return Fail(o->c, Status::Internal("settle interbank: no instruction file in the answer"));
    }
    Status w = WriteFileAtomically(o->out, instructions.get<std::string>());
    if (!w.ok()) return Fail(o->c, w);
    const json positions = r->value("positions", json::array());
    std::string text;
    for (const json& p : positions) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "%03u %-15s due to %s due from %s net %lld%s\n",
                    static_cast<unsigned>(p.value("currency", 0u)),
                    p.value("bank", std::string()).c_str(),
                    Money(p.value("due_to_minor", uint64_t{0})).c_str(),
                    Money(p.value("due_from_minor", uint64_t{0})).c_str(),
                    static_cast<long long>(p.value("net_minor", int64_t{0})),
                    p.value("already_settled", false) ? " (already settled)" : "");
      text += buf;
    }
    text += "instructions written to " + o->out + "\n";
    Print(o->c, json{{"day", r->value("day", 0u)}, {"positions", positions}, {"out", o->out}},
          text);
  });

  CLI::App* rep = settle->add_subcommand("report", "one merchant's settlement report (CSV/JSON)");
  AddCommon(rep, &o->c);
  rep->add_option("--day", o->day, "day number or date (YYYY-MM-DD)")->required();
  rep->add_option("--merchant", o->merchant, "merchant id")->required();
  rep->add_option("--currency", o->currency, "ISO 4217 numeric (default 408)");
  rep->add_option("--format", o->format, "csv or json")->check(CLI::IsMember({"csv", "json"}));
  rep->add_option("--out", o->out, "report file to write")->required();
  rep->add_flag("--sign", o->sign,
                "sign with the key store's statement key (writes FILE.sig, raw Ed25519)");
  rep->add_option("--master-key-file", o->c.master_key_file, "default DIR/master.key");
  rep->callback([o] {
    auto l = OpenLedger(o->c.data, true);
    if (!l.ok()) return Fail(o->c, l.status());
    Result<uint32_t> n = sw::ResolveDay(**l, o->day);
    if (!n.ok()) return Fail(o->c, n.status());
    Result<sw::MerchantSettlement> m = sw::ComputeMerchantDay(**l, *n, o->merchant, o->currency);
    if (!m.ok()) return Fail(o->c, m.status());
    std::optional<sw::MerchantSettlement> settled;
    if (auto v = (*l)->GetAux(sw::SettledKey(*n, o->currency, o->merchant))) {
      Result<sw::MerchantSettlement> r = sw::DecodeMerchantSettlement(*v);
      if (!r.ok()) return Fail(o->c, r.status());
      settled = std::move(*r);
    }
    const std::string body = o->format == "json" ? sw::SettlementReportJson(*m, settled)
                                                 : sw::SettlementReportCsv(*m, settled);
    Status w = WriteFileAtomically(o->out, body);
    if (!w.ok()) return Fail(o->c, w);
    std::string sig;
    if (o->sign) {
      const std::string mk_path =
          o->c.master_key_file.empty() ? o->c.data + "/master.key" : o->c.master_key_file;
      Result<crypto::SecretBytes> mk = crypto::LoadMasterKeyFile(mk_path);
      if (!mk.ok()) return Fail(o->c, mk.status());
      auto store = crypto::KeyStore::Open(o->c.data + "/keys", std::move(*mk));
      if (!store.ok()) return Fail(o->c, store.status());
      sig = o->out + ".sig";
      Status s = SignFileWithKeyStore(o->out, **store, sw::kStatementKeyId, sig);
      if (!s.ok()) return Fail(o->c, s);
    }
    Print(o->c,
          json{{"out", o->out},
               {"signature", sig},
               {"status", settled ? "settled" : "not_settled"},
               {"lines", m->lines.size()}},
          "report written to " + o->out + (sig.empty() ? "" : " (signature " + sig + ")") + "\n");
  });
}

// ---- bench settle ------------------------------------------------------------------

double ProcessCpuSeconds() {
  struct timespec ts {};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct BenchOpts {
  std::string dir;
  uint32_t merchants = 10'000;
  uint64_t captures = 1'000'000;
  uint32_t split_percent = 10;
};

Status BuildSyntheticDay(ledger::Ledger& l, const BenchOpts& b, uint64_t* build_ms) {
  const auto t0 = std::chrono::steady_clock::now();
  auto id = [](uint64_t hi, uint64_t lo) { return ledger::AccountId{ledger::U128{hi, lo}}; };
  sw::BankConfig cfg;
  cfg.bin = "940801";
  cfg.acquirer_id = "940801";
  cfg.bank_id = "NARAE";
  sw::BankAccounts ba;
  ba.currency = 408;
  ba.funding = id(1, 1);
  ba.fee_income = id(1, 2);
  ba.logistics = id(1, 3);
  ba.central_bank = id(1, 4);
  cfg.accounts.push_back(ba);
  std::vector<ledger::Account> accounts;
  auto account = [&](ledger::AccountId a, ledger::AccountCode code) {
    ledger::Account x;
    x.id = a;
    x.ledger = 408;
    x.code = static_cast<uint16_t>(code);
    accounts.push_back(x);
  };
  account(ba.funding, ledger::AccountCode::kBankCash);
  account(ba.fee_income, ledger::AccountCode::kFeeIncome);
  account(ba.logistics, ledger::AccountCode::kLogistics);
  account(ba.central_bank, ledger::AccountCode::kCentralBankSettlement);
  constexpr uint64_t kCustomers = 1000;
  for (uint64_t c = 0; c < kCustomers; ++c)
    account(id(2, c + 1), ledger::AccountCode::kCustomerDeposit);
  std::vector<std::pair<std::string, std::string>> records;
  for (uint32_t m = 0; m < b.merchants; ++m) {
    sw::Merchant x;
    char name[16];
    std::snprintf(name, sizeof name, "B%08u", m);
    x.id = name;
    x.name = name;
    x.mcc = 5411;
    x.currencies.push_back({408, id(3, m + 1), id(4, m + 1)});
    account(id(3, m + 1), ledger::AccountCode::kMerchantClearing);
    account(id(4, m + 1), ledger::AccountCode::kMerchantSettlement);
    records.emplace_back(sw::MerchantKey(x.id), sw::EncodeMerchant(x));
  }
  for (size_t i = 0; i < accounts.size(); i += ledger::kBatchEventsMax) {
    size_t n = std::min(ledger::kBatchEventsMax, accounts.size() - i);
    auto r = l.CreateAccounts(std::span<const ledger::Account>(accounts.data() + i, n));
    if (!r.ok()) return r.status();
  }
  records.emplace_back(std::string(sw::kAuxBankConfig), sw::EncodeBankConfig(cfg));
  for (size_t i = 0; i < records.size(); i += ledger::kBatchEventsMax) {
    NARAE_RETURN_IF_ERROR(l.Execute([&](ledger::Txn& txn) {
      for (size_t k = i; k < std::min(records.size(), i + ledger::kBatchEventsMax); ++k) {
        txn.PutAux(records[k].first, records[k].second);
      }
    }));
  }
  sw::FeeSchedule f;
  f.merchant_id = "*";
  f.currency = 408;
  f.bps = 150;
  f.fixed_minor = 10;
  f.min_minor = 20;
  f.max_minor = 50'000;
  f.delivery_bands = {{10'000, 500}, {50'000, 1'500}, {0, 4'000}};
  f.effective_from_ns = 0;
  Result<sw::FeeSchedule> fs = sw::SetFeeSchedule(l, f);
  if (!fs.ok()) return fs.status();
  std::mt19937_64 rng(42);
  std::vector<ledger::Transfer> batch;
  std::vector<std::pair<ledger::TransferId, sw::PaymentInfo>> infos;
  for (uint64_t k = 0; k < b.captures; ++k) {
    ledger::Transfer t;
    t.id = ledger::TransferId{ledger::U128{5, k + 1}};
    t.debit_account_id = id(2, 1 + rng() % kCustomers);
    t.credit_account_id = id(3, 1 + k % b.merchants);
    t.amount_minor = 100 + rng() % 100'000;
    t.ledger = 408;
    t.code = 102;
    batch.push_back(t);
    if (rng() % 100 < b.split_percent) {
      sw::PaymentInfo p;
      p.split = rng() % 2 ? sw::DeliverySplit{sw::SplitKind::kFixed, 1 + rng() % 2'000, 0}
                          : sw::DeliverySplit{sw::SplitKind::kDistance, 0,
                                              static_cast<uint32_t>(rng() % 80'000)};
      infos.emplace_back(t.id, p);
    }
    if (batch.size() == ledger::kBatchEventsMax || k + 1 == b.captures) {
      NARAE_RETURN_IF_ERROR(l.Execute([&](ledger::Txn& txn) {
        std::vector<ledger::TransferOutcome> outs = txn.CreateTransfers(batch);
        for (const auto& o : outs) NARAE_CHECK(o.result == ledger::CreateTransferResult::kOk);
        for (const auto& [tid, p] : infos) sw::RecordPaymentInfo(txn, tid, p);
      }));
      batch.clear();
      infos.clear();
    }
  }
  Result<sw::DayRecord> d = sw::CloseDay(l, std::nullopt);
  if (!d.ok()) return d.status();
  *build_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count());
  return Status::Ok();
}

void RegisterBench(CLI::App& app) {
  CLI::App* bench = app.get_subcommand("bench");
  auto b = std::make_shared<BenchOpts>();
  CLI::App* s = bench->add_subcommand(
      "settle", "settle one synthetic day (default 1,000,000 captures, 10,000 merchants)");
  s->add_option("--dir", b->dir, "empty folder for the synthetic ledger (default: a temp folder)");
  s->add_option("--merchants", b->merchants, "merchants (default 10000)")
      ->check(CLI::Range(1u, 1'000'000u));
  s->add_option("--captures", b->captures, "captures (default 1000000)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}));
  s->add_option("--split-percent", b->split_percent, "captures with a delivery split (10)")
      ->check(CLI::Range(0u, 100u));
  s->callback([b] {
    std::string dir = b->dir;
    bool temp = false;
    if (dir.empty()) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "narae-bench-settle-XXXXXX");
      if (!mkdtemp(tmpl.data())) {
        std::fprintf(stderr, "narae bench settle: cannot create a temp folder\n");
        return SetExitCode(2);
      }
      dir = tmpl;
      temp = true;
    }
    auto cleanup = [&] {
      std::error_code ec;
      if (temp) std::filesystem::remove_all(dir, ec);
    };
    ledger::Options o;
    o.path = dir + "/ledger";
    auto l = ledger::Ledger::Open(o);
    if (!l.ok()) {
      std::fprintf(stderr, "narae bench settle: %s\n", l.status().ToString().c_str());
      cleanup();
      return SetExitCode(2);
    }
    std::printf("building %llu captures across %u merchants in %s ...\n",
                static_cast<unsigned long long>(b->captures), b->merchants, dir.c_str());
    std::fflush(stdout);
    uint64_t build_ms = 0;
    Status st = BuildSyntheticDay(**l, *b, &build_ms);
    auto fail = [&](const Status& e) {
      std::fprintf(stderr, "narae bench settle: %s\n", e.ToString().c_str());
      (void)(*l)->Close();
      cleanup();
      SetExitCode(2);
    };
    if (!st.ok()) return fail(st);
    const double cpu0 = ProcessCpuSeconds();
    auto t0 = std::chrono::steady_clock::now();
    sw::SettleOptions dry;
    dry.dry_run = true;
    Result<sw::SettleSummary> computed = sw::SettleDay(**l, 1, dry);
    auto t1 = std::chrono::steady_clock::now();
    const double cpu1 = ProcessCpuSeconds();
    if (!computed.ok()) return fail(computed.status());
    Result<sw::SettleSummary> settled = sw::SettleDay(**l, 1, {});
    auto t2 = std::chrono::steady_clock::now();
    const double cpu2 = ProcessCpuSeconds();
    if (!settled.ok()) return fail(settled.status());
    Result<sw::SettleSummary> again = sw::SettleDay(**l, 1, {});
    if (!again.ok()) return fail(again.status());
    const double compute_s = std::chrono::duration<double>(t1 - t0).count();
    const double settle_s = std::chrono::duration<double>(t2 - t1).count();
    uint64_t captures = 0, fees = 0, delivery = 0, payout = 0;
    for (const auto& m : settled->settled) {
      captures += m.captures_minor;
      fees += m.fees_minor;
      delivery += m.delivery_minor;
      payout += m.payout_minor;
    }
    const bool exact = captures == payout + fees + delivery && settled->failed.empty() &&
                       again->settled.empty() &&
                       again->already_settled.size() == settled->settled.size();
    std::printf(
        "build %.1f s; compute only (dry run) %.2f s (%.2f s CPU); settle %.2f s (%.2f s CPU) "
        "for %llu captures, %zu merchant batches (%.0f captures/s); re-run settled nothing: %s; "
        "exact: %s\n",
        static_cast<double>(build_ms) / 1000.0, compute_s, cpu1 - cpu0, settle_s, cpu2 - cpu1,
        static_cast<unsigned long long>(settled->captures_scanned), settled->settled.size(),
        static_cast<double>(settled->captures_scanned) / settle_s,
        again->settled.empty() ? "yes" : "NO", exact ? "yes" : "NO");
    std::printf("%s\n", json{{"bench", "settle"},
                             {"captures", settled->captures_scanned},
                             {"merchants", b->merchants},
                             {"batches", settled->settled.size()},
                             {"build_s", static_cast<double>(build_ms) / 1000.0},
                             {"compute_s", compute_s},
                             {"settle_s", settle_s},
                             {"compute_cpu_s", cpu1 - cpu0},
                             {"settle_cpu_s", cpu2 - cpu1},
                             {"exact", exact}}
                            .dump()
                            .c_str());
    (void)(*l)->Close();
    cleanup();
    if (!exact) SetExitCode(1);
  });
}

}  // namespace

void RegisterSettleCommands(CLI::App& app) {
  RegisterDay(app);
  RegisterFees(app);
  RegisterOtherBanks(app);
  RegisterSettle(app);
  RegisterBench(app);
}

}  // namespace narae::tools
