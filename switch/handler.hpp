// The seam between the switch's network server and its authorization
// engine. The server (switch/server.*) frames, decodes and encodes ISO 8583
// and HTTP; the engine (switch/authorizer.*) decides and writes the ledger.
// Each can be tested without the other.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "switch/iso8583.hpp"

namespace narae::switching {

// Who sent a request: filled by the server for every connection.
struct ConnectionInfo {
  uint64_t connection_id = 0;
  std::string peer;  // "127.0.0.1:53422"
  bool tls = false;
  std::string client_cert_cn;  // mutual TLS: the acquirer's certificate CN, else ""
};

// Health as the server reports it on echo (0800/301) and /healthz.
struct HealthInfo {
  bool ledger_healthy = true;  // false while storage writes fail
  uint64_t open_holds = 0;
  uint64_t accounts = 0;
};

class IsoHandler {
 public:
  virtual ~IsoHandler() = default;
  // Called on a server I/O thread for each decoded request. Must call
  // `reply` exactly once, possibly later and from another thread (after the
  // ledger group holding its effect is durable). The reply is the response
  // message (the server packs and frames it). Called from a ledger group's
  // `done` callback, `reply` must not be destroyed before that callback
  // returns: the server defers handing the reply to its I/O thread to the
  // end of the group's callbacks (ledger::DeferUntilGroupCallbacksReturn)
  // and relies on what `reply` holds until then.
  virtual void Handle(Message request, const ConnectionInfo& conn,
                      std::function<void(Message response)> reply) = 0;
  virtual HealthInfo Health() = 0;
};

}  // namespace narae::switching

namespace narae::ledger {
class Ledger;
}
namespace narae::crypto {
class KeyStore;
}

namespace narae::switching {

// What the authorization engine needs. Both outlive the handler.
struct AuthorizerDeps {
  ledger::Ledger* ledger = nullptr;
  crypto::KeyStore* keys = nullptr;
};

// Implemented in switch/authorizer.cpp. `options_json` is the "authorization"
// object of the switch's config file ("{}" for the defaults, all documented
// in docs/authorization.md).
Result<std::unique_ptr<IsoHandler>> MakeAuthorizer(const AuthorizerDeps& deps,
                                                   std::string_view options_json);

}  // namespace narae::switching
