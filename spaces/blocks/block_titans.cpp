// titans: Titans neural long-term memory as context (Behrouz, Zhong, Mirrokni 2025, "Titans:
// Learning to Memorize at Test Time", MAC variant), [L, d] -> [L, d].  A memory MLP written at
// test time by momentum ("surprise") gradient steps with a forgetting gate on an associative
// key -> value loss, read back as extra context tokens of a causal segment attention that also
// sees learned persistent tokens.  The layer is nn::TitansMemoryLayer (nn/titans.hpp); the
// inner updates are unrolled differentiable ops, so the outer loss trains through them.
// memory = false gives the same block without the neural memory (persistent tokens and
// segment attention only), the ablation baseline.  See docs/blocks/titans.md.
//
// While recording activity it reports the associative loss of every memory chunk before its
// update (series "titans_inner_loss", mean per token), which shows the memory learning along
// the sequence.
#include "nn/titans.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {

nn::TitansConfig config_of(int d, const json& p) {
  nn::TitansConfig c;
  c.d = d;
  c.heads = pint(p, "heads");
  c.memory_depth = pint(p, "memory_depth");
  c.segment = pint(p, "segment");
  c.persistent = pint(p, "persistent");
  c.chunk = pint(p, "chunk");
  c.inner_lr = static_cast<float>(pfloat(p, "inner_lr"));
  c.memory = pbool(p, "memory");
  return c;
}

}  // namespace

void register_block_titans(Catalogue& c) {
  BlockKind k;
  k.name = "titans";
  k.description =
      "Titans memory as context: a neural memory MLP written at test time by surprise-momentum "
      "gradient steps with forgetting, read as context of a causal segment attention with "
      "persistent tokens";
  k.params = {
      ParamSpec::int_set("heads", {1, 2, 4, 8}, 2, "attention heads (must divide d)"),
      ParamSpec::int_set("memory_depth", {1, 2}, 2,
                         "layers of the memory MLP (1: linear map, 2: silu MLP of width d)"),
      ParamSpec::int_set("segment", {4, 8, 16, 32, 64, 128, 256}, 32,
                         "tokens per attention segment (the attention window)"),
      ParamSpec::int_set("persistent", {0, 4, 8, 16}, 4,
                         "learned persistent-memory tokens prepended to every segment"),
      ParamSpec::int_set("chunk", {1, 2, 4, 8, 16, 32, 64}, 8,
                         "tokens per memory update (gradient at the chunk's start; <= segment)"),
      ParamSpec::float_range("inner_lr", 0.01, 10.0, 1.0,
                             "memory learning rate (scaled by a learned sigmoid gate)"),
      ParamSpec::boolean("memory", true,
                         "use the neural memory (false: persistent tokens and segment attention "
                         "only, the ablation baseline)")};
  k.accepts = {DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    if (bits_of(p) != 32 || prune_of(p) > 0)
      throw std::invalid_argument(
          "titans: bits and prune are not supported yet; use bits 32, prune 0");
    const TensorType& t = single_input(in);
    config_of(t.dims[1], p).validate();
    return t;
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<nn::TitansMemoryLayer>(config_of(in[0].dims[1], p), rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const nn::TitansConfig c = config_of(in[0].dims[1], p);
    const int len = in[0].dims[0];
    const double d = c.d, H = c.heads, np = c.persistent, depth = c.memory_depth;
    const bool mem = c.memory;
    // Attention: queries and the x keys/values once (3 L d^2), the persistent keys/values once
    // (2 Np d^2), the output projection (L d^2); per segment of n tokens the keys/values of the
    // n retrieved tokens h (2 n d^2) and d MACs per attended pair for scores and for the
    // weighted sum.  Query i sees Np persistent tokens, h_0..h_i and x_0..x_i.
    double macs = 4.0 * len * d * d + 2.0 * np * d * d, pairs = 0, other = 0;
    int chunks = 0;
    for (int s = 0; s < len; s += c.segment) {
      const int n = std::min(len, s + c.segment) - s;
      for (int i = 0; i < n; ++i) pairs += np + (i + 1.0) * (mem ? 2 : 1);
      if (mem) {
        macs += 2.0 * n * d * d;
        chunks += (n + c.chunk - 1) / c.chunk;
      }
    }
    macs += 2.0 * pairs * d;
    // Softmax and 1/sqrt(d_head) scaling (5 per pair and head), output bias.
    other += 5.0 * pairs * H + len * d;
    if (mem) {
      // Memory: q of x and q, k, v of y (4 L d^2), gates (3 L d), one memory pass M(q) for
      // the retrieved h and one for the output read (depth L d^2 each), and per token the
      // inner step: the forward M(k) (depth d^2) and its gradient (d^2 at depth 1; the
      // weight gradients of both layers and the backward through W2, 3 d^2, at depth 2).
      macs += 4.0 * len * d * d + 3.0 * len * d + 2.0 * depth * len * d * d +
              (depth == 1 ? 2.0 : 5.0) * len * d * d;
      // l2 norms of q_x, q_y, k (3 each), residual and its theta scaling (3), the output gate
      // sigmoid and product (5) per token and feature; the gates' sigmoid (4 x 3 per token);
      // at depth 2 the silu of the three memory passes (5 each), its derivative (6) and the
      // normalised step (3); per chunk the surprise and memory updates (4 per weight).
      other += len * d * (9 + 3 + 5) + 12.0 * len + (depth == 2 ? len * d * (3 * 5 + 6 + 3) : 0.0) +
               chunks * 4.0 * depth * d * d;
    }
    w.category = hw::OpCategory::Memory;
    w.macs = macs;
    w.other_flops = other;
    w.params = 4 * d * d + d + np * d + (mem ? 3 * d * d + 3 * d + 3 + depth * d * d : 0);
    // Deployed: attention projections, segment attention (fused), output projection; with
    // memory also the memory projections, gates, the memory read and the fused update scan.
    w.kernels = mem ? 7 : 3;
    w.seq_len = len;
    // The memory scan carries its weights from chunk to chunk; without memory the segments
    // are independent.
    w.timesteps = mem ? chunks : 1;
    weighted_mapping(w, len * d, d, w.params);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
