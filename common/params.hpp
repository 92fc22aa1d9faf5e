// Parameter declarations shared by every registered family (block kinds, strategies, device
// families, space types, tasks, evaluators).  A family entry declares its parameters once as
// ParamSpecs; validation, default filling and the `hwnas ... params` documentation all come
// from that one declaration.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace hwnas {

enum class ParamType { Int, Float, Choice, Bool, String, Json };
const char* param_type_name(ParamType t);

// One parameter's domain: an explicit set of values (Int, Choice), a closed range (Int, Float),
// a bool, a free string, or any JSON value (a nested object the entry validates itself).
struct ParamSpec {
  std::string name;
  ParamType type = ParamType::Int;
  std::vector<nlohmann::json> values;  // allowed set; empty means the range [min, max]
  double min = 0, max = 0;
  nlohmann::json default_value;  // null: required (resolve_params reports it missing)
  std::string description;

  static ParamSpec int_range(std::string name, int lo, int hi, int def, std::string desc);
  static ParamSpec int_set(std::string name, std::vector<int> set, int def, std::string desc);
  static ParamSpec float_range(std::string name, double lo, double hi, double def,
                               std::string desc);
  static ParamSpec choice(std::string name, std::vector<std::string> set, std::string def,
                          std::string desc);
  static ParamSpec boolean(std::string name, bool def, std::string desc);
  static ParamSpec string(std::string name, std::string def, std::string desc);
  static ParamSpec any_json(std::string name, nlohmann::json def, std::string desc);

  // Empty if `v` lies in the domain, else the reason, e.g. "4 not in {1,3,5,7}".
  std::string check(const nlohmann::json& v) const;
  std::string domain_str() const;  // "{1,3,5,7}", "int [1, 4096]", "float [0, 0.9]", "bool"
  nlohmann::json to_json() const;
};

// Validates `given` (a JSON object, or null for "all defaults") against `specs` and returns it
// with every default filled in.  `where` prefixes error messages, e.g. "strategy" gives
// "strategy.population: 1 not in int [2, 100000]".  `ignore` lists keys that are accepted
// without a spec (such as the "type" selector).  Unknown keys are refused with the known list.
// Throws std::invalid_argument.
nlohmann::json resolve_params(const std::vector<ParamSpec>& specs, const nlohmann::json& given,
                              const std::string& where,
                              const std::vector<std::string>& ignore = {"type"});

// A fixed-width text table of specs (name, type/domain, default, description), one per line,
// each line prefixed by `prefix` (e.g. "strategy.").
std::string describe_params(const std::vector<ParamSpec>& specs, const std::string& prefix);

}  // namespace hwnas
