// head: the classifier / regressor output layer (linear to the task's outputs, no activation).
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
namespace {
using namespace blocks;

class HeadModule : public nn::Module {
 public:
  HeadModule(int in, int out, int bits, double prune, Rng& rng)
      : lin_(in, out, true, rng), bits_(bits), prune_(prune) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    return compressed_linear(in.at(0), lin_.weight, lin_.bias, bits_, prune_);
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    lin_.append_named_parameters(prefix + "linear.", out);
  }
  std::string name() const override { return "head"; }

 private:
  nn::Linear lin_;
  int bits_;
  double prune_;
};
}  // namespace

void register_block_head(Catalogue& c) {
  BlockKind k;
  k.name = "head";
  k.description = "output layer: linear map of the last dimension to the task's outputs (logits)";
  k.params = {ParamSpec::int_range("outputs", 1, 100000, 10, "number of outputs (classes)")};
  k.accepts = {DataKind::Vector, DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    TensorType t = single_input(in);
    t.dims.back() = pint(p, "outputs");
    return t;
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<HeadModule>(in[0].dims.back(), pint(p, "outputs"), bits_of(p),
                                        prune_of(p), rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    const double din = in[0].dims.back(), dout = pint(p, "outputs");
    const double rows = static_cast<double>(in[0].numel()) / din;
    w.category = hw::OpCategory::Dense;
    w.macs = rows * din * dout;
    w.params = din * dout + dout;
    w.other_flops = static_cast<double>(out.numel());  // bias
    weighted_mapping(w, static_cast<double>(out.numel()), din, din * dout);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
