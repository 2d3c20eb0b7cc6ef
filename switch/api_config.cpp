// The "http" object of the switch config (see api_config.hpp).
#include "switch/api_config.hpp"

#include <nlohmann/json.hpp>

namespace narae::switching {
namespace {

using json = nlohmann::json;

struct Field {
  const char* name;
  uint32_t* out;
  uint32_t min;
  uint32_t max;
};

Status ApplyFields(const json& obj, const std::string& where, std::initializer_list<Field> fields,
                   const std::function<Status(const std::string&, const json&)>& other) {
  for (const auto& [key, value] : obj.items()) {
    const Field* f = nullptr;
    for (const Field& x : fields) {
      if (key == x.name) f = &x;
    }
    if (!f) {
      NARAE_RETURN_IF_ERROR(other(key, value));
      continue;
    }
    if (!value.is_number_unsigned() || value.get<uint64_t>() < f->min ||
        value.get<uint64_t>() > f->max) {
      return Status::InvalidArgument(where + key + ": must be an integer " +
                                     std::to_string(f->min) + ".." + std::to_string(f->max));
    }
    *f->out = static_cast<uint32_t>(value.get<uint64_t>());
  }
  return Status::Ok();
}

Status ApplyWebhooks(const json& obj, HttpConfig* c) {
  if (!obj.is_object()) return Status::InvalidArgument("http.webhooks: must be an object");
  WebhookOptions& w = c->webhooks;
  NARAE_RETURN_IF_ERROR(
      ApplyFields(obj, "http.webhooks.",
                  {{"poll_interval_ms", &w.poll_interval_ms, 1, 60000},
                   {"concurrency_max", &w.concurrency_max, 1, 1024},
                   {"queue_max", &w.queue_max, 1, 1'000'000},
                   {"attempts_max", &w.attempts_max, 1, 100},
                   {"backoff_initial_ms", &w.backoff_initial_ms, 1, 3'600'000},
                   {"backoff_max_ms", &w.backoff_max_ms, 1, 86'400'000},
                   {"attempt_timeout_ms", &w.attempt_timeout_ms, 1, 600'000},
                   {"response_bytes_max", &w.response_bytes_max, 1, 1 << 20},
                   {"config_reload_ms", &w.config_reload_ms, 1, 3'600'000},
                   {"expiry_scan_interval_ms", &w.expiry_scan_interval_ms, 0, 3'600'000}},
                  [&](const std::string& key, const json&) {
                    return Status::InvalidArgument("unknown config key http.webhooks." + key);
                  }));
  return ValidateWebhookOptions(w);
}

}  // namespace

Status ApplyHttpConfigJson(std::string_view json_text, HttpConfig* c) {
  json root = json::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (root.is_discarded() || !root.is_object()) {
    return Status::InvalidArgument("http: must be an object");
  }
  HttpServerOptions& s = c->server;
  ApiOptions& a = c->api;
  uint32_t skew_s = static_cast<uint32_t>(a.signature_skew_s);
  NARAE_RETURN_IF_ERROR(
      ApplyFields(root, "http.",
                  {{"body_bytes_max", &s.body_bytes_max, 256, 1 << 20},
                   {"header_bytes_max", &s.header_bytes_max, 1024, 1 << 16},
                   {"max_connections", &s.max_connections, 1, 1'000'000},
                   {"keep_alive_timeout_ms", &s.idle_timeout_ms, 1, 3'600'000},
                   {"read_timeout_ms", &s.read_timeout_ms, 1, 600'000},
                   {"write_timeout_ms", &s.write_timeout_ms, 1, 600'000},
                   {"requests_per_connection_max", &s.requests_per_connection_max, 0, UINT32_MAX},
                   {"shutdown_grace_ms", &s.shutdown_grace_ms, 0, 600'000},
                   {"threads", &s.threads, 0, 256},
                   {"rate_per_s", &a.rate_per_s, 0, 10'000'000},
                   {"rate_burst", &a.rate_burst, 1, 10'000'000},
                   {"signature_skew_s", &skew_s, 1, 86'400}},
                  [&](const std::string& key, const json& value) {
                    if (key == "webhooks") return ApplyWebhooks(value, c);
                    return Status::InvalidArgument("unknown config key http." + key);
                  }));
  a.signature_skew_s = skew_s;
  return Status::Ok();
}

}  // namespace narae::switching
