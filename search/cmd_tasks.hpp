// `hwnas tasks [--json]`: every registered task with its description, the input types it can
// feed, its output head, primary metric and parameters (evaluators/task_registry.hpp).
#pragma once

#include <CLI/CLI.hpp>

namespace hwnas::search {

void add_tasks_commands(CLI::App& app);

}  // namespace hwnas::search
