// A webhook receiver for tests: a real HTTP/1.1 listener on loopback (its
// own io_context and thread) that records every request and answers with a
// settable status.
#pragma once

#include <utility>
// clang-format off
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace narae::switching::webhook_test {

class WebhookReceiver {
 public:
  struct Request {
    std::string target;
    std::string body;
    std::string signature;  // Narae-Signature
    std::string event_id;   // Narae-Event-Id
    std::string attempt;    // Narae-Delivery-Attempt
    std::chrono::steady_clock::time_point at;
  };

  // Listens on 127.0.0.1:port (0 = a free port).
  explicit WebhookReceiver(uint16_t port = 0)
      : acceptor_(
            io_, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port)) {
    boost::asio::co_spawn(io_, Accept(), boost::asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~WebhookReceiver() { Stop(); }
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void set_status(unsigned status) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
  }
  std::vector<Request> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  // True once at least `n` requests arrived (within timeout_ms).
  bool WaitFor(size_t n, int timeout_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                        [&] { return requests_.size() >= n; });
  }
  void Stop() {
    if (!thread_.joinable()) return;
    boost::asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
    io_.stop();
    thread_.join();
  }

 private:
  boost::asio::awaitable<void> Accept() {
    for (;;) {
      boost::system::error_code ec;
      boost::asio::ip::tcp::socket s = co_await acceptor_.async_accept(
          boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) co_return;
      boost::asio::co_spawn(io_, Session(std::move(s)), boost::asio::detached);
    }
  }
  boost::asio::awaitable<void> Session(boost::asio::ip::tcp::socket s) {
    namespace http = boost::beast::http;
    boost::system::error_code ec;
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> req;
    co_await http::async_read(s, buffer, req,
                              boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    if (ec) co_return;
    unsigned status = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back({std::string(req.target()), req.body(),
                           std::string(req["Narae-Signature"]), std::string(req["Narae-Event-Id"]),
                           std::string(req["Narae-Delivery-Attempt"]),
                           std::chrono::steady_clock::now()});
      status = status_;
    }
    cv_.notify_all();
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.body() = "ok";
    res.prepare_payload();
    co_await http::async_write(s, res, boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    s.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
  }

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  unsigned status_ = 200;          // GUARDED_BY(mu_)
  std::vector<Request> requests_;  // GUARDED_BY(mu_)
};

// A loopback port nothing listens on (bound, then released).
inline uint16_t FreePort() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(
      io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

}  // namespace narae::switching::webhook_test
