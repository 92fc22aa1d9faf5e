// spiking_dense: fully connected synapses feeding LIF neurons, over T time steps.  The currents
// of all T steps come from ONE linear over the [B*T] rows, then one fused LIF node.
#include "spaces/blocks/block_spiking_util.hpp"

namespace hwnas::spaces {
namespace {
using namespace blocks;

class SpikingDenseModule : public nn::Module {
 public:
  SpikingDenseModule(int steps, int in, int units, const json& p, Rng& rng)
      : steps_(steps),
        in_(in),
        units_(units),
        lin_(in, units, pbool(p, "bias"), rng),
        lif_(p),
        bits_(bits_of(p)),
        prune_(prune_of(p)) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    const nn::Var& x = in.at(0);
    const int B = x.dim(0);
    const nn::Var rows = nn::reshape(x, nn::Shape{B * steps_, in_});
    const nn::Var current = compressed_linear(rows, lin_.weight, lin_.bias, bits_, prune_);
    const nn::Var spikes = lif_(nn::reshape(current, nn::Shape{B, steps_, units_}));
    if (ctx.activity)  // each input event reaches all `units` neurons
      record_spikes(*ctx.activity, spikes.value(), count_nonzero(x.value()) * units_);
    return spikes;
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    lin_.append_named_parameters(prefix + "linear.", out);
    lif_.append_named_parameters(prefix, out);
  }
  std::string name() const override { return "spiking_dense"; }

 private:
  int steps_, in_, units_;
  nn::Linear lin_;
  LifStage lif_;
  int bits_;
  double prune_;
};
}  // namespace

void register_block_spiking_dense(Catalogue& c) {
  BlockKind k;
  k.name = "spiking_dense";
  k.description =
      "fully connected synapses into leaky integrate-and-fire neurons over T steps; input "
      "sequence[T, D] or image[T*C, H, W] (flattened per step), output sequence[T, units]";
  k.params = {ParamSpec::int_range("units", 1, 8192, 128, "neurons"),
              ParamSpec::boolean("bias", true, "learned constant input current")};
  for (ParamSpec& s : lif_params()) k.params.push_back(std::move(s));
  for (ParamSpec& s : lif_learn_params()) k.params.push_back(std::move(s));
  k.accepts = {DataKind::Sequence, DataKind::Image};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    const int steps = pint(p, "timesteps");
    features_per_step(single_input(in), steps, "spiking_dense");
    return TensorType::sequence(steps, pint(p, "units"));
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    const int steps = pint(p, "timesteps");
    return std::make_unique<SpikingDenseModule>(
        steps, features_per_step(in[0], steps, "spiking_dense"), pint(p, "units"), p, rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const int steps = pint(p, "timesteps");
    const double din = features_per_step(in[0], steps, "spiking_dense"), units = pint(p, "units");
    spiking_workload(w, steps, units, din, din * units, din * units);
    w.params = din * units + (pbool(p, "bias") ? units : 0) + LifStage::learned_params(p);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
