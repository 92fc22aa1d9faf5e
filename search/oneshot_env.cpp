#include "search/oneshot_env.hpp"

#include "evaluators/task_registry.hpp"
#include "oneshot/environment.hpp"
#include "spaces/space.hpp"

namespace hwnas::search {

std::shared_ptr<const strategies::OneShotEnvironment> make_oneshot_environment(
    const SearchConfig& c, std::ostream& progress, oneshot::DataShard shard) {
  oneshot::TaskResources r;
  r.shard = std::move(shard);
  r.devices = c.devices;
  r.device_batches = c.device_batches;
  r.log = &progress;
  if (c.evaluator != "train") {
    r.unavailable = "evaluator '" + c.evaluator +
                    "' has no training data; one-shot strategies need evaluator 'train' and a "
                    "task with data (config.evaluator.type)";
    return oneshot::make_task_environment(std::move(r));
  }
  const eval::TaskSpec task = eval::resolve_task(c.dataset, c.task_params);
  // The train evaluator's settings (search/evaluator_factory.cpp).
  r.train.head = task.entry->head;
  r.train.optimizer = c.optimizer;
  r.train.lr = static_cast<float>(c.lr);
  r.train.weight_decay = static_cast<float>(c.weight_decay);
  r.train.momentum = static_cast<float>(c.momentum);
  r.train.batch_size = c.batch_size;
  r.train.clip_grad_norm = 5.0f;
  r.data = [task, space = c.space, seed = c.seed,
            sizes = eval::SplitSizes{c.train_subset, c.val_size}] {
    return eval::make_task_data(task, spaces::make_space(space)->input_type(), seed, sizes);
  };
  return oneshot::make_task_environment(std::move(r));
}

}  // namespace hwnas::search
