// `narae bench machine`: what the machine itself allows a durable switch,
// measured without any of Narae's code. Three probes, one after the other:
//
//   fsync    appends of --record-bytes to a file in --data, each followed
//            by fdatasync (what the ledger's syncer does for every group):
//            the latency of one durable write on that file system;
//   handoff  a chain of --hops threads handing items along at --rate
//            items/s, each thread spinning --work-us per item and waking
//            the next through a mutex and condition variable (the shape of
//            the switch's pipeline: I/O thread, sequencer, syncer, reply):
//            the time from an item's scheduled arrival to the last thread
//            done with it;
//   cpu      one thread pinned to each CPU the process may use, spinning on
//            the clock: every gap over 100 us is time that CPU ran something
//            else (other processes, kernel threads, the hypervisor).
//
// Run it where narae-switch is to run, with nothing else of ours running:
// its figures are the floor under the switch's latency on that machine
// (docs/switch.md, "The machine's floor"). The cpu probe keeps every CPU
// busy for its duration. Prints a line per probe and a JSON line.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "ledger/ledger.hpp"
#include "tools/cli.hpp"
#include "tools/percentile.hpp"

namespace narae::tools {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kDurationMaxS = 600;
constexpr uint32_t kRateMax = 1'000'000;
constexpr uint32_t kHopsMax = 16;
constexpr uint32_t kWorkUsMax = 10'000;
constexpr uint32_t kRecordBytesMax = 1 << 20;
// Samples kept per probe (4 bytes each); past it the probe stops early.
constexpr size_t kSamplesMax = 20'000'000;
// The fsync probe's file never grows past this (it stops there).
constexpr uint64_t kFsyncFileBytesMax = uint64_t{1} << 30;
constexpr size_t kCpusMax = 256;
constexpr uint64_t kGapUs = 100;  // a spinning thread's gap worth counting

struct Args {
  std::string data;
  uint32_t duration_s = 3;  // per probe
  uint32_t rate = 25'000;
  uint32_t hops = 4;
  uint32_t work_us = 8;
  uint32_t record_bytes = 2048;
  std::string probe;  // empty: all
  bool pin = false;   // handoff: thread i on the i-th allowed CPU (round robin)
  bool json = false;
};

struct Summary {
  uint64_t n = 0, p50 = 0, p99 = 0, p999 = 0, max = 0;
};

Summary Summarize(std::vector<uint32_t>* v) {
  Summary s;
  if (v->empty()) return s;
  std::sort(v->begin(), v->end());
  s.n = v->size();
  s.p50 = PercentileOfSorted(*v, 5'000);
  s.p99 = PercentileOfSorted(*v, 9'900);
  s.p999 = PercentileOfSorted(*v, 9'990);
  s.max = v->back();
  return s;
}

nlohmann::json ToJson(const Summary& s) {
  return {{"n", s.n}, {"p50", s.p50}, {"p99", s.p99}, {"p999", s.p999}, {"max", s.max}};
}

uint32_t MicrosSince(Clock::time_point t0, Clock::time_point t1) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count();
  return static_cast<uint32_t>(std::clamp<int64_t>(us, 0, UINT32_MAX));
}

// ---- fsync ------------------------------------------------------------------
// Returns false (with a message on stderr) when the file cannot be made or
// written. The file is removed either way.
bool ProbeFsync(const Args& a, Summary* out, bool* stopped_early) {
  *stopped_early = false;
  // A fixed name: a run killed before it removed its file leaves it for
  // the next run to reuse (truncated), not a new one each time.
  const std::string path = a.data + "/narae-bench-machine.tmp";
  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "bench machine: cannot create %s: %s\n", path.c_str(),
                 std::strerror(errno));
    return false;
  }
  const std::vector<char> record(a.record_bytes, 'n');
  std::vector<uint32_t> us;
  bool ok = true;
  uint64_t bytes = 0;
  const auto end = Clock::now() + std::chrono::seconds(a.duration_s);
  // bounded: by the duration, kSamplesMax and kFsyncFileBytesMax
  while (Clock::now() < end) {
    if (us.size() >= kSamplesMax || bytes + a.record_bytes > kFsyncFileBytesMax) {
      *stopped_early = true;
      break;
    }
    const ssize_t written = ::write(fd, record.data(), record.size());
    if (written != static_cast<ssize_t>(record.size())) {
      std::fprintf(stderr, "bench machine: write %s: %s\n", path.c_str(),
                   written < 0 ? std::strerror(errno) : "short write (file size limit?)");
      ok = false;
      break;
    }
    bytes += record.size();
    const auto t0 = Clock::now();
    if (::fdatasync(fd) != 0) {
      std::fprintf(stderr, "bench machine: fdatasync %s: %s\n", path.c_str(), std::strerror(errno));
      ok = false;
      break;
    }
    us.push_back(MicrosSince(t0, Clock::now()));
  }
  ::close(fd);
  // Removed only now: some file systems (btrfs) skip the sync of a file
  // with no name, which the ledger's write-ahead log never is.
  ::unlink(path.c_str());
  *out = Summarize(&us);
  return ok;
}

// The CPUs this process may run on (at most kCpusMax).
std::vector<uint32_t> AllowedCpus() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  std::vector<uint32_t> cpus;
  if (::sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
    for (int c = 0; c < CPU_SETSIZE && cpus.size() < kCpusMax; ++c) {
      if (CPU_ISSET(c, &allowed)) cpus.push_back(static_cast<uint32_t>(c));
    }
  }
  return cpus;
}

// The calling thread on `cpu` only, as the switch pins its threads.
bool PinTo(uint32_t cpu) { return ledger::PinThisThread({cpu}).ok(); }

// ---- handoff ----------------------------------------------------------------
struct Hop {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Clock::time_point> items;  // each item's scheduled arrival
  bool waiting = false;
  bool stop = false;
};

void Spin(uint64_t us) {
  const auto until = Clock::now() + std::chrono::microseconds(us);
  while (Clock::now() < until) {
  }
}

// Hands `items` to `h`, waking its thread only when it sleeps (as the
// ledger's queues do). False when that would put more than `queue_max`
// in the hop's queue (a second's worth: past it items are dropped and
// counted, so a chain that falls behind still drains within seconds).
bool Hand(Hop& h, std::deque<Clock::time_point>* items, size_t queue_max) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(h.mu);
    if (h.items.size() + items->size() > queue_max) return false;
    for (const auto& t : *items) h.items.push_back(t);
    wake = h.waiting;
    h.waiting = false;
  }
  if (wake) h.cv.notify_one();
  return true;
}

struct HandoffResult {
  Summary latency_us;
  uint64_t dropped = 0;
  uint32_t threads_pinned = 0;
};

HandoffResult ProbeHandoff(const Args& a) {
  const std::vector<uint32_t> cpus = AllowedCpus();
  std::vector<Hop> hops(a.hops);
  const size_t queue_max = a.rate;  // a second's worth
  std::vector<uint32_t> latency_us;
  std::atomic<uint64_t> dropped{0};
  std::atomic<uint32_t> pinned{0};
  std::vector<std::thread> threads;
  for (uint32_t i = 0; i < a.hops; ++i) {
    threads.emplace_back([&, i] {
      if (a.pin && !cpus.empty() && PinTo(cpus[i % cpus.size()])) pinned.fetch_add(1);
      Hop& h = hops[i];
      for (;;) {  // bounded: until stopped and drained (the queues hold a second at most)
        std::deque<Clock::time_point> got;
        {
          std::unique_lock<std::mutex> lock(h.mu);
          while (h.items.empty() && !h.stop) {
            h.waiting = true;
            h.cv.wait(lock);
          }
          if (h.items.empty()) break;  // stopped and drained
          got.swap(h.items);
        }
        Spin(uint64_t{a.work_us} * got.size());
        if (i + 1 < a.hops) {
          if (!Hand(hops[i + 1], &got, queue_max)) dropped.fetch_add(got.size());
          continue;
        }
        const auto now = Clock::now();
        for (const auto& t : got) {
          if (latency_us.size() < kSamplesMax) latency_us.push_back(MicrosSince(t, now));
        }
      }
      if (i + 1 < a.hops) {  // drained: let the next one drain and stop
        std::lock_guard<std::mutex> lock(hops[i + 1].mu);
        hops[i + 1].stop = true;
        hops[i + 1].cv.notify_one();
      }
    });
  }
  // Item k is due at start + k / rate (no rounding accumulates): exactly
  // rate x duration items.
  const uint64_t items = uint64_t{a.rate} * a.duration_s;
  const auto start = Clock::now();
  auto due_at = [&](uint64_t k) {
    return start + std::chrono::nanoseconds(k * 1'000'000'000 / a.rate);
  };
  std::deque<Clock::time_point> due;
  for (uint64_t k = 0; k < items;) {  // bounded: rate x duration items
    std::this_thread::sleep_until(due_at(k));
    // Everything due by now goes at once (a late wake-up does not lose items).
    const auto now = Clock::now();
    while (k < items && due_at(k) <= now) due.push_back(due_at(k++));
    if (!Hand(hops[0], &due, queue_max)) dropped.fetch_add(due.size());
    due.clear();
  }
  {
    std::lock_guard<std::mutex> lock(hops[0].mu);
    hops[0].stop = true;
    hops[0].cv.notify_one();
  }
  for (auto& t : threads) t.join();  // the last hop's samples are read after this
  HandoffResult r;
  r.latency_us = Summarize(&latency_us);
  r.dropped = dropped.load();
  r.threads_pinned = pinned.load();
  return r;
}

// ---- cpu --------------------------------------------------------------------
struct CpuGaps {
  uint32_t cpu = 0;
  bool pinned = false;
  uint64_t gaps_100us = 0, gaps_1ms = 0, gaps_5ms = 0, max_gap_us = 0, lost_us = 0;
  uint64_t elapsed_us = 0;
};

std::vector<CpuGaps> ProbeCpu(const Args& a) {
  const std::vector<uint32_t> cpus = AllowedCpus();
  std::vector<CpuGaps> out(cpus.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cpus.size(); ++i) {
    threads.emplace_back([&, i] {
      CpuGaps& g = out[i];
      g.cpu = cpus[i];
      g.pinned = PinTo(cpus[i]);
      const auto start = Clock::now();
      const auto end = start + std::chrono::seconds(a.duration_s);
      auto prev = start;
      for (;;) {
        const auto now = Clock::now();
        const uint64_t gap = MicrosSince(prev, now);
        prev = now;
        if (gap > kGapUs) {
          ++g.gaps_100us;
          if (gap > 1'000) ++g.gaps_1ms;
          if (gap > 5'000) ++g.gaps_5ms;
          g.max_gap_us = std::max(g.max_gap_us, gap);
          g.lost_us += gap;
        }
        if (now >= end) break;
      }
      g.elapsed_us = MicrosSince(start, prev);
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

int RunBenchMachine(const Args& a) {
  const bool probe_ok =
      a.probe.empty() || a.probe == "fsync" || a.probe == "handoff" || a.probe == "cpu";
  if (a.duration_s == 0 || a.duration_s > kDurationMaxS || a.rate == 0 || a.rate > kRateMax ||
      a.hops == 0 || a.hops > kHopsMax || a.work_us > kWorkUsMax || a.record_bytes == 0 ||
      a.record_bytes > kRecordBytesMax || !probe_ok ||
      // A thread of the chain must have the work of a second done within
      // the second, or it only falls further behind.
      ((a.probe.empty() || a.probe == "handoff") && uint64_t{a.rate} * a.work_us >= 1'000'000)) {
    std::fprintf(stderr,
                 "bench machine: --duration 1..%u, --rate 1..%u, --hops 1..%u, --work-us 0..%u, "
                 "rate x work-us under 1,000,000 (a second of work per second), --record-bytes "
                 "1..%u, --probe fsync|handoff|cpu\n",
                 kDurationMaxS, kRateMax, kHopsMax, kWorkUsMax, kRecordBytesMax);
    return 2;
  }
  auto wants = [&](const char* p) { return a.probe.empty() || a.probe == p; };
  if (wants("fsync") && a.data.empty()) {
    std::fprintf(stderr, "bench machine: the fsync probe needs --data\n");
    return 2;
  }
  nlohmann::json j = {{"bench", "machine"}, {"duration_s", a.duration_s}};
  if (wants("fsync")) {
    Summary s;
    bool stopped_early = false;
    if (!ProbeFsync(a, &s, &stopped_early)) return 2;
    j["fsync_us"] = ToJson(s);
    j["record_bytes"] = a.record_bytes;
    j["fsync_stopped_early"] = stopped_early;
    if (!a.json) {
      std::printf(
          "fsync    %u-byte appends + fdatasync in %s: %llu syncs; us: p50 %llu p99 %llu "
          "p99.9 %llu max %llu%s\n",
          a.record_bytes, a.data.c_str(), static_cast<unsigned long long>(s.n),
          static_cast<unsigned long long>(s.p50), static_cast<unsigned long long>(s.p99),
          static_cast<unsigned long long>(s.p999), static_cast<unsigned long long>(s.max),
          stopped_early ? " (stopped early: sample or file size bound)" : "");
    }
  }
  if (wants("handoff")) {
    const HandoffResult r = ProbeHandoff(a);
    j["handoff_us"] = ToJson(r.latency_us);
    j["hops"] = a.hops;
    j["rate"] = a.rate;
    j["work_us"] = a.work_us;
    j["threads_pinned"] = r.threads_pinned;
    j["dropped"] = r.dropped;
    if (!a.json) {
      const Summary& s = r.latency_us;
      std::printf(
          "handoff  %u threads (%u pinned), %u items/s, %u us work each: %llu items; us: p50 "
          "%llu p99 %llu p99.9 %llu max %llu%s\n",
          a.hops, r.threads_pinned, a.rate, a.work_us, static_cast<unsigned long long>(s.n),
          static_cast<unsigned long long>(s.p50), static_cast<unsigned long long>(s.p99),
          static_cast<unsigned long long>(s.p999), static_cast<unsigned long long>(s.max),
          r.dropped > 0 ? " (items dropped: the chain cannot keep up)" : "");
    }
  }
  if (wants("cpu")) {
    nlohmann::json cpus = nlohmann::json::array();
    for (const CpuGaps& g : ProbeCpu(a)) {
      // Hundredths of a percent, in integers.
      const uint64_t lost_bp = g.elapsed_us == 0 ? 0 : g.lost_us * 10'000 / g.elapsed_us;
      cpus.push_back({{"cpu", g.cpu},
                      {"pinned", g.pinned},
                      {"lost_basis_points", lost_bp},
                      {"gaps_over_100us", g.gaps_100us},
                      {"gaps_over_1ms", g.gaps_1ms},
                      {"gaps_over_5ms", g.gaps_5ms},
                      {"max_gap_us", g.max_gap_us}});
      if (!a.json) {
        std::printf(
            "cpu %-4u lost %llu.%02llu%% of the time%s: gaps >100us %llu, >1ms %llu, >5ms %llu, "
            "longest %llu us\n",
            g.cpu, static_cast<unsigned long long>(lost_bp / 100),
            static_cast<unsigned long long>(lost_bp % 100), g.pinned ? "" : " (not pinned)",
            static_cast<unsigned long long>(g.gaps_100us),
            static_cast<unsigned long long>(g.gaps_1ms),
            static_cast<unsigned long long>(g.gaps_5ms),
            static_cast<unsigned long long>(g.max_gap_us));
      }
    }
    j["cpus"] = cpus;
  }
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

void RegisterMachineBenchCommands(CLI::App& app) {
  CLI::App* bench = app.get_subcommand("bench");
  static Args args;  // NOLINT: lives for the process
  auto* bm = bench->add_subcommand(
      "machine",
      "The machine's own floor under the switch's latency: fdatasync on the data folder, thread "
      "hand-offs at a rate, CPU time taken by others");
  bm->add_option("--data", args.data,
                 "Folder on the file system the ledger will use (for the fsync probe)");
  bm->add_option("--duration", args.duration_s, "Seconds per probe")->capture_default_str();
  bm->add_option("--rate", args.rate,
                 "handoff: items per second (rate x work-us under 1,000,000: a second of work per "
                 "second)")
      ->capture_default_str();
  bm->add_option("--hops", args.hops, "handoff: threads in the chain")->capture_default_str();
  bm->add_option("--work-us", args.work_us, "handoff: CPU spent per item at each thread (us)")
      ->capture_default_str();
  bm->add_flag("--pin", args.pin,
               "handoff: pin each thread of the chain to a CPU (round robin over the allowed "
               "ones)");
  bm->add_option("--record-bytes", args.record_bytes, "fsync: bytes appended before each sync")
      ->capture_default_str();
  bm->add_option("--probe", args.probe, "Only this probe: fsync, handoff or cpu");
  bm->add_flag("--json", args.json, "Print only the JSON line");
  bm->callback([] { SetExitCode(RunBenchMachine(args)); });
}

}  // namespace narae::tools
