// What the search loop lends a one-shot strategy (DESIGN.md: "one-shot strategies are
// strategies: they train their supernet inside their own phase and then propose derived
// architectures that the normal evaluators train and score").
//
// A one-shot strategy (StrategyEntry::one_shot) needs the run's training data, trainer settings
// and device models for its supernet phase, none of which strategies/ may know.  The loop passes
// them behind this small interface in StrategyContext::oneshot; oneshot/ implements it
// (oneshot/environment.hpp) and search/ builds it from the config.  Without one (the strategy
// tests' synthetic table, `hwnas config check`) a one-shot strategy can be built and validated
// but refuses to ask.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "spaces/space.hpp"
#include "strategies/pareto.hpp"

namespace hwnas::strategies {

// One supernet phase: which method, its validated parameters (the strategy's config object),
// the seed of every draw in it, and how many distinct candidates to derive.
struct SupernetRequest {
  std::string method;  // "darts" | "spos"
  nlohmann::json params;
  std::uint64_t seed = 0;
  int candidates = 1;
  // The run's objectives ("val_accuracy:max", "latency_ms@rpi4_a72:min"), for methods that rank
  // subnets on them (spos); darts ignores them.
  std::vector<Objective> objectives;
};

struct SupernetOutcome {
  // Derived architectures, best first: [0] is the method's derivation (argmax per edge), the
  // rest are distinct draws from the learned architecture distribution.
  std::vector<spaces::Genome> candidates;
  // What happened, for the log and the saved state: per-epoch losses, final probabilities,
  // expected hardware cost, whether skip connections collapsed and what the guard did.
  nlohmann::json report = nlohmann::json::object();
  // Per candidate (same order, or empty): what the phase measured on it, e.g. spos's
  // {"inherited_val_accuracy": 0.81, "inherited_rank": 0}.
  std::vector<nlohmann::json> candidate_metrics;
};

class OneShotEnvironment {
 public:
  virtual ~OneShotEnvironment() = default;
  // Empty when a supernet phase can run; else why not ("evaluator 'tabular' has no training
  // data"), for the strategy's error message.
  virtual std::string unavailable() const = 0;
  // Trains the supernet of `space` and derives candidates.  Throws std::invalid_argument for a
  // request it cannot serve (unknown method, space or device), naming the field.
  virtual SupernetOutcome run_supernet(const spaces::Space& space,
                                       const SupernetRequest& request) const = 0;
};

// An optional ability of a strategy (queried with dynamic_cast by the search loop): metrics it
// already knows about an architecture it proposed, such as the inherited-weight accuracy a
// weight-sharing supernet measured before the evaluator trains the architecture from scratch.
// The loop stores them in the evaluation's metrics next to the evaluator's own (an evaluator
// metric of the same name wins), so `hwnas show` and the database hold both.
class ProposalMetrics {
 public:
  virtual ~ProposalMetrics() = default;
  // {"name": number, ...}; empty for an architecture the strategy measured nothing on.
  virtual nlohmann::json proposal_metrics(const spaces::Genome& genome) const = 0;
};

}  // namespace hwnas::strategies
