// narae::tools reconciliation core: `narae reconcile` compares, for one UTC
// day, three views of the card and SIM payments the switch authorized:
//
//   the switch log   the authorizer's au/x request records (switch/authorizer.hpp):
//                    approved 0100 holds and 0200 purchases whose authorizer day is D
//   the ledger       the hold / purchase transfers (codes 101 / 102) and the
//                    posts and voids of those holds
//   the file         an external export (a storefront's orders, a settlement
//                    report): order reference, RRN and/or payment id, amount,
//                    currency, date; only rows dated D take part
//
// and reports every break, classified (BreakClass). A payment is matched
// when the three agree: the ledger transfer exists with the switch's amount
// and currency, a hold is captured by the end of the day, and exactly one
// file row names it (by RRN or payment id) with the settled amount (a
// purchase's amount net of reversals, a hold's captured amount) and currency.
// A payment released without money moving (hold voided or expired, purchase
// fully reversed) and absent from the file is "released", not a break.
//
// Each settled payment's delivery split (its PaymentInfo, switch/settlement.hpp)
// is checked too: a share due to the logistics office at capture that was
// not moved is a break of its own (kDeliveryShareNotMoved).
//
// Cost: one scan of the switch log (every au/x record, all days), one scan
// of the ledger's transfers from the start of D to the end, one point read
// per payment of D (its PaymentInfo, usually absent: a bloom filter miss;
// two threads), the file parsed in memory, then sorts and binary searches:
// O(n log n), ~100 bytes a row.
//
// Errors are Status/Result values; nothing throws across this boundary.
// Thread safety: free functions; Reconcile() only reads the given ledger
// (from two threads: the switch log and the transfers are scanned in parallel,
// then the payments' delivery shares are read in two halves).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/ledger.hpp"
#include "ledger/status.hpp"

namespace narae::tools {

// Limits: the file (held in memory) and its rows.
inline constexpr uint64_t kReconcileFileBytesMax = uint64_t{4} << 30;
inline constexpr uint64_t kReconcileRowsMax = 20'000'000;
inline constexpr size_t kReconcileLineBytesMax = 4096;
inline constexpr size_t kReconcileOrderRefBytesMax = 128;
// Payments the authorizer stamped with day D may reach the ledger a little
// after midnight (and the reverse): transfers this close to the day are
// looked at, and never called "missing in switch log" for the wrong day.
inline constexpr uint64_t kReconcileDayGraceNs = 10ull * 60 * 1'000'000'000ull;

enum class BreakClass : uint8_t {
  kMissingInLedger = 0,     // approved by the switch, no ledger transfer (or a file row
                            // naming a payment the switch declined)
  kMissingInSwitchLog = 1,  // a ledger payment transfer, or a file row, the switch never logged
  kMissingInFile = 2,       // settled (money moved) but no file row names it
  kAmountMismatch = 3,      // switch vs ledger, or file vs settled amount
  kCurrencyMismatch = 4,    // switch vs ledger, or file vs switch
  kDuplicate = 5,           // a second (third...) file row naming the same payment
  kLatePresentment = 6,     // a hold of day D captured after the end of D
  kStaleHold = 7,           // a hold of day D still open (not captured, voided or expired)
  // A payment whose delivery share (moved to the logistics office at
  // capture, docs/settlement.md) is not where it should be: the move failed
  // (a frozen or closed logistics or clearing account), or a reversal could
  // not give it back. Due = min(share, captured net of reversals).
  kDeliveryShareNotMoved = 8,
};
inline constexpr size_t kBreakClassCount = 9;
const char* BreakClassName(BreakClass c);  // "missing_in_ledger", ...

enum class ReconcileFileFormat { kCsv, kJson };
Result<ReconcileFileFormat> ParseReconcileFileFormat(std::string_view name);  // "csv", "json"

// One row of the external file.
struct FileRow {
  uint64_t line = 0;              // CSV: 1-based line; JSON: 1-based element
  std::string order_ref;          // may be empty
  std::string rrn;                // 12 upper-case base-36 characters, or empty
  ledger::TransferId payment_id;  // the ledger transfer id, or zero
  uint64_t amount_minor = 0;
  uint16_t currency = 0;  // ISO 4217 numeric
  uint32_t day = 0;       // UTC days since 1970-01-01
};

// CSV (RFC 4180, a header row naming the columns; unknown columns ignored):
//   order_ref (optional), rrn and/or payment_id (one required per row),
//   amount ("12.34", the currency's minor digits at most) or amount_minor
//   (integer), currency ("KPW" or "408"), date ("2026-11-28" or RFC 3339).
// JSON: an array of objects with the same keys (or {"rows": [...]}); amount
// is a string (never a floating point number), amount_minor an integer.
// InvalidArgument naming the line (element) of the first malformed row.
Result<std::vector<FileRow>> ParseReconcileFile(std::string_view text, ReconcileFileFormat format);
Result<std::vector<FileRow>> ReadReconcileFile(const std::string& path, ReconcileFileFormat format);

struct ReconcileBreak {
  BreakClass cls = BreakClass::kMissingInLedger;
  std::string rrn;                // "" when unknown
  ledger::TransferId payment_id;  // the ledger transfer (zero when none)
  std::string order_ref;          // from the file row
  uint64_t file_line = 0;         // 0: no file row
  uint16_t currency = 0;
  std::optional<uint64_t> switch_minor;  // the switch's amount
  std::optional<uint64_t> ledger_minor;  // the ledger's (settled) amount
  std::optional<uint64_t> file_minor;    // the file's amount
  std::string detail;                    // one line for people
  // The amount the break is counted with: file, else ledger, else switch.
  uint64_t amount_minor() const {
    return file_minor ? *file_minor : ledger_minor ? *ledger_minor : switch_minor.value_or(0);
  }
};

struct ReconcileTotal {
  uint64_t count = 0;
  std::map<uint16_t, unsigned __int128> minor_by_currency;
  void Add(uint16_t currency, uint64_t amount_minor) {
    count++;
    minor_by_currency[currency] += amount_minor;
  }
};

struct ReconcileReport {
  uint32_t day = 0;
  uint64_t switch_records_scanned = 0;  // every au/x record read
  uint64_t switch_payments = 0;         // approved holds and purchases of day D
  uint64_t ledger_payments = 0;         // hold / purchase transfers booked during D
  uint64_t file_rows = 0;               // rows dated D
  uint64_t file_rows_other_days = 0;    // rows dated otherwise (ignored)
  ReconcileTotal matched;               // payments with no break (settled amount)
  ReconcileTotal released;              // released without money moving, not in the file
  ReconcileTotal unmatched;             // payments and file rows with at least one break
  std::array<ReconcileTotal, kBreakClassCount> by_class;
  std::vector<ReconcileBreak> breaks;  // by payment (transfer id), then ledger-only, then file-only
  bool ok() const { return breaks.empty(); }
};

struct ReconcileRequest {
  uint32_t day = 0;     // UTC days since 1970-01-01
  uint64_t now_ns = 0;  // decides whether an open hold has expired
};

// Phases reported to `progress`: "switch log" (records), "ledger" (transfers),
// "matching" (payments). Called often; must be cheap.
using ReconcileProgress = std::function<void(const char* phase, uint64_t done)>;

// REQUIRES: the day has begun (day * 86400 s <= now).
Result<ReconcileReport> Reconcile(ledger::Ledger& ledger, const ReconcileRequest& request,
                                  const std::vector<FileRow>& file,
                                  const ReconcileProgress& progress = {});

// RRN <-> 64-bit number (12 base-36 characters, 0-9 A-Z).
std::optional<uint64_t> RrnToNumber(std::string_view rrn);
std::string RrnFromNumber(uint64_t n);

}  // namespace narae::tools
