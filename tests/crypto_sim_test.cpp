// SIM-linked payment token and merchant request signing.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <memory>
#include <string>

#include "crypto/crypto.hpp"
#include "tests/crypto_test_util.hpp"

namespace narae::crypto {
namespace {

const Bytes kImkSim = H("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
constexpr char kIccid[] = "8985001234567890122";  // 19 digits, Luhn valid
constexpr int64_t kNow = 1767225600;              // 2026-01-01T00:00:00Z

SimPaymentFields Fields(uint64_t counter) {
  SimPaymentFields f;
  f.token_id = "tok-7";
  f.counter = counter;
  f.amount_minor = 125000;
  f.currency = 408;
  f.merchant_id = "okryu-noodles";
  f.unix_time_s = kNow;
  return f;
}

SecretBytes SimKey() {
  Result<SecretBytes> k = DeriveSimKey(kImkSim, kIccid);
  EXPECT_TRUE(k.ok());
  return k.ok() ? *k : SecretBytes();
}

TEST(SimKey, DerivedFromIccidWithKbkdf) {
  ASSERT_TRUE(LuhnValid(kIccid));
  SecretBytes key = SimKey();
  EXPECT_EQ(key.size(), 32u);
  // It is exactly SP 800-108 counter KDF with label "narae-sim", context ICCID.
  std::string label = "narae-sim";
  std::string iccid = kIccid;
  Result<SecretBytes> direct = KbkdfCmacCounter(kImkSim, Bytes(label.begin(), label.end()),
                                                Bytes(iccid.begin(), iccid.end()), 32);
  ASSERT_OK(direct);
  EXPECT_TRUE(ConstantTimeEqual(key, *direct));
  Result<SecretBytes> other = DeriveSimKey(kImkSim, "8985001234567890130");
  ASSERT_OK(other);
  EXPECT_FALSE(ConstantTimeEqual(key, *other));
  EXPECT_FALSE(DeriveSimKey(kImkSim, "8985001234567890121").ok());  // bad check digit
  // 20-digit ICCIDs (ITU-T E.118 allows 19 or 20): a valid one is derived
  // like any other, one with a wrong check digit is refused.
  const std::string iccid20 = "89014103211118510720";
  Result<SecretBytes> k20 = DeriveSimKey(kImkSim, iccid20);
  ASSERT_OK(k20);
  Result<SecretBytes> direct20 = KbkdfCmacCounter(kImkSim, Bytes(label.begin(), label.end()),
                                                  Bytes(iccid20.begin(), iccid20.end()), 32);
  ASSERT_OK(direct20);
  EXPECT_TRUE(ConstantTimeEqual(*k20, *direct20));
  EXPECT_FALSE(DeriveSimKey(kImkSim, "89014103211118510721").ok());
  EXPECT_FALSE(DeriveSimKey(kImkSim, "890141032111185107201").ok());  // 21 digits
  EXPECT_FALSE(DeriveSimKey(kImkSim, "85001234567").ok());            // an MSISDN, not an ICCID
  EXPECT_FALSE(DeriveSimKey(Bytes(7, 1), kIccid).ok());
}

TEST(SimPayment, CanonicalEncodingLayout) {
  Result<Bytes> enc = EncodeSimPayment(Fields(0x0102));
  ASSERT_OK(enc);
  // version | len "tok-7" | counter | amount 125000 | 408 | len merchant | time
  EXPECT_EQ(ToHex(*enc),
            "0105" + ToHex(Bytes{'t', 'o', 'k', '-', '7'}) + "0000000000000102" +
                "000000000001E848" + "0198" + "0D" +
                ToHex(Bytes{'o', 'k', 'r', 'y', 'u', '-', 'n', 'o', 'o', 'd', 'l', 'e', 's'}) +
                "000000006955B900");
  SimPaymentFields bad = Fields(1);
  bad.version = 2;
  EXPECT_FALSE(EncodeSimPayment(bad).ok());
  bad = Fields(1);
  bad.merchant_id = "";
  EXPECT_FALSE(EncodeSimPayment(bad).ok());
  bad = Fields(1);
  bad.token_id = std::string(65, 'x');
  EXPECT_FALSE(EncodeSimPayment(bad).ok());
}

TEST(SimPayment, AcceptsAndReturnsNewHighWater) {
  SecretBytes key = SimKey();
  Result<Bytes> c = SimCryptogram(key, Fields(11));
  ASSERT_OK(c);
  SimVerification v = VerifySimPayment(key, 10, kNow + 5, {}, Fields(11), *c);
  EXPECT_EQ(v.check, SimCheck::kAccepted);
  EXPECT_EQ(v.counter_high_water, 11u);
}

TEST(SimPayment, ReplayedCounterRejected) {
  SecretBytes key = SimKey();
  Result<Bytes> c = SimCryptogram(key, Fields(11));
  ASSERT_OK(c);
  SimVerification v = VerifySimPayment(key, 11, kNow, {}, Fields(11), *c);
  EXPECT_EQ(v.check, SimCheck::kCounterReplayed);
  EXPECT_EQ(v.counter_high_water, 11u);
  EXPECT_EQ(VerifySimPayment(key, 12, kNow, {}, Fields(11), *c).check, SimCheck::kCounterReplayed);
}

TEST(SimPayment, CounterBeyondWindowRejected) {
  SecretBytes key = SimKey();
  SimVerifyOptions opt;
  opt.counter_window = 5;
  Result<Bytes> c15 = SimCryptogram(key, Fields(15));
  Result<Bytes> c16 = SimCryptogram(key, Fields(16));
  ASSERT_OK(c15);
  ASSERT_OK(c16);
  EXPECT_EQ(VerifySimPayment(key, 10, kNow, opt, Fields(15), *c15).check, SimCheck::kAccepted);
  SimVerification v = VerifySimPayment(key, 10, kNow, opt, Fields(16), *c16);
  EXPECT_EQ(v.check, SimCheck::kCounterBeyondWindow);
  EXPECT_EQ(v.counter_high_water, 10u);
}

TEST(SimPayment, WrongAmountMerchantCurrencyOrKeyRejected) {
  SecretBytes key = SimKey();
  Result<Bytes> c = SimCryptogram(key, Fields(11));
  ASSERT_OK(c);
  SimPaymentFields f = Fields(11);
  f.amount_minor += 1;
  EXPECT_EQ(VerifySimPayment(key, 10, kNow, {}, f, *c).check, SimCheck::kWrongCryptogram);
  f = Fields(11);
  f.merchant_id = "okryu-socks";
  EXPECT_EQ(VerifySimPayment(key, 10, kNow, {}, f, *c).check, SimCheck::kWrongCryptogram);
  f = Fields(11);
  f.currency = 840;
  EXPECT_EQ(VerifySimPayment(key, 10, kNow, {}, f, *c).check, SimCheck::kWrongCryptogram);
  // A cloned card with another SIM's key (a SIM swap keeps the ICCID-bound
  // key on the old SIM) cannot produce the cryptogram.
  Result<SecretBytes> other = DeriveSimKey(kImkSim, "8985001234567890130");
  ASSERT_OK(other);
  EXPECT_EQ(VerifySimPayment(*other, 10, kNow, {}, Fields(11), *c).check,
            SimCheck::kWrongCryptogram);
  Bytes flipped = *c;
  flipped[0] ^= 0x80;
  EXPECT_EQ(VerifySimPayment(key, 10, kNow, {}, Fields(11), flipped).check,
            SimCheck::kWrongCryptogram);
  EXPECT_EQ(VerifySimPayment(key, 10, kNow, {}, Fields(11), Bytes(4, 0)).check,
            SimCheck::kMalformed);
}

TEST(SimPayment, TimeOutsideSkewRejected) {
  SecretBytes key = SimKey();
  Result<Bytes> c = SimCryptogram(key, Fields(11));
  ASSERT_OK(c);
  SimVerifyOptions opt;
  opt.time_skew_s_max = 60;
  EXPECT_EQ(VerifySimPayment(key, 10, kNow + 60, opt, Fields(11), *c).check, SimCheck::kAccepted);
  EXPECT_EQ(VerifySimPayment(key, 10, kNow + 61, opt, Fields(11), *c).check,
            SimCheck::kTimeOutsideSkew);
  EXPECT_EQ(VerifySimPayment(key, 10, kNow - 61, opt, Fields(11), *c).check,
            SimCheck::kTimeOutsideSkew);
  EXPECT_STREQ(SimCheckName(SimCheck::kTimeOutsideSkew), "time_outside_skew");
}

// ---- Merchant request signing -------------------------------------------------

const Bytes kSecret = H("6D65726368616E742D7365637265742D30303031");  // 20 bytes

std::string Sign(int64_t ts, const std::string& nonce, const std::string& body) {
  Result<std::string> s = SignMerchantRequest(kSecret, "POST", "/v1/payments", ts, nonce, body);
  EXPECT_TRUE(s.ok());
  return s.ok() ? *s : "";
}

TEST(MerchantSigning, CanonicalStringAndHmac) {
  Result<std::string> canon =
      MerchantCanonicalString("POST", "/v1/payments", 1700000000, "nonce-0001", "abc");
  ASSERT_OK(canon);
  // SHA-256("abc") from FIPS 180-2, lower case.
  EXPECT_EQ(*canon,
            "POST\n/v1/payments\n1700000000\nnonce-0001\n"
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Result<Bytes> mac = Hmac(HashAlg::kSha256, kSecret, Bytes(canon->begin(), canon->end()));
  ASSERT_OK(mac);
  std::string expected = ToHex(*mac);
  for (char& ch : expected) ch = static_cast<char>(std::tolower(ch));
  EXPECT_EQ(Sign(1700000000, "nonce-0001", "abc"), expected);
  EXPECT_FALSE(MerchantCanonicalString("POST", "v1", 1, "nonce-0001", "").ok());
  EXPECT_FALSE(MerchantCanonicalString("POST", "/v1", 1, "short", "").ok());
  EXPECT_FALSE(SignMerchantRequest(Bytes(8, 1), "POST", "/v1", 1, "nonce-0001", "").ok());
}

TEST(MerchantSigning, VerifierRejectsBadSignatureSkewAndReusedNonce) {
  MerchantRequestVerifier verifier({/*skew_s_max=*/300, /*nonce_cache_max=*/100});
  const int64_t ts = 1700000000;
  std::string sig = Sign(ts, "nonce-0001", "{\"amount\":1}");
  EXPECT_TRUE(
      verifier
          .Verify(kSecret, "POST", "/v1/payments", ts, "nonce-0001", "{\"amount\":1}", sig, ts + 10)
          .ok());
  // Same nonce again: replay.
  EXPECT_EQ(
      verifier
          .Verify(kSecret, "POST", "/v1/payments", ts, "nonce-0001", "{\"amount\":1}", sig, ts + 11)
          .code(),
      StatusCode::kAlreadyExists);
  // Tampered body: bad signature (and the nonce is not consumed).
  std::string sig2 = Sign(ts, "nonce-0002", "{\"amount\":1}");
  EXPECT_EQ(
      verifier.Verify(kSecret, "POST", "/v1/payments", ts, "nonce-0002", "{\"amount\":9}", sig2, ts)
          .code(),
      StatusCode::kPermissionDenied);
  EXPECT_TRUE(
      verifier.Verify(kSecret, "POST", "/v1/payments", ts, "nonce-0002", "{\"amount\":1}", sig2, ts)
          .ok());
  // Skewed timestamp.
  std::string sig3 = Sign(ts, "nonce-0003", "");
  EXPECT_EQ(
      verifier.Verify(kSecret, "POST", "/v1/payments", ts, "nonce-0003", "", sig3, ts + 301).code(),
      StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      verifier.Verify(kSecret, "POST", "/v1/payments", ts, "nonce-0003", "", sig3, ts - 301).code(),
      StatusCode::kFailedPrecondition);
  // Malformed signature.
  EXPECT_EQ(
      verifier.Verify(kSecret, "POST", "/v1/payments", ts, "nonce-0003", "", "abcd", ts).code(),
      StatusCode::kInvalidArgument);
  std::string upper = sig3;
  upper[0] = 'g';
  EXPECT_EQ(
      verifier.Verify(kSecret, "POST", "/v1/payments", ts, "nonce-0003", "", upper, ts).code(),
      StatusCode::kInvalidArgument);
}

// The verifier keys its HMAC once and keeps the context: another secret
// (a rotated key) must replace it, never verify with the old one.
TEST(MerchantSigning, VerifierFollowsTheSecretItIsGiven) {
  MerchantRequestVerifier verifier({/*skew_s_max=*/300, /*nonce_cache_max=*/100});
  const int64_t ts = 1700000000;
  const Bytes other(32, 0x5a);
  Result<std::string> other_sig =
      SignMerchantRequest(other, "POST", "/v1/payments", ts, "nonce-1001", "{}");
  ASSERT_TRUE(other_sig.ok());
  const std::string sig = Sign(ts, "nonce-1001", "{}");
  EXPECT_TRUE(verifier
                  .Verify(kSecret, "POST", "/v1/payments", ts, "nonce-1000", "{}",
                          Sign(ts, "nonce-1000", "{}"), ts)
                  .ok());
  EXPECT_EQ(verifier.Verify(other, "POST", "/v1/payments", ts, "nonce-1001", "{}", sig, ts).code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(
      verifier.Verify(other, "POST", "/v1/payments", ts, "nonce-1001", "{}", *other_sig, ts).ok());
  EXPECT_EQ(
      verifier
          .Verify(kSecret, "POST", "/v1/payments", ts, "nonce-1002", "{}",
                  *SignMerchantRequest(other, "POST", "/v1/payments", ts, "nonce-1002", "{}"), ts)
          .code(),
      StatusCode::kPermissionDenied);
  EXPECT_TRUE(verifier
                  .Verify(kSecret, "POST", "/v1/payments", ts, "nonce-1002", "{}",
                          Sign(ts, "nonce-1002", "{}"), ts)
                  .ok());
  EXPECT_EQ(
      verifier.Verify(Bytes(8, 1), "POST", "/v1/payments", ts, "nonce-1003", "{}", sig, ts).code(),
      StatusCode::kInvalidArgument);
}

// The signer and the verifier key HMAC-SHA256 once (the SHA-256 states after
// the key's pads) and feed the canonical string in pieces: they must give
// the one-shot EVP HMAC's answer for keys shorter than, equal to and longer
// than SHA-256's 64-byte block (a longer key is hashed first), for any
// timestamp's digits, any path length, and signatures in either case.
TEST(MerchantSigning, KeyedStatesMatchTheOneShotHmacForEveryKeyLength) {
  const std::string long_path = "/" + std::string(2047, 'p');
  for (size_t key_bytes : {16u, 31u, 55u, 63u, 64u, 65u, 100u, 128u, 200u}) {
    SCOPED_TRACE(key_bytes);
    Bytes secret(key_bytes);
    for (size_t i = 0; i < key_bytes; ++i) secret[i] = static_cast<uint8_t>(i * 37 + key_bytes);
    Result<std::unique_ptr<MerchantRequestSigner>> signer = MerchantRequestSigner::Create(secret);
    ASSERT_OK(signer);
    MerchantRequestVerifier verifier({/*skew_s_max=*/300, /*nonce_cache_max=*/100});
    int n = 0;
    for (int64_t ts : {int64_t{0}, int64_t{7}, int64_t{1700000000}, int64_t{999999999999}}) {
      for (const std::string& path : {std::string("/v1/payments"), long_path}) {
        const std::string nonce = "nonce-" + std::to_string(key_bytes) + "-" + std::to_string(n++);
        const std::string body = "{\"amount\":" + std::to_string(ts) + "}";
        Result<std::string> canonical = MerchantCanonicalString("POST", path, ts, nonce, body);
        ASSERT_OK(canonical);
        Result<Bytes> mac =
            Hmac(HashAlg::kSha256, secret, Bytes(canonical->begin(), canonical->end()));
        ASSERT_OK(mac);
        std::string expected = ToHex(*mac);
        for (char& ch : expected) ch = static_cast<char>(std::tolower(ch));
        Result<std::string> one_shot = SignMerchantRequest(secret, "POST", path, ts, nonce, body);
        ASSERT_OK(one_shot);
        EXPECT_EQ(*one_shot, expected);
        Result<std::string> keyed = (*signer)->Sign("POST", path, ts, nonce, body);
        ASSERT_OK(keyed);
        EXPECT_EQ(*keyed, expected);
        // A flipped bit anywhere in the signature fails, and consumes no nonce.
        std::string bad = expected;
        bad[static_cast<size_t>(n) % 64] = bad[static_cast<size_t>(n) % 64] == '0' ? '1' : '0';
        EXPECT_EQ(verifier.Verify(secret, "POST", path, ts, nonce, body, bad, ts).code(),
                  StatusCode::kPermissionDenied);
        // Upper-case hex verifies as lower-case does (FromHex reads both).
        std::string upper = expected;
        for (char& ch : upper) ch = static_cast<char>(std::toupper(ch));
        EXPECT_TRUE(verifier.Verify(secret, "POST", path, ts, nonce, body, upper, ts).ok());
      }
    }
  }
  // Checks of the parts come before the MAC: the one-shot's errors.
  Result<std::unique_ptr<MerchantRequestSigner>> signer = MerchantRequestSigner::Create(kSecret);
  ASSERT_OK(signer);
  EXPECT_EQ((*signer)->Sign("POST", "v1", 1, "nonce-0001", "").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*signer)->Sign("POST", "/v1", -1, "nonce-0001", "").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(
      (*signer)->Sign("POST", "/" + std::string(2048, 'p'), 1, "nonce-0001", "").status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ((*signer)->Sign("POST", "/v1", 1, std::string(129, 'n'), "").status().code(),
            StatusCode::kInvalidArgument);
  MerchantRequestVerifier verifier({/*skew_s_max=*/300, /*nonce_cache_max=*/100});
  const std::string sig = Sign(1700000000, "nonce-0001", "");
  EXPECT_EQ(verifier
                .Verify(kSecret, "POST", "/v1/payments", 1700000000, std::string(129, 'n'), "", sig,
                        1700000000)
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(verifier.nonce_count(), 0u);
}

TEST(MerchantSigning, NonceCacheIsBoundedAndExpires) {
  MerchantRequestVerifier verifier({/*skew_s_max=*/10, /*nonce_cache_max=*/3});
  const int64_t ts = 1700000000;
  for (int i = 0; i < 3; ++i) {
    std::string nonce = "nonce-000" + std::to_string(i);
    ASSERT_TRUE(
        verifier.Verify(kSecret, "POST", "/v1/payments", ts, nonce, "", Sign(ts, nonce, ""), ts)
            .ok());
  }
  EXPECT_EQ(verifier.nonce_count(), 3u);
  EXPECT_EQ(verifier
                .Verify(kSecret, "POST", "/v1/payments", ts, "nonce-0009", "",
                        Sign(ts, "nonce-0009", ""), ts)
                .code(),
            StatusCode::kUnavailable);
  // A full cache still tells a reused nonce from a new one, and keeps no
  // refused nonce.
  EXPECT_EQ(verifier
                .Verify(kSecret, "POST", "/v1/payments", ts, "nonce-0001", "",
                        Sign(ts, "nonce-0001", ""), ts)
                .code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(verifier.nonce_count(), 3u);
  // After the window the old nonces are evicted and room is made.
  const int64_t later = ts + 30;
  EXPECT_TRUE(verifier
                  .Verify(kSecret, "POST", "/v1/payments", later, "nonce-0009", "",
                          Sign(later, "nonce-0009", ""), later)
                  .ok());
  EXPECT_EQ(verifier.nonce_count(), 1u);
}

// The signature's 64 hex digits are read through a table: any byte that is
// not a hex digit, at any position, is refused (InvalidArgument, before
// the MAC), and both cases of each digit are read alike.
TEST(MerchantSigning, SignatureHexIsReadDigitByDigit) {
  MerchantRequestVerifier verifier({/*skew_s_max=*/300, /*nonce_cache_max=*/100000});
  const int64_t ts = 1700000000;
  const std::string good = Sign(ts, "nonce-hex-0", "");
  int n = 0;
  for (size_t at = 0; at < good.size(); ++at) {
    for (int b : {0x00, int{'/'}, int{':'}, int{'@'}, int{'G'}, int{'`'}, int{'g'}, 0x7f, 0x80,
                  0xff, int{'0'} + 0x80}) {
      std::string bad = good;
      bad[at] = static_cast<char>(b);
      const std::string nonce = "nonce-hex-" + std::to_string(++n);
      EXPECT_EQ(verifier.Verify(kSecret, "POST", "/v1/payments", ts, nonce, "", bad, ts).code(),
                StatusCode::kInvalidArgument)
          << at << " " << b;
    }
  }
  // An upper-case letter at each position verifies as its lower case.
  for (size_t at = 0; at < good.size(); ++at) {
    const std::string nonce = "nonce-hex-" + std::to_string(++n);
    std::string mixed = Sign(ts, nonce, "");
    if (mixed[at] < 'a') continue;  // a digit here
    mixed[at] = static_cast<char>(mixed[at] - 32);
    EXPECT_TRUE(verifier.Verify(kSecret, "POST", "/v1/payments", ts, nonce, "", mixed, ts).ok())
        << at;
  }
}

// Nonces are evicted by their own expiry (the later of now and their
// timestamp, plus the skew), not in the order they came: a nonce with a
// future timestamp stays after one that came later with an older one left.
TEST(MerchantSigning, NoncesExpireInExpiryOrderNotArrivalOrder) {
  MerchantRequestVerifier verifier({/*skew_s_max=*/10, /*nonce_cache_max=*/4});
  auto verify = [&](int64_t ts, const std::string& nonce, int64_t now) {
    return verifier.Verify(kSecret, "POST", "/v1/payments", ts, nonce, "", Sign(ts, nonce, ""), now)
        .code();
  };
  const int64_t now = 1700000000;
  ASSERT_EQ(verify(now + 9, "nonce-late", now), StatusCode::kOk);    // until now + 20
  ASSERT_EQ(verify(now - 9, "nonce-early", now), StatusCode::kOk);   // until now + 11
  ASSERT_EQ(verify(now, "nonce-middle", now + 5), StatusCode::kOk);  // until now + 16
  EXPECT_EQ(verifier.nonce_count(), 3u);
  EXPECT_EQ(verify(now + 10, "nonce-early", now + 10), StatusCode::kAlreadyExists);
  EXPECT_EQ(verifier.nonce_count(), 3u);
  // At now + 11 only the early one has gone: it may be used again.
  EXPECT_EQ(verify(now + 11, "nonce-early", now + 11), StatusCode::kOk);  // until now + 22
  EXPECT_EQ(verify(now + 11, "nonce-late", now + 11), StatusCode::kAlreadyExists);
  EXPECT_EQ(verify(now + 11, "nonce-middle", now + 11), StatusCode::kAlreadyExists);
  EXPECT_EQ(verifier.nonce_count(), 3u);
  // A full cache (4) refuses a new nonce and keeps it out; expiry makes room.
  ASSERT_EQ(verify(now + 12, "nonce-fourth", now + 12), StatusCode::kOk);  // until now + 23
  EXPECT_EQ(verify(now + 12, "nonce-fifth", now + 12), StatusCode::kUnavailable);
  EXPECT_EQ(verifier.nonce_count(), 4u);
  EXPECT_EQ(verify(now + 16, "nonce-fifth", now + 16), StatusCode::kOk);  // middle went
  EXPECT_EQ(verifier.nonce_count(), 4u);  // late, early, fourth, fifth
  EXPECT_EQ(verify(now + 16, "nonce-middle", now + 16), StatusCode::kUnavailable);
  EXPECT_EQ(verify(now + 20, "nonce-middle", now + 20), StatusCode::kOk);  // late went
  // Everything goes once the last expiry has passed.
  EXPECT_EQ(verify(now + 40, "nonce-last", now + 40), StatusCode::kOk);
  EXPECT_EQ(verifier.nonce_count(), 1u);
}

// Each accepted nonce costs the same however many are remembered: the
// expiry heap's room grows geometrically. (It was reserved one entry at a
// time, so every request copied the whole heap: 200,000 nonces copy ~320 GB
// and take minutes; now about a second in Release.) The bound is loose
// (the machine may be shared) and checked inside the loop, so the old
// behaviour fails in seconds instead of running for minutes.
TEST(MerchantSigning, ManyNoncesEachInAmortizedConstantTime) {
  constexpr int kNonces = 200000;
  MerchantRequestVerifier verifier({/*skew_s_max=*/300, /*nonce_cache_max=*/250000});
  const int64_t now = 1700000000;
  const Bytes digest = H("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855");  // ""
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kNonces; ++i) {
    const std::string nonce = "nonce-" + std::to_string(1000000 + i);
    const std::string sig = Sign(now, nonce, "");
    ASSERT_TRUE(
        verifier.VerifyBodyDigest(kSecret, "POST", "/v1/payments", now, nonce, digest, sig, now)
            .ok())
        << i;
    if (i % 1024 == 0) {
      ASSERT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30)) << i;
    }
  }
  EXPECT_EQ(verifier.nonce_count(), static_cast<size_t>(kNonces));
  // Still refused while remembered, all forgotten once expired.
  const std::string again = "nonce-" + std::to_string(1000000 + kNonces / 2);
  EXPECT_EQ(verifier
                .VerifyBodyDigest(kSecret, "POST", "/v1/payments", now, again, digest,
                                  Sign(now, again, ""), now)
                .code(),
            StatusCode::kAlreadyExists);
  const int64_t later = now + 302;
  EXPECT_EQ(verifier
                .VerifyBodyDigest(kSecret, "POST", "/v1/payments", later, again, digest,
                                  Sign(later, again, ""), later)
                .code(),
            StatusCode::kOk);
  EXPECT_EQ(verifier.nonce_count(), 1u);
}

}  // namespace
}  // namespace narae::crypto
