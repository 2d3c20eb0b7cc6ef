// The settlement commands through the real `narae` binary on a demo bank:
// fees set/show, day close (twice refused), settle an open day (refused),
// settle and re-run, bank add (and a bad range), settle interbank with its
// instruction file, a signed report that verifies with the bank's statement
// key and fails once tampered.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <thread>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/bank.hpp"
#include "switch/settlement.hpp"
#include "tests/test_util.hpp"
#include "tools/statement.hpp"

namespace narae::testing {
namespace {

namespace sw = narae::switching;
using json = nlohmann::json;

struct CmdRun {
  int code = -1;
  std::string out, err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class SettleCliTest : public ::testing::Test {
 public:
  CmdRun Narae(const std::string& args) {
    const std::string out = dir_.Sub("stdout"), err = dir_.Sub("stderr");
    const std::string cmd = std::string(NARAE_BIN_DIR) + "/tools/narae " + args + " >'" + out +
                            "' 2>'" + err + "' </dev/null";
    const int rc = std::system(cmd.c_str());
    CmdRun r;
    r.code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    r.out = Slurp(out);
    r.err = Slurp(err);
    return r;
  }
  json Json(const CmdRun& r) { return json::parse(r.out, nullptr, false); }
  std::string Data() const { return "--data '" + dir_.Sub("bank") + "'"; }

  // Two purchases at NOODLE01 (KPW) from the first customer, one with a
  // delivery split, written straight into the ledger (as the switch would).
  void Captures() {
    ledger::Options o;
    o.path = dir_.Sub("bank") + "/ledger";
    o.sync = false;
    auto l = ledger::Ledger::Open(o);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    auto m = sw::DecodeMerchant(*(*l)->GetAux(sw::MerchantKey("NOODLE01")));
    ASSERT_TRUE(m.ok());
    std::optional<ledger::AccountId> customer;
    ASSERT_OK((*l)->ScanAux(sw::kAuxAccountPrefix, [&](std::string_view, std::string_view v) {
      auto a = sw::DecodeCustomerAccount(v);
      if (a.ok() && a->currency == 408) customer = a->id;
      return !customer;
    }));
    ASSERT_TRUE(customer.has_value());
    std::vector<ledger::Transfer> ts;
    for (uint64_t k = 1; k <= 2; ++k) {
      ledger::Transfer t;
      t.id = ledger::TransferId::From(700 + k);
      t.debit_account_id = *customer;
      t.credit_account_id = m->ForCurrency(408)->clearing;
      t.amount_minor = 10'000 * k;
      t.ledger = 408;
      t.code = 102;
      ts.push_back(t);
    }
    sw::PaymentInfo info{"ORDER-7", "000000000702", {sw::SplitKind::kDistance, 0, 30'000}};
    ASSERT_OK((*l)->Execute([&](ledger::Txn& txn) {
      for (const auto& o : txn.CreateTransfers(ts)) {
        NARAE_CHECK(o.result == ledger::CreateTransferResult::kOk);
      }
      sw::RecordPaymentInfo(txn, ts[1].id, info);
    }));
    ASSERT_OK((*l)->Close());
  }

  TempDir dir_;
};

TEST_F(SettleCliTest, DaysFeesSettlementInterbankAndSignedReports) {
  CmdRun seed =
      Narae("demo seed " + Data() + " --customers 1 --out '" + dir_.Sub("demo.json") + "'");
  ASSERT_EQ(seed.code, 0) << seed.err;

  // Fees: a default with bands, a bad one refused.
  CmdRun fees = Narae("fees set " + Data() +
                      " --bps 150 --fixed 5 --bands 10000:500,50000:1500,0:4000 --json");
  ASSERT_EQ(fees.code, 0) << fees.err;
  EXPECT_EQ(Json(fees)["version"], 1);
  EXPECT_EQ(Narae("fees set " + Data() + " --bps 20000").code, 2);
  EXPECT_EQ(Narae("fees set " + Data() + " --bands 10:x").code, 2);
  CmdRun shown = Narae("fees show " + Data() + " --json");
  ASSERT_EQ(shown.code, 0) << shown.err;
  EXPECT_EQ(Json(shown)["schedules"].size(), 1u);

  Captures();

  // The day is open: settling is refused with a clear message.
  CmdRun open = Narae("settle " + Data() + " --day 1");
  EXPECT_EQ(open.code, 1);
  EXPECT_NE(open.err.find("still open"), std::string::npos) << open.err;

  CmdRun closed = Narae("day close " + Data() + " --json");
  ASSERT_EQ(closed.code, 0) << closed.err;
  const uint64_t close_ns = Json(closed)["close_ns"].get<uint64_t>();
  CmdRun twice = Narae("day close " + Data() + " --at " + std::to_string(close_ns));
  EXPECT_EQ(twice.code, 1);
  EXPECT_NE(twice.err.find("already closed"), std::string::npos) << twice.err;
  EXPECT_EQ(Narae("day close " + Data() + " --at yesterday-ish").code, 2);
  CmdRun list = Narae("day list " + Data() + " --json");
  ASSERT_EQ(list.code, 0);
  EXPECT_EQ(Json(list)["days"].size(), 1u);
  EXPECT_EQ(Narae("day show " + Data() + " --day 1").code, 0);
  EXPECT_EQ(Narae("day show " + Data() + " --day 2").code, 1);

  // Settle: 30000 captured, fees 150 + 5 and 300 + 5, share 1500 (30 km).
  CmdRun settled = Narae("settle " + Data() + " --day 1 --json");
  ASSERT_EQ(settled.code, 0) << settled.err << settled.out;
  json s = Json(settled);
  ASSERT_EQ(s["settled"].size(), 1u);
  EXPECT_EQ(s["settled"][0]["merchant"], "NOODLE01");
  EXPECT_EQ(s["settled"][0]["fees_minor"], 460);
  EXPECT_EQ(s["settled"][0]["delivery_minor"], 1'500);
  EXPECT_EQ(s["settled"][0]["payout_minor"], 30'000 - 460 - 1'500);
  CmdRun again = Narae("settle " + Data() + " --day 1 --json");
  ASSERT_EQ(again.code, 0);
  EXPECT_EQ(Json(again)["settled"].size(), 0u);
  EXPECT_EQ(Json(again)["already_settled"].size(), 1u);
  EXPECT_EQ(Narae("settle " + Data() + " --day 1 --merchant NOPE").code, 1);
  EXPECT_EQ(Narae("settle " + Data()).code, 2);

  // Another bank and the interbank file (no interbank traffic: zero nets).
  CmdRun bank =
      Narae("bank add " + Data() + " --id KORYO --name Koryo --bin-range 950100-950199 --json");
  ASSERT_EQ(bank.code, 0) << bank.err;
  EXPECT_EQ(Narae("bank add " + Data() + " --id BAD --bin-range 9401").code, 2);
  EXPECT_EQ(Narae("bank list " + Data() + " --json").code, 0);
  const std::string file = dir_.Sub("net.csv");
  CmdRun ib = Narae("settle interbank " + Data() + " --day 1 --out '" + file + "' --json");
  ASSERT_EQ(ib.code, 0) << ib.err;
  EXPECT_EQ(Json(ib)["positions"].size(), 2u);  // KORYO and us
  const std::string instr = Slurp(file);
  EXPECT_EQ(instr.rfind("NARAE-NET-SETTLEMENT,1,", 0), 0u) << instr;
  EXPECT_NE(instr.find("TRAILER,0,0\n"), std::string::npos);

  // A signed report verifies with the statement key; a tampered one does not.
  const std::string report = dir_.Sub("report.csv");
  CmdRun rep = Narae("settle report " + Data() + " --day 1 --merchant NOODLE01 --out '" + report +
                     "' --sign --json");
  ASSERT_EQ(rep.code, 0) << rep.err;
  const std::string csv = Slurp(report);
  EXPECT_NE(csv.find("ORDER-7,000000000702,20000"), std::string::npos) << csv;
  EXPECT_NE(csv.find("status,settled"), std::string::npos);
  auto mk = crypto::LoadMasterKeyFile(dir_.Sub("bank") + "/master.key");
  ASSERT_TRUE(mk.ok());
  auto store = crypto::KeyStore::Open(dir_.Sub("bank") + "/keys", std::move(*mk));
  ASSERT_TRUE(store.ok());
  const std::string pub = dir_.Sub("statement.pub.pem");
  ASSERT_OK(tools::ExportKeyStorePublicKey(**store, sw::kStatementKeyId, pub));
  EXPECT_OK(tools::VerifyFileSignature(report, report + ".sig", pub));
  std::string tampered = csv;
  tampered[tampered.find("20000")] = '9';
  {
    std::ofstream f(report, std::ios::binary | std::ios::trunc);
    f << tampered;
  }
  EXPECT_EQ(tools::VerifyFileSignature(report, report + ".sig", pub).code(),
            StatusCode::kPermissionDenied);
  const std::string rj = dir_.Sub("report.json");
  CmdRun repj = Narae("settle report " + Data() +
                      " --day 1 --merchant NOODLE01 --format json --out '" + rj + "'");
  ASSERT_EQ(repj.code, 0) << repj.err;
  json j = json::parse(Slurp(rj), nullptr, false);
  EXPECT_EQ(j["totals"]["captures_minor"], 30'000);
  EXPECT_EQ(
      Narae("settle report " + Data() + " --day 1 --merchant NOODLE01 --format xml --out x").code,
      2);
  EXPECT_EQ(Narae("day list --data '" + dir_.Sub("nothing") + "'").code, 2);
}

// narae-switch --cutover HH:MM closes the business day by itself: with a
// cut-over at 00:00 UTC, today's 00:00 has passed, so the open day closes at
// that instant soon after the start (the check runs once a second). A bad
// time refuses to start (exit 2).
TEST_F(SettleCliTest, SwitchClosesTheDayAtItsCutover) {
  CmdRun seed =
      Narae("demo seed " + Data() + " --customers 1 --out '" + dir_.Sub("demo.json") + "'");
  ASSERT_EQ(seed.code, 0) << seed.err;
  const std::string sw = std::string(NARAE_BIN_DIR) + "/switch/narae-switch --data '" +
                         dir_.Sub("bank") + "' --iso-listen 127.0.0.1:0 --log-file '" +
                         dir_.Sub("switch.log") + "'";
  EXPECT_EQ(WEXITSTATUS(std::system((sw + " --cutover 24:00 >/dev/null 2>&1").c_str())), 2);
  EXPECT_EQ(WEXITSTATUS(std::system((sw + " --cutover 7:30 >/dev/null 2>&1").c_str())), 2);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("exec " + sw + " --cutover 00:00 >/dev/null 2>&1").c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  // Bounded: the close is logged within a few seconds of the start.
  bool closed = false;
  for (int i = 0; i < 150 && !closed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    closed = Slurp(dir_.Sub("switch.log")).find("\"day_closed\"") != std::string::npos;
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_TRUE(closed) << Slurp(dir_.Sub("switch.log"));
  CmdRun days = Narae("day list " + Data() + " --json");
  ASSERT_EQ(days.code, 0) << days.err;
  json j = Json(days);
  ASSERT_FALSE(j.is_discarded()) << days.out;
  const std::string text = j.dump();
  const auto now = std::chrono::system_clock::now();
  const int64_t midnight_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count() / 86400 *
      86400;
  EXPECT_NE(text.find(std::to_string(midnight_s) + "000000000"), std::string::npos) << text;
}

}  // namespace
}  // namespace narae::testing
