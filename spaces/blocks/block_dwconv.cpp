// dwconv: depthwise 2-D convolution (one filter per channel), the MobileNet building block.
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

void register_block_dwconv(Catalogue& c) {
  BlockKind k;
  k.name = "dwconv";
  k.description =
      "depthwise 2-D convolution (groups = channels, same padding) -> batch norm -> activation";
  k.params = {ParamSpec::int_set("kernel", {3, 5, 7}, 3, "square kernel size"),
              ParamSpec::int_set("stride", {1, 2}, 1, "stride"), activation_param("relu"),
              ParamSpec::boolean("batch_norm", true, "batch norm after the convolution")};
  k.accepts = {DataKind::Image};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    const TensorType& t = single_input(in);
    int kk = pint(p, "kernel"), s = pint(p, "stride"), pad = same_padding(kk);
    return TensorType::image(t.dims[0], conv_out_size(t.dims[1], kk, s, pad),
                             conv_out_size(t.dims[2], kk, s, pad));
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    const int ch = in[0].dims[0];
    ConvUnit u(ch, ch, pint(p, "kernel"), pint(p, "stride"), ch, pbool(p, "batch_norm"),
               nn::Activation::None, activation_of(pstr(p, "activation")), bits_of(p), prune_of(p),
               rng);
    return std::make_unique<ConvModule>("dwconv", std::move(u));
  };
  k.count = [](const std::vector<TensorType>&, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    const double ch = out.dims[0], kk = pint(p, "kernel");
    const double hw_out = double(out.dims[1]) * out.dims[2];
    const bool bn = pbool(p, "batch_norm");
    w.category = hw::OpCategory::DepthwiseConv;
    w.macs = ch * hw_out * kk * kk;
    w.params = ch * kk * kk + (bn ? 2 * ch : ch);
    w.other_flops =
        static_cast<double>(out.numel()) * ((bn ? 2 : 1) + activation_flops(pstr(p, "activation")));
    weighted_mapping(w, static_cast<double>(out.numel()), kk * kk, ch * kk * kk);
    // Fused runtimes: one kernel (BN folded, activation fused); eager: each its own.
    w.eager_kernels = 1 + (bn ? 1 : 0) + (pstr(p, "activation") != "none" ? 1 : 0);
    w.window = pint(p, "kernel");
    w.stride = pint(p, "stride");
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
