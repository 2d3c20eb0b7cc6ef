// Delivery splits over the storefront HTTP API, end to end: a real ledger in
// a temporary folder with the demo bank, the real authorizer and HTTP server
// on a loopback port, signed requests over a real socket
// (tests/switch_http_harness.hpp). A split by distance is priced by the
// merchant's delivery bands in force (docs/settlement.md), the fixed form
// still works, bad splits are refused without making a payment, and a split
// moved at capture is a "delivery" line of the merchant's settlement report.
// The share is recorded with the payment and moved by its capture whichever
// channel captures: an HTTP capture or an ISO 8583 0220 from a client on the
// real ISO server of the same process; a reversal of the capture gives the
// share back (code 111), a refund or a void does not move it.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/api.hpp"
#include "switch/authorizer.hpp"
#include "switch/bank.hpp"
#include "switch/http_server.hpp"
#include "switch/settlement.hpp"
#include "switch/switch.hpp"
#include "tests/demo_bank_fixture.hpp"
#include "tests/switch_harness.hpp"
#include "tests/switch_http_harness.hpp"
#include "tests/test_util.hpp"

namespace narae::switching {
namespace {

namespace nc = narae::crypto;
using json = nlohmann::json;

constexpr const char* kMerchant = "SOCKS001";
constexpr uint16_t kKpw = 408;

struct Answer {
  int status = 0;
  json j;
  std::string body;
  std::string Code() const {
    return j.is_object() && j.contains("error") ? j["error"]["code"].get<std::string>() : "";
  }
};

class HttpSplitTest : public ::testing::Test {
 protected:
  // The demo bank is seeded once (keys are slow to make) and copied per test.
  static void SetUpTestSuite() {
    seeded_ = new testing_bank::SeededDemoBank();
    SeedOptions so;
    so.customers = 1;
    so.limits = RiskLimits{};  // no card limits: the ledger decides
    seeded_->Seed(so);
  }
  static void TearDownTestSuite() {
    delete seeded_;
    seeded_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(seeded_ != nullptr && seeded_->ready());
    seeded_->CopyTo(dir_.path(), &keys_);
    ASSERT_NE(keys_, nullptr);
    bank_ = seeded_->bank();
    ledger::Options o;
    o.path = dir_.Sub("ledger");
    o.sync = false;
    auto l = ledger::Ledger::Open(o);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    ledger_ = std::move(*l);
    ASSERT_OK(EnsureApiTerminals(*ledger_, *keys_));
    auto a = MakeAuthorizer({ledger_.get(), keys_.get()}, "{}");
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    auth_ = std::move(*a);
    auto api = Api::Create({ledger_.get(), keys_.get(), auth_.get()}, ApiOptions{});
    ASSERT_TRUE(api.ok()) << api.status().ToString();
    api_ = std::move(*api);
    HttpServerOptions so;
    so.listen = "127.0.0.1:0";
    so.threads = 1;
    auto s = HttpServer::Start(so, api_.get(), auth_.get(), nullptr);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(*s);
    client_ = std::make_unique<harness::HttpClient>(server_->port());
    ASSERT_TRUE(client_->connected());
    ServerOptions io;  // the ISO 8583 server on the same authorizer
    io.iso_listen = "127.0.0.1:0";
    io.threads = 1;
    io.summary_interval_ms = 0;
    auto iso = IsoServer::Start(io, auth_.get(), nullptr);
    ASSERT_TRUE(iso.ok()) << iso.status().ToString();
    iso_server_ = std::move(*iso);
    iso_ = std::make_unique<harness::IsoClient>(iso_server_->port());
    ASSERT_TRUE(iso_->connected());
  }
  void TearDown() override {
    client_.reset();
    iso_.reset();
    if (iso_server_) iso_server_->Shutdown();
    if (server_) server_->Shutdown();
    if (ledger_) (void)ledger_->Close();
    server_.reset();
    iso_server_.reset();
    api_.reset();
    auth_.reset();
    ledger_.reset();
  }

  const DemoMerchant& Merchant() {
    for (const DemoMerchant& m : bank_.merchants) {
      if (m.merchant.id == kMerchant) return m;
    }
    ADD_FAILURE() << "no merchant " << kMerchant;
    return bank_.merchants[0];
  }
  const DemoCard& KpwCard() {
    for (const DemoCard& c : bank_.cards) {
      if (c.issued.card.currency == kKpw) return c;
    }
    ADD_FAILURE() << "no KPW card";
    return bank_.cards[0];
  }
  ledger::AccountId Logistics() { return bank_.config.ForCurrency(kKpw)->logistics; }
  ledger::AccountId Clearing() { return Merchant().merchant.ForCurrency(kKpw)->clearing; }
  uint64_t Credits(ledger::AccountId id) {
    std::optional<ledger::Account> a = ledger_->LookupAccount(id);
    EXPECT_TRUE(a.has_value());
    return a ? a->credits_posted : 0;
  }

  Answer Call(const std::string& method, const std::string& target, const std::string& body) {
    const std::string key = method == "POST" ? "split-" + std::to_string(++key_seq_) : "";
    auto h =
        harness::StorefrontHeaders(kMerchant, Merchant().api_secret_hex, method, target, body, key);
    std::optional<harness::HttpAnswer> r = client_->Call(method, target, body, h);
    Answer a;
    if (!r) {
      ADD_FAILURE() << method << " " << target << ": no answer";
      return a;
    }
    a.status = r->status;
    a.body = r->body;
    a.j = json::parse(r->body, nullptr, false);
    return a;
  }
  // POST /v1/payments with `split` (a JSON text; empty: none).
  Answer Pay(uint64_t amount, const std::string& split, const std::string& capture = "manual",
             const std::string& order = "order-1") {
    const DemoCard& c = KpwCard();
    std::string body =
        json{{"amount", amount},
             {"currency", "KPW"},
             {"order_ref", order},
             {"capture", capture},
             {"card",
              {{"pan", c.issued.pan}, {"expiry", c.issued.card.expiry}, {"cvv2", c.issued.cvv2}}}}
            .dump();
    if (!split.empty()) body = body.substr(0, body.size() - 1) + ",\"split\":" + split + "}";
    return Call("POST", "/v1/payments", body);
  }
  Answer Capture(const std::string& id, const std::string& body = "{}") {
    return Call("POST", "/v1/payments/" + id + "/capture", body);
  }
  // A fee schedule version with the bands "UP_TO:SHARE,..." (0 = no bound).
  void SetBands(const std::string& merchant, std::vector<DeliveryBand> bands, uint32_t bps = 0) {
    FeeSchedule f;
    f.merchant_id = merchant;
    f.currency = kKpw;
    f.bps = bps;
    f.delivery_bands = std::move(bands);
    Result<FeeSchedule> r = SetFeeSchedule(*ledger_, f);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // ---- ISO 8583 follow-ups of a payment made over HTTP ----
  // A request from the payment's terminal (the API's virtual terminal, no
  // MAC) naming the original by field 90, as an ISO client sends it with the
  // "iso8583" object of the payment.
  Message FollowUp(const std::string& mti, const std::string& orig_mti,
                   const std::string& orig_stan, const std::string& orig_field7, uint64_t amount) {
    Message m(mti);
    m.Set(3, "000000");
    m.Set(4, FormatAmount(amount).value());
    m.Set(49, "408");
    OriginalData od{orig_mti, orig_stan, orig_field7, std::string(11, '0'), std::string(11, '0')};
    m.Set(90, FormatOriginalData(od).value());
    harness::DemoTerminal t;
    t.id = VirtualTerminalId(kMerchant);
    t.merchant_id = kMerchant;
    t.field42 = kMerchant;
    t.field42.resize(15, ' ');
    harness::SetHeader(&m, t, ++stan_);
    return m;
  }
  // A card payment sent by an ISO 8583 client from the merchant's virtual
  // terminal, with `extra48` appended to field 48 (e.g. a DLVF element).
  Message IsoPayment(const std::string& mti, uint64_t amount, const std::string& extra48) {
    const DemoCard& c = KpwCard();
    Message m(mti);
    m.Set(2, c.issued.pan);
    m.Set(3, "000000");
    m.Set(4, FormatAmount(amount).value());
    m.Set(14, c.issued.card.expiry);
    m.Set(48, BuildField48(c.issued.cvv2, "iso-order") + extra48);
    m.Set(49, "408");
    harness::DemoTerminal t;
    t.id = VirtualTerminalId(kMerchant);
    t.field42 = kMerchant;
    t.field42.resize(15, ' ');
    harness::SetHeader(&m, t, ++stan_);
    return m;
  }
  std::optional<Message> IsoCall(const Message& m) {
    return iso_->Call(harness::SignFrame(m, nc::SecretBytes{}));
  }
  Message Of(const Answer& payment, const std::string& mti, uint64_t amount) {
    const json& iso = payment.j["iso8583"];
    return FollowUp(mti, iso["mti"], iso["stan"], iso["transmission_datetime"], amount);
  }
  // Field 95: the amount that stays (a partial reversal).
  static std::string Field95(uint64_t keep) {
    return FormatDigits(keep, 12).value() + std::string(12, '0') + "C00000000C00000000";
  }
  std::string IsoRc(const Message& m) {
    std::optional<Message> r = iso_->Call(harness::SignFrame(m, nc::SecretBytes{}));
    if (!r) {
      ADD_FAILURE() << "no ISO answer to " << m.mti();
      return "";
    }
    return std::string(r->Get(39));
  }
  ledger::TransferId PaymentTransfer(const Answer& p) {
    std::optional<PaymentRecord> rec =
        LookupPaymentByRrn(*ledger_, p.j["id"].get<std::string>().substr(4));
    EXPECT_TRUE(rec.has_value());
    return rec ? rec->transfer : ledger::TransferId{};
  }
  static uint64_t Identity(const MerchantSettlement& m, bool in) {
    return in ? m.captures_minor + m.delivery_returned_minor + m.recovery_minor
              : m.refunds_minor + m.payout_minor + m.fees_minor + m.delivery_minor;
  }

  static inline testing_bank::SeededDemoBank* seeded_ = nullptr;
  testing::TempDir dir_;
  std::unique_ptr<nc::KeyStore> keys_;
  std::unique_ptr<ledger::Ledger> ledger_;
  DemoBank bank_;
  std::unique_ptr<IsoHandler> auth_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<harness::HttpClient> client_;
  std::unique_ptr<IsoServer> iso_server_;
  std::unique_ptr<harness::IsoClient> iso_;
  uint64_t key_seq_ = 0;
  uint32_t stan_ = 500000;
};

// The split recorded with an HTTP payment: PaymentInfo version 2 (kind
// kAtCapture + the part moved), refused when inconsistent.
TEST(SplitAtCapture, PaymentInfoVersion2RoundTripsAndIsChecked) {
  PaymentInfo p{"order-9", "000000000009", {SplitKind::kAtCapture, 700, 0, 300}};
  ASSERT_OK(ValidatePaymentInfo(p));
  std::string enc = EncodePaymentInfo(p);
  EXPECT_EQ(enc[0], 2);
  Result<PaymentInfo> back = DecodePaymentInfo(enc);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p);
  EXPECT_FALSE(DecodePaymentInfo(enc.substr(0, enc.size() - 1)).ok());
  std::string v1 = enc;
  v1[0] = 1;  // a version 1 record cannot hold this kind
  EXPECT_FALSE(DecodePaymentInfo(v1).ok());
  PaymentInfo fixed{"o", "", {SplitKind::kFixed, 700, 0, 0}};
  std::string f = EncodePaymentInfo(fixed);
  EXPECT_EQ(f[0], 1);  // the other kinds stay version 1
  f[0] = 2;
  EXPECT_FALSE(DecodePaymentInfo(f).ok());
  PaymentInfo bad = p;
  bad.split.moved_minor = 701;  // more than the share
  EXPECT_FALSE(ValidatePaymentInfo(bad).ok());
  bad.split = {SplitKind::kAtCapture, 0, 0, 0};
  EXPECT_FALSE(ValidatePaymentInfo(bad).ok());
  bad.split = {SplitKind::kAtCapture, 700, 5, 0};
  EXPECT_FALSE(ValidatePaymentInfo(bad).ok());
  bad.split = {SplitKind::kFixed, 700, 0, 1};  // only a share at capture is moved
  EXPECT_FALSE(ValidatePaymentInfo(bad).ok());
}

// The default table shape: 0-10 km, 10-50 km, over 50 km.
const std::vector<DeliveryBand> kDefaultBands = {{10'000, 500}, {50'000, 1'500}, {0, 4'000}};

TEST_F(HttpSplitTest, DistanceIsPricedByTheBandInForceAndMovedAtCapture) {
  SetBands("*", kDefaultBands);
  const uint64_t logistics0 = Credits(Logistics());
  // Band edges: up_to_m is inclusive; 0 is the first band; past the last
  // bounded band is the open one.
  const std::pair<uint32_t, uint64_t> cases[] = {{0, 500},        {10'000, 500},
                                                 {10'001, 1'500}, {50'000, 1'500},
                                                 {50'001, 4'000}, {20'000'000, 4'000}};
  uint64_t moved = 0;
  for (const auto& [distance, share] : cases) {
    Answer p = Pay(10'000, "{\"delivery_distance_m\":" + std::to_string(distance) + "}");
    ASSERT_EQ(p.status, 201) << p.body;
    EXPECT_EQ(p.j["split"]["delivery_fee"], share) << distance;
    EXPECT_EQ(p.j["split"]["delivery_distance_m"], distance);
    // A hold moves nothing yet.
    EXPECT_EQ(Credits(Logistics()), logistics0 + moved);
    const std::string id = p.j["id"];
    Answer c = Capture(id);
    ASSERT_EQ(c.status, 200) << c.body;
    moved += share;
    EXPECT_EQ(Credits(Logistics()), logistics0 + moved) << distance;
    Answer g = Call("GET", "/v1/payments/" + id, "");
    EXPECT_EQ(g.j["split"]["delivery_distance_m"], distance);
    EXPECT_EQ(g.j["split"]["delivery_fee"], share);
  }
  // The merchant's own schedule beats the default; an automatic capture
  // moves the share at once.
  SetBands(kMerchant, {{10'000, 700}, {0, 900}});
  Answer a = Pay(10'000, R"({"delivery_distance_m": 12000})", "automatic");
  ASSERT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(a.j["split"]["delivery_fee"], 900);
  EXPECT_EQ(Credits(Logistics()), logistics0 + moved + 900);
}

TEST_F(HttpSplitTest, ShareIsFixedAtAuthorizationAndCappedByAPartialCapture) {
  SetBands("*", kDefaultBands);
  Answer p = Pay(10'000, R"({"delivery_distance_m": 30000})");
  ASSERT_EQ(p.status, 201) << p.body;
  // A new version after the authorization does not reprice it.
  SetBands("*", {{0, 9'000}});
  const uint64_t logistics0 = Credits(Logistics());
  Answer c = Capture(p.j["id"], R"({"amount": 1000})");
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(Credits(Logistics()), logistics0 + 1'000);  // min(1500, captured 1000)
  // The new version prices the next payment.
  Answer q = Pay(10'000, R"({"delivery_distance_m": 30000})");
  ASSERT_EQ(q.status, 201) << q.body;
  EXPECT_EQ(q.j["split"]["delivery_fee"], 9'000);
}

TEST_F(HttpSplitTest, FixedAmountFormStillWorks) {
  const uint64_t logistics0 = Credits(Logistics());
  Answer p = Pay(5'000, R"({"delivery_fee": 800})", "automatic");
  ASSERT_EQ(p.status, 201) << p.body;
  EXPECT_EQ(p.j["split"]["delivery_fee"], 800);
  EXPECT_FALSE(p.j["split"].contains("delivery_distance_m"));
  EXPECT_EQ(Credits(Logistics()), logistics0 + 800);
  // An amount as a string of digits, as for "amount".
  Answer s = Pay(5'000, R"({"delivery_fee": "5000"})", "automatic");
  ASSERT_EQ(s.status, 201) << s.body;
  EXPECT_EQ(Credits(Logistics()), logistics0 + 5'800);
}

// A frozen logistics account: the capture stands, the share stays with the
// merchant and nothing is recorded as moved (what `narae reconcile` reports
// as delivery_share_not_moved, tests/tools_reconcile_test.cpp); once the
// account is unfrozen the next capture moves its share again.
TEST_F(HttpSplitTest, FrozenLogisticsAccountLeavesTheShareUnmovedAndTheCaptureStanding) {
  const uint64_t logistics0 = Credits(Logistics());
  ledger::AccountChange freeze;
  freeze.id = Logistics();
  freeze.action = ledger::AccountAction::kFreeze;
  Result<std::vector<ledger::ChangeOutcome>> f = ledger_->ChangeAccounts({&freeze, 1});
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->at(0).result, ledger::ChangeAccountResult::kOk);
  Answer p = Pay(5'000, R"({"delivery_fee": 800})", "automatic");
  ASSERT_EQ(p.status, 201) << p.body;
  EXPECT_EQ(p.j["status"], "captured");
  EXPECT_EQ(Credits(Logistics()), logistics0);
  std::optional<std::string> info = ledger_->GetAux(PaymentInfoKey(PaymentTransfer(p)));
  ASSERT_TRUE(info.has_value());
  Result<PaymentInfo> decoded = DecodePaymentInfo(*info);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->split.kind, SplitKind::kAtCapture);
  EXPECT_EQ(decoded->split.amount_minor, 800u);
  EXPECT_EQ(decoded->split.moved_minor, 0u);
  freeze.action = ledger::AccountAction::kUnfreeze;
  f = ledger_->ChangeAccounts({&freeze, 1});
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->at(0).result, ledger::ChangeAccountResult::kOk);
  Answer q = Pay(5'000, R"({"delivery_fee": 800})", "automatic");
  ASSERT_EQ(q.status, 201) << q.body;
  EXPECT_EQ(Credits(Logistics()), logistics0 + 800);
}

TEST_F(HttpSplitTest, BadSplitsAreRefusedAndMakeNoPayment) {
  SetBands("*", {{10'000, 500}, {50'000, 1'500}});  // nothing over 50 km
  const uint64_t logistics0 = Credits(Logistics());
  const uint64_t clearing0 = Credits(Clearing());
  const ledger::AccountId customer = KpwCard().issued.card.account_id;
  const uint64_t pending0 = ledger_->LookupAccount(customer)->debits_pending;
  const char* const kBad400[] = {
      R"({"delivery_distance_m": -1})",
      R"({"delivery_distance_m": 1.5})",
      R"({"delivery_distance_m": 20000001})",
      R"({"delivery_distance_m": 18446744073709551615})",
      R"({"delivery_distance_m": 1e30})",
      R"({"delivery_distance_m": "100"})",
      R"({"delivery_distance_m": null})",
      R"({"delivery_fee": 100, "delivery_distance_m": 100})",
      R"({"delivery_fee": 0})",
      R"({"delivery_fee": -5})",
      R"({"delivery_fee": 1001})",  // above the amount
      R"({"delivery_fee": "12x"})",
      R"({"distance_m": 100})",
      R"({})",
      R"([])",
      R"(100)",
  };
  for (const char* split : kBad400) {
    Answer a = Pay(1'000, split);
    EXPECT_EQ(a.status, 400) << split << " " << a.body;
    EXPECT_EQ(a.Code(), "invalid_request") << split;
  }
  // Well-formed, but the bands cannot price it.
  Answer far = Pay(1'000, R"({"delivery_distance_m": 60000})");
  EXPECT_EQ(far.status, 422) << far.body;
  EXPECT_EQ(far.Code(), "no_delivery_band");
  Answer big = Pay(1'000, R"({"delivery_distance_m": 20000})");  // share 1500 > 1000
  EXPECT_EQ(big.status, 422) << big.body;
  EXPECT_EQ(big.Code(), "delivery_share_exceeds_amount");
  EXPECT_EQ(Credits(Logistics()), logistics0);
  EXPECT_EQ(Credits(Clearing()), clearing0);
  EXPECT_EQ(ledger_->LookupAccount(customer)->debits_pending, pending0);
}

TEST_F(HttpSplitTest, DistanceWithoutAScheduleIsRefused) {
  Answer a = Pay(1'000, R"({"delivery_distance_m": 100})");
  EXPECT_EQ(a.status, 422) << a.body;
  EXPECT_EQ(a.Code(), "no_delivery_band");
  // A schedule without bands prices nothing either.
  SetBands(kMerchant, {}, 100);
  Answer b = Pay(1'000, R"({"delivery_distance_m": 100})");
  EXPECT_EQ(b.status, 422) << b.body;
  EXPECT_EQ(b.Code(), "no_delivery_band");
}

// A split made over HTTP is a "delivery" line of the merchant's settlement
// report (CSV and JSON) next to a PaymentInfo split (as the ISO path records
// it, paid at settlement), and the day's identity holds exactly.
TEST_F(HttpSplitTest, HttpSplitIsADeliveryLineOfTheSettlementReport) {
  SetBands("*", kDefaultBands, 100);  // 1 % fee per capture
  Answer a = Pay(10'000, R"({"delivery_distance_m": 25000})", "automatic", "order-A");
  ASSERT_EQ(a.status, 201) << a.body;
  Answer b = Pay(8'000, R"({"delivery_fee": 700})", "manual", "order-B");
  ASSERT_EQ(b.status, 201) << b.body;
  ASSERT_EQ(Capture(b.j["id"], R"({"amount": 6000})").status, 200);
  Answer c = Pay(5'000, "", "automatic", "order-C");
  ASSERT_EQ(c.status, 201) << c.body;
  Answer d = Pay(3'000, R"({"delivery_fee": 400})", "manual", "order-D");
  ASSERT_EQ(d.status, 201) << d.body;
  ASSERT_EQ(Call("POST", "/v1/payments/" + d.j["id"].get<std::string>() + "/void", "{}").status,
            200);
  Answer r = Call("POST", "/v1/payments/" + a.j["id"].get<std::string>() + "/refunds",
                  R"({"amount": 2000})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto payment = [&](const Answer& p) {
    std::optional<PaymentRecord> rec =
        LookupPaymentByRrn(*ledger_, p.j["id"].get<std::string>().substr(4));
    EXPECT_TRUE(rec.has_value());
    return rec ? rec->transfer : ledger::TransferId{};
  };
  // c carries a delivery share the way the ISO 8583 path records one.
  const std::string rrn_c = c.j["id"].get<std::string>().substr(4);
  ASSERT_OK(PutPaymentInfo(*ledger_, payment(c),
                           PaymentInfo{"order-C", rrn_c, {SplitKind::kFixed, 300, 0}}));
  const uint64_t logistics0 = Credits(Logistics());
  Result<DayRecord> day = CloseDay(*ledger_, std::nullopt);
  ASSERT_TRUE(day.ok()) << day.status().ToString();

  Result<MerchantSettlement> m = ComputeMerchantDay(*ledger_, day->day, kMerchant, kKpw);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->captures_minor, 10'000u + 6'000 + 5'000);
  EXPECT_EQ(m->refunds_minor, 2'000u);  // the splits are not refunds
  EXPECT_EQ(m->fees_minor, 100u + 60 + 50);
  EXPECT_EQ(m->delivery_minor, 1'500u + 700 + 300);
  EXPECT_EQ(m->delivery_at_capture_minor, 1'500u + 700);
  EXPECT_EQ(m->payout_minor, 21'000u - 2'000 - 210 - 2'500);
  EXPECT_EQ(m->captures_minor + m->recovery_minor,
            m->refunds_minor + m->payout_minor + m->fees_minor + m->delivery_minor);
  std::vector<const SettlementLine*> deliveries;
  for (const SettlementLine& l : m->lines) {
    if (l.kind == LineKind::kDelivery) deliveries.push_back(&l);
  }
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_EQ(deliveries[0]->amount_minor, 1'500u);
  EXPECT_EQ(deliveries[0]->payment, payment(a));
  EXPECT_EQ(deliveries[0]->order_ref, "order-A");
  EXPECT_EQ(deliveries[0]->rrn, a.j["id"].get<std::string>().substr(4));
  EXPECT_EQ(deliveries[0]->code, kCodeDeliveryAtCapture);
  EXPECT_EQ(deliveries[1]->amount_minor, 700u);
  EXPECT_EQ(deliveries[1]->payment, payment(b));
  EXPECT_EQ(deliveries[1]->order_ref, "order-B");

  const std::string csv = SettlementReportCsv(*m, std::nullopt);
  const std::string line_a = "delivery," + deliveries[0]->transfer.ToHex() + "," +
                             payment(a).ToHex() + "," + std::to_string(deliveries[0]->timestamp) +
                             ",110,order-A," + deliveries[0]->rrn + ",1500,0,,0,1500\n";
  EXPECT_NE(csv.find(line_a), std::string::npos) << csv;
  EXPECT_NE(csv.find("total,delivery_minor,2500\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("total,delivery_at_capture_minor,2200\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("total,refunds_minor,2000\n"), std::string::npos) << csv;
  const json rep = json::parse(SettlementReportJson(*m, std::nullopt));
  size_t json_deliveries = 0;
  for (const json& l : rep["lines"]) {
    if (l["type"] == "delivery") {
      ++json_deliveries;
      EXPECT_EQ(l["delivery_minor"], l["amount_minor"]);
    }
  }
  EXPECT_EQ(json_deliveries, 2u);
  EXPECT_EQ(rep["totals"]["delivery_at_capture_minor"], 2'200);

  // Settling pays the logistics office only what was not paid at capture,
  // and empties the clearing account.
  Result<SettleSummary> s = SettleDay(*ledger_, day->day, {});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->settled.size(), 1u);
  EXPECT_EQ(s->settled[0].payout_minor, m->payout_minor);
  EXPECT_EQ(Credits(Logistics()), logistics0 + 300);
  std::optional<ledger::Account> clearing = ledger_->LookupAccount(Clearing());
  ASSERT_TRUE(clearing.has_value());
  EXPECT_EQ(clearing->credits_posted, clearing->debits_posted);
  EXPECT_EQ(clearing->credits_pending, 0u);
  // The stored record says the same; a re-run posts nothing.
  Result<SettleSummary> again = SettleDay(*ledger_, day->day, {});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->settled.empty());
  ASSERT_EQ(again->already_settled.size(), 1u);
  EXPECT_EQ(again->already_settled[0].delivery_at_capture_minor, 2'200u);
}

// A hold made over HTTP with a split and completed by an ISO 8583 0220
// moves its share to the logistics office in the 0220's transaction, capped
// by a partial completion; a retransmitted 0220 moves nothing again, nor
// does an HTTP capture after it; the report and the settlement count the
// shares as paid at capture and the identity holds.
TEST_F(HttpSplitTest, IsoCompletionOfAnHttpHoldMovesTheShare) {
  SetBands("*", kDefaultBands, 100);  // 1 % fee per capture
  const uint64_t logistics0 = Credits(Logistics());
  Answer a = Pay(10'000, R"({"delivery_distance_m": 25000})", "manual", "order-A");  // 1500
  ASSERT_EQ(a.status, 201) << a.body;
  Answer b = Pay(8'000, R"({"delivery_fee": 700})", "manual", "order-B");
  ASSERT_EQ(b.status, 201) << b.body;
  // The split is recorded with the hold, nothing moved yet.
  Result<PaymentInfo> info = DecodePaymentInfo(
      ledger_->GetAux(PaymentInfoKey(PaymentTransfer(a))).value_or(std::string()));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->split, (DeliverySplit{SplitKind::kAtCapture, 1'500, 0, 0}));
  EXPECT_EQ(info->order_ref, "order-A");
  EXPECT_EQ(Credits(Logistics()), logistics0);

  const Message complete_a = Of(a, "0220", 10'000);
  ASSERT_EQ(IsoRc(complete_a), "00");
  EXPECT_EQ(Credits(Logistics()), logistics0 + 1'500);
  ASSERT_EQ(IsoRc(complete_a), "00");  // a retransmission: answered from its record
  EXPECT_EQ(Credits(Logistics()), logistics0 + 1'500);
  ASSERT_EQ(IsoRc(Of(b, "0220", 500)), "00");  // partial: min(700, 500)
  EXPECT_EQ(Credits(Logistics()), logistics0 + 2'000);
  Answer again = Capture(b.j["id"]);
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_EQ(Credits(Logistics()), logistics0 + 2'000);
  info = DecodePaymentInfo(*ledger_->GetAux(PaymentInfoKey(PaymentTransfer(b))));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->split.moved_minor, 500u);
  Answer g = Call("GET", "/v1/payments/" + a.j["id"].get<std::string>(), "");
  EXPECT_EQ(g.j["status"], "captured") << g.body;

  Result<DayRecord> day = CloseDay(*ledger_, std::nullopt);
  ASSERT_TRUE(day.ok()) << day.status().ToString();
  Result<MerchantSettlement> m = ComputeMerchantDay(*ledger_, day->day, kMerchant, kKpw);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->captures_minor, 10'500u);
  EXPECT_EQ(m->fees_minor, 100u + 5);
  EXPECT_EQ(m->delivery_minor, 2'000u);
  EXPECT_EQ(m->delivery_at_capture_minor, 2'000u);
  EXPECT_EQ(m->refunds_minor, 0u);
  EXPECT_EQ(m->payout_minor, 10'500u - 105 - 2'000);
  EXPECT_EQ(Identity(*m, true), Identity(*m, false));
  std::vector<const SettlementLine*> deliveries;
  for (const SettlementLine& l : m->lines) {
    if (l.kind == LineKind::kDelivery) deliveries.push_back(&l);
    if (l.kind == LineKind::kCapture) {
      EXPECT_EQ(l.delivery_minor, 0u);  // paid at capture
    }
  }
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_EQ(deliveries[0]->amount_minor, 1'500u);
  EXPECT_EQ(deliveries[0]->payment, PaymentTransfer(a));
  EXPECT_EQ(deliveries[0]->order_ref, "order-A");
  EXPECT_EQ(deliveries[0]->rrn, a.j["id"].get<std::string>().substr(4));
  EXPECT_EQ(deliveries[1]->amount_minor, 500u);
  EXPECT_EQ(deliveries[1]->order_ref, "order-B");
  const std::string csv = SettlementReportCsv(*m, std::nullopt);
  EXPECT_NE(csv.find("total,delivery_at_capture_minor,2000\n"), std::string::npos) << csv;

  Result<SettleSummary> s = SettleDay(*ledger_, day->day, {});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->settled.size(), 1u);
  EXPECT_EQ(Credits(Logistics()), logistics0 + 2'000);  // nothing paid twice
  std::optional<ledger::Account> clearing = ledger_->LookupAccount(Clearing());
  ASSERT_TRUE(clearing.has_value());
  EXPECT_EQ(clearing->credits_posted, clearing->debits_posted);
}

// What becomes of a share after its capture, over both channels: a refund
// keeps it with the logistics office (the delivery happened), a reversal of
// the capture gives back what no longer stands captured (a partial reversal
// down to the share's cap keeps it), a void of the hold never moved it, and
// a hold replaced by a partial ISO reversal keeps its split for the capture.
// The day's settlement counts the returns and the identity holds.
TEST_F(HttpSplitTest, ReversalGivesTheShareBackARefundDoesNot) {
  auto returned = [&] {
    std::optional<ledger::Account> a = ledger_->LookupAccount(Logistics());
    return a ? a->debits_posted : 0;
  };
  const uint64_t logistics0 = Credits(Logistics()) - returned();
  // What the logistics office holds (credits less the shares given back).
  auto logistics = [&] { return Credits(Logistics()) - returned() - logistics0; };
  const uint64_t returned0 = returned();
  // 1. HTTP capture, then an HTTP refund: the share stays.
  Answer h1 = Pay(10'000, R"({"delivery_fee": 1500})", "manual", "order-1");
  ASSERT_EQ(h1.status, 201) << h1.body;
  ASSERT_EQ(Capture(h1.j["id"]).status, 200);
  EXPECT_EQ(logistics(), 1'500u);
  Answer r1 = Call("POST", "/v1/payments/" + h1.j["id"].get<std::string>() + "/refunds",
                   R"({"amount": 4000})");
  ASSERT_EQ(r1.status, 201) << r1.body;
  EXPECT_EQ(logistics(), 1'500u);
  // 2. ISO 0220, a partial ISO reversal of it down to 300 (the share follows:
  //    400 back), then the rest reversed (300 back).
  Answer h2 = Pay(6'000, R"({"delivery_fee": 700})", "manual", "order-2");
  ASSERT_EQ(h2.status, 201) << h2.body;
  const Message c2 = Of(h2, "0220", 6'000);
  ASSERT_EQ(IsoRc(c2), "00");
  EXPECT_EQ(logistics(), 2'200u);
  Message partial =
      FollowUp("0400", "0220", std::string(c2.Get(11)), std::string(c2.Get(7)), 6'000);
  partial.Set(95, Field95(300));
  ASSERT_EQ(IsoRc(partial), "00");
  EXPECT_EQ(logistics(), 1'800u);
  ASSERT_EQ(IsoRc(FollowUp("0400", "0220", std::string(c2.Get(11)), std::string(c2.Get(7)), 300)),
            "00");
  EXPECT_EQ(logistics(), 1'500u);
  EXPECT_EQ(returned() - returned0, 700u);
  // 3. An automatic HTTP purchase reversed over ISO: its share comes back.
  Answer p3 = Pay(5'000, R"({"delivery_fee": 800})", "automatic", "order-3");
  ASSERT_EQ(p3.status, 201) << p3.body;
  EXPECT_EQ(logistics(), 2'300u);
  ASSERT_EQ(IsoRc(Of(p3, "0400", 5'000)), "00");
  EXPECT_EQ(logistics(), 1'500u);
  // 4. A voided hold never moved its share.
  Answer h4 = Pay(3'000, R"({"delivery_fee": 400})", "manual", "order-4");
  ASSERT_EQ(h4.status, 201) << h4.body;
  ASSERT_EQ(Call("POST", "/v1/payments/" + h4.j["id"].get<std::string>() + "/void", "{}").status,
            200);
  EXPECT_EQ(logistics(), 1'500u);
  // 5. A hold partially reversed over ISO (4000 -> 2500) and captured over
  //    HTTP: the replacement hold carries the split.
  Answer h5 = Pay(4'000, R"({"delivery_fee": 600})", "manual", "order-5");
  ASSERT_EQ(h5.status, 201) << h5.body;
  Message shrink = Of(h5, "0400", 4'000);
  shrink.Set(95, Field95(2'500));
  ASSERT_EQ(IsoRc(shrink), "00");
  ASSERT_EQ(Capture(h5.j["id"], R"({"amount": 2500})").status, 200);
  EXPECT_EQ(logistics(), 2'100u);

  Result<DayRecord> day = CloseDay(*ledger_, std::nullopt);
  ASSERT_TRUE(day.ok()) << day.status().ToString();
  Result<MerchantSettlement> m = ComputeMerchantDay(*ledger_, day->day, kMerchant, kKpw);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->captures_minor, 10'000u + 6'000 + 5'000 + 2'500);
  EXPECT_EQ(m->refunds_minor, 4'000u + 5'700 + 300 + 5'000);  // refund and reversals
  EXPECT_EQ(m->delivery_minor, 1'500u + 700 + 800 + 600);
  EXPECT_EQ(m->delivery_at_capture_minor, m->delivery_minor);
  EXPECT_EQ(m->delivery_returned_minor, 400u + 300 + 800);
  EXPECT_EQ(Identity(*m, true), Identity(*m, false));
  size_t returns = 0;
  for (const SettlementLine& l : m->lines) {
    if (l.kind != LineKind::kDeliveryReturn) continue;
    ++returns;
    EXPECT_EQ(l.code, kCodeDeliveryReturned);
    EXPECT_TRUE(l.order_ref == "order-2" || l.order_ref == "order-3") << l.order_ref;
  }
  EXPECT_EQ(returns, 3u);
  for (const SettlementLine& l : m->lines) {
    if (l.kind == LineKind::kDelivery && l.amount_minor == 600) {
      EXPECT_EQ(l.order_ref, "order-5");  // found by the replacement hold
    }
  }
  const json rep = json::parse(SettlementReportJson(*m, std::nullopt));
  EXPECT_EQ(rep["totals"]["delivery_returned_minor"], 1'500);
  Result<SettleSummary> s = SettleDay(*ledger_, day->day, {});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->settled.size(), 1u);
  EXPECT_EQ(s->settled[0].payout_minor, m->payout_minor);
  EXPECT_EQ(logistics(), 2'100u);  // 1500 + 600: every other share went back
  std::optional<ledger::Account> clearing = ledger_->LookupAccount(Clearing());
  ASSERT_TRUE(clearing.has_value());
  EXPECT_EQ(clearing->credits_posted, clearing->debits_posted);
  Result<MerchantSettlement> stored =
      DecodeMerchantSettlement(*ledger_->GetAux(SettledKey(day->day, kKpw, kMerchant)));
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->delivery_returned_minor, 1'500u);
}

// A payment made over ISO 8583 carries its split in field 48 (DLVF: an
// amount, DLVD: a distance priced by the bands in force): recorded with the
// payment and moved at capture exactly as an HTTP split; bad elements are
// declined and move nothing.
TEST_F(HttpSplitTest, IsoPaymentsCarryASplitInField48) {
  SetBands("*", kDefaultBands);
  const uint64_t logistics0 = Credits(Logistics());
  // A purchase is its own capture: the share moves at once.
  std::optional<Message> p = IsoCall(IsoPayment("0200", 5'000, "DLVF03300"));
  ASSERT_TRUE(p.has_value());
  ASSERT_EQ(p->Get(39), "00");
  EXPECT_EQ(Credits(Logistics()), logistics0 + 300);
  // A hold by distance (30 km: 1500) moves min(1500, 1000) at its 0220.
  const Message hold = IsoPayment("0100", 8'000, "DLVD0530000");
  std::optional<Message> h = IsoCall(hold);
  ASSERT_TRUE(h.has_value());
  ASSERT_EQ(h->Get(39), "00");
  std::optional<PaymentRecord> rec = LookupPaymentByRrn(*ledger_, h->Get(37));
  ASSERT_TRUE(rec.has_value());
  Result<PaymentInfo> info =
      DecodePaymentInfo(ledger_->GetAux(PaymentInfoKey(rec->transfer)).value_or(std::string()));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->split, (DeliverySplit{SplitKind::kAtCapture, 1'500, 0, 0}));
  EXPECT_EQ(info->order_ref, "iso-order");
  EXPECT_EQ(Credits(Logistics()), logistics0 + 300);
  ASSERT_EQ(
      IsoRc(FollowUp("0220", "0100", std::string(hold.Get(11)), std::string(hold.Get(7)), 1'000)),
      "00");
  EXPECT_EQ(Credits(Logistics()), logistics0 + 1'300);
  // Bad splits: declined, nothing moved, no hold.
  const ledger::AccountId customer = KpwCard().issued.card.account_id;
  const uint64_t pending0 = ledger_->LookupAccount(customer)->debits_pending;
  const std::pair<const char*, const char*> bad[] = {
      {"DLVF03300DLVD0210", "30"},  // both
      {"DLVF023x", "30"},           // not digits
      {"DLVD0820000001", "30"},     // beyond 20,000 km
      {"DLVF010", "13"},            // a share of 0
      {"DLVF045001", "13"},         // above the amount (5000)
  };
  for (const auto& [element, code] : bad) {
    std::optional<Message> r = IsoCall(IsoPayment("0100", 5'000, element));
    ASSERT_TRUE(r.has_value()) << element;
    EXPECT_EQ(r->Get(39), code) << element;
  }
  SetBands(kMerchant, {{10'000, 500}});  // nothing beyond 10 km for this merchant
  std::optional<Message> far = IsoCall(IsoPayment("0200", 5'000, "DLVD0520000"));
  ASSERT_TRUE(far.has_value());
  EXPECT_EQ(far->Get(39), "12");
  EXPECT_EQ(Credits(Logistics()), logistics0 + 1'300);
  EXPECT_EQ(ledger_->LookupAccount(customer)->debits_pending, pending0);
}

// Randomized days against a model: holds with splits captured over HTTP or
// ISO (partially or not) or voided, then refunded and/or reversed (partially
// or not) in a random order. The logistics office ends with exactly
// sum(min(share, captured - reversed)), and the settled day's identity
// (captures + returned + recovery = refunds + payout + fees + delivery)
// holds with clearing emptied. NARAE_SPLIT_ROUNDS scales it (default 16).
TEST_F(HttpSplitTest, RandomizedSplitsMatchTheModel) {
  SetBands("*", kDefaultBands, 150);  // 1.5 % fee
  const uint32_t rounds = harness::EnvOr("NARAE_SPLIT_ROUNDS", 16);
  std::mt19937_64 rng(20261129);
  auto pick = [&](uint64_t lo, uint64_t hi) { return lo + rng() % (hi - lo + 1); };
  auto held = [&] {
    std::optional<ledger::Account> a = ledger_->LookupAccount(Logistics());
    return a ? a->credits_posted - a->debits_posted : 0;
  };
  const uint64_t logistics0 = held();
  uint64_t expect_share = 0, expect_refunds = 0, expect_captures = 0;
  for (uint32_t i = 0; i < rounds; ++i) {
    const uint64_t amount = pick(1'000, 9'000);
    const uint64_t share = pick(1, amount / 2);
    Answer h = Pay(amount, "{\"delivery_fee\":" + std::to_string(share) + "}", "manual",
                   "rnd-" + std::to_string(i));
    ASSERT_EQ(h.status, 201) << h.body;
    const std::string id = h.j["id"];
    if (rng() % 5 == 0) {
      ASSERT_EQ(Call("POST", "/v1/payments/" + id + "/void", "{}").status, 200);
      continue;
    }
    const uint64_t captured = pick(1, amount);
    Message completion;
    const bool iso = rng() % 2 == 0;
    if (iso) {
      completion = Of(h, "0220", captured);
      ASSERT_EQ(IsoRc(completion), "00");
    } else {
      ASSERT_EQ(Capture(id, "{\"amount\":" + std::to_string(captured) + "}").status, 200);
    }
    expect_captures += captured;
    uint64_t refunded = 0, reversed = 0;
    const bool refund_first = rng() % 2 == 0;
    auto refund = [&] {
      const uint64_t standing = captured - refunded - reversed;
      if (standing == 0 || rng() % 2 == 0) return;
      const uint64_t r = pick(1, standing);
      Answer a =
          Call("POST", "/v1/payments/" + id + "/refunds", "{\"amount\":" + std::to_string(r) + "}");
      ASSERT_EQ(a.status, 201) << a.body;
      refunded += r;
    };
    auto reverse = [&] {
      const uint64_t standing = captured - refunded - reversed;
      if (standing == 0 || rng() % 2 == 0) return;
      const uint64_t keep = rng() % 2 ? 0 : pick(0, standing - 1);
      // A reversal of the 0220 (ISO) or of the 0100 once posted (HTTP capture).
      Message m = iso ? FollowUp("0400", "0220", std::string(completion.Get(11)),
                                 std::string(completion.Get(7)), captured)
                      : Of(h, "0400", amount);
      if (keep != 0) m.Set(95, Field95(keep));
      ASSERT_EQ(IsoRc(m), "00");
      reversed += standing - keep;
    };
    if (refund_first) {
      refund();
      reverse();
    } else {
      reverse();
      refund();
    }
    expect_refunds += refunded + reversed;
    expect_share += std::min(share, captured - reversed);
  }
  EXPECT_EQ(held() - logistics0, expect_share);
  Result<DayRecord> day = CloseDay(*ledger_, std::nullopt);
  ASSERT_TRUE(day.ok()) << day.status().ToString();
  Result<SettleSummary> s = SettleDay(*ledger_, day->day, {});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_EQ(s->settled.size(), 1u);
  const MerchantSettlement& m = s->settled[0];
  EXPECT_EQ(m.captures_minor, expect_captures);
  EXPECT_EQ(m.refunds_minor, expect_refunds);
  EXPECT_EQ(m.delivery_at_capture_minor - m.delivery_returned_minor, expect_share);
  EXPECT_EQ(Identity(m, true), Identity(m, false));
  EXPECT_TRUE(m.payout_minor == 0 || m.recovery_minor == 0);
  EXPECT_EQ(held() - logistics0, expect_share);  // settlement paid no share twice
  std::optional<ledger::Account> clearing = ledger_->LookupAccount(Clearing());
  ASSERT_TRUE(clearing.has_value());
  EXPECT_EQ(clearing->credits_posted, clearing->debits_posted);
}

}  // namespace
}  // namespace narae::switching
