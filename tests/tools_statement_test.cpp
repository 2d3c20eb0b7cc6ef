// The audit core (tools/statement.cpp) on a real ledger in a temp folder:
// trial balance now and at an instant, statements in all four formats
// (camt.053 validated by xmllint against the ISO 20022 schema, MT940 parsed
// field by field, CSV and JSON round trips), signatures, time and money
// formatting. The test binary does not build tools/*.cpp, so the unit under
// test is compiled in here.
#include "tools/statement.cpp"  // NOLINT: the unit under test

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "tests/ledger_fixture.hpp"

namespace narae::testing {
namespace {

namespace tools = narae::tools;

constexpr uint64_t kHourNs = 3600 * kSecondNs;
constexpr uint64_t kDayNs = 24 * kHourNs;
// kStartNs is 2027-01-15T08:00:00Z.
constexpr uint64_t kDay1 = kStartNs - 8 * kHourNs;  // 2027-01-15T00:00:00Z
constexpr uint64_t kDay2 = kDay1 + kDayNs;
constexpr uint64_t kDay3 = kDay2 + kDayNs;

constexpr uint64_t kBankKpw = 9408, kAlice = 1, kBob = 2, kMerchant = 3, kFees = 4;
constexpr uint64_t kBankUsd = 9840, kCarol = 11;

// Three days of a small bank. Alice's card hold H1 is created on day 1 and
// captured (in part) on day 2; H2 is voided; H3 expires on day 1; H4 stays
// open. Returns the transfers' outcomes for the expectations.
class AuditTest : public LedgerTest {
 public:
  void SetUp() override {
    LedgerTest::SetUp();
    Build();
  }

  void Make(Account a) { ASSERT_EQ(CreateAccount(a), CreateAccountResult::kOk); }
  void Ok(const Transfer& t) {
    auto o = Create(t);
    ASSERT_EQ(o.result, CreateTransferResult::kOk) << ResultName(o.result);
  }
  static Transfer Hold(uint64_t id, uint64_t dr, uint64_t cr, uint64_t amount, uint32_t timeout) {
    Transfer t = Xfer(id, dr, cr, amount, transfer_flags::kPending);
    t.timeout_s = timeout;
    t.user_data_128 = U128{0xabc, id};
    t.user_data_64 = 777;
    return t;
  }

  void Build() {
    const uint16_t deposit = uint16_t(AccountCode::kCustomerDeposit);
    Make(Acc(kBankKpw, account_flags::kHistory, kKpw, uint16_t(AccountCode::kBankCash)));
    Make(Acc(kAlice, account_flags::kDebitsMustNotExceedCredits | account_flags::kHistory, kKpw,
             deposit));
    Make(Acc(kBob, account_flags::kDebitsMustNotExceedCredits, kKpw, deposit));
    Make(Acc(kMerchant, account_flags::kHistory, kKpw, uint16_t(AccountCode::kMerchantClearing)));
    Make(Acc(kFees, 0, kKpw, uint16_t(AccountCode::kFeeIncome)));
    Make(Acc(kBankUsd, 0, kUsd, uint16_t(AccountCode::kBankCash)));
    Make(Acc(kCarol, account_flags::kDebitsMustNotExceedCredits, kUsd, deposit));
    // Day 1, 08:00
    Ok(Xfer(100, kBankKpw, kAlice, 100000));
    Ok(Xfer(101, kBankKpw, kBob, 50000));
    Transfer pay = Xfer(102, kAlice, kMerchant, 2500);
    pay.user_data_128 = U128{0, 4242};
    pay.user_data_64 = 555;
    Ok(pay);
    Ok(Hold(110, kAlice, kMerchant, 4000, 3 * 24 * 3600));  // H1
    Ok(Hold(111, kAlice, kMerchant, 1000, 0));              // H2
    Ok(Hold(112, kBob, kMerchant, 700, 3600));              // H3
    Ok(Hold(113, kBob, kMerchant, 300, 0));                 // H4
    Advance(2 * 3600);                                      // 10:00
    h3_created_ = kStartNs;
    Ok(VoidOf(120, 111));
    Advance(2 * 3600);  // 12:00: H3 expired at 09:00 (expiry runs when due)
    ASSERT_OK(ledger_->Tick());
    auto h3 = ledger_->LookupHold(TransferId::From(112));
    ASSERT_TRUE(h3.has_value());
    ASSERT_EQ(h3->state, HoldState::kExpired);
    // Day 2, 12:00: capture 3500 of H1, fees.
    Advance(24 * 3600);
    Ok(PostOf(130, 110, 3500));
    Ok(Xfer(131, kMerchant, kFees, 100));
    Ok(Xfer(132, kBankUsd, kCarol, 99999, 0, kUsd));
    // Day 3, 12:00: a refund to Alice.
    Advance(24 * 3600);
    Ok(Xfer(140, kMerchant, kAlice, 500));
  }

  tools::Statement MustBuild(uint64_t account, uint64_t from, uint64_t to) {
    tools::StatementRequest r;
    r.account = AccountId::From(account);
    r.from_ns = from;
    r.to_ns = to;
    r.created_ns = kDay3 + kDayNs;
    auto s = tools::BuildStatement(*ledger_, r);
    NARAE_CHECK(s.ok());
    return std::move(s).value();
  }
  static std::string Render(const tools::Statement& s, tools::StatementFormat f) {
    std::ostringstream out;
    Status st = tools::WriteStatement(s, f, out);
    NARAE_CHECK(st.ok());
    return out.str();
  }

  uint64_t h3_created_ = 0;
};

// ---- time and money ------------------------------------------------------------------

TEST(AuditTime, ParsesAndFormatsUtc) {
  auto t = tools::ParseInstant("2026-11-28T12:00:00Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, 1'795'867'200ull * kSecondNs);
  EXPECT_EQ(tools::FormatDateTime(*t), "2026-11-28T12:00:00Z");
  EXPECT_EQ(tools::FormatDate(*t), "2026-11-28");
  EXPECT_EQ(tools::FormatYymmdd(*t), "261128");
  auto f = tools::ParseInstant("2026-11-28T12:00:00.5+00:00");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, *t + 500'000'000ull);
  EXPECT_EQ(tools::FormatDateTime(*f), "2026-11-28T12:00:00.500000000Z");
  EXPECT_EQ(*tools::ParseInstant("1800000000000000000"), kStartNs);
  EXPECT_EQ(tools::FormatDateTime(kStartNs), "2027-01-15T08:00:00Z");
  EXPECT_EQ(*tools::ParseDateBound("2024-02-29", false), 1'709'164'800ull * kSecondNs);
  EXPECT_EQ(*tools::ParseDateBound("2024-02-29", true), 1'709'251'200ull * kSecondNs - 1);
  for (const char* bad : {"", "2026-13-01", "2026-02-29", "2026-11-28T25:00:00Z",
                          "2026-11-28T12:00:00+09:00", "2026-11-28 12:00", "yesterday",
                          "99999999999999999999999", "2026-11-28T12:00:00.1234567891Z"}) {
    EXPECT_FALSE(tools::ParseInstant(bad).ok()) << bad;
  }
  EXPECT_FALSE(tools::ParseDateBound("2026-02-30", false).ok());
}

TEST(AuditMoney, FormatsMinorUnitsExactly) {
  EXPECT_EQ(tools::FormatMinor(0, 2), "0.00");
  EXPECT_EQ(tools::FormatMinor(5, 2), "0.05");
  EXPECT_EQ(tools::FormatMinor(123456, 2, ','), "1234,56");
  EXPECT_EQ(tools::FormatMinor(42, 0), "42");
  EXPECT_EQ(tools::FormatSignedMinor(-1, 2), "-0.01");
  const tools::UInt128 big = static_cast<tools::UInt128>(~uint64_t{0}) * 3;
  EXPECT_EQ(tools::UInt128ToString(big), "55340232221128654845");
  EXPECT_EQ(tools::FormatMinor(big, 2), "553402322211286548.45");
  EXPECT_EQ(tools::Int128ToString(-static_cast<tools::Int128>(big)), "-55340232221128654845");
  EXPECT_EQ(tools::FindCurrency(408)->alpha, std::string("KPW"));
  EXPECT_EQ(tools::FindCurrency(408)->exponent, 2);
  EXPECT_FALSE(tools::FindCurrency(999).has_value());
  EXPECT_EQ(tools::CsvField("plain"), "plain");
  EXPECT_EQ(tools::CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(tools::CsvField("say \"hi\"\r\n"), "\"say \"\"hi\"\"\r\n\"");
}

// ---- trial balance ---------------------------------------------------------------------

const tools::TrialBalanceRow* FindRow(const tools::TrialBalance& tb, uint32_t ledger,
                                      AccountCode code) {
  for (const auto& r : tb.rows) {
    if (r.ledger == ledger && r.code == uint16_t(code)) return &r;
  }
  return nullptr;
}

TEST_F(AuditTest, TrialBalanceLiveIsBalancedWithPerTypeFigures) {
  auto tb = tools::ComputeTrialBalance(*ledger_, std::nullopt);
  ASSERT_TRUE(tb.ok()) << tb.status().ToString();
  EXPECT_TRUE(tb->balanced());
  ASSERT_EQ(tb->totals.size(), 2u);  // KPW and USD
  const auto* deposits = FindRow(*tb, kKpw, AccountCode::kCustomerDeposit);
  ASSERT_NE(deposits, nullptr);
  EXPECT_EQ(deposits->accounts, 2u);
  EXPECT_EQ(deposits->credits_posted, tools::UInt128{150000 + 500});
  EXPECT_EQ(deposits->debits_posted, tools::UInt128{2500 + 3500});
  EXPECT_EQ(deposits->debits_pending, tools::UInt128{300});  // H4 only
  const auto* merchant = FindRow(*tb, kKpw, AccountCode::kMerchantClearing);
  ASSERT_NE(merchant, nullptr);
  EXPECT_EQ(merchant->credits_posted, tools::UInt128{2500 + 3500});
  EXPECT_EQ(merchant->debits_posted, tools::UInt128{100 + 500});
  EXPECT_EQ(merchant->credits_pending, tools::UInt128{300});
  const auto* usd = FindRow(*tb, kUsd, AccountCode::kCustomerDeposit);
  ASSERT_NE(usd, nullptr);
  EXPECT_EQ(usd->credits_posted, tools::UInt128{99999});
  for (const auto& t : tb->totals) {
    EXPECT_EQ(t.debits_posted, t.credits_posted);
    EXPECT_EQ(t.debits_pending, t.credits_pending);
  }
}

TEST_F(AuditTest, TrialBalanceAtAnInstantReplaysHoldsPostsVoidsAndExpiries) {
  // 08:30 on day 1: all four holds are pending, nothing captured yet.
  auto early = tools::ComputeTrialBalance(*ledger_, kStartNs + kHourNs / 2);
  ASSERT_TRUE(early.ok()) << early.status().ToString();
  EXPECT_TRUE(early->balanced());
  const auto* d = FindRow(*early, kKpw, AccountCode::kCustomerDeposit);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->debits_pending, tools::UInt128{4000 + 1000 + 700 + 300});
  EXPECT_EQ(d->debits_posted, tools::UInt128{2500});
  EXPECT_EQ(d->credits_posted, tools::UInt128{150000});
  EXPECT_EQ(FindRow(*early, kUsd, AccountCode::kCustomerDeposit)->credits_posted, 0u);

  // End of day 1: H2 voided, H3 expired, H1 and H4 pending.
  auto night = tools::ComputeTrialBalance(*ledger_, kDay2 - 1);
  ASSERT_TRUE(night.ok());
  EXPECT_TRUE(night->balanced());
  d = FindRow(*night, kKpw, AccountCode::kCustomerDeposit);
  EXPECT_EQ(d->debits_pending, tools::UInt128{4000 + 300});
  EXPECT_EQ(d->debits_posted, tools::UInt128{2500});
  EXPECT_EQ(FindRow(*night, kKpw, AccountCode::kMerchantClearing)->credits_pending,
            tools::UInt128{4300});

  // Noon of day 2 + 1 s: H1 captured for 3500.
  auto day2 = tools::ComputeTrialBalance(*ledger_, kDay2 + 12 * kHourNs + kSecondNs);
  ASSERT_TRUE(day2.ok());
  d = FindRow(*day2, kKpw, AccountCode::kCustomerDeposit);
  EXPECT_EQ(d->debits_pending, tools::UInt128{300});
  EXPECT_EQ(d->debits_posted, tools::UInt128{2500 + 3500});

  // Far in the future: the same as the live figures.
  auto later = tools::ComputeTrialBalance(*ledger_, kDay3 + 10 * kDayNs);
  auto live = tools::ComputeTrialBalance(*ledger_, std::nullopt);
  ASSERT_TRUE(later.ok() && live.ok());
  ASSERT_EQ(later->rows.size(), live->rows.size());
  for (size_t i = 0; i < live->rows.size(); ++i) {
    EXPECT_EQ(later->rows[i].debits_posted, live->rows[i].debits_posted);
    EXPECT_EQ(later->rows[i].credits_pending, live->rows[i].credits_pending);
    EXPECT_EQ(later->rows[i].accounts, live->rows[i].accounts);
  }
}

// A ledger whose accounts do not balance (the real one cannot be made so
// through its API): only ScanAccounts answers.
class UnbalancedLedger : public Ledger {
 public:
  Result<std::vector<AccountOutcome>> CreateAccounts(std::span<const Account>) override {
    return Status::Internal("unused");
  }
  Result<std::vector<TransferOutcome>> CreateTransfers(std::span<const Transfer>) override {
    return Status::Internal("unused");
  }
  Result<std::vector<ChangeOutcome>> ChangeAccounts(std::span<const AccountChange>) override {
    return Status::Internal("unused");
  }
  Status Submit(TxnFn, DoneFn) override { return Status::Internal("unused"); }
  Status Execute(TxnFn) override { return Status::Internal("unused"); }
  std::optional<Account> LookupAccount(AccountId) override { return std::nullopt; }
  std::optional<Transfer> LookupTransfer(TransferId) override { return std::nullopt; }
  std::optional<HoldInfo> LookupHold(TransferId) override { return std::nullopt; }
  Result<std::vector<AccountEntry>> GetAccountEntries(const AccountFilter&) override {
    return Status::Internal("unused");
  }
  Result<std::vector<Transfer>> QueryTransfersByUserData(U128, uint32_t) override {
    return Status::Internal("unused");
  }
  Status ScanAccounts(const std::function<bool(const Account&)>& fn) override {
    Account a = LedgerTest::Acc(1, 0, kKpw, 1);
    a.credits_posted = 100;
    Account b = LedgerTest::Acc(2, 0, kKpw, 8);
    b.debits_posted = 99;  // one minor unit short
    Account c = LedgerTest::Acc(3, 0, kUsd, 1);
    c.credits_pending = c.debits_pending = ~uint64_t{0};  // 128-bit sums, balanced
    Account d = LedgerTest::Acc(4, 0, kUsd, 1);
    d.credits_pending = d.debits_pending = ~uint64_t{0};
    for (const Account& x : {a, b, c, d}) fn(x);
    return Status::Ok();
  }
  Status ScanTransfers(uint64_t, uint64_t, const std::function<bool(const Transfer&)>&) override {
    return Status::Ok();
  }
  std::optional<std::string> GetAux(std::string_view) override { return std::nullopt; }
  Status ScanAux(std::string_view,
                 const std::function<bool(std::string_view, std::string_view)>&) override {
    return Status::Ok();
  }
  Result<JournalEntry> JournalHead() override { return JournalEntry{}; }
  Status CatchUp() override { return Status::Ok(); }
  Result<VerifyReport> Verify(const std::function<void(uint64_t)>&) override {
    return VerifyReport{};
  }
  Status Checkpoint(const std::string&) override { return Status::Internal("unused"); }
  LedgerStats Stats() override { return {}; }
  Status Tick() override { return Status::Ok(); }
  Status Close() override { return Status::Ok(); }
};

TEST(AuditTrialBalance, ReportsACurrencyThatDoesNotBalance) {
  UnbalancedLedger ledger;
  auto tb = tools::ComputeTrialBalance(ledger, std::nullopt);
  ASSERT_TRUE(tb.ok());
  EXPECT_FALSE(tb->balanced());
  ASSERT_EQ(tb->totals.size(), 2u);
  EXPECT_EQ(tb->totals[0].ledger, kKpw);  // ordered by ledger number: 408 < 840
  EXPECT_FALSE(tb->totals[0].balanced());
  EXPECT_TRUE(tb->totals[1].balanced());
  EXPECT_EQ(tb->totals[1].debits_pending, static_cast<tools::UInt128>(~uint64_t{0}) * 2);
}

// ---- statements ------------------------------------------------------------------------

TEST_F(AuditTest, StatementOpeningPlusEntriesIsClosingAcrossAHoldsLife) {
  const tools::Statement day1 = MustBuild(kAlice, kDay1, kDay2 - 1);
  EXPECT_EQ(day1.opening_minor, 0);
  ASSERT_EQ(day1.entries.size(), 2u);  // funding and the purchase; holds book nothing
  EXPECT_TRUE(day1.entries[0].credit);
  EXPECT_EQ(day1.entries[1].amount_minor, 2500u);
  EXPECT_FALSE(day1.entries[1].credit);
  EXPECT_EQ(day1.entries[1].order_reference, (U128{0, 4242}));
  EXPECT_EQ(day1.entries[1].merchant, 555u);
  EXPECT_EQ(day1.entries[1].counterparty, AccountId::From(kMerchant));
  EXPECT_EQ(day1.closing_minor, 97500);

  const tools::Statement day2 = MustBuild(kAlice, kDay2, kDay3 - 1);
  EXPECT_EQ(day2.opening_minor, day1.closing_minor);
  ASSERT_EQ(day2.entries.size(), 1u);  // the capture books on day 2
  const tools::StatementEntry& capture = day2.entries[0];
  EXPECT_EQ(capture.amount_minor, 3500u);
  EXPECT_EQ(capture.pending_id, TransferId::From(110));
  EXPECT_EQ(capture.order_reference, (U128{0xabc, 110}));  // from the hold
  EXPECT_EQ(capture.merchant, 777u);
  EXPECT_EQ(day2.closing_minor, 94000);

  const tools::Statement all = MustBuild(kAlice, kDay1, kDay3 + kDayNs - 1);
  EXPECT_EQ(all.closing_minor, 94500);
  const Account alice = Get(kAlice);
  EXPECT_EQ(all.closing_minor, static_cast<tools::Int128>(alice.credits_posted) -
                                   static_cast<tools::Int128>(alice.debits_posted));

  // Bob has no history flag: the opening balance is summed from his entries.
  const tools::Statement bob = MustBuild(kBob, kDay2, kDay3 + kDayNs - 1);
  EXPECT_EQ(bob.opening_minor, 50000);
  EXPECT_TRUE(bob.entries.empty());
  EXPECT_EQ(bob.closing_minor, 50000);

  // The bank's cash account is debit-normal: debits - credits.
  const tools::Statement bank = MustBuild(kBankKpw, kDay1, kDay3 + kDayNs - 1);
  EXPECT_FALSE(bank.credit_normal);
  EXPECT_EQ(bank.closing_minor, 150000);

  // Every split of the period chains: closing of one = opening of the next.
  for (uint64_t cut = kDay1; cut < kDay3 + kDayNs; cut += 3 * kHourNs) {
    const tools::Statement a = MustBuild(kAlice, kDay1, cut);
    const tools::Statement b = MustBuild(kAlice, cut + 1, kDay3 + kDayNs);
    EXPECT_EQ(a.closing_minor, b.opening_minor) << cut;
    EXPECT_EQ(b.closing_minor, all.closing_minor) << cut;
  }
}

TEST_F(AuditTest, StatementRejectsBadRequests) {
  tools::StatementRequest r;
  r.account = AccountId::From(424242);
  r.from_ns = kDay1;
  r.to_ns = kDay2;
  EXPECT_EQ(tools::BuildStatement(*ledger_, r).status().code(), StatusCode::kNotFound);
  r.account = AccountId::From(kAlice);
  r.from_ns = kDay2;
  r.to_ns = kDay1;
  EXPECT_EQ(tools::BuildStatement(*ledger_, r).status().code(), StatusCode::kInvalidArgument);
  Make(Acc(50, 0, 999, 1));  // not an ISO 4217 currency Narae knows
  r.account = AccountId::From(50);
  r.from_ns = kDay1;
  r.to_ns = kDay2;
  EXPECT_EQ(tools::BuildStatement(*ledger_, r).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(tools::ParseStatementFormat("pdf").ok());
}

// Runs a command; returns its exit code and fills `output` with stdout+stderr.
int Shell(const std::string& command, std::string* output) {
  std::string full = command + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
  const int rc = pclose(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

bool HaveCommand(const std::string& name) {
  std::string ignored;
  return Shell("command -v " + name, &ignored) == 0;
}

TEST_F(AuditTest, Camt053ValidatesAgainstTheIsoSchema) {
  if (!HaveCommand("xmllint"))
    GTEST_SKIP() << "xmllint is not installed (apt-get install libxml2-utils)";
  const std::string schema =
      std::string(NARAE_SOURCE_DIR) + "/../shared/iso20022/camt.053.001.08.xsd";
  ASSERT_TRUE(std::filesystem::exists(schema)) << schema;
  for (auto [account, from, to] :
       {std::tuple{kAlice, kDay1, kDay3 + kDayNs - 1}, std::tuple{kAlice, kDay2, kDay3 - 1},
        std::tuple{kBob, kDay2, kDay3},  // no entries
        std::tuple{kBankKpw, kDay1, kDay3 + kDayNs}, std::tuple{kCarol, kDay1, kDay3 + kDayNs}}) {
    const std::string xml = Render(MustBuild(account, from, to), tools::StatementFormat::kCamt053);
    const std::string file = dir_.Sub("stmt-" + std::to_string(account) + ".xml");
    std::ofstream(file) << xml;
    std::string out;
    EXPECT_EQ(Shell("xmllint --noout --schema '" + schema + "' '" + file + "'", &out), 0) << out;
    EXPECT_NE(out.find("validates"), std::string::npos) << out;
  }
  const std::string xml =
      Render(MustBuild(kAlice, kDay2, kDay3 - 1), tools::StatementFormat::kCamt053);
  EXPECT_NE(xml.find("<Cd>OPBD</Cd>"), std::string::npos);
  EXPECT_NE(xml.find("<Amt Ccy=\"KPW\">975.00</Amt>"), std::string::npos);
  EXPECT_NE(xml.find("<Amt Ccy=\"KPW\">940.00</Amt>"), std::string::npos);
  EXPECT_NE(xml.find("<Amt Ccy=\"KPW\">35.00</Amt>"), std::string::npos);
  EXPECT_NE(xml.find("<CdtrAcct><Id><Othr><Id>" + AccountId::From(kMerchant).ToHex()),
            std::string::npos);
}

// A small MT940 reader: tags and their values (continuation lines joined
// with '\n'), checking the line layout as it goes.
std::vector<std::pair<std::string, std::string>> ParseMt940(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> fields;
  std::istringstream in(text);
  std::string line;
  bool ended = false;
  while (std::getline(in, line)) {
    EXPECT_FALSE(line.empty());
    EXPECT_EQ(line.back(), '\r') << "MT940 lines end with CRLF";
    line.pop_back();
    EXPECT_LE(line.size(), 65u) << line;
    EXPECT_FALSE(ended) << "text after the closing '-'";
    if (line == "-") {
      ended = true;
      continue;
    }
    static const std::regex kTag(R"(^:(\d\d[A-Z]?):(.*)$)");
    std::smatch m;
    if (std::regex_match(line, m, kTag)) {
      fields.emplace_back(m[1], m[2]);
    } else {
      EXPECT_FALSE(fields.empty()) << line;
      if (!fields.empty()) fields.back().second += "\n" + line;
    }
  }
  EXPECT_TRUE(ended);
  return fields;
}

// "1234,56" -> 123456 for 2 decimals.
int64_t Mt940Minor(const std::string& amount) {
  const size_t comma = amount.find(',');
  EXPECT_NE(comma, std::string::npos) << amount;
  std::string digits = amount.substr(0, comma) + amount.substr(comma + 1);
  EXPECT_EQ(amount.size() - comma - 1, 2u) << amount;
  return std::stoll(digits);
}

TEST_F(AuditTest, Mt940FollowsTheSwiftLayoutAndRoundTrips) {
  const tools::Statement s = MustBuild(kAlice, kDay1, kDay3 + kDayNs - 1);
  const auto fields = ParseMt940(Render(s, tools::StatementFormat::kMt940));
  ASSERT_GE(fields.size(), 5u);
  EXPECT_EQ(fields[0].first, "20");
  EXPECT_LE(fields[0].second.size(), 16u);
  EXPECT_EQ(fields[1].first, "25");
  EXPECT_EQ(fields[1].second, AccountId::From(kAlice).ToHex());
  EXPECT_EQ(fields[2].first, "28C");
  EXPECT_TRUE(std::regex_match(fields[2].second, std::regex(R"(\d{1,5}(/\d{1,5})?)")));
  EXPECT_EQ(fields[3].first, "60F");
  EXPECT_EQ(fields.back().first, "62F");
  static const std::regex kBalance(R"(^([CD])(\d{6})([A-Z]{3})(\d{1,12},\d{0,2})$)");
  static const std::regex kLine61(
      R"(^(\d{6})(\d{4})?(C|D|RC|RD)([A-Z])?(\d{1,12},\d{0,2})(N[A-Z0-9]{3})([^/]{1,16})(//(.{1,16}))?$)");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(fields[3].second, m, kBalance)) << fields[3].second;
  EXPECT_EQ(m[2], "270115");
  EXPECT_EQ(m[3], "KPW");
  int64_t balance = (m[1] == "C" ? 1 : -1) * Mt940Minor(m[4]);
  EXPECT_EQ(balance, 0);
  size_t entries = 0;
  std::string last_tag;
  for (size_t i = 4; i + 1 < fields.size(); ++i) {
    const auto& [tag, value] = fields[i];
    if (tag == "61") {
      ASSERT_TRUE(std::regex_match(value, m, kLine61)) << value;
      const int64_t amount = Mt940Minor(m[5]);
      balance += m[3] == "C" ? amount : -amount;
      ++entries;
    } else {
      EXPECT_EQ(tag, "86");
      EXPECT_EQ(last_tag, "61") << ":86: follows its :61:";
      EXPECT_EQ(value.rfind("/TRID/", 0), 0u) << value;
      EXPECT_LE(std::count(value.begin(), value.end(), '\n'), 5) << "at most 6 lines";
    }
    last_tag = tag;
  }
  EXPECT_EQ(entries, s.entries.size());
  ASSERT_TRUE(std::regex_match(fields.back().second, m, kBalance)) << fields.back().second;
  EXPECT_EQ(m[2], "270117");
  const int64_t closing = (m[1] == "C" ? 1 : -1) * Mt940Minor(m[4]);
  EXPECT_EQ(closing, 94500);
  EXPECT_EQ(balance, closing) << "opening + sum of :61: = closing";

  // The debit-normal bank account shows a debit balance: D.
  const auto bank = ParseMt940(
      Render(MustBuild(kBankKpw, kDay1, kDay3 + kDayNs), tools::StatementFormat::kMt940));
  EXPECT_EQ(bank.back().second.substr(0, 11), "D270118KPW1");
}

// RFC 4180: fields separated by commas, quoted fields may hold , " CR LF.
std::vector<std::vector<std::string>> ParseCsv(const std::string& text) {
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false, in_field = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"' && !in_field) {
      quoted = in_field = true;
    } else if (c == ',') {
      rows.back().push_back(field);
      field.clear();
      in_field = false;
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      rows.back().push_back(field);
      field.clear();
      in_field = false;
      rows.emplace_back();
      ++i;
    } else {
      field += c;
      in_field = true;
    }
  }
  EXPECT_TRUE(rows.back().empty() && field.empty()) << "the last record ends with CRLF";
  rows.pop_back();
  return rows;
}

TEST_F(AuditTest, CsvRoundTrips) {
  const tools::Statement s = MustBuild(kAlice, kDay1, kDay3 + kDayNs - 1);
  const auto rows = ParseCsv(Render(s, tools::StatementFormat::kCsv));
  ASSERT_EQ(rows.size(), s.entries.size() + 3);  // header, opening, entries, closing
  const auto& header = rows[0];
  auto col = [&](const std::string& name) {
    auto it = std::find(header.begin(), header.end(), name);
    NARAE_CHECK(it != header.end());
    return static_cast<size_t>(it - header.begin());
  };
  for (const auto& r : rows) EXPECT_EQ(r.size(), header.size());
  EXPECT_EQ(rows[1][col("record")], "opening");
  EXPECT_EQ(rows.back()[col("record")], "closing");
  int64_t balance = std::stoll(rows[1][col("balance_minor")]);
  for (size_t i = 2; i + 1 < rows.size(); ++i) {
    const auto& r = rows[i];
    const tools::StatementEntry& e = s.entries[i - 2];
    EXPECT_EQ(r[col("record")], "entry");
    const int64_t amount = std::stoll(r[col("amount_minor")]);
    EXPECT_EQ(static_cast<uint64_t>(amount), e.amount_minor);
    balance += r[col("direction")] == "credit" ? amount : -amount;
    EXPECT_EQ(std::stoll(r[col("balance_minor")]), balance);
    EXPECT_EQ(r[col("transfer_id")], e.transfer_id.ToHex());
    EXPECT_EQ(r[col("counterparty")], e.counterparty.ToHex());
    EXPECT_EQ(r[col("booking_date")], tools::FormatDate(e.booking_ns));
  }
  EXPECT_EQ(std::stoll(rows.back()[col("balance_minor")]), balance);
  EXPECT_EQ(rows.back()[col("balance")], "945.00");
  EXPECT_EQ(rows[3][col("order_reference")], (U128{0, 4242}).ToHex());
}

TEST_F(AuditTest, JsonRoundTrips) {
  const tools::Statement s = MustBuild(kAlice, kDay2, kDay3 + kDayNs - 1);
  const auto j = nlohmann::json::parse(Render(s, tools::StatementFormat::kJson));
  EXPECT_EQ(j["account"], AccountId::From(kAlice).ToHex());
  EXPECT_EQ(j["currency"], "KPW");
  EXPECT_EQ(j["sign_convention"], "credits_minus_debits");
  EXPECT_EQ(j["opening_balance"], "975.00");
  int64_t balance = std::stoll(j["opening_balance_minor"].get<std::string>());
  ASSERT_EQ(j["entries"].size(), s.entries.size());
  for (const auto& e : j["entries"]) {
    const int64_t amount = e["amount_minor"].get<int64_t>();
    balance += e["direction"] == "credit" ? amount : -amount;
    EXPECT_EQ(std::stoll(e["balance_after_minor"].get<std::string>()), balance);
  }
  EXPECT_EQ(std::to_string(balance), j["closing_balance_minor"].get<std::string>());
  EXPECT_EQ(j["closing_balance"], "945.00");
  EXPECT_EQ(j["entries"][0]["pending_id"], TransferId::From(110).ToHex());
  EXPECT_TRUE(j["entries"][1]["pending_id"].is_null());
}

// ---- signatures ------------------------------------------------------------------------

TEST_F(AuditTest, SignThenVerifyAndTamperingFails) {
  const std::string priv = dir_.Sub("stmt.key"), pub = dir_.Sub("stmt.pub");
  ASSERT_OK(tools::GenerateSigningKeyPair(priv, pub));
  struct stat st {};
  ASSERT_EQ(::stat(priv.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(tools::GenerateSigningKeyPair(priv, dir_.Sub("other.pub")).code(),
            StatusCode::kAlreadyExists);
  auto key = tools::LoadSigningKey(priv);
  ASSERT_TRUE(key.ok()) << key.status().ToString();

  const std::string file = dir_.Sub("stmt.json"), sig = file + ".sig";
  std::ofstream(file) << Render(MustBuild(kAlice, kDay1, kDay3), tools::StatementFormat::kJson);
  ASSERT_OK(tools::SignFile(file, *key, sig));
  EXPECT_EQ(std::filesystem::file_size(sig), 64u);
  EXPECT_OK(tools::VerifyFileSignature(file, sig, pub));

  // A base64 signature file is accepted too.
  auto raw = tools::ReadFile(sig, 64);
  ASSERT_TRUE(raw.ok());
  const std::string b64 = dir_.Sub("stmt.sig.b64");
  std::ofstream(b64) << tools::Base64Encode(crypto::ByteView(
                            reinterpret_cast<const uint8_t*>(raw->data()), raw->size()))
                     << "\n";
  EXPECT_OK(tools::VerifyFileSignature(file, b64, pub));

  // One changed byte in the statement fails.
  std::string text = *tools::ReadFile(file, 1 << 20);
  text[text.size() / 2] ^= 1;
  std::ofstream(file, std::ios::trunc) << text;
  EXPECT_EQ(tools::VerifyFileSignature(file, sig, pub).code(), StatusCode::kPermissionDenied);

  // A hex seed key file works; a readable-by-others key file is refused.
  const std::string hex_key = dir_.Sub("seed.hex");
  std::ofstream(hex_key) << crypto::ToHex(*key) << "\n";
  ::chmod(hex_key.c_str(), 0644);
  EXPECT_EQ(tools::LoadSigningKey(hex_key).status().code(), StatusCode::kPermissionDenied);
  ::chmod(hex_key.c_str(), 0600);
  auto again = tools::LoadSigningKey(hex_key);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(crypto::ConstantTimeEqual(*again, *key));
  EXPECT_EQ(tools::LoadSigningKey(dir_.Sub("missing")).status().code(), StatusCode::kNotFound);
}

TEST_F(AuditTest, SignatureInteroperatesWithOpenssl) {
  if (!HaveCommand("openssl")) GTEST_SKIP() << "openssl command not installed";
  const std::string priv = dir_.Sub("k.pem"), pub = dir_.Sub("k.pub");
  ASSERT_OK(tools::GenerateSigningKeyPair(priv, pub));
  const std::string file = dir_.Sub("s.txt"), sig = dir_.Sub("s.txt.sig");
  std::ofstream(file) << Render(MustBuild(kAlice, kDay1, kDay3), tools::StatementFormat::kMt940);
  auto key = tools::LoadSigningKey(priv);
  ASSERT_TRUE(key.ok());
  ASSERT_OK(tools::SignFile(file, *key, sig));
  std::string out;
  EXPECT_EQ(Shell("openssl pkeyutl -verify -pubin -inkey '" + pub + "' -rawin -in '" + file +
                      "' -sigfile '" + sig + "'",
                  &out),
            0)
      << out;
  // And a key made by openssl signs statements narae verifies.
  const std::string ossl_key = dir_.Sub("ossl.pem"), ossl_pub = dir_.Sub("ossl.pub");
  ASSERT_EQ(
      Shell("openssl genpkey -algorithm ed25519 -out '" + ossl_key + "' && chmod 600 '" + ossl_key +
                "' && openssl pkey -in '" + ossl_key + "' -pubout -out '" + ossl_pub + "'",
            &out),
      0)
      << out;
  auto k2 = tools::LoadSigningKey(ossl_key);
  ASSERT_TRUE(k2.ok()) << k2.status().ToString();
  ASSERT_OK(tools::SignFile(file, *k2, sig));
  EXPECT_OK(tools::VerifyFileSignature(file, sig, ossl_pub));
}

}  // namespace
}  // namespace narae::testing
