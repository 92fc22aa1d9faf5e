// Internals shared by the space implementations: path-aware JSON field readers that throw
// std::invalid_argument naming the field ("space.stages[1].width: -8 must be a positive
// integer"), the classifier tail, and the cell-stacking skeleton used by the cell and NB201
// spaces.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "spaces/catalogue.hpp"
#include "spaces/space.hpp"

namespace hwnas::spaces::detail {

using nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& msg);
// Throws if `j` has a key outside `allowed`, listing them.
void check_keys(const json& j, const std::string& path, const std::set<std::string>& allowed);
int read_int(const json& j, const std::string& key, const std::string& path, int lo, int hi);
int read_int_or(const json& j, const std::string& key, const std::string& path, int lo, int hi,
                int def);

std::unique_ptr<Space> make_macro_space(const json& def);
std::unique_ptr<Space> make_cell_space(const json& def);
std::unique_ptr<Space> make_nb201_space(const json& def);
std::unique_ptr<Space> make_union_space(const json& def);

// Appends global_pool (for image or sequence data) and the head; returns the head node.
Genome::NodeId add_classifier_tail(Genome& g, Genome::NodeId from, const TensorType& t,
                                   int outputs);

// Stacks cells: stem conv 3x3 (no activation, BN) to stages[0] channels, then per stage a
// nb201_reduction (except the first) and `cells` copies of the cell.  `cell` appends one cell
// reading node `x` at the stage's channel count and returns its output node.
struct SkeletonStage {
  int cells = 1;
  int channels = 16;
};
Genome::NodeId build_skeleton(
    Genome& g, const std::vector<SkeletonStage>& stages,
    const std::function<Genome::NodeId(Genome&, Genome::NodeId, int)>& cell);

// Type of `kind` applied to `in` with `params` (defaults filled); throws std::invalid_argument.
TensorType infer_type(const std::string& kind, const std::vector<TensorType>& in,
                      const json& params);

// Throws std::invalid_argument unless `values` has one in-range value per decision, naming the
// first bad one ("nb201 decisions: edge[2].op = 7 not in [0, 5)").
void check_decision_values(const std::vector<Decision>& decisions, const std::vector<int>& values,
                           const std::string& space);

template <class T>
const T& pick(const std::vector<T>& v, Rng& rng) {
  std::uniform_int_distribution<std::size_t> d(0, v.size() - 1);
  return v[d(rng)];
}
inline std::size_t pick_index(std::size_t n, Rng& rng) {
  std::uniform_int_distribution<std::size_t> d(0, n - 1);
  return d(rng);
}
// A uniformly chosen index in [0, n) other than `current` (n >= 2).
inline std::size_t pick_other(std::size_t n, std::size_t current, Rng& rng) {
  std::size_t k = pick_index(n - 1, rng);
  return k >= current ? k + 1 : k;
}

}  // namespace hwnas::spaces::detail
