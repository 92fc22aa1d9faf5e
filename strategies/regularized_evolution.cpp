// Regularized (aging) evolution, Real et al., "Regularized Evolution for Image Classifier
// Architecture Search", AAAI 2019, Algorithm 1.
//
// The population is a FIFO queue of the last `population` observed candidates.  Until it is
// full, proposals are uniform samples; afterwards each proposal samples `sample_size` members
// uniformly, mutates the fittest, and each tell pushes the child and retires the OLDEST member
// (not the worst), which is what regularises the search.  It is naturally asynchronous: a free
// worker gets a proposal at once from the current population.  "Fittest" is the scalar fitness
// under Deb's feasibility rule (scalar_better), so constraints steer the tournament too.
#include <deque>
#include <stdexcept>

#include "strategies/registry.hpp"

namespace hwnas::strategies {
namespace {

class RegularizedEvolution final : public Strategy {
 public:
  RegularizedEvolution(const spaces::Space& space, const StrategyContext& ctx,
                       const nlohmann::json& p)
      : Strategy(space, ctx, p), population_(p["population"]), sample_size_(p["sample_size"]) {}
  std::string name() const override { return "regularized_evolution"; }

 protected:
  Proposal propose() override {
    if (static_cast<int>(members_.size()) < population_) return {0, space_.sample(rng_), {}};
    std::uniform_int_distribution<std::size_t> pick(0, members_.size() - 1);
    const Member* parent = nullptr;
    for (int i = 0; i < sample_size_; ++i) {
      const Member& m = members_[pick(rng_)];
      if (!parent || scalar_better(m.result, parent->result)) parent = &m;
    }
    return {0, space_.mutate(parent->genome, rng_), {}};
  }

  void learn(const Proposal& p, const Result& r) override {
    members_.push_back({p.genome, r});
    if (static_cast<int>(members_.size()) > population_) members_.pop_front();
  }

  nlohmann::json save_body() const override {
    nlohmann::json ms = nlohmann::json::array();
    for (const auto& m : members_)
      ms.push_back({{"genome", genome_to_json(m.genome)}, {"result", m.result.to_json()}});
    return {{"members", ms}};
  }

  void restore_body(const nlohmann::json& s) override {
    std::deque<Member> ms;
    for (const auto& m : s.at("members"))
      ms.push_back({genome_from_json(m.at("genome")), Result::from_json(m.at("result"))});
    members_ = std::move(ms);
  }

 private:
  struct Member {
    spaces::Genome genome;
    Result result;
  };
  int population_;
  int sample_size_;
  std::deque<Member> members_;
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
          [](const nlohmann::json& p, const spaces::Space& space,
             const StrategyContext& ctx) -> std::unique_ptr<Strategy> {
            const int population = p["population"], sample_size = p["sample_size"];
            if (sample_size > population)
              throw std::invalid_argument("strategy.sample_size: " + std::to_string(sample_size) +
                                          " exceeds strategy.population (" +
                                          std::to_string(population) + ")");
            return std::make_unique<RegularizedEvolution>(space, ctx, p);
          }};
}

}  // namespace hwnas::strategies
