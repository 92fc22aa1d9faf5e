// The memory guard in a search (issue 13 item 10): with evaluator.memory_limit_mb set between the
// smallest and the largest candidates' estimates, the big ones fail with the reason, the others
// train, and the search finishes with every evaluation stored.  And the field is validated.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "db/store.hpp"
#include "search/config.hpp"
#include "search/evaluator_factory.hpp"
#include "search/executor.hpp"
#include "search/search_loop.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

json tiny_search(const fs::path& db) {
  std::ifstream in(std::string(HWNAS_TEST_DIR) + "/fixtures/tiny.json");
  json j = json::parse(in);
  j["space"] = std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json";
  j["task"]["train_subset"] = 300;
  j["task"]["val_size"] = 100;
  j["evaluator"]["epochs"] = 1;
  j["evaluator"]["host_latency_reps"] = 0;
  j["devices"] = {"h100_sxm"};
  j["budget"]["evaluations"] = 8;
  j["db"] = db.string();
  return j;
}

}  // namespace

TEST(MemoryGuard, ASearchWhoseBigCandidatesExceedTheLimitFinishes) {
  const fs::path dir =
      fs::temp_directory_path() / ("hwnas_memory_guard_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  json j = tiny_search(dir / "m.db");
  // Every mlp candidate holds the evaluation pass at batch 256 over 784 inputs and its first
  // layer (0.93 MB); a 102k-parameter one estimates 2.57 MB with AdamW (seed 7: one of the 8
  // candidates).  2 MB splits them.
  j["evaluator"]["memory_limit_mb"] = 2;
  search::SearchConfig c = search::parse_config(j, "");
  db::Store store(c.db_path);
  auto executor = search::make_local_executor(search::make_evaluator_factory(c), 2, 2);
  std::ostringstream progress;
  const auto summary = search::run_search(c, *executor, store, progress);
  EXPECT_EQ(summary.status, "finished");
  EXPECT_EQ(summary.evaluated, 8);
  EXPECT_GT(summary.failed, 0) << progress.str();
  EXPECT_LT(summary.failed, 8) << progress.str();
  int refused = 0;
  for (const auto& e : store.evaluations(summary.run_id)) {
    if (e.status != "failed") continue;
    EXPECT_NE(e.error.find("exceeds the limit 2.00 MB (evaluator.memory_limit_mb"),
              std::string::npos)
        << e.error;
    ++refused;
  }
  EXPECT_EQ(refused, summary.failed);
  EXPECT_NE(progress.str().find("FAILED (training memory estimate"), std::string::npos)
      << progress.str();
  fs::remove_all(dir);
}

TEST(MemoryGuard, TheLimitIsValidated) {
  json j = tiny_search("x.db");
  for (const json& bad : {json(-2), json(2.5), json("1GB")}) {
    j["evaluator"]["memory_limit_mb"] = bad;
    try {
      search::parse_config(j, "");
      ADD_FAILURE() << "accepted memory_limit_mb " << bad;
    } catch (const search::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("config.evaluator.memory_limit_mb"), std::string::npos)
          << e.what();
    }
  }
  j["evaluator"]["memory_limit_mb"] = -1;  // no limit
  EXPECT_NO_THROW(search::parse_config(j, ""));
}
