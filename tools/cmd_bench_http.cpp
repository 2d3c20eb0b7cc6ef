// The storefront API load mode (see bench_http.hpp and docs/api.md): keep-
// alive connections, each with one signed POST /v1/payments (a manual-
// capture card hold, a fresh Idempotency-Key and nonce) in flight at a time,
// for the demo merchants in turn. Prints authorizations/s and the latency
// percentiles; a 201 is a durable authorization.
//
// The load generator shares the machine's cores with the switch it
// measures, so its own cost per request is kept far below the server's:
// - each thread runs its own epoll loop over its connections (level-
//   triggered, EPOLLIN registered once): per request one send() and one
//   recv() when the answer is there, no speculative read that finds nothing
//   (Asio 1.74 tried one per read: ~1 `EAGAIN` recvfrom per request) and no
//   handler, coroutine frame or reactor lock per operation;
// - each connection keys its HMAC once (crypto::MerchantRequestSigner) and
//   builds its request bytes into buffers it reuses (no allocation but the
//   signer's hex string);
// - the answer is parsed in place: status line, Content-Length, the body
//   read whole; a 201 must carry `"status":"authorized"` and the request's
//   own order_ref, anything else malformed is an error.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
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

using Json = nlohmann::json;
using namespace std::string_view_literals;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kConnectionsMax = 4096;
constexpr uint32_t kThreadsMax = 64;
constexpr size_t kLatencySamplesMax = 4'000'000;
constexpr size_t kResponseBytesMax = 1 << 20;  // one answer, head and body
constexpr size_t kResponseBufferBytes = 16 * 1024;
constexpr int kEventsMax = 256;         // epoll events taken per wait
constexpr time_t kConnectTimeoutS = 5;  // per connection
// After the run's end, how long the answers still in flight are awaited
// before they count as errors.
constexpr auto kDrainMax = std::chrono::seconds(30);

struct BenchMerchant {
  std::string id;
  crypto::SecretBytes secret;  // the API secret, parsed once
  std::vector<uint16_t> currencies;
};
struct BenchCard {
  std::string pan, expiry, cvv2;
  uint16_t currency = 0;
  std::string currency_alpha;  // "KPW"; empty when unknown
  // A payment's JSON body from after its amount up to its order_ref's value:
  // `,"capture":"manual","card":{...},"currency":"KPW","order_ref":"`.
  std::string body_middle;
};

// A thread's figures, summed into the run's once the thread is done.
struct Counts {
  uint64_t approved = 0, declined = 0, rate_limited = 0, errors = 0;
};

struct Totals {
  std::mutex mu;
  std::vector<uint32_t> latency_us;  // GUARDED_BY(mu)
  Counts counts;                     // GUARDED_BY(mu)
};

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void AppendUint(std::string& out, uint64_t v) {
  char digits[24];
  const std::to_chars_result r = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, static_cast<size_t>(r.ptr - digits));
}

void AppendInt(std::string& out, int64_t v) {
  char digits[24];
  const std::to_chars_result r = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, static_cast<size_t>(r.ptr - digits));
}

// A fixed string looked for in answers: a Boyer-Moore-Horspool search skips
// most bytes (string_view::find stops at each first character, the JSON body
// is full of quotes, and glibc's memmem builds its table on every call).
class Needle {
 public:
  explicit Needle(std::string_view s) : s_(s), searcher_(s_.begin(), s_.end()) {}
  // Its position in `hay`, npos when absent.
  size_t In(std::string_view hay) const {
    const auto at = searcher_(hay.begin(), hay.end()).first;
    return at == hay.end() ? std::string_view::npos : static_cast<size_t>(at - hay.begin());
  }
  size_t size() const { return s_.size(); }

 private:
  std::string_view s_;
  std::boyer_moore_horspool_searcher<std::string_view::const_iterator> searcher_;
};

const Needle kAuthorized(R"("status":"authorized")"sv);
const Needle kOrderRef(R"("order_ref":")"sv);

char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != lower[i]) return false;
  }
  return true;
}

// "HTTP/1.1 201 Created": the status, 0 when malformed.
int ParseStatus(std::string_view head) {
  if (head.size() < 12 || !head.starts_with("HTTP/1.") || head[8] != ' ') return 0;
  if (head.size() > 12 && head[12] != ' ' && head[12] != '\r') return 0;
  int status = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (head[i] < '0' || head[i] > '9') return 0;
    status = status * 10 + (head[i] - '0');
  }
  return status >= 100 ? status : 0;
}

// The Content-Length of header `line` (without its CRLF) into `length`:
// false when the line is malformed, a second Content-Length, a Transfer-
// Encoding (the server never sends a chunked answer) or a length above
// kResponseBytesMax. Names compare case-insensitively.
bool ReadHeader(std::string_view line, size_t* length) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  const std::string_view name = line.substr(0, colon);
  if (EqualsIgnoreCase(name, "transfer-encoding")) return false;
  if (!EqualsIgnoreCase(name, "content-length")) return true;
  if (*length != SIZE_MAX) return false;
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  size_t n = 0;
  const std::from_chars_result r = std::from_chars(value.data(), value.data() + value.size(), n);
  if (value.empty() || r.ec != std::errc() || r.ptr != value.data() + value.size() ||
      n > kResponseBytesMax) {
    return false;
  }
  *length = n;
  return true;
}

}  // namespace

// One parsed answer (declared in bench_http.hpp for the tests): its head
// read line by line (CRLF each, the status line first, an empty line last),
// then its body.
HttpAnswer ParseHttpAnswer(std::string_view bytes, std::string_view order_ref) {
  constexpr size_t kHeadLinesMax = 256;
  HttpAnswer a;
  const char* const data = bytes.data();
  const char* const end = data + bytes.size();
  const char* line = data;
  size_t length = SIZE_MAX;
  size_t body_at = 0;
  for (size_t lines = 0; body_at == 0; ++lines) {
    const char* lf = static_cast<const char*>(std::memchr(line, '\n', end - line));
    if (lf == nullptr) {
      a.state = bytes.size() > kResponseBytesMax ? HttpAnswer::State::kMalformed
                                                 : HttpAnswer::State::kIncomplete;
      return a;
    }
    if (lines == kHeadLinesMax || lf == line || lf[-1] != '\r') {
      a.state = HttpAnswer::State::kMalformed;
      return a;
    }
    const std::string_view text(line, static_cast<size_t>(lf - 1 - line));
    bool ok = true;
    if (lines == 0) {
      a.status = ParseStatus(text);
      ok = a.status != 0;
    } else if (text.empty()) {
      body_at = static_cast<size_t>(lf + 1 - data);
      ok = length != SIZE_MAX;
    } else {
      ok = ReadHeader(text, &length);
    }
    if (!ok) {
      a.state = HttpAnswer::State::kMalformed;
      return a;
    }
    line = lf + 1;
  }
  a.size = body_at + length;
  if (bytes.size() < a.size) {
    a.state = HttpAnswer::State::kIncomplete;
    return a;
  }
  // One request in flight per connection: bytes after its answer were never
  // asked for.
  const std::string_view body = bytes.substr(body_at, length);
  bool ok = bytes.size() == a.size && body.size() >= 2 && body.front() == '{' && body.back() == '}';
  if (ok && a.status == 201) {
    // A durable authorization of this very request.
    ok = kAuthorized.In(body) != std::string_view::npos;
    if (ok && !order_ref.empty()) {
      const size_t at = kOrderRef.In(body);
      const size_t value = at + kOrderRef.size();
      ok = at != std::string_view::npos && body.substr(value).starts_with(order_ref) &&
           body.substr(value + order_ref.size()).starts_with('"');
    }
  }
  a.state = ok ? HttpAnswer::State::kComplete : HttpAnswer::State::kMalformed;
  return a;
}

namespace {

// One keep-alive connection and its buffers, reused for every request.
struct Connection {
  int fd = -1;
  const BenchMerchant* merchant = nullptr;
  std::vector<const BenchCard*> cards;
  std::unique_ptr<crypto::MerchantRequestSigner> signer;
  // The request line and the headers that do not change, up to
  // "Idempotency-Key: ".
  std::string head_prefix;
  std::string order_ref_prefix;  // "bench-RUN-INDEX-": with the request number, its TAG
  std::string order_ref;         // "bench-TAG" of the request in flight
  std::string body, request;
  size_t sent = 0;       // bytes of `request` written
  std::vector<char> in;  // the answer's bytes so far
  size_t in_size = 0;
  uint64_t n = 0;           // requests built
  Clock::time_point t0;     // when the request in flight was sent
  uint32_t index = 0;       // in its loop's connections (the epoll tag)
  bool want_write = false;  // EPOLLOUT registered: the request did not fit
};

// Builds the signed request bytes of payment `c.n` into `c.request`; false
// when signing failed.
bool BuildRequest(Connection& c) {
  const BenchCard& card = *c.cards[c.n % c.cards.size()];
  // "bench-TAG": the order_ref and the Idempotency-Key; the nonce is
  // "nonce-TAG".
  c.order_ref.assign(c.order_ref_prefix);
  AppendUint(c.order_ref, c.n);
  const std::string_view tag = std::string_view(c.order_ref).substr(6);
  std::string& body = c.body;
  body.assign(R"({"amount":)"sv);
  AppendUint(body, 1 + c.n % 97);
  body.append(card.body_middle);
  body.append(c.order_ref);
  body.append(R"("})"sv);
  const int64_t now_s = UnixSeconds();
  std::string& req = c.request;
  req.assign(c.head_prefix);
  req.append(c.order_ref);
  req.append("\r\nX-Narae-Timestamp: "sv);
  AppendInt(req, now_s);
  req.append("\r\nX-Narae-Nonce: "sv);
  const size_t nonce_at = req.size();
  req.append("nonce-"sv);
  req.append(tag);
  const size_t nonce_size = req.size() - nonce_at;
  Result<std::string> sig = c.signer->Sign(
      "POST", "/v1/payments", now_s, std::string_view(req).substr(nonce_at, nonce_size), body);
  if (!sig.ok()) return false;
  req.append("\r\nX-Narae-Signature: "sv);
  req.append(*sig);
  req.append("\r\nContent-Length: "sv);
  AppendUint(req, body.size());
  req.append("\r\n\r\n"sv);
  req.append(body);
  c.sent = 0;
  c.in_size = 0;
  ++c.n;
  return true;
}

// One thread's connections in one epoll loop: each sends its next request
// when the answer to the last one is in, until `end`; then the answers in
// flight are awaited (at most kDrainMax).
class Loop {
 public:
  Loop(std::vector<Connection*> conns, const sockaddr_storage& addr, socklen_t addr_size,
       Clock::time_point end)
      : conns_(std::move(conns)), addr_(addr), addr_size_(addr_size), end_(end) {}
  ~Loop() {
    for (Connection* c : conns_) Close(*c);
    if (epoll_ >= 0) ::close(epoll_);
  }

  void Run(Totals& totals) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) {
      counts_.errors += conns_.size();
      Publish(totals);
      return;
    }
    for (uint32_t i = 0; i < conns_.size(); ++i) {
      if (Open(*conns_[i], i)) Send(*conns_[i], Clock::now(), true);
    }
    epoll_event events[kEventsMax];
    const Clock::time_point give_up = end_ + kDrainMax;
    while (open_ > 0) {
      const Clock::time_point now = Clock::now();
      if (now >= give_up) {
        counts_.errors += open_;  // unanswered
        break;
      }
      const int n = ::epoll_wait(epoll_, events, kEventsMax, 1000);
      if (n < 0 && errno != EINTR) {
        counts_.errors += open_;
        break;
      }
      for (int e = 0; e < n; ++e) {
        Connection& c = *conns_[events[e].data.u32];
        if (c.fd < 0) continue;
        if ((events[e].events & EPOLLOUT) && c.sent < c.request.size()) {
          Send(c, Clock::now(), false);
          continue;
        }
        if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) Receive(c);
      }
    }
    Publish(totals);
  }

 private:
  bool Open(Connection& c, uint32_t index) {
    c.index = index;
    c.fd = ::socket(addr_.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      counts_.errors++;
      return false;
    }
    ++open_;
    // A bounded connect: Linux applies the send timeout to a blocking
    // connect (an unreachable host would otherwise hold the thread for the
    // kernel's SYN retries, ~2 minutes, per connection).
    const timeval connect_timeout{kConnectTimeoutS, 0};
    ::setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &connect_timeout, sizeof connect_timeout);
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), addr_size_) != 0) {
      Fail(c);
      return false;
    }
    const int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = index;
    if (::fcntl(c.fd, F_SETFL, O_NONBLOCK) != 0 || ::epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev)) {
      Fail(c);
      return false;
    }
    return true;
  }

  // Writes the rest of `c.request`, a new one first when `next` (the last
  // was answered); waits for EPOLLOUT when the socket's buffer is full.
  void Send(Connection& c, Clock::time_point now, bool next) {
    if (next) {
      if (!BuildRequest(c)) {
        Fail(c);
        return;
      }
      c.t0 = now;
    }
    const ssize_t w =
        ::send(c.fd, c.request.data() + c.sent, c.request.size() - c.sent, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
      Fail(c);
      return;
    }
    if (w > 0) c.sent += static_cast<size_t>(w);
    WantWrite(c, c.sent < c.request.size());
  }

  void WantWrite(Connection& c, bool want) {
    if (want == c.want_write) return;
    epoll_event ev{};
    ev.events = want ? EPOLLIN | EPOLLOUT : EPOLLIN;
    ev.data.u32 = c.index;
    if (::epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev) != 0) {
      Fail(c);
      return;
    }
    c.want_write = want;
  }

  void Receive(Connection& c) {
    if (c.in.size() - c.in_size < 4096) {
      if (c.in.size() >= kResponseBytesMax + 4096) {
        Fail(c);
        return;
      }
      c.in.resize(std::max(c.in.size() * 2, kResponseBufferBytes));
    }
    const ssize_t r = ::recv(c.fd, c.in.data() + c.in_size, c.in.size() - c.in_size, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0 || c.sent < c.request.size()) {  // closed, failed, or an answer not asked for
      Fail(c);
      return;
    }
    c.in_size += static_cast<size_t>(r);
    const HttpAnswer a = ParseHttpAnswer(std::string_view(c.in.data(), c.in_size), c.order_ref);
    if (a.state == HttpAnswer::State::kIncomplete) return;
    if (a.state == HttpAnswer::State::kMalformed) {
      Fail(c);
      return;
    }
    const Clock::time_point now = Clock::now();
    if (latency_us_.size() < kLatencySamplesMax) {  // the run's percentiles use this many at most
      latency_us_.push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - c.t0).count()));
    }
    switch (a.status) {
      case 201:
        counts_.approved++;
        break;
      case 402:
        counts_.declined++;
        break;
      case 429:
        counts_.rate_limited++;
        break;
      default:
        counts_.errors++;
    }
    if (now >= end_) {
      Close(c);
      return;
    }
    Send(c, now, true);
  }

  void Fail(Connection& c) {
    counts_.errors++;
    Close(c);
  }

  void Close(Connection& c) {
    if (c.fd < 0) return;
    ::close(c.fd);  // also leaves the epoll set
    c.fd = -1;
    --open_;
  }

  void Publish(Totals& totals) {
    std::lock_guard<std::mutex> lock(totals.mu);
    totals.counts.approved += counts_.approved;
    totals.counts.declined += counts_.declined;
    totals.counts.rate_limited += counts_.rate_limited;
    totals.counts.errors += counts_.errors;
    const size_t room = kLatencySamplesMax - std::min(kLatencySamplesMax, totals.latency_us.size());
    totals.latency_us.insert(
        totals.latency_us.end(), latency_us_.begin(),
        latency_us_.begin() + static_cast<std::ptrdiff_t>(std::min(room, latency_us_.size())));
  }

  std::vector<Connection*> conns_;
  sockaddr_storage addr_;
  socklen_t addr_size_;
  Clock::time_point end_;
  int epoll_ = -1;
  size_t open_ = 0;  // connections with a socket
  Counts counts_;
  std::vector<uint32_t> latency_us_;
};

uint64_t Percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[i];
}

// "HOST:PORT" with an IPv4 or IPv6 address (or localhost).
bool ParseAddress(const std::string& hostport, sockaddr_storage* addr, socklen_t* size) {
  const size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = hostport.substr(0, colon);
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  uint16_t port = 0;
  const char* p = hostport.data() + colon + 1;
  const char* e = hostport.data() + hostport.size();
  const std::from_chars_result r = std::from_chars(p, e, port);
  if (r.ec != std::errc() || r.ptr != e || port == 0) return false;
  auto* v4 = reinterpret_cast<sockaddr_in*>(addr);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *size = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(addr);
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *size = sizeof(sockaddr_in6);
    return true;
  }
  return false;
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
      const uint16_t currency = k.at("currency").get<uint16_t>();
      cards->push_back({k.at("pan").get<std::string>(),
                        k.at("expiry").get<std::string>(),
                        k.at("cvv2").get<std::string>(),
                        currency,
                        switching::CurrencyAlpha(currency),
                        {}});
      BenchCard& c = cards->back();
      c.body_middle = R"(,"capture":"manual","card":{"cvv2":")" + c.cvv2 + R"(","expiry":")" +
                      c.expiry + R"(","pan":")" + c.pan + R"("},"currency":")" + c.currency_alpha +
                      R"(","order_ref":")";
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
  sockaddr_storage addr{};
  socklen_t addr_size = 0;
  if (!ParseAddress(a.http, &addr, &addr_size)) {
    std::fprintf(stderr, "bench switch --http: HOST:PORT with an IP address\n");
    return 2;
  }
  Totals totals;
  const std::string run = std::to_string(UnixSeconds());
  std::vector<Connection> conns(a.connections);
  std::vector<std::vector<Connection*>> by_thread(a.threads);
  for (uint32_t i = 0; i < a.connections; ++i) {
    Connection& c = conns[i];
    const BenchMerchant& m = merchants[i % merchants.size()];
    for (const BenchCard& k : cards) {
      if (std::find(m.currencies.begin(), m.currencies.end(), k.currency) != m.currencies.end() &&
          !k.currency_alpha.empty()) {
        c.cards.push_back(&k);
      }
    }
    if (c.cards.empty()) continue;
    std::rotate(c.cards.begin(), c.cards.begin() + static_cast<std::ptrdiff_t>(i % c.cards.size()),
                c.cards.end());
    Result<std::unique_ptr<crypto::MerchantRequestSigner>> signer =
        crypto::MerchantRequestSigner::Create(m.secret);
    if (!signer.ok()) {
      totals.counts.errors++;
      continue;
    }
    c.merchant = &m;
    c.signer = std::move(*signer);
    c.order_ref_prefix = "bench-" + run + "-" + std::to_string(i) + "-";
    c.head_prefix =
        "POST /v1/payments HTTP/1.1\r\nHost: narae\r\nContent-Type: application/json\r\n"
        "X-Narae-Key-Id: " +
        m.id + "\r\nIdempotency-Key: ";
    by_thread[i % a.threads].push_back(&c);
  }
  const Clock::time_point start = Clock::now();
  const Clock::time_point end = start + std::chrono::seconds(a.duration_s);
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < a.threads; ++t) {
    threads.emplace_back([&, t] { Loop(by_thread[t], addr, addr_size, end).Run(totals); });
  }
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();  // not money
  std::sort(totals.latency_us.begin(), totals.latency_us.end());
  const Counts& n = totals.counts;
  const uint64_t answered = n.approved + n.declined + n.rate_limited;
  Json j = {{"bench", "switch_http"},
            {"connections", a.connections},
            {"threads", a.threads},
            {"seconds", seconds},
            {"approved", totals.counts.approved},
            {"declined", totals.counts.declined},
            {"rate_limited", totals.counts.rate_limited},
            {"errors", totals.counts.errors},
            {"auth_per_s", static_cast<uint64_t>(static_cast<double>(n.approved) / seconds)},
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
        static_cast<unsigned long long>(totals.counts.approved),
        static_cast<unsigned long long>(j["auth_per_s"].get<uint64_t>()),
        static_cast<unsigned long long>(totals.counts.declined),
        static_cast<unsigned long long>(totals.counts.rate_limited),
        static_cast<unsigned long long>(totals.counts.errors),
        static_cast<double>(j["p50_us"].get<uint64_t>()) / 1000.0,
        static_cast<double>(j["p99_us"].get<uint64_t>()) / 1000.0,
        static_cast<double>(j["p999_us"].get<uint64_t>()) / 1000.0);
  }
  std::printf("%s\n", j.dump().c_str());
  return n.errors == 0 && n.approved > 0 ? 0 : 1;
}

}  // namespace narae::tools
