#include "search/search_loop.hpp"

#include <chrono>
#include <cmath>
#include <deque>
#include <iomanip>
#include <limits>
#include <map>
#include <sstream>

#include "hwmodels/device.hpp"
#include "spaces/space.hpp"
#include "strategies/pareto.hpp"
#include "strategies/strategy.hpp"

namespace hwnas::search {

std::atomic<bool> g_stop_requested{false};

namespace {

using Clock = std::chrono::steady_clock;

// Per-proposal training seed: distinct per id, independent of completion order.
std::uint64_t job_seed(std::uint64_t run_seed, std::uint64_t id) {
  std::uint64_t z = run_seed * 0x9E3779B97F4A7C15ull + id + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

db::CostRecord to_record(const std::string& device, const hw::Cost& c) {
  db::CostRecord r;
  r.device = device;
  r.feasible = c.feasible;
  r.infeasible_reason = c.infeasible_reason;
  r.latency_ms = c.latency_ms;
  r.energy_mj = c.energy_mj;
  r.memory_bytes = c.memory_bytes;
  r.detail = c.extra;
  r.activity_source = c.activity_source;
  return r;
}

namespace {

// Value of an objective for one evaluation on one device; NaN if unavailable.
double objective_value(const ObjectiveSpec& o, const nlohmann::json& metrics,
                       const db::CostRecord* cost) {
  if (o.is_cost()) {
    if (!cost) return std::numeric_limits<double>::quiet_NaN();
    if (o.metric == "latency_ms") return cost->latency_ms;
    if (o.metric == "energy_mj") return cost->energy_mj;
    return cost->memory_bytes;
  }
  if (!metrics.contains(o.metric) || !metrics[o.metric].is_number())
    return std::numeric_limits<double>::quiet_NaN();
  return metrics[o.metric].get<double>();
}

std::string fmt_seconds(double s) {
  std::ostringstream os;
  if (s < 120)
    os << std::fixed << std::setprecision(0) << s << "s";
  else
    os << static_cast<int>(s / 60) << "m" << std::setw(2) << std::setfill('0')
       << static_cast<int>(s) % 60 << "s";
  return os.str();
}

}  // namespace

std::string summarize_genome(const nlohmann::json& g) {
  // Short parameter names for the table; anything else prints as name=value.
  static const std::map<std::string, std::string> abbrev = {
      {"channels", "c"}, {"kernel", "k"}, {"stride", "s"}, {"units", "u"},
      {"heads", "h"},    {"window", "w"}, {"outputs", "o"}};
  std::string out;
  if (!g.contains("nodes")) return out;
  for (const auto& n : g["nodes"]) {
    const std::string kind = n.value("kind", "?");
    if (kind == "input" || kind == "head") continue;
    std::string item = kind;
    if (n.contains("params"))
      for (const auto& [k, v] : n["params"].items()) {
        std::string val = v.is_string() ? v.get<std::string>() : v.dump();
        if (k == "bits")
          item += " " + val + "b";
        else if (k == "prune")
          item += " p" + val;
        else if (abbrev.count(k))
          item += " " + abbrev.at(k) + val;
        else
          item += " " + (v.is_string() ? val : k + "=" + val);
      }
    out += (out.empty() ? "" : " | ") + item;
  }
  return out;
}

std::vector<std::int64_t> compute_front(const std::vector<db::EvaluationRecord>& evaluations,
                                        const std::string& device,
                                        const std::vector<ObjectiveSpec>& objectives) {
  std::vector<std::int64_t> ids;
  std::vector<std::vector<double>> points;
  std::vector<bool> maximize;
  for (const auto& o : objectives) maximize.push_back(o.maximize);
  for (const db::EvaluationRecord& e : evaluations) {
    if (e.status != "ok") continue;
    const db::CostRecord* cost = nullptr;
    for (const auto& c : e.costs)
      if (c.device == device) cost = &c;
    if (!cost || !cost->feasible) continue;
    std::vector<double> p;
    bool finite = true;
    for (const auto& o : objectives) {
      double v = objective_value(o, e.metrics, cost);
      finite = finite && std::isfinite(v);
      p.push_back(v);
    }
    if (!finite) continue;
    ids.push_back(e.id);
    points.push_back(std::move(p));
  }
  std::vector<std::int64_t> front;
  if (!points.empty())
    for (std::size_t k : strategies::pareto_front(points, maximize)) front.push_back(ids[k]);
  return front;
}

SearchSummary run_search(const SearchConfig& config, Executor& executor, db::Store& store,
                         std::ostream& progress) {
  auto space = spaces::make_space(config.space);
  auto strategy = strategies::make_strategy(config.strategy, *space);
  std::vector<std::unique_ptr<hw::Device>> devices;
  for (const auto& d : config.devices) devices.push_back(hw::load_device(d));

  SearchSummary summary;
  summary.run_id = store.create_run(config.name, config.resolved, config.seed);
  summary.best_fitness = -std::numeric_limits<double>::infinity();

  spaces::Rng rng(config.seed);
  eval::Fidelity fidelity;
  fidelity.epochs = config.epochs;
  fidelity.train_subset = config.train_subset;
  fidelity.max_seconds = config.candidate_seconds;

  const int slots = executor.slots();
  // Deterministic mode: proposal i sees exactly the results of proposals < i - lag.  A lag of
  // two rounds lets a fast worker take new work while a slow candidate of the previous round
  // is still training; it waits only when a candidate is two full rounds behind.
  const std::uint64_t lag = 2 * static_cast<std::uint64_t>(slots);
  const int budget = config.budget_evaluations;
  const ObjectiveSpec& primary = config.pareto_objectives.front();
  const auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };

  std::map<std::uint64_t, spaces::Genome> proposed;           // in flight or awaiting tell
  std::map<std::uint64_t, strategies::Observation> finished;  // awaiting an in-order tell
  std::uint64_t next_id = 0, told = 0;
  int in_flight = 0, done = 0;
  bool stopping = false;

  auto tell_ready = [&](std::uint64_t upto) {  // tells ids < upto that have finished, in order
    while (told < upto) {
      auto it = finished.find(told);
      if (it == finished.end()) break;
      strategy->tell(it->second);
      finished.erase(it);
      ++told;
    }
  };

  // Stores one finished evaluation with its costs (one transaction), updates the best and the
  // strategy's pending observations, and prints the progress line.
  auto record = [&](const JobResult& jr) {
    ++done;
    const spaces::Genome& genome = proposed.at(jr.id);
    const eval::EvalResult& res = jr.result;

    db::EvaluationRecord rec;
    rec.run_id = summary.run_id;
    rec.arch_id = store.upsert_architecture(
        genome.hash(), nlohmann::json::parse(genome.canonical_json()), space->describe(genome));
    rec.metrics = res.metrics;
    rec.fidelity = fidelity.to_json();
    rec.workload = res.workload.to_json();
    rec.loss_curve = res.loss_curve;
    rec.wall_seconds = res.wall_seconds;
    rec.worker_rank = jr.worker_rank;
    rec.status = res.ok() ? "ok" : "failed";
    rec.error = res.error;
    double fitness = -std::numeric_limits<double>::infinity();
    if (res.ok()) {
      for (const auto& d : devices) {
        try {
          rec.costs.push_back(to_record(d->name(), d->estimate(res.workload)));
        } catch (const std::exception& e) {
          db::CostRecord c;
          c.device = d->name();
          c.feasible = false;
          c.infeasible_reason = std::string("cost model failed: ") + e.what();
          rec.costs.push_back(c);
        }
      }
      double v = objective_value(primary, rec.metrics, nullptr);
      if (std::isfinite(v)) {
        fitness = primary.maximize ? v : -v;
        if (config.fitness_latency_weight > 0) {
          for (const auto& c : rec.costs)
            if (c.device == config.fitness_device)
              fitness -= c.feasible && c.latency_ms > 0
                             ? config.fitness_latency_weight * std::log10(c.latency_ms)
                             : 1e9;  // infeasible on the target device: last place
        }
      }
    } else {
      ++summary.failed;
    }
    for (const auto& c : rec.costs)
      if (!c.feasible) {
        auto& [count, reason] = summary.infeasible[c.device];
        if (count++ == 0) reason = c.infeasible_reason;
      }
    store.add_evaluation(rec);  // one transaction: evaluation + costs

    if (fitness > summary.best_fitness) {
      summary.best_fitness = fitness;
      summary.best_metrics = res.metrics;
    }

    strategies::Observation obs;
    obs.id = jr.id;
    obs.genome = genome;
    obs.fitness = fitness;
    obs.ok = res.ok();
    // Cost objectives are reported on the first device; strategies that need every device's
    // costs read them from the store.
    for (const auto& o : config.pareto_objectives)
      obs.objectives.push_back(
          objective_value(o, rec.metrics, rec.costs.empty() ? nullptr : &rec.costs.front()));
    if (config.deterministic) {
      finished.emplace(jr.id, std::move(obs));
    } else {
      strategy->tell(obs);
      ++told;
    }
    proposed.erase(jr.id);

    double el = elapsed();
    double eta = done > 0 ? el / done * std::max(0, budget - done) : 0;
    progress << "[" << std::setw(static_cast<int>(std::to_string(budget).size())) << done << "/"
             << budget << "] ";
    if (res.ok()) {
      double v = objective_value(primary, rec.metrics, nullptr);
      progress << primary.metric << " " << std::fixed << std::setprecision(4) << v;
    } else {
      progress << "FAILED (" << res.error.substr(0, 80) << ")";
    }
    progress << " | best " << primary.metric << " ";
    if (summary.best_metrics.count(primary.metric))
      progress << std::fixed << std::setprecision(4) << summary.best_metrics[primary.metric];
    else
      progress << "-";
    progress << " | elapsed " << fmt_seconds(el) << " | ETA " << (stopping ? "-" : fmt_seconds(eta))
             << std::endl;
  };

  progress << "search '" << config.name << "' run " << summary.run_id << ": " << budget
           << " candidates, " << executor.describe() << ", devices:";
  for (const auto& d : devices) progress << ' ' << d->name();
  progress << std::endl;

  try {
    while (true) {
      if (!stopping && (g_stop_requested.load() ||
                        (config.budget_seconds > 0 && elapsed() > config.budget_seconds))) {
        stopping = true;
        progress << (g_stop_requested ? "stop requested" : "time budget reached") << ": finishing "
                 << in_flight << " running evaluations" << std::endl;
      }
      // Fill free slots.
      while (!stopping && in_flight < slots && next_id < static_cast<std::uint64_t>(budget)) {
        if (config.deterministic) {
          std::uint64_t need = next_id >= lag ? next_id - lag : 0;
          tell_ready(need);
          if (told < need) break;  // an older result is still out: wait for it
        }
        Job job;
        job.id = next_id++;
        job.genome = strategy->ask(rng);
        job.fidelity = fidelity;
        job.seed = job_seed(config.seed, job.id);
        proposed.emplace(job.id, job.genome);
        executor.submit(std::move(job));
        ++in_flight;
      }
      if (in_flight == 0) break;

      JobResult jr;
      try {
        jr = executor.wait_next();
      } catch (const ExecutorInterrupted& e) {
        progress << e.what() << ": " << in_flight << " running evaluations abandoned" << std::endl;
        stopping = true;
        break;
      }
      --in_flight;
      if (!jr.fatal.empty()) {
        // Store what the other workers still finish, mark the run failed, report the error once.
        while (in_flight > 0) {
          JobResult more = executor.wait_next();
          --in_flight;
          if (more.fatal.empty()) record(more);
        }
        executor.shutdown();
        store.finish_run(summary.run_id, "failed");
        throw eval::SetupError(jr.fatal);
      }
      record(jr);
    }
    if (!g_stop_requested) executor.shutdown();
  } catch (const eval::SetupError&) {
    throw;  // already marked failed above
  } catch (...) {
    // Whatever ended the loop, stored evaluations stay and the run does not look alive.
    try {
      store.finish_run(summary.run_id, "failed");
    } catch (...) {
    }
    throw;
  }

  // Read the run back once (workloads included) and derive every device's front from it.
  const std::vector<db::EvaluationRecord> evaluations = store.evaluations(summary.run_id);
  for (const auto& d : devices) {
    auto front = compute_front(evaluations, d->name(), config.pareto_objectives);
    store.set_pareto(summary.run_id, d->name(), front);
    summary.fronts[d->name()] = front_rows(store, summary.run_id, d->name());
  }
  summary.evaluated = done;
  summary.seconds = elapsed();
  summary.status = stopping && g_stop_requested ? "interrupted" : "finished";
  store.finish_run(summary.run_id, summary.status);
  return summary;
}

std::vector<FrontRow> front_rows(const db::Store& store, std::int64_t run_id,
                                 const std::string& device) {
  std::vector<FrontRow> rows;
  for (auto& p : store.pareto(run_id, device)) {
    FrontRow r{std::move(p), {}};
    if (auto a = store.architecture(r.arch_id)) r.arch_summary = summarize_genome(a->genome);
    rows.push_back(std::move(r));
  }
  return rows;
}

void print_fronts(const SearchSummary& s, const std::vector<ObjectiveSpec>& objectives,
                  std::ostream& out) {
  for (const auto& [device, rows] : s.fronts) {
    out << "\nPareto front on " << device << " (" << rows.size() << " architectures; objectives";
    for (const auto& o : objectives) out << ' ' << o.str();
    out << ")\n";
    if (auto it = s.infeasible.find(device); it != s.infeasible.end())
      out << "  " << it->second.first << " candidates infeasible on " << device << ", e.g. "
          << it->second.second << "\n";
    out << std::left << std::setw(7) << "eval" << std::setw(18) << "arch" << std::right;
    for (const auto& o : objectives) out << std::setw(15) << o.metric;
    out << "  description\n";
    for (const auto& r : rows) {
      out << std::left << std::setw(7) << r.evaluation_id << std::setw(18) << r.arch_hash
          << std::right;
      for (const auto& o : objectives) {
        double v = objective_value(o, r.metrics, &r.cost);
        out << std::setw(15) << std::setprecision(o.metric == "memory_bytes" ? 0 : 4) << std::fixed
            << v;
      }
      std::string desc = r.arch_summary.empty() ? r.arch_description : r.arch_summary;
      if (desc.size() > 90) desc = desc.substr(0, 87) + "...";
      out << "  " << desc << "\n";
    }
  }
}

}  // namespace hwnas::search
