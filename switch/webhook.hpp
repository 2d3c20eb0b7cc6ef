// Signed webhooks (docs/api.md, "Webhooks"): every event of a merchant with a
// registered webhook is POSTed to its URL, at least once, from a durable
// outbox in the ledger.
//
// The outbox is the event feed itself: an event record (ap/e/<merchant>/<id>,
// switch/api_events.hpp) is written in the same ledger batch as the payment
// change it reports, so an event is queued for delivery exactly when its
// effect is durable, and no second record is written on the authorization
// path. What the dispatcher adds:
//   ap/wh/<merchant>              the webhook: URL, key id of its secret, first event
//   ap/wd/<merchant>/<event id>   the delivery's outcome (delivered or failed, JSON)
//   ap/wc/<merchant>              delivery cursor: every event up to it is resolved
// Pending deliveries are the merchant's events after the cursor without an
// ap/wd record; after a restart (or SIGKILL) they are found again and sent.
// An event delivered but not yet recorded when the process died is sent
// again: receivers dedupe on the event id (Narae-Event-Id).
//
// Each POST carries the event JSON and
//   Narae-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, t + "." + body)>
// The secret lives in the key store (id "whsec-<merchant>", type
// merchant_api_secret), never in the ledger.
//
// Thread safety: the free functions from any thread; the dispatcher's
// methods from any thread but its own.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "ledger/status.hpp"

namespace narae::switching {

inline constexpr std::string_view kAuxWebhookPrefix = "ap/wh/";
inline constexpr std::string_view kAuxDeliveryPrefix = "ap/wd/";
inline constexpr std::string_view kAuxDeliveryCursorPrefix = "ap/wc/";
inline constexpr size_t kWebhookUrlBytesMax = 2048;
inline constexpr size_t kWebhookSecretBytes = 32;

struct WebhookConfig {
  std::string merchant_id;
  std::string url;       // http://host[:port][/path]
  std::string key_id;    // key store id of the secret
  uint64_t from_id = 0;  // events with a larger id are delivered
};

// Registers (or replaces) a merchant's webhook. The secret: `secret_hex`
// (64 hex digits) when given, else a new random one; it becomes the active
// version of key "whsec-<merchant>". Deliveries start with the merchant's
// next event. Returns the secret (hex, lower case) for the merchant.
// Errors: NotFound (no such merchant), InvalidArgument (URL, secret).
Result<std::string> SetWebhook(ledger::Ledger& ledger, crypto::KeyStore& keys,
                               std::string_view merchant_id, std::string_view url,
                               std::string_view secret_hex = {});
// Stops deliveries to the merchant (events stay in the feed). NotFound when none.
Status RemoveWebhook(ledger::Ledger& ledger, std::string_view merchant_id);
Result<std::optional<WebhookConfig>> GetWebhook(ledger::Ledger& ledger,
                                                std::string_view merchant_id);
// "http://host[:port][/path]" -> parts; InvalidArgument otherwise.
Status ParseWebhookUrl(std::string_view url, std::string* host, std::string* port,
                       std::string* target);

// The Narae-Signature header value, and its check by a receiver: true when
// v1 is the HMAC of t + "." + body and |now_s - t| <= tolerance_s.
std::string WebhookSignature(const crypto::SecretBytes& secret, int64_t t_s, std::string_view body);
bool VerifyWebhookSignature(const crypto::SecretBytes& secret, std::string_view header,
                            std::string_view body, int64_t now_s, int64_t tolerance_s = 300);

struct WebhookOptions {
  // How often the outbox is polled for new events (ms); also the latency floor.
  uint32_t poll_interval_ms = 50;
  // POSTs in flight at once, all merchants.
  uint32_t concurrency_max = 16;
  // Deliveries held in memory (all merchants); the rest waits in the ledger.
  uint32_t queue_max = 4096;
  // Attempts per event; after the last failure the delivery is marked failed.
  uint32_t attempts_max = 8;
  // Retry n waits min(backoff_max_ms, backoff_initial_ms * 2^(n-1)), of
  // which the second half is random (jitter).
  uint32_t backoff_initial_ms = 1000;
  uint32_t backoff_max_ms = 300000;
  // One attempt (resolve, connect, write, read the answer) at most this long.
  uint32_t attempt_timeout_ms = 5000;
  // Response bytes read at most (the body is discarded).
  uint32_t response_bytes_max = 16384;
  // Webhook records are re-read this often (ms): a new registration starts.
  uint32_t config_reload_ms = 1000;
  // Holds that expired are turned into payment.expired events this often
  // (ms); 0 = never (api_events.hpp, EmitExpiredHolds).
  uint32_t expiry_scan_interval_ms = 1000;
  // The clock (ms since the epoch). Tests inject one; empty = system clock.
  std::function<int64_t()> clock_ms;
};

struct WebhookStats {
  uint64_t delivered = 0;  // 2xx, recorded
  uint64_t failed = 0;     // attempts_max reached, recorded
  uint64_t attempts = 0;
  uint64_t retries = 0;  // attempts that failed and were rescheduled
  uint64_t queued = 0;   // in memory, not resolved
  uint64_t in_flight = 0;
  uint64_t expired_events = 0;  // payment.expired events written
  uint64_t latency_ms_sum = 0;  // event creation -> delivered
};

// Runs on its own io_context with one thread: a dead or slow receiver costs
// that thread's sockets and timers, never an authorization I/O thread, and
// the ledger is only written in recording transactions of their own.
class WebhookDispatcher {
 public:
  static Result<std::unique_ptr<WebhookDispatcher>> Start(const WebhookOptions& options,
                                                          ledger::Ledger* ledger,
                                                          crypto::KeyStore* keys);
  virtual ~WebhookDispatcher() = default;
  // Stops timers, closes connections, joins the thread. Idempotent.
  virtual void Stop() = 0;
  virtual WebhookStats Stats() const = 0;
  // Prometheus lines (narae_webhook_*).
  virtual void AppendMetrics(std::string* out) const = 0;
};

Status ValidateWebhookOptions(const WebhookOptions& options);

}  // namespace narae::switching
