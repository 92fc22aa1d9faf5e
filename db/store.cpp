#include "db/store.hpp"

#include <filesystem>
#include <limits>
#include <memory>
#include <set>
#include <unordered_map>

#include "db/sqlite.hpp"
#include "db/workload_parts.hpp"

namespace hwnas::db {

namespace {

constexpr const char* kInsertCost = R"sql(
  INSERT INTO costs (evaluation_id, device, feasible, reason, latency_ms, energy_mj,
                     memory_bytes, detail, activity_source)
  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
  ON CONFLICT (evaluation_id, device) DO UPDATE SET
    feasible = excluded.feasible, reason = excluded.reason, latency_ms = excluded.latency_ms,
    energy_mj = excluded.energy_mj, memory_bytes = excluded.memory_bytes,
    detail = excluded.detail, activity_source = excluded.activity_source)sql";

constexpr const char* kInsertEvaluation = R"sql(
  INSERT INTO evaluations (run_id, arch_id, metrics, fidelity, workload, loss_curve,
                           wall_seconds, worker_rank, status, error, proposal_id)
  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11))sql";

constexpr const char* kInsertArchitecture = R"sql(
  INSERT INTO architectures (hash, genome, description) VALUES (?1, ?2, ?3)
  ON CONFLICT (hash) DO NOTHING)sql";

constexpr const char* kSelectArchitectureId = "SELECT id FROM architectures WHERE hash = ?1";
constexpr const char* kSelectArchitectureWorkload =
    "SELECT workload FROM architectures WHERE id = ?1";
constexpr const char* kHasArchitectureWorkload =
    "SELECT workload IS NOT NULL FROM architectures WHERE id = ?1";
constexpr const char* kSetArchitectureWorkload =
    "UPDATE architectures SET workload = ?1 WHERE id = ?2 AND workload IS NULL";

// PRAGMA application_id marks the file as ours ('HWNS'), so we never write our schema into some
// other program's database by mistake.
constexpr std::int64_t kApplicationId = 0x48574E53;

constexpr const char* kNow = "strftime('%Y-%m-%dT%H:%M:%SZ','now')";
constexpr const char* kUnixNow = "CAST(strftime('%s','now') AS INTEGER)";

constexpr const char* kUpsertStrategyState = R"sql(
  INSERT INTO strategy_states (run_id, state) VALUES (?1, ?2)
  ON CONFLICT (run_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at)sql";

constexpr const char* kHeartbeat =
    "UPDATE runs SET heartbeat = CAST(strftime('%s','now') AS INTEGER) WHERE id = ?1";

// ---- schema ------------------------------------------------------------------------------------
// Version 1.  JSON columns are TEXT checked with json_valid so json_extract always works on them.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE runs (
  id          INTEGER PRIMARY KEY,
  name        TEXT    NOT NULL,
  config      TEXT    NOT NULL CHECK (json_valid(config)),
  seed        INTEGER NOT NULL,  -- uint64 stored by its two's-complement bit pattern
  status      TEXT    NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
  started_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
  finished_at TEXT
);

CREATE TABLE architectures (
  id          INTEGER PRIMARY KEY,
  hash        TEXT NOT NULL UNIQUE,
  genome      TEXT NOT NULL CHECK (json_valid(genome)),  -- canonical JSON
  description TEXT NOT NULL DEFAULT '',
  created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now'))
);

CREATE TABLE evaluations (
  id           INTEGER PRIMARY KEY,
  run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  arch_id      INTEGER NOT NULL REFERENCES architectures(id),
  metrics      TEXT    NOT NULL CHECK (json_valid(metrics)),
  fidelity     TEXT    NOT NULL CHECK (json_valid(fidelity)),
  workload     TEXT    NOT NULL CHECK (json_valid(workload)),
  loss_curve   TEXT    NOT NULL CHECK (json_valid(loss_curve)),  -- JSON array
  wall_seconds REAL,
  worker_rank  INTEGER NOT NULL DEFAULT 0,
  status       TEXT    NOT NULL CHECK (status IN ('ok', 'failed')),
  error        TEXT    NOT NULL DEFAULT '',
  created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now'))
);
CREATE INDEX evaluations_run  ON evaluations(run_id);
CREATE INDEX evaluations_arch ON evaluations(arch_id);

CREATE TABLE costs (
  evaluation_id INTEGER NOT NULL REFERENCES evaluations(id) ON DELETE CASCADE,
  device        TEXT    NOT NULL CHECK (length(device) > 0),
  feasible      INTEGER NOT NULL CHECK (feasible IN (0, 1)),
  reason        TEXT    NOT NULL DEFAULT '',
  latency_ms    REAL,   -- NULL: not computed (NaN)
  energy_mj     REAL,
  memory_bytes  REAL,
  detail        TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(detail)),
  PRIMARY KEY (evaluation_id, device)
);
CREATE INDEX costs_device ON costs(device);

CREATE TABLE pareto (
  run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  device        TEXT    NOT NULL,
  evaluation_id INTEGER NOT NULL REFERENCES evaluations(id) ON DELETE CASCADE,
  position      INTEGER NOT NULL,  -- order along the front, as given by the writer
  PRIMARY KEY (run_id, device, evaluation_id)
);
CREATE INDEX pareto_evaluation ON pareto(evaluation_id);

-- Flat views for people querying the file with the sqlite3 shell or pandas.
CREATE VIEW v_runs AS
SELECT r.id, r.name, r.status, r.seed, r.started_at, r.finished_at,
       (SELECT count(*) FROM evaluations e WHERE e.run_id = r.id) AS evaluations,
       (SELECT count(*) FROM evaluations e WHERE e.run_id = r.id AND e.status = 'failed')
         AS failed
FROM runs r;

CREATE VIEW v_evaluations AS
SELECT e.id AS evaluation_id, e.run_id, e.arch_id, a.hash, a.description, e.status,
       json_extract(e.metrics, '$.val_accuracy') AS val_accuracy,
       json_extract(e.metrics, '$.val_loss')     AS val_loss,
       json_extract(e.metrics, '$.params')       AS params,
       e.wall_seconds, e.worker_rank, e.error, e.created_at
FROM evaluations e JOIN architectures a ON a.id = e.arch_id;

CREATE VIEW v_costs AS
SELECT c.evaluation_id, e.run_id, e.arch_id, a.hash, c.device,
       json_extract(e.metrics, '$.val_accuracy') AS val_accuracy,
       c.feasible, c.reason, c.latency_ms, c.energy_mj, c.memory_bytes
FROM costs c
JOIN evaluations e ON e.id = c.evaluation_id
JOIN architectures a ON a.id = e.arch_id;

CREATE VIEW v_pareto AS
SELECT p.run_id, p.device, p.position, p.evaluation_id, e.arch_id, a.hash, a.description,
       json_extract(e.metrics, '$.val_accuracy') AS val_accuracy,
       c.feasible, c.latency_ms, c.energy_mj, c.memory_bytes
FROM pareto p
JOIN evaluations e ON e.id = p.evaluation_id
JOIN architectures a ON a.id = e.arch_id
LEFT JOIN costs c ON c.evaluation_id = p.evaluation_id AND c.device = p.device;
)sql";

// Version 2: each cost says where its activity figures came from; v_costs shows it.  Rows
// stored before keep NULL (not recorded).
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE costs ADD COLUMN activity_source TEXT
  CHECK (activity_source IN ('measured', 'assumed', 'mixed', 'none'));

DROP VIEW v_costs;
CREATE VIEW v_costs AS
SELECT c.evaluation_id, e.run_id, e.arch_id, a.hash, c.device,
       json_extract(e.metrics, '$.val_accuracy') AS val_accuracy,
       c.feasible, c.reason, c.latency_ms, c.energy_mj, c.memory_bytes, c.activity_source
FROM costs c
JOIN evaluations e ON e.id = c.evaluation_id
JOIN architectures a ON a.id = e.arch_id;
)sql";

// Version 3: each evaluation records the strategy's proposal id (unique within a run, so a
// resumed run can match results to proposals), and each front's hypervolume over the run.
constexpr const char* kSchemaV3 = R"sql(
ALTER TABLE evaluations ADD COLUMN proposal_id INTEGER CHECK (proposal_id >= 0);
CREATE UNIQUE INDEX evaluations_run_proposal ON evaluations(run_id, proposal_id)
  WHERE proposal_id IS NOT NULL;

CREATE TABLE hypervolume_history (
  run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  front       TEXT    NOT NULL CHECK (length(front) > 0),  -- device name, or 'joint'
  evaluations INTEGER NOT NULL CHECK (evaluations >= 0),
  hypervolume REAL    NOT NULL,
  reference   TEXT    NOT NULL CHECK (json_valid(reference)),  -- JSON array, one per objective
  PRIMARY KEY (run_id, front, evaluations)
);
)sql";

// Version 4: held-out test figures of retrained architectures (`hwnas train`), in their own
// table that no search query reads.
constexpr const char* kSchemaV4 = R"sql(
CREATE TABLE test_results (
  id           INTEGER PRIMARY KEY,
  arch_id      INTEGER NOT NULL REFERENCES architectures(id),
  run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  metrics      TEXT    NOT NULL CHECK (json_valid(metrics)),
  epochs       INTEGER NOT NULL,
  weights_path TEXT    NOT NULL DEFAULT '',
  created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now'))
);
CREATE INDEX test_results_arch ON test_results(arch_id);
)sql";

// Version 5: liveness and resume.  Each run records its coordinator's host, pid and a heartbeat
// (unix seconds, bumped with every stored evaluation and periodically by the loop), so a reader
// can tell a dead run from a live one; and the strategy's saved state, written in the same
// transaction as each evaluation, so a killed run resumes from a state that agrees with its
// stored evaluations.
constexpr const char* kSchemaV5 = R"sql(
ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN heartbeat INTEGER;  -- unix seconds; NULL = never (before version 5)

CREATE TABLE strategy_states (
  run_id      INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
  state       TEXT    NOT NULL CHECK (json_valid(state)),  -- Strategy::save_state()
  updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now'))
);
)sql";

// Version 6: the cost cache.  Costs that take seconds (a real measurement by an external device)
// are kept by (architecture hash, device fingerprint, batch), across runs.
constexpr const char* kSchemaV6 = R"sql(
CREATE TABLE cost_cache (
  arch_hash   TEXT    NOT NULL CHECK (length(arch_hash) > 0),
  fingerprint TEXT    NOT NULL CHECK (length(fingerprint) > 0),
  batch       INTEGER NOT NULL CHECK (batch >= 1),
  cost        TEXT    NOT NULL CHECK (json_valid(cost)),
  created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
  PRIMARY KEY (arch_hash, fingerprint, batch)
) WITHOUT ROWID;
)sql";

// Version 7: the workload is a property of the architecture, so it can be stored once, with
// the architecture; an evaluation then keeps only what it measured (db/workload_parts.hpp).
// Rows stored before keep their whole workload in evaluations.workload, so nothing is rewritten.
constexpr const char* kSchemaV7 = R"sql(
ALTER TABLE architectures ADD COLUMN workload TEXT CHECK (workload IS NULL OR json_valid(workload));
)sql";

// migrations[v] takes the schema from version v to v + 1; each runs inside the caller's
// transaction together with the user_version bump, so a failed migration leaves the old schema.
using Migration = void (*)(Connection&);
void migrate_0_to_1(Connection& c) { c.exec(kSchemaV1); }
void migrate_1_to_2(Connection& c) { c.exec(kSchemaV2); }
void migrate_2_to_3(Connection& c) { c.exec(kSchemaV3); }
void migrate_3_to_4(Connection& c) { c.exec(kSchemaV4); }
void migrate_4_to_5(Connection& c) { c.exec(kSchemaV5); }
void migrate_5_to_6(Connection& c) { c.exec(kSchemaV6); }
void migrate_6_to_7(Connection& c) { c.exec(kSchemaV7); }
constexpr Migration kMigrations[] = {migrate_0_to_1, migrate_1_to_2, migrate_2_to_3, migrate_3_to_4,
                                     migrate_4_to_5, migrate_5_to_6, migrate_6_to_7};
static_assert(std::size(kMigrations) == kSchemaVersion,
              "one migration per schema version: add migrate_N_to_N+1 with kSchemaVersion");

// NaN is not JSON: nlohmann writes it as null, so read null back as NaN.
double json_number_or_nan(const nlohmann::json& j) {
  return j.is_number() ? j.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

nlohmann::json parse_json(const std::string& text, std::string_view what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw DbError("corrupt JSON in " + std::string(what) + ": " + e.what());
  }
}

std::string dump_json(const nlohmann::json& j) {
  // replace: invalid UTF-8 in a free-text field must not make a whole evaluation unstorable.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void check_status(const std::string& status) {
  static const std::set<std::string> ok{"running", "finished", "failed", "interrupted"};
  if (!ok.count(status))
    throw DbError("invalid run status '" + status +
                  "' (expected running, finished, failed or interrupted)");
}

void check_activity_source(const std::string& s) {
  if (!s.empty() && s != "measured" && s != "assumed" && s != "mixed" && s != "none")
    throw DbError("invalid activity_source '" + s +
                  "' (expected measured, assumed, mixed, none, or empty for not recorded)");
}

}  // namespace

struct Store::Impl {
  std::string path;
  Connection conn;
  // The hot statements of a search (one evaluation, its costs, its architecture), prepared once
  // per connection instead of once per row.  After `conn`, so they are finalised first.
  std::unordered_map<const char*, std::unique_ptr<Statement>> prepared_;

  // Resets a cached statement when the use ends, also when a step threw.
  struct Lease {
    Statement& st;
    ~Lease() { st.reset(); }
  };
  Statement& prepared(const char* sql) {
    auto& p = prepared_[sql];
    if (!p) p = std::make_unique<Statement>(conn, sql);
    return *p;
  }

  Impl(const std::string& p, bool read_only) : path(p), conn(open(p, read_only)) {}

  static Connection open(const std::string& p, bool read_only) {
    // SQLITE_OPEN_READONLY already refuses a missing file, but with "unable to open database
    // file"; say plainly what is wrong.
    if (read_only && !std::filesystem::exists(p))
      throw DbError("no such database file (a read-only open never creates one)");
    if (std::filesystem::is_directory(p)) throw DbError("is a directory, not a database file");
    return Connection(p, read_only);
  }

  void configure() {
    // busy_timeout: a reader waits up to 5 s for a checkpoint or a writer's commit instead of
    // failing at once with SQLITE_BUSY.
    conn.exec("PRAGMA busy_timeout = 5000");
    conn.exec("PRAGMA foreign_keys = ON");
  }

  // After the identity check: a foreign SQLite file must be refused untouched, not converted to
  // WAL first (the journal mode is persistent in the file).
  void enable_wal() {
    if (!conn.read_only()) {
      // WAL lets readers query a running search; NORMAL sync is durable across process crashes
      // (only a power loss may drop the last commits) and much faster than FULL in WAL mode.
      auto mode = conn.query_text("PRAGMA journal_mode = WAL");
      if (!mode || *mode != "wal")
        throw DbError("cannot switch to WAL journal mode (got '" + mode.value_or("") + "')");
      conn.exec("PRAGMA synchronous = NORMAL");
    }
  }

  void check_identity_and_migrate() {
    std::int64_t app = conn.query_int("PRAGMA application_id");
    std::int64_t version = conn.query_int("PRAGMA user_version");
    if (app != 0 && app != kApplicationId)
      throw DbError("not an hwnas database (application_id " + std::to_string(app) + ")");
    if (version > kSchemaVersion)
      throw DbError("database schema version " + std::to_string(version) +
                    " is newer than this hwnas build supports (" + std::to_string(kSchemaVersion) +
                    "); upgrade hwnas to read it");
    if (version == kSchemaVersion) return;
    if (version == 0 && app == 0 && conn.query_int("SELECT count(*) FROM sqlite_schema") > 0)
      throw DbError("not an hwnas database (it has tables but no hwnas schema version)");
    if (conn.read_only()) {
      if (version == 0) throw DbError("not an hwnas database (empty file, no schema)");
      throw DbError("database schema version " + std::to_string(version) + " is older than " +
                    std::to_string(kSchemaVersion) +
                    "; open it once read-write (any writing hwnas command) to migrate");
    }
    Transaction tx(conn);
    // Re-read under the write lock: another process may have migrated meanwhile.
    version = conn.query_int("PRAGMA user_version");
    for (auto v = version; v < kSchemaVersion; ++v) {
      try {
        kMigrations[v](conn);
      } catch (const DbError& e) {
        throw DbError("migration from schema version " + std::to_string(v) + " to " +
                      std::to_string(v + 1) + " failed: " + e.what());
      }
      conn.exec("PRAGMA user_version = " + std::to_string(v + 1));
    }
    conn.exec("PRAGMA application_id = " + std::to_string(kApplicationId));
    tx.commit();
  }

  void insert_costs(std::int64_t evaluation_id, const std::vector<CostRecord>& costs) {
    // Upsert: re-scoring an evaluation on a device replaces that device's cost.
    Statement& st = prepared(kInsertCost);
    Lease lease{st};
    std::set<std::string> seen;
    for (const auto& c : costs) {
      if (!c.device.empty() && !seen.insert(c.device).second)
        throw DbError("evaluation " + std::to_string(evaluation_id) + ": device '" + c.device +
                      "' appears twice in one cost list");
      check_activity_source(c.activity_source);
      st.bind(1, evaluation_id)
          .bind(2, c.device)
          .bind(3, c.feasible ? 1 : 0)
          .bind(4, c.infeasible_reason)
          .bind(5, c.latency_ms)
          .bind(6, c.energy_mj)
          .bind(7, c.memory_bytes)
          .bind(8, dump_json(c.detail.is_null() ? nlohmann::json::object() : c.detail));
      if (c.activity_source.empty())
        st.bind_null(9);
      else
        st.bind(9, c.activity_source);
      try {
        st.run();
      } catch (const DbError& e) {
        throw DbError("storing cost of evaluation " + std::to_string(evaluation_id) +
                      " on device '" + c.device + "': " + e.what());
      }
      st.reset();
    }
  }

  bool has_architecture_workload(std::int64_t arch_id) {
    Statement& sel = prepared(kHasArchitectureWorkload);
    Lease lease{sel};
    sel.bind(1, arch_id);
    return sel.step() && sel.get_int(0) != 0;
  }

  std::optional<nlohmann::json> architecture_workload(std::int64_t arch_id) {
    Statement& sel = prepared(kSelectArchitectureWorkload);
    Lease lease{sel};
    sel.bind(1, arch_id);
    if (!sel.step() || sel.is_null(0)) return std::nullopt;
    return parse_json(sel.get_text(0), "architectures.workload");
  }

  void upsert_strategy_state(std::int64_t run_id, const nlohmann::json& state) {
    Statement& st = prepared(kUpsertStrategyState);
    Lease lease{st};
    st.bind(1, run_id).bind(2, dump_json(state));
    try {
      st.run();
    } catch (const DbError& e) {
      throw DbError("storing the strategy state of run " + std::to_string(run_id) + ": " +
                    e.what());
    }
  }

  static CostRecord read_cost(const Statement& st, int col) {
    CostRecord c;
    c.device = st.get_text(col);
    c.feasible = st.get_int(col + 1) != 0;
    c.infeasible_reason = st.get_text(col + 2);
    c.latency_ms = st.get_double(col + 3);
    c.energy_mj = st.get_double(col + 4);
    c.memory_bytes = st.get_double(col + 5);
    c.detail = parse_json(st.get_text(col + 6), "costs.detail");
    if (!st.is_null(col + 7)) c.activity_source = st.get_text(col + 7);
    return c;
  }

  // Evaluations (with their costs) whose `column` equals id, in id order, from one snapshot.
  std::vector<EvaluationRecord> load_evaluations(const char* column, std::int64_t id,
                                                 bool with_workloads = true) {
    Transaction snapshot(conn, Transaction::Mode::Read);
    std::vector<EvaluationRecord> out;
    std::unordered_map<std::int64_t, std::size_t> index;
    std::set<std::int64_t> needs_architecture;  // rows that keep only their evaluation's part
    {
      Statement st(conn, std::string(R"sql(
        SELECT id, run_id, arch_id, metrics, fidelity,
               CASE WHEN ?2 THEN workload ELSE '{}' END, loss_curve, wall_seconds,
               worker_rank, status, error, created_at, proposal_id
        FROM evaluations WHERE )sql") +
                             column + " = ?1 ORDER BY id");
      st.bind(1, id).bind(2, with_workloads ? 1 : 0);
      while (st.step()) {
        EvaluationRecord e;
        e.id = st.get_int(0);
        e.run_id = st.get_int(1);
        e.arch_id = st.get_int(2);
        e.metrics = parse_json(st.get_text(3), "evaluations.metrics");
        e.fidelity = parse_json(st.get_text(4), "evaluations.fidelity");
        e.workload = parse_json(st.get_text(5), "evaluations.workload");
        if (is_evaluation_workload_part(e.workload)) needs_architecture.insert(e.arch_id);
        for (const auto& v : parse_json(st.get_text(6), "evaluations.loss_curve"))
          e.loss_curve.push_back(json_number_or_nan(v));
        e.wall_seconds = st.get_double(7);
        e.worker_rank = static_cast<int>(st.get_int(8));
        e.status = st.get_text(9);
        e.error = st.get_text(10);
        e.created_at = st.get_text(11);
        e.proposal_id = st.is_null(12) ? -1 : st.get_int(12);
        index[e.id] = out.size();
        out.push_back(std::move(e));
      }
    }
    // Each architecture's workload is read and parsed once, however many evaluations share it.
    for (std::int64_t arch : needs_architecture) {
      const auto shared = architecture_workload(arch);
      if (!shared)
        throw DbError("architecture " + std::to_string(arch) +
                      " has no stored workload, but evaluations keep only their part of it");
      for (auto& e : out)
        if (e.arch_id == arch && is_evaluation_workload_part(e.workload))
          e.workload = merge_workload_parts(*shared, std::move(e.workload));
    }
    Statement st(conn, std::string(R"sql(
      SELECT c.evaluation_id, c.device, c.feasible, c.reason, c.latency_ms, c.energy_mj,
             c.memory_bytes, c.detail, c.activity_source
      FROM costs c JOIN evaluations e ON e.id = c.evaluation_id
      WHERE e.)sql") + column +
                           " = ?1 ORDER BY c.evaluation_id, c.device");
    st.bind(1, id);
    while (st.step()) {
      auto it = index.find(st.get_int(0));
      if (it != index.end()) out[it->second].costs.push_back(read_cost(st, 1));
    }
    snapshot.commit();
    return out;
  }
};

Store::Store(const std::string& path, bool read_only) {
  try {
    impl_ = std::make_unique<Impl>(path, read_only);
    impl_->configure();
    impl_->check_identity_and_migrate();
    impl_->enable_wal();
  } catch (const DbError& e) {
    throw DbError(path + ": " + e.what());
  }
}

Store::~Store() = default;
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;

const std::string& Store::path() const { return impl_->path; }
bool Store::read_only() const { return impl_->conn.read_only(); }

int Store::schema_version() const {
  return static_cast<int>(impl_->conn.query_int("PRAGMA user_version"));
}

std::int64_t Store::create_run(const std::string& name, const nlohmann::json& config,
                               std::uint64_t seed, const std::string& host, std::int64_t pid,
                               const nlohmann::json& strategy_state) {
  Transaction tx(impl_->conn);
  Statement st(impl_->conn,
               std::string("INSERT INTO runs (name, config, seed, host, pid, heartbeat) VALUES "
                           "(?1, ?2, ?3, ?4, ?5, CASE WHEN ?4 = '' THEN NULL ELSE ") +
                   kUnixNow + " END)");
  st.bind(1, name)
      .bind(2, dump_json(config))
      .bind(3, static_cast<std::int64_t>(seed))
      .bind(4, host)
      .bind(5, pid);
  st.run();
  const std::int64_t id = impl_->conn.last_insert_rowid();
  if (!strategy_state.is_null()) impl_->upsert_strategy_state(id, strategy_state);
  tx.commit();
  return id;
}

void Store::finish_run(std::int64_t run_id, const std::string& status) {
  check_status(status);
  Statement st(impl_->conn, std::string("UPDATE runs SET status = ?1, finished_at = ") + kNow +
                                " WHERE id = ?2");
  st.bind(1, status).bind(2, run_id);
  st.run();
  if (impl_->conn.changes() == 0)
    throw DbError("finish_run: no run with id " + std::to_string(run_id));
}

std::int64_t Store::upsert_architecture(const std::string& hash,
                                        const nlohmann::json& canonical_genome,
                                        const std::string& description) {
  if (hash.empty()) throw DbError("upsert_architecture: empty hash");
  auto& c = impl_->conn;
  Transaction tx(c);
  // DO NOTHING on conflict: the first stored genome and description win, so ids stay stable.
  Statement& ins = impl_->prepared(kInsertArchitecture);
  {
    Impl::Lease lease{ins};
    ins.bind(1, hash).bind(2, dump_json(canonical_genome)).bind(3, description);
    ins.run();
  }
  std::int64_t id = 0;
  if (c.changes() > 0) {
    id = c.last_insert_rowid();
  } else {
    Statement& sel = impl_->prepared(kSelectArchitectureId);
    Impl::Lease lease{sel};
    sel.bind(1, hash);
    if (!sel.step()) throw DbError("upsert_architecture: hash '" + hash + "' vanished");
    id = sel.get_int(0);
  }
  tx.commit();
  return id;
}

std::int64_t Store::add_evaluation(const EvaluationRecord& e,
                                   const nlohmann::json& strategy_state) {
  if (e.status != "ok" && e.status != "failed")
    throw DbError("add_evaluation: invalid status '" + e.status + "' (expected ok or failed)");
  auto& c = impl_->conn;
  Transaction tx(c);
  if (is_evaluation_workload_part(e.workload) && !impl_->has_architecture_workload(e.arch_id))
    throw DbError("add_evaluation (run " + std::to_string(e.run_id) + ", architecture " +
                  std::to_string(e.arch_id) +
                  "): the workload is an evaluation's part only, but the architecture has no "
                  "stored workload (set_architecture_workload first)");
  Statement& st = impl_->prepared(kInsertEvaluation);
  std::int64_t id = 0;
  {
    Impl::Lease lease{st};
    nlohmann::json curve = nlohmann::json::array();
    for (double v : e.loss_curve) curve.push_back(v);
    st.bind(1, e.run_id)
        .bind(2, e.arch_id)
        .bind(3, dump_json(e.metrics.is_null() ? nlohmann::json::object() : e.metrics))
        .bind(4, dump_json(e.fidelity.is_null() ? nlohmann::json::object() : e.fidelity))
        .bind(5, dump_json(e.workload.is_null() ? nlohmann::json::object() : e.workload))
        .bind(6, dump_json(curve))
        .bind(7, e.wall_seconds)
        .bind(8, e.worker_rank)
        .bind(9, e.status)
        .bind(10, e.error);
    if (e.proposal_id >= 0)
      st.bind(11, e.proposal_id);
    else
      st.bind_null(11);
    try {
      st.run();
    } catch (const DbError& err) {
      throw DbError("add_evaluation (run " + std::to_string(e.run_id) + ", architecture " +
                    std::to_string(e.arch_id) + "): " + err.what());
    }
    id = c.last_insert_rowid();
  }
  impl_->insert_costs(id, e.costs);
  if (!strategy_state.is_null()) {
    impl_->upsert_strategy_state(e.run_id, strategy_state);
    Statement& hb = impl_->prepared(kHeartbeat);
    Impl::Lease lease{hb};
    hb.bind(1, e.run_id);
    hb.run();
  }
  tx.commit();
  return id;
}

std::optional<nlohmann::json> Store::architecture_workload(std::int64_t arch_id) const {
  return impl_->architecture_workload(arch_id);
}

bool Store::set_architecture_workload(std::int64_t arch_id,
                                      const nlohmann::json& architecture_part) {
  if (!architecture_part.is_object() || !architecture_part.contains("nodes") ||
      is_evaluation_workload_part(architecture_part))
    throw DbError("set_architecture_workload: architecture " + std::to_string(arch_id) +
                  ": expected a workload's architecture part (with \"nodes\")");
  Statement& st = impl_->prepared(kSetArchitectureWorkload);
  Impl::Lease lease{st};
  st.bind(1, dump_json(architecture_part)).bind(2, arch_id);
  st.run();
  return impl_->conn.changes() > 0;
}

void Store::claim_run(std::int64_t run_id, const std::string& host, std::int64_t pid) {
  Statement st(impl_->conn, std::string("UPDATE runs SET status = 'running', finished_at = NULL, "
                                        "host = ?1, pid = ?2, heartbeat = ") +
                                kUnixNow + " WHERE id = ?3");
  st.bind(1, host).bind(2, pid).bind(3, run_id);
  st.run();
  if (impl_->conn.changes() == 0)
    throw DbError("claim_run: no run with id " + std::to_string(run_id));
}

void Store::heartbeat(std::int64_t run_id) {
  Statement& st = impl_->prepared(kHeartbeat);
  Impl::Lease lease{st};
  st.bind(1, run_id);
  st.run();
}

void Store::save_strategy_state(std::int64_t run_id, const nlohmann::json& state) {
  Transaction tx(impl_->conn);
  impl_->upsert_strategy_state(run_id, state);
  tx.commit();
}

std::optional<nlohmann::json> Store::strategy_state(std::int64_t run_id) const {
  Statement st(impl_->conn, "SELECT state FROM strategy_states WHERE run_id = ?1");
  st.bind(1, run_id);
  if (!st.step()) return std::nullopt;
  return parse_json(st.get_text(0), "strategy_states.state");
}

void Store::add_costs(std::int64_t evaluation_id, const std::vector<CostRecord>& costs) {
  Transaction tx(impl_->conn);
  impl_->insert_costs(evaluation_id, costs);
  tx.commit();
}

void Store::set_pareto(std::int64_t run_id, const std::string& device,
                       const std::vector<std::int64_t>& evaluation_ids) {
  auto& c = impl_->conn;
  Transaction tx(c);
  {
    Statement del(c, "DELETE FROM pareto WHERE run_id = ?1 AND device = ?2");
    del.bind(1, run_id).bind(2, device);
    del.run();
  }
  Statement owner(c, "SELECT run_id FROM evaluations WHERE id = ?1");
  Statement ins(c,
                "INSERT INTO pareto (run_id, device, evaluation_id, position) "
                "VALUES (?1, ?2, ?3, ?4)");
  std::int64_t pos = 0;
  for (auto id : evaluation_ids) {
    // A front mixing runs would be silently wrong in every later query; refuse it.
    owner.bind(1, id);
    if (!owner.step()) throw DbError("set_pareto: no evaluation with id " + std::to_string(id));
    if (owner.get_int(0) != run_id)
      throw DbError("set_pareto: evaluation " + std::to_string(id) + " belongs to run " +
                    std::to_string(owner.get_int(0)) + ", not run " + std::to_string(run_id));
    owner.reset();
    ins.bind(1, run_id).bind(2, device).bind(3, id).bind(4, pos++);
    try {
      ins.run();
    } catch (const DbError& e) {
      throw DbError("set_pareto (run " + std::to_string(run_id) + ", device '" + device +
                    "', evaluation " + std::to_string(id) + "): " + e.what());
    }
    ins.reset();
  }
  tx.commit();
}

namespace {
constexpr const char* kRunSelect = R"sql(
  SELECT r.id, r.name, r.config, r.seed, r.status, r.started_at, coalesce(r.finished_at, ''),
         (SELECT count(*) FROM evaluations e WHERE e.run_id = r.id), r.host, r.pid,
         coalesce(r.heartbeat, 0)
  FROM runs r)sql";

RunInfo read_run(const Statement& st) {
  RunInfo r;
  r.id = st.get_int(0);
  r.name = st.get_text(1);
  r.config = parse_json(st.get_text(2), "runs.config");
  r.seed = static_cast<std::uint64_t>(st.get_int(3));
  r.status = st.get_text(4);
  r.started_at = st.get_text(5);
  r.finished_at = st.get_text(6);
  r.evaluations = st.get_int(7);
  r.host = st.get_text(8);
  r.pid = st.get_int(9);
  r.heartbeat = st.get_int(10);
  return r;
}
}  // namespace

std::vector<RunInfo> Store::runs() const {
  Statement st(impl_->conn, std::string(kRunSelect) + " ORDER BY r.id");
  std::vector<RunInfo> out;
  while (st.step()) out.push_back(read_run(st));
  return out;
}

std::optional<RunInfo> Store::run(std::int64_t run_id) const {
  Statement st(impl_->conn, std::string(kRunSelect) + " WHERE r.id = ?1");
  st.bind(1, run_id);
  if (!st.step()) return std::nullopt;
  return read_run(st);
}

std::optional<std::int64_t> Store::latest_run_id() const {
  Statement st(impl_->conn, "SELECT max(id) FROM runs");
  if (!st.step() || st.is_null(0)) return std::nullopt;
  return st.get_int(0);
}

std::vector<EvaluationRecord> Store::evaluations(std::int64_t run_id, bool with_workloads) const {
  return impl_->load_evaluations("run_id", run_id, with_workloads);
}

std::vector<EvaluationRecord> Store::evaluations_of_architecture(std::int64_t arch_id) const {
  return impl_->load_evaluations("arch_id", arch_id);
}

std::vector<std::int64_t> Store::evaluation_ids(std::int64_t run_id) const {
  Statement st(impl_->conn, "SELECT id FROM evaluations WHERE run_id = ?1 ORDER BY id");
  st.bind(1, run_id);
  std::vector<std::int64_t> out;
  while (st.step()) out.push_back(st.get_int(0));
  return out;
}

std::optional<ArchitectureRow> Store::architecture(std::int64_t arch_id) const {
  Statement st(impl_->conn,
               "SELECT id, hash, description, genome FROM architectures WHERE id = ?1");
  st.bind(1, arch_id);
  if (!st.step()) return std::nullopt;
  ArchitectureRow a;
  a.id = st.get_int(0);
  a.hash = st.get_text(1);
  a.description = st.get_text(2);
  a.genome = parse_json(st.get_text(3), "architectures.genome");
  return a;
}

std::optional<std::int64_t> Store::architecture_id(const std::string& hash) const {
  Statement st(impl_->conn, "SELECT id FROM architectures WHERE hash = ?1");
  st.bind(1, hash);
  if (!st.step()) return std::nullopt;
  return st.get_int(0);
}

std::vector<std::int64_t> Store::architecture_ids_by_hash_prefix(const std::string& prefix,
                                                                 int limit) const {
  Statement st(impl_->conn,
               "SELECT id FROM architectures WHERE substr(hash, 1, length(?1)) = ?1 "
               "ORDER BY id LIMIT ?2");
  st.bind(1, prefix).bind(2, limit);
  std::vector<std::int64_t> out;
  while (st.step()) out.push_back(st.get_int(0));
  return out;
}

std::vector<std::string> Store::pareto_devices(std::int64_t run_id) const {
  Statement st(impl_->conn, "SELECT DISTINCT device FROM pareto WHERE run_id = ?1 ORDER BY device");
  st.bind(1, run_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.get_text(0));
  return out;
}

std::vector<ParetoRow> Store::pareto(std::int64_t run_id, const std::string& device) const {
  // LEFT JOIN costs: a front member without a stored cost still shows (with NaN figures).
  Statement st(impl_->conn, R"sql(
    SELECT p.evaluation_id, e.arch_id, a.hash, a.description, e.metrics,
           p.device, coalesce(c.feasible, 1), coalesce(c.reason, ''), c.latency_ms, c.energy_mj,
           c.memory_bytes, coalesce(c.detail, '{}'), c.activity_source
    FROM pareto p
    JOIN evaluations e ON e.id = p.evaluation_id
    JOIN architectures a ON a.id = e.arch_id
    LEFT JOIN costs c ON c.evaluation_id = p.evaluation_id AND c.device = p.device
    WHERE p.run_id = ?1 AND p.device = ?2
    ORDER BY p.position)sql");
  st.bind(1, run_id).bind(2, device);
  std::vector<ParetoRow> out;
  while (st.step()) {
    ParetoRow r;
    r.evaluation_id = st.get_int(0);
    r.arch_id = st.get_int(1);
    r.arch_hash = st.get_text(2);
    r.arch_description = st.get_text(3);
    r.metrics = parse_json(st.get_text(4), "evaluations.metrics");
    r.cost = Impl::read_cost(st, 5);
    out.push_back(std::move(r));
  }
  return out;
}

void Store::set_hypervolume_history(std::int64_t run_id, const std::string& front,
                                    const std::vector<HypervolumePoint>& points) {
  auto& c = impl_->conn;
  Transaction tx(c);
  {
    Statement del(c, "DELETE FROM hypervolume_history WHERE run_id = ?1 AND front = ?2");
    del.bind(1, run_id).bind(2, front);
    del.run();
  }
  Statement ins(c,
                "INSERT INTO hypervolume_history (run_id, front, evaluations, hypervolume, "
                "reference) VALUES (?1, ?2, ?3, ?4, ?5)");
  for (const auto& p : points) {
    nlohmann::json ref = nlohmann::json::array();
    for (double v : p.reference) ref.push_back(v);
    ins.bind(1, run_id)
        .bind(2, front)
        .bind(3, p.evaluations)
        .bind(4, p.hypervolume)
        .bind(5, dump_json(ref));
    try {
      ins.run();
    } catch (const DbError& e) {
      throw DbError("set_hypervolume_history (run " + std::to_string(run_id) + ", front '" + front +
                    "', " + std::to_string(p.evaluations) + " evaluations): " + e.what());
    }
    ins.reset();
  }
  tx.commit();
}

std::vector<HypervolumePoint> Store::hypervolume_history(std::int64_t run_id,
                                                         const std::string& front) const {
  Statement st(impl_->conn,
               "SELECT evaluations, hypervolume, reference FROM hypervolume_history "
               "WHERE run_id = ?1 AND front = ?2 ORDER BY evaluations");
  st.bind(1, run_id).bind(2, front);
  std::vector<HypervolumePoint> out;
  while (st.step()) {
    HypervolumePoint p;
    p.evaluations = st.get_int(0);
    p.hypervolume = st.get_double(1);
    for (const auto& v : parse_json(st.get_text(2), "hypervolume_history.reference"))
      p.reference.push_back(json_number_or_nan(v));
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<std::string> Store::hypervolume_fronts(std::int64_t run_id) const {
  Statement st(impl_->conn,
               "SELECT DISTINCT front FROM hypervolume_history WHERE run_id = ?1 ORDER BY front");
  st.bind(1, run_id);
  std::vector<std::string> out;
  while (st.step()) out.push_back(st.get_text(0));
  return out;
}

std::vector<CostRecord> Store::costs(std::int64_t evaluation_id) const {
  Statement st(impl_->conn, R"sql(
    SELECT device, feasible, reason, latency_ms, energy_mj, memory_bytes, detail, activity_source
    FROM costs WHERE evaluation_id = ?1 ORDER BY device)sql");
  st.bind(1, evaluation_id);
  std::vector<CostRecord> out;
  while (st.step()) out.push_back(Impl::read_cost(st, 0));
  return out;
}

std::optional<CostRecord> Store::cached_cost(const std::string& arch_hash,
                                             const std::string& device,
                                             const std::string& fingerprint, int batch) const {
  Statement st(impl_->conn, R"sql(
    SELECT cost FROM cost_cache WHERE arch_hash = ?1 AND fingerprint = ?2 AND batch = ?3)sql");
  st.bind(1, arch_hash).bind(2, fingerprint).bind(3, static_cast<std::int64_t>(batch));
  if (!st.step()) return std::nullopt;
  const nlohmann::json j = parse_json(st.get_text(0), "cost_cache.cost");
  CostRecord c;
  c.device = device;
  c.feasible = j.value("feasible", false);
  c.infeasible_reason = j.value("reason", std::string());
  c.latency_ms = json_number_or_nan(j.value("latency_ms", nlohmann::json()));
  c.energy_mj = json_number_or_nan(j.value("energy_mj", nlohmann::json()));
  c.memory_bytes = json_number_or_nan(j.value("memory_bytes", nlohmann::json()));
  c.detail = j.value("detail", nlohmann::json::object());
  c.activity_source = j.value("activity_source", std::string());
  return c;
}

void Store::put_cached_cost(const std::string& arch_hash, const std::string& fingerprint, int batch,
                            const CostRecord& c) {
  const nlohmann::json j = {{"feasible", c.feasible},
                            {"reason", c.infeasible_reason},
                            {"latency_ms", c.latency_ms},
                            {"energy_mj", c.energy_mj},
                            {"memory_bytes", c.memory_bytes},
                            {"detail", c.detail},
                            {"activity_source", c.activity_source}};
  Statement st(impl_->conn, R"sql(
    INSERT OR REPLACE INTO cost_cache (arch_hash, fingerprint, batch, cost)
    VALUES (?1, ?2, ?3, ?4))sql");
  st.bind(1, arch_hash)
      .bind(2, fingerprint)
      .bind(3, static_cast<std::int64_t>(batch))
      .bind(4, dump_json(j));
  st.run();
}

std::int64_t Store::add_test_result(const TestResultRecord& r) {
  Statement st(impl_->conn, R"sql(
    INSERT INTO test_results (arch_id, run_id, metrics, epochs, weights_path)
    VALUES (?1, ?2, ?3, ?4, ?5))sql");
  st.bind(1, r.arch_id)
      .bind(2, r.run_id)
      .bind(3, dump_json(r.metrics.is_null() ? nlohmann::json::object() : r.metrics))
      .bind(4, static_cast<std::int64_t>(r.epochs))
      .bind(5, r.weights_path);
  st.run();
  return impl_->conn.last_insert_rowid();
}

std::vector<TestResultRecord> Store::test_results(std::int64_t arch_id) const {
  Statement st(impl_->conn, R"sql(
    SELECT id, arch_id, run_id, metrics, epochs, weights_path, created_at
    FROM test_results WHERE arch_id = ?1 ORDER BY id)sql");
  st.bind(1, arch_id);
  std::vector<TestResultRecord> out;
  while (st.step()) {
    TestResultRecord r;
    r.id = st.get_int(0);
    r.arch_id = st.get_int(1);
    r.run_id = st.get_int(2);
    r.metrics = parse_json(st.get_text(3), "test_results.metrics");
    r.epochs = static_cast<int>(st.get_int(4));
    r.weights_path = st.get_text(5);
    r.created_at = st.get_text(6);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace hwnas::db
