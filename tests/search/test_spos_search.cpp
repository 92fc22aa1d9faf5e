// An spos search from examples/search_spos.json, shrunk, end to end through `hwnas search`: the
// supernet phase on Fashion-MNIST, the picks trained from scratch by the train evaluator and
// stored with both their stand-alone (val_accuracy) and inherited-weight
// (inherited_val_accuracy) accuracy; the same seed gives the same proposals; `hwnas show`
// prints both.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "db/store.hpp"
#include "tests/search/cli_util.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

json shrunk_example(const fs::path& dir, const std::string& db) {
  const std::string examples = std::string(HWNAS_SOURCE_DIR) + "/examples/";
  std::ifstream in(examples + "search_spos.json");
  json j = json::parse(in);
  j["space"] = examples + j["space"].get<std::string>();
  j["task"]["train_subset"] = 600;
  j["task"]["val_size"] = 200;
  j["evaluator"]["epochs"] = 1;
  j["strategy"]["epochs"] = 1;
  j["strategy"]["steps_per_epoch"] = 6;
  j["strategy"]["population"] = 4;
  j["strategy"]["generations"] = 1;
  j["strategy"]["candidates"] = 2;
  j["strategy"]["eval_samples"] = 100;
  j["budget"]["evaluations"] = 3;
  j["workers"] = 1;
  j["db"] = (dir / db).string();
  return j;
}

struct Stored {
  std::string arch;
  double inherited = -1;  // -1: none stored
};

std::vector<Stored> run_search(const fs::path& dir, const std::string& db) {
  const fs::path cfg = dir / (db + ".json");
  std::ofstream(cfg) << shrunk_example(dir, db).dump(1);
  const auto r = test::run_hwnas("search " + cfg.string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("spos: supernet epoch 1/1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("spos: generation 1/1"), std::string::npos) << r.output;
  db::Store store((dir / db).string());
  const auto runs = store.runs();
  EXPECT_EQ(runs.size(), 1u);
  std::vector<Stored> out;
  for (const auto& e : store.evaluations(runs.front().id)) {
    EXPECT_EQ(e.status, "ok") << e.error;
    EXPECT_TRUE(e.metrics.contains("val_accuracy"));
    Stored s;
    s.arch = store.architecture(e.arch_id)->hash;
    if (e.metrics.contains("inherited_val_accuracy"))
      s.inherited = e.metrics["inherited_val_accuracy"].get<double>();
    out.push_back(s);
    // The picks (proposals 0, 1) carry both accuracies; the later mutation only its own.
    if (e.proposal_id < 2) {
      EXPECT_TRUE(e.metrics.contains("inherited_val_accuracy")) << e.metrics.dump();
      EXPECT_EQ(e.metrics.value("inherited_rank", -1), e.proposal_id);
      EXPECT_GT(e.metrics["val_accuracy"].get<double>(), 0.2);  // trained, above chance
    }
    EXPECT_FALSE(e.costs.empty());
  }
  EXPECT_EQ(out.size(), 3u);
  return out;
}

TEST(SposSearchEndToEnd, PicksAreRetrainedAndStoredWithBothAccuraciesDeterministically) {
  const fs::path dir = fs::temp_directory_path() / ("hwnas_spos_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto a = run_search(dir, "a.db");
  const auto b = run_search(dir, "b.db");
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].arch, b[i].arch) << i;
    EXPECT_EQ(a[i].inherited, b[i].inherited) << i;
  }
  const auto show = test::run_hwnas("show " + a.front().arch + " --db " + (dir / "a.db").string());
  EXPECT_EQ(show.exit_code, 0) << show.output;
  EXPECT_NE(show.output.find("inherited_val_accuracy"), std::string::npos) << show.output;
  fs::remove_all(dir);
}

}  // namespace
