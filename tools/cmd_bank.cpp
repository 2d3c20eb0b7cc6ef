// Bank records for staff: demo seed, accounts, merchants, terminals, cards
// and SIMs. (Being written; see docs/authorization.md.)
#include "tools/cli.hpp"

namespace narae::tools {
void RegisterBankCommands(CLI::App& app) { (void)app; }
}  // namespace narae::tools
