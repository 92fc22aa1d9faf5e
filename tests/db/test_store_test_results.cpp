// Schema version 4: held-out test figures of retrained architectures live in their own table
// (`hwnas train` writes them, `hwnas show` prints them); an older file migrates and keeps its
// rows.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "db/sqlite.hpp"
#include "db/store.hpp"
#include "db_test_util.hpp"

namespace fs = std::filesystem;
using hwnas::db::Connection;
using hwnas::db::DbError;
using hwnas::db::kSchemaVersion;
using hwnas::db::Store;
using hwnas::db::TestResultRecord;
using nlohmann::json;

namespace {

class StoreTestResults : public hwnas::db::testing::TempStoreTest {};

}  // namespace

TEST_F(StoreTestResults, RoundTripInIdOrder) {
  Store s(path_);
  const auto run = s.create_run("r", json::object(), 1);
  const auto arch = s.upsert_architecture("abc", json::object(), "a");
  const auto other = s.upsert_architecture("def", json::object(), "b");
  EXPECT_TRUE(s.test_results(arch).empty());
  TestResultRecord r;
  r.arch_id = arch;
  r.run_id = run;
  r.metrics = {{"test_accuracy", 0.875}, {"test_loss", 0.25}};
  r.epochs = 3;
  r.weights_path = "/tmp/w.bin";
  const auto id1 = s.add_test_result(r);
  r.metrics["test_accuracy"] = 0.9;
  r.weights_path = "";
  const auto id2 = s.add_test_result(r);
  const auto rows = s.test_results(arch);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, id1);
  EXPECT_EQ(rows[1].id, id2);
  EXPECT_EQ(rows[0].run_id, run);
  EXPECT_EQ(rows[0].epochs, 3);
  EXPECT_EQ(rows[0].weights_path, "/tmp/w.bin");
  EXPECT_DOUBLE_EQ(rows[0].metrics["test_accuracy"].get<double>(), 0.875);
  EXPECT_DOUBLE_EQ(rows[1].metrics["test_accuracy"].get<double>(), 0.9);
  EXPECT_FALSE(rows[0].created_at.empty());
  EXPECT_TRUE(s.test_results(other).empty());
}

TEST_F(StoreTestResults, UnknownArchitectureIsRefused) {
  Store s(path_);
  const auto run = s.create_run("r", json::object(), 1);
  TestResultRecord r;
  r.arch_id = 42;
  r.run_id = run;
  EXPECT_THROW(s.add_test_result(r), DbError);  // foreign key
}

TEST_F(StoreTestResults, VersionThreeFileMigratesAndKeepsItsRows) {
  {
    Store s(path_);
    const auto run = s.create_run("old", json::object(), 7);
    s.upsert_architecture("abc", json::object(), "a");
    s.finish_run(run, "finished");
  }
  {
    Connection c(path_, false);
    // Take the file back to what a version 3 build wrote (without versions 5 to 7 too).
    c.exec(
        "DROP TABLE test_results; DROP TABLE strategy_states; DROP TABLE cost_cache; "
        "ALTER TABLE architectures DROP COLUMN workload; "
        "ALTER TABLE runs DROP COLUMN host; ALTER TABLE runs DROP COLUMN pid; "
        "ALTER TABLE runs DROP COLUMN heartbeat; PRAGMA user_version = 3;");
  }
  {
    Connection c(path_, true);
    EXPECT_EQ(c.query_int("SELECT count(*) FROM sqlite_schema WHERE name = 'test_results'"), 0);
  }
  Store s(path_);
  EXPECT_EQ(s.schema_version(), kSchemaVersion);
  ASSERT_EQ(s.runs().size(), 1u);
  EXPECT_EQ(s.runs()[0].name, "old");
  TestResultRecord r;
  r.arch_id = 1;
  r.run_id = 1;
  r.metrics = {{"test_accuracy", 0.5}};
  s.add_test_result(r);
  EXPECT_EQ(s.test_results(1).size(), 1u);
}
