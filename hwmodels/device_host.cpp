// The machine hwnas runs on: latency is measured, not modelled.  The evaluator times the built
// model's forward pass (host_timer.hpp: warm-up, median of N, pinned thread) and stores it as
// workload.measured["host_latency_ms"]; this device reads it back.  Energy = a stated package
// power x latency.  The per-node breakdown apportions the measured time by FLOPs (a display aid,
// not a measurement).  At batch B > 1 it reads measured["<key>_b<B>"] (`hwnas hw measure
// --batch B` and the evaluator write it) and otherwise scales the batch-1 measurement by B,
// saying so in extra["batch_scaled_from_1"].
#include "hwmodels/device_base.hpp"

namespace hwnas::hw {
namespace {

class HostMeasured final : public DeviceBase {
 public:
  explicit HostMeasured(const nlohmann::json& d) : DeviceBase(d) {
    const auto& r = reader();
    key_ = r.string_or("measurement_key", "host_latency_ms");
    power_w_ = r.positive("power_w");
    capacity_ = r.positive_or("memory_bytes", 1e18);
  }

  bool supports(OpCategory) const override { return true; }
  bool calibratable() const override { return false; }

 protected:
  Cost run(const Workload& w, bool breakdown) const override {
    Cost c;
    double scale = 1;
    auto it = w.measured.end();
    if (batch() > 1) {
      it = w.measured.find(key_ + "_b" + std::to_string(batch()));
      if (it == w.measured.end() || !(it->second > 0)) {
        it = w.measured.find(key_);
        scale = batch();
        c.extra["batch_scaled_from_1"] = true;
      }
    } else {
      it = w.measured.find(key_);
    }
    if (it == w.measured.end() || !(it->second > 0)) {
      c.feasible = false;
      c.infeasible_reason = "no host measurement: workload.measured[\"" + key_ +
                            "\"] is missing (run with host timing enabled or `hwnas hw measure`)";
      return c;
    }
    const double t = scale * it->second * 1e-3;
    c.latency_ms = t * 1e3;
    c.energy_mj = power_w_ * t * energy_scale() * 1e3;
    c.memory_bytes = w.total_weight_bytes() + batch() * w.peak_activation_bytes();
    check_capacity(capacity_, "weights + activations", "RAM", c);
    if (breakdown) {
      double total = 0;
      for (const auto& n : w.nodes) total += n.flops();
      c.nodes.reserve(w.nodes.size());
      for (const auto& n : w.nodes) {
        const double share = total > 0 ? n.flops() / total : 1.0 / w.nodes.size();
        NodeCost nc;
        nc.name = n.name;
        nc.latency_s = t * share;
        nc.energy_j = power_w_ * t * share * energy_scale();
        nc.bound = "measured";
        c.nodes.push_back(std::move(nc));
      }
    }
    return c;
  }

  // The measured model ran with its datastore in this host's RAM.
  bool hold_datastore(const Workload&, double bytes, Cost& c) const override {
    return hold_within(capacity_, bytes, c);
  }

 private:
  std::string key_;
  double power_w_ = 0, capacity_ = 0;
};

}  // namespace

std::unique_ptr<Device> make_host_device(const nlohmann::json& d) {
  return std::make_unique<HostMeasured>(d);
}

}  // namespace hwnas::hw
