// Shared parts of the spiking blocks (spike_encoder, spiking_dense, spiking_conv, spike_readout):
// the LIF hyperparameters with their search domains, their translation to nn::LifOptions, how a
// block's per-sample type carries the T time steps, and the activity a spiking forward records.
//
// Time in the genome: tensors stop at rank 4, so a spiking block folds T into its features:
//   Sequence {T, D}        spikes of D neurons at each of T steps    nn tensor [B, T, D]
//   Image {T*C, H, W}      spike maps of C channels at each step     nn tensor [B, T*C, H, W]
// (step-major, so [B, T*C, H, W] reshapes to [B*T, C, H, W] for one conv over all steps).
#pragma once

#include <string>
#include <vector>

#include "nn/activity.hpp"
#include "nn/lif.hpp"
#include "nn/module.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces::blocks {

inline ParamSpec timesteps_param() {
  return ParamSpec::int_set("timesteps", {1, 2, 4, 8, 16}, 4, "simulation time steps T");
}

// Hyperparameters of the LIF neurons a spiking layer ends in.
inline std::vector<ParamSpec> lif_params() {
  return {timesteps_param(),
          ParamSpec::float_range("beta", 0.0, 1.0, 0.9, "membrane decay per step"),
          ParamSpec::float_range("threshold", 0.05, 4.0, 1.0, "firing threshold"),
          ParamSpec::choice("reset", {"subtract", "zero"}, "subtract",
                            "after a spike: subtract the threshold or set the membrane to 0"),
          ParamSpec::choice("surrogate", {"fast_sigmoid", "arctan"}, "fast_sigmoid",
                            "surrogate derivative of the spike in training"),
          ParamSpec::float_range("slope", 0.5, 100.0, 5.0, "surrogate slope (sharpness)"),
          ParamSpec::int_range("refractory", 0, 8, 0, "silent steps after a spike")};
}

// Whether a layer trains its LIF decay and threshold (one scalar each per layer, as snnTorch's
// learn_beta / learn_threshold).  spiking_dense and spiking_conv take these.
inline std::vector<ParamSpec> lif_learn_params() {
  return {
      ParamSpec::boolean("learn_beta", false, "train the decay (starts at beta, kept in [0, 1])"),
      ParamSpec::boolean("learn_threshold", false,
                         "train the threshold (starts at threshold, kept >= 0.05)")};
}
inline bool flag_of(const json& p, const char* name) {
  return p.contains(name) && p[name].get<bool>();
}

inline nn::LifOptions lif_options_of(const json& p) {
  nn::LifOptions o;
  o.reset = pstr(p, "reset") == "zero" ? nn::LifReset::Zero : nn::LifReset::Subtract;
  o.refractory_steps = pint(p, "refractory");
  const float slope = static_cast<float>(pfloat(p, "slope"));
  o.surrogate = pstr(p, "surrogate") == "arctan" ? nn::Surrogate::arctan(slope)
                                                 : nn::Surrogate::fast_sigmoid(slope);
  return o;
}

// Per-step features of a spiking input with T steps: Sequence {T, D} -> D, Image {T*C, H, W}
// -> C*H*W.  Throws std::invalid_argument naming `block` when the input does not carry T steps.
inline int features_per_step(const TensorType& t, int steps, const std::string& block) {
  if (t.kind == DataKind::Sequence) {
    if (t.dims[0] != steps)
      throw std::invalid_argument(block + ": input " + t.str() + " has " +
                                  std::to_string(t.dims[0]) +
                                  " time steps, timesteps = " + std::to_string(steps));
    return t.dims[1];
  }
  if (t.kind == DataKind::Image) {
    if (t.dims[0] % steps != 0)
      throw std::invalid_argument(
          block + ": input " + t.str() + " has " + std::to_string(t.dims[0]) +
          " channels, not a multiple of timesteps = " + std::to_string(steps));
    return t.dims[0] / steps * t.dims[1] * t.dims[2];
  }
  throw std::invalid_argument(block + ": input " + t.str() +
                              " is not spiking (expected sequence[T, D] or image[T*C, H, W])");
}

// Writes what one LIF layer did on this batch into the node's sink: its spikes (total),
// spikes per time step, and `synaptic_ops` (input events this layer's synapses delivered).
// spikes: [B, T, N].  Costs nothing when no sink is set (the caller checks ctx.activity).
inline void record_spikes(nn::ActivitySink& sink, const nn::Tensor& spikes, double synaptic_ops) {
  const int B = spikes.dim(0), T = spikes.dim(1), N = spikes.dim(2);
  const float* p = spikes.data();
  double total = 0;
  for (int t = 0; t < T; ++t) {
    double at_t = 0;
    for (int b = 0; b < B; ++b) {
      const float* row = p + (static_cast<std::int64_t>(b) * T + t) * N;
      for (int n = 0; n < N; ++n) at_t += row[n];
    }
    sink.add_at(nn::activity_key::kSpikesPerStep, static_cast<std::size_t>(t), at_t);
    total += at_t;
  }
  sink.add(nn::activity_key::kSpikes, total);
  sink.add(nn::activity_key::kSynapticOps, synaptic_ops);
}

// Non-zero elements of x (input events: spikes, or non-zero analog values).
inline double count_nonzero(const nn::Tensor& x) {
  return static_cast<double>(nn::count_nonzero(x.data(), x.numel()));
}

// The LIF stage of a layer: beta and threshold are the searched values, fixed, or trained from
// there (learn_beta / learn_threshold), clamped into the range the LIF op accepts.
class LifStage {
 public:
  explicit LifStage(const json& p)
      : learn_beta_(flag_of(p, "learn_beta")),
        learn_threshold_(flag_of(p, "learn_threshold")),
        beta_(scalar(pfloat(p, "beta"), learn_beta_)),
        threshold_(scalar(pfloat(p, "threshold"), learn_threshold_)),
        options_(lif_options_of(p)) {}
  nn::Var operator()(const nn::Var& current) const {
    const nn::Var beta = learn_beta_ ? nn::clamp(beta_, 0.0f, 1.0f) : beta_;
    const nn::Var threshold = learn_threshold_ ? nn::clamp(threshold_, 0.05f, 1e30f) : threshold_;
    return nn::lif(current, beta, threshold, options_);
  }
  // The trained scalars, named lif.beta / lif.threshold under the layer.
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) const {
    if (learn_beta_) out.push_back({prefix + "lif.beta", beta_});
    if (learn_threshold_) out.push_back({prefix + "lif.threshold", threshold_});
  }
  static int learned_params(const json& p) {
    return (flag_of(p, "learn_beta") ? 1 : 0) + (flag_of(p, "learn_threshold") ? 1 : 0);
  }

 private:
  static nn::Var scalar(double v, bool learn) {
    nn::Tensor t(nn::Shape{1}, static_cast<float>(v));
    return learn ? nn::parameter(std::move(t)) : nn::constant(std::move(t));
  }
  bool learn_beta_, learn_threshold_;
  nn::Var beta_, threshold_;
  nn::LifOptions options_;
};

// Workload fields every LIF layer shares.
inline void spiking_workload(hw::NodeWorkload& w, int steps, double neurons, double fan_in,
                             double synapses, double macs_per_step) {
  w.category = hw::OpCategory::Spiking;
  w.spiking = true;
  w.timesteps = steps;
  w.macs = macs_per_step * steps;  // dense-equivalent work per step, every step
  // Per neuron and step: decay multiply, add, compare, reset.
  w.other_flops = 4.0 * neurons * steps;
  weighted_mapping(w, neurons, fan_in, synapses);
}

}  // namespace hwnas::spaces::blocks
