// The strategy family's registry: every strategy is one StrategyEntry {name, description,
// params, make}.  Its parameters are declared once as ParamSpecs; make_strategy() validates a
// config's "strategy" object against them (resolve_params: unknown keys, types, ranges, with
// every default filled) before the entry's factory sees it, and `hwnas strategies` and
// `hwnas config params` print the same declarations.
//
// Adding a strategy: one file strategies/<name>.cpp defining `StrategyEntry <name>_strategy()`,
// its declaration below, and one line in register_builtin_strategies() (registry.cpp).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/registry.hpp"
#include "strategies/strategy.hpp"

namespace hwnas::strategies {

struct StrategyEntry {
  std::string name;
  std::string description;
  std::vector<ParamSpec> params;
  // Receives the parameters already validated against `params`, every default filled in (plus
  // "type").  Cross-field rules the specs cannot express are checked here and throw
  // std::invalid_argument "strategy.<field>: ...".
  std::function<std::unique_ptr<Strategy>(const nlohmann::json& params, const spaces::Space& space,
                                          const StrategyContext& context)>
      make;
  // Trains a supernet in its own phase (StrategyContext::oneshot) before proposing: it needs a
  // task with training data, so the harnesses that drive strategies on a synthetic table
  // (tests/strategies, the tabular searches of tests/search) leave it out.
  bool one_shot = false;
};

// One per strategy file.
StrategyEntry random_search_strategy();
StrategyEntry regularized_evolution_strategy();
StrategyEntry nsga2_strategy();
StrategyEntry local_search_strategy();
StrategyEntry reinforce_strategy();
StrategyEntry bananas_strategy();
StrategyEntry successive_halving_strategy();
StrategyEntry hyperband_strategy();
StrategyEntry darts_strategy();
StrategyEntry spos_strategy();

// Registers every built-in strategy (one line each in registry.cpp).
void register_builtin_strategies(Registry<StrategyEntry>& r);
// The process-wide strategy registry, filled on first use (thread-safe).
const Registry<StrategyEntry>& strategy_registry();

// A config's "strategy" object with its parameters validated and every default filled in;
// throws std::invalid_argument "strategy.<field>: ..." (the same checks make_strategy runs).
nlohmann::json resolve_strategy_config(const nlohmann::json& config);

// Every strategy's parameters as "strategy.<field>" rows (common/params.hpp describe_params),
// one block per strategy: the strategy part of `hwnas config params`.
std::string describe_strategy_params();
// `hwnas strategies`: each strategy with its description and parameter table; as JSON, an
// array of {name, description, params: [ParamSpec::to_json()]}.
std::string describe_strategies();
nlohmann::json strategies_json();

}  // namespace hwnas::strategies
