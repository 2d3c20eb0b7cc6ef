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

namespace {

// A cursor over a body for ParseCardPaymentBody: every step is checked and
// fails (false) on anything outside the plain shape.
class PlainJson {
 public:
  explicit PlainJson(std::string_view text) : s_(text) {}
  void Space() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  // `c` after optional white space.
  bool Take(char c) {
    Space();
    if (i_ >= s_.size() || s_[i_] != c) return false;
    ++i_;
    return true;
  }
  bool Peek(char c) {
    Space();
    return i_ < s_.size() && s_[i_] == c;
  }
  // A string of printable ASCII without escapes.
  bool String(std::string_view* out) {
    if (!Take('"')) return false;
    const size_t start = i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      const char c = s_[i_];
      if (c < 0x20 || c > 0x7e || c == '\\') return false;
      ++i_;
    }
    if (i_ >= s_.size()) return false;
    *out = s_.substr(start, i_ - start);
    ++i_;
    return true;
  }
  // 1..kDigitsMax digits, no leading zero but "0", not followed by a
  // fraction or an exponent; or a string of 1..kDigitsMax digits.
  bool Amount(uint64_t* out) {
    constexpr size_t kDigitsMax = 15;
    std::string_view digits;
    if (Peek('"')) {
      if (!String(&digits)) return false;
    } else {
      const size_t start = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      digits = s_.substr(start, i_ - start);
      if (digits.size() > 1 && digits[0] == '0') return false;
      if (i_ < s_.size() && (s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E')) return false;
    }
    if (digits.empty() || digits.size() > kDigitsMax) return false;
    uint64_t v = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    *out = v;
    return true;
  }
  bool AtEnd() {
    Space();
    return i_ == s_.size();
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

bool ParseCard(PlainJson& p, CardPaymentBody* out) {
  if (!p.Take('{')) return false;
  bool pan = false, expiry = false, cvv2 = false;
  for (int n = 0; n < 3; ++n) {
    if (n != 0 && !p.Take(',')) return false;
    std::string_view key;
    if (!p.String(&key) || !p.Take(':')) return false;
    bool* seen = key == "pan" ? &pan : key == "expiry" ? &expiry : key == "cvv2" ? &cvv2 : nullptr;
    if (!seen || *seen) return false;
    *seen = true;
    std::string_view* v = key == "pan" ? &out->pan : key == "expiry" ? &out->expiry : &out->cvv2;
    if (!p.String(v)) return false;
  }
  return p.Take('}');
}

}  // namespace

std::optional<CardPaymentBody> ParseCardPaymentBody(std::string_view body) {
  constexpr int kMembersMax = 5;  // amount, currency, order_ref, capture, card
  PlainJson p(body);
  CardPaymentBody out;
  if (!p.Take('{')) return std::nullopt;
  bool amount = false, currency = false, card = false;
  for (int n = 0; n < kMembersMax && !p.Peek('}'); ++n) {
    if (n != 0 && !p.Take(',')) return std::nullopt;
    std::string_view key;
    if (!p.String(&key) || !p.Take(':')) return std::nullopt;
    bool ok = false;
    if (key == "amount" && !amount) {
      amount = true;
      ok = p.Amount(&out.amount_minor);
    } else if (key == "currency" && !currency) {
      currency = true;
      ok = p.String(&out.currency);
    } else if (key == "order_ref" && !out.order_ref) {
      ok = p.String(&out.order_ref.emplace());
    } else if (key == "capture" && !out.capture) {
      ok = p.String(&out.capture.emplace());
    } else if (key == "card" && !card) {
      card = true;
      ok = ParseCard(p, &out);
    }
    if (!ok) return std::nullopt;
  }
  if (!p.Take('}') || !p.AtEnd() || !amount || !currency || !card) return std::nullopt;
  return out;
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

std::string IdemValue(std::string_view fingerprint, unsigned status, std::string_view body_prefix,
                      std::string_view body) {
  std::string v;
  AppendIdemValue(&v, fingerprint, status, body_prefix, body);
  return v;
}

void AppendIdemValue(std::string* out, std::string_view fingerprint, unsigned status,
                     std::string_view body_prefix, std::string_view body) {
  NARAE_CHECK(status >= 100 && status <= 999);  // three digits, as ParseIdemValue reads them
  out->reserve(out->size() + fingerprint.size() + 5 + body_prefix.size() + body.size());
  out->append(fingerprint).push_back('\n');
  out->push_back(static_cast<char>('0' + status / 100));
  out->push_back(static_cast<char>('0' + status / 10 % 10));
  out->push_back(static_cast<char>('0' + status % 10));
  out->append("\n").append(body_prefix).append(body);
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
