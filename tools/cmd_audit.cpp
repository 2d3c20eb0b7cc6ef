// trial-balance, statement, backup, restore: being written (see docs/tools.md).
#include "tools/cli.hpp"

namespace narae::tools {
void RegisterAuditCommands(CLI::App& app) { (void)app; }
}  // namespace narae::tools
