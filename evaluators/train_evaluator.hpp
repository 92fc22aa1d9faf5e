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
};

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
