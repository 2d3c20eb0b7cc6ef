// `narae merchant webhook set|show|remove`: a merchant's webhook (the URL the
// switch POSTs the merchant's events to, signed with a secret kept in the key
// store). docs/api.md, "Webhooks"; switch/webhook.hpp. Like the other bank
// write commands they go through the running switch's admin interface when
// there is one (the switch's own key store holds the new secret), else they
// open the ledger and key store directly (tools/admin_client.hpp).
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
#include "tools/admin_client.hpp"
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

// The operation (switch/admin_ops.cpp) through the running switch, or on
// the ledger (and, for `set`, the key store) opened directly.
Result<json> Run(const Opts& o, std::string_view op, const json& args) {
  return RunWriteOp(o.data, op, args, [&o](bool need_keys) -> Result<DirectStore> {
    DirectStore store;
    if (need_keys) {
      auto keys = OpenKeys(o);
      if (!keys.ok()) return keys.status();
      store.keys = std::move(*keys);
    }
    auto ledger = OpenLedger(o);
    if (!ledger.ok()) return ledger.status();
    store.ledger = std::move(*ledger);
    return store;
  });
}

void Set(const Opts& o) {
  json args{{"merchant", o.merchant}, {"url", o.url}};
  if (!o.secret_hex.empty()) args["secret_hex"] = o.secret_hex;
  Result<json> r = Run(o, "webhook.set", args);
  if (!r.ok()) return ReportFailure(o.json, r.status());
  // The secret is shown once, for the merchant's receiver (it stays in the key store).
  const std::string secret = r->value("secret_hex", std::string());
  Print(o, *r,
        "webhook of " + o.merchant + ": " + o.url +
            "\nsecret (give it to the merchant): " + secret + "\n");
}

void Show(const Opts& o) {
  Result<json> r = Run(o, "webhook.show", json{{"merchant", o.merchant}});
  if (!r.ok()) return ReportFailure(o.json, r.status());
  Print(o, *r,
        o.merchant + ": " + r->value("url", std::string()) + " (secret: key " +
            r->value("key_id", std::string()) + ")\n");
}

void Remove(const Opts& o) {
  Result<json> r = Run(o, "webhook.remove", json{{"merchant", o.merchant}});
  if (!r.ok()) return ReportFailure(o.json, r.status());
  Print(o, *r, "webhook of " + o.merchant + " removed\n");
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
