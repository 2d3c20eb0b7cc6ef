// `narae bench ledger` and `narae verify`: the ledger's benchmark and the
// auditor's full check of the journal and every balance.
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "ledger/ledger.hpp"
#include "tools/cli.hpp"
#include "tools/percentile.hpp"
#include "tools/progress.hpp"

namespace narae::tools {
namespace {

using namespace narae::ledger;  // NOLINT: tool code
using Clock = std::chrono::steady_clock;

struct BenchArgs {
  std::string data;
  uint64_t accounts = 100'000;
  uint64_t transfers = 1'000'000;
  uint32_t batch = 8000;
  uint32_t hot_percent = 0;
  bool pending = false;
  bool json = false;
  uint32_t in_flight = 4;
  bool no_sync = false;
};

int RunBenchLedger(const BenchArgs& a) {
  if (a.batch == 0 || a.batch > kBatchEventsMax || a.accounts < 2 || a.hot_percent > 100 ||
      a.in_flight == 0 || a.in_flight > 64) {
    std::fprintf(stderr, "narae bench ledger: invalid arguments (batch 1..%zu, accounts >= 2)\n",
                 kBatchEventsMax);
    return 2;
  }
  Options o;
  o.path = a.data;
  o.sync = !a.no_sync;
  auto opened = Ledger::Open(o);
  if (!opened.ok()) {
    std::fprintf(stderr, "narae bench ledger: %s\n", opened.status().ToString().c_str());
    return 2;
  }
  std::unique_ptr<Ledger> ledger = std::move(opened.value());
  // Account ids live above any earlier run's (benchmarks may share a folder).
  const uint64_t base =
      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count() &
                            0xffffffffffull)
      << 20;
  std::vector<Account> accounts;
  for (uint64_t i = 0; i < a.accounts; ++i) {
    Account acc;
    acc.id = AccountId{U128{1, base + i}};
    acc.ledger = 408;
    acc.code = uint16_t(AccountCode::kCustomerDeposit);
    accounts.push_back(acc);
    if (accounts.size() == kBatchEventsMax || i + 1 == a.accounts) {
      auto r = ledger->CreateAccounts(accounts);
      if (!r.ok()) {
        std::fprintf(stderr, "narae bench ledger: %s\n", r.status().ToString().c_str());
        return 2;
      }
      accounts.clear();
    }
  }
  // Pre-build the batches so the measurement is the ledger's work only.
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<uint64_t> pick(0, a.accounts - 1);
  std::uniform_int_distribution<uint32_t> pct(0, 99);
  const uint64_t hot = 0;
  std::vector<std::vector<Transfer>> batches;
  for (uint64_t done = 0; done < a.transfers;) {
    std::vector<Transfer> b;
    uint64_t n = std::min<uint64_t>(a.batch, a.transfers - done);
    b.reserve(n);
    for (uint64_t k = 0; k < n; ++k) {
      Transfer t;
      t.id = TransferId{U128{2, base + done + k}};
      uint64_t dr = pick(rng), cr = pick(rng);
      if (pct(rng) < a.hot_percent) cr = hot;
      if (dr == cr) dr = (cr + 1) % a.accounts;
      t.debit_account_id = AccountId{U128{1, base + dr}};
      t.credit_account_id = AccountId{U128{1, base + cr}};
      t.amount_minor = 1 + (k % 1000);
      t.ledger = 408;
      t.code = 1;
      t.user_data_128 = U128{0, base + done + k};
      if (a.pending) {
        t.flags = transfer_flags::kPending;
        t.timeout_s = 3600;
      }
      b.push_back(t);
    }
    done += n;
    batches.push_back(std::move(b));
  }

  std::mutex mu;
  std::condition_variable cv;
  uint32_t in_flight = 0;
  std::vector<uint64_t> latencies_us;
  std::atomic<uint64_t> rejected{0};
  Status first_error;
  const bool tty = isatty(STDERR_FILENO) && !a.json;
  auto t0 = Clock::now();
  auto last_progress = t0;
  uint64_t submitted = 0;
  for (auto& b : batches) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < a.in_flight; });
      ++in_flight;
    }
    auto results = std::make_shared<std::vector<TransferOutcome>>();
    auto start = Clock::now();
    const std::vector<Transfer>* batch = &b;
    Status s = ledger->Submit(
        [results, batch](Txn& txn) { *results = txn.CreateTransfers(*batch); },
        [&, results, start](Status st) {
          uint64_t us = static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
          for (const auto& r : *results) {
            if (r.result != CreateTransferResult::kOk) rejected++;
          }
          std::lock_guard<std::mutex> lock(mu);
          if (!st.ok() && first_error.ok()) first_error = st;
          latencies_us.push_back(us);
          --in_flight;
          cv.notify_all();
        });
    if (!s.ok()) {
      std::fprintf(stderr, "narae bench ledger: %s\n", s.ToString().c_str());
      // The batches already accepted call back into this frame: wait for them.
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight == 1; });  // 1: the refused batch's own
      return 2;
    }
    submitted += b.size();
    if (tty && Clock::now() - last_progress > std::chrono::seconds(1)) {
      last_progress = Clock::now();
      std::fprintf(stderr, "\r  %llu / %llu transfers", (unsigned long long)submitted,
                   (unsigned long long)a.transfers);
    }
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return in_flight == 0; });
  }
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (tty) std::fprintf(stderr, "\r");
  if (!first_error.ok()) {
    std::fprintf(stderr, "narae bench ledger: %s\n", first_error.ToString().c_str());
    return 2;
  }
  LedgerStats stats = ledger->Stats();
  (void)ledger->Close();
  std::sort(latencies_us.begin(), latencies_us.end());  // every done ran: in_flight == 0
  const uint64_t tps = static_cast<uint64_t>(static_cast<double>(a.transfers) / seconds);
  nlohmann::json j = {{"bench", "ledger"},
                      {"accounts", a.accounts},
                      {"transfers", a.transfers},
                      {"batch", a.batch},
                      {"hot_percent", a.hot_percent},
                      {"pending", a.pending},
                      {"durable", !a.no_sync},
                      {"seconds", seconds},
                      {"transfers_per_second", tps},
                      {"batch_latency_us_p50", PercentileOfSorted(latencies_us, 5'000)},
                      {"batch_latency_us_p99", PercentileOfSorted(latencies_us, 9'900)},
                      {"batch_latency_us_max", PercentileOfSorted(latencies_us, 10'000)},
                      {"rejected", rejected.load()},
                      {"groups", stats.groups_committed},
                      {"sequencer_cpu_s", double(stats.sequencer_busy_us) / 1e6},
                      {"writer_cpu_s", double(stats.writer_busy_us) / 1e6}};
  if (!a.json) {
    std::printf("ledger bench: %llu transfers, %llu accounts, batch %u, hot %u%%%s%s\n",
                (unsigned long long)a.transfers, (unsigned long long)a.accounts, a.batch,
                a.hot_percent, a.pending ? ", pending" : "", a.no_sync ? ", NOT durable" : "");
    std::printf("  %.2f s, %llu transfers/s (durable: %s), %llu fsync groups\n", seconds,
                (unsigned long long)tps, a.no_sync ? "no" : "yes",
                (unsigned long long)stats.groups_committed);
    std::printf("  batch latency p50 %.2f ms, p99 %.2f ms, max %.2f ms; rejected %llu\n",
                double(PercentileOfSorted(latencies_us, 5'000)) / 1000,
                double(PercentileOfSorted(latencies_us, 9'900)) / 1000,
                double(PercentileOfSorted(latencies_us, 10'000)) / 1000,
                (unsigned long long)rejected.load());
  }
  std::printf("%s\n", j.dump().c_str());
  return rejected.load() == 0 ? 0 : 1;
}

int RunVerify(const std::string& data, bool json) {
  Options o;
  o.path = data;
  o.read_only = true;
  auto opened = Ledger::Open(o);
  if (!opened.ok()) {
    std::fprintf(stderr, "narae verify: %s\n", opened.status().ToString().c_str());
    return 2;
  }
  // A progress line on a terminal only (tools/progress.hpp); quiet when piped or --json.
  Progress progress("verified events", 0, json);
  progress.Update(0);  // at once: the ledger reports every many thousand events
  auto rep = (*opened)->Verify([&](uint64_t events) { progress.Update(events); });
  progress.Finish();
  if (!rep.ok()) {
    std::fprintf(stderr, "narae verify: %s\n", rep.status().ToString().c_str());
    return 2;
  }
  nlohmann::json j = {{"ok", rep->ok},
                      {"journal_entries", rep->journal_entries},
                      {"events", rep->events},
                      {"transfers", rep->transfers},
                      {"accounts", rep->accounts},
                      {"first_problem", rep->first_problem}};
  if (json) {
    std::printf("%s\n", j.dump().c_str());
  } else if (rep->ok) {
    std::printf("verify: OK: %llu journal entries, %llu events, %llu transfers, %llu accounts\n",
                (unsigned long long)rep->journal_entries, (unsigned long long)rep->events,
                (unsigned long long)rep->transfers, (unsigned long long)rep->accounts);
  } else {
    std::printf("verify: FAILED: %s\n", rep->first_problem.c_str());
  }
  return rep->ok ? 0 : 1;
}

}  // namespace

void RegisterLedgerCommands(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks that print figures and a JSON line");
  bench->require_subcommand(1);
  auto* bl = bench->add_subcommand("ledger", "Durable transfers per second through the ledger");
  static BenchArgs args;  // NOLINT: lives for the process
  bl->add_option("--data", args.data, "Data folder (created)")->required();
  bl->add_option("--accounts", args.accounts, "Number of accounts")->capture_default_str();
  bl->add_option("--transfers", args.transfers, "Number of transfers")->capture_default_str();
  bl->add_option("--batch", args.batch, "Transfers per batch (max 8189)")->capture_default_str();
  bl->add_option("--hot-percent", args.hot_percent,
                 "Percent of transfers crediting one hot merchant account")
      ->capture_default_str();
  bl->add_option("--in-flight", args.in_flight, "Batches submitted concurrently")
      ->capture_default_str();
  bl->add_flag("--pending", args.pending, "Create holds (pending transfers) instead");
  bl->add_flag("--no-sync", args.no_sync, "Skip fsync (NOT durable; for comparison only)");
  bl->add_flag("--json", args.json, "Print only the JSON line");
  bl->callback([] { SetExitCode(RunBenchLedger(args)); });

  static std::string verify_data;   // NOLINT
  static bool verify_json = false;  // NOLINT
  auto* v = app.add_subcommand(
      "verify", "Recompute the journal hash chain and every balance; exit 0 only if all agree");
  v->add_option("--data", verify_data, "Data folder")->required();
  v->add_flag("--json", verify_json, "JSON output");
  v->callback([] { SetExitCode(RunVerify(verify_data, verify_json)); });
}

}  // namespace narae::tools
