// selective_copying: the selective copying task of Mamba (Gu & Dao 2023).  num_tokens data
// tokens (ids [0, vocab)) sit at random positions of a region of seq_len positions; the others
// hold the noise token.  Then num_tokens marker tokens follow, and at the i-th marker the model
// must output the i-th data token (in order of position).  Only the marker positions are
// labelled.  One-hot input over vocab + 2 symbols (vocab = noise, vocab + 1 = marker), input
// [seq_len + num_tokens, vocab + 2], per-token head with vocab classes.
#include <algorithm>
#include <numeric>

#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval::tasks {
namespace {

Dataset make_selective_copying(const json& p, int n, std::uint64_t seed) {
  const int region = pint(p, "seq_len"), k = pint(p, "num_tokens"), vocab = pint(p, "vocab_size");
  const int len = region + k, d = vocab + 2, noise = vocab, marker = vocab + 1;
  Dataset out = alloc_dataset(n, {len, d}, {len}, kIgnoreTarget);
  out.num_classes = vocab;
  std::mt19937_64 rng(seed);
  std::vector<int> pos(static_cast<std::size_t>(region)), tokens(static_cast<std::size_t>(len));
  for (int s = 0; s < n; ++s) {
    std::iota(pos.begin(), pos.end(), 0);
    seeded::shuffle(pos, rng);
    std::sort(pos.begin(), pos.begin() + k);  // the data positions, in order
    std::fill(tokens.begin(), tokens.begin() + region, noise);
    std::fill(tokens.begin() + region, tokens.end(), marker);
    float* target = out.target.data() + static_cast<std::int64_t>(s) * len;
    for (int i = 0; i < k; ++i) {
      const int tok = seeded::uniform_int(rng, 0, vocab - 1);
      tokens[static_cast<std::size_t>(pos[static_cast<std::size_t>(i)])] = tok;
      target[region + i] = static_cast<float>(tok);
    }
    float* x = out.x.data() + static_cast<std::int64_t>(s) * len * d;
    for (int t = 0; t < len; ++t)
      x[static_cast<std::int64_t>(t) * d + tokens[static_cast<std::size_t>(t)]] = 1.0f;
  }
  return out;
}

}  // namespace

void register_task_selective_copying(Registry<TaskEntry>& r) {
  TaskEntry e;
  e.name = "selective_copying";
  e.description =
      "selective copying (Mamba, Gu & Dao 2023): data tokens scattered among noise tokens; "
      "reproduce them in order at the marker positions at the end (per-token labels)";
  e.params = {ParamSpec::int_range("seq_len", 2, 4096, 64,
                                   "positions of the region holding data and noise tokens"),
              ParamSpec::int_range("num_tokens", 1, 1024, 8,
                                   "data tokens to copy (<= seq_len); also the marker count"),
              ParamSpec::int_range("vocab_size", 2, 1024, 8, "data token ids = output classes")};
  e.head = HeadKind::TokenClasses;
  e.inputs = [](const json& p) {
    return std::vector<TensorType>{TensorType::sequence(pint(p, "seq_len") + pint(p, "num_tokens"),
                                                        pint(p, "vocab_size") + 2)};
  };
  e.outputs = [](const json& p) { return pint(p, "vocab_size"); };
  e.generate = [](const json& p, const TensorType&, std::uint64_t seed, const SplitSizes& sizes) {
    require_param(pint(p, "num_tokens") <= pint(p, "seq_len"), "selective_copying", "num_tokens",
                  std::to_string(pint(p, "num_tokens")) + " must be <= seq_len (" +
                      std::to_string(pint(p, "seq_len")) + ")");
    return generated_split(sizes, 10000, seed,
                           [&](int n, std::uint64_t s) { return make_selective_copying(p, n, s); });
  };
  r.add(std::move(e));
}

}  // namespace hwnas::eval::tasks
