// The audit core: time and money formatting, trial balance, statements and
// their writers, detached signatures. See statement.hpp and docs/tools.md.
#include "tools/statement.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

namespace narae::tools {

using ledger::Account;
using ledger::AccountEntry;
using ledger::AccountFilter;
using ledger::AccountId;
using ledger::Ledger;
using ledger::Transfer;
using ledger::TransferId;
namespace af = ledger::account_flags;
namespace tf = ledger::transfer_flags;

// ---- Time ---------------------------------------------------------------------------

namespace {

constexpr int64_t kYearMin = 1970;
constexpr int64_t kYearMax = 2500;  // u64 nanoseconds reach 2554

// Howard Hinnant's civil-date algorithms (proleptic Gregorian, integers only).
int64_t DaysFromCivil(int64_t y, uint32_t m, uint32_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<uint32_t>(y - era * 400);
  const uint32_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const uint32_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t year = 0;
  uint32_t month = 0, day = 0, hour = 0, minute = 0, second = 0, nanos = 0;
};

Civil CivilFromNs(uint64_t ns) {
  Civil c;
  const auto days = static_cast<int64_t>(ns / kNsPerDay);
  uint64_t rest = ns % kNsPerDay;
  c.nanos = static_cast<uint32_t>(rest % kNsPerSecond);
  rest /= kNsPerSecond;
  c.second = static_cast<uint32_t>(rest % 60);
  c.minute = static_cast<uint32_t>(rest / 60 % 60);
  c.hour = static_cast<uint32_t>(rest / 3600);
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<uint32_t>(z - era * 146097);
  const uint32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const uint32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const uint32_t mp = (5 * doy + 2) / 153;
  c.day = doy - (153 * mp + 2) / 5 + 1;
  c.month = mp < 10 ? mp + 3 : mp - 9;
  c.year = static_cast<int64_t>(yoe) + era * 400 + (c.month <= 2 ? 1 : 0);
  return c;
}

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
uint32_t DaysInMonth(int64_t y, uint32_t m) {
  static constexpr std::array<uint32_t, 12> kDays = {31, 28, 31, 30, 31, 30,
                                                     31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// Reads exactly `n` digits at `pos`.
bool Digits(std::string_view s, size_t pos, size_t n, uint32_t* out) {
  if (pos + n > s.size()) return false;
  uint32_t v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + static_cast<uint32_t>(s[i] - '0');
  }
  *out = v;
  return true;
}

// "YYYY-MM-DD" at the start of `s`: days since the epoch.
std::optional<int64_t> ParseDays(std::string_view s) {
  uint32_t y = 0, m = 0, d = 0;
  if (s.size() < 10 || !Digits(s, 0, 4, &y) || s[4] != '-' || !Digits(s, 5, 2, &m) || s[7] != '-' ||
      !Digits(s, 8, 2, &d)) {
    return std::nullopt;
  }
  if (y < kYearMin || y > kYearMax || m < 1 || m > 12 || d < 1 || d > DaysInMonth(y, m)) {
    return std::nullopt;
  }
  return DaysFromCivil(y, m, d);
}

std::optional<uint64_t> ParseUnsigned(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  UInt128 v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return std::nullopt;
    v = v * 10 + static_cast<UInt128>(ch - '0');
  }
  if (v > ~uint64_t{0}) return std::nullopt;
  return static_cast<uint64_t>(v);
}

Status BadTime(std::string_view text) {
  return Status::InvalidArgument("bad time '" + std::string(text) +
                                 "': expected RFC 3339 UTC like 2026-11-28T12:00:00Z, a date "
                                 "YYYY-MM-DD, or unix nanoseconds");
}

}  // namespace

Result<uint64_t> ParseInstant(std::string_view text) {
  if (!text.empty() &&
      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    auto v = ParseUnsigned(text);
    if (!v) return BadTime(text);
    return *v;
  }
  auto days = ParseDays(text);
  uint32_t hh = 0, mm = 0, ss = 0;
  if (!days || text.size() < 20 || (text[10] != 'T' && text[10] != 't') ||
      !Digits(text, 11, 2, &hh) || text[13] != ':' || !Digits(text, 14, 2, &mm) ||
      text[16] != ':' || !Digits(text, 17, 2, &ss) || hh > 23 || mm > 59 || ss > 59) {
    return BadTime(text);
  }
  size_t pos = 19;
  uint64_t nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    size_t digits = 0;
    for (++pos; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos, ++digits) {
      if (digits == 9) return BadTime(text);
      nanos = nanos * 10 + static_cast<uint64_t>(text[pos] - '0');
    }
    if (digits == 0) return BadTime(text);
    for (size_t i = digits; i < 9; ++i) nanos *= 10;
  }
  const std::string_view zone = text.substr(pos);
  if (zone != "Z" && zone != "z" && zone != "+00:00" && zone != "-00:00") {
    return Status::InvalidArgument("bad time '" + std::string(text) +
                                   "': only UTC is accepted (end it with Z)");
  }
  return static_cast<uint64_t>(*days) * kNsPerDay +
         (uint64_t{hh} * 3600 + uint64_t{mm} * 60 + ss) * kNsPerSecond + nanos;
}

Result<uint64_t> ParseDateBound(std::string_view text, bool end_of_day) {
  if (text.size() == 10) {
    auto days = ParseDays(text);
    if (!days) return BadTime(text);
    const uint64_t start = static_cast<uint64_t>(*days) * kNsPerDay;
    return end_of_day ? start + kNsPerDay - 1 : start;
  }
  return ParseInstant(text);
}

std::string FormatDate(uint64_t ns) {
  const Civil c = CivilFromNs(ns);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u", static_cast<long long>(c.year), c.month,
                c.day);
  return buf;
}

std::string FormatDateTime(uint64_t ns) {
  const Civil c = CivilFromNs(ns);
  char buf[48];
  int n = std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02u:%02u:%02u",
                        static_cast<long long>(c.year), c.month, c.day, c.hour, c.minute, c.second);
  if (c.nanos != 0) {
    std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n), ".%09u", c.nanos);
  }
  return std::string(buf) + "Z";
}

std::string FormatYymmdd(uint64_t ns) {
  const Civil c = CivilFromNs(ns);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%02u%02u%02u", static_cast<uint32_t>(c.year % 100), c.month,
                c.day);
  return buf;
}

// ---- Money --------------------------------------------------------------------------

std::optional<Currency> FindCurrency(uint32_t ledger) {
  static constexpr std::array<Currency, 10> kCurrencies = {{
      {408, "KPW", 2},
      {840, "USD", 2},
      {978, "EUR", 2},
      {156, "CNY", 2},
      {643, "RUB", 2},
      {826, "GBP", 2},
      {756, "CHF", 2},
      {344, "HKD", 2},
      {392, "JPY", 0},
      {410, "KRW", 0},
  }};
  for (const Currency& c : kCurrencies) {
    if (c.numeric == ledger) return c;
  }
  return std::nullopt;
}

namespace {
UInt128 Magnitude(Int128 v) {
  return v >= 0 ? static_cast<UInt128>(v) : static_cast<UInt128>(0) - static_cast<UInt128>(v);
}
}  // namespace

std::string UInt128ToString(UInt128 v) {
  if (v == 0) return "0";
  std::string out;
  while (v != 0) {
    out.push_back(static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::string Int128ToString(Int128 v) {
  std::string out;
  if (v < 0) out.push_back('-');
  out += UInt128ToString(Magnitude(v));
  return out;
}

std::string FormatMinor(UInt128 magnitude_minor, uint8_t exponent, char separator) {
  std::string digits = UInt128ToString(magnitude_minor);
  if (exponent == 0) return digits;
  if (digits.size() <= exponent) digits.insert(0, exponent + 1 - digits.size(), '0');
  digits.insert(digits.size() - exponent, 1, separator);
  return digits;
}

std::string FormatSignedMinor(Int128 minor, uint8_t exponent) {
  std::string out;
  if (minor < 0) out.push_back('-');
  out += FormatMinor(Magnitude(minor), exponent);
  return out;
}

// ---- Trial balance ----------------------------------------------------------------

const char* AccountCodeName(uint16_t code) {
  switch (static_cast<ledger::AccountCode>(code)) {
    case ledger::AccountCode::kCustomerDeposit:
      return "customer_deposit";
    case ledger::AccountCode::kMerchantClearing:
      return "merchant_clearing";
    case ledger::AccountCode::kMerchantSettlement:
      return "merchant_settlement";
    case ledger::AccountCode::kFeeIncome:
      return "fee_income";
    case ledger::AccountCode::kLogistics:
      return "logistics";
    case ledger::AccountCode::kInterbank:
      return "interbank";
    case ledger::AccountCode::kCentralBankSettlement:
      return "central_bank_settlement";
    case ledger::AccountCode::kBankCash:
      return "bank_cash";
  }
  return "other";
}

bool TrialBalance::balanced() const {
  return std::all_of(totals.begin(), totals.end(),
                     [](const TrialBalanceTotal& t) { return t.balanced(); });
}

namespace {

struct HoldTrack {
  size_t debit_row = 0;
  size_t credit_row = 0;
  uint64_t amount_minor = 0;
};

class TrialBalanceBuilder {
 public:
  size_t RowFor(uint32_t ledger, uint16_t code) {
    const uint64_t key = (uint64_t{ledger} << 16) | code;
    auto [it, inserted] = row_index_.try_emplace(key, rows_.size());
    if (inserted) rows_.push_back(TrialBalanceRow{ledger, code, 0, 0, 0, 0, 0});
    return it->second;
  }
  TrialBalanceRow& row(size_t i) { return rows_[i]; }

  TrialBalance Finish(std::optional<uint64_t> at_ns, uint64_t replayed) {
    TrialBalance tb;
    tb.at_ns = at_ns;
    tb.transfers_replayed = replayed;
    for (const auto& [key, index] : row_index_) tb.rows.push_back(rows_[index]);  // key order
    std::map<uint32_t, TrialBalanceTotal> totals;
    for (const TrialBalanceRow& r : tb.rows) {
      TrialBalanceTotal& t = totals[r.ledger];
      t.ledger = r.ledger;
      t.accounts += r.accounts;
      t.debits_pending += r.debits_pending;
      t.debits_posted += r.debits_posted;
      t.credits_pending += r.credits_pending;
      t.credits_posted += r.credits_posted;
    }
    for (const auto& [ledger, t] : totals) tb.totals.push_back(t);
    return tb;
  }

 private:
  std::map<uint64_t, size_t> row_index_;  // (ledger, code) -> rows_ index
  std::vector<TrialBalanceRow> rows_;
};

// Applies one transfer (timestamp <= at) to the replayed balances.
Status ReplayTransfer(const Transfer& t, TrialBalanceBuilder& b,
                      const std::unordered_map<AccountId, size_t, ledger::IdHash>& rows,
                      std::unordered_map<TransferId, HoldTrack, ledger::IdHash>& holds) {
  if (t.flags & (tf::kPostPendingTransfer | tf::kVoidPendingTransfer)) {
    auto h = holds.find(t.pending_id);
    if (h == holds.end()) {
      return Status::Corruption("transfer " + t.id.ToHex() + " resolves unknown hold " +
                                t.pending_id.ToHex());
    }
    b.row(h->second.debit_row).debits_pending -= h->second.amount_minor;
    b.row(h->second.credit_row).credits_pending -= h->second.amount_minor;
    if (t.flags & tf::kPostPendingTransfer) {
      b.row(h->second.debit_row).debits_posted += t.amount_minor;
      b.row(h->second.credit_row).credits_posted += t.amount_minor;
    }
    holds.erase(h);
    return Status::Ok();
  }
  auto dr = rows.find(t.debit_account_id);
  auto cr = rows.find(t.credit_account_id);
  if (dr == rows.end() || cr == rows.end()) {
    return Status::Corruption("transfer " + t.id.ToHex() + " names an unknown account");
  }
  if (t.flags & tf::kPending) {
    b.row(dr->second).debits_pending += t.amount_minor;
    b.row(cr->second).credits_pending += t.amount_minor;
    holds[t.id] = HoldTrack{dr->second, cr->second, t.amount_minor};
  } else {
    b.row(dr->second).debits_posted += t.amount_minor;
    b.row(cr->second).credits_posted += t.amount_minor;
  }
  return Status::Ok();
}

}  // namespace

Result<TrialBalance> ComputeTrialBalance(Ledger& ledger, std::optional<uint64_t> at_ns,
                                         const std::function<void(uint64_t)>& progress) {
  TrialBalanceBuilder b;
  std::unordered_map<AccountId, size_t, ledger::IdHash> rows;
  NARAE_RETURN_IF_ERROR(ledger.ScanAccounts([&](const Account& a) {
    const size_t row = b.RowFor(a.ledger, a.code);
    if (at_ns) {
      rows.emplace(a.id, row);
      if (a.timestamp <= *at_ns) b.row(row).accounts++;
      return true;
    }
    TrialBalanceRow& r = b.row(row);
    r.accounts++;
    r.debits_pending += a.debits_pending;
    r.debits_posted += a.debits_posted;
    r.credits_pending += a.credits_pending;
    r.credits_posted += a.credits_posted;
    return true;
  }));
  if (!at_ns) return b.Finish(std::nullopt, 0);

  std::unordered_map<TransferId, HoldTrack, ledger::IdHash> holds;
  uint64_t replayed = 0;
  uint64_t first_ts = 0;
  Status failed;
  NARAE_RETURN_IF_ERROR(ledger.ScanTransfers(0, *at_ns, [&](const Transfer& t) {
    if (replayed == 0) first_ts = t.timestamp;
    ++replayed;
    failed = ReplayTransfer(t, b, rows, holds);
    if (progress && replayed % 4096 == 0 && *at_ns > first_ts) {
      progress(static_cast<uint64_t>(static_cast<UInt128>(t.timestamp - first_ts) * 1000 /
                                     (*at_ns - first_ts)));
    }
    return failed.ok();
  }));
  NARAE_RETURN_IF_ERROR(failed);
  // Holds still open in the replay may have expired before `at` (an expiry
  // is not a transfer): ask the ledger when each was resolved.
  for (const auto& [id, h] : holds) {
    std::optional<ledger::HoldInfo> info = ledger.LookupHold(id);
    if (!info) return Status::Corruption("hold " + id.ToHex() + " not found");
    if (info->state == ledger::HoldState::kPending || info->resolved_at > *at_ns) continue;
    if (info->state != ledger::HoldState::kExpired) {
      return Status::Corruption("hold " + id.ToHex() +
                                " resolved before the time without a transfer");
    }
    b.row(h.debit_row).debits_pending -= h.amount_minor;
    b.row(h.credit_row).credits_pending -= h.amount_minor;
  }
  if (progress) progress(1000);
  return b.Finish(at_ns, replayed);
}

// ---- Statements ---------------------------------------------------------------------

Result<StatementFormat> ParseStatementFormat(std::string_view name) {
  if (name == "camt053" || name == "camt.053") return StatementFormat::kCamt053;
  if (name == "mt940") return StatementFormat::kMt940;
  if (name == "csv") return StatementFormat::kCsv;
  if (name == "json") return StatementFormat::kJson;
  return Status::InvalidArgument("unknown statement format '" + std::string(name) +
                                 "': use camt053, mt940, csv or json");
}

const char* StatementFormatName(StatementFormat format) {
  switch (format) {
    case StatementFormat::kCamt053:
      return "camt053";
    case StatementFormat::kMt940:
      return "mt940";
    case StatementFormat::kCsv:
      return "csv";
    case StatementFormat::kJson:
      return "json";
  }
  return "unknown";
}

namespace {

bool IsCreditNormal(const Account& a) {
  if (a.flags & af::kDebitsMustNotExceedCredits) return true;
  if (a.flags & af::kCreditsMustNotExceedDebits) return false;
  switch (static_cast<ledger::AccountCode>(a.code)) {
    case ledger::AccountCode::kCustomerDeposit:
    case ledger::AccountCode::kMerchantClearing:
    case ledger::AccountCode::kMerchantSettlement:
    case ledger::AccountCode::kFeeIncome:
    case ledger::AccountCode::kLogistics:
      return true;
    default:
      return false;
  }
}

Int128 PostedBalance(bool credit_normal, uint64_t debits_posted, uint64_t credits_posted) {
  const Int128 net = static_cast<Int128>(credits_posted) - static_cast<Int128>(debits_posted);
  return credit_normal ? net : -net;
}

// The booked part of an index row: posted transfers and captures of holds.
// Holds themselves, voids and expiries book nothing.
bool IsBooked(const AccountEntry& e) {
  if (e.kind != AccountEntry::Kind::kTransfer) return false;
  return (e.transfer.flags & (tf::kPending | tf::kVoidPendingTransfer)) == 0;
}

Int128 SignedDelta(bool credit_normal, bool credit, uint64_t amount) {
  const Int128 a = static_cast<Int128>(amount);
  return credit == credit_normal ? a : -a;
}

// Pages through [from, to] of the account's index; `fn` may stop with an error.
Status ForEachEntry(Ledger& ledger, AccountId account, uint64_t from_ns, uint64_t to_ns,
                    const std::function<Status(const AccountEntry&)>& fn) {
  AccountFilter f;
  f.account_id = account;
  f.timestamp_min = from_ns;
  f.timestamp_max = to_ns;
  f.limit = static_cast<uint32_t>(ledger::kQueryLimitMax);
  for (uint64_t pages = 0; pages <= kStatementEntriesMax / 1000 + 1; ++pages) {
    auto page = ledger.GetAccountEntries(f);
    if (!page.ok()) return page.status();
    for (const AccountEntry& e : *page) NARAE_RETURN_IF_ERROR(fn(e));
    if (page->size() < f.limit || page->back().timestamp >= to_ns) return Status::Ok();
    NARAE_CHECK(page->back().timestamp >= f.timestamp_min);
    f.timestamp_min = page->back().timestamp + 1;
  }
  return Status::InvalidArgument("too many entries for one statement");
}

Result<Int128> OpeningBalance(Ledger& ledger, const Account& a, uint64_t from_ns,
                              bool credit_normal) {
  if (from_ns <= 1) return Int128{0};
  if (a.flags & af::kHistory) {
    // History accounts carry the balances after every entry.
    AccountFilter f;
    f.account_id = a.id;
    f.timestamp_min = 1;
    f.timestamp_max = from_ns - 1;
    f.limit = 1;
    f.reversed = true;
    auto last = ledger.GetAccountEntries(f);
    if (!last.ok()) return last.status();
    if (last->empty()) return Int128{0};
    const AccountEntry& e = last->front();
    if (!e.has_balances) return Status::Corruption("history entry without balances");
    return PostedBalance(credit_normal, e.debits_posted, e.credits_posted);
  }
  Int128 balance = 0;
  Status st = ForEachEntry(ledger, a.id, 1, from_ns - 1, [&](const AccountEntry& e) {
    if (IsBooked(e)) {
      balance +=
          SignedDelta(credit_normal, e.transfer.credit_account_id == a.id, e.transfer.amount_minor);
    }
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return balance;
}

}  // namespace

Result<Statement> BuildStatement(Ledger& ledger, const StatementRequest& request,
                                 const std::function<void(uint64_t)>& progress) {
  if (request.account.IsZero() || request.account.IsMax()) {
    return Status::InvalidArgument("account id must not be 0 or all ones");
  }
  if (request.from_ns > request.to_ns) {
    return Status::InvalidArgument("the period starts (--from " + FormatDateTime(request.from_ns) +
                                   ") after it ends (--to " + FormatDateTime(request.to_ns) + ")");
  }
  std::optional<Account> account = ledger.LookupAccount(request.account);
  if (!account) return Status::NotFound("account " + request.account.ToHex() + " not found");
  std::optional<Currency> currency = FindCurrency(account->ledger);
  if (!currency) {
    return Status::InvalidArgument("account ledger " + std::to_string(account->ledger) +
                                   " is not an ISO 4217 currency Narae knows");
  }
  Statement s;
  s.account = account->id;
  s.currency = *currency;
  s.account_code = account->code;
  s.credit_normal = IsCreditNormal(*account);
  s.from_ns = request.from_ns;
  s.to_ns = request.to_ns;
  s.created_ns = request.created_ns;
  auto opening = OpeningBalance(ledger, *account, request.from_ns, s.credit_normal);
  if (!opening.ok()) return opening.status();
  s.opening_minor = *opening;
  Int128 balance = s.opening_minor;
  uint64_t read = 0;
  Status st = ForEachEntry(
      ledger, account->id, request.from_ns, request.to_ns, [&](const AccountEntry& e) -> Status {
        if (++read % 8192 == 0 && progress) progress(read);
        if (IsBooked(e)) {
          if (s.entries.size() >= kStatementEntriesMax) {
            return Status::InvalidArgument("more than " + std::to_string(kStatementEntriesMax) +
                                           " entries: split the period");
          }
          const Transfer& t = e.transfer;
          StatementEntry x;
          x.booking_ns = e.timestamp;
          x.value_ns = e.timestamp;
          x.amount_minor = t.amount_minor;
          x.credit = t.credit_account_id == account->id;
          x.counterparty = x.credit ? t.debit_account_id : t.credit_account_id;
          x.transfer_id = t.id;
          x.order_reference = t.user_data_128;
          x.merchant = t.user_data_64;
          x.transfer_code = t.code;
          if (t.flags & tf::kPostPendingTransfer) {
            x.pending_id = t.pending_id;
            if (t.user_data_128.IsZero() || t.user_data_64 == 0) {
              if (std::optional<Transfer> hold = ledger.LookupTransfer(t.pending_id)) {
                if (x.order_reference.IsZero()) x.order_reference = hold->user_data_128;
                if (x.merchant == 0) x.merchant = hold->user_data_64;
              }
            }
          }
          balance += SignedDelta(s.credit_normal, x.credit, x.amount_minor);
          x.balance_after_minor = balance;
          if (x.credit) {
            s.credit_count++;
            s.credit_sum_minor += x.amount_minor;
          } else {
            s.debit_count++;
            s.debit_sum_minor += x.amount_minor;
          }
          s.entries.push_back(x);
        }
        // The ledger's own record of the balance after each entry must agree.
        if (e.has_balances &&
            PostedBalance(s.credit_normal, e.debits_posted, e.credits_posted) != balance) {
          return Status::Corruption("the balance after the entry at " +
                                    std::to_string(e.timestamp) +
                                    " disagrees with the sum of the entries");
        }
        return Status::Ok();
      });
  if (!st.ok()) return st;
  s.closing_minor = balance;
  NARAE_CHECK(s.opening_minor +
                  static_cast<Int128>(s.credit_normal ? s.credit_sum_minor : s.debit_sum_minor) -
                  static_cast<Int128>(s.credit_normal ? s.debit_sum_minor : s.credit_sum_minor) ==
              s.closing_minor);
  if (progress) progress(read);
  return s;
}

// ---- Writers ------------------------------------------------------------------------

namespace {

// The side a balance is on: credits exceed debits (CRDT / C) or not.
bool CreditSide(const Statement& s, Int128 balance) {
  const Int128 credit_minus_debit = s.credit_normal ? balance : -balance;
  return credit_minus_debit >= 0;
}

std::string XmlEscape(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

constexpr size_t kXmlAmountDigitsMax = 18;  // totalDigits of the camt amount types

Result<std::string> XmlAmount(const Statement& s, UInt128 magnitude) {
  std::string a = FormatMinor(magnitude, s.currency.exponent);
  const size_t digits = a.size() - (s.currency.exponent ? 1 : 0);
  if (digits > kXmlAmountDigitsMax) {
    return Status::InvalidArgument("amount " + a + " has more than 18 digits (camt.053 limit)");
  }
  return a;
}

Status WriteCamtBalance(const Statement& s, std::ostream& out, const char* code, Int128 balance,
                        uint64_t date_ns) {
  auto amount = XmlAmount(s, Magnitude(balance));
  if (!amount.ok()) return amount.status();
  out << "      <Bal>\n        <Tp><CdOrPrtry><Cd>" << code << "</Cd></CdOrPrtry></Tp>\n"
      << "        <Amt Ccy=\"" << s.currency.alpha << "\">" << *amount << "</Amt>\n"
      << "        <CdtDbtInd>" << (CreditSide(s, balance) ? "CRDT" : "DBIT") << "</CdtDbtInd>\n"
      << "        <Dt><Dt>" << FormatDate(date_ns) << "</Dt></Dt>\n      </Bal>\n";
  return Status::Ok();
}

Status WriteCamtSummary(const Statement& s, std::ostream& out) {
  auto total = XmlAmount(s, s.credit_sum_minor + s.debit_sum_minor);
  auto credits = XmlAmount(s, s.credit_sum_minor);
  auto debits = XmlAmount(s, s.debit_sum_minor);
  const bool net_credit = s.credit_sum_minor >= s.debit_sum_minor;
  auto net = XmlAmount(s, net_credit ? s.credit_sum_minor - s.debit_sum_minor
                                     : s.debit_sum_minor - s.credit_sum_minor);
  for (const auto* r : {&total, &credits, &debits, &net}) {
    if (!r->ok()) return r->status();
  }
  out << "      <TxsSummry>\n"
      << "        <TtlNtries><NbOfNtries>" << s.entries.size() << "</NbOfNtries><Sum>" << *total
      << "</Sum><TtlNetNtry><Amt>" << *net << "</Amt><CdtDbtInd>" << (net_credit ? "CRDT" : "DBIT")
      << "</CdtDbtInd></TtlNetNtry></TtlNtries>\n"
      << "        <TtlCdtNtries><NbOfNtries>" << s.credit_count << "</NbOfNtries><Sum>" << *credits
      << "</Sum></TtlCdtNtries>\n"
      << "        <TtlDbtNtries><NbOfNtries>" << s.debit_count << "</NbOfNtries><Sum>" << *debits
      << "</Sum></TtlDbtNtries>\n      </TxsSummry>\n";
  return Status::Ok();
}

Status WriteCamtEntry(const Statement& s, const StatementEntry& e, std::ostream& out) {
  auto amount = XmlAmount(s, e.amount_minor);
  if (!amount.ok()) return amount.status();
  const char* ind = e.credit ? "CRDT" : "DBIT";
  const std::string ccy = s.currency.alpha;
  const std::string id = e.transfer_id.ToHex();
  out << "      <Ntry>\n"
      << "        <Amt Ccy=\"" << ccy << "\">" << *amount << "</Amt>\n"
      << "        <CdtDbtInd>" << ind << "</CdtDbtInd>\n"
      << "        <Sts><Cd>BOOK</Cd></Sts>\n"
      << "        <BookgDt><DtTm>" << FormatDateTime(e.booking_ns) << "</DtTm></BookgDt>\n"
      << "        <ValDt><Dt>" << FormatDate(e.value_ns) << "</Dt></ValDt>\n"
      << "        <AcctSvcrRef>" << id << "</AcctSvcrRef>\n"
      << "        <BkTxCd><Prtry><Cd>NARAE-" << e.transfer_code
      << "</Cd><Issr>NARAE</Issr></Prtry></BkTxCd>\n"
      << "        <NtryDtls><TxDtls>\n"
      << "          <Refs><AcctSvcrRef>" << id << "</AcctSvcrRef><EndToEndId>"
      << (e.order_reference.IsZero() ? std::string("NOTPROVIDED") : e.order_reference.ToHex())
      << "</EndToEndId>";
  if (!e.pending_id.IsZero()) out << "<TxId>" << e.pending_id.ToHex() << "</TxId>";
  if (e.merchant != 0) {
    out << "<Prtry><Tp>MERCHANT</Tp><Ref>" << e.merchant << "</Ref></Prtry>";
  }
  out << "</Refs>\n"
      << "          <Amt Ccy=\"" << ccy << "\">" << *amount << "</Amt><CdtDbtInd>" << ind
      << "</CdtDbtInd>\n"
      << "          <RltdPties><" << (e.credit ? "DbtrAcct" : "CdtrAcct") << "><Id><Othr><Id>"
      << XmlEscape(e.counterparty.ToHex()) << "</Id></Othr></Id></"
      << (e.credit ? "DbtrAcct" : "CdtrAcct") << "></RltdPties>\n"
      << "        </TxDtls></NtryDtls>\n      </Ntry>\n";
  return Status::Ok();
}

Status WriteCamt053(const Statement& s, std::ostream& out) {
  const std::string account = s.account.ToHex();
  std::string stmt_id = "S";
  stmt_id += FormatDate(s.from_ns);
  stmt_id += FormatDate(s.to_ns);
  stmt_id += account.substr(account.size() - 12);
  std::string compact_id;  // Max35Text: S + 8 + 8 + 12 characters
  for (char c : stmt_id) {
    if (c != '-') compact_id += c;
  }
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.053.001.08\">\n"
      << "  <BkToCstmrStmt>\n"
      << "    <GrpHdr><MsgId>NARAE" << s.created_ns << "</MsgId><CreDtTm>"
      << FormatDateTime(s.created_ns) << "</CreDtTm></GrpHdr>\n"
      << "    <Stmt>\n"
      << "      <Id>" << compact_id << "</Id>\n"
      << "      <CreDtTm>" << FormatDateTime(s.created_ns) << "</CreDtTm>\n"
      << "      <FrToDt><FrDtTm>" << FormatDateTime(s.from_ns) << "</FrDtTm><ToDtTm>"
      << FormatDateTime(s.to_ns) << "</ToDtTm></FrToDt>\n"
      << "      <Acct><Id><Othr><Id>" << account << "</Id></Othr></Id><Ccy>" << s.currency.alpha
      << "</Ccy></Acct>\n";
  NARAE_RETURN_IF_ERROR(WriteCamtBalance(s, out, "OPBD", s.opening_minor, s.from_ns));
  NARAE_RETURN_IF_ERROR(WriteCamtBalance(s, out, "CLBD", s.closing_minor, s.to_ns));
  NARAE_RETURN_IF_ERROR(WriteCamtSummary(s, out));
  for (const StatementEntry& e : s.entries) NARAE_RETURN_IF_ERROR(WriteCamtEntry(s, e, out));
  out << "    </Stmt>\n  </BkToCstmrStmt>\n</Document>\n";
  return Status::Ok();
}

// MT940 amounts: 15 characters at most, comma decimal mark, "100," when the
// currency has no minor unit.
constexpr size_t kMt940AmountCharsMax = 15;

Result<std::string> Mt940Amount(const Statement& s, UInt128 magnitude) {
  std::string a = FormatMinor(magnitude, s.currency.exponent, ',');
  if (s.currency.exponent == 0) a += ',';
  if (a.size() > kMt940AmountCharsMax) {
    return Status::InvalidArgument("amount " + a + " is longer than MT940's 15 characters");
  }
  return a;
}

Status WriteMt940Balance(const Statement& s, std::ostream& out, const char* tag, Int128 balance,
                         uint64_t date_ns) {
  auto amount = Mt940Amount(s, Magnitude(balance));
  if (!amount.ok()) return amount.status();
  out << tag << (CreditSide(s, balance) ? 'C' : 'D') << FormatYymmdd(date_ns) << s.currency.alpha
      << *amount << "\r\n";
  return Status::Ok();
}

Status WriteMt940(const Statement& s, std::ostream& out) {
  const std::string account = s.account.ToHex();
  // :20: 16x: "NARAE" + the period's first day (YYMMDD) + 5 more characters.
  out << ":20:NARAE" << FormatYymmdd(s.from_ns) << account.substr(account.size() - 5) << "\r\n"
      << ":25:" << account << "\r\n"
      << ":28C:1/1\r\n";
  NARAE_RETURN_IF_ERROR(WriteMt940Balance(s, out, ":60F:", s.opening_minor, s.from_ns));
  for (const StatementEntry& e : s.entries) {
    auto amount = Mt940Amount(s, e.amount_minor);
    if (!amount.ok()) return amount.status();
    const std::string booking = FormatYymmdd(e.booking_ns);
    const std::string id = e.transfer_id.ToHex();
    const std::string owner_ref =
        e.order_reference.IsZero() ? std::string("NONREF") : e.order_reference.ToHex().substr(16);
    out << ":61:" << FormatYymmdd(e.value_ns) << booking.substr(2) << (e.credit ? 'C' : 'D')
        << *amount << "NTRF" << owner_ref << "//" << id.substr(16) << "\r\n"
        << ":86:/TRID/" << id << "\r\n/CPTY/" << e.counterparty.ToHex() << "\r\n";
    if (!e.order_reference.IsZero()) out << "/ORDR/" << e.order_reference.ToHex() << "\r\n";
    if (e.merchant != 0) out << "/MRCH/" << e.merchant << "\r\n";
    if (!e.pending_id.IsZero()) out << "/HOLD/" << e.pending_id.ToHex() << "\r\n";
  }
  NARAE_RETURN_IF_ERROR(WriteMt940Balance(s, out, ":62F:", s.closing_minor, s.to_ns));
  out << "-\r\n";
  return Status::Ok();
}

void WriteCsv(const Statement& s, std::ostream& out) {
  const uint8_t ex = s.currency.exponent;
  out << "record,booking_date,value_date,timestamp_ns,direction,amount,amount_minor,currency,"
         "balance,balance_minor,counterparty,transfer_id,pending_id,order_reference,merchant,"
         "transfer_code\r\n";
  auto balance_row = [&](const char* record, uint64_t ns, Int128 balance) {
    out << record << ',' << FormatDate(ns) << ',' << FormatDate(ns) << ',' << ns << ",,,,"
        << s.currency.alpha << ',' << FormatSignedMinor(balance, ex) << ','
        << Int128ToString(balance) << ",,,,,,\r\n";
  };
  balance_row("opening", s.from_ns, s.opening_minor);
  for (const StatementEntry& e : s.entries) {
    out << "entry," << FormatDate(e.booking_ns) << ',' << FormatDate(e.value_ns) << ','
        << e.booking_ns << ',' << (e.credit ? "credit" : "debit") << ','
        << FormatMinor(e.amount_minor, ex) << ',' << e.amount_minor << ',' << s.currency.alpha
        << ',' << FormatSignedMinor(e.balance_after_minor, ex) << ','
        << Int128ToString(e.balance_after_minor) << ',' << CsvField(e.counterparty.ToHex()) << ','
        << e.transfer_id.ToHex() << ',' << (e.pending_id.IsZero() ? "" : e.pending_id.ToHex())
        << ',' << (e.order_reference.IsZero() ? "" : e.order_reference.ToHex()) << ','
        << (e.merchant ? std::to_string(e.merchant) : "") << ',' << e.transfer_code << "\r\n";
  }
  balance_row("closing", s.to_ns, s.closing_minor);
}

void WriteJson(const Statement& s, std::ostream& out) {
  const uint8_t ex = s.currency.exponent;
  nlohmann::ordered_json head = {
      {"format", "narae-statement-1"},
      {"account", s.account.ToHex()},
      {"currency", s.currency.alpha},
      {"ledger", s.currency.numeric},
      {"exponent", s.currency.exponent},
      {"account_code", s.account_code},
      {"sign_convention", s.credit_normal ? "credits_minus_debits" : "debits_minus_credits"},
      {"from", FormatDateTime(s.from_ns)},
      {"to", FormatDateTime(s.to_ns)},
      {"from_ns", s.from_ns},
      {"to_ns", s.to_ns},
      {"created", FormatDateTime(s.created_ns)},
      {"opening_balance", FormatSignedMinor(s.opening_minor, ex)},
      {"opening_balance_minor", Int128ToString(s.opening_minor)},
      {"closing_balance", FormatSignedMinor(s.closing_minor, ex)},
      {"closing_balance_minor", Int128ToString(s.closing_minor)},
      {"credit_count", s.credit_count},
      {"credit_sum_minor", UInt128ToString(s.credit_sum_minor)},
      {"debit_count", s.debit_count},
      {"debit_sum_minor", UInt128ToString(s.debit_sum_minor)},
  };
  std::string text = head.dump();
  text.pop_back();  // the closing brace: entries follow
  out << text << ",\"entries\":[";
  bool first = true;
  for (const StatementEntry& e : s.entries) {
    nlohmann::ordered_json j = {
        {"booking_date", FormatDate(e.booking_ns)},
        {"booking_time", FormatDateTime(e.booking_ns)},
        {"value_date", FormatDate(e.value_ns)},
        {"timestamp_ns", e.booking_ns},
        {"direction", e.credit ? "credit" : "debit"},
        {"amount", FormatMinor(e.amount_minor, ex)},
        {"amount_minor", e.amount_minor},
        {"counterparty", e.counterparty.ToHex()},
        {"transfer_id", e.transfer_id.ToHex()},
        {"pending_id", e.pending_id.IsZero() ? nlohmann::ordered_json()
                                             : nlohmann::ordered_json(e.pending_id.ToHex())},
        {"order_reference", e.order_reference.IsZero()
                                ? nlohmann::ordered_json()
                                : nlohmann::ordered_json(e.order_reference.ToHex())},
        {"merchant", e.merchant},
        {"transfer_code", e.transfer_code},
        {"balance_after", FormatSignedMinor(e.balance_after_minor, ex)},
        {"balance_after_minor", Int128ToString(e.balance_after_minor)},
    };
    out << (first ? "\n" : ",\n") << j.dump();
    first = false;
  }
  out << "\n]}\n";
}

}  // namespace

std::string CsvField(std::string_view text) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

Status WriteStatement(const Statement& s, StatementFormat format, std::ostream& out) {
  Status st;
  switch (format) {
    case StatementFormat::kCamt053:
      st = WriteCamt053(s, out);
      break;
    case StatementFormat::kMt940:
      st = WriteMt940(s, out);
      break;
    case StatementFormat::kCsv:
      WriteCsv(s, out);
      break;
    case StatementFormat::kJson:
      WriteJson(s, out);
      break;
  }
  NARAE_RETURN_IF_ERROR(st);
  if (!out) return Status::IOError("writing the statement failed");
  return Status::Ok();
}

// ---- Signatures ---------------------------------------------------------------------

namespace {

constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
// PKCS#8 (RFC 8410) wrapping of a 32-byte Ed25519 seed.
constexpr std::array<uint8_t, 16> kPkcs8Ed25519Prefix = {
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
constexpr std::string_view kPemPrivateBegin = "-----BEGIN PRIVATE KEY-----";
constexpr std::string_view kPemPrivateEnd = "-----END PRIVATE KEY-----";
constexpr uint64_t kKeyFileBytesMax = 4096;

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

Status WriteNewFile(const std::string& path, std::string_view data, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return errno == EEXIST ? Status::AlreadyExists(path + " already exists")
                           : Status::IOError("cannot create " + path + ": " + std::strerror(errno));
  }
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return Status::IOError("cannot write " + path);
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  if (::close(fd) != 0 || !synced) return Status::IOError("cannot write " + path);
  return Status::Ok();
}

}  // namespace

std::string Base64Encode(crypto::ByteView bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = uint32_t{bytes[i]} << 16;
    if (i + 1 < bytes.size()) v |= uint32_t{bytes[i + 1]} << 8;
    if (i + 2 < bytes.size()) v |= bytes[i + 2];
    out += kBase64Alphabet[(v >> 18) & 63];
    out += kBase64Alphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kBase64Alphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kBase64Alphabet[v & 63] : '=';
  }
  return out;
}

Result<crypto::Bytes> Base64Decode(std::string_view text) {
  crypto::Bytes out;
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const size_t v = kBase64Alphabet.find(c);
    if (v == std::string_view::npos || padding > 0) return Status::InvalidArgument("not base64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  if (padding > 2) return Status::InvalidArgument("not base64");
  return out;
}

Result<std::string> ReadFile(const std::string& path, uint64_t bytes_max) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open " + path);
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) return Status::IOError("cannot read " + path);
  if (static_cast<uint64_t>(size) > bytes_max) {
    return Status::InvalidArgument(path + " is larger than " + std::to_string(bytes_max) +
                                   " bytes");
  }
  in.seekg(0);
  std::string data(static_cast<size_t>(size), '\0');
  if (!in.read(data.data(), size)) return Status::IOError("cannot read " + path);
  return data;
}

Result<crypto::SecretBytes> LoadSigningKey(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Status::NotFound("key file " + path + " not found");
  if (st.st_mode & 077) {
    return Status::PermissionDenied("key file " + path +
                                    " is readable by group or others: chmod 600 it");
  }
  auto text = ReadFile(path, kKeyFileBytesMax);
  if (!text.ok()) return text.status();
  struct Wipe {
    std::string* s;
    ~Wipe() { OPENSSL_cleanse(s->data(), s->size()); }
  } wipe{&*text};
  const size_t begin = text->find(kPemPrivateBegin);
  if (begin != std::string::npos) {
    const size_t body = begin + kPemPrivateBegin.size();
    const size_t end = text->find(kPemPrivateEnd, body);
    if (end == std::string::npos) return Status::InvalidArgument(path + ": truncated PEM");
    auto der = Base64Decode(std::string_view(*text).substr(body, end - body));
    if (!der.ok()) return Status::InvalidArgument(path + ": bad PEM body");
    crypto::SecretBytes seed;
    if (der->size() == kPkcs8Ed25519Prefix.size() + 32 &&
        std::equal(kPkcs8Ed25519Prefix.begin(), kPkcs8Ed25519Prefix.end(), der->begin())) {
      seed = crypto::SecretBytes(crypto::ByteView(der->data() + kPkcs8Ed25519Prefix.size(), 32));
    }
    OPENSSL_cleanse(der->data(), der->size());
    if (seed.empty()) return Status::InvalidArgument(path + ": not an Ed25519 PKCS#8 private key");
    return seed;
  }
  std::string hex = Trim(*text);
  auto seed = crypto::SecretFromHex(hex);
  OPENSSL_cleanse(hex.data(), hex.size());
  if (!seed.ok() || seed->size() != 32) {
    return Status::InvalidArgument(path +
                                   ": expected a PEM private key or 64 hex digits (Ed25519 seed)");
  }
  return std::move(seed).value();
}

Status GenerateSigningKeyPair(const std::string& private_path, const std::string& public_path) {
  if (private_path == public_path) return Status::InvalidArgument("the two key files must differ");
  struct stat st {};
  if (::stat(public_path.c_str(), &st) == 0) {
    return Status::AlreadyExists(public_path + " already exists");
  }
  auto seed = crypto::Ed25519GeneratePrivate();
  if (!seed.ok()) return seed.status();
  auto pub = crypto::Ed25519PublicKey(*seed);
  if (!pub.ok()) return pub.status();
  auto pem = crypto::Ed25519PublicToPem(*pub);
  if (!pem.ok()) return pem.status();
  crypto::Bytes der(kPkcs8Ed25519Prefix.begin(), kPkcs8Ed25519Prefix.end());
  der.insert(der.end(), seed->data(), seed->data() + seed->size());
  std::string private_pem = std::string(kPemPrivateBegin) + "\n" + Base64Encode(der) + "\n" +
                            std::string(kPemPrivateEnd) + "\n";
  OPENSSL_cleanse(der.data(), der.size());
  Status written = WriteNewFile(private_path, private_pem, 0600);
  OPENSSL_cleanse(private_pem.data(), private_pem.size());
  NARAE_RETURN_IF_ERROR(written);
  return WriteNewFile(public_path, *pem, 0644);
}

namespace {

Status SignFileWith(const std::string& file,
                    const std::function<Result<crypto::Bytes>(crypto::ByteView)>& sign,
                    const std::string& signature_path) {
  auto data = ReadFile(file, kSignedFileBytesMax);
  if (!data.ok()) return data.status();
  auto sig = sign(crypto::ByteView(reinterpret_cast<const uint8_t*>(data->data()), data->size()));
  if (!sig.ok()) return sig.status();
  if (sig->size() != 64) return Status::Internal("Ed25519 signature is not 64 bytes");
  std::ofstream out(signature_path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(sig->data()), static_cast<std::streamsize>(sig->size()));
  out.close();
  if (!out) return Status::IOError("cannot write " + signature_path);
  return Status::Ok();
}

}  // namespace

Status SignFile(const std::string& file, const crypto::SecretBytes& seed,
                const std::string& signature_path) {
  return SignFileWith(
      file, [&](crypto::ByteView m) { return crypto::Ed25519Sign(seed, m); }, signature_path);
}

Status SignFileWithKeyStore(const std::string& file, const crypto::KeyStore& store,
                            const std::string& key_id, const std::string& signature_path) {
  return SignFileWith(
      file, [&](crypto::ByteView m) { return store.SignStatement(key_id, m); }, signature_path);
}

Status ExportKeyStorePublicKey(const crypto::KeyStore& store, const std::string& key_id,
                               const std::string& public_path) {
  auto seed = store.Use(key_id, crypto::KeyType::kStatementSigning);
  if (!seed.ok()) return seed.status();
  auto pub = crypto::Ed25519PublicKey(*seed);
  if (!pub.ok()) return pub.status();
  auto pem = crypto::Ed25519PublicToPem(*pub);
  if (!pem.ok()) return pem.status();
  return WriteNewFile(public_path, *pem, 0644);
}

Status VerifyFileSignature(const std::string& file, const std::string& signature_path,
                           const std::string& public_key_path) {
  auto pem = ReadFile(public_key_path, kKeyFileBytesMax);
  if (!pem.ok()) return pem.status();
  auto pub = crypto::Ed25519PublicFromPem(*pem);
  if (!pub.ok()) {
    return Status::InvalidArgument(public_key_path + ": " + pub.status().message());
  }
  auto sig_text = ReadFile(signature_path, kKeyFileBytesMax);
  if (!sig_text.ok()) return sig_text.status();
  crypto::Bytes sig;
  if (sig_text->size() == 64) {
    sig.assign(sig_text->begin(), sig_text->end());
  } else {
    auto decoded = Base64Decode(*sig_text);
    if (!decoded.ok() || decoded->size() != 64) {
      return Status::InvalidArgument(signature_path +
                                     ": expected a 64-byte Ed25519 signature (raw or base64)");
    }
    sig = std::move(decoded).value();
  }
  auto data = ReadFile(file, kSignedFileBytesMax);
  if (!data.ok()) return data.status();
  return crypto::Ed25519Verify(
      *pub, crypto::ByteView(reinterpret_cast<const uint8_t*>(data->data()), data->size()), sig);
}

}  // namespace narae::tools
