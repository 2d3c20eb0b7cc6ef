// Settlement (switch/settlement.hpp) on a real ledger in a temp folder with a
// fake clock: business-day cut-over, fees and their rounding, versioned
// schedules, delivery splits, idempotent settlement (also after a child
// process is SIGKILLed at every step), interbank netting, reports.
#include "switch/settlement.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "switch/bank.hpp"
#include "tests/ledger_fixture.hpp"

namespace narae::testing {
namespace {

namespace sw = narae::switching;
using sw::FeeSchedule;
using sw::MerchantSettlement;

constexpr uint16_t kCodeHold = 101;
constexpr uint16_t kCodePurchase = 102;
constexpr uint16_t kCodeRefund = 103;
constexpr uint16_t kCodeReversal = 104;
constexpr uint64_t kFunding = 9408;  // Funded() uses 9000 + ledger

// "R3" (GCC 12 warns falsely about "R" + std::to_string(n)).
std::string Name(char prefix, int n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%c%d", prefix, n);
  return buf;
}

class SettlementTest : public LedgerTest {
 public:
  // The ledger without fsync: a SIGKILLed process loses nothing the OS
  // has (the crash test kills processes, not the machine), and the suite
  // stays fast.
  void OpenFast() {
    Options o;
    o.path = dir_.Sub("db");
    o.sync = false;
    o.clock_ns = [this] { return clock_ns_.load(); };
    auto r = Ledger::Open(o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ledger_ = std::move(r.value());
  }
  void SetUp() override {
    OpenFast();
    sw::BankConfig cfg;
    cfg.bin = "940801";
    cfg.acquirer_id = "940801";
    cfg.bank_id = "NARAE";
    for (uint16_t cur : {uint16_t{408}, uint16_t{840}}) {
      sw::BankAccounts b;
      b.currency = cur;
      b.funding = AccountId::From(9000 + cur);
      b.fee_income = AccountId::From(100 + cur);
      b.logistics = AccountId::From(200 + cur);
      b.central_bank = AccountId::From(300 + cur);
      for (auto [id, code] : {std::pair{b.funding, AccountCode::kBankCash},
                              {b.fee_income, AccountCode::kFeeIncome},
                              {b.logistics, AccountCode::kLogistics},
                              {b.central_bank, AccountCode::kCentralBankSettlement}}) {
        Account a = Acc(0, 0, cur, static_cast<uint16_t>(code));
        a.id = id;
        ASSERT_EQ(CreateAccount(a), CreateAccountResult::kOk);
      }
      cfg.accounts.push_back(b);
    }
    ASSERT_OK(sw::PutRecord(*ledger_, sw::kAuxBankConfig, sw::EncodeBankConfig(cfg)));
    Funded(1, 1'000'000'000'000);  // the paying customer (KPW)
  }

  // Merchant n: clearing 10000 + n, settlement 20000 + n (KPW).
  void AddMerchant(uint64_t n, const std::string& id) {
    sw::Merchant m;
    m.id = id;
    m.name = id;
    m.mcc = 5411;
    sw::MerchantCurrency mc;
    mc.currency = 408;
    mc.clearing = AccountId::From(10000 + n);
    mc.settlement = AccountId::From(20000 + n);
    m.currencies.push_back(mc);
    ASSERT_EQ(CreateAccount(Acc(10000 + n, 0, kKpw, uint16_t(AccountCode::kMerchantClearing))),
              CreateAccountResult::kOk);
    ASSERT_EQ(CreateAccount(Acc(20000 + n, 0, kKpw, uint16_t(AccountCode::kMerchantSettlement))),
              CreateAccountResult::kOk);
    ASSERT_OK(sw::PutRecord(*ledger_, sw::MerchantKey(id), sw::EncodeMerchant(m)));
  }

  // A purchase of `amount` at merchant n; returns its timestamp.
  uint64_t Purchase(uint64_t id, uint64_t n, uint64_t amount) {
    Transfer t = Xfer(id, 1, 10000 + n, amount);
    t.code = kCodePurchase;
    TransferOutcome o = Create(t);
    NARAE_CHECK(o.result == CreateTransferResult::kOk);
    return o.timestamp;
  }
  uint64_t Refund(uint64_t id, uint64_t n, uint64_t amount, uint16_t code = kCodeRefund) {
    Transfer t = Xfer(id, 10000 + n, 1, amount);
    t.code = code;
    TransferOutcome o = Create(t);
    NARAE_CHECK(o.result == CreateTransferResult::kOk);
    return o.timestamp;
  }
  void Hold(uint64_t id, uint64_t n, uint64_t amount) {
    Transfer t = Xfer(id, 1, 10000 + n, amount, transfer_flags::kPending);
    t.code = kCodeHold;
    NARAE_CHECK(Create(t).result == CreateTransferResult::kOk);
  }
  uint64_t Capture(uint64_t id, uint64_t hold, uint64_t amount) {
    TransferOutcome o = Create(PostOf(id, hold, amount));
    NARAE_CHECK(o.result == CreateTransferResult::kOk);
    return o.timestamp;
  }

  void SetFees(const std::string& merchant, uint32_t bps, uint64_t fixed, uint64_t min = 0,
               uint64_t max = 0, uint64_t from_ns = 0) {
    FeeSchedule f;
    f.merchant_id = merchant;
    f.currency = 408;
    f.bps = bps;
    f.fixed_minor = fixed;
    f.min_minor = min;
    f.max_minor = max;
    f.effective_from_ns = from_ns;
    f.delivery_bands = {{10'000, 500}, {50'000, 1'500}, {0, 4'000}};
    Result<FeeSchedule> r = sw::SetFeeSchedule(*ledger_, f);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  sw::DayRecord Close(std::optional<uint64_t> at = std::nullopt) {
    Advance(1);
    Result<sw::DayRecord> d = sw::CloseDay(*ledger_, at);
    NARAE_CHECK(d.ok());
    Advance(1);
    return *d;
  }

  sw::SettleSummary Settle(uint32_t day, const sw::SettleOptions& o = {}) {
    Result<sw::SettleSummary> s = sw::SettleDay(*ledger_, day, o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : sw::SettleSummary{};
  }

  // Posted credits minus debits (may be negative).
  int64_t Net(uint64_t id) { return Net(AccountId::From(id)); }
  int64_t Net(AccountId id) {
    std::optional<Account> a = ledger_->LookupAccount(id);
    NARAE_CHECK(a.has_value());
    return static_cast<int64_t>(a->credits_posted) - static_cast<int64_t>(a->debits_posted);
  }

  static const MerchantSettlement* Find(const sw::SettleSummary& s, const std::string& m) {
    for (const MerchantSettlement& x : s.settled) {
      if (x.merchant_id == m) return &x;
    }
    return nullptr;
  }
};

// ---- Business days ----------------------------------------------------------

TEST_F(SettlementTest, CutOverSplitsTheDayAtTheCloseInstantInclusive) {
  AddMerchant(1, "M1");
  const uint64_t a = Purchase(1, 1, 1000);
  const uint64_t b = Purchase(2, 1, 2000);  // same group clock: a later timestamp
  ASSERT_GT(b, a);
  Result<sw::DayRecord> d1 = sw::CloseDay(*ledger_, a);  // exactly at a: a is in day 1
  ASSERT_TRUE(d1.ok()) << d1.status().ToString();
  EXPECT_EQ(d1->day, 1u);
  EXPECT_EQ(d1->open_ns, 0u);
  EXPECT_EQ(d1->close_ns, a);
  Advance(10);
  sw::DayRecord d2 = Close();
  EXPECT_EQ(d2.open_ns, a);
  EXPECT_EQ(Settle(1).settled.at(0).captures_minor, 1000u);
  EXPECT_EQ(Settle(2).settled.at(0).captures_minor, 2000u);
  EXPECT_EQ(Net(10001), 0);
  EXPECT_EQ(Net(20001), 3000);
}

TEST_F(SettlementTest, ClosingTwiceOrInTheFutureIsRefused) {
  sw::DayRecord d = Close();
  Result<sw::DayRecord> again = sw::CloseDay(*ledger_, d.close_ns);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(again.status().message().find("already closed"), std::string::npos);
  Result<sw::DayRecord> earlier = sw::CloseDay(*ledger_, d.close_ns - 5);
  EXPECT_EQ(earlier.status().code(), StatusCode::kAlreadyExists);
  Result<sw::DayRecord> future = sw::CloseDay(*ledger_, clock_ns_.load() + 3600 * kSecondNs);
  EXPECT_EQ(future.status().code(), StatusCode::kInvalidArgument);
  Result<std::vector<sw::DayRecord>> days = sw::ListDays(*ledger_);
  ASSERT_TRUE(days.ok());
  EXPECT_EQ(days->size(), 1u);
}

TEST_F(SettlementTest, SettlingAnOpenOrUnknownDayIsRefused) {
  AddMerchant(1, "M1");
  Purchase(1, 1, 1000);
  Result<sw::SettleSummary> open = sw::SettleDay(*ledger_, 1, {});
  ASSERT_FALSE(open.ok());
  EXPECT_EQ(open.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(open.status().message().find("still open"), std::string::npos);
  EXPECT_EQ(sw::SettleDay(*ledger_, 7, {}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(sw::SettleDay(*ledger_, 0, {}).status().code(), StatusCode::kInvalidArgument);
  Close();
  sw::SettleOptions o;
  o.merchant_id = "NOPE";
  EXPECT_EQ(sw::SettleDay(*ledger_, 1, o).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Net(10001), 1000);  // nothing moved
}

TEST_F(SettlementTest, ResolveDayAcceptsNumbersAndUniqueDates) {
  sw::DayRecord d = Close();
  Result<uint32_t> n = sw::ResolveDay(*ledger_, "1");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  Result<uint32_t> byDate = sw::ResolveDay(*ledger_, d.date);
  ASSERT_TRUE(byDate.ok()) << byDate.status().ToString();
  EXPECT_EQ(*byDate, 1u);
  Close();  // same date (the fake clock moves seconds)
  EXPECT_EQ(sw::ResolveDay(*ledger_, d.date).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sw::ResolveDay(*ledger_, "1999-01-01").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(sw::ResolveDay(*ledger_, "tomorrow").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sw::ResolveDay(*ledger_, "0").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SettlementTest, AutomaticCutOverClosesOncePerDay) {
  // The cut-over uses the real clock (today's 00:00 UTC here), which is
  // before the fake ledger clock's "now" (2027).
  Result<std::optional<sw::DayRecord>> first = sw::CloseDayIfDue(*ledger_, 0);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ((*first)->close_ns % (86'400 * kSecondNs), 0u);
  Result<std::optional<sw::DayRecord>> second = sw::CloseDayIfDue(*ledger_, 0);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->has_value());
  EXPECT_EQ(sw::CloseDayIfDue(*ledger_, 86'400).status().code(), StatusCode::kInvalidArgument);
}

// ---- Captures, refunds and holds across days ------------------------------------

TEST_F(SettlementTest, HoldsSettleOnTheDayTheyAreCapturedAndRefundsLater) {
  AddMerchant(1, "M1");
  Hold(1, 1, 10'000);  // day 1: an open hold moves nothing
  Close();
  sw::SettleSummary s1 = Settle(1);
  EXPECT_TRUE(s1.settled.empty());
  Capture(2, 1, 7'000);  // day 2: partial capture
  Close();
  sw::SettleSummary s2 = Settle(2);
  ASSERT_EQ(s2.settled.size(), 1u);
  EXPECT_EQ(s2.settled[0].captures_minor, 7'000u);
  EXPECT_EQ(s2.settled[0].payout_minor, 7'000u);
  Refund(3, 1, 2'500);  // day 3: only a refund: the merchant pays it back
  Refund(4, 1, 500, kCodeReversal);
  Close();
  sw::SettleSummary s3 = Settle(3);
  ASSERT_EQ(s3.settled.size(), 1u);
  EXPECT_EQ(s3.settled[0].refunds_minor, 3'000u);
  EXPECT_EQ(s3.settled[0].refunds_count, 2u);
  EXPECT_EQ(s3.settled[0].payout_minor, 0u);
  EXPECT_EQ(s3.settled[0].recovery_minor, 3'000u);
  EXPECT_EQ(Net(10001), 0);
  EXPECT_EQ(Net(20001), 4'000);
  ExpectVerified();
}

TEST_F(SettlementTest, ExpiredAndVoidedHoldsMoveNothing) {
  AddMerchant(1, "M1");
  Hold(1, 1, 10'000);
  ASSERT_EQ(Create(VoidOf(2, 1)).result, CreateTransferResult::kOk);
  Close();
  EXPECT_TRUE(Settle(1).settled.empty());
  EXPECT_EQ(Net(20001), 0);
}

// ---- Fees ---------------------------------------------------------------------------

TEST(SettlementFees, PercentRoundsHalfToEven) {
  EXPECT_EQ(sw::PercentHalfEven(100, 250), 2u);  // 2.5 -> 2
  EXPECT_EQ(sw::PercentHalfEven(140, 250), 4u);  // 3.5 -> 4
  EXPECT_EQ(sw::PercentHalfEven(101, 250), 3u);  // 2.525 -> 3
  EXPECT_EQ(sw::PercentHalfEven(99, 250), 2u);   // 2.475 -> 2
  EXPECT_EQ(sw::PercentHalfEven(1, 5000), 0u);   // 0.5 -> 0
  EXPECT_EQ(sw::PercentHalfEven(3, 5000), 2u);   // 1.5 -> 2
  EXPECT_EQ(sw::PercentHalfEven(0, 10000), 0u);
  EXPECT_EQ(sw::PercentHalfEven(UINT64_MAX, 10000), UINT64_MAX);  // no overflow
  EXPECT_EQ(sw::PercentHalfEven(UINT64_MAX, 1), 1844674407370955u);
}

TEST(SettlementFees, MinMaxFixedAndNeverMoreThanTheAmount) {
  FeeSchedule f;
  f.merchant_id = "*";
  f.currency = 408;
  f.bps = 200;
  f.fixed_minor = 10;
  f.min_minor = 50;
  f.max_minor = 500;
  EXPECT_EQ(sw::ComputeFee(f, 1'000), 50u);     // 20 + 10 -> min 50
  EXPECT_EQ(sw::ComputeFee(f, 10'000), 210u);   // 200 + 10
  EXPECT_EQ(sw::ComputeFee(f, 100'000), 500u);  // max
  EXPECT_EQ(sw::ComputeFee(f, 30), 30u);        // never more than the capture
  f.max_minor = 0;
  EXPECT_EQ(sw::ComputeFee(f, 100'000), 2'010u);
  f.fixed_minor = UINT64_MAX;
  EXPECT_EQ(sw::ComputeFee(f, 100), 100u);  // saturates, then capped
}

TEST(SettlementFees, SchedulesAreValidated) {
  FeeSchedule f;
  f.merchant_id = "M1";
  f.currency = 408;
  EXPECT_OK(sw::ValidateFeeSchedule(f));
  FeeSchedule bad = f;
  bad.bps = 10'001;
  EXPECT_FALSE(sw::ValidateFeeSchedule(bad).ok());
  bad = f;
  bad.currency = 0;
  EXPECT_FALSE(sw::ValidateFeeSchedule(bad).ok());
  bad = f;
  bad.min_minor = 10;
  bad.max_minor = 5;
  EXPECT_FALSE(sw::ValidateFeeSchedule(bad).ok());
  bad = f;
  bad.merchant_id = "";
  EXPECT_FALSE(sw::ValidateFeeSchedule(bad).ok());
  bad = f;
  bad.delivery_bands = {{0, 1}, {10, 2}};
  EXPECT_FALSE(sw::ValidateFeeSchedule(bad).ok());
  bad.delivery_bands = {{50, 1}, {10, 2}};
  EXPECT_FALSE(sw::ValidateFeeSchedule(bad).ok());
  bad.delivery_bands.assign(9, {});
  EXPECT_FALSE(sw::ValidateFeeSchedule(bad).ok());
  std::string text = sw::EncodeFeeSchedule(f);
  Result<FeeSchedule> back = sw::DecodeFeeSchedule(text);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, f);
  EXPECT_FALSE(sw::DecodeFeeSchedule("{").ok());
  EXPECT_FALSE(sw::DecodeFeeSchedule("{\"v\":2}").ok());
  EXPECT_FALSE(sw::DecodeFeeSchedule("{\"v\":1,\"merchant\":3}").ok());
}

TEST_F(SettlementTest, TheVersionInForceAtCaptureTimeApplies) {
  AddMerchant(1, "M1");
  AddMerchant(2, "M2");
  SetFees("*", 100, 0);  // default v1: 1 %
  Advance(1);
  Purchase(1, 1, 10'000);  // 100
  Purchase(2, 2, 10'000);  // 100
  Advance(10);
  SetFees("M1", 300, 5);  // M1's own v1: 3 % + 5
  Advance(1);
  Purchase(3, 1, 10'000);  // 305
  Purchase(4, 2, 10'000);  // 100 (default still)
  Advance(10);
  SetFees("*", 50, 0);  // default v2: 0.5 %
  Advance(1);
  Purchase(5, 1, 10'000);  // 305 (M1's own wins)
  Purchase(6, 2, 10'000);  // 50
  Close();
  sw::SettleOptions o;
  o.keep_lines = true;
  sw::SettleSummary s = Settle(1, o);
  ASSERT_NE(Find(s, "M1"), nullptr);
  ASSERT_NE(Find(s, "M2"), nullptr);
  EXPECT_EQ(Find(s, "M1")->fees_minor, 100u + 305 + 305);
  EXPECT_EQ(Find(s, "M2")->fees_minor, 100u + 100 + 50);
  EXPECT_EQ(Find(s, "M2")->lines.at(2).fee_version, 2u);
  EXPECT_EQ(Find(s, "M1")->lines.at(1).fee_merchant, "M1");
  EXPECT_EQ(Net(100 + 408), 960);  // fee income

  // A closed day's terms cannot change; versions are never edited.
  FeeSchedule late;
  late.merchant_id = "M2";
  late.currency = 408;
  late.effective_from_ns = kStartNs;
  Result<FeeSchedule> r = sw::SetFeeSchedule(*ledger_, late);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  Result<std::vector<FeeSchedule>> all = sw::ListFeeSchedules(*ledger_);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
}

TEST_F(SettlementTest, AVersionCannotStartBeforeThePreviousOne) {
  SetFees("M1", 100, 0, 0, 0, kStartNs + 1000 * kSecondNs);
  FeeSchedule f;
  f.merchant_id = "M1";
  f.currency = 408;
  f.effective_from_ns = kStartNs + 500 * kSecondNs;
  EXPECT_EQ(sw::SetFeeSchedule(*ledger_, f).status().code(), StatusCode::kFailedPrecondition);
  f.bps = 20'000;
  EXPECT_EQ(sw::SetFeeSchedule(*ledger_, f).status().code(), StatusCode::kInvalidArgument);
}

// ---- Delivery splits --------------------------------------------------------------------

TEST(SettlementPaymentInfo, EncodesValidatesAndParsesTheApiSplit) {
  sw::PaymentInfo p;
  p.order_ref = "ORDER-42";
  p.rrn = "123456789012";
  p.split = {sw::SplitKind::kDistance, 0, 12'345};
  Result<sw::PaymentInfo> back = sw::DecodePaymentInfo(sw::EncodePaymentInfo(p));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, p);
  std::string enc = sw::EncodePaymentInfo(p);
  EXPECT_FALSE(sw::DecodePaymentInfo(enc.substr(0, enc.size() - 1)).ok());
  EXPECT_FALSE(sw::DecodePaymentInfo(enc + "x").ok());
  EXPECT_FALSE(sw::DecodePaymentInfo("").ok());
  enc[0] = 9;
  EXPECT_FALSE(sw::DecodePaymentInfo(enc).ok());
  sw::PaymentInfo bad = p;
  bad.rrn = "123";
  EXPECT_FALSE(sw::ValidatePaymentInfo(bad).ok());
  bad = p;
  bad.order_ref = std::string(65, 'x');
  EXPECT_FALSE(sw::ValidatePaymentInfo(bad).ok());
  bad = p;
  bad.split = {sw::SplitKind::kFixed, 0, 0};
  EXPECT_FALSE(sw::ValidatePaymentInfo(bad).ok());
  bad.split = {sw::SplitKind::kDistance, 0, sw::kDistanceMetersMax + 1};
  EXPECT_FALSE(sw::ValidatePaymentInfo(bad).ok());
  bad.split = {static_cast<sw::SplitKind>(7), 0, 0};
  EXPECT_FALSE(sw::ValidatePaymentInfo(bad).ok());

  Result<sw::DeliverySplit> a = sw::ParseSplitJson(R"({"delivery_minor": 1500})");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->kind, sw::SplitKind::kFixed);
  EXPECT_EQ(a->amount_minor, 1500u);
  Result<sw::DeliverySplit> d = sw::ParseSplitJson(R"({"distance_m": 42000})");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->distance_m, 42'000u);
  for (const char* wrong :
       {"{}", "[]", "{", R"({"delivery_minor": 0})", R"({"delivery_minor": -5})",
        R"({"distance_m": 1.5})", R"({"distance_m": 99999999})", R"({"other": 1})",
        R"({"delivery_minor": 1, "distance_m": 2})"}) {
    EXPECT_FALSE(sw::ParseSplitJson(wrong).ok()) << wrong;
  }
}

TEST_F(SettlementTest, DeliverySharesGoToTheLogisticsOfficeByAmountOrBand) {
  AddMerchant(1, "M1");
  SetFees("*", 100, 0);  // bands: <=10 km 500, <=50 km 1500, beyond 4000
  Advance(1);
  sw::PaymentInfo fixed{"A-1", "000000000001", {sw::SplitKind::kFixed, 700, 0}};
  sw::PaymentInfo near{"A-2", "", {sw::SplitKind::kDistance, 0, 10'000}};
  sw::PaymentInfo mid{"A-3", "", {sw::SplitKind::kDistance, 0, 10'001}};
  sw::PaymentInfo far{"A-4", "", {sw::SplitKind::kDistance, 0, 75'000}};
  sw::PaymentInfo huge{"A-5", "", {sw::SplitKind::kFixed, 1'000'000, 0}};
  ASSERT_OK(sw::PutPaymentInfo(*ledger_, TransferId::From(1), fixed));
  ASSERT_OK(sw::PutPaymentInfo(*ledger_, TransferId::From(2), near));
  ASSERT_OK(sw::PutPaymentInfo(*ledger_, TransferId::From(3), mid));
  ASSERT_OK(sw::PutPaymentInfo(*ledger_, TransferId::From(4), far));
  ASSERT_OK(sw::PutPaymentInfo(*ledger_, TransferId::From(5), huge));
  Purchase(1, 1, 10'000);
  Purchase(2, 1, 10'000);
  Purchase(3, 1, 10'000);
  Hold(4, 1, 10'000);
  Capture(6, 4, 8'000);   // the split is found through the hold
  Purchase(5, 1, 2'000);  // share capped at amount - fee = 1980
  Close();
  sw::SettleOptions o;
  o.keep_lines = true;
  sw::SettleSummary s = Settle(1, o);
  ASSERT_EQ(s.settled.size(), 1u);
  const MerchantSettlement& m = s.settled[0];
  EXPECT_EQ(m.delivery_minor, 700u + 500 + 1'500 + 4'000 + 1'980);
  EXPECT_EQ(m.fees_minor, 100u * 3 + 80 + 20);
  EXPECT_EQ(m.captures_minor, m.payout_minor + m.fees_minor + m.delivery_minor);
  EXPECT_EQ(Net(200 + 408), static_cast<int64_t>(m.delivery_minor));
  EXPECT_EQ(m.lines.at(0).rrn, "000000000001");
  EXPECT_EQ(m.lines.at(3).order_ref, "A-4");
}

TEST_F(SettlementTest, ADistanceWithoutABandTableIsRefusedClearly) {
  AddMerchant(1, "M1");
  ASSERT_OK(sw::PutPaymentInfo(*ledger_, TransferId::From(1),
                               {"", "", {sw::SplitKind::kDistance, 0, 5}}));
  Purchase(1, 1, 1'000);
  Close();
  Result<sw::SettleSummary> s = sw::SettleDay(*ledger_, 1, {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("delivery band"), std::string::npos);
  EXPECT_EQ(Net(10001), 1'000);
}

// ---- Exactness and idempotency ------------------------------------------------------------

TEST_F(SettlementTest, RandomizedDaysConserveEveryMinorUnit) {
  constexpr int kMerchants = 6;
  for (int n = 1; n <= kMerchants; ++n) AddMerchant(n, Name('R', n));
  std::mt19937_64 rng(20261129);
  SetFees("*", 175, 3, 10, 900);
  SetFees("R2", 333, 0, 0, 0);
  uint64_t next = 1;
  std::map<int, uint64_t> paid_in;  // per merchant: captures - refunds over all days
  for (uint32_t day = 1; day <= 4; ++day) {
    std::map<int, uint64_t> captured;
    for (int k = 0; k < 60; ++k) {
      const int n = 1 + static_cast<int>(rng() % kMerchants);
      const uint64_t amount = 1 + rng() % 50'000;
      const uint64_t id = next++;
      if (rng() % 4 == 0) {
        sw::PaymentInfo p;
        p.split = rng() % 2 ? sw::DeliverySplit{sw::SplitKind::kFixed, 1 + rng() % 3'000, 0}
                            : sw::DeliverySplit{sw::SplitKind::kDistance, 0,
                                                static_cast<uint32_t>(rng() % 90'000)};
        ASSERT_OK(sw::PutPaymentInfo(*ledger_, TransferId::From(id), p));
      }
      if (rng() % 3 == 0) {
        Hold(id, n, amount);
        if (rng() % 4 != 0) Capture(next++, id, 1 + rng() % amount);  // some stay open
      } else {
        Purchase(id, n, amount);
      }
      Advance(1);
      captured[n] += 1;
      if (rng() % 5 == 0 && paid_in[n] + captured[n] > 0) {
        Refund(next++, n, 1 + rng() % 2'000, rng() % 2 ? kCodeRefund : kCodeReversal);
      }
    }
    Close();
    sw::SettleSummary s = Settle(day);
    EXPECT_TRUE(s.failed.empty());
    for (const MerchantSettlement& m : s.settled) {
      // captures + recovery = refunds + payout + fees + delivery, exactly.
      EXPECT_EQ(m.captures_minor + m.recovery_minor,
                m.refunds_minor + m.payout_minor + m.fees_minor + m.delivery_minor)
          << m.merchant_id;
      EXPECT_TRUE(m.payout_minor == 0 || m.recovery_minor == 0);
    }
    // Every clearing account is empty after its day is settled, apart from
    // open holds (pending, not posted).
    for (int n = 1; n <= kMerchants; ++n) EXPECT_EQ(Net(10000 + n), 0) << n;
  }
  // Nothing was created or destroyed: the customer's loss is what the
  // merchants, the bank's fee income and the logistics office received.
  int64_t received = Net(108 + 400) + Net(208 + 400);
  for (int n = 1; n <= kMerchants; ++n) received += Net(20000 + n);
  EXPECT_EQ(received, -(Net(1) - 1'000'000'000'000));
  ExpectVerified();
}

TEST_F(SettlementTest, ReRunningADayPaysNothingTwice) {
  AddMerchant(1, "M1");
  AddMerchant(2, "M2");
  SetFees("*", 100, 0);
  Advance(1);
  Purchase(1, 1, 10'000);
  Purchase(2, 2, 20'000);
  Close();
  sw::SettleSummary first = Settle(1);
  EXPECT_EQ(first.settled.size(), 2u);
  auto before = Snapshot();
  sw::SettleSummary again = Settle(1);
  EXPECT_TRUE(again.settled.empty());
  ASSERT_EQ(again.already_settled.size(), 2u);
  EXPECT_EQ(again.already_settled[0].transfers.size(), 2u);
  EXPECT_EQ(Snapshot(), before);
  sw::SettleOptions one;
  one.merchant_id = "M2";
  sw::SettleSummary m2 = Settle(1, one);
  EXPECT_TRUE(m2.settled.empty());
  EXPECT_EQ(m2.already_settled.size(), 1u);
  EXPECT_EQ(Net(20001), 9'900);
  EXPECT_EQ(Net(20002), 19'800);
}

TEST_F(SettlementTest, OneMerchantAtATimeAndDryRun) {
  AddMerchant(1, "M1");
  AddMerchant(2, "M2");
  Purchase(1, 1, 10'000);
  Purchase(2, 2, 20'000);
  Close();
  sw::SettleOptions dry;
  dry.dry_run = true;
  EXPECT_EQ(Settle(1, dry).settled.size(), 2u);
  EXPECT_EQ(Net(20001), 0);
  sw::SettleOptions one;
  one.merchant_id = "M1";
  EXPECT_EQ(Settle(1, one).settled.size(), 1u);
  EXPECT_EQ(Net(20001), 10'000);
  EXPECT_EQ(Net(20002), 0);
  sw::SettleSummary rest = Settle(1);
  EXPECT_EQ(rest.settled.size(), 1u);
  EXPECT_EQ(rest.already_settled.size(), 1u);
  EXPECT_EQ(Net(20002), 20'000);
}

TEST_F(SettlementTest, AFailedBatchPostsNothingAndARetryUsesNewIds) {
  AddMerchant(1, "M1");
  AddMerchant(2, "M2");
  Purchase(1, 1, 10'000);
  Purchase(2, 2, 20'000);
  Close();
  AccountChange freeze{AccountId::From(20001), AccountAction::kFreeze, 1, 0, 0};
  ASSERT_TRUE(ledger_->ChangeAccounts({&freeze, 1}).ok());
  sw::SettleSummary s = Settle(1);
  ASSERT_EQ(s.failed.size(), 1u);
  EXPECT_EQ(s.failed[0].merchant_id, "M1");
  EXPECT_NE(s.failed[0].reason.find("frozen"), std::string::npos);
  EXPECT_EQ(s.settled.size(), 1u);
  EXPECT_EQ(Net(10001), 10'000);  // untouched
  AccountChange thaw{AccountId::From(20001), AccountAction::kUnfreeze, 1, 0, 0};
  ASSERT_TRUE(ledger_->ChangeAccounts({&thaw, 1}).ok());
  sw::SettleSummary retry = Settle(1);
  ASSERT_EQ(retry.settled.size(), 1u);
  EXPECT_EQ(retry.settled[0].attempt, 1u);
  EXPECT_EQ(Net(20001), 10'000);
  EXPECT_EQ(Net(10001), 0);
}

// The crash test: a child settles the day and is SIGKILLed at a chosen
// point (inside the n-th merchant's transaction before its commit, or right
// after the n-th is durable); the parent re-runs the settlement and checks
// that every merchant was paid exactly once.
TEST_F(SettlementTest, ACrashAtAnyStepThenAReRunPaysEveryMerchantExactlyOnce) {
  constexpr int kMerchants = 8;
  for (int n = 1; n <= kMerchants; ++n) AddMerchant(n, Name('C', n));
  SetFees("*", 120, 1);
  Advance(1);
  std::map<int, uint64_t> expected;
  for (int n = 1; n <= kMerchants; ++n) {
    const uint64_t amount = 1'000 * static_cast<uint64_t>(n) + 7;
    Purchase(static_cast<uint64_t>(n), n, amount);
    expected[n] = amount - (sw::PercentHalfEven(amount, 120) + 1);
  }
  Close();
  struct Point {
    bool in_txn;
    size_t index;
  };
  for (Point p : {Point{true, 0}, Point{true, 3}, Point{false, 0}, Point{false, 5},
                  Point{true, kMerchants - 1}}) {
    ASSERT_OK(ledger_->Close());
    ledger_.reset();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      OpenFast();
      sw::SettleOptions o;
      auto die = [p](bool in_txn, size_t i) {
        if (in_txn == p.in_txn && i == p.index) raise(SIGKILL);
      };
      o.in_txn_hook = [die](size_t i) { die(true, i); };
      o.durable_hook = [die](size_t i) { die(false, i); };
      Result<sw::SettleSummary> s = sw::SettleDay(*ledger_, 1, o);
      _exit(s.ok() ? 0 : 3);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    OpenFast();
    // Either killed, or it finished because the point was already settled.
    EXPECT_TRUE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
                (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    for (int n = 1; n <= kMerchants; ++n) {
      // Never more than once, whatever the crash left.
      EXPECT_TRUE(Net(20000 + n) == 0 || Net(20000 + n) == static_cast<int64_t>(expected[n]));
    }
  }
  sw::SettleSummary s = Settle(1);
  EXPECT_EQ(s.settled.size() + s.already_settled.size(), static_cast<size_t>(kMerchants));
  for (int n = 1; n <= kMerchants; ++n) {
    EXPECT_EQ(Net(20000 + n), static_cast<int64_t>(expected[n])) << n;
    EXPECT_EQ(Net(10000 + n), 0) << n;
  }
  EXPECT_TRUE(Settle(1).settled.empty());
  ExpectVerified();
}

// ---- Reports ---------------------------------------------------------------------------

TEST_F(SettlementTest, ReportsListEveryLineAndTheTotals) {
  AddMerchant(1, "M1");
  SetFees("*", 100, 0);
  Advance(1);
  ASSERT_OK(sw::PutPaymentInfo(*ledger_, TransferId::From(1),
                               {"ORD,1", "RRN000000001", {sw::SplitKind::kFixed, 300, 0}}));
  Purchase(1, 1, 10'000);
  Refund(2, 1, 1'000);
  Close();
  Result<MerchantSettlement> before = sw::ComputeMerchantDay(*ledger_, 1, "M1", 408);
  ASSERT_TRUE(before.ok());
  std::string open_csv = sw::SettlementReportCsv(*before, std::nullopt);
  EXPECT_NE(open_csv.find("status,not_settled"), std::string::npos);
  Settle(1);
  Result<MerchantSettlement> c = sw::ComputeMerchantDay(*ledger_, 1, "M1", 408);
  ASSERT_TRUE(c.ok());
  std::optional<std::string> rec = ledger_->GetAux(sw::SettledKey(1, 408, "M1"));
  ASSERT_TRUE(rec.has_value());
  Result<MerchantSettlement> stored = sw::DecodeMerchantSettlement(*rec);
  ASSERT_TRUE(stored.ok());
  std::string csv = sw::SettlementReportCsv(*c, *stored);
  EXPECT_NE(csv.find("capture," + TransferId::From(1).ToHex()), std::string::npos);
  EXPECT_NE(csv.find("\"ORD,1\",RRN000000001,10000,100,*,1,300"), std::string::npos) << csv;
  EXPECT_NE(csv.find("refund," + TransferId::From(2).ToHex()), std::string::npos);
  EXPECT_NE(csv.find("total,payout_minor,8600"), std::string::npos);
  EXPECT_NE(csv.find("status,settled"), std::string::npos);
  nlohmann::json j = nlohmann::json::parse(sw::SettlementReportJson(*c, *stored));
  EXPECT_EQ(j["totals"]["payout_minor"], 8'600);
  EXPECT_EQ(j["lines"].size(), 2u);
  EXPECT_EQ(j["lines"][0]["rrn"], "RRN000000001");
  EXPECT_EQ(j["settlement_transfers"].size(), 3u);
  EXPECT_EQ(sw::ComputeMerchantDay(*ledger_, 1, "M1", 840).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(sw::DecodeMerchantSettlement("{\"v\":1}").ok());
}

// ---- Interbank -----------------------------------------------------------------------------

TEST_F(SettlementTest, InterbankPositionsNetToZeroAndPostOnce) {
  AddMerchant(1, "M1");
  sw::OtherBank a;
  a.id = "KORYO";
  a.name = "Koryo Bank";
  a.bin_ranges = {{"950100", "950199"}};
  sw::OtherBank b;
  b.id = "DAEDONG";
  b.name = "Daedong Credit";
  b.bin_ranges = {{"96000000", "96009999"}};
  b.sim_issuers = {"9520"};
  Result<sw::OtherBank> ra = sw::AddOtherBank(*ledger_, a, {408});
  ASSERT_TRUE(ra.ok()) << ra.status().ToString();
  Result<sw::OtherBank> rb = sw::AddOtherBank(*ledger_, b, {408, 840});
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  // Refusals: duplicates, overlaps, our own BIN, bad input.
  EXPECT_EQ(sw::AddOtherBank(*ledger_, a, {408}).status().code(), StatusCode::kAlreadyExists);
  sw::OtherBank dup = a;
  dup.bin_ranges = {{"970000", "970001"}};
  EXPECT_EQ(sw::AddOtherBank(*ledger_, dup, {408}).status().code(), StatusCode::kAlreadyExists);
  sw::OtherBank overlap{"X", "x", {{"9501500", "9501599"}}, {}, {}, {}};
  EXPECT_FALSE(sw::AddOtherBank(*ledger_, overlap, {408}).ok());
  sw::OtherBank ours{"Y", "y", {{"940800", "940899"}}, {}, {}, {}};
  EXPECT_FALSE(sw::AddOtherBank(*ledger_, ours, {408}).ok());
  sw::OtherBank sim{"Z", "z", {}, {"95"}, {}, {}};
  EXPECT_FALSE(sw::AddOtherBank(*ledger_, sim, {408}).ok());
  sw::OtherBank empty{"E", "e", {}, {}, {}, {}};
  EXPECT_FALSE(sw::AddOtherBank(*ledger_, empty, {408}).ok());
  sw::OtherBank badid{"a b", "e", {{"970000", "970001"}}, {}, {}, {}};
  EXPECT_FALSE(sw::AddOtherBank(*ledger_, badid, {408}).ok());
  Result<std::vector<sw::OtherBank>> banks = sw::ListOtherBanks(*ledger_);
  ASSERT_TRUE(banks.ok());
  ASSERT_EQ(banks->size(), 2u);
  EXPECT_EQ(sw::FindBankForPan(*banks, "9501234567890123")->id, "KORYO");
  EXPECT_EQ(sw::FindBankForPan(*banks, "9600123456789012")->id, "DAEDONG");
  EXPECT_EQ(sw::FindBankForPan(*banks, "9408011234567890"), nullptr);
  EXPECT_EQ(sw::FindBankForSimToken(*banks, "9520000000000001")->id, "DAEDONG");
  EXPECT_EQ(sw::FindBankForSimToken(*banks, "9410000000000001"), nullptr);

  const AccountId koryo = ra->accounts[0].account;
  const AccountId daedong = rb->accounts[0].account;
  auto move = [&](uint64_t id, AccountId dr, AccountId cr, uint64_t amount) {
    Transfer t = Xfer(id, 0, 0, amount);
    t.debit_account_id = dr;
    t.credit_account_id = cr;
    t.code = sw::kCodeInterbankPayment;
    ASSERT_EQ(Create(t).result, CreateTransferResult::kOk);
  };
  // Koryo's customers pay our merchant 5000 and 1000; ours pay Koryo 2500
  // and Daedong 4000; Daedong's customer pays our merchant 700.
  move(1, koryo, AccountId::From(10001), 5'000);
  move(2, koryo, AccountId::From(10001), 1'000);
  move(3, AccountId::From(1), koryo, 2'500);
  move(4, AccountId::From(1), daedong, 4'000);
  move(5, daedong, AccountId::From(10001), 700);
  Close();
  Result<std::vector<sw::InterbankSettlement>> s = sw::SettleInterbank(*ledger_, 1, false);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->size(), 2u);  // 408 and 840
  const sw::InterbankSettlement& kpw = (*s)[0];
  EXPECT_EQ(kpw.currency, 408);
  int64_t sum = 0;
  std::map<std::string, int64_t> net;
  for (const sw::InterbankPosition& p : kpw.positions) {
    sum += p.net_minor;
    net[p.bank_id] = p.net_minor;
  }
  EXPECT_EQ(sum, 0);
  EXPECT_EQ(net["KORYO"], 2'500 - 6'000);
  EXPECT_EQ(net["DAEDONG"], 4'000 - 700);
  EXPECT_EQ(net["NARAE"], 200);
  EXPECT_EQ(Net(koryo), 0);  // settled through the central bank
  EXPECT_EQ(ledger_->LookupAccount(koryo)->debits_posted, 6'000u);
  EXPECT_EQ(Net(daedong), 0);
  EXPECT_EQ(Net(300 + 408), 3'300 - 3'500);
  // The merchant settles the foreign customers' payments like any other.
  EXPECT_EQ(Settle(1).settled.at(0).captures_minor, 6'700u);
  // Idempotent.
  auto before = Snapshot();
  Result<std::vector<sw::InterbankSettlement>> again = sw::SettleInterbank(*ledger_, 1, false);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)[0].already_settled);
  EXPECT_EQ(Snapshot(), before);
  Result<sw::DayRecord> d = sw::GetDay(*ledger_, 1);
  ASSERT_TRUE(d.ok());
  std::string file = sw::InterbankInstructionFile(*again, "NARAE", *d);
  EXPECT_NE(file.find("408,KORYO,DEBIT,3500\n"), std::string::npos) << file;
  EXPECT_NE(file.find("408,DAEDONG,CREDIT,3300\n"), std::string::npos);
  EXPECT_NE(file.find("408,NARAE,CREDIT,200\n"), std::string::npos);
  EXPECT_NE(file.find("TRAILER,3,7000\n"), std::string::npos);
  EXPECT_EQ(sw::SettleInterbank(*ledger_, 2, false).status().code(),
            StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace narae::testing
