// Merchant request signing (HMAC-SHA256 over a canonical string) and its
// verifier with a bounded, time-windowed nonce cache.
//
// A signer or verifier keys the HMAC once: the SHA-256 states after the
// key's inner and outer pads (RFC 2104) are kept, and a MAC copies them
// (plain structs: no allocation, no provider look-up) and hashes the
// canonical string in its pieces, so a request costs the compressions of
// its own bytes plus one for the outer hash. OpenSSL 3 marks the low-level
// SHA256_* functions deprecated (they remain, and use the same
// CPU-specific code as EVP's SHA-256); EVP offers no way to copy a digest
// state without allocating one (EVP_MD_CTX_copy_ex duplicates the
// provider's context), hence this use. Checked against RFC 4231's vectors
// and the one-shot EVP HMAC (tests/crypto_sim_test.cpp, MerchantHmac*).
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"

namespace narae::crypto {

namespace {
constexpr size_t kNonceMax = 128;
constexpr size_t kPathMax = 2048;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; });
  return s;
}

bool Printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 0x7F; });
}
}  // namespace

namespace {
constexpr char kHexDigits[] = "0123456789abcdef";
// The two lower-case hex digits of each byte value, side by side.
constexpr std::array<char, 512> kHexPairs = [] {
  std::array<char, 512> t{};
  for (size_t b = 0; b < 256; ++b) {
    t[2 * b] = kHexDigits[b >> 4];
    t[2 * b + 1] = kHexDigits[b & 15];
  }
  return t;
}();

// Checks the canonical string's parts (the errors of MerchantCanonicalString).
Status CheckCanonicalParts(std::string_view method, std::string_view path, int64_t timestamp_s,
                           std::string_view nonce, ByteView body_sha256) {
  if (method.empty() || method.size() > 16 || !Printable(method)) {
    return Status::InvalidArgument("bad HTTP method");
  }
  if (path.empty() || path.size() > kPathMax || path[0] != '/' || !Printable(path)) {
    return Status::InvalidArgument("bad request path");
  }
  if (nonce.size() < 8 || nonce.size() > kNonceMax || !Printable(nonce)) {
    return Status::InvalidArgument("nonce must be 8..128 printable characters");
  }
  if (timestamp_s < 0) return Status::InvalidArgument("bad timestamp");
  if (body_sha256.size() != 32) return Status::InvalidArgument("body digest must be 32 bytes");
  return Status::Ok();
}

// The canonical string's parts after PATH: "\nTIMESTAMP\nNONCE\nHEX".
// REQUIRES: CheckCanonicalParts() passed (so it fits: 1 + 19 + 1 + 128 + 1 + 64).
size_t CanonicalTail(int64_t timestamp_s, std::string_view nonce, ByteView body_sha256,
                     char (&out)[256]) {
  NARAE_CHECK(timestamp_s >= 0 && nonce.size() <= kNonceMax && body_sha256.size() == 32);
  size_t n = 0;
  out[n++] = '\n';
  char digits[20];
  size_t d = 0;
  for (uint64_t t = static_cast<uint64_t>(timestamp_s); d == 0 || t != 0; t /= 10) {
    digits[d++] = static_cast<char>('0' + t % 10);
  }
  while (d > 0) out[n++] = digits[--d];
  out[n++] = '\n';
  std::memcpy(out + n, nonce.data(), nonce.size());
  n += nonce.size();
  out[n++] = '\n';
  for (uint8_t b : body_sha256) {
    std::memcpy(out + n, &kHexPairs[2 * size_t{b}], 2);
    n += 2;
  }
  return n;
}

// The canonical string from the body's SHA-256 (32 bytes).
Result<std::string> CanonicalFromDigest(std::string_view method, std::string_view path,
                                        int64_t timestamp_s, std::string_view nonce,
                                        ByteView body_sha256) {
  NARAE_RETURN_IF_ERROR(CheckCanonicalParts(method, path, timestamp_s, nonce, body_sha256));
  char tail[256];
  const size_t n = CanonicalTail(timestamp_s, nonce, body_sha256, tail);
  std::string out;
  out.reserve(method.size() + 1 + path.size() + n);
  out.append(method).append("\n").append(path).append(tail, n);
  return out;
}

// HMAC-SHA256 keyed once: the SHA-256 states after (K ^ ipad) and (K ^ opad).
// Wiped on destruction (they stand for the key).
struct HmacSha256Key {
  SHA256_CTX inner;
  SHA256_CTX outer;
  HmacSha256Key() = default;
  HmacSha256Key(const HmacSha256Key&) = default;
  HmacSha256Key& operator=(const HmacSha256Key&) = default;
  // Wiped (the states stand for the key) with glibc's explicit_bzero, a
  // memset the compiler keeps: OPENSSL_cleanse stores a byte or a word at a
  // time (~0.8k instructions a request on the verifier's path).
  ~HmacSha256Key() { explicit_bzero(this, sizeof *this); }
};

Status KeyHmacSha256(ByteView secret, HmacSha256Key* key) {
  constexpr size_t kBlock = 64;
  uint8_t k[kBlock] = {};
  if (secret.size() > kBlock) {
    if (SHA256(secret.data(), secret.size(), k) == nullptr) {
      return Status::Crypto("SHA-256 of the HMAC key failed");
    }
  } else if (!secret.empty()) {
    std::memcpy(k, secret.data(), secret.size());
  }
  uint8_t pad[kBlock];
  for (size_t i = 0; i < kBlock; ++i) pad[i] = static_cast<uint8_t>(k[i] ^ 0x36);
  const bool inner = SHA256_Init(&key->inner) == 1 && SHA256_Update(&key->inner, pad, kBlock) == 1;
  for (size_t i = 0; i < kBlock; ++i) pad[i] = static_cast<uint8_t>(k[i] ^ 0x5c);
  const bool outer = SHA256_Init(&key->outer) == 1 && SHA256_Update(&key->outer, pad, kBlock) == 1;
  OPENSSL_cleanse(k, sizeof k);
  OPENSSL_cleanse(pad, sizeof pad);
  if (!inner || !outer) return Status::Crypto("HMAC-SHA256 key set-up failed");
  return Status::Ok();
}

// HMAC-SHA256 over the concatenation of `parts` with a keyed state.
template <size_t N>
Status HmacSha256Parts(const HmacSha256Key& key, const std::string_view (&parts)[N],
                       uint8_t (&out)[32]) {
  SHA256_CTX c = key.inner;
  bool ok = true;
  for (std::string_view p : parts) ok = ok && SHA256_Update(&c, p.data(), p.size()) == 1;
  uint8_t inner_digest[32];
  ok = ok && SHA256_Final(inner_digest, &c) == 1;
  c = key.outer;
  ok =
      ok && SHA256_Update(&c, inner_digest, sizeof inner_digest) == 1 && SHA256_Final(out, &c) == 1;
  explicit_bzero(&c, sizeof c);
  explicit_bzero(inner_digest, sizeof inner_digest);
  if (!ok) return Status::Crypto("HMAC-SHA256 failed");
  return Status::Ok();
}

// The MAC of the canonical string (its parts hashed where they are).
// REQUIRES: CheckCanonicalParts() passed.
Status CanonicalMac(const HmacSha256Key& key, std::string_view method, std::string_view path,
                    int64_t timestamp_s, std::string_view nonce, ByteView body_sha256,
                    uint8_t (&out)[32]) {
  char tail[256];
  const size_t n = CanonicalTail(timestamp_s, nonce, body_sha256, tail);
  const std::string_view parts[] = {method, "\n", path, std::string_view(tail, n)};
  return HmacSha256Parts(key, parts, out);
}

std::string LowerHex32(const uint8_t (&mac)[32]) {
  std::string out(64, '0');
  for (size_t i = 0; i < 32; ++i) {
    out[2 * i] = kHexDigits[mac[i] >> 4];
    out[2 * i + 1] = kHexDigits[mac[i] & 0x0F];
  }
  return out;
}

// The value of each hex digit (either case), -1 for any other byte.
constexpr std::array<int8_t, 256> kNibble = [] {
  std::array<int8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = c >= '0' && c <= '9'   ? static_cast<int8_t>(c - '0')
           : c >= 'a' && c <= 'f' ? static_cast<int8_t>(c - 'a' + 10)
           : c >= 'A' && c <= 'F' ? static_cast<int8_t>(c - 'A' + 10)
                                  : int8_t{-1};
  }
  return t;
}();

// 64 hex digits (either case) into 32 bytes, as FromHex() reads them.
bool ParseHex32(std::string_view hex, uint8_t (&out)[32]) {
  if (hex.size() != 64) return false;
  int bad = 0;  // any digit's -1 sets its sign bit
  for (size_t i = 0; i < 32; ++i) {
    const int hi = kNibble[static_cast<unsigned char>(hex[2 * i])];
    const int lo = kNibble[static_cast<unsigned char>(hex[2 * i + 1])];
    bad |= hi | lo;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return bad >= 0;
}
}  // namespace

Result<std::string> MerchantCanonicalString(std::string_view method, std::string_view path,
                                            int64_t timestamp_s, std::string_view nonce,
                                            std::string_view body) {
  Result<Bytes> digest =
      Sha256(ByteView(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
  if (!digest.ok()) return digest.status();
  return CanonicalFromDigest(method, path, timestamp_s, nonce, *digest);
}

Result<std::string> SignMerchantRequest(ByteView secret, std::string_view method,
                                        std::string_view path, int64_t timestamp_s,
                                        std::string_view nonce, std::string_view body) {
  if (secret.size() < 16) return Status::InvalidArgument("merchant secret too short");
  Result<std::string> canonical = MerchantCanonicalString(method, path, timestamp_s, nonce, body);
  if (!canonical.ok()) return canonical.status();
  Result<Bytes> mac =
      Hmac(HashAlg::kSha256, secret,
           ByteView(reinterpret_cast<const uint8_t*>(canonical->data()), canonical->size()));
  if (!mac.ok()) return mac.status();
  return Lower(ToHex(*mac));
}

struct MerchantRequestSigner::Keyed {
  HmacSha256Key key;
};

MerchantRequestSigner::MerchantRequestSigner() = default;
MerchantRequestSigner::~MerchantRequestSigner() = default;

Result<std::unique_ptr<MerchantRequestSigner>> MerchantRequestSigner::Create(ByteView secret) {
  if (secret.size() < 16) return Status::InvalidArgument("merchant secret too short");
  auto keyed = std::make_unique<Keyed>();
  NARAE_RETURN_IF_ERROR(KeyHmacSha256(secret, &keyed->key));
  std::unique_ptr<MerchantRequestSigner> s(new MerchantRequestSigner());
  s->keyed_ = std::move(keyed);
  return s;
}

Result<std::string> MerchantRequestSigner::Sign(std::string_view method, std::string_view path,
                                                int64_t timestamp_s, std::string_view nonce,
                                                std::string_view body) {
  uint8_t digest[32];
  NARAE_RETURN_IF_ERROR(
      Sha256Into(ByteView(reinterpret_cast<const uint8_t*>(body.data()), body.size()), digest));
  const ByteView body_sha256(digest, sizeof digest);
  NARAE_RETURN_IF_ERROR(CheckCanonicalParts(method, path, timestamp_s, nonce, body_sha256));
  uint8_t mac[32];
  NARAE_RETURN_IF_ERROR(
      CanonicalMac(keyed_->key, method, path, timestamp_s, nonce, body_sha256, mac));
  return LowerHex32(mac);
}

// The HMAC keyed with the last secret seen: a verifier serves one merchant,
// so the key set-up is paid once (a different secret, e.g. a rotated key,
// replaces it). A request copies the two states out under the lock.
struct MerchantRequestVerifier::KeyedMac {
  SecretBytes secret;  // the key of `key`, compared in constant time
  HmacSha256Key key;
};

// The nonces accepted and not yet expired: a hash table by nonce (one node
// per nonce) and a binary min-heap of (expiry, the node's key) to evict them
// in expiry order. A nonce is in the heap exactly while it is in the table
// (it is removed only by eviction, or right after its insertion when the
// cache is full, before it enters the heap). Nodes of an unordered_map keep
// their address across rehashes, so the heap may point at their keys.
struct MerchantRequestVerifier::NonceCache {
  // The table's hash: SipHash-2-4 under a key drawn at start. Nonces are the
  // client's choice; with an unkeyed hash a merchant could send nonces that
  // all land in one bucket and make every check a long scan under mu_.
  // The hash is computed once per nonce and kept in its key: libstdc++ does
  // not store the hash of a "fast" hasher in the node, so with SipHash as the
  // table's hasher every node passed in a bucket's chain and every node moved
  // by a rehash was hashed again (with its key's bytes read from memory).
  struct Key {
    uint64_t hash;  // SipHash24(hash_key, nonce)
    std::string nonce;
    bool operator==(const Key& o) const { return hash == o.hash && nonce == o.nonce; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept { return static_cast<size_t>(k.hash); }
  };
  NonceCache(const NonceCache&) = delete;
  NonceCache& operator=(const NonceCache&) = delete;
  NonceCache() : expiry_s_by_nonce(16) {
    // Without the system's randomness the key stays zero: still SipHash,
    // only its collisions are then computable (no worse than std::hash).
    if (RAND_bytes(hash_key, sizeof hash_key) != 1) std::memset(hash_key, 0, sizeof hash_key);
  }
  Key KeyOf(std::string_view nonce) const {
    return Key{internal::SipHash24(hash_key, nonce), std::string(nonce)};
  }

  struct Due {
    int64_t expiry_s;
    const Key* nonce;  // the key of its node in `expiry_s_by_nonce`
  };
  // std::push_heap builds a max-heap: the earliest expiry compares greatest.
  static bool Later(const Due& a, const Due& b) { return a.expiry_s > b.expiry_s; }

  // Removes every nonce whose expiry is at or before `now_s`.
  void EvictExpired(int64_t now_s) {
    NARAE_CHECK(due.size() == expiry_s_by_nonce.size());
    while (!due.empty() && due.front().expiry_s <= now_s) {
      std::pop_heap(due.begin(), due.end(), Later);
      const size_t erased = expiry_s_by_nonce.erase(*due.back().nonce);
      NARAE_CHECK(erased == 1);
      due.pop_back();
    }
  }

  uint8_t hash_key[16];
  std::unordered_map<Key, int64_t, KeyHash> expiry_s_by_nonce;
  std::vector<Due> due;  // a heap by expiry (Later), one entry per nonce
};

MerchantRequestVerifier::MerchantRequestVerifier(Options options)
    : options_(options), nonces_(std::make_unique<NonceCache>()) {
  NARAE_CHECK(options_.skew_s_max >= 0);
  NARAE_CHECK(options_.nonce_cache_max > 0);
}

MerchantRequestVerifier::~MerchantRequestVerifier() = default;

Status MerchantRequestVerifier::KeyedHmac(ByteView secret, std::string_view data,
                                          uint8_t (&mac)[32]) {
  HmacSha256Key key;  // a copy: the MAC is computed outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!mac_ || !ConstantTimeEqual(mac_->secret.view(), secret)) {
      auto m = std::make_unique<KeyedMac>();
      m->secret = SecretBytes(secret);
      NARAE_RETURN_IF_ERROR(KeyHmacSha256(secret, &m->key));
      mac_ = std::move(m);
    }
    key = mac_->key;
  }
  const std::string_view parts[] = {data};
  return HmacSha256Parts(key, parts, mac);
}

Status MerchantRequestVerifier::Verify(ByteView secret, std::string_view method,
                                       std::string_view path, int64_t timestamp_s,
                                       std::string_view nonce, std::string_view body,
                                       std::string_view signature_hex, int64_t now_s) {
  Result<Bytes> digest =
      Sha256(ByteView(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
  if (!digest.ok()) return digest.status();
  return VerifyBodyDigest(secret, method, path, timestamp_s, nonce, *digest, signature_hex, now_s);
}

Status MerchantRequestVerifier::VerifyBodyDigest(ByteView secret, std::string_view method,
                                                 std::string_view path, int64_t timestamp_s,
                                                 std::string_view nonce, ByteView body_sha256,
                                                 std::string_view signature_hex, int64_t now_s) {
  if (signature_hex.size() != 64) return Status::InvalidArgument("signature must be 64 hex");
  uint8_t given[32];
  if (!ParseHex32(signature_hex, given)) return Status::InvalidArgument("signature must be hex");
  // SignMerchantRequest's HMAC, with the key set up once per verifier.
  if (secret.size() < 16) return Status::InvalidArgument("merchant secret too short");
  NARAE_RETURN_IF_ERROR(CheckCanonicalParts(method, path, timestamp_s, nonce, body_sha256));
  // The canonical string in a buffer on the stack (bounded by the checks).
  char canonical[16 + 1 + kPathMax + 256];
  char tail[256];
  const size_t tail_bytes = CanonicalTail(timestamp_s, nonce, body_sha256, tail);
  size_t n = 0;
  std::memcpy(canonical + n, method.data(), method.size());
  n += method.size();
  canonical[n++] = '\n';
  std::memcpy(canonical + n, path.data(), path.size());
  n += path.size();
  std::memcpy(canonical + n, tail, tail_bytes);
  n += tail_bytes;
  uint8_t expected[32];
  NARAE_RETURN_IF_ERROR(KeyedHmac(secret, std::string_view(canonical, n), expected));
  if (!ConstantTimeEqual(ByteView(expected, sizeof expected), ByteView(given, sizeof given))) {
    return Status::PermissionDenied("request signature does not verify");
  }
  int64_t skew = timestamp_s - now_s;
  if (skew > options_.skew_s_max || -skew > options_.skew_s_max) {
    return Status::FailedPrecondition("request timestamp outside the allowed skew");
  }
  // Only authenticated requests reach the cache, so strangers cannot fill it.
  std::lock_guard<std::mutex> lock(mu_);
  NonceCache& cache = *nonces_;
  cache.EvictExpired(now_s);
  // A timestamp accepted now stays acceptable until timestamp + skew, so the
  // nonce is remembered at least that long.
  const int64_t expiry = std::max(now_s, timestamp_s) + options_.skew_s_max + 1;
  // One search of the table: inserted, or found (reused); a full cache takes
  // the new nonce back out (rare). The heap's room first: the table and the
  // heap must never differ (EvictExpired checks it), not even when an
  // allocation fails between the two.
  // The room grows geometrically: reserve(size() + 1) allocates exactly
  // that much, so each insertion would copy the whole heap (O(n) per
  // request, ~26k instructions at a few thousand nonces).
  // Bounded by the cache's limit (the heap never holds more than
  // nonce_cache_max entries before this insertion).
  if (cache.due.size() == cache.due.capacity()) {
    const size_t doubled = std::max<size_t>(64, 2 * cache.due.capacity());
    cache.due.reserve(
        std::max(cache.due.size() + 1, std::min(doubled, options_.nonce_cache_max + 1)));
  }
  auto [it, inserted] = cache.expiry_s_by_nonce.try_emplace(cache.KeyOf(nonce), expiry);
  if (!inserted) return Status::AlreadyExists("nonce already used");
  if (cache.expiry_s_by_nonce.size() > options_.nonce_cache_max) {
    cache.expiry_s_by_nonce.erase(it);
    return Status::Unavailable("nonce cache full; retry later");
  }
  cache.due.push_back({expiry, &it->first});
  std::push_heap(cache.due.begin(), cache.due.end(), NonceCache::Later);
  return Status::Ok();
}

size_t MerchantRequestVerifier::nonce_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return nonces_->expiry_s_by_nonce.size();
}

}  // namespace narae::crypto
