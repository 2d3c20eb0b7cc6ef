// Private to ledger/: the journal hash chain and the full verification
// (recompute the chain and every balance from the ordered events).
#pragma once

#include <openssl/evp.h>
#include <rocksdb/iterator.h>

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ledger/ledger.hpp"

namespace narae::ledger {

// The events digest of a group is SHA-256 over, for each event in order:
// timestamp (8 bytes BE) | length (4 bytes BE) | stored record bytes.
void UpdateEventDigest(EVP_MD_CTX* md, uint64_t timestamp, std::string_view record);

// hash = SHA-256(previous_hash | sequence | first_ts | last_ts | count | events_digest),
// integers 8 bytes big-endian.
std::array<uint8_t, 32> JournalHash(const JournalEntry& j);

struct VerifySource {
  std::unique_ptr<rocksdb::Iterator> journal;
  std::unique_ptr<rocksdb::Iterator> events;
  std::unique_ptr<rocksdb::Iterator> accounts;
  std::unique_ptr<rocksdb::Iterator> holds_open;
  std::optional<std::string> meta;
  // Balances a reader is served now (read-only followers): must equal the
  // replay of every event. Empty: not compared.
  std::unordered_map<AccountId, Account, IdHash> current;
};

Result<VerifyReport> RunVerify(VerifySource* src, const std::function<void(uint64_t)>& progress);

}  // namespace narae::ledger
