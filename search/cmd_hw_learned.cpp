#include "search/cmd_hw_learned.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "hwmodels/csv.hpp"
#include "hwmodels/learned_predictor.hpp"
#include "nn/state_file.hpp"
#include "search/cli_checks.hpp"
#include "search/cmd_hw.hpp"
#include "spaces/genome.hpp"
#include "spaces/node_timing.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"

namespace hwnas::search {

namespace fs = std::filesystem;

namespace {

std::string quote(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string number(double v) {
  std::ostringstream o;
  o.precision(9);
  o << v;
  return o.str();
}

}  // namespace

std::string per_node_csv_path(const std::string& network_csv) {
  fs::path p(network_csv);
  const std::string stem = p.extension() == ".csv" ? p.stem().string() : p.filename().string();
  return (p.parent_path() / (stem + ".nodes.csv")).string();
}

void measure_per_node(const PerNodeMeasureArgs& a) {
  auto space = spaces::load_space(a.space);
  const fs::path gdir = fs::path(a.out).string() + ".genomes";
  const fs::path gdir_from_csv = fs::path(a.out).filename().string() + ".genomes";
  fs::create_directories(gdir);
  std::ostringstream net, nodes;
  net << "architecture,latency_ms,sum_nodes_ms,unlisted_ms\n";
  nodes << "architecture,node,name,kind,category";
  for (const auto& f : hw::learned::feature_names()) nodes << "," << f;
  nodes << ",measured_ms\n";
  spaces::Rng rng(a.seed);
  std::vector<spaces::Genome> gs;
  for (int i = 0; i < a.n; ++i) gs.push_back(space->sample(rng));
  const std::vector<spaces::NodeTimes> all =
      spaces::time_nodes_interleaved(gs, a.batch, a.rounds, a.warmup, a.reps, a.seed, a.min_ms);
  double ratio_sum = 0;
  for (int i = 0; i < a.n; ++i) {
    const spaces::Genome& g = gs[static_cast<std::size_t>(i)];
    const hw::Workload wl = spaces::build_workload(g);
    const spaces::NodeTimes& t = all[static_cast<std::size_t>(i)];
    const fs::path gp = gdir / (g.hash() + ".json");
    nn::write_file_atomically(gp.string(), g.to_json().dump() + "\n");
    const std::string arch = quote((gdir_from_csv / (g.hash() + ".json")).string());
    net << arch << "," << number(t.network_ms) << "," << number(t.sum_node_ms()) << ","
        << number(t.unlisted_ms) << "\n";
    for (std::size_t k = 0; k < wl.nodes.size(); ++k) {
      const auto& n = wl.nodes[k];
      nodes << arch << "," << k << "," << quote(n.name) << "," << quote(n.kernel_type_or_kind())
            << "," << hw::op_category_name(n.category);
      for (double f : hw::learned::node_features(n, a.batch, true)) nodes << "," << number(f);
      nodes << "," << number(t.node_ms[k]) << "\n";
    }
    ratio_sum += t.sum_node_ms() / t.network_ms;
    std::fprintf(stderr, "[%d/%d] %s %.3f ms (nodes sum %.3f ms, outside the workload %.3f ms)\n",
                 i + 1, a.n, g.hash().c_str(), t.network_ms, t.sum_node_ms(), t.unlisted_ms);
  }
  // The per-node file first: the network CSV names it implicitly and is the one a reader opens.
  nn::write_file_atomically(per_node_csv_path(a.out), nodes.str());
  nn::write_file_atomically(a.out, net.str());
  std::printf(
      "wrote %d measurements to %s and their nodes to %s (genomes in %s); mean sum of node "
      "times / network time %.3f\n",
      a.n, a.out.c_str(), per_node_csv_path(a.out).c_str(), gdir.string().c_str(), ratio_sum / a.n);
}

std::vector<MeasuredNetwork> read_per_node_measurements(const std::string& network_csv) {
  const auto rows = hw::read_measurements_csv(network_csv);
  const std::string node_csv = per_node_csv_path(network_csv);
  std::ifstream in(node_csv);
  if (!in)
    throw std::invalid_argument("cannot open per-node measurements '" + node_csv + "' (next to '" +
                                network_csv + "'): write both with `hwnas hw measure --per-node`");
  std::string line;
  int lineno = 1;
  if (!std::getline(in, line))
    throw std::invalid_argument(node_csv + ":1: empty file: measure again with --per-node");
  const auto header = hw::split_csv_line(line);
  int ia = -1, in_ = -1, iname = -1, ims = -1;
  for (std::size_t i = 0; i < header.size(); ++i) {
    if (header[i] == "architecture") ia = static_cast<int>(i);
    if (header[i] == "node") in_ = static_cast<int>(i);
    if (header[i] == "name") iname = static_cast<int>(i);
    if (header[i] == "measured_ms") ims = static_cast<int>(i);
  }
  if (ia < 0 || in_ < 0 || iname < 0 || ims < 0)
    throw std::invalid_argument(node_csv +
                                ":1: header must name columns 'architecture', 'node', 'name' "
                                "and 'measured_ms' (as `hwnas hw measure --per-node` writes)");
  // architecture -> node index -> (name, ms)
  std::map<std::string, std::map<int, std::pair<std::string, double>>> times;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto f = hw::split_csv_line(line);
    const std::string where = node_csv + ":" + std::to_string(lineno) + ": ";
    if (f.size() != header.size())
      throw std::invalid_argument(where + "expected " + std::to_string(header.size()) +
                                  " columns, got " + std::to_string(f.size()));
    try {
      std::size_t pos = 0;
      const double ms = std::stod(f[static_cast<std::size_t>(ims)], &pos);
      if (!(ms >= 0)) throw std::invalid_argument("");
      times[f[static_cast<std::size_t>(ia)]][std::stoi(f[static_cast<std::size_t>(in_)])] = {
          f[static_cast<std::size_t>(iname)], ms};
    } catch (const std::exception&) {
      throw std::invalid_argument(where +
                                  "columns 'node' and 'measured_ms' must be a node index and a "
                                  "non-negative time in ms");
    }
  }
  const fs::path dir = fs::path(network_csv).parent_path();
  std::vector<MeasuredNetwork> out;
  for (const auto& r : rows) {
    const std::string where = network_csv + ":" + std::to_string(r.line) + ": ";
    MeasuredNetwork m;
    m.architecture = r.architecture;
    m.network_ms = r.latency_ms;
    const fs::path gp =
        fs::path(r.architecture).is_absolute() ? fs::path(r.architecture) : dir / r.architecture;
    try {
      m.workload = resolve_architecture_workload(gp.string());
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(where + e.what());
    }
    auto it = times.find(r.architecture);
    if (it == times.end() || it->second.size() != m.workload.nodes.size())
      throw std::invalid_argument(
          where + "architecture has " + std::to_string(m.workload.nodes.size()) +
          " workload nodes but " + node_csv + " lists " +
          std::to_string(it == times.end() ? 0 : it->second.size()) +
          " for it: measure again with `hwnas hw measure --per-node` (same hwnas version)");
    for (std::size_t k = 0; k < m.workload.nodes.size(); ++k) {
      auto nt = it->second.find(static_cast<int>(k));
      if (nt == it->second.end() || nt->second.first != m.workload.nodes[k].name)
        throw std::invalid_argument(where + "node " + std::to_string(k) + " is '" +
                                    m.workload.nodes[k].name + "' in the workload but '" +
                                    (nt == it->second.end() ? "" : nt->second.first) + "' in " +
                                    node_csv + ": measure again with the same hwnas version");
      m.node_ms.push_back(nt->second.second);
    }
    out.push_back(std::move(m));
  }
  return out;
}

void add_hw_fit_command(CLI::App& hw_cmd) {
  struct FitArgs {
    std::vector<std::string> csvs;
    std::string out, name;
    double holdout = 0.25, power_w = 0;
    int batch = 1;
    LearnedFitOptions opt;
  };
  auto a = std::make_shared<FitArgs>();
  auto* fit = hw_cmd.add_subcommand(
      "fit", "Fit a learned latency device to per-node measurements (hw measure --per-node)");
  fit->add_option("--measurements,-m", a->csvs,
                  "network CSV(s) written by `hw measure --per-node` (each with its .nodes.csv)")
      ->required();
  fit->add_option("--out,-o", a->out, "device JSON to write (its model goes next to it)")
      ->required();
  fit->add_option("--name", a->name, "device name (default: the --out file's stem)");
  fit->add_option("--holdout", a->holdout, "share of architectures held out for the report")
      ->check(CLI::Range(0.0, 0.9));
  fit->add_option("--seed", a->opt.seed, "seed of the held-out split and the MLPs")
      ->check(seed_range());
  fit->add_option("--batch", a->batch, "batch the measurements were taken at")
      ->check(CLI::Range(1, 65536));
  fit->add_option("--power-w", a->power_w, "power while running, W (energy = power x latency)")
      ->check(CLI::Range(0.0, 1e6));
  fit->add_option("--min-nodes", a->opt.min_nodes,
                  "training nodes a kernel type needs for its own regressor")
      ->check(CLI::Range(2, 1000000));
  fit->add_option("--trees", a->opt.gbdt.trees, "boosted trees per regressor")
      ->check(CLI::Range(1, 100000));
  fit->add_option("--depth", a->opt.gbdt.depth, "depth of each tree")->check(CLI::Range(1, 20));
  fit->callback([a] {
    std::vector<MeasuredNetwork> nets;
    for (const auto& c : a->csvs)
      for (auto& m : read_per_node_measurements(c)) nets.push_back(std::move(m));
    a->opt.batch = a->batch;
    const LearnedFitReport rep = fit_learned_with_holdout(nets, a->holdout, a->opt);
    auto line = [](const char* what, const hw::FitQuality& q) {
      std::printf(
          "  %-9s rows %4zu  spearman %.3f  kendall %.3f  within 10%% %5.1f%%  MAPE %6.1f%%\n",
          what, q.rows, q.spearman, q.kendall, 100 * q.within10, 100 * q.mape);
    };
    std::printf("fitted a learned latency model on %zu architectures (%zu held out, seed %llu)\n",
                rep.train_rows.size(), rep.heldout_rows.size(),
                static_cast<unsigned long long>(a->opt.seed));
    line("train", rep.train_quality);
    if (!rep.heldout_rows.empty()) line("held-out", rep.heldout_quality);
    std::printf("  network latency = %.4f x sum of nodes + %.4f ms + %.5f ms per node\n",
                rep.model.net_scale, rep.model.net_offset_ms, rep.model.net_per_node_ms);
    auto show = [](const std::string& level, const std::string& k,
                   const hw::learned::KernelModel& m) {
      std::printf("  %-8s %-22s nodes %6d  chose %-4s (held-out |log err| gbdt %.3f, mlp %.3f)\n",
                  level.c_str(), k.c_str(), m.train_nodes, m.chosen.c_str(), m.heldout_gbdt,
                  m.heldout_mlp);
    };
    for (const auto& [k, m] : rep.model.by_kind) show("kind", k, m);
    for (const auto& [k, m] : rep.model.by_category) show("category", k, m);
    show("global", "*", rep.model.global);

    const fs::path out(a->out);
    const std::string stem =
        out.extension() == ".json" ? out.stem().string() : out.filename().string();
    const fs::path model_path = out.parent_path() / (stem + ".model.json");
    nlohmann::json dev = {{"name", a->name.empty() ? stem : a->name},
                          {"family", "learned"},
                          {"description",
                           "learned kernel-level latency model fitted by `hwnas "
                           "hw fit` to host per-node measurements"},
                          {"model", model_path.filename().string()},
                          {"fusion", a->opt.fusion},
                          {"batch", a->batch}};
    if (a->power_w > 0) dev["power_w"] = a->power_w;
    // The model first, so that a device file never names a model that is not there.
    nn::write_file_atomically(model_path.string(), hw::learned::model_file_text(rep.model));
    nn::write_file_atomically(a->out, dev.dump(2) + "\n");
    std::printf("  wrote %s and %s\n", a->out.c_str(), model_path.string().c_str());
  });
}

}  // namespace hwnas::search
