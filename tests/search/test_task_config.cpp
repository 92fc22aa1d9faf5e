// The config's task and evaluator sections go through their registries: task.name (or the older
// task.dataset) with the task's own parameters, the space checked against the task's input and
// head, objectives against the task's metrics; `hwnas tasks` and `hwnas config params`.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "search/config.hpp"
#include "search/evaluator_factory.hpp"
#include "spaces/space.hpp"

using namespace hwnas;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kBinary = std::string(HWNAS_BINARY_DIR) + "/hwnas";

json vector_space(int in, int outputs) {
  return {
      {"type", "macro"},
      {"input", {{"kind", "vector"}, {"shape", {in}}}},
      {"outputs", outputs},
      {"stages", {{{"blocks", {"dense"}}, {"depth", {1, 2}}, {"params", {{"units", {16, 32}}}}}}}};
}

json symbolic_config() {
  return {{"name", "sym"},
          {"seed", 3},
          {"space", vector_space(2, 1)},
          {"task", {{"name", "symbolic"}, {"train_subset", 600}, {"val_size", 200}}},
          {"evaluator",
           {{"type", "train"}, {"epochs", 3}, {"batch_size", 32}, {"host_latency_reps", 0}}},
          {"strategy", {{"type", "random"}}},
          {"budget", {{"evaluations", 2}}},
          {"devices", {"h100_sxm"}},
          {"objectives", {"val_rmse:min", "latency_ms:min"}}};
}

std::string config_error(const json& j) {
  try {
    (void)search::parse_config(j, "");
  } catch (const search::ConfigError& e) {
    return e.what();
  }
  return "no error";
}

struct CommandResult {
  int exit_code;
  std::string output;
};
CommandResult run_command(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace

TEST(TaskConfig, RegressionTaskWithItsParametersAndMetrics) {
  json j = symbolic_config();
  j["task"]["function"] = "sin_cos";
  search::SearchConfig c = search::parse_config(j, "");
  EXPECT_EQ(c.dataset, "symbolic");
  EXPECT_EQ(c.task_params["function"], "sin_cos");
  EXPECT_EQ(c.task_params["noise"], 0.0);
  EXPECT_EQ(c.resolved["task"]["name"], "symbolic");
  EXPECT_EQ(c.resolved["task"]["function"], "sin_cos");
  EXPECT_EQ(c.resolved["evaluator"]["lr"], 3e-3);  // defaults come from the registry
  EXPECT_EQ(c.epochs, 3);

  // One real evaluation through the factory: the metrics are the regression ones.
  auto make = search::make_evaluator_factory(c);
  auto ev = make();
  auto space = spaces::make_space(c.space);
  spaces::Rng rng(1);
  eval::Fidelity f;
  f.epochs = 2;
  eval::EvalResult r = ev->evaluate(space->sample(rng), f, 4);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.metrics.count("val_rmse"));
  EXPECT_GT(r.metrics["val_rmse"], 0.0);
}

TEST(TaskConfig, OlderDatasetSpellingStillWorks) {
  json j = symbolic_config();
  j["task"] = {{"dataset", "marked_majority"}, {"val_size", 200}};
  j["space"] = {{"type", "macro"},
                {"input", {{"kind", "sequence"}, {"shape", {64, 16}}}},
                {"outputs", 2},
                {"stages", {{{"blocks", {"dense"}}, {"params", {{"units", {8}}}}}}}};
  j["objectives"] = {"val_accuracy:max", "latency_ms:min"};
  search::SearchConfig c = search::parse_config(j, "");
  EXPECT_EQ(c.dataset, "marked_majority");
  EXPECT_EQ(c.task_params["seq_len"], 64);
}

TEST(TaskConfig, ErrorsNameTheField) {
  struct Case {
    std::function<void(json&)> edit;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j["task"]["name"] = "telepathy"; },
       "config.task.name: unknown task 'telepathy' (known: associative_recall, "},
      {[](json& j) {
         j["task"] = {{"dataset", "telepathy"}};
       },
       "config.task.dataset: unknown task 'telepathy'"},
      {[](json& j) { j["task"]["function"] = "tan"; }, "config.task.function: \"tan\" not in {"},
      {[](json& j) { j["task"]["seq_len"] = 5; },
       "config.task.seq_len: unknown parameter (known: function, noise)"},
      {[](json& j) { j["task"]["dataset"] = "spiral"; },
       "config.task.name: 'symbolic' and task.dataset 'spiral' disagree"},
      {[](json& j) {
         j["objectives"] = {"val_accuracy:max", "latency_ms:min"};
       },
       "config.objectives[0]: unknown metric 'val_accuracy' for evaluator 'train'; one of: "
       "latency_ms, energy_mj, memory_bytes, val_rmse, val_loss"},
      {[](json& j) { j["space"] = vector_space(2, 3); },
       "config.space: space input vector[2] with 3 outputs does not fit task 'symbolic' (needs "
       "vector[2] with 1 outputs, head regression)"},
      {[](json& j) {
         j["task"] = {{"name", "mqar"}};
         j["space"] = {{"type", "macro"},
                       {"input", {{"kind", "sequence"}, {"shape", {64, 64}}}},
                       {"outputs", 64},
                       {"stages", {{{"blocks", {"dense"}}, {"params", {{"units", {8}}}}}}}};
       },
       "config.space: space output vector[64] does not fit task 'mqar' (head token_classes needs "
       "one output per token"},
      {[](json& j) {
         j["task"] = {{"name", "fashion_mnist"}, {"val_size", 60000}};
         j["space"] = {{"type", "macro"},
                       {"input", {{"kind", "image"}, {"shape", {1, 28, 28}}}},
                       {"outputs", 10},
                       {"stages", {{{"blocks", {"dense"}}, {"params", {{"units", {8}}}}}}}};
       },
       "config.task.val_size: 60000 leaves no training samples of task 'fashion_mnist' (at most "
       "60000 in all)"},
      {[](json& j) { j["evaluator"]["epochz"] = 2; },
       "config.evaluator.epochz: unknown field for evaluator 'train'; known fields: "
       "evaluator.type, evaluator.epochs"},
      {[](json& j) { j["evaluator"]["type"] = "magic"; },
       "config.evaluator.type: 'magic' is not one of: synthetic, tabular, train"},
      {[](json& j) { j["evaluator"]["lr"] = 20; },
       "config.evaluator.lr: 20 out of range [1e-07, 10]"},
      {[](json& j) { j["evaluator"]["type"] = "tabular"; },
       "config.evaluator.batch_size: unknown field for evaluator 'tabular'"},
  };
  for (const auto& c : cases) {
    json j = symbolic_config();
    c.edit(j);
    const std::string msg = config_error(j);
    EXPECT_EQ(msg.rfind(c.expected, 0), 0u) << "got:      " << msg << "\nexpected: " << c.expected;
  }
}

TEST(TaskConfig, HwnasTasksListsTasksWithParameters) {
  auto r = run_command(kBinary + " tasks");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* frag :
       {"mqar: multi-query associative recall", "task.num_kv_pairs", "task.vocab_size",
        "selective_copying:", "symbolic:", "task.function", "head regression", "head token_classes",
        "spiral:", "damped_oscillator:", "irregular_oscillation:", "fashion_mnist_rows:"})
    EXPECT_NE(r.output.find(frag), std::string::npos) << frag << "\n" << r.output;
  auto j = run_command(kBinary + " tasks --json");
  ASSERT_EQ(j.exit_code, 0) << j.output;
  json list = json::parse(j.output);
  ASSERT_EQ(list.size(), 10u);
  bool saw_mqar = false;
  for (const auto& t : list)
    if (t["name"] == "mqar") {
      saw_mqar = true;
      EXPECT_EQ(t["head"], "token_classes");
      EXPECT_EQ(t["primary_metric"], "val_token_accuracy");
      EXPECT_EQ(t["inputs"][0]["shape"], json({64, 64}));
    }
  EXPECT_TRUE(saw_mqar);
}

TEST(TaskConfig, ConfigParamsDocumentsTaskAndEvaluatorParameters) {
  auto r = run_command(kBinary + " config params");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* frag : {"task.name", "evaluator.type = train", "evaluator.type = tabular",
                           "evaluator.host_latency_reps", "evaluator.csv", "task.name = mqar",
                           "task.num_kv_pairs", "task.name = symbolic"})
    EXPECT_NE(r.output.find(frag), std::string::npos) << frag;
}

TEST(TaskConfig, CliSearchOnARegressionTask) {
  fs::path dir = fs::temp_directory_path() / ("hwnas_test_tasks_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  json j = symbolic_config();
  j["db"] = (dir / "sym.db").string();
  std::ofstream(dir / "sym.json") << j.dump();
  auto r = run_command(kBinary + " search " + (dir / "sym.json").string());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir / "sym.db"));
  fs::remove_all(dir);
}
