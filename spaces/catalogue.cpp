#include "spaces/catalogue.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace hwnas::spaces {

// The built-in kinds, each defined by register_block_<name>() in spaces/blocks/.  Adding a
// kind: one file spaces/blocks/block_<name>.cpp, its declaration here and its call below.
void register_block_dense(Catalogue& c);
void register_block_kan(Catalogue& c);
void register_block_conv(Catalogue& c);
void register_block_dwconv(Catalogue& c);
void register_block_pool(Catalogue& c);
void register_block_global_pool(Catalogue& c);
void register_block_flatten(Catalogue& c);
void register_block_norm(Catalogue& c);
void register_block_activation(Catalogue& c);
void register_block_attention(Catalogue& c);
void register_block_sliding_attention(Catalogue& c);
void register_block_add(Catalogue& c);
void register_block_concat(Catalogue& c);
void register_block_head(Catalogue& c);
void register_block_skip_connect(Catalogue& c);
void register_block_none(Catalogue& c);
void register_block_nor_conv_1x1(Catalogue& c);
void register_block_nor_conv_3x3(Catalogue& c);
void register_block_avg_pool_3x3(Catalogue& c);
void register_block_nb201_reduction(Catalogue& c);
void register_block_cfc(Catalogue& c);
void register_block_ltc(Catalogue& c);
void register_block_neural_ode(Catalogue& c);
void register_block_hyena(Catalogue& c);
void register_block_ttt(Catalogue& c);
void register_block_titans(Catalogue& c);
void register_block_svf(Catalogue& c);
void register_block_s4d(Catalogue& c);
void register_block_mamba(Catalogue& c);
void register_block_spike_encoder(Catalogue& c);
void register_block_spiking_dense(Catalogue& c);
void register_block_spiking_conv(Catalogue& c);
void register_block_spike_readout(Catalogue& c);
void register_block_moe(Catalogue& c);
void register_block_retro(Catalogue& c);

void register_builtin_blocks(Catalogue& c) {
  register_block_dense(c);
  register_block_kan(c);
  register_block_conv(c);
  register_block_dwconv(c);
  register_block_pool(c);
  register_block_global_pool(c);
  register_block_flatten(c);
  register_block_norm(c);
  register_block_activation(c);
  register_block_attention(c);
  register_block_sliding_attention(c);
  register_block_add(c);
  register_block_concat(c);
  register_block_head(c);
  register_block_skip_connect(c);
  register_block_none(c);
  register_block_nor_conv_1x1(c);
  register_block_nor_conv_3x3(c);
  register_block_avg_pool_3x3(c);
  register_block_nb201_reduction(c);
  register_block_cfc(c);
  register_block_ltc(c);
  register_block_neural_ode(c);
  register_block_hyena(c);
  register_block_ttt(c);
  register_block_titans(c);
  register_block_svf(c);
  register_block_s4d(c);
  register_block_mamba(c);
  register_block_spike_encoder(c);
  register_block_spiking_dense(c);
  register_block_spiking_conv(c);
  register_block_spike_readout(c);
  register_block_moe(c);
  register_block_retro(c);
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

const nlohmann::json& BlockKind::resolve_into(const nlohmann::json& given,
                                              nlohmann::json& storage) const {
  // A kind built outside Catalogue::add has no defaults filled in (size differs): resolve.
  if (given.empty() && defaults.is_object() && defaults.size() == params.size()) return defaults;
  storage = resolve(given);
  return storage;
}

nlohmann::json BlockKind::compact(const nlohmann::json& given) const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : given.items()) {
    const ParamSpec* p = find_param(key);
    // Compare numerically so that 0 and 0.0 (both valid for a float param) are one label.
    bool is_default =
        p && (p->default_value == value || (value.is_number() && p->default_value.is_number() &&
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
  return {{"name", name},
          {"description", description},
          {"params", ps},
          {"accepts", acc},
          {"min_inputs", min_inputs},
          {"max_inputs", max_inputs},
          {"commutative", commutative}};
}

// ---- Catalogue ----

std::vector<ParamSpec> Catalogue::common_params() {
  return {ParamSpec::int_set("bits", {32, 16, 8, 4}, 32,
                             "precision of weights and activations (workload bytes; fake-quantised "
                             "weights in training below 16)"),
          ParamSpec::float_range("prune", 0.0, 0.9, 0.0,
                                 "unstructured pruning: fraction of weights zeroed by magnitude, "
                                 "shapes unchanged (workload sparsity); see channel_prune for "
                                 "structured pruning")};
}

void Catalogue::add(BlockKind kind) {
  if (kind.name.empty()) throw std::logic_error("Catalogue::add: block kind without a name");
  if (kinds_.contains(kind.name))
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
  kind.defaults = kind.resolve(nlohmann::json::object());
  kinds_.add(std::move(kind));
}

}  // namespace hwnas::spaces
