// `narae bench switch`: the switch load generator. (Being written.)
#include "tools/cli.hpp"

namespace narae::tools {
void RegisterSwitchBenchCommands(CLI::App& app) { (void)app; }
}  // namespace narae::tools
