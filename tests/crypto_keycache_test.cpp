// The per-thread cache of keyed contexts (crypto/keycache.cpp): every cached
// result equals the uncached path (a context made and keyed per operation),
// across more keys than the cache holds, both directions, interleaved keys,
// one-time keys, several threads at once; a wrong key after a cached right
// key still fails.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"
#include "tests/crypto_test_util.hpp"

namespace narae::crypto {
namespace {

using internal::CipherMode;
using internal::KeyUse;

constexpr size_t kCapacity = internal::kKeyCacheSets * internal::kKeyCacheWays;

Bytes Random(size_t n) {
  Result<Bytes> b = RandomBytes(n);
  EXPECT_TRUE(b.ok());
  return b.ok() ? *b : Bytes(n, 0);
}

// One block operation through the cache, or through a fresh context.
Bytes Tdes(ByteView key, CipherMode mode, bool encrypt, ByteView in, KeyUse use, bool cached) {
  Bytes out(in.size());
  Status st;
  if (cached) {
    st = internal::TdesBlocks(key, mode, encrypt, in, out.data(), use);
  } else {
    internal::ScopedUncachedKeys uncached;
    st = internal::TdesBlocks(key, mode, encrypt, in, out.data(), use);
  }
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

Bytes Aes(ByteView key, bool encrypt, ByteView in, KeyUse use, bool cached) {
  Bytes out(in.size());
  Status st;
  if (cached) {
    st = internal::AesBlocks(key, encrypt, in, out.data(), use);
  } else {
    internal::ScopedUncachedKeys uncached;
    st = internal::AesBlocks(key, encrypt, in, out.data(), use);
  }
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

Bytes Cmac(ByteView key, ByteView data, KeyUse use, bool cached) {
  Bytes out(16);
  Status st;
  if (cached) {
    st = internal::AesCmacInto(key, data, out.data(), use);
  } else {
    internal::ScopedUncachedKeys uncached;
    st = internal::AesCmacInto(key, data, out.data(), use);
  }
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

// Three times the capacity of keys of every size and kind, twice over (the
// second pass finds some keys still cached, re-keys evicted slots for the
// rest): each result equals the uncached one, and decrypting gives the
// plaintext back.
TEST(KeyCache, ManyKeysMatchUncachedPath) {
  internal::ClearThreadKeyCache();
  const internal::KeyCacheStats before = internal::ThreadKeyCacheStats();
  std::vector<Bytes> keys;
  for (size_t i = 0; i < 3 * kCapacity; ++i) keys.push_back(Random(i % 2 == 0 ? 16 : 24));
  const Bytes data = Random(32);
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < keys.size(); ++i) {
      const Bytes& k = keys[i];
      for (CipherMode mode : {CipherMode::kEcb, CipherMode::kCbc}) {
        Bytes enc = Tdes(k, mode, true, data, KeyUse::kLongLived, true);
        ASSERT_EQ(enc, Tdes(k, mode, true, data, KeyUse::kLongLived, false)) << i;
        Bytes dec = Tdes(k, mode, false, enc, KeyUse::kLongLived, true);
        ASSERT_EQ(dec, Tdes(k, mode, false, enc, KeyUse::kLongLived, false)) << i;
        if (mode == CipherMode::kEcb) {
          ASSERT_EQ(dec, data) << i;
        }
      }
      const Bytes single(k.begin(), k.begin() + 8);
      ASSERT_EQ(Tdes(single, CipherMode::kEcb, true, data, KeyUse::kLongLived, true),
                Tdes(single, CipherMode::kEcb, true, data, KeyUse::kLongLived, false));
      const Bytes aes_key = i % 3 == 0 ? k : Random(i % 3 == 1 ? 16 : 32);
      Bytes aes_enc = Aes(aes_key, true, data, KeyUse::kLongLived, true);
      ASSERT_EQ(aes_enc, Aes(aes_key, true, data, KeyUse::kLongLived, false));
      ASSERT_EQ(Aes(aes_key, false, aes_enc, KeyUse::kLongLived, true), data);
      ASSERT_EQ(Cmac(aes_key, data, KeyUse::kLongLived, true),
                Cmac(aes_key, data, KeyUse::kLongLived, false));
    }
  }
  const internal::KeyCacheStats after = internal::ThreadKeyCacheStats();
  EXPECT_GT(after.evictions, before.evictions);
  EXPECT_LE(after.entries, kCapacity);
  EXPECT_EQ(after.entries, kCapacity);  // every slot in use after that many keys
}

// Single DES (8-byte keys: the retail MAC's CBC pass, the CVV's first step)
// runs on the legacy provider's DES when it loads; it equals DES-EDE with
// K||K for every key, in ECB and CBC, both directions.
TEST(KeyCache, SingleDesEqualsDesEdeWithKK) {
  std::printf("single DES from the legacy provider: %s\n",
              internal::SingleDesNative() ? "yes" : "no (DES-EDE K||K)");
  for (int i = 0; i < 300; ++i) {
    const Bytes k = Random(8);
    Bytes kk = k;
    kk.insert(kk.end(), k.begin(), k.end());
    const Bytes data = Random(8 * static_cast<size_t>(1 + i % 5));
    const KeyUse use = i % 2 == 0 ? KeyUse::kLongLived : KeyUse::kOneTime;
    for (CipherMode mode : {CipherMode::kEcb, CipherMode::kCbc}) {
      for (bool encrypt : {true, false}) {
        ASSERT_EQ(Tdes(k, mode, encrypt, data, use, true),
                  Tdes(kk, mode, encrypt, data, use, false))
            << i;
      }
    }
  }
}

// A key differing from a cached one in any single bit gets its own context:
// the set holds both, and each gives its own (uncached) result.
TEST(KeyCache, KeysOneBitApartAreDistinct) {
  const Bytes key = Random(16);
  const Bytes data = Random(8);
  const Bytes base = Tdes(key, CipherMode::kEcb, true, data, KeyUse::kLongLived, true);
  const Bytes base_mac = Cmac(key, data, KeyUse::kLongLived, true);
  for (size_t bit = 0; bit < 128; bit += 1) {
    Bytes other = key;
    other[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    Bytes mac = Cmac(other, data, KeyUse::kLongLived, true);
    EXPECT_NE(mac, base_mac) << bit;
    EXPECT_EQ(mac, Cmac(other, data, KeyUse::kLongLived, false)) << bit;
    // DES ignores the parity bit (bit 0 of each byte): only the others change it.
    Bytes enc = Tdes(other, CipherMode::kEcb, true, data, KeyUse::kLongLived, true);
    EXPECT_EQ(enc, Tdes(other, CipherMode::kEcb, true, data, KeyUse::kLongLived, false)) << bit;
    if (bit % 8 != 0) {
      EXPECT_NE(enc, base) << bit;
    }
  }
  EXPECT_EQ(Tdes(key, CipherMode::kEcb, true, data, KeyUse::kLongLived, true), base);
  EXPECT_EQ(Cmac(key, data, KeyUse::kLongLived, true), base_mac);
}

// Encrypt and decrypt alternate under one key (two slots: one per direction),
// and CBC restarts from a zero IV on every call.
TEST(KeyCache, AlternatingDirectionsAndInterleavedKeys) {
  const Bytes a = Random(16);
  const Bytes b = Random(24);
  const Bytes aes = Random(16);
  const internal::KeyCacheStats before = internal::ThreadKeyCacheStats();
  for (int i = 0; i < 200; ++i) {
    const Bytes data = Random(16);
    const Bytes& k = i % 2 == 0 ? a : b;
    Bytes enc = Tdes(k, CipherMode::kEcb, true, data, KeyUse::kLongLived, true);
    EXPECT_EQ(Tdes(k, CipherMode::kEcb, false, enc, KeyUse::kLongLived, true), data);
    Bytes cbc = Tdes(k, CipherMode::kCbc, true, data, KeyUse::kLongLived, true);
    EXPECT_EQ(cbc, Tdes(k, CipherMode::kCbc, true, data, KeyUse::kLongLived, false));
    EXPECT_EQ(Tdes(k, CipherMode::kCbc, false, cbc, KeyUse::kLongLived, true), data);
    Bytes aes_enc = Aes(aes, true, data, KeyUse::kLongLived, true);
    EXPECT_EQ(Aes(aes, false, aes_enc, KeyUse::kLongLived, true), data);
  }
  const internal::KeyCacheStats after = internal::ThreadKeyCacheStats();
  EXPECT_GE(after.hits - before.hits, 6u * 200 - 10);  // all but the first use of each
}

// RFC 4493 example 2 through one cached context many times (the CMAC is
// re-initialised, not re-keyed, between messages), interleaved with others.
TEST(KeyCache, CmacReuseKeepsRfc4493Vectors) {
  const Bytes key = H("2b7e151628aed2a6abf7158809cf4f3c");
  const Bytes msg = H("6bc1bee22e409f96e93d7e117393172a");
  for (int i = 0; i < 50; ++i) {
    Result<Bytes> mac = AesCmac(key, msg);
    ASSERT_OK(mac);
    EXPECT_EQ(ToHex(*mac), "070A16B46B4D4144F79BDD9DD04A287C");
    Result<Bytes> empty = AesCmac(key, {});
    ASSERT_OK(empty);
    EXPECT_EQ(ToHex(*empty), "BB1D6929E95937287FA37D129B756746");
    Result<Bytes> other = AesCmac(Random(16), msg);  // another key in between
    ASSERT_OK(other);
  }
}

// One-time keys re-key the scratch context: they never evict a long-lived
// key, and every result still equals the uncached path.
TEST(KeyCache, OneTimeKeysLeaveLongLivedKeysCached) {
  internal::ClearThreadKeyCache();
  const Bytes cvk = Random(16);
  const Bytes data = Random(8);
  Tdes(cvk, CipherMode::kEcb, true, data, KeyUse::kLongLived, true);
  const internal::KeyCacheStats mid = internal::ThreadKeyCacheStats();
  for (size_t i = 0; i < 2 * kCapacity; ++i) {
    const Bytes k = Random(16);
    ASSERT_EQ(Tdes(k, CipherMode::kCbc, true, data, KeyUse::kOneTime, true),
              Tdes(k, CipherMode::kCbc, true, data, KeyUse::kOneTime, false));
    ASSERT_EQ(Cmac(k, data, KeyUse::kOneTime, true), Cmac(k, data, KeyUse::kOneTime, false));
  }
  Tdes(cvk, CipherMode::kEcb, true, data, KeyUse::kLongLived, true);
  const internal::KeyCacheStats after = internal::ThreadKeyCacheStats();
  EXPECT_EQ(after.misses, mid.misses);
  EXPECT_EQ(after.hits, mid.hits + 1);
  EXPECT_EQ(after.entries, 1u);
  EXPECT_GE(after.one_time - mid.one_time, 4 * kCapacity);
  internal::ClearThreadKeyCache();
  EXPECT_EQ(internal::ThreadKeyCacheStats().entries, 0u);
  EXPECT_EQ(Tdes(cvk, CipherMode::kEcb, true, data, KeyUse::kLongLived, true),
            Tdes(cvk, CipherMode::kEcb, true, data, KeyUse::kLongLived, false));
}

// Bad input is refused the same way with or without the cache.
TEST(KeyCache, BadInputRefused) {
  uint8_t out[32];
  const Bytes key = Random(16);
  for (bool cached : {true, false}) {
    std::optional<internal::ScopedUncachedKeys> uncached;
    if (!cached) uncached.emplace();
    EXPECT_FALSE(internal::TdesBlocks(Bytes(15, 1), CipherMode::kEcb, true, Bytes(8, 0), out,
                                      KeyUse::kLongLived)
                     .ok());
    EXPECT_FALSE(
        internal::TdesBlocks(key, CipherMode::kEcb, true, Bytes(7, 0), out, KeyUse::kLongLived)
            .ok());
    EXPECT_FALSE(
        internal::TdesBlocks(key, CipherMode::kCbc, true, Bytes{}, out, KeyUse::kOneTime).ok());
    EXPECT_FALSE(
        internal::AesBlocks(Bytes(20, 1), true, Bytes(16, 0), out, KeyUse::kLongLived).ok());
    EXPECT_FALSE(internal::AesBlocks(key, true, Bytes(24, 0), out, KeyUse::kLongLived).ok());
    EXPECT_FALSE(internal::AesCmacInto(Bytes(8, 1), Bytes(3, 0), out, KeyUse::kLongLived).ok());
  }
}

// The retail MAC (CBC under K, last block 3DES under K||K') equals ISO 9797-1
// algorithm 3 computed block by block from its definition, for every length
// around the block boundaries and both paddings.
TEST(KeyCache, RetailMacEqualsBlockByBlockDefinition) {
  const Bytes key = Random(16);
  const ByteView left = ByteView(key).subspan(0, 8);
  const ByteView right = ByteView(key).subspan(8, 8);
  for (size_t len = 0; len <= 41; ++len) {
    const Bytes data = Random(len);
    for (MacPadding padding : {MacPadding::kMethod1, MacPadding::kMethod2}) {
      Bytes padded = data;
      if (padding == MacPadding::kMethod2) padded.push_back(0x80);
      if (padded.empty()) padded.push_back(0);
      while (padded.size() % 8 != 0) padded.push_back(0);
      Bytes chain(8, 0);
      for (size_t off = 0; off < padded.size(); off += 8) {
        for (size_t i = 0; i < 8; ++i) chain[i] ^= padded[off + i];
        Result<SecretBytes> e = internal::DesEcbSingle(left, chain, true);
        ASSERT_OK(e);
        chain.assign(e->data(), e->data() + 8);
      }
      Result<SecretBytes> d = internal::DesEcbSingle(right, chain, false);
      ASSERT_OK(d);
      Result<SecretBytes> e = internal::DesEcbSingle(left, *d, true);
      ASSERT_OK(e);
      Result<Bytes> mac = RetailMac(key, data, padding);
      ASSERT_OK(mac);
      EXPECT_EQ(*mac, Bytes(e->data(), e->data() + 8)) << len;
      Result<Bytes> one_time = internal::RetailMacWith(key, data, padding, KeyUse::kOneTime);
      ASSERT_OK(one_time);
      EXPECT_EQ(*one_time, *mac) << len;
    }
  }
}

// DeriveSimKey runs the SP 800-108 counter KDF on a cached CMAC context; it
// equals OpenSSL's EVP_KDF "KBKDF" for every AES key size and many ICCIDs.
TEST(KeyCache, SimKeyEqualsEvpKbkdf) {
  const std::string label = "narae-sim";
  for (size_t key_size : {16, 24, 32}) {
    const Bytes imk = Random(key_size);
    for (int i = 0; i < 40; ++i) {
      const std::string body = "8982" + std::to_string(10'000'000'000'000ULL + i * 7919ULL);
      Result<char> check = LuhnCheckDigit(body);  // 18 digits + check: a 19-digit ICCID
      ASSERT_OK(check);
      const std::string iccid = body + *check;
      Result<SecretBytes> fast = DeriveSimKey(imk, iccid);
      ASSERT_OK(fast);
      Result<SecretBytes> evp = KbkdfCmacCounter(
          imk, ByteView(reinterpret_cast<const uint8_t*>(label.data()), label.size()),
          ByteView(reinterpret_cast<const uint8_t*>(iccid.data()), iccid.size()), 32);
      ASSERT_OK(evp);
      EXPECT_EQ(ToHex(*fast), ToHex(*evp)) << key_size << " " << iccid;
    }
  }
  EXPECT_FALSE(DeriveSimKey(Random(20), "89820000000000000008").ok());
}

// Card checks that pass with the right (now cached) key fail with a wrong
// one, and pass again with the right one.
TEST(KeyCache, WrongKeyAfterCachedRightKeyFails) {
  const Bytes cvk = Random(16);
  const Bytes pvk = Random(16);
  const Bytes tpk = Random(16);
  const Bytes mac_key = Random(16);
  const Bytes imk = Random(16);
  const std::string pan = "9500011000000014";
  Result<std::string> cvv2 = Cvv2(cvk, pan, "2912");
  ASSERT_OK(cvv2);
  Result<std::string> pvv = Pvv(pvk, pan, 1, "4321");
  ASSERT_OK(pvv);
  Result<Bytes> block = EncryptPinBlock(PinBlockFormat::kIso0, tpk, "4321", pan);
  ASSERT_OK(block);
  const Bytes message = Random(100);
  Result<Bytes> mac = Iso8583Mac(mac_key, message);
  ASSERT_OK(mac);
  const Bytes cdol = Random(40);
  Result<SecretBytes> card_key = EmvCardKeyOptionA(imk, pan, "01");
  ASSERT_OK(card_key);
  Result<SecretBytes> session = EmvSessionKey(*card_key, 9);
  ASSERT_OK(session);
  Result<Bytes> arqc = EmvArqc(*session, cdol);
  ASSERT_OK(arqc);
  for (size_t pos : {size_t{0}, size_t{7}, size_t{8}, size_t{15}}) {
    auto wrong = [pos](const Bytes& k) {
      Bytes w = k;
      w[pos] ^= 0x02;  // not the DES parity bit
      return w;
    };
    for (int round = 0; round < 2; ++round) {
      EXPECT_TRUE(VerifyCvv(cvk, pan, "2912", "000", *cvv2).ok());
      EXPECT_EQ(VerifyCvv(wrong(cvk), pan, "2912", "000", *cvv2).code(),
                StatusCode::kPermissionDenied);
      EXPECT_TRUE(VerifyPinPvv(tpk, PinBlockFormat::kIso0, *block, pan, pvk, 1, *pvv).ok());
      EXPECT_FALSE(VerifyPinPvv(wrong(tpk), PinBlockFormat::kIso0, *block, pan, pvk, 1, *pvv).ok());
      EXPECT_FALSE(VerifyPinPvv(tpk, PinBlockFormat::kIso0, *block, pan, wrong(pvk), 1, *pvv).ok());
      EXPECT_TRUE(VerifyIso8583Mac(mac_key, message, *mac).ok());
      EXPECT_EQ(VerifyIso8583Mac(wrong(mac_key), message, *mac).code(),
                StatusCode::kPermissionDenied);
      EXPECT_TRUE(EmvVerifyArqc(imk, pan, "01", 9, cdol, *arqc).ok());
      EXPECT_EQ(EmvVerifyArqc(wrong(imk), pan, "01", 9, cdol, *arqc).code(),
                StatusCode::kPermissionDenied);
    }
  }
}

// Several threads at once, each with the shared keys and keys of its own
// (more than its cache holds), get the results computed up front on one
// thread without the cache. Run under ThreadSanitizer too (docs/crypto.md).
TEST(KeyCache, ThreadsShareNothing) {
  constexpr int kThreads = 4;
  constexpr size_t kKeys = kCapacity + 40;
  struct Case {
    Bytes key;
    Bytes data;
    Bytes tdes;
    Bytes aes;
    Bytes cmac;
    Bytes mac;
  };
  std::vector<Case> cases;
  for (size_t i = 0; i < kKeys; ++i) {
    Case c{Random(16), Random(24), {}, {}, {}, {}};
    c.tdes = Tdes(c.key, CipherMode::kEcb, true, c.data, KeyUse::kLongLived, false);
    Bytes aes_in(c.data.begin(), c.data.begin() + 16);
    c.aes = Aes(c.key, false, aes_in, KeyUse::kLongLived, false);
    c.cmac = Cmac(c.key, c.data, KeyUse::kLongLived, false);
    {
      internal::ScopedUncachedKeys uncached;
      Result<Bytes> mac = RetailMac(c.key, c.data);
      ASSERT_OK(mac);
      c.mac = *mac;
    }
    cases.push_back(std::move(c));
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&cases, &failures, t] {
      for (int round = 0; round < 3; ++round) {
        for (size_t j = 0; j < cases.size(); ++j) {
          // Shared keys (every thread) and this thread's share, in its own order.
          const Case& c = cases[(j * (t + 1) + static_cast<size_t>(round)) % cases.size()];
          Bytes out(24);
          Bytes aes(16);
          Bytes cmac(16);
          Bytes aes_in(c.data.begin(), c.data.begin() + 16);
          bool ok = internal::TdesBlocks(c.key, CipherMode::kEcb, true, c.data, out.data(),
                                         KeyUse::kLongLived)
                        .ok() &&
                    out == c.tdes;
          ok = ok &&
               internal::AesBlocks(c.key, false, aes_in, aes.data(), KeyUse::kLongLived).ok() &&
               aes == c.aes;
          ok = ok && internal::AesCmacInto(c.key, c.data, cmac.data(), KeyUse::kLongLived).ok() &&
               cmac == c.cmac;
          Result<Bytes> mac =
              internal::RetailMacWith(c.key, c.data, MacPadding::kMethod2,
                                      j % 2 == 0 ? KeyUse::kOneTime : KeyUse::kLongLived);
          ok = ok && mac.ok() && *mac == c.mac;
          if (!ok) failures.fetch_add(1);
        }
      }
      internal::ClearThreadKeyCache();
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace narae::crypto
