// `narae hsm` / `narae keys`: runs the real binary (built by the `narae`
// target) and checks outputs against the published vectors and exit codes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace {

struct CliRun {
  int exit_code = -1;
  std::string out;
};

std::string Binary() { return std::string(NARAE_BIN_DIR) + "/tools/narae"; }

CliRun Narae(const std::string& args) {
  CliRun r;
  std::string cmd = Binary() + " " + args + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[512];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class HsmCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(Binary().c_str(), X_OK) != 0) GTEST_SKIP() << "build the narae target first";
  }
};

TEST_F(HsmCli, CalculatorsPrintKnownAnswers) {
  EXPECT_EQ(Narae("hsm cvv --cvk 0123456789ABCDEFFEDCBA9876543210 --pan 4123456789012345 "
                  "--expiry 8701 --service-code 101")
                .out,
            "561\n");
  EXPECT_EQ(Narae("hsm pvv --pvk 0123456789ABCDEFFEDCBA9876543210 --pan 1122334455667788 "
                  "--pvki 1 --pin 4524")
                .out,
            "8523\n");
  EXPECT_EQ(Narae("hsm pin-block --format 0 --pin 1234 --pan 43219876543210987").out,
            "0412AC89ABCDEF67\n");
  EXPECT_EQ(Narae("hsm pin-block --format 4 --pin 1234 --pan 1234567890123456789 --key "
                  "00112233445566778899AABBCCDDEEFF --random FFFFFFFFFFFFFFFF")
                .out,
            "28B41FDDD29B743E93124BD8E32D921E\n");
  EXPECT_EQ(Narae("hsm hotp --key 3132333435363738393031323334353637383930 --counter 9").out,
            "520489\n");
  EXPECT_EQ(Narae("hsm totp --key 3132333435363738393031323334353637383930 --time 1111111109 "
                  "--digits 8")
                .out,
            "07081804\n");
  EXPECT_EQ(Narae("hsm cmac --key 2b7e151628aed2a6abf7158809cf4f3c --data "
                  "6bc1bee22e409f96e93d7e117393172a")
                .out,
            "070A16B46B4D4144F79BDD9DD04A287C\n");
  CliRun kcv = Narae("hsm kcv --key 0123456789ABCDEFFEDCBA9876543210");
  EXPECT_EQ(kcv.exit_code, 0);
  EXPECT_EQ(kcv.out.substr(0, 9), "TDES 08D7");
}

// `narae bench crypto` with a handful of iterations: every check verifies
// (failures 0, exit 0) and the JSON line names the five checks; bad
// arguments exit with 2. (A benchmark, not timed here.)
TEST_F(HsmCli, BenchCryptoRunsEveryCheck) {
  CliRun r = Narae("bench crypto --iterations 30 --cards 3 --terminals 2 --sims 3 --json");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  for (const char* op : {"cvv2_verify", "pin_verify", "mac_verify", "arqc_verify", "sim_verify"}) {
    EXPECT_NE(r.out.find(std::string("\"") + op + "\":"), std::string::npos) << op;
  }
  EXPECT_NE(r.out.find("\"failures\":0"), std::string::npos) << r.out;
  CliRun one = Narae("bench crypto --iterations 5 --cards 1 --sims 1 --op pin_verify --json");
  EXPECT_EQ(one.exit_code, 0);
  EXPECT_EQ(one.out.find("cvv2_verify"), std::string::npos);
  EXPECT_EQ(Narae("bench crypto --iterations 0").exit_code, 2);
  EXPECT_EQ(Narae("bench crypto --op nonsense").exit_code, 2);
  EXPECT_EQ(Narae("bench crypto --terminals 0").exit_code, 2);
}

TEST_F(HsmCli, BadInputExitsWithTwo) {
  EXPECT_EQ(
      Narae("hsm cvv --cvk zz --pan 4123456789012345 --expiry 8701 --service-code 101").exit_code,
      2);
  EXPECT_EQ(Narae("hsm pvv --pvk 0123456789ABCDEFFEDCBA9876543210 --pan 11 --pvki 1 --pin 4524")
                .exit_code,
            2);
  EXPECT_EQ(Narae("hsm pin-block --format 3 --pin 1234 --pan 4123456789012345").exit_code, 2);
  EXPECT_EQ(Narae("hsm cvv").exit_code, 2);
}

TEST_F(HsmCli, KeysInitCreates0600AndListRefusesReadableKey) {
  std::string dir = (std::filesystem::temp_directory_path() / "narae-cli-XXXXXX").string();
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  std::string mk = dir + "/master.key";
  CliRun init = Narae("keys init --out " + mk);
  EXPECT_EQ(init.exit_code, 0);
  struct stat st {};
  ASSERT_EQ(::stat(mk.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Narae("keys init --out " + mk).exit_code, 2);  // never overwrites
  EXPECT_EQ(Narae("keys list --data " + dir + " --master-key " + mk).exit_code, 0);
  ASSERT_EQ(::chmod(mk.c_str(), 0644), 0);
  EXPECT_EQ(Narae("keys list --data " + dir + " --master-key " + mk).exit_code, 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
