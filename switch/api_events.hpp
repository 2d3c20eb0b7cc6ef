// The payment event feed (docs/api.md, "Events"): one event per payment state
// change, written as a ledger aux record in the SAME transaction as the
// change, so an event exists exactly when its effect is durable.
//
// Who writes which event:
//   payment.authorized, .captured, .voided, .refunded  the HTTP API's TxnHook
//       (switch/api.cpp) for HTTP requests; the authorizer's PaymentObserver
//       (RecordIsoChange below) for ISO 8583 requests: one of the two, never both
//   payment.expired     EmitExpiredHolds(): holds expire inside the ledger;
//       every hold is indexed by its expiry (ap/h/) when it is made, and a
//       periodic scan walks that index behind a durable cursor (ap/hc),
//       writing the event and moving the cursor in one transaction
//   settlement.settled  SettleDay() (switch/settlement.cpp), in the Txn that
//       posts a merchant's day (one event per merchant, day and currency)
//
// Records (ledger aux, next to the API's ap/i, ap/p, ap/l):
//   ap/e/<merchant>/<16 hex event id>          the event (JSON); the feed and the
//                                              webhook outbox (switch/webhook.hpp)
//   ap/h/<16 hex expires_at ns><RRN 12>        "<merchant>/<hold transfer id hex>"
//   ap/hc                                      the expiry scan's cursor (an ap/h suffix)
//
// Event ids are unique and increase in commit order: max(previous + 1,
// the group's timestamp base), assigned on the sequencer thread.
//
// Thread safety: the Txn functions run on the ledger's sequencer thread
// (inside Submit callbacks); the others from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "ledger/ledger.hpp"
#include "ledger/status.hpp"

namespace narae::switching {

struct MerchantSettlement;
struct PaymentChange;
class BankCache;

inline constexpr std::string_view kAuxEventPrefix = "ap/e/";
inline constexpr std::string_view kAuxExpiryIndexPrefix = "ap/h/";
inline constexpr std::string_view kAuxExpiryCursorKey = "ap/hc";
inline constexpr size_t kExpiryScanBatchMax = 1024;  // expired holds per transaction

// 16 lower-case hex digits.
std::string Hex16(uint64_t v);

// Appends `s` as a JSON string, escaped exactly as nlohmann::json::dump()
// escapes it (", \, control characters; other bytes as they are), so text
// written by hand on the sequencer reads the same as the json-built
// answers of the GET endpoints.
void AppendJsonString(std::string* out, std::string_view s);

// Appends an event for `merchant` to the feed, inside `txn`. `data_json` is
// a JSON value (an object). Returns the event id ("evt_" + 16 hex).
std::string PutEvent(ledger::Txn& txn, std::string_view merchant, std::string_view type,
                     std::string_view data_json);

// The aux key of event `event_id` ("evt_" + 16 hex) of `merchant`.
std::string EventKey(std::string_view merchant, std::string_view event_id);
// The "data" member of an event record as PutEvent wrote it (the bytes of
// `data_json`); nullopt when `event` is not such a record.
std::optional<std::string_view> EventData(std::string_view event);

// Indexes a hold by its expiry (no-op for a hold that never expires).
void IndexHoldExpiry(ledger::Txn& txn, std::string_view merchant, std::string_view rrn,
                     const ledger::TransferId& hold);

// The authorizer's observer: the event of an ISO 8583 request (not hooked)
// and the expiry index of every hold. `bank` maps terminals to merchants.
void RecordIsoChange(ledger::Txn& txn, const BankCache& bank, const PaymentChange& change);

// settlement.settled for a merchant's settled day (inside SettleDay's Txn).
void RecordSettlementEvent(ledger::Txn& txn, const MerchantSettlement& settlement);

// Finds holds whose expiry passed (by `now_ns`) and that the ledger expired,
// after the durable cursor, and submits one transaction writing their
// payment.expired events and the new cursor (at most kExpiryScanBatchMax).
// Stops at the first hold the ledger has not expired yet. `done` gets the
// number of events written once durable (0 without calling Submit when
// nothing is due: then done is called at once).
void EmitExpiredHolds(ledger::Ledger& ledger, uint64_t now_ns,
                      std::function<void(Result<size_t>)> done);
// The same, waiting (tests, tools).
Result<size_t> EmitExpiredHoldsSync(ledger::Ledger& ledger, uint64_t now_ns);

// Visits aux keys under `prefix` whose suffix sorts after `after` (the last
// suffix seen; "" = from the start), in key order, without reading the ones
// before: the first (up to 16) characters of `after` must be lower-case hex
// and steer one bounded prefix scan per digit position (InvalidArgument
// otherwise). Stops when `fn` returns false.
Status ScanAuxAfter(ledger::Ledger& ledger, const std::string& prefix, std::string_view after,
                    const std::function<bool(std::string_view, std::string_view)>& fn);

}  // namespace narae::switching
