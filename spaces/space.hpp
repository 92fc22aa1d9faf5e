// A search space: which genomes are allowed, and the operators strategies use on them.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "spaces/genome.hpp"

namespace hwnas::spaces {

using Rng = std::mt19937_64;

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

// Builds a space from its JSON definition; throws std::invalid_argument naming the field.
// {"type": "macro" | "cell" | "nb201", "input": {"kind", "shape"}, "outputs": N, ...}; see
// examples/spaces/*.json and the space_*.cpp files for each type's fields.
std::unique_ptr<Space> make_space(const nlohmann::json& definition);
std::unique_ptr<Space> load_space(const std::string& path);

}  // namespace hwnas::spaces
