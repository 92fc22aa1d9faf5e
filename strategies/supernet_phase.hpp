// What the one-shot strategies (darts, spos) share: on the first ask they run the supernet phase
// the search loop lends them (StrategyContext::oneshot), then hand out the phase's candidates,
// best first, and mutations of the best for as long as the budget asks; each candidate may
// carry metrics the phase measured (ProposalMetrics), stored with its evaluation.
//
// Saved state: whether the phase ran, its candidates with their metrics, its report and how
// many proposals were handed out.  The supernet itself is not saved: a state saved after the
// phase never needs it again, and one saved before the phase reruns it from the same seed.
#pragma once

#include <vector>

#include "strategies/oneshot.hpp"
#include "strategies/strategy.hpp"

namespace hwnas::strategies {

class SupernetPhaseStrategy : public Strategy, public ProposalMetrics {
 public:
  using Strategy::Strategy;
  nlohmann::json proposal_metrics(const spaces::Genome& g) const override;

 protected:
  Proposal propose() override;
  void learn(const Proposal&, const Result&) override {}
  nlohmann::json save_body() const override;
  void restore_body(const nlohmann::json& s) override;

 private:
  void run_phase();

  bool phase_done_ = false;
  std::vector<spaces::Genome> candidates_;
  std::vector<nlohmann::json> metrics_;  // per candidate ({} when the phase measured none)
  std::size_t handed_out_ = 0;
  nlohmann::json report_ = nlohmann::json::object();
};

}  // namespace hwnas::strategies
