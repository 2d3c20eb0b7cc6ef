// narae: the command line bank staff and auditors use. See docs/tools.md.
#include <cstdio>
#include <exception>

#include "tools/cli.hpp"
#include "tools/cmd_webhook.hpp"

// jemalloc's options, as in narae-switch (switch/main.cpp): huge pages for the
// ledger's memtable arenas (narae bench ledger, narae demo seed).
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "thp:always";  // NOLINT: jemalloc's name
}

namespace narae::tools {
namespace {
int g_exit_code = 0;  // NOLINT: one per process
}
void SetExitCode(int code) {
  if (code > g_exit_code) g_exit_code = code;
}
}  // namespace narae::tools

int main(int argc, char** argv) {
  CLI::App app{"narae: bank staff and auditor tools for the Narae payment core"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every command");
  narae::tools::RegisterLedgerCommands(app);
  narae::tools::RegisterHsmCommands(app);
  narae::tools::RegisterBankCommands(app);
  narae::tools::RegisterWebhookCommands(app);  // merchant webhook ...
  narae::tools::RegisterSwitchBenchCommands(app);
  narae::tools::RegisterAuditCommands(app);
  narae::tools::RegisterSettleCommands(app);
  narae::tools::RegisterReconcileCommands(app);
  narae::tools::RegisterCryptoBenchCommands(app);
  narae::tools::RegisterMachineBenchCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "narae: %s\n", e.what());
    return 2;
  }
  return narae::tools::g_exit_code;
}
