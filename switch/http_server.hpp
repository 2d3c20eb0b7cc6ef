// The HTTP/1.1 server of the storefront API (Boost.Beast): keep-alive, a
// limit on everything a client can make it spend (connections, header and
// body bytes, time), /healthz and /metrics, and every other request handed
// to the Api (switch/api.hpp). docs/api.md documents every limit and what a
// client sees when it breaks one.
//
// Thread safety: the methods may be called from any thread that is not one
// of the server's own I/O threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ledger/status.hpp"

namespace narae::switching {

class Api;
class IsoHandler;
class Logger;

struct HttpServerOptions {
  // "HOST:PORT"; port 0 picks a free port (tests).
  std::string listen = "127.0.0.1:8080";
  // I/O threads running the server's io_context; 0 = one per core.
  uint32_t threads = 0;
  // CPUs they run on (ledger::CheckCpus); empty = wherever the kernel puts them.
  std::vector<uint32_t> io_cpus;
  // Open connections at most; one more is accepted and closed at once.
  uint32_t max_connections = 1024;
  // Request header bytes at most (431 and close when over).
  uint32_t header_bytes_max = 8192;
  // Request body bytes at most (413 and close when over).
  uint32_t body_bytes_max = 16384;
  // A request whose first byte arrived must be complete within this time.
  uint32_t read_timeout_ms = 5000;
  // A keep-alive connection with no request started is closed after this.
  uint32_t idle_timeout_ms = 60000;
  // Writing a response must finish within this time.
  uint32_t write_timeout_ms = 10000;
  // Requests served on one connection, then it is closed (0 = no limit).
  uint32_t requests_per_connection_max = 0;
  // On shutdown, how long to wait for requests in the ledger.
  uint32_t shutdown_grace_ms = 5000;
};

struct HttpServerStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_rejected = 0;  // over max_connections
  uint64_t connections_open = 0;
  uint64_t requests = 0;
  uint64_t bad_requests = 0;  // unparsable, too large
  uint64_t read_timeouts = 0;
};

class HttpServer {
 public:
  // Binds, listens and starts the I/O threads. `api`, `health` and `logger`
  // (may be null) must outlive the server.
  static Result<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options, Api* api,
                                                   IsoHandler* health, Logger* logger);
  virtual ~HttpServer() = default;
  virtual std::string listen_address() const = 0;
  virtual uint16_t port() const = 0;
  // Stops accepting, waits up to shutdown_grace_ms for requests in the
  // ledger, ends every connection (a lingering close, up to 2 s more for the
  // clients to take their answers), joins the I/O threads and closes what is
  // left. Late replies are dropped (the io_context lives until the server is
  // destroyed). Idempotent.
  virtual void Shutdown() = 0;
  virtual HttpServerStats Stats() const = 0;
};

namespace internal {

// A request as the server read it (tests only).
struct ParsedHttpRequest {
  size_t consumed = 0;  // the request's bytes
  std::string method;
  std::string target;
  unsigned version = 0;                                     // 10, 11
  std::vector<std::pair<std::string, std::string>> fields;  // as received, in order
  std::string body;
  bool keep_alive = false;
  bool operator==(const ParsedHttpRequest&) const = default;
};

// Reads one request from `bytes` as a connection does: by the reader of the
// simple form (`simple`: nullopt when the bytes are not of that form or not
// complete) or by Beast's parser (nullopt on its error, or when it needs more
// bytes). For HttpParse.FastPathReadsAsBeastDoes.
std::optional<ParsedHttpRequest> ParseHttpRequestForTest(std::string_view bytes, bool simple,
                                                         uint32_t header_bytes_max,
                                                         uint32_t body_bytes_max);

}  // namespace internal

}  // namespace narae::switching
