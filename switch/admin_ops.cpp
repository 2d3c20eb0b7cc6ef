// The bank staff's write operations, shared by `narae` (direct) and the
// switch's admin interface (switch/admin_ops.hpp).
#include "switch/admin_ops.hpp"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/api.hpp"
#include "switch/settlement.hpp"
#include "switch/webhook.hpp"

namespace narae::switching {
namespace {

using json = nlohmann::json;

// A bound on list arguments (currencies, BIN ranges, issuers, bands, MCCs).
constexpr size_t kListArgItemsMax = 64;

// Reads typed arguments; the first problem is kept and later reads return
// defaults, so an op reads everything then checks `status()` once.
class Args {
 public:
  explicit Args(const json& args) : args_(args) {
    if (!args_.is_object()) Bad("arguments must be a JSON object");
  }
  Status status() const { return status_; }

  std::string Str(const char* key, std::string fallback = "") {
    const json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) return Bad(std::string(key) + " must be a string"), fallback;
    return v->get<std::string>();
  }
  uint64_t U64(const char* key, uint64_t fallback, uint64_t max) {
    const json* v = Find(key);
    if (v == nullptr) return fallback;
    if (!v->is_number_unsigned() || v->get<uint64_t>() > max) {
      return Bad(std::string(key) + " must be an integer 0.." + std::to_string(max)), fallback;
    }
    return v->get<uint64_t>();
  }
  bool Bool(const char* key) {
    const json* v = Find(key);
    if (v == nullptr) return false;
    if (!v->is_boolean()) return Bad(std::string(key) + " must be true or false"), false;
    return v->get<bool>();
  }
  std::vector<uint16_t> U16List(const char* key, std::vector<uint16_t> fallback) {
    const json* v = Find(key);
    if (v == nullptr) return fallback;
    std::vector<uint16_t> out;
    if (!v->is_array() || v->size() > kListArgItemsMax) {
      return Bad(std::string(key) + " must be a list of at most 64 numbers"), fallback;
    }
    for (const json& x : *v) {
      if (!x.is_number_unsigned() || x.get<uint64_t>() > 65535) {
        return Bad(std::string(key) + " must hold integers 0..65535"), fallback;
      }
      out.push_back(static_cast<uint16_t>(x.get<uint64_t>()));
    }
    return out;
  }
  std::vector<std::string> StrList(const char* key) {
    const json* v = Find(key);
    std::vector<std::string> out;
    if (v == nullptr) return out;
    if (!v->is_array() || v->size() > kListArgItemsMax) {
      return Bad(std::string(key) + " must be a list of at most 64 strings"), out;
    }
    for (const json& x : *v) {
      if (!x.is_string()) return Bad(std::string(key) + " must hold strings"), out;
      out.push_back(x.get<std::string>());
    }
    return out;
  }
  // A nested object ("limits"), or nullptr.
  const json* Object(const char* key) {
    const json* v = Find(key);
    if (v != nullptr && !v->is_object())
      return Bad(std::string(key) + " must be an object"), nullptr;
    return v;
  }
  ledger::AccountId Account(const char* key) {
    std::optional<ledger::U128> v = ledger::U128::Parse(Str(key), false);
    if (!v || v->IsZero()) {
      Bad("account id must be 1..32 hex digits");
      return ledger::AccountId{};
    }
    return ledger::AccountId{*v};
  }
  void Bad(std::string message) {
    if (status_.ok()) status_ = Status::InvalidArgument(std::move(message));
  }

  const json* Find(const char* key) const {
    if (!args_.is_object()) return nullptr;
    auto it = args_.find(key);
    return it == args_.end() || it->is_null() ? nullptr : &*it;
  }

 private:
  const json& args_;
  Status status_;
};

std::optional<RiskLimits> LimitsArg(Args& a) {
  const json* l = a.Object("limits");
  if (l == nullptr) return std::nullopt;
  Args la(*l);
  RiskLimits r;
  r.single_amount_max_minor = la.U64("single_amount_max_minor", 0, UINT64_MAX);
  r.daily_amount_max_minor = la.U64("daily_amount_max_minor", 0, UINT64_MAX);
  r.daily_count_max = static_cast<uint32_t>(la.U64("daily_count_max", 0, UINT32_MAX));
  r.per_minute_max = static_cast<uint32_t>(la.U64("per_minute_max", 0, UINT32_MAX));
  r.blocked_mccs = la.U16List("blocked_mccs", {});
  if (!la.status().ok()) a.Bad("limits: " + la.status().message());
  return r;
}

json IssuedJson(const IssuedCard& i) {
  json j = CardJson(i.card);
  j["pan"] = i.pan;
  j["cvv2"] = i.cvv2;
  j["pin"] = i.pin;
  return j;
}
json EnrolledJson(const EnrolledSim& e) {
  json j = SimJson(e.sim);
  j["sim_key_hex"] = e.sim_key_hex;
  return j;
}

// Cache refreshes after a successful write (no-ops offline).
void Refresh(const AdminTarget& t, const Card& c) {
  if (t.cache != nullptr) t.cache->Update(c);
}
void Refresh(const AdminTarget& t, const Sim& s) {
  if (t.cache != nullptr) t.cache->Update(s);
}
// The bank config holds the next PAN and token sequences.
void RefreshConfig(const AdminTarget& t) {
  if (t.cache == nullptr) return;
  if (Result<BankConfig> c = LoadBankConfig(*t.ledger); c.ok()) t.cache->Update(std::move(*c));
}

using OpFn = std::function<Result<json>(const AdminTarget&, Args&)>;

Result<json> AccountOpen(const AdminTarget& t, Args& a) {
  OpenAccountRequest r;
  r.currency = static_cast<uint16_t>(a.U64("currency", 408, 999));
  r.minimum_balance_minor = a.U64("min_balance_minor", 0, UINT64_MAX);
  r.initial_deposit_minor = a.U64("deposit_minor", 0, UINT64_MAX);
  r.customer = a.Str("customer");
  NARAE_RETURN_IF_ERROR(a.status());
  Result<ledger::AccountId> id = OpenCustomerAccount(*t.ledger, r);
  if (!id.ok()) return id.status();
  return json{{"account_id", id->ToHex()}};
}

OpFn AccountChangeOp(const char* name, ledger::AccountAction action) {
  return [name, action](const AdminTarget& t, Args& a) -> Result<json> {
    ledger::AccountChange ch;
    ch.id = a.Account("id");
    ch.action = action;
    NARAE_RETURN_IF_ERROR(a.status());
    auto r = t.ledger->ChangeAccounts({&ch, 1});
    if (!r.ok()) return r.status();
    if (r->at(0).result != ledger::ChangeAccountResult::kOk) {
      return Status::FailedPrecondition(std::string(name) + ": " +
                                        ledger::ResultName(r->at(0).result));
    }
    return json{{"account_id", ch.id.ToHex()}, {"action", name}};
  };
}

Result<json> MerchantCreate(const AdminTarget& t, Args& a) {
  CreateMerchantRequest r{a.Str("id"), a.Str("name"), static_cast<uint16_t>(a.U64("mcc", 0, 9999)),
                          a.U16List("currencies", {408, 840})};
  NARAE_RETURN_IF_ERROR(a.status());
  Result<Merchant> m = CreateMerchant(*t.ledger, *t.keys, r);
  if (!m.ok()) return m.status();
  if (t.cache != nullptr) {
    t.cache->Update(*m);
    if (t.http_api) {
      // The storefront API pays through the merchant's virtual terminal.
      NARAE_RETURN_IF_ERROR(EnsureApiTerminals(*t.ledger, *t.keys));
      std::optional<std::string> v = t.ledger->GetAux(TerminalKey(VirtualTerminalId(m->id)));
      if (v) {
        if (Result<Terminal> term = DecodeTerminal(*v); term.ok()) t.cache->Update(*term);
      }
    }
  }
  return json::parse(EncodeMerchant(*m));
}

Result<json> TerminalAdd(const AdminTarget& t, Args& a) {
  const std::string id = a.Str("id"), merchant = a.Str("merchant");
  const bool mac = a.Bool("mac");
  NARAE_RETURN_IF_ERROR(a.status());
  Result<AddTerminalResult> r = AddTerminal(*t.ledger, *t.keys, id, merchant, mac);
  if (!r.ok()) return r.status();
  if (t.cache != nullptr) t.cache->Update(r->terminal);
  return json{{"id", r->terminal.id},
              {"merchant_id", r->terminal.merchant_id},
              {"tpk_hex", r->tpk_hex},
              {"mac_key_hex", r->mac_key_hex}};
}

Result<json> CardIssue(const AdminTarget& t, Args& a) {
  IssueCardRequest r;
  r.account_id = a.Account("account");
  r.expiry = a.Str("expiry");
  r.pin = a.Str("pin");
  r.limits = LimitsArg(a);
  NARAE_RETURN_IF_ERROR(a.status());
  Result<IssuedCard> issued = IssueCard(*t.ledger, *t.keys, r);
  if (!issued.ok()) return issued.status();
  Refresh(t, issued->card);
  RefreshConfig(t);
  return IssuedJson(*issued);
}

OpFn CardStatusOp(bool has_reason) {
  return [has_reason](const AdminTarget& t, Args& a) -> Result<json> {
    const std::string card = a.Str("card");
    RecordStatus st = RecordStatus::kActive;
    if (has_reason) {
      const std::string reason = a.Str("reason", "blocked");
      std::optional<RecordStatus> parsed = ParseRecordStatus(reason);
      if (reason != "blocked" && reason != "lost" && reason != "stolen") parsed.reset();
      if (!parsed) a.Bad("reason must be blocked, lost or stolen");
      st = parsed.value_or(RecordStatus::kBlocked);
    }
    NARAE_RETURN_IF_ERROR(a.status());
    Result<Card> found = FindCard(*t.ledger, card);
    if (!found.ok()) return found.status();
    Result<Card> c = SetCardStatus(*t.ledger, found->card_id, st);
    if (!c.ok()) return c.status();
    Refresh(t, *c);
    return CardJson(*c);
  };
}

Result<json> CardReplace(const AdminTarget& t, Args& a) {
  const std::string card = a.Str("card");
  NARAE_RETURN_IF_ERROR(a.status());
  Result<Card> found = FindCard(*t.ledger, card);
  if (!found.ok()) return found.status();
  Result<IssuedCard> issued = ReplaceCard(*t.ledger, *t.keys, found->card_id);
  if (!issued.ok()) return issued.status();
  if (t.cache != nullptr) {
    if (Result<Card> old = FindCard(*t.ledger, found->card_id); old.ok()) Refresh(t, *old);
    Refresh(t, issued->card);
    RefreshConfig(t);
  }
  json j = IssuedJson(*issued);
  j["replaces"] = found->card_id;
  j["replaces_masked_pan"] = found->masked_pan;
  return j;
}

Result<json> SimEnroll(const AdminTarget& t, Args& a) {
  EnrollSimRequest r;
  r.account_id = a.Account("account");
  r.iccid = a.Str("iccid");
  r.msisdn = a.Str("msisdn");
  r.limits = LimitsArg(a);
  NARAE_RETURN_IF_ERROR(a.status());
  Result<EnrolledSim> e = EnrollSim(*t.ledger, *t.keys, r);
  if (!e.ok()) return e.status();
  Refresh(t, e->sim);
  RefreshConfig(t);
  return EnrolledJson(*e);
}

Result<json> SimSuspend(const AdminTarget& t, Args& a) {
  const std::string token = a.Str("token");
  NARAE_RETURN_IF_ERROR(a.status());
  Result<Sim> s = SetSimStatus(*t.ledger, token, RecordStatus::kSuspended);
  if (!s.ok()) return s.status();
  Refresh(t, *s);
  return SimJson(*s);
}

Result<json> SimReenroll(const AdminTarget& t, Args& a) {
  const std::string token = a.Str("token"), iccid = a.Str("iccid");
  NARAE_RETURN_IF_ERROR(a.status());
  Result<EnrolledSim> e = ReenrollSim(*t.ledger, *t.keys, token, iccid);
  if (!e.ok()) return e.status();
  Refresh(t, e->sim);
  return EnrolledJson(*e);
}

Result<json> DayClose(const AdminTarget& t, Args& a) {
  const uint64_t at = a.U64("at_ns", 0, UINT64_MAX);
  NARAE_RETURN_IF_ERROR(a.status());
  std::optional<uint64_t> at_ns;
  if (at != 0) at_ns = at;
  Result<DayRecord> d = CloseDay(*t.ledger, at_ns);
  if (!d.ok()) return d.status();
  return json::parse(EncodeDayRecord(*d));
}

Result<json> FeesSet(const AdminTarget& t, Args& a) {
  FeeSchedule f;
  f.merchant_id = a.Str("merchant", "*");
  f.currency = static_cast<uint16_t>(a.U64("currency", 408, 999));
  f.bps = static_cast<uint32_t>(a.U64("bps", 0, UINT32_MAX));
  f.fixed_minor = a.U64("fixed_minor", 0, UINT64_MAX);
  f.min_minor = a.U64("min_minor", 0, UINT64_MAX);
  f.max_minor = a.U64("max_minor", 0, UINT64_MAX);
  f.effective_from_ns = a.U64("effective_from_ns", 0, UINT64_MAX);
  // [{"up_to_m", "share_minor"}, ...] as FeeSchedule's delivery bands.
  if (const json* bands = a.Find("bands")) {
    if (!bands->is_array() || bands->size() > kListArgItemsMax) a.Bad("bands must be a list");
    for (size_t i = 0; a.status().ok() && i < bands->size(); ++i) {
      Args band((*bands)[i]);
      const uint64_t up_to_m = band.U64("up_to_m", 0, UINT32_MAX);
      const uint64_t share = band.U64("share_minor", 0, UINT64_MAX);
      if (!band.status().ok()) a.Bad("bands: " + band.status().message());
      f.delivery_bands.push_back({static_cast<uint32_t>(up_to_m), share});
    }
  }
  NARAE_RETURN_IF_ERROR(a.status());
  Result<FeeSchedule> r = SetFeeSchedule(*t.ledger, f);
  if (!r.ok()) return r.status();
  return json::parse(EncodeFeeSchedule(*r));
}

Result<json> BankAdd(const AdminTarget& t, Args& a) {
  OtherBank b;
  b.id = a.Str("id");
  b.name = a.Str("name");
  for (const std::string& r : a.StrList("bin_ranges")) {  // "LOW-HIGH"
    const size_t dash = r.find('-');
    if (dash == std::string::npos) {
      a.Bad("--bin-range LOW-HIGH");
      break;
    }
    b.bin_ranges.push_back({r.substr(0, dash), r.substr(dash + 1)});
  }
  b.sim_issuers = a.StrList("sim_issuers");
  b.acquirer_id = a.Str("acquirer_id");
  for (const std::string& s : a.StrList("stand_in")) {  // "CUR:DAILY_MAX[:SINGLE_MAX]"
    std::optional<StandInTerms> terms = ParseStandIn(s);
    if (!terms) {
      a.Bad("--stand-in CUR:DAILY_MAX[:SINGLE_MAX]");
      break;
    }
    b.stand_in.push_back(*terms);
  }
  const std::vector<uint16_t> currencies = a.U16List("currencies", {408});
  NARAE_RETURN_IF_ERROR(a.status());
  Result<OtherBank> r = AddOtherBank(*t.ledger, b, currencies);
  if (!r.ok()) return r.status();
  if (t.cache) {  // a running switch routes the bank's cards from its next request
    Result<std::vector<OtherBank>> all = ListOtherBanks(*t.ledger);
    if (!all.ok()) {
      return Status::Internal(
          "bank " + r->id +
          " added, but the switch did not reload the banks: " + all.status().ToString());
    }
    t.cache->Update(std::move(*all));
  }
  return json::parse(EncodeOtherBank(*r));
}

// A consistent copy of the live ledger (RocksDB checkpoint) in `to`, an
// absolute path that must not exist yet. The caller verifies the copy.
Result<json> Backup(const AdminTarget& t, Args& a) {
  const std::string to = a.Str("to");
  NARAE_RETURN_IF_ERROR(a.status());
  if (to.empty() || to.front() != '/') {
    return Status::InvalidArgument("backup: to must be an absolute path");
  }
  std::error_code ec;
  if (std::filesystem::exists(to, ec)) {
    return Status::AlreadyExists(to + " already exists: a backup needs a new folder");
  }
  NARAE_RETURN_IF_ERROR(t.ledger->Checkpoint(to));
  return json{{"backup", to}};
}

// settle: {"day": "3" | "2026-11-28", "merchant": "M" (optional), "dry_run"}.
// The day's failed merchants are in the result (the CLI exits 1), not an error.
Result<json> Settle(const AdminTarget& t, Args& a) {
  const std::string day = a.Str("day"), merchant = a.Str("merchant");
  const bool dry_run = a.Bool("dry_run");
  NARAE_RETURN_IF_ERROR(a.status());
  if (day.empty()) return Status::InvalidArgument("settle: day is required");
  Result<uint32_t> n = ResolveDay(*t.ledger, day);
  if (!n.ok()) return n.status();
  SettleOptions so;
  so.merchant_id = merchant;
  so.dry_run = dry_run;
  Result<SettleSummary> s = SettleDay(*t.ledger, *n, so);
  if (!s.ok()) return s.status();
  return SettleSummaryJson(*s, dry_run);
}

// settle.interbank: {"day", "dry_run"}. The instruction file's text is in
// the result ("instructions"): the CLI writes it where it was asked to.
Result<json> SettleInterbankOp(const AdminTarget& t, Args& a) {
  const std::string day = a.Str("day");
  const bool dry_run = a.Bool("dry_run");
  NARAE_RETURN_IF_ERROR(a.status());
  if (day.empty()) return Status::InvalidArgument("settle interbank: day is required");
  Result<uint32_t> n = ResolveDay(*t.ledger, day);
  if (!n.ok()) return n.status();
  Result<DayRecord> d = GetDay(*t.ledger, *n);
  if (!d.ok()) return d.status();
  Result<BankConfig> cfg = LoadBankConfig(*t.ledger);
  if (!cfg.ok()) return cfg.status();
  Result<std::vector<InterbankSettlement>> s = SettleInterbank(*t.ledger, *n, dry_run);
  if (!s.ok()) return s.status();
  json positions = json::array();
  for (const InterbankSettlement& x : *s) {
    for (const InterbankPosition& p : x.positions) {
      positions.push_back({{"currency", x.currency},
                           {"bank", p.bank_id},
                           {"due_to_minor", p.due_to_minor},
                           {"due_from_minor", p.due_from_minor},
                           {"net_minor", p.net_minor},
                           {"already_settled", x.already_settled}});
    }
  }
  const std::string ours = cfg->bank_id.empty() ? "NARAE" : cfg->bank_id;
  return json{{"day", *n},
              {"positions", positions},
              {"instructions", InterbankInstructionFile(*s, ours, *d)}};
}

// webhook.set: {"merchant", "url", "secret_hex" (optional)}; the secret is in
// the result once (for the merchant's receiver), never logged.
Result<json> WebhookSet(const AdminTarget& t, Args& a) {
  const std::string merchant = a.Str("merchant"), url = a.Str("url"), secret = a.Str("secret_hex");
  NARAE_RETURN_IF_ERROR(a.status());
  Result<std::string> s = SetWebhook(*t.ledger, *t.keys, merchant, url, secret);
  if (!s.ok()) return s.status();
  return json{{"merchant", merchant}, {"url", url}, {"secret_hex", *s}};
}

Result<json> WebhookShow(const AdminTarget& t, Args& a) {
  const std::string merchant = a.Str("merchant");
  NARAE_RETURN_IF_ERROR(a.status());
  Result<std::optional<WebhookConfig>> got = GetWebhook(*t.ledger, merchant);
  if (!got.ok()) return got.status();
  if (!got->has_value()) return Status::NotFound("no webhook for " + merchant);
  std::optional<std::string> cursor =
      t.ledger->GetAux(std::string(kAuxDeliveryCursorPrefix) + merchant);
  return json{{"merchant", merchant},
              {"url", (*got)->url},
              {"key_id", (*got)->key_id},
              {"delivered_through", cursor ? "evt_" + *cursor : ""}};
}

Result<json> WebhookRemove(const AdminTarget& t, Args& a) {
  const std::string merchant = a.Str("merchant");
  NARAE_RETURN_IF_ERROR(a.status());
  // A removed webhook stays as "{}" (RemoveWebhook alone would accept a
  // second remove): none registered is NotFound, exit 1 (docs/api.md).
  Result<std::optional<WebhookConfig>> got = GetWebhook(*t.ledger, merchant);
  if (!got.ok()) return got.status();
  if (!got->has_value()) return Status::NotFound("no webhook for " + merchant);
  NARAE_RETURN_IF_ERROR(RemoveWebhook(*t.ledger, merchant));
  return json{{"merchant", merchant}};
}

const std::map<std::string, std::pair<OpFn, bool>, std::less<>>& Ops() {
  using A = ledger::AccountAction;
  static const auto* ops = new std::map<std::string, std::pair<OpFn, bool>, std::less<>>{
      {"account.open", {AccountOpen, false}},
      {"account.close", {AccountChangeOp("close", A::kClose), false}},
      {"account.freeze", {AccountChangeOp("freeze", A::kFreeze), false}},
      {"account.unfreeze", {AccountChangeOp("unfreeze", A::kUnfreeze), false}},
      {"merchant.create", {MerchantCreate, true}},
      {"terminal.add", {TerminalAdd, true}},
      {"card.issue", {CardIssue, true}},
      {"card.block", {CardStatusOp(true), false}},
      {"card.unblock", {CardStatusOp(false), false}},
      {"card.replace", {CardReplace, true}},
      {"sim.enroll", {SimEnroll, true}},
      {"sim.suspend", {SimSuspend, false}},
      {"sim.reenroll", {SimReenroll, true}},
      {"day.close", {DayClose, false}},
      {"fees.set", {FeesSet, false}},
      {"bank.add", {BankAdd, false}},
      {"backup", {Backup, false}},
      {"settle", {Settle, false}},
      {"settle.interbank", {SettleInterbankOp, false}},
      {"webhook.set", {WebhookSet, true}},
      {"webhook.show", {WebhookShow, false}},
      {"webhook.remove", {WebhookRemove, false}},
  };
  return *ops;
}

}  // namespace

bool IsAdminOp(std::string_view op) { return Ops().find(op) != Ops().end(); }

bool AdminOpNeedsKeys(std::string_view op) {
  auto it = Ops().find(op);
  return it != Ops().end() && it->second.second;
}

Result<json> RunAdminOp(const AdminTarget& target, std::string_view op, const json& args) {
  NARAE_CHECK(target.ledger != nullptr);
  auto it = Ops().find(op);
  if (it == Ops().end()) return Status::InvalidArgument("unknown operation " + std::string(op));
  if (it->second.second && target.keys == nullptr) {
    return Status::FailedPrecondition(std::string(op) + " needs the key store");
  }
  Args a(args);
  try {
    return it->second.first(target, a);
  } catch (const std::exception& e) {  // nlohmann or std at the edge
    return Status::Internal(std::string(op) + ": " + e.what());
  }
}

Status StatusFromName(std::string_view code_name, std::string message) {
  static const std::pair<StatusCode, Status (*)(std::string)> kCodes[] = {
      {StatusCode::kInvalidArgument, &Status::InvalidArgument},
      {StatusCode::kNotFound, &Status::NotFound},
      {StatusCode::kAlreadyExists, &Status::AlreadyExists},
      {StatusCode::kCorruption, &Status::Corruption},
      {StatusCode::kIOError, &Status::IOError},
      {StatusCode::kPermissionDenied, &Status::PermissionDenied},
      {StatusCode::kUnavailable, &Status::Unavailable},
      {StatusCode::kFailedPrecondition, &Status::FailedPrecondition},
      {StatusCode::kCrypto, &Status::Crypto},
      {StatusCode::kInternal, &Status::Internal},
  };
  for (const auto& [code, make] : kCodes) {
    if (code_name == StatusCodeName(code)) return make(std::move(message));
  }
  return Status::Internal(std::move(message));
}

json CardJson(const Card& c) {
  return json{{"card_id", c.card_id},
              {"masked_pan", c.masked_pan},
              {"expiry", c.expiry},
              {"status", RecordStatusName(c.status)},
              {"account_id", c.account_id.ToHex()},
              {"currency", c.currency},
              {"limits", LimitsJson(c.limits)},
              {"replaced_by", c.replaced_by}};
}
json SimJson(const Sim& s) {
  return json{{"token_id", s.token_id},
              {"iccid", s.iccid},
              {"msisdn", s.msisdn},
              {"account_id", s.account_id.ToHex()},
              {"currency", s.currency},
              {"status", RecordStatusName(s.status)},
              {"key_generation", s.key_generation},
              {"limits", LimitsJson(s.limits)}};
}

json SettleSummaryJson(const SettleSummary& s, bool dry_run) {
  json settled = json::array(), already = json::array(), failed = json::array();
  for (const MerchantSettlement& m : s.settled) settled.push_back(MerchantSettlementJson(m));
  for (const MerchantSettlement& m : s.already_settled) {
    already.push_back(MerchantSettlementJson(m));
  }
  for (const SettleFailure& f : s.failed) {
    failed.push_back({{"merchant", f.merchant_id}, {"currency", f.currency}, {"reason", f.reason}});
  }
  return json{{"day", s.day},       {"dry_run", dry_run},         {"captures", s.captures_scanned},
              {"settled", settled}, {"already_settled", already}, {"failed", failed}};
}

}  // namespace narae::switching
