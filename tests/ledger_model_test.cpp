// Randomized test: thousands of random batches (holds, posts, voids,
// expiries, linked chains, duplicates, failures) against a simple in-memory
// model. Results, balances and the debits = credits invariant must agree,
// also across restarts.
#include <map>
#include <random>

#include "tests/ledger_fixture.hpp"

namespace narae::testing {
namespace {

namespace tf = transfer_flags;
namespace af = account_flags;
using TR = CreateTransferResult;
using AR = CreateAccountResult;

struct MAccount {
  uint32_t ledger = 0;
  uint16_t flags = 0;
  uint64_t minimum = 0, overdraft = 0;
  uint64_t dp = 0, dpo = 0, cp = 0, cpo = 0;
};
enum class MHold { kOpen, kPosted, kVoided, kExpired };

// The model: deliberately simple, copies its whole state to roll back a chain.
struct Model {
  std::map<uint64_t, MAccount> accounts;
  std::map<uint64_t, Transfer> transfers;
  std::map<uint64_t, MHold> holds;
  std::map<uint64_t, uint64_t> expires_at;
  std::set<uint64_t> failed;

  void ExpireDue(uint64_t now) {
    for (auto& [id, state] : holds) {
      if (state != MHold::kOpen || expires_at[id] == 0 || expires_at[id] > now) continue;
      const Transfer& h = transfers.at(id);
      accounts[h.debit_account_id.value.lo].dp -= h.amount_minor;
      accounts[h.credit_account_id.value.lo].cp -= h.amount_minor;
      state = MHold::kExpired;
    }
  }

  TR DebitLimit(const MAccount& a, uint64_t amount) const {
    if (!(a.flags & af::kDebitsMustNotExceedCredits)) return TR::kOk;
    __int128 debits = static_cast<__int128>(a.dp) + a.dpo + amount;
    __int128 room = static_cast<__int128>(a.cpo) + a.overdraft;
    if (debits <= room - a.minimum) return TR::kOk;
    if (a.minimum > 0 && debits <= room) return TR::kBelowMinimumBalance;
    return a.overdraft > 0 ? TR::kExceedsOverdraftLimit : TR::kExceedsCredits;
  }

  TR Apply(const Transfer& t, uint64_t ts) {
    const uint64_t id = t.id.value.lo;
    if (id == 0) return TR::kIdMustNotBeZero;
    const bool post = t.flags & tf::kPostPendingTransfer;
    const bool void_ = t.flags & tf::kVoidPendingTransfer;
    if (auto it = transfers.find(id); it != transfers.end()) {
      const Transfer& s = it->second;
      if ((post || void_) && t.amount_minor == 0) return TR::kExists;
      return t.amount_minor == s.amount_minor ? TR::kExists : TR::kExistsWithDifferentAmount;
    }
    if (failed.count(id)) return TR::kIdAlreadyFailed;
    if (post || void_) {
      const uint64_t pid = t.pending_id.value.lo;
      auto p = transfers.find(pid);
      if (p == transfers.end()) return TR::kPendingTransferNotFound;
      if (!(p->second.flags & tf::kPending)) return TR::kPendingTransferNotPending;
      uint64_t amount = p->second.amount_minor;
      if (post && t.amount_minor != 0) amount = t.amount_minor;
      if (post && amount > p->second.amount_minor) return TR::kExceedsPendingTransferAmount;
      switch (holds.at(pid)) {
        case MHold::kPosted:
          return TR::kPendingTransferAlreadyPosted;
        case MHold::kVoided:
          return TR::kPendingTransferAlreadyVoided;
        case MHold::kExpired:
          return TR::kPendingTransferExpired;
        case MHold::kOpen:
          break;
      }
      MAccount& d = accounts[p->second.debit_account_id.value.lo];
      MAccount& c = accounts[p->second.credit_account_id.value.lo];
      d.dp -= p->second.amount_minor;
      c.cp -= p->second.amount_minor;
      if (post) {
        d.dpo += amount;
        c.cpo += amount;
      }
      holds[pid] = post ? MHold::kPosted : MHold::kVoided;
      Transfer stored = t;
      stored.amount_minor = amount;
      transfers[id] = stored;
      return TR::kOk;
    }
    auto d = accounts.find(t.debit_account_id.value.lo);
    if (d == accounts.end()) return TR::kDebitAccountNotFound;
    auto c = accounts.find(t.credit_account_id.value.lo);
    if (c == accounts.end()) return TR::kCreditAccountNotFound;
    if (d->second.ledger != c->second.ledger) return TR::kAccountsMustHaveTheSameLedger;
    if (t.ledger != d->second.ledger) return TR::kTransferMustHaveTheSameLedgerAsAccounts;
    if (TR r = DebitLimit(d->second, t.amount_minor); r != TR::kOk) return r;
    if (t.flags & tf::kPending) {
      d->second.dp += t.amount_minor;
      c->second.cp += t.amount_minor;
      holds[id] = MHold::kOpen;
      expires_at[id] = t.timeout_s ? ts + uint64_t{t.timeout_s} * kSecondNs : 0;
    } else {
      d->second.dpo += t.amount_minor;
      c->second.cpo += t.amount_minor;
    }
    transfers[id] = t;
    return TR::kOk;
  }
};

class LedgerModel : public LedgerTest, public ::testing::WithParamInterface<uint64_t> {};

TEST_P(LedgerModel, RandomBatchesMatchTheModel) {
  std::mt19937_64 rng(GetParam());
  auto uniform = [&](uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };
  Model model;
  // Accounts 1..16: 1 and 9 are funding accounts (unprotected), the rest
  // customers/merchants, protected with random reserves; 1-8 KPW, 9-16 USD.
  std::vector<Account> accounts;
  for (uint64_t id = 1; id <= 16; ++id) {
    uint32_t ledger = id <= 8 ? kKpw : kUsd;
    Account a = Acc(id, 0, ledger);
    if (id != 1 && id != 9 && uniform(0, 3) != 0) {
      a.flags = af::kDebitsMustNotExceedCredits;
      a.minimum_balance_minor = uniform(0, 2) == 0 ? uniform(1, 300) : 0;
      a.overdraft_limit_minor = uniform(0, 3) == 0 ? uniform(1, 300) : 0;
    }
    accounts.push_back(a);
    model.accounts[id] = {ledger, a.flags, a.minimum_balance_minor, a.overdraft_limit_minor};
  }
  auto created = ledger_->CreateAccounts(accounts);
  ASSERT_TRUE(created.ok());
  for (const auto& r : *created) ASSERT_EQ(r.result, AR::kOk);

  uint64_t next_id = 1;
  std::vector<uint64_t> pending_ids;
  std::vector<Transfer> sent;
  uint64_t checked = 0;
  constexpr int kBatches = 600;
  for (int batch = 0; batch < kBatches; ++batch) {
    Advance(uniform(1, 3));
    model.ExpireDue(clock_ns_.load());
    std::vector<Transfer> b;
    const size_t n = uniform(1, 12);
    for (size_t i = 0; i < n; ++i) {
      Transfer t;
      const uint64_t kind = uniform(0, 99);
      if (kind < 8 && !sent.empty()) {
        t = sent[uniform(0, sent.size() - 1)];  // a retry, maybe altered
        if (uniform(0, 2) == 0 &&
            !(t.flags & (tf::kPostPendingTransfer | tf::kVoidPendingTransfer))) {
          t.amount_minor += 1;
        }
        t.flags &= static_cast<uint16_t>(~tf::kLinked);
      } else if (kind < 30 && !pending_ids.empty()) {
        uint64_t pid = pending_ids[uniform(0, pending_ids.size() - 1)];
        t = uniform(0, 2) == 0 ? VoidOf(next_id++, pid) : PostOf(next_id++, pid);
        if (t.flags & tf::kPostPendingTransfer)
          t.amount_minor = uniform(0, 1) ? uniform(1, 400) : 0;
      } else {
        bool usd = uniform(0, 3) == 0;
        uint64_t base = usd ? 8 : 0;
        uint64_t dr = base + uniform(1, 8), cr = base + uniform(1, 8);
        if (uniform(0, 40) == 0) cr = 50;            // unknown account
        if (uniform(0, 40) == 0) cr = usd ? 2 : 10;  // other currency
        if (dr == cr) cr = base + (cr % 8) + 1;
        if (dr == cr) continue;
        t = Xfer(next_id++, dr, cr, uniform(1, 500), 0, usd ? kUsd : kKpw);
        if (dr == base + 1) t.amount_minor *= 20;  // funding
        if (uniform(0, 2) == 0) {
          t.flags = tf::kPending;
          t.timeout_s = static_cast<uint32_t>(uniform(0, 1) ? uniform(1, 6) : 0);
          pending_ids.push_back(t.id.value.lo);
        }
      }
      if (uniform(0, 4) == 0) t.flags |= tf::kLinked;
      b.push_back(t);
    }
    if (b.empty()) continue;
    auto out = ledger_->CreateTransfers(b);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    // Apply to the model chain by chain.
    size_t i = 0;
    while (i < b.size()) {
      size_t end = i;
      while (end < b.size() && (b[end].flags & tf::kLinked)) ++end;
      bool open = end == b.size();
      if (open) end = b.size() - 1;
      Model saved = model;
      std::vector<TR> results;
      bool failed = false;
      for (size_t k = i; k <= end; ++k) {
        TR r =
            (open && k == end) ? TR::kLinkedEventChainOpen : model.Apply(b[k], (*out)[k].timestamp);
        results.push_back(r);
        if (r != TR::kOk && r != TR::kExists) {
          failed = true;
          model = saved;
          for (size_t j = 0; j < results.size() - 1; ++j) results[j] = TR::kLinkedEventFailed;
          for (size_t j = k + 1; j <= end; ++j) results.push_back(TR::kLinkedEventFailed);
          if (i == end && r >= TR::kDebitAccountNotFound && r != TR::kIdAlreadyFailed) {
            model.failed.insert(b[k].id.value.lo);
          }
          break;
        }
      }
      for (size_t k = i; k <= end; ++k) {
        ASSERT_EQ((*out)[k].result, results[k - i])
            << "batch " << batch << " event " << k << ": ledger " << ResultName((*out)[k].result)
            << ", model " << ResultName(results[k - i]);
        ++checked;
      }
      (void)failed;
      i = end + 1;
    }
    for (size_t k = 0; k < b.size(); ++k) {
      if ((*out)[k].result == TR::kOk) sent.push_back(b[k]);
    }
    if (batch % 50 == 0 || batch == kBatches - 1) {
      if (batch % 200 == 100) {
        uint64_t open_before = ledger_->Stats().open_holds;
        Reopen();
        ASSERT_EQ(ledger_->Stats().open_holds, open_before) << "open holds lost in reopen";
      }
      // Let due expiries run before comparing. The clock moves first so the
      // group's time is the clock, not the last timestamp + 1.
      Advance(1);
      ASSERT_OK(ledger_->Tick());
      model.ExpireDue(clock_ns_.load());
      __int128 sum_d[2] = {0, 0}, sum_c[2] = {0, 0};
      for (const auto& [id, m] : model.accounts) {
        Account a = Get(id);
        ASSERT_EQ(a.debits_pending, m.dp) << "account " << id << " batch " << batch;
        ASSERT_EQ(a.debits_posted, m.dpo) << "account " << id;
        if (a.credits_pending != m.cp) {
          for (const auto& [hid, st] : model.holds) {
            auto h = ledger_->LookupHold(TransferId::From(hid));
            int ls = h ? int(h->state) : -1;
            int ms = int(st) + 1;
            if (ls != ms) {
              std::printf(
                  "hold %llu: ledger state %d, model %d, expires %llu now %llu amount %llu cr "
                  "%llu\n",
                  (unsigned long long)hid, ls, ms, (unsigned long long)model.expires_at[hid],
                  (unsigned long long)clock_ns_.load(),
                  (unsigned long long)model.transfers[hid].amount_minor,
                  (unsigned long long)model.transfers[hid].credit_account_id.value.lo);
            }
          }
        }
        ASSERT_EQ(a.credits_pending, m.cp) << "account " << id << " batch " << batch;
        ASSERT_EQ(a.credits_posted, m.cpo) << "account " << id;
        int l = m.ledger == kKpw ? 0 : 1;
        sum_d[l] += a.debits_pending + a.debits_posted;
        sum_c[l] += a.credits_pending + a.credits_posted;
      }
      EXPECT_TRUE(sum_d[0] == sum_c[0] && sum_d[1] == sum_c[1]);
    }
  }
  ExpectVerified();
  EXPECT_GT(checked, 2000u);
  std::printf("model test seed %llu: %llu results checked\n", (unsigned long long)GetParam(),
              (unsigned long long)checked);
}

INSTANTIATE_TEST_SUITE_P(Seeds, LedgerModel, ::testing::Values(1, 2, 3, 4));

}  // namespace
}  // namespace narae::testing
