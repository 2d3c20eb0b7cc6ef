// A ledger on a real RocksDB in a temporary folder, with a fake clock.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "ledger/ledger.hpp"
#include "tests/test_util.hpp"

namespace narae::testing {

using namespace narae::ledger;  // NOLINT: tests only

inline constexpr uint64_t kStartNs = 1'800'000'000'000'000'000ull;
inline constexpr uint64_t kSecondNs = 1'000'000'000ull;
inline constexpr uint32_t kKpw = 408;
inline constexpr uint32_t kUsd = 840;

class LedgerTest : public ::testing::Test {
 public:  // tests build cases from outside the fixture
  void SetUp() override { Open(); }
  void TearDown() override {
    if (ledger_) EXPECT_OK(ledger_->Close());
  }
  // Opens the fixture's folder with the fake clock; `tweak` changes the
  // options first (a folder, an Env, a bound).
  void Open(const std::function<void(Options&)>& tweak = nullptr) {
    Options o;
    o.path = dir_.Sub("db");
    o.clock_ns = [this] { return clock_ns_.load(); };
    if (tweak) tweak(o);
    auto r = Ledger::Open(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ledger_ = std::move(r.value());
  }
  void Reopen(const std::function<void(Options&)>& tweak = nullptr) {
    ASSERT_OK(ledger_->Close());
    ledger_.reset();
    Open(tweak);
  }
  void Advance(uint64_t seconds) { clock_ns_ += seconds * kSecondNs; }

  static Account Acc(uint64_t id, uint16_t flags = 0, uint32_t ledger = kKpw, uint16_t code = 1) {
    Account a;
    a.id = AccountId::From(id);
    a.ledger = ledger;
    a.code = code;
    a.flags = flags;
    return a;
  }
  static Transfer Xfer(uint64_t id, uint64_t dr, uint64_t cr, uint64_t amount, uint16_t flags = 0,
                       uint32_t ledger = kKpw) {
    Transfer t;
    t.id = TransferId::From(id);
    t.debit_account_id = AccountId::From(dr);
    t.credit_account_id = AccountId::From(cr);
    t.amount_minor = amount;
    t.ledger = ledger;
    t.code = 1;
    t.flags = flags;
    return t;
  }
  static Transfer PostOf(uint64_t id, uint64_t pending, uint64_t amount = 0) {
    Transfer t;
    t.id = TransferId::From(id);
    t.pending_id = TransferId::From(pending);
    t.amount_minor = amount;
    t.flags = transfer_flags::kPostPendingTransfer;
    return t;
  }
  static Transfer VoidOf(uint64_t id, uint64_t pending) {
    Transfer t = PostOf(id, pending);
    t.flags = transfer_flags::kVoidPendingTransfer;
    return t;
  }

  CreateAccountResult CreateAccount(const Account& a) {
    auto r = ledger_->CreateAccounts(std::span<const Account>(&a, 1));
    NARAE_CHECK(r.ok() && r->size() == 1);
    return (*r)[0].result;
  }
  TransferOutcome Create(const Transfer& t) {
    auto r = ledger_->CreateTransfers(std::span<const Transfer>(&t, 1));
    NARAE_CHECK(r.ok() && r->size() == 1);
    return (*r)[0];
  }
  std::vector<TransferOutcome> CreateBatch(const std::vector<Transfer>& ts) {
    auto r = ledger_->CreateTransfers(ts);
    NARAE_CHECK(r.ok());
    return *r;
  }
  Account Get(uint64_t id) {
    auto a = ledger_->LookupAccount(AccountId::From(id));
    NARAE_CHECK(a.has_value());
    return *a;
  }
  // A customer (credit-normal, protected) funded with `funds` from a bank
  // account 9000+ledger that may go negative.
  void Funded(uint64_t id, uint64_t funds, uint64_t minimum = 0, uint64_t overdraft = 0,
              uint32_t ledger = kKpw) {
    Account bank = Acc(9000 + ledger, 0, ledger, uint16_t(AccountCode::kBankCash));
    auto rb = CreateAccount(bank);
    NARAE_CHECK(rb == CreateAccountResult::kOk || rb == CreateAccountResult::kExists);
    Account a = Acc(id, account_flags::kDebitsMustNotExceedCredits, ledger);
    a.minimum_balance_minor = minimum;
    a.overdraft_limit_minor = overdraft;
    NARAE_CHECK(CreateAccount(a) == CreateAccountResult::kOk);
    if (funds > 0) {
      NARAE_CHECK(Create(Xfer(next_fund_id_++, 9000 + ledger, id, funds, 0, ledger)).result ==
                  CreateTransferResult::kOk);
    }
  }
  // Every account's balances, to prove a failure changed nothing.
  std::map<U128, Account> Snapshot() {
    std::map<U128, Account> out;
    EXPECT_OK(ledger_->ScanAccounts([&](const Account& a) {
      out[a.id.value] = a;
      return true;
    }));
    return out;
  }
  void ExpectVerified() {
    auto rep = ledger_->Verify();
    ASSERT_TRUE(rep.ok()) << rep.status().ToString();
    EXPECT_TRUE(rep->ok) << rep->first_problem;
  }

  TempDir dir_;
  std::atomic<uint64_t> clock_ns_{kStartNs};
  std::unique_ptr<Ledger> ledger_;
  uint64_t next_fund_id_ = 1'000'000;
};

}  // namespace narae::testing
