// Other banks' cards and SIM tokens at our merchants (issue 8, Interbank):
// the authorizer routes a credential of another registered bank to that
// bank's interbank account under its stand-in agreement (`narae bank add
// --stand-in`), over ISO 8583 and over the HTTP API (same engine), and the
// day's settlement nets the positions per bank to zero. A real ledger in a
// temporary folder, the real authorizer, the real HTTP server on a loopback
// port and the real `narae` commands for the day close and the settlement.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/api.hpp"
#include "switch/api_events.hpp"
#include "switch/authorizer.hpp"
#include "switch/bank.hpp"
#include "switch/http_server.hpp"
#include "switch/iso8583.hpp"
#include "switch/settlement.hpp"
#include "switch/switch.hpp"
#include "tests/demo_bank_fixture.hpp"
#include "tests/switch_harness.hpp"
#include "tests/switch_tls_util.hpp"
#include "tests/test_util.hpp"

namespace narae::switching {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace nc = narae::crypto;
using json = nlohmann::json;
using tcp = asio::ip::tcp;
using ledger::AccountId;

int64_t SystemMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string NaraeBin() { return std::string(NARAE_BIN_DIR) + "/tools/narae"; }

// Runs `narae args` and returns its exit code and standard output.
std::pair<int, std::string> Narae(const std::string& args) {
  std::string out;
  FILE* f = ::popen((NaraeBin() + " " + args + " 2>/dev/null").c_str(), "r");
  if (f == nullptr) return {-1, ""};
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int status = ::pclose(f);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A Luhn-valid 16-digit PAN starting with `prefix`.
std::string PanWithPrefix(const std::string& prefix, uint64_t n) {
  std::string tail = std::to_string(n);
  NARAE_CHECK(prefix.size() + tail.size() <= 15);
  const std::string digits = prefix + std::string(15 - prefix.size() - tail.size(), '0') + tail;
  Result<char> check = nc::LuhnCheckDigit(digits);
  NARAE_CHECK(check.ok());
  return digits + *check;
}

struct Resp {
  unsigned status = 0;
  std::string body;
  json j;
  std::string Code() const {
    return j.is_object() && j.contains("error") ? j["error"]["code"].get<std::string>() : "";
  }
};

class Client {
 public:
  explicit Client(uint16_t port) : socket_(ioc_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  Resp Send(http::request<http::string_body> req) {
    req.version(11);
    req.set(http::field::host, "127.0.0.1");
    req.prepare_payload();
    http::write(socket_, req);
    http::response<http::string_body> res;
    http::read(socket_, buffer_, res);
    Resp r;
    r.status = res.result_int();
    r.body = res.body();
    r.j = json::parse(r.body, nullptr, false);
    return r;
  }

 private:
  asio::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

// KORYO: cards 950100..950199, stand-in in KPW (daily 100,000, single 60,000).
// DAEDONG: cards 960000..960099 and SIM tokens 9520..., stand-in daily 50,000.
// HWANGHAE: cards 970000..970099 and SIM tokens 9530..., no agreement.
constexpr uint64_t kKoryoDaily = 100'000;
constexpr uint64_t kKoryoSingle = 60'000;
constexpr uint64_t kDaedongDaily = 50'000;

class InterbankTest : public ::testing::Test {
 protected:
  // Closes the business day and settles one merchant (what `narae day close`
  // and `narae settle --merchant M` run).
  void CloseDayAndSettle(const std::string& merchant, DayRecord* day, SettleSummary* summary) {
    Result<DayRecord> closed = CloseDay(*ledger_, std::nullopt);
    ASSERT_TRUE(closed.ok()) << closed.status().ToString();
    SettleOptions so;
    so.merchant_id = merchant;
    Result<SettleSummary> settled = SettleDay(*ledger_, closed->day, so);
    ASSERT_TRUE(settled.ok()) << settled.status().ToString();
    *day = *closed;
    *summary = *settled;
  }
  // The demo bank and the other banks are made once and copied per test.
  static void SetUpTestSuite() {
    seeded_ = new testing_bank::SeededDemoBank();
    SeedOptions so;
    so.customers = 1;
    seeded_->Seed(so, [](ledger::Ledger& l, nc::KeyStore& ks) {
      OtherBank koryo{"KORYO", "Koryo Bank", {{"950100", "950199"}}, {}, {}, {}};
      koryo.stand_in = {{408, kKoryoDaily, kKoryoSingle}};
      koryo.acquirer_id = "600100";  // its acquirer host sends us our customers' payments
      OtherBank daedong{"DAEDONG", "Daedong Credit", {{"960000", "960099"}}, {"9520"}, {}, {}};
      daedong.stand_in = {{408, kDaedongDaily, 0}};
      daedong.acquirer_id = "600200";
      OtherBank hwanghae{"HWANGHAE", "Hwanghae Bank", {{"970000", "970099"}}, {"9530"}, {}, {}};
      for (const OtherBank* b : {&koryo, &daedong, &hwanghae}) {
        Result<OtherBank> r = AddOtherBank(l, *b, {408});
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        interbank_[b->id] = r->accounts.at(0).account;
      }
      ASSERT_OK(EnsureApiTerminals(l, ks));
    });
  }
  static void TearDownTestSuite() {
    delete seeded_;
    seeded_ = nullptr;
    interbank_.clear();
  }

  void SetUp() override {
    ASSERT_TRUE(seeded_ != nullptr && seeded_->ready());
    seeded_->CopyTo(dir_.path(), &keys_);
    ASSERT_NE(keys_, nullptr);
    Start();
  }
  void TearDown() override { Stop(); }

  void Start() {
    ledger::Options o;
    o.path = dir_.Sub("ledger");
    o.sync = false;
    auto l = ledger::Ledger::Open(o);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    ledger_ = std::move(*l);
    auto a = MakeAuthorizer({ledger_.get(), keys_.get()}, authorization_json_);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    auth_ = std::move(*a);
    auto api = Api::Create({ledger_.get(), keys_.get(), auth_.get()}, ApiOptions{});
    ASSERT_TRUE(api.ok()) << api.status().ToString();
    api_ = std::move(*api);
    HttpServerOptions so;
    so.listen = "127.0.0.1:0";
    so.threads = 2;
    auto s = HttpServer::Start(so, api_.get(), auth_.get(), nullptr);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(*s);
    client_ = std::make_unique<Client>(server_->port());
  }
  void Stop() {
    client_.reset();
    if (server_) server_->Shutdown();
    if (ledger_) (void)ledger_->Close();
    server_.reset();
    api_.reset();
    auth_.reset();
    ledger_.reset();
  }

  // ---- ISO 8583 straight into the engine ----
  Message Iso(Message m) {
    std::promise<Message> done;
    auto f = done.get_future();
    auth_->Handle(std::move(m), ConnectionInfo{}, [&](Message r) { done.set_value(std::move(r)); });
    return f.get();
  }
  static std::string Rc(const Message& m) { return std::string(m.Get(39)); }
  static std::string Field7Now() {
    std::time_t t = static_cast<std::time_t>(SystemMs() / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%02d%02d%02d%02d%02d", tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                  tm.tm_min, tm.tm_sec);
    return buf;
  }
  Message IsoBase(const std::string& mti) {
    Message m(mti);
    m.Set(7, Field7Now());
    char stan[16];
    std::snprintf(stan, sizeof stan, "%06d", ++stan_);
    m.Set(11, stan);
    m.Set(41, "T0000003");
    std::string merchant = "SOCKS001";
    merchant.resize(15, ' ');
    m.Set(42, merchant);
    return m;
  }
  // A card payment as an e-commerce terminal sends it: PAN, expiry, CVV2.
  Message CardPayment(const std::string& mti, const std::string& pan, uint64_t amount,
                      const std::string& expiry = "3012", const std::string& cvv2 = "123") {
    Message m = IsoBase(mti);
    m.Set(2, pan);
    m.Set(3, "000000");
    m.Set(4, *FormatAmount(amount));
    if (!expiry.empty()) m.Set(14, expiry);
    m.Set(49, "408");
    if (!cvv2.empty()) m.Set(48, BuildField48(cvv2));
    return m;
  }
  // A SIM token payment; the cryptogram is the issuer's business (not ours).
  Message SimPayment(const std::string& token, uint64_t amount, uint64_t counter,
                     int64_t time_offset_s = 0) {
    Message m = IsoBase("0200");
    m.Set(2, token);
    m.Set(3, "000000");
    m.Set(4, *FormatAmount(amount));
    m.Set(49, "408");
    SimTokenData t;
    t.token_id = token;
    t.counter = counter;
    t.cryptogram = {1, 2, 3, 4, 5, 6, 7, 8};
    t.time_unix_s = static_cast<uint64_t>(SystemMs() / 1000 + time_offset_s);
    m.Set(62, *FormatSimToken(t));
    return m;
  }
  Message Reversal(const Message& orig, uint64_t amount) {
    Message m = IsoBase("0400");
    m.Set(2, orig.Get(2));
    m.Set(3, orig.Get(3));
    m.Set(4, *FormatAmount(amount));
    m.Set(49, orig.Get(49));
    OriginalData od{orig.mti(), std::string(orig.Get(11)), std::string(orig.Get(7)), "00000000000",
                    "00000000000"};
    m.Set(90, *FormatOriginalData(od));
    return m;
  }
  Message Completion(const Message& orig, uint64_t amount) {
    Message m = Reversal(orig, amount);
    m.set_mti("0220");
    return m;
  }

  // ---- HTTP ----
  Resp Call(const std::string& method, const std::string& target, const std::string& body,
            const std::string& idem) {
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.body() = body;
    if (!idem.empty()) req.set("Idempotency-Key", idem);
    const std::string nonce = "n" + std::to_string(++nonce_seq_) + "-" + std::to_string(SystemMs());
    for (auto& [k, v] : SignedHeaders("SOCKS001", Merchant().api_secret_hex, method, target, body,
                                      SystemMs() / 1000, nonce)) {
      req.set(k, v);
    }
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    return client_->Send(std::move(req));
  }
  Resp PayCard(const std::string& pan, uint64_t amount, const std::string& capture = "manual") {
    json j = {{"amount", amount},
              {"currency", "KPW"},
              {"capture", capture},
              {"card", {{"pan", pan}, {"expiry", "3012"}, {"cvv2", "123"}}}};
    return Call("POST", "/v1/payments", j.dump(), "k-" + std::to_string(++key_seq_));
  }
  Resp PaySim(const std::string& token, uint64_t amount, uint64_t counter) {
    json j = {{"amount", amount},
              {"currency", "KPW"},
              {"capture", "automatic"},
              {"sim",
               {{"token_id", token},
                {"counter", counter},
                {"time", SystemMs() / 1000},
                {"cryptogram", "0102030405060708"}}}};
    return Call("POST", "/v1/payments", j.dump(), "k-" + std::to_string(++key_seq_));
  }

  const DemoMerchant& Merchant() {
    for (const DemoMerchant& m : bank_().merchants) {
      if (m.merchant.id == "SOCKS001") return m;
    }
    ADD_FAILURE() << "no SOCKS001";
    return bank_().merchants[0];
  }
  static const DemoBank& bank_() { return seeded_->bank(); }
  AccountId Clearing() { return Merchant().merchant.ForCurrency(408)->clearing; }
  static AccountId Interbank(const std::string& bank) { return interbank_.at(bank); }
  ledger::Account Account(AccountId id) {
    auto a = ledger_->LookupAccount(id);
    EXPECT_TRUE(a.has_value());
    return a.value_or(ledger::Account{});
  }
  // Every interbank account and the clearing account: a decline moves nothing.
  std::vector<ledger::Account> Balances() {
    std::vector<ledger::Account> out;
    for (const auto& [id, account] : interbank_) out.push_back(Account(account));
    out.push_back(Account(Clearing()));
    return out;
  }
  static void ExpectSame(const std::vector<ledger::Account>& a,
                         const std::vector<ledger::Account>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].debits_posted, b[i].debits_posted) << i;
      EXPECT_EQ(a[i].debits_pending, b[i].debits_pending) << i;
      EXPECT_EQ(a[i].credits_posted, b[i].credits_posted) << i;
    }
  }

  static inline testing_bank::SeededDemoBank* seeded_ = nullptr;
  static inline std::map<std::string, AccountId> interbank_;
  testing::TempDir dir_;
  std::unique_ptr<nc::KeyStore> keys_;
  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<IsoHandler> auth_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<Client> client_;
  int stan_ = 0;
  int nonce_seq_ = 0;
  int key_seq_ = 0;
  std::string authorization_json_ = "{}";
};

// A KORYO card holds and is captured, a DAEDONG SIM pays, our own card pays;
// the day is closed and settled with the real `narae` commands: the merchant
// is paid for all three and the interbank positions net to zero.
TEST_F(InterbankTest, ForeignPaymentsAreApprovedCapturedAndNettedPerBank) {
  const std::string koryo_pan = PanWithPrefix("950123", 1);
  Message hold = CardPayment("0100", koryo_pan, 40'000);
  Message r = Iso(hold);
  ASSERT_EQ(Rc(r), "00");
  EXPECT_TRUE(r.Has(38));
  EXPECT_FALSE(r.Has(54)) << "the other bank's interbank balance is never shown";
  EXPECT_EQ(Account(Interbank("KORYO")).debits_pending, 40'000u);
  ASSERT_EQ(Rc(Iso(Completion(hold, 35'000))), "00");
  EXPECT_EQ(Account(Interbank("KORYO")).debits_pending, 0u);
  EXPECT_EQ(Account(Interbank("KORYO")).debits_posted, 35'000u);

  Message sim = SimPayment("9520000000000017", 20'000, 1);
  ASSERT_EQ(Rc(Iso(sim)), "00");
  EXPECT_EQ(Rc(Iso(SimPayment("9520000000000017", 1'000, 1))), "62") << "counter replayed";
  EXPECT_EQ(Account(Interbank("DAEDONG")).debits_posted, 20'000u);

  const DemoCard& ours = bank_().cards.at(0);
  ASSERT_EQ(ours.issued.card.currency, 408);
  ASSERT_EQ(Rc(Iso(CardPayment("0200", ours.issued.pan, 5'000, ours.issued.card.expiry,
                               ours.issued.cvv2))),
            "00");
  EXPECT_EQ(Account(Clearing()).credits_posted, 60'000u);
  EXPECT_EQ(Account(Interbank("HWANGHAE")).debits_posted, 0u);

  // The day closed and the merchants settled (the functions behind `narae
  // day close` and `narae settle`), then `narae settle interbank` itself.
  DayRecord day;
  SettleSummary settled;
  ASSERT_NO_FATAL_FAILURE(CloseDayAndSettle("SOCKS001", &day, &settled));
  ASSERT_EQ(settled.settled.size(), 1u);
  EXPECT_EQ(settled.settled[0].captures_minor, 60'000u) << "foreign payments settle like ours";
  Stop();
  const std::string data = dir_.path();
  const std::string file = dir_.Sub("net.csv");
  auto [ib_rc, ib_out] =
      Narae("settle interbank --data " + data + " --day 1 --out " + file + " --json");
  ASSERT_EQ(ib_rc, 0) << ib_out;
  json ib = json::parse(ib_out, nullptr, false);
  ASSERT_TRUE(ib.is_object()) << ib_out;
  std::map<std::string, int64_t> net;
  int64_t sum = 0;
  for (const json& p : ib["positions"]) {
    EXPECT_EQ(p["currency"], 408);
    net[p["bank"].get<std::string>()] = p["net_minor"].get<int64_t>();
    sum += p["net_minor"].get<int64_t>();
  }
  EXPECT_EQ(sum, 0) << ib_out;
  EXPECT_EQ(net.at("KORYO"), -35'000);
  EXPECT_EQ(net.at("DAEDONG"), -20'000);
  EXPECT_EQ(net.at("HWANGHAE"), 0);
  EXPECT_EQ(net.at("NARAE"), 55'000);
  std::ifstream in(file);
  std::string csv((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(csv.find("408,KORYO,DEBIT,35000"), std::string::npos) << csv;
  EXPECT_NE(csv.find("408,DAEDONG,DEBIT,20000"), std::string::npos) << csv;
  EXPECT_NE(csv.find("408,NARAE,CREDIT,55000"), std::string::npos) << csv;

  // The nets cleared the interbank accounts through the central bank.
  Start();
  for (const std::string b : {"KORYO", "DAEDONG", "HWANGHAE"}) {
    const ledger::Account a = Account(Interbank(b));
    EXPECT_EQ(a.debits_posted, a.credits_posted) << b;
  }
  const AccountId central = bank_().config.ForCurrency(408)->central_bank;
  EXPECT_EQ(Account(central).debits_posted, 55'000u);
}

// What cannot be stood in for is declined and moves nothing.
TEST_F(InterbankTest, UnknownIssuerNoAgreementAndUnverifiableCredentialsAreDeclined) {
  const std::vector<ledger::Account> before = Balances();
  const std::string koryo_pan = PanWithPrefix("950100", 7);
  // No registered bank owns the BIN; an unknown card of our own BIN.
  EXPECT_EQ(Rc(Iso(CardPayment("0200", PanWithPrefix("980000", 1), 1'000))), "14");
  EXPECT_EQ(Rc(Iso(CardPayment("0200", PanWithPrefix("940801", 99'999), 1'000))), "14");
  EXPECT_EQ(Rc(Iso(SimPayment("9999000000000001", 1'000, 1))), "14");
  EXPECT_EQ(Rc(Iso(SimPayment("9410999999999999", 1'000, 1))), "14");
  // A registered bank without an agreement: 57 (card and SIM).
  EXPECT_EQ(Rc(Iso(CardPayment("0200", PanWithPrefix("970055", 3), 1'000))), "57");
  EXPECT_EQ(Rc(Iso(SimPayment("9530000000000001", 1'000, 1))), "57");
  // A balance inquiry: we do not know the other bank's balances.
  Message balance = CardPayment("0100", koryo_pan, 1);
  balance.Set(3, "310000");
  balance.Clear(4);
  EXPECT_EQ(Rc(Iso(balance)), "57");
  // A PIN we have no key for; no CVV2 and no chip; expiry absent, past, bad.
  Message pin = CardPayment("0200", koryo_pan, 1'000);
  pin.SetBytes(52, std::vector<uint8_t>(8, 0x11));
  EXPECT_EQ(Rc(Iso(pin)), "57");
  EXPECT_EQ(Rc(Iso(CardPayment("0200", koryo_pan, 1'000, "3012", ""))), "05");
  EXPECT_EQ(Rc(Iso(CardPayment("0200", koryo_pan, 1'000, ""))), "30");
  EXPECT_EQ(Rc(Iso(CardPayment("0200", koryo_pan, 1'000, "2001"))), "54");
  EXPECT_EQ(Rc(Iso(CardPayment("0200", koryo_pan, 1'000, "3013"))), "54");
  // A wrong Luhn digit never reaches the routing.
  std::string bad_luhn = koryo_pan;
  bad_luhn.back() = bad_luhn.back() == '9' ? '0' : static_cast<char>(bad_luhn.back() + 1);
  EXPECT_EQ(Rc(Iso(CardPayment("0200", bad_luhn, 1'000))), "14");
  // A SIM token far from now.
  EXPECT_EQ(Rc(Iso(SimPayment("9520000000000025", 1'000, 1, 3600))), "05");
  ExpectSame(before, Balances());
}

// Chip data of another bank: the ARQC cannot be checked, the ATC can; ISO
// refunds of a foreign card and SIM credit the bank's interbank account.
TEST_F(InterbankTest, ForeignChipAtcIsNeverReplayedAndRefundsCreditTheBank) {
  const std::string pan = PanWithPrefix("950111", 4);
  const std::vector<uint8_t> arqc(8, 0xA5);  // any value: it is the issuer's to check
  auto chip = [&](uint64_t amount, uint64_t chip_amount, uint16_t atc) {
    Message m = CardPayment("0200", pan, amount, "3012", "");
    m.Set(55, BuildChipData(chip_amount, 408, atc, 0x01020304, arqc));
    return m;
  };
  Message paid = chip(4'000, 4'000, 7);
  Message r = Iso(paid);
  ASSERT_EQ(Rc(r), "00");
  EXPECT_FALSE(r.Has(55)) << "no ARPC without the issuer's key";
  EXPECT_EQ(Rc(Iso(chip(1'000, 1'000, 7))), "05") << "ATC replayed";
  EXPECT_EQ(Rc(Iso(chip(1'000, 1'000, 6))), "05") << "ATC went back";
  EXPECT_EQ(Rc(Iso(chip(1'000, 999, 8))), "30") << "chip amount differs from field 4";
  ASSERT_EQ(Rc(Iso(chip(1'000, 1'000, 8))), "00");
  EXPECT_EQ(Account(Interbank("KORYO")).debits_posted, 5'000u);

  auto refund = [&](const std::string& credential, const Message& answer, uint64_t amount) {
    Message m = IsoBase("0200");
    m.Set(2, credential);
    m.Set(3, "200000");
    m.Set(4, *FormatAmount(amount));
    m.Set(49, "408");
    m.Set(37, answer.Get(37));
    return Rc(Iso(m));
  };
  EXPECT_EQ(refund(pan, r, 4'001), "13") << "more than was captured";
  EXPECT_EQ(refund(PanWithPrefix("950111", 5), r, 1'000), "12") << "another card";
  EXPECT_EQ(refund(pan, r, 1'500), "00");
  EXPECT_EQ(Account(Interbank("KORYO")).credits_posted, 1'500u);

  Message sim_answer = Iso(SimPayment("9520000000000058", 3'000, 1));
  ASSERT_EQ(Rc(sim_answer), "00");
  EXPECT_EQ(refund("9520000000000058", sim_answer, 3'000), "00");
  EXPECT_EQ(Account(Interbank("DAEDONG")).credits_posted, 3'000u);
  EXPECT_EQ(refund("9530000000000058", sim_answer, 1), "12") << "another bank's token";
  EXPECT_EQ(refund("9999000000000001", sim_answer, 1), "14") << "no such issuer";
}

// The agreement's limits: one payment and the bank's day, released by a reversal.
TEST_F(InterbankTest, PerBankStandInLimitsAreEnforcedAndReleasedByReversals) {
  const std::string pan_a = PanWithPrefix("950150", 1);
  const std::string pan_b = PanWithPrefix("950199", 2);
  EXPECT_EQ(Rc(Iso(CardPayment("0200", pan_a, kKoryoSingle + 1))), "61");
  Message first = CardPayment("0200", pan_a, kKoryoSingle);
  ASSERT_EQ(Rc(Iso(first)), "00");
  // The daily maximum is the bank's, across its cards.
  EXPECT_EQ(Rc(Iso(CardPayment("0200", pan_b, kKoryoDaily - kKoryoSingle + 1))), "61");
  ASSERT_EQ(Rc(Iso(CardPayment("0200", pan_b, kKoryoDaily - kKoryoSingle))), "00");
  const std::vector<ledger::Account> full = Balances();
  EXPECT_EQ(Rc(Iso(CardPayment("0200", pan_b, 1))), "61");
  ExpectSame(full, Balances());
  // DAEDONG's own day is untouched by KORYO's.
  ASSERT_EQ(Rc(Iso(SimPayment("9520000000000033", kDaedongDaily, 1))), "00");
  EXPECT_EQ(Rc(Iso(SimPayment("9520000000000033", 1, 2))), "61");
  // A reversal gives the exposure back.
  ASSERT_EQ(Rc(Iso(Reversal(first, kKoryoSingle))), "00");
  EXPECT_EQ(Account(Interbank("KORYO")).credits_posted, kKoryoSingle);
  ASSERT_EQ(Rc(Iso(CardPayment("0200", pan_b, kKoryoSingle))), "00");
  EXPECT_EQ(Rc(Iso(CardPayment("0200", pan_b, 1))), "61");
  // The exposure survives a restart (it is a ledger record, au/d/b/...).
  Stop();
  Start();
  EXPECT_EQ(Rc(Iso(CardPayment("0200", pan_a, 1))), "61");
}

// KORYO's exposure of the day after its stand-in holds (au/d/b/KORYO/408).
uint64_t KoryoExposure(ledger::Ledger& l) {
  std::optional<std::string> v = l.GetAux("au/d/b/KORYO/408");
  Result<CredentialState> st = DecodeCredentialState(v ? *v : "");
  EXPECT_TRUE(st.ok());
  return st.ok() ? st->day_amount_minor : UINT64_MAX;
}

// A stand-in hold that expires unused gives its bank's exposure back, once:
// the expiry scan's transaction (switch/api_events.cpp) releases it with the
// payment.expired event; a hold captured or reversed in time releases only
// what its completion or reversal released.
TEST_F(InterbankTest, ExpiredStandInHoldReleasesTheExposureOnce) {
  Stop();
  authorization_json_ = R"({"hold_timeout_s": 1})";
  Start();
  const std::string pan = PanWithPrefix("950123", 4);
  Message expiring = CardPayment("0100", pan, 50'000);
  Message captured = CardPayment("0100", pan, 30'000);
  Message reversed = CardPayment("0100", pan, 20'000);
  const Message r1 = Iso(expiring);
  ASSERT_EQ(Rc(r1), "00");
  ASSERT_EQ(Rc(Iso(captured)), "00");
  ASSERT_EQ(Rc(Iso(reversed)), "00");
  EXPECT_EQ(KoryoExposure(*ledger_), kKoryoDaily);
  EXPECT_EQ(Rc(Iso(CardPayment("0100", pan, 1))), "61");  // the day's maximum is used
  ASSERT_EQ(Rc(Iso(Completion(captured, 30'000))), "00");
  ASSERT_EQ(Rc(Iso(Reversal(reversed, 20'000))), "00");
  EXPECT_EQ(KoryoExposure(*ledger_), 80'000u);
  // Wait until the ledger expired the first hold (1 s timeout), then scan.
  std::optional<PaymentRecord> rec = LookupPaymentByRrn(*ledger_, r1.Get(37));
  ASSERT_TRUE(rec.has_value());
  for (int i = 0; i < 100; ++i) {
    std::optional<ledger::HoldInfo> h = ledger_->LookupHold(rec->transfer);
    if (h && h->state == ledger::HoldState::kExpired) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(ledger_->LookupHold(rec->transfer)->state, ledger::HoldState::kExpired);
  const uint64_t now_ns = static_cast<uint64_t>(SystemMs() + 1000) * 1'000'000;
  Result<size_t> events = EmitExpiredHoldsSync(*ledger_, now_ns);
  ASSERT_TRUE(events.ok()) << events.status().ToString();
  EXPECT_EQ(*events, 1u);  // the captured and the reversed holds did not expire
  EXPECT_EQ(KoryoExposure(*ledger_), 30'000u);
  // A second scan finds nothing new and releases nothing again.
  ASSERT_EQ(Rc(Iso(CardPayment("0200", pan, 60'000))), "00");
  EXPECT_EQ(KoryoExposure(*ledger_), 90'000u);
  Result<size_t> again = EmitExpiredHoldsSync(*ledger_, now_ns);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);
  EXPECT_EQ(KoryoExposure(*ledger_), 90'000u);
  // A reversal of the expired hold is approved but releases nothing more.
  ASSERT_EQ(Rc(Iso(Reversal(expiring, 50'000))), "00");
  EXPECT_EQ(KoryoExposure(*ledger_), 90'000u);
  EXPECT_EQ(Rc(Iso(CardPayment("0200", pan, 10'001))), "61");
  EXPECT_EQ(Rc(Iso(CardPayment("0200", pan, 10'000))), "00");
}

// The real narae-switch without the HTTP API (ISO 8583 only) and with its
// admin interface: a bank added with `narae bank add` while it runs is routed
// from the next request (no restart), and a stand-in hold that expires gives
// the bank's exposure back (the hold-expiry scan runs without --http-listen).
TEST_F(InterbankTest, IsoOnlySwitchReleasesExpiredStandInAndRoutesANewBank) {
  if (!harness::HaveBinaries()) GTEST_SKIP() << "narae / narae-switch not built";
  Stop();  // the switch owns the ledger now
  const std::string config = dir_.Sub("switch.json");
  {
    std::ofstream f(config);
    f << R"({"authorization": {"hold_timeout_s": 1}})";
  }
  harness::SwitchProcess sw;
  ASSERT_TRUE(sw.Start(dir_.path(), {"--config", config, "--admin-listen", "127.0.0.1:0"}));
  harness::IsoClient iso(sw.port());
  ASSERT_TRUE(iso.connected());
  auto rc = [&](const Message& m) {
    std::optional<Message> r = iso.Call(harness::SignFrame(m, nc::SecretBytes{}));
    return r ? std::string(r->Get(39)) : std::string("no answer");
  };
  const std::string pan = PanWithPrefix("980012", 7);
  EXPECT_EQ(rc(CardPayment("0100", pan, 1'000)), "14");  // no such bank yet
  auto [code, out] = Narae("bank add --data " + dir_.path() +
                           " --id PAEKTU --name Paektu --bin-range 980000-980099"
                           " --stand-in 408:40000 --json");
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(rc(CardPayment("0100", pan, 40'000)), "00");  // routed without a restart
  EXPECT_EQ(rc(CardPayment("0100", pan, 1)), "61");       // the day's maximum is used
  EXPECT_EQ(rc(CardPayment("0100", PanWithPrefix("980099", 8), 1)), "61");
  EXPECT_EQ(rc(CardPayment("0100", PanWithPrefix("980100", 9), 1)), "14");  // outside the range
  // The hold expires after 1 s; the scan (once a second) gives the
  // exposure back: a payment of the whole daily maximum is approved again.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    last = rc(CardPayment("0100", pan, 40'000));
    if (last != "61") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(last, "00");
  EXPECT_EQ(rc(CardPayment("0100", pan, 1)), "61");  // and only once
  EXPECT_EQ(sw.Stop(), 0);
}

// The same over the HTTP API: 201/200 through the interbank account, a
// refund credits it, and the declines have their stable codes.
TEST_F(InterbankTest, HttpRoutesForeignCardsAndSimsThroughTheInterbankAccount) {
  const std::string pan = PanWithPrefix("950177", 5);
  Resp p = PayCard(pan, 30'000);
  ASSERT_EQ(p.status, 201u) << p.body;
  EXPECT_EQ(p.j["status"], "authorized");
  const std::string id = p.j["id"];
  EXPECT_EQ(Account(Interbank("KORYO")).debits_pending, 30'000u);
  Resp c = Call("POST", "/v1/payments/" + id + "/capture", R"({"amount":25000})", "cap-1");
  ASSERT_EQ(c.status, 200u) << c.body;
  EXPECT_EQ(c.j["status"], "captured");
  EXPECT_EQ(Account(Interbank("KORYO")).debits_posted, 25'000u);
  Resp rf = Call("POST", "/v1/payments/" + id + "/refunds", R"({"amount":5000})", "ref-1");
  ASSERT_EQ(rf.status, 201u) << rf.body;
  EXPECT_EQ(Account(Interbank("KORYO")).credits_posted, 5'000u) << "the refund goes back to KORYO";

  Resp s = PaySim("9520000000000041", 7'000, 1);
  ASSERT_EQ(s.status, 201u) << s.body;
  EXPECT_EQ(Account(Interbank("DAEDONG")).debits_posted, 7'000u);

  const std::vector<ledger::Account> before = Balances();
  Resp unknown = PayCard(PanWithPrefix("980000", 2), 1'000);
  EXPECT_EQ(unknown.status, 402u) << unknown.body;
  EXPECT_EQ(unknown.Code(), "invalid_card");
  Resp none = PayCard(PanWithPrefix("970000", 2), 1'000);
  EXPECT_EQ(none.status, 402u) << none.body;
  EXPECT_EQ(none.Code(), "not_permitted");
  Resp none_sim = PaySim("9530000000000002", 1'000, 1);
  EXPECT_EQ(none_sim.status, 402u) << none_sim.body;
  EXPECT_EQ(none_sim.Code(), "not_permitted");
  Resp over = PayCard(pan, kKoryoSingle + 1, "automatic");
  EXPECT_EQ(over.status, 402u) << over.body;
  EXPECT_EQ(over.Code(), "limit_exceeded");
  // 25,000 captured of KORYO's 100,000 day: 60,000 passes, then 15,001 does not.
  ASSERT_EQ(PayCard(pan, kKoryoSingle, "automatic").status, 201u);
  const std::vector<ledger::Account> at_limit = Balances();
  Resp day = PayCard(pan, kKoryoDaily - 25'000 - kKoryoSingle + 1, "automatic");
  EXPECT_EQ(day.status, 402u) << day.body;
  EXPECT_EQ(day.Code(), "limit_exceeded");
  ExpectSame(at_limit, Balances());
  (void)before;
}

// Stand-in terms are validated: by AddOtherBank, and by `narae bank add
// --stand-in`'s parser; the command stores and prints them.
TEST_F(InterbankTest, BankAddStandInTermsAreValidated) {
  auto add = [&](std::vector<StandInTerms> terms) {
    OtherBank b{"A", "a", {{"990000", "990099"}}, {}, {}, std::move(terms)};
    return AddOtherBank(*ledger_, b, {408}).status();
  };
  EXPECT_EQ(add({{408, 0, 0}}).code(), StatusCode::kInvalidArgument) << "daily 0";
  EXPECT_EQ(add({{408, 100, 200}}).code(), StatusCode::kInvalidArgument) << "single > daily";
  EXPECT_EQ(add({{840, 100, 0}}).code(), StatusCode::kInvalidArgument) << "not its currency";
  EXPECT_EQ(add({{408, 100, 0}, {408, 200, 0}}).code(), StatusCode::kInvalidArgument);
  Result<std::vector<OtherBank>> banks = ListOtherBanks(*ledger_);
  ASSERT_TRUE(banks.ok());
  EXPECT_EQ(banks->size(), 3u) << "nothing was added";
  Stop();
  const std::string data = dir_.path();
  const std::string base = "bank add --data " + data + " --bin-range 990000-990099 ";
  EXPECT_NE(Narae(base + "--id A --stand-in 408").first, 0);
  EXPECT_NE(Narae(base + "--id A --stand-in 408:1:1:1").first, 0);
  EXPECT_NE(Narae(base + "--id A --stand-in x:1").first, 0);
  EXPECT_NE(Narae(base + "--id A --stand-in 1000:1").first, 0);
  auto [rc, out] = Narae(base + "--id A --currencies 408,840 --stand-in 840:5000:100");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("stand-in 840: 5000 a day, 100 a payment"), std::string::npos) << out;
  Start();
  // Read back as the authorizer reads it.
  banks = ListOtherBanks(*ledger_);
  ASSERT_TRUE(banks.ok());
  ASSERT_EQ(banks->size(), 4u);
  for (const OtherBank& b : *banks) {
    if (b.id == "A") {
      EXPECT_TRUE(b.stand_in == (std::vector<StandInTerms>{{840, 5000, 100}}));
    } else if (b.id == "KORYO") {
      EXPECT_EQ(b.StandInFor(408)->daily_max_minor, kKoryoDaily);
    } else if (b.id == "HWANGHAE") {
      EXPECT_EQ(b.StandInFor(408), nullptr);
    }
  }
}

// ---- Our customers at other banks' merchants (inbound acquirer requests) ----

// A request from KORYO's acquirer host: field 32 = KORYO's acquirer id,
// fields 41/42 its terminal and merchant, our customer's card.
Message Inbound(Message m, const std::string& field32 = "600100") {
  m.Set(32, field32);
  m.Set(41, "T0000003");  // the same id as one of our terminals: namespaced apart
  std::string merchant = "KORYOSHOP01";
  merchant.resize(15, ' ');
  m.Set(42, merchant);
  return m;
}

class InterbankInboundTest : public InterbankTest {
 protected:
  const DemoCard& Ours() { return bank_().cards.at(0); }
  AccountId Customer() { return Ours().issued.card.account_id; }
  Message OurCard(const std::string& mti, uint64_t amount) {
    return CardPayment(mti, Ours().issued.pan, amount, Ours().issued.card.expiry,
                       Ours().issued.cvv2);
  }
  Message Send(Message m, const std::string& cn) {
    std::promise<Message> done;
    auto f = done.get_future();
    ConnectionInfo conn;
    conn.tls = !cn.empty();
    conn.client_cert_cn = cn;
    auth_->Handle(std::move(m), conn, [&](Message r) { done.set_value(std::move(r)); });
    return f.get();
  }
  // The ledger transfer an inbound request made (its key is namespaced by bank).
  std::optional<ledger::Transfer> InboundTransfer(const std::string& bank, const Message& m) {
    const std::string key =
        RequestKey("@" + bank + "/" + std::string(m.Get(41)), m.Get(7), m.Get(11), SystemMs());
    return ledger_->LookupTransfer(RequestTransferId(key, 1));
  }
  // Our SIM's payment, its cryptogram over `merchant_id` (field 42 trimmed).
  Message OurSim(const EnrolledSim& sim, uint64_t amount, uint64_t counter,
                 const std::string& merchant_id) {
    Message m = Inbound(IsoBase("0200"));
    harness::SetSimPayment(m, sim.sim.token_id, sim.sim_key_hex, amount, counter, merchant_id,
                           static_cast<int64_t>(SystemMs() / 1000));
    return m;
  }
  Message Refund(const Message& approved_response, uint64_t amount) {
    Message m = Inbound(OurCard("0200", amount));
    m.Set(3, "200000");
    m.Clear(48);
    m.Set(37, approved_response.Get(37));
    return m;
  }
};

// Our card pays at KORYO's merchant: customer -> KORYO's interbank account
// (code 206), verified as at our merchants; a refund is capped by what stands;
// a hold is completed and the completion reversed; our clearing never moves.
TEST_F(InterbankInboundTest, OurCardAtAnotherBanksMerchantDebitsTheCustomerCreditsInterbank) {
  const ledger::Account customer0 = Account(Customer());
  const ledger::Account clearing0 = Account(Clearing());
  const AccountId koryo = Interbank("KORYO");

  Message buy = Inbound(OurCard("0200", 12'000));
  Message r = Iso(buy);
  ASSERT_EQ(Rc(r), "00");
  EXPECT_TRUE(r.Has(38));
  EXPECT_TRUE(r.Has(54)) << "our customer's available balance, as at our merchants";
  EXPECT_EQ(Account(Customer()).debits_posted, customer0.debits_posted + 12'000);
  EXPECT_EQ(Account(koryo).credits_posted, 12'000u);
  std::optional<ledger::Transfer> t = InboundTransfer("KORYO", buy);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->code, kTransferCodeInterbankPayment);
  EXPECT_EQ(t->debit_account_id, Customer());
  EXPECT_EQ(t->credit_account_id, koryo);
  EXPECT_EQ(Rc(Iso(buy)), "00") << "a retransmission is answered from the record";
  EXPECT_EQ(Account(koryo).credits_posted, 12'000u);

  // Refunds: interbank -> customer, never above what stands.
  ASSERT_EQ(Rc(Iso(Refund(r, 5'000))), "00");
  EXPECT_EQ(Rc(Iso(Refund(r, 8'000))), "13");
  ASSERT_EQ(Rc(Iso(Refund(r, 7'000))), "00");
  EXPECT_EQ(Rc(Iso(Refund(r, 1))), "13");
  EXPECT_EQ(Account(koryo).debits_posted, 12'000u);
  EXPECT_EQ(Account(Customer()).credits_posted, customer0.credits_posted + 12'000);

  // A hold, its completion, and the completion's reversal.
  Message hold = Inbound(OurCard("0100", 30'000));
  ASSERT_EQ(Rc(Iso(hold)), "00");
  EXPECT_EQ(Account(koryo).credits_pending, 30'000u);
  EXPECT_EQ(Account(Customer()).debits_pending, customer0.debits_pending + 30'000);
  Message done = Inbound(Completion(hold, 25'000));
  ASSERT_EQ(Rc(Iso(done)), "00");
  EXPECT_EQ(Account(koryo).credits_pending, 0u);
  EXPECT_EQ(Account(koryo).credits_posted, 37'000u);
  EXPECT_EQ(Account(Customer()).debits_pending, customer0.debits_pending);
  EXPECT_EQ(Rc(Iso(Completion(hold, 25'000))), "25")
      << "without field 32 the key is our terminal's: no such original";
  ASSERT_EQ(Rc(Iso(Inbound(Reversal(done, 25'000)))), "00");
  EXPECT_EQ(Account(koryo).debits_posted, 37'000u);

  // A purchase reversed in full.
  Message buy2 = Inbound(OurCard("0200", 4'000));
  ASSERT_EQ(Rc(Iso(buy2)), "00");
  ASSERT_EQ(Rc(Iso(Inbound(Reversal(buy2, 4'000)))), "00");
  const ledger::Account k = Account(koryo);
  EXPECT_EQ(k.credits_posted, 41'000u);
  EXPECT_EQ(k.debits_posted, 41'000u);
  const ledger::Account c = Account(Customer());
  EXPECT_EQ(c.debits_posted - customer0.debits_posted, c.credits_posted - customer0.credits_posted)
      << "everything given back";
  EXPECT_EQ(Account(Clearing()).credits_posted, clearing0.credits_posted);
  EXPECT_EQ(Account(Clearing()).debits_posted, clearing0.debits_posted);

  // Our terminal T0000003 with the same field 7 and STAN is another request.
  Message ours = OurCard("0200", 1'000);
  ours.Set(7, buy.Get(7));
  ours.Set(11, buy.Get(11));
  EXPECT_EQ(Rc(Iso(ours)), "00") << "no 94: the inbound key is namespaced by bank";
  EXPECT_EQ(Account(Clearing()).credits_posted, clearing0.credits_posted + 1'000);
}

// Our SIM at KORYO's merchant: the cryptogram is verified over that
// merchant's id (field 42), the counter is never replayed.
TEST_F(InterbankInboundTest, OurSimAtAnotherBanksMerchantIsVerifiedAsAtOurs) {
  const EnrolledSim* sim = nullptr;
  for (const EnrolledSim& s : bank_().sims) {
    if (s.sim.currency == 408) sim = &s;
  }
  ASSERT_NE(sim, nullptr);
  const ledger::Account account0 = Account(sim->sim.account_id);
  EXPECT_EQ(Rc(Iso(OurSim(*sim, 2'000, 1, "SOCKS001"))), "05") << "signed for another merchant";
  ASSERT_EQ(Rc(Iso(OurSim(*sim, 2'000, 2, "KORYOSHOP01"))), "00");
  EXPECT_EQ(Rc(Iso(OurSim(*sim, 2'000, 2, "KORYOSHOP01"))), "62") << "counter replayed";
  EXPECT_EQ(Account(sim->sim.account_id).debits_posted, account0.debits_posted + 2'000);
  EXPECT_EQ(Account(Interbank("KORYO")).credits_posted, 2'000u);
}

// Who may send an inbound request, and what it may carry; declines move nothing.
TEST_F(InterbankInboundTest, UnknownAcquirerCertificateMismatchAndForeignCredentialsAreDeclined) {
  const std::vector<ledger::Account> before = Balances();
  const ledger::Account customer0 = Account(Customer());
  EXPECT_EQ(Rc(Iso(Inbound(OurCard("0200", 1'000), "999999"))), "58") << "unknown acquirer";
  EXPECT_EQ(Rc(Send(Inbound(OurCard("0200", 1'000)), "DAEDONG")), "58") << "CN is another bank";
  EXPECT_EQ(Rc(Send(OurCard("0200", 1'000), "KORYO")), "58")
      << "a bank's connection without its field 32";
  EXPECT_EQ(Rc(Iso(Inbound(CardPayment("0200", PanWithPrefix("950123", 3), 1'000)))), "14")
      << "another bank's card at another bank's merchant is not ours to approve";
  EXPECT_EQ(Rc(Iso(Inbound(SimPayment("9520000000000017", 1'000, 1)))), "14");
  EXPECT_EQ(Rc(Iso(Inbound(OurCard("0200", 1'000), "600300"))), "58");
  Message bad_cvv = Inbound(OurCard("0200", 1'000));
  bad_cvv.Set(48, BuildField48(Ours().issued.cvv2 == "999" ? "998" : "999"));
  EXPECT_EQ(Rc(Iso(bad_cvv)), "05") << "CVV2 verified as at our merchants";
  Message no_cvv = Inbound(OurCard("0200", 1'000));
  no_cvv.Clear(48);
  EXPECT_EQ(Rc(Iso(no_cvv)), "05");
  EXPECT_EQ(Rc(Iso(Inbound(OurCard("0200", 50'000'001)))), "61") << "our card's single limit";
  Message split = Inbound(OurCard("0200", 1'000));
  split.Set(48, std::string(split.Get(48)) + "DLVF03100");
  EXPECT_EQ(Rc(Iso(split)), "12") << "no delivery split at another bank's merchant";
  Message pin = Inbound(OurCard("0200", 1'000));
  pin.Set(52, std::string(8, '\x11'));
  EXPECT_EQ(Rc(Iso(pin)), "58") << "no zone PIN key (zpk-KORYO) shared with the acquirer";
  Message usd = Inbound(OurCard("0200", 1'000));
  usd.Set(49, "840");
  EXPECT_EQ(Rc(Iso(usd)), "58") << "KORYO has no interbank account in USD";
  ExpectSame(Balances(), before);
  EXPECT_EQ(Account(Customer()).debits_posted, customer0.debits_posted);

  // The right certificate, and our own acquirer id on our own terminal.
  EXPECT_EQ(Rc(Send(Inbound(OurCard("0200", 1'000)), "KORYO")), "00");
  Message own = OurCard("0200", 1'000);
  own.Set(32, bank_().config.acquirer_id);
  EXPECT_EQ(Rc(Iso(own)), "00") << "our acquirer id: our terminal and merchant";
  EXPECT_EQ(Account(Interbank("KORYO")).credits_posted, 1'000u);
}

// The same rule through the real ISO server over mutual TLS: the server
// takes the CN from the acquirer's certificate (signed by the CA the switch
// trusts) and the authorizer checks it against field 32's bank.
TEST_F(InterbankInboundTest, CertificateCnOfARealMutualTlsConnectionMustBeTheAcquirersBank) {
  if (!tls_test::HaveOpenssl()) GTEST_SKIP() << "no openssl command line";
  testing::TempDir dir;
  tls_test::MakeCert(dir.path(), "server", "localhost");
  tls_test::MakeCert(dir.path(), "ca", "Narae Test Acquirer CA");
  tls_test::MakeCert(dir.path(), "koryo", "KORYO", "ca");
  tls_test::MakeCert(dir.path(), "daedong", "DAEDONG", "ca");
  tls_test::MakeCert(dir.path(), "stranger", "KORYO");  // self-signed: not the CA's
  ServerOptions o;
  o.iso_listen = "127.0.0.1:0";
  o.threads = 1;
  o.summary_interval_ms = 0;
  o.tls.cert_file = dir.Sub("server.crt");
  o.tls.key_file = dir.Sub("server.key");
  o.tls.client_ca_file = dir.Sub("ca.crt");
  Result<std::unique_ptr<IsoServer>> server = IsoServer::Start(o, auth_.get(), nullptr);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const uint16_t port = (*server)->port();
  const std::string ca = dir.Sub("server.crt");
  const std::vector<ledger::Account> before = Balances();

  // KORYO's acquirer id in field 32 over DAEDONG's certificate: 58.
  std::optional<Message> r = tls_test::TlsRoundTrip(port, ca, Inbound(OurCard("0200", 1'000)),
                                                    dir.Sub("daedong.crt"), dir.Sub("daedong.key"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Get(39), "58");
  // A KORYO certificate the CA did not sign never gets a handshake.
  EXPECT_FALSE(tls_test::TlsRoundTrip(port, ca, Inbound(OurCard("0200", 1'000)),
                                      dir.Sub("stranger.crt"), dir.Sub("stranger.key"))
                   .has_value());
  // KORYO's connection sending a request without field 32 (as our own terminal).
  r = tls_test::TlsRoundTrip(port, ca, OurCard("0200", 1'000), dir.Sub("koryo.crt"),
                             dir.Sub("koryo.key"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Get(39), "58");
  ExpectSame(Balances(), before);

  // KORYO's certificate and KORYO's acquirer id: approved, KORYO owes nothing,
  // we owe KORYO the amount.
  r = tls_test::TlsRoundTrip(port, ca, Inbound(OurCard("0200", 1'000)), dir.Sub("koryo.crt"),
                             dir.Sub("koryo.key"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Get(39), "00");
  EXPECT_EQ(Account(Interbank("KORYO")).credits_posted, 1'000u);
  (*server)->Shutdown();
}

// Payments both ways: a KORYO card at our merchant (KORYO owes us) and our
// card at KORYO's and DAEDONG's merchants (we owe them). The merchant's
// settlement counts only its own captures and the day's positions sum to 0.
TEST_F(InterbankInboundTest, PaymentsBothWaysNetPerBankToZero) {
  ASSERT_EQ(Rc(Iso(CardPayment("0200", PanWithPrefix("950123", 1), 35'000))), "00");
  ASSERT_EQ(Rc(Iso(Inbound(OurCard("0200", 12'000)))), "00");
  Message hold = Inbound(OurCard("0100", 9'000), "600200");
  ASSERT_EQ(Rc(Iso(hold)), "00");
  ASSERT_EQ(Rc(Iso(Inbound(Completion(hold, 3'000), "600200"))), "00");
  DayRecord day;
  SettleSummary settled;
  ASSERT_NO_FATAL_FAILURE(CloseDayAndSettle("SOCKS001", &day, &settled));
  ASSERT_EQ(settled.settled.size(), 1u);
  EXPECT_EQ(settled.settled[0].captures_minor, 35'000u) << "no merchant of ours was paid";
  Result<std::vector<InterbankSettlement>> net = SettleInterbank(*ledger_, day.day, false);
  ASSERT_TRUE(net.ok()) << net.status().ToString();
  ASSERT_EQ(net->size(), 1u);
  std::map<std::string, InterbankPosition> pos;
  int64_t sum = 0;
  for (const InterbankPosition& p : net->at(0).positions) {
    pos[p.bank_id] = p;
    sum += p.net_minor;
  }
  EXPECT_EQ(sum, 0);
  EXPECT_EQ(pos.at("KORYO").due_to_minor, 12'000u);
  EXPECT_EQ(pos.at("KORYO").due_from_minor, 35'000u);
  EXPECT_EQ(pos.at("KORYO").net_minor, -23'000);
  EXPECT_EQ(pos.at("DAEDONG").due_to_minor, 3'000u);
  EXPECT_EQ(pos.at("DAEDONG").net_minor, 3'000);
  EXPECT_EQ(pos.at(bank_().config.bank_id).net_minor, 20'000);
  for (const std::string b : {"KORYO", "DAEDONG", "HWANGHAE"}) {
    const ledger::Account a = Account(Interbank(b));
    EXPECT_EQ(a.debits_posted, a.credits_posted) << b << ": the net cleared it";
  }
}

// A PIN from KORYO's acquirer host is enciphered under the zone PIN key we
// share with KORYO (zpk-KORYO): the right PIN approves, a wrong one is 55 and
// counted towards the card's PIN tries, a block under another key is wrong
// too, and DAEDONG (no zone key) still gets 58.
TEST_F(InterbankInboundTest, InboundPinUnderTheZoneKeyIsVerifiedAndCounted) {
  Result<nc::Bytes> zpk = nc::FromHex("0123456789ABCDEFFEDCBA9876543210");
  ASSERT_TRUE(zpk.ok());
  ASSERT_TRUE(keys_
                  ->Import("zpk-KORYO", nc::KeyType::kTpk, nc::KeyAlgorithm::kTdes,
                           nc::SecretBytes(nc::ByteView(zpk->data(), zpk->size())))
                  .ok());
  Stop();
  Start();  // the authorizer sees the new key
  const std::string pan = Ours().issued.pan;
  const std::string right = Ours().issued.pin;
  const std::string wrong = right == "0000" ? "1111" : "0000";
  auto with_pin = [&](const nc::Bytes& key, const std::string& pin, const std::string& field32) {
    Message m = Inbound(OurCard("0200", 700), field32);
    m.Clear(48);
    Result<nc::Bytes> block = nc::EncryptPinBlock(nc::PinBlockFormat::kIso0, key, pin, pan);
    EXPECT_TRUE(block.ok());
    m.SetBytes(52, *block);
    return m;
  };
  const ledger::Account customer0 = Account(Customer());
  Message ok = with_pin(*zpk, right, "600100");
  ASSERT_EQ(Rc(Iso(ok)), "00");
  std::optional<ledger::Transfer> t = InboundTransfer("KORYO", ok);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->amount_minor, 700u);
  EXPECT_EQ(t->code, 206u);
  EXPECT_EQ(Account(Customer()).debits_posted, customer0.debits_posted + 700);

  EXPECT_EQ(Rc(Iso(with_pin(*zpk, wrong, "600100"))), "55");
  nc::Bytes other = *zpk;
  other[0] ^= 0x02;  // another key (DES parity bits aside)
  EXPECT_EQ(Rc(Iso(with_pin(other, right, "600100"))), "55") << "a block under another key";
  EXPECT_EQ(Rc(Iso(with_pin(*zpk, right, "600200"))), "58") << "DAEDONG has no zone PIN key";
  EXPECT_EQ(Rc(Iso(with_pin(*zpk, wrong, "600100"))), "75") << "the third wrong PIN blocks";
  EXPECT_EQ(Rc(Iso(with_pin(*zpk, right, "600100"))), "75");
  EXPECT_EQ(Account(Customer()).debits_posted, customer0.debits_posted + 700);
}

// The acquirer id of `narae bank add`: digits, not ours, not another bank's.
TEST_F(InterbankInboundTest, BankAddAcquirerIdIsValidated) {
  OtherBank b{"PYONGYANG", "Pyongyang Bank", {{"980000", "980099"}}, {}, {}, {}};
  for (const std::string& bad :
       std::vector<std::string>{"60A100", "123456789012", "600100", bank_().config.acquirer_id}) {
    b.acquirer_id = bad;
    EXPECT_FALSE(AddOtherBank(*ledger_, b, {408}).ok()) << bad;
  }
  b.acquirer_id = "600400";
  Result<OtherBank> r = AddOtherBank(*ledger_, b, {408});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Result<std::vector<OtherBank>> all = ListOtherBanks(*ledger_);
  ASSERT_TRUE(all.ok());
  const OtherBank* found = FindBankForAcquirer(*all, "600400");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->id, "PYONGYANG");
  EXPECT_EQ(FindBankForAcquirer(*all, ""), nullptr);
  // `narae bank add --acquirer-id` stores it (and refuses a bad one).
  Stop();
  const std::string base =
      "bank add --data " + dir_.path() + " --id B --bin-range 981000-981099 --acquirer-id ";
  EXPECT_NE(Narae(base + "12x").first, 0);
  auto [rc, out] = Narae(base + "600500 --json");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\"acquirer_id\":\"600500\""), std::string::npos) << out;
  // The text of `bank list` names each bank's acquirer id, or says it has none.
  auto [list_rc, list] = Narae("bank list --data " + dir_.path());
  ASSERT_EQ(list_rc, 0) << list;
  EXPECT_NE(list.find("  acquirer id 600500 (field 32 of its requests)\n"), std::string::npos)
      << list;
  EXPECT_NE(list.find("  acquirer id 600100 "), std::string::npos) << list;
  EXPECT_NE(list.find("  BIN range 981000-981099\n"), std::string::npos) << list;
  EXPECT_NE(list.find("  no acquirer id: "), std::string::npos) << list;
  Start();
  all = ListOtherBanks(*ledger_);
  ASSERT_TRUE(all.ok());
  found = FindBankForAcquirer(*all, "600500");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->id, "B");
}

}  // namespace
}  // namespace narae::switching
