#include "strategies/registry.hpp"

#include <sstream>
#include <stdexcept>

namespace hwnas::strategies {

void register_builtin_strategies(Registry<StrategyEntry>& r) {
  r.add(random_search_strategy());
  r.add(regularized_evolution_strategy());
  r.add(nsga2_strategy());
  r.add(local_search_strategy());
  r.add(reinforce_strategy());
  r.add(bananas_strategy());
  r.add(successive_halving_strategy());
  r.add(hyperband_strategy());
  r.add(darts_strategy());
  r.add(spos_strategy());
}

const Registry<StrategyEntry>& strategy_registry() {
  static const Registry<StrategyEntry> r = [] {
    Registry<StrategyEntry> k("strategy");
    register_builtin_strategies(k);
    return k;
  }();
  return r;
}

std::vector<std::string> strategy_names() { return strategy_registry().names(); }

namespace {

const StrategyEntry& entry_of(const nlohmann::json& config) {
  const auto& reg = strategy_registry();
  if (!config.is_object())
    throw std::invalid_argument(
        "strategy: must be an object {\"type\": ..., params} (known: " + reg.known_list() + ")");
  auto it = config.find("type");
  if (it == config.end() || !it->is_string())
    throw std::invalid_argument("strategy.type: missing (known: " + reg.known_list() + ")");
  try {
    return reg.at(it->get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("strategy.type: ") + e.what());
  }
}

}  // namespace

nlohmann::json resolve_strategy_config(const nlohmann::json& config) {
  return resolve_params(entry_of(config).params, config, "strategy");
}

std::unique_ptr<Strategy> make_strategy(const nlohmann::json& config, const spaces::Space& space,
                                        const StrategyContext& context) {
  const StrategyEntry& e = entry_of(config);
  return e.make(resolve_params(e.params, config, "strategy"), space, context);
}

std::string describe_strategy_params() {
  std::ostringstream os;
  for (const auto& [name, e] : strategy_registry().entries()) {
    os << "strategy.type = \"" << name << "\": " << e.description << "\n";
    if (e.params.empty())
      os << "  (no parameters)\n";
    else
      os << describe_params(e.params, "strategy.");
  }
  return os.str();
}

std::string describe_strategies() {
  std::ostringstream os;
  for (const auto& [name, e] : strategy_registry().entries()) {
    os << name << "  " << e.description << "\n";
    if (e.params.empty())
      os << "  (no parameters)\n";
    else
      os << describe_params(e.params, "");
  }
  return os.str();
}

nlohmann::json strategies_json() {
  nlohmann::json all = nlohmann::json::array();
  for (const auto& [name, e] : strategy_registry().entries()) {
    nlohmann::json ps = nlohmann::json::array();
    for (const auto& p : e.params) ps.push_back(p.to_json());
    all.push_back({{"name", name}, {"description", e.description}, {"params", ps}});
  }
  return all;
}

}  // namespace hwnas::strategies
