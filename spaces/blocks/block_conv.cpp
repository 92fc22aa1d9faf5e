// conv: dense 2-D convolution with "same" padding, optional batch norm, then an activation.
// "channel_prune" builds it with kept_channels(channels, ratio) output channels (structured
// pruning as architecture: the removed channels do not exist, downstream shapes shrink).
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

void register_block_conv(Catalogue& c) {
  BlockKind k;
  k.name = "conv";
  k.description = "2-D convolution (same padding) -> batch norm -> activation";
  k.params = {ParamSpec::int_range("channels", 1, 4096, 16, "output channels"),
              ParamSpec::int_set("kernel", {1, 3, 5, 7}, 3, "square kernel size"),
              ParamSpec::int_set("stride", {1, 2}, 1, "stride"),
              activation_param("relu"),
              ParamSpec::boolean("batch_norm", true, "batch norm after the convolution"),
              channel_prune_param("output channels")};
  k.accepts = {DataKind::Image};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    const TensorType& t = single_input(in);
    int kk = pint(p, "kernel"), s = pint(p, "stride"), pad = same_padding(kk);
    return TensorType::image(kept_width(p, "channels"), conv_out_size(t.dims[1], kk, s, pad),
                             conv_out_size(t.dims[2], kk, s, pad));
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    ConvUnit u(in[0].dims[0], kept_width(p, "channels"), pint(p, "kernel"), pint(p, "stride"), 1,
               pbool(p, "batch_norm"), nn::Activation::None, activation_of(pstr(p, "activation")),
               bits_of(p), prune_of(p), rng);
    return std::make_unique<ConvModule>("conv", std::move(u));
  };
  // Deployment compilers fuse conv, BN and activation into one kernel, so kernels = 1.
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    const double cin = in[0].dims[0], cout = out.dims[0], kk = pint(p, "kernel");
    const double hw_out = double(out.dims[1]) * out.dims[2];
    const bool bn = pbool(p, "batch_norm");
    w.category = hw::OpCategory::Conv;
    w.macs = cout * hw_out * cin * kk * kk;
    w.params = cout * cin * kk * kk + (bn ? 2 * cout : cout);
    w.other_flops =
        static_cast<double>(out.numel()) * ((bn ? 2 : 1) + activation_flops(pstr(p, "activation")));
    weighted_mapping(w, static_cast<double>(out.numel()), cin * kk * kk, cout * cin * kk * kk);
    // Eager frameworks launch the conv, the batch norm and the activation separately.
    w.eager_kernels = 1 + (bn ? 1 : 0) + (pstr(p, "activation") != "none" ? 1 : 0);
    count_channels(p, "channels", w);
    w.window = pint(p, "kernel");
    w.stride = pint(p, "stride");
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
