// Every transfer, account and account-change result code, each showing
// that a rejected event changes nothing.
#include <functional>
#include <limits>
#include <set>

#include "tests/ledger_fixture.hpp"

namespace narae::testing {
namespace {

namespace tf = transfer_flags;
namespace af = account_flags;
using TR = CreateTransferResult;
using AR = CreateAccountResult;
using CR = ChangeAccountResult;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

struct Case {
  const char* name;
  TR expected;
  // Optional setup (may create state), then the transfer to submit.
  std::function<Transfer(LedgerTest*)> make;
};

class TransferResults : public LedgerTest {
 protected:
  void SetUp() override {
    LedgerTest::SetUp();
    Funded(1, 1000);                            // customer, protected
    ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);  // merchant clearing
    ASSERT_EQ(CreateAccount(Acc(3, 0, kUsd)), AR::kOk);
    ASSERT_EQ(CreateAccount(Acc(4, af::kCreditsMustNotExceedDebits)), AR::kOk);
    Funded(5, 1000, /*minimum=*/100);
    Funded(6, 0, 0, /*overdraft=*/500);
    ASSERT_EQ(CreateAccount(Acc(7)), AR::kOk);
    ASSERT_EQ(CreateAccount(Acc(8)), AR::kOk);
    ASSERT_EQ(Create(Xfer(100, 1, 2, 10, tf::kPending)).result, TR::kOk);  // an open hold
    ASSERT_EQ(Create(Xfer(101, 1, 2, 10)).result, TR::kOk);                // a posted transfer
  }
};

Transfer WithTimestamp() {
  Transfer t = LedgerTest::Xfer(500, 1, 2, 1);
  t.timestamp = 1;
  return t;
}

std::vector<Case> Cases() {
  using L = LedgerTest;
  auto simple = [](Transfer t) { return [t](LedgerTest*) { return t; }; };
  auto edit = [](Transfer t, std::function<void(Transfer&)> f) {
    f(t);
    return t;
  };
  Transfer ok = L::Xfer(500, 1, 2, 1);
  return {
      {"timestamp", TR::kTimestampMustBeZero, simple(WithTimestamp())},
      {"reserved_flag", TR::kReservedFlag, simple(L::Xfer(500, 1, 2, 1, 1 << 12))},
      {"id_zero", TR::kIdMustNotBeZero, simple(L::Xfer(0, 1, 2, 1))},
      {"id_max", TR::kIdMustNotBeIntMax,
       simple(edit(ok, [](Transfer& t) { t.id.value = U128::Max(); }))},
      {"exclusive_flags", TR::kFlagsAreMutuallyExclusive,
       simple(L::Xfer(500, 1, 2, 1, tf::kPending | tf::kVoidPendingTransfer))},
      {"exclusive_balancing_post", TR::kFlagsAreMutuallyExclusive,
       simple(edit(L::PostOf(500, 100), [](Transfer& t) { t.flags |= tf::kBalancingDebit; }))},
      {"debit_zero", TR::kDebitAccountIdMustNotBeZero, simple(L::Xfer(500, 0, 2, 1))},
      {"debit_max", TR::kDebitAccountIdMustNotBeIntMax,
       simple(edit(ok, [](Transfer& t) { t.debit_account_id.value = U128::Max(); }))},
      {"credit_zero", TR::kCreditAccountIdMustNotBeZero, simple(L::Xfer(500, 1, 0, 1))},
      {"credit_max", TR::kCreditAccountIdMustNotBeIntMax,
       simple(edit(ok, [](Transfer& t) { t.credit_account_id.value = U128::Max(); }))},
      {"same_accounts", TR::kAccountsMustBeDifferent, simple(L::Xfer(500, 1, 1, 1))},
      {"pending_id_set", TR::kPendingIdMustBeZero,
       simple(edit(ok, [](Transfer& t) { t.pending_id = TransferId::From(100); }))},
      {"post_without_pending_id", TR::kPendingIdMustNotBeZero, simple(L::PostOf(500, 0))},
      {"post_pending_id_max", TR::kPendingIdMustNotBeIntMax,
       simple(edit(L::PostOf(500, 1), [](Transfer& t) { t.pending_id.value = U128::Max(); }))},
      {"post_of_itself", TR::kPendingIdMustBeDifferent, simple(L::PostOf(500, 500))},
      {"timeout_without_pending", TR::kTimeoutReservedForPendingTransfer,
       simple(edit(ok, [](Transfer& t) { t.timeout_s = 5; }))},
      {"timeout_on_post", TR::kTimeoutReservedForPendingTransfer,
       simple(edit(L::PostOf(500, 100), [](Transfer& t) { t.timeout_s = 5; }))},
      {"timeout_too_large", TR::kTimeoutTooLarge,
       simple(edit(L::Xfer(500, 1, 2, 1, tf::kPending),
                   [](Transfer& t) { t.timeout_s = kTimeoutSecondsMax + 1; }))},
      {"ledger_zero", TR::kLedgerMustNotBeZero, simple(L::Xfer(500, 1, 2, 1, 0, 0))},
      {"code_zero", TR::kCodeMustNotBeZero, simple(edit(ok, [](Transfer& t) { t.code = 0; }))},
      {"amount_zero", TR::kAmountMustNotBeZero, simple(L::Xfer(500, 1, 2, 0))},
      {"exists_flags", TR::kExistsWithDifferentFlags, simple(L::Xfer(101, 1, 2, 10, tf::kPending))},
      {"exists_pending_id", TR::kExistsWithDifferentPendingId,
       [](LedgerTest* f) {
         NARAE_CHECK(f->Create(L::Xfer(402, 1, 2, 10, tf::kPending)).result == TR::kOk);
         NARAE_CHECK(f->Create(L::PostOf(400, 100)).result == TR::kOk);
         return L::PostOf(400, 402);
       }},
      {"exists_timeout", TR::kExistsWithDifferentTimeout,
       simple(edit(L::Xfer(100, 1, 2, 10, tf::kPending), [](Transfer& t) { t.timeout_s = 9; }))},
      {"exists_debit", TR::kExistsWithDifferentDebitAccountId, simple(L::Xfer(101, 5, 2, 10))},
      {"exists_credit", TR::kExistsWithDifferentCreditAccountId, simple(L::Xfer(101, 1, 7, 10))},
      {"exists_amount", TR::kExistsWithDifferentAmount, simple(L::Xfer(101, 1, 2, 11))},
      {"exists_ud128", TR::kExistsWithDifferentUserData128,
       simple(edit(L::Xfer(101, 1, 2, 10), [](Transfer& t) { t.user_data_128 = U128::From(1); }))},
      {"exists_ud64", TR::kExistsWithDifferentUserData64,
       simple(edit(L::Xfer(101, 1, 2, 10), [](Transfer& t) { t.user_data_64 = 1; }))},
      {"exists_ud32", TR::kExistsWithDifferentUserData32,
       simple(edit(L::Xfer(101, 1, 2, 10), [](Transfer& t) { t.user_data_32 = 1; }))},
      {"exists_ledger", TR::kExistsWithDifferentLedger, simple(L::Xfer(101, 1, 2, 10, 0, kUsd))},
      {"exists_code", TR::kExistsWithDifferentCode,
       simple(edit(L::Xfer(101, 1, 2, 10), [](Transfer& t) { t.code = 2; }))},
      {"exists", TR::kExists, simple(L::Xfer(101, 1, 2, 10))},
      {"id_already_failed", TR::kIdAlreadyFailed,
       [](LedgerTest* f) {
         Transfer t = L::Xfer(500, 1, 2, 5000);
         NARAE_CHECK(f->Create(t).result == TR::kExceedsCredits);
         return t;
       }},
      {"debit_not_found", TR::kDebitAccountNotFound, simple(L::Xfer(500, 77, 2, 1))},
      {"credit_not_found", TR::kCreditAccountNotFound, simple(L::Xfer(500, 1, 77, 1))},
      {"different_ledgers", TR::kAccountsMustHaveTheSameLedger, simple(L::Xfer(500, 1, 3, 1))},
      {"transfer_ledger", TR::kTransferMustHaveTheSameLedgerAsAccounts,
       simple(L::Xfer(500, 1, 2, 1, 0, kUsd))},
      {"pending_not_found", TR::kPendingTransferNotFound, simple(L::PostOf(500, 777))},
      {"pending_not_pending", TR::kPendingTransferNotPending, simple(L::PostOf(500, 101))},
      {"pending_other_debit", TR::kPendingTransferHasDifferentDebitAccountId,
       simple(edit(L::PostOf(500, 100), [](Transfer& t) { t.debit_account_id.value.lo = 5; }))},
      {"pending_other_credit", TR::kPendingTransferHasDifferentCreditAccountId,
       simple(edit(L::PostOf(500, 100), [](Transfer& t) { t.credit_account_id.value.lo = 7; }))},
      {"pending_other_ledger", TR::kPendingTransferHasDifferentLedger,
       simple(edit(L::PostOf(500, 100), [](Transfer& t) { t.ledger = kUsd; }))},
      {"pending_other_code", TR::kPendingTransferHasDifferentCode,
       simple(edit(L::PostOf(500, 100), [](Transfer& t) { t.code = 9; }))},
      {"exceeds_pending", TR::kExceedsPendingTransferAmount, simple(L::PostOf(500, 100, 11))},
      {"void_other_amount", TR::kPendingTransferHasDifferentAmount,
       simple(edit(L::VoidOf(500, 100), [](Transfer& t) { t.amount_minor = 3; }))},
      {"already_posted", TR::kPendingTransferAlreadyPosted,
       [](LedgerTest* f) {
         NARAE_CHECK(f->Create(L::PostOf(400, 100)).result == TR::kOk);
         return L::PostOf(500, 100);
       }},
      {"already_voided", TR::kPendingTransferAlreadyVoided,
       [](LedgerTest* f) {
         NARAE_CHECK(f->Create(L::VoidOf(400, 100)).result == TR::kOk);
         return L::PostOf(500, 100);
       }},
      {"expired", TR::kPendingTransferExpired,
       [](LedgerTest* f) {
         Transfer h = L::Xfer(400, 1, 2, 5, tf::kPending);
         h.timeout_s = 2;
         NARAE_CHECK(f->Create(h).result == TR::kOk);
         f->Advance(3);
         NARAE_CHECK(f->ledger_->Tick().ok());
         return L::PostOf(500, 400);
       }},
      {"debit_closed", TR::kDebitAccountClosed,
       [](LedgerTest* f) {
         AccountChange c{AccountId::From(7), AccountAction::kClose, 1, 0, 0};
         NARAE_CHECK((*f->ledger_->ChangeAccounts({&c, 1}))[0].result == CR::kOk);
         return L::Xfer(500, 7, 8, 1);
       }},
      {"credit_closed", TR::kCreditAccountClosed,
       [](LedgerTest* f) {
         AccountChange c{AccountId::From(8), AccountAction::kClose, 1, 0, 0};
         NARAE_CHECK((*f->ledger_->ChangeAccounts({&c, 1}))[0].result == CR::kOk);
         return L::Xfer(500, 7, 8, 1);
       }},
      {"debit_frozen", TR::kDebitAccountFrozen,
       [](LedgerTest* f) {
         AccountChange c{AccountId::From(1), AccountAction::kFreeze, 1, 0, 0};
         NARAE_CHECK((*f->ledger_->ChangeAccounts({&c, 1}))[0].result == CR::kOk);
         return L::PostOf(500, 100);  // a frozen account cannot be captured from
       }},
      {"credit_frozen", TR::kCreditAccountFrozen,
       [](LedgerTest* f) {
         AccountChange c{AccountId::From(2), AccountAction::kFreeze, 1, 0, 0};
         NARAE_CHECK((*f->ledger_->ChangeAccounts({&c, 1}))[0].result == CR::kOk);
         return L::Xfer(500, 1, 2, 1);
       }},
      {"overflows_debits_pending", TR::kOverflowsDebitsPending,
       [](LedgerTest* f) {
         NARAE_CHECK(f->Create(L::Xfer(400, 7, 8, kMax, tf::kPending)).result == TR::kOk);
         return L::Xfer(500, 7, 2, 1, tf::kPending);
       }},
      {"overflows_credits_pending", TR::kOverflowsCreditsPending,
       [](LedgerTest* f) {
         NARAE_CHECK(f->Create(L::Xfer(400, 7, 8, kMax, tf::kPending)).result == TR::kOk);
         return L::Xfer(500, 2, 8, 1, tf::kPending);
       }},
      {"overflows_debits_posted", TR::kOverflowsDebitsPosted,
       [](LedgerTest* f) {
         NARAE_CHECK(f->Create(L::Xfer(400, 7, 8, kMax)).result == TR::kOk);
         return L::Xfer(500, 7, 2, 1);
       }},
      {"overflows_credits_posted", TR::kOverflowsCreditsPosted,
       [](LedgerTest* f) {
         NARAE_CHECK(f->Create(L::Xfer(400, 7, 8, kMax)).result == TR::kOk);
         return L::Xfer(500, 2, 8, 1);
       }},
      {"overflows_debits", TR::kOverflowsDebits,
       [](LedgerTest* f) {
         NARAE_CHECK(f->Create(L::Xfer(400, 7, 8, kMax)).result == TR::kOk);
         return L::Xfer(500, 7, 2, 1, tf::kPending);
       }},
      {"overflows_credits", TR::kOverflowsCredits,
       [](LedgerTest* f) {
         NARAE_CHECK(f->Create(L::Xfer(400, 7, 8, kMax)).result == TR::kOk);
         return L::Xfer(500, 2, 8, 1, tf::kPending);
       }},
      {"below_minimum_balance", TR::kBelowMinimumBalance, simple(L::Xfer(500, 5, 2, 950))},
      {"exceeds_overdraft", TR::kExceedsOverdraftLimit, simple(L::Xfer(500, 6, 2, 501))},
      {"exceeds_credits", TR::kExceedsCredits, simple(L::Xfer(500, 1, 2, 981))},
      {"exceeds_debits", TR::kExceedsDebits, simple(L::Xfer(500, 2, 4, 1))},
      {"exceeds_credits_with_holds", TR::kExceedsCredits,
       [](LedgerTest* f) {
         NARAE_CHECK(f->Create(L::Xfer(400, 1, 2, 900, tf::kPending)).result == TR::kOk);
         return L::Xfer(500, 1, 2, 81);  // 10 + 10 + 900 + 81 > 1000
       }},
  };
}

TEST_F(TransferResults, EveryCodeAndNothingChangesOnFailure) {
  std::set<TR> covered;
  const std::vector<Case> cases = Cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    // Each case on a fresh ledger.
    if (i > 0) {
      TearDown();
      ledger_.reset();
      std::error_code ec;
      std::filesystem::remove_all(dir_.Sub("db"), ec);
      SetUp();
    }
    SCOPED_TRACE(cases[i].name);
    Transfer t = cases[i].make(this);
    auto before = Snapshot();
    auto existed = ledger_->LookupTransfer(t.id);
    TransferOutcome out = Create(t);
    EXPECT_EQ(out.result, cases[i].expected)
        << ResultName(out.result) << " != " << ResultName(cases[i].expected);
    EXPECT_EQ(Snapshot(), before);
    EXPECT_EQ(ledger_->LookupTransfer(t.id), existed);
    covered.insert(cases[i].expected);
    ExpectVerified();
  }
  EXPECT_GE(covered.size(), 60u);
}

TEST_F(TransferResults, OverflowsTimeout) {
  clock_ns_ = kMax - 10 * kSecondNs;
  Transfer h = Xfer(500, 1, 2, 1, tf::kPending);
  h.timeout_s = 3600;
  auto before = Snapshot();
  EXPECT_EQ(Create(h).result, TR::kOverflowsTimeout);
  EXPECT_EQ(Snapshot(), before);
}

TEST_F(LedgerTest, AccountResultCodes) {
  ASSERT_EQ(CreateAccount(Acc(1, 0, kKpw)), AR::kOk);
  auto with = [](std::function<void(Account&)> f) {
    Account a = LedgerTest::Acc(2);
    f(a);
    return a;
  };
  struct C {
    Account a;
    AR expected;
  } cases[] = {
      {with([](Account& a) { a.timestamp = 1; }), AR::kTimestampMustBeZero},
      {with([](Account& a) { a.flags = 1 << 9; }), AR::kReservedFlag},
      {with([](Account& a) { a.id = AccountId{}; }), AR::kIdMustNotBeZero},
      {with([](Account& a) { a.id.value = U128::Max(); }), AR::kIdMustNotBeIntMax},
      {with([](Account& a) {
         a.flags = af::kDebitsMustNotExceedCredits | af::kCreditsMustNotExceedDebits;
       }),
       AR::kFlagsAreMutuallyExclusive},
      {with([](Account& a) { a.flags = af::kClosed; }), AR::kStateFlagsMustNotBeSet},
      {with([](Account& a) { a.debits_pending = 1; }), AR::kDebitsPendingMustBeZero},
      {with([](Account& a) { a.debits_posted = 1; }), AR::kDebitsPostedMustBeZero},
      {with([](Account& a) { a.credits_pending = 1; }), AR::kCreditsPendingMustBeZero},
      {with([](Account& a) { a.credits_posted = 1; }), AR::kCreditsPostedMustBeZero},
      {with([](Account& a) { a.ledger = 0; }), AR::kLedgerMustNotBeZero},
      {with([](Account& a) { a.code = 0; }), AR::kCodeMustNotBeZero},
      {with([](Account& a) { a.minimum_balance_minor = 5; }), AR::kLimitRequiresBalanceFlag},
      {with([](Account& a) { a.overdraft_limit_minor = 5; }), AR::kLimitRequiresBalanceFlag},
      {Acc(1, af::kHistory), AR::kExistsWithDifferentFlags},
      {[] {
         Account a = Acc(1);
         a.user_data_128 = U128::From(3);
         return a;
       }(),
       AR::kExistsWithDifferentUserData128},
      {[] {
         Account a = Acc(1);
         a.user_data_64 = 3;
         return a;
       }(),
       AR::kExistsWithDifferentUserData64},
      {[] {
         Account a = Acc(1);
         a.user_data_32 = 3;
         return a;
       }(),
       AR::kExistsWithDifferentUserData32},
      {Acc(1, 0, kUsd), AR::kExistsWithDifferentLedger},
      {Acc(1, 0, kKpw, 2), AR::kExistsWithDifferentCode},
      {[] {
         Account a = Acc(1, af::kDebitsMustNotExceedCredits);
         return a;
       }(),
       AR::kExistsWithDifferentFlags},
      {Acc(1), AR::kExists},
  };
  for (const C& c : cases) {
    auto before = Snapshot();
    EXPECT_EQ(CreateAccount(c.a), c.expected) << ResultName(c.expected);
    EXPECT_EQ(Snapshot(), before);
  }
  // Minimum balance and overdraft differences on an existing account.
  Account m = Acc(3, af::kDebitsMustNotExceedCredits);
  m.minimum_balance_minor = 10;
  ASSERT_EQ(CreateAccount(m), AR::kOk);
  Account m2 = m;
  m2.minimum_balance_minor = 11;
  EXPECT_EQ(CreateAccount(m2), AR::kExistsWithDifferentMinimumBalance);
  m2 = m;
  m2.overdraft_limit_minor = 1;
  EXPECT_EQ(CreateAccount(m2), AR::kExistsWithDifferentOverdraftLimit);
}

TEST_F(LedgerTest, LinkedAccountChainIsAtomic) {
  std::vector<Account> batch = {Acc(1, af::kLinked), Acc(2, af::kLinked), Acc(0)};
  auto r = ledger_->CreateAccounts(batch);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].result, AR::kLinkedEventFailed);
  EXPECT_EQ((*r)[1].result, AR::kLinkedEventFailed);
  EXPECT_EQ((*r)[2].result, AR::kIdMustNotBeZero);
  EXPECT_FALSE(ledger_->LookupAccount(AccountId::From(1)).has_value());
  std::vector<Account> open = {Acc(1), Acc(2, af::kLinked)};
  r = ledger_->CreateAccounts(open);
  EXPECT_EQ((*r)[0].result, AR::kOk);
  EXPECT_EQ((*r)[1].result, AR::kLinkedEventChainOpen);
  EXPECT_FALSE(ledger_->LookupAccount(AccountId::From(2)).has_value());
}

TEST_F(LedgerTest, AccountChangeResultCodes) {
  Funded(1, 100);
  ASSERT_EQ(CreateAccount(Acc(2)), AR::kOk);
  auto change = [&](uint64_t id, AccountAction a, uint16_t flags = 0) {
    AccountChange c{AccountId::From(id), a, 7, flags, 0};
    auto r = ledger_->ChangeAccounts({&c, 1});
    NARAE_CHECK(r.ok());
    return (*r)[0].result;
  };
  EXPECT_EQ(change(1, AccountAction::kFreeze, 1 << 8), CR::kReservedFlag);
  EXPECT_EQ(change(1, static_cast<AccountAction>(9)), CR::kInvalidAction);
  EXPECT_EQ(change(55, AccountAction::kFreeze), CR::kAccountNotFound);
  EXPECT_EQ(change(1, AccountAction::kReopen), CR::kAccountNotClosed);
  EXPECT_EQ(change(1, AccountAction::kUnfreeze), CR::kAccountNotFrozen);
  EXPECT_EQ(change(1, AccountAction::kFreeze), CR::kOk);
  EXPECT_EQ(change(1, AccountAction::kFreeze), CR::kAccountAlreadyFrozen);
  EXPECT_EQ(Create(Xfer(10, 1, 2, 5)).result, TR::kDebitAccountFrozen);
  EXPECT_EQ(change(1, AccountAction::kUnfreeze), CR::kOk);
  ASSERT_EQ(Create(Xfer(11, 1, 2, 5, tf::kPending)).result, TR::kOk);
  EXPECT_EQ(change(1, AccountAction::kClose), CR::kAccountHasPendingBalance);
  ASSERT_EQ(Create(VoidOf(12, 11)).result, TR::kOk);
  EXPECT_EQ(change(1, AccountAction::kClose), CR::kOk);
  EXPECT_EQ(change(1, AccountAction::kClose), CR::kAccountAlreadyClosed);
  EXPECT_EQ(Create(Xfer(13, 1, 2, 5)).result, TR::kDebitAccountClosed);
  EXPECT_EQ(change(1, AccountAction::kReopen), CR::kOk);
  EXPECT_EQ(Create(Xfer(14, 1, 2, 5)).result, TR::kOk);
  EXPECT_TRUE(Get(1).flags == af::kDebitsMustNotExceedCredits);
  // A linked chain of changes fails whole.
  AccountChange chain[] = {{AccountId::From(2), AccountAction::kFreeze, 1, af::kLinked, 0},
                           {AccountId::From(99), AccountAction::kFreeze, 1, 0, 0}};
  auto r = ledger_->ChangeAccounts(chain);
  EXPECT_EQ((*r)[0].result, CR::kLinkedEventFailed);
  EXPECT_EQ((*r)[1].result, CR::kAccountNotFound);
  EXPECT_EQ(Get(2).flags, 0);
  ExpectVerified();
  Reopen();
  EXPECT_EQ(Get(1).flags, af::kDebitsMustNotExceedCredits);
  ExpectVerified();
}

TEST(LedgerNames, EveryResultHasAStableName) {
  EXPECT_STREQ(ResultName(TR::kExceedsCredits), "exceeds_credits");
  EXPECT_STREQ(ResultName(TR::kBelowMinimumBalance), "below_minimum_balance");
  EXPECT_STREQ(ResultName(AR::kExists), "exists");
  EXPECT_STREQ(ResultName(CR::kAccountHasPendingBalance), "account_has_pending_balance");
  for (uint32_t i = 0; i <= uint32_t(TR::kExceedsDebits); ++i) {
    EXPECT_STRNE(ResultName(static_cast<TR>(i)), "unknown");
  }
  EXPECT_STREQ(ResultName(static_cast<TR>(9999)), "unknown");
}

}  // namespace
}  // namespace narae::testing
