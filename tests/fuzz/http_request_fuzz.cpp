// libFuzzer target for what the storefront API parses from the network: the
// HTTP/1.1 request (Boost.Beast's parser with the server's header and body
// limits, fed in two pieces as a socket would), the query string, the JSON
// body and its amounts, and a stored idempotency record.
//
// Properties: nothing crashes; an accepted amount is 1..kAmountMinorMax;
// IdemValue(ParseIdemValue(x)) gives x back when x parses; a body the plain
// card payment reader (ParseCardPaymentBody) accepts is one nlohmann parses
// into an object of exactly the same members and values.
#include <utility>
// clang-format off
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "switch/api.hpp"
#include "switch/api_parse.hpp"

using namespace narae::switching;
namespace http = boost::beast::http;

namespace {

void CheckAmount(const nlohmann::json& v) {
  std::optional<uint64_t> a = ParseAmountJson(v);
  if (a && (*a == 0 || *a > kAmountMinorMax)) std::abort();
}

// ParseCardPaymentBody against nlohmann on the same bytes.
void CheckPlainCardBody(std::string_view body, const nlohmann::json& j) {
  std::optional<CardPaymentBody> p = ParseCardPaymentBody(body);
  if (!p) return;
  if (j.is_discarded() || !j.is_object()) std::abort();
  const size_t members = 3 + (p->order_ref ? 1 : 0) + (p->capture ? 1 : 0);
  if (j.size() != members || !j.contains("amount") || !j.contains("currency") ||
      !j.contains("card")) {
    std::abort();
  }
  const nlohmann::json& a = j["amount"];
  const bool amount_same =
      (a.is_number_unsigned() && a.get<uint64_t>() == p->amount_minor) ||
      (a.is_string() && ParseAmountJson(a).value_or(p->amount_minor) == p->amount_minor);
  auto same = [&](const nlohmann::json& o, const char* k, std::string_view v) {
    return o.contains(k) && o[k].is_string() && o[k].get<std::string>() == v;
  };
  const nlohmann::json& c = j["card"];
  if (!amount_same || !same(j, "currency", p->currency) ||
      (p->order_ref && !same(j, "order_ref", *p->order_ref)) ||
      (p->capture && !same(j, "capture", *p->capture)) || !c.is_object() || c.size() != 3 ||
      !same(c, "pan", p->pan) || !same(c, "expiry", p->expiry) || !same(c, "cvv2", p->cvv2)) {
    std::abort();
  }
}

void CheckBody(std::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  CheckPlainCardBody(body, j);
  if (j.is_discarded() || !j.is_object()) return;
  if (j.contains("amount")) CheckAmount(j["amount"]);
  if (j.contains("split") && j["split"].is_object() && j["split"].contains("delivery_fee")) {
    CheckAmount(j["split"]["delivery_fee"]);
  }
  if (j.contains("currency") && j["currency"].is_string()) {
    uint16_t n = CurrencyNumeric(j["currency"].get<std::string>());
    if (n != 0 && CurrencyAlpha(n) != j["currency"].get<std::string>()) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // As a stored idempotency record.
  std::string fp, body;
  unsigned status = 0;
  if (ParseIdemValue(input, &fp, &status, &body)) {
    if (status > 999 || IdemValue(fp, status, "", body) != input) std::abort();
  }
  // As a request off the wire, in two reads.
  http::request_parser<http::string_body> parser;
  parser.header_limit(8192);
  parser.body_limit(16384);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t used = 0;
  for (size_t avail : {size / 2, size}) {
    while (used < avail && !parser.is_done()) {
      size_t n = parser.put(boost::asio::buffer(data + used, avail - used), ec);
      used += n;
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) return 0;
      if (n == 0) break;
    }
  }
  if (!parser.is_done()) {
    if (!parser.got_some()) return 0;  // put_eof() requires some input
    parser.put_eof(ec);
    if (ec || !parser.is_done()) return 0;
  }
  const auto& req = parser.get();
  std::string_view target(req.target().data(), req.target().size());
  size_t q = target.find('?');
  if (q != std::string_view::npos) {
    auto params = ParseQuery(target.substr(q + 1));
    if (params.size() > 16) std::abort();
  }
  CheckBody(req.body());
  CheckBody(input);  // the body parsers alone, on any bytes
  return 0;
}
