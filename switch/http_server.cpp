// The storefront API's HTTP/1.1 server: Boost.Beast with C++20 coroutines.
//
// One io_context per I/O thread, run by that thread alone (a connection's
// handlers need no strand, and a handler's completion wakes no other
// thread); connections are given to them in turn. One coroutine per
// connection reads a request (a deadline on every read and write; the
// header and body limits are the parser's, checked before anything is
// allocated for them), hands it to the Api and writes the answer when the
// Api calls back (from a ledger thread: handed to the connection's thread,
// once per ledger group and thread; AnswerBox).
//
// The deadlines: one timer per connection, run by a watchdog coroutine on
// the same thread, and a deadline the session moves (a clock read) before
// each wait for bytes and each write. The watchdog wakes at the deadline or
// every tick (a quarter of the shortest timeout), whichever comes first, so a
// request costs no timer operation (Beast's tcp_stream arms and cancels one
// per read and write, each a timer-queue update and a handler); a deadline
// is enforced at most a tick late.
//
// Boost 1.74 + GCC 12: <utility> must come before the Asio coroutine headers.
#include <utility>
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif
// clang-format off
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include <pthread.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ledger/ledger.hpp"
#include "switch/api.hpp"
#include "switch/handler.hpp"
#include "switch/http_server.hpp"
#include "switch/log.hpp"
#include "switch/server.hpp"
#include "switch/switch.hpp"

namespace narae::switching {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

constexpr size_t kFirstReadBytes = 4096;
constexpr size_t kReusedBytesMax = 16 * 1024;   // an answer buffer kept per connection, at most
constexpr uint32_t kPipelinedBeforeYield = 16;  // requests served from the buffer in a row

struct Counters {
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_rejected{0};
  std::atomic<uint64_t> connections_open{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_requests{0};
  std::atomic<uint64_t> read_timeouts{0};
};

using Clock = std::chrono::steady_clock;

// One connection: its socket (on one I/O thread's context), the watchdog's timer and
// the deadline of what the session waits for. Touched on that thread only.
struct Conn {
  explicit Conn(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
  tcp::socket socket;
  asio::steady_timer timer;
  Clock::time_point deadline = Clock::time_point::max();  // max: none (the Api works)
  bool timed_out = false;                                 // the watchdog closed the socket
  bool reading = false;  // the session waits for a request's bytes (no write pending)
  void Expect(uint32_t timeout_ms) {
    deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  }
};

// A connection's request, reused from one request to the next (its strings
// and the field list keep their capacity: once warm, reading a request
// allocates nothing but the body handed to the Api). The header is kept as
// received, the fields in order; a lookup is a case-insensitive linear search
// that returns the first match, as Beast's basic_fields::find does (a header
// holds a few fields, bounded by header_bytes_max).
struct RequestData {
  std::string method;
  std::string target;
  std::string body;
  std::string fields;  // each field's name then value, one after the other
  struct Span {
    uint32_t name_at = 0;
    uint32_t name_bytes = 0;
    uint32_t value_at = 0;
    uint32_t value_bytes = 0;
  };
  std::vector<Span> spans;
  unsigned version = 11;

  void Clear() {
    method.clear();
    target.clear();
    body.clear();
    fields.clear();
    spans.clear();
    version = 11;
  }

  static char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }
  static bool EqualNoCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    // The last byte first: names of one length (x-narae-timestamp and
    // x-narae-signature) often share their first bytes.
    if (!a.empty() && Lower(a.back()) != Lower(b.back())) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (Lower(a[i]) != Lower(b[i])) return false;
    }
    return true;
  }

  // The value of the first field named `name` (any case); empty if none.
  // REQUIRES: `name` is lower case: letters, digits and '-' (the Api's
  // names). The spans lie inside `fields`, so they are used unchecked.
  std::string_view Find(std::string_view name) const {
    for (char c : name) NARAE_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
    for (const Span& s : spans) {
      if (s.name_bytes != name.size()) continue;  // most fields, without a look at the bytes
      if (EqualsLowerName(fields.data() + s.name_at, name)) {
        return std::string_view(fields.data() + s.value_at, s.value_bytes);
      }
    }
    return {};
  }

  // Whether the field name at `stored` (name.size() token characters, as
  // both readers accept them) is `name` in any case, eight bytes at a time.
  // Setting bit 0x20 of a stored byte lowers a letter and leaves '-' and the
  // digits alone; the token characters it changes otherwise ('^', '_') and
  // the bytes it could turn into one of `name`'s (controls) never match.
  static bool EqualsLowerName(const char* stored, std::string_view name) {
    constexpr uint64_t kLower = 0x2020202020202020ULL;
    size_t i = 0;
    for (; i + 8 <= name.size(); i += 8) {
      uint64_t a = 0;
      uint64_t b = 0;
      std::memcpy(&a, stored + i, sizeof a);
      std::memcpy(&b, name.data() + i, sizeof b);
      if ((a | kLower) != b) return false;
    }
    for (; i < name.size(); ++i) {
      if ((stored[i] | 0x20) != name[i]) return false;
    }
    return true;
  }
};

// Beast's HTTP/1.1 request parser (the grammar, the header and body limits,
// chunked bodies, keep-alive) writing into a RequestData instead of an
// http::request (whose field list allocates a node per field).
class RequestReader final : public http::basic_parser<true> {
 public:
  explicit RequestReader(RequestData* data) : data_(data) { data_->Clear(); }

 private:
  void on_request_impl(http::verb, beast::string_view method, beast::string_view target,
                       int version, error_code&) override {
    data_->method.assign(method.data(), method.size());
    data_->target.assign(target.data(), target.size());
    data_->version = static_cast<unsigned>(version);
  }
  void on_response_impl(int, beast::string_view, int, error_code& ec) override {
    ec = http::error::bad_method;  // a request parser never sees a status line
  }
  void on_field_impl(http::field, beast::string_view name, beast::string_view value,
                     error_code&) override {
    RequestData::Span s;
    s.name_at = static_cast<uint32_t>(data_->fields.size());
    s.name_bytes = static_cast<uint32_t>(name.size());
    data_->fields.append(name.data(), name.size());
    s.value_at = static_cast<uint32_t>(data_->fields.size());
    s.value_bytes = static_cast<uint32_t>(value.size());
    data_->fields.append(value.data(), value.size());
    data_->spans.push_back(s);
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                         error_code&) override {
    // The length was checked against the body limit by the parser.
    if (content_length) data_->body.reserve(static_cast<size_t>(*content_length));
  }
  size_t on_body_impl(beast::string_view body, error_code&) override {
    data_->body.append(body.data(), body.size());
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, error_code&) override {
    data_->body.append(body.data(), body.size());
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  RequestData* data_;
};

// The common request read without Beast's parser: a request line of an
// upper-case method, a target of printable ASCII and HTTP/1.1; fields whose
// names are letters, digits, '-' or '_' and whose values are printable ASCII
// or tabs, each on one line; at most one Content-Length (1..9 digits, within
// the body limit) and none of the fields that change how a message is framed
// or kept (Connection, Proxy-Connection, Transfer-Encoding, Upgrade); the
// whole header within the header limit and the whole body already read.
// Such a request is one Beast reads the same way, to the same method,
// target, fields (names as sent, values without the white space around
// them), body and keep-alive (true: HTTP/1.1 without Connection), which
// HttpParse.FastPathReadsAsBeastDoes checks on mutated requests. Anything
// else returns 0 and goes to Beast's parser, which also gives every error.
// Returns the request's bytes (header and body), or 0.
class SimpleRequestParser {
 public:
  static size_t Parse(std::string_view in, size_t header_bytes_max, size_t body_bytes_max,
                      RequestData* out) {
    const char* const first = in.data();
    // Every header byte lies before `limit` (Beast counts the start line and
    // the fields against header_limit, so a header that fits here fits there).
    const char* const limit = first + std::min(in.size(), header_bytes_max);
    // The request line: METHOD SP TARGET SP HTTP/1.1 CRLF.
    const char* p = first;
    while (p < limit && *p >= 'A' && *p <= 'Z') ++p;
    if (p == first || p - first > kMethodBytesMax || p == limit || *p != ' ') return 0;
    const std::string_view method(first, static_cast<size_t>(p - first));
    const char* const target_at = ++p;
    p = static_cast<const char*>(std::memchr(p, ' ', static_cast<size_t>(limit - p)));
    if (p == nullptr || p == target_at) return 0;
    const std::string_view target(target_at, static_cast<size_t>(p - target_at));
    if (!AllPrintable(target)) return 0;  // no space in it, by the search
    ++p;
    constexpr std::string_view kVersion = "HTTP/1.1\r\n";
    if (static_cast<size_t>(limit - p) < kVersion.size() ||
        std::string_view(p, kVersion.size()) != kVersion) {
      return 0;
    }
    p += kVersion.size();
    // The fields, one line each, their spans relative to `fields_at` (the
    // block is copied at the end in one go).
    const char* const fields_at = p;
    out->Clear();
    bool has_length = false;
    uint64_t length = 0;
    // Each turn takes one line of the header: bounded by `limit`.
    for (;;) {
      if (limit - p < 2) return 0;
      if (p[0] == '\r') {
        if (p[1] != '\n') return 0;
        p += 2;
        break;
      }
      // A name of the simple form stops at ':' (the table refuses CR and the
      // rest), within the line.
      const char* const name_at = p;
      while (kNameChar[static_cast<unsigned char>(*p)]) {
        if (++p == limit) return 0;
      }
      if (p == name_at || *p != ':') return 0;
      const std::string_view name(name_at, static_cast<size_t>(p - name_at));
      ++p;
      const char* const cr =
          static_cast<const char*>(std::memchr(p, '\r', static_cast<size_t>(limit - p)));
      // The line's LF and the byte after it (a space or tab there would
      // continue the value: obs-fold, left to Beast).
      if (cr == nullptr || limit - cr < 3 || cr[1] != '\n' || cr[2] == ' ' || cr[2] == '\t') {
        return 0;
      }
      while (p != cr && (*p == ' ' || *p == '\t')) ++p;
      const char* value_end = cr;
      while (value_end != p && (value_end[-1] == ' ' || value_end[-1] == '\t')) --value_end;
      const std::string_view value(p, static_cast<size_t>(value_end - p));
      if (!AllPrintable(value)) return 0;  // a tab inside is Beast's to read
      if (FramingField(name)) return 0;
      if (RequestData::EqualNoCase(name, "content-length")) {
        if (has_length || value.empty() || value.size() > kLengthDigitsMax) return 0;
        for (char c : value) {
          if (c < '0' || c > '9') return 0;
          length = length * 10 + static_cast<uint64_t>(c - '0');
        }
        has_length = true;
      }
      RequestData::Span span;
      span.name_at = static_cast<uint32_t>(name_at - fields_at);
      span.name_bytes = static_cast<uint32_t>(name.size());
      span.value_at = static_cast<uint32_t>(value.data() - fields_at);
      span.value_bytes = static_cast<uint32_t>(value.size());
      out->spans.push_back(span);
      p = cr + 2;
    }
    if (length > body_bytes_max ||
        static_cast<uint64_t>(in.size() - static_cast<size_t>(p - first)) < length) {
      return 0;
    }
    out->method.assign(method);
    out->target.assign(target);
    out->version = 11;
    out->fields.assign(fields_at, static_cast<size_t>(p - fields_at));
    out->body.assign(p, static_cast<size_t>(length));
    p += length;
    return static_cast<size_t>(p - first);
  }

 private:
  static constexpr ptrdiff_t kMethodBytesMax = 16;
  static constexpr size_t kLengthDigitsMax = 9;  // < 10^9: no overflow, over any body limit
  // Letters, digits, '-' and '_': a subset of the token characters.
  static constexpr std::array<bool, 256> kNameChar = [] {
    std::array<bool, 256> t{};
    for (int c = 0; c < 256; ++c) {
      t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '_';
    }
    return t;
  }();
  // Every byte is printable ASCII (0x20..0x7e), eight at a time: a byte
  // below 0x20 or equal to 0x7f sets its top bit in the tests below, a byte
  // of 0x80 or more has it set already (Bit Twiddling Hacks, "hasless",
  // "haszero"). The last bytes are one more word, overlapping the one
  // before (or, for fewer than eight bytes, padded with spaces).
  static bool AllPrintable(std::string_view s) {
    constexpr uint64_t kOnes = 0x0101010101010101ULL;
    constexpr uint64_t kHigh = 0x8080808080808080ULL;
    auto bad = [](uint64_t x) {
      const uint64_t del = x ^ (kOnes * 0x7f);
      return ((x | (x - kOnes * 0x20) | (del - kOnes)) & kHigh) != 0;
    };
    uint64_t x = kOnes * ' ';
    if (s.size() < sizeof x) {
      if (!s.empty()) std::memcpy(&x, s.data(), s.size());
      return !bad(x);
    }
    for (size_t i = 0; i + sizeof x <= s.size(); i += sizeof x) {
      std::memcpy(&x, s.data() + i, sizeof x);
      if (bad(x)) return false;
    }
    std::memcpy(&x, s.data() + s.size() - sizeof x, sizeof x);
    return !bad(x);
  }
  // The fields whose meaning Beast's parser acts on besides Content-Length.
  static bool FramingField(std::string_view name) {
    switch (name.size()) {
      case 7:
        return RequestData::EqualNoCase(name, "upgrade");
      case 10:
        return RequestData::EqualNoCase(name, "connection");
      case 16:
        return RequestData::EqualNoCase(name, "proxy-connection");
      case 17:
        return RequestData::EqualNoCase(name, "transfer-encoding");
      default:
        return false;
    }
  }
};

// An answer that came back from the Api for a connection, to complete on
// the connection's I/O thread.
struct PendingAnswer {
  virtual ~PendingAnswer() = default;
  virtual void Complete() = 0;
};

// One per I/O thread: answers for its connections, handed over by one
// handler per burst. An answer from a ledger group's callbacks is posted
// once the group's last callback has returned
// (ledger::DeferUntilGroupCallbacksReturn), so the thread is woken once per
// group, not once per answer. Shared with the Api's callbacks (which keep it
// alive until the deferred post has run); once the server has stopped its
// threads (Close()) answers are dropped.
struct AnswerBox {
  explicit AnswerBox(asio::io_context* context) : ioc(context) {}

  asio::io_context* const ioc;  // the I/O thread's (posted to until Close())

  // On the I/O thread.
  static void Take(AnswerBox* box) {
    std::vector<std::shared_ptr<PendingAnswer>> taken;
    {
      std::lock_guard<std::mutex> lock(box->mu_);
      taken.swap(box->answers_);
      box->posted_ = false;
    }
    for (auto& a : taken) a->Complete();
  }
  static void Post(void* arg) {
    AnswerBox* box = static_cast<AnswerBox*>(arg);
    std::lock_guard<std::mutex> lock(box->mu_);
    if (box->closed_) return;
    asio::post(*box->ioc, [box] { Take(box); });
  }
  // Any thread (the ledger's, or the I/O thread itself for an answer made
  // without the ledger).
  void Deliver(std::shared_ptr<PendingAnswer> answer) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;  // the connection is gone
      answers_.push_back(std::move(answer));
      if (posted_) return;
      posted_ = true;
    }
    if (ledger::DeferUntilGroupCallbacksReturn(&Post, this)) return;
    Post(this);
  }
  // After the I/O threads have stopped: nothing is posted any more (the
  // io_context is destroyed with the server).
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    answers_.clear();
  }

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<PendingAnswer>> answers_;  // GUARDED_BY(mu_)
  bool posted_ = false;                                  // GUARDED_BY(mu_)
  bool closed_ = false;                                  // GUARDED_BY(mu_)
};

class HttpServerImpl final : public HttpServer {
 public:
  HttpServerImpl(const HttpServerOptions& options, Api* api, IsoHandler* health, Logger* logger)
      : options_(options),
        api_(api),
        health_(health),
        logger_(logger),
        threads_count_(IoThreadCount(options.threads, options.io_cpus)),
        watchdog_tick_(std::chrono::milliseconds(std::max<uint32_t>(
            1,
            std::min({options.read_timeout_ms, options.idle_timeout_ms, options.write_timeout_ms}) /
                4))),
        iocs_(MakeContexts(threads_count_)),
        acceptor_(*iocs_[0]) {
    for (const auto& ioc : iocs_) {
      work_.push_back(asio::make_work_guard(*ioc));
      boxes_.push_back(std::make_shared<AnswerBox>(ioc.get()));
    }
  }

  ~HttpServerImpl() override { Shutdown(); }

  Status Listen() {
    std::string host;
    uint16_t port = 0;
    NARAE_RETURN_IF_ERROR(ParseHostPort(options_.listen, &host, &port));
    if (host == "localhost") host = "127.0.0.1";
    error_code ec;
    const asio::ip::address address = asio::ip::make_address(host, ec);
    if (ec) return Status::InvalidArgument("http_listen: '" + host + "' is not an IP address");
    const tcp::endpoint endpoint(address, port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::IOError("cannot listen on " + options_.listen + ": " + ec.message());
    const tcp::endpoint bound = acceptor_.local_endpoint(ec);
    if (ec) return Status::IOError("local_endpoint: " + ec.message());
    port_ = bound.port();
    listen_address_ = (address.is_v6() ? "[" + address.to_string() + "]" : address.to_string()) +
                      ":" + std::to_string(port_);
    return Status::Ok();
  }

  void Run() {
    asio::co_spawn(
        acceptor_.get_executor(), [this]() { return AcceptLoop(); }, asio::detached);
    for (const auto& ioc : iocs_) {
      threads_.emplace_back([this, c = ioc.get()] { RunThread(c); });
    }
    if (logger_) {
      logger_->Log(LogLevel::kInfo, "http_listening",
                   {{"http", listen_address_}, {"threads", threads_count_}});
    }
  }

  std::string listen_address() const override { return listen_address_; }
  uint16_t port() const override { return port_; }

  void Shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shut_down_) return;
      shut_down_ = true;
    }
    stopping_ = true;
    asio::post(acceptor_.get_executor(), [this] {
      error_code ec;
      acceptor_.close(ec);
    });
    // Requests in the ledger get their answer (bounded wait).
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.shutdown_grace_ms);
    while (api_->in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    {
      // A session waiting for a request stops waiting; one answering ends
      // after its answer (stopping_): each then closes after a linger
      // (LingerClose), so that answers written but not yet taken by the
      // client are not thrown away.
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, sock] : sockets_) {
        asio::post(sock->socket.get_executor(), [sock] {
          error_code ec;
          if (sock->reading) sock->socket.cancel(ec);
        });
      }
    }
    const auto close_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (counters_.connections_open.load() > 0 &&
           std::chrono::steady_clock::now() < close_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    for (auto& w : work_) w.reset();
    for (const auto& ioc : iocs_) ioc->stop();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    {
      // Connections that outlived the wait (a client not taking its answers,
      // one still sending a request): no I/O thread runs any more.
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, sock] : sockets_) {
        error_code ec;
        sock->socket.close(ec);
      }
    }
    for (auto& box : boxes_) box->Close();  // a late answer has nowhere to go
  }

  HttpServerStats Stats() const override {
    HttpServerStats s;
    s.connections_accepted = counters_.connections_accepted.load();
    s.connections_rejected = counters_.connections_rejected.load();
    s.connections_open = counters_.connections_open.load();
    s.requests = counters_.requests.load();
    s.bad_requests = counters_.bad_requests.load();
    s.read_timeouts = counters_.read_timeouts.load();
    return s;
  }

 private:
  static std::vector<std::unique_ptr<asio::io_context>> MakeContexts(uint32_t count) {
    std::vector<std::unique_ptr<asio::io_context>> out;
    for (uint32_t i = 0; i < count; ++i) out.push_back(std::make_unique<asio::io_context>(1));
    return out;
  }

  void RunThread(asio::io_context* ioc) {
    if (Status st = ledger::PinThisThread(options_.io_cpus); !st.ok() && logger_) {
      logger_->Log(LogLevel::kWarn, "io_thread_unpinned", {{"error", st.ToString()}});
    }
    pthread_setname_np(pthread_self(), "narae-http");   // per-thread CPU in `top -H`, /proc
    for (int attempt = 0; attempt < 1000; ++attempt) {  // bounded restarts after a throw
      try {
        ioc->run();
        return;
      } catch (const std::exception& e) {
        if (logger_) logger_->Log(LogLevel::kError, "http_thread_exception", {{"what", e.what()}});
      }
    }
  }

  asio::awaitable<void> AcceptLoop() {
    for (;;) {
      // The next I/O thread's context: its handlers all run on that thread.
      tcp::socket socket(*iocs_[next_context_++ % iocs_.size()]);
      error_code ec;
      co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open() || stopping_) co_return;
        continue;  // a failed accept (e.g. out of descriptors): keep serving
      }
      if (stopping_ || counters_.connections_open.load() >= options_.max_connections) {
        counters_.connections_rejected++;
        socket.close(ec);
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);  // request/response: no Nagle delay
      socket.non_blocking(true, ec);               // Write() tries a send in place first
      if (ec) {
        socket.close(ec);
        continue;
      }
      counters_.connections_accepted++;
      counters_.connections_open++;
      auto sock = std::make_shared<Conn>(std::move(socket));
      uint64_t id = ++next_id_;
      {
        std::lock_guard<std::mutex> lock(mu_);
        sockets_[id] = sock;
      }
      sock->Expect(options_.idle_timeout_ms);
      asio::co_spawn(
          sock->socket.get_executor(),
          [sock, tick = watchdog_tick_]() { return Watchdog(sock, tick); }, asio::detached);
      asio::co_spawn(
          sock->socket.get_executor(),
          [this, sock, id]() -> asio::awaitable<void> {
            try {
              co_await Session(*sock);
              co_await LingerClose(*sock);
            } catch (const std::exception& e) {
              if (logger_)
                logger_->Log(LogLevel::kWarn, "http_session_error", {{"what", e.what()}});
            }
            error_code ignored;
            sock->socket.shutdown(tcp::socket::shutdown_both, ignored);
            sock->socket.close(ignored);
            sock->timer.cancel();  // the watchdog ends
            {
              std::lock_guard<std::mutex> lock(mu_);
              sockets_.erase(id);
            }
            counters_.connections_open--;
          },
          asio::detached);
    }
  }

  // Before the socket is closed, a lingering close (server.hpp): FIN after
  // the answers written, then read and drop what the client still sends
  // until it has acknowledged every byte or closed its side. Closed at once,
  // the socket would throw unsent answers away with a reset as soon as the
  // client sent more (a pipelined request, one sent as shutdown began).
  asio::awaitable<void> LingerClose(Conn& conn) {
    NARAE_CHECK(!conn.reading);
    tcp::socket& socket = conn.socket;
    if (!socket.is_open()) co_return;  // the watchdog closed it
    error_code ec;
    socket.shutdown(tcp::socket::shutdown_send, ec);
    if (ec) co_return;
    conn.Expect(options_.write_timeout_ms);  // the watchdog closes the socket then
    asio::steady_timer poll(socket.get_executor());
    uint64_t dropped_bytes = 0;
    Clock::duration wait = kLingerPollFirst;
    // Bounded by the watchdog (write_timeout_ms) and kLingerBytesMax.
    while (socket.is_open()) {
      const int fd = socket.native_handle();
      // FIN, reset or too much: done. Drained before the check below, so
      // that the close finds nothing unread (which would send a reset).
      if (DrainReceived(fd, &dropped_bytes) != DrainResult::kWouldBlock) co_return;
      if (UnackedBytes(fd) == 0) co_return;  // the client has every answer
      poll.expires_after(wait);
      co_await poll.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      wait = std::min<Clock::duration>(wait * 2, kLingerPollMax);
    }
  }

  // Closes the connection's socket once its deadline has passed, waking at
  // the deadline or after `tick`, whichever is first (the session moves the
  // deadline without touching the timer). Ends when the session cancels the
  // timer or the socket is closed.
  static asio::awaitable<void> Watchdog(std::shared_ptr<Conn> conn, Clock::duration tick) {
    while (conn->socket.is_open()) {
      const Clock::time_point now = Clock::now();
      if (now >= conn->deadline) {
        conn->timed_out = true;
        error_code ignored;
        conn->socket.shutdown(tcp::socket::shutdown_both, ignored);
        conn->socket.close(ignored);  // the session's pending read or write fails
        co_return;
      }
      conn->timer.expires_at(conn->deadline - now < tick ? conn->deadline : now + tick);
      error_code ec;
      co_await conn->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted) co_return;
    }
  }

  asio::awaitable<void> Session(Conn& conn) {
    tcp::socket& stream = conn.socket;
    beast::flat_buffer buffer(options_.header_bytes_max + options_.body_bytes_max +
                              kFirstReadBytes);
    RequestData request;     // reused by every request of the connection
    std::string out;         // the answer's bytes, likewise
    uint32_t pipelined = 0;  // requests found already read since the last read
    for (uint32_t served = 0;; ++served) {
      if (stopping_) co_return;
      if (options_.requests_per_connection_max != 0 &&
          served >= options_.requests_per_connection_max) {
        co_return;
      }
      // Idle keep-alive: wait for the first byte of the next request.
      if (buffer.size() == 0) {
        pipelined = 0;
        conn.Expect(options_.idle_timeout_ms);
        error_code ec;
        conn.reading = true;
        size_t n = co_await stream.async_read_some(buffer.prepare(kFirstReadBytes),
                                                   asio::redirect_error(asio::use_awaitable, ec));
        conn.reading = false;
        if (ec) co_return;  // closed, idle too long, or cancelled by Shutdown()
        buffer.commit(n);
      } else if (++pipelined % kPipelinedBeforeYield == 0) {
        // Requests already read are parsed and often answered (/healthz,
        // /metrics) without suspending: a client pipelining hundreds of them
        // would keep this thread from its other connections. Let them run.
        co_await asio::post(stream.get_executor(), asio::use_awaitable);
      }
      // The whole request within read_timeout_ms.
      conn.Expect(options_.read_timeout_ms);
      error_code ec;
      bool keep_alive = true;  // HTTP/1.1 without Connection (the simple form)
      // A request of the simple form that came whole (the common case) is
      // read in place; any other goes to Beast's parser.
      const size_t simple = SimpleRequestParser::Parse(
          std::string_view(static_cast<const char*>(buffer.data().data()), buffer.size()),
          options_.header_bytes_max, options_.body_bytes_max, &request);
      if (simple != 0) {
        buffer.consume(simple);
      } else {
        RequestReader parser(&request);
        parser.header_limit(options_.header_bytes_max);
        parser.body_limit(options_.body_bytes_max);
        parser.eager(true);  // the body too, as http::async_read sets it
        // The bytes already read are parsed here: a request that came whole
        // needs no read operation (Beast's read posts its completion through
        // the scheduler even when it read nothing). The rest, if any, is read
        // by http::async_read, which goes on with the same parser.
        while (buffer.size() != 0 && !parser.is_done()) {
          const size_t used = parser.put(buffer.data(), ec);
          buffer.consume(used);
          if (ec || used == 0) break;
        }
        if (ec == http::error::need_more) ec = {};
        if (!ec && !parser.is_done()) {
          if (stopping_) co_return;  // Shutdown()'s cancel may have come already
          conn.reading = true;
          co_await http::async_read(stream, buffer, parser,
                                    asio::redirect_error(asio::use_awaitable, ec));
          conn.reading = false;
        }
        keep_alive = !ec && parser.keep_alive();
      }
      if (ec) {
        if (conn.timed_out) {
          counters_.read_timeouts++;
          co_return;
        }
        if (ec == http::error::end_of_stream || ec == asio::error::eof ||
            ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
          co_return;
        }
        counters_.bad_requests++;
        unsigned status = 400;
        std::string message = "malformed HTTP request";
        if (ec == http::error::body_limit) {
          status = 413;
          message = "the body is too large";
        } else if (ec == http::error::header_limit) {
          status = 431;
          message = "the header is too large";
        }
        HttpResponse r;
        r.status = status;
        r.body = nlohmann::json{{"error",
                                 {{"code", status == 400   ? "invalid_request"
                                           : status == 413 ? "body_too_large"
                                                           : "header_too_large"},
                                  {"message", message},
                                  {"request_id", ""}}}}
                     .dump();
        co_await Write(conn, std::move(r), false, 11, &out);
        co_return;
      }
      counters_.requests++;
      keep_alive = keep_alive && !stopping_;
      const unsigned version = request.version;
      conn.deadline = Clock::time_point::max();  // none while the Api works
      HttpResponse r = co_await Serve(stream, &request);
      if (!co_await Write(conn, std::move(r), keep_alive, version, &out) || !keep_alive) co_return;
    }
  }

  // `request` is the session's: it stays put until the answer is back.
  asio::awaitable<HttpResponse> Serve(tcp::socket& stream, RequestData* request) {
    if (request->target == "/healthz" && request->method == "GET") co_return Health();
    if (request->target == "/metrics" && request->method == "GET") co_return Metrics();
    // Held by pointer: GCC 12 miscompiles non-trivial captures moved into
    // a lambda inside a co_await expression. `in` lives in this frame, and
    // Handle() takes it before the initiation returns.
    HttpRequest in;
    in.method = request->method;
    in.target = request->target;
    in.body = std::move(request->body);
    // The Api reads the headers only while Handle() runs (before it returns),
    // and `request` lives in the session's frame until the answer is back.
    const RequestData* headers = request;
    in.header = [headers](std::string_view name) { return headers->Find(name); };
    HttpRequest* in_ptr = &in;
    // By pointer too (the GCC 12 note above); it lives in this frame.
    std::shared_ptr<AnswerBox> box_of_thread = BoxOf(stream);
    const std::shared_ptr<AnswerBox>* box_ptr = &box_of_thread;
    Api* api = api_;
    auto initiate = [api, box_ptr, in_ptr](auto handler) {
      using Handler = decltype(handler);
      // The handler and the answer in one allocation; the answer comes
      // back on the ledger's thread and is handed to the connection's
      // thread (its box).
      struct Reply final : PendingAnswer {
        explicit Reply(Handler h) : on_answer(std::move(h)) {}
        void Complete() override { on_answer(std::move(response)); }
        Handler on_answer;
        HttpResponse response;
      };
      auto reply = std::make_shared<Reply>(std::move(handler));
      std::shared_ptr<AnswerBox> box = *box_ptr;
      api->Handle(std::move(*in_ptr), [reply, box](HttpResponse r) {
        reply->response = std::move(r);
        box->Deliver(reply);
      });
    };
    HttpResponse r =
        co_await asio::async_initiate<decltype(asio::use_awaitable), void(HttpResponse)>(
            initiate, asio::use_awaitable);
    co_return r;
  }

  HttpResponse Health() {
    HealthInfo h = health_->Health();
    HttpResponse r;
    r.status = h.ledger_healthy && !stopping_ ? 200 : 503;
    r.body = nlohmann::json{{"status", r.status == 200 ? "ok" : "unavailable"},
                            {"ledger_healthy", h.ledger_healthy},
                            {"open_holds", h.open_holds},
                            {"accounts", h.accounts}}
                 .dump();
    return r;
  }

  HttpResponse Metrics() {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4";
    std::string& o = r.body;
    HttpServerStats s = Stats();
    o += "# TYPE narae_http_connections_open gauge\nnarae_http_connections_open " +
         std::to_string(s.connections_open) + "\n";
    o += "# TYPE narae_http_connections_accepted_total counter\n"
         "narae_http_connections_accepted_total " +
         std::to_string(s.connections_accepted) + "\n";
    o += "# TYPE narae_http_connections_rejected_total counter\n"
         "narae_http_connections_rejected_total " +
         std::to_string(s.connections_rejected) + "\n";
    o += "# TYPE narae_http_bad_requests_total counter\nnarae_http_bad_requests_total " +
         std::to_string(s.bad_requests) + "\n";
    o += "# TYPE narae_http_read_timeouts_total counter\nnarae_http_read_timeouts_total " +
         std::to_string(s.read_timeouts) + "\n";
    api_->AppendMetrics(&o);
    return r;
  }

  // The answer's bytes, written by hand in one buffer (Beast's serializer
  // and field list cost an allocation per header): the status line, the
  // fixed headers, the Api's, Connection as Beast's keep_alive() would set
  // it, Content-Length, the body.
  // `buffer` is the session's (its capacity reused).
  asio::awaitable<bool> Write(Conn& conn, HttpResponse r, bool keep_alive, unsigned version,
                              std::string* buffer) {
    std::string& out = *buffer;
    out.clear();
    out.reserve(256 + r.body.size());
    out += "HTTP/";  // the request's version, as Beast writes it
    out += static_cast<char>('0' + version / 10 % 10);
    out += '.';
    out += static_cast<char>('0' + version % 10);
    out += ' ';
    out += std::to_string(r.status);
    out += ' ';
    const beast::string_view reason = http::obsolete_reason(static_cast<http::status>(r.status));
    out.append(reason.data(), reason.size());
    out += "\r\nServer: narae\r\nContent-Type: ";
    AppendHeaderValue(&out, r.content_type);
    out += "\r\nCache-Control: no-store\r\n";
    for (const auto& [k, v] : r.headers) {
      AppendHeaderValue(&out, k);
      out += ": ";
      AppendHeaderValue(&out, v);
      out += "\r\n";
    }
    if (version < 11 && keep_alive) out += "Connection: keep-alive\r\n";
    if (version >= 11 && !keep_alive) out += "Connection: close\r\n";
    out += "Content-Length: ";
    out += std::to_string(r.body.size());
    out += "\r\n\r\n";
    out += r.body;
    conn.Expect(options_.write_timeout_ms);
    error_code ec;
    // The socket is non-blocking: the answer usually fits in the socket's
    // buffer and goes in this call; what does not is written asynchronously.
    size_t sent = conn.socket.write_some(asio::buffer(out), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = {};
      sent = 0;
    }
    if (!ec && sent < out.size()) {
      co_await asio::async_write(conn.socket, asio::buffer(out.data() + sent, out.size() - sent),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    // A large answer (a long list) does not stay with the connection.
    if (out.capacity() > kReusedBytesMax) std::string().swap(out);
    co_return !ec;
  }

  // The answer box of the I/O thread that runs `stream`.
  std::shared_ptr<AnswerBox> BoxOf(tcp::socket& stream) {
    const asio::execution_context* ctx = &stream.get_executor().context();
    for (auto& box : boxes_) {
      if (static_cast<const asio::execution_context*>(box->ioc) == ctx) return box;
    }
    NARAE_CHECK(false && "a connection outside the server's I/O threads");
    return nullptr;
  }

  // A header name or value as it goes on the wire: a CR or LF (never made
  // by Narae, but a header must not be able to start another) becomes a space.
  static void AppendHeaderValue(std::string* out, std::string_view v) {
    const size_t at = out->size();
    out->append(v);  // then the rare CR or LF replaced in place
    for (size_t i = at; i < out->size(); ++i) {
      if ((*out)[i] == '\r' || (*out)[i] == '\n') (*out)[i] = ' ';
    }
  }

  HttpServerOptions options_;
  Api* api_;
  IsoHandler* health_;
  Logger* logger_;
  uint32_t threads_count_;
  Clock::duration watchdog_tick_;                        // a quarter of the shortest timeout
  std::vector<std::unique_ptr<asio::io_context>> iocs_;  // one per I/O thread
  std::vector<std::shared_ptr<AnswerBox>> boxes_;        // one per I/O thread (iocs_[i])
  tcp::acceptor acceptor_;                               // on iocs_[0]
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  size_t next_context_ = 0;  // the accept loop's (iocs_[0]'s thread) only
  std::vector<std::thread> threads_;
  std::string listen_address_;
  uint16_t port_ = 0;
  Counters counters_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> next_id_{0};
  std::mutex mu_;
  bool shut_down_ = false;                                       // GUARDED_BY(mu_)
  std::unordered_map<uint64_t, std::shared_ptr<Conn>> sockets_;  // GUARDED_BY(mu_)
};

}  // namespace

namespace internal {

std::optional<ParsedHttpRequest> ParseHttpRequestForTest(std::string_view bytes, bool simple,
                                                         uint32_t header_bytes_max,
                                                         uint32_t body_bytes_max) {
  RequestData data;
  ParsedHttpRequest out;
  if (simple) {
    out.consumed = SimpleRequestParser::Parse(bytes, header_bytes_max, body_bytes_max, &data);
    if (out.consumed == 0) return std::nullopt;
    out.keep_alive = true;
  } else {
    RequestReader parser(&data);
    parser.header_limit(header_bytes_max);
    parser.body_limit(body_bytes_max);
    parser.eager(true);
    error_code ec;
    // As the session feeds it: until done, an error, or no progress.
    while (out.consumed < bytes.size() && !parser.is_done()) {
      const size_t used =
          parser.put(asio::buffer(bytes.data() + out.consumed, bytes.size() - out.consumed), ec);
      out.consumed += used;
      if (ec || used == 0) break;
    }
    if (ec || !parser.is_done()) return std::nullopt;
    out.keep_alive = parser.keep_alive();
  }
  out.method = data.method;
  out.target = data.target;
  out.version = data.version;
  for (const RequestData::Span& s : data.spans) {
    out.fields.emplace_back(data.fields.substr(s.name_at, s.name_bytes),
                            data.fields.substr(s.value_at, s.value_bytes));
  }
  out.body = data.body;
  return out;
}

}  // namespace internal

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options, Api* api,
                                                      IsoHandler* health, Logger* logger) {
  if (!api || !health) return Status::InvalidArgument("the HTTP server needs the API and handler");
  if (options.max_connections == 0 || options.header_bytes_max < 512 ||
      options.body_bytes_max == 0 || options.read_timeout_ms == 0 || options.idle_timeout_ms == 0 ||
      options.write_timeout_ms == 0) {
    return Status::InvalidArgument("bad HTTP server options (limits must be positive)");
  }
  if (Status st = ledger::CheckCpus(options.io_cpus); !st.ok()) {
    return Status::InvalidArgument("io_cpus: " + st.message());
  }
  auto s = std::make_unique<HttpServerImpl>(options, api, health, logger);
  NARAE_RETURN_IF_ERROR(s->Listen());
  s->Run();
  std::unique_ptr<HttpServer> out = std::move(s);
  return out;
}

}  // namespace narae::switching
