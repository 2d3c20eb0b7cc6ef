#include "ledger/engine.hpp"

#include <algorithm>
#include <functional>
#include <limits>

namespace narae::ledger {
namespace {

namespace tf = transfer_flags;
namespace af = account_flags;
using TR = CreateTransferResult;
using AR = CreateAccountResult;
using CR = ChangeAccountResult;
using i128 = __int128;

constexpr uint64_t kNsPerSecond = 1'000'000'000ull;

bool AddOverflows(uint64_t a, uint64_t b) { return a > std::numeric_limits<uint64_t>::max() - b; }

// Failures that depend on stored state: a retry of the same id could
// otherwise succeed later, so they are remembered (id_already_failed).
bool IsTransient(TR r) { return r >= TR::kDebitAccountNotFound && r != TR::kIdAlreadyFailed; }

// The debit side's limit (accounts whose debits must not exceed credits).
TR DebitLimit(const Account& a, uint64_t amount) {
  if (!(a.flags & af::kDebitsMustNotExceedCredits)) return TR::kOk;
  i128 debits = static_cast<i128>(a.debits_pending) + a.debits_posted + amount;
  i128 credits_with_overdraft = static_cast<i128>(a.credits_posted) + a.overdraft_limit_minor;
  if (debits <= credits_with_overdraft - a.minimum_balance_minor) return TR::kOk;
  if (a.minimum_balance_minor > 0 && debits <= credits_with_overdraft) {
    return TR::kBelowMinimumBalance;
  }
  if (a.overdraft_limit_minor > 0) return TR::kExceedsOverdraftLimit;
  return TR::kExceedsCredits;
}

TR CreditLimit(const Account& a, uint64_t amount) {
  if (!(a.flags & af::kCreditsMustNotExceedDebits)) return TR::kOk;
  i128 credits = static_cast<i128>(a.credits_pending) + a.credits_posted + amount;
  i128 debits_with_overdraft = static_cast<i128>(a.debits_posted) + a.overdraft_limit_minor;
  if (credits <= debits_with_overdraft - a.minimum_balance_minor) return TR::kOk;
  if (a.minimum_balance_minor > 0 && credits <= debits_with_overdraft) {
    return TR::kBelowMinimumBalance;
  }
  if (a.overdraft_limit_minor > 0) return TR::kExceedsOverdraftLimit;
  return TR::kExceedsDebits;
}

// What a balancing transfer may still move on the protected side.
uint64_t DebitHeadroom(const Account& a) {
  if (!(a.flags & af::kDebitsMustNotExceedCredits)) return std::numeric_limits<uint64_t>::max();
  i128 room = static_cast<i128>(a.credits_posted) + a.overdraft_limit_minor -
              a.minimum_balance_minor - a.debits_pending - a.debits_posted;
  return room <= 0 ? 0 : static_cast<uint64_t>(std::min<i128>(room, ~uint64_t{0}));
}
uint64_t CreditHeadroom(const Account& a) {
  if (!(a.flags & af::kCreditsMustNotExceedDebits)) return std::numeric_limits<uint64_t>::max();
  i128 room = static_cast<i128>(a.debits_posted) + a.overdraft_limit_minor -
              a.minimum_balance_minor - a.credits_pending - a.credits_posted;
  return room <= 0 ? 0 : static_cast<uint64_t>(std::min<i128>(room, ~uint64_t{0}));
}

// Results that let a linked chain go on: ok, and exists (a retried chain).
bool ChainOk(TR r) { return r == TR::kOk || r == TR::kExists; }
bool ChainOk(AR r) { return r == AR::kOk || r == AR::kExists; }
bool ChainOk(CR r) { return r == CR::kOk; }

bool IsPostOrVoid(const Transfer& t) {
  return (t.flags & (tf::kPostPendingTransfer | tf::kVoidPendingTransfer)) != 0;
}

// The filter's 64-bit hash of an id: the flat tables' (ids may be
// sequential: both halves mixed, then fmix64). In memory only (the filter
// is built on open), so it may change.
uint64_t IdFilterHash(U128 id) { return FlatIdHash(id); }
// One bit per 32-bit word of a block (the split block bloom filter's salts).
constexpr uint32_t kIdFilterSalts[8] = {0x47b6137bU, 0x44974d91U, 0x8824ad5bU, 0xa2b7289dU,
                                        0x705495c7U, 0x2df1424bU, 0x9efc4947U, 0x5c6bfb31U};
constexpr uint64_t kIdFilterBlockBits = 256;
}  // namespace

void IdFilter::Reset(uint64_t ids_expected) {
  segments_.clear();
  bytes_ = 0;
  enabled_ = AddSegment(std::max(ids_expected, ids_min_));
}

void IdFilter::Disable() {
  segments_.clear();
  segments_.shrink_to_fit();
  bytes_ = 0;
  enabled_ = false;
}

bool IdFilter::AddSegment(uint64_t ids_max) {
  uint64_t blocks = 1;
  while (blocks * kIdFilterBlockBits < ids_max * kBitsPerId) blocks *= 2;
  const uint64_t bytes = blocks * kIdFilterBlockBits / 8;
  if (bytes > bytes_max_ - bytes_) return false;
  Segment seg;
  seg.words.assign(blocks * 8, 0);
  seg.block_mask = blocks - 1;
  seg.ids_max = blocks * kIdFilterBlockBits / kBitsPerId;
  segments_.push_back(std::move(seg));
  bytes_ += bytes;
  return true;
}

void IdFilter::Add(U128 id) {
  if (!enabled_) return;
  NARAE_CHECK(!segments_.empty());
  if (segments_.back().ids >= segments_.back().ids_max &&
      !AddSegment(2 * segments_.back().ids_max)) {
    Disable();  // past the memory bound: every answer is "maybe" from now on
    return;
  }
  Segment& seg = segments_.back();
  const uint64_t h = IdFilterHash(id);
  uint32_t* block = seg.words.data() + ((h >> 32) & seg.block_mask) * 8;
  for (size_t i = 0; i < 8; ++i) {
    block[i] |= uint32_t{1} << ((static_cast<uint32_t>(h) * kIdFilterSalts[i]) >> 27);
  }
  ++seg.ids;
}

bool IdFilter::MayContain(U128 id) const {
  if (!enabled_) return true;
  const uint64_t h = IdFilterHash(id);
  for (const Segment& seg : segments_) {
    const uint32_t* block = seg.words.data() + ((h >> 32) & seg.block_mask) * 8;
    bool all = true;
    for (size_t i = 0; i < 8 && all; ++i) {
      all = (block[i] >> ((static_cast<uint32_t>(h) * kIdFilterSalts[i]) >> 27)) & 1;
    }
    if (all) return true;
  }
  return false;
}

struct Engine::Undo {
  enum class Kind : uint8_t {
    kAccountState,     // restore `account`
    kAccountCreated,   // erase account_id
    kTransferCreated,  // erase transfer_id from group_transfers_
    kHoldOpened,       // erase transfer_id from open holds
    kHoldClosed,       // reinsert `hold`
    kHoldDone,         // erase transfer_id from group_holds_done_
  };
  Kind kind;
  Account account;
  TransferId transfer_id;
  OpenHold hold;
};

void Engine::LoadAccount(const Account& a) { SlotFor(a.id).a = a; }

Engine::Slot& Engine::SlotFor(AccountId id) {
  auto [it, inserted] = accounts_.TryEmplace(id);
  if (inserted) {
    NARAE_CHECK(slots_.size() == accounts_.size() - 1);
    it->second = &slots_.emplace_back();
  }
  return *it->second;
}

Engine::Slot& Engine::SlotAt(AccountId id) {
  auto it = accounts_.find(id);
  NARAE_CHECK(it != accounts_.end());
  return *it->second;
}

std::vector<const Account*> Engine::TakeDirty() {
  std::vector<const Account*> out;
  out.reserve(dirty_.size());
  for (Slot* slot : dirty_) {
    slot->dirty = false;
    out.push_back(&slot->a);
  }
  dirty_.clear();
  std::sort(out.begin(), out.end(),
            [](const Account* x, const Account* y) { return x->id < y->id; });
  return out;
}

std::unordered_map<AccountId, Account, IdHash> Engine::CopyAccounts() const {
  std::unordered_map<AccountId, Account, IdHash> out;
  out.reserve(accounts_.size());
  for (const Slot& slot : slots_) out.emplace(slot.a.id, slot.a);
  return out;
}

void Engine::LoadOpenHold(const OpenHold& h) {
  if (const OpenHold* old = open_holds_.Find(h.hold.id)) HoldLeaves(*old);  // loaded twice
  open_holds_.Put(h);
  HoldEnters(h);
}

bool Engine::ReplayEvent(const codec::Event& e) {
  switch (e.kind) {
    case codec::EventKind::kAccountCreated: {
      // Replayed changes are newer than the stored snapshot: the next
      // snapshot must write them (MarkDirty), or it would claim them.
      Slot& slot = SlotFor(e.account.id);
      slot.a = e.account;
      MarkDirty(slot);
      return true;
    }
    case codec::EventKind::kAccountChanged: {
      auto it = accounts_.find(e.change.id);
      if (it == accounts_.end()) return false;
      MarkDirty(*it->second);
      uint16_t& f = it->second->a.flags;
      switch (e.change.action) {
        case AccountAction::kClose:
          f |= af::kClosed;
          break;
        case AccountAction::kReopen:
          f &= static_cast<uint16_t>(~af::kClosed);
          break;
        case AccountAction::kFreeze:
          f |= af::kFrozen;
          break;
        case AccountAction::kUnfreeze:
          f &= static_cast<uint16_t>(~af::kFrozen);
          break;
        default:
          return false;
      }
      return true;
    }
    case codec::EventKind::kHoldExpired: {
      auto d = accounts_.find(e.expiry.debit_account_id);
      auto c = accounts_.find(e.expiry.credit_account_id);
      if (d == accounts_.end() || c == accounts_.end()) return false;
      if (d->second->a.debits_pending < e.expiry.amount_minor) return false;
      if (c->second->a.credits_pending < e.expiry.amount_minor) return false;
      MarkDirty(*d->second);
      MarkDirty(*c->second);
      d->second->a.debits_pending -= e.expiry.amount_minor;
      c->second->a.credits_pending -= e.expiry.amount_minor;
      return true;
    }
    case codec::EventKind::kTransfer:
      break;
  }
  const Transfer& t = e.transfer;
  auto d = accounts_.find(t.debit_account_id);
  auto c = accounts_.find(t.credit_account_id);
  if (d == accounts_.end() || c == accounts_.end()) return false;
  MarkDirty(*d->second);
  MarkDirty(*c->second);
  Account& dr = d->second->a;
  Account& cr = c->second->a;
  if (IsPostOrVoid(t)) {
    std::optional<Transfer> p = store_->FindTransfer(t.pending_id);
    if (!p || dr.debits_pending < p->amount_minor || cr.credits_pending < p->amount_minor) {
      return false;
    }
    dr.debits_pending -= p->amount_minor;
    cr.credits_pending -= p->amount_minor;
    if (t.flags & tf::kPostPendingTransfer) {
      if (AddOverflows(dr.debits_posted, t.amount_minor)) return false;
      if (AddOverflows(cr.credits_posted, t.amount_minor)) return false;
      dr.debits_posted += t.amount_minor;
      cr.credits_posted += t.amount_minor;
    }
    return true;
  }
  if (t.flags & tf::kPending) {
    if (AddOverflows(dr.debits_pending, t.amount_minor)) return false;
    if (AddOverflows(cr.credits_pending, t.amount_minor)) return false;
    dr.debits_pending += t.amount_minor;
    cr.credits_pending += t.amount_minor;
  } else {
    if (AddOverflows(dr.debits_posted, t.amount_minor)) return false;
    if (AddOverflows(cr.credits_posted, t.amount_minor)) return false;
    dr.debits_posted += t.amount_minor;
    cr.credits_posted += t.amount_minor;
  }
  return true;
}

void Engine::Clear() {
  dirty_.clear();
  accounts_.clear();
  slots_.clear();
  open_holds_.clear();
  expiry_heap_.clear();
  expiring_holds_ = 0;
  group_transfers_.clear();
  group_holds_done_.clear();
  group_failed_.clear();
  group_ = nullptr;
}

void Engine::SwapGroupMaps(GroupMaps* maps) {
  NARAE_CHECK(maps != nullptr);
  maps->Clear();
  std::swap(group_transfers_, maps->transfers);
  std::swap(group_failed_, maps->failed);
  std::swap(group_holds_done_, maps->holds_done);
}

void Engine::BeginGroup(Group* group, uint64_t clock_ns) {
  NARAE_CHECK(group != nullptr);
  group_ = group;
  ++group_seq_;
  group_base_ = std::max(clock_ns, last_timestamp_ + 1);
  last_timestamp_ = group_base_ - 1;
  group_transfers_.clear();
  group_holds_done_.clear();
  group_failed_.clear();
}

uint64_t Engine::NextTimestamp() {
  NARAE_CHECK(last_timestamp_ < std::numeric_limits<uint64_t>::max());
  ++last_timestamp_;
  if (group_->first_timestamp == 0) group_->first_timestamp = last_timestamp_;
  group_->last_timestamp = last_timestamp_;
  return last_timestamp_;
}

bool Engine::ExpiryLive(const std::pair<uint64_t, TransferId>& e) const {
  const OpenHold* h = open_holds_.Find(e.second);
  return h != nullptr && h->expires_at == e.first;
}

void Engine::DropStaleExpiries() const {
  // Each pass removes one entry: bounded by the heap's size.
  while (!expiry_heap_.empty() && !ExpiryLive(expiry_heap_.front())) {
    std::pop_heap(expiry_heap_.begin(), expiry_heap_.end(), std::greater<>{});
    expiry_heap_.pop_back();
  }
}

void Engine::HoldEnters(const OpenHold& h) {
  if (h.expires_at == 0) return;
  ++expiring_holds_;
  const size_t stale = expiry_heap_.size() - std::min(expiry_heap_.size(), expiring_holds_);
  if (stale > expiring_holds_ + kExpiryStaleMin) {
    // More stale entries than live ones: rebuild from the open holds (the
    // live entries exactly, each once). Amortized: at least
    // kExpiryStaleMin holds closed since the last rebuild.
    expiry_heap_.clear();
    open_holds_.ForEach([&](const TransferId& id, const OpenHold& o) {
      if (o.expires_at != 0 && id != h.hold.id) expiry_heap_.emplace_back(o.expires_at, id);
    });
    std::make_heap(expiry_heap_.begin(), expiry_heap_.end(), std::greater<>{});
  }
  expiry_heap_.emplace_back(h.expires_at, h.hold.id);
  std::push_heap(expiry_heap_.begin(), expiry_heap_.end(), std::greater<>{});
  NARAE_CHECK(expiry_heap_.size() <= 2 * expiring_holds_ + kExpiryStaleMin + 1);
}

void Engine::HoldLeaves(const OpenHold& h) {
  if (h.expires_at == 0) return;
  NARAE_CHECK(expiring_holds_ > 0);
  --expiring_holds_;
}

uint64_t Engine::NextExpiry() const {
  DropStaleExpiries();
  return expiry_heap_.empty() ? 0 : expiry_heap_.front().first;
}

void Engine::MarkDirty(Slot& slot) {
  if (!slot.dirty) {
    slot.dirty = true;
    dirty_.push_back(&slot);
  }
}

void Engine::MarkTouched(Slot& slot) {
  if (slot.touched_group != group_seq_) {
    slot.touched_group = group_seq_;
    group_->touched_accounts.push_back(&slot.a);
  }
  MarkDirty(slot);
}

void Engine::Touch(Slot& slot, uint64_t ts) {
  MarkTouched(slot);
  const Account& a = slot.a;
  bool history = (a.flags & af::kHistory) != 0;
  group_->index_rows.push_back(
      {a.id, ts, history, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted});
}

size_t Engine::ExpireDue(size_t max) {
  NARAE_CHECK(group_ != nullptr);
  size_t count = 0;
  for (;;) {
    DropStaleExpiries();  // the top, if any, is a live hold's expiry
    if (count >= max || expiry_heap_.empty() || expiry_heap_.front().first > group_base_) break;
    const TransferId id = expiry_heap_.front().second;
    std::pop_heap(expiry_heap_.begin(), expiry_heap_.end(), std::greater<>{});
    expiry_heap_.pop_back();
    const OpenHold* open = open_holds_.Find(id);
    NARAE_CHECK(open != nullptr);
    HoldLeaves(*open);
    const Transfer& h = open->hold;
    Slot& dslot = SlotAt(h.debit_account_id);
    Slot& cslot = SlotAt(h.credit_account_id);
    Account& dr = dslot.a;
    Account& cr = cslot.a;
    NARAE_CHECK(dr.debits_pending >= h.amount_minor && cr.credits_pending >= h.amount_minor);
    dr.debits_pending -= h.amount_minor;
    cr.credits_pending -= h.amount_minor;
    uint64_t ts = NextTimestamp();
    codec::Event ev;
    ev.kind = codec::EventKind::kHoldExpired;
    ev.expiry = {h.id, h.debit_account_id, h.credit_account_id, h.amount_minor, h.ledger, ts};
    group_->events.push_back(ev);
    Touch(dslot, ts);
    Touch(cslot, ts);
    HoldDone done{HoldState::kExpired, ts, 0};
    group_->holds_done.emplace_back(id, done);
    group_holds_done_[id] = done;
    open_holds_.Erase(id);
    ++count;
  }
  return count;
}

Engine::Marks Engine::Mark() const {
  return {group_->events.size(), group_->failed.size(), group_->holds_opened.size(),
          group_->holds_done.size(), group_->index_rows.size()};
}

void Engine::Truncate(const Marks& m) {
  group_->events.resize(m.events);
  group_->failed.resize(m.failed);
  group_->holds_opened.resize(m.holds_opened);
  group_->holds_done.resize(m.holds_done);
  group_->index_rows.resize(m.index_rows);
}

void Engine::Rollback(std::vector<Undo>* undo) {
  for (auto it = undo->rbegin(); it != undo->rend(); ++it) {
    switch (it->kind) {
      case Undo::Kind::kAccountState:
        SlotAt(it->account.id).a = it->account;
        break;
      case Undo::Kind::kAccountCreated: {
        auto slot = accounts_.find(it->account.id);
        NARAE_CHECK(slot != accounts_.end());
        // Undone newest first: the account created last is the last slot.
        Slot* gone = slot->second;
        NARAE_CHECK(!slots_.empty() && gone == &slots_.back());
        auto& touched = group_->touched_accounts;
        touched.erase(std::remove(touched.begin(), touched.end(), &gone->a), touched.end());
        if (gone->dirty)
          dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), gone), dirty_.end());
        accounts_.erase(slot);
        slots_.pop_back();
        break;
      }
      case Undo::Kind::kTransferCreated:
        group_transfers_.erase(it->transfer_id);
        break;
      case Undo::Kind::kHoldOpened: {
        const OpenHold* h = open_holds_.Find(it->transfer_id);
        NARAE_CHECK(h != nullptr);
        HoldLeaves(*h);  // its expiry entry goes stale
        open_holds_.Erase(it->transfer_id);
        break;
      }
      case Undo::Kind::kHoldClosed:
        NARAE_CHECK(it->hold.hold.id == it->transfer_id);
        open_holds_.Put(it->hold);
        HoldEnters(it->hold);
        break;
      case Undo::Kind::kHoldDone:
        group_holds_done_.erase(it->transfer_id);
        break;
    }
  }
  undo->clear();
}

// Runs linked chains atomically. `apply` returns the event's result; ok and
// exists count as success (a retried chain is all `exists`).
template <typename Ev, typename Out, typename Code, typename Apply, typename OnFail>
static void RunChains(std::span<const Ev> events, std::vector<Out>* outs, Apply apply,
                      OnFail on_single_failure, uint16_t linked_flag) {
  const size_t n = events.size();
  outs->assign(n, Out{});
  size_t i = 0;
  while (i < n) {
    size_t end = i;
    while (end < n && (events[end].flags & linked_flag)) ++end;
    bool chain_open = end == n;
    if (chain_open) end = n - 1;
    // Chain is [i, end].
    bool failed = false;
    size_t failed_at = 0;
    Code failed_code = Code::kOk;
    // A chain of one event needs no undo log: every Apply* checks
    // everything before it changes anything.
    apply.begin(/*single=*/i == end);
    for (size_t k = i; k <= end; ++k) {
      Code r;
      if (chain_open && k == end) {
        r = Code::kLinkedEventChainOpen;
      } else {
        r = apply(events[k], &(*outs)[k]);
      }
      (*outs)[k].result = r;
      if (!ChainOk(r)) {
        failed = true;
        failed_at = k;
        failed_code = r;
        break;
      }
    }
    if (failed) {
      apply.rollback();
      for (size_t k = i; k <= end; ++k) {
        (*outs)[k] = Out{};
        (*outs)[k].result = k == failed_at ? failed_code : Code::kLinkedEventFailed;
      }
      if (i == end) on_single_failure(events[i], failed_code);
    } else {
      apply.commit();
    }
    i = end + 1;
  }
}

namespace {
// Adapts an Engine member to RunChains: begin/commit/rollback hooks around
// an undo log and the group's write marks.
template <typename Fn, typename MarkFn, typename TruncFn, typename RollFn>
struct ChainApply {
  Fn fn;
  MarkFn mark;
  TruncFn truncate;
  RollFn roll;
  decltype(mark(false)) marks{};
  void begin(bool single) { marks = mark(single); }
  void commit() {}
  void rollback() {
    roll();
    truncate(marks);
  }
  template <typename Ev, typename Out>
  auto operator()(const Ev& e, Out* o) {
    return fn(e, o);
  }
};
template <typename Fn, typename MarkFn, typename TruncFn, typename RollFn>
ChainApply<Fn, MarkFn, TruncFn, RollFn> MakeChainApply(Fn f, MarkFn m, TruncFn t, RollFn r) {
  return {f, m, t, r, {}};
}
}  // namespace

std::vector<TransferOutcome> Engine::CreateTransfers(std::span<const Transfer> transfers) {
  NARAE_CHECK(group_ != nullptr);
  NARAE_CHECK(transfers.size() <= kBatchEventsMax);
  std::vector<TransferOutcome> outs;
  std::vector<Undo> undo;
  auto apply = MakeChainApply(
      [&](const Transfer& t, TransferOutcome* o) {
        TR r = Validate(t);
        if (r != TR::kOk) return r;
        std::optional<Transfer> stored;
        const uint64_t id_hash = FlatIdMap<TransferId, Transfer>::Hash(t.id);  // once for both
        bool failed_before = group_failed_.Find(t.id, id_hash) != group_failed_.end();
        if (auto g = group_transfers_.Find(t.id, id_hash); g != group_transfers_.end()) {
          stored = g->second;
        } else if (!failed_before) {
          Store::IdState state = store_->FindId(t.id);
          stored = std::move(state.transfer);
          failed_before = state.failed_code.has_value();
        }
        if (stored) {
          r = CheckExists(t, *stored);
          if (r == TR::kExists) {
            o->timestamp = stored->timestamp;
            o->amount_minor = stored->amount_minor;
          }
          return r;
        }
        if (failed_before) return TR::kIdAlreadyFailed;
        if (IsPostOrVoid(t)) return ApplyPostOrVoid(t, o, &undo);
        return ApplyTransfer(t, o, &undo);
      },
      [&](bool single) {
        undo.clear();
        undo_on_ = !single;
        return Mark();
      },
      [&](const Marks& m) { Truncate(m); }, [&] { Rollback(&undo); });
  RunChains<Transfer, TransferOutcome, TR>(
      transfers, &outs, apply,
      [&](const Transfer& t, TR code) {
        if (IsTransient(code) && !t.id.IsZero() && !t.id.IsMax()) {
          group_->failed.emplace_back(t.id, static_cast<uint32_t>(code));
          group_failed_[t.id] = static_cast<uint32_t>(code);
        }
      },
      tf::kLinked);
  return outs;
}

TR Engine::Validate(const Transfer& t) const {
  if (t.timestamp != 0) return TR::kTimestampMustBeZero;
  if (t.flags & ~tf::kAll) return TR::kReservedFlag;
  if (t.id.IsZero()) return TR::kIdMustNotBeZero;
  if (t.id.IsMax()) return TR::kIdMustNotBeIntMax;
  const bool pending = t.flags & tf::kPending;
  const bool post = t.flags & tf::kPostPendingTransfer;
  const bool void_ = t.flags & tf::kVoidPendingTransfer;
  const bool balancing = t.flags & (tf::kBalancingDebit | tf::kBalancingCredit);
  if (int{pending} + int{post} + int{void_} > 1) return TR::kFlagsAreMutuallyExclusive;
  if ((post || void_) && balancing) return TR::kFlagsAreMutuallyExclusive;
  if (post || void_) {
    if (t.debit_account_id.IsMax()) return TR::kDebitAccountIdMustNotBeIntMax;
    if (t.credit_account_id.IsMax()) return TR::kCreditAccountIdMustNotBeIntMax;
    if (!t.debit_account_id.IsZero() && t.debit_account_id == t.credit_account_id) {
      return TR::kAccountsMustBeDifferent;
    }
    if (t.pending_id.IsZero()) return TR::kPendingIdMustNotBeZero;
    if (t.pending_id.IsMax()) return TR::kPendingIdMustNotBeIntMax;
    if (t.pending_id == t.id) return TR::kPendingIdMustBeDifferent;
    if (t.timeout_s != 0) return TR::kTimeoutReservedForPendingTransfer;
    return TR::kOk;
  }
  if (t.debit_account_id.IsZero()) return TR::kDebitAccountIdMustNotBeZero;
  if (t.debit_account_id.IsMax()) return TR::kDebitAccountIdMustNotBeIntMax;
  if (t.credit_account_id.IsZero()) return TR::kCreditAccountIdMustNotBeZero;
  if (t.credit_account_id.IsMax()) return TR::kCreditAccountIdMustNotBeIntMax;
  if (t.debit_account_id == t.credit_account_id) return TR::kAccountsMustBeDifferent;
  if (!t.pending_id.IsZero()) return TR::kPendingIdMustBeZero;
  if (t.timeout_s != 0 && !pending) return TR::kTimeoutReservedForPendingTransfer;
  if (t.timeout_s > kTimeoutSecondsMax) return TR::kTimeoutTooLarge;
  if (t.ledger == 0) return TR::kLedgerMustNotBeZero;
  if (t.code == 0) return TR::kCodeMustNotBeZero;
  if (t.amount_minor == 0 && !balancing) return TR::kAmountMustNotBeZero;
  return TR::kOk;
}

TR Engine::CheckExists(const Transfer& t, const Transfer& s) const {
  // `linked` describes the batch, not the transfer: a retry may come alone.
  if ((t.flags & ~tf::kLinked) != (s.flags & ~tf::kLinked)) return TR::kExistsWithDifferentFlags;
  if (t.pending_id != s.pending_id) return TR::kExistsWithDifferentPendingId;
  if (t.timeout_s != s.timeout_s) return TR::kExistsWithDifferentTimeout;
  const bool pv = IsPostOrVoid(t);
  if ((!pv || !t.debit_account_id.IsZero()) && t.debit_account_id != s.debit_account_id) {
    return TR::kExistsWithDifferentDebitAccountId;
  }
  if ((!pv || !t.credit_account_id.IsZero()) && t.credit_account_id != s.credit_account_id) {
    return TR::kExistsWithDifferentCreditAccountId;
  }
  const bool balancing = t.flags & (tf::kBalancingDebit | tf::kBalancingCredit);
  if (balancing) {
    if (t.amount_minor < s.amount_minor) return TR::kExistsWithDifferentAmount;
  } else if ((!pv || t.amount_minor != 0) && t.amount_minor != s.amount_minor) {
    return TR::kExistsWithDifferentAmount;
  }
  if (t.user_data_128 != s.user_data_128) return TR::kExistsWithDifferentUserData128;
  if (t.user_data_64 != s.user_data_64) return TR::kExistsWithDifferentUserData64;
  if (t.user_data_32 != s.user_data_32) return TR::kExistsWithDifferentUserData32;
  if ((!pv || t.ledger != 0) && t.ledger != s.ledger) return TR::kExistsWithDifferentLedger;
  if ((!pv || t.code != 0) && t.code != s.code) return TR::kExistsWithDifferentCode;
  return TR::kExists;
}

void Engine::RecordTransfer(const Transfer& t, Slot& dr, Slot& cr, std::vector<Undo>* undo) {
  codec::Event& ev = group_->events.emplace_back();  // built in place: no copy of the event
  ev.kind = codec::EventKind::kTransfer;
  ev.transfer = t;
  group_transfers_[t.id] = t;
  if (undo_on_) undo->push_back({Undo::Kind::kTransferCreated, {}, t.id, {}});
  Touch(dr, t.timestamp);
  Touch(cr, t.timestamp);
}

TR Engine::ApplyTransfer(const Transfer& t, TransferOutcome* out, std::vector<Undo>* undo) {
  auto dit = accounts_.find(t.debit_account_id);
  if (dit == accounts_.end()) return TR::kDebitAccountNotFound;
  auto cit = accounts_.find(t.credit_account_id);
  if (cit == accounts_.end()) return TR::kCreditAccountNotFound;
  Account& dr = dit->second->a;
  Account& cr = cit->second->a;
  if (dr.ledger != cr.ledger) return TR::kAccountsMustHaveTheSameLedger;
  if (t.ledger != dr.ledger) return TR::kTransferMustHaveTheSameLedgerAsAccounts;
  if (dr.flags & af::kClosed) return TR::kDebitAccountClosed;
  if (cr.flags & af::kClosed) return TR::kCreditAccountClosed;
  if (dr.flags & af::kFrozen) return TR::kDebitAccountFrozen;
  if (cr.flags & af::kFrozen) return TR::kCreditAccountFrozen;

  uint64_t amount = t.amount_minor;
  if (t.flags & tf::kBalancingDebit) amount = std::min(amount, DebitHeadroom(dr));
  if (t.flags & tf::kBalancingCredit) amount = std::min(amount, CreditHeadroom(cr));
  const bool pending = t.flags & tf::kPending;
  if (pending) {
    if (AddOverflows(dr.debits_pending, amount)) return TR::kOverflowsDebitsPending;
    if (AddOverflows(cr.credits_pending, amount)) return TR::kOverflowsCreditsPending;
  } else {
    if (AddOverflows(dr.debits_posted, amount)) return TR::kOverflowsDebitsPosted;
    if (AddOverflows(cr.credits_posted, amount)) return TR::kOverflowsCreditsPosted;
  }
  if (AddOverflows(dr.debits_pending, dr.debits_posted) ||
      AddOverflows(dr.debits_pending + dr.debits_posted, amount)) {
    return TR::kOverflowsDebits;
  }
  if (AddOverflows(cr.credits_pending, cr.credits_posted) ||
      AddOverflows(cr.credits_pending + cr.credits_posted, amount)) {
    return TR::kOverflowsCredits;
  }
  uint64_t expires_at = 0;
  if (pending && t.timeout_s != 0) {
    const uint64_t timeout_ns = uint64_t{t.timeout_s} * kNsPerSecond;
    if (AddOverflows(last_timestamp_ + 1, timeout_ns)) return TR::kOverflowsTimeout;
    expires_at = last_timestamp_ + 1 + timeout_ns;
  }
  if (TR r = DebitLimit(dr, amount); r != TR::kOk) return r;
  if (TR r = CreditLimit(cr, amount); r != TR::kOk) return r;

  if (undo_on_) undo->push_back({Undo::Kind::kAccountState, dr, {}, {}});
  if (undo_on_) undo->push_back({Undo::Kind::kAccountState, cr, {}, {}});
  if (pending) {
    dr.debits_pending += amount;
    cr.credits_pending += amount;
  } else {
    dr.debits_posted += amount;
    cr.credits_posted += amount;
  }
  Transfer stored = t;
  stored.amount_minor = amount;
  stored.timestamp = NextTimestamp();
  RecordTransfer(stored, *dit->second, *cit->second, undo);
  if (pending) {
    OpenHold hold{stored, expires_at};
    open_holds_.Put(hold);
    HoldEnters(hold);
    group_->holds_opened.emplace_back(stored.id, hold);
    if (undo_on_) undo->push_back({Undo::Kind::kHoldOpened, {}, stored.id, {}});
  }
  out->timestamp = stored.timestamp;
  out->amount_minor = amount;
  return TR::kOk;
}

TR Engine::ApplyPostOrVoid(const Transfer& t, TransferOutcome* out, std::vector<Undo>* undo) {
  std::optional<Transfer> p;
  if (auto g = group_transfers_.find(t.pending_id); g != group_transfers_.end()) {
    p = g->second;
  } else if (const OpenHold* h = open_holds_.Find(t.pending_id)) {
    p = h->hold;  // an open hold is in memory: no read of the event log
  } else {
    p = store_->FindTransfer(t.pending_id);
  }
  if (!p) return TR::kPendingTransferNotFound;
  if (!(p->flags & tf::kPending)) return TR::kPendingTransferNotPending;
  if (!t.debit_account_id.IsZero() && t.debit_account_id != p->debit_account_id) {
    return TR::kPendingTransferHasDifferentDebitAccountId;
  }
  if (!t.credit_account_id.IsZero() && t.credit_account_id != p->credit_account_id) {
    return TR::kPendingTransferHasDifferentCreditAccountId;
  }
  if (t.ledger != 0 && t.ledger != p->ledger) return TR::kPendingTransferHasDifferentLedger;
  if (t.code != 0 && t.code != p->code) return TR::kPendingTransferHasDifferentCode;
  const bool post = t.flags & tf::kPostPendingTransfer;
  uint64_t amount = p->amount_minor;
  if (post) {
    if (t.amount_minor != 0) amount = t.amount_minor;
    if (amount > p->amount_minor) return TR::kExceedsPendingTransferAmount;
  } else if (t.amount_minor != 0 && t.amount_minor != p->amount_minor) {
    return TR::kPendingTransferHasDifferentAmount;
  }
  const OpenHold* hold_it = open_holds_.Find(t.pending_id);
  if (hold_it == nullptr) {
    std::optional<HoldDone> done;
    if (auto g = group_holds_done_.find(t.pending_id); g != group_holds_done_.end()) {
      done = g->second;
    } else {
      done = store_->FindHoldDone(t.pending_id);
    }
    if (!done) return TR::kPendingTransferNotFound;
    switch (done->state) {
      case HoldState::kPosted:
        return TR::kPendingTransferAlreadyPosted;
      case HoldState::kVoided:
        return TR::kPendingTransferAlreadyVoided;
      default:
        return TR::kPendingTransferExpired;
    }
  }
  Slot& dslot = SlotAt(p->debit_account_id);
  Slot& cslot = SlotAt(p->credit_account_id);
  Account& dr = dslot.a;
  Account& cr = cslot.a;
  if (post) {
    if (dr.flags & af::kClosed) return TR::kDebitAccountClosed;
    if (cr.flags & af::kClosed) return TR::kCreditAccountClosed;
    if (dr.flags & af::kFrozen) return TR::kDebitAccountFrozen;
    if (cr.flags & af::kFrozen) return TR::kCreditAccountFrozen;
    if (AddOverflows(dr.debits_posted, amount)) return TR::kOverflowsDebitsPosted;
    if (AddOverflows(cr.credits_posted, amount)) return TR::kOverflowsCreditsPosted;
  }
  NARAE_CHECK(dr.debits_pending >= p->amount_minor && cr.credits_pending >= p->amount_minor);
  if (undo_on_) undo->push_back({Undo::Kind::kAccountState, dr, {}, {}});
  if (undo_on_) undo->push_back({Undo::Kind::kAccountState, cr, {}, {}});
  dr.debits_pending -= p->amount_minor;
  cr.credits_pending -= p->amount_minor;
  if (post) {
    dr.debits_posted += amount;
    cr.credits_posted += amount;
  }
  Transfer stored = t;
  stored.debit_account_id = p->debit_account_id;
  stored.credit_account_id = p->credit_account_id;
  stored.ledger = p->ledger;
  stored.code = p->code;
  stored.amount_minor = amount;
  stored.timestamp = NextTimestamp();
  RecordTransfer(stored, dslot, cslot, undo);

  OpenHold hold = *hold_it;
  HoldLeaves(hold);
  open_holds_.Erase(t.pending_id);
  if (undo_on_) undo->push_back({Undo::Kind::kHoldClosed, {}, t.pending_id, hold});
  HoldDone done{post ? HoldState::kPosted : HoldState::kVoided, stored.timestamp,
                post ? amount : 0};
  group_->holds_done.emplace_back(t.pending_id, done);
  group_holds_done_[t.pending_id] = done;
  if (undo_on_) undo->push_back({Undo::Kind::kHoldDone, {}, t.pending_id, {}});
  out->timestamp = stored.timestamp;
  out->amount_minor = amount;
  return TR::kOk;
}

std::vector<AccountOutcome> Engine::CreateAccounts(std::span<const Account> accounts) {
  NARAE_CHECK(group_ != nullptr);
  NARAE_CHECK(accounts.size() <= kBatchEventsMax);
  std::vector<AccountOutcome> outs;
  std::vector<Undo> undo;
  auto apply = MakeChainApply(
      [&](const Account& a, AccountOutcome* o) {
        AR r = ApplyAccount(a, &undo);
        if (r == AR::kOk || r == AR::kExists) o->timestamp = SlotAt(a.id).a.timestamp;
        return r;
      },
      [&](bool single) {
        undo.clear();
        undo_on_ = !single;
        return Mark();
      },
      [&](const Marks& m) { Truncate(m); }, [&] { Rollback(&undo); });
  RunChains<Account, AccountOutcome, AR>(
      accounts, &outs, apply, [](const Account&, AR) {}, af::kLinked);
  return outs;
}

AR Engine::ApplyAccount(const Account& a, std::vector<Undo>* undo) {
  if (a.timestamp != 0) return AR::kTimestampMustBeZero;
  if (a.flags & ~af::kAll) return AR::kReservedFlag;
  if (a.id.IsZero()) return AR::kIdMustNotBeZero;
  if (a.id.IsMax()) return AR::kIdMustNotBeIntMax;
  const bool dmnec = a.flags & af::kDebitsMustNotExceedCredits;
  const bool cmned = a.flags & af::kCreditsMustNotExceedDebits;
  if (dmnec && cmned) return AR::kFlagsAreMutuallyExclusive;
  if (a.flags & (af::kClosed | af::kFrozen)) return AR::kStateFlagsMustNotBeSet;
  if (a.debits_pending != 0) return AR::kDebitsPendingMustBeZero;
  if (a.debits_posted != 0) return AR::kDebitsPostedMustBeZero;
  if (a.credits_pending != 0) return AR::kCreditsPendingMustBeZero;
  if (a.credits_posted != 0) return AR::kCreditsPostedMustBeZero;
  if (a.ledger == 0) return AR::kLedgerMustNotBeZero;
  if (a.code == 0) return AR::kCodeMustNotBeZero;
  if ((a.minimum_balance_minor != 0 || a.overdraft_limit_minor != 0) && !dmnec && !cmned) {
    return AR::kLimitRequiresBalanceFlag;
  }
  if (auto it = accounts_.find(a.id); it != accounts_.end()) {
    const Account& s = it->second->a;
    constexpr uint16_t kCreationFlags =
        af::kDebitsMustNotExceedCredits | af::kCreditsMustNotExceedDebits | af::kHistory;
    if ((s.flags & kCreationFlags) != (a.flags & kCreationFlags)) {
      return AR::kExistsWithDifferentFlags;
    }
    if (s.user_data_128 != a.user_data_128) return AR::kExistsWithDifferentUserData128;
    if (s.user_data_64 != a.user_data_64) return AR::kExistsWithDifferentUserData64;
    if (s.user_data_32 != a.user_data_32) return AR::kExistsWithDifferentUserData32;
    if (s.ledger != a.ledger) return AR::kExistsWithDifferentLedger;
    if (s.code != a.code) return AR::kExistsWithDifferentCode;
    if (s.minimum_balance_minor != a.minimum_balance_minor) {
      return AR::kExistsWithDifferentMinimumBalance;
    }
    if (s.overdraft_limit_minor != a.overdraft_limit_minor) {
      return AR::kExistsWithDifferentOverdraftLimit;
    }
    return AR::kExists;
  }
  Account stored = a;
  stored.flags = static_cast<uint16_t>(a.flags & ~af::kLinked);
  stored.timestamp = NextTimestamp();
  Slot& slot = SlotFor(stored.id);
  slot.a = stored;
  if (undo_on_) undo->push_back({Undo::Kind::kAccountCreated, stored, {}, {}});
  codec::Event ev;
  ev.kind = codec::EventKind::kAccountCreated;
  ev.account = stored;
  group_->events.push_back(ev);
  MarkTouched(slot);
  return AR::kOk;
}

std::vector<ChangeOutcome> Engine::ChangeAccounts(std::span<const AccountChange> changes) {
  NARAE_CHECK(group_ != nullptr);
  NARAE_CHECK(changes.size() <= kBatchEventsMax);
  std::vector<ChangeOutcome> outs;
  std::vector<Undo> undo;
  auto apply = MakeChainApply(
      [&](const AccountChange& c, ChangeOutcome* o) {
        CR r = ApplyChange(c, &undo);
        if (r == CR::kOk) o->timestamp = last_timestamp_;
        return r;
      },
      [&](bool single) {
        undo.clear();
        undo_on_ = !single;
        return Mark();
      },
      [&](const Marks& m) { Truncate(m); }, [&] { Rollback(&undo); });
  RunChains<AccountChange, ChangeOutcome, CR>(
      changes, &outs, apply, [](const AccountChange&, CR) {}, af::kLinked);
  return outs;
}

CR Engine::ApplyChange(const AccountChange& c, std::vector<Undo>* undo) {
  if (c.flags & ~af::kLinked) return CR::kReservedFlag;
  if (c.action < AccountAction::kClose || c.action > AccountAction::kUnfreeze) {
    return CR::kInvalidAction;
  }
  auto it = accounts_.find(c.id);
  if (it == accounts_.end()) return CR::kAccountNotFound;
  Account& a = it->second->a;
  uint16_t flags = a.flags;
  switch (c.action) {
    case AccountAction::kClose:
      if (flags & af::kClosed) return CR::kAccountAlreadyClosed;
      if (a.debits_pending != 0 || a.credits_pending != 0) return CR::kAccountHasPendingBalance;
      flags |= af::kClosed;
      break;
    case AccountAction::kReopen:
      if (!(flags & af::kClosed)) return CR::kAccountNotClosed;
      flags &= static_cast<uint16_t>(~af::kClosed);
      break;
    case AccountAction::kFreeze:
      if (flags & af::kFrozen) return CR::kAccountAlreadyFrozen;
      flags |= af::kFrozen;
      break;
    case AccountAction::kUnfreeze:
      if (!(flags & af::kFrozen)) return CR::kAccountNotFrozen;
      flags &= static_cast<uint16_t>(~af::kFrozen);
      break;
  }
  if (undo_on_) undo->push_back({Undo::Kind::kAccountState, a, {}, {}});
  a.flags = flags;
  codec::Event ev;
  ev.kind = codec::EventKind::kAccountChanged;
  ev.change = c;
  ev.change.flags = static_cast<uint16_t>(c.flags & ~af::kLinked);
  ev.change.timestamp = NextTimestamp();
  group_->events.push_back(ev);
  MarkTouched(*it->second);
  return CR::kOk;
}

std::optional<Account> Engine::PeekAccount(AccountId id) const {
  auto it = accounts_.find(id);
  if (it == accounts_.end()) return std::nullopt;
  return it->second->a;
}

std::optional<Transfer> Engine::PeekTransfer(TransferId id) {
  if (auto g = group_transfers_.find(id); g != group_transfers_.end()) return g->second;
  return store_->FindTransfer(id);
}

std::optional<HoldInfo> Engine::PeekHold(TransferId id) {
  if (const OpenHold* h = open_holds_.Find(id)) {
    return HoldInfo{h->hold, HoldState::kPending, h->expires_at, 0, 0};
  }
  std::optional<Transfer> t = PeekTransfer(id);
  if (!t || !(t->flags & tf::kPending)) return std::nullopt;
  std::optional<HoldDone> done;
  if (auto g = group_holds_done_.find(id); g != group_holds_done_.end()) {
    done = g->second;
  } else {
    done = store_->FindHoldDone(id);
  }
  if (!done) return std::nullopt;
  uint64_t expires = t->timeout_s ? t->timestamp + uint64_t{t->timeout_s} * kNsPerSecond : 0;
  return HoldInfo{*t, done->state, expires, done->resolved_at, done->posted_amount_minor};
}

}  // namespace narae::ledger
