// Holds, expiry, idempotency across restarts, timestamps, queries, linked
// chains, balancing transfers, the Txn/aux hook and tamper detection.
#include <rocksdb/db.h>
#include <rocksdb/utilities/options_util.h>
#include <rocksdb/write_batch.h>

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "tests/ledger_fixture.hpp"

namespace narae::testing {
namespace {

namespace tf = transfer_flags;
namespace af = account_flags;
using TR = CreateTransferResult;
using AR = CreateAccountResult;

TEST_F(LedgerTest, PartialPostReleasesTheRest) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  ASSERT_EQ(Create(Xfer(10, 1, 2, 300, tf::kPending)).result, TR::kOk);
  EXPECT_EQ(Get(1).debits_pending, 300u);
  EXPECT_EQ(Get(2).credits_pending, 300u);
  TransferOutcome post = Create(PostOf(11, 10, 120));
  ASSERT_EQ(post.result, TR::kOk);
  EXPECT_EQ(post.amount_minor, 120u);
  Account c = Get(1);
  EXPECT_EQ(c.debits_pending, 0u);
  EXPECT_EQ(c.debits_posted, 120u);
  EXPECT_EQ(Get(2).credits_posted, 120u);
  auto hold = ledger_->LookupHold(TransferId::From(10));
  ASSERT_TRUE(hold.has_value());
  EXPECT_EQ(hold->state, HoldState::kPosted);
  EXPECT_EQ(hold->posted_amount_minor, 120u);
  // The released 180 can be spent again: 1000 - 120 = 880 available.
  EXPECT_EQ(Create(Xfer(12, 1, 2, 880)).result, TR::kOk);
  EXPECT_EQ(Create(Xfer(13, 1, 2, 1)).result, TR::kExceedsCredits);
  ExpectVerified();
}

TEST_F(LedgerTest, PostWithZeroAmountPostsTheFullHold) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  ASSERT_EQ(Create(Xfer(10, 1, 2, 300, tf::kPending)).result, TR::kOk);
  TransferOutcome post = Create(PostOf(11, 10));
  ASSERT_EQ(post.result, TR::kOk);
  EXPECT_EQ(post.amount_minor, 300u);
  EXPECT_EQ(ledger_->LookupTransfer(TransferId::From(11))->amount_minor, 300u);
  // A retry of the same post is `exists`, not a second capture.
  EXPECT_EQ(Create(PostOf(11, 10)).result, TR::kExists);
  EXPECT_EQ(Get(1).debits_posted, 300u);
}

TEST_F(LedgerTest, VoidReleasesHold) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  ASSERT_EQ(Create(Xfer(10, 1, 2, 1000, tf::kPending)).result, TR::kOk);
  EXPECT_EQ(Create(Xfer(11, 1, 2, 1)).result, TR::kExceedsCredits);
  ASSERT_EQ(Create(VoidOf(12, 10)).result, TR::kOk);
  EXPECT_EQ(Get(1).debits_pending, 0u);
  EXPECT_EQ(ledger_->LookupHold(TransferId::From(10))->state, HoldState::kVoided);
  EXPECT_EQ(Create(Xfer(13, 1, 2, 1000)).result, TR::kOk);
  ExpectVerified();
}

TEST_F(LedgerTest, HoldsExpireInOrderAndCannotBePostedAfter) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  Transfer a = Xfer(10, 1, 2, 100, tf::kPending);
  a.timeout_s = 20;
  Transfer b = Xfer(11, 1, 2, 200, tf::kPending);
  b.timeout_s = 10;
  ASSERT_EQ(CreateBatch({a, b})[1].result, TR::kOk);
  EXPECT_EQ(Get(1).debits_pending, 300u);
  Advance(11);
  ASSERT_OK(ledger_->Tick());
  EXPECT_EQ(Get(1).debits_pending, 100u);  // b expired, a not yet
  EXPECT_EQ(ledger_->LookupHold(TransferId::From(11))->state, HoldState::kExpired);
  EXPECT_EQ(ledger_->LookupHold(TransferId::From(10))->state, HoldState::kPending);
  EXPECT_EQ(Create(PostOf(12, 11)).result, TR::kPendingTransferExpired);
  EXPECT_EQ(Create(VoidOf(13, 11)).result, TR::kPendingTransferExpired);
  // Expiry survives a restart, and a's expiry is still due later.
  Reopen();
  EXPECT_EQ(Get(1).debits_pending, 100u);
  Advance(10);
  ASSERT_OK(ledger_->Tick());
  EXPECT_EQ(Get(1).debits_pending, 0u);
  // History shows the expiries as entries of kind kExpiry, in order.
  AccountFilter f;
  f.account_id = AccountId::From(1);
  auto entries = ledger_->GetAccountEntries(f);
  ASSERT_TRUE(entries.ok());
  std::vector<uint64_t> expired;
  for (const auto& e : *entries) {
    if (e.kind == AccountEntry::Kind::kExpiry) expired.push_back(e.transfer.id.value.lo);
  }
  EXPECT_EQ(expired, (std::vector<uint64_t>{11, 10}));
  ExpectVerified();
}

TEST_F(LedgerTest, SequencerExpiresHoldsByItself) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  Transfer a = Xfer(10, 1, 2, 100, tf::kPending);
  a.timeout_s = 1;
  ASSERT_EQ(Create(a).result, TR::kOk);
  Advance(2);
  // No call: the sequencer notices the due hold within its poll interval.
  for (int i = 0; i < 100 && Get(1).debits_pending != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(Get(1).debits_pending, 0u);
}

TEST_F(LedgerTest, IdempotentAfterRestart) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  TransferOutcome first = Create(Xfer(10, 1, 2, 100));
  ASSERT_EQ(first.result, TR::kOk);
  EXPECT_EQ(Create(Xfer(11, 1, 2, 5000)).result, TR::kExceedsCredits);
  Reopen();
  TransferOutcome again = Create(Xfer(10, 1, 2, 100));
  EXPECT_EQ(again.result, TR::kExists);
  EXPECT_EQ(again.timestamp, first.timestamp);
  EXPECT_EQ(Create(Xfer(10, 1, 2, 101)).result, TR::kExistsWithDifferentAmount);
  // Funds arrive, but the failed id stays failed.
  ASSERT_EQ(Create(Xfer(12, 9408, 1, 10000)).result, TR::kOk);
  EXPECT_EQ(Create(Xfer(11, 1, 2, 5000)).result, TR::kIdAlreadyFailed);
  EXPECT_EQ(Get(1).debits_posted, 100u);
  ExpectVerified();
}

TEST_F(LedgerTest, TimestampsStrictlyIncreaseEvenWhenTheClockStepsBack) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  uint64_t t1 = Create(Xfer(10, 1, 2, 1)).timestamp;
  clock_ns_ -= 3600 * kSecondNs;  // the clock steps back an hour
  uint64_t t2 = Create(Xfer(11, 1, 2, 1)).timestamp;
  EXPECT_GT(t2, t1);
  Reopen();
  uint64_t t3 = Create(Xfer(12, 1, 2, 1)).timestamp;
  EXPECT_GT(t3, t2);
  auto out = CreateBatch({Xfer(13, 1, 2, 1), Xfer(14, 1, 2, 1), Xfer(15, 1, 2, 1)});
  EXPECT_LT(t3, out[0].timestamp);
  EXPECT_LT(out[0].timestamp, out[1].timestamp);
  EXPECT_LT(out[1].timestamp, out[2].timestamp);
}

TEST_F(LedgerTest, LinkedTransferChainIsAtomicAndRetriesAsExists) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  ASSERT_EQ(CreateAccount(Acc(3)), AR::kOk);
  // A split payment: merchant and logistics office, all or nothing.
  std::vector<Transfer> chain = {Xfer(10, 1, 2, 700, tf::kLinked), Xfer(11, 1, 3, 400)};
  auto before = Snapshot();
  auto r = CreateBatch(chain);
  EXPECT_EQ(r[0].result, TR::kLinkedEventFailed);
  EXPECT_EQ(r[1].result, TR::kExceedsCredits);
  EXPECT_EQ(Snapshot(), before);
  EXPECT_FALSE(ledger_->LookupTransfer(TransferId::From(10)).has_value());
  // A failed chain member is not remembered as failed: a corrected retry works.
  chain[1].amount_minor = 300;
  r = CreateBatch(chain);
  EXPECT_EQ(r[0].result, TR::kOk);
  EXPECT_EQ(r[1].result, TR::kOk);
  r = CreateBatch(chain);
  EXPECT_EQ(r[0].result, TR::kExists);
  EXPECT_EQ(r[1].result, TR::kExists);
  EXPECT_EQ(Get(1).debits_posted, 1000u);
  // An open chain at the end of a batch fails.
  r = CreateBatch({Xfer(20, 2, 3, 1), Xfer(21, 2, 3, 1, tf::kLinked)});
  EXPECT_EQ(r[0].result, TR::kOk);
  EXPECT_EQ(r[1].result, TR::kLinkedEventChainOpen);
  // A chain that holds and then posts within itself.
  r = CreateBatch({Xfer(30, 2, 3, 5, tf::kPending | tf::kLinked), PostOf(31, 30, 4)});
  EXPECT_EQ(r[0].result, TR::kOk);
  EXPECT_EQ(r[1].result, TR::kOk);
  ExpectVerified();
}

TEST_F(LedgerTest, BalancingDebitTakesWhatIsAvailable) {
  Funded(1, 1000, /*minimum=*/100);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  TransferOutcome out = Create(Xfer(10, 1, 2, 5000, tf::kBalancingDebit));
  ASSERT_EQ(out.result, TR::kOk);
  EXPECT_EQ(out.amount_minor, 900u);  // everything above the minimum balance
  EXPECT_EQ(Create(Xfer(11, 1, 2, 5000, tf::kBalancingDebit)).amount_minor, 0u);
  EXPECT_EQ(Create(Xfer(10, 1, 2, 5000, tf::kBalancingDebit)).result, TR::kExists);
  ASSERT_EQ(CreateAccount(Acc(4, af::kCreditsMustNotExceedDebits)), AR::kOk);
  ASSERT_EQ(Create(Xfer(12, 4, 2, 50)).result, TR::kOk);
  EXPECT_EQ(Create(Xfer(13, 2, 4, 80, tf::kBalancingCredit)).amount_minor, 50u);
  ExpectVerified();
}

TEST_F(LedgerTest, MinimumBalanceAndOverdraft) {
  Funded(1, 1000, /*minimum=*/200);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  EXPECT_EQ(Create(Xfer(10, 1, 2, 801)).result, TR::kBelowMinimumBalance);
  EXPECT_EQ(Create(Xfer(11, 1, 2, 800)).result, TR::kOk);
  EXPECT_EQ(Create(Xfer(12, 1, 2, 1, tf::kPending)).result, TR::kBelowMinimumBalance);
  Funded(3, 100, 0, /*overdraft=*/50);
  EXPECT_EQ(Create(Xfer(13, 3, 2, 150)).result, TR::kOk);
  EXPECT_EQ(Create(Xfer(14, 3, 2, 1)).result, TR::kExceedsOverdraftLimit);
  ExpectVerified();
}

TEST_F(LedgerTest, AccountHistoryQueries) {
  Account m = Acc(2, af::kHistory);
  Funded(1, 10000);
  ASSERT_EQ(CreateAccount(m), AR::kOk);
  std::vector<uint64_t> ts;
  for (uint64_t i = 0; i < 10; ++i) {
    Transfer t = Xfer(100 + i, 1, 2, 10 + i);
    t.user_data_128 = U128::From(i % 2 == 0 ? 777 : 888);  // order reference
    ts.push_back(Create(t).timestamp);
  }
  ASSERT_EQ(Create(Xfer(200, 2, 1, 5)).result, TR::kOk);
  AccountFilter f;
  f.account_id = AccountId::From(2);
  f.limit = 4;
  auto page = ledger_->GetAccountEntries(f);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 4u);
  EXPECT_EQ((*page)[0].transfer.id.value.lo, 100u);
  ASSERT_TRUE((*page)[3].has_balances);
  EXPECT_EQ((*page)[3].credits_posted, 10u + 11 + 12 + 13);  // balance after entry 4
  // Next page from the last timestamp + 1.
  f.timestamp_min = (*page)[3].timestamp + 1;
  f.limit = 100;
  page = ledger_->GetAccountEntries(f);
  EXPECT_EQ(page->size(), 7u);
  // Reversed, credits only, within a range.
  f.timestamp_min = ts[2];
  f.timestamp_max = ts[5];
  f.reversed = true;
  f.debits = false;
  page = ledger_->GetAccountEntries(f);
  ASSERT_EQ(page->size(), 4u);
  EXPECT_EQ((*page)[0].transfer.id.value.lo, 105u);
  EXPECT_EQ((*page)[3].transfer.id.value.lo, 102u);
  // Debits only: the one transfer back.
  f = AccountFilter{};
  f.account_id = AccountId::From(2);
  f.credits = false;
  page = ledger_->GetAccountEntries(f);
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].transfer.id.value.lo, 200u);
  // Bad filters are errors, not empty pages.
  f.limit = 0;
  EXPECT_FALSE(ledger_->GetAccountEntries(f).ok());
  f.limit = 10;
  f.timestamp_min = 5;
  f.timestamp_max = 4;
  EXPECT_FALSE(ledger_->GetAccountEntries(f).ok());
  // By user data: all transfers of one order.
  auto order = ledger_->QueryTransfersByUserData(U128::From(777), 100);
  ASSERT_TRUE(order.ok());
  EXPECT_EQ(order->size(), 5u);
  for (const auto& t : *order) EXPECT_EQ(t.user_data_128, U128::From(777));
  EXPECT_FALSE(ledger_->QueryTransfersByUserData(U128::From(777), 0).ok());
  // Scan by time.
  uint64_t n = 0;
  ASSERT_OK(ledger_->ScanTransfers(ts[0], ts[9], [&](const Transfer&) {
    ++n;
    return true;
  }));
  EXPECT_EQ(n, 10u);
}

TEST_F(LedgerTest, TxnAuxRecordsCommitWithTheTransfer) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  std::vector<TransferOutcome> out;
  ASSERT_OK(ledger_->Execute([&](Txn& txn) {
    EXPECT_FALSE(txn.GetAux("sim/1/counter").has_value());
    Transfer t = Xfer(10, 1, 2, 100, tf::kPending);
    out = txn.CreateTransfers({&t, 1});
    txn.PutAux("sim/1/counter", "5");
    EXPECT_EQ(txn.GetAux("sim/1/counter"), "5");
    EXPECT_EQ(txn.PeekAccount(AccountId::From(1))->debits_pending, 100u);
    EXPECT_EQ(txn.PeekHold(TransferId::From(10))->state, HoldState::kPending);
  }));
  ASSERT_EQ(out[0].result, TR::kOk);
  EXPECT_EQ(ledger_->GetAux("sim/1/counter"), "5");
  Reopen();
  EXPECT_EQ(ledger_->GetAux("sim/1/counter"), "5");
  int seen = 0;
  ASSERT_OK(ledger_->ScanAux("sim/", [&](std::string_view k, std::string_view v) {
    EXPECT_EQ(k, "sim/1/counter");
    EXPECT_EQ(v, "5");
    ++seen;
    return true;
  }));
  EXPECT_EQ(seen, 1);
}

TEST_F(LedgerTest, ConcurrentSubmittersShareGroups) {
  Funded(1, 1'000'000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  constexpr int kThreads = 8, kEach = 200;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        Transfer x = Xfer(100000 + t * kEach + i, 1, 2, 1);
        auto r = ledger_->CreateTransfers({&x, 1});
        if (r.ok() && (*r)[0].result == TR::kOk) ok++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
  EXPECT_EQ(Get(1).debits_posted, uint64_t{kThreads * kEach});
  EXPECT_LT(ledger_->Stats().groups_committed, uint64_t{kThreads * kEach} + 10);
  ExpectVerified();
}

TEST_F(LedgerTest, ReadOnlyInstanceFollowsThePrimary) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  Options o;
  o.path = dir_.Sub("db");
  o.read_only = true;
  auto ro = Ledger::Open(o);
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  EXPECT_EQ((*ro)->LookupAccount(AccountId::From(1))->credits_posted, 1000u);
  ASSERT_EQ(Create(Xfer(10, 1, 2, 7)).result, TR::kOk);
  ASSERT_OK((*ro)->CatchUp());
  EXPECT_EQ((*ro)->LookupAccount(AccountId::From(1))->debits_posted, 7u);
  auto rep = (*ro)->Verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok) << rep->first_problem;
  Transfer t = Xfer(11, 1, 2, 1);
  EXPECT_EQ((*ro)->CreateTransfers({&t, 1}).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_OK((*ro)->Close());
}

TEST_F(LedgerTest, CheckpointIsAConsistentCopy) {
  Funded(1, 1000);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  ASSERT_EQ(Create(Xfer(10, 1, 2, 7)).result, TR::kOk);
  ASSERT_OK(ledger_->Checkpoint(dir_.Sub("copy")));
  EXPECT_FALSE(ledger_->Checkpoint(dir_.Sub("copy")).ok());  // must not exist
  Options o;
  o.path = dir_.Sub("copy");
  auto copy = Ledger::Open(o);
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ((*copy)->LookupAccount(AccountId::From(2))->credits_posted, 7u);
  auto rep = (*copy)->Verify();
  EXPECT_TRUE(rep.ok() && rep->ok);
  ASSERT_OK((*copy)->Close());
}

// With Options::background_low_priority RocksDB's flush thread runs at
// nice 19: after a checkpoint's flush, the thread that ran it has taken the
// pool's lowered priority. (Each test runs in a process of its own, so the
// lowered pools stay here.)
TEST_F(LedgerTest, FlushThreadRunsAtTheLowestPriority) {
  Reopen([](Options& o) { o.background_low_priority = true; });
  errno = 0;
  if (getpriority(PRIO_PROCESS, 0) == 19 && errno == 0) {
    GTEST_SKIP() << "the test runs at nice 19 already: its threads would be too";
  }
  Funded(1, 1000);
  ASSERT_OK(ledger_->Checkpoint(dir_.Sub("copy")));  // flushes the memtables
  int flush_threads = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name != "rocksdb:high") continue;
    std::ifstream stat_file(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), {});
    // Fields after the ")" closing the name: state is field 3, nice 19.
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 19; ++i) rest >> field;
    EXPECT_EQ(field, "19") << stat;
    ++flush_threads;
  }
  EXPECT_GE(flush_threads, 1);
}

// The background write limit holds a flush to it: the SST files a
// checkpoint's flush writes take at least their size over the rate (less
// the limiter's first refill). Without the limit the same flush takes
// about 0.1 s. RocksDB's OPTIONS file shows the limiter's side effects:
// files written back every MiB, the write slowdown rate left at 16 MiB/s.
TEST_F(LedgerTest, BackgroundWriteLimitHoldsAFlushToItsRate) {
  Reopen([](Options& o) { o.background_write_mib_per_s = 1; });
  Funded(1, 1'000'000'000);
  Funded(2, 0);
  std::vector<Transfer> batch;
  for (uint64_t i = 0; i < 5; ++i) {  // bounded: five batches
    batch.clear();
    for (uint64_t k = 0; k < kBatchEventsMax; ++k) {
      batch.push_back(Xfer(50'000'000 + i * kBatchEventsMax + k, 1, 2, 1));
    }
    for (const TransferOutcome& r : CreateBatch(batch)) {
      ASSERT_EQ(r.result, CreateTransferResult::kOk);
    }
  }
  auto sst_bytes = [&] {
    uint64_t bytes = 0;
    for (const auto& f : std::filesystem::directory_iterator(dir_.Sub("db"))) {
      std::error_code ec;  // a file RocksDB deletes meanwhile counts 0
      const uintmax_t size = f.file_size(ec);
      if (f.path().extension() == ".sst" && !ec) bytes += size;
    }
    return bytes;
  };
  const uint64_t before = sst_bytes();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_OK(ledger_->Checkpoint(dir_.Sub("copy")));  // flushes the memtables
  const auto elapsed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  const uint64_t after = sst_bytes();
  ASSERT_GE(after, before);
  const uint64_t written = after - before;
  ASSERT_GT(written, uint64_t{512} << 10) << "too little flushed to measure the limit";
  // 1 MiB/s = 1,048.576 bytes a millisecond; the first 10 ms refill is free.
  const int64_t floor_ms = static_cast<int64_t>(written * 1000 / (uint64_t{1} << 20)) - 10;
  EXPECT_GE(elapsed_ms, floor_ms * 9 / 10) << written << " bytes flushed";
  const testing::RocksDbOptionsFile o = testing::NewestRocksDbOptions(dir_.Sub("db"));
  ASSERT_FALSE(o.name.empty()) << "no OPTIONS file in " << dir_.Sub("db");
  EXPECT_NE(o.text.find("\n  bytes_per_sync=1048576\n"), std::string::npos) << o.name;
  EXPECT_NE(o.text.find("\n  delayed_write_rate=16777216\n"), std::string::npos) << o.name;
}

// Opens the RocksDB folder behind the ledger's back to change history.
class Tamper {
 public:
  explicit Tamper(const std::string& path) {
    std::vector<rocksdb::ColumnFamilyDescriptor> descs;
    rocksdb::DBOptions db_opts;
    rocksdb::ConfigOptions cfg;
    NARAE_CHECK(rocksdb::LoadLatestOptions(cfg, path, &db_opts, &descs).ok());
    rocksdb::DB* raw = nullptr;
    NARAE_CHECK(rocksdb::DB::Open(db_opts, path, descs, &handles_, &raw).ok());
    db_.reset(raw);
    for (size_t i = 0; i < descs.size(); ++i) names_[descs[i].name] = handles_[i];
  }
  ~Tamper() {
    for (auto* h : handles_) (void)db_->DestroyColumnFamilyHandle(h);
    (void)db_->Close();
  }
  // Applies `edit` to the first value of family `cf` whose bytes contain
  // `needle` at `offset_hint` or anywhere.
  void EditFirst(const std::string& cf, const std::function<bool(std::string*)>& edit) {
    rocksdb::ReadOptions ro;
    ro.total_order_seek = true;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, names_.at(cf)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string v = it->value().ToString();
      if (edit(&v)) {
        NARAE_CHECK(db_->Put({}, names_.at(cf), it->key(), v).ok());
        return;
      }
    }
    NARAE_CHECK(false);
  }
  // Rewrites the chunked event log as the older layout had it (one event
  // per key: kind + record) and removes the layout mark.
  void ToOlderEventLayout() {
    rocksdb::ColumnFamilyHandle* events = names_.at("events");
    std::vector<std::pair<std::string, std::string>> chunks;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, events));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      chunks.emplace_back(it->key().ToString(), it->value().ToString());
    }
    NARAE_CHECK(it->status().ok());
    it.reset();
    rocksdb::WriteBatch b;
    for (const auto& [key, chunk] : chunks) {
      NARAE_CHECK(b.Delete(events, key).ok());
      for (size_t pos = 0; pos < chunk.size();) {
        NARAE_CHECK(chunk.size() - pos >= 12);
        const std::string ts = chunk.substr(pos, 8);
        size_t len = 0;
        for (size_t i = 8; i < 12; ++i) len = (len << 8) | static_cast<uint8_t>(chunk[pos + i]);
        NARAE_CHECK(b.Put(events, ts, chunk.substr(pos + 12, len)).ok());
        pos += 12 + len;
      }
    }
    NARAE_CHECK(b.Delete(names_.at("default"), "layout").ok());
    NARAE_CHECK(db_->Write({}, &b).ok());
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> names_;
};

// Finds the little-endian u64 `from` (cereal's portable encoding) in `v`
// and replaces it with `to`.
bool ReplaceU64(std::string* v, uint64_t from, uint64_t to) {
  std::string f(8, '\0'), t(8, '\0');
  for (int i = 0; i < 8; ++i) {
    f[i] = static_cast<char>((from >> (8 * i)) & 0xff);
    t[i] = static_cast<char>((to >> (8 * i)) & 0xff);
  }
  size_t pos = v->find(f);
  if (pos == std::string::npos) return false;
  v->replace(pos, 8, t);
  return true;
}

// A ledger with one transfer of 777, closed; `edit` changes the first
// record of family `cf` it accepts; returns what verify says afterwards.
std::string TamperAndVerify(LedgerTest* f, const std::string& cf,
                            const std::function<bool(std::string*)>& edit) {
  f->Funded(1, 1000);
  NARAE_CHECK(f->CreateAccount(LedgerTest::Acc(2)) == AR::kOk);
  NARAE_CHECK(f->Create(LedgerTest::Xfer(10, 1, 2, 777)).result == TR::kOk);
  f->ExpectVerified();
  NARAE_CHECK(f->ledger_->Close().ok());
  f->ledger_.reset();
  {
    Tamper t(f->dir_.Sub("db"));
    t.EditFirst(cf, edit);
  }
  f->Open();
  auto rep = f->ledger_->Verify();
  NARAE_CHECK(rep.ok());
  EXPECT_FALSE(rep->ok);
  return rep->first_problem;
}

TEST_F(LedgerTest, VerifyCatchesATamperedTransfer) {
  std::string problem =
      TamperAndVerify(this, "events", [](std::string* v) { return ReplaceU64(v, 777, 700); });
  EXPECT_NE(problem.find("digest"), std::string::npos) << problem;
}

TEST_F(LedgerTest, VerifyCatchesABrokenEventChunk) {
  std::string problem = TamperAndVerify(this, "events", [](std::string* v) {
    (*v)[8] = 0x7f;  // the first frame's record length now runs past the chunk
    return true;
  });
  EXPECT_NE(problem.find("malformed event chunk"), std::string::npos) << problem;
}

// A folder written before the event log was chunked (one event per key) is
// converted when opened read-write; a read-only open refuses it until then.
TEST_F(LedgerTest, OlderEventLayoutIsConvertedOnOpen) {
  Funded(1, 100000);
  ASSERT_EQ(CreateAccount(Acc(2, account_flags::kHistory)), AR::kOk);
  std::vector<Transfer> batch;  // more than one chunk in one group
  for (uint64_t i = 0; i < 150; ++i) {
    Transfer t = Xfer(100 + i, 1, 2, 1 + i);
    t.user_data_128 = U128::From(7);
    batch.push_back(t);
  }
  for (const auto& r : CreateBatch(batch)) ASSERT_EQ(r.result, TR::kOk);
  Transfer hold = Xfer(500, 1, 2, 40, transfer_flags::kPending);
  hold.timeout_s = 3600;
  ASSERT_EQ(Create(hold).result, TR::kOk);
  const Account before = Get(2);
  ASSERT_OK(ledger_->Close());
  ledger_.reset();
  {
    Tamper t(dir_.Sub("db"));
    t.ToOlderEventLayout();
  }
  Options ro;
  ro.path = dir_.Sub("db");
  ro.read_only = true;
  EXPECT_EQ(Ledger::Open(ro).status().code(), StatusCode::kFailedPrecondition);
  Open();
  EXPECT_EQ(Get(2), before);
  ExpectVerified();
  ASSERT_TRUE(ledger_->LookupTransfer(TransferId::From(249)).has_value());
  EXPECT_EQ(ledger_->LookupTransfer(TransferId::From(249))->amount_minor, 150u);
  auto by_order = ledger_->QueryTransfersByUserData(U128::From(7), 1000);
  ASSERT_TRUE(by_order.ok());
  EXPECT_EQ(by_order->size(), 150u);
  AccountFilter f;
  f.account_id = AccountId::From(2);
  f.limit = 1000;
  auto entries = ledger_->GetAccountEntries(f);
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 151u);
  EXPECT_TRUE(entries->back().has_balances);
  EXPECT_EQ(entries->back().credits_pending, 40u);
  Transfer retry = batch[0];
  EXPECT_EQ(Create(retry).result, TR::kExists);  // idempotency still exact
  retry.amount_minor = 2;
  EXPECT_EQ(Create(retry).result, TR::kExistsWithDifferentAmount);
  EXPECT_EQ(Create(PostOf(501, 500)).result, TR::kOk);
  Reopen();
  ExpectVerified();
  auto follower = Ledger::Open(ro);
  ASSERT_TRUE(follower.ok()) << follower.status().ToString();
  auto rep = (*follower)->Verify();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok) << rep->first_problem;
  ASSERT_OK((*follower)->Close());
}

TEST_F(LedgerTest, VerifyCatchesATamperedBalance) {
  std::string problem =
      TamperAndVerify(this, "accounts", [](std::string* v) { return ReplaceU64(v, 777, 769); });
  EXPECT_NE(problem.find("balances differ"), std::string::npos) << problem;
}

TEST_F(LedgerTest, VerifyCatchesATamperedJournalHash) {
  std::string problem = TamperAndVerify(this, "journal", [](std::string* v) {
    (*v)[v->size() - 1] ^= 1;  // flip a bit of the stored hash
    return true;
  });
  EXPECT_FALSE(problem.empty());
}

TEST(LedgerOpen, RejectsBadOptions) {
  Options o;
  EXPECT_EQ(Ledger::Open(o).status().code(), StatusCode::kInvalidArgument);
  TempDir dir;
  o.path = dir.Sub("db");
  o.group_events_max = 0;
  EXPECT_EQ(Ledger::Open(o).status().code(), StatusCode::kInvalidArgument);
  o.group_events_max = 100;
  o.account_snapshot_events_per_account = 0;
  EXPECT_EQ(Ledger::Open(o).status().code(), StatusCode::kInvalidArgument);
  o.account_snapshot_events_per_account = 4;
  o.group_open_max_us = 0;
  EXPECT_EQ(Ledger::Open(o).status().code(), StatusCode::kInvalidArgument);
  o.group_open_max_us = 10'000'001;
  EXPECT_EQ(Ledger::Open(o).status().code(), StatusCode::kInvalidArgument);
  o.group_open_max_us = 200;
  o.background_write_mib_per_s = kBackgroundWriteMibPerSMax + 1;
  EXPECT_EQ(Ledger::Open(o).status().code(), StatusCode::kInvalidArgument);
  o.background_write_mib_per_s = 0;
  o.pipeline_cpus = {static_cast<uint32_t>(CPU_SETSIZE)};  // no such CPU
  EXPECT_EQ(Ledger::Open(o).status().code(), StatusCode::kInvalidArgument);
  cpu_set_t mask;
  CPU_ZERO(&mask);
  ASSERT_EQ(sched_getaffinity(0, sizeof(mask), &mask), 0);
  uint32_t first = 0;
  while (!CPU_ISSET(first, &mask)) ++first;  // bounded: the mask holds this thread's CPU
  o.pipeline_cpus = {first, first};
  Result<std::unique_ptr<Ledger>> twice = Ledger::Open(o);
  EXPECT_EQ(twice.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(twice.status().message().find("listed twice"), std::string::npos)
      << twice.status().ToString();
  o.pipeline_cpus.clear();
  o.read_only = true;  // nothing there to follow
  EXPECT_FALSE(Ledger::Open(o).ok());
}

// The CPUs of this process, as the kernel numbers them.
std::vector<uint32_t> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  NARAE_CHECK(sched_getaffinity(0, sizeof(set), &set) == 0);
  std::vector<uint32_t> cpus;
  for (uint32_t c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

// A thread's "Cpus_allowed_list" from /proc/self/task/*/status, by name.
std::map<std::string, std::string> CpusAllowedByThreadName() {
  std::map<std::string, std::string> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name, line, list;
    std::getline(comm, name);
    std::ifstream status(task.path() / "status");
    while (std::getline(status, line)) {
      if (line.rfind("Cpus_allowed_list:", 0) == 0)
        list = line.substr(line.find_last_of("\t ") + 1);
    }
    out[name] = list;
  }
  return out;
}

TEST(LedgerOpen, PipelineThreadsRunOnTheirCpus) {
  const std::vector<uint32_t> cpus = AllowedCpus();
  ASSERT_FALSE(cpus.empty());
  TempDir dir;
  Options o;
  o.path = dir.Sub("db");
  o.pipeline_cpus = {cpus.back()};  // the last one
  auto ledger = Ledger::Open(o);
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  // The threads pin, then name themselves, as they start: look until all have.
  std::map<std::string, std::string> allowed;
  const auto named = [&] {
    allowed = CpusAllowedByThreadName();
    return allowed.count("narae-sequencer") && allowed.count("narae-syncer") &&
           allowed.count("narae-acker");
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!named() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (const char* name : {"narae-sequencer", "narae-syncer", "narae-acker"}) {
    EXPECT_EQ(allowed[name], std::to_string(cpus.back())) << name;
  }
  ASSERT_OK((*ledger)->Close());
  // A CPU this process may not use (its mask does not hold it): refused.
  cpu_set_t mask;
  CPU_ZERO(&mask);
  ASSERT_EQ(sched_getaffinity(0, sizeof(mask), &mask), 0);
  uint32_t outside = 0;
  while (outside < CPU_SETSIZE && CPU_ISSET(outside, &mask)) ++outside;
  if (outside < CPU_SETSIZE) {  // else this process may run on every CPU
    o.pipeline_cpus = {outside};
    auto refused = Ledger::Open(o);
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(refused.status().message().find("not one this process may run on"), std::string::npos)
        << refused.status().ToString();
  }
  // PinThisThread on a thread of its own; an empty list leaves it as it is.
  std::string pinned_list;
  std::thread([&] {
    pthread_setname_np(pthread_self(), "narae-pintest");
    ASSERT_OK(PinThisThread({}));
    ASSERT_OK(PinThisThread({cpus.front()}));
    pinned_list = CpusAllowedByThreadName()["narae-pintest"];
  }).join();
  EXPECT_EQ(pinned_list, std::to_string(cpus.front()));
}

TEST(LedgerIds, ParseAndPrint) {
  EXPECT_EQ(U128::Parse("42"), U128::From(42));
  EXPECT_EQ(U128::Parse("0x2a"), U128::From(42));
  EXPECT_EQ(U128::Parse("ffffffffffffffffffffffffffffffff", false), U128::Max());
  EXPECT_EQ(U128::From(42).ToHex(), "0000000000000000000000000000002a");
  EXPECT_FALSE(U128::Parse("").has_value());
  EXPECT_FALSE(U128::Parse("xyz").has_value());
  EXPECT_FALSE(U128::Parse("123456789012345678901").has_value());  // > 2^64 decimal
  EXPECT_FALSE(U128::Parse("1ffffffffffffffffffffffffffffffff", false).has_value());
}

}  // namespace
}  // namespace narae::testing
