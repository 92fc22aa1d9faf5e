// Crash and resume (`hwnas search --resume`), liveness (`hwnas runs` shows "stale"), and how a
// search ends on signals and closed pipes.  Every search here runs the real binary on the
// tabular NAS-Bench-201 example (a generated table: milliseconds per candidate), so a kill can
// land anywhere in a run.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <thread>
#include <tuple>

#include "db/sqlite.hpp"
#include "db/store.hpp"
#include "search/resume.hpp"
#include "spaces/space.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

const std::string kBinary = std::string(HWNAS_BINARY_DIR) + "/hwnas";
const std::string kExamples = std::string(HWNAS_SOURCE_DIR) + "/examples/";

fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("hwnas_resume_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string mpi_unavailable() {
#ifndef HWNAS_WITH_MPI
  return "built with HWNAS_WITH_MPI=OFF";
#else
  return std::system("command -v mpirun > /dev/null 2>&1") == 0 ? "" : "mpirun not installed";
#endif
}

// A table over all NAS-Bench-201 cells with SYNTHETIC numbers (a function of the cell's ops).
std::string write_table(const fs::path& dir, const std::string& space_path) {
  auto space = spaces::load_space(space_path);
  fs::path csv = dir / "nb201_table.csv";
  std::ofstream out(csv);
  out << "arch,valid_acc_3,valid_acc_6,valid_acc_12,test_acc_200\n";
  const std::uint64_t n = *space->size();
  for (std::uint64_t i = 0; i < n; ++i) {
    std::string arch = space->describe(space->at(i));
    double score = 40;
    for (std::size_t p = 0; (p = arch.find("nor_conv_3x3", p)) != std::string::npos; ++p)
      score += 8;
    for (std::size_t p = 0; (p = arch.find("skip_connect", p)) != std::string::npos; ++p)
      score += 2;
    const double noise = 0.001 * static_cast<double>(i % 997);
    out << '"' << arch << "\"," << score - 6 + 3 * noise << "," << score - 2 + 2 * noise << ","
        << score + noise << "," << score + 1 << "\n";
  }
  return csv.string();
}

// The tabular example with `strategy`, `budget` candidates and 2 devices, written to
// dir/config.json (the table once per directory).
std::string write_config(const fs::path& dir, const json& strategy, int budget) {
  std::ifstream in(kExamples + "search_nb201_tabular.json");
  json j = json::parse(in);
  j["space"] = kExamples + j["space"].get<std::string>();
  if (!fs::exists(dir / "nb201_table.csv")) write_table(dir, j["space"].get<std::string>());
  j["evaluator"]["csv"] = (dir / "nb201_table.csv").string();
  j["strategy"] = strategy;
  j["budget"]["evaluations"] = budget;
  j["devices"] = {"h100_sxm", "jetson_tx2"};
  j["workers"] = 2;
  j["db"] = (dir / "unused.db").string();
  std::string path = (dir / "config.json").string();
  std::ofstream(path) << j.dump(2);
  return path;
}

// Starts the binary with `args`, stdout and stderr into `log`.
pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Exit status (128 + signal when killed), or -1 if still running after `seconds`.
int wait_exit(pid_t pid, double seconds) {
  for (int i = 0; i < seconds * 1000; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    ::usleep(1000);
  }
  return -1;
}

// Stored evaluations of the file's latest run (0 while nothing is readable yet).
std::size_t stored_count(const std::string& db) {
  if (!fs::exists(db)) return 0;
  try {
    db::Store reader(db, true);
    auto run = reader.latest_run_id();
    return run ? reader.run(*run)->evaluations : 0;
  } catch (const std::exception&) {
    return 0;  // schema not created yet
  }
}

std::optional<db::RunInfo> latest_run(const std::string& db) {
  try {
    db::Store reader(db, true);
    if (auto id = reader.latest_run_id()) return reader.run(*id);
  } catch (const std::exception&) {
  }
  return std::nullopt;
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

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// What a run stored, by proposal id: (architecture hash, metrics, costs) exactly.
using Stored = std::map<std::int64_t, std::tuple<std::string, std::string, std::string>>;

Stored stored_set(const std::string& db, std::int64_t* run_id = nullptr) {
  db::Store store(db, true);
  auto runs = store.runs();
  EXPECT_EQ(runs.size(), 1u) << db << ": a resumed run continues its run, never starts another";
  std::int64_t id = runs.empty() ? 0 : runs.back().id;
  if (run_id) *run_id = id;
  Stored out;
  for (const auto& e : store.evaluations(id)) {
    json costs = json::array();
    for (const auto& c : e.costs)
      costs.push_back({c.device, c.feasible, c.latency_ms, c.energy_mj, c.memory_bytes});
    EXPECT_TRUE(out.emplace(e.proposal_id, std::make_tuple(store.architecture(e.arch_id)->hash,
                                                           e.metrics.dump(), costs.dump()))
                    .second)
        << "proposal " << e.proposal_id << " stored twice";
  }
  return out;
}

std::vector<std::string> search_args(const std::string& config, const std::string& db,
                                     int workers) {
  return {kBinary, "search", config, "--db", db, "--workers", std::to_string(workers), "--quiet"};
}

// Runs a search and SIGKILLs it at seeded random moments (after a random number of stored
// evaluations, or a random delay), resuming each time, until it finishes.  `workers_of(i)` is
// the worker count of the i-th start.  Returns the number of kills that hit a live search.
int kill_and_resume(const std::string& config, const std::string& db, const fs::path& dir,
                    std::uint64_t seed, int kills, int budget,
                    const std::function<int(int)>& workers_of,
                    const std::vector<std::string>& launcher = {}) {
  std::mt19937_64 rng(seed);
  const std::string log = (dir / "log").string();
  int hits = 0;
  std::int64_t last_victim = 0;
  std::vector<std::size_t> at_kill;  // stored evaluations at each kill, printed at the end
  struct Print {
    std::vector<std::size_t>& counts;
    ~Print() {
      std::cout << "[ resume   ] SIGKILLs at stored evaluations:";
      for (auto n : counts) std::cout << ' ' << n;
      std::cout << "\n";
    }
  } print{at_kill};
  for (int start = 0; start < kills + 20; ++start) {
    auto args = search_args(config, db, workers_of(start));
    if (auto run = latest_run(db)) {
      // A kill may land after the last evaluation was stored and the run marked finished.
      if (run->status == "finished") return hits;
      args.push_back("--resume");
    }
    args.insert(args.begin(), launcher.begin(), launcher.end());
    const std::size_t before = stored_count(db);
    pid_t pid = spawn(args, log);
    if (start < kills) {
      // Once this start has claimed the run (its coordinator's pid is recorded), half the kills
      // wait for a number of stored evaluations, half for a random delay (which may land before
      // the first evaluation of this start, or between any two).  The first always waits for a
      // count: a delay can outlast a fast search, and then no kill would land at all.
      const bool by_count = rng() % 2 == 0 || start == 0;
      const std::size_t target =
          before + 1 + rng() % static_cast<std::uint64_t>(std::max<int>(1, (budget - before) / 3));
      const auto delay = std::chrono::milliseconds(rng() % 150);
      std::optional<std::chrono::steady_clock::time_point> claimed;
      pid_t victim = 0;
      int status = -1;
      while (true) {
        int st = 0;
        if (::waitpid(pid, &st, WNOHANG) == pid) {
          status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
          break;
        }
        if (!claimed) {
          auto run = latest_run(db);
          if (run && run->pid > 0 && run->pid != last_victim &&
              ::kill(static_cast<pid_t>(run->pid), 0) == 0 &&
              (!launcher.empty() || run->pid == pid)) {
            claimed = std::chrono::steady_clock::now();
            victim = static_cast<pid_t>(run->pid);  // under mpirun: the coordinator rank
          }
        } else if (by_count ? stored_count(db) >= target
                            : std::chrono::steady_clock::now() - *claimed >= delay) {
          ::kill(victim, SIGKILL);
          last_victim = victim;
          at_kill.push_back(stored_count(db));
          status = wait_exit(pid, 60);
          ++hits;
          break;
        }
        ::usleep(1000);
      }
      EXPECT_NE(status, -1);
      if (status == 0) return hits;  // finished before the kill landed
    } else {
      const int status = wait_exit(pid, 120);
      EXPECT_EQ(status, 0) << slurp(log);
      return hits;
    }
  }
  return hits;
}

// An uninterrupted run of the same config and seed.
Stored reference(const std::string& config, const fs::path& dir, int workers) {
  const std::string db = (dir / ("reference_" + std::to_string(workers) + ".db")).string();
  if (!fs::exists(db)) {
    auto r = run_command("'" + kBinary + "' search '" + config + "' --db '" + db +
                         "' --quiet --workers " + std::to_string(workers) + " > /dev/null");
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  return stored_set(db);
}

json strategy_config(const std::string& name) {
  if (name == "regularized_evolution")
    return {{"type", name}, {"population", 10}, {"sample_size", 3}};
  if (name == "nsga2") return {{"type", name}, {"population", 10}};
  // The table's 3-, 6- and 12-epoch columns are the multi-fidelity strategies' rungs.
  if (name == "successive_halving" || name == "hyperband")
    return {{"type", name}, {"min_epochs", 3}, {"max_epochs", 12}, {"eta", 2}};
  return {{"type", name}};
}

class ResumeEveryStrategy : public ::testing::TestWithParam<std::string> {};

TEST_P(ResumeEveryStrategy, KilledAndResumedRunEqualsAnUninterruptedOne) {
  fs::path dir = temp_dir("strategy_" + GetParam());
  const int budget = 60;
  const std::string config = write_config(dir, strategy_config(GetParam()), budget);
  const std::string db = (dir / "killed.db").string();
  const int hits = kill_and_resume(config, db, dir, std::hash<std::string>{}(GetParam()), 4, budget,
                                   [](int) { return 2; });
  EXPECT_GE(hits, 1) << "no kill landed while the search ran";
  std::int64_t run_id = 0;
  Stored killed = stored_set(db, &run_id);
  Stored uninterrupted = reference(config, dir, 2);
  EXPECT_EQ(static_cast<int>(uninterrupted.size()), budget);
  EXPECT_EQ(killed.size(), uninterrupted.size());
  EXPECT_TRUE(killed == uninterrupted)
      << GetParam() << ": the resumed run differs from the uninterrupted one (" << hits
      << " kills)";
  db::Store store(db, true);
  EXPECT_EQ(store.run(run_id)->status, "finished");
  EXPECT_FALSE(store.pareto(run_id, "h100_sxm").empty());
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Strategies, ResumeEveryStrategy,
                         ::testing::Values("random", "regularized_evolution", "nsga2",
                                           "local_search", "reinforce", "bananas",
                                           "successive_halving", "hyperband"));

// The deterministic lag is the run's own (stored with its state), so resuming on 1 or 3
// workers continues the same proposal sequence: the result equals the 2-worker run's.
TEST(Resume, OnAnotherNumberOfWorkersGivesTheSameRun) {
  fs::path dir = temp_dir("workers");
  const int budget = 60;
  const std::string config = write_config(dir, strategy_config("regularized_evolution"), budget);
  const std::string db = (dir / "killed.db").string();
  kill_and_resume(config, db, dir, 11, 3, budget, [](int start) {
    const int workers[] = {2, 1, 3};  // started on 2, resumed on 1, then 3, ...
    return workers[start % 3];
  });
  EXPECT_TRUE(stored_set(db) == reference(config, dir, 2));
  fs::remove_all(dir);
}

// Without deterministic mode the search depends on arrival order, so there is no reference to
// equal; a killed and resumed run still evaluates each proposal id exactly once and finishes.
TEST(Resume, NonDeterministicRunEvaluatesEveryProposalOnce) {
  fs::path dir = temp_dir("nondet");
  const int budget = 60;
  const std::string config_path = write_config(dir, strategy_config("nsga2"), budget);
  json j = json::parse(slurp(config_path));
  j["deterministic"] = false;
  std::ofstream(config_path) << j.dump(2);
  const std::string db = (dir / "nd.db").string();
  kill_and_resume(config_path, db, dir, 3, 3, budget, [](int start) { return 2 + start % 2; });
  Stored stored = stored_set(db);
  ASSERT_EQ(static_cast<int>(stored.size()), budget);
  EXPECT_EQ(stored.begin()->first, 0);
  EXPECT_EQ(stored.rbegin()->first, budget - 1);
  EXPECT_EQ(latest_run(db)->status, "finished");
  fs::remove_all(dir);
}

TEST(Resume, RefusesFinishedMissingAndDifferentRunsClearly) {
  fs::path dir = temp_dir("refuse");
  const std::string config = write_config(dir, strategy_config("random"), 10);
  const std::string db = (dir / "r.db").string();
  const std::string base = "'" + kBinary + "' search '" + config + "' --db '" + db + "' --quiet";
  auto r = run_command(base + " --resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("no run named 'nb201-tabular' to resume"), std::string::npos) << r.output;
  ASSERT_EQ(run_command(base + " > /dev/null").exit_code, 0);
  r = run_command(base + " --resume --run 1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("run 1 ('nb201-tabular') already finished"), std::string::npos)
      << r.output;
  r = run_command(base + " --resume");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("all finished"), std::string::npos) << r.output;
  r = run_command(base + " --resume --run 7");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("--run: no run 7 in"), std::string::npos) << r.output;
  r = run_command(base + " --run 1");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("only with --resume"), std::string::npos) << r.output;

  // An interrupted run with another seed and budget than the config now says.
  {
    db::Store store(db);
    store.finish_run(1, "interrupted");
  }
  r = run_command(base + " --resume --seed 5 --budget 12");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("config differs from run 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("seed: 5 here, 0 in the run"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("budget.evaluations: 12 here, 10 in the run"), std::string::npos)
      << r.output;
  // The execution-only fields may differ; an interrupted run resumes and finishes.
  r = run_command(base + " --resume --workers 1 > /dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto run = latest_run(db);
  EXPECT_EQ(run->status, "finished");
  EXPECT_EQ(run->evaluations, 10);
  fs::remove_all(dir);
}

TEST(Liveness, StaleWhenThePidIsGoneHereOrTheHeartbeatIsOld) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  db::RunInfo r;
  r.status = "running";
  r.host = search::this_host();
  r.pid = ::getpid();
  r.heartbeat = now;
  EXPECT_EQ(search::displayed_status(r), "running");
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  r.pid = child;  // exited and reaped: gone
  EXPECT_EQ(search::displayed_status(r), "stale");
  r.host = "some-other-node";  // another host's pid cannot be checked: the heartbeat decides
  EXPECT_EQ(search::displayed_status(r), "running");
  r.heartbeat = now - search::kStaleAfterSeconds - 5;
  EXPECT_EQ(search::displayed_status(r), "stale");
  r.status = "interrupted";  // only a run that claims to be running can be stale
  EXPECT_EQ(search::displayed_status(r), "interrupted");
  db::RunInfo old;  // stored before schema version 5: nothing to judge by
  old.status = "running";
  EXPECT_EQ(search::displayed_status(old), "running");
}

TEST(Resume, ConfigDifferencesNameEveryFieldButExecutionOnes) {
  json a = {{"seed", 1},
            {"db", "a.db"},
            {"workers", 2},
            {"budget", {{"evaluations", 10}}},
            {"strategy", {{"type", "random"}}}};
  json b = a;
  b["db"] = "b.db";
  b["workers"] = 8;
  b["threads"] = 3;
  EXPECT_EQ(search::config_differences(a, b), "");
  b["budget"]["evaluations"] = 20;
  b["strategy"]["population"] = 4;
  const std::string d = search::config_differences(a, b);
  EXPECT_NE(d.find("budget.evaluations: 20 here, 10 in the run"), std::string::npos) << d;
  EXPECT_NE(d.find("strategy.population: 4 here, absent in the run"), std::string::npos) << d;
  EXPECT_EQ(d.find("seed"), std::string::npos) << d;
}

// A long tabular search to stop or kill in the middle.
std::string long_config(const fs::path& dir) {
  return write_config(dir, strategy_config("random"), 100000);
}

TEST(Liveness, KilledRunIsStaleAndResumable) {
  fs::path dir = temp_dir("stale");
  const std::string config = long_config(dir);
  const std::string db = (dir / "s.db").string();
  pid_t pid = spawn(search_args(config, db, 1), (dir / "log").string());
  for (int i = 0; i < 20000 && stored_count(db) < 3; ++i) ::usleep(1000);
  ASSERT_GE(stored_count(db), 3u) << slurp((dir / "log").string());
  auto runs = run_command("'" + kBinary + "' runs --db '" + db + "'");
  EXPECT_NE(runs.output.find("running"), std::string::npos) << runs.output;
  auto run = latest_run(db);
  EXPECT_EQ(run->pid, pid);
  EXPECT_GT(run->heartbeat, 0);
  EXPECT_FALSE(run->host.empty());
  // A live run is not resumed behind its back.
  auto r = run_command("'" + kBinary + "' search '" + config + "' --db '" + db + "' --resume");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("is still running (coordinator pid " + std::to_string(pid)),
            std::string::npos)
      << r.output;

  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid, 10), 128 + SIGKILL);
  runs = run_command("'" + kBinary + "' runs --db '" + db + "'");
  EXPECT_EQ(runs.exit_code, 0);
  EXPECT_NE(runs.output.find("stale"), std::string::npos) << runs.output;
  EXPECT_EQ(runs.output.find("running"), std::string::npos) << runs.output;
  // Queries work on it from what is stored: the front of its stored evaluations.
  auto pareto = run_command("'" + kBinary + "' pareto --db '" + db + "' --device h100_sxm");
  EXPECT_EQ(pareto.exit_code, 0) << pareto.output;
  EXPECT_NE(pareto.output.find("stale"), std::string::npos) << pareto.output;
  EXPECT_NE(pareto.output.find("computed from"), std::string::npos) << pareto.output;
  auto show = run_command("'" + kBinary + "' show --db '" + db + "' 1");
  EXPECT_EQ(show.exit_code, 0) << show.output;
  fs::remove_all(dir);
}

// SIGINT, SIGTERM and SIGHUP stop the search cleanly: the run is stored as interrupted with its
// fronts, the exit code is 128 + the signal, and stderr says how to resume.
class StopSignal : public ::testing::TestWithParam<int> {};

TEST_P(StopSignal, InterruptsWithItsExitCodeAndAResumeHint) {
  const int sig = GetParam();
  fs::path dir = temp_dir("signal" + std::to_string(sig));
  const std::string config = long_config(dir);
  const std::string db = (dir / "s.db").string();
  const std::string log = (dir / "log").string();
  auto args = search_args(config, db, 1);
  args.pop_back();  // with progress lines
  pid_t pid = spawn(args, log);
  for (int i = 0; i < 20000 && stored_count(db) < 3; ++i) ::usleep(1000);
  ::kill(pid, sig);
  EXPECT_EQ(wait_exit(pid, 30), 128 + sig) << slurp(log);
  auto run = latest_run(db);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, "interrupted");
  const std::string out = slurp(log);
  EXPECT_NE(out.find("--resume --run " + std::to_string(run->id)), std::string::npos) << out;
  db::Store store(db, true);
  EXPECT_FALSE(store.pareto(run->id, "h100_sxm").empty());
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Signals, StopSignal, ::testing::Values(SIGINT, SIGTERM, SIGHUP),
                         [](const auto& info) {
                           return info.param == SIGINT    ? std::string("Sigint")
                                  : info.param == SIGTERM ? std::string("Sigterm")
                                                          : std::string("Sighup");
                         });

TEST(Pipes, ProgressToAClosedPipeNeverKillsTheSearch) {
  fs::path dir = temp_dir("pipe");
  const std::string config = write_config(dir, strategy_config("random"), 80);
  const std::string db = (dir / "p.db").string();
  // `head -1` exits after the first line: every later progress line and the fronts go to a
  // closed pipe.
  auto r = run_command("bash -c \"'" + kBinary + "' search '" + config + "' --db '" + db +
                       "' 2>&1 | head -1; exit \\${PIPESTATUS[0]}\"");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto run = latest_run(db);
  ASSERT_TRUE(run);
  EXPECT_EQ(run->status, "finished");
  EXPECT_EQ(run->evaluations, 80);
  fs::remove_all(dir);
}

// Another process holds the write lock for longer than the store's 5 s busy timeout: the
// search retries its writes with backoff and finishes with every evaluation.
TEST(DatabaseLock, ExternalWriteLockIsWaitedOutSlow) {
  fs::path dir = temp_dir("lock");
  const std::string config = write_config(dir, strategy_config("random"), 40);
  const std::string db = (dir / "l.db").string();
  const std::string log = (dir / "log").string();
  auto args = search_args(config, db, 1);
  args.pop_back();  // with progress lines
  pid_t pid = spawn(args, log);
  for (int i = 0; i < 20000 && stored_count(db) < 2; ++i) ::usleep(1000);
  ASSERT_GE(stored_count(db), 2u) << slurp(log);
  {
    db::Connection holder(db, false);
    holder.exec("PRAGMA busy_timeout = 5000");
    holder.exec("BEGIN IMMEDIATE");  // the write lock (WAL: readers still read)
    ::sleep(7);
    holder.exec("COMMIT");
  }
  EXPECT_EQ(wait_exit(pid, 120), 0) << slurp(log);
  auto run = latest_run(db);
  EXPECT_EQ(run->status, "finished");
  EXPECT_EQ(run->evaluations, 40);
  EXPECT_NE(slurp(log).find("database locked by another process; retrying"), std::string::npos)
      << slurp(log);
  fs::remove_all(dir);
}

// Rescore never overwrites silently: another model under a stored device's name is refused
// unless it goes under a new name (--as) or --replace says so; the same model rescores freely.
TEST(Rescore, DifferentModelUnderAStoredNameNeedsAsOrReplace) {
  fs::path dir = temp_dir("rescore");
  const std::string config = write_config(dir, strategy_config("random"), 8);
  const std::string db = (dir / "r.db").string();
  const std::string bin = "'" + kBinary + "'";
  ASSERT_EQ(
      run_command(bin + " search '" + config + "' --db '" + db + "' --quiet > /dev/null").exit_code,
      0);
  const std::string rescore = bin + " rescore --db '" + db + "' --device ";
  auto r = run_command(rescore + "h100_sxm");  // the same model: allowed (idempotent)
  EXPECT_EQ(r.exit_code, 0) << r.output;
  json faster =
      json::parse(slurp(std::string(HWNAS_SOURCE_DIR) + "/hwmodels/devices/h100_sxm.json"));
  faster["mem_bw"] = faster["mem_bw"].get<double>() * 2;  // same name, another model
  const std::string faster_path = (dir / "h100_fast.json").string();
  std::ofstream(faster_path) << faster.dump(2);
  auto latency_of = [&](const std::string& device) {
    db::Store store(db, true);
    const auto evals = store.evaluations(1);
    for (const auto& c : evals.front().costs)
      if (c.device == device) return c.latency_ms;
    return -1.0;
  };
  const double before = latency_of("h100_sxm");
  r = run_command(rescore + "'" + faster_path + "'");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("already has costs on 'h100_sxm' from a different model"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("--as NEW_NAME"), std::string::npos) << r.output;
  EXPECT_EQ(latency_of("h100_sxm"), before);  // untouched
  r = run_command(rescore + "'" + faster_path + "' --as h100_fast");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GT(latency_of("h100_fast"), 0);
  EXPECT_EQ(latency_of("h100_sxm"), before);
  r = run_command(rescore + "'" + faster_path + "' --replace");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(latency_of("h100_sxm"), before);
  fs::remove_all(dir);
}

const std::string kMpirun2 =
    "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
    "OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --oversubscribe --allow-run-as-root -n "
    "2";

std::vector<std::string> mpirun2() {
  std::istringstream in(kMpirun2);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// Under mpirun: SIGKILL the coordinator rank, resume under mpirun until done; one worker rank
// gives the lag of one local worker, so the run equals an uninterrupted local 1-worker run.
TEST(ResumeMpi, KilledCoordinatorResumesUnderMpirunToTheSameRunSlow) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  fs::path dir = temp_dir("mpi");
  const int budget = 60;
  const std::string config = write_config(dir, strategy_config("regularized_evolution"), budget);
  const std::string db = (dir / "mpi.db").string();
  const int hits = kill_and_resume(
      config, db, dir, 5, 2, budget, [](int) { return 2; }, mpirun2());
  EXPECT_GE(hits, 1) << slurp((dir / "log").string());
  EXPECT_TRUE(stored_set(db) == reference(config, dir, 1)) << slurp((dir / "log").string());
  EXPECT_EQ(latest_run(db)->status, "finished");
  fs::remove_all(dir);
}

TEST(ResumeMpi, TerminatedCoordinatorExitsWithTheLocalCode) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  fs::path dir = temp_dir("mpiterm");
  const std::string config = long_config(dir);
  const std::string db = (dir / "t.db").string();
  std::vector<std::string> args = mpirun2();
  for (const auto& a : search_args(config, db, 1)) args.push_back(a);
  pid_t pid = spawn(args, (dir / "log").string());
  for (int i = 0; i < 30000 && stored_count(db) < 3; ++i) ::usleep(1000);
  auto run = latest_run(db);
  ASSERT_TRUE(run && run->pid > 0) << slurp((dir / "log").string());
  ::kill(static_cast<pid_t>(run->pid), SIGTERM);
  EXPECT_EQ(wait_exit(pid, 60), 128 + SIGTERM) << slurp((dir / "log").string());
  EXPECT_EQ(latest_run(db)->status, "interrupted");
  fs::remove_all(dir);
}

}  // namespace
