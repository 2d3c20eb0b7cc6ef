// Webhooks against the real narae-switch: events queued while the receiver
// is down survive a SIGKILL and are delivered after the restart (at least
// once; the receiver dedupes on the event id), signed with the merchant's
// webhook secret. The in-process tests are in switch_http_test.cpp.
#include "tests/switch_harness.hpp"
#include "tests/webhook_receiver.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/api.hpp"
#include "switch/webhook.hpp"
#include "tests/test_util.hpp"

namespace narae::switching {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;
using harness::SwitchProcess;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One signed POST /v1/payments over a fresh connection; the HTTP status.
unsigned PayOverHttp(uint16_t port, const std::string& merchant, const std::string& secret_hex,
                     const json& card, uint64_t amount, const std::string& idem) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return 0;
  const std::string body =
      json{{"amount", amount},
           {"currency", "KPW"},
           {"capture", "manual"},
           {"card", {{"pan", card["pan"]}, {"expiry", card["expiry"]}, {"cvv2", card["cvv2"]}}}}
          .dump();
  http::request<http::string_body> req{http::verb::post, "/v1/payments", 11};
  for (auto& [k, v] :
       SignedHeaders(merchant, secret_hex, "POST", "/v1/payments", body, NowMs() / 1000,
                     "nonce-" + idem + "-" + std::to_string(NowMs()))) {
    req.set(k, v);
  }
  req.set("Idempotency-Key", idem);
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(s, req, ec);
  if (ec) return 0;
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res, ec);
  if (!ec && res.result_int() != 201) ADD_FAILURE() << res.body();
  return ec ? 0 : res.result_int();
}

// A command's stdout.
std::string RunOutput(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// An unsigned POST of `body`; the HTTP status (0 when the connection broke).
unsigned PostRaw(uint16_t port, const std::string& body) {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return 0;
  http::request<http::string_body> req{http::verb::post, "/v1/payments", 11};
  req.set(http::field::host, "127.0.0.1");
  req.body() = body;
  req.prepare_payload();
  http::write(s, req, ec);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res, ec);
  return ec ? 0 : res.result_int();
}

TEST(WebhookProcess, UndeliveredEventsAreDeliveredAfterSigkill) {
  if (!harness::HaveBinaries()) GTEST_SKIP() << "narae-switch or narae not built";
  narae::testing::TempDir dir;
  const std::string data = dir.Sub("data");
  ASSERT_TRUE(harness::SeedDemo(data, dir.Sub("demo.json"), 2));
  json demo = json::parse(harness::Slurp(dir.Sub("demo.json")));
  std::string merchant, merchant_secret;
  for (const json& m : demo["merchants"]) {
    if (m["id"] == "SOCKS001") merchant_secret = m["api_secret_hex"];
  }
  merchant = "SOCKS001";
  ASSERT_FALSE(merchant_secret.empty());
  json card;
  for (const json& c : demo["cards"]) {
    if (c["currency"] == 408) {
      card = c;
      break;
    }
  }
  ASSERT_FALSE(card.is_null());

  // Register the webhook with the CLI (the switch is not running).
  const uint16_t hook_port = webhook_test::FreePort();
  const std::string url = "http://127.0.0.1:" + std::to_string(hook_port) + "/in";
  const std::string out = RunOutput(harness::NaraeBin() + " merchant webhook set --data " + data +
                                    " --merchant " + merchant + " --url " + url + " --json");
  json set = json::parse(out, nullptr, false);
  ASSERT_TRUE(set.is_object() && set.value("ok", false)) << out;
  const std::string secret_hex = set["secret_hex"];
  ASSERT_EQ(secret_hex.size(), 64u);
  json shown = json::parse(RunOutput(harness::NaraeBin() + " merchant webhook show --data " + data +
                                     " --merchant " + merchant + " --json"),
                           nullptr, false);
  ASSERT_TRUE(shown.is_object());
  EXPECT_EQ(shown["url"], url);
  EXPECT_EQ(shown.dump().find(secret_hex), std::string::npos);  // never shown again
  const std::string config = dir.Sub("switch.json");
  {
    std::ofstream f(config);
    f << R"({"http": {"body_bytes_max": 2048, "webhooks": {"poll_interval_ms": 10, "backoff_initial_ms": 50,
            "backoff_max_ms": 200, "attempts_max": 100, "attempt_timeout_ms": 1000}}})";
  }
  const uint16_t http_port = webhook_test::FreePort();
  const std::vector<std::string> args = {"--http-listen", "127.0.0.1:" + std::to_string(http_port),
                                         "--config",      config,
                                         "--log-file",    dir.Sub("switch.log")};
  const int payments = 3;
  {
    SwitchProcess sw;
    ASSERT_TRUE(sw.Start(data, args));
    for (int i = 0; i < payments; ++i) {
      ASSERT_EQ(
          PayOverHttp(http_port, merchant, merchant_secret, card, 100 + i, "k" + std::to_string(i)),
          201u);
    }
    // The config file's limits are the server's: a 3 KiB body is refused.
    EXPECT_EQ(PostRaw(http_port, std::string(3000, ' ')), 413u);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));  // a few failed attempts
    sw.Kill();  // SIGKILL: nothing delivered, nothing flushed on purpose
  }
  webhook_test::WebhookReceiver rx(hook_port);
  SwitchProcess sw;
  ASSERT_TRUE(sw.Start(data, args));
  ASSERT_TRUE(rx.WaitFor(payments, 10000));
  Result<crypto::SecretBytes> secret = crypto::SecretFromHex(secret_hex);
  ASSERT_TRUE(secret.ok());
  std::set<std::string> ids;
  for (const auto& r : rx.requests()) {
    EXPECT_TRUE(VerifyWebhookSignature(*secret, r.signature, r.body, NowMs() / 1000));
    json ev = json::parse(r.body);
    EXPECT_EQ(ev["type"], "payment.authorized");
    EXPECT_EQ(ev["id"], r.event_id);
    ids.insert(r.event_id);
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(payments));  // every event, deduped by id
  EXPECT_EQ(sw.Stop(), 0);
}

}  // namespace
}  // namespace narae::switching
