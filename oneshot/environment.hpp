// The one-shot environment of a training search (strategies/oneshot.hpp): the run's task data,
// trainer settings and devices, lent to one-shot strategies for their supernet phase.  search/
// fills TaskResources from the config; nothing here knows the config, SQLite or MPI.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "evaluators/datasets.hpp"
#include "evaluators/trainer.hpp"
#include "oneshot/data_shard.hpp"
#include "strategies/oneshot.hpp"

namespace hwnas::oneshot {

struct TaskResources {
  // The candidates' own train/validation split (never the test split), made on first use.
  std::function<eval::TrainValSplit()> data;
  // The evaluator's trainer settings: head, optimizer, lr, weight decay, momentum, batch size.
  eval::TrainConfig train;
  // The run's devices (preset names or paths) and their batch (0 = the device's own).
  std::vector<std::string> devices;
  std::vector<int> device_batches;
  // Non-empty: why no supernet can be trained in this run (e.g. a tabular evaluator).
  std::string unavailable;
  std::ostream* log = nullptr;  // progress lines, may be null
  // Data-parallel phase (oneshot/data_shard.hpp): every rank calls run_supernet with the same
  // request; only rank 0's outcome carries candidates.  Default: one process.
  DataShard shard;
};

std::shared_ptr<const strategies::OneShotEnvironment> make_task_environment(TaskResources r);

}  // namespace hwnas::oneshot
