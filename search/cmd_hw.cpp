#include "search/cmd_hw.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>

#include "common/json_file.hpp"
#include "hwmodels/calibration.hpp"
#include "hwmodels/device.hpp"
#include "hwmodels/host_timer.hpp"
#include "nn/autograd.hpp"
#include "nn/state_file.hpp"
#include "search/batch_predict.hpp"
#include "search/cli_checks.hpp"
#include "search/cmd_hw_learned.hpp"
#include "spaces/genome.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"

namespace hwnas::search {

namespace fs = std::filesystem;

namespace {

nlohmann::json read_json(const std::string& path, const char* what) {
  try {
    return read_json_file(path);
  } catch (const JsonFileError& e) {
    throw std::invalid_argument(std::string(what) + ": " + e.what());
  }
}

bool is_workload_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("nodes") || !j["nodes"].is_array()) return false;
  for (const auto& n : j["nodes"])
    if (n.is_object() && n.contains("category")) return true;
  return j["nodes"].empty() && !j.contains("input");
}

std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

void print_predict_table(const hw::Device& dev, const hw::Workload& w, const hw::Cost& c) {
  std::printf("device %s (%s)\n", dev.name().c_str(), dev.family().c_str());
  std::printf("%-28s %-14s %12s %12s  %s\n", "node", "category", "time_us", "energy_uj", "bound");
  for (std::size_t i = 0; i < c.nodes.size(); ++i) {
    const auto& n = c.nodes[i];
    const char* cat = i < w.nodes.size() ? hw::op_category_name(w.nodes[i].category) : "";
    std::printf("%-28s %-14s %12.3f %12.3f  %s\n", n.name.c_str(), cat, n.latency_s * 1e6,
                n.energy_j * 1e6, n.bound.c_str());
  }
  std::printf("total (batch %d): latency %.4f ms, energy %.4f mJ, memory %s, %s\n", c.batch,
              c.latency_ms, c.energy_mj, hw::format_bytes(c.memory_bytes).c_str(),
              c.feasible ? "feasible" : ("INFEASIBLE: " + c.infeasible_reason).c_str());
  if (c.fallback_nodes > 0) std::printf("FALLBACK: %s\n", c.fallback.c_str());
  if (const auto it = c.extra.find("non_native_precision"); it != c.extra.end())
    for (const auto& [node, what] : it->items())
      std::printf("PRECISION: %s %s\n", node.c_str(), what.get<std::string>().c_str());
  if (!c.extra.empty()) std::printf("extra: %s\n", c.extra.dump().c_str());
}

}  // namespace

namespace {
// `hw calibrate --reference`: the reference device's figures on n architectures sampled from the
// space (seeded).  A cost the reference cannot give is left out, with a note.
std::vector<hw::Measurement> reference_measurements(const std::string& device,
                                                    const std::string& space_file, int n,
                                                    std::uint64_t seed) {
  auto ref = hw::load_device(device);
  auto space = spaces::load_space(space_file);
  spaces::Rng rng(seed);
  std::vector<std::string> names;
  std::vector<hw::Workload> ws;
  for (int i = 0; i < n; ++i) {
    const spaces::Genome g = space->sample(rng);
    names.push_back(space->describe(g));
    ws.push_back(spaces::build_workload_with_genome(g));
  }
  // All at once: an external reference may take them batched.
  const std::vector<hw::Cost> costs = ref->estimate_many(ws);
  std::vector<hw::Measurement> rows;
  for (int i = 0; i < n; ++i) {
    const hw::Cost& c = costs[i];
    if (!c.feasible || !(c.latency_ms > 0)) {
      std::fprintf(stderr, "[%d/%d] %s: left out (%s)\n", i + 1, n, names[i].c_str(),
                   c.infeasible_reason.empty() ? "no latency" : c.infeasible_reason.c_str());
      continue;
    }
    hw::Measurement m;
    m.architecture = names[i];
    m.workload = std::move(ws[i]);
    m.latency_ms = c.latency_ms;
    if (c.energy_mj > 0) m.energy_mj = c.energy_mj;
    std::fprintf(stderr, "[%d/%d] %.4f ms on %s: %s\n", i + 1, n, c.latency_ms, ref->name().c_str(),
                 names[i].c_str());
    rows.push_back(std::move(m));
  }
  if (rows.size() < 2)
    throw std::invalid_argument("--reference: '" + ref->name() + "' gave fewer than 2 usable " +
                                "latencies; nothing to fit");
  return rows;
}
}  // namespace

hw::Workload resolve_architecture_workload(const std::string& arch) {
  if (arch.empty()) throw std::invalid_argument("empty architecture");
  // "SPACE_FILE:ARCH_STRING" (the space file must exist, so "C:\..."-like strings are not split).
  if (auto colon = arch.find(':'); colon != std::string::npos && arch[0] != '|') {
    const std::string space_file = arch.substr(0, colon);
    if (fs::is_regular_file(space_file)) {
      auto space = spaces::load_space(space_file);
      return spaces::build_workload_with_genome(space->parse(arch.substr(colon + 1)));
    }
  }
  if (fs::is_regular_file(arch)) {
    nlohmann::json j = read_json(arch, "architecture file");
    if (is_workload_json(j)) return hw::Workload::from_json(j);
    return spaces::build_workload_with_genome(spaces::Genome::from_json(j));
  }
  if (arch[0] == '|') {  // NB201's own string form
    static const auto nb201 = spaces::make_space(nlohmann::json{{"type", "nb201"}});
    return spaces::build_workload_with_genome(nb201->parse(arch));
  }
  throw std::invalid_argument("architecture '" + arch +
                              "' is neither a file (genome or workload JSON), an NB201 string "
                              "(|op~0|+|...|) nor SPACE_FILE:ARCH_STRING");
}

namespace {

// A file named in a measurements CSV (a genome or workload JSON, or the SPACE_FILE of
// SPACE_FILE:ARCH) is relative to the CSV's folder, so the CSV and its genomes can be moved
// together and calibrated from any working directory.  `hw measure` before this wrote paths
// relative to the working directory it ran in; a name that is no file next to the CSV is
// therefore still tried as given.
std::string relative_to_csv(const fs::path& csv_dir, const std::string& arch) {
  auto rebased = [&](const std::string& p) {
    if (p.empty() || fs::path(p).is_absolute()) return p;
    const fs::path next_to_csv = csv_dir / p;
    std::error_code ec;
    return fs::is_regular_file(next_to_csv, ec) ? next_to_csv.string() : p;
  };
  if (arch.empty() || arch[0] == '|') return arch;  // an NB201 string names no file
  if (auto colon = arch.find(':'); colon != std::string::npos) {
    const std::string space = rebased(arch.substr(0, colon));
    std::error_code ec;
    if (fs::is_regular_file(space, ec)) return space + arch.substr(colon);
  }
  return rebased(arch);
}

struct PredictArgs {
  std::string device, arch, format, space;
  int batch = 0;  // 0: the device's own
  int bits = 0;   // 0: as built; else every wider node narrowed to it (a quantised deployment)
  bool all = false;
  int sample = 0;
  std::uint64_t seed = 0;
};

nlohmann::json cost_json(const hw::Device& dev, const hw::Cost& c) {
  nlohmann::json j = {{"device", dev.name()},
                      {"batch", c.batch},
                      {"feasible", c.feasible},
                      {"latency_ms", c.latency_ms},
                      {"energy_mj", c.energy_mj},
                      {"memory_bytes", c.memory_bytes},
                      {"fallback_nodes", c.fallback_nodes}};
  if (!c.fallback.empty()) j["fallback"] = c.fallback;
  if (!c.feasible) j["infeasible_reason"] = c.infeasible_reason;
  return j;
}

// Every node wider than `bits` as its quantised deployment runs it: weights and activations
// narrowed (what an int8 TFLite model given to edgetpu_compiler is).
void narrow_bits(hw::Workload& w, int bits) {
  for (auto& n : w.nodes) {
    if (n.bits <= bits) continue;
    const double f = static_cast<double>(bits) / n.bits;
    n.weight_bytes *= f;
    n.input_bytes *= f;
    n.output_bytes *= f;
    n.bits = bits;
  }
}

void run_predict(const PredictArgs& a) {
  auto dev = a.batch > 0 ? hw::load_device(a.device, a.batch) : hw::load_device(a.device);
  const bool many = a.all || a.sample > 0 || a.arch == "-";
  if (!many) {
    if (a.arch.empty())
      throw std::invalid_argument(
          "hw predict: give an architecture, '-' for stdin, or --space FILE with --all / "
          "--sample N");
    if (!a.space.empty())
      throw std::invalid_argument(
          "hw predict: --space is for many architectures (--all, --sample N or '-'); for one, "
          "write SPACE_FILE:ARCH");
    const std::string fmt = a.format.empty() ? "table" : a.format;
    if (fmt != "table" && fmt != "json")
      throw std::invalid_argument("hw predict: --format " + fmt +
                                  " is for many architectures; use table or json for one");
    hw::Workload w = resolve_architecture_workload(a.arch);
    if (a.bits > 0) narrow_bits(w, a.bits);
    hw::Cost c = dev->estimate(w);
    if (fmt == "json") {
      nlohmann::json nodes = nlohmann::json::array();
      for (const auto& n : c.nodes)
        nodes.push_back({{"name", n.name},
                         {"latency_s", n.latency_s},
                         {"energy_j", n.energy_j},
                         {"bound", n.bound}});
      nlohmann::json j = cost_json(*dev, c);
      j["extra"] = c.extra;
      j["nodes"] = nodes;
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      print_predict_table(*dev, w, c);
    }
    return;
  }
  if (a.bits > 0) throw std::invalid_argument("hw predict: --bits is for one architecture");
  if ((a.all || a.sample > 0) && a.space.empty())
    throw std::invalid_argument("hw predict: --all and --sample need --space FILE");
  if (a.all && a.sample > 0)
    throw std::invalid_argument("hw predict: give --all or --sample N, not both");
  if ((a.all || a.sample > 0) && !a.arch.empty())
    throw std::invalid_argument("hw predict: --all / --sample take no architecture argument");
  const std::string fmt = a.format.empty() ? "csv" : a.format;
  if (fmt != "csv" && fmt != "jsonl")
    throw std::invalid_argument("hw predict: many architectures print as csv or jsonl, not " + fmt);
  std::unique_ptr<spaces::Space> space;
  if (!a.space.empty()) space = spaces::load_space(a.space);
  if (a.all && !space->size())
    throw std::invalid_argument("hw predict --all: space '" + a.space +
                                "' is not finite; use --sample N");
  // NB201 strings take the cached path: those of --space when it is an nb201 space, else the
  // default NB201 network (as `hw predict '|...|'` builds it).
  std::unique_ptr<spaces::Space> nb201_default;
  const spaces::Space* nb201 = space && space->type() == "nb201" ? space.get() : nullptr;
  if (!space) {
    nb201_default = spaces::make_space(nlohmann::json{{"type", "nb201"}});
    nb201 = nb201_default.get();
  }
  std::optional<Nb201CostCache> cache;
  if (nb201) cache.emplace(*nb201, *dev);

  std::string out;
  out.reserve(1 << 16);
  if (fmt == "csv")
    out +=
        "architecture,device,batch,feasible,latency_ms,energy_mj,memory_bytes,fallback_nodes,"
        "fallback,infeasible_reason\n";
  char num[160];
  auto emit = [&](const std::string& arch, const hw::Cost& c) {
    if (fmt == "csv") {
      out += csv_quote(arch);
      std::snprintf(num, sizeof num, ",%s,%d,%d,%.9g,%.9g,%.9g,%d,", dev->name().c_str(), c.batch,
                    c.feasible ? 1 : 0, c.latency_ms, c.energy_mj, c.memory_bytes,
                    c.fallback_nodes);
      out += num;
      out += csv_quote(c.fallback) + "," + csv_quote(c.feasible ? "" : c.infeasible_reason) + "\n";
    } else {
      nlohmann::json j = cost_json(*dev, c);
      j["architecture"] = arch;
      out += j.dump() + "\n";
    }
    if (out.size() > (1 << 16)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  };
  auto predict_genome = [&](const spaces::Genome& g) {
    return dev->estimate_total(dev->wants_architecture() ? spaces::build_workload_with_genome(g)
                                                         : spaces::build_workload(g));
  };
  if (a.all || a.sample > 0) {
    const std::uint64_t n = a.all ? *space->size() : static_cast<std::uint64_t>(a.sample);
    spaces::Rng rng(a.seed);
    for (std::uint64_t i = 0; i < n; ++i) {
      if (cache) {
        const int idx = a.all ? static_cast<int>(i)
                              : static_cast<int>(std::uniform_int_distribution<int>(0, 15624)(rng));
        emit(spaces::nb201_string(idx), cache->at(idx));
        continue;
      }
      spaces::Genome g = a.all ? space->at(i) : space->sample(rng);
      emit(space->describe(g), predict_genome(g));
    }
  } else {
    std::string line;
    long long lineno = 0;
    while (std::getline(std::cin, line)) {
      ++lineno;
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (line.empty()) continue;
      try {
        if (cache && line[0] == '|') {
          const int idx = spaces::nb201_index(line);
          if (idx < 0) nb201->parse(line);  // throws the parser's message
          emit(line, cache->at(idx));
        } else if (line[0] == '{') {
          nlohmann::json j = parse_json_text(line, "");  // the catch below names the line
          if (is_workload_json(j)) {
            emit(line, dev->estimate_total(hw::Workload::from_json(j)));
          } else {
            spaces::Genome g = spaces::Genome::from_json(j);
            emit(space ? space->describe(g) : g.hash(), predict_genome(g));
          }
        } else if (space) {
          emit(line, predict_genome(space->parse(line)));
        } else {
          emit(line, dev->estimate_total(resolve_architecture_workload(line)));
        }
      } catch (const std::exception& e) {
        std::fwrite(out.data(), 1, out.size(), stdout);
        throw std::invalid_argument("stdin line " + std::to_string(lineno) + ": " + e.what());
      }
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}
}  // namespace

void add_hw_commands(CLI::App& app) {
  auto* hw_cmd = app.add_subcommand("hw", "Hardware models: devices, prediction, calibration");
  hw_cmd->require_subcommand(1);

  auto* list = hw_cmd->add_subcommand("list", "List the device presets");
  list->callback([] {
    std::printf("%-20s %-14s %s\n", "name", "family", "description");
    for (const auto& n : hw::preset_names()) {
      auto d = hw::load_device(n)->to_json();
      std::printf("%-20s %-14s %s\n", n.c_str(), d.value("family", "").c_str(),
                  d.value("description", "").c_str());
    }
    std::printf("(presets from %s)\n\nfamilies (fields: hwnas hw families):\n",
                hw::preset_dir().c_str());
    for (const auto& [name, f] : hw::device_families().entries())
      std::printf("%-14s %s\n", name.c_str(), f.description.c_str());
  });

  auto* families = hw_cmd->add_subcommand(
      "families", "List device families with every field of their JSON description");
  auto families_json = std::make_shared<bool>(false);
  families->add_flag("--json", *families_json, "print the families as JSON");
  families->callback([families_json] {
    const auto& reg = hw::device_families();
    if (*families_json) {
      nlohmann::json all = nlohmann::json::array();
      for (const auto& [name, f] : reg.entries()) {
        nlohmann::json ps = nlohmann::json::array();
        for (const auto& p : f.params) ps.push_back(p.to_json());
        all.push_back({{"name", name}, {"description", f.description}, {"params", ps}});
      }
      std::printf("%s\n", all.dump(2).c_str());
      return;
    }
    for (const auto& [name, f] : reg.entries())
      std::printf("%s  %s\n%s\n", name.c_str(), f.description.c_str(),
                  describe_params(f.params, "").c_str());
  });

  auto* show = hw_cmd->add_subcommand("show", "Show a device's parameters and sources");
  auto show_dev = std::make_shared<std::string>();
  show->add_option("device", *show_dev, "preset name, device JSON or plugin .so")->required();
  show->callback([show_dev] {
    auto d = hw::load_device(*show_dev);
    std::printf("%s\n", d->to_json().dump(2).c_str());
  });

  auto* predict = hw_cmd->add_subcommand(
      "predict",
      "Predict latency, energy and memory of an architecture, or of many (--all, --sample, or "
      "one architecture per stdin line with '-')");
  auto pa = std::make_shared<PredictArgs>();
  predict->add_option("--device,-d", pa->device, "preset name, device JSON or plugin .so")
      ->required();
  predict->add_option("arch", pa->arch,
                      "NB201 string, SPACE_FILE:ARCH, genome or workload JSON; '-' reads one "
                      "architecture (string or genome JSON) per line from stdin");
  predict
      ->add_option("--format", pa->format,
                   "table or json (one architecture), csv or jsonl (many; default csv)")
      ->check(CLI::IsMember({"table", "json", "csv", "jsonl"}));
  predict
      ->add_option("--batch", pa->batch,
                   "samples per inference (default: the device's own \"batch\", usually 1)")
      ->check(CLI::Range(1, 1 << 20));
  predict
      ->add_option("--bits", pa->bits,
                   "narrow every node to this many bits first, as a quantised deployment "
                   "(e.g. 8 for an int8 TFLite model on the Edge TPU); one architecture only")
      ->check(CLI::IsMember({4, 8, 16}));
  predict->add_option("--space", pa->space,
                      "space JSON: architectures of --all / --sample, and how stdin strings parse");
  predict->add_flag("--all", pa->all, "every architecture of --space (finite spaces)");
  predict->add_option("--sample", pa->sample, "N architectures sampled from --space")
      ->check(CLI::Range(1, 100000000));
  predict->add_option("--seed", pa->seed, "seed of --sample")->check(seed_range());
  predict->callback([pa] { run_predict(*pa); });

  auto* cal = hw_cmd->add_subcommand("calibrate", "Fit a device model to measured latencies");
  auto c_dev = std::make_shared<std::string>();
  auto c_csv = std::make_shared<std::string>();
  auto c_out = std::make_shared<std::string>();
  auto c_opt = std::make_shared<hw::CalibrationOptions>();
  cal->add_option("--device,-d", *c_dev, "base device (preset, JSON)")->required();
  auto c_ref = std::make_shared<std::string>();
  auto c_space = std::make_shared<std::string>();
  auto c_n = std::make_shared<int>(60);
  cal->add_option("--measurements,-m", *c_csv,
                  "CSV: architecture,latency_ms[,energy_mj] (energy: the whole inference's, mJ; "
                  "rows without it fit latency only)");
  cal->add_option("--reference", *c_ref,
                  "instead of a CSV: a device whose figures are the truth (e.g. an external "
                  "device that measures), asked about --n architectures sampled from --space");
  cal->add_option("--space", *c_space, "space JSON to sample from (with --reference)");
  cal->add_option("--n", *c_n, "architectures to sample (with --reference)")
      ->check(CLI::Range(2, 1000000));
  cal->add_option("--out,-o", *c_out, "tuned device JSON to write")->required();
  cal->add_option("--seed", c_opt->seed,
                  "seed of the train / held-out split (and of --reference sampling)")
      ->check(seed_range());
  cal->add_option("--holdout", c_opt->holdout_fraction, "held-out fraction")
      ->check(CLI::Range(0.0, 0.9));
  cal->add_option("--ridge", c_opt->ridge,
                  "ridge strength towards the rescaled base device (negative: cross-validated)");
  cal->add_option("--min-ms", c_opt->min_ms,
                  "drop rows measured below this many ms (timer resolution and call overhead), "
                  "counted in the report")
      ->check(CLI::Range(0.0, 1e9));
  auto c_force = std::make_shared<bool>(false);
  cal->add_flag("--force", *c_force,
                "write the tuned device even if it ranks the held-out rows worse (Spearman) than "
                "the uncalibrated one");
  auto c_scales_only = std::make_shared<bool>(false);
  cal->add_flag("--scales-only", *c_scales_only,
                "fit only per-category scales and the per-kernel overhead (no per-node, per-FLOP "
                "and per-byte terms)");
  auto c_resid = std::make_shared<std::string>();
  cal->add_option("--residuals", *c_resid,
                  "CSV to write per-row measured and predicted latencies (before / after) with "
                  "node count, MACs and bytes, for diagnosis");
  cal->callback([c_dev, c_csv, c_out, c_opt, c_scales_only, c_resid, c_ref, c_space, c_n, c_force] {
    c_opt->workload_terms = !*c_scales_only;
    if (c_csv->empty() == c_ref->empty())
      throw std::invalid_argument(
          "give the truth to fit: --measurements CSV, or --reference DEVICE with --space FILE");
    if (!c_ref->empty() && c_space->empty())
      throw std::invalid_argument("--reference needs --space: the space to sample from");
    auto base = hw::load_device(*c_dev);
    std::vector<hw::Measurement> rows;
    if (!c_ref->empty()) rows = reference_measurements(*c_ref, *c_space, *c_n, c_opt->seed);
    const fs::path csv_dir = fs::path(*c_csv).parent_path();
    for (const auto& r :
         c_csv->empty() ? std::vector<hw::MeasurementRow>{} : hw::read_measurements_csv(*c_csv)) {
      hw::Measurement m;
      m.architecture = r.architecture;
      try {
        m.workload = resolve_architecture_workload(relative_to_csv(csv_dir, r.architecture));
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(*c_csv + ":" + std::to_string(r.line) + ": " + e.what());
      }
      m.latency_ms = r.latency_ms;
      m.energy_mj = r.energy_mj;
      rows.push_back(std::move(m));
    }
    hw::CalibrationResult res = hw::calibrate(base->to_json(), rows, *c_opt);
    auto line = [](const char* what, const hw::FitQuality& q) {
      std::printf(
          "  %-16s rows %3zu  spearman %.3f  kendall %.3f  within 10%% %5.1f%%  MAPE %6.1f%%\n",
          what, q.rows, q.spearman, q.kendall, 100 * q.within10, 100 * q.mape);
    };
    std::printf("calibrated %s on %zu rows (%zu held out, seed %llu)\n", base->name().c_str(),
                res.train_rows.size(), res.heldout_rows.size(),
                static_cast<unsigned long long>(c_opt->seed));
    if (!res.dropped_rows.empty())
      std::printf("  dropped %zu rows measured below --min-ms %g ms\n", res.dropped_rows.size(),
                  c_opt->min_ms);
    line("train before", res.train_before);
    line("train after", res.train_after);
    line("held-out before", res.heldout_before);
    line("held-out after", res.heldout_after);
    std::printf(
        "  ridge %g (%s); category scales %.3g .. %.3g; design condition %.3g (%.3g with "
        "the ridge)\n",
        res.ridge, c_opt->ridge < 0 ? "cross-validated" : "given", res.min_scale, res.max_scale,
        res.condition, res.condition_with_ridge);
    if (res.energy_fitted) {
      std::printf("  energy (dynamic per category; static power x latency kept):\n");
      line("train before", res.energy_train_before);
      line("train after", res.energy_train_after);
      line("held-out before", res.energy_heldout_before);
      line("held-out after", res.energy_heldout_after);
    }
    for (const auto& w : res.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    if (res.heldout_rows.empty())
      std::fprintf(stderr,
                   "warning: no held-out rows (--holdout 0): nothing checks the tuned "
                   "model against the uncalibrated one\n");
    if (const std::string worse = res.heldout_regression(); !worse.empty()) {
      if (!*c_force)
        throw std::invalid_argument(worse + "; not writing '" + *c_out +
                                    "' (--force writes it anyway)");
      std::fprintf(stderr, "warning: %s; writing anyway (--force)\n", worse.c_str());
    }
    // Written whole or not at all (temporary file, renamed when complete).
    nn::write_file_atomically(*c_out, res.tuned.dump(2) + "\n");
    std::printf("  wrote %s\n", c_out->c_str());
    if (!c_resid->empty()) {
      std::ostringstream rf;
      rf << "architecture,split,measured_ms,before_ms,after_ms,rel_err_after,nodes,kernels,macs,"
            "bytes\n";
      std::vector<char> held(rows.size(), 0);  // 0 train, 1 held out, 2 dropped
      for (auto i : res.heldout_rows) held[i] = 1;
      for (auto i : res.dropped_rows) held[i] = 2;
      for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto& w = rows[i].workload;
        double kernels = 0, bytes = 0;
        for (const auto& n : w.nodes) {
          kernels += n.kernels;
          bytes += n.bytes();
        }
        rf << csv_quote(rows[i].architecture) << ","
           << (held[i] == 2 ? "dropped"
               : held[i]    ? "heldout"
                            : "train")
           << "," << rows[i].latency_ms << "," << res.predicted_before[i] << ","
           << res.predicted_after[i] << ","
           << (res.predicted_after[i] - rows[i].latency_ms) / rows[i].latency_ms << ","
           << w.nodes.size() << "," << kernels << "," << w.total_macs() << "," << bytes << "\n";
      }
      nn::write_file_atomically(*c_resid, rf.str());
    }
  });

  auto* meas = hw_cmd->add_subcommand(
      "measure", "Time sampled architectures on this host (CSV for calibrate)");
  struct MeasureArgs {
    std::string space, out;
    int n = 20, batch = 1, reps = 10, warmup = 2;
    std::uint64_t seed = 0;
    bool per_node = false;
  };
  auto m = std::make_shared<MeasureArgs>();
  meas->add_option("--space", m->space, "space JSON")->required();
  meas->add_option("--n", m->n, "architectures to sample")->check(CLI::Range(1, 1000000));
  meas->add_option("--out,-o", m->out, "CSV to write")->required();
  meas->add_option("--batch", m->batch, "batch size of the timed forward pass")
      ->check(CLI::Range(1, 65536));
  meas->add_option("--reps", m->reps, "timed repetitions (median)")->check(CLI::Range(1, 100000));
  meas->add_option("--warmup", m->warmup, "warm-up runs")->check(CLI::Range(0, 100000));
  meas->add_option("--seed", m->seed, "sampling seed")->check(seed_range());
  meas->add_flag("--per-node", m->per_node,
                 "also time every node: OUT.nodes.csv with each node's features and time (for "
                 "`hw fit`)");
  meas->callback([m] {
    if (m->per_node)
      return measure_per_node({m->space, m->out, m->n, m->batch, m->reps, m->warmup, m->seed});
    auto space = spaces::load_space(m->space);
    // Genomes are written next to the CSV so that each row names a genome JSON file, by a path
    // relative to the CSV's folder (calibrate resolves it from there, whatever its cwd).
    const fs::path gdir = fs::path(m->out).string() + ".genomes";
    const fs::path gdir_from_csv = fs::path(m->out).filename().string() + ".genomes";
    fs::create_directories(gdir);
    // Every file is written whole or not at all; the CSV last, once every genome it names is.
    std::ostringstream csv;
    csv << "architecture,latency_ms\n";
    spaces::Rng rng(m->seed);
    for (int i = 0; i < m->n; ++i) {
      spaces::Genome g = space->sample(rng);
      const double ms = spaces::time_forward_ms(g, m->batch, m->warmup, m->reps, m->seed + i);
      const fs::path gp = gdir / (g.hash() + ".json");
      nn::write_file_atomically(gp.string(), g.to_json().dump() + "\n");
      csv << csv_quote((gdir_from_csv / (g.hash() + ".json")).string()) << "," << ms << "\n";
      std::fprintf(stderr, "[%d/%d] %s %.3f ms\n", i + 1, m->n, g.hash().c_str(), ms);
    }
    nn::write_file_atomically(m->out, csv.str());
    std::printf("wrote %d measurements to %s (genomes in %s)\n", m->n, m->out.c_str(),
                gdir.string().c_str());
  });
  add_hw_fit_command(*hw_cmd);
}

}  // namespace hwnas::search
