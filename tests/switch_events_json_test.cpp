// The ISO 8583 payment events the sequencer writes by hand (api_events.cpp
// IsoEventJson, AppendJsonString) against nlohmann::json: the same bytes as
// json::dump() of the same object (the builder RecordIsoChange used before,
// kept here as the reference), canonical (parse + dump gives them back), and
// the expected values, for every event kind and for nasty strings.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ledger/ledger.hpp"
#include "switch/api.hpp"
#include "switch/api_events.hpp"
#include "switch/authorizer.hpp"
#include "switch/bank.hpp"
#include "tests/test_util.hpp"

namespace narae::switching {
namespace {

using json = nlohmann::json;

// The reference: the json tree RecordIsoChange built before it wrote by hand.
json RefPayment(std::string_view rrn, std::string_view status, uint64_t amount_minor,
                uint16_t currency, uint64_t captured_minor) {
  return json{{"id", "pay_" + std::string(rrn)},
              {"object", "payment"},
              {"status", status},
              {"amount", amount_minor},
              {"currency", CurrencyAlpha(currency)},
              {"amount_captured", captured_minor},
              {"channel", "iso8583"}};
}

std::optional<std::pair<std::string, json>> Reference(const PaymentChange& c,
                                                      const std::string& orig_rrn,
                                                      uint64_t orig_amount) {
  std::string type;
  json data;
  switch (c.kind) {
    case RequestKind::kHold:
      type = "payment.authorized";
      data = RefPayment(c.rrn, "authorized", c.amount_minor, c.currency, 0);
      break;
    case RequestKind::kPurchase:
      type = "payment.captured";
      data = RefPayment(c.rrn, "captured", c.amount_minor, c.currency, c.amount_minor);
      break;
    case RequestKind::kCompletion:
      type = "payment.captured";
      data = RefPayment(orig_rrn, "captured", orig_amount, c.currency, c.amount_minor);
      break;
    case RequestKind::kReversal:
      type = "payment.voided";
      data = RefPayment(orig_rrn, c.partial ? "authorized" : "voided", orig_amount, c.currency, 0);
      data["amount_voided"] = c.amount_minor;
      data["partial"] = c.partial;
      break;
    case RequestKind::kRefund:
      type = "payment.refunded";
      data = json{{"id", "re_" + c.rrn},
                  {"object", "refund"},
                  {"payment_id", orig_rrn.empty() ? json(nullptr) : json("pay_" + orig_rrn)},
                  {"amount", c.amount_minor},
                  {"currency", CurrencyAlpha(c.currency)},
                  {"status", "succeeded"},
                  {"channel", "iso8583"}};
      break;
    default:
      return std::nullopt;
  }
  data["iso8583"] = {{"rrn", c.rrn}, {"terminal_id", c.terminal_id}};
  return std::make_pair(type, data);
}

// Strings json::dump() escapes (or must not): quotes, backslash, every
// short escape, \u00XX controls, DEL, '/', multi-byte UTF-8.
const std::vector<std::string>& NastyStrings() {
  static const std::vector<std::string> v = {
      "",
      "123456789012",
      "T0000001",
      "q\"uote",
      "back\\slash\\",
      "\"\\\"",
      std::string("nul\0byte", 8),
      "\x01\x02\x1f|\b\f\n\r\t|\x7f",
      "sl/ash",
      "\xed\x8f\x89\xec\x96\x91 \xe2\x82\xac \xf0\x9f\x98\x80",  // 평양 € 😀
      "\xc3\xa9\"\\\n\xc2\x80\xdf\xbf",
  };
  return v;
}

PaymentChange Change(RequestKind kind, std::string rrn, std::string terminal, uint64_t amount,
                     uint16_t currency, bool partial = false) {
  PaymentChange c;
  c.kind = kind;
  c.rrn = std::move(rrn);
  c.terminal_id = std::move(terminal);
  c.amount_minor = amount;
  c.currency = currency;
  c.partial = partial;
  return c;
}

// Checks one change: hand-built == reference dump, canonical, and values.
void ExpectSameAsDump(const PaymentChange& c, const std::string& orig_rrn, uint64_t orig_amount) {
  SCOPED_TRACE(::testing::Message()
               << "kind " << static_cast<int>(c.kind) << " rrn " << json(c.rrn).dump()
               << " terminal " << json(c.terminal_id).dump() << " orig " << json(orig_rrn).dump());
  std::optional<IsoEvent> got = IsoEventJson(c, orig_rrn, orig_amount);
  std::optional<std::pair<std::string, json>> want = Reference(c, orig_rrn, orig_amount);
  ASSERT_EQ(got.has_value(), want.has_value());
  if (!got) return;
  EXPECT_EQ(got->type, want->first);
  EXPECT_EQ(got->data, want->second.dump());
  json parsed = json::parse(got->data, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(parsed.is_discarded()) << got->data;
  EXPECT_EQ(parsed.dump(), got->data);  // keys sorted, escapes canonical
  EXPECT_EQ(parsed, want->second);
  EXPECT_EQ(parsed["iso8583"], (json{{"rrn", c.rrn}, {"terminal_id", c.terminal_id}}));
  EXPECT_EQ(parsed["channel"], "iso8583");
  EXPECT_EQ(parsed["currency"], CurrencyAlpha(c.currency));
}

TEST(IsoEventJson, AppendJsonStringIsDumpForEveryByteAndUtf8) {
  for (int b = 0; b < 0x80; ++b) {
    const std::string s = "a" + std::string(1, static_cast<char>(b)) + "z";
    std::string out;
    AppendJsonString(&out, s);
    EXPECT_EQ(out, json(s).dump()) << "byte " << b;
  }
  for (const std::string& s : NastyStrings()) {
    std::string out = "x";
    AppendJsonString(&out, s);
    EXPECT_EQ(out, "x" + json(s).dump()) << json(s).dump();
    EXPECT_EQ(json::parse(out.substr(1)).get<std::string>(), s);
  }
  // The escapes themselves (lower-case hex, as dump() writes them).
  std::string out;
  AppendJsonString(&out, std::string("\x00\x1f\x1b\"\\\b\t", 7));
  EXPECT_EQ(out, R"("\u0000\u001f\u001b\"\\\b\t")");
  // Invalid UTF-8 is written as it is, where dump() would throw
  // (type_error 316); never in an ISO event: RRNs are the switch's own
  // base-36 characters and terminal ids those of known terminals.
  out.clear();
  AppendJsonString(&out, "a\xff\xc3");
  EXPECT_EQ(out, "\"a\xff\xc3\"");
  EXPECT_THROW((void)json("a\xff\xc3").dump(), json::type_error);
}

// JsonNeedsEscape looks at a word at a time, the last one overlapping (or
// padded with spaces): every length up to three words, each byte that must
// be escaped (and its neighbours that must not) at every position.
TEST(IsoEventJson, NeedsEscapeAtEveryLengthAndPosition) {
  for (size_t n = 0; n <= 24; ++n) {
    const std::string plain(n, 'a');
    EXPECT_FALSE(JsonNeedsEscape(plain)) << n;
    std::string out;
    AppendJsonString(&out, plain);
    EXPECT_EQ(out, json(plain).dump());
    for (size_t at = 0; at < n; ++at) {
      for (int b : {0x00, 0x01, 0x1f, int{'"'}, int{'\\'}, 0x20, 0x21, 0x7f, 0x80, 0xff}) {
        std::string s = plain;
        s[at] = static_cast<char>(b);
        const bool escaped = b < 0x20 || b == '"' || b == '\\';
        EXPECT_EQ(JsonNeedsEscape(s), escaped) << n << " " << at << " " << b;
        if (b < 0x80) {  // dump() refuses invalid UTF-8
          out.clear();
          AppendJsonString(&out, s);
          EXPECT_EQ(out, json(s).dump()) << n << " " << at << " " << b;
        }
      }
    }
  }
}

TEST(IsoEventJson, EveryKindMatchesTheJsonTree) {
  const uint64_t kMax = std::numeric_limits<uint64_t>::max();
  for (uint16_t currency : {uint16_t{408}, uint16_t{840}, uint16_t{0}}) {
    for (uint64_t amount : {uint64_t{0}, uint64_t{1}, uint64_t{4000}, kMax}) {
      for (RequestKind kind : {RequestKind::kHold, RequestKind::kPurchase, RequestKind::kCompletion,
                               RequestKind::kReversal, RequestKind::kRefund}) {
        for (bool partial : {false, true}) {
          PaymentChange c = Change(kind, "260001000042", "T0000003", amount, currency, partial);
          ExpectSameAsDump(c, "260001000041", kMax - amount);
          ExpectSameAsDump(c, "", 0);  // no original found
        }
      }
    }
  }
}

TEST(IsoEventJson, NastyStringsMatchTheJsonTree) {
  for (RequestKind kind : {RequestKind::kHold, RequestKind::kPurchase, RequestKind::kCompletion,
                           RequestKind::kReversal, RequestKind::kRefund}) {
    for (const std::string& s : NastyStrings()) {
      ExpectSameAsDump(Change(kind, s, "T0000001", 5, 408, true), "260001000041", 7);
      ExpectSameAsDump(Change(kind, "260001000042", s, 5, 408), "260001000041", 7);
      if (!s.empty()) ExpectSameAsDump(Change(kind, "260001000042", "T1", 5, 408), s, 7);
    }
  }
}

TEST(IsoEventJson, ValuesOfEachKind) {
  PaymentChange c = Change(RequestKind::kReversal, "260001000042", "T0000003", 900, 408, true);
  std::optional<IsoEvent> e = IsoEventJson(c, "260001000041", 4000);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "payment.voided");
  EXPECT_EQ(
      e->data,
      R"({"amount":4000,"amount_captured":0,"amount_voided":900,"channel":"iso8583",)"
      R"("currency":"KPW","id":"pay_260001000041","iso8583":{"rrn":"260001000042",)"
      R"("terminal_id":"T0000003"},"object":"payment","partial":true,"status":"authorized"})");
  c.partial = false;
  EXPECT_EQ(json::parse(IsoEventJson(c, "260001000041", 4000)->data)["status"], "voided");
  c.kind = RequestKind::kRefund;
  e = IsoEventJson(c, "", 0);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "payment.refunded");
  EXPECT_EQ(e->data,
            R"({"amount":900,"channel":"iso8583","currency":"KPW","id":"re_260001000042",)"
            R"("iso8583":{"rrn":"260001000042","terminal_id":"T0000003"},"object":"refund",)"
            R"("payment_id":null,"status":"succeeded"})");
  // Kinds without an event.
  c.kind = RequestKind::kBalance;
  EXPECT_FALSE(IsoEventJson(c, "", 0));
  c.kind = RequestKind::kTombstone;
  EXPECT_FALSE(IsoEventJson(c, "", 0));
}

// End to end through RecordIsoChange on a real ledger: the original's
// request record found by orig_key (completion, reversal) and by the RRN
// index (refund), the events stored in the feed with the reference bytes.
TEST(IsoEventJson, RecordIsoChangeWritesTheReferenceBytes) {
  narae::testing::TempDir dir;
  ledger::Options o;
  o.path = dir.Sub("ledger");
  o.sync = false;
  auto l = ledger::Ledger::Open(o);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  ledger::Ledger& ledger = **l;
  BankCache bank;
  const std::string merchant = "SOCKS001";
  Terminal terminal;
  terminal.id = "T0000003";
  terminal.merchant_id = merchant;
  bank.Update(terminal);
  const std::string orig_rrn = "260001000041";
  RequestRecord rec;
  rec.kind = RequestKind::kHold;
  rec.amount_minor = 4000;
  rec.currency = 408;
  rec.rrn = orig_rrn;
  const std::string orig_suffix = "T0000003/orig";
  ASSERT_TRUE(ledger
                  .Execute([&](ledger::Txn& txn) {
                    txn.PutAux(std::string(kRequestRecordPrefix) + orig_suffix,
                               EncodeRequestRecord(rec));
                    txn.PutAux("au/r/" + orig_rrn, orig_suffix);
                  })
                  .ok());
  const std::string orig_key = std::string(kRequestRecordPrefix) + orig_suffix;
  const std::string nasty = "26\"\\\n\x01\xc3\xa9";
  std::vector<PaymentChange> changes;
  changes.push_back(Change(RequestKind::kHold, orig_rrn, "T0000003", 4000, 408));
  changes.push_back(Change(RequestKind::kCompletion, "260001000043", "T0000003", 3000, 408));
  changes.back().orig_key = orig_key;
  changes.push_back(Change(RequestKind::kReversal, "260001000044", "T0000003", 900, 408, true));
  changes.back().orig_key = orig_key;
  changes.push_back(Change(RequestKind::kRefund, nasty, "T0000003", 1000, 408));
  changes.back().rrn_ref = orig_rrn;
  changes.push_back(Change(RequestKind::kRefund, "260001000046", "T0000003", 10, 840));
  changes.back().rrn_ref = "999999999999";  // unknown: payment_id null
  // No event: hooked (the API writes its own), a balance inquiry, an
  // unknown terminal.
  changes.push_back(Change(RequestKind::kPurchase, "260001000047", "T0000003", 1, 408));
  changes.back().hooked = true;
  changes.push_back(Change(RequestKind::kBalance, "260001000048", "T0000003", 0, 408));
  changes.push_back(Change(RequestKind::kPurchase, "260001000049", "T9999999", 1, 408));
  for (const PaymentChange& c : changes) {
    ASSERT_TRUE(ledger.Execute([&](ledger::Txn& txn) { RecordIsoChange(txn, bank, c); }).ok());
  }
  std::vector<std::string> stored;
  ASSERT_TRUE(ledger
                  .ScanAux(std::string(kAuxEventPrefix),
                           [&](std::string_view key, std::string_view value) {
                             EXPECT_TRUE(key.starts_with("ap/e/" + merchant + "/")) << key;
                             stored.emplace_back(value);
                             return true;
                           })
                  .ok());
  const std::vector<std::pair<const PaymentChange*, std::string>> expect = {
      {&changes[0], ""},       {&changes[1], orig_rrn}, {&changes[2], orig_rrn},
      {&changes[3], orig_rrn}, {&changes[4], ""},
  };
  ASSERT_EQ(stored.size(), expect.size());
  for (size_t i = 0; i < expect.size(); ++i) {
    SCOPED_TRACE(i);
    const PaymentChange& c = *expect[i].first;
    auto want = Reference(c, expect[i].second, expect[i].second.empty() ? 0 : 4000);
    ASSERT_TRUE(want);
    std::optional<std::string_view> data = EventData(stored[i]);
    ASSERT_TRUE(data) << stored[i];
    EXPECT_EQ(*data, want->second.dump());
    json ev = json::parse(stored[i]);
    EXPECT_EQ(ev["type"], want->first);
    EXPECT_EQ(ev["data"], want->second);
  }
  json refund = json::parse(stored[3])["data"];
  EXPECT_EQ(refund["payment_id"], "pay_" + orig_rrn);
  EXPECT_EQ(refund["id"], "re_" + nasty);
  EXPECT_EQ(json::parse(stored[4])["data"]["payment_id"], nullptr);
  EXPECT_EQ(json::parse(stored[1])["data"]["amount"], 4000);
  EXPECT_EQ(json::parse(stored[1])["data"]["amount_captured"], 3000);
  ASSERT_TRUE(ledger.Close().ok());
}

}  // namespace
}  // namespace narae::switching
