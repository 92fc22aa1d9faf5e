// attention / sliding_attention: multi-head self-attention over a sequence with fused QKV and
// output projections.  sliding_attention restricts each query to keys within `window` positions
// (O(L * window) time and memory).  Both keep the shape [L, D]; D must divide by heads.
// `impl` picks the attention kernel: standard (scores materialised and kept for backward) or
// flash (nn::flash_attention: tiled online softmax, O(L d) memory, scores recomputed in
// backward); both compute the same function.  See docs/blocks/attention.md.
// With lora_rank > 0 the q, k, v and output projections get LoRA adapters over a frozen base
// (nn/lora.hpp, docs/blocks/lora.md); the workload is the merged layer's, as without them.
// With rope, queries and keys are rotated by their position (nn::rope, RoFormer): the only
// position information a mixer stack without position embeddings gets, and relative.
#include <array>

#include "nn/lora.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
// Flash tile size (Br = Bc): 64 x 64 scores (16 KiB) stay in a core's L1/L2 (a GPU SM's shared
// memory holds the same), and the workload's rescale count below uses the same tiling.
constexpr int kFlashBlock = 64;
constexpr std::array<const char*, 4> kLoraNames = {"lora_q", "lora_k", "lora_v", "lora_out"};

class AttentionModule : public nn::Module {
 public:
  AttentionModule(int d, int heads, bool causal, int window, bool flash, bool rope, int bits,
                  double prune, const LoraParams& lora, Rng& rng)
      : mhsa_(d, heads, causal, window, rng),
        d_(d),
        bits_(bits),
        prune_(prune),
        flash_(flash),
        rope_(rope) {
    if (lora.rank > 0) {
      for (auto& a : lora_) a = std::make_unique<nn::LoraAdapter>(d, d, lora.rank, lora.alpha, rng);
      for (nn::Var* v : {&mhsa_.qkv.weight, &mhsa_.qkv.bias, &mhsa_.out.weight, &mhsa_.out.bias})
        v->set_requires_grad(false);
    }
  }
  // Same computation as nn::MultiHeadSelfAttention::forward, with compressed projection weights
  // and, when present, the adapters' updates of q, k, v (one per slice of the fused QKV) and out.
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    const bool lora = lora_[0] != nullptr;
    if (bits_ >= 16 && prune_ <= 0 && !flash_ && !lora && !rope_) return mhsa_.forward(in.at(0));
    nn::Var qkv = compressed_linear(in.at(0), mhsa_.qkv.weight, mhsa_.qkv.bias, bits_, prune_);
    if (lora)
      qkv = nn::add(qkv, nn::concat({lora_[0]->delta(in.at(0)), lora_[1]->delta(in.at(0)),
                                     lora_[2]->delta(in.at(0))},
                                    2));
    auto parts = nn::split(qkv, {d_, d_, d_}, 2);
    if (rope_) {
      parts[0] = nn::rope(parts[0], mhsa_.heads);
      parts[1] = nn::rope(parts[1], mhsa_.heads);
    }
    nn::Var y =
        flash_ ? nn::flash_attention(
                     parts[0], parts[1], parts[2],
                     {mhsa_.heads, mhsa_.causal, mhsa_.window, kFlashBlock, kFlashBlock})
        : mhsa_.window > 0
            ? nn::sliding_window_attention(parts[0], parts[1], parts[2], mhsa_.heads, mhsa_.window,
                                           mhsa_.causal)
            : nn::multi_head_attention(parts[0], parts[1], parts[2], mhsa_.heads, mhsa_.causal);
    nn::Var out = compressed_linear(y, mhsa_.out.weight, mhsa_.out.bias, bits_, prune_);
    return lora ? nn::add(out, lora_[3]->delta(y)) : out;
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    mhsa_.append_named_parameters(prefix + "attn.", out);
    if (lora_[0])
      for (int i = 0; i < 4; ++i)
        lora_[static_cast<std::size_t>(i)]->append_named_parameters(
            prefix + "attn." + kLoraNames[static_cast<std::size_t>(i)] + ".", out);
  }
  std::string name() const override { return mhsa_.window > 0 ? "sliding_attention" : "attention"; }

 private:
  nn::MultiHeadSelfAttention mhsa_;
  int d_, bits_;
  double prune_;
  bool flash_, rope_;
  std::array<std::unique_ptr<nn::LoraAdapter>, 4> lora_;  // q, k, v, out; empty without LoRA
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

// Key tiles of kFlashBlock columns the flash kernel visits, times the rows of each query tile
// (the tiling of nn/ops_flash_attention.cpp): one online-softmax rescale per (row, key tile).
double flash_row_tiles(int len, int window, bool causal) {
  double total = 0;
  for (int i0 = 0; i0 < len; i0 += kFlashBlock) {
    const int i1 = std::min(len, i0 + kFlashBlock);
    const int lo = window > 0 ? std::max(0, i0 - window + 1) : 0;
    const int last = i1 - 1;
    const int hi = causal ? last + 1 : (window > 0 ? std::min(len, last + window) : len);
    const int first = (lo / kFlashBlock) * kFlashBlock;
    const int tiles = (hi - first + kFlashBlock - 1) / kFlashBlock;
    total += static_cast<double>(tiles) * (i1 - i0);
  }
  return total;
}

BlockKind attention_kind(bool sliding) {
  BlockKind k;
  k.name = sliding ? "sliding_attention" : "attention";
  k.description = sliding ? "multi-head self-attention restricted to a window of nearby positions"
                          : "multi-head self-attention over the whole sequence";
  k.params = {ParamSpec::int_set("heads", {1, 2, 4, 8}, 2, "attention heads (must divide D)"),
              ParamSpec::boolean("causal", false, "attend only to earlier positions"),
              ParamSpec::choice("impl", {"standard", "flash"}, "standard",
                                "attention kernel: standard (scores materialised) or flash "
                                "(tiled online softmax, O(L d) memory)"),
              ParamSpec::boolean("rope", false,
                                 "rotary position embedding of queries and keys (RoFormer): "
                                 "scores see relative positions; D / heads must be even"),
              lora_rank_param(),
              lora_alpha_param()};
  if (sliding)
    k.params.push_back(
        ParamSpec::int_range("window", 1, 4096, 8, "positions each query sees on each side"));
  k.accepts = {DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    const TensorType& t = single_input(in);
    if (t.dims[1] % pint(p, "heads") != 0)
      throw std::invalid_argument("model dimension " + std::to_string(t.dims[1]) +
                                  " not divisible by heads " + std::to_string(pint(p, "heads")));
    if (pbool(p, "rope") && (t.dims[1] / pint(p, "heads")) % 2 != 0)
      throw std::invalid_argument("rope needs an even head size: model dimension " +
                                  std::to_string(t.dims[1]) + " / heads " +
                                  std::to_string(pint(p, "heads")) + " is odd");
    return t;
  };
  k.build = [sliding](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<AttentionModule>(
        in[0].dims[1], pint(p, "heads"), pbool(p, "causal"), sliding ? pint(p, "window") : 0,
        pstr(p, "impl") == "flash", pbool(p, "rope"), bits_of(p), prune_of(p), lora_of(p), rng);
  };
  k.count = [sliding](const std::vector<TensorType>& in, const TensorType&, const json& p,
                      hw::NodeWorkload& w) {
    const int len = in[0].dims[0];
    const double d = in[0].dims[1], heads = pint(p, "heads");
    const int window = sliding ? pint(p, "window") : 0;
    const double pairs = attended_pairs(len, window, pbool(p, "causal"));
    w.category = hw::OpCategory::Attention;
    // LoRA adapters are merged into the projections before deployment: no extra count.
    // QKV and output projections (4 L D^2) plus scores QK^T and weighted sum AV (D per pair each).
    w.macs = 4.0 * len * d * d + 2.0 * pairs * d;
    w.params = 4.0 * d * d + 4.0 * d;
    // Softmax (max, exp, sum, divide) and the 1/sqrt(d) scaling per scored pair and head, plus
    // projection biases.
    w.other_flops = 5.0 * pairs * heads + 4.0 * len * d;
    const double bytes_per = w.bits / 8.0;
    if (pstr(p, "impl") == "flash") {
      // One fused kernel between the projections; the scores live only in on-chip tiles, so
      // memory traffic stays the O(L D) sequence in and out.  Inference counts only: the
      // backward recompute of QK^T is training work.  The online softmax adds, per query row,
      // head and visited key tile, a rescale of the D/heads accumulator plus exp, max and the
      // running-sum update (3).
      w.kernels = 3;  // qkv projection, flash attention, output projection
      w.other_flops += heads * flash_row_tiles(len, window, pbool(p, "causal")) * (d / heads + 3);
    } else {
      w.kernels = 5;  // qkv projection, scores, softmax, weighted sum, output projection
      // The score matrix S and the probabilities P go through memory: S written by the scores
      // kernel and read by the softmax, P written by it and read by the weighted sum.
      w.output_bytes += 2.0 * heads * pairs * bytes_per;
      w.input_bytes += 2.0 * heads * pairs * bytes_per;
    }
    weighted_mapping(w, len * d, d, 4.0 * d * d);
    if (pbool(p, "rope")) {
      // Rotating q and k: per channel pair 4 multiplies and 2 adds (3 FLOPs per element) on
      // 2 L D elements.  Fused runtimes do it in the QKV projection's epilogue; eager ones launch
      // a rotation of q and of k.
      w.other_flops += 6.0 * len * d;
      w.eager_kernels = w.kernels + 2;
    }
    // Kernel variants a runtime launches for the same counts: a causal mask's triangular
    // loops and the tiled flash kernel run at their own efficiency.
    const bool causal = pbool(p, "causal"), flash = pstr(p, "impl") == "flash";
    if (causal || flash)
      w.kernel_type = std::string(causal ? "causal_" : "") + (flash ? "flash_" : "") +
                      (sliding ? "sliding_attention" : "attention");
  };
  return k;
}
}  // namespace

void register_block_attention(Catalogue& c) { c.add(attention_kind(false)); }
void register_block_sliding_attention(Catalogue& c) { c.add(attention_kind(true)); }

}  // namespace hwnas::spaces
