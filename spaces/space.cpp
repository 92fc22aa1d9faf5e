#include "spaces/space.hpp"

#include <fstream>
#include <sstream>

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
  if (!contains(g)) throw std::invalid_argument("parse: architecture is not in this " + type() + " space");
  return g;
}

std::unique_ptr<Space> make_space(const nlohmann::json& def) {
  if (!def.is_object()) throw std::invalid_argument("space: definition must be a JSON object");
  if (!def.contains("type") || !def["type"].is_string())
    throw std::invalid_argument("space.type: missing; one of macro, cell, nb201");
  const std::string t = def["type"].get<std::string>();
  if (t == "macro") return detail::make_macro_space(def);
  if (t == "cell") return detail::make_cell_space(def);
  if (t == "nb201") return detail::make_nb201_space(def);
  throw std::invalid_argument("space.type: '" + t + "' is not one of macro, cell, nb201");
}

std::unique_ptr<Space> load_space(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("space file '" + path + "' cannot be opened");
  nlohmann::json def;
  try {
    def = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument("space file '" + path + "' is not valid JSON: " + e.what());
  }
  try {
    return make_space(def);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
}

namespace detail {

void fail(const std::string& path, const std::string& msg) { throw std::invalid_argument(path + ": " + msg); }

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
  if (!j.contains(key)) fail(path + "." + key, "missing; an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  const json& v = j[key];
  if (!v.is_number_integer() || v.get<long long>() < lo || v.get<long long>() > hi)
    fail(path + "." + key, v.dump() + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v.get<int>();
}

int read_int_or(const json& j, const std::string& key, const std::string& path, int lo, int hi, int def) {
  return j.contains(key) ? read_int(j, key, path, lo, hi) : def;
}

TensorType infer_type(const std::string& kind, const std::vector<TensorType>& in, const json& params) {
  const BlockKind& k = catalogue().at(kind);
  std::string why = k.check_params(params);
  if (!why.empty()) throw std::invalid_argument(kind + ": " + why);
  for (const auto& t : in)
    if (!k.accepts_kind(t.kind))
      throw std::invalid_argument(kind + " does not accept " + std::string(data_kind_name(t.kind)) + " input");
  return k.infer(in, k.resolve(params));
}

Genome::NodeId add_classifier_tail(Genome& g, Genome::NodeId from, const TensorType& t, int outputs) {
  Genome::NodeId x = from;
  if (t.kind != DataKind::Vector) {
    x = g.add_node("global_pool");
    g.add_edge(from, x);
  }
  auto head = g.add_node("head", {{"outputs", outputs}});
  g.add_edge(x, head);
  return head;
}

Genome::NodeId build_skeleton(Genome& g, const std::vector<SkeletonStage>& stages,
                              const std::function<Genome::NodeId(Genome&, Genome::NodeId, int)>& cell) {
  auto x = g.add_node("conv", {{"channels", stages.at(0).channels}, {"kernel", 3}, {"activation", "none"}});
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
