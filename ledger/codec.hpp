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

// Records. Decode returns false on malformed input (never crashes).
std::string EncodeAccount(const Account& a);
bool DecodeAccount(std::string_view data, Account* a);
void EncodeEvent(const Event& e, std::string* out);
bool DecodeEvent(std::string_view data, Event* e);
std::string EncodeMeta(const Meta& m);
bool DecodeMeta(std::string_view data, Meta* m);
std::string EncodeJournal(const JournalEntry& j);
bool DecodeJournal(std::string_view data, JournalEntry* j);

}  // namespace narae::ledger::codec
