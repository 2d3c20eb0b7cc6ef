// narae-switch: the Narae authorization switch (docs/switch.md).
//
//   narae-switch --data DIR --iso-listen HOST:PORT [--http-listen HOST:PORT]
//                [--master-key-file FILE] [--config FILE] [--log-level L] [--log-file FILE]
//                [--admin-listen HOST:PORT]
//
// Exit codes: 0 clean shutdown (SIGINT/SIGTERM), 2 bad configuration or data
// that cannot be opened, 128+signal when a second signal cuts the drain short.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/admin_server.hpp"
#include "switch/api.hpp"
#include "switch/api_config.hpp"
#include "switch/api_events.hpp"
#include "switch/handler.hpp"
#include "switch/http_server.hpp"
#include "switch/log.hpp"
#include "switch/settlement.hpp"
#include "switch/switch.hpp"
#include "switch/webhook.hpp"

// jemalloc's options (read at its start when it is the allocator; an unused
// global otherwise): transparent huge pages for its extents. The ledger's
// memtable arenas take a page fault per new 4 KiB page otherwise (~0.2-0.4
// per request, each a costly exit on a virtual machine); MALLOC_CONF in the
// environment still overrides. docs/switch.md "Memory".
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "thp:always";  // NOLINT: jemalloc's name
}

namespace narae::switching {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitConfig = 2;

constexpr const char* kUsage =
    "usage: narae-switch --data DIR --iso-listen HOST:PORT [--http-listen HOST:PORT]\n"
    "                    [--master-key-file FILE] [--config FILE] [--log-level LEVEL]\n"
    "                    [--log-file FILE] [--admin-listen HOST:PORT]\n"
    "  --data DIR              data folder: DIR/ledger, DIR/keys, DIR/master.key\n"
    "  --iso-listen HOST:PORT  ISO 8583 listener (default 127.0.0.1:8583)\n"
    "  --http-listen HOST:PORT HTTP/JSON storefront API listener (docs/api.md)\n"
    "  --master-key-file FILE  master key (default DIR/master.key)\n"
    "  --cutover HH:MM         close each business day at this time (UTC)\n"
    "  --config FILE           JSON config file (docs/switch.md); the command line wins\n"
    "  --log-level LEVEL       trace, debug, info (default), warn, error, off\n"
    "  --log-file FILE         append log lines to FILE (default stderr)\n"
    "  --admin-listen HOST:PORT admin interface for `narae` write commands, loopback only;\n"
    "                          writes DIR/admin.json (endpoint and token, mode 0600)\n";

// The command line: "--name value" pairs. Returns nullopt (and prints why)
// on an unknown option or a missing value; sets *help for --help.
std::optional<std::map<std::string, std::string>> ParseArgs(int argc, char** argv, bool* help) {
  static const char* const kOptions[] = {
      "--data",      "--iso-listen", "--http-listen", "--master-key-file", "--config",
      "--log-level", "--log-file",   "--cutover",     "--admin-listen"};
  std::map<std::string, std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      *help = true;
      return out;
    }
    std::string value;
    const size_t eq = arg.find('=');
    if (arg.starts_with("--") && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "narae-switch: %s needs a value\n%s", arg.c_str(), kUsage);
      return std::nullopt;
    }
    bool known = false;
    for (const char* name : kOptions) known = known || arg == name;
    if (!known) {
      std::fprintf(stderr, "narae-switch: unknown option %s\n%s", arg.c_str(), kUsage);
      return std::nullopt;
    }
    out[arg] = value;
  }
  return out;
}

Status BuildConfig(const std::map<std::string, std::string>& args, SwitchConfig* config) {
  if (auto it = args.find("--config"); it != args.end()) {
    NARAE_RETURN_IF_ERROR(LoadConfigFile(it->second, config));
  }
  const auto set = [&](const char* name, std::string* field) {
    if (auto it = args.find(name); it != args.end()) *field = it->second;
  };
  set("--data", &config->data_dir);
  set("--iso-listen", &config->server.iso_listen);
  set("--http-listen", &config->server.http_listen);
  set("--master-key-file", &config->master_key_file);
  set("--log-level", &config->log_level);
  set("--log-file", &config->log_file);
  set("--cutover", &config->cutover_utc);
  set("--admin-listen", &config->admin_listen);
  if (config->master_key_file.empty()) config->master_key_file = config->data_dir + "/master.key";
  return ValidateConfig(*config);
}

// Everything the switch runs on, in the order it must be torn down.
struct Runtime {
  std::unique_ptr<ledger::Ledger> ledger;
  std::unique_ptr<crypto::KeyStore> keys;
  std::unique_ptr<IsoHandler> handler;
  std::unique_ptr<IsoServer> server;
  std::unique_ptr<WebhookDispatcher> webhooks;  // with --http-listen (docs/api.md)
  std::unique_ptr<Api> api;                     // with --http-listen
  std::unique_ptr<HttpServer> http;             // with --http-listen
  std::unique_ptr<AdminServer> admin;           // with --admin-listen
  std::unique_ptr<HoldExpiryScan> expiry;  // without --http-listen (the dispatcher's otherwise)
  // The automatic cut-over (--cutover): checks once a second, stops first.
  std::thread cutover;
  std::mutex cutover_mu;
  std::condition_variable cutover_cv;
  bool cutover_stop = false;
};

// "HH:MM" -> seconds after 00:00 UTC.
std::optional<uint32_t> ParseCutover(std::string_view text) {
  if (text.size() != 5 || text[2] != ':') return std::nullopt;
  for (size_t i : {0u, 1u, 3u, 4u}) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
  }
  const uint32_t h = (text[0] - '0') * 10u + (text[1] - '0');
  const uint32_t m = (text[3] - '0') * 10u + (text[4] - '0');
  if (h > 23 || m > 59) return std::nullopt;
  return h * 3600 + m * 60;
}

void StartCutover(Runtime* rt, uint32_t s_of_day, Logger* logger) {
  rt->cutover = std::thread([rt, s_of_day, logger] {
    std::unique_lock<std::mutex> lock(rt->cutover_mu);
    while (!rt->cutover_stop) {
      lock.unlock();
      Result<std::optional<DayRecord>> closed = CloseDayIfDue(*rt->ledger, s_of_day);
      if (!closed.ok()) {
        logger->Log(LogLevel::kWarn, "cutover_failed", {{"error", closed.status().ToString()}});
      } else if (closed->has_value()) {
        logger->Log(LogLevel::kInfo, "day_closed",
                    {{"day", static_cast<int64_t>((*closed)->day)},
                     {"close_ns", std::to_string((*closed)->close_ns)}});
      }
      lock.lock();
      rt->cutover_cv.wait_for(lock, std::chrono::seconds(1), [rt] { return rt->cutover_stop; });
    }
  });
}

Status OpenRuntime(const SwitchConfig& config, Logger* logger, Runtime* rt) {
  std::optional<uint32_t> cutover_s;
  if (!config.cutover_utc.empty()) {
    cutover_s = ParseCutover(config.cutover_utc);
    if (!cutover_s) return Status::InvalidArgument("cutover must be HH:MM (UTC)");
  }
  ledger::Options lo;
  lo.path = config.data_dir + "/ledger";
  lo.pipeline_cpus = config.server.ledger_cpus;
  lo.background_low_priority = config.server.ledger_background_low_priority;
  lo.background_write_mib_per_s = config.server.ledger_background_write_mib_per_s;
  Result<std::unique_ptr<ledger::Ledger>> ledger = ledger::Ledger::Open(lo);
  if (!ledger.ok()) return Status::IOError("ledger " + lo.path + ": " + ledger.status().ToString());
  rt->ledger = std::move(ledger).value();
  Result<crypto::SecretBytes> master = crypto::LoadMasterKeyFile(config.master_key_file);
  if (!master.ok()) {
    return Status::IOError("master key " + config.master_key_file + ": " +
                           master.status().ToString());
  }
  Result<std::unique_ptr<crypto::KeyStore>> keys =
      crypto::KeyStore::Open(config.data_dir + "/keys", std::move(master).value());
  if (!keys.ok()) return Status::IOError("key store: " + keys.status().ToString());
  rt->keys = std::move(keys).value();
  const bool with_http = !config.server.http_listen.empty();
  if (with_http) NARAE_RETURN_IF_ERROR(EnsureApiTerminals(*rt->ledger, *rt->keys));
  Result<std::unique_ptr<IsoHandler>> handler =
      MakeAuthorizer(AuthorizerDeps{rt->ledger.get(), rt->keys.get()}, config.authorization_json);
  if (!handler.ok()) return Status::InvalidArgument("authorizer: " + handler.status().ToString());
  rt->handler = std::move(handler).value();
  if (!with_http) {  // expired holds give stand-in exposure back in an ISO-only switch too
    Result<std::unique_ptr<HoldExpiryScan>> scan = HoldExpiryScan::Start(*rt->ledger, *rt->handler);
    if (!scan.ok()) return scan.status();
    rt->expiry = std::move(scan).value();
  }
  Result<std::unique_ptr<IsoServer>> server =
      IsoServer::Start(config.server, rt->handler.get(), logger);
  if (!server.ok()) return server.status();
  rt->server = std::move(server).value();
  if (cutover_s) StartCutover(rt, *cutover_s, logger);
  if (!with_http) return Status::Ok();
  HttpConfig hc;  // the config file's "http" object (switch/api_config.hpp)
  hc.server.threads = config.server.threads;
  hc.server.max_connections = config.server.max_connections;
  NARAE_RETURN_IF_ERROR(ApplyHttpConfigJson(config.http_json, &hc));
  Result<std::unique_ptr<WebhookDispatcher>> webhooks =
      WebhookDispatcher::Start(hc.webhooks, rt->ledger.get(), rt->keys.get());
  if (!webhooks.ok()) return webhooks.status();
  rt->webhooks = std::move(webhooks).value();
  hc.api.extra_metrics = [d = rt->webhooks.get()](std::string* out) { d->AppendMetrics(out); };
  Result<std::unique_ptr<Api>> api =
      Api::Create({rt->ledger.get(), rt->keys.get(), rt->handler.get()}, hc.api);
  if (!api.ok()) return api.status();
  rt->api = std::move(api).value();
  HttpServerOptions ho = hc.server;
  ho.listen = config.server.http_listen;
  ho.io_cpus = config.server.io_cpus;
  Result<std::unique_ptr<HttpServer>> http =
      HttpServer::Start(ho, rt->api.get(), rt->handler.get(), logger);
  if (!http.ok()) return http.status();
  rt->http = std::move(http).value();
  return Status::Ok();
}

// The admin interface, last: DIR/admin.json appears once everything runs.
Status StartAdmin(const SwitchConfig& config, Logger* logger, Runtime* rt) {
  if (config.admin_listen.empty()) return Status::Ok();
  AdminServerOptions ao;
  ao.listen = config.admin_listen;
  ao.data_dir = config.data_dir;
  Result<std::unique_ptr<AdminServer>> admin = AdminServer::Start(
      ao, {rt->ledger.get(), rt->keys.get(), rt->handler.get(), rt->http != nullptr}, logger);
  if (!admin.ok()) return admin.status();
  rt->admin = std::move(admin).value();
  return Status::Ok();
}

// Stops the server (drain), then the ledger (flush), then the handler.
Status CloseRuntime(Runtime* rt) {
  if (rt->cutover.joinable()) {
    {
      std::lock_guard<std::mutex> lock(rt->cutover_mu);
      rt->cutover_stop = true;
    }
    rt->cutover_cv.notify_all();
    rt->cutover.join();
  }
  if (rt->admin) rt->admin->Shutdown();  // removes admin.json first
  if (rt->webhooks) rt->webhooks->Stop();
  if (rt->http) rt->http->Shutdown();
  if (rt->server) rt->server->Shutdown();
  if (rt->expiry) rt->expiry->Stop();
  Status s = rt->ledger ? rt->ledger->Close() : Status::Ok();
  rt->admin.reset();
  rt->http.reset();
  rt->api.reset();
  rt->webhooks.reset();
  rt->server.reset();
  rt->expiry.reset();
  rt->handler.reset();
  rt->keys.reset();
  rt->ledger.reset();
  return s;
}

int Run(int argc, char** argv) {
  bool help = false;
  std::optional<std::map<std::string, std::string>> args = ParseArgs(argc, argv, &help);
  if (help) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (!args) return kExitConfig;
  SwitchConfig config;
  if (Status s = BuildConfig(*args, &config); !s.ok()) {
    std::fprintf(stderr, "narae-switch: %s\n", s.message().c_str());
    return kExitConfig;
  }
  Result<std::unique_ptr<Logger>> logger =
      Logger::Open(config.log_file, ParseLogLevel(config.log_level).value());
  if (!logger.ok()) {
    std::fprintf(stderr, "narae-switch: %s\n", logger.status().ToString().c_str());
    return kExitConfig;
  }
  Logger& log = **logger;
  // Every thread started from here inherits the mask: only sigwait() below
  // sees SIGINT/SIGTERM.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Runtime rt;
  Status started = OpenRuntime(config, &log, &rt);
  if (started.ok()) started = StartAdmin(config, &log, &rt);
  if (Status s = started; !s.ok()) {
    log.Log(LogLevel::kError, "start_failed", {{"error", s.ToString()}});
    std::fprintf(stderr, "narae-switch: %s\n", s.ToString().c_str());
    (void)CloseRuntime(&rt);
    return kExitConfig;
  }
  std::printf("narae-switch: ISO 8583 on %s%s, data %s\n", rt.server->listen_address().c_str(),
              config.server.tls.enabled() ? " (TLS)" : "", config.data_dir.c_str());
  if (rt.http) std::printf("narae-switch: HTTP API on %s\n", rt.http->listen_address().c_str());
  if (rt.admin) {
    std::printf("narae-switch: admin on %s (%s/%s)\n", rt.admin->listen_address().c_str(),
                config.data_dir.c_str(), kAdminFileName);
  }
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  log.Log(LogLevel::kInfo, "signal",
          {{"signal", static_cast<int64_t>(sig)},
           {"action", "graceful shutdown; send again to exit now"}});
  // A second signal exits at once: safe, the ledger is crash-consistent.
  std::thread([signals] {
    int second = 0;
    sigwait(&signals, &second);
    static const char kMsg[] = "narae-switch: second signal, exiting now\n";
    (void)!write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
    _exit(128 + second);
  }).detach();
  Status closed = CloseRuntime(&rt);
  if (!closed.ok()) {
    log.Log(LogLevel::kError, "ledger_close_failed", {{"error", closed.ToString()}});
    return 1;
  }
  log.Log(LogLevel::kInfo, "stopped", {});
  return kExitOk;
}

}  // namespace
}  // namespace narae::switching

int main(int argc, char** argv) {
  try {
    return narae::switching::Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "narae-switch: %s\n", e.what());
    return 1;
  }
}
