// `narae hsm ...` and `narae keys ...`: the crypto module's functions for bank
// staff and test terminals. (Filled in by the crypto work.)
#include "tools/cli.hpp"

namespace narae::tools {
void RegisterHsmCommands(CLI::App& app) { (void)app; }
}  // namespace narae::tools
