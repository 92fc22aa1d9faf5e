// Devices from shared libraries through the versioned C ABI in plugin_abi.h (versions 1 and 2). The
// dlopen handle is held by a shared_ptr with a dlclose deleter (RAII, STYLE 9) for the device's
// lifetime.
#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <mutex>

#include "hwmodels/device_base.hpp"
#include "hwmodels/plugin_abi.h"

namespace hwnas::hw {
namespace {

static_assert(HWNAS_OP_COUNT == static_cast<int>(OpCategory::kCount),
              "plugin_abi.h categories out of sync with OpCategory");
static_assert(HWNAS_OP_SPIKING == static_cast<int>(OpCategory::Spiking));
static_assert(HWNAS_OP_OTHER == static_cast<int>(OpCategory::Other));

static_assert(HWNAS_PLUGIN_ABI_VERSION == HWNAS_PLUGIN_ABI_V2, "newest ABI is handled below");

using Handle = std::shared_ptr<void>;

// One loaded library and its descriptor: exactly one of v1 / v2 is set.
struct Loaded {
  Handle handle;
  const hwnas_plugin_v1* v1 = nullptr;
  const hwnas_plugin_v2* v2 = nullptr;

  const char* name() const { return v2 ? v2->name : v1->name; }
  const char* description() const { return v2 ? v2->description : v1->description; }
  std::uint32_t flags() const { return v2 ? v2->flags : v1->flags; }
  int supports(std::int32_t c) const { return v2 ? v2->supports(c) : v1->supports(c); }
};

// The same checks for either version's descriptor.
template <class Api>
void check_descriptor(const std::string& path, const Api* api, std::uint32_t version,
                      const char* entry) {
  if (!api) throw std::invalid_argument("plugin '" + path + "': " + entry + "() returned NULL");
  if (api->abi_version != version)
    throw std::invalid_argument("plugin '" + path + "' was built for hwnas plugin ABI version " +
                                std::to_string(api->abi_version) + " (through " + entry +
                                "()); this hwnas supports version 1 through " HWNAS_PLUGIN_ENTRY_V1
                                "() and version 2 through " HWNAS_PLUGIN_ENTRY_V2
                                "() (rebuild it against plugin_abi.h)");
  if (api->struct_size != sizeof(Api))
    throw std::invalid_argument("plugin '" + path + "': descriptor size " +
                                std::to_string(api->struct_size) + " != expected " +
                                std::to_string(sizeof(Api)) + " for ABI version " +
                                std::to_string(version) + " (ABI mismatch)");
  if (!api->name || !*api->name || !api->supports || !api->estimate)
    throw std::invalid_argument("plugin '" + path +
                                "': descriptor lacks name, supports() or estimate()");
}

Loaded open_plugin(const std::string& path) {
  dlerror();
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* err = dlerror();
    throw std::invalid_argument("cannot load plugin '" + path + "': " + (err ? err : "unknown"));
  }
  Loaded l;
  l.handle = Handle(h, [](void* p) { dlclose(p); });
  // The newest entry first: a plugin may export both to serve older hwnas builds too.
  if (auto get2 = reinterpret_cast<hwnas_plugin_v2_get_fn>(dlsym(h, HWNAS_PLUGIN_ENTRY_V2))) {
    l.v2 = get2();
    check_descriptor(path, l.v2, HWNAS_PLUGIN_ABI_V2, HWNAS_PLUGIN_ENTRY_V2);
    return l;
  }
  auto get1 = reinterpret_cast<hwnas_plugin_v1_get_fn>(dlsym(h, HWNAS_PLUGIN_ENTRY_V1));
  if (!get1)
    throw std::invalid_argument("plugin '" + path +
                                "' does not export " HWNAS_PLUGIN_ENTRY_V1
                                "() or " HWNAS_PLUGIN_ENTRY_V2
                                "() (not an hwnas device plugin, or built for another ABI)");
  l.v1 = get1();
  check_descriptor(path, l.v1, HWNAS_PLUGIN_ABI_V1, HWNAS_PLUGIN_ENTRY_V1);
  return l;
}

void fill_node_v1(const NodeWorkload& n, hwnas_node_v1& o) {
  std::memset(&o, 0, sizeof o);
  o.name = n.name.c_str();
  o.block_kind = n.block_kind.c_str();
  o.category = static_cast<int32_t>(n.category);
  o.bits = n.bits;
  o.kernels = n.kernels;
  o.seq_len = n.seq_len;
  o.timesteps = n.timesteps;
  o.spiking = n.spiking;
  o.has_activity = n.activity.measured();
  o.macs = n.macs;
  o.other_flops = n.other_flops;
  o.params = n.params;
  o.weight_bytes = n.weight_bytes;
  o.input_bytes = n.input_bytes;
  o.output_bytes = n.output_bytes;
  o.sparsity = n.sparsity;
  o.neurons = n.neurons;
  o.fan_in = n.fan_in;
  o.fan_out = n.fan_out;
  o.synapses = n.synapses;
  // Version 1's fixed activity fields, from the open activity map.
  o.spikes = n.activity.scalar_or(activity_key::kSpikes, 0);
  o.synaptic_ops = n.activity.scalar_or(activity_key::kSynapticOps, 0);
  o.active_experts = n.activity.scalar_or(activity_key::kActiveExperts, 0);
  o.total_experts = n.total_experts;
  o.function_evals = n.activity.scalar_or(activity_key::kFunctionEvals, 0);
}

const char* activity_source_name(std::int32_t s) {
  switch (s) {
    case HWNAS_ACTIVITY_MEASURED:
      return "measured";
    case HWNAS_ACTIVITY_ASSUMED:
      return "assumed";
    case HWNAS_ACTIVITY_MIXED:
      return "mixed";
    default:
      return "none";
  }
}

class PluginDevice final : public DeviceBase {
 public:
  PluginDevice(const nlohmann::json& d, Loaded l) : DeviceBase(d), lib_(std::move(l)) {}

  bool supports(OpCategory c) const override { return lib_.supports(static_cast<int32_t>(c)) != 0; }
  bool thread_safe() const override { return lib_.flags() & HWNAS_PLUGIN_THREAD_SAFE; }
  bool calibratable() const override { return false; }

 protected:
  Cost run(const Workload& w, bool breakdown) const override {
    const std::size_t n = w.nodes.size();
    std::vector<double> lat(breakdown ? n : 0), en(lat.size());
    hwnas_estimate_v2 out;
    std::memset(&out, 0, sizeof out);
    out.base.feasible = 1;
    out.base.node_latency_s = breakdown ? lat.data() : nullptr;
    out.base.node_energy_j = breakdown ? en.data() : nullptr;
    int rc;
    if (lib_.v2) {
      // Views of the activity maps; names and values stay owned by `w` during the call.
      std::vector<hwnas_node_v2> nodes(n);
      std::vector<std::vector<hwnas_activity_scalar>> scalars(n);
      std::vector<std::vector<hwnas_activity_series>> series(n);
      for (std::size_t i = 0; i < n; ++i) {
        const NodeActivity& a = w.nodes[i].activity;
        for (const auto& [name, v] : a.scalars) scalars[i].push_back({name.c_str(), v});
        for (const auto& [name, v] : a.series)
          series[i].push_back({name.c_str(), v.size(), v.data()});
        hwnas_node_v2& o = nodes[i];
        std::memset(&o, 0, sizeof o);
        fill_node_v1(w.nodes[i], o.base);
        o.activity_samples = a.samples;
        o.n_scalars = scalars[i].size();
        o.scalars = scalars[i].empty() ? nullptr : scalars[i].data();
        o.n_series = series[i].size();
        o.series = series[i].empty() ? nullptr : series[i].data();
      }
      hwnas_workload_v2 cw{n, nodes.data(), w.input_bytes};
      rc = call([&] { return lib_.v2->estimate(&cw, &out); });
    } else {
      std::vector<hwnas_node_v1> nodes(n);
      for (std::size_t i = 0; i < n; ++i) fill_node_v1(w.nodes[i], nodes[i]);
      hwnas_workload_v1 cw{n, nodes.data(), w.input_bytes};
      rc = call([&] { return lib_.v1->estimate(&cw, &out.base); });
    }
    if (rc != 0)
      throw std::runtime_error("plugin device '" + name_ + "': estimate() failed with code " +
                               std::to_string(rc));
    hwnas_estimate_v1& r = out.base;
    r.reason[sizeof r.reason - 1] = '\0';
    Cost c;
    c.feasible = r.feasible != 0;
    if (!c.feasible) c.infeasible_reason = r.reason[0] ? r.reason : "reported infeasible by plugin";
    c.latency_ms = r.latency_s * 1e3;
    c.energy_mj = r.energy_j * energy_scale() * 1e3;
    c.memory_bytes = r.memory_bytes;
    // A version 1 plugin cannot say; it never sees more than the four fixed activity fields.
    c.activity_source = lib_.v2 ? activity_source_name(out.activity_source) : "none";
    if (breakdown) {
      c.nodes.reserve(n);
      for (std::size_t i = 0; i < n; ++i)
        c.nodes.push_back(NodeCost{w.nodes[i].name, lat[i], en[i] * energy_scale(), "plugin", 0});
    }
    return c;
  }

 private:
  template <class F>
  int call(F&& f) const {
    if (thread_safe()) return f();
    std::lock_guard<std::mutex> lock(mu_);
    return f();
  }

  Loaded lib_;
  mutable std::mutex mu_;  // serialises plugins that are not thread-safe
};

}  // namespace

std::unique_ptr<Device> make_plugin_device(const nlohmann::json& d) {
  FieldReader r(d, d.at("name").get<std::string>());
  const auto* p = r.find("path");
  if (!p || !p->is_string() || p->get<std::string>().empty())
    r.fail("path", "must be the path of a plugin shared library");
  return std::make_unique<PluginDevice>(d, open_plugin(p->get<std::string>()));
}

std::unique_ptr<Device> load_plugin_device(const std::string& path) {
  Loaded l = open_plugin(path);
  nlohmann::json d = {{"name", l.name()},
                      {"family", "plugin"},
                      {"path", path},
                      {"description", l.description() ? l.description() : ""}};
  return std::make_unique<PluginDevice>(d, std::move(l));
}

}  // namespace hwnas::hw
