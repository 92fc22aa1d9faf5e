// Evaluators score one genome: train it (or look it up), and report metrics plus the workload
// the hardware models cost.  The search loop and the MPI worker call the same interface.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "hwmodels/workload.hpp"
#include "spaces/genome.hpp"

namespace hwnas::eval {

// How much effort one evaluation may spend.
struct Fidelity {
  int epochs = 1;
  int train_subset = 0;    // 0: the whole training split
  double max_seconds = 0;  // 0: no wall-clock budget
  // Multi-fidelity promotion: the learning-rate schedule spans this many epochs (0: epochs);
  int schedule_epochs = 0;
  // continue from this checkpoint file when it exists ("" or missing: train from scratch; a
  // lost checkpoint costs time, never a result);
  std::string resume_from;
  // and save a checkpoint here for a later promotion ("": none).  Under mpirun, on a file
  // system every rank sees.
  std::string checkpoint_out;
  nlohmann::json to_json() const;
  static Fidelity from_json(const nlohmann::json& j);
};

struct EvalResult {
  // Named metrics. Always present for trained candidates: "val_accuracy", "val_loss",
  // "train_loss_first", "train_loss_last", "params", "train_seconds", "samples_per_s",
  // "host_latency_ms".  Tabular evaluators report the columns they were configured with.
  std::map<std::string, double> metrics;
  std::vector<double> loss_curve;  // training loss, one point per logged interval
  hw::Workload workload;
  double wall_seconds = 0;
  std::string error;  // non-empty: the candidate failed (diverged, out of budget, ...)
  bool ok() const { return error.empty(); }

  nlohmann::json to_json() const;
  static EvalResult from_json(const nlohmann::json& j);
};

// An error in the setup (data files, a table that lacks an architecture of the space), not in
// the candidate: it ends the search with its message instead of failing one candidate.
struct SetupError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

class Evaluator {
 public:
  virtual ~Evaluator() = default;
  virtual std::string name() const = 0;
  virtual EvalResult evaluate(const spaces::Genome& g, const Fidelity& f, std::uint64_t seed) = 0;
  // Whether evaluate() may run concurrently on several threads of one process.
  virtual bool thread_safe() const { return true; }
};

}  // namespace hwnas::eval
