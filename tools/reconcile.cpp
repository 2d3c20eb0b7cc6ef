// The reconciliation core (see reconcile.hpp and docs/tools.md).
//
// Cost sketch for n payments: the switch-log scan decodes every au/x record
// (one allocation each); the ledger scan keeps ~48 bytes per payment
// transfer and per post/void; the file costs its bytes plus ~100 bytes a
// row. Matching sorts three index vectors and does O(log n) searches.
#include "tools/reconcile.hpp"

#include <algorithm>
#include <deque>
#include <nlohmann/json.hpp>
#include <thread>

#include "switch/authorizer.hpp"
#include "switch/settlement.hpp"
#include "tools/statement.hpp"

namespace narae::tools {
namespace reconcile_internal {

using ledger::TransferId;
using ledger::U128;
using switching::RequestKind;
using switching::RequestRecord;

constexpr uint64_t kProgressEvery = 4096;
constexpr uint64_t kRrnBase = 36;
constexpr size_t kRrnChars = 12;
constexpr uint32_t kAmountDigitsMax = 19;

// `unit` is "line" (CSV) or "element" (JSON).
Status RowError(uint64_t line, const std::string& what, const char* unit = "line") {
  return Status::InvalidArgument(std::string(unit) + " " + std::to_string(line) + ": " + what);
}

int RrnDigit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'A' && ch <= 'Z') return ch - 'A' + 10;
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 10;
  return -1;
}

// ---- File fields ----------------------------------------------------------------

std::optional<uint16_t> ParseCurrencyCode(std::string_view text) {
  if (text.size() != 3) return std::nullopt;
  if (std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    const uint16_t n =
        static_cast<uint16_t>((text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0'));
    if (n == 0) return std::nullopt;
    return n;
  }
  // The currencies FindCurrency knows, by alphabetic code (built once).
  static const std::vector<std::pair<std::string, uint16_t>> kAlpha = [] {
    std::vector<std::pair<std::string, uint16_t>> v;
    for (uint16_t n = 1; n < 1000; ++n) {
      if (std::optional<Currency> c = FindCurrency(n)) v.emplace_back(c->alpha, n);
    }
    return v;
  }();
  char upper[3];
  for (size_t i = 0; i < 3; ++i) {
    upper[i] = static_cast<char>(text[i] >= 'a' && text[i] <= 'z' ? text[i] - 32 : text[i]);
  }
  for (const auto& [alpha, n] : kAlpha) {
    if (std::string_view(upper, 3) == alpha) return n;
  }
  return std::nullopt;
}

std::optional<uint64_t> ParseMinorDigits(std::string_view text) {
  if (text.empty() || text.size() > kAmountDigitsMax + 1) return std::nullopt;
  unsigned __int128 v = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(ch - '0');
  }
  if (v > ~uint64_t{0}) return std::nullopt;
  return static_cast<uint64_t>(v);
}

// "12.34" in a currency with `exponent` minor digits -> 1234. Exact.
std::optional<uint64_t> ParseDecimalAmount(std::string_view text, uint8_t exponent) {
  const size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  if (whole.empty() || frac.size() > exponent) return std::nullopt;
  if (dot != std::string_view::npos && frac.empty()) return std::nullopt;
  std::string digits(whole);
  digits.append(frac);
  digits.append(exponent - frac.size(), '0');
  return ParseMinorDigits(digits);
}

std::optional<uint32_t> ParseDay(std::string_view text) {
  Result<uint64_t> ns = ParseDateBound(text, false);
  if (!ns.ok()) return std::nullopt;
  return static_cast<uint32_t>(*ns / kNsPerDay);
}

// The named fields of one row, before checking.
struct RawRow {
  std::string_view order_ref, rrn, payment_id, amount, amount_minor, currency, date;
  bool has_amount = false, has_amount_minor = false;
};

Result<FileRow> CheckRow(const RawRow& raw, uint64_t line, const char* unit) {
  auto RowError = [unit](uint64_t n, const std::string& what) {
    return reconcile_internal::RowError(n, what, unit);
  };
  FileRow row;
  row.line = line;
  if (raw.order_ref.size() > kReconcileOrderRefBytesMax)
    return RowError(line, "order_ref too long");
  row.order_ref = std::string(raw.order_ref);
  if (raw.rrn.empty() && raw.payment_id.empty()) return RowError(line, "no rrn and no payment_id");
  if (!raw.rrn.empty()) {
    if (!RrnToNumber(raw.rrn)) return RowError(line, "rrn is not 12 letters or digits");
    row.rrn = RrnFromNumber(*RrnToNumber(raw.rrn));
  }
  if (!raw.payment_id.empty()) {
    std::optional<U128> id = U128::Parse(raw.payment_id, false);
    if (!id || id->IsZero()) return RowError(line, "payment_id is not 1..32 hex digits");
    row.payment_id = TransferId{*id};
  }
  std::optional<uint16_t> currency = ParseCurrencyCode(raw.currency);
  if (!currency) return RowError(line, "unknown currency '" + std::string(raw.currency) + "'");
  row.currency = *currency;
  std::optional<uint64_t> amount;
  if (raw.has_amount_minor && !raw.amount_minor.empty()) {
    amount = ParseMinorDigits(raw.amount_minor);
  } else if (raw.has_amount && !raw.amount.empty()) {
    std::optional<Currency> c = FindCurrency(row.currency);
    amount = ParseDecimalAmount(raw.amount, c ? c->exponent : 0);
  } else {
    return RowError(line, "no amount");
  }
  if (!amount) return RowError(line, "bad amount");
  row.amount_minor = *amount;
  std::optional<uint32_t> day = ParseDay(raw.date);
  if (!day) return RowError(line, "bad date '" + std::string(raw.date) + "'");
  row.day = *day;
  return row;
}

// ---- CSV --------------------------------------------------------------------------

// Splits one line into fields (RFC 4180 quoting; no line breaks inside).
// `storage` keeps unquoted copies of quoted fields.
bool SplitCsv(std::string_view line, std::vector<std::string_view>* fields,
              std::deque<std::string>* storage) {
  fields->clear();
  storage->clear();
  size_t pos = 0;
  while (true) {
    if (pos < line.size() && line[pos] == '"') {
      std::string value;
      ++pos;
      while (true) {
        if (pos >= line.size()) return false;  // unterminated quote
        if (line[pos] == '"') {
          if (pos + 1 < line.size() && line[pos + 1] == '"') {
            value.push_back('"');
            pos += 2;
            continue;
          }
          ++pos;
          break;
        }
        value.push_back(line[pos++]);
      }
      storage->push_back(std::move(value));
      fields->push_back(storage->back());
      if (pos < line.size() && line[pos] != ',') return false;
    } else {
      const size_t comma = line.find(',', pos);
      const size_t end = comma == std::string_view::npos ? line.size() : comma;
      std::string_view f = line.substr(pos, end - pos);
      if (f.find('"') != std::string_view::npos) return false;
      fields->push_back(f);
      pos = end;
    }
    if (pos >= line.size()) return true;
    ++pos;  // the comma
    if (pos == line.size()) {
      fields->push_back(std::string_view());
      return true;
    }
  }
}

struct CsvColumns {
  int order_ref = -1, rrn = -1, payment_id = -1, amount = -1, amount_minor = -1, currency = -1,
      date = -1;
};

Result<CsvColumns> ParseHeader(const std::vector<std::string_view>& names) {
  CsvColumns c;
  for (size_t i = 0; i < names.size(); ++i) {
    std::string n(names[i]);
    for (char& ch : n) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    int* slot = n == "order_ref" || n == "order_reference" ? &c.order_ref
                : n == "rrn"                               ? &c.rrn
                : n == "payment_id"                        ? &c.payment_id
                : n == "amount"                            ? &c.amount
                : n == "amount_minor"                      ? &c.amount_minor
                : n == "currency"                          ? &c.currency
                : n == "date"                              ? &c.date
                                                           : nullptr;
    if (!slot) continue;  // other columns are ignored
    if (*slot >= 0) return RowError(1, "column '" + n + "' appears twice");
    *slot = static_cast<int>(i);
  }
  if (c.rrn < 0 && c.payment_id < 0) return RowError(1, "header names neither rrn nor payment_id");
  if (c.amount < 0 && c.amount_minor < 0) return RowError(1, "header names no amount");
  if (c.currency < 0) return RowError(1, "header names no currency");
  if (c.date < 0) return RowError(1, "header names no date");
  return c;
}

Result<std::vector<FileRow>> ParseCsv(std::string_view text) {
  std::vector<FileRow> rows;
  std::vector<std::string_view> fields;
  std::deque<std::string> storage;  // stable addresses: fields view them
  std::optional<CsvColumns> cols;
  size_t ncols = 0;
  uint64_t line_no = 0;
  size_t pos = 0;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") pos = 3;  // UTF-8 byte order mark
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    const size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kReconcileLineBytesMax) return RowError(line_no, "line too long");
    if (line.empty()) continue;
    if (!SplitCsv(line, &fields, &storage)) return RowError(line_no, "bad CSV quoting");
    if (!cols) {
      Result<CsvColumns> c = ParseHeader(fields);
      if (!c.ok()) return c.status();
      cols = *c;
      ncols = fields.size();
      continue;
    }
    if (fields.size() != ncols) {
      return RowError(line_no, std::to_string(fields.size()) + " fields, the header has " +
                                   std::to_string(ncols));
    }
    if (rows.size() >= kReconcileRowsMax) return RowError(line_no, "too many rows");
    auto get = [&](int i) { return i < 0 ? std::string_view() : fields[static_cast<size_t>(i)]; };
    RawRow raw;
    raw.order_ref = get(cols->order_ref);
    raw.rrn = get(cols->rrn);
    raw.payment_id = get(cols->payment_id);
    raw.amount = get(cols->amount);
    raw.amount_minor = get(cols->amount_minor);
    raw.has_amount = cols->amount >= 0;
    raw.has_amount_minor = cols->amount_minor >= 0;
    raw.currency = get(cols->currency);
    raw.date = get(cols->date);
    Result<FileRow> row = CheckRow(raw, line_no, "line");
    if (!row.ok()) return row.status();
    rows.push_back(std::move(*row));
  }
  if (!cols) return Status::InvalidArgument("the file has no header row");
  return rows;
}

// ---- JSON -------------------------------------------------------------------------

Result<std::vector<FileRow>> ParseJson(std::string_view text) {
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded()) return Status::InvalidArgument("the file is not valid JSON");
  const nlohmann::json* array = &doc;
  if (doc.is_object() && doc.contains("rows")) array = &doc["rows"];
  if (!array->is_array()) return Status::InvalidArgument("expected an array of rows");
  if (array->size() > kReconcileRowsMax) return Status::InvalidArgument("too many rows");
  std::vector<FileRow> rows;
  rows.reserve(array->size());
  uint64_t index = 0;
  for (const nlohmann::json& e : *array) {
    ++index;
    if (!e.is_object()) return RowError(index, "not an object", "element");
    std::string minor_text;
    auto str = [&](const char* key, std::string_view* out) -> bool {
      auto it = e.find(key);
      if (it == e.end() || it->is_null()) return true;
      if (!it->is_string()) return false;
      *out = it->get_ref<const std::string&>();
      return true;
    };
    RawRow raw;
    if (!str("order_ref", &raw.order_ref) || !str("rrn", &raw.rrn) ||
        !str("payment_id", &raw.payment_id) || !str("currency", &raw.currency) ||
        !str("date", &raw.date)) {
      return RowError(index, "order_ref, rrn, payment_id, currency and date must be strings",
                      "element");
    }
    if (auto it = e.find("amount"); it != e.end()) {
      if (!it->is_string())
        return RowError(index, "amount must be a string (\"12.34\")", "element");
      raw.amount = it->get_ref<const std::string&>();
      raw.has_amount = true;
    }
    if (auto it = e.find("amount_minor"); it != e.end()) {
      if (it->is_number_unsigned()) {
        minor_text = std::to_string(it->get<uint64_t>());
      } else if (it->is_string()) {
        minor_text = it->get<std::string>();
      } else {
        return RowError(index, "amount_minor must be a non-negative integer", "element");
      }
      raw.amount_minor = minor_text;
      raw.has_amount_minor = true;
    }
    Result<FileRow> row = CheckRow(raw, index, "element");
    if (!row.ok()) return row.status();
    rows.push_back(std::move(*row));
  }
  return rows;
}

// ---- Reconciliation ------------------------------------------------------------------

struct Payment {
  uint64_t rrn = 0;
  TransferId transfer;  // the current hold / the purchase
  TransferId original;  // the first hold (RequestTransferId(key, 1))
  RequestKind kind = RequestKind::kPurchase;
  uint16_t currency = 0;
  uint64_t amount_minor = 0;
  uint64_t captured_minor = 0;
};

struct LedgerPayment {
  TransferId id;
  uint64_t amount_minor = 0;
  uint64_t timestamp = 0;
  uint32_t timeout_s = 0;
  uint32_t ledger = 0;
  uint16_t code = 0;
};

struct Resolution {  // a post or void of a hold
  TransferId pending_id;
  uint64_t amount_minor = 0;
  uint64_t timestamp = 0;
  bool voided = false;
};

template <typename T, typename K>
const T* FindById(const std::vector<T>& v, const K& key, K T::*member) {
  auto it = std::lower_bound(v.begin(), v.end(), key,
                             [member](const T& a, const K& k) { return a.*member < k; });
  if (it == v.end() || !((*it).*member == key)) return nullptr;
  return &*it;
}

struct SwitchLog {
  std::vector<Payment> payments;                       // approved holds and purchases of day D
  std::vector<std::pair<uint64_t, uint8_t>> declined;  // RRN -> response code, day D
  std::vector<TransferId> known;                       // every transfer id the switch made
  uint64_t scanned = 0;
};

Result<SwitchLog> ScanSwitchLog(ledger::Ledger& ledger, uint32_t day,
                                const ReconcileProgress& progress) {
  SwitchLog log;
  Status bad = Status::Ok();
  Status st = ledger.ScanAux(switching::kRequestRecordPrefix, [&](std::string_view key,
                                                                  std::string_view value) {
    if (++log.scanned % kProgressEvery == 1 && progress) progress("switch log", log.scanned);
    std::optional<RequestRecord> r = switching::ParseRequestRecord(value);
    if (!r) {
      bad = Status::Corruption("unreadable switch record " + std::string(key));
      return false;
    }
    const bool payment = r->kind == RequestKind::kHold || r->kind == RequestKind::kPurchase;
    if (r->kind == RequestKind::kReversal) {
      log.known.push_back(switching::RequestTransferId(key, 2));  // a partial reversal's new hold
    }
    if (!payment) return true;
    std::optional<uint64_t> rrn = RrnToNumber(r->rrn);
    if (r->response_code != 0) {
      if (r->day == day && rrn) log.declined.emplace_back(*rrn, r->response_code);
      return true;
    }
    const TransferId original = switching::RequestTransferId(key, 1);
    log.known.push_back(original);
    if (!(r->transfer == original)) log.known.push_back(r->transfer);
    if (r->day != day) return true;
    Payment p;
    p.rrn = rrn.value_or(0);
    p.transfer = r->transfer;
    p.original = original;
    p.kind = r->kind;
    p.currency = r->currency;
    p.amount_minor = r->amount_minor;
    p.captured_minor = r->captured_minor;
    log.payments.push_back(p);
    return true;
  });
  if (!st.ok()) return st;
  if (!bad.ok()) return bad;
  std::sort(log.known.begin(), log.known.end());
  std::sort(log.declined.begin(), log.declined.end());
  return log;
}

struct LedgerView {
  std::vector<LedgerPayment> payments;  // sorted by id
  std::vector<Resolution> resolutions;  // sorted by pending id
};

Result<LedgerView> ScanLedger(ledger::Ledger& ledger, uint64_t from_ns,
                              const ReconcileProgress& progress) {
  namespace tf = ledger::transfer_flags;
  LedgerView view;
  uint64_t n = 0;
  Status st = ledger.ScanTransfers(from_ns, ~uint64_t{0}, [&](const ledger::Transfer& t) {
    if (++n % kProgressEvery == 0 && progress) progress("ledger", n);
    if (t.flags & (tf::kPostPendingTransfer | tf::kVoidPendingTransfer)) {
      view.resolutions.push_back(
          {t.pending_id, t.amount_minor, t.timestamp, (t.flags & tf::kVoidPendingTransfer) != 0});
    } else if (t.code == switching::kTransferCodeHold ||
               t.code == switching::kTransferCodePurchase ||
               t.code == switching::kTransferCodeInterbankPayment) {
      view.payments.push_back({t.id, t.amount_minor, t.timestamp, t.timeout_s, t.ledger, t.code});
    }
    return true;
  });
  if (!st.ok()) return st;
  auto by_id = [](const LedgerPayment& a, const LedgerPayment& b) { return a.id < b.id; };
  std::sort(view.payments.begin(), view.payments.end(), by_id);
  std::stable_sort(
      view.resolutions.begin(), view.resolutions.end(),
      [](const Resolution& a, const Resolution& b) { return a.pending_id < b.pending_id; });
  return view;
}

// The file rows of the day, indexed by RRN and by payment id.
struct FileIndex {
  std::vector<std::pair<uint64_t, uint32_t>> by_rrn;   // (rrn, row)
  std::vector<std::pair<TransferId, uint32_t>> by_id;  // (payment id, row)
  std::vector<uint32_t> rows;                          // rows of day D
  std::vector<bool> used;                              // by row index
};

FileIndex IndexFile(const std::vector<FileRow>& file, uint32_t day) {
  FileIndex ix;
  ix.used.assign(file.size(), false);
  for (uint32_t i = 0; i < file.size(); ++i) {
    const FileRow& r = file[i];
    if (r.day != day) continue;
    ix.rows.push_back(i);
    if (!r.rrn.empty()) ix.by_rrn.emplace_back(*RrnToNumber(r.rrn), i);
    if (!r.payment_id.IsZero()) ix.by_id.emplace_back(r.payment_id, i);
  }
  std::sort(ix.by_rrn.begin(), ix.by_rrn.end());
  std::sort(ix.by_id.begin(), ix.by_id.end());
  return ix;
}

// Rows naming a payment (its RRN, or one of its transfer ids), unused yet,
// in file order.
void RowsFor(FileIndex& ix, uint64_t rrn, std::initializer_list<TransferId> ids,
             std::vector<uint32_t>* out) {
  out->clear();
  if (rrn != 0) {
    auto it = std::lower_bound(ix.by_rrn.begin(), ix.by_rrn.end(), std::make_pair(rrn, 0u));
    for (; it != ix.by_rrn.end() && it->first == rrn; ++it) {
      if (!ix.used[it->second]) out->push_back(it->second);
    }
  }
  for (const TransferId& id : ids) {
    if (id.IsZero()) continue;
    auto it = std::lower_bound(ix.by_id.begin(), ix.by_id.end(), std::make_pair(id, 0u));
    for (; it != ix.by_id.end() && it->first == id; ++it) {
      if (!ix.used[it->second]) out->push_back(it->second);
    }
  }
  std::sort(out->begin(), out->end());
  out->erase(std::unique(out->begin(), out->end()), out->end());
  for (uint32_t r : *out) ix.used[r] = true;
}

// A payment's delivery share moved at capture (its PaymentInfo's split of
// kind kAtCapture, switch/settlement.hpp).
struct Share {
  uint64_t share_minor = 0;
  uint64_t moved_minor = 0;
};

// The shares of `payments` (aligned with them; nullopt: none at capture),
// one point read each (usually a bloom filter miss), on two threads.
Result<std::vector<std::optional<Share>>> ReadShares(
    ledger::Ledger& ledger, const std::vector<reconcile_internal::Payment>& payments) {
  std::vector<std::optional<Share>> out(payments.size());
  Status errors[2] = {Status::Ok(), Status::Ok()};
  auto read = [&](size_t part) {
    const size_t from = payments.size() * part / 2, to = payments.size() * (part + 1) / 2;
    for (size_t i = from; i < to; ++i) {
      std::optional<std::string> v = ledger.GetAux(switching::PaymentInfoKey(payments[i].transfer));
      if (!v) continue;
      Result<switching::PaymentInfo> info = switching::DecodePaymentInfo(*v);
      if (!info.ok()) {
        errors[part] =
            Status::Corruption("unreadable payment info of " + payments[i].transfer.ToHex() + ": " +
                               info.status().message());
        return;
      }
      if (info->split.kind == switching::SplitKind::kAtCapture) {
        out[i] = Share{info->split.amount_minor, info->split.moved_minor};
      }
    }
  };
  std::thread second([&] { read(1); });
  read(0);
  second.join();
  for (const Status& e : errors) {
    if (!e.ok()) return e;
  }
  return out;
}

class Matcher {
 public:
  Matcher(const ReconcileRequest& req, const std::vector<FileRow>& file, ReconcileReport* report)
      : req_(req), file_(file), report_(report) {}

  void MatchPayment(const reconcile_internal::Payment& p, const std::optional<Share>& share,
                    const LedgerView& lv, FileIndex& ix);
  void LedgerOnly(const LedgerPayment& l, FileIndex& ix);
  void FileOnly(FileIndex& ix, const SwitchLog& log);

 private:
  ReconcileBreak Break(BreakClass cls, const std::string& detail) {
    ReconcileBreak b;
    b.cls = cls;
    b.detail = detail;
    return b;
  }
  void Add(ReconcileBreak b) {
    report_->by_class[static_cast<size_t>(b.cls)].Add(b.currency, b.amount_minor());
    report_->breaks.push_back(std::move(b));
  }
  void FromRow(ReconcileBreak* b, uint32_t row) const {
    const FileRow& r = file_[row];
    b->file_line = r.line;
    b->order_ref = r.order_ref;
    b->file_minor = r.amount_minor;
    if (b->rrn.empty()) b->rrn = r.rrn;
    if (b->payment_id.IsZero()) b->payment_id = r.payment_id;
    if (b->currency == 0) b->currency = r.currency;
  }

  const ReconcileRequest& req_;
  const std::vector<FileRow>& file_;
  ReconcileReport* report_;
  std::vector<uint32_t> rows_;
};

void Matcher::MatchPayment(const reconcile_internal::Payment& p, const std::optional<Share>& share,
                           const LedgerView& lv, FileIndex& ix) {
  const uint64_t day_end_ns = (uint64_t{req_.day} + 1) * kNsPerDay;
  std::vector<ReconcileBreak> found;
  auto make = [&](BreakClass cls, const std::string& detail) {
    ReconcileBreak b = Break(cls, detail);
    b.rrn = p.rrn != 0 ? RrnFromNumber(p.rrn) : "";
    b.payment_id = p.transfer;
    b.currency = p.currency;
    b.switch_minor = p.kind == RequestKind::kHold ? p.amount_minor : p.captured_minor;
    return b;
  };
  const LedgerPayment* l = FindById(lv.payments, p.transfer, &LedgerPayment::id);
  uint64_t settled = p.captured_minor;  // the switch's view when the ledger has none
  bool stale = false;
  if (!l) {
    found.push_back(
        make(BreakClass::kMissingInLedger, "approved by the switch, no ledger transfer"));
  } else {
    const bool hold = p.kind == RequestKind::kHold;
    if (l->ledger != p.currency) {
      ReconcileBreak b = make(BreakClass::kCurrencyMismatch, "switch and ledger currencies differ");
      b.detail += " (ledger " + std::to_string(l->ledger) + ")";
      found.push_back(std::move(b));
    }
    if (!hold && l->amount_minor != p.amount_minor) {
      ReconcileBreak b = make(BreakClass::kAmountMismatch, "switch and ledger amounts differ");
      b.switch_minor = p.amount_minor;
      b.ledger_minor = l->amount_minor;
      found.push_back(std::move(b));
    }
    if (hold) {
      settled = 0;
      const Resolution* r = FindById(lv.resolutions, l->id, &Resolution::pending_id);
      if (r && !r->voided) {
        settled = r->amount_minor == 0 ? l->amount_minor : r->amount_minor;
        if (settled != p.captured_minor) {
          ReconcileBreak b = make(BreakClass::kAmountMismatch, "switch and ledger captures differ");
          b.switch_minor = p.captured_minor;
          b.ledger_minor = settled;
          found.push_back(std::move(b));
        }
        if (r->timestamp >= day_end_ns) {
          ReconcileBreak b =
              make(BreakClass::kLatePresentment, "captured " + FormatDateTime(r->timestamp));
          b.ledger_minor = settled;
          found.push_back(std::move(b));
        }
      } else if (!r) {
        const uint64_t expires_ns = l->timestamp + uint64_t{l->timeout_s} * kNsPerSecond;
        if (l->timeout_s == 0 || expires_ns > req_.now_ns) {
          stale = true;
          ReconcileBreak b = make(BreakClass::kStaleHold, "authorized, never captured");
          if (l->timeout_s != 0) b.detail += ", expires " + FormatDateTime(expires_ns);
          found.push_back(std::move(b));
        }
      }
    }
  }
  if (l && !stale && share) {
    const uint64_t due = std::min(share->share_minor, p.captured_minor);
    if (share->moved_minor != due) {
      ReconcileBreak b =
          make(BreakClass::kDeliveryShareNotMoved,
               "delivery share " + std::to_string(share->share_minor) + ": due " +
                   std::to_string(due) + ", moved " + std::to_string(share->moved_minor));
      b.switch_minor = due;
      b.ledger_minor = share->moved_minor;
      found.push_back(std::move(b));
    }
  }
  RowsFor(ix, p.rrn, {p.transfer, p.original}, &rows_);
  if (!rows_.empty()) {  // the file row, for context, on the breaks found so far
    for (ReconcileBreak& b : found) FromRow(&b, rows_[0]);
  }
  if (rows_.empty()) {
    if (settled > 0 && !stale && l) {
      ReconcileBreak b = make(BreakClass::kMissingInFile, "settled, not in the file");
      b.ledger_minor = settled;
      found.push_back(std::move(b));
    }
  } else {
    const FileRow& f = file_[rows_[0]];
    if (f.currency != p.currency) {
      ReconcileBreak b = make(BreakClass::kCurrencyMismatch, "file and switch currencies differ");
      FromRow(&b, rows_[0]);
      b.detail += " (file " + std::to_string(f.currency) + ")";
      found.push_back(std::move(b));
    } else if (f.amount_minor != settled) {
      ReconcileBreak b = make(BreakClass::kAmountMismatch, "file amount differs from the settled");
      FromRow(&b, rows_[0]);
      b.ledger_minor = settled;
      found.push_back(std::move(b));
    }
    for (size_t i = 1; i < rows_.size(); ++i) {
      ReconcileBreak b =
          make(BreakClass::kDuplicate, "names the same payment as line " + std::to_string(f.line));
      FromRow(&b, rows_[i]);
      found.push_back(std::move(b));
    }
  }
  if (found.empty()) {
    if (settled == 0 && rows_.empty()) {
      report_->released.Add(p.currency, 0);
    } else {
      report_->matched.Add(p.currency, settled);
    }
    return;
  }
  report_->unmatched.Add(p.currency, found.front().amount_minor());
  for (ReconcileBreak& b : found) Add(std::move(b));
}

void Matcher::LedgerOnly(const LedgerPayment& l, FileIndex& ix) {
  ReconcileBreak b =
      Break(BreakClass::kMissingInSwitchLog, "a ledger payment the switch never logged");
  b.payment_id = l.id;
  b.currency = static_cast<uint16_t>(l.ledger);
  b.ledger_minor = l.amount_minor;
  RowsFor(ix, 0, {l.id}, &rows_);
  if (!rows_.empty()) FromRow(&b, rows_[0]);
  report_->unmatched.Add(b.currency, b.amount_minor());
  Add(std::move(b));
  for (size_t i = 1; i < rows_.size(); ++i) {
    ReconcileBreak d = Break(BreakClass::kDuplicate, "names the same payment as line " +
                                                         std::to_string(file_[rows_[0]].line));
    d.payment_id = l.id;
    FromRow(&d, rows_[i]);
    Add(std::move(d));
  }
}

void Matcher::FileOnly(FileIndex& ix, const SwitchLog& log) {
  // Rows naming the same unknown payment: the first is missing, the rest duplicates.
  std::vector<std::pair<std::string, uint32_t>> left;
  for (uint32_t row : ix.rows) {
    if (ix.used[row]) continue;
    const FileRow& r = file_[row];
    std::string key(1, r.rrn.empty() ? 'p' : 'r');  // GCC 12: no "x" + string (-Wrestrict)
    key.append(r.rrn.empty() ? r.payment_id.ToHex() : r.rrn);
    left.emplace_back(std::move(key), row);
  }
  std::stable_sort(left.begin(), left.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < left.size(); ++i) {
    const uint32_t row = left[i].second;
    const FileRow& r = file_[row];
    if (i > 0 && left[i - 1].first == left[i].first) {
      ReconcileBreak d = Break(BreakClass::kDuplicate, "repeats an unknown payment");
      FromRow(&d, row);
      Add(std::move(d));
      continue;
    }
    ReconcileBreak b =
        Break(BreakClass::kMissingInSwitchLog, "not in the switch log or the ledger");
    std::optional<uint64_t> rrn = r.rrn.empty() ? std::nullopt : RrnToNumber(r.rrn);
    if (rrn) {
      auto it = std::lower_bound(log.declined.begin(), log.declined.end(),
                                 std::make_pair(*rrn, uint8_t{0}));
      if (it != log.declined.end() && it->first == *rrn) {
        b.cls = BreakClass::kMissingInLedger;
        b.detail = "the switch declined it (response " + std::to_string(it->second) + ")";
      }
    }
    FromRow(&b, row);
    report_->unmatched.Add(b.currency, b.amount_minor());
    Add(std::move(b));
  }
}

}  // namespace reconcile_internal

// ---- Public ------------------------------------------------------------------------

const char* BreakClassName(BreakClass c) {
  switch (c) {
    case BreakClass::kMissingInLedger:
      return "missing_in_ledger";
    case BreakClass::kMissingInSwitchLog:
      return "missing_in_switch_log";
    case BreakClass::kMissingInFile:
      return "missing_in_file";
    case BreakClass::kAmountMismatch:
      return "amount_mismatch";
    case BreakClass::kCurrencyMismatch:
      return "currency_mismatch";
    case BreakClass::kDuplicate:
      return "duplicate";
    case BreakClass::kLatePresentment:
      return "late_presentment";
    case BreakClass::kStaleHold:
      return "stale_hold";
    case BreakClass::kDeliveryShareNotMoved:
      return "delivery_share_not_moved";
  }
  return "unknown";
}

Result<ReconcileFileFormat> ParseReconcileFileFormat(std::string_view name) {
  if (name == "csv") return ReconcileFileFormat::kCsv;
  if (name == "json") return ReconcileFileFormat::kJson;
  return Status::InvalidArgument("unknown file format '" + std::string(name) + "' (csv or json)");
}

std::optional<uint64_t> RrnToNumber(std::string_view rrn) {
  if (rrn.size() != reconcile_internal::kRrnChars) return std::nullopt;
  uint64_t n = 0;
  for (char ch : rrn) {
    const int d = reconcile_internal::RrnDigit(ch);
    if (d < 0) return std::nullopt;
    n = n * reconcile_internal::kRrnBase + static_cast<uint64_t>(d);  // 36^12 < 2^63
  }
  return n;
}

std::string RrnFromNumber(uint64_t n) {
  static constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::string s(reconcile_internal::kRrnChars, '0');
  for (size_t i = s.size(); i-- > 0;) {
    s[i] = kDigits[n % reconcile_internal::kRrnBase];
    n /= reconcile_internal::kRrnBase;
  }
  return s;
}

Result<std::vector<FileRow>> ParseReconcileFile(std::string_view text, ReconcileFileFormat format) {
  if (format == ReconcileFileFormat::kJson) return reconcile_internal::ParseJson(text);
  return reconcile_internal::ParseCsv(text);
}

Result<std::vector<FileRow>> ReadReconcileFile(const std::string& path,
                                               ReconcileFileFormat format) {
  Result<std::string> text = ReadFile(path, kReconcileFileBytesMax);
  if (!text.ok()) return text.status();
  Result<std::vector<FileRow>> rows = ParseReconcileFile(*text, format);
  if (!rows.ok()) return Status::InvalidArgument(path + ": " + rows.status().message());
  return rows;
}

Result<ReconcileReport> Reconcile(ledger::Ledger& ledger, const ReconcileRequest& request,
                                  const std::vector<FileRow>& file,
                                  const ReconcileProgress& progress) {
  using namespace reconcile_internal;  // NOLINT: this file's internals
  const uint64_t day_start_ns = uint64_t{request.day} * kNsPerDay;
  if (day_start_ns > request.now_ns) {
    return Status::InvalidArgument("day " + FormatDate(day_start_ns) + " has not begun");
  }
  if (file.size() > kReconcileRowsMax) return Status::InvalidArgument("too many file rows");
  const uint64_t from_ns =
      day_start_ns > kReconcileDayGraceNs ? day_start_ns - kReconcileDayGraceNs : 0;
  // The two scans are independent reads: the ledger's on a second thread.
  std::optional<Result<LedgerView>> lv;
  std::thread ledger_scan([&] { lv = ScanLedger(ledger, from_ns, {}); });
  Result<SwitchLog> log = ScanSwitchLog(ledger, request.day, progress);
  ledger_scan.join();
  if (!log.ok()) return log.status();
  if (!lv->ok()) return lv->status();
  // Matching in transfer-id order walks the ledger's sorted vectors in order.
  std::sort(log->payments.begin(), log->payments.end(),
            [](const Payment& a, const Payment& b) { return a.transfer < b.transfer; });

  ReconcileReport report;
  report.day = request.day;
  report.switch_records_scanned = log->scanned;
  report.switch_payments = log->payments.size();
  FileIndex ix = IndexFile(file, request.day);
  report.file_rows = ix.rows.size();
  report.file_rows_other_days = file.size() - ix.rows.size();

  Result<std::vector<std::optional<Share>>> shares = ReadShares(ledger, log->payments);
  if (!shares.ok()) return shares.status();
  Matcher m(request, file, &report);
  for (size_t i = 0; i < log->payments.size(); ++i) {
    if ((i + 1) % kProgressEvery == 1 && progress) progress("matching", i + 1);
    m.MatchPayment(log->payments[i], (*shares)[i], **lv, ix);
  }
  const uint64_t day_end_ns = day_start_ns + kNsPerDay;
  for (const LedgerPayment& l : (*lv)->payments) {
    if (l.timestamp < day_start_ns || l.timestamp >= day_end_ns) continue;
    report.ledger_payments++;
    if (std::binary_search(log->known.begin(), log->known.end(), l.id)) continue;
    m.LedgerOnly(l, ix);
  }
  m.FileOnly(ix, *log);
  return report;
}

}  // namespace narae::tools
