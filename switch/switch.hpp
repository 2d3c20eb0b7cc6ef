// narae::switching: the public face of the authorization switch's server.
//
// IsoServer accepts ISO 8583 connections (plain TCP or TLS), frames and
// decodes requests, hands each to an IsoHandler (switch/handler.hpp) and
// sends back what the handler replies, with a limit on everything a client
// can make it spend (connections, frame bytes, time, requests in flight).
// SwitchConfig is what narae-switch reads from its command line and its JSON
// config file. docs/switch.md documents every field and what a client sees
// when it breaks a limit.
//
// Thread safety: IsoServer's methods may be called from any thread that is
// not one of its own I/O threads. The handler is called on I/O threads and
// may reply from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/status.hpp"
#include "switch/handler.hpp"

namespace narae::switching {

class Logger;

struct TlsOptions {
  std::string cert_file;  // PEM certificate (chain); empty = plain TCP
  std::string key_file;   // PEM private key of cert_file
  // PEM CA bundle; when set, mutual TLS: a client must present a certificate
  // signed by one of these CAs, else the handshake fails and it is closed.
  // The certificate's subject CN is passed to the handler
  // (ConnectionInfo::client_cert_cn).
  std::string client_ca_file;
  bool enabled() const { return !cert_file.empty(); }
};

struct ServerOptions {
  // "HOST:PORT" of the ISO 8583 listener; port 0 picks a free port (tests).
  std::string iso_listen = "127.0.0.1:8583";
  // "HOST:PORT" of the HTTP/JSON API (issue 5); stored only, "" = none.
  std::string http_listen;
  // I/O threads, each running the one io_context; 0 = one per core.
  uint32_t threads = 0;
  // Open connections at most; one more is accepted and closed at once.
  uint32_t max_connections = 1024;
  // Largest message body a 2-byte header may announce; a larger (or zero)
  // length ends the connection (nothing more is read, the requests before it
  // are answered, then it closes) before anything is allocated for it.
  // 12 (MTI + bitmap) .. 65535.
  uint32_t max_frame_bytes = 8192;
  // A frame whose first byte arrived must be complete within this time
  // (slow-loris guard); also bounds the TLS handshake.
  uint32_t read_timeout_ms = 5000;
  // A connection with nothing in flight and no frame started is closed
  // after this long without a frame.
  uint32_t idle_timeout_ms = 120000;
  // Writing the responses queued for a connection must finish within this
  // time (a client that stops reading is closed).
  uint32_t write_timeout_ms = 10000;
  // Requests handed to the handler and not yet answered, per connection.
  // At the limit the server stops reading that connection until replies drain.
  uint32_t max_in_flight_per_connection = 64;
  // On shutdown, how long to wait for in-flight replies before closing.
  uint32_t shutdown_grace_ms = 5000;
  // Period of the "summary" info log line (0 = none).
  uint32_t summary_interval_ms = 1000;
  TlsOptions tls;
  // CPUs the I/O threads run on, the ISO listener's and the HTTP API's
  // (ledger::CheckCpus); empty = wherever the kernel puts them.
  std::vector<uint32_t> io_cpus;
  // CPUs of the ledger's sequencer, syncer and acknowledging thread
  // (ledger::Options::pipeline_cpus); empty = wherever the kernel puts them.
  std::vector<uint32_t> ledger_cpus;
  // RocksDB's flush and compaction threads at nice 19
  // (ledger::Options::background_low_priority).
  bool ledger_background_low_priority = false;
  // MiB/s flushes and compactions may write, 0 = no limit
  // (ledger::Options::background_write_mib_per_s).
  uint32_t ledger_background_write_mib_per_s = 0;
};

// Counters since Start(); read with relaxed atomics (a snapshot, not a cut).
struct ServerStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_rejected = 0;  // over max_connections
  uint64_t connections_open = 0;
  uint64_t tls_handshake_failures = 0;
  uint64_t requests = 0;         // decoded and handed to the handler
  uint64_t responses = 0;        // replies sent (handler or server generated)
  uint64_t format_errors = 0;    // undecodable messages (answered 30 or closed)
  uint64_t frames_rejected = 0;  // zero or oversized length headers
  uint64_t read_timeouts = 0;
  uint64_t idle_timeouts = 0;
  uint64_t write_timeouts = 0;
  uint64_t replies_dropped = 0;        // replies for connections already closed
  uint64_t refused_shutting_down = 0;  // requests answered 91 during shutdown
};

class IsoServer {
 public:
  // Binds, listens and starts the I/O threads. `handler` and `logger` must
  // outlive the server (logger may be null: warnings go to stderr).
  // Errors: InvalidArgument (bad options), IOError (bind/listen, TLS files).
  static Result<std::unique_ptr<IsoServer>> Start(const ServerOptions& options, IsoHandler* handler,
                                                  Logger* logger);
  virtual ~IsoServer() = default;

  // The bound address, e.g. "127.0.0.1:40123", and port.
  virtual std::string listen_address() const = 0;
  virtual uint16_t port() const = 0;

  // Graceful stop: stop accepting; answer requests that arrive from now on
  // with 91; wait up to shutdown_grace_ms for in-flight replies to be sent;
  // close every connection; join the I/O threads. After it returns, late
  // replies from the handler are dropped without touching the network.
  // Idempotent; the destructor calls it.
  virtual void Shutdown() = 0;

  virtual ServerStats Stats() const = 0;
};

// "HOST:PORT" (HOST an IPv4/IPv6 address or "localhost", "[v6]:port" too).
Status ParseHostPort(std::string_view text, std::string* host, uint16_t* port);

// Everything narae-switch is configured with (docs/switch.md, "Configuration").
struct SwitchConfig {
  std::string data_dir;         // required: holds ledger/, keys/, master.key
  std::string master_key_file;  // "" = <data_dir>/master.key
  std::string log_level = "info";
  std::string log_file;  // "" = stderr
  ServerOptions server;
  // Automatic business-day cut-over (docs/settlement.md): "HH:MM" UTC, or
  // "" for none (days are then closed with `narae day close`).
  std::string cutover_utc;
  // The config file's "authorization" object, dumped ("{}" when absent);
  // passed to MakeAuthorizer (docs/authorization.md).
  std::string authorization_json = "{}";
  // The admin interface (switch/admin_server.hpp): "HOST:PORT" on a
  // loopback address, or "" for none.
  std::string admin_listen;
  // The config file's "http" object, dumped ("{}" when absent): the HTTP
  // API's limits and webhooks (switch/api_config.hpp, docs/api.md).
  std::string http_json = "{}";
};

// Applies a JSON config file's text to `config`: fields present override,
// absent ones keep their value. Unknown keys and wrong types are errors
// (InvalidArgument naming the key).
Status ApplyConfigJson(std::string_view json_text, SwitchConfig* config);
// Reads `path` and applies it (IOError when unreadable).
Status LoadConfigFile(const std::string& path, SwitchConfig* config);
// Checks ranges and required fields after everything is applied.
Status ValidateConfig(const SwitchConfig& config);

}  // namespace narae::switching
