#include "oneshot/spos_search.hpp"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <numeric>
#include <optional>
#include <ostream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "common/hash.hpp"
#include "nn/checkpoint.hpp"
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
  o.schedule = p.value("schedule", std::string("uniform"));
  o.full_epochs = p.value("full_epochs", o.full_epochs);
  o.kernel_epochs = p.value("kernel_epochs", o.kernel_epochs);
  o.depth_epochs = p.value("depth_epochs", o.depth_epochs);
  o.width_epochs = p.value("width_epochs", o.width_epochs);
  o.kd = p.value("kd", false);
  o.kd_weight = static_cast<float>(p.value("kd_weight", 1.0));
  o.state_path = p.value("supernet_state", std::string());
  o.head = train.head;
  o.seed = seed;
  return o;
}

std::vector<SupernetPhase> SposOptions::phases() const {
  if (schedule == "uniform") return {{"uniform", Elastic{}, epochs}};
  if (schedule != "progressive")
    throw std::invalid_argument("strategy.schedule: '" + schedule +
                                "' is not a schedule (use uniform or progressive)");
  // OFA's order: the largest network, then elastic kernel, depth, width (each keeps the
  // dimensions opened before it).
  return {{"full", Elastic{false, false, false}, full_epochs},
          {"kernel", Elastic{true, false, false}, kernel_epochs},
          {"depth", Elastic{true, true, false}, depth_epochs},
          {"width", Elastic{true, true, true}, width_epochs}};
}

namespace {

// Everything the options fix about a training run, so a state saved under others is refused.
std::uint64_t options_fingerprint(const SposOptions& o, int steps) {
  nlohmann::json phases = nlohmann::json::array();
  for (const auto& p : o.phases()) phases.push_back({p.name, p.epochs});
  const nlohmann::json j = {{"phases", phases},
                            {"steps", steps},
                            {"batch", o.batch_size},
                            {"lr", o.sgd.lr},
                            {"momentum", o.sgd.momentum},
                            {"wd", o.sgd.weight_decay},
                            {"clip", o.sgd.clip_grad_norm},
                            {"kd", o.kd},
                            {"kd_weight", o.kd_weight},
                            {"seed", o.seed}};
  return fnv1a64(j.dump());
}

std::int64_t double_bits(double v) { return std::bit_cast<std::int64_t>(v); }
double bits_double(std::int64_t v) { return std::bit_cast<double>(v); }

}  // namespace

SupernetTraining train_supernet_phases(SposSupernet& net, const eval::Dataset& train,
                                       const SposOptions& o, std::ostream* log,
                                       const DataShard& shard) {
  if (train.size() < 1) throw std::invalid_argument("spos: the training split is empty");
  const std::vector<SupernetPhase> phases = o.phases();
  const bool progressive = o.schedule == "progressive";
  if (o.kd && !progressive)
    throw std::invalid_argument(
        "strategy.kd: in-place distillation is part of the progressive schedule (set schedule "
        "to progressive, or kd to false)");
  std::mt19937_64 seeds(o.seed);
  const std::uint64_t batch_seed = seeds(), path_seed = seeds();
  const int batch = std::min(o.batch_size, train.size());
  if (batch < shard.ranks)
    throw std::invalid_argument("spos: a supernet batch of " + std::to_string(batch) +
                                " rows cannot be split over " + std::to_string(shard.ranks) +
                                " ranks (raise strategy.batch_size or use fewer ranks)");
  eval::BatchIterator it(train, batch, true, batch_seed, true);
  const int steps = o.steps_per_epoch > 0 ? o.steps_per_epoch : it.batches_per_epoch();
  int total_epochs = 0;
  for (const auto& p : phases) total_epochs += p.epochs;
  const std::uint64_t fingerprint = options_fingerprint(o, steps);
  std::mt19937_64 path_rng(path_seed);
  SupernetTraining out;
  int pass = 0, taken = 0;  // the batch iterator's pass and the batches taken from it
  int done = 0;             // finished epochs, over all phases
  if (progressive) net.enable_kernel_transforms();
  // OFA's teacher: the full network as the first phase left it, frozen.
  std::optional<SposSupernet> teacher;

  // Continue a saved state.
  std::error_code ec;
  if (!o.state_path.empty() && std::filesystem::exists(o.state_path, ec)) {
    try {
      const nn::TrainingCheckpoint ck = nn::read_checkpoint(o.state_path);
      if (ck.counters.at("options_fingerprint") != static_cast<std::int64_t>(fingerprint))
        throw std::invalid_argument("it was written under other strategy options");
      SupernetTraining kept;
      std::mt19937_64 kept_rng;
      nn::set_rng_state(kept_rng, ck.rng.at("path"));
      const int kept_done = static_cast<int>(ck.counters.at("epochs_done"));
      for (int e = 0; e < kept_done; ++e)
        kept.losses.push_back(bits_double(ck.counters.at("loss/" + std::to_string(e))));
      if (auto r = ck.rng.find("channel_sort_report"); r != ck.rng.end())
        kept.channel_sort = nlohmann::json::parse(r->second);
      std::optional<SposSupernet> kept_teacher;
      if (ck.counters.contains("teacher/supernet_builds")) {
        kept_teacher.emplace(net.clone());
        kept_teacher->load_state(ck, o.state_path, "teacher/");
      }
      const int kept_pass = static_cast<int>(ck.counters.at("batch_pass"));
      const int kept_taken = static_cast<int>(ck.counters.at("batches_taken"));
      net.load_state(ck, o.state_path);  // last: it changes the supernet only when it succeeds
      path_rng = kept_rng;
      done = kept_done;
      pass = kept_pass;
      taken = kept_taken;
      out = std::move(kept);
      out.resumed_after_epoch = done;
      if (kept_teacher) teacher.emplace(std::move(*kept_teacher));
      if (log)
        *log << "spos: supernet resumed from " << o.state_path << " after epoch " << done << "/"
             << total_epochs << std::endl;
    } catch (const std::exception& e) {
      if (log)
        *log << "warning: the supernet state " << o.state_path << " is unusable (" << e.what()
             << "); training the supernet from the start" << std::endl;
    }
  }
  it.start_epoch(pass);
  eval::Batch b;
  for (int k = 0; k < taken; ++k) it.next(b);

  auto save = [&] {
    if (o.state_path.empty() || shard.rank != 0) return;
    nn::TrainingCheckpoint ck;
    net.save_state(ck);
    if (teacher) teacher->save_state(ck, "teacher/");
    ck.rng["path"] = nn::rng_state(path_rng);
    // Not a generator: the checkpoint's only string records, so the sort's report rides there.
    if (!out.channel_sort.is_null()) ck.rng["channel_sort_report"] = out.channel_sort.dump();
    ck.counters["options_fingerprint"] = static_cast<std::int64_t>(fingerprint);
    ck.counters["epochs_done"] = done;
    ck.counters["batch_pass"] = pass;
    ck.counters["batches_taken"] = taken;
    for (std::size_t e = 0; e < out.losses.size(); ++e)
      ck.counters["loss/" + std::to_string(e)] = double_bits(out.losses[e]);
    std::filesystem::create_directories(std::filesystem::path(o.state_path).parent_path(), ec);
    nn::save_checkpoint(ck, o.state_path);
  };

  const auto start = std::chrono::steady_clock::now();
  const int first = done;
  nn::run_isolated([&] {
    int phase_start = 0;  // the first epoch of the phase, over all phases
    for (const auto& phase : phases) {
      nn::CosineSchedule sched;
      sched.base_lr = 1.0f;
      sched.total_steps = static_cast<std::int64_t>(steps) * phase.epochs;
      for (int pe = 0; pe < phase.epochs; ++pe) {
        const int e = phase_start + pe + 1;  // this epoch's number over all phases
        if (e <= done) continue;
        if (progressive && phase.name == "width" && pe == 0) {
          // OFA sorts once, before the width phase opens the narrower widths.
          out.channel_sort = net.sort_channels();
          if (log)
            *log << "spos: channels sorted by L1 norm " << out.channel_sort.dump() << std::endl;
        }
        double sum = 0;
        for (int k = 0; k < steps; ++k) {
          if (!it.next(b)) {
            it.start_epoch(++pass);
            it.next(b);
            taken = 0;
          }
          ++taken;
          SgdSettings s = o.sgd;
          s.lr = o.sgd.lr * sched.factor_at(static_cast<std::int64_t>(pe) * steps + k);
          // One drawn path per step, updated alone (SPOS); progressive: drawn over the phase's
          // elastic dimensions, the others at their largest.
          const spaces::Genome path =
              progressive ? net.sample(path_rng, phase.elastic) : net.sample(path_rng);
          if (o.kd && phase.name != "full" && !teacher) teacher.emplace(net.clone());
          const double l = teacher
                               ? net.train_step(path, b, o.head, s, shard, &*teacher, o.kd_weight)
                               : net.train_step(path, b, o.head, s, shard);
          if (!std::isfinite(l))
            throw std::runtime_error("spos: the supernet's training loss diverged at epoch " +
                                     std::to_string(e) + " (lower strategy.w_lr)");
          sum += l;
        }
        out.losses.push_back(sum / steps);
        done = e;
        save();
        if (log) {
          const double el =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          std::ostringstream line;  // formatted apart: the caller's stream keeps its flags
          line << "spos: supernet epoch " << e << "/" << total_epochs;
          if (progressive) line << " (phase " << phase.name << ")";
          line << " loss " << std::fixed << std::setprecision(4) << out.losses.back()
               << std::setprecision(1) << " (" << el << " s, ETA "
               << el / (e - first) * (total_epochs - e) << " s)";
          *log << line.str() << std::endl;
        }
        if (o.stop_after_epoch == e)
          throw SupernetInterrupted("spos: stopped after epoch " + std::to_string(e) +
                                    " (test hook)");
      }
      phase_start += phase.epochs;
    }
  });
  return out;
}

std::vector<double> train_supernet(SposSupernet& net, const eval::Dataset& train,
                                   const SposOptions& o, std::ostream* log,
                                   const DataShard& shard) {
  return train_supernet_phases(net, train, o, log, shard).losses;
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
  const SupernetTraining trained = train_supernet_phases(net, data.train, to, log, shard);
  const std::vector<double>& losses = trained.losses;
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
                {"ranks", shard.ranks},
                {"schedule", o.schedule}};
  if (o.schedule == "progressive") {
    nlohmann::json phases = nlohmann::json::array();
    for (const auto& p : o.phases()) phases.push_back({{"phase", p.name}, {"epochs", p.epochs}});
    out.report["phases"] = phases;
    out.report["kd"] = o.kd;
    out.report["channel_sort"] = trained.channel_sort;
  }
  if (trained.resumed_after_epoch > 0)
    out.report["supernet_resumed_after_epoch"] = trained.resumed_after_epoch;
  return out;
}

}  // namespace hwnas::oneshot
