// `narae bench switch --http HOST:PORT`: the storefront API load mode of the
// load generator (tools/cmd_bench_http.cpp), started from the `bench switch`
// command (tools/cmd_bench_switch.cpp).
#pragma once

#include <cstdint>
#include <string>

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

}  // namespace narae::tools
