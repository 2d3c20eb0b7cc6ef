// The ledger's commit pipeline (sequencer -> writer -> acknowledging
// thread): callbacks run in commit order whichever thread runs them (when
// the pipeline is idle a small group is written and acknowledged by the
// thread that sealed it; large groups' callbacks run on the acknowledging
// thread), and a small group never overtakes callbacks still queued or
// running.
#include <gtest/gtest.h>

#include <pthread.h>
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

// A small durable group's callbacks run on the writer even when the next
// group is already sealed (kInlineAckBeforeNextWriteMax): S0 is held on the
// sequencer while F1..F3 queue, so S0's group is written while F1..F3's is
// sealed behind it (or, if the sequencer was slow, written by the sequencer
// itself once the pipeline was idle); no callback runs on the acknowledging
// thread. Threads are told apart by their names.
TEST_F(LedgerTest, PipelineSmallGroupAckedOnTheWriterWhileTheNextWaits) {
  std::promise<void> seq_started, seq_release;
  std::shared_future<void> seq_gate = seq_release.get_future().share();
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> order;  // name, thread name
  std::vector<std::promise<Status>> done(4);
  auto submit = [&](int i, std::function<void()> before) {
    const std::string name = i == 0 ? "S0" : "F" + std::to_string(i);
    return ledger_->Submit(
        [name, before](Txn& txn) {
          if (before) before();
          txn.PutAux("ak/" + name, "v");
        },
        [&, name, i](Status st) {
          {
            std::lock_guard<std::mutex> lock(mu);
            char thread[16] = {};
            pthread_getname_np(pthread_self(), thread, sizeof(thread));
            order.emplace_back(name, thread);
          }
          done[static_cast<size_t>(i)].set_value(st);
        });
  };
  ASSERT_OK(submit(0, [&] {
    seq_started.set_value();
    seq_gate.wait();
  }));
  seq_started.get_future().wait();
  for (int i = 1; i <= 3; ++i) ASSERT_OK(submit(i, nullptr));
  seq_release.set_value();
  for (auto& d : done) ASSERT_OK(d.get_future().get());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0].first, "S0");
  EXPECT_EQ(order[1].first, "F1");
  EXPECT_EQ(order[3].first, "F3");
  // S0's group went to the writer (F1..F3 were queued).
  EXPECT_EQ(order[0].second, "narae-writer");
  for (const auto& [name, thread] : order) EXPECT_NE(thread, "narae-acker") << name;
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
  for (const char* stage : {"queued", "sequencing", "handover", "write", "ack_wait", "callbacks"}) {
    EXPECT_LE(s[stage]["max"].get<uint64_t>(), s["total"]["max"].get<uint64_t>()) << stage;
    EXPECT_LE(s[stage]["p50"].get<uint64_t>(), s[stage]["max"].get<uint64_t>()) << stage;
  }
  // Idle pipeline: single small groups are written on the sequencer and
  // acknowledged where they were written.
  EXPECT_GE(s["written_on_sequencer"].get<uint64_t>(), 1u);
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

// While the writer has no room (it is busy with group 1 and group 2 waits
// sealed), the group being built takes what arrives instead of being sealed
// and waiting: S2, S3 and S4 commit in one group (Txn::now_ns() is the
// group's, the fake clock moved by each submission). Before, S2 was sealed alone and S3, S4 formed
// a fourth group.
TEST_F(LedgerTest, PipelineGroupGrowsWhileTheWriterHasNoRoom) {
  std::promise<void> s0_started, s0_release, writer_held, writer_release, s2_started, s2_release;
  std::shared_future<void> s0_gate = s0_release.get_future().share();
  std::shared_future<void> writer_gate = writer_release.get_future().share();
  std::shared_future<void> writer_held_f = writer_held.get_future().share();
  std::shared_future<void> s2_gate = s2_release.get_future().share();
  std::mutex mu;
  std::vector<uint64_t> group_of(5, 0);
  std::vector<std::promise<Status>> done(5);
  std::promise<void> s1_ran;
  auto submit = [&](int i, std::function<void()> in_fn, std::function<void()> in_done) {
    return ledger_->Submit(
        [&, i, in_fn](Txn& txn) {
          if (in_fn) in_fn();
          clock_ns_ += 1;  // the next group's now_ns() differs
          txn.PutAux("gr/" + std::to_string(i), "v");
          std::lock_guard<std::mutex> lock(mu);
          group_of[static_cast<size_t>(i)] = txn.now_ns();
        },
        [&, i, in_done](Status st) {
          if (in_done) in_done();
          done[static_cast<size_t>(i)].set_value(st);
        });
  };
  // S0 is held on the sequencer while S1 queues, so S0's group goes to the
  // writer, whose inline callback then holds it.
  ASSERT_OK(submit(
      0,
      [&] {
        s0_started.set_value();
        s0_gate.wait();
      },
      [&] {
        writer_held.set_value();
        writer_gate.wait();
      }));
  s0_started.get_future().wait();
  // S1 (group 2) waits until the writer is held: then it is sealed and
  // waits for the writer.
  ASSERT_OK(submit(
      1,
      [&] {
        writer_held_f.wait();
        s1_ran.set_value();
      },
      nullptr));
  s0_release.set_value();
  s1_ran.get_future().wait();
  // S2 starts group 3 and waits until S3 and S4 are queued.
  ASSERT_OK(submit(
      2,
      [&] {
        s2_started.set_value();
        s2_gate.wait();
      },
      nullptr));
  s2_started.get_future().wait();
  ASSERT_OK(submit(3, nullptr, nullptr));
  ASSERT_OK(submit(4, nullptr, nullptr));
  s2_release.set_value();
  // The sequencer takes S3 and S4 without the writer (before, it waited for
  // room with S2's group sealed, and took them only once the writer was
  // released). The writer is released either way, so a failure ends.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  bool took_them = false;
  while (!took_them && std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard<std::mutex> lock(mu);
      took_them = group_of[4] != 0;
    }
    if (!took_them) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  writer_release.set_value();
  for (auto& d : done) ASSERT_OK(d.get_future().get());
  EXPECT_TRUE(took_them);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_NE(group_of[0], group_of[1]);
  EXPECT_NE(group_of[1], group_of[2]);
  EXPECT_EQ(group_of[2], group_of[3]);
  EXPECT_EQ(group_of[2], group_of[4]);
}

// A long queue met by an idle writer is sealed in parts of a multiple of
// kSealCheckSubmissions (128) submissions, so the writer writes the first
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
          // ~0.1 s for the lot: the writer is done with S0's group well
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
  for (size_t g = 0; g + 1 < sizes.size(); ++g) EXPECT_EQ(sizes[g] % 128, 0) << g;
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

// A stalled writer (group 1 held in its callback, group 2 sealed) still
// lets the queue fill: the group that grows meanwhile takes at most a
// queue's worth of submissions, then Submit() answers Unavailable, as before
// groups grew. Every accepted submission commits once the writer resumes.
TEST_F(LedgerTest, PipelineStalledWriterStillFillsTheQueue) {
  ASSERT_OK(ledger_->Close());
  ledger_.reset();
  Options o;
  o.path = dir_.Sub("small-queue");
  o.queue_submissions_max = 4;
  auto opened = Ledger::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Ledger> ledger = std::move(opened.value());
  std::promise<void> s0_started, s0_release, writer_held, writer_release, s1_ran;
  std::shared_future<void> s0_gate = s0_release.get_future().share();
  std::shared_future<void> writer_gate = writer_release.get_future().share();
  std::shared_future<void> writer_held_f = writer_held.get_future().share();
  // S0 is held on the sequencer while S1 queues, so S0's group goes to the
  // writer, whose inline callback then holds it; S1 (group 2) is sealed once
  // the writer is held, and waits.
  ASSERT_OK(ledger->Submit(
      [&](Txn& txn) {
        s0_started.set_value();
        s0_gate.wait();
        txn.PutAux("sq/s0", "v");
      },
      [&](Status) {
        writer_held.set_value();
        writer_gate.wait();
      }));
  s0_started.get_future().wait();
  ASSERT_OK(ledger->Submit(
      [&](Txn& txn) {
        writer_held_f.wait();
        txn.PutAux("sq/s1", "v");
        s1_ran.set_value();
      },
      [](Status) {}));
  s0_release.set_value();
  s1_ran.get_future().wait();
  std::atomic<int> committed{0};
  int accepted = 0, refused = 0;
  // Submissions arrive faster than the sequencer runs them (1 ms each), so
  // the queue is never empty when it looks: without the bound the growing
  // group would take them all.
  for (int i = 0; i < 80; ++i) {
    Status st = ledger->Submit(
        [i](Txn& txn) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          txn.PutAux("sq/" + std::to_string(i + 1), "v");
        },
        [&](Status s) {
          if (s.ok()) ++committed;
        });
    if (st.ok()) {
      ++accepted;
    } else {
      EXPECT_EQ(st.code(), StatusCode::kUnavailable);
      ++refused;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
  writer_release.set_value();
  EXPECT_GT(refused, 0);
  EXPECT_LE(accepted, 12);
  ASSERT_OK(ledger->Close());
  EXPECT_EQ(committed.load(), accepted);
}

}  // namespace
}  // namespace narae::testing
