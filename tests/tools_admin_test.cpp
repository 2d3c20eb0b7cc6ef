// Write commands against a live bank (docs/tools.md, "Write commands and a
// running switch"): a real narae-switch child with --admin-listen on
// loopback, the real `narae` CLI. A freeze or a new card takes effect for
// the very next authorization; day close works while the switch runs; the
// admin interface refuses a missing or wrong token and a non-loopback
// address; a stale admin.json (switch SIGKILLed) falls back to the direct
// open; an online backup taken under load restores and verifies, with every
// payment approved before it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "ledger/ledger.hpp"
#include "switch/admin_server.hpp"
#include "switch/authorizer.hpp"
#include "tests/switch_harness.hpp"
#include "tests/test_util.hpp"

namespace narae::switching::harness {
namespace {

using json = nlohmann::json;
using narae::testing::TempDir;

struct CmdRun {
  int code = -1;
  std::string out, err;
  json j;  // stdout parsed (discarded when not JSON)
};

CmdRun Narae(const TempDir& dir, const std::string& args) {
  const std::string out = dir.Sub("cmd.out"), err = dir.Sub("cmd.err");
  CmdRun r;
  r.code = RunCommand(NaraeBin() + " " + args + " >'" + out + "' 2>'" + err + "' </dev/null");
  r.out = Slurp(out);
  r.err = Slurp(err);
  r.j = json::parse(r.out, nullptr, false);
  return r;
}

// One raw HTTP/1.1 exchange on loopback; returns the status code (0 on failure).
int HttpStatus(uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int status = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size())) {
    char buf[512];
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) > 0) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf) - 1, 0);
      if (n > 12) status = std::atoi(std::string(buf + 9, 3).c_str());
    }
  }
  ::close(fd);
  return status;
}

std::string Post(const std::string& target, const std::string& auth, const std::string& body) {
  return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
         (auth.empty() ? "" : "Authorization: " + auth + "\r\n") +
         "Content-Type: application/json\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

class AdminLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveBinaries()) GTEST_SKIP() << "narae-switch or narae not built";
#if defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "not under ThreadSanitizer (uninstrumented RocksDB in the binaries)";
#endif
    // One seeded bank for the suite (seeding costs about a second), copied.
    if (!seeded_) {
      ASSERT_TRUE(SeedDemo(seed_->Sub("data"), seed_->Sub("demo.json"), 2));
      seeded_ = true;
    }
    data_ = dir_.Sub("data");
    std::filesystem::copy(seed_->Sub("data"), data_, std::filesystem::copy_options::recursive);
    demo_ = LoadDemo(seed_->Sub("demo.json"));
    ASSERT_TRUE(StartSwitch());
  }
  static void SetUpTestSuite() { seed_ = new TempDir(); }
  static void TearDownTestSuite() {
    delete seed_;
    seed_ = nullptr;
    seeded_ = false;
  }

  bool StartSwitch() {
    return sw_.Start(data_, {"--admin-listen", "127.0.0.1:0", "--log-file", dir_.Sub("sw.log")});
  }
  std::string AdminFile() const { return data_ + "/admin.json"; }
  json AdminDoc() const { return json::parse(Slurp(AdminFile()), nullptr, false); }
  const DemoTerminal& T() const { return demo_.Terminal("T0000003"); }  // no MAC

  // A KPW purchase by `card`; the response code ("" when no answer).
  std::string Pay(IsoClient& c, const DemoCard& card, uint64_t amount_minor = 1000,
                  std::string* rrn = nullptr) {
    std::optional<Message> r =
        c.Call(SignFrame(CardRequest("0200", T(), card, ++stan_, amount_minor), T()), 10000);
    if (!r) return "";
    if (rrn != nullptr) *rrn = std::string(r->Get(37));
    return std::string(r->Get(39));
  }

  static inline TempDir* seed_ = nullptr;
  static inline bool seeded_ = false;
  TempDir dir_;
  std::string data_;
  Demo demo_;
  SwitchProcess sw_;
  uint32_t stan_ = 100;
};

TEST_F(AdminLiveTest, AdminFileIsPrivateAndRemovedOnCleanExit) {
  struct stat st {};
  ASSERT_EQ(::stat(AdminFile().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const json doc = AdminDoc();
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["token"].get<std::string>().size(), 64u);
  EXPECT_EQ(doc["pid"].get<int64_t>(), sw_.pid());
  EXPECT_EQ(doc["endpoint"].get<std::string>().rfind("127.0.0.1:", 0), 0u);
  EXPECT_EQ(sw_.Stop(), 0);
  EXPECT_FALSE(std::filesystem::exists(AdminFile()));
}

TEST_F(AdminLiveTest, FreezeDeclinesTheVeryNextPayment) {
  const DemoCard& card = demo_.Card(408);
  IsoClient c(sw_.port());
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(Pay(c, card), "00");
  CmdRun f = Narae(dir_, "account freeze --data " + data_ + " --id " + card.account_id + " --json");
  ASSERT_EQ(f.code, 0) << f.out << f.err;
  EXPECT_EQ(f.j["ok"], true);
  EXPECT_EQ(f.j["action"], "freeze");
  EXPECT_EQ(Pay(c, card), "05");  // do not honour: the ledger refuses a frozen account
  // Freezing twice is refused (exit 1), as on the direct path.
  CmdRun again = Narae(dir_, "account freeze --data " + data_ + " --id " + card.account_id);
  EXPECT_EQ(again.code, 1) << again.err;
  EXPECT_NE(again.err.find("freeze"), std::string::npos) << again.err;
  CmdRun u = Narae(dir_, "account unfreeze --data " + data_ + " --id " + card.account_id);
  ASSERT_EQ(u.code, 0) << u.err;
  EXPECT_EQ(u.out, "unfreeze " + card.account_id + ": ok\n");
  EXPECT_EQ(Pay(c, card), "00");
}

TEST_F(AdminLiveTest, CardIssuedWhileRunningAuthorizesAtOnceAndBlockStopsIt) {
  const DemoCard& owner = demo_.Card(408);
  CmdRun issued = Narae(
      dir_, "card issue --data " + data_ + " --account " + owner.account_id + " --pin 4321 --json");
  ASSERT_EQ(issued.code, 0) << issued.out << issued.err;
  ASSERT_TRUE(issued.j.is_object()) << issued.out;
  DemoCard card{issued.j["pan"], issued.j["expiry"], issued.j["cvv2"], "4321", 408,
                owner.account_id};
  IsoClient c(sw_.port());
  EXPECT_EQ(Pay(c, card), "00");
  CmdRun blocked =
      Narae(dir_, "card block --data " + data_ + " --card " + card.pan + " --reason stolen --json");
  ASSERT_EQ(blocked.code, 0) << blocked.err;
  EXPECT_EQ(blocked.j["status"], "stolen");
  EXPECT_NE(Pay(c, card), "00");
  // An unknown card: NotFound crosses the admin interface as exit 1.
  CmdRun unknown = Narae(dir_, "card block --data " + data_ + " --card 9408019999999999 --json");
  EXPECT_EQ(unknown.code, 1) << unknown.out;
  EXPECT_EQ(unknown.j["ok"], false);
}

TEST_F(AdminLiveTest, DayCloseAndOtherWritesWhileRunningPrintWhatTheDirectPathPrints) {
  CmdRun day = Narae(dir_, "day close --data " + data_ + " --json");
  ASSERT_EQ(day.code, 0) << day.out << day.err;
  EXPECT_EQ(day.j["day"], 1);
  CmdRun list = Narae(dir_, "day list --data " + data_ + " --json");
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_NE(list.out.find("\"day\":1"), std::string::npos) << list.out;
  CmdRun fees_live = Narae(dir_, "fees set --data " + data_ + " --bps 150 --json");
  ASSERT_EQ(fees_live.code, 0) << fees_live.err;
  CmdRun bank = Narae(dir_, "bank add --data " + data_ + " --id OTHER --name Other --bin-range " +
                                "950000-950099 --json");
  ASSERT_EQ(bank.code, 0) << bank.out << bank.err;
  CmdRun open_live = Narae(dir_, "account open --data " + data_ + " --deposit 500 --json");
  ASSERT_EQ(open_live.code, 0) << open_live.err;
  CmdRun merchant = Narae(
      dir_, "merchant create --data " + data_ + " --id NEWSHOP --name Shop --mcc 5411 --json");
  ASSERT_EQ(merchant.code, 0) << merchant.out << merchant.err;
  CmdRun sim = Narae(dir_, "sim enroll --data " + data_ + " --account " +
                               open_live.j["account_id"].get<std::string>() + " --json");
  ASSERT_EQ(sim.code, 0) << sim.out << sim.err;
  ASSERT_EQ(sw_.Stop(), 0);

  // The same commands with the switch stopped: the same JSON keys.
  CmdRun fees_direct = Narae(dir_, "fees set --data " + data_ + " --bps 160 --json");
  ASSERT_EQ(fees_direct.code, 0) << fees_direct.err;
  EXPECT_EQ(fees_direct.j["version"], fees_live.j["version"].get<int>() + 1);
  CmdRun open_direct = Narae(dir_, "account open --data " + data_ + " --deposit 500 --json");
  ASSERT_EQ(open_direct.code, 0) << open_direct.err;
  for (const auto& [live, direct] :
       {std::pair{&fees_live, &fees_direct}, std::pair{&open_live, &open_direct}}) {
    std::vector<std::string> a, b;
    for (const auto& [k, v] : live->j.items()) a.push_back(k);
    for (const auto& [k, v] : direct->j.items()) b.push_back(k);
    EXPECT_EQ(a, b) << live->out << direct->out;
  }
  CmdRun day2 = Narae(dir_, "day close --data " + data_ + " --json");
  EXPECT_EQ(day2.code, 0) << day2.err;
  EXPECT_EQ(day2.j["day"], 2);
  // Closing again at once: refused the same way (exit 1 and a message).
  CmdRun twice = Narae(dir_, "day close --data " + data_ + " --at 1");
  EXPECT_NE(twice.code, 0);
}

// `settle`, `settle interbank` and `merchant webhook set|show|remove` run
// through the switch while it holds the ledger (a direct open would be
// refused "in use"), and open the store directly once it is stopped.
TEST_F(AdminLiveTest, SettleAndWebhooksGoThroughTheRunningSwitch) {
  IsoClient c(sw_.port());
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(Pay(c, demo_.Card(408), 1'000), "00");
  EXPECT_EQ(Pay(c, demo_.Card(408), 2'500), "00");
  // An open day is refused through the switch as directly (exit 1).
  CmdRun open_day = Narae(dir_, "settle --data " + data_ + " --day 1 --json");
  EXPECT_EQ(open_day.code, 1) << open_day.out << open_day.err;
  EXPECT_NE(open_day.out.find("still open"), std::string::npos) << open_day.out;
  ASSERT_EQ(Narae(dir_, "day close --data " + data_ + " --json").code, 0);
  CmdRun dry = Narae(dir_, "settle --data " + data_ + " --day 1 --dry-run --json");
  ASSERT_EQ(dry.code, 0) << dry.out << dry.err;
  EXPECT_EQ(dry.j["dry_run"], true);
  CmdRun s = Narae(dir_, "settle --data " + data_ + " --day 1 --json");
  ASSERT_EQ(s.code, 0) << s.out << s.err;
  EXPECT_EQ(s.j["day"], 1);
  ASSERT_EQ(s.j["settled"].size(), 1u) << s.out;
  EXPECT_EQ(s.j["settled"][0]["captures_minor"], 3'500);
  EXPECT_EQ(s.j["settled"][0]["payout_minor"], 3'500);
  ASSERT_EQ(dry.j["settled"].size(), 1u) << dry.out;
  EXPECT_EQ(dry.j["settled"][0]["payout_minor"], 3'500);
  CmdRun text = Narae(dir_, "settle --data " + data_ + " --day 1");
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("already"), std::string::npos) << text.out;
  const std::string out = dir_.Sub("net.csv");
  CmdRun ib = Narae(dir_, "settle interbank --data " + data_ + " --day 1 --out " + out + " --json");
  ASSERT_EQ(ib.code, 0) << ib.out << ib.err;
  EXPECT_EQ(Slurp(out).rfind("NARAE-NET-SETTLEMENT,1,", 0), 0u) << Slurp(out);
  CmdRun ib_bad = Narae(dir_, "settle interbank --data " + data_ + " --day 9 --out " + out);
  EXPECT_EQ(ib_bad.code, 1) << ib_bad.err;

  CmdRun set = Narae(dir_, "merchant webhook set --data " + data_ +
                               " --merchant SOCKS001 --url http://127.0.0.1:9/hook --json");
  ASSERT_EQ(set.code, 0) << set.out << set.err;
  EXPECT_EQ(set.j["secret_hex"].get<std::string>().size(), 64u);
  CmdRun show =
      Narae(dir_, "merchant webhook show --data " + data_ + " --merchant SOCKS001 --json");
  ASSERT_EQ(show.code, 0) << show.out << show.err;
  EXPECT_EQ(show.j["url"], "http://127.0.0.1:9/hook");
  CmdRun bad_url = Narae(
      dir_, "merchant webhook set --data " + data_ + " --merchant SOCKS001 --url ftp://x --json");
  EXPECT_NE(bad_url.code, 0) << bad_url.out;
  CmdRun unknown = Narae(dir_, "merchant webhook set --data " + data_ +
                                   " --merchant NOSUCH --url http://127.0.0.1:9/ --json");
  EXPECT_EQ(unknown.code, 1) << unknown.out << unknown.err;
  // Every one of them reached the switch's admin interface.
  const std::string log = Slurp(dir_.Sub("sw.log"));
  for (const char* op :
       {"\"settle\"", "\"settle.interbank\"", "\"webhook.set\"", "\"webhook.show\""}) {
    EXPECT_NE(log.find(op), std::string::npos) << op;
  }
  ASSERT_EQ(sw_.Stop(), 0);

  // Stopped: the same commands open the store directly.
  CmdRun again = Narae(dir_, "settle --data " + data_ + " --day 1 --json");
  ASSERT_EQ(again.code, 0) << again.out << again.err;
  EXPECT_TRUE(again.j["settled"].empty());
  ASSERT_EQ(again.j["already_settled"].size(), 1u);
  EXPECT_EQ(again.j["already_settled"][0]["payout_minor"], 3'500);
  CmdRun show2 =
      Narae(dir_, "merchant webhook show --data " + data_ + " --merchant SOCKS001 --json");
  ASSERT_EQ(show2.code, 0) << show2.out << show2.err;
  EXPECT_EQ(show2.j["key_id"], show.j["key_id"]);
  CmdRun rm = Narae(dir_, "merchant webhook remove --data " + data_ + " --merchant SOCKS001");
  EXPECT_EQ(rm.code, 0) << rm.err;
  CmdRun rm2 = Narae(dir_, "merchant webhook remove --data " + data_ + " --merchant SOCKS001");
  EXPECT_EQ(rm2.code, 1) << rm2.err;
}

TEST_F(AdminLiveTest, RefusesAMissingOrWrongTokenAndUnknownOperations) {
  const json doc = AdminDoc();
  const std::string endpoint = doc["endpoint"];
  const uint16_t port = static_cast<uint16_t>(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  const std::string token = doc["token"];
  const std::string day = "/admin/v1/day.close";
  EXPECT_EQ(HttpStatus(port, Post(day, "", "{}")), 401);
  EXPECT_EQ(HttpStatus(port, Post(day, "Bearer " + std::string(64, '0'), "{}")), 401);
  EXPECT_EQ(HttpStatus(port, Post(day, "Bearer " + token.substr(1), "{}")), 401);
  EXPECT_EQ(HttpStatus(port, Post(day, token, "{}")), 401);  // no "Bearer "
  EXPECT_EQ(HttpStatus(port, Post("/admin/v1/nope", "Bearer " + token, "{}")), 404);
  EXPECT_EQ(HttpStatus(port, Post(day, "Bearer " + token, "not json")), 400);
  EXPECT_EQ(HttpStatus(port, Post(day, "Bearer " + token, "{\"at_ns\": \"x\"}")), 400);
  EXPECT_EQ(HttpStatus(port, Post("/admin/v1/backup", "Bearer " + token, "{\"to\":\"rel\"}")), 400);
  EXPECT_EQ(HttpStatus(port, Post(day, "Bearer " + token, std::string(20000, ' '))), 413);
  // Nothing was closed by the refused requests.
  CmdRun list = Narae(dir_, "day list --data " + data_ + " --json");
  EXPECT_EQ(list.out.find("\"day\":1"), std::string::npos) << list.out;
  // The CLI with a wrong token in admin.json: exit 2, nothing written.
  json bad = doc;
  bad["token"] = std::string(64, 'A');
  std::ofstream(AdminFile(), std::ios::trunc) << bad.dump();
  CmdRun refused = Narae(dir_, "day close --data " + data_);
  EXPECT_EQ(refused.code, 2);
  EXPECT_NE(refused.err.find("token"), std::string::npos) << refused.err;
}

TEST_F(AdminLiveTest, StaleAdminFileFallsBackToTheDirectOpen) {
  const json doc = AdminDoc();
  sw_.Kill();  // SIGKILL: admin.json stays behind
  ASSERT_TRUE(std::filesystem::exists(AdminFile()));
  CmdRun open = Narae(dir_, "account open --data " + data_ + " --json");
  EXPECT_EQ(open.code, 0) << open.out << open.err;
  // A live pid (this test) but nothing listening: also stale.
  json fake = doc;
  fake["pid"] = static_cast<int64_t>(::getpid());
  std::ofstream(AdminFile(), std::ios::trunc) << fake.dump();
  CmdRun freeze = Narae(dir_, "account freeze --data " + data_ + " --id " +
                                  open.j["account_id"].get<std::string>() + " --json");
  EXPECT_EQ(freeze.code, 0) << freeze.out << freeze.err;
  // Restarted, the switch replaces the stale file and sees the frozen account.
  ASSERT_TRUE(StartSwitch());
  EXPECT_NE(AdminDoc()["token"], doc["token"]);
  CmdRun unfreeze = Narae(dir_, "account unfreeze --data " + data_ + " --id " +
                                    open.j["account_id"].get<std::string>() + " --json");
  EXPECT_EQ(unfreeze.code, 0) << unfreeze.out << unfreeze.err;
}

TEST_F(AdminLiveTest, OnlineBackupUnderLoadRestoresAndVerifies) {
  // Payments in a loop on two connections while the backup runs.
  std::atomic<bool> stop{false}, backup_started{false};
  std::mutex mu;
  std::vector<std::string> before;  // RRNs approved before the backup started
  std::atomic<uint32_t> approved{0};
  std::vector<std::thread> load;
  for (int i = 0; i < 2; ++i) {
    load.emplace_back([&, i] {
      IsoClient c(sw_.port());
      const DemoCard& card = demo_.Card(408, static_cast<size_t>(i));
      uint32_t stan = 1000u * static_cast<uint32_t>(i + 1);
      while (!stop.load()) {
        const bool was_started = backup_started.load();
        std::optional<Message> r =
            c.Call(SignFrame(CardRequest("0200", T(), card, ++stan, 100), T()), 10000);
        if (!r) break;
        if (r->Get(39) != "00") continue;
        approved.fetch_add(1);
        if (!was_started) {
          std::lock_guard<std::mutex> lock(mu);
          before.emplace_back(r->Get(37));
        }
      }
    });
  }
  while (approved.load() < 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  backup_started = true;
  const std::string copy = dir_.Sub("copy");
  CmdRun b = Narae(dir_, "backup --data " + data_ + "/ledger --to " + copy + " --json");
  const uint32_t during = approved.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  for (std::thread& t : load) t.join();
  ASSERT_EQ(b.code, 0) << b.out << b.err;
  EXPECT_EQ(b.j["verified"], true);
  EXPECT_GT(approved.load(), during);  // the switch kept serving after the backup

  // restore is offline only: refused on the running switch's folder.
  CmdRun live = Narae(dir_, "restore --from " + copy + " --data " + data_ + "/ledger --force");
  EXPECT_EQ(live.code, 2);
  EXPECT_NE(live.err.find("running narae-switch"), std::string::npos) << live.err;

  const std::string restored = dir_.Sub("restored");
  CmdRun r = Narae(dir_, "restore --from " + copy + " --data " + restored + " --json");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  CmdRun v = Narae(dir_, "verify --data " + restored + " --json");
  EXPECT_EQ(v.code, 0) << v.out << v.err;
  ledger::Options o;
  o.path = restored;
  o.read_only = true;
  auto l = ledger::Ledger::Open(o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  ASSERT_GE(before.size(), 20u);
  for (const std::string& rrn : before) {
    EXPECT_TRUE(LookupPaymentByRrn(**l, rrn).has_value()) << "payment " << rrn;
  }
  EXPECT_TRUE((*l)->Close().ok());
}

TEST(AdminConfig, RefusesANonLoopbackAddress) {
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.8.9.10"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("::"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.1"));
  EXPECT_FALSE(IsLoopbackHost("example.com"));
  EXPECT_FALSE(ValidateAdminListen("0.0.0.0:8081").ok());
  EXPECT_FALSE(ValidateAdminListen("127.0.0.1").ok());
  EXPECT_TRUE(ValidateAdminListen("127.0.0.1:0").ok());
  if (!HaveBinaries()) GTEST_SKIP() << "narae-switch not built";
  TempDir dir;
  for (const std::string& args :
       {std::string("--admin-listen 0.0.0.0:0"), std::string("--admin-listen 192.168.1.1:8081")}) {
    const int code =
        RunCommand(SwitchBin() + " --data " + dir.Sub("d") + " --iso-listen 127.0.0.1:0 " + args +
                   " 2>'" + dir.Sub("err") + "' >/dev/null </dev/null");
    EXPECT_EQ(code, 2) << args;
    EXPECT_NE(Slurp(dir.Sub("err")).find("loopback"), std::string::npos) << Slurp(dir.Sub("err"));
  }
  std::ofstream(dir.Sub("c.json")) << R"({"admin_listen": "10.1.2.3:8081"})";
  EXPECT_EQ(
      RunCommand(SwitchBin() + " --data " + dir.Sub("d") + " --iso-listen 127.0.0.1:0 --config " +
                 dir.Sub("c.json") + " >/dev/null 2>&1 </dev/null"),
      2);
}

}  // namespace
}  // namespace narae::switching::harness
