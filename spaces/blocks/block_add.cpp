// add: elementwise sum of 2..8 inputs of identical type (residual / skip merges).  Commutative:
// the canonical form ignores input order.
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class AddModule : public nn::Module {
 public:
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    nn::Var y = in.at(0);
    for (std::size_t i = 1; i < in.size(); ++i) y = nn::add(y, in[i]);
    return y;
  }
  void collect_parameters(std::vector<nn::Var>&) override {}
  std::string name() const override { return "add"; }
};
}  // namespace

void register_block_add(Catalogue& c) {
  BlockKind k;
  k.name = "add";
  k.description = "elementwise sum of inputs of identical type (residual and skip merges)";
  k.accepts = {DataKind::Image, DataKind::Sequence, DataKind::Vector};
  k.min_inputs = 2;
  k.max_inputs = 8;
  k.commutative = true;
  k.infer = [](const std::vector<TensorType>& in, const json&) {
    for (std::size_t i = 1; i < in.size(); ++i)
      if (!(in[i] == in[0]))
        throw std::invalid_argument("inputs must have identical types: input 0 is " + in[0].str() +
                                    ", input " + std::to_string(i) + " is " + in[i].str());
    return in[0];
  };
  k.build = [](const std::vector<TensorType>&, const json&, Rng&) {
    return std::make_unique<AddModule>();
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json&,
               hw::NodeWorkload& w) {
    w.category = hw::OpCategory::Elementwise;
    w.other_flops = static_cast<double>(in.size() - 1) * static_cast<double>(out.numel());
    w.neurons = static_cast<double>(out.numel());
    w.fan_in = static_cast<double>(in.size());
    // Binary adds in both rules (torch.add and TFLite ADD take two operands): inputs - 1.
    w.kernels = static_cast<int>(in.size()) - 1;
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
