// SIM-linked payment token: per-SIM key, canonical encoding, cryptogram and
// its pure verification (replay window, time skew).
#include <cstring>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"

namespace narae::crypto {

namespace {
constexpr std::string_view kSimLabel = "narae-sim";
constexpr size_t kFieldMax = 64;

// Luhn over all the digits (LuhnValid stops at 19, the PAN limit; an ICCID
// may have 20).
bool IccidLuhnValid(std::string_view digits) {
  return internal::LuhnSum(digits, /*double_rightmost=*/false) % 10 == 0;
}

void PutBe(uint64_t v, size_t size, Bytes& out) {
  for (size_t i = size; i-- > 0;) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
}  // namespace

Result<SecretBytes> DeriveSimKey(ByteView imk_sim, std::string_view iccid) {
  // ICCID (ITU-T E.118): 19 or 20 digits, the last one a Luhn check digit.
  if (iccid.size() < 19 || iccid.size() > 20 || !internal::IsDigits(iccid)) {
    return Status::InvalidArgument("ICCID must be 19 or 20 digits");
  }
  if (!IccidLuhnValid(iccid)) return Status::InvalidArgument("ICCID check digit is wrong");
  if (imk_sim.size() != 16 && imk_sim.size() != 24 && imk_sim.size() != 32) {
    return Status::InvalidArgument("KBKDF key must be an AES key");
  }
  // KbkdfCmacCounter(imk_sim, "narae-sim", iccid, 32) with the IMK-SIM's
  // CMAC context kept keyed by the thread (crypto/keycache.cpp): SP 800-108
  // counter mode, K(i) = CMAC(IMK, i BE4 | label | 00 | context | L BE4),
  // L = 256 bits, i = 1, 2. Tests check it equals the EVP_KDF "KBKDF" result.
  uint8_t input[4 + kSimLabel.size() + 1 + 20 + 4] = {0};
  size_t n = 4;
  std::memcpy(input + n, kSimLabel.data(), kSimLabel.size());
  n += kSimLabel.size() + 1;  // the 00 separator
  std::memcpy(input + n, iccid.data(), iccid.size());
  n += iccid.size();
  input[n + 2] = 0x01;  // L = 256 bits, big endian
  n += 4;
  SecretBytes out(32);
  for (uint8_t i = 1; i <= 2; ++i) {
    input[3] = i;
    NARAE_RETURN_IF_ERROR(internal::AesCmacInto(
        imk_sim, ByteView(input, n), out.data() + 16 * (i - 1), internal::KeyUse::kLongLived));
  }
  return out;
}

Result<Bytes> EncodeSimPayment(const SimPaymentFields& f) {
  if (f.version != 1) return Status::InvalidArgument("SIM payment version must be 1");
  if (f.token_id.empty() || f.token_id.size() > kFieldMax) {
    return Status::InvalidArgument("token id must be 1..64 bytes");
  }
  if (f.merchant_id.empty() || f.merchant_id.size() > kFieldMax) {
    return Status::InvalidArgument("merchant id must be 1..64 bytes");
  }
  if (f.unix_time_s < 0) return Status::InvalidArgument("time must not be negative");
  Bytes out;
  out.reserve(2 + f.token_id.size() + 8 + 8 + 2 + 1 + f.merchant_id.size() + 8);
  out.push_back(f.version);
  out.push_back(static_cast<uint8_t>(f.token_id.size()));
  out.insert(out.end(), f.token_id.begin(), f.token_id.end());
  PutBe(f.counter, 8, out);
  PutBe(f.amount_minor, 8, out);
  PutBe(f.currency, 2, out);
  out.push_back(static_cast<uint8_t>(f.merchant_id.size()));
  out.insert(out.end(), f.merchant_id.begin(), f.merchant_id.end());
  PutBe(static_cast<uint64_t>(f.unix_time_s), 8, out);
  return out;
}

Result<Bytes> SimCryptogram(ByteView sim_key, const SimPaymentFields& fields) {
  Result<Bytes> data = EncodeSimPayment(fields);
  if (!data.ok()) return data.status();
  // Per-SIM keys are derived per request: a one-time key for the cache.
  Result<Bytes> mac = internal::AesCmacWith(sim_key, *data, internal::KeyUse::kOneTime);
  if (!mac.ok()) return mac.status();
  mac->resize(8);
  return mac;
}

SimVerification VerifySimPayment(ByteView sim_key, uint64_t last_counter, int64_t now_unix_s,
                                 const SimVerifyOptions& options, const SimPaymentFields& fields,
                                 ByteView cryptogram) {
  SimVerification v{SimCheck::kMalformed, last_counter};
  if (cryptogram.size() != 8 || options.counter_window == 0 || options.time_skew_s_max < 0) {
    return v;
  }
  Result<Bytes> expected = SimCryptogram(sim_key, fields);
  if (!expected.ok()) return v;
  // The MAC is checked first so that an unauthenticated request learns
  // nothing about the counter state.
  if (!ConstantTimeEqual(*expected, cryptogram)) {
    v.check = SimCheck::kWrongCryptogram;
    return v;
  }
  if (fields.counter <= last_counter) {
    v.check = SimCheck::kCounterReplayed;
    return v;
  }
  if (fields.counter - last_counter > options.counter_window) {
    v.check = SimCheck::kCounterBeyondWindow;
    return v;
  }
  int64_t skew = fields.unix_time_s - now_unix_s;
  if (skew > options.time_skew_s_max || -skew > options.time_skew_s_max) {
    v.check = SimCheck::kTimeOutsideSkew;
    return v;
  }
  v.check = SimCheck::kAccepted;
  v.counter_high_water = fields.counter;
  return v;
}

const char* SimCheckName(SimCheck check) {
  switch (check) {
    case SimCheck::kAccepted:
      return "accepted";
    case SimCheck::kMalformed:
      return "malformed";
    case SimCheck::kWrongCryptogram:
      return "wrong_cryptogram";
    case SimCheck::kCounterReplayed:
      return "counter_replayed";
    case SimCheck::kCounterBeyondWindow:
      return "counter_beyond_window";
    case SimCheck::kTimeOutsideSkew:
      return "time_outside_skew";
  }
  return "unknown";
}

}  // namespace narae::crypto
