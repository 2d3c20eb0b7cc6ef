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

// "a=1&b=2" -> {a: 1, b: 2}; at most 16 pairs, no percent-decoding (the
// values Narae takes are plain). A later duplicate wins.
std::map<std::string, std::string, std::less<>> ParseQuery(std::string_view query);

// An idempotency record: "<fingerprint>\n<3-digit status>\n<body>".
std::string IdemValue(const std::string& fingerprint, unsigned status, const std::string& body);
// Splits one; false when corrupt.
bool ParseIdemValue(std::string_view value, std::string* fingerprint, unsigned* status,
                    std::string* body);

}  // namespace narae::switching
