// Multi-fidelity searches end to end (strategies/multi_fidelity.cpp through the search loop and
// the train evaluator): a promoted candidate continues its previous rung's checkpoint (it trains
// only the missing epochs, with its first rung's seed), the checkpoints are removed when the
// run finishes, and Hyperband matches a full-fidelity search's best accuracy at a lower total
// training cost (epochs summed over every evaluation) on a small trained search.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "db/store.hpp"
#include "search/config.hpp"
#include "search/evaluator_factory.hpp"
#include "search/search_loop.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("hwnas_mf_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

json mlp_search(const fs::path& dir, const json& strategy, int evaluations, int epochs,
                std::uint64_t seed) {
  return {{"name", "mf"},
          {"seed", seed},
          {"space", std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json"},
          {"task", {{"dataset", "fashion_mnist"}, {"train_subset", 1000}, {"val_size", 500}}},
          {"evaluator",
           {{"type", "train"},
            {"epochs", epochs},
            {"batch_size", 64},
            {"lr", 0.003},
            {"host_latency_reps", 0}}},
          {"strategy", strategy},
          {"budget", {{"evaluations", evaluations}}},
          {"devices", {"rpi4_a72"}},
          {"objectives", {"val_accuracy:max"}},
          {"workers", 2},
          {"db", (dir / "mf.db").string()}};
}

struct Outcome {
  double best_full = 0;           // best validation accuracy among full-fidelity evaluations
  std::size_t architectures = 0;  // distinct architectures trained
  double epochs = 0;              // epochs trained, summed over every evaluation
  double sample_epochs = 0;       // training samples x epochs, summed over every evaluation
  std::vector<db::EvaluationRecord> evals;
};

Outcome run(const json& j, int full_epochs) {
  search::SearchConfig c = search::parse_config(j, "");
  auto executor = search::make_local_executor(search::make_evaluator_factory(c), 2, 2);
  db::Store store(c.db_path);
  std::ostringstream progress;
  const auto s = search::run_search(c, *executor, store, progress);
  Outcome o;
  o.evals = store.evaluations(s.run_id);
  std::set<std::int64_t> archs;
  for (const auto& e : o.evals) archs.insert(e.arch_id);
  o.architectures = archs.size();
  for (const auto& e : o.evals) {
    EXPECT_EQ(e.status, "ok") << e.error;
    o.epochs += e.metrics.at("epochs_run").get<double>();
    // mlp_search's split has 1,000 training samples; a subset rung trains on fewer.
    const int subset = e.fidelity.value("train_subset", 0);
    const int samples = subset > 0 && subset < 1000 ? subset : 1000;
    o.sample_epochs += e.metrics.at("epochs_run").get<double>() * samples;
    if (e.fidelity.at("epochs").get<int>() == full_epochs && samples == 1000)
      o.best_full = std::max(o.best_full, e.metrics.at("val_accuracy").get<double>());
  }
  return o;
}

}  // namespace

TEST(MultiFidelitySearch, PromotionsContinueTheirCheckpointAndCleanUp) {
  const fs::path dir = temp_dir("promote");
  const json strategy = {
      {"type", "successive_halving"}, {"min_epochs", 1}, {"max_epochs", 4}, {"eta", 2}};
  const Outcome o = run(mlp_search(dir, strategy, 12, 4, 3), 4);
  ASSERT_EQ(o.evals.size(), 12u);
  std::map<std::int64_t, const db::EvaluationRecord*> by_proposal;
  for (const auto& e : o.evals) by_proposal[e.proposal_id] = &e;
  int promotions = 0;
  for (const auto& e : o.evals) {
    const int epochs = e.fidelity.at("epochs").get<int>();
    EXPECT_EQ(e.fidelity.at("schedule_epochs").get<int>(), 4);
    if (!e.fidelity.contains("continue_from")) {
      EXPECT_EQ(epochs, 1);
      EXPECT_EQ(e.metrics.at("epochs_run").get<double>(), 1);
      continue;
    }
    ++promotions;
    const auto* from = by_proposal.at(e.fidelity.at("continue_from").get<std::int64_t>());
    EXPECT_EQ(from->arch_id, e.arch_id) << "a promotion trains the same architecture on";
    const int before = from->fidelity.at("epochs").get<int>();
    EXPECT_EQ(epochs, 2 * before);
    EXPECT_EQ(e.metrics.at("epochs_run").get<double>(), epochs - before)
        << "continued from the checkpoint, not retrained";
  }
  EXPECT_GE(promotions, 3);
  EXPECT_FALSE(fs::exists(dir / "mf.db.checkpoints")) << "checkpoints removed after the run";
  fs::remove_all(dir);
}

// Same budget of distinct architectures' worth of training time is not the point: Hyperband
// explores more architectures for fewer epochs and still finds an equally good one.
TEST(MultiFidelitySearch, SlowHyperbandMatchesFullFidelityAtLowerCost) {
  const fs::path dir = temp_dir("hyperband");
  double full_best = 0, full_cost = 0, hb_best = 0, hb_cost = 0, sub_best = 0, sub_cost = 0;
  auto fresh = [&] {
    fs::remove_all(dir);
    fs::create_directories(dir);
  };
  for (std::uint64_t seed : {1, 2, 3}) {
    fresh();
    const Outcome full = run(mlp_search(dir, {{"type", "random"}}, 10, 4, seed), 4);
    fresh();
    const Outcome hb = run(
        mlp_search(dir, {{"type", "hyperband"}, {"min_epochs", 1}, {"max_epochs", 4}, {"eta", 2}},
                   18, 4, seed),
        4);
    // The same ladder over training samples (250, 500, 1000 at 4 epochs).
    fresh();
    const Outcome sub = run(mlp_search(dir,
                                       {{"type", "hyperband"},
                                        {"resource", "train_subset"},
                                        {"min_train_subset", 250},
                                        {"max_train_subset", 1000},
                                        {"eta", 2}},
                                       18, 4, seed),
                            4);
    std::printf(
        "seed %d: full fidelity best %.4f for %.0f sample-epochs (%zu architectures); hyperband "
        "over epochs %.4f for %.0f (%zu); over samples %.4f for %.0f (%zu)\n",
        static_cast<int>(seed), full.best_full, full.sample_epochs, full.architectures,
        hb.best_full, hb.sample_epochs, hb.architectures, sub.best_full, sub.sample_epochs,
        sub.architectures);
    full_best += full.best_full / 3;
    full_cost += full.sample_epochs / 3;
    hb_best += hb.best_full / 3;
    hb_cost += hb.sample_epochs / 3;
    sub_best += sub.best_full / 3;
    sub_cost += sub.sample_epochs / 3;
  }
  std::printf(
      "mean: full fidelity %.4f for %.0f sample-epochs; hyperband over epochs %.4f for %.0f; "
      "over samples %.4f for %.0f\n",
      full_best, full_cost, hb_best, hb_cost, sub_best, sub_cost);
  EXPECT_GE(hb_best, full_best - 0.01);
  EXPECT_LT(hb_cost, full_cost);
  // Over samples a promotion trains again, so the saving is smaller; the quality bar is the same.
  EXPECT_GE(sub_best, full_best - 0.015);
  fs::remove_all(dir);
}

TEST(MultiFidelitySearch, TrainSubsetRungsTrainOnTheFirstRowsAndPromotionsTrainAgain) {
  const fs::path dir = temp_dir("subset");
  const json strategy = {{"type", "successive_halving"},
                         {"resource", "train_subset"},
                         {"min_train_subset", 250},
                         {"max_train_subset", 1000},
                         {"eta", 2}};
  const Outcome o = run(mlp_search(dir, strategy, 10, 2, 3), 2);
  ASSERT_EQ(o.evals.size(), 10u);
  std::map<int, int> by_subset;
  std::map<std::int64_t, int> rungs_per_arch;
  for (const auto& e : o.evals) {
    ++by_subset[e.fidelity.at("train_subset").get<int>()];
    ++rungs_per_arch[e.arch_id];
    EXPECT_EQ(e.fidelity.at("epochs").get<int>(), 2) << "the run's epochs at every rung";
    EXPECT_FALSE(e.fidelity.contains("continue_from"));
    EXPECT_EQ(e.metrics.at("epochs_run").get<double>(), 2) << "a promotion trains again";
  }
  EXPECT_GE(by_subset[250], 5);
  EXPECT_GE(by_subset[500], 2) << "the best of the 250-sample rung were promoted";
  for (const auto& [subset, n] : by_subset)
    EXPECT_TRUE(subset == 250 || subset == 500 || subset == 1000) << subset;
  EXPECT_LT(o.architectures, o.evals.size()) << "some architecture was trained at two rungs";
  EXPECT_FALSE(fs::exists(dir / "mf.db.checkpoints")) << "no checkpoints with subset rungs";
  fs::remove_all(dir);
}
