// The ledger's commit pipeline (the sequencer writes each group, the
// syncer syncs the WAL for every group written and acknowledges them, large
// groups' callbacks run on the acknowledging thread): callbacks run in
// commit order whichever thread runs them, a small group never overtakes
// callbacks still queued or running, a group stays open while the syncer is
// busy, and a failed sync keeps the ledger unavailable until it is
// reopened.
#include <gtest/gtest.h>

#include <pthread.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/ledger_fixture.hpp"

namespace narae::testing {
namespace {

// A file system whose write-ahead log files fail every sync while `fail`
// is set (a disk that lost the pages, fsyncgate), and every append while
// `fail_append` is set (a full disk): the ledger's fault injection through
// Options::env.
class FailingWalSyncFs : public rocksdb::FileSystemWrapper {
 public:
  explicit FailingWalSyncFs(std::shared_ptr<rocksdb::FileSystem> base)
      : FileSystemWrapper(std::move(base)) {}
  const char* Name() const override { return "FailingWalSyncFs"; }
  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* out,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(name, options, out, dbg);
    if (s.ok() && name.ends_with(".log")) {
      *out = std::make_unique<File>(std::move(*out), &fail, &fail_append, &syncs_failed);
    }
    return s;
  }
  std::atomic<bool> fail{false};
  std::atomic<bool> fail_append{false};
  std::atomic<int> syncs_failed{0};

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile>&& f, std::atomic<bool>* fail,
         std::atomic<bool>* fail_append, std::atomic<int>* failed)
        : FSWritableFileOwnerWrapper(std::move(f)),
          fail_(fail),
          fail_append_(fail_append),
          failed_(failed) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* d) override {
      if (fail_append_->load()) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return FSWritableFileOwnerWrapper::Append(data, o, d);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* d) override {
      if (fail_append_->load()) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return FSWritableFileOwnerWrapper::Append(data, o, v, d);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      if (fail_->load()) return Failed();
      return FSWritableFileOwnerWrapper::Sync(o, d);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
      if (fail_->load()) return Failed();
      return FSWritableFileOwnerWrapper::Fsync(o, d);
    }

   private:
    rocksdb::IOStatus Failed() {
      ++*failed_;
      return rocksdb::IOStatus::IOError("injected: WAL sync failed");
    }
    std::atomic<bool>* fail_;
    std::atomic<bool>* fail_append_;
    std::atomic<int>* failed_;
  };
};

// Polls `pred` (a state the ledger reaches by itself) for at most 30 s.
template <typename Pred>
bool Eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Holds the sequencer in a submission until Release() (or the end of the
// scope), so that what is submitted meanwhile queues behind it.
class SequencerHold {
 public:
  explicit SequencerHold(Ledger& ledger) {
    NARAE_CHECK(ledger
                    .Submit(
                        [this](Txn&) {
                          started_.set_value();
                          gate_.wait();
                        },
                        [](Status) {})
                    .ok());
    started_.get_future().wait();
  }
  ~SequencerHold() { Release(); }
  void Release() {
    if (!released_) release_.set_value();
    released_ = true;
  }

 private:
  std::promise<void> started_, release_;
  std::shared_future<void> gate_ = release_.get_future().share();
  bool released_ = false;
};

// Holds the sequencer in a first submission while `n` more queue, so they
// form one group; returns the thread each of their callbacks ran on.
std::vector<std::thread::id> LargeGroupCallbackThreads(Ledger& ledger, int n) {
  std::promise<void> started, release;
  std::shared_future<void> gate = release.get_future().share();
  NARAE_CHECK(ledger
                  .Submit(
                      [&](Txn&) {
                        started.set_value();
                        gate.wait();
                      },
                      [](Status) {})
                  .ok());
  started.get_future().wait();
  std::vector<std::thread::id> ids(static_cast<size_t>(n));
  std::vector<std::promise<void>> done(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    NARAE_CHECK(ledger
                    .Submit([i](Txn& txn) { txn.PutAux("pl/large/" + std::to_string(i), "v"); },
                            [&, i](Status st) {
                              NARAE_CHECK(st.ok());
                              ids[static_cast<size_t>(i)] = std::this_thread::get_id();
                              done[static_cast<size_t>(i)].set_value();
                            })
                    .ok());
  }
  release.set_value();
  for (auto& d : done) d.get_future().wait();
  return ids;
}

// Four threads submit; each submission notes its place in the sequencer's
// order and in the order of callbacks: the two orders are the same.
TEST_F(LedgerTest, PipelineCallbacksRunInCommitOrder) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100;
  constexpr int kTotal = kThreads * kPerThread;
  // A lone group of one: nothing else waits, so its callback runs where it
  // was written, not on the acknowledging thread.
  std::thread::id lone_thread;
  {
    std::promise<void> p;
    ASSERT_OK(ledger_->Submit([](Txn& txn) { txn.PutAux("pl/first", "x"); },
                              [&](Status st) {
                                NARAE_CHECK(st.ok());
                                lone_thread = std::this_thread::get_id();
                                p.set_value();
                              }));
    p.get_future().wait();
  }
  std::vector<int> applied(kTotal, -1), acked(kTotal, -1);
  std::atomic<int> applied_next{0}, acked_next{0};
  std::vector<std::promise<Status>> done(kTotal);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kPerThread; ++k) {
        const int i = t * kPerThread + k;
        Status s = ledger_->Submit(
            [&, i](Txn& txn) {
              applied[i] = applied_next++;
              txn.PutAux("pl/" + std::to_string(i), "v");
            },
            [&, i](Status st) {
              acked[i] = acked_next++;
              done[i].set_value(st);
            });
        NARAE_CHECK(s.ok());
        if (k % 20 == 0) std::this_thread::yield();  // a mix of small and large groups
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& d : done) ASSERT_OK(d.get_future().get());
  for (int i = 0; i < kTotal; ++i) EXPECT_EQ(applied[i], acked[i]) << i;
  EXPECT_EQ(ledger_->GetAux("pl/" + std::to_string(kTotal - 1)), "v");
  // A group of 70 callbacks (queued while the sequencer is held) runs on the
  // acknowledging thread: another thread than the lone group's.
  const std::vector<std::thread::id> threads_of_large = LargeGroupCallbackThreads(*ledger_, 70);
  ASSERT_EQ(threads_of_large.size(), 70u);
  for (const auto& id : threads_of_large) EXPECT_EQ(id, threads_of_large[0]);
  EXPECT_NE(threads_of_large[0], lone_thread);
}

// A group of more than 64 callbacks goes to the acknowledging thread; while
// its first callback is still running, later small groups are written but
// their callbacks wait behind it (never run inline out of order): eight wait
// queued and the thread that wrote the ninth waits for room. Once released,
// everything is acknowledged in commit order.
TEST_F(LedgerTest, PipelineSmallGroupsWaitBehindRunningCallbacks) {
  std::promise<void> seq_started, seq_release, ack_started, ack_release;
  std::shared_future<void> seq_gate = seq_release.get_future().share();
  std::shared_future<void> ack_gate = ack_release.get_future().share();
  std::mutex order_mu;
  std::vector<std::string> order;
  std::vector<std::thread::id> order_threads;
  auto note = [&](std::string name) {
    std::lock_guard<std::mutex> lock(order_mu);
    order.push_back(std::move(name));
    order_threads.push_back(std::this_thread::get_id());
  };
  std::vector<std::promise<Status>> done;
  done.reserve(100);
  auto submit = [&](std::string name, std::function<void(Txn&)> before,
                    std::function<void()> in_done) {
    done.emplace_back();
    std::promise<Status>* p = &done.back();
    return ledger_->Submit(
        [name, before](Txn& txn) {
          if (before) before(txn);
          txn.PutAux("pl/" + name, "v");
        },
        [&note, name, in_done, p](Status st) {
          if (in_done) in_done();
          note(name);
          p->set_value(st);
        });
  };
  // The sequencer holds S0 while F1..F70 queue: they form one group of 70.
  ASSERT_OK(submit(
      "S0",
      [&](Txn&) {
        seq_started.set_value();
        seq_gate.wait();
      },
      nullptr));
  seq_started.get_future().wait();
  constexpr int kLarge = 70;
  for (int i = 1; i <= kLarge; ++i) {
    std::function<void()> in_done;
    if (i == 1) {
      in_done = [&] {
        ack_started.set_value();
        ack_gate.wait();
      };
    }
    ASSERT_OK(submit("F" + std::to_string(i), nullptr, in_done));
  }
  seq_release.set_value();
  ack_started.get_future().wait();  // F1's callback runs (and waits) on the acknowledging thread
  const LedgerStats before = ledger_->Stats();
  // Nine single-submission groups are written one after the other.
  constexpr int kWritten = 9;
  for (int i = 1; i <= kWritten; ++i) {
    ASSERT_OK(submit("G" + std::to_string(i), nullptr, nullptr));
    ASSERT_TRUE(Eventually([&] {
      return ledger_->Stats().groups_committed == before.groups_committed + uint64_t(i);
    })) << i;
  }
  {
    std::lock_guard<std::mutex> lock(order_mu);
    ASSERT_EQ(order.size(), 1u);  // S0 only: F1 has not returned, nothing overtook it
    EXPECT_EQ(order[0], "S0");
  }
  ASSERT_OK(submit("G10", nullptr, nullptr));
  ASSERT_OK(submit("G11", nullptr, nullptr));
  ack_release.set_value();
  for (auto& d : done) ASSERT_OK(d.get_future().get());
  std::vector<std::string> want = {"S0"};
  for (int i = 1; i <= kLarge; ++i) want.push_back("F" + std::to_string(i));
  for (int i = 1; i <= 11; ++i) want.push_back("G" + std::to_string(i));
  EXPECT_EQ(order, want);
  // F1..F70 and G1..G9 ran on the acknowledging thread.
  for (size_t i = 1; i <= size_t{kLarge + kWritten}; ++i)
    EXPECT_EQ(order_threads[i], order_threads[1]);
  EXPECT_EQ(ledger_->GetAux("pl/G11"), "v");
}

// Small durable groups' callbacks run on the syncer itself, in order, even
// when several groups wait for it (kInlineAckBeforeNextSyncMax): S0's
// callback holds the syncer while F1, F2 and F3 are written one by one
// (each comes longer than group_open_max_us after the last, so each is its
// own group); none of
// them runs on the acknowledging thread. Threads are told apart by their
// names.
TEST_F(LedgerTest, PipelineSmallGroupsAckedOnTheSyncerWhileOthersWait) {
  std::promise<void> syncer_held, syncer_release;
  std::shared_future<void> syncer_gate = syncer_release.get_future().share();
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> order;  // name, thread name
  std::vector<uint64_t> group_of(4, 0);
  std::vector<std::promise<Status>> done(4);
  std::vector<std::promise<void>> ran(4);
  auto submit = [&](int i) {
    const std::string name = i == 0 ? "S0" : "F" + std::to_string(i);
    return ledger_->Submit(
        [&, name, i](Txn& txn) {
          clock_ns_ += 1;  // the next group's now_ns() differs
          txn.PutAux("ak/" + name, "v");
          group_of[static_cast<size_t>(i)] = txn.now_ns();
          ran[static_cast<size_t>(i)].set_value();
        },
        [&, name, i](Status st) {
          {
            std::lock_guard<std::mutex> lock(mu);
            char thread[16] = {};
            pthread_getname_np(pthread_self(), thread, sizeof(thread));
            order.emplace_back(name, thread);
          }
          if (i == 0) {
            syncer_held.set_value();
            syncer_gate.wait();
          }
          done[static_cast<size_t>(i)].set_value(st);
        });
  };
  ASSERT_OK(submit(0));
  syncer_held.get_future().wait();
  for (int i = 1; i <= 3; ++i) {
    const uint64_t written = ledger_->Stats().groups_written;
    ASSERT_OK(submit(i));
    ran[static_cast<size_t>(i)].get_future().wait();
    // Written once open group_open_max_us (the syncer is held): the next
    // submission starts a group of its own.
    ASSERT_TRUE(Eventually([&] { return ledger_->Stats().groups_written > written; }));
  }
  syncer_release.set_value();
  for (auto& d : done) ASSERT_OK(d.get_future().get());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0].first, "S0");
  EXPECT_EQ(order[1].first, "F1");
  EXPECT_EQ(order[2].first, "F2");
  EXPECT_EQ(order[3].first, "F3");
  EXPECT_NE(group_of[1], group_of[2]);
  EXPECT_NE(group_of[2], group_of[3]);
  for (const auto& [name, thread] : order) EXPECT_EQ(thread, "narae-syncer") << name;
}

// NARAE_LEDGER_STAGES: Close() prints one JSON line with where the groups'
// time went; every submission is counted once and the stages of a group add
// up to no more than its total.
TEST_F(LedgerTest, PipelineStagesPrintedAtCloseWhenAsked) {
  constexpr int kSubmissions = 40;
  for (int i = 0; i < kSubmissions; ++i) {
    ASSERT_OK(ledger_->Execute([i](Txn& txn) {
      txn.PutAux("st/" + std::to_string(i), "v");
      std::this_thread::sleep_for(std::chrono::microseconds(i == 0 ? 20000 : 0));
    }));
  }
  ASSERT_EQ(setenv("NARAE_LEDGER_STAGES", "1", 1), 0);
  ::testing::internal::CaptureStderr();
  Status closed = ledger_->Close();
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(unsetenv("NARAE_LEDGER_STAGES"), 0);
  ASSERT_OK(closed);
  ledger_.reset();
  const size_t at = err.find("{\"ledger_stages_us\":");
  ASSERT_NE(at, std::string::npos) << err;
  const nlohmann::json j = nlohmann::json::parse(err.substr(at, err.find('\n', at) - at));
  const nlohmann::json& s = j["ledger_stages_us"];
  // Execute waits for each: one group per submission, plus Close's own.
  const uint64_t groups = s["total"]["n"];
  EXPECT_GE(groups, static_cast<uint64_t>(kSubmissions));
  EXPECT_EQ(s["queued"]["n"].get<uint64_t>(), groups);
  EXPECT_EQ(s["sequencing"]["n"].get<uint64_t>(), groups);
  EXPECT_EQ(s["callbacks"]["n"].get<uint64_t>(), groups);
  EXPECT_GE(s["submissions"]["max"].get<uint64_t>(), 1u);
  // The first submission slept 20 ms while it was sequenced.
  EXPECT_GE(s["sequencing"]["max"].get<uint64_t>(), 20000u);
  EXPECT_GE(s["total"]["max"].get<uint64_t>(), 20000u);
  // Every group is synced once (an idle syncer: one group per sync).
  EXPECT_EQ(s["sync_wait"]["n"].get<uint64_t>(), groups);
  EXPECT_EQ(s["sync"]["n"].get<uint64_t>(), groups);
  EXPECT_GE(s["write"]["n"].get<uint64_t>(), static_cast<uint64_t>(kSubmissions));
  EXPECT_GE(s["groups_per_sync"]["n"].get<uint64_t>(), 1u);
  EXPECT_LE(s["groups_per_sync"]["n"].get<uint64_t>(), groups);
  for (const char* stage :
       {"queued", "sequencing", "write", "sync_wait", "sync", "ack_wait", "callbacks"}) {
    EXPECT_LE(s[stage]["max"].get<uint64_t>(), s["total"]["max"].get<uint64_t>()) << stage;
    EXPECT_LE(s[stage]["p50"].get<uint64_t>(), s[stage]["max"].get<uint64_t>()) << stage;
  }
  // Idle pipeline: single small groups are acknowledged on the syncer.
  EXPECT_GE(s["acked_inline"].get<uint64_t>(), 1u);
}

TEST_F(LedgerTest, PipelineStagesNotPrintedUnlessAsked) {
  ASSERT_OK(ledger_->Execute([](Txn& txn) { txn.PutAux("st/x", "v"); }));
  ASSERT_EQ(unsetenv("NARAE_LEDGER_STAGES"), 0);
  ::testing::internal::CaptureStderr();
  Status closed = ledger_->Close();
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_OK(closed);
  ledger_.reset();
  EXPECT_EQ(err.find("ledger_stages_us"), std::string::npos) << err;
}

// While the syncer is busy (here held in S0's callback), the group being
// built stays open and takes what arrives: S2, S3 and S4 commit in one
// group (Txn::now_ns() is the group's, the fake clock moved by each
// submission) although S3 and S4 were queued only after S2 was sequenced.
// With the syncer idle the same three make two groups: S2's is written as
// soon as the queue is drained. (group_open_max_us is long here, so that
// the test does not depend on how fast it runs; the bound itself:
// PipelineSmallGroupsAckedOnTheSyncerWhileOthersWait.)
TEST_F(LedgerTest, PipelineGroupStaysOpenWhileTheSyncerIsBusy) {
  Reopen([](Options& o) { o.group_open_max_us = 5'000'000; });
  std::mutex mu;
  std::vector<uint64_t> group_of(8, 0);
  auto run = [&](bool hold_syncer, int first) {
    std::promise<void> syncer_held, syncer_release, s2_started, s2_release;
    std::shared_future<void> syncer_gate = syncer_release.get_future().share();
    std::shared_future<void> s2_gate = s2_release.get_future().share();
    std::vector<std::promise<Status>> done(4);
    auto submit = [&](int i, std::function<void()> in_fn, std::function<void()> in_done) {
      return ledger_->Submit(
          [&, i, in_fn](Txn& txn) {
            if (in_fn) in_fn();
            clock_ns_ += 1;
            txn.PutAux("gr/" + std::to_string(first) + "/" + std::to_string(i), "v");
            std::lock_guard<std::mutex> lock(mu);
            group_of[static_cast<size_t>(first + i)] = txn.now_ns();
          },
          [&, i, in_done](Status st) {
            if (in_done) in_done();
            done[static_cast<size_t>(i)].set_value(st);
          });
    };
    if (hold_syncer) {
      ASSERT_OK(submit(0, nullptr, [&] {
        syncer_held.set_value();
        syncer_gate.wait();
      }));
      syncer_held.get_future().wait();
    } else {
      ASSERT_OK(submit(0, nullptr, nullptr));
      ASSERT_OK(done[0].get_future().get());
      // S0's callback ran on the syncer: let it go back to sleep.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // S2 is held on the sequencer until S3 and S4 are queued.
    ASSERT_OK(submit(
        1,
        [&] {
          s2_started.set_value();
          s2_gate.wait();
        },
        nullptr));
    s2_started.get_future().wait();
    ASSERT_OK(submit(2, nullptr, nullptr));
    ASSERT_OK(submit(3, nullptr, nullptr));
    s2_release.set_value();
    {
      // S3 and S4 sequenced (the syncer still held, if it is).
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      bool both = false;
      while (!both && std::chrono::steady_clock::now() < deadline) {
        {
          std::lock_guard<std::mutex> lock(mu);
          both = group_of[static_cast<size_t>(first + 3)] != 0;
        }
        if (!both) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      EXPECT_TRUE(both);
    }
    if (hold_syncer) syncer_release.set_value();
    for (size_t i = 0; i < done.size(); ++i) {
      if (hold_syncer || i != 0) ASSERT_OK(done[i].get_future().get());
    }
  };
  run(/*hold_syncer=*/true, 0);
  run(/*hold_syncer=*/false, 4);
  std::lock_guard<std::mutex> lock(mu);
  // Syncer held: S2, S3, S4 one group.
  EXPECT_NE(group_of[0], group_of[1]);
  EXPECT_EQ(group_of[1], group_of[2]);
  EXPECT_EQ(group_of[1], group_of[3]);
  // Syncer idle: S2 alone, S3 and S4 together (they were queued when S2's
  // group was written).
  EXPECT_NE(group_of[5], group_of[6]);
  EXPECT_EQ(group_of[6], group_of[7]);
}

// A long queue met by an idle syncer is written in parts of a multiple of
// kSealCheckSubmissions (128) submissions, so the syncer syncs the first
// part while the sequencer sequences the rest; every callback still runs in
// order.
TEST_F(LedgerTest, PipelineLongQueueIsSealedInPartsWhileTheWriterIsIdle) {
  SequencerHold hold(*ledger_);
  constexpr int kQueued = 600;
  std::mutex mu;
  std::vector<uint64_t> group_of(kQueued, 0);
  std::vector<int> order;
  std::vector<std::promise<Status>> done(kQueued);
  for (int i = 0; i < kQueued; ++i) {
    ASSERT_OK(ledger_->Submit(
        [&, i](Txn& txn) {
          // ~0.1 s for the lot: the syncer is done with S0's group well
          // before the sequencer is done with them.
          std::this_thread::sleep_for(std::chrono::microseconds(150));
          clock_ns_ += 1;  // the next group's now_ns() differs
          txn.PutAux("lq/" + std::to_string(i), "v");
          std::lock_guard<std::mutex> lock(mu);
          group_of[static_cast<size_t>(i)] = txn.now_ns();
        },
        [&, i](Status st) {
          {
            std::lock_guard<std::mutex> lock(mu);
            order.push_back(i);
          }
          done[static_cast<size_t>(i)].set_value(st);
        }));
  }
  hold.Release();
  for (auto& d : done) ASSERT_OK(d.get_future().get());
  std::lock_guard<std::mutex> lock(mu);
  std::vector<int> sizes;
  for (int i = 0; i < kQueued; ++i) {
    if (i == 0 || group_of[static_cast<size_t>(i)] != group_of[static_cast<size_t>(i - 1)]) {
      sizes.push_back(0);
    }
    ++sizes.back();
  }
  ASSERT_GE(sizes.size(), 2u);
  std::string all;
  for (int n : sizes) all += std::to_string(n) + " ";
  for (size_t g = 0; g + 1 < sizes.size(); ++g) EXPECT_EQ(sizes[g] % 128, 0) << g << ": " << all;
  for (int i = 0; i < kQueued; ++i) EXPECT_EQ(order[static_cast<size_t>(i)], i);
}

// DeferUntilGroupCallbacksReturn: a call deferred by a callback runs on the
// same thread once the group's last callback has returned, before the next
// group's callbacks; outside callbacks, and beyond kDeferredCallsMax, it is
// refused and the caller does the work itself.
TEST_F(LedgerTest, PipelineDeferredCallsRunAfterTheGroupsCallbacks) {
  EXPECT_FALSE(DeferUntilGroupCallbacksReturn([](void*) {}, nullptr));
  struct Log {
    std::mutex mu;
    std::vector<std::string> events;
    std::vector<std::thread::id> threads;
    void Add(std::string e) {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(std::move(e));
      threads.push_back(std::this_thread::get_id());
    }
  } log;
  SequencerHold hold(*ledger_);
  // G1 (three submissions) queue behind S0: one group.
  std::atomic<int> refused{0};
  std::vector<std::promise<void>> done(4);
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK(ledger_->Submit([i](Txn& txn) { txn.PutAux("df/" + std::to_string(i), "v"); },
                              [&, i](Status st) {
                                NARAE_CHECK(st.ok());
                                log.Add("cb" + std::to_string(i));
                                if (i == 0) {
                                  // More than the bound: the last ones are refused.
                                  for (size_t k = 0; k < kDeferredCallsMax + 2; ++k) {
                                    const bool ok = DeferUntilGroupCallbacksReturn(
                                        [](void* arg) { static_cast<Log*>(arg)->Add("deferred"); },
                                        &log);
                                    if (!ok) ++refused;
                                  }
                                }
                                done[static_cast<size_t>(i)].set_value();
                              }));
  }
  hold.Release();
  for (int i = 0; i < 3; ++i) done[static_cast<size_t>(i)].get_future().wait();
  // The next group's callback comes after every deferred call.
  ASSERT_OK(ledger_->Submit([](Txn& txn) { txn.PutAux("df/next", "v"); },
                            [&](Status) {
                              log.Add("next");
                              done[3].set_value();
                            }));
  done[3].get_future().wait();
  EXPECT_EQ(refused.load(), 2);
  std::lock_guard<std::mutex> lock(log.mu);
  ASSERT_EQ(log.events.size(), 3 + kDeferredCallsMax + 1);
  EXPECT_EQ(log.events[0], "cb0");
  EXPECT_EQ(log.events[1], "cb1");
  EXPECT_EQ(log.events[2], "cb2");
  for (size_t k = 3; k < 3 + kDeferredCallsMax; ++k) {
    EXPECT_EQ(log.events[k], "deferred") << k;
    EXPECT_EQ(log.threads[k], log.threads[2]) << k;
  }
  EXPECT_EQ(log.events.back(), "next");
  EXPECT_FALSE(DeferUntilGroupCallbacksReturn([](void*) {}, nullptr));
}

// While a group stays open for a busy syncer, a submission does not wake
// the sequencer: it is taken with others once 16 are queued (or the rest of
// a full group of 64, if fewer), or when the syncer goes idle, or at
// group_open_max_us. A few wake-ups per group, not one per request.
TEST_F(LedgerTest, PipelineOpenGroupWakesForAFullGroupNotEachSubmission) {
  Reopen([](Options& o) { o.group_open_max_us = 5'000'000; });
  std::promise<void> syncer_held, syncer_release;
  std::shared_future<void> syncer_gate = syncer_release.get_future().share();
  constexpr int kSubmissions = 65;  // S0 (holds the syncer), then 64
  std::vector<std::atomic<bool>> ran(kSubmissions);
  std::vector<std::promise<Status>> done(kSubmissions);
  auto submit = [&](int i) {
    return ledger_->Submit(
        [&, i](Txn& txn) {
          txn.PutAux("ow/" + std::to_string(i), "v");
          ran[static_cast<size_t>(i)] = true;
        },
        [&, i](Status st) {
          if (i == 0) {
            syncer_held.set_value();
            syncer_gate.wait();
          }
          done[static_cast<size_t>(i)].set_value(st);
        });
  };
  ASSERT_OK(submit(0));
  syncer_held.get_future().wait();
  // Whatever fails below, the syncer is let go and the ledger closed (every
  // callback run) before the locals the callbacks use go.
  bool released = false;
  auto release = [&] {
    if (!released) syncer_release.set_value();
    released = true;
  };
  struct Guard {
    std::function<void()> fn;
    ~Guard() { fn(); }
  } guard{[&] {
    release();
    EXPECT_OK(ledger_->Close());
  }};
  const uint64_t written = ledger_->Stats().groups_written;
  // S1 finds the sequencer asleep: woken, it opens a group and waits.
  ASSERT_OK(submit(1));
  ASSERT_TRUE(Eventually([&] { return ran[1].load(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // asleep on the open group
  // S2 joins the open group's queue without waking it.
  ASSERT_OK(submit(2));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(ran[2].load());
  EXPECT_EQ(ledger_->Stats().groups_written, written);
  // 62 more: the sequencer wakes for every 16 queued, takes them, and
  // writes the group once it holds 64, the syncer still held.
  for (int i = 3; i < kSubmissions; ++i) ASSERT_OK(submit(i));
  ASSERT_TRUE(Eventually([&] { return ledger_->Stats().groups_written > written; }));
  for (int i = 1; i < kSubmissions; ++i) EXPECT_TRUE(ran[static_cast<size_t>(i)].load()) << i;
  EXPECT_EQ(ledger_->Stats().groups_written, written + 1);  // one group of 64
  release();
  for (auto& d : done) ASSERT_OK(d.get_future().get());
}

// A stalled syncer (held in S0's callback) still lets the queue fill: the
// sequencer writes groups (each at most kOpenGroupSubmissionsMax
// submissions) until kUnsyncedGroupsMax wait for the sync, then waits for
// room, and Submit() answers Unavailable. Every accepted submission commits
// once the syncer resumes, in order.
TEST_F(LedgerTest, PipelineStalledSyncerStillFillsTheQueue) {
  ASSERT_OK(ledger_->Close());
  ledger_.reset();
  Options o;
  o.path = dir_.Sub("small-queue");
  o.queue_submissions_max = 4;
  auto opened = Ledger::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Ledger> ledger = std::move(opened.value());
  std::promise<void> syncer_held, syncer_release;
  std::shared_future<void> syncer_gate = syncer_release.get_future().share();
  ASSERT_OK(ledger->Submit([&](Txn& txn) { txn.PutAux("sq/s0", "v"); },
                           [&](Status) {
                             syncer_held.set_value();
                             syncer_gate.wait();
                           }));
  syncer_held.get_future().wait();
  std::mutex mu;
  std::vector<int> committed;
  int accepted = 0, refused_in_a_row = 0, attempts = 0;
  // Until the pipeline is full and the sequencer waits: then every Submit()
  // is refused (the queue of 4 stays full); 2,000 refusals in a row, 0.2 s
  // at least, however slowly the sequencer runs meanwhile.
  while (refused_in_a_row < 2000 && attempts < 200000) {
    const int n = attempts++;
    Status st = ledger->Submit([n](Txn& txn) { txn.PutAux("sq/" + std::to_string(n), "v"); },
                               [&, n](Status s) {
                                 EXPECT_OK(s);
                                 std::lock_guard<std::mutex> lock(mu);
                                 committed.push_back(n);
                               });
    if (st.ok()) {
      ++accepted;
      refused_in_a_row = 0;
    } else {
      EXPECT_EQ(st.code(), StatusCode::kUnavailable);
      ++refused_in_a_row;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
  EXPECT_EQ(refused_in_a_row, 2000);
  // The written groups (64 of at most 64) plus the one the sequencer holds
  // while it waits for room, and the queue.
  EXPECT_GE(accepted, 64);
  EXPECT_LE(accepted, 64 * 64 + 64 + 4);
  syncer_release.set_value();
  ASSERT_OK(ledger->Close());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(committed.size(), static_cast<size_t>(accepted));
  for (size_t i = 1; i < committed.size(); ++i) EXPECT_LT(committed[i - 1], committed[i]);
}

// A write that fails (a full disk) while an earlier group is written but
// not yet synced: the syncer does not sync (a sync would fail too, and make
// RocksDB's error fatal); the earlier group fails with the later one, their
// callers get errors in commit order, and the ledger recovers by itself once
// the disk has room: RocksDB resumed, the memtables flushed, the state
// reloaded. The earlier group's effects were in the memtables, so they are
// kept (its caller's outcome was unknown: a retry finds it); the failed
// group's are not.
TEST_F(LedgerTest, FailedWriteFailsTheUnsyncedGroupsBeforeItAndRecovers) {
  auto fs = std::make_shared<FailingWalSyncFs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  Reopen([&](Options& o) { o.env = env.get(); });
  Funded(1, 1000);
  Funded(2, 0);
  std::promise<void> syncer_held, syncer_release;
  std::shared_future<void> syncer_gate = syncer_release.get_future().share();
  ASSERT_OK(ledger_->Submit([](Txn& txn) { txn.PutAux("wf/0", "v"); },
                            [&](Status) {
                              syncer_held.set_value();
                              syncer_gate.wait();
                            }));
  syncer_held.get_future().wait();
  std::mutex mu;
  std::vector<std::pair<int, Status>> answers;
  auto submit = [&](int n, uint64_t id, uint64_t amount) {
    return ledger_->Submit(
        [id, amount](Txn& txn) {
          const Transfer t = Xfer(id, 1, 2, amount);
          NARAE_CHECK(txn.CreateTransfers({&t, 1})[0].result == CreateTransferResult::kOk);
        },
        [&, n](Status st) {
          std::lock_guard<std::mutex> lock(mu);
          answers.emplace_back(n, st);
        });
  };
  uint64_t written = ledger_->Stats().groups_written;
  ASSERT_OK(submit(1, 21, 5));  // written, waits for the held syncer
  ASSERT_TRUE(Eventually([&] { return ledger_->Stats().groups_written > written; }));
  fs->fail_append = true;
  ASSERT_OK(submit(2, 22, 6));  // its write fails
  ASSERT_TRUE(Eventually([&] { return !ledger_->Stats().healthy; }));
  syncer_release.set_value();
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lock(mu);
    return answers.size() == 2;
  }));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(answers[0].first, 1);
    EXPECT_EQ(answers[0].second.code(), StatusCode::kUnavailable) << answers[0].second.ToString();
    EXPECT_EQ(answers[1].first, 2);
    EXPECT_EQ(answers[1].second.code(), StatusCode::kIOError) << answers[1].second.ToString();
  }
  EXPECT_EQ(fs->syncs_failed.load(), 0);  // no sync was tried on the failed writer
  // Refused while the disk is full, in commit order with the rest.
  EXPECT_EQ(ledger_->Submit([](Txn&) {}, [](Status) {}).code(), StatusCode::kUnavailable);
  fs->fail_append = false;
  ASSERT_TRUE(Eventually([&] { return ledger_->Stats().healthy; }));
  EXPECT_EQ(Create(Xfer(21, 1, 2, 5)).result, CreateTransferResult::kExists);
  EXPECT_EQ(Create(Xfer(22, 1, 2, 6)).result, CreateTransferResult::kOk);
  EXPECT_EQ(Get(1).debits_posted, 11u);
  EXPECT_TRUE(ledger_->LookupTransfer(TransferId::From(21)).has_value());

  ASSERT_OK(ledger_->Close());
  ledger_.reset();
  env.reset();
  Open();
  auto report = ledger_->Verify(nullptr);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->ok) << report->first_problem;
  EXPECT_EQ(Get(1).debits_posted, 11u);
}

// A failed WAL sync fails the groups it covered (their callers get the
// error, never "done") and keeps their effects from readers (the synced
// snapshot stays at the last durable group). RocksDB takes a failed WAL
// sync as fatal (DB::Resume refuses), so the ledger stays unavailable, even
// once the disk works again, until it is reopened: then the WAL on disk
// decides, the ledger verifies, and a retry of the failed transfer (its
// outcome was unknown to its caller) either finds it or makes it, once.
TEST_F(LedgerTest, FailedWalSyncFailsItsGroupsAndTheLedgerStaysDownUntilReopened) {
  auto fs = std::make_shared<FailingWalSyncFs>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  Reopen([&](Options& o) { o.env = env.get(); });
  Funded(1, 1000);
  Funded(2, 0);
  ASSERT_EQ(Create(Xfer(10, 1, 2, 100)).result, CreateTransferResult::kOk);

  fs->fail = true;
  const Transfer x = Xfer(11, 1, 2, 7);
  auto failed = ledger_->CreateTransfers(std::span<const Transfer>(&x, 1));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kIOError) << failed.status().ToString();
  EXPECT_GE(fs->syncs_failed.load(), 1);
  EXPECT_FALSE(ledger_->Stats().healthy);
  // Readers still see the last durable state only.
  EXPECT_FALSE(ledger_->LookupTransfer(TransferId::From(11)).has_value());
  EXPECT_TRUE(ledger_->LookupTransfer(TransferId::From(10)).has_value());
  EXPECT_EQ(ledger_->LookupAccount(AccountId::From(1))->debits_posted, 100u);
  // The disk works again; the ledger stays down (a failed write of a full
  // disk recovers within ~200 ms: DiskFault in the switch's tests).
  fs->fail = false;
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_FALSE(ledger_->Stats().healthy);
  Status refused = ledger_->Submit([](Txn&) {}, [](Status) {});
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable) << refused.ToString();

  (void)ledger_->Close();
  ledger_.reset();
  env.reset();
  Open();  // the default file system
  EXPECT_TRUE(ledger_->Stats().healthy);
  auto report = ledger_->Verify(nullptr);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->ok) << report->first_problem;
  const CreateTransferResult retry = Create(x).result;
  EXPECT_TRUE(retry == CreateTransferResult::kOk || retry == CreateTransferResult::kExists)
      << static_cast<int>(retry);
  EXPECT_EQ(Get(1).debits_posted, 107u);  // the 100 and x, once
  EXPECT_EQ(Get(2).credits_posted, 107u);
}

}  // namespace
}  // namespace narae::testing
