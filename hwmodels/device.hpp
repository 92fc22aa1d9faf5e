// Device models: turn a Workload into latency, energy and memory on one target.
//
// A device is a plain class implementing Device; families (roofline GPU, edge CPU, Edge TPU,
// MCU, neuromorphic, host-measured, lookup-table, plugin) are built from a JSON description
// whose "family" field picks the family's registry entry (DeviceFamily below).  Presets live in
// hwmodels/devices/*.json.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/registry.hpp"
#include "hwmodels/workload.hpp"

namespace hwnas::hw {

struct NodeCost {
  std::string name;
  double latency_s = 0;
  double energy_j = 0;
  std::string bound;      // "compute", "memory", "launch", "fallback-cpu", "event", ...
  double overhead_s = 0;  // part of latency_s that is fixed per-kernel overhead (launch, dispatch)
};

struct Cost {
  bool feasible = true;
  std::string
      infeasible_reason;  // set when !feasible, e.g. "peak activations 412 kB > SRAM 320 kB"
  double latency_ms = 0;  // per inference at the device's batch size
  double energy_mj = 0;   // per inference (batch)
  int batch = 1;          // samples the latency and energy cover (the device's "batch")
  // Part of the network that ran somewhere else than the device (Edge TPU ops falling back to
  // the host CPU): the nodes, the first of them and why.  0 / empty: everything ran on it.
  int fallback_nodes = 0;
  std::string fallback;     // e.g. "37 of 80 nodes on host CPU rpi4_a72 from n1:conv (not int8)"
  double memory_bytes = 0;  // peak memory the device must hold
  nlohmann::json extra = nlohmann::json::object();  // family-specific figures (cores used, ...)
  // Where the activity figures (spike rates, densities) behind this cost came from: "measured"
  // (every node's from the evaluation), "assumed" (device presets), "mixed", or "none" (the
  // model does not use activity).  Stored with each cost row.
  std::string activity_source = "none";
  std::vector<NodeCost> nodes;  // per-node breakdown
};

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string name() const = 0;
  virtual std::string family() const = 0;
  virtual bool supports(OpCategory c) const = 0;
  virtual Cost estimate(const Workload& w) const = 0;
  // Totals only (Cost::nodes left empty): the fast path for scoring many architectures.
  virtual Cost estimate_total(const Workload& w) const {
    Cost c = estimate(w);
    c.nodes.clear();
    return c;
  }
  // Many architectures at once, in order.  The same as estimate() on each; a device that can
  // amortise a batch (an external process that measures several networks per request) overrides.
  virtual std::vector<Cost> estimate_many(const std::vector<Workload>& ws) const {
    std::vector<Cost> out;
    out.reserve(ws.size());
    for (const auto& w : ws) out.push_back(estimate(w));
    return out;
  }
  virtual nlohmann::json to_json() const = 0;  // round-trips through make_device()
  // Whether estimate() may be called concurrently from several threads.
  virtual bool thread_safe() const { return true; }
  // Whether the model reads Workload::architecture (the genome), e.g. an external program that
  // builds the network to time it.  Callers fill it only then: it costs a JSON parse per call.
  virtual bool wants_architecture() const { return false; }
  // Whether a cost takes long enough to get (a real measurement, a remote device) to be kept in
  // the store's cost cache, keyed by architecture, device_fingerprint() and batch.  Such a
  // model must depend on the architecture and batch only, not on measured activity.
  virtual bool caches_costs() const { return false; }
};

// A stable hash of the device's whole description (to_json()): two devices with the same
// fingerprint give the same costs.  16 hex digits.
std::string device_fingerprint(const Device& d);

// A device family: the device family's registry entry.  `params` declares every field of the
// family's JSON description, nested ones by dotted path ("power.tdp_w"); the common fields
// (name, family, description, sources, calibration, ...) are appended at registration.
// make_device() refuses a description with a field outside this list, naming the field and
// the known ones; the factory validates the values themselves (FieldReader in
// device_base.hpp), so a spec's domain documents what the factory enforces.
struct DeviceFamily {
  std::string name;
  std::string description;
  std::vector<ParamSpec> params;
  std::function<std::unique_ptr<Device>(const nlohmann::json& description)> make;
};

// Fields every family accepts (appended to each family's params at registration).
std::vector<ParamSpec> common_device_params();
// Registers the built-in families (hwmodels/device_families.cpp).  Adding a family: one file
// hwmodels/device_<name>.cpp with its factory, and one entry there declaring its fields.
void register_builtin_device_families(Registry<DeviceFamily>& r);
// The process-wide registry of device families, filled on first use (thread-safe).
const Registry<DeviceFamily>& device_families();

// Builds a device from its JSON description; throws std::invalid_argument naming the field.
std::unique_ptr<Device> make_device(const nlohmann::json& description);
// Resolves a preset name (e.g. "h100_sxm"), a path to a device JSON, or a plugin path (.so).
std::unique_ptr<Device> load_device(const std::string& name_or_path);
// The same device at another batch size: its description with "batch" set, rebuilt (throws
// std::invalid_argument for batch < 1 or a device without a JSON description).
std::unique_ptr<Device> with_batch(const Device& d, int batch);
// load_device() at the given batch (the device unchanged when it is already at that batch).
std::unique_ptr<Device> load_device(const std::string& name_or_path, int batch);
// Names of the presets shipped in hwmodels/devices/ (or $HWNAS_DEVICE_DIR), sorted.
std::vector<std::string> preset_names();
// The directory presets are read from.
std::string preset_dir();
// Family names make_device() accepts, sorted (device_families().names()).
std::vector<std::string> family_names();
// Human-readable byte count ("412.0 kB", "1.50 MB") used in infeasibility reasons and tables.
std::string format_bytes(double bytes);

}  // namespace hwnas::hw
