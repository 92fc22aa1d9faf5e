// Schema version 3: each evaluation records its proposal id (unique within a run) and each
// front's hypervolume over the run is kept; files written at version 2 migrate and keep their
// rows (proposal id "not recorded").
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
using hwnas::db::DbError;
using hwnas::db::EvaluationRecord;
using hwnas::db::HypervolumePoint;
using hwnas::db::Store;
using hwnas::db::testing::evaluation;
using nlohmann::json;

namespace {

class StoreProposalTest : public hwnas::db::testing::TempStoreTest {};

TEST_F(StoreProposalTest, ProposalIdsRoundTripAndAreUniquePerRun) {
  Store s(path_);
  auto run = s.create_run("r", json::object(), 1);
  auto other = s.create_run("o", json::object(), 1);
  auto arch = s.upsert_architecture("h", json::object(), "");
  s.add_evaluation(evaluation(run, arch, 0));
  s.add_evaluation(evaluation(run, arch, 1));
  s.add_evaluation(evaluation(run, arch, -1));  // not recorded: any number of them
  s.add_evaluation(evaluation(run, arch, -1));
  s.add_evaluation(evaluation(other, arch, 0));  // another run may reuse the id
  EXPECT_THROW(s.add_evaluation(evaluation(run, arch, 1)), DbError);
  auto evals = s.evaluations(run);
  ASSERT_EQ(evals.size(), 4u);
  EXPECT_EQ(evals[0].proposal_id, 0);
  EXPECT_EQ(evals[1].proposal_id, 1);
  EXPECT_EQ(evals[2].proposal_id, -1);
}

TEST_F(StoreProposalTest, HypervolumeHistoryRoundTripsAndReplaces) {
  Store s(path_);
  auto run = s.create_run("r", json::object(), 1);
  EXPECT_TRUE(s.hypervolume_history(run, "joint").empty());
  s.set_hypervolume_history(run, "joint", {{10, 1.5, {0.5, 20}}, {20, 2.5, {0.5, 20}}});
  s.set_hypervolume_history(run, "h100_sxm", {{20, 7, {0.5, 3}}});
  auto h = s.hypervolume_history(run, "joint");
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[1].evaluations, 20);
  EXPECT_EQ(h[1].hypervolume, 2.5);
  EXPECT_EQ(h[1].reference, (std::vector<double>{0.5, 20}));
  EXPECT_EQ(s.hypervolume_fronts(run), (std::vector<std::string>{"h100_sxm", "joint"}));
  s.set_hypervolume_history(run, "joint", {{30, 3, {0.5, 20}}});  // replaces the front's rows
  ASSERT_EQ(s.hypervolume_history(run, "joint").size(), 1u);
  EXPECT_THROW(s.set_hypervolume_history(run, "joint", {{30, 3, {}}, {30, 4, {}}}), DbError);
  EXPECT_EQ(s.hypervolume_history(run, "joint").size(), 1u);  // the failed write left nothing
}

TEST_F(StoreProposalTest, VersionTwoFileMigratesAndKeepsItsRows) {
  {
    // A file as hwnas wrote it at schema version 2: the v1 fixture plus the v2 change.
    std::ifstream in(std::string(HWNAS_TEST_DIR) + "/fixtures/schema_v1.sql");
    ASSERT_TRUE(in) << "missing fixtures/schema_v1.sql";
    std::stringstream sql;
    sql << in.rdbuf();
    Connection c(path_, false);
    c.exec(sql.str());
    c.exec(R"sql(
      ALTER TABLE costs ADD COLUMN activity_source TEXT
        CHECK (activity_source IN ('measured', 'assumed', 'mixed', 'none'));
      INSERT INTO runs (id, name, config, seed) VALUES (1, 'old', '{}', 3);
      INSERT INTO architectures (id, hash, genome) VALUES (1, 'abc', '{}');
      INSERT INTO evaluations (id, run_id, arch_id, metrics, fidelity, workload, loss_curve, status)
        VALUES (1, 1, 1, '{"val_accuracy": 0.7}', '{}', '{"nodes": []}', '[]', 'ok');
      INSERT INTO costs (evaluation_id, device, feasible, latency_ms, energy_mj, memory_bytes,
                         activity_source)
        VALUES (1, 'loihi', 1, 1.5, 2.5, 3.5, 'measured');
      PRAGMA user_version = 2;
      PRAGMA application_id = 1213681235;)sql");
  }
  try {
    Store ro(path_, /*read_only=*/true);
    FAIL() << "read-only open of a version 2 file";
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 2 is older than " +
                                         std::to_string(hwnas::db::kSchemaVersion)),
              std::string::npos)
        << e.what();
  }
  Store s(path_);
  EXPECT_EQ(s.schema_version(), hwnas::db::kSchemaVersion);
  auto evals = s.evaluations(1);
  ASSERT_EQ(evals.size(), 1u);
  EXPECT_EQ(evals[0].proposal_id, -1);  // written before it was recorded
  EXPECT_EQ(evals[0].costs[0].activity_source, "measured");
  s.add_evaluation(evaluation(1, 1, 0));
  s.set_hypervolume_history(1, "loihi", {{2, 1.0, {0.5}}});
  EXPECT_EQ(s.evaluations(1)[1].proposal_id, 0);
  EXPECT_EQ(s.hypervolume_history(1, "loihi").size(), 1u);
}

}  // namespace
