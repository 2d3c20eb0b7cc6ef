// The storefront HTTP/JSON API (docs/api.md, docs/api/openapi.yaml): JSON
// requests translated to ISO 8583 messages for the same authorization engine
// the ISO listener uses (switch/authorizer.*), so a payment made over one is
// visible and reversible over the other. Transport-free: HttpServer
// (switch/http_server.*) reads and writes the bytes.
//
// Every request but /healthz and /metrics is signed by its merchant (HMAC-
// SHA256, crypto::MerchantRequestVerifier). Every POST carries an
// Idempotency-Key; its record (fingerprint, status, body) is written in the
// same ledger transaction as the payment's effect (authorizer TxnHook), so a
// retry gets the original answer, also after a restart.
//
// Records (ledger aux), next to the authorizer's au/...:
//   ap/i/<merchant>/<32 hex SHA-256(Idempotency-Key)>  fingerprint, status, body
//                                                      (or "@" + the ap/e key of its event)
//   ap/l/<merchant>/<16 hex transfer ns><RRN>          list index and payment metadata (JSON)
//   ap/p/<RRN>                                         metadata of older payments (their
//                                                      list row "", under the group's ns)
//   ap/e/<merchant>/<16 hex sequence>                  event (JSON, api_events.hpp)
//   ap/h/..., ap/hc                                    hold expiry index (api_events.hpp)
//   ap/wh/, ap/wd/, ap/wc/                             webhooks (webhook.hpp)
//
// Thread safety: Handle() may be called from any number of threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ledger/status.hpp"
#include "switch/settlement.hpp"

namespace narae::ledger {
class Ledger;
}
namespace narae::crypto {
class KeyStore;
class SecretBytes;
}  // namespace narae::crypto

namespace narae::switching {

class IsoHandler;

// Limits of the API's inputs (named and checked).
inline constexpr size_t kIdempotencyKeyBytesMax = 255;
// kOrderRefBytesMax (64) is settlement.hpp's: an order reference is recorded
// in the payment's settlement record.
inline constexpr size_t kNonceBytesMax = 128;
inline constexpr uint32_t kListLimitMax = 100;
inline constexpr uint64_t kAmountMinorMax = 999'999'999'999;  // ISO 8583 field 4
inline constexpr int kSubmitRetriesMax = 4;                   // STAN collisions (94)
inline constexpr size_t kSimOtpDigits = 8;  // crypto::kPaymentOcraSuite (HOTP-SHA256-8)

struct ApiOptions {
  // |request timestamp - now| accepted, seconds; nonces are remembered twice as long.
  int64_t signature_skew_s = 300;
  // Nonces remembered per merchant at most (a full cache answers 503).
  size_t nonce_cache_max = 200000;
  // Per-merchant request rate: a token bucket of this many requests per
  // second and this burst; over it: 429 with Retry-After. 0 = no limit.
  uint32_t rate_per_s = 10000;
  uint32_t rate_burst = 20000;
  // The clock (ms since the epoch). Tests inject one; empty = system clock.
  std::function<int64_t()> clock_ms;
  // SIM OTP payments: the key store id of the SIM issuer master key (the
  // authorizer's imk_sim_key_id) and how many counters after the SIM's last
  // one a code may be for.
  std::string imk_sim_key_id = "imk-sim";
  uint32_t otp_counter_window = 100;
  // More Prometheus lines for /metrics (the webhook dispatcher's); may be empty.
  std::function<void(std::string*)> extra_metrics;
};

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as signed
  // Header lookup by lower-case name ("" when absent), a view of the request's
  // bytes. Valid until the request's `done` is called (HttpServer reads the
  // headers in place): a caller that keeps a value longer copies it.
  std::function<std::string_view(std::string_view)> header;
  std::string body;
};

struct HttpResponse {
  unsigned status = 200;
  std::string body;  // JSON (or text for /metrics)
  // Static text (a literal): a view, so that making an answer allocates
  // nothing for it (16 bytes would not fit a std::string's own buffer).
  std::string_view content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra (Retry-After, ...)
};

struct ApiDeps {
  ledger::Ledger* ledger = nullptr;
  crypto::KeyStore* keys = nullptr;
  IsoHandler* handler = nullptr;  // made by MakeAuthorizer*() (a HookedHandler)
};

class Api {
 public:
  // REQUIRES: EnsureApiTerminals() ran before the handler was made.
  static Result<std::unique_ptr<Api>> Create(const ApiDeps& deps, ApiOptions options);
  virtual ~Api() = default;
  // Calls `done` exactly once, possibly later and from another thread (after
  // the ledger group holding the request's effect is durable).
  virtual void Handle(HttpRequest request, std::function<void(HttpResponse)> done) = 0;
  // Prometheus text lines of the API's own counters (appended).
  virtual void AppendMetrics(std::string* out) = 0;
  // Requests whose ledger work has not called back yet.
  virtual uint64_t in_flight() const = 0;
};

// The 8-character id of a merchant's virtual terminal ("W" + 7 base-36
// characters of a hash of the merchant id): HTTP payments are its requests.
std::string VirtualTerminalId(std::string_view merchant_id);
// Creates every merchant's virtual terminal when missing (no PIN, no MAC).
// Must run before the authorizer loads the bank. FailedPrecondition when the
// id is taken by another merchant's terminal.
Status EnsureApiTerminals(ledger::Ledger& ledger, crypto::KeyStore& keys);

// ISO 4217: alphabetic <-> numeric for the currencies Narae knows.
uint16_t CurrencyNumeric(std::string_view alpha);  // 0 when unknown
std::string CurrencyAlpha(uint16_t numeric);       // "" when unknown

// The key of a SIM's payment OTPs (crypto::PaymentOtp): HKDF-SHA256 of the
// SIM key (crypto::DeriveSimKey) with info "narae sim otp v1", 32 bytes.
Result<crypto::SecretBytes> SimOtpKey(const crypto::SecretBytes& sim_key);

// Signs a request as a storefront does (tests and the load generator):
// returns the four headers x-narae-key-id, -timestamp, -nonce, -signature.
std::vector<std::pair<std::string, std::string>> SignedHeaders(
    std::string_view merchant_id, std::string_view secret_hex, std::string_view method,
    std::string_view target, std::string_view body, int64_t timestamp_s, std::string_view nonce);

}  // namespace narae::switching
