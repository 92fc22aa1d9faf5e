// Regularized (aging) evolution, Real et al., "Regularized Evolution for Image Classifier
// Architecture Search", AAAI 2019, Algorithm 1.
//
// The population is a FIFO queue of the last `population` observed candidates.  Until it is
// full, proposals are uniform samples; afterwards each proposal samples `sample_size` members
// uniformly, mutates the fittest, and each tell pushes the child and retires the OLDEST member
// (not the worst), which is what regularises the search.  It is naturally asynchronous: a free
// worker gets a proposal at once from the current population.
#include <deque>
#include <stdexcept>

#include "strategies/registry.hpp"

namespace hwnas::strategies {
namespace {

class RegularizedEvolution final : public Strategy {
 public:
  RegularizedEvolution(const spaces::Space& space, int population, int sample_size)
      : space_(space), population_(population), sample_size_(sample_size) {}
  std::string name() const override { return "regularized_evolution"; }

  spaces::Genome ask(spaces::Rng& rng) override {
    if (static_cast<int>(members_.size()) < population_) return space_.sample(rng);
    std::uniform_int_distribution<std::size_t> pick(0, members_.size() - 1);
    const Observation* parent = nullptr;
    for (int i = 0; i < sample_size_; ++i) {
      const Observation& m = members_[pick(rng)];
      if (!parent || m.fitness > parent->fitness) parent = &m;
    }
    return space_.mutate(parent->genome, rng);
  }

  void tell(const Observation& obs) override {
    members_.push_back(obs);
    if (static_cast<int>(members_.size()) > population_) members_.pop_front();
  }

 private:
  const spaces::Space& space_;
  int population_;
  int sample_size_;
  std::deque<Observation> members_;
};

}  // namespace

StrategyEntry regularized_evolution_strategy() {
  return {"regularized_evolution",
          "aging evolution (Real et al. 2019): tournament of sample_size members, mutate the "
          "fittest, retire the oldest",
          {ParamSpec::int_range("population", 2, 100000, 16,
                                "members kept (FIFO); the first `population` proposals are "
                                "uniform samples"),
           ParamSpec::int_range("sample_size", 1, 100000, 4,
                                "members drawn per tournament; at most population")},
          [](const nlohmann::json& p, const spaces::Space& space) -> std::unique_ptr<Strategy> {
            const int population = p["population"], sample_size = p["sample_size"];
            if (sample_size > population)
              throw std::invalid_argument("strategy.sample_size: " + std::to_string(sample_size) +
                                          " exceeds strategy.population (" +
                                          std::to_string(population) + ")");
            return std::make_unique<RegularizedEvolution>(space, population, sample_size);
          }};
}

}  // namespace hwnas::strategies
