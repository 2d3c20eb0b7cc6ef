// The ISO 8583 server: Boost.Asio with C++20 coroutines.
//
// One io_context per I/O thread (`threads` of them; each connection stays on
// one, assigned round-robin at accept); every connection lives on its own
// strand and is served by two coroutines, the reader (frames, decodes,
// dispatches to the handler) and the watchdog (enforces the read, idle and
// write timeouts by closing the socket), and by Flush(), which writes the
// replies queued on the strand with one writev, callback style (no timer to
// arm and cancel per batch). The handler replies from any thread; the reply
// goes to the connection's inbox and the connection to its I/O thread's ready
// list (one post per burst of replies, not per connection), or is dropped if
// the connection is gone or the server has shut down. Plain TCP and TLS share Session<Stream>.
//
// Boost 1.74 + GCC 12: <utility> must come before the Asio coroutine headers.
#include <utility>
// GCC's TSan cannot see Asio's std::atomic_thread_fence (std_fenced_block);
// the scheduler's mutexes order the handlers. Only the warning is silenced.
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif
// clang-format off
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
// clang-format on

#include <linux/sockios.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ledger/ledger.hpp"
#include "switch/log.hpp"
#include "switch/server.hpp"
#include "switch/switch.hpp"

namespace narae::switching {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// ---------------------------------------------------------------------------
// Helpers (server.hpp).

std::optional<std::string> AnswerMti(std::string_view request_mti) {
  Result<std::string> known = ResponseMti(request_mti);
  if (known.ok()) return std::move(known).value();
  if (request_mti.size() != kMtiBytes) return std::nullopt;
  for (char c : request_mti) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  const int function = request_mti[2] - '0';
  if (function % 2 != 0) return std::nullopt;  // a response: never answered
  std::string out(request_mti);
  out[2] = static_cast<char>('0' + function + 1);
  return out;
}

std::optional<RecoveredHeader> RecoverHeader(std::span<const uint8_t> body) {
  if (body.size() < kMessageBytesMin) return std::nullopt;
  RecoveredHeader out;
  out.mti.assign(reinterpret_cast<const char*>(body.data()), kMtiBytes);
  if (!AnswerMti(out.mti).has_value()) return std::nullopt;
  size_t pos = kMtiBytes;
  const uint8_t* bitmap = body.data() + pos;
  pos += kBitmapBytes;
  if ((bitmap[0] & 0x80) != 0) pos += kBitmapBytes;  // secondary bitmap
  const auto present = [&](int f) { return (bitmap[(f - 1) / 8] >> (7 - (f - 1) % 8)) & 1; };
  const FieldTable& table = Iso87Table();
  for (int f = 2; f <= 11; ++f) {  // bounded: fields 2..11
    if (!present(f)) continue;
    const FieldSpec& spec = table[f];
    size_t size = spec.length_max;
    if (spec.length_format != LengthFormat::kFixed) {
      const size_t digits = spec.length_format == LengthFormat::kLlvar ? 2 : 3;
      if (pos + digits > body.size()) return std::nullopt;
      size = 0;
      for (size_t i = 0; i < digits; ++i) {
        const uint8_t c = body[pos + i];
        if (c < '0' || c > '9') return std::nullopt;
        size = size * 10 + (c - '0');
      }
      if (size > spec.length_max) return std::nullopt;
      pos += digits;
    }
    if (pos + size > body.size()) return std::nullopt;
    if (f == 11) {
      if (size != 6) return std::nullopt;
      out.stan.assign(reinterpret_cast<const char*>(body.data()) + pos, size);
      for (char c : out.stan) {
        if (c < '0' || c > '9') return std::nullopt;
      }
      return out;
    }
    pos += size;
  }
  return std::nullopt;  // no field 11
}

Message ServerAnswer(std::string_view response_mti, std::string_view stan, ResponseCode code) {
  Message m(response_mti);
  if (!stan.empty()) m.Set(11, stan);
  m.Set(39, ResponseCodeText(code));
  return m;
}

Status ParseHostPort(std::string_view text, std::string* host, uint16_t* port) {
  NARAE_CHECK(host != nullptr && port != nullptr);
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= text.size()) {
    return Status::InvalidArgument("address '" + std::string(text) + "' must be HOST:PORT");
  }
  std::string_view h = text.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty()) return Status::InvalidArgument("address '" + std::string(text) + "': no host");
  Result<uint64_t> p = ParseDigits(text.substr(colon + 1));
  if (!p.ok() || *p > 65535) {
    return Status::InvalidArgument("address '" + std::string(text) + "': port must be 0..65535");
  }
  *host = std::string(h);
  *port = static_cast<uint16_t>(*p);
  return Status::Ok();
}

int UnackedBytes(int fd) {
  int n = 0;
  if (::ioctl(fd, SIOCOUTQ, &n) != 0) return 0;
  return n;
}

DrainResult DrainReceived(int fd, uint64_t* dropped_bytes) {
  NARAE_CHECK(dropped_bytes != nullptr);
  std::array<char, 4096> sink;
  for (;;) {  // bounded: each pass that goes on drops bytes, kLingerBytesMax in all
    const ssize_t n = ::recv(fd, sink.data(), sink.size(), MSG_DONTWAIT);
    if (n > 0) {
      *dropped_bytes += static_cast<uint64_t>(n);
      if (*dropped_bytes > kLingerBytesMax) return DrainResult::kOverBudget;
      continue;
    }
    // EINTR: the next poll tries again.
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      return DrainResult::kWouldBlock;
    }
    return DrainResult::kEnded;  // 0: the peer's FIN; else an error (a reset)
  }
}

uint32_t IoThreadCount(uint32_t threads, const std::vector<uint32_t>& io_cpus) {
  if (threads != 0) return threads;
  if (!io_cpus.empty()) return static_cast<uint32_t>(io_cpus.size());
  return std::max(1u, std::thread::hardware_concurrency());
}

namespace {

// ---------------------------------------------------------------------------
// State shared by the server, its sessions and the reply callbacks that the
// handler may keep after both are gone.
struct Counters {
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_rejected{0};
  std::atomic<uint64_t> connections_open{0};
  std::atomic<uint64_t> tls_handshake_failures{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> responses{0};
  std::atomic<uint64_t> approved{0};
  std::atomic<uint64_t> format_errors{0};
  std::atomic<uint64_t> frames_rejected{0};
  std::atomic<uint64_t> read_timeouts{0};
  std::atomic<uint64_t> idle_timeouts{0};
  std::atomic<uint64_t> write_timeouts{0};
  std::atomic<uint64_t> replies_dropped{0};
  std::atomic<uint64_t> refused_shutting_down{0};
};

class SessionBase;
struct Shared;

// Sessions of one I/O thread whose inbox got replies from a ledger thread
// (Deliver), taken by one handler posted to that thread per burst (the
// replies of one ledger group) instead of one post per connection; the
// handler defers each session's drain to its strand on the same thread,
// which wakes no other thread. At most one entry per session (its
// drain_posted_). Emptied by Shutdown() while the io_context still exists.
struct ReadyList {
  std::mutex mu;
  std::vector<std::shared_ptr<SessionBase>> sessions;  // GUARDED_BY(mu)
  bool posted = false;                                 // GUARDED_BY(mu)
  asio::io_context* ioc = nullptr;  // the I/O thread's; used only while the gate is open
  Shared* shared = nullptr;         // its owner
};

struct Shared {
  // Readers: reply callbacks posting to a strand. Writer: Shutdown(), once,
  // after the I/O threads are joined; from then on replies are dropped.
  std::shared_mutex gate_mu;
  bool gate_open = true;  // GUARDED_BY(gate_mu)
  // One per I/O thread, made before the first session, never resized.
  std::vector<std::unique_ptr<ReadyList>> ready;
  Counters counters;
  LatencyHistogram latency;
  // Where a request's time goes (docs/switch.md, "Where a request's time
  // goes"), over the server's life; logged as `stages` at shutdown.
  struct Stages {
    LatencyHistogram handle;           // the handler's Handle() call, on the I/O thread
    LatencyHistogram to_reply;         // frame decoded -> the handler's reply (ledger, durable)
    LatencyHistogram hop;              // reply -> taken on the connection's strand
    LatencyHistogram write;            // queued on the strand -> written to the socket
    LatencyHistogram total;            // frame decoded -> written to the socket
    LatencyHistogram frames_per_read;  // frames served per read (arrival burst size)
  } stages;
};

void Bump(std::atomic<uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }
uint64_t Load(const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); }

uint64_t Micros(Clock::time_point from, Clock::time_point to) {
  if (to <= from) return 0;
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(to - from).count());
}

uint64_t MicrosSince(Clock::time_point start) {
  const auto d = Clock::now() - start;
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

std::string PeerOf(const tcp::socket& socket) {
  error_code ec;
  tcp::endpoint ep = socket.remote_endpoint(ec);
  if (ec) return "?";
  if (ep.address().is_v6())
    return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

// The subject CN of the peer certificate, "" when none.
std::string PeerCertCn(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return "";
  std::string cn;
  char buf[256];
  const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf,
                                          static_cast<int>(sizeof(buf)));
  if (n > 0) cn.assign(buf, static_cast<size_t>(std::min(n, static_cast<int>(sizeof(buf)) - 1)));
  X509_free(cert);
  return cn;
}

class ServerImpl;

// What the server needs from a session, whatever its stream type.
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void BeginShutdown() = 0;  // any thread: posts to the strand
  virtual void ForceClose() = 0;     // any thread: posts to the strand
  // On an I/O thread (TakeReady): drains the inbox on the session's strand.
  virtual void DrainOnStrand(std::shared_ptr<SessionBase> self) = 0;
};

// On an I/O thread: every session with replies waiting drains them on its
// strand. Deferred (a continuation of this handler): queued on this thread,
// no other thread woken, no system call.
void TakeReady(ReadyList* list) {
  std::vector<std::shared_ptr<SessionBase>> ready;
  {
    std::lock_guard<std::mutex> lock(list->mu);
    ready.swap(list->sessions);
    list->posted = false;
  }
  for (auto& s : ready) {
    SessionBase* raw = s.get();
    raw->DrainOnStrand(std::move(s));
  }
}

// A post of TakeReady deferred by Deliver to the end of a ledger group's
// callbacks. The list is alive: the callbacks, which hold the server's
// Shared, are not destroyed yet (ledger::DeferUntilGroupCallbacksReturn).
// After Shutdown() closed the gate there is no io_context to post to.
void PostReady(void* arg) {
  ReadyList* list = static_cast<ReadyList*>(arg);
  std::shared_lock<std::shared_mutex> lock(list->shared->gate_mu);
  if (!list->shared->gate_open) return;
  asio::post(*list->ioc, [list] { TakeReady(list); });
}

// Everything a session reads from the server; lives as long as the server's
// io_context (so as long as any session).
struct SessionEnv {
  const ServerOptions* options = nullptr;
  IsoHandler* handler = nullptr;
  Logger* logger = nullptr;
  std::shared_ptr<Shared> shared;
  ServerImpl* server = nullptr;
};

void Unregister(ServerImpl* server, uint64_t id);

template <typename Stream>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Stream stream, const SessionEnv& env, ConnectionInfo info, ReadyList* ready)
      : stream_(std::move(stream)),
        executor_(stream_.get_executor()),
        env_(env),
        ready_(ready),
        info_(std::move(info)),
        read_signal_(executor_),
        watchdog_(executor_) {
    rbuf_.resize(kReadChunkBytes);
    last_activity_ = Clock::now();
  }

  uint64_t id() const { return info_.connection_id; }

  void Start() {
    auto self = this->shared_from_this();
    asio::co_spawn(
        executor_, [self]() { return self->Main(); }, asio::detached);
  }

  void BeginShutdown() override {
    asio::post(executor_, [self = this->shared_from_this()] {
      self->stopping_ = true;
      self->Flush();
    });
  }

  void ForceClose() override {
    asio::post(executor_, [self = this->shared_from_this()] { self->Close("shutdown"); });
  }

  // The handler's reply; called from any thread.
  static void Deliver(const std::weak_ptr<Session>& weak, const std::shared_ptr<Shared>& shared,
                      Clock::time_point started, Message response) {
    std::shared_lock<std::shared_mutex> lock(shared->gate_mu);
    std::shared_ptr<Session> self = weak.lock();
    if (!shared->gate_open || self == nullptr) {
      Bump(shared->counters.replies_dropped);
      return;  // `self` (if any) is released under the lock: see Shutdown()
    }
    // Replies of one ledger group arrive together from its acknowledging thread:
    // they wait in the inbox and one handler per connection takes them all
    // (one post instead of one per reply, and one writev for the lot).
    Session* raw = self.get();
    ReadyList* list = raw->ready_;
    {
      std::lock_guard<std::mutex> inbox_lock(raw->inbox_mu_);
      raw->inbox_.push_back({std::move(response), started, Clock::now()});
      if (raw->drain_posted_) return;  // `self` released under the gate lock
      raw->drain_posted_ = true;
    }
    bool post = false;
    {
      std::lock_guard<std::mutex> ready_lock(list->mu);
      list->sessions.push_back(std::move(self));
      post = !list->posted;
      list->posted = true;
    }
    if (!post) return;
    // Inside a ledger group's callbacks, the post waits until the group's
    // last reply is in (one wake of the I/O thread per group instead of one
    // per reply when it drains faster than the replies come).
    if (ledger::DeferUntilGroupCallbacksReturn(&PostReady, list)) return;
    // The list lives as long as the server's io_contexts (the gate is open).
    asio::post(*list->ioc, [list] { TakeReady(list); });
  }

  void DrainOnStrand(std::shared_ptr<SessionBase> base) override {
    auto self = std::static_pointer_cast<Session>(std::move(base));
    asio::defer(executor_, [self = std::move(self)] { self->DrainInbox(); });
  }

 private:
  static constexpr size_t kReadChunkBytes = 4096;

  asio::awaitable<void> Main() {
    auto self = this->shared_from_this();
    try {
      asio::co_spawn(
          executor_, [self]() { return self->Watchdog(); }, asio::detached);
      if (!(co_await Handshake())) co_return;
      co_await Reader();
    } catch (const std::exception& e) {
      env_.logger->Log(LogLevel::kError, "session_exception",
                       {{"conn", info_.connection_id}, {"what", e.what()}});
      Close("exception");
    }
  }

  // TLS only: bounded by read_timeout_ms through the watchdog.
  asio::awaitable<bool> Handshake() {
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
      co_return true;
    } else {
      handshaking_ = true;
      frame_started_ = Clock::now();
      error_code ec;
      co_await stream_.async_handshake(ssl::stream_base::server,
                                       asio::redirect_error(asio::use_awaitable, ec));
      handshaking_ = false;
      frame_started_.reset();
      last_activity_ = Clock::now();
      if (ec || closed_) {
        Bump(env_.shared->counters.tls_handshake_failures);
        env_.logger->Log(LogLevel::kDebug, "tls_handshake_failed",
                         {{"conn", info_.connection_id},
                          {"peer", info_.peer},
                          {"error", closed_ ? std::string("timeout") : ec.message()}});
        Close("tls_handshake");
        co_return false;
      }
      info_.client_cert_cn = PeerCertCn(stream_.native_handle());
      co_return true;
    }
  }

  auto& Lowest() {
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
      return stream_;
    } else {
      return stream_.lowest_layer();
    }
  }

  // Frames, decodes and dispatches until the connection ends.
  asio::awaitable<void> Reader() {
    const ServerOptions& opt = *env_.options;
    for (;;) {  // bounded by the connection's life (timeouts, limits)
      // Serve every complete frame in the buffer.
      size_t consumed = 0;
      uint64_t frames = 0;
      while (!closed_ && !lingering_ && stop_reason_.empty() &&
             buffered_ - consumed >= kFrameHeaderBytes) {
        Result<size_t> len = ReadFrameLength({rbuf_.data() + consumed, kFrameHeaderBytes});
        NARAE_CHECK(len.ok());
        if (*len == 0 || *len > opt.max_frame_bytes) {
          Bump(env_.shared->counters.frames_rejected);
          env_.logger->Log(LogLevel::kWarn, "frame_rejected",
                           {{"conn", info_.connection_id},
                            {"peer", info_.peer},
                            {"length", static_cast<uint64_t>(*len)},
                            {"max_frame_bytes", opt.max_frame_bytes}});
          StopReading("frame_length");
          co_return;
        }
        const size_t frame = kFrameHeaderBytes + *len;
        if (buffered_ - consumed < frame) {
          if (rbuf_.size() < frame) rbuf_.resize(std::max(frame, kReadChunkBytes));  // checked
          break;
        }
        OnFrame({rbuf_.data() + consumed + kFrameHeaderBytes, *len});
        consumed += frame;
        ++frames;
        while (!closed_ && stop_reason_.empty() && in_flight_ >= opt.max_in_flight_per_connection) {
          paused_ = true;  // back-pressure: stop reading until replies drain
          read_signal_.expires_at(Clock::time_point::max());
          error_code ec;
          co_await read_signal_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
        if (paused_) {
          paused_ = false;
          last_activity_ = Clock::now();
        }
      }
      if (frames > 0) env_.shared->stages.frames_per_read.Record(frames);
      if (closed_ || !stop_reason_.empty()) co_return;
      if (lingering_) {  // what the client still sends is read and dropped
        linger_dropped_bytes_ += buffered_ - consumed;
        consumed = buffered_;
        if (linger_dropped_bytes_ > kLingerBytesMax) {
          Close(linger_reason_);
          co_return;
        }
      }
      if (consumed > 0) {
        std::memmove(rbuf_.data(), rbuf_.data() + consumed, buffered_ - consumed);
        buffered_ -= consumed;
      }
      // The read deadline runs from the first byte of the frame still
      // incomplete: a new one when this pass completed any frame (a client
      // pipelining steadily, each read ending mid-frame, is not slow).
      if (buffered_ == 0) {
        frame_started_.reset();
      } else if (!frame_started_ || consumed > 0) {
        frame_started_ = Clock::now();
      }
      NARAE_CHECK(buffered_ < rbuf_.size());
      error_code ec;
      const size_t n = co_await stream_.async_read_some(
          asio::buffer(rbuf_.data() + buffered_, rbuf_.size() - buffered_),
          asio::redirect_error(asio::use_awaitable, ec));
      if (!stop_reason_.empty()) {                    // the read deadline passed meanwhile
        if (ec && lingering_) Close(linger_reason_);  // the client closed or reset
        co_return;
      }
      if (ec) {
        if (closed_) co_return;
        if (lingering_) {  // the client closed (or reset) its side: done
          Close(linger_reason_);
          co_return;
        }
        if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
          // The client finished sending: answer what is in flight, then close.
          reading_done_ = true;
          frame_started_.reset();
          Flush();
        } else {
          env_.logger->Log(LogLevel::kDebug, "read_error",
                           {{"conn", info_.connection_id}, {"error", ec.message()}});
          Close("read_error");
        }
        co_return;
      }
      buffered_ += n;
      if (!frame_started_) last_activity_ = Clock::now();
    }
  }

  void OnFrame(std::span<const uint8_t> body) {
    Counters& c = env_.shared->counters;
    Result<Message> msg = Unpack(body);
    if (!msg.ok()) {
      Bump(c.format_errors);
      std::optional<RecoveredHeader> header = RecoverHeader(body);
      env_.logger->Log(LogLevel::kDebug, "format_error",
                       {{"conn", info_.connection_id},
                        {"peer", info_.peer},
                        {"answered", header.has_value()},
                        {"error", msg.status().message()}});
      if (!header) {
        StopReading("format_error");
        return;
      }
      ServerReply(ServerAnswer(*AnswerMti(header->mti), header->stan, ResponseCode::kFormatError));
      return;
    }
    std::optional<std::string> answer_mti = AnswerMti(msg->mti());
    if (!answer_mti) {  // a response sent to us: never answer one
      env_.logger->Log(LogLevel::kDebug, "unexpected_response",
                       {{"conn", info_.connection_id}, {"mti", msg->mti()}});
      return;
    }
    if (!ResponseMti(msg->mti()).ok() || stopping_) {
      const ResponseCode code =
          stopping_ ? ResponseCode::kIssuerUnavailable : ResponseCode::kInvalidTransaction;
      if (stopping_) Bump(c.refused_shutting_down);
      Message answer = ServerAnswer(*answer_mti, msg->Get(11), code);
      ServerReply(std::move(answer));
      return;
    }
    ++in_flight_;
    ++awaiting_;
    Bump(c.requests);
    std::weak_ptr<Session> weak = this->weak_from_this();
    std::shared_ptr<Shared> shared = env_.shared;
    const Clock::time_point started = Clock::now();
    env_.handler->Handle(
        std::move(msg).value(), info_,
        [weak = std::move(weak), shared = std::move(shared), started](Message response) mutable {
          Deliver(weak, shared, started, std::move(response));
        });
    env_.shared->stages.handle.Record(MicrosSince(started));
  }

  // An answer the server makes itself (30, 12, 91): queued like a reply.
  void ServerReply(Message answer) {
    ++in_flight_;
    Enqueue(answer, Clock::now());
    Flush();
  }

  void DrainInbox() {
    drained_.clear();  // keeps its capacity: no allocation per group
    {
      std::lock_guard<std::mutex> lock(inbox_mu_);
      drained_.swap(inbox_);
      drain_posted_ = false;
    }
    const Clock::time_point now = Clock::now();
    for (InboxEntry& e : drained_) {
      env_.shared->stages.hop.Record(Micros(e.delivered, now));
      env_.shared->stages.to_reply.Record(Micros(e.started, e.delivered));
      OnReply(std::move(e.response), e.started);
    }
    drained_.clear();
    Flush();
  }

  void OnReply(Message response, Clock::time_point started) {
    if (closed_) {
      Bump(env_.shared->counters.replies_dropped);
      return;
    }
    if (awaiting_ == 0) {  // more replies than requests: a handler bug
      env_.logger->Log(LogLevel::kError, "reply_without_request",
                       {{"conn", info_.connection_id}, {"mti", response.mti()}});
      Bump(env_.shared->counters.replies_dropped);
      return;
    }
    --awaiting_;
    Enqueue(response, started);
  }

  void Enqueue(const Message& response, Clock::time_point started) {
    Result<std::vector<uint8_t>> framed = PackFramed(response);
    if (!framed.ok()) {
      env_.logger->Log(LogLevel::kError, "reply_not_packable",
                       {{"conn", info_.connection_id},
                        {"mti", response.mti()},
                        {"error", framed.status().message()}});
      Message fallback =
          ServerAnswer(AnswerMti(response.mti()).has_value() ? response.mti() : "0000",
                       response.Has(11) ? response.Get(11) : "", ResponseCode::kSystemMalfunction);
      framed = PackFramed(fallback);
      if (!framed.ok()) {
        Close("reply_not_packable");
        return;
      }
    }
    pending_.push_back(std::move(framed).value());
    pending_started_.push_back(started);
    pending_queued_.push_back(Clock::now());
    NARAE_CHECK(pending_.size() <= in_flight_);
    const uint64_t latency_us = MicrosSince(started);
    Counters& c = env_.shared->counters;
    Bump(c.responses);
    env_.shared->latency.Record(latency_us);
    const bool approved = response.Get(39) == "00";
    if (approved) Bump(c.approved);
    const LogLevel level = approved ? LogLevel::kTrace : LogLevel::kDebug;
    if (env_.logger->Enabled(level)) {
      std::string pan_masked;
      std::vector<LogField> fields = RequestLogFields(response, &response, latency_us, &pan_masked);
      fields.emplace_back("conn", info_.connection_id);
      env_.logger->Log(level, "response", fields);
    }
  }

  // On the strand: writes the queued replies with one writev unless a write
  // is in flight (its completion comes back here), and closes the
  // connection once nothing is in flight after the client or the server is
  // done. Callback style: no timer to arm and cancel per batch.
  void Flush() {
    if (closed_ || writing_) return;
    if (pending_.empty()) {
      if (in_flight_ == 0 && (stopping_ || reading_done_ || !stop_reason_.empty())) {
        CloseAfterLinger(stopping_               ? "shutdown"
                         : !stop_reason_.empty() ? stop_reason_
                                                 : "client_done");
      }
      return;
    }
    NARAE_CHECK(batch_.empty());
    batch_.swap(pending_);
    batch_started_.swap(pending_started_);
    batch_queued_.swap(pending_queued_);
    buffers_.clear();
    for (const auto& frame : batch_) buffers_.push_back(asio::buffer(frame));
    writing_ = true;
    write_started_ = Clock::now();
    asio::async_write(
        stream_, buffers_,
        [self = this->shared_from_this()](const error_code& ec, size_t) { self->OnWritten(ec); });
  }

  void OnWritten(const error_code& ec) {
    writing_ = false;
    if (ec) {
      if (!closed_) {
        env_.logger->Log(LogLevel::kDebug, "write_error",
                         {{"conn", info_.connection_id}, {"error", ec.message()}});
        Close("write_error");
      }
      return;
    }
    NARAE_CHECK(in_flight_ >= batch_.size());
    in_flight_ -= static_cast<uint32_t>(batch_.size());
    const Clock::time_point now = Clock::now();
    for (size_t i = 0; i < batch_started_.size(); ++i) {
      env_.shared->stages.write.Record(Micros(batch_queued_[i], now));
      env_.shared->stages.total.Record(Micros(batch_started_[i], now));
    }
    batch_started_.clear();
    batch_queued_.clear();
    batch_.clear();  // the frames' buffers go; the vector keeps its capacity
    last_activity_ = Clock::now();
    if (paused_) read_signal_.cancel();
    Flush();
  }

  // Wakes every `tick` and closes the connection when a deadline has passed.
  asio::awaitable<void> Watchdog() {
    auto self = this->shared_from_this();
    const ServerOptions& opt = *env_.options;
    const uint32_t shortest =
        std::min({opt.read_timeout_ms, opt.idle_timeout_ms, opt.write_timeout_ms});
    const auto tick = std::chrono::milliseconds(std::clamp<uint32_t>(shortest / 8, 5, 1000));
    while (!closed_) {
      watchdog_.expires_after(lingering_ ? linger_poll_ : tick);
      error_code ec;
      co_await watchdog_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (closed_) co_return;
      CheckDeadlines();
    }
  }

  void CheckDeadlines() {
    const ServerOptions& opt = *env_.options;
    const Clock::time_point now = Clock::now();
    Counters& c = env_.shared->counters;
    const auto ms = [](uint32_t v) { return std::chrono::milliseconds(v); };
    if (lingering_) {  // nothing more is written or answered
      const int fd = Lowest().native_handle();
      // With no Reader left (StopReading), the client's FIN or reset is seen
      // here: after a reset SIOCOUTQ never reaches 0. A Reader still running
      // sees them itself, and reading under it would break a TLS stream.
      if (!stop_reason_.empty() &&
          DrainReceived(fd, &linger_dropped_bytes_) != DrainResult::kWouldBlock) {
        Close(linger_reason_);
      } else if (UnackedBytes(fd) == 0) {
        // Unread bytes at close would make the kernel send a reset, and some
        // clients' kernels (not Linux's) drop unread replies on a reset.
        (void)DrainReceived(fd, &linger_dropped_bytes_);
        Close(linger_reason_);
      } else if (now - linger_started_ >= ms(opt.write_timeout_ms)) {
        Bump(c.write_timeouts);
        LogTimeout("write_timeout", opt.write_timeout_ms);
        Close(linger_reason_);
      }
      linger_poll_ = std::min<Clock::duration>(linger_poll_ * 2, kLingerPollMax);
      return;
    }
    if (writing_ && now - write_started_ >= ms(opt.write_timeout_ms)) {
      Bump(c.write_timeouts);
      LogTimeout("write_timeout", opt.write_timeout_ms);
      Close("write_timeout");
    } else if (paused_ || reading_done_ || !stop_reason_.empty()) {
      return;  // not reading: only the write deadline applies
    } else if (frame_started_ && now - *frame_started_ >= ms(opt.read_timeout_ms)) {
      Bump(c.read_timeouts);
      LogTimeout(handshaking_ ? "handshake_timeout" : "read_timeout", opt.read_timeout_ms);
      if (handshaking_) {
        Close("handshake_timeout");
      } else {
        StopReading("read_timeout");
      }
    } else if (!frame_started_ && in_flight_ == 0 &&
               now - last_activity_ >= ms(opt.idle_timeout_ms)) {
      Bump(c.idle_timeouts);
      LogTimeout("idle_timeout", opt.idle_timeout_ms);
      Close("idle_timeout");
    }
  }

  void LogTimeout(std::string_view event, uint32_t limit_ms) {
    env_.logger->Log(LogLevel::kInfo, event,
                     {{"conn", info_.connection_id}, {"peer", info_.peer}, {"limit_ms", limit_ms}});
  }

  // The client broke the framing (a length out of bounds, a message whose
  // header cannot be read) or stalled mid-frame: nothing more it sends is
  // read. The requests already read still get their replies, then the
  // connection ends (CloseAfterLinger). Before, it was closed at once and the
  // replies of requests the ledger applied were dropped. `reason`: a literal.
  void StopReading(std::string_view reason) {
    if (closed_ || !stop_reason_.empty()) return;
    NARAE_CHECK(!lingering_ && !reading_done_);
    stop_reason_ = reason;
    frame_started_.reset();
    Flush();
  }

  // Ends a connection whose replies are all written but perhaps not yet
  // taken by the client. A write completes once the kernel holds the bytes;
  // a closed socket keeps sending them, but throws them away (with a reset)
  // as soon as the client sends anything more, or when unread requests were
  // left at close. The client then never sees replies to requests the ledger
  // applied: an approved purchase whose approval never arrives. So: FIN after
  // the replies, then read and drop whatever the client still sends, and
  // close only once the client has acknowledged every byte (SIOCOUTQ is 0)
  // or closed its side, or after write_timeout_ms (a client that does not
  // read, as for any write), or kLingerBytesMax dropped. `reason` must
  // outlive the session (a literal).
  void CloseAfterLinger(std::string_view reason) {
    if (closed_ || lingering_) return;
    NARAE_CHECK(!writing_ && pending_.empty() && in_flight_ == 0);
    if (reading_done_) {  // the client's FIN came: it sends nothing to reset on
      Close(reason);
      return;
    }
    lingering_ = true;
    linger_reason_ = reason;
    linger_started_ = Clock::now();
    error_code ec;
    Lowest().shutdown(tcp::socket::shutdown_send, ec);
    if (ec || UnackedBytes(Lowest().native_handle()) == 0) {
      if (!ec) (void)DrainReceived(Lowest().native_handle(), &linger_dropped_bytes_);
      Close(reason);
      return;
    }
    watchdog_.cancel();  // it wakes and polls from kLingerPollFirst on
  }

  void Close(std::string_view reason) {
    if (closed_) return;
    closed_ = true;
    error_code ec;
    auto& socket = Lowest();
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
    read_signal_.cancel();
    watchdog_.cancel();
    env_.shared->counters.connections_open.fetch_sub(1, std::memory_order_relaxed);
    env_.logger->Log(LogLevel::kDebug, "connection_closed",
                     {{"conn", info_.connection_id}, {"reason", reason}});
    Unregister(env_.server, info_.connection_id);
  }

  Stream stream_;
  asio::any_io_executor executor_;  // the connection's strand
  SessionEnv env_;
  ReadyList* const ready_;  // its I/O thread's (in env_.shared)
  ConnectionInfo info_;
  asio::steady_timer read_signal_;  // cancelled to wake a paused reader
  asio::steady_timer watchdog_;
  // Replies handed over by Deliver (any thread), taken by DrainInbox on the
  // strand. At most one entry per request handed to the handler (a second
  // reply from a buggy handler is logged and dropped by OnReply), so bounded by
  // max_in_flight_per_connection.
  struct InboxEntry {
    Message response;
    Clock::time_point started;
    Clock::time_point delivered;  // Deliver() (stage stamps)
  };
  std::mutex inbox_mu_;
  std::vector<InboxEntry> inbox_;  // GUARDED_BY(inbox_mu_)
  bool drain_posted_ = false;      // GUARDED_BY(inbox_mu_)
  // All below: only touched on the strand.
  std::vector<uint8_t> rbuf_;  // at most 2 + max_frame_bytes or kReadChunkBytes
  size_t buffered_ = 0;
  uint32_t in_flight_ = 0;                     // requests read and not yet answered on the wire
  uint32_t awaiting_ = 0;                      // requests handed to the handler and not yet replied
  std::vector<std::vector<uint8_t>> pending_;  // framed replies to write; <= in_flight_
  std::vector<std::vector<uint8_t>> batch_;    // the replies being written (writing_)
  // Stage stamps of pending_ and batch_ (frame decoded, reply queued).
  std::vector<Clock::time_point> pending_started_, pending_queued_;
  std::vector<Clock::time_point> batch_started_, batch_queued_;
  std::vector<asio::const_buffer> buffers_;  // batch_'s buffers for the writev
  std::vector<InboxEntry> drained_;          // DrainInbox's batch, reused
  std::optional<Clock::time_point> frame_started_;
  Clock::time_point last_activity_;
  Clock::time_point write_started_;
  bool writing_ = false;
  bool paused_ = false;
  bool handshaking_ = false;
  bool reading_done_ = false;
  bool stopping_ = false;
  std::string_view stop_reason_;  // StopReading: not empty once reading stopped
  bool lingering_ = false;        // CloseAfterLinger: FIN sent, reading to drop
  std::string_view linger_reason_;
  Clock::time_point linger_started_;
  Clock::duration linger_poll_ = kLingerPollFirst;
  uint64_t linger_dropped_bytes_ = 0;
  bool closed_ = false;
};

// ---------------------------------------------------------------------------
class ServerImpl final : public IsoServer {
 public:
  ServerImpl(const ServerOptions& options, IsoHandler* handler, Logger* logger)
      : options_(options),
        handler_(handler),
        logger_(logger),
        shared_(std::make_shared<Shared>()),
        threads_count_(IoThreadCount(options.threads, options.io_cpus)),
        iocs_(MakeIoContexts(threads_count_)),
        accept_strand_(asio::make_strand(*iocs_[0])),
        acceptor_(accept_strand_),
        summary_timer_(accept_strand_) {
    if (logger_ == nullptr) {
      own_logger_ = std::make_unique<Logger>(LogLevel::kWarn);
      logger_ = own_logger_.get();
    }
    env_ = SessionEnv{&options_, handler_, logger_, shared_, this};
    for (auto& ioc : iocs_) {
      works_.push_back(asio::make_work_guard(*ioc));
      shared_->ready.push_back(std::make_unique<ReadyList>());
      shared_->ready.back()->ioc = ioc.get();
      shared_->ready.back()->shared = shared_.get();
    }
  }

  ~ServerImpl() override { Shutdown(); }

  Status Listen() {
    std::string host;
    uint16_t port = 0;
    NARAE_RETURN_IF_ERROR(ParseHostPort(options_.iso_listen, &host, &port));
    if (host == "localhost") host = "127.0.0.1";
    error_code ec;
    const asio::ip::address address = asio::ip::make_address(host, ec);
    if (ec) return Status::InvalidArgument("iso_listen: '" + host + "' is not an IP address");
    if (options_.tls.enabled()) NARAE_RETURN_IF_ERROR(SetUpTls());
    const tcp::endpoint endpoint(address, port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::IOError("cannot listen on " + options_.iso_listen + ": " + ec.message());
    const tcp::endpoint bound = acceptor_.local_endpoint(ec);
    if (ec) return Status::IOError("local_endpoint: " + ec.message());
    port_ = bound.port();
    listen_address_ = (address.is_v6() ? "[" + address.to_string() + "]" : address.to_string()) +
                      ":" + std::to_string(port_);
    return Status::Ok();
  }

  void Run() {
    asio::co_spawn(
        accept_strand_, [this]() { return AcceptLoop(); }, asio::detached);
    if (options_.summary_interval_ms > 0) {
      asio::co_spawn(
          accept_strand_, [this]() { return SummaryLoop(); }, asio::detached);
    }
    for (uint32_t i = 0; i < threads_count_; ++i) {
      threads_.emplace_back([this, i] { RunThread(i); });
    }
    logger_->Log(LogLevel::kInfo, "listening",
                 {{"iso", listen_address_},
                  {"tls", options_.tls.enabled()},
                  {"mutual_tls", !options_.tls.client_ca_file.empty()},
                  {"threads", threads_count_}});
  }

  std::string listen_address() const override { return listen_address_; }
  uint16_t port() const override { return port_; }

  void Shutdown() override;

  ServerStats Stats() const override {
    const Counters& c = shared_->counters;
    ServerStats s;
    s.connections_accepted = Load(c.connections_accepted);
    s.connections_rejected = Load(c.connections_rejected);
    s.connections_open = Load(c.connections_open);
    s.tls_handshake_failures = Load(c.tls_handshake_failures);
    s.requests = Load(c.requests);
    s.responses = Load(c.responses);
    s.format_errors = Load(c.format_errors);
    s.frames_rejected = Load(c.frames_rejected);
    s.read_timeouts = Load(c.read_timeouts);
    s.idle_timeouts = Load(c.idle_timeouts);
    s.write_timeouts = Load(c.write_timeouts);
    s.replies_dropped = Load(c.replies_dropped);
    s.refused_shutting_down = Load(c.refused_shutting_down);
    return s;
  }

  void Unregister(uint64_t id) {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    sessions_.erase(id);
    if (sessions_.empty()) sessions_cv_.notify_all();
  }

 private:
  Status SetUpTls() {
    try {
      ssl_ = std::make_unique<ssl::context>(ssl::context::tls_server);
      ssl_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                        ssl::context::single_dh_use);
      ssl_->use_certificate_chain_file(options_.tls.cert_file);
      ssl_->use_private_key_file(options_.tls.key_file, ssl::context::pem);
      if (!options_.tls.client_ca_file.empty()) {
        ssl_->load_verify_file(options_.tls.client_ca_file);
        ssl_->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      }
    } catch (const boost::system::system_error& e) {
      return Status::IOError(std::string("TLS setup (cert, key or client CA file): ") + e.what());
    }
    return Status::Ok();
  }

  // One io_context per I/O thread (concurrency hint 1), each connection on
  // one of them: Asio's shared scheduler woke the other I/O thread (a futex
  // wake and wait, a context switch) for about every second request.
  static std::vector<std::unique_ptr<asio::io_context>> MakeIoContexts(uint32_t count) {
    std::vector<std::unique_ptr<asio::io_context>> out;
    for (uint32_t i = 0; i < count; ++i) out.push_back(std::make_unique<asio::io_context>(1));
    return out;
  }

  void RunThread(uint32_t lane) {
    if (Status st = ledger::PinThisThread(options_.io_cpus); !st.ok() && logger_) {
      logger_->Log(LogLevel::kWarn, "io_thread_unpinned", {{"error", st.ToString()}});
    }
    pthread_setname_np(pthread_self(), "narae-iso");    // per-thread CPU in `top -H`, /proc
    for (int attempt = 0; attempt < 1000; ++attempt) {  // bounded restarts after a throw
      try {
        iocs_[lane]->run();
        return;
      } catch (const std::exception& e) {
        logger_->Log(LogLevel::kError, "io_thread_exception", {{"what", e.what()}});
      }
    }
  }

  asio::awaitable<void> AcceptLoop() {
    for (;;) {  // ends when the acceptor is closed
      const uint32_t lane = next_lane_;
      next_lane_ = (next_lane_ + 1) % threads_count_;
      tcp::socket socket(asio::make_strand(*iocs_[lane]));
      error_code ec;
      co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
        logger_->Log(LogLevel::kWarn, "accept_error", {{"error", ec.message()}});
        if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
          // Out of file descriptors: back off instead of spinning.
          asio::steady_timer backoff(accept_strand_, std::chrono::milliseconds(50));
          co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
        continue;
      }
      try {
        Accepted(std::move(socket), lane);
      } catch (const std::exception& e) {
        logger_->Log(LogLevel::kError, "accept_exception", {{"what", e.what()}});
      }
    }
  }

  void Accepted(tcp::socket socket, uint32_t lane) {
    Counters& c = shared_->counters;
    error_code ec;
    if (Load(c.connections_open) >= options_.max_connections || stopping_.load()) {
      Bump(c.connections_rejected);
      logger_->Log(LogLevel::kDebug, "connection_rejected",
                   {{"peer", PeerOf(socket)}, {"max_connections", options_.max_connections}});
      socket.close(ec);
      return;
    }
    Bump(c.connections_accepted);
    c.connections_open.fetch_add(1, std::memory_order_relaxed);
    socket.set_option(tcp::no_delay(true), ec);
    ConnectionInfo info;
    info.connection_id = ++next_connection_id_;
    info.peer = PeerOf(socket);
    info.tls = ssl_ != nullptr;
    logger_->Log(LogLevel::kDebug, "connection_accepted",
                 {{"conn", info.connection_id}, {"peer", info.peer}});
    std::shared_ptr<SessionBase> base;
    if (ssl_ != nullptr) {
      auto s = std::make_shared<Session<ssl::stream<tcp::socket>>>(
          ssl::stream<tcp::socket>(std::move(socket), *ssl_), env_, std::move(info),
          shared_->ready[lane].get());
      Register(s->id(), s);
      s->Start();
    } else {
      auto s = std::make_shared<Session<tcp::socket>>(std::move(socket), env_, std::move(info),
                                                      shared_->ready[lane].get());
      Register(s->id(), s);
      s->Start();
    }
  }

  void Register(uint64_t id, std::weak_ptr<SessionBase> session) {
    std::lock_guard<std::mutex> lock(sessions_mu_);
    sessions_.emplace(id, std::move(session));
  }

  asio::awaitable<void> SummaryLoop();
  // One `stages` line: count, p50, p99, p99.9 and max of every stage.
  void LogStages() {
    Shared::Stages& st = shared_->stages;
    const std::pair<const char*, LatencyHistogram*> all[] = {
        {"handle", &st.handle}, {"to_reply", &st.to_reply},
        {"hop", &st.hop},       {"write", &st.write},
        {"total", &st.total},   {"frames_per_read", &st.frames_per_read}};
    std::vector<std::string> keys;  // the fields' keys are views
    keys.reserve(std::size(all) * 5);
    std::vector<LogField> fields;
    for (const auto& [name, h] : all) {
      const LatencyHistogram::Summary sum = h->Summarize(true);
      const std::string n(name);
      const std::pair<const char*, uint64_t> v[] = {{"_n", sum.count},
                                                    {"_p50", sum.p50_us},
                                                    {"_p99", sum.p99_us},
                                                    {"_p999", sum.p999_us},
                                                    {"_max", sum.max_us}};
      for (const auto& [suffix, value] : v) {
        keys.push_back(n + suffix);
        fields.emplace_back(keys.back(), value);
      }
    }
    logger_->Log(LogLevel::kInfo, "stages", fields);
  }

  std::vector<std::shared_ptr<SessionBase>> LiveSessions() {
    std::vector<std::shared_ptr<SessionBase>> out;
    std::lock_guard<std::mutex> lock(sessions_mu_);
    for (auto& [id, weak] : sessions_) {
      if (auto s = weak.lock()) out.push_back(std::move(s));
    }
    return out;
  }

  // Waits until no session is registered or `deadline` passes.
  bool WaitNoSessions(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(sessions_mu_);
    return sessions_cv_.wait_until(lock, deadline, [this] { return sessions_.empty(); });
  }

  const ServerOptions options_;
  IsoHandler* const handler_;
  Logger* logger_;
  std::unique_ptr<Logger> own_logger_;
  std::shared_ptr<Shared> shared_;
  const uint32_t threads_count_;
  SessionEnv env_;
  std::unique_ptr<ssl::context> ssl_;
  std::string listen_address_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex shutdown_mu_;  // serializes Shutdown()
  bool shut_down_ = false;  // GUARDED_BY(shutdown_mu_)
  std::mutex sessions_mu_;
  std::condition_variable sessions_cv_;
  std::unordered_map<uint64_t, std::weak_ptr<SessionBase>> sessions_;  // GUARDED_BY(sessions_mu_)
  uint64_t next_connection_id_ = 0;                                    // accept strand only
  uint32_t next_lane_ = 0;                                             // accept strand only
  std::vector<std::thread> threads_;
  // Declared last: destroyed first, with every session and pending handler,
  // while everything above is still alive.
  std::vector<std::unique_ptr<asio::io_context>> iocs_;          // one per I/O thread
  asio::strand<asio::io_context::executor_type> accept_strand_;  // on iocs_[0]
  tcp::acceptor acceptor_;
  asio::steady_timer summary_timer_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> works_;
};

void Unregister(ServerImpl* server, uint64_t id) { server->Unregister(id); }

asio::awaitable<void> ServerImpl::SummaryLoop() {
  const Counters& c = shared_->counters;
  uint64_t last_requests = Load(c.requests);
  uint64_t last_responses = Load(c.responses);
  uint64_t last_approved = Load(c.approved);
  Clock::time_point last = Clock::now();
  while (!stopping_.load()) {  // ends at shutdown
    summary_timer_.expires_after(std::chrono::milliseconds(options_.summary_interval_ms));
    error_code ec;
    co_await summary_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping_.load()) co_return;
    const uint64_t requests = Load(c.requests);
    const uint64_t responses = Load(c.responses);
    const uint64_t approved = Load(c.approved);
    const Clock::time_point now = Clock::now();
    if (responses == last_responses && requests == last_requests) {
      last = now;
      continue;  // nothing to say
    }
    const LatencyHistogram::Summary lat = shared_->latency.Summarize(true);
    const uint64_t elapsed_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(now - last).count());
    const uint64_t per_s = elapsed_ms == 0 ? 0 : (responses - last_responses) * 1000 / elapsed_ms;
    logger_->Log(
        LogLevel::kInfo, "summary",
        {{"interval_ms", elapsed_ms},
         {"requests", requests - last_requests},
         {"responses", responses - last_responses},
         {"approved", approved - last_approved},
         {"responses_per_s", per_s},
         {"latency_p50_us", lat.p50_us},
         {"latency_p99_us", lat.p99_us},
         {"latency_max_us", lat.max_us},
         {"connections_open", Load(c.connections_open)},
         {"connections_rejected", Load(c.connections_rejected)},
         {"format_errors", Load(c.format_errors)},
         {"timeouts", Load(c.read_timeouts) + Load(c.idle_timeouts) + Load(c.write_timeouts)}});
    last_requests = requests;
    last_responses = responses;
    last_approved = approved;
    last = now;
  }
}

void ServerImpl::Shutdown() {
  std::lock_guard<std::mutex> once(shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  const Clock::time_point began = Clock::now();
  stopping_.store(true);
  if (!threads_.empty()) {
    logger_->Log(LogLevel::kInfo, "shutdown_begin",
                 {{"connections_open", Load(shared_->counters.connections_open)},
                  {"grace_ms", options_.shutdown_grace_ms}});
  }
  asio::post(accept_strand_, [this] {
    error_code ec;
    acceptor_.close(ec);
    summary_timer_.cancel();
  });
  for (auto& s : LiveSessions()) s->BeginShutdown();
  const bool drained =
      WaitNoSessions(began + std::chrono::milliseconds(options_.shutdown_grace_ms));
  if (!drained) {
    for (auto& s : LiveSessions()) s->ForceClose();
    WaitNoSessions(Clock::now() + std::chrono::seconds(2));
  }
  works_.clear();
  for (auto& ioc : iocs_) ioc->stop();
  for (auto& t : threads_) t.join();
  {
    // From here on a late reply is dropped before it touches the io_context.
    std::unique_lock<std::shared_mutex> gate(shared_->gate_mu);
    shared_->gate_open = false;
  }
  {
    // Sessions still listed for a drain go now, while the io_context exists.
    std::vector<std::shared_ptr<SessionBase>> ready;
    for (auto& list : shared_->ready) {
      std::lock_guard<std::mutex> lock(list->mu);
      for (auto& s : list->sessions) ready.push_back(std::move(s));
      list->sessions.clear();
    }
  }
  if (!threads_.empty()) LogStages();
  if (!threads_.empty()) {
    logger_->Log(
        LogLevel::kInfo, "shutdown_done",
        {{"drained", drained},
         {"elapsed_ms",
          static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began).count())},
         {"responses", Load(shared_->counters.responses)}});
  }
  threads_.clear();
}

Status ValidateServerOptions(const ServerOptions& o) {
  const auto bad = [](const char* what) { return Status::InvalidArgument(what); };
  if (o.max_frame_bytes < kMessageBytesMin || o.max_frame_bytes > kMessageBytesMax) {
    return bad("max_frame_bytes must be 12..65535");
  }
  if (o.max_connections < 1 || o.max_connections > 1000000) {
    return bad("max_connections must be 1..1000000");
  }
  if (o.max_in_flight_per_connection < 1 || o.max_in_flight_per_connection > 65535) {
    return bad("max_in_flight_per_connection must be 1..65535");
  }
  if (Status st = ledger::CheckCpus(o.io_cpus); !st.ok()) {
    return Status::InvalidArgument("io_cpus: " + st.message());
  }
  if (o.read_timeout_ms == 0 || o.idle_timeout_ms == 0 || o.write_timeout_ms == 0) {
    return bad("read_timeout_ms, idle_timeout_ms and write_timeout_ms must be > 0");
  }
  if (o.threads > 256) return bad("threads must be 0..256");
  if (o.shutdown_grace_ms > 600000) return bad("shutdown_grace_ms must be <= 600000");
  if (o.tls.enabled() && o.tls.key_file.empty()) return bad("tls: key_file is required");
  if (!o.tls.enabled() && (!o.tls.key_file.empty() || !o.tls.client_ca_file.empty())) {
    return bad("tls: key_file/client_ca_file given without cert_file");
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<IsoServer>> IsoServer::Start(const ServerOptions& options,
                                                    IsoHandler* handler, Logger* logger) {
  NARAE_CHECK(handler != nullptr);
  NARAE_RETURN_IF_ERROR(ValidateServerOptions(options));
  try {
    auto server = std::make_unique<ServerImpl>(options, handler, logger);
    NARAE_RETURN_IF_ERROR(server->Listen());
    server->Run();
    return std::unique_ptr<IsoServer>(std::move(server));
  } catch (const std::exception& e) {
    return Status::Internal(std::string("starting the ISO 8583 server: ") + e.what());
  }
}

}  // namespace narae::switching
