// mqar: multi-query associative recall as defined in Zoology (Arora et al. 2023,
// "Zoology: Measuring and Improving Recall in Efficient Language Models").
//
// One vocabulary of vocab_size tokens: keys come from [1, vocab/2), values from [vocab/2, vocab).
// A sequence starts with num_kv_pairs key/value pairs (k1 v1 k2 v2 ...; distinct keys, distinct
// values); after them every key is queried once, at position 2*kv + 2*gap where the gaps are
// drawn without replacement with probability ~ power_a * g^(power_a - 1) (g = 1..space; small
// power_a puts queries soon after the context, as repeated bigrams are in text).  The label at a
// query position is the value bound to that key; every other position is unlabelled
// (kIgnoreTarget).  With random_non_queries the remaining positions hold random tokens, else 0.
// Tokens are fed one-hot: input [seq_len, vocab_size + position_features], per-token head with
// vocab_size classes.  position_features > 0 appends the sinusoidal encoding of the position
// (Vaswani et al. 2017: sin / cos of t / 10000^(2j/F)); the models' first dense layer then adds a
// learned projection of it to each token's embedding, the role of the absolute position
// embeddings Zoology's attention baselines carry (max_position_embeddings = seq_len).  Without
// it an attention stack sees no order but the causal mask.
#include <cmath>

#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval::tasks {
namespace {

Dataset make_mqar(const json& p, int n, std::uint64_t seed) {
  const int len = pint(p, "seq_len"), kv = pint(p, "num_kv_pairs"), vocab = pint(p, "vocab_size");
  const double power_a = p.at("power_a").get<double>();
  const bool random_fill = p.at("random_non_queries").get<bool>();
  const int positions = pint(p, "position_features"), width = vocab + positions;
  const int context = 2 * kv, space = (len - context) / 2, half = vocab / 2;

  Dataset d = alloc_dataset(n, {len, width}, {len}, kIgnoreTarget);
  d.num_classes = vocab;
  std::mt19937_64 rng(seed);
  std::vector<int> key_pool, value_pool, tokens(static_cast<std::size_t>(len));
  std::vector<double> weight(static_cast<std::size_t>(space));
  for (int s = 0; s < n; ++s) {
    key_pool.resize(static_cast<std::size_t>(half - 1));
    value_pool.resize(static_cast<std::size_t>(vocab - half));
    for (int i = 0; i < half - 1; ++i) key_pool[static_cast<std::size_t>(i)] = 1 + i;
    for (int i = 0; i < vocab - half; ++i) value_pool[static_cast<std::size_t>(i)] = half + i;
    seeded::shuffle(key_pool, rng);
    seeded::shuffle(value_pool, rng);
    std::fill(tokens.begin(), tokens.end(), -1);  // -1: free position
    float* target = d.target.data() + static_cast<std::int64_t>(s) * len;
    for (int i = 0; i < kv; ++i) {
      tokens[static_cast<std::size_t>(2 * i)] = key_pool[static_cast<std::size_t>(i)];
      tokens[static_cast<std::size_t>(2 * i + 1)] = value_pool[static_cast<std::size_t>(i)];
    }
    // Gaps without replacement, each draw proportional to the remaining power-law weights.
    for (int g = 0; g < space; ++g)
      weight[static_cast<std::size_t>(g)] = power_a * std::pow(g + 1.0, power_a - 1.0);
    for (int i = 0; i < kv; ++i) {
      double total = 0;
      for (double w : weight) total += w;
      double u = seeded::uniform01_double(rng) * total;
      int gap = space - 1;
      for (int g = 0; g < space; ++g) {
        if (weight[static_cast<std::size_t>(g)] == 0) continue;
        if (u < weight[static_cast<std::size_t>(g)]) {
          gap = g;
          break;
        }
        u -= weight[static_cast<std::size_t>(g)];
      }
      while (weight[static_cast<std::size_t>(gap)] == 0) --gap;  // rounding at the very end
      weight[static_cast<std::size_t>(gap)] = 0;
      const int pos = context + 2 * gap;
      tokens[static_cast<std::size_t>(pos)] = key_pool[static_cast<std::size_t>(i)];
      target[pos] = static_cast<float>(value_pool[static_cast<std::size_t>(i)]);
    }
    float* x = d.x.data() + static_cast<std::int64_t>(s) * len * width;
    for (int t = 0; t < len; ++t) {
      int tok = tokens[static_cast<std::size_t>(t)];
      if (tok < 0) tok = random_fill ? seeded::uniform_int(rng, 0, vocab - 1) : 0;
      float* row = x + static_cast<std::int64_t>(t) * width;
      row[tok] = 1.0f;
      for (int j = 0; j < positions / 2; ++j) {
        const double angle = t / std::pow(10000.0, 2.0 * j / positions);
        row[vocab + 2 * j] = static_cast<float>(std::sin(angle));
        row[vocab + 2 * j + 1] = static_cast<float>(std::cos(angle));
      }
    }
  }
  return d;
}

}  // namespace

void register_task_mqar(Registry<TaskEntry>& r) {
  TaskEntry e;
  e.name = "mqar";
  e.description =
      "multi-query associative recall (Zoology, Arora et al. 2023): key/value pairs first, then "
      "every key queried once; predict the value at each query position (per-token labels)";
  e.params = {
      ParamSpec::int_range("seq_len", 4, 4096, 64, "tokens per sequence (even)"),
      ParamSpec::int_range("num_kv_pairs", 1, 1024, 8,
                           "key/value pairs per sequence (4 * pairs <= seq_len)"),
      ParamSpec::int_range("vocab_size", 4, 8192, 64,
                           "one vocabulary for keys [1, V/2) and values [V/2, V); one-hot input "
                           "width and output classes"),
      ParamSpec::float_range("power_a", 1e-4, 1, 0.01,
                             "power law of the query gaps (1 = uniform, small = queries soon "
                             "after the pairs)"),
      ParamSpec::boolean("random_non_queries", true,
                         "fill positions that are neither pairs nor queries with random tokens "
                         "(else token 0)"),
      ParamSpec::int_range("position_features", 0, 1024, 0,
                           "sinusoidal position features appended to each one-hot token (even; "
                           "0 = none): absolute position for mixers that have no other")};
  e.head = HeadKind::TokenClasses;
  e.inputs = [](const json& p) {
    return std::vector<TensorType>{TensorType::sequence(
        pint(p, "seq_len"), pint(p, "vocab_size") + pint(p, "position_features"))};
  };
  e.outputs = [](const json& p) { return pint(p, "vocab_size"); };
  e.generate = [](const json& p, const TensorType&, std::uint64_t seed, const SplitSizes& sizes) {
    const int len = pint(p, "seq_len"), kv = pint(p, "num_kv_pairs"), v = pint(p, "vocab_size");
    require_param(len % 2 == 0, "mqar", "seq_len", std::to_string(len) + " must be even");
    require_param(pint(p, "position_features") % 2 == 0, "mqar", "position_features",
                  std::to_string(pint(p, "position_features")) +
                      " must be even (a sin and a cos per frequency)");
    require_param(4 * kv <= len, "mqar", "num_kv_pairs",
                  std::to_string(kv) + " pairs and their queries need 4 * " + std::to_string(kv) +
                      " <= seq_len (" + std::to_string(len) + ")");
    require_param(kv <= v / 2 - 1, "mqar", "vocab_size",
                  std::to_string(v) + " leaves " + std::to_string(v / 2 - 1) +
                      " distinct keys in [1, V/2) for " + std::to_string(kv) + " pairs");
    return generated_split(sizes, 10000, seed,
                           [&](int n, std::uint64_t s) { return make_mqar(p, n, s); });
  };
  r.add(std::move(e));
}

}  // namespace hwnas::eval::tasks
