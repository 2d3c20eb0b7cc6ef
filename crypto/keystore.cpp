// The key hierarchy: master key (KEK) files and the KeyStore of typed,
// versioned working keys wrapped under it with AES-256-GCM.
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"

namespace narae::crypto {

namespace {

constexpr size_t kMasterKeySize = 32;
constexpr size_t kGcmIvSize = 12;
constexpr size_t kGcmTagSize = 16;
constexpr size_t kKeysMax = 10000;
constexpr size_t kLineMax = 1024;
constexpr char kStoreFile[] = "keys.txt";
constexpr char kStoreHeader[] = "# narae keystore v1";

std::string ErrnoText() { return std::strerror(errno); }

// Trims ASCII whitespace from both ends.
std::string_view Trim(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\n' || s.front() == '\r' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

Result<SecretBytes> ParseMasterKeyHex(std::string_view text) {
  std::string_view hex = Trim(text);
  if (hex.size() != 2 * kMasterKeySize) {
    return Status::InvalidArgument("master key must be 64 hex digits (AES-256)");
  }
  Result<SecretBytes> key = SecretFromHex(hex);
  if (!key.ok()) return Status::InvalidArgument("master key is not hex");
  return key;
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("open dir " + dir + ": " + ErrnoText());
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError("fsync dir " + dir + ": " + ErrnoText());
  return Status::Ok();
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status WriteAll(int fd, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IOError("write: " + ErrnoText());
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Result<SecretBytes> LoadMasterKeyFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Status::IOError("open master key " + path + ": " + ErrnoText());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return Status::IOError("stat master key: " + ErrnoText());
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::PermissionDenied("master key " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return Status::PermissionDenied("master key " + path +
                                    " is readable or writable by group or others; chmod 600");
  }
  if (st.st_uid != ::geteuid()) {
    ::close(fd);
    return Status::PermissionDenied("master key " + path + " is not owned by this user");
  }
  char buf[256];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  ::close(fd);
  if (n < 0) return Status::IOError("read master key: " + ErrnoText());
  Result<SecretBytes> key = ParseMasterKeyHex(std::string_view(buf, static_cast<size_t>(n)));
  OPENSSL_cleanse(buf, sizeof(buf));
  return key;
}

Result<SecretBytes> LoadMasterKeyFromEnv(const char* variable) {
  const char* value = std::getenv(variable);
  if (value == nullptr) return Status::NotFound(std::string(variable) + " is not set");
  return ParseMasterKeyHex(value);
}

Result<std::string> CreateMasterKeyFile(const std::string& path) {
  Result<SecretBytes> key = RandomKey(kMasterKeySize);
  if (!key.ok()) return key.status();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("create " + path + ": " + ErrnoText());
  std::string hex = ToHex(*key) + "\n";
  Status st = ::fchmod(fd, 0600) == 0 ? Status::Ok() : Status::IOError("fchmod: " + ErrnoText());
  if (st.ok()) st = WriteAll(fd, hex);
  if (st.ok() && ::fsync(fd) != 0) st = Status::IOError("fsync: " + ErrnoText());
  ::close(fd);
  OPENSSL_cleanse(hex.data(), hex.size());
  if (!st.ok()) {
    ::unlink(path.c_str());
    return st;
  }
  NARAE_RETURN_IF_ERROR(FsyncDir(DirOf(path)));
  return KcvAes(*key);
}

// ---- Names -------------------------------------------------------------------

namespace {
struct TypeName {
  KeyType type;
  const char* name;
};
constexpr TypeName kTypeNames[] = {{KeyType::kCvk, "CVK"},
                                   {KeyType::kPvk, "PVK"},
                                   {KeyType::kTpk, "TPK"},
                                   {KeyType::kZpk, "ZPK"},
                                   {KeyType::kImkAc, "IMK_AC"},
                                   {KeyType::kImkSim, "IMK_SIM"},
                                   {KeyType::kMac, "MAC"},
                                   {KeyType::kMerchantApiSecret, "MERCHANT_API_SECRET"},
                                   {KeyType::kStatementSigning, "STATEMENT_SIGNING"}};

const char* AlgorithmName(KeyAlgorithm a) {
  switch (a) {
    case KeyAlgorithm::kTdes:
      return "TDES";
    case KeyAlgorithm::kAes:
      return "AES";
    case KeyAlgorithm::kHmac:
      return "HMAC";
    case KeyAlgorithm::kEd25519:
      return "ED25519";
  }
  return "?";
}

Result<KeyAlgorithm> ParseAlgorithm(std::string_view s) {
  for (KeyAlgorithm a :
       {KeyAlgorithm::kTdes, KeyAlgorithm::kAes, KeyAlgorithm::kHmac, KeyAlgorithm::kEd25519}) {
    if (s == AlgorithmName(a)) return a;
  }
  return Status::InvalidArgument("unknown key algorithm");
}

const char* StatusName(KeyStatus s) {
  switch (s) {
    case KeyStatus::kActive:
      return "active";
    case KeyStatus::kVerifyOnly:
      return "verify-only";
    case KeyStatus::kRetired:
      return "retired";
  }
  return "?";
}

Result<KeyStatus> ParseStatus(std::string_view s) {
  for (KeyStatus k : {KeyStatus::kActive, KeyStatus::kVerifyOnly, KeyStatus::kRetired}) {
    if (s == StatusName(k)) return k;
  }
  return Status::InvalidArgument("unknown key status");
}

bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

// Which algorithms and lengths each key type may have.
Status CheckKeyShape(KeyType type, KeyAlgorithm alg, size_t len) {
  bool tdes = alg == KeyAlgorithm::kTdes && (len == 16 || len == 24);
  bool aes = alg == KeyAlgorithm::kAes && (len == 16 || len == 24 || len == 32);
  bool ok = false;
  switch (type) {
    case KeyType::kCvk:
    case KeyType::kPvk:
      ok = alg == KeyAlgorithm::kTdes && len == 16;
      break;
    case KeyType::kImkAc:
      ok = (alg == KeyAlgorithm::kTdes && len == 16) || aes;
      break;
    case KeyType::kTpk:
    case KeyType::kZpk:
    case KeyType::kMac:
      ok = tdes || aes;
      break;
    case KeyType::kImkSim:
      ok = aes;
      break;
    case KeyType::kMerchantApiSecret:
      ok = alg == KeyAlgorithm::kHmac && len >= 32 && len <= 64;
      break;
    case KeyType::kStatementSigning:
      ok = alg == KeyAlgorithm::kEd25519 && len == 32;
      break;
  }
  if (!ok) {
    return Status::InvalidArgument(std::string("a ") + KeyTypeName(type) + " cannot be a " +
                                   std::to_string(len) + "-byte " + AlgorithmName(alg) + " key");
  }
  return Status::Ok();
}

Result<std::string> KeyKcv(KeyAlgorithm alg, const SecretBytes& key) {
  switch (alg) {
    case KeyAlgorithm::kTdes:
      return KcvTdes(key);
    case KeyAlgorithm::kAes:
      return KcvAes(key);
    case KeyAlgorithm::kHmac: {
      static const uint8_t kZero[16] = {0};
      Result<Bytes> mac = Hmac(HashAlg::kSha256, key, ByteView(kZero, 16));
      if (!mac.ok()) return mac.status();
      return ToHex(ByteView(mac->data(), 3));
    }
    case KeyAlgorithm::kEd25519: {
      Result<Bytes> pub = Ed25519PublicKey(key);
      if (!pub.ok()) return pub.status();
      Result<Bytes> digest = Sha256(*pub);
      if (!digest.ok()) return digest.status();
      return ToHex(ByteView(digest->data(), 3));
    }
  }
  return Status::Internal("key algorithm");
}

std::string Aad(const KeyInfo& info) {
  std::string aad = "narae-key-v1";
  aad.push_back('\0');
  aad += info.id;
  aad.push_back('\0');
  aad += KeyTypeName(info.type);
  aad.push_back('\0');
  aad += AlgorithmName(info.algorithm);
  aad.push_back('\0');
  aad += std::to_string(info.version);
  return aad;
}

Result<Bytes> GcmSeal(const SecretBytes& kek, std::string_view aad, const SecretBytes& plain) {
  Result<Bytes> iv = RandomBytes(kGcmIvSize);
  if (!iv.ok()) return iv.status();
  internal::CipherPtr cipher(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
  internal::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!cipher || !ctx) return internal::OpenSslError("AES-256-GCM");
  Bytes out(*iv);
  out.resize(kGcmIvSize + plain.size() + kGcmTagSize);
  int len = 0;
  int fin = 0;
  if (EVP_EncryptInit_ex2(ctx.get(), cipher.get(), kek.data(), iv->data(), nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const uint8_t*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data() + kGcmIvSize, &len, plain.data(),
                        static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + kGcmIvSize + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTagSize,
                          out.data() + kGcmIvSize + plain.size()) != 1) {
    return internal::OpenSslError("wrap key");
  }
  NARAE_CHECK(static_cast<size_t>(len + fin) == plain.size());
  return out;
}

Result<SecretBytes> GcmOpen(const SecretBytes& kek, std::string_view aad, ByteView sealed) {
  if (sealed.size() <= kGcmIvSize + kGcmTagSize) {
    return Status::Corruption("wrapped key too short");
  }
  size_t body = sealed.size() - kGcmIvSize - kGcmTagSize;
  internal::CipherPtr cipher(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
  internal::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!cipher || !ctx) return internal::OpenSslError("AES-256-GCM");
  SecretBytes out(body);
  int len = 0;
  int fin = 0;
  Bytes tag(sealed.end() - kGcmTagSize, sealed.end());
  if (EVP_DecryptInit_ex2(ctx.get(), cipher.get(), kek.data(), sealed.data(), nullptr) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const uint8_t*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &len, sealed.data() + kGcmIvSize,
                        static_cast<int>(body)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagSize, tag.data()) != 1) {
    return internal::OpenSslError("unwrap key");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &fin) != 1) {
    ERR_clear_error();
    return Status::Crypto("wrapped key fails authentication (tampered, or wrong master key)");
  }
  return out;
}

}  // namespace

const char* KeyTypeName(KeyType type) {
  for (const TypeName& t : kTypeNames) {
    if (t.type == type) return t.name;
  }
  return "?";
}

Result<KeyType> ParseKeyType(std::string_view name) {
  for (const TypeName& t : kTypeNames) {
    if (name == t.name) return t.type;
  }
  return Status::InvalidArgument("unknown key type " + std::string(name));
}

// ---- KeyStore ------------------------------------------------------------------

KeyStore::KeyStore(std::string dir, SecretBytes master_key)
    : dir_(std::move(dir)), master_key_(std::move(master_key)) {}
KeyStore::~KeyStore() = default;

Result<std::unique_ptr<KeyStore>> KeyStore::Open(const std::string& dir, SecretBytes master_key) {
  if (master_key.size() != kMasterKeySize) {
    return Status::InvalidArgument("master key must be 32 bytes");
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::NotFound("key store directory " + dir + " does not exist");
  }
  std::unique_ptr<KeyStore> store(new KeyStore(dir, std::move(master_key)));
  NARAE_RETURN_IF_ERROR(store->Load());
  return store;
}

Status KeyStore::Load() {
  std::string path = dir_ + "/" + kStoreFile;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return Status::Ok();  // a new, empty store
    return Status::IOError("open " + path + ": " + ErrnoText());
  }
  std::string line;
  size_t line_no = 0;
  std::vector<Entry> entries;
  while (std::getline(in, line)) {
    ++line_no;
    std::string where = path + ":" + std::to_string(line_no);
    if (line.size() > kLineMax) return Status::Corruption(where + ": line too long");
    if (line_no == 1) {
      if (line != kStoreHeader) return Status::Corruption(where + ": not a narae key store");
      continue;
    }
    if (line.empty()) continue;
    if (entries.size() >= kKeysMax) return Status::Corruption(where + ": too many keys");
    std::istringstream fields(line);
    std::string id, type, alg, version, status, kcv, wrapped, extra;
    if (!(fields >> id >> type >> alg >> version >> status >> kcv >> wrapped) ||
        (fields >> extra)) {
      return Status::Corruption(where + ": expected 7 fields");
    }
    Entry e;
    Result<KeyType> t = ParseKeyType(type);
    Result<KeyAlgorithm> a = ParseAlgorithm(alg);
    Result<KeyStatus> s = ParseStatus(status);
    Result<Bytes> w = FromHex(wrapped);
    if (!ValidId(id) || !t.ok() || !a.ok() || !s.ok() || !w.ok() || !internal::IsDigits(version) ||
        version.size() > 9 || kcv.size() != 6) {
      return Status::Corruption(where + ": malformed field");
    }
    e.info = KeyInfo{id, *t, *a, static_cast<uint32_t>(std::stoul(version)), *s, kcv};
    e.wrapped = std::move(*w);
    // Check what was read: it must unwrap under this master key and match
    // its KCV.
    Result<SecretBytes> key = UnwrapEntry(e);
    if (!key.ok()) return Status::Corruption(where + ": " + key.status().message());
    entries.push_back(std::move(e));
  }
  std::lock_guard<std::mutex> lock(mu_);
  entries_ = std::move(entries);
  return Status::Ok();
}

Result<SecretBytes> KeyStore::UnwrapEntry(const Entry& entry) const {
  Result<SecretBytes> key = GcmOpen(master_key_, Aad(entry.info), entry.wrapped);
  if (!key.ok()) return key.status();
  Result<std::string> kcv = KeyKcv(entry.info.algorithm, *key);
  if (!kcv.ok()) return kcv.status();
  if (*kcv != entry.info.kcv) return Status::Corruption("key " + entry.info.id + ": KCV mismatch");
  return key;
}

Status KeyStore::SaveLocked() const {
  std::string text = std::string(kStoreHeader) + "\n";
  for (const Entry& e : entries_) {
    text += e.info.id + " " + KeyTypeName(e.info.type) + " " + AlgorithmName(e.info.algorithm) +
            " " + std::to_string(e.info.version) + " " + StatusName(e.info.status) + " " +
            e.info.kcv + " " + ToHex(e.wrapped) + "\n";
  }
  std::string path = dir_ + "/" + kStoreFile;
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("create " + tmp + ": " + ErrnoText());
  Status st = WriteAll(fd, text);
  if (st.ok() && ::fsync(fd) != 0) st = Status::IOError("fsync " + tmp + ": " + ErrnoText());
  ::close(fd);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = Status::IOError("rename " + tmp + ": " + ErrnoText());
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncDir(dir_);
}

Result<KeyInfo> KeyStore::AddLocked(const std::string& id, KeyType type, KeyAlgorithm algorithm,
                                    const SecretBytes& key) {
  if (!ValidId(id)) return Status::InvalidArgument("key id must be 1..64 of [A-Za-z0-9._-]");
  NARAE_RETURN_IF_ERROR(CheckKeyShape(type, algorithm, key.size()));
  if (entries_.size() >= kKeysMax) return Status::Unavailable("key store is full");
  uint32_t version = 0;
  for (const Entry& e : entries_) {
    if (e.info.id != id) continue;
    if (e.info.type != type || e.info.algorithm != algorithm) {
      return Status::AlreadyExists("key " + id + " exists as a " + KeyTypeName(e.info.type) + " " +
                                   AlgorithmName(e.info.algorithm) + " key");
    }
    version = std::max(version, e.info.version);
  }
  Result<std::string> kcv = KeyKcv(algorithm, key);
  if (!kcv.ok()) return kcv.status();
  Entry entry;
  entry.info = KeyInfo{id, type, algorithm, version + 1, KeyStatus::kActive, *kcv};
  Result<Bytes> wrapped = GcmSeal(master_key_, Aad(entry.info), key);
  if (!wrapped.ok()) return wrapped.status();
  entry.wrapped = std::move(*wrapped);
  std::vector<Entry> before = entries_;
  for (Entry& e : entries_) {
    if (e.info.id == id && e.info.status == KeyStatus::kActive) {
      e.info.status = KeyStatus::kVerifyOnly;
    }
  }
  entries_.push_back(entry);
  Status st = SaveLocked();
  if (!st.ok()) {
    entries_ = std::move(before);  // nothing acknowledged that is not on disk
    return st;
  }
  return entry.info;
}

Result<KeyInfo> KeyStore::Generate(const std::string& id, KeyType type, KeyAlgorithm algorithm,
                                   size_t length) {
  Result<SecretBytes> key = RandomKey(length);
  if (!key.ok()) return key.status();
  if (algorithm == KeyAlgorithm::kTdes) {
    for (size_t i = 0; i < key->size(); ++i) {  // odd parity, as HSMs store DES keys
      uint8_t b = key->data()[i] & 0xFE;
      key->data()[i] = static_cast<uint8_t>(b | (__builtin_popcount(b) % 2 == 0 ? 1 : 0));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  return AddLocked(id, type, algorithm, *key);
}

Result<KeyInfo> KeyStore::Import(const std::string& id, KeyType type, KeyAlgorithm algorithm,
                                 const SecretBytes& key) {
  std::lock_guard<std::mutex> lock(mu_);
  return AddLocked(id, type, algorithm, key);
}

Status KeyStore::Retire(const std::string& id, uint32_t version) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Entry> before = entries_;
  bool found = false;
  for (Entry& e : entries_) {
    if (e.info.id == id && e.info.version == version) {
      e.info.status = KeyStatus::kRetired;
      found = true;
    }
  }
  if (!found) return Status::NotFound("no key " + id + " version " + std::to_string(version));
  Status st = SaveLocked();
  if (!st.ok()) entries_ = std::move(before);
  return st;
}

std::vector<KeyInfo> KeyStore::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<KeyInfo> out;
  for (const Entry& e : entries_) out.push_back(e.info);
  return out;
}

Result<SecretBytes> KeyStore::Use(const std::string& id, KeyType expected) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Entry& e : entries_) {
    if (e.info.id != id) continue;
    if (e.info.type != expected) {
      return Status::PermissionDenied("key " + id + " is a " + KeyTypeName(e.info.type) +
                                      ", not a " + KeyTypeName(expected));
    }
    if (e.info.status == KeyStatus::kActive) return UnwrapEntry(e);
  }
  return Status::NotFound("no active key " + id);
}

Result<std::vector<SecretBytes>> KeyStore::UseForVerify(const std::string& id,
                                                        KeyType expected) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<const Entry*> usable;
  for (const Entry& e : entries_) {
    if (e.info.id != id) continue;
    if (e.info.type != expected) {
      return Status::PermissionDenied("key " + id + " is a " + KeyTypeName(e.info.type) +
                                      ", not a " + KeyTypeName(expected));
    }
    if (e.info.status != KeyStatus::kRetired) usable.push_back(&e);
  }
  if (usable.empty()) return Status::NotFound("no usable key " + id);
  std::sort(usable.begin(), usable.end(),
            [](const Entry* a, const Entry* b) { return a->info.version > b->info.version; });
  std::vector<SecretBytes> keys;
  for (const Entry* e : usable) {
    Result<SecretBytes> key = UnwrapEntry(*e);
    if (!key.ok()) return key.status();
    keys.push_back(std::move(*key));
  }
  return keys;
}

// ---- Typed operations ------------------------------------------------------------

Result<std::string> KeyStore::ComputeCvv(const std::string& cvk_id, std::string_view pan,
                                         std::string_view expiry_yymm,
                                         std::string_view service_code) const {
  Result<SecretBytes> cvk = Use(cvk_id, KeyType::kCvk);
  if (!cvk.ok()) return cvk.status();
  return Cvv(*cvk, pan, expiry_yymm, service_code);
}

Status KeyStore::VerifyCvv(const std::string& cvk_id, std::string_view pan,
                           std::string_view expiry_yymm, std::string_view service_code,
                           std::string_view cvv) const {
  Result<std::vector<SecretBytes>> keys = UseForVerify(cvk_id, KeyType::kCvk);
  if (!keys.ok()) return keys.status();
  Status last = Status::PermissionDenied("CVV does not match");
  for (const SecretBytes& k : *keys) {
    last = crypto::VerifyCvv(k, pan, expiry_yymm, service_code, cvv);
    if (last.code() != StatusCode::kPermissionDenied) return last;
  }
  return last;
}

Result<Bytes> KeyStore::TranslatePinBlock(const std::string& in_key_id, PinBlockFormat in_format,
                                          ByteView pin_block, std::string_view pan,
                                          const std::string& out_key_id,
                                          PinBlockFormat out_format) const {
  // The incoming key may be a terminal's TPK or a zone's ZPK.
  Result<SecretBytes> in = Use(in_key_id, KeyType::kTpk);
  if (!in.ok() && in.status().code() == StatusCode::kPermissionDenied) {
    in = Use(in_key_id, KeyType::kZpk);
  }
  if (!in.ok()) return in.status();
  Result<SecretBytes> out = Use(out_key_id, KeyType::kZpk);
  if (!out.ok()) return out.status();
  return crypto::TranslatePinBlock(*in, in_format, pin_block, pan, *out, out_format);
}

Status KeyStore::VerifyPinPvv(const std::string& pin_key_id, PinBlockFormat format,
                              ByteView pin_block, std::string_view pan, const std::string& pvk_id,
                              int pvki, std::string_view pvv) const {
  Result<SecretBytes> pin_key = Use(pin_key_id, KeyType::kZpk);
  if (!pin_key.ok() && pin_key.status().code() == StatusCode::kPermissionDenied) {
    pin_key = Use(pin_key_id, KeyType::kTpk);
  }
  if (!pin_key.ok()) return pin_key.status();
  Result<std::vector<SecretBytes>> pvks = UseForVerify(pvk_id, KeyType::kPvk);
  if (!pvks.ok()) return pvks.status();
  Status last = Status::PermissionDenied("PIN does not verify");
  for (const SecretBytes& pvk : *pvks) {
    last = crypto::VerifyPinPvv(*pin_key, format, pin_block, pan, pvk, pvki, pvv);
    if (last.code() != StatusCode::kPermissionDenied) return last;
  }
  return last;
}

SimVerification KeyStore::VerifySimPayment(const std::string& imk_sim_id, std::string_view iccid,
                                           uint64_t last_counter, int64_t now_unix_s,
                                           const SimVerifyOptions& options,
                                           const SimPaymentFields& fields,
                                           ByteView cryptogram) const {
  SimVerification result{SimCheck::kMalformed, last_counter};
  Result<std::vector<SecretBytes>> imks = UseForVerify(imk_sim_id, KeyType::kImkSim);
  if (!imks.ok()) return result;
  for (const SecretBytes& imk : *imks) {
    Result<SecretBytes> sim_key = DeriveSimKey(imk, iccid);
    if (!sim_key.ok()) return result;
    result =
        crypto::VerifySimPayment(*sim_key, last_counter, now_unix_s, options, fields, cryptogram);
    if (result.check != SimCheck::kWrongCryptogram) return result;
  }
  return result;
}

Status KeyStore::VerifyMerchantRequest(const std::string& secret_id,
                                       MerchantRequestVerifier& verifier, std::string_view method,
                                       std::string_view path, int64_t timestamp_s,
                                       std::string_view nonce, std::string_view body,
                                       std::string_view signature_hex, int64_t now_s) const {
  Result<std::vector<SecretBytes>> secrets = UseForVerify(secret_id, KeyType::kMerchantApiSecret);
  if (!secrets.ok()) return secrets.status();
  Status last = Status::PermissionDenied("request signature does not verify");
  for (const SecretBytes& s : *secrets) {
    last = verifier.Verify(s, method, path, timestamp_s, nonce, body, signature_hex, now_s);
    if (last.code() != StatusCode::kPermissionDenied) return last;
  }
  return last;
}

Status KeyStore::VerifyIso8583Mac(const std::string& mac_key_id, ByteView message,
                                  ByteView mac) const {
  Result<std::vector<SecretBytes>> keys = UseForVerify(mac_key_id, KeyType::kMac);
  if (!keys.ok()) return keys.status();
  KeyAlgorithm algorithm = KeyAlgorithm::kAes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Entry& e : entries_) {
      if (e.info.id == mac_key_id) algorithm = e.info.algorithm;  // one per id
    }
  }
  Status last = Status::PermissionDenied("MAC does not verify");
  for (const SecretBytes& k : *keys) {
    last = algorithm == KeyAlgorithm::kAes ? crypto::VerifyIso8583Mac(k, message, mac)
                                           : crypto::VerifyRetailMac(k, message, mac);
    if (last.code() != StatusCode::kPermissionDenied) return last;
  }
  return last;
}

Result<Bytes> KeyStore::SignStatement(const std::string& key_id, ByteView message) const {
  Result<SecretBytes> key = Use(key_id, KeyType::kStatementSigning);
  if (!key.ok()) return key.status();
  return Ed25519Sign(*key, message);
}

}  // namespace narae::crypto
