// Host fidelity: how well do the hardware models predict latency measured on this machine?
//
// Samples architectures from the cnn, nb201 and attention example spaces, times every one on
// the host (per node and whole network: warm-up, median of reps, pinned thread, one thread),
// fits with at most 200 of them and reports on the rest, for
//   (a) analytic: an edge_cpu description of this host (eager fusion: our engine runs every
//       block as its own kernels) calibrated with hw::calibrate on the training rows, and
//   (b) learned: the kernel-level learned predictor (search/learned_fit.hpp),
// each as Spearman rho, Kendall tau, share within +-10% and MAPE.  The held-out set is then
// measured a second time: measurement against measurement is the ceiling any model can reach
// on a machine that other work shares (the load average is printed).
//
//   bench_host_fidelity            small mode (~1-2 min): 60 architectures per space, 3 rounds
//   bench_host_fidelity --full     150 per space (450; 200 fit, 250 held out), 5 rounds
//   [--reps R] [--rounds K] [--per-space N] [--seed S] [--median: median over rounds, not min]
//   [--save FILE]  write the genomes and every timing (both passes) as JSON
//   [--load FILE]  reuse a saved run instead of measuring: refits and reports in seconds, so a
//                  change to the features or the fitting is judged on the same measurements
//   [--splits N]   also refit the learned model on N seeded train / held-out splits (seeds
//                  S..S+N-1) and print the mean and range of its held-out scores: one split of
//                  250 architectures moves the share within +-10 % by several points
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "hwmodels/calibration.hpp"
#include "hwmodels/device.hpp"
#include "nn/parallel.hpp"
#include "nn/state_file.hpp"
#include "search/learned_fit.hpp"
#include "spaces/node_timing.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"

using namespace hwnas;

namespace {

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// This host as an analytic edge CPU, before calibration: one AVX2 core (2 FMA pipes x 8 fp32
// lanes x 2 = 32 FLOP/cycle), the clock from /proc/cpuinfo, a typical per-core DRAM bandwidth;
// calibration fits the efficiencies and overheads from the training rows.
nlohmann::json host_edge_cpu() {
  double mhz = 2500;
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("cpu MHz", 0) == 0) {
      mhz = std::atof(line.substr(line.find(':') + 1).c_str());
      break;
    }
  return {{"name", "host_analytic"},
          {"family", "edge_cpu"},
          {"fusion", "eager"},
          {"cores", 1},
          {"freq_hz", mhz * 1e6},
          {"flops_per_cycle", {{"fp32", 32}}},
          {"mem_bw", 1.5e10},
          {"efficiency", {{"default", 0.3}}},
          {"op_overhead_s", 2e-6},
          {"memory_bytes", 2.4e10},
          {"energy", {{"process_nm", 7}, {"vdd", 1.0}, {"dram_pj_per_byte", 100}}}};
}

bool g_min_over_rounds = true;  // --median: the median over rounds instead

void print_row(const char* what, const hw::FitQuality& q) {
  std::printf("| %-34s | %4zu | %6.3f | %6.3f | %6.1f%% | %6.1f%% |\n", what, q.rows, q.spearman,
              q.kendall, 100 * q.within10, 100 * q.mape);
}

}  // namespace

int main(int argc, char** argv) {
  int per_space = 60, reps = 9, warmup = 3, rounds = 3;
  double min_ms = 2;
  std::uint64_t seed = 1;
  std::string save_path, load_path;
  int splits = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--full") {
      per_space = 150;
      rounds = 5;
      min_ms = 5;
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (a == "--median") {
      g_min_over_rounds = false;
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else if (a == "--per-space" && i + 1 < argc) {
      per_space = std::atoi(argv[++i]);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--save" && i + 1 < argc) {
      save_path = argv[++i];
    } else if (a == "--load" && i + 1 < argc) {
      load_path = argv[++i];
    } else if (a == "--splits" && i + 1 < argc) {
      splits = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(
          stderr,
          "usage: %s [--full] [--per-space N] [--reps R] [--rounds K] [--median] [--seed S] "
          "[--save FILE | --load FILE] [--splits N]\n",
          argv[0]);
      return 2;
    }
  }
  // One thread: the timings are of one core, as the analytic model describes, and do not depend
  // on how busy the other core is with other work.
  nn::ThreadBudget one_thread(1);
  const std::string dir = std::string(HWNAS_BENCH_SOURCE_DIR) + "/examples/spaces/";
  const std::vector<std::string> spaces_used = {"cnn", "nb201", "attention"};
  std::printf(
      "host fidelity: %d architectures per space (%zu spaces), %d interleaved rounds of warm-up "
      "%d + median of >= %d runs lasting >= %g ms, %s over rounds, seed %llu; load average "
      "before: %s\n",
      per_space, spaces_used.size(), rounds, warmup, reps, min_ms,
      g_min_over_rounds ? "min" : "median", static_cast<unsigned long long>(seed),
      load_average().c_str());

  std::vector<search::MeasuredNetwork> nets;
  std::vector<spaces::Genome> genomes;
  std::vector<std::string> space_of;
  std::vector<spaces::NodeTimes> times;
  nlohmann::json saved;  // --load: the saved run
  if (!load_path.empty()) {
    std::ifstream in(load_path);
    if (!in) {
      std::fprintf(stderr, "cannot open '%s' (write it with --save)\n", load_path.c_str());
      return 2;
    }
    saved = nlohmann::json::parse(in);
    for (const auto& r : saved.at("runs")) {
      genomes.push_back(spaces::Genome::from_json(r.at("genome")));
      space_of.push_back(r.at("space").get<std::string>());
      spaces::NodeTimes t;
      t.node_ms = r.at("node_ms").get<std::vector<double>>();
      t.network_ms = r.at("network_ms").get<double>();
      t.unlisted_ms = r.at("unlisted_ms").get<double>();
      times.push_back(std::move(t));
    }
    std::printf("loaded %zu measured architectures from %s (measured with seed %llu)\n",
                genomes.size(), load_path.c_str(),
                static_cast<unsigned long long>(saved.at("seed").get<std::uint64_t>()));
  } else {
    for (const auto& name : spaces_used) {
      auto space = spaces::load_space(dir + name + ".json");
      spaces::Rng rng(seed);
      for (int i = 0; i < per_space; ++i) {
        genomes.push_back(space->sample(rng));
        space_of.push_back(name);
      }
    }
    times = spaces::time_nodes_interleaved(genomes, 1, rounds, warmup, reps, seed, min_ms,
                                           g_min_over_rounds);
  }
  double ratio = 0;
  for (std::size_t i = 0; i < genomes.size(); ++i) {
    search::MeasuredNetwork m;
    m.architecture = space_of[i] + ":" + genomes[i].hash();
    m.workload = spaces::build_workload(genomes[i]);
    m.network_ms = times[i].network_ms;
    m.node_ms = times[i].node_ms;
    ratio += times[i].sum_node_ms() / times[i].network_ms;
    nets.push_back(std::move(m));
  }
  std::printf("mean (sum of node times) / (network time): %.3f over %zu architectures\n",
              ratio / nets.size(), nets.size());

  // At most 200 to fit (the budget), at least a third held out; a seeded split.
  const std::size_t n_train = std::min<std::size_t>(200, nets.size() * 2 / 3);
  auto split = [&](std::uint64_t s, std::vector<search::MeasuredNetwork>& train,
                   std::vector<std::size_t>& held) {
    const auto perm = search::seeded_permutation(nets.size(), s);
    for (std::size_t i = 0; i < perm.size(); ++i) {
      if (i < n_train)
        train.push_back(nets[perm[i]]);
      else
        held.push_back(perm[i]);
    }
    std::sort(held.begin(), held.end());
  };
  std::vector<search::MeasuredNetwork> train;
  std::vector<std::size_t> held;
  split(seed, train, held);

  // (a) analytic, calibrated on the training rows.
  std::vector<hw::Measurement> rows;
  for (const auto& m : train) rows.push_back({m.architecture, m.workload, m.network_ms, {}});
  hw::CalibrationOptions copt;
  copt.holdout_fraction = 0;
  copt.seed = seed;
  const hw::CalibrationResult cal = hw::calibrate(host_edge_cpu(), rows, copt);
  auto base = hw::make_device(host_edge_cpu());
  auto tuned = hw::make_device(cal.tuned);
  // (b) learned.
  search::LearnedFitOptions lopt;
  lopt.seed = seed;
  const hw::learned::LearnedModel model = search::fit_learned_model(train, lopt);

  std::vector<double> y, p_base, p_cal, p_learned;
  for (auto i : held) {
    y.push_back(nets[i].network_ms);
    p_base.push_back(base->estimate_total(nets[i].workload).latency_ms);
    p_cal.push_back(tuned->estimate_total(nets[i].workload).latency_ms);
    p_learned.push_back(model.network_ms(nets[i].workload, 1, true));
  }
  // The ceiling: the held-out set measured again (kept in a saved run, keyed by network index).
  std::vector<double> again;
  if (!load_path.empty()) {
    const auto& a = saved.at("again");
    for (auto i : held)
      if (a.contains(std::to_string(i))) again.push_back(a.at(std::to_string(i)).get<double>());
    if (again.size() != held.size()) again.clear();  // another split: no ceiling row
  } else {
    std::vector<spaces::Genome> held_genomes;
    for (auto i : held) held_genomes.push_back(genomes[i]);
    for (const auto& t : spaces::time_nodes_interleaved(held_genomes, 1, rounds, warmup, reps,
                                                        seed + 7, min_ms, g_min_over_rounds))
      again.push_back(t.network_ms);
  }
  if (!save_path.empty()) {
    nlohmann::json runs = nlohmann::json::array(), a = nlohmann::json::object();
    for (std::size_t i = 0; i < genomes.size(); ++i)
      runs.push_back({{"space", space_of[i]},
                      {"genome", genomes[i].to_json()},
                      {"network_ms", times[i].network_ms},
                      {"unlisted_ms", times[i].unlisted_ms},
                      {"node_ms", times[i].node_ms}});
    for (std::size_t k = 0; k < again.size(); ++k) a[std::to_string(held[k])] = again[k];
    nn::write_file_atomically(save_path,
                              nlohmann::json{{"seed", seed}, {"runs", runs}, {"again", a}}.dump());
    std::printf("saved the measurements to %s\n", save_path.c_str());
  }
  std::printf("\nfitted on %zu architectures, held out %zu; load average after: %s\n", train.size(),
              held.size(), load_average().c_str());
  std::printf("| %-34s | rows | rho    | tau    | +-10%%   | MAPE    |\n", "held-out latency");
  std::printf("|%s|------|--------|--------|---------|---------|\n", std::string(36, '-').c_str());
  print_row("analytic edge_cpu, uncalibrated", hw::fit_quality(p_base, y));
  print_row("analytic edge_cpu, calibrated", hw::fit_quality(p_cal, y));
  print_row("learned (GBDT / MLP per kernel)", hw::fit_quality(p_learned, y));
  if (!again.empty()) print_row("host re-measured (the ceiling)", hw::fit_quality(again, y));
  // Our engine runs dead nodes (NB201 cells cut by none) that no model charges ("cost what
  // runs"); against the time of the live part only, that error is gone.
  std::vector<double> y_live;
  for (auto i : held) y_live.push_back(times[i].network_ms - times[i].unlisted_ms);
  print_row("learned vs live part (no dead ops)", hw::fit_quality(p_learned, y_live));
  for (const auto& name : spaces_used) {
    std::vector<double> ys, ps, cs, as;
    for (std::size_t k = 0; k < held.size(); ++k)
      if (space_of[held[k]] == name) {
        ys.push_back(y[k]);
        ps.push_back(p_learned[k]);
        cs.push_back(p_cal[k]);
        if (!again.empty()) as.push_back(again[k]);
      }
    print_row(("  " + name + ": learned").c_str(), hw::fit_quality(ps, ys));
    print_row(("  " + name + ": analytic calibrated").c_str(), hw::fit_quality(cs, ys));
    if (!again.empty()) print_row(("  " + name + ": re-measured").c_str(), hw::fit_quality(as, ys));
  }
  // Where the learned model's error comes from: per kernel type over the held-out networks, the
  // measured node time (its share of all), the prediction's total against it, and the mean
  // |log error| per node.  A kind with a large share and a biased total moves whole networks.
  {
    struct Acc {
      double measured = 0, predicted = 0, abs_log = 0;
      int nodes = 0;
    };
    std::map<std::string, std::map<std::string, Acc>> by_space;
    for (auto i : held)
      for (std::size_t k = 0; k < nets[i].workload.nodes.size(); ++k) {
        const auto& n = nets[i].workload.nodes[k];
        const double meas = std::max(1e-4, nets[i].node_ms[k]);
        const double pred = model.net_scale * model.node_ms(n, 1, true);
        Acc& a = by_space[space_of[i]][n.kernel_type_or_kind()];
        a.measured += meas;
        a.predicted += pred;
        a.abs_log += std::abs(std::log(pred / meas));
        ++a.nodes;
      }
    std::printf(
        "\nlearned, held-out nodes by kind: share of measured node time, predicted / "
        "measured total, mean |log err| per node\n");
    for (const auto& [space, kinds] : by_space) {
      double total = 0;
      for (const auto& [k, a] : kinds) total += a.measured;
      for (const auto& [k, a] : kinds)
        std::printf("  %-10s %-18s %5d nodes  %5.1f%%  %6.3f  %6.3f\n", space.c_str(), k.c_str(),
                    a.nodes, 100 * a.measured / total, a.predicted / a.measured,
                    a.abs_log / a.nodes);
    }
  }
  std::printf(
      "\nlearned: network = %.4f x sum of nodes + %.4f ms + %.5f ms per node; regressors "
      "chosen:\n",
      model.net_scale, model.net_offset_ms, model.net_per_node_ms);
  for (const auto& [k, m] : model.by_kind)
    std::printf("  kind %-18s %-4s (held-out |log err| gbdt %.3f, mlp %.3f, %d nodes)\n", k.c_str(),
                m.chosen.c_str(), m.heldout_gbdt, m.heldout_mlp, m.train_nodes);
  for (const auto& [k, m] : model.by_category)
    std::printf("  category %-14s %-4s (held-out |log err| gbdt %.3f, mlp %.3f, %d nodes)\n",
                k.c_str(), m.chosen.c_str(), m.heldout_gbdt, m.heldout_mlp, m.train_nodes);
  std::printf("  global %-16s %-4s (held-out |log err| gbdt %.3f, mlp %.3f, %d nodes)\n", "",
              model.global.chosen.c_str(), model.global.heldout_gbdt, model.global.heldout_mlp,
              model.global.train_nodes);
  if (splits > 1) {
    // Each split: its own seeded permutation and fit seed; scores per space and overall.  The
    // first split is the one above (same seed, same training rows): its model is reused.
    std::map<std::string, std::vector<double>> within, rho;
    for (int k = 0; k < splits; ++k) {
      const std::uint64_t s = seed + static_cast<std::uint64_t>(k);
      std::vector<search::MeasuredNetwork> tr;
      std::vector<std::size_t> ho;
      split(s, tr, ho);
      search::LearnedFitOptions o = lopt;
      o.seed = s;
      const hw::learned::LearnedModel mk = k == 0 ? model : search::fit_learned_model(tr, o);
      std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> by;  // p, y
      for (auto i : ho)
        for (const std::string& key : {std::string("all"), space_of[i]}) {
          by[key].first.push_back(mk.network_ms(nets[i].workload, 1, true));
          by[key].second.push_back(nets[i].network_ms);
        }
      for (const auto& [key, py] : by) {
        const hw::FitQuality q = hw::fit_quality(py.first, py.second);
        within[key].push_back(q.within10);
        rho[key].push_back(q.spearman);
      }
    }
    std::printf(
        "\nlearned over %d seeded splits (seeds %llu..%llu): held-out share within +-10 %% "
        "and Spearman rho, mean [min, max]\n",
        splits, static_cast<unsigned long long>(seed),
        static_cast<unsigned long long>(seed + splits - 1));
    for (const auto& [key, w] : within) {
      const auto& r = rho.at(key);
      auto mean = [](const std::vector<double>& v) {
        double t = 0;
        for (double x : v) t += x;
        return t / static_cast<double>(v.size());
      };
      std::printf("  %-10s within +-10%% %5.1f%% [%5.1f, %5.1f]   rho %.3f [%.3f, %.3f]\n",
                  key.c_str(), 100 * mean(w), 100 * *std::min_element(w.begin(), w.end()),
                  100 * *std::max_element(w.begin(), w.end()), mean(r),
                  *std::min_element(r.begin(), r.end()), *std::max_element(r.begin(), r.end()));
    }
  }
  return 0;
}
