// `narae merchant webhook ...` (tools/cmd_webhook.cpp). Its own header, not
// tools/cli.hpp, so adding it rebuilds only narae.cpp.
#pragma once

#include <CLI/CLI.hpp>

namespace narae::tools {

// Adds "webhook" to the "merchant" command group.
// REQUIRES: RegisterBankCommands(app) ran (it makes "merchant").
void RegisterWebhookCommands(CLI::App& app);

}  // namespace narae::tools
