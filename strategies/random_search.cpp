// Random search: uniform samples from the space.  The baseline every NAS paper should beat
// (Li & Talwalkar, "Random Search and Reproducibility for NAS", 2019).  Its whole state is the
// RNG (and the ids), which the Strategy base saves.
#include "strategies/registry.hpp"

namespace hwnas::strategies {
namespace {

class RandomSearch final : public Strategy {
 public:
  using Strategy::Strategy;
  std::string name() const override { return "random"; }

 protected:
  Proposal propose() override { return {0, space_.sample(rng_), {}}; }
  void learn(const Proposal&, const Result&) override {}
};

}  // namespace

StrategyEntry random_search_strategy() {
  return {"random",
          "uniform samples from the space; the baseline every search should beat",
          {},
          [](const nlohmann::json& p, const spaces::Space& space,
             const StrategyContext& ctx) -> std::unique_ptr<Strategy> {
            return std::make_unique<RandomSearch>(space, ctx, p);
          }};
}

}  // namespace hwnas::strategies
