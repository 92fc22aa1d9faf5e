// A weight-sharing supernet over a macro space (SPOS, Guo et al., "Single Path One-Shot Neural
// Architecture Search with Uniform Sampling", ECCV 2020; the slicing of Once-for-All, Cai et al.,
// ICLR 2020).
//
// What is shared.  Every layer position of the macro space (stage s, layer l) holds one bank of
// weights per block kind the stage may choose ("s1.l0.conv.", "s1.l0.dwconv.": different kinds
// never share), plus the classifier tail ("tail.head.").  A subnet's tensor is a slice of its
// bank's tensor: the first c output channels / units and the first c' input channels along
// every other dimension, and for 4-D convolution weights [out, in, kh, kw] the centre kh x kw of
// the largest kernel seen (OFA's elastic kernel without its transformation matrices).  So
// elastic width (channels, units, width multiplier), kernel size, depth (a layer the subnet
// skips is simply not used) and block kind all share one bank.  Bit width and pruning act on
// the shared weights in the forward pass (the blocks compress their weights there).  Batch-norm
// running statistics are banked the same way (sliced, written back after each step), but a
// subnet's are meant to be recalibrated (recalibrate_batch_norm).
//
// Banks grow lazily: an element is initialised, from the block builder's own initialisation, by
// the first subnet that uses it (a larger kernel or more channels than seen so far grows the
// bank, keeping the trained centre / prefix), so every block kind keeps its own initialiser
// (state-space matrices, gates) and the supernet needs no list of maximal shapes.
//
// A subnet is run as the stand-alone model of its genome (spaces::build_model) with the sliced
// weights loaded: by construction it computes exactly what the same architecture built alone
// with those weights computes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "evaluators/datasets.hpp"
#include "evaluators/task_head.hpp"
#include "nn/checkpoint.hpp"
#include "oneshot/data_shard.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/space.hpp"

namespace hwnas::oneshot {

// Bank key prefix of every node of a genome decoded by a macro space (meta.decisions), indexed
// by node id: "s<stage>.l<layer>.<kind>." for the stages' blocks, "tail.<kind>." for the
// classifier tail, "" for parameter-free glue (flatten, add).  Throws std::invalid_argument for
// a genome without macro decisions.
std::vector<std::string> supernet_node_keys(const spaces::Genome& g);

// Where a subnet tensor of shape `sub` sits in a bank tensor of shape `bank` (same rank, every
// sub[i] <= bank[i]): the offset per dimension (0 = prefix; centred for dims 2 and 3 of 4-D
// convolution weights).
std::vector<int> slice_offsets(const nn::Shape& bank, const nn::Shape& sub);

struct SgdSettings {
  float lr = 0.2f;
  float momentum = 0.9f;
  float weight_decay = 4e-5f;  // on tensors of rank >= 2 (not biases, norms)
  float clip_grad_norm = 5.0f;
};

// The elastic dimensions of Once-for-All's progressive shrinking (Cai et al., ICLR 2020): a
// draw varies those that are on and holds the others at their largest choice.  Block kind,
// skips, bit width, pruning and shared choices are not OFA dimensions: always drawn uniformly.
struct Elastic {
  bool kernel = true;  // decisions "stages[i].params.kernel"
  bool depth = true;   // "stages[i].depth" (a stage keeps its first d layers)
  bool width = true;   // "width" (the multiplier) and "stages[i].params.channels" / ".units"
  bool operator==(const Elastic&) const = default;
};

class SposSupernet {
 public:
  // `space` must be a macro space and outlive the supernet.
  SposSupernet(const spaces::Space& space, std::uint64_t seed);

  // One path drawn uniformly: every decision of the space (Space::decisions) uniform and
  // independent, redrawn when the combination cannot be built (rejection keeps it uniform over
  // the buildable paths' decision values, conditional on buildability).
  spaces::Genome sample(std::mt19937_64& rng) const;
  // The same draw (the same values taken from rng) with every decision of a dimension that is
  // not elastic set to its largest choice: OFA's phases.  All on equals sample(rng).
  spaces::Genome sample(std::mt19937_64& rng, const Elastic& elastic) const;
  // g with its kernel, depth and width decisions at their largest choices (the same block kinds):
  // the teacher of in-place distillation.
  spaces::Genome largest(const spaces::Genome& g) const;

  // OFA's kernel transformation matrices (oneshot/kernel_transform.hpp): once on, a kernel
  // smaller than its bank's is the bank's centre chained through one learned matrix per layer
  // and size (identity at first, trained with the weights); off (the default, SPOS), the bare
  // centre.  The kernel sizes of the chain are the space's kernel choices.
  void enable_kernel_transforms() { kernel_transforms_ = true; }
  bool kernel_transforms() const { return kernel_transforms_; }
  const std::vector<int>& kernel_sizes() const { return kernel_sizes_; }
  // Transform matrix of a bank and size ("s0.l0.conv.conv.weight", 3), for tests; throws
  // std::out_of_range when none was made.
  const nn::Tensor& transform(const std::string& bank, int size) const;

  // OFA's channel sorting before the elastic-width phase: the output channels of every conv
  // layer are reordered by the L1 norm of their weights, most important first, so a narrower
  // subnet keeps the most important prefix.  Channels that meet (a layer's output and every
  // layer that may read it: depthwise convs and pools pass channels through, residual adds tie
  // input and output) share one permutation, which keeps each of their bank sizes' prefixes in
  // place (a 32-channel layer and a 48-channel one reading the same bank dim: [0, 32) and
  // [32, 48) are sorted apart); the input image's channels never move.  The full network
  // computes the same function after the sort.  Channels read by other kinds (dense after a
  // flatten, sequence mixers) are left in order.  Returns {"groups": [{"stages", "sizes",
  // "sorted"}...]}.
  nlohmann::json sort_channels();

  // The stand-alone model of g with its weights (and batch-norm statistics) sliced from the
  // banks; elements no subnet used before are initialised from this build and banked.
  std::unique_ptr<spaces::GenomeModel> subnet(const spaces::Genome& g);

  // One SPOS step: the path g forward and backward on the batch, then SGD with momentum on the
  // path's slices only (and its batch-norm statistics written back).  Returns the loss.  With an
  // active shard, this rank runs its rows of `batch` and the gradients, the batch-norm
  // statistics and the loss are summed over the ranks before clipping and the update, so every
  // rank makes the same update (oneshot/data_shard.hpp); the loss is then the whole batch's.
  // With a `teacher` supernet (knowledge distillation, OFA: the full network trained in the
  // first phase, frozen), the loss adds kd_weight x the cross-entropy between the outputs of
  // the teacher's largest subnet of g's block kinds (softmax; a no-gradient training-mode
  // forward on the same rows) and the path's: classification heads only.
  double train_step(const spaces::Genome& g, const eval::Batch& batch, eval::HeadKind head,
                    const SgdSettings& sgd, const DataShard& shard = {},
                    SposSupernet* teacher = nullptr, float kd_weight = 0.0f);

  // A deep copy (nn::Tensor copies share their storage; this one does not): the frozen
  // distillation teacher.
  SposSupernet clone() const;

  // The whole supernet (banks, momenta, which elements are initialised, transform matrices,
  // the build counter) into / out of a checkpoint's records ("bank/...", "transform/...").
  // `prefix` keeps a second supernet (the distillation teacher) apart in the same checkpoint.
  void save_state(nn::TrainingCheckpoint& ck, const std::string& prefix = "") const;
  // Throws std::invalid_argument naming `source` when the records do not fit this supernet.
  void load_state(const nn::TrainingCheckpoint& ck, const std::string& source,
                  const std::string& prefix = "");

  // Number of banks and of banked values (initialised or not).
  std::size_t num_banks() const { return banks_.size(); }
  std::int64_t num_values() const;
  // The whole bank tensor of a key ("s0.l0.conv.conv.weight"), for tests.
  const nn::Tensor& bank(const std::string& name) const;
  std::vector<std::string> bank_names() const;

 private:
  struct Bank {
    nn::Tensor value, momentum;
    std::vector<std::uint8_t> initialised;
  };
  Bank& bank_for(const std::string& name, const nn::Shape& shape);
  void load_into(const spaces::Genome& g, spaces::GenomeModel& m);
  // The chain of kernel sizes from a bank kernel `bank_k` down to `k` (empty: no transform).
  std::vector<int> chain_sizes(int bank_k, int k) const;
  // The bank's [o, i, K, K] prefix for a sub kernel of shape `sub`, and the chain's matrices.
  nn::Tensor kernel_prefix(const Bank& b, const nn::Shape& sub) const;
  std::vector<const nn::Tensor*> chain_matrices(const std::string& bank,
                                                const std::vector<int>& sizes);

  const spaces::Space& space_;
  std::uint64_t seed_;
  std::uint64_t builds_ = 0;  // each build's init seed is seed_ + builds_
  std::map<std::string, Bank> banks_;
  // Elastic dimension of each decision (0 none, 1 kernel, 2 depth, 3 width) and its largest
  // choice's index.
  std::vector<int> dimension_of_, largest_choice_;
  std::vector<int> kernel_sizes_;  // the space's kernel choices, descending
  bool kernel_transforms_ = false;
  std::map<std::string, Bank> transforms_;  // "<bank>#<size>": [s*s, s*s] (initialised unused)
};

// Recomputes every batch-norm layer's running statistics of `model` as the mean of its batch
// statistics over `batches` (training-mode forwards, no gradients), as OFA does before it scores
// a subnet.  A model without batch norm is left unchanged.  Returns the number of statistics
// tensors recalibrated.
int recalibrate_batch_norm(nn::Module& model, const std::vector<eval::Batch>& batches);

}  // namespace hwnas::oneshot
