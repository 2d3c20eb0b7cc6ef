// Known-answer tests for the crypto primitives; each vector cites its source.
#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"
#include "tests/crypto_test_util.hpp"

namespace narae::crypto {
namespace {

Bytes S(std::string_view s) { return Bytes(s.begin(), s.end()); }
std::string Hx(const Bytes& b) { return ToHex(b); }
std::string Hx(const SecretBytes& b) { return ToHex(b); }

TEST(Hex, RoundTripAndRejectsBadInput) {
  EXPECT_EQ(ToHex(H("00ff10ab")), "00FF10AB");
  EXPECT_FALSE(FromHex("abc").ok());
  EXPECT_FALSE(FromHex("zz").ok());
  EXPECT_EQ(FromHex("0g").status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(SecretFromHex("12 4").ok());
  EXPECT_TRUE(FromHex("").ok());
}

TEST(SecretBytes, CopyMoveAndCompare) {
  SecretBytes a(H("0102030405"));
  SecretBytes b = a;
  EXPECT_TRUE(ConstantTimeEqual(a, b));
  SecretBytes c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT: checking the moved-from state on purpose
  EXPECT_TRUE(ConstantTimeEqual(a, c));
  EXPECT_FALSE(ConstantTimeEqual(a, SecretBytes(H("0102030406"))));
  EXPECT_FALSE(ConstantTimeEqual(a, SecretBytes(H("01020304"))));
}

// FIPS 180-2 Appendix B.1: SHA-256("abc").
TEST(Sha256, Fips180Abc) {
  Result<Bytes> d = Sha256(S("abc"));
  ASSERT_OK(d);
  EXPECT_EQ(Hx(*d), "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
}

// The per-thread context is reused: the same digests call after call, on
// several threads, for the empty message (FIPS 180-2 e3b0...) and "abc".
TEST(Sha256, IntoReusesTheThreadsContext) {
  auto run = [] {
    for (int i = 0; i < 3; ++i) {
      uint8_t d[32];
      EXPECT_TRUE(Sha256Into(S("abc"), d).ok());
      EXPECT_EQ(ToHex(ByteView(d, 32)),
                "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
      EXPECT_TRUE(Sha256Into({}, d).ok());
      EXPECT_EQ(ToHex(ByteView(d, 32)),
                "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855");
    }
  };
  run();
  std::thread other(run);
  other.join();
}

// RFC 2202 test case 2 (SHA-1) and RFC 4231 test case 2 (SHA-256/512).
// SipHash-2-4's published vectors (the paper's Appendix A and the reference
// implementation's table): key 00..0f, message 00..n-1; every tail length
// (n mod 8) from 0 to 7 and a whole block.
TEST(SipHash, ReferenceVectors) {
  uint8_t key[16];
  std::string msg;
  for (int i = 0; i < 16; ++i) {
    key[i] = static_cast<uint8_t>(i);
    msg.push_back(static_cast<char>(i));
  }
  const std::pair<size_t, uint64_t> vectors[] = {
      {0, 0x726fdb47dd0e0e31ull},  {1, 0x74f839c593dc67fdull}, {2, 0x0d6c8009d9a94f5aull},
      {3, 0x85676696d7fb7e2dull},  {4, 0xcf2794e0277187b7ull}, {5, 0x18765564cd99a68dull},
      {6, 0xcbc9466e58fee3ceull},  {7, 0xab0200f58b01d137ull}, {8, 0x93f5f5799a932462ull},
      {15, 0xa129ca6149be45e5ull},
  };
  for (const auto& [n, want] : vectors) {
    EXPECT_EQ(internal::SipHash24(key, std::string_view(msg).substr(0, n)), want) << n;
  }
  key[0] ^= 1;  // another key, another hash
  EXPECT_NE(internal::SipHash24(key, ""), 0x726fdb47dd0e0e31ull);
}

TEST(Hmac, Rfc2202And4231TestCase2) {
  Bytes key = S("Jefe");
  Bytes msg = S("what do ya want for nothing?");
  Result<Bytes> h1 = Hmac(HashAlg::kSha1, key, msg);
  Result<Bytes> h256 = Hmac(HashAlg::kSha256, key, msg);
  Result<Bytes> h512 = Hmac(HashAlg::kSha512, key, msg);
  ASSERT_OK(h1);
  ASSERT_OK(h256);
  ASSERT_OK(h512);
  EXPECT_EQ(Hx(*h1), "EFFCDF6AE5EB2FA2D27416D5F184DF9C259A7C79");
  EXPECT_EQ(Hx(*h256), "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843");
  EXPECT_EQ(Hx(*h512),
            "164B7A7BFCF819E2E395FBE73B56E0A387BD64222E831FD610270CD7EA250554"
            "9758BF75C05A994A6D034F65F8F0E6FDCAEAB1A34D4A6B4B636E070A38BCE737");
}

// RFC 4231 test case 1: key 0x0b * 20, "Hi There".
TEST(Hmac, Rfc4231TestCase1) {
  Result<Bytes> h = Hmac(HashAlg::kSha256, Bytes(20, 0x0b), S("Hi There"));
  ASSERT_OK(h);
  EXPECT_EQ(Hx(*h), "B0344C61D8DB38535CA8AFCEAF0BF12B881DC200C9833DA726E9376C2E32CFF7");
}

// RFC 4493 section 4, examples 1-4 (AES-128 key 2b7e1516...).
TEST(AesCmac, Rfc4493Examples) {
  Bytes key = H("2b7e151628aed2a6abf7158809cf4f3c");
  Bytes m =
      H("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710");
  struct Case {
    size_t len;
    const char* mac;
  } cases[] = {{0, "BB1D6929E95937287FA37D129B756746"},
               {16, "070A16B46B4D4144F79BDD9DD04A287C"},
               {40, "DFA66747DE9AE63030CA32611497C827"},
               {64, "51F0BEBF7E3B9D92FC49741779363CFE"}};
  for (const Case& c : cases) {
    Result<Bytes> mac = AesCmac(key, ByteView(m.data(), c.len));
    ASSERT_OK(mac);
    EXPECT_EQ(Hx(*mac), c.mac) << "length " << c.len;
  }
  EXPECT_EQ(AesCmac(Bytes(15, 1), m).status().code(), StatusCode::kInvalidArgument);
}

// RFC 5869 Appendix A, test cases 1, 2 and 3.
TEST(Hkdf, Rfc5869TestCases) {
  Result<SecretBytes> t1 =
      HkdfSha256(Bytes(22, 0x0b), H("000102030405060708090a0b0c"), H("f0f1f2f3f4f5f6f7f8f9"), 42);
  ASSERT_OK(t1);
  EXPECT_EQ(Hx(*t1),
            "3CB25F25FAACD57A90434F64D0362F2A2D2D0A90CF1A5A4C5DB02D56ECC4C5BF"
            "34007208D5B887185865");
  Bytes ikm2;
  Bytes salt2;
  Bytes info2;
  for (int i = 0; i < 80; ++i) {
    ikm2.push_back(static_cast<uint8_t>(i));
    salt2.push_back(static_cast<uint8_t>(0x60 + i));
    info2.push_back(static_cast<uint8_t>(0xb0 + i));
  }
  Result<SecretBytes> t2 = HkdfSha256(ikm2, salt2, info2, 82);
  ASSERT_OK(t2);
  EXPECT_EQ(Hx(*t2),
            "B11E398DC80327A1C8E7F78C596A49344F012EDA2D4EFAD8A050CC4C19AFA97C"
            "59045A99CAC7827271CB41C65E590E09DA3275600C2F09B8367793A9ACA3DB71"
            "CC30C58179EC3E87C14C01D5C1F3434F1D87");
  Result<SecretBytes> t3 = HkdfSha256(Bytes(22, 0x0b), {}, {}, 42);
  ASSERT_OK(t3);
  EXPECT_EQ(Hx(*t3),
            "8DA4E775A563C18F715F802A063C5A31B8A11F5C5EE1879EC3454E5F3C738D2D"
            "9D201395FAA4B61A96C8");
  EXPECT_FALSE(HkdfSha256(Bytes(22, 0x0b), {}, {}, 0).ok());
}

// NIST CAVP KBKDF (SP 800-108) CounterMode.zip, [PRF=CMAC_AES128]
// [CTRLOCATION=BEFORE_FIXED] [RLEN=32_BITS] COUNT=0 and COUNT=10: the whole
// fixed input data is passed as the label, with no separator and no L.
TEST(Kbkdf, NistCavpCmacAes128Counter) {
  KbkdfOptions raw;
  raw.use_separator = false;
  raw.use_length = false;
  Result<SecretBytes> k0 = KbkdfCmacCounter(
      H("c10b152e8c97b77e18704e0f0bd38305"),
      H("98cd4cbbbebe15d17dc86e6dbad800a2dcbd64f7c7ad0e78e9cf94ffdba89d03e97eadf6c4f7b806caf52"
        "aa38f09d0eb71d71f497bcc6906b48d36c4"),
      {}, 16, raw);
  ASSERT_OK(k0);
  EXPECT_EQ(Hx(*k0), "26FAF61908AD9EE881B8305C221DB53F");
  Result<SecretBytes> k10 = KbkdfCmacCounter(
      H("695f1b1a16c949cea51cdf2554ec9d42"),
      H("4fce5942832a390aa1cbe8a0bf9d202cb799e986c9d6b51f45e4d597a6b57f06a4ebfec6467335d116b7f5f"
        "9c5b954062f661820f5db2a5bbb3e0625"),
      {}, 32, raw);
  ASSERT_OK(k10);
  EXPECT_EQ(Hx(*k10), "D34B601EC18C34DFA0F9E0B7523E218BDDDB9BEFE8D08B6C0202D75ACE0DBA89");
  EXPECT_FALSE(KbkdfCmacCounter(Bytes(10, 1), H("00"), {}, 16).ok());
}

// RFC 5649 section 6: 192-bit KEK, 20-octet and 7-octet keys.
TEST(AesKeyWrapPad, Rfc5649Section6) {
  Bytes kek = H("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
  Result<Bytes> w20 = AesKeyWrapPad(kek, H("c37b7e6492584340bed12207808941155068f738"));
  ASSERT_OK(w20);
  EXPECT_EQ(Hx(*w20), "138BDEAA9B8FA7FC61F97742E72248EE5AE6AE5360D1AE6A5F54F373FA543B6A");
  Result<Bytes> w7 = AesKeyWrapPad(kek, H("466f7250617369"));
  ASSERT_OK(w7);
  EXPECT_EQ(Hx(*w7), "AFBEB0F07DFBF5419200F2CCB50BB24F");
  Result<SecretBytes> u = AesKeyUnwrapPad(kek, *w20);
  ASSERT_OK(u);
  EXPECT_EQ(Hx(*u), "C37B7E6492584340BED12207808941155068F738");
}

TEST(AesKeyWrapPad, TamperedWrappedKeyFailsToUnwrap) {
  Bytes kek = H("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
  Bytes w = H("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a");
  w[5] ^= 0x01;
  Result<SecretBytes> u = AesKeyUnwrapPad(kek, w);
  EXPECT_EQ(u.status().code(), StatusCode::kCrypto);
  EXPECT_EQ(AesKeyUnwrapPad(kek, Bytes(12, 0)).status().code(), StatusCode::kInvalidArgument);
  Bytes other_kek = kek;
  other_kek[0] ^= 1;
  EXPECT_FALSE(AesKeyUnwrapPad(other_kek, H("afbeb0f07dfbf5419200f2ccb50bb24f")).ok());
}

// RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72).
TEST(Ed25519, Rfc8032Tests1And2) {
  struct Case {
    const char* secret;
    const char* pub;
    const char* msg;
    const char* sig;
  } cases[] = {
      {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
       "D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A", "",
       "E5564300C360AC729086E2CC806E828A84877F1EB8E5D974D873E06522490155"
       "5FB8821590A33BACC61E39701CF9B46BD25BF5F0595BBE24655141438E7A100B"},
      {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
       "3D4017C3E843895A92B70AA74D1B7EBC9C982CCF2EC4968CC0CD55F12AF4660C", "72",
       "92A009A9F0D4CAB8720E820B5F642540A2B27B5416503F8FB3762223EBDB69DA"
       "085AC1E43E15996E458F3613D0F11D8C387B2EAEB4302AEEB00D291612BB0C00"},
  };
  for (const Case& c : cases) {
    Bytes seed = H(c.secret);
    Result<Bytes> pub = Ed25519PublicKey(seed);
    ASSERT_OK(pub);
    EXPECT_EQ(Hx(*pub), c.pub);
    Result<Bytes> sig = Ed25519Sign(seed, H(c.msg));
    ASSERT_OK(sig);
    EXPECT_EQ(Hx(*sig), c.sig);
    EXPECT_TRUE(Ed25519Verify(*pub, H(c.msg), *sig).ok());
    Bytes bad = *sig;
    bad[10] ^= 0x40;
    EXPECT_EQ(Ed25519Verify(*pub, H(c.msg), bad).code(), StatusCode::kPermissionDenied);
    EXPECT_EQ(Ed25519Verify(*pub, S("other"), *sig).code(), StatusCode::kPermissionDenied);
  }
}

TEST(Ed25519, PemRoundTripAndRejectsGarbage) {
  Result<SecretBytes> seed = Ed25519GeneratePrivate();
  ASSERT_OK(seed);
  Result<Bytes> pub = Ed25519PublicKey(*seed);
  ASSERT_OK(pub);
  Result<std::string> pem = Ed25519PublicToPem(*pub);
  ASSERT_OK(pem);
  EXPECT_NE(pem->find("BEGIN PUBLIC KEY"), std::string::npos);
  Result<Bytes> back = Ed25519PublicFromPem(*pem);
  ASSERT_OK(back);
  EXPECT_EQ(*back, *pub);
  EXPECT_EQ(Ed25519PublicFromPem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(Ed25519Sign(Bytes(31, 1), S("x")).ok());
  EXPECT_FALSE(Ed25519Verify(*pub, S("x"), Bytes(63, 0)).ok());
}

// KCV examples: the TDES test key 0123456789ABCDEFFEDCBA9876543210 has the
// KCV 08D7.. (pyemv tests/test_ac_hsm.py, "key_check_digits ... 08D7").
// The AES KCV is AES-CMAC of a zero block; checked against RFC 4493's key
// by computing the same CMAC through AesCmac.
TEST(Kcv, TdesAndAes) {
  Result<std::string> kcv = KcvTdes(H("0123456789ABCDEFFEDCBA9876543210"));
  ASSERT_OK(kcv);
  EXPECT_EQ(kcv->substr(0, 4), "08D7");
  EXPECT_EQ(kcv->size(), 6u);
  Bytes aes = H("2b7e151628aed2a6abf7158809cf4f3c");
  Result<std::string> akcv = KcvAes(aes);
  ASSERT_OK(akcv);
  Result<Bytes> mac = AesCmac(aes, Bytes(16, 0));
  ASSERT_OK(mac);
  EXPECT_EQ(*akcv, Hx(*mac).substr(0, 6));
  EXPECT_FALSE(KcvTdes(Bytes(10, 0)).ok());
  EXPECT_FALSE(KcvAes(Bytes(10, 0)).ok());
}

// ISO 9797-1 MAC algorithm 3: pyemv tests/test_mac.py, keys AAAA..|BBBB..,
// "hello world": padding 1 -> 78DA3D3DEB48FD4D, padding 2 -> 2BC2D9EDE0CF31F6.
TEST(RetailMac, PyemvVectors) {
  Bytes key = H("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB");
  Result<Bytes> m1 = RetailMac(key, S("hello world"), MacPadding::kMethod1);
  Result<Bytes> m2 = RetailMac(key, S("hello world"), MacPadding::kMethod2);
  ASSERT_OK(m1);
  ASSERT_OK(m2);
  EXPECT_EQ(Hx(*m1), "78DA3D3DEB48FD4D");
  EXPECT_EQ(Hx(*m2), "2BC2D9EDE0CF31F6");
  EXPECT_TRUE(VerifyRetailMac(key, S("hello world"), *m2).ok());
  EXPECT_EQ(VerifyRetailMac(key, S("hello worle"), *m2).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyRetailMac(key, S("x"), Bytes(3, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(RetailMac(Bytes(8, 1), S("x")).ok());
}

TEST(Iso8583Mac, CmacTruncatedAndVerified) {
  Bytes key = H("2b7e151628aed2a6abf7158809cf4f3c");
  Bytes msg = H("6bc1bee22e409f96e93d7e117393172a");
  Result<Bytes> mac = Iso8583Mac(key, msg);
  ASSERT_OK(mac);
  EXPECT_EQ(Hx(*mac), "070A16B46B4D4144");  // RFC 4493 example 2, first 8 bytes
  EXPECT_TRUE(VerifyIso8583Mac(key, msg, *mac).ok());
  Bytes bad = *mac;
  bad[7] ^= 1;
  EXPECT_EQ(VerifyIso8583Mac(key, msg, bad).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyIso8583Mac(key, msg, Bytes(4, 0)).code(), StatusCode::kInvalidArgument);
}

TEST(BlockHelpers, SingleDesViaDesEdeAndKeyLengths) {
  // Classic DES vector: key 133457799BBCDFF1, plaintext 0123456789ABCDEF ->
  // 85E813540F0AB405 (J. Orlin Grabbe, "The DES Algorithm Illustrated").
  Result<SecretBytes> c =
      internal::DesEcbSingle(H("133457799BBCDFF1"), H("0123456789ABCDEF"), true);
  ASSERT_OK(c);
  EXPECT_EQ(Hx(*c), "85E813540F0AB405");
  EXPECT_FALSE(internal::TdesEcb(Bytes(15, 0), Bytes(8, 0), true).ok());
  EXPECT_FALSE(internal::AesEcb(Bytes(16, 0), Bytes(15, 0), true).ok());
}

}  // namespace
}  // namespace narae::crypto
