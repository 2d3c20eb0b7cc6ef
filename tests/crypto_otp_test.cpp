// HOTP, TOTP, OCRA known-answer tests and the payment-bound OCRA code.
#include <gtest/gtest.h>

#include <string>

#include "crypto/crypto.hpp"
#include "tests/crypto_test_util.hpp"

namespace narae::crypto {
namespace {

Bytes S(std::string_view s) { return Bytes(s.begin(), s.end()); }
const Bytes kSeed20 = S("12345678901234567890");
const Bytes kSeed32 = S("12345678901234567890123456789012");
const Bytes kSeed64 = S("1234567890123456789012345678901234567890123456789012345678901234");

// RFC 4226 Appendix D: secret "12345678901234567890", counters 0..9.
TEST(Hotp, Rfc4226AppendixD) {
  const char* expected[] = {"755224", "287082", "359152", "969429", "338314",
                            "254676", "287922", "162583", "399871", "520489"};
  for (uint64_t c = 0; c < 10; ++c) {
    Result<std::string> code = Hotp(kSeed20, c);
    ASSERT_OK(code);
    EXPECT_EQ(*code, expected[c]) << "counter " << c;
  }
  EXPECT_FALSE(Hotp(kSeed20, 0, 3).ok());
  EXPECT_FALSE(Hotp(kSeed20, 0, 11).ok());
  EXPECT_FALSE(Hotp({}, 0).ok());
}

// RFC 6238 Appendix B: 8 digits, step 30 s, SHA1/SHA256/SHA512 seeds.
TEST(Totp, Rfc6238AppendixB) {
  struct Case {
    int64_t t;
    const char* sha1;
    const char* sha256;
    const char* sha512;
  } cases[] = {{59, "94287082", "46119246", "90693936"},
               {1111111109, "07081804", "68084774", "25091201"},
               {1111111111, "14050471", "67062674", "99943326"},
               {1234567890, "89005924", "91819424", "93441116"},
               {2000000000, "69279037", "90698825", "38618901"},
               {20000000000, "65353130", "77737706", "47863826"}};
  for (const Case& c : cases) {
    Result<std::string> a = Totp(kSeed20, c.t, 8, HashAlg::kSha1);
    Result<std::string> b = Totp(kSeed32, c.t, 8, HashAlg::kSha256);
    Result<std::string> d = Totp(kSeed64, c.t, 8, HashAlg::kSha512);
    ASSERT_OK(a);
    ASSERT_OK(b);
    ASSERT_OK(d);
    EXPECT_EQ(*a, c.sha1) << c.t;
    EXPECT_EQ(*b, c.sha256) << c.t;
    EXPECT_EQ(*d, c.sha512) << c.t;
  }
  EXPECT_FALSE(Totp(kSeed20, -1).ok());
  EXPECT_FALSE(Totp(kSeed20, 10, 6, HashAlg::kSha1, 0).ok());
}

// RFC 6287 Appendix C.1, one-way challenge-response, OCRA-1:HOTP-SHA1-6:QN08.
TEST(Ocra, Rfc6287Sha1QN08) {
  const char* expected[] = {"237653", "243178", "653583", "740991", "608993",
                            "388898", "816933", "224598", "750600", "294470"};
  for (int i = 0; i < 10; ++i) {
    OcraInput in;
    in.question = std::string(8, static_cast<char>('0' + i));
    Result<std::string> code = Ocra("OCRA-1:HOTP-SHA1-6:QN08", kSeed20, in);
    ASSERT_OK(code);
    EXPECT_EQ(*code, expected[i]) << in.question;
  }
}

// RFC 6287 Appendix C.1, OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1, Q=12345678,
// PIN "1234" (SHA-1 7110EDA4...), counters 0..9.
TEST(Ocra, Rfc6287Sha256CounterPin) {
  const char* expected[] = {"65347737", "86775851", "78192410", "71565254", "10104329",
                            "65983500", "70069104", "91771096", "75011558", "08522129"};
  Result<Bytes> pin_hash = FromHex("7110EDA4D09E062AA5E4A390B0A572AC0D2C0220");
  ASSERT_OK(pin_hash);
  for (uint64_t c = 0; c < 10; ++c) {
    OcraInput in;
    in.counter = c;
    in.question = "12345678";
    in.pin_hash = *pin_hash;
    Result<std::string> code = Ocra("OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1", kSeed32, in);
    ASSERT_OK(code);
    EXPECT_EQ(*code, expected[c]) << c;
  }
}

// RFC 6287 Appendix C.1, OCRA-1:HOTP-SHA256-8:QN08-PSHA1.
TEST(Ocra, Rfc6287Sha256QuestionPin) {
  const char* expected[] = {"83238735", "01501458", "17957585", "86776967", "86807031"};
  Result<Bytes> pin_hash = FromHex("7110EDA4D09E062AA5E4A390B0A572AC0D2C0220");
  ASSERT_OK(pin_hash);
  for (int i = 0; i < 5; ++i) {
    OcraInput in;
    in.question = std::string(8, static_cast<char>('0' + i));
    in.pin_hash = *pin_hash;
    Result<std::string> code = Ocra("OCRA-1:HOTP-SHA256-8:QN08-PSHA1", kSeed32, in);
    ASSERT_OK(code);
    EXPECT_EQ(*code, expected[i]) << i;
  }
}

// RFC 6287 Appendix C.1, OCRA-1:HOTP-SHA512-8:C-QN08, counters 0..9 with
// questions 00000000..99999999.
TEST(Ocra, Rfc6287Sha512Counter) {
  const char* expected[] = {"07016083", "63947962", "70123924", "25341727", "33203315",
                            "34205738", "44343969", "51946085", "20403879", "31409299"};
  for (int i = 0; i < 10; ++i) {
    OcraInput in;
    in.counter = static_cast<uint64_t>(i);
    in.question = std::string(8, static_cast<char>('0' + i));
    Result<std::string> code = Ocra("OCRA-1:HOTP-SHA512-8:C-QN08", kSeed64, in);
    ASSERT_OK(code);
    EXPECT_EQ(*code, expected[i]) << i;
  }
}

TEST(Ocra, RejectsMalformedSuitesAndInputs) {
  OcraInput in;
  in.question = "12345678";
  EXPECT_FALSE(Ocra("OCRA-2:HOTP-SHA1-6:QN08", kSeed20, in).ok());
  EXPECT_FALSE(Ocra("OCRA-1:HOTP-MD5-6:QN08", kSeed20, in).ok());
  EXPECT_FALSE(Ocra("OCRA-1:HOTP-SHA1-6:C", kSeed20, in).ok());  // no question
  EXPECT_FALSE(Ocra("OCRA-1:HOTP-SHA1-6:QX08", kSeed20, in).ok());
  EXPECT_FALSE(Ocra("OCRA-1:HOTP-SHA1-6:QN08-Z", kSeed20, in).ok());
  EXPECT_FALSE(Ocra("OCRA-1:HOTP-SHA1-6:QN08-PSHA1", kSeed20, in).ok());  // PIN hash missing
  in.question = "1234567890";                                             // longer than QN08 allows
  EXPECT_FALSE(Ocra("OCRA-1:HOTP-SHA1-6:QN08", kSeed20, in).ok());
  in.question = "12a45678";
  EXPECT_FALSE(Ocra("OCRA-1:HOTP-SHA1-6:QN08", kSeed20, in).ok());
}

TEST(PaymentOtp, BoundToAmountMerchantAndCounter) {
  Result<std::string> code = PaymentOtp(kSeed32, 5, 125000, 408, "okryu-noodles");
  ASSERT_OK(code);
  EXPECT_EQ(code->size(), 8u);
  Result<uint64_t> ok = VerifyPaymentOtp(kSeed32, 3, 10, *code, 125000, 408, "okryu-noodles");
  ASSERT_OK(ok);
  EXPECT_EQ(*ok, 5u);
  // Wrong amount, wrong merchant, wrong currency: rejected.
  EXPECT_EQ(VerifyPaymentOtp(kSeed32, 3, 10, *code, 125001, 408, "okryu-noodles").status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyPaymentOtp(kSeed32, 3, 10, *code, 125000, 408, "okryu-socks").status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyPaymentOtp(kSeed32, 3, 10, *code, 125000, 840, "okryu-noodles").status().code(),
            StatusCode::kPermissionDenied);
  // Replayed (counter 5 already used) and beyond the window.
  EXPECT_FALSE(VerifyPaymentOtp(kSeed32, 5, 10, *code, 125000, 408, "okryu-noodles").ok());
  EXPECT_FALSE(VerifyPaymentOtp(kSeed32, 0, 4, *code, 125000, 408, "okryu-noodles").ok());
  EXPECT_EQ(VerifyPaymentOtp(kSeed32, 0, 10, "1234", 1, 408, "m").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyPaymentOtp(kSeed32, 0, 0, *code, 1, 408, "m").status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace narae::crypto
