// Disk faults (issue 7, docs/reliability.md): the real narae-switch with its
// data folder on a small tmpfs mounted by the test (root only; skipped
// otherwise). The disk is filled while the switch runs: requests are
// declined 91/96 and never approved while nothing can be made durable, echo
// keeps answering, and once space returns the switch approves again by
// itself. Afterwards every approved request is in the ledger (the switch
// was SIGKILLed, so only durable state counts) and no declined one is.
// A read-only remount while the switch runs is refused by the kernel (the
// ledger holds files open for writing); the folder remounted read-only
// while the switch is down makes it refuse to start (exit 2) and it serves
// again, losing nothing, once the folder is writable.
// Over HTTP (the switch with --http-listen): with the disk full the payment
// API answers 503 and never 201, /healthz answers 503 with the storage down
// while staying reachable, and both recover by themselves; an Idempotency-Key
// answered 503 is not remembered (its retry after recovery pays once) and
// one answered 201 replays the same answer.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ledger/ledger.hpp"
#include "switch/authorizer.hpp"
#include "tests/switch_harness.hpp"
#include "tests/switch_http_harness.hpp"
#include "tests/test_util.hpp"

namespace narae::switching {
namespace {

using namespace harness;
using namespace std::chrono_literals;

// A tmpfs mounted for the test's lifetime.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& path, const std::string& options) : path_(path) {
    std::filesystem::create_directories(path);
    mounted_ = ::mount("tmpfs", path.c_str(), "tmpfs", 0, options.c_str()) == 0;
    if (!mounted_) error_ = std::strerror(errno);
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  // Remounts read-only or read-write; 0 or the errno.
  int Remount(bool read_only, const std::string& options) {
    const unsigned long flags = MS_REMOUNT | (read_only ? MS_RDONLY : 0);
    return ::mount("tmpfs", path_.c_str(), "tmpfs", flags, options.c_str()) == 0 ? 0 : errno;
  }

 private:
  std::string path_;
  bool mounted_ = false;
  std::string error_;
};

// Writes a file until the file system is full (bounded by `bytes_max`).
uint64_t FillUp(const std::string& path, uint64_t bytes_max) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  NARAE_CHECK(fd >= 0);
  std::vector<char> chunk(1 << 20, 'x');
  uint64_t written = 0;
  while (written < bytes_max) {  // bounded by bytes_max
    const ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n <= 0) break;
    written += static_cast<uint64_t>(n);
  }
  // The last partial pages too.
  for (size_t small = 4096; small > 0 && written < bytes_max; small /= 2) {
    while (::write(fd, chunk.data(), small) > 0) written += small;
  }
  ::close(fd);
  return written;
}

uint64_t FreeBytes(const std::string& path) {
  struct statvfs st {};
  NARAE_CHECK(::statvfs(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

struct Sent {
  Message request;
  std::string rc;
};

class DiskFault : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveBinaries()) GTEST_SKIP() << "narae-switch or narae not built";
#if defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "not under ThreadSanitizer (uninstrumented RocksDB in the child)";
#endif
  }
  // Mounts a tmpfs of `size`, seeds the demo bank in it.
  bool Prepare(const std::string& size) {
    mnt_ = std::make_unique<TmpfsMount>(dir_.Sub("mnt"), "size=" + size + ",mode=0700");
    if (!mnt_->mounted()) return false;
    data_ = dir_.Sub("mnt") + "/data";
    NARAE_CHECK(SeedDemo(data_, dir_.Sub("demo.json"), 1));
    demo_ = LoadDemo(dir_.Sub("demo.json"));
    return true;
  }
  bool StartSwitch(bool http = false) {
    std::vector<std::string> extra = {"--log-file", dir_.Sub("switch.log")};
    if (http) extra.insert(extra.end(), {"--http-listen", "127.0.0.1:0"});
    return sw_.Start(data_, extra);
  }

  // ---- HTTP (SOCKS001's storefront) ----
  std::string PayBody(uint64_t amount_minor) {
    const DemoCard& card = demo_.Card(408);
    return nlohmann::json{
        {"amount", amount_minor},
        {"currency", "KPW"},
        {"capture", "automatic"},
        {"card", {{"pan", card.pan}, {"expiry", card.expiry}, {"cvv2", card.cvv2}}}}
        .dump();
  }
  std::string Secret(const std::string& merchant) {
    for (const auto& m : demo_.doc.at("merchants")) {
      if (m.at("id") == merchant) return m.at("api_secret_hex").get<std::string>();
    }
    ADD_FAILURE() << "no merchant " << merchant;
    return "";
  }
  // POST /v1/payments under `key`; the answer (status 0 when none).
  HttpAnswer HttpPay(HttpClient& c, const std::string& key, uint64_t amount_minor = 1000) {
    const std::string body = PayBody(amount_minor);
    std::optional<HttpAnswer> a = c.Call(
        "POST", "/v1/payments", body,
        StorefrontHeaders("SOCKS001", Secret("SOCKS001"), "POST", "/v1/payments", body, key));
    return a.value_or(HttpAnswer{});
  }
  static std::string PaymentId(const HttpAnswer& a) {
    nlohmann::json j = nlohmann::json::parse(a.body, nullptr, false);
    return j.is_object() && j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>()
                                                                    : "";
  }
  static HttpAnswer Healthz(HttpClient& c) {
    return c.Call("GET", "/healthz", "", {}).value_or(HttpAnswer{});
  }

  // A new CVV2 purchase from T0000003; its answer ("" when none).
  std::string Purchase(IsoClient& c, uint64_t amount_minor = 1000) {
    const DemoTerminal& t = demo_.Terminal("T0000003");
    Message m = CardRequest("0200", t, demo_.Card(408), ++stan_, amount_minor);
    std::optional<Message> r = c.Call(SignFrame(m, t), 10000);
    const std::string rc = r ? std::string(r->Get(39)) : "";
    sent_.push_back({m, rc});
    return rc;
  }
  std::string EchoCode(IsoClient& c) {
    std::optional<Message> r = c.Call(PackFramed(Echo(++stan_)).value(), 10000);
    if (!r) return "";
    EXPECT_EQ(r->mti(), "0810");
    return std::string(r->Get(39));
  }

  // With the switch stopped: every approved request is in the ledger, no
  // other one is; `narae verify` passes.
  void CheckLedger() {
    ASSERT_FALSE(sw_.running());
    ledger::Options lo;
    lo.path = data_ + "/ledger";
    Result<std::unique_ptr<ledger::Ledger>> l = ledger::Ledger::Open(lo);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    for (const Sent& s : sent_) {
      const std::string key =
          RequestKey(s.request.Get(41), s.request.Get(7), s.request.Get(11), NowMs());
      const bool present = (*l)->LookupTransfer(RequestTransferId(key, 1)).has_value();
      EXPECT_EQ(present, s.rc == "00") << key << " answered " << s.rc;
    }
    ASSERT_OK((*l)->Close());
    EXPECT_EQ(RunCommand(NaraeBin() + " verify --data " + data_ + "/ledger >/dev/null"), 0);
  }

  testing::TempDir dir_;
  std::unique_ptr<TmpfsMount> mnt_;
  std::string data_;
  Demo demo_;
  SwitchProcess sw_;
  uint32_t stan_ = 0;
  std::vector<Sent> sent_;
};

TEST_F(DiskFault, FullDiskDeclinesKeepsEchoAndRecoversByItself) {
  // RocksDB's own recovery from "no space" waits until 64 MiB (its write
  // buffer) are free, so the tmpfs is larger than that. It also preallocates
  // 70 MiB for each new WAL when it can: the disk is nearly full before the
  // switch starts, so the WAL cannot be preallocated and the first writes
  // after the disk fills really fail.
  if (!Prepare("100m")) GTEST_SKIP() << "cannot mount a tmpfs: " << mnt_->error();
  const std::string mnt = dir_.Sub("mnt");
  const std::string filler = mnt + "/filler";
  const std::string filler2 = mnt + "/filler2";
  FillUp(filler, FreeBytes(mnt) - (2u << 20));
  ASSERT_TRUE(StartSwitch());
  IsoClient c(sw_.port());
  ASSERT_EQ(Purchase(c), "00");
  ASSERT_EQ(EchoCode(c), "00");

  FillUp(filler2, 200u << 20);
  // Until the ledger notices (a preallocated WAL block may still take a few
  // writes), approvals are durable; from the first decline on, nothing is
  // approved while the disk stays full.
  std::map<std::string, int> codes;
  bool failing = false;
  int after_failure = 0;
  for (int i = 0; i < 2000 && after_failure < 20; ++i) {  // bounded
    const std::string rc = Purchase(c);
    ++codes[rc];
    ASSERT_TRUE(rc == "00" || rc == "91" || rc == "96") << "answer '" << rc << "'";
    if (rc != "00") failing = true;
    if (failing) {
      EXPECT_NE(rc, "00") << "approved while the disk is full";
      ++after_failure;
    }
  }
  ASSERT_TRUE(failing) << "the disk never filled";
  EXPECT_EQ(EchoCode(c), "91");  // echo answers, reporting the storage down
  // A new connection is served too.
  IsoClient other(sw_.port());
  EXPECT_EQ(EchoCode(other), "91");

  // Space returns: approvals resume without a restart.
  ASSERT_EQ(::unlink(filler.c_str()), 0);
  ASSERT_EQ(::unlink(filler2.c_str()), 0);
  const auto freed = Clock::now();
  std::string rc;
  while (Clock::now() - freed < 20s) {  // bounded
    rc = Purchase(c);
    if (rc == "00") break;
    std::this_thread::sleep_for(100ms);
  }
  const double recovery_s = std::chrono::duration<double>(Clock::now() - freed).count();
  ASSERT_EQ(rc, "00") << "not recovered";
  EXPECT_EQ(EchoCode(c), "00");
  EXPECT_EQ(Purchase(c), "00");
  std::printf("[ disk full ] answers while full:");
  for (const auto& [code, n] : codes) std::printf(" %s=%d", code.c_str(), n);
  std::printf("; approving again %.1f s after space returned\n", recovery_s);

  sw_.Kill();  // only what is durable counts
  CheckLedger();
}

TEST_F(DiskFault, ReadOnlyFolderRefusesToStartAndNothingIsLost) {
  if (!Prepare("32m")) GTEST_SKIP() << "cannot mount a tmpfs: " << mnt_->error();
  ASSERT_TRUE(StartSwitch());
  {
    IsoClient c(sw_.port());
    ASSERT_EQ(Purchase(c), "00");
    // While the ledger holds its files open for writing, the kernel refuses
    // a read-only remount (EBUSY): the switch keeps serving.
    const int err = mnt_->Remount(true, "size=32m");
    if (err == 0) {
      // A kernel that allows it: the switch must decline, never approve.
      const std::string rc = Purchase(c);
      EXPECT_TRUE(rc == "91" || rc == "96") << rc;
      EXPECT_EQ(EchoCode(c), "91");
      ASSERT_EQ(mnt_->Remount(false, "size=32m"), 0);
    } else {
      EXPECT_EQ(err, EBUSY) << std::strerror(err);
      EXPECT_EQ(Purchase(c), "00");
    }
  }
  sw_.Kill();
  // Read-only while it is down: it refuses to start (exit 2), nothing served.
  ASSERT_EQ(mnt_->Remount(true, "size=32m"), 0) << std::strerror(errno);
  EXPECT_FALSE(StartSwitch());
  EXPECT_EQ(sw_.WaitExit(10000), 2);
  ASSERT_EQ(mnt_->Remount(false, "size=32m"), 0);
  ASSERT_TRUE(StartSwitch());
  {
    IsoClient c(sw_.port());
    EXPECT_EQ(Purchase(c), "00");
    // The first approved request is still known: its retransmission gets 00.
    std::optional<Message> r = c.Call(SignFrame(sent_[0].request, demo_.Terminal("T0000003")));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->Get(39), "00");
  }
  sw_.Kill();
  CheckLedger();
}

}  // namespace
}  // namespace narae::switching

namespace narae::switching {
namespace {

TEST_F(DiskFault, FullDiskHttpAnswers503HealthzReportsItAndRecovers) {
  if (!Prepare("100m")) GTEST_SKIP() << "cannot mount a tmpfs: " << mnt_->error();
  const std::string mnt = dir_.Sub("mnt");
  const std::string filler = mnt + "/filler";
  const std::string filler2 = mnt + "/filler2";
  FillUp(filler, FreeBytes(mnt) - (2u << 20));  // see FullDiskDeclinesKeepsEchoAndRecoversByItself
  ASSERT_TRUE(StartSwitch(true));
  ASSERT_NE(sw_.http_port(), 0);
  HttpClient c(sw_.http_port());
  ASSERT_TRUE(c.connected());
  const HttpAnswer first = HttpPay(c, "fault-0");
  ASSERT_EQ(first.status, 201) << first.body;
  HttpAnswer h = Healthz(c);
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_NE(h.body.find("\"ledger_healthy\":true"), std::string::npos) << h.body;

  FillUp(filler2, 200u << 20);
  std::map<int, int> statuses;
  std::vector<std::string> approved_ids = {PaymentId(first)};
  std::vector<std::string> refused;
  bool failing = false;
  int after_failure = 0;
  for (int i = 1; i < 2000 && after_failure < 20; ++i) {  // bounded
    const std::string key = "fault-" + std::to_string(i);
    const HttpAnswer a = HttpPay(c, key);
    ++statuses[a.status];
    ASSERT_TRUE(a.status == 201 || a.status == 503) << a.status << " " << a.body;
    if (a.status != 201) failing = true;
    if (failing) {
      EXPECT_NE(a.status, 201) << "acknowledged while the disk is full";
      ++after_failure;
    }
    if (a.status == 201) {
      approved_ids.push_back(PaymentId(a));
    } else {
      refused.push_back(key);
    }
  }
  ASSERT_TRUE(failing) << "the disk never filled";
  // Health: reachable, reporting the storage down (also on a new connection).
  h = Healthz(c);
  EXPECT_EQ(h.status, 503) << h.body;
  EXPECT_NE(h.body.find("\"ledger_healthy\":false"), std::string::npos) << h.body;
  HttpClient other(sw_.http_port());
  EXPECT_EQ(Healthz(other).status, 503);
  // An answered key replays its answer even now (read from the ledger).
  const HttpAnswer replay = HttpPay(c, "fault-0");
  EXPECT_EQ(replay.status, 201);
  EXPECT_EQ(replay.body, first.body);

  ASSERT_EQ(::unlink(filler.c_str()), 0);
  ASSERT_EQ(::unlink(filler2.c_str()), 0);
  const auto freed = Clock::now();
  while (Clock::now() - freed < 20s && Healthz(c).status != 200) {  // bounded
    std::this_thread::sleep_for(100ms);
  }
  const double recovery_s = std::chrono::duration<double>(Clock::now() - freed).count();
  ASSERT_EQ(Healthz(c).status, 200) << "not recovered";
  // A key answered 503 was not remembered: its retry pays now, once.
  ASSERT_FALSE(refused.empty());
  const HttpAnswer retried = HttpPay(c, refused.front());
  EXPECT_EQ(retried.status, 201) << retried.body;
  const HttpAnswer again = HttpPay(c, refused.front());
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(again.body, retried.body);
  EXPECT_EQ(again.Header("idempotent-replayed"), "true");
  if (retried.status == 201) approved_ids.push_back(PaymentId(retried));
  std::printf("[ disk full ] HTTP answers while full:");
  for (const auto& [status, n] : statuses) std::printf(" %d=%d", status, n);
  std::printf("; /healthz 200 again %.1f s after space returned\n", recovery_s);

  sw_.Kill();  // only what is durable counts
  // Every 201 is in the ledger once; nothing else was paid over HTTP.
  ledger::Options lo;
  lo.path = data_ + "/ledger";
  Result<std::unique_ptr<ledger::Ledger>> l = ledger::Ledger::Open(lo);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  for (const std::string& id : approved_ids) {
    std::optional<PaymentRecord> p =
        id.size() > 4 ? LookupPaymentByRrn(**l, id.substr(4)) : std::nullopt;
    EXPECT_TRUE(p.has_value() && p->response_code == 0) << id;
  }
  uint64_t purchases = 0;
  ASSERT_OK((*l)->ScanTransfers(0, UINT64_MAX, [&](const ledger::Transfer& t) {
    if (t.code == kTransferCodePurchase) ++purchases;
    return true;
  }));
  EXPECT_EQ(purchases, approved_ids.size());
  EXPECT_GE(purchases, 2u);
  ASSERT_OK((*l)->Close());
  EXPECT_EQ(RunCommand(NaraeBin() + " verify --data " + data_ + "/ledger >/dev/null"), 0);
}

}  // namespace
}  // namespace narae::switching
