#include "search/evaluator_factory.hpp"

#include "evaluators/tabular.hpp"
#include "evaluators/train_evaluator.hpp"

namespace hwnas::search {

EvaluatorFactory make_evaluator_factory(const SearchConfig& c) {
  if (c.evaluator == "tabular") {
    auto space = std::shared_ptr<spaces::Space>(spaces::make_space(c.space));
    eval::TabularOptions opt;
    opt.csv_path = c.tabular_csv;
    opt.key_column = c.tabular_key;
    opt.metric_columns = {{"val_accuracy", c.tabular_metric}};
    auto table = std::make_shared<const eval::TabularTable>(eval::TabularTable::load(opt));
    return [space, table] { return std::make_unique<eval::TabularEvaluator>(table, space); };
  }
  auto data = std::make_shared<const eval::TrainValSplit>(
      eval::load_fashion_mnist_train_val(c.val_size, c.seed, c.train_subset));
  eval::TrainEvaluatorOptions opt;
  opt.train.optimizer = c.optimizer;
  opt.train.lr = static_cast<float>(c.lr);
  opt.train.weight_decay = static_cast<float>(c.weight_decay);
  opt.train.momentum = static_cast<float>(c.momentum);
  opt.train.batch_size = c.batch_size;
  opt.train.epochs = c.epochs;
  opt.train.warmup_epochs = c.epochs > 1 ? 0.2f : 0.05f;
  opt.train.clip_grad_norm = 5.0f;
  opt.train.log_every_steps = 20;
  opt.host_latency_reps = c.host_latency_reps;
  return [data, opt] { return std::make_unique<eval::TrainEvaluator>(data, opt); };
}

}  // namespace hwnas::search
