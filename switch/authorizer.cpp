// The authorization engine (see authorizer.hpp and docs/authorization.md).
//
// Cost sketch per request: on the I/O thread a cache lookup or two (shared
// lock), the credential crypto (one 3DES/CMAC family operation each) and
// one Submit; on the ledger's sequencer thread two aux reads (Txn::GetAux,
// mostly from the ledger's overlay of groups not yet durable), one
// CreateTransfers, three aux writes; on the ledger's acknowledging thread the ARPC/MAC (when
// used) and the reply.
#include "switch/authorizer.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "crypto/crypto.hpp"
#include "switch/bank.hpp"
#include "switch/settlement.hpp"

namespace narae::switching {
namespace {

using ledger::AccountId;
using ledger::TransferId;
using ledger::U128;
using RC = ResponseCode;
namespace tf = ledger::transfer_flags;

constexpr std::string_view kAuxTxnPrefix = "au/x/";
constexpr std::string_view kAuxRrnPrefix = "au/r/";
constexpr uint16_t kCodeHold = 101;
constexpr uint16_t kCodePurchase = 102;
constexpr uint16_t kCodeRefund = 103;
constexpr uint16_t kCodeReversal = 104;
constexpr size_t kTlvElementsMax = 64;
constexpr size_t kField48ElementsMax = 32;
constexpr size_t kPanBytesMax = 19;    // field 2, LLVAR n..19
constexpr uint8_t kRecordVersion = 2;  // 1: without the trailing original key
constexpr size_t kCredKeyBytesMax = 255;
constexpr size_t kPinBlockedTrackedMax = 65536;
constexpr int64_t kMsPerDay = 86'400'000;
constexpr int64_t kMsPerMinute = 60'000;
// A payment transfer's user_data_128.hi: a tag in the top byte, the RRN (as
// a number) below it. 2^56 microseconds reach the year 4253. 'R': the
// payment has no st/p record (PaymentInfo); 'P': it has one.
constexpr uint64_t kRrnNumberMax = (uint64_t{1} << 56) - 1;
constexpr uint64_t kRrnOnlyTag = uint64_t{'R'} << 56;
constexpr uint64_t kRrnWithInfoTag = uint64_t{'P'} << 56;
// False only when the payment's transfer says it has no PaymentInfo (so no
// delivery split to move): payments from before the tags may have one.
bool MayHavePaymentInfo(const U128& user_data_128) {
  return (user_data_128.hi & ~kRrnNumberMax) != kRrnOnlyTag;
}

enum class Kind : uint8_t {
  kHold = 1,
  kPurchase = 2,
  kRefund = 3,
  kCompletion = 4,
  kReversal = 5,
  kBalance = 6,
  kDecline = 7,    // decided before the ledger; never recorded
  kTombstone = 8,  // a reversal arrived before its original
};

// ---- The request record (au/x/...) -----------------------------------------

struct TxnRecord {
  Kind kind = Kind::kDecline;
  uint8_t response_code = 0;
  uint64_t digest = 0;
  uint64_t amount_minor = 0;
  uint16_t currency = 0;
  AccountId debit;
  AccountId credit;
  TransferId transfer;
  uint64_t captured_minor = 0;
  uint64_t refunded_minor = 0;
  uint32_t day = 0;
  std::string cred_key;  // au/d/... of the card or SIM
  std::string response;  // packed response body without 2 (PAN), 55 and 64
  // A completion: the request key (without "au/x/") of the hold it posted,
  // so that a reversal of the completion finds the hold's record.
  std::string orig_key;
};

uint64_t GetBe(std::string_view in, size_t* pos, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[(*pos)++]);
  return v;
}
U128 GetU128(std::string_view in, size_t* pos) {
  U128 v;
  v.hi = GetBe(in, pos, 8);
  v.lo = GetBe(in, pos, 8);
  return v;
}

constexpr size_t kRecordFixedBytes = 1 + 1 + 1 + 8 + 8 + 2 + 16 * 3 + 8 + 8 + 4 + 1 + 2;

// Writes `v` big-endian into `bytes` bytes at `p`; returns the end.
char* StoreBe(char* p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) *p++ = static_cast<char>((v >> (8 * i)) & 0xff);
  return p;
}
char* StoreBytes(char* p, std::string_view s) {
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  return p + s.size();
}

// One allocation, no per-byte appends (this runs on the ledger's sequencer
// for every request).
std::string EncodeRecord(const TxnRecord& r) {
  NARAE_CHECK(r.cred_key.size() <= kCredKeyBytesMax);
  NARAE_CHECK(r.response.size() <= 0xffff);
  NARAE_CHECK(r.orig_key.size() <= kCredKeyBytesMax);
  std::string out(kRecordFixedBytes + 1 + r.cred_key.size() + r.response.size() + r.orig_key.size(),
                  '\0');
  char* p = out.data();
  p = StoreBe(p, kRecordVersion, 1);
  p = StoreBe(p, static_cast<uint8_t>(r.kind), 1);
  p = StoreBe(p, r.response_code, 1);
  p = StoreBe(p, r.digest, 8);
  p = StoreBe(p, r.amount_minor, 8);
  p = StoreBe(p, r.currency, 2);
  for (const U128* v : {&r.debit.value, &r.credit.value, &r.transfer.value}) {
    p = StoreBe(p, v->hi, 8);
    p = StoreBe(p, v->lo, 8);
  }
  p = StoreBe(p, r.captured_minor, 8);
  p = StoreBe(p, r.refunded_minor, 8);
  p = StoreBe(p, r.day, 4);
  p = StoreBe(p, r.cred_key.size(), 1);
  p = StoreBytes(p, r.cred_key);
  p = StoreBe(p, r.response.size(), 2);
  p = StoreBytes(p, r.response);
  p = StoreBe(p, r.orig_key.size(), 1);
  p = StoreBytes(p, r.orig_key);
  NARAE_CHECK(p == out.data() + out.size());
  return out;
}

std::optional<TxnRecord> DecodeRecord(std::string_view in) {
  const uint8_t version = in.empty() ? 0 : static_cast<uint8_t>(in[0]);
  if (in.size() < kRecordFixedBytes || version < 1 || version > kRecordVersion) {
    return std::nullopt;
  }
  TxnRecord r;
  size_t pos = 1;
  r.kind = static_cast<Kind>(GetBe(in, &pos, 1));
  r.response_code = static_cast<uint8_t>(GetBe(in, &pos, 1));
  r.digest = GetBe(in, &pos, 8);
  r.amount_minor = GetBe(in, &pos, 8);
  r.currency = static_cast<uint16_t>(GetBe(in, &pos, 2));
  r.debit.value = GetU128(in, &pos);
  r.credit.value = GetU128(in, &pos);
  r.transfer.value = GetU128(in, &pos);
  r.captured_minor = GetBe(in, &pos, 8);
  r.refunded_minor = GetBe(in, &pos, 8);
  r.day = static_cast<uint32_t>(GetBe(in, &pos, 4));
  size_t cred = GetBe(in, &pos, 1);
  if (in.size() < pos + cred + 2) return std::nullopt;
  r.cred_key.assign(in.substr(pos, cred));
  pos += cred;
  size_t resp = GetBe(in, &pos, 2);
  if (in.size() < pos + resp) return std::nullopt;
  r.response.assign(in.substr(pos, resp));
  pos += resp;
  if (version == 1) return in.size() == pos ? std::optional<TxnRecord>(r) : std::nullopt;
  if (in.size() < pos + 1) return std::nullopt;
  size_t orig = GetBe(in, &pos, 1);
  if (in.size() != pos + orig) return std::nullopt;
  r.orig_key.assign(in.substr(pos, orig));
  return r;
}

// ---- Small helpers ----------------------------------------------------------

uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}
// FNV-1a (64-bit, seeded), then Mix: fed piece by piece, so the request
// digest needs no joined string (the value is that of the joined text).
struct Fnv {
  explicit Fnv(uint64_t seed) : h(0xcbf29ce484222325ull ^ seed) {}
  void Add(char c) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  void Add(std::string_view s) {
    for (char c : s) Add(c);
  }
  uint64_t Done() const { return Mix(h); }
  uint64_t h;
};

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The last `width` base-36 digits of v into out[0..width).
void Base36Into(uint64_t v, char* out, size_t width) {
  static constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  for (size_t i = width; i-- > 0;) {
    out[i] = kDigits[v % 36];
    v /= 36;
  }
}
std::string Base36(uint64_t v, size_t width) {
  std::string s(width, '0');
  Base36Into(v, s.data(), width);
  return s;
}

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

crypto::ByteView Bytes(std::string_view s) {
  return crypto::ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

struct Clock {
  int64_t ms = 0;
  uint32_t day = 0;
  uint64_t minute = 0;
  int year = 1970;
  int month = 1;
  int yymm = 0;  // YY * 100 + MM
};
Clock MakeClock(int64_t ms) {
  Clock c;
  c.ms = ms;
  c.day = static_cast<uint32_t>(ms / kMsPerDay);
  c.minute = static_cast<uint64_t>(ms / kMsPerMinute);
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  c.year = tm.tm_year + 1900;
  c.month = tm.tm_mon + 1;
  c.yymm = (c.year % 100) * 100 + c.month;
  return c;
}

bool ValidField7(std::string_view f7) {
  if (f7.size() != 10 || !AllDigits(f7)) return false;
  int month = (f7[0] - '0') * 10 + (f7[1] - '0');
  int day = (f7[2] - '0') * 10 + (f7[3] - '0');
  return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

RC MapTransferResult(ledger::CreateTransferResult r) {
  using TR = ledger::CreateTransferResult;
  switch (r) {
    case TR::kOk:
    case TR::kExists:
      return RC::kApproved;
    case TR::kExceedsCredits:
    case TR::kBelowMinimumBalance:
    case TR::kExceedsOverdraftLimit:
      return RC::kInsufficientFunds;
    case TR::kDebitAccountClosed:
    case TR::kCreditAccountClosed:
    case TR::kDebitAccountFrozen:
    case TR::kCreditAccountFrozen:
      return RC::kDoNotHonour;
    case TR::kExceedsPendingTransferAmount:
      return RC::kInvalidAmount;
    case TR::kPendingTransferNotFound:
      return RC::kUnableToLocateOriginal;
    case TR::kPendingTransferNotPending:
    case TR::kPendingTransferAlreadyPosted:
    case TR::kPendingTransferAlreadyVoided:
    case TR::kPendingTransferExpired:
      return RC::kInvalidTransaction;
    case TR::kOverflowsDebitsPending:
    case TR::kOverflowsCreditsPending:
    case TR::kOverflowsDebitsPosted:
    case TR::kOverflowsCreditsPosted:
    case TR::kOverflowsDebits:
    case TR::kOverflowsCredits:
      return RC::kInvalidAmount;
    default:
      return RC::kSystemMalfunction;
  }
}

// ---- A request on its way through the engine ------------------------------

struct Plan {
  Kind kind = Kind::kDecline;
  RC decided = RC::kSystemMalfunction;  // kDecline: the answer
  std::string key;                      // au/x/...
  uint64_t digest = 0;
  Message response;
  std::function<void(Message)> reply;
  Clock clock;
  // Credential.
  std::string cred_key;
  std::shared_ptr<const Card> card;
  std::shared_ptr<const Sim> sim;
  const RiskLimits* limits = nullptr;
  bool pin_present = false;
  bool pin_wrong = false;
  bool has_atc = false;
  uint16_t atc = 0;
  bool has_sim_counter = false;
  uint64_t sim_counter = 0;
  // Ledger.
  AccountId debit;
  AccountId credit;
  uint64_t amount_minor = 0;
  uint16_t currency = 0;
  uint32_t timeout_s = 0;
  // References (refund, completion, reversal).
  std::string orig_key;
  std::string rrn_ref;
  std::string order_ref;              // field 48 ORDR element, for settlement reports
  uint64_t delivery_share_minor = 0;  // field 48 DLVF / DLVD: the logistics office's share
  bool partial = false;
  uint64_t remaining_minor = 0;
  // Finishing on the ledger's acknowledging thread.
  std::optional<crypto::SecretBytes> card_key;  // EMV card master key (ARPC)
  std::vector<uint8_t> arqc;
  std::shared_ptr<const crypto::SecretBytes> mac_key;
  // Outcome.
  std::optional<Card> card_update;  // applied to the cache once durable
  std::shared_ptr<TxnHook> hook;    // the HTTP API's work in the same transaction
  // A card or SIM of another bank, approved by stand-in (docs/authorization.md):
  // the debit is the bank's interbank account, its exposure is counted in
  // bank_state_key (au/d/b/<bank id>/<currency 3>) against the agreement.
  std::optional<StandInTerms> stand_in;
  std::string bank_state_key;
  RiskLimits foreign_limits;  // what p.limits points to for such a credential
  // An inbound acquirer request (docs/authorization.md, "Our customers at
  // other banks' merchants"): field 32 names another bank, fields 41/42 are
  // its terminal and merchant, and the credit side is its interbank account.
  std::string client_cert_cn;                         // the connection's mutual-TLS CN, or ""
  std::string acquirer_bank;                          // that bank's id; "" for our merchants
  std::shared_ptr<const Merchant> acquirer_merchant;  // field 42, its interbank accounts
  std::string key_terminal;                           // the terminal part of the request key
  uint64_t rrn_number = 0;    // field 37 of the response as a number (0 = not assigned yet)
  bool payment_info = false;  // an approved hold or purchase records its PaymentInfo (st/p)
};

constexpr std::string_view kAuxBankStatePrefix = "au/d/b/";
std::string BankStateKey(std::string_view bank_id, uint16_t currency) {
  std::string key(kAuxBankStatePrefix);
  key.append(bank_id);
  key += '/';
  key += std::to_string(1000 + currency).substr(1);  // 3 digits
  return key;
}

// The key id of the zone PIN key shared with another bank's acquirer host
// (type TPK): "zpk-<bank id>".
std::string ZonePinKeyId(std::string_view bank_id) {
  return bank_id.empty() ? std::string() : "zpk-" + std::string(bank_id);
}

// The stand-in exposure key of the bank owning interbank account `account`;
// "" when it is no other bank's.
std::string ExposureKey(const std::vector<OtherBank>& banks, const AccountId& account) {
  for (const OtherBank& b : banks) {
    for (const InterbankAccount& a : b.accounts) {
      if (a.account == account) return BankStateKey(b.id, a.currency);
    }
  }
  return "";
}

}  // namespace

// ---- Public helpers ---------------------------------------------------------

namespace {
// RequestKey with the switch's clock already broken down (the request's
// Plan has it: one gmtime per request, not one per key).
std::string RequestKeyAt(std::string_view terminal_id, std::string_view field7,
                         std::string_view stan, const Clock& c) {
  int month = field7.size() >= 2 ? (field7[0] - '0') * 10 + (field7[1] - '0') : c.month;
  int year = c.year;
  if (month > c.month + 6) year -= 1;
  if (month + 6 < c.month) year += 1;
  char year_text[16];
  const std::to_chars_result year_end =
      std::to_chars(year_text, year_text + sizeof year_text, year);
  NARAE_CHECK(year_end.ec == std::errc());
  const size_t year_size = static_cast<size_t>(year_end.ptr - year_text);
  std::string key;
  key.reserve(kAuxTxnPrefix.size() + terminal_id.size() + year_size + field7.size() + stan.size());
  key.append(kAuxTxnPrefix);
  key.append(terminal_id);
  key.append(year_text, year_size);
  key.append(field7);
  key.append(stan);
  return key;
}
}  // namespace

std::string RequestKey(std::string_view terminal_id, std::string_view field7, std::string_view stan,
                       int64_t now_ms) {
  return RequestKeyAt(terminal_id, field7, stan, MakeClock(now_ms));
}

TransferId RequestTransferId(std::string_view request_key, uint8_t sub) {
  // FNV-1a of key + sub under two seeds, without copying the key (the ids
  // are stable: reconcile and old records name them).
  Fnv hi(0x6e61726165ull);
  Fnv lo(0x737769746368ull);
  hi.Add(request_key);
  hi.Add(static_cast<char>(sub));
  lo.Add(request_key);
  lo.Add(static_cast<char>(sub));
  U128 v{hi.Done(), lo.Done()};
  v.hi &= 0x7fffffffffffffffull;  // never int max
  if (v.IsZero()) v.lo = 1;
  return TransferId{v};
}

std::string Field48Element(std::string_view f, std::string_view wanted) {
  size_t pos = 0;
  for (size_t n = 0; n < kField48ElementsMax && pos + 6 <= f.size(); ++n) {
    std::string_view tag = f.substr(pos, 4);
    std::string_view len_text = f.substr(pos + 4, 2);
    if (!AllDigits(len_text)) return "";
    size_t len = static_cast<size_t>((len_text[0] - '0') * 10 + (len_text[1] - '0'));
    if (pos + 6 + len > f.size()) return "";
    if (tag == wanted) return std::string(f.substr(pos + 6, len));
    pos += 6 + len;
  }
  return "";
}

std::string Field48Cvv2(std::string_view f) {
  if (f.size() == 7 && f.substr(0, 4) == "CVV2" && AllDigits(f.substr(4))) {
    return std::string(f.substr(4));
  }
  // Only 3 digits are a CVV2; anything else is no CVV2 (found by fuzzing).
  std::string v = Field48Element(f, "CVV2");
  return v.size() == 3 && AllDigits(v) ? v : "";
}

std::string BuildField48(std::string_view cvv2, std::string_view order_ref) {
  auto element = [](std::string_view tag, std::string_view value) {
    std::string len = std::to_string(value.size());
    if (len.size() < 2) len.insert(0, "0");
    return std::string(tag) + len + std::string(value);
  };
  std::string out;
  if (!cvv2.empty()) out += element("CVV2", cvv2);
  if (!order_ref.empty()) out += element("ORDR", order_ref.substr(0, 99));
  return out;
}

namespace {
uint64_t Bcd(std::string_view v) {
  uint64_t out = 0;
  for (char ch : v) {
    uint8_t b = static_cast<uint8_t>(ch);
    out = out * 100 + (b >> 4) * 10 + (b & 15);
  }
  return out;
}
void PutBcd(std::string* out, uint64_t v, size_t bytes) {
  std::string tmp(bytes, '\0');
  for (size_t i = bytes; i-- > 0;) {
    uint64_t two = v % 100;
    v /= 100;
    tmp[i] = static_cast<char>(((two / 10) << 4) | (two % 10));
  }
  *out += tmp;
}
void PutTlv(std::string* out, uint16_t tag, std::string_view value) {
  if (tag > 0xff) out->push_back(static_cast<char>(tag >> 8));
  out->push_back(static_cast<char>(tag & 0xff));
  out->push_back(static_cast<char>(value.size()));
  *out += value;
}
// The transaction data tags, in the order they enter the ARQC.
constexpr uint16_t kArqcTags[] = {0x9F02, 0x9F03, 0x9F1A, 0x95,   0x5F2A, 0x9A,
                                  0x9C,   0x9F37, 0x82,   0x9F36, 0x9F10};
}  // namespace

Result<ChipData> ParseChipData(std::string_view f) {
  std::vector<std::pair<uint16_t, std::string_view>> tlvs;
  size_t pos = 0;
  while (pos < f.size()) {
    if (tlvs.size() >= kTlvElementsMax) return Status::InvalidArgument("field 55: too many tags");
    uint16_t tag = static_cast<uint8_t>(f[pos++]);
    if ((tag & 0x1F) == 0x1F) {
      if (pos >= f.size()) return Status::InvalidArgument("field 55: truncated tag");
      tag = static_cast<uint16_t>((tag << 8) | static_cast<uint8_t>(f[pos++]));
    }
    if (pos >= f.size()) return Status::InvalidArgument("field 55: truncated length");
    size_t len = static_cast<uint8_t>(f[pos++]);
    if (len == 0x81) {
      if (pos >= f.size()) return Status::InvalidArgument("field 55: truncated length");
      len = static_cast<uint8_t>(f[pos++]);
    } else if (len > 0x7f) {
      return Status::InvalidArgument("field 55: unsupported length form");
    }
    if (pos + len > f.size()) return Status::InvalidArgument("field 55: truncated value");
    tlvs.emplace_back(tag, f.substr(pos, len));
    pos += len;
  }
  auto find = [&](uint16_t tag) -> std::optional<std::string_view> {
    for (const auto& [t, v] : tlvs) {
      if (t == tag) return v;
    }
    return std::nullopt;
  };
  ChipData c;
  auto arqc = find(0x9F26);
  auto atc = find(0x9F36);
  auto amount = find(0x9F02);
  auto currency = find(0x5F2A);
  if (!arqc || arqc->size() != 8 || !atc || atc->size() != 2 || !amount || amount->size() != 6 ||
      !currency || currency->size() != 2) {
    return Status::InvalidArgument("field 55 needs 9F26 (8), 9F36 (2), 9F02 (6) and 5F2A (2)");
  }
  c.arqc.assign(arqc->begin(), arqc->end());
  c.atc = static_cast<uint16_t>((static_cast<uint8_t>((*atc)[0]) << 8) |
                                static_cast<uint8_t>((*atc)[1]));
  c.amount_minor = Bcd(*amount);
  c.currency = static_cast<uint16_t>(Bcd(*currency));
  for (uint16_t tag : kArqcTags) {
    if (auto v = find(tag))
      c.transaction_data.insert(c.transaction_data.end(), v->begin(), v->end());
  }
  return c;
}

std::vector<uint8_t> ChipTransactionData(uint64_t amount_minor, uint16_t currency, uint16_t atc,
                                         uint32_t unpredictable_number) {
  std::string d;
  PutBcd(&d, amount_minor, 6);
  PutBcd(&d, currency, 2);
  d.push_back('\0');  // 9C transaction type: purchase
  for (int i = 3; i >= 0; --i)
    d.push_back(static_cast<char>((unpredictable_number >> (8 * i)) & 0xff));
  d.push_back(static_cast<char>(atc >> 8));
  d.push_back(static_cast<char>(atc & 0xff));
  return std::vector<uint8_t>(d.begin(), d.end());
}

std::string BuildChipData(uint64_t amount_minor, uint16_t currency, uint16_t atc,
                          uint32_t unpredictable_number, std::span<const uint8_t> arqc) {
  std::string out, v;
  PutBcd(&v, amount_minor, 6);
  PutTlv(&out, 0x9F02, v);
  v.clear();
  PutBcd(&v, currency, 2);
  PutTlv(&out, 0x5F2A, v);
  PutTlv(&out, 0x9C, std::string(1, '\0'));
  v.clear();
  for (int i = 3; i >= 0; --i)
    v.push_back(static_cast<char>((unpredictable_number >> (8 * i)) & 0xff));
  PutTlv(&out, 0x9F37, v);
  v.clear();
  v.push_back(static_cast<char>(atc >> 8));
  v.push_back(static_cast<char>(atc & 0xff));
  PutTlv(&out, 0x9F36, v);
  PutTlv(&out, 0x9F26, std::string_view(reinterpret_cast<const char*>(arqc.data()), arqc.size()));
  return out;
}

namespace {
// An integer option in T's range. nlohmann's get<T>() would convert a float
// or an out-of-range number with a plain cast (undefined behaviour, found by
// the switch_fields fuzzer): refused instead (caught by the caller).
template <typename T>
T IntegerOption(const nlohmann::json& v, const std::string& name) {
  static_assert(std::is_integral_v<T>);
  if (v.is_number_unsigned()) {
    const uint64_t x = v.get<uint64_t>();
    if (x <= static_cast<uint64_t>(std::numeric_limits<T>::max())) return static_cast<T>(x);
  } else if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (std::is_signed_v<T> && x >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
        x <= static_cast<int64_t>(std::numeric_limits<T>::max())) {
      return static_cast<T>(x);
    }
  }
  throw std::out_of_range(name + " must be an integer in range");
}
}  // namespace

Result<AuthorizerOptions> ParseAuthorizerOptions(std::string_view options_json) {
  using json = nlohmann::json;
  AuthorizerOptions o;
  try {
    json j = json::parse(options_json.empty() ? std::string_view("{}") : options_json);
    if (!j.is_object()) return Status::InvalidArgument("authorization options must be an object");
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      const json& v = it.value();
      if (k == "hold_timeout_s")
        o.hold_timeout_s = IntegerOption<uint32_t>(v, k);
      else if (k == "food_hold_timeout_s")
        o.food_hold_timeout_s = IntegerOption<uint32_t>(v, k);
      else if (k == "food_mccs") {
        if (!v.is_array() || v.size() > 1000) throw std::out_of_range("food_mccs: a list of MCCs");
        o.food_mccs.clear();
        for (const json& m : v) o.food_mccs.push_back(IntegerOption<uint16_t>(m, k));
      } else if (k == "pin_tries_max")
        o.pin_tries_max = IntegerOption<uint32_t>(v, k);
      else if (k == "sim_counter_window")
        o.sim_counter_window = IntegerOption<uint64_t>(v, k);
      else if (k == "sim_time_skew_s")
        o.sim_time_skew_s = IntegerOption<int64_t>(v, k);
      else if (k == "atc_jump_max")
        o.atc_jump_max = IntegerOption<uint16_t>(v, k);
      else if (k == "require_cvv2_without_chip_or_pin")
        o.require_cvv2_without_chip_or_pin = v.get<bool>();
      else if (k == "cvk_key_id")
        o.cvk_key_id = v.get<std::string>();
      else if (k == "pvk_key_id")
        o.pvk_key_id = v.get<std::string>();
      else if (k == "imk_ac_key_id")
        o.imk_ac_key_id = v.get<std::string>();
      else if (k == "imk_sim_key_id")
        o.imk_sim_key_id = v.get<std::string>();
      else
        return Status::InvalidArgument("unknown authorization option: " + k);
    }
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("authorization options: ") + e.what());
  }
  if (o.hold_timeout_s == 0 || o.hold_timeout_s > ledger::kTimeoutSecondsMax ||
      o.food_hold_timeout_s == 0 || o.food_hold_timeout_s > ledger::kTimeoutSecondsMax) {
    return Status::InvalidArgument("hold timeouts must be 1..400 days");
  }
  if (o.pin_tries_max == 0 || o.pin_tries_max > 99) {
    return Status::InvalidArgument("pin_tries_max must be 1..99");
  }
  if (o.sim_counter_window == 0 || o.sim_time_skew_s <= 0) {
    return Status::InvalidArgument("sim_counter_window and sim_time_skew_s must be positive");
  }
  return o;
}

namespace {

// ---- The engine --------------------------------------------------------------

// Field 48 DLVF (a fixed delivery share, minor units) or DLVD (a distance in
// metres, priced by the merchant's delivery bands in force now): the
// logistics office's share of a hold or purchase, recorded with it and moved
// at capture (settlement.hpp). Both, or not digits: 30; a share of 0 or above
// the amount: 13; a distance no band prices: 12.
std::optional<RC> PrepareDeliverySplit(ledger::Ledger& ledger, std::string_view f48,
                                       const std::string& merchant_id, Plan& p) {
  const std::string fixed = Field48Element(f48, "DLVF");
  const std::string distance = Field48Element(f48, "DLVD");
  if (fixed.empty() && distance.empty()) return std::nullopt;
  const std::string& digits = fixed.empty() ? distance : fixed;
  if (!fixed.empty() && !distance.empty()) return RC::kFormatError;
  if (digits.size() > 12 || !AllDigits(digits)) return RC::kFormatError;
  uint64_t share = std::stoull(digits);
  if (!distance.empty()) {
    if (share > kDistanceMetersMax) return RC::kFormatError;
    Result<std::optional<FeeSchedule>> f = FeeScheduleInForce(
        ledger, merchant_id, p.currency, static_cast<uint64_t>(p.clock.ms) * 1'000'000 + 999'999);
    if (!f.ok()) return RC::kSystemMalfunction;
    std::optional<uint64_t> priced =
        *f ? DeliveryShareForDistance(**f, static_cast<uint32_t>(share)) : std::nullopt;
    if (!priced) return RC::kInvalidTransaction;
    share = *priced;
  }
  if (share == 0 || share > p.amount_minor) return RC::kInvalidAmount;
  p.delivery_share_minor = share;
  return std::nullopt;
}

class Authorizer final : public HookedHandler {
 public:
  Authorizer(const AuthorizerDeps& deps, AuthorizerOptions options, std::unique_ptr<BankCache> bank)
      : ledger_(deps.ledger),
        keys_(deps.keys),
        options_(std::move(options)),
        bank_(std::move(bank)) {}

  void Handle(Message request, const ConnectionInfo& conn,
              std::function<void(Message response)> reply) override {
    Dispatch(std::move(request), conn.client_cert_cn, nullptr, std::move(reply));
  }
  void HandleHooked(Message request, std::shared_ptr<TxnHook> hook,
                    std::function<void(Message response)> reply) override {
    Dispatch(std::move(request), "", std::move(hook), std::move(reply));
  }
  BankCache* bank_cache() override { return bank_.get(); }
  void SetPaymentObserver(PaymentObserver observer) override { observer_ = std::move(observer); }
  HealthInfo Health() override {
    ledger::LedgerStats s = ledger_->Stats();
    return HealthInfo{s.healthy, s.open_holds, s.accounts};
  }

 private:
  int64_t NowMs() const {
    if (options_.clock_ms) return options_.clock_ms();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  std::shared_ptr<const crypto::SecretBytes> Key(const std::string& id, crypto::KeyType type);

  // I/O thread.
  void Dispatch(Message request, std::string client_cert_cn, std::shared_ptr<TxnHook> hook,
                std::function<void(Message response)> reply);
  std::optional<RC> PrepareAcquirer(const Message& req, Plan& p);
  void HandleNetwork(const Message& req, Message resp, std::function<void(Message)> reply);
  std::optional<RC> Prepare(const Message& req, Plan& p);
  std::optional<RC> PrepareTerminal(const Message& req, Plan& p,
                                    std::shared_ptr<const Merchant>* merchant);
  std::optional<RC> PrepareCard(const Message& req, Plan& p, const Merchant& m, bool verify);
  std::optional<RC> PrepareSim(const Message& req, Plan& p, const Merchant& m);
  std::optional<RC> PrepareForeignCard(const Message& req, Plan& p, const Merchant& m, bool verify);
  std::optional<RC> PrepareForeignSim(const SimTokenData& tok, Plan& p, const Merchant& m);
  std::optional<RC> StandInAgreement(const OtherBank& bank, Plan& p);
  std::optional<RC> PrepareReference(const Message& req, Plan& p);
  void Submit(std::shared_ptr<Plan> p);

  // Sequencer thread.
  void Apply(ledger::Txn& txn, Plan& p);
  void ApplyHooked(ledger::Txn& txn, Plan& p);
  std::optional<std::string> Read(ledger::Txn& txn, const std::string& key);
  void Write(ledger::Txn& txn, const std::string& key, const std::string& value);
  CredentialState ReadState(ledger::Txn& txn, const std::string& key);
  std::optional<RC> CredentialStep(CredentialState& st, Plan& p);
  RC ApplyPayment(ledger::Txn& txn, Plan& p, TxnRecord& rec);
  RC ApplyBalance(ledger::Txn& txn, Plan& p);
  RC ApplyCompletion(ledger::Txn& txn, Plan& p, TxnRecord& rec);
  RC ApplyRefund(ledger::Txn& txn, Plan& p, TxnRecord& rec);
  RC ApplyReversal(ledger::Txn& txn, Plan& p, TxnRecord& rec);
  RC ReversePosted(ledger::Txn& txn, Plan& p, TxnRecord& orig, TxnRecord& rec);
  RC ReverseCompletion(ledger::Txn& txn, Plan& p, TxnRecord& completion, TxnRecord& rec);
  void ReleaseDaily(ledger::Txn& txn, const TxnRecord& orig, uint64_t amount);
  RC ApplyStandIn(ledger::Txn& txn, Plan& p, CredentialState* bank_state);
  void SetAvailableBalance(ledger::Txn& txn, Plan& p, AccountId account);
  uint64_t RrnNumber(Plan& p);
  void Respond(Plan& p, RC rc, const TransferId* approval);

  // Acknowledging thread (after the group is durable).
  void Finish(Plan& p, const Status& status);

  ledger::Ledger* ledger_;
  crypto::KeyStore* keys_;
  AuthorizerOptions options_;
  std::unique_ptr<BankCache> bank_;
  uint64_t rrn_last_ = 0;  // sequencer thread only
  // Sequencer thread only: the credential state keys of the cards this
  // process blocked for PIN tries (ApplyPayment reads their state), at most
  // kPinBlockedTrackedMax; beyond that every state is read.
  std::unordered_set<std::string> pin_blocked_;
  bool pin_blocked_all_ = false;
  PaymentObserver observer_;  // set before the first request
  std::mutex key_mu_;
  std::unordered_map<std::string, std::shared_ptr<const crypto::SecretBytes>> key_cache_;
};

std::shared_ptr<const crypto::SecretBytes> Authorizer::Key(const std::string& id,
                                                           crypto::KeyType type) {
  {
    std::lock_guard<std::mutex> lock(key_mu_);
    auto it = key_cache_.find(id);
    if (it != key_cache_.end()) return it->second;
  }
  Result<crypto::SecretBytes> k = keys_->Use(id, type);
  if (!k.ok()) return nullptr;
  auto p = std::make_shared<const crypto::SecretBytes>(std::move(*k));
  std::lock_guard<std::mutex> lock(key_mu_);
  key_cache_[id] = p;
  return p;
}

void SetResponseCode(Message& m, RC rc) { m.Set(39, ResponseCodeText(rc)); }

// The echoed fields (at most ~110 bytes) and what the answer adds (37, 38,
// 39, 54, the ARPC in 55, the MAC) fit without growing.
constexpr size_t kEchoResponseBytesReserved = 256;

// The request's response with the echoed fields.
Message EchoResponse(const Message& req, const std::string& mti) {
  Message resp(mti);
  resp.Reserve(kEchoResponseBytesReserved);  // the echo and the answer's fields, one allocation
  for (int f : {2, 3, 4, 7, 11, 12, 13, 32, 41, 42, 49}) {
    if (auto v = req.Find(f)) resp.Set(f, *v);
  }
  return resp;
}

// The MAC'd bytes of a message: its packed body without the last 8 bytes.
Result<std::vector<uint8_t>> MacData(const Message& m) {
  Result<std::vector<uint8_t>> body = Pack(m);
  if (!body.ok()) return body.status();
  if (body->size() < kMessageBytesMin + 8) return Status::InvalidArgument("message too short");
  body->resize(body->size() - 8);
  return body;
}

void Authorizer::Dispatch(Message request, std::string client_cert_cn,
                          std::shared_ptr<TxnHook> hook,
                          std::function<void(Message response)> reply) {
  Result<std::string> rmti = ResponseMti(request.mti());
  if (!rmti.ok()) {
    std::string mti = request.mti();
    if (mti.size() == 4 && AllDigits(mti) && mti[2] < '9')
      mti[2] = static_cast<char>(mti[2] + 1);
    else
      mti = "0110";
    Message resp = EchoResponse(request, mti);
    SetResponseCode(resp, RC::kInvalidTransaction);
    reply(std::move(resp));
    return;
  }
  Message resp = EchoResponse(request, *rmti);
  if (request.mti() == "0800") {
    HandleNetwork(request, std::move(resp), std::move(reply));
    return;
  }
  auto p = std::make_shared<Plan>();
  p->response = std::move(resp);
  p->reply = std::move(reply);
  p->hook = std::move(hook);
  p->client_cert_cn = std::move(client_cert_cn);
  p->clock = MakeClock(NowMs());
  std::optional<RC> rc = Prepare(request, *p);
  if (rc) {
    if (p->key.empty()) {  // too malformed to look for an earlier answer
      SetResponseCode(p->response, *rc);
      Finish(*p, Status::Ok());
      return;
    }
    p->kind = Kind::kDecline;
    p->decided = *rc;
  }
  Submit(std::move(p));
}

void Authorizer::HandleNetwork(const Message& req, Message resp,
                               std::function<void(Message)> reply) {
  resp.Clear(2);
  if (auto v = req.Find(70)) resp.Set(70, *v);
  RC rc = RC::kApproved;
  std::string_view code = req.Get(70);
  if (!req.Has(70) || !req.Has(7) || !req.Has(11)) {
    rc = RC::kFormatError;
  } else if (code != "001" && code != "002" && code != "301") {
    rc = RC::kInvalidTransaction;
  } else if (code == "301" && !ledger_->Stats().healthy) {
    rc = RC::kIssuerUnavailable;
  }
  SetResponseCode(resp, rc);
  reply(std::move(resp));
}

std::optional<RC> Authorizer::PrepareTerminal(const Message& req, Plan& p,
                                              std::shared_ptr<const Merchant>* merchant) {
  std::shared_ptr<const Terminal> t = bank_->FindTerminal(req.Get(41));
  if (!t || t->status != RecordStatus::kActive) return RC::kNotPermittedToTerminal;
  *merchant = bank_->FindMerchant(TrimRight(req.Get(42)));
  if (!*merchant || (*merchant)->id != t->merchant_id ||
      (*merchant)->status != RecordStatus::kActive) {
    return RC::kNotPermittedToTerminal;
  }
  if (!t->mac_key_id.empty()) {
    p.mac_key = Key(t->mac_key_id, crypto::KeyType::kMac);
    if (!p.mac_key) return RC::kSystemMalfunction;
    int mac_field = req.NextField(64) != 0 ? 128 : 64;
    if (!req.Has(mac_field) || req.NextField(mac_field) != 0) return RC::kFormatError;
    // The MAC'd bytes are the request as it came (no repacking) without
    // its last 8 bytes, the MAC itself, which is the last field.
    std::optional<std::span<const uint8_t>> wire = req.PackedIfUnchanged();
    Result<std::vector<uint8_t>> packed = std::vector<uint8_t>();
    if (!wire) {
      packed = MacData(req);
      if (!packed.ok()) return RC::kFormatError;
    } else if (wire->size() < kMessageBytesMin + 8) {
      return RC::kFormatError;
    }
    const crypto::ByteView data = wire ? wire->first(wire->size() - 8) : crypto::ByteView(*packed);
    if (!crypto::VerifyIso8583Mac(*p.mac_key, data, Bytes(req.Get(mac_field))).ok()) {
      return RC::kDoNotHonour;
    }
  }
  return std::nullopt;
}

std::optional<RC> Authorizer::Prepare(const Message& req, Plan& p) {
  const std::string& mti = req.mti();
  if (!req.Has(7) || !req.Has(11) || !req.Has(41)) return RC::kFormatError;
  if (!ValidField7(req.Get(7))) return RC::kFormatError;
  if (auto rc = PrepareAcquirer(req, p)) return rc;
  p.key = RequestKeyAt(p.key_terminal, req.Get(7), req.Get(11), p.clock);
  if (req.Has(48)) p.order_ref = Field48Element(req.Get(48), "ORDR");
  // The digest tells a retransmission from another request reusing the key.
  // Fed piece by piece: the value of the joined text.
  Fnv d(0);
  d.Add(std::string_view(mti).substr(0, 3));
  d.Add('0');  // a repeat (0221, 0401, 0421) is the same request
  for (int f : {2, 3, 4, 49, 90}) {
    d.Add('|');
    d.Add(req.Get(f));
  }
  p.digest = d.Done();
  if (!req.Has(42)) return RC::kFormatError;
  std::shared_ptr<const Merchant> merchant = p.acquirer_merchant;
  if (!merchant) {
    if (auto rc = PrepareTerminal(req, p, &merchant)) return rc;
  }
  if (mti == "0400" || mti == "0401" || mti == "0420" || mti == "0421" || mti == "0220" ||
      mti == "0221") {
    return PrepareReference(req, p);
  }
  if (!req.Has(3) || !AllDigits(req.Get(3).substr(0, 2))) return RC::kFormatError;
  std::string_view proc = req.Get(3).substr(0, 2);
  if (proc == "01") return RC::kNotPermittedToCardholder;  // no cash at Narae merchants
  if (proc == "31") {
    p.kind = Kind::kBalance;
  } else if (proc == "00") {
    p.kind = mti == "0100" ? Kind::kHold : Kind::kPurchase;
  } else if (proc == "20" && mti == "0200") {
    p.kind = Kind::kRefund;
  } else {
    return RC::kInvalidTransaction;
  }
  if (!req.Has(49)) return RC::kFormatError;
  Result<uint64_t> cur = ParseDigits(req.Get(49));
  if (!cur.ok()) return RC::kFormatError;
  p.currency = static_cast<uint16_t>(*cur);
  if (p.kind != Kind::kBalance) {
    if (!req.Has(4)) return RC::kFormatError;
    Result<uint64_t> amount = ParseAmount(req.Get(4));
    if (!amount.ok()) return RC::kFormatError;
    if (*amount == 0) return RC::kInvalidAmount;
    p.amount_minor = *amount;
  }
  const MerchantCurrency* mc = merchant->ForCurrency(p.currency);
  if (!mc) return RC::kNotPermittedToTerminal;
  p.credit = mc->clearing;
  bool food = std::find(options_.food_mccs.begin(), options_.food_mccs.end(), merchant->mcc) !=
              options_.food_mccs.end();
  p.timeout_s = food ? options_.food_hold_timeout_s : options_.hold_timeout_s;
  if ((p.kind == Kind::kHold || p.kind == Kind::kPurchase) && req.Has(48) && !p.hook) {
    if (auto rc = PrepareDeliverySplit(*ledger_, req.Get(48), merchant->id, p)) return rc;
  }
  if (p.kind == Kind::kRefund) {
    if (req.Has(62) || (!req.Has(2) && !p.hook)) return RC::kFormatError;
    const std::shared_ptr<const std::vector<OtherBank>> banks = bank_->other_banks();
    if (!req.Has(2)) {
      // A hooked (HTTP API) refund: the original's card or SIM, found in ApplyRefund.
    } else if (std::shared_ptr<const Sim> sim = bank_->FindSim(req.Get(2))) {
      p.sim = sim;
      p.cred_key = std::string(kAuxSimStatePrefix) + sim->token_id;
      p.debit = sim->account_id;
      if (sim->currency != p.currency) return RC::kNotPermittedToCardholder;
    } else if (const OtherBank* b = FindBankForSimToken(*banks, req.Get(2));
               b && p.acquirer_bank.empty() && !FindBankForPan(*banks, req.Get(2))) {
      // Another issuer's SIM token: credited through its interbank account.
      const InterbankAccount* a = b->AccountFor(p.currency);
      if (!a) return RC::kNotPermittedToCardholder;
      p.cred_key = std::string(kAuxSimStatePrefix) + std::string(req.Get(2));
      p.debit = a->account;
    } else if (auto rc = PrepareCard(req, p, *merchant, false)) {
      return rc;
    }
    if (req.Has(90)) {
      Result<OriginalData> od = ParseOriginalData(req.Get(90));
      if (!od.ok()) return RC::kFormatError;
      p.orig_key = RequestKeyAt(p.key_terminal, od->transmission_datetime, od->stan, p.clock);
    } else if (req.Has(37)) {
      p.rrn_ref = std::string(req.Get(37));
    } else {
      return RC::kInvalidTransaction;  // a refund names what it refunds
    }
    return std::nullopt;
  }
  if (req.Has(62)) return PrepareSim(req, p, *merchant);
  if (!req.Has(2)) return RC::kFormatError;
  return PrepareCard(req, p, *merchant, true);
}

std::optional<RC> CheckLimitsStatic(const RiskLimits& l, uint16_t mcc, uint64_t amount) {
  if (std::find(l.blocked_mccs.begin(), l.blocked_mccs.end(), mcc) != l.blocked_mccs.end()) {
    return RC::kNotPermittedToCardholder;
  }
  if (l.single_amount_max_minor != 0 && amount > l.single_amount_max_minor) {
    return RC::kExceedsWithdrawalLimit;
  }
  return std::nullopt;
}

std::optional<RC> Authorizer::PrepareCard(const Message& req, Plan& p, const Merchant& m,
                                          bool verify) {
  std::string_view pan = req.Get(2);
  if (pan.size() < 13 || !crypto::LuhnValid(pan)) return RC::kInvalidCardNumber;
  p.card = bank_->FindCardByPan(pan);
  if (!p.card) return PrepareForeignCard(req, p, m, verify);
  const Card& c = *p.card;
  p.cred_key = std::string(kAuxCardStatePrefix) + c.card_id;
  p.debit = c.account_id;
  if (!verify) {
    if (c.currency != p.currency) return RC::kNotPermittedToCardholder;
    return std::nullopt;  // refunds credit the card: no cardholder verification
  }
  switch (c.status) {
    case RecordStatus::kActive:
      break;
    case RecordStatus::kLost:
      return RC::kLostCard;
    case RecordStatus::kStolen:
      return RC::kStolenCard;
    case RecordStatus::kExpired:
      return RC::kExpiredCard;
    case RecordStatus::kPinBlocked:
      return RC::kPinTriesExceeded;
    default:
      return RC::kRestrictedCard;
  }
  int expiry = std::atoi(c.expiry.c_str());
  if (expiry < p.clock.yymm) return RC::kExpiredCard;
  if (req.Has(14) && req.Get(14) != c.expiry) return RC::kExpiredCard;
  if (c.currency != p.currency) return RC::kNotPermittedToCardholder;
  p.limits = &c.limits;
  if (auto rc = CheckLimitsStatic(c.limits, m.mcc, p.amount_minor)) return rc;
  bool verified = false;
  if (req.Has(55)) {
    Result<ChipData> chip = ParseChipData(req.Get(55));
    if (!chip.ok()) return RC::kFormatError;
    if (chip->currency != p.currency ||
        (p.kind != Kind::kBalance && chip->amount_minor != p.amount_minor)) {
      return RC::kFormatError;
    }
    auto imk = Key(options_.imk_ac_key_id, crypto::KeyType::kImkAc);
    if (!imk) return RC::kSystemMalfunction;
    std::string psn = req.Has(23) ? std::string(req.Get(23).substr(1)) : c.psn;
    Result<crypto::SecretBytes> card_key = crypto::EmvCardKeyOptionA(*imk, pan, psn);
    if (!card_key.ok()) return RC::kSystemMalfunction;
    Result<crypto::SecretBytes> session = crypto::EmvSessionKey(*card_key, chip->atc);
    if (!session.ok()) return RC::kSystemMalfunction;
    Result<crypto::Bytes> expected = crypto::EmvArqc(*session, chip->transaction_data);
    if (!expected.ok()) return RC::kSystemMalfunction;
    if (!crypto::ConstantTimeEqual(*expected, chip->arqc)) return RC::kDoNotHonour;
    p.card_key = std::move(*card_key);
    p.arqc = chip->arqc;
    p.has_atc = true;
    p.atc = chip->atc;
    verified = true;
  }
  if (req.Has(52)) {
    // Our terminal's TPK, or the zone PIN key shared with an inbound acquirer.
    std::shared_ptr<const Terminal> t =
        p.acquirer_bank.empty() ? bank_->FindTerminal(req.Get(41)) : nullptr;
    const std::string tpk_id = t ? t->tpk_key_id : ZonePinKeyId(p.acquirer_bank);
    if (tpk_id.empty()) return RC::kNotPermittedToTerminal;
    auto tpk = Key(tpk_id, crypto::KeyType::kTpk);
    if (!tpk && !p.acquirer_bank.empty()) return RC::kNotPermittedToTerminal;
    auto pvk = Key(options_.pvk_key_id, crypto::KeyType::kPvk);
    if (!tpk || !pvk) return RC::kSystemMalfunction;
    Status s = crypto::VerifyPinPvv(*tpk, crypto::PinBlockFormat::kIso0, Bytes(req.Get(52)), pan,
                                    *pvk, c.pvki, c.pvv);
    p.pin_present = true;
    p.pin_wrong = !s.ok();  // a wrong PIN or a block under another key: counted
    verified = true;
  }
  std::string cvv2 = req.Has(48) ? Field48Cvv2(req.Get(48)) : "";
  if (!cvv2.empty()) {
    auto cvk = Key(options_.cvk_key_id, crypto::KeyType::kCvk);
    if (!cvk) return RC::kSystemMalfunction;
    if (!crypto::VerifyCvv(*cvk, pan, c.expiry, "000", cvv2).ok()) return RC::kDoNotHonour;
    verified = true;
  }
  if (!verified && options_.require_cvv2_without_chip_or_pin) return RC::kDoNotHonour;
  return std::nullopt;
}

std::optional<RC> Authorizer::PrepareSim(const Message& req, Plan& p, const Merchant& m) {
  Result<SimTokenData> tok = ParseSimToken(req.Get(62));
  if (!tok.ok()) return RC::kFormatError;
  if (req.Has(2) && req.Get(2) != tok->token_id) return RC::kFormatError;
  p.sim = bank_->FindSim(tok->token_id);
  if (!p.sim) return PrepareForeignSim(*tok, p, m);
  const Sim& s = *p.sim;
  p.cred_key = std::string(kAuxSimStatePrefix) + s.token_id;
  p.debit = s.account_id;
  if (s.status != RecordStatus::kActive) return RC::kRestrictedCard;
  if (s.currency != p.currency) return RC::kNotPermittedToCardholder;
  p.limits = &s.limits;
  if (auto rc = CheckLimitsStatic(s.limits, m.mcc, p.amount_minor)) return rc;
  auto imk = Key(options_.imk_sim_key_id, crypto::KeyType::kImkSim);
  if (!imk) return RC::kSystemMalfunction;
  Result<crypto::SecretBytes> sim_key = crypto::DeriveSimKey(*imk, s.iccid);
  if (!sim_key.ok()) return RC::kSystemMalfunction;
  crypto::SimPaymentFields f;
  f.version = tok->version;
  f.token_id = tok->token_id;
  f.counter = tok->counter;
  f.amount_minor = p.amount_minor;
  f.currency = p.currency;
  f.merchant_id = m.id;
  f.unix_time_s = static_cast<int64_t>(tok->time_unix_s);
  crypto::SimVerifyOptions vo;
  vo.counter_window = 1;
  vo.time_skew_s_max = options_.sim_time_skew_s;
  // The counter window is checked against the durable counter in the ledger
  // transaction; here only the cryptogram and the time.
  if (tok->counter == 0) return RC::kRestrictedCard;
  crypto::SimVerification v = crypto::VerifySimPayment(*sim_key, tok->counter - 1,
                                                       p.clock.ms / 1000, vo, f, tok->cryptogram);
  if (v.check != crypto::SimCheck::kAccepted) return RC::kDoNotHonour;
  p.has_sim_counter = true;
  p.sim_counter = tok->counter;
  return std::nullopt;
}

// ---- Other banks' credentials (stand-in; docs/authorization.md) -------------

// The agreement with `bank` in the request's currency: the debit side and
// the limits. 57 without one (no agreement, or a balance inquiry: we do not
// know the other bank's balances).
std::optional<RC> Authorizer::StandInAgreement(const OtherBank& bank, Plan& p) {
  const InterbankAccount* account = bank.AccountFor(p.currency);
  const StandInTerms* terms = bank.StandInFor(p.currency);
  if (!account || !terms || terms->daily_max_minor == 0 || p.kind == Kind::kBalance) {
    return RC::kNotPermittedToCardholder;
  }
  p.debit = account->account;
  p.stand_in = *terms;
  p.bank_state_key = BankStateKey(bank.id, p.currency);
  p.foreign_limits = RiskLimits{};
  p.foreign_limits.single_amount_max_minor =
      terms->single_max_minor != 0 ? terms->single_max_minor : terms->daily_max_minor;
  p.limits = &p.foreign_limits;
  if (p.amount_minor > p.foreign_limits.single_amount_max_minor) {
    return RC::kExceedsWithdrawalLimit;
  }
  return std::nullopt;
}

// A PAN that is not one of our cards. Ours (our BIN) or of no registered
// bank: 14. Another bank's: accepted on its stand-in agreement with the checks
// we can make without its keys (Luhn, expiry, the CVV2 or chip data present,
// the chip's ATC never replayed); a PIN we cannot verify is refused (57).
std::optional<RC> Authorizer::PrepareForeignCard(const Message& req, Plan& p, const Merchant& m,
                                                 bool verify) {
  (void)m;
  if (!p.acquirer_bank.empty()) return RC::kInvalidCardNumber;  // only ours at their merchants
  std::string_view pan = req.Get(2);
  std::shared_ptr<const BankConfig> cfg = bank_->config();
  if (cfg && !cfg->bin.empty() && pan.starts_with(cfg->bin)) return RC::kInvalidCardNumber;
  const std::shared_ptr<const std::vector<OtherBank>> banks = bank_->other_banks();
  const OtherBank* bank = FindBankForPan(*banks, pan);
  if (!bank) return RC::kInvalidCardNumber;
  const std::string card_id = CardIdFromPan(pan);
  if (card_id.empty()) return RC::kSystemMalfunction;
  p.cred_key = std::string(kAuxCardStatePrefix) + card_id;
  if (!verify) {  // a refund credits the bank, which credits its cardholder
    const InterbankAccount* account = bank->AccountFor(p.currency);
    if (!account) return RC::kNotPermittedToCardholder;
    p.debit = account->account;
    return std::nullopt;
  }
  if (auto rc = StandInAgreement(*bank, p)) return rc;
  if (req.Has(52)) return RC::kNotPermittedToCardholder;  // its PIN key is not ours
  std::string_view expiry = req.Get(14);
  if (!req.Has(14)) return RC::kFormatError;  // stand-in needs the expiry
  if (expiry.size() != 4 || !AllDigits(expiry)) return RC::kFormatError;
  const int yymm = (expiry[0] - '0') * 1000 + (expiry[1] - '0') * 100 + (expiry[2] - '0') * 10 +
                   (expiry[3] - '0');
  if (yymm % 100 < 1 || yymm % 100 > 12 || yymm < p.clock.yymm) return RC::kExpiredCard;
  bool evidence = false;
  if (req.Has(55)) {
    Result<ChipData> chip = ParseChipData(req.Get(55));
    if (!chip.ok()) return RC::kFormatError;
    if (chip->currency != p.currency || chip->amount_minor != p.amount_minor) {
      return RC::kFormatError;
    }
    p.has_atc = true;  // the ARQC needs the issuer's key: only the ATC is checked
    p.atc = chip->atc;
    evidence = true;
  }
  if (req.Has(48) && !Field48Cvv2(req.Get(48)).empty()) evidence = true;  // format only
  if (!evidence && options_.require_cvv2_without_chip_or_pin) return RC::kDoNotHonour;
  return std::nullopt;
}

// A SIM token that is not one of ours. Our prefix or no registered issuer:
// 14. Another issuer's: accepted on its bank's stand-in agreement; the
// cryptogram needs the issuer's key, so only the counter (never replayed,
// within the window) and the token's time are checked.
std::optional<RC> Authorizer::PrepareForeignSim(const SimTokenData& tok, Plan& p,
                                                const Merchant& m) {
  (void)m;
  if (!p.acquirer_bank.empty()) return RC::kInvalidCardNumber;  // only ours at their merchants
  std::shared_ptr<const BankConfig> cfg = bank_->config();
  if (cfg && !cfg->token_prefix.empty() && tok.token_id.starts_with(cfg->token_prefix)) {
    return RC::kInvalidCardNumber;
  }
  const std::shared_ptr<const std::vector<OtherBank>> banks = bank_->other_banks();
  const OtherBank* bank = FindBankForSimToken(*banks, tok.token_id);
  if (!bank) return RC::kInvalidCardNumber;
  p.cred_key = std::string(kAuxSimStatePrefix) + tok.token_id;
  if (auto rc = StandInAgreement(*bank, p)) return rc;
  if (tok.counter == 0) return RC::kRestrictedCard;
  const int64_t now_s = p.clock.ms / 1000;
  const int64_t skew_s = static_cast<int64_t>(tok.time_unix_s) - now_s;
  if (tok.time_unix_s > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      skew_s > options_.sim_time_skew_s || -skew_s > options_.sim_time_skew_s) {
    return RC::kDoNotHonour;
  }
  p.has_sim_counter = true;
  p.sim_counter = tok.counter;
  return std::nullopt;
}

// ---- Our customers at other banks' merchants (docs/authorization.md) ---------

// Field 32 and the connection's certificate CN: who acquired the request.
// Absent or our own acquirer id: one of our terminals (checked later), unless
// the connection's certificate is another bank's (58). Another bank's
// acquirer id: an inbound acquirer request when the CN, if any, is that
// bank's id (else 58); the request key is namespaced by the bank so its
// terminal ids never meet ours. Any other field 32: 58. A delivery split
// (our logistics office) cannot be carried by another bank's merchant: 12.
std::optional<RC> Authorizer::PrepareAcquirer(const Message& req, Plan& p) {
  p.key_terminal = std::string(req.Get(41));
  if (p.hook) return std::nullopt;  // the HTTP API serves our merchants only
  const std::shared_ptr<const std::vector<OtherBank>> banks = bank_->other_banks();
  const std::shared_ptr<const BankConfig> cfg = bank_->config();
  const std::string_view field32 = req.Get(32);
  const bool cn_is_bank = !p.client_cert_cn.empty() &&
                          std::any_of(banks->begin(), banks->end(),
                                      [&](const OtherBank& b) { return b.id == p.client_cert_cn; });
  if (!req.Has(32) || (cfg && field32 == cfg->acquirer_id)) {
    if (cn_is_bank) return RC::kNotPermittedToTerminal;
    return std::nullopt;
  }
  const OtherBank* bank = FindBankForAcquirer(*banks, field32);
  if (!bank) return RC::kNotPermittedToTerminal;
  if (!p.client_cert_cn.empty() && p.client_cert_cn != bank->id) {
    return RC::kNotPermittedToTerminal;
  }
  if (req.Has(48) && (!Field48Element(req.Get(48), "DLVF").empty() ||
                      !Field48Element(req.Get(48), "DLVD").empty())) {
    return RC::kInvalidTransaction;
  }
  auto m = std::make_shared<Merchant>();
  m->id = std::string(TrimRight(req.Get(42)));
  const std::string_view mcc = req.Get(18);
  if (mcc.size() == 4 && AllDigits(mcc))
    m->mcc = static_cast<uint16_t>(std::stoi(std::string(mcc)));
  for (const InterbankAccount& a : bank->accounts) {
    m->currencies.push_back({a.currency, a.account, a.account});
  }
  p.acquirer_bank = bank->id;
  p.acquirer_merchant = std::move(m);
  p.key_terminal = "@" + bank->id + "/" + p.key_terminal;
  return std::nullopt;
}

std::optional<RC> Authorizer::PrepareReference(const Message& req, Plan& p) {
  const std::string& mti = req.mti();
  bool completion = mti[1] == '2';  // 0220/0221; else 0400/0401/0420/0421
  p.kind = completion ? Kind::kCompletion : Kind::kReversal;
  if (!req.Has(90)) return RC::kFormatError;
  Result<OriginalData> od = ParseOriginalData(req.Get(90));
  if (!od.ok() || !ValidField7(od->transmission_datetime)) return RC::kFormatError;
  p.orig_key = RequestKeyAt(p.key_terminal, od->transmission_datetime, od->stan, p.clock);
  if (completion) {
    if (od->mti != "0100") return RC::kInvalidTransaction;
    if (!req.Has(4) || !req.Has(49)) return RC::kFormatError;
    Result<uint64_t> amount = ParseAmount(req.Get(4));
    Result<uint64_t> cur = ParseDigits(req.Get(49));
    if (!amount.ok() || !cur.ok()) return RC::kFormatError;
    if (*amount == 0) return RC::kInvalidAmount;
    p.amount_minor = *amount;
    p.currency = static_cast<uint16_t>(*cur);
    return std::nullopt;
  }
  if (req.Has(95)) {
    Result<uint64_t> remaining = ParseDigits(req.Get(95).substr(0, 12));
    if (!remaining.ok()) return RC::kFormatError;
    p.remaining_minor = *remaining;
    p.partial = *remaining != 0;
  }
  return std::nullopt;
}

void Authorizer::Submit(std::shared_ptr<Plan> p) {
  Plan* raw = p.get();
  Status s = ledger_->Submit([this, raw](ledger::Txn& txn) { ApplyHooked(txn, *raw); },
                             [this, p](Status st) { Finish(*p, st); });
  if (!s.ok()) {
    SetResponseCode(p->response, s.code() == StatusCode::kUnavailable ? RC::kIssuerUnavailable
                                                                      : RC::kSystemMalfunction);
    Finish(*p, Status::Ok());
  }
}

// ---- Sequencer thread ----------------------------------------------------------

// Txn::GetAux sees the writes of every earlier submission, durable or not
// (the ledger's overlay, O(1)). A request answered from a record that is not
// durable yet is in the same or a later group than its writer, and a group
// is never acknowledged after an earlier group failed (the writer fails
// every later group until it recovers): so a duplicate never reports an
// approval that did not become durable.
std::optional<std::string> Authorizer::Read(ledger::Txn& txn, const std::string& key) {
  return txn.GetAux(key);
}

void Authorizer::Write(ledger::Txn& txn, const std::string& key, const std::string& value) {
  txn.PutAux(key, value);
}

CredentialState Authorizer::ReadState(ledger::Txn& txn, const std::string& key) {
  // Hot: read on most of the credential's requests, and absent until its
  // state first changes (a PIN card paying with right PINs never has one).
  std::optional<std::string> v = txn.GetAuxHot(key);
  Result<CredentialState> s = DecodeCredentialState(v ? *v : "");
  return s.ok() ? *s : CredentialState{};
}

// RRN: microseconds since the epoch, unique per engine run, in base 36;
// assigned once per request (a payment's transfer carries it, see
// RrnFromUserData).
uint64_t Authorizer::RrnNumber(Plan& p) {
  if (p.rrn_number == 0) {
    p.rrn_number =
        std::max(rrn_last_ + 1, static_cast<uint64_t>(std::max<int64_t>(p.clock.ms, 0)) * 1000);
    NARAE_CHECK(p.rrn_number <= kRrnNumberMax);
    rrn_last_ = p.rrn_number;
  }
  return p.rrn_number;
}

void Authorizer::Respond(Plan& p, RC rc, const TransferId* approval) {
  SetResponseCode(p.response, rc);
  char rrn[kRrnBytes];
  Base36Into(RrnNumber(p), rrn, sizeof rrn);
  p.response.Set(37, std::string_view(rrn, sizeof rrn));
  if (rc == RC::kApproved && approval) {
    char code[6];
    Base36Into(Mix(approval->value.lo ^ approval->value.hi), code, sizeof code);
    p.response.Set(38, std::string_view(code, sizeof code));
  } else {
    p.response.Clear(38);
  }
  if (rc != RC::kApproved) p.response.Clear(54);
}

void Authorizer::ApplyHooked(ledger::Txn& txn, Plan& p) {
  if (p.hook && p.hook->before && p.hook->before(txn)) return;  // the hook answers
  Apply(txn, p);
  if (p.hook && p.hook->after) p.hook->after(txn, p.response);
}

void Authorizer::Apply(ledger::Txn& txn, Plan& p) {
  if (std::optional<std::string> old = Read(txn, p.key)) {
    std::optional<TxnRecord> rec = DecodeRecord(*old);
    if (!rec) {
      Respond(p, RC::kSystemMalfunction, nullptr);
    } else if (rec->kind == Kind::kTombstone) {
      Respond(p, p.kind == Kind::kReversal ? RC::kApproved : RC::kInvalidTransaction, nullptr);
    } else if (rec->digest != p.digest) {
      Respond(p, RC::kDuplicateTransmission, nullptr);
    } else {
      Result<Message> m = Unpack(Bytes(rec->response));
      if (!m.ok()) {
        Respond(p, RC::kSystemMalfunction, nullptr);
      } else {
        // The record holds no PAN: field 2 comes back from this request
        // (the digest matched, so it is the original's).
        std::optional<std::string_view> pan = p.response.Find(2);
        if (pan) m->Set(2, *pan);
        p.response = std::move(*m);
      }
    }
    return;
  }
  if (p.kind == Kind::kDecline) {
    Respond(p, p.decided, nullptr);
    return;
  }
  TxnRecord rec;
  rec.kind = p.kind;
  rec.digest = p.digest;
  rec.amount_minor = p.amount_minor;
  rec.currency = p.currency;
  rec.debit = p.debit;
  rec.credit = p.credit;
  rec.day = p.clock.day;
  rec.cred_key = p.cred_key;
  RC rc = RC::kSystemMalfunction;
  switch (p.kind) {
    case Kind::kHold:
    case Kind::kPurchase:
      rc = ApplyPayment(txn, p, rec);
      break;
    case Kind::kBalance:
      rc = ApplyBalance(txn, p);
      break;
    case Kind::kCompletion:
      rc = ApplyCompletion(txn, p, rec);
      break;
    case Kind::kRefund:
      rc = ApplyRefund(txn, p, rec);
      break;
    case Kind::kReversal:
      rc = ApplyReversal(txn, p, rec);
      break;
    default:
      break;
  }
  const bool approved = rc == RC::kApproved && !rec.transfer.IsZero();
  Respond(p, rc, approved ? &rec.transfer : nullptr);
  rec.response_code = static_cast<uint8_t>(rc);
  // Never store a full PAN (put back from a duplicate's request): packed
  // without field 2, which then goes back into the reply (no Message copy;
  // the PAN waits on the stack, at most 19 digits).
  char pan[kPanBytesMax];
  size_t pan_size = 0;
  const bool has_pan = p.response.Has(2);
  if (has_pan) {
    const std::string_view v = p.response.Get(2);
    if (v.size() > sizeof pan) return;  // not a PAN (n..19): not recorded, the reply still goes
    pan_size = v.size();
    std::memcpy(pan, v.data(), pan_size);
    p.response.Clear(2);
  }
  const Status packed = PackAppend(p.response, &rec.response);  // straight into the record
  if (has_pan) p.response.Set(2, std::string_view(pan, pan_size));
  if (!packed.ok()) return;  // not recorded; the reply still goes out
  Write(txn, p.key, EncodeRecord(rec));
  if (approved && observer_ && p.acquirer_bank.empty()) {  // events are for our merchants
    observer_(txn,
              PaymentChange{static_cast<RequestKind>(p.kind), std::string(p.response.Get(41)),
                            std::string(p.response.Get(37)), p.orig_key, p.rrn_ref, p.amount_minor,
                            p.currency, rec.transfer, p.partial, p.hook != nullptr});
  }
  if (approved && (p.kind == Kind::kHold || p.kind == Kind::kPurchase)) {
    // Key and value as views (PutAux copies them into its row once).
    char rrn_key[kAuxRrnPrefix.size() + kRrnBytes];
    const std::string_view rrn = p.response.Get(37);
    NARAE_CHECK(rrn.size() == kRrnBytes);
    std::memcpy(rrn_key, kAuxRrnPrefix.data(), kAuxRrnPrefix.size());
    std::memcpy(rrn_key + kAuxRrnPrefix.size(), rrn.data(), rrn.size());
    txn.PutAux(std::string_view(rrn_key, sizeof rrn_key),
               std::string_view(p.key).substr(kAuxTxnPrefix.size()));
    // The payment's order reference and RRN for the settlement reports
    // (switch/settlement.hpp), in the same batch as the payment: only when
    // there is more to say than the RRN, which the transfer carries
    // (RrnFromUserData). The HTTP API's payments always get one (its split
    // and its reports read it).
    if (p.payment_info) {
      PaymentInfo info;
      info.order_ref = p.order_ref;
      info.rrn = std::string(p.response.Get(37));
      // Checked once when valid (the common case); again without the order
      // reference when not (not printable: RRN only).
      bool valid = ValidatePaymentInfo(info).ok();
      if (!valid) {
        info.order_ref.clear();
        valid = ValidatePaymentInfo(info).ok();
      }
      if (valid) RecordPaymentInfo(txn, rec.transfer, info);
    }
    if (p.delivery_share_minor != 0) {  // moved by the capture: this purchase, or the 0220
      RecordSplitAtCapture(txn, rec.transfer, p.delivery_share_minor);
      if (p.kind == Kind::kPurchase) {
        (void)MoveDeliveryShare(txn, rec.transfer, p.credit, p.currency, p.amount_minor,
                                rec.transfer);
      }
    }
  }
}

std::optional<RC> Authorizer::CredentialStep(CredentialState& st, Plan& p) {
  if (st.pin_tries >= options_.pin_tries_max) return RC::kPinTriesExceeded;
  if (p.pin_present && p.pin_wrong) {
    st.pin_tries++;
    if (st.pin_tries < options_.pin_tries_max) return RC::kIncorrectPin;
    if (p.card) {
      Card blocked = *p.card;
      blocked.status = RecordStatus::kPinBlocked;
      p.card_update = blocked;
      if (pin_blocked_.size() < kPinBlockedTrackedMax) {
        pin_blocked_.insert(p.cred_key);
      } else {
        pin_blocked_all_ = true;  // too many to track: always read the state
      }
    }
    return RC::kPinTriesExceeded;
  }
  if (p.pin_present) st.pin_tries = 0;
  if (p.has_atc) {
    std::optional<uint16_t> last;
    if (st.has_atc) last = st.last_atc;
    if (crypto::CheckAtc(last, p.atc, options_.atc_jump_max) == crypto::AtcDecision::kReplay) {
      return RC::kDoNotHonour;
    }
    st.has_atc = true;
    st.last_atc = p.atc;
  }
  if (p.has_sim_counter) {
    if (p.sim_counter <= st.sim_counter) return RC::kRestrictedCard;
    if (p.sim_counter - st.sim_counter > options_.sim_counter_window) return RC::kDoNotHonour;
    st.sim_counter = p.sim_counter;
  }
  return std::nullopt;
}

void Authorizer::SetAvailableBalance(ledger::Txn& txn, Plan& p, AccountId account) {
  std::optional<ledger::Account> a = txn.PeekAccount(account);
  if (!a) return;
  __int128 ledger_balance = static_cast<__int128>(a->credits_posted) - a->debits_posted;
  __int128 available = ledger_balance - a->debits_pending - a->minimum_balance_minor;
  auto amount = [&](uint8_t type, __int128 v) {
    AdditionalAmount x;
    x.amount_type = type;
    x.currency = static_cast<uint16_t>(a->ledger);
    x.negative = v < 0;
    __int128 mag = v < 0 ? -v : v;
    x.amount_minor = static_cast<uint64_t>(std::min<__int128>(mag, 999'999'999'999));
    return x;
  };
  AdditionalAmount list[2];  // on the stack: no vector per approval
  size_t count = 0;
  if (p.kind == Kind::kBalance) list[count++] = amount(kAmountTypeLedgerBalance, ledger_balance);
  list[count++] = amount(kAmountTypeAvailableBalance, available);
  Result<std::string> f = FormatAdditionalAmounts(std::span<const AdditionalAmount>(list, count));
  if (f.ok()) p.response.Set(54, *f);
}

RC Authorizer::ApplyPayment(ledger::Txn& txn, Plan& p, TxnRecord& rec) {
  // Counters are kept only for the limits the credential has (limits are
  // fixed when it is issued): a card without any writes no state for an
  // approval that changes nothing else.
  const RiskLimits& l = *p.limits;
  const bool count_day = l.daily_amount_max_minor != 0 || l.daily_count_max != 0;
  const bool count_minute = l.per_minute_max != 0;
  // Without a PIN, ATC, SIM counter or counted limit the state could only
  // say "PIN tries exhausted", which also blocks the card in its record (and
  // in the cache once durable): it is read for the cards this process
  // blocked so (pin_blocked_), else the read (mostly a miss: no state was
  // ever written) is skipped.
  const bool read_state = p.pin_present || p.has_atc || p.has_sim_counter || count_day ||
                          count_minute || pin_blocked_all_ ||
                          (!pin_blocked_.empty() && pin_blocked_.count(p.cred_key) != 0);
  CredentialState st = read_state ? ReadState(txn, p.cred_key) : CredentialState{};
  const CredentialState before = st;
  std::optional<RC> decline = CredentialStep(st, p);
  RC rc = RC::kApproved;
  if (decline) rc = *decline;
  if (rc == RC::kApproved) {
    if (count_day && st.day != p.clock.day) {
      st.day = p.clock.day;
      st.day_amount_minor = 0;
      st.day_count = 0;
    }
    if (count_minute && st.minute != p.clock.minute) {
      st.minute = p.clock.minute;
      st.minute_count = 0;
    }
    bool overflow = st.day_amount_minor > UINT64_MAX - p.amount_minor;
    if (l.daily_amount_max_minor != 0 &&
        (overflow || st.day_amount_minor + p.amount_minor > l.daily_amount_max_minor)) {
      rc = RC::kExceedsWithdrawalLimit;
    } else if (l.daily_count_max != 0 && st.day_count >= l.daily_count_max) {
      rc = RC::kExceedsFrequencyLimit;
    } else if (l.per_minute_max != 0 && st.minute_count >= l.per_minute_max) {
      rc = RC::kExceedsFrequencyLimit;
    }
  }
  CredentialState bank_state;
  if (rc == RC::kApproved && p.stand_in) rc = ApplyStandIn(txn, p, &bank_state);
  if (rc == RC::kApproved) {
    ledger::Transfer t;
    t.id = RequestTransferId(p.key, 1);
    t.debit_account_id = p.debit;
    t.credit_account_id = p.credit;
    t.amount_minor = p.amount_minor;
    t.ledger = p.currency;
    // The RRN rides on the transfer: settlement finds it there when the
    // payment has no st/p record (no order reference, no split).
    // An st/p record only when there is more to say than the RRN (an order
    // reference, a split; every HTTP API payment: its split and reports).
    PaymentInfo info{p.order_ref, Base36(RrnNumber(p), kRrnBytes), {}};
    if (!ValidatePaymentInfo(info).ok()) p.order_ref.clear();  // not printable: RRN only
    p.payment_info = !p.order_ref.empty() || p.delivery_share_minor != 0 || p.hook;
    t.user_data_128 =
        U128{(p.payment_info ? kRrnWithInfoTag : kRrnOnlyTag) | RrnNumber(p), p.digest};
    if (p.kind == Kind::kHold) {
      t.code = kCodeHold;
      t.flags = tf::kPending;
      t.timeout_s = p.timeout_s;
    } else {
      t.code = kCodePurchase;
    }
    if (!p.acquirer_bank.empty()) t.code = kCodeInterbankPayment;  // ours at their merchant
    std::vector<ledger::TransferOutcome> out = txn.CreateTransfers({&t, 1});
    rc = out.size() == 1 ? MapTransferResult(out[0].result) : RC::kSystemMalfunction;
    if (rc == RC::kApproved) {
      rec.transfer = t.id;
      rec.captured_minor = p.kind == Kind::kPurchase ? p.amount_minor : 0;
      if (count_day) {
        st.day_amount_minor += p.amount_minor;
        st.day_count++;
      }
      if (count_minute) st.minute_count++;
      if (p.stand_in) {
        // The other bank's exposure grows; its interbank balance is not the
        // cardholder's and is never shown (no field 54).
        bank_state.day_amount_minor += p.amount_minor;
        bank_state.day_count++;
        Write(txn, p.bank_state_key, EncodeCredentialState(bank_state));
      } else {
        SetAvailableBalance(txn, p, p.debit);
      }
    }
  }
  if (!(st == before)) Write(txn, p.cred_key, EncodeCredentialState(st));
  if (p.card_update) {
    Write(txn, CardKey(p.card_update->card_id), EncodeCard(*p.card_update));
  }
  return rc;
}

RC Authorizer::ApplyBalance(ledger::Txn& txn, Plan& p) {
  CredentialState st = ReadState(txn, p.cred_key);
  const CredentialState before = st;
  std::optional<RC> decline = CredentialStep(st, p);
  if (!(st == before)) Write(txn, p.cred_key, EncodeCredentialState(st));
  if (p.card_update) {
    Write(txn, CardKey(p.card_update->card_id), EncodeCard(*p.card_update));
  }
  if (decline) return *decline;
  SetAvailableBalance(txn, p, p.debit);
  return RC::kApproved;
}

std::optional<TxnRecord> ReadRecord(std::optional<std::string> v) {
  if (!v) return std::nullopt;
  return DecodeRecord(*v);
}

// The other bank's stand-in exposure of the day: approved while the day's
// approvals plus this one stay within the agreement's daily maximum (61).
// `bank_state` is the state to write once the transfer is created.
RC Authorizer::ApplyStandIn(ledger::Txn& txn, Plan& p, CredentialState* bank_state) {
  NARAE_CHECK(p.stand_in.has_value() && !p.bank_state_key.empty());
  *bank_state = ReadState(txn, p.bank_state_key);
  if (bank_state->day != p.clock.day) {
    bank_state->day = p.clock.day;
    bank_state->day_amount_minor = 0;
    bank_state->day_count = 0;
  }
  const uint64_t used = bank_state->day_amount_minor;
  if (used > UINT64_MAX - p.amount_minor || used + p.amount_minor > p.stand_in->daily_max_minor) {
    return RC::kExceedsWithdrawalLimit;
  }
  return RC::kApproved;
}

void Authorizer::ReleaseDaily(ledger::Txn& txn, const TxnRecord& orig, uint64_t amount) {
  if (amount == 0) return;
  // A stand-in payment (debited to an interbank account) gives back its
  // bank's exposure of the day, too.
  const std::string bank_key = ExposureKey(*bank_->other_banks(), orig.debit);
  if (!bank_key.empty()) {
    CredentialState b = ReadState(txn, bank_key);
    if (b.day == orig.day) {
      b.day_amount_minor -= std::min(amount, b.day_amount_minor);
      Write(txn, bank_key, EncodeCredentialState(b));
    }
  }
  if (orig.cred_key.empty()) return;
  CredentialState st = ReadState(txn, orig.cred_key);
  if (st.day != orig.day) return;
  st.day_amount_minor -= std::min(amount, st.day_amount_minor);
  Write(txn, orig.cred_key, EncodeCredentialState(st));
}

RC Authorizer::ApplyCompletion(ledger::Txn& txn, Plan& p, TxnRecord& rec) {
  std::optional<TxnRecord> orig = ReadRecord(Read(txn, p.orig_key));
  if (!orig || orig->kind == Kind::kTombstone) return RC::kUnableToLocateOriginal;
  if (orig->kind != Kind::kHold || orig->response_code != 0) return RC::kInvalidTransaction;
  if (orig->currency != p.currency) return RC::kInvalidTransaction;
  std::optional<ledger::HoldInfo> hold = txn.PeekHold(orig->transfer);
  if (!hold) return RC::kUnableToLocateOriginal;
  if (hold->state != ledger::HoldState::kPending) return RC::kInvalidTransaction;
  if (p.amount_minor > hold->hold.amount_minor) return RC::kInvalidAmount;
  ledger::Transfer t;
  t.id = RequestTransferId(p.key, 1);
  t.pending_id = orig->transfer;
  t.amount_minor = p.amount_minor;
  t.flags = tf::kPostPendingTransfer;
  std::vector<ledger::TransferOutcome> out = txn.CreateTransfers({&t, 1});
  RC rc = out.size() == 1 ? MapTransferResult(out[0].result) : RC::kSystemMalfunction;
  if (rc != RC::kApproved) return rc;
  rec.transfer = t.id;
  rec.debit = orig->debit;
  rec.credit = orig->credit;
  rec.cred_key = orig->cred_key;
  rec.captured_minor = p.amount_minor;  // what a reversal of this completion may return
  rec.orig_key = p.orig_key.substr(kAuxTxnPrefix.size());
  orig->captured_minor = p.amount_minor;
  Write(txn, p.orig_key, EncodeRecord(*orig));
  // A delivery split recorded with the hold (settlement.hpp): its share goes
  // to the logistics office with this capture, whichever channel sent it.
  if (MayHavePaymentInfo(hold->hold.user_data_128)) {  // else no st/p: no split (no read)
    (void)MoveDeliveryShare(txn, orig->transfer, orig->credit, orig->currency, p.amount_minor,
                            t.id);
  }
  ReleaseDaily(txn, *orig, hold->hold.amount_minor - p.amount_minor);
  return RC::kApproved;
}

RC Authorizer::ApplyRefund(ledger::Txn& txn, Plan& p, TxnRecord& rec) {
  std::string orig_key = p.orig_key;
  if (orig_key.empty()) {
    std::optional<std::string> k = Read(txn, std::string(kAuxRrnPrefix) + p.rrn_ref);
    if (!k) return RC::kUnableToLocateOriginal;
    orig_key = std::string(kAuxTxnPrefix) + *k;
  }
  std::optional<TxnRecord> orig = ReadRecord(Read(txn, orig_key));
  if (!orig || orig->kind == Kind::kTombstone) return RC::kUnableToLocateOriginal;
  if ((orig->kind != Kind::kHold && orig->kind != Kind::kPurchase) || orig->response_code != 0 ||
      (orig->cred_key != p.cred_key && !(p.hook && p.cred_key.empty())) ||
      orig->currency != p.currency) {
    return RC::kInvalidTransaction;
  }
  uint64_t net = orig->captured_minor - std::min(orig->refunded_minor, orig->captured_minor);
  if (p.amount_minor > net) return RC::kInvalidAmount;
  ledger::Transfer t;
  t.id = RequestTransferId(p.key, 1);
  t.debit_account_id = orig->credit;
  t.credit_account_id = orig->debit;
  t.amount_minor = p.amount_minor;
  t.ledger = orig->currency;
  t.code = kCodeRefund;
  t.user_data_128 = U128{0, orig->digest};
  std::vector<ledger::TransferOutcome> out = txn.CreateTransfers({&t, 1});
  RC rc = out.size() == 1 ? MapTransferResult(out[0].result) : RC::kSystemMalfunction;
  if (rc != RC::kApproved) return rc;
  rec.transfer = t.id;
  rec.debit = orig->credit;
  rec.credit = orig->debit;
  orig->refunded_minor += p.amount_minor;
  Write(txn, orig_key, EncodeRecord(*orig));
  return RC::kApproved;
}

RC Authorizer::ReversePosted(ledger::Txn& txn, Plan& p, TxnRecord& orig, TxnRecord& rec) {
  uint64_t net = orig.captured_minor - std::min(orig.refunded_minor, orig.captured_minor);
  uint64_t keep = p.partial ? p.remaining_minor : 0;
  if (keep > orig.amount_minor) return RC::kInvalidAmount;
  if (keep >= net) return RC::kApproved;  // nothing left to reverse
  uint64_t amount = net - keep;
  ledger::Transfer t;
  t.id = RequestTransferId(p.key, 1);
  t.debit_account_id = orig.credit;
  t.credit_account_id = orig.debit;
  t.amount_minor = amount;
  t.ledger = orig.currency;
  t.code = kCodeReversal;
  t.user_data_128 = U128{0, orig.digest};
  std::vector<ledger::TransferOutcome> out = txn.CreateTransfers({&t, 1});
  RC rc = out.size() == 1 ? MapTransferResult(out[0].result) : RC::kSystemMalfunction;
  if (rc != RC::kApproved) return rc;
  rec.transfer = t.id;
  orig.captured_minor -= amount;
  Write(txn, p.orig_key, EncodeRecord(orig));
  // The delivery share follows what stays captured (settlement.hpp).
  (void)MoveDeliveryShare(txn, orig.transfer, orig.credit, orig.currency, orig.captured_minor,
                          t.id);
  ReleaseDaily(txn, orig, amount);
  return RC::kApproved;
}

// A reversal of a 0220 completion returns what the completion posted (less
// field 95's replacement amount), capped by what still stands on its hold
// after refunds and reversals of the 0100; the hold is not restored.
RC Authorizer::ReverseCompletion(ledger::Txn& txn, Plan& p, TxnRecord& completion, TxnRecord& rec) {
  if (completion.orig_key.empty()) return RC::kInvalidTransaction;  // a version 1 record
  const std::string hold_key = std::string(kAuxTxnPrefix) + completion.orig_key;
  std::optional<TxnRecord> hold = ReadRecord(Read(txn, hold_key));
  if (!hold || hold->kind != Kind::kHold) return RC::kSystemMalfunction;
  uint64_t keep = p.partial ? p.remaining_minor : 0;
  if (keep > completion.amount_minor) return RC::kInvalidAmount;
  uint64_t hold_net = hold->captured_minor - std::min(hold->refunded_minor, hold->captured_minor);
  uint64_t standing = std::min(completion.captured_minor, hold_net);
  if (keep >= standing) return RC::kApproved;  // nothing left to reverse
  uint64_t amount = standing - keep;
  ledger::Transfer t;
  t.id = RequestTransferId(p.key, 1);
  t.debit_account_id = completion.credit;
  t.credit_account_id = completion.debit;
  t.amount_minor = amount;
  t.ledger = hold->currency;
  t.code = kCodeReversal;
  t.user_data_128 = U128{0, hold->digest};
  std::vector<ledger::TransferOutcome> out = txn.CreateTransfers({&t, 1});
  RC rc = out.size() == 1 ? MapTransferResult(out[0].result) : RC::kSystemMalfunction;
  if (rc != RC::kApproved) return rc;
  rec.transfer = t.id;
  completion.captured_minor -= amount;
  hold->captured_minor -= amount;
  Write(txn, p.orig_key, EncodeRecord(completion));
  Write(txn, hold_key, EncodeRecord(*hold));
  // The delivery share follows what stays captured (settlement.hpp).
  (void)MoveDeliveryShare(txn, hold->transfer, completion.credit, hold->currency,
                          hold->captured_minor, t.id);
  ReleaseDaily(txn, *hold, amount);
  return RC::kApproved;
}

RC Authorizer::ApplyReversal(ledger::Txn& txn, Plan& p, TxnRecord& rec) {
  std::optional<TxnRecord> orig = ReadRecord(Read(txn, p.orig_key));
  if (!orig) {
    TxnRecord tomb;
    tomb.kind = Kind::kTombstone;
    tomb.response_code = static_cast<uint8_t>(RC::kUnableToLocateOriginal);
    Write(txn, p.orig_key, EncodeRecord(tomb));
    return RC::kUnableToLocateOriginal;
  }
  if (orig->kind == Kind::kTombstone) return RC::kUnableToLocateOriginal;
  rec.debit = orig->debit;
  rec.credit = orig->credit;
  rec.currency = orig->currency;
  rec.cred_key = orig->cred_key;
  if (orig->response_code != 0) return RC::kApproved;  // a declined original moved nothing
  if (orig->kind == Kind::kPurchase) return ReversePosted(txn, p, *orig, rec);
  if (orig->kind == Kind::kCompletion) return ReverseCompletion(txn, p, *orig, rec);
  if (orig->kind != Kind::kHold) return RC::kInvalidTransaction;
  std::optional<ledger::HoldInfo> hold = txn.PeekHold(orig->transfer);
  if (!hold) return RC::kUnableToLocateOriginal;
  if (hold->state == ledger::HoldState::kPosted) return ReversePosted(txn, p, *orig, rec);
  if (hold->state != ledger::HoldState::kPending) return RC::kApproved;  // already released
  uint64_t held = hold->hold.amount_minor;
  if (p.partial && p.remaining_minor > orig->amount_minor) return RC::kInvalidAmount;
  if (p.partial && p.remaining_minor >= held) return RC::kApproved;
  ledger::Transfer v;
  v.id = RequestTransferId(p.key, 1);
  v.pending_id = orig->transfer;
  v.flags = tf::kVoidPendingTransfer;
  std::vector<ledger::Transfer> ts{v};
  if (p.partial) {
    ts[0].flags |= tf::kLinked;
    ledger::Transfer h = hold->hold;
    h.id = RequestTransferId(p.key, 2);
    h.amount_minor = p.remaining_minor;
    h.timestamp = 0;
    h.flags = tf::kPending;
    ts.push_back(h);
  }
  std::vector<ledger::TransferOutcome> out = txn.CreateTransfers(ts);
  if (out.size() != ts.size()) return RC::kSystemMalfunction;
  for (const ledger::TransferOutcome& o : out) {
    RC rc = MapTransferResult(o.result);
    if (rc != RC::kApproved) return rc;
  }
  rec.transfer = v.id;
  if (p.partial) {
    CarryPaymentInfo(txn, orig->transfer, ts[1].id);  // found by the current hold
    orig->transfer = ts[1].id;
    Write(txn, p.orig_key, EncodeRecord(*orig));
  }
  ReleaseDaily(txn, *orig, held - (p.partial ? p.remaining_minor : 0));
  return RC::kApproved;
}

// ---- Acknowledging thread ------------------------------------------------------

void Authorizer::Finish(Plan& p, const Status& status) {
  Message& resp = p.response;
  const bool failed = !status.ok();
  if (failed) {
    SetResponseCode(resp, status.code() == StatusCode::kUnavailable ? RC::kIssuerUnavailable
                                                                    : RC::kSystemMalfunction);
    resp.Clear(38);
    resp.Clear(54);
  }
  if (!failed && p.card_update) bank_->Update(*p.card_update);
  if (p.card_key && p.arqc.size() == 8) {
    std::string_view arc = resp.Get(39);
    Result<crypto::Bytes> arpc = crypto::EmvArpcMethod1(*p.card_key, p.arqc, Bytes(arc));
    if (arpc.ok()) {
      std::string f55;
      PutTlv(&f55, 0x91, std::string(arpc->begin(), arpc->end()) + std::string(arc));
      resp.Set(55, f55);
    }
  }
  if (p.mac_key) {
    int mac_field = resp.NextField(64) != 0 ? 128 : 64;
    resp.Set(mac_field, std::string(8, '\0'));
    Result<std::vector<uint8_t>> data = MacData(resp);
    Result<crypto::Bytes> mac =
        data.ok() ? crypto::Iso8583Mac(*p.mac_key, *data) : Result<crypto::Bytes>(data.status());
    if (mac.ok())
      resp.SetBytes(mac_field, *mac);
    else
      resp.Clear(mac_field);
  }
  p.reply(std::move(resp));
}

}  // namespace

Result<std::unique_ptr<IsoHandler>> MakeAuthorizerWithOptions(const AuthorizerDeps& deps,
                                                              AuthorizerOptions options) {
  if (!deps.ledger || !deps.keys)
    return Status::InvalidArgument("authorizer needs a ledger and keys");
  Result<std::unique_ptr<BankCache>> bank = BankCache::Load(*deps.ledger);
  if (!bank.ok()) return bank.status();
  if (!(*bank)->config()) {
    return Status::FailedPrecondition("the ledger holds no bank (run `narae demo seed`)");
  }
  std::unique_ptr<IsoHandler> h =
      std::make_unique<Authorizer>(deps, std::move(options), std::move(*bank));
  return h;
}

std::optional<PaymentRecord> LookupPaymentByRrn(ledger::Ledger& ledger, std::string_view rrn) {
  if (rrn.empty() || rrn.size() > 12) return std::nullopt;
  std::optional<std::string> key = ledger.GetAux(std::string(kAuxRrnPrefix) + std::string(rrn));
  if (!key) return std::nullopt;
  constexpr size_t kKeyBytes = kTerminalIdBytes + 4 + 10 + 6;
  if (key->size() != kKeyBytes) return std::nullopt;
  std::string full = std::string(kAuxTxnPrefix) + *key;
  std::optional<TxnRecord> rec = ReadRecord(ledger.GetAux(full));
  if (!rec || (rec->kind != Kind::kHold && rec->kind != Kind::kPurchase)) return std::nullopt;
  PaymentRecord out;
  out.request_key = std::move(full);
  out.terminal_id = key->substr(0, kTerminalIdBytes);
  out.field7 = key->substr(kTerminalIdBytes + 4, 10);
  out.stan = key->substr(kTerminalIdBytes + 14, 6);
  out.hold = rec->kind == Kind::kHold;
  out.response_code = rec->response_code;
  out.amount_minor = rec->amount_minor;
  out.currency = rec->currency;
  out.debit = rec->debit;
  out.credit = rec->credit;
  out.transfer = rec->transfer;
  out.captured_minor = rec->captured_minor;
  out.refunded_minor = rec->refunded_minor;
  out.cred_key = rec->cred_key;
  return out;
}

std::string RrnFromUserData(const ledger::U128& user_data_128) {
  const uint64_t tag = user_data_128.hi & ~kRrnNumberMax;
  if (tag != kRrnOnlyTag && tag != kRrnWithInfoTag) return "";
  return Base36(user_data_128.hi & kRrnNumberMax, kRrnBytes);
}

std::string LookupPaymentRrn(ledger::Ledger& ledger, const ledger::Transfer& capture) {
  if ((capture.flags & tf::kPostPendingTransfer) == 0)
    return RrnFromUserData(capture.user_data_128);
  std::optional<ledger::Transfer> hold = ledger.LookupTransfer(capture.pending_id);
  return hold ? RrnFromUserData(hold->user_data_128) : std::string();
}

uint64_t ReleaseStandInOnExpiry(ledger::Txn& txn, const std::vector<OtherBank>& banks,
                                const RequestRecord& hold, uint64_t amount_minor) {
  if (hold.kind != RequestKind::kHold || amount_minor == 0) return 0;
  for (const OtherBank& b : banks) {
    for (const InterbankAccount& a : b.accounts) {
      if (a.account != hold.debit) continue;
      const std::string key = BankStateKey(b.id, a.currency);
      std::optional<std::string> v = txn.GetAux(key);
      Result<CredentialState> st = DecodeCredentialState(v ? *v : "");
      if (!st.ok() || st->day != hold.day) return 0;  // another day: already restarted
      const uint64_t released = std::min(amount_minor, st->day_amount_minor);
      st->day_amount_minor -= released;
      txn.PutAux(key, EncodeCredentialState(*st));
      return released;
    }
  }
  return 0;
}

Result<std::unique_ptr<IsoHandler>> MakeAuthorizer(const AuthorizerDeps& deps,
                                                   std::string_view options_json) {
  Result<AuthorizerOptions> o = ParseAuthorizerOptions(options_json);
  if (!o.ok()) return o.status();
  return MakeAuthorizerWithOptions(deps, std::move(*o));
}

// ---- Request records for tools ------------------------------------------------

static_assert(static_cast<uint8_t>(RequestKind::kHold) == static_cast<uint8_t>(Kind::kHold));
static_assert(static_cast<uint8_t>(RequestKind::kPurchase) ==
              static_cast<uint8_t>(Kind::kPurchase));
static_assert(static_cast<uint8_t>(RequestKind::kTombstone) ==
              static_cast<uint8_t>(Kind::kTombstone));
static_assert(kTransferCodeHold == kCodeHold && kTransferCodePurchase == kCodePurchase);
static_assert(kTransferCodeInterbankPayment == kCodeInterbankPayment);
static_assert(kRequestRecordPrefix == kAuxTxnPrefix);

std::optional<RequestRecord> ParseRequestRecord(std::string_view value) {
  std::optional<TxnRecord> r = DecodeRecord(value);
  if (!r) return std::nullopt;
  RequestRecord out;
  out.kind = static_cast<RequestKind>(r->kind);
  out.response_code = r->response_code;
  out.digest = r->digest;
  out.amount_minor = r->amount_minor;
  out.currency = r->currency;
  out.debit = r->debit;
  out.credit = r->credit;
  out.transfer = r->transfer;
  out.captured_minor = r->captured_minor;
  out.refunded_minor = r->refunded_minor;
  out.day = r->day;
  out.cred_key = std::move(r->cred_key);
  if (!r->response.empty()) {
    Result<Message> m = Unpack(Bytes(r->response));
    if (!m.ok()) return std::nullopt;
    out.rrn = std::string(m->Get(37));
  }
  return out;
}

std::string EncodeRequestRecord(const RequestRecord& record) {
  NARAE_CHECK(record.rrn.empty() || record.rrn.size() == 12);
  TxnRecord r;
  r.kind = static_cast<Kind>(record.kind);
  r.response_code = record.response_code;
  r.digest = record.digest;
  r.amount_minor = record.amount_minor;
  r.currency = record.currency;
  r.debit = record.debit;
  r.credit = record.credit;
  r.transfer = record.transfer;
  r.captured_minor = record.captured_minor;
  r.refunded_minor = record.refunded_minor;
  r.day = record.day;
  r.cred_key = record.cred_key;
  if (!record.rrn.empty()) {
    Message m(record.kind == RequestKind::kHold ? "0110" : "0210");
    m.Set(37, record.rrn);
    m.Set(39, ResponseCodeText(static_cast<ResponseCode>(record.response_code)));
    Result<std::vector<uint8_t>> packed = Pack(m);
    NARAE_CHECK(packed.ok());
    r.response.assign(packed->begin(), packed->end());
  }
  return EncodeRecord(r);
}

}  // namespace narae::switching
