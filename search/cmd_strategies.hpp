// `hwnas strategies [--json]`: every registered search strategy with its description and its
// parameters (domain, default, meaning), read from the strategy registry
// (strategies/registry.hpp), so the list can never disagree with what a config accepts.
#pragma once

#include <CLI/CLI.hpp>

namespace hwnas::search {

void add_strategy_commands(CLI::App& app);

}  // namespace hwnas::search
