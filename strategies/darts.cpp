// DARTS with a hardware term (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search",
// ICLR 2019; the expected-latency loss of FBNet, Wu et al., CVPR 2019, and ProxylessNAS, Cai et
// al., ICLR 2019).  A one-shot strategy: on its first ask it runs the supernet phase the search
// loop lends it (StrategyContext::oneshot; the bilevel training lives in oneshot/darts_search),
// then proposes the derived architecture and further candidates for the normal evaluator, which
// trains each from scratch and stores it like any other proposal.
//
// Proposals: the supernet's `candidates` distinct architectures (the derivation first, then draws
// from the learned distribution), then mutations of the derivation (a local search around it)
// for as long as the budget asks.
//
// Proposing, the phase and the saved state are strategies/supernet_phase.hpp's.
#include <stdexcept>

#include "strategies/registry.hpp"
#include "strategies/supernet_phase.hpp"

namespace hwnas::strategies {
namespace {

class Darts final : public SupernetPhaseStrategy {
 public:
  Darts(const spaces::Space& space, StrategyContext ctx, nlohmann::json params)
      : SupernetPhaseStrategy(space, std::move(ctx), std::move(params)) {
    if (space_.type() != "nb201" && space_.type() != "cell")
      throw std::invalid_argument(
          "strategy.type: 'darts' searches the edges of cell spaces (space types 'nb201' and "
          "'cell'); this space is '" +
          space_.type() + "' (use a multi-trial strategy for it)");
  }
  std::string name() const override { return "darts"; }
};

}  // namespace

StrategyEntry darts_strategy() {
  StrategyEntry e;
  e.name = "darts";
  e.description =
      "differentiable search (first-order DARTS) on a supernet of mixed ops with an expected "
      "hardware cost term (FBNet/ProxylessNAS); the derived architectures are trained from "
      "scratch by the evaluator";
  e.one_shot = true;
  e.params = {
      ParamSpec::float_range("hardware_weight", 0, 1e6, 0.1,
                             "weight of the expected hardware cost in the architecture loss; "
                             "the cost is divided by its value under uniform op probabilities, "
                             "so 1 weighs it like a cross-entropy of order one"),
      ParamSpec::string("device", "",
                        "device whose model prices each candidate op (preset name or JSON "
                        "path; \"\" = the run's first configured device)"),
      ParamSpec::choice("cost", {"latency_ms", "energy_mj"}, "latency_ms",
                        "which device cost the hardware term uses"),
      ParamSpec::int_range("epochs", 1, 10000, 10, "supernet epochs over the training split"),
      ParamSpec::int_range("steps_per_epoch", 0, 1000000, 0,
                           "bilevel steps per epoch (0 = one pass over the training split)"),
      ParamSpec::int_range("warmup_epochs", 0, 10000, 0,
                           "first epochs train the weights only (architecture parameters fixed)"),
      ParamSpec::int_range("batch_size", 0, 4096, 0,
                           "supernet minibatch (0 = the evaluator's batch_size)"),
      ParamSpec::choice("w_optimizer", {"evaluator", "sgd", "adamw"}, "evaluator",
                        "optimizer of the supernet weights (evaluator = the run's optimizer, lr, "
                        "weight decay and momentum)"),
      ParamSpec::float_range("w_lr", 0, 10, 0,
                             "learning rate of the supernet weights, cosine-decayed (0 = the "
                             "evaluator's lr)"),
      ParamSpec::float_range("alpha_lr", 1e-7, 10, 3e-3,
                             "Adam learning rate of the architecture parameters (validation "
                             "split)"),
      ParamSpec::float_range("alpha_weight_decay", 0, 1, 1e-3,
                             "L2 weight decay of the architecture parameters"),
      ParamSpec::boolean("gumbel", false,
                         "Gumbel-softmax op weights with a fresh draw per step (FBNet, GDAS) "
                         "instead of the plain softmax"),
      ParamSpec::float_range("temperature", 1e-3, 100, 5.0,
                             "initial Gumbel-softmax temperature (FBNet: 5)"),
      ParamSpec::float_range("temperature_decay", 1e-3, 1, 0.956,
                             "temperature factor per epoch (FBNet: 0.956)"),
      ParamSpec::choice("skip_guard", {"early_stop", "cap", "off"}, "early_stop",
                        "guard against the collapse to skip connections: early_stop stops "
                        "the search when the derived cell has more than max_skip skips and "
                        "keeps the previous epoch's parameters (DARTS+), then caps; cap keeps "
                        "only the max_skip strongest skips (P-DARTS)"),
      ParamSpec::int_range("max_skip", 0, 1000, 2,
                           "skip connections allowed in the derived cell by the guard"),
      ParamSpec::int_range("candidates", 1, 1000, 4,
                           "distinct architectures derived from the supernet (the argmax one, "
                           "then draws from the learned distribution); later proposals mutate "
                           "the derived one")};
  e.make = [](const nlohmann::json& p, const spaces::Space& space,
              const StrategyContext& ctx) -> std::unique_ptr<Strategy> {
    if (p.at("warmup_epochs").get<int>() >= p.at("epochs").get<int>())
      throw std::invalid_argument(
          "strategy.warmup_epochs: must be smaller than strategy.epochs (the architecture "
          "parameters would never be trained)");
    return std::make_unique<Darts>(space, ctx, p);
  };
  return e;
}

}  // namespace hwnas::strategies
