// `narae bench switch --http HOST:PORT`: the storefront API load mode of the
// load generator (tools/cmd_bench_http.cpp), started from the `bench switch`
// command (tools/cmd_bench_switch.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace narae::tools {

struct BenchHttpArgs {
  std::string http;           // narae-switch HTTP API address HOST:PORT
  std::string credentials;    // demo.json: merchants' API secrets and cards
  uint32_t connections = 64;  // keep-alive connections, one request in flight each
  uint32_t duration_s = 10;
  uint32_t threads = 1;  // client I/O threads
  bool json = false;     // print only the JSON line
};

// Runs the load and prints the figures; returns the exit code.
int RunBenchHttp(const BenchHttpArgs& args);

// One answer parsed from the bytes a connection has received since its
// request went out (the load generator's own parser: status line, Content-
// Length, the body). kIncomplete: more bytes are needed. kMalformed: no
// valid status line, no single valid Content-Length (or a chunked answer,
// which the switch never sends), above 1 MiB, bytes after the answer (one
// request is in flight, nothing else was asked for), a body that is not a
// JSON object, or a 201 without `"status":"authorized"` and `"order_ref":"
// ORDER_REF"` (when `order_ref` is not empty): the request's own durable
// authorization.
struct HttpAnswer {
  enum class State { kIncomplete, kComplete, kMalformed };
  State state = State::kIncomplete;
  int status = 0;   // with kComplete
  size_t size = 0;  // bytes of the answer, head and body, once its head is in
};
HttpAnswer ParseHttpAnswer(std::string_view bytes, std::string_view order_ref);

}  // namespace narae::tools
