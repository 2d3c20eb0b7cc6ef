// Keyed OpenSSL contexts kept per thread (docs/crypto.md, "Keyed contexts").
//
// Making an EVP_CIPHER_CTX or EVP_MAC_CTX and keying it (allocation,
// provider dispatch, DES or AES key schedule, CMAC subkeys) costs many times
// the one or two blocks a card check then runs through it. Long-lived keys
// (CVK, PVK, TPK, IMKs, terminal MAC keys) therefore stay keyed in a small
// set-associative cache owned by the calling thread; one-time keys (EMV card
// and session keys, per-SIM keys) re-key a per-thread scratch context, so
// they neither allocate nor push a long-lived key out.
//
// Secrets: a slot holds a copy of its key for the lookup, compared with
// CRYPTO_memcmp; the set is chosen by a hash seeded per thread from the
// DRBG, so the memory access pattern says nothing about the key without the
// seed. A key copy is wiped (OPENSSL_cleanse) when its slot is re-keyed or
// dropped and when the thread ends; EVP_*_CTX_free wipes the schedules.
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include <array>
#include <cstring>

#include "crypto/internal.hpp"

namespace narae::crypto::internal {

namespace {

enum class Algo : uint8_t {
  kDesEdeEcb,
  kDesEdeCbc,
  kDesEde3Ecb,
  kDesEde3Cbc,
  kAes128Ecb,
  kAes192Ecb,
  kAes256Ecb,
  kCmacAes128,
  kCmacAes192,
  kCmacAes256,
  kDesEcb,  // single DES, from the legacy provider (SingleDes below)
  kDesCbc,
};
constexpr size_t kAlgoCount = 12;

struct AlgoInfo {
  const char* cipher;  // EVP_CIPHER name (for CMAC: its cipher parameter)
  size_t key_size;
  size_t block_size;
  bool cmac;
  bool cbc;
};
constexpr AlgoInfo kAlgos[kAlgoCount] = {
    {"DES-EDE-ECB", 16, 8, false, false},  {"DES-EDE-CBC", 16, 8, false, true},
    {"DES-EDE3-ECB", 24, 8, false, false}, {"DES-EDE3-CBC", 24, 8, false, true},
    {"AES-128-ECB", 16, 16, false, false}, {"AES-192-ECB", 24, 16, false, false},
    {"AES-256-ECB", 32, 16, false, false}, {"AES-128-CBC", 16, 16, true, false},
    {"AES-192-CBC", 24, 16, true, false},  {"AES-256-CBC", 32, 16, true, false},
    {"DES-ECB", 8, 8, false, false},       {"DES-CBC", 8, 8, false, true},
};
constexpr bool IsSingleDes(Algo a) { return a == Algo::kDesEcb || a == Algo::kDesCbc; }

// Single DES lives in OpenSSL 3's legacy provider only; the default provider
// runs it as DES-EDE with K||K, three DES passes for one. The legacy
// provider is loaded into a library context of its own, used for nothing
// else, once per process (never freed: threads may use it until exit). When
// it cannot be loaded, TdesBlocks falls back to K||K.
struct SingleDes {
  const EVP_CIPHER* ecb = nullptr;
  const EVP_CIPHER* cbc = nullptr;
};
const SingleDes& LegacySingleDes() {
  static const SingleDes des = [] {
    SingleDes d;
    OSSL_LIB_CTX* lib = OSSL_LIB_CTX_new();
    if (lib == nullptr || OSSL_PROVIDER_load(lib, "legacy") == nullptr) {
      OSSL_LIB_CTX_free(lib);  // accepts nullptr
      ERR_clear_error();
      return d;
    }
    d.ecb = EVP_CIPHER_fetch(lib, "DES-ECB", nullptr);
    d.cbc = EVP_CIPHER_fetch(lib, "DES-CBC", nullptr);
    if (d.ecb == nullptr || d.cbc == nullptr) {
      ERR_clear_error();
      return SingleDes{};
    }
    return d;
  }();
  return des;
}
const AlgoInfo& Info(Algo a) { return kAlgos[static_cast<size_t>(a)]; }

constexpr size_t kKeyBytesMax = 32;
constexpr uint8_t kZeroIv[16] = {0};

// One keyed context: an EVP_CIPHER_CTX (ECB, CBC) or an EVP_MAC_CTX (CMAC).
struct Slot {
  bool keyed = false;
  Algo algo = Algo::kDesEdeEcb;
  bool encrypt = true;
  uint64_t last_use = 0;
  uint8_t key[kKeyBytesMax] = {0};
  CipherCtxPtr cipher;
  MacCtxPtr mac;

  void Wipe() {
    OPENSSL_cleanse(key, sizeof(key));
    keyed = false;
  }
  void Drop() {  // after an OpenSSL error: nothing of it is trusted again
    Wipe();
    cipher.reset();
    mac.reset();
  }
};

// Keys `s` for (algo, encrypt, key). Re-keys the slot's own context in place
// when it already runs `algo` (no allocation, no fetch); else makes one.
Status KeySlot(Slot& s, Algo algo, bool encrypt, ByteView key) {
  const AlgoInfo& info = Info(algo);
  NARAE_CHECK(key.size() == info.key_size);
  const bool reuse = s.algo == algo && (info.cmac ? s.mac != nullptr : s.cipher != nullptr);
  s.Wipe();
  if (info.cmac) {
    if (!reuse) {
      s.cipher.reset();
      EVP_MAC* mac = FetchMac("CMAC");
      if (!mac) return OpenSslError("fetch CMAC");
      s.mac.reset(EVP_MAC_CTX_new(mac));
      if (!s.mac) return OpenSslError("EVP_MAC_CTX_new");
      OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER,
                                                              const_cast<char*>(info.cipher), 0),
                             OSSL_PARAM_construct_end()};
      if (EVP_MAC_init(s.mac.get(), key.data(), key.size(), params) != 1) {
        s.Drop();
        return OpenSslError("CMAC init");
      }
    } else if (EVP_MAC_init(s.mac.get(), key.data(), key.size(), nullptr) != 1) {
      s.Drop();
      return OpenSslError("CMAC init");
    }
  } else {
    const uint8_t* iv = info.cbc ? kZeroIv : nullptr;
    if (!reuse) {
      s.mac.reset();
      const EVP_CIPHER* cipher = !IsSingleDes(algo)      ? FetchCipher(info.cipher)
                                 : algo == Algo::kDesEcb ? LegacySingleDes().ecb
                                                         : LegacySingleDes().cbc;
      if (!cipher) return OpenSslError(std::string("fetch ") + info.cipher);
      s.cipher.reset(EVP_CIPHER_CTX_new());
      if (!s.cipher) return OpenSslError("EVP_CIPHER_CTX_new");
      if (EVP_CipherInit_ex2(s.cipher.get(), cipher, key.data(), iv, encrypt ? 1 : 0, nullptr) !=
              1 ||
          EVP_CIPHER_CTX_set_padding(s.cipher.get(), 0) != 1) {
        s.Drop();
        return OpenSslError("cipher init");
      }
    } else if (EVP_CipherInit_ex2(s.cipher.get(), nullptr, key.data(), iv, encrypt ? 1 : 0,
                                  nullptr) != 1) {
      s.Drop();
      return OpenSslError("cipher init");
    }
  }
  s.algo = algo;
  s.encrypt = encrypt;
  std::memcpy(s.key, key.data(), key.size());
  s.keyed = true;
  return Status::Ok();
}

// Runs `in` (whole blocks) through a keyed cipher slot; CBC from a zero IV.
Status RunCipher(Slot& s, bool fresh, ByteView in, uint8_t* out) {
  const AlgoInfo& info = Info(s.algo);
  if (info.cbc && !fresh &&
      EVP_CipherInit_ex2(s.cipher.get(), nullptr, nullptr, kZeroIv, -1, nullptr) != 1) {
    s.Drop();
    return OpenSslError("cipher IV");
  }
  int len = 0;
  if (EVP_CipherUpdate(s.cipher.get(), out, &len, in.data(), static_cast<int>(in.size())) != 1 ||
      static_cast<size_t>(len) != in.size()) {
    s.Drop();
    return OpenSslError("cipher");
  }
  return Status::Ok();
}

// CMAC of `data` into out (16 bytes) with a keyed slot.
Status RunCmac(Slot& s, bool fresh, ByteView data, uint8_t* out) {
  if (!fresh && EVP_MAC_init(s.mac.get(), nullptr, 0, nullptr) != 1) {
    s.Drop();
    return OpenSslError("CMAC reinit");
  }
  size_t len = 0;
  if ((!data.empty() && EVP_MAC_update(s.mac.get(), data.data(), data.size()) != 1) ||
      EVP_MAC_final(s.mac.get(), out, &len, 16) != 1 || len != 16) {
    s.Drop();
    return OpenSslError("CMAC");
  }
  return Status::Ok();
}

thread_local int t_uncached_depth = 0;  // ScopedUncachedKeys

class ThreadKeyCache {
 public:
  ~ThreadKeyCache() { Clear(); }

  // A slot keyed for (algo, encrypt, key); *fresh when it was keyed just now.
  Result<Slot*> Get(Algo algo, bool encrypt, ByteView key, KeyUse use, bool* fresh) {
    if (use == KeyUse::kOneTime) {
      Slot& s = scratch_[static_cast<size_t>(algo) * 2 + (encrypt ? 1 : 0)];
      ++stats_.one_time;
      NARAE_RETURN_IF_ERROR(KeySlot(s, algo, encrypt, key));
      *fresh = true;
      return &s;
    }
    const size_t set = SetOf(algo, encrypt, key);
    Slot* victim = nullptr;
    for (size_t w = 0; w < kKeyCacheWays; ++w) {
      Slot& s = slots_[set * kKeyCacheWays + w];
      if (s.keyed && s.algo == algo && s.encrypt == encrypt &&
          CRYPTO_memcmp(s.key, key.data(), key.size()) == 0) {
        ++stats_.hits;
        s.last_use = ++clock_;
        *fresh = false;
        return &s;
      }
      if (victim == nullptr || (victim->keyed && (!s.keyed || s.last_use < victim->last_use))) {
        victim = &s;
      }
    }
    ++stats_.misses;
    if (victim->keyed) ++stats_.evictions;
    NARAE_RETURN_IF_ERROR(KeySlot(*victim, algo, encrypt, key));
    victim->last_use = ++clock_;
    *fresh = true;
    return victim;
  }

  void Clear() {
    for (Slot& s : slots_) s.Drop();
    for (Slot& s : scratch_) s.Drop();
  }

  KeyCacheStats Stats() const {
    KeyCacheStats st = stats_;
    st.entries = 0;
    for (const Slot& s : slots_) st.entries += s.keyed ? 1 : 0;
    return st;
  }

 private:
  // The set: a hash of (algo, direction, key) under a per-thread random seed.
  size_t SetOf(Algo algo, bool encrypt, ByteView key) {
    if (!seeded_) {
      if (RAND_bytes(reinterpret_cast<uint8_t*>(&seed_), sizeof(seed_)) != 1) seed_ = 0;
      seed_ |= 1;
      seeded_ = true;
    }
    constexpr uint64_t kMul = 0x9E3779B97F4A7C15ULL;
    uint64_t h = seed_ ^ (static_cast<uint64_t>(algo) * 2 + (encrypt ? 1 : 0));
    for (size_t off = 0; off < key.size(); off += 8) {
      uint64_t w = 0;
      std::memcpy(&w, key.data() + off, 8);
      h = (h ^ w) * kMul;
      h ^= h >> 29;
      OPENSSL_cleanse(&w, sizeof(w));
    }
    h = (h ^ seed_) * kMul;
    h ^= h >> 32;
    return static_cast<size_t>(h % kKeyCacheSets);
  }

  std::array<Slot, kKeyCacheSets * kKeyCacheWays> slots_;
  std::array<Slot, kAlgoCount * 2> scratch_;  // one-time keys, per (algo, direction)
  uint64_t seed_ = 0;
  bool seeded_ = false;
  uint64_t clock_ = 0;
  KeyCacheStats stats_;
};

ThreadKeyCache& Cache() {
  thread_local ThreadKeyCache cache;
  return cache;
}

// Keys a slot (cached, scratch, or a context of its own when uncached) and
// runs `fn(slot, fresh)` on it.
template <typename Fn>
Status WithSlot(Algo algo, bool encrypt, ByteView key, KeyUse use, Fn fn) {
  if (t_uncached_depth > 0) {  // the path before the cache: a context per operation
    Slot own;
    NARAE_RETURN_IF_ERROR(KeySlot(own, algo, encrypt, key));
    Status st = fn(own, true);
    own.Drop();
    return st;
  }
  bool fresh = false;
  Result<Slot*> slot = Cache().Get(algo, encrypt, key, use, &fresh);
  if (!slot.ok()) return slot.status();
  return fn(**slot, fresh);
}

Status CipherBlocks(Algo algo, bool encrypt, ByteView key, ByteView in, uint8_t* out, KeyUse use) {
  const AlgoInfo& info = Info(algo);
  if (in.empty() || in.size() % info.block_size != 0 || in.size() > kBlocksBytesMax) {
    return Status::InvalidArgument("data must be whole cipher blocks");
  }
  return WithSlot(algo, encrypt, key, use,
                  [&](Slot& s, bool fresh) { return RunCipher(s, fresh, in, out); });
}

}  // namespace

Status TdesBlocks(ByteView key, CipherMode mode, bool encrypt, ByteView in, uint8_t* out,
                  KeyUse use) {
  const bool cbc = mode == CipherMode::kCbc;
  if (key.size() == 8 && LegacySingleDes().ecb != nullptr) {
    return CipherBlocks(cbc ? Algo::kDesCbc : Algo::kDesEcb, encrypt, key, in, out, use);
  }
  if (key.size() == 8) {  // no legacy provider: DES-EDE with K||K is the same permutation
    uint8_t kk[16];
    std::memcpy(kk, key.data(), 8);
    std::memcpy(kk + 8, key.data(), 8);
    Status st = CipherBlocks(cbc ? Algo::kDesEdeCbc : Algo::kDesEdeEcb, encrypt, ByteView(kk, 16),
                             in, out, use);
    OPENSSL_cleanse(kk, sizeof(kk));
    return st;
  }
  if (key.size() == 16) {
    return CipherBlocks(cbc ? Algo::kDesEdeCbc : Algo::kDesEdeEcb, encrypt, key, in, out, use);
  }
  if (key.size() == 24) {
    return CipherBlocks(cbc ? Algo::kDesEde3Cbc : Algo::kDesEde3Ecb, encrypt, key, in, out, use);
  }
  return Status::InvalidArgument("TDES key must be 16 or 24 bytes");
}

Status AesBlocks(ByteView key, bool encrypt, ByteView in, uint8_t* out, KeyUse use) {
  switch (key.size()) {
    case 16:
      return CipherBlocks(Algo::kAes128Ecb, encrypt, key, in, out, use);
    case 24:
      return CipherBlocks(Algo::kAes192Ecb, encrypt, key, in, out, use);
    case 32:
      return CipherBlocks(Algo::kAes256Ecb, encrypt, key, in, out, use);
    default:
      return Status::InvalidArgument("AES key must be 16, 24 or 32 bytes");
  }
}

Status AesCmacInto(ByteView key, ByteView data, uint8_t* out16, KeyUse use) {
  Algo algo = Algo::kCmacAes128;
  switch (key.size()) {
    case 16:
      break;
    case 24:
      algo = Algo::kCmacAes192;
      break;
    case 32:
      algo = Algo::kCmacAes256;
      break;
    default:
      return Status::InvalidArgument("AES key must be 16, 24 or 32 bytes");
  }
  return WithSlot(algo, true, key, use,
                  [&](Slot& s, bool fresh) { return RunCmac(s, fresh, data, out16); });
}

bool SingleDesNative() { return LegacySingleDes().ecb != nullptr; }

KeyCacheStats ThreadKeyCacheStats() { return Cache().Stats(); }
void ClearThreadKeyCache() { Cache().Clear(); }

ScopedUncachedKeys::ScopedUncachedKeys() { ++t_uncached_depth; }
ScopedUncachedKeys::~ScopedUncachedKeys() { --t_uncached_depth; }

}  // namespace narae::crypto::internal
