#include "tools/cli.hpp"

namespace narae::tools {
void RegisterLedgerCommands(CLI::App& app) { (void)app; }
}  // namespace narae::tools
