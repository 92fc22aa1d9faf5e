#include "search/config.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <set>
#include <sstream>

#include "evaluators/train_evaluator.hpp"
#include "hwmodels/device.hpp"
#include "search/task_data.hpp"
#include "spaces/space.hpp"
#include "strategies/registry.hpp"

namespace hwnas::search {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

enum class Type { Int, Number, Bool, String, Choice, StringList, Object, PathOrObject };

// The single declaration of every configuration parameter.
struct Param {
  const char* path;  // dotted, e.g. "budget.evaluations"
  Type type;
  json fallback;  // null: required
  double lo = 0, hi = 0;
  std::vector<std::string> choices = {};
  const char* description = "";
};

const std::vector<Param>& parameter_table() {
  static const std::vector<Param> table = {
      {"name", Type::String, "search", 0, 0, {}, "run name stored in the database"},
      {"seed", Type::Int, 0, 0, 4294967295.0, {}, "seed of every random choice in the search"},
      {"space",
       Type::PathOrObject,
       nullptr,
       0,
       0,
       {},
       "search space: path to a space JSON (relative to this file) or an inline definition"},
      {"task.dataset",
       Type::Choice,
       "fashion_mnist",
       0,
       0,
       {"fashion_mnist", "fashion_mnist_rows", "associative_recall", "marked_majority", "tabular"},
       "training data (search/task_data.hpp); fashion_mnist is read from "
       "/usr/share/datasets/fashion-mnist, the sequence tasks are generated from the seed"},
      {"task.train_subset",
       Type::Int,
       0,
       0,
       60000,
       {},
       "training samples per candidate (0 = all Fashion-MNIST images not held out for "
       "validation; 10000 generated sequences)"},
      {"task.val_size",
       Type::Int,
       5000,
       100,
       30000,
       {},
       "validation images held out of the 60k TRAINING split (the test split is never used)"},
      {"evaluator.type",
       Type::Choice,
       "train",
       0,
       0,
       {"train", "tabular"},
       "train: really train each candidate; tabular: look metrics up in a CSV"},
      {"evaluator.epochs", Type::Int, 1, 1, 1000, {}, "training epochs per candidate"},
      {"evaluator.batch_size", Type::Int, 64, 1, 4096, {}, "minibatch size"},
      {"evaluator.optimizer", Type::Choice, "adamw", 0, 0, {"adamw", "sgd"}, "optimizer"},
      {"evaluator.lr", Type::Number, 3e-3, 1e-7, 10, {}, "peak learning rate (cosine schedule)"},
      {"evaluator.weight_decay", Type::Number, 1e-4, 0, 1, {}, "decoupled weight decay"},
      {"evaluator.momentum", Type::Number, 0.9, 0, 0.999, {}, "SGD momentum"},
      {"evaluator.max_seconds",
       Type::Number,
       0,
       0,
       1e6,
       {},
       "wall-clock training budget per candidate (0 = epochs only)"},
      {"evaluator.host_latency_reps",
       Type::Int,
       10,
       0,
       10000,
       {},
       "timed batch-1 forward passes for the host latency (median); 0 disables"},
      {"evaluator.csv",
       Type::String,
       "",
       0,
       0,
       {},
       "tabular evaluator: CSV file (relative to this file)"},
      {"evaluator.key_column",
       Type::String,
       "arch",
       0,
       0,
       {},
       "tabular evaluator: architecture column"},
      {"evaluator.metrics",
       Type::Object,
       json{{"val_accuracy", "val_accuracy"}},
       0,
       0,
       {},
       "tabular evaluator: reported metric -> CSV column; \"{epochs}\" in a column name becomes "
       "the fidelity's epochs (e.g. {\"val_accuracy\": \"valid_acc_{epochs}\"})"},
      {"strategy",
       Type::Object,
       json{{"type", "regularized_evolution"}},
       0,
       0,
       {},
       "strategy object {\"type\": name, parameters...}; each strategy's parameters are listed "
       "below and by `hwnas strategies`"},
      {"budget.evaluations", Type::Int, 20, 1, 1000000, {}, "candidates to evaluate"},
      {"budget.max_seconds",
       Type::Number,
       0,
       0,
       1e7,
       {},
       "stop proposing after this many seconds (0 = no limit)"},
      {"devices",
       Type::StringList,
       json{"h100_sxm", "host"},
       1,
       64,
       {},
       "hardware targets: preset names, device JSON paths or plugin .so paths"},
      {"objectives",
       Type::StringList,
       json{"val_accuracy:max", "latency_ms:min"},
       2,
       8,
       {},
       "Pareto objectives per device, metric:max|min; latency_ms, energy_mj, memory_bytes are "
       "costs on the device"},
      {"fitness.latency_weight",
       Type::Number,
       0,
       0,
       100,
       {},
       "scalar fitness for single-objective strategies: first objective - w * log10(latency_ms)"},
      {"fitness.device", Type::String, "", 0, 0, {}, "device whose latency enters the fitness"},
      {"workers", Type::Int, 0, 0, 1024, {}, "concurrent local evaluations (0 = one per core)"},
      {"threads", Type::Int, 0, 0, 1024, {}, "oneTBB threads in all (0 = all cores)"},
      {"deterministic",
       Type::Bool,
       true,
       0,
       0,
       {},
       "propose and learn in a fixed order so the same seed gives the same search"},
      {"db", Type::String, "hwnas.db", 0, 0, {}, "SQLite file (relative to the working directory)"},
  };
  return table;
}

const char* type_name(Type t) {
  switch (t) {
    case Type::Int:
      return "integer";
    case Type::Number:
      return "number";
    case Type::Bool:
      return "boolean";
    case Type::String:
      return "string";
    case Type::Choice:
      return "string";
    case Type::StringList:
      return "list of strings";
    case Type::Object:
      return "object";
    case Type::PathOrObject:
      return "path or object";
  }
  return "?";
}

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw ConfigError("config." + path + ": " + msg);
}

std::string fmt_number(double x) {
  std::ostringstream os;
  os << std::setprecision(12) << x;
  return os.str();
}

// Finds a dotted path; nullptr if any component is absent.
const json* find(const json& root, const std::string& path) {
  const json* cur = &root;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = path.find('.', start);
    std::string key =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object() || !cur->contains(key)) return nullptr;
    cur = &(*cur)[key];
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

void set(json& root, const std::string& path, const json& value) {
  json* cur = &root;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = path.find('.', start);
    std::string key =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (dot == std::string::npos) {
      (*cur)[key] = value;
      return;
    }
    cur = &(*cur)[key];
    start = dot + 1;
  }
}

json check_value(const Param& p, const json& v) {
  const std::string path = p.path;
  switch (p.type) {
    case Type::Int: {
      if (!v.is_number_integer()) fail(path, "must be an integer, got " + v.dump());
      double x = v.get<double>();
      if (x < p.lo || x > p.hi)
        fail(path, v.dump() + " out of range [" + fmt_number(p.lo) + ", " + fmt_number(p.hi) + "]");
      return v;
    }
    case Type::Number: {
      if (!v.is_number()) fail(path, "must be a number, got " + v.dump());
      double x = v.get<double>();
      if (!(x >= p.lo && x <= p.hi))
        fail(path, v.dump() + " out of range [" + fmt_number(p.lo) + ", " + fmt_number(p.hi) + "]");
      return v;
    }
    case Type::Bool:
      if (!v.is_boolean()) fail(path, "must be true or false, got " + v.dump());
      return v;
    case Type::String:
      if (!v.is_string()) fail(path, "must be a string, got " + v.dump());
      return v;
    case Type::Choice: {
      if (!v.is_string()) fail(path, "must be a string, got " + v.dump());
      for (const auto& c : p.choices)
        if (v.get<std::string>() == c) return v;
      std::string list;
      for (const auto& c : p.choices) list += (list.empty() ? "" : ", ") + c;
      fail(path, "'" + v.get<std::string>() + "' is not one of: " + list);
    }
    case Type::StringList: {
      if (!v.is_array()) fail(path, "must be a list of strings, got " + v.dump());
      if (v.size() < p.lo || v.size() > p.hi)
        fail(path, "needs between " + fmt_number(p.lo) + " and " + fmt_number(p.hi) +
                       " entries, got " + std::to_string(v.size()));
      for (std::size_t i = 0; i < v.size(); ++i)
        if (!v[i].is_string() || v[i].get<std::string>().empty())
          fail(path + "[" + std::to_string(i) + "]",
               "must be a non-empty string, got " + v[i].dump());
      return v;
    }
    case Type::Object:
      if (!v.is_object()) fail(path, "must be an object, got " + v.dump());
      return v;
    case Type::PathOrObject:
      if (!v.is_object() && !v.is_string())
        fail(path, "must be a file path or an object, got " + v.dump());
      return v;
  }
  return v;
}

// Rejects keys that no declared parameter starts with (typos such as "budjet").
void reject_unknown(const json& j, const std::string& prefix) {
  for (const auto& [key, value] : j.items()) {
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    bool exact = false, parent = false;
    for (const Param& p : parameter_table()) {
      std::string pp = p.path;
      if (pp == path)
        exact = true;
      else if (pp.rfind(path + ".", 0) == 0)
        parent = true;
    }
    if (exact) continue;
    if (parent && value.is_object()) {
      reject_unknown(value, path);
      continue;
    }
    if (parent) fail(path, "must be an object, got " + value.dump());
    std::string known;
    for (const Param& p : parameter_table()) {
      std::string pp = p.path;
      if (prefix.empty() || pp.rfind(prefix + ".", 0) == 0)
        known += (known.empty() ? "" : ", ") + pp;
    }
    fail(path, "unknown field; known fields: " + known);
  }
}

// `where` prefixes the error: "config" for the file itself, "config.space" for a referenced file.
json read_json_file(const fs::path& file, const std::string& where) {
  std::ifstream in(file);
  if (!in) throw ConfigError(where + ": cannot open '" + file.string() + "'");
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw ConfigError(where + ": '" + file.string() + "' is not valid JSON: " + e.what());
  }
}

std::string resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  // Absolute, so the path still names the same file for MPI workers and for dlopen (which
  // would otherwise search the library path for a bare "libx.so").
  return fs::absolute(fs::path(base_dir) / p).lexically_normal().string();
}

}  // namespace

bool ObjectiveSpec::is_cost() const {
  return metric == "latency_ms" || metric == "energy_mj" || metric == "memory_bytes";
}

ObjectiveSpec ObjectiveSpec::parse(const std::string& s) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw std::invalid_argument("'" + s + "' must be METRIC:max or METRIC:min");
  const std::string dir = s.substr(colon + 1);
  if (dir != "max" && dir != "min")
    throw std::invalid_argument("direction '" + dir + "' must be max or min");
  return {s.substr(0, colon), dir == "max"};
}

std::string ObjectiveSpec::str() const { return metric + (maximize ? ":max" : ":min"); }

SearchConfig parse_config(const json& j, const std::string& base_dir) {
  if (!j.is_object()) throw ConfigError("config: the top level must be a JSON object");
  reject_unknown(j, "");

  json r = json::object();
  for (const Param& p : parameter_table()) {
    const json* v = find(j, p.path);
    if (!v) {
      if (p.fallback.is_null()) fail(p.path, std::string("missing (") + p.description + ")");
      set(r, p.path, p.fallback);
    } else {
      set(r, p.path, check_value(p, *v));
    }
  }

  SearchConfig c;
  c.name = r["name"];
  c.seed = r["seed"].get<std::uint64_t>();

  // Space: load, then let the spaces module validate it completely.
  if (r["space"].is_string()) {
    const std::string path = resolve(base_dir, r["space"].get<std::string>());
    c.space = read_json_file(path, "config.space");
  } else {
    c.space = r["space"];
  }
  std::unique_ptr<spaces::Space> space;
  try {
    space = spaces::make_space(c.space);
  } catch (const std::exception& e) {
    fail("space", e.what());
  }
  r["space"] = c.space;  // store the resolved definition so the run is self-contained

  c.dataset = r["task"]["dataset"];
  c.train_subset = r["task"]["train_subset"];
  c.val_size = r["task"]["val_size"];

  const json& ev = r["evaluator"];
  c.evaluator = ev["type"];
  c.epochs = ev["epochs"];
  c.batch_size = ev["batch_size"];
  c.optimizer = ev["optimizer"];
  c.lr = ev["lr"];
  c.weight_decay = ev["weight_decay"];
  c.momentum = ev["momentum"];
  c.candidate_seconds = ev["max_seconds"];
  c.host_latency_reps = ev["host_latency_reps"];
  c.tabular_key = ev["key_column"];
  c.tabular_metrics = ev["metrics"];
  for (const auto& [k, v] : c.tabular_metrics.items())
    if (!v.is_string())
      fail("evaluator.metrics." + k, "must be a CSV column name, got " + v.dump());
  if (c.evaluator == "tabular") {
    if (ev["csv"].get<std::string>().empty())
      fail("evaluator.csv", "required when evaluator.type is 'tabular'");
    c.tabular_csv = resolve(base_dir, ev["csv"]);
    if (!fs::exists(c.tabular_csv))
      fail("evaluator.csv", "file '" + c.tabular_csv + "' does not exist");
    r["evaluator"]["csv"] = c.tabular_csv;
  }
  if ((c.evaluator == "tabular") != (c.dataset == "tabular"))
    fail("evaluator.type", "'" + c.evaluator + "' does not match task.dataset '" + c.dataset +
                               "' (use both 'tabular' or a dataset with evaluator 'train')");
  if (c.evaluator == "train") {
    try {
      check_task_fits(c.dataset, space->input_type(), space->num_outputs());
    } catch (const std::invalid_argument& e) {
      fail("space", e.what());
    }
    if (c.dataset.starts_with("fashion_mnist") && c.train_subset > 60000 - c.val_size)
      fail("task.train_subset", std::to_string(c.train_subset) + " exceeds the " +
                                    std::to_string(60000 - c.val_size) +
                                    " training images left after task.val_size");
  }

  // Strategy: its registry entry validates the parameters and fills the defaults, which are
  // stored with the run; building it once here also runs the entry's cross-field checks.
  try {
    r["strategy"] = strategies::resolve_strategy_config(r["strategy"]);
    (void)strategies::make_strategy(r["strategy"], *space);
  } catch (const std::exception& e) {
    throw ConfigError(std::string("config.") + e.what());
  }
  c.strategy = r["strategy"];

  c.budget_evaluations = r["budget"]["evaluations"];
  c.budget_seconds = r["budget"]["max_seconds"];

  std::set<std::string> seen;
  for (std::size_t i = 0; i < r["devices"].size(); ++i) {
    std::string d = r["devices"][i];
    const std::string field = "devices[" + std::to_string(i) + "]";
    // Paths (JSON device files, plugins) resolve against the config folder; preset names don't.
    if (d.find('/') != std::string::npos || d.ends_with(".json") || d.ends_with(".so")) {
      d = resolve(base_dir, d);
      r["devices"][i] = d;
    }
    try {
      auto dev = hw::load_device(d);
      if (!seen.insert(dev->name()).second)
        fail(field, "device '" + dev->name() + "' listed twice");
      if (dev->family() == "host" && (c.evaluator != "train" || c.host_latency_reps == 0))
        fail(field, "device '" + dev->name() +
                        "' costs the latency measured on this machine, but " +
                        (c.evaluator != "train" ? std::string("the tabular evaluator measures none")
                                                : std::string("evaluator.host_latency_reps is 0")) +
                        "; remove it or set evaluator.host_latency_reps > 0");
    } catch (const ConfigError&) {
      throw;
    } catch (const std::exception& e) {
      fail(field, e.what());
    }
    c.devices.push_back(d);
  }

  for (std::size_t i = 0; i < r["objectives"].size(); ++i) {
    try {
      c.pareto_objectives.push_back(ObjectiveSpec::parse(r["objectives"][i]));
    } catch (const std::invalid_argument& e) {
      fail("objectives[" + std::to_string(i) + "]", e.what());
    }
  }
  // Every objective must be something the evaluator reports or a device cost: a typo would
  // otherwise turn every objective into NaN and every front empty.
  std::vector<std::string> metrics;
  if (c.evaluator == "train")
    metrics = eval::TrainEvaluator::metric_names();
  else
    for (const auto& [k, v] : c.tabular_metrics.items()) metrics.push_back(k);
  for (std::size_t i = 0; i < c.pareto_objectives.size(); ++i) {
    const auto& o = c.pareto_objectives[i];
    if (o.is_cost() || std::find(metrics.begin(), metrics.end(), o.metric) != metrics.end())
      continue;
    std::string list = "latency_ms, energy_mj, memory_bytes";
    for (const auto& m : metrics) list += ", " + m;
    fail("objectives[" + std::to_string(i) + "]",
         "unknown metric '" + o.metric + "' for evaluator '" + c.evaluator + "'; one of: " + list);
  }
  if (c.pareto_objectives.front().is_cost())
    fail("objectives[0]",
         "the first objective must be a model metric (e.g. val_accuracy:max); it "
         "is also the fitness of single-objective strategies");

  c.fitness_latency_weight = r["fitness"]["latency_weight"];
  c.fitness_device = r["fitness"]["device"];
  if (c.fitness_latency_weight > 0) {
    if (!seen.count(c.fitness_device))  // the names of the devices loaded above
      fail("fitness.device", "'" + c.fitness_device + "' must name one of the configured devices");
  }

  c.workers = r["workers"];
  c.threads = r["threads"];
  c.deterministic = r["deterministic"];
  c.db_path = r["db"];
  c.resolved = r;
  return c;
}

SearchConfig load_config(const std::string& path) {
  if (!fs::exists(path)) throw ConfigError("config: file '" + path + "' does not exist");
  SearchConfig c = parse_config(read_json_file(path, "config"), fs::path(path).parent_path().string());
  c.config_path = path;
  return c;
}

std::string describe_parameters() {
  std::ostringstream os;
  for (const Param& p : parameter_table()) {
    os << p.path << " (" << type_name(p.type);
    if (p.type == Type::Int || p.type == Type::Number)
      os << " in [" << fmt_number(p.lo) << ", " << fmt_number(p.hi) << "]";
    if (p.type == Type::Choice) {
      os << ": ";
      for (std::size_t i = 0; i < p.choices.size(); ++i) os << (i ? " | " : "") << p.choices[i];
    }
    os << ", default " << (p.fallback.is_null() ? std::string("required") : p.fallback.dump())
       << ")\n    " << p.description << "\n";
  }
  // Strategy parameters come from the strategy registry, where each strategy declares them.
  os << "\nStrategy parameters (by strategy.type):\n" << strategies::describe_strategy_params();
  return os.str();
}

}  // namespace hwnas::search
