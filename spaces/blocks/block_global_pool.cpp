// global_pool: average over all positions (image H x W, or sequence length) -> vector.
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class GlobalPoolModule : public nn::Module {
 public:
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    const nn::Var& x = in.at(0);
    return x.shape().rank() == 4 ? nn::global_avg_pool(x) : nn::mean_dim(x, 1);
  }
  void collect_parameters(std::vector<nn::Var>&) override {}
  std::string name() const override { return "global_pool"; }
};
}  // namespace

void register_block_global_pool(Catalogue& c) {
  BlockKind k;
  k.name = "global_pool";
  k.description = "global average pooling: image[C,H,W] -> vector[C], sequence[L,D] -> vector[D]";
  k.accepts = {DataKind::Image, DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json&) {
    return TensorType::vector(single_input(in).features());
  };
  k.build = [](const std::vector<TensorType>&, const json&, Rng&) {
    return std::make_unique<GlobalPoolModule>();
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json&,
               hw::NodeWorkload& w) {
    w.category = hw::OpCategory::Pool;
    w.other_flops = static_cast<double>(in[0].numel());
    w.neurons = static_cast<double>(out.numel());
    w.fan_in = static_cast<double>(in[0].numel()) / static_cast<double>(out.numel());
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
