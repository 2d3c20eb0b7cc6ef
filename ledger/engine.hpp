// Private to ledger/: the state machine. It validates and applies batches to
// the in-memory state (accounts and open holds) and records what must be
// written. It never touches the disk: lookups of older state go through the
// Store interface, and the caller turns a finished Group into one RocksDB
// write batch. Single-threaded: only the sequencer calls it.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ledger/codec.hpp"
#include "ledger/flat_map.hpp"
#include "ledger/ledger.hpp"

namespace narae::ledger {

struct HoldDone {
  HoldState state = HoldState::kPosted;
  uint64_t resolved_at = 0;
  uint64_t posted_amount_minor = 0;
};

// Lookups of state older than the current group (durable or in flight).
class Store {
 public:
  virtual ~Store() = default;
  virtual std::optional<Transfer> FindTransfer(TransferId id) = 0;
  // What an id already is: a stored transfer, a failed id (its result
  // code), or neither. One lookup answers both (the idempotency check).
  struct IdState {
    std::optional<Transfer> transfer;
    std::optional<uint32_t> failed_code;
  };
  virtual IdState FindId(TransferId id) = 0;
  virtual std::optional<HoldDone> FindHoldDone(TransferId id) = 0;
};

// Answers "this transfer id was certainly never stored" without a read, so
// a new transfer's idempotency check (a RocksDB point read of a key that
// nearly always does not exist, ~3,000 instructions) is skipped. A blocked
// bloom filter (256-bit blocks, 8 bits set per id, 16 bits of filter per id
// as designed): no false negatives, so it is exact; a "maybe" is answered by the read as
// before. Memory only: the ledger rebuilds it on open from the transfer_ids
// family and adds every id before the row holding it is handed to the
// writer, so it always covers what is durable or in flight (a group that
// then fails leaves extra ids: false positives, never wrong answers).
// When full it grows by a segment twice the size of the last (lookups probe
// every segment; old ids cannot be rehashed without their keys); past
// bytes_max (kBytesMax) it switches off and every answer is "maybe" until the
// next open. Single-threaded (the sequencer, or the open before it runs).
class IdFilter {
 public:
  static constexpr uint64_t kBitsPerId = 16;
  static constexpr uint64_t kIdsMin = uint64_t{1} << 20;  // the first segment: 2 MiB
  static constexpr uint64_t kBytesMax = uint64_t{128} << 20;

  // The first segment's minimum and the memory bound (tests shrink them).
  explicit IdFilter(uint64_t ids_min = kIdsMin, uint64_t bytes_max = kBytesMax)
      : ids_min_(ids_min), bytes_max_(bytes_max) {}

  // Empty and on, with room for at least `ids_expected` ids in its first
  // segment (when that alone would pass the memory bound it is off instead).
  void Reset(uint64_t ids_expected);
  // Every answer becomes "maybe"; the memory is released.
  void Disable();
  void Add(U128 id);
  // False only when `id` was never added since Reset().
  bool MayContain(U128 id) const;
  bool enabled() const { return enabled_; }
  size_t segments() const { return segments_.size(); }
  uint64_t bytes() const { return bytes_; }

 private:
  struct Segment {
    std::vector<uint32_t> words;  // blocks of 8 words (256 bits)
    uint64_t block_mask = 0;      // blocks - 1 (a power of two)
    uint64_t ids_max = 0;         // ids at the design rate
    uint64_t ids = 0;
  };
  bool AddSegment(uint64_t ids_max);
  uint64_t ids_min_;
  uint64_t bytes_max_;
  bool enabled_ = false;
  uint64_t bytes_ = 0;
  std::vector<Segment> segments_;
};

struct OpenHold {
  Transfer hold;
  uint64_t expires_at = 0;  // 0 = never
};

// The open holds by id: the holds in a dense vector (erase moves the last
// one into the hole) found through a flat table of indexes, so a table slot
// is 24 bytes instead of a hold's 144 (the table runs at a load of 1/4 to
// 1/2: a bank's many open holds would otherwise take 2-4 times their size).
// Pointers from Find() are valid until the next Put() or Erase().
class OpenHoldTable {
 public:
  OpenHold* Find(TransferId id) {
    auto it = index_.find(id);
    return it == index_.end() ? nullptr : &holds_[it->second];
  }
  const OpenHold* Find(TransferId id) const { return const_cast<OpenHoldTable*>(this)->Find(id); }
  // Inserts or overwrites the hold of h.hold.id.
  void Put(const OpenHold& h) {
    auto [it, inserted] = index_.TryEmplace(h.hold.id);
    if (!inserted) {
      holds_[it->second] = h;
      return;
    }
    NARAE_CHECK(holds_.size() < UINT32_MAX);
    it->second = static_cast<uint32_t>(holds_.size());
    holds_.push_back(h);
  }
  // REQUIRES: the hold is open.
  void Erase(TransferId id) {
    auto it = index_.find(id);
    NARAE_CHECK(it != index_.end());
    const uint32_t i = it->second;
    index_.erase(it);
    const size_t last = holds_.size() - 1;
    if (i != last) {
      holds_[i] = holds_[last];
      auto moved = index_.find(holds_[i].hold.id);
      NARAE_CHECK(moved != index_.end() && moved->second == last);
      moved->second = i;
    }
    holds_.pop_back();
  }
  size_t size() const { return holds_.size(); }
  void clear() {
    index_.clear();
    holds_.clear();
  }
  template <typename Fn>
  void ForEach(Fn fn) const {
    for (const OpenHold& h : holds_) fn(h.hold.id, h);
  }

 private:
  FlatIdMap<TransferId, uint32_t> index_;
  std::vector<OpenHold> holds_;  // holds_[index_[id]].hold.id == id
};

// What one group must write, in order.
struct Group {
  uint64_t first_timestamp = 0;
  uint64_t last_timestamp = 0;
  std::vector<codec::Event> events;
  // Accounts whose state this group changed (each once), in touch order.
  std::vector<const Account*> touched_accounts;
  std::vector<std::pair<TransferId, uint32_t>> failed;
  std::vector<std::pair<TransferId, OpenHold>> holds_opened;
  std::vector<std::pair<TransferId, HoldDone>> holds_done;
  // Index rows: account, timestamp, balances after (when history).
  struct IndexRow {
    AccountId account;
    uint64_t timestamp;
    bool history;
    uint64_t dp, dpo, cp, cpo;
  };
  std::vector<IndexRow> index_rows;
  std::vector<std::pair<std::string, std::string>> aux;
  size_t EventCount() const { return events.size(); }
};

class Engine {
 public:
  explicit Engine(Store* store) : store_(store) {}

  // State loading (at open).
  void LoadAccount(const Account& a);
  void LoadOpenHold(const OpenHold& h);
  // Applies a committed event's effect on balances and flags (used on open
  // to bring the lazily written account snapshots up to date). Returns
  // false when the event does not fit the state (corruption).
  bool ReplayEvent(const codec::Event& e);
  std::unordered_map<AccountId, Account, IdHash> CopyAccounts() const;

  // Starts a group whose first timestamp is > every earlier one.
  void BeginGroup(Group* group, uint64_t clock_ns);
  // Expires due holds (at most `max`), in expiry order.
  size_t ExpireDue(size_t max);

  std::vector<AccountOutcome> CreateAccounts(std::span<const Account> accounts);
  std::vector<TransferOutcome> CreateTransfers(std::span<const Transfer> transfers);
  std::vector<ChangeOutcome> ChangeAccounts(std::span<const AccountChange> changes);

  std::optional<Account> PeekAccount(AccountId id) const;
  const Account* FindAccount(AccountId id) const {
    auto it = accounts_.find(id);
    return it == accounts_.end() ? nullptr : &it->second->a;
  }
  // Accounts changed since the last call (for lazy snapshots), in id
  // order, and forget. The pointers stay valid until the accounts change.
  std::vector<const Account*> TakeDirty();
  size_t dirty_count() const { return dirty_.size(); }
  std::optional<HoldInfo> PeekHold(TransferId id);
  std::optional<Transfer> PeekTransfer(TransferId id);

  uint64_t last_timestamp() const { return last_timestamp_; }
  void set_last_timestamp(uint64_t ts) { last_timestamp_ = ts; }
  uint64_t group_base() const { return group_base_; }
  size_t account_count() const { return accounts_.size(); }
  size_t open_hold_count() const { return open_holds_.size(); }
  // Entries in the expiry heap, stale ones included (tests).
  size_t expiry_entries() const { return expiry_heap_.size(); }
  // Earliest expiry of an open hold, 0 when none.
  uint64_t NextExpiry() const;
  // What the current group created, failed and resolved, by id: the caller
  // keeps it visible to the Store until durable.
  // Flat tables (ledger/flat_map.hpp): find(id) returns a pointer to the
  // entry (->second) or end().
  struct GroupMaps {
    FlatIdMap<TransferId, Transfer> transfers;  // new transfers
    FlatIdMap<TransferId, uint32_t> failed;     // failed ids: result code
    FlatIdMap<TransferId, HoldDone> holds_done;
    bool empty() const { return transfers.empty() && failed.empty() && holds_done.empty(); }
    // Keeps the tables' capacity.
    void Clear() {
      transfers.clear();
      failed.clear();
      holds_done.clear();
    }
  };
  // Hands the current group's maps to the caller in exchange for `maps`
  // (emptied here; a recycled set keeps its buckets): no copy per entry.
  // Call after the group's last change, before the next BeginGroup.
  void SwapGroupMaps(GroupMaps* maps);
  void Clear();
  // The expiry heap's slack: see expiry_heap_.
  static constexpr size_t kExpiryStaleMin = 1024;

 private:
  struct Undo;
  struct Slot;
  uint64_t NextTimestamp();
  CreateTransferResult Validate(const Transfer& t) const;
  CreateTransferResult CheckExists(const Transfer& t, const Transfer& stored) const;
  CreateTransferResult ApplyTransfer(const Transfer& t, TransferOutcome* out,
                                     std::vector<Undo>* undo);
  CreateTransferResult ApplyPostOrVoid(const Transfer& t, TransferOutcome* out,
                                       std::vector<Undo>* undo);
  CreateAccountResult ApplyAccount(const Account& a, std::vector<Undo>* undo);
  ChangeAccountResult ApplyChange(const AccountChange& c, std::vector<Undo>* undo);
  void RecordTransfer(const Transfer& t, Slot& dr, Slot& cr, std::vector<Undo>* undo);
  void Touch(Slot& slot, uint64_t ts);
  void MarkTouched(Slot& slot);
  void MarkDirty(Slot& slot);
  void Rollback(std::vector<Undo>* undo);
  struct Marks {
    size_t events, failed, holds_opened, holds_done, index_rows;
  };
  Marks Mark() const;
  void Truncate(const Marks& m);

  Store* store_;
  Group* group_ = nullptr;
  uint64_t last_timestamp_ = 0;
  uint64_t group_base_ = 0;
  // An account and the engine's bookkeeping marks for it.
  struct Slot {
    Account a;
    uint64_t touched_group = 0;  // group_seq_ when last added to touched
    bool dirty = false;          // in dirty_ since the last TakeDirty()
  };
  // The accounts: slots_ holds them (a deque: addresses stable as it grows,
  // so touched and dirty lists and TakeDirty() keep pointers), accounts_
  // finds them by id. Every slot is in accounts_; an account is only ever
  // removed by the rollback of its creation, newest first (the last slot).
  std::deque<Slot> slots_;
  FlatIdMap<AccountId, Slot*> accounts_;
  Slot& SlotFor(AccountId id);  // found or created
  Slot& SlotAt(AccountId id);   // REQUIRES: the account exists
  std::vector<Slot*> dirty_;
  uint64_t group_seq_ = 0;
  // False while applying a chain of one event: no undo steps are recorded.
  bool undo_on_ = true;
  OpenHoldTable open_holds_;
  // The open holds' expiries, earliest first (then by id): a binary
  // min-heap with lazy deletion (a set's node per hold and its rebalancing
  // cost more than the rest of a pending transfer's map work). A closed
  // hold (posted, voided, expired, rolled back) leaves its entry behind; an
  // entry is live while open_holds_ holds its id with the same expires_at
  // (a hold reopened by a rollback has two entries: the second is dropped
  // once the first has closed it). Stale entries are dropped when they reach
  // the top, and all at once when they outnumber the live ones by
  // kExpiryStaleMin as a hold enters: at most 2 * (the most holds with an
  // expiry ever open at once) + kExpiryStaleMin + 1 entries.
  mutable std::vector<std::pair<uint64_t, TransferId>> expiry_heap_;
  size_t expiring_holds_ = 0;  // open holds with an expiry
  bool ExpiryLive(const std::pair<uint64_t, TransferId>& e) const;
  void DropStaleExpiries() const;  // until the top is live
  // Every hold entering or leaving open_holds_ passes through these.
  void HoldEnters(const OpenHold& h);
  void HoldLeaves(const OpenHold& h);
  FlatIdMap<TransferId, Transfer> group_transfers_;
  FlatIdMap<TransferId, HoldDone> group_holds_done_;
  FlatIdMap<TransferId, uint32_t> group_failed_;
};

}  // namespace narae::ledger
