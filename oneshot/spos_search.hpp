// The SPOS search (Guo et al., ECCV 2020): train a weight-sharing supernet over a macro space
// with uniform single-path sampling, then rank subnets by evolution on their inherited-weight
// validation metrics and device costs, without retraining any of them.
//
//  1. Supernet training (oneshot/spos_supernet.hpp): each step draws one path uniformly (every
//     decision of the space independent and uniform) and updates only that path's slices with
//     SGD + momentum, cosine-decayed over the steps.
//  2. Scoring a subnet: its weights are sliced from the supernet, its batch-norm statistics
//     recalibrated on `bn_batches` fixed training batches (OFA), then it is evaluated on the
//     first `eval_samples` validation samples; its device costs come from the device models.
//  3. Evolution: NSGA-II over the run's objectives (a metric "val_X" reads the inherited X,
//     "params" the subnet's parameter count, latency_ms / energy_mj / memory_bytes[@device]
//     the device model; a device that cannot run it makes the subnet infeasible), population
//     `population`, `generations` generations of binary-tournament parents, crossover and
//     mutation from the space.
//  4. The picks: every subnet scored, ordered by constrained non-dominated front and, inside a
//     front, by the first objective; the first `candidates` go to the evaluator.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "evaluators/datasets.hpp"
#include "evaluators/trainer.hpp"
#include "hwmodels/device.hpp"
#include "oneshot/spos_supernet.hpp"

namespace hwnas::oneshot {

// One phase of the supernet training: which dimensions are elastic, for how many epochs.
struct SupernetPhase {
  std::string name;  // "uniform", or OFA's "full", "kernel", "depth", "width"
  Elastic elastic;
  int epochs = 0;
};

struct SposOptions {
  int epochs = 4;  // the uniform schedule's
  // "uniform" (SPOS: every step one path drawn uniformly over all dimensions, one cosine decay)
  // or "progressive" (OFA's progressive shrinking: the phases below in order, each with its own
  // cosine decay; the kernel transforms on; channels sorted before the width phase).
  std::string schedule = "uniform";
  int full_epochs = 1, kernel_epochs = 1, depth_epochs = 1, width_epochs = 1;
  bool kd = false;  // in-place distillation from the path's largest subnet (progressive only)
  float kd_weight = 1.0f;
  // Where the supernet state is saved after every epoch ("" = not saved), and read back to
  // continue after the last finished epoch.
  std::string state_path;
  // Test hook: throw SupernetInterrupted after saving this epoch (0 = never).
  int stop_after_epoch = 0;
  int steps_per_epoch = 0;  // 0 = a pass over the training split
  int batch_size = 64;
  SgdSettings sgd;
  bool recalibrate_bn = true;
  int bn_batches = 4;
  int eval_samples = 1000;  // 0 = the whole validation split
  int population = 16;
  int generations = 6;
  int candidates = 4;
  eval::HeadKind head = eval::HeadKind::Classes;
  std::uint64_t seed = 0;

  // From the spos strategy's validated parameters (strategies/spos.cpp); 0 fields take the
  // run's trainer settings from `train`.
  static SposOptions from_params(const nlohmann::json& params, const eval::TrainConfig& train,
                                 std::uint64_t seed);
  // The schedule's phases in order.
  std::vector<SupernetPhase> phases() const;
};

// Thrown by train_supernet at opt.stop_after_epoch (a stand-in for a killed process).
struct SupernetInterrupted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What train_supernet did: the mean loss of each epoch, the channel sort's report (progressive),
// and the epoch it continued after (0 = trained from the start).
struct SupernetTraining {
  std::vector<double> losses;
  nlohmann::json channel_sort;
  int resumed_after_epoch = 0;
};

// One objective of the ranking: a metric read on the inherited-weight subnet or on a device.
struct SposObjective {
  std::string name;                    // as configured, "latency_ms@rpi4_a72:min"
  std::string metric;                  // "val_accuracy", "params", "latency_ms", ...
  const hw::Device* device = nullptr;  // for cost metrics
  bool maximize = false;
};

// Single-path training of `net` on data.train through opt.phases(); returns the mean loss of
// each epoch.  Progress lines go to `log` when non-null.  With an active shard, every rank calls
// it with the same supernet, data and options: each step draws the same batch and path on every
// rank and trains this rank's rows of it (oneshot/data_shard.hpp).
//
// With opt.state_path, the whole training state (the supernet's banks and transforms, their
// momenta, the path and batch generators, phase, epoch, the losses so far) is written there
// after every epoch (rank 0; temporary file, then rename), and a state found there at the start
// is continued after its last finished epoch: a run killed during the phase and started again
// ends bit-identical to one never interrupted.  A state that does not read back (or was
// written under other options) is reported on `log` and the training starts over.
SupernetTraining train_supernet_phases(SposSupernet& net, const eval::Dataset& train,
                                       const SposOptions& opt, std::ostream* log = nullptr,
                                       const DataShard& shard = {});
// The losses of train_supernet_phases.
std::vector<double> train_supernet(SposSupernet& net, const eval::Dataset& train,
                                   const SposOptions& opt, std::ostream* log = nullptr,
                                   const DataShard& shard = {});

// Inherited-weight scoring of subnets: the fixed recalibration batches and evaluation set.
class InheritedScorer {
 public:
  InheritedScorer(SposSupernet& net, const eval::TrainValSplit& data, const SposOptions& opt);
  // The subnet's head metrics ("accuracy", ..., and "loss") with weights from the supernet,
  // batch-norm statistics recalibrated when `recalibrate` (else the supernet's banked ones).
  std::map<std::string, double> score(const spaces::Genome& g, bool recalibrate);
  // score() with the options' recalibrate_bn.
  std::map<std::string, double> score(const spaces::Genome& g) { return score(g, recalibrate_); }

 private:
  SposSupernet& net_;
  std::vector<eval::Batch> bn_batches_;
  eval::Dataset eval_set_;
  eval::HeadKind head_;
  bool recalibrate_;
};

struct SposOutcome {
  std::vector<spaces::Genome> candidates;         // the picks, best first
  std::vector<nlohmann::json> candidate_metrics;  // per pick: inherited_val_* and costs
  nlohmann::json report;                          // losses, evolution, picks, timings
};

// With an active shard the supernet trains data-parallel on every rank; the ranking (scoring,
// evolution) runs on rank 0 alone, and the other ranks return an outcome without candidates.
SposOutcome run_spos(const spaces::Space& space, const eval::TrainValSplit& data,
                     const std::vector<SposObjective>& objectives, const SposOptions& opt,
                     std::ostream* log = nullptr, const DataShard& shard = {});

}  // namespace hwnas::oneshot
