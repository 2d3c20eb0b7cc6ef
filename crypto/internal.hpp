// Private to crypto/: OpenSSL RAII handles, the error queue as a Status,
// block-cipher helpers and the clear-PIN functions that must not leave the
// module (tests include this header to check them against vectors).
#pragma once

#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <memory>
#include <string>
#include <string_view>

#include "crypto/crypto.hpp"

namespace narae::crypto::internal {

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
struct CipherFree {
  void operator()(EVP_CIPHER* p) const { EVP_CIPHER_free(p); }
};
struct MacFree {
  void operator()(EVP_MAC* p) const { EVP_MAC_free(p); }
};
struct MacCtxFree {
  void operator()(EVP_MAC_CTX* p) const { EVP_MAC_CTX_free(p); }
};
struct KdfFree {
  void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
};
struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;
using CipherPtr = std::unique_ptr<EVP_CIPHER, CipherFree>;
using MacPtr = std::unique_ptr<EVP_MAC, MacFree>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxFree>;
using KdfPtr = std::unique_ptr<EVP_KDF, KdfFree>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, KdfCtxFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

// Algorithms fetched once per thread and kept until the thread ends (an
// EVP_CIPHER, EVP_MAC, EVP_KDF or EVP_MD holds no key; a fetch is a locked
// lookup in the provider store, the largest cost of a one-block operation).
// nullptr when the provider lacks the algorithm. At most 64 names per thread.
EVP_CIPHER* FetchCipher(const char* name);
EVP_MAC* FetchMac(const char* name);
EVP_KDF* FetchKdf(const char* name);
EVP_MD* FetchMd(const char* name);

// Drains the OpenSSL error queue into a kCrypto Status: "<what>: <reason>".
Status OpenSslError(std::string_view what);

// ---- Keyed contexts (crypto/keycache.cpp, docs/crypto.md) ---------------------
//
// Block and CMAC operations run on keyed OpenSSL contexts kept by the calling
// thread, so a check does not make and key a context per block.
// kLongLived keys (CVK, PVK, TPK/ZPK, IMKs, terminal MAC keys) stay keyed in a
// per-thread set-associative cache of kKeyCacheSets x kKeyCacheWays slots
// (least recently used way evicted); kOneTime keys (EMV card and session keys,
// per-SIM keys, anything derived per request) re-key a per-thread scratch
// context instead, so they never push a long-lived key out.
enum class KeyUse { kLongLived, kOneTime };
enum class CipherMode { kEcb, kCbc };  // CBC always starts from a zero IV
inline constexpr size_t kKeyCacheSets = 32;
inline constexpr size_t kKeyCacheWays = 4;
inline constexpr size_t kBlocksBytesMax = size_t{1} << 20;  // per call

// Whole blocks of `in` (at most kBlocksBytesMax) into `out` (in.size()
// bytes; out may be in itself). TDES key 16 or 24 bytes, or 8 for single DES
// (single DES from the legacy provider, else DES-EDE with K||K). AES (ECB only) key 16, 24 or 32
// bytes.
Status TdesBlocks(ByteView key, CipherMode mode, bool encrypt, ByteView in, uint8_t* out,
                  KeyUse use);
Status AesBlocks(ByteView key, bool encrypt, ByteView in, uint8_t* out, KeyUse use);
// True when single DES (8-byte keys) runs as DES-ECB/DES-CBC from OpenSSL's
// legacy provider (one DES pass); false when it runs as DES-EDE with K||K.
bool SingleDesNative();
// AES-CMAC (16 bytes) of `data` into out16.
Status AesCmacInto(ByteView key, ByteView data, uint8_t* out16, KeyUse use);

struct KeyCacheStats {
  uint64_t hits = 0;       // long-lived key found keyed
  uint64_t misses = 0;     // long-lived key keyed into a slot
  uint64_t evictions = 0;  // of those, slots that held another key
  uint64_t one_time = 0;   // one-time keys keyed into a scratch context
  size_t entries = 0;      // keyed slots now
};
// The calling thread's cache.
KeyCacheStats ThreadKeyCacheStats();
// Wipes and frees the calling thread's cached and scratch contexts.
void ClearThreadKeyCache();
// While one is alive, the calling thread keys a new context for every
// operation and frees it after (the path before the cache), for tests that
// compare both paths.
class ScopedUncachedKeys {
 public:
  ScopedUncachedKeys();
  ~ScopedUncachedKeys();
  ScopedUncachedKeys(const ScopedUncachedKeys&) = delete;
  ScopedUncachedKeys& operator=(const ScopedUncachedKeys&) = delete;
};

// Raw ECB over whole blocks (no padding), through the cache above (KeyUse
// kLongLived unless given). TDES key: 16 or 24 bytes (an
// 8-byte single DES key is expanded to K||K). AES key: 16, 24 or 32 bytes.
Result<SecretBytes> TdesEcb(ByteView key, ByteView data, bool encrypt,
                            KeyUse use = KeyUse::kLongLived);
Result<SecretBytes> AesEcb(ByteView key, ByteView data, bool encrypt,
                           KeyUse use = KeyUse::kLongLived);
Result<SecretBytes> DesEcbSingle(ByteView key8, ByteView data, bool encrypt,
                                 KeyUse use = KeyUse::kLongLived);
// ISO 9797-1 MAC algorithm 3 (RetailMac) with the key's lifetime given.
Result<Bytes> RetailMacWith(ByteView key, ByteView data, MacPadding padding, KeyUse use);
// AES-CMAC (AesCmac) with the key's lifetime given.
Result<Bytes> AesCmacWith(ByteView key, ByteView data, KeyUse use);

bool IsDigits(std::string_view s);
bool IsHexDigits(std::string_view s);
// 12 rightmost PAN digits excluding the check digit.
Result<std::string> Pan12(std::string_view pan);

// A clear PIN held only inside crypto/ (wiped on destruction).
class ClearPin {
 public:
  explicit ClearPin(std::string digits) : digits_(std::move(digits)) {}
  ClearPin(const ClearPin&) = delete;
  ClearPin& operator=(const ClearPin&) = delete;
  ClearPin(ClearPin&& other) noexcept : digits_(std::move(other.digits_)) {}
  ~ClearPin();
  std::string_view digits() const { return digits_; }

 private:
  std::string digits_;
};

Result<ClearPin> DecodePinBlockIso0(ByteView block, std::string_view pan);
Result<ClearPin> DecryptPinBlock(PinBlockFormat format, ByteView key, ByteView pin_block,
                                 std::string_view pan);
// Format 4: the clear PIN field and PAN field (each 16 bytes).
Result<SecretBytes> EncodePinFieldIso4(std::string_view pin, ByteView random_fill);
Result<Bytes> EncodePanFieldIso4(std::string_view pan);

// The Luhn sum of `digits` (all '0'..'9'), doubling every second digit from
// the right: starting with the rightmost when it is payload (computing a
// check digit), with the one left of it when the rightmost is the check
// digit (validating).
int LuhnSum(std::string_view digits, bool double_rightmost);

// SipHash-2-4 (Aumasson and Bernstein) of `data` under a 16-byte key: a
// keyed hash for tables whose keys a client chooses (the merchant nonce
// cache), so colliding keys cannot be computed without the key.
uint64_t SipHash24(const uint8_t key[16], std::string_view data);

}  // namespace narae::crypto::internal
