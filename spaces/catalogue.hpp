// The block catalogue: every block kind a genome node may have, registered once.
//
// A BlockKind is a plain record: its hyperparameter domain, the data kinds it accepts, how many
// inputs it takes, a shape rule, a builder of its trainable module (from nn/) and a workload
// counter.  Genomes, model building, workload building, spaces and the CLI all read the same
// record, so adding a block kind is one new file in spaces/blocks/ plus its declaration and
// call in register_builtin_blocks() (catalogue.cpp).  The catalogue is the block family's
// Registry (common/registry.hpp), the pattern every pluggable family shares.
//
// Every kind also understands the common per-node parameters "bits" (weight and activation
// precision: 32, 16, 8 or 4) and "prune" (unstructured: fraction of weights zeroed by magnitude,
// 0..0.9, shapes unchanged); Catalogue::add appends them, so block files never declare them.
// Structured channel pruning ("channel_prune", which really removes output channels) is declared
// by the kinds it applies to (conv, dense, moe; spaces/compress.hpp kept_channels).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "common/params.hpp"
#include "common/registry.hpp"
#include "hwmodels/workload.hpp"
#include "nn/module.hpp"
#include "spaces/genome.hpp"

namespace hwnas::spaces {

using Rng = std::mt19937_64;

// Hyperparameter domains are the project-wide ParamSpec (common/params.hpp).
using hwnas::param_type_name;
using hwnas::ParamSpec;
using hwnas::ParamType;

using InferFn =
    std::function<TensorType(const std::vector<TensorType>& in, const nlohmann::json& params)>;
using BuildFn = std::function<std::unique_ptr<nn::Module>(const std::vector<TensorType>& in,
                                                          const nlohmann::json& params, Rng& rng)>;
// Fills the block-specific fields of a per-sample NodeWorkload: macs, other_flops, params,
// category, kernels and the neuromorphic mapping (neurons, fan_in, synapses).  The caller has
// already set name, block_kind, bits, sparsity, seq_len and the activation bytes, and derives
// weight_bytes from params afterwards.
using CountFn = std::function<void(const std::vector<TensorType>& in, const TensorType& out,
                                   const nlohmann::json& params, hw::NodeWorkload& w)>;

struct BlockKind {
  std::string name;
  std::string description;
  std::vector<ParamSpec> params;  // block-specific; Catalogue::add appends the common ones
  std::vector<DataKind> accepts;  // data kinds every input may have
  int min_inputs = 1;
  int max_inputs = 1;
  bool commutative = false;  // input order is irrelevant (add): the canonical form sorts inputs
  // A view or identity (skip_connect, flatten): no kernel, no memory traffic, no arithmetic on
  // any runtime, so build_workload leaves it out of the workload.
  bool zero_copy = false;
  // Outputs zeros whatever its input (NAS-Bench-201 / DARTS "none"): an edge cut, so nothing
  // that reaches the output only through it runs (build_workload drops it and them).
  bool zero_output = false;
  InferFn infer;  // throws std::invalid_argument with a clear message on incompatible inputs
  BuildFn build;
  CountFn count;
  // resolve({}), filled by Catalogue::add once the common params are appended.
  nlohmann::json defaults;

  const ParamSpec* find_param(const std::string& name) const;
  bool accepts_kind(DataKind k) const;
  // Empty if every key is a known parameter with a value in its domain, else the first problem,
  // phrased "param 'kernel' = 4 not in {1,3,5,7}".
  std::string check_params(const nlohmann::json& params) const;
  // Params with every default filled in (what infer/build/count receive).
  nlohmann::json resolve(const nlohmann::json& params) const;
  // The same without building an object when no param is given (most nodes of a space): then
  // the kind's own defaults; else resolve(params), kept in `storage`.
  const nlohmann::json& resolve_into(const nlohmann::json& params, nlohmann::json& storage) const;
  // Params with the values equal to their defaults removed (the canonical form's labels).
  nlohmann::json compact(const nlohmann::json& params) const;
  nlohmann::json to_json() const;  // name, description, params with domains, inputs
};

// The block family's registry, plus the common parameters every kind receives.
class Catalogue {
 public:
  Catalogue() : kinds_("block kind") {}
  // Appends the common parameters and stores the kind; throws std::logic_error on a duplicate
  // name or a record missing its infer/build/count functions.
  void add(BlockKind kind);
  const BlockKind* find(const std::string& name) const { return kinds_.find(name); }
  // Throws std::invalid_argument "unknown block kind 'x' (known: add, attention, ...)".
  const BlockKind& at(const std::string& name) const { return kinds_.at(name); }
  std::vector<std::string> names() const { return kinds_.names(); }  // sorted
  std::string known_list() const { return kinds_.known_list(); }     // "add, attention, ..."
  const Registry<BlockKind>& registry() const { return kinds_; }
  static std::vector<ParamSpec> common_params();

 private:
  Registry<BlockKind> kinds_;
};

// Registers every built-in kind (one call per block file, listed in catalogue.cpp).
void register_builtin_blocks(Catalogue& c);
// The process-wide catalogue of built-in kinds, filled on first use (thread-safe).
const Catalogue& catalogue();

}  // namespace hwnas::spaces
