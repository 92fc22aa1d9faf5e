// skip_connect: identity (NAS-Bench-201's skip_connect at stride 1; a plain skip anywhere).
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class IdentityModule : public nn::Module {
 public:
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override { return in.at(0); }
  void collect_parameters(std::vector<nn::Var>&) override {}
  std::string name() const override { return "skip_connect"; }
};
}  // namespace

void register_block_skip_connect(Catalogue& c) {
  BlockKind k;
  k.name = "skip_connect";
  k.description = "identity (NAS-Bench-201 skip_connect)";
  k.accepts = {DataKind::Image, DataKind::Sequence, DataKind::Vector};
  k.infer = [](const std::vector<TensorType>& in, const json&) { return single_input(in); };
  k.build = [](const std::vector<TensorType>&, const json&, Rng&) {
    return std::make_unique<IdentityModule>();
  };
  k.count = [](const std::vector<TensorType>&, const TensorType&, const json&,
               hw::NodeWorkload& w) {
    w.category = hw::OpCategory::Elementwise;
    w.kernels = 0;  // no computation: the consumer reads the producer's buffer
  };
  k.zero_copy = true;
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
