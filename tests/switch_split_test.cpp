// Delivery splits over the storefront HTTP API, end to end: a real ledger in
// a temporary folder with the demo bank, the real authorizer and HTTP server
// on a loopback port, signed requests over a real socket
// (tests/switch_http_harness.hpp). A split by distance is priced by the
// merchant's delivery bands in force (docs/settlement.md), the fixed form
// still works, bad splits are refused without making a payment, and a split
// moved at capture is a "delivery" line of the merchant's settlement report.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/api.hpp"
#include "switch/authorizer.hpp"
#include "switch/bank.hpp"
#include "switch/http_server.hpp"
#include "switch/settlement.hpp"
#include "tests/demo_bank_fixture.hpp"
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
  }
  void TearDown() override {
    client_.reset();
    if (server_) server_->Shutdown();
    if (ledger_) (void)ledger_->Close();
    server_.reset();
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

  static inline testing_bank::SeededDemoBank* seeded_ = nullptr;
  testing::TempDir dir_;
  std::unique_ptr<nc::KeyStore> keys_;
  std::unique_ptr<ledger::Ledger> ledger_;
  DemoBank bank_;
  std::unique_ptr<IsoHandler> auth_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<harness::HttpClient> client_;
  uint64_t key_seq_ = 0;
};

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

}  // namespace
}  // namespace narae::switching
