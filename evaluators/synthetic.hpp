// Synthetic evaluator: sleeps a configured, seeded duration and returns deterministic made-up
// metrics.  It trains nothing, so it measures the search machinery itself (coordinator CPU,
// MPI dispatch, store) and lets users test a cluster setup before spending GPU hours.
//
// Metrics are a function of the architecture only (its canonical hash), so the same
// architecture always scores the same on every rank and after a resume:
//   val_accuracy = 0.5 + 0.45 * u(hash),   params = the workload's parameter count.
// The duration is seconds * (1 + spread * (2 v - 1)), v from the job's seed, so a run's
// timing is reproducible but not identical across candidates.  Sleeping uses no CPU, so many
// oversubscribed MPI ranks can run on a small machine.
#pragma once

#include "evaluators/evaluator.hpp"

namespace hwnas::eval {

struct SyntheticOptions {
  double seconds = 1.0;  // mean evaluation time
  double spread = 0.0;   // relative half-width of the uniform duration jitter, in [0, 1]
};

class SyntheticEvaluator : public Evaluator {
 public:
  explicit SyntheticEvaluator(SyntheticOptions o) : o_(o) {}
  std::string name() const override { return "synthetic"; }
  EvalResult evaluate(const spaces::Genome& g, const Fidelity& f, std::uint64_t seed) override;
  bool thread_safe() const override { return true; }

  // The made-up accuracy of an architecture (exposed for tests).
  static double accuracy_of(const std::string& architecture_hash);
  // The seeded duration of a job, in seconds.
  double duration_of(std::uint64_t seed) const;

 private:
  SyntheticOptions o_;
};

}  // namespace hwnas::eval
