// The SQLite store: schema version, round trips, dedup, refusal of newer schemas and foreign
// files, concurrent readers under WAL (same process and a forked process), and atomicity of
// failed writes.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "db/sqlite.hpp"
#include "db/store.hpp"

namespace fs = std::filesystem;
using hwnas::db::Connection;
using hwnas::db::CostRecord;
using hwnas::db::DbError;
using hwnas::db::EvaluationRecord;
using hwnas::db::Store;
using nlohmann::json;

namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("hwnas_test_db_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_);
    path_ = (dir_ / "results.db").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static std::int64_t count(Connection& c, const std::string& table) {
    return c.query_int("SELECT count(*) FROM " + table);
  }

  fs::path dir_;
  std::string path_;
};

EvaluationRecord sample_eval(std::int64_t run, std::int64_t arch, double acc) {
  EvaluationRecord e;
  e.run_id = run;
  e.arch_id = arch;
  e.metrics = {{"val_accuracy", acc}, {"params", 1234}};
  e.fidelity = {{"epochs", 2}, {"train_subset", 5000}};
  e.workload = {{"nodes", json::array({{{"op", "conv"}, {"macs", 1000}}})}};
  e.loss_curve = {2.3, 1.1, 0.7};
  e.wall_seconds = 3.5;
  e.worker_rank = 2;
  CostRecord a;
  a.device = "gpu-a100";
  a.latency_ms = 1.25;
  a.energy_mj = 3.5;
  a.memory_bytes = 1 << 20;
  a.detail = {{"bound", "memory"}};
  CostRecord b;
  b.device = "mcu-m4";
  b.feasible = false;
  b.infeasible_reason = "needs 1 MiB SRAM, device has 256 KiB";
  b.latency_ms = std::numeric_limits<double>::quiet_NaN();
  b.energy_mj = 0.5;
  b.memory_bytes = 1 << 20;
  e.costs = {a, b};
  return e;
}

TEST_F(StoreTest, SchemaVersionIsStoredAndRead) {
  {
    Store s(path_);
    EXPECT_EQ(s.schema_version(), hwnas::db::kSchemaVersion);
  }
  Connection c(path_, true);
  EXPECT_EQ(c.query_int("PRAGMA user_version"), hwnas::db::kSchemaVersion);
  EXPECT_EQ(c.query_text("PRAGMA journal_mode").value_or(""), "wal");
  for (const char* t : {"runs", "architectures", "evaluations", "costs", "pareto", "v_evaluations",
                        "v_costs", "v_pareto", "v_runs"})
    EXPECT_EQ(
        c.query_int(std::string("SELECT count(*) FROM sqlite_schema WHERE name = '") + t + "'"), 1)
        << t;
  // Reopening an up-to-date file neither migrates nor fails.
  Store again(path_);
  EXPECT_EQ(again.schema_version(), hwnas::db::kSchemaVersion);
}

TEST_F(StoreTest, RoundTripRunArchitectureEvaluationCostsPareto) {
  Store s(path_);
  const std::uint64_t seed = 0xFEDCBA9876543210ull;  // above INT64_MAX: bit pattern round trip
  json config = {{"space", "mixed"}, {"budget", {{"evaluations", 10}}}};
  auto run = s.create_run("exp-1", config, seed);
  auto arch = s.upsert_architecture("abc123", {{"nodes", json::array({1, 2})}}, "conv → lif");
  auto e1 = s.add_evaluation(sample_eval(run, arch, 0.875));
  auto e2rec = sample_eval(run, arch, 0.5);
  e2rec.status = "failed";
  e2rec.error = "diverged";
  e2rec.costs.clear();
  e2rec.loss_curve = {1.0, std::numeric_limits<double>::quiet_NaN()};
  auto e2 = s.add_evaluation(e2rec);
  s.finish_run(run, "finished");

  auto r = s.run(run);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->name, "exp-1");
  EXPECT_EQ(r->config, config);
  EXPECT_EQ(r->seed, seed);
  EXPECT_EQ(r->status, "finished");
  EXPECT_EQ(r->evaluations, 2);
  EXPECT_FALSE(r->started_at.empty());
  EXPECT_FALSE(r->finished_at.empty());
  EXPECT_EQ(r->started_at.back(), 'Z');
  EXPECT_EQ(s.latest_run_id(), run);
  EXPECT_EQ(s.runs().size(), 1u);
  EXPECT_FALSE(s.run(run + 100));

  auto evals = s.evaluations(run);
  ASSERT_EQ(evals.size(), 2u);
  EXPECT_EQ(s.evaluation_ids(run), (std::vector<std::int64_t>{e1, e2}));
  const auto& a = evals[0];
  auto expected = sample_eval(run, arch, 0.875);
  EXPECT_EQ(a.id, e1);
  EXPECT_EQ(a.metrics, expected.metrics);
  EXPECT_EQ(a.fidelity, expected.fidelity);
  EXPECT_EQ(a.workload, expected.workload);
  EXPECT_EQ(a.loss_curve, expected.loss_curve);
  EXPECT_EQ(a.wall_seconds, 3.5);
  EXPECT_EQ(a.worker_rank, 2);
  EXPECT_EQ(a.status, "ok");
  ASSERT_EQ(a.costs.size(), 2u);  // ordered by device
  EXPECT_EQ(a.costs[0].device, "gpu-a100");
  EXPECT_TRUE(a.costs[0].feasible);
  EXPECT_EQ(a.costs[0].latency_ms, 1.25);
  EXPECT_EQ(a.costs[0].memory_bytes, 1 << 20);
  EXPECT_EQ(a.costs[0].detail, expected.costs[0].detail);
  EXPECT_EQ(a.costs[1].device, "mcu-m4");
  EXPECT_FALSE(a.costs[1].feasible);
  EXPECT_EQ(a.costs[1].infeasible_reason, expected.costs[1].infeasible_reason);
  EXPECT_TRUE(std::isnan(a.costs[1].latency_ms));  // NaN stored as NULL, read back as NaN
  const auto& b = evals[1];
  EXPECT_EQ(b.status, "failed");
  EXPECT_EQ(b.error, "diverged");
  ASSERT_EQ(b.loss_curve.size(), 2u);
  EXPECT_TRUE(std::isnan(b.loss_curve[1]));

  auto ar = s.architecture(arch);
  ASSERT_TRUE(ar);
  EXPECT_EQ(ar->hash, "abc123");
  EXPECT_EQ(ar->description, "conv → lif");
  EXPECT_EQ(ar->genome, (json{{"nodes", json::array({1, 2})}}));
  EXPECT_EQ(s.architecture_id("abc123"), arch);
  EXPECT_EQ(s.architecture_ids_by_hash_prefix("abc"), (std::vector<std::int64_t>{arch}));
  EXPECT_EQ(s.evaluations_of_architecture(arch).size(), 2u);

  // Re-scoring on a device replaces that device's cost; a new device is added.
  CostRecord faster = expected.costs[0];
  faster.latency_ms = 0.5;
  CostRecord edge;
  edge.device = "edge-tpu";
  edge.latency_ms = 7;
  s.add_costs(e1, {faster, edge});
  auto costs = s.evaluations(run)[0].costs;
  ASSERT_EQ(costs.size(), 3u);
  EXPECT_EQ(costs[1].device, "gpu-a100");
  EXPECT_EQ(costs[1].latency_ms, 0.5);

  s.set_pareto(run, "gpu-a100", {e1});
  s.set_pareto(run, "edge-tpu", {e1});
  EXPECT_EQ(s.pareto_devices(run), (std::vector<std::string>{"edge-tpu", "gpu-a100"}));
  auto front = s.pareto(run, "gpu-a100");
  ASSERT_EQ(front.size(), 1u);
  EXPECT_EQ(front[0].evaluation_id, e1);
  EXPECT_EQ(front[0].arch_id, arch);
  EXPECT_EQ(front[0].arch_hash, "abc123");
  EXPECT_EQ(front[0].arch_description, "conv → lif");
  EXPECT_EQ(front[0].metrics["val_accuracy"], 0.875);
  EXPECT_EQ(front[0].cost.device, "gpu-a100");
  EXPECT_EQ(front[0].cost.latency_ms, 0.5);
  EXPECT_TRUE(s.pareto(run, "nope").empty());

  // Replacing a front keeps the given order and drops the old members.
  auto e3 = s.add_evaluation(sample_eval(run, arch, 0.9));
  s.set_pareto(run, "gpu-a100", {e3, e1});
  front = s.pareto(run, "gpu-a100");
  ASSERT_EQ(front.size(), 2u);
  EXPECT_EQ(front[0].evaluation_id, e3);
  EXPECT_EQ(front[1].evaluation_id, e1);
  s.set_pareto(run, "gpu-a100", {e1});
  EXPECT_EQ(s.pareto(run, "gpu-a100").size(), 1u);

  // The views flatten what users query most.
  Connection c(path_, true);
  EXPECT_EQ(c.query_text("SELECT val_accuracy FROM v_evaluations WHERE evaluation_id = " +
                         std::to_string(e1)),
            "0.875");
  EXPECT_EQ(c.query_int("SELECT count(*) FROM v_costs WHERE device = 'gpu-a100'"), 2);
  EXPECT_EQ(c.query_int("SELECT count(*) FROM v_pareto WHERE device = 'gpu-a100'"), 1);
  EXPECT_EQ(c.query_int("SELECT evaluations FROM v_runs"), 3);
}

TEST_F(StoreTest, ArchitecturesAreDeduplicatedByHash) {
  Store s(path_);
  auto a = s.upsert_architecture("h1", {{"g", 1}}, "first");
  auto b = s.upsert_architecture("h2", {{"g", 2}}, "second");
  auto a2 = s.upsert_architecture("h1", {{"g", 1}}, "again");
  EXPECT_NE(a, b);
  EXPECT_EQ(a, a2);
  EXPECT_EQ(s.architecture(a)->description, "first");  // the first stored row wins
  Connection c(path_, true);
  EXPECT_EQ(count(c, "architectures"), 2);
  EXPECT_THROW(s.upsert_architecture("", json::object(), ""), DbError);
}

TEST_F(StoreTest, NewerSchemaVersionIsRefusedWithClearMessage) {
  { Store s(path_); }
  {
    Connection c(path_, false);
    c.exec("PRAGMA user_version = 99");
  }
  for (bool ro : {false, true}) {
    try {
      Store s(path_, ro);
      FAIL() << "opened a schema-99 database";
    } catch (const DbError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("schema version 99"), std::string::npos) << msg;
      EXPECT_NE(msg.find("newer"), std::string::npos) << msg;
      EXPECT_NE(msg.find(path_), std::string::npos) << msg;
    }
  }
  Connection c(path_, true);  // untouched
  EXPECT_EQ(c.query_int("PRAGMA user_version"), 99);
}

TEST_F(StoreTest, ReadOnlyOpenNeverCreatesTheFile) {
  try {
    Store s(path_, true);
    FAIL();
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("no such database file"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path_));
}

TEST_F(StoreTest, ForeignDatabasesAreRefused) {
  {
    Connection c(path_, false);
    c.exec("CREATE TABLE people (name TEXT)");
  }
  EXPECT_THROW(Store(path_, false), DbError);
  EXPECT_THROW(Store(path_, true), DbError);
  Connection c(path_, true);
  EXPECT_EQ(c.query_int("SELECT count(*) FROM sqlite_schema WHERE name = 'runs'"), 0);

  std::string junk = (dir_ / "junk.db").string();
  {
    std::ofstream(junk) << "this is not an SQLite file, just some text that is long enough......"
                           "...................................................................";
  }
  EXPECT_THROW(Store(junk, true), DbError);
  std::string empty = (dir_ / "empty.db").string();
  { std::ofstream(empty).flush(); }
  EXPECT_THROW(Store(empty, true), DbError);  // read-only: an empty file is not ours to initialise
}

TEST_F(StoreTest, FailedMigrationLeavesTheOldSchema) {
  {
    // Claims to be ours at version 0 but already has a table the migration wants to create.
    Connection c(path_, false);
    c.exec("PRAGMA application_id = 1213681235; CREATE TABLE runs (x)");
  }
  try {
    Store s(path_);
    FAIL();
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("migration from schema version 0 to 1"), std::string::npos)
        << e.what();
  }
  Connection c(path_, true);
  EXPECT_EQ(c.query_int("PRAGMA user_version"), 0);
  EXPECT_EQ(c.query_int("SELECT count(*) FROM sqlite_schema WHERE name = 'architectures'"), 0);
}

TEST_F(StoreTest, ReadOnlyStoreRefusesWrites) {
  { Store s(path_); }
  Store ro(path_, true);
  EXPECT_TRUE(ro.read_only());
  EXPECT_THROW(ro.create_run("x", json::object(), 1), DbError);
}

TEST_F(StoreTest, FailedWriteInsideTransactionLeavesNothing) {
  Store s(path_);
  auto run = s.create_run("r", json::object(), 1);
  auto arch = s.upsert_architecture("h", json::object(), "");
  auto good = s.add_evaluation(sample_eval(run, arch, 0.8));
  s.set_pareto(run, "gpu-a100", {good});
  Connection c(path_, true);
  const auto evals = count(c, "evaluations"), costs = count(c, "costs");

  // The second cost violates a CHECK after the evaluation row and first cost were inserted.
  auto bad = sample_eval(run, arch, 0.9);
  bad.costs[1].device = "";
  EXPECT_THROW(s.add_evaluation(bad), DbError);
  // Same device twice in one record.
  bad = sample_eval(run, arch, 0.9);
  bad.costs[1].device = bad.costs[0].device;
  EXPECT_THROW(s.add_evaluation(bad), DbError);
  // Unknown architecture: foreign key.
  EXPECT_THROW(s.add_evaluation(sample_eval(run, arch + 42, 0.9)), DbError);
  EXPECT_EQ(count(c, "evaluations"), evals);
  EXPECT_EQ(count(c, "costs"), costs);

  // add_costs: first cost fine, second bad -> neither stored.
  CostRecord ok;
  ok.device = "new-device";
  CostRecord broken;
  EXPECT_THROW(s.add_costs(good, {ok, broken}), DbError);
  EXPECT_EQ(count(c, "costs"), costs);

  // set_pareto: the old front survives a failed replacement.
  auto other_run = s.create_run("other", json::object(), 2);
  auto foreign = s.add_evaluation(sample_eval(other_run, arch, 0.1));
  auto second = s.add_evaluation(sample_eval(run, arch, 0.7));
  try {
    s.set_pareto(run, "gpu-a100", {second, foreign});
    FAIL();
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to run"), std::string::npos) << e.what();
  }
  EXPECT_THROW(s.set_pareto(run, "gpu-a100", {second, second}), DbError);  // duplicate member
  EXPECT_THROW(s.set_pareto(run, "gpu-a100", {second, 9999}), DbError);    // no such evaluation
  auto front = s.pareto(run, "gpu-a100");
  ASSERT_EQ(front.size(), 1u);
  EXPECT_EQ(front[0].evaluation_id, good);

  // The connection is usable afterwards (no transaction left open).
  EXPECT_NO_THROW(s.add_evaluation(sample_eval(run, arch, 0.95)));
  EXPECT_THROW(s.finish_run(run, "done"), DbError);           // not a valid status
  EXPECT_THROW(s.finish_run(run + 99, "finished"), DbError);  // no such run
}

TEST_F(StoreTest, ReaderConnectionSeesCommittedStateWhileWriterHoldsTransaction) {
  Store writer(path_);
  auto run = writer.create_run("r", json::object(), 1);
  auto arch = writer.upsert_architecture("h", json::object(), "");
  writer.add_evaluation(sample_eval(run, arch, 0.5));

  Store reader(path_, true);
  {
    // A second writing connection holds an open write transaction with uncommitted rows.
    Connection w(path_, false);
    w.exec("PRAGMA busy_timeout = 5000");
    hwnas::db::Transaction tx(w);
    w.exec("INSERT INTO runs (name, config, seed) VALUES ('pending', '{}', 7)");
    auto t0 = std::chrono::steady_clock::now();
    auto runs = reader.runs();  // must neither block nor see the pending row
    auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(runs.size(), 1u);
    EXPECT_EQ(reader.evaluations(run).size(), 1u);
    EXPECT_LT(waited, std::chrono::seconds(1));
    tx.commit();
  }
  EXPECT_EQ(reader.runs().size(), 2u);
  writer.add_evaluation(sample_eval(run, arch, 0.6));
  EXPECT_EQ(reader.evaluations(run).size(), 2u);
}

TEST_F(StoreTest, ForkedReaderProcessQueriesWhileSearchWrites) {
  constexpr int kEvals = 150;
  std::int64_t run = 0, arch = 0;
  {
    Store s(path_);
    run = s.create_run("r", json::object(), 1);
    arch = s.upsert_architecture("h", json::object(), "");
  }  // no SQLite connection may cross fork()

  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: a reader like `hwnas pareto` polling a running search.  Exit status reports.
    ::close(ready[0]);
    int code = 0;
    try {
      Store r(path_, true);
      char go = 1;
      if (::write(ready[1], &go, 1) != 1) ::_exit(5);
      std::size_t last = 0;
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (last < static_cast<std::size_t>(kEvals)) {
        auto evals = r.evaluations(run);
        if (evals.size() < last) {
          code = 2;
          break;
        }  // went backwards
        for (const auto& e : evals)
          if (e.costs.size() != 2) code = 3;  // saw an evaluation without its costs
        last = evals.size();
        if (std::chrono::steady_clock::now() > deadline) {
          code = 4;
          break;
        }
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "reader: %s\n", e.what());
      code = 1;
    }
    ::_exit(code);
  }
  ::close(ready[1]);
  char go = 0;
  ASSERT_EQ(::read(ready[0], &go, 1), 1);
  ::close(ready[0]);
  {
    Store s(path_);
    for (int i = 0; i < kEvals; ++i) s.add_evaluation(sample_eval(run, arch, i / double(kEvals)));
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(StoreTest, StoreIsMovable) {
  Store a(path_);
  auto run = a.create_run("r", json::object(), 1);
  Store b(std::move(a));
  EXPECT_EQ(b.run(run)->name, "r");
  Store c((dir_ / "other.db").string());
  c = std::move(b);
  EXPECT_EQ(c.latest_run_id(), run);
  EXPECT_EQ(c.path(), path_);
}

}  // namespace

TEST(StoreSafety, ForeignSqliteFileIsRefusedUntouched) {
  namespace fs = std::filesystem;
  fs::path p =
      fs::temp_directory_path() / ("hwnas_foreign_" + std::to_string(::getpid()) + ".sqlite");
  fs::remove(p);
  ASSERT_EQ(
      std::system(
          ("sqlite3 " + p.string() + " 'create table t(x); insert into t values(1);'").c_str()),
      0);
  EXPECT_THROW(hwnas::db::Store s(p.string()), hwnas::db::DbError);
  // Still in its own (rollback) journal mode: nothing was written to it.
  FILE* f = ::popen(("sqlite3 " + p.string() + " 'pragma journal_mode'").c_str(), "r");
  char buf[64] = {0};
  ASSERT_NE(std::fgets(buf, sizeof buf, f), nullptr);
  ::pclose(f);
  EXPECT_EQ(std::string(buf), "delete\n");
  fs::remove(p);
}
