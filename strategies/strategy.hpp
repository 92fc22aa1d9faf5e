// Ask/tell search strategies (ask/tell v2, DESIGN.md "Contracts of the second wave").
//
// A strategy proposes genomes (ask) and learns from their scores (tell).  It never sees MPI,
// SQLite or devices: the search loop turns evaluation results and hardware costs into a Result
// carrying every configured objective (each already read on its own device), each constraint's
// verdict and the fidelity the candidate was evaluated at.
//
//  - ask(n) returns n proposals {id, genome, fidelity}, one per idle worker.  Ids are assigned
//    by the strategy, 0, 1, 2, ... in ask order, so the loop can match results to proposals and
//    store the id with the evaluation (a resumed run is the same run).
//  - tell(result) accepts results in any order, matched by id; a strategy that needs order
//    (most do, for determinism) gets it from the search loop's deterministic mode.
//  - each strategy owns its seeded RNG; nothing random comes from outside.
//  - save_state() / restore_state() capture the whole state (RNG, ids, proposals in flight,
//    population, ...) as versioned JSON, so an interrupted search continues exactly as if it
//    had not been interrupted.
//
// Strategies are driven from one thread (the coordinator); they need not be thread-safe.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "spaces/space.hpp"
#include "strategies/pareto.hpp"

namespace hwnas::strategies {

class OneShotEnvironment;  // strategies/oneshot.hpp

// The fidelity a proposal asks for.  Zero fields mean "the run's configured value", so
// full-fidelity strategies leave it default; multi-fidelity strategies (successive halving,
// Hyperband) set epochs or a training subset per proposal.
struct Fidelity {
  int epochs = 0;        // 0 = the config's evaluator.epochs
  int train_subset = 0;  // 0 = the config's task.train_subset
  // Multi-fidelity promotion (strategies/multi_fidelity.cpp): the learning-rate schedule's
  // horizon in epochs (0 = epochs), so a short rung is a prefix of the full run;
  int schedule_epochs = 0;
  // the proposal whose saved checkpoint this one continues training (-1: from scratch);
  std::int64_t continue_from = -1;
  // the proposal whose training seed this one uses (-1: its own), the candidate's first rung;
  std::int64_t seed_of = -1;
  // and whether this evaluation saves a checkpoint a later proposal may continue.
  bool keep_checkpoint = false;
  bool operator==(const Fidelity&) const = default;
  nlohmann::json to_json() const;
  static Fidelity from_json(const nlohmann::json& j);
};

struct Proposal {
  std::uint64_t id = 0;
  spaces::Genome genome;
  Fidelity fidelity;
};

struct Result {
  std::uint64_t id = 0;  // the proposal's id
  bool ok = true;        // false: the evaluation failed (no metrics)
  // One value per configured objective, in config order and orientation (maximize flags in the
  // StrategyContext); NaN where unavailable (failed, or infeasible on the objective's device).
  std::vector<double> objectives;
  // One verdict per configured constraint, in config order.
  std::vector<bool> feasible;
  // Total constraint violation, each constraint's excess normalised by its bound (0 when every
  // constraint holds); ranks infeasible candidates in Deb's constraint domination.
  double violation = 0;
  // The scalar single-objective strategies maximise: the first objective oriented so that
  // higher is better, minus the configured latency penalty; -inf for failed candidates.
  double fitness = -std::numeric_limits<double>::infinity();
  Fidelity fidelity;  // the fidelity it was evaluated at

  bool all_feasible() const;
  nlohmann::json to_json() const;
  static Result from_json(const nlohmann::json& j);
};

// What a strategy knows about the search it serves.
struct StrategyContext {
  std::uint64_t seed = 0;
  std::vector<Objective> objectives = {{"fitness", true}};  // names and orientation
  std::vector<std::string> constraints;                     // their strings, for messages
  // The supernet phase of one-shot strategies (strategies/oneshot.hpp); null outside a search
  // (strategy tests, config validation).  Multi-trial strategies ignore it.
  std::shared_ptr<const OneShotEnvironment> oneshot;
};

// Deb's feasibility rule on the scalar fitness: a feasible result beats an infeasible one, two
// infeasible ones compare by violation, two feasible ones by fitness.  True when a is better.
bool scalar_better(const Result& a, const Result& b);

class Strategy {
 public:
  // The version of the state layout written by save_state(); restore_state refuses others.
  static constexpr int kStateVersion = 1;

  Strategy(const spaces::Space& space, StrategyContext context, nlohmann::json params);
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;

  // n proposals with consecutive ids.
  std::vector<Proposal> ask(std::size_t n);
  // Throws std::invalid_argument for an id that was never proposed or was already told.
  void tell(const Result& result);
  void tell(const std::vector<Result>& results);

  // {"format": "hwnas-strategy-state", "version", "strategy", "params", "next_id", "rng",
  //  "pending": [proposals not yet told], "state": the strategy's own part}.
  nlohmann::json save_state() const;
  // Replaces the whole state.  Throws std::invalid_argument naming what does not match: not a
  // strategy state, another version, another strategy, other parameters.
  void restore_state(const nlohmann::json& state);

  // Proposals handed out and not told yet, by id.
  const std::map<std::uint64_t, Proposal>& pending() const { return pending_; }
  std::uint64_t next_id() const { return next_id_; }
  const StrategyContext& context() const { return context_; }

 protected:
  // One new genome (and fidelity); the id is assigned by ask().
  virtual Proposal propose() = 0;
  // A result of one of this strategy's proposals (the proposal is passed back).
  virtual void learn(const Proposal& proposal, const Result& result) = 0;
  // The strategy's own state beyond RNG, ids and pending proposals.
  virtual nlohmann::json save_body() const { return nlohmann::json::object(); }
  virtual void restore_body(const nlohmann::json&) {}

  const spaces::Space& space_;
  StrategyContext context_;
  nlohmann::json params_;
  spaces::Rng rng_;

 private:
  std::uint64_t next_id_ = 0;
  std::map<std::uint64_t, Proposal> pending_;
};

// Builds a strategy from its config object {"type": ..., params}; throws std::invalid_argument
// naming the field ("strategy.population: must be >= 2").
std::unique_ptr<Strategy> make_strategy(const nlohmann::json& config, const spaces::Space& space,
                                        const StrategyContext& context = {});
std::vector<std::string> strategy_names();

// JSON cannot hold NaN or infinities; these write them as null / "inf" / "-inf" and read them
// back, so saved states and results round-trip exactly.
nlohmann::json number_to_json(double x);
double number_from_json(const nlohmann::json& j);
nlohmann::json genome_to_json(const spaces::Genome& g);
spaces::Genome genome_from_json(const nlohmann::json& j);

}  // namespace hwnas::strategies
