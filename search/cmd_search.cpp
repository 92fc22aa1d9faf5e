#include "search/cmd_search.hpp"

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "db/store.hpp"
#include "hwmodels/device.hpp"
#include "nn/parallel.hpp"
#include "search/cli_checks.hpp"
#include "search/config.hpp"
#include "search/device_costs.hpp"
#include "search/evaluator_factory.hpp"
#include "search/resume.hpp"
#include "search/search_loop.hpp"
#ifdef HWNAS_WITH_MPI
#include "search/mpi_data_parallel.hpp"
#include "search/mpi_transport.hpp"
#endif

namespace hwnas::search {
namespace {

struct SearchOptions {
  std::string config_path;
  std::string db_path;
  long long seed = -1;
  int budget = 0;
  int workers = -1;
  bool quiet = false;
  bool resume = false;
  long long run = 0;  // with --resume: the run to continue (0 = the latest resumable one)
};

extern "C" void on_stop_signal(int sig) {
  // First Ctrl-C (SIGINT, or SIGTERM from mpirun, timeout or a scheduler, or SIGHUP from a
  // closed terminal): stop proposing and finish cleanly; a second one kills as usual.
  g_stop_signal = sig;
  g_stop_requested = true;
  std::signal(sig, SIG_DFL);
}

void install_stop_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGHUP, on_stop_signal);
  // Progress and fronts written to a closed pipe (`hwnas search cfg | head`) must not kill the
  // search: the write fails (the stream goes bad and later writes are dropped), nothing else.
  std::signal(SIGPIPE, SIG_IGN);
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "a signal";
  }
}

// The exit code of a search, the same locally and under mpirun: 0 when finished; 128 + the
// signal's number when a signal interrupted it (130 SIGINT, 143 SIGTERM, 129 SIGHUP), with a
// message on stderr saying how to continue it.
int finish_exit_code(const SearchSummary& s, const SearchOptions& o, const std::string& db_path) {
  if (!s.worker_events.empty())
    std::cerr << s.worker_events.size() << " worker(s) given up in run " << s.run_id
              << " (no answer within worker_timeout_seconds; their candidates ran elsewhere and "
              << "each result is stored once), first: " << s.worker_events.front() << "\n";
  if (s.status != "interrupted") return s.worker_events.empty() ? 0 : kWorkersGivenUpExitCode;
  if (!s.interrupted_by.empty()) {
    std::cerr << "run " << s.run_id << " interrupted: " << s.interrupted_by << ", after "
              << s.evaluated << " stored evaluations; check the workers, then continue it with: "
              << "hwnas search " << o.config_path << " --db " << db_path << " --resume --run "
              << s.run_id << "\n";
    return kWorkersLostExitCode;
  }
  const int sig = g_stop_signal.load() > 0 ? g_stop_signal.load() : SIGINT;
  std::cerr << "run " << s.run_id << " interrupted by " << signal_name(sig) << " after "
            << s.evaluated << " stored evaluations; continue it with: hwnas search "
            << o.config_path << " --db " << db_path << " --resume --run " << s.run_id << "\n";
  return 128 + sig;
}

// With --resume, the run to continue (checked: exists, not finished, not alive, same config);
// 0 for a new run.
std::int64_t run_to_resume(const SearchOptions& o, const db::Store& store, const SearchConfig& c) {
  if (!o.resume) return 0;
  return find_resumable_run(store, c,
                            o.run > 0 ? std::optional<std::int64_t>(o.run) : std::nullopt);
}

// Where progress goes: stderr, or nowhere with --quiet.
std::ostream& progress_stream(bool quiet) {
  static std::ostream null_stream(nullptr);
  return quiet ? null_stream : std::cerr;
}

SearchConfig configure(const SearchOptions& o) {
  SearchConfig c = load_config(o.config_path);
  // Command-line overrides go through the same validation as the file.
  nlohmann::json j = c.resolved;
  if (!o.db_path.empty()) j["db"] = o.db_path;
  if (o.seed >= 0) j["seed"] = o.seed;
  if (o.budget > 0) j["budget"]["evaluations"] = o.budget;
  if (o.workers >= 0) j["workers"] = o.workers;
  SearchConfig out = parse_config(j, "");
  out.config_path = o.config_path;
  return out;
}

int run_local(const SearchOptions& o) {
  SearchConfig c = configure(o);
  // Everything user-supplied is validated and the data loaded before the database is touched.
  auto executor = make_local_executor(make_evaluator_factory(c), c.workers, c.threads);
  SearchSummary s;
  {
    db::Store store(c.db_path);
    const std::int64_t resume = run_to_resume(o, store, c);
    install_stop_handlers();
    try {
      s = run_search(c, *executor, store, progress_stream(o.quiet), resume);
    } catch (const std::exception& e) {
      if (executor->lost_workers() == 0) throw;
      // As below: a runner given up may never return, so no static destructors; every
      // committed result is already in the file.
      std::cerr << "error: " << e.what() << "\n";
      std::cerr.flush();
      std::_Exit(dynamic_cast<const std::invalid_argument*>(&e) ? kUsageExitCode : 1);
    }
  }  // the store is closed: everything is on disk
  print_fronts(s, c.pareto_objectives, std::cout);
  std::cout << "\nrun " << s.run_id << " " << s.status << ": " << s.evaluated << " candidates ("
            << s.failed << " failed) in " << s.seconds << " s; database " << c.db_path << "\n";
  std::cout.flush();
  const int code = finish_exit_code(s, o, c.db_path);
  if (executor->lost_workers() > 0) {
    // A runner given up may never return: exit without the static destructors (oneTBB's
    // among them) that would run under it.
    std::cerr.flush();
    std::_Exit(code);
  }
  return code;
}

#ifdef HWNAS_WITH_MPI
int run_mpi(const SearchOptions& o) {
  MpiSession mpi(nullptr, nullptr);
  // Rank 0 validates the config; the resolved JSON (or the error) reaches every rank, so a bad
  // config ends all ranks with the same message and exit code.
  std::string payload;
  if (mpi.rank() == 0) {
    try {
      payload = nlohmann::json{{"config", configure(o).resolved}}.dump();
    } catch (const std::exception& e) {
      payload = nlohmann::json{{"error", e.what()}}.dump();
    }
  }
  auto msg = nlohmann::json::parse(mpi.broadcast(payload));
  if (msg.contains("error")) {
    if (mpi.rank() == 0) std::cerr << "error: " << msg["error"].get<std::string>() << "\n";
    return kUsageExitCode;
  }
  if (mpi.size() < 2) {
    std::cerr << "error: mpirun needs at least 2 ranks (rank 0 coordinates, the others train)\n";
    return kUsageExitCode;
  }
  if (mpi.rank() != 0) {
    // Setup failures on a worker (dataset missing, a device file only rank 0 can see) are
    // reported through the job protocol, so rank 0 ends the search with the message.
    EvaluatorFactory factory;
    std::string setup_error;
    std::optional<SearchConfig> config;
    try {
      config = parse_config(msg["config"], "");
      factory = make_evaluator_factory(*config);
    } catch (const std::exception& e) {
      setup_error = "worker rank " + std::to_string(mpi.rank()) + ": " + e.what();
    }
    // One-shot strategies train their supernet on every rank (search/mpi_data_parallel.hpp).
    auto join_phase = [&](const std::string& request) {
      join_data_parallel_phase(config ? &*config : nullptr, request, mpi.rank());
    };
    return run_mpi_worker(mpi, factory, setup_error, join_phase);
  }

  // The executor exists before anything else can fail, so its destructor always releases the
  // workers (a rank that finalises while others still wait would hang the whole job).
  auto executor = make_mpi_executor(mpi);
  SearchConfig c = parse_config(msg["config"], "");
  SearchSummary s;
  {
    db::Store store(c.db_path);
    const std::int64_t resume = run_to_resume(o, store, c);
    install_stop_handlers();
    s = run_search(c, *executor, store, progress_stream(o.quiet), resume,
                   [&mpi](const SearchConfig& cfg, std::ostream& progress) {
                     return make_data_parallel_environment(cfg, progress, mpi);
                   });
  }  // the store is closed: everything is on disk
  print_fronts(s, c.pareto_objectives, std::cout);
  std::cout << "\nrun " << s.run_id << " " << s.status << ": " << s.evaluated << " candidates ("
            << s.failed << " failed) in " << s.seconds << " s on " << mpi.size() - 1
            << " worker ranks; database " << c.db_path << "\n";
  const int code = finish_exit_code(s, o, c.db_path);
  std::cout.flush();
  std::cerr.flush();
  if (s.status == "interrupted" || executor->lost_workers() > 0) {
    // Everything is stored.  MPI_Finalize would wait for every rank: for ones that are gone
    // (the launcher is tearing the job down after a signal) and for ones given up (a stopped
    // process, a hung node).  Exiting with a nonzero code makes mpirun end the job and exit
    // with that code; MPI_Abort is not used: Open MPI 4.1's mpirun was seen to hang (and, with
    // code 0, to crash) on it with a stopped rank.
    std::_Exit(code != 0 ? code : kWorkersGivenUpExitCode);
  }
  return code;
}
#endif

struct RescoreOptions {
  std::string db = "hwnas.db";
  std::string device;
  long long run = 0;
  std::string as;  // store the costs under this device name instead of the model's own
  bool replace = false;
};

int rescore(const RescoreOptions& o) {
  const std::string& db_path = o.db;
  const long long run_id = o.run;
  if (!std::filesystem::exists(db_path))
    throw std::invalid_argument("--db: file '" + db_path + "' does not exist");
  auto device = hw::load_device(o.device);
  const std::string name = o.as.empty() ? device->name() : o.as;
  const std::string fingerprint = hw::device_fingerprint(*device);
  db::Store store(db_path);
  std::int64_t run = run_id > 0 ? run_id : store.latest_run_id().value_or(0);
  auto info = store.run(run);
  if (!info) throw std::invalid_argument("--run: no run " + std::to_string(run) + " in " + db_path);
  // The run's own objectives and constraints, from its stored config.
  SearchConfig c;
  for (const auto& s : info->config.at("objectives"))
    c.pareto_objectives.push_back(ObjectiveSpec::parse(s.get<std::string>()));
  if (info->config.contains("constraints"))
    for (const auto& s : info->config["constraints"])
      c.constraints.push_back(ConstraintSpec::parse(s.get<std::string>()));
  const auto evaluations = store.evaluations(run);
  // Never overwrite silently: costs stored under this name by another model (another
  // fingerprint) stay unless --replace says so.  Costs stored without a fingerprint (before
  // fingerprints were recorded) cannot be compared and are replaced as before.
  if (!o.replace)
    for (const auto& e : evaluations)
      for (const auto& c : e.costs) {
        if (c.device != name || !c.detail.is_object()) continue;
        const std::string stored = c.detail.value("device_fingerprint", "");
        if (!stored.empty() && stored != fingerprint)
          throw std::invalid_argument(
              "--device: run " + std::to_string(run) + " already has costs on '" + name +
              "' from a different model of it (fingerprint " + stored + ", this one " +
              fingerprint + "); pass --as NEW_NAME to store these costs under another name, or " +
              "--replace to overwrite them");
      }
  // As in the search: an unreadable workload is an infeasible cost, and cached costs are not
  // asked again; the rest go to the device in chunks (an external device may get them batched).
  std::vector<std::int64_t> ask_ids;
  std::vector<hw::Workload> ask;
  std::vector<std::string> ask_hashes;
  auto flush = [&] {
    std::vector<db::CostRecord> answers = costs_on_device(*device, ask, ask_hashes, &store);
    for (std::size_t i = 0; i < ask_ids.size(); ++i) {
      answers[i].device = name;  // --as
      store.add_costs(ask_ids[i], {answers[i]});
    }
    ask_ids.clear();
    ask.clear();
    ask_hashes.clear();
  };
  int costed = 0;
  for (const db::EvaluationRecord& e : evaluations) {
    if (e.status != "ok") continue;
    ++costed;
    try {
      hw::Workload w = hw::Workload::from_json(e.workload);
      const auto arch = store.architecture(e.arch_id);
      if (device->wants_architecture() && arch) w.architecture = arch->genome;
      ask.push_back(std::move(w));
      ask_hashes.push_back(arch ? arch->hash : "");
      ask_ids.push_back(e.id);
      if (ask.size() == 256) flush();
    } catch (const std::exception& ex) {
      db::CostRecord c;
      c.device = name;
      c.feasible = false;
      c.infeasible_reason = std::string("cost model failed: ") + ex.what();
      c.detail = {{"device_fingerprint", fingerprint}};
      store.add_costs(e.id, {c});
    }
  }
  flush();
  // The new device's front: costs without @DEVICE are read on it.
  const FrontSpec spec{name, name, true};
  auto front = compute_front(store.evaluations(run), c.pareto_objectives, c.constraints, spec);
  store.set_pareto(run, name, front);
  SearchSummary s;
  s.fronts[name] = front_rows(store, run, spec, c.pareto_objectives);
  print_fronts(s, c.pareto_objectives, std::cout);
  std::cout << "\nrescored " << costed << " evaluations of run " << run << " on " << name
            << " without retraining\n";
  return 0;
}

}  // namespace

void add_search_commands(CLI::App& app) {
  auto opts = std::make_shared<SearchOptions>();
  CLI::App* s =
      app.add_subcommand("search", "Run a search from a config file (use mpirun for MPI)");
  s->add_option("config", opts->config_path, "search config JSON")->required();
  s->add_option("--db", opts->db_path, "SQLite file (overrides the config's \"db\")");
  s->add_option("--seed", opts->seed, "seed (overrides the config)")->check(seed_range());
  s->add_option("--budget", opts->budget, "candidates to evaluate (overrides the config)")
      ->check(budget_range());
  s->add_option("--workers", opts->workers, "concurrent local evaluations (overrides the config)")
      ->check(workers_range());
  s->add_flag("--quiet", opts->quiet, "no progress lines");
  s->add_flag("--resume", opts->resume,
              "continue a killed, interrupted or failed run of this config (the latest one, or "
              "--run ID): stored evaluations are kept, in-flight ones run again");
  s->add_option("--run", opts->run, "with --resume: the run id to continue (see `hwnas runs`)")
      ->check(run_id_range());
  s->callback([opts, s] {
    if (s->count("--db") > 0 && opts->db_path.empty())
      throw std::invalid_argument(
          "--db: the path is empty; give the SQLite file to write, e.g. --db results.db");
    if (opts->run > 0 && !opts->resume)
      throw std::invalid_argument("--run " + std::to_string(opts->run) +
                                  ": only with --resume (a new search gets a new run id)");
#ifdef HWNAS_WITH_MPI
    if (launched_under_mpi()) throw CLI::RuntimeError(run_mpi(*opts));
#endif
    throw CLI::RuntimeError(run_local(*opts));
  });

  auto r = std::make_shared<RescoreOptions>();
  CLI::App* rs =
      app.add_subcommand("rescore", "Cost a finished run on another device without retraining");
  rs->add_option("--db", r->db, "SQLite file")->capture_default_str()->check(db_path());
  rs->add_option("--device", r->device, "preset name, device JSON or plugin .so")->required();
  rs->add_option("--run", r->run, "run id (default: latest)")->check(run_id_range());
  rs->add_option("--as", r->as,
                 "store the costs and front under this device name (when the run already has "
                 "costs of another model under the device's own name)");
  rs->add_flag("--replace", r->replace,
               "overwrite costs stored under the same name by a different model of the device");
  rs->callback([r] { throw CLI::RuntimeError(rescore(*r)); });

  CLI::App* cfg = app.add_subcommand("config", "Configuration reference");
  cfg->require_subcommand(1);
  cfg->add_subcommand("params", "Every config parameter with type, range, default and meaning")
      ->callback([] { std::cout << describe_parameters(); });
  auto check_path = std::make_shared<std::string>();
  CLI::App* chk = cfg->add_subcommand("check", "Validate a config file without running it");
  chk->add_option("config", *check_path)->required();
  chk->callback([check_path] {
    SearchConfig c = load_config(*check_path);
    std::cout << "ok: " << c.name << ", " << c.budget_evaluations << " candidates, "
              << c.devices.size() << " devices\n";
  });
}

}  // namespace hwnas::search
