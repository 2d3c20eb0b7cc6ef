// Crash under load (issue 7, docs/reliability.md): the real narae-switch on a
// fresh demo bank, driven over ISO 8583 by several terminals at once
// (purchases with CVV2 or PIN, holds followed by completions or reversals,
// reversals of purchases), killed with SIGKILL at random moments and
// restarted. After every restart each terminal first retransmits the request
// it had in flight and a few requests already answered (they must get the
// same answer). At the end every request ever answered is retransmitted
// once more, then the ledger is opened and checked: every approved request
// is in it exactly once under the authorizer's deterministic transfer id,
// nothing else was created, holds are in the state their follow-ups left
// them, debits equal credits per currency, and `narae verify` passes.
//
// Size: NARAE_CRASH_KILLS (default 20; 10 under NARAE_SANITIZED=1).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ledger/ledger.hpp"
#include "switch/authorizer.hpp"
#include "tests/switch_harness.hpp"
#include "tests/test_util.hpp"

namespace narae::switching {
namespace {

using namespace harness;
using namespace std::chrono_literals;

enum class OpKind : uint8_t { kPurchase, kPinPurchase, kHold, kCompletion, kReversal };

struct Op {
  OpKind kind = OpKind::kPurchase;
  Message request;
  std::vector<uint8_t> frame;
  std::string key;  // the authorizer's request key
  uint64_t amount_minor = 0;
  uint16_t currency = 0;
  int original = -1;  // completion / reversal: index of the op it refers to
  bool answered = false;
  std::string rc;        // field 39 of the answer
  std::string approval;  // field 38 of the answer
  bool has_follow_up = false;
};

struct Counters {
  std::atomic<uint64_t> retries_same{0};
  std::atomic<uint64_t> retries_different{0};
  std::atomic<uint64_t> in_flight_at_kill{0};
};

// One terminal on one connection, one request at a time.
class Terminal {
 public:
  Terminal(const DemoTerminal& t, const Demo& demo, uint64_t seed, Counters* counters)
      : t_(t), demo_(demo), rng_(seed), counters_(counters) {}

  // Until the connection breaks (the server was killed) or `deadline`.
  void RunRound(uint16_t port, Clock::time_point deadline) {
    IsoClient c(port);
    if (!c.connected()) return;
    if (pending_ >= 0 && !Answer(c, pending_)) return;
    for (int i = 0; i < 2 && !answered_.empty(); ++i) {
      if (!Retry(c, answered_[rng_() % answered_.size()])) return;
    }
    while (Clock::now() < deadline) {  // bounded by the round's deadline
      const int op = NextOp();
      pending_ = op;
      if (!Answer(c, op)) return;
    }
  }

  // After the last restart: the pending request, then every answered one again.
  void RunFinal(uint16_t port) {
    IsoClient c(port);
    ASSERT_TRUE(c.connected());
    if (pending_ >= 0) {
      ASSERT_TRUE(Answer(c, pending_)) << t_.id;
    }
    for (int op : answered_) ASSERT_TRUE(Retry(c, op)) << t_.id;
  }

  const std::vector<Op>& ops() const { return ops_; }

 private:
  uint32_t NextStan() { return ++stan_ % 999999 + 1; }

  int NextOp() {
    Op op;
    const uint32_t roll = static_cast<uint32_t>(rng_() % 100);
    if (!follow_ups_.empty() && roll < 40) {
      const int orig_index = follow_ups_.front();
      follow_ups_.pop_front();
      Op& orig = ops_[static_cast<size_t>(orig_index)];
      orig.has_follow_up = true;
      op.original = orig_index;
      op.currency = orig.currency;
      op.amount_minor = orig.amount_minor;
      if (orig.kind == OpKind::kHold && rng_() % 2 == 0) {
        op.kind = OpKind::kCompletion;
        if (rng_() % 3 == 0) op.amount_minor = std::max<uint64_t>(1, orig.amount_minor / 2);
        op.request = FollowUp("0220", orig.request, NextStan(), op.amount_minor, t_);
      } else {
        op.kind = OpKind::kReversal;
        op.request = FollowUp("0400", orig.request, NextStan(), orig.amount_minor, t_);
      }
    } else {
      const DemoCard& card = demo_.cards[rng_() % demo_.cards.size()];
      op.currency = card.currency;
      op.amount_minor = 100 + rng_() % 5000;  // far below the daily limits at any speed
      if (roll < 60) {
        op.kind = OpKind::kPurchase;
        op.request = CardRequest("0200", t_, card, NextStan(), op.amount_minor);
      } else if (roll < 75) {
        op.kind = OpKind::kPinPurchase;
        op.request = PinPurchase(t_, card, NextStan(), op.amount_minor, card.pin);
      } else {
        op.kind = OpKind::kHold;
        op.request = CardRequest("0100", t_, card, NextStan(), op.amount_minor);
      }
    }
    op.key = RequestKey(op.request.Get(41), op.request.Get(7), op.request.Get(11), NowMs());
    op.frame = SignFrame(op.request, t_);
    ops_.push_back(std::move(op));
    return static_cast<int>(ops_.size() - 1);
  }

  // Sends op and records its answer; false when the connection broke.
  bool Answer(IsoClient& c, int index) {
    Op& op = ops_[static_cast<size_t>(index)];
    std::optional<Message> r = c.Call(op.frame, 10000);
    if (!r) {
      counters_->in_flight_at_kill.fetch_add(1);
      return false;
    }
    EXPECT_EQ(r->Get(11), op.request.Get(11));
    pending_ = -1;
    op.answered = true;
    op.rc = std::string(r->Get(39));
    op.approval = std::string(r->Get(38));
    answered_.push_back(index);
    if (op.rc == "00" &&
        (op.kind == OpKind::kHold ||
         ((op.kind == OpKind::kPurchase || op.kind == OpKind::kPinPurchase) && rng_() % 5 == 0))) {
      follow_ups_.push_back(index);
    }
    return true;
  }

  // Retransmits an answered request: the answer must be the same.
  bool Retry(IsoClient& c, int index) {
    const Op& op = ops_[static_cast<size_t>(index)];
    std::optional<Message> r = c.Call(op.frame, 10000);
    if (!r) return false;
    // Field 2 is not stored with the answer (no PAN at rest): it comes back
    // from the retransmitted request.
    if (r->Get(39) == op.rc && r->Get(38) == op.approval && r->Get(2) == op.request.Get(2)) {
      counters_->retries_same.fetch_add(1);
    } else {
      counters_->retries_different.fetch_add(1);
      ADD_FAILURE() << t_.id << " retry of " << op.key << ": first " << op.rc << "/" << op.approval
                    << ", now " << r->Get(39) << "/" << r->Get(38);
    }
    return true;
  }

  const DemoTerminal& t_;
  const Demo& demo_;
  std::mt19937_64 rng_;
  Counters* counters_;
  std::vector<Op> ops_;
  std::vector<int> answered_;
  std::deque<int> follow_ups_;
  int pending_ = -1;  // sent, no answer yet (at most one: one request at a time)
  uint32_t stan_ = 0;
};

struct Expected {
  ledger::Transfer transfer;  // id, amount, code, flags, pending_id as expected
};

TEST(SwitchCrash, SigkillUnderLoadLosesAndDoublesNothing) {
  if (!HaveBinaries()) GTEST_SKIP() << "narae-switch or narae not built";
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "not under ThreadSanitizer (uninstrumented RocksDB in the child)";
#endif
  const uint32_t kills = EnvOr("NARAE_CRASH_KILLS", Sanitized() ? 10 : 20);
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  const std::string log = dir.Sub("switch.log");
  ASSERT_TRUE(SeedDemo(data, dir.Sub("demo.json"), 2));
  const Demo demo = LoadDemo(dir.Sub("demo.json"));
  const uint64_t start_ns = static_cast<uint64_t>(NowMs()) * 1000000;

  Counters counters;
  std::vector<std::unique_ptr<Terminal>> terminals;
  uint64_t seed = 7;
  for (const char* id : {"T0000001", "T0000003", "T0000007"}) {  // T0000001 MACs
    terminals.push_back(std::make_unique<Terminal>(demo.Terminal(id), demo, seed++, &counters));
  }
  std::mt19937_64 rng(42);
  const auto started = Clock::now();
  for (uint32_t round = 0; round < kills; ++round) {
    SwitchProcess sw;
    ASSERT_TRUE(sw.Start(data, {"--log-file", log})) << "round " << round;
    const auto kill_at = Clock::now() + std::chrono::milliseconds(30 + rng() % 250);
    std::vector<std::thread> threads;
    for (auto& t : terminals) {
      threads.emplace_back([&, port = sw.port()] { t->RunRound(port, kill_at + 5s); });
    }
    std::this_thread::sleep_until(kill_at);
    sw.Kill();
    for (std::thread& th : threads) th.join();
  }
  const double load_s = std::chrono::duration<double>(Clock::now() - started).count();

  // Last restart: everything in flight resolved, every answer asked again.
  SwitchProcess sw;
  ASSERT_TRUE(sw.Start(data, {"--log-file", log}));
  {
    std::vector<std::thread> threads;
    for (auto& t : terminals) threads.emplace_back([&, port = sw.port()] { t->RunFinal(port); });
    for (std::thread& th : threads) th.join();
  }
  ASSERT_EQ(sw.Stop(), 0);
  ASSERT_EQ(counters.retries_different.load(), 0u);

  // What the ledger must hold: one transfer per approved request.
  namespace tf = ledger::transfer_flags;
  std::unordered_map<ledger::TransferId, ledger::Transfer, ledger::IdHash> expected;
  std::map<uint32_t, uint64_t> pending_by_currency;  // holds still open
  std::map<std::string, uint64_t> codes;
  uint64_t acknowledged = 0;
  uint64_t unanswered = 0;
  uint64_t total_answered = 0;
  for (const auto& term : terminals) {
    const std::vector<Op>& ops = term->ops();
    for (const Op& op : ops) {
      if (!op.answered) {
        ++unanswered;
        continue;
      }
      ++codes[op.rc];
      ++total_answered;
      if (op.rc != "00") continue;
      ++acknowledged;
      ledger::Transfer t;
      t.id = RequestTransferId(op.key, 1);
      t.amount_minor = op.amount_minor;
      t.ledger = op.currency;
      const Op* orig = op.original >= 0 ? &ops[static_cast<size_t>(op.original)] : nullptr;
      switch (op.kind) {
        case OpKind::kPurchase:
        case OpKind::kPinPurchase:
          t.code = 102;
          break;
        case OpKind::kHold:
          t.code = 101;
          t.flags = tf::kPending;
          break;
        case OpKind::kCompletion:
          t.code = 101;
          t.flags = tf::kPostPendingTransfer;
          t.pending_id = RequestTransferId(orig->key, 1);
          break;
        case OpKind::kReversal:
          if (orig->kind == OpKind::kHold) {
            t.code = 101;
            t.flags = tf::kVoidPendingTransfer;
            t.pending_id = RequestTransferId(orig->key, 1);
            t.amount_minor = 0;
          } else {
            t.code = 104;
          }
          break;
      }
      expected[t.id] = t;
    }
  }
  // Final hold states from the approved follow-ups.
  std::unordered_map<ledger::TransferId, std::pair<ledger::HoldState, uint64_t>, ledger::IdHash>
      hold_state;
  for (const auto& [id, t] : expected) {
    if (t.flags & tf::kPending) hold_state[id] = {ledger::HoldState::kPending, 0};
  }
  for (const auto& [id, t] : expected) {
    if (t.flags & tf::kPostPendingTransfer)
      hold_state[t.pending_id] = {ledger::HoldState::kPosted, t.amount_minor};
    if (t.flags & tf::kVoidPendingTransfer)
      hold_state[t.pending_id] = {ledger::HoldState::kVoided, 0};
  }

  uint64_t lost = 0;
  uint64_t checked = 0;
  {
    ledger::Options lo;
    lo.path = data + "/ledger";
    Result<std::unique_ptr<ledger::Ledger>> opened = ledger::Ledger::Open(lo);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    ledger::Ledger& l = **opened;
    for (const auto& [id, want] : expected) {
      std::optional<ledger::Transfer> got = l.LookupTransfer(id);
      if (!got) {
        ++lost;
        continue;
      }
      ++checked;
      EXPECT_EQ(got->code, want.code);
      EXPECT_EQ(got->flags & (tf::kPending | tf::kPostPendingTransfer | tf::kVoidPendingTransfer),
                want.flags);
      EXPECT_EQ(got->pending_id, want.pending_id);
      if (!(want.flags & tf::kVoidPendingTransfer)) {
        EXPECT_EQ(got->amount_minor, want.amount_minor);
      }
    }
    // Nothing else was created: no double, no phantom.
    uint64_t created = 0;
    uint64_t unexpected = 0;
    ASSERT_OK(l.ScanTransfers(start_ns, UINT64_MAX, [&](const ledger::Transfer& t) {
      ++created;
      if (expected.count(t.id) == 0) ++unexpected;
      return true;
    }));
    EXPECT_EQ(created, expected.size());
    EXPECT_EQ(unexpected, 0u);
    // Holds: each in the state its acknowledged follow-up left it.
    for (const auto& [id, state] : hold_state) {
      std::optional<ledger::HoldInfo> h = l.LookupHold(id);
      ASSERT_TRUE(h.has_value());
      EXPECT_EQ(h->state, state.first);
      if (state.first == ledger::HoldState::kPosted) {
        EXPECT_EQ(h->posted_amount_minor, state.second);
      }
      if (state.first == ledger::HoldState::kPending) {
        pending_by_currency[h->hold.ledger] += h->hold.amount_minor;
      }
    }
    // Debits equal credits per currency; pending debits are exactly the open holds.
    std::map<uint32_t, std::array<uint64_t, 4>> sums;
    ASSERT_OK(l.ScanAccounts([&](const ledger::Account& a) {
      auto& s = sums[a.ledger];
      s[0] += a.debits_posted;
      s[1] += a.credits_posted;
      s[2] += a.debits_pending;
      s[3] += a.credits_pending;
      return true;
    }));
    for (const auto& [currency, s] : sums) {
      EXPECT_EQ(s[0], s[1]) << "currency " << currency;
      EXPECT_EQ(s[2], s[3]) << "currency " << currency;
      EXPECT_EQ(s[2], pending_by_currency[currency]) << "currency " << currency;
    }
    ASSERT_OK(l.Close());
  }
  EXPECT_EQ(RunCommand(NaraeBin() + " verify --data " + data + "/ledger >/dev/null"), 0);

  std::string code_text;
  for (const auto& [rc, n] : codes) code_text += " " + rc + "=" + std::to_string(n);
  std::printf(
      "[ crash ] %u kills in %.1f s; %llu requests answered (%s), %llu in flight at a kill "
      "(retransmitted after restart), %llu retransmissions gave the same answer; "
      "%llu acknowledged operations checked in the ledger (%zu holds), lost %llu\n",
      kills, load_s, static_cast<unsigned long long>(total_answered), code_text.c_str(),
      static_cast<unsigned long long>(counters.in_flight_at_kill.load()),
      static_cast<unsigned long long>(counters.retries_same.load()),
      static_cast<unsigned long long>(checked), hold_state.size(),
      static_cast<unsigned long long>(lost));
  EXPECT_EQ(unanswered, 0u);
  EXPECT_EQ(lost, 0u);
  EXPECT_GE(acknowledged, 2u * kills);  // there was load between the kills
  // Every request is approved: the cards hold far more than the test spends.
  EXPECT_EQ(acknowledged, total_answered) << code_text;
}

}  // namespace
}  // namespace narae::switching
