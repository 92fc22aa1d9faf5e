// First-order DARTS with a hardware term (Liu et al., ICLR 2019, section 2.3 with xi = 0; the
// expected-cost loss of FBNet and ProxylessNAS).
//
// Each bilevel step updates the architecture logits alpha on a validation batch, then the
// supernet weights on a training batch, each group with its own optimizer (alpha: Adam with
// betas (0.5, 0.999) and L2 decay as in DARTS; weights: SGD-momentum or AdamW, cosine-decayed):
//
//   L_arch    = loss(val; w, P) + hardware_weight * E[cost] / E_uniform[cost]
//   E[cost]   = sum_e sum_o P'[e][o] * cost[e][o],  P' = softmax(alpha) over the ops but none
//   L_weights = loss(train; w, P)
//
// P = softmax(alpha) per edge, or a Gumbel-softmax sample with an annealed temperature (FBNet).
// cost[e][o] is the device model's price of op o at edge e's shapes summed over all cells
// (oneshot/op_costs.hpp); dividing by its value under uniform P makes the weight device-free.
//
// Skip-connection collapse (DARTS's known failure: parameter-free ops win the bilevel race and
// the derived cell degenerates to skips; Zela et al. 2020, DARTS+ 2019, P-DARTS 2019) is
// guarded by `skip_guard`: early_stop derives the cell after every architecture step and stops
// as soon as it holds more than max_skip skips, going back to the previous step's alpha (DARTS+,
// at step rather than epoch granularity); cap (and early_stop after it) keeps only the max_skip
// strongest skips at derivation (P-DARTS).  The
// outcome reports whether the collapse happened, and when.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "evaluators/datasets.hpp"
#include "evaluators/trainer.hpp"
#include "hwmodels/device.hpp"
#include "nn/optim.hpp"
#include "oneshot/darts_supernet.hpp"
#include "oneshot/data_shard.hpp"

namespace hwnas::oneshot {

struct DartsOptions {
  double hardware_weight = 0;
  std::string cost = "latency_ms";  // or "energy_mj"
  int epochs = 10;
  int steps_per_epoch = 0;  // 0 = a pass over the training split
  int warmup_epochs = 0;    // weights only
  int batch_size = 64;
  std::string w_optimizer = "sgd";  // "sgd" | "adamw"
  float w_lr = 0.025f, w_weight_decay = 3e-4f, w_momentum = 0.9f;
  float alpha_lr = 3e-3f, alpha_weight_decay = 1e-3f;
  bool gumbel = false;
  float temperature = 5.0f, temperature_decay = 0.956f;
  std::string skip_guard = "early_stop";  // "early_stop" | "cap" | "off"
  int max_skip = 2;
  int candidates = 1;
  float clip_grad_norm = 5.0f;
  eval::HeadKind head = eval::HeadKind::Classes;
  std::uint64_t seed = 0;
  // Where the training state (weights, alpha, both optimizers, the Gumbel generator, the batch
  // iterators' positions, the skip guard's state and the per-epoch report) is saved after every
  // epoch and continued from (params "supernet_state", set by the search; empty: not saved).
  std::string state_path;

  // From the darts strategy's validated parameters (strategies/darts.cpp); "evaluator" and 0
  // fields take the run's trainer settings from `train`.
  static DartsOptions from_params(const nlohmann::json& params, const eval::TrainConfig& train,
                                  std::uint64_t seed);
};

// The hardware term.  The expectation is taken over the ops the derivation can pick: "none" is
// never derived (derive_decisions), so its probability mass must not count as cost saved;
// P' = softmax of alpha over the other ops.  It is the deterministic expectation also under
// Gumbel-softmax weights (a lower-variance estimate of FBNet's sampled term).
struct HardwareTerm {
  std::vector<std::vector<double>> cost;  // [E][O], empty = no term
  std::vector<int> ops;                   // the derivable op columns (all but none)
  double reference = 1;                   // E[cost] under uniform P'
  double weight = 0;

  HardwareTerm() = default;
  HardwareTerm(std::vector<std::vector<double>> cost, double weight, int none_op);
  bool active() const { return !cost.empty(); }
  nn::Var expected(const nn::Var& alpha) const;  // E[cost](P'), in the cost's unit
  double expected(const EdgeProbs& p) const;     // the same from softmax(alpha) [E][O]
  nn::Var loss(const nn::Var& alpha) const;      // weight * E[cost] / reference
};

struct BilevelOptimizers {
  std::unique_ptr<nn::Optimizer> weights;  // the supernet's weights
  std::unique_ptr<nn::Optimizer> arch;     // alpha
};
BilevelOptimizers make_bilevel_optimizers(DartsSupernet& net, const DartsOptions& opt);

struct StepSettings {
  bool update_arch = true;
  bool gumbel = false;
  float temperature = 1.0f;
  float clip_grad_norm = 5.0f;
  eval::HeadKind head = eval::HeadKind::Classes;
  // Data-parallel: this rank trains its rows of both batches and the gradients (and losses) of
  // each half-step are summed over the ranks before its optimizer step (null = one process).
  const DataShard* shard = nullptr;
};
struct StepStats {
  double train_loss = 0;
  double val_loss = 0;  // NaN when the architecture was not updated
  double hw_cost = 0;   // E[cost] of this step's op weights (NaN without a hardware term)
};
// Called after each backward pass with the parameters about to be stepped: the place where a
// data-parallel wrapper all-reduces their gradients across ranks.
using GradientHook = std::function<void(const std::vector<nn::Var>& params)>;

// One first-order bilevel step over a (train, val) batch pair.  Deterministic given rng (the
// Gumbel draws) and the batches.
StepStats bilevel_step(DartsSupernet& net, BilevelOptimizers& opt, const eval::Batch& train,
                       const eval::Batch& val, const HardwareTerm& hw, const StepSettings& s,
                       std::mt19937_64& rng, const GradientHook& after_backward = {});

struct DartsOutcome {
  std::vector<int> decisions;              // of the derived cell (Space::decode)
  std::vector<spaces::Genome> candidates;  // derived first, then distinct draws
  EdgeProbs probs;                         // final softmax(alpha)
  double expected_cost = 0;                // E[cost] under the final alpha (0 without a device)
  double derived_cost = 0;                 // sum of the derived cell's op costs (its edges only)
  bool collapsed = false;                  // the derived cell exceeded max_skip skips at some epoch
  int collapse_epoch = 0;                  // 1-based, 0 = none
  int collapse_step = 0;                   // 1-based bilevel step of the collapse, 0 = none
  int epochs_run = 0;
  int resumed_after_epoch = 0;  // epochs taken from opt.state_path (0: trained from the start)
  nlohmann::json report;        // all of the above plus per-epoch figures, as JSON
};

// Trains the supernet of `space` on data.train (weights) and data.val (alpha) and derives.
// `device` may be null when hardware_weight is 0 (no term, no cost figures).  Progress lines go
// to `log` when non-null.  With an active shard every rank calls it with the same arguments and
// trains its rows of every batch pair (two all-reduces per bilevel step, one per half-step: the
// weight step needs the updated alpha); alpha, the weights, the Gumbel draws and the skip guard's
// decisions stay identical, so every rank derives the same outcome.  With opt.state_path the
// state is saved (by rank 0) after every epoch and a run that finds one from the same options
// continues after its last epoch, bit-identically to an uninterrupted run; a state that does not
// read back, or was written under other options, is reported to `log` and training starts over.
DartsOutcome run_darts(const spaces::Space& space, const eval::TrainValSplit& data,
                       const hw::Device* device, const DartsOptions& opt,
                       std::ostream* log = nullptr, const DataShard& shard = {});

}  // namespace hwnas::oneshot
