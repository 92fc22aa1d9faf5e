#include "search/cmd_db.hpp"

#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "db/export.hpp"
#include "db/store.hpp"
#include "search/arch_ref.hpp"
#include "search/cli_checks.hpp"
#include "search/fronts.hpp"
#include "search/resume.hpp"

namespace hwnas::search {
namespace {

// Exit codes, matching main.cpp: 2 for bad user input, 1 for anything else.
constexpr int kUsageExit = 2;
constexpr int kFailureExit = 1;

// Bad user input found by these commands.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct DbOptions {
  std::string db;
  std::string format = "table";
  long long run = -1;  // -1: latest
  std::string device;
  std::string arch;
};

db::Store open_store(const std::string& path) {
  try {
    return db::Store(path, /*read_only=*/true);
  } catch (const db::DbError& e) {
    // A file that cannot be opened as an hwnas database is a bad --db argument.
    throw UsageError(e.what());
  }
}

db::Format format_of(const DbOptions& o) {
  try {
    return db::parse_format(o.format);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--format: ") + e.what());
  }
}

// Runs a subcommand body; reports its error once and turns it into CLI::RuntimeError(code).
void guarded(const std::function<void()>& body) {
  int code = 0;
  try {
    body();
    return;
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
    code = kUsageExit;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    code = kFailureExit;
  }
  std::cout.flush();
  throw CLI::RuntimeError(code);
}

std::string join(const std::vector<std::string>& items, std::size_t max_items = 20) {
  std::string out;
  for (std::size_t i = 0; i < items.size() && i < max_items; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > max_items) out += ", ... (" + std::to_string(items.size()) + " in all)";
  return out;
}

void cmd_runs(const DbOptions& o) {
  db::Format f = format_of(o);
  db::Store store = open_store(o.db);
  auto runs = store.runs();
  // A run whose coordinator is gone says "stale", not "running" (search/resume.hpp).
  for (auto& r : runs) r.status = displayed_status(r);
  if (f == db::Format::Table && runs.empty()) {
    std::cout << "no runs in " << o.db << "\n";
    return;
  }
  std::cout << db::format_runs(runs, f);
  if (f != db::Format::Table) return;
  // Each front's hypervolume at the end of the run (the history is in hypervolume_history).
  bool header = false;
  for (const auto& r : runs)
    for (const auto& front : store.hypervolume_fronts(r.id)) {
      auto h = store.hypervolume_history(r.id, front);
      if (h.empty()) continue;
      if (!header) std::cout << "\nfinal hypervolume per front (run: front = value):\n";
      header = true;
      std::cout << "  " << r.id << ": " << front << " = " << h.back().hypervolume << " after "
                << h.back().evaluations << " evaluations\n";
    }
  // Workers the search gave up (worker_timeout_seconds) or lost, kept in the run's state.
  header = false;
  for (const auto& r : runs) {
    const auto state = store.strategy_state(r.id);
    if (!state || !state->contains("worker_events")) continue;
    for (const auto& e : state->at("worker_events")) {
      if (!header) std::cout << "\nworker events (run, after N evaluations: event):\n";
      header = true;
      std::cout << "  " << r.id << ", after " << e.value("after_evaluations", 0) << ": "
                << e.value("event", std::string()) << "\n";
    }
  }
}

std::int64_t resolve_run(const db::Store& store, const DbOptions& o) {
  if (o.run < 0) {
    auto latest = store.latest_run_id();
    if (!latest) throw UsageError(o.db + " has no runs");
    return *latest;
  }
  if (store.run(o.run)) return o.run;
  std::vector<std::string> ids;
  for (const auto& r : store.runs()) ids.push_back(std::to_string(r.id));
  throw UsageError("no run " + std::to_string(o.run) + " in " + o.db +
                   (ids.empty() ? std::string(" (it has no runs)") : " (runs: " + join(ids) + ")"));
}

// The fronts of a run that stopped before storing them (killed, or still running), computed
// from its stored evaluations as the search builds them, by front key.
std::map<std::string, std::vector<db::ParetoRow>> fronts_from_evaluations(const db::Store& store,
                                                                          const db::RunInfo& info) {
  std::vector<ObjectiveSpec> objectives;
  std::vector<ConstraintSpec> constraints;
  for (const auto& s : info.config.value("objectives", nlohmann::json::array()))
    objectives.push_back(ObjectiveSpec::parse(s.get<std::string>()));
  for (const auto& s : info.config.value("constraints", nlohmann::json::array()))
    constraints.push_back(ConstraintSpec::parse(s.get<std::string>()));
  const auto evals = store.evaluations(info.id, /*with_workloads=*/false);
  std::vector<std::string> devices;  // as the costs name them
  for (const auto& e : evals)
    for (const auto& c : e.costs)
      if (std::find(devices.begin(), devices.end(), c.device) == devices.end())
        devices.push_back(c.device);
  bool joint = devices.empty();
  for (const auto& ob : objectives) joint = joint || !ob.device.empty();
  std::vector<FrontSpec> specs;
  if (joint) {
    // Costs without @DEVICE read the first configured device (its preset name when it is one).
    std::string first = devices.empty() ? "" : devices.front();
    for (const auto& d : info.config.value("devices", nlohmann::json::array()))
      if (d.is_string() && std::find(devices.begin(), devices.end(), d) != devices.end()) {
        first = d.get<std::string>();
        break;
      }
    specs.push_back({kJointFront, first, false});
  } else {
    for (const auto& d : devices) specs.push_back({d, d, true});
  }
  std::map<std::int64_t, const db::EvaluationRecord*> by_id;
  for (const auto& e : evals) by_id[e.id] = &e;
  std::map<std::string, std::vector<db::ParetoRow>> out;
  for (const auto& spec : specs) {
    auto& rows = out[spec.key];
    for (auto id : compute_front(evals, objectives, constraints, spec)) {
      const db::EvaluationRecord& e = *by_id.at(id);
      db::ParetoRow r;
      r.evaluation_id = e.id;
      r.arch_id = e.arch_id;
      if (auto a = store.architecture(e.arch_id)) {
        r.arch_hash = a->hash;
        r.arch_description = a->description;
      }
      r.metrics = e.metrics;
      r.cost.device = spec.key;
      for (const auto& c : e.costs)
        if (c.device == (joint ? spec.default_device : spec.key)) r.cost = c;
      rows.push_back(std::move(r));
    }
  }
  return out;
}

void cmd_pareto(const DbOptions& o) {
  db::Format f = format_of(o);
  db::Store store = open_store(o.db);
  std::int64_t run = resolve_run(store, o);
  auto devices = store.pareto_devices(run);
  const auto info = store.run(run);
  // A run killed before storing its fronts still answers, from what it stored.
  std::map<std::string, std::vector<db::ParetoRow>> computed;
  if (devices.empty() && info && info->status != "finished") {
    computed = fronts_from_evaluations(store, *info);
    for (const auto& [key, rows] : computed) devices.push_back(key);
  }
  std::string device = o.device;
  if (device.empty()) {
    if (devices.size() != 1)
      throw UsageError("run " + std::to_string(run) + " has " +
                       (devices.empty()
                            ? std::string("no Pareto fronts stored yet")
                            : "several fronts; pick one with --device (" + join(devices) + ")"));
    device = devices.front();
  }
  if (std::find(devices.begin(), devices.end(), device) == devices.end()) {
    if (devices.empty())
      throw UsageError((o.run < 0 ? "the latest run, " + std::to_string(run) + ", has"
                                  : "run " + std::to_string(run) + " has") +
                       std::string(" no Pareto fronts stored yet") +
                       (o.run < 0 ? "; pick a run with --run ID (see `hwnas runs`)" : ""));
    throw UsageError("run " + std::to_string(run) + " has no Pareto front for device '" + device +
                     "'; its devices: " + join(devices));
  }
  auto rows = computed.empty() ? store.pareto(run, device) : computed.at(device);
  if (f == db::Format::Table) {
    std::cout << "run " << run << " (" << (info ? info->name : std::string("?")) << ", "
              << (info ? displayed_status(*info) : std::string("?")) << ") - Pareto front on "
              << device
              << (computed.empty() ? std::string()
                                   : " computed from the " + std::to_string(info->evaluations) +
                                         " stored evaluations (the run stored no fronts)")
              << ": " << rows.size() << " architecture" << (rows.size() == 1 ? "" : "s") << "\n";
  }
  std::cout << db::format_pareto(rows, f);
  if (f == db::Format::Table) {
    auto history = store.hypervolume_history(run, device);
    if (!history.empty()) {
      std::cout << "hypervolume over the run (evaluations: value; reference";
      for (double v : history.back().reference) std::cout << ' ' << v;
      std::cout << "):";
      for (const auto& p : history) std::cout << ' ' << p.evaluations << ": " << p.hypervolume;
      std::cout << "\n";
    }
  }
}

std::int64_t resolve_arch(const db::Store& store, const DbOptions& o) {
  const std::string& a = o.arch;
  bool numeric = !a.empty() && a.find_first_not_of("0123456789") == std::string::npos;
  if (numeric && a.size() < 19) {  // ids fit int64; a long all-digit string is a hash prefix
    std::int64_t id = std::stoll(a);
    if (store.architecture(id)) return id;
  }
  auto ids = store.architecture_ids_by_hash_prefix(a, 2);
  if (ids.size() == 1) return ids[0];
  if (ids.size() > 1)
    throw UsageError("hash prefix '" + a + "' matches several architectures; give more digits");
  throw UsageError(std::string("no architecture with ") +
                   (numeric ? "id or hash prefix '" : "hash prefix '") + a + "' in " + o.db);
}

void cmd_show(const DbOptions& o) {
  db::Format f = format_of(o);
  db::Store store = open_store(o.db);
  std::int64_t id = resolve_arch(store, o);
  auto arch = store.architecture(id);
  if (!arch) throw UsageError("architecture " + std::to_string(id) + " vanished");
  std::cout << with_test_results(
      db::format_architecture(*arch, store.evaluations_of_architecture(id), f),
      store.test_results(id), f);
}

void add_common(CLI::App* sub, DbOptions& o) {
  sub->add_option("--db", o.db, "results database (SQLite file written by `hwnas search`)")
      ->check(db_path())
      ->required();
  sub->add_option("--format", o.format, "output format: table, json or csv")->capture_default_str();
}

}  // namespace

void add_db_commands(CLI::App& app) {
  // Options live as long as the App: the callbacks run inside app.parse().
  auto opts = std::make_shared<DbOptions>();

  auto* runs = app.add_subcommand("runs", "List the runs stored in a results database");
  add_common(runs, *opts);
  runs->callback([opts] { guarded([&] { cmd_runs(*opts); }); });

  auto* pareto = app.add_subcommand("pareto", "Print a run's Pareto front for one device");
  add_common(pareto, *opts);
  pareto->add_option("--run", opts->run, "run id (default: the latest run)")->check(run_id_range());
  pareto->add_option("--device", opts->device,
                     "device name the front was computed for, or 'joint' when the objectives name "
                     "their devices (default: the run's only front)");
  pareto->callback([opts] { guarded([&] { cmd_pareto(*opts); }); });

  auto* show = app.add_subcommand(
      "show", "Show one architecture: genome, description, evaluations and hardware costs");
  add_common(show, *opts);
  show->add_option("arch", opts->arch, "architecture id, or its hash (a unique prefix suffices)")
      ->required();
  show->callback([opts] { guarded([&] { cmd_show(*opts); }); });
}

}  // namespace hwnas::search
