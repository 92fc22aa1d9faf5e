// A search runs on every example space: the trained ones on their tasks (shrunk to a few
// seconds), the NAS-Bench-201 one with the tabular evaluator on a generated table.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "db/store.hpp"
#include "search/config.hpp"
#include "search/evaluator_factory.hpp"
#include "search/search_loop.hpp"
#include "spaces/space.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

const std::string kExamples = std::string(HWNAS_SOURCE_DIR) + "/examples/";

json load_example(const std::string& name) {
  std::ifstream in(kExamples + name);
  json j = json::parse(in);
  j["space"] = kExamples + j["space"].get<std::string>();
  return j;
}

fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("hwnas_examples_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

search::SearchSummary run(const json& j, db::Store& store) {
  search::SearchConfig c = search::parse_config(j, "");
  auto executor = search::make_local_executor(search::make_evaluator_factory(c), 2, 2);
  std::ostringstream progress;
  return search::run_search(c, *executor, store, progress);
}

void expect_trained(const db::Store& store, std::int64_t run_id, int n) {
  auto evals = store.evaluations(run_id);
  ASSERT_EQ(static_cast<int>(evals.size()), n);
  for (const auto& e : evals) {
    ASSERT_EQ(e.status, "ok") << e.error;
    EXPECT_LT(e.metrics["train_loss_last"].get<double>(),
              e.metrics["train_loss_first"].get<double>());
  }
}

class TrainedExample : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainedExample, RunsShrunkToSeconds) {
  fs::path dir = temp_dir("trained");
  json j = load_example(GetParam());
  j["budget"]["evaluations"] = 2;
  j["task"]["train_subset"] = 256;
  j["task"]["val_size"] = 128;
  j["evaluator"]["epochs"] = 2;
  j["evaluator"]["batch_size"] = 32;
  j["evaluator"]["host_latency_reps"] = 2;
  j["db"] = (dir / "e.db").string();
  db::Store store(j["db"].get<std::string>());
  auto s = run(j, store);
  EXPECT_EQ(s.evaluated, 2);
  expect_trained(store, s.run_id, 2);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Examples, TrainedExample,
                         ::testing::Values("quickstart.json", "search_mlp.json",
                                           "search_attention.json", "search_darts_cell.json",
                                           "search_symbolic.json", "search_spiking.json",
                                           "search_continuous_time.json",
                                           "search_spiking_vs_classic.json",
                                           "search_sequence_mixers.json", "search_hyperband.json"),
                         [](const auto& info) {
                           std::string n = info.param.substr(0, info.param.find('.'));
                           n.erase(std::remove(n.begin(), n.end(), '_'), n.end());
                           // ~5 s of 32x32 cells; ~10 s of 256-token sequences
                           const bool slow = n == "searchdartscell" || n == "searchsequencemixers";
                           return slow ? n + "Slow" : n;
                         });

// A table over all 15625 NAS-Bench-201 cells.  The numbers are SYNTHETIC (a smooth function of
// the cell's ops, not the benchmark's measurements): the test checks the tabular machinery,
// not NAS-Bench-201's results.
std::string write_nb201_table(const fs::path& dir, const spaces::Space& space, bool drop_first) {
  fs::path csv = dir / "nb201_table.csv";
  std::ofstream out(csv);
  out << "arch,valid_acc_12,test_acc_200\n";
  const std::uint64_t n = *space.size();
  for (std::uint64_t i = drop_first ? 1 : 0; i < n; ++i) {
    std::string arch = space.describe(space.at(i));
    double score = 40;
    for (std::size_t p = 0; (p = arch.find("nor_conv_3x3", p)) != std::string::npos; ++p)
      score += 8;
    for (std::size_t p = 0; (p = arch.find("nor_conv_1x1", p)) != std::string::npos; ++p)
      score += 5;
    for (std::size_t p = 0; (p = arch.find("skip_connect", p)) != std::string::npos; ++p)
      score += 2;
    out << '"' << arch << "\"," << score + 0.001 * static_cast<double>(i % 997) << "," << score + 1
        << "\n";
  }
  return csv.string();
}

TEST(TabularExample, Nb201SearchWithTabularEvaluator) {
  fs::path dir = temp_dir("nb201");
  json j = load_example("search_nb201_tabular.json");
  auto space = spaces::load_space(j["space"].get<std::string>());
  j["evaluator"]["csv"] = write_nb201_table(dir, *space, false);
  j["budget"]["evaluations"] = 60;
  j["db"] = (dir / "nb201.db").string();
  db::Store store(j["db"].get<std::string>());
  auto s = run(j, store);
  EXPECT_EQ(s.evaluated, 60);
  EXPECT_EQ(s.failed, 0);
  auto evals = store.evaluations(s.run_id);
  ASSERT_EQ(evals.size(), 60u);
  for (const auto& e : evals) {
    EXPECT_GT(e.metrics["val_accuracy"].get<double>(), 39.0);
    EXPECT_TRUE(e.metrics.contains("test_accuracy"));
    EXPECT_EQ(e.costs.size(), 4u);
  }
  for (const std::string d : {"h100_sxm", "jetson_tx2", "edgetpu_usb", "pixel3_a75"})
    EXPECT_FALSE(store.pareto(s.run_id, d).empty()) << d;
  // Regularized evolution beats the table's median (score 40 + conv counts) by selection.
  EXPECT_GT(s.best_metrics["val_accuracy"], 70.0);
  fs::remove_all(dir);
}

TEST(TabularExample, ArchitectureMissingFromTableEndsTheSearchClearly) {
  fs::path dir = temp_dir("nb201miss");
  json j = load_example("search_nb201_tabular.json");
  auto space = spaces::load_space(j["space"].get<std::string>());
  j["evaluator"]["csv"] = write_nb201_table(dir, *space, true);  // cell 0 is missing
  j["db"] = (dir / "miss.db").string();
  search::SearchConfig c = search::parse_config(j, "");
  // Cell 0 through the search's own evaluator: the table lacks it, which is a setup error
  // (the search loop turns it into a failed run with this message, not a failed candidate).
  auto evaluator = search::make_evaluator_factory(c)();
  eval::Fidelity f;
  f.epochs = 12;
  try {
    (void)evaluator->evaluate(space->at(0), f, 0);
    FAIL() << "a missing architecture must be an error";
  } catch (const eval::SetupError& e) {
    EXPECT_NE(std::string(e.what()).find(space->describe(space->at(0))), std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

TEST(TabularExample, MissingArchitectureFailsTheRunWithTheMessage) {
  fs::path dir = temp_dir("nb201fatal");
  json j = load_example("search_nb201_tabular.json");
  auto space = spaces::load_space(j["space"].get<std::string>());
  // A table of only the first cell: the first proposal that is not that cell ends the search.
  std::ofstream(dir / "one.csv") << "arch,valid_acc_12,test_acc_200\n\""
                                 << space->describe(space->at(0)) << "\",50,51\n";
  j["evaluator"]["csv"] = (dir / "one.csv").string();
  j["strategy"] = {{"type", "random"}};
  j["budget"]["evaluations"] = 20;
  j["db"] = (dir / "fatal.db").string();
  db::Store store(j["db"].get<std::string>());
  try {
    (void)run(j, store);
    FAIL() << "a table lacking a proposed architecture must end the search";
  } catch (const eval::SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("not in"), std::string::npos) << e.what();
  }
  auto run_id = store.latest_run_id();
  ASSERT_TRUE(run_id.has_value());
  EXPECT_EQ(store.run(*run_id)->status, "failed");
  fs::remove_all(dir);
}

}  // namespace
