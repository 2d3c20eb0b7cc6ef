// HOTP (RFC 4226), TOTP (RFC 6238), OCRA (RFC 6287) and payment-bound codes.
#include <algorithm>
#include <cstring>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"

namespace narae::crypto {

namespace {

constexpr uint64_t kPow10[] = {1,       10,       100,       1000,       10000,      100000,
                               1000000, 10000000, 100000000, 1000000000, 10000000000};

void PutBe64(uint64_t v, uint8_t* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v & 0xFF);
    v >>= 8;
  }
}

// RFC 4226 section 5.3 dynamic truncation.
std::string Truncate(const Bytes& mac, int digits) {
  size_t offset = mac.back() & 0x0F;
  uint64_t bin = (static_cast<uint64_t>(mac[offset] & 0x7F) << 24) |
                 (static_cast<uint64_t>(mac[offset + 1]) << 16) |
                 (static_cast<uint64_t>(mac[offset + 2]) << 8) | mac[offset + 3];
  uint64_t code = bin % kPow10[digits];
  std::string out(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<char>('0' + code % 10);
    code /= 10;
  }
  return out;
}

Result<std::string> HmacTruncate(HashAlg alg, ByteView key, ByteView message, int digits) {
  if (digits < 4 || digits > 10) return Status::InvalidArgument("digits must be 4..10");
  if (key.empty()) return Status::InvalidArgument("OTP key is empty");
  Result<Bytes> mac = Hmac(alg, key, message);
  if (!mac.ok()) return mac.status();
  return Truncate(*mac, digits);
}

// Decimal string -> upper-case hex without leading zeros ("0" for zero), as
// RFC 6287's reference code does with BigInteger.toString(16).
std::string DecimalToHex(std::string_view decimal) {
  std::string digits(decimal);
  std::string hex;
  static constexpr char kHex[] = "0123456789ABCDEF";
  while (!(digits.empty() || (digits.size() == 1 && digits[0] == '0'))) {
    std::string quotient;
    int remainder = 0;
    for (char c : digits) {
      int cur = remainder * 10 + (c - '0');
      int q = cur / 16;
      remainder = cur % 16;
      if (!quotient.empty() || q != 0) quotient.push_back(static_cast<char>('0' + q));
    }
    hex.push_back(kHex[remainder]);
    digits = quotient.empty() ? "0" : quotient;
  }
  if (hex.empty()) return "0";
  std::reverse(hex.begin(), hex.end());
  return hex;
}

struct OcraSuite {
  HashAlg alg = HashAlg::kSha1;
  int digits = 6;
  bool counter = false;
  char question_type = 'N';
  size_t question_max = 8;
  bool pin = false;
  HashAlg pin_alg = HashAlg::kSha1;
  size_t session_len = 0;
  bool time = false;
};

Result<HashAlg> ParseSha(std::string_view s) {
  if (s == "SHA1") return HashAlg::kSha1;
  if (s == "SHA256") return HashAlg::kSha256;
  if (s == "SHA512") return HashAlg::kSha512;
  return Status::InvalidArgument("OCRA: unknown hash");
}

size_t HashSize(HashAlg alg) {
  switch (alg) {
    case HashAlg::kSha1:
      return 20;
    case HashAlg::kSha256:
      return 32;
    case HashAlg::kSha512:
      return 64;
  }
  return 0;
}

Status ParseDataInputPart(std::string_view part, OcraSuite& suite, bool& has_question) {
  if (part == "C") {
    suite.counter = true;
  } else if (part.size() == 4 && part[0] == 'Q') {
    suite.question_type = part[1];
    if (suite.question_type != 'N' && suite.question_type != 'A' && suite.question_type != 'H') {
      return Status::InvalidArgument("OCRA: question type must be N, A or H");
    }
    if (!internal::IsDigits(part.substr(2))) return Status::InvalidArgument("OCRA: Q length");
    suite.question_max = static_cast<size_t>(std::stoi(std::string(part.substr(2))));
    if (suite.question_max < 4 || suite.question_max > 64) {
      return Status::InvalidArgument("OCRA: question length must be 04..64");
    }
    has_question = true;
  } else if (part.size() > 1 && part[0] == 'P') {
    Result<HashAlg> alg = ParseSha(part.substr(1));
    if (!alg.ok()) return alg.status();
    suite.pin = true;
    suite.pin_alg = *alg;
  } else if (part.size() == 4 && part[0] == 'S' && internal::IsDigits(part.substr(1))) {
    suite.session_len = static_cast<size_t>(std::stoi(std::string(part.substr(1))));
    if (suite.session_len == 0 || suite.session_len > 512) {
      return Status::InvalidArgument("OCRA: session length");
    }
  } else if (part.size() >= 3 && part[0] == 'T') {
    suite.time = true;  // the caller passes time steps already divided
  } else {
    return Status::InvalidArgument("OCRA: unknown data input " + std::string(part));
  }
  return Status::Ok();
}

Result<OcraSuite> ParseOcraSuite(std::string_view text) {
  OcraSuite suite;
  size_t c1 = text.find(':');
  size_t c2 = c1 == std::string_view::npos ? c1 : text.find(':', c1 + 1);
  if (c2 == std::string_view::npos || text.substr(0, c1) != "OCRA-1") {
    return Status::InvalidArgument("OCRA suite must be OCRA-1:<function>:<data input>");
  }
  std::string_view function = text.substr(c1 + 1, c2 - c1 - 1);
  std::string_view data_input = text.substr(c2 + 1);
  if (function.substr(0, 5) != "HOTP-") return Status::InvalidArgument("OCRA: HOTP only");
  size_t dash = function.find('-', 5);
  if (dash == std::string_view::npos) return Status::InvalidArgument("OCRA: bad function");
  Result<HashAlg> alg = ParseSha(function.substr(5, dash - 5));
  if (!alg.ok()) return alg.status();
  suite.alg = *alg;
  std::string_view digits = function.substr(dash + 1);
  if (!internal::IsDigits(digits) || digits.size() > 2) {
    return Status::InvalidArgument("OCRA: digits");
  }
  suite.digits = std::stoi(std::string(digits));
  if (suite.digits < 4 || suite.digits > 10) return Status::InvalidArgument("OCRA: digits");
  bool has_question = false;
  size_t start = 0;
  for (int parts = 0; parts < 8 && start <= data_input.size(); ++parts) {
    size_t end = data_input.find('-', start);
    std::string_view part = data_input.substr(
        start, end == std::string_view::npos ? std::string_view::npos : end - start);
    NARAE_RETURN_IF_ERROR(ParseDataInputPart(part, suite, has_question));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  if (!has_question) return Status::InvalidArgument("OCRA: the suite needs a question");
  return suite;
}

Result<Bytes> OcraQuestion(const OcraSuite& suite, std::string_view q) {
  if (q.size() < 4 || q.size() > suite.question_max) {
    return Status::InvalidArgument("OCRA: question length out of range");
  }
  Bytes out(128, 0);
  if (suite.question_type == 'A') {
    std::memcpy(out.data(), q.data(), q.size());
    return out;
  }
  std::string hex;
  if (suite.question_type == 'N') {
    if (!internal::IsDigits(q)) return Status::InvalidArgument("OCRA: numeric question");
    hex = DecimalToHex(q);
  } else {
    if (!internal::IsHexDigits(q)) return Status::InvalidArgument("OCRA: hex question");
    hex = std::string(q);
  }
  hex.resize(256, '0');
  Result<Bytes> bytes = FromHex(hex);
  if (!bytes.ok()) return bytes.status();
  return bytes;
}

}  // namespace

Result<std::string> Hotp(ByteView key, uint64_t counter, int digits, HashAlg alg) {
  uint8_t msg[8];
  PutBe64(counter, msg);
  return HmacTruncate(alg, key, ByteView(msg, 8), digits);
}

Result<std::string> Totp(ByteView key, int64_t unix_time_s, int digits, HashAlg alg,
                         int64_t step_s) {
  if (unix_time_s < 0 || step_s <= 0) return Status::InvalidArgument("TOTP time or step");
  return Hotp(key, static_cast<uint64_t>(unix_time_s / step_s), digits, alg);
}

Result<std::string> Ocra(std::string_view suite_text, ByteView key, const OcraInput& input) {
  Result<OcraSuite> suite = ParseOcraSuite(suite_text);
  if (!suite.ok()) return suite.status();
  Bytes msg(suite_text.begin(), suite_text.end());
  msg.push_back(0x00);
  if (suite->counter) {
    uint8_t c[8];
    PutBe64(input.counter, c);
    msg.insert(msg.end(), c, c + 8);
  }
  Result<Bytes> q = OcraQuestion(*suite, input.question);
  if (!q.ok()) return q.status();
  msg.insert(msg.end(), q->begin(), q->end());
  if (suite->pin) {
    if (input.pin_hash.size() != HashSize(suite->pin_alg)) {
      return Status::InvalidArgument("OCRA: PIN hash has the wrong length");
    }
    msg.insert(msg.end(), input.pin_hash.begin(), input.pin_hash.end());
  }
  if (suite->session_len > 0) {
    if (input.session.size() != suite->session_len) {
      return Status::InvalidArgument("OCRA: session information has the wrong length");
    }
    msg.insert(msg.end(), input.session.begin(), input.session.end());
  }
  if (suite->time) {
    uint8_t t[8];
    PutBe64(input.time_steps, t);
    msg.insert(msg.end(), t, t + 8);
  }
  return HmacTruncate(suite->alg, key, msg, suite->digits);
}

namespace {
Result<std::string> PaymentQuestion(uint64_t amount_minor, uint16_t currency,
                                    std::string_view merchant_id) {
  if (merchant_id.empty() || merchant_id.size() > 64) {
    return Status::InvalidArgument("merchant id must be 1..64 bytes");
  }
  Bytes data(18);
  PutBe64(amount_minor, data.data());
  data[8] = static_cast<uint8_t>(currency >> 8);
  data[9] = static_cast<uint8_t>(currency & 0xFF);
  PutBe64(merchant_id.size(), data.data() + 10);
  data.insert(data.end(), merchant_id.begin(), merchant_id.end());
  Result<Bytes> digest = Sha256(data);
  if (!digest.ok()) return digest.status();
  return ToHex(*digest);
}
}  // namespace

Result<std::string> PaymentOtp(ByteView key, uint64_t counter, uint64_t amount_minor,
                               uint16_t currency, std::string_view merchant_id) {
  Result<std::string> question = PaymentQuestion(amount_minor, currency, merchant_id);
  if (!question.ok()) return question.status();
  OcraInput input;
  input.counter = counter;
  input.question = *question;
  return Ocra(kPaymentOcraSuite, key, input);
}

Result<uint64_t> VerifyPaymentOtp(ByteView key, uint64_t last_counter, uint64_t window,
                                  std::string_view code, uint64_t amount_minor, uint16_t currency,
                                  std::string_view merchant_id) {
  constexpr uint64_t kWindowMax = 1000;  // bounds the scan
  if (window == 0 || window > kWindowMax) return Status::InvalidArgument("window 1..1000");
  if (code.size() != 8 || !internal::IsDigits(code)) {
    return Status::InvalidArgument("code must be 8 digits");
  }
  Result<std::string> question = PaymentQuestion(amount_minor, currency, merchant_id);
  if (!question.ok()) return question.status();
  for (uint64_t c = last_counter + 1; c <= last_counter + window && c > last_counter; ++c) {
    OcraInput input;
    input.counter = c;
    input.question = *question;
    Result<std::string> expected = Ocra(kPaymentOcraSuite, key, input);
    if (!expected.ok()) return expected.status();
    ByteView a(reinterpret_cast<const uint8_t*>(expected->data()), expected->size());
    ByteView b(reinterpret_cast<const uint8_t*>(code.data()), code.size());
    if (ConstantTimeEqual(a, b)) return c;
  }
  return Status::PermissionDenied("payment code does not verify in the counter window");
}

}  // namespace narae::crypto
