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

// Raw ECB over whole blocks (no padding). TDES key: 16 or 24 bytes (an
// 8-byte single DES key is expanded to K||K). AES key: 16, 24 or 32 bytes.
Result<SecretBytes> TdesEcb(ByteView key, ByteView data, bool encrypt);
Result<SecretBytes> AesEcb(ByteView key, ByteView data, bool encrypt);
Result<SecretBytes> DesEcbSingle(ByteView key8, ByteView data, bool encrypt);

bool IsDigits(std::string_view s);
bool IsHexDigits(std::string_view s);
// 12 rightmost PAN digits excluding the check digit.
Result<std::string> Pan12(std::string_view pan);
// Visa-style decimalization: digits of the hex string first, then A-F - 10.
std::string Decimalize(std::string_view hex, size_t count);

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

}  // namespace narae::crypto::internal
