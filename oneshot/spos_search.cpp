#include "oneshot/spos_search.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "nn/optim.hpp"
#include "nn/parallel.hpp"
#include "spaces/workload_builder.hpp"
#include "strategies/pareto.hpp"

namespace hwnas::oneshot {

SposOptions SposOptions::from_params(const nlohmann::json& p, const eval::TrainConfig& train,
                                     std::uint64_t seed) {
  SposOptions o;
  o.epochs = p.at("epochs").get<int>();
  o.steps_per_epoch = p.at("steps_per_epoch").get<int>();
  o.batch_size =
      p.at("batch_size").get<int>() > 0 ? p.at("batch_size").get<int>() : train.batch_size;
  o.sgd.lr = static_cast<float>(p.at("w_lr").get<double>());
  o.sgd.momentum = static_cast<float>(p.at("w_momentum").get<double>());
  o.sgd.weight_decay = static_cast<float>(p.at("w_weight_decay").get<double>());
  o.sgd.clip_grad_norm = train.clip_grad_norm > 0 ? train.clip_grad_norm : 5.0f;
  o.recalibrate_bn = p.at("recalibrate_bn").get<bool>();
  o.bn_batches = p.at("bn_batches").get<int>();
  o.eval_samples = p.at("eval_samples").get<int>();
  o.population = p.at("population").get<int>();
  o.generations = p.at("generations").get<int>();
  o.candidates = p.at("candidates").get<int>();
  o.head = train.head;
  o.seed = seed;
  return o;
}

std::vector<double> train_supernet(SposSupernet& net, const eval::Dataset& train,
                                   const SposOptions& o, std::ostream* log,
                                   const DataShard& shard) {
  if (train.size() < 1) throw std::invalid_argument("spos: the training split is empty");
  std::mt19937_64 seeds(o.seed);
  const std::uint64_t batch_seed = seeds(), path_seed = seeds();
  const int batch = std::min(o.batch_size, train.size());
  if (batch < shard.ranks)
    throw std::invalid_argument("spos: a supernet batch of " + std::to_string(batch) +
                                " rows cannot be split over " + std::to_string(shard.ranks) +
                                " ranks (raise strategy.batch_size or use fewer ranks)");
  eval::BatchIterator it(train, batch, true, batch_seed, true);
  const int steps = o.steps_per_epoch > 0 ? o.steps_per_epoch : it.batches_per_epoch();
  nn::CosineSchedule sched;
  sched.base_lr = 1.0f;
  sched.total_steps = static_cast<std::int64_t>(steps) * o.epochs;
  std::mt19937_64 path_rng(path_seed);
  std::vector<double> losses;
  int pass = 0;
  std::int64_t step = 0;
  it.start_epoch(pass);
  eval::Batch b;
  const auto start = std::chrono::steady_clock::now();
  nn::run_isolated([&] {
    for (int e = 1; e <= o.epochs; ++e) {
      double sum = 0;
      for (int k = 0; k < steps; ++k, ++step) {
        if (!it.next(b)) {
          it.start_epoch(++pass);
          it.next(b);
        }
        SgdSettings s = o.sgd;
        s.lr = o.sgd.lr * sched.factor_at(step);
        // One uniformly drawn path per step, updated alone (SPOS).
        const spaces::Genome path = net.sample(path_rng);
        const double l = net.train_step(path, b, o.head, s, shard);
        if (!std::isfinite(l))
          throw std::runtime_error("spos: the supernet's training loss diverged at epoch " +
                                   std::to_string(e) + " (lower strategy.w_lr)");
        sum += l;
      }
      losses.push_back(sum / steps);
      if (log) {
        const double el =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::ostringstream line;  // formatted apart: the caller's stream keeps its flags
        line << "spos: supernet epoch " << e << "/" << o.epochs << " loss " << std::fixed
             << std::setprecision(4) << losses.back() << std::setprecision(1) << " (" << el
             << " s, ETA " << el / e * (o.epochs - e) << " s)";
        *log << line.str() << std::endl;
      }
    }
  });
  return losses;
}

InheritedScorer::InheritedScorer(SposSupernet& net, const eval::TrainValSplit& data,
                                 const SposOptions& o)
    : net_(net), head_(o.head), recalibrate_(o.recalibrate_bn) {
  // The same recalibration batches and evaluation samples for every subnet, so scores compare.
  std::mt19937_64 seeds(o.seed ^ 0x5be0cd19137e2179ULL);
  const int batch = std::min(o.batch_size, data.train.size());
  eval::BatchIterator it(data.train, batch, true, seeds(), true);
  it.start_epoch(0);
  eval::Batch b;
  for (int i = 0; i < o.bn_batches && it.next(b); ++i) bn_batches_.push_back(b);
  const int n = o.eval_samples > 0 ? std::min(o.eval_samples, data.val.size()) : data.val.size();
  std::vector<int> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  eval_set_ = eval::take(data.val, idx);
}

std::map<std::string, double> InheritedScorer::score(const spaces::Genome& g, bool recalibrate) {
  auto model = net_.subnet(g);
  if (recalibrate) recalibrate_batch_norm(*model, bn_batches_);
  const eval::EvalMetrics m = eval::evaluate(*model, eval_set_, 256, nullptr, head_);
  std::map<std::string, double> out = m.metrics;
  out["loss"] = m.loss;
  out["params"] = static_cast<double>(model->num_parameters());
  return out;
}

namespace {

struct Scored {
  spaces::Genome genome;
  std::map<std::string, double> inherited;
  nlohmann::json costs = nlohmann::json::object();  // "latency_ms@device" -> value
  std::vector<double> values;                       // one per objective
  double violation = 0;
};

// Orders `members` (indices into pool) best first: constrained fronts, then crowding inside a
// front (NSGA-II's survival order), ties by the first objective.
std::vector<std::size_t> nsga_order(const std::vector<Scored>& pool,
                                    const std::vector<std::size_t>& members,
                                    const std::vector<bool>& maximize) {
  std::vector<std::vector<double>> pts;
  std::vector<double> viol;
  for (auto i : members) {
    pts.push_back(pool[i].values);
    viol.push_back(pool[i].violation);
  }
  std::vector<std::size_t> out;
  for (const auto& front : strategies::constrained_non_dominated_sort(pts, viol, maximize)) {
    const auto crowd = strategies::crowding_distance(pts, front);
    std::vector<std::size_t> f(front.size());
    std::iota(f.begin(), f.end(), 0);
    std::stable_sort(f.begin(), f.end(), [&](std::size_t a, std::size_t b) {
      if (crowd[a] != crowd[b]) return crowd[a] > crowd[b];
      const double va = pts[front[a]][0], vb = pts[front[b]][0];
      return maximize[0] ? va > vb : va < vb;
    });
    for (auto k : f) out.push_back(members[front[k]]);
  }
  return out;
}

}  // namespace

SposOutcome run_spos(const spaces::Space& space, const eval::TrainValSplit& data,
                     const std::vector<SposObjective>& objectives, const SposOptions& o,
                     std::ostream* log, const DataShard& shard) {
  if (objectives.empty()) throw std::invalid_argument("spos: no objective to rank subnets by");
  if (data.train.size() < 2 || data.val.size() < 1)
    throw std::invalid_argument(
        "spos: the task's train and validation splits need samples (task.train_subset, "
        "task.val_size)");
  for (const auto& ob : objectives) {
    const bool cost =
        ob.metric == "latency_ms" || ob.metric == "energy_mj" || ob.metric == "memory_bytes";
    if (cost && !ob.device)
      throw std::invalid_argument("spos: objective '" + ob.name + "' needs a device model");
    if (!cost && ob.metric != "params" && ob.metric.rfind("val_", 0) != 0)
      throw std::invalid_argument("spos: objective '" + ob.name +
                                  "' cannot be read on an inherited-weight subnet (known: "
                                  "val_<head metric>, val_loss, params, latency_ms, "
                                  "energy_mj, memory_bytes)");
  }
  std::mt19937_64 seeds(o.seed);
  const std::uint64_t net_seed = seeds(), train_seed = seeds(), evo_seed = seeds();
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  SposSupernet net(space, net_seed);
  SposOptions to = o;
  to.seed = train_seed;
  const std::vector<double> losses = train_supernet(net, data.train, to, log, shard);
  const double train_s = seconds();
  // Ranking needs no gradients: rank 0 does it alone while the others go back to their jobs.
  if (shard.rank != 0) return {};

  InheritedScorer scorer(net, data, o);
  std::vector<bool> maximize;
  for (const auto& ob : objectives) maximize.push_back(ob.maximize);
  std::vector<Scored> pool;
  std::map<std::string, std::size_t> by_hash;
  auto score = [&](const spaces::Genome& g) -> std::size_t {
    const std::string h = g.hash();
    if (auto it = by_hash.find(h); it != by_hash.end()) return it->second;
    Scored s;
    s.genome = g;
    s.inherited = scorer.score(g);
    const hw::Workload w = spaces::build_workload(g);
    for (const auto& ob : objectives) {
      double v = 0;
      if (ob.metric == "params") {
        v = s.inherited.at("params");
      } else if (ob.metric.rfind("val_", 0) == 0) {
        const auto it = s.inherited.find(ob.metric.substr(4));
        if (it == s.inherited.end())
          throw std::invalid_argument("spos: objective '" + ob.name +
                                      "': the head has no metric '" + ob.metric.substr(4) + "'");
        v = it->second;
      } else {
        const hw::Cost c = ob.device->estimate_total(w);
        if (!c.feasible) {
          s.violation += 1;
        } else {
          v = ob.metric == "latency_ms"  ? c.latency_ms
              : ob.metric == "energy_mj" ? c.energy_mj
                                         : c.memory_bytes;
          s.costs[ob.metric + "@" + ob.device->name()] = v;
        }
      }
      s.values.push_back(std::isfinite(v) ? v : 0.0);
    }
    pool.push_back(std::move(s));
    by_hash.emplace(h, pool.size() - 1);
    return pool.size() - 1;
  };

  std::mt19937_64 rng(evo_seed);
  std::vector<std::size_t> pop;
  for (int tries = 0; static_cast<int>(pop.size()) < o.population && tries < 20 * o.population;
       ++tries) {
    const std::size_t i = score(space.sample(rng));
    if (std::find(pop.begin(), pop.end(), i) == pop.end()) pop.push_back(i);
  }
  nlohmann::json generations = nlohmann::json::array();
  auto best_first = [&](std::size_t i) { return pool[i].values[0]; };
  for (int gen = 1; gen <= o.generations; ++gen) {
    const auto order = nsga_order(pool, pop, maximize);
    std::vector<std::size_t> rank(pool.size(), pool.size());
    for (std::size_t r = 0; r < order.size(); ++r) rank[order[r]] = r;
    auto tournament = [&] {
      const std::size_t a = pop[std::uniform_int_distribution<std::size_t>(0, pop.size() - 1)(rng)];
      const std::size_t b = pop[std::uniform_int_distribution<std::size_t>(0, pop.size() - 1)(rng)];
      return rank[a] <= rank[b] ? a : b;
    };
    std::vector<std::size_t> merged = pop;
    for (int c = 0; c < o.population; ++c) {
      const std::size_t pa = tournament(), pb = tournament();
      spaces::Genome child = std::bernoulli_distribution(0.5)(rng)
                                 ? space.crossover(pool[pa].genome, pool[pb].genome, rng)
                                 : pool[pa].genome;
      child = space.mutate(child, rng);
      const std::size_t i = score(child);
      if (std::find(merged.begin(), merged.end(), i) == merged.end()) merged.push_back(i);
    }
    auto survivors = nsga_order(pool, merged, maximize);
    survivors.resize(std::min(survivors.size(), static_cast<std::size_t>(o.population)));
    pop = survivors;
    double best = best_first(pop.front());
    for (auto i : pop)
      best = maximize[0] ? std::max(best, best_first(i)) : std::min(best, best_first(i));
    generations.push_back({{"generation", gen}, {"scored", pool.size()}, {"best", best}});
    if (log) {
      std::ostringstream line;
      line << "spos: generation " << gen << "/" << o.generations << ": " << pool.size()
           << " subnets scored, best inherited " << objectives[0].name << " " << best << " ("
           << std::fixed << std::setprecision(1) << seconds() << " s)";
      *log << line.str() << std::endl;
    }
  }

  // The picks: the best of everything scored.
  std::vector<std::size_t> all(pool.size());
  std::iota(all.begin(), all.end(), 0);
  const auto order = nsga_order(pool, all, maximize);
  SposOutcome out;
  nlohmann::json picks = nlohmann::json::array();
  for (std::size_t r = 0; r < order.size() && static_cast<int>(r) < o.candidates; ++r) {
    const Scored& s = pool[order[r]];
    nlohmann::json m = nlohmann::json::object();
    for (const auto& [k, v] : s.inherited)
      if (k != "params") m["inherited_val_" + k] = v;
    m["inherited_rank"] = static_cast<int>(r);
    out.candidates.push_back(s.genome);
    out.candidate_metrics.push_back(m);
    picks.push_back({{"arch", space.describe(s.genome)}, {"metrics", m}, {"costs", s.costs}});
  }
  out.report = {{"supernet_epoch_loss", losses},
                {"banks", net.num_banks()},
                {"banked_values", net.num_values()},
                {"subnets_scored", pool.size()},
                {"generations", generations},
                {"picks", picks},
                {"train_seconds", train_s},
                {"seconds", seconds()},
                {"ranks", shard.ranks}};
  return out;
}

}  // namespace hwnas::oneshot
