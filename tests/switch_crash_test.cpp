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
// HTTP storefronts run in the same rounds (the switch listens on both): each
// posts payments (automatic capture) with an Idempotency-Key, one at a time.
// After each restart a storefront first repeats the request it had in flight
// (same key, same body, a new signature) and two answered ones; at the end
// every answered key is repeated once more. Every repeat must return the same
// status and body (a replay), and every payment answered 201 must be in the
// ledger exactly once (its RRN record and its transfer). A 503 (nothing
// decided, nothing stored) is retried with the same key; any other 5xx fails.
//
// Size: NARAE_CRASH_KILLS (default 20; 10 under NARAE_SANITIZED=1).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
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
#include "tests/switch_http_harness.hpp"
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

// ---- HTTP storefronts ----------------------------------------------------------

struct HttpOp {
  std::string key;  // Idempotency-Key
  std::string body;
  uint64_t amount_minor = 0;
  uint16_t currency = 0;
  bool answered = false;
  int status = 0;
  std::string answer;      // the body of the first answer
  std::string payment_id;  // "pay_<RRN>" of a 201
};

struct HttpCounters {
  std::atomic<uint64_t> unavailable{0};     // 503: not acknowledged, nothing stored; retried
  std::atomic<uint64_t> internal_error{0};  // other 5xx: must not happen
  std::atomic<uint64_t> replays_same{0};
  std::atomic<uint64_t> replays_different{0};
  std::atomic<uint64_t> in_flight_at_kill{0};
};

// One storefront on one keep-alive connection, one request at a time.
class Storefront {
 public:
  Storefront(std::string merchant, std::string secret_hex, const Demo& demo, uint64_t seed,
             HttpCounters* counters)
      : merchant_(std::move(merchant)),
        secret_hex_(std::move(secret_hex)),
        demo_(demo),
        rng_(seed),
        counters_(counters) {}

  void RunRound(uint16_t port, Clock::time_point deadline) {
    HttpClient c(port);
    if (!c.connected()) return;
    if (pending_ >= 0 && !Answer(c, pending_)) return;
    for (int i = 0; i < 2 && !answered_.empty(); ++i) {
      if (!Replay(c, answered_[rng_() % answered_.size()])) return;
    }
    while (Clock::now() < deadline) {
      if (pending_ < 0) pending_ = NextOp();  // else a 503 answer: the same key again
      if (!Answer(c, pending_)) return;
    }
  }

  void RunFinal(uint16_t port) {
    HttpClient c(port);
    ASSERT_TRUE(c.connected());
    for (int i = 0; i < 100 && pending_ >= 0; ++i) {  // bounded: 503s retried
      ASSERT_TRUE(Answer(c, pending_)) << merchant_;
    }
    ASSERT_LT(pending_, 0) << merchant_ << ": no stored answer";
    for (int op : answered_) ASSERT_TRUE(Replay(c, op)) << merchant_;
  }

  const std::vector<HttpOp>& ops() const { return ops_; }

 private:
  int NextOp() {
    const DemoCard& card = demo_.Card(408, rng_() % 2);
    HttpOp op;
    op.key = merchant_ + "-crash-" + std::to_string(ops_.size()) + "-" + std::to_string(rng_());
    op.amount_minor = 100 + rng_() % 5000;
    op.currency = card.currency;
    op.body =
        nlohmann::json{{"amount", op.amount_minor},
                       {"currency", "KPW"},
                       {"capture", "automatic"},
                       {"order_ref", "crash-" + std::to_string(ops_.size())},
                       {"card", {{"pan", card.pan}, {"expiry", card.expiry}, {"cvv2", card.cvv2}}}}
            .dump();
    ops_.push_back(std::move(op));
    return static_cast<int>(ops_.size() - 1);
  }
  std::optional<HttpAnswer> Send(HttpClient& c, const HttpOp& op) {
    return c.Call(
        "POST", "/v1/payments", op.body,
        StorefrontHeaders(merchant_, secret_hex_, "POST", "/v1/payments", op.body, op.key));
  }
  bool Answer(HttpClient& c, int index) {
    HttpOp& op = ops_[static_cast<size_t>(index)];
    std::optional<HttpAnswer> a = Send(c, op);
    if (!a) {
      counters_->in_flight_at_kill.fetch_add(1);
      return false;
    }
    if (a->status >= 500) {
      // Not an answer the API keeps (nothing was decided): the storefront
      // retries the key, as its client library would.
      (a->status == 503 ? counters_->unavailable : counters_->internal_error).fetch_add(1);
      EXPECT_EQ(a->status, 503) << a->body;
      std::this_thread::sleep_for(20ms);
      return true;
    }
    pending_ = -1;
    op.answered = true;
    op.status = a->status;
    op.answer = a->body;
    nlohmann::json j = nlohmann::json::parse(a->body, nullptr, false);
    if (j.is_object() && j.contains("id") && j["id"].is_string()) op.payment_id = j["id"];
    answered_.push_back(index);
    return true;
  }
  // The same key again: the same status and body, marked as a replay.
  bool Replay(HttpClient& c, int index) {
    const HttpOp& op = ops_[static_cast<size_t>(index)];
    std::optional<HttpAnswer> a = Send(c, op);
    if (!a) return false;
    if (a->status == op.status && a->body == op.answer &&
        a->Header("idempotent-replayed") == "true") {
      counters_->replays_same.fetch_add(1);
    } else {
      counters_->replays_different.fetch_add(1);
      ADD_FAILURE() << merchant_ << " replay of " << op.key << ": first " << op.status << " "
                    << op.answer << ", now " << a->status << " " << a->body;
    }
    return true;
  }

  const std::string merchant_;
  const std::string secret_hex_;
  const Demo& demo_;
  std::mt19937_64 rng_;
  HttpCounters* counters_;
  std::vector<HttpOp> ops_;
  std::vector<int> answered_;
  int pending_ = -1;
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
  // Two storefronts of merchants that take KPW.
  HttpCounters http_counters;
  std::vector<std::unique_ptr<Storefront>> storefronts;
  for (const auto& m : demo.doc.at("merchants")) {
    const auto& cur = m.at("currencies");
    if (storefronts.size() == 2 || std::find(cur.begin(), cur.end(), 408) == cur.end()) continue;
    storefronts.push_back(std::make_unique<Storefront>(m.at("id").get<std::string>(),
                                                       m.at("api_secret_hex").get<std::string>(),
                                                       demo, seed++, &http_counters));
  }
  ASSERT_EQ(storefronts.size(), 2u);
  const std::vector<std::string> listen = {"--log-file", log, "--http-listen", "127.0.0.1:0"};
  std::mt19937_64 rng(42);
  const auto started = Clock::now();
  for (uint32_t round = 0; round < kills; ++round) {
    SwitchProcess sw;
    ASSERT_TRUE(sw.Start(data, listen)) << "round " << round;
    const auto kill_at = Clock::now() + std::chrono::milliseconds(30 + rng() % 250);
    std::vector<std::thread> threads;
    for (auto& t : terminals) {
      threads.emplace_back([&, port = sw.port()] { t->RunRound(port, kill_at + 5s); });
    }
    for (auto& f : storefronts) {
      threads.emplace_back([&, port = sw.http_port()] { f->RunRound(port, kill_at + 5s); });
    }
    std::this_thread::sleep_until(kill_at);
    sw.Kill();
    for (std::thread& th : threads) th.join();
  }
  const double load_s = std::chrono::duration<double>(Clock::now() - started).count();

  // Last restart: everything in flight resolved, every answer asked again.
  SwitchProcess sw;
  ASSERT_TRUE(sw.Start(data, listen));
  {
    std::vector<std::thread> threads;
    for (auto& t : terminals) threads.emplace_back([&, port = sw.port()] { t->RunFinal(port); });
    for (auto& f : storefronts) {
      threads.emplace_back([&, port = sw.http_port()] { f->RunFinal(port); });
    }
    for (std::thread& th : threads) th.join();
  }
  ASSERT_EQ(sw.Stop(), 0);
  ASSERT_EQ(counters.retries_different.load(), 0u);
  ASSERT_EQ(http_counters.replays_different.load(), 0u);

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
  uint64_t http_acknowledged = 0, http_checked = 0, http_lost = 0, http_unanswered = 0;
  std::map<int, uint64_t> http_codes;
  {
    ledger::Options lo;
    lo.path = data + "/ledger";
    Result<std::unique_ptr<ledger::Ledger>> opened = ledger::Ledger::Open(lo);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    ledger::Ledger& l = **opened;
    // The HTTP payments answered 201: each in the ledger once, under the
    // request its RRN names (an automatic capture is one 0200 purchase).
    for (const auto& f : storefronts) {
      for (const HttpOp& op : f->ops()) {
        if (!op.answered) {
          ++http_unanswered;
          continue;
        }
        ++http_codes[op.status];
        if (op.status != 201 && op.status != 200) continue;
        ++http_acknowledged;
        std::optional<PaymentRecord> p = op.payment_id.size() > 4
                                             ? LookupPaymentByRrn(l, op.payment_id.substr(4))
                                             : std::nullopt;
        if (!p || p->response_code != 0 || p->hold) {
          ++http_lost;
          continue;
        }
        ++http_checked;
        EXPECT_EQ(p->amount_minor, op.amount_minor);
        ledger::Transfer t;
        t.id = p->transfer;
        t.amount_minor = op.amount_minor;
        t.ledger = op.currency;
        t.code = 102;
        EXPECT_EQ(expected.count(t.id), 0u) << "two payments on one transfer";
        expected[t.id] = t;
      }
    }
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
      "[ crash ] %u kills in %.1f s; ISO: %llu requests answered (%s), %llu in flight at a kill "
      "(retransmitted after restart), %llu retransmissions gave the same answer; "
      "%llu acknowledged operations (ISO and HTTP) checked in the ledger (%zu holds), lost %llu\n",
      kills, load_s, static_cast<unsigned long long>(total_answered), code_text.c_str(),
      static_cast<unsigned long long>(counters.in_flight_at_kill.load()),
      static_cast<unsigned long long>(counters.retries_same.load()),
      static_cast<unsigned long long>(checked), hold_state.size(),
      static_cast<unsigned long long>(lost));
  std::string http_code_text;
  uint64_t http_answered = 0;
  for (const auto& [status, n] : http_codes) {
    http_code_text += ' ';  // appended: GCC 12's -Wrestrict misfires on "lit" + string&&
    http_code_text += std::to_string(status);
    http_code_text += '=';
    http_code_text += std::to_string(n);
    http_answered += n;
  }
  std::printf(
      "[ crash ] HTTP: %llu payments answered (%s), %llu in flight at a kill and %llu answered "
      "503 (repeated with the same key), %llu Idempotency-Key repeats gave the same answer; "
      "%llu acknowledged payments checked in the ledger, lost %llu\n",
      static_cast<unsigned long long>(http_answered), http_code_text.c_str(),
      static_cast<unsigned long long>(http_counters.in_flight_at_kill.load()),
      static_cast<unsigned long long>(http_counters.unavailable.load()),
      static_cast<unsigned long long>(http_counters.replays_same.load()),
      static_cast<unsigned long long>(http_checked), static_cast<unsigned long long>(http_lost));
  EXPECT_EQ(http_unanswered, 0u);
  EXPECT_EQ(http_counters.internal_error.load(), 0u);
  EXPECT_EQ(http_lost, 0u);
  EXPECT_GE(http_acknowledged, kills);  // HTTP load between the kills too
  // Every payment is approved: the cards hold far more than the test spends.
  EXPECT_EQ(http_acknowledged, http_answered) << http_code_text;
  EXPECT_EQ(unanswered, 0u);
  EXPECT_EQ(lost, 0u);
  EXPECT_GE(acknowledged, 2u * kills);  // there was load between the kills
  // Every request is approved: the cards hold far more than the test spends.
  EXPECT_EQ(acknowledged, total_answered) << code_text;
}

}  // namespace
}  // namespace narae::switching
