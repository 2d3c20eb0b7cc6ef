// The HTTP side of the reliability harness (tests/switch_harness.hpp): a
// blocking HTTP/1.1 keep-alive client on a plain loopback socket with a
// deadline on every call (a killed server shows as a failed call, never a
// hang), and signed storefront requests (switch/api.hpp SignedHeaders).
//
// Used by tests/switch_crash_test.cpp and switch_fault_test.cpp against the
// real narae-switch started with --http-listen 127.0.0.1:0.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "switch/api.hpp"

namespace narae::switching::harness {

inline constexpr size_t kHttpResponseBytesMax = 1 << 20;

struct HttpAnswer {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class HttpClient {
 public:
  explicit HttpClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~HttpClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  bool connected() const { return connected_; }

  // One request; nullopt when the connection broke or the deadline passed
  // (the connection is then unusable).
  std::optional<HttpAnswer> Call(const std::string& method, const std::string& target,
                                 const std::string& body,
                                 const std::vector<std::pair<std::string, std::string>>& headers,
                                 int timeout_ms = 10000) {
    if (!connected_) return std::nullopt;
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
    if (!body.empty()) req += "Content-Type: application/json\r\n";
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    if (!SendAll(req)) return Broken();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    size_t header_end = std::string::npos;
    while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!ReadMore(deadline)) return Broken();
    }
    HttpAnswer a;
    const std::string head = buffer_.substr(0, header_end);
    size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12 || status_line.rfind("HTTP/1.", 0) != 0) return Broken();
    a.status = std::atoi(status_line.c_str() + 9);
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t end = head.find("\r\n", pos);
      if (end == std::string::npos) end = head.size();
      const std::string line = head.substr(pos, end - pos);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ') ++v;
        a.headers[name] = line.substr(v);
      }
      pos = end + 2;
    }
    const size_t length =
        static_cast<size_t>(std::strtoull(a.Header("content-length").c_str(), nullptr, 10));
    if (length > kHttpResponseBytesMax) return Broken();
    while (buffer_.size() < header_end + 4 + length) {
      if (!ReadMore(deadline)) return Broken();
    }
    a.body = buffer_.substr(header_end + 4, length);
    buffer_.erase(0, header_end + 4 + length);
    return a;
  }

 private:
  std::optional<HttpAnswer> Broken() {
    connected_ = false;
    return std::nullopt;
  }
  bool SendAll(const std::string& s) {
    size_t sent = 0;
    while (sent < s.size()) {
      const ssize_t n = ::send(fd_, s.data() + sent, s.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }
  bool ReadMore(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || buffer_.size() > kHttpResponseBytesMax) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    const ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
    if (r <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(r));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

// A storefront's signed request headers with a fresh nonce (a retry of the
// same Idempotency-Key is a new signed request: nonces are single-use).
inline std::vector<std::pair<std::string, std::string>> StorefrontHeaders(
    const std::string& merchant, const std::string& secret_hex, const std::string& method,
    const std::string& target, const std::string& body, const std::string& idempotency_key) {
  static std::atomic<uint64_t> nonce_seq{0};
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  std::string nonce = "h";  // appended: GCC 12's -Wrestrict misfires on "lit" + string&&
  nonce += std::to_string(now_ms);
  nonce += '-';
  nonce += std::to_string(nonce_seq.fetch_add(1));
  std::vector<std::pair<std::string, std::string>> h =
      SignedHeaders(merchant, secret_hex, method, target, body, now_ms / 1000, nonce);
  if (!idempotency_key.empty()) h.emplace_back("Idempotency-Key", idempotency_key);
  return h;
}

}  // namespace narae::switching::harness
