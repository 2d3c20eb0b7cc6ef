// The bank staff's write operations (docs/tools.md, "Write commands and a
// running switch"), one implementation each, run in two places:
//   - by `narae` itself when no switch runs on the data folder (it opens the
//     ledger and key store directly), and
//   - inside narae-switch by its admin interface (switch/admin_server.*),
//     where the same function runs on the switch's own Ledger (every write
//     goes through Ledger::Execute, so it commits in the switch's pipeline)
//     and then refreshes the authorizer's BankCache, so that a card issued or
//     blocked takes effect for the very next authorization.
//
// An operation is named ("card.issue") and takes its arguments as a JSON
// object; it returns a JSON object (the command's `--json` output without
// "ok"). Arguments are checked here: a missing or mistyped one is
// InvalidArgument naming it. Secrets created by an operation (PAN, CVV2,
// PIN, SIM key, terminal keys) are in its result only: printed once by the
// CLI, never logged.
//
// Thread safety: RunAdminOp may be called from any thread (the ledger, key
// store and BankCache are internally synchronized).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/status.hpp"
#include "switch/bank.hpp"
#include "switch/settlement.hpp"

namespace narae::ledger {
class Ledger;
}
namespace narae::crypto {
class KeyStore;
}

namespace narae::switching {

// What an operation runs on.
struct AdminTarget {
  ledger::Ledger* ledger = nullptr;  // required
  crypto::KeyStore* keys = nullptr;  // required by ops with AdminOpNeedsKeys()
  BankCache* cache = nullptr;        // the running switch's cache; null offline
  // The switch serves the HTTP API: a new merchant also gets its virtual
  // terminal (EnsureApiTerminals), as at the switch's start.
  bool http_api = false;
};

// The operations: account.open, account.close, account.freeze,
// account.unfreeze, merchant.create, terminal.add, card.issue, card.block,
// card.unblock, card.replace, sim.enroll, sim.suspend, sim.reenroll,
// day.close, fees.set, bank.add, backup, settle, settle.interbank,
// webhook.set, webhook.show, webhook.remove.
bool IsAdminOp(std::string_view op);
// True when the operation needs the key store (creates keys or secrets).
bool AdminOpNeedsKeys(std::string_view op);

// Runs `op` with `args`. Errors: InvalidArgument (unknown op, bad argument),
// and whatever the underlying operation returns (NotFound, AlreadyExists,
// FailedPrecondition, IOError, ...).
Result<nlohmann::json> RunAdminOp(const AdminTarget& target, std::string_view op,
                                  const nlohmann::json& args);

// A Status from its code name (StatusCodeName) and message: how an error
// crosses the admin interface. An unknown name gives Internal.
Status StatusFromName(std::string_view code_name, std::string message);

// The JSON the bank commands print for records (shared by the read
// commands of `narae`).
nlohmann::json LimitsJson(const RiskLimits& limits);
nlohmann::json CardJson(const Card& card);
nlohmann::json SimJson(const Sim& sim);
// A settlement run as `narae settle --json` prints it (the "settle" op's
// result): day, dry_run, captures, settled, already_settled, failed; each
// merchant as its stored record (MerchantSettlementJson, settlement.hpp).
nlohmann::json SettleSummaryJson(const SettleSummary& summary, bool dry_run);

}  // namespace narae::switching
