// `narae` as a client of the switch's admin interface (tools/admin_client.hpp).
#include <utility>  // before Asio (Boost 1.74 + GCC 12)

#include "tools/admin_client.hpp"

#include <signal.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/admin_ops.hpp"
#include "switch/admin_server.hpp"
#include "switch/switch.hpp"

namespace narae::tools {
namespace {

using json = nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace sw = narae::switching;

constexpr size_t kAdminFileBytesMax = 4096;
// A settlement of 10,000 merchants answers about 4 MB (one object each).
constexpr size_t kAdminResponseBytesMax = 64 << 20;
constexpr uint32_t kAdminTimeoutMs = 30000;
// A checkpoint of a large ledger, or the settlement of a day of a million
// captures, takes longer than an ordinary operation.
constexpr uint32_t kAdminLongTimeoutMs = 600000;
bool IsLongOp(std::string_view op) {
  return op == "backup" || op == "settle" || op == "settle.interbank";
}

}  // namespace

std::optional<AdminEndpoint> ReadAdminFile(const std::string& data_dir) {
  const std::string path = data_dir + "/" + sw::kAdminFileName;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text(kAdminFileBytesMax + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.gcount() <= 0 || static_cast<size_t>(in.gcount()) > kAdminFileBytesMax) {
    return std::nullopt;
  }
  text.resize(static_cast<size_t>(in.gcount()));
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  const auto str = [&doc](const char* key) {
    auto it = doc.find(key);
    return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  AdminEndpoint a{str("endpoint"), str("token"), path};
  if (a.endpoint.empty() || a.token.size() != 2 * sw::kAdminTokenBytes) return std::nullopt;
  auto pid = doc.find("pid");
  if (pid != doc.end() && pid->is_number_integer() && pid->get<int64_t>() > 0 &&
      pid->get<int64_t>() <= INT32_MAX) {
    // A switch killed without cleaning up: its process is gone.
    if (::kill(static_cast<pid_t>(pid->get<int64_t>()), 0) != 0 && errno == ESRCH) {
      return std::nullopt;
    }
  }
  return a;
}

Result<json> CallAdmin(const AdminEndpoint& admin, std::string_view op, const json& args,
                       uint32_t timeout_ms, bool* refused) {
  if (refused != nullptr) *refused = false;
  std::string host;
  uint16_t port = 0;
  NARAE_RETURN_IF_ERROR(sw::ParseHostPort(admin.endpoint, &host, &port));
  if (!sw::IsLoopbackHost(host)) {
    return Status::InvalidArgument(admin.file + ": the admin endpoint must be a loopback address");
  }
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  const asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) return Status::InvalidArgument(admin.file + ": bad endpoint " + admin.endpoint);

  asio::io_context io;
  beast::tcp_stream stream(io);
  http::request<http::string_body> req{http::verb::post,
                                       std::string(sw::kAdminPathPrefix) + std::string(op), 11};
  req.set(http::field::host, admin.endpoint);
  req.set(http::field::authorization, "Bearer " + admin.token);
  req.set(http::field::content_type, "application/json");
  req.body() = args.dump();
  req.prepare_payload();
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kAdminResponseBytesMax);
  boost::system::error_code failed;
  const char* stage = "connect to";
  stream.expires_after(std::chrono::milliseconds(timeout_ms));
  stream.async_connect(asio::ip::tcp::endpoint(address, port), [&](boost::system::error_code e) {
    if (e) {
      failed = e;
      return;
    }
    stage = "send to";
    http::async_write(stream, req, [&](boost::system::error_code e2, size_t) {
      if (e2) {
        failed = e2;
        return;
      }
      stage = "read from";
      http::async_read(stream, buffer, parser,
                       [&](boost::system::error_code e3, size_t) { failed = e3; });
    });
  });
  io.run();
  if (failed) {
    if (refused != nullptr && std::string_view(stage) == "connect to" &&
        failed == asio::error::connection_refused) {
      *refused = true;
    }
    return Status::Unavailable(std::string("cannot ") + stage + " the switch's admin interface " +
                               admin.endpoint + " (" + admin.file + "): " + failed.message());
  }
  const http::response<http::string_body>& res = parser.get();
  const json body = json::parse(res.body(), nullptr, /*allow_exceptions=*/false);
  if (res.result_int() == 401) {
    return Status::PermissionDenied("the switch refused the admin token of " + admin.file);
  }
  if (!body.is_object()) {
    return Status::IOError("the switch's admin interface answered " +
                           std::to_string(res.result_int()) + " without a JSON object");
  }
  if (res.result_int() == 200 && body.value("ok", false) && body.contains("result")) {
    return body.at("result");
  }
  const auto str = [&body](const char* key) {
    auto it = body.find(key);
    return it != body.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  return sw::StatusFromName(str("code"), str("message"));
}

Result<json> RunWriteOp(const std::string& data_dir, std::string_view op, const json& args,
                        const OpenDirect& open) {
  if (std::optional<AdminEndpoint> admin = ReadAdminFile(data_dir)) {
    bool refused = false;
    const uint32_t timeout_ms = IsLongOp(op) ? kAdminLongTimeoutMs : kAdminTimeoutMs;
    Result<json> r = CallAdmin(*admin, op, args, timeout_ms, &refused);
    if (!refused) return r;
    // Nothing listens: a stale admin.json. The direct open below is safe:
    // RocksDB's LOCK refuses it if a switch does hold the ledger.
  }
  Result<DirectStore> store = open(sw::AdminOpNeedsKeys(op));
  if (!store.ok()) return store.status();
  sw::AdminTarget target{store->ledger.get(), store->keys.get(), nullptr, false};
  Result<json> r = sw::RunAdminOp(target, op, args);
  Status closed = store->ledger->Close();
  if (r.ok() && !closed.ok()) return closed;
  return r;
}

}  // namespace narae::tools
