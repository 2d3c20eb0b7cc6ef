// The engine's open-addressing table (ledger/flat_map.hpp) against
// std::unordered_map: random inserts, lookups, erases (backward shift),
// clears that keep the capacity, and growth, with ids chosen to collide in
// the table's low bits.
#include "ledger/flat_map.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <unordered_map>
#include <vector>

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

}  // namespace
}  // namespace narae::ledger
