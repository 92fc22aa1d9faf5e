#include "strategies/registry.hpp"

#include <functional>
#include <map>
#include <stdexcept>

namespace hwnas::strategies {
namespace {

using Factory =
    std::function<std::unique_ptr<Strategy>(const nlohmann::json&, const spaces::Space&)>;

const std::map<std::string, Factory>& factories() {
  static const std::map<std::string, Factory> table = {
      {"random", make_random_search},
      {"regularized_evolution", make_regularized_evolution},
  };
  return table;
}

std::string joined_names() {
  std::string s;
  for (const auto& [name, f] : factories()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

}  // namespace

std::vector<std::string> strategy_names() {
  std::vector<std::string> names;
  for (const auto& [name, f] : factories()) names.push_back(name);
  return names;
}

std::unique_ptr<Strategy> make_strategy(const nlohmann::json& config, const spaces::Space& space) {
  if (!config.is_object())
    throw std::invalid_argument("strategy: must be an object with a \"type\"");
  if (!config.contains("type") || !config["type"].is_string())
    throw std::invalid_argument("strategy.type: missing; one of: " + joined_names());
  const std::string type = config["type"].get<std::string>();
  auto it = factories().find(type);
  if (it == factories().end())
    throw std::invalid_argument("strategy.type: unknown strategy '" + type +
                                "'; one of: " + joined_names());
  return it->second(config, space);
}

int get_int(const nlohmann::json& config, const char* field, int fallback, int lo, int hi) {
  if (!config.contains(field)) return fallback;
  const auto& v = config[field];
  if (!v.is_number_integer())
    throw std::invalid_argument(std::string("strategy.") + field + ": must be an integer");
  long long x = v.get<long long>();
  if (x < lo || x > hi)
    throw std::invalid_argument(std::string("strategy.") + field + ": " + std::to_string(x) +
                                " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "]");
  return static_cast<int>(x);
}

double get_double(const nlohmann::json& config, const char* field, double fallback, double lo,
                  double hi) {
  if (!config.contains(field)) return fallback;
  const auto& v = config[field];
  if (!v.is_number())
    throw std::invalid_argument(std::string("strategy.") + field + ": must be a number");
  double x = v.get<double>();
  if (!(x >= lo && x <= hi))
    throw std::invalid_argument(std::string("strategy.") + field + ": " + std::to_string(x) +
                                " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "]");
  return x;
}

void check_known_fields(const nlohmann::json& config, std::initializer_list<const char*> known) {
  for (const auto& [key, value] : config.items()) {
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    if (!ok) {
      std::string list;
      for (const char* k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      throw std::invalid_argument("strategy." + key + ": unknown field for strategy '" +
                                  config.value("type", std::string("?")) + "'; known: " + list);
    }
  }
}

}  // namespace hwnas::strategies
