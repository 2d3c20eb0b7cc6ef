// Hashes, MACs, KDFs, key wrap, Ed25519 and KCVs on OpenSSL 3 EVP (SHA-256
// of one buffer: the low-level interface, see Sha256Into).
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <cstring>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"

namespace narae::crypto {

using internal::OpenSslError;

namespace {

const char* DigestName(HashAlg alg) {
  switch (alg) {
    case HashAlg::kSha1:
      return "SHA1";
    case HashAlg::kSha256:
      return "SHA256";
    case HashAlg::kSha512:
      return "SHA512";
  }
  return "SHA256";
}

const char* AesCbcName(size_t key_size) {
  switch (key_size) {
    case 16:
      return "AES-128-CBC";
    case 24:
      return "AES-192-CBC";
    case 32:
      return "AES-256-CBC";
    default:
      return nullptr;
  }
}

// One-shot EVP_MAC ("HMAC" with a digest or "CMAC" with a cipher).
Result<Bytes> MacOneShot(const char* mac_name, const char* param_name, const char* param_value,
                         ByteView key, ByteView data) {
  EVP_MAC* mac = internal::FetchMac(mac_name);
  if (!mac) return OpenSslError(std::string("fetch ") + mac_name);
  internal::MacCtxPtr ctx(EVP_MAC_CTX_new(mac));
  if (!ctx) return OpenSslError("EVP_MAC_CTX_new");
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(param_name, const_cast<char*>(param_value), 0),
      OSSL_PARAM_construct_end()};
  static const uint8_t kEmpty[1] = {0};
  const uint8_t* key_ptr = key.empty() ? kEmpty : key.data();
  if (EVP_MAC_init(ctx.get(), key_ptr, key.size(), params) != 1) {
    return OpenSslError(std::string(mac_name) + " init");
  }
  if (!data.empty() && EVP_MAC_update(ctx.get(), data.data(), data.size()) != 1) {
    return OpenSslError(std::string(mac_name) + " update");
  }
  Bytes out(EVP_MAC_CTX_get_mac_size(ctx.get()));
  size_t out_len = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &out_len, out.size()) != 1) {
    return OpenSslError(std::string(mac_name) + " final");
  }
  out.resize(out_len);
  return out;
}

}  // namespace

// SHA-256 through the low-level interface: a state on the stack, no
// provider look-up or EVP context (EVP_DigestInit_ex2 and EVP_DigestFinal_ex
// cost about a quarter of a short message's hash, 0.5-0.8k instructions a
// call under callgrind; docs/api.md). OpenSSL 3 marks SHA256_* deprecated:
// they remain and run the same CPU-specific code as EVP's SHA-256
// (crypto/merchant.cpp's HMAC uses them likewise).
Status Sha256Into(ByteView data, uint8_t (&out)[32]) {
  SHA256_CTX c;
  const bool ok = SHA256_Init(&c) == 1 && SHA256_Update(&c, data.data(), data.size()) == 1 &&
                  SHA256_Final(out, &c) == 1;
  explicit_bzero(&c, sizeof c);  // it may hold a PAN's bytes (a memset the compiler keeps)
  if (!ok) return OpenSslError("SHA-256");
  return Status::Ok();
}

Result<Bytes> Sha256(ByteView data) {
  uint8_t digest[32];
  NARAE_RETURN_IF_ERROR(Sha256Into(data, digest));
  return Bytes(digest, digest + 32);
}

Result<Bytes> Hmac(HashAlg alg, ByteView key, ByteView data) {
  return MacOneShot("HMAC", OSSL_MAC_PARAM_DIGEST, DigestName(alg), key, data);
}

Result<Bytes> AesCmac(ByteView key, ByteView data) {
  return internal::AesCmacWith(key, data, internal::KeyUse::kLongLived);
}

namespace internal {
Result<Bytes> AesCmacWith(ByteView key, ByteView data, KeyUse use) {
  Bytes out(16);
  NARAE_RETURN_IF_ERROR(AesCmacInto(key, data, out.data(), use));
  return out;
}
}  // namespace internal

Result<SecretBytes> HkdfSha256(ByteView ikm, ByteView salt, ByteView info, size_t length) {
  if (length == 0 || length > 255 * 32) return Status::InvalidArgument("HKDF length");
  EVP_KDF* kdf = internal::FetchKdf("HKDF");
  if (!kdf) return OpenSslError("fetch HKDF");
  internal::KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf));
  if (!ctx) return OpenSslError("EVP_KDF_CTX_new");
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] =
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA256"), 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  const_cast<uint8_t*>(ikm.data()), ikm.size());
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                    const_cast<uint8_t*>(salt.data()), salt.size());
  }
  if (!info.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                                    const_cast<uint8_t*>(info.data()), info.size());
  }
  params[n] = OSSL_PARAM_construct_end();
  SecretBytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return OpenSslError("HKDF derive");
  }
  return out;
}

Result<SecretBytes> KbkdfCmacCounter(ByteView key, ByteView label, ByteView context, size_t length,
                                     const KbkdfOptions& options) {
  const char* cipher = AesCbcName(key.size());
  if (cipher == nullptr) return Status::InvalidArgument("KBKDF key must be an AES key");
  if (length == 0 || length > 1024) return Status::InvalidArgument("KBKDF length");
  EVP_KDF* kdf = internal::FetchKdf("KBKDF");
  if (!kdf) return OpenSslError("fetch KBKDF");
  internal::KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf));
  if (!ctx) return OpenSslError("EVP_KDF_CTX_new");
  int use_l = options.use_length ? 1 : 0;
  int use_sep = options.use_separator ? 1 : 0;
  OSSL_PARAM params[9];
  size_t n = 0;
  params[n++] =
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, const_cast<char*>("COUNTER"), 0);
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, const_cast<char*>("CMAC"), 0);
  params[n++] =
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_CIPHER, const_cast<char*>(cipher), 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  const_cast<uint8_t*>(key.data()), key.size());
  if (!label.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(label.data()), label.size());
  }
  if (!context.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(context.data()), context.size());
  }
  params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_KBKDF_USE_L, &use_l);
  params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_KBKDF_USE_SEPARATOR, &use_sep);
  params[n] = OSSL_PARAM_construct_end();
  SecretBytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return OpenSslError("KBKDF derive");
  }
  return out;
}

namespace {
Result<SecretBytes> WrapPad(ByteView kek, ByteView in, bool encrypt) {
  const char* name = nullptr;
  switch (kek.size()) {
    case 16:
      name = "AES-128-WRAP-PAD";
      break;
    case 24:
      name = "AES-192-WRAP-PAD";
      break;
    case 32:
      name = "AES-256-WRAP-PAD";
      break;
    default:
      return Status::InvalidArgument("KEK must be 16, 24 or 32 bytes");
  }
  if (in.empty() || in.size() > 4096) return Status::InvalidArgument("key wrap input size");
  if (!encrypt && (in.size() < 16 || in.size() % 8 != 0)) {
    return Status::InvalidArgument("wrapped key must be a multiple of 8 bytes, at least 16");
  }
  internal::CipherPtr cipher(EVP_CIPHER_fetch(nullptr, name, nullptr));
  if (!cipher) return OpenSslError(std::string("fetch ") + name);
  internal::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return OpenSslError("EVP_CIPHER_CTX_new");
  if (EVP_CipherInit_ex2(ctx.get(), cipher.get(), kek.data(), nullptr, encrypt ? 1 : 0, nullptr) !=
      1) {
    return OpenSslError("key wrap init");
  }
  SecretBytes out(in.size() + 16);
  int len1 = 0;
  int len2 = 0;
  if (EVP_CipherUpdate(ctx.get(), out.data(), &len1, in.data(), static_cast<int>(in.size())) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), out.data() + len1, &len2) != 1 || len1 <= 0) {
    return OpenSslError(encrypt ? "key wrap" : "key unwrap (integrity check failed)");
  }
  return SecretBytes(ByteView(out.data(), static_cast<size_t>(len1 + len2)));
}
}  // namespace

Result<Bytes> AesKeyWrapPad(ByteView kek, ByteView key) {
  Result<SecretBytes> out = WrapPad(kek, key, true);
  if (!out.ok()) return out.status();
  return Bytes(out->data(), out->data() + out->size());
}

Result<SecretBytes> AesKeyUnwrapPad(ByteView kek, ByteView wrapped) {
  return WrapPad(kek, wrapped, false);
}

Result<SecretBytes> Ed25519GeneratePrivate() { return RandomKey(32); }

namespace {
Result<internal::PkeyPtr> Ed25519Private(ByteView seed) {
  if (seed.size() != 32) return Status::InvalidArgument("Ed25519 private key must be 32 bytes");
  internal::PkeyPtr key(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
  if (!key) return OpenSslError("Ed25519 private key");
  return key;
}
Result<internal::PkeyPtr> Ed25519Public(ByteView pub) {
  if (pub.size() != 32) return Status::InvalidArgument("Ed25519 public key must be 32 bytes");
  internal::PkeyPtr key(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pub.data(), pub.size()));
  if (!key) return OpenSslError("Ed25519 public key");
  return key;
}
}  // namespace

Result<Bytes> Ed25519PublicKey(ByteView private_seed) {
  Result<internal::PkeyPtr> key = Ed25519Private(private_seed);
  if (!key.ok()) return key.status();
  Bytes pub(32);
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key->get(), pub.data(), &len) != 1 || len != 32) {
    return OpenSslError("Ed25519 public key");
  }
  return pub;
}

Result<Bytes> Ed25519Sign(ByteView private_seed, ByteView message) {
  Result<internal::PkeyPtr> key = Ed25519Private(private_seed);
  if (!key.ok()) return key.status();
  internal::MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, key->get(),
                                    nullptr) != 1) {
    return OpenSslError("Ed25519 sign init");
  }
  Bytes sig(64);
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1 ||
      len != 64) {
    return OpenSslError("Ed25519 sign");
  }
  return sig;
}

Status Ed25519Verify(ByteView public_key, ByteView message, ByteView signature) {
  if (signature.size() != 64) return Status::InvalidArgument("Ed25519 signature must be 64 bytes");
  Result<internal::PkeyPtr> key = Ed25519Public(public_key);
  if (!key.ok()) return key.status();
  internal::MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, key->get(),
                                      nullptr) != 1) {
    return OpenSslError("Ed25519 verify init");
  }
  int rc = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(),
                            message.size());
  if (rc != 1) {
    ERR_clear_error();
    return Status::PermissionDenied("Ed25519 signature does not verify");
  }
  return Status::Ok();
}

namespace {
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
}  // namespace

Result<std::string> Ed25519PublicToPem(ByteView public_key) {
  Result<internal::PkeyPtr> key = Ed25519Public(public_key);
  if (!key.ok()) return key.status();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key->get()) != 1) {
    return OpenSslError("PEM write");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);  // NOLINT: OpenSSL's type
  if (len <= 0 || data == nullptr) return OpenSslError("PEM write");
  return std::string(data, static_cast<size_t>(len));
}

Result<Bytes> Ed25519PublicFromPem(std::string_view pem) {
  if (pem.empty() || pem.size() > 4096) return Status::InvalidArgument("PEM size");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslError("BIO");
  internal::PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    return Status::InvalidArgument("not a PEM public key");
  }
  if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
    return Status::InvalidArgument("PEM key is not Ed25519");
  }
  Bytes pub(32);
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), pub.data(), &len) != 1 || len != 32) {
    return OpenSslError("Ed25519 public key");
  }
  return pub;
}

Result<std::string> KcvTdes(ByteView key) {
  static const uint8_t kZero[8] = {0};
  Result<SecretBytes> enc =
      internal::TdesEcb(key, ByteView(kZero, 8), true, internal::KeyUse::kOneTime);
  if (!enc.ok()) return enc.status();
  return ToHex(ByteView(enc->data(), 3));
}

Result<std::string> KcvAes(ByteView key) {
  static const uint8_t kZero[16] = {0};
  Result<Bytes> mac = internal::AesCmacWith(key, ByteView(kZero, 16), internal::KeyUse::kOneTime);
  if (!mac.ok()) return mac.status();
  return ToHex(ByteView(mac->data(), 3));
}

namespace {
Bytes PadIso9797(ByteView data, MacPadding padding) {
  size_t min_size = padding == MacPadding::kMethod2 ? data.size() + 1 : data.size();
  if (min_size == 0) min_size = 1;  // method 1 pads an empty message to one block
  Bytes out((min_size + 7) / 8 * 8, 0x00);
  if (!data.empty()) std::memcpy(out.data(), data.data(), data.size());
  if (padding == MacPadding::kMethod2) out[data.size()] = 0x80;
  return out;
}
}  // namespace

Result<Bytes> RetailMac(ByteView key, ByteView data, MacPadding padding) {
  return internal::RetailMacWith(key, data, padding, internal::KeyUse::kLongLived);
}

namespace internal {
// CBC-MAC under single DES K (the left half) over every block but the last;
// the last block goes through E(K) D(K') E(K), which is 2-key 3DES under
// K||K' (the output transformation 3 of ISO 9797-1). Two keyed contexts for
// the whole message, however long.
Result<Bytes> RetailMacWith(ByteView key, ByteView data, MacPadding padding, KeyUse use) {
  if (key.size() != 16) return Status::InvalidArgument("retail MAC key must be 16 bytes");
  if (data.size() >= kBlocksBytesMax) return Status::InvalidArgument("retail MAC data too long");
  Bytes padded = PadIso9797(data, padding);
  const size_t last = padded.size() - 8;
  uint8_t block[8] = {0};  // chaining value before the last block
  if (last > 0) {
    NARAE_RETURN_IF_ERROR(TdesBlocks(key.subspan(0, 8), CipherMode::kCbc, true,
                                     ByteView(padded.data(), last), padded.data(), use));
    std::memcpy(block, padded.data() + last - 8, 8);
  }
  for (size_t i = 0; i < 8; ++i) block[i] ^= padded[last + i];
  Bytes mac(8);
  Status st = TdesBlocks(key, CipherMode::kEcb, true, ByteView(block, 8), mac.data(), use);
  OPENSSL_cleanse(block, sizeof(block));
  if (!st.ok()) return st;
  return mac;
}
}  // namespace internal

Status VerifyRetailMac(ByteView key, ByteView data, ByteView mac, MacPadding padding) {
  if (mac.size() < 4 || mac.size() > 8) return Status::InvalidArgument("MAC must be 4..8 bytes");
  Result<Bytes> expected = RetailMac(key, data, padding);
  if (!expected.ok()) return expected.status();
  if (!ConstantTimeEqual(ByteView(expected->data(), mac.size()), mac)) {
    return Status::PermissionDenied("MAC does not verify");
  }
  return Status::Ok();
}

Result<Bytes> Iso8583Mac(ByteView key, ByteView message) {
  Result<Bytes> mac = AesCmac(key, message);
  if (!mac.ok()) return mac.status();
  mac->resize(8);
  return mac;
}

Status VerifyIso8583Mac(ByteView key, ByteView message, ByteView mac) {
  if (mac.size() != 8) return Status::InvalidArgument("ISO 8583 MAC must be 8 bytes");
  Result<Bytes> expected = Iso8583Mac(key, message);
  if (!expected.ok()) return expected.status();
  if (!ConstantTimeEqual(*expected, mac)) return Status::PermissionDenied("MAC does not verify");
  return Status::Ok();
}

}  // namespace narae::crypto
