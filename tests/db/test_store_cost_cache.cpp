// Schema version 6: the cost cache keeps costs that take seconds to get (external measuring
// devices) by (architecture hash, device fingerprint, batch), across runs in one file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "db/sqlite.hpp"
#include "db/store.hpp"
#include "db_test_util.hpp"

namespace fs = std::filesystem;
using hwnas::db::Connection;
using hwnas::db::CostRecord;
using hwnas::db::kSchemaVersion;
using hwnas::db::Store;
using nlohmann::json;

namespace {

class StoreCostCache : public hwnas::db::testing::TempStoreTest {};

CostRecord measured(double ms) {
  CostRecord c;
  c.device = "stored under another name";
  c.latency_ms = ms;
  c.energy_mj = 0.25;
  c.memory_bytes = 4096;
  c.detail = {{"reps", 15}};
  c.activity_source = "none";
  return c;
}

}  // namespace

TEST_F(StoreCostCache, KeyedByArchitectureFingerprintAndBatch) {
  Store s(path_);
  EXPECT_FALSE(s.cached_cost("arch", "torch_cpu", "fp1", 1));
  s.put_cached_cost("arch", "fp1", 1, measured(1.5));
  const auto hit = s.cached_cost("arch", "torch_cpu", "fp1", 1);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->device, "torch_cpu");  // the caller's device name, not the stored one
  EXPECT_TRUE(hit->feasible);
  EXPECT_DOUBLE_EQ(hit->latency_ms, 1.5);
  EXPECT_DOUBLE_EQ(hit->energy_mj, 0.25);
  EXPECT_DOUBLE_EQ(hit->memory_bytes, 4096);
  EXPECT_EQ(hit->detail, json({{"reps", 15}}));
  EXPECT_EQ(hit->activity_source, "none");
  // Every part of the key matters.
  EXPECT_FALSE(s.cached_cost("other", "torch_cpu", "fp1", 1));
  EXPECT_FALSE(s.cached_cost("arch", "torch_cpu", "fp2", 1));
  EXPECT_FALSE(s.cached_cost("arch", "torch_cpu", "fp1", 8));
  // Replacing keeps one row.
  s.put_cached_cost("arch", "fp1", 1, measured(2.0));
  EXPECT_DOUBLE_EQ(s.cached_cost("arch", "torch_cpu", "fp1", 1)->latency_ms, 2.0);
  Connection c(path_, true);
  EXPECT_EQ(c.query_int("SELECT count(*) FROM cost_cache"), 1);
}

TEST_F(StoreCostCache, InfeasibleAnswersAndUnsetFiguresRoundTrip) {
  Store s(path_);
  CostRecord c = measured(3.0);
  c.feasible = false;
  c.infeasible_reason = "weights > 64 MB";
  c.energy_mj = std::nan("");  // a device that does not give energy
  s.put_cached_cost("arch", "fp", 1, c);
  const auto hit = s.cached_cost("arch", "dev", "fp", 1);
  ASSERT_TRUE(hit);
  EXPECT_FALSE(hit->feasible);
  EXPECT_EQ(hit->infeasible_reason, "weights > 64 MB");
  EXPECT_TRUE(std::isnan(hit->energy_mj));
}

TEST_F(StoreCostCache, VersionFiveFileMigratesAndKeepsItsRows) {
  {
    Store s(path_);
    s.create_run("old", json::object(), 7);
  }
  {
    // Take the file back to what a version 5 build wrote.
    Connection c(path_, false);
    c.exec(
        "DROP TABLE cost_cache; ALTER TABLE architectures DROP COLUMN workload; "
        "PRAGMA user_version = 5;");
  }
  Store s(path_);
  EXPECT_EQ(s.schema_version(), kSchemaVersion);
  ASSERT_EQ(s.runs().size(), 1u);
  EXPECT_EQ(s.runs()[0].name, "old");
  s.put_cached_cost("arch", "fp", 1, measured(1.0));
  EXPECT_TRUE(s.cached_cost("arch", "dev", "fp", 1));
}
