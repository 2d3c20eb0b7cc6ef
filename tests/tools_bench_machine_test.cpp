// `narae bench machine` (tools/cmd_bench_machine.cpp), through the real
// binary: each probe measures what it says (an fdatasync per record in the
// data folder, every scheduled item through the whole chain, one spinning
// thread per allowed CPU), leaves nothing behind, and refuses bad arguments
// and a folder it cannot write.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/test_util.hpp"
#include "tools/percentile.hpp"

namespace narae::tools {
namespace {

using narae::testing::TempDir;

const std::string kNarae = std::string(NARAE_BIN_DIR) + "/tools/narae";

std::string Slurp(const std::string& path) {
  std::string out;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    std::fclose(f);
  }
  return out;
}

// `niced`: at nice 19, for the probes that spin on every CPU while other
// tests run in parallel (the figures do not matter there, only the shape).
int RunMachine(const std::string& args, const std::string& out, bool niced = false) {
  const int rc = std::system(
      ((niced ? "nice -n 19 " : "") + kNarae + " bench machine " + args + " > " + out + " 2>&1")
          .c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

nlohmann::json RunJson(const std::string& args, const std::string& out, bool niced = false) {
  EXPECT_EQ(RunMachine(args + " --json", out, niced), 0) << args << Slurp(out);
  nlohmann::json j = nlohmann::json::parse(Slurp(out), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << Slurp(out);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

void ExpectOrdered(const nlohmann::json& s, const char* what) {
  EXPECT_LE(s["p50"].get<uint64_t>(), s["p99"].get<uint64_t>()) << what;
  EXPECT_LE(s["p99"].get<uint64_t>(), s["p999"].get<uint64_t>()) << what;
  EXPECT_LE(s["p999"].get<uint64_t>(), s["max"].get<uint64_t>()) << what;
}

// The one percentile rule of the bench commands: rank round(q x (n - 1)).
TEST(BenchPercentile, RankIsRoundedAndTheEndsAreTheMinimumAndMaximum) {
  EXPECT_EQ(PercentileOfSorted(std::vector<uint32_t>{}, 9'900), 0u);
  EXPECT_EQ(PercentileOfSorted(std::vector<uint32_t>{7}, 0), 7u);
  EXPECT_EQ(PercentileOfSorted(std::vector<uint32_t>{7}, 10'000), 7u);
  std::vector<uint64_t> v;
  for (uint64_t i = 0; i <= 100; ++i) v.push_back(i * 10);  // 101 samples: rank = q x 100
  EXPECT_EQ(PercentileOfSorted(v, 0), 0u);
  EXPECT_EQ(PercentileOfSorted(v, 5'000), 500u);
  EXPECT_EQ(PercentileOfSorted(v, 9'900), 990u);
  EXPECT_EQ(PercentileOfSorted(v, 9'990), 1'000u);  // rank 99.9 rounds up
  EXPECT_EQ(PercentileOfSorted(v, 9'949), 990u);    // rank 99.49 rounds down
  EXPECT_EQ(PercentileOfSorted(v, 10'000), 1'000u);
  const std::vector<uint32_t> two = {1, 2};
  EXPECT_EQ(PercentileOfSorted(two, 5'000), 2u);  // rank 0.5 rounds up
  EXPECT_EQ(PercentileOfSorted(two, 4'999), 1u);
  EXPECT_DEATH((void)PercentileOfSorted(two, 10'001), "NARAE_CHECK failed");
}

TEST(BenchMachine, EveryProbeMeasuresWhatItSaysAndLeavesNothingBehind) {
  TempDir dir;
  const std::string data = dir.Sub("data");
  std::filesystem::create_directories(data);
  const std::string out = dir.Sub("out.json");

  // fsync: syncs for the whole second, none stopped by a bound; its file
  // is gone.
  nlohmann::json j =
      RunJson("--data " + data + " --duration 1 --record-bytes 512 --probe fsync", out);
  EXPECT_EQ(j["bench"], "machine");
  EXPECT_GE(j["fsync_us"]["n"].get<uint64_t>(), 1u);
  EXPECT_EQ(j["fsync_stopped_early"], false);
  ExpectOrdered(j["fsync_us"], "fsync");
  EXPECT_EQ(j["record_bytes"], 512);
  EXPECT_TRUE(std::filesystem::is_empty(data));
  EXPECT_FALSE(j.contains("handoff_us"));

  // handoff: every item scheduled in the second (200/s for 1 s) is counted,
  // through all three threads or dropped; each thread spends 1 ms on each.
  j = RunJson("--duration 1 --rate 200 --hops 3 --work-us 1000 --probe handoff", out);
  EXPECT_EQ(j["handoff_us"]["n"].get<uint64_t>() + j["dropped"].get<uint64_t>(), 200u);
  EXPECT_GT(j["handoff_us"]["n"].get<uint64_t>(), 0u);
  EXPECT_GE(j["handoff_us"]["p50"].get<uint64_t>(), 3000u);
  ExpectOrdered(j["handoff_us"], "handoff");
  EXPECT_EQ(j["hops"], 3);
  EXPECT_EQ(j["threads_pinned"], 0);
  EXPECT_FALSE(j.contains("fsync_us"));

  // cpu: one entry per CPU this process may use, each pinned there.
  j = RunJson("--duration 1 --probe cpu", out, /*niced=*/true);
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  ASSERT_EQ(j["cpus"].size(), static_cast<size_t>(CPU_COUNT(&allowed)));
  for (const auto& c : j["cpus"]) {
    EXPECT_TRUE(CPU_ISSET(c["cpu"].get<int>(), &allowed)) << c;
    EXPECT_TRUE(c["pinned"].get<bool>()) << c;
    EXPECT_LE(c["lost_basis_points"].get<uint64_t>(), 10'000u) << c;
    EXPECT_GE(c["gaps_over_100us"].get<uint64_t>(), c["gaps_over_1ms"].get<uint64_t>()) << c;
    EXPECT_GE(c["gaps_over_1ms"].get<uint64_t>(), c["gaps_over_5ms"].get<uint64_t>()) << c;
  }

  // All three by default, one after the other.
  j = RunJson("--data " + data + " --duration 1 --rate 100 --work-us 0", out, /*niced=*/true);
  EXPECT_TRUE(j.contains("fsync_us") && j.contains("handoff_us") && j.contains("cpus")) << j;
  EXPECT_TRUE(std::filesystem::is_empty(data));

  // One probe alone, pinned, human output with the JSON line last.
  ASSERT_EQ(RunMachine("--data " + data + " --duration 1 --rate 500 --probe handoff --pin", out), 0)
      << Slurp(out);
  const std::string text = Slurp(out);
  EXPECT_NE(text.find("handoff  4 threads (4 pinned), 500 items/s"), std::string::npos) << text;
  EXPECT_EQ(text.find("fsync "), std::string::npos) << text;
  j = nlohmann::json::parse(text.substr(text.find('{')), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << text;
  EXPECT_EQ(j["threads_pinned"], 4);
  EXPECT_FALSE(j.contains("fsync_us"));
  EXPECT_FALSE(j.contains("cpus"));
}

TEST(BenchMachine, RefusesBadArgumentsAndAFolderItCannotWrite) {
  TempDir dir;
  const std::string out = dir.Sub("out");
  const std::string data = " --data " + dir.path();
  for (const char* bad : {" --duration 0", " --duration 601", " --rate 0", " --rate 1000001",
                          " --hops 0", " --hops 17", " --work-us 10001", " --record-bytes 0",
                          " --record-bytes 1048577", " --probe disk"}) {
    EXPECT_EQ(RunMachine(data + bad, out), 2) << bad << Slurp(out);
  }
  EXPECT_EQ(RunMachine("--duration 1", out), 2) << Slurp(out);  // the fsync probe needs --data
  EXPECT_NE(Slurp(out).find("needs --data"), std::string::npos) << Slurp(out);
  // A chain whose threads cannot keep up (a second of work per second).
  EXPECT_EQ(RunMachine(data + " --rate 1000 --work-us 1000 --probe handoff", out), 2);
  EXPECT_EQ(RunMachine(data + " --duration 1 --rate 1000 --work-us 1000 --probe fsync", out), 0)
      << Slurp(out);  // the bound is the chain's only
  // The other probes need no folder.
  EXPECT_EQ(RunMachine("--duration 1 --rate 100 --probe handoff --json", out), 0) << Slurp(out);
  EXPECT_EQ(RunMachine("--data /nonexistent-narae-dir --duration 1 --probe fsync", out), 2);
  EXPECT_NE(Slurp(out).find("cannot create /nonexistent-narae-dir/"), std::string::npos)
      << Slurp(out);
  // A write that fails (a 1-block file size limit, SIGXFSZ ignored): exit
  // 2, the reason said, nothing left in the folder.
  const std::string full = dir.Sub("full");
  std::filesystem::create_directories(full);
  const int rc =
      std::system(("sh -c 'trap \"\" XFSZ; ulimit -f 1; exec " + kNarae + " bench machine --data " +
                   full + " --duration 1 --record-bytes 4096 --probe fsync' > " + out + " 2>&1")
                      .c_str());
  ASSERT_TRUE(WIFEXITED(rc)) << Slurp(out);
  EXPECT_EQ(WEXITSTATUS(rc), 2) << Slurp(out);
  EXPECT_NE(Slurp(out).find("bench machine: write " + full), std::string::npos) << Slurp(out);
  EXPECT_TRUE(std::filesystem::is_empty(full));
}

}  // namespace
}  // namespace narae::tools
