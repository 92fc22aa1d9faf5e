// avg_pool_3x3: NAS-Bench-201's 3x3 average pooling, stride 1, padding 1, excluding padding.
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class AvgPool3Module : public nn::Module {
 public:
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    return nn::avg_pool2d(in.at(0), 3, 1, 1);
  }
  void collect_parameters(std::vector<nn::Var>&) override {}
  std::string name() const override { return "avg_pool_3x3"; }
};
}  // namespace

void register_block_avg_pool_3x3(Catalogue& c) {
  BlockKind k;
  k.name = "avg_pool_3x3";
  k.description = "NAS-Bench-201 3x3 average pooling (stride 1, padding 1, shape kept)";
  k.accepts = {DataKind::Image};
  k.infer = [](const std::vector<TensorType>& in, const json&) { return single_input(in); };
  k.build = [](const std::vector<TensorType>&, const json&, Rng&) {
    return std::make_unique<AvgPool3Module>();
  };
  k.count = [](const std::vector<TensorType>&, const TensorType& out, const json&,
               hw::NodeWorkload& w) {
    w.category = hw::OpCategory::Pool;
    w.other_flops = 9.0 * static_cast<double>(out.numel());
    w.neurons = static_cast<double>(out.numel());
    w.fan_in = 9;
    w.window = 3;
    w.stride = 1;
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
