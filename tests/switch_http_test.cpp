// The storefront HTTP/JSON API end to end: a real ledger in a temporary
// folder with the demo bank, the real authorizer, the real HTTP server on a
// loopback port, and a real HTTP client (Boost.Beast): every endpoint and
// error code, idempotent replay and conflict across a restart, cross-merchant
// isolation, signature and replay rejection, ISO 8583 holds captured over
// HTTP and the reverse.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/api.hpp"
#include "switch/api_config.hpp"
#include "switch/api_events.hpp"
#include "switch/api_parse.hpp"
#include "switch/authorizer.hpp"
#include "switch/bank.hpp"
#include "switch/http_server.hpp"
#include "switch/iso8583.hpp"
#include "switch/settlement.hpp"
#include "switch/switch.hpp"
#include "switch/webhook.hpp"
#include "tests/demo_bank_fixture.hpp"
#include "tests/test_util.hpp"
#include "tests/webhook_receiver.hpp"

namespace narae::switching {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace nc = narae::crypto;
using json = nlohmann::json;
using tcp = asio::ip::tcp;

int64_t SystemMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Resp {
  unsigned status = 0;
  std::string body;
  json j;
  std::map<std::string, std::string> headers;
  std::string Code() const {
    return j.contains("error") ? j["error"]["code"].get<std::string>() : std::string();
  }
};

// A keep-alive HTTP/1.1 client.
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
    for (const auto& f : res) r.headers[std::string(f.name_string())] = std::string(f.value());
    r.j = json::parse(r.body, nullptr, false);
    return r;
  }
  tcp::socket& socket() { return socket_; }

 private:
  asio::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

// A client socket with a 4 KiB receive buffer (set before connecting): one
// that takes its answers slowly, so that they wait in the server's socket.
tcp::socket SlowReader(asio::io_context& ioc, uint16_t port) {
  tcp::socket socket(ioc);
  socket.open(tcp::v4());
  socket.set_option(asio::socket_base::receive_buffer_size(4096));
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  return socket;
}

class HttpTest : public ::testing::Test {
 protected:
  // The demo bank is seeded once (keys are slow to make) and copied per test.
  static void SetUpTestSuite() {
    seeded_ = new testing_bank::SeededDemoBank();
    SeedOptions so;
    so.customers = 2;
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
    OpenLedger();
    Start();
  }
  void TearDown() override { Stop(); }

  void OpenLedger() {
    ledger::Options o;
    o.path = dir_.Sub("ledger");
    o.sync = ledger_sync_;
    auto l = ledger::Ledger::Open(o);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    ledger_ = std::move(*l);
  }
  void Start() {
    ASSERT_OK(EnsureApiTerminals(*ledger_, *keys_));
    auto a = MakeAuthorizer({ledger_.get(), keys_.get()}, authorization_json_);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    auth_ = std::move(*a);
    ApiOptions ao = api_options_;
    if (with_webhooks_) {
      auto w = WebhookDispatcher::Start(webhook_options_, ledger_.get(), keys_.get());
      ASSERT_TRUE(w.ok()) << w.status().ToString();
      webhooks_ = std::move(*w);
      ao.extra_metrics = [d = webhooks_.get()](std::string* out) { d->AppendMetrics(out); };
    }
    auto api = Api::Create({ledger_.get(), keys_.get(), auth_.get()}, ao);
    ASSERT_TRUE(api.ok()) << api.status().ToString();
    api_ = std::move(*api);
    HttpServerOptions so = server_options_;
    so.listen = "127.0.0.1:0";
    so.threads = 2;
    auto s = HttpServer::Start(so, api_.get(), auth_.get(), nullptr);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(*s);
    client_ = std::make_unique<Client>(server_->port());
  }
  void Stop() {
    client_.reset();
    if (webhooks_) webhooks_->Stop();
    if (server_) server_->Shutdown();
    if (ledger_) (void)ledger_->Close();
    server_.reset();
    api_.reset();
    webhooks_.reset();
    auth_.reset();
    ledger_.reset();
  }
  void Restart() {
    Stop();
    OpenLedger();
    Start();
  }

  // The aux rows under `prefix` (key, value), in key order.
  std::vector<std::pair<std::string, std::string>> AuxRows(const std::string& prefix) {
    std::vector<std::pair<std::string, std::string>> rows;
    EXPECT_TRUE(ledger_
                    ->ScanAux(prefix,
                              [&](std::string_view k, std::string_view v) {
                                rows.emplace_back(std::string(k), std::string(v));
                                return true;
                              })
                    .ok());
    return rows;
  }

  const DemoMerchant& Merchant(const std::string& id) {
    for (const DemoMerchant& m : bank_.merchants) {
      if (m.merchant.id == id) return m;
    }
    ADD_FAILURE() << "no merchant " << id;
    return bank_.merchants[0];
  }
  const DemoCard& KpwCard(size_t n = 0) {
    size_t seen = 0;
    for (const DemoCard& c : bank_.cards) {
      if (c.issued.card.currency == 408 && seen++ == n) return c;
    }
    ADD_FAILURE() << "no KPW card";
    return bank_.cards[0];
  }

  // A signed request as merchant `m` (empty m: unsigned).
  Resp Call(const std::string& method, const std::string& target, const std::string& body = "",
            const std::string& idem = "", const std::string& m = "SOCKS001",
            int64_t ts_offset_s = 0, std::string nonce = "") {
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.body() = body;
    if (!idem.empty()) req.set("Idempotency-Key", idem);
    if (!m.empty()) {
      if (nonce.empty())
        nonce = "n" + std::to_string(++nonce_seq_) + "-" + std::to_string(SystemMs());
      for (auto& [k, v] : SignedHeaders(m, Merchant(m).api_secret_hex, method, target, body,
                                        SystemMs() / 1000 + ts_offset_s, nonce)) {
        req.set(k, v);
      }
    }
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    return client_->Send(std::move(req));
  }
  std::string PayBody(uint64_t amount, const std::string& capture = "manual",
                      const std::string& order = "order-1", const DemoCard* card = nullptr,
                      std::string cvv2 = "") {
    const DemoCard& c = card ? *card : KpwCard();
    json j = {{"amount", amount},
              {"currency", "KPW"},
              {"order_ref", order},
              {"capture", capture},
              {"card",
               {{"pan", c.issued.pan},
                {"expiry", c.issued.card.expiry},
                {"cvv2", cvv2.empty() ? c.issued.cvv2 : cvv2}}}};
    return j.dump();
  }
  Resp Pay(uint64_t amount, const std::string& capture = "manual",
           const std::string& order = "order-1") {
    return Call("POST", "/v1/payments", PayBody(amount, capture, order), NextKey());
  }
  std::string NextKey() { return "key-" + std::to_string(++key_seq_); }
  // Every event of the feed (as merchant m), oldest first.
  std::vector<json> AllEvents(const std::string& m = "SOCKS001") {
    std::vector<json> out;
    std::string after;
    for (int page = 0; page < 100; ++page) {
      Resp r =
          Call("GET", "/v1/events?limit=100" + (after.empty() ? "" : "&after=" + after), "", "", m);
      EXPECT_EQ(r.status, 200u) << r.body;
      if (r.status != 200) break;
      for (const json& e : r.j["data"]) out.push_back(e);
      if (!r.j["has_more"] || r.j["data"].empty()) break;
      after = r.j["next_after"];
    }
    return out;
  }
  static std::vector<std::string> Types(const std::vector<json>& events) {
    std::vector<std::string> t;
    for (const json& e : events) t.push_back(e["type"]);
    return t;
  }

  // ISO 8583 straight into the same engine.
  Message Iso(Message m) {
    std::promise<Message> done;
    auto f = done.get_future();
    auth_->Handle(std::move(m), ConnectionInfo{}, [&](Message r) { done.set_value(std::move(r)); });
    return f.get();
  }
  static std::string Field7Now() {
    std::time_t t = static_cast<std::time_t>(SystemMs() / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%02d%02d%02d%02d%02d", tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                  tm.tm_min, tm.tm_sec);
    return buf;
  }
  Message IsoBase(const std::string& mti, const std::string& terminal) {
    Message m(mti);
    m.Set(7, Field7Now());
    char stan[16];
    std::snprintf(stan, sizeof stan, "%06d", ++iso_stan_);
    m.Set(11, stan);
    m.Set(41, terminal);
    std::string merchant = "SOCKS001";
    merchant.resize(15, ' ');
    m.Set(42, merchant);
    return m;
  }

  static inline testing_bank::SeededDemoBank* seeded_ = nullptr;
  testing::TempDir dir_;
  std::unique_ptr<nc::KeyStore> keys_;
  std::unique_ptr<ledger::Ledger> ledger_;
  DemoBank bank_;
  std::unique_ptr<IsoHandler> auth_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<WebhookDispatcher> webhooks_;  // with_webhooks_
  bool with_webhooks_ = false;
  bool ledger_sync_ = false;  // fsync (figures); tests run without
  WebhookOptions webhook_options_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<Client> client_;
  ApiOptions api_options_;
  std::string authorization_json_ = "{}";
  HttpServerOptions server_options_;
  int nonce_seq_ = 0;
  int key_seq_ = 0;
  int iso_stan_ = 0;
};

// Every answer says its type (HttpResponse::content_type, a view of a
// literal): JSON for the API's answers, replays and errors, the Prometheus
// text type for /metrics; each carries its X-Request-Id.
TEST_F(HttpTest, AnswersCarryTheirContentType) {
  const std::string key = NextKey();
  Resp paid = Call("POST", "/v1/payments", PayBody(1200), key);
  ASSERT_EQ(paid.status, 201u) << paid.body;
  EXPECT_EQ(paid.headers["Content-Type"], "application/json");
  EXPECT_TRUE(paid.headers["X-Request-Id"].starts_with("req_")) << paid.headers["X-Request-Id"];
  EXPECT_EQ(paid.headers["X-Request-Id"].size(), 20u);
  Resp replay = Call("POST", "/v1/payments", PayBody(1200), key);
  EXPECT_EQ(replay.status, 201u);
  EXPECT_EQ(replay.headers["Content-Type"], "application/json");
  EXPECT_NE(replay.headers["X-Request-Id"], paid.headers["X-Request-Id"]);
  Resp bad = Call("POST", "/v1/payments", "{", NextKey());
  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(bad.headers["Content-Type"], "application/json");
  Resp unsigned_call = Call("GET", "/v1/payments", "", "", "");
  EXPECT_EQ(unsigned_call.status, 401u);
  EXPECT_EQ(unsigned_call.headers["Content-Type"], "application/json");
  Resp health = Call("GET", "/healthz", "", "", "");
  EXPECT_EQ(health.status, 200u);
  EXPECT_EQ(health.headers["Content-Type"], "application/json");
  Resp metrics = Call("GET", "/metrics", "", "", "");
  EXPECT_EQ(metrics.status, 200u);
  EXPECT_EQ(metrics.headers["Content-Type"], "text/plain; version=0.0.4");
}

TEST_F(HttpTest, HoldCaptureRefundLifecycle) {
  Resp p = Pay(10'000);
  ASSERT_EQ(p.status, 201u) << p.body;
  EXPECT_EQ(p.j["status"], "authorized");
  EXPECT_EQ(p.j["amount"], 10'000);
  EXPECT_EQ(p.j["currency"], "KPW");
  EXPECT_EQ(p.j["order_ref"], "order-1");
  EXPECT_EQ(p.j["channel"], "api");
  std::string masked = p.j["payment_method"]["masked"];
  EXPECT_EQ(masked.find(KpwCard().issued.pan.substr(6, 6)), std::string::npos) << "PAN masked";
  // The CVV2 is never echoed: no such member, and not as a string value (its
  // three digits alone may occur in any number of the answer, e.g. the time).
  EXPECT_EQ(p.body.find("cvv"), std::string::npos);
  EXPECT_EQ(p.body.find("\"" + KpwCard().issued.cvv2 + "\""), std::string::npos);
  const std::string id = p.j["id"];
  ASSERT_EQ(id.substr(0, 4), "pay_");

  Resp g = Call("GET", "/v1/payments/" + id);
  ASSERT_EQ(g.status, 200u) << g.body;
  EXPECT_EQ(g.j["status"], "authorized");

  Resp over = Call("POST", "/v1/payments/" + id + "/capture", R"({"amount":10001})", NextKey());
  EXPECT_EQ(over.status, 422u) << over.body;
  EXPECT_EQ(over.Code(), "amount_exceeds_authorized");

  Resp c = Call("POST", "/v1/payments/" + id + "/capture", R"({"amount":7000})", NextKey());
  ASSERT_EQ(c.status, 200u) << c.body;
  EXPECT_EQ(c.j["status"], "captured");
  EXPECT_EQ(c.j["amount_captured"], 7000);
  // The rest of the hold is released: the hold is posted for 7000 only.
  auto hold_id = LookupPaymentByRrn(*ledger_, id.substr(4));
  ASSERT_TRUE(hold_id);
  auto hold = ledger_->LookupHold(hold_id->transfer);
  ASSERT_TRUE(hold);
  EXPECT_EQ(hold->state, ledger::HoldState::kPosted);
  EXPECT_EQ(hold->posted_amount_minor, 7000u);

  const std::string again_key = NextKey();
  Resp again = Call("POST", "/v1/payments/" + id + "/capture", "{}", again_key);
  EXPECT_EQ(again.status, 409u) << again.body;
  EXPECT_EQ(again.Code(), "invalid_state");
  Resp again2 = Call("POST", "/v1/payments/" + id + "/capture", "{}", again_key);
  EXPECT_EQ(again2.body, again.body);  // the refusal is stored under its key too
  EXPECT_EQ(again2.headers["Idempotent-Replayed"], "true");
  Resp v = Call("POST", "/v1/payments/" + id + "/void", "{}", NextKey());
  EXPECT_EQ(v.status, 409u);
  EXPECT_EQ(v.Code(), "invalid_state");

  Resp r1 = Call("POST", "/v1/payments/" + id + "/refunds", R"({"amount":3000})", NextKey());
  ASSERT_EQ(r1.status, 201u) << r1.body;
  EXPECT_EQ(r1.j["object"], "refund");
  EXPECT_EQ(r1.j["amount"], 3000);
  Resp r2 = Call("POST", "/v1/payments/" + id + "/refunds", R"({"amount":"3000"})", NextKey());
  ASSERT_EQ(r2.status, 201u) << r2.body;
  Resp r3 = Call("POST", "/v1/payments/" + id + "/refunds", R"({"amount":1001})", NextKey());
  EXPECT_EQ(r3.status, 422u) << r3.body;
  EXPECT_EQ(r3.Code(), "amount_exceeds_captured");
  g = Call("GET", "/v1/payments/" + id);
  EXPECT_EQ(g.j["status"], "partially_refunded");
  EXPECT_EQ(g.j["amount_refunded"], 6000);
  Resp r4 = Call("POST", "/v1/payments/" + id + "/refunds", "{}", NextKey());
  ASSERT_EQ(r4.status, 201u) << r4.body;
  EXPECT_EQ(r4.j["amount"], 1000);
  g = Call("GET", "/v1/payments/" + id);
  EXPECT_EQ(g.j["status"], "refunded");
  Resp r5 = Call("POST", "/v1/payments/" + id + "/refunds", "{}", NextKey());
  EXPECT_EQ(r5.status, 409u) << r5.body;
}

// AppendJsonString looks for a byte to escape eight bytes at a time: every
// byte value at every position of strings of 0..40 bytes (words, the tail
// after them, both) is written as nlohmann::json::dump() writes it.
TEST(HttpJson, AppendJsonStringEscapesEveryByteAtEveryPosition) {
  for (size_t size = 1; size <= 40; ++size) {
    for (size_t at = 0; at < size; ++at) {
      for (int b = 0; b < 0x80; ++b) {
        std::string s(size, 'a');
        s[at] = static_cast<char>(b);
        std::string out = "x";
        AppendJsonString(&out, s);
        ASSERT_EQ(out, "x" + json(s).dump()) << "size " << size << " at " << at << " byte " << b;
      }
      // Bytes above 0x7f (UTF-8) are never escaped, whatever their neighbours.
      std::string s(size, '\xc3');
      s[at] = '\x1f';
      std::string out;
      AppendJsonString(&out, s);
      ASSERT_EQ(out.substr(0, at + 1), "\"" + std::string(at, '\xc3')) << size << " " << at;
      ASSERT_EQ(out.substr(at + 1, 6), "\\u001f") << size << " " << at;
    }
    // Only bytes above 0x7f (every one of them, a whole string of it): the
    // fast path copies them as they are.
    for (int b = 0x80; b <= 0xff; ++b) {
      const std::string s(size, static_cast<char>(b));
      std::string out;
      AppendJsonString(&out, s);
      ASSERT_EQ(out, "\"" + s + "\"") << "size " << size << " byte " << b;
    }
  }
  std::string empty;
  AppendJsonString(&empty, "");
  EXPECT_EQ(empty, "\"\"");
}

// A view of the output itself is written as it was, also when the output
// must grow (its bytes move): the fast path appended from a view that its
// own push_back could have freed (seen while reading it for this change).
TEST(HttpJson, AppendJsonStringOfAViewOfItsOwnOutput) {
  for (const std::string& text :
       {std::string("plain text of some length"), std::string("needs \"escapes\" and a \\ here")}) {
    std::string out = text;
    out.shrink_to_fit();
    AppendJsonString(&out, std::string_view(out));
    EXPECT_EQ(out, text + json(text).dump());
    std::string tail = "ab" + text;
    tail.shrink_to_fit();
    AppendJsonString(&tail, std::string_view(tail).substr(2));
    EXPECT_EQ(tail, "ab" + text + json(text).dump());
  }
}

// The answers and events the sequencer writes by hand (api.cpp JsonOut,
// api_events.cpp AppendJsonString) are the bytes nlohmann::json writes for
// the same payment (GET), escapes included; the stored metadata reads back.
TEST_F(HttpTest, StoredAnswerReadsLikeTheGetOfThePayment) {
  const std::string order = "o\"rd\\er/1";
  std::string last_body;
  for (const std::string capture : {"manual", "automatic"}) {
    Resp p = Pay(1234, capture, order);
    ASSERT_EQ(p.status, 201u) << p.body;
    EXPECT_EQ(p.j["order_ref"], order);
    Resp g = Call("GET", "/v1/payments/" + p.j["id"].get<std::string>());
    ASSERT_EQ(g.status, 200u) << g.body;
    EXPECT_EQ(g.body, p.body);
    last_body = p.body;
    std::vector<json> events = AllEvents();
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back()["data"].dump(), p.body);
  }
  const std::string id = json::parse(last_body)["id"];
  Resp r = Call("POST", "/v1/payments/" + id + "/refunds", R"({"amount":34})", NextKey());
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.j["payment_id"], id);
  EXPECT_EQ(r.j["amount"], 34);
  EXPECT_EQ(json::parse(r.body).dump(), r.body);
  std::vector<json> events = AllEvents();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["type"], "payment.refunded");
  EXPECT_EQ(events.back()["data"].dump(), r.body);
  Resp bad = Call("POST", "/v1/payments", R"({"amount":1,"currency":"KPW"})", NextKey());
  ASSERT_EQ(bad.status, 400u) << bad.body;
  EXPECT_EQ(json::parse(bad.body).dump(), bad.body);
  EXPECT_EQ(bad.Code(), "invalid_request");
}

TEST_F(HttpTest, AutomaticCaptureVoidAndDeliverySplit) {
  const ledger::AccountId logistics = bank_.config.ForCurrency(408)->logistics;
  json body = json::parse(PayBody(5000, "automatic", "food-7"));
  body["split"] = {{"delivery_fee", 800}};
  Resp a = Call("POST", "/v1/payments", body.dump(), NextKey());
  ASSERT_EQ(a.status, 201u) << a.body;
  EXPECT_EQ(a.j["status"], "captured");
  EXPECT_EQ(a.j["split"]["delivery_fee"], 800);
  auto acc = ledger_->LookupAccount(logistics);
  ASSERT_TRUE(acc);
  EXPECT_EQ(acc->credits_posted, 800u);
  Resp cap =
      Call("POST", "/v1/payments/" + a.j["id"].get<std::string>() + "/capture", "{}", NextKey());
  EXPECT_EQ(cap.status, 409u);

  Resp h = Pay(4000);
  ASSERT_EQ(h.status, 201u);
  const std::string id = h.j["id"];
  Resp v = Call("POST", "/v1/payments/" + id + "/void", "{}", NextKey());
  ASSERT_EQ(v.status, 200u) << v.body;
  EXPECT_EQ(v.j["status"], "voided");
  EXPECT_EQ(Call("GET", "/v1/payments/" + id).j["status"], "voided");
  Resp c = Call("POST", "/v1/payments/" + id + "/capture", "{}", NextKey());
  EXPECT_EQ(c.status, 409u);
  EXPECT_EQ(c.Code(), "invalid_state");
  Resp bad = Call(
      "POST", "/v1/payments",
      [&] {
        json b = json::parse(PayBody(100));
        b["split"] = {{"delivery_fee", 101}};
        return b.dump();
      }(),
      NextKey());
  EXPECT_EQ(bad.status, 400u);
}

TEST_F(HttpTest, ExpiredHoldCannotBeCaptured) {
  Stop();
  authorization_json_ = R"({"hold_timeout_s": 1})";
  OpenLedger();
  Start();
  Resp p = Pay(500);
  ASSERT_EQ(p.status, 201u) << p.body;
  const std::string id = p.j["id"];
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  ASSERT_OK(ledger_->Tick());
  Resp c = Call("POST", "/v1/payments/" + id + "/capture", "{}", NextKey());
  EXPECT_EQ(c.status, 410u) << c.body;
  EXPECT_EQ(c.Code(), "payment_expired");
  Resp v = Call("POST", "/v1/payments/" + id + "/void", "{}", NextKey());
  EXPECT_EQ(v.Code(), "payment_expired");
  EXPECT_EQ(Call("GET", "/v1/payments/" + id).j["status"], "expired");
}

TEST_F(HttpTest, IdempotentReplayAndConflictSurviveRestart) {
  const std::string body = PayBody(2500, "manual", "idem-1");
  Resp first = Call("POST", "/v1/payments", body, "idem-A");
  ASSERT_EQ(first.status, 201u) << first.body;
  Resp replay = Call("POST", "/v1/payments", body, "idem-A");
  EXPECT_EQ(replay.status, 201u);
  EXPECT_EQ(replay.body, first.body);
  EXPECT_EQ(replay.headers["Idempotent-Replayed"], "true");
  Resp conflict = Call("POST", "/v1/payments", PayBody(2501, "manual", "idem-1"), "idem-A");
  EXPECT_EQ(conflict.status, 409u);
  EXPECT_EQ(conflict.Code(), "idempotency_conflict");
  // A decline is an answer too.
  Resp declined =
      Call("POST", "/v1/payments", PayBody(100, "manual", "x", nullptr, "000"), "idem-B");
  // (000 might be the right CVV2 by chance; then pick another.)
  if (declined.status == 201u) {
    declined = Call("POST", "/v1/payments", PayBody(100, "manual", "x", nullptr, "001"), "idem-C");
  }
  ASSERT_EQ(declined.status, 402u) << declined.body;
  EXPECT_EQ(declined.Code(), "invalid_cvv");
  // Idempotency keys are per merchant: another merchant may reuse it.
  Resp other =
      Call("POST", "/v1/payments", PayBody(2500, "manual", "idem-1"), "idem-A", "NOODLE01");
  ASSERT_EQ(other.status, 201u) << other.body;
  EXPECT_NE(other.j["id"], first.j["id"]);

  Restart();
  Resp after = Call("POST", "/v1/payments", body, "idem-A");
  EXPECT_EQ(after.status, 201u);
  EXPECT_EQ(after.body, first.body);
  Resp after_conflict = Call("POST", "/v1/payments", PayBody(1, "manual", "idem-1"), "idem-A");
  EXPECT_EQ(after_conflict.status, 409u);
  EXPECT_EQ(after_conflict.Code(), "idempotency_conflict");
  // Exactly one hold for the key: the payment is still authorized once.
  EXPECT_EQ(Call("GET", "/v1/payments/" + first.j["id"].get<std::string>()).j["status"],
            "authorized");
  Resp missing = Call("POST", "/v1/payments", body, "");
  EXPECT_EQ(missing.status, 400u);
  EXPECT_EQ(missing.Code(), "invalid_request");
}

// An answer that is its event's data is stored once: the idempotency
// record names the event (docs/api.md, "Records"). Records written inline
// by earlier versions (a data folder of main before the change) still
// replay, also after a restart; a record naming a missing event is a 500,
// never a wrong answer.
TEST_F(HttpTest, IdempotencyRecordNamesItsEventAndInlineRecordsStillReplay) {
  const std::string body = PayBody(700, "manual", "idem-ref");
  Resp first = Call("POST", "/v1/payments", body, "idem-ref-1");
  ASSERT_EQ(first.status, 201u) << first.body;
  const std::vector<std::pair<std::string, std::string>> records = AuxRows("ap/i/SOCKS001/");
  ASSERT_EQ(records.size(), 1u);
  const auto [key, value] = records[0];
  const size_t nl = value.find('\n');
  ASSERT_NE(nl, std::string::npos);
  const std::string fingerprint = value.substr(0, nl);
  EXPECT_EQ(value.substr(nl, 6), "\n201\n@");
  EXPECT_TRUE(value.find("\n@ap/e/SOCKS001/") != std::string::npos) << value;
  EXPECT_EQ(value.find("payment", nl), std::string::npos) << "the body is not repeated: " << value;
  Resp replay = Call("POST", "/v1/payments", body, "idem-ref-1");
  EXPECT_EQ(replay.status, 201u);
  EXPECT_EQ(replay.body, first.body);
  EXPECT_EQ(replay.headers["Idempotent-Replayed"], "true");

  // The inline form an older version wrote: "<fingerprint>\n<status>\n<body>".
  const std::string old_body = R"({"amount":700,"note":"written by an older version"})";
  ASSERT_OK(ledger_->Execute(
      [&](ledger::Txn& txn) { txn.PutAux(key, fingerprint + "\n201\n" + old_body); }));
  Restart();
  Resp inline_replay = Call("POST", "/v1/payments", body, "idem-ref-1");
  EXPECT_EQ(inline_replay.status, 201u);
  EXPECT_EQ(inline_replay.body, old_body);
  EXPECT_EQ(inline_replay.headers["Idempotent-Replayed"], "true");
  Resp conflict = Call("POST", "/v1/payments", PayBody(701, "manual", "idem-ref"), "idem-ref-1");
  EXPECT_EQ(conflict.status, 409u);
  EXPECT_EQ(conflict.Code(), "idempotency_conflict");

  // A record naming an event that is not there (a damaged folder).
  ASSERT_OK(ledger_->Execute([&](ledger::Txn& txn) {
    txn.PutAux(key, fingerprint + "\n201\n@ap/e/SOCKS001/ffffffffffffffff");
  }));
  Resp broken = Call("POST", "/v1/payments", body, "idem-ref-1");
  EXPECT_EQ(broken.status, 500u) << broken.body;
  EXPECT_EQ(broken.Code(), "internal_error");
  EXPECT_EQ(Call("GET", "/v1/payments/" + first.j["id"].get<std::string>()).j["status"],
            "authorized");
}

// A payment's metadata lives in its list row (ap/l/<merchant>/<16 hex ns
// of its transfer><RRN>), which GET finds from the transfer; folders written
// before hold it in ap/p/<RRN> with an empty list row, and read as they are
// (GET, the list, a capture) across a restart.
TEST_F(HttpTest, MetadataInTheListRowAndOlderMetadataRowsStillRead) {
  Resp p = Pay(321, "manual", "new-form");
  ASSERT_EQ(p.status, 201u) << p.body;
  const std::string id = p.j["id"];
  const std::string rrn = id.substr(4);
  std::vector<std::pair<std::string, std::string>> rows;
  ASSERT_OK(ledger_->ScanAux("ap/l/SOCKS001/", [&](std::string_view k, std::string_view v) {
    if (k.ends_with(rrn)) rows.emplace_back(std::string(k), std::string(v));
    return true;
  }));
  ASSERT_EQ(rows.size(), 1u);
  const auto [key, value] = rows[0];
  json meta = json::parse(value, nullptr, false);
  ASSERT_TRUE(meta.is_object()) << value;
  EXPECT_EQ(meta["o"], "new-form");
  EXPECT_FALSE(ledger_->GetAux("ap/p/" + rrn)) << "one row per payment";
  const uint64_t key_ns = std::stoull(key.substr(key.size() - 28, 16), nullptr, 16);
  EXPECT_EQ(p.j["created_at_ms"].get<uint64_t>(), key_ns / 1'000'000);
  Resp g = Call("GET", "/v1/payments/" + id);
  ASSERT_EQ(g.status, 200u) << g.body;
  EXPECT_EQ(g.body, p.body);

  // The form written before: the metadata in ap/p/<RRN>, the list row empty.
  meta["o"] = "old-form";
  ASSERT_OK(ledger_->Execute([&](ledger::Txn& txn) {
    txn.PutAux("ap/p/" + rrn, meta.dump());
    txn.PutAux(key, "");
  }));
  Restart();
  Resp old_get = Call("GET", "/v1/payments/" + id);
  ASSERT_EQ(old_get.status, 200u) << old_get.body;
  EXPECT_EQ(old_get.j["order_ref"], "old-form");
  EXPECT_EQ(old_get.j["capture"], "manual");
  EXPECT_EQ(old_get.j["channel"], "api");
  Resp list = Call("GET", "/v1/payments?order_ref=old-form");
  ASSERT_EQ(list.status, 200u) << list.body;
  ASSERT_EQ(list.j["data"].size(), 1u) << list.body;
  EXPECT_EQ(list.j["data"][0]["id"], id);
  Resp cap = Call("POST", "/v1/payments/" + id + "/capture", R"({"amount":300})", NextKey());
  ASSERT_EQ(cap.status, 200u) << cap.body;
  EXPECT_EQ(cap.j["order_ref"], "old-form");
  EXPECT_EQ(cap.j["amount_captured"], 300);
  // A payment made now is listed after it, in the new form.
  Resp later = Pay(322, "manual", "new-form-2");
  ASSERT_EQ(later.status, 201u) << later.body;
  Resp all = Call("GET", "/v1/payments?limit=100");
  ASSERT_GE(all.j["data"].size(), 2u);
  EXPECT_EQ(all.j["data"].back()["id"], later.j["id"]);
  EXPECT_EQ(all.j["data"].back()["order_ref"], "new-form-2");
  // Captured, refunded and voided payments keep their metadata.
  const std::string later_id = later.j["id"];
  ASSERT_EQ(Call("POST", "/v1/payments/" + later_id + "/capture", "{}", NextKey()).status, 200u);
  Resp refund = Call("POST", "/v1/payments/" + later_id + "/refunds", R"({"amount":2})", NextKey());
  ASSERT_EQ(refund.status, 201u) << refund.body;
  Resp after = Call("GET", "/v1/payments/" + later_id);
  EXPECT_EQ(after.j["status"], "partially_refunded") << after.body;
  EXPECT_EQ(after.j["order_ref"], "new-form-2");
  EXPECT_EQ(after.j["channel"], "api");
  EXPECT_EQ(after.j["created_at_ms"], later.j["created_at_ms"]);
  Resp held = Pay(323, "manual", "new-form-3");
  ASSERT_EQ(held.status, 201u) << held.body;
  Resp voided =
      Call("POST", "/v1/payments/" + held.j["id"].get<std::string>() + "/void", "{}", NextKey());
  ASSERT_EQ(voided.status, 200u) << voided.body;
  EXPECT_EQ(voided.j["order_ref"], "new-form-3");
}

std::string TestSha256Hex(std::string_view s) {
  auto h = nc::Sha256(nc::ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  EXPECT_TRUE(h.ok());
  std::string hex = nc::ToHex(*h);
  for (char& c : hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return hex;
}

// The fingerprint is made from the body's SHA-256 (the one the signature
// check computed): "b" + hex digest + " POST " + target. Records with
// the form written before (64 hex of SHA-256(method \n target \n body)) still
// replay and conflict, across a restart, on the sequencer (Before()) and on
// the I/O thread (a request refused before the engine).
TEST_F(HttpTest, FingerprintOfTheBodyDigestAndOlderFingerprintsStillReplay) {
  const std::string body = PayBody(710, "manual", "fp-ref");
  Resp first = Call("POST", "/v1/payments", body, "fp-1");
  ASSERT_EQ(first.status, 201u) << first.body;
  const std::vector<std::pair<std::string, std::string>> records = AuxRows("ap/i/SOCKS001/");
  ASSERT_EQ(records.size(), 1u);
  const auto [key, value] = records[0];
  const size_t nl = value.find('\n');
  ASSERT_NE(nl, std::string::npos) << value;
  EXPECT_EQ(value.substr(0, nl), "b" + TestSha256Hex(body) + " POST /v1/payments");
  const std::string rest = value.substr(nl);  // "\n201\n@ap/e/..."

  // The older form, in both the event-reference and the inline record.
  const std::string legacy = TestSha256Hex("POST\n/v1/payments\n" + body);
  ASSERT_OK(ledger_->Execute([&](ledger::Txn& txn) { txn.PutAux(key, legacy + rest); }));
  Restart();
  Resp replay = Call("POST", "/v1/payments", body, "fp-1");
  EXPECT_EQ(replay.status, 201u) << replay.body;
  EXPECT_EQ(replay.body, first.body);
  EXPECT_EQ(replay.headers["Idempotent-Replayed"], "true");
  Resp conflict = Call("POST", "/v1/payments", PayBody(711, "manual", "fp-ref"), "fp-1");
  EXPECT_EQ(conflict.status, 409u) << conflict.body;
  EXPECT_EQ(conflict.Code(), "idempotency_conflict");
  // Refused before the engine (a bad body): the stored answer is read on the
  // I/O thread, the older fingerprint compared there.
  Resp refused = Call("POST", "/v1/payments", R"({"amount":1})", "fp-1");
  EXPECT_EQ(refused.status, 409u) << refused.body;
  const std::string old_body = R"({"amount":710,"note":"inline, older fingerprint"})";
  ASSERT_OK(
      ledger_->Execute([&](ledger::Txn& txn) { txn.PutAux(key, legacy + "\n201\n" + old_body); }));
  Resp inline_replay = Call("POST", "/v1/payments", body, "fp-1");
  EXPECT_EQ(inline_replay.status, 201u);
  EXPECT_EQ(inline_replay.body, old_body);
  // Neither form (a damaged record): not this request.
  ASSERT_OK(
      ledger_->Execute([&](ledger::Txn& txn) { txn.PutAux(key, "x" + legacy.substr(1) + rest); }));
  EXPECT_EQ(Call("POST", "/v1/payments", body, "fp-1").status, 409u);
  // A new key is fingerprinted in the new form again.
  Resp second = Call("POST", "/v1/payments", PayBody(712, "manual", "fp-ref"), "fp-2");
  ASSERT_EQ(second.status, 201u) << second.body;
  EXPECT_EQ(Call("POST", "/v1/payments", PayBody(712, "manual", "fp-ref"), "fp-2").body,
            second.body);
}

// The signing helpers: the keyed signer signs as the one-shot function, and
// the verifier takes the body's digest instead of the body.
// One older fingerprint in 16 starts with 'b', the digest form's first
// character: the two are told apart by length, so such a record replays
// (it answered 409 when the first character decided; found as a flake of the
// test above, whose body changes with each seeded bank).
TEST_F(HttpTest, OlderFingerprintStartingWithTheDigestFormsLetterStillReplays) {
  std::string body;
  for (int i = 0; i < 2000; ++i) {  // ~16 tries expected
    std::string b = PayBody(720, "manual", "fp-b-" + std::to_string(i));
    if (TestSha256Hex("POST\n/v1/payments\n" + b)[0] == 'b') {
      body = b;
      break;
    }
  }
  ASSERT_FALSE(body.empty());
  Resp first = Call("POST", "/v1/payments", body, "fp-b");
  ASSERT_EQ(first.status, 201u) << first.body;
  const std::vector<std::pair<std::string, std::string>> records = AuxRows("ap/i/SOCKS001/");
  ASSERT_EQ(records.size(), 1u);
  const auto [key, value] = records[0];
  const std::string rest = value.substr(value.find('\n'));
  const std::string legacy = TestSha256Hex("POST\n/v1/payments\n" + body);
  ASSERT_EQ(legacy[0], 'b');
  ASSERT_OK(ledger_->Execute([&](ledger::Txn& txn) { txn.PutAux(key, legacy + rest); }));
  Restart();
  Resp replay = Call("POST", "/v1/payments", body, "fp-b");
  EXPECT_EQ(replay.status, 201u) << replay.body;
  EXPECT_EQ(replay.body, first.body);
  Resp conflict = Call("POST", "/v1/payments", PayBody(721, "manual", "fp-b"), "fp-b");
  EXPECT_EQ(conflict.status, 409u) << conflict.body;
  // Refused before the engine: compared on the I/O thread the same way.
  EXPECT_EQ(Call("POST", "/v1/payments", R"({"amount":1})", "fp-b").status, 409u);
  // A digest-form record that is not this request still conflicts.
  ASSERT_OK(ledger_->Execute([&](ledger::Txn& txn) {
    txn.PutAux(key, "b" + TestSha256Hex("other") + " POST /v1/payments" + rest);
  }));
  EXPECT_EQ(Call("POST", "/v1/payments", body, "fp-b").status, 409u);
}

TEST(HttpSigning, KeyedSignerAndVerifierOfTheBodyDigest) {
  const std::string secret_hex = "00112233445566778899aabbccddeeff0011223344556677";
  auto secret = nc::SecretFromHex(secret_hex);
  ASSERT_TRUE(secret.ok());
  auto signer = nc::MerchantRequestSigner::Create(*secret);
  ASSERT_TRUE(signer.ok()) << signer.status().ToString();
  const std::string body = R"({"amount":5})";
  for (int i = 0; i < 2; ++i) {  // the keyed context is reused
    auto a = (*signer)->Sign("POST", "/v1/payments", 1700000000 + i, "nonce-123", body);
    auto b =
        nc::SignMerchantRequest(*secret, "POST", "/v1/payments", 1700000000 + i, "nonce-123", body);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b);
  }
  EXPECT_FALSE((*signer)->Sign("POST", "no-slash", 1700000000, "nonce-123", body).ok());
  EXPECT_FALSE((*signer)->Sign("POST", "/v1/payments", 1700000000, "short", body).ok());
  auto short_secret = nc::SecretFromHex("0011223344");
  ASSERT_TRUE(short_secret.ok());
  EXPECT_FALSE(nc::MerchantRequestSigner::Create(*short_secret).ok());

  auto sig = (*signer)->Sign("POST", "/v1/payments", 1700000000, "nonce-123", body);
  ASSERT_TRUE(sig.ok());
  auto digest =
      nc::Sha256(nc::ByteView(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
  ASSERT_TRUE(digest.ok());
  nc::MerchantRequestVerifier v(nc::MerchantRequestVerifier::Options{});
  EXPECT_EQ(v.VerifyBodyDigest(*secret, "POST", "/v1/payments", 1700000000, "nonce-123",
                               nc::ByteView(digest->data(), 31), *sig, 1700000000)
                .code(),
            StatusCode::kInvalidArgument);
  auto other = nc::Sha256(nc::ByteView(reinterpret_cast<const uint8_t*>("{}"), 2));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(v.VerifyBodyDigest(*secret, "POST", "/v1/payments", 1700000000, "nonce-123", *other,
                               *sig, 1700000000)
                .code(),
            StatusCode::kPermissionDenied);
  EXPECT_OK(v.VerifyBodyDigest(*secret, "POST", "/v1/payments", 1700000000, "nonce-123", *digest,
                               *sig, 1700000000));
  EXPECT_EQ(
      v.Verify(*secret, "POST", "/v1/payments", 1700000000, "nonce-123", body, *sig, 1700000000)
          .code(),
      StatusCode::kAlreadyExists);  // the same nonce, through the body form
}

// The plain card payment reader (ParseCardPaymentBody) against nlohmann: a
// body it accepts is one nlohmann reads into the same members and values
// (the property the fuzz target checks too, here on a deterministic sample
// of mutations of a few bodies); the shapes it leaves to nlohmann.
// `base` with one to three mutations: a byte replaced by one of `bytes`,
// removed or doubled; `state` is an xorshift64 state (a fixed seed gives
// the same sample every run).
std::string Mutate(std::string base, std::string_view bytes, uint64_t* state) {
  auto next = [state] {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
  };
  for (int k = 0, n = 1 + static_cast<int>(next() % 3); k < n && !base.empty(); ++k) {
    const size_t at = next() % base.size();
    switch (next() % 3) {
      case 0:
        base[at] = bytes[next() % bytes.size()];
        break;
      case 1:
        base.erase(at, 1);
        break;
      default:
        base.insert(at, 1, base[at]);
    }
  }
  return base;
}

void ExpectPlainReadsAsNlohmann(std::string_view body) {
  std::optional<CardPaymentBody> p = ParseCardPaymentBody(body);
  if (!p) return;
  json j = json::parse(body, nullptr, false);
  ASSERT_TRUE(!j.is_discarded() && j.is_object()) << body;
  EXPECT_EQ(j.size(), 3u + (p->order_ref ? 1 : 0) + (p->capture ? 1 : 0)) << body;
  ASSERT_TRUE(j.contains("amount") && j.contains("currency") && j.contains("card")) << body;
  EXPECT_EQ(ParseAmountJson(j["amount"]).value_or(p->amount_minor), p->amount_minor) << body;
  if (j["amount"].is_number_unsigned()) {
    EXPECT_EQ(j["amount"].get<uint64_t>(), p->amount_minor);
  }
  EXPECT_EQ(j["currency"], std::string(p->currency)) << body;
  if (p->order_ref) {
    EXPECT_EQ(j["order_ref"], std::string(*p->order_ref)) << body;
  }
  if (p->capture) {
    EXPECT_EQ(j["capture"], std::string(*p->capture)) << body;
  }
  const json& c = j["card"];
  ASSERT_TRUE(c.is_object() && c.size() == 3) << body;
  EXPECT_EQ(c["pan"], std::string(p->pan)) << body;
  EXPECT_EQ(c["expiry"], std::string(p->expiry)) << body;
  EXPECT_EQ(c["cvv2"], std::string(p->cvv2)) << body;
}

TEST(HttpParse, PlainCardBodyReadsAsNlohmannDoes) {
  const std::string plain =
      R"({"amount":12500,"currency":"KPW","order_ref":"o-1","capture":"manual",)"
      R"("card":{"pan":"9408010000000017","expiry":"3011","cvv2":"123"}})";
  std::optional<CardPaymentBody> p = ParseCardPaymentBody(plain);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->amount_minor, 12500u);
  EXPECT_EQ(p->currency, "KPW");
  EXPECT_EQ(p->order_ref.value_or(""), "o-1");
  EXPECT_EQ(p->capture.value_or(""), "manual");
  EXPECT_EQ(p->pan, "9408010000000017");
  EXPECT_EQ(p->expiry, "3011");
  EXPECT_EQ(p->cvv2, "123");
  // Accepted: white space, any order, an amount as a string, optional members left out.
  for (const char* ok : {
           " {\"card\" : {\"cvv2\":\"1\",\"pan\":\"x\",\"expiry\":\"\"},\r\n\t\"currency\":\"KPW\","
           "\"amount\":\"0012\"} ",
           R"({"amount":0,"currency":"","card":{"pan":"","expiry":"","cvv2":""}})",
       }) {
    EXPECT_TRUE(ParseCardPaymentBody(ok)) << ok;
    ExpectPlainReadsAsNlohmann(ok);
  }
  // Left to nlohmann: each of these is another shape or not JSON.
  for (
      const char* other : {
          "",
          "[]",
          R"({"amount":12500,"currency":"KPW"})",
          R"({"amount":12500,"amount":1,"currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1"}})",
          R"({"amount":12500,"currency":"K\u0050W","card":{"pan":"1","expiry":"1","cvv2":"1"}})",
          R"({"amount":125.0,"currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1"}})",
          R"({"amount":1e3,"currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1"}})",
          R"({"amount":0125,"currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1"}})",
          R"({"amount":-1,"currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1"}})",
          R"({"amount":1234567890123456,"currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1"}})",
          R"({"amount":"12a","currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1"}})",
          R"({"amount":1,"currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1"},})",
          R"({"amount":1,"currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1"}}x)",
          R"({"amount":1,"currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1","x":"1"}})",
          R"({"amount":1,"currency":"KPW","card":{"pan":"1","pan":"1","cvv2":"1"}})",
          R"({"amount":1,"currency":"KPW","card":{"pan":1,"expiry":"1","cvv2":"1"}})",
          R"({"amount":1,"currency":"KPW","card":{"pan":"1","expiry":"1","cvv2":"1"},"split":{}})",
          R"({"amount":1,"currency":"KPW","sim":{"token_id":"t","otp":"12345678"}})",
          R"({"amount":1,"currency":"KPW","capture":true,"card":{"pan":"1","expiry":"1","cvv2":"1"}})",
          "{\"amount\":1,\"currency\":\"KP\xC3\xA9\",\"card\":{\"pan\":\"1\",\"expiry\":\"1\","
          "\"cvv2\":\"1\"}}",
          "\xEF\xBB\xBF{\"amount\":1,\"currency\":\"KPW\",\"card\":{\"pan\":\"1\",\"expiry\":\"1\","
          "\"cvv2\":\"1\"}}",
      }) {
    EXPECT_FALSE(ParseCardPaymentBody(other)) << other;
  }
  // Mutations: a byte replaced by a JSON-significant one, removed or doubled.
  const std::string kBytes = "{}[]\":,\\ 0123456789.eE-+tnfu\x7f\x80\t";
  uint64_t x = 88172645463325252ull;  // the same sample every run
  size_t accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string m = Mutate(plain, kBytes, &x);
    if (ParseCardPaymentBody(m)) ++accepted;
    ExpectPlainReadsAsNlohmann(m);
  }
  EXPECT_GT(accepted, 100u);  // the sample exercises the accepting side too
}

// The server reads a request of the simple form without Beast's parser
// (http_server.cpp, SimpleRequestParser): whatever it accepts, Beast reads
// to the same request, and what it declines Beast still reads (or refuses).
TEST(HttpParse, FastPathReadsAsBeastDoes) {
  using internal::ParseHttpRequestForTest;
  constexpr uint32_t kHeaderMax = 512;
  constexpr uint32_t kBodyMax = 64;
  const std::string body = R"({"amount":1,"currency":"KPW"})";
  const std::string request =
      "POST /v1/payments?x=1 HTTP/1.1\r\nHost: narae\r\n"
      "Content-Type: application/json\r\nIdempotency-Key: k-1\r\n"
      "X-Narae-Nonce:\t  n o n c e \t\r\nx_odd-Name:\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  auto both = [&](const std::string& bytes) {
    return std::make_pair(ParseHttpRequestForTest(bytes, true, kHeaderMax, kBodyMax),
                          ParseHttpRequestForTest(bytes, false, kHeaderMax, kBodyMax));
  };
  {
    auto [fast, beast] = both(request + "GET /next HTTP/1.1\r\n");  // a pipelined start
    ASSERT_TRUE(fast);
    ASSERT_TRUE(beast);
    EXPECT_EQ(*fast, *beast);
    EXPECT_EQ(fast->consumed, request.size());
    EXPECT_EQ(fast->target, "/v1/payments?x=1");
    ASSERT_EQ(fast->fields.size(), 6u);
    EXPECT_EQ(fast->fields[3],
              std::make_pair(std::string("X-Narae-Nonce"), std::string("n o n c e")));
    EXPECT_EQ(fast->fields[4], std::make_pair(std::string("x_odd-Name"), std::string()));
    EXPECT_EQ(fast->body, body);
    EXPECT_TRUE(fast->keep_alive);
  }
  // Declined by the fast path, each read (or refused) by Beast alone.
  for (const std::string& other : {
           std::string("GET / HTTP/1.0\r\n\r\n"),                       // HTTP/1.0
           std::string("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),  // keep-alive decided
           std::string("GET / HTTP/1.1\r\nconnection: keep-alive\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nUpgrade: x\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nProxy-Connection: close\r\n\r\n"),
           std::string("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"),
           std::string("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
           std::string("POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx"),
           std::string("POST / HTTP/1.1\r\nContent-Length: 0000000001\r\n\r\nx"),  // 10 digits
           std::string("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n") + std::string(65, 'x'),
           std::string("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"),
           std::string("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nx"),  // body not all here
           std::string("GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n"),         // obs-fold
           std::string("GET / HTTP/1.1\r\nX-A: \xC3\xA9\r\n\r\n"),        // obs-text
           std::string("GET / HTTP/1.1\r\nX-A: a\x01\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nX-A: a\x7f\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nX-A: a\nX-B: b\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nX-A : a\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nX.A: a\r\n\r\n"),  // a token, not of the simple form
           std::string("GET / HTTP/1.1\r\n: a\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nX-A: a\r\n\r"),
           std::string("GET / HTTP/1.1\r\nX-A: a\r\n"),
           std::string("GET /\xC3\xA9 HTTP/1.1\r\n\r\n"),
           std::string("get / HTTP/1.1\r\n\r\n"),
           std::string("M-SEARCH * HTTP/1.1\r\n\r\n"),
           std::string("GET  / HTTP/1.1\r\n\r\n"),
           std::string("GET / HTTP/1.1 \r\n\r\n"),
           std::string("GET / HTTP/2.0\r\n\r\n"),
           std::string("\r\nGET / HTTP/1.1\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nX-A: ") + std::string(kHeaderMax, 'a') + "\r\n\r\n",
       }) {
    auto [fast, beast] = both(other);
    EXPECT_FALSE(fast) << other;
    (void)beast;
  }
  // The header limit: a header of exactly the limit is read either way.
  {
    std::string at_limit = "GET / HTTP/1.1\r\nX-A: \r\n\r\n";
    at_limit.insert(at_limit.size() - 4, kHeaderMax - at_limit.size(), 'a');
    ASSERT_EQ(at_limit.size(), kHeaderMax);
    auto [fast, beast] = both(at_limit);
    ASSERT_TRUE(fast);
    ASSERT_TRUE(beast);
    EXPECT_EQ(*fast, *beast);
    EXPECT_FALSE(both(at_limit.insert(20, "a")).first);
  }
  // Mutations of the request: a byte replaced by one that matters to the
  // grammar, removed or doubled. Whatever the fast path reads, Beast reads
  // the same way.
  static constexpr char kRaw[] = "\r\n\t :;,-_/?.AaZz09\x7f\x80\xff\x01";
  const std::string kBytes = std::string(kRaw, sizeof kRaw - 1) + '\0';  // and a NUL
  uint64_t x = 88172645463325252ull;  // the same sample every run
  size_t accepted = 0;
  size_t declined_read_by_beast = 0;
  for (int i = 0; i < 30000; ++i) {
    const std::string m = Mutate(request, kBytes, &x);
    auto [fast, beast] = both(m);
    if (fast) {
      ++accepted;
      ASSERT_TRUE(beast) << m;
      ASSERT_EQ(*fast, *beast) << m;
    } else if (beast) {
      ++declined_read_by_beast;
    }
  }
  EXPECT_GT(accepted, 1000u);  // the sample exercises the accepting side too
  EXPECT_GT(declined_read_by_beast, 100u);
  // Values and targets are checked a word at a time (the last word
  // overlapping): each byte outside printable ASCII at every position of
  // every length up to three words is declined; printable ones are read.
  for (size_t n = 1; n <= 24; ++n) {
    for (size_t at = 0; at < n; ++at) {
      for (int b : {0x00, 0x01, 0x09, 0x1f, 0x20, 0x21, 0x7e, 0x7f, 0x80, 0xff}) {
        std::string value(n, 'v');
        value[at] = static_cast<char>(b);
        const std::string field = "GET / HTTP/1.1\r\nX-A: y" + value + "z\r\n\r\n";
        std::string target = "/" + value;
        const std::string line = "GET " + target + " HTTP/1.1\r\n\r\n";
        const bool printable = b >= 0x20 && b < 0x7f;
        auto [fast, beast] = both(field);
        EXPECT_EQ(fast.has_value(), printable) << n << " " << at << " " << b;
        if (fast) {
          ASSERT_TRUE(beast);
          EXPECT_EQ(*fast, *beast);
        }
        auto [fast_target, beast_target] = both(line);
        EXPECT_EQ(fast_target.has_value(), printable && b != 0x20) << n << " " << at << " " << b;
        if (fast_target) {
          ASSERT_TRUE(beast_target);
          EXPECT_EQ(*fast_target, *beast_target);
        }
      }
    }
  }
}

// Duplicate keys are found in large objects too (past the linear search).
TEST_F(HttpTest, DuplicateKeyInALargeObjectIsRefused) {
  json good = json::parse(PayBody(100));
  std::string extra;
  for (int i = 0; i < 40; ++i) extra += ",\"k" + std::to_string(i) + "\":" + std::to_string(i);
  std::string many = good.dump();
  many.insert(many.size() - 1, extra);
  Resp unknown = Call("POST", "/v1/payments", many, NextKey());
  EXPECT_EQ(unknown.status, 400u) << unknown.body;
  EXPECT_EQ(unknown.body.find("repeats a key"), std::string::npos) << unknown.body;
  std::string dup = many;
  dup.insert(dup.size() - 1, ",\"k5\":1");
  Resp refused = Call("POST", "/v1/payments", dup, NextKey());
  EXPECT_EQ(refused.status, 400u) << refused.body;
  EXPECT_NE(refused.body.find("repeats a key"), std::string::npos) << refused.body;
  std::string dup_first = many;  // a key of the linear part repeated late
  dup_first.insert(dup_first.size() - 1, ",\"amount\":1");
  Resp refused_first = Call("POST", "/v1/payments", dup_first, NextKey());
  EXPECT_NE(refused_first.body.find("repeats a key"), std::string::npos) << refused_first.body;
}

TEST_F(HttpTest, ConcurrentRetriesMakeOnePayment) {
  const std::string body = PayBody(1234, "manual", "race");
  constexpr int kClients = 6;
  std::vector<std::future<Resp>> results;
  for (int i = 0; i < kClients; ++i) {
    results.push_back(std::async(std::launch::async, [&, i] {
      Client c(server_->port());
      http::request<http::string_body> req{http::verb::post, "/v1/payments", 11};
      req.body() = body;
      req.set("Idempotency-Key", "race-key");
      for (auto& [k, v] :
           SignedHeaders("SOCKS001", Merchant("SOCKS001").api_secret_hex, "POST", "/v1/payments",
                         body, SystemMs() / 1000, "race-nonce-" + std::to_string(i))) {
        req.set(k, v);
      }
      return c.Send(std::move(req));
    }));
  }
  std::string first;
  for (auto& f : results) {
    Resp r = f.get();
    ASSERT_EQ(r.status, 201u) << r.body;
    if (first.empty()) first = r.body;
    EXPECT_EQ(r.body, first);
  }
}

TEST_F(HttpTest, SignatureTimestampAndNonceRejected) {
  http::request<http::string_body> req{http::verb::get, "/v1/payments", 11};
  Resp none = client_->Send(req);
  EXPECT_EQ(none.status, 401u);
  EXPECT_EQ(none.Code(), "unauthenticated");
  EXPECT_FALSE(none.j["error"]["request_id"].get<std::string>().empty());

  Resp stale = Call("GET", "/v1/payments", "", "", "SOCKS001", -3600);
  EXPECT_EQ(stale.status, 401u);
  EXPECT_EQ(stale.Code(), "stale_timestamp");
  Resp future = Call("GET", "/v1/payments", "", "", "SOCKS001", +3600);
  EXPECT_EQ(future.Code(), "stale_timestamp");

  Resp ok = Call("GET", "/v1/payments", "", "", "SOCKS001", 0, "nonce-0001");
  EXPECT_EQ(ok.status, 200u) << ok.body;
  Resp reused = Call("GET", "/v1/payments", "", "", "SOCKS001", 0, "nonce-0001");
  EXPECT_EQ(reused.status, 401u);
  EXPECT_EQ(reused.Code(), "nonce_reused");

  // Signed by another merchant's secret, or with a changed body or path.
  http::request<http::string_body> forged{http::verb::get, "/v1/payments", 11};
  for (auto& [k, v] : SignedHeaders("SOCKS001", Merchant("NOODLE01").api_secret_hex, "GET",
                                    "/v1/payments", "", SystemMs() / 1000, "forged-0001")) {
    forged.set(k, v);
  }
  Resp f = client_->Send(forged);
  EXPECT_EQ(f.status, 401u);
  EXPECT_EQ(f.Code(), "invalid_signature");
  http::request<http::string_body> moved{http::verb::get, "/v1/events", 11};
  for (auto& [k, v] : SignedHeaders("SOCKS001", Merchant("SOCKS001").api_secret_hex, "GET",
                                    "/v1/payments", "", SystemMs() / 1000, "moved-0001")) {
    moved.set(k, v);
  }
  EXPECT_EQ(client_->Send(moved).Code(), "invalid_signature");
  http::request<http::string_body> unknown{http::verb::get, "/v1/payments", 11};
  for (auto& [k, v] : SignedHeaders("NOBODY", Merchant("SOCKS001").api_secret_hex, "GET",
                                    "/v1/payments", "", SystemMs() / 1000, "unknown-0001")) {
    unknown.set(k, v);
  }
  Resp u = client_->Send(unknown);
  EXPECT_EQ(u.status, 401u);
  EXPECT_EQ(u.Code(), "invalid_signature");
  // Never a secret in an answer.
  EXPECT_EQ(u.body.find(Merchant("SOCKS001").api_secret_hex), std::string::npos);
}

TEST_F(HttpTest, AnotherMerchantsPaymentIsNotFound) {
  Resp p = Pay(700);
  ASSERT_EQ(p.status, 201u);
  const std::string id = p.j["id"];
  for (const char* action : {"/capture", "/void", "/refunds"}) {
    Resp r = Call("POST", "/v1/payments/" + id + action, "{}", NextKey(), "NOODLE01");
    EXPECT_EQ(r.status, 404u) << action << " " << r.body;
    EXPECT_EQ(r.Code(), "payment_not_found");
  }
  Resp g = Call("GET", "/v1/payments/" + id, "", "", "NOODLE01");
  EXPECT_EQ(g.status, 404u);
  Resp list = Call("GET", "/v1/payments", "", "", "NOODLE01");
  ASSERT_EQ(list.status, 200u);
  EXPECT_TRUE(list.j["data"].empty());
  Resp ev = Call("GET", "/v1/events", "", "", "NOODLE01");
  EXPECT_TRUE(ev.j["data"].empty());
  EXPECT_EQ(Call("GET", "/v1/payments/pay_NOSUCHPAYMNT").status, 404u);
  EXPECT_EQ(Call("GET", "/v1/payments/junk").status, 404u);
  EXPECT_EQ(Call("POST", "/v1/payments/pay_NOSUCHPAYMNT/capture", "{}", NextKey()).status, 404u);
}

TEST_F(HttpTest, DeclinesAndBadRequestsHaveStableCodes) {
  auto With = [&](const json& changes) {
    json b = json::parse(PayBody(100));
    b.update(changes);
    return b.dump();
  };
  // Customer 0's KPW account: 10,000,000,000 deposited, 100,000 minimum.
  Resp funds = Pay(20'000'000'000);
  EXPECT_EQ(funds.status, 402u) << funds.body;
  EXPECT_EQ(funds.Code(), "insufficient_funds");
  Resp reserve = Pay(10'000'000'000 - 50'000);
  EXPECT_EQ(reserve.status, 402u) << reserve.body;
  EXPECT_EQ(reserve.Code(), "below_minimum_balance");
  json expired = json::parse(PayBody(100));
  expired["card"]["expiry"] = "2001";
  Resp e = Call("POST", "/v1/payments", expired.dump(), NextKey());
  EXPECT_EQ(e.status, 402u);
  EXPECT_EQ(e.Code(), "card_expired");
  json unknown_card = json::parse(PayBody(100));
  unknown_card["card"]["pan"] = "4000000000000002";
  EXPECT_EQ(Call("POST", "/v1/payments", unknown_card.dump(), NextKey()).Code(), "invalid_card");

  const std::vector<std::string> bad_bodies = {
      "not json",
      "[]",
      R"({"currency":"KPW"})",
      With({{"amount", 0}}),
      With({{"amount", -5}}),
      With({{"amount", 1.5}}),
      With({{"amount", "12a"}}),
      With({{"amount", "99999999999999999999"}}),
      With({{"currency", "XXX"}}),
      With({{"capture", "later"}}),
      With({{"order_ref", "has space"}}),
      With({{"extra", 1}}),
      With({{"sim", {{"token_id", "1"}}}}),
      R"({"amount":100,"currency":"KPW"})",
  };
  for (const std::string& b : bad_bodies) {
    Resp r = Call("POST", "/v1/payments", b, NextKey());
    EXPECT_EQ(r.status, 400u) << b << " -> " << r.body;
    EXPECT_EQ(r.Code(), "invalid_request") << b;
  }
  // Amounts as strings (for values above 2^53 in JavaScript) are accepted.
  Resp s = Call("POST", "/v1/payments", With({{"amount", "4321"}}), NextKey());
  EXPECT_EQ(s.status, 201u) << s.body;
  EXPECT_EQ(s.j["amount"], 4321);
  EXPECT_EQ(Call("POST", "/v1/payments", With({{"currency", "EUR"}}), NextKey()).Code(),
            "currency_not_accepted");
  EXPECT_EQ(Call("DELETE", "/v1/payments").status, 405u);
  EXPECT_EQ(Call("GET", "/v1/nothing").status, 404u);
}

// A plain card payment is read without a JSON tree (ParseCardPaymentBody)
// and every other body by nlohmann: the same request written both ways gets
// the same answer, for good and bad values (the general way, a key written
// with an escape, gives every 400).
TEST_F(HttpTest, PlainAndGeneralBodiesGetTheSameAnswers) {
  auto With = [&](const json& changes) {
    json b = json::parse(PayBody(100));
    b.update(changes);
    return b.dump();
  };
  auto General = [](std::string body) {
    const size_t at = body.find("\"currency\"");
    EXPECT_NE(at, std::string::npos);
    return body.replace(at, 10, R"("\u0063urrency")");
  };
  const std::vector<std::string> bad = {
      With({{"amount", 0}}),
      With({{"amount", "0"}}),
      With({{"amount", 1'000'000'000'000}}),
      With({{"currency", "XXX"}}),
      With({{"currency", "EUR"}}),
      With({{"capture", "later"}}),
      With({{"order_ref", "has space"}}),
      With({{"order_ref", ""}}),
      With({{"order_ref", std::string(65, 'o')}}),
      With({{"card", {{"pan", "94080100000000ab"}, {"expiry", "3011"}, {"cvv2", "123"}}}}),
      With({{"card", {{"pan", "940801000000"}, {"expiry", "3011"}, {"cvv2", "123"}}}}),
      With({{"card", {{"pan", "9408010000000017"}, {"expiry", "30111"}, {"cvv2", "123"}}}}),
      With({{"card", {{"pan", "9408010000000017"}, {"expiry", "3011"}, {"cvv2", "12"}}}}),
  };
  for (const std::string& b : bad) {
    ASSERT_TRUE(ParseCardPaymentBody(b)) << b;
    ASSERT_FALSE(ParseCardPaymentBody(General(b))) << b;
    Resp plain = Call("POST", "/v1/payments", b, NextKey());
    Resp general = Call("POST", "/v1/payments", General(b), NextKey());
    EXPECT_GE(plain.status, 400u) << b << " -> " << plain.body;
    EXPECT_EQ(plain.status, general.status) << b;
    EXPECT_EQ(plain.Code(), general.Code()) << b;
    EXPECT_EQ(plain.j["error"]["message"], general.j["error"]["message"]) << b;
  }
  for (const std::string capture : {"manual", "automatic"}) {
    const std::string b = With({{"capture", capture}, {"amount", "0777"}});
    Resp plain = Call("POST", "/v1/payments", b, NextKey());
    Resp general = Call("POST", "/v1/payments", General(b), NextKey());
    ASSERT_EQ(plain.status, 201u) << plain.body;
    ASSERT_EQ(general.status, 201u) << general.body;
    for (const char* k : {"amount", "currency", "order_ref", "capture", "status", "payment_method",
                          "merchant_id", "channel"}) {
      EXPECT_EQ(plain.j[k], general.j[k]) << k;
    }
    EXPECT_EQ(plain.j["amount"], 777);
    EXPECT_EQ(plain.j["iso8583"]["mti"], general.j["iso8583"]["mti"]);
  }
  // Without the optional members: a manual hold, no order reference.
  json minimal = json::parse(PayBody(100));
  minimal.erase("capture");
  minimal.erase("order_ref");
  ASSERT_TRUE(ParseCardPaymentBody(minimal.dump()));
  Resp m = Call("POST", "/v1/payments", minimal.dump(), NextKey());
  ASSERT_EQ(m.status, 201u) << m.body;
  EXPECT_EQ(m.j["capture"], "manual");
  EXPECT_EQ(m.j["order_ref"], "");
}

TEST_F(HttpTest, HostileBodiesAreRefusedAndMoveNothing) {
  // Each hostile body gets 400 invalid_request and the ledger does not
  // change (no journal entry, no balance moved).
  auto head = ledger_->JournalHead();
  ASSERT_TRUE(head.ok());
  const uint64_t sequence_before = head->sequence;
  const DemoCard& card = KpwCard();
  const uint64_t debits_before =
      ledger_->LookupAccount(card.issued.card.account_id)->debits_pending;
  const std::string good = PayBody(100);
  std::string deep_array = std::string(2000, '[') + std::string(2000, ']');
  std::string deep_in_field = good;
  deep_in_field.insert(deep_in_field.size() - 1,
                       ",\"x\":" + std::string(20, '[') + std::string(20, ']'));
  std::string bad_utf8 = good;
  bad_utf8.replace(bad_utf8.find("order-1"), 7, "ord\xC3\x28r");  // invalid 2-byte sequence
  std::string overlong = good;
  overlong.replace(overlong.find("order-1"), 7, "ord\xC0\xAFr");  // overlong '/'
  std::string nul = good;
  nul.replace(nul.find("order-1"), 7, std::string("ord\0r", 5));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"duplicate top-level key", "{\"amount\":100,\"amount\":1," + good.substr(1)},
      {"duplicate nested key",
       [&] {
         std::string b = good;
         b.insert(b.find("\"pan\""), "\"cvv2\":\"000\",");
         return b;
       }()},
      {"deep nesting", deep_array},
      {"deep nesting in a field", deep_in_field},
      {"invalid UTF-8", bad_utf8},
      {"overlong UTF-8", overlong},
      {"NUL in a string", nul},
      {"amount 2^64-1",
       [&] {
         json b = json::parse(good);
         b["amount"] = UINT64_MAX;
         return b.dump();
       }()},
      {"amount 2^64 as a string",
       [&] {
         json b = json::parse(good);
         b["amount"] = "18446744073709551616";
         return b.dump();
       }()},
      {"negative amount string",
       [&] {
         json b = json::parse(good);
         b["amount"] = "-1";
         return b.dump();
       }()},
      {"exponent amount",
       [&] {
         json b = json::parse(good);
         b["amount"] = 1e3;
         return b.dump();
       }()},
      {"amount null",
       [&] {
         json b = json::parse(good);
         b["amount"] = nullptr;
         return b.dump();
       }()},
      {"card not an object",
       [&] {
         json b = json::parse(good);
         b["card"] = "4000";
         return b.dump();
       }()},
      {"pan with a wrong Luhn digit",
       [&] {
         json b = json::parse(good);
         std::string pan = card.issued.pan;
         pan.back() = pan.back() == '9' ? '0' : static_cast<char>(pan.back() + 1);
         b["card"]["pan"] = pan;
         return b.dump();
       }()},
      {"trailing garbage", good + "x"},
      {"two documents", good + good},
      {"empty body", ""},
  };
  for (const auto& [name, body] : cases) {
    Resp r = Call("POST", "/v1/payments", body, NextKey());
    EXPECT_GE(r.status, 400u) << name << " -> " << r.body;
    EXPECT_LT(r.status, 500u) << name << " -> " << r.body;
    if (r.status == 400u) {
      EXPECT_EQ(r.Code(), "invalid_request") << name;
    }
    EXPECT_EQ(r.body.find(card.issued.pan), std::string::npos) << name << ": PAN echoed";
  }
  // A missing Idempotency-Key is refused too.
  EXPECT_EQ(Call("POST", "/v1/payments", good, "").status, 400u);
  head = ledger_->JournalHead();
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->sequence, sequence_before);
  EXPECT_EQ(ledger_->LookupAccount(card.issued.card.account_id)->debits_pending, debits_before);
  // The server still serves a good payment afterwards.
  EXPECT_EQ(Pay(100).status, 201u);
}

TEST_F(HttpTest, BlockedCardIsRefused) {
  ASSERT_TRUE(SetCardStatus(*ledger_, KpwCard().issued.card.card_id, RecordStatus::kBlocked).ok());
  Restart();  // the engine loads the bank at start
  Resp r = Pay(100);
  EXPECT_EQ(r.status, 402u) << r.body;
  EXPECT_EQ(r.Code(), "card_blocked");
}

TEST_F(HttpTest, SimPaymentAndCounterReplay) {
  const EnrolledSim& sim = bank_.sims[0];
  auto sim_body = [&](uint64_t counter, uint64_t amount) {
    nc::SimPaymentFields f;
    f.token_id = sim.sim.token_id;
    f.counter = counter;
    f.amount_minor = amount;
    f.currency = 408;
    f.merchant_id = "SOCKS001";
    f.unix_time_s = SystemMs() / 1000;
    auto key = nc::FromHex(sim.sim_key_hex);
    auto crypt = nc::SimCryptogram(*key, f);
    EXPECT_TRUE(crypt.ok());
    return json{{"amount", amount},
                {"currency", "KPW"},
                {"capture", "automatic"},
                {"sim",
                 {{"token_id", sim.sim.token_id},
                  {"counter", counter},
                  {"time", f.unix_time_s},
                  {"cryptogram", nc::ToHex(*crypt)}}}}
        .dump();
  };
  Resp ok = Call("POST", "/v1/payments", sim_body(1, 900), NextKey());
  ASSERT_EQ(ok.status, 201u) << ok.body;
  EXPECT_EQ(ok.j["payment_method"]["type"], "sim");
  Resp replay = Call("POST", "/v1/payments", sim_body(1, 900), NextKey());
  EXPECT_EQ(replay.status, 402u) << replay.body;
  EXPECT_EQ(replay.Code(), "sim_counter_replayed");
  json forged = json::parse(sim_body(2, 900));
  forged["amount"] = 901;  // the cryptogram covers the amount
  Resp bad = Call("POST", "/v1/payments", forged.dump(), NextKey());
  EXPECT_EQ(bad.Code(), "invalid_cryptogram");
  // A SIM payment is refunded to the SIM's account.
  Resp ref = Call("POST", "/v1/payments/" + ok.j["id"].get<std::string>() + "/refunds",
                  R"({"amount":400})", NextKey());
  EXPECT_EQ(ref.status, 201u) << ref.body;
}

TEST_F(HttpTest, SimOtpPaymentApprovedOnceAndReplayRefused) {
  const EnrolledSim& sim = bank_.sims[0];
  Result<nc::SecretBytes> sim_key = nc::SecretFromHex(sim.sim_key_hex);
  ASSERT_TRUE(sim_key.ok());
  Result<nc::SecretBytes> otp_key = SimOtpKey(*sim_key);
  ASSERT_TRUE(otp_key.ok());
  auto body = [&](const std::string& code, uint64_t amount) {
    return json{{"amount", amount},
                {"currency", "KPW"},
                {"capture", "automatic"},
                {"sim", {{"token_id", sim.sim.token_id}, {"otp", code}}}}
        .dump();
  };
  auto code = [&](uint64_t counter, uint64_t amount) {
    Result<std::string> c = nc::PaymentOtp(*otp_key, counter, amount, 408, "SOCKS001");
    EXPECT_TRUE(c.ok());
    return c.ok() ? *c : std::string();
  };
  const std::string first = body(code(1, 700), 700);
  Resp ok = Call("POST", "/v1/payments", first, "otp-1");
  ASSERT_EQ(ok.status, 201u) << ok.body;
  EXPECT_EQ(ok.j["status"], "captured");
  EXPECT_EQ(ok.j["payment_method"]["type"], "sim_otp");
  EXPECT_EQ(ok.body.find(code(1, 700)), std::string::npos);  // the code is not echoed
  // The same request retried: the original answer. A new request with the same code: a replay.
  Resp retry = Call("POST", "/v1/payments", first, "otp-1");
  EXPECT_EQ(retry.status, 201u);
  EXPECT_EQ(retry.headers["Idempotent-Replayed"], "true");
  Resp replay = Call("POST", "/v1/payments", first, NextKey());
  EXPECT_EQ(replay.status, 402u) << replay.body;
  EXPECT_EQ(replay.Code(), "sim_counter_replayed");
  // A code for another amount, or a wrong code: invalid_otp.
  EXPECT_EQ(Call("POST", "/v1/payments", body(code(2, 701), 700), NextKey()).Code(), "invalid_otp");
  std::string wrong = code(2, 700);
  wrong[0] = wrong[0] == '9' ? '0' : static_cast<char>(wrong[0] + 1);
  EXPECT_EQ(Call("POST", "/v1/payments", body(wrong, 700), NextKey()).Code(), "invalid_otp");
  // Counters may be skipped (within the window); a skipped one is then stale.
  Resp third = Call("POST", "/v1/payments", body(code(3, 300), 300), NextKey());
  EXPECT_EQ(third.status, 201u) << third.body;
  EXPECT_EQ(Call("POST", "/v1/payments", body(code(2, 200), 200), NextKey()).Code(),
            "sim_counter_replayed");
  // Bad input.
  EXPECT_EQ(Call("POST", "/v1/payments", body("123", 700), NextKey()).status, 400u);
  json extra = json::parse(body(code(4, 5), 5));
  extra["sim"]["counter"] = 4;
  EXPECT_EQ(Call("POST", "/v1/payments", extra.dump(), NextKey()).status, 400u);
  json unknown = json::parse(body(code(4, 5), 5));
  unknown["sim"]["token_id"] = "99999999";
  EXPECT_EQ(Call("POST", "/v1/payments", unknown.dump(), NextKey()).Code(), "invalid_card");
  std::vector<json> ev = AllEvents();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0]["type"], "payment.captured");
  EXPECT_EQ(ev[0]["data"]["id"], ok.j["id"]);
}

TEST_F(HttpTest, IsoHoldCapturedOverHttpAndHttpHoldCompletedOverIso) {
  // ISO 8583 0100 at the sock factory's terminal, captured and refunded over HTTP.
  const DemoCard& card = KpwCard();
  Message hold = IsoBase("0100", "T0000003");
  hold.Set(2, card.issued.pan);
  hold.Set(3, "000000");
  hold.Set(4, *FormatAmount(6000));
  hold.Set(49, "408");
  hold.Set(48, BuildField48(card.issued.cvv2));
  Message resp = Iso(hold);
  ASSERT_EQ(resp.Get(39), "00");
  const std::string id = "pay_" + std::string(resp.Get(37));
  Resp g = Call("GET", "/v1/payments/" + id);
  ASSERT_EQ(g.status, 200u) << g.body;
  EXPECT_EQ(g.j["status"], "authorized");
  EXPECT_EQ(g.j["channel"], "iso8583");
  EXPECT_EQ(g.j["amount"], 6000);
  Resp c = Call("POST", "/v1/payments/" + id + "/capture", R"({"amount":5000})", NextKey());
  ASSERT_EQ(c.status, 200u) << c.body;
  EXPECT_EQ(Call("GET", "/v1/payments/" + id).j["amount_captured"], 5000);
  Resp r = Call("POST", "/v1/payments/" + id + "/refunds", R"({"amount":5000})", NextKey());
  EXPECT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(Call("GET", "/v1/payments/" + id).j["status"], "refunded");

  // An HTTP hold completed by ISO 8583 0220 from the virtual terminal.
  Resp p = Pay(8000);
  ASSERT_EQ(p.status, 201u);
  const json iso = p.j["iso8583"];
  Message completion = IsoBase("0220", iso["terminal_id"]);
  completion.Set(3, "000000");
  completion.Set(4, *FormatAmount(8000));
  completion.Set(49, "408");
  OriginalData od{"0100", iso["stan"], iso["transmission_datetime"], "00000000000", "00000000000"};
  completion.Set(90, *FormatOriginalData(od));
  Message done = Iso(completion);
  EXPECT_EQ(done.Get(39), "00");
  Resp after = Call("GET", "/v1/payments/" + p.j["id"].get<std::string>());
  EXPECT_EQ(after.j["status"], "captured");
  EXPECT_EQ(after.j["amount_captured"], 8000);

  // And an HTTP hold reversed by ISO 8583 0400.
  Resp q = Pay(300);
  ASSERT_EQ(q.status, 201u);
  Message rev = IsoBase("0400", q.j["iso8583"]["terminal_id"]);
  rev.Set(3, "000000");
  rev.Set(4, *FormatAmount(300));
  rev.Set(49, "408");
  OriginalData od2{"0100", q.j["iso8583"]["stan"], q.j["iso8583"]["transmission_datetime"],
                   "00000000000", "00000000000"};
  rev.Set(90, *FormatOriginalData(od2));
  EXPECT_EQ(Iso(rev).Get(39), "00");
  EXPECT_EQ(Call("GET", "/v1/payments/" + q.j["id"].get<std::string>()).j["status"], "voided");
}

TEST_F(HttpTest, ListAndEventFeedArePagedAndOrdered) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    Resp p = Pay(100 + i, "manual", i % 2 == 0 ? "even" : "odd");
    ASSERT_EQ(p.status, 201u);
    ids.push_back(p.j["id"]);
  }
  ASSERT_EQ(Call("POST", "/v1/payments/" + ids[0] + "/capture", "{}", NextKey()).status, 200u);
  Resp page1 = Call("GET", "/v1/payments?limit=2");
  ASSERT_EQ(page1.status, 200u) << page1.body;
  ASSERT_EQ(page1.j["data"].size(), 2u);
  EXPECT_EQ(page1.j["data"][0]["id"], ids[0]);
  EXPECT_TRUE(page1.j["has_more"]);
  std::vector<std::string> seen;
  std::string cursor;
  for (int n = 0; n < 5; ++n) {
    Resp page = Call("GET", "/v1/payments?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor));
    ASSERT_EQ(page.status, 200u) << page.body;
    for (const json& x : page.j["data"]) seen.push_back(x["id"]);
    if (!page.j["has_more"]) break;
    cursor = page.j["next_cursor"];
  }
  EXPECT_EQ(seen, ids);
  Resp even = Call("GET", "/v1/payments?order_ref=even");
  ASSERT_EQ(even.j["data"].size(), 3u);
  Resp none = Call("GET", "/v1/payments?from=1&to=2");
  EXPECT_TRUE(none.j["data"].empty());
  Resp all = Call("GET", "/v1/payments?from=1&to=" + std::to_string(SystemMs() + 60000));
  EXPECT_EQ(all.j["data"].size(), 5u);
  EXPECT_EQ(Call("GET", "/v1/payments?limit=0").status, 400u);
  EXPECT_EQ(Call("GET", "/v1/payments?limit=101").status, 400u);
  EXPECT_EQ(Call("GET", "/v1/payments?cursor=zz").status, 400u);

  Resp ev = Call("GET", "/v1/events?limit=100");
  ASSERT_EQ(ev.status, 200u) << ev.body;
  ASSERT_EQ(ev.j["data"].size(), 6u);
  EXPECT_EQ(ev.j["data"][0]["type"], "payment.authorized");
  EXPECT_EQ(ev.j["data"][5]["type"], "payment.captured");
  EXPECT_EQ(ev.j["data"][5]["data"]["id"], ids[0]);
  std::string after = ev.j["data"][3]["id"];
  Resp tail = Call("GET", "/v1/events?after=" + after);
  ASSERT_EQ(tail.j["data"].size(), 2u);
  EXPECT_EQ(tail.j["data"][0]["id"], ev.j["data"][4]["id"]);
  Restart();  // durable
  Resp tail2 = Call("GET", "/v1/events?after=" + after + "&limit=1");
  ASSERT_EQ(tail2.j["data"].size(), 1u);
  EXPECT_TRUE(tail2.j["has_more"]);
  EXPECT_EQ(tail2.j["data"][0]["id"], ev.j["data"][4]["id"]);
}

TEST_F(HttpTest, HealthMetricsAndLimits) {
  http::request<http::string_body> health{http::verb::get, "/healthz", 11};
  Resp h = client_->Send(health);
  EXPECT_EQ(h.status, 200u);
  EXPECT_EQ(h.j["status"], "ok");
  ASSERT_EQ(Pay(100).status, 201u);
  http::request<http::string_body> metrics{http::verb::get, "/metrics", 11};
  Resp m = client_->Send(metrics);
  EXPECT_EQ(m.status, 200u);
  EXPECT_NE(m.body.find("narae_http_requests_total{endpoint=\"create_payment\",code=\"2xx\"} 1"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("narae_http_connections_open 1"), std::string::npos);
  EXPECT_NE(m.body.find("narae_ledger_last_fsync_seconds"), std::string::npos);
  EXPECT_NE(m.body.find("narae_http_request_duration_seconds_bucket"), std::string::npos);

  // Body over the limit: 413 and the connection closes.
  http::request<http::string_body> big{http::verb::post, "/v1/payments", 11};
  big.body() = std::string(server_options_.body_bytes_max + 1, 'x');
  Resp b = client_->Send(big);
  EXPECT_EQ(b.status, 413u);
  client_ = std::make_unique<Client>(server_->port());
  http::request<http::string_body> fat{http::verb::get, "/v1/payments", 11};
  fat.set("X-Padding", std::string(server_options_.header_bytes_max + 1, 'p'));
  EXPECT_EQ(client_->Send(fat).status, 431u);
  client_ = std::make_unique<Client>(server_->port());
  // Garbage is a 400.
  asio::write(client_->socket(), asio::buffer(std::string("NOT HTTP\r\n\r\n")));
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(client_->socket(), buf, res);
  EXPECT_EQ(res.result_int(), 400u);
}

// The server reads each request into a per-connection buffer reused by the
// next (switch/http_server.cpp, RequestReader): field names in any case, the
// first of a repeated field, chunked bodies, HTTP/1.0 keep-alive and a long
// answer followed by short ones on the same connection, as raw bytes.
TEST_F(HttpTest, RequestReaderReusesItsBuffersAcrossRequests) {
  const DemoMerchant& m = Merchant("SOCKS001");
  auto signed_request = [&](const std::string& version, const std::string& body,
                            const std::string& extra_fields, bool chunked) {
    const std::string nonce =
        "raw-" + std::to_string(++nonce_seq_) + "-" + std::to_string(SystemMs());
    std::string req = "POST /v1/payments HTTP/" + version + "\r\nHost: x\r\n";
    req += extra_fields;
    for (auto& [k, v] : SignedHeaders("SOCKS001", m.api_secret_hex, "POST", "/v1/payments", body,
                                      SystemMs() / 1000, nonce)) {
      std::string name = k;  // field names in odd cases: found all the same
      for (size_t i = 0; i < name.size(); i += 2) {
        name[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(name[i])));
      }
      for (size_t i = 1; i < name.size(); i += 2) {
        name[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(name[i])));
      }
      req += name + ": " + v + "\r\n";
    }
    req += "idempotency-KEY: " + NextKey() + "\r\n";
    if (chunked) {
      req += "Transfer-Encoding: chunked\r\n\r\n";
      const size_t half = body.size() / 2;
      char size[32];
      std::snprintf(size, sizeof size, "%zx\r\n", half);
      req += size + body.substr(0, half) + "\r\n";
      std::snprintf(size, sizeof size, "%zx\r\n", body.size() - half);
      req += size + body.substr(half) + "\r\n0\r\n\r\n";
    } else {
      req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    }
    return req;
  };
  auto exchange = [](tcp::socket& socket, beast::flat_buffer& buf, const std::string& bytes) {
    asio::write(socket, asio::buffer(bytes));
    http::response<http::string_body> res;
    http::read(socket, buf, res);
    return res;
  };
  asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
  beast::flat_buffer buf;
  auto r1 = exchange(socket, buf, signed_request("1.1", PayBody(100), "", false));
  EXPECT_EQ(r1.result_int(), 201u) << r1.body();
  // A repeated field: the first counts (a second key id would not verify).
  const std::string body2 = PayBody(101);
  std::string req2 = signed_request("1.1", body2, "", false);
  req2.insert(req2.find("\r\n\r\n"), "\r\nX-Narae-Key-Id: PIZZA001");
  auto r2 = exchange(socket, buf, req2);
  EXPECT_EQ(r2.result_int(), 201u) << r2.body();
  // A chunked body is read whole.
  auto r3 = exchange(socket, buf, signed_request("1.1", PayBody(102), "", true));
  EXPECT_EQ(r3.result_int(), 201u) << r3.body();
  // A long answer (a list of payments), then short ones again.
  for (int i = 0; i < 40; ++i) ASSERT_EQ(Pay(200 + i).status, 201u);
  Resp list = Call("GET", "/v1/payments?limit=100");
  ASSERT_EQ(list.status, 200u);
  ASSERT_GT(list.body.size(), 16u * 1024);  // over the buffer a connection keeps
  const std::string nonce = "raw-list-" + std::to_string(SystemMs());
  std::string get = "GET /v1/payments?limit=100 HTTP/1.1\r\nHost: x\r\n";
  for (auto& [k, v] : SignedHeaders("SOCKS001", m.api_secret_hex, "GET", "/v1/payments?limit=100",
                                    "", SystemMs() / 1000, nonce)) {
    get += k + ": " + v + "\r\n";
  }
  auto r4 = exchange(socket, buf, get + "\r\n");
  EXPECT_EQ(r4.result_int(), 200u);
  EXPECT_EQ(json::parse(r4.body())["data"].size(), json::parse(list.body)["data"].size());
  auto r5 = exchange(socket, buf, signed_request("1.1", PayBody(103), "", false));
  EXPECT_EQ(r5.result_int(), 201u) << r5.body();
  EXPECT_EQ(json::parse(r5.body())["amount"], 103);
  // HTTP/1.0 with keep-alive stays open and says so; without, it closes.
  auto r6 = exchange(socket, buf,
                     signed_request("1.0", PayBody(104), "Connection: keep-alive\r\n", false));
  EXPECT_EQ(r6.result_int(), 201u) << r6.body();
  EXPECT_EQ(r6.version(), 10u);
  EXPECT_EQ(r6[http::field::connection], "keep-alive");
  auto r7 = exchange(socket, buf, signed_request("1.0", PayBody(105), "", false));
  EXPECT_EQ(r7.result_int(), 201u) << r7.body();
  EXPECT_FALSE(r7.keep_alive());
  char byte = 0;
  beast::error_code ec;
  socket.read_some(asio::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, asio::error::eof);  // the server closed the connection
}

// A request is parsed from the bytes already read when they hold all of it,
// else read on (http_server.cpp, Session): three requests in one write each
// get their answer in order, and a request sent in pieces (the header cut in
// the middle, then the body) is read whole; the answers are sent in place on
// the non-blocking socket.
TEST_F(HttpTest, PipelinedAndSplitRequestsAreEachAnswered) {
  const DemoMerchant& m = Merchant("SOCKS001");
  auto request = [&](uint64_t amount) {
    const std::string body = PayBody(amount);
    const std::string nonce =
        "pipe-" + std::to_string(++nonce_seq_) + "-" + std::to_string(SystemMs());
    std::string req = "POST /v1/payments HTTP/1.1\r\nHost: x\r\n";
    for (auto& [k, v] : SignedHeaders("SOCKS001", m.api_secret_hex, "POST", "/v1/payments", body,
                                      SystemMs() / 1000, nonce)) {
      req += k + ": " + v + "\r\n";
    }
    req += "Idempotency-Key: " + NextKey() + "\r\n";
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    return req;
  };
  asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
  beast::flat_buffer buf;
  asio::write(socket, asio::buffer(request(301) + request(302) + request(303)));
  for (uint64_t amount : {301u, 302u, 303u}) {
    http::response<http::string_body> res;
    http::read(socket, buf, res);
    EXPECT_EQ(res.result_int(), 201u) << res.body();
    EXPECT_EQ(json::parse(res.body())["amount"], amount);
  }
  const std::string split = request(304);
  const size_t header_cut = split.find("Idempotency-Key");
  const size_t body_at = split.find("\r\n\r\n") + 4;
  asio::write(socket, asio::buffer(split.substr(0, header_cut)));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  asio::write(socket, asio::buffer(split.substr(header_cut, body_at - header_cut)));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  asio::write(socket, asio::buffer(split.substr(body_at)));
  http::response<http::string_body> res;
  http::read(socket, buf, res);
  EXPECT_EQ(res.result_int(), 201u) << res.body();
  EXPECT_EQ(json::parse(res.body())["amount"], 304);
  // A malformed request after a good one in the same write: the good one is
  // answered, then 400 and the connection closes.
  asio::write(socket, asio::buffer(request(305) + "NOT HTTP\r\n\r\n"));
  http::response<http::string_body> good;
  http::read(socket, buf, good);
  EXPECT_EQ(good.result_int(), 201u) << good.body();
  http::response<http::string_body> bad;
  http::read(socket, buf, bad);
  EXPECT_EQ(bad.result_int(), 400u);
  EXPECT_FALSE(bad.keep_alive());
}

// Hundreds of requests in one write that need no wait (/healthz): the server
// lets its other connections run every few of them (a post) and still
// answers each, in order, on the same connection.
TEST_F(HttpTest, ManyPipelinedRequestsAreAnsweredInOrder) {
  asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
  std::string reqs;
  for (int i = 0; i < 300; ++i) {
    reqs += i % 3 == 2 ? "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                       : "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  }
  asio::write(socket, asio::buffer(reqs));
  beast::flat_buffer buf;
  for (int i = 0; i < 300; ++i) {
    http::response<http::string_body> res;
    http::read(socket, buf, res);
    ASSERT_EQ(res.result_int(), 200u) << i << " " << res.body();
    ASSERT_TRUE(res.keep_alive()) << i;
    // Each answer is its own request's: /metrics is Prometheus text, /healthz JSON.
    EXPECT_EQ(res.body().rfind("{", 0) == 0, i % 3 != 2) << i << " " << res.body().substr(0, 40);
  }
  // The connection still serves a request written on its own afterwards.
  http::request<http::string_body> health{http::verb::get, "/healthz", 11};
  health.set(http::field::host, "x");
  http::write(socket, health);
  http::response<http::string_body> res;
  http::read(socket, buf, res);
  EXPECT_EQ(res.result_int(), 200u);
}

// A client pipelining past a request that closes the connection, and reading
// its answers late, still gets every answer up to that one: the server closes
// once the client has taken them. A socket closed at once would throw unsent
// answers away with a reset when the requests sent after it arrive.
TEST_F(HttpTest, AnswersBeforeAClosingRequestReachASlowPipeliningClient) {
  asio::io_context ioc;
  tcp::socket socket = SlowReader(ioc, server_->port());
  constexpr int kAnswered = 200;
  std::string reqs;
  for (int i = 0; i < kAnswered - 1; ++i) {
    reqs += i % 3 == 2 ? "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                       : "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  }
  reqs += "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  asio::write(socket, asio::buffer(reqs));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the server is done with it
  std::string late;
  for (int i = 0; i < 10; ++i) late += "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  beast::error_code ec;
  asio::write(socket, asio::buffer(late), ec);  // may fail once the server closed
  beast::flat_buffer buf;
  int answered = 0;
  for (; answered < kAnswered + 10; ++answered) {  // bounded
    http::response<http::string_body> res;
    http::read(socket, buf, res, ec);
    if (ec) break;
    EXPECT_EQ(res.result_int(), 200u) << answered;
    EXPECT_EQ(res.keep_alive(), answered < kAnswered - 1) << answered;
  }
  EXPECT_EQ(answered, kAnswered);
  EXPECT_EQ(ec, http::error::end_of_stream) << ec.message();  // a FIN, not a reset
}

// Shutdown lets a client that reads late take every answer already written:
// its connection, waiting for a request, is closed after a linger instead of
// at once (which would throw the unsent answers away with a reset when the
// client sends more). What it sends after shutdown began is not answered.
TEST_F(HttpTest, ShutdownLetsASlowReaderTakeEveryAnswerWritten) {
  asio::io_context ioc;
  tcp::socket socket = SlowReader(ioc, server_->port());
  constexpr int kRequests = 150;
  std::string reqs;
  for (int i = 0; i < kRequests; ++i) reqs += "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  asio::write(socket, asio::buffer(reqs));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_->Stats().requests < kRequests) {  // bounded by the deadline
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the answers are written
  std::thread stopper([&] { server_->Shutdown(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  beast::error_code ec;
  asio::write(socket, asio::buffer(std::string("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")), ec);
  beast::flat_buffer buf;
  int answered = 0;
  for (; answered < kRequests + 1; ++answered) {  // bounded
    http::response<http::string_body> res;
    http::read(socket, buf, res, ec);
    if (ec) break;
    EXPECT_EQ(res.result_int(), 200u) << answered;
  }
  stopper.join();
  // The late request is not answered, unless the stopper thread was so slow
  // that it was read before shutdown began.
  EXPECT_GE(answered, kRequests);
  EXPECT_LE(answered, kRequests + 1);
  EXPECT_EQ(ec, http::error::end_of_stream) << ec.message();  // a FIN, not a reset
}

// A client that resets its connection while the server lingers over it
// (answers not yet taken) frees it at once, not after write_timeout_ms.
TEST_F(HttpTest, AClientResetDuringTheLingerEndsItAtOnce) {
  client_.reset();  // the fixture's connection: this one is alone
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_->Stats().connections_open != 0) {  // bounded by the deadline
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  asio::io_context ioc;
  tcp::socket socket = SlowReader(ioc, server_->port());
  constexpr int kRequests = 100;
  std::string reqs;
  for (int i = 0; i < kRequests - 1; ++i) reqs += "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  reqs += "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  asio::write(socket, asio::buffer(reqs));
  while (server_->Stats().requests < kRequests) {  // bounded by the deadline
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(server_->Stats().connections_open, 1u);  // lingering: answers not taken
  socket.set_option(asio::socket_base::linger(true, 0));
  socket.close();  // a reset
  const auto reset_at = std::chrono::steady_clock::now();
  while (server_->Stats().connections_open != 0) {  // bounded by the deadline
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - reset_at, std::chrono::seconds(2));
}

TEST_F(HttpTest, RateLimitAnswers429WithRetryAfter) {
  Stop();
  api_options_.rate_per_s = 1;
  api_options_.rate_burst = 3;
  OpenLedger();
  Start();
  int limited = 0;
  for (int i = 0; i < 6; ++i) {
    Resp r = Call("GET", "/v1/payments");
    if (r.status == 429u) {
      ++limited;
      EXPECT_EQ(r.Code(), "rate_limited");
      EXPECT_FALSE(r.headers["Retry-After"].empty());
    }
  }
  EXPECT_GE(limited, 2);
  // Another merchant has its own bucket.
  EXPECT_EQ(Call("GET", "/v1/payments", "", "", "NOODLE01").status, 200u);
}

TEST_F(HttpTest, ConnectionLimitAndIdleTimeout) {
  Stop();
  server_options_.max_connections = 2;
  server_options_.idle_timeout_ms = 200;
  OpenLedger();
  Start();  // client_ is connection 1
  Client second(server_->port());
  http::request<http::string_body> health{http::verb::get, "/healthz", 11};
  EXPECT_EQ(second.Send(health).status, 200u);
  Client third(server_->port());
  third.socket().write_some(asio::buffer(std::string("GET /healthz HTTP/1.1\r\n\r\n")));
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  beast::error_code ec;
  http::read(third.socket(), buf, res, ec);
  EXPECT_TRUE(ec) << "the third connection is closed";
  // Idle keep-alive connections are closed after idle_timeout_ms.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  Client fourth(server_->port());
  EXPECT_EQ(fourth.Send(health).status, 200u);
}

// A request whose bytes trickle in is cut after read_timeout_ms (counted),
// one that completes in time is served, and a connection waiting for the
// engine's answer has no deadline (only reads and writes do).
TEST_F(HttpTest, SlowRequestCutAfterReadTimeoutAndIdleIsNotCounted) {
  Stop();
  server_options_.read_timeout_ms = 200;
  server_options_.idle_timeout_ms = 400;
  OpenLedger();
  Start();
  ASSERT_EQ(Pay(100).status, 201u);  // the deadline is off while the Api works
  // Slow but within the limit: two parts 60 ms apart.
  Client slow_ok(server_->port());
  slow_ok.socket().write_some(asio::buffer(std::string("GET /healthz HTTP/1.1\r\n")));
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  slow_ok.socket().write_some(asio::buffer(std::string("Host: x\r\n\r\n")));
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(slow_ok.socket(), buf, res);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(server_->Stats().read_timeouts, 0u);
  // Slow-loris: a byte every 30 ms keeps arriving, the request is cut.
  Client loris(server_->port());
  loris.socket().write_some(asio::buffer(std::string("GET /healthz HTTP/1.1\r\n")));
  const auto start = std::chrono::steady_clock::now();
  beast::error_code ec;
  for (int i = 0; i < 40 && !ec; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    loris.socket().write_some(asio::buffer(std::string("X")), ec);
  }
  const auto cut_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
  EXPECT_TRUE(ec) << "the slow request was never cut";
  EXPECT_LT(cut_ms, 1000) << "cut within the timeout and a tick (plus the RST's way back)";
  EXPECT_EQ(server_->Stats().read_timeouts, 1u);
  // An idle keep-alive connection is closed after idle_timeout_ms and is not
  // a read timeout.
  Client idle(server_->port());
  http::request<http::string_body> health{http::verb::get, "/healthz", 11};
  EXPECT_EQ(idle.Send(health).status, 200u);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  beast::flat_buffer buf2;
  http::response<http::string_body> res2;
  http::read(idle.socket(), buf2, res2, ec);
  EXPECT_TRUE(ec) << "the idle connection is closed";
  EXPECT_EQ(server_->Stats().read_timeouts, 1u);
}

// ---- Events of every state change, over either protocol ---------------------

TEST_F(HttpTest, IsoPaymentsProduceOneEventEach) {
  const DemoCard& card = KpwCard();
  Message hold = IsoBase("0100", "T0000003");
  hold.Set(2, card.issued.pan);
  hold.Set(3, "000000");
  hold.Set(4, *FormatAmount(4000));
  hold.Set(49, "408");
  hold.Set(48, BuildField48(card.issued.cvv2));
  Message r1 = Iso(hold);
  ASSERT_EQ(r1.Get(39), "00");
  EXPECT_EQ(Iso(hold).Get(37), r1.Get(37));  // a retransmission: no second event
  const std::string hold_id = "pay_" + std::string(r1.Get(37));
  Message completion = IsoBase("0220", "T0000003");
  completion.Set(2, card.issued.pan);
  completion.Set(3, "000000");
  completion.Set(4, *FormatAmount(3000));
  completion.Set(49, "408");
  completion.Set(90, *FormatOriginalData({"0100", std::string(hold.Get(11)),
                                          std::string(hold.Get(7)), "00000000000", "00000000000"}));
  ASSERT_EQ(Iso(completion).Get(39), "00");
  Message sale = IsoBase("0200", "T0000003");
  sale.Set(2, card.issued.pan);
  sale.Set(3, "000000");
  sale.Set(4, *FormatAmount(900));
  sale.Set(49, "408");
  sale.Set(48, BuildField48(card.issued.cvv2));
  Message r2 = Iso(sale);
  ASSERT_EQ(r2.Get(39), "00");
  Message reversal = IsoBase("0400", "T0000003");
  reversal.Set(2, card.issued.pan);
  reversal.Set(3, "000000");
  reversal.Set(4, *FormatAmount(900));
  reversal.Set(49, "408");
  reversal.Set(90, *FormatOriginalData({"0200", std::string(sale.Get(11)), std::string(sale.Get(7)),
                                        "00000000000", "00000000000"}));
  ASSERT_EQ(Iso(reversal).Get(39), "00");
  Message refund = IsoBase("0200", "T0000003");
  refund.Set(2, card.issued.pan);
  refund.Set(3, "200000");
  refund.Set(4, *FormatAmount(1000));
  refund.Set(49, "408");
  refund.Set(37, std::string(r1.Get(37)));
  Message r3 = Iso(refund);
  ASSERT_EQ(r3.Get(39), "00");
  // A declined request changes nothing: no event.
  Message declined = IsoBase("0100", "T0000003");
  declined.Set(2, card.issued.pan);
  declined.Set(3, "000000");
  declined.Set(4, *FormatAmount(100));
  declined.Set(49, "408");
  declined.Set(48, BuildField48(card.issued.cvv2 == "000" ? "111" : "000"));
  EXPECT_NE(Iso(declined).Get(39), "00");

  std::vector<json> ev = AllEvents();
  ASSERT_EQ(Types(ev),
            (std::vector<std::string>{"payment.authorized", "payment.captured", "payment.captured",
                                      "payment.voided", "payment.refunded"}));
  EXPECT_EQ(ev[0]["data"]["id"], hold_id);
  EXPECT_EQ(ev[0]["data"]["channel"], "iso8583");
  EXPECT_EQ(ev[0]["data"]["amount"], 4000);
  EXPECT_EQ(ev[1]["data"]["id"], hold_id);
  EXPECT_EQ(ev[1]["data"]["amount_captured"], 3000);
  EXPECT_EQ(ev[2]["data"]["id"], "pay_" + std::string(r2.Get(37)));
  EXPECT_EQ(ev[3]["data"]["id"], "pay_" + std::string(r2.Get(37)));
  EXPECT_EQ(ev[3]["data"]["status"], "voided");
  EXPECT_EQ(ev[4]["data"]["payment_id"], hold_id);
  EXPECT_EQ(ev[4]["data"]["amount"], 1000);
  for (size_t i = 1; i < ev.size(); ++i) EXPECT_LT(ev[i - 1]["id"], ev[i]["id"]);
  // HTTP requests on the same payment add exactly their own event.
  Resp ref = Call("POST", "/v1/payments/" + hold_id + "/refunds", R"({"amount":500})", NextKey());
  ASSERT_EQ(ref.status, 201u) << ref.body;
  std::vector<json> after = AllEvents();
  ASSERT_EQ(after.size(), 6u);
  EXPECT_EQ(after[5]["type"], "payment.refunded");
  EXPECT_EQ(after[5]["data"]["id"], ref.j["id"]);
}

TEST_F(HttpTest, EventFeedHasExpiredAndSettledEvents) {
  Stop();
  authorization_json_ = R"({"hold_timeout_s": 1})";
  OpenLedger();
  Start();
  Resp lapsed = Pay(500);
  ASSERT_EQ(lapsed.status, 201u) << lapsed.body;
  Resp kept = Pay(600);
  ASSERT_EQ(kept.status, 201u);
  ASSERT_EQ(
      Call("POST", "/v1/payments/" + kept.j["id"].get<std::string>() + "/capture", "{}", NextKey())
          .status,
      200u);
  ASSERT_EQ(Pay(700, "automatic").status, 201u);
  const DemoCard& card = KpwCard();
  Message hold = IsoBase("0100", "T0000003");
  hold.Set(2, card.issued.pan);
  hold.Set(3, "000000");
  hold.Set(4, *FormatAmount(800));
  hold.Set(49, "408");
  hold.Set(48, BuildField48(card.issued.cvv2));
  Message iso = Iso(hold);
  ASSERT_EQ(iso.Get(39), "00");
  // Nothing is due yet.
  Result<size_t> early =
      EmitExpiredHoldsSync(*ledger_, static_cast<uint64_t>(SystemMs()) * 1000000);
  ASSERT_TRUE(early.ok());
  EXPECT_EQ(*early, 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  ASSERT_OK(ledger_->Tick());  // the ledger expires the two holds
  const uint64_t now_ns = static_cast<uint64_t>(SystemMs()) * 1000000;
  Result<size_t> n = EmitExpiredHoldsSync(*ledger_, now_ns);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 2u);
  Result<size_t> again = EmitExpiredHoldsSync(*ledger_, now_ns);  // never twice
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0u);

  Result<DayRecord> day = CloseDay(*ledger_, std::nullopt);
  ASSERT_TRUE(day.ok()) << day.status().ToString();
  Result<SettleSummary> settled = SettleDay(*ledger_, day->day, SettleOptions{});
  ASSERT_TRUE(settled.ok()) << settled.status().ToString();
  for (const SettleFailure& f : settled->failed) ADD_FAILURE() << f.merchant_id << " " << f.reason;
  EXPECT_EQ(settled->settled.size(), 1u) << settled->already_settled.size();
  Result<SettleSummary> rerun = SettleDay(*ledger_, day->day, SettleOptions{});  // no new event
  ASSERT_TRUE(rerun.ok());
  Restart();  // all of it durable
  Result<size_t> after_restart =
      EmitExpiredHoldsSync(*ledger_, static_cast<uint64_t>(SystemMs()) * 1000000);
  ASSERT_TRUE(after_restart.ok());
  EXPECT_EQ(*after_restart, 0u);

  std::vector<json> ev = AllEvents();
  std::vector<std::string> expired;
  int settlements = 0;
  for (const json& e : ev) {
    if (e["type"] == "payment.expired") {
      expired.push_back(e["data"]["id"]);
      EXPECT_EQ(e["data"]["status"], "expired");
    }
    if (e["type"] == "settlement.settled") {
      ++settlements;
      EXPECT_EQ(e["data"]["day"], day->day);
      EXPECT_EQ(e["data"]["currency"], "KPW");
      EXPECT_EQ(e["data"]["captures"], 600 + 700);
    }
  }
  EXPECT_EQ(expired, (std::vector<std::string>{lapsed.j["id"].get<std::string>(),
                                               "pay_" + std::string(iso.Get(37))}));
  EXPECT_EQ(settlements, 1);
  EXPECT_EQ(ev.back()["type"], "settlement.settled");
  EXPECT_EQ(Call("GET", "/v1/payments/" + lapsed.j["id"].get<std::string>()).j["status"],
            "expired");
}

// ---- Webhooks ------------------------------------------------------------------

using webhook_test::FreePort;
using webhook_test::WebhookReceiver;

class WebhookTest : public HttpTest {
 protected:
  void SetUp() override {
    HttpTest::SetUp();
    Stop();
    with_webhooks_ = true;
    webhook_options_.poll_interval_ms = 10;
    webhook_options_.config_reload_ms = 10;
    webhook_options_.backoff_initial_ms = 50;
    webhook_options_.backoff_max_ms = 400;
    webhook_options_.attempt_timeout_ms = 1000;
    webhook_options_.expiry_scan_interval_ms = 0;
  }
  void Begin() {
    OpenLedger();
    Start();
  }
  std::string Hook(uint16_t port) {
    Result<std::string> secret = SetWebhook(*ledger_, *keys_, "SOCKS001",
                                            "http://127.0.0.1:" + std::to_string(port) + "/hooks");
    EXPECT_TRUE(secret.ok()) << secret.status().ToString();
    return secret.ok() ? *secret : "";
  }
  template <typename F>
  bool WaitUntil(F f, int timeout_ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!f()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
  }
};

TEST_F(WebhookTest, DeliveredWithAValidSignature) {
  Begin();
  WebhookReceiver rx;
  const std::string secret_hex = Hook(rx.port());
  ASSERT_EQ(secret_hex.size(), 64u);
  Resp p = Pay(250);
  ASSERT_EQ(p.status, 201u) << p.body;
  ASSERT_TRUE(rx.WaitFor(1, 5000));
  WebhookReceiver::Request r = rx.requests()[0];
  EXPECT_EQ(r.target, "/hooks");
  json ev = json::parse(r.body);
  EXPECT_EQ(ev["type"], "payment.authorized");
  EXPECT_EQ(ev["data"]["id"], p.j["id"]);
  EXPECT_EQ(r.event_id, ev["id"]);
  EXPECT_EQ(r.attempt, "1");
  EXPECT_EQ(ev, AllEvents().back());  // the body is the feed's event
  // The signature, checked here from its definition: t=<unix>,v1=hex(HMAC(secret, t.body)).
  const size_t comma = r.signature.find(",v1=");
  ASSERT_TRUE(r.signature.starts_with("t=") && comma != std::string::npos) << r.signature;
  const std::string t = r.signature.substr(2, comma - 2);
  EXPECT_LE(std::abs(std::stoll(t) - SystemMs() / 1000), 60);
  auto key = nc::FromHex(secret_hex);
  ASSERT_TRUE(key.ok());
  std::string signed_text = t + "." + r.body;
  auto mac = nc::Hmac(
      nc::HashAlg::kSha256, *key,
      nc::ByteView(reinterpret_cast<const uint8_t*>(signed_text.data()), signed_text.size()));
  ASSERT_TRUE(mac.ok());
  std::string hex = nc::ToHex(*mac);
  for (char& c : hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_EQ(r.signature.substr(comma + 4), hex);
  Result<nc::SecretBytes> secret = nc::SecretFromHex(secret_hex);
  ASSERT_TRUE(secret.ok());
  const int64_t now_s = SystemMs() / 1000;
  EXPECT_TRUE(VerifyWebhookSignature(*secret, r.signature, r.body, now_s));
  EXPECT_FALSE(VerifyWebhookSignature(*secret, r.signature, r.body + " ", now_s));
  EXPECT_FALSE(VerifyWebhookSignature(*secret, r.signature, r.body, now_s + 3600));
  EXPECT_FALSE(VerifyWebhookSignature(*secret, "t=1,v1=00", r.body, now_s));

  ASSERT_TRUE(WaitUntil([&] { return webhooks_->Stats().delivered == 1; }, 5000));
  Resp d = Call("GET", "/v1/webhooks/deliveries");
  ASSERT_EQ(d.status, 200u) << d.body;
  ASSERT_EQ(d.j["data"].size(), 1u);
  EXPECT_EQ(d.j["data"][0]["event_id"], ev["id"]);
  EXPECT_EQ(d.j["data"][0]["status"], "delivered");
  EXPECT_EQ(d.j["data"][0]["http_status"], 200);
  EXPECT_EQ(Call("GET", "/v1/webhooks/deliveries?status=failed").j["data"].size(), 0u);
  EXPECT_EQ(Call("GET", "/v1/webhooks/deliveries?status=bogus").status, 400u);
  EXPECT_EQ(Call("POST", "/v1/webhooks/deliveries", "{}", NextKey()).status, 405u);
  http::request<http::string_body> metrics{http::verb::get, "/metrics", 11};
  std::string text = client_->Send(metrics).body;
  EXPECT_NE(text.find("narae_webhook_deliveries_total{outcome=\"delivered\"} 1"),
            std::string::npos);
  std::printf("webhook: event to delivery %llu ms (poll interval 10 ms, no fsync)\n",
              static_cast<unsigned long long>(webhooks_->Stats().latency_ms_sum));
}

TEST_F(WebhookTest, RegistrationIsCheckedAndRemovable) {
  Begin();
  EXPECT_EQ(SetWebhook(*ledger_, *keys_, "NOPE", "http://127.0.0.1:1/x").status().code(),
            StatusCode::kNotFound);
  for (const char* bad : {"https://127.0.0.1/x", "http://", "http://h:0/", "http://h:99999/",
                          "http://u@h/", "http://h/ x", "ftp://h/"}) {
    EXPECT_EQ(SetWebhook(*ledger_, *keys_, "SOCKS001", bad).status().code(),
              StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(
      SetWebhook(*ledger_, *keys_, "SOCKS001", "http://127.0.0.1:1/x", "abcd").status().code(),
      StatusCode::kInvalidArgument);
  const std::string chosen(64, 'a');
  Result<std::string> s = SetWebhook(*ledger_, *keys_, "SOCKS001", "http://[::1]:8/x", chosen);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, chosen);
  auto got = GetWebhook(*ledger_, "SOCKS001");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->url, "http://[::1]:8/x");
  ASSERT_OK(RemoveWebhook(*ledger_, "SOCKS001"));
  got = GetWebhook(*ledger_, "SOCKS001");
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
  EXPECT_EQ(RemoveWebhook(*ledger_, "NOODLE01").code(), StatusCode::kNotFound);
}

TEST_F(WebhookTest, ReceiverDownIsRetriedWithBackoffThenDelivered) {
  webhook_options_.attempts_max = 50;
  Begin();
  const uint16_t port = FreePort();
  Hook(port);
  Resp p = Pay(260);
  ASSERT_EQ(p.status, 201u);
  ASSERT_TRUE(WaitUntil([&] { return webhooks_->Stats().attempts >= 1; }, 3000));
  const auto first = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitUntil([&] { return webhooks_->Stats().attempts >= 4; }, 5000));
  const auto fourth = std::chrono::steady_clock::now();
  // Waits of at least 25 + 50 + 100 ms (the jitter takes at most half).
  EXPECT_GE(std::chrono::duration_cast<std::chrono::milliseconds>(fourth - first).count(), 170);
  EXPECT_GE(webhooks_->Stats().retries, 3u);
  EXPECT_EQ(webhooks_->Stats().delivered, 0u);
  WebhookReceiver rx(port);
  ASSERT_TRUE(rx.WaitFor(1, 5000));
  WebhookReceiver::Request r = rx.requests()[0];
  EXPECT_GE(std::stoi(r.attempt), 5);
  EXPECT_EQ(json::parse(r.body)["data"]["id"], p.j["id"]);
  ASSERT_TRUE(WaitUntil([&] { return webhooks_->Stats().delivered == 1; }, 5000));
  Resp d = Call("GET", "/v1/webhooks/deliveries");
  ASSERT_EQ(d.j["data"].size(), 1u);
  EXPECT_EQ(d.j["data"][0]["attempts"], std::stoi(r.attempt));
}

TEST_F(WebhookTest, FailedAfterTheLastAttemptAndListed) {
  webhook_options_.attempts_max = 3;
  webhook_options_.backoff_initial_ms = 20;
  Begin();
  WebhookReceiver rx;
  rx.set_status(500);
  Hook(rx.port());
  Resp p = Pay(270);
  ASSERT_EQ(p.status, 201u);
  ASSERT_TRUE(WaitUntil([&] { return webhooks_->Stats().failed == 1; }, 5000));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(rx.requests().size(), 3u);  // never a fourth
  Resp d = Call("GET", "/v1/webhooks/deliveries?status=failed");
  ASSERT_EQ(d.status, 200u) << d.body;
  ASSERT_EQ(d.j["data"].size(), 1u);
  EXPECT_EQ(d.j["data"][0]["attempts"], 3);
  EXPECT_EQ(d.j["data"][0]["http_status"], 500);
  EXPECT_EQ(d.j["data"][0]["type"], "payment.authorized");
  http::request<http::string_body> metrics{http::verb::get, "/metrics", 11};
  EXPECT_NE(
      client_->Send(metrics).body.find("narae_webhook_deliveries_total{outcome=\"failed\"} 1"),
      std::string::npos);
  // The next event is delivered normally; failed ones stay failed after a restart.
  rx.set_status(202);
  ASSERT_EQ(Pay(271).status, 201u);
  ASSERT_TRUE(WaitUntil([&] { return webhooks_->Stats().delivered == 1; }, 5000));
  Restart();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(rx.requests().size(), 4u);
}

TEST_F(WebhookTest, BoundedQueueAndConcurrencyDeliverEverythingOnce) {
  webhook_options_.queue_max = 2;
  webhook_options_.concurrency_max = 1;
  Begin();
  WebhookReceiver rx;
  Hook(rx.port());
  const int n = 7;
  for (int i = 0; i < n; ++i) ASSERT_EQ(Pay(300 + i).status, 201u);
  ASSERT_TRUE(rx.WaitFor(n, 5000));
  ASSERT_TRUE(WaitUntil([&] { return webhooks_->Stats().delivered == n; }, 5000));
  std::set<std::string> ids;
  for (const auto& r : rx.requests()) ids.insert(r.event_id);
  EXPECT_EQ(ids.size(), static_cast<size_t>(n));
  EXPECT_LE(webhooks_->Stats().queued, 2u);
}

// Figures, not a timed assertion (docs/api.md, "Webhook figures"): a backlog
// of NARAE_WEBHOOK_FIGURE_EVENTS events (default 100) made while the
// dispatcher is off, delivered after it starts; then the latency of events
// made one at a time. The ledger fsyncs.
TEST_F(WebhookTest, DeliveryFigures) {
  const char* env = std::getenv("NARAE_WEBHOOK_FIGURE_EVENTS");
  const int n = env ? std::max(1, std::atoi(env)) : 100;
  ledger_sync_ = true;
  with_webhooks_ = false;
  Begin();
  WebhookReceiver rx;
  Hook(rx.port());
  for (int i = 0; i < n; ++i) ASSERT_EQ(Pay(100 + i % 50).status, 201u);
  Stop();
  with_webhooks_ = true;
  webhook_options_.poll_interval_ms = 50;  // the default
  const auto start = std::chrono::steady_clock::now();
  Begin();
  ASSERT_TRUE(
      WaitUntil([&] { return webhooks_->Stats().delivered == static_cast<uint64_t>(n); }, 30000));
  const double backlog_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const WebhookStats before = webhooks_->Stats();
  const int m = 10;
  for (int i = 0; i < m; ++i) {
    ASSERT_EQ(Pay(100).status, 201u);
    const uint64_t want = static_cast<uint64_t>(n + i + 1);
    ASSERT_TRUE(WaitUntil([&] { return webhooks_->Stats().delivered == want; }, 5000));
  }
  WebhookStats st = webhooks_->Stats();
  EXPECT_EQ(rx.requests().size(), static_cast<size_t>(n + m));
  std::printf(
      "webhook figures: backlog of %d events delivered in %.3f s (%.0f events/s, "
      "concurrency %u, fsync on); one at a time: mean %.1f ms from the event's commit to its "
      "delivery over %d events (poll %u ms)\n",
      n, backlog_s, n / backlog_s, webhook_options_.concurrency_max,
      static_cast<double>(st.latency_ms_sum - before.latency_ms_sum) / m, m,
      webhook_options_.poll_interval_ms);
}

TEST(HttpConfig, TheConfigFileSetsTheApiLimits) {
  SwitchConfig c;
  ASSERT_OK(ApplyConfigJson(R"({"data": "d", "http": {"body_bytes_max": 2048,
      "header_bytes_max": 4096, "keep_alive_timeout_ms": 1500, "max_connections": 7,
      "rate_per_s": 5, "rate_burst": 9, "signature_skew_s": 60, "threads": 3,
      "webhooks": {"attempts_max": 3, "backoff_initial_ms": 10, "backoff_max_ms": 20,
                   "queue_max": 50, "concurrency_max": 2}}})",
                            &c));
  ASSERT_OK(ValidateConfig(c));
  HttpConfig h;
  ASSERT_OK(ApplyHttpConfigJson(c.http_json, &h));
  EXPECT_EQ(h.server.body_bytes_max, 2048u);
  EXPECT_EQ(h.server.header_bytes_max, 4096u);
  EXPECT_EQ(h.server.idle_timeout_ms, 1500u);
  EXPECT_EQ(h.server.max_connections, 7u);
  EXPECT_EQ(h.server.threads, 3u);
  EXPECT_EQ(h.api.rate_per_s, 5u);
  EXPECT_EQ(h.api.rate_burst, 9u);
  EXPECT_EQ(h.api.signature_skew_s, 60);
  EXPECT_EQ(h.webhooks.attempts_max, 3u);
  EXPECT_EQ(h.webhooks.backoff_max_ms, 20u);
  EXPECT_EQ(h.webhooks.queue_max, 50u);
  EXPECT_EQ(h.webhooks.concurrency_max, 2u);
  HttpConfig defaults;
  ASSERT_OK(ApplyHttpConfigJson("{}", &defaults));
  EXPECT_EQ(defaults.server.body_bytes_max, HttpServerOptions{}.body_bytes_max);
  for (const char* bad :
       {R"({"http": {"body_bytes_max": 1}})", R"({"http": {"bogus": 1}})",
        R"({"http": {"rate_per_s": "5"}})", R"({"http": {"threads": -1}})",
        R"({"http": {"webhooks": {"attempts_max": 0}}})",
        R"({"http": {"webhooks": {"backoff_initial_ms": 100, "backoff_max_ms": 10}}})",
        R"({"http": {"webhooks": {"bogus": 1}}})"}) {
    SwitchConfig b;
    b.data_dir = "d";
    ASSERT_OK(ApplyConfigJson(bad, &b));
    Status s = ValidateConfig(b);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
  }
  SwitchConfig wrong;
  EXPECT_FALSE(ApplyConfigJson(R"({"http": 3})", &wrong).ok());
}

}  // namespace
}  // namespace narae::switching
