// activation: an elementwise nonlinearity as its own node (e.g. NB201's final ReLU).
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class ActivationModule : public nn::Module {
 public:
  explicit ActivationModule(nn::Activation a) : act_(a) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    return nn::apply_activation(in.at(0), act_);
  }
  void collect_parameters(std::vector<nn::Var>&) override {}
  std::string name() const override { return "activation"; }

 private:
  nn::Activation act_;
};
}  // namespace

void register_block_activation(Catalogue& c) {
  BlockKind k;
  k.name = "activation";
  k.description = "elementwise nonlinearity";
  k.params = {ParamSpec::choice("fn", {"relu", "gelu", "silu", "tanh", "sigmoid"}, "relu",
                                "the nonlinearity")};
  k.accepts = {DataKind::Image, DataKind::Sequence, DataKind::Vector};
  k.infer = [](const std::vector<TensorType>& in, const json&) { return single_input(in); };
  k.build = [](const std::vector<TensorType>&, const json& p, Rng&) {
    return std::make_unique<ActivationModule>(activation_of(pstr(p, "fn")));
  };
  k.count = [](const std::vector<TensorType>&, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    w.category = hw::OpCategory::Elementwise;
    w.other_flops = static_cast<double>(out.numel()) * activation_flops(pstr(p, "fn"));
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
