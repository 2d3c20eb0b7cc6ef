// Reconciliation (tools/reconcile.cpp) on a real ledger in a temp folder: a
// day with one planted break of every class plus matched and released
// payments, the same through the `narae reconcile` binary (table, JSON, exit
// codes) while the test keeps the ledger open as a running switch would, and
// every bad input (malformed file rows, unknown or future day, unreadable
// switch record). The test binary does not build tools/*.cpp: the unit
// under test is compiled in here; the audit helpers it calls (dates,
// currencies, ReadFile) come from tools/statement.cpp, which
// tools_statement_test.cpp compiles into the same binary.
#include "tools/reconcile.cpp"  // NOLINT: the unit under test

#include <gtest/gtest.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "switch/authorizer.hpp"
#include "switch/settlement.hpp"
#include "tests/ledger_fixture.hpp"

namespace narae::testing {
namespace {

namespace tools = narae::tools;
namespace sw = narae::switching;
using tools::BreakClass;

constexpr uint64_t kHourNs = 3600 * kSecondNs;
constexpr uint64_t kDayNs = 24 * kHourNs;
constexpr uint64_t kBank = 9408, kAlice = 1, kMerchant = 3;

uint64_t RealNowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

struct Pay {
  std::string key;
  TransferId id;
  std::string rrn;
  uint64_t amount = 0;
  bool hold = false;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Day D is three days ago (real time), so the binary, which uses the real
// clock, sees a finished day, a hold captured the next day, a hold that
// expired and one that is still open (7-day timeout).
class ReconcileTest : public LedgerTest {
 public:
  void SetUp() override {
    const uint64_t now_days = RealNowNs() / kDayNs;
    day_ = static_cast<uint32_t>(now_days - 3);
    clock_ns_ = uint64_t{day_} * kDayNs - kDayNs;  // the day before: accounts
    LedgerTest::SetUp();
    ASSERT_EQ(CreateAccount(Acc(kBank, 0, kKpw, uint16_t(AccountCode::kBankCash))),
              CreateAccountResult::kOk);
    ASSERT_EQ(CreateAccount(Acc(kAlice, 0, kKpw, uint16_t(AccountCode::kCustomerDeposit))),
              CreateAccountResult::kOk);
    ASSERT_EQ(CreateAccount(Acc(kMerchant, 0, kKpw, uint16_t(AccountCode::kMerchantClearing))),
              CreateAccountResult::kOk);
    clock_ns_ = uint64_t{day_} * kDayNs + 8 * kHourNs;
  }

  std::string Date() const { return tools::FormatDate(uint64_t{day_} * kDayNs); }

  sw::RequestRecord Record(const Pay& p, uint64_t captured) const {
    sw::RequestRecord r;
    r.kind = p.hold ? sw::RequestKind::kHold : sw::RequestKind::kPurchase;
    r.amount_minor = p.amount;
    r.currency = kKpw;
    r.debit = AccountId::From(kAlice);
    r.credit = AccountId::From(kMerchant);
    r.transfer = p.id;
    r.captured_minor = captured;
    r.day = day_;
    r.rrn = p.rrn;
    return r;
  }
  void PutRecord(const std::string& key, const std::string& value) {
    ASSERT_OK(ledger_->Execute([&](Txn& txn) { txn.PutAux(key, value); }));
  }

  // A payment as the authorizer makes it: the ledger transfer and the au/x
  // record in one group (either can be left out to plant a break).
  Pay Payment(int n, bool hold, uint64_t amount, bool record = true, bool transfer = true,
              uint32_t timeout_s = 7 * 24 * 3600) {
    Pay p;
    p.key = std::string(sw::kRequestRecordPrefix) + "TERM0001" + std::to_string(100000 + n);
    p.id = sw::RequestTransferId(p.key, 1);
    p.rrn = tools::RrnFromNumber(777000 + static_cast<uint64_t>(n));
    p.amount = amount;
    p.hold = hold;
    Transfer t;
    t.id = p.id;
    t.debit_account_id = AccountId::From(kAlice);
    t.credit_account_id = AccountId::From(kMerchant);
    t.amount_minor = amount;
    t.ledger = kKpw;
    t.code = hold ? sw::kTransferCodeHold : sw::kTransferCodePurchase;
    if (hold) {
      t.flags = transfer_flags::kPending;
      t.timeout_s = timeout_s;
    }
    const std::string value = sw::EncodeRequestRecord(Record(p, hold ? 0 : amount));
    Status st = ledger_->Execute([&](Txn& txn) {
      if (transfer) {
        auto out = txn.CreateTransfers({&t, 1});
        NARAE_CHECK(out.size() == 1 && out[0].result == CreateTransferResult::kOk);
      }
      if (record) txn.PutAux(p.key, value);
    });
    NARAE_CHECK(st.ok());
    Advance(60);
    return p;
  }
  // A completion: posts the hold and records the captured amount.
  void Capture(const Pay& p, uint64_t amount) {
    Transfer post;
    post.id = sw::RequestTransferId(p.key, 7);
    post.pending_id = p.id;
    post.amount_minor = amount;
    post.flags = transfer_flags::kPostPendingTransfer;
    const std::string value = sw::EncodeRequestRecord(Record(p, amount));
    ASSERT_OK(ledger_->Execute([&](Txn& txn) {
      auto out = txn.CreateTransfers({&post, 1});
      NARAE_CHECK(out.size() == 1 && out[0].result == CreateTransferResult::kOk);
      txn.PutAux(p.key, value);
    }));
    Advance(60);
  }

  // The payment's delivery share moved at capture (docs/settlement.md):
  // `share` due, `moved` in the logistics account.
  void ShareAtCapture(const Pay& p, uint64_t share, uint64_t moved) {
    sw::PaymentInfo info;
    info.rrn = p.rrn;
    info.split.kind = sw::SplitKind::kAtCapture;
    info.split.amount_minor = share;
    info.split.moved_minor = moved;
    ASSERT_OK(sw::PutPaymentInfo(*ledger_, p.id, info));
  }

  // One break of every class, two matched payments, one released, one row
  // of another day. Returns the CSV file.
  std::string PlantDay() {
    const std::string d = Date();
    Pay matched = Payment(1, false, 1500);
    Pay matched_hold = Payment(2, true, 4000);
    Capture(matched_hold, 3500);
    Pay missing_ledger = Payment(3, false, 700, /*record=*/true, /*transfer=*/false);
    Pay missing_switch = Payment(4, false, 800, /*record=*/false, /*transfer=*/true);
    Payment(5, false, 900);  // missing in file
    Pay amount = Payment(6, false, 1000);
    Pay currency = Payment(7, false, 1100);
    Pay duplicate = Payment(8, false, 1200);
    Pay late = Payment(9, true, 5000);
    Payment(10, true, 6000);                                 // stale: open for 7 days
    Payment(11, true, 300, true, true, /*timeout_s=*/3600);  // expired: released
    Pay unmoved = Payment(12, false, 1300);
    ShareAtCapture(unmoved, 200, 0);  // the move at capture failed
    Advance(24 * 3600);               // the next day
    Capture(late, 5000);
    std::string csv = "order_ref,rrn,payment_id,amount,currency,date,note\n";
    csv += "ORD-1," + matched.rrn + ",,15.00,KPW," + d + ",first\n";
    csv += "ORD-2,," + matched_hold.id.ToHex() + ",35.00,KPW," + d + "T10:00:00Z,\n";
    csv += "ORD-3," + missing_ledger.rrn + ",,7.00,KPW," + d + ",\n";
    csv += "ORD-4,," + missing_switch.id.ToHex() + ",8.00,KPW," + d + ",\n";
    csv += "ORD-6," + amount.rrn + ",,10.01,KPW," + d + ",\n";
    csv += "ORD-7," + currency.rrn + ",,11.00,USD," + d + ",\n";
    csv += "ORD-8," + duplicate.rrn + ",,12.00,408," + d + ",\n";
    csv += "\"ORD-8, again\"," + duplicate.rrn + ",,12.00,KPW," + d + ",\"said \"\"twice\"\"\"\n";
    csv += "ORD-9," + late.rrn + ",,50.00,KPW," + d + ",\n";
    csv += "ORD-12," + unmoved.rrn + ",,13.00,KPW," + d + ",\n";
    csv += "ORD-0,ZZZZZZZZZZZZ,,1.00,KPW,2020-01-01,another day\n";
    return csv;
  }

  tools::ReconcileReport Run(const std::string& csv) {
    auto rows = tools::ParseReconcileFile(csv, tools::ReconcileFileFormat::kCsv);
    NARAE_CHECK(rows.ok());
    auto rep = tools::Reconcile(*ledger_, tools::ReconcileRequest{day_, RealNowNs()}, *rows);
    NARAE_CHECK(rep.ok());
    return *rep;
  }

  uint32_t day_ = 0;
};

const tools::ReconcileBreak* Find(const tools::ReconcileReport& r, BreakClass c) {
  for (const auto& b : r.breaks) {
    if (b.cls == c) return &b;
  }
  return nullptr;
}

TEST_F(ReconcileTest, OneBreakOfEveryClassIsFoundAndClassified) {
  tools::ReconcileReport r = Run(PlantDay());
  for (size_t c = 0; c < tools::kBreakClassCount; ++c) {
    EXPECT_EQ(r.by_class[c].count, 1u) << tools::BreakClassName(static_cast<BreakClass>(c));
  }
  EXPECT_EQ(r.breaks.size(), tools::kBreakClassCount);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.matched.count, 2u);
  EXPECT_EQ(r.matched.minor_by_currency[kKpw], 1500u + 3500u);
  EXPECT_EQ(r.released.count, 1u);
  EXPECT_EQ(r.switch_payments, 11u);  // 12 made, one never logged
  EXPECT_EQ(r.ledger_payments, 11u);  // 12 made, one never booked
  EXPECT_EQ(r.file_rows, 10u);
  EXPECT_EQ(r.file_rows_other_days, 1u);
  EXPECT_EQ(r.unmatched.count, 9u);  // 8 payments with breaks + the ledger-only one

  const auto* b = Find(r, BreakClass::kMissingInLedger);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->rrn, tools::RrnFromNumber(777003));
  EXPECT_EQ(b->file_line, 4u);
  b = Find(r, BreakClass::kMissingInSwitchLog);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->order_ref, "ORD-4");
  EXPECT_EQ(b->ledger_minor, 800u);
  b = Find(r, BreakClass::kMissingInFile);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->rrn, tools::RrnFromNumber(777005));
  EXPECT_EQ(b->ledger_minor, 900u);
  EXPECT_EQ(b->file_line, 0u);
  b = Find(r, BreakClass::kAmountMismatch);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->file_minor, 1001u);
  EXPECT_EQ(b->ledger_minor, 1000u);
  b = Find(r, BreakClass::kCurrencyMismatch);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->order_ref, "ORD-7");
  b = Find(r, BreakClass::kDuplicate);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->order_ref, "ORD-8, again");
  EXPECT_EQ(b->file_line, 9u);
  b = Find(r, BreakClass::kLatePresentment);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->rrn, tools::RrnFromNumber(777009));
  EXPECT_EQ(b->ledger_minor, 5000u);
  b = Find(r, BreakClass::kStaleHold);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->switch_minor, 6000u);
  EXPECT_NE(b->detail.find("expires"), std::string::npos);
  b = Find(r, BreakClass::kDeliveryShareNotMoved);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->rrn, tools::RrnFromNumber(777012));
  EXPECT_EQ(b->order_ref, "ORD-12");
  EXPECT_EQ(b->switch_minor, 200u);  // due
  EXPECT_EQ(b->ledger_minor, 0u);    // moved
  EXPECT_EQ(b->detail, "delivery share 200: due 200, moved 0");
}

// Due = min(share, captured net of reversals): a share moved in full, one
// capped by a smaller capture and one given back by a reversal are no
// breaks; a reversal that could not give the share back is one.
TEST_F(ReconcileTest, DeliveryShareIsDueUpToWhatStaysCaptured) {
  Pay full = Payment(1, false, 2500);
  ShareAtCapture(full, 300, 300);
  Pay capped = Payment(2, true, 4000);
  Capture(capped, 150);
  ShareAtCapture(capped, 300, 150);
  Pay reversed = Payment(3, false, 1000);  // later reversed to 400: 100 of 500 moved back
  ASSERT_OK(ledger_->Execute(
      [&](Txn& txn) { txn.PutAux(reversed.key, sw::EncodeRequestRecord(Record(reversed, 400))); }));
  ShareAtCapture(reversed, 500, 400);
  Pay stuck = Payment(4, false, 1000);  // reversed to 100, the share could not come back
  ASSERT_OK(ledger_->Execute(
      [&](Txn& txn) { txn.PutAux(stuck.key, sw::EncodeRequestRecord(Record(stuck, 100))); }));
  ShareAtCapture(stuck, 500, 500);
  std::string csv = "rrn,amount_minor,currency,date\n";
  for (const auto& [p, settled] : std::vector<std::pair<Pay, int>>{
           {full, 2500}, {capped, 150}, {reversed, 400}, {stuck, 100}}) {
    csv += p.rrn + "," + std::to_string(settled) + ",KPW," + Date() + "\n";
  }
  tools::ReconcileReport r = Run(csv);
  ASSERT_EQ(r.breaks.size(), 1u);
  EXPECT_EQ(r.breaks[0].cls, BreakClass::kDeliveryShareNotMoved);
  EXPECT_EQ(r.breaks[0].rrn, stuck.rrn);
  EXPECT_EQ(r.breaks[0].detail, "delivery share 500: due 100, moved 500");
  EXPECT_EQ(r.matched.count, 3u);
}

TEST_F(ReconcileTest, ACleanDayHasNoBreaks) {
  Pay p = Payment(1, false, 2500);
  Pay h = Payment(2, true, 4000);
  Capture(h, 4000);
  const std::string csv = "rrn,amount_minor,currency,date\n" + p.rrn + ",2500,KPW," + Date() +
                          "\n" + h.rrn + ",4000,KPW," + Date() + "\n";
  tools::ReconcileReport r = Run(csv);
  EXPECT_TRUE(r.ok()) << (r.breaks.empty() ? "" : r.breaks[0].detail);
  EXPECT_EQ(r.matched.count, 2u);
  // The day before has nothing of these.
  auto rows = tools::ParseReconcileFile(csv, tools::ReconcileFileFormat::kCsv);
  ASSERT_TRUE(rows.ok());
  auto before = tools::Reconcile(*ledger_, tools::ReconcileRequest{day_ - 1, RealNowNs()}, *rows);
  ASSERT_TRUE(before.ok());
  EXPECT_TRUE(before->ok());
  EXPECT_EQ(before->file_rows_other_days, 2u);
}

TEST_F(ReconcileTest, JsonFileGivesTheSameRows) {
  Pay p = Payment(1, false, 2500);
  const std::string json = R"({"rows": [{"order_ref": "A", "rrn": ")" + p.rrn +
                           R"(", "amount": "25.00", "currency": "KPW", "date": ")" + Date() +
                           R"("}, {"payment_id": ")" + p.id.ToHex() +
                           R"(", "amount_minor": 2500, "currency": "408", "date": ")" + Date() +
                           R"("}]})";
  auto rows = tools::ParseReconcileFile(json, tools::ReconcileFileFormat::kJson);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].amount_minor, 2500u);
  EXPECT_EQ((*rows)[1].payment_id, p.id);
  auto rep = tools::Reconcile(*ledger_, tools::ReconcileRequest{day_, RealNowNs()}, *rows);
  ASSERT_TRUE(rep.ok());
  ASSERT_EQ(rep->breaks.size(), 1u);  // both rows name the one payment
  EXPECT_EQ(rep->breaks[0].cls, BreakClass::kDuplicate);
}

TEST(ReconcileFile, MalformedRowsAreRefusedWithTheirLine) {
  const std::string head = "order_ref,rrn,payment_id,amount,currency,date\n";
  const std::string ok = "A,000000000001,,1.00,KPW,2026-01-02\n";
  struct Case {
    std::string text;
    std::string message;
  };
  const Case cases[] = {
      {"", "no header"},
      {"rrn,amount,currency\n", "no date"},
      {"amount,currency,date\n", "neither rrn nor payment_id"},
      {"rrn,currency,date\n", "no amount"},
      {"rrn,amount,date\n", "no currency"},
      {"rrn,rrn,amount,currency,date\n", "twice"},
      {head + ok + "B,000000000002,,1.00,KPW\n", "line 3: 5 fields"},
      {head + "B,000000000002,,1.001,KPW,2026-01-02\n", "line 2: bad amount"},
      {head + "B,000000000002,,-1.00,KPW,2026-01-02\n", "bad amount"},
      {head + "B,000000000002,,1.,KPW,2026-01-02\n", "bad amount"},
      {head + "B,000000000002,,99999999999999999999,KPW,2026-01-02\n", "bad amount"},
      {head + "B,000000000002,,,KPW,2026-01-02\n", "no amount"},
      {head + "B,000000000002,,1.00,XXX,2026-01-02\n", "unknown currency"},
      {head + "B,000000000002,,1.00,KPW,2026-02-30\n", "bad date"},
      {head + "B,000000000002,,1.00,KPW,yesterday\n", "bad date"},
      {head + "B,ABC,,1.00,KPW,2026-01-02\n", "rrn"},
      {head + "B,00000000000!,,1.00,KPW,2026-01-02\n", "rrn"},
      {head + "B,,,1.00,KPW,2026-01-02\n", "no rrn and no payment_id"},
      {head + "B,,xyz,1.00,KPW,2026-01-02\n", "payment_id"},
      {head + "\"B,000000000002,,1.00,KPW,2026-01-02\n", "quoting"},
      {head + "B\"x,000000000002,,1.00,KPW,2026-01-02\n", "quoting"},
      {head + std::string(5000, 'x') + "\n", "too long"},
  };
  for (const Case& c : cases) {
    auto r = tools::ParseReconcileFile(c.text, tools::ReconcileFileFormat::kCsv);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.message), std::string::npos)
        << c.text << " -> " << r.status().message();
  }
  const Case json_cases[] = {
      {"{", "not valid JSON"},
      {"{\"x\": 1}", "array"},
      {"[1]", "not an object"},
      {R"([{"rrn": "000000000001", "amount": 1.5, "currency": "KPW", "date": "2026-01-02"}])",
       "amount must be a string"},
      {R"([{"rrn": "000000000001", "amount_minor": -1, "currency": "KPW", "date": "2026-01-02"}])",
       "non-negative integer"},
      {R"([{"rrn": 1, "amount": "1", "currency": "KPW", "date": "2026-01-02"}])", "strings"},
      {R"([{"rrn": "000000000001", "amount": "1", "currency": "KPW"}])", "bad date"},
  };
  for (const Case& c : json_cases) {
    auto r = tools::ParseReconcileFile(c.text, tools::ReconcileFileFormat::kJson);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.message), std::string::npos)
        << c.text << " -> " << r.status().message();
  }
  // Good rows: BOM, CRLF, blank lines, lower-case names, extra columns.
  auto good = tools::ParseReconcileFile("\xEF\xBB\xBFRRN,Amount,Currency,Date,Extra\r\n\r\n" +
                                            std::string("abcdefghijkl,1.5,usd,2026-01-02,x\r\n"),
                                        tools::ReconcileFileFormat::kCsv);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  ASSERT_EQ(good->size(), 1u);
  EXPECT_EQ((*good)[0].rrn, "ABCDEFGHIJKL");
  EXPECT_EQ((*good)[0].amount_minor, 150u);
  EXPECT_EQ((*good)[0].currency, 840u);
  EXPECT_EQ((*good)[0].line, 3u);
  EXPECT_FALSE(tools::ParseReconcileFileFormat("xml").ok());
}

TEST_F(ReconcileTest, FutureDayAndUnreadableSwitchRecordAreErrors) {
  std::vector<tools::FileRow> none;
  auto future = tools::Reconcile(*ledger_, tools::ReconcileRequest{day_ + 10, RealNowNs()}, none);
  ASSERT_FALSE(future.ok());
  EXPECT_NE(future.status().message().find("has not begun"), std::string::npos);
  PutRecord(std::string(sw::kRequestRecordPrefix) + "BROKEN", "not a record");
  auto bad = tools::Reconcile(*ledger_, tools::ReconcileRequest{day_, RealNowNs()}, none);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unreadable switch record"), std::string::npos);
}

TEST_F(ReconcileTest, UnreadablePaymentInfoIsAnError) {
  Pay p = Payment(1, false, 2500);
  ASSERT_OK(ledger_->Execute([&](Txn& txn) { txn.PutAux(sw::PaymentInfoKey(p.id), "junk"); }));
  std::vector<tools::FileRow> none;
  auto bad = tools::Reconcile(*ledger_, tools::ReconcileRequest{day_, RealNowNs()}, none);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unreadable payment info of " + p.id.ToHex()),
            std::string::npos);
}

TEST(ReconcileRrn, RoundTripsAndRefusesBadText) {
  EXPECT_EQ(tools::RrnFromNumber(0), "000000000000");
  EXPECT_EQ(tools::RrnToNumber("00000000000Z"), 35u);
  EXPECT_EQ(tools::RrnToNumber("ZZZZZZZZZZZZ"), 4738381338321616895u);
  EXPECT_EQ(tools::RrnFromNumber(*tools::RrnToNumber("ZZZZZZZZZZZZ")), "ZZZZZZZZZZZZ");
  EXPECT_FALSE(tools::RrnToNumber("").has_value());
  EXPECT_FALSE(tools::RrnToNumber("0000000000000").has_value());
  EXPECT_FALSE(tools::RrnToNumber("00000000000-").has_value());
}

TEST(ReconcileRecord, SwitchRecordsRoundTrip) {
  sw::RequestRecord r;
  r.kind = sw::RequestKind::kHold;
  r.response_code = 51;
  r.amount_minor = 1234;
  r.currency = 408;
  r.transfer = TransferId::From(99);
  r.captured_minor = 1000;
  r.day = 20000;
  r.rrn = "0000ABCD1234";
  r.cred_key = "au/d/c/1";
  auto back = sw::ParseRequestRecord(sw::EncodeRequestRecord(r));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->kind, r.kind);
  EXPECT_EQ(back->response_code, 51);
  EXPECT_EQ(back->amount_minor, 1234u);
  EXPECT_EQ(back->transfer, r.transfer);
  EXPECT_EQ(back->captured_minor, 1000u);
  EXPECT_EQ(back->day, 20000u);
  EXPECT_EQ(back->rrn, "0000ABCD1234");
  EXPECT_EQ(back->cred_key, "au/d/c/1");
  EXPECT_FALSE(sw::ParseRequestRecord("").has_value());
  EXPECT_FALSE(sw::ParseRequestRecord(std::string(200, '\x01')).has_value());
}

// ---- Through the binary, on the ledger this test keeps open ----------------------

struct CmdResult {
  int code = -1;
  std::string out, err;
};

class ReconcileCliTest : public ReconcileTest {
 public:
  CmdResult Narae(const std::string& args) {
    const std::string out = dir_.Sub("stdout"), err = dir_.Sub("stderr");
    const std::string cmd = std::string(NARAE_BIN_DIR) + "/tools/narae " + args + " >'" + out +
                            "' 2>'" + err + "' </dev/null";
    const int rc = std::system(cmd.c_str());
    CmdResult r;
    r.code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    r.out = Slurp(out);
    r.err = Slurp(err);
    return r;
  }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_.Sub(name);
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  std::string Args(const std::string& file, const std::string& day) {
    return "reconcile --data '" + dir_.Sub("db") + "' --day " + day + " --file '" + file + "'";
  }
};

TEST_F(ReconcileCliTest, ReportsBreaksAsTableAndJsonWithExitCodes) {
  const std::string file = Write("day.csv", PlantDay());
  CmdResult t = Narae(Args(file, Date()));
  EXPECT_EQ(t.code, 1) << t.err;
  EXPECT_NE(t.out.find("BREAKS"), std::string::npos);
  for (size_t c = 0; c < tools::kBreakClassCount; ++c) {
    EXPECT_NE(t.out.find(tools::BreakClassName(static_cast<BreakClass>(c))), std::string::npos);
  }
  EXPECT_EQ(t.err, "");  // no progress when not on a terminal

  CmdResult j = Narae(Args(file, Date()) + " --json");
  EXPECT_EQ(j.code, 1) << j.err;
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["balanced"], false);
  EXPECT_EQ(doc["breaks"].size(), tools::kBreakClassCount);
  EXPECT_EQ(doc["matched"]["count"], 2);
  EXPECT_EQ(doc["matched"]["amounts"]["KPW"]["amount"], "50.00");
  EXPECT_EQ(doc["by_class"]["stale_hold"]["count"], 1);

  // The day before: nothing on either side, an empty file: exit 0.
  const std::string empty = Write("empty.csv", "rrn,amount,currency,date\n");
  CmdResult clean = Narae(Args(empty, tools::FormatDate(uint64_t{day_ - 1} * kDayNs)) + " --json");
  EXPECT_EQ(clean.code, 0) << clean.err;
  EXPECT_EQ(nlohmann::json::parse(clean.out)["balanced"], true);
}

TEST_F(ReconcileCliTest, BadInputsExitTwoWithAMessage) {
  const std::string good = Write("good.csv", "rrn,amount,currency,date\n");
  const std::string bad =
      Write("bad.csv", "rrn,amount,currency,date\n000000000001,x,KPW," + Date() + "\n");
  const std::string json = Write("rows.json", "[1]");
  struct Case {
    std::string args;
    std::string message;
  };
  const Case cases[] = {
      {Args(good, "2026-13-01"), "no such day"},
      {Args(good, "yesterday"), "YYYY-MM-DD"},
      {Args(good, "2199-01-01"), "has not begun"},
      {Args(dir_.Sub("nope.csv"), Date()), "cannot open"},
      {Args(bad, Date()), "line 2: bad amount"},
      {Args(json, Date()), "element"},
      {Args(good, Date()) + " --format xml", "unknown file format"},
      {"reconcile --data '" + dir_.Sub("none") + "' --day " + Date() + " --file '" + good + "'",
       "no ledger"},
  };
  for (const Case& c : cases) {
    CmdResult r = Narae(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
  }
  CmdResult j = Narae(Args(bad, Date()) + " --json");
  EXPECT_EQ(j.code, 2);
  EXPECT_EQ(nlohmann::json::parse(j.out)["ok"], false);
  CmdResult help = Narae("reconcile --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("--json"), std::string::npos);
}

// On a terminal, reconcile and verify draw a progress line on stderr (and
// clear it); piped, they stay quiet (checked above: stderr is empty).
std::string RunOnTerminal(const std::vector<std::string>& argv) {
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  NARAE_CHECK(pid >= 0);
  if (pid == 0) {
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;  // EIO once the child has exited
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(master);
  ::waitpid(pid, nullptr, 0);
  return out;
}

TEST_F(ReconcileCliTest, ShowsProgressOnATerminal) {
  const std::string file = Write("day.csv", PlantDay());
  const std::string narae = std::string(NARAE_BIN_DIR) + "/tools/narae";
  const std::string rec = RunOnTerminal(
      {narae, "reconcile", "--data", dir_.Sub("db"), "--day", Date(), "--file", file});
  EXPECT_NE(rec.find("switch log: 1"), std::string::npos) << rec;
  EXPECT_NE(rec.find("BREAKS"), std::string::npos) << rec;
  const std::string ver = RunOnTerminal({narae, "verify", "--data", dir_.Sub("db")});
  EXPECT_NE(ver.find("verified events"), std::string::npos) << ver;
  const std::string quiet = RunOnTerminal({narae, "verify", "--data", dir_.Sub("db"), "--json"});
  EXPECT_EQ(quiet.find("verified events"), std::string::npos) << quiet;
}

}  // namespace
}  // namespace narae::testing
