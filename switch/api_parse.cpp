// Pure parsers of the storefront API (see api_parse.hpp).
#include "switch/api_parse.hpp"

#include <algorithm>

#include "switch/api.hpp"

namespace narae::switching {
namespace {
bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

struct CurrencyCode {
  const char* alpha;
  uint16_t numeric;
};
constexpr CurrencyCode kCurrencies[] = {{"KPW", 408}, {"USD", 840}, {"EUR", 978}, {"CNY", 156},
                                        {"RUB", 643}, {"JPY", 392}, {"GBP", 826}};

}  // namespace

uint16_t CurrencyNumeric(std::string_view alpha) {
  for (const CurrencyCode& c : kCurrencies) {
    if (alpha == c.alpha) return c.numeric;
  }
  return 0;
}

std::string CurrencyAlpha(uint16_t numeric) {
  for (const CurrencyCode& c : kCurrencies) {
    if (numeric == c.numeric) return c.alpha;
  }
  return "";
}

std::optional<uint64_t> ParseAmountJson(const nlohmann::json& v) {
  uint64_t out = 0;
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
  } else if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (!AllDigits(s) || s.size() > 19) return std::nullopt;  // 19 digits fit in uint64
    for (char c : s) out = out * 10 + static_cast<uint64_t>(c - '0');
  } else {
    return std::nullopt;
  }
  if (out == 0 || out > kAmountMinorMax) return std::nullopt;
  return out;
}

std::optional<std::string> ParseApiSplit(const nlohmann::json& s, uint64_t amount_minor,
                                         ApiSplit* out) {
  static constexpr const char* kForms =
      "split must be {\"delivery_fee\": amount} or {\"delivery_distance_m\": meters}";
  if (!s.is_object() || s.size() != 1) return kForms;
  if (s.contains("delivery_fee")) {
    std::optional<uint64_t> fee = ParseAmountJson(s["delivery_fee"]);
    if (!fee || *fee > amount_minor) return "split.delivery_fee must be 1..amount";
    out->delivery_fee_minor = *fee;
    return std::nullopt;
  }
  if (s.contains("delivery_distance_m")) {
    const nlohmann::json& d = s["delivery_distance_m"];
    if (!d.is_number_unsigned() || d.get<uint64_t>() > kDistanceMetersMax) {
      return "split.delivery_distance_m must be an integer 0..20000000 (meters)";
    }
    out->distance_m = static_cast<uint32_t>(d.get<uint64_t>());
    return std::nullopt;
  }
  return kForms;
}

std::map<std::string, std::string, std::less<>> ParseQuery(std::string_view q) {
  constexpr size_t kPairsMax = 16;
  std::map<std::string, std::string, std::less<>> out;
  for (size_t n = 0; n < kPairsMax && !q.empty(); ++n) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    size_t eq = pair.find('=');
    out[std::string(pair.substr(0, eq))] =
        eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

std::string IdemValue(const std::string& fingerprint, unsigned status, const std::string& body) {
  return fingerprint + "\n" + std::to_string(status) + "\n" + body;
}

bool ParseIdemValue(std::string_view v, std::string* fingerprint, unsigned* status,
                    std::string* body) {
  size_t a = v.find('\n');
  if (a == std::string_view::npos) return false;
  size_t b = v.find('\n', a + 1);
  if (b == std::string_view::npos || b - a - 1 != 3) return false;
  std::string_view st = v.substr(a + 1, 3);
  if (!AllDigits(st) || st[0] == '0') return false;  // a status is 100..999, as IdemValue writes
  *fingerprint = std::string(v.substr(0, a));
  *status = static_cast<unsigned>((st[0] - '0') * 100 + (st[1] - '0') * 10 + (st[2] - '0'));
  *body = std::string(v.substr(b + 1));
  return true;
}

}  // namespace narae::switching
