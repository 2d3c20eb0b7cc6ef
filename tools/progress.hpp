// A progress line on stderr for long commands (statements of millions of
// entries, a trial balance replayed to a point in time, backups).
//
// Shown only when stderr is a terminal and the command does not print JSON;
// piped or redirected runs stay quiet, so scripts see only their output.
// Redraws at most every kRedrawIntervalMs; Finish() clears the line.
//
// Thread safety: one Progress per thread (no locking).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace narae::tools {

class Progress {
 public:
  static constexpr int64_t kRedrawIntervalMs = 100;
  static constexpr int kBarWidth = 30;

  // `label` names the work ("entries", "transfers"). `total` 0 = unknown
  // (a count is shown instead of a bar). `quiet` forces silence (--json).
  Progress(std::string label, uint64_t total, bool quiet)
      : label_(std::move(label)), total_(total), enabled_(!quiet && isatty(STDERR_FILENO) == 1) {}
  ~Progress() { Finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  bool enabled() const { return enabled_; }

  // Reports `done` units of work (of `total` when known). Cheap when not
  // shown or not yet due.
  void Update(uint64_t done) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_draw_ < std::chrono::milliseconds(kRedrawIntervalMs)) return;
    last_draw_ = now;
    drawn_ = true;
    if (total_ == 0) {
      std::fprintf(stderr, "\r  %s: %llu", label_.c_str(), static_cast<unsigned long long>(done));
    } else {
      const uint64_t capped = done > total_ ? total_ : done;
      const int filled =
          static_cast<int>(static_cast<unsigned __int128>(capped) * kBarWidth / total_);
      const int percent = static_cast<int>(static_cast<unsigned __int128>(capped) * 100 / total_);
      std::string bar(static_cast<size_t>(filled), '#');
      bar.append(static_cast<size_t>(kBarWidth - filled), '.');
      std::fprintf(stderr, "\r  %s [%s] %3d%%", label_.c_str(), bar.c_str(), percent);
    }
    std::fflush(stderr);
  }

  // Clears the line (idempotent).
  void Finish() {
    if (!enabled_ || !drawn_) return;
    std::fprintf(stderr, "\r%*s\r", 60 + static_cast<int>(label_.size()), "");
    std::fflush(stderr);
    drawn_ = false;
  }

 private:
  std::string label_;
  uint64_t total_ = 0;
  bool enabled_ = false;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace narae::tools
