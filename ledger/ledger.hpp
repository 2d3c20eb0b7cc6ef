// narae::ledger: a durable double-entry ledger on RocksDB.
//
// The ledger keeps accounts (with four balances: debits/credits, pending/
// posted) and immutable transfers between two accounts of the same currency.
// Pending transfers (holds) reserve funds until they are posted (fully or in
// part), voided, or expire. Every committed group of batches is appended to
// a SHA-256 hash chain, so history cannot be changed unnoticed.
//
// Semantics follow TigerBeetle's (see docs/ledger.md for every flag and
// result code, and the order in which they are checked), plus what a bank's
// payment core needs: a minimum balance, an overdraft limit, frozen accounts,
// idempotent retries after a restart, and a transaction hook that lets the
// switch store its own records atomically with the hold it creates.
//
// Thread safety: a Ledger is safe to use from any number of threads. Writes
// are sequenced by one thread and group-committed (one WAL fsync covers
// every group written before it started); every write call returns (or
// calls back) only after its group is durable. Reads see the durable state
// only.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/status.hpp"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace narae::ledger {

// A 128-bit unsigned value (ids and user data). Ordered as an integer.
struct U128 {
  uint64_t hi = 0;
  uint64_t lo = 0;
  static constexpr U128 Max() { return {~uint64_t{0}, ~uint64_t{0}}; }
  static constexpr U128 From(uint64_t v) { return {0, v}; }
  constexpr bool IsZero() const { return hi == 0 && lo == 0; }
  constexpr bool IsMax() const { return hi == ~uint64_t{0} && lo == ~uint64_t{0}; }
  friend constexpr auto operator<=>(const U128&, const U128&) = default;
  std::string ToHex() const;  // 32 lowercase hex digits
  // Accepts 1..32 hex digits, or a decimal number (up to 2^64-1) when
  // `allow_decimal` and the text has only digits.
  static std::optional<U128> Parse(std::string_view text, bool allow_decimal = true);
};
struct U128Hash {
  size_t operator()(const U128& v) const noexcept {
    uint64_t x = v.hi * 0x9E3779B97F4A7C15ull ^ v.lo;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return static_cast<size_t>(x);
  }
};

// Strong ids: an AccountId cannot be passed where a TransferId is expected.
template <typename Tag>
struct Id {
  U128 value;
  static constexpr Id From(uint64_t v) { return Id{U128::From(v)}; }
  constexpr bool IsZero() const { return value.IsZero(); }
  constexpr bool IsMax() const { return value.IsMax(); }
  friend constexpr auto operator<=>(const Id&, const Id&) = default;
  std::string ToHex() const { return value.ToHex(); }
};
struct AccountTag {};
struct TransferTag {};
using AccountId = Id<AccountTag>;
using TransferId = Id<TransferTag>;
struct IdHash {
  template <typename Tag>
  size_t operator()(const Id<Tag>& id) const noexcept {
    return U128Hash{}(id.value);
  }
};

// Limits (named and checked, never implicit).
inline constexpr size_t kBatchEventsMax = 8189;                  // events per call
inline constexpr size_t kQueryLimitMax = 8189;                   // rows per query
inline constexpr uint32_t kTimeoutSecondsMax = 400 * 24 * 3600;  // 400 days

// Account types used by Narae (the ledger itself only requires code != 0).
enum class AccountCode : uint16_t {
  kCustomerDeposit = 1,
  kMerchantClearing = 2,
  kMerchantSettlement = 3,
  kFeeIncome = 4,
  kLogistics = 5,
  kInterbank = 6,
  kCentralBankSettlement = 7,
  kBankCash = 8,  // the bank's own funding/equity side for deposits
};

namespace account_flags {
inline constexpr uint16_t kLinked = 1 << 0;
inline constexpr uint16_t kDebitsMustNotExceedCredits = 1 << 1;
inline constexpr uint16_t kCreditsMustNotExceedDebits = 1 << 2;
inline constexpr uint16_t kHistory = 1 << 3;
inline constexpr uint16_t kClosed = 1 << 4;  // state: set by ChangeAccounts
inline constexpr uint16_t kFrozen = 1 << 5;  // state: set by ChangeAccounts
inline constexpr uint16_t kAll = (1 << 6) - 1;
}  // namespace account_flags

struct Account {
  AccountId id;
  U128 user_data_128;
  uint64_t user_data_64 = 0;
  uint32_t user_data_32 = 0;
  uint32_t ledger = 0;  // the currency: ISO 4217 numeric code (408 KPW, 840 USD)
  uint16_t code = 0;    // account type (AccountCode)
  uint16_t flags = 0;   // account_flags
  // A reserve that payments may not touch (on the side the balance flag
  // protects). REQUIRES: one of the two balance flags when non-zero.
  uint64_t minimum_balance_minor = 0;
  // How far the protected side may be overdrawn. Same requirement.
  uint64_t overdraft_limit_minor = 0;
  // Balances: must be zero on creation; maintained by the ledger.
  uint64_t debits_pending = 0;
  uint64_t debits_posted = 0;
  uint64_t credits_pending = 0;
  uint64_t credits_posted = 0;
  uint64_t timestamp = 0;  // assigned by the ledger (nanoseconds); 0 on creation

  bool operator==(const Account&) const = default;
};

namespace transfer_flags {
inline constexpr uint16_t kLinked = 1 << 0;
inline constexpr uint16_t kPending = 1 << 1;
inline constexpr uint16_t kPostPendingTransfer = 1 << 2;
inline constexpr uint16_t kVoidPendingTransfer = 1 << 3;
inline constexpr uint16_t kBalancingDebit = 1 << 4;
inline constexpr uint16_t kBalancingCredit = 1 << 5;
inline constexpr uint16_t kAll = (1 << 6) - 1;
}  // namespace transfer_flags

struct Transfer {
  TransferId id;
  AccountId debit_account_id;
  AccountId credit_account_id;
  uint64_t amount_minor = 0;  // for a post: 0 posts the full pending amount
  TransferId pending_id;      // the hold a post or void refers to
  U128 user_data_128;         // e.g. the order reference
  uint64_t user_data_64 = 0;  // e.g. the merchant
  uint32_t user_data_32 = 0;  // e.g. the terminal
  uint32_t timeout_s = 0;     // pending only: seconds until the hold expires (0 = never)
  uint32_t ledger = 0;
  uint16_t code = 0;
  uint16_t flags = 0;
  uint64_t timestamp = 0;  // assigned by the ledger; 0 on creation

  bool operator==(const Transfer&) const = default;
};

// Every way creating an account can end, in the order they are checked.
#define NARAE_ACCOUNT_RESULTS(X)                                               \
  X(kOk, ok)                                                                   \
  X(kLinkedEventFailed, linked_event_failed)                                   \
  X(kLinkedEventChainOpen, linked_event_chain_open)                            \
  X(kTimestampMustBeZero, timestamp_must_be_zero)                              \
  X(kReservedFlag, reserved_flag)                                              \
  X(kIdMustNotBeZero, id_must_not_be_zero)                                     \
  X(kIdMustNotBeIntMax, id_must_not_be_int_max)                                \
  X(kFlagsAreMutuallyExclusive, flags_are_mutually_exclusive)                  \
  X(kStateFlagsMustNotBeSet, state_flags_must_not_be_set)                      \
  X(kDebitsPendingMustBeZero, debits_pending_must_be_zero)                     \
  X(kDebitsPostedMustBeZero, debits_posted_must_be_zero)                       \
  X(kCreditsPendingMustBeZero, credits_pending_must_be_zero)                   \
  X(kCreditsPostedMustBeZero, credits_posted_must_be_zero)                     \
  X(kLedgerMustNotBeZero, ledger_must_not_be_zero)                             \
  X(kCodeMustNotBeZero, code_must_not_be_zero)                                 \
  X(kLimitRequiresBalanceFlag, limit_requires_balance_flag)                    \
  X(kExistsWithDifferentFlags, exists_with_different_flags)                    \
  X(kExistsWithDifferentUserData128, exists_with_different_user_data_128)      \
  X(kExistsWithDifferentUserData64, exists_with_different_user_data_64)        \
  X(kExistsWithDifferentUserData32, exists_with_different_user_data_32)        \
  X(kExistsWithDifferentLedger, exists_with_different_ledger)                  \
  X(kExistsWithDifferentCode, exists_with_different_code)                      \
  X(kExistsWithDifferentMinimumBalance, exists_with_different_minimum_balance) \
  X(kExistsWithDifferentOverdraftLimit, exists_with_different_overdraft_limit) \
  X(kExists, exists)

// Every way creating a transfer can end, in the order they are checked.
#define NARAE_TRANSFER_RESULTS(X)                                                                  \
  X(kOk, ok)                                                                                       \
  X(kLinkedEventFailed, linked_event_failed)                                                       \
  X(kLinkedEventChainOpen, linked_event_chain_open)                                                \
  X(kTimestampMustBeZero, timestamp_must_be_zero)                                                  \
  X(kReservedFlag, reserved_flag)                                                                  \
  X(kIdMustNotBeZero, id_must_not_be_zero)                                                         \
  X(kIdMustNotBeIntMax, id_must_not_be_int_max)                                                    \
  X(kFlagsAreMutuallyExclusive, flags_are_mutually_exclusive)                                      \
  X(kDebitAccountIdMustNotBeZero, debit_account_id_must_not_be_zero)                               \
  X(kDebitAccountIdMustNotBeIntMax, debit_account_id_must_not_be_int_max)                          \
  X(kCreditAccountIdMustNotBeZero, credit_account_id_must_not_be_zero)                             \
  X(kCreditAccountIdMustNotBeIntMax, credit_account_id_must_not_be_int_max)                        \
  X(kAccountsMustBeDifferent, accounts_must_be_different)                                          \
  X(kPendingIdMustBeZero, pending_id_must_be_zero)                                                 \
  X(kPendingIdMustNotBeZero, pending_id_must_not_be_zero)                                          \
  X(kPendingIdMustNotBeIntMax, pending_id_must_not_be_int_max)                                     \
  X(kPendingIdMustBeDifferent, pending_id_must_be_different)                                       \
  X(kTimeoutReservedForPendingTransfer, timeout_reserved_for_pending_transfer)                     \
  X(kTimeoutTooLarge, timeout_too_large)                                                           \
  X(kLedgerMustNotBeZero, ledger_must_not_be_zero)                                                 \
  X(kCodeMustNotBeZero, code_must_not_be_zero)                                                     \
  X(kAmountMustNotBeZero, amount_must_not_be_zero)                                                 \
  X(kExistsWithDifferentFlags, exists_with_different_flags)                                        \
  X(kExistsWithDifferentPendingId, exists_with_different_pending_id)                               \
  X(kExistsWithDifferentTimeout, exists_with_different_timeout)                                    \
  X(kExistsWithDifferentDebitAccountId, exists_with_different_debit_account_id)                    \
  X(kExistsWithDifferentCreditAccountId, exists_with_different_credit_account_id)                  \
  X(kExistsWithDifferentAmount, exists_with_different_amount)                                      \
  X(kExistsWithDifferentUserData128, exists_with_different_user_data_128)                          \
  X(kExistsWithDifferentUserData64, exists_with_different_user_data_64)                            \
  X(kExistsWithDifferentUserData32, exists_with_different_user_data_32)                            \
  X(kExistsWithDifferentLedger, exists_with_different_ledger)                                      \
  X(kExistsWithDifferentCode, exists_with_different_code)                                          \
  X(kExists, exists)                                                                               \
  X(kIdAlreadyFailed, id_already_failed)                                                           \
  X(kDebitAccountNotFound, debit_account_not_found)                                                \
  X(kCreditAccountNotFound, credit_account_not_found)                                              \
  X(kAccountsMustHaveTheSameLedger, accounts_must_have_the_same_ledger)                            \
  X(kTransferMustHaveTheSameLedgerAsAccounts, transfer_must_have_the_same_ledger_as_accounts)      \
  X(kPendingTransferNotFound, pending_transfer_not_found)                                          \
  X(kPendingTransferNotPending, pending_transfer_not_pending)                                      \
  X(kPendingTransferHasDifferentDebitAccountId, pending_transfer_has_different_debit_account_id)   \
  X(kPendingTransferHasDifferentCreditAccountId, pending_transfer_has_different_credit_account_id) \
  X(kPendingTransferHasDifferentLedger, pending_transfer_has_different_ledger)                     \
  X(kPendingTransferHasDifferentCode, pending_transfer_has_different_code)                         \
  X(kExceedsPendingTransferAmount, exceeds_pending_transfer_amount)                                \
  X(kPendingTransferHasDifferentAmount, pending_transfer_has_different_amount)                     \
  X(kPendingTransferAlreadyPosted, pending_transfer_already_posted)                                \
  X(kPendingTransferAlreadyVoided, pending_transfer_already_voided)                                \
  X(kPendingTransferExpired, pending_transfer_expired)                                             \
  X(kDebitAccountClosed, debit_account_closed)                                                     \
  X(kCreditAccountClosed, credit_account_closed)                                                   \
  X(kDebitAccountFrozen, debit_account_frozen)                                                     \
  X(kCreditAccountFrozen, credit_account_frozen)                                                   \
  X(kOverflowsDebitsPending, overflows_debits_pending)                                             \
  X(kOverflowsCreditsPending, overflows_credits_pending)                                           \
  X(kOverflowsDebitsPosted, overflows_debits_posted)                                               \
  X(kOverflowsCreditsPosted, overflows_credits_posted)                                             \
  X(kOverflowsDebits, overflows_debits)                                                            \
  X(kOverflowsCredits, overflows_credits)                                                          \
  X(kOverflowsTimeout, overflows_timeout)                                                          \
  X(kBelowMinimumBalance, below_minimum_balance)                                                   \
  X(kExceedsOverdraftLimit, exceeds_overdraft_limit)                                               \
  X(kExceedsCredits, exceeds_credits)                                                              \
  X(kExceedsDebits, exceeds_debits)

#define NARAE_CHANGE_RESULTS(X)                     \
  X(kOk, ok)                                        \
  X(kLinkedEventFailed, linked_event_failed)        \
  X(kLinkedEventChainOpen, linked_event_chain_open) \
  X(kReservedFlag, reserved_flag)                   \
  X(kInvalidAction, invalid_action)                 \
  X(kAccountNotFound, account_not_found)            \
  X(kAccountAlreadyClosed, account_already_closed)  \
  X(kAccountNotClosed, account_not_closed)          \
  X(kAccountAlreadyFrozen, account_already_frozen)  \
  X(kAccountNotFrozen, account_not_frozen)          \
  X(kAccountHasPendingBalance, account_has_pending_balance)

#define NARAE_ENUM_VALUE(name, text) name,
enum class CreateAccountResult : uint32_t { NARAE_ACCOUNT_RESULTS(NARAE_ENUM_VALUE) };
enum class CreateTransferResult : uint32_t { NARAE_TRANSFER_RESULTS(NARAE_ENUM_VALUE) };
enum class ChangeAccountResult : uint32_t { NARAE_CHANGE_RESULTS(NARAE_ENUM_VALUE) };
#undef NARAE_ENUM_VALUE

// Stable snake_case names (used in docs, logs and JSON).
const char* ResultName(CreateAccountResult r);
const char* ResultName(CreateTransferResult r);
const char* ResultName(ChangeAccountResult r);

struct AccountOutcome {
  CreateAccountResult result = CreateAccountResult::kOk;
  uint64_t timestamp = 0;  // the account's timestamp when ok or exists
};
struct TransferOutcome {
  CreateTransferResult result = CreateTransferResult::kOk;
  uint64_t timestamp = 0;     // the transfer's timestamp when ok or exists
  uint64_t amount_minor = 0;  // the amount applied (balancing or full post)
};

// Explicit, recorded changes of an account's state. Accounts are never deleted.
enum class AccountAction : uint8_t {
  kClose = 1,   // no new transfers; REQUIRES no pending balance
  kReopen = 2,  // undo a close
  kFreeze = 3,  // no new transfers or posts; voids and expiries still release
  kUnfreeze = 4,
};
struct AccountChange {
  AccountId id;
  AccountAction action = AccountAction::kFreeze;
  uint32_t reason_code = 0;  // bank's own reason (court order, customer request, ...)
  uint16_t flags = 0;        // account_flags::kLinked only
  uint64_t timestamp = 0;    // assigned by the ledger
};
struct ChangeOutcome {
  ChangeAccountResult result = ChangeAccountResult::kOk;
  uint64_t timestamp = 0;
};

enum class HoldState : uint8_t { kPending = 1, kPosted = 2, kVoided = 3, kExpired = 4 };
const char* HoldStateName(HoldState s);
struct HoldInfo {
  Transfer hold;  // the pending transfer
  HoldState state = HoldState::kPending;
  uint64_t expires_at = 0;   // ns; 0 = never
  uint64_t resolved_at = 0;  // ns of the post/void/expiry
  uint64_t posted_amount_minor = 0;
};

// One entry of an account's history (an index row).
struct AccountEntry {
  enum class Kind : uint8_t { kTransfer = 1, kExpiry = 2 };
  Kind kind = Kind::kTransfer;
  uint64_t timestamp = 0;
  Transfer transfer;  // kTransfer: the transfer; kExpiry: the expired hold
  // Balances after this entry (only for accounts with the history flag).
  bool has_balances = false;
  uint64_t debits_pending = 0, debits_posted = 0, credits_pending = 0, credits_posted = 0;
};

struct AccountFilter {
  AccountId account_id;
  uint64_t timestamp_min = 0;  // inclusive; 0 = from the start
  uint64_t timestamp_max = 0;  // inclusive; 0 = to the end
  uint32_t limit = 100;        // 1..kQueryLimitMax
  bool reversed = false;       // newest first
  bool debits = true;          // entries where the account is debited
  bool credits = true;         // entries where the account is credited
};

// A journal link: one committed group.
struct JournalEntry {
  uint64_t sequence = 0;
  uint64_t first_timestamp = 0;
  uint64_t last_timestamp = 0;
  uint64_t event_count = 0;
  std::array<uint8_t, 32> events_digest{};
  std::array<uint8_t, 32> previous_hash{};
  std::array<uint8_t, 32> hash{};
};

// Sequencer-side view given to Submit() callbacks. Valid only during the
// callback, on the sequencer thread. Everything done through it commits in
// the same RocksDB batch (atomically) or not at all.
class Txn {
 public:
  virtual ~Txn() = default;
  virtual std::vector<AccountOutcome> CreateAccounts(std::span<const Account> accounts) = 0;
  virtual std::vector<TransferOutcome> CreateTransfers(std::span<const Transfer> transfers) = 0;
  virtual std::vector<ChangeOutcome> ChangeAccounts(std::span<const AccountChange> changes) = 0;
  // The current (sequenced, maybe not yet durable) state of an account.
  virtual std::optional<Account> PeekAccount(AccountId id) = 0;
  virtual std::optional<HoldInfo> PeekHold(TransferId pending_id) = 0;
  virtual std::optional<Transfer> PeekTransfer(TransferId id) = 0;
  // Opaque records of the layers above (switch duplicate detection, SIM
  // counters, idempotency keys). Gets see earlier puts of this and
  // not-yet-durable groups. Keys at most 256 bytes, values at most 64 KiB.
  virtual std::optional<std::string> GetAux(std::string_view key) = 0;
  // GetAux for a record read again and again that may never have been
  // written (a card's credential state, kept only once it changes): the
  // answer, "absent" included, stays in the sequencer's aux cache, so the
  // next read of a key nobody wrote costs no RocksDB read. Exact, not a
  // guess: every aux write goes through PutAux, and its group replaces the
  // cached answer before any later submission runs. Same results as GetAux.
  virtual std::optional<std::string> GetAuxHot(std::string_view key) = 0;
  virtual void PutAux(std::string_view key, std::string_view value) = 0;
  // The timestamp base of this group (ns since the epoch, strictly increasing).
  virtual uint64_t now_ns() const = 0;
};
using TxnFn = std::function<void(Txn&)>;
using DoneFn = std::function<void(Status)>;

// For a Submit() callback (DoneFn): runs `fn(arg)` on this ledger thread
// once every callback of the current group has returned, before any later
// group's callbacks and before the group's callbacks are destroyed (what
// they hold is still alive). Calls run in the order deferred. Returns false,
// and defers nothing, outside a group's callbacks or when
// kDeferredCallsMax calls already wait: the caller then does the work at
// once. The switch hands each I/O thread one burst of replies per group
// this way, instead of waking it for every reply.
inline constexpr size_t kDeferredCallsMax = 64;
bool DeferUntilGroupCallbacksReturn(void (*fn)(void*), void* arg);

// CPU pinning (Options::pipeline_cpus; the switch pins its I/O threads with
// the same functions). A list holds CPU ids as the kernel numbers them, at
// most kCpusMax of them. CheckCpus: every id is one this process may run on
// (the calling thread's affinity mask: the process's when called before any
// pinning, as Open and the servers' Start do), no duplicates;
// InvalidArgument otherwise (empty is fine). PinThisThread: the calling
// thread runs on those CPUs only (empty: left as it is).
inline constexpr size_t kCpusMax = 1024;
// The bound of Options::background_write_mib_per_s.
inline constexpr uint32_t kBackgroundWriteMibPerSMax = 100'000;
Status CheckCpus(const std::vector<uint32_t>& cpus);
Status PinThisThread(const std::vector<uint32_t>& cpus);

struct Options {
  std::string path;  // the data folder (created when missing)
  // Open as a RocksDB secondary: read-only, follows a live primary
  // (CatchUp()). Write calls return FailedPrecondition.
  bool read_only = false;
  // Durability: sync the WAL before acknowledging. Only tests turn it off.
  bool sync = true;
  // Group commit: at most this many events in one RocksDB batch. Small
  // enough that the sequencer can build the next group while the writer
  // writes this one: a group that swallowed every queued submission would
  // leave the sequencer idle until it is durable (the two threads would
  // alternate instead of overlapping).
  size_t group_events_max = 2 * kBatchEventsMax;
  // Back-pressure: at most this many submissions queued; further Submit()
  // calls fail with Unavailable.
  size_t queue_submissions_max = 65536;
  // While the WAL sync of earlier groups runs, the group being built stays
  // open for what arrives, at most this long (microseconds, 1..10,000,000),
  // then it is written so that it is ready for the next sync. It is
  // written at once when the syncer goes idle or the group is full (64
  // submissions), so this bound only matters while a sync is slow.
  uint32_t group_open_max_us = 2000;
  // The clock (ns since the epoch). Tests inject a fake one.
  std::function<uint64_t()> clock_ns;
  // Account balances are written to disk lazily (the events are the record;
  // balances are replayed from them on open): at most this often, once the
  // events since the last snapshot are at least
  // `account_snapshot_events_per_account` times the accounts it would
  // write, and at the latest after ten intervals...
  uint32_t account_snapshot_interval_ms = 1000;
  uint32_t account_snapshot_events_per_account = 4;
  // ...or when this many accounts changed since the last snapshot.
  size_t account_snapshot_dirty_max = 262144;
  // RocksDB block cache, bytes.
  size_t block_cache_bytes = 256u << 20;
  // RocksDB's flush and compaction threads at the lowest CPU priority
  // (nice 19): they use the CPU the submissions leave idle. Their pools are
  // the environment's, shared by every database in the process, and are
  // never raised again once lowered. Off by default: where other processes
  // keep the cores busy a flush at nice 19 falls far behind (the CI's
  // parallel tests stalled for 10 minutes on one), so only for a machine
  // the ledger has to itself.
  bool background_low_priority = false;
  // Flushes and compactions write at most this many MiB a second (RocksDB's
  // rate limiter, refilled every 10 ms; 0 = no limit, at most
  // kBackgroundWriteMibPerSMax). A 64 MB memtable's flush then spreads
  // over a second or more instead of taking a core for a few hundred
  // milliseconds (RocksDB then also writes files back every MiB,
  // `bytes_per_sync`; the rate it slows writes to stays 16 MiB/s). Anything
  // that waits for a flush (Close, a checkpoint or online backup, recovery
  // after a write error) waits longer. Too low a limit for the
  // write rate lets flushes and compactions fall behind until writes
  // stall: the WAL grows about 660 bytes a switch request, flushes write
  // about a quarter of that, compactions more (docs/ledger.md, "Background
  // write limit").
  uint32_t background_write_mib_per_s = 0;
  // CPUs the sequencer, the syncer and the acknowledging thread run on
  // (CheckCpus at Open); empty = wherever the kernel puts them. On a small
  // machine, keeping them on one core and the I/O threads on the others
  // saves each hand-off from waiting behind another thread on a busy core
  // while one sits idle (docs/ledger.md, "Pinning the pipeline").
  std::vector<uint32_t> pipeline_cpus;
  // The RocksDB environment (files, threads); null = the default. Tests
  // pass one whose files fail on demand (fault injection). Not owned; must
  // outlive the ledger.
  rocksdb::Env* env = nullptr;
};

struct VerifyReport {
  bool ok = false;
  uint64_t journal_entries = 0;
  uint64_t events = 0;
  uint64_t transfers = 0;
  uint64_t accounts = 0;
  std::string first_problem;  // empty when ok
};

struct LedgerStats {
  uint64_t groups_committed = 0;  // synced and acknowledged
  uint64_t groups_written = 0;    // written to RocksDB (synced or not yet)
  uint64_t events_committed = 0;
  uint64_t last_group_events = 0;
  uint64_t last_fsync_us = 0;
  uint64_t accounts = 0;
  uint64_t open_holds = 0;
  uint64_t sequencer_busy_us = 0;  // CPU time applying and encoding groups
  uint64_t writer_busy_us = 0;     // CPU time in RocksDB writes (the sequencer's; no fsync)
  bool healthy = true;             // false after a write error, until recovered
};

class Ledger {
 public:
  static Result<std::unique_ptr<Ledger>> Open(const Options& options);
  virtual ~Ledger() = default;

  // Synchronous batch writes: each call is one batch of at most
  // kBatchEventsMax events, returns one outcome per event, and returns only
  // once durable. A failed Status (disk error, shutting down, queue full)
  // means nothing of the batch is acknowledged.
  virtual Result<std::vector<AccountOutcome>> CreateAccounts(std::span<const Account> a) = 0;
  virtual Result<std::vector<TransferOutcome>> CreateTransfers(std::span<const Transfer> t) = 0;
  virtual Result<std::vector<ChangeOutcome>> ChangeAccounts(std::span<const AccountChange> c) = 0;

  // Runs `fn` on the sequencer thread, then commits what it did; `done` is called once durable
  // or with the error, in commit order, one at a time, on a ledger thread (docs/ledger.md); it
  // must not block. `fn` must be quick and must not block. Returns Unavailable without calling
  // either when the queue is full or the ledger is closing or unhealthy.
  virtual Status Submit(TxnFn fn, DoneFn done) = 0;
  // Submit() and wait.
  virtual Status Execute(TxnFn fn) = 0;

  // Reads of the durable state.
  virtual std::optional<Account> LookupAccount(AccountId id) = 0;
  virtual std::optional<Transfer> LookupTransfer(TransferId id) = 0;
  virtual std::optional<HoldInfo> LookupHold(TransferId pending_id) = 0;
  virtual Result<std::vector<AccountEntry>> GetAccountEntries(const AccountFilter& filter) = 0;
  virtual Result<std::vector<Transfer>> QueryTransfersByUserData(U128 user_data_128,
                                                                 uint32_t limit) = 0;
  // Calls `fn` for every account (id order), stop early by returning false.
  virtual Status ScanAccounts(const std::function<bool(const Account&)>& fn) = 0;
  // Calls `fn` for every transfer with timestamp in [from, to] in order.
  virtual Status ScanTransfers(uint64_t from_ts, uint64_t to_ts,
                               const std::function<bool(const Transfer&)>& fn) = 0;
  virtual std::optional<std::string> GetAux(std::string_view key) = 0;
  // Calls `fn` for aux records whose key starts with `prefix`, in key order.
  virtual Status ScanAux(std::string_view prefix,
                         const std::function<bool(std::string_view, std::string_view)>& fn) = 0;
  virtual Result<JournalEntry> JournalHead() = 0;

  // Read-only instances: catch up with the live primary.
  virtual Status CatchUp() = 0;
  // Recompute the hash chain and every balance from the events.
  virtual Result<VerifyReport> Verify(const std::function<void(uint64_t)>& progress = {}) = 0;
  // A consistent online copy (RocksDB checkpoint) in `dir` (must not exist).
  virtual Status Checkpoint(const std::string& dir) = 0;
  virtual LedgerStats Stats() = 0;
  // Expire due holds now (normally done by the sequencer on its own).
  virtual Status Tick() = 0;
  // Stop accepting, drain and commit what is queued, close. Idempotent.
  virtual Status Close() = 0;
};

}  // namespace narae::ledger
