// norm: batch norm (over channels / features) or layer norm (over the feature dimension; for
// images over channels at each pixel, as in ConvNeXt).
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class NormModule : public nn::Module {
 public:
  NormModule(bool batch, int features) : batch_(batch) {
    if (batch)
      bn_ = std::make_unique<nn::BatchNorm>(features);
    else
      ln_ = std::make_unique<nn::LayerNorm>(features);
  }
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    const nn::Var& x = in.at(0);
    const int rank = x.shape().rank();
    if (batch_) {
      if (rank != 3) return bn_->forward(x, ctx.training);  // [N,D] or [N,C,H,W]
      // Sequence [N,L,D]: statistics over batch and positions.
      nn::Shape s = x.shape();
      nn::Var y = bn_->forward(nn::reshape(x, nn::Shape{s[0] * s[1], s[2]}), ctx.training);
      return nn::reshape(y, s);
    }
    if (rank != 4) return ln_->forward(x);
    // Image: move channels last, normalise them per pixel, move back.
    return nn::transpose(ln_->forward(nn::transpose(x, 1, 3)), 1, 3);
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    if (bn_)
      bn_->append_named_parameters(prefix + "bn.", out);
    else
      ln_->append_named_parameters(prefix + "ln.", out);
  }
  void append_named_buffers(const std::string& prefix, std::vector<nn::NamedBuffer>& out) override {
    if (bn_) bn_->append_named_buffers(prefix + "bn.", out);
  }
  std::string name() const override { return batch_ ? "batch_norm" : "layer_norm"; }

 private:
  bool batch_;
  std::unique_ptr<nn::BatchNorm> bn_;
  std::unique_ptr<nn::LayerNorm> ln_;
};
}  // namespace

void register_block_norm(Catalogue& c) {
  BlockKind k;
  k.name = "norm";
  k.description =
      "normalisation: batch norm over features, or layer norm over each position's features";
  k.params = {ParamSpec::choice("type", {"batch", "layer"}, "batch", "normalisation kind")};
  k.accepts = {DataKind::Image, DataKind::Sequence, DataKind::Vector};
  k.infer = [](const std::vector<TensorType>& in, const json&) { return single_input(in); };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng&) {
    return std::make_unique<NormModule>(pstr(p, "type") == "batch", in[0].features());
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    const bool batch = pstr(p, "type") == "batch";
    w.category = hw::OpCategory::Norm;
    w.params = 2.0 * in[0].features();
    // Inference: batch norm is a per-channel affine (2/elt); layer norm computes its statistics
    // (mean, variance, normalise, affine: ~5/elt).
    w.other_flops = static_cast<double>(out.numel()) * (batch ? 2 : 5);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
