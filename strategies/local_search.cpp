// Local search by best improvement over the space's neighbours (White, Nolen, Savani &
// Tomasevic, "Exploring the loss landscape in neural architecture search", UAI 2021, found it
// a strong NAS baseline).
//
// From a uniform sample (the centre), every neighbour (Space::neighbours: each single-decision
// change) is evaluated; the centre moves to the best neighbour if that is better than the
// centre (scalar fitness under Deb's feasibility rule), else the centre is a local optimum and
// the search restarts from a new uniform sample.  Architectures evaluated before are not
// proposed again: their known result is used.  When every neighbour of the current step is
// out with a worker and more proposals are asked for, the extra workers get uniform samples
// (exploration) rather than idling; their results are remembered like any other.
#include <algorithm>
#include <optional>
#include <set>
#include <unordered_map>

#include "strategies/registry.hpp"

namespace hwnas::strategies {
namespace {

class LocalSearch final : public Strategy {
 public:
  LocalSearch(const spaces::Space& space, const StrategyContext& ctx, const nlohmann::json& p)
      : Strategy(space, ctx, p), max_neighbours_(p["max_neighbours"]) {}
  std::string name() const override { return "local_search"; }

 protected:
  Proposal propose() override {
    // Bounded: each pass either returns or moves the centre (a restart or an improvement made
    // of results already known).
    for (int guard = 0; guard < 1000; ++guard) {
      if (!centre_ && !centre_id_) {
        spaces::Genome g = space_.sample(rng_);
        if (auto it = known_.find(g.hash()); it != known_.end()) {
          centre_ = Scored{std::move(g), it->second};
          start_step();
          continue;
        }
        centre_id_ = next_id();
        return {0, std::move(g), {}};
      }
      if (centre_ && !queue_.empty()) {
        spaces::Genome g = std::move(queue_.front());
        queue_.erase(queue_.begin());
        step_ids_.insert(next_id());
        return {0, std::move(g), {}};
      }
      break;
    }
    return {0, space_.sample(rng_), {}};  // everything of this step is out: explore
  }

  void learn(const Proposal& p, const Result& r) override {
    known_[p.genome.hash()] = r;
    if (centre_id_ && *centre_id_ == p.id) {
      centre_id_.reset();
      centre_ = Scored{p.genome, r};
      start_step();
      return;
    }
    if (step_ids_.erase(p.id)) {
      consider(Scored{p.genome, r});
      if (step_ids_.empty() && queue_.empty()) finish_step();
    }
  }

  nlohmann::json save_body() const override {
    auto scored = [](const std::optional<Scored>& s) -> nlohmann::json {
      if (!s) return nullptr;
      return {{"genome", genome_to_json(s->genome)}, {"result", s->result.to_json()}};
    };
    nlohmann::json queue = nlohmann::json::array(), known = nlohmann::json::object();
    for (const auto& g : queue_) queue.push_back(genome_to_json(g));
    for (const auto& [h, r] : known_) known[h] = r.to_json();
    return {{"centre", scored(centre_)},
            {"centre_id", centre_id_ ? nlohmann::json(*centre_id_) : nlohmann::json()},
            {"best_neighbour", scored(best_)},
            {"queue", queue},
            {"step_ids", step_ids_},
            {"known", known},
            {"restarts", restarts_}};
  }

  void restore_body(const nlohmann::json& s) override {
    auto scored = [](const nlohmann::json& j) -> std::optional<Scored> {
      if (j.is_null()) return std::nullopt;
      return Scored{genome_from_json(j.at("genome")), Result::from_json(j.at("result"))};
    };
    auto centre = scored(s.at("centre"));
    auto best = scored(s.at("best_neighbour"));
    std::optional<std::uint64_t> centre_id;
    if (!s.at("centre_id").is_null()) centre_id = s["centre_id"].get<std::uint64_t>();
    std::vector<spaces::Genome> queue;
    for (const auto& g : s.at("queue")) queue.push_back(genome_from_json(g));
    auto step_ids = s.at("step_ids").get<std::set<std::uint64_t>>();
    std::unordered_map<std::string, Result> known;
    for (const auto& [h, r] : s.at("known").items()) known[h] = Result::from_json(r);
    centre_ = std::move(centre);
    best_ = std::move(best);
    centre_id_ = centre_id;
    queue_ = std::move(queue);
    step_ids_ = std::move(step_ids);
    known_ = std::move(known);
    restarts_ = s.at("restarts").get<int>();
  }

 private:
  struct Scored {
    spaces::Genome genome;
    Result result;
  };

  void consider(Scored s) {
    if (!best_ || scalar_better(s.result, best_->result)) best_ = std::move(s);
  }

  // Queues the centre's neighbours not evaluated yet; known ones are considered at once.
  void start_step() {
    while (centre_) {
      best_.reset();
      queue_.clear();
      std::vector<spaces::Genome> ns = space_.neighbours(centre_->genome);
      std::shuffle(ns.begin(), ns.end(), rng_);
      if (max_neighbours_ > 0 && static_cast<int>(ns.size()) > max_neighbours_)
        ns.resize(static_cast<std::size_t>(max_neighbours_));
      std::set<std::string> queued;
      for (auto& n : ns) {
        const std::string h = n.hash();
        if (auto it = known_.find(h); it != known_.end())
          consider(Scored{n, it->second});
        else if (queued.insert(h).second)
          queue_.push_back(std::move(n));
      }
      if (!queue_.empty()) return;
      if (!move_centre()) return;  // every neighbour known: move (or restart) at once
    }
  }

  void finish_step() {
    if (move_centre()) start_step();
  }

  // Moves to the best neighbour if it improves on the centre (true), else restarts (false).
  bool move_centre() {
    if (best_ && scalar_better(best_->result, centre_->result)) {
      centre_ = std::move(best_);
      best_.reset();
      return true;
    }
    centre_.reset();
    best_.reset();
    ++restarts_;
    return false;
  }

  int max_neighbours_;
  std::optional<Scored> centre_, best_;
  std::optional<std::uint64_t> centre_id_;         // the centre sample still being evaluated
  std::vector<spaces::Genome> queue_;              // neighbours of this step not yet proposed
  std::set<std::uint64_t> step_ids_;               // neighbours of this step out with workers
  std::unordered_map<std::string, Result> known_;  // hash -> result of every evaluation
  int restarts_ = 0;
};

}  // namespace

StrategyEntry local_search_strategy() {
  return {"local_search",
          "best-improvement local search over the space's neighbours, restarting from a uniform "
          "sample at each local optimum",
          {ParamSpec::int_range("max_neighbours", 0, 1000000, 0,
                                "neighbours evaluated per step, drawn at random (0 = all)")},
          [](const nlohmann::json& p, const spaces::Space& space,
             const StrategyContext& ctx) -> std::unique_ptr<Strategy> {
            return std::make_unique<LocalSearch>(space, ctx, p);
          }};
}

}  // namespace hwnas::strategies
