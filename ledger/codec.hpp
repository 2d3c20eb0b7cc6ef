// Private to ledger/: the on-disk encoding of keys and records.
//
// Keys are fixed-width big-endian so RocksDB's bytewise order is numeric
// order. Records are cereal portable-binary archives with a class version,
// so the format can evolve; an event is one kind byte then its record.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ledger/ledger.hpp"

namespace rocksdb {
class Iterator;
}

namespace narae::ledger::codec {

enum class EventKind : uint8_t {
  kAccountCreated = 1,
  kTransfer = 2,
  kAccountChanged = 3,
  kHoldExpired = 4,
};

// A hold released by the ledger when its timeout passed.
struct Expiry {
  TransferId pending_id;
  AccountId debit_account_id;
  AccountId credit_account_id;
  uint64_t amount_minor = 0;
  uint32_t ledger = 0;
  uint64_t timestamp = 0;
};

struct Event {
  EventKind kind = EventKind::kTransfer;
  Account account;       // kAccountCreated (as created: zero balances)
  Transfer transfer;     // kTransfer
  AccountChange change;  // kAccountChanged
  Expiry expiry;         // kHoldExpired
  uint64_t timestamp() const;
};

struct Meta {
  uint64_t last_timestamp = 0;
  uint64_t journal_sequence = 0;  // of the last entry; 0 = none yet
  std::array<uint8_t, 32> journal_hash{};
  // The accounts family holds balances as of this timestamp; later events
  // are replayed on open (account snapshots are written lazily).
  uint64_t accounts_snapshot_ts = 0;
};

// Fixed-width big-endian helpers.
void PutU64(std::string* out, uint64_t v);
void PutU128(std::string* out, U128 v);
uint64_t GetU64(const char* p);
U128 GetU128(const char* p);

std::string Key128(U128 id);
std::string Key128Ts(U128 id, uint64_t ts);
std::string KeyTs(uint64_t ts);

// The event log is chunked: each value of the events family holds up to
// kChunkEventsMax events of one group as frames
//   timestamp (8 BE) | record length (4 BE) | record (kind byte + cereal record)
// keyed by its first event's timestamp. A frame is exactly what the journal's
// events digest hashes, so a group's digest is SHA-256 over its chunks.
inline constexpr size_t kChunkEventsMax = 64;
inline constexpr size_t kFrameHeaderBytes = 12;
// Appends the frame header of an event whose record will be `record_bytes`.
void PutFrameHeader(std::string* out, uint64_t ts, uint32_t record_bytes);
// Whether `value` stored under `key` is a well-formed chunk (frames to its
// end, the first at the key's timestamp, increasing).
bool IsChunk(std::string_view key, std::string_view value);

// Walks the events of the chunked log in timestamp order over an iterator
// of the events family (which it positions). A malformed chunk stops it
// with problem() set. The record views are valid until the next move.
class EventCursor {
 public:
  explicit EventCursor(rocksdb::Iterator* it) : it_(it) {}
  void SeekToFirst();
  void Seek(uint64_t ts);  // the first event at or after `ts`
  bool Valid() const { return valid_; }
  void Next();
  uint64_t timestamp() const { return ts_; }
  std::string_view record() const { return record_; }
  const std::string& problem() const { return problem_; }

 private:
  void EnterChunk();
  void ParseFrame();
  rocksdb::Iterator* it_;
  std::string_view chunk_, record_;
  size_t pos_ = 0, next_pos_ = 0;
  uint64_t ts_ = 0, prev_ts_ = 0;
  bool valid_ = false, any_ = false;
  std::string problem_;
};

// Records. Decode returns false on malformed input (never crashes).
std::string EncodeAccount(const Account& a);
void EncodeAccount(const Account& a, std::string* out);  // appends
bool DecodeAccount(std::string_view data, Account* a);
void EncodeEvent(const Event& e, std::string* out);
bool DecodeEvent(std::string_view data, Event* e);
std::string EncodeMeta(const Meta& m);
bool DecodeMeta(std::string_view data, Meta* m);
std::string EncodeJournal(const JournalEntry& j);
bool DecodeJournal(std::string_view data, JournalEntry* j);

}  // namespace narae::ledger::codec
