// Structured JSON log lines. See log.hpp.
#include "switch/log.hpp"

#include <chrono>
#include <cstring>
#include <ctime>

namespace narae::switching {

Result<LogLevel> ParseLogLevel(std::string_view name) {
  static constexpr LogLevel kLevels[] = {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo,
                                         LogLevel::kWarn,  LogLevel::kError, LogLevel::kOff};
  for (LogLevel level : kLevels) {
    if (LogLevelName(level) == name) return level;
  }
  return Status::InvalidArgument("unknown log level '" + std::string(name) +
                                 "' (trace, debug, info, warn, error, off)");
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "trace";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      return "off";
  }
  return "unknown";
}

void AppendJsonEscaped(std::string* out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : text) {
    const auto byte = static_cast<uint8_t>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (byte < 0x20 || byte >= 0x7f) {
      out->append("\\u00");
      out->push_back(kHex[byte >> 4]);
      out->push_back(kHex[byte & 0xf]);
    } else {
      out->push_back(c);
    }
  }
}

namespace {

void AppendTimestamp(std::string* out) {
  const auto now = std::chrono::system_clock::now();
  const int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const int n = std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, static_cast<int>(ms % 1000));
  NARAE_CHECK(n > 0 && static_cast<size_t>(n) < sizeof(buf));
  out->append(buf, static_cast<size_t>(n));
}

void AppendField(std::string* out, const LogField& f) {
  out->append(",\"");
  AppendJsonEscaped(out, f.key);
  out->append("\":");
  switch (f.kind) {
    case LogField::Kind::kString:
      out->push_back('"');
      AppendJsonEscaped(out, f.text);
      out->push_back('"');
      break;
    case LogField::Kind::kInt:
      out->append(std::to_string(f.i));
      break;
    case LogField::Kind::kUint:
      out->append(std::to_string(f.u));
      break;
    case LogField::Kind::kBool:
      out->append(f.b ? "true" : "false");
      break;
  }
}

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

}  // namespace

Logger::Logger(LogLevel level) : Logger(level, stderr, false) {}

Logger::Logger(LogLevel level, FILE* file, bool owned) : level_(level), file_(file), owned_(owned) {
  NARAE_CHECK(file_ != nullptr);
}

Logger::~Logger() {
  if (owned_) std::fclose(file_);
}

Result<std::unique_ptr<Logger>> Logger::Open(const std::string& path, LogLevel level) {
  if (path.empty() || path == "-") return std::unique_ptr<Logger>(new Logger(level));
  FILE* f = std::fopen(path.c_str(), "ae");
  if (f == nullptr) {
    return Status::IOError("cannot open log file " + path + ": " + std::strerror(errno));
  }
  return std::unique_ptr<Logger>(new Logger(level, f, true));
}

std::string Logger::Format(LogLevel level, std::string_view event, const LogField* fields,
                           size_t count) {
  std::string line;
  line.reserve(128);
  line.append("{\"ts\":\"");
  AppendTimestamp(&line);
  line.append("\",\"level\":\"");
  line.append(LogLevelName(level));
  line.append("\",\"event\":\"");
  AppendJsonEscaped(&line, event);
  line.push_back('"');
  for (size_t i = 0; i < count; ++i) AppendField(&line, fields[i]);
  line.push_back('}');
  return line;
}

void Logger::Write(LogLevel level, std::string_view event, const LogField* fields, size_t count) {
  if (!Enabled(level)) return;
  std::string line = Format(level, event, fields, count);
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(mu_);
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

void Logger::Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  Write(level, event, fields.begin(), fields.size());
}

void Logger::Log(LogLevel level, std::string_view event, const std::vector<LogField>& fields) {
  Write(level, event, fields.data(), fields.size());
}

std::vector<LogField> RequestLogFields(const Message& request, const Message* response,
                                       uint64_t latency_us, std::string* pan_masked) {
  NARAE_CHECK(pan_masked != nullptr);
  std::vector<LogField> out;
  out.reserve(10);
  out.emplace_back("mti", request.mti());
  if (request.Has(11)) out.emplace_back("stan", request.Get(11));
  if (request.Has(2)) {
    *pan_masked = MaskPan(request.Get(2));
    out.emplace_back("pan", *pan_masked);
  }
  if (request.Has(3)) out.emplace_back("pc", request.Get(3));
  if (request.Has(41)) out.emplace_back("terminal", TrimRight(request.Get(41)));
  if (request.Has(42)) out.emplace_back("merchant", TrimRight(request.Get(42)));
  if (request.Has(4)) out.emplace_back("amount", request.Get(4));
  if (request.Has(49)) out.emplace_back("currency", request.Get(49));
  if (request.Has(70)) out.emplace_back("nmic", request.Get(70));
  if (response != nullptr && response->Has(39)) out.emplace_back("rc", response->Get(39));
  out.emplace_back("latency_us", latency_us);
  return out;
}

}  // namespace narae::switching
