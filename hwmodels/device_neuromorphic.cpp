// Neuromorphic chips (Loihi, Loihi 2, TrueNorth, SpiNNaker 2): event-driven energy in the
// hardware-grounded form of docs/hardware.md §4.2,
//   E = N_sop*E_sop + N_spk*(E_spike_out + h*E_hop) + N_neuron_updates*E_nu + P_static*cores*t
// and a core mapping under the per-core limits of §4.1 (nengo-loihi block.py):
//   cores(node) = max(ceil(neurons/npc), ceil(synapse_bits/mem_bits),
//   ceil(neurons/npc)*ceil(fan_in/max_fan_in))
// (a neuron group whose fan-in exceeds the axon limit is replicated per fan-in slice).
// Mean hops h = max(1, (2/3) * sqrt(cores_used / cores_per_router)): the mean Manhattan
// distance on a square mesh, so routing energy grows with network size.
//
// Spiking nodes use their measured activity when the evaluation recorded it: "spikes" (or the
// sum of "spikes_per_step") and "synaptic_ops" (else spikes x fan_out, or the measured rate x
// MACs); otherwise the assumed default_spike_rate (listed in extra["assumed_activity"]).
// Non-spiking nodes follow "non_spiking":
//   "infeasible": the architecture cannot run (reason names the node);
//   "rate_code": rate coding over T steps; a neuron whose activation is zero never fires and an
//                active one fires at rate r = rate_code.rate, so with the measured non-zero
//                shares d_out (activation_density) and d_in (input_density)
//                  spikes = r*d_out*T*neurons,  SOPs = r*d_in*T*MACs
//                (docs/hardware.md §4.2: fr*T*FLOPs, one accumulate per MAC, only for inputs
//                that spike).  Unmeasured densities are assumed 1 (every neuron active).
// Cost::activity_source says whether these figures were measured, assumed or mixed.
// Never silently zero.  Time per step = slowest node's per-core work (layers run in parallel)
// + barrier sync, or the fixed real-time tick when the chip has one (TrueNorth, SpiNNaker).
// A batch of B samples runs them one after another: B times the time and the event energy.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "hwmodels/device_base.hpp"

namespace hwnas::hw {
namespace {

class Neuromorphic final : public DeviceBase {
 public:
  explicit Neuromorphic(const nlohmann::json& d) : DeviceBase(d) {
    const auto& r = reader();
    npc_ = r.positive_int("neurons_per_core");
    max_fan_in_ = r.positive_int("max_fan_in");
    mem_bits_ = r.positive("synapse_mem_bits_per_core");
    max_wbits_ = r.positive_int("max_weight_bits");
    cores_per_chip_ = r.positive_int("cores_per_chip");
    chips_ = r.positive_int_or("chips", 1);
    cores_per_router_ = r.positive_int_or("cores_per_router", 1);
    e_sop_ = r.positive("energy_pj.synaptic_op") * 1e-12;
    e_spike_ = r.non_negative_or("energy_pj.spike_out", 0) * 1e-12;
    e_hop_ = r.non_negative_or("energy_pj.hop", 0) * 1e-12;
    e_nu_ = r.non_negative_or("energy_pj.neuron_update", 0) * 1e-12;
    t_sop_ = r.non_negative_or("time_ns.synaptic_op", 0) * 1e-9;
    t_nu_ = r.non_negative_or("time_ns.neuron_update", 0) * 1e-9;
    t_hop_ = r.non_negative_or("time_ns.hop", 0) * 1e-9;
    t_sync_ = r.non_negative_or("time_ns.sync", 0) * 1e-9;
    fixed_step_ = r.non_negative_or("fixed_step_s", 0);
    if (t_sop_ == 0 && fixed_step_ == 0)
      fail("time_ns.synaptic_op", "or 'fixed_step_s' is required (a positive number)");
    static_w_per_core_ = r.non_negative_or("static_power_per_core_w", 0);
    policy_rate_code_ =
        r.one_of("non_spiking", {"infeasible", "rate_code"}, "infeasible") == "rate_code";
    if (policy_rate_code_) {
      rc_steps_ = r.positive_int("rate_code.timesteps");
      rc_rate_ = r.fraction_or("rate_code.rate", 0);
      if (rc_rate_ == 0) fail("rate_code.rate", "is required (a number in (0, 1])");
    }
    default_rate_ = r.fraction_or("default_spike_rate", 0.1);
  }

  bool supports(OpCategory c) const override {
    return c == OpCategory::Spiking || policy_rate_code_;
  }
  bool calibratable() const override { return false; }

 protected:
  Cost run(const Workload& w, bool breakdown) const override {
    Cost c;
    struct Per {
      double sops, spikes, updates, cores, steps, syn_bits;
    };
    std::vector<Per> per(w.nodes.size());
    double total_cores = 0, syn_bits_total = 0;
    nlohmann::json assumed = nlohmann::json::array();
    ActivityTally tally;
    for (std::size_t i = 0; i < w.nodes.size(); ++i) {
      const auto& n = w.nodes[i];
      if (!n.spiking && !policy_rate_code_) {
        c.feasible = false;
        c.infeasible_reason = "node '" + n.name + "' (" + op_category_name(n.category) +
                              ") is not spiking and non_spiking policy is \"infeasible\"";
        return c;
      }
      const double wb = std::min(n.bits, max_wbits_);
      double neurons = n.neurons > 0 ? n.neurons : n.output_bytes * 8.0 / std::max(1, n.bits);
      const double synapses = n.synapses > 0 ? n.synapses
                              : n.params > 0 ? n.params
                                             : n.weight_bytes * 8.0 / std::max(1, n.bits);
      double fan_in = n.fan_in > 0 ? n.fan_in : (neurons > 0 ? n.macs / neurons : 0);
      Per p{};
      const NodeActivity& a = n.activity;
      if (n.spiking) {
        p.steps = n.timesteps;
        const double* spikes = a.find(activity_key::kSpikes);
        const auto* per_step = a.find_series(activity_key::kSpikesPerStep);
        if (spikes || per_step) {
          p.spikes = spikes ? *spikes : std::accumulate(per_step->begin(), per_step->end(), 0.0);
          const double rate = neurons > 0 ? p.spikes / (p.steps * neurons) : 0;
          const double* sops = a.find(activity_key::kSynapticOps);
          p.sops = sops ? *sops : n.fan_out > 0 ? p.spikes * n.fan_out : rate * p.steps * n.macs;
          tally.add(true);
        } else {
          p.spikes = default_rate_ * p.steps * neurons;
          p.sops = n.fan_out > 0 ? p.spikes * n.fan_out : default_rate_ * p.steps * n.macs;
          assumed.push_back(n.name);
          tally.add(false);
        }
      } else {  // rate coding
        p.steps = rc_steps_;
        const double* d_out = a.find(activity_key::kActivationDensity);
        const double* d_in = a.find(activity_key::kInputDensity);
        p.spikes = rc_rate_ * (d_out ? std::clamp(*d_out, 0.0, 1.0) : 1.0) * p.steps * neurons;
        p.sops = rc_rate_ * (d_in ? std::clamp(*d_in, 0.0, 1.0) : 1.0) * p.steps * n.macs;
        if (d_out && d_in) {
          tally.add(true);
        } else if (!d_out && !d_in) {
          assumed.push_back(n.name);
          tally.add(false);
        } else {  // one of the two measured
          tally.add(true);
          tally.add(false);
        }
      }
      p.updates = p.steps * neurons;
      p.syn_bits = synapses * wb;
      const double groups = std::ceil(neurons / npc_);
      p.cores = std::max({groups, std::ceil(p.syn_bits / mem_bits_),
                          groups * std::ceil(fan_in / max_fan_in_), 1.0});
      total_cores += p.cores;
      syn_bits_total += p.syn_bits;
      per[i] = p;
    }
    const double hops = std::max(1.0, (2.0 / 3.0) * std::sqrt(total_cores / cores_per_router_));
    double e = 0, step_work = 0, steps = 1, sops = 0, spikes = 0;
    if (breakdown) c.nodes.reserve(w.nodes.size());
    for (std::size_t i = 0; i < w.nodes.size(); ++i) {
      const Per& p = per[i];
      const double en = p.sops * e_sop_ + p.spikes * (e_spike_ + hops * e_hop_) + p.updates * e_nu_;
      // Per-step work on each of the node's cores (load spread evenly).
      const double work =
          (p.sops * t_sop_ + p.updates * t_nu_ + p.spikes * hops * t_hop_) / (p.steps * p.cores);
      step_work = std::max(step_work, work);
      steps = std::max(steps, p.steps);
      e += en;
      sops += p.sops;
      spikes += p.spikes;
      if (breakdown) {
        NodeCost nc;
        nc.name = w.nodes[i].name;
        nc.latency_s = work * p.steps;
        nc.energy_j = en * energy_scale();
        nc.bound = w.nodes[i].spiking ? "event" : "rate-coded";
        c.nodes.push_back(std::move(nc));
      }
    }
    const double step = std::max(fixed_step_, step_work + t_sync_);
    // A batch is that many samples presented one after another (each its own T steps).
    const double t = batch() * steps * step;
    e = batch() * e + static_w_per_core_ * total_cores * t;
    c.latency_ms = t * 1e3;
    c.energy_mj = e * energy_scale() * 1e3;
    c.memory_bytes = syn_bits_total / 8;
    const double chips_needed = std::ceil(total_cores / cores_per_chip_);
    if (total_cores > double(cores_per_chip_) * chips_) {
      c.feasible = false;
      c.infeasible_reason = "needs " + std::to_string(static_cast<long long>(total_cores)) +
                            " cores > " + std::to_string(cores_per_chip_ * chips_) + " (" +
                            std::to_string(chips_) + " chip(s) x " +
                            std::to_string(cores_per_chip_) + " cores)";
    }
    c.activity_source = tally.source();
    c.extra["cores_used"] = total_cores;
    c.extra["chips_used"] = chips_needed;
    if (breakdown) {
      c.extra["mean_hops"] = hops;
      c.extra["timesteps"] = steps;
      c.extra["step_s"] = step;
      c.extra["synaptic_ops"] = sops;
      c.extra["spikes"] = spikes;
      if (!assumed.empty()) c.extra["assumed_activity"] = assumed;
    }
    return c;
  }

 private:
  int npc_ = 0, max_fan_in_ = 0;
  double mem_bits_ = 0;
  int max_wbits_ = 8, cores_per_chip_ = 0, chips_ = 1, cores_per_router_ = 1;
  double e_sop_ = 0, e_spike_ = 0, e_hop_ = 0, e_nu_ = 0;
  double t_sop_ = 0, t_nu_ = 0, t_hop_ = 0, t_sync_ = 0, fixed_step_ = 0, static_w_per_core_ = 0;
  bool policy_rate_code_ = false;
  int rc_steps_ = 1;
  double rc_rate_ = 0, default_rate_ = 0.1;
};

}  // namespace

std::unique_ptr<Device> make_neuromorphic_device(const nlohmann::json& d) {
  return std::make_unique<Neuromorphic>(d);
}

}  // namespace hwnas::hw
