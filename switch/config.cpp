// narae-switch's JSON config file (docs/switch.md, "Configuration").
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ledger/ledger.hpp"
#include "switch/admin_server.hpp"
#include "switch/api_config.hpp"
#include "switch/log.hpp"
#include "switch/switch.hpp"

namespace narae::switching {
namespace {

using Json = nlohmann::json;

Status GetString(const Json& obj, const std::string& key, const std::string& where,
                 std::string* out) {
  const Json& v = obj.at(key);
  if (!v.is_string()) return Status::InvalidArgument(where + key + ": must be a string");
  *out = v.get<std::string>();
  return Status::Ok();
}

Status GetUint32(const Json& obj, const std::string& key, const std::string& where, uint32_t* out) {
  const Json& v = obj.at(key);
  if (!v.is_number_unsigned() || v.get<uint64_t>() > UINT32_MAX) {
    return Status::InvalidArgument(where + key + ": must be an integer 0..4294967295");
  }
  *out = static_cast<uint32_t>(v.get<uint64_t>());
  return Status::Ok();
}

// A list of CPU ids: [0, 1]. Whether this process may run on them is
// checked by ValidateConfig (ledger::CheckCpus).
Status GetCpuList(const Json& obj, const std::string& key, const std::string& where,
                  std::vector<uint32_t>* out) {
  const Json& v = obj.at(key);
  const std::string bad = where + key + ": must be a list of CPU numbers 0..1023 (at most 1024)";
  if (!v.is_array() || v.size() > ledger::kCpusMax) return Status::InvalidArgument(bad);
  out->clear();
  for (const Json& cpu : v) {  // bounded: kCpusMax
    if (!cpu.is_number_unsigned() || cpu.get<uint64_t>() >= ledger::kCpusMax) {
      return Status::InvalidArgument(bad);
    }
    out->push_back(static_cast<uint32_t>(cpu.get<uint64_t>()));
  }
  return Status::Ok();
}

Status ApplyTls(const Json& obj, TlsOptions* tls) {
  if (!obj.is_object()) return Status::InvalidArgument("server.tls: must be an object");
  const std::string where = "server.tls.";
  for (const auto& [key, value] : obj.items()) {
    (void)value;
    if (key == "cert_file") {
      NARAE_RETURN_IF_ERROR(GetString(obj, key, where, &tls->cert_file));
    } else if (key == "key_file") {
      NARAE_RETURN_IF_ERROR(GetString(obj, key, where, &tls->key_file));
    } else if (key == "client_ca_file") {
      NARAE_RETURN_IF_ERROR(GetString(obj, key, where, &tls->client_ca_file));
    } else {
      return Status::InvalidArgument("unknown config key " + where + key);
    }
  }
  return Status::Ok();
}

Status ApplyServer(const Json& obj, ServerOptions* o) {
  if (!obj.is_object()) return Status::InvalidArgument("server: must be an object");
  const std::string where = "server.";
  const std::pair<const char*, uint32_t*> numbers[] = {
      {"threads", &o->threads},
      {"max_connections", &o->max_connections},
      {"max_frame_bytes", &o->max_frame_bytes},
      {"read_timeout_ms", &o->read_timeout_ms},
      {"idle_timeout_ms", &o->idle_timeout_ms},
      {"write_timeout_ms", &o->write_timeout_ms},
      {"max_in_flight_per_connection", &o->max_in_flight_per_connection},
      {"shutdown_grace_ms", &o->shutdown_grace_ms},
      {"summary_interval_ms", &o->summary_interval_ms},
      {"ledger_background_write_mib_per_s", &o->ledger_background_write_mib_per_s},
  };
  for (const auto& [key, value] : obj.items()) {
    if (key == "tls") {
      NARAE_RETURN_IF_ERROR(ApplyTls(value, &o->tls));
      continue;
    }
    if (key == "ledger_background_low_priority") {
      if (!value.is_boolean())
        return Status::InvalidArgument(where + key + ": must be true or false");
      o->ledger_background_low_priority = value.get<bool>();
      continue;
    }
    if (key == "io_cpus" || key == "ledger_cpus") {
      NARAE_RETURN_IF_ERROR(
          GetCpuList(obj, key, where, key == "io_cpus" ? &o->io_cpus : &o->ledger_cpus));
      continue;
    }
    bool known = false;
    for (const auto& [name, field] : numbers) {
      if (key == name) {
        NARAE_RETURN_IF_ERROR(GetUint32(obj, key, where, field));
        known = true;
      }
    }
    if (!known) return Status::InvalidArgument("unknown config key " + where + key);
  }
  return Status::Ok();
}

}  // namespace

Status ApplyConfigJson(std::string_view json_text, SwitchConfig* config) {
  NARAE_CHECK(config != nullptr);
  Json root = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return Status::InvalidArgument("config: not valid JSON");
  if (!root.is_object()) return Status::InvalidArgument("config: the top level must be an object");
  for (const auto& [key, value] : root.items()) {
    if (key == "data") {
      NARAE_RETURN_IF_ERROR(GetString(root, key, "", &config->data_dir));
    } else if (key == "iso_listen") {
      NARAE_RETURN_IF_ERROR(GetString(root, key, "", &config->server.iso_listen));
    } else if (key == "http_listen") {
      NARAE_RETURN_IF_ERROR(GetString(root, key, "", &config->server.http_listen));
    } else if (key == "master_key_file") {
      NARAE_RETURN_IF_ERROR(GetString(root, key, "", &config->master_key_file));
    } else if (key == "log_level") {
      NARAE_RETURN_IF_ERROR(GetString(root, key, "", &config->log_level));
    } else if (key == "log_file") {
      NARAE_RETURN_IF_ERROR(GetString(root, key, "", &config->log_file));
    } else if (key == "cutover_utc") {
      NARAE_RETURN_IF_ERROR(GetString(root, key, "", &config->cutover_utc));
    } else if (key == "admin_listen") {
      NARAE_RETURN_IF_ERROR(GetString(root, key, "", &config->admin_listen));
    } else if (key == "server") {
      NARAE_RETURN_IF_ERROR(ApplyServer(value, &config->server));
    } else if (key == "authorization") {
      if (!value.is_object()) return Status::InvalidArgument("authorization: must be an object");
      config->authorization_json = value.dump();
    } else if (key == "http") {  // the HTTP API's limits and webhooks (switch/api_config.hpp)
      if (!value.is_object()) return Status::InvalidArgument("http: must be an object");
      config->http_json = value.dump();
    } else {
      return Status::InvalidArgument("unknown config key " + key);
    }
  }
  return Status::Ok();
}

Status LoadConfigFile(const std::string& path, SwitchConfig* config) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot read config file " + path);
  constexpr std::streamsize kConfigBytesMax = 1 << 20;
  std::string text(static_cast<size_t>(kConfigBytesMax) + 1, '\0');
  in.read(text.data(), kConfigBytesMax + 1);
  if (in.bad()) return Status::IOError("cannot read config file " + path);
  if (in.gcount() > kConfigBytesMax) {
    return Status::InvalidArgument("config file " + path + " is larger than 1 MiB");
  }
  text.resize(static_cast<size_t>(in.gcount()));
  Status s = ApplyConfigJson(text, config);
  if (!s.ok()) return Status::InvalidArgument(path + ": " + s.message());
  return Status::Ok();
}

Status ValidateConfig(const SwitchConfig& config) {
  if (config.data_dir.empty()) return Status::InvalidArgument("--data (or \"data\") is required");
  if (config.server.iso_listen.empty()) {
    return Status::InvalidArgument("--iso-listen (or \"iso_listen\") is required");
  }
  std::string host;
  uint16_t port = 0;
  NARAE_RETURN_IF_ERROR(ParseHostPort(config.server.iso_listen, &host, &port));
  if (!config.server.http_listen.empty()) {
    NARAE_RETURN_IF_ERROR(ParseHostPort(config.server.http_listen, &host, &port));
  }
  if (!config.admin_listen.empty()) NARAE_RETURN_IF_ERROR(ValidateAdminListen(config.admin_listen));
  if (Status st = ledger::CheckCpus(config.server.io_cpus); !st.ok()) {
    return Status::InvalidArgument("server.io_cpus: " + st.message());
  }
  if (Status st = ledger::CheckCpus(config.server.ledger_cpus); !st.ok()) {
    return Status::InvalidArgument("server.ledger_cpus: " + st.message());
  }
  if (config.server.ledger_background_write_mib_per_s > ledger::kBackgroundWriteMibPerSMax) {
    return Status::InvalidArgument("server.ledger_background_write_mib_per_s: must be 0.." +
                                   std::to_string(ledger::kBackgroundWriteMibPerSMax));
  }
  Result<LogLevel> level = ParseLogLevel(config.log_level);
  if (!level.ok()) return level.status();
  HttpConfig http;
  NARAE_RETURN_IF_ERROR(ApplyHttpConfigJson(config.http_json, &http));
  return Status::Ok();
}

}  // namespace narae::switching
