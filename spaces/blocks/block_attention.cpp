// attention / sliding_attention: multi-head self-attention over a sequence with fused QKV and
// output projections.  sliding_attention restricts each query to keys within `window` positions
// (O(L * window) time and memory).  Both keep the shape [L, D]; D must divide by heads.
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
class AttentionModule : public nn::Module {
 public:
  AttentionModule(int d, int heads, bool causal, int window, int bits, double prune, Rng& rng)
      : mhsa_(d, heads, causal, window, rng), d_(d), bits_(bits), prune_(prune) {}
  // Same computation as nn::MultiHeadSelfAttention::forward, with compressed projection weights.
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    if (bits_ >= 16 && prune_ <= 0) return mhsa_.forward(in.at(0));
    nn::Var qkv =
        nn::linear(in.at(0), compress_weight(mhsa_.qkv.weight, bits_, prune_), mhsa_.qkv.bias);
    auto parts = nn::split(qkv, {d_, d_, d_}, 2);
    nn::Var y =
        mhsa_.window > 0
            ? nn::sliding_window_attention(parts[0], parts[1], parts[2], mhsa_.heads, mhsa_.window,
                                           mhsa_.causal)
            : nn::multi_head_attention(parts[0], parts[1], parts[2], mhsa_.heads, mhsa_.causal);
    return nn::linear(y, compress_weight(mhsa_.out.weight, bits_, prune_), mhsa_.out.bias);
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    mhsa_.append_named_parameters(prefix + "attn.", out);
  }
  std::string name() const override { return mhsa_.window > 0 ? "sliding_attention" : "attention"; }

 private:
  nn::MultiHeadSelfAttention mhsa_;
  int d_, bits_;
  double prune_;
};

// Query-key pairs actually scored, summed over queries.
double attended_pairs(int len, int window, bool causal) {
  double pairs = 0;
  for (int i = 0; i < len; ++i) {
    int lo = window > 0 ? std::max(0, i - window + 1) : 0;
    int hi = causal ? i : (window > 0 ? std::min(len - 1, i + window - 1) : len - 1);
    pairs += hi - lo + 1;
  }
  return pairs;
}

BlockKind attention_kind(bool sliding) {
  BlockKind k;
  k.name = sliding ? "sliding_attention" : "attention";
  k.description = sliding ? "multi-head self-attention restricted to a window of nearby positions"
                          : "multi-head self-attention over the whole sequence";
  k.params = {ParamSpec::int_set("heads", {1, 2, 4, 8}, 2, "attention heads (must divide D)"),
              ParamSpec::boolean("causal", false, "attend only to earlier positions")};
  if (sliding)
    k.params.push_back(
        ParamSpec::int_range("window", 1, 4096, 8, "positions each query sees on each side"));
  k.accepts = {DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    const TensorType& t = single_input(in);
    if (t.dims[1] % pint(p, "heads") != 0)
      throw std::invalid_argument("model dimension " + std::to_string(t.dims[1]) +
                                  " not divisible by heads " + std::to_string(pint(p, "heads")));
    return t;
  };
  k.build = [sliding](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<AttentionModule>(in[0].dims[1], pint(p, "heads"), pbool(p, "causal"),
                                             sliding ? pint(p, "window") : 0, bits_of(p),
                                             prune_of(p), rng);
  };
  k.count = [sliding](const std::vector<TensorType>& in, const TensorType&, const json& p,
                      hw::NodeWorkload& w) {
    const int len = in[0].dims[0];
    const double d = in[0].dims[1], heads = pint(p, "heads");
    const double pairs = attended_pairs(len, sliding ? pint(p, "window") : 0, pbool(p, "causal"));
    w.category = hw::OpCategory::Attention;
    // QKV and output projections (4 L D^2) plus scores QK^T and weighted sum AV (D per pair each).
    w.macs = 4.0 * len * d * d + 2.0 * pairs * d;
    w.params = 4.0 * d * d + 4.0 * d;
    // Softmax (max, exp, sum, divide) and the 1/sqrt(d) scaling per scored pair and head, plus
    // projection biases.
    w.other_flops = 5.0 * pairs * heads + 4.0 * len * d;
    w.kernels = 5;  // qkv projection, scores, softmax, weighted sum, output projection
    weighted_mapping(w, len * d, d, 4.0 * d * d);
  };
  return k;
}
}  // namespace

void register_block_attention(Catalogue& c) { c.add(attention_kind(false)); }
void register_block_sliding_attention(Catalogue& c) { c.add(attention_kind(true)); }

}  // namespace hwnas::spaces
