// The switch's admin interface (docs/switch.md, "Admin interface"): an
// HTTP/JSON listener on a loopback address only, for `narae`'s write
// commands while narae-switch runs (docs/tools.md). It reuses HttpServer
// (switch/http_server.*: limits on connections, header and body bytes and
// time) with its own Api that runs switch/admin_ops.hpp operations on the
// switch's ledger and refreshes the authorizer's BankCache.
//
//   POST /admin/v1/<operation>   body: the operation's JSON arguments
//   Authorization: Bearer <token>
//   200 {"ok": true, "result": {...}}
//   4xx/5xx {"ok": false, "code": "<StatusCodeName>", "message": "..."}
//   401 without the token (compared in constant time), 404 unknown path.
//
// At start the server writes DATA/admin.json, {"v": 1, "endpoint":
// "127.0.0.1:PORT", "token": "<64 hex>", "pid": N}, mode 0600, atomically
// (a temporary file renamed); Shutdown() removes it. A file left by a
// killed switch is stale: its endpoint refuses connections and its pid is
// gone (tools/admin_client.hpp treats that as "not running").
//
// Thread safety: the methods may be called from any thread that is not one
// of the server's I/O threads. Operations are run one at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ledger/status.hpp"

namespace narae::ledger {
class Ledger;
}
namespace narae::crypto {
class KeyStore;
}

namespace narae::switching {

class IsoHandler;
class Logger;

inline constexpr const char* kAdminFileName = "admin.json";
inline constexpr const char* kAdminPathPrefix = "/admin/v1/";
inline constexpr size_t kAdminTokenBytes = 32;

struct AdminServerOptions {
  // "HOST:PORT" with a loopback HOST (127.0.0.0/8, ::1, localhost); port 0
  // picks a free port (tests).
  std::string listen;
  // The data folder: admin.json is written there.
  std::string data_dir;
  uint32_t threads = 2;
  uint32_t max_connections = 16;
  uint32_t body_bytes_max = 16384;
  uint32_t read_timeout_ms = 5000;
  uint32_t idle_timeout_ms = 30000;
};

struct AdminDeps {
  ledger::Ledger* ledger = nullptr;  // required
  crypto::KeyStore* keys = nullptr;  // required
  IsoHandler* handler = nullptr;     // the authorizer: /healthz and its BankCache
  bool http_api = false;             // the storefront API runs (merchant virtual terminals)
};

class AdminServer {
 public:
  // Binds, starts the I/O threads and writes admin.json. The deps and the
  // logger (may be null) must outlive the server. Errors: InvalidArgument
  // (a non-loopback or malformed address), IOError (bind, admin.json).
  static Result<std::unique_ptr<AdminServer>> Start(const AdminServerOptions& options,
                                                    const AdminDeps& deps, Logger* logger);
  virtual ~AdminServer() = default;
  virtual std::string listen_address() const = 0;
  virtual uint16_t port() const = 0;
  // Removes admin.json, then stops the listener (HttpServer::Shutdown).
  // Idempotent; the destructor calls it.
  virtual void Shutdown() = 0;
};

// True for 127.0.0.0/8, ::1, ::ffff:127.x.y.z and "localhost".
bool IsLoopbackHost(std::string_view host);
// "HOST:PORT" with a loopback HOST; InvalidArgument otherwise.
Status ValidateAdminListen(std::string_view listen);

}  // namespace narae::switching
