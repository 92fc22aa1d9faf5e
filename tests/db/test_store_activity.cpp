// Schema version 2: every cost row says whether its activity was measured or assumed; files
// written at version 1 still open, migrate, and keep their rows (activity source "not recorded").
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "db/sqlite.hpp"
#include "db/store.hpp"
#include "db_test_util.hpp"

namespace fs = std::filesystem;
using hwnas::db::Connection;
using hwnas::db::CostRecord;
using hwnas::db::DbError;
using hwnas::db::EvaluationRecord;
using hwnas::db::Store;
using nlohmann::json;

namespace {

class StoreActivityTest : public hwnas::db::testing::TempStoreTest {};

CostRecord cost(const std::string& device, const std::string& source) {
  CostRecord c;
  c.device = device;
  c.latency_ms = 1;
  c.energy_mj = 2;
  c.memory_bytes = 3;
  c.activity_source = source;
  return c;
}

EvaluationRecord evaluation(std::int64_t run, std::int64_t arch) {
  EvaluationRecord e;
  e.run_id = run;
  e.arch_id = arch;
  e.metrics = {{"val_accuracy", 0.5}};
  e.workload = {{"nodes", json::array()}};
  return e;
}

}  // namespace

TEST_F(StoreActivityTest, CostsKeepTheirActivitySource) {
  Store s(path_);
  EXPECT_EQ(s.schema_version(), hwnas::db::kSchemaVersion);
  auto run = s.create_run("r", json::object(), 1);
  auto arch = s.upsert_architecture("h", json::object(), "");
  EvaluationRecord e = evaluation(run, arch);
  e.costs = {cost("loihi", "measured"), cost("h100_sxm", "none"), cost("old", "")};
  auto id = s.add_evaluation(e);
  s.add_costs(id, {cost("loihi2", "mixed"), cost("truenorth", "assumed")});
  auto back = s.evaluations(run).at(0).costs;
  std::map<std::string, std::string> by_device;
  for (const auto& c : back) by_device[c.device] = c.activity_source;
  EXPECT_EQ(by_device.at("loihi"), "measured");
  EXPECT_EQ(by_device.at("h100_sxm"), "none");
  EXPECT_EQ(by_device.at("old"), "");  // not recorded
  EXPECT_EQ(by_device.at("loihi2"), "mixed");
  EXPECT_EQ(by_device.at("truenorth"), "assumed");
  // Rescoring replaces the source with the cost.
  s.add_costs(id, {cost("loihi", "assumed")});
  for (const auto& c : s.evaluations(run).at(0).costs) {
    if (c.device == "loihi") {
      EXPECT_EQ(c.activity_source, "assumed");
    }
  }
  // The flat view shows it.
  Connection c(path_, true);
  EXPECT_EQ(c.query_int("SELECT count(*) FROM v_costs WHERE activity_source = 'mixed'"), 1);
  // Pareto rows carry it too.
  s.set_pareto(run, "loihi2", {id});
  EXPECT_EQ(s.pareto(run, "loihi2").at(0).cost.activity_source, "mixed");
}

TEST_F(StoreActivityTest, InvalidActivitySourceIsRefused) {
  Store s(path_);
  auto run = s.create_run("r", json::object(), 1);
  auto arch = s.upsert_architecture("h", json::object(), "");
  EvaluationRecord e = evaluation(run, arch);
  e.costs = {cost("loihi", "guessed")};
  try {
    s.add_evaluation(e);
    FAIL() << "stored activity_source 'guessed'";
  } catch (const DbError& err) {
    EXPECT_NE(std::string(err.what()).find("invalid activity_source 'guessed'"), std::string::npos)
        << err.what();
  }
  EXPECT_TRUE(s.evaluations(run).empty());  // the whole evaluation was rolled back
}

TEST_F(StoreActivityTest, VersionOneFileMigratesAndKeepsItsRows) {
  {
    // A file as hwnas wrote it at schema version 1, with one evaluation and one cost.
    std::ifstream in(std::string(HWNAS_TEST_DIR) + "/fixtures/schema_v1.sql");
    ASSERT_TRUE(in) << "missing fixtures/schema_v1.sql";
    std::stringstream sql;
    sql << in.rdbuf();
    Connection c(path_, false);
    c.exec(sql.str());
    c.exec(R"sql(
      INSERT INTO runs (id, name, config, seed) VALUES (1, 'old', '{}', 3);
      INSERT INTO architectures (id, hash, genome) VALUES (1, 'abc', '{}');
      INSERT INTO evaluations (id, run_id, arch_id, metrics, fidelity, workload, loss_curve, status)
        VALUES (1, 1, 1, '{"val_accuracy": 0.7}', '{}', '{"nodes": []}', '[]', 'ok');
      INSERT INTO costs (evaluation_id, device, feasible, latency_ms, energy_mj, memory_bytes)
        VALUES (1, 'loihi', 1, 1.5, 2.5, 3.5);
      PRAGMA user_version = 1;
      PRAGMA application_id = 1213681235;)sql");
  }
  // A read-only open refuses to migrate, with the hint.
  try {
    Store ro(path_, /*read_only=*/true);
    FAIL() << "read-only open of a version 1 file";
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("older than " + std::to_string(hwnas::db::kSchemaVersion)),
              std::string::npos)
        << e.what();
  }
  Store s(path_);
  EXPECT_EQ(s.schema_version(), hwnas::db::kSchemaVersion);
  auto evals = s.evaluations(1);
  ASSERT_EQ(evals.size(), 1u);
  ASSERT_EQ(evals[0].costs.size(), 1u);
  EXPECT_EQ(evals[0].costs[0].energy_mj, 2.5);
  EXPECT_EQ(evals[0].costs[0].activity_source, "");  // written before it was recorded
  s.add_costs(1, {cost("loihi2", "measured")});
  Connection c(path_, true);
  EXPECT_EQ(c.query_int("SELECT count(*) FROM v_costs WHERE activity_source IS NULL"), 1);
  EXPECT_EQ(c.query_int("SELECT count(*) FROM v_costs WHERE activity_source = 'measured'"), 1);
}
