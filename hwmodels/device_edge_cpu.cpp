// Edge CPU (Cortex-A72 / A75-class): roofline on the NEON peak
//   peak[bits] = cores * freq * flops_per_cycle[bits]
// (bits: the precision the node runs as; a non-native one, e.g. fp16 on the ARMv8.0 A72, runs
// at the next wider native one, with that one's energy and activation width: NativePrecisions)
// against measured (STREAM) DRAM bandwidth, plus an interpreter overhead per kernel (TFLite op
// dispatch, counted by the preset's "fusion" rule).  A batch runs as one pass: FLOPs and
// activation bytes scale with it, weights are read once, the dispatch overhead is paid once per
// op (TFLite resizes the input tensor; the interpreter still invokes each op once).  Energy:
// Horowitz 45 nm per-op energies scaled to the SoC's node and voltage, plus DRAM traffic at
// dram_pj_per_byte (not scaled: off-chip I/O dominates), plus static power over the latency.
#include <algorithm>

#include "hwmodels/energy45.hpp"

namespace hwnas::hw {
namespace {

class EdgeCpu final : public DeviceBase {
 public:
  explicit EdgeCpu(const nlohmann::json& d) : DeviceBase(d) {
    const auto& r = reader();
    const double cores = r.positive_int("cores");
    const double freq = r.positive("freq_hz");
    PrecisionTable fpc = PrecisionTable::read_native(r, "flops_per_cycle", native_);
    for (std::size_t i = 0; i < kNumPrecisions; ++i) peak_[i] = cores * freq * fpc.v[i];
    bw_ = r.positive("mem_bw");
    eff_ = CategoryTable::read(r, "efficiency", 1.0);
    overhead_s_ = r.non_negative_or("op_overhead_s", 0);
    capacity_ = r.positive("memory_bytes");
    r.one_of("energy.model", {"horowitz45_scaled"}, "horowitz45_scaled");
    const double s = horowitz_scale(r.positive("energy.process_nm"), r.positive("energy.vdd"));
    for (std::size_t i = 0; i < kNumPrecisions; ++i) {
      // A non-native precision spends the energy and moves the activations of what it runs as.
      const Precision as = *native_.run_as(static_cast<Precision>(i));
      mac_j_[i] = kMacPj45[static_cast<std::size_t>(as)] * s * 1e-12;
      add_j_[i] = kAddPj45[static_cast<std::size_t>(as)] * s * 1e-12;
      act_scale_[i] = double(precision_bits(as)) / kPrecisionBits[i];
    }
    dram_j_per_byte_ = r.positive("energy.dram_pj_per_byte") * 1e-12;
    static_w_ = r.non_negative_or("energy.static_w", 0);
    for (std::size_t c = 0; c < kNumCategories; ++c)
      for (std::size_t p = 0; p < kNumPrecisions; ++p)
        inv_rate_[c][p] = 1.0 / (eff_.v[c] * peak_[p]);
    inv_bw_ = 1.0 / bw_;
  }

  bool supports(OpCategory) const override { return true; }

  double static_power_w() const override { return static_w_; }

 protected:
  Cost run(const Workload& w, bool breakdown) const override {
    Cost c;
    if (breakdown) c.nodes.reserve(w.nodes.size());
    double t = 0, e = 0;
    const double b = batch();
    for (const auto& n : w.nodes) {
      const auto p = static_cast<std::size_t>(precision_of_bits(n.bits));
      const double tc = b * n.flops() * inv_rate_[cat_index(n.category)][p];
      const double bytes = n.weight_bytes + b * (n.input_bytes + n.output_bytes) * act_scale_[p];
      const double tm = bytes * inv_bw_;
      const double body = std::max(tc, tm);
      const int k = kernels_of(n);
      const double tn = node_latency(n.category, body, k, overhead_s_);
      const double en = (b * (n.macs * mac_j_[p] + n.other_flops * add_j_[p]) +
                         bytes * dram_j_per_byte_ + static_w_ * tn) *
                        energy_scale();
      t += tn;
      e += en;
      if (breakdown) {
        NodeCost nc;
        nc.name = n.name;
        nc.latency_s = tn;
        nc.overhead_s = node_overhead(k, overhead_s_);
        nc.energy_j = en;
        nc.bound = nc.overhead_s > tn - nc.overhead_s ? "launch" : tc >= tm ? "compute" : "memory";
        c.nodes.push_back(std::move(nc));
      }
    }
    if (breakdown) note_non_native_precisions(w, native_, "", c);
    c.latency_ms = t * 1e3;
    c.energy_mj = e * 1e3;
    c.memory_bytes = w.total_weight_bytes() + b * w.peak_activation_bytes();
    check_capacity(capacity_, "weights + batch x peak activations", "RAM", c);
    return c;
  }

  // The datastore sits in RAM next to the weights and activations when it fits.
  bool hold_datastore(const Workload&, double bytes, Cost& c) const override {
    return hold_within(capacity_, bytes, c);
  }

 private:
  NativePrecisions native_;
  double peak_[kNumPrecisions] = {}, act_scale_[kNumPrecisions] = {};
  double bw_ = 0;
  CategoryTable eff_;
  double overhead_s_ = 0, capacity_ = 0;
  double mac_j_[kNumPrecisions] = {}, add_j_[kNumPrecisions] = {};
  double dram_j_per_byte_ = 0, static_w_ = 0;
  std::array<std::array<double, kNumPrecisions>, kNumCategories>
      inv_rate_{};  // s per FLOP, no divisions in the loop
  double inv_bw_ = 0;
};

}  // namespace

std::unique_ptr<Device> make_edge_cpu_device(const nlohmann::json& d) {
  return std::make_unique<EdgeCpu>(d);
}

}  // namespace hwnas::hw
