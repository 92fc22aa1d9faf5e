// The search configuration: one JSON file, validated completely before anything is stored.
//
// Every scalar parameter is declared once in config.cpp's parameter table (path, type, default,
// range, description); parsing, validation and `hwnas config params` are generated from it.
// Errors throw ConfigError whose message names the field path and what is allowed, e.g.
// "config.budget.evaluations: -3 out of range [1, 1000000]".
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "search/objectives.hpp"

namespace hwnas::search {

struct ConfigError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct SearchConfig {
  std::string name;
  std::uint64_t seed = 0;
  std::string config_path;  // empty when parsed from a string
  nlohmann::json space;     // resolved space definition (inline or loaded from "space" path)

  // task
  std::string dataset;  // the task name (task.name or task.dataset), or "tabular"
  nlohmann::json task_params = nlohmann::json::object();  // the task's own parameters, resolved
  int train_subset = 0;  // training samples used (0 = the task's default)
  int val_size = 0;

  // evaluator
  std::string evaluator;            // "train" | "tabular" (search/evaluator_factory.hpp's registry)
  nlohmann::json evaluator_params;  // the resolved evaluator object, "type" included
  int epochs = 1;
  int batch_size = 64;
  std::string optimizer;
  double lr = 0, weight_decay = 0, momentum = 0;
  double candidate_seconds = 0;  // per-candidate training budget, 0 = none
  int host_latency_reps = 0;     // 0 disables host latency measurement
  std::string tabular_csv;       // resolved path
  std::string tabular_key;
  nlohmann::json tabular_metrics;  // reported metric -> CSV column template

  // search
  nlohmann::json strategy;
  int budget_evaluations = 0;
  double budget_seconds = 0;
  std::vector<std::string> devices;
  std::vector<int> device_batches;        // per device: its "batch" entry, 0 = the device's own
  std::vector<int> host_latency_batches;  // batches (> 1) of host devices: the evaluator times them
  std::vector<ObjectiveSpec> pareto_objectives;  // at least one; the first is a model metric
  std::vector<ConstraintSpec> constraints;
  // Hypervolume reference point, one value per objective; empty = each front's nadir (the worst
  // value of every objective over the run's eligible evaluations), fixed at the end of the run.
  std::vector<double> hypervolume_reference;
  int hypervolume_every = 0;  // evaluations between hypervolume history points (0 = budget/50)
  double fitness_latency_weight =
      0;  // fitness = first objective - w * log(latency on fitness_device)
  std::string fitness_device;
  int workers = 0;  // concurrent local evaluations (0 = one per core)
  int threads = 0;  // oneTBB pool size (0 = all cores)
  // A worker that has not answered its candidate after this many seconds is given up and the
  // candidate goes to another worker (search/executor.hpp); 0 = wait forever.
  double worker_timeout_seconds = 0;
  bool deterministic = true;
  std::string db_path;

  // One front per configured device when no objective names a device (the cost objectives are
  // read on each device in turn); otherwise one "joint" front over the objectives as written.
  bool per_device_fronts() const;
  // The device a cost objective or constraint without @DEVICE reads outside per-device fronts:
  // the first configured device ("" when there is none).
  std::string default_device;

  nlohmann::json resolved;  // the full validated config with defaults filled in (stored in runs)
};

// Loads and validates a config file; relative paths inside it resolve against its folder.
SearchConfig load_config(const std::string& path);
SearchConfig parse_config(const nlohmann::json& j, const std::string& base_dir);
// A table of every declared parameter: path, type, default, range, description.
std::string describe_parameters();
// The part of describe_parameters() that comes from the task and evaluator registries.
std::string describe_task_and_evaluator_parameters();

}  // namespace hwnas::search
