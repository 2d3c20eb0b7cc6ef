// Pure parsers of the storefront API (switch/api.cpp), apart so the fuzz
// target (tests/fuzz/http_request_fuzz.cpp) links them without the engine.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace narae::switching {

// An amount in minor units: a JSON unsigned integer or a string of 1..19
// digits, 1..kAmountMinorMax (api.hpp); nullopt otherwise.
std::optional<uint64_t> ParseAmountJson(const nlohmann::json& value);

// The "split" object of POST /v1/payments (docs/api.md): exactly one of
// {"delivery_fee": amount} (an amount as ParseAmountJson, at most
// `amount_minor`) and {"delivery_distance_m": N} (an unsigned integer
// 0..kDistanceMetersMax, priced later by the merchant's delivery bands).
struct ApiSplit {
  uint64_t delivery_fee_minor = 0;     // the fixed form
  std::optional<uint32_t> distance_m;  // the distance form
};
// Fills `out` or returns the message of the 400 answer.
std::optional<std::string> ParseApiSplit(const nlohmann::json& split, uint64_t amount_minor,
                                         ApiSplit* out);

// POST /v1/payments with a card, in the plain shape storefronts send: a
// JSON object of `amount` (an integer, or a string of digits, at most 15),
// `currency`, `order_ref` and `capture` (strings, the last two optional) and
// `card` (an object of exactly `pan`, `expiry` and `cvv2`, strings), each
// key once, in any order, strings of printable ASCII without escapes, JSON
// white space anywhere. Read without building a JSON tree (the common
// request's parse cost about a quarter of the HTTP thread's work). Any
// other body (another key, `sim`, `split`, an escape, a float, a duplicate,
// trailing bytes, ...) -> nullopt, and the caller parses it the general way
// (nlohmann), which gives its answer: a body this accepts is one nlohmann
// reads into the same members (the fuzz target checks it). The values are
// not checked here (an amount may be 0, a PAN letters...). The views point
// into `body`.
struct CardPaymentBody {
  uint64_t amount_minor = 0;
  std::string_view currency;
  std::optional<std::string_view> order_ref;
  std::optional<std::string_view> capture;
  std::string_view pan;
  std::string_view expiry;
  std::string_view cvv2;
};
std::optional<CardPaymentBody> ParseCardPaymentBody(std::string_view body);

// "a=1&b=2" -> {a: 1, b: 2}; at most 16 pairs, no percent-decoding (the
// values Narae takes are plain). A later duplicate wins.
std::map<std::string, std::string, std::less<>> ParseQuery(std::string_view query);

// An idempotency record: "<fingerprint>\n<3-digit status>\n<body_prefix><body>"
// (a prefix "@" names the event whose data is the body). REQUIRES: status in 100..999.
std::string IdemValue(std::string_view fingerprint, unsigned status, std::string_view body_prefix,
                      std::string_view body);
// The same, appended to `*out`.
void AppendIdemValue(std::string* out, std::string_view fingerprint, unsigned status,
                     std::string_view body_prefix, std::string_view body);
// Splits one; false when corrupt.
bool ParseIdemValue(std::string_view value, std::string* fingerprint, unsigned* status,
                    std::string* body);

}  // namespace narae::switching
