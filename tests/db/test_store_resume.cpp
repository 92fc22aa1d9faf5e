// Schema version 5: runs record their coordinator (host, pid, heartbeat) and the strategy state
// is committed with each evaluation; files written at version 4 migrate and keep their rows.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "db/sqlite.hpp"
#include "db/store.hpp"
#include "db_test_util.hpp"

namespace fs = std::filesystem;
using hwnas::db::Connection;
using hwnas::db::DbError;
using hwnas::db::EvaluationRecord;
using hwnas::db::Store;
using hwnas::db::testing::evaluation;
using nlohmann::json;

namespace {

class StoreResumeTest : public hwnas::db::testing::TempStoreTest {};

TEST_F(StoreResumeTest, StateIsCommittedWithItsEvaluationOrNotAtAll) {
  Store s(path_);
  auto run = s.create_run("r", json::object(), 1);
  auto arch = s.upsert_architecture("h", json::object(), "");
  EXPECT_FALSE(s.strategy_state(run).has_value());
  s.add_evaluation(evaluation(run, arch, 0), json{{"next_id", 1}});
  EXPECT_EQ(*s.strategy_state(run), (json{{"next_id", 1}}));
  // The evaluation fails (proposal 0 again): the state written with it is rolled back too.
  EXPECT_THROW(s.add_evaluation(evaluation(run, arch, 0), json{{"next_id", 2}}), DbError);
  EXPECT_EQ(*s.strategy_state(run), (json{{"next_id", 1}}));
  EXPECT_EQ(s.evaluations(run).size(), 1u);
  // Without a state the saved one stays.
  s.add_evaluation(evaluation(run, arch, 1));
  EXPECT_EQ(*s.strategy_state(run), (json{{"next_id", 1}}));
  s.save_strategy_state(run, json{{"next_id", 3}});
  EXPECT_EQ(*s.strategy_state(run), (json{{"next_id", 3}}));
}

TEST_F(StoreResumeTest, ClaimRecordsTheCoordinatorAndReopensTheRun) {
  Store s(path_);
  auto run = s.create_run("r", json::object(), 1);
  auto info = s.run(run);
  EXPECT_EQ(info->host, "");
  EXPECT_EQ(info->pid, 0);
  EXPECT_EQ(info->heartbeat, 0);  // never beat
  s.finish_run(run, "interrupted");
  s.claim_run(run, "node7", 4242);
  info = s.run(run);
  EXPECT_EQ(info->status, "running");
  EXPECT_EQ(info->finished_at, "");
  EXPECT_EQ(info->host, "node7");
  EXPECT_EQ(info->pid, 4242);
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  EXPECT_NEAR(static_cast<double>(info->heartbeat), static_cast<double>(now), 5.0);
  {
    Connection c(path_, false);
    c.exec("UPDATE runs SET heartbeat = 5");
  }
  s.heartbeat(run);
  EXPECT_NEAR(static_cast<double>(s.run(run)->heartbeat), static_cast<double>(now), 5.0);
  EXPECT_THROW(s.claim_run(run + 1, "x", 1), DbError);
}

TEST_F(StoreResumeTest, VersionFourFileMigratesAndKeepsItsRows) {
  {
    // A file as hwnas wrote it at schema version 4: today's schema without version 5's
    // columns and table (and version 6's cost cache, version 7's architecture workload).
    Store fresh(path_);
    auto run = fresh.create_run("old", json{{"seed", 3}}, 3);
    auto arch = fresh.upsert_architecture("abc", json::object(), "");
    fresh.add_evaluation(evaluation(run, arch, 0));
  }
  {
    Connection c(path_, false);
    c.exec(R"sql(
      DROP TABLE strategy_states;
      DROP TABLE cost_cache;
      ALTER TABLE architectures DROP COLUMN workload;
      ALTER TABLE runs DROP COLUMN host;
      ALTER TABLE runs DROP COLUMN pid;
      ALTER TABLE runs DROP COLUMN heartbeat;
      PRAGMA user_version = 4;)sql");
  }
  try {
    Store ro(path_, /*read_only=*/true);
    FAIL() << "read-only open of a version 4 file";
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 4 is older than " +
                                         std::to_string(hwnas::db::kSchemaVersion)),
              std::string::npos)
        << e.what();
  }
  Store s(path_);
  EXPECT_EQ(s.schema_version(), hwnas::db::kSchemaVersion);
  auto info = s.run(1);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->name, "old");
  EXPECT_EQ(info->evaluations, 1);
  EXPECT_EQ(info->host, "");  // not recorded before version 5
  EXPECT_EQ(info->heartbeat, 0);
  EXPECT_FALSE(s.strategy_state(1).has_value());
  s.add_evaluation(evaluation(1, 1, 1), json{{"next_id", 2}});
  EXPECT_EQ(*s.strategy_state(1), (json{{"next_id", 2}}));
}

}  // namespace
