// The evaluator that really trains: builds a genome's model, trains it on a task's training
// split with the task head's loss (task_head.hpp), scores it on the task's validation split
// (never a test split), times a batch-1 forward pass on this machine, and returns the workload
// for the hardware models with the activity each node showed in the final validation pass
// (output and input density, and whatever its block records).
#pragma once

#include <memory>

#include "evaluators/datasets.hpp"
#include "evaluators/evaluator.hpp"
#include "evaluators/trainer.hpp"

namespace hwnas::eval {

struct TrainEvaluatorOptions {
  TrainConfig train;           // seed is replaced per evaluation; train.head picks the metrics
  int host_latency_reps = 10;  // 0: skip the host latency measurement
  // Further batch sizes (> 1) to time, for host devices configured with a "batch": each is
  // stored as workload.measured["host_latency_ms_b<N>"] (the host device reads it at batch N).
  std::vector<int> host_latency_batches;
  // A candidate whose estimated training memory (estimate_training_memory) exceeds this fails
  // with the reason instead of being built; 0 = no limit.
  double memory_limit_bytes = 0;
};

// The memory one candidate's training holds at its peak, estimated from its workload before the
// model is built: float32 weights and their gradients, the optimizer state (AdamW: two moments
// per parameter; SGD: one momentum buffer, none without momentum), and the activations autograd
// keeps for the backward pass at batch_size (the input, one output per eager kernel of each
// node, NodeWorkload::kernels_eager, and the largest conv's im2col columns), or the evaluation
// pass's widest node at eval_batch_size, whichever is larger.  Against the peak RSS growth of
// real training (bench/train_memory.cpp, CNNs of 0.2M to 6.5M parameters, batch 16 to 256) the
// real peak is 0.88x to 1.4x the estimate from 0.8M parameters up, and up to 2.6x for the
// smallest, whose fixed costs (thread pools, allocator) dominate.
struct TrainingMemoryEstimate {
  double weights_bytes = 0;
  double gradients_bytes = 0;
  double optimizer_bytes = 0;
  double activations_bytes = 0;
  double total_bytes() const {
    return weights_bytes + gradients_bytes + optimizer_bytes + activations_bytes;
  }
  std::string describe() const;  // "12.3 MB (weights 1 MB, gradients 1 MB, ...)"
};
TrainingMemoryEstimate estimate_training_memory(const hw::Workload& w, const TrainConfig& c);

// The default limit per candidate: kDefaultMemoryShare of physical memory, shared by `workers`
// concurrent evaluations (0: one per core, as the executor counts them).
inline constexpr double kDefaultMemoryShare = 0.5;
double default_memory_limit_bytes(int workers);

class TrainEvaluator final : public Evaluator {
 public:
  // The metrics every evaluation reports for a head (host_latency_ms only when measured): val_loss,
  // "val_" + each head metric (val_accuracy; val_token_accuracy, val_sequence_accuracy;
  // val_rmse), then the training figures.  The search config's objectives are checked against
  // this list.  The no-argument form is the classification list.
  static std::vector<std::string> metric_names(HeadKind head);
  static const std::vector<std::string>& metric_names();

  // `data` is shared read-only by every evaluator of a search (one copy of the images).
  TrainEvaluator(std::shared_ptr<const TrainValSplit> data, TrainEvaluatorOptions options);
  std::string name() const override { return "train"; }
  EvalResult evaluate(const spaces::Genome& g, const Fidelity& f, std::uint64_t seed) override;

 private:
  std::shared_ptr<const TrainValSplit> data_;
  TrainEvaluatorOptions options_;
};

}  // namespace hwnas::eval
