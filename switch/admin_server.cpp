// The switch's admin interface (switch/admin_server.hpp).
#include "switch/admin_server.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "crypto/crypto.hpp"
#include "switch/admin_ops.hpp"
#include "switch/api.hpp"
#include "switch/authorizer.hpp"
#include "switch/http_server.hpp"
#include "switch/log.hpp"
#include "switch/switch.hpp"

namespace narae::switching {
namespace {

using json = nlohmann::json;

unsigned HttpStatusOf(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

HttpResponse JsonResponse(unsigned status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

HttpResponse ErrorResponse(const Status& s) {
  return JsonResponse(
      HttpStatusOf(s),
      json{{"ok", false}, {"code", StatusCodeName(s.code())}, {"message", s.message()}});
}

// The admin operations behind HttpServer.
class AdminApi final : public Api {
 public:
  AdminApi(const AdminDeps& deps, std::string token, Logger* logger)
      : deps_(deps), token_("Bearer " + std::move(token)), logger_(logger) {}

  void Handle(HttpRequest request, std::function<void(HttpResponse)> done) override {
    in_flight_.fetch_add(1);
    requests_.fetch_add(1, std::memory_order_relaxed);
    HttpResponse r = Serve(request);
    in_flight_.fetch_sub(1);
    done(std::move(r));
  }

  void AppendMetrics(std::string* out) override {
    *out += "# TYPE narae_admin_requests_total counter\nnarae_admin_requests_total " +
            std::to_string(requests_.load(std::memory_order_relaxed)) + "\n";
    *out += "# TYPE narae_admin_unauthorized_total counter\nnarae_admin_unauthorized_total " +
            std::to_string(unauthorized_.load(std::memory_order_relaxed)) + "\n";
  }
  uint64_t in_flight() const override { return in_flight_.load(); }

 private:
  bool Authorized(const HttpRequest& request) const {
    const std::string given(request.header("authorization"));
    const auto bytes = [](const std::string& s) {
      return crypto::ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    };
    return crypto::ConstantTimeEqual(bytes(given), bytes(token_));
  }

  HttpResponse Serve(const HttpRequest& request) {
    if (!Authorized(request)) {
      unauthorized_.fetch_add(1, std::memory_order_relaxed);
      HttpResponse r = ErrorResponse(Status::PermissionDenied("missing or wrong admin token"));
      r.status = 401;
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
    const std::string_view prefix = kAdminPathPrefix;
    const std::string_view target = request.target;
    if (!target.starts_with(prefix) || !IsAdminOp(target.substr(prefix.size()))) {
      return ErrorResponse(Status::NotFound("no admin operation at " + request.target));
    }
    if (request.method != "POST") {
      HttpResponse r = ErrorResponse(Status::InvalidArgument("admin operations are POST"));
      r.status = 405;
      r.headers.emplace_back("Allow", "POST");
      return r;
    }
    const std::string op(target.substr(prefix.size()));
    json args = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
    if (args.is_discarded() || !args.is_object()) {
      return ErrorResponse(Status::InvalidArgument("the body must be a JSON object"));
    }
    AdminTarget t{deps_.ledger, deps_.keys, nullptr, deps_.http_api};
    if (auto* hooked = dynamic_cast<HookedHandler*>(deps_.handler)) t.cache = hooked->bank_cache();
    Result<json> result = [&] {
      std::lock_guard<std::mutex> lock(op_mu_);  // one operation at a time
      return RunAdminOp(t, op, args);
    }();
    if (logger_ != nullptr) {
      logger_->Log(result.ok() ? LogLevel::kInfo : LogLevel::kWarn, "admin_op",
                   {{"op", op},
                    {"ok", result.ok()},
                    {"error", result.ok() ? std::string() : result.status().ToString()}});
    }
    if (!result.ok()) return ErrorResponse(result.status());
    return JsonResponse(200, json{{"ok", true}, {"result", std::move(*result)}});
  }

  AdminDeps deps_;
  const std::string token_;  // "Bearer <hex>"
  Logger* logger_;
  std::mutex op_mu_;
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> unauthorized_{0};
};

// Writes `text` to `path` atomically with mode 0600 (temporary file,
// fsync, rename).
Status WritePrivateFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot create " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const bool ok = done == text.size() && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    return Status::IOError("cannot write " + path + ": " + why);
  }
  return Status::Ok();
}

class AdminServerImpl final : public AdminServer {
 public:
  AdminServerImpl(std::unique_ptr<AdminApi> api, std::string file)
      : api_(std::move(api)), file_(std::move(file)) {}
  ~AdminServerImpl() override { Shutdown(); }

  Status Start(const AdminServerOptions& o, IsoHandler* health, Logger* logger,
               const std::string& token) {
    HttpServerOptions ho;
    ho.listen = o.listen;
    ho.threads = o.threads;
    ho.max_connections = o.max_connections;
    ho.body_bytes_max = o.body_bytes_max;
    ho.read_timeout_ms = o.read_timeout_ms;
    ho.idle_timeout_ms = o.idle_timeout_ms;
    Result<std::unique_ptr<HttpServer>> http = HttpServer::Start(ho, api_.get(), health, logger);
    if (!http.ok()) return http.status();
    http_ = std::move(http).value();
    json doc{{"v", 1},
             {"endpoint", http_->listen_address()},
             {"token", token},
             {"pid", static_cast<int64_t>(::getpid())}};
    Status w = WritePrivateFile(file_, doc.dump() + "\n");
    if (!w.ok()) {
      http_->Shutdown();
      return w;
    }
    file_written_ = true;
    return Status::Ok();
  }

  std::string listen_address() const override { return http_->listen_address(); }
  uint16_t port() const override { return http_->port(); }
  void Shutdown() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (file_written_) ::unlink(file_.c_str());
    file_written_ = false;
    if (http_) http_->Shutdown();
  }

 private:
  std::unique_ptr<AdminApi> api_;
  std::unique_ptr<HttpServer> http_;
  const std::string file_;
  std::mutex mu_;
  bool file_written_ = false;  // GUARDED_BY(mu_)
};

}  // namespace

bool IsLoopbackHost(std::string_view host) {
  if (host == "localhost") return true;
  boost::system::error_code ec;
  const boost::asio::ip::address a = boost::asio::ip::make_address(std::string(host), ec);
  if (ec) return false;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return a.to_v6().to_v4().is_loopback();  // NOLINT: boost 1.74 API
  }
  return a.is_loopback();
}

Status ValidateAdminListen(std::string_view listen) {
  std::string host;
  uint16_t port = 0;
  NARAE_RETURN_IF_ERROR(ParseHostPort(listen, &host, &port));
  if (!IsLoopbackHost(host)) {
    return Status::InvalidArgument("admin_listen: '" + host +
                                   "' is not a loopback address (the admin interface listens "
                                   "on 127.0.0.1, ::1 or localhost only)");
  }
  return Status::Ok();
}

Result<std::unique_ptr<AdminServer>> AdminServer::Start(const AdminServerOptions& options,
                                                        const AdminDeps& deps, Logger* logger) {
  NARAE_RETURN_IF_ERROR(ValidateAdminListen(options.listen));
  if (deps.ledger == nullptr || deps.keys == nullptr || deps.handler == nullptr) {
    return Status::InvalidArgument("admin server needs the ledger, keys and handler");
  }
  if (options.data_dir.empty()) return Status::InvalidArgument("admin server needs a data folder");
  Result<crypto::Bytes> random = crypto::RandomBytes(kAdminTokenBytes);
  if (!random.ok()) return random.status();
  std::string token = crypto::ToHex(*random);
  std::fill(random->begin(), random->end(), uint8_t{0});
  auto api = std::make_unique<AdminApi>(deps, token, logger);
  auto server =
      std::make_unique<AdminServerImpl>(std::move(api), options.data_dir + "/" + kAdminFileName);
  NARAE_RETURN_IF_ERROR(server->Start(options, deps.handler, logger, token));
  std::unique_ptr<AdminServer> out = std::move(server);
  return out;
}

}  // namespace narae::switching
