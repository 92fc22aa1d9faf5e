// Supervised training loop shared by every evaluator and benchmark.
//
// train() runs mini-batch training of a Module (one input Var [B, ...] -> the head's output)
// with the head's loss (task_head.hpp: cross-entropy on logits [B, C] by default, per-token
// cross-entropy, or MSE for regression), AdamW or SGD-momentum, linear warm-up + cosine decay,
// optional gradient clipping, a budget in epochs and/or seconds (whichever ends first), and early
// stopping on validation loss or on the head's primary metric.  Evaluation runs under
// NoGradGuard with ForwardContext::training = false.
//
// Threading: train() keeps no global state and runs its loop inside nn::run_isolated, so many
// candidates may be trained at once from different TBB tasks (each with its own Module).
// Determinism: with one thread, the same model initialisation, data and config.seed give the
// same loss curve bit for bit (shuffling, dropout and all other draws come from config.seed).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "evaluators/datasets.hpp"
#include "evaluators/task_head.hpp"
#include "nn/module.hpp"

namespace hwnas::eval {

struct TrainConfig {
  HeadKind head = HeadKind::Classes;  // output head: decides the loss and the metrics
  std::string optimizer = "adamw";    // "adamw" | "sgd" (SGD with momentum)
  float lr = 1e-3f;                   // peak learning rate, reached after warm-up
  float weight_decay = 0.0f;  // decoupled for AdamW; L2-style for SGD (as nn/optim.hpp does)
  float momentum = 0.9f;      // SGD only
  int batch_size = 64;
  int epochs = 1;  // epoch budget; the cosine schedule spans it
  // The cosine schedule's horizon in epochs when it should outlast this call (0: epochs): a
  // multi-fidelity rung of 3 epochs under a 9-epoch schedule, continued later to 9 epochs,
  // gives the weights of 9 epochs straight.
  int schedule_epochs = 0;
  double max_seconds = 0;   // wall-clock budget for the loop, 0 = none
  int warmup_steps = 0;     // linear warm-up steps (added to warmup_epochs' steps)
  float warmup_epochs = 0;  // warm-up in (fractional) epochs
  bool cosine = true;       // cosine decay to min_lr_ratio * lr over the epoch budget
  float min_lr_ratio = 0.0f;
  float clip_grad_norm = 0.0f;  // global L2 norm cap, 0 = off
  int patience = 0;             // early stopping: epochs without improvement, 0 = off
  float min_delta = 0.0f;       // improvement smaller than this does not count
  // What early stopping and best_epoch watch: false = validation loss, true = the head's primary
  // metric (accuracy / token_accuracy up, rmse down), as the train evaluator uses.
  bool monitor_primary = false;
  bool eval_every_epoch = false;  // evaluate on val after every epoch (implied by patience)
  int log_every_steps = 50;       // one TrainReport::step_loss point per this many steps
  int eval_batch_size = 256;
  bool drop_last = false;  // a final batch of size 1 is always skipped (BatchNorm)
  std::uint64_t seed = 0;  // shuffling and dropout
  // Continue a run saved by checkpoint_out (multi-fidelity promotion, pre-emption): the model,
  // optimizer moments, step/epoch counters and the dropout RNG are restored, then training runs
  // on from the saved epoch to `epochs` (a total, not a further count).  The model must have
  // been built from the same architecture.  With cosine off, 2 epochs + resume to 4 gives the
  // same weights bit for bit as 4 epochs straight; with cosine on, so does a first run with
  // schedule_epochs 4 (otherwise the horizon is each call's own budget and the rates differ).
  std::string resume_from;
  // Checkpoint written (atomically) at the end if training ended on an epoch boundary; "" = none.
  std::string checkpoint_out;
  // With per-epoch evaluation, end on the weights (and batch-norm statistics) of the epoch with
  // the best monitored value instead of the last epoch's; the final validation pass, and so the
  // reported metrics and activity, then describe those weights.
  bool restore_best = false;
  // Called after every completed epoch (progress logging); val_* are NaN when the epoch was
  // not evaluated; the last argument is the head's primary metric (accuracy for
  // classification).  Runs on the training thread; must not touch the model.
  std::function<void(int epoch, double train_loss, double val_loss, double val_accuracy)>
      on_epoch_end;
  // Called after every training step with the steps done so far and the steps the epoch budget
  // spans (progress bars).  Runs on the training thread; must not touch the model.
  std::function<void(std::int64_t step, std::int64_t total_steps)> on_step_end;

  // Throws std::invalid_argument naming the first bad field.
  void validate() const;
};

struct LossPoint {
  std::int64_t step = 0;  // step count at the end of the window
  double loss = 0;        // mean training loss over the window
};

struct TrainReport {
  double val_accuracy = 0;  // of the final model (the primary metric for non-class heads)
  double val_loss = 0;
  std::map<std::string, double> val_metrics;  // head_metric_names(head) of the final model
  std::vector<double> epoch_val_primary;      // the head's primary metric per evaluated epoch
  std::vector<double> epoch_loss;             // mean training loss per (possibly partial) epoch
  std::vector<LossPoint> step_loss;           // mean training loss per log_every_steps window
  std::vector<double> epoch_val_loss;         // when evaluated each epoch
  std::vector<double> epoch_val_accuracy;
  double train_loss_first = 0;  // mean of the first logging window
  double train_loss_last = 0;   // mean of the last logging window
  int epochs_run = 0;           // started epochs (a time stop mid-epoch counts that epoch)
  std::int64_t steps = 0;
  std::int64_t samples = 0;    // training samples processed
  double samples_per_s = 0;    // training throughput, evaluation time excluded
  double train_seconds = 0;    // time in training steps
  double seconds = 0;          // whole call, evaluation included
  int best_epoch = -1;         // 1-based epoch of the best monitored value (per-epoch eval)
  std::string stopped_reason;  // "epochs" | "time" | "early_stop" | "diverged"
  // Activity per node recorded during the final validation pass (nn/activity.hpp).
  nn::ActivityRecorder val_activity;
};

struct EvalMetrics {
  double loss = 0;      // mean of the head's loss over batches, weighted by batch size
  double accuracy = 0;  // the primary metric (accuracy for classification)
  int samples = 0;
  std::map<std::string, double> metrics;  // head_metric_names(head) -> value
};

// Forward passes only (NoGradGuard, training = false), in batches.  `activity` (may be null)
// receives what the model records per node (samples are counted by the model's sinks).
EvalMetrics evaluate(nn::Module& model, const Dataset& data, int batch_size = 256,
                     nn::ActivityRecorder* activity = nullptr, HeadKind head = HeadKind::Classes);
double evaluate_accuracy(nn::Module& model, const Dataset& data, int batch_size = 256);

TrainReport train(nn::Module& model, const Dataset& train_set, const Dataset& val_set,
                  const TrainConfig& config);

// Curriculum training (Zoology trains recall models on short and long MQAR configurations):
// stage i trains a fresh model, build(i), on its own data and config, starting from the
// weights stage i - 1 ended with.  The models may differ in input shape (a sequence length)
// but not in their weights' names and shapes: load_state_dict refuses a mismatch, naming the
// tensor and the stage.  after_stage (may be empty) sees each stage's model and report;
// returns the last stage's report.
struct TrainStage {
  const Dataset* train_set = nullptr;
  const Dataset* val_set = nullptr;
  TrainConfig config;
};
TrainReport train_stages(const std::vector<TrainStage>& stages,
                         const std::function<std::unique_ptr<nn::Module>(std::size_t stage)>& build,
                         const std::function<void(std::size_t stage, nn::Module&,
                                                  const TrainReport&)>& after_stage = {});

}  // namespace hwnas::eval
