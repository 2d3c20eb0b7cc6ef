// Private to ledger/: an open-addressing hash table keyed by a 128-bit id,
// for the engine's hot maps (the group's new transfers, failed ids and
// resolved holds, the open holds, the accounts' index).
//
// Why not std::unordered_map: it allocates a node per entry, computes the
// bucket with a division, and its clear() walks and frees every node. Here
// the entries live in one array (no allocation per entry), the bucket is a
// mask of the hash, a byte per slot (0 = empty, else 7 bits of the hash)
// rejects most non-matching slots without comparing 16-byte keys, and
// Clear() keeps the capacity (a memset of the control bytes), so a table
// recycled across groups stops allocating once it has grown.
//
// Linear probing with backward-shift erase (no tombstones: a lookup stops at
// the first empty slot, and erasing never leaves the table slower). Load at
// most 1/2. Values must be trivially copyable (an erased or cleared slot is
// left as it was and simply overwritten later).
//
// find() returns a pointer to the entry (`->first`, `->second`) or end()
// (nullptr), so call sites written for std::unordered_map's find/end
// compile unchanged. Pointers are invalidated by any insert (growth) and by
// erase (entries shift back). Not thread-safe.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "ledger/ledger.hpp"
#include "ledger/status.hpp"

namespace narae::ledger {

// The table's 64-bit hash of an id: both halves mixed (ids may be
// sequential in either half), then a full 64-bit finalizer (murmur3's
// fmix64) so that the low bits (the bucket) and the top bits (the control
// byte) are both well spread.
inline uint64_t FlatIdHash(const U128& v) {
  uint64_t x = v.lo ^ (v.hi * 0x9E3779B97F4A7C15ull);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

template <typename K, typename V>
class FlatIdMap {
 public:
  static_assert(std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>);
  using value_type = std::pair<K, V>;
  using iterator = value_type*;
  using const_iterator = const value_type*;
  // The smallest table allocated, and the most entries (a programming
  // error past it: the engine's tables are bounded far lower by memory).
  static constexpr size_t kSlotsMin = 16;
  static constexpr size_t kEntriesMax = size_t{1} << 30;

  FlatIdMap() = default;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return ctrl_.size(); }
  iterator end() { return nullptr; }
  const_iterator end() const { return nullptr; }

  static uint64_t Hash(const K& key) { return FlatIdHash(key.value); }

  iterator find(const K& key) { return Find(key, Hash(key)); }
  const_iterator find(const K& key) const {
    return const_cast<FlatIdMap*>(this)->Find(key, Hash(key));
  }
  size_t count(const K& key) const { return find(key) != nullptr ? 1 : 0; }
  // With the hash already computed (Hash(key)): one hash for several tables.
  iterator Find(const K& key, uint64_t hash) {
    if (size_ == 0) return nullptr;
    const size_t mask = ctrl_.size() - 1;
    const uint8_t tag = Tag(hash);
    size_t i = hash & mask;
    for (size_t probes = 0; probes <= mask; ++probes, i = (i + 1) & mask) {
      const uint8_t c = ctrl_[i];
      if (c == 0) return nullptr;
      if (c == tag && slots_[i].first == key) return &slots_[i];
    }
    NARAE_CHECK(false);  // never full: the load is at most 1/2
    return nullptr;
  }

  // The entry of `key`, inserted (value-initialized) when absent: `second`
  // says whether it was inserted. One probe sequence for the lookup and the
  // insert.
  std::pair<iterator, bool> TryEmplace(const K& key) { return TryEmplace(key, Hash(key)); }
  std::pair<iterator, bool> TryEmplace(const K& key, uint64_t hash) {
    if ((size_ + 1) * 2 > ctrl_.size()) Grow();
    const size_t mask = ctrl_.size() - 1;
    const uint8_t tag = Tag(hash);
    size_t i = hash & mask;
    for (size_t probes = 0; probes <= mask; ++probes, i = (i + 1) & mask) {
      const uint8_t c = ctrl_[i];
      if (c == 0) {
        NARAE_CHECK(size_ < kEntriesMax);
        ctrl_[i] = tag;
        slots_[i].first = key;
        slots_[i].second = V{};
        ++size_;
        return {&slots_[i], true};
      }
      if (c == tag && slots_[i].first == key) return {&slots_[i], false};
    }
    NARAE_CHECK(false);
    return {nullptr, false};
  }
  V& operator[](const K& key) { return TryEmplace(key).first->second; }
  // Inserts or overwrites.
  void Put(const K& key, const V& value) { TryEmplace(key).first->second = value; }

  // Removes the entry `it` points at (from find): the entries after it in
  // its probe run shift back, so no tombstone is left.
  void erase(iterator it) {
    NARAE_CHECK(it != nullptr && size_ > 0);
    const size_t mask = ctrl_.size() - 1;
    size_t hole = static_cast<size_t>(it - slots_.data());
    NARAE_CHECK(hole <= mask && ctrl_[hole] != 0);
    size_t i = hole;
    for (size_t probes = 0; probes <= mask; ++probes) {
      i = (i + 1) & mask;
      if (ctrl_[i] == 0) break;
      // The entry at i may fill the hole when its home bucket is not in
      // (hole, i] (cyclically): then the hole is on its probe path.
      const size_t home = Hash(slots_[i].first) & mask;
      if (((i - home) & mask) >= ((i - hole) & mask)) {
        ctrl_[hole] = ctrl_[i];
        slots_[hole] = slots_[i];
        hole = i;
      }
    }
    ctrl_[hole] = 0;
    --size_;
  }
  size_t erase(const K& key) {
    iterator it = find(key);
    if (it == nullptr) return 0;
    erase(it);
    return 1;
  }

  // Empties the table, keeping its capacity.
  void clear() {
    if (size_ != 0) std::memset(ctrl_.data(), 0, ctrl_.size());
    size_ = 0;
  }
  // Empties the table and frees its memory.
  void Release() {
    ctrl_ = {};
    slots_ = {};
    size_ = 0;
  }
  // Room for `n` entries without growing.
  void reserve(size_t n) {
    NARAE_CHECK(n <= kEntriesMax);
    while (n * 2 > ctrl_.size()) Grow();
  }

  // Calls fn(key, value) for every entry, in table order (unspecified).
  template <typename Fn>
  void ForEach(Fn fn) const {
    if (size_ == 0) return;
    for (size_t i = 0; i < ctrl_.size(); ++i) {
      if (ctrl_[i] != 0) fn(slots_[i].first, slots_[i].second);
    }
  }

 private:
  // 0 marks an empty slot: the tag has its top bit set.
  static uint8_t Tag(uint64_t hash) { return static_cast<uint8_t>((hash >> 57) | 0x80); }

  void Grow() {
    const size_t slots = ctrl_.empty() ? kSlotsMin : ctrl_.size() * 2;
    NARAE_CHECK(slots / 2 <= kEntriesMax);
    // The new arrays take the members' place; the old ones are rehashed in.
    std::vector<uint8_t> old_ctrl(slots, 0);
    std::vector<value_type> old_slots(slots);
    old_ctrl.swap(ctrl_);    // ctrl_: the new, empty control bytes
    old_slots.swap(slots_);  // slots_: the new entries
    const size_t mask = slots - 1;
    for (size_t j = 0; j < old_ctrl.size(); ++j) {
      if (old_ctrl[j] == 0) continue;
      size_t i = Hash(old_slots[j].first) & mask;
      for (size_t probes = 0; ctrl_[i] != 0; ++probes, i = (i + 1) & mask) {
        NARAE_CHECK(probes <= mask);
      }
      ctrl_[i] = old_ctrl[j];
      slots_[i] = old_slots[j];
    }
  }

  std::vector<uint8_t> ctrl_;      // per slot: 0 empty, else Tag(hash)
  std::vector<value_type> slots_;  // the entries (meaningful where ctrl_ != 0)
  size_t size_ = 0;
};

}  // namespace narae::ledger
