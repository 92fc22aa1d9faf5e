#include "search/config.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <set>
#include <sstream>

#include "common/json_file.hpp"
#include "evaluators/task_registry.hpp"
#include "evaluators/train_evaluator.hpp"
#include "hwmodels/device.hpp"
#include "search/evaluator_factory.hpp"
#include "spaces/space.hpp"
#include "strategies/registry.hpp"

namespace hwnas::search {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

enum class Type {
  Int,
  Number,
  Bool,
  String,
  Choice,
  StringList,
  NumberList,
  Object,
  PathOrObject,
  DeviceList  // strings, or {"device": string, "batch": positive integer}
};

// The single declaration of every configuration parameter.
struct Param {
  std::string path;  // dotted, e.g. "budget.evaluations"
  Type type;
  json fallback;  // null: required
  double lo = 0, hi = 0;
  std::vector<std::string> choices = {};
  std::string description = "";
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
      {"task.name",
       Type::String,
       "",
       0,
       0,
       {},
       "task to train on (`hwnas tasks` lists them and their parameters, which sit next to "
       "name in the task object); default fashion_mnist; 'tabular' with evaluator 'tabular', "
       "'synthetic' with evaluator 'synthetic'"},
      {"task.dataset", Type::String, "", 0, 0, {}, "the older spelling of task.name"},
      {"task.train_subset",
       Type::Int,
       0,
       0,
       1000000,
       {},
       "training samples per candidate (0 = the task's default: all Fashion-MNIST images not "
       "held out for validation, 10000 generated samples)"},
      {"task.val_size",
       Type::Int,
       5000,
       100,
       100000,
       {},
       "validation samples, held out of TRAINING data or generated (a test split is never used)"},
      {"evaluator",
       Type::Object,
       json{{"type", "train"}},
       0,
       0,
       {},
       "evaluator object: {\"type\": train | tabular | synthetic, ...}; its parameters are listed "
       "below"},
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
       Type::DeviceList,
       json{"h100_sxm", "host"},
       0,
       64,
       {},
       "hardware targets: preset names, device JSON paths or plugin .so paths, or "
       "{\"device\": NAME, \"batch\": N} to cost N samples per inference on it (may be empty "
       "when no objective or constraint is a device cost)"},
      {"objectives",
       Type::StringList,
       json{"val_accuracy:max", "latency_ms:min"},
       1,
       8,
       {},
       "objectives, METRIC[@DEVICE]:max|min; the first is a model metric; latency_ms, "
       "energy_mj, memory_bytes are device costs.  Without any @DEVICE, one front per device "
       "(costs read on each); with one, a single joint front (a cost without @DEVICE reads the "
       "first device), e.g. [\"val_accuracy:max\", \"latency_ms@jetson_orin_nano:min\", "
       "\"energy_mj@loihi2:min\"]"},
      {"constraints",
       Type::StringList,
       json::array(),
       0,
       32,
       {},
       "constraints every front member must meet: METRIC[@DEVICE] <=|<|>=|> NUMBER or "
       "feasible@DEVICE, e.g. [\"latency_ms@rpi4_a72 <= 20\", \"feasible@stm32f746\", "
       "\"params <= 1e6\"]; strategies rank violators behind every feasible candidate"},
      {"hypervolume.reference",
       Type::NumberList,
       json::array(),
       0,
       0,
       {},
       "hypervolume reference point, one number per objective; [] = each front's nadir over "
       "the run"},
      {"hypervolume.every",
       Type::Int,
       0,
       0,
       1000000,
       {},
       "evaluations between hypervolume history points (0 = budget / 50, at least 1)"},
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
      {"worker_timeout_seconds",
       Type::Number,
       0,
       0,
       1e7,
       {},
       "give up a worker (MPI rank or local runner thread) that has not answered its candidate "
       "after this many seconds: the candidate runs again on another worker with the same seed "
       "(a candidate no worker answers twice is stored as failed) and the event is recorded; "
       "0 = wait forever.  Must exceed evaluator.max_seconds (the training budget) when both "
       "are set"},
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
    case Type::DeviceList:
      return "list of device names or {device, batch} objects";
    case Type::NumberList:
      return "list of numbers";
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
    case Type::DeviceList: {
      if (!v.is_array()) fail(path, "must be a list of device names, got " + v.dump());
      if (v.size() < p.lo || v.size() > p.hi)
        fail(path, "needs between " + fmt_number(p.lo) + " and " + fmt_number(p.hi) +
                       " entries, got " + std::to_string(v.size()));
      for (std::size_t i = 0; i < v.size(); ++i) {
        const std::string at = path + "[" + std::to_string(i) + "]";
        if (v[i].is_string() && !v[i].get<std::string>().empty()) continue;
        if (!v[i].is_object())
          fail(at, "must be a device name or {\"device\": NAME, \"batch\": N}, got " + v[i].dump());
        for (const auto& [k, x] : v[i].items())
          if (k != "device" && k != "batch")
            fail(at + "." + k, "unknown field (a device entry has \"device\" and \"batch\")");
        if (!v[i].contains("device") || !v[i]["device"].is_string() ||
            v[i]["device"].get<std::string>().empty())
          fail(at + ".device", "must be a non-empty string (preset name, device JSON or plugin)");
        if (v[i].contains("batch") &&
            (!v[i]["batch"].is_number_integer() || v[i]["batch"].get<long long>() < 1 ||
             v[i]["batch"].get<long long>() > (1 << 20)))
          fail(at + ".batch",
               "must be an integer between 1 and 1048576, got " + v[i]["batch"].dump());
      }
      return v;
    }
    case Type::NumberList: {
      if (!v.is_array()) fail(path, "must be a list of numbers, got " + v.dump());
      for (std::size_t i = 0; i < v.size(); ++i)
        if (!v[i].is_number() || !std::isfinite(v[i].get<double>()))
          fail(path + "[" + std::to_string(i) + "]", "must be a finite number, got " + v[i].dump());
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
    if (prefix == "task") continue;  // a task's own parameters: the task registry checks them
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
  std::error_code ec;
  if (fs::is_directory(file, ec))
    throw ConfigError(where + ": '" + file.string() +
                      "' is a directory; give a JSON file (e.g. examples/quickstart.json)");
  try {
    return hwnas::read_json_file(file.string());
  } catch (const JsonFileError& e) {
    throw ConfigError(where + ": " + e.what());
  }
}

// The config-table form of a registered family's ParamSpec, so evaluator parameters are
// checked (and their errors worded) like every other config field.
Param param_of(const ParamSpec& spec, const std::string& prefix) {
  Param p{prefix + spec.name, Type::Object, spec.default_value, spec.min,
          spec.max,           {},           spec.description};
  switch (spec.type) {
    case ParamType::Int:
      p.type = Type::Int;
      break;
    case ParamType::Float:
      p.type = Type::Number;
      break;
    case ParamType::Bool:
      p.type = Type::Bool;
      break;
    case ParamType::String:
      p.type = Type::String;
      break;
    case ParamType::Json:
      p.type = Type::Object;
      break;
    case ParamType::Choice:
      p.type = Type::Choice;
      for (const auto& v : spec.values) p.choices.push_back(v.get<std::string>());
      break;
  }
  return p;
}

// Validates the evaluator object against its registry entry and fills the defaults.
json resolve_evaluator(const json& given, const EvaluatorEntry*& entry) {
  json ev = given;
  if (!ev.contains("type")) ev["type"] = "train";
  if (!ev["type"].is_string()) fail("evaluator.type", "must be a string, got " + ev["type"].dump());
  entry = evaluator_registry().find(ev["type"].get<std::string>());
  if (!entry) {
    std::string list;
    for (const auto& n : evaluator_registry().names()) list += (list.empty() ? "" : ", ") + n;
    fail("evaluator.type", "'" + ev["type"].get<std::string>() + "' is not one of: " + list);
  }
  json out = json{{"type", entry->name}};
  for (const auto& [key, value] : ev.items()) {
    if (key == "type") continue;
    auto it = std::find_if(entry->params.begin(), entry->params.end(),
                           [&](const ParamSpec& p) { return p.name == key; });
    if (it == entry->params.end()) {
      std::string known = "evaluator.type";
      for (const auto& p : entry->params) known += ", evaluator." + p.name;
      fail("evaluator." + key,
           "unknown field for evaluator '" + entry->name + "'; known fields: " + known);
    }
    out[key] = check_value(param_of(*it, "evaluator."), value);
  }
  for (const auto& p : entry->params)
    if (!out.contains(p.name)) out[p.name] = p.default_value;
  return out;
}

std::string resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  // Absolute, so the path still names the same file for MPI workers and for dlopen (which
  // would otherwise search the library path for a bare "libx.so").
  return fs::absolute(fs::path(base_dir) / p).lexically_normal().string();
}

}  // namespace

bool SearchConfig::per_device_fronts() const {
  if (devices.empty()) return false;
  for (const auto& o : pareto_objectives)
    if (!o.device.empty()) return false;
  return true;
}

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

  // Task: task.name (or the older task.dataset), then the task's own parameters.
  const std::string task_name = r["task"]["name"], task_dataset = r["task"]["dataset"];
  if (!task_name.empty() && !task_dataset.empty() && task_name != task_dataset)
    fail("task.name",
         "'" + task_name + "' and task.dataset '" + task_dataset + "' disagree; give one of them");
  c.dataset = !task_name.empty()      ? task_name
              : !task_dataset.empty() ? task_dataset
                                      : "fashion_mnist";
  r["task"]["name"] = r["task"]["dataset"] = c.dataset;
  c.train_subset = r["task"]["train_subset"];
  c.val_size = r["task"]["val_size"];
  const eval::TaskEntry* task_entry = nullptr;
  // 'tabular' and 'synthetic' train nothing, so they are no task of the registry.
  if (c.dataset != "tabular" && c.dataset != "synthetic") {
    task_entry = eval::task_registry().find(c.dataset);
    if (!task_entry)
      fail(task_name.empty() ? "task.dataset" : "task.name",
           "unknown task '" + c.dataset + "' (known: " + eval::task_registry().known_list() +
               "; or tabular with evaluator 'tabular', synthetic with evaluator 'synthetic')");
    const json* given = find(j, "task");
    try {
      c.task_params = eval::resolve_task(c.dataset, given ? *given : json(), "config.task").params;
    } catch (const std::invalid_argument& e) {
      throw ConfigError(e.what());
    }
    for (const auto& [k, v] : c.task_params.items()) r["task"][k] = v;
  } else {
    c.task_params = json::object();
  }

  // Evaluator: its registry entry declares and fills its parameters.
  const EvaluatorEntry* ev_entry = nullptr;
  c.evaluator_params = resolve_evaluator(r["evaluator"], ev_entry);
  c.evaluator = ev_entry->name;
  ev_entry->configure(c, base_dir);
  r["evaluator"] = c.evaluator_params;
  if (task_entry && c.evaluator == "train") {
    try {
      // A sample architecture's output type shows whether the space pools (one output per
      // sample) or keeps the sequence (one output per token), which the task's head decides.
      spaces::Rng rng(c.seed);
      const spaces::Genome g = space->sample(rng);
      const spaces::TensorType out = g.graph()[g.output_node()].out;
      eval::check_task_fits(eval::resolve_task(c.dataset, c.task_params), space->input_type(),
                            space->num_outputs(), &out);
    } catch (const std::invalid_argument& e) {
      fail("space", e.what());
    }
    const int left = task_entry->max_samples - c.val_size;
    if (left <= 0)
      fail("task.val_size", std::to_string(c.val_size) + " leaves no training samples of task '" +
                                c.dataset + "' (at most " +
                                std::to_string(task_entry->max_samples) + " in all)");
    if (c.train_subset > left)
      fail("task.train_subset", std::to_string(c.train_subset) + " exceeds the " +
                                    std::to_string(left) +
                                    " training samples left after task.val_size");
  }

  // Strategy: its registry entry validates the parameters and fills the defaults, which are
  // stored with the run; it is built once below, with the objectives, to run the entry's
  // cross-field checks.
  try {
    r["strategy"] = strategies::resolve_strategy_config(r["strategy"]);
  } catch (const std::exception& e) {
    throw ConfigError(std::string("config.") + e.what());
  }
  c.strategy = r["strategy"];

  c.budget_evaluations = r["budget"]["evaluations"];
  c.budget_seconds = r["budget"]["max_seconds"];

  std::set<std::string> seen;
  std::vector<std::string> device_names;  // in config order
  for (std::size_t i = 0; i < r["devices"].size(); ++i) {
    nlohmann::json& entry = r["devices"][i];
    const bool is_obj = entry.is_object();
    std::string d = is_obj ? entry["device"].get<std::string>() : entry.get<std::string>();
    const int batch = is_obj ? entry.value("batch", 0) : 0;
    const std::string field =
        "devices[" + std::to_string(i) + "]" + std::string(is_obj ? ".device" : "");
    // Paths (JSON device files, plugins) resolve against the config folder; preset names don't.
    if (d.find('/') != std::string::npos || d.ends_with(".json") || d.ends_with(".so")) {
      d = resolve(base_dir, d);
      (is_obj ? entry["device"] : entry) = d;
    }
    try {
      auto dev = batch > 0 ? hw::load_device(d, batch) : hw::load_device(d);
      if (!seen.insert(dev->name()).second)
        fail(field, "device '" + dev->name() + "' listed twice");
      device_names.push_back(dev->name());
      if (dev->family() == "host") {
        const int hb = dev->to_json().value("batch", 1);
        if (hb > 1) c.host_latency_batches.push_back(hb);
      }
      if (dev->family() == "host" && (c.evaluator != "train" || c.host_latency_reps == 0))
        fail(field, "device '" + dev->name() +
                        "' costs the latency measured on this machine, but " +
                        (c.evaluator != "train" ? "the " + c.evaluator + " evaluator measures none"
                                                : std::string("evaluator.host_latency_reps is 0")) +
                        "; remove it or set evaluator.host_latency_reps > 0");
    } catch (const ConfigError&) {
      throw;
    } catch (const std::exception& e) {
      fail(field, e.what());
    }
    c.devices.push_back(d);
    c.device_batches.push_back(batch);
  }

  std::string device_list;
  for (const auto& d : seen) device_list += (device_list.empty() ? "" : ", ") + d;
  if (device_list.empty()) device_list = "none configured";
  // Every metric must be something the evaluator reports or a device cost: a typo would
  // otherwise turn every objective into NaN and every front empty.
  const std::vector<std::string> metrics = ev_entry->metric_names(c);
  auto check_metric = [&](const std::string& field, const std::string& metric,
                          const std::string& device, const std::string& text) {
    if (!device.empty() && !seen.count(device))
      fail(field, "device '" + device + "' in '" + text +
                      "' is not one of the configured devices (" + device_list + ")");
    if (is_cost_metric(metric)) {
      if (device.empty() && seen.empty())
        fail(field, "'" + text +
                        "' is a device cost but no device is configured; add one to "
                        "devices or name it with @DEVICE");
      return;
    }
    if (std::find(metrics.begin(), metrics.end(), metric) != metrics.end()) return;
    std::string list = "latency_ms, energy_mj, memory_bytes";
    for (const auto& m : metrics) list += ", " + m;
    fail(field,
         "unknown metric '" + metric + "' for evaluator '" + c.evaluator + "'; one of: " + list);
  };
  for (std::size_t i = 0; i < r["objectives"].size(); ++i) {
    const std::string field = "objectives[" + std::to_string(i) + "]";
    const std::string text = r["objectives"][i];
    try {
      c.pareto_objectives.push_back(ObjectiveSpec::parse(text));
    } catch (const std::invalid_argument& e) {
      fail(field, e.what());
    }
    const auto& o = c.pareto_objectives.back();
    if (!o.device.empty() && !o.is_cost())
      fail(field, "'" + text +
                      "': only device costs (latency_ms, energy_mj, memory_bytes) "
                      "take @DEVICE; '" +
                      o.metric + "' is a model metric");
    check_metric(field, o.metric, o.device, text);
    for (std::size_t k = 0; k + 1 < c.pareto_objectives.size(); ++k)
      if (c.pareto_objectives[k].metric == o.metric && c.pareto_objectives[k].device == o.device)
        fail(field, "'" + text + "' repeats objectives[" + std::to_string(k) + "]");
  }
  if (c.pareto_objectives.front().is_cost())
    fail("objectives[0]",
         "the first objective must be a model metric (e.g. val_accuracy:max); it "
         "is also the fitness of single-objective strategies");
  for (std::size_t i = 0; i < r["constraints"].size(); ++i) {
    const std::string field = "constraints[" + std::to_string(i) + "]";
    const std::string text = r["constraints"][i];
    try {
      c.constraints.push_back(ConstraintSpec::parse(text));
    } catch (const std::invalid_argument& e) {
      fail(field, e.what());
    }
    const auto& k = c.constraints.back();
    if (k.op == ConstraintSpec::Op::Feasible) {
      if (!seen.count(k.device))
        fail(field, "device '" + k.device + "' in '" + text +
                        "' is not one of the configured devices (" + device_list + ")");
      continue;
    }
    if (!k.device.empty() && !k.is_cost())
      fail(field, "'" + text +
                      "': only device costs (latency_ms, energy_mj, memory_bytes) "
                      "take @DEVICE; '" +
                      k.metric + "' is a model metric");
    check_metric(field, k.metric, k.device, text);
  }
  // The strategy's cross-field checks, with the context the search loop gives it (a reward
  // may need a latency objective).
  try {
    strategies::StrategyContext context;
    context.objectives.clear();
    for (const auto& o : c.pareto_objectives) context.objectives.push_back({o.str(), o.maximize});
    for (const auto& k : c.constraints) context.constraints.push_back(k.str());
    (void)strategies::make_strategy(r["strategy"], *space, context);
  } catch (const std::exception& e) {
    throw ConfigError(std::string("config.") + e.what());
  }
  // One-shot strategies train a supernet on the task's data and price ops on a device model.
  if (strategies::strategy_registry().at(r["strategy"]["type"].get<std::string>()).one_shot) {
    const std::string type = r["strategy"]["type"];
    if (c.evaluator != "train")
      fail("strategy.type", "'" + type +
                                "' trains a supernet on the task's data; it needs evaluator "
                                "'train' (this config's evaluator is '" +
                                c.evaluator + "')");
    const std::string dev = r["strategy"].value("device", "");
    if (dev.empty() && c.devices.empty() && r["strategy"].value("hardware_weight", 0.0) > 0)
      fail("strategy.device",
           "the hardware term needs a device: set strategy.device or list "
           "one in devices");
    if (!dev.empty()) {
      try {
        (void)hw::load_device(dev);
      } catch (const std::exception& e) {
        std::string presets;
        for (const auto& p : hw::preset_names()) presets += (presets.empty() ? "" : ", ") + p;
        fail("strategy.device", "'" + dev + "': " + e.what() + " (presets: " + presets + ")");
      }
    }
  }

  for (const auto& v : r["hypervolume"]["reference"]) c.hypervolume_reference.push_back(v);
  if (!c.hypervolume_reference.empty() &&
      c.hypervolume_reference.size() != c.pareto_objectives.size())
    fail("hypervolume.reference", "has " + std::to_string(c.hypervolume_reference.size()) +
                                      " values for " + std::to_string(c.pareto_objectives.size()) +
                                      " objectives; give one per objective or []");
  c.hypervolume_every = r["hypervolume"]["every"];

  c.fitness_latency_weight = r["fitness"]["latency_weight"];
  c.fitness_device = r["fitness"]["device"];
  if (c.fitness_latency_weight > 0) {
    if (!seen.count(c.fitness_device))  // the names of the devices loaded above
      fail("fitness.device", "'" + c.fitness_device + "' must name one of the configured devices");
  }

  c.default_device = device_names.empty() ? "" : device_names.front();
  c.workers = r["workers"];
  c.threads = r["threads"];
  c.worker_timeout_seconds = r["worker_timeout_seconds"];
  // The training budget ends a candidate cooperatively; a worker timeout at or below it would
  // give up healthy workers in the middle of their budget.
  if (c.worker_timeout_seconds > 0 && c.candidate_seconds > 0 &&
      c.worker_timeout_seconds <= c.candidate_seconds)
    fail("worker_timeout_seconds",
         fmt_number(c.worker_timeout_seconds) + " must exceed evaluator.max_seconds (" +
             fmt_number(c.candidate_seconds) +
             ", the per-candidate training budget): give the worker time to finish, e.g. " +
             fmt_number(2 * c.candidate_seconds + 60));
  c.deterministic = r["deterministic"];
  c.db_path = r["db"];
  c.resolved = r;
  return c;
}

SearchConfig load_config(const std::string& path) {
  if (!fs::exists(path)) throw ConfigError("config: file '" + path + "' does not exist");
  SearchConfig c =
      parse_config(read_json_file(path, "config"), fs::path(path).parent_path().string());
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
  os << describe_task_and_evaluator_parameters();
  return os.str();
}

// ---- tasks and evaluators (their registries declare the parameters) ----
std::string describe_task_and_evaluator_parameters() {
  std::ostringstream os;
  os << "\nEvaluator parameters (evaluator.type picks the evaluator; only its parameters are "
        "accepted):\n";
  for (const auto& [name, e] : evaluator_registry().entries()) {
    os << "evaluator.type = " << name << ": " << e.description << "\n";
    os << describe_params(e.params, "evaluator.");
  }
  os << "\nTask parameters (task.name picks the task; its parameters sit next to it, e.g. "
        "{\"name\": \"mqar\", \"seq_len\": 128}; `hwnas tasks` shows inputs and heads):\n";
  for (const auto& [name, t] : eval::task_registry().entries()) {
    os << "task.name = " << name << ": " << t.description << "\n";
    if (t.params.empty()) os << "  (no parameters besides task.train_subset, task.val_size)\n";
    os << describe_params(t.params, "task.");
  }
  return os.str();
}

}  // namespace hwnas::search
