// Reading a live bank: a real narae-switch child serves load from the load
// generator (`narae bench switch`) while trial-balance, verify, statement
// and reconcile run against the same data folder. Each must succeed (a
// read-only follower never disturbs the switch), then the switch stops
// cleanly and `narae verify` passes on what it wrote.
// NARAE_LIVE_TEST_SECONDS scales the load (default 2 s).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.hpp"

namespace narae::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Child {
  pid_t pid = -1;
  int stdout_fd = -1;
};

Child Spawn(const std::vector<std::string>& argv) {
  int fds[2];
  NARAE_CHECK(::pipe(fds) == 0);
  Child c;
  c.pid = ::fork();
  NARAE_CHECK(c.pid >= 0);
  if (c.pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  c.stdout_fd = fds[0];
  return c;
}

std::string ReadLine(int fd, int timeout_ms) {
  std::string out;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  char ch = 0;
  while (out.find('\n') == std::string::npos && Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    if (::read(fd, &ch, 1) != 1) break;
    out.push_back(ch);
  }
  return out;
}

int WaitExit(pid_t pid, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

struct CmdRun {
  int code = -1;
  std::string out, err;
};

CmdRun Narae(const TempDir& dir, const std::string& args) {
  const std::string out = dir.Sub("out.txt"), err = dir.Sub("err.txt");
  const std::string cmd = std::string(NARAE_BIN_DIR) + "/tools/narae " + args + " >'" + out +
                          "' 2>'" + err + "' </dev/null";
  const int rc = std::system(cmd.c_str());
  CmdRun r;
  r.code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = Slurp(out);
  r.err = Slurp(err);
  return r;
}

std::string Today() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

TEST(LiveBank, ReadCommandsWorkWhileTheSwitchServesLoad) {
  const std::string bin = NARAE_BIN_DIR;
  const std::string narae = bin + "/tools/narae";
  const std::string sw = bin + "/switch/narae-switch";
  if (::access(sw.c_str(), X_OK) != 0 || ::access(narae.c_str(), X_OK) != 0) {
    GTEST_SKIP() << "narae-switch or narae not built";
  }
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "not under ThreadSanitizer (uninstrumented RocksDB in the binaries)";
#endif
  int seconds = 2;
  if (const char* s = std::getenv("NARAE_LIVE_TEST_SECONDS")) seconds = std::max(1, std::atoi(s));
  TempDir dir;
  const std::string data = dir.Sub("data"), demo = dir.Sub("demo.json");
  const std::string ledger = data + "/ledger";
  ASSERT_EQ(std::system((narae + " demo seed --data " + data + " --out " + demo +
                         " --customers 2 >/dev/null")
                            .c_str()),
            0);
  nlohmann::json creds = nlohmann::json::parse(Slurp(demo));
  const std::string account = creds["cards"][0]["account_id"];

  Child child = Spawn(
      {sw, "--data", data, "--iso-listen", "127.0.0.1:0", "--log-file", dir.Sub("switch.log")});
  const std::string line = ReadLine(child.stdout_fd, 10000);
  const size_t at = line.find("127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << line;
  const std::string iso = line.substr(at, line.find_first_of(" \"\n,}", at) - at);

  std::thread load([&] {
    const std::string cmd = narae + " bench switch --iso " + iso + " --credentials " + demo +
                            " --connections 2 --duration " + std::to_string(seconds) +
                            " --json >'" + dir.Sub("bench.json") + "' 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << Slurp(dir.Sub("bench.json"));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // load running

  // Each read command, repeatedly, while the load runs.
  const auto until = Clock::now() + std::chrono::seconds(seconds - 1 > 0 ? seconds - 1 : 1);
  int rounds = 0;
  uint64_t last_payments = 0;
  do {
    CmdRun tb = Narae(dir, "trial-balance --data " + ledger + " --json");
    EXPECT_EQ(tb.code, 0) << tb.err;
    auto tbj = nlohmann::json::parse(tb.out, nullptr, false);
    ASSERT_FALSE(tbj.is_discarded()) << tb.out;
    EXPECT_EQ(tbj["balanced"], true);

    CmdRun v = Narae(dir, "verify --data " + ledger + " --json");
    EXPECT_EQ(v.code, 0) << v.out << v.err;

    CmdRun st = Narae(dir, "statement --data " + ledger + " --account " + account + " --from " +
                               Today() + " --to " + Today() + " --format json --out " +
                               dir.Sub("stmt.json") + " --json");
    EXPECT_EQ(st.code, 0) << st.err;

    std::ofstream(dir.Sub("empty.csv")) << "rrn,amount,currency,date\n";
    CmdRun rc = Narae(dir, "reconcile --data " + ledger + " --day " + Today() + " --file " +
                               dir.Sub("empty.csv") + " --json");
    // Every captured payment is missing from the empty file: exit 1, never 2.
    EXPECT_TRUE(rc.code == 0 || rc.code == 1) << rc.err;
    auto rj = nlohmann::json::parse(rc.out, nullptr, false);
    ASSERT_FALSE(rj.is_discarded()) << rc.out << rc.err;
    EXPECT_EQ(rj["by_class"]["missing_in_ledger"]["count"], 0);
    EXPECT_EQ(rj["by_class"]["missing_in_switch_log"]["count"], 0);
    last_payments = rj["switch_payments"].get<uint64_t>();
    ++rounds;
  } while (Clock::now() < until);
  load.join();
  EXPECT_GT(rounds, 0);
  EXPECT_GT(last_payments, 0u);  // the follower saw the switch's payments

  ASSERT_EQ(::kill(child.pid, SIGTERM), 0);
  EXPECT_EQ(WaitExit(child.pid, 15000), 0);
  ::close(child.stdout_fd);
  CmdRun v = Narae(dir, "verify --data " + ledger + " --json");
  EXPECT_EQ(v.code, 0) << v.out << v.err;
  // Offline now: a backup, restored, verifies.
  CmdRun b = Narae(dir, "backup --data " + ledger + " --to " + dir.Sub("copy") + " --json");
  EXPECT_EQ(b.code, 0) << b.out << b.err;
  CmdRun r = Narae(
      dir, "restore --from " + dir.Sub("copy") + " --data " + dir.Sub("restored") + " --json");
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  CmdRun vr = Narae(dir, "verify --data " + dir.Sub("restored") + " --json");
  EXPECT_EQ(vr.code, 0) << vr.out << vr.err;
}

}  // namespace
}  // namespace narae::testing
