// Lookup-table device (ProxylessNAS / nn-Meter style, docs/hardware.md §1.3): per-op latencies
// measured on the target, keyed by block kind, else by op category name.  An entry may give a
// reference "macs": the node's latency then scales linearly with its MACs.  Nodes with no entry
// go to the optional "fallback" device (any family, or a preset name); with no fallback the
// architecture is infeasible and the reason names the node.  LUT sums ignore fusion effects.
// Entries are per sample; a batch runs the samples one after another (table part x batch; the
// fallback device costs its own part at the batch it is given, which the LUT sets to its own).
#include <unordered_map>

#include "hwmodels/device_base.hpp"

namespace hwnas::hw {
namespace {

class LutDevice final : public DeviceBase {
 public:
  explicit LutDevice(const nlohmann::json& d) : DeviceBase(d) {
    const auto& r = reader();
    const auto* t = r.find("table");
    if (!t || !t->is_object() || t->empty())
      fail("table", "must be a non-empty object {block_kind or category: {latency_us, ...}}");
    for (auto it = t->begin(); it != t->end(); ++it) {
      const std::string p = "table." + it.key();
      if (!it->is_object()) fail(p, "must be an object {latency_us, energy_uj, macs}");
      // The family declares "table" as one JSON field, so its entries' keys are checked here:
      // a misspelt "energy_uJ" would otherwise be ignored and power_w x latency used instead.
      try {
        resolve_params(entry_fields(), *it, p, {});
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument("device '" + name() + "': " + e.what());
      }
      Entry e;
      e.latency_s = r.positive(p + ".latency_us") * 1e-6;
      e.energy_j = r.non_negative_or(p + ".energy_uj", 0) * 1e-6;
      e.ref_macs = r.non_negative_or(p + ".macs", 0);
      table_.emplace(it.key(), e);
    }
    power_w_ = r.non_negative_or("power_w", 0);
    capacity_ = r.positive_or("memory_bytes", 1e18);
    if (r.has("fallback")) {
      fallback_ = make_nested_device(r, "fallback");
      if (batch() != 1) fallback_ = with_batch(*fallback_, batch());
    }
  }

  static const std::vector<ParamSpec>& entry_fields() {
    // Only the keys are checked here; the values by FieldReader below, with its messages.
    static const std::vector<ParamSpec> f = {
        ParamSpec::any_json("latency_us", 0, "per-sample latency, us (> 0, required)"),
        ParamSpec::any_json("energy_uj", 0, "per-sample energy, uJ"),
        ParamSpec::any_json("macs", 0, "reference MACs the latency scales from")};
    return f;
  }

  bool supports(OpCategory c) const override {
    return table_.count(op_category_name(c)) || (fallback_ && fallback_->supports(c));
  }

 protected:
  Cost run(const Workload& w, bool breakdown) const override {
    Cost c;
    // Breakdown stays index-aligned with w.nodes (calibration relies on it).
    if (breakdown) c.nodes.resize(w.nodes.size());
    double t = 0, e = 0;
    Workload rest;
    std::vector<std::size_t> rest_idx;
    for (std::size_t i = 0; i < w.nodes.size(); ++i) {
      const auto& n = w.nodes[i];
      auto it = table_.find(n.block_kind);
      if (it == table_.end()) it = table_.find(op_category_name(n.category));
      if (it == table_.end()) {
        if (!fallback_) {
          c.feasible = false;
          c.infeasible_reason = "no lookup-table entry for node '" + n.name + "' (kind '" +
                                n.block_kind + "', category '" + op_category_name(n.category) +
                                "') and no fallback device";
          return c;
        }
        rest.nodes.push_back(n);
        rest_idx.push_back(i);
        continue;
      }
      const Entry& en = it->second;
      const double ratio = en.ref_macs > 0 ? n.macs / en.ref_macs : 1.0;
      const double tn = batch() * node_latency(n.category, en.latency_s * ratio, 0, 0);
      const double ej =
          (en.energy_j > 0 ? batch() * en.energy_j * ratio : power_w_ * tn) * energy_scale();
      t += tn;
      e += ej;
      if (breakdown) c.nodes[i] = NodeCost{n.name, tn, ej, "table", 0};
    }
    if (!rest.nodes.empty()) {
      // Fallback nodes are costed together, as one sub-workload.
      rest.input_bytes = rest.nodes.front().input_bytes;
      Cost f = breakdown ? fallback_->estimate(rest) : fallback_->estimate_total(rest);
      t += f.latency_ms * 1e-3;
      e += f.energy_mj * 1e-3;
      if (!f.feasible) {
        c.feasible = false;
        c.infeasible_reason = "fallback device: " + f.infeasible_reason;
      }
      for (std::size_t k = 0; k < f.nodes.size() && k < rest_idx.size(); ++k) {
        f.nodes[k].bound = "fallback:" + f.nodes[k].bound;
        c.nodes[rest_idx[k]] = std::move(f.nodes[k]);
      }
    }
    c.latency_ms = t * 1e3;
    c.energy_mj = e * 1e3;
    c.memory_bytes = w.total_weight_bytes() + w.peak_activation_bytes();
    if (c.memory_bytes > capacity_) {
      c.feasible = false;
      c.infeasible_reason = "weights + peak activations " + format_bytes(c.memory_bytes) + " > " +
                            format_bytes(capacity_);
    }
    return c;
  }

 private:
  struct Entry {
    double latency_s = 0, energy_j = 0, ref_macs = 0;
  };
  std::unordered_map<std::string, Entry> table_;
  double power_w_ = 0, capacity_ = 0;
  std::unique_ptr<Device> fallback_;
};

}  // namespace

std::unique_ptr<Device> make_lut_device(const nlohmann::json& d) {
  return std::make_unique<LutDevice>(d);
}

}  // namespace hwnas::hw
