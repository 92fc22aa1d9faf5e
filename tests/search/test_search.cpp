// End-to-end search tests: a tiny real search locally (in process and through the binary) and
// under mpirun, plus the config validation cases and their one-line errors.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "db/store.hpp"
#include "search/config.hpp"
#include "search/evaluator_factory.hpp"
#include "search/search_loop.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

const std::string kFixture = std::string(HWNAS_TEST_DIR) + "/fixtures/tiny.json";
const std::string kBinary = std::string(HWNAS_BINARY_DIR) + "/hwnas";
// mpirun with 3 ranks as root; single_copy_mechanism=none because containers often forbid the
// ptrace-based shared-memory copy.
const std::string kMpirun3 =
    "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
    "OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --oversubscribe --allow-run-as-root -n "
    "3 ";

// Why the MPI tests cannot run here, or "" if they can.
std::string mpi_unavailable() {
#ifndef HWNAS_WITH_MPI
  return "built with HWNAS_WITH_MPI=OFF";
#else
  return std::system("command -v mpirun > /dev/null 2>&1") == 0 ? "" : "mpirun not installed";
#endif
}

fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("hwnas_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

json fixture() {
  std::ifstream in(kFixture);
  json j = json::parse(in);
  j["space"] = std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json";
  return j;
}

struct CommandResult {
  int exit_code;
  std::string output;
};

CommandResult run_command(const std::string& cmd) {
  std::string full = cmd + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool dominates(const std::vector<double>& a, const std::vector<double>& b) {
  // objectives here: accuracy (max), latency (min)
  bool ge = a[0] >= b[0] && a[1] <= b[1];
  bool gt = a[0] > b[0] || a[1] < b[1];
  return ge && gt;
}

// The assertions every finished search must satisfy.
void check_run(const std::string& db_path, int expected_evaluations) {
  db::Store store(db_path, /*read_only=*/true);
  EXPECT_EQ(store.schema_version(), db::kSchemaVersion);
  auto run_id = store.latest_run_id();
  ASSERT_TRUE(run_id.has_value());
  auto run = store.run(*run_id);
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->status, "finished");
  auto evals = store.evaluations(*run_id);
  ASSERT_EQ(static_cast<int>(evals.size()), expected_evaluations);
  for (const auto& e : evals) {
    ASSERT_EQ(e.status, "ok") << e.error;
    // Really trained: the loss went down from the first logging window to the last.
    EXPECT_LT(e.metrics["train_loss_last"].get<double>(),
              e.metrics["train_loss_first"].get<double>());
    EXPECT_GT(e.metrics["val_accuracy"].get<double>(), 0.2);  // 10 classes: chance is 0.1
    EXPECT_GT(e.metrics["host_latency_ms"].get<double>(), 0.0);
    EXPECT_EQ(e.costs.size(), 2u);
  }
  for (const std::string device : {"h100_sxm", "host"}) {
    auto front = store.pareto(*run_id, device);
    ASSERT_FALSE(front.empty()) << device;
    // Every front member is non-dominated by every feasible evaluation of the run.
    for (const auto& m : front) {
      std::vector<double> pm = {m.metrics["val_accuracy"].get<double>(), m.cost.latency_ms};
      for (const auto& e : evals)
        for (const auto& c : e.costs)
          if (c.device == device && c.feasible) {
            std::vector<double> pe = {e.metrics["val_accuracy"].get<double>(), c.latency_ms};
            EXPECT_FALSE(dominates(pe, pm))
                << device << ": front member " << m.evaluation_id << " is dominated";
          }
    }
  }
}

}  // namespace

TEST(SearchEndToEnd, LocalSearchTrainsStoresAndBuildsFronts) {
  fs::path dir = temp_dir("local");
  json j = fixture();
  j["db"] = (dir / "local.db").string();
  search::SearchConfig c = search::parse_config(j, "");
  db::Store store(c.db_path);
  auto executor = search::make_local_executor(search::make_evaluator_factory(c), 2, 2);
  std::ostringstream progress;
  auto summary = search::run_search(c, *executor, store, progress);
  EXPECT_EQ(summary.evaluated, 6);
  EXPECT_EQ(summary.failed, 0);
  EXPECT_NE(progress.str().find("[6/6]"), std::string::npos) << progress.str();
  EXPECT_NE(progress.str().find("ETA"), std::string::npos);
  check_run(c.db_path, 6);
  fs::remove_all(dir);
}

TEST(SearchEndToEnd, SameSeedGivesSameSearch) {
  fs::path dir = temp_dir("determinism");
  std::vector<std::vector<std::string>> hashes;
  for (int rep = 0; rep < 2; ++rep) {
    json j = fixture();
    j["db"] = (dir / ("d" + std::to_string(rep) + ".db")).string();
    j["evaluator"]["host_latency_reps"] = 0;  // timings are not deterministic; the rest is
    j["devices"] = {"h100_sxm"};
    // Enough proposals past the deterministic lag (2 x 2 workers) that evolution mutates.
    j["budget"]["evaluations"] = 10;
    j["strategy"] = {{"type", "regularized_evolution"}, {"population", 2}, {"sample_size", 2}};
    search::SearchConfig c = search::parse_config(j, "");
    db::Store store(c.db_path);
    auto executor = search::make_local_executor(search::make_evaluator_factory(c), 2, 2);
    std::ostringstream progress;
    auto s = search::run_search(c, *executor, store, progress);
    std::vector<std::string> h;
    for (const auto& e : store.evaluations(s.run_id)) {
      auto a = store.architecture(e.arch_id);
      h.push_back(a->hash + "@" + std::to_string(e.metrics["val_accuracy"].get<double>()));
    }
    std::sort(h.begin(), h.end());
    hashes.push_back(h);
  }
  EXPECT_EQ(hashes[0], hashes[1]);
  fs::remove_all(dir);
}

TEST(SearchEndToEnd, BinaryRunsAndQueriesWork) {
  fs::path dir = temp_dir("cli");
  std::string db = (dir / "cli.db").string();
  auto r = run_command(kBinary + " search " + kFixture + " --db " + db + " --budget 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Pareto front on h100_sxm"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Pareto front on host"), std::string::npos) << r.output;
  check_run(db, 4);

  auto runs = run_command(kBinary + " runs --db " + db);
  EXPECT_EQ(runs.exit_code, 0) << runs.output;
  EXPECT_NE(runs.output.find("tiny"), std::string::npos) << runs.output;
  auto csv = run_command(kBinary + " pareto --db " + db + " --device h100_sxm --format csv");
  EXPECT_EQ(csv.exit_code, 0) << csv.output;
  EXPECT_NE(csv.output.find(","), std::string::npos);
  auto js = run_command(kBinary + " pareto --db " + db + " --device host --format json");
  EXPECT_EQ(js.exit_code, 0) << js.output;
  EXPECT_TRUE(json::accept(js.output)) << js.output;
  auto show = run_command(kBinary + " show --db " + db + " 1");
  EXPECT_EQ(show.exit_code, 0) << show.output;
  auto bad = run_command(kBinary + " pareto --db " + db + " --device no_such_device");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;

  // A new device's front without retraining: the stored workloads are costed again.
  db::Store before(db, true);
  const auto evals_before = before.evaluations(*before.latest_run_id());
  auto rs = run_command(kBinary + " rescore --db " + db + " --device stm32h743");
  EXPECT_EQ(rs.exit_code, 0) << rs.output;
  EXPECT_NE(rs.output.find("without retraining"), std::string::npos) << rs.output;
  db::Store after(db, true);
  const auto evals_after = after.evaluations(*after.latest_run_id());
  ASSERT_EQ(evals_after.size(), evals_before.size());
  for (std::size_t i = 0; i < evals_after.size(); ++i) {
    EXPECT_EQ(evals_after[i].metrics, evals_before[i].metrics) << "rescore must not retrain";
    EXPECT_EQ(evals_after[i].costs.size(), evals_before[i].costs.size() + 1);
  }
  auto p2 = run_command(kBinary + " pareto --db " + db + " --device stm32h743 --format csv");
  EXPECT_EQ(p2.exit_code, 0) << p2.output;
  fs::remove_all(dir);
}

TEST(SearchEndToEnd, MpiRunUnderMpirun) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  fs::path dir = temp_dir("mpi");
  std::string db = (dir / "mpi.db").string();
  auto r = run_command(kMpirun3 + kBinary + " search " + kFixture + " --db " + db + " --budget 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2 worker ranks"), std::string::npos) << r.output;
  check_run(db, 4);
  // Workers (ranks 1 and 2) did the training; rank 0 only coordinated and wrote.
  db::Store store(db, true);
  std::set<int> ranks;
  for (const auto& e : store.evaluations(*store.latest_run_id())) ranks.insert(e.worker_rank);
  EXPECT_FALSE(ranks.count(0));
  EXPECT_FALSE(ranks.empty());
  fs::remove_all(dir);
}

TEST(SearchEndToEnd, MpiWorkerSetupErrorEndsTheJobWithItsMessage) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  fs::path dir = temp_dir("mpisetup");
  std::string db = (dir / "mpi.db").string();
  // Workers cannot find the dataset: the job must end (not hang) with the loader's message.
  auto r = run_command("HWNAS_FMNIST_DIR=/nonexistent timeout 120 " + kMpirun3 + kBinary +
                       " search " + kFixture + " --db " + db + " --budget 4");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, 124) << "the MPI job hung: " << r.output;
  EXPECT_NE(r.output.find("dataset-fashion-mnist"), std::string::npos) << r.output;
  db::Store store(db, true);
  EXPECT_EQ(store.run(*store.latest_run_id())->status, "failed");
  fs::remove_all(dir);
}

// ---- bad input: one clear line naming the field, nonzero exit, nothing stored ----

struct BadConfigCase {
  std::string name;
  std::function<void(json&)> edit;
  std::string expected;  // substring of the error
};

void PrintTo(const BadConfigCase& c, std::ostream* os) { *os << c.name; }

class BadConfig : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(BadConfig, NamesTheFieldAndWhatIsAllowed) {
  json j = fixture();
  GetParam().edit(j);
  try {
    (void)search::parse_config(j, "");
    FAIL() << "accepted a bad config";
  } catch (const search::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(GetParam().expected), std::string::npos) << e.what();
    std::cout << "    " << e.what() << "\n";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadConfig,
    ::testing::Values(
        BadConfigCase{"UnknownDevice",
                      [](json& j) {
                        j["devices"] = {"h100_sxm", "warp_drive"};
                      },
                      "config.devices[1]"},
        BadConfigCase{
            "UnknownBlock",
            [](json& j) {
              j["space"] = json{{"type", "macro"},
                                {"input", {{"kind", "image"}, {"shape", {1, 28, 28}}}},
                                {"outputs", 10},
                                {"stages", {{{"blocks", {"teleporter"}}}}}};
            },
            "config.space: space.stages[0].blocks[0]: unknown block kind 'teleporter' (known: "},
        BadConfigCase{"WrongType", [](json& j) { j["budget"]["evaluations"] = "many"; },
                      "config.budget.evaluations: must be an integer"},
        BadConfigCase{"NegativeBudget", [](json& j) { j["budget"]["evaluations"] = -3; },
                      "config.budget.evaluations: -3 out of range"},
        BadConfigCase{"NegativeWidth",
                      [](json& j) {
                        j["space"] = json{
                            {"type", "macro"},
                            {"input", {{"kind", "image"}, {"shape", {1, 28, 28}}}},
                            {"outputs", 10},
                            {"stages", {{{"blocks", {"dense"}}, {"params", {{"units", {-8}}}}}}}};
                      },
                      "config.space: space.stages[0].params.units"},
        BadConfigCase{"MissingSpaceFile", [](json& j) { j["space"] = "/nonexistent/space.json"; },
                      "config.space: cannot open '/nonexistent/space.json'"},
        BadConfigCase{"EmptySpace",
                      [](json& j) {
                        j["space"] = json{{"type", "macro"},
                                          {"input", {{"kind", "image"}, {"shape", {1, 28, 28}}}},
                                          {"outputs", 10},
                                          {"stages", json::array()}};
                      },
                      "config.space: space.stages: must be a non-empty array"},
        BadConfigCase{"UnknownField", [](json& j) { j["budjet"] = 3; },
                      "config.budjet: unknown field"},
        BadConfigCase{"UnknownStrategy",
                      [](json& j) {
                        j["strategy"] = {{"type", "telepathy"}};
                      },
                      "config.strategy.type: unknown strategy 'telepathy'"},
        BadConfigCase{
            "StrategyTypo",
            [](json& j) {
              j["strategy"] = {{"type", "regularized_evolution"}, {"populaton", 3}};
            },
            "config.strategy.populaton: unknown parameter (known: population, sample_size)"},
        BadConfigCase{"BadObjective",
                      [](json& j) {
                        j["objectives"] = {"val_accuracy:max", "latency_ms"};
                      },
                      "config.objectives[1]"},
        BadConfigCase{
            "UnknownObjectiveMetric",
            [](json& j) {
              j["objectives"] = {"val_acc:max", "latency_ms:min"};
            },
            "config.objectives[0]: unknown metric 'val_acc' for evaluator 'train'; one of: "},
        BadConfigCase{
            "HostWithoutMeasurement", [](json& j) { j["evaluator"]["host_latency_reps"] = 0; },
            "config.devices[1]: device 'host' costs the latency measured on this machine"},
        BadConfigCase{"BadChoice", [](json& j) { j["evaluator"]["optimizer"] = "adam2"; },
                      "config.evaluator.optimizer: 'adam2' is not one of: adamw, sgd"},
        BadConfigCase{"SubsetTooLarge", [](json& j) { j["task"]["train_subset"] = 59900; },
                      "config.task.train_subset"}),
    [](const auto& info) { return info.param.name; });

TEST(BadConfigCli, OneLineErrorNonzeroExitAndNoHalfWrittenRun) {
  fs::path dir = temp_dir("badcli");
  std::string db = (dir / "bad.db").string();
  json j = fixture();
  j["devices"] = {"h100_sxm", "warp_drive"};
  std::string cfg = (dir / "bad.json").string();
  std::ofstream(cfg) << j.dump();
  auto r = run_command(kBinary + " search " + cfg + " --db " + db);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output.rfind("error: config.devices[1]", 0), 0u) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_FALSE(fs::exists(db)) << "a rejected config must not create or touch the database";

  auto missing = run_command(kBinary + " search " + (dir / "nope.json").string());
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("does not exist"), std::string::npos) << missing.output;
  fs::remove_all(dir);
}

// ---- crash safety: a killed search keeps every evaluation it stored; Ctrl-C finishes cleanly ----

namespace {

// Starts the search as a child process (fork + exec, so this test reaps it with waitpid: an
// orphan may never be reaped in a container whose PID 1 is not an init).
pid_t start_search(const std::string& db, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(kBinary.c_str(), kBinary.c_str(), "search", kFixture.c_str(), "--db", db.c_str(),
            "--budget", "400", "--workers", "1", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Waits up to `seconds` for the child to exit; returns its exit status or -1.
int wait_exit(pid_t pid, double seconds) {
  for (int i = 0; i < seconds * 20; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    ::usleep(50000);
  }
  return -1;
}

// Waits until the running search has stored at least n evaluations (read through WAL while
// the search writes).
std::size_t wait_for_evaluations(const std::string& db, std::size_t n) {
  for (int i = 0; i < 600; ++i) {
    ::usleep(50000);
    if (!fs::exists(db)) continue;
    try {
      db::Store reader(db, true);
      auto run = reader.latest_run_id();
      if (!run) continue;
      auto count = reader.evaluations(*run).size();
      if (count >= n) return count;
    } catch (const std::exception&) {
      // schema not created yet
    }
  }
  return 0;
}

}  // namespace

TEST(SearchCrashSafety, KilledSearchKeepsStoredEvaluations) {
  fs::path dir = temp_dir("kill");
  std::string db = (dir / "kill.db").string();
  pid_t pid = start_search(db, (dir / "log").string());
  ASSERT_GT(pid, 0);
  std::size_t seen = wait_for_evaluations(db, 3);
  ASSERT_GE(seen, 3u) << "the search stored nothing readable while running";
  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid, 10), 128 + SIGKILL);
  db::Store store(db, true);
  auto evals = store.evaluations(*store.latest_run_id());
  EXPECT_GE(evals.size(), seen);
  for (const auto& e : evals) {
    EXPECT_EQ(e.status, "ok");
    EXPECT_EQ(e.costs.size(), 2u) << "an evaluation is stored together with all its costs";
  }
  EXPECT_EQ(store.run(*store.latest_run_id())->status, "running");  // killed: never finished
  fs::remove_all(dir);
}

TEST(SearchCrashSafety, TerminateStopsProposingAndStoresFronts) {
  fs::path dir = temp_dir("sigint");
  std::string db = (dir / "int.db").string();
  pid_t pid = start_search(db, (dir / "log").string());
  ASSERT_GT(pid, 0);
  ASSERT_GE(wait_for_evaluations(db, 2), 2u);
  ::kill(pid, SIGTERM);  // as mpirun, timeout or a scheduler would stop it
  // 128 + SIGTERM: interrupted, not finished (the same code as under mpirun).
  EXPECT_EQ(wait_exit(pid, 20), 128 + SIGTERM) << "the search did not stop cleanly after SIGTERM";
  db::Store store(db, true);
  auto run = store.run(*store.latest_run_id());
  EXPECT_EQ(run->status, "interrupted");
  EXPECT_LT(store.evaluations(run->id).size(), 400u);
  EXPECT_FALSE(store.pareto(run->id, "host").empty());
  fs::remove_all(dir);
}
