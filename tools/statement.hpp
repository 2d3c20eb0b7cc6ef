// narae::tools audit core: what the auditor's commands compute, kept apart
// from the command line so tests can call it directly.
//
// - Time: RFC 3339 UTC / unix-nanosecond parsing and formatting, integer
//   civil-date arithmetic (no time zones: every date is UTC).
// - Money: ISO 4217 minor units formatted to decimal strings with integer
//   arithmetic only (never floating point).
// - Trial balance: per currency (ledger) and account type (code), debits and
//   credits pending and posted, now or replayed to an instant.
// - Statements: an account's posted entries in a period with opening and
//   closing balances, and the camt.053.001.08, MT940, CSV and JSON writers.
// - Detached Ed25519 signatures of statement files.
//
// Balance sign convention (statements): a credit-normal account (flag
// debits_must_not_exceed_credits, or a liability/income type: customer
// deposit, merchant clearing/settlement, fee income, logistics, unless it
// carries credits_must_not_exceed_debits) has balance = credits_posted -
// debits_posted; every other account debits_posted - credits_posted. XML and
// MT940 carry the side explicitly (CRDT/C = credits exceed debits).
//
// Errors are Status/Result values; nothing throws across this boundary.
// Thread safety: free functions are pure or only read the given ledger.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "ledger/status.hpp"

namespace narae::tools {

using Int128 = __int128;
using UInt128 = unsigned __int128;

inline constexpr uint64_t kNsPerSecond = 1'000'000'000ull;
inline constexpr uint64_t kNsPerDay = 86'400ull * kNsPerSecond;
// At most this many entries in one statement (memory bound: ~100 bytes each).
inline constexpr uint64_t kStatementEntriesMax = 50'000'000;
// Files larger than this are not signed or verified (held in memory).
inline constexpr uint64_t kSignedFileBytesMax = uint64_t{1} << 30;

// ---- Time (UTC) ---------------------------------------------------------------

// "2026-11-28T12:00:00Z" (optional fraction of up to 9 digits, "Z" or
// "+00:00"), or unix nanoseconds (digits only).
Result<uint64_t> ParseInstant(std::string_view text);
// A statement bound: "YYYY-MM-DD" (the start of that day, or with
// `end_of_day` its last nanosecond) or anything ParseInstant accepts.
Result<uint64_t> ParseDateBound(std::string_view text, bool end_of_day);
std::string FormatDate(uint64_t ns);      // "2026-11-28"
std::string FormatDateTime(uint64_t ns);  // "2026-11-28T12:00:00Z", with ".nnnnnnnnn" if needed
std::string FormatYymmdd(uint64_t ns);    // "261128" (MT940)

// ---- Money --------------------------------------------------------------------

struct Currency {
  uint32_t numeric = 0;  // ISO 4217 numeric code (the ledger)
  const char* alpha = "";
  uint8_t exponent = 2;  // minor-unit digits
};
// The ISO 4217 currencies Narae knows (KPW, USD, EUR, CNY and a few more).
std::optional<Currency> FindCurrency(uint32_t ledger);
// 123456 with exponent 2 -> "1234.56" (`separator` '.' or ','). Exact.
std::string FormatMinor(UInt128 magnitude_minor, uint8_t exponent, char separator = '.');
std::string FormatSignedMinor(Int128 minor, uint8_t exponent);  // "-12.34"
std::string Int128ToString(Int128 v);
std::string UInt128ToString(UInt128 v);

// ---- Trial balance -------------------------------------------------------------

struct TrialBalanceRow {
  uint32_t ledger = 0;
  uint16_t code = 0;
  uint64_t accounts = 0;
  UInt128 debits_pending = 0, debits_posted = 0, credits_pending = 0, credits_posted = 0;
};
struct TrialBalanceTotal {
  uint32_t ledger = 0;
  uint64_t accounts = 0;
  UInt128 debits_pending = 0, debits_posted = 0, credits_pending = 0, credits_posted = 0;
  bool balanced() const {
    return debits_pending == credits_pending && debits_posted == credits_posted;
  }
};
struct TrialBalance {
  std::optional<uint64_t> at_ns;          // empty: the live balances
  std::vector<TrialBalanceRow> rows;      // ordered by (ledger, code)
  std::vector<TrialBalanceTotal> totals;  // ordered by ledger
  uint64_t transfers_replayed = 0;        // --at only
  bool balanced() const;
};
// Live: sums every account's balances. At `at_ns`: replays the transfers
// with timestamp <= at_ns (posted: ordinary transfers and captures; pending:
// holds created <= at_ns not posted, voided or expired by then) over the
// accounts created by then. `progress` receives per-mille of the replay.
Result<TrialBalance> ComputeTrialBalance(ledger::Ledger& ledger, std::optional<uint64_t> at_ns,
                                         const std::function<void(uint64_t)>& progress = {});
const char* AccountCodeName(uint16_t code);  // "customer_deposit", ... or "other"

// ---- Statements -----------------------------------------------------------------

enum class StatementFormat { kCamt053, kMt940, kCsv, kJson };
Result<StatementFormat> ParseStatementFormat(std::string_view name);
const char* StatementFormatName(StatementFormat format);

// One booked (posted) entry, from the statement account's point of view.
struct StatementEntry {
  uint64_t booking_ns = 0;  // the posting's ledger timestamp
  uint64_t value_ns = 0;    // = booking_ns (funds move when booked)
  uint64_t amount_minor = 0;
  bool credit = false;             // the account was credited
  ledger::AccountId counterparty;  // the other account of the transfer
  ledger::TransferId transfer_id;  // the posting transfer
  ledger::TransferId pending_id;   // the captured hold (zero if none)
  ledger::U128 order_reference;    // user_data_128 (the hold's if the capture has none)
  uint64_t merchant = 0;           // user_data_64 (likewise)
  uint16_t transfer_code = 0;
  Int128 balance_after_minor = 0;  // signed, statement convention
};

struct Statement {
  ledger::AccountId account;
  Currency currency;
  uint16_t account_code = 0;
  bool credit_normal = true;
  uint64_t from_ns = 0;  // inclusive
  uint64_t to_ns = 0;    // inclusive
  uint64_t created_ns = 0;
  Int128 opening_minor = 0;  // posted balance just before from_ns
  Int128 closing_minor = 0;  // opening + every entry
  uint64_t credit_count = 0, debit_count = 0;
  UInt128 credit_sum_minor = 0, debit_sum_minor = 0;
  std::vector<StatementEntry> entries;  // booking order
};

struct StatementRequest {
  ledger::AccountId account;
  uint64_t from_ns = 0;     // inclusive
  uint64_t to_ns = 0;       // inclusive; REQUIRES from_ns <= to_ns
  uint64_t created_ns = 0;  // when the statement is produced
};
// Reads the account's entries page by page (GetAccountEntries) and books the
// posted ones. NotFound for an unknown account, InvalidArgument for a bad
// period or a currency that is not ISO 4217. `progress` gets entries read.
Result<Statement> BuildStatement(ledger::Ledger& ledger, const StatementRequest& request,
                                 const std::function<void(uint64_t)>& progress = {});
// Writes the statement in `format` (UTF-8; CRLF line ends for MT940 and CSV).
Status WriteStatement(const Statement& statement, StatementFormat format, std::ostream& out);
// RFC 4180 field: quoted (with doubled quotes) when it holds , " CR or LF.
std::string CsvField(std::string_view text);

// ---- Signatures -----------------------------------------------------------------

// The signing key: a PKCS#8 PEM Ed25519 private key ("BEGIN PRIVATE KEY", as
// `openssl genpkey -algorithm ed25519` writes) or a file of 64 hex digits
// (the 32-byte seed). Refused if group or world may read it.
Result<crypto::SecretBytes> LoadSigningKey(const std::string& path);
// Writes a new key pair: private PKCS#8 PEM (mode 0600) and public PEM.
// Fails if either file exists.
Status GenerateSigningKeyPair(const std::string& private_path, const std::string& public_path);
// Signs the exact bytes of `file`; writes the raw 64-byte signature to
// `signature_path` (readable by `openssl pkeyutl -verify -rawin`).
Status SignFile(const std::string& file, const crypto::SecretBytes& seed,
                const std::string& signature_path);
// The same with a key store's STATEMENT_SIGNING key (KeyStore::SignStatement).
Status SignFileWithKeyStore(const std::string& file, const crypto::KeyStore& store,
                            const std::string& key_id, const std::string& signature_path);
// Writes the PEM public key of a key store's STATEMENT_SIGNING key (new file).
Status ExportKeyStorePublicKey(const crypto::KeyStore& store, const std::string& key_id,
                               const std::string& public_path);
// OK when `signature_path` (raw 64 bytes, or base64 text) is a valid
// signature of `file` under the PEM public key; PermissionDenied when it is
// not; other codes for missing or malformed files.
Status VerifyFileSignature(const std::string& file, const std::string& signature_path,
                           const std::string& public_key_path);
std::string Base64Encode(crypto::ByteView bytes);
Result<crypto::Bytes> Base64Decode(std::string_view text);  // ignores whitespace

Result<std::string> ReadFile(const std::string& path, uint64_t bytes_max);

}  // namespace narae::tools
