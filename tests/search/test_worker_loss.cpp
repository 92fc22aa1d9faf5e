// Workers that stop answering or die (worker_timeout_seconds, search/executor.hpp): a worker
// given up has its candidate re-run elsewhere with the same id and seed, each proposal is
// stored once and the event is recorded; a dead MPI worker rank leaves an interrupted run that
// --resume finishes; runner threads that cannot be created are a clean error.  Every search
// runs the synthetic evaluator (a seeded sleep), so each test takes seconds.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "cli_util.hpp"
#include "db/store.hpp"
#include "evaluators/synthetic.hpp"
#include "search/config.hpp"
#include "search/executor.hpp"
#include "spaces/space.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("hwnas_workers_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

json synthetic_config(const fs::path& dir, int evaluations, double seconds, double timeout) {
  json j = {
      {"name", "workers"},
      {"seed", 5},
      {"space",
       {{"type", "nb201"},
        {"input", {{"kind", "image"}, {"shape", {3, 32, 32}}}},
        {"outputs", 10}}},
      {"task", {{"name", "synthetic"}}},
      {"evaluator", {{"type", "synthetic"}, {"seconds", seconds}, {"spread", 0.5}}},
      {"strategy", {{"type", "regularized_evolution"}, {"population", 4}, {"sample_size", 2}}},
      {"budget", {{"evaluations", evaluations}}},
      {"devices", {"jetson_orin_nano"}},
      {"objectives", {"val_accuracy:max", "latency_ms:min"}},
      {"workers", 2},
      {"db", (dir / "w.db").string()}};
  if (timeout > 0) j["worker_timeout_seconds"] = timeout;
  return j;
}

std::string write_config(const fs::path& dir, const json& j) {
  const std::string path = (dir / "config.json").string();
  std::ofstream(path) << j.dump(2);
  return path;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Proposal ids stored in the file's only run (each must appear once), its status and the
// worker events kept in its search state.
struct StoredRun {
  std::multiset<std::int64_t> proposals;
  std::string status;
  json worker_events = json::array();
};

StoredRun stored_run(const std::string& db) {
  StoredRun out;
  db::Store store(db, true);
  auto runs = store.runs();
  EXPECT_EQ(runs.size(), 1u);
  if (runs.empty()) return out;
  out.status = runs.back().status;
  for (const auto& e : store.evaluations(runs.back().id, false))
    out.proposals.insert(e.proposal_id);
  if (auto state = store.strategy_state(runs.back().id); state && state->contains("worker_events"))
    out.worker_events = state->at("worker_events");
  return out;
}

void expect_each_proposal_once(const StoredRun& r, int budget) {
  EXPECT_EQ(r.proposals.size(), static_cast<std::size_t>(budget));
  for (int id = 0; id < budget; ++id) EXPECT_EQ(r.proposals.count(id), 1u) << "proposal " << id;
}

// `bash -c CMD` with stderr merged: exit code (-1 when killed) and output.
test::CommandResult shell(const std::string& cmd) {
  const std::string path =
      (fs::temp_directory_path() / ("hwnas_workers_cmd_" + std::to_string(::getpid()) + ".sh"))
          .string();
  std::ofstream(path) << cmd << "\n";
  FILE* p = ::popen(("bash '" + path + "' 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  fs::remove(path);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::size_t stored_count(const std::string& db) {
  if (!fs::exists(db)) return 0;
  try {
    db::Store reader(db, true);
    auto run = reader.latest_run_id();
    return run ? static_cast<std::size_t>(reader.run(*run)->evaluations) : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

// ---- config ----

TEST(WorkerTimeout, BadValuesGetOneClearError) {
  const fs::path dir = temp_dir("config");
  for (const json& bad : {json(-1), json("10"), json(nullptr), json(1e9)}) {
    json j = synthetic_config(dir, 4, 0.01, 0);
    j["worker_timeout_seconds"] = bad;
    try {
      search::parse_config(j, "");
      ADD_FAILURE() << bad.dump() << " accepted";
    } catch (const search::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("config.worker_timeout_seconds"), std::string::npos)
          << e.what();
    }
  }
  // 0 and absent: no limit; a positive number is kept.
  json j = synthetic_config(dir, 4, 0.01, 0);
  EXPECT_EQ(search::parse_config(j, "").worker_timeout_seconds, 0);
  j["worker_timeout_seconds"] = 12.5;
  EXPECT_EQ(search::parse_config(j, "").worker_timeout_seconds, 12.5);
  // At or below the training budget it would give up healthy workers.
  json train = j;
  train["task"] = {{"name", "fashion_mnist"}};
  train["evaluator"] = {{"type", "train"}, {"max_seconds", 30}};
  try {
    search::parse_config(train, "");
    ADD_FAILURE() << "a timeout below evaluator.max_seconds accepted";
  } catch (const search::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("must exceed evaluator.max_seconds"), std::string::npos)
        << e.what();
  }
  // Through the CLI: one line, exit 2.
  j["worker_timeout_seconds"] = -3;
  const auto r = test::run_hwnas("config check '" + write_config(dir, j) + "'");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("error: config.worker_timeout_seconds: -3 out of range"),
            std::string::npos)
      << r.output;
  fs::remove_all(dir);
}

// ---- local executor ----

// Shared by the evaluators of one executor: seed 3 hangs the first evaluation that gets it
// (a hung node), seed 5 every one (a candidate that hangs any evaluator); both until released.
struct Gate {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  bool seed3_hung = false;
};

class HangingEvaluator final : public eval::Evaluator {
 public:
  explicit HangingEvaluator(std::shared_ptr<Gate> gate) : gate_(std::move(gate)) {}
  eval::EvalResult evaluate(const spaces::Genome&, const eval::Fidelity&,
                            std::uint64_t seed) override {
    {
      std::unique_lock lock(gate_->m);
      const bool hang = seed == 5 || (seed == 3 && !gate_->seed3_hung);
      if (seed == 3) gate_->seed3_hung = true;
      if (hang) gate_->cv.wait(lock, [&] { return gate_->open; });
    }
    eval::EvalResult r;
    r.metrics["val_accuracy"] = static_cast<double>(seed);
    return r;
  }
  std::string name() const override { return "hanging"; }

 private:
  std::shared_ptr<Gate> gate_;
};

TEST(WorkerTimeout, LocalRunnerGivenUpItsCandidateRunsOnANewOneOnce) {
  auto gate = std::make_shared<Gate>();
  auto factory = [gate] { return std::make_unique<HangingEvaluator>(gate); };
  auto executor = search::make_local_executor(factory, 2, 2);
  executor->set_worker_timeout(0.3);
  std::vector<std::string> events;
  executor->set_event_sink([&](const std::string& e) { events.push_back(e); });
  const auto space = spaces::make_space(json{
      {"type", "nb201"}, {"input", {{"kind", "image"}, {"shape", {3, 32, 32}}}}, {"outputs", 10}});
  std::mt19937_64 rng(1);
  std::map<std::uint64_t, search::JobResult> results;
  int in_flight = 0;
  std::uint64_t next = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (next < 8 || in_flight > 0) {
    while (in_flight < executor->slots() && next < 8) {
      search::Job job;
      job.id = next;
      job.seed = next == 3 ? 3 : (next == 5 ? 5 : 100 + next);
      job.genome = space->sample(rng);
      executor->submit(job);
      ++in_flight;
      ++next;
    }
    search::JobResult r = executor->wait_next();
    --in_flight;
    EXPECT_TRUE(results.emplace(r.id, r).second) << "job " << r.id << " answered twice";
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 5);
  ASSERT_EQ(results.size(), 8u);
  // Job 3 ran again on a new runner, with its own seed; job 5 outlasted two runners and failed.
  EXPECT_TRUE(results[3].result.ok()) << results[3].result.error;
  EXPECT_EQ(results[3].result.metrics.at("val_accuracy"), 3.0);
  EXPECT_FALSE(results[5].result.ok());
  EXPECT_NE(results[5].result.error.find("no answer within 0.3 s"), std::string::npos)
      << results[5].result.error;
  for (std::uint64_t id : {0u, 1u, 2u, 4u, 6u, 7u}) EXPECT_TRUE(results[id].result.ok()) << id;
  EXPECT_EQ(executor->lost_workers(), 3);
  ASSERT_EQ(events.size(), 3u);
  int resubmitted = 0, failed = 0;
  for (const auto& e : events) {
    resubmitted += e.find("re-submitted to a new runner") != std::string::npos;
    failed += e.find("candidate failed (no answer on two workers)") != std::string::npos;
  }
  EXPECT_EQ(resubmitted, 2);
  EXPECT_EQ(failed, 1);
  // Released, the runners given up drop their late answers and the executor joins them.
  {
    std::lock_guard lock(gate->m);
    gate->open = true;
  }
  gate->cv.notify_all();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  executor.reset();
}

// The whole CLI: local runner 1 hangs for good on its 2nd candidate; the search finishes on the
// others, stores each proposal once, records the event and exits 3 without waiting for it.
TEST(WorkerTimeout, LocalSearchFinishesWithoutTheHungRunner) {
  const fs::path dir = temp_dir("local");
  const int budget = 16;
  const std::string config = write_config(dir, synthetic_config(dir, budget, 0.02, 1.0));
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = shell("HWNAS_TEST_HANG_WORKER=1:2 '" + test::kHwnasBinary + "' search '" + config +
                       "' --quiet");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_LT(seconds, 30);
  EXPECT_NE(r.output.find("local runner 1 gave no answer for candidate"), std::string::npos)
      << r.output;
  const StoredRun stored = stored_run((dir / "w.db").string());
  EXPECT_EQ(stored.status, "finished");
  expect_each_proposal_once(stored, budget);
  ASSERT_EQ(stored.worker_events.size(), 1u) << stored.worker_events.dump();
  EXPECT_NE(stored.worker_events[0]["event"].get<std::string>().find("re-submitted"),
            std::string::npos);
  // `hwnas runs` lists the event with its run.
  const auto runs =
      shell("'" + test::kHwnasBinary + "' runs --db '" + (dir / "w.db").string() + "'");
  EXPECT_EQ(runs.exit_code, 0) << runs.output;
  EXPECT_NE(runs.output.find("worker events"), std::string::npos) << runs.output;
  EXPECT_NE(runs.output.find("local runner 1 gave no answer"), std::string::npos) << runs.output;
  fs::remove_all(dir);
}

TEST(WorkerTimeout, RunnerThreadsThatCannotStartAreACleanError) {
  const fs::path dir = temp_dir("threads");
  const std::string config = write_config(dir, synthetic_config(dir, 4, 0.01, 0));
  // 1 GB of address space holds far fewer than 1024 thread stacks (8 MB each); root ignores
  // RLIMIT_NPROC, so the address space is the limit that works everywhere.
  const auto r = shell("ulimit -v 1000000; '" + test::kHwnasBinary + "' search '" + config +
                       "' --workers 1024 --quiet");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("error: could not start the local runner threads"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("lower --workers"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("terminate"), std::string::npos) << r.output;
  fs::remove_all(dir);
}

// ---- MPI ----

std::string mpi_unavailable() {
#ifndef HWNAS_WITH_MPI
  return "built with HWNAS_WITH_MPI=OFF";
#else
  return std::system("command -v mpirun > /dev/null 2>&1") == 0 ? "" : "mpirun not installed";
#endif
}

const std::string kMpirun =
    "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
    "OMPI_MCA_btl_vader_single_copy_mechanism=none timeout -s KILL 40 mpirun --oversubscribe "
    "--allow-run-as-root";

// `mpirun -n RANKS hwnas search CONFIG --quiet ARGS` in the background, tagged so its ranks
// can be found; stdout and stderr into `log`.
pid_t spawn_mpirun(int ranks, const std::string& config, const std::string& tag,
                   const std::string& log, const std::string& args = "") {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::setenv("HWNAS_TEST_TAG", tag.c_str(), 1);
    const std::string cmd = kMpirun + " -n " + std::to_string(ranks) + " '" + test::kHwnasBinary +
                            "' search '" + config + "' --quiet " + args + " >> '" + log + "' 2>&1";
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Exit status (128 + signal when killed), or -1 if still running after `seconds`.
int wait_exit(pid_t pid, double seconds) {
  for (int i = 0; i < seconds * 100; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    ::usleep(10000);
  }
  ::kill(-pid, SIGKILL);  // the whole process group: mpirun and its ranks
  ::waitpid(pid, nullptr, 0);
  return -1;
}

// The pid of MPI rank `rank` of the mpirun tagged `tag` (from the ranks' environments).
pid_t rank_pid(const std::string& tag, int rank) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "environ", std::ios::binary);
    std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::set<std::string> vars;
    for (std::size_t at = 0, end; at < env.size(); at = end + 1) {
      end = env.find('\0', at);
      if (end == std::string::npos) end = env.size();
      vars.insert(env.substr(at, end - at));
    }
    if (vars.count("HWNAS_TEST_TAG=" + tag) &&
        vars.count("OMPI_COMM_WORLD_RANK=" + std::to_string(rank)))
      return static_cast<pid_t>(std::stol(name));
  }
  return -1;
}

// Ranks left behind by an mpirun that was killed (they run in process groups of their own).
void kill_tagged(const std::string& tag) {
  for (int r = 0; r < 3; ++r)
    if (const pid_t left = rank_pid(tag, r); left > 0) ::kill(left, SIGKILL);
}

// Signals worker rank `rank` once `after` evaluations are stored; returns the mpirun's status
// (-1 when it had not ended after `seconds` and was killed, with every rank still tagged).
int signal_rank_after(pid_t mpirun, const std::string& db, const std::string& tag, int rank,
                      std::size_t after, int sig, double seconds = 120) {
  for (int i = 0; i < 6000 && stored_count(db) < after; ++i) ::usleep(10000);
  EXPECT_GE(stored_count(db), after);
  const pid_t victim = rank_pid(tag, rank);
  EXPECT_GT(victim, 0) << "rank " << rank << " not found";
  if (victim > 0) ::kill(victim, sig);
  const int status = wait_exit(mpirun, seconds);
  kill_tagged(tag);
  return status;
}

// Whether the coordinator exited with `code`: mpirun's status, or, when mpirun itself failed
// after reporting it, its report.  Open MPI 4.1.4's mpirun, tearing down a job whose rank 0
// exited with a code while a rank hangs or is stopped, sometimes crashes (SIGSEGV, 139) or hangs
// after printing the report (seen in about 1 run in 8 here): that is the launcher's.
::testing::AssertionResult coordinator_exited(int status, const std::string& output, int code) {
  if (status == code || output.find("Exit code:    " + std::to_string(code)) != std::string::npos)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "status " << status << ", expected the coordinator's " << code << ":\n"
         << output;
}

// HWNAS_TEST_HANG_WORKER: worker rank 2 hangs on its 3rd job; rank 1 finishes the search.
TEST(WorkerTimeoutMpi, HungWorkerRankIsGivenUpAndTheSearchFinishes) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const fs::path dir = temp_dir("mpihang");
  const int budget = 24;
  const std::string config = write_config(dir, synthetic_config(dir, budget, 0.02, 1.0));
  const std::string tag = "hang" + std::to_string(::getpid());
  const auto r = shell("HWNAS_TEST_TAG=" + tag + " HWNAS_TEST_HANG_WORKER=2:3 " + kMpirun +
                       " -x HWNAS_TEST_HANG_WORKER -n 3 '" + test::kHwnasBinary + "' search '" +
                       config + "' --quiet");
  kill_tagged(tag);
  EXPECT_TRUE(coordinator_exited(r.exit_code, r.output, 3));
  EXPECT_NE(r.output.find("worker rank 2 gave no answer for candidate"), std::string::npos)
      << r.output;
  const StoredRun stored = stored_run((dir / "w.db").string());
  EXPECT_EQ(stored.status, "finished");
  expect_each_proposal_once(stored, budget);
  ASSERT_EQ(stored.worker_events.size(), 1u) << stored.worker_events.dump();
  EXPECT_NE(stored.worker_events[0]["event"].get<std::string>().find(
                "rank given up, candidate re-submitted to another rank"),
            std::string::npos);
  fs::remove_all(dir);
}

// A real SIGSTOP of worker rank 1 mid-run: given up, the search finishes on rank 2, and the
// stopped rank does not keep the job (or the coordinator's MPI_Finalize) waiting.
TEST(WorkerTimeoutMpi, StoppedWorkerRankIsGivenUpAndTheSearchFinishes) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const fs::path dir = temp_dir("mpistop");
  const int budget = 40;
  const std::string config = write_config(dir, synthetic_config(dir, budget, 0.05, 1.0));
  const std::string db = (dir / "w.db").string(), log = (dir / "log").string();
  const std::string tag = "stop" + std::to_string(::getpid());
  const pid_t mpirun = spawn_mpirun(3, config, tag, log);
  const int status = signal_rank_after(mpirun, db, tag, 1, 4, SIGSTOP, 30);
  EXPECT_TRUE(coordinator_exited(status, slurp(log), 3));
  EXPECT_NE(slurp(log).find("worker rank 1 gave no answer"), std::string::npos) << slurp(log);
  const StoredRun stored = stored_run(db);
  EXPECT_EQ(stored.status, "finished");
  expect_each_proposal_once(stored, budget);
  EXPECT_EQ(stored.worker_events.size(), 1u) << stored.worker_events.dump();
  fs::remove_all(dir);
}

// SIGKILL of a worker rank: Open MPI 4 (no ULFM) ends the job, SIGTERMs the coordinator, which
// marks the run interrupted and says how to resume; --resume under mpirun finishes it.
TEST(WorkerTimeoutMpi, KilledWorkerRankLeavesAnInterruptedRunThatResumes) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const fs::path dir = temp_dir("mpikill");
  const int budget = 40;
  const std::string config = write_config(dir, synthetic_config(dir, budget, 0.05, 0));
  const std::string db = (dir / "w.db").string(), log = (dir / "log").string();
  const std::string tag = "kill" + std::to_string(::getpid());
  const int status = signal_rank_after(spawn_mpirun(3, config, tag, log), db, tag, 2, 4, SIGKILL);
  EXPECT_NE(status, 0) << slurp(log);
  EXPECT_NE(status, -1) << slurp(log);
  const std::size_t stored_before = stored_count(db);
  EXPECT_GE(stored_before, 4u);
  EXPECT_LT(stored_before, static_cast<std::size_t>(budget));
  {
    db::Store store(db, true);
    EXPECT_EQ(store.runs().back().status, "interrupted") << slurp(log);
  }
  EXPECT_NE(slurp(log).find("continue it with: hwnas search " + config + " --db " + db +
                            " --resume --run 1"),
            std::string::npos)
      << slurp(log);
  const pid_t resumed = spawn_mpirun(3, config, tag + "r", log, "--resume");
  EXPECT_EQ(wait_exit(resumed, 120), 0) << slurp(log);
  const StoredRun stored = stored_run(db);
  EXPECT_EQ(stored.status, "finished");
  expect_each_proposal_once(stored, budget);
  fs::remove_all(dir);
}

// Every worker rank given up: the run is stored as interrupted, exit 75 with the resume line;
// --resume (the worker healthy again) finishes it with each proposal stored once.
TEST(WorkerTimeoutMpi, EveryWorkerGivenUpIsAnInterruptedRunThatResumes) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  const fs::path dir = temp_dir("mpiall");
  const int budget = 12;
  const std::string config = write_config(dir, synthetic_config(dir, budget, 0.02, 1.0));
  const std::string db = (dir / "w.db").string();
  const std::string run =
      kMpirun + " -n 2 '" + test::kHwnasBinary + "' search '" + config + "' --quiet";
  const auto first = shell("HWNAS_TEST_HANG_WORKER=1:3 " + kMpirun + " -x HWNAS_TEST_HANG_WORKER" +
                           run.substr(kMpirun.size()));
  EXPECT_TRUE(coordinator_exited(first.exit_code, first.output, 75));
  EXPECT_NE(first.output.find("every worker rank was given up"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("--resume --run 1"), std::string::npos) << first.output;
  EXPECT_EQ(stored_run(db).status, "interrupted");
  EXPECT_EQ(stored_count(db), 2u);
  const auto second = shell(run + " --resume");
  EXPECT_EQ(second.exit_code, 0) << second.output;
  const StoredRun stored = stored_run(db);
  EXPECT_EQ(stored.status, "finished");
  expect_each_proposal_once(stored, budget);
  EXPECT_EQ(stored.worker_events.size(), 1u) << stored.worker_events.dump();
  fs::remove_all(dir);
}

}  // namespace
