// `narae merchant webhook set|show|remove`: a merchant's webhook (the URL the
// switch POSTs the merchant's events to, signed with a secret kept in the key
// store). docs/api.md, "Webhooks"; switch/webhook.hpp. Like the other bank
// commands they need the ledger, so they run while narae-switch is stopped.
#include <sys/stat.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/webhook.hpp"
#include "tools/cli.hpp"
#include "tools/cmd_webhook.hpp"

namespace narae::tools {
namespace {

namespace sw = narae::switching;
using json = nlohmann::json;

struct Opts {
  std::string data;
  std::string master_key_file;
  std::string merchant;
  std::string url;
  std::string secret_hex;
  bool json = false;
};

void AddCommon(CLI::App* cmd, Opts* o) {
  cmd->add_option("--data", o->data, "data folder (ledger in DIR/ledger, keys in DIR/keys)")
      ->required();
  cmd->add_option("--master-key-file", o->master_key_file,
                  "master key file (default DIR/master.key)");
  cmd->add_option("--merchant", o->merchant, "merchant id")->required();
  cmd->add_flag("--json", o->json, "print one JSON object");
}

Result<std::unique_ptr<ledger::Ledger>> OpenLedger(const Opts& o) {
  ledger::Options lo;
  lo.path = o.data + "/ledger";
  auto l = ledger::Ledger::Open(lo);
  if (!l.ok()) {
    std::string m = l.status().message();
    for (char& ch : m) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (m.find("lock") != std::string::npos) {
      return Status::IOError("the ledger at " + lo.path +
                             " is in use (is narae-switch running? stop it first)");
    }
    return Status::IOError(l.status().ToString());
  }
  return l;
}

Result<std::unique_ptr<crypto::KeyStore>> OpenKeys(const Opts& o) {
  const std::string path = o.master_key_file.empty() ? o.data + "/master.key" : o.master_key_file;
  Result<crypto::SecretBytes> mk = crypto::LoadMasterKeyFile(path);
  if (!mk.ok()) return mk.status();
  std::error_code ec;
  std::filesystem::create_directories(o.data + "/keys", ec);
  ::chmod((o.data + "/keys").c_str(), 0700);
  return crypto::KeyStore::Open(o.data + "/keys", std::move(*mk));
}

void Print(const Opts& o, json j, const std::string& text) {
  if (o.json) {
    j["ok"] = true;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s", text.c_str());
  }
}

void Set(const Opts& o) {
  auto keys = OpenKeys(o);
  if (!keys.ok()) return ReportFailure(o.json, keys.status());
  auto ledger = OpenLedger(o);
  if (!ledger.ok()) return ReportFailure(o.json, ledger.status());
  Result<std::string> secret = sw::SetWebhook(**ledger, **keys, o.merchant, o.url, o.secret_hex);
  Status closed = (*ledger)->Close();
  if (!secret.ok()) return ReportFailure(o.json, secret.status());
  if (!closed.ok()) return ReportFailure(o.json, closed);
  // The secret is shown once, for the merchant's receiver (it stays in the key store).
  Print(o, json{{"merchant", o.merchant}, {"url", o.url}, {"secret_hex", *secret}},
        "webhook of " + o.merchant + ": " + o.url +
            "\nsecret (give it to the merchant): " + *secret + "\n");
}

void Show(const Opts& o) {
  auto ledger = OpenLedger(o);
  if (!ledger.ok()) return ReportFailure(o.json, ledger.status());
  auto got = sw::GetWebhook(**ledger, o.merchant);
  if (!got.ok()) return ReportFailure(o.json, got.status());
  if (!got->has_value()) {
    return ReportFailure(o.json, Status::NotFound("no webhook for " + o.merchant));
  }
  const sw::WebhookConfig& c = **got;
  std::optional<std::string> cursor =
      (*ledger)->GetAux(std::string(sw::kAuxDeliveryCursorPrefix) + o.merchant);
  Print(o,
        json{{"merchant", o.merchant},
             {"url", c.url},
             {"key_id", c.key_id},
             {"delivered_through", cursor ? "evt_" + *cursor : ""}},
        o.merchant + ": " + c.url + " (secret: key " + c.key_id + ")\n");
}

void Remove(const Opts& o) {
  auto ledger = OpenLedger(o);
  if (!ledger.ok()) return ReportFailure(o.json, ledger.status());
  Status s = sw::RemoveWebhook(**ledger, o.merchant);
  if (!s.ok()) return ReportFailure(o.json, s);
  Print(o, json{{"merchant", o.merchant}}, "webhook of " + o.merchant + " removed\n");
}

}  // namespace

void RegisterWebhookCommands(CLI::App& app) {
  CLI::App* merchant = app.get_subcommand("merchant");  // made by RegisterBankCommands
  CLI::App* webhook =
      merchant->add_subcommand("webhook", "the merchant's signed event webhook (docs/api.md)");
  webhook->require_subcommand(1);
  auto o = std::make_shared<Opts>();
  CLI::App* set = webhook->add_subcommand(
      "set", "register or replace the webhook URL; prints the signing secret once");
  AddCommon(set, o.get());
  set->add_option("--url", o->url, "http://host[:port][/path]")->required();
  set->add_option("--secret-hex", o->secret_hex, "64 hex digits (default: a new random secret)");
  set->callback([o] { Set(*o); });
  CLI::App* show = webhook->add_subcommand("show", "show the webhook (not its secret)");
  AddCommon(show, o.get());
  show->callback([o] { Show(*o); });
  CLI::App* remove = webhook->add_subcommand("remove", "stop delivering the merchant's events");
  AddCommon(remove, o.get());
  remove->callback([o] { Remove(*o); });
}

}  // namespace narae::tools
