#include "evaluators/sequence_tasks.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>

#include "evaluators/seeded_random.hpp"

namespace hwnas::eval {

namespace {
void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

using seeded::normal;
using seeded::shuffle;
using seeded::uniform01;
using seeded::uniform_int;
}  // namespace

Dataset sequential_image_rows(const Dataset& images, std::uint64_t permute_seed) {
  require(images.x.rank() == 4 && images.x.dim(1) == 1,
          "sequential_image_rows: expected [N,1,H,W] images, got " + images.x.shape().str());
  const int n = images.x.dim(0), h = images.x.dim(2), w = images.x.dim(3);
  Dataset out;
  out.num_classes = images.num_classes;
  out.y = images.y;
  if (!permute_seed) {
    out.x = images.x.reshaped(nn::Shape{n, h, w});
    return out;
  }
  std::vector<int> perm(static_cast<std::size_t>(h * w));
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(permute_seed);
  shuffle(perm, rng);
  out.x = nn::Tensor(nn::Shape{n, h, w});
  const float* src = images.x.data();
  float* dst = out.x.data();
  const std::int64_t per = static_cast<std::int64_t>(h) * w;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t p = 0; p < per; ++p)
      dst[i * per + p] = src[i * per + perm[static_cast<std::size_t>(p)]];
  return out;
}

Dataset make_associative_recall(const AssociativeRecallConfig& c, std::uint64_t seed) {
  require(c.samples > 0, "associative_recall: samples must be positive");
  require(c.seq_len >= 2, "associative_recall: seq_len must be >= 2");
  require(c.num_keys >= 1 && c.num_values >= 2, "associative_recall: need >= 1 key, >= 2 values");
  require(c.pairs >= 1 && c.pairs <= c.num_keys && c.pairs <= c.seq_len - 1,
          "associative_recall: pairs must be in [1, min(num_keys, seq_len-1)]");
  const int L = c.seq_len, d = c.num_keys + c.num_values + 1;
  Dataset out;
  out.num_classes = c.num_values;
  out.x = nn::Tensor::zeros(nn::Shape{c.samples, L, d});
  out.y.resize(static_cast<std::size_t>(c.samples));
  std::mt19937_64 rng(seed);
  std::vector<int> keys(static_cast<std::size_t>(c.num_keys));
  std::vector<int> slots(static_cast<std::size_t>(L - 1));
  for (int s = 0; s < c.samples; ++s) {
    std::iota(keys.begin(), keys.end(), 0);
    shuffle(keys, rng);
    std::iota(slots.begin(), slots.end(), 0);
    shuffle(slots, rng);
    float* seq = out.x.data() + static_cast<std::int64_t>(s) * L * d;
    int query_pair = uniform_int(rng, 0, c.pairs - 1);
    for (int p = 0; p < c.pairs; ++p) {
      int key = keys[static_cast<std::size_t>(p)];
      int value = uniform_int(rng, 0, c.num_values - 1);
      float* tok = seq + static_cast<std::int64_t>(slots[static_cast<std::size_t>(p)]) * d;
      tok[key] = 1.0f;
      tok[c.num_keys + value] = 1.0f;
      if (p == query_pair) {
        float* q = seq + static_cast<std::int64_t>(L - 1) * d;
        q[key] = 1.0f;
        q[d - 1] = 1.0f;
        out.y[static_cast<std::size_t>(s)] = value;
      }
    }
  }
  return out;
}

Dataset make_marked_majority(const MarkedMajorityConfig& c, std::uint64_t seed) {
  require(c.samples > 0, "marked_majority: samples must be positive");
  require(c.features >= 2, "marked_majority: features must be >= 2");
  require(c.min_marked >= 1 && c.min_marked <= c.max_marked && c.max_marked <= c.seq_len,
          "marked_majority: need 1 <= min_marked <= max_marked <= seq_len");
  const int L = c.seq_len, d = c.features;
  Dataset out;
  out.num_classes = 2;
  out.x = nn::Tensor::zeros(nn::Shape{c.samples, L, d});
  out.y.resize(static_cast<std::size_t>(c.samples));
  std::mt19937_64 rng(seed);
  std::vector<int> pos(static_cast<std::size_t>(L));
  for (int s = 0; s < c.samples; ++s) {
    float* seq = out.x.data() + static_cast<std::int64_t>(s) * L * d;
    int marked = uniform_int(rng, c.min_marked, c.max_marked);
    if (marked % 2 == 0) marked += (marked < c.max_marked) ? 1 : -1;  // odd: no ties
    if (marked < 1) marked = 1;
    std::iota(pos.begin(), pos.end(), 0);
    shuffle(pos, rng);
    int total = 0;
    for (int t = 0; t < L; ++t) {
      float* tok = seq + static_cast<std::int64_t>(t) * d;
      tok[1] = (rng() & 1) ? 1.0f : -1.0f;
      for (int f = 2; f < d; ++f) tok[f] = c.noise * normal(rng);
    }
    for (int m = 0; m < marked; ++m) {
      float* tok = seq + static_cast<std::int64_t>(pos[static_cast<std::size_t>(m)]) * d;
      tok[0] = 1.0f;
      total += tok[1] > 0 ? 1 : -1;
    }
    out.y[static_cast<std::size_t>(s)] = total > 0 ? 1 : 0;
  }
  return out;
}

Dataset make_sequence_task(const std::string& name, int samples, std::uint64_t seed) {
  if (name == "associative_recall") {
    AssociativeRecallConfig c;
    c.samples = samples;
    return make_associative_recall(c, seed);
  }
  if (name == "marked_majority") {
    MarkedMajorityConfig c;
    c.samples = samples;
    return make_marked_majority(c, seed);
  }
  throw std::invalid_argument("make_sequence_task: unknown task '" + name +
                              "' (known: associative_recall, marked_majority)");
}

}  // namespace hwnas::eval
