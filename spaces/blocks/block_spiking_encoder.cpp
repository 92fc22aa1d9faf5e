// spike_encoder: turns an analog input into T time steps for the spiking layers after it.
//   direct: the same analog values at every step (the first layer's synapses read real values)
//   rate:   Bernoulli (Poisson-like) spikes with p = clamp(x, 0, 1) per element and step
// Image {C, H, W} -> image[T*C, H, W]; vector {D} -> sequence[T, D].
#include "spaces/blocks/block_spiking_util.hpp"

namespace hwnas::spaces {
namespace {
using namespace blocks;

class SpikeEncoderModule : public nn::Module {
 public:
  SpikeEncoderModule(int steps, bool rate, const TensorType& out, Rng& rng)
      : steps_(steps), rate_(rate), out_(out), own_rng_(rng()) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    const nn::Var& x = in.at(0);
    // Rate coding draws from the context's seeded generator; without one (plain inference) from
    // the block's own, seeded when the model was built.
    const nn::Var y = rate_ ? nn::encode_rate(x, steps_, ctx.rng ? *ctx.rng : own_rng_)
                            : nn::encode_direct(x, steps_);
    if (ctx.activity) {  // events sent on: spikes (rate) or non-zero analog values (direct)
      const nn::Tensor& v = y.value();
      nn::Tensor events(v.shape());
      for (std::int64_t i = 0; i < v.numel(); ++i)
        events.data()[i] = v.data()[i] != 0.0f ? 1.0f : 0.0f;
      record_spikes(*ctx.activity, events, 0.0);
    }
    const int B = x.dim(0);
    if (out_.kind == DataKind::Image)
      return nn::reshape(y, nn::Shape{B, out_.dims[0], out_.dims[1], out_.dims[2]});
    return y;  // [B, T, D]
  }
  std::string name() const override { return "spike_encoder"; }

 private:
  int steps_;
  bool rate_;
  TensorType out_;
  std::mt19937_64 own_rng_;
};

TensorType infer_encoder(const std::vector<TensorType>& in, const json& p) {
  const TensorType& t = single_input(in);
  const int steps = pint(p, "timesteps");
  if (t.kind == DataKind::Image) return TensorType::image(steps * t.dims[0], t.dims[1], t.dims[2]);
  if (t.kind == DataKind::Vector) return TensorType::sequence(steps, t.dims[0]);
  throw std::invalid_argument("spike_encoder: input " + t.str() + " must be an image or a vector");
}
}  // namespace

void register_block_spike_encoder(Catalogue& c) {
  BlockKind k;
  k.name = "spike_encoder";
  k.description = "analog input -> T time steps of drive for spiking layers (direct or rate)";
  k.params = {timesteps_param(),
              ParamSpec::choice("encoding", {"direct", "rate"}, "direct",
                                "direct: analog input every step; rate: Bernoulli spikes, "
                                "p = clamp(x, 0, 1)")};
  k.accepts = {DataKind::Image, DataKind::Vector};
  k.infer = infer_encoder;
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<SpikeEncoderModule>(pint(p, "timesteps"), pstr(p, "encoding") == "rate",
                                                infer_encoder(in, p), rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    const int steps = pint(p, "timesteps");
    const double neurons = static_cast<double>(in[0].numel());
    w.category = hw::OpCategory::Spiking;
    w.spiking = true;
    w.timesteps = steps;
    w.macs = 0;
    // rate: one random draw and compare per element and step; direct: a copy
    w.other_flops = pstr(p, "encoding") == "rate" ? 2.0 * static_cast<double>(out.numel()) : 0.0;
    weighted_mapping(w, neurons, 0, 0);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
