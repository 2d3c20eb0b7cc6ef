// EMV issuer functions: card key derivation (option A), session keys,
// ARQC (ISO 9797-1 MAC algorithm 3), ARPC method 1, an AES variant, ATC rule.
#include <cstring>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"

namespace narae::crypto {

namespace {

void SetOddParity(uint8_t* key, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    uint8_t b = key[i] & 0xFE;
    int ones = __builtin_popcount(b);
    key[i] = static_cast<uint8_t>(b | ((ones % 2 == 0) ? 1 : 0));
  }
}

// Y: the 16 rightmost digits of PAN || PSN, as 8 bytes.
Result<Bytes> CardDiversifier(std::string_view pan, std::string_view psn) {
  if (pan.size() < 12 || pan.size() > 19 || !internal::IsDigits(pan)) {
    return Status::InvalidArgument("PAN must be 12 to 19 digits");
  }
  if (psn.size() != 2 || !internal::IsDigits(psn)) {
    return Status::InvalidArgument("PAN sequence number must be 2 digits");
  }
  std::string digits = std::string(pan) + std::string(psn);
  if (digits.size() < 16) digits.insert(0, 16 - digits.size(), '0');
  return FromHex(std::string_view(digits).substr(digits.size() - 16));
}

// TDES: 3DES(left_in) || 3DES(right_in) with odd parity, both blocks in one
// pass. AES: AES(left_in) (16 bytes).
Result<SecretBytes> DeriveHalves(ByteView key, ByteView left_in, ByteView right_in, bool aes,
                                 internal::KeyUse use) {
  if (aes) return internal::AesEcb(key, left_in, true, use);
  if (left_in.size() != 8 || right_in.size() != 8) {
    return Status::InvalidArgument("derivation data must be two 8-byte blocks");
  }
  SecretBytes out(16);
  std::memcpy(out.data(), left_in.data(), 8);
  std::memcpy(out.data() + 8, right_in.data(), 8);
  NARAE_RETURN_IF_ERROR(
      internal::TdesBlocks(key, internal::CipherMode::kEcb, true, out, out.data(), use));
  SetOddParity(out.data(), out.size());
  return out;
}

}  // namespace

Result<SecretBytes> EmvCardKeyOptionA(ByteView imk, std::string_view pan, std::string_view psn) {
  if (imk.size() != 16) return Status::InvalidArgument("IMK-AC must be a 16-byte TDES key");
  Result<Bytes> y = CardDiversifier(pan, psn);
  if (!y.ok()) return y.status();
  Bytes y_inv = *y;
  for (uint8_t& b : y_inv) b ^= 0xFF;
  return DeriveHalves(imk, *y, y_inv, false, internal::KeyUse::kLongLived);
}

Result<SecretBytes> EmvCommonSessionKey(ByteView card_key, ByteView r) {
  if (card_key.size() != 16) return Status::InvalidArgument("card key must be 16 bytes");
  if (r.size() != 8) return Status::InvalidArgument("diversification value R must be 8 bytes");
  Bytes left(r.begin(), r.end());
  Bytes right(r.begin(), r.end());
  left[2] = 0xF0;
  right[2] = 0x0F;
  // Card keys are per card: a one-time key for the cache.
  return DeriveHalves(card_key, left, right, false, internal::KeyUse::kOneTime);
}

Result<SecretBytes> EmvSessionKey(ByteView card_key, uint16_t atc) {
  uint8_t r[8] = {
      static_cast<uint8_t>(atc >> 8), static_cast<uint8_t>(atc & 0xFF), 0, 0, 0, 0, 0, 0};
  return EmvCommonSessionKey(card_key, ByteView(r, 8));
}

Result<Bytes> EmvArqc(ByteView session_key, ByteView transaction_data) {
  if (transaction_data.empty() || transaction_data.size() > 1024) {
    return Status::InvalidArgument("transaction data must be 1..1024 bytes");
  }
  // A session key serves one transaction.
  return internal::RetailMacWith(session_key, transaction_data, MacPadding::kMethod2,
                                 internal::KeyUse::kOneTime);
}

Result<Bytes> EmvArpcMethod1(ByteView card_key, ByteView arqc, ByteView arc) {
  if (arqc.size() != 8) return Status::InvalidArgument("ARQC must be 8 bytes");
  if (arc.size() != 2) return Status::InvalidArgument("ARC must be 2 bytes");
  uint8_t block[8];
  std::memcpy(block, arqc.data(), 8);
  block[0] ^= arc[0];
  block[1] ^= arc[1];
  Result<SecretBytes> enc =
      internal::TdesEcb(card_key, ByteView(block, 8), true, internal::KeyUse::kOneTime);
  if (!enc.ok()) return enc.status();
  return Bytes(enc->data(), enc->data() + 8);
}

Status EmvVerifyArqc(ByteView imk, std::string_view pan, std::string_view psn, uint16_t atc,
                     ByteView transaction_data, ByteView arqc) {
  if (arqc.size() != 8) return Status::InvalidArgument("ARQC must be 8 bytes");
  Result<SecretBytes> card_key = EmvCardKeyOptionA(imk, pan, psn);
  if (!card_key.ok()) return card_key.status();
  Result<SecretBytes> session = EmvSessionKey(*card_key, atc);
  if (!session.ok()) return session.status();
  Result<Bytes> expected = EmvArqc(*session, transaction_data);
  if (!expected.ok()) return expected.status();
  if (!ConstantTimeEqual(*expected, arqc)) return Status::PermissionDenied("ARQC does not verify");
  return Status::Ok();
}

Result<SecretBytes> EmvAesCardKey(ByteView imk, std::string_view pan, std::string_view psn) {
  if (imk.size() != 16 && imk.size() != 24 && imk.size() != 32) {
    return Status::InvalidArgument("AES IMK must be 16, 24 or 32 bytes");
  }
  Result<Bytes> y = CardDiversifier(pan, psn);
  if (!y.ok()) return y.status();
  Bytes block = *y;
  for (uint8_t b : *y) block.push_back(static_cast<uint8_t>(b ^ 0xFF));
  return DeriveHalves(imk, block, {}, true, internal::KeyUse::kLongLived);
}

Result<Bytes> EmvAesArqc(ByteView card_key, uint16_t atc, ByteView transaction_data) {
  if (card_key.size() != 16) return Status::InvalidArgument("AES card key must be 16 bytes");
  if (transaction_data.empty() || transaction_data.size() > 1024) {
    return Status::InvalidArgument("transaction data must be 1..1024 bytes");
  }
  uint8_t r[16] = {static_cast<uint8_t>(atc >> 8), static_cast<uint8_t>(atc & 0xFF), 0xF0};
  Result<SecretBytes> session =
      internal::AesEcb(card_key, ByteView(r, 16), true, internal::KeyUse::kOneTime);
  if (!session.ok()) return session.status();
  Result<Bytes> mac = internal::AesCmacWith(*session, transaction_data, internal::KeyUse::kOneTime);
  if (!mac.ok()) return mac.status();
  mac->resize(8);
  return mac;
}

AtcDecision CheckAtc(std::optional<uint16_t> last_atc, uint16_t new_atc, uint16_t max_jump) {
  if (!last_atc.has_value()) {
    return new_atc > max_jump ? AtcDecision::kAcceptFlagJump : AtcDecision::kAccept;
  }
  if (new_atc <= *last_atc) return AtcDecision::kReplay;
  uint32_t jump = static_cast<uint32_t>(new_atc) - *last_atc;
  return jump > max_jump ? AtcDecision::kAcceptFlagJump : AtcDecision::kAccept;
}

}  // namespace narae::crypto
