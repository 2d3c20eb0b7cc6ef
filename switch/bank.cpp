// Bank records: encodings, the in-memory cache and the administration
// functions used by `narae` and the tests. See bank.hpp.
#include "switch/bank.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>

#include "crypto/crypto.hpp"
#include "switch/admin_ops.hpp"
#include "switch/settlement.hpp"

namespace narae::switching {
namespace {

using json = nlohmann::json;
using ledger::AccountId;
using ledger::U128;

constexpr uint32_t kRecordVersion = 1;
constexpr uint8_t kStateVersion = 1;
constexpr size_t kStateBytes = 1 + 4 + 8 + 4 + 8 + 4 + 4 + 1 + 2 + 8;

std::string IdHex(const AccountId& id) { return id.ToHex(); }
AccountId IdFromHex(const std::string& hex) {
  std::optional<U128> v = U128::Parse(hex, false);
  return v ? AccountId{*v} : AccountId{};
}

RiskLimits LimitsFromJson(const json& j) {
  RiskLimits l;
  l.single_amount_max_minor = j.value("single_amount_max_minor", uint64_t{0});
  l.daily_amount_max_minor = j.value("daily_amount_max_minor", uint64_t{0});
  l.daily_count_max = j.value("daily_count_max", uint32_t{0});
  l.per_minute_max = j.value("per_minute_max", uint32_t{0});
  l.blocked_mccs = j.value("blocked_mccs", std::vector<uint16_t>{});
  if (l.blocked_mccs.size() > kBlockedMccsMax) l.blocked_mccs.resize(kBlockedMccsMax);
  return l;
}

// Runs `decode` on the parsed JSON; any nlohmann exception becomes Corruption.
template <typename T, typename F>
Result<T> DecodeJson(std::string_view text, const char* what, F decode) {
  try {
    json j = json::parse(text);
    if (j.value("v", 0u) != kRecordVersion) {
      return Status::Corruption(std::string(what) + " record has an unknown version");
    }
    return decode(j);
  } catch (const std::exception& e) {
    return Status::Corruption(std::string(what) + " record: " + e.what());
  }
}

void PutBe(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetBe(std::string_view in, size_t* pos, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[(*pos)++]);
  return v;
}

std::string StatusJson(RecordStatus s) { return RecordStatusName(s); }
RecordStatus StatusFromJson(const json& j) {
  std::optional<RecordStatus> s = ParseRecordStatus(j.value("status", std::string("active")));
  return s ? *s : RecordStatus::kBlocked;
}

Result<AccountId> RandomAccountId() {
  Result<crypto::Bytes> r = crypto::RandomBytes(16);
  if (!r.ok()) return r.status();
  U128 v;
  for (int i = 0; i < 8; ++i) v.hi = (v.hi << 8) | (*r)[i];
  for (int i = 8; i < 16; ++i) v.lo = (v.lo << 8) | (*r)[i];
  v.hi &= 0x7fffffffffffffffull;  // never int max
  if (v.IsZero()) v.lo = 1;
  return AccountId{v};
}

Result<std::string> RandomDigits(size_t n) {
  Result<crypto::Bytes> r = crypto::RandomBytes(n);
  if (!r.ok()) return r.status();
  std::string s;
  for (uint8_t b : *r) s.push_back(static_cast<char>('0' + b % 10));
  return s;
}

std::string ZeroPad(uint64_t v, size_t width) {
  std::string s = std::to_string(v);
  if (s.size() < width) s.insert(0, width - s.size(), '0');
  return s;
}

// YYMM `years` after now (UTC).
std::string ExpiryFromNow(int years) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  int yy = (tm.tm_year + 1900 + years) % 100;
  return ZeroPad(static_cast<uint64_t>(yy), 2) + ZeroPad(static_cast<uint64_t>(tm.tm_mon + 1), 2);
}

Status CreateLedgerAccounts(ledger::Ledger& ledger, const std::vector<ledger::Account>& accounts) {
  Result<std::vector<ledger::AccountOutcome>> r = ledger.CreateAccounts(accounts);
  if (!r.ok()) return r.status();
  for (size_t i = 0; i < r->size(); ++i) {
    if ((*r)[i].result != ledger::CreateAccountResult::kOk) {
      return Status::FailedPrecondition(std::string("create account: ") +
                                        ledger::ResultName((*r)[i].result));
    }
  }
  return Status::Ok();
}

ledger::Account NewAccount(AccountId id, uint16_t currency, ledger::AccountCode code,
                           uint16_t flags = 0, uint64_t minimum = 0) {
  ledger::Account a;
  a.id = id;
  a.ledger = currency;
  a.code = static_cast<uint16_t>(code);
  a.flags = flags;
  a.minimum_balance_minor = minimum;
  return a;
}

Result<ledger::TransferId> RandomTransferId() {
  Result<AccountId> a = RandomAccountId();
  if (!a.ok()) return a.status();
  return ledger::TransferId{a->value};
}

Status Transfer(ledger::Ledger& ledger, AccountId from, AccountId to, uint16_t currency,
                uint64_t amount) {
  Result<ledger::TransferId> id = RandomTransferId();
  if (!id.ok()) return id.status();
  ledger::Transfer t;
  t.id = *id;
  t.debit_account_id = from;
  t.credit_account_id = to;
  t.amount_minor = amount;
  t.ledger = currency;
  t.code = 1;  // deposit
  Result<std::vector<ledger::TransferOutcome>> r = ledger.CreateTransfers({&t, 1});
  if (!r.ok()) return r.status();
  if (r->at(0).result != ledger::CreateTransferResult::kOk) {
    return Status::FailedPrecondition(std::string("deposit: ") +
                                      ledger::ResultName(r->at(0).result));
  }
  return Status::Ok();
}

Result<std::string> KeyHex(crypto::KeyStore& keys, const std::string& id, crypto::KeyType type) {
  Result<crypto::SecretBytes> k = keys.Use(id, type);
  if (!k.ok()) return k.status();
  return crypto::ToHex(k->view());
}

bool IsDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

// Declared in admin_ops.hpp with the other record JSON of the bank commands.
nlohmann::json LimitsJson(const RiskLimits& l) {
  return nlohmann::json{{"single_amount_max_minor", l.single_amount_max_minor},
                        {"daily_amount_max_minor", l.daily_amount_max_minor},
                        {"daily_count_max", l.daily_count_max},
                        {"per_minute_max", l.per_minute_max},
                        {"blocked_mccs", l.blocked_mccs}};
}

const char* RecordStatusName(RecordStatus status) {
  switch (status) {
    case RecordStatus::kActive:
      return "active";
    case RecordStatus::kBlocked:
      return "blocked";
    case RecordStatus::kLost:
      return "lost";
    case RecordStatus::kStolen:
      return "stolen";
    case RecordStatus::kExpired:
      return "expired";
    case RecordStatus::kPinBlocked:
      return "pin_blocked";
    case RecordStatus::kSuspended:
      return "suspended";
    case RecordStatus::kReplaced:
      return "replaced";
  }
  return "unknown";
}

std::optional<RecordStatus> ParseRecordStatus(std::string_view name) {
  for (RecordStatus s : {RecordStatus::kActive, RecordStatus::kBlocked, RecordStatus::kLost,
                         RecordStatus::kStolen, RecordStatus::kExpired, RecordStatus::kPinBlocked,
                         RecordStatus::kSuspended, RecordStatus::kReplaced}) {
    if (name == RecordStatusName(s)) return s;
  }
  return std::nullopt;
}

const BankAccounts* BankConfig::ForCurrency(uint16_t currency) const {
  for (const BankAccounts& a : accounts) {
    if (a.currency == currency) return &a;
  }
  return nullptr;
}

const MerchantCurrency* Merchant::ForCurrency(uint16_t currency) const {
  for (const MerchantCurrency& c : currencies) {
    if (c.currency == currency) return &c;
  }
  return nullptr;
}

// ---- Credential state (binary) ----

std::string EncodeCredentialState(const CredentialState& s) {
  std::string out;
  out.reserve(kStateBytes);
  PutBe(&out, kStateVersion, 1);
  PutBe(&out, s.day, 4);
  PutBe(&out, s.day_amount_minor, 8);
  PutBe(&out, s.day_count, 4);
  PutBe(&out, s.minute, 8);
  PutBe(&out, s.minute_count, 4);
  PutBe(&out, s.pin_tries, 4);
  PutBe(&out, s.has_atc ? 1 : 0, 1);
  PutBe(&out, s.last_atc, 2);
  PutBe(&out, s.sim_counter, 8);
  NARAE_CHECK(out.size() == kStateBytes);
  return out;
}

Result<CredentialState> DecodeCredentialState(std::string_view bytes) {
  CredentialState s;
  if (bytes.empty()) return s;
  if (bytes.size() != kStateBytes || static_cast<uint8_t>(bytes[0]) != kStateVersion) {
    return Status::Corruption("credential state record has a bad size or version");
  }
  size_t pos = 1;
  s.day = static_cast<uint32_t>(GetBe(bytes, &pos, 4));
  s.day_amount_minor = GetBe(bytes, &pos, 8);
  s.day_count = static_cast<uint32_t>(GetBe(bytes, &pos, 4));
  s.minute = GetBe(bytes, &pos, 8);
  s.minute_count = static_cast<uint32_t>(GetBe(bytes, &pos, 4));
  s.pin_tries = static_cast<uint32_t>(GetBe(bytes, &pos, 4));
  s.has_atc = GetBe(bytes, &pos, 1) != 0;
  s.last_atc = static_cast<uint16_t>(GetBe(bytes, &pos, 2));
  s.sim_counter = GetBe(bytes, &pos, 8);
  NARAE_CHECK(pos == kStateBytes);
  return s;
}

// ---- JSON records ----

std::string EncodeBankConfig(const BankConfig& c) {
  json accounts = json::array();
  for (const BankAccounts& a : c.accounts) {
    accounts.push_back({{"currency", a.currency},
                        {"funding", IdHex(a.funding)},
                        {"fee_income", IdHex(a.fee_income)},
                        {"logistics", IdHex(a.logistics)},
                        {"central_bank", IdHex(a.central_bank)}});
  }
  return json{{"v", kRecordVersion},
              {"bin", c.bin},
              {"acquirer_id", c.acquirer_id},
              {"bank_id", c.bank_id},
              {"token_prefix", c.token_prefix},
              {"accounts", accounts},
              {"next_pan_sequence", c.next_pan_sequence},
              {"next_token_sequence", c.next_token_sequence}}
      .dump();
}

Result<BankConfig> DecodeBankConfig(std::string_view text) {
  return DecodeJson<BankConfig>(text, "bank config", [](const json& j) -> Result<BankConfig> {
    BankConfig c;
    c.bin = j.at("bin").get<std::string>();
    c.acquirer_id = j.at("acquirer_id").get<std::string>();
    c.bank_id = j.value("bank_id", std::string());
    c.token_prefix = j.value("token_prefix", std::string("9410"));
    for (const json& a : j.at("accounts")) {
      BankAccounts b;
      b.currency = a.at("currency").get<uint16_t>();
      b.funding = IdFromHex(a.at("funding").get<std::string>());
      b.fee_income = IdFromHex(a.at("fee_income").get<std::string>());
      b.logistics = IdFromHex(a.at("logistics").get<std::string>());
      b.central_bank = IdFromHex(a.at("central_bank").get<std::string>());
      c.accounts.push_back(b);
    }
    c.next_pan_sequence = j.value("next_pan_sequence", uint64_t{1});
    c.next_token_sequence = j.value("next_token_sequence", uint64_t{1});
    return c;
  });
}

std::string EncodeMerchant(const Merchant& m) {
  json cur = json::array();
  for (const MerchantCurrency& c : m.currencies) {
    cur.push_back({{"currency", c.currency},
                   {"clearing", IdHex(c.clearing)},
                   {"settlement", IdHex(c.settlement)}});
  }
  return json{{"v", kRecordVersion},
              {"id", m.id},
              {"name", m.name},
              {"mcc", m.mcc},
              {"status", StatusJson(m.status)},
              {"currencies", cur},
              {"fee_bps", m.fee_bps},
              {"fee_fixed_minor", m.fee_fixed_minor},
              {"api_key_id", m.api_key_id}}
      .dump();
}

Result<Merchant> DecodeMerchant(std::string_view text) {
  return DecodeJson<Merchant>(text, "merchant", [](const json& j) -> Result<Merchant> {
    Merchant m;
    m.id = j.at("id").get<std::string>();
    m.name = j.value("name", std::string());
    m.mcc = j.at("mcc").get<uint16_t>();
    m.status = StatusFromJson(j);
    for (const json& c : j.at("currencies")) {
      MerchantCurrency mc;
      mc.currency = c.at("currency").get<uint16_t>();
      mc.clearing = IdFromHex(c.at("clearing").get<std::string>());
      mc.settlement = IdFromHex(c.at("settlement").get<std::string>());
      m.currencies.push_back(mc);
    }
    m.fee_bps = j.value("fee_bps", uint32_t{0});
    m.fee_fixed_minor = j.value("fee_fixed_minor", uint64_t{0});
    m.api_key_id = j.value("api_key_id", std::string());
    return m;
  });
}

std::string EncodeTerminal(const Terminal& t) {
  return json{{"v", kRecordVersion},          {"id", t.id},
              {"merchant_id", t.merchant_id}, {"status", StatusJson(t.status)},
              {"tpk_key_id", t.tpk_key_id},   {"mac_key_id", t.mac_key_id}}
      .dump();
}

Result<Terminal> DecodeTerminal(std::string_view text) {
  return DecodeJson<Terminal>(text, "terminal", [](const json& j) -> Result<Terminal> {
    Terminal t;
    t.id = j.at("id").get<std::string>();
    t.merchant_id = j.at("merchant_id").get<std::string>();
    t.status = StatusFromJson(j);
    t.tpk_key_id = j.value("tpk_key_id", std::string());
    t.mac_key_id = j.value("mac_key_id", std::string());
    return t;
  });
}

std::string EncodeCard(const Card& c) {
  return json{{"v", kRecordVersion},
              {"card_id", c.card_id},
              {"pan_hash", c.pan_hash},
              {"masked_pan", c.masked_pan},
              {"expiry", c.expiry},
              {"service_code", c.service_code},
              {"psn", c.psn},
              {"status", StatusJson(c.status)},
              {"account_id", IdHex(c.account_id)},
              {"currency", c.currency},
              {"pvv", c.pvv},
              {"pvki", c.pvki},
              {"limits", LimitsJson(c.limits)},
              {"replaced_by", c.replaced_by}}
      .dump();
}

Result<Card> DecodeCard(std::string_view text) {
  return DecodeJson<Card>(text, "card", [](const json& j) -> Result<Card> {
    Card c;
    c.card_id = j.at("card_id").get<std::string>();
    c.pan_hash = j.at("pan_hash").get<std::string>();
    c.masked_pan = j.value("masked_pan", std::string());
    c.expiry = j.at("expiry").get<std::string>();
    c.service_code = j.value("service_code", std::string("201"));
    c.psn = j.value("psn", std::string("00"));
    c.status = StatusFromJson(j);
    c.account_id = IdFromHex(j.at("account_id").get<std::string>());
    c.currency = j.at("currency").get<uint16_t>();
    c.pvv = j.at("pvv").get<std::string>();
    c.pvki = j.value("pvki", 1);
    c.limits = LimitsFromJson(j.value("limits", json::object()));
    c.replaced_by = j.value("replaced_by", std::string());
    return c;
  });
}

std::string EncodeSim(const Sim& s) {
  return json{{"v", kRecordVersion},
              {"token_id", s.token_id},
              {"iccid", s.iccid},
              {"msisdn", s.msisdn},
              {"account_id", IdHex(s.account_id)},
              {"currency", s.currency},
              {"status", StatusJson(s.status)},
              {"key_generation", s.key_generation},
              {"limits", LimitsJson(s.limits)}}
      .dump();
}

Result<Sim> DecodeSim(std::string_view text) {
  return DecodeJson<Sim>(text, "sim", [](const json& j) -> Result<Sim> {
    Sim s;
    s.token_id = j.at("token_id").get<std::string>();
    s.iccid = j.at("iccid").get<std::string>();
    s.msisdn = j.value("msisdn", std::string());
    s.account_id = IdFromHex(j.at("account_id").get<std::string>());
    s.currency = j.at("currency").get<uint16_t>();
    s.status = StatusFromJson(j);
    s.key_generation = j.value("key_generation", uint32_t{1});
    s.limits = LimitsFromJson(j.value("limits", json::object()));
    return s;
  });
}

std::string EncodeCustomerAccount(const CustomerAccount& a) {
  return json{{"v", kRecordVersion},
              {"id", IdHex(a.id)},
              {"customer", a.customer},
              {"currency", a.currency}}
      .dump();
}

Result<CustomerAccount> DecodeCustomerAccount(std::string_view text) {
  return DecodeJson<CustomerAccount>(text, "account", [](const json& j) -> Result<CustomerAccount> {
    CustomerAccount a;
    a.id = IdFromHex(j.at("id").get<std::string>());
    a.customer = j.value("customer", std::string());
    a.currency = j.at("currency").get<uint16_t>();
    return a;
  });
}

namespace {
// SHA-256(PAN) in lower-case hex into `out` (no allocation); false when the
// hash failed.
bool PanHashHexInto(std::string_view pan, char (&out)[64]) {
  uint8_t digest[32];
  if (!crypto::Sha256Into(
           crypto::ByteView(reinterpret_cast<const uint8_t*>(pan.data()), pan.size()), digest)
           .ok()) {
    return false;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < 32; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
  return true;
}
}  // namespace

std::string PanHashHex(std::string_view pan) {
  char hex[64];
  if (!PanHashHexInto(pan, hex)) return "";
  return std::string(hex, sizeof hex);
}

std::string CardIdFromPan(std::string_view pan) {
  std::string h = PanHashHex(pan);
  return h.empty() ? h : h.substr(0, 32);
}

std::string MerchantKey(std::string_view id) {
  return std::string(kAuxMerchantPrefix) + std::string(id);
}
std::string TerminalKey(std::string_view id) {
  return std::string(kAuxTerminalPrefix) + std::string(id);
}
std::string CardKey(std::string_view card_id) {
  return std::string(kAuxCardPrefix) + std::string(card_id);
}
std::string SimKey(std::string_view token_id) {
  return std::string(kAuxSimPrefix) + std::string(token_id);
}
std::string AccountKey(const AccountId& id) { return std::string(kAuxAccountPrefix) + id.ToHex(); }

// ---- Cache ----

Result<std::unique_ptr<BankCache>> BankCache::Load(ledger::Ledger& ledger) {
  auto cache = std::make_unique<BankCache>();
  Status bad;
  Status s = ledger.ScanAux("bk/", [&](std::string_view key, std::string_view value) {
    if (key == kAuxBankConfig) {
      Result<BankConfig> c = DecodeBankConfig(value);
      if (!c.ok())
        bad = c.status();
      else
        cache->Update(std::move(*c));
    } else if (key.starts_with(kAuxMerchantPrefix)) {
      Result<Merchant> m = DecodeMerchant(value);
      if (!m.ok())
        bad = m.status();
      else
        cache->Update(std::move(*m));
    } else if (key.starts_with(kAuxTerminalPrefix)) {
      Result<Terminal> t = DecodeTerminal(value);
      if (!t.ok())
        bad = t.status();
      else
        cache->Update(std::move(*t));
    } else if (key.starts_with(kAuxCardPrefix)) {
      Result<Card> c = DecodeCard(value);
      if (!c.ok())
        bad = c.status();
      else
        cache->Update(std::move(*c));
    } else if (key.starts_with(kAuxSimPrefix)) {
      Result<Sim> m = DecodeSim(value);
      if (!m.ok())
        bad = m.status();
      else
        cache->Update(std::move(*m));
    }
    return bad.ok();
  });
  NARAE_RETURN_IF_ERROR(s);
  NARAE_RETURN_IF_ERROR(bad);
  Result<std::vector<OtherBank>> banks = ListOtherBanks(ledger);
  if (!banks.ok()) return banks.status();
  cache->Update(std::move(*banks));
  return cache;
}

std::shared_ptr<const BankConfig> BankCache::config() const {
  std::shared_lock lock(mu_);
  return config_;
}

template <typename Map>
static auto FindIn(std::shared_mutex& mu, const Map& map, std::string_view key) {
  std::shared_lock lock(mu);
  auto it = map.find(key);
  return it == map.end() ? typename Map::mapped_type{} : it->second;
}

std::shared_ptr<const Merchant> BankCache::FindMerchant(std::string_view id) const {
  return FindIn(mu_, merchants_, id);
}
std::shared_ptr<const Terminal> BankCache::FindTerminal(std::string_view id) const {
  return FindIn(mu_, terminals_, id);
}
std::shared_ptr<const Card> BankCache::FindCardById(std::string_view card_id) const {
  return FindIn(mu_, cards_, card_id);
}
std::shared_ptr<const Card> BankCache::FindCardByPan(std::string_view pan) const {
  // One hash, on the stack: the card id is its first 32 digits (every card
  // request: the PAN's hash as a string and its id copied cost ~1,500
  // instructions in allocations and copies).
  char hash[64];
  if (!PanHashHexInto(pan, hash)) return nullptr;
  const std::string_view card_id(hash, 32);
  std::shared_ptr<const Card> c;
  {
    std::shared_lock lock(mu_);
    auto it = cards_.find(card_id);
    if (it != cards_.end()) c = it->second;
  }
  if (c && c->pan_hash != std::string_view(hash, sizeof hash)) return nullptr;
  return c;
}
std::shared_ptr<const Sim> BankCache::FindSim(std::string_view token_id) const {
  return FindIn(mu_, sims_, token_id);
}
std::shared_ptr<const std::vector<OtherBank>> BankCache::other_banks() const {
  static const auto kNone = std::make_shared<const std::vector<OtherBank>>();
  std::shared_lock lock(mu_);
  return other_banks_ ? other_banks_ : kNone;
}

void BankCache::Update(BankConfig c) {
  auto p = std::make_shared<const BankConfig>(std::move(c));
  std::unique_lock lock(mu_);
  config_ = std::move(p);
}
void BankCache::Update(Merchant m) {
  std::string key = m.id;
  auto p = std::make_shared<const Merchant>(std::move(m));
  std::unique_lock lock(mu_);
  merchants_[key] = std::move(p);
}
void BankCache::Update(Terminal t) {
  std::string key = t.id;
  auto p = std::make_shared<const Terminal>(std::move(t));
  std::unique_lock lock(mu_);
  terminals_[key] = std::move(p);
}
void BankCache::Update(Card c) {
  std::string key = c.card_id;
  auto p = std::make_shared<const Card>(std::move(c));
  std::unique_lock lock(mu_);
  cards_[key] = std::move(p);
}
void BankCache::Update(Sim s) {
  std::string key = s.token_id;
  auto p = std::make_shared<const Sim>(std::move(s));
  std::unique_lock lock(mu_);
  sims_[key] = std::move(p);
}
void BankCache::Update(std::vector<OtherBank> banks) {
  auto p = std::make_shared<const std::vector<OtherBank>>(std::move(banks));
  std::unique_lock lock(mu_);
  other_banks_ = std::move(p);
}
size_t BankCache::card_count() const {
  std::shared_lock lock(mu_);
  return cards_.size();
}

// ---- Administration ----

Status PutRecord(ledger::Ledger& ledger, std::string_view key, std::string_view value) {
  std::string k(key), v(value);
  return ledger.Execute([k, v](ledger::Txn& txn) { txn.PutAux(k, v); });
}

Result<BankConfig> LoadBankConfig(ledger::Ledger& ledger) {
  std::optional<std::string> v = ledger.GetAux(kAuxBankConfig);
  if (!v) return Status::FailedPrecondition("no bank configuration (run `narae demo seed` first)");
  return DecodeBankConfig(*v);
}

RiskLimits DefaultLimits(uint16_t currency) {
  RiskLimits l;
  // KPW has 100 chon to the won, USD 100 cents to the dollar.
  l.single_amount_max_minor = currency == 408 ? 50'000'000 : 500'000;  // 500,000 won / 5,000 USD
  l.daily_amount_max_minor = currency == 408 ? 5'000'000'000 : 50'000'000;
  l.daily_count_max = 0;
  l.per_minute_max = 0;
  return l;
}

Status EnsureBankKeys(crypto::KeyStore& keys) {
  using crypto::KeyAlgorithm;
  using crypto::KeyType;
  struct Want {
    const char* id;
    KeyType type;
    KeyAlgorithm alg;
    size_t length;
  };
  const Want wants[] = {{kCvkKeyId, KeyType::kCvk, KeyAlgorithm::kTdes, 16},
                        {kPvkKeyId, KeyType::kPvk, KeyAlgorithm::kTdes, 16},
                        {kImkAcKeyId, KeyType::kImkAc, KeyAlgorithm::kTdes, 16},
                        {kImkSimKeyId, KeyType::kImkSim, KeyAlgorithm::kAes, 32},
                        {kStatementKeyId, KeyType::kStatementSigning, KeyAlgorithm::kEd25519, 32}};
  std::vector<crypto::KeyInfo> have = keys.List();
  for (const Want& w : wants) {
    bool exists = std::any_of(have.begin(), have.end(),
                              [&](const crypto::KeyInfo& k) { return k.id == w.id; });
    if (exists) continue;
    Result<crypto::KeyInfo> r = keys.Generate(w.id, w.type, w.alg, w.length);
    if (!r.ok()) return r.status();
  }
  return Status::Ok();
}

Result<AccountId> OpenCustomerAccount(ledger::Ledger& ledger, const OpenAccountRequest& request) {
  Result<BankConfig> config = LoadBankConfig(ledger);
  if (!config.ok()) return config.status();
  const BankAccounts* bank = config->ForCurrency(request.currency);
  if (!bank) {
    return Status::InvalidArgument("the bank has no accounts in currency " +
                                   std::to_string(request.currency));
  }
  if (request.customer.size() > kNameBytesMax) return Status::InvalidArgument("customer too long");
  Result<AccountId> id = RandomAccountId();
  if (!id.ok()) return id.status();
  NARAE_RETURN_IF_ERROR(CreateLedgerAccounts(
      ledger, {NewAccount(*id, request.currency, ledger::AccountCode::kCustomerDeposit,
                          ledger::account_flags::kDebitsMustNotExceedCredits,
                          request.minimum_balance_minor)}));
  CustomerAccount info{*id, request.customer, request.currency};
  NARAE_RETURN_IF_ERROR(PutRecord(ledger, AccountKey(*id), EncodeCustomerAccount(info)));
  if (request.initial_deposit_minor > 0) {
    NARAE_RETURN_IF_ERROR(
        Transfer(ledger, bank->funding, *id, request.currency, request.initial_deposit_minor));
  }
  return *id;
}

Result<Merchant> CreateMerchant(ledger::Ledger& ledger, crypto::KeyStore& keys,
                                const CreateMerchantRequest& request) {
  if (request.id.empty() || request.id.size() > kMerchantIdBytesMax ||
      request.id.find(' ') != std::string::npos) {
    return Status::InvalidArgument("merchant id must be 1..15 characters without spaces");
  }
  if (request.name.size() > kNameBytesMax) return Status::InvalidArgument("name too long");
  if (request.mcc == 0 || request.mcc > 9999) return Status::InvalidArgument("MCC must be 1..9999");
  if (request.currencies.empty() || request.currencies.size() > kMerchantCurrenciesMax) {
    return Status::InvalidArgument("a merchant needs 1..8 currencies");
  }
  if (ledger.GetAux(MerchantKey(request.id))) {
    return Status::AlreadyExists("merchant " + request.id + " exists");
  }
  Merchant m;
  m.id = request.id;
  m.name = request.name;
  m.mcc = request.mcc;
  std::vector<ledger::Account> accounts;
  for (uint16_t cur : request.currencies) {
    if (cur == 0 || cur > 999) return Status::InvalidArgument("currency must be ISO 4217 numeric");
    MerchantCurrency mc;
    mc.currency = cur;
    Result<AccountId> c = RandomAccountId();
    Result<AccountId> s = RandomAccountId();
    if (!c.ok()) return c.status();
    if (!s.ok()) return s.status();
    mc.clearing = *c;
    mc.settlement = *s;
    accounts.push_back(NewAccount(*c, cur, ledger::AccountCode::kMerchantClearing));
    accounts.push_back(NewAccount(*s, cur, ledger::AccountCode::kMerchantSettlement));
    m.currencies.push_back(mc);
  }
  NARAE_RETURN_IF_ERROR(CreateLedgerAccounts(ledger, accounts));
  m.api_key_id = "api-" + m.id;
  Result<crypto::KeyInfo> k = keys.Generate(m.api_key_id, crypto::KeyType::kMerchantApiSecret,
                                            crypto::KeyAlgorithm::kHmac, 32);
  if (!k.ok()) return k.status();
  NARAE_RETURN_IF_ERROR(PutRecord(ledger, MerchantKey(m.id), EncodeMerchant(m)));
  return m;
}

Result<AddTerminalResult> AddTerminal(ledger::Ledger& ledger, crypto::KeyStore& keys,
                                      std::string_view terminal_id, std::string_view merchant_id,
                                      bool with_mac) {
  if (terminal_id.size() != kTerminalIdBytes || terminal_id.find(' ') != std::string_view::npos) {
    return Status::InvalidArgument("terminal id must be exactly 8 characters without spaces");
  }
  if (!ledger.GetAux(MerchantKey(merchant_id))) {
    return Status::NotFound("no merchant " + std::string(merchant_id));
  }
  if (ledger.GetAux(TerminalKey(terminal_id))) {
    return Status::AlreadyExists("terminal " + std::string(terminal_id) + " exists");
  }
  AddTerminalResult r;
  r.terminal.id = std::string(terminal_id);
  r.terminal.merchant_id = std::string(merchant_id);
  r.terminal.tpk_key_id = "tpk-" + r.terminal.id;
  Result<crypto::KeyInfo> tpk =
      keys.Generate(r.terminal.tpk_key_id, crypto::KeyType::kTpk, crypto::KeyAlgorithm::kTdes, 16);
  if (!tpk.ok()) return tpk.status();
  Result<std::string> tpk_hex = KeyHex(keys, r.terminal.tpk_key_id, crypto::KeyType::kTpk);
  if (!tpk_hex.ok()) return tpk_hex.status();
  r.tpk_hex = *tpk_hex;
  if (with_mac) {
    r.terminal.mac_key_id = "mac-" + r.terminal.id;
    Result<crypto::KeyInfo> mac =
        keys.Generate(r.terminal.mac_key_id, crypto::KeyType::kMac, crypto::KeyAlgorithm::kAes, 16);
    if (!mac.ok()) return mac.status();
    Result<std::string> mac_hex = KeyHex(keys, r.terminal.mac_key_id, crypto::KeyType::kMac);
    if (!mac_hex.ok()) return mac_hex.status();
    r.mac_key_hex = *mac_hex;
  }
  NARAE_RETURN_IF_ERROR(PutRecord(ledger, TerminalKey(r.terminal.id), EncodeTerminal(r.terminal)));
  return r;
}

Result<IssuedCard> IssueCard(ledger::Ledger& ledger, crypto::KeyStore& keys,
                             const IssueCardRequest& request) {
  Result<BankConfig> config = LoadBankConfig(ledger);
  if (!config.ok()) return config.status();
  std::optional<ledger::Account> account = ledger.LookupAccount(request.account_id);
  if (!account || account->code != static_cast<uint16_t>(ledger::AccountCode::kCustomerDeposit)) {
    return Status::NotFound("no customer account " + request.account_id.ToHex());
  }
  IssuedCard out;
  out.pan = request.pan;
  bool bump_sequence = false;
  if (out.pan.empty()) {
    Result<std::string> pan =
        crypto::BuildPan(config->bin, ZeroPad(config->next_pan_sequence, 15 - config->bin.size()));
    if (!pan.ok()) return pan.status();
    out.pan = *pan;
    bump_sequence = true;
  } else if (!crypto::LuhnValid(out.pan)) {
    return Status::InvalidArgument("PAN fails the Luhn check");
  }
  Card& c = out.card;
  c.pan_hash = PanHashHex(out.pan);
  c.card_id = c.pan_hash.substr(0, 32);
  if (c.pan_hash.empty()) return Status::Crypto("SHA-256 failed");
  if (ledger.GetAux(CardKey(c.card_id))) return Status::AlreadyExists("the PAN is already issued");
  c.masked_pan = crypto::MaskPan(out.pan);
  c.expiry = request.expiry.empty() ? ExpiryFromNow(4) : request.expiry;
  if (c.expiry.size() != 4 || !IsDigits(c.expiry)) {
    return Status::InvalidArgument("expiry must be YYMM");
  }
  c.account_id = request.account_id;
  c.currency = static_cast<uint16_t>(account->ledger);
  c.limits = request.limits ? *request.limits : DefaultLimits(c.currency);
  out.pin = request.pin;
  if (out.pin.empty()) {
    Result<std::string> pin = RandomDigits(4);
    if (!pin.ok()) return pin.status();
    out.pin = *pin;
  }
  Result<crypto::SecretBytes> pvk = keys.Use(kPvkKeyId, crypto::KeyType::kPvk);
  if (!pvk.ok()) return pvk.status();
  Result<std::string> pvv = crypto::Pvv(*pvk, out.pan, c.pvki, out.pin);
  if (!pvv.ok()) return pvv.status();
  c.pvv = *pvv;
  Result<std::string> cvv2 = keys.ComputeCvv(kCvkKeyId, out.pan, c.expiry, "000");
  if (!cvv2.ok()) return cvv2.status();
  out.cvv2 = *cvv2;
  std::string card_key = CardKey(c.card_id), card_value = EncodeCard(c);
  std::string cfg_value;
  if (bump_sequence) {
    BankConfig next = *config;
    next.next_pan_sequence++;
    cfg_value = EncodeBankConfig(next);
  }
  NARAE_RETURN_IF_ERROR(ledger.Execute([&](ledger::Txn& txn) {
    txn.PutAux(card_key, card_value);
    if (!cfg_value.empty()) txn.PutAux(kAuxBankConfig, cfg_value);
  }));
  return out;
}

Result<Card> FindCard(ledger::Ledger& ledger, std::string_view pan_or_card_id) {
  std::string id(pan_or_card_id);
  if (IsDigits(pan_or_card_id) && pan_or_card_id.size() >= 12 && pan_or_card_id.size() <= 19) {
    id = CardIdFromPan(pan_or_card_id);
  }
  std::optional<std::string> v = ledger.GetAux(CardKey(id));
  if (!v) return Status::NotFound("no such card");
  return DecodeCard(*v);
}

Result<Card> SetCardStatus(ledger::Ledger& ledger, std::string_view card_id, RecordStatus status) {
  Result<Card> c = FindCard(ledger, card_id);
  if (!c.ok()) return c.status();
  c->status = status;
  std::string key = CardKey(c->card_id), value = EncodeCard(*c);
  std::string state_key = std::string(kAuxCardStatePrefix) + c->card_id;
  bool clear_pin = status == RecordStatus::kActive;
  NARAE_RETURN_IF_ERROR(ledger.Execute([&](ledger::Txn& txn) {
    txn.PutAux(key, value);
    if (!clear_pin) return;
    std::optional<std::string> old = txn.GetAux(state_key);
    Result<CredentialState> st = DecodeCredentialState(old ? *old : "");
    CredentialState s = st.ok() ? *st : CredentialState{};
    s.pin_tries = 0;
    txn.PutAux(state_key, EncodeCredentialState(s));
  }));
  return c;
}

Result<IssuedCard> ReplaceCard(ledger::Ledger& ledger, crypto::KeyStore& keys,
                               std::string_view card_id) {
  Result<Card> old = FindCard(ledger, card_id);
  if (!old.ok()) return old.status();
  IssueCardRequest req;
  req.account_id = old->account_id;
  req.limits = old->limits;
  Result<IssuedCard> issued = IssueCard(ledger, keys, req);
  if (!issued.ok()) return issued.status();
  old->status = RecordStatus::kReplaced;
  old->replaced_by = issued->card.card_id;
  NARAE_RETURN_IF_ERROR(PutRecord(ledger, CardKey(old->card_id), EncodeCard(*old)));
  return issued;
}

namespace {
Result<std::string> SimKeyHex(crypto::KeyStore& keys, std::string_view iccid) {
  Result<crypto::SecretBytes> imk = keys.Use(kImkSimKeyId, crypto::KeyType::kImkSim);
  if (!imk.ok()) return imk.status();
  Result<crypto::SecretBytes> k = crypto::DeriveSimKey(*imk, iccid);
  if (!k.ok()) return k.status();
  return crypto::ToHex(k->view());
}

Result<std::string> GenerateIccid() {
  Result<std::string> d = RandomDigits(13);
  if (!d.ok()) return d.status();
  std::string body = "89850" + *d;
  Result<char> check = crypto::LuhnCheckDigit(body);
  if (!check.ok()) return check.status();
  return body + *check;
}
}  // namespace

Result<EnrolledSim> EnrollSim(ledger::Ledger& ledger, crypto::KeyStore& keys,
                              const EnrollSimRequest& request) {
  Result<BankConfig> config = LoadBankConfig(ledger);
  if (!config.ok()) return config.status();
  std::optional<ledger::Account> account = ledger.LookupAccount(request.account_id);
  if (!account || account->code != static_cast<uint16_t>(ledger::AccountCode::kCustomerDeposit)) {
    return Status::NotFound("no customer account " + request.account_id.ToHex());
  }
  EnrolledSim out;
  Sim& s = out.sim;
  std::string body =
      config->token_prefix + ZeroPad(config->next_token_sequence, 15 - config->token_prefix.size());
  Result<char> check = crypto::LuhnCheckDigit(body);
  if (!check.ok()) return check.status();
  s.token_id = body + *check;
  s.iccid = request.iccid;
  if (s.iccid.empty()) {
    Result<std::string> iccid = GenerateIccid();
    if (!iccid.ok()) return iccid.status();
    s.iccid = *iccid;
  }
  if (!IsDigits(s.iccid) || s.iccid.size() < 18 || s.iccid.size() > 22) {
    return Status::InvalidArgument("ICCID must be 18..22 digits");
  }
  s.msisdn = request.msisdn;
  if (s.msisdn.empty()) {
    Result<std::string> d = RandomDigits(7);
    if (!d.ok()) return d.status();
    s.msisdn = "850191" + *d;
  }
  s.account_id = request.account_id;
  s.currency = static_cast<uint16_t>(account->ledger);
  s.limits = request.limits ? *request.limits : DefaultLimits(s.currency);
  Result<std::string> key = SimKeyHex(keys, s.iccid);
  if (!key.ok()) return key.status();
  out.sim_key_hex = *key;
  BankConfig next = *config;
  next.next_token_sequence++;
  std::string k = SimKey(s.token_id), v = EncodeSim(s), cfg = EncodeBankConfig(next);
  NARAE_RETURN_IF_ERROR(ledger.Execute([&](ledger::Txn& txn) {
    txn.PutAux(k, v);
    txn.PutAux(kAuxBankConfig, cfg);
  }));
  return out;
}

Result<Sim> FindSimRecord(ledger::Ledger& ledger, std::string_view token_id) {
  std::optional<std::string> v = ledger.GetAux(SimKey(token_id));
  if (!v) return Status::NotFound("no such SIM token");
  return DecodeSim(*v);
}

Result<Sim> SetSimStatus(ledger::Ledger& ledger, std::string_view token_id, RecordStatus status) {
  Result<Sim> s = FindSimRecord(ledger, token_id);
  if (!s.ok()) return s.status();
  s->status = status;
  NARAE_RETURN_IF_ERROR(PutRecord(ledger, SimKey(s->token_id), EncodeSim(*s)));
  return s;
}

Result<EnrolledSim> ReenrollSim(ledger::Ledger& ledger, crypto::KeyStore& keys,
                                std::string_view token_id, std::string_view new_iccid) {
  Result<Sim> s = FindSimRecord(ledger, token_id);
  if (!s.ok()) return s.status();
  EnrolledSim out;
  out.sim = *s;
  out.sim.iccid = std::string(new_iccid);
  if (out.sim.iccid.empty()) {
    Result<std::string> iccid = GenerateIccid();
    if (!iccid.ok()) return iccid.status();
    out.sim.iccid = *iccid;
  }
  if (out.sim.iccid == s->iccid) return Status::InvalidArgument("the new ICCID equals the old one");
  out.sim.key_generation++;
  out.sim.status = RecordStatus::kActive;
  Result<std::string> key = SimKeyHex(keys, out.sim.iccid);
  if (!key.ok()) return key.status();
  out.sim_key_hex = *key;
  std::string k = SimKey(out.sim.token_id), v = EncodeSim(out.sim);
  std::string state_key = std::string(kAuxSimStatePrefix) + out.sim.token_id;
  NARAE_RETURN_IF_ERROR(ledger.Execute([&](ledger::Txn& txn) {
    txn.PutAux(k, v);
    std::optional<std::string> old = txn.GetAux(state_key);
    Result<CredentialState> st = DecodeCredentialState(old ? *old : "");
    CredentialState cs = st.ok() ? *st : CredentialState{};
    cs.sim_counter = 0;  // the new SIM's applet starts again
    txn.PutAux(state_key, EncodeCredentialState(cs));
  }));
  return out;
}

// ---- Demo bank ----

namespace {

struct DemoMerchantSpec {
  const char* id;
  const char* name;
  uint16_t mcc;
  int terminals;
  bool mac_on_first;
};
constexpr DemoMerchantSpec kDemoMerchants[] = {
    {"NOODLE01", "Okryu Noodle House", 5812, 2, true},
    {"SOCKS001", "Pyongyang Sock Factory", 5651, 1, false},
    {"SEAFOOD1", "Haemaji Seafood Service Complex", 5814, 2, false},
    {"ELECTRO1", "Mirae Electronics Outlet", 5732, 2, true},
    {"LOGIST01", "Okryu Logistics Office", 4215, 1, false},
};

Status SeedBankAccounts(ledger::Ledger& ledger, BankConfig* config) {
  std::vector<ledger::Account> accounts;
  for (uint16_t cur : {uint16_t{408}, uint16_t{840}}) {
    BankAccounts b;
    b.currency = cur;
    for (AccountId* id : {&b.funding, &b.fee_income, &b.logistics, &b.central_bank}) {
      Result<AccountId> r = RandomAccountId();
      if (!r.ok()) return r.status();
      *id = *r;
    }
    accounts.push_back(NewAccount(b.funding, cur, ledger::AccountCode::kBankCash));
    accounts.push_back(NewAccount(b.fee_income, cur, ledger::AccountCode::kFeeIncome));
    accounts.push_back(NewAccount(b.logistics, cur, ledger::AccountCode::kLogistics));
    accounts.push_back(
        NewAccount(b.central_bank, cur, ledger::AccountCode::kCentralBankSettlement));
    config->accounts.push_back(b);
  }
  return CreateLedgerAccounts(ledger, accounts);
}

Status SeedCustomer(ledger::Ledger& ledger, crypto::KeyStore& keys, const SeedOptions& o,
                    uint32_t index, DemoBank* out) {
  Result<crypto::SecretBytes> imk = keys.Use(kImkAcKeyId, crypto::KeyType::kImkAc);
  if (!imk.ok()) return imk.status();
  std::string customer = "Customer " + std::to_string(index + 1);
  AccountId kpw_account;
  for (uint16_t cur : {uint16_t{408}, uint16_t{840}}) {
    OpenAccountRequest req;
    req.currency = cur;
    req.customer = customer;
    req.minimum_balance_minor = cur == 408 ? o.kpw_minimum_minor : o.usd_minimum_minor;
    req.initial_deposit_minor = cur == 408 ? o.kpw_deposit_minor : o.usd_deposit_minor;
    Result<AccountId> id = OpenCustomerAccount(ledger, req);
    if (!id.ok()) return id.status();
    if (cur == 408) kpw_account = *id;
    out->accounts.push_back({*id, customer, cur});
    IssueCardRequest card;
    card.account_id = *id;
    card.limits = o.limits;
    Result<IssuedCard> issued = IssueCard(ledger, keys, card);
    if (!issued.ok()) return issued.status();
    DemoCard dc;
    dc.issued = std::move(*issued);
    dc.imk_ac_hex = crypto::ToHex(imk->view());
    Result<crypto::SecretBytes> ck =
        crypto::EmvCardKeyOptionA(*imk, dc.issued.pan, dc.issued.card.psn);
    if (!ck.ok()) return ck.status();
    dc.card_key_hex = crypto::ToHex(ck->view());
    out->cards.push_back(std::move(dc));
  }
  EnrollSimRequest sim;
  sim.account_id = kpw_account;
  sim.limits = o.limits;
  Result<EnrolledSim> enrolled = EnrollSim(ledger, keys, sim);
  if (!enrolled.ok()) return enrolled.status();
  out->sims.push_back(std::move(*enrolled));
  return Status::Ok();
}

}  // namespace

void ApplyBenchSeedOptions(SeedOptions* options) {
  NARAE_CHECK(options != nullptr);
  RiskLimits l;
  l.single_amount_max_minor = DefaultLimits(408).single_amount_max_minor;
  l.daily_amount_max_minor = 0;  // none
  l.daily_count_max = 0;
  l.per_minute_max = 0;
  options->limits = l;
  options->kpw_deposit_minor = 100'000'000'000'000;  // KPW 1,000,000,000,000.00
  options->usd_deposit_minor = 1'000'000'000'000;    // USD 10,000,000,000.00
}

Result<DemoBank> SeedDemo(ledger::Ledger& ledger, crypto::KeyStore& keys,
                          const SeedOptions& options) {
  if (ledger.GetAux(kAuxBankConfig)) {
    return Status::FailedPrecondition("the ledger already holds a bank (already seeded)");
  }
  if (options.customers > kSeedCustomersMax) return Status::InvalidArgument("too many customers");
  NARAE_RETURN_IF_ERROR(EnsureBankKeys(keys));
  DemoBank out;
  out.config.bin = options.bin;
  out.config.acquirer_id = options.acquirer_id;
  out.config.bank_id = "NARAE";
  NARAE_RETURN_IF_ERROR(SeedBankAccounts(ledger, &out.config));
  NARAE_RETURN_IF_ERROR(PutRecord(ledger, kAuxBankConfig, EncodeBankConfig(out.config)));
  // Fund the funding accounts' counterpart: the bank's cash is the debit side.
  int terminal_no = 1;
  for (const DemoMerchantSpec& spec : kDemoMerchants) {
    CreateMerchantRequest req{spec.id, spec.name, spec.mcc, {408, 840}};
    Result<Merchant> m = CreateMerchant(ledger, keys, req);
    if (!m.ok()) return m.status();
    DemoMerchant dm;
    dm.merchant = *m;
    Result<std::string> secret = KeyHex(keys, m->api_key_id, crypto::KeyType::kMerchantApiSecret);
    if (!secret.ok()) return secret.status();
    dm.api_secret_hex = *secret;
    for (int i = 0; i < spec.terminals; ++i) {
      std::string tid = "T" + ZeroPad(static_cast<uint64_t>(terminal_no++), 7);
      Result<AddTerminalResult> t =
          AddTerminal(ledger, keys, tid, m->id, spec.mac_on_first && i == 0);
      if (!t.ok()) return t.status();
      dm.terminals.push_back({t->terminal.id, t->tpk_hex, t->mac_key_hex});
    }
    out.merchants.push_back(std::move(dm));
  }
  for (uint32_t i = 0; i < options.customers; ++i) {
    NARAE_RETURN_IF_ERROR(SeedCustomer(ledger, keys, options, i, &out));
  }
  Result<BankConfig> final_config = LoadBankConfig(ledger);
  if (!final_config.ok()) return final_config.status();
  out.config = *final_config;
  return out;
}

std::string DemoBankJson(const DemoBank& bank, const std::string& ledger_dir,
                         const std::string& keys_dir, const std::string& master_key_path) {
  json merchants = json::array();
  for (const DemoMerchant& dm : bank.merchants) {
    json terminals = json::array();
    for (const DemoTerminal& t : dm.terminals) {
      terminals.push_back({{"id", t.id}, {"tpk_hex", t.tpk_hex}, {"mac_key_hex", t.mac_key_hex}});
    }
    json currencies = json::array();
    json accounts = json::array();
    for (const MerchantCurrency& c : dm.merchant.currencies) {
      currencies.push_back(c.currency);
      accounts.push_back({{"currency", c.currency},
                          {"clearing_account_id", c.clearing.ToHex()},
                          {"settlement_account_id", c.settlement.ToHex()}});
    }
    merchants.push_back({{"id", dm.merchant.id},
                         {"name", dm.merchant.name},
                         {"mcc", ZeroPad(dm.merchant.mcc, 4)},
                         {"currencies", currencies},
                         {"accounts", accounts},
                         {"terminals", terminals},
                         {"api_key_id", dm.merchant.api_key_id},
                         {"api_secret_hex", dm.api_secret_hex}});
  }
  json cards = json::array();
  for (const DemoCard& c : bank.cards) {
    cards.push_back({{"pan", c.issued.pan},
                     {"expiry", c.issued.card.expiry},
                     {"cvv2", c.issued.cvv2},
                     {"pin", c.issued.pin},
                     {"psn", c.issued.card.psn},
                     {"service_code", c.issued.card.service_code},
                     {"currency", c.issued.card.currency},
                     {"account_id", c.issued.card.account_id.ToHex()},
                     {"card_id", c.issued.card.card_id},
                     {"imk_ac_hex", c.imk_ac_hex},
                     {"card_key_hex", c.card_key_hex}});
  }
  json sims = json::array();
  for (const EnrolledSim& s : bank.sims) {
    sims.push_back({{"token_id", s.sim.token_id},
                    {"iccid", s.sim.iccid},
                    {"msisdn", s.sim.msisdn},
                    {"sim_key_hex", s.sim_key_hex},
                    {"counter", 0},
                    {"currency", s.sim.currency},
                    {"account_id", s.sim.account_id.ToHex()}});
  }
  json bank_accounts = json::array();
  for (const BankAccounts& a : bank.config.accounts) {
    bank_accounts.push_back({{"currency", a.currency},
                             {"funding", a.funding.ToHex()},
                             {"fee_income", a.fee_income.ToHex()},
                             {"logistics", a.logistics.ToHex()},
                             {"central_bank", a.central_bank.ToHex()}});
  }
  json j{{"bank",
          {{"bin", bank.config.bin},
           {"acquirer_id", bank.config.acquirer_id},
           {"bank_id", bank.config.bank_id},
           {"accounts", bank_accounts}}},
         {"merchants", merchants},
         {"cards", cards},
         {"sims", sims},
         {"files", {{"ledger", ledger_dir}, {"keys", keys_dir}, {"master_key", master_key_path}}}};
  return j.dump(2) + "\n";
}

}  // namespace narae::switching
