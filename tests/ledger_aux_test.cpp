// Aux records through Txn::GetAux/PutAux: what a group, the groups after it
// (overlay, the sequencer's aux cache, the memtables' bloom, the SST files)
// and a restart see, for absent, present and overwritten keys.
#include <rocksdb/db.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <string>
#include <vector>

#include "tests/ledger_fixture.hpp"

namespace narae::testing {
namespace {

std::optional<std::string> TxnGet(Ledger& ledger, const std::string& key) {
  std::optional<std::string> v;
  NARAE_CHECK(ledger.Execute([&](Txn& txn) { v = txn.GetAux(key); }).ok());
  return v;
}

void TxnPut(Ledger& ledger, const std::string& key, const std::string& value) {
  NARAE_CHECK(ledger.Execute([&](Txn& txn) { txn.PutAux(key, value); }).ok());
}

std::vector<std::pair<std::string, std::string>> Scan(Ledger& ledger, const std::string& prefix) {
  std::vector<std::pair<std::string, std::string>> rows;
  NARAE_CHECK(ledger
                  .ScanAux(prefix,
                           [&](std::string_view k, std::string_view v) {
                             rows.emplace_back(k, v);
                             return true;
                           })
                  .ok());
  return rows;
}

// Opens the ledger's folder with plain RocksDB (default options: what an
// older build or another tool would write) and hands `fn` its aux family.
template <typename Fn>
void WithRawAux(const std::string& path, Fn fn) {
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies({}, path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const std::string& n : names) descs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open({}, path, descs, &handles, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::ColumnFamilyHandle* aux = nullptr;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == "aux") aux = handles[i];
  }
  ASSERT_NE(aux, nullptr);
  fn(*db, aux);
  for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  ASSERT_TRUE(db->Close().ok());
}

using Rows = std::vector<std::pair<std::string, std::string>>;

TEST_F(LedgerTest, AuxKeyPutTwiceInOneGroupKeepsTheLastValue) {
  ASSERT_OK(ledger_->Execute([&](Txn& txn) {
    EXPECT_FALSE(txn.GetAux("au/x/1").has_value());
    txn.PutAux("au/x/1", "first");
    txn.PutAux("au/x/2", "other");
    EXPECT_EQ(txn.GetAux("au/x/1"), "first");
    txn.PutAux("au/x/1", "second, longer than the first value");
    EXPECT_EQ(txn.GetAux("au/x/1"), "second, longer than the first value");
    txn.PutAux("au/x/1", "");  // an empty value is a value, not a delete
    EXPECT_EQ(txn.GetAux("au/x/1"), "");
    txn.PutAux("au/x/1", "third");
  }));
  EXPECT_EQ(ledger_->GetAux("au/x/1"), "third");
  EXPECT_EQ(TxnGet(*ledger_, "au/x/1"), "third");
  EXPECT_EQ(Scan(*ledger_, "au/x/"), (Rows{{"au/x/1", "third"}, {"au/x/2", "other"}}));
  Reopen();
  EXPECT_EQ(TxnGet(*ledger_, "au/x/1"), "third");
  EXPECT_EQ(Scan(*ledger_, "au/x/"), (Rows{{"au/x/1", "third"}, {"au/x/2", "other"}}));
}

// Many puts in one group (short keys kept inside the string, long ones on
// the heap; the group's index of its rows views their keys), every key put
// again with a new value: reads inside the group see the latest value, and
// the stored records are the last values, before and after a restart.
TEST_F(LedgerTest, AuxManyPutsInOneGroupEachKeyOnce) {
  constexpr int kKeys = 300;
  auto key = [](int i) {
    return (i % 2 == 0 ? "k" : "au/x/a-key-longer-than-the-inline-buffer/") + std::to_string(i);
  };
  ASSERT_OK(ledger_->Execute([&](Txn& txn) {
    for (int i = kKeys - 1; i >= 0; --i) txn.PutAux(key(i), "first " + std::to_string(i));
    for (int i = 0; i < kKeys; ++i) {
      ASSERT_EQ(txn.GetAux(key(i)), "first " + std::to_string(i));
      txn.PutAux(key(i), "second " + std::to_string(i));
    }
    for (int i = 0; i < kKeys; ++i) ASSERT_EQ(txn.GetAux(key(i)), "second " + std::to_string(i));
    EXPECT_FALSE(txn.GetAux("k-absent").has_value());
  }));
  Rows expected;
  for (int i = 0; i < kKeys; ++i) expected.emplace_back(key(i), "second " + std::to_string(i));
  std::sort(expected.begin(), expected.end());
  auto scan_all = [&] {
    Rows rows = Scan(*ledger_, "au/x/");
    for (auto& r : Scan(*ledger_, "k")) rows.push_back(std::move(r));
    return rows;
  };
  EXPECT_EQ(scan_all(), expected);
  Reopen();
  EXPECT_EQ(scan_all(), expected);
  for (int i = 0; i < kKeys; i += 37)
    EXPECT_EQ(TxnGet(*ledger_, key(i)), "second " + std::to_string(i));
}

// Submissions queued together share groups; each sees every earlier put,
// durable or not, in submission order.
TEST_F(LedgerTest, AuxReadsSeeEveryEarlierPutAcrossGroups) {
  constexpr int kSubmissions = 200;
  std::vector<std::optional<std::string>> seen(kSubmissions);
  std::vector<std::promise<Status>> done(kSubmissions);
  for (int i = 0; i < kSubmissions; ++i) {
    ASSERT_OK(ledger_->Submit(
        [i, &seen](Txn& txn) {
          seen[i] = txn.GetAux("au/d/c/card");
          txn.PutAux("au/d/c/card", std::to_string(i));
          if (i % 3 == 0) txn.PutAux("au/x/" + std::to_string(i), "new");
        },
        [i, &done](Status s) { done[i].set_value(s); }));
  }
  for (auto& d : done) ASSERT_OK(d.get_future().get());
  EXPECT_FALSE(seen[0].has_value());
  for (int i = 1; i < kSubmissions; ++i) EXPECT_EQ(seen[i], std::to_string(i - 1)) << i;
  EXPECT_EQ(TxnGet(*ledger_, "au/d/c/card"), std::to_string(kSubmissions - 1));
  EXPECT_EQ(Scan(*ledger_, "au/x/").size(), size_t{(kSubmissions + 2) / 3});
  EXPECT_FALSE(TxnGet(*ledger_, "au/x/1").has_value());
  Reopen();
  EXPECT_EQ(TxnGet(*ledger_, "au/d/c/card"), std::to_string(kSubmissions - 1));
  EXPECT_FALSE(TxnGet(*ledger_, "au/x/1").has_value());
  EXPECT_EQ(TxnGet(*ledger_, "au/x/3"), "new");
}

// A record the sequencer read from the DB (and keeps in its cache) and then
// overwrote reads back with the new value once the overwrite is durable, also
// when the key was last read from the memtable, from an SST file (after the
// checkpoint's flush) or after a restart.
TEST_F(LedgerTest, AuxReadAfterOverwriteIsNeverStale) {
  TxnPut(*ledger_, "au/d/s/sim", "v1");
  TxnPut(*ledger_, "bk/cfg", "config-1");
  EXPECT_EQ(TxnGet(*ledger_, "au/d/s/sim"), "v1");  // now cached by the sequencer
  TxnPut(*ledger_, "au/d/s/sim", "v2");
  EXPECT_EQ(TxnGet(*ledger_, "au/d/s/sim"), "v2");
  EXPECT_EQ(ledger_->GetAux("au/d/s/sim"), "v2");
  ASSERT_OK(ledger_->Checkpoint(dir_.Sub("cp")));  // flushes the memtables to SST files
  EXPECT_EQ(TxnGet(*ledger_, "au/d/s/sim"), "v2");
  EXPECT_FALSE(TxnGet(*ledger_, "au/d/s/other").has_value());  // absent: SST bloom says no
  TxnPut(*ledger_, "au/d/s/sim", "v3");
  EXPECT_EQ(TxnGet(*ledger_, "au/d/s/sim"), "v3");
  EXPECT_EQ(TxnGet(*ledger_, "bk/cfg"), "config-1");
  Reopen();
  EXPECT_EQ(TxnGet(*ledger_, "au/d/s/sim"), "v3");
  EXPECT_EQ(TxnGet(*ledger_, "bk/cfg"), "config-1");
  EXPECT_FALSE(TxnGet(*ledger_, "au/d/s/other").has_value());
}

std::optional<std::string> TxnGetHot(Ledger& ledger, const std::string& key) {
  std::optional<std::string> v;
  NARAE_CHECK(ledger.Execute([&](Txn& txn) { v = txn.GetAuxHot(key); }).ok());
  return v;
}

// GetAuxHot keeps "absent" in the sequencer's cache: every later put of the
// key, in the same group, the next group, many groups queued at once, after
// a flush to SST files or a restart, is seen by both GetAux and GetAuxHot.
TEST_F(LedgerTest, AuxHotReadOfAnAbsentKeySeesEveryLaterPut) {
  EXPECT_FALSE(TxnGetHot(*ledger_, "au/d/c/pin-card").has_value());
  EXPECT_FALSE(TxnGetHot(*ledger_, "au/d/c/pin-card").has_value());  // from the cache
  EXPECT_FALSE(TxnGet(*ledger_, "au/d/c/pin-card").has_value());
  ASSERT_OK(ledger_->Execute([&](Txn& txn) {
    EXPECT_FALSE(txn.GetAuxHot("au/d/c/same-group").has_value());
    txn.PutAux("au/d/c/same-group", "g1");
    EXPECT_EQ(txn.GetAuxHot("au/d/c/same-group"), "g1");
  }));
  EXPECT_EQ(TxnGetHot(*ledger_, "au/d/c/same-group"), "g1");
  TxnPut(*ledger_, "au/d/c/pin-card", "tries-1");
  EXPECT_EQ(TxnGetHot(*ledger_, "au/d/c/pin-card"), "tries-1");
  EXPECT_EQ(TxnGet(*ledger_, "au/d/c/pin-card"), "tries-1");
  EXPECT_EQ(ledger_->GetAux("au/d/c/pin-card"), "tries-1");

  // Submissions in flight together: each reads (hot) what the one before put.
  constexpr int kSubmissions = 100;
  std::vector<std::optional<std::string>> seen(kSubmissions);
  std::vector<std::promise<Status>> done(kSubmissions);
  for (int i = 0; i < kSubmissions; ++i) {
    ASSERT_OK(ledger_->Submit(
        [i, &seen](Txn& txn) {
          seen[i] = txn.GetAuxHot("au/d/s/new-sim");
          if (i % 2 == 1) txn.PutAux("au/d/s/new-sim", std::to_string(i));
        },
        [i, &done](Status s) { done[i].set_value(s); }));
  }
  for (auto& d : done) ASSERT_OK(d.get_future().get());
  EXPECT_FALSE(seen[0].has_value());
  EXPECT_FALSE(seen[1].has_value());
  for (int i = 2; i < kSubmissions; ++i) {
    EXPECT_EQ(seen[i], std::to_string(i % 2 == 0 ? i - 1 : i - 2)) << i;
  }

  EXPECT_FALSE(TxnGetHot(*ledger_, "au/d/c/flushed").has_value());
  ASSERT_OK(ledger_->Checkpoint(dir_.Sub("cp")));  // flushes the memtables to SST files
  EXPECT_FALSE(TxnGetHot(*ledger_, "au/d/c/flushed").has_value());
  TxnPut(*ledger_, "au/d/c/flushed", "after-flush");
  EXPECT_EQ(TxnGetHot(*ledger_, "au/d/c/flushed"), "after-flush");
  Reopen();
  EXPECT_EQ(TxnGetHot(*ledger_, "au/d/c/pin-card"), "tries-1");
  EXPECT_EQ(TxnGetHot(*ledger_, "au/d/s/new-sim"), std::to_string(kSubmissions - 1));
  EXPECT_EQ(TxnGetHot(*ledger_, "au/d/c/flushed"), "after-flush");
  EXPECT_FALSE(TxnGetHot(*ledger_, "au/d/c/never").has_value());
  TxnPut(*ledger_, "au/d/c/never", "now");
  EXPECT_EQ(TxnGetHot(*ledger_, "au/d/c/never"), "now");
}

// More absent keys read hot than the cache holds: it empties itself, and a
// key put after its "absent" was dropped or kept reads back its value.
TEST_F(LedgerTest, AuxHotAbsentKeysBeyondTheCacheStayCorrect) {
  constexpr int kKeys = 20000;
  auto key = [](int i) { return "au/d/c/" + std::to_string(1000000 + i); };
  ASSERT_OK(ledger_->Execute([&](Txn& txn) {
    for (int i = 0; i < kKeys; ++i) ASSERT_FALSE(txn.GetAuxHot(key(i)).has_value()) << i;
  }));
  ASSERT_OK(ledger_->Execute([&](Txn& txn) {
    for (int i = 0; i < kKeys; i += 5) txn.PutAux(key(i), "set");
  }));
  ASSERT_OK(ledger_->Execute([&](Txn& txn) {
    for (int n = 0; n < kKeys; ++n) {
      const int i = kKeys - 1 - n;  // the still-cached (last read) keys first
      if (i % 5 == 0) {
        ASSERT_EQ(txn.GetAuxHot(key(i)), "set") << i;
      } else {
        ASSERT_FALSE(txn.GetAuxHot(key(i)).has_value()) << i;
      }
    }
  }));
}

// More records read than the sequencer's cache holds (16,384): it empties
// itself and reads from the DB again, and no value is ever stale.
TEST_F(LedgerTest, AuxCacheOverflowStaysCorrect) {
  constexpr int kKeys = 20000;
  constexpr int kPerGroup = 2000;
  auto key = [](int i) { return "st/p/" + std::to_string(1000000 + i); };
  for (int g = 0; g < kKeys / kPerGroup; ++g) {
    ASSERT_OK(ledger_->Execute([&](Txn& txn) {
      for (int i = g * kPerGroup; i < (g + 1) * kPerGroup; ++i) txn.PutAux(key(i), "a");
    }));
  }
  for (int round = 0; round < 2; ++round) {
    ASSERT_OK(ledger_->Execute([&](Txn& txn) {
      // The second round reads the keys still cached from the first (the
      // last ones read) first.
      for (int n = 0; n < kKeys; ++n) {
        const int i = round == 0 ? n : kKeys - 1 - n;
        ASSERT_EQ(txn.GetAux(key(i)), round == 0 ? "a" : (i % 7 == 0 ? "b" : "a")) << i;
      }
    }));
    if (round == 0) {
      ASSERT_OK(ledger_->Execute([&](Txn& txn) {
        for (int i = 0; i < kKeys; i += 7) txn.PutAux(key(i), "b");
      }));
    }
  }
  Reopen();
  EXPECT_EQ(TxnGet(*ledger_, key(7)), "b");
  EXPECT_EQ(TxnGet(*ledger_, key(8)), "a");
  EXPECT_FALSE(TxnGet(*ledger_, key(kKeys)).has_value());
}

// A folder whose aux family was written by a RocksDB without the aux
// memtable bloom (an older build: default column family options), part in
// SST files and part only in the write-ahead log, opens and reads the same.
TEST_F(LedgerTest, AuxWrittenWithoutTheMemtableBloomReadsTheSame) {
  TxnPut(*ledger_, "au/x/ledger", "written by the ledger");
  ASSERT_OK(ledger_->Close());
  ledger_.reset();
  WithRawAux(dir_.Sub("db"), [](rocksdb::DB& db, rocksdb::ColumnFamilyHandle* aux) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db.Put(wo, aux, "au/x/flushed", "in an SST file").ok());
    ASSERT_TRUE(db.Flush({}, aux).ok());
    ASSERT_TRUE(db.Put(wo, aux, "au/x/wal", "only in the log").ok());
  });
  Open();
  EXPECT_EQ(TxnGet(*ledger_, "au/x/ledger"), "written by the ledger");
  EXPECT_EQ(TxnGet(*ledger_, "au/x/flushed"), "in an SST file");
  EXPECT_EQ(TxnGet(*ledger_, "au/x/wal"), "only in the log");
  EXPECT_FALSE(TxnGet(*ledger_, "au/x/absent").has_value());
  TxnPut(*ledger_, "au/x/wal", "replaced");
  EXPECT_EQ(ledger_->GetAux("au/x/wal"), "replaced");
  EXPECT_EQ(Scan(*ledger_, "au/x/").size(), 3u);
  ExpectVerified();
}

// The sequencer keeps the aux rows of the last groups readable after they
// are durable (up to 16 groups): a record a group wrote is read back by a
// later group without a RocksDB read. Proved by corrupting the record's SST
// block after a flush: a RocksDB read of it would stop the process
// (CorruptAuxBlockStopsTheProcessInsteadOfReadingAsAbsent below).
TEST_F(LedgerTest, AuxRecordsOfTheLastDurableGroupsAreReadWithoutTheDb) {
  // Incompressible (the block stays raw on disk) around a marker to find it.
  std::string value(8000, '\0');
  uint64_t x = 88172645463325252ull;
  for (char& c : value) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  const std::string marker = "<<marker 5f3a9c: the record's bytes on disk>>";
  value.replace(4000, marker.size(), marker);
  TxnPut(*ledger_, "au/x/recent", value);  // durable once Execute returns
  TxnPut(*ledger_, "au/x/other", "a later group");
  ASSERT_OK(ledger_->Checkpoint(dir_.Sub("cp")));  // flushes the memtables to SST files
  size_t corrupted = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_.Sub("db"))) {
    if (e.path().extension() != ".sst") continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good()) << e.path();
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const size_t at = bytes.find(marker);
    if (at == std::string::npos) continue;
    f.clear();
    f.seekp(static_cast<std::streamoff>(at));
    const std::string junk(marker.size(), '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    ASSERT_TRUE(f.good());
    ++corrupted;
  }
  ASSERT_EQ(corrupted, 1u);
  EXPECT_EQ(TxnGet(*ledger_, "au/x/recent"), value);
  EXPECT_EQ(TxnGet(*ledger_, "au/x/other"), "a later group");
}

// Puts spread over more groups than the sequencer keeps (16) read back
// with their last value from every group after them, whether the read finds
// them in the current group, a kept group or the DB; also after a restart.
TEST_F(LedgerTest, AuxReadsPastTheKeptGroupsSeeTheLastPut) {
  constexpr int kGroups = 48;
  constexpr int kShared = 8;  // keys put again and again
  auto shared = [](int i) { return "au/k/" + std::to_string(i); };
  auto own = [](int g) { return "au/u/" + std::to_string(g); };
  std::vector<std::string> last(kShared);
  for (int g = 0; g < kGroups; ++g) {
    ASSERT_OK(ledger_->Execute([&](Txn& txn) {
      for (int i = 0; i < kShared; ++i) {
        ASSERT_EQ(txn.GetAux(shared(i)), last[i].empty() ? std::optional<std::string>()
                                                         : std::optional<std::string>(last[i]))
            << g << " " << i;
      }
      for (int back = 1; back <= g; back += 3) {  // kept groups and older ones
        const std::string expected =
            (g - back) % 5 == 0 && g - back + 21 < g ? "over" : "v" + std::to_string(g - back);
        ASSERT_EQ(txn.GetAux(own(g - back)), expected) << g << " " << back;
      }
      txn.PutAux(shared(g % kShared), "s" + std::to_string(g));
      txn.PutAux(own(g), "v" + std::to_string(g));
      // A key of a group no longer kept, put again: later groups see it.
      if (g >= 21 && (g - 21) % 5 == 0) txn.PutAux(own(g - 21), "over");
      EXPECT_EQ(txn.GetAux(own(g)), "v" + std::to_string(g));
    }));
    last[g % kShared] = "s" + std::to_string(g);
  }
  auto expect_all = [&] {
    for (int i = 0; i < kShared; ++i) EXPECT_EQ(TxnGet(*ledger_, shared(i)), last[i]) << i;
    for (int g = 0; g < kGroups; ++g) {
      const bool over = g % 5 == 0 && g + 21 < kGroups;
      EXPECT_EQ(TxnGet(*ledger_, own(g)), over ? "over" : "v" + std::to_string(g)) << g;
      EXPECT_EQ(ledger_->GetAux(own(g)), over ? "over" : "v" + std::to_string(g)) << g;
    }
    EXPECT_FALSE(TxnGet(*ledger_, own(kGroups)).has_value());
  };
  expect_all();
  Reopen();
  expect_all();
}

// A read that fails (here a corrupt SST block) is never taken for an absent
// key: a retransmitted request would look new and be paid twice. The ledger
// stops the process instead, naming the family and RocksDB's error.
// The review's case: group B is written but not durable (the syncer is
// held in group A's callback, which runs on it, so B waits for its sync)
// when group C reads what B wrote: B's aux record, its transfer (a retry
// answers "exists", not a second transfer) and its post of a hold (a second
// post is refused). The sequencer reads them from the DB, where B's write
// put them before its sync; readers outside the sequencer do not see B
// until it is durable (the synced snapshot).
TEST_F(LedgerTest, ReadsSeeSealedGroupsThatAreNotYetDurable) {
  Funded(1, 1000);
  Funded(2, 0);
  ASSERT_EQ(Create(Xfer(100, 1, 2, 50, transfer_flags::kPending)).result,
            CreateTransferResult::kOk);
  std::promise<void> syncer_held, syncer_release, b_ran, c_ran;
  std::shared_future<void> syncer_gate = syncer_release.get_future().share();
  // A's callback holds the syncer (A's group is small: it is acknowledged
  // on the syncer itself).
  ASSERT_OK(ledger_->Submit([&](Txn& txn) { txn.PutAux("nd/a", "1"); },
                            [&](Status) {
                              syncer_held.set_value();
                              syncer_gate.wait();
                            }));
  syncer_held.get_future().wait();
  std::atomic<bool> b_durable{false};
  std::vector<CreateTransferResult> b_results;
  const uint64_t written_before_b = ledger_->Stats().groups_written;
  ASSERT_OK(ledger_->Submit(
      [&](Txn& txn) {
        txn.PutAux("nd/b", "2");
        const Transfer ts[] = {Xfer(200, 1, 2, 10), PostOf(201, 100, 50)};
        for (const TransferOutcome& o : txn.CreateTransfers(ts)) b_results.push_back(o.result);
        b_ran.set_value();
      },
      [&](Status s) {
        EXPECT_OK(s);
        b_durable = true;
      }));
  // Written once open group_open_max_us (the syncer is held); then 17
  // groups with aux rows of their own, so that B has left the overlay and
  // the kept groups' rows (16 at most): C reads B's rows from RocksDB,
  // where B's write put them before its sync.
  auto written_after = [&](uint64_t before) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (ledger_->Stats().groups_written <= before) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  };
  b_ran.get_future().wait();
  ASSERT_TRUE(written_after(written_before_b));
  for (int i = 0; i < 17; ++i) {
    const uint64_t written = ledger_->Stats().groups_written;
    ASSERT_OK(ledger_->Submit([i](Txn& txn) { txn.PutAux("nd/fill/" + std::to_string(i), "f"); },
                              [](Status s) { EXPECT_OK(s); }));
    ASSERT_TRUE(written_after(written));
  }
  EXPECT_FALSE(ledger_->GetAux("nd/b").has_value());  // not durable: not for readers
  EXPECT_FALSE(ledger_->LookupTransfer(TransferId::From(200)).has_value());
  bool c_saw_b_undurable = false;
  std::optional<std::string> c_a, c_b;
  std::vector<CreateTransferResult> c_results;
  std::optional<HoldInfo> c_hold;
  ASSERT_OK(ledger_->Submit(
      [&](Txn& txn) {
        c_saw_b_undurable = !b_durable.load();
        c_a = txn.GetAux("nd/a");
        c_b = txn.GetAux("nd/b");
        c_hold = txn.PeekHold(TransferId::From(100));
        const Transfer ts[] = {Xfer(200, 1, 2, 10), PostOf(202, 100, 50)};
        for (const TransferOutcome& o : txn.CreateTransfers(ts)) c_results.push_back(o.result);
        c_ran.set_value();
      },
      [](Status s) { EXPECT_OK(s); }));
  c_ran.get_future().wait();  // C is sequenced before the syncer moves on
  syncer_release.set_value();
  ASSERT_OK(ledger_->Execute([](Txn&) {}));  // after every group above
  ASSERT_EQ(b_results.size(), 2u);
  EXPECT_EQ(b_results[0], CreateTransferResult::kOk);
  EXPECT_EQ(b_results[1], CreateTransferResult::kOk);
  EXPECT_TRUE(c_saw_b_undurable);
  EXPECT_EQ(c_a, "1");
  EXPECT_EQ(c_b, "2");
  ASSERT_TRUE(c_hold.has_value());
  EXPECT_EQ(c_hold->state, HoldState::kPosted);
  ASSERT_EQ(c_results.size(), 2u);
  EXPECT_EQ(c_results[0], CreateTransferResult::kExists);
  EXPECT_EQ(c_results[1], CreateTransferResult::kPendingTransferAlreadyPosted);
  EXPECT_EQ(Get(1).debits_posted, 60u);     // the hold's 50 and one 10
  EXPECT_EQ(ledger_->GetAux("nd/b"), "2");  // durable now: readers see it
  EXPECT_TRUE(ledger_->LookupTransfer(TransferId::From(200)).has_value());
}

TEST_F(LedgerTest, CorruptAuxBlockStopsTheProcessInsteadOfReadingAsAbsent) {
  ASSERT_OK(ledger_->Close());
  ledger_.reset();
  std::string sst;
  WithRawAux(dir_.Sub("db"), [&](rocksdb::DB& db, rocksdb::ColumnFamilyHandle* aux) {
    std::string value(8000, '\0');  // incompressible: the block stays ~8 kB
    uint64_t x = 88172645463325252ull;
    for (char& c : value) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      c = static_cast<char>(x);
    }
    ASSERT_TRUE(db.Put({}, aux, "au/x/request", value).ok());
    ASSERT_TRUE(db.Flush({}, aux).ok());
    std::vector<rocksdb::LiveFileMetaData> files;
    db.GetLiveFilesMetaData(&files);
    for (const auto& f : files) {
      if (f.column_family_name == "aux") sst = f.db_path + "/" + f.name;
    }
  });
  ASSERT_FALSE(sst.empty());
  {
    // Inside the record's data block (the index and footer are at the end).
    std::fstream f(sst, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good()) << sst;
    f.seekp(1000);
    const std::string junk(64, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    ASSERT_TRUE(f.good());
  }
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Open();
        (void)ledger_->GetAux("au/x/request");
      },
      "read of aux failed: Corruption");
  EXPECT_DEATH(
      {
        Open();
        (void)TxnGet(*ledger_, "au/x/request");
      },
      "read of aux failed: Corruption");
}

}  // namespace
}  // namespace narae::testing
