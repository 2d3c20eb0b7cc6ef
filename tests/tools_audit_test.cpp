// The audit commands through the real `narae` binary: trial-balance,
// statement (+ verify, keygen), backup and restore, on a ledger the test
// builds in a temp folder and keeps open (as a running switch would), plus
// every bad input and its exit code.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "crypto/crypto.hpp"
#include "tests/ledger_fixture.hpp"

namespace narae::testing {
namespace {

constexpr uint64_t kHourNs = 3600 * kSecondNs;
constexpr uint64_t kDayNs = 24 * kHourNs;
constexpr uint64_t kDay1 = kStartNs - 8 * kHourNs;  // 2027-01-15T00:00:00Z

struct CmdResult {
  int code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

class AuditCliTest : public LedgerTest {
 public:
  void SetUp() override {
    LedgerTest::SetUp();
    Build();
  }

  // Runs `narae ARGS`; stdout and stderr are captured separately.
  CmdResult Narae(const std::string& args) {
    const std::string out = dir_.Sub("stdout"), err = dir_.Sub("stderr");
    const std::string cmd = std::string(NARAE_BIN_DIR) + "/tools/narae " + args + " >" +
                            Quote(out) + " 2>" + Quote(err) + " </dev/null";
    const int rc = std::system(cmd.c_str());
    CmdResult r;
    r.code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    r.out = Slurp(out);
    r.err = Slurp(err);
    return r;
  }
  std::string Data() const { return Quote(dir_.Sub("db")); }

  void Ok(const Transfer& t) {
    auto o = Create(t);
    ASSERT_EQ(o.result, CreateTransferResult::kOk) << ResultName(o.result);
  }

  // Day 1: funding, a purchase, a hold H1 (captured on day 2) and an open
  // hold H2. Day 2: the capture.
  void Build() {
    const uint16_t deposit = uint16_t(AccountCode::kCustomerDeposit);
    ASSERT_EQ(CreateAccount(Acc(9408, 0, kKpw, uint16_t(AccountCode::kBankCash))),
              CreateAccountResult::kOk);
    ASSERT_EQ(
        CreateAccount(Acc(1, account_flags::kDebitsMustNotExceedCredits | account_flags::kHistory,
                          kKpw, deposit)),
        CreateAccountResult::kOk);
    ASSERT_EQ(CreateAccount(Acc(3, 0, kKpw, uint16_t(AccountCode::kMerchantClearing))),
              CreateAccountResult::kOk);
    Ok(Xfer(100, 9408, 1, 100000));
    Ok(Xfer(101, 1, 3, 2500));
    Transfer h1 = Xfer(110, 1, 3, 4000, transfer_flags::kPending);
    h1.user_data_128 = U128{0, 9001};
    Ok(h1);
    Ok(Xfer(111, 1, 3, 300, transfer_flags::kPending));
    Advance(24 * 3600);
    Ok(PostOf(130, 110, 3500));
  }
};

TEST_F(AuditCliTest, EveryCommandHasHelp) {
  for (const char* cmd : {"trial-balance", "statement", "statement verify", "statement keygen",
                          "backup", "restore"}) {
    CmdResult r = Narae(std::string(cmd) + " --help");
    EXPECT_EQ(r.code, 0) << cmd << r.err;
    EXPECT_NE(r.out.find("--json"), std::string::npos) << cmd;
  }
}

TEST_F(AuditCliTest, TrialBalanceOfALiveLedger) {
  // The fixture's ledger stays open: the command reads through a follower.
  CmdResult r = Narae("trial-balance --data " + Data());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("KPW  check: posted balanced, pending balanced"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("1 customer_deposit"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1000.00"), std::string::npos) << r.out;

  CmdResult j = Narae("trial-balance --json --data " + Data());
  ASSERT_EQ(j.code, 0) << j.err;
  EXPECT_TRUE(j.err.empty()) << "no progress output when --json: " << j.err;
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_TRUE(doc["balanced"].get<bool>());
  ASSERT_EQ(doc["totals"].size(), 1u);
  EXPECT_EQ(doc["totals"][0]["currency"], "KPW");
  EXPECT_EQ(doc["totals"][0]["debits_posted_minor"], "106000");
  EXPECT_EQ(doc["totals"][0]["debits_pending_minor"], "300");
  for (const auto& row : doc["rows"]) {
    if (row["code"] == 1) {
      EXPECT_EQ(row["debits_posted"], "60.00");
      EXPECT_EQ(row["credits_posted"], "1000.00");
    }
  }

  // At noon of day 1 (before the capture): both holds pending.
  CmdResult at = Narae("trial-balance --json --data " + Data() + " --at 2027-01-15T12:00:00Z");
  ASSERT_EQ(at.code, 0) << at.err;
  auto d = nlohmann::json::parse(at.out);
  EXPECT_EQ(d["at"], "2027-01-15T12:00:00Z");
  EXPECT_EQ(d["totals"][0]["debits_pending_minor"], "4300");
  EXPECT_EQ(d["totals"][0]["debits_posted_minor"], "102500");
  EXPECT_TRUE(d["balanced"].get<bool>());
  CmdResult ns = Narae("trial-balance --json --data " + Data() + " --at " +
                       std::to_string(kDay1 + 12 * kHourNs));
  ASSERT_EQ(ns.code, 0);
  CmdResult table = Narae("trial-balance --data " + Data() + " --at 2027-01-15T12:00:00Z");
  EXPECT_EQ(table.code, 0);
  EXPECT_TRUE(table.err.empty()) << "no progress line when stderr is not a terminal: " << table.err;
  EXPECT_EQ(nlohmann::json::parse(ns.out)["totals"], d["totals"]);
}

TEST_F(AuditCliTest, StatementInEveryFormat) {
  const std::string xsd = std::string(NARAE_SOURCE_DIR) + "/../shared/iso20022/camt.053.001.08.xsd";
  const bool xmllint = std::system("command -v xmllint >/dev/null 2>&1") == 0;
  for (const char* format : {"camt053", "mt940", "csv", "json"}) {
    const std::string out = dir_.Sub(std::string("stmt.") + format);
    CmdResult r = Narae("statement --data " + Data() +
                        " --account 1 --from 2027-01-15 --to 2027-01-16"
                        " --format " +
                        format + " --out " + Quote(out) + " --json");
    ASSERT_EQ(r.code, 0) << format << ": " << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["entries"], 3) << format;  // funding, purchase, capture
    EXPECT_EQ(j["opening_balance"], "0.00");
    EXPECT_EQ(j["closing_balance"], "940.00");
    EXPECT_GT(std::filesystem::file_size(out), 100u) << format;
    if (std::string(format) == "camt053" && xmllint) {
      const std::string cmd =
          "xmllint --noout --schema " + Quote(xsd) + " " + Quote(out) + " >/dev/null 2>&1";
      EXPECT_EQ(std::system(cmd.c_str()), 0) << "camt.053 does not validate";
    }
  }
  // Day 2 alone: opening = day 1's closing; the capture books on day 2.
  CmdResult day2 = Narae("statement --data " + Data() +
                         " --account 0x1 --from 2027-01-16 --to 2027-01-16 --format json --out -");
  ASSERT_EQ(day2.code, 0) << day2.err;
  auto j = nlohmann::json::parse(day2.out);
  EXPECT_EQ(j["opening_balance"], "975.00");
  ASSERT_EQ(j["entries"].size(), 1u);
  EXPECT_EQ(j["entries"][0]["amount_minor"], 3500);
  EXPECT_EQ(j["entries"][0]["order_reference"], (U128{0, 9001}).ToHex());
  EXPECT_EQ(j["closing_balance"], "940.00");
}

TEST_F(AuditCliTest, SignedStatementVerifiesAndTamperingIsCaught) {
  const std::string priv = dir_.Sub("auditor.key"), pub = dir_.Sub("auditor.pub");
  CmdResult kg =
      Narae("statement keygen --out-private " + Quote(priv) + " --out-public " + Quote(pub));
  ASSERT_EQ(kg.code, 0) << kg.err;
  EXPECT_NE(Slurp(pub).find("BEGIN PUBLIC KEY"), std::string::npos);
  EXPECT_EQ(Narae("statement keygen --out-private " + Quote(priv) + " --out-public " +
                  Quote(dir_.Sub("x.pub")))
                .code,
            2)
      << "never overwrites a key";

  const std::string file = dir_.Sub("signed.xml"), sig = file + ".sig";
  CmdResult s =
      Narae("statement --data " + Data() + " --account 1 --from 2027-01-15 --to 2027-01-16 " +
            "--format camt053 --out " + Quote(file) + " --sign --key-file " + Quote(priv));
  ASSERT_EQ(s.code, 0) << s.err;
  ASSERT_TRUE(std::filesystem::exists(sig));
  CmdResult ok = Narae("statement verify " + Quote(file) + " " + Quote(sig) + " --public-key " +
                       Quote(pub) + " --json");
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_TRUE(nlohmann::json::parse(ok.out)["valid"].get<bool>());

  // Another key does not verify it.
  const std::string other_priv = dir_.Sub("o.key"), other_pub = dir_.Sub("o.pub");
  ASSERT_EQ(Narae("statement keygen --out-private " + Quote(other_priv) + " --out-public " +
                  Quote(other_pub))
                .code,
            0);
  EXPECT_EQ(Narae("statement verify " + Quote(file) + " " + Quote(sig) + " --public-key " +
                  Quote(other_pub))
                .code,
            1);

  // One tampered byte: a different amount.
  std::string text = Slurp(file);
  const size_t at = text.find("940.00");
  ASSERT_NE(at, std::string::npos);
  text[at] = '9';
  text[at + 1] = '9';
  std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
  CmdResult bad =
      Narae("statement verify " + Quote(file) + " " + Quote(sig) + " --public-key " + Quote(pub));
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.out.find("INVALID"), std::string::npos) << bad.out;

  // Missing files are errors (2), not a verdict.
  EXPECT_EQ(Narae("statement verify " + Quote(file) + " " + Quote(dir_.Sub("none.sig")) +
                  " --public-key " + Quote(pub))
                .code,
            2);
  EXPECT_EQ(Narae("statement verify " + Quote(dir_.Sub("none")) + " " + Quote(sig) +
                  " --public-key " + Quote(pub))
                .code,
            2);
}

TEST_F(AuditCliTest, SignsWithAKeyStoreStatementKey) {
  const std::string keys = dir_.Sub("keys"), master = dir_.Sub("master.key");
  std::filesystem::create_directories(keys);
  auto kcv = crypto::CreateMasterKeyFile(master);
  ASSERT_TRUE(kcv.ok()) << kcv.status().ToString();
  {
    auto mk = crypto::LoadMasterKeyFile(master);
    ASSERT_TRUE(mk.ok());
    auto store = crypto::KeyStore::Open(keys, std::move(mk).value());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto info = (*store)->Generate("stmt-2027", crypto::KeyType::kStatementSigning,
                                   crypto::KeyAlgorithm::kEd25519, 32);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    ASSERT_TRUE(
        (*store)->Generate("cvk", crypto::KeyType::kCvk, crypto::KeyAlgorithm::kTdes, 16).ok());
  }
  const std::string store_args =
      " --keys " + Quote(keys) + " --master-key " + Quote(master) + " --key-id ";
  const std::string file = dir_.Sub("ks.mt940"), pub = dir_.Sub("ks.pub");
  CmdResult s = Narae("statement --data " + Data() +
                      " --account 1 --from 2027-01-15 --to 2027-01-16 --format mt940 --out " +
                      Quote(file) + " --sign" + store_args + "stmt-2027");
  ASSERT_EQ(s.code, 0) << s.err;
  CmdResult p = Narae("statement public-key" + store_args + "stmt-2027 --out " + Quote(pub));
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(Narae("statement verify " + Quote(file) + " " + Quote(file + ".sig") +
                  " --public-key " + Quote(pub))
                .code,
            0);
  // A key of another type is refused, before anything is written.
  CmdResult wrong = Narae("statement --data " + Data() +
                          " --account 1 --from 2027-01-15 --to 2027-01-16 --format csv --out " +
                          Quote(dir_.Sub("w.csv")) + " --sign" + store_args + "cvk");
  EXPECT_EQ(wrong.code, 2);
  EXPECT_FALSE(wrong.err.empty());
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("w.csv")));
  EXPECT_EQ(
      Narae("statement public-key" + store_args + "nope --out " + Quote(dir_.Sub("n.pub"))).code,
      2);
}

TEST_F(AuditCliTest, BackupAndRestoreVerify) {
  const std::string backup = dir_.Sub("backup");
  // While the ledger is held open (a running switch), backup refuses clearly.
  CmdResult live = Narae("backup --data " + Data() + " --to " + Quote(backup));
  EXPECT_EQ(live.code, 2);
  EXPECT_NE(live.err.find("in use"), std::string::npos) << live.err;
  EXPECT_FALSE(std::filesystem::exists(backup));

  const std::string before = Narae("trial-balance --json --data " + Data()).out;
  ASSERT_OK(ledger_->Close());
  ledger_.reset();

  CmdResult b = Narae("backup --data " + Data() + " --to " + Quote(backup) + " --json");
  ASSERT_EQ(b.code, 0) << b.err << b.out;
  auto bj = nlohmann::json::parse(b.out);
  EXPECT_TRUE(bj["verified"].get<bool>());
  EXPECT_EQ(bj["accounts"], 3);
  EXPECT_EQ(Narae("backup --data " + Data() + " --to " + Quote(backup)).code, 2)
      << "refuses an existing target";

  const std::string restored = dir_.Sub("restored");
  CmdResult r = Narae("restore --from " + Quote(backup) + " --data " + Quote(restored));
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("OK"), std::string::npos);
  CmdResult v = Narae("verify --data " + Quote(restored));
  EXPECT_EQ(v.code, 0) << v.out << v.err;
  EXPECT_EQ(
      nlohmann::json::parse(Narae("trial-balance --json --data " + Quote(restored)).out)["rows"],
      nlohmann::json::parse(before)["rows"]);

  // A non-empty folder is replaced only with --force.
  CmdResult refused = Narae("restore --from " + Quote(backup) + " --data " + Data());
  EXPECT_EQ(refused.code, 2);
  EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;
  CmdResult forced =
      Narae("restore --from " + Quote(backup) + " --data " + Data() + " --force --json");
  EXPECT_EQ(forced.code, 0) << forced.err;
  EXPECT_TRUE(nlohmann::json::parse(forced.out)["verified"].get<bool>());
  EXPECT_EQ(Narae("verify --data " + Data()).code, 0);
  EXPECT_EQ(
      Narae("restore --from " + Quote(dir_.Sub("nothing")) + " --data " + Quote(dir_.Sub("r2")))
          .code,
      2);
}

TEST_F(AuditCliTest, BadInputsExitNonZeroWithAMessage) {
  const std::string out = Quote(dir_.Sub("bad.out"));
  const std::string base = "statement --data " + Data() + " --out " + out + " ";
  struct Case {
    std::string args;
    std::string message;  // part of stderr
  };
  const std::vector<Case> cases = {
      {base + "--account 424242 --from 2027-01-15 --to 2027-01-16 --format csv", "not found"},
      {base + "--account zz --from 2027-01-15 --to 2027-01-16 --format csv", "bad account id"},
      {base + "--account 1 --from 2027-01-16 --to 2027-01-15 --format csv", "is after"},
      {base + "--account 1 --from 2027-01-15 --to 2027-01-16 --format pdf",
       "unknown statement format"},
      {base + "--account 1 --from 2027-02-30 --to 2027-03-01 --format csv", "bad time"},
      {base + "--account 1 --from yesterday --to 2027-03-01 --format csv", "bad time"},
      {base + "--account 1 --from 2027-01-15T00:00:00+09:00 --to 2027-03-01 --format csv", "UTC"},
      {base + "--account 1 --from 2027-01-15 --format csv", "--to is required"},
      {base + "--account 1 --from 2027-01-15 --to 2027-01-16 --format csv --sign", "--key-file"},
      {base + "--account 1 --from 2027-01-15 --to 2027-01-16 --format csv --sign --key-file " +
           Quote(dir_.Sub("nokey")),
       "not found"},
      {"statement --data " + Quote(dir_.Sub("nodata")) +
           " --account 1 --from 2027-01-15 --to 2027-01-16 --format csv --out " + out,
       "no ledger"},
      {"trial-balance --data " + Quote(dir_.Sub("nodata")), "no ledger"},
      {"trial-balance --data " + Data() + " --at noon", "bad time"},
      {"trial-balance", "--data"},
      {"backup --data " + Quote(dir_.Sub("nodata")) + " --to " + Quote(dir_.Sub("b")), "no ledger"},
      {"statement verify " + out, "signature"},
  };
  for (const Case& c : cases) {
    CmdResult r = Narae(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
  }
  CmdResult j =
      Narae(base + "--account 424242 --from 2027-01-15 --to 2027-01-16 --format csv --json");
  EXPECT_EQ(j.code, 2);
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_FALSE(doc["ok"].get<bool>());
  EXPECT_NE(doc["error"].get<std::string>().find("not found"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_.Sub("bad.out")));
}

}  // namespace
}  // namespace narae::testing
