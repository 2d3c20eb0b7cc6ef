// Webhook delivery (see webhook.hpp and docs/api.md, "Webhooks").
//
// One io_context thread owns every piece of state (no locks): a poll timer
// loads merchants' new events after their cursors into a bounded queue,
// starts up to concurrency_max POSTs (one coroutine and one connection
// each), and records each outcome in a ledger transaction of its own (the
// ledger calls back on its acknowledging thread; the callback posts back here).
//
// Cost sketch per event: a prefix scan step and one aux read (is it already
// resolved?) to load it, one TCP connection and one HMAC-SHA256 to send it,
// one aux write (its outcome) and at times the cursor to record it: nothing
// on the authorization path.
#include "switch/webhook.hpp"

#include <utility>
// GCC 12 at -O2 (the ASan build) reports mismatched-new-delete on Asio's
// awaitable frame (its operator new/delete pair, inlined into a coroutine):
// a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
// clang-format off
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include <algorithm>
#include <atomic>
#include <chrono>
#include <list>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "switch/api_events.hpp"
#include "switch/bank.hpp"

namespace narae::switching {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

constexpr std::string_view kSecretKeyPrefix = "whsec-";
constexpr uint64_t kLatencyBucketsMs[] = {10, 50, 100, 250, 500, 1000, 5000, 30000, 300000};
constexpr size_t kLatencyBuckets = std::size(kLatencyBucketsMs);
constexpr uint32_t kRecordRetryMs = 200;  // a recording the ledger refused is tried again
constexpr size_t kMerchantsMax = 100000;

crypto::ByteView Bytes(std::string_view s) {
  return crypto::ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string LowerHex(crypto::ByteView b) {
  std::string s = crypto::ToHex(b);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

int64_t SystemMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string EncodeConfig(const WebhookConfig& c) {
  return json{{"v", 1}, {"url", c.url}, {"key_id", c.key_id}, {"from", Hex16(c.from_id)}}.dump();
}

std::optional<WebhookConfig> DecodeConfig(std::string_view merchant, std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  try {
    WebhookConfig c;
    c.merchant_id = std::string(merchant);
    c.url = j.at("url").get<std::string>();
    c.key_id = j.at("key_id").get<std::string>();
    c.from_id = std::stoull(j.at("from").get<std::string>(), nullptr, 16);
    return c;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<uint64_t> ParseHex16(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

}  // namespace

// ---- Registration -----------------------------------------------------------

Status ParseWebhookUrl(std::string_view url, std::string* host, std::string* port,
                       std::string* target) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() > kWebhookUrlBytesMax || !url.starts_with(kScheme)) {
    return Status::InvalidArgument("webhook URL must be http://host[:port][/path]");
  }
  for (char c : url) {
    if (c <= ' ' || c >= 127) return Status::InvalidArgument("webhook URL: bad character");
  }
  std::string_view rest = url.substr(kScheme.size());
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  *target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    return Status::InvalidArgument("webhook URL: bad host");
  }
  std::string_view h = authority, p = "80";
  if (authority.front() == '[') {  // [v6]:port
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return Status::InvalidArgument("webhook URL: bad host");
    h = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Status::InvalidArgument("webhook URL: bad host");
      p = after.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    h = authority.substr(0, colon);
    p = authority.substr(colon + 1);
  }
  if (h.empty() || p.empty() || p.size() > 5 ||
      !std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoul(std::string(p)) == 0 || std::stoul(std::string(p)) > 65535) {
    return Status::InvalidArgument("webhook URL: bad host or port");
  }
  *host = std::string(h);
  *port = std::string(p);
  return Status::Ok();
}

Result<std::string> SetWebhook(ledger::Ledger& ledger, crypto::KeyStore& keys,
                               std::string_view merchant_id, std::string_view url,
                               std::string_view secret_hex) {
  std::string host, port, target;
  NARAE_RETURN_IF_ERROR(ParseWebhookUrl(url, &host, &port, &target));
  if (merchant_id.empty() || !ledger.GetAux(MerchantKey(merchant_id))) {
    return Status::NotFound("no merchant " + std::string(merchant_id));
  }
  const std::string key_id = std::string(kSecretKeyPrefix) + std::string(merchant_id);
  if (!secret_hex.empty()) {
    Result<crypto::SecretBytes> s = crypto::SecretFromHex(secret_hex);
    if (!s.ok() || s->size() != kWebhookSecretBytes) {
      return Status::InvalidArgument("the webhook secret must be 64 hex digits");
    }
    Result<crypto::KeyInfo> k =
        keys.Import(key_id, crypto::KeyType::kMerchantApiSecret, crypto::KeyAlgorithm::kHmac, *s);
    if (!k.ok()) return k.status();
  } else {
    Result<crypto::KeyInfo> k = keys.Generate(key_id, crypto::KeyType::kMerchantApiSecret,
                                              crypto::KeyAlgorithm::kHmac, kWebhookSecretBytes);
    if (!k.ok()) return k.status();
  }
  Result<crypto::SecretBytes> secret = keys.Use(key_id, crypto::KeyType::kMerchantApiSecret);
  if (!secret.ok()) return secret.status();
  WebhookConfig c{std::string(merchant_id), std::string(url), key_id, 0};
  const std::string key = std::string(kAuxWebhookPrefix) + std::string(merchant_id);
  NARAE_RETURN_IF_ERROR(ledger.Execute([&](ledger::Txn& txn) {
    c.from_id = txn.now_ns();  // later events have larger ids (api_events.hpp)
    txn.PutAux(key, EncodeConfig(c));
  }));
  return LowerHex(*secret);
}

Status RemoveWebhook(ledger::Ledger& ledger, std::string_view merchant_id) {
  const std::string key = std::string(kAuxWebhookPrefix) + std::string(merchant_id);
  if (!ledger.GetAux(key)) return Status::NotFound("no webhook for " + std::string(merchant_id));
  return ledger.Execute([&](ledger::Txn& txn) { txn.PutAux(key, "{}"); });
}

Result<std::optional<WebhookConfig>> GetWebhook(ledger::Ledger& ledger,
                                                std::string_view merchant_id) {
  std::optional<std::string> v =
      ledger.GetAux(std::string(kAuxWebhookPrefix) + std::string(merchant_id));
  if (!v || *v == "{}") return std::optional<WebhookConfig>();
  std::optional<WebhookConfig> c = DecodeConfig(merchant_id, *v);
  if (!c) return Status::Corruption("webhook record of " + std::string(merchant_id));
  return c;
}

std::string WebhookSignature(const crypto::SecretBytes& secret, int64_t t_s,
                             std::string_view body) {
  const std::string t = std::to_string(t_s);
  std::string signed_text = t + "." + std::string(body);
  Result<crypto::Bytes> mac = crypto::Hmac(crypto::HashAlg::kSha256, secret, Bytes(signed_text));
  NARAE_CHECK(mac.ok());
  return "t=" + t + ",v1=" + LowerHex(*mac);
}

bool VerifyWebhookSignature(const crypto::SecretBytes& secret, std::string_view header,
                            std::string_view body, int64_t now_s, int64_t tolerance_s) {
  if (!header.starts_with("t=")) return false;
  const size_t comma = header.find(",v1=");
  if (comma == std::string_view::npos || comma < 3 || comma > 14) return false;
  std::string_view t = header.substr(2, comma - 2);
  if (!std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  const int64_t t_s = std::stoll(std::string(t));
  if (t_s > now_s + tolerance_s || t_s < now_s - tolerance_s) return false;
  const std::string expected = WebhookSignature(secret, t_s, body);
  std::string_view got = header;
  return crypto::ConstantTimeEqual(Bytes(expected), Bytes(got));
}

Status ValidateWebhookOptions(const WebhookOptions& o) {
  if (o.poll_interval_ms == 0 || o.poll_interval_ms > 60000 || o.concurrency_max == 0 ||
      o.concurrency_max > 1024 || o.queue_max == 0 || o.queue_max > 1'000'000 ||
      o.attempts_max == 0 || o.attempts_max > 100 || o.backoff_initial_ms == 0 ||
      o.backoff_max_ms < o.backoff_initial_ms || o.attempt_timeout_ms == 0 ||
      o.response_bytes_max == 0 || o.config_reload_ms == 0) {
    return Status::InvalidArgument("bad webhook options");
  }
  return Status::Ok();
}

// ---- The dispatcher ----------------------------------------------------------
namespace {

struct Delivery {
  std::string merchant;
  uint64_t event_id = 0;
  std::string body;  // the event JSON, as in the feed
  std::string type;
  int64_t created_ms = 0;
  uint32_t attempts = 0;
  int64_t next_ms = 0;
  enum class State : uint8_t {
    kWaiting,
    kInFlight,
    kRecording,
    kRecordAgain
  } state = State::kWaiting;
  unsigned last_status = 0;
  std::string last_error;
  bool delivered = false;
};

struct MerchantState {
  WebhookConfig config;
  std::shared_ptr<const crypto::SecretBytes> secret;
  uint64_t loaded = 0;            // events up to this id are queued or resolved
  std::set<uint64_t> unresolved;  // queued, outcome not durable yet
};

// What the ledger's callbacks reach: the io_context while it runs.
struct Shared {
  std::mutex mu;
  asio::io_context* io = nullptr;  // GUARDED_BY(mu); null once stopped
  void Post(std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu);
    if (io) asio::post(*io, std::move(fn));
  }
};

class DispatcherImpl final : public WebhookDispatcher {
 public:
  DispatcherImpl(const WebhookOptions& o, ledger::Ledger* ledger, crypto::KeyStore* keys)
      : options_(o),
        ledger_(ledger),
        keys_(keys),
        work_(asio::make_work_guard(io_)),
        timer_(io_),
        rng_(std::random_device{}()),
        shared_(std::make_shared<Shared>()) {
    shared_->io = &io_;
  }
  ~DispatcherImpl() override { Stop(); }

  void Begin() {
    asio::post(io_, [this] { Tick(); });
    thread_ = std::thread([this] { io_.run(); });
  }

  void Stop() override {
    std::call_once(stop_once_, [this] {
      asio::post(io_, [this] {
        stopping_ = true;
        timer_.cancel();
        for (beast::tcp_stream* s : streams_) s->cancel();
      });
      work_.reset();
      if (thread_.joinable()) thread_.join();
      std::lock_guard<std::mutex> lock(shared_->mu);
      shared_->io = nullptr;
    });
  }

  WebhookStats Stats() const override {
    WebhookStats s;
    s.delivered = delivered_.load();
    s.failed = failed_.load();
    s.attempts = attempts_.load();
    s.retries = retries_.load();
    s.queued = queued_.load();
    s.in_flight = in_flight_gauge_.load();
    s.expired_events = expired_events_.load();
    s.latency_ms_sum = latency_ms_sum_.load();
    return s;
  }

  void AppendMetrics(std::string* out) const override;

 private:
  int64_t NowMs() const { return options_.clock_ms ? options_.clock_ms() : SystemMs(); }
  void Tick();
  void ReloadConfigs();
  void Load();
  void Dispatch(int64_t now_ms);
  asio::awaitable<void> Attempt(Delivery* d);
  void OnAttempt(Delivery* d, unsigned status, std::string error);
  void Record(Delivery* d);
  void OnRecorded(Delivery* d, bool ok);
  uint32_t BackoffMs(uint32_t attempts);

  const WebhookOptions options_;
  ledger::Ledger* ledger_;
  crypto::KeyStore* keys_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::steady_timer timer_;
  std::thread thread_;
  std::once_flag stop_once_;
  std::mt19937_64 rng_;  // jitter (not a secret)
  std::shared_ptr<Shared> shared_;
  // io thread only:
  bool stopping_ = false;
  std::map<std::string, MerchantState> merchants_;
  std::list<std::unique_ptr<Delivery>> queue_;  // size <= queue_max
  uint32_t in_flight_ = 0;
  std::set<beast::tcp_stream*> streams_;
  int64_t next_reload_ms_ = 0;
  int64_t next_expiry_ms_ = 0;
  bool expiry_running_ = false;
  // Stats (read from any thread).
  std::atomic<uint64_t> delivered_{0}, failed_{0}, attempts_{0}, retries_{0}, queued_{0},
      in_flight_gauge_{0}, expired_events_{0}, latency_ms_sum_{0};
  std::array<std::atomic<uint64_t>, kLatencyBuckets + 1> latency_{};
};

void DispatcherImpl::Tick() {
  if (stopping_) return;
  const int64_t now = NowMs();
  if (now >= next_reload_ms_) {
    ReloadConfigs();
    next_reload_ms_ = now + options_.config_reload_ms;
  }
  Load();
  Dispatch(now);
  if (options_.expiry_scan_interval_ms != 0 && !expiry_running_ && now >= next_expiry_ms_) {
    expiry_running_ = true;
    next_expiry_ms_ = now + options_.expiry_scan_interval_ms;
    std::shared_ptr<Shared> shared = shared_;
    EmitExpiredHolds(*ledger_, static_cast<uint64_t>(now) * 1'000'000,
                     [this, shared](Result<size_t> r) {
                       const size_t n = r.ok() ? *r : 0;
                       shared->Post([this, n] {
                         expiry_running_ = false;
                         expired_events_.fetch_add(n, std::memory_order_relaxed);
                       });
                     });
  }
  timer_.expires_after(std::chrono::milliseconds(options_.poll_interval_ms));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Tick();
  });
}

void DispatcherImpl::ReloadConfigs() {
  std::map<std::string, WebhookConfig> found;
  const std::string prefix(kAuxWebhookPrefix);
  Status s = ledger_->ScanAux(prefix, [&](std::string_view k, std::string_view v) {
    std::string merchant(k.substr(prefix.size()));
    if (std::optional<WebhookConfig> c = DecodeConfig(merchant, v)) found[merchant] = *c;
    return found.size() < kMerchantsMax;
  });
  if (!s.ok()) return;  // the next reload tries again
  for (auto it = merchants_.begin(); it != merchants_.end();) {
    if (found.count(it->first) == 0) {
      // Removed: forget its waiting deliveries (in-flight ones finish).
      queue_.remove_if([&](const std::unique_ptr<Delivery>& d) {
        return d->merchant == it->first && d->state == Delivery::State::kWaiting;
      });
      it = merchants_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [merchant, config] : found) {
    auto [it, fresh] = merchants_.try_emplace(merchant);
    MerchantState& m = it->second;
    if (fresh || m.config.key_id != config.key_id || m.config.url != config.url) {
      Result<crypto::SecretBytes> secret =
          keys_->Use(config.key_id, crypto::KeyType::kMerchantApiSecret);
      m.secret =
          secret.ok() ? std::make_shared<const crypto::SecretBytes>(std::move(*secret)) : nullptr;
    }
    if (fresh) {
      uint64_t cursor = 0;
      if (std::optional<std::string> c =
              ledger_->GetAux(std::string(kAuxDeliveryCursorPrefix) + merchant)) {
        cursor = ParseHex16(*c).value_or(0);
      }
      m.loaded = std::max(cursor, config.from_id);
    } else if (config.from_id > m.config.from_id) {
      m.loaded = std::max(m.loaded, config.from_id);  // registered again: from now on
    }
    m.config = config;
  }
  queued_.store(queue_.size(), std::memory_order_relaxed);
}

void DispatcherImpl::Load() {
  for (auto& [merchant, m] : merchants_) {
    if (queue_.size() >= options_.queue_max) break;
    if (!m.secret) continue;
    const std::string prefix = std::string(kAuxEventPrefix) + merchant + "/";
    const std::string after = m.loaded == 0 ? std::string() : Hex16(m.loaded);
    Status s = ScanAuxAfter(*ledger_, prefix, after, [&](std::string_view k, std::string_view v) {
      std::optional<uint64_t> id = ParseHex16(k.substr(prefix.size()));
      if (!id) return true;
      m.loaded = *id;
      const std::string done_key =
          std::string(kAuxDeliveryPrefix) + merchant + "/" + std::string(k.substr(prefix.size()));
      if (ledger_->GetAux(done_key)) return true;  // resolved before a restart
      auto d = std::make_unique<Delivery>();
      d->merchant = merchant;
      d->event_id = *id;
      d->body = std::string(v);
      json ev = json::parse(v, nullptr, false);
      if (!ev.is_discarded() && ev.is_object()) {
        d->type = ev.value("type", "");
        d->created_ms = ev.value("created_at_ms", int64_t{0});
      }
      m.unresolved.insert(*id);
      queue_.push_back(std::move(d));
      return queue_.size() < options_.queue_max;
    });
    (void)s;  // a failed scan is retried on the next tick
  }
  queued_.store(queue_.size(), std::memory_order_relaxed);
}

void DispatcherImpl::Dispatch(int64_t now_ms) {
  for (auto& d : queue_) {
    if (in_flight_ >= options_.concurrency_max) break;
    if (d->next_ms > now_ms) continue;
    if (d->state == Delivery::State::kRecordAgain) {
      Record(d.get());
    } else if (d->state == Delivery::State::kWaiting) {
      d->state = Delivery::State::kInFlight;
      ++in_flight_;
      in_flight_gauge_.store(in_flight_, std::memory_order_relaxed);
      Delivery* raw = d.get();
      asio::co_spawn(
          io_, [this, raw]() { return Attempt(raw); }, [](std::exception_ptr) {});
    }
  }
}

asio::awaitable<void> DispatcherImpl::Attempt(Delivery* d) {
  unsigned status = 0;
  std::string error;
  auto it = merchants_.find(d->merchant);
  std::string host, port, target;
  if (it == merchants_.end() || !it->second.secret) {
    error = "webhook removed";
  } else if (Status s = ParseWebhookUrl(it->second.config.url, &host, &port, &target); !s.ok()) {
    error = s.message();
  } else {
    std::shared_ptr<const crypto::SecretBytes> secret = it->second.secret;
    beast::tcp_stream stream(io_);
    streams_.insert(&stream);
    boost::system::error_code ec;
    stream.expires_after(std::chrono::milliseconds(options_.attempt_timeout_ms));
    tcp::resolver resolver(io_);
    auto results =
        co_await resolver.async_resolve(host, port, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !stopping_) {
      co_await stream.async_connect(results, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec && !stopping_) {
      http::request<http::string_body> req{http::verb::post, target, 11};
      req.set(http::field::host, host + ":" + port);
      req.set(http::field::content_type, "application/json");
      req.set(http::field::user_agent, "narae-webhooks/1");
      req.set("Narae-Event-Id", "evt_" + Hex16(d->event_id));
      req.set("Narae-Delivery-Attempt", std::to_string(d->attempts + 1));
      req.set("Narae-Signature", WebhookSignature(*secret, NowMs() / 1000, d->body));
      req.set(http::field::connection, "close");
      req.body() = d->body;
      req.prepare_payload();
      co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec && !stopping_) {
      beast::flat_buffer buffer;
      http::response_parser<http::string_body> parser;
      parser.header_limit(8192);
      parser.body_limit(options_.response_bytes_max);
      co_await http::async_read(stream, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (!ec || ec == http::error::body_limit) status = parser.get().result_int();
    }
    if (status == 0) error = stopping_ ? "stopping" : ec.message();
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    streams_.erase(&stream);
  }
  OnAttempt(d, status, std::move(error));
}

uint32_t DispatcherImpl::BackoffMs(uint32_t attempts) {
  uint64_t base = options_.backoff_initial_ms;
  for (uint32_t i = 1; i < attempts && base < options_.backoff_max_ms; ++i) base *= 2;
  base = std::min<uint64_t>(base, options_.backoff_max_ms);
  std::uniform_int_distribution<uint64_t> jitter(0, base / 2);
  return static_cast<uint32_t>(base - base / 2 + jitter(rng_));
}

void DispatcherImpl::OnAttempt(Delivery* d, unsigned status, std::string error) {
  --in_flight_;
  in_flight_gauge_.store(in_flight_, std::memory_order_relaxed);
  attempts_.fetch_add(1, std::memory_order_relaxed);
  if (stopping_) return;
  d->attempts++;
  d->last_status = status;
  d->last_error = std::move(error);
  const bool ok = status >= 200 && status < 300;
  const int64_t now = NowMs();
  if (ok || d->attempts >= options_.attempts_max) {
    d->delivered = ok;
    Record(d);
  } else {
    retries_.fetch_add(1, std::memory_order_relaxed);
    d->next_ms = now + BackoffMs(d->attempts);
    d->state = Delivery::State::kWaiting;
  }
  Dispatch(now);
}

void DispatcherImpl::Record(Delivery* d) {
  d->state = Delivery::State::kRecording;
  auto it = merchants_.find(d->merchant);
  uint64_t cursor = 0;
  if (it != merchants_.end()) {
    // Every event before the first unresolved one other than d is resolved.
    cursor = it->second.loaded;
    for (uint64_t id : it->second.unresolved) {
      if (id != d->event_id) {
        cursor = id - 1;
        break;
      }
    }
  }
  json rec = {{"event_id", "evt_" + Hex16(d->event_id)},
              {"type", d->type},
              {"status", d->delivered ? "delivered" : "failed"},
              {"attempts", d->attempts},
              {"http_status", d->last_status},
              {"error", d->last_error.substr(0, 200)},
              {"event_created_at_ms", d->created_ms},
              {"resolved_at_ms", NowMs()}};
  const std::string key = std::string(kAuxDeliveryPrefix) + d->merchant + "/" + Hex16(d->event_id);
  const std::string cursor_key = std::string(kAuxDeliveryCursorPrefix) + d->merchant;
  std::shared_ptr<Shared> shared = shared_;
  Status s = ledger_->Submit(
      [key, value = rec.dump(), cursor_key, cursor](ledger::Txn& txn) {
        txn.PutAux(key, value);
        std::optional<std::string> old = txn.GetAux(cursor_key);
        if (!old || ParseHex16(*old).value_or(0) < cursor) txn.PutAux(cursor_key, Hex16(cursor));
      },
      [this, shared, d](Status st) {
        shared->Post([this, d, ok = st.ok()] { OnRecorded(d, ok); });
      });
  if (!s.ok()) {
    d->state = Delivery::State::kRecordAgain;
    d->next_ms = NowMs() + kRecordRetryMs;
  }
}

void DispatcherImpl::OnRecorded(Delivery* d, bool ok) {
  if (!ok) {
    d->state = Delivery::State::kRecordAgain;
    d->next_ms = NowMs() + kRecordRetryMs;
    return;
  }
  if (auto it = merchants_.find(d->merchant); it != merchants_.end()) {
    it->second.unresolved.erase(d->event_id);
  }
  if (d->delivered) {
    delivered_.fetch_add(1, std::memory_order_relaxed);
    const uint64_t ms = static_cast<uint64_t>(std::max<int64_t>(0, NowMs() - d->created_ms));
    latency_ms_sum_.fetch_add(ms, std::memory_order_relaxed);
    size_t b = 0;
    while (b < kLatencyBuckets && ms > kLatencyBucketsMs[b]) ++b;
    latency_[b].fetch_add(1, std::memory_order_relaxed);
  } else {
    failed_.fetch_add(1, std::memory_order_relaxed);
  }
  queue_.remove_if([d](const std::unique_ptr<Delivery>& x) { return x.get() == d; });
  queued_.store(queue_.size(), std::memory_order_relaxed);
}

void DispatcherImpl::AppendMetrics(std::string* out) const {
  std::string& o = *out;
  WebhookStats s = Stats();
  o += "# HELP narae_webhook_deliveries_total Webhook deliveries resolved, by outcome.\n";
  o += "# TYPE narae_webhook_deliveries_total counter\n";
  o +=
      "narae_webhook_deliveries_total{outcome=\"delivered\"} " + std::to_string(s.delivered) + "\n";
  o += "narae_webhook_deliveries_total{outcome=\"failed\"} " + std::to_string(s.failed) + "\n";
  o += "# TYPE narae_webhook_attempts_total counter\nnarae_webhook_attempts_total " +
       std::to_string(s.attempts) + "\n";
  o += "# TYPE narae_webhook_retries_total counter\nnarae_webhook_retries_total " +
       std::to_string(s.retries) + "\n";
  o += "# TYPE narae_webhook_queue gauge\nnarae_webhook_queue " + std::to_string(s.queued) + "\n";
  o += "# TYPE narae_webhook_in_flight gauge\nnarae_webhook_in_flight " +
       std::to_string(s.in_flight) + "\n";
  o += "# TYPE narae_events_expired_total counter\nnarae_events_expired_total " +
       std::to_string(s.expired_events) + "\n";
  o += "# HELP narae_webhook_delivery_latency_seconds Event creation to delivery.\n";
  o += "# TYPE narae_webhook_delivery_latency_seconds histogram\n";
  uint64_t cumulative = 0;
  for (size_t b = 0; b <= kLatencyBuckets; ++b) {
    cumulative += latency_[b].load();
    std::string le = b < kLatencyBuckets ? std::to_string(kLatencyBucketsMs[b] / 1000.0) : "+Inf";
    o += "narae_webhook_delivery_latency_seconds_bucket{le=\"" + le + "\"} " +
         std::to_string(cumulative) + "\n";
  }
  o += "narae_webhook_delivery_latency_seconds_sum " +
       std::to_string(static_cast<double>(s.latency_ms_sum) / 1000.0) + "\n";
  o += "narae_webhook_delivery_latency_seconds_count " + std::to_string(cumulative) + "\n";
}

}  // namespace

Result<std::unique_ptr<WebhookDispatcher>> WebhookDispatcher::Start(const WebhookOptions& options,
                                                                    ledger::Ledger* ledger,
                                                                    crypto::KeyStore* keys) {
  if (!ledger || !keys) return Status::InvalidArgument("webhooks need a ledger and keys");
  NARAE_RETURN_IF_ERROR(ValidateWebhookOptions(options));
  auto d = std::make_unique<DispatcherImpl>(options, ledger, keys);
  d->Begin();
  return std::unique_ptr<WebhookDispatcher>(std::move(d));
}

}  // namespace narae::switching
