#include "search/cmd_tasks.hpp"

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "evaluators/task_registry.hpp"

namespace hwnas::search {
namespace {

nlohmann::json tasks_json() {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, e] : eval::task_registry().entries()) {
    const nlohmann::json defaults = resolve_params(e.params, nullptr, name);
    nlohmann::json inputs = nlohmann::json::array(), params = nlohmann::json::array();
    for (const auto& t : e.inputs(defaults)) inputs.push_back(t.to_json());
    for (const auto& p : e.params) params.push_back(p.to_json());
    out.push_back({{"name", name},
                   {"description", e.description},
                   {"inputs", inputs},
                   {"head", eval::head_kind_name(e.head)},
                   {"outputs", e.outputs(defaults)},
                   {"primary_metric", "val_" + e.primary_metric()},
                   {"maximize", e.primary_maximize()},
                   {"default_train", e.default_train},
                   {"params", params}});
  }
  return out;
}

}  // namespace

void add_tasks_commands(CLI::App& app) {
  auto* tasks =
      app.add_subcommand("tasks", "list the tasks a search can train on, with parameters");
  auto as_json = std::make_shared<bool>(false);
  tasks->add_flag("--json", *as_json, "print the tasks as JSON");
  tasks->callback([as_json] {
    if (*as_json)
      std::cout << tasks_json().dump(2) << "\n";
    else
      std::cout << eval::describe_tasks();
  });
}

}  // namespace hwnas::search
