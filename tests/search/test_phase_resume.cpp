// A one-shot search killed (SIGKILL: nothing saved on the way out) after its supernet phase but
// before its first evaluation is stored resumes without training the supernet again
// (search/oneshot_env.hpp: keep_phase_outcomes), and stores what an uninterrupted run stores.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "db/store.hpp"
#include "tests/search/cli_util.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

namespace {

json spos_config(const fs::path& db) {
  const std::string examples = std::string(HWNAS_SOURCE_DIR) + "/examples/";
  std::ifstream in(examples + "search_spos.json");
  json j = json::parse(in);
  j["space"] = examples + j["space"].get<std::string>();
  j["task"]["train_subset"] = 400;
  j["task"]["val_size"] = 150;
  // Candidates train long enough for the kill to land between the phase and the first result.
  j["evaluator"]["epochs"] = 4;
  j["strategy"]["epochs"] = 1;
  j["strategy"]["steps_per_epoch"] = 4;
  j["strategy"]["population"] = 4;
  j["strategy"]["generations"] = 1;
  j["strategy"]["candidates"] = 2;
  j["strategy"]["eval_samples"] = 100;
  j["budget"]["evaluations"] = 2;
  j["workers"] = 1;
  j["db"] = db.string();
  return j;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Stored {
  std::vector<std::string> archs;
  std::vector<double> accuracy;
};

Stored stored(const fs::path& db) {
  db::Store store(db.string(), true);
  Stored s;
  for (const auto& e : store.evaluations(*store.latest_run_id())) {
    s.archs.push_back(store.architecture(e.arch_id)->hash);
    s.accuracy.push_back(e.metrics.value("val_accuracy", -1.0));
  }
  return s;
}

}  // namespace

TEST(OneShotResume, AKillAfterThePhaseResumesWithoutTrainingTheSupernetAgain) {
  const fs::path dir = fs::temp_directory_path() / ("hwnas_phase_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path whole_cfg = dir / "whole.json", killed_cfg = dir / "killed.json";
  std::ofstream(whole_cfg) << spos_config(dir / "whole.db").dump(1);
  std::ofstream(killed_cfg) << spos_config(dir / "killed.db").dump(1);

  const auto whole = test::run_hwnas("search " + whole_cfg.string());
  ASSERT_EQ(whole.exit_code, 0) << whole.output;

  // The killed run: SIGKILL as soon as the phase has logged its picks.
  const fs::path log = dir / "killed.log";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(test::kHwnasBinary.c_str(), test::kHwnasBinary.c_str(), "search", killed_cfg.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // The kept outcome's file appears right after the phase (its log lines come a moment before
  // it: a kill between them legitimately loses the phase, so the test waits for the file).
  const fs::path kept_dir = dir / "killed.db.checkpoints" / "run-1";
  auto kept = [&] {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(kept_dir, ec))
      if (e.path().extension() == ".json") return true;
    return false;
  };
  bool phase_done = false;
  for (int i = 0; i < 1200 && !phase_done; ++i) {
    ::usleep(20000);
    phase_done = kept();
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(phase_done) << slurp(log);
  {
    db::Store store((dir / "killed.db").string(), true);
    ASSERT_TRUE(store.evaluations(*store.latest_run_id()).empty())
        << "the kill came after the first evaluation: the test did not exercise the phase's "
           "own resume";
  }

  const auto resumed = test::run_hwnas("search " + killed_cfg.string() + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("spos: supernet phase restored from"), std::string::npos)
      << resumed.output;
  EXPECT_EQ(resumed.output.find("spos: supernet epoch"), std::string::npos) << resumed.output;

  const Stored a = stored(dir / "whole.db"), b = stored(dir / "killed.db");
  EXPECT_EQ(a.archs, b.archs);
  EXPECT_EQ(a.accuracy, b.accuracy);
  // A finished run leaves no checkpoint folder behind.
  EXPECT_FALSE(fs::exists(dir / "killed.db.checkpoints" / "run-1"));
  fs::remove_all(dir);
}

// Killed (SIGKILL) during the supernet's training: the search started again with --resume
// continues the supernet from its last saved epoch (search/oneshot_env.hpp passes the state
// path, oneshot/spos_search.hpp saves it every epoch) and stores what an uninterrupted run
// stores.  Progressive shrinking with distillation, so every part of the state is exercised.
TEST(OneShotResume, AKillDuringThePhaseContinuesTheSupernetFromItsLastEpoch) {
  const fs::path dir = fs::temp_directory_path() / ("hwnas_midphase_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto config = [&](const fs::path& db) {
    json j = spos_config(db);
    j["evaluator"]["epochs"] = 1;
    j["strategy"]["schedule"] = "progressive";
    j["strategy"]["kd"] = true;
    for (const char* p : {"full_epochs", "kernel_epochs", "depth_epochs", "width_epochs"})
      j["strategy"][p] = 2;
    return j;
  };
  const fs::path whole_cfg = dir / "whole.json", killed_cfg = dir / "killed.json";
  std::ofstream(whole_cfg) << config(dir / "whole.db").dump(1);
  std::ofstream(killed_cfg) << config(dir / "killed.db").dump(1);
  const auto whole = test::run_hwnas("search " + whole_cfg.string());
  ASSERT_EQ(whole.exit_code, 0) << whole.output;

  const fs::path log = dir / "killed.log";
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(test::kHwnasBinary.c_str(), test::kHwnasBinary.c_str(), "search", killed_cfg.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // SIGKILL as soon as the first epoch's state is on disk (8 epochs in all).
  const fs::path kept_dir = dir / "killed.db.checkpoints" / "run-1";
  auto has = [&](const char* ext) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(kept_dir, ec))
      if (e.path().extension() == ext) return true;
    return false;
  };
  bool saved = false;
  for (int i = 0; i < 3000 && !saved; ++i) {
    ::usleep(5000);
    saved = has(".state");
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(saved) << slurp(log);
  ASSERT_FALSE(has(".json")) << "the kill came after the phase: the test did not exercise the "
                                "supernet's own resume\n"
                             << slurp(log);

  const auto resumed = test::run_hwnas("search " + killed_cfg.string() + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("spos: supernet resumed from"), std::string::npos)
      << resumed.output;
  // It trained only the epochs the kill cost, not epoch 1 again.
  EXPECT_EQ(resumed.output.find("spos: supernet epoch 1/8"), std::string::npos) << resumed.output;
  EXPECT_NE(resumed.output.find("spos: supernet epoch 8/8"), std::string::npos) << resumed.output;

  const Stored a = stored(dir / "whole.db"), b = stored(dir / "killed.db");
  ASSERT_EQ(a.archs.size(), 2u);
  EXPECT_EQ(a.archs, b.archs);
  EXPECT_EQ(a.accuracy, b.accuracy);
  EXPECT_FALSE(fs::exists(dir / "killed.db.checkpoints" / "run-1"));
  fs::remove_all(dir);
}
