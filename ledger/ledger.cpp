// The Ledger on RocksDB: a sequencer thread applies submissions to the
// in-memory state (Engine), builds one RocksDB WriteBatch per group and
// writes it (WAL append and memtable, no sync); a syncer thread syncs the
// WAL (one fsync covers every group written before it started), publishes
// the synced state to readers and hands the groups' callbacks to an
// acknowledging thread (or runs a small group's itself). The stages run as a
// pipeline: groups N+1, N+2... are sequenced and written while group N's
// fsync runs, so a group's own write (the memtable inserts) is never
// between two fsyncs. Readers other than the sequencer read through the
// snapshot of the last synced group (a written group is visible in the DB
// before it is durable).
//
// On-disk layout (column families; docs/ledger.md has the details):
//   default       "meta" -> last timestamp and journal head; "layout"
//   accounts      id(16)            -> Account (balances as of the snapshot)
//   events        first timestamp(8) -> chunk of up to 64 frames
//                 ts(8) len(4) kind(1)+record (the ordered log)
//   transfer_ids  id(16)            -> timestamp(8), or 'F' + result code(8)
//   account_index account(16)+ts(8) -> "" or balances after (history accounts)
//   user_data     user_data_128(16)+ts(8) -> ""
//   holds_open    id(16)            -> expires_at(8)
//   holds_done    id(16)            -> state(1) resolved_at(8) posted(8)
//   journal       sequence(8)       -> JournalEntry
//   aux           opaque key        -> opaque value (switch records)
#include "ledger/ledger.hpp"

#include <openssl/evp.h>
#include <pthread.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/rate_limiter.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "ledger/codec.hpp"
#include "ledger/engine.hpp"
#include "ledger/histogram.hpp"
#include "ledger/verify.hpp"

namespace narae::ledger {

#define NARAE_RESULT_NAME(name, text) \
  case R::name:                       \
    return #text;
const char* ResultName(CreateAccountResult r) {
  using R = CreateAccountResult;
  switch (r) { NARAE_ACCOUNT_RESULTS(NARAE_RESULT_NAME) }
  return "unknown";
}
const char* ResultName(CreateTransferResult r) {
  using R = CreateTransferResult;
  switch (r) { NARAE_TRANSFER_RESULTS(NARAE_RESULT_NAME) }
  return "unknown";
}
const char* ResultName(ChangeAccountResult r) {
  using R = ChangeAccountResult;
  switch (r) { NARAE_CHANGE_RESULTS(NARAE_RESULT_NAME) }
  return "unknown";
}
#undef NARAE_RESULT_NAME

const char* HoldStateName(HoldState s) {
  switch (s) {
    case HoldState::kPending:
      return "pending";
    case HoldState::kPosted:
      return "posted";
    case HoldState::kVoided:
      return "voided";
    case HoldState::kExpired:
      return "expired";
  }
  return "unknown";
}

std::string U128::ToHex() const {
  static const char* kDigits = "0123456789abcdef";
  std::string s(32, '0');
  for (int i = 0; i < 16; ++i) {
    s[15 - i] = kDigits[(hi >> (4 * i)) & 0xf];
    s[31 - i] = kDigits[(lo >> (4 * i)) & 0xf];
  }
  return s;
}

std::optional<U128> U128::Parse(std::string_view text, bool allow_decimal) {
  if (text.empty() || text.size() > 34) return std::nullopt;
  bool hex_prefix = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  bool all_digits = text.find_first_not_of("0123456789") == std::string_view::npos;
  if (allow_decimal && all_digits && !hex_prefix) {
    if (text.size() > 20) return std::nullopt;
    unsigned __int128 v = 0;
    for (char c : text) v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > ~uint64_t{0}) return std::nullopt;
    return U128::From(static_cast<uint64_t>(v));
  }
  if (hex_prefix) text.remove_prefix(2);
  if (text.empty() || text.size() > 32) return std::nullopt;
  U128 v;
  for (char c : text) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    v.hi = (v.hi << 4) | (v.lo >> 60);
    v.lo = (v.lo << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

namespace {

constexpr const char* kMetaKey = "meta";
// Marks a folder whose event log is chunked (docs/ledger.md, "On-disk layout").
constexpr const char* kLayoutKey = "layout";
constexpr const char* kLayoutChunked = "events-chunked-1";
constexpr size_t kUpgradeBatchEventsMax = 4096;
constexpr size_t kAuxKeyBytesMax = 256;
constexpr size_t kAuxValueBytesMax = 64 * 1024;
// The aux memtables' whole-key bloom: this fraction of the write buffer
// (64 MiB -> 1.3 MiB, about 40 bits per key at ~250 bytes a row: false
// positives are negligible).
constexpr double kAuxMemtableBloomRatio = 0.02;
// The sequencer's cache of aux records read from the DB (LedgerImpl::aux_cache_).
constexpr size_t kAuxCacheEntriesMax = 16384;
constexpr size_t kAuxCacheBytesMax = 8u << 20;
// Sealed groups' aux rows stay readable on the sequencer after they are
// durable (LedgerImpl::aux_groups_), up to these bounds: a request that
// follows another (a completion, a reversal, a refund) reads the records its
// original wrote a few groups earlier, which cost a memtable search each
// (~11,800 instructions) once the original's group was durable.
constexpr size_t kAuxRetainedGroupsMax = 16;
constexpr size_t kAuxRetainedRowsMax = 65536;
constexpr size_t kAuxRetainedBytesMax = 16u << 20;
constexpr size_t kExpiriesPerGroupMax = kBatchEventsMax;
// Groups written but not yet synced, at most (the sequencer waits for room:
// a stalled fsync must let the queue fill, so that Submit() answers
// Unavailable). A sync takes every group written before it started.
constexpr size_t kUnsyncedGroupsMax = 64;
// While the syncer syncs earlier groups, the group being built stays open
// and takes what arrives (one write, one snapshot for all of it instead of
// one per submission), but for at most Options::group_open_max_us or this
// many submissions: then it is written, so that when the sync ends only the
// little that came since waits to be written before the next sync. When the
// syncer has nothing to sync, a group is written as soon as the queue is
// drained.
constexpr size_t kOpenGroupSubmissionsMax = 64;
// While a group waits open, Submit() wakes the sequencer once this many
// are queued (OpenGroupRoom).
constexpr size_t kOpenGroupWakeSubmissions = 16;
constexpr uint32_t kGroupOpenMaxUsLimit = 10'000'000;
// Durable groups whose callbacks wait for the acknowledging thread; the
// syncer waits when this many are queued (back-pressure, a bounded queue).
constexpr size_t kAcksQueuedMax = 8;
// A durable group with at most this many callbacks runs them on the syncer
// itself when nothing else waits (no written group to sync, no callbacks
// queued or running on the acknowledging thread): the hand-off cost a futex
// wake and a context switch per group, and at low and moderate rates every
// group is small. Bounded so that a group written meanwhile waits at most
// ~64 callbacks (~0.2 ms of the switch's replies) for its sync.
constexpr size_t kInlineAckCallbacksMax = 64;
// ... and a durable group with at most this many runs them on the syncer
// even when the next group is already written and waits for its sync: the
// hand-off to the acknowledging thread cost a futex wake, a context switch
// and that thread's scheduling delay per group (on 2 busy cores 0.1 ms
// typical, several ms at worst), more than the ~16 replies (~0.1 ms) delay
// the next sync. Under steady moderate load most groups are this small and
// the next one is always waiting, so before this nearly every group's
// replies took the extra hop.
constexpr size_t kInlineAckBeforeNextSyncMax = 16;
// A group in the making grows from the queue while it stays open (RunGroup),
// at most this many times (a submission may add no event, so the
// group-size bound alone does not end the loop).
constexpr size_t kGrowPullsMax = 4096;
// While sequencing a long queue, every this many submissions the sequencer
// looks whether the syncer sleeps with nothing to sync, and if so writes
// the group so far (RunGroup), so that its fsync starts while the rest is
// sequenced.
constexpr size_t kSealCheckSubmissions = 128;

// Pipeline stage timings, per group (docs/ledger.md, "Where a group's time
// goes"), in microseconds (LatencyHistogram, ledger/histogram.hpp: recorded
// by whichever pipeline thread runs the stage). Printed as one line on
// stderr at Close() when NARAE_LEDGER_STAGES is set.
using StageHistogram = LatencyHistogram;

// "name":{"n":..,"mean":..,"p50":..,"p99":..,"p999":..,"max":..}
std::string StageJson(std::string_view name, StageHistogram& h) {
  const StageHistogram::Summary s = h.Summarize(false);
  char buf[256];
  std::snprintf(
      buf, sizeof(buf),
      "\"%.*s\":{\"n\":%llu,\"mean\":%llu,\"p50\":%llu,\"p99\":%llu,\"p999\":%llu,"
      "\"max\":%llu}",
      static_cast<int>(name.size()), name.data(), static_cast<unsigned long long>(s.count),
      static_cast<unsigned long long>(s.mean_us), static_cast<unsigned long long>(s.p50_us),
      static_cast<unsigned long long>(s.p99_us), static_cast<unsigned long long>(s.p999_us),
      static_cast<unsigned long long>(s.max_us));
  return buf;
}

enum Cf : size_t {
  kDefault = 0,
  kAccounts,
  kEvents,
  kTransferIds,
  kAccountIndex,
  kUserData,
  kHoldsOpen,
  kHoldsDone,
  kJournal,
  kAux,
  kCfCount,
};
const char* const kCfNames[kCfCount] = {"default",       "accounts",  "events",     "transfer_ids",
                                        "account_index", "user_data", "holds_open", "holds_done",
                                        "journal",       "aux"};
// transfer_ids values: the event key (8 bytes) of a stored transfer, or
// kFailedMarker + the result code (8 bytes) of an id that failed.
constexpr char kFailedMarker = 'F';
constexpr size_t kFailedValueBytes = 9;
// A batch row's bytes besides its key and value (tag, family, two lengths),
// and an event's rows at most (its frame in a chunk, transfer_ids,
// user_data, two account_index rows with balances, its hold's rows).
constexpr size_t kBatchRowOverheadBytes = 16;
constexpr size_t kBatchBytesPerEventMax = 640;
// The transfer-id and aux filters are built on open only when their family
// holds at most this many keys (RocksDB's estimate): the scan cost ~1.6 s per
// million transfer ids on the shared machine (a hash memtable is copied into
// key order to be iterated), so an open takes at most a few seconds more.
constexpr uint64_t kFilterScanKeysMax = uint64_t{4} << 20;
// The aux scan reads the values too (up to 64 KiB each; ~250 bytes in the
// switch's records): a lower bound.
constexpr uint64_t kAuxFilterScanKeysMax = uint64_t{1} << 20;
// The 64-bit hash of an aux key, computed once per key and carried with it
// (AuxRow, AuxKeyView): the group index, the cache and the filter all use it.
// Eight bytes a step (the last step's overlapping the one before when the
// size is not a multiple of 8), each mixed in by a multiply and a shift, then
// MurmurHash3's finalizer (every output bit depends on every input bit: the
// tables use the low bits). Aux keys are short (~20-60 bytes): std::hash's
// _Hash_bytes, called five or more times per key before, cost ~100
// instructions a call. Memory only (the filter and tables are rebuilt on
// open), so it may change.
uint64_t AuxHash(std::string_view key) {
  constexpr uint64_t kMul1 = 0xff51afd7ed558ccdull;
  constexpr uint64_t kMul2 = 0xc4ceb9fe1a85ec53ull;
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (key.size() * kMul2);
  const char* p = key.data();
  size_t n = key.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * kMul1;
    h ^= h >> 29;
  }
  if (n > 0) {
    uint64_t w = 0;
    if (key.size() >= 8) {
      std::memcpy(&w, key.data() + key.size() - 8, 8);  // the last 8 bytes, overlapping
    } else {
      for (size_t i = 0; i < n; ++i) w |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
    }
    h = (h ^ w) * kMul2;
    h ^= h >> 29;
  }
  h ^= h >> 33;
  h *= kMul1;
  h ^= h >> 33;
  h *= kMul2;
  h ^= h >> 33;
  return h;
}
// An aux key's filter key: its hash and its length (equal filter keys of
// different keys are false positives: a read, never a wrong answer).
U128 AuxFilterKey(std::string_view key, uint64_t hash) { return U128{hash, key.size()}; }
// Bytes [offset, offset + 8) of `s` as a big-endian integer, zero-padded:
// integers compare as the bytes do (unsigned, lexicographic).
uint64_t BigEndianPrefix(std::string_view s, size_t offset) {
  unsigned char b[8] = {};
  if (s.size() > offset) std::memcpy(b, s.data() + offset, std::min<size_t>(8, s.size() - offset));
  uint64_t v = 0;
  for (unsigned char c : b) v = (v << 8) | c;
  return v;
}

// CPU time of the calling thread, microseconds (not disturbed by other
// processes competing for the cores, unlike wall time).
uint64_t ThreadCpuUs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

uint64_t SystemClockNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// RocksDB's own diagnostics, warnings and errors only, as JSON lines on
// stderr. RocksDB would otherwise keep a LOG file in the data folder: when
// that disk fills, the LOG's file writer keeps its error, and Debian's
// RocksDB (built with assertions) aborts on the next line it logs, from
// inside DB::Resume(). The ledger's recovery from a full disk needs a log
// that cannot fail.
class StderrLogger final : public rocksdb::Logger {
 public:
  explicit StderrLogger(rocksdb::InfoLogLevel level) : rocksdb::Logger(level) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel() || level == rocksdb::InfoLogLevel::HEADER_LEVEL) return;
    char msg[1024];  // a longer line is cut: diagnostics, not data
    const int n = std::vsnprintf(msg, sizeof(msg), format, ap);
    if (n < 0) return;
    size_t len = std::min(static_cast<size_t>(n), sizeof(msg) - 1);
    while (len > 0 && msg[len - 1] == '\n') --len;
    std::string line = "{\"level\":\"";
    line += level >= rocksdb::InfoLogLevel::ERROR_LEVEL ? "error" : "warn";
    line += "\",\"source\":\"rocksdb\",\"msg\":\"";
    for (size_t i = 0; i < len; ++i) {
      const unsigned char c = static_cast<unsigned char>(msg[i]);
      if (c == '"' || c == '\\') {
        line += '\\';
        line += static_cast<char>(c);
      } else if (c < 0x20 || c >= 0x7f) {
        char esc[8];
        std::snprintf(esc, sizeof(esc), "\\u%04x", c);
        line += esc;
      } else {
        line += static_cast<char>(c);
      }
    }
    line += "\"}\n";
    (void)std::fwrite(line.data(), 1, line.size(), stderr);
  }
};

Status FromRocks(const rocksdb::Status& s, const char* what) {
  if (s.ok()) return Status::Ok();
  std::string msg = std::string(what) + ": " + s.ToString();
  if (s.IsNotFound()) return Status::NotFound(msg);
  if (s.IsCorruption()) return Status::Corruption(msg);
  if (s.IsIOError() || s.IsNoSpace()) return Status::IOError(msg);
  return Status::Internal(msg);
}

std::string EncodeHoldDone(const HoldDone& d) {
  std::string v;
  v.push_back(static_cast<char>(d.state));
  codec::PutU64(&v, d.resolved_at);
  codec::PutU64(&v, d.posted_amount_minor);
  return v;
}
std::optional<HoldDone> DecodeHoldDone(std::string_view v) {
  if (v.size() != 17) return std::nullopt;
  auto state = static_cast<uint8_t>(v[0]);
  if (state < 2 || state > 4) return std::nullopt;
  return HoldDone{static_cast<HoldState>(state), codec::GetU64(v.data() + 1),
                  codec::GetU64(v.data() + 9)};
}

// A fixed-width big-endian key built on the stack: the commit path writes
// several keys per transfer, and a 16- or 24-byte std::string would be a heap
// allocation each (past the small-string buffer).
class StackKey {
 public:
  StackKey& Put64(uint64_t v) {
    NARAE_CHECK(size_ + 8 <= sizeof(bytes_));
    for (int i = 7; i >= 0; --i) {
      bytes_[size_ + static_cast<size_t>(i)] = static_cast<char>(v & 0xff);
      v >>= 8;
    }
    size_ += 8;
    return *this;
  }
  StackKey& Put128(U128 v) { return Put64(v.hi).Put64(v.lo); }
  rocksdb::Slice slice() const { return {bytes_, size_}; }

 private:
  char bytes_[24];
  size_t size_ = 0;
};
StackKey Key128(U128 id) { return StackKey().Put128(id); }
StackKey Key128Ts(U128 id, uint64_t ts) { return StackKey().Put128(id).Put64(ts); }
StackKey KeyTs(uint64_t ts) { return StackKey().Put64(ts); }

// Builds a group's WriteBatch in its serialized form, RocksDB's documented
// WriteBatch representation (write_batch.cc, also the WAL record):
//   sequence (fixed64) | count (fixed32) | records
//   record: kTypeValue varstring varstring (the default family), or
//           kTypeColumnFamilyValue varint32 varstring varstring;
//           deletions alike with kTypeDeletion / kTypeColumnFamilyDeletion
//           and no value
// and hands it over with WriteBatch(std::string&&). WriteBatch::Put cost
// the sequencer ~440 instructions a row (sync points, protection info,
// save points, several appends); this is a few appends. A group writes
// four to five rows per transfer.
class BatchBuilder {
 public:
  // Starts a batch, with room for `bytes_hint` bytes.
  void Reset(size_t bytes_hint) {
    rep_.clear();
    rep_.reserve(std::max(bytes_hint, kHeaderBytes));
    rep_.append(kHeaderBytes, '\0');
    count_ = 0;
  }
  void Put(uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice& value) {
    Record(cf, kTypeValue, kTypeColumnFamilyValue, key, &value);
  }
  void Delete(uint32_t cf, const rocksdb::Slice& key) {
    Record(cf, kTypeDeletion, kTypeColumnFamilyDeletion, key, nullptr);
  }
  uint32_t count() const { return count_; }
  size_t bytes() const { return rep_.size(); }
  // The batch; the builder is empty until the next Reset().
  rocksdb::WriteBatch Take() {
    for (int i = 0; i < 4; ++i) rep_[8 + i] = static_cast<char>((count_ >> (8 * i)) & 0xff);
    rocksdb::WriteBatch batch(std::move(rep_));
    rep_ = std::string();
    NARAE_CHECK(batch.Count() == count_);
    return batch;
  }

 private:
  static constexpr size_t kHeaderBytes = 12;
  // rocksdb's ValueType tags (db/dbformat.h), part of the WAL format.
  static constexpr char kTypeDeletion = 0x0;
  static constexpr char kTypeValue = 0x1;
  static constexpr char kTypeColumnFamilyDeletion = 0x4;
  static constexpr char kTypeColumnFamilyValue = 0x5;
  static constexpr size_t kSmallKeyBytes = 32;
  // One record. A small key's record up to the value goes through a stack
  // buffer: one append instead of one per part.
  void Record(uint32_t cf, char default_tag, char cf_tag, const rocksdb::Slice& key,
              const rocksdb::Slice* value) {
    NARAE_CHECK(count_ < UINT32_MAX && key.size() <= UINT32_MAX);
    NARAE_CHECK(value == nullptr || value->size() <= UINT32_MAX);
    ++count_;
    char head[1 + 5 + 5 + kSmallKeyBytes + 5];
    char* p = head;
    if (cf == 0) {
      *p++ = default_tag;
    } else {
      *p++ = cf_tag;
      p = Varint32(p, cf);
    }
    p = Varint32(p, static_cast<uint32_t>(key.size()));
    if (key.size() <= kSmallKeyBytes) {
      std::memcpy(p, key.data(), key.size());
      p += key.size();
    } else {
      rep_.append(head, static_cast<size_t>(p - head));
      rep_.append(key.data(), key.size());
      p = head;
    }
    if (value != nullptr) p = Varint32(p, static_cast<uint32_t>(value->size()));
    rep_.append(head, static_cast<size_t>(p - head));
    if (value != nullptr && !value->empty()) rep_.append(value->data(), value->size());
  }
  static char* Varint32(char* p, uint32_t v) {
    while (v >= 0x80) {
      *p++ = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    *p++ = static_cast<char>(v);
    return p;
  }
  std::string rep_;
  uint32_t count_ = 0;
};

// Read options over one consistent view: on the primary the snapshot of the
// last synced group (LedgerImpl::SyncedSnapshot: a written group is in the
// DB before it is durable, and readers must not see it until it is); a
// secondary instance is already a fixed view between catch-ups (and has no
// snapshots: null).
struct ConsistentRead {
  explicit ConsistentRead(std::shared_ptr<const rocksdb::Snapshot> s) : snapshot(std::move(s)) {
    options.snapshot = snapshot.get();
  }
  std::shared_ptr<const rocksdb::Snapshot> snapshot;
  rocksdb::ReadOptions options;
};

// The last object of a recycling pool, or a new one when it is empty.
template <typename T>
std::unique_ptr<T> TakeOrMake(std::vector<std::unique_ptr<T>>* pool) {
  if (pool->empty()) return std::make_unique<T>();
  std::unique_ptr<T> p = std::move(pool->back());
  pool->pop_back();
  return p;
}

// A group's aux put: its key and value in the group's byte arena
// (AuxGroup), and the key's AuxHash.
struct AuxRow {
  size_t key_at = 0, key_size = 0, value_at = 0, value_size = 0;
  uint64_t hash = 0;
};

// A group's index of its aux rows by key (TxnImpl): open addressing over
// (32 hash bits, row + 1) slots, at most half full, kept across groups with
// only its used slots cleared. A node-based map cost an allocation and a
// free per put (the switch puts ~3 rows a request) and regrew its buckets
// in every group. Sequencer thread only.
class AuxIndex {
 public:
  // Forgets every row (the rows of the last group are gone).
  void Clear() {
    if (slots_.size() > kSlotsKeptMax) {
      std::vector<uint64_t>().swap(slots_);  // a huge group's table is not kept
      std::vector<uint32_t>().swap(used_);   // nor its list of used slots
    } else {
      for (uint32_t i : used_) slots_[i] = 0;
    }
    used_.clear();
  }
  // The row whose key (`key_of(row)`) is `key`, or -1.
  template <typename KeyOf>
  int64_t Find(std::string_view key, uint64_t hash64, const KeyOf& key_of) const {
    if (slots_.empty()) return -1;
    const uint32_t hash = static_cast<uint32_t>(hash64);
    const size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      const uint64_t slot = slots_[i];
      if (slot == 0) return -1;
      const uint32_t row = static_cast<uint32_t>(slot) - 1;
      if (static_cast<uint32_t>(slot >> 32) == hash && key_of(row) == key) return row;
    }
  }
  // Records that `row` (not in the index yet) holds a key with `hash64`.
  void Insert(uint64_t hash64, size_t row) {
    NARAE_CHECK(row < UINT32_MAX - 1);
    if ((used_.size() + 1) * 2 > slots_.size()) Grow();
    Place(static_cast<uint32_t>(hash64), static_cast<uint32_t>(row));
  }

 private:
  static constexpr size_t kSlotsInitial = 1024;
  static constexpr size_t kSlotsKeptMax = size_t{1} << 16;  // 512 KiB
  void Place(uint32_t hash, uint32_t row) {
    const size_t mask = slots_.size() - 1;
    size_t i = hash & mask;
    while (slots_[i] != 0) i = (i + 1) & mask;
    slots_[i] = (uint64_t{hash} << 32) | (row + 1);
    used_.push_back(static_cast<uint32_t>(i));
  }
  void Grow() {
    std::vector<uint64_t> old;
    old.swap(slots_);
    slots_.assign(std::max(kSlotsInitial, old.size() * 2), 0);
    used_.clear();
    for (uint64_t slot : old) {
      if (slot != 0) Place(static_cast<uint32_t>(slot >> 32), static_cast<uint32_t>(slot) - 1);
    }
  }
  std::vector<uint64_t> slots_;  // size 0 or a power of two
  std::vector<uint32_t> used_;   // the slots in use (what Clear zeroes)
};

// One group's aux rows (one per key: a second put of a key replaces its
// value) and their index: built while the group is sequenced (TxnImpl),
// then kept readable until it is durable and past the retention bounds
// (LedgerImpl::aux_groups_), then recycled. Keys and values are appended to
// one byte arena that keeps its capacity: a std::string per key and value
// cost an allocation at the put and a free at the end (~1,000 instructions
// a request on the sequencer). Sequencer thread only.
class AuxGroup {
 public:
  // Past these a recycled group releases its memory instead of keeping it
  // (one huge group): the pool (kAuxRetainedGroupsMax + 1 groups) then
  // keeps at most ~2 MiB a group (arena, rows, index) beyond the bytes of
  // the kept rows.
  static constexpr size_t kArenaKeptBytesMax = 1u << 20;
  static constexpr size_t kRowsKeptMax = 8192;

  uint64_t sequence = 0;  // PendingWrite::sequence once sealed

  // REQUIRES: hash == AuxHash(key).
  void Put(std::string_view key, uint64_t hash, std::string_view value) {
    if (int64_t row = index_.Find(key, hash, KeyOf()); row >= 0) {
      // Replaced: in place when the new value fits (the switch puts some
      // keys again and again in one group: a bank's stand-in state, the
      // expiry cursor), else appended (the old bytes stay until Clear). No
      // view into the arena is held while the group is built.
      AuxRow& r = rows_[static_cast<size_t>(row)];
      if (value.size() <= r.value_size) {
        if (!value.empty()) std::memcpy(arena_.data() + r.value_at, value.data(), value.size());
      } else {
        r.value_at = Append(value);
      }
      r.value_size = value.size();
      return;
    }
    AuxRow r;
    r.key_at = Append(key);
    r.key_size = key.size();
    r.value_at = Append(value);
    r.value_size = value.size();
    r.hash = hash;
    rows_.push_back(r);
    index_.Insert(hash, rows_.size() - 1);
  }
  // The row of `key` (with its AuxHash), or nullptr.
  const AuxRow* Find(std::string_view key, uint64_t hash) const {
    const int64_t row = index_.Find(key, hash, KeyOf());
    return row < 0 ? nullptr : &rows_[static_cast<size_t>(row)];
  }
  std::string_view Key(const AuxRow& r) const { return {arena_.data() + r.key_at, r.key_size}; }
  std::string_view Value(const AuxRow& r) const {
    return {arena_.data() + r.value_at, r.value_size};
  }
  const std::vector<AuxRow>& rows() const { return rows_; }
  // Room for `bytes` of keys and values and `rows` rows without regrowing
  // (a recycled group keeps its room; a new or smaller one would regrow it
  // by copies while the group is built).
  void Reserve(size_t bytes, size_t rows) {
    arena_.reserve(std::min(bytes, kArenaKeptBytesMax));
    rows_.reserve(std::min(rows, kRowsKeptMax));
  }
  // Bytes of keys and values held (replaced values included).
  size_t bytes() const { return arena_.size(); }
  void Clear() {
    sequence = 0;
    rows_.clear();
    arena_.clear();
    index_.Clear();
    if (arena_.capacity() > kArenaKeptBytesMax) std::string().swap(arena_);
    if (rows_.capacity() > kRowsKeptMax) std::vector<AuxRow>().swap(rows_);
  }

 private:
  struct KeyOfRow {
    const AuxGroup* g;
    std::string_view operator()(uint32_t row) const { return g->Key(g->rows_[row]); }
  };
  KeyOfRow KeyOf() const { return KeyOfRow{this}; }
  size_t Append(std::string_view bytes) {
    const size_t at = arena_.size();
    arena_.append(bytes);
    return at;
  }
  std::string arena_;
  std::vector<AuxRow> rows_;
  AuxIndex index_;
};

// Keys of the sequencer's aux cache: the key and its AuxHash, so a lookup
// (with an AuxKeyView) and every rehash or bucket walk reuse the hash
// instead of hashing the bytes again.
struct AuxKeyView {
  std::string_view key;
  uint64_t hash;
};
struct AuxCacheKey {
  std::string key;
  uint64_t hash;
};
struct AuxKeyHash {
  using is_transparent = void;
  size_t operator()(const AuxKeyView& k) const noexcept { return k.hash; }
  size_t operator()(const AuxCacheKey& k) const noexcept { return k.hash; }
};
struct AuxKeyEq {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const noexcept {
    return a.hash == b.hash && std::string_view(a.key) == std::string_view(b.key);
  }
};

struct Submission {
  TxnFn fn;
  DoneFn done;
  std::chrono::steady_clock::time_point queued;  // Submit()
};

// A sequenced group on its way to disk: built and written by the sequencer,
// then synced and acknowledged by the syncer.
struct PendingWrite {
  uint64_t sequence = 0;  // group sequence (for the overlay), not journal
  uint64_t epoch = 0;     // the pipeline epoch it was sequenced in (TryRecover)
  rocksdb::WriteBatch batch;
  std::vector<DoneFn> dones;
  size_t events = 0;
  std::vector<Account> accounts;  // touched accounts' new state, for readers
  // The write's outcome (the sync's is the syncer's), and the DB's state
  // right after it (readers see it once the group is synced).
  Status status;
  const rocksdb::Snapshot* snapshot = nullptr;

  // Stage stamps (StageHistogram): the group's first submission queued,
  // sequencing started, sealed, written.
  std::chrono::steady_clock::time_point first_queued, sequenced, sealed, written;
};

// The calls deferred by the group callbacks running on this thread
// (DeferUntilGroupCallbacksReturn; RunCallbacks runs them).
struct DeferredCalls {
  bool open = false;  // a group's callbacks are running on this thread
  size_t count = 0;
  std::array<std::pair<void (*)(void*), void*>, kDeferredCallsMax> calls{};
};
thread_local DeferredCalls t_deferred;

}  // namespace

class LedgerImpl final : public Ledger, private Store {
 public:
  explicit LedgerImpl(Options options) : options_(std::move(options)), engine_(this) {
    if (!options_.clock_ns) options_.clock_ns = SystemClockNs;
  }
  ~LedgerImpl() override { (void)Close(); }

  Status OpenDb();
  Status UpgradeLayout();
  Status LoadState();
  void Start();

  // --- Ledger API ---
  Result<std::vector<AccountOutcome>> CreateAccounts(std::span<const Account> a) override {
    if (a.size() > kBatchEventsMax) return Status::InvalidArgument("batch too large");
    std::vector<AccountOutcome> out;
    NARAE_RETURN_IF_ERROR(Execute([&](Txn& t) { out = t.CreateAccounts(a); }));
    return out;
  }
  Result<std::vector<TransferOutcome>> CreateTransfers(std::span<const Transfer> t) override {
    if (t.size() > kBatchEventsMax) return Status::InvalidArgument("batch too large");
    std::vector<TransferOutcome> out;
    NARAE_RETURN_IF_ERROR(Execute([&](Txn& x) { out = x.CreateTransfers(t); }));
    return out;
  }
  Result<std::vector<ChangeOutcome>> ChangeAccounts(std::span<const AccountChange> c) override {
    if (c.size() > kBatchEventsMax) return Status::InvalidArgument("batch too large");
    std::vector<ChangeOutcome> out;
    NARAE_RETURN_IF_ERROR(Execute([&](Txn& x) { out = x.ChangeAccounts(c); }));
    return out;
  }
  Status Submit(TxnFn fn, DoneFn done) override;
  Status Execute(TxnFn fn) override;

  std::optional<Account> LookupAccount(AccountId id) override;
  std::optional<Transfer> LookupTransfer(TransferId id) override {
    ConsistentRead read(SyncedSnapshot());
    return ReadTransfer(id, read.options);
  }
  std::optional<HoldInfo> LookupHold(TransferId id) override;
  Result<std::vector<AccountEntry>> GetAccountEntries(const AccountFilter& f) override;
  Result<std::vector<Transfer>> QueryTransfersByUserData(U128 ud, uint32_t limit) override;
  Status ScanAccounts(const std::function<bool(const Account&)>& fn) override;
  Status ScanTransfers(uint64_t from_ts, uint64_t to_ts,
                       const std::function<bool(const Transfer&)>& fn) override;
  std::optional<std::string> GetAux(std::string_view key) override;
  Status ScanAux(std::string_view prefix,
                 const std::function<bool(std::string_view, std::string_view)>& fn) override;
  Result<JournalEntry> JournalHead() override;
  Status CatchUp() override;
  Result<VerifyReport> Verify(const std::function<void(uint64_t)>& progress) override;
  Status Checkpoint(const std::string& dir) override;
  LedgerStats Stats() override;
  Status Tick() override;
  Status Close() override;

 private:
  class TxnImpl;
  // --- Store (sequencer thread) ---
  std::optional<Transfer> FindTransfer(TransferId id) override;
  IdState FindId(TransferId id) override;
  std::optional<HoldDone> FindHoldDone(TransferId id) override;

  std::optional<Transfer> ReadTransfer(TransferId id, const rocksdb::ReadOptions& ro);
  // The event at `ts` in the chunked log (one-off, or through a cursor a
  // query keeps for its rows).
  std::optional<codec::Event> ReadEvent(uint64_t ts, const rocksdb::ReadOptions& ro);
  static std::optional<codec::Event> FindEvent(codec::EventCursor* cur, uint64_t ts);
  // (The default options are built once: a ReadOptions is ~30 fields and a
  // std::function, constructed and destroyed per point read before.)
  std::optional<std::string> DbGet(Cf cf, const rocksdb::Slice& key,
                                   const rocksdb::ReadOptions& ro = kPointRead);
  static inline const rocksdb::ReadOptions kPointRead{};
  // Sequencer thread: an aux record not put by the current group: through
  // aux_filter_, aux_cache_, the sealed groups' rows, then the DB. `hash` is
  // AuxHash(key). A key found absent in the DB is cached (as absent) only
  // when `cache_absent`.
  std::optional<std::string> SealedAuxGet(std::string_view key, uint64_t hash, bool cache_absent);
  // Sequencer thread: a group's puts replace the cached values of their keys.
  void UpdateAuxCache(const AuxGroup& aux);
  // Sequencer thread: keeps a sealed group's rows readable (aux_groups_) and
  // recycles the oldest durable groups past the retention bounds.
  void RetainAuxGroup(std::unique_ptr<AuxGroup> g);
  std::unique_ptr<AuxGroup> NewAuxGroup();
  void ClearAuxGroups();

  void SequencerLoop();
  void SyncerLoop();
  void AckLoop();
  void Acknowledge(std::vector<DoneFn>* dones, const Status& st,
                   std::chrono::steady_clock::time_point first_queued);
  // How many queued submissions make Submit() wake the sequencer waiting
  // with a group open that holds `taken`: the rest of a full group, at most
  // kOpenGroupWakeSubmissions (the sequencer still runs what arrives during
  // a sync in a few batches, not all after it), at most half the queue's
  // bound (a small queue never fills while the sequencer sleeps), at least 1.
  size_t OpenGroupRoom(size_t taken) const {
    const size_t room = taken < kOpenGroupSubmissionsMax ? kOpenGroupSubmissionsMax - taken : 1;
    return std::max<size_t>(
        1, std::min({room, kOpenGroupWakeSubmissions, options_.queue_submissions_max / 2}));
  }
  void PinPipelineThread(const char* name) {
    Status st = PinThisThread(options_.pipeline_cpus);
    if (!st.ok()) {
      std::fprintf(stderr, "narae ledger: %s runs unpinned: %s\n", name, st.ToString().c_str());
    }
  }
  // True when the syncer has nothing to sync and is not syncing (asleep or
  // on its way to sleep; also before it first ran).
  bool SyncerIdle() {
    std::lock_guard<std::mutex> lock(sync_mu_);
    return !syncer_busy_ && unsynced_.empty();
  }
  // On the sequencer: writes a sealed group (no sync) and hands it to the
  // syncer, in sequence order.
  void WriteGroup(std::unique_ptr<PendingWrite> w);
  // Queues a written (or failed) group for the syncer, waiting for room.
  void HandToSyncer(std::unique_ptr<PendingWrite> w);
  std::unique_ptr<PendingWrite> NewPendingWrite();
  void RecycleWrite(std::unique_ptr<PendingWrite> w);
  // The DB's state as of the last synced group, for readers (never null
  // once started on a primary).
  std::shared_ptr<const rocksdb::Snapshot> SyncedSnapshot() {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    return synced_snapshot_;
  }
  void PublishSnapshot(const rocksdb::Snapshot* s);
  void RunGroup(std::deque<Submission>* subs);
  void FinishGroup(Group* group, std::vector<DoneFn> dones, std::unique_ptr<AuxGroup> aux,
                   uint64_t cpu0, std::chrono::steady_clock::time_point first_queued,
                   std::chrono::steady_clock::time_point sequenced);
  void FailPipeline();
  bool TryRecover();

  Options options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;
  std::string secondary_path_;
  Engine engine_;
  codec::Meta meta_;  // sequencer's view (includes not-yet-durable groups)

  // Submission queue.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Submission> queue_;
  bool stopping_ = false;
  // The sequencer sleeps in cv_ and no Submit() has woken it yet: only the
  // first submission after it fell asleep notifies (a notify per Submit cost
  // futex calls and contention on mu_ while it was already awake).
  bool sequencer_waiting_ = false;  // GUARDED_BY(mu_)

  // The sequencer waits in cv_ with a group open (RunGroup); the syncer,
  // going idle, then sets syncer_idle_notice_ and wakes it.
  bool sequencer_open_waiting_ = false;  // GUARDED_BY(mu_)
  bool syncer_idle_notice_ = false;      // GUARDED_BY(mu_)
  // While the sequencer waits with a group open: how many queued
  // submissions make Submit() wake it (OpenGroupRoom).
  size_t sequencer_open_room_ = 1;  // GUARDED_BY(mu_)

  // Written groups on their way to the syncer.
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;       // the syncer waits for a written group
  std::condition_variable sync_room_cv_;  // the sequencer waits for room / a drained syncer
  bool syncer_waiting_ = false;           // GUARDED_BY(sync_mu_): asleep, nothing to do
  bool syncer_busy_ = false;              // GUARDED_BY(sync_mu_): syncing or acknowledging
  bool sequencer_room_waiting_ = false;   // GUARDED_BY(sync_mu_)
  bool syncer_stop_ = false;              // GUARDED_BY(sync_mu_)
  std::deque<std::unique_ptr<PendingWrite>> unsynced_;      // GUARDED_BY(sync_mu_)
  std::vector<std::unique_ptr<PendingWrite>> free_writes_;  // GUARDED_BY(sync_mu_)
  Group group_buf_;                                         // sequencer only
  std::string chunk_buf_;                                   // sequencer only
  std::string record_buf_;                                  // sequencer only
  size_t last_batch_bytes_ = 0;                             // sequencer only
  uint64_t group_sequence_ = 0;
  // The last synced group's DB state (PublishSnapshot): readers' view.
  std::mutex snapshot_mu_;
  std::shared_ptr<const rocksdb::Snapshot> synced_snapshot_;  // GUARDED_BY(snapshot_mu_)

  // Durable (or failed) groups whose callbacks the acknowledging thread runs,
  // so the syncer starts the next sync at once.
  struct Ack {
    std::vector<DoneFn> dones;
    Status status;
    std::chrono::steady_clock::time_point first_queued, durable;  // stage stamps
  };
  // Small groups' callbacks run on the syncer when the acknowledging thread
  // is idle with nothing queued (kInlineAckCallbacksMax): commit order holds
  // because every earlier group's callbacks have then returned.
  std::mutex ack_mu_;
  std::condition_variable ack_cv_;       // the acknowledging thread waits for work
  std::condition_variable ack_room_cv_;  // the syncer waits for room in acks_
  std::deque<Ack> acks_;                 // GUARDED_BY(ack_mu_); at most kAcksQueuedMax
  bool ack_stop_ = false;                // GUARDED_BY(ack_mu_)
  bool acker_busy_ = false;              // GUARDED_BY(ack_mu_): running popped callbacks
  bool acker_waiting_ = false;           // GUARDED_BY(ack_mu_)
  bool syncer_room_waiting_ = false;     // GUARDED_BY(ack_mu_)

  // Overlay: the transfers, failed ids and resolved holds of the last sealed
  // group (its maps, taken whole from the engine: no copy per entry). The
  // sequencer writes each group right after sealing it, before it reads
  // anything, so correctness no longer needs it: it answers lookups of the
  // previous group's ids without a RocksDB read until the next seal
  // (TrimOverlay; what it holds never changes, so it answers as the DB
  // would). Sequencer thread only.
  struct OverlayGroup {
    uint64_t sequence = 0;
    Engine::GroupMaps maps;
  };
  std::deque<std::unique_ptr<OverlayGroup>> ov_groups_;
  std::vector<std::unique_ptr<OverlayGroup>> ov_groups_free_;
  // Seals the engine's maps of the group `sequence` into the overlay.
  void PushOverlay(uint64_t sequence);
  // Drops the durable groups' maps (all of them when `all`: a recovery).
  void TrimOverlay(bool all);
  // The aux overlay: sealed groups' rows, oldest first, readable until their
  // group is written and they pass the retention bounds (kAuxRetained*Max;
  // the newest group is always kept). Only the sequencer puts aux rows, so a
  // written group's rows are what the DB holds unless a later group (also
  // here, searched first) replaced them; a key in none of them was last
  // written by a written group. Sequencer thread only.
  std::deque<std::unique_ptr<AuxGroup>> aux_groups_;
  std::vector<std::unique_ptr<AuxGroup>> aux_groups_free_;
  size_t aux_retained_rows_ = 0;
  size_t aux_retained_bytes_ = 0;
  // The sequence of the last group written successfully (WriteGroup; the
  // sequencer's DB reads see it, synced or not).
  std::atomic<uint64_t> written_sequence_{0};

  std::atomic<bool> healthy_{true};
  std::atomic<bool> failed_pipeline_{false};
  // Bumped by TryRecover before it clears failed_pipeline_: a group sequenced
  // on the state before a failed write is refused by WriteGroup (it was
  // built on effects that never became durable).
  std::atomic<uint64_t> pipeline_epoch_{0};
  std::atomic<uint64_t> stat_groups_{0}, stat_events_{0}, stat_last_group_events_{0},
      stat_last_fsync_us_{0};
  std::atomic<uint64_t> stat_accounts_{0}, stat_open_holds_{0};
  std::atomic<uint64_t> stat_sequencer_busy_us_{0}, stat_writer_busy_us_{0};
  std::atomic<uint64_t> stat_groups_written_{0};
  // Where a group's time goes (microseconds; sizes in submissions).
  struct Stages {
    StageHistogram queued;       // first submission queued -> sequencing starts
    StageHistogram sequencing;   // sequencing starts -> sealed
    StageHistogram write;        // sealed -> written (db_->Write: WAL append + memtable inserts)
    StageHistogram sync_wait;    // written -> the sync that covers it starts
    StageHistogram sync;         // its WAL sync (fsync)
    StageHistogram ack_wait;     // durable -> its callbacks start
    StageHistogram callbacks;    // its callbacks run
    StageHistogram total;        // first submission queued -> its callbacks returned
    StageHistogram submissions;  // a group's submissions
    StageHistogram groups_per_sync;  // groups one sync covered
    std::atomic<uint64_t> acked_inline{0};
    // Why the sequencer wrote a group: the syncer idle (or a part of a long
    // queue for it), the group open group_open_max_us, or it was full
    // (kOpenGroupSubmissionsMax, the event or queue bounds, submissions
    // left over), or the queue empty after a wait (stopping).
    std::atomic<uint64_t> closed_idle{0}, closed_age{0}, closed_full{0}, closed_other{0};
  };
  Stages stages_;
  void RunCallbacks(std::vector<DoneFn>* dones, const Status& st,
                    std::chrono::steady_clock::time_point first_queued,
                    std::chrono::steady_clock::time_point durable);
  std::thread sequencer_;
  std::thread syncer_;
  std::thread acker_;
  std::thread::id sequencer_id_, syncer_id_, acker_id_;

  // Lazy account snapshots (sequencer thread).
  std::chrono::steady_clock::time_point last_snapshot_ = std::chrono::steady_clock::now();
  bool force_snapshot_ = false;
  uint64_t events_since_snapshot_ = 0;
  // A group's aux rows in key order (FinishGroup, sequencer): each row with its
  // key's first 16 bytes as two big-endian integers, zero-padded, so most
  // comparisons of the sort are integer ones.
  struct AuxSortKey {
    uint64_t p0, p1;
    const AuxRow* row;
  };
  std::vector<AuxSortKey> aux_order_;
  // Every key of transfer_ids, durable or in flight: FindId skips the read
  // of an id it has never seen (sequencer thread; built by LoadState).
  IdFilter id_filter_;
  // Likewise every aux key (by AuxFilterKey): SealedAuxGet skips the read of
  // a key never written (a new request's duplicate-detection key).
  IdFilter aux_filter_;
  Status LoadFilters();
  Status LoadFilter(Cf cf, IdFilter* filter);
  // Aux records the sequencer read from the DB, kept current by every later
  // put (the sequencer is the only writer of the aux family): the switch
  // reads the same few records on most requests (a card's or SIM's
  // credential state, the bank's configuration), which cost a skiplist
  // search per memtable or an SST block read each. Bounded; emptied when
  // full and when the state is reloaded after a failed write.
  // A key read with GetAuxHot and found absent is cached as nullopt (exact:
  // a put of it in any later group replaces that answer, UpdateAuxCache).
  std::unordered_map<AuxCacheKey, std::optional<std::string>, AuxKeyHash, AuxKeyEq> aux_cache_;
  size_t aux_cache_bytes_ = 0;
  // Durable account state served to readers: updated by the syncer after
  // each successful sync (or by replay on a read-only instance).
  std::shared_mutex committed_mu_;
  std::unordered_map<AccountId, Account, IdHash> committed_;
  uint64_t replayed_ts_ = 0;  // read-only: events replayed up to here
  Status ReplayTail(uint64_t after_ts);
  bool closed_ = false;
  std::mutex close_mu_;
};

// The Txn handed to Submit() callbacks.
class LedgerImpl::TxnImpl final : public Txn {
 public:
  // One TxnImpl per group (sequencer thread), putting into `aux`: an empty
  // recycled group whose index keeps its table, so its slots are allocated
  // once, not grown in every group (a switch group puts a few thousand rows).
  TxnImpl(LedgerImpl* l, AuxGroup* aux) : l_(l), aux_(aux) { NARAE_CHECK(aux_->rows().empty()); }
  std::vector<AccountOutcome> CreateAccounts(std::span<const Account> a) override {
    if (a.size() > kBatchEventsMax) return {};
    return l_->engine_.CreateAccounts(a);
  }
  std::vector<TransferOutcome> CreateTransfers(std::span<const Transfer> t) override {
    if (t.size() > kBatchEventsMax) return {};
    return l_->engine_.CreateTransfers(t);
  }
  std::vector<ChangeOutcome> ChangeAccounts(std::span<const AccountChange> c) override {
    if (c.size() > kBatchEventsMax) return {};
    return l_->engine_.ChangeAccounts(c);
  }
  std::optional<Account> PeekAccount(AccountId id) override { return l_->engine_.PeekAccount(id); }
  std::optional<HoldInfo> PeekHold(TransferId id) override { return l_->engine_.PeekHold(id); }
  std::optional<Transfer> PeekTransfer(TransferId id) override {
    return l_->engine_.PeekTransfer(id);
  }
  std::optional<std::string> GetAux(std::string_view key) override { return Get(key, false); }
  std::optional<std::string> GetAuxHot(std::string_view key) override { return Get(key, true); }
  // A key put twice in one group is one row: the later value replaces the
  // earlier in place (the batch is atomic, so no reader could ever see the
  // earlier value; writing it cost a memtable insert and WAL bytes).
  void PutAux(std::string_view key, std::string_view value) override {
    NARAE_CHECK(!key.empty() && key.size() <= kAuxKeyBytesMax);
    NARAE_CHECK(value.size() <= kAuxValueBytesMax);
    aux_->Put(key, AuxHash(key), value);
  }
  uint64_t now_ns() const override { return l_->engine_.group_base(); }

 private:
  std::optional<std::string> Get(std::string_view key, bool cache_absent) {
    const uint64_t hash = AuxHash(key);  // once for every table below
    if (const AuxRow* row = aux_->Find(key, hash)) return std::string(aux_->Value(*row));
    return l_->SealedAuxGet(key, hash, cache_absent);
  }

  LedgerImpl* l_;
  AuxGroup* aux_;
};

Result<std::unique_ptr<Ledger>> Ledger::Open(const Options& options) {
  if (options.path.empty()) return Status::InvalidArgument("ledger path is empty");
  if (options.group_events_max == 0 || options.queue_submissions_max == 0 ||
      options.account_snapshot_events_per_account == 0) {
    return Status::InvalidArgument("group, queue and snapshot limits must be positive");
  }
  if (options.group_open_max_us == 0 || options.group_open_max_us > kGroupOpenMaxUsLimit) {
    return Status::InvalidArgument("group_open_max_us must be 1..10000000");
  }
  if (Status st = CheckCpus(options.pipeline_cpus); !st.ok()) {
    return Status::InvalidArgument("pipeline_cpus: " + st.message());
  }
  if (options.background_write_mib_per_s > kBackgroundWriteMibPerSMax) {
    return Status::InvalidArgument("background_write_mib_per_s must be 0.." +
                                   std::to_string(kBackgroundWriteMibPerSMax));
  }
  auto impl = std::make_unique<LedgerImpl>(options);
  NARAE_RETURN_IF_ERROR(impl->OpenDb());
  NARAE_RETURN_IF_ERROR(impl->UpgradeLayout());
  NARAE_RETURN_IF_ERROR(impl->LoadState());
  impl->Start();
  return std::unique_ptr<Ledger>(std::move(impl));
}

Status LedgerImpl::OpenDb() {
  rocksdb::Options opts;
  if (options_.env != nullptr) opts.env = options_.env;
  opts.create_if_missing = !options_.read_only;
  opts.create_missing_column_families = !options_.read_only;
  opts.IncreaseParallelism(2);
  opts.max_background_jobs = 2;
  opts.write_buffer_size = 64 << 20;
  opts.max_write_buffer_number = 4;
  // Flushes and compactions run on RocksDB's thread pools. On a small
  // machine they would take a core from the payments for tens of
  // milliseconds at a time (a 64 MB memtable flush, its sort and its
  // compression) and every reply in flight would wait: at the lowest CPU
  // priority (nice 19) they use what the payments leave idle. The pools
  // belong to the environment, shared by every database in the process, and
  // RocksDB only ever lowers them. On a machine whose cores other processes
  // keep busy, a flush at nice 19 can fall behind until writes stall on
  // full memtables: turn it off there (docs/ledger.md).
  if (options_.background_low_priority && !options_.read_only) {
    for (rocksdb::Env::Priority pool :
         {rocksdb::Env::Priority::HIGH, rocksdb::Env::Priority::LOW}) {
      rocksdb::Status st = opts.env->LowerThreadPoolCPUPriority(pool, rocksdb::CpuPriority::kLow);
      st.PermitUncheckedError();  // NotSupported on an Env without pools: not an error
    }
  }
  if (options_.background_write_mib_per_s > 0 && !options_.read_only) {
    // Refilled every 10 ms: a flush writes in slices of rate/100 bytes, so
    // its CPU comes in bursts of milliseconds, not of the 100 ms default.
    constexpr int64_t kRefillPeriodUs = 10'000;
    opts.rate_limiter.reset(rocksdb::NewGenericRateLimiter(
        int64_t{options_.background_write_mib_per_s} << 20, kRefillPeriodUs));
    // RocksDB would take the limit as the rate it slows writes to when
    // flushes fall behind: keep its default (16 MiB/s) whatever the limit.
    // (It also sets bytes_per_sync to 1 MiB: the files are written back as
    // they grow.)
    opts.delayed_write_rate = 16 << 20;
  }
  opts.paranoid_checks = true;
  opts.max_open_files = options_.read_only ? -1 : 512;
  // A read-only follower logs errors only: replaying the primary's
  // write-ahead log into memtables it never flushes makes RocksDB warn that
  // it would stop writes, on the terminal of `narae reconcile` and the like.
  const rocksdb::InfoLogLevel log_level =
      options_.read_only ? rocksdb::InfoLogLevel::ERROR_LEVEL : rocksdb::InfoLogLevel::WARN_LEVEL;
  opts.info_log = std::make_shared<StderrLogger>(log_level);
  opts.info_log_level = log_level;
  opts.allow_concurrent_memtable_write = false;  // one writer thread; hash memtables need it

  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.block_cache = rocksdb::NewLRUCache(options_.block_cache_bytes);
  rocksdb::ColumnFamilyOptions cf_opts(opts);
  cf_opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf_opts.write_buffer_size = 64 << 20;
  // Families keyed by a 16-byte id use a hash-bucketed memtable on that id:
  // random ids insert in O(1)-ish instead of a deep skiplist search. The
  // prefix is the whole key, so a bucket holds a few keys at most: a linked
  // list per bucket, not a skiplist (building a skiplist head per key cost
  // the writer ~2,300 instructions per transfer). Scans over a whole family
  // (startup, verify) set total_order_seek.
  rocksdb::ColumnFamilyOptions by_id = cf_opts;
  by_id.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(16));
  by_id.memtable_factory.reset(rocksdb::NewHashLinkListRepFactory(1 << 18));
  by_id.memtable_whole_key_filtering = true;
  by_id.memtable_prefix_bloom_size_ratio = 0.05;

  // The history indexes are written on every transfer but only read by
  // queries: an append-only vector memtable (sorted when flushed or read)
  // makes their inserts nearly free. Small buffers bound the sort a query
  // may trigger on the live memtable.
  rocksdb::ColumnFamilyOptions index = cf_opts;
  index.memtable_factory.reset(new rocksdb::VectorRepFactory(1 << 16));
  index.write_buffer_size = 16 << 20;

  // The switch reads aux keys that mostly do not exist yet (a new request's
  // duplicate-detection key, an HTTP idempotency key): without a filter such
  // a miss searched the skiplist of the active and of every immutable
  // memtable before the SST files' blooms said no. A whole-key bloom per
  // memtable answers it in a few hashes. The skiplist stays: ScanAux needs
  // ordered prefix scans, which hash memtables serve only by copying and
  // sorting the whole memtable. Memtable-only: nothing on disk changes.
  rocksdb::ColumnFamilyOptions aux = cf_opts;
  aux.memtable_whole_key_filtering = true;
  aux.memtable_prefix_bloom_size_ratio = kAuxMemtableBloomRatio;

  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (size_t i = 0; i < kCfCount; ++i) {
    if (i == kAccountIndex || i == kUserData) {
      descs.emplace_back(kCfNames[i], index);
      continue;
    }
    if (i == kAux) {
      descs.emplace_back(kCfNames[i], aux);
      continue;
    }
    bool keyed_by_id = i == kAccounts || i == kTransferIds || i == kHoldsOpen || i == kHoldsDone;
    descs.emplace_back(kCfNames[i], keyed_by_id ? by_id : cf_opts);
  }
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s;
  if (options_.read_only) {
    char tmpl[] = "/tmp/narae-secondary-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return Status::IOError("mkdtemp for secondary failed");
    secondary_path_ = tmpl;
    opts.max_open_files = -1;
    s = rocksdb::DB::OpenAsSecondary(opts, options_.path, secondary_path_, descs, &cfs_, &raw);
  } else {
    std::error_code ec;
    std::filesystem::create_directories(options_.path, ec);
    if (ec) return Status::IOError("cannot create " + options_.path + ": " + ec.message());
    s = rocksdb::DB::Open(opts, options_.path, descs, &cfs_, &raw);
  }
  if (!s.ok()) return FromRocks(s, "open ledger");
  db_.reset(raw);
  return Status::Ok();
}

// Folders written before the event log was chunked hold one event per key.
// Each becomes a chunk of one event under the same key (its frame is what the
// journal's digest always hashed, so the chain stays valid), in batches; a
// crash part-way leaves both kinds and the next open converts the rest. The
// layout mark is written last (and at once in a new folder).
Status LedgerImpl::UpgradeLayout() {
  if (auto mark = DbGet(kDefault, kLayoutKey)) {
    if (*mark != kLayoutChunked) return Status::Corruption("unknown layout " + *mark);
    return Status::Ok();
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cfs_[kEvents]));
  it->SeekToFirst();
  if (options_.read_only) {
    if (!it->Valid()) return FromRocks(it->status(), "events");
    return Status::FailedPrecondition(
        "the data folder has the older event layout: open it once read-write (narae-switch or "
        "any write command) to convert it");
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  rocksdb::WriteBatch b;
  std::string frame;
  for (; it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    const std::string_view value(it->value().data(), it->value().size());
    if (codec::IsChunk(key, value)) continue;  // converted before a crash
    if (key.size() != 8 || value.empty() || value.size() > UINT32_MAX) {
      return Status::Corruption("event record during the layout upgrade");
    }
    frame.clear();
    codec::PutFrameHeader(&frame, codec::GetU64(key.data()), static_cast<uint32_t>(value.size()));
    frame.append(value);
    NARAE_CHECK(b.Put(cfs_[kEvents], it->key(), frame).ok());
    if (b.Count() >= kUpgradeBatchEventsMax) {
      NARAE_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &b), "layout upgrade"));
      b.Clear();
    }
  }
  NARAE_RETURN_IF_ERROR(FromRocks(it->status(), "layout upgrade"));
  NARAE_CHECK(b.Put(cfs_[kDefault], kLayoutKey, kLayoutChunked).ok());
  return FromRocks(db_->Write(wo, &b), "layout upgrade");
}

Status LedgerImpl::LoadState() {
  engine_.Clear();
  meta_ = {};
  if (auto m = DbGet(kDefault, kMetaKey)) {
    if (!codec::DecodeMeta(*m, &meta_)) return Status::Corruption("meta record");
  }
  engine_.set_last_timestamp(meta_.last_timestamp);
  rocksdb::ReadOptions total;
  total.total_order_seek = true;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(total, cfs_[kAccounts]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Account a;
    if (!codec::DecodeAccount(std::string_view(it->value().data(), it->value().size()), &a)) {
      return Status::Corruption("account record " + it->key().ToString(true));
    }
    engine_.LoadAccount(a);
  }
  NARAE_RETURN_IF_ERROR(FromRocks(it->status(), "scan accounts"));
  replayed_ts_ = meta_.accounts_snapshot_ts;
  NARAE_RETURN_IF_ERROR(ReplayTail(meta_.accounts_snapshot_ts));
  {
    std::unique_lock<std::shared_mutex> lock(committed_mu_);
    committed_ = engine_.CopyAccounts();
  }
  it.reset(db_->NewIterator(total, cfs_[kHoldsOpen]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().size() != 16 || it->value().size() != 8) {
      return Status::Corruption("open hold record");
    }
    TransferId id{codec::GetU128(it->key().data())};
    std::optional<Transfer> t = ReadTransfer(id, {});
    if (!t) return Status::Corruption("open hold without its transfer: " + id.ToHex());
    engine_.LoadOpenHold({*t, codec::GetU64(it->value().data())});
  }
  NARAE_RETURN_IF_ERROR(FromRocks(it->status(), "scan holds"));
  NARAE_RETURN_IF_ERROR(LoadFilters());
  stat_accounts_ = engine_.account_count();
  stat_open_holds_ = engine_.open_hold_count();
  return Status::Ok();
}

// The filters cover every key of transfer_ids (ids of stored transfers and
// failed ids) and of aux. A family too large to scan at open in a few
// seconds leaves its filter off (the reads go to RocksDB as before).
Status LedgerImpl::LoadFilters() {
  id_filter_.Disable();
  aux_filter_.Disable();
  if (options_.read_only) return Status::Ok();  // FindId and Txn reads: sequencer only
  NARAE_RETURN_IF_ERROR(LoadFilter(kTransferIds, &id_filter_));
  return LoadFilter(kAux, &aux_filter_);
}

Status LedgerImpl::LoadFilter(Cf cf, IdFilter* filter) {
  uint64_t estimate = 0;
  if (!db_->GetIntProperty(cfs_[cf], "rocksdb.estimate-num-keys", &estimate)) return Status::Ok();
  if (estimate > (cf == kAux ? kAuxFilterScanKeysMax : kFilterScanKeysMax)) return Status::Ok();
  filter->Reset(2 * estimate);
  rocksdb::ReadOptions total;
  total.total_order_seek = true;
  total.fill_cache = false;  // one pass: keep the block cache for the reads after
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(total, cfs_[cf]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string_view key(it->key().data(), it->key().size());
    if (cf == kTransferIds && key.size() != 16) {
      filter->Disable();  // corrupt: the reads (and verify) meet it as before
      return Status::Ok();
    }
    filter->Add(cf == kTransferIds ? codec::GetU128(key.data()) : AuxFilterKey(key, AuxHash(key)));
  }
  // A block that cannot be read leaves the filter off: the reads of that
  // family then go to RocksDB, and the one that meets the bad block stops
  // the process (DbGet), as without the filter.
  if (!it->status().ok()) filter->Disable();
  return Status::Ok();
}

// Brings the accounts up to date with the events after `after_ts` (the
// snapshot written last), in order.
Status LedgerImpl::ReplayTail(uint64_t after_ts) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cfs_[kEvents]));
  codec::EventCursor cur(it.get());
  for (cur.Seek(after_ts + 1); cur.Valid(); cur.Next()) {
    codec::Event e;
    if (!codec::DecodeEvent(cur.record(), &e) || e.timestamp() != cur.timestamp()) {
      return Status::Corruption("event record during replay");
    }
    if (!engine_.ReplayEvent(e)) {
      return Status::Corruption("event at " + std::to_string(e.timestamp()) +
                                " does not apply to the stored accounts");
    }
    replayed_ts_ = cur.timestamp();
  }
  if (!cur.problem().empty()) return Status::Corruption(cur.problem());
  return FromRocks(it->status(), "replay events");
}

void LedgerImpl::Start() {
  if (options_.read_only) return;
  // Readers start from the state opened (what the DB holds on open is
  // durable: RocksDB's recovery flushed the WAL it replayed), published
  // before the sequencer can write anything (an expiry group at once,
  // after downtime).
  PublishSnapshot(db_->GetSnapshot());
  // Pinned to Options::pipeline_cpus (checked at Open; should the mask
  // have changed since, a thread runs unpinned rather than not at all, and
  // says so on stderr).
  sequencer_ = std::thread([this] {
    PinPipelineThread("narae-sequencer");
    pthread_setname_np(pthread_self(), "narae-sequencer");
    SequencerLoop();
  });
  syncer_ = std::thread([this] {
    PinPipelineThread("narae-syncer");
    pthread_setname_np(pthread_self(), "narae-syncer");
    SyncerLoop();
  });
  acker_ = std::thread([this] {
    PinPipelineThread("narae-acker");
    pthread_setname_np(pthread_self(), "narae-acker");
    AckLoop();
  });
  sequencer_id_ = sequencer_.get_id();
  syncer_id_ = syncer_.get_id();
  acker_id_ = acker_.get_id();
}

std::optional<std::string> LedgerImpl::DbGet(Cf cf, const rocksdb::Slice& key,
                                             const rocksdb::ReadOptions& ro) {
  std::string value;
  rocksdb::Status s = db_->Get(ro, cfs_[cf], key, &value);
  if (s.ok()) return value;
  if (s.IsNotFound()) return std::nullopt;
  // Any other answer (an I/O error, a corrupt block) is not "absent": taking
  // it as absent would make a retransmitted request look new and pay it
  // twice, or a spent hold look open. Fail-stop instead: everything
  // acknowledged is durable, and a restart re-reads it (docs/ledger.md).
  std::fprintf(stderr, "narae ledger: read of %s failed: %s\n", kCfNames[cf], s.ToString().c_str());
  std::fflush(stderr);
  std::abort();
}

std::optional<std::string> LedgerImpl::SealedAuxGet(std::string_view key, uint64_t hash,
                                                    bool cache_absent) {
  // A key never written (every aux write passes FinishGroup, which adds it
  // to the filter before its group is sealed) is absent: no table is
  // searched (a new request's duplicate-detection key, most of the misses).
  if (!aux_filter_.MayContain(AuxFilterKey(key, hash))) return std::nullopt;
  // The cache before the sealed groups: its answers are current (every
  // sealed group's puts replaced them, UpdateAuxCache), and the hot keys
  // are there.
  const AuxKeyView view{key, hash};
  if (auto it = aux_cache_.find(view); it != aux_cache_.end()) return it->second;
  for (auto g = aux_groups_.rbegin(); g != aux_groups_.rend(); ++g) {  // newest first
    if (const AuxRow* row = (*g)->Find(key, hash)) return std::string((*g)->Value(*row));
  }
  // Not in any kept group: its last put (if any) is durable.
  std::optional<std::string> v = DbGet(kAux, rocksdb::Slice(key.data(), key.size()));
  // Absent keys are cached only for GetAuxHot (and matter only while the
  // filter is off or for its false positives): most misses are new keys,
  // written next and never read again.
  if (!v && !cache_absent) return v;
  const size_t bytes = key.size() + (v ? v->size() : 0);
  if (aux_cache_.size() >= kAuxCacheEntriesMax || aux_cache_bytes_ + bytes > kAuxCacheBytesMax) {
    aux_cache_.clear();  // bounded; the hot records come back on their next read
    aux_cache_bytes_ = 0;
  }
  aux_cache_bytes_ += bytes;
  aux_cache_.emplace(AuxCacheKey{std::string(key), hash}, v);
  return v;
}

void LedgerImpl::UpdateAuxCache(const AuxGroup& aux) {
  if (aux_cache_.empty()) return;
  for (const AuxRow& row : aux.rows()) {
    auto it = aux_cache_.find(AuxKeyView{aux.Key(row), row.hash});
    if (it == aux_cache_.end()) continue;
    aux_cache_bytes_ = aux_cache_bytes_ - (it->second ? it->second->size() : 0) + row.value_size;
    it->second = std::string(aux.Value(row));
  }
  if (aux_cache_bytes_ > kAuxCacheBytesMax) {
    aux_cache_.clear();
    aux_cache_bytes_ = 0;
  }
}

std::unique_ptr<AuxGroup> LedgerImpl::NewAuxGroup() {
  std::unique_ptr<AuxGroup> g = TakeOrMake(&aux_groups_free_);
  // As much room as the last group took, and an eighth more.
  if (!aux_groups_.empty()) {
    const AuxGroup& last = *aux_groups_.back();
    g->Reserve(last.bytes() + last.bytes() / 8, last.rows().size() + last.rows().size() / 8);
  }
  return g;
}

void LedgerImpl::RetainAuxGroup(std::unique_ptr<AuxGroup> g) {
  NARAE_CHECK(g->sequence != 0);
  auto recycle = [&](std::unique_ptr<AuxGroup> old) {
    old->Clear();
    // At most the retained groups and one being built are ever in use.
    if (aux_groups_free_.size() < kAuxRetainedGroupsMax + 1) {
      aux_groups_free_.push_back(std::move(old));
    }
  };
  if (g->rows().empty()) {
    recycle(std::move(g));
    return;
  }
  aux_retained_rows_ += g->rows().size();
  aux_retained_bytes_ += g->bytes();
  aux_groups_.push_back(std::move(g));
  const uint64_t written = written_sequence_.load(std::memory_order_acquire);
  // After a failed write no group in flight will be written: every group
  // sequenced until the recovery fails (WriteGroup), whatever it read, so
  // the bounds hold then too (the recovery drops them all).
  const bool failed = failed_pipeline_.load();
  // Oldest first, and only written ones (an unwritten group's rows are not
  // in the DB yet); the newest group always stays. Bounded: at most the
  // groups kept.
  while (aux_groups_.size() > 1 && (failed || aux_groups_.front()->sequence <= written) &&
         (aux_groups_.size() > kAuxRetainedGroupsMax || aux_retained_rows_ > kAuxRetainedRowsMax ||
          aux_retained_bytes_ > kAuxRetainedBytesMax)) {
    std::unique_ptr<AuxGroup> old = std::move(aux_groups_.front());
    aux_groups_.pop_front();
    NARAE_CHECK(aux_retained_rows_ >= old->rows().size() && aux_retained_bytes_ >= old->bytes());
    aux_retained_rows_ -= old->rows().size();
    aux_retained_bytes_ -= old->bytes();
    recycle(std::move(old));
  }
}

void LedgerImpl::PushOverlay(uint64_t sequence) {
  TrimOverlay(/*all=*/false);
  std::unique_ptr<OverlayGroup> g = TakeOrMake(&ov_groups_free_);
  g->sequence = sequence;
  engine_.SwapGroupMaps(&g->maps);  // the engine gets the recycled maps, emptied
  if (g->maps.empty()) {
    ov_groups_free_.push_back(std::move(g));
    return;
  }
  ov_groups_.push_back(std::move(g));
}

void LedgerImpl::TrimOverlay(bool all) {
  const uint64_t written = written_sequence_.load(std::memory_order_acquire);
  // After a failed write every group sequenced until the recovery fails
  // (WriteGroup), whatever it read: the overlay may go.
  all = all || failed_pipeline_.load();
  // Bounded: once the written groups are gone, at most the one just sealed
  // (the sequencer writes each group before it sequences the next).
  while (!ov_groups_.empty() && (all || ov_groups_.front()->sequence <= written)) {
    std::unique_ptr<OverlayGroup> g = std::move(ov_groups_.front());
    ov_groups_.pop_front();
    g->maps.Clear();
    if (ov_groups_free_.size() < 2) ov_groups_free_.push_back(std::move(g));
  }
}

void LedgerImpl::ClearAuxGroups() {
  while (!aux_groups_.empty()) {
    std::unique_ptr<AuxGroup> old = std::move(aux_groups_.front());
    aux_groups_.pop_front();
    old->Clear();
    if (aux_groups_free_.size() < kAuxRetainedGroupsMax + 1) {
      aux_groups_free_.push_back(std::move(old));
    }
  }
  aux_retained_rows_ = 0;
  aux_retained_bytes_ = 0;
}

std::optional<codec::Event> LedgerImpl::ReadEvent(uint64_t ts, const rocksdb::ReadOptions& ro) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[kEvents]));
  codec::EventCursor cur(it.get());
  return FindEvent(&cur, ts);
}

std::optional<codec::Event> LedgerImpl::FindEvent(codec::EventCursor* cur, uint64_t ts) {
  cur->Seek(ts);
  codec::Event e;
  if (!cur->Valid() || cur->timestamp() != ts || !codec::DecodeEvent(cur->record(), &e) ||
      e.timestamp() != ts) {
    return std::nullopt;
  }
  return e;
}

std::optional<Transfer> LedgerImpl::ReadTransfer(TransferId id, const rocksdb::ReadOptions& ro) {
  auto ts = DbGet(kTransferIds, codec::Key128(id.value), ro);
  if (!ts || ts->size() != 8) return std::nullopt;
  std::optional<codec::Event> e = ReadEvent(codec::GetU64(ts->data()), ro);
  if (!e || e->kind != codec::EventKind::kTransfer) return std::nullopt;
  return e->transfer;
}

std::optional<Transfer> LedgerImpl::FindTransfer(TransferId id) {
  for (const auto& g : ov_groups_) {
    if (auto it = g->maps.transfers.find(id); it != g->maps.transfers.end()) return it->second;
  }
  return ReadTransfer(id, {});
}

Store::IdState LedgerImpl::FindId(TransferId id) {
  IdState state;
  // Never added to the filter: no transfer_ids row, durable or in flight
  // (FinishGroup adds an id before its group enters the overlay).
  if (!id_filter_.MayContain(id.value)) return state;
  for (const auto& g : ov_groups_) {  // an id is in one group at most
    if (auto it = g->maps.transfers.find(id); it != g->maps.transfers.end()) {
      state.transfer = it->second;
      return state;
    }
    if (auto it = g->maps.failed.find(id); it != g->maps.failed.end()) {
      state.failed_code = it->second;
      return state;
    }
  }
  auto v = DbGet(kTransferIds, Key128(id.value).slice());
  if (!v) return state;
  if (v->size() == kFailedValueBytes && (*v)[0] == kFailedMarker) {
    state.failed_code = static_cast<uint32_t>(codec::GetU64(v->data() + 1));
    return state;
  }
  NARAE_CHECK(v->size() == 8);
  std::optional<codec::Event> e = ReadEvent(codec::GetU64(v->data()), {});
  NARAE_CHECK(e && e->kind == codec::EventKind::kTransfer);
  state.transfer = e->transfer;
  return state;
}

std::optional<HoldDone> LedgerImpl::FindHoldDone(TransferId id) {
  for (const auto& g : ov_groups_) {  // a hold is resolved once
    if (auto it = g->maps.holds_done.find(id); it != g->maps.holds_done.end()) return it->second;
  }
  auto v = DbGet(kHoldsDone, codec::Key128(id.value));
  if (!v) return std::nullopt;
  return DecodeHoldDone(*v);
}

// `done` runs on the syncer or the acknowledging thread (Acknowledge), in
// commit order.
Status LedgerImpl::Submit(TxnFn fn, DoneFn done) {
  if (options_.read_only) return Status::FailedPrecondition("ledger opened read-only");
  NARAE_CHECK(fn != nullptr);
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status::Unavailable("ledger is closing");
    if (!healthy_.load()) {
      return Status::Unavailable("ledger storage unavailable (write failed; recovering)");
    }
    if (queue_.size() >= options_.queue_submissions_max) {
      return Status::Unavailable("ledger queue full");
    }
    queue_.push_back({std::move(fn), std::move(done), std::chrono::steady_clock::now()});
    wake = sequencer_waiting_ || (sequencer_open_waiting_ && queue_.size() >= sequencer_open_room_);
    if (wake) sequencer_waiting_ = sequencer_open_waiting_ = false;
  }
  if (wake) cv_.notify_one();
  return Status::Ok();
}

Status LedgerImpl::Execute(TxnFn fn) {
  NARAE_CHECK(std::this_thread::get_id() != sequencer_id_);
  NARAE_CHECK(std::this_thread::get_id() != syncer_id_);
  NARAE_CHECK(std::this_thread::get_id() != acker_id_);
  std::promise<Status> promise;
  std::future<Status> future = promise.get_future();
  Status s = Submit(std::move(fn), [&promise](Status st) { promise.set_value(std::move(st)); });
  if (!s.ok()) return s;
  return future.get();
}

Status LedgerImpl::Tick() {
  if (options_.read_only) return Status::FailedPrecondition("ledger opened read-only");
  return Execute([](Txn&) {});
}

void LedgerImpl::SequencerLoop() {
  for (;;) {
    std::deque<Submission> subs;
    {
      std::unique_lock<std::mutex> lock(mu_);
      for (;;) {
        if (!queue_.empty() || stopping_ || !healthy_.load()) break;
        uint64_t next = engine_.NextExpiry();
        if (next != 0 && healthy_.load() && next <= options_.clock_ns()) break;
        // Sleep until the next expiry (at most 100 ms, the clock may be fake).
        sequencer_waiting_ = true;
        cv_.wait_for(lock, std::chrono::milliseconds(100));
        sequencer_waiting_ = false;
      }
      if (queue_.empty() && stopping_) {
        lock.unlock();
        if (healthy_.load() && engine_.dirty_count() > 0) {
          force_snapshot_ = true;  // a fast restart: no tail to replay
          RunGroup(&subs);
        }
        break;
      }
      subs.swap(queue_);
    }
    if (!healthy_.load()) {
      // Refused through the syncer, after the groups before them and never
      // at the same time as their callbacks (commit order, one at a time).
      if (!subs.empty()) {
        std::unique_ptr<PendingWrite> w = NewPendingWrite();
        w->status = Status::Unavailable("ledger storage unavailable");
        w->first_queued = w->sequenced = w->sealed = w->written = std::chrono::steady_clock::now();
        for (auto& s : subs) w->dones.push_back(std::move(s.done));
        HandToSyncer(std::move(w));
      }
      if (!TryRecover()) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
      }
      continue;
    }
    while (!subs.empty() || engine_.NextExpiry() != 0) {
      RunGroup(&subs);
      if (subs.empty()) break;
    }
  }
  {
    std::lock_guard<std::mutex> lock(sync_mu_);
    syncer_stop_ = true;
  }
  sync_cv_.notify_all();
}

void LedgerImpl::RunGroup(std::deque<Submission>* subs) {
  const uint64_t cpu0 = ThreadCpuUs();
  const auto sequenced = std::chrono::steady_clock::now();
  const auto first_queued = subs->empty() ? sequenced : subs->front().queued;
  Group& group = group_buf_;  // reused: its vectors keep their capacity
  group.first_timestamp = group.last_timestamp = 0;
  group.events.clear();
  group.touched_accounts.clear();
  group.failed.clear();
  group.holds_opened.clear();
  group.holds_done.clear();
  group.index_rows.clear();
  group.aux.clear();
  engine_.BeginGroup(&group, options_.clock_ns());
  engine_.ExpireDue(kExpiriesPerGroupMax);
  std::unique_ptr<AuxGroup> aux = NewAuxGroup();
  std::vector<DoneFn> dones;
  TxnImpl txn(this, aux.get());
  const auto close_at = sequenced + std::chrono::microseconds(options_.group_open_max_us);
  for (size_t pulls = 0;; ++pulls) {
    bool seal_now = false;
    while (!subs->empty() && group.events.size() < options_.group_events_max) {
      Submission s = std::move(subs->front());
      subs->pop_front();
      s.fn(txn);
      dones.push_back(std::move(s.done));
      // The syncer asleep with nothing to sync while this group keeps
      // growing would leave it (and, behind it, the replies, the I/O
      // threads and the clients) idle for the whole group: write a part
      // now, so the stages overlap.
      if (dones.size() % kSealCheckSubmissions == 0 && !subs->empty() && SyncerIdle()) {
        seal_now = true;
        break;
      }
    }
    if (seal_now) {
      stages_.closed_idle.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    // While the syncer syncs earlier groups, keep this group open and let
    // it take what arrives (Options::group_open_max_us): one write and one snapshot for
    // all of it, and it would wait for that sync anyway. Write it once the
    // syncer is idle, the group is old or large enough, or the queue holds
    // more than a group takes. At most a queue's worth of submissions (a
    // stalled syncer must still let the queue fill, so that Submit()
    // answers Unavailable).
    if (!subs->empty() || group.events.size() >= options_.group_events_max ||
        dones.size() >= options_.queue_submissions_max || pulls >= kGrowPullsMax ||
        dones.size() >= kOpenGroupSubmissionsMax) {
      stages_.closed_full.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    if (std::chrono::steady_clock::now() >= close_at) {
      stages_.closed_age.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    if (SyncerIdle()) {
      stages_.closed_idle.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (queue_.empty() && !stopping_) {
      // Woken once the queue holds OpenGroupRoom() submissions (Submit; a
      // few wake-ups a group, not one per submission, which on two cores
      // took the I/O thread's core from it for every request), by the
      // syncer going idle (it looks at sequencer_open_waiting_ after it
      // cleared syncer_busy_, and SyncerIdle() is read again here after
      // this thread set it: one of the two sees the other), or at close_at.
      sequencer_open_room_ = OpenGroupRoom(dones.size());
      sequencer_open_waiting_ = true;
      syncer_idle_notice_ = false;
      if (!SyncerIdle()) {
        cv_.wait_until(lock, close_at, [&] {
          return queue_.size() >= sequencer_open_room_ || stopping_ || syncer_idle_notice_;
        });
      }
      sequencer_waiting_ = false;
      sequencer_open_waiting_ = false;
      syncer_idle_notice_ = false;
    }
    if (queue_.empty() || stopping_) {
      stages_.closed_other.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    subs->swap(queue_);
  }
  stages_.queued.RecordSince(first_queued, sequenced);
  stages_.submissions.Record(dones.size());
  FinishGroup(&group, std::move(dones), std::move(aux), cpu0, first_queued, sequenced);
}

void LedgerImpl::FinishGroup(Group* group, std::vector<DoneFn> dones, std::unique_ptr<AuxGroup> aux,
                             uint64_t cpu0, std::chrono::steady_clock::time_point first_queued,
                             std::chrono::steady_clock::time_point sequenced) {
  std::unique_ptr<PendingWrite> w = NewPendingWrite();
  w->sequence = ++group_sequence_;
  w->epoch = pipeline_epoch_.load();
  w->dones = std::move(dones);
  w->events = group->events.size();
  w->first_queued = first_queued;
  w->sequenced = sequenced;
  // Room for the whole batch at once: a batch string that grows is copied
  // (with the last batch's size as the only guess, most groups of the switch
  // grew it once, ~500 instructions a request). An event's rows take at
  // most kBatchBytesPerEventMax; aux rows their sizes.
  size_t bytes_hint = last_batch_bytes_ + last_batch_bytes_ / 8;
  size_t group_bytes = group->events.size() * kBatchBytesPerEventMax;
  group_bytes += aux->bytes() + aux->rows().size() * kBatchRowOverheadBytes;
  BatchBuilder b;
  b.Reset(std::max(bytes_hint, group_bytes));
  auto cf = [&](Cf c) { return cfs_[c]->GetID(); };

  // Events in timestamp order, with their digest for the journal.
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  NARAE_CHECK(md != nullptr && EVP_DigestInit_ex(md, EVP_sha256(), nullptr) == 1);
  // One key per chunk of up to kChunkEventsMax events: the frames are the
  // digest's input, so the chunk is hashed as it is stored.
  std::string value;
  std::string& record = record_buf_;
  std::string& chunk = chunk_buf_;
  chunk.clear();
  uint64_t chunk_ts = 0;
  size_t chunk_events = 0;
  auto put_chunk = [&] {
    NARAE_CHECK(EVP_DigestUpdate(md, chunk.data(), chunk.size()) == 1);
    b.Put(cf(kEvents), KeyTs(chunk_ts).slice(), chunk);
    chunk.clear();
    chunk_events = 0;
  };
  for (const codec::Event& ev : group->events) {
    if (chunk_events == 0) chunk_ts = ev.timestamp();
    record.clear();
    codec::EncodeEvent(ev, &record);
    NARAE_CHECK(record.size() <= UINT32_MAX);
    codec::PutFrameHeader(&chunk, ev.timestamp(), static_cast<uint32_t>(record.size()));
    chunk.append(record);
    if (++chunk_events == codec::kChunkEventsMax) put_chunk();
    if (ev.kind == codec::EventKind::kTransfer) {
      const Transfer& t = ev.transfer;
      b.Put(cf(kTransferIds), Key128(t.id.value).slice(), KeyTs(ev.timestamp()).slice());
      id_filter_.Add(t.id.value);
      if (!t.user_data_128.IsZero()) {
        b.Put(cf(kUserData), Key128Ts(t.user_data_128, t.timestamp).slice(), rocksdb::Slice());
      }
    }
  }
  if (chunk_events > 0) put_chunk();
  std::array<uint8_t, 32> digest{};
  unsigned int len = 0;
  NARAE_CHECK(EVP_DigestFinal_ex(md, digest.data(), &len) == 1 && len == 32);
  EVP_MD_CTX_free(md);

  // Index rows go in the order they were made: their vector memtable sorts
  // once when it is flushed (sorting here cost ~1,700 instructions per
  // transfer on the sequencer for nothing).
  for (const Group::IndexRow& r : group->index_rows) {
    value.clear();
    if (r.history) {
      codec::PutU64(&value, r.dp);
      codec::PutU64(&value, r.dpo);
      codec::PutU64(&value, r.cp);
      codec::PutU64(&value, r.cpo);
    }
    b.Put(cf(kAccountIndex), Key128Ts(r.account.value, r.timestamp).slice(), value);
  }
  w->accounts.reserve(group->touched_accounts.size());
  for (const Account* a : group->touched_accounts) w->accounts.push_back(*a);
  const auto now = std::chrono::steady_clock::now();
  events_since_snapshot_ += group->events.size();
  // A snapshot writes every dirty account; it saves a restart replaying the
  // events since the last one. Write it once those events outnumber the
  // accounts it writes by the configured ratio (a busy ledger with few,
  // hot accounts snapshots every interval; one that touches most of its
  // accounts in an interval waits a few intervals), and at the latest
  // after ten intervals.
  const auto interval = std::chrono::milliseconds(options_.account_snapshot_interval_ms);
  const size_t dirty = engine_.dirty_count();
  const bool worth_it =
      events_since_snapshot_ / options_.account_snapshot_events_per_account >= dirty;
  if (dirty > 0 &&
      (force_snapshot_ || dirty >= options_.account_snapshot_dirty_max ||
       (now - last_snapshot_ >= interval && worth_it) || now - last_snapshot_ >= 10 * interval)) {
    for (const Account* a : engine_.TakeDirty()) {
      value.clear();
      codec::EncodeAccount(*a, &value);
      b.Put(cf(kAccounts), Key128(a->id.value).slice(), value);
    }
    meta_.accounts_snapshot_ts = engine_.last_timestamp();
    last_snapshot_ = now;
    events_since_snapshot_ = 0;
  }
  for (const auto& [id, hold] : group->holds_opened) {
    value.clear();
    codec::PutU64(&value, hold.expires_at);
    b.Put(cf(kHoldsOpen), Key128(id.value).slice(), value);
  }
  for (const auto& [id, done] : group->holds_done) {
    b.Delete(cf(kHoldsOpen), Key128(id.value).slice());
    b.Put(cf(kHoldsDone), Key128(id.value).slice(), EncodeHoldDone(done));
  }
  for (const auto& [id, code] : group->failed) {
    value.assign(1, kFailedMarker);
    codec::PutU64(&value, code);
    b.Put(cf(kTransferIds), Key128(id.value).slice(), value);
    id_filter_.Add(id.value);
  }
  // Aux rows (one per key: Txn::PutAux replaces in place) go into the batch in key
  // order: the memtable inserts are then cheap appends near the last
  // position (a switch group's rows arrive interleaved by request).
  // (Sorted through pointers: indexing the deque costs a division a step. The
  // keys' first 16 bytes decide most comparisons as integers: zero padding
  // sorts a shorter key first, as the bytewise order does, and equal
  // prefixes fall back to the whole keys.)
  aux_order_.clear();
  for (const AuxRow& row : aux->rows()) {
    const std::string_view key = aux->Key(row);
    aux_order_.push_back({BigEndianPrefix(key, 0), BigEndianPrefix(key, 8), &row});
  }
  const AuxGroup& g = *aux;
  std::sort(aux_order_.begin(), aux_order_.end(), [&g](const AuxSortKey& x, const AuxSortKey& y) {
    if (x.p0 != y.p0) return x.p0 < y.p0;
    if (x.p1 != y.p1) return x.p1 < y.p1;
    // Equal first 16 bytes (when both keys have them): compare the rest
    // only (the switch's request keys tie there within a terminal).
    const std::string_view a = g.Key(*x.row);
    const std::string_view b = g.Key(*y.row);
    if (a.size() >= 16 && b.size() >= 16) return a.substr(16) < b.substr(16);
    return a < b;
  });
  for (const AuxSortKey& k : aux_order_) {
    const std::string_view key = aux->Key(*k.row);
    const std::string_view value = aux->Value(*k.row);
    b.Put(cf(kAux), rocksdb::Slice(key.data(), key.size()),
          rocksdb::Slice(value.data(), value.size()));
    aux_filter_.Add(AuxFilterKey(key, k.row->hash));
  }

  if (!group->events.empty()) {
    JournalEntry j;
    j.sequence = meta_.journal_sequence + 1;
    j.first_timestamp = group->first_timestamp;
    j.last_timestamp = group->last_timestamp;
    j.event_count = group->events.size();
    j.events_digest = digest;
    j.previous_hash = meta_.journal_hash;
    j.hash = JournalHash(j);
    b.Put(cf(kJournal), codec::KeyTs(j.sequence), codec::EncodeJournal(j));
    meta_.journal_sequence = j.sequence;
    meta_.journal_hash = j.hash;
  }
  meta_.last_timestamp = engine_.last_timestamp();
  if (b.count() > 0) b.Put(cf(kDefault), kMetaKey, codec::EncodeMeta(meta_));
  last_batch_bytes_ = b.bytes();
  w->batch = b.Take();

  PushOverlay(w->sequence);
  // The group's aux rows stay readable (no copy: the group itself is kept).
  UpdateAuxCache(*aux);
  aux->sequence = w->sequence;
  RetainAuxGroup(std::move(aux));
  stat_accounts_ = engine_.account_count();
  stat_open_holds_ = engine_.open_hold_count();
  stat_sequencer_busy_us_ += ThreadCpuUs() - cpu0;
  w->sealed = std::chrono::steady_clock::now();
  stages_.sequencing.RecordSince(w->sequenced, w->sealed);
  WriteGroup(std::move(w));
}

// On the sequencer, right after the group is sealed: its batch goes to
// the WAL (appended to the file, not synced) and the memtables, so that
// the next group reads it from the DB; then the syncer makes it durable.
// A failed write fails the pipeline (TryRecover); the group still goes to
// the syncer, which acknowledges it (with the error) after every earlier
// group, in order.
void LedgerImpl::WriteGroup(std::unique_ptr<PendingWrite> w) {
  rocksdb::WriteOptions wo;
  wo.sync = false;
  // failed_pipeline_ first: TryRecover bumps the epoch before clearing it.
  if (failed_pipeline_.load() || w->epoch != pipeline_epoch_.load()) {
    w->status = Status::Unavailable("an earlier group failed to write");
  } else if (w->batch.Count() > 0) {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t cpu0 = ThreadCpuUs();
    w->status = FromRocks(db_->Write(wo, &w->batch), "write group");
    stat_writer_busy_us_ += ThreadCpuUs() - cpu0;
    stages_.write.RecordSince(t0, std::chrono::steady_clock::now());
  } else {
    w->status = Status::Ok();
  }
  if (w->status.ok()) {
    written_sequence_.store(w->sequence, std::memory_order_release);
    stat_groups_written_.fetch_add(1, std::memory_order_relaxed);
    // The sequencer is the DB's only writer: this is the state right after
    // the group (readers get it once it is synced).
    w->snapshot = db_->GetSnapshot();
  } else if (!failed_pipeline_.load()) {
    FailPipeline();
  }
  w->written = std::chrono::steady_clock::now();
  // The batch is in the memtables now: recycle its buffer at once.
  w->batch.Clear();
  HandToSyncer(std::move(w));
}

std::unique_ptr<PendingWrite> LedgerImpl::NewPendingWrite() {
  {
    std::lock_guard<std::mutex> lock(sync_mu_);
    if (!free_writes_.empty()) {
      std::unique_ptr<PendingWrite> w = std::move(free_writes_.back());
      free_writes_.pop_back();
      return w;
    }
  }
  return std::make_unique<PendingWrite>();
}

void LedgerImpl::HandToSyncer(std::unique_ptr<PendingWrite> w) {
  bool wake = false;
  {
    std::unique_lock<std::mutex> lock(sync_mu_);
    if (unsynced_.size() >= kUnsyncedGroupsMax) {
      sequencer_room_waiting_ = true;
      sync_room_cv_.wait(lock, [&] { return unsynced_.size() < kUnsyncedGroupsMax; });
      sequencer_room_waiting_ = false;
    }
    unsynced_.push_back(std::move(w));
    NARAE_CHECK(unsynced_.size() <= kUnsyncedGroupsMax);
    wake = syncer_waiting_;
    syncer_waiting_ = false;
  }
  if (wake) sync_cv_.notify_one();
}

void LedgerImpl::PublishSnapshot(const rocksdb::Snapshot* s) {
  NARAE_CHECK(s != nullptr);
  rocksdb::DB* db = db_.get();
  std::shared_ptr<const rocksdb::Snapshot> p(
      s, [db](const rocksdb::Snapshot* x) { db->ReleaseSnapshot(x); });
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  synced_snapshot_.swap(p);
  // The previous one is released here, or by its last reader.
}

void LedgerImpl::RecycleWrite(std::unique_ptr<PendingWrite> w) {
  if (w->snapshot != nullptr) db_->ReleaseSnapshot(w->snapshot);
  w->snapshot = nullptr;
  w->batch.Clear();
  w->dones.clear();
  w->accounts.clear();
  w->status = Status::Ok();
  std::lock_guard<std::mutex> lock(sync_mu_);
  if (free_writes_.size() < kUnsyncedGroupsMax + 1) free_writes_.push_back(std::move(w));
}

// Takes every written group, syncs the WAL once for all of them (one fsync
// covers every write that returned before it started: RocksDB's SyncWAL,
// which does not block writes in other threads), publishes their state
// and acknowledges them in order.
void LedgerImpl::SyncerLoop() {
  std::deque<std::unique_ptr<PendingWrite>> batch;
  for (;;) {
    bool wake_sequencer = false;
    bool stop = false;
    {
      std::unique_lock<std::mutex> lock(sync_mu_);
      syncer_busy_ = false;
      if (unsynced_.empty() && !syncer_stop_) {
        syncer_waiting_ = true;
        if (sequencer_room_waiting_) sync_room_cv_.notify_all();  // TryRecover waits for this
        lock.unlock();
        // A group the sequencer keeps open for this sync can go now.
        bool notice = false;
        {
          std::lock_guard<std::mutex> mu_lock(mu_);
          if (sequencer_open_waiting_) {
            syncer_idle_notice_ = true;
            notice = true;
          }
        }
        if (notice) cv_.notify_all();
        lock.lock();
        sync_cv_.wait(lock, [&] { return !unsynced_.empty() || syncer_stop_; });
        syncer_waiting_ = false;
      }
      if (unsynced_.empty()) {
        stop = true;
      } else {
        batch.swap(unsynced_);
        syncer_busy_ = true;
        wake_sequencer = sequencer_room_waiting_;
      }
    }
    if (stop) break;
    if (wake_sequencer) sync_room_cv_.notify_all();
    const auto sync_start = std::chrono::steady_clock::now();
    Status sync_st;
    PendingWrite* last_ok = nullptr;
    for (const auto& w : batch) {
      stages_.sync_wait.RecordSince(w->written, sync_start);
      if (w->status.ok()) last_ok = w.get();
    }
    if (last_ok != nullptr && options_.sync && failed_pipeline_.load()) {
      // A later group's write failed (a full disk): RocksDB's WAL writer is
      // in error, and a sync now would fail too and turn the resumable error
      // into a fatal one (DB::Resume refuses it). These groups fail with it;
      // their rows are in the memtables, which the recovery (Resume) writes
      // to SST files. (A write failing while a sync is under way lets that
      // sync finish: it checks the writer's state when it starts.)
      sync_st = Status::Unavailable("a later group failed to write");
    } else if (last_ok != nullptr && options_.sync) {
      sync_st = FromRocks(db_->SyncWAL(), "sync WAL");
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - sync_start)
                          .count();
      stat_last_fsync_us_ = static_cast<uint64_t>(us);
      for (size_t i = 0; i < batch.size(); ++i) stages_.sync.Record(static_cast<uint64_t>(us));
      // RocksDB takes a failed WAL sync as fatal: the ledger stays down
      // (TryRecover's Resume is refused) until it is reopened, and the WAL
      // on disk then decides (the kernel may have dropped the pages).
      if (!sync_st.ok()) FailPipeline();
    }
    stages_.groups_per_sync.Record(batch.size());
    // Publish before any callback runs: a client told "done" reads it back.
    // The snapshot first, then the balances (as RocksDB showed a write before
    // the writer updated the balances, before the sync left the write).
    if (last_ok != nullptr && sync_st.ok()) {
      PublishSnapshot(last_ok->snapshot);
      last_ok->snapshot = nullptr;                              // owned by the publication now
      std::unique_lock<std::shared_mutex> lock(committed_mu_);  // once for the batch
      for (const auto& w : batch) {
        if (!w->status.ok()) continue;
        for (const Account& a : w->accounts) committed_[a.id] = a;
        stat_groups_++;
        stat_events_ += w->events;
        stat_last_group_events_ = w->events;
      }
    }
    for (auto& w : batch) {
      const Status st = w->status.ok() ? sync_st : w->status;
      Acknowledge(&w->dones, st, w->first_queued);
      RecycleWrite(std::move(w));
    }
    batch.clear();
  }
  {
    std::lock_guard<std::mutex> ack_lock(ack_mu_);
    ack_stop_ = true;
  }
  ack_cv_.notify_all();
}

// On the syncer, after a group's sync: its callbacks (the switch's
// replies) run on the acknowledging thread, so the next sync overlaps
// them; a small group's run here when nothing else waits
// (kInlineAckCallbacksMax). Either way in commit order.
void LedgerImpl::Acknowledge(std::vector<DoneFn>* dones, const Status& st,
                             std::chrono::steady_clock::time_point first_queued) {
  const auto durable = std::chrono::steady_clock::now();
  bool next_written = false;
  if (dones->size() > kInlineAckBeforeNextSyncMax && dones->size() <= kInlineAckCallbacksMax) {
    std::lock_guard<std::mutex> lock(sync_mu_);
    next_written = !unsynced_.empty();
  }
  bool inline_here = false;
  bool wake = false;
  {
    std::unique_lock<std::mutex> lock(ack_mu_);
    const bool small = dones->size() <= kInlineAckBeforeNextSyncMax ||
                       (dones->size() <= kInlineAckCallbacksMax && !next_written);
    if (small && acks_.empty() && !acker_busy_) {
      inline_here = true;  // every earlier group's callbacks have returned
    } else {
      if (acks_.size() >= kAcksQueuedMax) {
        syncer_room_waiting_ = true;
        ack_room_cv_.wait(lock, [&] { return acks_.size() < kAcksQueuedMax; });
        syncer_room_waiting_ = false;
      }
      acks_.push_back(Ack{std::move(*dones), st, first_queued, durable});
      NARAE_CHECK(acks_.size() <= kAcksQueuedMax);
      wake = acker_waiting_;
      acker_waiting_ = false;
    }
  }
  if (wake) ack_cv_.notify_one();
  if (!inline_here) return;
  stages_.acked_inline.fetch_add(1, std::memory_order_relaxed);
  RunCallbacks(dones, st, first_queued, durable);
}

// A durable group's callbacks, in order (Acknowledge or AckLoop), then the
// calls they deferred.
void LedgerImpl::RunCallbacks(std::vector<DoneFn>* dones, const Status& st,
                              std::chrono::steady_clock::time_point first_queued,
                              std::chrono::steady_clock::time_point durable) {
  const auto start = std::chrono::steady_clock::now();
  stages_.ack_wait.RecordSince(durable, start);
  DeferredCalls& deferred = t_deferred;
  NARAE_CHECK(!deferred.open && deferred.count == 0);
  deferred.open = true;
  for (auto& done : *dones) {
    if (done) done(st);
  }
  deferred.open = false;
  for (size_t i = 0; i < deferred.count; ++i) deferred.calls[i].first(deferred.calls[i].second);
  deferred.count = 0;
  const auto end = std::chrono::steady_clock::now();
  stages_.callbacks.RecordSince(start, end);
  stages_.total.RecordSince(first_queued, end);
}

void LedgerImpl::AckLoop() {
  std::unique_lock<std::mutex> lock(ack_mu_);
  for (;;) {
    acker_busy_ = false;  // the previous group's callbacks have returned
    if (acks_.empty() && !ack_stop_) {
      acker_waiting_ = true;
      ack_cv_.wait(lock, [&] { return !acks_.empty() || ack_stop_; });
      acker_waiting_ = false;
    }
    if (acks_.empty()) return;  // stopped and drained
    Ack ack = std::move(acks_.front());
    acks_.pop_front();
    acker_busy_ = true;
    const bool wake = syncer_room_waiting_;
    syncer_room_waiting_ = false;
    lock.unlock();
    if (wake) ack_room_cv_.notify_one();
    RunCallbacks(&ack.dones, ack.status, ack.first_queued, ack.durable);
    lock.lock();
  }
}

// A write failed: the in-memory state is ahead of the disk. Refuse new work
// until the sequencer reloads the durable state (TryRecover).
void LedgerImpl::FailPipeline() {
  failed_pipeline_ = true;
  healthy_ = false;
}

// On the sequencer thread, after a failed write or sync: once the syncer
// has drained (syncing the groups written before the broken one, failing
// every group after it), resume RocksDB and reload the durable state.
// Returns true when healthy again.
bool LedgerImpl::TryRecover() {
  {
    std::unique_lock<std::mutex> lock(sync_mu_);
    if (!unsynced_.empty() || syncer_busy_) {
      sequencer_room_waiting_ = true;
      sync_room_cv_.wait(lock, [&] { return unsynced_.empty() && !syncer_busy_; });
      sequencer_room_waiting_ = false;
    }
  }
  pipeline_epoch_++;  // every group sequenced so far fails, wherever it is
  rocksdb::Status rs = db_->Resume();
  if (!rs.ok()) return false;
  // Groups written but never synced (they failed with the write after
  // them) are in the memtables: their callers were told they failed, an
  // unknown outcome that a retry resolves through the ids and idempotency
  // records they wrote. Their WAL records may be lost and the next groups
  // build on them: write the memtables to SST files (synced) before the
  // state is read back, or a crash could keep later groups without them.
  // (RocksDB's Resume flushes after a WAL error too; this makes it sure.)
  rocksdb::FlushOptions fo;
  fo.wait = true;
  fo.allow_write_stall = true;
  if (!db_->Flush(fo, cfs_).ok()) return false;
  // Readers get the recovered state (durable now) with the balances below.
  PublishSnapshot(db_->GetSnapshot());
  TrimOverlay(/*all=*/true);
  ClearAuxGroups();
  aux_cache_.clear();
  aux_cache_bytes_ = 0;
  if (!LoadState().ok()) return false;
  failed_pipeline_ = false;
  healthy_ = true;
  return true;
}

Status LedgerImpl::Close() {
  std::lock_guard<std::mutex> close_lock(close_mu_);
  if (closed_) return Status::Ok();
  closed_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (sequencer_.joinable()) sequencer_.join();
  if (syncer_.joinable()) syncer_.join();
  if (acker_.joinable()) acker_.join();
  if (!options_.read_only && std::getenv("NARAE_LEDGER_STAGES") != nullptr) {
    std::string line = "{\"ledger_stages_us\":{";
    line += StageJson("queued", stages_.queued) + "," +
            StageJson("sequencing", stages_.sequencing) + "," + StageJson("write", stages_.write) +
            "," + StageJson("sync_wait", stages_.sync_wait) + "," +
            StageJson("sync", stages_.sync) + "," + StageJson("ack_wait", stages_.ack_wait) + "," +
            StageJson("callbacks", stages_.callbacks) + "," + StageJson("total", stages_.total) +
            "," + StageJson("submissions", stages_.submissions) + "," +
            StageJson("groups_per_sync", stages_.groups_per_sync) +
            ",\"acked_inline\":" + std::to_string(stages_.acked_inline.load()) +
            ",\"closed_idle\":" + std::to_string(stages_.closed_idle.load()) +
            ",\"closed_age\":" + std::to_string(stages_.closed_age.load()) +
            ",\"closed_full\":" + std::to_string(stages_.closed_full.load()) +
            ",\"closed_other\":" + std::to_string(stages_.closed_other.load()) + "}}\n";
    std::fputs(line.c_str(), stderr);
  }
  Status st;
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    synced_snapshot_.reset();  // no reader is left (Close's contract)
  }
  if (db_) {
    if (!options_.read_only) st = FromRocks(db_->FlushWAL(true), "flush WAL");
    for (auto* cf : cfs_) (void)db_->DestroyColumnFamilyHandle(cf);
    cfs_.clear();
    rocksdb::Status cs = db_->Close();
    if (st.ok() && !cs.ok()) st = FromRocks(cs, "close");
    db_.reset();
  }
  if (!secondary_path_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(secondary_path_, ec);
  }
  return st;
}

std::optional<Account> LedgerImpl::LookupAccount(AccountId id) {
  std::shared_lock<std::shared_mutex> lock(committed_mu_);
  auto it = committed_.find(id);
  if (it == committed_.end()) return std::nullopt;
  return it->second;
}

std::optional<HoldInfo> LedgerImpl::LookupHold(TransferId id) {
  ConsistentRead read(SyncedSnapshot());
  rocksdb::ReadOptions& ro = read.options;
  std::optional<Transfer> t = ReadTransfer(id, ro);
  if (!t || !(t->flags & transfer_flags::kPending)) return std::nullopt;
  HoldInfo info;
  info.hold = *t;
  if (auto open = DbGet(kHoldsOpen, codec::Key128(id.value), ro); open && open->size() == 8) {
    info.state = HoldState::kPending;
    info.expires_at = codec::GetU64(open->data());
    return info;
  }
  auto done = DbGet(kHoldsDone, codec::Key128(id.value), ro);
  if (!done) return std::nullopt;
  auto d = DecodeHoldDone(*done);
  if (!d) return std::nullopt;
  info.state = d->state;
  info.resolved_at = d->resolved_at;
  info.posted_amount_minor = d->posted_amount_minor;
  info.expires_at = t->timeout_s ? t->timestamp + uint64_t{t->timeout_s} * 1'000'000'000ull : 0;
  return info;
}

Result<std::vector<AccountEntry>> LedgerImpl::GetAccountEntries(const AccountFilter& f) {
  if (f.limit == 0 || f.limit > kQueryLimitMax) return Status::InvalidArgument("limit");
  if (f.account_id.IsZero() || f.account_id.IsMax()) return Status::InvalidArgument("account id");
  uint64_t lo = f.timestamp_min;
  uint64_t hi = f.timestamp_max == 0 ? ~uint64_t{0} : f.timestamp_max;
  if (lo > hi) return Status::InvalidArgument("timestamp_min > timestamp_max");
  ConsistentRead read(SyncedSnapshot());
  rocksdb::ReadOptions& ro = read.options;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[kAccountIndex]));
  std::unique_ptr<rocksdb::Iterator> events(db_->NewIterator(ro, cfs_[kEvents]));
  codec::EventCursor cur(events.get());
  std::vector<AccountEntry> out;
  const std::string lo_key = codec::Key128Ts(f.account_id.value, lo);
  const std::string hi_key = codec::Key128Ts(f.account_id.value, hi);
  if (f.reversed) {
    it->SeekForPrev(hi_key);
  } else {
    it->Seek(lo_key);
  }
  for (; it->Valid() && out.size() < f.limit; f.reversed ? it->Prev() : it->Next()) {
    rocksdb::Slice k = it->key();
    if (k.size() != 24 || k.compare(lo_key) < 0 || k.compare(hi_key) > 0) break;
    uint64_t ts = codec::GetU64(k.data() + 16);
    std::optional<codec::Event> ev = FindEvent(&cur, ts);
    if (!ev) return Status::Corruption("index without event");
    const codec::Event& e = *ev;
    AccountEntry entry;
    entry.timestamp = ts;
    if (e.kind == codec::EventKind::kTransfer) {
      entry.kind = AccountEntry::Kind::kTransfer;
      entry.transfer = e.transfer;
    } else if (e.kind == codec::EventKind::kHoldExpired) {
      entry.kind = AccountEntry::Kind::kExpiry;
      auto t = ReadTransfer(e.expiry.pending_id, ro);
      if (!t) return Status::Corruption("expiry without its hold");
      entry.transfer = *t;
    } else {
      return Status::Corruption("index row points at a non-transfer event");
    }
    bool is_debit = entry.transfer.debit_account_id == f.account_id;
    if ((is_debit && !f.debits) || (!is_debit && !f.credits)) continue;
    rocksdb::Slice v = it->value();
    if (v.size() == 32) {
      entry.has_balances = true;
      entry.debits_pending = codec::GetU64(v.data());
      entry.debits_posted = codec::GetU64(v.data() + 8);
      entry.credits_pending = codec::GetU64(v.data() + 16);
      entry.credits_posted = codec::GetU64(v.data() + 24);
    }
    out.push_back(entry);
  }
  NARAE_RETURN_IF_ERROR(FromRocks(it->status(), "scan account index"));
  return out;
}

Result<std::vector<Transfer>> LedgerImpl::QueryTransfersByUserData(U128 ud, uint32_t limit) {
  if (limit == 0 || limit > kQueryLimitMax) return Status::InvalidArgument("limit");
  ConsistentRead read(SyncedSnapshot());
  rocksdb::ReadOptions& ro = read.options;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[kUserData]));
  std::unique_ptr<rocksdb::Iterator> events(db_->NewIterator(ro, cfs_[kEvents]));
  codec::EventCursor cur(events.get());
  const std::string prefix = codec::Key128(ud);
  std::vector<Transfer> out;
  for (it->Seek(prefix); it->Valid() && out.size() < limit; it->Next()) {
    if (!it->key().starts_with(prefix) || it->key().size() != 24) break;
    std::optional<codec::Event> e = FindEvent(&cur, codec::GetU64(it->key().data() + 16));
    if (!e || e->kind != codec::EventKind::kTransfer) {
      return Status::Corruption("user data index without transfer");
    }
    out.push_back(e->transfer);
  }
  NARAE_RETURN_IF_ERROR(FromRocks(it->status(), "scan user data"));
  return out;
}

Status LedgerImpl::ScanAccounts(const std::function<bool(const Account&)>& fn) {
  std::vector<Account> all;
  {
    std::shared_lock<std::shared_mutex> lock(committed_mu_);
    all.reserve(committed_.size());
    for (const auto& [id, a] : committed_) all.push_back(a);
  }
  std::sort(all.begin(), all.end(), [](const Account& x, const Account& y) { return x.id < y.id; });
  for (const Account& a : all) {
    if (!fn(a)) break;
  }
  return Status::Ok();
}

Status LedgerImpl::ScanTransfers(uint64_t from_ts, uint64_t to_ts,
                                 const std::function<bool(const Transfer&)>& fn) {
  ConsistentRead read(SyncedSnapshot());
  rocksdb::ReadOptions& ro = read.options;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[kEvents]));
  codec::EventCursor cur(it.get());
  for (cur.Seek(from_ts); cur.Valid() && cur.timestamp() <= to_ts; cur.Next()) {
    std::string_view v = cur.record();
    if (v.empty() || static_cast<uint8_t>(v[0]) != uint8_t(codec::EventKind::kTransfer)) continue;
    codec::Event e;
    if (!codec::DecodeEvent(v, &e)) return Status::Corruption("event record");
    if (!fn(e.transfer)) break;
  }
  if (!cur.problem().empty()) return Status::Corruption(cur.problem());
  return FromRocks(it->status(), "scan events");
}

std::optional<std::string> LedgerImpl::GetAux(std::string_view key) {
  ConsistentRead read(SyncedSnapshot());
  return DbGet(kAux, rocksdb::Slice(key.data(), key.size()), read.options);
}

Status LedgerImpl::ScanAux(std::string_view prefix,
                           const std::function<bool(std::string_view, std::string_view)>& fn) {
  ConsistentRead read(SyncedSnapshot());
  rocksdb::ReadOptions& ro = read.options;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[kAux]));
  rocksdb::Slice p(prefix.data(), prefix.size());
  for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
    if (!fn(std::string_view(it->key().data(), it->key().size()),
            std::string_view(it->value().data(), it->value().size()))) {
      break;
    }
  }
  return FromRocks(it->status(), "scan aux");
}

Result<JournalEntry> LedgerImpl::JournalHead() {
  ConsistentRead read(SyncedSnapshot());
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read.options, cfs_[kJournal]));
  it->SeekToLast();
  if (!it->Valid()) {
    NARAE_RETURN_IF_ERROR(FromRocks(it->status(), "journal"));
    return JournalEntry{};
  }
  JournalEntry j;
  if (!codec::DecodeJournal(std::string_view(it->value().data(), it->value().size()), &j)) {
    return Status::Corruption("journal entry");
  }
  return j;
}

Status LedgerImpl::CatchUp() {
  if (!options_.read_only) return Status::Ok();
  NARAE_RETURN_IF_ERROR(FromRocks(db_->TryCatchUpWithPrimary(), "catch up with primary"));
  NARAE_RETURN_IF_ERROR(ReplayTail(replayed_ts_));
  std::unique_lock<std::shared_mutex> lock(committed_mu_);
  committed_ = engine_.CopyAccounts();
  return Status::Ok();
}

Result<VerifyReport> LedgerImpl::Verify(const std::function<void(uint64_t)>& progress) {
  ConsistentRead read(SyncedSnapshot());
  rocksdb::ReadOptions& ro = read.options;
  ro.fill_cache = false;
  ro.total_order_seek = true;
  VerifySource src;
  src.journal.reset(db_->NewIterator(ro, cfs_[kJournal]));
  src.events.reset(db_->NewIterator(ro, cfs_[kEvents]));
  src.accounts.reset(db_->NewIterator(ro, cfs_[kAccounts]));
  src.holds_open.reset(db_->NewIterator(ro, cfs_[kHoldsOpen]));
  src.meta = DbGet(kDefault, kMetaKey, ro);
  if (options_.read_only) {
    std::unique_lock<std::shared_mutex> lock(committed_mu_);
    src.current = committed_;
  }
  // On the primary the live state may move on during the scan: compare it
  // only on a read-only follower (a fixed view).
  return RunVerify(&src, progress);
}

Status LedgerImpl::Checkpoint(const std::string& dir) {
  rocksdb::Checkpoint* raw = nullptr;
  NARAE_RETURN_IF_ERROR(FromRocks(rocksdb::Checkpoint::Create(db_.get(), &raw), "checkpoint"));
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  return FromRocks(cp->CreateCheckpoint(dir), "create checkpoint");
}

LedgerStats LedgerImpl::Stats() {
  LedgerStats s;
  s.groups_committed = stat_groups_;
  s.groups_written = stat_groups_written_;
  s.events_committed = stat_events_;
  s.last_group_events = stat_last_group_events_;
  s.last_fsync_us = stat_last_fsync_us_;
  s.accounts = stat_accounts_;
  s.open_holds = stat_open_holds_;
  s.sequencer_busy_us = stat_sequencer_busy_us_;
  s.writer_busy_us = stat_writer_busy_us_;
  s.healthy = healthy_;
  return s;
}

Status CheckCpus(const std::vector<uint32_t>& cpus) {
  if (cpus.size() > kCpusMax) return Status::InvalidArgument("more than 1024 CPUs listed");
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (!cpus.empty() && sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
    return Status::IOError(std::string("sched_getaffinity: ") + std::strerror(errno));
  }
  cpu_set_t seen;
  CPU_ZERO(&seen);
  for (uint32_t cpu : cpus) {  // bounded: kCpusMax
    if (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) {
      return Status::InvalidArgument("CPU " + std::to_string(cpu) +
                                     " is not one this process may run on");
    }
    if (CPU_ISSET(cpu, &seen)) {
      return Status::InvalidArgument("CPU " + std::to_string(cpu) + " listed twice");
    }
    CPU_SET(cpu, &seen);
  }
  return Status::Ok();
}

Status PinThisThread(const std::vector<uint32_t>& cpus) {
  if (cpus.empty()) return Status::Ok();
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t cpu : cpus) {  // bounded: kCpusMax
    if (cpu >= CPU_SETSIZE) return Status::InvalidArgument("CPU " + std::to_string(cpu));
    CPU_SET(cpu, &set);
  }
  const int err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (err != 0)
    return Status::IOError(std::string("pthread_setaffinity_np: ") + std::strerror(err));
  return Status::Ok();
}

bool DeferUntilGroupCallbacksReturn(void (*fn)(void*), void* arg) {
  DeferredCalls& deferred = t_deferred;
  if (!deferred.open || deferred.count == deferred.calls.size()) return false;
  deferred.calls[deferred.count++] = {fn, arg};
  return true;
}

}  // namespace narae::ledger
