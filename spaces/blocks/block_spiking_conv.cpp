// spiking_conv: convolutional synapses feeding LIF neurons (one per channel and position), over
// T time steps.  The currents of all T steps come from ONE conv over the [B*T] batch, then one
// fused LIF node.
#include "spaces/blocks/block_spiking_util.hpp"

namespace hwnas::spaces {
namespace {
using namespace blocks;

class SpikingConvModule : public nn::Module {
 public:
  SpikingConvModule(int steps, const TensorType& in, const TensorType& out, const json& p, Rng& rng)
      : steps_(steps),
        cin_(in.dims[0] / steps),
        h_(in.dims[1]),
        w_(in.dims[2]),
        cout_(out.dims[0] / steps),
        ho_(out.dims[1]),
        wo_(out.dims[2]),
        kernel_(pint(p, "kernel")),
        conv_(cin_, cout_, kernel_, nn::Conv2dOptions{pint(p, "stride"), same_padding(kernel_), 1},
              pbool(p, "bias"), rng),
        lif_(p),
        bits_(bits_of(p)),
        prune_(prune_of(p)) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    const nn::Var& x = in.at(0);
    const int B = x.dim(0);
    const nn::Var frames = nn::reshape(x, nn::Shape{B * steps_, cin_, h_, w_});
    const nn::Var current =
        nn::conv2d(frames, compress_weight(conv_.weight, bits_, prune_), conv_.bias, conv_.options);
    const nn::Var spikes = lif_(nn::reshape(current, nn::Shape{B, steps_, cout_ * ho_ * wo_}));
    if (ctx.activity) record_spikes(*ctx.activity, spikes.value(), synaptic_events(frames.value()));
    return nn::reshape(spikes, nn::Shape{B, steps_ * cout_, ho_, wo_});
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    conv_.append_named_parameters(prefix + "conv.", out);
    lif_.append_named_parameters(prefix, out);
  }
  std::string name() const override { return "spiking_conv"; }

 private:
  // Exact synaptic events: for every output neuron, the non-zero inputs in its receptive field
  // (a conv of the input's non-zero indicator with an all-ones kernel), times the channels.
  double synaptic_events(const nn::Tensor& frames) const {
    nn::NoGradGuard no_grad;
    nn::Tensor active(frames.shape());
    for (std::int64_t i = 0; i < frames.numel(); ++i)
      active.data()[i] = frames.data()[i] != 0.0f ? 1.0f : 0.0f;
    const nn::Var per_position = nn::conv2d(
        nn::constant(active), nn::constant(nn::Tensor(nn::Shape{1, cin_, kernel_, kernel_}, 1.0f)),
        nn::Var(), conv_.options);
    double total = 0;
    for (std::int64_t i = 0; i < per_position.value().numel(); ++i)
      total += per_position.value().data()[i];
    return total * cout_;
  }

  int steps_, cin_, h_, w_, cout_, ho_, wo_, kernel_;
  nn::Conv2d conv_;
  LifStage lif_;
  int bits_;
  double prune_;
};

TensorType infer_spiking_conv(const std::vector<TensorType>& in, const json& p) {
  const TensorType& t = single_input(in);
  const int steps = pint(p, "timesteps");
  if (t.kind != DataKind::Image)
    throw std::invalid_argument("spiking_conv: input " + t.str() + " is not an image[T*C, H, W]");
  features_per_step(t, steps, "spiking_conv");
  const int k = pint(p, "kernel"), s = pint(p, "stride"), pad = same_padding(k);
  return TensorType::image(steps * pint(p, "channels"), conv_out_size(t.dims[1], k, s, pad),
                           conv_out_size(t.dims[2], k, s, pad));
}
}  // namespace

void register_block_spiking_conv(Catalogue& c) {
  BlockKind k;
  k.name = "spiking_conv";
  k.description =
      "convolutional synapses into leaky integrate-and-fire neurons over T steps; input and "
      "output image[T*C, H, W] (steps stacked along channels)";
  k.params = {ParamSpec::int_range("channels", 1, 1024, 32, "output channels per step"),
              ParamSpec::int_set("kernel", {1, 3, 5, 7}, 3, "kernel size (same padding)"),
              ParamSpec::int_set("stride", {1, 2}, 1, "stride"),
              ParamSpec::boolean("bias", true, "learned constant input current")};
  for (ParamSpec& s : lif_params()) k.params.push_back(std::move(s));
  for (ParamSpec& s : lif_learn_params()) k.params.push_back(std::move(s));
  k.accepts = {DataKind::Image};
  k.infer = infer_spiking_conv;
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<SpikingConvModule>(pint(p, "timesteps"), in[0],
                                               infer_spiking_conv(in, p), p, rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    const int steps = pint(p, "timesteps");
    const double cin = in[0].dims[0] / steps, cout = out.dims[0] / steps, kk = pint(p, "kernel");
    const double positions = double(out.dims[1]) * out.dims[2];
    const double neurons = cout * positions;
    spiking_workload(w, steps, neurons, cin * kk * kk, cout * cin * kk * kk,
                     neurons * cin * kk * kk);
    w.params = cout * cin * kk * kk + (pbool(p, "bias") ? cout : 0) + LifStage::learned_params(p);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
