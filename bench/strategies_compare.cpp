// Compares every registered strategy on the same budget over a synthetic NAS-Bench-201 table
// (all 15,625 cells; made-up accuracy with edge interactions, pixel3_a75 latency from the
// device model; tests/strategies/nb201_bench.hpp) and prints, per strategy and budget, the
// best accuracy found and the hypervolume as a share of the true front's (mean and standard
// deviation over seeds), with the strategy's own ask+tell CPU per evaluation.  Then it runs
// one full tabular search through the search loop (store, four device models, fronts) and
// prints the coordinator thread's CPU per evaluation.
//
//   build/bench/bench_strategies_compare [seeds=10] [loop_evaluations=1000] [loop_strategy=nsga2]
#include <time.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>

#include "bench/bench_util.hpp"
#include "bench/nb201_tabular.hpp"
#include "db/store.hpp"
#include "search/config.hpp"
#include "search/evaluator_factory.hpp"
#include "search/search_loop.hpp"
#include "strategies/registry.hpp"
#include "tests/strategies/nb201_bench.hpp"

using namespace hwnas;
namespace fs = std::filesystem;

namespace {

struct Stat {
  double mean = 0, sd = 0;
};
Stat stat(const std::vector<double>& v) {
  Stat s;
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / static_cast<double>(v.size() - 1)) : 0;
  return s;
}

nlohmann::json config_of(const std::string& type) {
  nlohmann::json c = {{"type", type}};
  if (type == "regularized_evolution") c.update({{"population", 20}, {"sample_size", 5}});
  if (type == "nsga2") c.update({{"population", 24}});
  return c;
}

// Every registered strategy with its bench settings, plus BANANAS on the scalar fitness (its
// default with two objectives is ParEGO scalarisations, which trades best accuracy for the
// front).
std::vector<std::pair<std::string, nlohmann::json>> entries() {
  std::vector<std::pair<std::string, nlohmann::json>> out;
  for (const auto& [name, e] : strategies::strategy_registry().entries()) {
    if (e.one_shot) continue;  // needs a task with training data (bench_darts_hardware_weight)
    // The synthetic table has one fidelity: a promotion would only re-read the same number.
    // Hyperband is compared with full-fidelity search on real training instead
    // (tests/search/test_multi_fidelity_search.cpp).
    if (name == "successive_halving" || name == "hyperband") continue;
    out.emplace_back(name, config_of(name));
    if (name == "bananas")
      out.emplace_back("bananas(fitness)",
                       nlohmann::json{{"type", "bananas"}, {"objective", "fitness"}});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int seeds = argc > 1 ? std::atoi(argv[1]) : 10;
  const int loop_evals = argc > 2 ? std::atoi(argv[2]) : 1000;
  const std::string loop_strategy = argc > 3 ? argv[3] : "nsga2";
  const auto& b = test::nb201_bench();
  std::printf(
      "synthetic NB201 table: %zu cells, true front hypervolume %.3f (reference: median "
      "accuracy %.3f, worst latency %.3f ms), best accuracy %.3f\n\n",
      b.points.size(), b.true_hypervolume, b.reference[0], b.reference[1], b.max_accuracy);
  std::printf("%-22s %6s %22s %22s %14s\n", "strategy", "budget", "best accuracy (sd)",
              "hypervolume % (sd)", "ask+tell us/ev");
  for (const auto& [name, config] : entries()) {
    for (int budget : {100, 300}) {
      std::vector<double> best, hv, cpu;
      for (int seed = 0; seed < seeds; ++seed) {
        strategies::StrategyContext ctx;
        ctx.seed = static_cast<std::uint64_t>(seed);
        ctx.objectives = {{"val_accuracy", true}, {"latency_ms", false}};
        auto s = strategies::make_strategy(config, test::nb201_space(), ctx);
        std::vector<std::vector<double>> pts;
        double top = -1e300, spent = 0;
        for (int i = 0; i < budget; ++i) {
          double t0 = bench::thread_cpu_seconds();
          strategies::Proposal p = s->ask(1).front();
          spent += bench::thread_cpu_seconds() - t0;
          strategies::Result r = test::nb201_result(p);
          t0 = bench::thread_cpu_seconds();
          s->tell(r);
          spent += bench::thread_cpu_seconds() - t0;
          top = std::max(top, r.objectives[0]);
          pts.push_back(r.objectives);
        }
        best.push_back(top);
        hv.push_back(100 * strategies::hypervolume(pts, b.maximize, b.reference) /
                     b.true_hypervolume);
        cpu.push_back(1e6 * spent / budget);
      }
      const Stat sb = stat(best), sh = stat(hv), sc = stat(cpu);
      std::printf("%-22s %6d %14.3f (%5.3f) %14.2f (%5.2f) %14.0f\n", name.c_str(), budget, sb.mean,
                  sb.sd, sh.mean, sh.sd, sc.mean);
    }
  }

  // The whole loop on a tabular search: coordinator thread CPU per evaluation.
  const fs::path dir =
      fs::temp_directory_path() / ("hwnas_bench_strategies_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const nlohmann::json j =
      bench::nb201_tabular_search("bench", bench::write_nb201_table(dir), config_of(loop_strategy),
                                  loop_evals, dir / "bench.db");
  search::SearchConfig c = search::parse_config(j, "");
  auto executor = search::make_local_executor(search::make_evaluator_factory(c), 2, 2);
  db::Store store(c.db_path);
  std::ostringstream progress;
  const double t0 = bench::thread_cpu_seconds();
  auto s = search::run_search(c, *executor, store, progress);
  const double cpu = bench::thread_cpu_seconds() - t0;
  std::printf(
      "\nsearch loop, tabular NB201, %s, 4 devices, 2 workers: %d evaluations, "
      "coordinator CPU %.3f ms per evaluation (%.2f s wall)\n",
      loop_strategy.c_str(), s.evaluated, 1e3 * cpu / s.evaluated, s.seconds);
  fs::remove_all(dir);
  return 0;
}
