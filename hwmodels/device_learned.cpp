// A device whose latency is predicted by a learned kernel-level model (learned_predictor.hpp)
// fitted to per-node measurements by `hwnas hw fit`:
//   {"name": ..., "family": "learned", "model": "<model file, relative to the device JSON>",
//    "fusion": "eager", "power_w": 65}
// Latency = the model's network prediction at the device's batch.  Energy = power_w x latency
// when power_w is given; without it the device states no power, so Cost::energy_mj is 0 and
// extra["energy"] says it is not reported (an energy objective then sees 0 for every
// architecture: give power_w to rank by energy).  A batch other than the one the model was
// measured at is extrapolated by the regressors and flagged in extra["batch_extrapolated"].
#include <cmath>

#include "hwmodels/device_base.hpp"
#include "hwmodels/learned_predictor.hpp"

namespace hwnas::hw {
namespace {

class LearnedDevice final : public DeviceBase {
 public:
  explicit LearnedDevice(const nlohmann::json& d) : DeviceBase(d) {
    const auto& r = reader();
    const std::string path = r.string_or("model", "");
    if (path.empty()) fail("model", "is required: the model file `hwnas hw fit` wrote");
    try {
      model_ = learned::load_model_file(path);
    } catch (const std::invalid_argument& e) {
      fail("model", e.what());
    }
    power_w_ = r.non_negative_or("power_w", 0);
    capacity_ = r.positive_or("memory_bytes", 1e18);
  }

  bool supports(OpCategory) const override { return true; }
  bool calibratable() const override { return false; }

 protected:
  Cost run(const Workload& w, bool breakdown) const override {
    Cost c;
    double sum = 0;
    if (breakdown) c.nodes.reserve(w.nodes.size());
    for (const auto& n : w.nodes) {
      // Under the fused rule a node with no kernel of its own runs inside its producer's.
      const double ms = eager() || n.kernels > 0 ? model_.node_ms(n, batch(), eager()) : 0.0;
      sum += ms;
      if (breakdown) {
        NodeCost nc;
        nc.name = n.name;
        nc.latency_s = (model_.net_scale * ms + model_.net_per_node_ms) * 1e-3;
        nc.energy_j = power_w_ * nc.latency_s;
        std::string level;
        model_.model_for(n, &level);
        nc.bound = "learned-" + level;
        c.nodes.push_back(std::move(nc));
      }
    }
    c.latency_ms = std::max(0.0, model_.net_scale * sum + model_.net_offset_ms +
                                     model_.net_per_node_ms * static_cast<double>(w.nodes.size()));
    c.energy_mj = power_w_ * c.latency_ms;
    if (power_w_ <= 0) c.extra["energy"] = "not reported: the device states no power_w";
    c.extra["net_offset_ms"] = model_.net_offset_ms;  // not in any node's breakdown
    if (batch() != model_.batch) c.extra["batch_extrapolated"] = model_.batch;
    c.memory_bytes = w.total_weight_bytes() + batch() * w.peak_activation_bytes();
    check_capacity(capacity_, "weights + activations", "RAM", c);
    return c;
  }

  bool hold_datastore(const Workload&, double bytes, Cost& c) const override {
    return hold_within(capacity_, bytes, c);
  }

 private:
  learned::LearnedModel model_;
  double power_w_ = 0, capacity_ = 0;
};

}  // namespace

std::unique_ptr<Device> make_learned_device(const nlohmann::json& d) {
  return std::make_unique<LearnedDevice>(d);
}

}  // namespace hwnas::hw
