// moe: a mixture-of-experts feed-forward layer (nn::MoeLayer: top-k router, FFN experts, expert
// capacity with dropped or passed-through overflow, Switch load-balancing loss), on sequences
// [L, d] (every position is a token) or vectors [d]; the shape is kept.  Tokens are really
// routed: each expert computes only the tokens it received.
//
// While recording activity it reports tokens_per_expert (per sample, after capacity),
// active_experts (expert FFNs run per token, so overflowed assignments lower it below k) and
// dropped_tokens (assignments over capacity per sample).  The workload holds every expert's
// weights (memory) but counts only k experts per token of compute; with a measurement the
// devices charge the measured active_experts instead of k (hw::charge_measured_activity).
// "channel_prune" removes hidden units of every expert FFN (structured: the experts are built at
// kept_channels(hidden, ratio)); the layer's input and output width stay d.
// See docs/blocks/moe.md.
#include <algorithm>

#include "nn/moe.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {

class MoeModule : public nn::Module {
 public:
  MoeModule(int d, const nn::MoeOptions& o, int bits, double prune, Rng& rng) : moe_(d, o, rng) {
    if (bits < 16 || prune > 0)
      moe_.weight_transform = [bits, prune](const nn::Var& w) {
        return compress_weight(w, bits, prune);
      };
  }
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    return moe_.forward(in.at(0), ctx);
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    moe_.append_named_parameters(prefix + "moe.", out);
  }
  std::string name() const override { return "moe"; }

 private:
  nn::MoeLayer moe_;
};

nn::MoeOptions options_of(const json& p) {
  nn::MoeOptions o;
  o.experts = pint(p, "experts");
  o.k = pint(p, "k");
  o.hidden = kept_width(p, "hidden");  // after channel_prune
  o.capacity_factor = pfloat(p, "capacity_factor");
  o.overflow = pstr(p, "overflow") == "pass" ? nn::MoeOverflow::Pass : nn::MoeOverflow::Drop;
  o.aux_weight = pfloat(p, "aux_weight");
  o.activation = activation_of(pstr(p, "activation"));
  return o;
}

}  // namespace

void register_block_moe(Catalogue& c) {
  BlockKind k;
  k.name = "moe";
  k.description =
      "mixture of experts: a top-k router sends each token to k of E FFN experts (capacity, "
      "load-balancing loss)";
  k.params = {
      ParamSpec::int_set("experts", {2, 4, 8, 16}, 4, "experts E"),
      ParamSpec::int_set("k", {1, 2}, 1, "experts per token (must be <= experts)"),
      ParamSpec::int_range("hidden", 1, 8192, 64, "hidden units of each expert FFN"),
      ParamSpec::float_range("capacity_factor", 1.0, 2.0, 1.25,
                             "expert capacity = ceil(factor * tokens * k / experts) per batch"),
      ParamSpec::choice("overflow", {"drop", "pass"}, "drop",
                        "assignments over capacity: drop (output 0) or pass (identity x gate)"),
      ParamSpec::float_range("aux_weight", 0.0, 0.1, 0.01,
                             "weight of the load-balancing loss added in training"),
      ParamSpec::choice("activation", {"relu", "gelu", "silu", "tanh", "sigmoid", "none"}, "relu",
                        "activation inside each expert"),
      channel_prune_param("each expert's hidden units")};
  k.accepts = {DataKind::Vector, DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    const TensorType& t = single_input(in);
    if (pint(p, "k") > pint(p, "experts"))
      throw std::invalid_argument("moe: k = " + std::to_string(pint(p, "k")) +
                                  " exceeds experts = " + std::to_string(pint(p, "experts")) +
                                  "; use k <= experts");
    return t;
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<MoeModule>(in[0].dims.back(), options_of(p), bits_of(p), prune_of(p),
                                       rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const nn::MoeOptions o = options_of(p);
    const double d = in[0].dims.back(), E = o.experts, K = o.k, h = o.hidden;
    const double tokens = static_cast<double>(in[0].numel()) / d;  // per sample
    const std::string act = pstr(p, "activation");
    w.category = hw::OpCategory::Routing;
    // Router d x E per token; each of the k chosen experts runs its two GEMMs (2 d h).
    w.routed_macs = tokens * K * 2.0 * d * h;
    w.macs = tokens * d * E + w.routed_macs;
    // Per chosen expert and token: biases (h + d), activation, gate multiply and combine add (2d).
    w.routed_other_flops = tokens * K * (h * (1 + activation_flops(act)) + 3.0 * d);
    // Router bias and softmax (~5 per logit), top-k selection (E comparisons per choice).
    w.other_flops = tokens * E * (5.0 + K) + w.routed_other_flops;
    // Every expert is resident, whichever runs: weight memory holds all E.
    w.params = d * E + E + E * (2.0 * d * h + h + d);
    w.total_experts = E;
    count_channels(p, "hidden", w);
    w.nominal_active_experts = K;
    w.seq_len = in[0].kind == DataKind::Sequence ? in[0].dims[0] : 0;
    // Fused: router GEMM, softmax + top-k, dispatch gather, two GEMMs per expert that receives
    // tokens (activation fused), combine scatter.  Eager adds the activation and the gate
    // multiply per expert.
    const double active = std::min(E, tokens * K);
    w.kernels = static_cast<int>(4 + 2 * active);
    w.eager_kernels = static_cast<int>(5 + active * (3 + (act != "none" ? 1 : 0)));
    weighted_mapping(w, tokens * d, d, E * 2.0 * d * h);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
