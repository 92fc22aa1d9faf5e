// Schema 7: a workload stored once per architecture and only the measured part per evaluation;
// read back, every evaluation has its whole workload.  Files of version 6 migrate and keep their
// rows (whole workloads per evaluation), and both forms read back side by side.
#include <gtest/gtest.h>

#include "db/sqlite.hpp"
#include "db/workload_parts.hpp"
#include "db_test_util.hpp"

namespace {

using hwnas::db::Connection;
using hwnas::db::DbError;
using hwnas::db::Store;
using hwnas::db::testing::evaluation;
using nlohmann::json;

class StoreWorkloadParts : public hwnas::db::testing::TempStoreTest {};

// Two nodes; the second measured activity, and a host timing was measured.
json measured_workload() {
  return json{{"nodes",
               {{{"name", "n1:conv"}, {"macs", 100.0}, {"bits", 8}},
                {{"name", "n2:moe"},
                 {"macs", 50.0},
                 {"activity", {{"scalars", {{"active_experts", 1.5}}}}}}}},
              {"input_bytes", 784.0},
              {"measured", {{"host_latency_ms", 0.25}}}};
}

TEST_F(StoreWorkloadParts, PartsSplitAndMergeBackExactly) {
  const json w = measured_workload();
  const json arch = hwnas::db::architecture_workload_part(w);
  const json own = hwnas::db::evaluation_workload_part(w);
  EXPECT_FALSE(arch.contains("measured"));
  EXPECT_FALSE(arch["nodes"][1].contains("activity"));
  EXPECT_TRUE(hwnas::db::is_evaluation_workload_part(own));
  EXPECT_EQ(own["activity"]["1"], w["nodes"][1]["activity"]);
  EXPECT_FALSE(own["activity"].contains("0"));
  EXPECT_EQ(hwnas::db::merge_workload_parts(arch, own), w);
  // A whole workload passes through a merge unchanged.
  EXPECT_EQ(hwnas::db::merge_workload_parts(arch, w), w);
}

TEST_F(StoreWorkloadParts, EvaluationsStoreTheirPartAndReadTheWholeWorkload) {
  Store s(path_);
  const auto run = s.create_run("r", json::object(), 1);
  const auto arch = s.upsert_architecture("abc", json::object(), "");
  const json w = measured_workload();
  EXPECT_FALSE(s.architecture_workload(arch).has_value());
  EXPECT_TRUE(s.set_architecture_workload(arch, hwnas::db::architecture_workload_part(w)));
  // The first stored part stays.
  json other = hwnas::db::architecture_workload_part(w);
  other["input_bytes"] = 1.0;
  EXPECT_FALSE(s.set_architecture_workload(arch, other));
  EXPECT_EQ(*s.architecture_workload(arch), hwnas::db::architecture_workload_part(w));

  auto measured = evaluation(run, arch, 0);
  measured.workload = hwnas::db::evaluation_workload_part(w);
  auto plain = evaluation(run, arch, 1);
  plain.workload = hwnas::db::empty_evaluation_workload_part();
  auto whole = evaluation(run, arch, 2);  // a whole workload, as before schema 7
  whole.workload = w;
  whole.workload["input_bytes"] = 2.0;
  s.add_evaluation(measured);
  s.add_evaluation(plain);
  s.add_evaluation(whole);

  const auto rows = s.evaluations(run);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].workload, w);
  json expected_plain = w;
  expected_plain.erase("measured");
  expected_plain["nodes"][1].erase("activity");
  EXPECT_EQ(rows[1].workload, expected_plain);
  EXPECT_EQ(rows[2].workload, whole.workload);
  // Readers of metrics and costs only (resume, fronts, reports) skip the node tables.
  const auto light = s.evaluations(run, /*with_workloads=*/false);
  ASSERT_EQ(light.size(), 3u);
  for (std::size_t i = 0; i < light.size(); ++i) {
    EXPECT_EQ(light[i].workload, json::object());
    EXPECT_EQ(light[i].metrics, rows[i].metrics);
    EXPECT_EQ(light[i].proposal_id, rows[i].proposal_id);
  }

  // What the part-only rows cost on disk: a few bytes, not the node table.
  Connection c(path_, true);
  EXPECT_LT(c.query_int("SELECT max(length(workload)) FROM evaluations WHERE id <= 2"), 120);
}

TEST_F(StoreWorkloadParts, AnEvaluationPartWithoutItsArchitectureWorkloadIsRefused) {
  Store s(path_);
  const auto run = s.create_run("r", json::object(), 1);
  const auto arch = s.upsert_architecture("abc", json::object(), "");
  auto e = evaluation(run, arch, 0);
  e.workload = hwnas::db::empty_evaluation_workload_part();
  try {
    s.add_evaluation(e);
    FAIL() << "stored an evaluation part without its architecture's workload";
  } catch (const DbError& err) {
    EXPECT_NE(std::string(err.what()).find("set_architecture_workload first"), std::string::npos)
        << err.what();
  }
  EXPECT_TRUE(s.evaluations(run).empty());  // nothing half-stored
  EXPECT_THROW(s.set_architecture_workload(arch, e.workload), DbError);
}

TEST_F(StoreWorkloadParts, VersionSixFileMigratesAndKeepsItsRows) {
  const json w = measured_workload();
  {
    Store s(path_);
    const auto run = s.create_run("old", json::object(), 1);
    const auto arch = s.upsert_architecture("abc", json::object(), "");
    auto e = evaluation(run, arch, 0);
    e.workload = w;
    s.add_evaluation(e);
  }
  {
    // Take the file back to what a version 6 build wrote.
    Connection c(path_, false);
    c.exec("ALTER TABLE architectures DROP COLUMN workload; PRAGMA user_version = 6;");
  }
  Store s(path_);
  EXPECT_EQ(s.schema_version(), hwnas::db::kSchemaVersion);
  ASSERT_EQ(s.evaluations(1).size(), 1u);
  EXPECT_EQ(s.evaluations(1)[0].workload, w);
  EXPECT_FALSE(s.architecture_workload(1).has_value());
  EXPECT_TRUE(s.set_architecture_workload(1, hwnas::db::architecture_workload_part(w)));
  auto e = evaluation(1, 1, 1);
  e.workload = hwnas::db::evaluation_workload_part(w);
  s.add_evaluation(e);
  const auto rows = s.evaluations(1);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].workload, rows[1].workload);
}

}  // namespace
