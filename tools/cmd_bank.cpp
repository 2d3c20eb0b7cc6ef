// Bank records for staff: `narae demo seed`, `narae account ...`, `narae
// merchant ...`, `narae terminal add`, `narae card ...`, `narae sim ...`.
// Write commands run their operation (switch/admin_ops.hpp) through the
// running switch's admin interface when DIR/admin.json names one, else on
// the ledger and the key store under DIR/keys opened directly
// (tools/admin_client.hpp); read commands open the ledger directly.
// Secrets (PAN, CVV2, PIN, keys) are printed only by the commands that
// create them, once. See docs/authorization.md and docs/tools.md.
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/admin_ops.hpp"
#include "switch/bank.hpp"
#include "tools/admin_client.hpp"
#include "tools/cli.hpp"

namespace narae::tools {
namespace {

using json = nlohmann::json;
namespace sw = narae::switching;
namespace nc = narae::crypto;

struct Common {
  std::string data;
  std::string master_key_file;  // default DIR/master.key
  bool json = false;
};

void AddCommon(CLI::App* cmd, Common* c) {
  cmd->add_option("--data", c->data, "data folder (ledger in DIR/ledger, keys in DIR/keys)")
      ->required();
  cmd->add_option("--master-key-file", c->master_key_file,
                  "master key file (default DIR/master.key)");
  cmd->add_flag("--json", c->json, "print one JSON object");
}

void Fail(const Common& c, const Status& s) { ReportFailure(c.json, s); }

void Print(const Common& c, const json& j, const std::string& text) {
  if (c.json) {
    json out = j;
    out["ok"] = true;
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("%s", text.c_str());
  }
}

std::string MasterKeyPath(const Common& c) {
  return c.master_key_file.empty() ? c.data + "/master.key" : c.master_key_file;
}

Result<std::unique_ptr<ledger::Ledger>> OpenLedger(const Common& c) {
  ledger::Options o;
  o.path = c.data + "/ledger";
  auto l = ledger::Ledger::Open(o);
  if (!l.ok()) {
    std::string m = l.status().message();
    for (char& ch : m) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (m.find("lock") != std::string::npos) {
      return Status::IOError("the ledger at " + o.path +
                             " is in use (is narae-switch running? stop it first)");
    }
    return Status::IOError(l.status().ToString());
  }
  return l;
}

Result<std::unique_ptr<nc::KeyStore>> OpenKeys(const Common& c) {
  Result<nc::SecretBytes> mk = nc::LoadMasterKeyFile(MasterKeyPath(c));
  if (!mk.ok()) return mk.status();
  std::error_code ec;
  std::filesystem::create_directories(c.data + "/keys", ec);
  ::chmod((c.data + "/keys").c_str(), 0700);
  return nc::KeyStore::Open(c.data + "/keys", std::move(*mk));
}

// Both opened, or an error already reported.
struct Bank {
  std::unique_ptr<ledger::Ledger> ledger;
  std::unique_ptr<nc::KeyStore> keys;
};
std::optional<Bank> OpenBank(const Common& c, bool need_keys) {
  Bank b;
  if (need_keys) {
    auto k = OpenKeys(c);
    if (!k.ok()) {
      Fail(c, k.status());
      return std::nullopt;
    }
    b.keys = std::move(*k);
  }
  auto l = OpenLedger(c);
  if (!l.ok()) {
    Fail(c, l.status());
    return std::nullopt;
  }
  b.ledger = std::move(*l);
  return b;
}

std::optional<ledger::AccountId> ParseAccount(const Common& c, const std::string& hex) {
  std::optional<ledger::U128> v = ledger::U128::Parse(hex, false);
  if (!v || v->IsZero()) {
    Fail(c, Status::InvalidArgument("account id must be 1..32 hex digits"));
    return std::nullopt;
  }
  return ledger::AccountId{*v};
}

// The direct way to the store for a write operation (no switch running).
OpenDirect Opener(const Common& c) {
  return [c](bool need_keys) -> Result<DirectStore> {
    DirectStore store;
    if (need_keys) {
      auto k = OpenKeys(c);
      if (!k.ok()) return k.status();
      store.keys = std::move(*k);
    }
    auto l = OpenLedger(c);
    if (!l.ok()) return l.status();
    store.ledger = std::move(*l);
    return store;
  };
}

// Runs a write operation (through the running switch or directly) and
// prints its result: `text` makes the sentence for people from the JSON.
void RunWrite(const Common& c, std::string_view op, const json& args,
              const std::function<std::string(const json&)>& text) {
  Result<json> r = RunWriteOp(c.data, op, args, Opener(c));
  if (!r.ok()) return Fail(c, r.status());
  Print(c, *r, text(*r));
}

std::string Str(const json& j, const char* key) { return j.value(key, std::string()); }

using sw::CardJson;
using sw::SimJson;
json AccountJson(const ledger::Account& a) {
  return json{{"id", a.id.ToHex()},
              {"currency", a.ledger},
              {"code", a.code},
              {"flags", a.flags},
              {"minimum_balance_minor", a.minimum_balance_minor},
              {"debits_pending", a.debits_pending},
              {"debits_posted", a.debits_posted},
              {"credits_pending", a.credits_pending},
              {"credits_posted", a.credits_posted},
              {"closed", (a.flags & ledger::account_flags::kClosed) != 0},
              {"frozen", (a.flags & ledger::account_flags::kFrozen) != 0}};
}

// ---- demo seed ----

void AddDemo(CLI::App& app) {
  CLI::App* demo = app.add_subcommand("demo", "demo bank");
  demo->require_subcommand(1);
  struct Opts {
    Common c;
    std::string out = "demo.json";
    uint32_t customers = 10;
    bool bench = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* seed = demo->add_subcommand(
      "seed", "create the demo bank: keys, accounts, Okryu merchants, terminals, cards, SIMs");
  AddCommon(seed, &o->c);
  seed->add_option("--out", o->out, "where to write demo.json (mode 0600: it holds test secrets)");
  seed->add_option("--customers", o->customers,
                   "customers (each: KPW+USD accounts, 2 cards, 1 SIM)")
      ->check(CLI::Range(1u, static_cast<unsigned>(sw::kSeedCustomersMax)));
  seed->add_flag("--bench", o->bench,
                 "a bank for load tests: cards and SIMs without daily amount or count limits "
                 "and deposits that long runs of `narae bench switch` cannot exhaust "
                 "(never for a real bank)");
  seed->callback([o] {
    const Common& c = o->c;
    std::error_code ec;
    std::filesystem::create_directories(c.data, ec);
    if (ec) return Fail(c, Status::IOError("cannot create " + c.data + ": " + ec.message()));
    std::string mk = MasterKeyPath(c);
    if (!std::filesystem::exists(mk)) {
      Result<std::string> kcv = nc::CreateMasterKeyFile(mk);
      if (!kcv.ok()) return Fail(c, kcv.status());
    }
    auto bank = OpenBank(c, true);
    if (!bank) return;
    sw::SeedOptions so;
    so.customers = o->customers;
    if (o->bench) sw::ApplyBenchSeedOptions(&so);
    Result<sw::DemoBank> demo = sw::SeedDemo(*bank->ledger, *bank->keys, so);
    if (!demo.ok()) return Fail(c, demo.status());
    std::string text = sw::DemoBankJson(*demo, c.data + "/ledger", c.data + "/keys", mk);
    {
      std::ofstream f(o->out, std::ios::trunc);
      f << text;
      if (!f.good()) return Fail(c, Status::IOError("cannot write " + o->out));
    }
    ::chmod(o->out.c_str(), 0600);
    Status closed = bank->ledger->Close();
    if (!closed.ok()) return Fail(c, closed);
    json j{{"out", o->out},
           {"merchants", demo->merchants.size()},
           {"cards", demo->cards.size()},
           {"sims", demo->sims.size()},
           {"accounts", demo->accounts.size()}};
    Print(c, j,
          "seeded the demo bank in " + c.data + ": " + std::to_string(demo->merchants.size()) +
              " merchants, " + std::to_string(demo->accounts.size()) + " customer accounts, " +
              std::to_string(demo->cards.size()) + " cards, " + std::to_string(demo->sims.size()) +
              " SIM tokens; test credentials in " + o->out + "\n");
  });
}

// ---- account ----

void AddAccount(CLI::App& app) {
  CLI::App* account = app.add_subcommand("account", "customer deposit accounts");
  account->require_subcommand(1);
  struct Opts {
    Common c;
    uint16_t currency = 408;
    uint64_t minimum = 0;
    uint64_t deposit = 0;
    std::string customer;
    std::string id;
    uint32_t limit = 100;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* open = account->add_subcommand("open", "open a customer deposit account");
  AddCommon(open, &o->c);
  open->add_option("--currency", o->currency, "ISO 4217 numeric (408 KPW, 840 USD)");
  open->add_option("--min-balance", o->minimum, "minimum balance, minor units");
  open->add_option("--deposit", o->deposit, "initial deposit from the bank's funding account");
  open->add_option("--customer", o->customer, "customer name or number");
  open->callback([o] {
    json args{{"currency", o->currency},
              {"min_balance_minor", o->minimum},
              {"deposit_minor", o->deposit},
              {"customer", o->customer}};
    RunWrite(o->c, "account.open", args,
             [](const json& j) { return "opened account " + Str(j, "account_id") + "\n"; });
  });
  auto change = [account, o](const char* name, const char* help) {
    CLI::App* cmd = account->add_subcommand(name, help);
    AddCommon(cmd, &o->c);
    cmd->add_option("--id", o->id, "account id (hex)")->required();
    cmd->callback([o, name] {
      auto id = ParseAccount(o->c, o->id);
      if (!id) return;
      RunWrite(o->c, std::string("account.") + name, json{{"id", id->ToHex()}},
               [name](const json& j) {
                 return std::string(name) + " " + Str(j, "account_id") + ": ok\n";
               });
    });
  };
  change("close", "close an account (no pending balance)");
  change("freeze", "freeze an account (no new payments)");
  change("unfreeze", "unfreeze an account");
  CLI::App* show = account->add_subcommand("show", "show an account's balances");
  AddCommon(show, &o->c);
  show->add_option("--id", o->id, "account id (hex)")->required();
  show->callback([o] {
    auto id = ParseAccount(o->c, o->id);
    if (!id) return;
    auto bank = OpenBank(o->c, false);
    if (!bank) return;
    auto a = bank->ledger->LookupAccount(*id);
    if (!a) return Fail(o->c, Status::NotFound("no account " + id->ToHex()));
    json j = AccountJson(*a);
    if (auto info = bank->ledger->GetAux(sw::AccountKey(*id))) {
      auto ci = sw::DecodeCustomerAccount(*info);
      if (ci.ok()) j["customer"] = ci->customer;
    }
    Print(o->c, j, j.dump(2) + "\n");
  });
  CLI::App* list = account->add_subcommand("list", "list accounts (id order)");
  AddCommon(list, &o->c);
  list->add_option("--limit", o->limit, "at most this many")->check(CLI::Range(1u, 100000u));
  list->callback([o] {
    auto bank = OpenBank(o->c, false);
    if (!bank) return;
    json rows = json::array();
    std::string text = "id\tcurrency\tcode\tbalance_posted\tpending_debits\tstate\n";
    Status s = bank->ledger->ScanAccounts([&](const ledger::Account& a) {
      rows.push_back(AccountJson(a));
      __int128 bal = static_cast<__int128>(a.credits_posted) - a.debits_posted;
      text += a.id.ToHex() + "\t" + std::to_string(a.ledger) + "\t" + std::to_string(a.code) +
              "\t" + std::to_string(static_cast<int64_t>(bal)) + "\t" +
              std::to_string(a.debits_pending) + "\t" +
              ((a.flags & ledger::account_flags::kClosed)   ? "closed"
               : (a.flags & ledger::account_flags::kFrozen) ? "frozen"
                                                            : "open") +
              "\n";
      return rows.size() < o->limit;
    });
    if (!s.ok()) return Fail(o->c, s);
    Print(o->c, json{{"accounts", rows}}, text);
  });
}

// ---- merchant, terminal ----

void AddMerchant(CLI::App& app) {
  CLI::App* merchant = app.add_subcommand("merchant", "merchants");
  merchant->require_subcommand(1);
  struct Opts {
    Common c;
    std::string id, name;
    uint16_t mcc = 0;
    std::vector<uint16_t> currencies{408, 840};
    std::string terminal;
    bool mac = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* create = merchant->add_subcommand(
      "create", "create a merchant with clearing and settlement accounts per currency");
  AddCommon(create, &o->c);
  create->add_option("--id", o->id, "merchant id, 1..15 characters (field 42)")->required();
  create->add_option("--name", o->name, "name")->required();
  create->add_option("--mcc", o->mcc, "merchant category code")->required();
  create->add_option("--currencies", o->currencies, "ISO 4217 numeric codes")->delimiter(',');
  create->callback([o] {
    json args{{"id", o->id}, {"name", o->name}, {"mcc", o->mcc}, {"currencies", o->currencies}};
    RunWrite(o->c, "merchant.create", args,
             [](const json& j) { return "created merchant " + Str(j, "id") + "\n"; });
  });
  CLI::App* show = merchant->add_subcommand("show", "show a merchant");
  AddCommon(show, &o->c);
  show->add_option("--id", o->id, "merchant id")->required();
  show->callback([o] {
    auto bank = OpenBank(o->c, false);
    if (!bank) return;
    auto v = bank->ledger->GetAux(sw::MerchantKey(o->id));
    if (!v) return Fail(o->c, Status::NotFound("no merchant " + o->id));
    json j = json::parse(*v, nullptr, false);
    Print(o->c, j, j.dump(2) + "\n");
  });
  CLI::App* terminal = app.add_subcommand("terminal", "terminals");
  terminal->require_subcommand(1);
  CLI::App* add = terminal->add_subcommand(
      "add", "add a terminal (prints its PIN key and MAC key once, for key loading)");
  AddCommon(add, &o->c);
  add->add_option("--id", o->terminal, "terminal id, exactly 8 characters (field 41)")->required();
  add->add_option("--merchant", o->id, "merchant id")->required();
  add->add_flag("--mac", o->mac, "require a MAC (field 64) from this terminal");
  add->callback([o] {
    json args{{"id", o->terminal}, {"merchant", o->id}, {"mac", o->mac}};
    RunWrite(o->c, "terminal.add", args, [](const json& j) {
      const std::string mac = Str(j, "mac_key_hex");
      return "added terminal " + Str(j, "id") +
             "\nTPK (load into the terminal, shown once): " + Str(j, "tpk_hex") + "\n" +
             (mac.empty() ? "" : "MAC key (shown once): " + mac + "\n");
    });
  });
}

// ---- card ----

struct LimitOpts {
  uint64_t single = 0, daily = 0;
  uint32_t count = 0, per_minute = 0;
  std::vector<uint16_t> mccs;
  bool any = false;
};
void AddLimitOptions(CLI::App* cmd, LimitOpts* l) {
  auto mark = [l](const std::string&) { l->any = true; };
  cmd->add_option("--single-max", l->single, "max single amount, minor units (0 none)")->each(mark);
  cmd->add_option("--daily-max", l->daily, "max daily amount, minor units (0 none)")->each(mark);
  cmd->add_option("--daily-count", l->count, "max approvals per day (0 none)")->each(mark);
  cmd->add_option("--per-minute", l->per_minute, "max approvals per minute (0 none)")->each(mark);
  cmd->add_option("--blocked-mcc", l->mccs, "merchant categories refused")
      ->delimiter(',')
      ->each(mark);
}
std::optional<sw::RiskLimits> ToLimits(const LimitOpts& l) {
  if (!l.any) return std::nullopt;
  sw::RiskLimits r;
  r.single_amount_max_minor = l.single;
  r.daily_amount_max_minor = l.daily;
  r.daily_count_max = l.count;
  r.per_minute_max = l.per_minute;
  r.blocked_mccs = l.mccs;
  return r;
}

// From the JSON of sw::IssuedCard (switch/admin_ops.cpp).
std::string IssuedText(const json& j) {
  return "issued card " + Str(j, "card_id") + " on account " + Str(j, "account_id") +
         "\n(shown once; only the PVV is stored)\nPAN " + Str(j, "pan") + "\nexpiry " +
         Str(j, "expiry") + "\nCVV2 " + Str(j, "cvv2") + "\nPIN " + Str(j, "pin") + "\n";
}
void AddLimitsArg(const LimitOpts& l, json* args) {
  if (std::optional<sw::RiskLimits> r = ToLimits(l)) (*args)["limits"] = sw::LimitsJson(*r);
}

void AddCard(CLI::App& app) {
  CLI::App* card = app.add_subcommand("card", "Narae cards");
  card->require_subcommand(1);
  struct Opts {
    Common c;
    std::string account, expiry, pin, card, reason = "blocked";
    LimitOpts limits;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* issue = card->add_subcommand(
      "issue", "issue a card (prints PAN, expiry, CVV2 and the initial PIN once)");
  AddCommon(issue, &o->c);
  issue->add_option("--account", o->account, "customer account id (hex)")->required();
  issue->add_option("--expiry", o->expiry, "YYMM (default: 4 years)");
  issue->add_option("--pin", o->pin, "initial PIN (default: random)");
  AddLimitOptions(issue, &o->limits);
  issue->callback([o] {
    auto id = ParseAccount(o->c, o->account);
    if (!id) return;
    json args{{"account", id->ToHex()}, {"expiry", o->expiry}, {"pin", o->pin}};
    AddLimitsArg(o->limits, &args);
    RunWrite(o->c, "card.issue", args, IssuedText);
  });
  auto status_cmd = [card, o](const char* name, const char* help, bool has_reason) {
    CLI::App* cmd = card->add_subcommand(name, help);
    AddCommon(cmd, &o->c);
    cmd->add_option("--card", o->card, "PAN or card id")->required();
    if (has_reason) {
      cmd->add_option("--reason", o->reason, "blocked, lost or stolen")
          ->check(CLI::IsMember({"blocked", "lost", "stolen"}));
    }
    cmd->callback([o, has_reason] {
      json args{{"card", o->card}};
      if (has_reason) args["reason"] = o->reason;
      RunWrite(o->c, has_reason ? "card.block" : "card.unblock", args, [](const json& j) {
        return "card " + Str(j, "masked_pan") + " is now " + Str(j, "status") + "\n";
      });
    });
  };
  status_cmd("block", "block a card (reason blocked, lost or stolen)", true);
  status_cmd("unblock", "make a card active again (also clears wrong PIN tries)", false);
  CLI::App* replace = card->add_subcommand("replace", "replace a card by a new one on its account");
  AddCommon(replace, &o->c);
  replace->add_option("--card", o->card, "PAN or card id")->required();
  replace->callback([o] {
    Result<json> r = RunWriteOp(o->c.data, "card.replace", json{{"card", o->card}}, Opener(o->c));
    if (!r.ok()) return Fail(o->c, r.status());
    const std::string old_masked = Str(*r, "replaces_masked_pan");
    r->erase("replaces_masked_pan");
    Print(o->c, *r, "replaced card " + old_masked + "\n" + IssuedText(*r));
  });
  CLI::App* show = card->add_subcommand("show", "show a card (masked)");
  AddCommon(show, &o->c);
  show->add_option("--card", o->card, "PAN or card id")->required();
  show->callback([o] {
    auto bank = OpenBank(o->c, false);
    if (!bank) return;
    auto c = sw::FindCard(*bank->ledger, o->card);
    if (!c.ok()) return Fail(o->c, c.status());
    json j = CardJson(*c);
    Print(o->c, j, j.dump(2) + "\n");
  });
}

// ---- sim ----

void AddSim(CLI::App& app) {
  CLI::App* sim = app.add_subcommand("sim", "SIM-linked payment tokens");
  sim->require_subcommand(1);
  struct Opts {
    Common c;
    std::string account, iccid, msisdn, token;
    LimitOpts limits;
  };
  auto o = std::make_shared<Opts>();
  // From the JSON of sw::EnrolledSim (switch/admin_ops.cpp).
  auto enrolled_text = [](const json& j) {
    return "SIM token " + Str(j, "token_id") + " (ICCID " + Str(j, "iccid") + ", MSISDN " +
           Str(j, "msisdn") + ") on account " + Str(j, "account_id") +
           "\nSIM key for personalisation (shown once): " + Str(j, "sim_key_hex") + "\n";
  };
  CLI::App* enroll = sim->add_subcommand("enroll", "enroll a SIM (prints its key once)");
  AddCommon(enroll, &o->c);
  enroll->add_option("--account", o->account, "customer account id (hex)")->required();
  enroll->add_option("--iccid", o->iccid, "SIM serial number (default: generated)");
  enroll->add_option("--msisdn", o->msisdn, "phone number (default: generated)");
  AddLimitOptions(enroll, &o->limits);
  enroll->callback([o, enrolled_text] {
    auto id = ParseAccount(o->c, o->account);
    if (!id) return;
    json args{{"account", id->ToHex()}, {"iccid", o->iccid}, {"msisdn", o->msisdn}};
    AddLimitsArg(o->limits, &args);
    RunWrite(o->c, "sim.enroll", args, enrolled_text);
  });
  CLI::App* suspend = sim->add_subcommand("suspend", "suspend a SIM token");
  AddCommon(suspend, &o->c);
  suspend->add_option("--token", o->token, "token id")->required();
  suspend->callback([o] {
    RunWrite(o->c, "sim.suspend", json{{"token", o->token}},
             [](const json& j) { return "SIM token " + Str(j, "token_id") + " suspended\n"; });
  });
  CLI::App* reenroll = sim->add_subcommand(
      "reenroll", "bind a token to a new SIM (new key, counter reset, active again)");
  AddCommon(reenroll, &o->c);
  reenroll->add_option("--token", o->token, "token id")->required();
  reenroll->add_option("--iccid", o->iccid, "the new SIM's ICCID (default: generated)");
  reenroll->callback([o, enrolled_text] {
    RunWrite(o->c, "sim.reenroll", json{{"token", o->token}, {"iccid", o->iccid}}, enrolled_text);
  });
  CLI::App* show = sim->add_subcommand("show", "show a SIM token");
  AddCommon(show, &o->c);
  show->add_option("--token", o->token, "token id")->required();
  show->callback([o] {
    auto bank = OpenBank(o->c, false);
    if (!bank) return;
    auto s = sw::FindSimRecord(*bank->ledger, o->token);
    if (!s.ok()) return Fail(o->c, s.status());
    json j = SimJson(*s);
    Print(o->c, j, j.dump(2) + "\n");
  });
}

}  // namespace

int ExitCodeOf(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kIOError:
    case StatusCode::kCorruption:
    case StatusCode::kPermissionDenied:
    case StatusCode::kUnavailable:
    case StatusCode::kCrypto:
    case StatusCode::kInternal:
      return 2;
    default:
      return 1;
  }
}

void ReportFailure(bool json_output, const Status& s) {
  if (json_output) {
    std::printf("%s\n", json{{"ok", false}, {"error", s.ToString()}}.dump().c_str());
  } else {
    std::fprintf(stderr, "narae: %s\n", s.ToString().c_str());
  }
  SetExitCode(ExitCodeOf(s));
}

void RegisterBankCommands(CLI::App& app) {
  AddDemo(app);
  AddAccount(app);
  AddMerchant(app);
  AddCard(app);
  AddSim(app);
}

}  // namespace narae::tools
