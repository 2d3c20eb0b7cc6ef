// The payment event feed (see api_events.hpp and docs/api.md, "Events").
//
// Cost sketch: an event is one aux put in the transaction of its change
// (about 300 bytes); a hold adds one aux put (its expiry index row). The
// expiry scan is a bounded prefix scan of ap/h/ behind its cursor and one
// hold lookup per due row, once a second, off the sequencer thread; its
// transaction re-checks every hold and the cursor, so a row is turned into
// an event at most once even if two scans race.
#include "switch/api_events.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "switch/api.hpp"
#include "switch/authorizer.hpp"
#include "switch/bank.hpp"
#include "switch/settlement.hpp"

namespace narae::switching {
namespace {

using json = nlohmann::json;

constexpr std::string_view kAuxRrnIndexPrefix = "au/r/";
constexpr size_t kExpirySuffixBytes = 16 + kRrnBytes;
// PutEvent's buffer is kept up to this size (a payment's event is ~700 B).
constexpr size_t kEventScratchBytesMax = 16 * 1024;

// The last event id handed out in this process (sequencer threads only;
// atomic because several ledgers may live in one process, e.g. tests).
std::atomic<uint64_t> g_event_id_last{0};

uint64_t NextEventId(uint64_t group_ns) {
  uint64_t last = g_event_id_last.load(std::memory_order_relaxed);
  uint64_t next = 0;
  do {
    next = std::max(last + 1, group_ns);
  } while (!g_event_id_last.compare_exchange_weak(last, next, std::memory_order_relaxed));
  return next;
}

struct DueHold {
  std::string suffix;  // ap/h/ suffix: expires_at hex + RRN
  std::string merchant;
  ledger::TransferId hold;
};

// An expired hold's stand-in exposure (authorizer.hpp), in the transaction
// that writes its payment.expired event and moves the cursor past it: once.
void ReleaseExpiredStandIn(ledger::Txn& txn, const std::vector<OtherBank>& banks, const DueHold& d,
                           uint64_t amount_minor) {
  const std::string rrn = d.suffix.substr(16);
  std::optional<std::string> key = txn.GetAux(std::string(kAuxRrnIndexPrefix) + rrn);
  if (!key) return;
  std::optional<std::string> v = txn.GetAux(std::string(kRequestRecordPrefix) + *key);
  std::optional<RequestRecord> r = v ? ParseRequestRecord(*v) : std::nullopt;
  if (!r || r->transfer != d.hold) return;  // not this hold (replaced)
  (void)ReleaseStandInOnExpiry(txn, banks, *r, amount_minor);
}

}  // namespace

std::string Hex16(uint64_t v) {
  std::string s;
  AppendHex16(&s, v);
  return s;
}

void AppendHex16(std::string* out, uint64_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  char s[16];
  for (size_t i = 16; i-- > 0; v >>= 4) s[i] = kHex[v & 0xf];
  out->append(s, sizeof s);
}

// Looked at eight bytes at a time: a byte below n (n <= 128) or equal to 0
// sets its top bit in (x - n * kOnes) & ~x, and none other does in a word
// without one (Bit Twiddling Hacks, "hasless", "haszero"). The last bytes
// are one more word, overlapping the one before (or, for a string shorter
// than a word, padded with spaces): no loop a byte at a time.
bool JsonNeedsEscape(std::string_view s) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  auto hit = [](uint64_t x) {
    const uint64_t quote = x ^ (kOnes * '"');
    const uint64_t backslash = x ^ (kOnes * '\\');
    return (((x - kOnes * 0x20) & ~x) | ((quote - kOnes) & ~quote) |
            ((backslash - kOnes) & ~backslash)) &
           kHigh;
  };
  uint64_t x = kOnes * ' ';
  if (s.size() < sizeof x) {
    if (!s.empty()) std::memcpy(&x, s.data(), s.size());
    return hit(x) != 0;
  }
  for (size_t i = 0; i + sizeof x <= s.size(); i += sizeof x) {
    std::memcpy(&x, s.data() + i, sizeof x);
    if (hit(x) != 0) return true;
  }
  std::memcpy(&x, s.data() + s.size() - sizeof x, sizeof x);
  return hit(x) != 0;
}

void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::less<const char*> before;
  if (!s.empty() && !before(s.data(), out->data()) &&
      before(s.data(), out->data() + out->size() + 1)) {
    const std::string copy(s);  // a view of *out: growing *out would move it
    AppendJsonString(out, copy);
    return;
  }
  // The common case (ids, codes, names: nothing to escape) in one copy.
  if (!JsonNeedsEscape(s)) {
    const size_t at = out->size();
    out->append(s.size() + 2, '"');  // one call into the string, not three
    if (!s.empty()) std::memcpy(out->data() + at + 1, s.data(), s.size());
    return;
  }
  out->push_back('"');
  // Otherwise in runs; the byte-at-a-time path below handles only the bytes
  // that need it.
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      default:
        if (c < 0x20) {
          *out += "\\u00";
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xf]);
        }
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

void PutEvent(ledger::Txn& txn, std::string_view merchant, std::string_view type,
              std::string_view data_json, std::string* event_key) {
  NARAE_CHECK(!merchant.empty() && !type.empty() && !data_json.empty());
  const uint64_t id = NextEventId(txn.now_ns());
  // The record and its key in buffers this thread keeps (PutAux copies
  // them): no allocation per event once they have grown.
  thread_local std::string ev;
  thread_local std::string key;
  ev.clear();
  ev.reserve(data_json.size() + 128);
  using namespace std::string_view_literals;  // the literals' lengths, without strlen
  ev += "{\"id\":\"evt_"sv;
  AppendHex16(&ev, id);
  ev += "\",\"type\":"sv;
  AppendJsonString(&ev, type);
  ev += ",\"created_at_ms\":"sv;
  char ms[24];
  auto [end, ec] = std::to_chars(ms, ms + sizeof ms, txn.now_ns() / 1'000'000);
  NARAE_CHECK(ec == std::errc());
  ev.append(ms, end);
  ev += ",\"data\":"sv;
  ev += data_json;
  ev += '}';
  std::string* k = event_key ? event_key : &key;
  k->clear();
  k->reserve(kAuxEventPrefix.size() + merchant.size() + 1 + 16);
  k->append(kAuxEventPrefix).append(merchant).append(1, '/');
  AppendHex16(k, id);
  txn.PutAux(*k, ev);
  if (ev.capacity() > kEventScratchBytesMax) std::string().swap(ev);  // a rare large event
}

std::string EventKey(std::string_view merchant, std::string_view event_id) {
  NARAE_CHECK(event_id.starts_with("evt_"));
  std::string key(kAuxEventPrefix);
  key.append(merchant).append("/").append(event_id.substr(4));
  return key;
}

std::optional<std::string_view> EventData(std::string_view event) {
  // {"id":"evt_<hex>","type":<string>,"created_at_ms":<n>,"data":<data>}: the
  // first ,"data": is PutEvent's (the type is escaped, so it holds no bare ").
  constexpr std::string_view kData = ",\"data\":";
  if (!event.starts_with("{\"id\":\"evt_") || !event.ends_with('}')) return std::nullopt;
  const size_t at = event.find(kData);
  if (at == std::string_view::npos) return std::nullopt;
  const size_t begin = at + kData.size();
  if (begin >= event.size() - 1) return std::nullopt;
  return event.substr(begin, event.size() - 1 - begin);
}

void IndexHoldExpiry(ledger::Txn& txn, std::string_view merchant, std::string_view rrn,
                     const ledger::TransferId& hold) {
  if (rrn.size() != kRrnBytes) return;
  std::optional<ledger::HoldInfo> h = txn.PeekHold(hold);
  if (!h || h->expires_at == 0) return;
  std::string key;
  key.reserve(kAuxExpiryIndexPrefix.size() + 16 + rrn.size());
  key.append(kAuxExpiryIndexPrefix);
  AppendHex16(&key, h->expires_at);
  key.append(rrn);
  std::string value;
  value.reserve(merchant.size() + 1 + 32);
  value.append(merchant).append("/").append(hold.ToHex());
  txn.PutAux(key, value);
}

void RecordIsoChange(ledger::Txn& txn, const BankCache& bank, const PaymentChange& c) {
  std::shared_ptr<const Terminal> t = bank.FindTerminal(c.terminal_id);
  if (!t) return;
  const std::string& merchant = t->merchant_id;
  if (c.kind == RequestKind::kHold) IndexHoldExpiry(txn, merchant, c.rrn, c.transfer);
  if (c.hooked) return;  // the HTTP API writes the event of its own requests
  std::string orig_key = c.orig_key;
  if (orig_key.empty() && !c.rrn_ref.empty()) {
    if (std::optional<std::string> k = txn.GetAux(std::string(kAuxRrnIndexPrefix) + c.rrn_ref)) {
      orig_key = std::string(kRequestRecordPrefix) + *k;
    }
  }
  std::optional<RequestRecord> orig;
  if (!orig_key.empty()) {
    if (std::optional<std::string> v = txn.GetAux(orig_key)) orig = ParseRequestRecord(*v);
  }
  const std::string orig_rrn = orig ? orig->rrn : std::string();
  const uint64_t orig_amount = orig ? orig->amount_minor : 0;
  std::optional<IsoEvent> ev = IsoEventJson(c, orig_rrn, orig_amount);
  if (ev) PutEvent(txn, merchant, ev->type, ev->data);
}

std::optional<IsoEvent> IsoEventJson(const PaymentChange& c, std::string_view orig_rrn,
                                     uint64_t orig_amount) {
  // The event's data, written by hand in the order json::dump() gives (its
  // object keys sorted), without building a json tree on the sequencer.
  std::string_view type;
  std::string d;
  d.reserve(320);
  auto str = [&d](std::string_view key, std::string_view v) {
    d += '"';
    d += key;
    d += "\":";
    AppendJsonString(&d, v);
    d += ',';
  };
  auto num = [&d](std::string_view key, uint64_t v) {
    d += '"';
    d += key;
    d += "\":";
    d += std::to_string(v);
    d += ',';
  };
  auto iso = [&] {
    d += "\"iso8583\":{";
    str("rrn", c.rrn);
    str("terminal_id", c.terminal_id);
    d.back() = '}';
    d += ',';
  };
  // amount, amount_captured[, amount_voided], channel, currency, id, iso8583,
  // object[, partial], status
  auto payment = [&](std::string_view rrn, std::string_view status, uint64_t amount,
                     uint64_t captured, const uint64_t* voided) {
    num("amount", amount);
    num("amount_captured", captured);
    if (voided) num("amount_voided", *voided);
    str("channel", "iso8583");
    str("currency", CurrencyAlpha(c.currency));
    str("id", "pay_" + std::string(rrn));
    iso();
    str("object", "payment");
    if (voided) {
      d += "\"partial\":";
      d += c.partial ? "true," : "false,";
    }
    str("status", status);
  };
  d += '{';
  switch (c.kind) {
    case RequestKind::kHold:
      type = "payment.authorized";
      payment(c.rrn, "authorized", c.amount_minor, 0, nullptr);
      break;
    case RequestKind::kPurchase:
      type = "payment.captured";
      payment(c.rrn, "captured", c.amount_minor, c.amount_minor, nullptr);
      break;
    case RequestKind::kCompletion:
      type = "payment.captured";
      payment(orig_rrn, "captured", orig_amount, c.amount_minor, nullptr);
      break;
    case RequestKind::kReversal:
      type = "payment.voided";
      payment(orig_rrn, c.partial ? "authorized" : "voided", orig_amount, 0, &c.amount_minor);
      break;
    case RequestKind::kRefund:
      type = "payment.refunded";
      num("amount", c.amount_minor);
      str("channel", "iso8583");
      str("currency", CurrencyAlpha(c.currency));
      str("id", "re_" + c.rrn);
      iso();
      str("object", "refund");
      if (orig_rrn.empty()) {
        d += "\"payment_id\":null,";
      } else {
        str("payment_id", std::string("pay_").append(orig_rrn));
      }
      str("status", "succeeded");
      break;
    default:
      return std::nullopt;
  }
  d.back() = '}';
  return IsoEvent{type, std::move(d)};
}

void RecordSettlementEvent(ledger::Txn& txn, const MerchantSettlement& m) {
  json data = {{"object", "settlement"},
               {"id", "stl_" + std::to_string(m.day) + "_" + CurrencyAlpha(m.currency)},
               {"day", m.day},
               {"currency", CurrencyAlpha(m.currency)},
               {"captures", m.captures_minor},
               {"captures_count", m.captures_count},
               {"refunds", m.refunds_minor},
               {"refunds_count", m.refunds_count},
               {"fees", m.fees_minor},
               {"delivery", m.delivery_minor},
               {"delivery_returned", m.delivery_returned_minor},
               {"payout", m.payout_minor},
               {"recovery", m.recovery_minor},
               {"settled_at_ms", m.settled_at_ns / 1'000'000}};
  PutEvent(txn, m.merchant_id, "settlement.settled", data.dump());
}

Status ScanAuxAfter(ledger::Ledger& ledger, const std::string& prefix, std::string_view after,
                    const std::function<bool(std::string_view, std::string_view)>& fn) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  bool go = true;
  auto visit = [&](std::string_view k, std::string_view v) {
    if (k.substr(prefix.size()) <= after) return true;
    go = fn(k, v);
    return go;
  };
  if (after.empty()) return ledger.ScanAux(prefix, visit);
  std::string_view steer = after.substr(0, std::min<size_t>(after.size(), 16));
  for (char c : steer) {
    if (kHex.find(c) == std::string_view::npos) return Status::InvalidArgument("bad cursor");
  }
  // Keys extending `steer` come first, then those with a larger digit at the
  // last position, then at the one before, ...
  NARAE_RETURN_IF_ERROR(ledger.ScanAux(prefix + std::string(steer), visit));
  for (size_t i = steer.size(); i-- > 0 && go;) {
    std::string base = prefix + std::string(steer.substr(0, i));
    for (size_t d = kHex.find(steer[i]) + 1; d < kHex.size() && go; ++d) {
      NARAE_RETURN_IF_ERROR(ledger.ScanAux(base + kHex[d], visit));
    }
  }
  return Status::Ok();
}

void EmitExpiredHolds(ledger::Ledger& ledger, uint64_t now_ns,
                      std::function<void(Result<size_t>)> done, bool write_events) {
  const std::string prefix(kAuxExpiryIndexPrefix);
  const std::string cursor = ledger.GetAux(kAuxExpiryCursorKey).value_or("");
  auto due = std::make_shared<std::vector<DueHold>>();
  Status s = ScanAuxAfter(ledger, prefix, cursor, [&](std::string_view k, std::string_view v) {
    std::string_view suffix = k.substr(prefix.size());
    if (suffix.size() != kExpirySuffixBytes) return true;  // not ours: skipped
    uint64_t expires_at = std::strtoull(std::string(suffix.substr(0, 16)).c_str(), nullptr, 16);
    if (expires_at > now_ns) return false;
    const size_t slash = v.rfind('/');
    std::optional<ledger::U128> id =
        slash == std::string_view::npos ? std::nullopt : ledger::U128::Parse(v.substr(slash + 1));
    if (!id) return true;
    std::optional<ledger::HoldInfo> h = ledger.LookupHold(ledger::TransferId{*id});
    if (h && h->state == ledger::HoldState::kPending)
      return false;  // not expired by the ledger yet
    due->push_back({std::string(suffix), std::string(v.substr(0, slash)), ledger::TransferId{*id}});
    return due->size() < kExpiryScanBatchMax;
  });
  if (!s.ok()) return done(s);
  if (due->empty()) return done(size_t{0});
  // Other banks: an expired stand-in hold gives its bank's exposure back.
  Result<std::vector<OtherBank>> listed = ListOtherBanks(ledger);
  if (!listed.ok()) return done(listed.status());
  auto banks = std::make_shared<const std::vector<OtherBank>>(std::move(*listed));
  auto written = std::make_shared<size_t>(0);
  Status sub = ledger.Submit(
      [due, written, banks, write_events](ledger::Txn& txn) {
        std::string at = txn.GetAux(kAuxExpiryCursorKey).value_or("");
        for (const DueHold& d : *due) {
          if (d.suffix <= at) continue;  // another scan wrote it
          std::optional<ledger::HoldInfo> h = txn.PeekHold(d.hold);
          if (h && h->state == ledger::HoldState::kExpired) {
            ++*written;
            if (!banks->empty()) ReleaseExpiredStandIn(txn, *banks, d, h->hold.amount_minor);
          }
          if (h && h->state == ledger::HoldState::kExpired && write_events) {
            json data = {{"id", "pay_" + d.suffix.substr(16)},
                         {"object", "payment"},
                         {"status", "expired"},
                         {"amount", h->hold.amount_minor},
                         {"currency", CurrencyAlpha(static_cast<uint16_t>(h->hold.ledger))},
                         {"expired_at_ms", h->resolved_at / 1'000'000}};
            PutEvent(txn, d.merchant, "payment.expired", data.dump());
          }
          at = d.suffix;
        }
        txn.PutAux(kAuxExpiryCursorKey, at);
      },
      [written, done](Status st) {
        if (!st.ok()) return done(st);
        done(*written);
      });
  if (!sub.ok()) done(sub);
}

Result<size_t> EmitExpiredHoldsSync(ledger::Ledger& ledger, uint64_t now_ns, bool write_events) {
  std::promise<Result<size_t>> p;
  std::future<Result<size_t>> f = p.get_future();
  EmitExpiredHolds(
      ledger, now_ns, [&p](Result<size_t> r) { p.set_value(std::move(r)); }, write_events);
  return f.get();
}

// ---- The scan of an ISO-only switch ----------------------------------------------

HoldExpiryScan::HoldExpiryScan(ledger::Ledger& ledger, uint32_t interval_ms)
    : ledger_(ledger), interval_ms_(interval_ms) {}

Result<std::unique_ptr<HoldExpiryScan>> HoldExpiryScan::Start(ledger::Ledger& ledger,
                                                              IsoHandler& handler,
                                                              uint32_t interval_ms) {
  auto* hooked = dynamic_cast<HookedHandler*>(&handler);
  BankCache* bank = hooked ? hooked->bank_cache() : nullptr;
  if (!bank) return Status::InvalidArgument("the expiry scan needs the authorizer");
  if (interval_ms == 0 || interval_ms > 3'600'000) {
    return Status::InvalidArgument("expiry scan interval must be 1..3600000 ms");
  }
  hooked->SetPaymentObserver([bank](ledger::Txn& txn, const PaymentChange& c) {
    if (c.kind != RequestKind::kHold) return;
    std::shared_ptr<const Terminal> t = bank->FindTerminal(c.terminal_id);
    IndexHoldExpiry(txn, t ? std::string_view(t->merchant_id) : std::string_view(), c.rrn,
                    c.transfer);
  });
  std::unique_ptr<HoldExpiryScan> scan(new HoldExpiryScan(ledger, interval_ms));
  scan->thread_ = std::thread([s = scan.get()] { s->Run(); });
  return scan;
}

void HoldExpiryScan::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    const uint64_t now_ns =
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
    // One batch per round (kExpiryScanBatchMax holds); a backlog drains at
    // that many per interval. A failed scan is retried at the next round.
    Result<size_t> n = EmitExpiredHoldsSync(ledger_, now_ns, /*write_events=*/false);
    lock.lock();
    if (n.ok()) expired_holds_ += *n;
    cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_), [this] { return stop_; });
  }
}

void HoldExpiryScan::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

HoldExpiryScan::~HoldExpiryScan() { Stop(); }

uint64_t HoldExpiryScan::expired_holds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return expired_holds_;
}

}  // namespace narae::switching
