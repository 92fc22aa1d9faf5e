#include "search/evaluator_factory.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "evaluators/synthetic.hpp"
#include "evaluators/tabular.hpp"
#include "evaluators/task_registry.hpp"
#include "evaluators/train_evaluator.hpp"

namespace hwnas::search {
namespace fs = std::filesystem;
namespace {

std::string resolve_path(const std::string& base_dir, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return fs::absolute(fs::path(base_dir) / p).lexically_normal().string();
}

EvaluatorEntry train_entry() {
  EvaluatorEntry e;
  e.name = "train";
  e.description = "really train each candidate on the task and score it on validation data";
  e.params = {ParamSpec::int_range("epochs", 1, 1000, 1, "training epochs per candidate"),
              ParamSpec::int_range("batch_size", 1, 4096, 64, "minibatch size"),
              ParamSpec::choice("optimizer", {"adamw", "sgd"}, "adamw", "optimizer"),
              ParamSpec::float_range("lr", 1e-7, 10, 3e-3, "peak learning rate (cosine schedule)"),
              ParamSpec::float_range("weight_decay", 0, 1, 1e-4, "decoupled weight decay"),
              ParamSpec::float_range("momentum", 0, 0.999, 0.9, "SGD momentum"),
              ParamSpec::float_range("max_seconds", 0, 1e6, 0,
                                     "wall-clock training budget per candidate (0 = epochs only)"),
              ParamSpec::int_range("host_latency_reps", 0, 10000, 10,
                                   "timed batch-1 forward passes for the host latency (median); 0 "
                                   "disables"),
              ParamSpec::int_range(
                  "memory_limit_mb", -1, 1 << 30, 0,
                  "a candidate whose estimated training memory (weights, gradients, optimizer "
                  "state, activations x batch_size) exceeds this many MB fails with the reason "
                  "instead of being trained (0 = half the physical memory / the candidates "
                  "training at once on this machine, which depends on the machine: give a "
                  "number for runs that must repeat elsewhere; -1 = no limit)")};
  e.configure = [](SearchConfig& c, const std::string&) {
    const auto& p = c.evaluator_params;
    c.epochs = p["epochs"];
    c.batch_size = p["batch_size"];
    c.optimizer = p["optimizer"];
    c.lr = p["lr"];
    c.weight_decay = p["weight_decay"];
    c.momentum = p["momentum"];
    c.candidate_seconds = p["max_seconds"];
    c.host_latency_reps = p["host_latency_reps"];
    if (c.dataset == "tabular" || c.dataset == "synthetic")
      throw ConfigError("config.evaluator.type: 'train' does not match task.dataset '" + c.dataset +
                        "' (use both '" + c.dataset + "' or a dataset with evaluator 'train')");
  };
  e.metric_names = [](const SearchConfig& c) {
    return eval::TrainEvaluator::metric_names(
        eval::resolve_task(c.dataset, c.task_params).entry->head);
  };
  e.make = [](const SearchConfig& c) -> EvaluatorFactory {
    eval::TaskSpec task = eval::resolve_task(c.dataset, c.task_params);
    eval::SplitSizes sizes{c.train_subset, c.val_size};
    auto data = std::make_shared<const eval::TrainValSplit>(
        eval::make_task_data(task, spaces::make_space(c.space)->input_type(), c.seed, sizes));
    eval::TrainEvaluatorOptions opt;
    opt.train.head = task.entry->head;
    opt.train.monitor_primary = true;  // early stopping, when used, watches the task's metric
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
    opt.host_latency_batches = c.host_latency_batches;
    const int limit_mb = c.evaluator_params.value("memory_limit_mb", 0);
    // Candidates training at once on this machine: the local workers, or under mpirun the
    // ranks of this node (each trains one).
    int sharing = c.workers;
    if (const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE"))
      sharing = std::max(1, std::atoi(local));
    opt.memory_limit_bytes = limit_mb > 0    ? limit_mb * 1e6
                             : limit_mb == 0 ? eval::default_memory_limit_bytes(sharing)
                                             : 0;  // -1: no limit
    return [data, opt] { return std::make_unique<eval::TrainEvaluator>(data, opt); };
  };
  return e;
}

EvaluatorEntry tabular_entry() {
  EvaluatorEntry e;
  e.name = "tabular";
  e.description = "look each candidate's metrics up in a CSV of trained architectures";
  e.params = {
      ParamSpec::int_range("epochs", 1, 1000, 1,
                           "fidelity epochs; \"{epochs}\" in a metric column name becomes this"),
      ParamSpec::string("csv", "", "CSV file (relative to the config file); required"),
      ParamSpec::string("key_column", "arch", "architecture column"),
      ParamSpec::any_json(
          "metrics", nlohmann::json{{"val_accuracy", "val_accuracy"}},
          "reported metric -> CSV column; \"{epochs}\" in a column name becomes "
          "the fidelity's epochs (e.g. {\"val_accuracy\": \"valid_acc_{epochs}\"})")};
  e.configure = [](SearchConfig& c, const std::string& base_dir) {
    auto& p = c.evaluator_params;
    c.epochs = p["epochs"];
    c.tabular_key = p["key_column"];
    c.tabular_metrics = p["metrics"];
    if (!c.tabular_metrics.is_object() || c.tabular_metrics.empty())
      throw ConfigError(
          "config.evaluator.metrics: must be a non-empty object of metric -> CSV "
          "column, got " +
          c.tabular_metrics.dump());
    for (const auto& [k, v] : c.tabular_metrics.items())
      if (!v.is_string())
        throw ConfigError("config.evaluator.metrics." + k + ": must be a CSV column name, got " +
                          v.dump());
    if (p["csv"].get<std::string>().empty())
      throw ConfigError("config.evaluator.csv: required when evaluator.type is 'tabular'");
    c.tabular_csv = resolve_path(base_dir, p["csv"]);
    if (!fs::exists(c.tabular_csv))
      throw ConfigError("config.evaluator.csv: file '" + c.tabular_csv + "' does not exist");
    p["csv"] = c.tabular_csv;
    if (c.dataset != "tabular")
      throw ConfigError("config.evaluator.type: 'tabular' does not match task.dataset '" +
                        c.dataset + "' (use both 'tabular' or a dataset with evaluator 'train')");
  };
  e.metric_names = [](const SearchConfig& c) {
    std::vector<std::string> m;
    for (const auto& [k, v] : c.tabular_metrics.items()) m.push_back(k);
    return m;
  };
  e.make = [](const SearchConfig& c) -> EvaluatorFactory {
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
  };
  return e;
}

EvaluatorEntry synthetic_entry() {
  EvaluatorEntry e;
  e.name = "synthetic";
  e.description =
      "train nothing: sleep a seeded duration and return made-up metrics that depend on the "
      "architecture only (tests a cluster setup and the search machinery)";
  e.params = {ParamSpec::float_range("seconds", 0, 86400, 1.0, "mean duration of one evaluation"),
              ParamSpec::float_range("spread", 0, 1, 0.0,
                                     "relative half-width of the uniform duration jitter (seeded)"),
              ParamSpec::int_range("epochs", 1, 1000, 1, "fidelity epochs (recorded, not used)")};
  e.configure = [](SearchConfig& c, const std::string&) {
    c.epochs = c.evaluator_params["epochs"];
    if (c.dataset != "synthetic")
      throw ConfigError("config.evaluator.type: 'synthetic' needs task.name 'synthetic', got '" +
                        c.dataset + "'");
  };
  e.metric_names = [](const SearchConfig&) {
    return std::vector<std::string>{"val_accuracy", "params"};
  };
  e.make = [](const SearchConfig& c) -> EvaluatorFactory {
    eval::SyntheticOptions o;
    o.seconds = c.evaluator_params["seconds"];
    o.spread = c.evaluator_params["spread"];
    return [o] { return std::make_unique<eval::SyntheticEvaluator>(o); };
  };
  return e;
}

}  // namespace

void register_builtin_evaluators(Registry<EvaluatorEntry>& r) {
  r.add(train_entry());
  r.add(tabular_entry());
  r.add(synthetic_entry());
}

const Registry<EvaluatorEntry>& evaluator_registry() {
  static const Registry<EvaluatorEntry> r = [] {
    Registry<EvaluatorEntry> reg("evaluator");
    register_builtin_evaluators(reg);
    return reg;
  }();
  return r;
}

EvaluatorFactory make_evaluator_factory(const SearchConfig& c) {
  return evaluator_registry().at(c.evaluator).make(c);
}

}  // namespace hwnas::search
