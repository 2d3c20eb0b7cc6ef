// The storefront API load mode (see bench_http.hpp and docs/api.md): keep-
// alive connections, each with one signed POST /v1/payments (a manual-
// capture card hold, a fresh Idempotency-Key) in flight at a time, for the
// demo merchants in turn. Prints authorizations/s and the latency
// percentiles; a 201 is a durable authorization.
//
// The client writes its requests and reads the answers itself (status line
// and Content-Length only), keys each connection's HMAC once
// (crypto::MerchantRequestSigner) and runs one io_context per thread (no
// strand, no lock shared between threads per request): the load
// generator shares the machine's cores with the switch it measures, so its
// own cost per request is kept far below the server's.
//
// Boost 1.74 + GCC 12: <utility> must come before the Asio coroutine headers.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "crypto/crypto.hpp"
#include "ledger/status.hpp"
#include "switch/api.hpp"
#include "tools/bench_http.hpp"

namespace narae::tools {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kConnectionsMax = 4096;
constexpr uint32_t kThreadsMax = 64;
constexpr size_t kLatencySamplesMax = 4'000'000;

struct BenchMerchant {
  std::string id;
  crypto::SecretBytes secret;  // the API secret, parsed once
  std::vector<uint16_t> currencies;
};
struct BenchCard {
  std::string pan, expiry, cvv2;
  uint16_t currency = 0;
};

struct Totals {
  std::mutex mu;
  std::vector<uint32_t> latency_us;  // GUARDED_BY(mu)
  std::atomic<uint64_t> approved{0}, declined{0}, rate_limited{0}, errors{0};
};

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One HTTP/1.1 response read from `stream` into `buf` (bytes after it stay
// in `buf` for the next one): its status, or 0 when malformed or too large.
// The load generator's own parser: only the status line and Content-Length
// (the server never sends a chunked body), so its cost stays small next to
// the server's.
constexpr size_t kResponseBytesMax = 1 << 20;

int ParseStatus(std::string_view head) {
  // "HTTP/1.1 201 Created"
  if (head.size() < 12 || !head.starts_with("HTTP/1.")) return 0;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (head[i] < '0' || head[i] > '9') return 0;
    status = status * 10 + (head[i] - '0');
  }
  return status;
}

char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

// Content-Length of a response head (names compared case-insensitively);
// SIZE_MAX when absent or malformed.
size_t ContentLength(std::string_view head) {
  constexpr std::string_view kName = "\r\ncontent-length:";
  for (size_t i = 0; i + kName.size() <= head.size(); ++i) {
    size_t k = 0;
    while (k < kName.size() && AsciiLower(head[i + k]) == kName[k]) ++k;
    if (k != kName.size()) continue;
    size_t j = i + k;
    while (j < head.size() && head[j] == ' ') ++j;
    size_t n = 0, digits = 0;
    for (; j < head.size() && head[j] >= '0' && head[j] <= '9' && digits < 8; ++j, ++digits) {
      n = n * 10 + static_cast<size_t>(head[j] - '0');
    }
    return digits == 0 ? SIZE_MAX : n;
  }
  return SIZE_MAX;
}

asio::awaitable<int> ReadResponse(tcp::socket& socket, std::string& buf,
                                  boost::system::error_code& ec) {
  size_t head_end = std::string::npos;
  size_t scanned = 0;
  char chunk[8192];
  for (;;) {
    head_end = buf.find("\r\n\r\n", scanned);
    if (head_end != std::string::npos) break;
    scanned = buf.size() < 3 ? 0 : buf.size() - 3;
    if (buf.size() > kResponseBytesMax) co_return 0;
    size_t n = co_await socket.async_read_some(asio::buffer(chunk),
                                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return 0;
    buf.append(chunk, n);
  }
  const std::string_view head(buf.data(), head_end);
  const int status = ParseStatus(head);
  const size_t length = ContentLength(head);
  if (status == 0 || length > kResponseBytesMax) co_return 0;
  const size_t total = head_end + 4 + length;
  while (buf.size() < total) {
    size_t n = co_await socket.async_read_some(asio::buffer(chunk),
                                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return 0;
    buf.append(chunk, n);
  }
  buf.erase(0, total);
  co_return status;
}

// The signed request bytes of payment `n` on connection `index`.
std::string PaymentRequest(const BenchMerchant& m, crypto::MerchantRequestSigner& signer,
                           const BenchCard& c, const std::string& tag, uint64_t n) {
  std::string body;
  body.reserve(192);
  body += "{\"amount\":";
  body += std::to_string(1 + n % 97);
  body += ",\"capture\":\"manual\",\"card\":{\"cvv2\":\"";
  body += c.cvv2;
  body += "\",\"expiry\":\"";
  body += c.expiry;
  body += "\",\"pan\":\"";
  body += c.pan;
  body += "\"},\"currency\":\"";
  body += switching::CurrencyAlpha(c.currency);
  body += "\",\"order_ref\":\"bench-";
  body += tag;
  body += "\"}";
  const std::string nonce = "nonce-" + tag;
  const int64_t now_s = UnixSeconds();
  Result<std::string> sig = signer.Sign("POST", "/v1/payments", now_s, nonce, body);
  std::string req;
  req.reserve(body.size() + 512);
  req += "POST /v1/payments HTTP/1.1\r\nHost: narae\r\nContent-Type: application/json\r\n";
  req += "Idempotency-Key: bench-" + tag + "\r\n";
  req += "X-Narae-Key-Id: " + m.id + "\r\n";
  req += "X-Narae-Timestamp: " + std::to_string(now_s) + "\r\n";
  req += "X-Narae-Nonce: " + nonce + "\r\n";
  req += "X-Narae-Signature: " + (sig.ok() ? *sig : std::string()) + "\r\n";
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  req += body;
  return req;
}

asio::awaitable<void> Connection(tcp::endpoint ep, uint32_t index, std::string run,
                                 const BenchMerchant& m, std::vector<const BenchCard*> cards,
                                 Clock::time_point end, Totals& totals) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket socket(ex);
  boost::system::error_code ec;
  co_await socket.async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    totals.errors++;
    co_return;
  }
  socket.set_option(tcp::no_delay(true), ec);
  Result<std::unique_ptr<crypto::MerchantRequestSigner>> signer =
      crypto::MerchantRequestSigner::Create(m.secret);
  if (!signer.ok()) {
    totals.errors++;
    co_return;
  }
  std::string buf;
  std::vector<uint32_t> lat;
  const std::string prefix = run + "-" + std::to_string(index) + "-";
  for (uint64_t n = 0; Clock::now() < end; ++n) {
    const BenchCard& c = *cards[n % cards.size()];
    const std::string req = PaymentRequest(m, **signer, c, prefix + std::to_string(n), n);
    const Clock::time_point t0 = Clock::now();
    co_await asio::async_write(socket, asio::buffer(req),
                               asio::redirect_error(asio::use_awaitable, ec));
    int status = 0;
    if (!ec) status = co_await ReadResponse(socket, buf, ec);
    if (ec || status == 0) {
      totals.errors++;
      break;
    }
    lat.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
    switch (status) {
      case 201:
        totals.approved++;
        break;
      case 402:
        totals.declined++;
        break;
      case 429:
        totals.rate_limited++;
        break;
      default:
        totals.errors++;
    }
  }
  std::lock_guard<std::mutex> lock(totals.mu);
  size_t room = kLatencySamplesMax - std::min(kLatencySamplesMax, totals.latency_us.size());
  totals.latency_us.insert(totals.latency_us.end(), lat.begin(),
                           lat.begin() + static_cast<std::ptrdiff_t>(std::min(room, lat.size())));
}

uint64_t Percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[i];
}

Status Load(const std::string& path, std::vector<BenchMerchant>* merchants,
            std::vector<BenchCard>* cards) {
  std::ifstream in(path);
  if (!in) return Status::IOError("cannot read " + path);
  Json doc = Json::parse(in, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return Status::InvalidArgument(path + ": not JSON");
  try {
    for (const Json& m : doc.at("merchants")) {
      Result<crypto::SecretBytes> secret =
          crypto::SecretFromHex(m.at("api_secret_hex").get<std::string>());
      if (!secret.ok()) return Status::InvalidArgument(path + ": bad api_secret_hex");
      BenchMerchant bm{m.at("id").get<std::string>(), std::move(*secret), {}};
      for (const Json& c : m.at("currencies")) bm.currencies.push_back(c.get<uint16_t>());
      merchants->push_back(std::move(bm));
    }
    for (const Json& k : doc.at("cards")) {
      cards->push_back({k.at("pan").get<std::string>(), k.at("expiry").get<std::string>(),
                        k.at("cvv2").get<std::string>(), k.at("currency").get<uint16_t>()});
    }
  } catch (const Json::exception& e) {
    return Status::InvalidArgument(path + ": " + e.what());
  }
  if (merchants->empty() || cards->empty()) {
    return Status::InvalidArgument(path + ": needs merchants and cards");
  }
  return Status::Ok();
}

}  // namespace

int RunBenchHttp(const BenchHttpArgs& a) {
  if (a.connections == 0 || a.connections > kConnectionsMax || a.threads == 0 ||
      a.threads > kThreadsMax || a.duration_s == 0) {
    std::fprintf(stderr, "bench switch --http: connections 1..4096, threads 1..64, duration > 0\n");
    return 2;
  }
  std::vector<BenchMerchant> merchants;
  std::vector<BenchCard> cards;
  if (Status s = Load(a.credentials, &merchants, &cards); !s.ok()) {
    std::fprintf(stderr, "bench switch --http: %s\n", s.ToString().c_str());
    return 2;
  }
  const size_t colon = a.http.rfind(':');
  boost::system::error_code ec;
  asio::ip::address addr =
      asio::ip::make_address(colon == std::string::npos               ? ""
                             : a.http.substr(0, colon) == "localhost" ? "127.0.0.1"
                                                                      : a.http.substr(0, colon),
                             ec);
  if (colon == std::string::npos || ec) {
    std::fprintf(stderr, "bench switch --http: HOST:PORT with an IP address\n");
    return 2;
  }
  tcp::endpoint ep(addr, static_cast<uint16_t>(std::atoi(a.http.c_str() + colon + 1)));
  // One io_context per thread, each run by its thread alone.
  std::vector<std::unique_ptr<asio::io_context>> iocs;
  for (uint32_t t = 0; t < a.threads; ++t) iocs.push_back(std::make_unique<asio::io_context>(1));
  Totals totals;
  const std::string run = std::to_string(UnixSeconds());
  const Clock::time_point start = Clock::now();
  const Clock::time_point end = start + std::chrono::seconds(a.duration_s);
  for (uint32_t i = 0; i < a.connections; ++i) {
    const BenchMerchant& m = merchants[i % merchants.size()];
    std::vector<const BenchCard*> usable;
    for (const BenchCard& c : cards) {
      if (std::find(m.currencies.begin(), m.currencies.end(), c.currency) != m.currencies.end() &&
          !switching::CurrencyAlpha(c.currency).empty()) {
        usable.push_back(&c);
      }
    }
    if (usable.empty()) continue;
    std::rotate(usable.begin(), usable.begin() + static_cast<std::ptrdiff_t>(i % usable.size()),
                usable.end());
    asio::co_spawn(*iocs[i % iocs.size()], Connection(ep, i, run, m, usable, end, totals),
                   asio::detached);
  }
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < a.threads; ++t) {
    threads.emplace_back([&iocs, t] { iocs[t]->run(); });
  }
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();  // not money
  std::sort(totals.latency_us.begin(), totals.latency_us.end());
  const uint64_t answered = totals.approved + totals.declined + totals.rate_limited;
  Json j = {{"bench", "switch_http"},
            {"connections", a.connections},
            {"threads", a.threads},
            {"seconds", seconds},
            {"approved", totals.approved.load()},
            {"declined", totals.declined.load()},
            {"rate_limited", totals.rate_limited.load()},
            {"errors", totals.errors.load()},
            {"auth_per_s", static_cast<uint64_t>(static_cast<double>(totals.approved) / seconds)},
            {"requests_per_s", static_cast<uint64_t>(static_cast<double>(answered) / seconds)},
            {"p50_us", Percentile(totals.latency_us, 0.50)},
            {"p99_us", Percentile(totals.latency_us, 0.99)},
            {"p999_us", Percentile(totals.latency_us, 0.999)},
            {"max_us", totals.latency_us.empty() ? 0 : totals.latency_us.back()}};
  if (!a.json) {
    std::printf(
        "HTTP API %s: %u connections, %.1f s: %llu authorized (%llu/s), %llu declined, %llu "
        "rate-limited, %llu errors; latency p50 %.2f ms p99 %.2f ms p99.9 %.2f ms\n",
        a.http.c_str(), a.connections, seconds,
        static_cast<unsigned long long>(totals.approved.load()),
        static_cast<unsigned long long>(j["auth_per_s"].get<uint64_t>()),
        static_cast<unsigned long long>(totals.declined.load()),
        static_cast<unsigned long long>(totals.rate_limited.load()),
        static_cast<unsigned long long>(totals.errors.load()),
        static_cast<double>(j["p50_us"].get<uint64_t>()) / 1000.0,
        static_cast<double>(j["p99_us"].get<uint64_t>()) / 1000.0,
        static_cast<double>(j["p999_us"].get<uint64_t>()) / 1000.0);
  }
  std::printf("%s\n", j.dump().c_str());
  return totals.errors == 0 && totals.approved > 0 ? 0 : 1;
}

}  // namespace narae::tools
