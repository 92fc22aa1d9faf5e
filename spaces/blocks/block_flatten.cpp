// flatten: image or sequence -> vector of all its elements (a view: no arithmetic, no kernel).
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class FlattenModule : public nn::Module {
 public:
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    return nn::flatten(in.at(0));
  }
  void collect_parameters(std::vector<nn::Var>&) override {}
  std::string name() const override { return "flatten"; }
};
}  // namespace

void register_block_flatten(Catalogue& c) {
  BlockKind k;
  k.name = "flatten";
  k.description =
      "flatten to a vector: image[C,H,W] -> vector[C*H*W], sequence[L,D] -> vector[L*D]";
  k.accepts = {DataKind::Image, DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json&) {
    return TensorType::vector(static_cast<int>(single_input(in).numel()));
  };
  k.build = [](const std::vector<TensorType>&, const json&, Rng&) {
    return std::make_unique<FlattenModule>();
  };
  k.count = [](const std::vector<TensorType>&, const TensorType&, const json&,
               hw::NodeWorkload& w) {
    w.category = hw::OpCategory::Other;
    w.kernels = 0;
  };
  k.zero_copy = true;
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
