// REINFORCE controller over the space's categorical decisions (Williams 1992, as used for NAS by
// Zoph & Le, ICLR 2017, and with the latency-aware reward of MnasNet: Tan et al., "MnasNet:
// Platform-Aware Neural Architecture Search for Mobile", CVPR 2019).
//
// The policy is one independent softmax per decision of Space::decisions() (a logit vector per
// choice; no LSTM: the decisions are sampled independently, which is all a factorised
// categorical space needs and keeps learning a few microseconds per result).  Each proposal
// samples every decision and decodes them (a macro space may refuse a combination: the sample is
// drawn again).  Each result updates the logits by one policy-gradient step
//
//   z_i += lr * (A * (onehot(a_i) - p_i) + entropy * dH(p_i)/dz_i)
//
// with the advantage A = (R - b) / s: b an exponential moving average of past rewards (the
// baseline), s an exponential moving average of |R - b| (so `lr` does not depend on the scale
// of the reward), and the entropy bonus keeping the policy from collapsing early.  Results may
// arrive in any order and after later proposals (asynchronous workers): each is credited to the
// decisions sampled for its own proposal, with the policy as it is now.
//
// Reward: with `target` > 0, MnasNet's  ACC * (LAT / target)^w  where ACC is the first
// objective and LAT the latency objective (the first objective whose metric starts with
// "latency", or `latency_objective`); w = -0.07 is MnasNet's soft constraint.  Otherwise the
// scalar fitness the search loop computes (the first objective, minus the configured latency
// penalty).  A failed or infeasible candidate (constraint violation) gets the lowest reward
// seen so far.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "strategies/registry.hpp"

namespace hwnas::strategies {
namespace {

// The metric part of an objective name ("latency_ms@rpi4_a72:min" -> "latency_ms").
std::string metric_of(const std::string& objective) {
  return objective.substr(0, objective.find_first_of("@:"));
}

class Reinforce final : public Strategy {
 public:
  Reinforce(const spaces::Space& space, const StrategyContext& ctx, const nlohmann::json& p,
            int latency_index)
      : Strategy(space, ctx, p),
        decisions_(space.decisions()),
        lr_(p["lr"]),
        entropy_(p["entropy"]),
        decay_(p["baseline_decay"]),
        target_(p["target"]),
        w_(p["w"]),
        latency_index_(latency_index) {
    for (const auto& d : decisions_) logits_.emplace_back(static_cast<std::size_t>(d.choices), 0.0);
  }
  std::string name() const override { return "reinforce"; }

  // The reward of a result as the controller sees it (NaN when it carries none).
  double reward_of(const Result& r) const {
    if (!r.ok || r.violation > 0) return std::numeric_limits<double>::quiet_NaN();
    if (target_ <= 0) return r.fitness;
    const double acc = r.objectives.front();
    const double lat = r.objectives[static_cast<std::size_t>(latency_index_)];
    if (!(lat > 0)) return std::numeric_limits<double>::quiet_NaN();
    return acc * std::pow(lat / target_, w_);
  }

 protected:
  Proposal propose() override {
    std::string last;
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::vector<int> values(decisions_.size());
      for (std::size_t i = 0; i < values.size(); ++i) values[i] = sample(i);
      try {
        spaces::Genome g = space_.decode(values);
        sampled_[next_id()] = std::move(values);
        return {0, std::move(g), {}};
      } catch (const std::invalid_argument& e) {
        last = e.what();
      }
    }
    throw std::runtime_error("reinforce: 100 samples of the controller were all invalid; last: " +
                             last);
  }

  void learn(const Proposal& p, const Result& r) override {
    auto it = sampled_.find(p.id);
    if (it == sampled_.end()) return;
    const std::vector<int> values = std::move(it->second);
    sampled_.erase(it);

    double reward = reward_of(r);
    if (std::isfinite(reward)) {
      lowest_ = std::min(lowest_, reward);
    } else {
      if (!std::isfinite(lowest_)) return;  // nothing to compare a failure with yet
      reward = lowest_;
    }
    ++told_;
    if (told_ == 1) {  // the first reward only starts the baseline
      baseline_ = reward;
      return;
    }
    const double dev = std::abs(reward - baseline_);
    spread_ = told_ == 2 ? dev : decay_ * spread_ + (1 - decay_) * dev;
    const double advantage = (reward - baseline_) / std::max(spread_, 1e-12);
    baseline_ = decay_ * baseline_ + (1 - decay_) * reward;
    for (std::size_t i = 0; i < logits_.size(); ++i) {
      const std::vector<double> prob = softmax(i);
      double h = 0;
      for (double q : prob) h -= q > 0 ? q * std::log(q) : 0;
      auto& z = logits_[i];
      for (std::size_t k = 0; k < z.size(); ++k) {
        const double onehot = static_cast<int>(k) == values[i] ? 1.0 : 0.0;
        const double d_entropy = prob[k] > 0 ? -prob[k] * (std::log(prob[k]) + h) : 0.0;
        z[k] += lr_ * (advantage * (onehot - prob[k]) + entropy_ * d_entropy);
      }
    }
  }

  nlohmann::json save_body() const override {
    nlohmann::json sampled = nlohmann::json::object();
    for (const auto& [id, v] : sampled_) sampled[std::to_string(id)] = v;
    return {{"logits", logits_},
            {"baseline", number_to_json(baseline_)},
            {"spread", number_to_json(spread_)},
            {"lowest", number_to_json(lowest_)},
            {"told", told_},
            {"sampled", sampled}};
  }

  void restore_body(const nlohmann::json& s) override {
    auto logits = s.at("logits").get<std::vector<std::vector<double>>>();
    if (logits.size() != decisions_.size())
      throw std::invalid_argument("reinforce: the state has " + std::to_string(logits.size()) +
                                  " decisions, the space has " + std::to_string(decisions_.size()));
    for (std::size_t i = 0; i < logits.size(); ++i)
      if (logits[i].size() != static_cast<std::size_t>(decisions_[i].choices))
        throw std::invalid_argument("reinforce: the state's decision " + decisions_[i].name +
                                    " has " + std::to_string(logits[i].size()) +
                                    " choices, the space has " +
                                    std::to_string(decisions_[i].choices));
    std::map<std::uint64_t, std::vector<int>> sampled;
    for (const auto& [id, v] : s.at("sampled").items())
      sampled[std::stoull(id)] = v.get<std::vector<int>>();
    logits_ = std::move(logits);
    baseline_ = number_from_json(s.at("baseline"));
    spread_ = number_from_json(s.at("spread"));
    lowest_ = number_from_json(s.at("lowest"));
    told_ = s.at("told").get<std::uint64_t>();
    sampled_ = std::move(sampled);
  }

 private:
  std::vector<double> softmax(std::size_t i) const {
    const auto& z = logits_[i];
    const double top = *std::max_element(z.begin(), z.end());
    std::vector<double> p(z.size());
    double sum = 0;
    for (std::size_t k = 0; k < z.size(); ++k) sum += p[k] = std::exp(z[k] - top);
    for (double& q : p) q /= sum;
    return p;
  }

  int sample(std::size_t i) {
    const auto p = softmax(i);
    // One uniform draw per decision, so the RNG stream does not depend on the library's
    // discrete_distribution implementation.
    double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    for (std::size_t k = 0; k + 1 < p.size(); ++k) {
      if (u < p[k]) return static_cast<int>(k);
      u -= p[k];
    }
    return static_cast<int>(p.size() - 1);
  }

  std::vector<spaces::Decision> decisions_;
  double lr_, entropy_, decay_, target_, w_;
  int latency_index_;  // objective index of the latency, -1 without a target
  std::vector<std::vector<double>> logits_;
  double baseline_ = 0, spread_ = 0;
  double lowest_ = std::numeric_limits<double>::infinity();
  std::uint64_t told_ = 0;                             // results that updated the controller
  std::map<std::uint64_t, std::vector<int>> sampled_;  // decisions of proposals in flight
};

}  // namespace

StrategyEntry reinforce_strategy() {
  return {
      "reinforce",
      "REINFORCE controller (Zoph & Le 2017; MnasNet reward, Tan et al. 2019): independent softmax "
      "per decision of the space, moving-average baseline, entropy bonus",
      {ParamSpec::float_range("lr", 1e-6, 10.0, 0.1,
                              "learning rate of the logits (the advantage is normalised by its "
                              "moving average magnitude, so this is per standardised reward)"),
       ParamSpec::float_range("entropy", 0.0, 10.0, 0.01,
                              "entropy bonus weight (keeps the policy exploring)"),
       ParamSpec::float_range("baseline_decay", 0.0, 0.9999, 0.9,
                              "decay of the reward's exponential moving average (the baseline)"),
       ParamSpec::float_range("target", 0.0, 1e12, 0.0,
                              "latency target T of the MnasNet reward ACC * (LAT/T)^w, in the "
                              "latency objective's unit; 0 = reward is the loop's fitness"),
       ParamSpec::float_range("w", -10.0, 10.0, -0.07,
                              "exponent w of the MnasNet reward (-0.07: soft constraint)"),
       ParamSpec::string("latency_objective", "",
                         "objective used as LAT (its config string, e.g. latency_ms@rpi4_a72); "
                         "empty = the first objective whose metric starts with 'latency'")},
      [](const nlohmann::json& p, const spaces::Space& space,
         const StrategyContext& ctx) -> std::unique_ptr<Strategy> {
        int latency_index = -1;
        if (p["target"].get<double>() > 0) {
          const std::string want = p["latency_objective"];
          std::string names;
          for (std::size_t i = 0; i < ctx.objectives.size(); ++i) {
            const std::string& n = ctx.objectives[i].name;
            names += (names.empty() ? "" : ", ") + n;
            const bool match = want.empty() ? metric_of(n).rfind("latency", 0) == 0
                                            : n == want || metric_of(n) == want;
            if (match && latency_index < 0 && i > 0) latency_index = static_cast<int>(i);
          }
          if (latency_index < 0)
            throw std::invalid_argument(
                "strategy.target: the MnasNet reward needs a latency objective after the "
                "accuracy" +
                (want.empty() ? std::string() : " named '" + want + "'") +
                " (objectives: " + names + "); add one or set target to 0");
        }
        if (space.decisions().empty())
          throw std::invalid_argument("strategy.type: reinforce needs a space with decisions");
        return std::make_unique<Reinforce>(space, ctx, p, latency_index);
      }};
}

}  // namespace hwnas::strategies
