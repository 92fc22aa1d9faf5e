// `hwnas train` and `hwnas export` end to end through the binary, on a database written by a
// tiny real search (MLP space, Fashion-MNIST).  The retraining is shrunk with the hidden
// --train-subset option and --epochs 1.  Checks: the test figure is stored exactly once, in its
// own table, labelled in `hwnas show`; the weights file round-trips (a freshly built model
// loading it reproduces the stored test accuracy and identical logits); every bad input gives
// one "error:" line and exit code 2.
#include <gtest/gtest.h>

#include "db/store.hpp"
#include "deploy_test_util.hpp"
#include "evaluators/datasets.hpp"
#include "evaluators/trainer.hpp"
#include "nn/state_dict.hpp"
#include "search/config.hpp"
#include "spaces/model_builder.hpp"
#include "tests/temp_files.hpp"
#include "tests/test_genomes.hpp"

using namespace hwnas;
using namespace deploy_test;
using nlohmann::json;

namespace {

class TrainCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(temp_dir("train_cli"));
    db_ = new std::string((*dir_ / "t.db").string());
    std::ifstream in(std::string(HWNAS_SOURCE_DIR) + "/tests/search/fixtures/tiny.json");
    json j = json::parse(in);
    j["space"] = std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json";
    j["task"] = {{"dataset", "fashion_mnist"}, {"train_subset", 600}, {"val_size", 300}};
    j["evaluator"]["epochs"] = 1;
    j["budget"] = {{"evaluations", 2}};
    j["devices"] = {"host"};
    j["db"] = *db_;
    std::ofstream(*dir_ / "tiny.json") << j.dump(2);
    const auto r = run_command(kBinary + " search " + (*dir_ / "tiny.json").string(), *dir_);
    ASSERT_EQ(r.code, 0) << r.out << r.err;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete db_;
  }
  static CommandResult hwnas(const std::string& args) {
    return run_command(kBinary + " " + args, *dir_);
  }
  // One line on stderr, "error: ..." containing `what`, exit code 2, nothing on stdout.
  static void expect_usage_error(const CommandResult& r, const std::string& what) {
    EXPECT_EQ(r.code, 2) << r.out << r.err;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  }
  static fs::path* dir_;
  static std::string* db_;
};
fs::path* TrainCli::dir_ = nullptr;
std::string* TrainCli::db_ = nullptr;

TEST_F(TrainCli, RetrainsScoresTheTestSplitOnceAndSavesWeights) {
  const fs::path weights = *dir_ / "w.bin";
  std::size_t evaluations_before = 0;
  {
    db::Store s(*db_, true);
    evaluations_before = s.evaluations(1).size();
  }
  const auto r = hwnas("train --db " + *db_ + " --arch 1 --epochs 1 --train-subset 300 --out " +
                       weights.string());
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("epoch 1/1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ETA"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("TEST (held out; not used for selection): test_accuracy"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("host latency"), std::string::npos) << r.out;
  ASSERT_TRUE(fs::exists(weights));
  EXPECT_FALSE(hwnas::test::temp_sibling_exists(weights.string()));

  db::Store s(*db_, true);
  const auto results = s.test_results(1);
  ASSERT_EQ(results.size(), 1u);  // stored exactly once
  const auto& t = results[0];
  EXPECT_EQ(t.run_id, 1);
  EXPECT_EQ(t.epochs, 1);
  EXPECT_EQ(t.weights_path, fs::absolute(weights).lexically_normal().string());
  EXPECT_EQ(t.metrics.at("test_samples").get<int>(), 10000);
  EXPECT_EQ(t.metrics.at("train_samples").get<int>(), 300);
  EXPECT_EQ(t.metrics.at("train_subset").get<int>(), 300);
  EXPECT_GT(t.metrics.at("host_latency_ms").get<double>(), 0.0);
  const double stored_acc = t.metrics.at("test_accuracy").get<double>();
  EXPECT_GT(stored_acc, 0.3);  // 300 images, one epoch: well above chance (0.1)
  // The search's own tables are untouched: no evaluation was added, none carries a test figure.
  const auto evals = s.evaluations(1);
  EXPECT_EQ(evals.size(), evaluations_before);
  for (const auto& e : evals) EXPECT_FALSE(e.metrics.contains("test_accuracy"));

  // The weights round-trip: fresh models (other init seeds) loading the file give identical
  // logits, and reproduce the stored test accuracy exactly.
  const auto arch = s.architecture(1);
  ASSERT_TRUE(arch);
  const spaces::Genome g = spaces::Genome::from_json(arch->genome);
  auto a = spaces::build_model(g, 1001);
  auto b = spaces::build_model(g, 2002);
  nn::load_state(*a, weights.string());
  nn::load_state(*b, weights.string());
  const eval::Dataset test = eval::load_fashion_mnist_test();
  EXPECT_DOUBLE_EQ(eval::evaluate(*a, test, 256).accuracy, stored_acc);
  const eval::Batch batch = eval::gather_batch(test, {0, 1, 2, 3, 4}, 0, 5);
  nn::NoGradGuard no_grad;
  nn::ForwardContext ctx;
  ctx.training = false;
  const nn::Tensor la = a->forward(nn::constant(batch.x), ctx).value();
  const nn::Tensor lb = b->forward(nn::constant(batch.x), ctx).value();
  ASSERT_EQ(la.numel(), lb.numel());
  for (std::int64_t i = 0; i < la.numel(); ++i) EXPECT_EQ(la.data()[i], lb.data()[i]) << i;

  // `hwnas show` prints the figure under its label, in table and json form.
  const auto shown = hwnas("show --db " + *db_ + " 1");
  ASSERT_EQ(shown.code, 0) << shown.err;
  EXPECT_NE(shown.out.find("TEST (held out; not used for selection) (1):"), std::string::npos)
      << shown.out;
  EXPECT_NE(shown.out.find("test_accuracy"), std::string::npos) << shown.out;
  const auto js = hwnas("show --db " + *db_ + " 1 --format json");
  ASSERT_EQ(js.code, 0) << js.err;
  const json j = json::parse(js.out);
  EXPECT_EQ(j["test_results_held_out"]["label"], "TEST (held out; not used for selection)");
  EXPECT_DOUBLE_EQ(
      j["test_results_held_out"]["results"][0]["metrics"]["test_accuracy"].get<double>(),
      stored_acc);
  // An architecture never retrained shows no test section.
  EXPECT_EQ(hwnas("show --db " + *db_ + " 2").out.find("TEST"), std::string::npos);

  // The trained weights export to both formats.
  const auto onnx = hwnas("export --db " + *db_ + " --arch 1 --weights " + weights.string() +
                          " --format onnx --out " + (*dir_ / "m.onnx").string());
  EXPECT_EQ(onnx.code, 0) << onnx.err;
  EXPECT_TRUE(fs::exists(*dir_ / "m.onnx"));
  const auto py = hwnas("export --db " + *db_ + " --arch 1 --weights " + weights.string() +
                        " --format pytorch --out " + (*dir_ / "m.py").string());
  EXPECT_EQ(py.code, 0) << py.err;
  EXPECT_TRUE(fs::exists(*dir_ / "m.py"));
  EXPECT_TRUE(fs::exists(*dir_ / "m.weights.bin"));
}

TEST_F(TrainCli, BadInputIsOneErrorLineAndExitCode2) {
  const std::string missing = (*dir_ / "missing.db").string();
  expect_usage_error(hwnas("train --db " + missing + " --arch 1"), "no such database file");
  EXPECT_FALSE(fs::exists(missing));  // never created
  expect_usage_error(hwnas("train --db " + *db_ + " --arch 999999"),
                     "no architecture with id or hash prefix '999999'");
  expect_usage_error(hwnas("train --db " + *db_ + " --arch zz"), "no architecture with hash");
  expect_usage_error(hwnas("train --db " + *db_ + " --arch 1 --run 42"), "no run 42");
  expect_usage_error(hwnas("train --db " + *db_ + " --arch 1 --epochs -1"), "--epochs");

  // A run scored by the tabular evaluator has no training recipe.
  {
    std::ifstream in(std::string(HWNAS_SOURCE_DIR) + "/examples/search_nb201_tabular.json");
    json j = json::parse(in);
    std::ofstream(*dir_ / "table.csv") << "arch,valid_acc_12,test_acc_200\n";
    j["evaluator"]["csv"] = (*dir_ / "table.csv").string();
    j["space"] = std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/nb201.json";
    const search::SearchConfig c = search::parse_config(j, dir_->string());
    db::Store s(*db_);
    s.create_run("tabular", c.resolved, 0);
  }
  std::int64_t tabular_run = 0;
  {
    db::Store s(*db_, true);
    tabular_run = *s.latest_run_id();
  }
  expect_usage_error(hwnas("train --db " + *db_ + " --arch 1 --run " + std::to_string(tabular_run)),
                     "uses evaluator 'tabular'");

  // export: unknown format, missing or mismatched weights, a block kind ONNX cannot express.
  const std::string w = (*dir_ / "other.bin").string();
  expect_usage_error(
      hwnas("export --db " + *db_ + " --arch 1 --weights " + w + " --format tflite --out x"),
      "--format: 'tflite' is not one of onnx, pytorch");
  expect_usage_error(hwnas("export --db " + *db_ + " --arch 1 --weights " + w +
                           " --format onnx --out " + (*dir_ / "x.onnx").string()),
                     "--weights");
  const spaces::Genome kan = test::tiny_kan();
  nn::save_state(*spaces::build_model(kan, 1), w);  // weights of another architecture
  expect_usage_error(hwnas("export --db " + *db_ + " --arch 1 --weights " + w +
                           " --format onnx --out " + (*dir_ / "x.onnx").string()),
                     "--weights");
  {
    db::Store s(*db_);
    s.upsert_architecture(kan.hash(), json::parse(kan.canonical_json()), "kan");
  }
  expect_usage_error(hwnas("export --db " + *db_ + " --arch " + kan.hash() + " --weights " + w +
                           " --format onnx --out " + (*dir_ / "x.onnx").string()),
                     "'kan' block, which has no faithful ONNX form");
  EXPECT_FALSE(fs::exists(*dir_ / "x.onnx"));
}

// `--genome FILE` exports an architecture that was never stored, with untrained weights (what the
// torch_cpu example device times); the two ways of naming the architecture exclude each other.
TEST_F(TrainCli, ExportsAGenomeFileWithInitialWeights) {
  const spaces::Genome g = test::tiny_cnn(4);
  const std::string gp = (*dir_ / "g.json").string();
  std::ofstream(gp) << g.to_json().dump();
  const auto py = hwnas("export --genome " + gp + " --seed 3 --format pytorch --out " +
                        (*dir_ / "g.py").string());
  ASSERT_EQ(py.code, 0) << py.err;
  EXPECT_NE(py.out.find("untrained initial weights (seed 3)"), std::string::npos) << py.out;
  EXPECT_TRUE(fs::exists(*dir_ / "g.weights.bin"));
  // The weights written are build_model(genome, seed)'s.
  const nn::StateDict expected = nn::state_dict(*spaces::build_model(g, 3));
  const nn::StateDict written = nn::read_state_dict((*dir_ / "g.weights.bin").string());
  ASSERT_EQ(written.size(), expected.size());
  for (const auto& [name, t] : expected) {
    ASSERT_TRUE(written.count(name)) << name;
    const nn::Tensor& u = written.at(name);
    ASSERT_EQ(u.numel(), t.numel()) << name;
    EXPECT_TRUE(std::equal(t.data(), t.data() + t.numel(), u.data())) << name;
  }
  EXPECT_EQ(
      hwnas("export --genome " + gp + " --format onnx --out " + (*dir_ / "g.onnx").string()).code,
      0);
  EXPECT_TRUE(fs::exists(*dir_ / "g.onnx"));

  expect_usage_error(
      hwnas("export --genome " + gp + " --db " + *db_ + " --arch 1 --format onnx --out x.onnx"),
      "not both");
  expect_usage_error(hwnas("export --format onnx --out x.onnx"), "--genome FILE");
  expect_usage_error(hwnas("export --db " + *db_ + " --arch 1 --format onnx --out x.onnx"),
                     "--weights is required with --db/--arch");
  expect_usage_error(
      hwnas("export --genome " + (*dir_ / "none.json").string() + " --format onnx --out x.onnx"),
      "cannot open");
  std::ofstream(*dir_ / "bad.json") << "{\"nodes\": 3}";
  expect_usage_error(
      hwnas("export --genome " + (*dir_ / "bad.json").string() + " --format onnx --out x.onnx"),
      "is not a valid genome");
}

}  // namespace
