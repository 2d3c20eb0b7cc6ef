// Card functions: PAN and Luhn, Visa CVV and PVV, IBM 3624 offsets, ISO 9564
// PIN blocks (format 0 and 4), PIN translation and verification.
#include <openssl/crypto.h>

#include <cstring>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"

namespace narae::crypto {

using internal::ClearPin;
using internal::IsDigits;

namespace {

ByteView StrView(std::string_view s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

Status CheckPin(std::string_view pin) {
  if (pin.size() < 4 || pin.size() > 12 || !IsDigits(pin)) {
    return Status::InvalidArgument("PIN must be 4 to 12 digits");
  }
  return Status::Ok();
}

Status CheckPan(std::string_view pan) {
  if (pan.size() < 13 || pan.size() > 19 || !IsDigits(pan)) {
    return Status::InvalidArgument("PAN must be 13 to 19 digits");
  }
  return Status::Ok();
}

Status CheckDoubleKey(ByteView key, const char* what) {
  if (key.size() != 16) return Status::InvalidArgument(std::string(what) + " must be 16 bytes");
  return Status::Ok();
}

// Decimal digits packed as nibbles from nibble `*pos` of `out` (zero-filled
// by the caller); the caller has checked they are digits and that they fit.
void PackDigits(std::string_view digits, uint8_t* out, size_t* pos) {
  for (char c : digits) {
    const uint8_t d = static_cast<uint8_t>(c - '0');
    out[*pos / 2] |= static_cast<uint8_t>(*pos % 2 == 0 ? d << 4 : d);
    ++*pos;
  }
}

uint8_t Nibble(const uint8_t* bytes, size_t i) {
  return i % 2 == 0 ? static_cast<uint8_t>(bytes[i / 2] >> 4) : bytes[i / 2] & 0x0F;
}

// Visa-style decimalization of an 8-byte result (read as 16 hex nibbles):
// its decimal nibbles first, then A-F as 0-5; `count` digits.
std::string DecimalizeBlock(const uint8_t* block8, size_t count) {
  std::string out;
  for (size_t i = 0; i < 16 && out.size() < count; ++i) {
    uint8_t v = Nibble(block8, i);
    if (v <= 9) out.push_back(static_cast<char>('0' + v));
  }
  for (size_t i = 0; i < 16 && out.size() < count; ++i) {
    uint8_t v = Nibble(block8, i);
    if (v >= 10) out.push_back(static_cast<char>('0' + (v - 10)));
  }
  return out;
}

// 3DES-encrypt a 16-hex-digit block and return the upper-case hex result.
Result<std::string> EncryptHexBlock(ByteView key, std::string_view hex16) {
  Result<Bytes> block = FromHex(hex16);
  if (!block.ok()) return block.status();
  Result<SecretBytes> enc = internal::TdesEcb(key, *block, true);
  if (!enc.ok()) return enc.status();
  return ToHex(*enc);
}

}  // namespace

int internal::LuhnSum(std::string_view digits, bool double_rightmost) {
  int sum = 0;
  bool dbl = double_rightmost;
  for (size_t i = digits.size(); i-- > 0;) {
    int d = digits[i] - '0';
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum;
}

Result<char> LuhnCheckDigit(std::string_view digits) {
  if (digits.empty() || digits.size() > 18 || !IsDigits(digits)) {
    return Status::InvalidArgument("Luhn input must be 1 to 18 digits");
  }
  const int sum = internal::LuhnSum(digits, /*double_rightmost=*/true);
  return static_cast<char>('0' + (10 - sum % 10) % 10);
}

bool LuhnValid(std::string_view pan) {
  if (pan.size() < 2 || pan.size() > 19 || !IsDigits(pan)) return false;
  Result<char> check = LuhnCheckDigit(pan.substr(0, pan.size() - 1));
  return check.ok() && *check == pan.back();
}

Result<std::string> BuildPan(std::string_view bin, std::string_view account_digits) {
  if (bin.size() < 6 || bin.size() > 8 || !IsDigits(bin)) {
    return Status::InvalidArgument("BIN must be 6 to 8 digits");
  }
  if (!IsDigits(account_digits)) return Status::InvalidArgument("account digits must be digits");
  std::string body = std::string(bin) + std::string(account_digits);
  if (body.size() < 12 || body.size() > 18) {
    return Status::InvalidArgument("BIN + account digits must be 12 to 18 digits");
  }
  Result<char> check = LuhnCheckDigit(body);
  if (!check.ok()) return check.status();
  return body + *check;
}

std::string MaskPan(std::string_view pan) {
  if (pan.size() < 11) return std::string(pan.size(), '*');
  std::string out(pan);
  for (size_t i = 6; i + 4 < out.size(); ++i) out[i] = '*';
  return out;
}

Result<std::string> Cvv(ByteView cvk, std::string_view pan, std::string_view expiry_yymm,
                        std::string_view service_code) {
  NARAE_RETURN_IF_ERROR(CheckDoubleKey(cvk, "CVK"));
  NARAE_RETURN_IF_ERROR(CheckPan(pan));
  if (expiry_yymm.size() != 4 || !IsDigits(expiry_yymm)) {
    return Status::InvalidArgument("expiry must be YYMM");
  }
  if (service_code.size() != 3 || !IsDigits(service_code)) {
    return Status::InvalidArgument("service code must be 3 digits");
  }
  // PAN | expiry | service code as digits, zero-filled to 32: two blocks.
  uint8_t blocks[16] = {0};
  size_t pos = 0;
  PackDigits(pan, blocks, &pos);
  PackDigits(expiry_yymm, blocks, &pos);
  PackDigits(service_code, blocks, &pos);
  // Encrypt block 1 under A, xor block 2, then 3DES under A|B.
  uint8_t r[8];
  Status st = internal::TdesBlocks(cvk.subspan(0, 8), internal::CipherMode::kEcb, true,
                                   ByteView(blocks, 8), r, internal::KeyUse::kLongLived);
  if (st.ok()) {
    for (size_t i = 0; i < 8; ++i) r[i] ^= blocks[8 + i];
    st = internal::TdesBlocks(cvk, internal::CipherMode::kEcb, true, ByteView(r, 8), r,
                              internal::KeyUse::kLongLived);
  }
  std::string cvv = st.ok() ? DecimalizeBlock(r, 3) : std::string();
  OPENSSL_cleanse(r, sizeof(r));
  if (!st.ok()) return st;
  return cvv;
}

Result<std::string> Cvv2(ByteView cvk, std::string_view pan, std::string_view expiry_yymm) {
  return Cvv(cvk, pan, expiry_yymm, "000");
}

Result<std::string> Icvv(ByteView cvk, std::string_view pan, std::string_view expiry_yymm) {
  return Cvv(cvk, pan, expiry_yymm, "999");
}

Status VerifyCvv(ByteView cvk, std::string_view pan, std::string_view expiry_yymm,
                 std::string_view service_code, std::string_view cvv) {
  if (cvv.size() != 3 || !IsDigits(cvv)) return Status::InvalidArgument("CVV must be 3 digits");
  Result<std::string> expected = Cvv(cvk, pan, expiry_yymm, service_code);
  if (!expected.ok()) return expected.status();
  if (!ConstantTimeEqual(StrView(*expected), StrView(cvv))) {
    return Status::PermissionDenied("CVV does not match");
  }
  return Status::Ok();
}

Result<std::string> Pvv(ByteView pvk, std::string_view pan, int pvki, std::string_view pin) {
  NARAE_RETURN_IF_ERROR(CheckDoubleKey(pvk, "PVK"));
  if (pvki < 0 || pvki > 9) return Status::InvalidArgument("PVKI must be 0..9");
  if (pin.size() < 4 || pin.size() > 12 || !IsDigits(pin)) {
    return Status::InvalidArgument("PIN must be 4 to 12 digits");
  }
  Result<std::string> pan12 = internal::Pan12(pan);
  if (!pan12.ok()) return pan12.status();
  // TSP: 11 PAN digits | PVKI | the first 4 PIN digits (16 digits, 8 bytes).
  uint8_t tsp[8] = {0};
  size_t pos = 0;
  PackDigits(std::string_view(*pan12).substr(1), tsp, &pos);
  const char pvki_digit = static_cast<char>('0' + pvki);
  PackDigits(std::string_view(&pvki_digit, 1), tsp, &pos);
  PackDigits(pin.substr(0, 4), tsp, &pos);
  Status st = internal::TdesBlocks(pvk, internal::CipherMode::kEcb, true, ByteView(tsp, 8), tsp,
                                   internal::KeyUse::kLongLived);
  std::string pvv = st.ok() ? DecimalizeBlock(tsp, 4) : std::string();
  OPENSSL_cleanse(tsp, sizeof(tsp));
  if (!st.ok()) return st;
  return pvv;
}

namespace {
Result<std::string> Ibm3624Natural(ByteView pvk, std::string_view table,
                                   std::string_view validation_data, size_t length) {
  NARAE_RETURN_IF_ERROR(CheckDoubleKey(pvk, "PVK"));
  if (table.size() != 16 || !IsDigits(table)) {
    return Status::InvalidArgument("decimalization table must be 16 digits");
  }
  if (validation_data.size() != 16 || !internal::IsHexDigits(validation_data)) {
    return Status::InvalidArgument("validation data must be 16 hex digits");
  }
  Result<std::string> enc = EncryptHexBlock(pvk, validation_data);
  if (!enc.ok()) return enc.status();
  std::string natural;
  for (size_t i = 0; i < length; ++i) {
    char c = (*enc)[i];
    int v = c <= '9' ? c - '0' : c - 'A' + 10;
    natural.push_back(table[static_cast<size_t>(v)]);
  }
  return natural;
}
}  // namespace

Result<std::string> Ibm3624Offset(ByteView pvk, std::string_view decimalization_table,
                                  std::string_view validation_data, std::string_view pin) {
  NARAE_RETURN_IF_ERROR(CheckPin(pin));
  Result<std::string> natural =
      Ibm3624Natural(pvk, decimalization_table, validation_data, pin.size());
  if (!natural.ok()) return natural.status();
  std::string offset;
  for (size_t i = 0; i < pin.size(); ++i) {
    int d = ((pin[i] - '0') - ((*natural)[i] - '0') + 10) % 10;
    offset.push_back(static_cast<char>('0' + d));
  }
  return offset;
}

// ---- PIN blocks --------------------------------------------------------------

Result<Bytes> EncodePinBlockIso0(std::string_view pin, std::string_view pan) {
  NARAE_RETURN_IF_ERROR(CheckPin(pin));
  Result<std::string> pan12 = internal::Pan12(pan);
  if (!pan12.ok()) return pan12.status();
  std::string pin_field;
  pin_field.reserve(16);
  pin_field.push_back('0');
  pin_field.push_back("0123456789ABCDEF"[pin.size()]);
  pin_field.append(pin);
  pin_field.append(14 - pin.size(), 'F');
  Result<Bytes> a = FromHex(pin_field);
  OPENSSL_cleanse(pin_field.data(), pin_field.size());
  Result<Bytes> b = FromHex("0000" + *pan12);
  if (!a.ok() || !b.ok()) return Status::Internal("PIN block encoding");
  for (size_t i = 0; i < 8; ++i) (*a)[i] ^= (*b)[i];
  return a;
}

namespace internal {

Result<ClearPin> DecodePinBlockIso0(ByteView block, std::string_view pan) {
  if (block.size() != 8) return Status::InvalidArgument("format 0 PIN block must be 8 bytes");
  Result<std::string> pan12 = Pan12(pan);
  if (!pan12.ok()) return pan12.status();
  // PAN field: 0000 | 12 PAN digits; the PIN field is the block xor it.
  uint8_t h[8] = {0};
  size_t pos = 4;
  PackDigits(*pan12, h, &pos);
  for (size_t i = 0; i < 8; ++i) h[i] ^= block[i];
  struct Wipe {
    uint8_t* p;
    ~Wipe() { OPENSSL_cleanse(p, 8); }
  } wipe{h};  // on every return path
  if (Nibble(h, 0) != 0) return Status::InvalidArgument("PIN block is not ISO format 0");
  const size_t len = Nibble(h, 1);
  if (len < 4 || len > 12) return Status::InvalidArgument("PIN block: PIN length not 4..12");
  std::string digits(len, '0');
  for (size_t i = 0; i < len; ++i) {
    const uint8_t d = Nibble(h, 2 + i);
    if (d > 9) {
      OPENSSL_cleanse(digits.data(), digits.size());
      return Status::InvalidArgument("PIN block: PIN not numeric");
    }
    digits[i] = static_cast<char>('0' + d);
  }
  ClearPin pin(std::move(digits));
  digits.resize(len);  // the moved-from small-string buffer held the digits
  OPENSSL_cleanse(digits.data(), digits.size());
  for (size_t i = 2 + len; i < 16; ++i) {
    if (Nibble(h, i) != 0x0F) return Status::InvalidArgument("PIN block: bad filler");
  }
  return pin;
}

Result<SecretBytes> EncodePinFieldIso4(std::string_view pin, ByteView random_fill) {
  NARAE_RETURN_IF_ERROR(CheckPin(pin));
  if (random_fill.size() != 8) return Status::InvalidArgument("format 4 random fill: 8 bytes");
  std::string field;
  field.reserve(16);
  field.push_back('4');
  field.push_back("0123456789ABCDEF"[pin.size()]);
  field.append(pin);
  field.append(14 - pin.size(), 'A');
  Result<SecretBytes> head = SecretFromHex(field);
  OPENSSL_cleanse(field.data(), field.size());
  if (!head.ok()) return head.status();
  SecretBytes out(16);
  std::memcpy(out.data(), head->data(), 8);
  std::memcpy(out.data() + 8, random_fill.data(), 8);
  return out;
}

Result<Bytes> EncodePanFieldIso4(std::string_view pan) {
  NARAE_RETURN_IF_ERROR(CheckPan(pan));
  // PAN length - 12 | PAN digits, zero-filled to 32 digits.
  Bytes field(16, 0);
  field[0] = static_cast<uint8_t>((pan.size() - 12) << 4);
  size_t pos = 1;
  PackDigits(pan, field.data(), &pos);
  return field;
}

namespace {
Result<ClearPin> DecodePinFieldIso4(const SecretBytes& field) {
  std::string hex = ToHex(ByteView(field.data(), 8));
  ClearPin guard(hex);
  OPENSSL_cleanse(hex.data(), hex.size());
  std::string_view h = guard.digits();
  if (h[0] != '4') return Status::InvalidArgument("PIN block is not ISO format 4");
  size_t len = static_cast<size_t>(h[1] <= '9' ? h[1] - '0' : h[1] - 'A' + 10);
  if (len < 4 || len > 12) return Status::InvalidArgument("PIN block: PIN length not 4..12");
  if (!IsDigits(h.substr(2, len))) return Status::InvalidArgument("PIN block: PIN not numeric");
  for (size_t i = 2 + len; i < 16; ++i) {
    if (h[i] != 'A') return Status::InvalidArgument("PIN block: bad filler");
  }
  return ClearPin(std::string(h.substr(2, len)));
}
}  // namespace

Result<ClearPin> DecryptPinBlock(PinBlockFormat format, ByteView key, ByteView pin_block,
                                 std::string_view pan) {
  if (format == PinBlockFormat::kIso0) {
    if (pin_block.size() != 8) return Status::InvalidArgument("format 0 PIN block: 8 bytes");
    if (key.size() != 16 && key.size() != 24) {
      return Status::InvalidArgument("format 0 needs a TDES key");
    }
    uint8_t clear[8];
    Status st = TdesBlocks(key, CipherMode::kEcb, false, pin_block, clear, KeyUse::kLongLived);
    if (!st.ok()) return st;
    Result<ClearPin> pin = DecodePinBlockIso0(ByteView(clear, 8), pan);
    OPENSSL_cleanse(clear, sizeof(clear));
    return pin;
  }
  if (pin_block.size() != 16) return Status::InvalidArgument("format 4 PIN block: 16 bytes");
  Result<Bytes> pan_field = EncodePanFieldIso4(pan);
  if (!pan_field.ok()) return pan_field.status();
  Result<SecretBytes> mid = AesEcb(key, pin_block, false);
  if (!mid.ok()) return mid.status();
  for (size_t i = 0; i < 16; ++i) mid->data()[i] ^= (*pan_field)[i];
  Result<SecretBytes> field = AesEcb(key, *mid, false);
  if (!field.ok()) return field.status();
  return DecodePinFieldIso4(*field);
}

}  // namespace internal

Result<Bytes> EncryptPinBlock(PinBlockFormat format, ByteView key, std::string_view pin,
                              std::string_view pan, ByteView random_fill) {
  if (format == PinBlockFormat::kIso0) {
    if (!random_fill.empty()) return Status::InvalidArgument("format 0 takes no random fill");
    if (key.size() != 16 && key.size() != 24) {
      return Status::InvalidArgument("format 0 needs a TDES key (16 or 24 bytes)");
    }
    Result<Bytes> clear = EncodePinBlockIso0(pin, pan);
    if (!clear.ok()) return clear.status();
    Result<SecretBytes> enc = internal::TdesEcb(key, *clear, true);
    OPENSSL_cleanse(clear->data(), clear->size());
    if (!enc.ok()) return enc.status();
    return Bytes(enc->data(), enc->data() + enc->size());
  }
  Bytes fill(random_fill.begin(), random_fill.end());
  if (fill.empty()) {
    Result<Bytes> rnd = RandomBytes(8);
    if (!rnd.ok()) return rnd.status();
    fill = *rnd;
  }
  Result<SecretBytes> pin_field = internal::EncodePinFieldIso4(pin, fill);
  if (!pin_field.ok()) return pin_field.status();
  Result<Bytes> pan_field = internal::EncodePanFieldIso4(pan);
  if (!pan_field.ok()) return pan_field.status();
  Result<SecretBytes> a = internal::AesEcb(key, *pin_field, true);
  if (!a.ok()) return a.status();
  for (size_t i = 0; i < 16; ++i) a->data()[i] ^= (*pan_field)[i];
  Result<SecretBytes> b = internal::AesEcb(key, *a, true);
  if (!b.ok()) return b.status();
  return Bytes(b->data(), b->data() + b->size());
}

Result<Bytes> TranslatePinBlock(ByteView in_key, PinBlockFormat in_format, ByteView pin_block,
                                std::string_view pan, ByteView out_key, PinBlockFormat out_format) {
  Result<ClearPin> pin = internal::DecryptPinBlock(in_format, in_key, pin_block, pan);
  if (!pin.ok()) return pin.status();
  return EncryptPinBlock(out_format, out_key, pin->digits(), pan);
}

Status VerifyPinPvv(ByteView pin_key, PinBlockFormat format, ByteView pin_block,
                    std::string_view pan, ByteView pvk, int pvki, std::string_view pvv) {
  if (pvv.size() != 4 || !IsDigits(pvv)) return Status::InvalidArgument("PVV must be 4 digits");
  Result<std::string> expected = PvvFromPinBlock(pin_key, format, pin_block, pan, pvk, pvki);
  if (!expected.ok()) return expected.status();
  if (!ConstantTimeEqual(StrView(*expected), StrView(pvv))) {
    return Status::PermissionDenied("PIN does not verify");
  }
  return Status::Ok();
}

Result<std::string> PvvFromPinBlock(ByteView pin_key, PinBlockFormat format, ByteView pin_block,
                                    std::string_view pan, ByteView pvk, int pvki) {
  Result<ClearPin> pin = internal::DecryptPinBlock(format, pin_key, pin_block, pan);
  if (!pin.ok()) return pin.status();
  return Pvv(pvk, pan, pvki, pin->digits());
}

Status VerifyPinIbm3624(ByteView pin_key, PinBlockFormat format, ByteView pin_block,
                        std::string_view pan, ByteView pvk, std::string_view decimalization_table,
                        std::string_view validation_data, std::string_view offset) {
  if (offset.size() < 4 || offset.size() > 12 || !IsDigits(offset)) {
    return Status::InvalidArgument("offset must be 4 to 12 digits");
  }
  Result<ClearPin> pin = internal::DecryptPinBlock(format, pin_key, pin_block, pan);
  if (!pin.ok()) return pin.status();
  if (pin->digits().size() != offset.size()) {
    return Status::PermissionDenied("PIN does not verify");
  }
  Result<std::string> expected =
      Ibm3624Offset(pvk, decimalization_table, validation_data, pin->digits());
  if (!expected.ok()) return expected.status();
  if (!ConstantTimeEqual(StrView(*expected), StrView(offset))) {
    return Status::PermissionDenied("PIN does not verify");
  }
  return Status::Ok();
}

}  // namespace narae::crypto
