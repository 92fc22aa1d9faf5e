#include "strategies/supernet_phase.hpp"

#include <stdexcept>

namespace hwnas::strategies {

nlohmann::json SupernetPhaseStrategy::proposal_metrics(const spaces::Genome& g) const {
  const std::string h = g.hash();
  for (std::size_t i = 0; i < candidates_.size(); ++i)
    if (candidates_[i].hash() == h) return metrics_.at(i);
  return nlohmann::json::object();
}

Proposal SupernetPhaseStrategy::propose() {
  run_phase();
  if (handed_out_ < candidates_.size()) return {0, candidates_[handed_out_++], {}};
  ++handed_out_;
  return {0, space_.mutate(candidates_.front(), rng_), {}};
}

nlohmann::json SupernetPhaseStrategy::save_body() const {
  nlohmann::json cands = nlohmann::json::array();
  for (const auto& g : candidates_) cands.push_back(genome_to_json(g));
  return {{"phase_done", phase_done_},
          {"candidates", cands},
          {"candidate_metrics", metrics_},
          {"handed_out", handed_out_},
          {"report", report_}};
}

void SupernetPhaseStrategy::restore_body(const nlohmann::json& s) {
  phase_done_ = s.at("phase_done").get<bool>();
  candidates_.clear();
  for (const auto& g : s.at("candidates")) candidates_.push_back(genome_from_json(g));
  // States darts saved before candidates carried metrics have none.
  metrics_ = s.value("candidate_metrics", std::vector<nlohmann::json>{});
  if (s.contains("candidate_metrics") && metrics_.size() != candidates_.size())
    throw std::invalid_argument(name() + ": the saved state has " +
                                std::to_string(metrics_.size()) + " metric sets for " +
                                std::to_string(candidates_.size()) + " candidates");
  metrics_.resize(candidates_.size(), nlohmann::json::object());
  handed_out_ = s.at("handed_out").get<std::size_t>();
  report_ = s.at("report");
  if (phase_done_ && candidates_.empty())
    throw std::invalid_argument(name() +
                                ": the saved state has a finished phase but no candidates");
}

void SupernetPhaseStrategy::run_phase() {
  if (phase_done_) return;
  const auto& env = context_.oneshot;
  if (!env)
    throw std::invalid_argument(
        "strategy '" + name() +
        "' trains a supernet on the task's data before proposing; it runs inside `hwnas "
        "search` with evaluator 'train' (no one-shot environment was given)");
  if (auto why = env->unavailable(); !why.empty())
    throw std::invalid_argument("strategy '" + name() + "' cannot run its supernet phase: " + why);
  SupernetRequest req;
  req.method = name();
  req.params = params_;
  req.seed = rng_();
  req.candidates = params_.at("candidates").get<int>();
  req.objectives = context_.objectives;
  SupernetOutcome out = env->run_supernet(space_, req);
  if (out.candidates.empty())
    throw std::logic_error(name() + ": the supernet phase gave no architecture");
  candidates_ = std::move(out.candidates);
  metrics_ = std::move(out.candidate_metrics);
  metrics_.resize(candidates_.size(), nlohmann::json::object());
  report_ = std::move(out.report);
  phase_done_ = true;
}

}  // namespace hwnas::strategies
