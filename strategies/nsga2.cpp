// NSGA-II (Deb, Pratap, Agarwal & Meyarivan, "A fast and elitist multiobjective genetic
// algorithm: NSGA-II", IEEE TEC 2002) with Deb's constraint domination (2000).
//
// Parents are chosen by binary tournament on (constrained rank, crowding distance); a child is
// the space's crossover of two parents (with probability crossover_rate) followed by mutation
// (with probability mutation_rate, and always when no crossover happened, so a child is never a
// plain copy).  Children already proposed are drawn again (up to 16 times): re-evaluating an
// architecture teaches nothing on a deterministic benchmark.  On spaces with decision operators
// (strategies/drafts.hpp) a child is drawn and checked as a decision vector and built once it
// is kept: late in a run most children are redraws, and a genome is costly to build.
//
// Two replacement schemes:
//  - steady_state (default): every told child joins the population at once and, past
//    `population` members, the worst member leaves: the most crowded member of the last front.
//    This (mu+1) scheme (Durillo et al. 2009) keeps any number of asynchronous workers busy,
//    since a proposal never waits for a generation to complete.
//  - generational: children are collected until `population` of them are told; then parents
//    and children are merged and the best `population` survive (fronts in order, the last one
//    cut by crowding distance), as in the original algorithm.
//
// The first `population` proposals are uniform samples.  Failed evaluations never enter the
// population.  A result whose objectives are unavailable (NaN) counts as infeasible.
#include <cmath>
#include <memory>
#include <numeric>
#include <set>
#include <stdexcept>

#include "strategies/drafts.hpp"
#include "strategies/registry.hpp"

namespace hwnas::strategies {
namespace {

class Nsga2 final : public Strategy {
 public:
  Nsga2(const spaces::Space& space, const StrategyContext& ctx, const nlohmann::json& p)
      : Strategy(space, ctx, p),
        population_(p["population"]),
        generational_(p["mode"] == "generational"),
        crossover_rate_(p["crossover_rate"]),
        mutation_rate_(p["mutation_rate"]),
        maximize_(maximize_flags(ctx.objectives)),
        drafts_(space) {}
  std::string name() const override { return "nsga2"; }

 protected:
  Proposal propose() override {
    if (sampled_ < population_ || members_.size() < 2) {
      ++sampled_;
      spaces::Genome g = space_.sample(rng_);
      remember(g);
      return {0, std::move(g), {}};
    }
    refresh_ranks();
    Draft child;
    for (int attempt = 0; attempt < 16; ++attempt) {
      const Member& a = members_[tournament()];
      const Member& b = members_[tournament()];
      std::uniform_real_distribution<double> u(0.0, 1.0);
      const bool crossed = u(rng_) < crossover_rate_;
      // Mutating a copy of a parent is the one way a child starts as a plain copy.
      if (crossed) child = drafts_.crossover(a.draft, b.draft, rng_);
      if (!crossed || u(rng_) < mutation_rate_)
        child = drafts_.mutate(crossed ? child : a.draft, rng_);
      if (!proposed_before(child)) break;
    }
    spaces::Genome g = drafts_.genome(child);
    remember(g);
    return {0, std::move(g), {}};
  }

  void learn(const Proposal& p, const Result& r) override {
    if (!r.ok) return;
    Member m{drafts_.of(p.genome), r.objectives, r.violation};
    for (double v : m.objectives)
      if (std::isnan(v)) m.violation = std::max(m.violation, 0.0) + 1;  // objective unavailable
    if (m.violation < 0 || std::isnan(m.violation)) m.violation = 1;
    if (generational_ && static_cast<int>(members_.size()) >= population_) {
      offspring_.push_back(std::move(m));
      if (static_cast<int>(offspring_.size()) >= population_) {
        for (auto& o : offspring_) members_.push_back(std::move(o));
        offspring_.clear();
        survive(static_cast<std::size_t>(population_));
      }
      return;
    }
    members_.push_back(std::move(m));
    dirty_ = true;
    if (static_cast<int>(members_.size()) > population_) survive(members_.size() - 1);
  }

  nlohmann::json save_body() const override {
    auto members = [](const std::vector<Member>& ms) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& m : ms) {
        nlohmann::json objs = nlohmann::json::array();
        for (double v : m.objectives) objs.push_back(number_to_json(v));
        out.push_back({{"genome", genome_to_json(*m.draft.genome)},
                       {"objectives", objs},
                       {"violation", number_to_json(m.violation)}});
      }
      return out;
    };
    return {{"members", members(members_)},
            {"offspring", members(offspring_)},
            {"sampled", sampled_},
            {"seen", seen_}};
  }

  void restore_body(const nlohmann::json& s) override {
    auto members = [this](const nlohmann::json& j) {
      std::vector<Member> out;
      for (const auto& m : j) {
        Member x{
            drafts_.of(genome_from_json(m.at("genome"))), {}, number_from_json(m.at("violation"))};
        for (const auto& v : m.at("objectives")) x.objectives.push_back(number_from_json(v));
        out.push_back(std::move(x));
      }
      return out;
    };
    auto ms = members(s.at("members"));
    auto os = members(s.at("offspring"));
    const int sampled = s.at("sampled").get<int>();
    auto seen = s.at("seen").get<std::set<std::string>>();
    // The seen decision vectors are not in the state (hashes cannot be turned back into them),
    // so a restored strategy checks children by hash (building each) for the rest of the run;
    // the draws, and so the proposals, are the same either way.
    members_ = std::move(ms);
    offspring_ = std::move(os);
    sampled_ = sampled;
    seen_ = std::move(seen);
    seen_decisions_.clear();
    decisions_complete_ = false;
    dirty_ = true;
  }

 private:
  struct Member {
    // The genome is shared: costly to copy, and survival reorders members on every tell.
    Draft draft;
    std::vector<double> objectives;
    double violation = 0;
  };

  // rank_[i] and crowd_[i] of members_[i] (constrained fronts; crowding within each feasible
  // front, 0 inside infeasible fronts where objectives may be unavailable).
  void refresh_ranks() {
    if (!dirty_) return;
    std::vector<std::vector<double>> pts;
    std::vector<double> viol;
    for (const auto& m : members_) {
      pts.push_back(m.violation > 0 ? std::vector<double>(maximize_.size(), 0.0) : m.objectives);
      viol.push_back(m.violation);
    }
    fronts_ = constrained_non_dominated_sort(pts, viol, maximize_);
    rank_.assign(members_.size(), 0);
    crowd_.assign(members_.size(), 0.0);
    for (std::size_t f = 0; f < fronts_.size(); ++f) {
      for (std::size_t i : fronts_[f]) rank_[i] = f;
      if (members_[fronts_[f][0]].violation > 0) continue;
      auto cd = crowding_distance(pts, fronts_[f]);
      for (std::size_t k = 0; k < cd.size(); ++k) crowd_[fronts_[f][k]] = cd[k];
    }
    dirty_ = false;
  }

  std::size_t tournament() {
    std::uniform_int_distribution<std::size_t> pick(0, members_.size() - 1);
    std::size_t a = pick(rng_), b = pick(rng_);
    if (rank_[a] != rank_[b]) return rank_[a] < rank_[b] ? a : b;
    if (crowd_[a] != crowd_[b]) return crowd_[a] > crowd_[b] ? a : b;
    return std::min(a, b);  // the older member: deterministic
  }

  // Keeps the best `keep` members: whole fronts in order, the last front cut by crowding
  // distance (most crowded leave first; among equals the newest leaves).
  void survive(std::size_t keep) {
    dirty_ = true;
    refresh_ranks();
    std::vector<std::size_t> kept;
    for (const auto& f : fronts_) {
      if (kept.size() + f.size() <= keep) {
        kept.insert(kept.end(), f.begin(), f.end());
        continue;
      }
      std::vector<std::size_t> order = f;
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t b) { return crowd_[a] > crowd_[b]; });
      order.resize(keep - kept.size());
      kept.insert(kept.end(), order.begin(), order.end());
      break;
    }
    std::sort(kept.begin(), kept.end());  // members keep their age order
    std::vector<Member> next;
    next.reserve(kept.size());
    for (std::size_t i : kept) next.push_back(std::move(members_[i]));
    members_ = std::move(next);
    dirty_ = true;
  }

  int population_;
  bool generational_;
  double crossover_rate_, mutation_rate_;
  std::vector<bool> maximize_;

  std::vector<Member> members_, offspring_;
  int sampled_ = 0;
  // Whether `child` was proposed before: by its decisions where every proposal's decisions are
  // known, else by its genome's hash (building the genome; it is kept in the draft).
  bool proposed_before(Draft& child) const {
    if (decisions_complete_ && drafts_.on_decisions())
      return seen_decisions_.count(child.decisions) > 0;
    if (!child.genome) child.genome = std::make_shared<const spaces::Genome>(drafts_.genome(child));
    return seen_.count(child.genome->hash()) > 0;
  }
  void remember(const spaces::Genome& g) {
    seen_.insert(g.hash());
    if (drafts_.on_decisions()) seen_decisions_.insert(space_.encode_decisions(g));
  }

  std::set<std::string> seen_;  // hashes of every genome proposed
  // Decision vectors of every genome proposed (decision path); complete unless restored.
  std::set<std::vector<int>> seen_decisions_;
  bool decisions_complete_ = true;
  Drafts drafts_;

  bool dirty_ = true;
  std::vector<std::vector<std::size_t>> fronts_;
  std::vector<std::size_t> rank_;
  std::vector<double> crowd_;
};

}  // namespace

StrategyEntry nsga2_strategy() {
  return {"nsga2",
          "NSGA-II (Deb et al. 2002): constrained non-dominated sorting, crowding distance, binary "
          "tournaments, crossover and mutation; steady-state for asynchronous workers",
          {ParamSpec::int_range("population", 2, 100000, 32,
                                "members kept; the first `population` proposals are uniform "
                                "samples"),
           ParamSpec::choice("mode", {"steady_state", "generational"}, "steady_state",
                             "steady_state: each told child replaces the worst member at once "
                             "(mu+1); generational: (mu+mu) selection once `population` "
                             "children are told"),
           ParamSpec::float_range("crossover_rate", 0, 1, 0.9,
                                  "probability that a child is the space's crossover of two "
                                  "parents (else a copy of one)"),
           ParamSpec::float_range("mutation_rate", 0, 1, 1.0,
                                  "probability that a crossover child is also mutated (a copy "
                                  "always is)")},
          [](const nlohmann::json& p, const spaces::Space& space, const StrategyContext& ctx)
              -> std::unique_ptr<Strategy> { return std::make_unique<Nsga2>(space, ctx, p); }};
}

}  // namespace hwnas::strategies
