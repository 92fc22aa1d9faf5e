// Devices from shared libraries through the versioned C ABI in plugin_abi.h.  The dlopen handle
// is held by a shared_ptr with a dlclose deleter (RAII, STYLE 9) for the device's lifetime.
#include <dlfcn.h>

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

using Handle = std::shared_ptr<void>;

struct Loaded {
  Handle handle;
  const hwnas_plugin_v1* api = nullptr;
};

Loaded open_plugin(const std::string& path) {
  dlerror();
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* err = dlerror();
    throw std::invalid_argument("cannot load plugin '" + path + "': " + (err ? err : "unknown"));
  }
  Handle handle(h, [](void* p) { dlclose(p); });
  auto get = reinterpret_cast<hwnas_plugin_v1_get_fn>(dlsym(h, HWNAS_PLUGIN_ENTRY));
  if (!get)
    throw std::invalid_argument("plugin '" + path + "' does not export " HWNAS_PLUGIN_ENTRY
                                "() (not an hwnas device plugin, or built for another ABI)");
  const hwnas_plugin_v1* api = get();
  if (!api) throw std::invalid_argument("plugin '" + path + "': " HWNAS_PLUGIN_ENTRY "() returned NULL");
  if (api->abi_version != HWNAS_PLUGIN_ABI_VERSION)
    throw std::invalid_argument("plugin '" + path + "' was built for hwnas plugin ABI version " +
                                std::to_string(api->abi_version) + "; this hwnas supports version " +
                                std::to_string(HWNAS_PLUGIN_ABI_VERSION) + " (rebuild it against plugin_abi.h)");
  if (api->struct_size != sizeof(hwnas_plugin_v1))
    throw std::invalid_argument("plugin '" + path + "': descriptor size " +
                                std::to_string(api->struct_size) + " != expected " +
                                std::to_string(sizeof(hwnas_plugin_v1)) + " (ABI mismatch)");
  if (!api->name || !*api->name || !api->supports || !api->estimate)
    throw std::invalid_argument("plugin '" + path +
                                "': descriptor lacks name, supports() or estimate()");
  return {std::move(handle), api};
}

class PluginDevice final : public DeviceBase {
 public:
  PluginDevice(const nlohmann::json& d, Loaded l) : DeviceBase(d), lib_(std::move(l)) {}

  bool supports(OpCategory c) const override {
    return lib_.api->supports(static_cast<int32_t>(c)) != 0;
  }
  bool thread_safe() const override { return lib_.api->flags & HWNAS_PLUGIN_THREAD_SAFE; }
  bool calibratable() const override { return false; }

 protected:
  Cost run(const Workload& w, bool breakdown) const override {
    std::vector<hwnas_node_v1> nodes(w.nodes.size());
    for (std::size_t i = 0; i < w.nodes.size(); ++i) {
      const auto& n = w.nodes[i];
      hwnas_node_v1& o = nodes[i];
      std::memset(&o, 0, sizeof o);
      o.name = n.name.c_str();
      o.block_kind = n.block_kind.c_str();
      o.category = static_cast<int32_t>(n.category);
      o.bits = n.bits;
      o.kernels = n.kernels;
      o.seq_len = n.seq_len;
      o.timesteps = n.timesteps;
      o.spiking = n.spiking;
      o.has_activity = n.has_activity;
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
      o.spikes = n.spikes;
      o.synaptic_ops = n.synaptic_ops;
      o.active_experts = n.active_experts;
      o.total_experts = n.total_experts;
      o.function_evals = n.function_evals;
    }
    hwnas_workload_v1 cw{nodes.size(), nodes.data(), w.input_bytes};
    std::vector<double> lat(breakdown ? w.nodes.size() : 0), en(lat.size());
    hwnas_estimate_v1 out;
    std::memset(&out, 0, sizeof out);
    out.feasible = 1;
    out.node_latency_s = breakdown ? lat.data() : nullptr;
    out.node_energy_j = breakdown ? en.data() : nullptr;
    int rc;
    if (thread_safe()) {
      rc = lib_.api->estimate(&cw, &out);
    } else {
      std::lock_guard<std::mutex> lock(mu_);
      rc = lib_.api->estimate(&cw, &out);
    }
    if (rc != 0)
      throw std::runtime_error("plugin device '" + name_ + "': estimate() failed with code " +
                               std::to_string(rc));
    out.reason[sizeof out.reason - 1] = '\0';
    Cost c;
    c.feasible = out.feasible != 0;
    if (!c.feasible) c.infeasible_reason = out.reason[0] ? out.reason : "reported infeasible by plugin";
    c.latency_ms = out.latency_s * 1e3;
    c.energy_mj = out.energy_j * energy_scale() * 1e3;
    c.memory_bytes = out.memory_bytes;
    if (breakdown) {
      c.nodes.reserve(w.nodes.size());
      for (std::size_t i = 0; i < w.nodes.size(); ++i)
        c.nodes.push_back(NodeCost{w.nodes[i].name, lat[i], en[i] * energy_scale(), "plugin", 0});
    }
    return c;
  }

 private:
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
  nlohmann::json d = {{"name", l.api->name},
                      {"family", "plugin"},
                      {"path", path},
                      {"description", l.api->description ? l.api->description : ""}};
  return std::make_unique<PluginDevice>(d, std::move(l));
}

}  // namespace hwnas::hw
