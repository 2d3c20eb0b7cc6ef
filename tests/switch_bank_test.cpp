// Bank records (encodings, cache, administration) and the `narae` bank
// commands run as a real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/bank.hpp"
#include "tests/test_util.hpp"

namespace narae::switching {
namespace {

using json = nlohmann::json;

TEST(BankRecords, EncodingsRoundTrip) {
  Card c;
  c.card_id = "00112233445566778899aabbccddeeff";
  c.pan_hash = std::string(64, 'a');
  c.masked_pan = "940801******0016";
  c.expiry = "3011";
  c.status = RecordStatus::kStolen;
  c.account_id = ledger::AccountId{ledger::U128{1, 2}};
  c.currency = 840;
  c.pvv = "1234";
  c.limits.blocked_mccs = {5812, 7995};
  c.limits.daily_count_max = 7;
  auto d = DecodeCard(EncodeCard(c));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->card_id, c.card_id);
  EXPECT_EQ(d->status, RecordStatus::kStolen);
  EXPECT_EQ(d->account_id, c.account_id);
  EXPECT_EQ(d->limits, c.limits);
  EXPECT_EQ(EncodeCard(c).find("1234\"") != std::string::npos, true);  // the PVV, never a PIN

  Sim s;
  s.token_id = "9410000000000017";
  s.iccid = "8985000000000000001";
  s.account_id = ledger::AccountId{ledger::U128{0, 9}};
  s.currency = 408;
  s.status = RecordStatus::kSuspended;
  auto ds = DecodeSim(EncodeSim(s));
  ASSERT_TRUE(ds.ok());
  EXPECT_EQ(ds->iccid, s.iccid);
  EXPECT_EQ(ds->status, RecordStatus::kSuspended);

  CredentialState st;
  st.day = 20000;
  st.day_amount_minor = 123;
  st.pin_tries = 2;
  st.has_atc = true;
  st.last_atc = 77;
  st.sim_counter = 1ull << 40;
  auto dst = DecodeCredentialState(EncodeCredentialState(st));
  ASSERT_TRUE(dst.ok());
  EXPECT_EQ(*dst, st);
  EXPECT_TRUE(DecodeCredentialState("").ok());
  EXPECT_FALSE(DecodeCredentialState("xyz").ok());
  EXPECT_FALSE(DecodeCard("{not json").ok());
  EXPECT_FALSE(DecodeCard("{\"v\":2}").ok());
  EXPECT_FALSE(DecodeMerchant("{\"v\":1}").ok());
}

TEST(BankRecords, SeedCacheAndAdministration) {
  narae::testing::TempDir dir;
  ASSERT_TRUE(crypto::CreateMasterKeyFile(dir.Sub("master.key")).ok());
  auto mk = crypto::LoadMasterKeyFile(dir.Sub("master.key"));
  std::filesystem::create_directories(dir.Sub("keys"));
  auto keys = crypto::KeyStore::Open(dir.Sub("keys"), *mk);
  ASSERT_TRUE(keys.ok());
  ledger::Options o;
  o.path = dir.Sub("ledger");
  o.sync = false;
  auto l = ledger::Ledger::Open(o);
  ASSERT_TRUE(l.ok());
  ledger::Ledger& ledger = **l;
  SeedOptions so;
  so.customers = 2;
  auto bank = SeedDemo(ledger, **keys, so);
  ASSERT_TRUE(bank.ok()) << bank.status().ToString();
  EXPECT_EQ(bank->merchants.size(), 5u);
  EXPECT_EQ(bank->cards.size(), 4u);
  EXPECT_EQ(bank->sims.size(), 2u);
  EXPECT_FALSE(SeedDemo(ledger, **keys, so).ok());  // seeded once
  // Customer accounts: deposit, minimum balance, the balance flag.
  auto acc = ledger.LookupAccount(bank->cards[0].issued.card.account_id);
  ASSERT_TRUE(acc.has_value());
  EXPECT_EQ(acc->code, static_cast<uint16_t>(ledger::AccountCode::kCustomerDeposit));
  EXPECT_TRUE(acc->flags & ledger::account_flags::kDebitsMustNotExceedCredits);
  EXPECT_EQ(acc->minimum_balance_minor, so.kpw_minimum_minor);
  EXPECT_EQ(acc->credits_posted, so.kpw_deposit_minor);
  // PANs carry the BIN and a Luhn digit; the record has no PAN.
  const std::string& pan = bank->cards[0].issued.pan;
  EXPECT_EQ(pan.substr(0, 6), "940801");
  EXPECT_TRUE(crypto::LuhnValid(pan));
  auto raw = ledger.GetAux(CardKey(bank->cards[0].issued.card.card_id));
  ASSERT_TRUE(raw.has_value());
  EXPECT_EQ(raw->find(pan), std::string::npos);
  EXPECT_EQ(raw->find("\"" + bank->cards[0].issued.pin + "\""), std::string::npos);
  // The cache sees everything.
  auto cache = BankCache::Load(ledger);
  ASSERT_TRUE(cache.ok());
  EXPECT_NE((*cache)->FindCardByPan(pan), nullptr);
  EXPECT_EQ((*cache)->FindCardByPan("9408010000000099"), nullptr);
  EXPECT_NE((*cache)->FindMerchant("NOODLE01"), nullptr);
  EXPECT_NE((*cache)->FindTerminal("T0000001"), nullptr);
  EXPECT_FALSE((*cache)->FindTerminal("T0000001")->mac_key_id.empty());
  EXPECT_NE((*cache)->FindSim(bank->sims[0].sim.token_id), nullptr);
  EXPECT_EQ((*cache)->FindMerchant("NOODLE01")->mcc, 5812);
  // Administration.
  auto blocked = SetCardStatus(ledger, pan, RecordStatus::kStolen);
  ASSERT_TRUE(blocked.ok());
  EXPECT_EQ(FindCard(ledger, pan)->status, RecordStatus::kStolen);
  auto replaced = ReplaceCard(ledger, **keys, blocked->card_id);
  ASSERT_TRUE(replaced.ok());
  EXPECT_NE(replaced->pan, pan);
  EXPECT_EQ(FindCard(ledger, pan)->status, RecordStatus::kReplaced);
  EXPECT_EQ(FindCard(ledger, pan)->replaced_by, replaced->card.card_id);
  auto re = ReenrollSim(ledger, **keys, bank->sims[0].sim.token_id, "");
  ASSERT_TRUE(re.ok());
  EXPECT_NE(re->sim_key_hex, bank->sims[0].sim_key_hex);
  EXPECT_EQ(re->sim.key_generation, 2u);
  EXPECT_FALSE(AddTerminal(ledger, **keys, "SHORT", "NOODLE01", false).ok());
  EXPECT_FALSE(AddTerminal(ledger, **keys, "T0000001", "NOODLE01", false).ok());
  EXPECT_FALSE(AddTerminal(ledger, **keys, "T1234567", "NOBODY", false).ok());
  CreateMerchantRequest dup{"NOODLE01", "x", 5812, {408}};
  EXPECT_FALSE(CreateMerchant(ledger, **keys, dup).ok());
  std::string demo = DemoBankJson(*bank, "L", "K", "M");
  json j = json::parse(demo);
  EXPECT_EQ(j["bank"]["bin"], "940801");
  EXPECT_EQ(j["merchants"][0]["id"], "NOODLE01");
  EXPECT_EQ(j["merchants"][0]["mcc"], "5812");
  EXPECT_EQ(j["merchants"][0]["terminals"][0]["tpk_hex"].get<std::string>().size(), 32u);
  EXPECT_EQ(j["cards"][0]["pan"], pan);
  EXPECT_EQ(j["sims"][0]["counter"], 0);
  EXPECT_EQ(j["files"]["ledger"], "L");
  ASSERT_OK(ledger.Close());
}

// ---- The real binary ----

struct CliRun {
  int code = -1;
  std::string out;
};
CliRun Narae(const std::string& args) {
  std::string cmd = std::string(NARAE_BIN_DIR) + "/tools/narae " + args + " 2>/dev/null";
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// `narae demo seed --bench`: no daily limits and large deposits; the
// defaults stay as they are.
TEST(BankRecords, BenchSeedLiftsDailyLimitsOnlyWhenAsked) {
  SeedOptions defaults;
  EXPECT_FALSE(defaults.limits.has_value());
  EXPECT_NE(DefaultLimits(408).daily_amount_max_minor, 0u);
  SeedOptions so;
  ApplyBenchSeedOptions(&so);
  ASSERT_TRUE(so.limits.has_value());
  EXPECT_EQ(so.limits->daily_amount_max_minor, 0u);
  EXPECT_EQ(so.limits->daily_count_max, 0u);
  EXPECT_EQ(so.limits->per_minute_max, 0u);
  EXPECT_EQ(so.limits->single_amount_max_minor, DefaultLimits(408).single_amount_max_minor);
  narae::testing::TempDir dir;
  ASSERT_TRUE(crypto::CreateMasterKeyFile(dir.Sub("master.key")).ok());
  auto mk = crypto::LoadMasterKeyFile(dir.Sub("master.key"));
  std::filesystem::create_directories(dir.Sub("keys"));
  auto keys = crypto::KeyStore::Open(dir.Sub("keys"), *mk);
  ASSERT_TRUE(keys.ok());
  ledger::Options o;
  o.path = dir.Sub("ledger");
  o.sync = false;
  auto l = ledger::Ledger::Open(o);
  ASSERT_TRUE(l.ok());
  so.customers = 2;
  auto bank = SeedDemo(**l, **keys, so);
  ASSERT_TRUE(bank.ok()) << bank.status().ToString();
  for (const DemoCard& c : bank->cards) {
    EXPECT_EQ(c.issued.card.limits.daily_amount_max_minor, 0u);
    auto acc = (*l)->LookupAccount(c.issued.card.account_id);
    ASSERT_TRUE(acc.has_value());
    EXPECT_EQ(acc->credits_posted,
              c.issued.card.currency == 408 ? so.kpw_deposit_minor : so.usd_deposit_minor);
  }
  for (const EnrolledSim& s : bank->sims) EXPECT_EQ(s.sim.limits.daily_amount_max_minor, 0u);
}

class BankCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(std::string(NARAE_BIN_DIR) + "/tools/narae")) {
      GTEST_SKIP() << "narae binary not built";
    }
  }
  narae::testing::TempDir dir_;
};

TEST_F(BankCli, DemoSeedThenCardsSimsAndAccounts) {
  std::string data = "--data " + dir_.Sub("bank");
  CliRun seed =
      Narae("demo seed " + data + " --out " + dir_.Sub("demo.json") + " --customers 2 --json");
  ASSERT_EQ(seed.code, 0) << seed.out;
  EXPECT_EQ(std::filesystem::status(dir_.Sub("bank/master.key")).permissions() &
                std::filesystem::perms::group_all,
            std::filesystem::perms::none);
  std::ifstream f(dir_.Sub("demo.json"));
  json demo = json::parse(f);
  ASSERT_EQ(demo["cards"].size(), 4u);
  ASSERT_EQ(demo["sims"].size(), 2u);
  EXPECT_EQ(demo["files"]["ledger"], dir_.Sub("bank") + "/ledger");
  std::string pan = demo["cards"][0]["pan"];
  std::string account = demo["cards"][0]["account_id"];
  EXPECT_EQ(Narae("demo seed " + data + " --out " + dir_.Sub("again.json")).code, 1);

  CliRun issue = Narae("card issue " + data + " --account " + account + " --daily-count 5 --json");
  ASSERT_EQ(issue.code, 0) << issue.out;
  json issued = json::parse(issue.out);
  EXPECT_EQ(issued["pan"].get<std::string>().size(), 16u);
  EXPECT_EQ(issued["cvv2"].get<std::string>().size(), 3u);
  EXPECT_EQ(issued["limits"]["daily_count_max"], 5);
  CliRun block = Narae("card block " + data + " --card " + pan + " --reason lost --json");
  ASSERT_EQ(block.code, 0);
  EXPECT_EQ(json::parse(block.out)["status"], "lost");
  CliRun show = Narae("card show " + data + " --card " + pan + " --json");
  ASSERT_EQ(show.code, 0);
  EXPECT_EQ(show.out.find(pan), std::string::npos);  // masked only
  EXPECT_EQ(json::parse(show.out)["status"], "lost");
  EXPECT_EQ(Narae("card unblock " + data + " --card " + pan).code, 0);
  EXPECT_EQ(json::parse(Narae("card show " + data + " --card " + pan + " --json").out)["status"],
            "active");
  EXPECT_EQ(Narae("card show " + data + " --card 9408010000000099").code, 1);
  EXPECT_EQ(Narae("card block " + data + " --card " + pan + " --reason sleepy").code, 2);
  CliRun replace = Narae("card replace " + data + " --card " + pan + " --json");
  ASSERT_EQ(replace.code, 0);
  EXPECT_NE(json::parse(replace.out)["pan"], pan);

  std::string token = demo["sims"][0]["token_id"];
  EXPECT_EQ(Narae("sim suspend " + data + " --token " + token).code, 0);
  EXPECT_EQ(json::parse(Narae("sim show " + data + " --token " + token + " --json").out)["status"],
            "suspended");
  CliRun re = Narae("sim reenroll " + data + " --token " + token + " --json");
  ASSERT_EQ(re.code, 0);
  EXPECT_EQ(json::parse(re.out)["status"], "active");
  CliRun enroll = Narae("sim enroll " + data + " --account " + account + " --json");
  ASSERT_EQ(enroll.code, 0);
  EXPECT_EQ(json::parse(enroll.out)["sim_key_hex"].get<std::string>().size(), 64u);

  CliRun open =
      Narae("account open " + data + " --currency 840 --min-balance 500 --deposit 9000 --json");
  ASSERT_EQ(open.code, 0) << open.out;
  std::string id = json::parse(open.out)["account_id"];
  json acc = json::parse(Narae("account show " + data + " --id " + id + " --json").out);
  EXPECT_EQ(acc["credits_posted"], 9000);
  EXPECT_EQ(acc["minimum_balance_minor"], 500);
  EXPECT_EQ(Narae("account freeze " + data + " --id " + id).code, 0);
  EXPECT_EQ(Narae("account freeze " + data + " --id " + id).code, 1);
  EXPECT_EQ(Narae("account unfreeze " + data + " --id " + id).code, 0);
  EXPECT_EQ(Narae("account list " + data + " --json").code, 0);
  EXPECT_EQ(Narae("merchant create " + data + " --id SHOES001 --name Shoes --mcc 5661").code, 0);
  EXPECT_EQ(Narae("merchant create " + data + " --id SHOES001 --name Shoes --mcc 5661").code, 1);
  CliRun term = Narae("terminal add " + data + " --id T0000100 --merchant SHOES001 --mac --json");
  ASSERT_EQ(term.code, 0);
  EXPECT_EQ(json::parse(term.out)["mac_key_hex"].get<std::string>().size(), 32u);
  EXPECT_EQ(json::parse(Narae("merchant show " + data + " --id SHOES001 --json").out)["mcc"], 5661);
}

TEST_F(BankCli, LockedLedgerIsAClearError) {
  std::string data = "--data " + dir_.Sub("bank");
  ASSERT_EQ(Narae("demo seed " + data + " --out " + dir_.Sub("demo.json") + " --customers 1").code,
            0);
  ledger::Options o;
  o.path = dir_.Sub("bank/ledger");
  auto l = ledger::Ledger::Open(o);
  ASSERT_TRUE(l.ok());
  std::string cmd = std::string(NARAE_BIN_DIR) + "/tools/narae account list " + data + " 2>&1";
  CliRun r = Narae("account list " + data);
  EXPECT_EQ(r.code, 2);
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf{};
  size_t n = fread(buf.data(), 1, buf.size() - 1, p);
  pclose(p);
  EXPECT_NE(std::string(buf.data(), n).find("in use"), std::string::npos);
  ASSERT_OK((*l)->Close());
}

}  // namespace
}  // namespace narae::switching
