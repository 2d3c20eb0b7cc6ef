// The storefront API load mode (see bench_http.hpp and docs/api.md): keep-
// alive connections, each with one signed POST /v1/payments (a manual-
// capture card hold, a fresh Idempotency-Key) in flight at a time, for the
// demo merchants in turn. Prints authorizations/s and the latency
// percentiles; a 201 is a durable authorization.
//
// Boost 1.74 + GCC 12: <utility> must come before the Asio coroutine headers.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ledger/status.hpp"
#include "switch/api.hpp"
#include "tools/bench_http.hpp"

namespace narae::tools {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kConnectionsMax = 4096;
constexpr uint32_t kThreadsMax = 64;
constexpr size_t kLatencySamplesMax = 4'000'000;

struct BenchMerchant {
  std::string id;
  std::string secret_hex;
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

asio::awaitable<void> Connection(tcp::endpoint ep, uint32_t index, std::string run,
                                 const BenchMerchant& m, std::vector<const BenchCard*> cards,
                                 Clock::time_point end, Totals& totals) {
  auto ex = co_await asio::this_coro::executor;
  beast::tcp_stream stream(ex);
  boost::system::error_code ec;
  co_await stream.async_connect(ep, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    totals.errors++;
    co_return;
  }
  stream.socket().set_option(tcp::no_delay(true), ec);
  beast::flat_buffer buffer;
  std::vector<uint32_t> lat;
  for (uint64_t n = 0; Clock::now() < end; ++n) {
    const BenchCard& c = *cards[n % cards.size()];
    const std::string tag = run + "-" + std::to_string(index) + "-" + std::to_string(n);
    Json body = {{"amount", 1 + n % 97},
                 {"currency", switching::CurrencyAlpha(c.currency)},
                 {"order_ref", "bench-" + tag},
                 {"capture", "manual"},
                 {"card", {{"pan", c.pan}, {"expiry", c.expiry}, {"cvv2", c.cvv2}}}};
    http::request<http::string_body> req{http::verb::post, "/v1/payments", 11};
    req.body() = body.dump();
    req.set(http::field::host, "narae");
    req.set(http::field::content_type, "application/json");
    req.set("Idempotency-Key", "bench-" + tag);
    for (auto& [k, v] : switching::SignedHeaders(m.id, m.secret_hex, "POST", "/v1/payments",
                                                 req.body(), UnixSeconds(), "nonce-" + tag)) {
      req.set(k, v);
    }
    req.keep_alive(true);
    req.prepare_payload();
    const Clock::time_point t0 = Clock::now();
    stream.expires_after(std::chrono::seconds(30));
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    http::response<http::string_body> res;
    if (!ec) {
      co_await http::async_read(stream, buffer, res, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      totals.errors++;
      break;
    }
    lat.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
    switch (res.result_int()) {
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
      BenchMerchant bm{
          m.at("id").get<std::string>(), m.at("api_secret_hex").get<std::string>(), {}};
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
  asio::io_context ioc(static_cast<int>(a.threads));
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
    asio::co_spawn(asio::make_strand(ioc), Connection(ep, i, run, m, usable, end, totals),
                   asio::detached);
  }
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < a.threads; ++t) threads.emplace_back([&] { ioc.run(); });
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
