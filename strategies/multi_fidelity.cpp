// Multi-fidelity search over training epochs or training-set size: successive halving and
// Hyperband, both run asynchronously so that any number of workers stays busy.
//
//  - successive_halving: ASHA, Li et al., "A System for Massively Parallel Hyperparameter
//    Tuning", MLSys 2020, Algorithm 2.  Candidates start at the lowest rung (min_epochs); a free
//    worker promotes the best not-yet-promoted candidate among the top 1/eta of a rung's
//    completed results to the next rung (eta times the epochs), highest rung first, and starts
//    a new candidate only when nothing is promotable.
//  - hyperband: Li et al., "Hyperband", JMLR 2018, made asynchronous as in the ASHA paper: the
//    brackets i = 0..s_max (bracket i starts i rungs higher, so the last bracket is plain
//    full-fidelity search) are ASHA ladders of their own; new candidates go to the brackets in
//    Hyperband's proportions n_s = ceil((s_max+1)/(s+1) * eta^s) with s = s_max - i, cycling.
//
// A promoted candidate continues training from the checkpoint its previous rung saved
// (Fidelity::continue_from) with the same training seed (Fidelity::seed_of), and every rung
// trains under the learning-rate schedule of the top rung (Fidelity::schedule_epochs =
// max_epochs): a rung is a prefix of the full run, so a candidate that reaches max_epochs has
// exactly the weights it would have after max_epochs straight, and the total training cost of a
// candidate is its top rung's epochs, not the sum of its rungs.
//
// With resource "train_subset" the rungs are training-set sizes instead (the first n rows of the
// run's shuffled split, so a rung's data is part of the next one's), each trained for the run's
// epochs; as in Hyperband's data-subset experiments a promoted candidate trains again from
// scratch on the larger subset, with the same seed, and its cost is the sum of its rungs.
//
// New candidates come from a proposer, any single-fidelity strategy ("random",
// "regularized_evolution", "bananas", ...), one per bracket, run inside this one with derived
// seeds.  Each is told its candidates' results at the bracket's first rung, so every result a
// proposer learns from was measured at the same fidelity.
//
// Ranking inside a rung ("promotion"):
//  - "fitness": the scalar fitness under Deb's feasibility rule (scalar_better); several
//    objectives are scalarised by the search's fitness.
//  - "pareto": MO-ASHA (Schmucker et al., "Multi-objective Asynchronous Successive Halving",
//    2021) with NSGA-II's ordering: the rung's feasible results by non-dominated sorting on all
//    the search's objectives, each front by crowding distance (widest first), so the top 1/eta
//    spread along the accuracy-cost front instead of all being the most accurate (and largest)
//    networks.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <stdexcept>

#include "strategies/pareto.hpp"
#include "strategies/registry.hpp"

namespace hwnas::strategies {
namespace {

// The rungs' resource (epochs or training samples), lowest first: max / eta^k for
// k = s_max..0, rounded, at least min and strictly increasing (rounding may merge two; the
// higher one stays).
std::vector<int> resource_ladder(int min, int max, int eta) {
  std::vector<int> top_down;
  double e = max;
  while (true) {
    const int r = std::max(min, static_cast<int>(std::lround(e)));
    if (top_down.empty() || r < top_down.back()) top_down.push_back(r);
    if (r <= min) break;
    e /= eta;
  }
  return {top_down.rbegin(), top_down.rend()};
}

class MultiFidelity final : public Strategy {
 public:
  MultiFidelity(const spaces::Space& space, const StrategyContext& ctx, const nlohmann::json& p,
                bool hyperband)
      : Strategy(space, ctx, p),
        hyperband_(hyperband),
        eta_(p["eta"]),
        pareto_promotion_(p["promotion"] == "pareto"),
        maximize_(maximize_flags(ctx.objectives)),
        max_epochs_(p["max_epochs"]),
        by_subset_(p["resource"] == "train_subset"),
        ladder_(by_subset_ ? resource_ladder(p["min_train_subset"], p["max_train_subset"], p["eta"])
                           : resource_ladder(p["min_epochs"], p["max_epochs"], p["eta"])) {
    const int brackets = hyperband_ ? static_cast<int>(ladder_.size()) : 1;
    // One proposer per bracket, each learning from its bracket's first rung only, so none mixes
    // 1-epoch and 9-epoch results; each on its own seeded stream.
    for (int b = 0; b < brackets; ++b) {
      StrategyContext inner = ctx;
      inner.seed = ctx.seed ^ (0x5bd1e9955bd1e995ull + 0x9e3779b97f4a7c15ull * b);
      try {
        proposers_.push_back(make_strategy(p["proposer"], space, inner));
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("strategy.proposer: ") + e.what());
      }
    }
    brackets_.resize(static_cast<std::size_t>(brackets));
    const int s_max = static_cast<int>(ladder_.size()) - 1;
    for (int i = 0; i < brackets; ++i) {
      auto& b = brackets_[static_cast<std::size_t>(i)];
      b.first_rung = i;
      b.rungs.resize(ladder_.size() - static_cast<std::size_t>(i));
      const int s = s_max - i;  // Hyperband's index: s + 1 rungs
      b.share = hyperband_ ? static_cast<int>(std::ceil(static_cast<double>(s_max + 1) / (s + 1) *
                                                        std::pow(eta_, s)))
                           : 1;
      cycle_length_ += b.share;
    }
  }
  std::string name() const override { return hyperband_ ? "hyperband" : "successive_halving"; }

 protected:
  Proposal propose() override {
    const std::uint64_t id = next_id();  // ask() numbers proposals in order (strategy.hpp)
    if (auto promoted = promote(id)) return *std::move(promoted);

    // Nothing promotable: a new candidate in the bracket the cycle is at.
    const int b = bracket_at(cycle_position_);
    cycle_position_ = (cycle_position_ + 1) % cycle_length_;
    Proposal inner = proposers_[static_cast<std::size_t>(b)]->ask(1).front();
    Candidate c;
    c.genome = inner.genome;
    c.root = id;
    c.inner_id = inner.id;
    candidates_.push_back(std::move(c));
    const Bracket& br = brackets_[static_cast<std::size_t>(b)];
    in_flight_[id] = {candidates_.size() - 1, b, 0};
    return {0, candidates_.back().genome, rung_fidelity(br, 0, -1, -1)};
  }

  void learn(const Proposal& p, const Result& r) override {
    auto it = in_flight_.find(p.id);
    if (it == in_flight_.end()) return;  // cannot happen: every proposal was recorded
    const Slot s = it->second;
    in_flight_.erase(it);
    Bracket& br = brackets_[static_cast<std::size_t>(s.bracket)];
    br.rungs[static_cast<std::size_t>(s.rung)].push_back({p.id, s.candidate, r, false});
    if (s.rung == 0) {
      Result inner = r;
      inner.id = candidates_[s.candidate].inner_id;
      proposers_[static_cast<std::size_t>(s.bracket)]->tell(inner);
    }
  }

  nlohmann::json save_body() const override {
    nlohmann::json cands = nlohmann::json::array();
    for (const auto& c : candidates_)
      cands.push_back(
          {{"genome", genome_to_json(c.genome)}, {"root", c.root}, {"inner", c.inner_id}});
    nlohmann::json brackets = nlohmann::json::array();
    for (const auto& b : brackets_) {
      nlohmann::json rungs = nlohmann::json::array();
      for (const auto& rung : b.rungs) {
        nlohmann::json entries = nlohmann::json::array();
        for (const auto& e : rung)
          entries.push_back({{"id", e.proposal},
                             {"candidate", e.candidate},
                             {"result", e.result.to_json()},
                             {"promoted", e.promoted}});
        rungs.push_back(std::move(entries));
      }
      brackets.push_back(std::move(rungs));
    }
    nlohmann::json proposer_states = nlohmann::json::array();
    for (const auto& pr : proposers_) proposer_states.push_back(pr->save_state());
    nlohmann::json flight = nlohmann::json::array();
    for (const auto& [id, s] : in_flight_)
      flight.push_back(
          {{"id", id}, {"candidate", s.candidate}, {"bracket", s.bracket}, {"rung", s.rung}});
    return {{"candidates", cands},
            {"brackets", brackets},
            {"in_flight", flight},
            {"cycle_position", cycle_position_},
            {"proposers", proposer_states}};
  }

  void restore_body(const nlohmann::json& s) override {
    std::vector<Candidate> cands;
    for (const auto& c : s.at("candidates"))
      cands.push_back({genome_from_json(c.at("genome")), c.at("root").get<std::uint64_t>(),
                       c.at("inner").get<std::uint64_t>()});
    const auto& saved = s.at("brackets");
    if (saved.size() != brackets_.size())
      throw std::invalid_argument("saved state has " + std::to_string(saved.size()) +
                                  " brackets, this configuration " +
                                  std::to_string(brackets_.size()));
    std::vector<Bracket> brackets = brackets_;
    for (std::size_t b = 0; b < brackets.size(); ++b) {
      if (saved[b].size() != brackets[b].rungs.size())
        throw std::invalid_argument("saved bracket " + std::to_string(b) + " has another ladder");
      for (std::size_t k = 0; k < brackets[b].rungs.size(); ++k) {
        auto& rung = brackets[b].rungs[k];
        rung.clear();
        for (const auto& e : saved[b][k])
          rung.push_back({e.at("id").get<std::uint64_t>(), e.at("candidate").get<std::size_t>(),
                          Result::from_json(e.at("result")), e.at("promoted").get<bool>()});
      }
    }
    std::map<std::uint64_t, Slot> flight;
    for (const auto& f : s.at("in_flight"))
      flight[f.at("id").get<std::uint64_t>()] = {f.at("candidate").get<std::size_t>(),
                                                 f.at("bracket").get<int>(),
                                                 f.at("rung").get<int>()};
    const int cycle = s.at("cycle_position").get<int>();
    if (cycle < 0 || cycle >= cycle_length_)
      throw std::invalid_argument("saved cycle position out of range");
    const auto& saved_proposers = s.at("proposers");
    if (saved_proposers.size() != proposers_.size())
      throw std::invalid_argument("saved state has " + std::to_string(saved_proposers.size()) +
                                  " proposers, this configuration " +
                                  std::to_string(proposers_.size()));
    for (std::size_t b = 0; b < proposers_.size(); ++b)
      proposers_[b]->restore_state(saved_proposers[b]);
    candidates_ = std::move(cands);
    brackets_ = std::move(brackets);
    in_flight_ = std::move(flight);
    cycle_position_ = cycle;
  }

 private:
  struct Candidate {
    spaces::Genome genome;
    std::uint64_t root = 0;      // its first proposal: the training seed of every rung
    std::uint64_t inner_id = 0;  // the proposer's id for it
  };
  struct Entry {
    std::uint64_t proposal = 0;  // whose checkpoint a promotion continues
    std::size_t candidate = 0;
    Result result;
    bool promoted = false;
  };
  struct Bracket {
    int first_rung = 0;                     // index into the ladder of its lowest rung
    int share = 1;                          // new candidates per cycle (Hyperband's n_s)
    std::vector<std::vector<Entry>> rungs;  // completed results per rung, lowest first
  };
  struct Slot {
    std::size_t candidate = 0;
    int bracket = 0;
    int rung = 0;  // within the bracket
  };

  Fidelity rung_fidelity(const Bracket& b, int rung, std::int64_t continue_from,
                         std::int64_t seed_of) const {
    Fidelity f;
    f.seed_of = seed_of;
    if (by_subset_) {  // the run's epochs on a subset; a promotion starts again (other data)
      f.train_subset = ladder_[static_cast<std::size_t>(b.first_rung + rung)];
      return f;
    }
    f.epochs = ladder_[static_cast<std::size_t>(b.first_rung + rung)];
    f.schedule_epochs = max_epochs_;
    f.continue_from = continue_from;
    f.keep_checkpoint = rung + 1 < static_cast<int>(b.rungs.size());
    return f;
  }

  int bracket_at(int position) const {
    for (std::size_t b = 0; b < brackets_.size(); ++b) {
      if (position < brackets_[b].share) return static_cast<int>(b);
      position -= brackets_[b].share;
    }
    return 0;
  }

  // ASHA's get_job: the highest rung first, then the brackets in order.
  std::optional<Proposal> promote(std::uint64_t id) {
    for (std::size_t b = 0; b < brackets_.size(); ++b) {
      Bracket& br = brackets_[b];
      for (int k = static_cast<int>(br.rungs.size()) - 2; k >= 0; --k) {
        auto& rung = br.rungs[static_cast<std::size_t>(k)];
        const std::size_t top = rung.size() / static_cast<std::size_t>(eta_);
        if (top == 0) continue;
        const std::vector<Entry*> order = ranked(rung);
        for (std::size_t i = 0; i < top; ++i) {
          Entry* e = order[i];
          // Failed or constraint-violating candidates are not trained further: more epochs
          // do not change a latency bound.
          if (e->promoted || !promotable(e->result)) continue;
          e->promoted = true;
          const Candidate& c = candidates_[e->candidate];
          in_flight_[id] = {e->candidate, static_cast<int>(b), k + 1};
          return Proposal{0, c.genome,
                          rung_fidelity(br, k + 1, static_cast<std::int64_t>(e->proposal),
                                        static_cast<std::int64_t>(c.root))};
        }
      }
    }
    return std::nullopt;
  }

  static bool promotable(const Result& r) { return r.ok && r.violation <= 0; }

  // A rung's results, best first, by the configured promotion rule.  Stable on ties: the
  // earlier result wins, independent of the container's history.
  std::vector<Entry*> ranked(std::vector<Entry>& rung) const {
    std::vector<Entry*> order;
    for (auto& e : rung) order.push_back(&e);
    std::stable_sort(order.begin(), order.end(), [](const Entry* x, const Entry* y) {
      return scalar_better(x->result, y->result);
    });
    if (!pareto_promotion_) return order;
    // Feasible results with every objective measured, by front and crowding; the rest (never
    // promoted) after them in fitness order.
    std::vector<Entry*> feasible, rest;
    std::vector<std::vector<double>> points;
    for (Entry* e : order) {
      const auto& v = e->result.objectives;
      const bool measured =
          std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
      if (promotable(e->result) && measured && !v.empty()) {
        feasible.push_back(e);
        points.push_back(v);
      } else {
        rest.push_back(e);
      }
    }
    std::vector<Entry*> out;
    out.reserve(order.size());
    for (auto& front : non_dominated_sort(points, maximize_)) {
      const std::vector<double> crowding = crowding_distance(points, front);
      std::vector<std::size_t> by_crowding(front.size());
      for (std::size_t i = 0; i < front.size(); ++i) by_crowding[i] = i;
      std::stable_sort(by_crowding.begin(), by_crowding.end(),
                       [&](std::size_t a, std::size_t b) { return crowding[a] > crowding[b]; });
      for (std::size_t i : by_crowding) out.push_back(feasible[front[i]]);
    }
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
  }

  bool hyperband_;
  int eta_;
  bool pareto_promotion_;
  std::vector<bool> maximize_;
  int max_epochs_;
  bool by_subset_;           // rungs are training-set sizes, not epochs
  std::vector<int> ladder_;  // the rungs' epochs or training samples, lowest first
  std::vector<std::unique_ptr<Strategy>> proposers_;  // one per bracket
  std::vector<Candidate> candidates_;
  std::vector<Bracket> brackets_;
  std::map<std::uint64_t, Slot> in_flight_;
  int cycle_length_ = 0;
  int cycle_position_ = 0;
};

std::vector<ParamSpec> multi_fidelity_params() {
  return {ParamSpec::choice("resource", {"epochs", "train_subset"}, "epochs",
                            "what a rung grows: training epochs (promotions continue from a "
                            "checkpoint) or training samples (the run's epochs on the first n "
                            "rows of the split; promotions train again)"),
          ParamSpec::int_range("min_epochs", 1, 100000, 1, "epochs of the lowest rung"),
          ParamSpec::int_range("max_epochs", 1, 100000, 9,
                               "epochs of the top rung (the full fidelity); at least min_epochs"),
          ParamSpec::int_range("min_train_subset", 1, 100000000, 1000,
                               "training samples of the lowest rung (resource train_subset)"),
          ParamSpec::int_range("max_train_subset", 0, 100000000, 0,
                               "training samples of the top rung (resource train_subset, where "
                               "it is required); rungs beyond the run's training split use it "
                               "whole"),
          ParamSpec::int_range("eta", 2, 100, 3,
                               "reduction factor: the top 1/eta of a rung is promoted to eta "
                               "times the epochs"),
          ParamSpec::choice("promotion", {"fitness", "pareto"}, "fitness",
                            "how a rung ranks its results for promotion: the search's scalar "
                            "fitness, or Pareto rank on all objectives then crowding distance "
                            "(MO-ASHA)"),
          ParamSpec::any_json("proposer", {{"type", "random"}},
                              "the strategy that proposes new candidates, an object like "
                              "\"strategy\" itself, e.g. {\"type\": \"regularized_evolution\", "
                              "\"population\": 16}; told each candidate's first-rung result")};
}

std::unique_ptr<Strategy> make_multi_fidelity(const nlohmann::json& p, const spaces::Space& space,
                                              const StrategyContext& ctx, bool hyperband) {
  if (p["max_epochs"].get<int>() < p["min_epochs"].get<int>())
    throw std::invalid_argument("strategy.max_epochs: " + p["max_epochs"].dump() +
                                " is below strategy.min_epochs (" + p["min_epochs"].dump() + ")");
  if (p["resource"] == "train_subset") {
    if (p["max_train_subset"].get<int>() == 0)
      throw std::invalid_argument(
          "strategy.max_train_subset: required with resource \"train_subset\" (the top rung's "
          "training samples, e.g. the task's train_subset)");
    if (p["max_train_subset"].get<int>() < p["min_train_subset"].get<int>())
      throw std::invalid_argument("strategy.max_train_subset: " + p["max_train_subset"].dump() +
                                  " is below strategy.min_train_subset (" +
                                  p["min_train_subset"].dump() + ")");
  }
  const nlohmann::json& proposer = p["proposer"];
  if (proposer.is_object() && proposer.contains("type") && proposer["type"].is_string()) {
    const std::string t = proposer["type"];
    // One-shot strategies train a supernet at their first ask; a bracket's proposer is first
    // asked while other brackets' candidates train, and under mpirun the phase's collectives
    // would then wait for workers busy with those (a deadlock), so they are refused here.
    const StrategyEntry* entry = strategy_registry().find(t);
    if (t == "successive_halving" || t == "hyperband" || (entry && entry->one_shot))
      throw std::invalid_argument("strategy.proposer: '" + t +
                                  "' cannot propose for a multi-fidelity strategy; use a "
                                  "single-fidelity, multi-trial strategy such as random or "
                                  "regularized_evolution");
  }
  return std::make_unique<MultiFidelity>(space, ctx, p, hyperband);
}

}  // namespace

StrategyEntry successive_halving_strategy() {
  return {"successive_halving",
          "asynchronous successive halving (ASHA, Li et al. 2020) over training epochs or samples: "
          "the top "
          "1/eta of each rung continue (from their checkpoints) at eta times the resource",
          multi_fidelity_params(),
          [](const nlohmann::json& p, const spaces::Space& space, const StrategyContext& ctx) {
            return make_multi_fidelity(p, space, ctx, /*hyperband=*/false);
          }};
}

StrategyEntry hyperband_strategy() {
  return {"hyperband",
          "Hyperband (Li et al. 2018) as asynchronous successive-halving brackets, from the most "
          "aggressive to plain full-fidelity search, in Hyperband's proportions",
          multi_fidelity_params(),
          [](const nlohmann::json& p, const spaces::Space& space, const StrategyContext& ctx) {
            return make_multi_fidelity(p, space, ctx, /*hyperband=*/true);
          }};
}

}  // namespace hwnas::strategies
