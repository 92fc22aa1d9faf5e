// nor_conv_1x1 / nor_conv_3x3: NAS-Bench-201's ReLU -> Conv(k, stride 1, same padding, no
// bias) -> BatchNorm, keeping the channel count.
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
BlockKind nor_conv_kind(int kernel) {
  BlockKind k;
  k.name = "nor_conv_" + std::to_string(kernel) + "x" + std::to_string(kernel);
  k.description = "NAS-Bench-201 ReLU -> conv " + std::to_string(kernel) + "x" +
                  std::to_string(kernel) + " (channels kept) -> batch norm";
  k.accepts = {DataKind::Image};
  k.infer = [](const std::vector<TensorType>& in, const json&) { return single_input(in); };
  k.build = [kernel](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    const int ch = in[0].dims[0];
    ConvUnit u(ch, ch, kernel, 1, 1, true, nn::Activation::Relu, nn::Activation::None, bits_of(p),
               prune_of(p), rng);
    return std::make_unique<ConvModule>("nor_conv", std::move(u));
  };
  k.count = [kernel](const std::vector<TensorType>& in, const TensorType& out, const json&,
                     hw::NodeWorkload& w) {
    const double ch = out.dims[0], kk = kernel, hw_out = double(out.dims[1]) * out.dims[2];
    w.category = hw::OpCategory::Conv;
    w.macs = ch * hw_out * ch * kk * kk;
    w.params = ch * ch * kk * kk + 2 * ch;
    w.other_flops = static_cast<double>(in[0].numel()) + 2.0 * static_cast<double>(out.numel());
    weighted_mapping(w, static_cast<double>(out.numel()), ch * kk * kk, ch * ch * kk * kk);
    // Eager (PyTorch): ReLU, conv, batch norm = 3 kernels.  Fused (TensorRT, TFLite): the BN
    // folds into the conv, but the ReLU comes *before* it and reads the cell node that other
    // edges (skip, pool) read unactivated, so it stays its own op: 2 kernels.
    w.kernels = 2;
    w.eager_kernels = 3;
    w.window = kernel;
    w.stride = 1;
  };
  return k;
}
}  // namespace

void register_block_nor_conv_1x1(Catalogue& c) { c.add(nor_conv_kind(1)); }
void register_block_nor_conv_3x3(Catalogue& c) { c.add(nor_conv_kind(3)); }

}  // namespace hwnas::spaces
