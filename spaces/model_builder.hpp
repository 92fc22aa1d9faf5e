// Builds the trainable model of a genome: one nn::Module per node (from the block catalogue),
// run in topological order.
#pragma once

#include <cstdint>
#include <memory>

#include "nn/module.hpp"
#include "spaces/genome.hpp"
#include "spaces/node_timing.hpp"

namespace hwnas::spaces {

class GenomeModel : public nn::Module {
 public:
  // Input: a batch of samples of the genome's input type, shape [N, ...input dims].
  // Output: the sink node's output, [N, ...].
  virtual nn::Var forward(const nn::Var& x, nn::ForwardContext& ctx) = 0;
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    return forward(in.at(0), ctx);
  }
  virtual std::int64_t num_parameters() = 0;
  // Called around every node's forward (spaces/node_timing.hpp); null (the default): no calls.
  // The hook must outlive the forward passes it observes.
  virtual void set_node_hook(NodeHook* hook) = 0;
};

// Validates a copy of the genome, then builds; weights are initialised from `seed`.
std::unique_ptr<GenomeModel> build_model(const Genome& g, std::uint64_t seed);

// The host latency of the genome's inference forward pass (no autograd, evaluation mode) on an
// input of `batch` samples filled with 0.5: hw::measure_median_ms's warm-up, median of `reps`,
// pinned thread, under the caller's thread budget.
double time_forward_ms(const Genome& g, int batch, int warmup, int reps, std::uint64_t seed = 0);

}  // namespace hwnas::spaces
