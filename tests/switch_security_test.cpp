// Security checks (issue 7, docs/security.md, docs/reliability.md).
//
// NoSecretInLogsOrStorage: a demo run through the real narae-switch with
// logging at debug level (every decline and format error logged): card
// payments with CVV2 and with PINs (right and wrong), holds, chip-less and
// SIM token payments, malformed messages carrying secrets. Then every log
// line, every byte of every file of the ledger's RocksDB folder and of the
// key store, and every aux value read back through the ledger are searched
// for each secret in raw, upper-case hex and lower-case hex form: full PANs,
// PINs (long ones, issued for the test, so a match cannot be a coincidence),
// clear and encrypted PIN blocks, terminal PIN and MAC keys, SIM keys,
// issuer keys, API secrets, the master key. CVV2s (3 digits) and the demo's
// 4-digit PINs are too short to search for as such: the field 48 element
// ("CVV203" + CVV2), the HTTP body member ("cvv2":"123") and any JSON
// member named like a PIN or CVV are searched instead. The same run pays
// over the storefront HTTP API too (held, captured, refunded, bought, a
// wrong CVV2, bodies refused as malformed that carry the PAN and CVV2).
//
// TerminalKeyCannotMacForAnotherTerminal: the two demo MAC terminals; a
// request signed with the other terminal's key is declined 05, the
// response MAC verifies under the terminal's own key only.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string>
#include <vector>

#include "ledger/ledger.hpp"
#include "tests/switch_harness.hpp"
#include "tests/switch_http_harness.hpp"
#include "tests/test_util.hpp"

namespace narae::switching {
namespace {

using namespace harness;
using Bytes = std::vector<uint8_t>;

std::string Hex(const uint8_t* p, size_t n, bool upper) {
  static const char* kLower = "0123456789abcdef";
  static const char* kUpper = "0123456789ABCDEF";
  const char* digits = upper ? kUpper : kLower;
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s.push_back(digits[p[i] >> 4]);
    s.push_back(digits[p[i] & 15]);
  }
  return s;
}

struct Secret {
  std::string what;
  std::vector<std::string> forms;  // raw bytes, hex upper, hex lower
};

void AddBytes(std::vector<Secret>* out, const std::string& what, const uint8_t* p, size_t n) {
  out->push_back(
      {what,
       {std::string(reinterpret_cast<const char*>(p), n), Hex(p, n, true), Hex(p, n, false)}});
}
void AddText(std::vector<Secret>* out, const std::string& what, const std::string& text) {
  out->push_back({what, {text}});
}
void AddHexKey(std::vector<Secret>* out, const std::string& what, const std::string& hex) {
  if (hex.empty()) return;
  crypto::SecretBytes k = SecretHex(hex);
  AddBytes(out, what, k.data(), k.size());
}

// Every place `haystack` contains a form of a secret: "what (where)".
void Scan(const std::string& where, std::string_view haystack, const std::vector<Secret>& secrets,
          std::vector<std::string>* found) {
  for (const Secret& s : secrets) {
    for (const std::string& f : s.forms) {
      if (!f.empty() && haystack.find(f) != std::string_view::npos) {
        found->push_back(s.what + " in " + where);
        break;
      }
    }
  }
}

// JSON members named like a secret anywhere in a document.
void ScanJsonNames(const std::string& where, const nlohmann::json& j,
                   std::vector<std::string>* found) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      std::string lower = k;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (lower == "pin" || lower == "cvv" || lower == "cvv2" || lower == "pin_block" ||
          lower == "track2" || lower == "key" || lower == "key_hex") {
        found->push_back("member '" + k + "' in " + where);
      }
      ScanJsonNames(where, v, found);
    }
  } else if (j.is_array()) {
    for (const auto& v : j) ScanJsonNames(where, v, found);
  }
}

TEST(SwitchSecurity, NoSecretInLogsOrStorage) {
  if (!HaveBinaries()) GTEST_SKIP() << "narae-switch or narae not built";
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "not under ThreadSanitizer (uninstrumented RocksDB in the child)";
#endif
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  const std::string log = dir.Sub("switch.log");
  ASSERT_TRUE(SeedDemo(data, dir.Sub("demo.json"), 2));
  Demo demo = LoadDemo(dir.Sub("demo.json"));
  // Cards with 12-digit PINs on the demo's accounts: searchable as text.
  std::vector<DemoCard> long_pin_cards;
  const char* kLongPins[] = {"739182640571", "605172839401"};
  for (int i = 0; i < 2; ++i) {
    const DemoCard& base = demo.Card(408, static_cast<size_t>(i));
    FILE* p = ::popen((NaraeBin() + " card issue --data " + data + " --account " + base.account_id +
                       " --pin " + kLongPins[i] + " --json")
                          .c_str(),
                      "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
    ASSERT_EQ(::pclose(p), 0) << out;
    nlohmann::json j = nlohmann::json::parse(out);
    long_pin_cards.push_back({j.at("pan").get<std::string>(), j.at("expiry").get<std::string>(),
                              j.at("cvv2").get<std::string>(), kLongPins[i], 408, base.account_id});
  }

  SwitchProcess sw;
  ASSERT_TRUE(
      sw.Start(data, {"--log-file", log, "--log-level", "debug", "--http-listen", "127.0.0.1:0"}));
  std::vector<Secret> secrets;
  std::vector<std::string> short_contexts;  // field 48 elements with a CVV2
  uint32_t stan = 0;
  uint32_t approved = 0;
  uint32_t declined = 0;
  {
    IsoClient c(sw.port());
    ASSERT_TRUE(c.connected());
    auto send = [&](const DemoTerminal& t, const Message& m) {
      std::optional<Message> r = c.Call(SignFrame(m, t));
      ASSERT_TRUE(r.has_value());
      (r->Get(39) == "00" ? approved : declined)++;
    };
    std::vector<DemoCard> cards = demo.cards;
    cards.insert(cards.end(), long_pin_cards.begin(), long_pin_cards.end());
    for (const DemoTerminal& t : demo.terminals) {
      for (const DemoCard& card : cards) {
        if (std::find(t.currencies.begin(), t.currencies.end(), card.currency) ==
            t.currencies.end()) {
          continue;
        }
        send(t, CardRequest("0200", t, card, ++stan, 1500));
        send(t, CardRequest("0100", t, card, ++stan, 2500));
        Message pin = PinPurchase(t, card, ++stan, 1700, card.pin);
        AddBytes(&secrets, "encrypted PIN block",
                 reinterpret_cast<const uint8_t*>(pin.Get(52).data()), 8);
        send(t, pin);
        // A wrong CVV2 (declined 05, logged at debug).
        std::string cvv = card.cvv2;
        cvv[0] = cvv[0] == '9' ? '0' : static_cast<char>(cvv[0] + 1);
        Message wrong = CardRequest("0200", t, card, ++stan, 1100);
        wrong.Set(48, "CVV203" + cvv);
        send(t, wrong);
        // A format error carrying the PAN and the CVV2 (field 4 with a letter).
        Message bad = CardRequest("0200", t, card, ++stan, 1234);
        Bytes body = Pack(bad).value();
        const std::string amount = "000000001234";
        auto it = std::search(body.begin(), body.end(), amount.begin(), amount.end());
        ASSERT_NE(it, body.end());
        *(it + 5) = 'X';
        std::optional<Message> r = c.Call(Frame(body).value());
        ASSERT_TRUE(r.has_value());
        EXPECT_EQ(r->Get(39), "30");
      }
      // One wrong PIN per terminal on the second long-PIN card (55, counted;
      // the right PIN above reset the count, so it never reaches the limit).
      Message wrong_pin = PinPurchase(t, long_pin_cards[1], ++stan, 1000, "000000000000");
      send(t, wrong_pin);
    }
    for (size_t i = 0; i < demo.sims.size(); ++i) {
      for (uint64_t counter = 1; counter <= 3; ++counter) {
        send(demo.Terminal("T0000003"),
             SimPurchase(demo.Terminal("T0000003"), demo.sims[i], counter, ++stan, 900));
      }
    }
  }
  // The storefront API: card payments (held, captured, refunded, bought at
  // once), a wrong CVV2, and refused bodies that carry the PAN and CVV2.
  uint32_t http_answers = 0;
  {
    HttpClient h(sw.http_port());
    ASSERT_TRUE(h.connected());
    uint32_t key = 0;
    auto post = [&](const std::string& merchant, const std::string& secret,
                    const std::string& target, const std::string& body) {
      std::optional<HttpAnswer> a = h.Call("POST", target, body,
                                           StorefrontHeaders(merchant, secret, "POST", target, body,
                                                             "sec-" + std::to_string(++key)));
      EXPECT_TRUE(a.has_value()) << target;
      if (a) ++http_answers;
      return a ? *a : HttpAnswer{};
    };
    std::vector<DemoCard> kpw_cards = long_pin_cards;
    for (const DemoCard& card : demo.cards) {
      if (card.currency == 408) kpw_cards.push_back(card);
    }
    size_t storefronts = 0;
    for (const auto& m : demo.doc.at("merchants")) {
      const auto& cur = m.at("currencies");
      if (storefronts == 2 || std::find(cur.begin(), cur.end(), 408) == cur.end()) continue;
      ++storefronts;
      const std::string merchant = m.at("id").get<std::string>();
      const std::string secret = m.at("api_secret_hex").get<std::string>();
      for (const DemoCard& card : kpw_cards) {
        auto body = [&](const char* capture, const std::string& cvv2) {
          return nlohmann::json{
              {"amount", 1300},
              {"currency", "KPW"},
              {"capture", capture},
              {"order_ref", "sec-" + std::to_string(key)},
              {"card", {{"pan", card.pan}, {"expiry", card.expiry}, {"cvv2", cvv2}}}}
              .dump();
        };
        HttpAnswer held = post(merchant, secret, "/v1/payments", body("manual", card.cvv2));
        EXPECT_EQ(held.status, 201) << held.body;
        nlohmann::json j = nlohmann::json::parse(held.body, nullptr, false);
        if (held.status == 201 && j.contains("id")) {
          const std::string id = j.at("id").get<std::string>();
          EXPECT_EQ(post(merchant, secret, "/v1/payments/" + id + "/capture", "{}").status, 200);
          EXPECT_EQ(
              post(merchant, secret, "/v1/payments/" + id + "/refunds", "{\"amount\":300}").status,
              201);
        }
        EXPECT_EQ(post(merchant, secret, "/v1/payments", body("automatic", card.cvv2)).status, 201);
        std::string wrong = card.cvv2;
        wrong[0] = wrong[0] == '9' ? '0' : static_cast<char>(wrong[0] + 1);
        EXPECT_EQ(post(merchant, secret, "/v1/payments", body("automatic", wrong)).status, 402);
        // Refused before any authorization: trailing garbage, a duplicate key.
        EXPECT_EQ(post(merchant, secret, "/v1/payments", body("automatic", card.cvv2) + "x").status,
                  400);
        const std::string dup = body("automatic", card.cvv2);
        EXPECT_EQ(post(merchant, secret, "/v1/payments", "{\"amount\":1," + dup.substr(1)).status,
                  400);
      }
    }
  }
  ASSERT_EQ(sw.Stop(), 0);
  EXPECT_GT(approved, 50u);
  EXPECT_GT(declined, 10u);
  EXPECT_GT(http_answers, 20u);

  // The secrets of the run.
  nlohmann::json doc = demo.doc;
  std::vector<DemoCard> all_cards = demo.cards;
  all_cards.insert(all_cards.end(), long_pin_cards.begin(), long_pin_cards.end());
  for (const DemoCard& card : all_cards) {
    AddText(&secrets, "full PAN", card.pan);
    short_contexts.push_back("CVV203" + card.cvv2);
    short_contexts.push_back("CVV2" + card.cvv2);
    short_contexts.push_back("\"cvv2\":\"" + card.cvv2 + "\"");  // an HTTP body
    Result<crypto::Bytes> clear = crypto::EncodePinBlockIso0(card.pin, card.pan);
    ASSERT_TRUE(clear.ok());
    AddBytes(&secrets, "clear PIN block", clear->data(), clear->size());
  }
  for (const DemoCard& card : long_pin_cards) AddText(&secrets, "PIN", card.pin);
  for (const auto& m : doc["merchants"]) {
    AddHexKey(&secrets, "API secret", m.value("api_secret_hex", ""));
    for (const auto& t : m["terminals"]) {
      AddHexKey(&secrets, "TPK", t.value("tpk_hex", ""));
      AddHexKey(&secrets, "MAC key", t.value("mac_key_hex", ""));
    }
  }
  for (const auto& k : doc["cards"]) {
    AddHexKey(&secrets, "issuer key", k.value("imk_ac_hex", ""));
    AddHexKey(&secrets, "card key", k.value("card_key_hex", ""));
  }
  for (const auto& s : doc["sims"]) AddHexKey(&secrets, "SIM key", s.value("sim_key_hex", ""));
  std::string master = Slurp(data + "/master.key");
  while (!master.empty() && std::isspace(static_cast<unsigned char>(master.back()))) {
    master.pop_back();
  }
  AddHexKey(&secrets, "master key", master);
  for (const std::string& ctx : short_contexts) AddText(&secrets, "CVV2 element", ctx);

  std::vector<std::string> found;
  // 1. Every log line (and its JSON member names).
  const std::string log_text = Slurp(log);
  size_t log_lines = 0;
  {
    std::istringstream in(log_text);
    for (std::string line; std::getline(in, line);) {
      ++log_lines;
      Scan("log line " + std::to_string(log_lines), line, secrets, &found);
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << line;
      if (!j.is_discarded()) ScanJsonNames("log line " + std::to_string(log_lines), j, &found);
    }
  }
  EXPECT_NE(log_text.find("\"event\":\"response\""), std::string::npos);  // debug level on
  // 2. Every file of the ledger and of the key store, byte for byte.
  size_t files = 0;
  uint64_t bytes = 0;
  for (const char* sub : {"/ledger", "/keys"}) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(data + sub)) {
      if (!e.is_regular_file()) continue;
      const std::string content = Slurp(e.path().string());
      ++files;
      bytes += content.size();
      Scan(e.path().string(), content, secrets, &found);
    }
  }
  // 3. Every aux value, read back through the ledger (decompressed).
  size_t aux_values = 0;
  {
    ledger::Options lo;
    lo.path = data + "/ledger";
    Result<std::unique_ptr<ledger::Ledger>> l = ledger::Ledger::Open(lo);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    ASSERT_OK((*l)->ScanAux("", [&](std::string_view key, std::string_view value) {
      ++aux_values;
      const std::string where = "aux " + std::string(key);
      Scan(where, key, secrets, &found);
      Scan(where, value, secrets, &found);
      nlohmann::json j = nlohmann::json::parse(value, nullptr, false);
      if (!j.is_discarded()) ScanJsonNames(where, j, &found);
      return true;
    }));
    ASSERT_OK((*l)->Close());
  }
  for (const std::string& f : found) ADD_FAILURE() << f;
  std::printf(
      "[ secrets ] %u approved + %u declined ISO requests, %u HTTP answers; %zu secrets (%zu forms "
      "each at most) searched in %zu log lines, %zu files (%llu bytes), %zu aux values: %zu "
      "found\n",
      approved, declined, http_answers, secrets.size(), size_t{3}, log_lines, files,
      static_cast<unsigned long long>(bytes), aux_values, found.size());
}

TEST(SwitchSecurity, TerminalKeyCannotMacForAnotherTerminal) {
  if (!HaveBinaries()) GTEST_SKIP() << "narae-switch or narae not built";
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "not under ThreadSanitizer (uninstrumented RocksDB in the child)";
#endif
  testing::TempDir dir;
  const std::string data = dir.Sub("data");
  ASSERT_TRUE(SeedDemo(data, dir.Sub("demo.json"), 1));
  const Demo demo = LoadDemo(dir.Sub("demo.json"));
  const DemoTerminal& a = demo.Terminal("T0000001");
  const DemoTerminal& b = demo.Terminal("T0000006");
  ASSERT_FALSE(a.mac_key.empty());
  ASSERT_FALSE(b.mac_key.empty());
  SwitchProcess sw;
  ASSERT_TRUE(sw.Start(data));
  IsoClient c(sw.port());
  uint32_t stan = 0;
  const DemoCard& card = demo.Card(408);
  auto call = [&](const Message& m, const crypto::SecretBytes& key) {
    std::optional<Message> r = c.Call(SignFrame(m, key));
    NARAE_CHECK(r.has_value());
    return *r;
  };
  // Terminal A's request MACed with B's key, and B's with A's: 05.
  EXPECT_EQ(call(CardRequest("0200", a, card, ++stan, 1000), b.mac_key).Get(39), "05");
  EXPECT_EQ(call(CardRequest("0200", b, card, ++stan, 1000), a.mac_key).Get(39), "05");
  // A MAC terminal's request with a non-MAC terminal's fields and its own
  // MAC: the non-MAC terminal's identity is not borrowed (58: wrong merchant).
  Message borrowed = CardRequest("0200", a, card, ++stan, 1000);
  borrowed.Set(42, b.field42);
  EXPECT_EQ(call(borrowed, a.mac_key).Get(39), "58");
  // Each with its own key: approved, and the response MAC verifies under
  // that terminal's key and not under the other's.
  for (const DemoTerminal* t : {&a, &b}) {
    Message r = call(CardRequest("0200", *t, card, ++stan, 1000), t->mac_key);
    ASSERT_EQ(r.Get(39), "00");
    ASSERT_TRUE(r.Has(64) || r.Has(128));
    const std::vector<uint8_t> body = Pack(r).value();
    crypto::ByteView data_view(body.data(), body.size() - 8);
    crypto::ByteView mac(body.data() + body.size() - 8, 8);
    const DemoTerminal* other = t == &a ? &b : &a;
    EXPECT_TRUE(crypto::VerifyIso8583Mac(t->mac_key, data_view, mac).ok());
    EXPECT_FALSE(crypto::VerifyIso8583Mac(other->mac_key, data_view, mac).ok());
  }
  ASSERT_EQ(sw.Stop(), 0);
}

}  // namespace
}  // namespace narae::switching
