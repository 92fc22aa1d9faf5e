// Cortex-M MCU (MCUNet / TinyEngine style deployment): no DRAM, activations must fit SRAM and
// weights must fit flash, otherwise infeasible with both figures in the reason.
// Latency per node = MACs / (macs_per_cycle[bits] * f) + other ops / (other_ops_per_cycle * f);
// a precision the MCU does not run natively ("native_precisions", default the macs_per_cycle
// keys: fp32 on the FPU, int8 through CMSIS-NN) runs at the next wider native one: int4 as int8
// (CMSIS-NN's s4 kernels unpack packed 4-bit weights to int8 in registers; the weights stay
// packed in flash, the activations are int8), fp16 as fp32 (the M7 FPU has no fp16 arithmetic).
// The effective MAC rate already includes memory stalls (it is derived from measured
// throughput, docs/hardware.md §2.3).  Energy = active power x latency.  A batch is that many
// samples run one after another in the same SRAM arena: latency and energy scale with it, the
// memory does not.
#include <algorithm>

#include "hwmodels/device_base.hpp"

namespace hwnas::hw {
namespace {

class Mcu final : public DeviceBase {
 public:
  explicit Mcu(const nlohmann::json& d) : DeviceBase(d) {
    const auto& r = reader();
    freq_ = r.positive("freq_hz");
    mpc_ = PrecisionTable::read_native(r, "macs_per_cycle", native_);
    other_pc_ = r.positive("other_ops_per_cycle");
    sram_ = r.positive("sram_bytes");
    flash_ = r.positive("flash_bytes");
    reserved_ = r.non_negative_or("runtime_sram_bytes", 0);
    if (reserved_ >= sram_) fail("runtime_sram_bytes", "must be smaller than sram_bytes");
    power_w_ = r.positive("active_power_w");
    overhead_s_ = r.non_negative_or("op_overhead_s", 0);
    for (std::size_t p = 0; p < kNumPrecisions; ++p) {
      s_per_mac_[p] = 1.0 / (mpc_.v[p] * freq_);
      act_scale_[p] =
          double(precision_bits(*native_.run_as(static_cast<Precision>(p)))) / kPrecisionBits[p];
    }
    s_per_op_ = 1.0 / (other_pc_ * freq_);
  }

  bool supports(OpCategory) const override { return true; }

 protected:
  Cost run(const Workload& w, bool breakdown) const override {
    Cost c;
    if (breakdown) c.nodes.reserve(w.nodes.size());
    double t = 0;
    // Peak activations as Workload::peak_activation_bytes, at the width each node runs as (int4
    // activations of CMSIS-NN's s4 kernels are int8); weights stay packed in flash.
    double act = w.input_bytes;
    for (const auto& n : w.nodes) {
      const auto p = static_cast<std::size_t>(precision_of_bits(n.bits));
      act = std::max(act, (n.input_bytes + n.output_bytes) * act_scale_[p]);
      const double body = n.macs * s_per_mac_[p] + n.other_flops * s_per_op_;
      const int k = kernels_of(n);
      const double tn = batch() * node_latency(n.category, body, k, overhead_s_);
      t += tn;
      if (breakdown) {
        NodeCost nc;
        nc.name = n.name;
        nc.latency_s = tn;
        nc.overhead_s = batch() * node_overhead(k, overhead_s_);
        nc.energy_j = power_w_ * tn * energy_scale();
        nc.bound = "compute";
        c.nodes.push_back(std::move(nc));
      }
    }
    const double weights = w.total_weight_bytes();
    c.latency_ms = t * 1e3;
    c.energy_mj = power_w_ * t * energy_scale() * 1e3;
    c.memory_bytes = act;  // SRAM; weights stay in flash
    const double sram_free = sram_ - reserved_;
    if (act > sram_free) {
      c.feasible = false;
      c.infeasible_reason =
          "peak activations " + format_bytes(act) + " > SRAM " + format_bytes(sram_free);
    }
    if (weights > flash_) {
      c.feasible = false;
      c.infeasible_reason += std::string(c.infeasible_reason.empty() ? "" : "; ") + "weights " +
                             format_bytes(weights) + " > flash " + format_bytes(flash_);
    }
    if (breakdown) {
      note_non_native_precisions(w, native_, "", c);
      c.extra["sram_bytes_used"] = act;
      c.extra["flash_bytes_used"] = weights;
    }
    return c;
  }

  // A datastore is read-only, like the weights: it lives in flash when both fit.
  bool hold_datastore(const Workload& w, double bytes, Cost& c) const override {
    const double used = w.total_weight_bytes() + bytes;
    if (used > flash_) return false;
    if (c.extra.contains("flash_bytes_used")) c.extra["flash_bytes_used"] = used;
    return true;
  }

 private:
  double freq_ = 0;
  PrecisionTable mpc_;
  NativePrecisions native_;
  double other_pc_ = 0, sram_ = 0, flash_ = 0, reserved_ = 0, power_w_ = 0, overhead_s_ = 0;
  double s_per_mac_[kNumPrecisions] = {}, s_per_op_ = 0, act_scale_[kNumPrecisions] = {};
};

}  // namespace

std::unique_ptr<Device> make_mcu_device(const nlohmann::json& d) {
  return std::make_unique<Mcu>(d);
}

}  // namespace hwnas::hw
