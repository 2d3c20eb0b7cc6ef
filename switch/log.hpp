// Structured log lines of the switch: one JSON object per line.
//
//   {"ts":"2026-11-29T10:00:00.123Z","level":"info","event":"listening","addr":"127.0.0.1:8583"}
//
// What may be logged about a request is fixed by RequestLogFields(): MTI,
// STAN, masked PAN (first 6, last 4), terminal, merchant, amount, currency,
// response code and latency. Nothing else of a message is ever copied into a
// log line: no PIN block (52), CVV2 (48), track 2 (35), chip data (55), SIM
// cryptogram (62), MAC (64/128) or key. Callers log other events with their
// own fields and must never pass secrets (docs/switch.md, "Logging").
//
// Thread safety: a Logger may be used from any number of threads; each line
// is written with one fwrite under a mutex, so lines never interleave.
#pragma once

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/status.hpp"
#include "switch/iso8583.hpp"

namespace narae::switching {

enum class LogLevel : uint8_t { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

// "trace", "debug", "info", "warn", "error", "off".
Result<LogLevel> ParseLogLevel(std::string_view name);
std::string_view LogLevelName(LogLevel level);

// One key/value of a log line. Strings are JSON-escaped; numbers and
// booleans are written bare.
struct LogField {
  enum class Kind : uint8_t { kString, kInt, kUint, kBool };
  LogField(std::string_view k, std::string_view v) : key(k), kind(Kind::kString), text(v) {}
  LogField(std::string_view k, const char* v) : key(k), kind(Kind::kString), text(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), kind(Kind::kString), text(v) {}
  LogField(std::string_view k, int64_t v) : key(k), kind(Kind::kInt), i(v) {}
  LogField(std::string_view k, int32_t v) : key(k), kind(Kind::kInt), i(v) {}
  LogField(std::string_view k, uint64_t v) : key(k), kind(Kind::kUint), u(v) {}
  LogField(std::string_view k, uint32_t v) : key(k), kind(Kind::kUint), u(v) {}
  LogField(std::string_view k, bool v) : key(k), kind(Kind::kBool), b(v) {}

  std::string_view key;
  Kind kind;
  std::string_view text;
  int64_t i = 0;
  uint64_t u = 0;
  bool b = false;
};

class Logger {
 public:
  // Writes to stderr.
  explicit Logger(LogLevel level = LogLevel::kInfo);
  // Appends to `path` ("" or "-" = stderr).
  static Result<std::unique_ptr<Logger>> Open(const std::string& path, LogLevel level);
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  LogLevel level() const { return level_; }
  bool Enabled(LogLevel level) const { return level >= level_ && level != LogLevel::kOff; }

  void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields);
  void Log(LogLevel level, std::string_view event, const std::vector<LogField>& fields);

  // The line Log() would write (no newline); for tests.
  static std::string Format(LogLevel level, std::string_view event, const LogField* fields,
                            size_t count);

 private:
  Logger(LogLevel level, FILE* file, bool owned);
  void Write(LogLevel level, std::string_view event, const LogField* fields, size_t count);

  LogLevel level_;
  std::mutex mu_;
  FILE* file_;  // GUARDED_BY(mu_) for writes
  bool owned_;
};

// The only fields of a request/response pair that may be logged (see the
// header comment). Values point into `request`/`response` and `pan_masked`.
// `pan_masked` receives MaskPan(field 2).
std::vector<LogField> RequestLogFields(const Message& request, const Message* response,
                                       uint64_t latency_us, std::string* pan_masked);

// Appends `text` to `out` as a JSON string body (no quotes), escaping
// quotes, backslashes and control characters; bytes >= 0x80 are written as
// \u00XX so every line is valid JSON whatever the input.
void AppendJsonEscaped(std::string* out, std::string_view text);

}  // namespace narae::switching
