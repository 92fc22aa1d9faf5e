// concat: joins 2..8 inputs along the feature dimension (image channels, sequence/vector
// features); other dimensions must match.  Input order matters.
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class ConcatModule : public nn::Module {
 public:
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    const int rank = in.at(0).shape().rank();
    return nn::concat(in, rank == 4 ? 1 : rank - 1);
  }
  void collect_parameters(std::vector<nn::Var>&) override {}
  std::string name() const override { return "concat"; }
};
}  // namespace

void register_block_concat(Catalogue& c) {
  BlockKind k;
  k.name = "concat";
  k.description = "concatenation along features (image channels, sequence/vector last dim)";
  k.accepts = {DataKind::Image, DataKind::Sequence, DataKind::Vector};
  k.min_inputs = 2;
  k.max_inputs = 8;
  k.infer = [](const std::vector<TensorType>& in, const json&) {
    TensorType out = in[0];
    const std::size_t fdim = in[0].kind == DataKind::Image ? 0 : in[0].dims.size() - 1;
    out.dims[fdim] = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
      bool ok = in[i].kind == in[0].kind;
      for (std::size_t d = 0; ok && d < in[0].dims.size(); ++d)
        if (d != fdim && in[i].dims[d] != in[0].dims[d]) ok = false;
      if (!ok)
        throw std::invalid_argument("inputs must match except in features: input 0 is " +
                                    in[0].str() + ", input " + std::to_string(i) + " is " +
                                    in[i].str());
      out.dims[fdim] += in[i].dims[fdim];
    }
    return out;
  };
  k.build = [](const std::vector<TensorType>&, const json&, Rng&) {
    return std::make_unique<ConcatModule>();
  };
  k.count = [](const std::vector<TensorType>&, const TensorType& out, const json&,
               hw::NodeWorkload& w) {
    w.category = hw::OpCategory::Elementwise;  // a copy: bytes, no arithmetic
    w.neurons = static_cast<double>(out.numel());
    w.fan_in = 1;
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
