// The "http" object of narae-switch's config file (docs/api.md, "Limits and
// configuration"): the HTTP API's limits, its request-rate limit and the
// webhook dispatcher's options. Every key is optional; unknown keys and
// values out of range are refused (InvalidArgument naming the key).
//
//   "http": {"body_bytes_max": 16384, "header_bytes_max": 8192,
//            "max_connections": 1024, "keep_alive_timeout_ms": 60000,
//            "read_timeout_ms": 5000, "write_timeout_ms": 10000,
//            "requests_per_connection_max": 0, "threads": 0,
//            "rate_per_s": 10000, "rate_burst": 20000, "signature_skew_s": 300,
//            "webhooks": {"poll_interval_ms": 50, "attempts_max": 8, ...}}
#pragma once

#include <string_view>

#include "ledger/status.hpp"
#include "switch/api.hpp"
#include "switch/http_server.hpp"
#include "switch/webhook.hpp"

namespace narae::switching {

struct HttpConfig {
  HttpServerOptions server;  // listen and threads come from the command line
  ApiOptions api;
  WebhookOptions webhooks;
};

// Applies the JSON object's keys to `config` (absent keys keep their value).
Status ApplyHttpConfigJson(std::string_view json_text, HttpConfig* config);

}  // namespace narae::switching
