// A search space: which genomes are allowed, and the operators strategies use on them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common/registry.hpp"
#include "spaces/genome.hpp"

namespace hwnas::spaces {

using Rng = std::mt19937_64;

// One categorical choice of a space's decision encoding (Space::decisions()).
struct Decision {
  std::string name;  // what it chooses, e.g. "edge[3].op", "stages[1].depth"
  int choices = 1;   // cardinality (>= 1): values are 0 .. choices - 1
};

class Space {
 public:
  virtual ~Space() = default;
  virtual std::string type() const = 0;  // "macro", "cell", "nb201"
  virtual TensorType input_type() const = 0;
  virtual int num_outputs() const = 0;

  virtual Genome sample(Rng& rng) const = 0;
  virtual Genome mutate(const Genome& g, Rng& rng) const = 0;
  virtual Genome crossover(const Genome& a, const Genome& b, Rng& rng) const = 0;
  virtual std::vector<Genome> neighbours(const Genome& g) const = 0;
  virtual bool contains(const Genome& g) const = 0;

  // Fixed-length encodings for predictors and RL controllers.
  virtual std::vector<float> encode_onehot(const Genome& g) const = 0;
  virtual std::vector<float> encode_path(const Genome& g) const = 0;

  // Categorical decision encoding for RL controllers (MnasNet/ENAS style): a fixed list of
  // choices such that every genome of the space is decode(values) for some values, values[i] in
  // [0, decisions()[i].choices).  The list is the same for every genome: conditional choices (a
  // hyperparameter of a block kind not chosen, a layer past the chosen depth, another union
  // branch's choices) are always present and ignored by decode.
  virtual std::vector<Decision> decisions() const = 0;
  // Throws std::invalid_argument for a wrong length or an out-of-range value (naming the
  // decision), and, in macro spaces, for a combination the space cannot build (a block that
  // cannot take the previous stage's output).
  virtual Genome decode(const std::vector<int>& values) const = 0;
  // Values that decode to `g` (ignored choices 0), so decode(encode_decisions(g)) is g again
  // (the same canonical form).  Throws std::invalid_argument where g is not of this space.
  virtual std::vector<int> encode_decisions(const Genome& g) const = 0;

  // Number of architectures if finite and enumerable, and their enumeration.
  virtual std::optional<std::uint64_t> size() const { return std::nullopt; }
  // All architectures (index order).  Throws std::logic_error if the space is not enumerable
  // or holds more than 1,000,000; stream larger ones with at().
  virtual std::vector<Genome> enumerate() const;
  // The index-th architecture of a finite space, index < *size(), without materialising the
  // others.  Throws std::logic_error where not supported, std::out_of_range past the end.
  virtual Genome at(std::uint64_t index) const;

  // Human-readable architecture string (NB201's own form for the nb201 space).
  virtual std::string describe(const Genome& g) const;
  virtual Genome parse(const std::string& description) const;  // inverse of describe where defined

  virtual nlohmann::json to_json() const = 0;
};

// A space type ("macro", "cell", "nb201"): the space family's registry entry.  `params`
// documents the definition's top-level fields (besides "type") for `hwnas space types`; the
// factory validates the whole definition itself and throws std::invalid_argument naming the
// field, because the nested stage and op lists need more than one flat parameter table.
struct SpaceType {
  std::string name;
  std::string description;
  std::vector<ParamSpec> params;
  std::function<std::unique_ptr<Space>(const nlohmann::json& definition)> make;
};

// Registers the built-in types (one line each in space.cpp).  Adding a type: one file
// spaces/space_<name>.cpp with its factory, and one entry there.
void register_builtin_space_types(Registry<SpaceType>& r);
// The process-wide registry of space types, filled on first use (thread-safe).
const Registry<SpaceType>& space_types();

// Builds a space from its JSON definition; throws std::invalid_argument naming the field.
// {"type": <a registered space type>, "input": {"kind", "shape"}, "outputs": N, ...}; see
// examples/spaces/*.json, `hwnas space types` and the space_*.cpp files for each type's fields.
std::unique_ptr<Space> make_space(const nlohmann::json& definition);
std::unique_ptr<Space> load_space(const std::string& path);

// NAS-Bench-201 cells as indices in [0, 15625), the order of the nb201 space's at(): edge 0
// (1<-0) is the most significant base-5 digit, ops numbered none, skip_connect, nor_conv_1x1,
// nor_conv_3x3, avg_pool_3x3.  The index of an arch string, or -1 when it is not one (no
// allocation, no exception: the hot path of batch prediction), and the string of an index.
int nb201_index(std::string_view arch);
std::string nb201_string(int index);
// The index of the same cell with every dead op replaced by none: an op whose output reaches the
// cell output only through none edges (node j is zero when every edge into it is none, and
// nothing reaches the output through a zero node).  build_workload leaves dead ops out, and
// the space numbers its nodes alike whatever the ops, so both cells give the same workload
// (tested): 15,625 cells, 12,205 distinct workloads.  `index` in [0, 15625) (else
// std::out_of_range).
int nb201_live_index(int index);

}  // namespace hwnas::spaces
