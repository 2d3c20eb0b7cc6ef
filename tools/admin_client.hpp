// How `narae`'s write commands reach the bank (docs/tools.md, "Write
// commands and a running switch"): through the running narae-switch's admin
// interface (switch/admin_server.hpp) when DIR/admin.json names one that
// answers, else by opening the store directly. Either way the same operation
// (switch/admin_ops.hpp) runs and returns the same JSON, so a command prints
// the same output and exit code.
//
// Never corrupting: a stale admin.json (its pid gone, or its endpoint
// refusing connections) falls back to the direct open, and the direct open
// is guarded by RocksDB's LOCK file: if a switch does hold the ledger, the
// open fails ("in use") and nothing is written.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "ledger/status.hpp"

namespace narae::ledger {
class Ledger;
}
namespace narae::crypto {
class KeyStore;
}

namespace narae::tools {

struct AdminEndpoint {
  std::string endpoint;  // "127.0.0.1:PORT"
  std::string token;     // 64 hex
  std::string file;      // the admin.json it came from
};

// DIR/admin.json when it exists, parses and its switch process is alive;
// nullopt otherwise (no file, stale file, unreadable file).
std::optional<AdminEndpoint> ReadAdminFile(const std::string& data_dir);

// POST /admin/v1/<op> with `args`; the operation's result or its error.
// `*refused` (may be null) is set when nothing listens on the endpoint (a
// switch killed without removing admin.json): the caller falls back.
Result<nlohmann::json> CallAdmin(const AdminEndpoint& admin, std::string_view op,
                                 const nlohmann::json& args, uint32_t timeout_ms, bool* refused);

// The store opened directly (the switch is not running).
struct DirectStore {
  std::unique_ptr<ledger::Ledger> ledger;
  std::unique_ptr<crypto::KeyStore> keys;  // opened when need_keys
};
using OpenDirect = std::function<Result<DirectStore>(bool need_keys)>;

// Runs a write operation on the bank in `data_dir`: through the running
// switch when one answers, else through `open` (the command's own way of
// opening the store, with its error messages).
Result<nlohmann::json> RunWriteOp(const std::string& data_dir, std::string_view op,
                                  const nlohmann::json& args, const OpenDirect& open);

}  // namespace narae::tools
