// dense: fully connected layer over the last dimension (vectors, or every position of a sequence).
// With lora_rank > 0 the layer is a frozen base with a trainable low-rank adapter (nn/lora.hpp,
// docs/blocks/lora.md); the workload is the merged layer's, the same as without the adapter.
// "channel_prune" builds it with kept_channels(units, ratio) outputs (structured pruning).
#include "nn/lora.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
namespace {
using namespace blocks;

class DenseModule : public nn::Module {
 public:
  DenseModule(int in, int out, bool bias, nn::Activation act, int bits, double prune,
              const LoraParams& lora, Rng& rng)
      : lin_(in, out, bias, lora.rank, lora.alpha, rng), act_(act), bits_(bits), prune_(prune) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    return nn::apply_activation(
        lin_.forward_through(in.at(0),
                             [this](const nn::Var& x, const nn::Var& w, const nn::Var& b) {
                               return compressed_linear(x, w, b, bits_, prune_);
                             }),
        act_);
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    lin_.append_named_parameters(prefix + "linear.", out);
  }
  std::string name() const override { return "dense"; }

 private:
  nn::LoraLinear lin_;
  nn::Activation act_;
  int bits_;
  double prune_;
};
}  // namespace

void register_block_dense(Catalogue& c) {
  BlockKind k;
  k.name = "dense";
  k.description = "fully connected layer over the last dimension, then an activation";
  k.params = {ParamSpec::int_range("units", 1, 8192, 64, "output features"),
              activation_param("relu"),
              ParamSpec::boolean("bias", true, "learned bias"),
              lora_rank_param(),
              lora_alpha_param(),
              channel_prune_param("output units")};
  k.accepts = {DataKind::Vector, DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    TensorType t = single_input(in);
    t.dims.back() = kept_width(p, "units");
    return t;
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<DenseModule>(in[0].dims.back(), kept_width(p, "units"),
                                         pbool(p, "bias"), activation_of(pstr(p, "activation")),
                                         bits_of(p), prune_of(p), lora_of(p), rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    const double din = in[0].dims.back(), dout = kept_width(p, "units");
    const double rows = static_cast<double>(in[0].numel()) / din;
    const bool bias = pbool(p, "bias");
    w.category = hw::OpCategory::Dense;
    w.macs = rows * din * dout;
    w.params = din * dout + (bias ? dout : 0);
    w.other_flops = static_cast<double>(out.numel()) *
                    ((bias ? 1 : 0) + activation_flops(pstr(p, "activation")));
    weighted_mapping(w, static_cast<double>(out.numel()), din, din * dout);
    // A LoRA adapter is merged before deployment, so it adds nothing here.
    // The bias rides in the GEMM (addmm); eager frameworks launch the activation separately.
    w.eager_kernels = 1 + (pstr(p, "activation") != "none" ? 1 : 0);
    count_channels(p, "units", w);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
