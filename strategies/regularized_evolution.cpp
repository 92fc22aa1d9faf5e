// Regularized (aging) evolution, Real et al., "Regularized Evolution for Image Classifier
// Architecture Search", AAAI 2019, Algorithm 1.
//
// The population is a FIFO queue of the last `population` observed candidates.  Until it is
// full, proposals are uniform samples; afterwards each proposal samples `sample_size` members
// uniformly, mutates the fittest, and each tell pushes the child and retires the OLDEST member
// (not the worst), which is what regularises the search.  It is naturally asynchronous: a free
// worker gets a proposal at once from the current population.
#include <deque>

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

std::unique_ptr<Strategy> make_regularized_evolution(const nlohmann::json& config,
                                                     const spaces::Space& space) {
  check_known_fields(config, {"type", "population", "sample_size"});
  int population = get_int(config, "population", 16, 2, 100000);
  int sample_size = get_int(config, "sample_size", 4, 1, population);
  return std::make_unique<RegularizedEvolution>(space, population, sample_size);
}

}  // namespace hwnas::strategies
