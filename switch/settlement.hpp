// Settlement: business days, merchant fee schedules, delivery-fee splits to
// the logistics office, per-(merchant, day) settlement and interbank netting.
// docs/settlement.md is the reference (chart of accounts, records, rules).
//
// Everything is stored in the ledger: records are aux records under "st/",
// money moves are ledger transfers. A business day is the range of ledger
// timestamps (previous close, this close]; the day record is written by
// CloseDay(). SettleDay() posts, for each merchant and currency with activity
// on a closed day, one linked batch (payout, fees, delivery shares) and the
// settlement record in ONE ledger transaction (Ledger::Submit): a re-run, or
// a crash half-way and a re-run, never pays twice and never leaves a merchant
// half settled.
//
// Aux records (all JSON with "v" unless noted):
//   st/cur                               the last closed day (day, close_ns)
//   st/d/<day 10 digits>                 DayRecord
//   st/f/<currency 3>/<merchant|*>/<version 10>  FeeSchedule ("*" = default)
//   st/p/<payment transfer id hex>       PaymentInfo (binary, see below)
//   st/s/<day 10>/<currency 3>/<merchant>        MerchantSettlement
//   st/a/<day 10>/<currency 3>/<merchant>        failed attempts (decimal)
//   st/b/<bank id>                       OtherBank (BIN ranges, SIM issuers)
//   st/i/<day 10>/<currency 3>           InterbankSettlement
//
// Thread safety: the functions are safe to call from any thread; two
// settlements of the same day may run at once (the ledger sequencer decides,
// and the second sees the first's record). REQUIRES: CloseDay and
// SetFeeSchedule are not called concurrently with each other for the same
// merchant (they read-then-write inside one Txn, so the ledger serialises
// them anyway).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ledger/ledger.hpp"
#include "ledger/status.hpp"

namespace narae::switching {

// ---- Limits and codes --------------------------------------------------------
inline constexpr size_t kFeeBandsMax = 8;                   // delivery distance bands
inline constexpr size_t kOrderRefBytesMax = 64;             // PaymentInfo::order_ref
inline constexpr size_t kRrnBytes = 12;                     // field 37
inline constexpr uint32_t kDistanceMetersMax = 20'000'000;  // half the equator
inline constexpr uint32_t kFeeBpsMax = 10'000;              // 100 %
inline constexpr size_t kOtherBanksMax = 256;
inline constexpr size_t kBankRangesMax = 64;        // BIN ranges or SIM issuers per bank
inline constexpr size_t kSettleInFlightMax = 2048;  // merchant batches submitted, not durable
inline constexpr size_t kReportLinesMax = 10'000'000;

// Transfer codes written by settlement (the authorizer uses 101..104).
inline constexpr uint16_t kCodeSettlePayout = 201;      // clearing -> merchant settlement
inline constexpr uint16_t kCodeSettleFee = 202;         // clearing -> fee income
inline constexpr uint16_t kCodeSettleDelivery = 203;    // clearing -> logistics office
inline constexpr uint16_t kCodeSettleRecovery = 204;    // merchant settlement -> clearing
inline constexpr uint16_t kCodeInterbankNet = 205;      // interbank <-> central bank
inline constexpr uint16_t kCodeInterbankPayment = 206;  // customer -> interbank (ours at theirs)
// A delivery share moved at capture (SplitKind::kAtCapture: the HTTP API's
// split), in the capture's transaction, whatever channel captures (HTTP
// capture, ISO 8583 0220, the purchase itself): merchant clearing ->
// logistics office, user_data_128 = the payment's transfer id (the purchase
// or the hold). Settlement counts it as a delivery share already paid.
inline constexpr uint16_t kCodeDeliveryAtCapture = 110;
// The part of such a share given back because the capture was reversed
// (0400 of the purchase, of the posted hold or of the 0220), in the
// reversal's transaction: logistics office -> merchant clearing, same
// user_data_128. Never for a refund (docs/settlement.md).
inline constexpr uint16_t kCodeDeliveryReturned = 111;
// True for the codes above: such transfers are never a day's capture.
bool IsSettlementCode(uint16_t code);

inline constexpr std::string_view kAuxSettlePrefix = "st/";
inline constexpr std::string_view kAuxDayPrefix = "st/d/";
inline constexpr std::string_view kAuxFeePrefix = "st/f/";
inline constexpr std::string_view kAuxPaymentPrefix = "st/p/";
inline constexpr std::string_view kAuxSettledPrefix = "st/s/";
inline constexpr std::string_view kAuxOtherBankPrefix = "st/b/";
inline constexpr std::string_view kDefaultFeeMerchant = "*";

// ---- Business days -------------------------------------------------------------
struct DayRecord {
  uint32_t day = 0;           // 1, 2, 3, ... (the business day number)
  uint64_t open_ns = 0;       // exclusive: the previous day's close (0 for day 1)
  uint64_t close_ns = 0;      // inclusive: the cut-over instant
  uint64_t closed_at_ns = 0;  // when the close was recorded
  std::string date;           // business date: the UTC date of close_ns, "2026-11-28"
};
std::string DayKey(uint32_t day);
std::string EncodeDayRecord(const DayRecord& d);
Result<DayRecord> DecodeDayRecord(std::string_view text);

// Closes the open business day at `at_ns` (nullopt: now). The cut-over must
// be after the previous close and not after now (a ledger timestamp):
// closing at or before an existing close is refused (AlreadyExists) with the
// day it would repeat. Returns the new record.
Result<DayRecord> CloseDay(ledger::Ledger& ledger, std::optional<uint64_t> at_ns);
// The day record, NotFound for a day never closed (FailedPrecondition with
// "still open" for the current day).
Result<DayRecord> GetDay(ledger::Ledger& ledger, uint32_t day);
Result<std::vector<DayRecord>> ListDays(ledger::Ledger& ledger);
// The day number of a "--day" argument: a number, or a date (YYYY-MM-DD)
// naming exactly one closed day.
Result<uint32_t> ResolveDay(ledger::Ledger& ledger, std::string_view text);
// The automatic cut-over: closes the open day at today's cut-over instant
// (`cutover_s_of_day` seconds after 00:00 UTC) once that instant has passed
// and the day is still open. Returns the record when it closed a day.
Result<std::optional<DayRecord>> CloseDayIfDue(ledger::Ledger& ledger, uint32_t cutover_s_of_day);

// ---- Fee schedules -------------------------------------------------------------
// The logistics office's share of a payment with a distance: the first band
// whose up_to_m is >= the distance (up_to_m = 0: no upper bound, last band).
struct DeliveryBand {
  uint32_t up_to_m = 0;
  uint64_t share_minor = 0;
  bool operator==(const DeliveryBand&) const = default;
};
// fee = round_half_even(amount * bps / 10000) + fixed, then at least min and
// at most max (max 0 = no maximum), and never more than the amount. Per
// capture transaction; refunds and reversals carry no fee.
struct FeeSchedule {
  std::string merchant_id;  // "*" = the default for every merchant without its own
  uint16_t currency = 0;
  uint32_t version = 0;            // 1, 2, ... per (merchant, currency), assigned by SetFeeSchedule
  uint64_t effective_from_ns = 0;  // applies to captures with timestamp >= this
  uint32_t bps = 0;
  uint64_t fixed_minor = 0;
  uint64_t min_minor = 0;
  uint64_t max_minor = 0;
  // Default table: 0-10 km, 10-50 km, over 50 km (shares set by the bank).
  std::vector<DeliveryBand> delivery_bands;
  uint64_t created_at_ns = 0;
  bool operator==(const FeeSchedule&) const = default;
};
std::string EncodeFeeSchedule(const FeeSchedule& f);
Result<FeeSchedule> DecodeFeeSchedule(std::string_view text);
Status ValidateFeeSchedule(const FeeSchedule& f);
// Round half to even of amount * bps / 10000 (exact, 128-bit).
uint64_t PercentHalfEven(uint64_t amount_minor, uint32_t bps);
uint64_t ComputeFee(const FeeSchedule& f, uint64_t amount_minor);
// The delivery share of a distance; nullopt when no band covers it.
std::optional<uint64_t> DeliveryShareForDistance(const FeeSchedule& f, uint32_t distance_m);

// Adds a new version (never edits one). `f.version` and `created_at_ns` are
// assigned; effective_from_ns 0 means now. Refused when it would change a
// closed day (effective_from <= the last close) or go back before the
// previous version's effective_from. Returns the stored schedule.
Result<FeeSchedule> SetFeeSchedule(ledger::Ledger& ledger, FeeSchedule f);
// Every version of every schedule, in key order.
Result<std::vector<FeeSchedule>> ListFeeSchedules(ledger::Ledger& ledger);
// The version in force for (merchant, currency) at `ts_ns`, as FeeBook::Find
// decides it, reading only that merchant's and the default's versions (the
// HTTP API resolves a delivery distance with it); nullopt when none is.
Result<std::optional<FeeSchedule>> FeeScheduleInForce(ledger::Ledger& ledger,
                                                      std::string_view merchant_id,
                                                      uint16_t currency, uint64_t ts_ns);

// The versions in force, searchable by (merchant, currency, instant).
class FeeBook {
 public:
  explicit FeeBook(std::vector<FeeSchedule> all);
  // The merchant's own version in force at `ts_ns`, else the default's;
  // nullptr when neither has a version in force.
  const FeeSchedule* Find(std::string_view merchant_id, uint16_t currency, uint64_t ts_ns) const;

 private:
  std::vector<FeeSchedule> all_;  // sorted by (currency, merchant, effective_from)
};

// ---- Payment information and the delivery split -------------------------------
// What a capture path records next to a payment (the purchase or the hold):
// the order reference, the RRN and the logistics office's delivery share.
// Settlement finds it by the payment's transfer id (for a captured hold, the
// post's pending_id). Binary: version 1, split kind, amount (8, big-endian),
// distance (4), order_ref length (1) + bytes, rrn length (1) + bytes.
// Version 2 (kAtCapture only) appends moved_minor (8, big-endian).
//   kFixed, kDistance: paid to the logistics office at settlement (203).
//   kAtCapture: the share fixed when the payment was authorized (the HTTP
//     API's split, by amount or priced from a distance), moved by the capture
//     itself (110, MoveDeliveryShare) and never again at settlement.
enum class SplitKind : uint8_t { kNone = 0, kFixed = 1, kDistance = 2, kAtCapture = 3 };
struct DeliverySplit {
  SplitKind kind = SplitKind::kNone;
  uint64_t amount_minor = 0;  // kFixed, kAtCapture: the share
  uint32_t distance_m = 0;    // kDistance: priced by the fee schedule's bands
  // kAtCapture: the part of the share in the logistics account now (moved
  // by captures, less what reversals gave back); <= amount_minor.
  uint64_t moved_minor = 0;
  bool operator==(const DeliverySplit&) const = default;
};
struct PaymentInfo {
  std::string order_ref;  // <= kOrderRefBytesMax printable ASCII
  std::string rrn;        // empty or 12 characters
  DeliverySplit split;
  bool operator==(const PaymentInfo&) const = default;
};
std::string PaymentInfoKey(const ledger::TransferId& payment);
Status ValidatePaymentInfo(const PaymentInfo& p);
std::string EncodePaymentInfo(const PaymentInfo& p);
Result<PaymentInfo> DecodePaymentInfo(std::string_view bytes);
// For a capture path, inside the Txn that creates the payment.
// REQUIRES: ValidatePaymentInfo(p).ok().
void RecordPaymentInfo(ledger::Txn& txn, const ledger::TransferId& payment, const PaymentInfo& p);
// The same, synchronously (tools and tests).
Status PutPaymentInfo(ledger::Ledger& ledger, const ledger::TransferId& payment,
                      const PaymentInfo& p);
// Copies the PaymentInfo of a hold to the hold that replaces it (a partial
// reversal of a 0100 makes a new pending transfer): the completion and the
// settlement find the payment by the current hold. No-op without one.
void CarryPaymentInfo(ledger::Txn& txn, const ledger::TransferId& from,
                      const ledger::TransferId& to);
// The HTTP API's split of a payment it just made, in the payment's Txn
// (after the authorizer recorded its PaymentInfo): kAtCapture, `share_minor`
// > 0, nothing moved yet.
void RecordSplitAtCapture(ledger::Txn& txn, const ledger::TransferId& payment,
                          uint64_t share_minor);
// In the Txn of a capture (purchase, 0220 completion) or of a reversal of
// one, after its transfer: brings the share of `payment` held by the
// logistics office to min(share, captured_minor), where `captured_minor` is
// what stands captured on the payment now, net of reversals (refunds do not
// count: they give no share back). Moves the difference clearing ->
// logistics (110) or back (111) with a transfer id derived from `cause`
// (the capture's or reversal's transfer) and records it. No-op unless the
// payment's split is kAtCapture. Returns the transfer's result (kOk when
// nothing had to move); on a failure nothing is moved or recorded.
ledger::CreateTransferResult MoveDeliveryShare(ledger::Txn& txn, const ledger::TransferId& payment,
                                               const ledger::AccountId& clearing, uint16_t currency,
                                               uint64_t captured_minor,
                                               const ledger::TransferId& cause);
// Parses a PaymentInfo split written as JSON (tools and tests):
// {"delivery_minor": N} or {"distance_m": N}. Never throws. (The HTTP API's
// own "split" object is ParseApiSplit in api_parse.hpp.)
Result<DeliverySplit> ParseSplitJson(std::string_view json_text);

// ---- Merchant settlement ------------------------------------------------------
// refund: refunds and reversals; delivery: a share moved at capture (code
// 110, kCodeDeliveryAtCapture: the HTTP API's split); delivery_return: a
// share given back by a reversal of the capture (code 111).
enum class LineKind : uint8_t { kCapture = 1, kRefund = 2, kDelivery = 3, kDeliveryReturn = 4 };
struct SettlementLine {
  LineKind kind = LineKind::kCapture;
  ledger::TransferId transfer;
  ledger::TransferId payment;  // the purchase or hold (PaymentInfo key)
  uint64_t timestamp = 0;
  uint16_t code = 0;
  ledger::U128 user_data_128;
  uint64_t amount_minor = 0;
  uint64_t fee_minor = 0;       // captures only
  uint32_t fee_version = 0;     // 0: no schedule in force (no fee)
  std::string fee_merchant;     // the schedule's merchant ("*" = default)
  uint64_t delivery_minor = 0;  // captures (a share to pay), delivery (paid), returns
  std::string order_ref;
  std::string rrn;
};
struct MerchantSettlement {
  uint32_t day = 0;
  std::string merchant_id;
  uint16_t currency = 0;
  uint64_t captures_minor = 0;
  uint32_t captures_count = 0;
  uint64_t refunds_minor = 0;  // refunds and reversals
  uint32_t refunds_count = 0;
  uint64_t fees_minor = 0;
  uint64_t delivery_minor = 0;  // every delivery share of the day, both kinds below
  // The part of delivery_minor already moved at capture (code 110, the HTTP
  // API's split); settlement pays only the rest (203).
  uint64_t delivery_at_capture_minor = 0;
  // Shares given back to clearing this day by reversals of captures (111).
  uint64_t delivery_returned_minor = 0;
  // captures + delivery_returned + recovery = refunds + payout + fees +
  // delivery (exactly; one of payout and recovery is zero).
  uint64_t payout_minor = 0;                  // clearing -> merchant settlement account
  uint64_t recovery_minor = 0;                // merchant settlement -> clearing (refunds exceeded)
  uint32_t attempt = 0;                       // transfer ids of this attempt (after failed ones)
  std::vector<ledger::TransferId> transfers;  // the batch, as posted
  uint64_t settled_at_ns = 0;
  std::vector<SettlementLine> lines;  // not stored in the record
};
std::string SettledKey(uint32_t day, uint16_t currency, std::string_view merchant_id);
// The record as JSON (without lines): the stored record (its dump()), the
// `settle` admin op and `narae settle --json`.
nlohmann::json MerchantSettlementJson(const MerchantSettlement& s);
std::string EncodeMerchantSettlement(const MerchantSettlement& s);  // without lines
Result<MerchantSettlement> DecodeMerchantSettlement(std::string_view text);
// The deterministic transfer id of sub-transfer `sub` (1..4) of a batch.
ledger::TransferId SettlementTransferId(uint32_t day, uint16_t currency,
                                        std::string_view merchant_id, uint32_t attempt,
                                        uint8_t sub);

struct SettleOptions {
  std::string merchant_id;  // empty: every merchant
  bool keep_lines = false;  // fill MerchantSettlement::lines (reports)
  bool dry_run = false;     // compute, post nothing
  // Test hooks (crash tests): called on the sequencer thread inside the
  // Txn of the n-th batch (0-based) after its transfers, before its commit;
  // and on the acknowledging thread once the n-th batch is durable.
  std::function<void(size_t)> in_txn_hook;
  std::function<void(size_t)> durable_hook;
};
struct SettleFailure {
  std::string merchant_id;
  uint16_t currency = 0;
  std::string reason;
};
struct SettleSummary {
  uint32_t day = 0;
  std::vector<MerchantSettlement> settled;          // posted by this call
  std::vector<MerchantSettlement> already_settled;  // found settled (records as stored)
  std::vector<SettleFailure> failed;                // posted nothing; re-run after fixing
  uint64_t captures_scanned = 0;
};
// Settles a closed day. FailedPrecondition when the day is open, NotFound
// when it does not exist or the merchant is unknown.
Result<SettleSummary> SettleDay(ledger::Ledger& ledger, uint32_t day, const SettleOptions& options);
// The lines and totals of one merchant's day, settled or not (reports).
Result<MerchantSettlement> ComputeMerchantDay(ledger::Ledger& ledger, uint32_t day,
                                              std::string_view merchant_id, uint16_t currency);

// The settlement report of one merchant's day (CSV or JSON); `settled` is
// the stored record (nullopt: not settled yet, the report says so).
std::string SettlementReportCsv(const MerchantSettlement& computed,
                                const std::optional<MerchantSettlement>& settled);
std::string SettlementReportJson(const MerchantSettlement& computed,
                                 const std::optional<MerchantSettlement>& settled);

// ---- Other banks and interbank netting ----------------------------------------
struct BinRange {
  std::string low;   // PAN prefix digits, inclusive (compared on the same length)
  std::string high;  // inclusive
  bool operator==(const BinRange&) const = default;
};
struct InterbankAccount {
  uint16_t currency = 0;
  ledger::AccountId account;  // kInterbank: due to (credits) / due from (debits) the bank
  bool operator==(const InterbankAccount&) const = default;
};
// A stand-in agreement with another bank in one currency (docs/authorization.md,
// "Other banks' cards and SIMs"): we hold none of its keys and have no online
// link to it, so the authorizer approves its customers' payments at our
// merchants on its behalf within these limits, debiting its interbank
// account; the bank honours them in the day's net. No terms in a currency:
// no agreement, its credentials are declined (57).
struct StandInTerms {
  uint16_t currency = 0;
  uint64_t daily_max_minor = 0;   // approved per UTC day for the whole bank, > 0
  uint64_t single_max_minor = 0;  // one payment, <= daily_max_minor; 0 = daily_max_minor
  bool operator==(const StandInTerms&) const = default;
};
struct OtherBank {
  std::string id;  // 1..15 characters [A-Za-z0-9_-]
  std::string name;
  std::vector<BinRange> bin_ranges;
  std::vector<std::string> sim_issuers;  // SIM token prefixes (digits)
  std::vector<InterbankAccount> accounts;
  std::vector<StandInTerms> stand_in;  // at most one per currency of `accounts`
  // Field 32 (1..11 digits) its acquirer host sends when its merchants take
  // our customers' cards and SIMs (docs/authorization.md, "Our customers at
  // other banks' merchants"); "" = it sends us none.
  std::string acquirer_id = {};
  bool operator==(const OtherBank&) const = default;
  const InterbankAccount* AccountFor(uint16_t currency) const;
  const StandInTerms* StandInFor(uint16_t currency) const;
};
std::string EncodeOtherBank(const OtherBank& b);
Result<OtherBank> DecodeOtherBank(std::string_view text);
// "CUR:DAILY_MAX[:SINGLE_MAX]" in minor units, e.g. "408:5000000" or
// "408:5000000:100000" (`narae bank add --stand-in`); nullopt when malformed.
std::optional<StandInTerms> ParseStandIn(std::string_view text);
// Adds a bank: creates its interbank accounts (kInterbank) per currency.
// Refused when a range or issuer overlaps another bank's or our own BIN, or
// when a stand-in term names a currency not in `currencies`, repeats one, has
// daily_max_minor 0 or single_max_minor above it.
Result<OtherBank> AddOtherBank(ledger::Ledger& ledger, const OtherBank& bank,
                               const std::vector<uint16_t>& currencies);
Result<std::vector<OtherBank>> ListOtherBanks(ledger::Ledger& ledger);
// The bank whose BIN range holds the PAN / whose issuer prefix starts the
// SIM token; nullptr when none.
const OtherBank* FindBankForPan(const std::vector<OtherBank>& banks, std::string_view pan);
const OtherBank* FindBankForSimToken(const std::vector<OtherBank>& banks, std::string_view token);
// The bank whose acquirer id is `field32`; nullptr when none (or "").
const OtherBank* FindBankForAcquirer(const std::vector<OtherBank>& banks, std::string_view field32);

struct InterbankPosition {
  std::string bank_id;  // ours: the BankConfig bank_id
  uint16_t currency = 0;
  uint64_t due_to_minor = 0;    // we owe the bank (credits of its account this day)
  uint64_t due_from_minor = 0;  // the bank owes us (debits)
  int64_t net_minor = 0;        // > 0: the bank receives; the positions of a day sum to 0
};
struct InterbankSettlement {
  uint32_t day = 0;
  uint16_t currency = 0;
  std::vector<InterbankPosition> positions;  // other banks, then ours (last)
  std::vector<ledger::TransferId> transfers;
  bool already_settled = false;
  uint64_t settled_at_ns = 0;
};
// Nets the day per bank and currency and posts each bank's net between its
// interbank account and our central bank account (idempotent per day and
// currency, one Txn each).
Result<std::vector<InterbankSettlement>> SettleInterbank(ledger::Ledger& ledger, uint32_t day,
                                                         bool dry_run);
// The instruction file for the central bank (docs/settlement.md).
std::string InterbankInstructionFile(const std::vector<InterbankSettlement>& s,
                                     std::string_view our_bank_id, const DayRecord& day);

}  // namespace narae::switching
