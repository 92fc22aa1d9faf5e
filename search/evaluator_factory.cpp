#include "search/evaluator_factory.hpp"

#include "evaluators/tabular.hpp"
#include "evaluators/train_evaluator.hpp"
#include "search/task_data.hpp"

namespace hwnas::search {

EvaluatorFactory make_evaluator_factory(const SearchConfig& c) {
  if (c.evaluator == "tabular") {
    std::shared_ptr<const spaces::Space> space = spaces::make_space(c.space);
    eval::TabularConfig tc;
    tc.file = c.tabular_csv;
    tc.key_column = c.tabular_key;
    for (const auto& [k, v] : c.tabular_metrics.items()) tc.metrics[k] = v.get<std::string>();
    // The table is parsed once; evaluators are read-only views of it.
    auto shared = std::make_shared<eval::TabularEvaluator>(space, tc);
    struct View final : eval::Evaluator {
      std::shared_ptr<eval::TabularEvaluator> table;
      std::string name() const override { return table->name(); }
      eval::EvalResult evaluate(const spaces::Genome& g, const eval::Fidelity& f,
                                std::uint64_t s) override {
        return table->evaluate(g, f, s);
      }
    };
    return [shared] {
      auto v = std::make_unique<View>();
      v->table = shared;
      return v;
    };
  }
  auto data = std::make_shared<const eval::TrainValSplit>(load_task(
      c.dataset, spaces::make_space(c.space)->input_type(), c.val_size, c.train_subset, c.seed));
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
