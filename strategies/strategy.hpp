// Ask/tell search strategies.
//
// A strategy proposes genomes (ask) and learns from their scores (tell).  It never sees MPI,
// SQLite or devices: the search loop turns evaluation results and hardware costs into an
// Observation with one scalar fitness (higher is better) plus the raw objective vector.
// Strategies are driven from one thread (the coordinator); they need not be thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "spaces/space.hpp"

namespace hwnas::strategies {

struct Observation {
  std::uint64_t id = 0;  // the proposal id the search loop assigned in ask order
  spaces::Genome genome;
  double fitness = 0;              // higher is better; -inf for failed candidates
  std::vector<double> objectives;  // as configured (orientation in the search config)
  bool ok = true;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;
  // Proposes one genome.  Called whenever a worker is free.
  virtual spaces::Genome ask(spaces::Rng& rng) = 0;
  virtual void tell(const Observation& obs) = 0;
};

// Builds a strategy from its config object {"type": ..., params}; throws std::invalid_argument
// naming the field ("strategy.population: must be >= 2").
std::unique_ptr<Strategy> make_strategy(const nlohmann::json& config, const spaces::Space& space);
std::vector<std::string> strategy_names();

}  // namespace hwnas::strategies
