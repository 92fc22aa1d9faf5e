// SPOS: a weight-sharing supernet over a macro space trained with uniform single-path sampling
// (Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV
// 2020; weights sliced as in Once-for-All, Cai et al., ICLR 2020).  A one-shot strategy: on its
// first ask it runs the supernet phase the search loop lends it (StrategyContext::oneshot; the
// training, the inherited-weight scoring and the evolution live in oneshot/spos_search), then
// proposes the evolution's picks to the normal evaluator, which trains each from scratch.
//
// Proposals: the phase's `candidates` picks, best first, then mutations of the best pick for as
// long as the budget asks.  Each pick carries its inherited-weight metrics (ProposalMetrics),
// which the search loop stores in the evaluation's metrics next to the stand-alone ones:
// inherited_val_accuracy (and the head's other metrics, inherited_val_loss) and
// inherited_rank (its place in the supernet's ranking, 0 = best).
//
// Saved state: whether the phase ran, its picks with their metrics, its report and how many
// proposals were handed out.  The supernet itself is not saved: a state saved after the phase
// never needs it again, and one saved before the phase reruns it from the same seed.
#include <stdexcept>

#include "strategies/oneshot.hpp"
#include "strategies/registry.hpp"

namespace hwnas::strategies {
namespace {

class Spos final : public Strategy, public ProposalMetrics {
 public:
  Spos(const spaces::Space& space, StrategyContext ctx, nlohmann::json params)
      : Strategy(space, std::move(ctx), std::move(params)) {
    if (space_.type() != "macro")
      throw std::invalid_argument(
          "strategy.type: 'spos' shares weights across the layers of a macro space; this space "
          "is '" +
          space_.type() + "' (darts searches cell spaces)");
    // Subnets are ranked on what an inherited-weight subnet and the device models give.
    for (const auto& o : context_.objectives) {
      std::string m = o.name.substr(0, o.name.find_first_of(":@"));
      const bool known = m.rfind("val_", 0) == 0 || m == "params" || m == "latency_ms" ||
                         m == "energy_mj" || m == "memory_bytes" || m == "fitness";
      if (!known)
        throw std::invalid_argument(
            "strategy.type: 'spos' ranks subnets by inherited-weight metrics and device costs "
            "without training them; objective '" +
            o.name +
            "' cannot be read that way (use val_<metric>, params, latency_ms, energy_mj or "
            "memory_bytes)");
    }
  }
  std::string name() const override { return "spos"; }

  nlohmann::json proposal_metrics(const spaces::Genome& g) const override {
    const std::string h = g.hash();
    for (std::size_t i = 0; i < candidates_.size(); ++i)
      if (candidates_[i].hash() == h) return metrics_.at(i);
    return nlohmann::json::object();
  }

 protected:
  Proposal propose() override {
    run_phase();
    if (handed_out_ < candidates_.size()) return {0, candidates_[handed_out_++], {}};
    ++handed_out_;
    return {0, space_.mutate(candidates_.front(), rng_), {}};
  }
  void learn(const Proposal&, const Result&) override {}

  nlohmann::json save_body() const override {
    nlohmann::json cands = nlohmann::json::array();
    for (const auto& g : candidates_) cands.push_back(genome_to_json(g));
    return {{"phase_done", phase_done_},
            {"candidates", cands},
            {"candidate_metrics", metrics_},
            {"handed_out", handed_out_},
            {"report", report_}};
  }
  void restore_body(const nlohmann::json& s) override {
    phase_done_ = s.at("phase_done").get<bool>();
    candidates_.clear();
    for (const auto& g : s.at("candidates")) candidates_.push_back(genome_from_json(g));
    metrics_ = s.at("candidate_metrics").get<std::vector<nlohmann::json>>();
    handed_out_ = s.at("handed_out").get<std::size_t>();
    report_ = s.at("report");
    if (phase_done_ && candidates_.empty())
      throw std::invalid_argument("spos: the saved state has a finished phase but no candidates");
    if (metrics_.size() != candidates_.size())
      throw std::invalid_argument("spos: the saved state has " + std::to_string(metrics_.size()) +
                                  " metric sets for " + std::to_string(candidates_.size()) +
                                  " candidates");
  }

 private:
  void run_phase() {
    if (phase_done_) return;
    const auto& env = context_.oneshot;
    if (!env)
      throw std::invalid_argument(
          "strategy 'spos' trains a supernet on the task's data before proposing; it runs "
          "inside `hwnas search` with evaluator 'train' (no one-shot environment was given)");
    if (auto why = env->unavailable(); !why.empty())
      throw std::invalid_argument("strategy 'spos' cannot run its supernet phase: " + why);
    SupernetRequest req;
    req.method = "spos";
    req.params = params_;
    req.seed = rng_();
    req.candidates = params_.at("candidates").get<int>();
    req.objectives = context_.objectives;
    SupernetOutcome out = env->run_supernet(space_, req);
    if (out.candidates.empty())
      throw std::logic_error("spos: the supernet phase picked no architecture");
    candidates_ = std::move(out.candidates);
    metrics_ = std::move(out.candidate_metrics);
    metrics_.resize(candidates_.size(), nlohmann::json::object());
    report_ = std::move(out.report);
    phase_done_ = true;
  }

  bool phase_done_ = false;
  std::vector<spaces::Genome> candidates_;
  std::vector<nlohmann::json> metrics_;  // per candidate, stored with its evaluation
  std::size_t handed_out_ = 0;
  nlohmann::json report_ = nlohmann::json::object();
};

}  // namespace

StrategyEntry spos_strategy() {
  StrategyEntry e;
  e.name = "spos";
  e.description =
      "weight-sharing supernet over a macro space (SPOS): uniform single-path training, subnets "
      "ranked by evolution on inherited-weight validation metrics and device costs, the picks "
      "trained from scratch by the evaluator and stored with both accuracies";
  e.one_shot = true;
  e.params = {
      ParamSpec::int_range("epochs", 1, 10000, 4, "supernet epochs over the training split"),
      ParamSpec::int_range("steps_per_epoch", 0, 1000000, 0,
                           "single-path steps per epoch (0 = one pass over the training split)"),
      ParamSpec::int_range("batch_size", 0, 4096, 0,
                           "supernet minibatch (0 = the evaluator's batch_size)"),
      ParamSpec::float_range("w_lr", 1e-6, 10, 0.2,
                             "SGD learning rate of the supernet weights, cosine-decayed"),
      ParamSpec::float_range("w_momentum", 0, 0.999, 0.9, "SGD momentum of the supernet"),
      ParamSpec::float_range("w_weight_decay", 0, 1, 4e-5,
                             "L2 weight decay of the supernet's weight tensors (SPOS: 4e-5)"),
      ParamSpec::boolean("recalibrate_bn", true,
                         "recompute each subnet's batch-norm statistics on bn_batches training "
                         "batches before scoring it (else it uses the supernet's banked ones)"),
      ParamSpec::int_range("bn_batches", 1, 1000, 4,
                           "training batches of the batch-norm recalibration"),
      ParamSpec::int_range("eval_samples", 0, 1000000, 1000,
                           "validation samples an inherited-weight subnet is scored on "
                           "(0 = the whole validation split)"),
      ParamSpec::int_range("population", 2, 10000, 16, "population of the ranking evolution"),
      ParamSpec::int_range("generations", 0, 10000, 6,
                           "generations of the ranking evolution (NSGA-II on inherited "
                           "metrics and device costs)"),
      ParamSpec::int_range("candidates", 1, 1000, 4,
                           "picks proposed to the evaluator (best first); later proposals "
                           "mutate the best pick")};
  e.make = [](const nlohmann::json& p, const spaces::Space& space,
              const StrategyContext& ctx) -> std::unique_ptr<Strategy> {
    return std::make_unique<Spos>(space, ctx, p);
  };
  return e;
}

}  // namespace hwnas::strategies
