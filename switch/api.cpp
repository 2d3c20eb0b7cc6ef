// The storefront HTTP/JSON API (see api.hpp and docs/api.md).
//
// Cost sketch per payment: on the calling I/O thread one HMAC-SHA256 of the
// request (the merchant's key set up once, crypto::MerchantRequestVerifier),
// two SHA-256 (the body, once, for both the signature and the idempotency
// fingerprint; the Idempotency-Key, each with the thread's SHA-256 context),
// the body read without a JSON tree when it is a plain card payment
// (ParseCardPaymentBody; a SAX parse otherwise) and a message build, then the authorizer's own
// I/O-thread work (no ledger read: the idempotency record is read in the transaction, or on a
// refusal here); on the ledger's sequencer thread, in the authorizer's transaction, one aux read
// (the idempotency key) and three aux writes (idempotency record naming the event, list row with
// the metadata, event) next to the authorizer's, their JSON written by hand (JsonOut); the reply
// leaves from the ledger's done callback. docs/api.md ("Measured") has the figures.
#include "switch/api.hpp"
#include "switch/api_events.hpp"
#include "switch/api_parse.hpp"
#include "switch/webhook.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/authorizer.hpp"
#include "switch/bank.hpp"
#include "switch/iso8583.hpp"

namespace narae::switching {
namespace {

using json = nlohmann::json;
using RC = ResponseCode;

constexpr std::string_view kAuxIdemPrefix = "ap/i/";
constexpr std::string_view kAuxMetaPrefix = "ap/p/";
constexpr std::string_view kAuxListPrefix = "ap/l/";
constexpr std::string_view kPaymentIdPrefix = "pay_";
constexpr size_t kRrnBytes = 12;
// The sequencer's idempotency record buffer is kept up to this size.
constexpr size_t kIdemScratchBytesMax = 16 * 1024;
constexpr uint32_t kStanPhysicalBase = 900000;  // STANs the API uses on physical terminals
constexpr uint32_t kStanRange = 100000;
constexpr uint32_t kListScanRowsMax = 10000;  // rows examined per list call (order_ref filter)
constexpr std::string_view kAuxRrnIndexPrefix = "au/r/";  // the authorizer's RRN index

// A request body as JSON, strictly: at most kBodyDepthMax levels of nesting
// and no key twice in one object (nlohmann would keep the last one silently:
// two readers of one body must never see two different requests). Invalid
// UTF-8 is refused by the parser itself. Discarded on any of these.
constexpr int kBodyDepthMax = 8;
// A SAX handler in front of nlohmann's own DOM builder (cheaper than its
// callback parser, which makes a json value of every key): counts the open
// containers and remembers each open object's keys. Any false return stops
// the parse.
class StrictSax {
 public:
  explicit StrictSax(json* out) : dom_(*out, false) {}
  bool too_deep = false;
  bool duplicate_key = false;

  bool null() { return Value() && dom_.null(); }
  bool boolean(bool v) { return Value() && dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return Value() && dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return Value() && dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return Value() && dom_.number_float(v, s);
  }
  bool string(json::string_t& v) { return Value() && dom_.string(v); }
  bool binary(json::binary_t& v) { return Value() && dom_.binary(v); }
  bool start_object(std::size_t n) {
    if (!Value()) return false;
    frames_.push_back({keys_.size(), true, nullptr});
    return dom_.start_object(n);
  }
  bool key(json::string_t& k) {
    if (!Value()) return false;
    Frame& f = frames_.back();
    const size_t count = keys_.size() - f.first_key;
    if (f.big) {
      duplicate_key = !f.big->insert(k).second;
    } else {
      duplicate_key = std::find(keys_.begin() + static_cast<std::ptrdiff_t>(f.first_key),
                                keys_.end(), k) != keys_.end();
      if (count + 1 >= kLinearKeysMax) {  // a large object: a set from here on
        f.big = std::make_unique<std::set<std::string, std::less<>>>(
            keys_.begin() + static_cast<std::ptrdiff_t>(f.first_key), keys_.end());
        f.big->insert(k);
      }
    }
    if (duplicate_key) return false;
    if (!f.big) keys_.push_back(k);
    return dom_.key(k);
  }
  bool end_object() {
    keys_.resize(frames_.back().first_key);
    frames_.pop_back();
    return dom_.end_object();
  }
  bool start_array(std::size_t n) {
    if (!Value()) return false;
    frames_.push_back({keys_.size(), false, nullptr});
    return dom_.start_array(n);
  }
  bool end_array() {
    frames_.pop_back();
    return dom_.end_array();
  }
  template <class Exception>
  bool parse_error(std::size_t pos, const std::string& token, const Exception& ex) {
    return dom_.parse_error(pos, token, ex);
  }

 private:
  static constexpr size_t kLinearKeysMax = 32;
  struct Frame {
    size_t first_key;  // index of the object's first key in keys_
    bool object;
    std::unique_ptr<std::set<std::string, std::less<>>> big;  // keys, once there are many
  };
  // A value, key or container starts here: within the depth limit?
  bool Value() {
    if (frames_.size() > static_cast<size_t>(kBodyDepthMax)) too_deep = true;
    return !too_deep;
  }
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  std::vector<Frame> frames_;
  std::vector<std::string> keys_;  // the keys of the open objects, in order
};

nlohmann::json ParseRequestJson(std::string_view text, bool* duplicate_key) {
  json j;
  StrictSax sax(&j);
  const bool ok = json::sax_parse(text, &sax);
  *duplicate_key = sax.duplicate_key;
  if (!ok || sax.too_deep || sax.duplicate_key || j.is_discarded()) {
    return json(json::value_t::discarded);
  }
  return j;
}

// The body of an idempotency record (ap/i): inline as written before, or
// kStoredBodyRef + the key of the event (ap/e) written in the same
// transaction, whose data is the answer's body (a JSON body never starts
// with '@'). `get` reads an aux key. False when the event cannot be read.
constexpr std::string_view kStoredBodyRef = "@";
template <class Get>
bool ResolveStoredBody(Get&& get, std::string* body) {
  if (!body->starts_with(kStoredBodyRef)) return true;
  std::optional<std::string> event = get(body->substr(kStoredBodyRef.size()));
  std::optional<std::string_view> data = event ? EventData(*event) : std::nullopt;
  if (!data) return false;
  *body = std::string(*data);
  return true;
}

crypto::ByteView Bytes(std::string_view s) {
  return crypto::ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// The two lower-case hex digits of each byte value, side by side.
constexpr std::array<char, 512> kHexPairs = [] {
  constexpr char kHex[] = "0123456789abcdef";
  std::array<char, 512> t{};
  for (size_t b = 0; b < 256; ++b) {
    t[2 * b] = kHex[b >> 4];
    t[2 * b + 1] = kHex[b & 15];
  }
  return t;
}();

void AppendLowerHex(crypto::ByteView b, std::string* out) {
  const size_t at = out->size();
  out->resize(at + 2 * b.size());
  char* p = out->data() + at;
  for (uint8_t x : b) {
    std::memcpy(p, &kHexPairs[2 * size_t{x}], 2);
    p += 2;
  }
}

std::string LowerHex(crypto::ByteView b) {
  std::string s;
  s.reserve(2 * b.size());
  AppendLowerHex(b, &s);
  return s;
}

std::string Sha256Hex(std::string_view s) {
  uint8_t h[32];
  NARAE_CHECK(crypto::Sha256Into(Bytes(s), h).ok());
  return LowerHex(crypto::ByteView(h, sizeof h));
}

// The fingerprint of a POST in its idempotency record: "b" + hex of the
// body's SHA-256 (the digest the signature check computed: the body is
// hashed once, and nothing more is hashed) + " " + method + " " + target.
// The method and target are printable without spaces (the signature check
// refuses others), so the fingerprint holds no newline.
constexpr char kFingerprintDigestForm = 'b';
constexpr size_t kLegacyFingerprintBytes = 64;  // the older form's length
std::string RequestFingerprint(std::string_view method, std::string_view target,
                               crypto::ByteView body_sha256) {
  NARAE_CHECK(body_sha256.size() == 32);
  std::string fp(1, kFingerprintDigestForm);
  fp.reserve(2 + 64 + method.size() + target.size() + 1);
  AppendLowerHex(body_sha256, &fp);
  fp.append(" ").append(method).append(" ").append(target);
  return fp;
}

// The form written before (main up to fb21dac): 64 hex of SHA-256(method
// "\n" target "\n" body). Computed only to compare with such a record.
std::string LegacyRequestFingerprint(std::string_view method, std::string_view target,
                                     std::string_view body) {
  std::string in;
  in.reserve(method.size() + target.size() + body.size() + 2);
  in.append(method).append("\n").append(target).append("\n").append(body);
  return Sha256Hex(in);
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// 1..64 printable ASCII characters without spaces.
bool ValidOrderRef(std::string_view s) {
  return !s.empty() && s.size() <= kOrderRefBytesMax &&
         std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 127; });
}

// The message of the 400 answer to a card's fields, nullopt when they are good.
std::optional<std::string> CheckCard(std::string_view pan, std::string_view expiry,
                                     std::string_view cvv2) {
  if (!AllDigits(pan) || pan.size() < 13 || pan.size() > 19)
    return "card.pan must be 13..19 digits";
  if (!AllDigits(expiry) || expiry.size() != 4) return "card.expiry must be YYMM";
  if (!AllDigits(cvv2) || cvv2.size() != 3) return "card.cvv2 must be 3 digits";
  return std::nullopt;
}

std::string Pad15(std::string_view id) {
  std::string s(id);
  s.resize(15, ' ');
  return s;
}

// ---- Errors -------------------------------------------------------------------

struct ApiError {
  unsigned status = 400;
  std::string code;
  std::string message;
};

// A JSON object written by hand, member by member, for the answers built on
// the ledger's sequencer thread (one thread for every request: nlohmann's
// tree of maps cost more there than the rest of the API's work). Members
// must be added in key order: nlohmann::json sorts keys, and the bytes must
// be the ones json::dump() gives (HttpTest.StoredAnswerReadsLikeTheGetOfThePayment).
// The bytes go straight into the string's storage, which is kept larger
// than what is written (`n_` bytes are the object) and cut at Take(): a
// member is one bounds check and a copy or two, no call into std::string.
class JsonOut {
 public:
  explicit JsonOut(size_t reserve_bytes) { s_.resize(std::max<size_t>(reserve_bytes, 16)); }
  JsonOut& Begin() {
    *Room(1) = '{';
    ++n_;
    first_ = true;
    return *this;
  }
  JsonOut& End() {
    *Room(1) = '}';
    ++n_;
    first_ = false;
    return *this;
  }
  JsonOut& Object(std::string_view k) {
    Key(k);
    return Begin();
  }
  // Inlined, so that a key's length is a constant where it is written.
  [[gnu::always_inline]] JsonOut& Str(std::string_view k, std::string_view v) {
    NARAE_CHECK(!Inside(v));  // Room() may move the bytes a view of them points at
    if (JsonNeedsEscape(v)) [[unlikely]] {
      return StrEscaped(k, v);
    }
    // The key and the value in one go: [,]"k":"v"
    char* p = Room(k.size() + v.size() + 6);
    p = WriteKey(p, k);
    *p++ = '"';
    if (!v.empty()) std::memcpy(p, v.data(), v.size());
    p += v.size();
    *p++ = '"';
    n_ = static_cast<size_t>(p - s_.data());
    return *this;
  }
  [[gnu::always_inline]] JsonOut& Num(std::string_view k, uint64_t v) {
    Key(k);
    AppendDecimal(v);
    return *this;
  }
  JsonOut& Int(std::string_view k, int64_t v) {
    Key(k);
    AppendDecimal(v);
    return *this;
  }
  JsonOut& Bool(std::string_view k, bool v) {
    Key(k);
    const std::string_view text = v ? "true" : "false";
    std::memcpy(Room(text.size()), text.data(), text.size());
    n_ += text.size();
    return *this;
  }
  std::string Take() {
    s_.resize(n_);
    n_ = 0;
    return std::move(s_);
  }

 private:
  // Keys are the API's own names (letters, digits, '_'): nothing to escape.
  static constexpr size_t kKeyBytesMax = 48;  // the longest is 21 bytes
  JsonOut& StrEscaped(std::string_view k, std::string_view v) {
    Key(k);
    s_.resize(n_);
    AppendJsonString(&s_, v);
    n_ = s_.size();
    s_.resize(s_.capacity());
    return *this;
  }
  // Room for `bytes` more after the first n_; the pointer to the first.
  char* Room(size_t bytes) {
    if (s_.size() - n_ < bytes) [[unlikely]]
      Grow(bytes);
    return s_.data() + n_;
  }
  void Grow(size_t bytes) { s_.resize(std::max(2 * s_.size(), n_ + bytes)); }
  bool Inside(std::string_view v) const {
    const std::less<const char*> before;
    return !v.empty() && !before(v.data(), s_.data()) && before(v.data(), s_.data() + s_.size());
  }
  // [,]"k": at p. REQUIRES: room for k.size() + 4 bytes.
  [[gnu::always_inline]] char* WriteKey(char* p, std::string_view k) {
#ifndef NDEBUG
    for (char c : k) NARAE_CHECK(c == '_' || std::isalnum(static_cast<unsigned char>(c)));
#endif
    NARAE_CHECK(k.size() <= kKeyBytesMax);
    if (!first_) *p++ = ',';
    first_ = false;
    *p++ = '"';
    std::memcpy(p, k.data(), k.size());
    p += k.size();
    *p++ = '"';
    *p++ = ':';
    return p;
  }
  [[gnu::always_inline]] void Key(std::string_view k) {
    char* p = WriteKey(Room(k.size() + 4), k);
    n_ = static_cast<size_t>(p - s_.data());
  }
  // As std::to_string writes it, without the temporary string.
  template <typename T>
  void AppendDecimal(T v) {
    constexpr size_t kDigitsMax = 24;
    char* p = Room(kDigitsMax);
    auto [end, ec] = std::to_chars(p, p + kDigitsMax, v);
    NARAE_CHECK(ec == std::errc());
    n_ = static_cast<size_t>(end - s_.data());
  }
  std::string s_;  // the object is its first n_ bytes
  size_t n_ = 0;
  bool first_ = true;
};

std::string ErrorBody(const ApiError& e, std::string_view request_id) {
  JsonOut j(e.message.size() + e.code.size() + request_id.size() + 64);
  j.Begin().Object("error");
  j.Str("code", e.code).Str("message", e.message).Str("request_id", request_id);
  return j.End().End().Take();
}

ApiError BadRequest(std::string message) { return {400, "invalid_request", std::move(message)}; }

// The answer to a response code of the authorizer, for an operation.
enum class Op : uint8_t { kPay, kCapture, kVoid, kRefund };

ApiError DeclineError(RC rc, Op op, bool sim) {
  switch (rc) {
    case RC::kInsufficientFunds:
      return {402, "insufficient_funds", "the account's available balance is too low"};
    case RC::kDoNotHonour:
      if (sim) return {402, "invalid_cryptogram", "the SIM cryptogram was refused"};
      return {402, "invalid_cvv", "the card verification failed"};
    case RC::kRestrictedCard:
      if (sim) return {402, "sim_counter_replayed", "the SIM counter was already used"};
      return {402, "card_blocked", "the card is blocked"};
    case RC::kLostCard:
    case RC::kStolenCard:
    case RC::kPinTriesExceeded:
      return {402, "card_blocked", "the card is blocked"};
    case RC::kExpiredCard:
      return {402, "card_expired", "the card is expired or the expiry does not match"};
    case RC::kInvalidCardNumber:
      return {402, "invalid_card", "no such card or SIM token"};
    case RC::kNotPermittedToCardholder:
      return {402, "not_permitted", "the card or SIM may not pay here (currency or category)"};
    case RC::kNotPermittedToTerminal:
      return {402, "merchant_not_permitted", "the merchant may not take this payment"};
    case RC::kExceedsWithdrawalLimit:
      return {402, "limit_exceeded", "the amount exceeds the card's or SIM's limits"};
    case RC::kExceedsFrequencyLimit:
      return {402, "frequency_limit_exceeded", "too many payments with this card or SIM"};
    case RC::kInvalidAmount:
      if (op == Op::kCapture)
        return {422, "amount_exceeds_authorized", "more than the authorized amount"};
      if (op == Op::kRefund)
        return {422, "amount_exceeds_captured", "more than the captured amount not yet refunded"};
      return {422, "invalid_amount", "the amount is not valid"};
    case RC::kUnableToLocateOriginal:
      return {404, "payment_not_found", "no such payment"};
    case RC::kInvalidTransaction:
      return {409, "invalid_state", "the payment's state does not allow this"};
    case RC::kFormatError:
      return BadRequest("the request could not be processed");
    case RC::kIssuerUnavailable:
      return {503, "service_unavailable", "the ledger is unavailable; retry later"};
    default:
      return {500, "internal_error", "the request failed"};
  }
}

// ---- Currencies and amounts -------------------------------------------------

std::string Field7(int64_t ms) {
  // The last second formatted by this thread: most requests of a second reuse it.
  thread_local int64_t last_s = -1;
  thread_local char last[64] = {};
  const int64_t s = ms / 1000;
  if (s != last_s) {
    std::time_t t = static_cast<std::time_t>(s);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::snprintf(last, sizeof last, "%02d%02d%02d%02d%02d", tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                  tm.tm_min, tm.tm_sec);
    last_s = s;
  }
  return last;
}

// ---- Payments as JSON -------------------------------------------------------

// The API's metadata of a payment it made (ap/p/<RRN>).
struct Meta {
  std::string merchant;
  std::string order_ref;
  bool automatic = false;
  uint64_t delivery_fee_minor = 0;
  std::optional<uint32_t> delivery_distance_m;  // a split by distance (priced by the bands)
  int64_t created_ms = 0;
  std::string method;  // "card" or "sim"
  std::string masked;  // masked PAN or masked token
};

std::string EncodeMeta(const Meta& m) {
  JsonOut j(160);
  j.Begin().Bool("a", m.automatic).Num("d", m.delivery_fee_minor);
  if (m.delivery_distance_m) j.Num("dm", *m.delivery_distance_m);
  j.Str("k", m.method);
  j.Str("m", m.merchant).Str("o", m.order_ref).Str("p", m.masked).Int("t", m.created_ms);
  return j.Num("v", 1).End().Take();
}
std::optional<Meta> DecodeMeta(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  try {
    Meta m;
    m.merchant = j.at("m").get<std::string>();
    m.order_ref = j.at("o").get<std::string>();
    m.automatic = j.at("a").get<bool>();
    m.delivery_fee_minor = j.at("d").get<uint64_t>();
    if (j.contains("dm")) m.delivery_distance_m = j.at("dm").get<uint32_t>();
    m.created_ms = j.at("t").get<int64_t>();
    m.method = j.at("k").get<std::string>();
    m.masked = j.at("p").get<std::string>();
    return m;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

struct PaymentView {
  std::string id;
  std::string merchant;
  std::string status;  // authorized, captured, voided, expired, refunded, partially_refunded
  uint64_t amount_minor = 0;
  uint16_t currency = 0;
  uint64_t captured_minor = 0;
  uint64_t refunded_minor = 0;
  std::optional<Meta> meta;
  std::string terminal_id;  // the original ISO 8583 request, for ISO clients
  std::string field7;
  std::string stan;
  bool hold = true;
};

json PaymentJson(const PaymentView& v) {
  json j = {{"id", v.id},
            {"object", "payment"},
            {"merchant_id", v.merchant},
            {"status", v.status},
            {"amount", v.amount_minor},
            {"currency", CurrencyAlpha(v.currency)},
            {"amount_captured", v.captured_minor},
            {"amount_refunded", v.refunded_minor},
            {"iso8583",
             {{"rrn", v.id.substr(kPaymentIdPrefix.size())},
              {"mti", v.hold ? "0100" : "0200"},
              {"terminal_id", v.terminal_id},
              {"stan", v.stan},
              {"transmission_datetime", v.field7}}}};
  if (v.meta) {
    j["order_ref"] = v.meta->order_ref;
    j["capture"] = v.meta->automatic ? "automatic" : "manual";
    j["created_at_ms"] = v.meta->created_ms;
    j["payment_method"] = {{"type", v.meta->method}, {"masked", v.meta->masked}};
    if (v.meta->delivery_fee_minor != 0 || v.meta->delivery_distance_m) {
      j["split"] = {{"delivery_fee", v.meta->delivery_fee_minor}};
      if (v.meta->delivery_distance_m) {
        j["split"]["delivery_distance_m"] = *v.meta->delivery_distance_m;
      }
    }
    j["channel"] = "api";
  } else {
    j["channel"] = "iso8583";
  }
  return j;
}

// The transfer of a purchase or hold approved in this transaction: the
// authorizer wrote its RRN index and request record before the After hook runs.
ledger::TransferId PurchaseTransfer(ledger::Txn& txn, std::string_view rrn) {
  std::optional<std::string> key = txn.GetAux(std::string(kAuxRrnIndexPrefix) + std::string(rrn));
  if (!key) return ledger::TransferId{};
  std::optional<std::string> v = txn.GetAux(std::string(kRequestRecordPrefix) + *key);
  std::optional<RequestRecord> r = v ? ParseRequestRecord(*v) : std::nullopt;
  return r ? r->transfer : ledger::TransferId{};
}

// A payment's list row: ap/l/<merchant>/<16 hex ns><RRN>, the ns of its
// transfer (the older rows: of the transaction).
std::string ListKey(std::string_view merchant, uint64_t ns, std::string_view rrn) {
  std::string k;
  k.reserve(kAuxListPrefix.size() + merchant.size() + 1 + 16 + rrn.size());
  k.append(kAuxListPrefix).append(merchant).append("/");
  AppendHex16(&k, ns);
  k.append(rrn);
  return k;
}

// PaymentJson(v).dump(), written by hand (keys in nlohmann's order).
std::string PaymentBody(const PaymentView& v) {
  JsonOut j(640);
  j.Begin().Num("amount", v.amount_minor);
  j.Num("amount_captured", v.captured_minor).Num("amount_refunded", v.refunded_minor);
  if (v.meta) j.Str("capture", v.meta->automatic ? "automatic" : "manual");
  j.Str("channel", v.meta ? "api" : "iso8583");
  if (v.meta) j.Int("created_at_ms", v.meta->created_ms);
  j.Str("currency", CurrencyAlpha(v.currency)).Str("id", v.id);
  j.Object("iso8583").Str("mti", v.hold ? "0100" : "0200");
  j.Str("rrn", std::string_view(v.id).substr(std::min(v.id.size(), kPaymentIdPrefix.size())));
  j.Str("stan", v.stan).Str("terminal_id", v.terminal_id);
  j.Str("transmission_datetime", v.field7).End();
  j.Str("merchant_id", v.merchant).Str("object", "payment");
  if (v.meta) {
    j.Str("order_ref", v.meta->order_ref);
    j.Object("payment_method").Str("masked", v.meta->masked).Str("type", v.meta->method).End();
    if (v.meta->delivery_fee_minor != 0 || v.meta->delivery_distance_m) {
      j.Object("split");
      if (v.meta->delivery_distance_m) j.Num("delivery_distance_m", *v.meta->delivery_distance_m);
      j.Num("delivery_fee", v.meta->delivery_fee_minor).End();
    }
  }
  return j.Str("status", v.status).End().Take();
}

std::string StatusOf(const PaymentRecord& r, std::optional<ledger::HoldState> hold) {
  if (r.hold && hold) {
    if (*hold == ledger::HoldState::kPending) return "authorized";
    if (*hold == ledger::HoldState::kVoided) return "voided";
    if (*hold == ledger::HoldState::kExpired) return "expired";
  }
  if (r.refunded_minor != 0) {
    return r.refunded_minor >= r.captured_minor ? "refunded" : "partially_refunded";
  }
  if (r.captured_minor == 0) return "voided";  // a purchase reversed over ISO 8583
  return "captured";
}

// ---- Requests on their way through the engine ------------------------------

// The hold or purchase of the last approved HTTP payment, as the
// authorizer's observer saw it (PaymentChange): the observer runs in the
// request's transaction just before the API's After() hook, which takes the
// transfer from here instead of reading the records back (PurchaseTransfer).
// Sequencer thread only.
struct HookedPayment {
  std::string rrn;
  ledger::TransferId transfer;
};

struct PostCtx {
  Op op = Op::kPay;
  std::string merchant;
  std::string request_id;
  std::string idem_key;     // ap/i/...
  std::string fingerprint;  // RequestFingerprint(): the body's SHA-256, method, target
  // The request as it came, for a record written with the older fingerprint
  // form (LegacyRequestFingerprint), which hashes the body itself.
  std::string target;
  std::string request_body;
  Message message;  // the ISO 8583 request (resubmitted on a STAN collision)
  int attempts = 0;
  bool sim = false;
  // Payment (kPay): what goes into the metadata.
  Meta meta;
  uint64_t amount_minor = 0;
  uint16_t currency = 0;
  ledger::AccountId debit;  // a SIM's account (below-minimum vs insufficient; a card's is looked up
                            // on that decline)
  // Capture/void/refund: the original.
  std::optional<PaymentRecord> orig;
  std::string orig_rrn;
  // Outcome, set on the sequencer thread (read after the done callback).
  bool replayed = false;       // answered from the idempotency record
  bool hook_answered = false;  // answered by Before() (the hold's state)
  bool retry = false;
  bool decided = false;
  std::string seen_rc;
  unsigned status = 500;
  std::string body;
  std::function<void(HttpResponse)> done;
};

class RateLimiter {
 public:
  RateLimiter(uint32_t per_s, uint32_t burst) : per_s_(per_s), burst_(burst) {}
  // 0 when allowed, else the seconds to wait.
  uint32_t Take(const std::string& merchant, int64_t now_ms) {
    if (per_s_ == 0) return 0;
    std::lock_guard<std::mutex> lock(mu_);
    Bucket& b = buckets_[merchant];
    if (b.last_ms == 0) {
      b.tokens = burst_;
      b.last_ms = now_ms;
    }
    double refill = static_cast<double>(now_ms - b.last_ms) * per_s_ / 1000.0;
    b.tokens = std::min<double>(burst_, b.tokens + std::max(0.0, refill));
    b.last_ms = std::max(b.last_ms, now_ms);
    if (b.tokens >= 1.0) {
      b.tokens -= 1.0;
      return 0;
    }
    return static_cast<uint32_t>((1.0 - b.tokens) / per_s_) + 1;
  }

 private:
  struct Bucket {
    double tokens = 0;  // not money: request tokens
    int64_t last_ms = 0;
  };
  uint32_t per_s_;
  uint32_t burst_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // GUARDED_BY(mu_)
};

// Counters for /metrics.
enum class Endpoint : uint8_t {
  kCreate,
  kCapture,
  kVoid,
  kRefund,
  kGet,
  kList,
  kEvents,
  kDeliveries,
  kOther,
  kCount
};
constexpr const char* kEndpointNames[] = {
    "create_payment",     "capture", "void", "refund", "get_payment", "list", "events",
    "webhook_deliveries", "other"};
constexpr int kStatusClasses = 6;  // 1xx..5xx by index 1..5
constexpr uint64_t kLatencyBucketsUs[] = {500,   1000,  2000,   5000,   10000,
                                          20000, 50000, 100000, 250000, 1000000};
constexpr size_t kLatencyBuckets = std::size(kLatencyBucketsUs);

class ApiImpl final : public Api {
 public:
  ApiImpl(const ApiDeps& deps, ApiOptions options, HookedHandler* handler,
          std::shared_ptr<BankCache> bank, std::shared_ptr<const HookedPayment> last_hooked)
      : ledger_(deps.ledger),
        keys_(deps.keys),
        handler_(handler),
        options_(std::move(options)),
        bank_(std::move(bank)),
        last_hooked_(std::move(last_hooked)),
        rate_(options_.rate_per_s, options_.rate_burst) {}

  void Handle(HttpRequest req, std::function<void(HttpResponse)> done) override;
  void AppendMetrics(std::string* out) override;
  uint64_t in_flight() const override { return in_flight_.load(); }

 private:
  int64_t NowMs() const {
    if (options_.clock_ms) return options_.clock_ms();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  std::string NextRequestId() {
    std::string id;
    id.reserve(4 + 16);
    id.append("req_");
    AppendHex16(&id, request_seq_.fetch_add(1) + 1);
    return id;
  }

  std::optional<ApiError> Authenticate(const HttpRequest& req, crypto::ByteView body_sha256,
                                       std::string* merchant);
  void Route(HttpRequest& req, crypto::ByteView body_sha256, const std::string& merchant,
             const std::string& request_id, Endpoint* endpoint,
             std::function<void(HttpResponse)> done);
  // POST handlers: fill ctx (message and all) or return the error.
  std::optional<ApiError> BuildPayment(const json& body, PostCtx& ctx);
  bool BuildCardPayment(const CardPaymentBody& body, PostCtx& ctx);
  static Message PaymentMessage(bool automatic, uint64_t amount_minor, uint16_t currency,
                                const std::string& merchant);
  void SetCard(std::string_view pan, std::string_view expiry, std::string_view cvv2,
               std::string_view order_ref, Message& msg, PostCtx& ctx);
  std::optional<ApiError> PriceDistance(uint32_t distance_m, uint64_t amount_minor,
                                        uint16_t currency, const PostCtx& ctx, ApiSplit* split);
  std::optional<ApiError> BuildReference(const json& body, std::string_view payment_id,
                                         PostCtx& ctx);
  std::optional<ApiError> BuildOtp(const json& sim, uint64_t amount_minor, uint16_t currency,
                                   Message& msg, PostCtx& ctx);
  void Post(HttpRequest& req, crypto::ByteView body_sha256, Op op, std::string_view payment_id,
            const std::string& merchant, const std::string& request_id,
            std::function<void(HttpResponse)> done);
  // The answer stored under ctx's Idempotency-Key (a replay or a 409), if any.
  bool StoredAnswer(const PostCtx& ctx, HttpResponse* r);
  // Whether a record's fingerprint is ctx's request (either form).
  static bool SameRequest(std::string_view stored_fingerprint, const PostCtx& ctx);
  void Submit(std::shared_ptr<PostCtx> ctx);
  void Finish(const std::shared_ptr<PostCtx>& ctx, const Message& response);
  // Sequencer thread.
  bool Before(ledger::Txn& txn, PostCtx& ctx);
  void After(ledger::Txn& txn, PostCtx& ctx, const Message& response);
  // Stores the answer under the Idempotency-Key. `event_key`: the event
  // written in this transaction whose data is `body`; the record then names
  // it instead of repeating the body ("@" + key, see ResolveStoredBody).
  void RecordAnswer(ledger::Txn& txn, PostCtx& ctx, unsigned status, std::string body,
                    std::string_view event_key = {});
  // GET handlers.
  HttpResponse GetPayment(std::string_view payment_id, const std::string& merchant,
                          const std::string& request_id);
  HttpResponse ListPayments(std::string_view query, const std::string& merchant,
                            const std::string& request_id);
  HttpResponse Events(std::string_view query, const std::string& merchant,
                      const std::string& request_id);
  HttpResponse Deliveries(std::string_view query, const std::string& merchant,
                          const std::string& request_id);
  std::optional<PaymentView> LoadPayment(std::string_view payment_id, const std::string& merchant,
                                         std::string_view list_value = {});
  std::optional<Meta> LoadMeta(std::string_view rrn, const std::string& merchant,
                               const ledger::TransferId& transfer);
  Status StampStan(Message& m, bool physical);
  Status ApplyMac(Message& m);

  ledger::Ledger* ledger_;
  crypto::KeyStore* keys_;
  HookedHandler* handler_;
  ApiOptions options_;
  std::shared_ptr<BankCache> bank_;  // shared with the authorizer's observer
  // Written by the authorizer's observer, read by After(): sequencer thread only.
  std::shared_ptr<const HookedPayment> last_hooked_;
  RateLimiter rate_;
  std::atomic<uint64_t> request_seq_{0};
  // Starts at a random value: a restart within the same second as the last
  // run's requests would otherwise reuse its (terminal, time, STAN) keys and
  // exhaust the 94 retries (found by SwitchCrash's HTTP storefronts).
  std::atomic<uint32_t> stan_seq_{static_cast<uint32_t>(std::random_device{}())};
  std::atomic<uint64_t> in_flight_{0};
  std::mutex auth_mu_;
  std::unordered_map<std::string, std::shared_ptr<const crypto::SecretBytes>>
      secrets_;  // GUARDED_BY(auth_mu_)
  std::unordered_map<std::string, std::unique_ptr<crypto::MerchantRequestVerifier>>
      verifiers_;  // GUARDED_BY(auth_mu_)
  std::array<std::array<std::atomic<uint64_t>, kStatusClasses>,
             static_cast<size_t>(Endpoint::kCount)>
      requests_{};
  std::array<std::array<std::atomic<uint64_t>, kLatencyBuckets + 1>,
             static_cast<size_t>(Endpoint::kCount)>
      latency_{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Endpoint::kCount)> latency_sum_us_{};
  std::atomic<uint64_t> auth_failures_{0};
  std::atomic<uint64_t> rate_limited_{0};
  std::atomic<uint64_t> replays_{0};
};

// ---- Authentication ----------------------------------------------------------

std::optional<ApiError> ApiImpl::Authenticate(const HttpRequest& req, crypto::ByteView body_sha256,
                                              std::string* merchant) {
  const std::string_view key_id = req.header("x-narae-key-id");
  const std::string_view ts_text = req.header("x-narae-timestamp");
  const std::string_view nonce = req.header("x-narae-nonce");
  const std::string_view signature = req.header("x-narae-signature");
  if (key_id.empty() || ts_text.empty() || nonce.empty() || signature.empty()) {
    return ApiError{401, "unauthenticated",
                    "X-Narae-Key-Id, X-Narae-Timestamp, X-Narae-Nonce and X-Narae-Signature are "
                    "required"};
  }
  if (!AllDigits(ts_text) || ts_text.size() > 12 || nonce.size() > kNonceBytesMax) {
    return ApiError{401, "invalid_signature", "malformed timestamp or nonce"};
  }
  std::shared_ptr<const Merchant> m = bank_->FindMerchant(key_id);
  if (!m || m->api_key_id.empty()) {
    return ApiError{401, "invalid_signature", "unknown key id or bad signature"};
  }
  std::shared_ptr<const crypto::SecretBytes> secret;
  crypto::MerchantRequestVerifier* verifier = nullptr;
  {
    std::lock_guard<std::mutex> lock(auth_mu_);
    auto it = secrets_.find(m->id);
    if (it == secrets_.end()) {
      Result<crypto::SecretBytes> s =
          keys_->Use(m->api_key_id, crypto::KeyType::kMerchantApiSecret);
      if (!s.ok()) return ApiError{500, "internal_error", "the merchant's key is unavailable"};
      it =
          secrets_.emplace(m->id, std::make_shared<const crypto::SecretBytes>(std::move(*s))).first;
      crypto::MerchantRequestVerifier::Options vo;
      vo.skew_s_max = options_.signature_skew_s;
      vo.nonce_cache_max = options_.nonce_cache_max;
      verifiers_[m->id] = std::make_unique<crypto::MerchantRequestVerifier>(vo);
    }
    secret = it->second;
    verifier = verifiers_[m->id].get();  // never erased: stable
  }
  int64_t ts = 0;  // 1..12 digits (checked above): fits
  std::from_chars(ts_text.data(), ts_text.data() + ts_text.size(), ts);
  Status s = verifier->VerifyBodyDigest(*secret, req.method, req.target, ts, nonce, body_sha256,
                                        signature, NowMs() / 1000);
  if (!s.ok()) {
    switch (s.code()) {
      case StatusCode::kFailedPrecondition:
        return ApiError{401, "stale_timestamp", "the timestamp is too far from the server's clock"};
      case StatusCode::kAlreadyExists:
        return ApiError{401, "nonce_reused", "the nonce was already used"};
      case StatusCode::kUnavailable:
        return ApiError{503, "service_unavailable", "too many nonces; retry later"};
      default:
        return ApiError{401, "invalid_signature", "unknown key id or bad signature"};
    }
  }
  *merchant = m->id;
  return std::nullopt;
}

// ---- Dispatch ------------------------------------------------------------------

void ApiImpl::Handle(HttpRequest req, std::function<void(HttpResponse)> done) {
  // What the answer needs, in one allocation: the request id, the endpoint
  // (set by Route) and the server's callback.
  struct Pending {
    std::chrono::steady_clock::time_point start;
    Endpoint endpoint = Endpoint::kOther;
    std::string request_id;
    std::function<void(HttpResponse)> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->start = std::chrono::steady_clock::now();
  pending->request_id = NextRequestId();
  pending->done = std::move(done);
  const std::string& request_id = pending->request_id;  // lives as long as `finish`
  // Counts the outcome and adds the request id header.
  auto finish = [this, pending](HttpResponse r) {
    size_t e = static_cast<size_t>(pending->endpoint);
    size_t cls = std::min<size_t>(r.status / 100, kStatusClasses - 1);
    requests_[e][cls].fetch_add(1, std::memory_order_relaxed);
    uint64_t us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                            std::chrono::steady_clock::now() - pending->start)
                                            .count());
    size_t b = 0;
    while (b < kLatencyBuckets && us > kLatencyBucketsUs[b]) ++b;
    latency_[e][b].fetch_add(1, std::memory_order_relaxed);
    latency_sum_us_[e].fetch_add(us, std::memory_order_relaxed);
    r.headers.emplace_back("X-Request-Id", pending->request_id);
    pending->done(std::move(r));
  };
  auto fail = [&](const ApiError& e) {
    HttpResponse r;
    r.status = e.status;
    r.body = ErrorBody(e, request_id);
    finish(std::move(r));
  };
  // The body's SHA-256, once: the signature covers it and the idempotency
  // fingerprint is made from it.
  uint8_t body_digest[32];
  if (!crypto::Sha256Into(Bytes(req.body), body_digest).ok()) {
    return fail({500, "internal_error", "the request could not be hashed"});
  }
  const crypto::ByteView body_sha256(body_digest, sizeof body_digest);
  std::string merchant;
  if (std::optional<ApiError> e = Authenticate(req, body_sha256, &merchant)) {
    auth_failures_.fetch_add(1, std::memory_order_relaxed);
    return fail(*e);
  }
  if (uint32_t wait_s = rate_.Take(merchant, NowMs()); wait_s != 0) {
    rate_limited_.fetch_add(1, std::memory_order_relaxed);
    HttpResponse r;
    r.status = 429;
    r.body = ErrorBody({429, "rate_limited", "too many requests; retry after the given seconds"},
                       request_id);
    r.headers.emplace_back("Retry-After", std::to_string(wait_s));
    return finish(std::move(r));
  }
  Route(req, body_sha256, merchant, request_id, &pending->endpoint, std::move(finish));
}

void ApiImpl::Route(HttpRequest& req, crypto::ByteView body_sha256, const std::string& merchant,
                    const std::string& request_id, Endpoint* endpoint,
                    std::function<void(HttpResponse)> done) {
  std::string_view target = req.target;
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query =
      target.find('?') == std::string_view::npos ? "" : target.substr(target.find('?') + 1);
  auto error = [&](const ApiError& e) {
    HttpResponse r;
    r.status = e.status;
    r.body = ErrorBody(e, request_id);
    done(std::move(r));
  };
  constexpr std::string_view kPayments = "/v1/payments";
  if (path == kPayments) {
    if (req.method == "POST") {
      *endpoint = Endpoint::kCreate;
      return Post(req, body_sha256, Op::kPay, "", merchant, request_id, std::move(done));
    }
    if (req.method == "GET") {
      *endpoint = Endpoint::kList;
      return done(ListPayments(query, merchant, request_id));
    }
    return error({405, "method_not_allowed", "use GET or POST"});
  }
  if (path == "/v1/events") {
    *endpoint = Endpoint::kEvents;
    if (req.method != "GET") return error({405, "method_not_allowed", "use GET"});
    return done(Events(query, merchant, request_id));
  }
  if (path == "/v1/webhooks/deliveries") {
    *endpoint = Endpoint::kDeliveries;
    if (req.method != "GET") return error({405, "method_not_allowed", "use GET"});
    return done(Deliveries(query, merchant, request_id));
  }
  if (path.starts_with(std::string(kPayments) + "/")) {
    std::string_view rest = path.substr(kPayments.size() + 1);
    size_t slash = rest.find('/');
    std::string_view id = rest.substr(0, slash);
    std::string_view action = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
    if (action.empty()) {
      *endpoint = Endpoint::kGet;
      if (req.method != "GET") return error({405, "method_not_allowed", "use GET"});
      return done(GetPayment(id, merchant, request_id));
    }
    Op op = Op::kCapture;
    if (action == "capture") {
      *endpoint = Endpoint::kCapture;
    } else if (action == "void") {
      *endpoint = Endpoint::kVoid;
      op = Op::kVoid;
    } else if (action == "refunds") {
      *endpoint = Endpoint::kRefund;
      op = Op::kRefund;
    } else {
      return error({404, "not_found", "no such endpoint"});
    }
    if (req.method != "POST") return error({405, "method_not_allowed", "use POST"});
    return Post(req, body_sha256, op, id, merchant, request_id, std::move(done));
  }
  error({404, "not_found", "no such endpoint"});
}

// ---- POST --------------------------------------------------------------------

void ApiImpl::Post(HttpRequest& req, crypto::ByteView body_sha256, Op op,
                   std::string_view payment_id, const std::string& merchant,
                   const std::string& request_id, std::function<void(HttpResponse)> done) {
  const std::string_view idem = req.header("idempotency-key");
  if (idem.empty() || idem.size() > kIdempotencyKeyBytesMax) {
    HttpResponse r;
    r.status = 400;
    r.body = ErrorBody(BadRequest("an Idempotency-Key header of 1..255 characters is required"),
                       request_id);
    return done(std::move(r));
  }
  uint8_t idem_digest[32];
  if (!crypto::Sha256Into(Bytes(idem), idem_digest).ok()) {
    HttpResponse r;
    r.status = 500;
    r.body = ErrorBody({500, "internal_error", "the request could not be hashed"}, request_id);
    return done(std::move(r));
  }
  auto ctx = std::make_shared<PostCtx>();
  ctx->op = op;
  ctx->merchant = merchant;
  ctx->request_id = request_id;
  ctx->idem_key.reserve(kAuxIdemPrefix.size() + merchant.size() + 1 + 32);
  ctx->idem_key.append(kAuxIdemPrefix).append(merchant).append("/");
  AppendLowerHex(crypto::ByteView(idem_digest, 16), &ctx->idem_key);
  ctx->fingerprint = RequestFingerprint(req.method, req.target, body_sha256);
  ctx->target = req.target;  // a copy: `payment_id` points into req.target
  ctx->request_body = std::move(req.body);
  // A request refused here may be the retry of one that was answered (a
  // SIM OTP's counter is used up, a refund took what was left, ...): the
  // stored answer wins. A request that goes on to the engine is checked in
  // its ledger transaction (Before()), so the common case, a new key, reads
  // nothing here.
  auto error = [&](const ApiError& e) {
    HttpResponse r;
    if (!StoredAnswer(*ctx, &r)) {
      r.status = e.status;
      r.body = ErrorBody(e, request_id);
    }
    done(std::move(r));
  };
  // The common request (a plain card payment) is read without a JSON tree;
  // any other body goes the general way, which also gives every 400.
  std::optional<CardPaymentBody> plain =
      op == Op::kPay ? ParseCardPaymentBody(ctx->request_body) : std::nullopt;
  if (!plain || !BuildCardPayment(*plain, *ctx)) {
    bool duplicate_key = false;
    json body = ParseRequestJson(ctx->request_body, &duplicate_key);
    if (duplicate_key) return error(BadRequest("the body repeats a key"));
    if (body.is_discarded() || !body.is_object()) {
      return error(BadRequest("the body must be a JSON object of at most 8 levels"));
    }
    std::optional<ApiError> e =
        op == Op::kPay ? BuildPayment(body, *ctx) : BuildReference(body, payment_id, *ctx);
    if (e) return error(*e);
  }
  if (Status s = ApplyMac(ctx->message); !s.ok()) {
    return error({500, "internal_error", "the request could not be signed for the engine"});
  }
  ctx->done = std::move(done);
  in_flight_.fetch_add(1);
  Submit(std::move(ctx));
}

bool ApiImpl::StoredAnswer(const PostCtx& ctx, HttpResponse* r) {
  std::optional<std::string> old = ledger_->GetAux(ctx.idem_key);
  if (!old) return false;
  std::string fp;
  if (!ParseIdemValue(*old, &fp, &r->status, &r->body) ||
      !ResolveStoredBody([&](const std::string& k) { return ledger_->GetAux(k); }, &r->body)) {
    r->status = 500;
    r->body = ErrorBody({500, "internal_error", "a stored answer is unreadable"}, ctx.request_id);
  } else if (!SameRequest(fp, ctx)) {
    r->status = 409;
    r->body = ErrorBody(
        {409, "idempotency_conflict", "this Idempotency-Key was used with another request"},
        ctx.request_id);
  } else {
    replays_.fetch_add(1, std::memory_order_relaxed);
    r->headers.emplace_back("Idempotent-Replayed", "true");
  }
  return true;
}

bool ApiImpl::SameRequest(std::string_view stored_fingerprint, const PostCtx& ctx) {
  // The older form is exactly 64 hex digits, and one in 16 of them starts
  // with 'b' too: told apart by its length (the digest form is "b" + 64 hex
  // + " METHOD TARGET", longer).
  if (stored_fingerprint.size() != kLegacyFingerprintBytes) {
    return stored_fingerprint == ctx.fingerprint;
  }
  // Only POSTs are recorded (Route sends nothing else to Post()).
  return stored_fingerprint == LegacyRequestFingerprint("POST", ctx.target, ctx.request_body);
}

Status ApiImpl::StampStan(Message& m, bool physical) {
  uint32_t n = stan_seq_.fetch_add(1) + 1;
  uint32_t stan = physical ? kStanPhysicalBase + n % kStanRange : 1 + n % 999999;
  Result<std::string> s = FormatDigits(stan, 6);
  if (!s.ok()) return s.status();
  m.Set(7, Field7(NowMs()));
  m.Set(11, *s);
  return Status::Ok();
}

Status ApiImpl::ApplyMac(Message& m) {
  std::shared_ptr<const Terminal> t = bank_->FindTerminal(m.Get(41));
  if (!t || t->mac_key_id.empty()) return Status::Ok();
  Result<crypto::SecretBytes> key = keys_->Use(t->mac_key_id, crypto::KeyType::kMac);
  if (!key.ok()) return key.status();
  int field = m.NextField(64) != 0 ? 128 : 64;
  m.Set(field, std::string(8, '\0'));
  Result<std::vector<uint8_t>> body = Pack(m);
  if (!body.ok()) return body.status();
  if (body->size() < 8) return Status::InvalidArgument("message too short");
  body->resize(body->size() - 8);
  Result<crypto::Bytes> mac = crypto::Iso8583Mac(*key, *body);
  if (!mac.ok()) return mac.status();
  m.SetBytes(field, *mac);
  return Status::Ok();
}

// The plain card payment (ParseCardPaymentBody) when every check of
// BuildPayment passes; false otherwise, and nothing is set: the caller then
// takes the general way (BuildPayment), which gives the answer.
bool ApiImpl::BuildCardPayment(const CardPaymentBody& b, PostCtx& ctx) {
  if (b.amount_minor == 0 || b.amount_minor > kAmountMinorMax) return false;
  const uint16_t currency = CurrencyNumeric(b.currency);
  if (currency == 0 || (b.order_ref && !ValidOrderRef(*b.order_ref))) return false;
  const bool automatic = b.capture && *b.capture == "automatic";
  if (b.capture && !automatic && *b.capture != "manual") return false;
  if (CheckCard(b.pan, b.expiry, b.cvv2)) return false;
  std::shared_ptr<const Merchant> m = bank_->FindMerchant(ctx.merchant);
  if (!m || !m->ForCurrency(currency)) return false;
  Message msg = PaymentMessage(automatic, b.amount_minor, currency, ctx.merchant);
  const std::string_view order_ref = b.order_ref.value_or("");
  SetCard(b.pan, b.expiry, b.cvv2, order_ref, msg, ctx);
  if (!StampStan(msg, false).ok()) return false;
  ctx.message = std::move(msg);
  ctx.amount_minor = b.amount_minor;
  ctx.currency = currency;
  ctx.meta.merchant = ctx.merchant;
  ctx.meta.order_ref = std::string(order_ref);
  ctx.meta.automatic = automatic;
  return true;
}

Message ApiImpl::PaymentMessage(bool automatic, uint64_t amount_minor, uint16_t currency,
                                const std::string& merchant) {
  Message msg(automatic ? "0200" : "0100");
  msg.Set(3, "000000");
  msg.Set(4, *FormatAmount(amount_minor));
  msg.Set(41, VirtualTerminalId(merchant));
  msg.Set(42, Pad15(merchant));
  msg.Set(49, *FormatDigits(currency, 3));
  return msg;
}

// The card's fields of the engine's request and the payment's metadata.
// REQUIRES: CheckCard() passed.
void ApiImpl::SetCard(std::string_view pan, std::string_view expiry, std::string_view cvv2,
                      std::string_view order_ref, Message& msg, PostCtx& ctx) {
  NARAE_CHECK(pan.size() >= 13);
  msg.Set(2, pan);  // Set copies the bytes
  msg.Set(14, expiry);
  msg.Set(48, BuildField48(cvv2, order_ref));
  ctx.meta.method = "card";
  ctx.meta.masked.reserve(pan.size());
  ctx.meta.masked.assign(pan.substr(0, 6))
      .append(pan.size() - 10, '*')
      .append(pan.substr(pan.size() - 4));
}

std::optional<ApiError> ApiImpl::BuildPayment(const json& b, PostCtx& ctx) {
  static const char* const kKeys[] = {"amount", "currency", "order_ref", "capture",
                                      "card",   "sim",      "split"};
  for (auto it = b.begin(); it != b.end(); ++it) {
    if (std::find_if(std::begin(kKeys), std::end(kKeys),
                     [&](const char* k) { return it.key() == k; }) == std::end(kKeys)) {
      return BadRequest("unknown field: " + it.key().substr(0, 64));
    }
  }
  if (!b.contains("amount")) return BadRequest("amount is required");
  std::optional<uint64_t> amount = ParseAmountJson(b["amount"]);
  if (!amount) return BadRequest("amount must be an integer 1..999999999999 (minor units)");
  if (!b.contains("currency") || !b["currency"].is_string()) {
    return BadRequest("currency (ISO 4217 alphabetic) is required");
  }
  uint16_t currency = CurrencyNumeric(b["currency"].get<std::string>());
  if (currency == 0) return BadRequest("unknown currency");
  std::string order_ref;
  if (b.contains("order_ref")) {
    if (!b["order_ref"].is_string()) return BadRequest("order_ref must be a string");
    order_ref = b["order_ref"].get<std::string>();
    if (!ValidOrderRef(order_ref)) {
      return BadRequest("order_ref must be 1..64 printable ASCII characters without spaces");
    }
  }
  bool automatic = false;
  if (b.contains("capture")) {
    if (b["capture"] == "automatic") {
      automatic = true;
    } else if (b["capture"] != "manual") {
      return BadRequest("capture must be automatic or manual");
    }
  }
  ApiSplit split;
  if (b.contains("split")) {
    if (std::optional<std::string> e = ParseApiSplit(b["split"], *amount, &split)) {
      return BadRequest(*e);
    }
  }
  std::shared_ptr<const Merchant> m = bank_->FindMerchant(ctx.merchant);
  if (!m || !m->ForCurrency(currency)) {
    return ApiError{422, "currency_not_accepted", "the merchant does not take this currency"};
  }
  if (split.distance_m) {
    std::optional<ApiError> e = PriceDistance(*split.distance_m, *amount, currency, ctx, &split);
    if (e) return e;
  }
  const uint64_t delivery_fee = split.delivery_fee_minor;
  std::shared_ptr<const BankConfig> cfg = bank_->config();
  if (delivery_fee != 0) {
    const BankAccounts* ba = cfg ? cfg->ForCurrency(currency) : nullptr;
    if (!ba) return ApiError{422, "currency_not_accepted", "no logistics account in the currency"};
  }
  Message msg = PaymentMessage(automatic, *amount, currency, ctx.merchant);
  const bool card = b.contains("card");
  const bool sim = b.contains("sim");
  if (card == sim) return BadRequest("exactly one of card and sim is required");
  if (card) {
    const json& c = b["card"];
    if (!c.is_object() || !c.contains("pan") || !c["pan"].is_string() || !c.contains("cvv2") ||
        !c["cvv2"].is_string() || !c.contains("expiry") || !c["expiry"].is_string() ||
        c.size() != 3) {
      return BadRequest("card needs exactly pan, expiry (YYMM) and cvv2 (strings)");
    }
    std::string pan = c["pan"].get<std::string>();
    std::string expiry = c["expiry"].get<std::string>();
    std::string cvv2 = c["cvv2"].get<std::string>();
    if (std::optional<std::string> e = CheckCard(pan, expiry, cvv2)) return BadRequest(*e);
    SetCard(pan, expiry, cvv2, order_ref, msg, ctx);
  } else {
    const json& s = b["sim"];
    if (!s.is_object()) return BadRequest("sim must be an object");
    if (s.contains("otp")) {
      std::optional<ApiError> e = BuildOtp(s, *amount, currency, msg, ctx);
      if (e) return e;
    } else if (!s.contains("token_id") || !s["token_id"].is_string() || !s.contains("counter") ||
               !s["counter"].is_number_unsigned() || !s.contains("time") ||
               !s["time"].is_number_unsigned() || !s.contains("cryptogram") ||
               !s["cryptogram"].is_string()) {
      return BadRequest("sim needs token_id, counter, time (unix s) and cryptogram (16 hex)");
    } else {
      SimTokenData t;
      t.version = 1;
      t.token_id = s["token_id"].get<std::string>();
      t.counter = s["counter"].get<uint64_t>();
      t.time_unix_s = s["time"].get<uint64_t>();
      Result<crypto::Bytes> cg = crypto::FromHex(s["cryptogram"].get<std::string>());
      if (!cg.ok() || cg->size() != kSimCryptogramBytes) {
        return BadRequest("sim.cryptogram must be 16 hex digits");
      }
      std::copy(cg->begin(), cg->end(), t.cryptogram.begin());
      Result<std::string> f62 = FormatSimToken(t);
      if (!f62.ok()) return BadRequest("sim: " + f62.status().message());
      msg.Set(62, *f62);
    }
    const std::string token = s["token_id"].get<std::string>();
    if (std::shared_ptr<const Sim> sm = bank_->FindSim(token)) ctx.debit = sm->account_id;
    ctx.sim = true;
    ctx.meta.method = s.contains("otp") ? "sim_otp" : "sim";
    ctx.meta.masked = std::string(token.size() > 4 ? token.size() - 4 : 0, '*') +
                      token.substr(token.size() > 4 ? token.size() - 4 : 0);
    if (!order_ref.empty()) msg.Set(48, BuildField48("", order_ref));
  }
  if (Status s = StampStan(msg, false); !s.ok()) return ApiError{500, "internal_error", "stan"};
  ctx.message = std::move(msg);
  ctx.amount_minor = *amount;
  ctx.currency = currency;
  ctx.meta.merchant = ctx.merchant;
  ctx.meta.order_ref = order_ref;
  ctx.meta.automatic = automatic;
  ctx.meta.delivery_fee_minor = delivery_fee;
  ctx.meta.delivery_distance_m = split.distance_m;
  return std::nullopt;
}

// A split by distance: the share of the band of the merchant's fee schedule
// in force now (docs/settlement.md), fixed at authorization (the capture
// moves it, whatever schedule is in force then).
std::optional<ApiError> ApiImpl::PriceDistance(uint32_t distance_m, uint64_t amount_minor,
                                               uint16_t currency, const PostCtx& ctx,
                                               ApiSplit* split) {
  // The API's clock has ms: a version that started within this ms is in force.
  const uint64_t now_ns = static_cast<uint64_t>(NowMs()) * 1'000'000 + 999'999;
  Result<std::optional<FeeSchedule>> f =
      FeeScheduleInForce(*ledger_, ctx.merchant, currency, now_ns);
  if (!f.ok()) return ApiError{503, "service_unavailable", "the fee schedule could not be read"};
  std::optional<uint64_t> share =
      f->has_value() ? DeliveryShareForDistance(**f, distance_m) : std::nullopt;
  if (!share) {
    return ApiError{422, "no_delivery_band",
                    "no delivery band of the merchant's fee schedule covers " +
                        std::to_string(distance_m) + " m"};
  }
  if (*share > amount_minor) {
    return ApiError{422, "delivery_share_exceeds_amount",
                    "the delivery share for " + std::to_string(distance_m) + " m (" +
                        std::to_string(*share) + ") exceeds the amount"};
  }
  split->delivery_fee_minor = *share;
  return std::nullopt;
}

// A SIM OTP payment (docs/api.md, "SIM OTP"): the code is checked here
// against the SIM's durable counter, over the counters after it (a match
// is the new counter) and, when none matches, over the counters before it
// (a match is a replay). The request then enters the engine as the SIM
// token the issuer computes for that counter (field 62 with the counter and
// its cryptogram), so the engine's counter check in the ledger transaction
// makes the code single-use, also against a concurrent replay.
std::optional<ApiError> ApiImpl::BuildOtp(const json& s, uint64_t amount_minor, uint16_t currency,
                                          Message& msg, PostCtx& ctx) {
  if (s.size() != 2 || !s.contains("token_id") || !s["token_id"].is_string() ||
      !s["otp"].is_string()) {
    return BadRequest("sim needs exactly token_id and otp (strings)");
  }
  const std::string token = s["token_id"].get<std::string>();
  const std::string code = s["otp"].get<std::string>();
  if (code.size() != kSimOtpDigits || !AllDigits(code)) {
    return BadRequest("sim.otp must be 8 digits");
  }
  if (token.empty() || token.size() > 64) return BadRequest("sim.token_id must be 1..64 bytes");
  std::shared_ptr<const Sim> sim = bank_->FindSim(token);
  if (!sim) return ApiError{402, "invalid_card", "no such card or SIM token"};
  Result<crypto::SecretBytes> imk = keys_->Use(options_.imk_sim_key_id, crypto::KeyType::kImkSim);
  if (!imk.ok()) return ApiError{500, "internal_error", "the SIM key is unavailable"};
  Result<crypto::SecretBytes> sim_key = crypto::DeriveSimKey(*imk, sim->iccid);
  if (!sim_key.ok()) return ApiError{500, "internal_error", "the SIM key is unavailable"};
  Result<crypto::SecretBytes> otp_key = SimOtpKey(*sim_key);
  if (!otp_key.ok()) return ApiError{500, "internal_error", "the SIM key is unavailable"};
  uint64_t last = 0;
  if (std::optional<std::string> st = ledger_->GetAux(std::string(kAuxSimStatePrefix) + token)) {
    Result<CredentialState> cs = DecodeCredentialState(*st);
    if (cs.ok()) last = cs->sim_counter;
  }
  Result<uint64_t> counter = crypto::VerifyPaymentOtp(*otp_key, last, options_.otp_counter_window,
                                                      code, amount_minor, currency, ctx.merchant);
  if (!counter.ok()) {
    const uint64_t back = std::min<uint64_t>(last, options_.otp_counter_window);
    if (back != 0 && crypto::VerifyPaymentOtp(*otp_key, last - back, back, code, amount_minor,
                                              currency, ctx.merchant)
                         .ok()) {
      return ApiError{402, "sim_counter_replayed", "this one-time code was already used"};
    }
    return ApiError{402, "invalid_otp", "the one-time code is wrong for this payment"};
  }
  crypto::SimPaymentFields f;
  f.version = 1;
  f.token_id = token;
  f.counter = *counter;
  f.amount_minor = amount_minor;
  f.currency = currency;
  f.merchant_id = ctx.merchant;
  f.unix_time_s = NowMs() / 1000;
  Result<crypto::Bytes> cg = crypto::SimCryptogram(*sim_key, f);
  if (!cg.ok() || cg->size() != kSimCryptogramBytes) {
    return ApiError{500, "internal_error", "the SIM token could not be made"};
  }
  SimTokenData t;
  t.version = 1;
  t.token_id = token;
  t.counter = *counter;
  t.time_unix_s = static_cast<uint64_t>(f.unix_time_s);
  std::copy(cg->begin(), cg->end(), t.cryptogram.begin());
  Result<std::string> f62 = FormatSimToken(t);
  if (!f62.ok()) return BadRequest("sim: " + f62.status().message());
  msg.Set(62, *f62);
  return std::nullopt;
}

std::optional<ApiError> ApiImpl::BuildReference(const json& b, std::string_view payment_id,
                                                PostCtx& ctx) {
  for (auto it = b.begin(); it != b.end(); ++it) {
    if (it.key() != "amount") return BadRequest("unknown field: " + it.key().substr(0, 64));
  }
  if (!payment_id.starts_with(kPaymentIdPrefix))
    return ApiError{404, "payment_not_found", "no such payment"};
  std::string rrn(payment_id.substr(kPaymentIdPrefix.size()));
  std::optional<PaymentRecord> orig = LookupPaymentByRrn(*ledger_, rrn);
  std::shared_ptr<const Terminal> t = orig ? bank_->FindTerminal(orig->terminal_id) : nullptr;
  if (!orig || !t || t->merchant_id != ctx.merchant) {
    return ApiError{404, "payment_not_found", "no such payment"};
  }
  std::optional<uint64_t> amount;
  if (b.contains("amount")) {
    amount = ParseAmountJson(b["amount"]);
    if (!amount) return BadRequest("amount must be an integer 1..999999999999 (minor units)");
  }
  Message msg;
  switch (ctx.op) {
    case Op::kCapture:
      if (!orig->hold)
        return ApiError{409, "invalid_state", "the payment was captured on creation"};
      msg = Message("0220");
      if (!amount) amount = orig->amount_minor;
      break;
    case Op::kVoid:
      if (!orig->hold) return ApiError{409, "invalid_state", "a captured payment is refunded"};
      if (b.contains("amount")) return BadRequest("a void takes no amount");
      msg = Message("0400");
      amount = orig->amount_minor;
      break;
    case Op::kRefund:
      msg = Message("0200");
      if (!amount) {
        amount = orig->captured_minor - std::min(orig->refunded_minor, orig->captured_minor);
        if (*amount == 0) return ApiError{409, "invalid_state", "nothing left to refund"};
      }
      break;
    case Op::kPay:
      NARAE_CHECK(false);
  }
  msg.Set(3, ctx.op == Op::kRefund ? "200000" : "000000");
  msg.Set(4, *FormatAmount(*amount));
  msg.Set(41, orig->terminal_id);
  msg.Set(42, Pad15(ctx.merchant));
  msg.Set(49, *FormatDigits(orig->currency, 3));
  OriginalData od{orig->hold ? "0100" : "0200", orig->stan, orig->field7, "00000000000",
                  "00000000000"};
  Result<std::string> f90 = FormatOriginalData(od);
  if (!f90.ok()) return ApiError{500, "internal_error", "original data"};
  msg.Set(90, *f90);
  bool physical = orig->terminal_id != VirtualTerminalId(ctx.merchant);
  if (Status s = StampStan(msg, physical); !s.ok()) return ApiError{500, "internal_error", "stan"};
  ctx.sim = orig->cred_key.starts_with(kAuxSimStatePrefix);
  ctx.message = std::move(msg);
  ctx.amount_minor = *amount;
  ctx.currency = orig->currency;
  ctx.orig_rrn = rrn;
  ctx.orig = std::move(orig);
  if (std::optional<Meta> meta = LoadMeta(rrn, ctx.merchant, ctx.orig->transfer)) {
    ctx.meta = std::move(*meta);
  }
  return std::nullopt;
}

void ApiImpl::Submit(std::shared_ptr<PostCtx> ctx) {
  auto hook = std::make_shared<TxnHook>();
  PostCtx* raw = ctx.get();
  hook->before = [this, raw](ledger::Txn& txn) { return Before(txn, *raw); };
  hook->after = [this, raw](ledger::Txn& txn, const Message& r) { After(txn, *raw, r); };
  Message m = ctx->message;
  handler_->HandleHooked(std::move(m), std::move(hook),
                         [this, ctx](Message response) { Finish(ctx, response); });
}

void ApiImpl::Finish(const std::shared_ptr<PostCtx>& ctx, const Message& response) {
  HttpResponse r;
  if (ctx->replayed || ctx->hook_answered) {
    // Set in Before(): from the idempotency record, or the hold's state.
    r.status = ctx->status;
    r.body = std::move(ctx->body);  // the last use of ctx
    if (ctx->replayed) {
      replays_.fetch_add(1, std::memory_order_relaxed);
      r.headers.emplace_back("Idempotent-Replayed", "true");
    }
  } else if (ctx->retry && ctx->attempts + 1 < kSubmitRetriesMax) {
    // Our (terminal, time, STAN) was taken: a fresh STAN and time.
    ctx->retry = false;
    ctx->decided = false;
    ctx->attempts++;
    bool physical = ctx->message.Get(41) != VirtualTerminalId(ctx->merchant);
    if (StampStan(ctx->message, physical).ok() && ApplyMac(ctx->message).ok()) {
      Submit(ctx);
      return;
    }
    r.status = 500;
    r.body = ErrorBody({500, "internal_error", "the request failed"}, ctx->request_id);
  } else if (!ctx->decided || response.Get(39) != ctx->seen_rc) {
    // Never decided, or the ledger write failed after the decision (a full
    // disk answers 96 for the write that failed, then 91): nothing was
    // stored, the same key may be retried, so 503 and never a 500
    // (found by DiskFault.FullDiskHttpAnswers503HealthzReportsItAndRecovers).
    // A retry of a key answered before the failure still gets its stored
    // answer: the ledger reads while it cannot write (a full disk).
    if (!StoredAnswer(*ctx, &r)) {
      ApiError e{503, "service_unavailable", "the ledger is unavailable; retry later"};
      r.status = e.status;
      r.body = ErrorBody(e, ctx->request_id);
    }
  } else {
    r.status = ctx->status;
    r.body = std::move(ctx->body);  // the last use of ctx
  }
  in_flight_.fetch_sub(1);
  ctx->done(std::move(r));
}

// ---- Sequencer thread -----------------------------------------------------------

bool ApiImpl::Before(ledger::Txn& txn, PostCtx& ctx) {
  if (std::optional<std::string> old = txn.GetAux(ctx.idem_key)) {
    std::string fp;
    ctx.replayed = true;
    if (!ParseIdemValue(*old, &fp, &ctx.status, &ctx.body) ||
        !ResolveStoredBody([&](const std::string& k) { return txn.GetAux(k); }, &ctx.body)) {
      ctx.status = 500;
      ctx.body =
          ErrorBody({500, "internal_error", "a stored answer is unreadable"}, ctx.request_id);
    } else if (!SameRequest(fp, ctx)) {
      ctx.status = 409;
      ctx.body = ErrorBody(
          {409, "idempotency_conflict", "this Idempotency-Key was used with another request"},
          ctx.request_id);
    }
    return true;
  }
  if (!ctx.orig || ctx.op == Op::kRefund || !ctx.orig->hold) return false;
  // Capture and void need a pending hold: answer the other states here.
  std::optional<ledger::HoldInfo> h = txn.PeekHold(ctx.orig->transfer);
  if (!h || h->state == ledger::HoldState::kPending) return false;
  ApiError e{409, "invalid_state", "the payment is no longer authorized"};
  if (h->state == ledger::HoldState::kExpired) {
    e = {410, "payment_expired", "the authorization expired and its funds were released"};
  } else if (h->state == ledger::HoldState::kPosted) {
    e = {409, "invalid_state", "the payment is already captured"};
  } else if (h->state == ledger::HoldState::kVoided) {
    e = {409, "invalid_state", "the payment is voided"};
  }
  ctx.decided = false;
  RecordAnswer(txn, ctx, e.status, ErrorBody(e, ctx.request_id));
  ctx.hook_answered = true;  // no field 39 in the engine's reply
  return true;
}

void ApiImpl::RecordAnswer(ledger::Txn& txn, PostCtx& ctx, unsigned status, std::string body,
                           std::string_view event_key) {
  // Built in a buffer this thread keeps (PutAux copies it).
  thread_local std::string value;
  value.clear();
  if (event_key.empty()) {
    AppendIdemValue(&value, ctx.fingerprint, status, "", body);
  } else {
    AppendIdemValue(&value, ctx.fingerprint, status, kStoredBodyRef, event_key);
  }
  txn.PutAux(ctx.idem_key, value);
  if (value.capacity() > kIdemScratchBytesMax) std::string().swap(value);  // a large error body
  ctx.status = status;
  ctx.body = std::move(body);
}

void ApiImpl::After(ledger::Txn& txn, PostCtx& ctx, const Message& response) {
  std::string rc_text(response.Get(39));
  Result<RC> rc = ParseResponseCode(rc_text);
  if (rc.ok() && *rc == RC::kDuplicateTransmission) {
    ctx.retry = true;  // another request holds our (terminal, time, STAN)
    return;
  }
  ctx.decided = true;
  ctx.seen_rc = rc_text;
  if (!rc.ok() || *rc != RC::kApproved) {
    ApiError e = DeclineError(rc.ok() ? *rc : RC::kSystemMalfunction, ctx.op, ctx.sim);
    if (rc.ok() && *rc == RC::kInsufficientFunds && ctx.op == Op::kPay) {
      // The ledger refuses both the same way: tell the reserve from the funds.
      // A card's account is looked up here, on this rare path (the PAN's
      // hash), not for every payment.
      ledger::AccountId debit = ctx.debit;
      if (debit.IsZero() && !ctx.sim) {
        std::shared_ptr<const Card> cd = bank_->FindCardByPan(ctx.message.Get(2));
        if (cd) debit = cd->account_id;
      }
      std::optional<ledger::Account> a;
      if (!debit.IsZero()) a = txn.PeekAccount(debit);
      if (a) {
        __int128 free =
            static_cast<__int128>(a->credits_posted) - a->debits_posted - a->debits_pending;
        if (free >= static_cast<__int128>(ctx.amount_minor)) {
          e = {402, "below_minimum_balance",
               "the payment would take the account below its minimum"};
        }
      }
    }
    if (e.status >= 500) return;  // not an answer to keep: a retry may succeed
    RecordAnswer(txn, ctx, e.status, ErrorBody(e, ctx.request_id));
    return;
  }
  const int64_t now_ms = static_cast<int64_t>(txn.now_ns() / 1'000'000);
  PaymentView v;
  v.merchant = ctx.merchant;
  v.currency = ctx.currency;
  std::string_view type;
  unsigned status = 200;
  const uint64_t fee = ctx.meta.delivery_fee_minor;
  if (ctx.op == Op::kPay) {
    std::string rrn(response.Get(37));
    ctx.meta.created_ms = now_ms;
    v.id = std::string(kPaymentIdPrefix) + rrn;
    v.amount_minor = ctx.amount_minor;
    v.status = ctx.meta.automatic ? "captured" : "authorized";
    v.captured_minor = ctx.meta.automatic ? ctx.amount_minor : 0;
    v.terminal_id = std::string(response.Get(41));
    v.field7 = std::string(response.Get(7));
    v.stan = std::string(response.Get(11));
    v.hold = !ctx.meta.automatic;
    // One row: the list row, keyed by the payment transfer's timestamp,
    // holds the metadata (GET finds it from the transfer). Without a
    // transfer (not expected) the two rows written before.
    const ledger::TransferId payment =
        last_hooked_->rrn == rrn ? last_hooked_->transfer : PurchaseTransfer(txn, rrn);
    std::optional<ledger::Transfer> t = payment.IsZero() ? std::nullopt : txn.PeekTransfer(payment);
    if (t) {
      ctx.meta.created_ms = static_cast<int64_t>(t->timestamp / 1'000'000);
      txn.PutAux(ListKey(ctx.merchant, t->timestamp, rrn), EncodeMeta(ctx.meta));
    } else {
      txn.PutAux(std::string(kAuxMetaPrefix) + rrn, EncodeMeta(ctx.meta));
      txn.PutAux(ListKey(ctx.merchant, txn.now_ns(), rrn), "");
    }
    v.meta = ctx.meta;
    status = 201;
    type = ctx.meta.automatic ? "payment.captured" : "payment.authorized";
    // The delivery split is recorded with the payment (settlement.hpp,
    // kAtCapture) and moved to the logistics office by its capture: the
    // purchase itself, or the 0220 of the hold (HTTP or ISO 8583).
    if (fee != 0 && !payment.IsZero()) {
      RecordSplitAtCapture(txn, payment, fee);
      std::shared_ptr<const Merchant> m = bank_->FindMerchant(ctx.merchant);
      const MerchantCurrency* mc = m ? m->ForCurrency(ctx.currency) : nullptr;
      if (ctx.meta.automatic && mc) {  // the purchase is the capture
        (void)MoveDeliveryShare(txn, payment, mc->clearing, ctx.currency, ctx.amount_minor,
                                payment);
      }
    }
  } else {
    const PaymentRecord& o = *ctx.orig;
    v.id = std::string(kPaymentIdPrefix) + ctx.orig_rrn;
    v.amount_minor = o.amount_minor;
    v.terminal_id = o.terminal_id;
    v.field7 = o.field7;
    v.stan = o.stan;
    v.hold = o.hold;
    if (!ctx.meta.merchant.empty()) v.meta = ctx.meta;
    v.captured_minor = o.captured_minor;
    v.refunded_minor = o.refunded_minor;
    if (ctx.op == Op::kCapture) {
      v.status = "captured";
      v.captured_minor = ctx.amount_minor;
      type = "payment.captured";  // the 0220 moved the delivery share
    } else if (ctx.op == Op::kVoid) {
      v.status = "voided";
      type = "payment.voided";
    } else {
      JsonOut r(256);
      r.Begin().Num("amount", ctx.amount_minor).Int("created_at_ms", now_ms);
      r.Str("currency", CurrencyAlpha(ctx.currency));
      r.Str("id", "re_" + std::string(response.Get(37))).Str("object", "refund");
      r.Str("payment_id", v.id).Str("status", "succeeded").End();
      std::string body = r.Take();
      std::string event_key;
      PutEvent(txn, ctx.merchant, "payment.refunded", body, &event_key);
      RecordAnswer(txn, ctx, 201, std::move(body), event_key);
      return;
    }
  }
  std::string body = PaymentBody(v);
  std::string event_key;
  PutEvent(txn, ctx.merchant, type, body, &event_key);
  RecordAnswer(txn, ctx, status, std::move(body), event_key);
}

// ---- GET -----------------------------------------------------------------------

// `list_value`: the payment's list row when the caller read it (ListPayments).
std::optional<PaymentView> ApiImpl::LoadPayment(std::string_view payment_id,
                                                const std::string& merchant,
                                                std::string_view list_value) {
  if (!payment_id.starts_with(kPaymentIdPrefix)) return std::nullopt;
  std::string rrn(payment_id.substr(kPaymentIdPrefix.size()));
  if (rrn.size() != kRrnBytes) return std::nullopt;
  std::optional<PaymentRecord> r = LookupPaymentByRrn(*ledger_, rrn);
  if (!r) return std::nullopt;
  std::shared_ptr<const Terminal> t = bank_->FindTerminal(r->terminal_id);
  if (!t || t->merchant_id != merchant) return std::nullopt;
  std::optional<ledger::HoldState> hold;
  if (r->hold) {
    if (std::optional<ledger::HoldInfo> h = ledger_->LookupHold(r->transfer)) hold = h->state;
  }
  PaymentView v;
  v.id = std::string(payment_id);
  v.merchant = merchant;
  v.status = StatusOf(*r, hold);
  v.amount_minor = r->amount_minor;
  v.currency = r->currency;
  v.captured_minor = r->captured_minor;
  v.refunded_minor = r->refunded_minor;
  v.terminal_id = r->terminal_id;
  v.field7 = r->field7;
  v.stan = r->stan;
  v.hold = r->hold;
  v.meta = list_value.empty() ? LoadMeta(rrn, merchant, r->transfer) : DecodeMeta(list_value);
  return v;
}

// The metadata of a payment the API made: in its list row (found from the
// payment transfer's timestamp), or, for payments made before that form (and
// rows written without a transfer), in ap/p/<RRN> with an empty list row.
// nullopt for payments made over ISO 8583.
std::optional<Meta> ApiImpl::LoadMeta(std::string_view rrn, const std::string& merchant,
                                      const ledger::TransferId& transfer) {
  std::optional<std::string> mv;
  if (std::optional<ledger::Transfer> t = ledger_->LookupTransfer(transfer)) {
    mv = ledger_->GetAux(ListKey(merchant, t->timestamp, rrn));
  }
  if (!mv || mv->empty()) mv = ledger_->GetAux(std::string(kAuxMetaPrefix) + std::string(rrn));
  return mv ? DecodeMeta(*mv) : std::nullopt;
}

HttpResponse ApiImpl::GetPayment(std::string_view payment_id, const std::string& merchant,
                                 const std::string& request_id) {
  HttpResponse r;
  std::optional<PaymentView> v = LoadPayment(payment_id, merchant);
  if (!v) {
    r.status = 404;
    r.body = ErrorBody({404, "payment_not_found", "no such payment"}, request_id);
    return r;
  }
  r.body = PaymentJson(*v).dump();
  return r;
}

bool ParseLimit(const std::map<std::string, std::string, std::less<>>& q, uint32_t* limit) {
  *limit = 20;
  auto it = q.find("limit");
  if (it == q.end()) return true;
  if (!AllDigits(it->second) || it->second.size() > 3) return false;
  *limit = static_cast<uint32_t>(std::stoul(it->second));
  return *limit >= 1 && *limit <= kListLimitMax;
}

bool IsHexCursor(std::string_view s) {
  return s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
         });
}

HttpResponse ApiImpl::ListPayments(std::string_view query, const std::string& merchant,
                                   const std::string& request_id) {
  HttpResponse r;
  auto q = ParseQuery(query);
  uint32_t limit = 0;
  auto bad = [&](std::string m) {
    r.status = 400;
    r.body = ErrorBody(BadRequest(std::move(m)), request_id);
    return r;
  };
  if (!ParseLimit(q, &limit)) return bad("limit must be 1..100");
  int64_t from_ms = 0, to_ms = INT64_MAX;
  for (const char* k : {"from", "to"}) {
    auto it = q.find(k);
    if (it == q.end()) continue;
    if (!AllDigits(it->second) || it->second.size() > 13) {
      return bad("from and to are ms since the epoch");
    }
    (std::string_view(k) == "from" ? from_ms : to_ms) = std::stoll(it->second);
  }
  std::string cursor = q.count("cursor") ? q["cursor"] : "";
  if (!IsHexCursor(cursor)) return bad("bad cursor");
  std::string order_ref = q.count("order_ref") ? q["order_ref"] : "";
  std::string prefix = std::string(kAuxListPrefix) + merchant + "/";
  std::string after = cursor;
  if (after.empty() && from_ms > 0) {
    after = Hex16(static_cast<uint64_t>(from_ms) * 1'000'000 - 1);
  }
  json items = json::array();
  std::string last;
  uint32_t scanned = 0;
  bool more = false;
  Status s = ScanAuxAfter(*ledger_, prefix, after, [&](std::string_view k, std::string_view row) {
    std::string_view suffix = k.substr(prefix.size());
    if (suffix.size() != 16 + kRrnBytes) return true;
    uint64_t ns = std::stoull(std::string(suffix.substr(0, 16)), nullptr, 16);
    if (static_cast<int64_t>(ns / 1'000'000) > to_ms) return false;
    if (++scanned > kListScanRowsMax) {
      more = true;  // resume after the last row examined
      return false;
    }
    std::optional<PaymentView> v =
        LoadPayment(std::string(kPaymentIdPrefix) + std::string(suffix.substr(16)), merchant, row);
    if (v && (order_ref.empty() || (v->meta && v->meta->order_ref == order_ref))) {
      if (items.size() == limit) {
        more = true;
        return false;
      }
      items.push_back(PaymentJson(*v));
    }
    last = std::string(suffix);
    return true;
  });
  if (!s.ok()) {
    if (s.code() == StatusCode::kInvalidArgument) return bad("bad cursor");
    r.status = 500;
    r.body = ErrorBody({500, "internal_error", "the list failed"}, request_id);
    return r;
  }
  json out = {{"object", "list"}, {"data", items}, {"has_more", more}};
  if (more) out["next_cursor"] = last;
  r.body = out.dump();
  return r;
}

HttpResponse ApiImpl::Events(std::string_view query, const std::string& merchant,
                             const std::string& request_id) {
  HttpResponse r;
  auto q = ParseQuery(query);
  uint32_t limit = 0;
  std::string after = q.count("after") ? q["after"] : "";
  if (after.starts_with("evt_")) after = after.substr(4);
  if (!ParseLimit(q, &limit) || !IsHexCursor(after)) {
    r.status = 400;
    r.body = ErrorBody(BadRequest("limit must be 1..100 and after an event id"), request_id);
    return r;
  }
  std::string prefix = std::string(kAuxEventPrefix) + merchant + "/";
  json items = json::array();
  bool more = false;
  Status s = ScanAuxAfter(*ledger_, prefix, after, [&](std::string_view, std::string_view v) {
    if (items.size() == limit) {
      more = true;
      return false;
    }
    json ev = json::parse(v, nullptr, false);
    if (!ev.is_discarded()) items.push_back(std::move(ev));
    return true;
  });
  if (!s.ok()) {
    bool bad = s.code() == StatusCode::kInvalidArgument;
    r.status = bad ? 400 : 500;
    r.body = ErrorBody(
        bad ? BadRequest("bad cursor") : ApiError{500, "internal_error", "the feed failed"},
        request_id);
    return r;
  }
  json out = {{"object", "list"}, {"data", items}, {"has_more", more}};
  if (!items.empty()) out["next_after"] = items.back()["id"];
  r.body = out.dump();
  return r;
}

// The merchant's webhook delivery outcomes (webhook.hpp), oldest event first:
// ?status=failed|delivered, after=<event id>, limit.
HttpResponse ApiImpl::Deliveries(std::string_view query, const std::string& merchant,
                                 const std::string& request_id) {
  HttpResponse r;
  auto q = ParseQuery(query);
  uint32_t limit = 0;
  std::string after = q.count("after") ? q["after"] : "";
  if (after.starts_with("evt_")) after = after.substr(4);
  std::string status = q.count("status") ? q["status"] : "";
  if (!ParseLimit(q, &limit) || !IsHexCursor(after) ||
      (!status.empty() && status != "failed" && status != "delivered")) {
    r.status = 400;
    r.body =
        ErrorBody(BadRequest("limit must be 1..100, after an event id, status failed or delivered"),
                  request_id);
    return r;
  }
  std::string prefix = std::string(kAuxDeliveryPrefix) + merchant + "/";
  json items = json::array();
  bool more = false;
  std::string last;
  uint32_t scanned = 0;
  Status s = ScanAuxAfter(*ledger_, prefix, after, [&](std::string_view k, std::string_view v) {
    if (++scanned > kListScanRowsMax) {
      more = true;
      return false;
    }
    json d = json::parse(v, nullptr, false);
    if (d.is_discarded() || !d.is_object()) return true;
    if (!status.empty() && d.value("status", "") != status) {
      last = std::string(k.substr(prefix.size()));
      return true;
    }
    if (items.size() == limit) {
      more = true;
      return false;
    }
    d["object"] = "webhook_delivery";
    items.push_back(std::move(d));
    last = std::string(k.substr(prefix.size()));
    return true;
  });
  if (!s.ok()) {
    bool bad = s.code() == StatusCode::kInvalidArgument;
    r.status = bad ? 400 : 500;
    r.body = ErrorBody(
        bad ? BadRequest("bad cursor") : ApiError{500, "internal_error", "the list failed"},
        request_id);
    return r;
  }
  json out = {{"object", "list"}, {"data", items}, {"has_more", more}};
  if (more) out["next_after"] = "evt_" + last;
  r.body = out.dump();
  return r;
}

// ---- Metrics --------------------------------------------------------------------

void ApiImpl::AppendMetrics(std::string* out) {
  std::string& o = *out;
  o += "# HELP narae_http_requests_total HTTP API requests by endpoint and status class.\n";
  o += "# TYPE narae_http_requests_total counter\n";
  for (size_t e = 0; e < static_cast<size_t>(Endpoint::kCount); ++e) {
    for (size_t c = 1; c < kStatusClasses; ++c) {
      o += "narae_http_requests_total{endpoint=\"" + std::string(kEndpointNames[e]) + "\",code=\"" +
           std::to_string(c) + "xx\"} " + std::to_string(requests_[e][c].load()) + "\n";
    }
  }
  o += "# HELP narae_http_request_duration_seconds HTTP API latency by endpoint.\n";
  o += "# TYPE narae_http_request_duration_seconds histogram\n";
  for (size_t e = 0; e < static_cast<size_t>(Endpoint::kCount); ++e) {
    std::string name = kEndpointNames[e];
    uint64_t cumulative = 0;
    char le[32];
    for (size_t b = 0; b <= kLatencyBuckets; ++b) {
      cumulative += latency_[e][b].load();
      if (b < kLatencyBuckets) {
        std::snprintf(le, sizeof le, "%.4f", static_cast<double>(kLatencyBucketsUs[b]) / 1e6);
      } else {
        std::snprintf(le, sizeof le, "+Inf");
      }
      o += "narae_http_request_duration_seconds_bucket{endpoint=\"" + name + "\",le=\"" + le +
           "\"} " + std::to_string(cumulative) + "\n";
    }
    char sum[32];
    std::snprintf(sum, sizeof sum, "%.6f", static_cast<double>(latency_sum_us_[e].load()) / 1e6);
    o += "narae_http_request_duration_seconds_sum{endpoint=\"" + name + "\"} " + sum + "\n";
    o += "narae_http_request_duration_seconds_count{endpoint=\"" + name + "\"} " +
         std::to_string(cumulative) + "\n";
  }
  o += "# TYPE narae_http_auth_failures_total counter\nnarae_http_auth_failures_total " +
       std::to_string(auth_failures_.load()) + "\n";
  o += "# TYPE narae_http_rate_limited_total counter\nnarae_http_rate_limited_total " +
       std::to_string(rate_limited_.load()) + "\n";
  o += "# TYPE narae_http_idempotent_replays_total counter\nnarae_http_idempotent_replays_total " +
       std::to_string(replays_.load()) + "\n";
  ledger::LedgerStats s = ledger_->Stats();
  o += "# TYPE narae_ledger_groups_committed_total counter\nnarae_ledger_groups_committed_total " +
       std::to_string(s.groups_committed) + "\n";
  o += "# TYPE narae_ledger_events_committed_total counter\nnarae_ledger_events_committed_total " +
       std::to_string(s.events_committed) + "\n";
  o += "# TYPE narae_ledger_last_batch_events gauge\nnarae_ledger_last_batch_events " +
       std::to_string(s.last_group_events) + "\n";
  char fsync[32];
  std::snprintf(fsync, sizeof fsync, "%.6f", static_cast<double>(s.last_fsync_us) / 1e6);
  o += std::string(
           "# TYPE narae_ledger_last_fsync_seconds gauge\nnarae_ledger_last_fsync_seconds ") +
       fsync + "\n";
  o += "# TYPE narae_ledger_open_holds gauge\nnarae_ledger_open_holds " +
       std::to_string(s.open_holds) + "\n";
  o += "# TYPE narae_ledger_healthy gauge\nnarae_ledger_healthy " +
       std::string(s.healthy ? "1" : "0") + "\n";
  if (options_.extra_metrics) options_.extra_metrics(out);
}

}  // namespace

// ---- Public functions ---------------------------------------------------------

std::string VirtualTerminalId(std::string_view merchant_id) {
  static constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : merchant_id) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  std::string id = "W";
  for (int i = 0; i < 7; ++i) {
    id.push_back(kDigits[h % 36]);
    h /= 36;
  }
  return id;
}

Status EnsureApiTerminals(ledger::Ledger& ledger, crypto::KeyStore& keys) {
  (void)keys;  // virtual terminals have no PIN or MAC key
  std::vector<Merchant> merchants;
  Status scan = ledger.ScanAux(kAuxMerchantPrefix, [&](std::string_view, std::string_view v) {
    Result<Merchant> m = DecodeMerchant(v);
    if (m.ok()) merchants.push_back(std::move(*m));
    return merchants.size() < 100000;
  });
  NARAE_RETURN_IF_ERROR(scan);
  for (const Merchant& m : merchants) {
    std::string id = VirtualTerminalId(m.id);
    if (std::optional<std::string> old = ledger.GetAux(TerminalKey(id))) {
      Result<Terminal> t = DecodeTerminal(*old);
      if (!t.ok() || t->merchant_id != m.id) {
        return Status::FailedPrecondition("virtual terminal id " + id + " of merchant " + m.id +
                                          " is taken");
      }
      continue;
    }
    Terminal t;
    t.id = id;
    t.merchant_id = m.id;
    NARAE_RETURN_IF_ERROR(PutRecord(ledger, TerminalKey(id), EncodeTerminal(t)));
  }
  return Status::Ok();
}

Result<crypto::SecretBytes> SimOtpKey(const crypto::SecretBytes& sim_key) {
  static constexpr std::string_view kInfo = "narae sim otp v1";
  return crypto::HkdfSha256(
      sim_key, {}, crypto::ByteView(reinterpret_cast<const uint8_t*>(kInfo.data()), kInfo.size()),
      32);
}

std::vector<std::pair<std::string, std::string>> SignedHeaders(
    std::string_view merchant_id, std::string_view secret_hex, std::string_view method,
    std::string_view target, std::string_view body, int64_t timestamp_s, std::string_view nonce) {
  Result<crypto::SecretBytes> secret = crypto::SecretFromHex(secret_hex);
  std::string sig;
  if (secret.ok()) {
    Result<std::string> s =
        crypto::SignMerchantRequest(*secret, method, target, timestamp_s, nonce, body);
    if (s.ok()) sig = *s;
  }
  return {{"X-Narae-Key-Id", std::string(merchant_id)},
          {"X-Narae-Timestamp", std::to_string(timestamp_s)},
          {"X-Narae-Nonce", std::string(nonce)},
          {"X-Narae-Signature", sig}};
}

Result<std::unique_ptr<Api>> Api::Create(const ApiDeps& deps, ApiOptions options) {
  if (!deps.ledger || !deps.keys || !deps.handler) {
    return Status::InvalidArgument("the API needs a ledger, keys and the authorizer");
  }
  auto* hooked = dynamic_cast<HookedHandler*>(deps.handler);
  if (!hooked) return Status::InvalidArgument("the API needs the authorizer (a HookedHandler)");
  if (options.signature_skew_s <= 0 || options.nonce_cache_max == 0 ||
      (options.rate_per_s != 0 && options.rate_burst == 0)) {
    return Status::InvalidArgument("bad API options");
  }
  Result<std::unique_ptr<BankCache>> bank = BankCache::Load(*deps.ledger);
  if (!bank.ok()) return bank.status();
  std::shared_ptr<BankCache> shared_bank = std::move(*bank);
  // ISO 8583 payments and every hold's expiry index reach the event feed
  // through the authorizer's observer (switch/api_events.hpp).
  auto last_hooked = std::make_shared<HookedPayment>();
  hooked->SetPaymentObserver(
      [shared_bank, last_hooked](ledger::Txn& txn, const PaymentChange& change) {
        if (change.hooked &&
            (change.kind == RequestKind::kHold || change.kind == RequestKind::kPurchase)) {
          last_hooked->rrn = change.rrn;
          last_hooked->transfer = change.transfer;
        }
        RecordIsoChange(txn, *shared_bank, change);
      });
  std::unique_ptr<Api> api = std::make_unique<ApiImpl>(deps, std::move(options), hooked,
                                                       std::move(shared_bank), last_hooked);
  return api;
}

}  // namespace narae::switching
