// none: the zero operation (NAS-Bench-201 / DARTS "none"): outputs zeros of the input's type,
// so an edge with it contributes nothing to the sum it feeds.
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class ZeroModule : public nn::Module {
 public:
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    return nn::scale(in.at(0), 0.0f);
  }
  void collect_parameters(std::vector<nn::Var>&) override {}
  std::string name() const override { return "none"; }
};
}  // namespace

void register_block_none(Catalogue& c) {
  BlockKind k;
  k.name = "none";
  k.description = "zero operation: outputs zeros (the edge is absent)";
  k.accepts = {DataKind::Image, DataKind::Sequence, DataKind::Vector};
  k.infer = [](const std::vector<TensorType>& in, const json&) { return single_input(in); };
  k.build = [](const std::vector<TensorType>&, const json&, Rng&) {
    return std::make_unique<ZeroModule>();
  };
  k.count = [](const std::vector<TensorType>&, const TensorType&, const json&,
               hw::NodeWorkload& w) {
    w.category = hw::OpCategory::Elementwise;
    w.kernels = 0;  // compiled away: nothing is read or computed
    w.input_bytes = 0;
    w.output_bytes = 0;
  };
  k.zero_output = true;
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
