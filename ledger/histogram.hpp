// LatencyHistogram: a lock-free log-linear histogram of microseconds (or
// any non-negative count), shared by the ledger's pipeline stage timings
// and the switch's latency metrics and stage timings.
//
// 16 sub-buckets per power of two (~6% resolution), up to ~2^40 us.
// Record() from any thread (relaxed atomics); Summarize() reads the counts,
// and resets them when asked (the switch's metrics window).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>

namespace narae::ledger {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 4;
  static constexpr int kBuckets = 40 << kSubBits;

  void Record(uint64_t us) {
    counts_[static_cast<size_t>(BucketOf(us))].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(us, std::memory_order_relaxed);
    uint64_t seen = max_us_.load(std::memory_order_relaxed);
    while (us > seen && !max_us_.compare_exchange_weak(seen, us, std::memory_order_relaxed)) {
    }
  }
  void RecordSince(std::chrono::steady_clock::time_point t0,
                   std::chrono::steady_clock::time_point t1) {
    Record(t1 <= t0 ? 0
                    : static_cast<uint64_t>(
                          std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));
  }

  struct Summary {
    uint64_t count = 0;
    uint64_t mean_us = 0;
    uint64_t p50_us = 0;
    uint64_t p99_us = 0;
    uint64_t p999_us = 0;
    uint64_t max_us = 0;
  };
  // The counts so far; with `reset` they start again from zero (a value
  // recorded meanwhile lands in this summary or the next, not both).
  Summary Summarize(bool reset) {
    std::array<uint64_t, kBuckets> counts;
    Summary s;
    for (size_t i = 0; i < counts.size(); ++i) {
      counts[i] = reset ? counts_[i].exchange(0, std::memory_order_relaxed)
                        : counts_[i].load(std::memory_order_relaxed);
      s.count += counts[i];
    }
    s.max_us = reset ? max_us_.exchange(0, std::memory_order_relaxed)
                     : max_us_.load(std::memory_order_relaxed);
    const uint64_t sum =
        reset ? sum_.exchange(0, std::memory_order_relaxed) : sum_.load(std::memory_order_relaxed);
    if (s.count == 0) return s;
    s.mean_us = sum / s.count;
    // The value at rank ceil(q * count) (per mille, integers only).
    const auto at = [&](uint64_t q_per_mille) {
      const uint64_t rank = std::max<uint64_t>(1, (q_per_mille * s.count + 999) / 1000);
      uint64_t seen = 0;
      for (size_t i = 0; i < counts.size(); ++i) {
        seen += counts[i];
        if (seen >= rank) return std::min(BucketUpper(static_cast<int>(i)), s.max_us);
      }
      return s.max_us;
    };
    s.p50_us = at(500);
    s.p99_us = at(990);
    s.p999_us = at(999);
    return s;
  }

  static int BucketOf(uint64_t us) {
    constexpr uint64_t kSub = uint64_t{1} << kSubBits;
    if (us < kSub) return static_cast<int>(us);
    const int msb = std::bit_width(us) - 1;
    const int bucket = (msb - kSubBits + 1) * static_cast<int>(kSub) +
                       static_cast<int>((us >> (msb - kSubBits)) & (kSub - 1));
    return std::min(bucket, kBuckets - 1);
  }
  // The largest value in `bucket`.
  static uint64_t BucketUpper(int bucket) {
    constexpr int kSub = 1 << kSubBits;
    if (bucket < kSub) return static_cast<uint64_t>(bucket);
    const int msb = bucket / kSub - 1 + kSubBits;
    const uint64_t sub = static_cast<uint64_t>(bucket % kSub);
    const uint64_t lower = (kSub + sub) << (msb - kSubBits);
    return lower + (uint64_t{1} << (msb - kSubBits)) - 1;
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> sum_{0};
  std::atomic<uint64_t> max_us_{0};
};

}  // namespace narae::ledger
