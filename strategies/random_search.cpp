// Random search: uniform samples from the space.  The baseline every NAS paper should beat
// (Li & Talwalkar, "Random Search and Reproducibility for NAS", 2019).
#include "strategies/registry.hpp"

namespace hwnas::strategies {
namespace {

class RandomSearch final : public Strategy {
 public:
  explicit RandomSearch(const spaces::Space& space) : space_(space) {}
  std::string name() const override { return "random"; }
  spaces::Genome ask(spaces::Rng& rng) override { return space_.sample(rng); }
  void tell(const Observation&) override {}

 private:
  const spaces::Space& space_;
};

}  // namespace

StrategyEntry random_search_strategy() {
  return {"random",
          "uniform samples from the space; the baseline every search should beat",
          {},
          [](const nlohmann::json&, const spaces::Space& space) -> std::unique_ptr<Strategy> {
            return std::make_unique<RandomSearch>(space);
          }};
}

}  // namespace hwnas::strategies
