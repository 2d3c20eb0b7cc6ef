// The storefront API load mode (see bench_http.hpp and docs/api.md): keep-
// alive connections, each with one signed POST /v1/payments (a manual-
// capture card hold, a fresh Idempotency-Key and nonce) in flight at a time,
// for the demo merchants in turn. Prints authorizations/s and the latency
// percentiles; a 201 is a durable authorization.
//
// The load generator shares the machine's cores with the switch it
// measures, so its own cost per request is kept far below the server's
// (docs/api.md "Load mode and figures"):
// - each thread puts its connections on one io_uring (UringLoop): a turn
//   queues the sends of the requests to make and the receives of their
//   answers, and one io_uring_enter submits them all and takes the
//   completions that came in, where a plain loop makes a send() and a recv()
//   system call per request (each ~1 us of entry and exit alone on this
//   paravirtualized machine). Where the kernel has no io_uring (or refuses
//   it) the thread runs an epoll loop (EpollLoop, level-triggered, EPOLLIN
//   registered once: one send() and one recv() per request);
// - each merchant's HMAC is keyed once (RequestMac: the SHA-256 states after
//   the key's pads and the canonical string's constant head), the request
//   built into buffers each connection reuses and signed in place: no
//   allocation per request;
// - the answer is parsed in place: status line, Content-Length, the body
//   read whole; a 201 must carry `"status":"authorized"` and the request's
//   own order_ref, anything else malformed is an error.
#define OPENSSL_SUPPRESS_DEPRECATED  // SHA256_* (RequestMac)
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
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
#include "tools/percentile.hpp"

namespace narae::tools {
namespace {

using Json = nlohmann::json;
using namespace std::string_view_literals;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kConnectionsMax = 4096;
constexpr uint32_t kThreadsMax = 64;
constexpr size_t kLatencySamplesMax = 4'000'000;
constexpr size_t kResponseBytesMax = 1 << 20;  // one answer, head and body
constexpr size_t kResponseBufferBytes = 4096;  // a connection's first (answers are ~600 bytes)
constexpr int kEventsMax = 256;                // epoll events taken per wait
constexpr time_t kConnectTimeoutS = 5;         // per connection
constexpr size_t kSignatureHexSize = 64;
constexpr size_t kSecretBytesMin = 16;  // crypto::MerchantRequestSigner's
// After the run's end, how long the answers still in flight are awaited
// before they count as errors.
constexpr auto kDrainMax = std::chrono::seconds(30);

// HMAC-SHA256 of a payment's canonical string (docs/api.md
// "Authentication": "POST\n/v1/payments\nTIMESTAMP\nNONCE\nBODY_SHA256_HEX")
// keyed once per merchant: the SHA-256 states after the key's inner and
// outer pads (RFC 2104), the inner one also past the constant "POST\n/v1/
// payments\n". A request copies them (plain structs, no allocation, no
// provider look-up) and hashes only its own bytes; the hex goes straight into
// the request. Equal to crypto::SignMerchantRequest (BenchHttpSign.*).
// OpenSSL 3 marks SHA256_* deprecated; they remain and run the same
// CPU-specific code as EVP (crypto/merchant.cpp keys its HMAC likewise).
class RequestMac {
 public:
  RequestMac() = default;
  RequestMac(const RequestMac&) = default;
  RequestMac& operator=(const RequestMac&) = default;
  ~RequestMac() { explicit_bzero(this, sizeof *this); }  // the states stand for the key

  void Key(crypto::ByteView secret) {
    constexpr size_t kBlock = 64;
    uint8_t k[kBlock] = {};
    if (secret.size() > kBlock) {
      NARAE_CHECK(SHA256(secret.data(), secret.size(), k) != nullptr);
    } else if (!secret.empty()) {
      std::memcpy(k, secret.data(), secret.size());
    }
    uint8_t pad[kBlock];
    for (size_t i = 0; i < kBlock; ++i) pad[i] = static_cast<uint8_t>(k[i] ^ 0x36);
    NARAE_CHECK(SHA256_Init(&inner_) == 1 && SHA256_Update(&inner_, pad, kBlock) == 1);
    constexpr std::string_view kHead = "POST\n/v1/payments\n";
    NARAE_CHECK(SHA256_Update(&inner_, kHead.data(), kHead.size()) == 1);
    for (size_t i = 0; i < kBlock; ++i) pad[i] = static_cast<uint8_t>(k[i] ^ 0x5c);
    NARAE_CHECK(SHA256_Init(&outer_) == 1 && SHA256_Update(&outer_, pad, kBlock) == 1);
    explicit_bzero(k, sizeof k);
    explicit_bzero(pad, sizeof pad);
  }

  // The signature's 64 lower-case hex digits into `hex`.
  // REQUIRES: Key() was called; `timestamp` digits, `nonce` 8..128 bytes.
  void Sign(std::string_view timestamp, std::string_view nonce, std::string_view body,
            char* hex) const {
    NARAE_CHECK(!timestamp.empty() && timestamp.size() <= 20);
    NARAE_CHECK(nonce.size() >= 8 && nonce.size() <= 128);
    SHA256_CTX c;
    uint8_t digest[32];
    NARAE_CHECK(SHA256_Init(&c) == 1 && SHA256_Update(&c, body.data(), body.size()) == 1 &&
                SHA256_Final(digest, &c) == 1);
    // The canonical string after its head: "TIMESTAMP\nNONCE\nHEX".
    char tail[20 + 1 + 128 + 1 + 64];
    size_t n = 0;
    std::memcpy(tail, timestamp.data(), timestamp.size());
    n += timestamp.size();
    tail[n++] = '\n';
    std::memcpy(tail + n, nonce.data(), nonce.size());
    n += nonce.size();
    tail[n++] = '\n';
    LowerHex(digest, tail + n);
    n += 64;
    c = inner_;
    NARAE_CHECK(SHA256_Update(&c, tail, n) == 1 && SHA256_Final(digest, &c) == 1);
    c = outer_;
    NARAE_CHECK(SHA256_Update(&c, digest, sizeof digest) == 1 && SHA256_Final(digest, &c) == 1);
    LowerHex(digest, hex);
    explicit_bzero(&c, sizeof c);  // it held the body's bytes (a PAN, a CVV2)
  }

 private:
  static void LowerHex(const uint8_t (&bytes)[32], char* out) {
    static constexpr std::array<char, 512> kPairs = [] {
      constexpr char kDigits[] = "0123456789abcdef";
      std::array<char, 512> t{};
      for (size_t b = 0; b < 256; ++b) {
        t[2 * b] = kDigits[b >> 4];
        t[2 * b + 1] = kDigits[b & 15];
      }
      return t;
    }();
    for (size_t i = 0; i < 32; ++i) std::memcpy(out + 2 * i, &kPairs[2 * size_t{bytes[i]}], 2);
  }

  SHA256_CTX inner_{};
  SHA256_CTX outer_{};
};

// A minimal io_uring on the raw system calls (no liburing in the build):
// the submission and completion rings mapped once, sends and receives on
// the connections' sockets (registered as fixed files when the kernel
// allows), one io_uring_enter per turn that submits what the turn queued
// and waits for a completion. Set up with SINGLE_ISSUER and DEFER_TASKRUN
// where the kernel has them (6.1+): completions are then made in this
// thread's io_uring_enter, in one batch per turn, and no other thread is
// interrupted for them. One thread uses a ring: the one that called Init().
class UringRing {
 public:
  UringRing() = default;
  UringRing(const UringRing&) = delete;
  UringRing& operator=(const UringRing&) = delete;
  ~UringRing() {
    if (sqes_ != MAP_FAILED) ::munmap(sqes_, sqes_size_);
    if (rings_ != MAP_FAILED) ::munmap(rings_, rings_size_);
    if (fd_ >= 0) ::close(fd_);
  }

  // A ring with room for `entries` operations at once; false when the
  // kernel has no io_uring, refuses it (io_uring_disabled, a seccomp
  // filter) or lacks a feature used here.
  bool Init(uint32_t entries) {
    NARAE_CHECK(entries > 0 && entries <= 2 * kConnectionsMax);
    io_uring_params p{};
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
              IORING_SETUP_DEFER_TASKRUN;
    fd_ = static_cast<int>(::syscall(__NR_io_uring_setup, entries, &p));
    if (fd_ < 0 && errno == EINVAL) {  // a kernel before 6.1: completions as they come
      p = io_uring_params{};
      fd_ = static_cast<int>(::syscall(__NR_io_uring_setup, entries, &p));
    }
    if (fd_ < 0) return false;
    constexpr uint32_t kNeeded = IORING_FEAT_SINGLE_MMAP | IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG;
    if ((p.features & kNeeded) != kNeeded || p.sq_entries < entries ||
        p.cq_entries < p.sq_entries) {
      return false;
    }
    rings_size_ = std::max(p.sq_off.array + p.sq_entries * sizeof(uint32_t),
                           p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe));
    rings_ = ::mmap(nullptr, rings_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                    IORING_OFF_SQ_RING);
    sqes_size_ = p.sq_entries * sizeof(io_uring_sqe);
    sqes_ = ::mmap(nullptr, sqes_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_,
                   IORING_OFF_SQES);
    if (rings_ == MAP_FAILED || sqes_ == MAP_FAILED) return false;
    char* const r = static_cast<char*>(rings_);
    sq_head_ = reinterpret_cast<uint32_t*>(r + p.sq_off.head);
    sq_tail_ = reinterpret_cast<uint32_t*>(r + p.sq_off.tail);
    sq_mask_ = *reinterpret_cast<uint32_t*>(r + p.sq_off.ring_mask);
    sq_entries_ = p.sq_entries;
    cq_head_ = reinterpret_cast<uint32_t*>(r + p.cq_off.head);
    cq_tail_ = reinterpret_cast<uint32_t*>(r + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<uint32_t*>(r + p.cq_off.ring_mask);
    cq_entries_ = p.cq_entries;
    cqes_ = reinterpret_cast<io_uring_cqe*>(r + p.cq_off.cqes);
    // Each slot of the submission ring names the entry of the same index.
    uint32_t* const array = reinterpret_cast<uint32_t*>(r + p.sq_off.array);
    for (uint32_t i = 0; i < sq_entries_; ++i) array[i] = i;
    tail_ = *sq_tail_;
    return true;
  }

  // The sockets, by connection index (-1: none), as fixed files: no file
  // look-up per operation. Without them (refused) the plain descriptors.
  void RegisterFiles(const std::vector<int>& fds) {
    fixed_ = ::syscall(__NR_io_uring_register, fd_, IORING_REGISTER_FILES, fds.data(),
                       static_cast<uint32_t>(fds.size())) == 0;
  }

  void Send(uint32_t index, int fd, const char* data, size_t size, uint64_t user_data) {
    io_uring_sqe& e = Queue(IORING_OP_SEND, index, fd, data, size, user_data);
    e.msg_flags = MSG_NOSIGNAL;
  }
  // A receive queued with its request finds nothing yet: it waits for the
  // socket to be readable first (no read that fails with EAGAIN).
  void Receive(uint32_t index, int fd, char* data, size_t size, uint64_t user_data,
               bool poll_first) {
    io_uring_sqe& e = Queue(IORING_OP_RECV, index, fd, data, size, user_data);
    if (poll_first) e.ioprio = IORING_RECVSEND_POLL_FIRST;
  }

  // Submits what was queued and waits (at most 1 s) for a completion;
  // false on an error other than the wait's end or an interruption.
  bool SubmitAndWait(uint32_t min_complete, int64_t wait_ns) {
    NARAE_CHECK(min_complete >= 1 && wait_ns > 0 && wait_ns <= 1'000'000'000);
    std::atomic_ref<uint32_t>(*sq_tail_).store(tail_, std::memory_order_release);
    const uint32_t to_submit =
        tail_ - std::atomic_ref<uint32_t>(*sq_head_).load(std::memory_order_acquire);
    __kernel_timespec wait{wait_ns / 1'000'000'000, wait_ns % 1'000'000'000};
    io_uring_getevents_arg arg{};
    arg.ts = reinterpret_cast<uint64_t>(&wait);
    const long r = ::syscall(__NR_io_uring_enter, fd_, to_submit, min_complete,
                             IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
    return r >= 0 || errno == ETIME || errno == EINTR || errno == EAGAIN || errno == EBUSY;
  }

  // Calls f(user_data, result) for each completion in.
  template <typename F>
  void ForEachCompletion(F&& f) {
    uint32_t head = *cq_head_;
    const uint32_t tail = std::atomic_ref<uint32_t>(*cq_tail_).load(std::memory_order_acquire);
    NARAE_CHECK(tail - head <= cq_entries_);
    for (; head != tail; ++head) {
      const io_uring_cqe& e = cqes_[head & cq_mask_];
      f(e.user_data, e.res);
    }
    std::atomic_ref<uint32_t>(*cq_head_).store(head, std::memory_order_release);
  }

 private:
  // REQUIRES: room in the submission ring (the caller's bound: at most
  // `entries` operations at once).
  io_uring_sqe& Queue(uint8_t opcode, uint32_t index, int fd, const void* data, size_t size,
                      uint64_t user_data) {
    NARAE_CHECK(tail_ - std::atomic_ref<uint32_t>(*sq_head_).load(std::memory_order_acquire) <
                sq_entries_);
    NARAE_CHECK(size <= UINT32_MAX);
    io_uring_sqe& e = static_cast<io_uring_sqe*>(sqes_)[tail_ & sq_mask_];
    ++tail_;
    e = io_uring_sqe{};
    e.opcode = opcode;
    e.flags = fixed_ ? IOSQE_FIXED_FILE : 0;
    e.fd = fixed_ ? static_cast<int32_t>(index) : fd;
    e.addr = reinterpret_cast<uint64_t>(data);
    e.len = static_cast<uint32_t>(size);
    e.user_data = user_data;
    return e;
  }

  int fd_ = -1;
  void* rings_ = MAP_FAILED;
  size_t rings_size_ = 0;
  void* sqes_ = MAP_FAILED;
  size_t sqes_size_ = 0;
  uint32_t* sq_head_ = nullptr;
  uint32_t* sq_tail_ = nullptr;
  uint32_t sq_mask_ = 0, sq_entries_ = 0;
  uint32_t tail_ = 0;  // the submission ring's tail with what is queued and not yet published
  uint32_t* cq_head_ = nullptr;
  uint32_t* cq_tail_ = nullptr;
  uint32_t cq_mask_ = 0, cq_entries_ = 0;
  io_uring_cqe* cqes_ = nullptr;
  bool fixed_ = false;
};

struct BenchMerchant {
  std::string id;
  crypto::SecretBytes secret;  // the API secret, parsed once
  RequestMac mac;              // keyed with `secret`
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

// A fixed string looked for in answers, from their end: the switch writes
// its JSON with sorted keys, so "status" closes the payment object and
// "order_ref" is a few members before it. A Horspool search run backwards
// (on a mismatch the window moves left until the needle's nearest copy of
// the window's first byte lines up with it) finds them in a few steps, where a
// forward search crossed the whole body (~0.9k instructions an answer under
// callgrind with std::boyer_moore_horspool_searcher). It finds the last
// occurrence: within a JSON text the needle, which holds unescaped quotes,
// can only be a member's name, and the switch writes each name once.
class Needle {
 public:
  explicit constexpr Needle(std::string_view s) : s_(s) {
    NARAE_CHECK(!s_.empty() && s_.size() < 256);
    for (size_t& shift : shift_) shift = s_.size();
    // The window's first byte `c`: the needle can next start where its
    // nearest `c` after its own first byte lines up with it.
    for (size_t i = s_.size() - 1; i > 0; --i) shift_[static_cast<unsigned char>(s_[i])] = i;
  }
  // Its last position in `hay`, npos when absent.
  size_t LastIn(std::string_view hay) const {
    const size_t n = s_.size();
    if (hay.size() < n) return std::string_view::npos;
    size_t at = hay.size() - n;
    for (;;) {
      if (std::memcmp(hay.data() + at, s_.data(), n) == 0) return at;
      const size_t shift = shift_[static_cast<unsigned char>(hay[at])];
      if (at < shift) return std::string_view::npos;
      at -= shift;
    }
  }
  size_t size() const { return s_.size(); }

 private:
  std::string_view s_;
  std::array<size_t, 256> shift_{};
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
    ok = kAuthorized.LastIn(body) != std::string_view::npos;
    if (ok && !order_ref.empty()) {
      const size_t at = kOrderRef.LastIn(body);
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
  // The request line and the headers that do not change, up to
  // "Idempotency-Key: ".
  std::string head_prefix;
  std::string order_ref_prefix;  // "bench-RUN-INDEX-": with the request number, its TAG
  // The request in flight, `request_size` of the `request_capacity` bytes
  // (set up for the longest request of this connection); its Idempotency-
  // Key's value, "bench-TAG", is also its order_ref.
  std::unique_ptr<char[]> request;
  size_t request_capacity = 0, request_size = 0;
  size_t order_ref_at = 0, order_ref_size = 0;
  size_t sent = 0;       // bytes of `request` written
  std::vector<char> in;  // the answer's bytes so far
  size_t in_size = 0;
  uint64_t n = 0;        // requests built
  Clock::time_point t0;  // when the request in flight was sent
  uint32_t index = 0;    // in its loop's connections (the epoll or io_uring tag)
  // epoll: EPOLLOUT registered (the request did not fit).
  bool want_write = false;
  // io_uring: a send or a receive of this connection in the ring, and the
  // answer whole before its send's completion was seen.
  bool send_queued = false, recv_queued = false, answered = false;

  std::string_view order_ref() const {
    return std::string_view(request.get() + order_ref_at, order_ref_size);
  }
  bool sending() const { return sent < request_size; }
};

// Writes a request's pieces one after the other into its buffer.
class Writer {
 public:
  Writer(char* out, size_t capacity) : out_(out), capacity_(capacity) {}
  void Put(std::string_view s) {
    NARAE_CHECK(s.size() <= capacity_ - size_);
    std::memcpy(out_ + size_, s.data(), s.size());
    size_ += s.size();
  }
  // Leaves `n` bytes to be written later; their position.
  size_t Skip(size_t n) {
    NARAE_CHECK(n <= capacity_ - size_);
    size_ += n;
    return size_ - n;
  }
  size_t size() const { return size_; }
  char* at(size_t position) const { return out_ + position; }

 private:
  char* out_;
  size_t capacity_;
  size_t size_ = 0;
};

// The decimal digits of `v` in `digits`.
template <typename Int>
std::string_view Decimal(Int v, char (&digits)[24]) {
  const std::to_chars_result r = std::to_chars(digits, digits + sizeof digits, v);
  return std::string_view(digits, static_cast<size_t>(r.ptr - digits));
}

// Builds the signed request of payment `c.n` at `now_s` into `c.request`,
// each byte written once: the body in its place after the head (its size,
// for the Content-Length, known from its pieces), the signature over it
// written where it goes.
void BuildRequest(Connection& c, int64_t now_s) {
  const BenchCard& card = *c.cards[c.n % c.cards.size()];
  char n_digits[24], amount_digits[24], timestamp_digits[24], length_digits[24];
  const std::string_view n = Decimal(c.n, n_digits);
  const std::string_view amount = Decimal(1 + c.n % 97, amount_digits);
  const std::string_view timestamp = Decimal(now_s, timestamp_digits);
  constexpr std::string_view kBodyHead = R"({"amount":)", kBodyEnd = R"("})";
  const size_t body_size = kBodyHead.size() + amount.size() + card.body_middle.size() +
                           c.order_ref_prefix.size() + n.size() + kBodyEnd.size();
  Writer w(c.request.get(), c.request_capacity);
  w.Put(c.head_prefix);  // up to "Idempotency-Key: "
  // "bench-TAG": the Idempotency-Key and the order_ref; the nonce is
  // "nonce-TAG".
  c.order_ref_at = w.size();
  w.Put(c.order_ref_prefix);
  w.Put(n);
  c.order_ref_size = w.size() - c.order_ref_at;
  w.Put("\r\nX-Narae-Timestamp: "sv);
  w.Put(timestamp);
  w.Put("\r\nX-Narae-Nonce: nonce-"sv);
  const size_t nonce_at = w.size() - 6;
  w.Put(c.order_ref().substr(6));
  const size_t nonce_size = w.size() - nonce_at;
  w.Put("\r\nX-Narae-Signature: "sv);
  const size_t signature_at = w.Skip(kSignatureHexSize);
  w.Put("\r\nContent-Length: "sv);
  w.Put(Decimal(body_size, length_digits));
  w.Put("\r\n\r\n"sv);
  const size_t body_at = w.size();
  w.Put(kBodyHead);
  w.Put(amount);
  w.Put(card.body_middle);  // up to the order_ref's value
  w.Put(c.order_ref());
  w.Put(kBodyEnd);
  NARAE_CHECK(w.size() - body_at == body_size);
  c.merchant->mac.Sign(timestamp, std::string_view(w.at(nonce_at), nonce_size),
                       std::string_view(w.at(body_at), body_size), w.at(signature_at));
  c.request_size = w.size();
  c.sent = 0;
  c.in_size = 0;
  ++c.n;
}

// What the epoll and the io_uring loops share: the connections, opening
// them, the figures of the answers.
class LoopBase {
 public:
  LoopBase(std::vector<Connection*> conns, const sockaddr_storage& addr, socklen_t addr_size,
           Clock::time_point end)
      : conns_(std::move(conns)), addr_(addr), addr_size_(addr_size), end_(end) {
    latency_us_.reserve(kLatencyReserve);
  }
  ~LoopBase() {
    for (Connection* c : conns_) Close(*c);
  }

 protected:
  // Connects `c` (a blocking connect, bounded); false (counted) on failure.
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
    return true;
  }

  // Room for the next read in `c.in` (grown up to the answer's bound);
  // false when an answer outgrew it.
  static bool MakeRoom(Connection& c) {
    if (c.in.size() - c.in_size >= 4096) return true;
    if (c.in.size() >= kResponseBytesMax + 4096) return false;
    c.in.resize(std::max(c.in.size() * 2, kResponseBufferBytes));
    return true;
  }

  // Counts a whole answer received at `now`.
  void Count(const Connection& c, int status, Clock::time_point now) {
    if (latency_us_.size() < kLatencySamplesMax) {  // the run's percentiles use this many at most
      latency_us_.push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - c.t0).count()));
    }
    switch (status) {
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
  }

  void Fail(Connection& c) {
    counts_.errors++;
    Close(c);
  }

  void Close(Connection& c) {
    if (c.fd < 0) return;
    // The shutdown ends a receive still in an io_uring (its file may be
    // held by the ring's table after the close).
    ::shutdown(c.fd, SHUT_RDWR);
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

  static constexpr size_t kLatencyReserve = 1 << 20;

  std::vector<Connection*> conns_;
  sockaddr_storage addr_;
  socklen_t addr_size_;
  Clock::time_point end_;
  size_t open_ = 0;  // connections with a socket
  Counts counts_;
  std::vector<uint32_t> latency_us_;
};

// One thread's connections in one epoll loop: each sends its next request
// when the answer to the last one is in, until `end`; then the answers in
// flight are awaited (at most kDrainMax). The loop where io_uring is
// missing or refused.
class EpollLoop : LoopBase {
 public:
  using LoopBase::LoopBase;
  ~EpollLoop() {
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
      if (Open(*conns_[i], i) && Watch(*conns_[i])) Send(*conns_[i], Clock::now(), true);
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
        if ((events[e].events & EPOLLOUT) && c.sending()) {
          Send(c, Clock::now(), false);
          continue;
        }
        if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) Receive(c);
      }
    }
    Publish(totals);
  }

 private:
  bool Watch(Connection& c) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = c.index;
    if (::fcntl(c.fd, F_SETFL, O_NONBLOCK) != 0 || ::epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev)) {
      Fail(c);
      return false;
    }
    return true;
  }

  // Writes the rest of the request, a new one first when `next` (the last
  // was answered); waits for EPOLLOUT when the socket's buffer is full.
  void Send(Connection& c, Clock::time_point now, bool next) {
    if (next) {
      BuildRequest(c, UnixSeconds());
      c.t0 = now;
    }
    const ssize_t w = ::send(c.fd, c.request.get() + c.sent, c.request_size - c.sent, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
      Fail(c);
      return;
    }
    if (w > 0) c.sent += static_cast<size_t>(w);
    WantWrite(c, c.sending());
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
    if (!MakeRoom(c)) {
      Fail(c);
      return;
    }
    const ssize_t r = ::recv(c.fd, c.in.data() + c.in_size, c.in.size() - c.in_size, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0 || c.sending()) {  // closed, failed, or an answer not asked for
      Fail(c);
      return;
    }
    c.in_size += static_cast<size_t>(r);
    const HttpAnswer a = ParseHttpAnswer(std::string_view(c.in.data(), c.in_size), c.order_ref());
    if (a.state == HttpAnswer::State::kIncomplete) return;
    if (a.state == HttpAnswer::State::kMalformed) {
      Fail(c);
      return;
    }
    const Clock::time_point now = Clock::now();
    Count(c, a.status, now);
    if (now >= end_) {
      Close(c);
      return;
    }
    Send(c, now, true);
  }

  int epoll_ = -1;
};

// One thread's connections on one io_uring (see UringRing): each request's
// send and its answer's receive are queued in the ring, and one
// io_uring_enter per turn submits all that the turn queued and takes the
// completions that came in: no send() and recv() system call per request.
// The same rules as EpollLoop otherwise.
class UringLoop : LoopBase {
 public:
  using LoopBase::LoopBase;

  // false when this kernel offers no io_uring (nothing opened, nothing
  // counted): the caller runs an EpollLoop instead.
  bool Init() {
    NARAE_CHECK(!conns_.empty() && conns_.size() <= kConnectionsMax);
    // At most a send and a receive per connection in the ring.
    return ring_.Init(static_cast<uint32_t>(2 * conns_.size()));
  }

  // REQUIRES: Init() returned true, on this thread.
  void Run(Totals& totals) {
    std::vector<int> fds(conns_.size(), -1);
    for (uint32_t i = 0; i < conns_.size(); ++i) {
      if (Open(*conns_[i], i)) fds[i] = conns_[i]->fd;
    }
    ring_.RegisterFiles(fds);
    const int64_t now_s = UnixSeconds();
    for (Connection* c : conns_) {
      if (c->fd >= 0) Next(*c, Clock::now(), now_s);
    }
    const Clock::time_point give_up = end_ + kDrainMax;
    while (open_ > 0) {
      if (Clock::now() >= give_up) {
        counts_.errors += open_;  // unanswered
        break;
      }
      // Woken at the first completion: waiting for several (with a bounded
      // wait) made more context switches, not fewer (docs/api.md).
      if (!ring_.SubmitAndWait(1, 1'000'000'000)) {
        counts_.errors += open_;
        break;
      }
      const Clock::time_point now = Clock::now();
      const int64_t turn_s = UnixSeconds();
      ring_.ForEachCompletion([&](uint64_t user_data, int32_t res) {
        Connection& c = *conns_[user_data >> 1];
        if (user_data & 1) {
          OnSent(c, res, now, turn_s);
        } else {
          OnReceived(c, res, now, turn_s);
        }
      });
    }
    // Shut down before the ring goes: a receive still queued ends now.
    for (Connection* c : conns_) Close(*c);
    Publish(totals);
  }

 private:
  // The next request of `c`, its send and its answer's receive queued.
  void Next(Connection& c, Clock::time_point now, int64_t now_s) {
    BuildRequest(c, now_s);
    c.t0 = now;
    c.answered = false;
    QueueSend(c);
    QueueReceive(c);
  }

  void QueueSend(Connection& c) {
    ring_.Send(c.index, c.fd, c.request.get() + c.sent, c.request_size - c.sent,
               uint64_t{c.index} << 1 | 1);
    c.send_queued = true;
  }

  void QueueReceive(Connection& c) {
    if (!MakeRoom(c)) {
      Fail(c);
      return;
    }
    ring_.Receive(c.index, c.fd, c.in.data() + c.in_size, c.in.size() - c.in_size,
                  uint64_t{c.index} << 1, c.in_size == 0);
    c.recv_queued = true;
  }

  void OnSent(Connection& c, int32_t res, Clock::time_point now, int64_t now_s) {
    c.send_queued = false;
    if (c.fd < 0) return;
    if (res < 0 && res != -EAGAIN && res != -EINTR) {
      Fail(c);
      return;
    }
    if (res > 0) c.sent += static_cast<size_t>(res);
    if (c.sending()) {
      QueueSend(c);
    } else if (c.answered) {
      Answered(c, now, now_s);
    }
  }

  void OnReceived(Connection& c, int32_t res, Clock::time_point now, int64_t now_s) {
    c.recv_queued = false;
    if (c.fd < 0) return;
    if (res == -EAGAIN || res == -EINTR) {
      QueueReceive(c);
      return;
    }
    if (res <= 0) {  // closed or failed
      Fail(c);
      return;
    }
    c.in_size += static_cast<size_t>(res);
    const HttpAnswer a = ParseHttpAnswer(std::string_view(c.in.data(), c.in_size), c.order_ref());
    if (a.state == HttpAnswer::State::kIncomplete) {
      QueueReceive(c);
      return;
    }
    if (a.state == HttpAnswer::State::kMalformed) {
      Fail(c);
      return;
    }
    Count(c, a.status, now);
    // The send's completion may be further down this turn's completions.
    c.answered = true;
    if (!c.send_queued) Answered(c, now, now_s);
  }

  // The answer counted and the request wholly sent: the next, or the end.
  void Answered(Connection& c, Clock::time_point now, int64_t now_s) {
    if (now >= end_) {
      Close(c);
      return;
    }
    Next(c, now, now_s);
  }

  UringRing ring_;
};

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
      BenchMerchant bm{m.at("id").get<std::string>(), std::move(*secret), {}, {}};
      bm.mac.Key(bm.secret.view());
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

namespace {

// How a run's threads do their I/O: io_uring where the kernel offers it,
// epoll otherwise (kAuto); the tests run each.
enum class IoEngine { kAuto, kEpoll, kUring };

// One thread's connections until `end`; true when they ran on an io_uring.
bool RunThread(std::vector<Connection*> conns, const sockaddr_storage& addr, socklen_t addr_size,
               Clock::time_point end, IoEngine engine, Totals& totals) {
  if (conns.empty()) return false;
  if (engine != IoEngine::kEpoll) {
    UringLoop ring(conns, addr, addr_size, end);
    if (ring.Init()) {
      ring.Run(totals);
      return true;
    }
    if (engine == IoEngine::kUring) {  // asked for and missing: every connection fails
      std::lock_guard<std::mutex> lock(totals.mu);
      totals.counts.errors += conns.size();
      return false;
    }
  }
  EpollLoop(std::move(conns), addr, addr_size, end).Run(totals);
  return false;
}

int RunBenchHttpWith(const BenchHttpArgs& a, IoEngine engine) {
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
    if (m.secret.size() < kSecretBytesMin) {  // the switch would refuse every signature
      totals.counts.errors++;
      continue;
    }
    c.merchant = &m;
    c.order_ref_prefix = "bench-" + run + "-" + std::to_string(i) + "-";
    c.head_prefix =
        "POST /v1/payments HTTP/1.1\r\nHost: narae\r\nContent-Type: application/json\r\n"
        "X-Narae-Key-Id: " +
        m.id + "\r\nIdempotency-Key: ";
    // The longest request: the head, the tag three times (key, nonce,
    // order_ref) with a 20-digit number, the longest card's part of the body,
    // and 256 bytes for the rest (the other header names, the signature, the
    // timestamp, the Content-Length, the amount).
    size_t middle_max = 0;
    for (const BenchCard* k : c.cards) middle_max = std::max(middle_max, k->body_middle.size());
    c.request_capacity =
        c.head_prefix.size() + 3 * (c.order_ref_prefix.size() + 20) + middle_max + 256;
    c.request = std::make_unique<char[]>(c.request_capacity);
    by_thread[i % a.threads].push_back(&c);
  }
  const Clock::time_point start = Clock::now();
  const Clock::time_point end = start + std::chrono::seconds(a.duration_s);
  std::vector<std::thread> threads;
  std::atomic<uint32_t> ring_threads{0}, epoll_threads{0};
  for (uint32_t t = 0; t < a.threads; ++t) {
    threads.emplace_back([&, t] {
      if (by_thread[t].empty()) return;
      std::atomic<uint32_t>& used = RunThread(by_thread[t], addr, addr_size, end, engine, totals)
                                        ? ring_threads
                                        : epoll_threads;
      used.fetch_add(1, std::memory_order_relaxed);
    });
  }
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();  // not money
  std::sort(totals.latency_us.begin(), totals.latency_us.end());
  const Counts& n = totals.counts;
  const uint64_t answered = n.approved + n.declined + n.rate_limited;
  Json j = {{"bench", "switch_http"},
            {"connections", a.connections},
            {"threads", a.threads},
            {"io", epoll_threads.load() == 0  ? "io_uring"
                   : ring_threads.load() == 0 ? "epoll"
                                              : "mixed"},
            {"seconds", seconds},
            {"approved", totals.counts.approved},
            {"declined", totals.counts.declined},
            {"rate_limited", totals.counts.rate_limited},
            {"errors", totals.counts.errors},
            {"auth_per_s", static_cast<uint64_t>(static_cast<double>(n.approved) / seconds)},
            {"requests_per_s", static_cast<uint64_t>(static_cast<double>(answered) / seconds)},
            {"p50_us", PercentileOfSorted(totals.latency_us, 5'000)},
            {"p99_us", PercentileOfSorted(totals.latency_us, 9'900)},
            {"p999_us", PercentileOfSorted(totals.latency_us, 9'990)},
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

}  // namespace

int RunBenchHttp(const BenchHttpArgs& args) { return RunBenchHttpWith(args, IoEngine::kAuto); }

}  // namespace narae::tools
