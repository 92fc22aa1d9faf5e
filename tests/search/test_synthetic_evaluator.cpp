// The synthetic evaluator (evaluators/synthetic.hpp) through a config and the search loop: it
// sleeps its seeded duration, scores an architecture the same every time, stores each
// architecture's workload once with evaluations that keep only their own part, and refuses a
// task it cannot serve.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>

#include "db/sqlite.hpp"
#include "db/store.hpp"
#include "evaluators/synthetic.hpp"
#include "search/config.hpp"
#include "search/evaluator_factory.hpp"
#include "search/search_loop.hpp"
#include "spaces/space.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

json synthetic_search(const fs::path& db, double seconds, int evaluations) {
  return {{"name", "synthetic"},
          {"seed", 3},
          {"space",
           {{"type", "nb201"},
            {"input", {{"kind", "image"}, {"shape", {3, 32, 32}}}},
            {"outputs", 10}}},
          {"task", {{"name", "synthetic"}}},
          {"evaluator", {{"type", "synthetic"}, {"seconds", seconds}, {"spread", 0.5}}},
          {"strategy", {{"type", "regularized_evolution"}, {"population", 4}, {"sample_size", 2}}},
          {"budget", {{"evaluations", evaluations}}},
          {"devices", {"jetson_orin_nano", "stm32h743"}},
          {"objectives", {"val_accuracy:max", "latency_ms:min"}},
          {"workers", 2},
          {"db", db.string()}};
}

TEST(SyntheticEvaluator, SleepsItsSeededDurationAndScoresByArchitecture) {
  eval::SyntheticEvaluator ev({0.05, 0.5});
  const auto space = spaces::make_space(json{
      {"type", "nb201"}, {"input", {{"kind", "image"}, {"shape", {3, 32, 32}}}}, {"outputs", 10}});
  std::mt19937_64 rng(1);
  const spaces::Genome g = space->sample(rng);
  for (std::uint64_t seed : {1u, 2u}) {
    const double expected = ev.duration_of(seed);
    EXPECT_GE(expected, 0.025);
    EXPECT_LE(expected, 0.075);
    const auto r = ev.evaluate(g, {}, seed);
    EXPECT_GE(r.wall_seconds, expected);
    EXPECT_LT(r.wall_seconds, expected + 0.05);
    EXPECT_EQ(r.metrics.at("val_accuracy"), eval::SyntheticEvaluator::accuracy_of(g.hash()));
    EXPECT_FALSE(r.workload.nodes.empty());
  }
  EXPECT_NE(ev.duration_of(1), ev.duration_of(2));
  const double a = eval::SyntheticEvaluator::accuracy_of(g.hash());
  EXPECT_GE(a, 0.5);
  EXPECT_LT(a, 0.95);
}

TEST(SyntheticEvaluator, SearchStoresEachArchitectureWorkloadOnce) {
  const fs::path dir =
      fs::temp_directory_path() / ("hwnas_synthetic_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path db = dir / "s.db";
  search::SearchConfig c = search::parse_config(synthetic_search(db, 0.01, 24), "");
  auto executor = search::make_local_executor(search::make_evaluator_factory(c), 2, 1);
  std::ostringstream progress;
  search::SearchSummary s;
  {
    db::Store store(c.db_path);
    s = search::run_search(c, *executor, store, progress);
  }
  EXPECT_EQ(s.evaluated, 24);
  db::Store store(db.string(), true);
  const auto evals = store.evaluations(s.run_id);
  ASSERT_EQ(evals.size(), 24u);
  std::map<std::int64_t, json> workload_of;
  for (const auto& e : evals) {
    // Read back whole, and the same for every evaluation of one architecture.
    ASSERT_TRUE(e.workload.contains("nodes"));
    auto [it, fresh] = workload_of.emplace(e.arch_id, e.workload);
    if (!fresh) {
      EXPECT_EQ(it->second, e.workload);
    }
    const auto arch = store.architecture(e.arch_id);
    ASSERT_TRUE(arch);
    EXPECT_EQ(e.metrics.at("val_accuracy").get<double>(),
              eval::SyntheticEvaluator::accuracy_of(arch->hash));
    EXPECT_EQ(e.costs.size(), 2u);
  }
  db::Connection conn(db.string(), true);
  EXPECT_EQ(conn.query_int("SELECT count(*) FROM architectures WHERE workload IS NULL"), 0);
  EXPECT_LT(conn.query_int("SELECT max(length(workload)) FROM evaluations"), 64);
  fs::remove_all(dir);
}

TEST(SyntheticEvaluator, NeedsTheSyntheticTask) {
  json j = synthetic_search("x.db", 0.01, 2);
  j["task"] = {{"name", "fashion_mnist"}};
  try {
    search::parse_config(j, "");
    FAIL() << "accepted the synthetic evaluator on fashion_mnist";
  } catch (const search::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'synthetic' needs task.name 'synthetic'"),
              std::string::npos)
        << e.what();
  }
  j = synthetic_search("x.db", 0.01, 2);
  j["evaluator"] = {{"type", "train"}};
  EXPECT_THROW(search::parse_config(j, ""), search::ConfigError);
}

}  // namespace
