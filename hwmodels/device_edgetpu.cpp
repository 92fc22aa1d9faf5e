// Google Edge TPU (Coral).  int8 only ("native_precisions", default ["int8"]; integer precisions
// only).  A node narrower than int8 (int4) runs as int8 with its weights stored as int8 (the
// compiler takes int8 tensors only), so it stays on the TPU; a float node has no native
// precision wide enough.  As edgetpu_compiler partitions at most once, the first node that is
// float or whose category is unsupported, and EVERY node after it, run on the host CPU
// (docs/hardware.md §2.2, "Supported operations and CPU fallback").
// On-TPU node: max(FLOPs / (eff[cat] * peak_ops), streamed weight bytes / usb_bw) + overhead,
// where weights beyond the on-chip parameter cache (filled in execution order) are streamed over
// USB on every inference.  The model input, and the activation handed back at the fallback
// point (or the final output), cross USB too.  Each invocation that runs anything on the TPU
// pays invoke_overhead_s once (the runtime's fixed per-inference cost).  Energy: active power x
// on-TPU time; fallback nodes are costed by the host CPU device.  The fallback is reported in
// Cost::fallback and fallback_nodes (shown by `hwnas hw predict` and stored with each cost), not
// only in extra. A batch is that many invocations one after another (Edge TPU models are compiled
// for batch 1): latency and energy scale with it.
#include <algorithm>

#include "hwmodels/device_base.hpp"

namespace hwnas::hw {
namespace {

class EdgeTpu final : public DeviceBase {
 public:
  explicit EdgeTpu(const nlohmann::json& d) : DeviceBase(d) {
    const auto& r = reader();
    peak_ = r.positive("peak_ops");
    eff_ = CategoryTable::read(r, "efficiency", 1.0);
    cache_ = r.non_negative_or("param_cache_bytes", 0);
    usb_bw_ = r.positive("usb_bw");
    overhead_s_ = r.non_negative_or("op_overhead_s", 0);
    invoke_s_ = r.non_negative_or("invoke_overhead_s", 0);
    power_w_ = r.positive("active_power_w");
    supported_.fill(false);
    const auto* s = r.find("supported_categories");
    if (!s || !s->is_array() || s->empty())
      fail("supported_categories", "must be a non-empty array of op category names");
    for (const auto& x : *s) {
      if (!x.is_string()) fail("supported_categories", "must be an array of op category names");
      try {
        supported_[cat_index(op_category_from_name(x.get<std::string>()))] = true;
      } catch (const std::invalid_argument& e) {
        fail("supported_categories", e.what());
      }
    }
    host_ = make_nested_device(r, "host_cpu");
    native_ = NativePrecisions::read(r, NativePrecisions::of({Precision::Int8}));
    if (native_.has(Precision::Fp32) || native_.has(Precision::Fp16))
      fail("native_precisions", "lists a float precision (native: " + native_.list() +
                                    "), but the Edge TPU runs integer ops only; float nodes fall "
                                    "back to host_cpu (use [\"int8\"] or [\"int8\", \"int4\"])");
    if (!native_.has(Precision::Int8))
      fail("native_precisions",
           "must include int8, the Edge TPU's compute precision (use "
           "[\"int8\"] or [\"int8\", \"int4\"])");
  }

  bool supports(OpCategory c) const override { return supported_[cat_index(c)]; }

 protected:
  Cost run(const Workload& w, bool breakdown) const override {
    Cost c;
    if (breakdown) c.nodes.reserve(w.nodes.size());
    // The compiler's single partition point.
    std::size_t split = w.nodes.size();
    std::string why;
    for (std::size_t i = 0; i < w.nodes.size(); ++i) {
      const auto& n = w.nodes[i];
      const Precision p = precision_of_bits(n.bits);
      const bool runs = native_.run_as(p).has_value();
      if (!runs || !supported_[cat_index(n.category)]) {
        split = i;
        why = "node '" + n.name + "' (" + op_category_name(n.category) + ", " +
              std::to_string(n.bits) + "-bit) is " +
              (!runs ? std::string("not int8: ") + precision_name(p) +
                           " is not native on the Edge TPU (native: " + native_.list() + ")"
                     : std::string("an unsupported op"));
        break;
      }
    }
    double t_tpu = 0, cached = 0, streamed_total = 0;
    for (std::size_t i = 0; i < split; ++i) {
      const auto& n = w.nodes[i];
      const Precision p = precision_of_bits(n.bits);
      // Narrower than its native precision (int4 without native int4): weights and activations
      // are int8 tensors.
      const double widen = double(precision_bits(*native_.run_as(p))) / precision_bits(p);
      const double weight_bytes = n.weight_bytes * widen;
      const double tc = n.flops() / (eff_[n.category] * peak_);
      // Parameter cache filled in execution order; the overflow streams every inference.
      const double fit = std::max(0.0, std::min(weight_bytes, cache_ - cached));
      cached += fit;
      double stream = weight_bytes - fit;
      if (i == 0) stream += w.input_bytes;                   // input over USB
      if (i + 1 == split) stream += n.output_bytes * widen;  // result back to the host
      streamed_total += stream;
      const double tm = stream / usb_bw_;
      const double body = std::max(tc, tm);
      const int k = kernels_of(n);
      const double tn = node_latency(n.category, body, k, overhead_s_);
      t_tpu += tn;
      if (breakdown) {
        NodeCost nc;
        nc.name = n.name;
        nc.latency_s = tn;
        nc.overhead_s = node_overhead(k, overhead_s_);
        nc.energy_j = power_w_ * tn * energy_scale();
        nc.bound = tc >= tm ? "compute" : "usb";
        c.nodes.push_back(std::move(nc));
      }
    }
    // One invocation per sample whenever any node runs on the TPU: the runtime's fixed cost
    // (host driver, USB / PCIe round trip), time only (no TPU energy charged for it).
    const double t_invoke = split > 0 ? invoke_s_ : 0.0;
    if (breakdown && t_invoke > 0) c.extra["invoke_overhead_ms"] = t_invoke * 1e3;
    double t = t_tpu + t_invoke, e = power_w_ * t_tpu * energy_scale();
    c.memory_bytes = w.total_weight_bytes() + w.peak_activation_bytes();
    if (split < w.nodes.size()) {
      Workload rest;
      rest.nodes.assign(w.nodes.begin() + static_cast<std::ptrdiff_t>(split), w.nodes.end());
      rest.input_bytes = split == 0 ? w.input_bytes : w.nodes[split - 1].output_bytes;
      Cost h = breakdown ? host_->estimate(rest) : host_->estimate_total(rest);
      t += h.latency_ms * 1e-3;
      e += h.energy_mj * 1e-3;
      if (!h.feasible) {
        c.feasible = false;
        c.infeasible_reason = "host CPU fallback: " + h.infeasible_reason;
      }
      for (auto& nc : h.nodes) {
        nc.bound = "fallback-cpu";
        c.nodes.push_back(std::move(nc));
      }
      c.fallback_nodes = static_cast<int>(w.nodes.size() - split);
      c.fallback = std::to_string(c.fallback_nodes) + " of " + std::to_string(w.nodes.size()) +
                   " nodes on host CPU " + host_->name() + ": " + why;
      if (breakdown) {
        c.extra["fallback_from"] = w.nodes[split].name;
        c.extra["fallback_reason"] = why;
      }
    }
    if (breakdown) {
      note_non_native_precisions(w, native_, "runs on host_cpu " + host_->name(), c);
      c.extra["nodes_on_tpu"] = split;
      c.extra["nodes_on_cpu"] = w.nodes.size() - split;
      c.extra["usb_bytes"] = streamed_total;
    }
    // Sequential invocations; per-node figures stay per sample.
    c.latency_ms = batch() * t * 1e3;
    c.energy_mj = batch() * e * 1e3;
    return c;
  }

  // The datastore fits when the parameter cache has room after the weights; otherwise it is
  // read over USB like streamed weights.
  bool hold_datastore(const Workload& w, double bytes, Cost& c) const override {
    // Retrieval nodes past the partition point ran on the host CPU, whose own estimate
    // charged their datastore (held in its RAM or read over its link).
    const std::size_t on_tpu = w.nodes.size() - static_cast<std::size_t>(c.fallback_nodes);
    bool any_on_tpu = false;
    for (std::size_t i = 0; i < on_tpu; ++i)
      any_on_tpu = any_on_tpu || w.nodes[i].datastore_bytes > 0;
    if (!any_on_tpu) return true;
    if (w.total_weight_bytes() + bytes > cache_) return false;
    c.memory_bytes += bytes;
    return true;
  }
  double host_link_bw() const override {
    const double own = DeviceBase::host_link_bw();
    return own > 0 ? own : usb_bw_;
  }

 private:
  double peak_ = 0;
  CategoryTable eff_;
  double cache_ = 0, usb_bw_ = 0, overhead_s_ = 0, invoke_s_ = 0, power_w_ = 0;
  std::array<bool, kNumCategories> supported_{};
  std::unique_ptr<Device> host_;
  NativePrecisions native_;
};

}  // namespace

std::unique_ptr<Device> make_edge_tpu_device(const nlohmann::json& d) {
  return std::make_unique<EdgeTpu>(d);
}

}  // namespace hwnas::hw
