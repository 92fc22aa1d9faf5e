#include "hwmodels/workload.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace hwnas::hw {

namespace {

// Keep in the enum's order; the static_assert catches a category added without a name.
constexpr std::array<const char*, static_cast<std::size_t>(OpCategory::kCount)> kCategoryNames = {
    "dense",       "conv",      "depthwise_conv", "pool",      "norm",
    "elementwise", "attention", "embedding",      "recurrent", "fft",
    "spiking",     "routing",   "memory",         "other"};
static_assert(kCategoryNames.size() == static_cast<std::size_t>(OpCategory::kCount),
              "op category name table out of sync with OpCategory");

[[noreturn]] void bad_field(const std::string& where, const std::string& field,
                            const std::string& what) {
  throw std::invalid_argument("workload: " + where + "field '" + field + "' " + what);
}

double get_number(const nlohmann::json& j, const char* key, const std::string& where, double dflt,
                  bool non_negative = true) {
  auto it = j.find(key);
  if (it == j.end()) return dflt;
  if (!it->is_number()) bad_field(where, key, "must be a number");
  double v = it->get<double>();
  if (non_negative && !(v >= 0)) bad_field(where, key, "must be >= 0");
  return v;
}

int get_int(const nlohmann::json& j, const char* key, const std::string& where, int dflt,
            int min_value) {
  auto it = j.find(key);
  if (it == j.end()) return dflt;
  if (!it->is_number_integer()) bad_field(where, key, "must be an integer");
  long long v = it->get<long long>();
  if (v < min_value || v > 1'000'000'000)
    bad_field(where, key, "must be an integer >= " + std::to_string(min_value));
  return static_cast<int>(v);
}

bool get_bool(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) return false;
  if (!it->is_boolean()) bad_field(where, key, "must be true or false");
  return it->get<bool>();
}

std::string get_string(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) return {};
  if (!it->is_string()) bad_field(where, key, "must be a string");
  return it->get<std::string>();
}

nlohmann::json activity_to_json(const NodeActivity& a) {
  nlohmann::json j = nlohmann::json::object();
  if (a.samples != 0) j["samples"] = a.samples;
  if (!a.scalars.empty()) j["scalars"] = a.scalars;
  if (!a.series.empty()) j["series"] = a.series;
  return j;
}

double finite_number(const nlohmann::json& v, const std::string& where, const std::string& field) {
  if (!v.is_number()) bad_field(where, field, "must be a number");
  const double d = v.get<double>();
  if (!std::isfinite(d)) bad_field(where, field, "must be finite");
  return d;
}

// {"samples": n, "scalars": {name: x}, "series": {name: [x, ...]}}; merged into `a`.
void read_activity(const nlohmann::json& j, const std::string& where, NodeActivity& a) {
  if (!j.is_object()) bad_field(where, "activity", "must be an object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "samples" && it.key() != "scalars" && it.key() != "series")
      bad_field(where, "activity." + it.key(), "is unknown (allowed: samples, scalars, series)");
  a.samples = get_number(j, "samples", where + "activity: ", 0);
  if (auto s = j.find("scalars"); s != j.end()) {
    if (!s->is_object()) bad_field(where, "activity.scalars", "must be an object of numbers");
    for (auto it = s->begin(); it != s->end(); ++it)
      a.scalars[it.key()] = finite_number(*it, where, "activity.scalars." + it.key());
  }
  if (auto s = j.find("series"); s != j.end()) {
    if (!s->is_object()) bad_field(where, "activity.series", "must be an object of number arrays");
    for (auto it = s->begin(); it != s->end(); ++it) {
      const std::string field = "activity.series." + it.key();
      if (!it->is_array()) bad_field(where, field, "must be an array of numbers");
      std::vector<double>& v = a.series[it.key()];
      v.clear();
      for (const auto& x : *it) v.push_back(finite_number(x, where, field));
    }
  }
}

}  // namespace

const char* op_category_name(OpCategory c) {
  auto i = static_cast<std::size_t>(c);
  return i < kCategoryNames.size() ? kCategoryNames[i] : "invalid";
}

OpCategory op_category_from_name(const std::string& name) {
  for (std::size_t i = 0; i < kCategoryNames.size(); ++i)
    if (name == kCategoryNames[i]) return static_cast<OpCategory>(i);
  std::string known;
  for (const char* n : kCategoryNames) known += (known.empty() ? "" : ", ") + std::string(n);
  throw std::invalid_argument("unknown op category '" + name + "' (known: " + known + ")");
}

double Workload::total_macs() const {
  double s = 0;
  for (const auto& n : nodes) s += n.macs;
  return s;
}

double Workload::total_params() const {
  double s = 0;
  for (const auto& n : nodes) s += n.params;
  return s;
}

double Workload::total_weight_bytes() const {
  double s = 0;
  for (const auto& n : nodes) s += n.weight_bytes;
  return s;
}

double Workload::peak_activation_bytes() const {
  // The IR keeps no edges, so a node's inputs are represented by its input_bytes; the model
  // input counts as live for the first node.  Residual tensors kept alive across several nodes
  // are not visible here, hence "lower bound".
  double peak = input_bytes;
  for (const auto& n : nodes) peak = std::max(peak, n.input_bytes + n.output_bytes);
  return peak;
}

nlohmann::json Workload::to_json() const {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& n : nodes) {
    nlohmann::json o = {{"name", n.name},
                        {"block_kind", n.block_kind},
                        {"category", op_category_name(n.category)},
                        {"macs", n.macs},
                        {"other_flops", n.other_flops},
                        {"params", n.params},
                        {"weight_bytes", n.weight_bytes},
                        {"input_bytes", n.input_bytes},
                        {"output_bytes", n.output_bytes},
                        {"bits", n.bits},
                        {"kernels", n.kernels}};
    // Optional fields only when set, to keep stored workloads small.
    if (n.eager_kernels >= 0 && n.eager_kernels != n.kernels) o["eager_kernels"] = n.eager_kernels;
    if (n.sparsity != 0) o["sparsity"] = n.sparsity;
    if (n.channels_full != 0) {
      o["channels"] = n.channels;
      o["channels_full"] = n.channels_full;
    }
    if (n.seq_len != 0) o["seq_len"] = n.seq_len;
    if (n.window != 0) o["window"] = n.window;
    if (n.stride != 0) o["stride"] = n.stride;
    if (!n.kernel_type.empty()) o["kernel_type"] = n.kernel_type;
    if (n.neurons != 0) o["neurons"] = n.neurons;
    if (n.fan_in != 0) o["fan_in"] = n.fan_in;
    if (n.fan_out != 0) o["fan_out"] = n.fan_out;
    if (n.synapses != 0) o["synapses"] = n.synapses;
    if (n.spiking) o["spiking"] = true;
    if (n.timesteps != 1) o["timesteps"] = n.timesteps;
    if (n.total_experts != 0) o["total_experts"] = n.total_experts;
    if (n.nominal_function_evals != 0) o["nominal_function_evals"] = n.nominal_function_evals;
    if (n.nominal_active_experts != 0) o["nominal_active_experts"] = n.nominal_active_experts;
    if (n.routed_macs != 0) o["routed_macs"] = n.routed_macs;
    if (n.routed_other_flops != 0) o["routed_other_flops"] = n.routed_other_flops;
    if (n.datastore_bytes != 0) o["datastore_bytes"] = n.datastore_bytes;
    if (n.datastore_lookups != 0) o["datastore_lookups"] = n.datastore_lookups;
    if (n.datastore_bytes_read != 0) o["datastore_bytes_read"] = n.datastore_bytes_read;
    if (n.activity.measured()) o["activity"] = activity_to_json(n.activity);
    arr.push_back(std::move(o));
  }
  nlohmann::json j = {{"nodes", std::move(arr)}, {"input_bytes", input_bytes}};
  if (!measured.empty()) j["measured"] = measured;
  return j;
}

double function_eval_scale(const NodeWorkload& n) {
  if (n.nominal_function_evals <= 0) return 1.0;
  const double* measured = n.activity.find(activity_key::kFunctionEvals);
  return measured ? *measured / n.nominal_function_evals : 1.0;
}

std::optional<Workload> charge_measured_function_evals(const Workload& w) {
  std::optional<Workload> out;
  for (std::size_t i = 0; i < w.nodes.size(); ++i) {
    const double f = function_eval_scale(w.nodes[i]);
    if (f == 1.0) continue;
    if (!out) out = w;
    NodeWorkload& n = out->nodes[i];
    n.macs *= f;
    n.other_flops *= f;
    // Now counted at the measured figure: charging again (a nested fallback device) is a no-op.
    n.nominal_function_evals *= f;
    if (n.kernels > 0) n.kernels = std::max(1, static_cast<int>(std::lround(n.kernels * f)));
    if (n.eager_kernels > 0)
      n.eager_kernels = std::max(1, static_cast<int>(std::lround(n.eager_kernels * f)));
  }
  return out;
}

double active_expert_scale(const NodeWorkload& n) {
  if (n.nominal_active_experts <= 0) return 1.0;
  const double* measured = n.activity.find(activity_key::kActiveExperts);
  return measured ? *measured / n.nominal_active_experts : 1.0;
}

std::optional<Workload> charge_measured_activity(const Workload& w) {
  std::optional<Workload> out = charge_measured_function_evals(w);
  for (std::size_t i = 0; i < w.nodes.size(); ++i) {
    const double f = active_expert_scale(w.nodes[i]);
    if (f == 1.0) continue;
    if (!out) out = w;
    NodeWorkload& n = out->nodes[i];
    n.macs += (f - 1.0) * n.routed_macs;
    n.other_flops += (f - 1.0) * n.routed_other_flops;
    n.routed_macs *= f;
    n.routed_other_flops *= f;
    n.nominal_active_experts *= f;
  }
  for (std::size_t i = 0; i < w.nodes.size(); ++i) {
    if (w.nodes[i].datastore_bytes <= 0) continue;
    const double* read = w.nodes[i].activity.find(activity_key::kDatastoreBytesRead);
    if (!read || *read == w.nodes[i].datastore_bytes_read) continue;
    if (!out) out = w;
    out->nodes[i].datastore_bytes_read = *read;
  }
  return out;
}

std::string function_evals_source(const Workload& w) {
  int measured = 0, assumed = 0;
  for (const auto& n : w.nodes)
    if (n.nominal_function_evals > 0)
      ++(n.activity.find(activity_key::kFunctionEvals) ? measured : assumed);
  if (measured > 0 && assumed > 0) return "mixed";
  if (measured > 0) return "measured";
  return assumed > 0 ? "assumed" : "none";
}

Workload Workload::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("workload: must be a JSON object");
  Workload w;
  w.input_bytes = get_number(j, "input_bytes", "", 0);
  auto nit = j.find("nodes");
  if (nit == j.end()) bad_field("", "nodes", "is missing");
  if (!nit->is_array()) bad_field("", "nodes", "must be an array");
  w.nodes.reserve(nit->size());
  for (std::size_t i = 0; i < nit->size(); ++i) {
    const auto& o = (*nit)[i];
    std::string where = "node " + std::to_string(i) + ": ";
    if (!o.is_object()) throw std::invalid_argument("workload: " + where + "must be an object");
    NodeWorkload n;
    n.name = get_string(o, "name", where);
    n.block_kind = get_string(o, "block_kind", where);
    if (o.contains("category")) {
      std::string c = get_string(o, "category", where);
      try {
        n.category = op_category_from_name(c);
      } catch (const std::invalid_argument& e) {
        bad_field(where, "category", std::string("is invalid: ") + e.what());
      }
    }
    n.macs = get_number(o, "macs", where, 0);
    n.other_flops = get_number(o, "other_flops", where, 0);
    n.params = get_number(o, "params", where, 0);
    n.weight_bytes = get_number(o, "weight_bytes", where, 0);
    n.input_bytes = get_number(o, "input_bytes", where, 0);
    n.output_bytes = get_number(o, "output_bytes", where, 0);
    n.bits = get_int(o, "bits", where, 32, 1);
    if (n.bits > 64) bad_field(where, "bits", "must be between 1 and 64");
    n.sparsity = get_number(o, "sparsity", where, 0);
    if (n.sparsity > 1) bad_field(where, "sparsity", "must be in [0, 1]");
    n.channels = get_number(o, "channels", where, 0);
    n.channels_full = get_number(o, "channels_full", where, 0);
    if (n.channels > n.channels_full)
      bad_field(where, "channels", "must not exceed channels_full (the declared width)");
    n.kernels = get_int(o, "kernels", where, 1, 0);
    n.eager_kernels = get_int(o, "eager_kernels", where, -1, 0);
    n.seq_len = get_int(o, "seq_len", where, 0, 0);
    n.window = get_int(o, "window", where, 0, 0);
    n.stride = get_int(o, "stride", where, 0, 0);
    if (o.contains("kernel_type")) n.kernel_type = get_string(o, "kernel_type", where);
    n.neurons = get_number(o, "neurons", where, 0);
    n.fan_in = get_number(o, "fan_in", where, 0);
    n.fan_out = get_number(o, "fan_out", where, 0);
    n.synapses = get_number(o, "synapses", where, 0);
    n.spiking = get_bool(o, "spiking", where);
    n.timesteps = get_int(o, "timesteps", where, 1, 1);
    n.total_experts = get_number(o, "total_experts", where, 0);
    n.nominal_function_evals = get_number(o, "nominal_function_evals", where, 0);
    n.nominal_active_experts = get_number(o, "nominal_active_experts", where, 0);
    n.routed_macs = get_number(o, "routed_macs", where, 0);
    n.routed_other_flops = get_number(o, "routed_other_flops", where, 0);
    n.datastore_bytes = get_number(o, "datastore_bytes", where, 0);
    n.datastore_lookups = get_number(o, "datastore_lookups", where, 0);
    n.datastore_bytes_read = get_number(o, "datastore_bytes_read", where, 0);
    // Files written before activity became open kept four fixed fields behind "has_activity".
    if (get_bool(o, "has_activity", where)) {
      for (const char* key : {activity_key::kSpikes, activity_key::kSynapticOps,
                              activity_key::kActiveExperts, activity_key::kFunctionEvals})
        n.activity.scalars[key] = get_number(o, key, where, 0);
    }
    if (auto ait = o.find("activity"); ait != o.end()) read_activity(*ait, where, n.activity);
    w.nodes.push_back(std::move(n));
  }
  if (auto mit = j.find("measured"); mit != j.end()) {
    if (!mit->is_object()) bad_field("", "measured", "must be an object of numbers");
    for (auto it = mit->begin(); it != mit->end(); ++it) {
      if (!it->is_number()) bad_field("", "measured." + it.key(), "must be a number");
      w.measured[it.key()] = it->get<double>();
    }
  }
  return w;
}

}  // namespace hwnas::hw
