// The evaluator family behind one registry (common/registry.hpp): each entry declares its
// parameters once (ParamSpecs, validated and documented by the config), the metrics it reports
// for a config (objectives are checked against them), and the factory that builds evaluators.
// Shared data (the training images, a parsed table) is made once per process and shared by every
// evaluator the factory makes.
//
//   train    really trains each candidate on the config's task (evaluators/task_registry.hpp)
//   tabular  looks metrics up in a CSV of pre-trained architectures (NAS-Bench style)
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/registry.hpp"
#include "search/config.hpp"
#include "search/executor.hpp"

namespace hwnas::search {

struct EvaluatorEntry {
  std::string name;
  std::string description;
  std::vector<ParamSpec> params;  // evaluator.<name> parameters (besides "type")
  // Fills the config's evaluator fields from c.evaluator_params (validated against params) and
  // checks what a ParamSpec cannot (files exist, the task pairing); relative paths resolve
  // against `base_dir`.  Throws ConfigError naming the field.
  std::function<void(SearchConfig& c, const std::string& base_dir)> configure;
  // The metrics evaluations report under this config.
  std::function<std::vector<std::string>(const SearchConfig& c)> metric_names;
  std::function<EvaluatorFactory(const SearchConfig& c)> make;
};

// Filled by register_builtin_evaluators() on first use.
const Registry<EvaluatorEntry>& evaluator_registry();
void register_builtin_evaluators(Registry<EvaluatorEntry>& r);

EvaluatorFactory make_evaluator_factory(const SearchConfig& config);

}  // namespace hwnas::search
