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
// Proposing, the phase and the saved state are strategies/supernet_phase.hpp's.
#include <stdexcept>

#include "strategies/registry.hpp"
#include "strategies/supernet_phase.hpp"

namespace hwnas::strategies {
namespace {

class Spos final : public SupernetPhaseStrategy {
 public:
  Spos(const spaces::Space& space, StrategyContext ctx, nlohmann::json params)
      : SupernetPhaseStrategy(space, std::move(ctx), std::move(params)) {
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
    // Cross-parameter checks ParamSpec cannot express.
    const bool progressive = params_.at("schedule").get<std::string>() == "progressive";
    if (params_.at("kd").get<bool>() && !progressive)
      throw std::invalid_argument(
          "strategy.kd: in-place distillation is part of the progressive schedule; set "
          "strategy.schedule to \"progressive\" or strategy.kd to false");
    if (progressive &&
        params_.at("full_epochs").get<int>() + params_.at("kernel_epochs").get<int>() +
                params_.at("depth_epochs").get<int>() + params_.at("width_epochs").get<int>() ==
            0)
      throw std::invalid_argument(
          "strategy.full_epochs, kernel_epochs, depth_epochs, width_epochs: the progressive "
          "schedule needs at least one epoch in one of its phases");
  }
  std::string name() const override { return "spos"; }
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
      ParamSpec::int_range("epochs", 1, 10000, 4,
                           "supernet epochs over the training split (uniform schedule)"),
      ParamSpec::choice("schedule", {"uniform", "progressive"}, "uniform",
                        "uniform: every step one path drawn uniformly (SPOS); progressive: "
                        "Once-for-All's progressive shrinking, the largest network first, then "
                        "elastic kernel (learned kernel transforms), depth, width (channels "
                        "sorted by L1 norm before the width phase)"),
      ParamSpec::int_range("full_epochs", 0, 10000, 1,
                           "progressive: epochs of the largest network (kernel, depth and width "
                           "at their largest; block kinds still drawn)"),
      ParamSpec::int_range("kernel_epochs", 0, 10000, 1,
                           "progressive: epochs with elastic kernel size"),
      ParamSpec::int_range("depth_epochs", 0, 10000, 1,
                           "progressive: epochs with elastic kernel size and depth"),
      ParamSpec::int_range("width_epochs", 0, 10000, 1,
                           "progressive: epochs with elastic kernel size, depth and width"),
      ParamSpec::boolean("kd", false,
                         "progressive: in-place knowledge distillation from the path's largest "
                         "subnet after the first phase"),
      ParamSpec::float_range("kd_weight", 0, 100, 1.0,
                             "weight of the distillation loss (soft cross-entropy)"),
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
