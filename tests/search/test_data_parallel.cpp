// Data-parallel supernet training under MPI (search/mpi_data_parallel.hpp, oneshot/data_shard.hpp):
//  - the rank tests (DataParallelRank.*) run only inside `mpirun -n 3` (started by the first
//    test below): every rank trains its shard of each batch with the MPI all-reduce, and also,
//    alone, the same supernet on the whole batch; the weights after k steps must agree up to
//    summation order, and be bitwise the same on every rank;
//  - an end-to-end `hwnas search` with darts and with spos under `mpirun -n 3`: the phase runs on
//    all ranks and the derived architectures are trained and stored.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "db/store.hpp"
#include "oneshot/darts_search.hpp"
#include "oneshot/spos_supernet.hpp"
#include "tests/search/cli_util.hpp"

#ifdef HWNAS_WITH_MPI
#include <mpi.h>

#include "search/mpi_data_parallel.hpp"
#endif

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

// Set in the environment of the ranks the launcher test starts.
constexpr const char* kRankEnv = "HWNAS_TEST_DATA_PARALLEL_RANK";

std::string mpi_unavailable() {
#ifndef HWNAS_WITH_MPI
  return "built with HWNAS_WITH_MPI=OFF";
#else
  return std::system("command -v mpirun > /dev/null 2>&1") == 0 ? "" : "mpirun not installed";
#endif
}

const std::string kMpirun3 =
    "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
    "OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --oversubscribe --allow-run-as-root -n "
    "3 ";

test::CommandResult run_shell(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

#ifdef HWNAS_WITH_MPI
// MPI for the rank tests: initialised once before them, finalised after all (a gtest environment,
// so MPI_Finalize never runs from a static destructor).
class MpiEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!std::getenv(kRankEnv)) return;
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  }
  void TearDown() override {
    if (std::getenv(kRankEnv)) MPI_Finalize();
  }
};
[[maybe_unused]] auto* const kMpiEnvironment =
    ::testing::AddGlobalTestEnvironment(new MpiEnvironment);

// Whether every rank holds bitwise the same values.
bool same_on_every_rank(const std::vector<float>& v) {
  std::vector<float> lo(v.size()), hi(v.size());
  MPI_Allreduce(v.data(), lo.data(), static_cast<int>(v.size()), MPI_FLOAT, MPI_MIN,
                MPI_COMM_WORLD);
  MPI_Allreduce(v.data(), hi.data(), static_cast<int>(v.size()), MPI_FLOAT, MPI_MAX,
                MPI_COMM_WORLD);
  return lo == hi;
}
#endif

// max |a - b| relative to max(1, max |b|).
double relative_gap(const std::vector<float>& a, const std::vector<float>& b) {
  double gap = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    gap = std::max(gap, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(b[i])));
  }
  return gap / scale;
}

eval::Dataset random_images(int n, int c, int side, int classes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  eval::Dataset d;
  d.num_classes = classes;
  d.x = nn::Tensor(nn::Shape{n, c, side, side});
  for (std::int64_t i = 0; i < d.x.numel(); ++i) d.x.data()[i] = normal(rng);
  for (int i = 0; i < n; ++i) d.y.push_back(static_cast<int>(rng() % classes));
  return d;
}

eval::Batch rows(const eval::Dataset& d, int begin, int end) {
  std::vector<int> idx(static_cast<std::size_t>(d.size()));
  for (int i = 0; i < d.size(); ++i) idx[static_cast<std::size_t>(i)] = i;
  return eval::gather_batch(d, idx, static_cast<std::size_t>(begin), static_cast<std::size_t>(end));
}

// Rows [begin, end) three times over.
eval::Batch tripled(const eval::Dataset& d, int begin, int end) {
  std::vector<int> idx;
  for (int copy = 0; copy < 3; ++copy)
    for (int i = begin; i < end; ++i) idx.push_back(i);
  return eval::gather_batch(d, idx, 0, idx.size());
}

std::vector<float> flatten(const std::vector<nn::Var>& ps) {
  std::vector<float> v;
  for (const auto& p : ps)
    v.insert(v.end(), p.value().data(), p.value().data() + p.value().numel());
  return v;
}

std::vector<float> banks(const oneshot::SposSupernet& net) {
  std::vector<float> v;
  for (const auto& n : net.bank_names()) {
    const nn::Tensor& t = net.bank(n);
    v.insert(v.end(), t.data(), t.data() + t.numel());
  }
  return v;
}

// A single-path MLP space without batch norm: data parallelism must then reproduce the whole
// batch's step exactly, up to summation order.
std::unique_ptr<spaces::Space> dense_space() {
  return spaces::make_space(
      {{"type", "macro"},
       {"input", {{"kind", "image"}, {"shape", {1, 6, 6}}}},
       {"outputs", 5},
       {"stages",
        {{{"blocks", {"dense"}},
          {"depth", {1, 2}},
          {"params", {{"units", {8, 16}}, {"activation", {"relu", "tanh"}}}}},
         {{"blocks", {"dense"}}, {"depth", {0, 1}}, {"params", {{"units", {8, 12}}}}}}}});
}

// A single-path CNN space with batch norm (per-shard statistics: ranks must still agree).
std::unique_ptr<spaces::Space> conv_space() {
  return spaces::make_space(
      {{"type", "macro"},
       {"input", {{"kind", "image"}, {"shape", {1, 6, 6}}}},
       {"outputs", 5},
       {"stages",
        {{{"blocks", {"conv"}},
          {"depth", {1, 2}},
          {"params", {{"channels", {4, 8}}, {"kernel", {3}}, {"stride", 1}}}}}}});
}

}  // namespace

// ---- the launcher: runs the rank tests below under mpirun -n 3 ----

TEST(DataParallel, StepEqualsOneProcessOnTheWholeBatchUnderMpirun3) {
  if (std::getenv(kRankEnv)) GTEST_SKIP() << "inside the ranks";
  if (const auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const std::string self = std::string(HWNAS_BINARY_DIR) + "/tests/test_search";
  const auto r = run_shell(kMpirun3 + "-x " + kRankEnv + "=1 " + self +
                           " --gtest_filter='DataParallelRank.*' --gtest_brief=0 --gtest_color=no");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count(r.output, "[  FAILED  ]"), 0u) << r.output;
  // Three rank tests on each of three ranks.
  EXPECT_EQ(count(r.output, "[       OK ] DataParallelRank."), 9u) << r.output;
}

// ---- the rank tests (only under mpirun, started above) ----

#ifdef HWNAS_WITH_MPI
class DataParallelRank : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::getenv(kRankEnv)) GTEST_SKIP() << "runs only under mpirun (DataParallel.*)";
    shard = search::make_mpi_shard();
    ASSERT_EQ(shard.ranks, 3);
  }
  oneshot::DataShard shard;
};

TEST_F(DataParallelRank, SposStepsEqualTheWholeBatchsSteps) {
  const auto space = dense_space();
  // 10 rows over 3 ranks: shards of 3, 3 and 4 (the loss scaling must weigh them by size).
  const eval::Dataset data = random_images(40, 1, 6, 5, 11);
  oneshot::SposSupernet alone(*space, 7), parallel(*space, 7);
  oneshot::SgdSettings sgd;
  sgd.lr = 0.1f;
  sgd.clip_grad_norm = 1.0f;  // binding: the clipped norm must be the whole batch's
  std::mt19937_64 paths(3);
  for (int k = 0; k < 4; ++k) {
    const spaces::Genome path = alone.sample(paths);
    const eval::Batch b = rows(data, 10 * k, 10 * k + 10);
    const double la = alone.train_step(path, b, eval::HeadKind::Classes, sgd);
    const double lp = parallel.train_step(path, b, eval::HeadKind::Classes, sgd, shard);
    EXPECT_NEAR(la, lp, 1e-5 * std::max(1.0, std::fabs(la))) << "step " << k;
  }
  const auto a = banks(alone), p = banks(parallel);
  ASSERT_EQ(a.size(), p.size());
  EXPECT_LT(relative_gap(p, a), 1e-5);
  EXPECT_TRUE(same_on_every_rank(p));
}

TEST_F(DataParallelRank, SposRanksStayIdenticalWithBatchNorm) {
  const auto space = conv_space();
  const eval::Dataset data = random_images(32, 1, 6, 5, 12);
  oneshot::SposSupernet net(*space, 8);
  oneshot::SgdSettings sgd;
  sgd.lr = 0.05f;
  std::mt19937_64 paths(4);
  for (int k = 0; k < 3; ++k)
    (void)net.train_step(net.sample(paths), rows(data, 8 * k, 8 * k + 8), eval::HeadKind::Classes,
                         sgd, shard);
  // Weights and the share-weighted running statistics alike.
  EXPECT_TRUE(same_on_every_rank(banks(net)));
}

TEST_F(DataParallelRank, DartsBilevelStepsEqualTheWholeBatchsSteps) {
  // Gumbel draws and a hardware term: the draws must stay in step and the term must not count
  // once per rank.  The cell spaces' stem convolution has batch norm, which normalises each shard
  // by its own statistics; each batch is therefore three copies of 3 rows, so every shard's
  // statistics are the whole batch's and the whole-batch loss is the same function of the
  // weights: the comparison is exact up to summation order.  (Uneven shards: the spos test.)
  const auto space = spaces::make_space({{"type", "cell"},
                                         {"input", {{"kind", "image"}, {"shape", {2, 6, 6}}}},
                                         {"outputs", 5},
                                         {"nodes", 2},
                                         {"inputs_per_node", 2},
                                         {"ops", {"none", "skip_connect", "avg_pool_3x3"}},
                                         {"stages", {{{"cells", 1}, {"channels", 4}}}}});
  const oneshot::CellLayout layout = oneshot::cell_layout(*space);
  const eval::Dataset train = random_images(40, 2, 6, 5, 13), val = random_images(40, 2, 6, 5, 14);
  oneshot::DartsOptions o;
  o.w_lr = 0.05f;
  o.alpha_lr = 0.05f;
  oneshot::DartsSupernet alone(layout, 9), parallel(layout, 9);
  auto oa = oneshot::make_bilevel_optimizers(alone, o);
  auto op = oneshot::make_bilevel_optimizers(parallel, o);
  std::vector<std::vector<double>> cost(layout.edges.size(), {0.0, 0.1, 0.7});
  const oneshot::HardwareTerm hw(cost, 0.5, layout.none_op);
  oneshot::StepSettings s;
  s.gumbel = true;
  s.temperature = 2.0f;
  s.clip_grad_norm = 1.0f;
  oneshot::StepSettings sp = s;
  sp.shard = &shard;
  std::mt19937_64 ra(5), rp(5);
  for (int k = 0; k < 4; ++k) {
    const eval::Batch tb = tripled(train, 3 * k, 3 * k + 3), vb = tripled(val, 3 * k, 3 * k + 3);
    const auto a = oneshot::bilevel_step(alone, oa, tb, vb, hw, s, ra);
    const auto p = oneshot::bilevel_step(parallel, op, tb, vb, hw, sp, rp);
    EXPECT_NEAR(a.train_loss, p.train_loss, 1e-5 * std::max(1.0, std::fabs(a.train_loss)));
    EXPECT_NEAR(a.val_loss, p.val_loss, 1e-5 * std::max(1.0, std::fabs(a.val_loss)));
  }
  EXPECT_LT(relative_gap(flatten(parallel.arch_parameters()), flatten(alone.arch_parameters())),
            1e-5);
  EXPECT_LT(relative_gap(flatten(parallel.weight_parameters()), flatten(alone.weight_parameters())),
            1e-5);
  EXPECT_TRUE(same_on_every_rank(flatten(parallel.arch_parameters())));
  EXPECT_TRUE(same_on_every_rank(flatten(parallel.weight_parameters())));
}
#endif

// ---- end to end: hwnas search under mpirun -n 3 with a one-shot strategy ----

namespace {

json darts_config(const fs::path& dir) {
  return {{"name", "darts_mpi"},
          {"seed", 3},
          {"space",
           {{"type", "cell"},
            {"input", {{"kind", "image"}, {"shape", {1, 28, 28}}}},
            {"outputs", 10},
            {"nodes", 2},
            {"inputs_per_node", 2},
            {"ops", {"none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3"}},
            {"stages", {{{"cells", 1}, {"channels", 8}}}}}},
          {"task", {{"dataset", "fashion_mnist"}, {"train_subset", 400}, {"val_size", 150}}},
          {"evaluator",
           {{"type", "train"},
            {"epochs", 1},
            {"batch_size", 32},
            {"lr", 0.01},
            {"host_latency_reps", 0}}},
          {"strategy",
           {{"type", "darts"},
            {"epochs", 2},
            {"steps_per_epoch", 3},
            {"candidates", 2},
            {"skip_guard", "off"},
            {"hardware_weight", 0.5},
            {"device", "jetson_orin_nano"}}},
          {"budget", {{"evaluations", 2}}},
          {"devices", {"jetson_orin_nano"}},
          {"objectives", {"val_accuracy:max", "latency_ms:min"}},
          {"db", (dir / "darts.db").string()}};
}

json spos_config(const fs::path& dir) {
  const std::string examples = std::string(HWNAS_SOURCE_DIR) + "/examples/";
  std::ifstream in(examples + "search_spos.json");
  json j = json::parse(in);
  j["space"] = examples + j["space"].get<std::string>();
  j["task"]["train_subset"] = 400;
  j["task"]["val_size"] = 150;
  j["evaluator"]["epochs"] = 1;
  j["strategy"]["epochs"] = 1;
  j["strategy"]["steps_per_epoch"] = 4;
  j["strategy"]["population"] = 4;
  j["strategy"]["generations"] = 1;
  j["strategy"]["candidates"] = 2;
  j["strategy"]["eval_samples"] = 100;
  j["budget"]["evaluations"] = 2;
  j["db"] = (dir / "spos.db").string();
  return j;
}

// Runs the config under mpirun -n 3 and checks the phase ran on all ranks and its candidates
// were trained and stored.
void search_under_mpirun(const json& config, const fs::path& dir, const std::string& method) {
  const fs::path cfg = dir / (method + ".json");
  std::ofstream(cfg) << config.dump(1);
  const auto r = run_shell(kMpirun3 + test::kHwnasBinary + " search " + cfg.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(method + ": supernet phase data-parallel on 3 ranks"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("supernet phase:"), std::string::npos) << r.output;  // no rank failed
  db::Store store(config["db"].get<std::string>(), true);
  const auto run = store.latest_run_id();
  ASSERT_TRUE(run.has_value());
  const auto state = store.strategy_state(*run);
  ASSERT_TRUE(state.has_value());
  const json& body = (*state)["strategy"]["state"];
  EXPECT_TRUE(body["phase_done"].get<bool>());
  EXPECT_EQ(body["report"]["ranks"].get<int>(), 3);
  ASSERT_EQ(body["candidates"].size(), 2u);
  const auto evals = store.evaluations(*run);
  ASSERT_EQ(evals.size(), 2u);
  for (const auto& e : evals) {
    EXPECT_EQ(e.status, "ok") << e.error;
    EXPECT_EQ(store.architecture(e.arch_id)->hash,
              spaces::Genome::from_json(body["candidates"][e.proposal_id]).hash());
  }
}

}  // namespace

TEST(DataParallelSearch, DartsAndSposTrainTheirSupernetOnAllRanksUnderMpirun3) {
  if (const auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  if (std::getenv(kRankEnv)) GTEST_SKIP() << "inside the ranks";
  const fs::path dir = fs::temp_directory_path() / ("hwnas_dp_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  search_under_mpirun(darts_config(dir), dir, "darts");
  search_under_mpirun(spos_config(dir), dir, "spos");
  fs::remove_all(dir);
}

TEST(DataParallelSearch, ABatchSmallerThanTheRanksIsOneClearError) {
  if (const auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  if (std::getenv(kRankEnv)) GTEST_SKIP() << "inside the ranks";
  const fs::path dir = fs::temp_directory_path() / ("hwnas_dp_bad_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  json j = spos_config(dir);
  j["strategy"]["batch_size"] = 2;
  const fs::path cfg = dir / "bad.json";
  std::ofstream(cfg) << j.dump(1);
  const auto r = run_shell(kMpirun3 + test::kHwnasBinary + " search " + cfg.string());
  EXPECT_NE(r.exit_code, 0) << r.output;
  const std::string msg =
      "spos: a supernet batch of 2 rows cannot be split over 3 ranks (raise strategy.batch_size "
      "or use fewer ranks)";
  EXPECT_EQ(count(r.output, msg), 1u) << r.output;
  fs::remove_all(dir);
}
