// Devices from shared libraries through the versioned C ABI in plugin_abi.h (versions 1 and 2). The
// dlopen handle is held by a shared_ptr with a dlclose deleter (RAII, STYLE 9) for the device's
// lifetime.
//
// A plugin is someone else's code inside the search process, so hwnas guards it:
// - isolate (default on): each estimate() runs in a forked child that sends its result back
//   through a pipe.  A segfault, abort, exit() or a call that runs past timeout_s (the child is
//   killed) marks that cost infeasible with a message naming the plugin and what happened; the
//   search goes on.  The price is a fork per call (about a millisecond) and no state kept by
//   the plugin between calls.  "isolate": false calls it in-process (fast, unguarded).
// - every result is validated: a latency, energy or memory that is NaN, infinite or negative
//   (whole or per node) is never a cost; the cost is infeasible and names the plugin and field.
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <sstream>

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

// Writes all of buf to fd (the child's side of the pipe); false on error.
bool write_all(int fd, const void* buf, std::size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t k = ::write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

// How a child ended, in words.
std::string child_end(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* what = strsignal(sig);
    return "crashed with signal " + std::to_string(sig) + " (" + (what ? what : "?") + ")";
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended abnormally";
}

class PluginDevice final : public DeviceBase {
 public:
  PluginDevice(const nlohmann::json& d, Loaded l)
      : DeviceBase(d),
        lib_(std::move(l)),
        isolate_(reader().boolean_or("isolate", true)),
        timeout_s_(reader().positive_or("timeout_s", 60)) {}

  bool supports(OpCategory c) const override { return lib_.supports(static_cast<int32_t>(c)) != 0; }
  // An isolated call runs in its own process, so it may run concurrently whatever the plugin.
  bool thread_safe() const override {
    return isolate_ || (lib_.flags() & HWNAS_PLUGIN_THREAD_SAFE);
  }
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
    std::string failure;  // set when an isolated call did not come back
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
      rc = call([&] { return lib_.v2->estimate(&cw, &out); }, out, lat, en, failure);
    } else {
      std::vector<hwnas_node_v1> nodes(n);
      for (std::size_t i = 0; i < n; ++i) fill_node_v1(w.nodes[i], nodes[i]);
      hwnas_workload_v1 cw{n, nodes.data(), w.input_bytes};
      rc = call([&] { return lib_.v1->estimate(&cw, &out.base); }, out, lat, en, failure);
    }
    if (!failure.empty()) return failed(failure);
    if (rc != 0)
      throw std::runtime_error("plugin device '" + name_ + "': estimate() failed with code " +
                               std::to_string(rc));
    hwnas_estimate_v1& r = out.base;
    r.reason[sizeof r.reason - 1] = '\0';
    if (std::string bad = invalid_field(r, lat, en); !bad.empty()) return failed(bad);
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
  // Runs the plugin's estimate() (f), in a forked child when isolated: the child sends back
  // rc, the estimate and the per-node arrays; the pointers in `out` stay the parent's.  On a
  // crash, an exit, a short message or a timeout, `failure` says what happened.
  template <class F>
  int call(F&& f, hwnas_estimate_v2& out, std::vector<double>& lat, std::vector<double>& en,
           std::string& failure) const {
    if (!isolate_) {
      if (thread_safe()) return f();
      std::lock_guard<std::mutex> lock(mu_);
      return f();
    }
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("plugin device '" + name_ + "': pipe() failed");
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      throw std::runtime_error("plugin device '" + name_ + "': fork() failed");
    }
    if (pid == 0) {  // child: call, send, and leave without running any parent cleanup
      ::close(fds[0]);
      const int rc = f();
      const bool sent = write_all(fds[1], &rc, sizeof rc) && write_all(fds[1], &out, sizeof out) &&
                        write_all(fds[1], lat.data(), lat.size() * sizeof(double)) &&
                        write_all(fds[1], en.data(), en.size() * sizeof(double));
      ::_exit(sent ? 0 : 3);
    }
    ::close(fds[1]);
    const std::size_t want = sizeof(int) + sizeof out + 2 * lat.size() * sizeof(double);
    std::vector<char> buf(want);
    std::size_t got = 0;
    bool timed_out = false;
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
    while (got < want) {
      const double left =
          std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) {
        timed_out = true;
        break;
      }
      pollfd p{fds[0], POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(std::ceil(left * 1000)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        timed_out = true;
        break;
      }
      const ssize_t k = ::read(fds[0], buf.data() + got, want - got);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) break;  // the child ended before sending everything
      got += static_cast<std::size_t>(k);
    }
    ::close(fds[0]);
    if (timed_out) ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::ostringstream what;
    what << "plugin device '" << name_ << "' (" << lib_.name() << "): estimate() ";
    if (timed_out) {
      what << "did not return within timeout_s = " << timeout_s_ << " s and was killed";
      failure = what.str();
      return 0;
    }
    if (got < want || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      what << child_end(status) << " before returning a result";
      failure = what.str();
      return 0;
    }
    double* keep_lat = out.base.node_latency_s;
    double* keep_en = out.base.node_energy_j;
    int rc = 0;
    std::memcpy(&rc, buf.data(), sizeof rc);
    std::memcpy(&out, buf.data() + sizeof rc, sizeof out);
    out.base.node_latency_s = keep_lat;
    out.base.node_energy_j = keep_en;
    const char* arrays = buf.data() + sizeof rc + sizeof out;
    std::memcpy(lat.data(), arrays, lat.size() * sizeof(double));
    std::memcpy(en.data(), arrays + lat.size() * sizeof(double), en.size() * sizeof(double));
    return rc;
  }

  // The first figure that cannot be a cost ("" when all are finite and >= 0).
  std::string invalid_field(const hwnas_estimate_v1& r, const std::vector<double>& lat,
                            const std::vector<double>& en) const {
    auto bad = [](double v) { return !std::isfinite(v) || v < 0; };
    auto msg = [&](const std::string& field, double v) {
      std::ostringstream s;
      s << "plugin device '" << name_ << "' (" << lib_.name() << "): estimate() returned " << field
        << " = " << v << "; a cost must be a finite number >= 0";
      return s.str();
    };
    if (bad(r.latency_s)) return msg("latency_s", r.latency_s);
    if (bad(r.energy_j)) return msg("energy_j", r.energy_j);
    if (bad(r.memory_bytes)) return msg("memory_bytes", r.memory_bytes);
    for (std::size_t i = 0; i < lat.size(); ++i) {
      if (bad(lat[i])) return msg("node_latency_s[" + std::to_string(i) + "]", lat[i]);
      if (bad(en[i])) return msg("node_energy_j[" + std::to_string(i) + "]", en[i]);
    }
    return "";
  }

  // A cost that failed: infeasible, the figures not computed (NaN, stored as NULL).
  static Cost failed(const std::string& why) {
    Cost c;
    c.feasible = false;
    c.infeasible_reason = why;
    c.latency_ms = c.energy_mj = c.memory_bytes = std::nan("");
    return c;
  }

  Loaded lib_;
  bool isolate_;
  double timeout_s_;
  mutable std::mutex mu_;  // serialises plugins that are not thread-safe (in-process calls)
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
