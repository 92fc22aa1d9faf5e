// Measured activity end to end: two genomes of identical shape whose measured densities differ
// are trained by the real evaluator; their Loihi energies differ in the direction the densities
// say; the costs are stored as a search stores them, and `hwnas rescore` reproduces them from the
// stored workload + activity without retraining.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include "db/store.hpp"
#include "evaluators/train_evaluator.hpp"
#include "hwmodels/device.hpp"
#include "search/search_loop.hpp"
#include "spaces/workload_builder.hpp"

using namespace hwnas;
namespace fs = std::filesystem;

namespace {

const std::string kBinary = std::string(HWNAS_BINARY_DIR) + "/hwnas";

// Three Gaussian blobs in 8 dimensions (a task a small MLP learns in one epoch).
eval::Dataset blobs(int n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  eval::Dataset d;
  d.num_classes = 3;
  d.x = nn::Tensor(nn::Shape{n, 8});
  for (int i = 0; i < n; ++i) {
    const int c = i % 3;
    d.y.push_back(c);
    for (int j = 0; j < 8; ++j) d.x.data()[i * 8 + j] = noise(rng) + (j % 3 == c ? 3.0f : 0.0f);
  }
  return d;
}

// input vector(8) -> dense(32, act) -> dense(32, act) -> head(3): the same shape (nodes, dims,
// MACs, parameters) for any activation.
spaces::Genome mlp(const std::string& activation) {
  spaces::Genome g(spaces::TensorType::vector(8));
  auto a = g.add_node("dense", {{"units", 32}, {"activation", activation}});
  auto b = g.add_node("dense", {{"units", 32}, {"activation", activation}});
  auto h = g.add_node("head", {{"outputs", 3}});
  g.add_edge(g.input_node(), a);
  g.add_edge(a, b);
  g.add_edge(b, h);
  g.validate();
  return g;
}

double mean_density(const hw::Workload& w) {
  double s = 0;
  int n = 0;
  for (const auto& node : w.nodes)
    if (const double* d = node.activity.find(hw::activity_key::kActivationDensity)) {
      s += *d;
      ++n;
    }
  return n ? s / n : -1;
}

int run_command(const std::string& cmd, std::string* output) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) output->append(buf, n);
  int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST(ActivityEndToEnd, MeasuredDensityOrdersLoihiEnergyAndRescoreReproducesIt) {
  auto data = std::make_shared<eval::TrainValSplit>();
  data->train = blobs(300, 1);
  data->val = blobs(150, 2);
  eval::TrainEvaluatorOptions opt;
  opt.train.batch_size = 30;
  opt.train.lr = 0.01f;
  opt.host_latency_reps = 0;
  eval::TrainEvaluator evaluator(data, opt);
  eval::Fidelity f;
  f.epochs = 1;

  // ReLU zeroes a share of the hidden outputs; SiLU almost never outputs an exact zero.
  const spaces::Genome sparse_g = mlp("relu"), dense_g = mlp("silu");
  eval::EvalResult sparse = evaluator.evaluate(sparse_g, f, 11);
  eval::EvalResult dense = evaluator.evaluate(dense_g, f, 11);
  ASSERT_TRUE(sparse.ok()) << sparse.error;
  ASSERT_TRUE(dense.ok()) << dense.error;

  // Identical shape: every static count agrees node by node.
  ASSERT_EQ(sparse.workload.nodes.size(), dense.workload.nodes.size());
  for (std::size_t i = 0; i < sparse.workload.nodes.size(); ++i) {
    const auto &a = sparse.workload.nodes[i], &b = dense.workload.nodes[i];
    EXPECT_EQ(a.macs, b.macs);
    EXPECT_EQ(a.params, b.params);
    EXPECT_EQ(a.output_bytes, b.output_bytes);
    EXPECT_DOUBLE_EQ(a.activity.samples, 150);  // the whole validation split
    EXPECT_TRUE(b.activity.measured());
  }
  const double d_sparse = mean_density(sparse.workload), d_dense = mean_density(dense.workload);
  EXPECT_LT(d_sparse, 0.9);
  EXPECT_GT(d_dense, 0.99);

  auto loihi = hw::load_device("loihi");
  hw::Cost e_sparse = loihi->estimate(sparse.workload);
  hw::Cost e_dense = loihi->estimate(dense.workload);
  EXPECT_EQ(e_sparse.activity_source, "measured");
  EXPECT_EQ(e_dense.activity_source, "measured");
  EXPECT_LT(e_sparse.energy_mj, e_dense.energy_mj);  // fewer non-zeros, fewer spikes and SOPs
  std::printf("mean density relu %.4f silu %.4f; loihi energy relu %.6g mJ silu %.6g mJ\n",
              d_sparse, d_dense, e_sparse.energy_mj, e_dense.energy_mj);
  // With the preset's assumed rates both shapes would cost the same.
  hw::Cost a_sparse = loihi->estimate(spaces::build_workload(sparse_g));
  hw::Cost a_dense = loihi->estimate(spaces::build_workload(dense_g));
  EXPECT_EQ(a_sparse.activity_source, "assumed");
  EXPECT_DOUBLE_EQ(a_sparse.energy_mj, a_dense.energy_mj);
  EXPECT_NE(e_sparse.energy_mj, a_sparse.energy_mj);

  // Store both as the search does, then rescore from the file.
  fs::path dir = fs::temp_directory_path() / ("hwnas_test_activity_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string db_path = (dir / "activity.db").string();
  std::vector<std::int64_t> ids;
  {
    db::Store store(db_path);
    auto run =
        store.create_run("activity", {{"objectives", {"val_accuracy:max", "energy_mj:min"}}}, 11);
    for (const auto* pair : {&sparse, &dense}) {
      const spaces::Genome& g = pair == &sparse ? sparse_g : dense_g;
      db::EvaluationRecord rec;
      rec.run_id = run;
      rec.arch_id = store.upsert_architecture(g.hash(), g.to_json(), "");
      rec.metrics = pair->metrics;
      rec.workload = pair->workload.to_json();
      rec.costs.push_back(search::to_record("loihi", loihi->estimate(pair->workload)));
      ids.push_back(store.add_evaluation(rec));
    }
    store.finish_run(run, "finished");
  }
  std::string out;
  ASSERT_EQ(run_command(kBinary + " rescore --db " + db_path + " --device loihi", &out), 0) << out;
  out.clear();
  ASSERT_EQ(run_command(kBinary + " rescore --db " + db_path + " --device loihi2", &out), 0) << out;
  db::Store store(db_path, /*read_only=*/true);
  auto evals = store.evaluations(*store.latest_run_id());
  ASSERT_EQ(evals.size(), 2u);
  auto cost_of = [](const db::EvaluationRecord& e, const std::string& device) {
    for (const auto& c : e.costs)
      if (c.device == device) return c;
    ADD_FAILURE() << "no cost on " << device;
    return db::CostRecord{};
  };
  const db::CostRecord r_sparse = cost_of(evals[0], "loihi"), r_dense = cost_of(evals[1], "loihi");
  EXPECT_EQ(r_sparse.activity_source, "measured");
  EXPECT_EQ(r_dense.activity_source, "measured");
  // Bit-identical to the costs computed right after training (doubles round-trip exactly).
  EXPECT_EQ(r_sparse.energy_mj, e_sparse.energy_mj);
  EXPECT_EQ(r_dense.energy_mj, e_dense.energy_mj);
  EXPECT_EQ(r_sparse.latency_ms, e_sparse.latency_ms);
  // A device the run never used is costed from the same stored activity, same direction.
  const db::CostRecord l2_sparse = cost_of(evals[0], "loihi2"),
                       l2_dense = cost_of(evals[1], "loihi2");
  EXPECT_EQ(l2_sparse.activity_source, "measured");
  EXPECT_LT(l2_sparse.energy_mj, l2_dense.energy_mj);
  fs::remove_all(dir);
}
