#include "common/params.hpp"

#include <algorithm>
#include <iomanip>
#include <sstream>
#include <stdexcept>

namespace hwnas {

const char* param_type_name(ParamType t) {
  switch (t) {
    case ParamType::Int:
      return "int";
    case ParamType::Float:
      return "float";
    case ParamType::Choice:
      return "choice";
    case ParamType::Bool:
      return "bool";
    case ParamType::String:
      return "string";
    case ParamType::Json:
      return "json";
  }
  return "?";
}

// ---- ParamSpec ----

ParamSpec ParamSpec::int_range(std::string name, int lo, int hi, int def, std::string desc) {
  ParamSpec p{std::move(name), ParamType::Int, {}, double(lo), double(hi), def, std::move(desc)};
  return p;
}
ParamSpec ParamSpec::int_set(std::string name, std::vector<int> set, int def, std::string desc) {
  ParamSpec p{std::move(name), ParamType::Int, {}, 0, 0, def, std::move(desc)};
  for (int v : set) p.values.emplace_back(v);
  return p;
}
ParamSpec ParamSpec::float_range(std::string name, double lo, double hi, double def,
                                 std::string desc) {
  return ParamSpec{std::move(name), ParamType::Float, {}, lo, hi, def, std::move(desc)};
}
ParamSpec ParamSpec::choice(std::string name, std::vector<std::string> set, std::string def,
                            std::string desc) {
  ParamSpec p{std::move(name), ParamType::Choice, {}, 0, 0, def, std::move(desc)};
  for (auto& v : set) p.values.emplace_back(v);
  return p;
}
ParamSpec ParamSpec::boolean(std::string name, bool def, std::string desc) {
  return ParamSpec{std::move(name), ParamType::Bool, {}, 0, 1, def, std::move(desc)};
}

ParamSpec ParamSpec::string(std::string name, std::string def, std::string desc) {
  return ParamSpec{std::move(name), ParamType::String, {}, 0, 0, std::move(def), std::move(desc)};
}
ParamSpec ParamSpec::any_json(std::string name, nlohmann::json def, std::string desc) {
  return ParamSpec{std::move(name), ParamType::Json, {}, 0, 0, std::move(def), std::move(desc)};
}

namespace {
std::string num_str(double v) {
  std::ostringstream os;
  os << std::setprecision(12) << v;  // 1<<30 prints as 1073741824, not 1.07374e+09
  return os.str();
}
}  // namespace

std::string ParamSpec::domain_str() const {
  if (type == ParamType::Bool) return "bool";
  if (type == ParamType::Json) return "json";
  if (type == ParamType::String && values.empty()) return "string";
  if (!values.empty()) {
    std::string s = "{";
    for (std::size_t i = 0; i < values.size(); ++i)
      s += (i ? "," : "") +
           (values[i].is_string() ? values[i].get<std::string>() : values[i].dump());
    return s + "}";
  }
  return std::string(param_type_name(type)) + " [" + num_str(min) + ", " + num_str(max) + "]";
}

std::string ParamSpec::check(const nlohmann::json& v) const {
  const std::string shown = v.dump();
  switch (type) {
    case ParamType::Bool:
      if (!v.is_boolean()) return shown + " is not a bool";
      return {};
    case ParamType::Json:
      return {};
    case ParamType::String:
      if (!v.is_string()) return shown + " is not a string";
      if (values.empty()) return {};
      break;
    case ParamType::Choice:
      if (!v.is_string()) return shown + " is not a string; allowed " + domain_str();
      break;
    case ParamType::Int:
      if (!v.is_number_integer()) return shown + " is not an integer; allowed " + domain_str();
      break;
    case ParamType::Float:
      if (!v.is_number()) return shown + " is not a number; allowed " + domain_str();
      break;
  }
  if (!values.empty()) {
    for (const auto& a : values)
      if (a == v) return {};
    return shown + " not in " + domain_str();
  }
  double x = v.get<double>();
  if (!(x >= min && x <= max)) return shown + " not in " + domain_str();
  return {};
}

nlohmann::json ParamSpec::to_json() const {
  nlohmann::json j{{"name", name},
                   {"type", param_type_name(type)},
                   {"default", default_value},
                   {"domain", domain_str()},
                   {"description", description}};
  if (!values.empty())
    j["values"] = values;
  else if (type == ParamType::Int || type == ParamType::Float)
    j["range"] = {min, max};
  return j;
}

nlohmann::json resolve_params(const std::vector<ParamSpec>& specs, const nlohmann::json& given,
                              const std::string& where, const std::vector<std::string>& ignore) {
  if (!given.is_null() && !given.is_object())
    throw std::invalid_argument(where + ": must be a JSON object, got " + given.dump());
  auto known_list = [&] {
    std::string s;
    for (const auto& p : specs) s += (s.empty() ? "" : ", ") + p.name;
    return s.empty() ? std::string("none") : s;
  };
  nlohmann::json out = nlohmann::json::object();
  if (given.is_object()) {
    for (const auto& [key, value] : given.items()) {
      if (std::find(ignore.begin(), ignore.end(), key) != ignore.end()) {
        out[key] = value;
        continue;
      }
      auto it = std::find_if(specs.begin(), specs.end(),
                             [&](const ParamSpec& p) { return p.name == key; });
      if (it == specs.end())
        throw std::invalid_argument(where + "." + key +
                                    ": unknown parameter (known: " + known_list() + ")");
      if (std::string why = it->check(value); !why.empty())
        throw std::invalid_argument(where + "." + key + ": " + why);
      out[key] = value;
    }
  }
  for (const auto& p : specs) {
    if (out.contains(p.name)) continue;
    if (p.default_value.is_null())
      throw std::invalid_argument(where + "." + p.name + ": missing (" + p.description + "; " +
                                  p.domain_str() + ")");
    out[p.name] = p.default_value;
  }
  return out;
}

std::string describe_params(const std::vector<ParamSpec>& specs, const std::string& prefix) {
  std::ostringstream os;
  for (const auto& p : specs) {
    const std::string def = p.default_value.is_null() ? "(required)" : p.default_value.dump();
    // Columns grow with long entries instead of running into the next one.
    auto cell = [&](const std::string& text, std::size_t width) {
      os << text << std::string(text.size() < width ? width - text.size() : 1, ' ');
    };
    os << "  ";
    cell(prefix + p.name, 34);
    cell(p.domain_str(), 22);
    cell(def, 12);
    os << p.description << "\n";
  }
  return os.str();
}

}  // namespace hwnas
