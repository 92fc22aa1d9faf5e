// Every trainable task behind one registry (common/registry.hpp): a task declares its
// parameters once (ParamSpecs), the input types it can feed, its output head and the number of
// outputs, and a generator that is a pure function of (params, input type, seed, split sizes).
// Train and validation come from the same generator (disjoint seeds); nothing is downloaded and
// no test split is ever used for selection (Fashion-MNIST's test files are never opened here).
//
// The built-in tasks, one file each in evaluators/tasks/:
//   fashion_mnist, fashion_mnist_rows             images / rows of images (Debian's dataset)
//   associative_recall, marked_majority           sequence classification
//   mqar, selective_copying                       per-token classification (token_classes)
//   irregular_oscillation                         irregularly sampled time-series classification
//   spiral, damped_oscillator, symbolic           regression
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/registry.hpp"
#include "evaluators/datasets.hpp"
#include "evaluators/task_head.hpp"
#include "spaces/genome.hpp"

namespace hwnas::eval {

// How many samples to make.  train 0 means the task's default_train.
struct SplitSizes {
  int train = 0;
  int val = 5000;
};

struct TaskEntry {
  std::string name;
  std::string description;
  std::vector<ParamSpec> params;  // the task's own parameters (split sizes are common)
  HeadKind head = HeadKind::Classes;
  int default_train = 10000;  // training samples when SplitSizes::train is 0
  int max_samples = 1000000;  // largest train + val the task can make (60000 for Fashion-MNIST)
  // The input types the task can feed for resolved params; the first is its natural one.
  std::function<std::vector<spaces::TensorType>(const nlohmann::json& params)> inputs;
  // Classes (classes / token_classes heads) or regression dimensions for resolved params.
  std::function<int(const nlohmann::json& params)> outputs;
  // Makes the data for resolved params, shaped for `input` (one of inputs(params)).  Throws
  // std::invalid_argument naming the parameter when params are inconsistent with each other.
  std::function<TrainValSplit(const nlohmann::json& params, const spaces::TensorType& input,
                              std::uint64_t seed, const SplitSizes& sizes)>
      generate;

  std::string primary_metric() const { return head_primary_metric(head); }
  bool primary_maximize() const { return head_primary_maximize(head); }
};

// The registry, filled by register_builtin_tasks() on first use.
const Registry<TaskEntry>& task_registry();
void register_builtin_tasks(Registry<TaskEntry>& r);

// A task chosen and parameterised by a config's task section.
struct TaskSpec {
  const TaskEntry* entry = nullptr;
  nlohmann::json params;  // the task's own parameters, validated and with defaults filled in
  const std::string& name() const { return entry->name; }
  std::vector<spaces::TensorType> inputs() const { return entry->inputs(params); }
  int outputs() const { return entry->outputs(params); }
};

// The split-size keys every task section accepts besides the task's own parameters.
const std::vector<std::string>& task_common_keys();  // name, dataset, train_subset, val_size

// {"name" | "dataset": task, params...}: looks the task up and validates its parameters
// (unknown ones, ranges), ignoring task_common_keys().  `where` prefixes messages ("config.task").
// Throws std::invalid_argument.
TaskSpec resolve_task_section(const nlohmann::json& section, const std::string& where = "task");
TaskSpec resolve_task(const std::string& name, const nlohmann::json& params = nullptr,
                      const std::string& where = "task");

// Throws std::invalid_argument naming both sides if the task cannot feed `input` or its output
// count differs from `outputs`; `output_type` (when not empty) is a sample architecture's output
// type and must be a vector for classes/regression or a sequence of matching length for
// token_classes heads.
void check_task_fits(const TaskSpec& task, const spaces::TensorType& input, int outputs,
                     const spaces::TensorType* output_type = nullptr);

// Generates the task's data for `input`.
TrainValSplit make_task_data(const TaskSpec& task, const spaces::TensorType& input,
                             std::uint64_t seed, const SplitSizes& sizes);

// Text for `hwnas tasks`: each task with its description, inputs, head, primary metric and
// parameter table.
std::string describe_tasks();

}  // namespace hwnas::eval
