// Master key files and the KeyStore: permissions, typing, rotation, tamper.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "crypto/crypto.hpp"

namespace narae::crypto {
namespace {

inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) {
  return r.status();
}
#define ASSERT_OK(expr)                                      \
  do {                                                       \
    const auto& ok_or_ = (expr);                             \
    ASSERT_TRUE(ok_or_.ok()) << StatusOf(ok_or_).ToString(); \
  } while (0)

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "narae-ks-XXXXXX").string();
    NARAE_CHECK(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

SecretBytes TestMaster() {
  Result<SecretBytes> k =
      SecretFromHex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
  NARAE_CHECK(k.ok());
  return *k;
}

TEST(MasterKey, CreateThenLoadWithMode0600) {
  TempDir dir;
  std::string path = dir.path() + "/master.key";
  Result<std::string> kcv = CreateMasterKeyFile(path);
  ASSERT_OK(kcv);
  EXPECT_EQ(kcv->size(), 6u);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Result<SecretBytes> key = LoadMasterKeyFile(path);
  ASSERT_OK(key);
  EXPECT_EQ(key->size(), 32u);
  Result<std::string> again = KcvAes(*key);
  ASSERT_OK(again);
  EXPECT_EQ(*again, *kcv);
  // Never overwrites an existing key.
  EXPECT_EQ(CreateMasterKeyFile(path).status().code(), StatusCode::kIOError);
}

TEST(MasterKey, GroupOrWorldReadableFileRefused) {
  TempDir dir;
  std::string path = dir.path() + "/master.key";
  ASSERT_OK(CreateMasterKeyFile(path));
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  EXPECT_EQ(LoadMasterKeyFile(path).status().code(), StatusCode::kPermissionDenied);
  ASSERT_EQ(::chmod(path.c_str(), 0604), 0);
  EXPECT_EQ(LoadMasterKeyFile(path).status().code(), StatusCode::kPermissionDenied);
  ASSERT_EQ(::chmod(path.c_str(), 0620), 0);
  EXPECT_EQ(LoadMasterKeyFile(path).status().code(), StatusCode::kPermissionDenied);
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(LoadMasterKeyFile(path).ok());
  EXPECT_EQ(LoadMasterKeyFile(dir.path() + "/missing").status().code(), StatusCode::kIOError);
  EXPECT_EQ(LoadMasterKeyFile(dir.path()).status().code(), StatusCode::kPermissionDenied);
}

TEST(MasterKey, BadContentAndEnvironment) {
  TempDir dir;
  std::string path = dir.path() + "/bad.key";
  WriteFile(path, "0011\n");
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  EXPECT_EQ(LoadMasterKeyFile(path).status().code(), StatusCode::kInvalidArgument);
  WriteFile(path, std::string(64, 'z'));
  EXPECT_EQ(LoadMasterKeyFile(path).status().code(), StatusCode::kInvalidArgument);
  ::setenv("NARAE_TEST_MK", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", 1);
  Result<SecretBytes> env = LoadMasterKeyFromEnv("NARAE_TEST_MK");
  ASSERT_OK(env);
  EXPECT_TRUE(ConstantTimeEqual(*env, TestMaster()));
  ::setenv("NARAE_TEST_MK", "xyz", 1);
  EXPECT_EQ(LoadMasterKeyFromEnv("NARAE_TEST_MK").status().code(), StatusCode::kInvalidArgument);
  ::unsetenv("NARAE_TEST_MK");
  EXPECT_EQ(LoadMasterKeyFromEnv("NARAE_TEST_MK").status().code(), StatusCode::kNotFound);
}

TEST(KeyStore, GeneratePersistReopenAndUse) {
  TempDir dir;
  std::string kcv;
  {
    Result<std::unique_ptr<KeyStore>> ks = KeyStore::Open(dir.path(), TestMaster());
    ASSERT_OK(ks);
    Result<KeyInfo> cvk = (*ks)->Generate("cvk-narae", KeyType::kCvk, KeyAlgorithm::kTdes, 16);
    ASSERT_OK(cvk);
    EXPECT_EQ(cvk->version, 1u);
    kcv = cvk->kcv;
  }
  std::string text = ReadFile(dir.path() + "/keys.txt");
  EXPECT_NE(text.find("cvk-narae CVK TDES 1 active " + kcv + " "), std::string::npos);
  Result<std::unique_ptr<KeyStore>> ks = KeyStore::Open(dir.path(), TestMaster());
  ASSERT_OK(ks);
  Result<SecretBytes> key = (*ks)->Use("cvk-narae", KeyType::kCvk);
  ASSERT_OK(key);
  // The raw key is not in the file, only its wrapped form.
  EXPECT_EQ(text.find(ToHex(*key)), std::string::npos);
  Result<std::string> cvv = (*ks)->ComputeCvv("cvk-narae", "4123456789012345", "8701", "101");
  ASSERT_OK(cvv);
  EXPECT_TRUE((*ks)->VerifyCvv("cvk-narae", "4123456789012345", "8701", "101", *cvv).ok());
  std::string wrong = *cvv;
  wrong[0] = wrong[0] == '9' ? '0' : static_cast<char>(wrong[0] + 1);
  EXPECT_EQ((*ks)->VerifyCvv("cvk-narae", "4123456789012345", "8701", "101", wrong).code(),
            StatusCode::kPermissionDenied);
}

TEST(KeyStore, KeyUsedAsWrongTypeRefused) {
  TempDir dir;
  Result<std::unique_ptr<KeyStore>> ks = KeyStore::Open(dir.path(), TestMaster());
  ASSERT_OK(ks);
  ASSERT_OK((*ks)->Generate("k1", KeyType::kCvk, KeyAlgorithm::kTdes, 16));
  EXPECT_EQ((*ks)->Use("k1", KeyType::kPvk).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ((*ks)->UseForVerify("k1", KeyType::kZpk).status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ((*ks)->SignStatement("k1", Bytes{1}).status().code(), StatusCode::kPermissionDenied);
  Result<Bytes> pb = FromHex("0412AC89ABCDEF67");
  ASSERT_OK(pb);
  EXPECT_EQ(
      (*ks)
          ->VerifyPinPvv("k1", PinBlockFormat::kIso0, *pb, "4123456789012345", "k1", 1, "1234")
          .code(),
      StatusCode::kPermissionDenied);
  // The same id cannot be re-created as another type.
  EXPECT_EQ((*ks)->Generate("k1", KeyType::kPvk, KeyAlgorithm::kTdes, 16).status().code(),
            StatusCode::kAlreadyExists);
  // Shapes: a CVK must be double-length TDES; a signing key Ed25519.
  EXPECT_FALSE((*ks)->Generate("k2", KeyType::kCvk, KeyAlgorithm::kAes, 16).ok());
  EXPECT_FALSE((*ks)->Generate("k3", KeyType::kStatementSigning, KeyAlgorithm::kAes, 32).ok());
  EXPECT_FALSE((*ks)->Generate("bad id", KeyType::kCvk, KeyAlgorithm::kTdes, 16).ok());
  EXPECT_EQ((*ks)->Use("missing", KeyType::kCvk).status().code(), StatusCode::kNotFound);
}

TEST(KeyStore, TypeFieldEditedInFileFailsToUnwrap) {
  TempDir dir;
  {
    Result<std::unique_ptr<KeyStore>> ks = KeyStore::Open(dir.path(), TestMaster());
    ASSERT_OK(ks);
    ASSERT_OK((*ks)->Generate("k1", KeyType::kCvk, KeyAlgorithm::kTdes, 16));
  }
  std::string path = dir.path() + "/keys.txt";
  std::string text = ReadFile(path);
  size_t at = text.find(" CVK ");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 5, " PVK ");  // the AAD binds the type: unwrap must fail
  WriteFile(path, text);
  Result<std::unique_ptr<KeyStore>> ks = KeyStore::Open(dir.path(), TestMaster());
  EXPECT_EQ(ks.status().code(), StatusCode::kCorruption);
}

TEST(KeyStore, TamperedWrappedKeyOrWrongMasterFailsToUnwrap) {
  TempDir dir;
  {
    Result<std::unique_ptr<KeyStore>> ks = KeyStore::Open(dir.path(), TestMaster());
    ASSERT_OK(ks);
    ASSERT_OK((*ks)->Generate("zpk-1", KeyType::kZpk, KeyAlgorithm::kAes, 16));
  }
  std::string path = dir.path() + "/keys.txt";
  std::string good = ReadFile(path);
  std::string text = good;
  char& last_hex = text[text.size() - 2];  // inside the GCM tag
  last_hex = last_hex == '0' ? '1' : '0';
  WriteFile(path, text);
  EXPECT_EQ(KeyStore::Open(dir.path(), TestMaster()).status().code(), StatusCode::kCorruption);
  WriteFile(path, good);
  Result<SecretBytes> other =
      SecretFromHex("FF0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
  ASSERT_OK(other);
  EXPECT_EQ(KeyStore::Open(dir.path(), *other).status().code(), StatusCode::kCorruption);
  WriteFile(path, "not a key store\n");
  EXPECT_EQ(KeyStore::Open(dir.path(), TestMaster()).status().code(), StatusCode::kCorruption);
  WriteFile(path, "# narae keystore v1\nk1 CVK TDES 1 active ABCDEF\n");
  EXPECT_EQ(KeyStore::Open(dir.path(), TestMaster()).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(KeyStore::Open(dir.path() + "/nope", TestMaster()).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(KeyStore::Open(dir.path(), SecretBytes(16)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(KeyStore, RotationKeepsOldVersionForVerificationUntilRetired) {
  TempDir dir;
  Result<std::unique_ptr<KeyStore>> ks = KeyStore::Open(dir.path(), TestMaster());
  ASSERT_OK(ks);
  KeyStore& store = **ks;
  ASSERT_OK(store.Generate("cvk", KeyType::kCvk, KeyAlgorithm::kTdes, 16));
  Result<std::string> old_cvv = store.ComputeCvv("cvk", "4123456789012345", "8701", "101");
  ASSERT_OK(old_cvv);
  Result<KeyInfo> v2 = store.Generate("cvk", KeyType::kCvk, KeyAlgorithm::kTdes, 16);
  ASSERT_OK(v2);
  EXPECT_EQ(v2->version, 2u);
  std::vector<KeyInfo> list = store.List();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].status, KeyStatus::kVerifyOnly);
  EXPECT_EQ(list[1].status, KeyStatus::kActive);
  Result<std::vector<SecretBytes>> keys = store.UseForVerify("cvk", KeyType::kCvk);
  ASSERT_OK(keys);
  EXPECT_EQ(keys->size(), 2u);
  // A card issued under version 1 still verifies.
  EXPECT_TRUE(store.VerifyCvv("cvk", "4123456789012345", "8701", "101", *old_cvv).ok());
  ASSERT_OK(store.Retire("cvk", 1));
  Result<std::string> new_cvv = store.ComputeCvv("cvk", "4123456789012345", "8701", "101");
  ASSERT_OK(new_cvv);
  if (*new_cvv != *old_cvv) {
    EXPECT_EQ(store.VerifyCvv("cvk", "4123456789012345", "8701", "101", *old_cvv).code(),
              StatusCode::kPermissionDenied);
  }
  EXPECT_EQ(store.Retire("cvk", 9).code(), StatusCode::kNotFound);
  // The retirement is on disk.
  Result<std::unique_ptr<KeyStore>> reopened = KeyStore::Open(dir.path(), TestMaster());
  ASSERT_OK(reopened);
  EXPECT_EQ((*reopened)->List()[0].status, KeyStatus::kRetired);
}

TEST(KeyStore, TypedOperationsForSimMerchantMacAndStatements) {
  TempDir dir;
  Result<std::unique_ptr<KeyStore>> ks = KeyStore::Open(dir.path(), TestMaster());
  ASSERT_OK(ks);
  KeyStore& store = **ks;
  ASSERT_OK(store.Generate("imk-sim", KeyType::kImkSim, KeyAlgorithm::kAes, 32));
  ASSERT_OK(store.Generate("m-001", KeyType::kMerchantApiSecret, KeyAlgorithm::kHmac, 32));
  ASSERT_OK(store.Generate("mac-acq1", KeyType::kMac, KeyAlgorithm::kAes, 16));
  ASSERT_OK(store.Generate("stmt", KeyType::kStatementSigning, KeyAlgorithm::kEd25519, 32));

  // SIM: derive the key the way personalization would, then verify.
  const std::string iccid = "8985001234567890122";
  Result<SecretBytes> imk = store.Use("imk-sim", KeyType::kImkSim);
  ASSERT_OK(imk);
  Result<SecretBytes> sim_key = DeriveSimKey(*imk, iccid);
  ASSERT_OK(sim_key);
  SimPaymentFields f;
  f.token_id = "tok-1";
  f.counter = 3;
  f.amount_minor = 5000;
  f.currency = 408;
  f.merchant_id = "okryu-socks";
  f.unix_time_s = 1767225600;
  Result<Bytes> c = SimCryptogram(*sim_key, f);
  ASSERT_OK(c);
  EXPECT_EQ(store.VerifySimPayment("imk-sim", iccid, 2, f.unix_time_s, {}, f, *c).check,
            SimCheck::kAccepted);
  EXPECT_EQ(store.VerifySimPayment("imk-sim", iccid, 3, f.unix_time_s, {}, f, *c).check,
            SimCheck::kCounterReplayed);
  EXPECT_EQ(store.VerifySimPayment("m-001", iccid, 2, f.unix_time_s, {}, f, *c).check,
            SimCheck::kMalformed);  // wrong key type

  // Merchant request.
  Result<SecretBytes> secret = store.Use("m-001", KeyType::kMerchantApiSecret);
  ASSERT_OK(secret);
  Result<std::string> sig =
      SignMerchantRequest(*secret, "POST", "/v1/payments", 1700000000, "nonce-abcdef", "{}");
  ASSERT_OK(sig);
  MerchantRequestVerifier verifier({});
  EXPECT_TRUE(store
                  .VerifyMerchantRequest("m-001", verifier, "POST", "/v1/payments", 1700000000,
                                         "nonce-abcdef", "{}", *sig, 1700000001)
                  .ok());
  EXPECT_EQ(store
                .VerifyMerchantRequest("m-001", verifier, "POST", "/v1/payments", 1700000000,
                                       "nonce-abcdeg", "{}", *sig, 1700000001)
                .code(),
            StatusCode::kPermissionDenied);

  // ISO 8583 MAC.
  Result<SecretBytes> mac_key = store.Use("mac-acq1", KeyType::kMac);
  ASSERT_OK(mac_key);
  Bytes msg = {'0', '2', '0', '0', 1, 2, 3};
  Result<Bytes> mac = Iso8583Mac(*mac_key, msg);
  ASSERT_OK(mac);
  EXPECT_TRUE(store.VerifyIso8583Mac("mac-acq1", msg, *mac).ok());
  msg[4] ^= 1;
  EXPECT_EQ(store.VerifyIso8583Mac("mac-acq1", msg, *mac).code(), StatusCode::kPermissionDenied);

  // Statement signing.
  Result<Bytes> sig2 = store.SignStatement("stmt", Bytes{'h', 'i'});
  ASSERT_OK(sig2);
  Result<SecretBytes> seed = store.Use("stmt", KeyType::kStatementSigning);
  ASSERT_OK(seed);
  Result<Bytes> pub = Ed25519PublicKey(*seed);
  ASSERT_OK(pub);
  EXPECT_TRUE(Ed25519Verify(*pub, Bytes{'h', 'i'}, *sig2).ok());
}

TEST(KeyStore, PinTranslationThroughStore) {
  TempDir dir;
  Result<std::unique_ptr<KeyStore>> ks = KeyStore::Open(dir.path(), TestMaster());
  ASSERT_OK(ks);
  KeyStore& store = **ks;
  ASSERT_OK(store.Generate("tpk-t1", KeyType::kTpk, KeyAlgorithm::kTdes, 16));
  ASSERT_OK(store.Generate("zpk-aes", KeyType::kZpk, KeyAlgorithm::kAes, 16));
  ASSERT_OK(store.Generate("pvk", KeyType::kPvk, KeyAlgorithm::kTdes, 16));
  const std::string pan = "4123456789012345";
  Result<SecretBytes> tpk = store.Use("tpk-t1", KeyType::kTpk);
  ASSERT_OK(tpk);
  Result<Bytes> block = EncryptPinBlock(PinBlockFormat::kIso0, *tpk, "2468", pan);
  ASSERT_OK(block);
  Result<Bytes> out = store.TranslatePinBlock("tpk-t1", PinBlockFormat::kIso0, *block, pan,
                                              "zpk-aes", PinBlockFormat::kIso4);
  ASSERT_OK(out);
  Result<SecretBytes> pvk = store.Use("pvk", KeyType::kPvk);
  ASSERT_OK(pvk);
  Result<std::string> pvv = Pvv(*pvk, pan, 1, "2468");
  ASSERT_OK(pvv);
  EXPECT_TRUE(store.VerifyPinPvv("zpk-aes", PinBlockFormat::kIso4, *out, pan, "pvk", 1, *pvv).ok());
  Result<std::string> wrong = Pvv(*pvk, pan, 1, "2469");
  ASSERT_OK(wrong);
  if (*wrong != *pvv) {
    EXPECT_EQ(
        store.VerifyPinPvv("zpk-aes", PinBlockFormat::kIso4, *out, pan, "pvk", 1, *wrong).code(),
        StatusCode::kPermissionDenied);
  }
  // Translating to a TPK (not a ZPK) is refused.
  EXPECT_EQ(store
                .TranslatePinBlock("tpk-t1", PinBlockFormat::kIso0, *block, pan, "tpk-t1",
                                   PinBlockFormat::kIso0)
                .status()
                .code(),
            StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace narae::crypto
