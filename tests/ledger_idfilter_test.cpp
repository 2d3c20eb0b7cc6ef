// The transfer-id filter (IdFilter, ledger/engine.hpp) that lets the
// idempotency check of a new transfer skip its RocksDB read: it must never
// say "absent" for an id it was given (the ledger would then apply a retried
// transfer twice), across its growth, and with the ledger's restarts.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "ledger/engine.hpp"
#include "tests/ledger_fixture.hpp"

namespace narae::testing {
namespace {

namespace tf = transfer_flags;
using TR = CreateTransferResult;
using AR = CreateAccountResult;

TEST(IdFilter, NeverForgetsAnIdAcrossItsGrowth) {
  IdFilter f;
  f.Reset(0);
  ASSERT_TRUE(f.enabled());
  ASSERT_EQ(f.segments(), 1u);
  // Random ids (the switch's hashed ids) and sequential ones (the bank's):
  // past the first segment's design size, so the filter grows twice.
  std::mt19937_64 rng(7);
  std::vector<U128> added;
  const uint64_t n = 3 * IdFilter::kIdsMin + 12345;
  added.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    U128 id = i % 2 == 0 ? U128{rng(), rng()} : U128::From(i);
    f.Add(id);
    added.push_back(id);
  }
  EXPECT_EQ(f.segments(), 3u);  // 1M + 2M + 4M ids at the design rate
  EXPECT_TRUE(f.enabled());
  for (const U128& id : added) ASSERT_TRUE(f.MayContain(id));
}

TEST(IdFilter, AnswersAbsentForNearlyEveryOtherId) {
  IdFilter f;
  f.Reset(0);
  for (uint64_t i = 1; i <= IdFilter::kIdsMin; ++i) f.Add(U128::From(i));
  // At its design size (16 bits an id) false positives are rare: each costs
  // only the read the filter saves otherwise.
  std::mt19937_64 rng(11);
  uint64_t maybe = 0;
  constexpr uint64_t kProbes = 200'000;
  for (uint64_t i = 0; i < kProbes; ++i) maybe += f.MayContain(U128{rng() | 1, rng()});
  for (uint64_t i = 0; i < kProbes; ++i)
    maybe += f.MayContain(U128::From(IdFilter::kIdsMin + 1 + i));
  EXPECT_LT(maybe, 2 * kProbes / 200) << "false positives above 0.5%";
}

TEST(IdFilter, OffAnswersMaybeForEveryId) {
  IdFilter f;  // never reset: off
  EXPECT_FALSE(f.enabled());
  EXPECT_TRUE(f.MayContain(U128::From(1)));
  f.Reset(0);
  EXPECT_FALSE(f.MayContain(U128::From(1)));
  f.Disable();
  EXPECT_TRUE(f.MayContain(U128::From(1)));
  EXPECT_EQ(f.bytes(), 0u);
  // A first segment past the memory bound leaves it off.
  f.Reset(IdFilter::kBytesMax);  // ids: 16 bits each is 16x the bound
  EXPECT_FALSE(f.enabled());
  EXPECT_TRUE(f.MayContain(U128::From(2)));
}

TEST(IdFilter, SwitchesOffInsteadOfGrowingPastItsMemoryBound) {
  // A first segment of 1,024 ids (2 KiB) and a bound of 6 KiB: the second
  // segment (4 KiB) fits, the third (8 KiB) does not.
  IdFilter f(1024, 6 * 1024);
  f.Reset(0);
  ASSERT_TRUE(f.enabled());
  uint64_t i = 0;
  for (; i < 3 * 1024; ++i) f.Add(U128::From(i + 1));
  EXPECT_TRUE(f.enabled());
  EXPECT_EQ(f.segments(), 2u);
  EXPECT_EQ(f.bytes(), 6u * 1024);
  for (uint64_t k = 1; k <= i; ++k) ASSERT_TRUE(f.MayContain(U128::From(k)));
  f.Add(U128::From(i + 1));  // would need a third segment past the bound
  EXPECT_FALSE(f.enabled());
  EXPECT_TRUE(f.MayContain(U128::From(1'000'000)));
  EXPECT_EQ(f.bytes(), 0u);
}

// The ledger: the filter is rebuilt on open from transfer_ids (stored and
// failed ids), and ids of groups not yet durable are in it too.
TEST_F(LedgerTest, RetriesAreRecognizedThroughTheIdFilterAcrossRestarts) {
  Funded(1, 1'000'000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  std::vector<Transfer> batch;
  for (uint64_t i = 0; i < 500; ++i) batch.push_back(Xfer(1000 + i, 1, 2, 1));
  for (const auto& o : CreateBatch(batch)) ASSERT_EQ(o.result, TR::kOk);
  ASSERT_EQ(Create(Xfer(50, 1, 2, 10'000'000)).result, TR::kExceedsCredits);
  ASSERT_EQ(Create(Xfer(51, 1, 2, 5, tf::kPending)).result, TR::kOk);
  for (int round = 0; round < 2; ++round) {
    for (const auto& o : CreateBatch(batch)) ASSERT_EQ(o.result, TR::kExists);
    EXPECT_EQ(Create(Xfer(50, 1, 2, 10'000'000)).result, TR::kIdAlreadyFailed);
    EXPECT_EQ(Create(Xfer(51, 1, 2, 5, tf::kPending)).result, TR::kExists);
    Reopen();
  }
  EXPECT_EQ(Get(1).debits_posted, 500u);
  EXPECT_EQ(Get(1).debits_pending, 5u);
  ExpectVerified();
}

TEST_F(LedgerTest, RetryInTheNextGroupBeforeTheFirstIsDurableIsRecognized) {
  Funded(1, 1'000'000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  // Many submissions at once: later groups are sequenced while earlier ones
  // are written, and each retries the id of the submission before it.
  constexpr int kN = 200;
  std::atomic<int> done{0};
  std::vector<TR> first(kN), retry(kN);
  for (int i = 0; i < kN; ++i) {
    ASSERT_OK(ledger_->Submit(
        [&, i](Txn& txn) {
          Transfer t = Xfer(5000 + static_cast<uint64_t>(i), 1, 2, 1);
          first[static_cast<size_t>(i)] = txn.CreateTransfers({&t, 1})[0].result;
        },
        [&](Status) { done++; }));
    ASSERT_OK(ledger_->Submit(
        [&, i](Txn& txn) {
          Transfer t = Xfer(5000 + static_cast<uint64_t>(i), 1, 2, 1);
          retry[static_cast<size_t>(i)] = txn.CreateTransfers({&t, 1})[0].result;
        },
        [&](Status) { done++; }));
  }
  for (int i = 0; i < 500 && done.load() < 2 * kN; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(done.load(), 2 * kN);
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(first[static_cast<size_t>(i)], TR::kOk);
    EXPECT_EQ(retry[static_cast<size_t>(i)], TR::kExists);
  }
  EXPECT_EQ(Get(1).debits_posted, static_cast<uint64_t>(kN));
}

// The same, deterministically: group 2 (a transfer and an aux row) is
// written but waits for its sync while the syncer is held in group 1's
// callback, and group 3 retries the id and reads the key: the filter has
// them (FinishGroup added them before the write), and the retry is
// recognised before either group is durable.
TEST_F(LedgerTest, RetryWhileTheFirstGroupWaitsForTheWriterIsRecognized) {
  Funded(1, 1'000'000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  std::promise<void> writer_held, writer_release, s1_ran;
  std::shared_future<void> writer_gate = writer_release.get_future().share();
  std::vector<std::promise<Status>> done(3);
  ASSERT_OK(ledger_->Submit([&](Txn& txn) { txn.PutAux("rf/s0", "v"); },
                            [&](Status st) {
                              writer_held.set_value();
                              writer_gate.wait();
                              done[0].set_value(st);
                            }));
  writer_held.get_future().wait();
  TR first = TR::kOk, retry = TR::kOk;
  std::optional<std::string> seen;
  const uint64_t written = ledger_->Stats().groups_written;
  ASSERT_OK(ledger_->Submit(
      [&](Txn& txn) {
        Transfer t = Xfer(7000, 1, 2, 3);
        first = txn.CreateTransfers({&t, 1})[0].result;
        txn.PutAux("rf/new-key", "value");
        s1_ran.set_value();
      },
      [&](Status st) { done[1].set_value(st); }));
  s1_ran.get_future().wait();
  // Group 2 is written once it has been open group_open_max_us (the syncer
  // is held): group 3 is a group of its own.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (ledger_->Stats().groups_written <= written &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GT(ledger_->Stats().groups_written, written);
  ASSERT_OK(ledger_->Submit(
      [&](Txn& txn) {
        Transfer t = Xfer(7000, 1, 2, 3);
        retry = txn.CreateTransfers({&t, 1})[0].result;
        seen = txn.GetAux("rf/new-key");
      },
      [&](Status st) { done[2].set_value(st); }));
  // Group 3 is sequenced while group 2 still waits for the held syncer.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  writer_release.set_value();
  for (auto& d : done) ASSERT_OK(d.get_future().get());
  EXPECT_EQ(first, TR::kOk);
  EXPECT_EQ(retry, TR::kExists);
  EXPECT_EQ(seen, "value");
  EXPECT_EQ(Get(1).debits_posted, 3u);
}

// The aux filter: every aux key ever written is read back through a Txn
// (GetAux and GetAuxHot) after restarts; a key never written reads absent.
TEST_F(LedgerTest, AuxKeysAreFoundThroughTheAuxFilterAcrossRestarts) {
  constexpr int kKeys = 300;
  auto key = [](int i) { return "au/x/" + std::to_string(i * 7919); };
  for (int i = 0; i < kKeys; i += 100) {
    ASSERT_OK(ledger_->Execute([&](Txn& txn) {
      for (int k = i; k < i + 100; ++k) txn.PutAux(key(k), "v" + std::to_string(k));
    }));
  }
  for (int round = 0; round < 2; ++round) {
    ASSERT_OK(ledger_->Execute([&](Txn& txn) {
      for (int k = 0; k < kKeys; ++k) {
        const std::string want = "v" + std::to_string(k);
        EXPECT_EQ(k % 2 == 0 ? txn.GetAux(key(k)) : txn.GetAuxHot(key(k)), want) << key(k);
      }
      EXPECT_FALSE(txn.GetAux("au/x/never").has_value());
      EXPECT_FALSE(txn.GetAuxHot("au/x/never-hot").has_value());
    }));
    Reopen();
  }
  // Written after the reopen (the filter grows from its rebuilt state).
  ASSERT_OK(ledger_->Execute([&](Txn& txn) { txn.PutAux("au/x/later", "later"); }));
  ASSERT_OK(ledger_->Execute([&](Txn& txn) {
    EXPECT_EQ(txn.GetAux("au/x/later"), "later");
    EXPECT_EQ(txn.GetAux(key(1)), "v1");
  }));
}

}  // namespace
}  // namespace narae::testing
