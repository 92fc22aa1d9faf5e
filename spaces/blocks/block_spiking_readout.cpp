// spike_readout: the output layer of a spiking network, synapses from the last spiking layer
// into `outputs` readout neurons, turned into logits over the T steps:
//   membrane: non-spiking leaky integrators v_t = beta v_{t-1} + I_t; logits = mean_t v_t
//   count:    LIF neurons (the block's LIF settings); logits = spike count over the T steps
// One linear over the [B*T] rows gives the currents of all steps.
#include <cmath>

#include "spaces/blocks/block_spiking_util.hpp"

namespace hwnas::spaces {
namespace {
using namespace blocks;

class SpikeReadoutModule : public nn::Module {
 public:
  SpikeReadoutModule(int steps, int in, int outputs, const json& p, Rng& rng)
      : steps_(steps),
        in_(in),
        outputs_(outputs),
        lin_(in, outputs, true, rng),
        lif_(p),
        count_(pstr(p, "mode") == "count"),
        bits_(bits_of(p)),
        prune_(prune_of(p)) {
    // mean_t v_t = sum_t w_t I_t with w_t = (1/T) sum_{k=t}^{T-1} beta^(k-t): the leaky
    // integrator is linear, so its mean is one weighted sum over the steps.
    const double beta = pfloat(p, "beta");
    nn::Tensor w(nn::Shape{steps, 1});
    for (int t = 0; t < steps; ++t) {
      double acc = 0, f = 1;
      for (int k = t; k < steps; ++k, f *= beta) acc += f;
      w.data()[t] = static_cast<float>(acc / steps);
    }
    step_weights_ = nn::constant(w);
  }
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    const nn::Var& x = in.at(0);
    const int B = x.dim(0);
    const nn::Var current =
        nn::reshape(compressed_linear(nn::reshape(x, nn::Shape{B * steps_, in_}), lin_.weight,
                                      lin_.bias, bits_, prune_),
                    nn::Shape{B, steps_, outputs_});
    const double sops = ctx.activity ? count_nonzero(x.value()) * outputs_ : 0.0;
    if (count_) {
      const nn::Var spikes = lif_(current);
      if (ctx.activity) record_spikes(*ctx.activity, spikes.value(), sops);
      return nn::mean_dim(spikes, 1);  // spike count / T: logits in [0, 1]
    }
    if (ctx.activity) ctx.activity->add(nn::activity_key::kSynapticOps, sops);
    return nn::scale(nn::mean_dim(nn::mul(current, step_weights_), 1), static_cast<float>(steps_));
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    lin_.append_named_parameters(prefix + "linear.", out);
  }
  std::string name() const override { return "spike_readout"; }

 private:
  int steps_, in_, outputs_;
  nn::Linear lin_;
  LifStage lif_;
  bool count_;
  int bits_;
  double prune_;
  nn::Var step_weights_;
};
}  // namespace

void register_block_spike_readout(Catalogue& c) {
  BlockKind k;
  k.name = "spike_readout";
  k.description =
      "output layer of a spiking network: synapses into readout neurons, logits = mean "
      "membrane potential (leaky integrators) or spike count over T";
  k.params = {ParamSpec::int_range("outputs", 1, 100000, 10, "number of outputs (classes)"),
              ParamSpec::choice("mode", {"membrane", "count"}, "membrane",
                                "logits: mean membrane potential or spike count over T")};
  for (ParamSpec& s : lif_params()) k.params.push_back(std::move(s));
  k.accepts = {DataKind::Sequence, DataKind::Image};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    features_per_step(single_input(in), pint(p, "timesteps"), "spike_readout");
    return TensorType::vector(pint(p, "outputs"));
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    const int steps = pint(p, "timesteps");
    return std::make_unique<SpikeReadoutModule>(
        steps, features_per_step(in[0], steps, "spike_readout"), pint(p, "outputs"), p, rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const int steps = pint(p, "timesteps");
    const double din = features_per_step(in[0], steps, "spike_readout"), dout = pint(p, "outputs");
    spiking_workload(w, steps, dout, din, din * dout, din * dout);
    w.params = din * dout + dout;
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
