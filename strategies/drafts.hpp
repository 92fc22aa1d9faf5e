// Candidates a strategy looks at before it decides what to propose ("drafts"): decision vectors
// where the space implements spaces::DecisionOperators (no genome is built until a draft is
// chosen), genomes elsewhere.  One code path in the strategy either way; the decision path
// draws the same random numbers and yields the same architectures (the interface's contract).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "spaces/decision_operators.hpp"

namespace hwnas::strategies {

struct Draft {
  std::vector<int> decisions;                    // the decision path's form
  std::shared_ptr<const spaces::Genome> genome;  // the genome path's form (or a known genome)
};

class Drafts {
 public:
  explicit Drafts(const spaces::Space& space)
      : space_(space), ops_(dynamic_cast<const spaces::DecisionOperators*>(&space)) {}

  bool on_decisions() const { return ops_ != nullptr; }

  // An architecture already built (an evaluated parent) as a draft; keeps the genome.
  Draft of(spaces::Genome g) const {
    Draft d;
    if (ops_) d.decisions = space_.encode_decisions(g);
    d.genome = std::make_shared<const spaces::Genome>(std::move(g));
    return d;
  }
  Draft of(std::shared_ptr<const spaces::Genome> g) const {
    Draft d;
    if (ops_) d.decisions = space_.encode_decisions(*g);
    d.genome = std::move(g);
    return d;
  }

  Draft sample(spaces::Rng& rng) const {
    if (ops_) return {ops_->sample_decisions(rng), nullptr};
    return {{}, std::make_shared<const spaces::Genome>(space_.sample(rng))};
  }
  Draft mutate(const Draft& d, spaces::Rng& rng) const {
    if (ops_) return {ops_->mutate_decisions(d.decisions, rng), nullptr};
    return {{}, std::make_shared<const spaces::Genome>(space_.mutate(*d.genome, rng))};
  }
  Draft crossover(const Draft& a, const Draft& b, spaces::Rng& rng) const {
    if (ops_) return {ops_->crossover_decisions(a.decisions, b.decisions, rng), nullptr};
    return {{},
            std::make_shared<const spaces::Genome>(space_.crossover(*a.genome, *b.genome, rng))};
  }

  std::string describe(const Draft& d) const {
    return ops_ ? ops_->describe_decisions(d.decisions) : space_.describe(*d.genome);
  }
  std::vector<float> encode_onehot(const Draft& d) const {
    return ops_ ? ops_->encode_onehot_decisions(d.decisions) : space_.encode_onehot(*d.genome);
  }
  std::vector<float> encode_path(const Draft& d) const {
    return ops_ ? ops_->encode_path_decisions(d.decisions) : space_.encode_path(*d.genome);
  }

  // The draft's genome: built now on the decision path (unless known), shared otherwise.
  spaces::Genome genome(const Draft& d) const {
    return d.genome ? *d.genome : space_.decode(d.decisions);
  }

 private:
  const spaces::Space& space_;
  const spaces::DecisionOperators* ops_;
};

}  // namespace hwnas::strategies
