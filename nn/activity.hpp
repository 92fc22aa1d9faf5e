// Measured activity: what a model actually did during an evaluation pass (spikes per time step,
// tokens per expert, solver function evaluations, share of non-zero outputs).  Hardware models
// turn it into event-driven costs later; nn/ only records it.
//
// An ActivitySink belongs to one node of a model.  A block writes totals over the batch it just
// ran (add / add_at) and the model adds the batch's sample count once (add_samples), so
// per-sample averages come out as total / samples.  Recording is opt-in: a forward pass whose
// ForwardContext has no sink records nothing and pays nothing, so training is never slowed; the
// evaluators record only in the validation pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace hwnas::nn {

// Well-known activity names, so producers (blocks) and consumers (hardware models) agree.
namespace activity_key {
inline constexpr const char* kActivationDensity = "activation_density";  // nonzero share of outputs
inline constexpr const char* kInputDensity = "input_density";  // nonzero share of the inputs read
inline constexpr const char* kSpikes = "spikes";               // spikes emitted
inline constexpr const char* kSynapticOps = "synaptic_ops";  // spike deliveries (spikes x fan-out)
inline constexpr const char* kActiveExperts = "active_experts";       // experts active per token
inline constexpr const char* kFunctionEvals = "function_evals";       // ODE solver evaluations
inline constexpr const char* kSpikesPerStep = "spikes_per_step";      // series over time steps
inline constexpr const char* kTokensPerExpert = "tokens_per_expert";  // series over experts
inline constexpr const char* kNeighbours = "retrieved_neighbours";    // series over queries
// Token-expert assignments over an expert's capacity (dropped, or passed through as identity).
inline constexpr const char* kDroppedTokens = "dropped_tokens";
}  // namespace activity_key

class ActivitySink {
 public:
  // Adds `amount` (a total over the current batch) to the named scalar.
  void add(const std::string& name, double amount) { scalars_[name] += amount; }
  // Adds `amount` to element `index` of the named per-index vector (grown with zeros as needed):
  // spikes at time step t, tokens routed to expert e.
  void add_at(const std::string& name, std::size_t index, double amount);
  // Samples the totals above cover; the model calls this once per batch for every node it runs.
  void add_samples(double n) { samples_ += n; }

  double samples() const { return samples_; }
  const std::map<std::string, double>& totals() const { return scalars_; }
  const std::map<std::string, std::vector<double>>& series_totals() const { return series_; }
  bool empty() const { return scalars_.empty() && series_.empty(); }

  // Per-sample averages (total / samples); empty maps when no sample was recorded.
  std::map<std::string, double> per_sample() const;
  std::map<std::string, std::vector<double>> series_per_sample() const;

  void clear();

 private:
  std::map<std::string, double> scalars_;
  std::map<std::string, std::vector<double>> series_;
  double samples_ = 0;
};

// One sink per node id (a genome's node numbering); what an evaluation pass hands to the
// workload builder.  Not thread-safe: one recorder per model and pass.
class ActivityRecorder {
 public:
  ActivitySink& sink(std::int64_t node) { return sinks_[node]; }
  const ActivitySink* find(std::int64_t node) const;
  const std::map<std::int64_t, ActivitySink>& sinks() const { return sinks_; }
  bool empty() const { return sinks_.empty(); }
  void clear() { sinks_.clear(); }

 private:
  std::map<std::int64_t, ActivitySink> sinks_;
};

// Non-zero count of `values[0, count)` (NaN counts as non-zero): exact zeros are what ReLU-like
// activations produce and what event-driven hardware skips.
std::int64_t count_nonzero(const float* values, std::int64_t count);

}  // namespace hwnas::nn
