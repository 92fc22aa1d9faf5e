// `hwnas search`, `hwnas rescore` and `hwnas config` subcommands.
#pragma once

#include <CLI/CLI.hpp>

namespace hwnas::search {

void add_search_commands(CLI::App& app);

// The error type every subcommand throws for bad user input: main prints "error: <what>" on
// one line and exits with kUsageExitCode.
inline constexpr int kUsageExitCode = 2;

}  // namespace hwnas::search
