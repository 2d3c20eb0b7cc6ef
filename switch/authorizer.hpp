// The Narae authorization engine: implements IsoHandler (switch/handler.hpp).
//
// For each ISO 8583 request it checks the terminal, merchant, card or SIM
// token and the credentials (MAC, CVV2, PIN, chip ARQC, SIM cryptogram) on
// the calling I/O thread, then submits one ledger transaction that checks
// the changing state (duplicates, PIN tries, ATC and SIM counters, daily and
// per-minute limits), creates the hold / transfer, and writes the duplicate
// record and the counters in the same ledger batch. The response leaves from
// the ledger's done callback, so nothing is acknowledged before it is
// durable. docs/authorization.md describes every flow and response code.
//
// Records written by the authorizer (ledger aux):
//   au/x/<terminal 8><year 4><field 7 10><STAN 6>  the request: its kind, amounts,
//                                                  accounts, transfer id, captured and
//                                                  refunded amounts, the packed response
//   au/r/<RRN 12>                                  RRN -> request key (refunds by RRN)
//   au/d/c/<card id>, au/d/s/<token id>            CredentialState (bank.hpp), written
//                                                  only when it changes
//   st/p/<transfer id>                             PaymentInfo (settlement.hpp), only for a
//                                                  payment with an order reference or split
//                                                  (else its transfer carries the RRN)
//
// Thread safety: Handle() may be called from any number of threads.
// REQUIRES: every reply has been delivered (or the ledger closed, which
// calls back every pending submission) before the handler is destroyed.
// Bank records (merchants, terminals, cards, SIMs, other banks) are read
// from the BankCache loaded at start; `narae` write commands reach a running
// switch through its admin interface, which updates that cache
// (switch/admin_ops.hpp), so they apply from the next request.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/ledger.hpp"
#include "switch/handler.hpp"

namespace narae::switching {

struct OtherBank;  // settlement.hpp

class BankCache;

// The "authorization" object of the switch config (all optional; defaults here).
struct AuthorizerOptions {
  uint32_t hold_timeout_s = 7 * 24 * 3600;         // 0100 holds of goods
  uint32_t food_hold_timeout_s = 2 * 3600;         // 0100 holds at food merchants
  std::vector<uint16_t> food_mccs = {5812, 5814};  // restaurants, fast food
  uint32_t pin_tries_max = 3;                      // the n-th wrong PIN answers 75 and blocks
  uint64_t sim_counter_window = 100;               // SIM counter accepted in (last, last + window]
  int64_t sim_time_skew_s = 300;                   // |SIM cryptogram time - now| allowed
  uint16_t atc_jump_max = 1000;                    // larger ATC jumps are accepted (logged)
  // A card payment without chip data or PIN must carry a CVV2 (field 48).
  bool require_cvv2_without_chip_or_pin = true;
  std::string cvk_key_id = "cvk";
  std::string pvk_key_id = "pvk";
  std::string imk_ac_key_id = "imk-ac";
  std::string imk_sim_key_id = "imk-sim";
  // The clock (ms since the epoch, UTC). Tests inject one; empty = system clock.
  std::function<int64_t()> clock_ms;
};

// Parses the options JSON ("{}" = defaults). Unknown keys are refused.
Result<AuthorizerOptions> ParseAuthorizerOptions(std::string_view options_json);

// MakeAuthorizer() with options already parsed (tests inject a clock).
Result<std::unique_ptr<IsoHandler>> MakeAuthorizerWithOptions(const AuthorizerDeps& deps,
                                                              AuthorizerOptions options);

// The aux key of a request: terminal id, the inferred year of field 7, field
// 7 and STAN. `now_ms` decides the year (field 7 has none): the year that
// puts MMDD within six months of now.
std::string RequestKey(std::string_view terminal_id, std::string_view field7, std::string_view stan,
                       int64_t now_ms);
// The ledger transfer id of the request (`sub` numbers its transfers: 1, 2).
ledger::TransferId RequestTransferId(std::string_view request_key, uint8_t sub);

// Field 48 (private data) elements: `tag(4) length(2 digits) value` repeated.
// Also accepted: exactly "CVV2" followed by 3 digits. Returns the CVV2 or "".
std::string Field48Cvv2(std::string_view field48);
std::string BuildField48(std::string_view cvv2, std::string_view order_ref = {});
// The value of element `tag` of field 48 ("" when absent or malformed), e.g.
// "ORDR", the order reference (written to the payment's settlement record).
std::string Field48Element(std::string_view field48, std::string_view tag);

// Field 55 chip data: the ARQC transaction data (values of 9F02 9F03 9F1A
// 95 5F2A 9A 9C 9F37 82 9F36 9F10, in this order, those present) and the
// tags Narae reads. Exposed for tests and test clients.
// BuildChipData() covers 9F02, 5F2A, 9C (00), 9F37 and 9F36.
struct ChipData {
  std::vector<uint8_t> arqc;  // 9F26, 8 bytes
  uint16_t atc = 0;           // 9F36
  uint64_t amount_minor = 0;  // 9F02 (BCD)
  uint16_t currency = 0;      // 5F2A (BCD)
  std::vector<uint8_t> transaction_data;
};
Result<ChipData> ParseChipData(std::string_view field55);
// Builds field 55 with 9F02, 5F2A, 9C, 9F37, 9F36 and 9F26 (a test client).
std::string BuildChipData(uint64_t amount_minor, uint16_t currency, uint16_t atc,
                          uint32_t unpredictable_number, std::span<const uint8_t> arqc);
// The transaction data BuildChipData() covers (for computing the ARQC).
std::vector<uint8_t> ChipTransactionData(uint64_t amount_minor, uint16_t currency, uint16_t atc,
                                         uint32_t unpredictable_number);

// ---- The request records, for tools (`narae reconcile`) ---------------------
// The authorizer's au/x records as read back by tools; the encoding itself
// stays private to authorizer.cpp.
inline constexpr std::string_view kRequestRecordPrefix = "au/x/";
inline constexpr uint16_t kTransferCodeHold = 101;      // the 0100 hold (pending transfer)
inline constexpr uint16_t kTransferCodePurchase = 102;  // the 0200 purchase (posted transfer)
// The hold or purchase of our customer at another bank's merchant (an
// inbound acquirer request: customer -> interbank), pending or posted.
inline constexpr uint16_t kTransferCodeInterbankPayment = 206;
enum class RequestKind : uint8_t {
  kHold = 1,
  kPurchase = 2,
  kRefund = 3,
  kCompletion = 4,
  kReversal = 5,
  kBalance = 6,
  kTombstone = 8,  // a reversal that arrived before its original
};
struct RequestRecord {
  RequestKind kind = RequestKind::kHold;
  uint8_t response_code = 0;  // ResponseCode value; 0 = approved
  uint64_t digest = 0;
  uint64_t amount_minor = 0;  // requested (authorized) amount
  uint16_t currency = 0;      // ISO 4217 numeric
  ledger::AccountId debit;
  ledger::AccountId credit;
  ledger::TransferId transfer;  // holds: the current hold (a partial reversal replaces it)
  uint64_t captured_minor = 0;  // purchases: amount net of reversals; holds: the completion
  uint64_t refunded_minor = 0;
  uint32_t day = 0;      // UTC day (days since 1970-01-01) of the authorizer's clock
  std::string rrn;       // field 37 of the response (12 characters), "" for tombstones
  std::string cred_key;  // au/d/... of the card or SIM
};
// Decodes an au/x value; nullopt when it is not a valid record.
std::optional<RequestRecord> ParseRequestRecord(std::string_view value);
// Encodes a record as the authorizer writes it (tests and `narae bench
// reconcile` build switch logs with it). The stored response carries only
// fields 37 and 39. REQUIRES rrn is empty or 12 characters.
std::string EncodeRequestRecord(const RequestRecord& record);

// ---- The HTTP API's seam (switch/api.cpp) -----------------------------------

// Work the HTTP API adds to a request's ledger transaction (its idempotency
// record, payment index and events), run on the ledger's sequencer thread so
// it commits atomically with the request's effect.
struct TxnHook {
  // First, before the request: returning true skips the request entirely
  // (the hook has its own answer, e.g. an idempotent replay); the reply then
  // carries no field 39.
  std::function<bool(ledger::Txn&)> before;
  // After the request was applied (approved or declined), with its response.
  std::function<void(ledger::Txn&, const Message& response)> after;
};

// An approved request as the authorizer recorded it (its au/x record is in
// the same transaction): the HTTP API's event feed (switch/api_events.hpp)
// learns of ISO 8583 payments through it.
struct PaymentChange {
  RequestKind kind = RequestKind::kHold;
  std::string terminal_id;      // field 41
  std::string rrn;              // field 37 of this request's response
  std::string orig_key;         // au/x/... of the original (completion, reversal), else ""
  std::string rrn_ref;          // a refund's original RRN when given, else ""
  uint64_t amount_minor = 0;    // this request's amount
  uint16_t currency = 0;        // ISO 4217 numeric
  ledger::TransferId transfer;  // the record's transfer (a hold: the pending transfer)
  bool partial = false;         // a partial reversal
  bool hooked = false;          // an HTTP API request (the API writes its own event)
};
// Called on the ledger's sequencer thread inside the request's transaction.
using PaymentObserver = std::function<void(ledger::Txn&, const PaymentChange&)>;

// The authorizer made by MakeAuthorizer*() implements this too.
class HookedHandler : public IsoHandler {
 public:
  // Called for every approved hold, purchase, completion, reversal and
  // refund. REQUIRES: set before the first request (not synchronised).
  virtual void SetPaymentObserver(PaymentObserver observer) = 0;
  // Handle() with `hook` run in the request's ledger transaction. A hooked
  // refund (0200, processing code 20) may omit field 2: the original
  // payment's card or SIM is refunded.
  virtual void HandleHooked(Message request, std::shared_ptr<TxnHook> hook,
                            std::function<void(Message response)> reply) = 0;
  // The bank records the authorizer reads (merchants, terminals, cards,
  // SIMs): the switch's admin interface updates it after a write
  // (switch/admin_ops.hpp). Null when the handler keeps none.
  virtual BankCache* bank_cache() { return nullptr; }
};

// A hold or purchase as its request record (au/x/...) holds it, found by the
// RRN (field 37) of its approval. Durable state only.
struct PaymentRecord {
  std::string request_key;  // au/x/...
  std::string terminal_id;  // field 41 of the original
  std::string field7;       // field 7 of the original
  std::string stan;         // field 11 of the original
  bool hold = false;        // 0100 (else 0200 purchase)
  uint8_t response_code = 0;
  uint64_t amount_minor = 0;
  uint16_t currency = 0;
  ledger::AccountId debit;
  ledger::AccountId credit;
  ledger::TransferId transfer;  // the hold (or the purchase transfer)
  uint64_t captured_minor = 0;
  uint64_t refunded_minor = 0;
  std::string cred_key;  // au/d/c/<card id> or au/d/s/<token id>
};
std::optional<PaymentRecord> LookupPaymentByRrn(ledger::Ledger& ledger, std::string_view rrn);

// An approved hold or purchase (codes 101, 102, 206) carries the RRN of its
// approval (field 37) in its transfer's user_data_128: hi = 'R' in the top
// byte and the RRN as a number (base 36) below it, lo = the request digest.
// Payments approved before this carry hi = 0 (their RRN is in their st/p
// record). Returns the RRN, "" when `user_data_128` carries none.
std::string RrnFromUserData(const ledger::U128& user_data_128);
// The RRN of the payment a capture settles: the transfer's own (a purchase)
// or that of the hold it posted (a completion); "" when it carries none.
// For settlement lines of payments without an st/p record.
std::string LookupPaymentRrn(ledger::Ledger& ledger, const ledger::Transfer& capture);

// A hold approved by stand-in for another bank (docs/authorization.md) that
// expired unused gives the bank's exposure of its day back: when `hold`
// (its au/x record) debits an interbank account of one of `banks`, that
// bank's approved amount of the record's day goes down by `amount_minor`
// (never below 0; nothing once the day is over: the exposure restarted).
// For the expiry scan's transaction (switch/api_events.cpp), which sees the
// hold expired and runs once per hold. Returns the amount given back.
uint64_t ReleaseStandInOnExpiry(ledger::Txn& txn, const std::vector<OtherBank>& banks,
                                const RequestRecord& hold, uint64_t amount_minor);

}  // namespace narae::switching
