// Roofline GPU (Williams, Waterman & Patterson 2009; docs/hardware.md §1.3):
//   t_node = max(batch*FLOPs / (eff[cat] * peak[bits]), bytes / (eff_mem * BW)) + kernels *
//   t_launch
// bytes = weights (read once per batch) + batch * activations in/out.  peak[bits] is the rate of
// the precision the node runs as: a precision the GPU does not run natively ("native_precisions",
// default the peak_flops keys) runs at the next wider native one (int4 on Hopper as int8), its
// activations at that width, its weights packed (device_base.hpp NativePrecisions).  Kernels are
// counted by the preset's "fusion" rule (NodeWorkload::kernels_for); a node that launches nothing
// (kernels 0, no FLOPs, no bytes) costs nothing. Energy: P_idle * t + (P_tdp - P_idle) * t_busy,
// with t_busy = the roofline term (the unit that bounds the node is taken as fully busy; launch
// gaps draw idle power only).
#include <algorithm>
#include <cmath>

#include "hwmodels/device_base.hpp"

namespace hwnas::hw {
namespace {

class RooflineGpu final : public DeviceBase {
 public:
  explicit RooflineGpu(const nlohmann::json& d) : DeviceBase(d) {
    const auto& r = reader();
    matrix_peak_ = PrecisionTable::read_native(r, "peak_flops", native_);
    tf32_for_fp32_ = r.boolean_or("tf32_for_fp32", false);
    if (tf32_for_fp32_) {
      const double tf32 = r.positive("tf32_flops");
      for (std::size_t i = 0; i < kNumPrecisions; ++i)  // fp32 and whatever runs as fp32
        if (*native_.run_as(static_cast<Precision>(i)) == Precision::Fp32) matrix_peak_.v[i] = tf32;
    }
    vector_peak_ = r.positive("vector_flops");
    bw_ = r.positive("mem_bw");
    eff_mem_ = r.fraction_or("mem_efficiency", 1.0);
    eff_ = CategoryTable::read(r, "efficiency", 1.0);
    launch_s_ = r.non_negative_or("launch_s", 0);
    capacity_ = r.positive("memory_bytes");
    idle_w_ = r.non_negative_or("power.idle_w", 0);
    tdp_w_ = r.positive("power.tdp_w");
    if (idle_w_ > tdp_w_) fail("power.idle_w", "must not exceed power.tdp_w");
    r.one_of("power.model", {"idle_plus_busy"}, "idle_plus_busy");
    // Which categories run on the matrix units (tensor cores); the rest use vector_flops.
    is_matrix_.fill(false);
    const auto* mc = r.find("matrix_categories");
    if (!mc) {
      for (auto c : {OpCategory::Dense, OpCategory::Conv, OpCategory::Attention})
        is_matrix_[cat_index(c)] = true;
    } else {
      if (!mc->is_array()) fail("matrix_categories", "must be an array of op category names");
      for (const auto& x : *mc) {
        if (!x.is_string()) fail("matrix_categories", "must be an array of op category names");
        try {
          is_matrix_[cat_index(op_category_from_name(x.get<std::string>()))] = true;
        } catch (const std::invalid_argument& e) {
          fail("matrix_categories", e.what());
        }
      }
    }
    build_inverse_table();
  }

  bool supports(OpCategory) const override { return true; }

  // Seconds per FLOP by (category, precision), so the hot loop has no divisions.
  void build_inverse_table() {
    for (std::size_t c = 0; c < kNumCategories; ++c)
      for (std::size_t p = 0; p < kNumPrecisions; ++p)
        inv_rate_[c][p] =
            batch() / (eff_.v[c] * (is_matrix_[c] ? matrix_peak_.v[p] : vector_peak_));
    // A non-native precision moves its activations at the width it runs as.
    for (std::size_t p = 0; p < kNumPrecisions; ++p)
      act_scale_[p] =
          double(precision_bits(*native_.run_as(static_cast<Precision>(p)))) / kPrecisionBits[p];
  }

  double static_power_w() const override { return idle_w_; }

 protected:
  Cost run(const Workload& w, bool breakdown) const override {
    Cost c;
    if (breakdown) c.nodes.reserve(w.nodes.size());
    const double b = batch();
    const double inv_bw = 1.0 / (eff_mem_ * bw_);
    double t = 0, busy = 0, weights = 0, peak_act = w.input_bytes;
    for (const auto& n : w.nodes) {
      const std::size_t ci = cat_index(n.category);
      const auto p = static_cast<std::size_t>(precision_of_bits(n.bits));
      // Pruned weights: dense kernels gain nothing from unstructured sparsity, so FLOPs stay.
      const double tc = n.flops() * inv_rate_[ci][p];
      const double tm =
          (n.weight_bytes + b * (n.input_bytes + n.output_bytes) * act_scale_[p]) * inv_bw;
      const double body = std::max(tc, tm);
      const int k = kernels_of(n);
      const double tn = node_latency(n.category, body, k, launch_s_);
      const double body_cal = tn - node_overhead(k, launch_s_);
      t += tn;
      busy += body_cal;
      weights += n.weight_bytes;
      peak_act =
          std::max(peak_act, n.input_bytes + n.output_bytes);  // as Workload::peak_activation_bytes
      if (breakdown) {
        const char* bound = body == 0 ? "launch" : tc >= tm ? "compute" : "memory";
        if (body_cal < tn - body_cal) bound = "launch";
        NodeCost nc;
        nc.name = n.name;
        nc.latency_s = tn;
        nc.overhead_s = tn - body_cal;
        nc.energy_j = (idle_w_ * tn + (tdp_w_ - idle_w_) * body_cal) * energy_scale();
        nc.bound = bound;
        c.nodes.push_back(std::move(nc));
      }
    }
    if (breakdown) note_non_native_precisions(w, native_, "", c);
    c.latency_ms = t * 1e3;
    c.energy_mj = (idle_w_ * t + (tdp_w_ - idle_w_) * busy) * energy_scale() * 1e3;
    c.memory_bytes = weights + b * peak_act;
    check_capacity(capacity_, "weights + batch x peak activations", "device memory", c);
    return c;
  }

  // The datastore sits in device memory next to the weights and activations when it fits.
  bool hold_datastore(const Workload&, double bytes, Cost& c) const override {
    return hold_within(capacity_, bytes, c);
  }

 private:
  PrecisionTable matrix_peak_;
  NativePrecisions native_;
  std::array<double, kNumPrecisions> act_scale_{};
  bool tf32_for_fp32_ = false;
  double vector_peak_ = 0, bw_ = 0, eff_mem_ = 1;
  CategoryTable eff_;
  double launch_s_ = 0, capacity_ = 0, idle_w_ = 0, tdp_w_ = 0;
  std::array<bool, kNumCategories> is_matrix_{};
  std::array<std::array<double, kNumPrecisions>, kNumCategories> inv_rate_{};
};

}  // namespace

std::unique_ptr<Device> make_gpu_device(const nlohmann::json& d) {
  return std::make_unique<RooflineGpu>(d);
}

}  // namespace hwnas::hw
