// The SQLite store: one file holds runs, architectures, evaluations, hardware costs and Pareto
// fronts.  RAII over sqlite3*; no raw handle leaves db/.  WAL mode so readers can query a
// running search; every multi-row write is one transaction (a crash loses at most the write in
// flight, never stored rows).  Only the coordinator process writes.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace hwnas::db {

struct DbError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr int kSchemaVersion = 7;

struct RunInfo {
  std::int64_t id = 0;
  std::string name;
  nlohmann::json config;
  std::uint64_t seed = 0;
  std::string status;                   // "running", "finished", "failed", "interrupted"
  std::string started_at, finished_at;  // ISO-8601 UTC
  std::int64_t evaluations = 0;
  // The coordinator that last ran it (schema version 5): host name, process id and its last
  // heartbeat in unix seconds (0 = never recorded).  Liveness is judged from these by search/.
  std::string host;
  std::int64_t pid = 0;
  std::int64_t heartbeat = 0;
};

struct CostRecord {
  std::string device;
  bool feasible = true;
  std::string infeasible_reason;
  double latency_ms = 0, energy_mj = 0, memory_bytes = 0;
  nlohmann::json detail = nlohmann::json::object();  // per-node breakdown, extra figures
  // Whether the activity behind the cost was "measured", "assumed", "mixed" or "none" (not
  // used by the device); "" = not recorded (costs stored before schema version 2).
  std::string activity_source;
};

struct EvaluationRecord {
  std::int64_t id = 0;  // set when read back; ignored by add_evaluation
  std::int64_t run_id = 0;
  std::int64_t arch_id = 0;
  nlohmann::json metrics = nlohmann::json::object();
  nlohmann::json fidelity = nlohmann::json::object();
  // hw::Workload::to_json(), or only the evaluation's part of it (db/workload_parts.hpp) when
  // its architecture's workload is stored; read back, always the whole workload.
  nlohmann::json workload = nlohmann::json::object();
  std::vector<double> loss_curve;
  double wall_seconds = 0;
  int worker_rank = 0;
  std::string status = "ok";  // "ok" or "failed"
  std::string error;
  std::vector<CostRecord> costs;
  std::string created_at;  // set when read back (ISO-8601 UTC)
  // The strategy's proposal id (ask order, from 0), unique within a run; -1 = not recorded
  // (evaluations stored before schema version 3).  A resumed run matches results by it.
  std::int64_t proposal_id = -1;
};

// One point of a front's hypervolume over a run: the front of the first `evaluations`
// evaluations, measured against `reference` (one value per objective, in the objectives'
// own orientation).
struct HypervolumePoint {
  std::int64_t evaluations = 0;
  double hypervolume = 0;
  std::vector<double> reference;
};

struct ParetoRow {
  std::int64_t evaluation_id = 0, arch_id = 0;
  std::string arch_hash, arch_description;
  nlohmann::json metrics;
  CostRecord cost;
};

// A figure measured once on a task's held-out TEST split by `hwnas train` (never by a search).
// Kept in its own table so no strategy, front or selection query can read it by accident.
struct TestResultRecord {
  std::int64_t id = 0;  // set when read back; ignored by add_test_result
  std::int64_t arch_id = 0;
  std::int64_t run_id = 0;  // the run whose config (task, schedule, seed) was retrained
  nlohmann::json metrics = nlohmann::json::object();  // test_accuracy, test_loss, ...
  int epochs = 0;
  std::string weights_path;  // the saved module state ("" = not saved)
  std::string created_at;    // set when read back (ISO-8601 UTC)
};

struct ArchitectureRow {
  std::int64_t id = 0;
  std::string hash, description;
  nlohmann::json genome;
};

// Not thread-safe: one Store (one SQLite connection) per thread.  Several processes may open the
// same file: one writer, any number of readers (read_only = true never creates or changes it).
class Store {
 public:
  // Opens or creates the file; creates or migrates the schema; refuses a newer schema version.
  explicit Store(const std::string& path, bool read_only = false);
  ~Store();
  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;

  int schema_version() const;

  // With a host (schema version 5), the run records its coordinator and a first heartbeat, and
  // a strategy state (not null) is saved, all in the same transaction as the new row.
  std::int64_t create_run(const std::string& name, const nlohmann::json& config, std::uint64_t seed,
                          const std::string& host = "", std::int64_t pid = 0,
                          const nlohmann::json& strategy_state = nullptr);
  void finish_run(std::int64_t run_id, const std::string& status);
  // Deduplicated by hash: returns the existing id when the architecture is already stored.
  std::int64_t upsert_architecture(const std::string& hash, const nlohmann::json& canonical_genome,
                                   const std::string& description);
  // The evaluation and all its costs in one transaction; returns the evaluation id.  With a
  // strategy state (not null), the same transaction replaces the run's saved state and bumps
  // its heartbeat, so after a crash state and stored evaluations always agree.
  std::int64_t add_evaluation(const EvaluationRecord& e,
                              const nlohmann::json& strategy_state = nullptr);
  // Marks the run running on this coordinator (host, pid, heartbeat now; finished_at cleared):
  // a new run, or one being resumed.
  void claim_run(std::int64_t run_id, const std::string& host, std::int64_t pid);
  void heartbeat(std::int64_t run_id);
  // The run's saved strategy state (Strategy::save_state()), replaced; nullopt if none stored.
  void save_strategy_state(std::int64_t run_id, const nlohmann::json& state);
  std::optional<nlohmann::json> strategy_state(std::int64_t run_id) const;
  void add_costs(std::int64_t evaluation_id, const std::vector<CostRecord>& costs);
  // Replaces the run's front for the device in one transaction.
  void set_pareto(std::int64_t run_id, const std::string& device,
                  const std::vector<std::int64_t>& evaluation_ids);

  std::vector<RunInfo> runs() const;
  std::optional<RunInfo> run(std::int64_t run_id) const;
  std::optional<std::int64_t> latest_run_id() const;
  // With costs.  Without workloads (each left an empty object) when the caller reads only
  // metrics and costs: a resume or a front of a million-evaluation run needs no node tables.
  std::vector<EvaluationRecord> evaluations(std::int64_t run_id, bool with_workloads = true) const;
  std::vector<std::int64_t> evaluation_ids(std::int64_t run_id) const;
  std::optional<ArchitectureRow> architecture(std::int64_t arch_id) const;
  // The architecture part of its workload (db/workload_parts.hpp), stored once per architecture
  // (schema 7); nullopt when none is stored.
  std::optional<nlohmann::json> architecture_workload(std::int64_t arch_id) const;
  // Stores it unless one is stored already (the first one stays); returns whether it stored.
  bool set_architecture_workload(std::int64_t arch_id, const nlohmann::json& architecture_part);
  std::vector<std::string> pareto_devices(std::int64_t run_id) const;
  // Replaces the hypervolume history of one front ("front" is the device name, or "joint").
  void set_hypervolume_history(std::int64_t run_id, const std::string& front,
                               const std::vector<HypervolumePoint>& points);
  // In order of evaluations; empty when none was recorded.
  std::vector<HypervolumePoint> hypervolume_history(std::int64_t run_id,
                                                    const std::string& front) const;
  // The fronts with a recorded history, in name order.
  std::vector<std::string> hypervolume_fronts(std::int64_t run_id) const;
  // The costs stored for one evaluation (device order).
  std::vector<CostRecord> costs(std::int64_t evaluation_id) const;
  std::vector<ParetoRow> pareto(std::int64_t run_id, const std::string& device) const;

  // Additions beyond the first contract (used by `hwnas show`).
  std::optional<std::int64_t> architecture_id(const std::string& hash) const;
  // Ids of architectures whose hash starts with `prefix`, at most `limit` of them (ascending).
  std::vector<std::int64_t> architecture_ids_by_hash_prefix(const std::string& prefix,
                                                            int limit = 2) const;
  std::vector<EvaluationRecord> evaluations_of_architecture(std::int64_t arch_id) const;
  // Held-out test figures (`hwnas train`); read only by `hwnas show` and `hwnas train`.
  // The cost cache: costs that take seconds to get (external measuring devices), by architecture
  // hash, device fingerprint (hw::device_fingerprint) and batch, shared by every run in the file.
  // CostRecord::device is not part of the key: it is set to `device` when read back.
  std::optional<CostRecord> cached_cost(const std::string& arch_hash, const std::string& device,
                                        const std::string& fingerprint, int batch) const;
  // Inserts or replaces.
  void put_cached_cost(const std::string& arch_hash, const std::string& fingerprint, int batch,
                       const CostRecord& cost);

  std::int64_t add_test_result(const TestResultRecord& r);
  std::vector<TestResultRecord> test_results(std::int64_t arch_id) const;  // in id order

  const std::string& path() const;
  bool read_only() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hwnas::db
