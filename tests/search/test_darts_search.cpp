// A darts search from a config, end to end: the supernet phase on Fashion-MNIST (validation
// held out of the training split), the derived architectures trained from scratch by the train
// evaluator and stored with their costs in the same SQLite run and fronts as any strategy's;
// and the config errors of one-shot strategies.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "db/store.hpp"
#include "search/config.hpp"
#include "search/evaluator_factory.hpp"
#include "search/search_loop.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

json darts_config(const fs::path& dir) {
  return {{"name", "darts_e2e"},
          {"seed", 3},
          {"space",
           {{"type", "cell"},
            {"input", {{"kind", "image"}, {"shape", {1, 28, 28}}}},
            {"outputs", 10},
            {"nodes", 2},
            {"inputs_per_node", 2},
            {"ops", {"none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3"}},
            {"stages", {{{"cells", 1}, {"channels", 8}}, {{"cells", 1}, {"channels", 16}}}}}},
          {"task", {{"dataset", "fashion_mnist"}, {"train_subset", 1000}, {"val_size", 300}}},
          {"evaluator",
           {{"type", "train"},
            {"epochs", 3},
            {"batch_size", 32},
            {"lr", 0.01},
            {"host_latency_reps", 0}}},
          {"strategy",
           {{"type", "darts"},
            {"epochs", 2},
            {"steps_per_epoch", 4},
            {"candidates", 2},
            {"hardware_weight", 0.5},
            {"device", "jetson_orin_nano"}}},
          {"budget", {{"evaluations", 3}}},
          {"devices", {"jetson_orin_nano"}},
          {"objectives", {"val_accuracy:max", "latency_ms:min"}},
          {"workers", 1},
          {"db", (dir / "darts.db").string()}};
}

std::string config_error(const json& j) {
  try {
    (void)search::parse_config(j, "");
  } catch (const search::ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(DartsSearchEndToEnd, DerivedArchitecturesAreTrainedAndStoredLikeAnyCandidate) {
  const fs::path dir = fs::temp_directory_path() / ("hwnas_darts_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  search::SearchConfig c = search::parse_config(darts_config(dir), "");
  db::Store store(c.db_path);
  auto executor = search::make_local_executor(search::make_evaluator_factory(c), 1, 2);
  std::ostringstream progress;
  auto summary = search::run_search(c, *executor, store, progress);
  EXPECT_EQ(summary.evaluated, 3);
  EXPECT_EQ(summary.failed, 0);
  const std::string log = progress.str();
  EXPECT_NE(log.find("darts epoch 2/2"), std::string::npos) << log;
  EXPECT_NE(log.find("darts: derived"), std::string::npos) << log;

  // Proposal 0 is the supernet's derivation, trained from scratch and scored like any other.
  const auto state = store.strategy_state(summary.run_id);
  ASSERT_TRUE(state.has_value());
  const json& body = (*state)["strategy"]["state"];
  ASSERT_TRUE(body["phase_done"].get<bool>());
  ASSERT_EQ(body["candidates"].size(), 2u);
  EXPECT_TRUE(body["report"].contains("probabilities"));
  const spaces::Genome derived = spaces::Genome::from_json(body["candidates"][0]);
  bool found = false;
  for (const auto& e : store.evaluations(summary.run_id)) {
    EXPECT_EQ(e.status, "ok");
    EXPECT_TRUE(e.metrics.contains("val_accuracy"));
    EXPECT_FALSE(e.costs.empty());
    if (e.proposal_id == 0) {
      found = true;
      EXPECT_EQ(store.architecture(e.arch_id)->hash, derived.hash());
      EXPECT_GT(e.metrics["val_accuracy"].get<double>(), 0.2);  // trained, above chance
    }
  }
  EXPECT_TRUE(found);
  EXPECT_FALSE(store.pareto(summary.run_id, "jetson_orin_nano").empty());
  fs::remove_all(dir);
}

TEST(DartsSearchEndToEnd, ConfigErrorsNameTheFieldAndTheFix) {
  const fs::path dir = fs::temp_directory_path();
  json j = darts_config(dir);
  j["strategy"]["device"] = "toaster";
  EXPECT_NE(config_error(j).find("config.strategy.device: 'toaster'"), std::string::npos)
      << config_error(j);
  j = darts_config(dir);
  j["space"] = std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json";
  EXPECT_NE(config_error(j).find("'darts' searches the edges of cell spaces"), std::string::npos)
      << config_error(j);
  j = darts_config(dir);
  j["devices"] = json::array();
  j["objectives"] = {"val_accuracy:max"};
  j["strategy"].erase("device");
  EXPECT_NE(config_error(j).find("config.strategy.device: the hardware term needs a device"),
            std::string::npos)
      << config_error(j);
  j["strategy"]["hardware_weight"] = 0;
  EXPECT_EQ(config_error(j), "");
}

}  // namespace
