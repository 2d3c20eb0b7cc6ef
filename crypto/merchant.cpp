// Merchant request signing (HMAC-SHA256 over a canonical string) and its
// verifier with a bounded, time-windowed nonce cache.
#include <openssl/core_names.h>

#include <algorithm>

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
// The canonical string from the body's SHA-256 (32 bytes).
Result<std::string> CanonicalFromDigest(std::string_view method, std::string_view path,
                                        int64_t timestamp_s, std::string_view nonce,
                                        ByteView body_sha256) {
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
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(method.size() + path.size() + nonce.size() + 24 + 64 + 4);
  out.append(method).append("\n").append(path).append("\n");
  out.append(std::to_string(timestamp_s)).append("\n").append(nonce).append("\n");
  for (uint8_t b : body_sha256) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0x0F]);
  }
  return out;
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

namespace {
// An HMAC-SHA256 context keyed with `secret`.
Result<internal::MacCtxPtr> KeyedHmacSha256(ByteView secret) {
  EVP_MAC* mac = internal::FetchMac("HMAC");
  if (!mac) return internal::OpenSslError("fetch HMAC");
  internal::MacCtxPtr ctx(EVP_MAC_CTX_new(mac));
  if (!ctx) return internal::OpenSslError("EVP_MAC_CTX_new");
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(ctx.get(), secret.data(), secret.size(), params) != 1) {
    return internal::OpenSslError("HMAC init");
  }
  return ctx;
}

// The HMAC of `data` with `dup`, a duplicate of a keyed context (consumed).
Result<Bytes> HmacWithDuplicate(internal::MacCtxPtr dup, std::string_view data) {
  if (!dup) return internal::OpenSslError("EVP_MAC_CTX_dup");
  Bytes out(32);
  size_t out_len = 0;
  if (EVP_MAC_update(dup.get(), reinterpret_cast<const uint8_t*>(data.data()), data.size()) != 1 ||
      EVP_MAC_final(dup.get(), out.data(), &out_len, out.size()) != 1 || out_len != 32) {
    return internal::OpenSslError("HMAC");
  }
  return out;
}
}  // namespace

struct MerchantRequestSigner::Keyed {
  internal::MacCtxPtr keyed;
};

MerchantRequestSigner::MerchantRequestSigner() = default;
MerchantRequestSigner::~MerchantRequestSigner() = default;

Result<std::unique_ptr<MerchantRequestSigner>> MerchantRequestSigner::Create(ByteView secret) {
  if (secret.size() < 16) return Status::InvalidArgument("merchant secret too short");
  Result<internal::MacCtxPtr> ctx = KeyedHmacSha256(secret);
  if (!ctx.ok()) return ctx.status();
  std::unique_ptr<MerchantRequestSigner> s(new MerchantRequestSigner());
  s->keyed_ = std::make_unique<Keyed>();
  s->keyed_->keyed = std::move(*ctx);
  return s;
}

Result<std::string> MerchantRequestSigner::Sign(std::string_view method, std::string_view path,
                                                int64_t timestamp_s, std::string_view nonce,
                                                std::string_view body) {
  Result<std::string> canonical = MerchantCanonicalString(method, path, timestamp_s, nonce, body);
  if (!canonical.ok()) return canonical.status();
  Result<Bytes> mac =
      HmacWithDuplicate(internal::MacCtxPtr(EVP_MAC_CTX_dup(keyed_->keyed.get())), *canonical);
  if (!mac.ok()) return mac.status();
  return Lower(ToHex(*mac));
}

// An HMAC-SHA256 context keyed once (EVP_MAC_init hashes the key's pads)
// and duplicated per request: a verifier serves one merchant, so the key
// setup and the algorithm lookup of a one-shot HMAC are paid once.
struct MerchantRequestVerifier::KeyedMac {
  SecretBytes secret;  // the key of `keyed`, compared in constant time
  internal::MacCtxPtr keyed;
};

MerchantRequestVerifier::MerchantRequestVerifier(Options options) : options_(options) {
  NARAE_CHECK(options_.skew_s_max >= 0);
  NARAE_CHECK(options_.nonce_cache_max > 0);
}

MerchantRequestVerifier::~MerchantRequestVerifier() = default;

Result<Bytes> MerchantRequestVerifier::KeyedHmac(ByteView secret, std::string_view data) {
  internal::MacCtxPtr ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!mac_ || !ConstantTimeEqual(mac_->secret.view(), secret)) {
      auto m = std::make_unique<KeyedMac>();
      m->secret = SecretBytes(secret);
      Result<internal::MacCtxPtr> keyed = KeyedHmacSha256(secret);
      if (!keyed.ok()) return keyed.status();
      m->keyed = std::move(*keyed);
      mac_ = std::move(m);
    }
    ctx.reset(EVP_MAC_CTX_dup(mac_->keyed.get()));
  }
  return HmacWithDuplicate(std::move(ctx), data);
}

void MerchantRequestVerifier::EvictExpired(int64_t now_s) {
  while (!expiry_order_.empty() && expiry_order_.begin()->first <= now_s) {
    auto it = expiry_order_.begin();
    auto found = nonce_expiry_.find(it->second);
    if (found != nonce_expiry_.end() && found->second == it->first) nonce_expiry_.erase(found);
    expiry_order_.erase(it);
  }
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
  Result<Bytes> given = FromHex(signature_hex);
  if (!given.ok()) return given.status();
  // SignMerchantRequest's HMAC, with the key set up once per verifier.
  if (secret.size() < 16) return Status::InvalidArgument("merchant secret too short");
  Result<std::string> canonical =
      CanonicalFromDigest(method, path, timestamp_s, nonce, body_sha256);
  if (!canonical.ok()) return canonical.status();
  Result<Bytes> expected = KeyedHmac(secret, *canonical);
  if (!expected.ok()) return expected.status();
  if (!ConstantTimeEqual(*expected, *given)) {
    return Status::PermissionDenied("request signature does not verify");
  }
  int64_t skew = timestamp_s - now_s;
  if (skew > options_.skew_s_max || -skew > options_.skew_s_max) {
    return Status::FailedPrecondition("request timestamp outside the allowed skew");
  }
  // Only authenticated requests reach the cache, so strangers cannot fill it.
  std::lock_guard<std::mutex> lock(mu_);
  EvictExpired(now_s);
  std::string key(nonce);
  if (nonce_expiry_.count(key) != 0) return Status::AlreadyExists("nonce already used");
  if (nonce_expiry_.size() >= options_.nonce_cache_max) {
    return Status::Unavailable("nonce cache full; retry later");
  }
  // A timestamp accepted now stays acceptable until timestamp + skew, so the
  // nonce is remembered at least that long.
  int64_t expiry = std::max(now_s, timestamp_s) + options_.skew_s_max + 1;
  nonce_expiry_.emplace(key, expiry);
  expiry_order_.emplace(expiry, std::move(key));
  return Status::Ok();
}

size_t MerchantRequestVerifier::nonce_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return nonce_expiry_.size();
}

}  // namespace narae::crypto
