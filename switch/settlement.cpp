// Settlement (switch/settlement.hpp, docs/settlement.md).
#include "switch/settlement.hpp"

#include <time.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <utility>

#include "crypto/crypto.hpp"
#include "switch/api_events.hpp"
#include "switch/authorizer.hpp"
#include "switch/bank.hpp"
#include "switch/iso8583.hpp"

namespace narae::switching {
namespace {

using json = nlohmann::json;
using ledger::AccountId;
using ledger::Transfer;
using ledger::TransferId;
using ledger::U128;
namespace tf = ledger::transfer_flags;

constexpr std::string_view kAuxCursor = "st/cur";
constexpr std::string_view kAuxAttemptPrefix = "st/a/";
constexpr std::string_view kAuxInterbankPrefix = "st/i/";
constexpr uint8_t kPaymentInfoVersion = 1;
constexpr uint8_t kPaymentInfoVersionMoved = 2;  // kAtCapture: + moved_minor
constexpr uint64_t kNsPerSecond = 1'000'000'000ull;
constexpr uint64_t kNsPerDay = 86'400ull * kNsPerSecond;
constexpr uint32_t kAttemptsMax = 1000;
constexpr uint32_t kSubmitRetriesMax = 100000;
constexpr size_t kEntryPagesMax = kReportLinesMax / ledger::kQueryLimitMax + 1;

std::string Pad(uint64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llu", width, static_cast<unsigned long long>(v));
  return buf;
}

bool Add(uint64_t* acc, uint64_t v) {
  if (*acc > std::numeric_limits<uint64_t>::max() - v) return false;
  *acc += v;
  return true;
}

std::optional<U128> HexId(const json& j) {
  if (!j.is_string()) return std::nullopt;
  return U128::Parse(j.get<std::string>(), false);
}

std::string UtcDate(uint64_t ns) {
  time_t s = static_cast<time_t>(ns / kNsPerSecond);
  struct tm tm {};
  gmtime_r(&s, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  return buf;
}

uint64_t SystemNowNs() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kNsPerSecond + static_cast<uint64_t>(ts.tv_nsec);
}

template <typename T>
Result<T> ParseJson(std::string_view text, const char* what,
                    const std::function<T(const json&)>& build) {
  try {
    json j = json::parse(text);
    if (!j.is_object() || j.value("v", 0) != 1) {
      return Status::Corruption(std::string(what) + ": not a version 1 record");
    }
    return build(j);
  } catch (const std::exception& e) {
    return Status::Corruption(std::string(what) + ": " + e.what());
  }
}

// ---- The last-closed-day cursor ---------------------------------------------
struct Cursor {
  uint32_t day = 0;
  uint64_t close_ns = 0;
};
std::string EncodeCursor(const Cursor& c) {
  return json{{"v", 1}, {"day", c.day}, {"close_ns", c.close_ns}}.dump();
}
Result<Cursor> DecodeCursor(std::string_view text) {
  return ParseJson<Cursor>(text, "day cursor", [](const json& j) {
    return Cursor{j.at("day").get<uint32_t>(), j.at("close_ns").get<uint64_t>()};
  });
}
Result<Cursor> ReadCursor(ledger::Ledger& ledger) {
  std::optional<std::string> v = ledger.GetAux(kAuxCursor);
  if (!v) return Cursor{};
  return DecodeCursor(*v);
}

std::string AttemptKey(uint32_t day, uint16_t currency, std::string_view merchant) {
  return std::string(kAuxAttemptPrefix) + Pad(day, 10) + "/" + Pad(currency, 3) + "/" +
         std::string(merchant);
}
std::string InterbankKey(uint32_t day, uint16_t currency) {
  return std::string(kAuxInterbankPrefix) + Pad(day, 10) + "/" + Pad(currency, 3);
}
uint32_t ParseAttempt(const std::optional<std::string>& v) {
  if (!v) return 0;
  uint64_t n = 0;
  for (char c : *v) {
    if (c < '0' || c > '9' || n > kAttemptsMax) return kAttemptsMax;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return static_cast<uint32_t>(std::min<uint64_t>(n, kAttemptsMax));
}

TransferId HashId(std::string_view text) {
  Result<crypto::Bytes> h =
      crypto::Sha256(crypto::ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  NARAE_CHECK(h.ok() && h->size() == 32);
  U128 v;
  for (int i = 0; i < 8; ++i) v.hi = (v.hi << 8) | (*h)[i];
  for (int i = 8; i < 16; ++i) v.lo = (v.lo << 8) | (*h)[i];
  v.hi &= 0x7fffffffffffffffull;  // never int max
  if (v.IsZero()) v.lo = 1;
  return TransferId{v};
}

}  // namespace

bool IsSettlementCode(uint16_t code) {
  return code >= kCodeSettlePayout && code <= kCodeInterbankNet;
}

// ---- Business days ---------------------------------------------------------------

std::string DayKey(uint32_t day) { return std::string(kAuxDayPrefix) + Pad(day, 10); }

std::string EncodeDayRecord(const DayRecord& d) {
  return json{{"v", 1},
              {"day", d.day},
              {"open_ns", d.open_ns},
              {"close_ns", d.close_ns},
              {"closed_at_ns", d.closed_at_ns},
              {"date", d.date}}
      .dump();
}

Result<DayRecord> DecodeDayRecord(std::string_view text) {
  return ParseJson<DayRecord>(text, "day record", [](const json& j) {
    DayRecord d;
    d.day = j.at("day").get<uint32_t>();
    d.open_ns = j.at("open_ns").get<uint64_t>();
    d.close_ns = j.at("close_ns").get<uint64_t>();
    d.closed_at_ns = j.at("closed_at_ns").get<uint64_t>();
    d.date = j.at("date").get<std::string>();
    return d;
  });
}

Result<DayRecord> CloseDay(ledger::Ledger& ledger, std::optional<uint64_t> at_ns) {
  Status st;
  DayRecord out;
  Status ex = ledger.Execute([&](ledger::Txn& txn) {
    Cursor cur;
    if (std::optional<std::string> v = txn.GetAux(kAuxCursor)) {
      Result<Cursor> c = DecodeCursor(*v);
      if (!c.ok()) {
        st = c.status();
        return;
      }
      cur = *c;
    }
    // Every transfer with a timestamp below the group base was sequenced
    // before this close; nothing sequenced later can get one <= close.
    const uint64_t latest = txn.now_ns() - 1;
    const uint64_t close = at_ns.value_or(latest);
    if (close > latest) {
      st = Status::InvalidArgument("the cut-over " + std::to_string(close) +
                                   " is in the future; a day closes at or before now");
      return;
    }
    if (cur.day != 0 && close <= cur.close_ns) {
      st = Status::AlreadyExists("business day " + std::to_string(cur.day) + " already closed at " +
                                 std::to_string(cur.close_ns) +
                                 " ns; a day closes once, at a later cut-over");
      return;
    }
    out.day = cur.day + 1;
    out.open_ns = cur.close_ns;
    out.close_ns = close;
    out.closed_at_ns = txn.now_ns();
    out.date = UtcDate(close);
    txn.PutAux(DayKey(out.day), EncodeDayRecord(out));
    txn.PutAux(kAuxCursor, EncodeCursor({out.day, close}));
  });
  NARAE_RETURN_IF_ERROR(ex);
  NARAE_RETURN_IF_ERROR(st);
  return out;
}

Result<DayRecord> GetDay(ledger::Ledger& ledger, uint32_t day) {
  if (day == 0) return Status::InvalidArgument("business days are numbered from 1");
  if (std::optional<std::string> v = ledger.GetAux(DayKey(day))) return DecodeDayRecord(*v);
  Result<Cursor> cur = ReadCursor(ledger);
  if (!cur.ok()) return cur.status();
  if (day == cur->day + 1) {
    return Status::FailedPrecondition("business day " + std::to_string(day) +
                                      " is still open; close it first (narae day close)");
  }
  return Status::NotFound("business day " + std::to_string(day) +
                          " does not exist (last closed: " + std::to_string(cur->day) + ")");
}

Result<std::vector<DayRecord>> ListDays(ledger::Ledger& ledger) {
  std::vector<DayRecord> out;
  Status bad;
  Status s = ledger.ScanAux(kAuxDayPrefix, [&](std::string_view, std::string_view v) {
    Result<DayRecord> d = DecodeDayRecord(v);
    if (!d.ok()) {
      bad = d.status();
      return false;
    }
    out.push_back(std::move(*d));
    return true;
  });
  NARAE_RETURN_IF_ERROR(s);
  NARAE_RETURN_IF_ERROR(bad);
  return out;
}

Result<uint32_t> ResolveDay(ledger::Ledger& ledger, std::string_view text) {
  if (!text.empty() && text.size() <= 9 &&
      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    uint32_t n = 0;
    for (char c : text) n = n * 10 + static_cast<uint32_t>(c - '0');
    if (n == 0) return Status::InvalidArgument("business days are numbered from 1");
    return n;
  }
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') {
    return Status::InvalidArgument("--day must be a day number or a date YYYY-MM-DD");
  }
  Result<std::vector<DayRecord>> days = ListDays(ledger);
  if (!days.ok()) return days.status();
  std::vector<uint32_t> match;
  for (const DayRecord& d : *days) {
    if (d.date == text) match.push_back(d.day);
  }
  if (match.empty()) return Status::NotFound("no closed business day on " + std::string(text));
  if (match.size() > 1) {
    return Status::InvalidArgument("several business days closed on " + std::string(text) +
                                   "; give the day number");
  }
  return match[0];
}

Result<std::optional<DayRecord>> CloseDayIfDue(ledger::Ledger& ledger, uint32_t cutover_s_of_day) {
  if (cutover_s_of_day >= 86'400) return Status::InvalidArgument("cut-over must be < 86400 s");
  Result<Cursor> cur = ReadCursor(ledger);
  if (!cur.ok()) return cur.status();
  const uint64_t now = SystemNowNs();
  uint64_t cutover = now / kNsPerDay * kNsPerDay + uint64_t{cutover_s_of_day} * kNsPerSecond;
  if (cutover > now) cutover -= kNsPerDay;  // today's has not come yet: yesterday's
  if (cur->day != 0 && cur->close_ns >= cutover) return std::optional<DayRecord>();
  Result<DayRecord> d = CloseDay(ledger, cutover);
  if (!d.ok()) {
    if (d.status().code() == StatusCode::kAlreadyExists) return std::optional<DayRecord>();
    return d.status();
  }
  return std::optional<DayRecord>(*d);
}

// ---- Fee schedules -------------------------------------------------------------------

namespace {
std::string FeeKey(const FeeSchedule& f) {
  return std::string(kAuxFeePrefix) + Pad(f.currency, 3) + "/" + f.merchant_id + "/" +
         Pad(f.version, 10);
}
std::string FeePrefix(uint16_t currency, std::string_view merchant) {
  return std::string(kAuxFeePrefix) + Pad(currency, 3) + "/" + std::string(merchant) + "/";
}
}  // namespace

std::string EncodeFeeSchedule(const FeeSchedule& f) {
  json bands = json::array();
  for (const DeliveryBand& b : f.delivery_bands) {
    bands.push_back({{"up_to_m", b.up_to_m}, {"share_minor", b.share_minor}});
  }
  return json{{"v", 1},
              {"merchant", f.merchant_id},
              {"currency", f.currency},
              {"version", f.version},
              {"effective_from_ns", f.effective_from_ns},
              {"bps", f.bps},
              {"fixed_minor", f.fixed_minor},
              {"min_minor", f.min_minor},
              {"max_minor", f.max_minor},
              {"delivery_bands", bands},
              {"created_at_ns", f.created_at_ns}}
      .dump();
}

Result<FeeSchedule> DecodeFeeSchedule(std::string_view text) {
  Result<FeeSchedule> r = ParseJson<FeeSchedule>(text, "fee schedule", [](const json& j) {
    FeeSchedule f;
    f.merchant_id = j.at("merchant").get<std::string>();
    f.currency = j.at("currency").get<uint16_t>();
    f.version = j.at("version").get<uint32_t>();
    f.effective_from_ns = j.at("effective_from_ns").get<uint64_t>();
    f.bps = j.at("bps").get<uint32_t>();
    f.fixed_minor = j.at("fixed_minor").get<uint64_t>();
    f.min_minor = j.at("min_minor").get<uint64_t>();
    f.max_minor = j.at("max_minor").get<uint64_t>();
    for (const json& b : j.at("delivery_bands")) {
      f.delivery_bands.push_back(
          {b.at("up_to_m").get<uint32_t>(), b.at("share_minor").get<uint64_t>()});
    }
    f.created_at_ns = j.at("created_at_ns").get<uint64_t>();
    return f;
  });
  if (!r.ok()) return r;
  Status v = ValidateFeeSchedule(*r);
  if (!v.ok()) return Status::Corruption("fee schedule: " + v.message());
  return r;
}

Status ValidateFeeSchedule(const FeeSchedule& f) {
  if (f.merchant_id.empty() || f.merchant_id.size() > kMerchantIdBytesMax ||
      f.merchant_id.find(' ') != std::string::npos) {
    return Status::InvalidArgument("fee schedule: merchant must be 1..15 characters or *");
  }
  if (f.currency == 0 || f.currency > 999) {
    return Status::InvalidArgument("fee schedule: currency must be ISO 4217 numeric");
  }
  if (f.bps > kFeeBpsMax) return Status::InvalidArgument("fee schedule: bps must be 0..10000");
  if (f.max_minor != 0 && f.max_minor < f.min_minor) {
    return Status::InvalidArgument("fee schedule: max must be 0 (none) or >= min");
  }
  if (f.delivery_bands.size() > kFeeBandsMax) {
    return Status::InvalidArgument("fee schedule: at most 8 delivery bands");
  }
  for (size_t i = 0; i < f.delivery_bands.size(); ++i) {
    const DeliveryBand& b = f.delivery_bands[i];
    const bool last = i + 1 == f.delivery_bands.size();
    if (b.up_to_m == 0 && !last) {
      return Status::InvalidArgument("fee schedule: only the last band may be open-ended");
    }
    if (i > 0 && b.up_to_m != 0 && b.up_to_m <= f.delivery_bands[i - 1].up_to_m) {
      return Status::InvalidArgument("fee schedule: band limits must increase");
    }
  }
  return Status::Ok();
}

uint64_t PercentHalfEven(uint64_t amount_minor, uint32_t bps) {
  NARAE_CHECK(bps <= kFeeBpsMax);
  const unsigned __int128 p = static_cast<unsigned __int128>(amount_minor) * bps;
  unsigned __int128 q = p / 10'000;
  const unsigned __int128 r = p % 10'000;
  if (r > 5'000 || (r == 5'000 && (q & 1) == 1)) ++q;
  NARAE_CHECK(q <= amount_minor);  // bps <= 10000
  return static_cast<uint64_t>(q);
}

uint64_t ComputeFee(const FeeSchedule& f, uint64_t amount_minor) {
  uint64_t fee = PercentHalfEven(amount_minor, f.bps);
  if (fee > std::numeric_limits<uint64_t>::max() - f.fixed_minor) {
    fee = std::numeric_limits<uint64_t>::max();
  } else {
    fee += f.fixed_minor;
  }
  fee = std::max(fee, f.min_minor);
  if (f.max_minor != 0) fee = std::min(fee, f.max_minor);
  return std::min(fee, amount_minor);
}

std::optional<uint64_t> DeliveryShareForDistance(const FeeSchedule& f, uint32_t distance_m) {
  for (const DeliveryBand& b : f.delivery_bands) {
    if (b.up_to_m == 0 || distance_m <= b.up_to_m) return b.share_minor;
  }
  return std::nullopt;
}

Result<FeeSchedule> SetFeeSchedule(ledger::Ledger& ledger, FeeSchedule f) {
  f.version = 1;  // validated below with the real one
  NARAE_RETURN_IF_ERROR(ValidateFeeSchedule(f));
  // The latest version (small: one per change of a merchant's terms).
  std::optional<FeeSchedule> last;
  Status bad;
  NARAE_RETURN_IF_ERROR(ledger.ScanAux(FeePrefix(f.currency, f.merchant_id),
                                       [&](std::string_view, std::string_view v) {
                                         Result<FeeSchedule> s = DecodeFeeSchedule(v);
                                         if (!s.ok()) {
                                           bad = s.status();
                                           return false;
                                         }
                                         last = std::move(*s);
                                         return true;
                                       }));
  NARAE_RETURN_IF_ERROR(bad);
  Status st;
  Status ex = ledger.Execute([&](ledger::Txn& txn) {
    Cursor cur;
    if (std::optional<std::string> v = txn.GetAux(kAuxCursor)) {
      Result<Cursor> c = DecodeCursor(*v);
      if (!c.ok()) {
        st = c.status();
        return;
      }
      cur = *c;
    }
    f.created_at_ns = txn.now_ns();
    if (f.effective_from_ns == 0) f.effective_from_ns = txn.now_ns();
    if (cur.day != 0 && f.effective_from_ns <= cur.close_ns) {
      st = Status::FailedPrecondition("a fee schedule cannot apply to a closed business day (day " +
                                      std::to_string(cur.day) + " closed at " +
                                      std::to_string(cur.close_ns) + " ns)");
      return;
    }
    f.version = last ? last->version + 1 : 1;
    if (last && f.effective_from_ns < last->effective_from_ns) {
      st = Status::FailedPrecondition("version " + std::to_string(last->version) +
                                      " is effective from a later instant; a new version "
                                      "cannot start before it");
      return;
    }
    if (txn.GetAux(FeeKey(f))) {
      st = Status::AlreadyExists("fee schedule version exists (concurrent change); retry");
      return;
    }
    txn.PutAux(FeeKey(f), EncodeFeeSchedule(f));
  });
  NARAE_RETURN_IF_ERROR(ex);
  NARAE_RETURN_IF_ERROR(st);
  return f;
}

Result<std::vector<FeeSchedule>> ListFeeSchedules(ledger::Ledger& ledger) {
  std::vector<FeeSchedule> out;
  Status bad;
  NARAE_RETURN_IF_ERROR(ledger.ScanAux(kAuxFeePrefix, [&](std::string_view, std::string_view v) {
    Result<FeeSchedule> s = DecodeFeeSchedule(v);
    if (!s.ok()) {
      bad = s.status();
      return false;
    }
    out.push_back(std::move(*s));
    return true;
  }));
  NARAE_RETURN_IF_ERROR(bad);
  return out;
}

Result<std::optional<FeeSchedule>> FeeScheduleInForce(ledger::Ledger& ledger,
                                                      std::string_view merchant_id,
                                                      uint16_t currency, uint64_t ts_ns) {
  std::vector<FeeSchedule> versions;
  Status bad;
  auto collect = [&](std::string_view, std::string_view v) {
    Result<FeeSchedule> s = DecodeFeeSchedule(v);
    if (!s.ok()) {
      bad = s.status();
      return false;
    }
    versions.push_back(std::move(*s));
    return true;
  };
  NARAE_RETURN_IF_ERROR(ledger.ScanAux(FeePrefix(currency, merchant_id), collect));
  NARAE_RETURN_IF_ERROR(bad);
  if (merchant_id != kDefaultFeeMerchant) {
    NARAE_RETURN_IF_ERROR(ledger.ScanAux(FeePrefix(currency, kDefaultFeeMerchant), collect));
    NARAE_RETURN_IF_ERROR(bad);
  }
  FeeBook book(std::move(versions));
  const FeeSchedule* f = book.Find(merchant_id, currency, ts_ns);
  if (f == nullptr) return std::optional<FeeSchedule>();
  return std::optional<FeeSchedule>(*f);
}

FeeBook::FeeBook(std::vector<FeeSchedule> all) : all_(std::move(all)) {
  std::sort(all_.begin(), all_.end(), [](const FeeSchedule& a, const FeeSchedule& b) {
    return std::tie(a.currency, a.merchant_id, a.effective_from_ns, a.version) <
           std::tie(b.currency, b.merchant_id, b.effective_from_ns, b.version);
  });
}

const FeeSchedule* FeeBook::Find(std::string_view merchant_id, uint16_t currency,
                                 uint64_t ts_ns) const {
  auto in_force = [&](std::string_view m) -> const FeeSchedule* {
    // The last version of (currency, m) with effective_from <= ts.
    auto it = std::upper_bound(all_.begin(), all_.end(), std::tie(currency, m, ts_ns),
                               [](const auto& key, const FeeSchedule& f) {
                                 const auto& [c, mm, t] = key;
                                 if (c != f.currency) return c < f.currency;
                                 if (mm != f.merchant_id) return mm < f.merchant_id;
                                 return t < f.effective_from_ns;
                               });
    if (it == all_.begin()) return nullptr;
    --it;
    if (it->currency != currency || it->merchant_id != m) return nullptr;
    return &*it;
  };
  if (const FeeSchedule* f = in_force(merchant_id)) return f;
  return in_force(kDefaultFeeMerchant);
}

// ---- Payment information -------------------------------------------------------------

std::string PaymentInfoKey(const TransferId& payment) {
  return std::string(kAuxPaymentPrefix) + payment.ToHex();
}

Status ValidatePaymentInfo(const PaymentInfo& p) {
  if (p.order_ref.size() > kOrderRefBytesMax) {
    return Status::InvalidArgument("order reference longer than 64 bytes");
  }
  for (char c : p.order_ref) {
    if (c < 0x20 || c > 0x7e) return Status::InvalidArgument("order reference: printable ASCII");
  }
  if (!p.rrn.empty() && p.rrn.size() != kRrnBytes) {
    return Status::InvalidArgument("RRN must be 12 characters");
  }
  for (char c : p.rrn) {
    if (c < 0x21 || c > 0x7e) return Status::InvalidArgument("RRN: printable ASCII");
  }
  switch (p.split.kind) {
    case SplitKind::kNone:
      if (p.split.amount_minor != 0 || p.split.distance_m != 0) {
        return Status::InvalidArgument("split: no amount or distance without a kind");
      }
      break;
    case SplitKind::kFixed:
      if (p.split.amount_minor == 0 || p.split.distance_m != 0) {
        return Status::InvalidArgument("split: a fixed delivery share needs an amount > 0");
      }
      break;
    case SplitKind::kDistance:
      if (p.split.amount_minor != 0 || p.split.distance_m > kDistanceMetersMax) {
        return Status::InvalidArgument("split: distance must be 0..20000 km");
      }
      break;
    case SplitKind::kAtCapture:
      if (p.split.amount_minor == 0 || p.split.distance_m != 0 ||
          p.split.moved_minor > p.split.amount_minor) {
        return Status::InvalidArgument("split: a share at capture needs 0 <= moved <= amount > 0");
      }
      break;
    default:
      return Status::InvalidArgument("split: unknown kind");
  }
  if (p.split.kind != SplitKind::kAtCapture && p.split.moved_minor != 0) {
    return Status::InvalidArgument("split: only a share at capture is moved");
  }
  return Status::Ok();
}

std::string EncodePaymentInfo(const PaymentInfo& p) {
  NARAE_CHECK(ValidatePaymentInfo(p).ok());
  const bool moved = p.split.kind == SplitKind::kAtCapture;
  std::string out;
  out.push_back(static_cast<char>(moved ? kPaymentInfoVersionMoved : kPaymentInfoVersion));
  out.push_back(static_cast<char>(p.split.kind));
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(p.split.amount_minor >> (8 * i)));
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(p.split.distance_m >> (8 * i)));
  if (moved) {
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(p.split.moved_minor >> (8 * i)));
  }
  out.push_back(static_cast<char>(p.order_ref.size()));
  out += p.order_ref;
  out.push_back(static_cast<char>(p.rrn.size()));
  out += p.rrn;
  return out;
}

Result<PaymentInfo> DecodePaymentInfo(std::string_view in) {
  const uint8_t version = in.empty() ? 0 : static_cast<uint8_t>(in[0]);
  const size_t fixed = 1 + 1 + 8 + 4 + 1 + (version == kPaymentInfoVersionMoved ? 8 : 0);
  if (in.size() < fixed + 1 ||
      (version != kPaymentInfoVersion && version != kPaymentInfoVersionMoved)) {
    return Status::Corruption("payment info: bad length or version");
  }
  PaymentInfo p;
  p.split.kind = static_cast<SplitKind>(static_cast<uint8_t>(in[1]));
  if ((p.split.kind == SplitKind::kAtCapture) != (version == kPaymentInfoVersionMoved)) {
    return Status::Corruption("payment info: version and split kind disagree");
  }
  size_t pos = 2;
  for (int i = 0; i < 8; ++i)
    p.split.amount_minor = (p.split.amount_minor << 8) | uint8_t(in[pos++]);
  for (int i = 0; i < 4; ++i) p.split.distance_m = (p.split.distance_m << 8) | uint8_t(in[pos++]);
  if (version == kPaymentInfoVersionMoved) {
    for (int i = 0; i < 8; ++i)
      p.split.moved_minor = (p.split.moved_minor << 8) | uint8_t(in[pos++]);
  }
  size_t n = static_cast<uint8_t>(in[pos++]);
  if (in.size() < pos + n + 1) return Status::Corruption("payment info: truncated");
  p.order_ref.assign(in.substr(pos, n));
  pos += n;
  size_t r = static_cast<uint8_t>(in[pos++]);
  if (in.size() != pos + r) return Status::Corruption("payment info: bad length");
  p.rrn.assign(in.substr(pos, r));
  Status v = ValidatePaymentInfo(p);
  if (!v.ok()) return Status::Corruption("payment info: " + v.message());
  return p;
}

void RecordPaymentInfo(ledger::Txn& txn, const TransferId& payment, const PaymentInfo& p) {
  txn.PutAux(PaymentInfoKey(payment), EncodePaymentInfo(p));
}

Status PutPaymentInfo(ledger::Ledger& ledger, const TransferId& payment, const PaymentInfo& p) {
  NARAE_RETURN_IF_ERROR(ValidatePaymentInfo(p));
  return ledger.Execute([&](ledger::Txn& txn) { RecordPaymentInfo(txn, payment, p); });
}

void CarryPaymentInfo(ledger::Txn& txn, const TransferId& from, const TransferId& to) {
  if (std::optional<std::string> v = txn.GetAux(PaymentInfoKey(from))) {
    txn.PutAux(PaymentInfoKey(to), *v);
  }
}

void RecordSplitAtCapture(ledger::Txn& txn, const TransferId& payment, uint64_t share_minor) {
  NARAE_CHECK(share_minor > 0);
  PaymentInfo p;
  if (std::optional<std::string> v = txn.GetAux(PaymentInfoKey(payment))) {
    Result<PaymentInfo> old = DecodePaymentInfo(*v);
    if (old.ok()) p = std::move(*old);
  }
  p.split = DeliverySplit{SplitKind::kAtCapture, share_minor, 0, 0};
  RecordPaymentInfo(txn, payment, p);
}

ledger::CreateTransferResult MoveDeliveryShare(ledger::Txn& txn, const TransferId& payment,
                                               const AccountId& clearing, uint16_t currency,
                                               uint64_t captured_minor, const TransferId& cause) {
  std::optional<std::string> v = txn.GetAux(PaymentInfoKey(payment));
  if (!v) return ledger::CreateTransferResult::kOk;
  Result<PaymentInfo> p = DecodePaymentInfo(*v);
  if (!p.ok() || p->split.kind != SplitKind::kAtCapture) return ledger::CreateTransferResult::kOk;
  const uint64_t target = std::min(p->split.amount_minor, captured_minor);
  const uint64_t moved = p->split.moved_minor;
  if (target == moved) return ledger::CreateTransferResult::kOk;
  std::optional<std::string> cfg_text = txn.GetAux(kAuxBankConfig);
  Result<BankConfig> cfg = cfg_text ? DecodeBankConfig(*cfg_text)
                                    : Result<BankConfig>(Status::NotFound("no bank config"));
  const BankAccounts* bank = cfg.ok() ? cfg->ForCurrency(currency) : nullptr;
  if (!bank || bank->logistics.IsZero()) {
    return ledger::CreateTransferResult::kCreditAccountNotFound;
  }
  Transfer t;
  t.id = HashId("narae-delivery/" + cause.ToHex());
  const bool out = target > moved;
  t.debit_account_id = out ? clearing : bank->logistics;
  t.credit_account_id = out ? bank->logistics : clearing;
  t.amount_minor = out ? target - moved : moved - target;
  t.ledger = currency;
  t.code = out ? kCodeDeliveryAtCapture : kCodeDeliveryReturned;
  t.user_data_128 = payment.value;
  std::vector<ledger::TransferOutcome> r = txn.CreateTransfers({&t, 1});
  if (r.size() != 1) return ledger::CreateTransferResult::kLinkedEventFailed;
  if (r[0].result != ledger::CreateTransferResult::kOk) return r[0].result;
  p->split.moved_minor = target;
  RecordPaymentInfo(txn, payment, *p);
  return ledger::CreateTransferResult::kOk;
}

Result<DeliverySplit> ParseSplitJson(std::string_view text) {
  try {
    json j = json::parse(text);
    if (!j.is_object() || j.size() != 1) {
      return Status::InvalidArgument("split: one of delivery_minor or distance_m");
    }
    DeliverySplit s;
    if (j.contains("delivery_minor")) {
      const json& a = j["delivery_minor"];
      if (!a.is_number_unsigned()) return Status::InvalidArgument("split: delivery_minor > 0");
      s.kind = SplitKind::kFixed;
      s.amount_minor = a.get<uint64_t>();
    } else if (j.contains("distance_m")) {
      const json& d = j["distance_m"];
      if (!d.is_number_unsigned() || d.get<uint64_t>() > kDistanceMetersMax) {
        return Status::InvalidArgument("split: distance_m must be 0..20000000");
      }
      s.kind = SplitKind::kDistance;
      s.distance_m = static_cast<uint32_t>(d.get<uint64_t>());
    } else {
      return Status::InvalidArgument("split: one of delivery_minor or distance_m");
    }
    PaymentInfo p;
    p.split = s;
    NARAE_RETURN_IF_ERROR(ValidatePaymentInfo(p));
    return s;
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("split: ") + e.what());
  }
}

// ---- Merchant settlement -------------------------------------------------------------

std::string SettledKey(uint32_t day, uint16_t currency, std::string_view merchant_id) {
  return std::string(kAuxSettledPrefix) + Pad(day, 10) + "/" + Pad(currency, 3) + "/" +
         std::string(merchant_id);
}

json MerchantSettlementJson(const MerchantSettlement& s) {
  json ids = json::array();
  for (const TransferId& t : s.transfers) ids.push_back(t.ToHex());
  return json{{"v", 1},
              {"day", s.day},
              {"merchant", s.merchant_id},
              {"currency", s.currency},
              {"captures_minor", s.captures_minor},
              {"captures_count", s.captures_count},
              {"refunds_minor", s.refunds_minor},
              {"refunds_count", s.refunds_count},
              {"fees_minor", s.fees_minor},
              {"delivery_minor", s.delivery_minor},
              {"delivery_at_capture_minor", s.delivery_at_capture_minor},
              {"delivery_returned_minor", s.delivery_returned_minor},
              {"payout_minor", s.payout_minor},
              {"recovery_minor", s.recovery_minor},
              {"attempt", s.attempt},
              {"transfers", ids},
              {"settled_at_ns", s.settled_at_ns}};
}

std::string EncodeMerchantSettlement(const MerchantSettlement& s) {
  return MerchantSettlementJson(s).dump();
}

Result<MerchantSettlement> DecodeMerchantSettlement(std::string_view text) {
  return ParseJson<MerchantSettlement>(text, "settlement record", [](const json& j) {
    MerchantSettlement s;
    s.day = j.at("day").get<uint32_t>();
    s.merchant_id = j.at("merchant").get<std::string>();
    s.currency = j.at("currency").get<uint16_t>();
    s.captures_minor = j.at("captures_minor").get<uint64_t>();
    s.captures_count = j.at("captures_count").get<uint32_t>();
    s.refunds_minor = j.at("refunds_minor").get<uint64_t>();
    s.refunds_count = j.at("refunds_count").get<uint32_t>();
    s.fees_minor = j.at("fees_minor").get<uint64_t>();
    s.delivery_minor = j.at("delivery_minor").get<uint64_t>();
    // Absent from records written before the HTTP split was counted here.
    s.delivery_at_capture_minor = j.value("delivery_at_capture_minor", uint64_t{0});
    if (s.delivery_at_capture_minor > s.delivery_minor) {
      throw std::runtime_error("delivery at capture above the delivery total");
    }
    // Absent from records written before reversals gave shares back.
    s.delivery_returned_minor = j.value("delivery_returned_minor", uint64_t{0});
    s.payout_minor = j.at("payout_minor").get<uint64_t>();
    s.recovery_minor = j.at("recovery_minor").get<uint64_t>();
    s.attempt = j.at("attempt").get<uint32_t>();
    for (const json& t : j.at("transfers")) {
      std::optional<U128> v = HexId(t);
      if (!v) throw std::runtime_error("bad transfer id");
      s.transfers.push_back(TransferId{*v});
    }
    s.settled_at_ns = j.at("settled_at_ns").get<uint64_t>();
    return s;
  });
}

TransferId SettlementTransferId(uint32_t day, uint16_t currency, std::string_view merchant_id,
                                uint32_t attempt, uint8_t sub) {
  std::string s = "narae-settle/" + std::to_string(day) + "/" + std::to_string(currency) + "/" +
                  std::to_string(attempt) + "/" + std::to_string(sub) + "/";
  s += merchant_id;
  return HashId(s);
}

namespace {

struct Context {
  BankConfig config;
  std::vector<Merchant> merchants;
  std::unique_ptr<FeeBook> fees;
  DayRecord day;
};

Result<std::vector<Merchant>> LoadMerchants(ledger::Ledger& ledger) {
  std::vector<Merchant> out;
  Status bad;
  NARAE_RETURN_IF_ERROR(
      ledger.ScanAux(kAuxMerchantPrefix, [&](std::string_view, std::string_view v) {
        Result<Merchant> m = DecodeMerchant(v);
        if (!m.ok()) {
          bad = m.status();
          return false;
        }
        out.push_back(std::move(*m));
        return true;
      }));
  NARAE_RETURN_IF_ERROR(bad);
  return out;
}

Result<Context> LoadContext(ledger::Ledger& ledger, uint32_t day) {
  Context c;
  Result<DayRecord> d = GetDay(ledger, day);
  if (!d.ok()) return d.status();
  c.day = *d;
  Result<BankConfig> cfg = LoadBankConfig(ledger);
  if (!cfg.ok()) return cfg.status();
  c.config = std::move(*cfg);
  Result<std::vector<Merchant>> m = LoadMerchants(ledger);
  if (!m.ok()) return m.status();
  c.merchants = std::move(*m);
  Result<std::vector<FeeSchedule>> f = ListFeeSchedules(ledger);
  if (!f.ok()) return f.status();
  c.fees = std::make_unique<FeeBook>(std::move(*f));
  return c;
}

// One merchant and currency being settled.
struct Slot {
  const Merchant* merchant = nullptr;
  const MerchantCurrency* mc = nullptr;
  MerchantSettlement ms;
};

class DayScanner {
 public:
  DayScanner(ledger::Ledger& ledger, const Context& ctx, bool keep_lines)
      : ledger_(ledger), ctx_(ctx), keep_lines_(keep_lines) {}

  void AddSlot(const Merchant& m, const MerchantCurrency& mc) {
    Slot s;
    s.merchant = &m;
    s.mc = &mc;
    s.ms.day = ctx_.day.day;
    s.ms.merchant_id = m.id;
    s.ms.currency = mc.currency;
    by_clearing_[mc.clearing] = slots_.size();
    slots_.push_back(std::move(s));
  }

  // Applies one transfer of the day. Returns false (status() set) on error.
  bool Apply(const Transfer& t) {
    if (t.flags & (tf::kPending | tf::kVoidPendingTransfer)) return true;  // holds move nothing
    if (IsSettlementCode(t.code)) return true;
    if (t.code == kCodeDeliveryAtCapture) {
      // A share at capture (the HTTP API's split), moved out of clearing.
      auto it = by_clearing_.find(t.debit_account_id);
      return it == by_clearing_.end() || Delivery(slots_[it->second], t);
    }
    if (t.code == kCodeDeliveryReturned) {
      // Such a share given back to clearing by a reversal of the capture.
      auto it = by_clearing_.find(t.credit_account_id);
      return it == by_clearing_.end() || Delivery(slots_[it->second], t);
    }
    if (auto it = by_clearing_.find(t.credit_account_id); it != by_clearing_.end()) {
      if (!Capture(slots_[it->second], t)) return false;
    }
    if (auto it = by_clearing_.find(t.debit_account_id); it != by_clearing_.end()) {
      if (!Refund(slots_[it->second], t)) return false;
    }
    return true;
  }

  Status ScanAll() {
    Status s = ledger_.ScanTransfers(ctx_.day.open_ns + 1, ctx_.day.close_ns,
                                     [&](const Transfer& t) { return Apply(t); });
    NARAE_RETURN_IF_ERROR(s);
    return status_;
  }

  // Only the slots' clearing accounts (one merchant).
  Status ScanSlots() {
    for (const Slot& slot : slots_) {
      ledger::AccountFilter f;
      f.account_id = slot.mc->clearing;
      f.timestamp_min = ctx_.day.open_ns + 1;
      f.timestamp_max = ctx_.day.close_ns;
      f.limit = ledger::kQueryLimitMax;
      for (size_t page = 0; page < kEntryPagesMax; ++page) {
        Result<std::vector<ledger::AccountEntry>> r = ledger_.GetAccountEntries(f);
        if (!r.ok()) return r.status();
        for (const ledger::AccountEntry& e : *r) {
          if (e.kind != ledger::AccountEntry::Kind::kTransfer) continue;
          if (!Apply(e.transfer)) return status_;
        }
        if (r->size() < f.limit) break;
        f.timestamp_min = r->back().timestamp + 1;
        if (page + 1 == kEntryPagesMax) return Status::Internal("too many entries in one day");
      }
    }
    return Status::Ok();
  }

  // Fees, shares and payout per slot; checks the identity.
  Status Finish() {
    for (Slot& s : slots_) {
      MerchantSettlement& m = s.ms;
      uint64_t out = m.refunds_minor;
      uint64_t in = m.captures_minor;
      if (!Add(&out, m.fees_minor) || !Add(&out, m.delivery_minor) ||
          !Add(&in, m.delivery_returned_minor)) {
        return Status::Internal("settlement totals overflow for " + m.merchant_id);
      }
      if (in >= out) {
        m.payout_minor = in - out;
      } else {
        m.recovery_minor = out - in;
      }
      NARAE_CHECK(m.payout_minor == 0 || m.recovery_minor == 0);
    }
    return Status::Ok();
  }

  std::vector<Slot>& slots() { return slots_; }
  uint64_t captures_scanned() const { return captures_scanned_; }

 private:
  bool Fail(Status s) {
    status_ = std::move(s);
    return false;
  }

  bool Capture(Slot& s, const Transfer& t) {
    MerchantSettlement& m = s.ms;
    ++captures_scanned_;
    SettlementLine line;
    line.kind = LineKind::kCapture;
    line.transfer = t.id;
    line.payment = (t.flags & tf::kPostPendingTransfer) ? t.pending_id : t.id;
    line.timestamp = t.timestamp;
    line.code = t.code;
    line.user_data_128 = t.user_data_128;
    line.amount_minor = t.amount_minor;
    const FeeSchedule* f = ctx_.fees->Find(m.merchant_id, m.currency, t.timestamp);
    if (f) {
      line.fee_minor = ComputeFee(*f, t.amount_minor);
      line.fee_version = f->version;
      line.fee_merchant = f->merchant_id;
    }
    if (std::optional<std::string> v = ledger_.GetAux(PaymentInfoKey(line.payment))) {
      Result<PaymentInfo> p = DecodePaymentInfo(*v);
      if (!p.ok()) return Fail(p.status());
      uint64_t share = 0;  // kAtCapture: moved by the capture (110), not here
      if (p->split.kind == SplitKind::kFixed) {
        share = p->split.amount_minor;
      } else if (p->split.kind == SplitKind::kDistance) {
        std::optional<uint64_t> b =
            f ? DeliveryShareForDistance(*f, p->split.distance_m) : std::nullopt;
        if (!b) {
          return Fail(Status::FailedPrecondition(
              "no delivery band covers " + std::to_string(p->split.distance_m) +
              " m for merchant " + m.merchant_id + " in currency " + std::to_string(m.currency) +
              " (set one with narae fees set)"));
        }
        share = *b;
      }
      line.delivery_minor = std::min(share, t.amount_minor - line.fee_minor);
      line.order_ref = std::move(p->order_ref);
      line.rrn = std::move(p->rrn);
    }
    // A card payment without order reference or split has no st/p record:
    // its transfer (or its hold's) carries the RRN (authorizer.hpp).
    if (keep_lines_ && line.rrn.empty()) line.rrn = LookupPaymentRrn(ledger_, t);
    if (!Add(&m.captures_minor, t.amount_minor) || !Add(&m.fees_minor, line.fee_minor) ||
        !Add(&m.delivery_minor, line.delivery_minor) || m.captures_count == UINT32_MAX) {
      return Fail(Status::Internal("captures overflow for merchant " + m.merchant_id));
    }
    ++m.captures_count;
    if (keep_lines_) m.lines.push_back(std::move(line));
    return true;
  }

  // A delivery share moved to the logistics office at capture (110: a
  // delivery line, counted in delivery_minor, not paid again by 203) or
  // given back by a reversal of the capture (111: a delivery_return line).
  bool Delivery(Slot& s, const Transfer& t) {
    MerchantSettlement& m = s.ms;
    const bool returned = t.code == kCodeDeliveryReturned;
    if (returned ? !Add(&m.delivery_returned_minor, t.amount_minor)
                 : (!Add(&m.delivery_minor, t.amount_minor) ||
                    !Add(&m.delivery_at_capture_minor, t.amount_minor))) {
      return Fail(Status::Internal("delivery overflow for merchant " + m.merchant_id));
    }
    if (!keep_lines_) return true;
    SettlementLine line;
    line.kind = returned ? LineKind::kDeliveryReturn : LineKind::kDelivery;
    line.transfer = t.id;
    line.payment = TransferId{t.user_data_128};
    line.timestamp = t.timestamp;
    line.code = t.code;
    line.user_data_128 = t.user_data_128;
    line.amount_minor = t.amount_minor;
    line.delivery_minor = t.amount_minor;
    if (std::optional<std::string> v = ledger_.GetAux(PaymentInfoKey(line.payment))) {
      Result<PaymentInfo> p = DecodePaymentInfo(*v);
      if (!p.ok()) return Fail(p.status());
      line.order_ref = std::move(p->order_ref);
      line.rrn = std::move(p->rrn);
    }
    m.lines.push_back(std::move(line));
    return true;
  }

  bool Refund(Slot& s, const Transfer& t) {
    MerchantSettlement& m = s.ms;
    if (!Add(&m.refunds_minor, t.amount_minor) || m.refunds_count == UINT32_MAX) {
      return Fail(Status::Internal("refunds overflow for merchant " + m.merchant_id));
    }
    ++m.refunds_count;
    if (!keep_lines_) return true;
    SettlementLine line;
    line.kind = LineKind::kRefund;
    line.transfer = t.id;
    line.payment = t.id;
    line.timestamp = t.timestamp;
    line.code = t.code;
    line.user_data_128 = t.user_data_128;
    line.amount_minor = t.amount_minor;
    m.lines.push_back(std::move(line));
    return true;
  }

  ledger::Ledger& ledger_;
  const Context& ctx_;
  const bool keep_lines_;
  std::vector<Slot> slots_;
  std::unordered_map<AccountId, size_t, ledger::IdHash> by_clearing_;
  uint64_t captures_scanned_ = 0;
  Status status_;
};

Transfer MakeTransfer(const TransferId& id, const AccountId& dr, const AccountId& cr,
                      uint64_t amount, uint16_t currency, uint16_t code, uint32_t day) {
  Transfer t;
  t.id = id;
  t.debit_account_id = dr;
  t.credit_account_id = cr;
  t.amount_minor = amount;
  t.ledger = currency;
  t.code = code;
  t.user_data_64 = day;
  t.user_data_32 = currency;
  t.flags = tf::kLinked;
  return t;
}

// The batch of one merchant's day (linked; the last one closes the chain).
std::vector<Transfer> BatchOf(const MerchantSettlement& m, const MerchantCurrency& mc,
                              const BankAccounts& bank, uint32_t attempt) {
  std::vector<Transfer> ts;
  auto id = [&](uint8_t sub) {
    return SettlementTransferId(m.day, m.currency, m.merchant_id, attempt, sub);
  };
  if (m.recovery_minor > 0) {
    ts.push_back(MakeTransfer(id(4), mc.settlement, mc.clearing, m.recovery_minor, m.currency,
                              kCodeSettleRecovery, m.day));
  }
  if (m.payout_minor > 0) {
    ts.push_back(MakeTransfer(id(1), mc.clearing, mc.settlement, m.payout_minor, m.currency,
                              kCodeSettlePayout, m.day));
  }
  if (m.fees_minor > 0) {
    ts.push_back(MakeTransfer(id(2), mc.clearing, bank.fee_income, m.fees_minor, m.currency,
                              kCodeSettleFee, m.day));
  }
  NARAE_CHECK(m.delivery_at_capture_minor <= m.delivery_minor);
  const uint64_t delivery_due = m.delivery_minor - m.delivery_at_capture_minor;
  if (delivery_due > 0) {
    ts.push_back(MakeTransfer(id(3), mc.clearing, bank.logistics, delivery_due, m.currency,
                              kCodeSettleDelivery, m.day));
  }
  if (!ts.empty()) ts.back().flags &= static_cast<uint16_t>(~tf::kLinked);
  return ts;
}

enum class BatchResult : uint8_t { kPending, kSettled, kAlready, kFailed };
struct BatchOutcome {
  BatchResult result = BatchResult::kPending;
  std::string stored;  // kAlready: the record
  std::string reason;  // kFailed
  Status status;       // the commit
};

// Runs the Txn of one merchant's day: settles it once.
void SettleInTxn(ledger::Txn& txn, MerchantSettlement& m, const MerchantCurrency& mc,
                 const BankAccounts& bank, size_t index, const SettleOptions& options,
                 BatchOutcome* out) {
  const std::string key = SettledKey(m.day, m.currency, m.merchant_id);
  if (std::optional<std::string> v = txn.GetAux(key)) {
    out->result = BatchResult::kAlready;
    out->stored = std::move(*v);
    return;
  }
  const std::string attempt_key = AttemptKey(m.day, m.currency, m.merchant_id);
  m.attempt = ParseAttempt(txn.GetAux(attempt_key));
  if (m.attempt >= kAttemptsMax) {
    out->result = BatchResult::kFailed;
    out->reason = "too many failed attempts";
    return;
  }
  std::vector<Transfer> ts = BatchOf(m, mc, bank, m.attempt);
  std::vector<ledger::TransferOutcome> outs = txn.CreateTransfers(ts);
  for (size_t i = 0; i < outs.size(); ++i) {
    if (outs[i].result != ledger::CreateTransferResult::kOk &&
        outs[i].result != ledger::CreateTransferResult::kLinkedEventFailed) {
      out->result = BatchResult::kFailed;
      out->reason = std::string("transfer ") + std::to_string(i + 1) + ": " +
                    ledger::ResultName(outs[i].result);
      // The failed ids are remembered by the ledger: the next run uses new ones.
      txn.PutAux(attempt_key, std::to_string(m.attempt + 1));
      return;
    }
  }
  m.transfers.clear();
  for (const Transfer& t : ts) m.transfers.push_back(t.id);
  m.settled_at_ns = txn.now_ns();
  txn.PutAux(key, EncodeMerchantSettlement(m));
  RecordSettlementEvent(txn, m);  // the merchant's settlement.settled event (docs/api.md)
  out->result = BatchResult::kSettled;
  if (options.in_txn_hook) options.in_txn_hook(index);
}

// Submits every slot's Txn (a bounded window in flight) and waits.
Status SubmitAll(ledger::Ledger& ledger, const Context& ctx, std::vector<Slot*>& todo,
                 const SettleOptions& options, std::vector<BatchOutcome>* outcomes) {
  outcomes->assign(todo.size(), BatchOutcome{});
  std::mutex mu;
  std::condition_variable cv;
  size_t in_flight = 0;  // GUARDED_BY(mu)
  Status first_error;
  size_t submitted = 0;
  for (size_t i = 0; i < todo.size(); ++i) {
    Slot* slot = todo[i];
    const BankAccounts* bank = ctx.config.ForCurrency(slot->ms.currency);
    if (!bank) {
      (*outcomes)[i].result = BatchResult::kFailed;
      (*outcomes)[i].reason = "the bank has no accounts in this currency";
      continue;
    }
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < kSettleInFlightMax; });
      ++in_flight;
    }
    BatchOutcome* out = &(*outcomes)[i];
    auto fn = [slot, bank, i, out, &options](ledger::Txn& txn) {
      SettleInTxn(txn, slot->ms, *slot->mc, *bank, i, options, out);
    };
    auto done = [&, out, i](Status s) {
      out->status = s;
      if (s.ok() && options.durable_hook) options.durable_hook(i);
      std::lock_guard<std::mutex> lock(mu);
      --in_flight;
      cv.notify_all();
    };
    Status s;
    for (uint32_t retry = 0; retry < kSubmitRetriesMax; ++retry) {
      s = ledger.Submit(fn, done);
      if (s.code() != StatusCode::kUnavailable) break;
      std::unique_lock<std::mutex> lock(mu);  // queue full: wait for some to finish
      cv.wait_for(lock, std::chrono::milliseconds(1));
    }
    if (!s.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      --in_flight;
      first_error = s;
      break;
    }
    ++submitted;
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return in_flight == 0; });
  return first_error;
}

}  // namespace

Result<SettleSummary> SettleDay(ledger::Ledger& ledger, uint32_t day,
                                const SettleOptions& options) {
  Result<Context> ctx = LoadContext(ledger, day);
  if (!ctx.ok()) return ctx.status();
  DayScanner scanner(ledger, *ctx, options.keep_lines);
  bool found = options.merchant_id.empty();
  for (const Merchant& m : ctx->merchants) {
    if (!options.merchant_id.empty() && m.id != options.merchant_id) continue;
    found = true;
    for (const MerchantCurrency& mc : m.currencies) scanner.AddSlot(m, mc);
  }
  if (!found) return Status::NotFound("merchant " + options.merchant_id + " does not exist");
  NARAE_RETURN_IF_ERROR(options.merchant_id.empty() ? scanner.ScanAll() : scanner.ScanSlots());
  NARAE_RETURN_IF_ERROR(scanner.Finish());

  SettleSummary summary;
  summary.day = day;
  summary.captures_scanned = scanner.captures_scanned();
  std::vector<Slot*> todo;
  for (Slot& s : scanner.slots()) {
    if (s.ms.captures_count == 0 && s.ms.refunds_count == 0) continue;  // nothing to settle
    if (std::optional<std::string> v =
            ledger.GetAux(SettledKey(day, s.ms.currency, s.ms.merchant_id))) {
      Result<MerchantSettlement> r = DecodeMerchantSettlement(*v);
      if (!r.ok()) return r.status();
      summary.already_settled.push_back(std::move(*r));
      continue;
    }
    todo.push_back(&s);
  }
  if (options.dry_run) {
    for (Slot* s : todo) summary.settled.push_back(std::move(s->ms));
    return summary;
  }
  std::vector<BatchOutcome> outcomes;
  Status submit = SubmitAll(ledger, *ctx, todo, options, &outcomes);
  for (size_t i = 0; i < todo.size(); ++i) {
    BatchOutcome& o = outcomes[i];
    MerchantSettlement& m = todo[i]->ms;
    if (!o.status.ok() && o.result != BatchResult::kFailed) {
      if (submit.ok()) submit = o.status;
      continue;
    }
    switch (o.result) {
      case BatchResult::kSettled:
        summary.settled.push_back(std::move(m));
        break;
      case BatchResult::kAlready: {
        Result<MerchantSettlement> r = DecodeMerchantSettlement(o.stored);
        if (!r.ok()) return r.status();
        summary.already_settled.push_back(std::move(*r));
        break;
      }
      case BatchResult::kFailed:
        summary.failed.push_back({m.merchant_id, m.currency, o.reason});
        break;
      case BatchResult::kPending:
        break;  // never submitted (an earlier submission failed)
    }
  }
  NARAE_RETURN_IF_ERROR(submit);
  return summary;
}

Result<MerchantSettlement> ComputeMerchantDay(ledger::Ledger& ledger, uint32_t day,
                                              std::string_view merchant_id, uint16_t currency) {
  Result<Context> ctx = LoadContext(ledger, day);
  if (!ctx.ok()) return ctx.status();
  DayScanner scanner(ledger, *ctx, /*keep_lines=*/true);
  for (const Merchant& m : ctx->merchants) {
    if (m.id != merchant_id) continue;
    for (const MerchantCurrency& mc : m.currencies) {
      if (mc.currency == currency) scanner.AddSlot(m, mc);
    }
  }
  if (scanner.slots().empty()) {
    return Status::NotFound("merchant " + std::string(merchant_id) + " has no account in " +
                            std::to_string(currency));
  }
  NARAE_RETURN_IF_ERROR(scanner.ScanSlots());
  NARAE_RETURN_IF_ERROR(scanner.Finish());
  return std::move(scanner.slots()[0].ms);
}

// ---- Reports ---------------------------------------------------------------------------

namespace {
const char* LineKindName(LineKind k) {
  switch (k) {
    case LineKind::kCapture:
      return "capture";
    case LineKind::kRefund:
      return "refund";
    case LineKind::kDelivery:
      return "delivery";
    case LineKind::kDeliveryReturn:
      return "delivery_return";
  }
  return "unknown";
}

std::string Csv(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::vector<std::pair<std::string, uint64_t>> Totals(const MerchantSettlement& m) {
  return {{"captures_minor", m.captures_minor},
          {"captures_count", m.captures_count},
          {"refunds_minor", m.refunds_minor},
          {"refunds_count", m.refunds_count},
          {"fees_minor", m.fees_minor},
          {"delivery_minor", m.delivery_minor},
          {"delivery_at_capture_minor", m.delivery_at_capture_minor},
          {"delivery_returned_minor", m.delivery_returned_minor},
          {"payout_minor", m.payout_minor},
          {"recovery_minor", m.recovery_minor}};
}
}  // namespace

std::string SettlementReportCsv(const MerchantSettlement& c,
                                const std::optional<MerchantSettlement>& settled) {
  std::string out = "narae-settlement-report,1\n";
  out += "merchant," + Csv(c.merchant_id) + "\ncurrency," + std::to_string(c.currency) + "\nday," +
         std::to_string(c.day) + "\nstatus," + (settled ? "settled" : "not_settled") + "\n";
  out +=
      "type,transfer_id,payment_id,timestamp_ns,code,order_ref,rrn,amount_minor,fee_minor,"
      "fee_schedule,fee_version,delivery_minor\n";
  for (const SettlementLine& l : c.lines) {
    out += std::string(LineKindName(l.kind)) + "," + l.transfer.ToHex() + "," + l.payment.ToHex() +
           "," + std::to_string(l.timestamp) + "," + std::to_string(l.code) + "," +
           Csv(l.order_ref) + "," + Csv(l.rrn) + "," + std::to_string(l.amount_minor) + "," +
           std::to_string(l.fee_minor) + "," + Csv(l.fee_merchant) + "," +
           std::to_string(l.fee_version) + "," + std::to_string(l.delivery_minor) + "\n";
  }
  for (const auto& [name, value] : Totals(c)) {
    out += "total," + name + "," + std::to_string(value) + "\n";
  }
  if (settled) {
    for (const TransferId& t : settled->transfers) out += "settlement_transfer," + t.ToHex() + "\n";
    out += "settled_at_ns," + std::to_string(settled->settled_at_ns) + "\n";
  }
  return out;
}

std::string SettlementReportJson(const MerchantSettlement& c,
                                 const std::optional<MerchantSettlement>& settled) {
  json lines = json::array();
  for (const SettlementLine& l : c.lines) {
    lines.push_back({{"type", LineKindName(l.kind)},
                     {"transfer_id", l.transfer.ToHex()},
                     {"payment_id", l.payment.ToHex()},
                     {"timestamp_ns", l.timestamp},
                     {"code", l.code},
                     {"order_ref", l.order_ref},
                     {"rrn", l.rrn},
                     {"amount_minor", l.amount_minor},
                     {"fee_minor", l.fee_minor},
                     {"fee_schedule", l.fee_merchant},
                     {"fee_version", l.fee_version},
                     {"delivery_minor", l.delivery_minor}});
  }
  json totals = json::object();
  for (const auto& [name, value] : Totals(c)) totals[name] = value;
  json j{{"report", "narae-settlement-report"},
         {"v", 1},
         {"merchant", c.merchant_id},
         {"currency", c.currency},
         {"day", c.day},
         {"status", settled ? "settled" : "not_settled"},
         {"lines", lines},
         {"totals", totals}};
  if (settled) {
    json ids = json::array();
    for (const TransferId& t : settled->transfers) ids.push_back(t.ToHex());
    j["settlement_transfers"] = ids;
    j["settled_at_ns"] = settled->settled_at_ns;
  }
  return j.dump(1) + "\n";
}

// ---- Other banks and interbank netting ------------------------------------------------

namespace {
bool ValidBankId(std::string_view id) {
  if (id.empty() || id.size() > 15) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}
bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}
// Whether the PAN's prefix of the range's length lies in [low, high].
bool InRange(const BinRange& r, std::string_view pan) {
  if (pan.size() < r.low.size()) return false;
  std::string_view p = pan.substr(0, r.low.size());
  return p >= r.low && p <= r.high;
}
bool RangesOverlap(const BinRange& a, const BinRange& b) {
  // Compare on the longer length: pad low with 0s and high with 9s.
  const size_t n = std::max(a.low.size(), b.low.size());
  auto lo = [n](const std::string& s) { return s + std::string(n - s.size(), '0'); };
  auto hi = [n](const std::string& s) { return s + std::string(n - s.size(), '9'); };
  return !(hi(a.high) < lo(b.low) || hi(b.high) < lo(a.low));
}
}  // namespace

std::string EncodeOtherBank(const OtherBank& b) {
  json ranges = json::array();
  for (const BinRange& r : b.bin_ranges) ranges.push_back({{"low", r.low}, {"high", r.high}});
  json accounts = json::array();
  for (const InterbankAccount& a : b.accounts) {
    accounts.push_back({{"currency", a.currency}, {"account", a.account.ToHex()}});
  }
  json out{{"v", 1},
           {"id", b.id},
           {"name", b.name},
           {"bin_ranges", ranges},
           {"sim_issuers", b.sim_issuers},
           {"accounts", accounts}};
  if (!b.stand_in.empty()) {
    json terms = json::array();
    for (const StandInTerms& t : b.stand_in) {
      terms.push_back({{"currency", t.currency},
                       {"daily_max_minor", t.daily_max_minor},
                       {"single_max_minor", t.single_max_minor}});
    }
    out["stand_in"] = terms;
  }
  if (!b.acquirer_id.empty()) out["acquirer_id"] = b.acquirer_id;
  return out.dump();
}

const InterbankAccount* OtherBank::AccountFor(uint16_t currency) const {
  for (const InterbankAccount& a : accounts) {
    if (a.currency == currency) return &a;
  }
  return nullptr;
}

const StandInTerms* OtherBank::StandInFor(uint16_t currency) const {
  for (const StandInTerms& t : stand_in) {
    if (t.currency == currency) return &t;
  }
  return nullptr;
}

// "408:5000000" or "408:5000000:100000" (digits only; nullopt otherwise).
std::optional<StandInTerms> ParseStandIn(std::string_view text) {
  std::vector<uint64_t> parts;
  for (size_t i = 0; i < 3; ++i) {
    const size_t colon = text.find(':');
    Result<uint64_t> v = ParseDigits(text.substr(0, colon));
    if (!v.ok()) return std::nullopt;
    parts.push_back(*v);
    if (colon == std::string_view::npos) break;
    if (i == 2) return std::nullopt;  // more than three parts
    text.remove_prefix(colon + 1);
  }
  if (parts.size() < 2 || parts[0] == 0 || parts[0] > 999) return std::nullopt;
  return StandInTerms{static_cast<uint16_t>(parts[0]), parts[1], parts.size() == 3 ? parts[2] : 0};
}

Result<OtherBank> DecodeOtherBank(std::string_view text) {
  return ParseJson<OtherBank>(text, "bank record", [](const json& j) {
    OtherBank b;
    b.id = j.at("id").get<std::string>();
    b.name = j.at("name").get<std::string>();
    for (const json& r : j.at("bin_ranges")) {
      b.bin_ranges.push_back({r.at("low").get<std::string>(), r.at("high").get<std::string>()});
    }
    b.sim_issuers = j.at("sim_issuers").get<std::vector<std::string>>();
    for (const json& a : j.at("accounts")) {
      std::optional<U128> v = HexId(a.at("account"));
      if (!v) throw std::runtime_error("bad account id");
      b.accounts.push_back({a.at("currency").get<uint16_t>(), AccountId{*v}});
    }
    if (j.contains("stand_in")) {  // absent in records written before stand-in
      for (const json& t : j.at("stand_in")) {
        b.stand_in.push_back({t.at("currency").get<uint16_t>(),
                              t.at("daily_max_minor").get<uint64_t>(),
                              t.at("single_max_minor").get<uint64_t>()});
      }
    }
    if (j.contains("acquirer_id")) b.acquirer_id = j.at("acquirer_id").get<std::string>();
    return b;
  });
}

Result<std::vector<OtherBank>> ListOtherBanks(ledger::Ledger& ledger) {
  std::vector<OtherBank> out;
  Status bad;
  NARAE_RETURN_IF_ERROR(
      ledger.ScanAux(kAuxOtherBankPrefix, [&](std::string_view, std::string_view v) {
        Result<OtherBank> b = DecodeOtherBank(v);
        if (!b.ok()) {
          bad = b.status();
          return false;
        }
        out.push_back(std::move(*b));
        return out.size() <= kOtherBanksMax;
      }));
  NARAE_RETURN_IF_ERROR(bad);
  return out;
}

Result<OtherBank> AddOtherBank(ledger::Ledger& ledger, const OtherBank& request,
                               const std::vector<uint16_t>& currencies) {
  if (!ValidBankId(request.id)) {
    return Status::InvalidArgument("bank id must be 1..15 of A-Z a-z 0-9 _ -");
  }
  if (request.name.size() > kNameBytesMax) return Status::InvalidArgument("name too long");
  if (request.bin_ranges.empty() && request.sim_issuers.empty()) {
    return Status::InvalidArgument("a bank needs a BIN range or a SIM issuer prefix");
  }
  if (request.bin_ranges.size() > kBankRangesMax || request.sim_issuers.size() > kBankRangesMax) {
    return Status::InvalidArgument("at most 64 BIN ranges and 64 SIM issuers");
  }
  if (currencies.empty() || currencies.size() > kMerchantCurrenciesMax) {
    return Status::InvalidArgument("a bank needs 1..8 currencies");
  }
  for (const BinRange& r : request.bin_ranges) {
    if (!AllDigits(r.low) || r.low.size() < 6 || r.low.size() > 11 ||
        r.high.size() != r.low.size() || !AllDigits(r.high) || r.high < r.low) {
      return Status::InvalidArgument("BIN range: 6..11 digits, low <= high, same length");
    }
  }
  for (const std::string& s : request.sim_issuers) {
    if (!AllDigits(s) || s.size() < 2 || s.size() > 8) {
      return Status::InvalidArgument("SIM issuer: a prefix of 2..8 digits");
    }
  }
  if (request.stand_in.size() > currencies.size()) {
    return Status::InvalidArgument("at most one stand-in term per currency");
  }
  for (size_t i = 0; i < request.stand_in.size(); ++i) {
    const StandInTerms& t = request.stand_in[i];
    if (std::find(currencies.begin(), currencies.end(), t.currency) == currencies.end()) {
      return Status::InvalidArgument("stand-in currency " + std::to_string(t.currency) +
                                     " is not one of the bank's currencies");
    }
    for (size_t k = 0; k < i; ++k) {
      if (request.stand_in[k].currency == t.currency) {
        return Status::InvalidArgument("at most one stand-in term per currency");
      }
    }
    if (t.daily_max_minor == 0 || t.single_max_minor > t.daily_max_minor) {
      return Status::InvalidArgument("stand-in: daily maximum > 0 and single <= daily");
    }
  }
  if (!request.acquirer_id.empty() &&
      (!AllDigits(request.acquirer_id) || request.acquirer_id.size() > 11)) {
    return Status::InvalidArgument("acquirer id: 1..11 digits (field 32)");
  }
  Result<BankConfig> cfg = LoadBankConfig(ledger);
  if (!cfg.ok()) return cfg.status();
  Result<std::vector<OtherBank>> banks = ListOtherBanks(ledger);
  if (!banks.ok()) return banks.status();
  if (banks->size() >= kOtherBanksMax) return Status::FailedPrecondition("too many banks");
  if (!request.acquirer_id.empty()) {
    if (request.acquirer_id == cfg->acquirer_id) {
      return Status::InvalidArgument("acquirer id is our own");
    }
    if (const OtherBank* o = FindBankForAcquirer(*banks, request.acquirer_id)) {
      return Status::InvalidArgument("acquirer id " + request.acquirer_id + " is bank " + o->id +
                                     "'s");
    }
  }
  BinRange ours{cfg->bin, cfg->bin};
  for (const BinRange& r : request.bin_ranges) {
    if (RangesOverlap(r, ours)) return Status::InvalidArgument("BIN range overlaps our own BIN");
    for (const OtherBank& b : *banks) {
      if (b.id == request.id) return Status::AlreadyExists("bank " + request.id + " exists");
      for (const BinRange& o : b.bin_ranges) {
        if (RangesOverlap(r, o)) {
          return Status::InvalidArgument("BIN range " + r.low + "-" + r.high + " overlaps bank " +
                                         b.id);
        }
      }
    }
  }
  for (const std::string& s : request.sim_issuers) {
    if (cfg->token_prefix.rfind(s, 0) == 0 || s.rfind(cfg->token_prefix, 0) == 0) {
      return Status::InvalidArgument("SIM issuer overlaps our own token prefix");
    }
    for (const OtherBank& b : *banks) {
      for (const std::string& o : b.sim_issuers) {
        if (o.rfind(s, 0) == 0 || s.rfind(o, 0) == 0) {
          return Status::InvalidArgument("SIM issuer " + s + " overlaps bank " + b.id);
        }
      }
    }
  }
  for (const OtherBank& b : *banks) {
    if (b.id == request.id) return Status::AlreadyExists("bank " + request.id + " exists");
  }
  OtherBank b = request;
  b.accounts.clear();
  std::vector<ledger::Account> accounts;
  for (uint16_t cur : currencies) {
    if (cur == 0 || cur > 999) return Status::InvalidArgument("currency must be ISO 4217 numeric");
    Result<crypto::Bytes> r = crypto::RandomBytes(16);
    if (!r.ok()) return r.status();
    U128 v;
    for (int i = 0; i < 8; ++i) v.hi = (v.hi << 8) | (*r)[i];
    for (int i = 8; i < 16; ++i) v.lo = (v.lo << 8) | (*r)[i];
    v.hi &= 0x7fffffffffffffffull;
    if (v.IsZero()) v.lo = 1;
    ledger::Account a;
    a.id = AccountId{v};
    a.ledger = cur;
    a.code = static_cast<uint16_t>(ledger::AccountCode::kInterbank);
    accounts.push_back(a);
    b.accounts.push_back({cur, a.id});
  }
  Result<std::vector<ledger::AccountOutcome>> made = ledger.CreateAccounts(accounts);
  if (!made.ok()) return made.status();
  for (const ledger::AccountOutcome& o : *made) {
    if (o.result != ledger::CreateAccountResult::kOk) {
      return Status::Internal(std::string("interbank account: ") + ledger::ResultName(o.result));
    }
  }
  NARAE_RETURN_IF_ERROR(
      PutRecord(ledger, std::string(kAuxOtherBankPrefix) + b.id, EncodeOtherBank(b)));
  return b;
}

const OtherBank* FindBankForAcquirer(const std::vector<OtherBank>& banks,
                                     std::string_view field32) {
  if (field32.empty()) return nullptr;
  for (const OtherBank& b : banks) {
    if (b.acquirer_id == field32) return &b;
  }
  return nullptr;
}

const OtherBank* FindBankForPan(const std::vector<OtherBank>& banks, std::string_view pan) {
  for (const OtherBank& b : banks) {
    for (const BinRange& r : b.bin_ranges) {
      if (InRange(r, pan)) return &b;
    }
  }
  return nullptr;
}

const OtherBank* FindBankForSimToken(const std::vector<OtherBank>& banks, std::string_view token) {
  for (const OtherBank& b : banks) {
    for (const std::string& s : b.sim_issuers) {
      if (token.substr(0, s.size()) == s) return &b;
    }
  }
  return nullptr;
}

namespace {

// The day's movements of one interbank account (settlement transfers excluded).
Status AccountDay(ledger::Ledger& ledger, const DayRecord& day, const AccountId& id,
                  InterbankPosition* p) {
  ledger::AccountFilter f;
  f.account_id = id;
  f.timestamp_min = day.open_ns + 1;
  f.timestamp_max = day.close_ns;
  f.limit = ledger::kQueryLimitMax;
  for (size_t page = 0; page < kEntryPagesMax; ++page) {
    Result<std::vector<ledger::AccountEntry>> r = ledger.GetAccountEntries(f);
    if (!r.ok()) return r.status();
    for (const ledger::AccountEntry& e : *r) {
      const Transfer& t = e.transfer;
      if (e.kind != ledger::AccountEntry::Kind::kTransfer) continue;
      if (t.flags & (tf::kPending | tf::kVoidPendingTransfer)) continue;
      if (t.code == kCodeInterbankNet) continue;
      uint64_t* side = t.credit_account_id == id ? &p->due_to_minor : &p->due_from_minor;
      if (!Add(side, t.amount_minor)) return Status::Internal("interbank position overflow");
    }
    if (r->size() < f.limit) return Status::Ok();
    f.timestamp_min = r->back().timestamp + 1;
  }
  return Status::Internal("too many interbank entries in one day");
}

std::string EncodeInterbank(const InterbankSettlement& s) {
  json pos = json::array();
  for (const InterbankPosition& p : s.positions) {
    pos.push_back({{"bank", p.bank_id},
                   {"due_to_minor", p.due_to_minor},
                   {"due_from_minor", p.due_from_minor},
                   {"net_minor", p.net_minor}});
  }
  json ids = json::array();
  for (const TransferId& t : s.transfers) ids.push_back(t.ToHex());
  return json{{"v", 1},           {"day", s.day},     {"currency", s.currency},
              {"positions", pos}, {"transfers", ids}, {"settled_at_ns", s.settled_at_ns}}
      .dump();
}

Result<InterbankSettlement> DecodeInterbank(std::string_view text) {
  return ParseJson<InterbankSettlement>(text, "interbank record", [](const json& j) {
    InterbankSettlement s;
    s.day = j.at("day").get<uint32_t>();
    s.currency = j.at("currency").get<uint16_t>();
    for (const json& p : j.at("positions")) {
      InterbankPosition x;
      x.bank_id = p.at("bank").get<std::string>();
      x.currency = s.currency;
      x.due_to_minor = p.at("due_to_minor").get<uint64_t>();
      x.due_from_minor = p.at("due_from_minor").get<uint64_t>();
      x.net_minor = p.at("net_minor").get<int64_t>();
      s.positions.push_back(std::move(x));
    }
    for (const json& t : j.at("transfers")) {
      std::optional<U128> v = HexId(t);
      if (!v) throw std::runtime_error("bad transfer id");
      s.transfers.push_back(TransferId{*v});
    }
    s.settled_at_ns = j.at("settled_at_ns").get<uint64_t>();
    s.already_settled = true;
    return s;
  });
}

}  // namespace

Result<std::vector<InterbankSettlement>> SettleInterbank(ledger::Ledger& ledger, uint32_t day,
                                                         bool dry_run) {
  Result<DayRecord> d = GetDay(ledger, day);
  if (!d.ok()) return d.status();
  Result<BankConfig> cfg = LoadBankConfig(ledger);
  if (!cfg.ok()) return cfg.status();
  Result<std::vector<OtherBank>> banks = ListOtherBanks(ledger);
  if (!banks.ok()) return banks.status();
  std::vector<uint16_t> currencies;
  for (const OtherBank& b : *banks) {
    for (const InterbankAccount& a : b.accounts) {
      if (std::find(currencies.begin(), currencies.end(), a.currency) == currencies.end()) {
        currencies.push_back(a.currency);
      }
    }
  }
  std::sort(currencies.begin(), currencies.end());
  std::vector<InterbankSettlement> out;
  for (uint16_t cur : currencies) {
    if (std::optional<std::string> v = ledger.GetAux(InterbankKey(day, cur))) {
      Result<InterbankSettlement> s = DecodeInterbank(*v);
      if (!s.ok()) return s.status();
      out.push_back(std::move(*s));
      continue;
    }
    const BankAccounts* ours = cfg->ForCurrency(cur);
    if (!ours)
      return Status::FailedPrecondition("our bank has no accounts in " + std::to_string(cur));
    InterbankSettlement s;
    s.day = day;
    s.currency = cur;
    __int128 sum = 0;
    std::vector<Transfer> ts;
    for (const OtherBank& b : *banks) {
      for (const InterbankAccount& a : b.accounts) {
        if (a.currency != cur) continue;
        InterbankPosition p;
        p.bank_id = b.id;
        p.currency = cur;
        NARAE_RETURN_IF_ERROR(AccountDay(ledger, *d, a.account, &p));
        __int128 net = static_cast<__int128>(p.due_to_minor) - p.due_from_minor;
        if (net > std::numeric_limits<int64_t>::max() ||
            net < -std::numeric_limits<int64_t>::max()) {
          return Status::Internal("interbank net position out of range");
        }
        p.net_minor = static_cast<int64_t>(net);
        sum += net;
        if (net != 0) {
          const uint64_t amount = static_cast<uint64_t>(net > 0 ? net : -net);
          const TransferId id = HashId("narae-interbank/" + std::to_string(day) + "/" +
                                       std::to_string(cur) + "/" + b.id);
          // We owe the bank: its account is debited (cleared) and our central
          // bank account pays; the other way round when it owes us.
          ts.push_back(net > 0 ? MakeTransfer(id, a.account, ours->central_bank, amount, cur,
                                              kCodeInterbankNet, day)
                               : MakeTransfer(id, ours->central_bank, a.account, amount, cur,
                                              kCodeInterbankNet, day));
        }
        s.positions.push_back(std::move(p));
      }
    }
    if (sum > std::numeric_limits<int64_t>::max() || sum < -std::numeric_limits<int64_t>::max()) {
      return Status::Internal("interbank net position out of range");
    }
    InterbankPosition mine;
    mine.bank_id = cfg->bank_id.empty() ? "NARAE" : cfg->bank_id;
    mine.currency = cur;
    mine.net_minor = static_cast<int64_t>(-sum);
    mine.due_from_minor = 0;
    s.positions.push_back(mine);
    if (!ts.empty()) ts.back().flags &= static_cast<uint16_t>(~tf::kLinked);
    for (const Transfer& t : ts) s.transfers.push_back(t.id);
    if (dry_run) {
      out.push_back(std::move(s));
      continue;
    }
    Status st;
    Status ex = ledger.Execute([&](ledger::Txn& txn) {
      if (std::optional<std::string> v = txn.GetAux(InterbankKey(day, cur))) {
        Result<InterbankSettlement> prev = DecodeInterbank(*v);
        if (!prev.ok()) {
          st = prev.status();
          return;
        }
        s = std::move(*prev);
        return;
      }
      std::vector<ledger::TransferOutcome> outs = txn.CreateTransfers(ts);
      for (const ledger::TransferOutcome& o : outs) {
        if (o.result != ledger::CreateTransferResult::kOk) {
          st = Status::FailedPrecondition(std::string("interbank transfer: ") +
                                          ledger::ResultName(o.result));
          return;
        }
      }
      s.settled_at_ns = txn.now_ns();
      txn.PutAux(InterbankKey(day, cur), EncodeInterbank(s));
    });
    NARAE_RETURN_IF_ERROR(ex);
    NARAE_RETURN_IF_ERROR(st);
    out.push_back(std::move(s));
  }
  return out;
}

std::string InterbankInstructionFile(const std::vector<InterbankSettlement>& all,
                                     std::string_view our_bank_id, const DayRecord& day) {
  std::string out = "NARAE-NET-SETTLEMENT,1," + std::string(our_bank_id) + "," +
                    std::to_string(day.day) + "," + day.date + "\n";
  out += "currency,participant,direction,amount_minor\n";
  size_t count = 0;
  unsigned __int128 control = 0;
  for (const InterbankSettlement& s : all) {
    for (const InterbankPosition& p : s.positions) {
      if (p.net_minor == 0) continue;
      const uint64_t amount = p.net_minor > 0 ? static_cast<uint64_t>(p.net_minor)
                                              : static_cast<uint64_t>(-p.net_minor);
      out += Pad(s.currency, 3) + "," + p.bank_id + "," + (p.net_minor > 0 ? "CREDIT" : "DEBIT") +
             "," + std::to_string(amount) + "\n";
      ++count;
      control += amount;
    }
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(control));
  out += "TRAILER," + std::to_string(count) + "," + buf + "\n";
  return out;
}

}  // namespace narae::switching
