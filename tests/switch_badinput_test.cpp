// Bad input (issue 7, docs/reliability.md): hostile or broken ISO 8583
// traffic against the real narae-switch on a demo bank. A table of cases,
// each sent on its own connection with the answer it must get (a response
// code, a closed connection, or silence) and, after each, a check through a
// read-only ledger instance that no money moved: the transfer count, the
// trial balance and (for cases that must write nothing) the journal head
// are unchanged. Then the connection-level abuse: slow-loris clients,
// thousands of idle connections, requests after shutdown began.
//
// HTTP rows (issue 5) go in a second table next to kIsoCases, sent by an
// HttpClient from tests/switch_harness.hpp, checked by the same
// LedgerSnapshot.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ledger/ledger.hpp"
#include "switch/authorizer.hpp"
#include "switch/bank.hpp"
#include "switch/server.hpp"
#include "tests/switch_harness.hpp"
#include "tests/test_util.hpp"

namespace narae::switching {
namespace {

using namespace harness;
using namespace std::chrono_literals;
// switch/bank.hpp has namesakes (the demo's records): these are the harness's.
using harness::DemoCard;
using harness::DemoSim;
using harness::DemoTerminal;
using Bytes = std::vector<uint8_t>;

// What the ledger looks like from outside: a read-only (secondary) instance.
struct LedgerSnapshot {
  uint64_t journal_sequence = 0;
  std::array<uint8_t, 32> journal_hash{};
  uint64_t transfers = 0;
  std::map<std::pair<uint32_t, std::string>, std::array<uint64_t, 4>> balances;
  bool operator==(const LedgerSnapshot&) const = default;
};

LedgerSnapshot Snapshot(ledger::Ledger& l) {
  NARAE_CHECK(l.CatchUp().ok());
  LedgerSnapshot s;
  Result<ledger::JournalEntry> head = l.JournalHead();
  NARAE_CHECK(head.ok());
  s.journal_sequence = head->sequence;
  s.journal_hash = head->hash;
  NARAE_CHECK(l.ScanTransfers(0, UINT64_MAX, [&](const ledger::Transfer&) {
                 ++s.transfers;
                 return true;
               }).ok());
  NARAE_CHECK(l.ScanAccounts([&](const ledger::Account& a) {
                 s.balances[{a.ledger, a.id.ToHex()}] = {a.debits_pending, a.debits_posted,
                                                         a.credits_pending, a.credits_posted};
                 return true;
               }).ok());
  return s;
}

// A raw body: MTI, the bitmap(s) for `fields`, then each field's bytes as
// given (length prefixes included by the caller).
Bytes RawBody(const std::string& mti, const std::vector<std::pair<int, std::string>>& fields) {
  std::array<uint64_t, 2> bitmap{};
  for (const auto& [f, v] : fields) bitmap[(f - 1) / 64] |= uint64_t{1} << (63 - (f - 1) % 64);
  if (bitmap[1] != 0) bitmap[0] |= uint64_t{1} << 63;
  Bytes b(mti.begin(), mti.end());
  for (int w = 0; w < (bitmap[1] != 0 ? 2 : 1); ++w) {
    for (int i = 7; i >= 0; --i) b.push_back(static_cast<uint8_t>(bitmap[w] >> (8 * i)));
  }
  for (const auto& [f, v] : fields) b.insert(b.end(), v.begin(), v.end());
  return b;
}
Bytes Framed(const Bytes& body) {
  Bytes f(body.size() + 2);
  f[0] = static_cast<uint8_t>(body.size() >> 8);
  f[1] = static_cast<uint8_t>(body.size());
  for (size_t i = 0; i < body.size(); ++i) f[i + 2] = body[i];
  return f;
}
Bytes Packed(const Message& m) { return Pack(m).value(); }

// Replaces the first occurrence of `from` in `body` by `to` (same length).
Bytes Patch(Bytes body, const std::string& from, const std::string& to) {
  NARAE_CHECK(from.size() == to.size());
  auto it = std::search(body.begin(), body.end(), from.begin(), from.end());
  NARAE_CHECK(it != body.end());
  std::copy(to.begin(), to.end(), it);
  return body;
}

// Where field `field`'s value starts in Pack(m) (after its length prefix).
size_t FieldOffset(const Message& m, int field) {
  Message prefix(m.mti());
  for (int f = m.NextField(1); f != 0 && f < field; f = m.NextField(f)) {
    prefix.Set(f, m.Get(f));
  }
  if (m.NextField(64) != 0) prefix.Set(65, "0");  // keep the secondary bitmap
  size_t offset = Pack(prefix).value().size();
  if (m.NextField(64) != 0) offset -= 1;
  const LengthFormat lf = Iso87Table()[static_cast<size_t>(field)].length_format;
  return offset + (lf == LengthFormat::kLlvar ? 2 : lf == LengthFormat::kLllvar ? 3 : 0);
}
// Pack(m) with field `field`'s value overwritten by `raw` (same length):
// lets a test put bytes on the wire that the codec would refuse to pack.
Bytes PatchField(const Message& m, int field, const std::string& raw) {
  NARAE_CHECK(m.Get(field).size() == raw.size());
  Bytes b = Packed(m);
  std::copy(raw.begin(), raw.end(), b.begin() + static_cast<std::ptrdiff_t>(FieldOffset(m, field)));
  return b;
}

// Expected outcome: a response code, or one of these.
const std::string kClosed = "closed";  // the server closes without answering
const std::string kSilent = "silent";  // no answer, the connection stays open

struct Env {
  Demo demo;
  DemoCard closed_card, frozen_card, blocked_card, lost_card, stolen_card;
  Message approved;  // an approved purchase (duplicates, refunds, completions)
  Message hold;      // an approved hold
  uint32_t stan = 1000;
  const DemoTerminal& T() const { return demo.Terminal("T0000003"); }      // no MAC
  const DemoTerminal& Mac() const { return demo.Terminal("T0000001"); }    // MAC
  const DemoTerminal& Other() const { return demo.Terminal("T0000004"); }  // another merchant
  const DemoCard& Kpw() const { return demo.Card(408); }
  const DemoCard& Usd() const { return demo.Card(840); }
  Message Buy(uint64_t amount = 1234, const DemoCard* card = nullptr) {
    return CardRequest("0200", T(), card ? *card : Kpw(), ++stan, amount);
  }
  Message With(Message m, int field, std::string_view value) {
    m.Set(field, value);
    return m;
  }
  Message Without(Message m, int field) {
    m.Clear(field);
    return m;
  }
};

struct Case {
  const char* name;
  std::function<Bytes(Env&)> frame;  // the bytes sent (framed)
  std::string expect;                // response code, kClosed or kSilent
  bool may_write_aux = false;        // a decline that records state (tries, tombstone)
};

Bytes F(const Message& m) { return PackFramed(m).value(); }

std::vector<Case> IsoCases() {
  std::vector<Case> c;
  auto add = [&](const char* name, std::function<Bytes(Env&)> f, std::string expect,
                 bool aux = false) {
    c.push_back({name, std::move(f), std::move(expect), aux});
  };
  // ---- Framing.
  add(
      "zero length header",
      [](Env&) {
        return Bytes{0, 0};
      },
      kClosed);
  add(
      "length 65535", [](Env&) { return Bytes{0xff, 0xff, '0', '2', '0', '0'}; }, kClosed);
  add(
      "length 8193 (over max_frame_bytes)",
      [](Env&) {
        return Bytes{0x20, 0x01, '0'};
      },
      kClosed);
  add(
      "length larger than the body, then EOF",
      [](Env& e) {
        Bytes f = F(e.Buy());
        f[1] = static_cast<uint8_t>(f[1] + 20);
        return f;
      },
      kClosed);
  add(
      "body of 3 bytes",
      [](Env&) {
        return Framed({'0', '2', '0'});
      },
      kClosed);
  add(
      "body of 11 bytes", [](Env&) { return Framed(Bytes(11, '0')); }, kClosed);
  add(
      "MTI only and a short bitmap",
      [](Env&) {
        return Framed({'0', '2', '0', '0', 0x30});
      },
      kClosed);
  add(
      "truncated: last 5 bytes cut",
      [](Env& e) {
        Bytes b = Packed(e.Buy());
        if (b.size() > 5) b.erase(b.end() - 5, b.end());
        return Framed(b);
      },
      "30");
  add(
      "trailing garbage byte",
      [](Env& e) {
        Bytes b = Packed(e.Buy());
        b.push_back('!');
        return Framed(b);
      },
      "30");
  add(
      "1000 trailing bytes",
      [](Env& e) {
        Bytes b = Packed(e.Buy());
        b.insert(b.end(), 1000, 'Z');
        return Framed(b);
      },
      "30");
  add(
      "all-zero body of 200 bytes", [](Env&) { return Framed(Bytes(200, 0)); }, kClosed);
  add(
      "random binary body",
      [](Env&) {
        Bytes b(300);
        for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 131 + 7);
        return Framed(b);
      },
      kClosed);
  add(
      "non-digit MTI",
      [](Env& e) {
        Bytes b = Packed(e.Buy());
        b[2] = 'A';
        return Framed(b);
      },
      kClosed);
  add(
      "MTI of a response (0210) is not answered",
      [](Env& e) {
        Message m = e.Buy();
        m.set_mti("0210");
        return F(m);
      },
      kSilent);
  add(
      "MTI 0300 unsupported",
      [](Env& e) {
        Message m = e.Buy();
        m.set_mti("0300");
        return F(m);
      },
      "12");
  add(
      "MTI 9200",
      [](Env& e) {
        Message m = e.Buy();
        m.set_mti("9200");
        return F(m);
      },
      "12");
  // ---- Bitmaps.
  add(
      "bitmap announces field 60 absent",
      [](Env& e) {
        Bytes b = Packed(e.Buy());
        b[4 + 7] |= 0x10;  // field 60
        return Framed(b);
      },
      "30");
  add(
      "bitmap announces field 64 absent at the end",
      [](Env& e) {
        Bytes b = Packed(e.Buy());
        b[4 + 7] |= 0x01;
        return Framed(b);
      },
      "30");
  add(
      "secondary bitmap flag without a secondary bitmap",
      [](Env& e) {
        Bytes b = Packed(e.Buy());
        b[4] |= 0x80;
        return Framed(b);
      },
      "30");
  add(
      "secondary bitmap all zero",
      [](Env& e) {
        Bytes b = Packed(e.Buy());
        b[4] |= 0x80;
        b.insert(b.begin() + 12, 8, 0);
        return Framed(b);
      },
      "30");
  add(
      "primary bitmap all ones",
      [](Env& e) {
        Bytes b = Packed(e.Buy());
        for (int i = 4; i < 12; ++i) b[static_cast<size_t>(i)] = 0xff;
        return Framed(b);
      },
      kClosed);
  // Decodes (a message may have no fields): answered 30 without a STAN.
  add(
      "bitmap with no fields", [](Env&) { return Framed(RawBody("0200", {})); }, "30");
  add(
      "field 1 bitmap with field 65 only",
      [](Env&) {
        return Framed(RawBody("0200", {{11, "000001"}, {65, "1"}}));
      },
      "30");
  // ---- Numeric fields with non-digits.
  add(
      "field 4 with a letter",
      [](Env& e) { return Framed(PatchField(e.Buy(1234), 4, "00000000123X")); }, "30");
  add(
      "field 4 negative", [](Env& e) { return Framed(PatchField(e.Buy(1234), 4, "-00000001234")); },
      "30");
  add(
      "field 4 with spaces",
      [](Env& e) { return Framed(PatchField(e.Buy(1234), 4, "      1234  ")); }, "30");
  add(
      "field 3 with letters", [](Env& e) { return Framed(PatchField(e.Buy(), 3, "0000AB")); },
      "30");
  add(
      "field 49 with a letter O", [](Env& e) { return Framed(PatchField(e.Buy(), 49, "4O8")); },
      "30");
  add(
      "field 7 with letters", [](Env& e) { return Framed(PatchField(e.Buy(), 7, "01011200AB")); },
      "30");
  add(
      "field 11 (STAN) with letters",
      [](Env& e) { return Framed(PatchField(e.Buy(), 11, "00AB01")); }, kClosed);
  add(
      "field 14 with letters", [](Env& e) { return Framed(PatchField(e.Buy(), 14, "2A1B")); },
      "30");
  add(
      "field 2 PAN with a letter",
      [](Env& e) {
        std::string bad = e.Kpw().pan;
        bad[5] = 'X';
        return Framed(PatchField(e.Buy(), 2, bad));
      },
      "30");
  add(
      "field 42 with a 0xFF byte",
      [](Env& e) {
        Message m = e.Buy();
        std::string bad(m.Get(42));
        bad[14] = '\xff';
        return Framed(PatchField(m, 42, bad));
      },
      "30");
  add(
      "field 41 with a control byte",
      [](Env& e) {
        return Framed(PatchField(e.Buy(), 41,
                                 std::string("T00\x01"
                                             "0003")));
      },
      "30");
  // ---- LL / LLL lengths.
  // A length error before field 11: no STAN to answer with, closed.
  add(
      "field 2 LL 20 (max 19)",
      [](Env&) {
        return Framed(RawBody("0200", {{2, "20" + std::string(20, '4')},
                                       {3, "000000"},
                                       {4, "000000001000"},
                                       {7, "0101120000"},
                                       {11, "000777"}}));
      },
      kClosed);
  add(
      "field 2 LL 99",
      [](Env&) {
        return Framed(RawBody("0200", {{2, "99" + std::string(99, '4')}, {11, "000777"}}));
      },
      kClosed);
  add(
      "field 2 LL with letters",
      [](Env&) {
        return Framed(RawBody("0200", {{2, "1A" + std::string(16, '4')}, {11, "000777"}}));
      },
      kClosed);
  add(
      "field 2 LL 00 (empty PAN: fails Luhn)",
      [](Env& e) {
        Message m = e.Buy();
        m.Set(2, "");
        return F(m);
      },
      "14");
  add(
      "field 48 LLL 999 announced, 10 sent",
      [](Env& e) {
        Message m = e.Buy();
        return Framed(Patch(Packed(m), "009CVV203", "999CVV203"));
      },
      "30");
  add(
      "field 55 LLL beyond 999",
      [](Env&) {
        return Framed(RawBody("0200", {{11, "000778"}, {55, "A00" + std::string(10, 'x')}}));
      },
      "30");
  add(
      "field 62 LLL 000",
      [](Env& e) {
        Message m = e.Buy();
        m.Set(62, "");
        return F(m);
      },
      "30");
  add(
      "field 35 LL 38 (max 37)",
      [](Env&) {
        return Framed(RawBody("0200", {{11, "000779"}, {35, "38" + std::string(38, '4')}}));
      },
      "30");
  // ---- Missing mandatory fields.
  add(
      "no field 7", [](Env& e) { return F(e.Without(e.Buy(), 7)); }, "30");
  add(
      "no field 11", [](Env& e) { return F(e.Without(e.Buy(), 11)); }, "30");
  add(
      "no field 41", [](Env& e) { return F(e.Without(e.Buy(), 41)); }, "30");
  add(
      "no field 42", [](Env& e) { return F(e.Without(e.Buy(), 42)); }, "30");
  add(
      "no field 3", [](Env& e) { return F(e.Without(e.Buy(), 3)); }, "30");
  add(
      "no field 4", [](Env& e) { return F(e.Without(e.Buy(), 4)); }, "30");
  add(
      "no field 49", [](Env& e) { return F(e.Without(e.Buy(), 49)); }, "30");
  add(
      "no field 2 (card)", [](Env& e) { return F(e.Without(e.Buy(), 2)); }, "30");
  add(
      "0800 without field 70",
      [](Env&) {
        Message m = Echo(1);
        m.Clear(70);
        return F(m);
      },
      "30");
  add(
      "0800 with code 999",
      [](Env&) {
        Message m = Echo(2);
        m.Set(70, "999");
        return F(m);
      },
      "12");
  // ---- Amounts.
  add(
      "amount zero", [](Env& e) { return F(e.Buy(0)); }, "13");
  add(
      "amount 999999999999 (12 nines)", [](Env& e) { return F(e.Buy(999999999999ull)); }, "61");
  add(
      "amount one above the single limit", [](Env& e) { return F(e.Buy(50000001)); }, "61");
  add(
      "USD amount above the single limit", [](Env& e) { return F(e.Buy(500001, &e.Usd())); }, "61");
  add(
      "hold of zero", [](Env& e) { return F(CardRequest("0100", e.T(), e.Kpw(), ++e.stan, 0)); },
      "13");
  add(
      "completion above the hold",
      [](Env& e) { return F(FollowUp("0220", e.hold, ++e.stan, 1000000, e.T())); }, "13");
  add(
      "completion in another currency",
      [](Env& e) {
        Message m = FollowUp("0220", e.hold, ++e.stan, 100, e.T());
        m.Set(49, "840");
        return F(m);
      },
      "12");
  add(
      "refund above the captured amount",
      [](Env& e) {
        Message m = FollowUp("0200", e.approved, ++e.stan, 1000000, e.T());
        m.Set(3, "200000");
        return F(m);
      },
      "13");
  add(
      "partial reversal keeping more than the original",
      [](Env& e) {
        Message m = FollowUp("0400", e.approved, ++e.stan, 1234, e.T());
        m.Set(95, FormatDigits(999999999999ull, 12).value() + std::string(30, '0'));
        return F(m);
      },
      "13");
  // ---- Currencies.
  add(
      "unknown currency 999", [](Env& e) { return F(e.With(e.Buy(), 49, "999")); }, "58");
  add(
      "currency 000", [](Env& e) { return F(e.With(e.Buy(), 49, "000")); }, "58");
  add(
      "KPW card in USD", [](Env& e) { return F(e.With(e.Buy(), 49, "840")); }, "57");
  add(
      "USD card in KPW", [](Env& e) { return F(e.With(e.Buy(100, &e.Usd()), 49, "408")); }, "57");
  // ---- Expiry, PAN, credentials.
  add(
      "expiry in the past (2001)", [](Env& e) { return F(e.With(e.Buy(), 14, "2001")); }, "54");
  add(
      "expiry in the future but not the card's",
      [](Env& e) { return F(e.With(e.Buy(), 14, "4912")); }, "54");
  add(
      "expiry month 13", [](Env& e) { return F(e.With(e.Buy(), 14, "3013")); }, "54");
  add(
      "wrong Luhn digit",
      [](Env& e) {
        std::string pan = e.Kpw().pan;
        pan.back() = pan.back() == '9' ? '0' : static_cast<char>(pan.back() + 1);
        return F(e.With(e.Buy(), 2, pan));
      },
      "14");
  add(
      "unknown PAN with a valid Luhn digit",
      [](Env& e) { return F(e.With(e.Buy(), 2, "4111111111111111")); }, "14");
  add(
      "PAN of 12 digits", [](Env& e) { return F(e.With(e.Buy(), 2, "940801000000")); }, "14");
  add(
      "wrong CVV2",
      [](Env& e) {
        std::string cvv = e.Kpw().cvv2;
        cvv[0] = cvv[0] == '9' ? '0' : static_cast<char>(cvv[0] + 1);
        return F(e.With(e.Buy(), 48, "CVV203" + cvv));
      },
      "05");
  add(
      "no CVV2, no PIN, no chip", [](Env& e) { return F(e.Without(e.Buy(), 48)); }, "05");
  add(
      "CVV2 element with a bad length",
      [](Env& e) { return F(e.With(e.Buy(), 48, "CVV299" + e.Kpw().cvv2)); }, "05");
  add(
      "CVV2 with letters", [](Env& e) { return F(e.With(e.Buy(), 48, "CVV203ABC")); }, "05");
  add(
      "field 48 of 999 junk bytes",
      [](Env& e) { return F(e.With(e.Buy(), 48, std::string(999, '#'))); }, "05");
  add(
      "PIN block of another terminal's key",
      [](Env& e) {
        Message m = PinPurchase(e.Other(), e.Kpw(), ++e.stan, 1234, e.Kpw().pin);
        m.Set(41, e.T().id);
        m.Set(42, e.T().field42);
        return F(m);
      },
      "55", true);
  add(
      "PIN block of 8 zero bytes",
      [](Env& e) {
        Message m = PinPurchase(e.T(), e.Usd(), ++e.stan, 1234, e.Usd().pin);
        const uint8_t zeros[8] = {};
        m.SetBytes(52, zeros);
        return F(m);
      },
      "55", true);
  add(
      "unknown terminal", [](Env& e) { return F(e.With(e.Buy(), 41, "TXXXXXXX")); }, "58");
  add(
      "terminal id of spaces", [](Env& e) { return F(e.With(e.Buy(), 41, "        ")); }, "58");
  add(
      "unknown merchant", [](Env& e) { return F(e.With(e.Buy(), 42, "NOBODY         ")); }, "58");
  add(
      "terminal of another merchant",
      [](Env& e) { return F(e.With(e.Buy(), 42, e.Other().field42)); }, "58");
  add(
      "card on a closed account", [](Env& e) { return F(e.Buy(1234, &e.closed_card)); }, "05");
  add(
      "card on a frozen account", [](Env& e) { return F(e.Buy(1234, &e.frozen_card)); }, "05");
  add(
      "blocked card", [](Env& e) { return F(e.Buy(1234, &e.blocked_card)); }, "62");
  add(
      "lost card", [](Env& e) { return F(e.Buy(1234, &e.lost_card)); }, "41");
  add(
      "stolen card", [](Env& e) { return F(e.Buy(1234, &e.stolen_card)); }, "43");
  add(
      "cash withdrawal processing code", [](Env& e) { return F(e.With(e.Buy(), 3, "010000")); },
      "57");
  add(
      "unknown processing code 990000", [](Env& e) { return F(e.With(e.Buy(), 3, "990000")); },
      "12");
  // ---- MAC.
  add(
      "MAC terminal without a MAC",
      [](Env& e) { return F(CardRequest("0200", e.Mac(), e.Kpw(), ++e.stan, 1234)); }, "30");
  add(
      "MAC terminal, MAC of zeros",
      [](Env& e) {
        Message m = CardRequest("0200", e.Mac(), e.Kpw(), ++e.stan, 1234);
        const uint8_t zeros[8] = {};
        m.SetBytes(64, zeros);
        return F(m);
      },
      "05");
  add(
      "MAC terminal, MAC made with another terminal's key",
      [](Env& e) {
        Message m = CardRequest("0200", e.Mac(), e.Kpw(), ++e.stan, 1234);
        return SignFrame(m, e.demo.Terminal("T0000006").mac_key);
      },
      "05");
  add(
      "MAC terminal, message changed after signing",
      [](Env& e) {
        Message m = CardRequest("0200", e.Mac(), e.Kpw(), ++e.stan, 1234);
        Bytes f = SignFrame(m, e.Mac());
        const size_t at = FieldOffset(m, 4) + 2;  // in the frame
        f[at + 8] = '9';
        return f;
      },
      "05");
  // ---- SIM tokens.
  add(
      "SIM: unknown token",
      [](Env& e) {
        DemoSim s{"9410999999999999", SecretHex(std::string(64, '1')), 408};
        return F(SimPurchase(e.T(), s, 1, ++e.stan, 100));
      },
      "14");
  add(
      "SIM: wrong key",
      [](Env& e) {
        DemoSim s{e.demo.sims[0].token_id, SecretHex(std::string(64, '2')), 408};
        return F(SimPurchase(e.T(), s, 5, ++e.stan, 100));
      },
      "05");
  add(
      "SIM: counter 0 (replay)",
      [](Env& e) { return F(SimPurchase(e.T(), e.demo.sims[0], 0, ++e.stan, 100)); }, "62");
  add(
      "SIM: counter beyond the window",
      [](Env& e) { return F(SimPurchase(e.T(), e.demo.sims[0], 1000000, ++e.stan, 100)); }, "05");
  add(
      "SIM: field 62 of garbage",
      [](Env& e) {
        Message m = SimPurchase(e.T(), e.demo.sims[0], 3, ++e.stan, 100);
        m.Set(62, std::string(54, 'Z'));
        return F(m);
      },
      "30");
  add(
      "SIM: field 62 one byte short",
      [](Env& e) {
        Message m = SimPurchase(e.T(), e.demo.sims[0], 3, ++e.stan, 100);
        m.Set(62, std::string(m.Get(62)).substr(1));
        return F(m);
      },
      "30");
  add(
      "SIM: field 2 differs from the token",
      [](Env& e) {
        Message m = SimPurchase(e.T(), e.demo.sims[0], 3, ++e.stan, 100);
        m.Set(2, e.Kpw().pan);
        return F(m);
      },
      "30");
  add(
      "SIM: amount changed after the cryptogram",
      [](Env& e) {
        Message m = SimPurchase(e.T(), e.demo.sims[0], 3, ++e.stan, 100);
        m.Set(4, FormatAmount(99999).value());
        return F(m);
      },
      "05");
  // ---- Chip data.
  add(
      "chip: field 55 garbage",
      [](Env& e) {
        Message m = e.Without(e.Buy(), 48);
        const uint8_t junk[5] = {0x9f, 0x26, 0xff, 0x01, 0x02};
        m.SetBytes(55, junk);
        return F(m);
      },
      "30");
  add(
      "chip: amount in 9F02 differs from field 4",
      [](Env& e) {
        Message m = e.Without(e.Buy(1234), 48);
        const uint8_t arqc[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        m.Set(55, BuildChipData(9999, 408, 5, 1, arqc));
        return F(m);
      },
      "30");
  add(
      "chip: wrong ARQC",
      [](Env& e) {
        Message m = e.Without(e.Buy(1234), 48);
        const uint8_t arqc[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        m.Set(55, BuildChipData(1234, 408, 5, 1, arqc));
        return F(m);
      },
      "05");
  // ---- References to other requests.
  add(
      "duplicate key, other amount",
      [](Env& e) { return F(e.With(e.approved, 4, FormatAmount(4321).value())); }, "94");
  add(
      "duplicate key, other PAN",
      [](Env& e) { return F(e.With(e.approved, 2, e.demo.Card(408, 1).pan)); }, "94");
  add(
      "duplicate key, other MTI",
      [](Env& e) {
        Message m = e.approved;
        m.set_mti("0100");
        return F(m);
      },
      "94");
  add(
      "completion of an unknown hold",
      [](Env& e) {
        Message orig = e.Buy();
        orig.set_mti("0100");
        return F(FollowUp("0220", orig, ++e.stan, 100, e.T()));
      },
      "25");
  add(
      "completion of a purchase",
      [](Env& e) { return F(FollowUp("0220", e.approved, ++e.stan, 100, e.T())); }, "12");
  add(
      "reversal of an unknown original (tombstone)",
      [](Env& e) {
        Message orig = e.Buy();
        return F(FollowUp("0400", orig, ++e.stan, 1234, e.T()));
      },
      "25", true);
  add(
      "refund without field 90 or 37", [](Env& e) { return F(e.With(e.Buy(100), 3, "200000")); },
      "12");
  add(
      "refund of an unknown RRN",
      [](Env& e) {
        Message m = e.With(e.Buy(100), 3, "200000");
        m.Set(37, "999999999999");
        return F(m);
      },
      "25");
  add(
      "field 90 with letters",
      [](Env& e) {
        Message m = FollowUp("0400", e.approved, ++e.stan, 1234, e.T());
        std::string f90(m.Get(90));
        f90[0] = 'X';
        return Framed(PatchField(m, 90, f90));
      },
      "30");
  add(
      "field 90 naming an original in the future",
      [](Env& e) {
        Message orig = e.Buy();
        orig.set_mti("0100");
        orig.Set(7, "1231235959");
        return F(FollowUp("0220", orig, ++e.stan, 100, e.T()));
      },
      "25");
  add(
      "refund of another card's purchase",
      [](Env& e) {
        Message m = FollowUp("0200", e.approved, ++e.stan, 100, e.T());
        m.Set(3, "200000");
        m.Set(2, e.demo.Card(408, 1).pan);
        return F(m);
      },
      "12");
  return c;
}

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveBinaries()) GTEST_SKIP() << "narae-switch or narae not built";
#if defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "not under ThreadSanitizer (uninstrumented RocksDB in the child)";
#endif
    data_ = dir_.Sub("data");
    ASSERT_TRUE(SeedDemo(data_, dir_.Sub("demo.json"), 2));
    env_.demo = LoadDemo(dir_.Sub("demo.json"));
    std::ofstream(dir_.Sub("config.json"))
        << R"({"server": {"read_timeout_ms": 300, "idle_timeout_ms": 1500,
                          "max_connections": 4096, "shutdown_grace_ms": 2000}})";
  }

  // Issues the cards the table needs on new accounts, in process (one
  // ledger open instead of a `narae` command each): a card on a closed
  // account, on a frozen one, and blocked, lost and stolen cards.
  void IssueCards() {
    ledger::Options lo;
    lo.path = data_ + "/ledger";
    Result<std::unique_ptr<ledger::Ledger>> l = ledger::Ledger::Open(lo);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    Result<crypto::SecretBytes> mk = crypto::LoadMasterKeyFile(data_ + "/master.key");
    ASSERT_TRUE(mk.ok());
    Result<std::unique_ptr<crypto::KeyStore>> keys =
        crypto::KeyStore::Open(data_ + "/keys", std::move(mk).value());
    ASSERT_TRUE(keys.ok());
    auto issue = [&](const ledger::AccountId& account, DemoCard* out) {
      IssueCardRequest r;
      r.account_id = account;
      Result<IssuedCard> c = IssueCard(**l, **keys, r);
      ASSERT_TRUE(c.ok()) << c.status().ToString();
      *out = DemoCard{c->pan, c->card.expiry, c->cvv2, c->pin, 408, account.ToHex()};
    };
    auto open = [&](uint64_t deposit_minor) {
      Result<ledger::AccountId> a = OpenCustomerAccount(**l, {408, 0, deposit_minor, "test"});
      NARAE_CHECK(a.ok());
      return *a;
    };
    auto change = [&](const ledger::AccountId& id, ledger::AccountAction action) {
      ledger::AccountChange ch;
      ch.id = id;
      ch.action = action;
      Result<std::vector<ledger::ChangeOutcome>> r = (*l)->ChangeAccounts({&ch, 1});
      ASSERT_TRUE(r.ok() && r->at(0).result == ledger::ChangeAccountResult::kOk);
    };
    const ledger::AccountId closed = open(0);
    issue(closed, &env_.closed_card);
    change(closed, ledger::AccountAction::kClose);
    const ledger::AccountId frozen = open(100000);
    issue(frozen, &env_.frozen_card);
    change(frozen, ledger::AccountAction::kFreeze);
    const ledger::AccountId funded = open(100000);
    const std::pair<DemoCard*, RecordStatus> statuses[] = {
        {&env_.blocked_card, RecordStatus::kBlocked},
        {&env_.lost_card, RecordStatus::kLost},
        {&env_.stolen_card, RecordStatus::kStolen}};
    for (const auto& [card, status] : statuses) {
      issue(funded, card);
      ASSERT_TRUE(SetCardStatus(**l, CardIdFromPan(card->pan), status).ok());
    }
    ASSERT_OK((*l)->Close());
  }

  bool Start() {
    return sw_.Start(data_, {"--config", dir_.Sub("config.json"), "--log-file",
                             dir_.Sub("switch.log"), "--log-level", "debug"});
  }
  std::unique_ptr<ledger::Ledger> OpenReadOnly() {
    ledger::Options lo;
    lo.path = data_ + "/ledger";
    lo.read_only = true;
    Result<std::unique_ptr<ledger::Ledger>> l = ledger::Ledger::Open(lo);
    NARAE_CHECK(l.ok());
    return std::move(l).value();
  }

  testing::TempDir dir_;
  std::string data_;
  Env env_;
  SwitchProcess sw_;
};

TEST_F(BadInput, HostileIsoMessagesGetTheirAnswerAndMoveNoMoney) {
  IssueCards();
  ASSERT_TRUE(Start());
  {  // The references: an approved purchase and an approved hold.
    IsoClient c(sw_.port());
    env_.approved = env_.Buy(1234);
    std::optional<Message> r = c.Call(F(env_.approved));
    ASSERT_TRUE(r && r->Get(39) == "00");
    env_.hold = CardRequest("0100", env_.T(), env_.Kpw(), ++env_.stan, 5000);
    r = c.Call(F(env_.hold));
    ASSERT_TRUE(r && r->Get(39) == "00");
  }
  std::unique_ptr<ledger::Ledger> ro = OpenReadOnly();
  const std::vector<Case> cases = IsoCases();
  ASSERT_GE(cases.size(), 100u);
  int failures = 0;
  LedgerSnapshot before = Snapshot(*ro);
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    IsoClient c(sw_.port());
    ASSERT_TRUE(c.connected());
    const Bytes frame = k.frame(env_);
    ASSERT_TRUE(c.SendRaw(frame));
    std::string got;
    if (k.expect == kClosed) {
      // Nothing but a close (a response would be a protocol answer).
      std::optional<Message> r = c.Recv(3000);
      got = r ? "answered " + std::string(r->Get(39)) : kClosed;
      if (got == kClosed && !c.WaitClosed(3000)) got = "open";
    } else if (k.expect == kSilent) {
      std::optional<Message> r = c.Recv(300);
      got = r ? "answered " + std::string(r->Get(39)) : kSilent;
      // Still serving: an echo on the same connection is answered.
      std::optional<Message> e = c.Call(F(Echo(++env_.stan)));
      if (!e) got = "closed";
    } else {
      std::optional<Message> r = c.Recv(5000);
      if (!r) {
        got = kClosed;
      } else {
        got = std::string(r->Get(39));
        Result<Message> req = Unpack(Bytes(frame.begin() + 2, frame.end()));
        if (req.ok()) {
          EXPECT_EQ(r->mti(), AnswerMti(req->mti()).value_or("?"));
        }
        EXPECT_FALSE(r->Has(38) && got != "00") << "approval code on a decline";
      }
    }
    if (got != k.expect) ++failures;
    EXPECT_EQ(got, k.expect);
    // The switch answers the request before this check: the ledger is read
    // after the answer, so a write would be visible.
    const LedgerSnapshot after = Snapshot(*ro);
    EXPECT_EQ(after.transfers, before.transfers);
    EXPECT_TRUE(after.balances == before.balances) << "balances changed";
    if (!k.may_write_aux) {
      EXPECT_EQ(after.journal_sequence, before.journal_sequence);
    }
    before = after;
  }
  // Still serving after all of it.
  IsoClient c(sw_.port());
  std::optional<Message> r = c.Call(F(env_.Buy(777)));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Get(39), "00");
  std::printf("[ bad input ] %zu ISO 8583 cases, %d with another answer than expected\n",
              cases.size(), failures);
  ASSERT_EQ(sw_.Stop(), 0);
  ro.reset();
  EXPECT_EQ(RunCommand(NaraeBin() + " verify --data " + data_ + "/ledger >/dev/null"), 0);
}

TEST_F(BadInput, SlowLorisAndThousandsOfIdleConnectionsDoNotStopService) {
  struct rlimit rl {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  const uint32_t idle_target = Sanitized() ? 1000 : 2000;
  if (rl.rlim_cur < idle_target + 200) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, idle_target + 500);
    ::setrlimit(RLIMIT_NOFILE, &rl);  // inherited by the switch
  }
  if (rl.rlim_cur < idle_target + 200) GTEST_SKIP() << "RLIMIT_NOFILE too low";
  ASSERT_TRUE(Start());
  // Slow loris: 50 clients each trickling a frame one byte at a time.
  std::vector<std::unique_ptr<IsoClient>> loris;
  const Bytes frame = F(env_.Buy());
  for (int i = 0; i < 50; ++i) loris.push_back(std::make_unique<IsoClient>(sw_.port()));
  // Thousands of idle connections.
  std::vector<std::unique_ptr<IsoClient>> idle;
  for (uint32_t i = 0; i < idle_target; ++i) {
    idle.push_back(std::make_unique<IsoClient>(sw_.port()));
    ASSERT_TRUE(idle.back()->connected()) << i;
  }
  // While all of that is open, a real client is served quickly.
  const auto t0 = Clock::now();
  for (int step = 0; step < 5; ++step) {
    for (auto& l : loris) l->SendRaw({frame[static_cast<size_t>(step)]});
    IsoClient c(sw_.port());
    std::optional<Message> r = c.Call(F(env_.Buy(100 + static_cast<uint64_t>(step))));
    ASSERT_TRUE(r.has_value()) << "step " << step;
    EXPECT_EQ(r->Get(39), "00");
    std::this_thread::sleep_for(100ms);
  }
  const double served_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  // The trickling frames exceed read_timeout_ms (300 ms): closed.
  int loris_closed = 0;
  for (auto& l : loris) loris_closed += l->WaitClosed(3000) ? 1 : 0;
  EXPECT_EQ(loris_closed, 50);
  // Idle connections are closed after idle_timeout_ms (1.5 s).
  int idle_closed = 0;
  for (auto& i : idle) idle_closed += i->WaitClosed(5000) ? 1 : 0;
  EXPECT_EQ(idle_closed, static_cast<int>(idle_target));
  std::printf(
      "[ abuse ] %u idle + 50 slow-loris connections: 5 payments served in %.0f ms; %d/50 "
      "slow-loris and %d/%u idle connections cut by the server\n",
      idle_target, served_ms, loris_closed, idle_closed, idle_target);
  ASSERT_EQ(sw_.Stop(), 0);
}

TEST_F(BadInput, RequestsAfterShutdownBeganAreRefusedNotApproved) {
  ASSERT_TRUE(Start());
  IsoClient c(sw_.port());
  // 300 pipelined purchases, SIGTERM, 300 more on the same connection: those
  // read after shutdown began are answered 91; the ones in flight are
  // answered (00) before the connection closes.
  constexpr int kBatch = 300;
  std::vector<Message> sent;
  auto batch = [&] {
    Bytes all;
    for (int i = 0; i < kBatch; ++i) {
      sent.push_back(env_.Buy(100 + static_cast<uint64_t>(i)));
      const Bytes f = F(sent.back());
      all.insert(all.end(), f.begin(), f.end());
    }
    return all;
  };
  ASSERT_TRUE(c.SendRaw(batch()));
  std::map<std::string, std::string> answer_by_stan;
  std::optional<Message> first = c.Recv(10000);  // the server is working on the batch
  ASSERT_TRUE(first.has_value());
  answer_by_stan[std::string(first->Get(11))] = std::string(first->Get(39));
  sw_.SendSignal(SIGTERM);
  (void)c.SendRaw(batch());               // may fail once the server closed
  for (int i = 1; i < 2 * kBatch; ++i) {  // bounded
    std::optional<Message> r = c.Recv(5000);
    if (!r) break;
    answer_by_stan[std::string(r->Get(11))] = std::string(r->Get(39));
  }
  // A new connection is not served.
  IsoClient late(sw_.port());
  if (late.connected() && late.SendRaw(F(env_.Buy()))) {
    std::optional<Message> a = late.Recv(2000);
    EXPECT_TRUE(!a || a->Get(39) == "91");
  }
  EXPECT_EQ(sw_.WaitExit(15000), 0);

  ledger::Options lo;
  lo.path = data_ + "/ledger";
  Result<std::unique_ptr<ledger::Ledger>> l = ledger::Ledger::Open(lo);
  ASSERT_TRUE(l.ok());
  std::map<std::string, int> codes;
  int unanswered = 0;
  for (const Message& m : sent) {
    const std::string key = RequestKey(m.Get(41), m.Get(7), m.Get(11), NowMs());
    const bool in_ledger = (*l)->LookupTransfer(RequestTransferId(key, 1)).has_value();
    auto it = answer_by_stan.find(std::string(m.Get(11)));
    if (it == answer_by_stan.end()) {
      ++unanswered;
      EXPECT_FALSE(in_ledger) << "applied but never answered: " << key;
      continue;
    }
    ++codes[it->second];
    EXPECT_TRUE(it->second == "00" || it->second == "91") << it->second;
    EXPECT_EQ(in_ledger, it->second == "00") << key << " answered " << it->second;
  }
  ASSERT_OK((*l)->Close());
  EXPECT_GT(codes["00"], 0);
  std::printf(
      "[ shutdown ] %d requests around SIGTERM: %d approved (in the ledger), %d refused 91 "
      "(not in it), %d unanswered (not in it)\n",
      2 * kBatch, codes["00"], codes["91"], unanswered);
}

TEST_F(BadInput, ApprovalsReachASlowReaderAcrossShutdown) {
  ASSERT_TRUE(Start());
  // A client with a 4 KiB receive buffer sends 300 purchases and reads
  // nothing until shutdown began and it sent 20 more: most approvals still
  // wait in the server's socket when the server is done with the connection.
  // Were it closed then, the late requests would reset it and the kernel
  // would throw those approvals away; the lingering close delivers them.
  IsoClient c(sw_.port(), 4096);
  ASSERT_TRUE(c.connected());
  constexpr int kBatch = 300;
  constexpr int kLate = 20;
  std::vector<Message> sent;
  auto batch = [&](int n) {
    Bytes all;
    for (int i = 0; i < n; ++i) {
      sent.push_back(env_.Buy(100 + static_cast<uint64_t>(i)));
      const Bytes f = F(sent.back());
      all.insert(all.end(), f.begin(), f.end());
    }
    return all;
  };
  const auto id_of = [](const Message& m) {
    return RequestTransferId(RequestKey(m.Get(41), m.Get(7), m.Get(11), NowMs()), 1);
  };
  ASSERT_TRUE(c.SendRaw(batch(kBatch)));
  // Every purchase of the batch is in the ledger (read beside the switch)
  // before the signal: the server has nothing in flight, only unread replies.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int present = 0; present < kBatch;) {  // bounded by the deadline
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << present << " applied";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::unique_ptr<ledger::Ledger> ro = OpenReadOnly();
    present = 0;
    for (int i = 0; i < kBatch; ++i) present += ro->LookupTransfer(id_of(sent[i])).has_value();
  }
  sw_.SendSignal(SIGTERM);
  for (;;) {  // until the switch logged that shutdown began (bounded)
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no shutdown_begin";
    std::ifstream log(dir_.Sub("switch.log"));
    const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    if (text.find("shutdown_begin") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the server is done with `c`
  (void)c.SendRaw(batch(kLate));                                // may fail once the server closed
  std::map<std::string, std::string> answer_by_stan;
  for (int i = 0; i < kBatch + kLate; ++i) {  // bounded
    std::optional<Message> r = c.Recv(5000);
    if (!r) break;
    answer_by_stan[std::string(r->Get(11))] = std::string(r->Get(39));
  }
  EXPECT_EQ(sw_.WaitExit(15000), 0);

  ledger::Options lo;
  lo.path = data_ + "/ledger";
  Result<std::unique_ptr<ledger::Ledger>> l = ledger::Ledger::Open(lo);
  ASSERT_TRUE(l.ok());
  int approved = 0;
  for (size_t i = 0; i < sent.size(); ++i) {
    const bool in_ledger = (*l)->LookupTransfer(id_of(sent[i])).has_value();
    auto it = answer_by_stan.find(std::string(sent[i].Get(11)));
    if (i < kBatch) {  // applied before the signal: each one's approval arrives
      EXPECT_TRUE(in_ledger);
      ASSERT_NE(it, answer_by_stan.end()) << "approval lost: " << i;
      EXPECT_EQ(it->second, "00");
      ++approved;
    } else {  // too late: refused 91 or dropped, and not applied
      EXPECT_FALSE(in_ledger) << i;
      if (it != answer_by_stan.end()) {
        EXPECT_EQ(it->second, "91") << i;
      }
    }
  }
  ASSERT_OK((*l)->Close());
  EXPECT_EQ(approved, kBatch);
}

}  // namespace
}  // namespace narae::switching
