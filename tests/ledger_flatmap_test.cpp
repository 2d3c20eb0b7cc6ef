// The engine's tables. Its open-addressing table (ledger/flat_map.hpp)
// against std::unordered_map: random inserts, lookups, erases (backward
// shift), clears that keep the capacity, and growth, with ids chosen to
// collide in the table's low bits. And its expiry heap (lazy deletion)
// against a std::set of the open holds' expiries.
#include "ledger/flat_map.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "ledger/engine.hpp"

namespace narae::ledger {
namespace {

using Map = FlatIdMap<TransferId, uint64_t>;
using Ref = std::unordered_map<TransferId, uint64_t, IdHash>;

void ExpectSame(const Map& m, const Ref& ref) {
  ASSERT_EQ(m.size(), ref.size());
  for (const auto& [id, v] : ref) {
    auto it = m.find(id);
    ASSERT_NE(it, m.end()) << id.ToHex();
    EXPECT_EQ(it->first, id);
    EXPECT_EQ(it->second, v);
  }
  size_t seen = 0;
  m.ForEach([&](const TransferId& id, uint64_t v) {
    ++seen;
    auto it = ref.find(id);
    ASSERT_NE(it, ref.end()) << id.ToHex();
    EXPECT_EQ(it->second, v);
  });
  EXPECT_EQ(seen, ref.size());
}

TEST(FlatIdMap, EmptyTable) {
  Map m;
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.capacity(), 0u);
  EXPECT_EQ(m.find(TransferId::From(1)), m.end());
  EXPECT_EQ(m.erase(TransferId::From(1)), 0u);
  m.clear();
  EXPECT_EQ(m.capacity(), 0u);
}

TEST(FlatIdMap, TryEmplaceFindsOrInserts) {
  Map m;
  auto [it, inserted] = m.TryEmplace(TransferId::From(7));
  EXPECT_TRUE(inserted);
  EXPECT_EQ(it->second, 0u);  // value-initialized
  it->second = 70;
  auto [again, inserted_again] = m.TryEmplace(TransferId::From(7));
  EXPECT_FALSE(inserted_again);
  EXPECT_EQ(again->second, 70u);
  m[TransferId::From(8)] = 80;
  m.Put(TransferId::From(8), 81);
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(m.find(TransferId::From(8))->second, 81u);
  EXPECT_EQ(m.count(TransferId::From(9)), 0u);
  // A precomputed hash finds the same entry.
  EXPECT_EQ(m.Find(TransferId::From(7), Map::Hash(TransferId::From(7))),
            m.find(TransferId::From(7)));
}

TEST(FlatIdMap, ClearKeepsCapacityAndGrowthKeepsEntries) {
  Map m;
  for (uint64_t i = 1; i <= 1000; ++i) m[TransferId::From(i)] = i * 3;
  EXPECT_EQ(m.size(), 1000u);
  const size_t cap = m.capacity();
  EXPECT_GE(cap, 2000u);  // load at most 1/2
  for (uint64_t i = 1; i <= 1000; ++i) ASSERT_EQ(m.find(TransferId::From(i))->second, i * 3);
  m.clear();
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.capacity(), cap);
  for (uint64_t i = 1; i <= 1000; ++i) ASSERT_EQ(m.find(TransferId::From(i)), m.end());
  for (uint64_t i = 1; i <= 1000; ++i) m[TransferId::From(i + 5000)] = i;
  EXPECT_EQ(m.capacity(), cap);  // refilled to the same size: no growth
  m.Release();
  EXPECT_EQ(m.capacity(), 0u);
  m.reserve(100);
  EXPECT_GE(m.capacity(), 200u);
}

// Ids whose table hashes share their low bits pile into long probe runs:
// erase must shift the run back correctly (including across the table's
// end), or later lookups miss.
TEST(FlatIdMap, EraseInCollidingRunsAcrossTheWrap) {
  Map m;
  m.reserve(64);  // 128 slots
  const uint64_t mask = m.capacity() - 1;
  std::vector<TransferId> ids;
  for (uint64_t i = 1; ids.size() < 40 && i < 1'000'000; ++i) {
    TransferId id{U128{i, i * 7}};
    const uint64_t home = Map::Hash(id) & mask;
    if (home >= mask - 3 || home <= 2) ids.push_back(id);  // homes near the wrap
  }
  ASSERT_EQ(ids.size(), 40u);
  Ref ref;
  for (size_t k = 0; k < ids.size(); ++k) {
    m[ids[k]] = k;
    ref[ids[k]] = k;
  }
  ASSERT_EQ(m.capacity(), mask + 1);
  std::mt19937_64 rng(5);
  std::vector<TransferId> order = ids;
  std::shuffle(order.begin(), order.end(), rng);
  for (const TransferId& id : order) {
    EXPECT_EQ(m.erase(id), 1u);
    ref.erase(id);
    ExpectSame(m, ref);
  }
  EXPECT_TRUE(m.empty());
}

TEST(FlatIdMap, RandomizedAgainstUnorderedMap) {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937_64 rng(seed);
    Map m;
    Ref ref;
    // A small id space: inserts hit existing keys and erases hit present
    // ones often. Some seeds use sequential low halves, some random ones.
    const uint64_t space = seed % 2 ? 512 : 4096;
    auto random_id = [&] {
      uint64_t k = rng() % space + 1;
      return seed % 4 < 2 ? TransferId{U128{0, k}} : TransferId{U128{k * 0x1000193, k}};
    };
    for (int step = 0; step < 60'000; ++step) {
      const uint64_t op = rng() % 100;
      const TransferId id = random_id();
      if (op < 45) {
        const uint64_t v = rng();
        auto [it, inserted] = m.TryEmplace(id);
        auto [rit, rinserted] = ref.try_emplace(id, 0);
        ASSERT_EQ(inserted, rinserted);
        ASSERT_EQ(it->second, rit->second);
        it->second = v;
        rit->second = v;
      } else if (op < 75) {
        auto it = m.find(id);
        auto rit = ref.find(id);
        ASSERT_EQ(it == m.end(), rit == ref.end());
        if (it != m.end()) {
          ASSERT_EQ(it->second, rit->second);
        }
      } else if (op < 99) {
        ASSERT_EQ(m.erase(id), ref.erase(id));
      } else if (rng() % 8 == 0) {
        const size_t cap = m.capacity();
        m.clear();
        ref.clear();
        ASSERT_EQ(m.capacity(), cap);
      }
      ASSERT_EQ(m.size(), ref.size());
      if (step % 5000 == 0) ExpectSame(m, ref);
    }
    ExpectSame(m, ref);
  }
}

// The engine swaps a group's tables out and gets recycled ones back.
TEST(FlatIdMap, SwapMovesTheEntries) {
  Map a;
  Map b;
  a[TransferId::From(1)] = 10;
  b[TransferId::From(2)] = 20;
  b[TransferId::From(3)] = 30;
  std::swap(a, b);
  EXPECT_EQ(a.size(), 2u);
  EXPECT_EQ(a.find(TransferId::From(3))->second, 30u);
  EXPECT_EQ(b.size(), 1u);
  EXPECT_EQ(b.find(TransferId::From(1))->second, 10u);
  EXPECT_EQ(b.find(TransferId::From(2)), b.end());
}

// Nothing older than the engine's memory.
class NoStore : public Store {
 public:
  std::optional<Transfer> FindTransfer(TransferId) override { return std::nullopt; }
  IdState FindId(TransferId) override { return {}; }
  std::optional<HoldDone> FindHoldDone(TransferId) override { return std::nullopt; }
};

// Holds opened (some never expire), posted, voided, expired, and opened and
// closed inside chains that fail (rolled back: a hold reopened by a rollback
// has two heap entries), past the point where stale entries are compacted:
// ExpireDue() expires exactly the due holds in (expiry, id) order and
// NextExpiry() is always the earliest open hold's expiry.
TEST(EngineExpiry, HeapMatchesAnOrderedSetOfOpenHolds) {
  namespace tf = transfer_flags;
  using TR = CreateTransferResult;
  constexpr uint64_t kNs = 1'000'000'000ull;
  NoStore store;
  Engine engine(&store);
  std::mt19937_64 rng(11);
  uint64_t clock_ns = 1000 * kNs;
  auto group = std::make_unique<Group>();
  engine.BeginGroup(group.get(), clock_ns);
  std::vector<Account> accounts(2);
  for (uint64_t i = 0; i < 2; ++i) {
    accounts[i].id = AccountId::From(i + 1);
    accounts[i].ledger = 840;
    accounts[i].code = 1;
  }
  for (const AccountOutcome& o : engine.CreateAccounts(accounts)) {
    ASSERT_EQ(o.result, CreateAccountResult::kOk);
  }
  std::set<std::pair<uint64_t, TransferId>> ref;  // open holds with an expiry
  std::vector<TransferId> open;                   // every open hold
  uint64_t next_id = 100;
  auto pending = [&](uint16_t flags) {
    Transfer t;
    t.id = TransferId::From(next_id++);
    t.debit_account_id = AccountId::From(1);
    t.credit_account_id = AccountId::From(2);
    t.amount_minor = 5;
    t.ledger = 840;
    t.code = 1;
    t.flags = static_cast<uint16_t>(tf::kPending | flags);
    // Never, soon (expires before it is resolved), or late (its entry goes
    // stale deep in the heap when resolved: compactions).
    const uint64_t kind = rng() % 4;
    t.timeout_s = kind == 0   ? 0
                  : kind == 1 ? static_cast<uint32_t>(1 + rng() % 30)
                              : static_cast<uint32_t>(20'000 + rng() % 20'000);
    return t;
  };
  auto resolve = [&](TransferId hold, uint16_t flags) {
    Transfer t;
    t.id = TransferId::From(next_id++);
    t.pending_id = hold;
    t.flags = flags;
    return t;
  };
  size_t expired_total = 0;
  size_t closed_with_expiry = 0;
  size_t entries_before = 0;
  size_t live_max = 0;
  size_t compactions = 0;
  for (int step = 0; step < 12'000; ++step) {
    clock_ns += rng() % (2 * kNs);
    group = std::make_unique<Group>();
    engine.BeginGroup(group.get(), clock_ns);
    const size_t max = 1 + rng() % 8;
    std::vector<TransferId> due;
    for (auto it = ref.begin(); it != ref.end() && it->first <= engine.group_base(); ++it) {
      if (due.size() == max) break;
      due.push_back(it->second);
    }
    ASSERT_EQ(engine.ExpireDue(max), due.size()) << step;
    std::vector<TransferId> got;
    for (const codec::Event& e : group->events) {
      if (e.kind == codec::EventKind::kHoldExpired) got.push_back(e.expiry.pending_id);
    }
    ASSERT_EQ(got, due) << step;
    for (const TransferId& id : due) {
      ref.erase(ref.begin());
      open.erase(std::find(open.begin(), open.end(), id));
    }
    expired_total += due.size();
    // Phases that open more holds than they close, then close more.
    const bool opening = (step / 3000) % 2 == 0;
    const uint64_t op = rng() % 100;
    if (op < (opening ? 85 : 5) || open.empty()) {
      Transfer t = pending(0);
      std::vector<TransferOutcome> o = engine.CreateTransfers({&t, 1});
      ASSERT_EQ(o[0].result, TR::kOk);
      open.push_back(t.id);
      if (t.timeout_s != 0) ref.emplace(o[0].timestamp + t.timeout_s * kNs, t.id);
    } else if (op < 90) {
      const size_t k = rng() % open.size();
      Transfer t = resolve(open[k], op < 80 ? tf::kPostPendingTransfer : tf::kVoidPendingTransfer);
      ASSERT_EQ(engine.CreateTransfers({&t, 1})[0].result, TR::kOk);
      for (auto it = ref.begin(); it != ref.end(); ++it) {
        if (it->second == open[k]) {
          ref.erase(it);
          ++closed_with_expiry;
          break;
        }
      }
      open.erase(open.begin() + static_cast<ptrdiff_t>(k));
    } else {
      // A chain that opens a hold and closes another, then fails: both undone.
      std::vector<Transfer> chain = {
          pending(tf::kLinked),
          resolve(open[rng() % open.size()], tf::kPostPendingTransfer | tf::kLinked), pending(0)};
      chain[2].amount_minor = 0;  // amount_must_not_be_zero
      std::vector<TransferOutcome> o = engine.CreateTransfers(chain);
      ASSERT_EQ(o[0].result, TR::kLinkedEventFailed);
      ASSERT_EQ(o[1].result, TR::kLinkedEventFailed);
      ASSERT_EQ(o[2].result, TR::kAmountMustNotBeZero);
    }
    ASSERT_EQ(engine.NextExpiry(), ref.empty() ? 0 : ref.begin()->first) << step;
    ASSERT_EQ(engine.open_hold_count(), open.size());
    const size_t entries = engine.expiry_entries();
    // Entries are only added with a hold: bounded by the most ever open.
    live_max = std::max(live_max, ref.size());
    ASSERT_LE(entries, 2 * live_max + Engine::kExpiryStaleMin + 1);
    if (entries + 1000 < entries_before) ++compactions;
    entries_before = entries;
  }
  // Past every expiry: the holds still open expire, all of them, in order.
  clock_ns += 100'000 * kNs;
  for (int round = 0; round < 10'000 && !ref.empty(); ++round) {
    group = std::make_unique<Group>();
    engine.BeginGroup(group.get(), clock_ns);
    const size_t n = engine.ExpireDue(64);
    ASSERT_GT(n, 0u);
    for (const codec::Event& e : group->events) {
      ASSERT_EQ(e.kind, codec::EventKind::kHoldExpired);
      ASSERT_EQ(e.expiry.pending_id, ref.begin()->second);
      ref.erase(ref.begin());
    }
  }
  EXPECT_TRUE(ref.empty());
  EXPECT_EQ(engine.NextExpiry(), 0u);
  // The run went through expiries and past the compaction threshold.
  EXPECT_GT(expired_total, 500u);
  EXPECT_GE(compactions, 1u);
  EXPECT_GT(closed_with_expiry, 2500u);  // > 2 * kExpiryStaleMin: compacted
}

}  // namespace
}  // namespace narae::ledger
