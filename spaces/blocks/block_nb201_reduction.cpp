// nb201_reduction: NAS-Bench-201's residual reduction block (ResNet basic block, stride 2):
// ReLU-Conv3x3(s2)-BN -> ReLU-Conv3x3-BN, plus shortcut AvgPool(2,2) -> Conv1x1 (no bias, no BN).
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class ReductionModule : public nn::Module {
 public:
  ReductionModule(int cin, int cout, int bits, double prune, Rng& rng)
      : a_(cin, cout, 3, 2, 1, true, nn::Activation::Relu, nn::Activation::None, bits, prune, rng),
        b_(cout, cout, 3, 1, 1, true, nn::Activation::Relu, nn::Activation::None, bits, prune, rng),
        shortcut_(cin, cout, 1, nn::Conv2dOptions{}, false, rng),
        bits_(bits),
        prune_(prune) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    const nn::Var& x = in.at(0);
    nn::Var y = b_.forward(a_.forward(x, ctx.training), ctx.training);
    nn::Var s =
        nn::conv2d(nn::avg_pool2d(x, 2, 2, 0), compress_weight(shortcut_.weight, bits_, prune_),
                   shortcut_.bias, shortcut_.options);
    return nn::add(y, s);
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    a_.append_named_parameters(prefix + "a.", out);
    b_.append_named_parameters(prefix + "b.", out);
    shortcut_.append_named_parameters(prefix + "shortcut.", out);
  }
  void append_named_buffers(const std::string& prefix, std::vector<nn::NamedBuffer>& out) override {
    a_.append_named_buffers(prefix + "a.", out);
    b_.append_named_buffers(prefix + "b.", out);
  }
  std::string name() const override { return "nb201_reduction"; }

 private:
  ConvUnit a_, b_;
  nn::Conv2d shortcut_;
  int bits_;
  double prune_;
};
}  // namespace

void register_block_nb201_reduction(Catalogue& c) {
  BlockKind k;
  k.name = "nb201_reduction";
  k.description = "NAS-Bench-201 residual reduction block: halves H and W, sets the channels";
  k.params = {ParamSpec::int_range("channels", 1, 4096, 32, "output channels")};
  k.accepts = {DataKind::Image};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    const TensorType& t = single_input(in);
    if (t.dims[1] % 2 || t.dims[2] % 2)
      throw std::invalid_argument("needs even height and width, got " + t.str());
    return TensorType::image(pint(p, "channels"), t.dims[1] / 2, t.dims[2] / 2);
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<ReductionModule>(in[0].dims[0], pint(p, "channels"), bits_of(p),
                                             prune_of(p), rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json&,
               hw::NodeWorkload& w) {
    const double ci = in[0].dims[0], co = out.dims[0], hw_out = double(out.dims[1]) * out.dims[2];
    const double nin = static_cast<double>(in[0].numel()), nout = static_cast<double>(out.numel());
    w.category = hw::OpCategory::Conv;
    w.macs = co * hw_out * ci * 9 + co * hw_out * co * 9 + co * hw_out * ci;
    w.params = 9 * ci * co + 2 * co + 9 * co * co + 2 * co + ci * co;
    // ReLUs, two BNs, the shortcut's average pool and the residual add.
    w.other_flops = nin + nout + 2 * 2 * nout + nin + nout;
    // Eager (PyTorch ResNetBasicblock): ReLU, conv_a, BN, ReLU, conv_b, BN, avg pool, 1x1 conv,
    // add = 9 kernels.  Fused: the leading ReLU (its input also feeds the unactivated shortcut),
    // conv_a+BN+ReLU, conv_b+BN, avg pool, 1x1 conv, add = 6.
    w.kernels = 6;
    w.eager_kernels = 9;
    weighted_mapping(w, nout, ci * 9, 9 * ci * co + 9 * co * co + ci * co);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
