// Card functions: PAN/Luhn, CVV, PVV, IBM 3624, PIN blocks, translation.
#include <gtest/gtest.h>

#include <string>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"
#include "tests/crypto_test_util.hpp"

namespace narae::crypto {
namespace {

const Bytes kTestKey = H("0123456789ABCDEFFEDCBA9876543210");  // the usual test CVK/PVK

TEST(Pan, LuhnBuildAndMask) {
  EXPECT_TRUE(LuhnValid("79927398713"));  // Wikipedia "Luhn algorithm" example
  EXPECT_TRUE(LuhnValid("4111111111111111"));
  EXPECT_FALSE(LuhnValid("4111111111111112"));
  EXPECT_FALSE(LuhnValid("41111a1111111111"));
  Result<std::string> pan = BuildPan("411111", "111111111");
  ASSERT_OK(pan);
  EXPECT_EQ(*pan, "4111111111111111");
  EXPECT_FALSE(BuildPan("41111", "1111111111").ok());
  EXPECT_FALSE(BuildPan("411111", "11").ok());
  EXPECT_FALSE(BuildPan("411111", "1111x1111").ok());
  EXPECT_EQ(MaskPan("4123456789012345"), "412345******2345");
  EXPECT_EQ(MaskPan("123"), "***");
}

// Visa CVV: the widely published example CVK A=0123456789ABCDEF,
// B=FEDCBA9876543210, PAN 4123456789012345, expiry 8701, service code 101
// -> 561; and psec tests/test_cvv.py: CVK 9999..8888.., PAN 2222222222222222,
// expiry 3333, service code 111 -> 361.
TEST(Cvv, PublishedExamples) {
  Result<std::string> cvv = Cvv(kTestKey, "4123456789012345", "8701", "101");
  ASSERT_OK(cvv);
  EXPECT_EQ(*cvv, "561");
  Result<std::string> cvv2 =
      Cvv(H("99999999999999998888888888888888"), "2222222222222222", "3333", "111");
  ASSERT_OK(cvv2);
  EXPECT_EQ(*cvv2, "361");
  EXPECT_TRUE(VerifyCvv(kTestKey, "4123456789012345", "8701", "101", "561").ok());
}

TEST(Cvv, WrongCvvAndBadInputRejected) {
  EXPECT_EQ(VerifyCvv(kTestKey, "4123456789012345", "8701", "101", "562").code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyCvv(kTestKey, "4123456789012345", "8701", "101", "56").code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(Cvv(H("0123456789ABCDEF"), "4123456789012345", "8701", "101").ok());
  EXPECT_FALSE(Cvv(kTestKey, "412345678901", "8701", "101").ok());
  EXPECT_FALSE(Cvv(kTestKey, "4123456789012345", "871", "101").ok());
  EXPECT_FALSE(Cvv(kTestKey, "4123456789012345", "8701", "1a1").ok());
  // CVV2 and iCVV are the CVV with service codes 000 and 999.
  Result<std::string> cvv2 = Cvv2(kTestKey, "4123456789012345", "8701");
  Result<std::string> icvv = Icvv(kTestKey, "4123456789012345", "8701");
  ASSERT_OK(cvv2);
  ASSERT_OK(icvv);
  EXPECT_EQ(*cvv2, *Cvv(kTestKey, "4123456789012345", "8701", "000"));
  EXPECT_EQ(*icvv, *Cvv(kTestKey, "4123456789012345", "8701", "999"));
}

// Visa PVV: psec tests/test_pin.py, PVK 0123456789ABCDEFFEDCBA9876543210.
TEST(Pvv, PsecVectors) {
  struct Case {
    int pvki;
    const char* pin;
    const char* pan;
    const char* pvv;
  } cases[] = {{1, "4524", "1122334455667788", "8523"},
               {2, "1912", "1122334455667788", "3244"},
               {1, "0570", "1122334455667718", "3144"},
               {1, "8299", "1122334455667708", "4422"}};
  for (const Case& c : cases) {
    Result<std::string> pvv = Pvv(kTestKey, c.pan, c.pvki, c.pin);
    ASSERT_OK(pvv);
    EXPECT_EQ(*pvv, c.pvv) << c.pin;
  }
  EXPECT_FALSE(Pvv(kTestKey, "1122334455667788", 10, "4524").ok());
  EXPECT_FALSE(Pvv(kTestKey, "1122334455667788", 1, "452").ok());
  EXPECT_FALSE(Pvv(H("0123456789ABCDEF"), "1122334455667788", 1, "4524").ok());
}

// IBM 3624 offsets: psec tests/test_pin.py, decimalization table
// 1234567890123456, validation data = PAN 1122334455667788 (or its 14
// leftmost digits padded with F).
TEST(Ibm3624, PsecVectors) {
  struct Case {
    const char* data;
    const char* pin;
    const char* offset;
  } cases[] = {{"1122334455667788", "4524", "0000"}, {"1122334455667788", "5635", "1111"},
               {"1122334455667788", "0000", "6586"}, {"1122334455667788", "1111", "7697"},
               {"1122334455667788", "1234", "7710"}, {"11223344556677FF", "5518", "0000"}};
  for (const Case& c : cases) {
    Result<std::string> off = Ibm3624Offset(kTestKey, "1234567890123456", c.data, c.pin);
    ASSERT_OK(off);
    EXPECT_EQ(*off, c.offset) << c.pin;
  }
  EXPECT_FALSE(Ibm3624Offset(kTestKey, "123456789012345", "1122334455667788", "1234").ok());
  EXPECT_FALSE(Ibm3624Offset(kTestKey, "1234567890123456", "11223344556677", "1234").ok());
  EXPECT_FALSE(Ibm3624Offset(kTestKey, "1234567890123456", "112233445566778G", "1234").ok());
}

// ISO 9564 format 0: psec tests/test_pinblock.py (PAN 5555555551234567) and
// the Wikipedia "ISO 9564" example (PIN 1234, PAN 43219876543210987).
TEST(PinBlock, Iso0Vectors) {
  Result<Bytes> a = EncodePinBlockIso0("1234", "5555555551234567");
  Result<Bytes> b = EncodePinBlockIso0("123456789012", "5555555551234567");
  Result<Bytes> c = EncodePinBlockIso0("1234", "43219876543210987");
  ASSERT_OK(a);
  ASSERT_OK(b);
  ASSERT_OK(c);
  EXPECT_EQ(ToHex(*a), "041261AAAAEDCBA9");
  EXPECT_EQ(ToHex(*b), "0C1261032D8226A9");
  EXPECT_EQ(ToHex(*c), "0412AC89ABCDEF67");
  Result<internal::ClearPin> pin = internal::DecodePinBlockIso0(*b, "5555555551234567");
  ASSERT_OK(pin);
  EXPECT_EQ(pin->digits(), "123456789012");
}

// Malformed format 0 blocks from psec's decode tests: each must be refused.
TEST(PinBlock, Iso0MalformedBlocksRejected) {
  const char* bad[] = {"241261AAAAEDCBA9",   // control field 2
                       "0F1261AAAAEDCBA9",   // PIN length 15
                       "021261AAAAEDCBA9",   // PIN length 2
                       "041261AAAAEDCBAA",   // filler not F
                       "051261AAAAEDCBA9"};  // PIN digit F
  for (const char* hex : bad) {
    Result<internal::ClearPin> pin = internal::DecodePinBlockIso0(H(hex), "5555555551234567");
    EXPECT_EQ(pin.status().code(), StatusCode::kInvalidArgument) << hex;
  }
  EXPECT_FALSE(internal::DecodePinBlockIso0(H("041261AAAAEDCB"), "5555555551234567").ok());
  EXPECT_FALSE(internal::DecodePinBlockIso0(H("041261AAAAEDCBA9"), "555555555123").ok());
  EXPECT_FALSE(EncodePinBlockIso0("123", "5555555551234567").ok());
  EXPECT_FALSE(EncodePinBlockIso0("1234567890123", "5555555551234567").ok());
  EXPECT_FALSE(EncodePinBlockIso0("12a4", "5555555551234567").ok());
}

// ISO 9564 format 4 (AES): psec tests/test_pinblock.py and the paysec crate:
// key 00112233445566778899AABBCCDDEEFF, PIN 1234, PAN 1234567890123456789,
// random fill FF*8 -> 28B41FDDD29B743E93124BD8E32D921E.
TEST(PinBlock, Iso4Vector) {
  Bytes key = H("00112233445566778899AABBCCDDEEFF");
  Result<Bytes> block =
      EncryptPinBlock(PinBlockFormat::kIso4, key, "1234", "1234567890123456789", Bytes(8, 0xFF));
  ASSERT_OK(block);
  EXPECT_EQ(ToHex(*block), "28B41FDDD29B743E93124BD8E32D921E");
  Result<internal::ClearPin> pin =
      internal::DecryptPinBlock(PinBlockFormat::kIso4, key, *block, "1234567890123456789");
  ASSERT_OK(pin);
  EXPECT_EQ(pin->digits(), "1234");
  // Bound to the PAN: another PAN does not decode to a valid block.
  EXPECT_FALSE(
      internal::DecryptPinBlock(PinBlockFormat::kIso4, key, *block, "1234567890123456780").ok());
  // Random fill makes two encryptions of the same PIN differ.
  Result<Bytes> r1 = EncryptPinBlock(PinBlockFormat::kIso4, key, "1234", "1234567890123456789");
  Result<Bytes> r2 = EncryptPinBlock(PinBlockFormat::kIso4, key, "1234", "1234567890123456789");
  ASSERT_OK(r1);
  ASSERT_OK(r2);
  EXPECT_NE(*r1, *r2);
}

TEST(PinBlock, TranslateZeroToZeroAndFourThenVerify) {
  Bytes tpk = H("0123456789ABCDEFFEDCBA9876543210");
  Bytes zpk = H("89ABCDEF0123456776543210FEDCBA98");
  Bytes aes_zpk = H("00112233445566778899AABBCCDDEEFF");
  const std::string pan = "4123456789012345";
  Result<Bytes> under_tpk = EncryptPinBlock(PinBlockFormat::kIso0, tpk, "4524", pan);
  ASSERT_OK(under_tpk);
  Result<Bytes> under_zpk =
      TranslatePinBlock(tpk, PinBlockFormat::kIso0, *under_tpk, pan, zpk, PinBlockFormat::kIso0);
  ASSERT_OK(under_zpk);
  EXPECT_NE(*under_zpk, *under_tpk);
  Result<Bytes> expected = EncryptPinBlock(PinBlockFormat::kIso0, zpk, "4524", pan);
  ASSERT_OK(expected);
  EXPECT_EQ(*under_zpk, *expected);  // format 0 is deterministic
  Result<Bytes> under_aes = TranslatePinBlock(tpk, PinBlockFormat::kIso0, *under_tpk, pan, aes_zpk,
                                              PinBlockFormat::kIso4);
  ASSERT_OK(under_aes);
  EXPECT_EQ(under_aes->size(), 16u);
  // Verify the PIN from each encrypted block against its PVV.
  Result<std::string> pvv = Pvv(kTestKey, pan, 1, "4524");
  ASSERT_OK(pvv);
  EXPECT_TRUE(VerifyPinPvv(zpk, PinBlockFormat::kIso0, *under_zpk, pan, kTestKey, 1, *pvv).ok());
  EXPECT_TRUE(
      VerifyPinPvv(aes_zpk, PinBlockFormat::kIso4, *under_aes, pan, kTestKey, 1, *pvv).ok());
  Result<std::string> from_block =
      PvvFromPinBlock(tpk, PinBlockFormat::kIso0, *under_tpk, pan, kTestKey, 1);
  ASSERT_OK(from_block);
  EXPECT_EQ(*from_block, *pvv);
}

TEST(PinBlock, WrongPinAndWrongKeyRejected) {
  const std::string pan = "4123456789012345";
  Bytes tpk = H("0123456789ABCDEFFEDCBA9876543210");
  Result<Bytes> wrong = EncryptPinBlock(PinBlockFormat::kIso0, tpk, "4525", pan);
  ASSERT_OK(wrong);
  Result<std::string> pvv = Pvv(kTestKey, pan, 1, "4524");
  ASSERT_OK(pvv);
  EXPECT_EQ(VerifyPinPvv(tpk, PinBlockFormat::kIso0, *wrong, pan, kTestKey, 1, *pvv).code(),
            StatusCode::kPermissionDenied);
  // Under the wrong key the block decrypts to garbage: malformed, not OK.
  Bytes other = H("89ABCDEF0123456776543210FEDCBA98");
  EXPECT_FALSE(VerifyPinPvv(other, PinBlockFormat::kIso0, *wrong, pan, kTestKey, 1, *pvv).ok());
  EXPECT_EQ(VerifyPinPvv(tpk, PinBlockFormat::kIso0, *wrong, pan, kTestKey, 1, "12").code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(VerifyPinPvv(tpk, PinBlockFormat::kIso0, Bytes(7, 0), pan, kTestKey, 1, *pvv).ok());
  EXPECT_FALSE(EncryptPinBlock(PinBlockFormat::kIso0, H("0011"), "1234", pan).ok());
  EXPECT_FALSE(EncryptPinBlock(PinBlockFormat::kIso0, tpk, "1234", pan, Bytes(8, 0)).ok());
  EXPECT_FALSE(EncryptPinBlock(PinBlockFormat::kIso4, tpk, "1234", pan, Bytes(7, 0)).ok());
}

TEST(PinBlock, Ibm3624VerificationFromBlock) {
  const std::string pan = "1122334455667788";
  Bytes tpk = H("0123456789ABCDEFFEDCBA9876543210");
  Result<Bytes> block = EncryptPinBlock(PinBlockFormat::kIso0, tpk, "1234", pan);
  ASSERT_OK(block);
  EXPECT_TRUE(VerifyPinIbm3624(tpk, PinBlockFormat::kIso0, *block, pan, kTestKey,
                               "1234567890123456", "1122334455667788", "7710")
                  .ok());
  EXPECT_EQ(VerifyPinIbm3624(tpk, PinBlockFormat::kIso0, *block, pan, kTestKey, "1234567890123456",
                             "1122334455667788", "7711")
                .code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyPinIbm3624(tpk, PinBlockFormat::kIso0, *block, pan, kTestKey, "1234567890123456",
                             "1122334455667788", "77100")
                .code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyPinIbm3624(tpk, PinBlockFormat::kIso0, *block, pan, kTestKey, "1234567890123456",
                             "1122334455667788", "77")
                .code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace narae::crypto
