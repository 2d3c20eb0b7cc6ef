// SecretBytes, hex, randomness, the OpenSSL error queue and block helpers.
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"

namespace narae::crypto {

SecretBytes::SecretBytes(size_t size) : bytes_(size, 0) {}
SecretBytes::SecretBytes(ByteView bytes) : bytes_(bytes.begin(), bytes.end()) {}
SecretBytes::SecretBytes(const SecretBytes& other) : bytes_(other.bytes_) {}
SecretBytes& SecretBytes::operator=(const SecretBytes& other) {
  if (this != &other) {
    Wipe();
    bytes_ = other.bytes_;
  }
  return *this;
}
SecretBytes::SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) {
  other.bytes_.clear();
}
SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
  }
  return *this;
}
SecretBytes::~SecretBytes() { Wipe(); }
void SecretBytes::Wipe() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  bytes_.clear();
}

std::string ToHex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0F]);
  }
  return out;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<Bytes> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return Status::InvalidArgument("hex string of odd length");
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Status::InvalidArgument("not a hex string");
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

Result<SecretBytes> SecretFromHex(std::string_view hex) {
  Result<Bytes> bytes = FromHex(hex);
  if (!bytes.ok()) return bytes.status();
  SecretBytes secret(*bytes);
  OPENSSL_cleanse(bytes->data(), bytes->size());
  return secret;
}

bool ConstantTimeEqual(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<Bytes> RandomBytes(size_t size) {
  Bytes out(size);
  if (size > 0 && RAND_bytes(out.data(), static_cast<int>(size)) != 1) {
    return internal::OpenSslError("RAND_bytes");
  }
  return out;
}

Result<SecretBytes> RandomKey(size_t size) {
  SecretBytes out(size);
  if (size > 0 && RAND_priv_bytes(out.data(), static_cast<int>(size)) != 1) {
    return internal::OpenSslError("RAND_priv_bytes");
  }
  return out;
}

namespace internal {

namespace {
constexpr size_t kFetchedPerThreadMax = 64;

template <typename T, typename Free, T* (*kFetch)(OSSL_LIB_CTX*, const char*, const char*)>
T* FetchCached(const char* name) {
  struct Entry {
    std::string name;
    std::unique_ptr<T, Free> algorithm;
  };
  thread_local std::vector<Entry> cache;  // a handful of names: a linear scan
  for (const Entry& e : cache) {
    if (e.name == name) return e.algorithm.get();
  }
  std::unique_ptr<T, Free> fetched(kFetch(nullptr, name, nullptr));
  if (!fetched) return nullptr;
  NARAE_CHECK(cache.size() < kFetchedPerThreadMax);  // names are compile-time constants
  cache.push_back(Entry{name, std::move(fetched)});
  return cache.back().algorithm.get();
}

struct MdFree {
  void operator()(EVP_MD* p) const { EVP_MD_free(p); }
};
}  // namespace

EVP_CIPHER* FetchCipher(const char* name) {
  return FetchCached<EVP_CIPHER, CipherFree, EVP_CIPHER_fetch>(name);
}
EVP_MAC* FetchMac(const char* name) { return FetchCached<EVP_MAC, MacFree, EVP_MAC_fetch>(name); }
EVP_KDF* FetchKdf(const char* name) { return FetchCached<EVP_KDF, KdfFree, EVP_KDF_fetch>(name); }
EVP_MD* FetchMd(const char* name) { return FetchCached<EVP_MD, MdFree, EVP_MD_fetch>(name); }

Status OpenSslError(std::string_view what) {
  std::string msg(what);
  unsigned long code = 0;  // NOLINT: OpenSSL's type
  bool first = true;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    msg += first ? ": " : "; ";
    msg += buf;
    first = false;
  }
  return Status::Crypto(msg);
}

ClearPin::~ClearPin() {
  if (!digits_.empty()) OPENSSL_cleanse(digits_.data(), digits_.size());
}

Result<SecretBytes> TdesEcb(ByteView key, ByteView data, bool encrypt, KeyUse use) {
  if (key.size() != 16 && key.size() != 24) {
    if (key.size() == 8) return DesEcbSingle(key, data, encrypt, use);
    return Status::InvalidArgument("TDES key must be 16 or 24 bytes");
  }
  SecretBytes out(data.size());
  NARAE_RETURN_IF_ERROR(TdesBlocks(key, CipherMode::kEcb, encrypt, data, out.data(), use));
  return out;
}

Result<SecretBytes> DesEcbSingle(ByteView key8, ByteView data, bool encrypt, KeyUse use) {
  if (key8.size() != 8) return Status::InvalidArgument("DES key must be 8 bytes");
  SecretBytes out(data.size());
  NARAE_RETURN_IF_ERROR(TdesBlocks(key8, CipherMode::kEcb, encrypt, data, out.data(), use));
  return out;
}

Result<SecretBytes> AesEcb(ByteView key, ByteView data, bool encrypt, KeyUse use) {
  SecretBytes out(data.size());
  NARAE_RETURN_IF_ERROR(AesBlocks(key, encrypt, data, out.data(), use));
  return out;
}

bool IsDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool IsHexDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (HexValue(c) < 0) return false;
  }
  return true;
}

Result<std::string> Pan12(std::string_view pan) {
  if (pan.size() < 13 || pan.size() > 19 || !IsDigits(pan)) {
    return Status::InvalidArgument("PAN must be 13 to 19 digits");
  }
  return std::string(pan.substr(pan.size() - 13, 12));
}

uint64_t SipHash24(const uint8_t key[16], std::string_view data) {
  auto load64 = [](const uint8_t* p) {  // little-endian
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  };
  auto rotl = [](uint64_t x, int b) { return (x << b) | (x >> (64 - b)); };
  const uint64_t k0 = load64(key), k1 = load64(key + 8);
  uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
  auto round = [&] {
    v0 += v1;
    v1 = rotl(v1, 13) ^ v0;
    v0 = rotl(v0, 32);
    v2 += v3;
    v3 = rotl(v3, 16) ^ v2;
    v0 += v3;
    v3 = rotl(v3, 21) ^ v0;
    v2 += v1;
    v1 = rotl(v1, 17) ^ v2;
    v2 = rotl(v2, 32);
  };
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  const size_t n = data.size();
  for (size_t i = 0; i + 8 <= n; i += 8) {  // bounded by the data's size
    const uint64_t m = load64(p + i);
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
  uint64_t last = static_cast<uint64_t>(n & 0xff) << 56;
  for (size_t i = n & ~size_t{7}, shift = 0; i < n; ++i, shift += 8) {
    last |= static_cast<uint64_t>(p[i]) << shift;
  }
  v3 ^= last;
  round();
  round();
  v0 ^= last;
  v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) round();
  return v0 ^ v1 ^ v2 ^ v3;
}

}  // namespace internal
}  // namespace narae::crypto
