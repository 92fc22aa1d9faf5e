// The search loop: ask the strategy, dispatch to the executor, cost every result on every
// device, store it at once (one transaction per evaluation, with its proposal id), tell the
// strategy every objective and constraint verdict, keep each front's non-dominated archive, and
// at the end store and print the fronts (one per device, or one joint front when objectives
// name their devices; see search/fronts.hpp) and their hypervolume history.
//
// Determinism: with `deterministic` on, proposal i is made after exactly the results of
// proposals 0..i-2*slots-1 have been told, in id order, so the same config, seed and slot count
// give the same sequence of proposals whatever order workers finish in.  A free worker gets
// new work at once unless some candidate is still running two full rounds (2*slots proposals)
// behind; with `deterministic` off, it always does and tells happen on arrival.
//
// Resume: each stored evaluation is committed together with the strategy's saved state (and the
// lag above), so after a kill the store holds a state that agrees with its evaluations.  A
// resumed run restores that state, re-dispatches the proposals that were in flight with their
// own ids and seeds, tells the ones already stored from the store (never retraining them), and
// keeps the run's original lag, so in deterministic mode it ends with exactly the evaluations
// of an uninterrupted run, also on another number of workers (which then use at most `lag`
// slots at once).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "db/store.hpp"
#include "hwmodels/device.hpp"
#include "search/config.hpp"
#include "search/executor.hpp"
#include "search/fronts.hpp"
#include "strategies/oneshot.hpp"

namespace hwnas::search {

// A front member with a one-line summary of its graph for printing.
struct FrontRow : db::ParetoRow {
  std::string arch_summary;    // "conv c16 s2 | pool | conv c32 8b | global_pool"
  std::vector<double> values;  // one per objective, read as the front reads them
};

struct SearchSummary {
  std::int64_t run_id = 0;
  int evaluated = 0;
  int failed = 0;
  double best_fitness = 0;
  std::map<std::string, double> best_metrics;  // of the best-fitness candidate
  double seconds = 0;
  std::string status;  // "finished" | "interrupted"
  // Why an interrupted run stopped when no signal asked it to (every worker given up).
  std::string interrupted_by;
  // Workers given up (worker_timeout_seconds), one line each, this start of the run only; all
  // starts' lines are stored in the run's search state under "worker_events".
  std::vector<std::string> worker_events;
  std::map<std::string, std::vector<FrontRow>> fronts;  // by front key (device or "joint")
  std::map<std::string, double> hypervolume;            // final hypervolume per front
  // Per device: candidates it cannot run, and the first reason given.
  std::map<std::string, std::pair<int, std::string>> infeasible;  // device name -> front
};

// Set by the SIGINT/SIGTERM/SIGHUP handler: stop proposing, finish in-flight work, store fronts.
extern std::atomic<bool> g_stop_requested;
// The signal that asked to stop (0 = none); an interrupted search exits with 128 + it.
extern std::atomic<int> g_stop_signal;

// Makes the one-shot environment lent to one-shot strategies; empty = make_oneshot_environment
// (under mpirun: the data-parallel one of search/mpi_data_parallel.hpp).
using OneShotMaker = std::function<std::shared_ptr<const strategies::OneShotEnvironment>(
    const SearchConfig&, std::ostream&)>;

// Runs a new search, or continues run `resume_run` (> 0, already checked by
// find_resumable_run in search/resume.hpp).
SearchSummary run_search(const SearchConfig& config, Executor& executor, db::Store& store,
                         std::ostream& progress, std::int64_t resume_run = 0,
                         const OneShotMaker& make_oneshot = {});

// The fronts a run builds (search/fronts.hpp): one per device name in `device_names` when the
// config's objectives name no device, else one joint front.
std::vector<FrontSpec> front_specs(const SearchConfig& config,
                                   const std::vector<std::string>& device_names);

// A device's cost as stored (per-node breakdown left out: `hw predict` recomputes it).  A
// non-empty fingerprint is kept in the cost's detail as "device_fingerprint", so `hwnas rescore`
// can tell a different model stored under the same device name.
db::CostRecord to_record(const std::string& device, const hw::Cost& cost,
                         const std::string& fingerprint = "");

// One line per node of a genome's JSON (kind and short hyperparameters), in node order.
std::string summarize_genome(const nlohmann::json& genome);
std::vector<FrontRow> front_rows(const db::Store& store, std::int64_t run_id,
                                 const FrontSpec& front,
                                 const std::vector<ObjectiveSpec>& objectives);

// Prints each front as a table (with its hypervolume when known).
void print_fronts(const SearchSummary& s, const std::vector<ObjectiveSpec>& objectives,
                  std::ostream& out);

}  // namespace hwnas::search
