#include "evaluators/task_registry.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval {

void register_builtin_tasks(Registry<TaskEntry>& r) {
  tasks::register_task_fashion_mnist(r);
  tasks::register_task_fashion_mnist_rows(r);
  tasks::register_task_associative_recall(r);
  tasks::register_task_marked_majority(r);
  tasks::register_task_mqar(r);
  tasks::register_task_selective_copying(r);
  tasks::register_task_irregular_oscillation(r);
  tasks::register_task_spiral(r);
  tasks::register_task_damped_oscillator(r);
  tasks::register_task_symbolic(r);
}

const Registry<TaskEntry>& task_registry() {
  static const Registry<TaskEntry> r = [] {
    Registry<TaskEntry> reg("task");
    register_builtin_tasks(reg);
    return reg;
  }();
  return r;
}

const std::vector<std::string>& task_common_keys() {
  static const std::vector<std::string> keys = {"name", "dataset", "train_subset", "val_size"};
  return keys;
}

TaskSpec resolve_task(const std::string& name, const nlohmann::json& params,
                      const std::string& where) {
  TaskSpec t;
  try {
    t.entry = &task_registry().at(name);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(where + ": " + e.what());
  }
  t.params = resolve_params(t.entry->params, params, where, task_common_keys());
  for (const auto& k : task_common_keys()) t.params.erase(k);
  return t;
}

TaskSpec resolve_task_section(const nlohmann::json& section, const std::string& where) {
  if (!section.is_object())
    throw std::invalid_argument(where + ": must be an object with \"name\", got " + section.dump());
  if (section.contains("name") && section.contains("dataset") &&
      section["name"] != section["dataset"])
    throw std::invalid_argument(where + ": \"name\" " + section["name"].dump() +
                                " and \"dataset\" " + section["dataset"].dump() +
                                " disagree; give one of them");
  const char* key = section.contains("name") ? "name" : "dataset";
  if (!section.contains(key) || !section[key].is_string())
    throw std::invalid_argument(where + ".name: missing or not a string (known tasks: " +
                                task_registry().known_list() + ")");
  return resolve_task(section[key].get<std::string>(), section, where);
}

void check_task_fits(const TaskSpec& task, const spaces::TensorType& input, int outputs,
                     const spaces::TensorType* output_type) {
  const auto inputs = task.inputs();
  std::string allowed;
  for (const auto& t : inputs) allowed += (allowed.empty() ? "" : " or ") + t.str();
  const int want = task.outputs();
  const bool input_ok = std::find(inputs.begin(), inputs.end(), input) != inputs.end();
  if (!input_ok || outputs != want)
    throw std::invalid_argument("space input " + input.str() + " with " + std::to_string(outputs) +
                                " outputs does not fit task '" + task.name() + "' (needs " +
                                allowed + " with " + std::to_string(want) + " outputs, head " +
                                head_kind_name(task.entry->head) + ")");
  if (!output_type) return;
  const bool per_token = task.entry->head == HeadKind::TokenClasses;
  bool ok = output_type->dims.back() == want;
  if (per_token)
    ok = ok && output_type->kind == spaces::DataKind::Sequence &&
         output_type->dims.front() == input.dims.front();
  else
    ok = ok && output_type->kind == spaces::DataKind::Vector;
  if (!ok)
    throw std::invalid_argument(
        "space output " + output_type->str() + " does not fit task '" + task.name() + "' (head " +
        head_kind_name(task.entry->head) + " needs " +
        (per_token ? "one output per token: sequence[" + std::to_string(input.dims.front()) + "," +
                         std::to_string(want) + "]; do not pool the sequence"
                   : "vector[" + std::to_string(want) + "]; pool sequences before the head") +
        ")");
}

TrainValSplit make_task_data(const TaskSpec& task, const spaces::TensorType& input,
                             std::uint64_t seed, const SplitSizes& sizes) {
  const auto inputs = task.inputs();
  if (std::find(inputs.begin(), inputs.end(), input) == inputs.end()) {
    std::string allowed;
    for (const auto& t : inputs) allowed += (allowed.empty() ? "" : " or ") + t.str();
    throw std::invalid_argument("task '" + task.name() + "' cannot feed input " + input.str() +
                                " (it feeds " + allowed + ")");
  }
  if (sizes.train < 0 || sizes.val <= 0 || sizes.train + sizes.val > task.entry->max_samples)
    throw std::invalid_argument(
        "task '" + task.name() + "': train_subset " + std::to_string(sizes.train) +
        " and val_size " + std::to_string(sizes.val) + " must be >= 0, > 0 and sum to at most " +
        std::to_string(task.entry->max_samples));
  return task.entry->generate(task.params, input, seed, sizes);
}

std::string describe_tasks() {
  std::ostringstream os;
  for (const auto& [name, e] : task_registry().entries()) {
    const nlohmann::json defaults = resolve_params(e.params, nullptr, name);
    std::string inputs;
    for (const auto& t : e.inputs(defaults)) inputs += (inputs.empty() ? "" : " | ") + t.str();
    os << name << ": " << e.description << "\n"
       << "  input " << inputs << "; head " << head_kind_name(e.head) << " (" << e.outputs(defaults)
       << " outputs); primary metric val_" << e.primary_metric()
       << (e.primary_maximize() ? " (max)" : " (min)") << "; "
       << (e.default_train > 0 ? std::to_string(e.default_train)
                               : std::string("all non-validation"))
       << " training samples by default\n";
    if (!e.params.empty()) os << describe_params(e.params, "task.");
    os << "\n";
  }
  os << "Every task also takes task.train_subset (training samples, 0 = the task's default) and "
        "task.val_size (validation samples, drawn from training data).\n";
  return os.str();
}

namespace tasks {

void require_param(bool ok, const std::string& task, const std::string& field,
                   const std::string& why) {
  if (!ok) throw std::invalid_argument("task " + task + "." + field + ": " + why);
}

TrainValSplit generated_split(const SplitSizes& sizes, int default_train, std::uint64_t seed,
                              const std::function<Dataset(int n, std::uint64_t seed)>& make) {
  TrainValSplit s;
  s.train = make(sizes.train > 0 ? sizes.train : default_train, seed * 2 + 1);
  s.val = make(sizes.val, seed * 2 + 2);
  return s;
}

TrainValSplit reshape_inputs(TrainValSplit s, const TensorType& input) {
  for (Dataset* d : {&s.train, &s.val}) {
    std::vector<int> dims = input.dims;
    if (d->sample_numel() != input.numel())
      throw std::logic_error("reshape_inputs: sample " + d->x.shape().str() + " cannot become " +
                             input.str());
    dims.insert(dims.begin(), d->x.dim(0));
    d->x = d->x.reshaped(nn::Shape(dims));
  }
  return s;
}

Dataset alloc_dataset(int n, const std::vector<int>& x_dims, const std::vector<int>& t_dims,
                      float fill) {
  Dataset d;
  std::vector<int> xd = x_dims;
  xd.insert(xd.begin(), n);
  d.x = nn::Tensor::zeros(nn::Shape(xd));
  if (!t_dims.empty()) {
    std::vector<int> td = t_dims;
    td.insert(td.begin(), n);
    d.target = nn::Tensor(nn::Shape(td), fill);
  }
  return d;
}

}  // namespace tasks
}  // namespace hwnas::eval
