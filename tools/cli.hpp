// The `narae` command line: each group of commands registers itself on the
// CLI11 app. A command's callback stores its exit code with SetExitCode():
// 0 success, 1 "something is wrong" (a break, a failed check), 2 usage or
// I/O error.
#pragma once

#include <CLI/CLI.hpp>

#include "ledger/status.hpp"

namespace narae::tools {

void SetExitCode(int code);

// A failed command's exit code by the convention above: 2 for usage, I/O,
// corruption and internal errors, 1 for a refusal (not found, exists,
// failed precondition, ...). ReportFailure() prints the error (a JSON
// object with --json, else a line on stderr) and sets that exit code.
// Both in tools/cmd_bank.cpp.
int ExitCodeOf(const narae::Status& s);
void ReportFailure(bool json_output, const narae::Status& s);

void RegisterLedgerCommands(CLI::App& app);  // bench ledger, verify, ...
void RegisterHsmCommands(CLI::App& app);     // hsm ..., keys ... (crypto)
// demo seed, account/merchant/card/sim/terminal commands (tools/cmd_bank.cpp)
void RegisterBankCommands(CLI::App& app);
// bench switch: the load generator (tools/cmd_bench_switch.cpp); adds to
// the "bench" subcommand created by RegisterLedgerCommands.
void RegisterSwitchBenchCommands(CLI::App& app);
// trial-balance, statement, backup, restore (tools/cmd_audit.cpp)
void RegisterAuditCommands(CLI::App& app);
// day, fees, bank, settle, bench settle (tools/cmd_settle.cpp)
void RegisterSettleCommands(CLI::App& app);
// reconcile, bench reconcile (tools/cmd_reconcile.cpp); after the bench group exists
void RegisterReconcileCommands(CLI::App& app);
// bench crypto: cost of each credential check (tools/cmd_bench_crypto.cpp); after bench exists
void RegisterCryptoBenchCommands(CLI::App& app);
// bench machine: the machine's own latency floor (tools/cmd_bench_machine.cpp); after bench exists
void RegisterMachineBenchCommands(CLI::App& app);

}  // namespace narae::tools
