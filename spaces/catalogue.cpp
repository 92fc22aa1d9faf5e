#include "spaces/catalogue.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace hwnas::spaces {

// The built-in kinds.  Adding a kind: one file spaces/blocks/block_<name>.cpp defining
// register_block_<name>(Catalogue&), and one X(<name>) line here.
#define HWNAS_BUILTIN_BLOCKS(X) \
  X(dense)                      \
  X(kan)                        \
  X(conv)                       \
  X(dwconv)                     \
  X(pool)                       \
  X(global_pool)                \
  X(flatten)                    \
  X(norm)                       \
  X(activation)                 \
  X(attention)                  \
  X(sliding_attention)          \
  X(add)                        \
  X(concat)                     \
  X(head)                       \
  X(skip_connect)               \
  X(none)                       \
  X(nor_conv_1x1)               \
  X(nor_conv_3x3)               \
  X(avg_pool_3x3)               \
  X(nb201_reduction)

#define HWNAS_DECLARE_BLOCK(n) void register_block_##n(Catalogue&);
HWNAS_BUILTIN_BLOCKS(HWNAS_DECLARE_BLOCK)
#undef HWNAS_DECLARE_BLOCK

void register_builtin_blocks(Catalogue& c) {
#define HWNAS_REGISTER_BLOCK(n) register_block_##n(c);
  HWNAS_BUILTIN_BLOCKS(HWNAS_REGISTER_BLOCK)
#undef HWNAS_REGISTER_BLOCK
}

const Catalogue& catalogue() {
  static const Catalogue c = [] {
    Catalogue k;
    register_builtin_blocks(k);
    return k;
  }();
  return c;
}

// ---- BlockKind ----

const ParamSpec* BlockKind::find_param(const std::string& n) const {
  for (const auto& p : params)
    if (p.name == n) return &p;
  return nullptr;
}

bool BlockKind::accepts_kind(DataKind k) const {
  for (auto a : accepts)
    if (a == k) return true;
  return false;
}

std::string BlockKind::check_params(const nlohmann::json& given) const {
  if (!given.is_object()) return "params must be a JSON object, got " + given.dump();
  for (const auto& [key, value] : given.items()) {
    const ParamSpec* p = find_param(key);
    if (!p) {
      std::string known;
      for (const auto& q : params) known += (known.empty() ? "" : ", ") + q.name;
      return "unknown param '" + key + "' (known: " + known + ")";
    }
    std::string why = p->check(value);
    if (!why.empty()) return "param '" + key + "' = " + why;
  }
  return {};
}

nlohmann::json BlockKind::resolve(const nlohmann::json& given) const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& p : params) {
    auto it = given.find(p.name);
    out[p.name] = it != given.end() ? *it : p.default_value;
  }
  return out;
}

nlohmann::json BlockKind::compact(const nlohmann::json& given) const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : given.items()) {
    const ParamSpec* p = find_param(key);
    // Compare numerically so that 0 and 0.0 (both valid for a float param) are one label.
    bool is_default = p && (p->default_value == value ||
                            (value.is_number() && p->default_value.is_number() &&
                             value.get<double>() == p->default_value.get<double>()));
    if (!is_default) out[key] = value;
  }
  return out;
}

nlohmann::json BlockKind::to_json() const {
  nlohmann::json ps = nlohmann::json::array();
  for (const auto& p : params) ps.push_back(p.to_json());
  nlohmann::json acc = nlohmann::json::array();
  for (auto a : accepts) acc.push_back(data_kind_name(a));
  return {{"name", name},          {"description", description}, {"params", ps},
          {"accepts", acc},        {"min_inputs", min_inputs},   {"max_inputs", max_inputs},
          {"commutative", commutative}};
}

// ---- Catalogue ----

std::vector<ParamSpec> Catalogue::common_params() {
  return {ParamSpec::int_set("bits", {32, 16, 8, 4}, 32,
                             "precision of weights and activations (workload bytes; fake-quantised "
                             "weights in training below 16)"),
          ParamSpec::float_range("prune", 0.0, 0.9, 0.0,
                                 "fraction of weights removed by magnitude (workload sparsity)")};
}

void Catalogue::add(BlockKind kind) {
  if (kind.name.empty()) throw std::logic_error("Catalogue::add: block kind without a name");
  if (kinds_.count(kind.name))
    throw std::logic_error("Catalogue::add: block kind '" + kind.name + "' registered twice");
  if (!kind.infer || !kind.build || !kind.count || kind.accepts.empty())
    throw std::logic_error("Catalogue::add: block kind '" + kind.name +
                           "' lacks infer/build/count or accepted data kinds");
  for (auto& p : common_params()) {
    if (kind.find_param(p.name))
      throw std::logic_error("Catalogue::add: '" + kind.name + "' redeclares common param '" +
                             p.name + "'");
    kind.params.push_back(std::move(p));
  }
  std::string name = kind.name;
  kinds_.emplace(std::move(name), std::move(kind));
}

const BlockKind* Catalogue::find(const std::string& name) const {
  auto it = kinds_.find(name);
  return it == kinds_.end() ? nullptr : &it->second;
}

const BlockKind& Catalogue::at(const std::string& name) const {
  if (const BlockKind* k = find(name)) return *k;
  throw std::invalid_argument("unknown block kind '" + name + "' (known: " + known_list() + ")");
}

std::vector<std::string> Catalogue::names() const {
  std::vector<std::string> out;
  for (const auto& [n, k] : kinds_) out.push_back(n);
  return out;
}

std::string Catalogue::known_list() const {
  std::string s;
  for (const auto& [n, k] : kinds_) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace hwnas::spaces
