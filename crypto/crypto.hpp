// narae::crypto: what a bank HSM does for Narae, on OpenSSL 3 EVP.
//
// Card functions (CVV, PVV, IBM 3624, ISO 9564 PIN blocks, EMV ARQC/ARPC),
// SIM-linked payment tokens, one-time codes (HOTP/TOTP/OCRA), merchant
// request signing, ISO 8583 MACs and the key hierarchy (master key -> key
// store of typed, wrapped working keys). See docs/crypto.md for every
// function and its test-vector source, docs/security.md for the design.
//
// Errors: every function returns Status / Result<T>; nothing throws across
// this boundary. Failures of OpenSSL become StatusCode::kCrypto. Messages
// never contain a PIN, a CVV or key material (only KCVs).
//
// Secrets: keys live in SecretBytes, which wipes its buffer (OPENSSL_cleanse)
// on destruction. Comparisons of secrets are constant time (CRYPTO_memcmp).
//
// Thread safety: free functions are pure and thread-safe. KeyStore and
// MerchantRequestVerifier are internally synchronized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/status.hpp"

namespace narae::crypto {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

// A fixed-size buffer for key material; wiped with OPENSSL_cleanse when
// destroyed or moved from. Never printed; compare with ConstantTimeEqual.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);
  explicit SecretBytes(ByteView bytes);
  SecretBytes(const SecretBytes& other);
  SecretBytes& operator=(const SecretBytes& other);
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  ~SecretBytes();

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  ByteView view() const { return ByteView(bytes_.data(), bytes_.size()); }
  operator ByteView() const { return view(); }  // NOLINT: implicit by design

 private:
  void Wipe();
  std::vector<uint8_t> bytes_;
};

// ---- Encoding helpers ------------------------------------------------------

std::string ToHex(ByteView bytes);            // upper case
Result<Bytes> FromHex(std::string_view hex);  // even length, [0-9a-fA-F]
Result<SecretBytes> SecretFromHex(std::string_view hex);
bool ConstantTimeEqual(ByteView a, ByteView b);  // false if sizes differ
Result<Bytes> RandomBytes(size_t size);          // OpenSSL DRBG
Result<SecretBytes> RandomKey(size_t size);

// ---- Primitives -------------------------------------------------------------

enum class HashAlg { kSha1, kSha256, kSha512 };

Result<Bytes> Sha256(ByteView data);
// The same into a caller's buffer (no allocation; one context per thread).
Status Sha256Into(ByteView data, uint8_t (&out)[32]);
Result<Bytes> Hmac(HashAlg alg, ByteView key, ByteView data);
// AES-CMAC (RFC 4493 / NIST SP 800-38B); key of 16, 24 or 32 bytes. 16 bytes.
Result<Bytes> AesCmac(ByteView key, ByteView data);
// HKDF-SHA256 (RFC 5869), extract then expand to `length` bytes.
Result<SecretBytes> HkdfSha256(ByteView ikm, ByteView salt, ByteView info, size_t length);
// NIST SP 800-108 KDF in counter mode with AES-CMAC as PRF (32-bit counter
// before the fixed data). Fixed data = label [|| 0x00] || context [|| L32].
struct KbkdfOptions {
  bool use_separator = true;  // the 0x00 byte between label and context
  bool use_length = true;     // the 32-bit big-endian output length in bits
};
Result<SecretBytes> KbkdfCmacCounter(ByteView key, ByteView label, ByteView context, size_t length,
                                     const KbkdfOptions& options = {});
// AES key wrap with padding (RFC 5649); kek of 16, 24 or 32 bytes.
Result<Bytes> AesKeyWrapPad(ByteView kek, ByteView key);
Result<SecretBytes> AesKeyUnwrapPad(ByteView kek, ByteView wrapped);

// Ed25519 (RFC 8032): 32-byte private seed, 32-byte public key, 64-byte sig.
Result<SecretBytes> Ed25519GeneratePrivate();
Result<Bytes> Ed25519PublicKey(ByteView private_seed);
Result<Bytes> Ed25519Sign(ByteView private_seed, ByteView message);
Status Ed25519Verify(ByteView public_key, ByteView message, ByteView signature);
Result<std::string> Ed25519PublicToPem(ByteView public_key);
Result<Bytes> Ed25519PublicFromPem(std::string_view pem);

// Key check values, 6 hex digits: TDES (16 or 24 byte key; 8 byte single DES
// is used as K||K) encrypts a zero block; AES takes AES-CMAC of a zero block.
Result<std::string> KcvTdes(ByteView key);
Result<std::string> KcvAes(ByteView key);

// ISO 9797-1 MAC algorithm 3 ("retail MAC"): single DES CBC under the left
// half, final block 3DES; 16-byte key, 8-byte MAC. Padding method 1 or 2.
enum class MacPadding { kMethod1, kMethod2 };
Result<Bytes> RetailMac(ByteView key, ByteView data, MacPadding padding = MacPadding::kMethod2);
Status VerifyRetailMac(ByteView key, ByteView data, ByteView mac,
                       MacPadding padding = MacPadding::kMethod2);
// ISO 8583 message MAC: AES-CMAC truncated to 8 bytes.
Result<Bytes> Iso8583Mac(ByteView key, ByteView message);
Status VerifyIso8583Mac(ByteView key, ByteView message, ByteView mac);

// ---- One-time codes --------------------------------------------------------

// HOTP (RFC 4226); digits 6..10 (RFC 6238 allows SHA-256/512 variants).
Result<std::string> Hotp(ByteView key, uint64_t counter, int digits = 6,
                         HashAlg alg = HashAlg::kSha1);
// TOTP (RFC 6238): counter = (unix_time_s - t0) / step_s.
Result<std::string> Totp(ByteView key, int64_t unix_time_s, int digits = 6,
                         HashAlg alg = HashAlg::kSha1, int64_t step_s = 30);
// OCRA (RFC 6287). Suite e.g. "OCRA-1:HOTP-SHA1-6:QN08" or
// "OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1". Only the inputs the suite names are used.
struct OcraInput {
  uint64_t counter = 0;     // C
  std::string question;     // Q: digits (N), text (A) or hex (H)
  Bytes pin_hash;           // P: hash of the PIN, as the suite says
  Bytes session;            // S: session information
  uint64_t time_steps = 0;  // T: already divided by the suite's step
};
Result<std::string> Ocra(std::string_view suite, ByteView key, const OcraInput& input);

// Payment-bound codes for SIMs without an applet: OCRA with a counter and a
// question = hex(SHA-256(amount | currency | merchant)), suite
// kPaymentOcraSuite. Verification scans counters (last, last + window].
inline constexpr std::string_view kPaymentOcraSuite = "OCRA-1:HOTP-SHA256-8:C-QH64";
Result<std::string> PaymentOtp(ByteView key, uint64_t counter, uint64_t amount_minor,
                               uint16_t currency, std::string_view merchant_id);
// Returns the matched counter (the new high-water mark) or PermissionDenied.
Result<uint64_t> VerifyPaymentOtp(ByteView key, uint64_t last_counter, uint64_t window,
                                  std::string_view code, uint64_t amount_minor, uint16_t currency,
                                  std::string_view merchant_id);

// ---- Card: PAN, CVV, PIN ---------------------------------------------------

// PAN = BIN + account digits + Luhn check digit; 13..19 digits in total.
Result<std::string> BuildPan(std::string_view bin, std::string_view account_digits);
Result<char> LuhnCheckDigit(std::string_view digits_without_check);
bool LuhnValid(std::string_view pan);
std::string MaskPan(std::string_view pan);  // first 6, last 4; others '*'

// Visa CVV under a CVK pair A|B (16 bytes). expiry YYMM, service code NNN.
Result<std::string> Cvv(ByteView cvk, std::string_view pan, std::string_view expiry_yymm,
                        std::string_view service_code);
Result<std::string> Cvv2(ByteView cvk, std::string_view pan, std::string_view expiry_yymm);
Result<std::string> Icvv(ByteView cvk, std::string_view pan, std::string_view expiry_yymm);
// OK, or PermissionDenied when the value does not match (constant time).
Status VerifyCvv(ByteView cvk, std::string_view pan, std::string_view expiry_yymm,
                 std::string_view service_code, std::string_view cvv);

// Visa PVV: TSP = 11 rightmost PAN digits (without check digit) + PVKI + PIN(4).
Result<std::string> Pvv(ByteView pvk, std::string_view pan, int pvki, std::string_view pin);
// IBM 3624 PIN offset. Validation data: 16 hex digits (often PAN digits
// padded with F); decimalization table: 16 decimal digits.
Result<std::string> Ibm3624Offset(ByteView pvk, std::string_view decimalization_table,
                                  std::string_view validation_data, std::string_view pin);

// ISO 9564-1 PIN blocks. Format 0 (8 bytes, TDES), format 4 (16 bytes, AES).
enum class PinBlockFormat { kIso0, kIso4 };
Result<Bytes> EncodePinBlockIso0(std::string_view pin, std::string_view pan);  // clear
// Encrypts the PIN under a TDES key (format 0) or AES key (format 4).
// `random_fill` (8 bytes, format 4 only) is for known-answer tests; empty ->
// fresh random bytes.
Result<Bytes> EncryptPinBlock(PinBlockFormat format, ByteView key, std::string_view pin,
                              std::string_view pan, ByteView random_fill = {});
// Decrypt under in_key, check the block strictly, re-encrypt under out_key.
// The clear PIN never leaves this module.
Result<Bytes> TranslatePinBlock(ByteView in_key, PinBlockFormat in_format, ByteView pin_block,
                                std::string_view pan, ByteView out_key, PinBlockFormat out_format);
// PIN verification from an encrypted PIN block: OK, PermissionDenied for a
// wrong PIN, InvalidArgument for a malformed block.
Status VerifyPinPvv(ByteView pin_key, PinBlockFormat format, ByteView pin_block,
                    std::string_view pan, ByteView pvk, int pvki, std::string_view pvv);
Status VerifyPinIbm3624(ByteView pin_key, PinBlockFormat format, ByteView pin_block,
                        std::string_view pan, ByteView pvk, std::string_view decimalization_table,
                        std::string_view validation_data, std::string_view offset);
// Issuance: the PVV of a PIN chosen by the customer, from its PIN block.
Result<std::string> PvvFromPinBlock(ByteView pin_key, PinBlockFormat format, ByteView pin_block,
                                    std::string_view pan, ByteView pvk, int pvki);

// ---- EMV -------------------------------------------------------------------

// Card master key from the IMK-AC, option A: Y = 16 rightmost digits of
// PAN||PSN; ZL = 3DES(Y), ZR = 3DES(Y xor FF..FF); odd parity.
Result<SecretBytes> EmvCardKeyOptionA(ByteView imk, std::string_view pan, std::string_view psn);
// EMV common session key: SK = 3DES(R with R[2]=F0) || 3DES(R with R[2]=0F).
Result<SecretBytes> EmvCommonSessionKey(ByteView card_key, ByteView r);
// R = ATC || 00 00 00 00 00 00.
Result<SecretBytes> EmvSessionKey(ByteView card_key, uint16_t atc);
// ARQC = ISO 9797-1 MAC algorithm 3, padding method 2, over the CDOL1 data.
Result<Bytes> EmvArqc(ByteView session_key, ByteView transaction_data);
// ARPC method 1: 3DES(card key, ARQC xor (ARC || 00..00)); ARC 2 bytes.
Result<Bytes> EmvArpcMethod1(ByteView card_key, ByteView arqc, ByteView arc);
// Whole issuer-side check: derive keys, compare ARQC (constant time).
Status EmvVerifyArqc(ByteView imk, std::string_view pan, std::string_view psn, uint16_t atc,
                     ByteView transaction_data, ByteView arqc);
// AES variant: card key = AES(IMK, Y || Y xor FF..), session key =
// AES(card key, ATC || F0 || 00..), AC = first 8 bytes of AES-CMAC.
Result<SecretBytes> EmvAesCardKey(ByteView imk, std::string_view pan, std::string_view psn);
Result<Bytes> EmvAesArqc(ByteView card_key, uint16_t atc, ByteView transaction_data);

// ATC rule: a counter at or below the last one is a replay; a jump beyond
// max_jump is accepted but flagged for review.
enum class AtcDecision { kAccept, kReplay, kAcceptFlagJump };
AtcDecision CheckAtc(std::optional<uint16_t> last_atc, uint16_t new_atc, uint16_t max_jump);

// ---- SIM-linked payment token ----------------------------------------------

// Per-SIM key = SP 800-108 CMAC counter KDF(IMK-SIM, label "narae-sim",
// context = ICCID digits); 32 bytes. Never derived from the MSISDN.
Result<SecretBytes> DeriveSimKey(ByteView imk_sim, std::string_view iccid);

struct SimPaymentFields {
  uint8_t version = 1;
  std::string token_id;  // 1..64 bytes
  uint64_t counter = 0;  // strictly increasing per SIM
  uint64_t amount_minor = 0;
  uint16_t currency = 0;    // ISO 4217 numeric, e.g. 408
  std::string merchant_id;  // 1..64 bytes
  int64_t unix_time_s = 0;
};
// version | len(token) token | counter BE8 | amount BE8 | currency BE2 |
// len(merchant) merchant | time BE8   (lengths are one byte).
Result<Bytes> EncodeSimPayment(const SimPaymentFields& fields);
// First 8 bytes of AES-CMAC(sim key, EncodeSimPayment(fields)).
Result<Bytes> SimCryptogram(ByteView sim_key, const SimPaymentFields& fields);

struct SimVerifyOptions {
  uint64_t counter_window = 100;  // accept counters in (last, last + window]
  int64_t time_skew_s_max = 300;  // |request time - now| allowed
};
enum class SimCheck {
  kAccepted,
  kMalformed,
  kWrongCryptogram,
  kCounterReplayed,
  kCounterBeyondWindow,
  kTimeOutsideSkew,
};
struct SimVerification {
  SimCheck check = SimCheck::kMalformed;
  uint64_t counter_high_water = 0;  // new counter if accepted, else last
};
// Pure: the caller stores counter_high_water atomically with its ledger hold.
SimVerification VerifySimPayment(ByteView sim_key, uint64_t last_counter, int64_t now_unix_s,
                                 const SimVerifyOptions& options, const SimPaymentFields& fields,
                                 ByteView cryptogram);
const char* SimCheckName(SimCheck check);

// ---- Merchant request signing ----------------------------------------------

// "METHOD\nPATH\nTIMESTAMP\nNONCE\nhex(SHA256(body))" (lower-case hex).
Result<std::string> MerchantCanonicalString(std::string_view method, std::string_view path,
                                            int64_t timestamp_s, std::string_view nonce,
                                            std::string_view body);
// Lower-case hex of HMAC-SHA256(secret, canonical string).
Result<std::string> SignMerchantRequest(ByteView secret, std::string_view method,
                                        std::string_view path, int64_t timestamp_s,
                                        std::string_view nonce, std::string_view body);

// SignMerchantRequest() with the key set up once (the SHA-256 states after the
// HMAC key's pads, made at construction and copied per request): for clients that
// sign many requests with one secret (the load generator). Not thread-safe:
// one per thread or connection. Sign() fails as SignMerchantRequest() does.
class MerchantRequestSigner {
 public:
  // InvalidArgument when the secret is shorter than 16 bytes.
  static Result<std::unique_ptr<MerchantRequestSigner>> Create(ByteView secret);
  ~MerchantRequestSigner();
  Result<std::string> Sign(std::string_view method, std::string_view path, int64_t timestamp_s,
                           std::string_view nonce, std::string_view body);

 private:
  MerchantRequestSigner();
  struct Keyed;  // merchant.cpp
  std::unique_ptr<Keyed> keyed_;
};

// Verifies signature, time skew and nonce freshness. A nonce is remembered
// for 2 * skew seconds; the cache is bounded (Unavailable when full).
// Errors: PermissionDenied (bad signature), FailedPrecondition (timestamp
// skew), AlreadyExists (nonce reused), InvalidArgument (malformed).
class MerchantRequestVerifier {
 public:
  struct Options {
    int64_t skew_s_max = 300;         // |timestamp - now| allowed
    size_t nonce_cache_max = 100000;  // remembered nonces, at most
  };
  explicit MerchantRequestVerifier(Options options);
  ~MerchantRequestVerifier();
  Status Verify(ByteView secret, std::string_view method, std::string_view path,
                int64_t timestamp_s, std::string_view nonce, std::string_view body,
                std::string_view signature_hex, int64_t now_s);
  // Verify() with the body's SHA-256 (32 bytes) computed by the caller, who
  // needs it too (the HTTP API's idempotency fingerprint): the body is hashed
  // once. The same checks and errors as Verify().
  Status VerifyBodyDigest(ByteView secret, std::string_view method, std::string_view path,
                          int64_t timestamp_s, std::string_view nonce, ByteView body_sha256,
                          std::string_view signature_hex, int64_t now_s);
  size_t nonce_count() const;

 private:
  struct KeyedMac;    // the HMAC keyed with the last secret seen (merchant.cpp)
  struct NonceCache;  // the nonces seen, by value and by expiry (merchant.cpp)
  Status KeyedHmac(ByteView secret, std::string_view data, uint8_t (&mac)[32]);
  Options options_;
  mutable std::mutex mu_;
  std::unique_ptr<KeyedMac> mac_;       // GUARDED_BY(mu_)
  std::unique_ptr<NonceCache> nonces_;  // GUARDED_BY(mu_)
};

// ---- Key hierarchy ---------------------------------------------------------

// Master key (KEK): AES-256, 64 hex digits in a file readable only by its
// owner (refused if st_mode & 077), or in an environment variable.
Result<SecretBytes> LoadMasterKeyFile(const std::string& path);
Result<SecretBytes> LoadMasterKeyFromEnv(const char* variable = "NARAE_MASTER_KEY");
// Creates a new random master key file with mode 0600; fails if it exists.
// Returns the KCV of the new key.
Result<std::string> CreateMasterKeyFile(const std::string& path);

enum class KeyType {
  kCvk,
  kPvk,
  kTpk,
  kZpk,
  kImkAc,
  kImkSim,
  kMac,
  kMerchantApiSecret,
  kStatementSigning,
};
enum class KeyAlgorithm { kTdes, kAes, kHmac, kEd25519 };
enum class KeyStatus { kActive, kVerifyOnly, kRetired };
const char* KeyTypeName(KeyType type);
Result<KeyType> ParseKeyType(std::string_view name);

struct KeyInfo {
  std::string id;
  KeyType type = KeyType::kCvk;
  KeyAlgorithm algorithm = KeyAlgorithm::kTdes;
  uint32_t version = 0;
  KeyStatus status = KeyStatus::kActive;
  std::string kcv;
};

// Typed working keys, each wrapped under the master key with AES-256-GCM
// whose AAD is (id, type, algorithm, version): a key can never be unwrapped
// as another type or id. Persisted to <dir>/keys.txt, one line per key,
// written atomically (temp file, fsync, rename, fsync dir).
class KeyStore {
 public:
  // Opens (or starts empty if keys.txt does not exist) the store in `dir`.
  static Result<std::unique_ptr<KeyStore>> Open(const std::string& dir, SecretBytes master_key);

  // Adds a new random version of key `id` (version 1 if new). The previous
  // active version becomes verify-only. Saves the store.
  Result<KeyInfo> Generate(const std::string& id, KeyType type, KeyAlgorithm algorithm,
                           size_t length);
  // Same with given key material (a key ceremony, a test).
  Result<KeyInfo> Import(const std::string& id, KeyType type, KeyAlgorithm algorithm,
                         const SecretBytes& key);
  Status Retire(const std::string& id, uint32_t version);
  std::vector<KeyInfo> List() const;

  // The active version of `id`; error if its type is not `expected`.
  Result<SecretBytes> Use(const std::string& id, KeyType expected) const;
  // Active and verify-only versions, newest first (for verification).
  Result<std::vector<SecretBytes>> UseForVerify(const std::string& id, KeyType expected) const;

  // Typed operations, so callers never touch key material.
  Result<std::string> ComputeCvv(const std::string& cvk_id, std::string_view pan,
                                 std::string_view expiry_yymm, std::string_view service_code) const;
  Status VerifyCvv(const std::string& cvk_id, std::string_view pan, std::string_view expiry_yymm,
                   std::string_view service_code, std::string_view cvv) const;
  Result<Bytes> TranslatePinBlock(const std::string& in_key_id, PinBlockFormat in_format,
                                  ByteView pin_block, std::string_view pan,
                                  const std::string& out_key_id, PinBlockFormat out_format) const;
  Status VerifyPinPvv(const std::string& pin_key_id, PinBlockFormat format, ByteView pin_block,
                      std::string_view pan, const std::string& pvk_id, int pvki,
                      std::string_view pvv) const;
  SimVerification VerifySimPayment(const std::string& imk_sim_id, std::string_view iccid,
                                   uint64_t last_counter, int64_t now_unix_s,
                                   const SimVerifyOptions& options, const SimPaymentFields& fields,
                                   ByteView cryptogram) const;
  Status VerifyMerchantRequest(const std::string& secret_id, MerchantRequestVerifier& verifier,
                               std::string_view method, std::string_view path, int64_t timestamp_s,
                               std::string_view nonce, std::string_view body,
                               std::string_view signature_hex, int64_t now_s) const;
  Status VerifyIso8583Mac(const std::string& mac_key_id, ByteView message, ByteView mac) const;
  Result<Bytes> SignStatement(const std::string& key_id, ByteView message) const;

  ~KeyStore();

 private:
  struct Entry {
    KeyInfo info;
    Bytes wrapped;  // nonce(12) | ciphertext | tag(16)
  };
  KeyStore(std::string dir, SecretBytes master_key);
  Status Load();
  Status SaveLocked() const;
  Result<KeyInfo> AddLocked(const std::string& id, KeyType type, KeyAlgorithm algorithm,
                            const SecretBytes& key);
  Result<SecretBytes> UnwrapEntry(const Entry& entry) const;

  std::string dir_;
  SecretBytes master_key_;
  mutable std::mutex mu_;
  std::vector<Entry> entries_;  // GUARDED_BY(mu_)
};

}  // namespace narae::crypto
