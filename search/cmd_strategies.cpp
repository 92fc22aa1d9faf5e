#include "search/cmd_strategies.hpp"

#include <iostream>
#include <memory>

#include "strategies/registry.hpp"

namespace hwnas::search {

void add_strategy_commands(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "strategies", "List search strategies with their parameters, domains and defaults");
  auto as_json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *as_json, "print the strategies as JSON");
  cmd->callback([as_json] {
    if (*as_json)
      std::cout << strategies::strategies_json().dump(2) << "\n";
    else
      std::cout << strategies::describe_strategies();
  });
}

}  // namespace hwnas::search
