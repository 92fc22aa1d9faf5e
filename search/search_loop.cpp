#include "search/search_loop.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "db/workload_parts.hpp"
#include "hwmodels/device.hpp"
#include "search/device_costs.hpp"
#include "search/oneshot_env.hpp"
#include "search/resume.hpp"
#include "spaces/space.hpp"
#include "strategies/pareto.hpp"
#include "strategies/strategy.hpp"

namespace hwnas::search {

std::atomic<bool> g_stop_requested{false};
std::atomic<int> g_stop_signal{0};

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

db::CostRecord to_record(const std::string& device, const hw::Cost& c,
                         const std::string& fingerprint) {
  db::CostRecord r;
  r.device = device;
  r.feasible = c.feasible;
  r.infeasible_reason = c.infeasible_reason;
  r.latency_ms = c.latency_ms;
  r.energy_mj = c.energy_mj;
  r.memory_bytes = c.memory_bytes;
  r.detail = c.extra;
  // The batch the figures cover, and any part of the network that ran elsewhere (Edge TPU ops
  // on the host CPU), stored with every cost (the totals-only fast path has no extra figures).
  r.detail["batch"] = c.batch;
  if (c.fallback_nodes > 0) {
    r.detail["fallback_nodes"] = c.fallback_nodes;
    r.detail["fallback"] = c.fallback;
  }
  // The per-node precision notes are for `hw predict`; stored with every evaluation they would
  // be most of the row (a float NB201 cell on the Edge TPU: 9 KB), and they follow from the
  // architecture and the device.  The row keeps their count and the first one.
  if (auto it = r.detail.find("non_native_precision"); it != r.detail.end() && it->is_object()) {
    if (!it->empty())
      r.detail["non_native_first"] = it->begin().key() + ": " + it->begin().value().dump();
    r.detail["non_native_nodes"] = it->size();
    r.detail.erase(it);
  }
  r.activity_source = c.activity_source;
  if (!fingerprint.empty()) {
    if (!r.detail.is_object()) r.detail = nlohmann::json::object();
    r.detail["device_fingerprint"] = fingerprint;
  }
  return r;
}

namespace {

// A key of a workload's architecture part (every field but activity and measurements), from
// the struct itself: comparing keys per evaluation costs no JSON.  A new NodeWorkload field
// that the architecture determines belongs here too.
std::uint64_t architecture_workload_key(const hw::Workload& w) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto add = [&h](double v) {
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    h = (h ^ bits) * 0x100000001b3ULL;
    h ^= h >> 29;
  };
  const std::hash<std::string> hash_string;
  add(w.input_bytes);
  add(static_cast<double>(w.nodes.size()));
  for (const auto& n : w.nodes) {
    add(static_cast<double>(hash_string(n.name)));
    add(static_cast<double>(hash_string(n.block_kind)));
    add(static_cast<double>(hash_string(n.kernel_type)));
    for (double v : {static_cast<double>(n.category),
                     n.macs,
                     n.other_flops,
                     n.params,
                     n.weight_bytes,
                     n.input_bytes,
                     n.output_bytes,
                     static_cast<double>(n.bits),
                     n.sparsity,
                     static_cast<double>(n.kernels),
                     static_cast<double>(n.eager_kernels),
                     static_cast<double>(n.seq_len),
                     static_cast<double>(n.window),
                     static_cast<double>(n.stride),
                     n.neurons,
                     n.fan_in,
                     n.fan_out,
                     n.synapses,
                     n.spiking ? 1.0 : 0.0,
                     static_cast<double>(n.timesteps),
                     n.total_experts,
                     n.nominal_active_experts,
                     n.routed_macs,
                     n.routed_other_flops,
                     n.nominal_function_evals,
                     n.channels,
                     n.channels_full,
                     n.datastore_bytes,
                     n.datastore_lookups,
                     n.datastore_bytes_read})
      add(v);
  }
  return h;
}

bool has_measurements(const hw::Workload& w) {
  if (!w.measured.empty()) return true;
  for (const auto& n : w.nodes)
    if (n.activity.measured()) return true;
  return false;
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

std::vector<FrontSpec> front_specs(const SearchConfig& config,
                                   const std::vector<std::string>& device_names) {
  std::vector<FrontSpec> out;
  if (config.per_device_fronts()) {
    for (const auto& d : device_names) out.push_back({d, d, true});
  } else {
    out.push_back({kJointFront, config.default_device, false});
  }
  return out;
}

namespace {

// The state committed with every evaluation: the strategy's own, plus the deterministic lag the
// run was started with (kept on resume, so the proposal sequence does not depend on workers).
constexpr const char* kSearchStateFormat = "hwnas-search-state";
constexpr int kSearchStateVersion = 1;
// Deterministic runs save the strategy state with an evaluation at most this often (record()).
constexpr double kStateSaveSeconds = 1.0;

// Bumps the run's heartbeat every kHeartbeatSeconds from its own thread and connection, so a run
// whose candidates train for an hour still looks alive while the loop waits for them.
class HeartbeatThread {
 public:
  HeartbeatThread(const std::string& db_path, std::int64_t run_id) {
    thread_ = std::thread([this, db_path, run_id] {
      std::optional<db::Store> store;
      std::unique_lock lock(mutex_);
      while (!cv_.wait_for(lock, std::chrono::seconds(kHeartbeatSeconds), [&] { return done_; })) {
        try {
          if (!store) store.emplace(db_path);
          store->heartbeat(run_id);
        } catch (const std::exception&) {
          // A busy or unreachable file costs one beat, never the search.
        }
      }
    });
  }
  ~HeartbeatThread() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  HeartbeatThread(const HeartbeatThread&) = delete;
  HeartbeatThread& operator=(const HeartbeatThread&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// Another process holding the database's write lock (a long write transaction, a backup,
// an `sqlite3` shell left inside BEGIN) must not fail the run and lose trained candidates: a
// write that still finds the file locked after the store's busy timeout is retried with
// exponential backoff for up to kWriteRetrySeconds.  Each write is one transaction, rolled
// back when it fails, so retrying it is safe.
constexpr int kWriteRetrySeconds = 600;

template <class Write>
auto with_write_retry(std::ostream& progress, const Write& write) {
  auto wait = std::chrono::milliseconds(100);
  const auto give_up = Clock::now() + std::chrono::seconds(kWriteRetrySeconds);
  while (true) {
    try {
      return write();
    } catch (const db::DbError& e) {
      const std::string what = e.what();
      const bool locked = what.find("database is locked") != std::string::npos ||
                          what.find("database table is locked") != std::string::npos;
      if (!locked || Clock::now() + wait > give_up) throw;
      progress << "database locked by another process; retrying the write in "
               << std::setprecision(1) << std::fixed << wait.count() / 1000.0 << " s" << std::endl;
      std::this_thread::sleep_for(wait);
      wait = std::min(wait * 2, std::chrono::milliseconds(5000));
    }
  }
}

}  // namespace

SearchSummary run_search(const SearchConfig& config, Executor& executor, db::Store& store,
                         std::ostream& progress, std::int64_t resume_run,
                         const OneShotMaker& make_oneshot) {
  auto space = spaces::make_space(config.space);
  strategies::StrategyContext context;
  context.seed = config.seed;
  context.objectives.clear();
  for (const auto& o : config.pareto_objectives)
    context.objectives.push_back({o.str(), o.maximize});
  for (const auto& k : config.constraints) context.constraints.push_back(k.str());
  SearchSummary summary;
  summary.best_fitness = -std::numeric_limits<double>::infinity();
  // Multi-fidelity promotions continue from checkpoints kept next to the database, one folder
  // per run; removed when the run finishes, kept after an interruption for --resume.  One-shot
  // phases keep their outcome there too, so a resumed run does not train its supernet again.
  auto checkpoint_dir = [&] {
    return std::filesystem::path(store.path() + ".checkpoints") /
           ("run-" + std::to_string(summary.run_id));
  };
  context.oneshot = keep_phase_outcomes(
      make_oneshot ? make_oneshot(config, progress) : make_oneshot_environment(config, progress),
      checkpoint_dir, progress);
  auto strategy = strategies::make_strategy(config.strategy, *space, context);
  const auto* proposal_metrics = dynamic_cast<const strategies::ProposalMetrics*>(strategy.get());
  std::vector<std::unique_ptr<hw::Device>> devices;
  bool devices_want_architecture = false;  // an external model reads the genome
  std::vector<std::string> device_names;
  for (std::size_t i = 0; i < config.devices.size(); ++i) {
    const std::string& d = config.devices[i];
    const int batch = i < config.device_batches.size() ? config.device_batches[i] : 0;
    devices.push_back(batch > 0 ? hw::load_device(d, batch) : hw::load_device(d));
    device_names.push_back(devices.back()->name());
    devices_want_architecture = devices_want_architecture || devices.back()->wants_architecture();
  }

  SearchCosts costs(devices, store);

  eval::Fidelity fidelity;
  fidelity.epochs = config.epochs;
  fidelity.train_subset = config.train_subset;
  fidelity.max_seconds = config.candidate_seconds;
  auto checkpoint_of = [&](std::int64_t proposal) {
    return (checkpoint_dir() / ("p" + std::to_string(proposal) + ".ckpt")).string();
  };
  // What a proposal asks for, zero fields meaning the configured value.
  auto asked_fidelity = [&](const strategies::Fidelity& f) {
    eval::Fidelity e = fidelity;
    if (f.epochs > 0) e.epochs = f.epochs;
    if (f.train_subset > 0) e.train_subset = f.train_subset;
    e.schedule_epochs = f.schedule_epochs;
    return e;
  };
  // ... plus where its checkpoints are read and written.
  auto fidelity_of = [&](const strategies::Proposal& p) {
    const strategies::Fidelity& f = p.fidelity;
    eval::Fidelity e = asked_fidelity(f);
    if (f.continue_from >= 0) e.resume_from = checkpoint_of(f.continue_from);
    if (f.keep_checkpoint) {
      std::filesystem::create_directories(checkpoint_dir());
      e.checkpoint_out = checkpoint_of(static_cast<std::int64_t>(p.id));
    }
    return e;
  };
  // The fidelity stored with an evaluation: what was asked, without this machine's paths.
  auto stored_fidelity = [&](const strategies::Proposal& p) {
    nlohmann::json j = asked_fidelity(p.fidelity).to_json();
    if (p.fidelity.continue_from >= 0) j["continue_from"] = p.fidelity.continue_from;
    return j;
  };

  const int slots = executor.slots();
  // Deterministic mode: proposal i sees exactly the results of proposals < i - lag.  A lag of
  // two rounds lets a fast worker take new work while a slow candidate of the previous round
  // is still training; it waits only when a candidate is two full rounds behind.
  std::uint64_t lag = 2 * static_cast<std::uint64_t>(slots);
  const int budget = config.budget_evaluations;
  const ObjectiveSpec& primary = config.pareto_objectives.front();

  // A resumed run: its strategy state and evaluations as committed together before the stop.
  std::vector<db::EvaluationRecord> stored;
  std::map<std::uint64_t, const db::EvaluationRecord*> stored_by_proposal;
  if (resume_run > 0) {
    summary.run_id = resume_run;
    stored = store.evaluations(resume_run, /*with_workloads=*/false);
    for (const auto& e : stored)
      if (e.proposal_id >= 0) stored_by_proposal[static_cast<std::uint64_t>(e.proposal_id)] = &e;
    if (auto saved = store.strategy_state(resume_run)) {
      if (saved->value("format", "") != kSearchStateFormat ||
          saved->value("version", 0) != kSearchStateVersion)
        throw std::invalid_argument("--resume: run " + std::to_string(resume_run) +
                                    " has a saved search state this build does not read");
      strategy->restore_state(saved->at("strategy"));
      lag = saved->at("lag").get<std::uint64_t>();
    } else if (!stored.empty()) {
      throw std::invalid_argument(
          "--resume: run " + std::to_string(resume_run) +
          " has evaluations but no saved strategy state (it was stored by an hwnas without "
          "resume support); it cannot be continued exactly");
    }
    // else: stopped before its first evaluation; a fresh strategy with the same seed is the
    // same strategy.
    if (stored_by_proposal.size() != stored.size())
      throw std::invalid_argument("--resume: run " + std::to_string(resume_run) +
                                  " has evaluations without proposal ids; it cannot be resumed");
  }
  // Workers given up over the whole run (all starts), stored with the search state: older
  // builds read only the keys they know, so the state version stays.
  nlohmann::json worker_events = nlohmann::json::array();
  if (resume_run > 0)
    if (auto saved = store.strategy_state(resume_run); saved && saved->contains("worker_events"))
      worker_events = saved->at("worker_events");
  auto search_state = [&] {
    nlohmann::json state{{"format", kSearchStateFormat},
                         {"version", kSearchStateVersion},
                         {"lag", lag},
                         {"strategy", strategy->save_state()}};
    if (!worker_events.empty()) state["worker_events"] = worker_events;
    return state;
  };
  // A new run is created with its coordinator and first state in one transaction, so a kill at
  // any moment leaves a run that shows as stale and resumes with the same lag.
  const auto pid = static_cast<std::int64_t>(::getpid());
  if (resume_run > 0)
    store.claim_run(summary.run_id, this_host(), pid);
  else
    summary.run_id = store.create_run(config.name, config.resolved, config.seed, this_host(), pid,
                                      search_state());
  HeartbeatThread heartbeat(store.path(), summary.run_id);
  if (resume_run <= 0) {
    // A new run's id may have been used by a database file deleted since: its checkpoints are
    // not this run's.
    std::error_code ec;
    std::filesystem::remove_all(checkpoint_dir(), ec);
  }

  const auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };

  // Fronts are kept incrementally, so the end of the run needs no re-read of its evaluations.
  const std::vector<FrontSpec> fronts = front_specs(config, device_names);
  const bool joint_front = !config.per_device_fronts();
  std::vector<bool> maximize;
  for (const auto& o : config.pareto_objectives) maximize.push_back(o.maximize);
  std::vector<FrontArchive> archives(fronts.size(), FrontArchive(maximize));
  const int hv_every =
      config.hypervolume_every > 0 ? config.hypervolume_every : std::max(1, budget / 50);
  // Per front: (evaluations so far, front points) at each history point.
  std::vector<std::vector<std::pair<int, std::vector<std::vector<double>>>>> snapshots(
      fronts.size());

  std::map<std::uint64_t, strategies::Proposal> proposed;  // in flight or awaiting tell
  // Architectures this run has stored, by hash: a repeat needs no upsert (one transaction less).
  std::unordered_map<std::string, std::int64_t> architecture_ids;
  // Architectures whose workload the store holds (key of the architecture part, and whether
  // it is this run's): their evaluations store only their own part (db/workload_parts.hpp).
  struct StoredWorkload {
    std::uint64_t key = 0;
    bool shared = false;
  };
  std::unordered_map<std::int64_t, StoredWorkload> stored_workloads;
  // `key`: architecture_workload_key(w), 0 for a workload without nodes.
  auto workload_to_store = [&](std::int64_t arch_id, const hw::Workload& w,
                               std::uint64_t key) -> nlohmann::json {
    if (w.nodes.empty()) return w.to_json();  // a failed evaluation's: nothing to share
    auto it = stored_workloads.find(arch_id);
    if (it == stored_workloads.end() || it->second.key != key) {
      const nlohmann::json part = db::architecture_workload_part(w.to_json());
      bool shared = with_write_retry(
          progress, [&] { return store.set_architecture_workload(arch_id, part); });
      if (!shared) {  // stored before (an earlier run, another version): share only if equal
        const auto stored = store.architecture_workload(arch_id);
        shared = stored && *stored == part;
      }
      it = stored_workloads.insert_or_assign(arch_id, StoredWorkload{key, shared}).first;
    }
    if (!it->second.shared) return w.to_json();
    return has_measurements(w) ? db::evaluation_workload_part(w.to_json())
                               : db::empty_evaluation_workload_part();
  };
  std::map<std::uint64_t, strategies::Result> finished;  // awaiting an in-order tell
  std::deque<strategies::Proposal> redo;                 // resumed: in flight when stopped
  std::uint64_t told = 0;
  int in_flight = 0, done = 0, resumed_from = 0;
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

  auto snapshot = [&] {
    for (std::size_t f = 0; f < fronts.size(); ++f) {
      auto& h = snapshots[f];
      if (h.empty() || h.back().first != done) h.emplace_back(done, archives[f].points());
    }
  };

  // What the strategy is told about an evaluation: from its metrics and costs, so a result read
  // back from the store tells exactly what it told when it arrived.
  auto result_of = [&](std::uint64_t id, const strategies::Fidelity& f, bool ok,
                       const db::EvaluationRecord& rec) {
    strategies::Result result;
    result.id = id;
    result.ok = ok;
    result.fidelity = f;
    if (ok) {
      double v = objective_value(primary, rec.metrics, rec.costs, config.default_device);
      if (std::isfinite(v)) {
        result.fitness = primary.maximize ? v : -v;
        if (config.fitness_latency_weight > 0) {
          for (const auto& c : rec.costs)
            if (c.device == config.fitness_device)
              result.fitness -= c.feasible && c.latency_ms > 0
                                    ? config.fitness_latency_weight * std::log10(c.latency_ms)
                                    : 1e9;  // infeasible on the target device: last place
        }
      }
    }
    for (const auto& o : config.pareto_objectives) {
      const double v = ok ? objective_value(o, rec.metrics, rec.costs, config.default_device)
                          : std::numeric_limits<double>::quiet_NaN();
      result.objectives.push_back(v);
      // With a joint front, an objective the architecture cannot be measured on (infeasible on
      // its device) keeps it off the front, so strategies must treat it as infeasible too.  Per
      // device fronts read costs on each device in turn; there the first device's verdict
      // must not steer the search (as before devices could be named).
      if (joint_front && ok && !std::isfinite(v)) result.violation += 1;
    }
    for (const auto& k : config.constraints) {
      auto verdict = ok ? check_constraint(k, rec.metrics, rec.costs, config.default_device)
                        : ConstraintVerdict{false, 1.0};
      result.feasible.push_back(verdict.satisfied);
      result.violation += verdict.violation;
    }
    return result;
  };

  // Counts a stored evaluation into the summary, the fronts and the history.
  auto account = [&](const db::EvaluationRecord& rec, std::int64_t eval_id,
                     const strategies::Result& result) {
    const bool ok = rec.status == "ok";
    if (!ok) ++summary.failed;
    for (const auto& c : rec.costs)
      if (!c.feasible) {
        auto& [count, reason] = summary.infeasible[c.device];
        if (count++ == 0) reason = c.infeasible_reason;
      }
    for (std::size_t f = 0; f < fronts.size(); ++f)
      if (auto p = front_point(config.pareto_objectives, config.constraints, fronts[f], ok,
                               rec.metrics, rec.costs))
        archives[f].offer(eval_id, rec.arch_id, *p);
    if (done % hv_every == 0) snapshot();
    if (result.fitness > summary.best_fitness && result.violation <= 0) {
      summary.best_fitness = result.fitness;
      summary.best_metrics.clear();
      for (const auto& [k, v] : rec.metrics.items())  // NaN is stored as null
        summary.best_metrics[k] =
            v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
    }
  };

  // A result that is already stored (resume): told from the store, never retrained.
  auto tell_stored = [&](const strategies::Proposal& p, const db::EvaluationRecord& rec) {
    // A resume replays proposals made after the last saved state: the stored result belongs to
    // this proposal only if the strategy proposed the same architecture again.
    const auto stored_arch = store.architecture(rec.arch_id);
    if (!stored_arch || stored_arch->hash != p.genome.hash())
      throw std::runtime_error(
          "--resume: proposal " + std::to_string(p.id) +
          " was proposed again as another architecture than the one stored for it (the "
          "strategy did not reproduce its proposals here, e.g. another thread count); the "
          "stored evaluations stay, start a new run to continue searching");
    strategies::Result r = result_of(p.id, p.fidelity, rec.status == "ok", rec);
    if (config.deterministic) {
      finished.emplace(p.id, std::move(r));
    } else {
      strategy->tell(r);
      ++told;
    }
  };

  // Stores one finished evaluation with its costs and the strategy's state (one transaction),
  // updates the best, the fronts and the strategy's pending results, and prints the progress
  // line.
  std::optional<Clock::time_point> last_state_save;
  auto record = [&](const JobResult& jr) {
    ++done;
    const strategies::Proposal& proposal = proposed.at(jr.id);
    const spaces::Genome& genome = proposal.genome;
    const eval::EvalResult& res = jr.result;

    db::EvaluationRecord rec;
    rec.run_id = summary.run_id;
    rec.proposal_id = static_cast<std::int64_t>(jr.id);
    // The canonical form is the costly part of storing an architecture: compute it once (the
    // genome caches it), and parse it only for a new architecture or a device that reads it.
    const std::string canonical = genome.canonical_json();
    const std::string hash = spaces::Genome::hash_of_canonical(canonical);
    nlohmann::json architecture;
    auto known = architecture_ids.find(hash);
    if (known == architecture_ids.end() || devices_want_architecture)
      architecture = nlohmann::json::parse(canonical);
    if (known == architecture_ids.end()) {
      const std::string description = space->describe(genome);
      const std::int64_t id = with_write_retry(
          progress, [&] { return store.upsert_architecture(hash, architecture, description); });
      known = architecture_ids.emplace(hash, id).first;
    }
    rec.arch_id = known->second;
    rec.metrics = res.metrics;
    // What the strategy already measured on this architecture (a one-shot strategy's
    // inherited-weight accuracy) goes next to the evaluator's metrics, under its own names.
    if (proposal_metrics) {
      const nlohmann::json known = proposal_metrics->proposal_metrics(genome);
      for (const auto& [k, v] : known.items())
        if (!rec.metrics.contains(k)) rec.metrics[k] = v;
    }
    rec.fidelity = stored_fidelity(proposal);
    const std::uint64_t workload_key =
        res.workload.nodes.empty() ? 0 : architecture_workload_key(res.workload);
    rec.workload = workload_to_store(rec.arch_id, res.workload, workload_key);
    rec.loss_curve = res.loss_curve;
    rec.wall_seconds = res.wall_seconds;
    rec.worker_rank = jr.worker_rank;
    rec.status = res.ok() ? "ok" : "failed";
    rec.error = res.error;

    if (res.ok()) {
      hw::Workload with_architecture;
      const hw::Workload* workload = &res.workload;
      if (devices_want_architecture) {
        with_architecture = res.workload;
        with_architecture.architecture = std::move(architecture);
        workload = &with_architecture;
      }
      rec.costs =
          costs.finish(jr.id, *workload, hash, has_measurements(res.workload) ? 0 : workload_key);
    } else {
      costs.forget(jr.id);
    }
    strategies::Result result = result_of(jr.id, proposal.fidelity, res.ok(), rec);
    // The tell (or its queueing) comes before the commit, so the state stored with this
    // evaluation already accounts for it.
    if (config.deterministic) {
      finished.emplace(jr.id, result);
    } else {
      strategy->tell(result);
      ++told;
    }
    proposed.erase(jr.id);
    // The state goes with the evaluation (one transaction).  In deterministic mode an older
    // state is as good as the newest: a resume re-asks the proposals made since, gets the same
    // ones, and tells those already stored from the store without training them again; so the
    // state (which grows with the run: populations, archives, histories) is saved at most once
    // per kStateSaveSeconds instead of at every evaluation.  Without deterministic mode the
    // tells' order is the arrival order, which a resume cannot replay: every evaluation saves.
    nlohmann::json state;
    if (!config.deterministic || !last_state_save ||
        std::chrono::duration<double>(Clock::now() - *last_state_save).count() >=
            kStateSaveSeconds) {
      state = search_state();
      last_state_save = Clock::now();
    }
    const std::int64_t eval_id =
        with_write_retry(progress, [&] { return store.add_evaluation(rec, state); });
    account(rec, eval_id, result);

    double el = elapsed();
    const int done_here = done - resumed_from;
    double eta = done_here > 0 ? el / done_here * std::max(0, budget - done) : 0;
    progress << "[" << std::setw(static_cast<int>(std::to_string(budget).size())) << done << "/"
             << budget << "] ";
    if (res.ok()) {
      double v = objective_value(primary, rec.metrics, rec.costs, config.default_device);
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

  auto dispatch = [&](strategies::Proposal p) {
    // A proposal whose evaluation is already stored is told from the store, never retrained.
    if (auto it = stored_by_proposal.find(p.id); it != stored_by_proposal.end()) {
      tell_stored(p, *it->second);
      return;
    }
    Job job;
    job.id = p.id;
    job.genome = p.genome;
    job.fidelity = fidelity_of(p);
    // A promoted candidate trains on with its first rung's seed (the same data order).
    job.seed =
        job_seed(config.seed,
                 p.fidelity.seed_of >= 0 ? static_cast<std::uint64_t>(p.fidelity.seed_of) : job.id);
    costs.start(p.id, p.genome);  // slow devices measure while the worker trains
    proposed.emplace(p.id, std::move(p));
    executor.submit(std::move(job));
    ++in_flight;
  };

  if (resume_run > 0) {
    // The stored evaluations, in the order they were stored, rebuild the summary, the fronts
    // and their history; the proposals pending in the saved state are told from the store or
    // run again with their own ids (and so their own seeds).
    for (const auto& rec : stored) {
      ++done;
      account(rec, rec.id, result_of(0, {}, rec.status == "ok", rec));
    }
    resumed_from = done;
    const auto pending = strategy->pending();  // a copy: telling changes it
    told = pending.empty() ? strategy->next_id() : pending.begin()->first;
    for (const auto& [id, p] : pending) {
      if (auto it = stored_by_proposal.find(id); it != stored_by_proposal.end())
        tell_stored(p, *it->second);
      else
        redo.push_back(p);
    }
  }

  // A worker given up (search/executor.hpp): a progress line, and stored at once with the
  // state (between two evaluations' commits, so it agrees with what is stored).
  executor.set_worker_timeout(config.worker_timeout_seconds);
  struct SinkReset {  // the sink refers to this call's locals; the executor outlives them
    Executor& e;
    ~SinkReset() { e.set_event_sink(nullptr); }
  } sink_reset{executor};
  executor.set_event_sink([&](const std::string& what) {
    progress << what << std::endl;
    summary.worker_events.push_back(what);
    worker_events.push_back({{"after_evaluations", done}, {"event", what}});
    // Called from inside the executor: a store error must not escape into it (it would leave
    // the given-up candidate neither re-run nor failed).  The event stays in the summary and
    // goes with the next saved state; a lasting disk error fails the next evaluation's write.
    try {
      with_write_retry(progress,
                       [&] { store.save_strategy_state(summary.run_id, search_state()); });
    } catch (const std::exception& e) {
      progress << "the event is not stored yet (" << e.what() << ")" << std::endl;
    }
  });

  progress << "search '" << config.name << "' run " << summary.run_id;
  if (resume_run > 0)
    progress << " resumed: " << done << " of " << budget << " candidates stored, " << redo.size()
             << " to run again";
  else
    progress << ": " << budget << " candidates";
  progress << ", " << executor.describe() << ", strategy " << strategy->name() << ", devices:";
  for (const auto& d : devices) progress << ' ' << d->name();
  if (devices.empty()) progress << " none";
  progress << std::endl;
  if (config.deterministic && lag < static_cast<std::uint64_t>(slots))
    progress << "deterministic: this run keeps its lag of " << lag << " proposals, so at most "
             << lag << " of the " << slots << " workers are busy at once" << std::endl;

  // Fills free slots: first the proposals a resumed run still owes, then new ones.
  auto fill_free_slots = [&] {
    while (!stopping && in_flight < slots && !redo.empty()) {
      dispatch(std::move(redo.front()));
      redo.pop_front();
    }
    if (config.deterministic) {
      // One proposal at a time, each after exactly the tells it is entitled to.
      while (!stopping && in_flight < slots && redo.empty() &&
             strategy->next_id() < static_cast<std::uint64_t>(budget)) {
        const std::uint64_t next_id = strategy->next_id();
        std::uint64_t need = next_id >= lag ? next_id - lag : 0;
        tell_ready(need);
        if (told < need) break;  // an older result is still out: wait for it
        dispatch(std::move(strategy->ask(1).front()));
      }
    } else if (!stopping && redo.empty()) {
      while (in_flight < slots && strategy->next_id() < static_cast<std::uint64_t>(budget)) {
        const auto left = static_cast<std::uint64_t>(budget) - strategy->next_id();
        const auto free = static_cast<std::uint64_t>(std::max(0, slots - in_flight));
        for (auto& p : strategy->ask(static_cast<std::size_t>(std::min(left, free))))
          dispatch(std::move(p));
      }
    }
  };

  // The executor can no longer run jobs (a stop request, every worker given up, a worker rank
  // dead): what is running is abandoned and the run ends as interrupted.
  auto executor_stopped = [&](const ExecutorInterrupted& e) {
    progress << e.what() << ": " << in_flight << " running evaluations abandoned" << std::endl;
    if (dynamic_cast<const WorkersLost*>(&e)) summary.interrupted_by = e.what();
    stopping = true;
  };
  try {
    while (true) {
      if (!stopping && (g_stop_requested.load() ||
                        (config.budget_seconds > 0 && elapsed() > config.budget_seconds))) {
        stopping = true;
        progress << (g_stop_requested ? "stop requested" : "time budget reached") << ": finishing "
                 << in_flight << " running evaluations" << std::endl;
      }
      try {
        fill_free_slots();
      } catch (const ExecutorInterrupted& e) {
        executor_stopped(e);
        break;
      }
      if (in_flight == 0) break;

      JobResult jr;
      try {
        jr = executor.wait_next();
      } catch (const ExecutorInterrupted& e) {
        executor_stopped(e);
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
      // The freed worker gets its next candidate before this result is stored: with many
      // workers finishing together, each would otherwise wait for every store write before its
      // own.  (In deterministic mode a proposal that needs this result waits for it anyway.)
      try {
        fill_free_slots();
      } catch (const ExecutorInterrupted& e) {
        record(jr);  // received: stored before the run ends
        executor_stopped(e);
        break;
      }
      record(jr);
    }
    if (!g_stop_requested && summary.interrupted_by.empty()) executor.shutdown();
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

  const bool interrupted = stopping && (g_stop_requested || !summary.interrupted_by.empty());
  // Under mpirun a dead worker rank makes the launcher SIGTERM every rank and SIGKILL them a
  // second later (odls_base_sigkill_timeout): the run is marked interrupted before the fronts
  // are written, so a kill in between still leaves it marked (a resume rebuilds the fronts).
  if (interrupted)
    with_write_retry(progress, [&] { store.finish_run(summary.run_id, "interrupted"); });

  // The fronts from the archives, and their hypervolume over the run against one reference
  // (the configured one, or the front's nadir over the whole run).
  snapshot();
  for (std::size_t f = 0; f < fronts.size(); ++f) {
    with_write_retry(progress, [&] {
      store.set_pareto(summary.run_id, fronts[f].key, archives[f].evaluation_ids());
    });
    summary.fronts[fronts[f].key] =
        front_rows(store, summary.run_id, fronts[f], config.pareto_objectives);
    const std::vector<double> ref =
        config.hypervolume_reference.empty() ? archives[f].nadir() : config.hypervolume_reference;
    if (archives[f].offered() == 0) continue;  // no eligible evaluation: no reference either
    std::vector<db::HypervolumePoint> history;
    for (const auto& [count, points] : snapshots[f])
      history.push_back({count, front_hypervolume(points, maximize, ref, config.seed), ref});
    with_write_retry(
        progress, [&] { store.set_hypervolume_history(summary.run_id, fronts[f].key, history); });
    summary.hypervolume[fronts[f].key] = history.back().hypervolume;
  }
  summary.evaluated = done;
  summary.seconds = elapsed();
  with_write_retry(progress, [&] { store.save_strategy_state(summary.run_id, search_state()); });
  summary.status = interrupted ? "interrupted" : "finished";
  with_write_retry(progress, [&] { store.finish_run(summary.run_id, summary.status); });
  if (summary.status == "finished") {
    std::error_code ec;  // best effort: leftover checkpoints waste space, never results
    std::filesystem::remove_all(checkpoint_dir(), ec);
    std::filesystem::remove(checkpoint_dir().parent_path(), ec);  // only if now empty
  }
  return summary;
}

std::vector<FrontRow> front_rows(const db::Store& store, std::int64_t run_id,
                                 const FrontSpec& front,
                                 const std::vector<ObjectiveSpec>& objectives) {
  std::vector<FrontRow> rows;
  for (auto& p : store.pareto(run_id, front.key)) {
    FrontRow r{std::move(p), {}, {}};
    if (auto a = store.architecture(r.arch_id)) r.arch_summary = summarize_genome(a->genome);
    const std::vector<db::CostRecord> costs = store.costs(r.evaluation_id);
    for (const auto& o : objectives)
      r.values.push_back(objective_value(o, r.metrics, costs, front.default_device));
    rows.push_back(std::move(r));
  }
  return rows;
}

void print_fronts(const SearchSummary& s, const std::vector<ObjectiveSpec>& objectives,
                  std::ostream& out) {
  for (const auto& [key, rows] : s.fronts) {
    out << "\nPareto front " << (key == kJointFront ? std::string("(joint)") : "on " + key) << " ("
        << rows.size() << " architectures; objectives";
    for (const auto& o : objectives) out << ' ' << o.str();
    out << ")";
    if (auto it = s.hypervolume.find(key); it != s.hypervolume.end())
      out << "; hypervolume " << std::setprecision(6) << std::defaultfloat << it->second;
    out << "\n";
    if (auto it = s.infeasible.find(key); it != s.infeasible.end())
      out << "  " << it->second.first << " candidates infeasible on " << key << ", e.g. "
          << it->second.second << "\n";
    out << std::left << std::setw(7) << "eval" << std::setw(18) << "arch" << std::right;
    for (const auto& o : objectives)
      out << std::setw(15) << (o.device.empty() ? o.metric : o.metric + "@" + o.device);
    out << "  description\n";
    for (const auto& r : rows) {
      out << std::left << std::setw(7) << r.evaluation_id << std::setw(18) << r.arch_hash
          << std::right;
      for (std::size_t k = 0; k < objectives.size(); ++k)
        out << std::setw(15) << std::setprecision(objectives[k].metric == "memory_bytes" ? 0 : 4)
            << std::fixed << r.values[k];
      std::string desc = r.arch_summary.empty() ? r.arch_description : r.arch_summary;
      if (desc.size() > 90) desc = desc.substr(0, 87) + "...";
      out << "  " << desc << "\n";
    }
  }
}

}  // namespace hwnas::search
