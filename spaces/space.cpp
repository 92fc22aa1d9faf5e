#include "spaces/space.hpp"

#include <fstream>
#include <sstream>

#include "common/json_file.hpp"
#include "spaces/space_common.hpp"

namespace hwnas::spaces {

std::vector<Genome> Space::enumerate() const {
  auto n = size();
  if (!n) throw std::logic_error(type() + " space is not finite: nothing to enumerate");
  if (*n > 1000000)
    throw std::logic_error(type() + " space has " + std::to_string(*n) +
                           " architectures, too many to enumerate at once; stream them with at(i)");
  std::vector<Genome> out;
  out.reserve(static_cast<std::size_t>(*n));
  for (std::uint64_t i = 0; i < *n; ++i) out.push_back(at(i));
  return out;
}

Genome Space::at(std::uint64_t) const {
  throw std::logic_error(type() + " space does not support indexed enumeration");
}

std::string Space::describe(const Genome& g) const { return g.canonical_json(); }

Genome Space::parse(const std::string& description) const {
  Genome g = Genome::from_json(nlohmann::json::parse(description));
  if (!contains(g))
    throw std::invalid_argument("parse: architecture is not in this " + type() + " space");
  return g;
}

namespace {

// A field the definition must give (no default).
ParamSpec required(ParamSpec p) {
  p.default_value = nullptr;
  return p;
}

ParamSpec input_param(nlohmann::json def) {
  return ParamSpec::any_json("input", std::move(def),
                             "input data: {\"kind\": image | sequence | vector, \"shape\": [...]}");
}
ParamSpec outputs_param() {
  return ParamSpec::int_range("outputs", 1, 100000, 10, "classes (units of the head)");
}
ParamSpec name_param() { return ParamSpec::string("name", "", "label of the space"); }
ParamSpec description_param() { return ParamSpec::string("description", "", "free text"); }

}  // namespace

void register_builtin_space_types(Registry<SpaceType>& r) {
  r.add({"macro",
         "a chain of stages, each choosing a block kind, its hyperparameters, a depth and "
         "optional residual skips; shared choices and a pooled, per-token or no readout "
         "(space_macro.cpp)",
         {required(input_param(nullptr)), required(outputs_param()),
          ParamSpec::any_json("width_multipliers", nlohmann::json::array({1.0}),
                              "choices of a global width multiplier in (0, 16] for "
                              "channels/units"),
          ParamSpec::any_json("bits", nlohmann::json::array({32}),
                              "per-layer bit-width choices from {32,16,8,4}"),
          ParamSpec::any_json("prune", nlohmann::json::array({0.0}),
                              "per-layer pruning-ratio choices in [0, 0.9]"),
          ParamSpec::any_json("shared", nlohmann::json::object(),
                              "{param: [choices]}: one choice per architecture, given to every "
                              "layer whose block has the param (e.g. spiking timesteps)"),
          ParamSpec::choice("readout", {"pool", "per_token", "none"}, "pool",
                            "pool: global pool if needed + head; per_token: head on every "
                            "token; none: the last block gives the outputs"),
          required(ParamSpec::any_json(
              "stages", nullptr,
              "[{\"blocks\": [kinds], \"depth\": n | [min, max], \"skip\": false | true | "
              "\"optional\", \"params\": {param: [choices]}}, ...]")),
          name_param(), description_param()},
         detail::make_macro_space});
  r.add(
      {"cell",
       "a DARTS-style cell of N nodes, each summing ops on earlier nodes, stacked by the "
       "NB201 skeleton (space_cell.cpp)",
       {required(input_param(nullptr)), required(outputs_param()),
        required(ParamSpec::int_range("nodes", 1, 8, 4, "intermediate nodes per cell")),
        ParamSpec::int_range("inputs_per_node", 1, 8, 2, "distinct earlier nodes each node reads"),
        required(ParamSpec::any_json(
            "ops", nullptr,
            "candidate ops: block kind names or {\"name\", \"kind\", \"params\"}; each must "
            "keep its input's shape")),
        required(ParamSpec::any_json("stages", nullptr,
                                     "[{\"cells\": n, \"channels\": c}, ...]; a residual "
                                     "reduction joins consecutive stages")),
        name_param(), description_param()},
       detail::make_cell_space});
  r.add({"nb201",
         "NAS-Bench-201 exactly: 6 edges x 5 ops, 15625 architectures, enumerable "
         "(space_nb201.cpp)",
         {input_param({{"kind", "image"}, {"shape", {3, 32, 32}}}), outputs_param()},
         detail::make_nb201_space});
  r.add({"union",
         "several spaces with the same input and outputs searched as one, e.g. spiking and "
         "classic networks on one front (space_union.cpp)",
         {required(ParamSpec::any_json("spaces", nullptr,
                                       "[<space definition>, ...]: at least two, same input and "
                                       "outputs, no nested union")),
          ParamSpec::any_json("weights", "equal", "sampling weight of each space, or \"equal\""),
          ParamSpec::float_range("switch_probability", 0.0, 1.0, 0.2,
                                 "chance that a mutation jumps to another space"),
          name_param(), description_param()},
         detail::make_union_space});
}

const Registry<SpaceType>& space_types() {
  static const Registry<SpaceType> r = [] {
    Registry<SpaceType> k("space type");
    register_builtin_space_types(k);
    return k;
  }();
  return r;
}

std::unique_ptr<Space> make_space(const nlohmann::json& def) {
  if (!def.is_object()) throw std::invalid_argument("space: definition must be a JSON object");
  const auto& types = space_types();
  if (!def.contains("type") || !def["type"].is_string())
    throw std::invalid_argument("space.type: missing (known: " + types.known_list() + ")");
  const SpaceType* type = nullptr;
  try {
    type = &types.at(def["type"].get<std::string>());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("space.type: ") + e.what());
  }
  return type->make(def);
}

std::unique_ptr<Space> load_space(const std::string& path) {
  nlohmann::json def;
  try {
    def = read_json_file(path);
  } catch (const JsonFileError& e) {
    throw std::invalid_argument(std::string("space file: ") + e.what());
  }
  try {
    return make_space(def);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
}

namespace detail {

void fail(const std::string& path, const std::string& msg) {
  throw std::invalid_argument(path + ": " + msg);
}

void check_decision_values(const std::vector<Decision>& decisions, const std::vector<int>& values,
                           const std::string& space) {
  if (values.size() != decisions.size())
    throw std::invalid_argument(space + " decisions: got " + std::to_string(values.size()) +
                                " values, the space has " + std::to_string(decisions.size()) +
                                " decisions");
  for (std::size_t i = 0; i < values.size(); ++i)
    if (values[i] < 0 || values[i] >= decisions[i].choices)
      throw std::invalid_argument(space + " decisions: " + decisions[i].name + " = " +
                                  std::to_string(values[i]) + " not in [0, " +
                                  std::to_string(decisions[i].choices) + ")");
}

void check_keys(const json& j, const std::string& path, const std::set<std::string>& allowed) {
  if (!j.is_object()) fail(path, "must be a JSON object");
  for (const auto& [k, v] : j.items())
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail(path + "." + k, "unknown field (allowed: " + list + ")");
    }
}

int read_int(const json& j, const std::string& key, const std::string& path, int lo, int hi) {
  if (!j.contains(key))
    fail(path + "." + key,
         "missing; an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  const json& v = j[key];
  if (!v.is_number_integer() || v.get<long long>() < lo || v.get<long long>() > hi)
    fail(path + "." + key, v.dump() + " must be an integer in [" + std::to_string(lo) + ", " +
                               std::to_string(hi) + "]");
  return v.get<int>();
}

int read_int_or(const json& j, const std::string& key, const std::string& path, int lo, int hi,
                int def) {
  return j.contains(key) ? read_int(j, key, path, lo, hi) : def;
}

TensorType infer_type(const std::string& kind, const std::vector<TensorType>& in,
                      const json& params) {
  const BlockKind& k = catalogue().at(kind);
  std::string why = k.check_params(params);
  if (!why.empty()) throw std::invalid_argument(kind + ": " + why);
  for (const auto& t : in)
    if (!k.accepts_kind(t.kind))
      throw std::invalid_argument(kind + " does not accept " + std::string(data_kind_name(t.kind)) +
                                  " input");
  return k.infer(in, k.resolve(params));
}

Genome::NodeId add_classifier_tail(Genome& g, Genome::NodeId from, const TensorType& t,
                                   int outputs) {
  Genome::NodeId x = from;
  if (t.kind != DataKind::Vector) {
    x = g.add_node("global_pool");
    g.add_edge(from, x);
  }
  auto head = g.add_node("head", {{"outputs", outputs}});
  g.add_edge(x, head);
  return head;
}

Genome::NodeId build_skeleton(
    Genome& g, const std::vector<SkeletonStage>& stages,
    const std::function<Genome::NodeId(Genome&, Genome::NodeId, int)>& cell) {
  auto x = g.add_node("conv",
                      {{"channels", stages.at(0).channels}, {"kernel", 3}, {"activation", "none"}});
  g.add_edge(g.input_node(), x);
  for (std::size_t s = 0; s < stages.size(); ++s) {
    if (s > 0) {
      auto r = g.add_node("nb201_reduction", {{"channels", stages[s].channels}});
      g.add_edge(x, r);
      x = r;
    }
    for (int c = 0; c < stages[s].cells; ++c) x = cell(g, x, stages[s].channels);
  }
  return x;
}

}  // namespace detail
}  // namespace hwnas::spaces
