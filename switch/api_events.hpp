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

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "ledger/ledger.hpp"
#include "ledger/status.hpp"

namespace narae::switching {

struct MerchantSettlement;
struct PaymentChange;
class BankCache;
class IsoHandler;

inline constexpr std::string_view kAuxEventPrefix = "ap/e/";
inline constexpr std::string_view kAuxExpiryIndexPrefix = "ap/h/";
inline constexpr std::string_view kAuxExpiryCursorKey = "ap/hc";
inline constexpr size_t kExpiryScanBatchMax = 1024;  // expired holds per transaction

// 16 lower-case hex digits.
std::string Hex16(uint64_t v);
// Appends Hex16(v) to `out` (no allocation of its own).
void AppendHex16(std::string* out, uint64_t v);

// Appends `s` as a JSON string, escaped exactly as nlohmann::json::dump()
// escapes it (", \, control characters; other bytes as they are), so text
// written by hand on the sequencer reads the same as the json-built
// answers of the GET endpoints.
void AppendJsonString(std::string* out, std::string_view s);
// Whether AppendJsonString escapes some byte of `s` (below 0x20, '"', '\\').
bool JsonNeedsEscape(std::string_view s);

// Appends an event for `merchant` to the feed, inside `txn`. `data_json` is
// a JSON value (an object). The record's key (EventKey()) in `*event_key`
// when given. The record is built in a buffer the thread keeps (the ledger
// copies what PutAux is given).
void PutEvent(ledger::Txn& txn, std::string_view merchant, std::string_view type,
              std::string_view data_json, std::string* event_key = nullptr);

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

// The event RecordIsoChange writes for `change` (not hooked): its type and
// its data, the bytes json::dump() would write for the same object (keys
// sorted, nlohmann's escapes), built by hand because it runs on the
// sequencer for every ISO payment. `orig_rrn` and `orig_amount` are the
// original request's (completion, reversal, refund; "" and 0 when none).
// nullopt for kinds without an event (balance inquiry, tombstone).
//   hold        payment.authorized  payment{status authorized, captured 0}
//   purchase    payment.captured    payment{status captured, captured = amount}
//   completion  payment.captured    payment of the original, captured = this amount
//   reversal    payment.voided      payment of the original + amount_voided,
//                                   partial; status authorized when partial
//   refund      payment.refunded    refund{payment_id pay_<orig> or null}
// Every data object carries "iso8583":{"rrn","terminal_id"} of this request.
struct IsoEvent {
  std::string_view type;  // a string literal
  std::string data;       // a JSON object
};
std::optional<IsoEvent> IsoEventJson(const PaymentChange& change, std::string_view orig_rrn,
                                     uint64_t orig_amount);

// settlement.settled for a merchant's settled day (inside SettleDay's Txn).
void RecordSettlementEvent(ledger::Txn& txn, const MerchantSettlement& settlement);

// Finds holds whose expiry passed (by `now_ns`) and that the ledger expired,
// after the durable cursor, and submits one transaction writing their
// payment.expired events (unless !write_events), giving back the stand-in
// exposure of other banks' expired holds (ReleaseStandInOnExpiry) and
// moving the cursor (at most kExpiryScanBatchMax holds). Stops at the first
// hold the ledger has not expired yet. `done` gets the number of expired
// holds passed once durable (0 without calling Submit when nothing is due:
// then done is called at once).
void EmitExpiredHolds(ledger::Ledger& ledger, uint64_t now_ns,
                      std::function<void(Result<size_t>)> done, bool write_events = true);
// The same, waiting (tests, tools).
Result<size_t> EmitExpiredHoldsSync(ledger::Ledger& ledger, uint64_t now_ns,
                                    bool write_events = true);

// The hold-expiry scan of a switch WITHOUT the HTTP API (narae-switch with
// only --iso-listen; with the API the webhook dispatcher runs the scan and
// the API's observer indexes the holds). Start() installs the authorizer's
// PaymentObserver, which indexes every approved hold by its expiry (no
// events: the feed is the HTTP API's), and runs EmitExpiredHolds without
// events every `interval_ms` on its own thread, so that an expired stand-in
// hold gives its bank's exposure back in an ISO-only switch too.
// REQUIRES: `handler` is the authorizer (a HookedHandler), no request was
// handled yet, and ledger and handler outlive this object.
class HoldExpiryScan {
 public:
  static Result<std::unique_ptr<HoldExpiryScan>> Start(ledger::Ledger& ledger, IsoHandler& handler,
                                                       uint32_t interval_ms = 1000);
  ~HoldExpiryScan();
  HoldExpiryScan(const HoldExpiryScan&) = delete;
  HoldExpiryScan& operator=(const HoldExpiryScan&) = delete;
  // Stops the thread after the scan in progress (idempotent).
  void Stop();
  // Scans that passed expired holds, and those holds (tests, logs).
  uint64_t expired_holds() const;

 private:
  HoldExpiryScan(ledger::Ledger& ledger, uint32_t interval_ms);
  void Run();

  ledger::Ledger& ledger_;
  const uint32_t interval_ms_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;           // GUARDED_BY(mu_)
  uint64_t expired_holds_ = 0;  // GUARDED_BY(mu_)
  std::thread thread_;
};

// Visits aux keys under `prefix` whose suffix sorts after `after` (the last
// suffix seen; "" = from the start), in key order, without reading the ones
// before: the first (up to 16) characters of `after` must be lower-case hex
// and steer one bounded prefix scan per digit position (InvalidArgument
// otherwise). Stops when `fn` returns false.
Status ScanAuxAfter(ledger::Ledger& ledger, const std::string& prefix, std::string_view after,
                    const std::function<bool(std::string_view, std::string_view)>& fn);

}  // namespace narae::switching
