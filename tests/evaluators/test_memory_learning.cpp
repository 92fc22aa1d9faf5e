// Titans memory behaviour (spaces/blocks/block_titans.cpp): a long associative-recall stream in
// which key/value pairs are stated and queried again and again.  A query is "far" when its key
// was last stated before the query's attention segment, so only the neural memory can answer
// it.  Trained with the same seed and budget, the titans block must answer far queries clearly
// better than the same block with its memory path disabled (memory = false), and its recall of
// far queries must improve along the sequence (later segments have seen the pairs more often).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "evaluators/trainer.hpp"
#include "nn/parallel.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;

namespace {

constexpr int kLen = 128, kKeys = 16, kValues = 8, kPairs = 6, kSegment = 16;
constexpr int kFeatures = kKeys + kValues + 1;  // [key one-hot | value one-hot | query flag]

// Each sequence binds kPairs keys to random values.  Every position is, with probability 1/2,
// a statement (key and value) of a random bound key, else a query (key and flag) of a key
// already stated, labelled with its value.
eval::Dataset make_stream(int n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  eval::Dataset d;
  d.x = nn::Tensor::zeros(nn::Shape{n, kLen, kFeatures});
  d.target = nn::Tensor(nn::Shape{n, kLen}, eval::kIgnoreTarget);
  d.num_classes = kValues;
  std::uniform_int_distribution<int> key(0, kKeys - 1), value(0, kValues - 1), pick(0, kPairs - 1);
  for (int s = 0; s < n; ++s) {
    std::vector<int> keys, values, stated;
    while (static_cast<int>(keys.size()) < kPairs) {
      const int k = key(rng);
      if (std::find(keys.begin(), keys.end(), k) == keys.end())
        keys.push_back(k), values.push_back(value(rng));
    }
    for (int t = 0; t < kLen; ++t) {
      float* x = d.x.data() + (static_cast<std::int64_t>(s) * kLen + t) * kFeatures;
      if (stated.empty() || (rng() & 1)) {
        const int i = pick(rng);
        x[keys[i]] = 1.0f;
        x[kKeys + values[i]] = 1.0f;
        if (std::find(stated.begin(), stated.end(), i) == stated.end()) stated.push_back(i);
      } else {
        const int i = stated[rng() % stated.size()];
        x[keys[i]] = 1.0f;
        x[kKeys + kValues] = 1.0f;
        d.target.data()[s * kLen + t] = static_cast<float>(values[i]);
      }
    }
  }
  return d;
}

// input -> dense(32) -> [titans + skip, layer norm] -> per-token head.
Genome titans_model(bool memory, int depth) {
  Genome g(TensorType::sequence(kLen, kFeatures));
  auto h = g.add_node("dense", {{"units", 32}, {"activation", "none"}});
  g.add_edge(0, h);
  auto m = g.add_node("titans", {{"heads", 2},
                                 {"memory_depth", depth},
                                 {"segment", kSegment},
                                 {"chunk", 8},
                                 {"persistent", 4},
                                 {"memory", memory}});
  g.add_edge(h, m);
  auto a = g.add_node("add");
  g.add_edge(h, a);
  g.add_edge(m, a);
  auto n = g.add_node("norm", {{"type", "layer"}});
  g.add_edge(a, n);
  auto head = g.add_node("head", {{"outputs", kValues}});
  g.add_edge(n, head);
  g.validate();
  return g;
}

struct RecallScore {
  double near = 0, far = 0;        // accuracy on queries inside / beyond the segment
  std::vector<double> far_by_seg;  // far-query accuracy per segment
};

RecallScore score(GenomeModel& model, const eval::Dataset& d) {
  const int n = d.x.dim(0), segs = kLen / kSegment;
  std::vector<double> hit(static_cast<std::size_t>(segs)), cnt(static_cast<std::size_t>(segs));
  double near_hit = 0, near_cnt = 0;
  nn::NoGradGuard ng;
  nn::ForwardContext ctx;
  ctx.training = false;
  const nn::Tensor logits = model.forward(nn::constant(d.x), ctx).value();  // [n, L, V]
  for (int s = 0; s < n; ++s) {
    std::vector<int> last(kKeys, -1);
    for (int t = 0; t < kLen; ++t) {
      const float* x = d.x.data() + (static_cast<std::int64_t>(s) * kLen + t) * kFeatures;
      const int k = static_cast<int>(std::max_element(x, x + kKeys) - x);
      const float label = d.target.data()[s * kLen + t];
      if (label == eval::kIgnoreTarget) {
        last[k] = t;
        continue;
      }
      const float* l = logits.data() + (static_cast<std::int64_t>(s) * kLen + t) * kValues;
      const bool ok = static_cast<int>(std::max_element(l, l + kValues) - l) == int(label);
      if (last[k] < t / kSegment * kSegment) {
        hit[t / kSegment] += ok;
        cnt[t / kSegment] += 1;
      } else {
        near_hit += ok;
        near_cnt += 1;
      }
    }
  }
  RecallScore r;
  double fh = 0, fc = 0;
  for (int i = 0; i < segs; ++i) {
    r.far_by_seg.push_back(cnt[i] > 0 ? hit[i] / cnt[i] : 0);
    fh += hit[i];
    fc += cnt[i];
  }
  r.far = fh / fc;
  r.near = near_hit / near_cnt;
  return r;
}

RecallScore train_and_score(bool memory, int depth, int epochs, double* seconds) {
  nn::ThreadBudget budget(1);
  const eval::Dataset train = make_stream(1024, 1), val = make_stream(256, 2);
  auto model = build_model(titans_model(memory, depth), 7);
  eval::TrainConfig c;
  c.head = eval::HeadKind::TokenClasses;
  c.epochs = epochs;
  c.batch_size = 32;
  c.lr = 1e-2f;
  c.clip_grad_norm = 1.0f;
  c.seed = 1;
  const eval::TrainReport rep = eval::train(*model, train, val, c);
  *seconds = rep.seconds;
  return score(*model, val);
}

struct Comparison {
  RecallScore mem, off;
  double early = 0, late = 0;  // far recall of the memory model in segments 1-2 and 6-7
};

Comparison compare(int depth, int epochs) {
  double t_mem = 0, t_off = 0;
  Comparison c;
  c.mem = train_and_score(true, depth, epochs, &t_mem);
  c.off = train_and_score(false, depth, epochs, &t_off);
  auto print = [&](const char* name, const RecallScore& r, double sec) {
    std::printf("depth %d %s: near %.3f far %.3f (%.1f s); far by segment:", depth, name, r.near,
                r.far, sec);
    for (double v : r.far_by_seg) std::printf(" %.3f", v);
    std::printf("\n");
  };
  print("with memory", c.mem, t_mem);
  print("without memory", c.off, t_off);
  // Segment 0 has no far queries; chance is 1/8.
  c.early = (c.mem.far_by_seg[1] + c.mem.far_by_seg[2]) / 2;
  c.late = (c.mem.far_by_seg[6] + c.mem.far_by_seg[7]) / 2;
  std::printf("depth %d far recall with memory: segments 1-2 %.3f, segments 6-7 %.3f\n", depth,
              c.early, c.late);
  return c;
}

}  // namespace

TEST(MemoryLearning, TitansMemoryRecallsBeyondTheWindowAndImprovesAlongTheSequence) {
  // Linear memory, 6 epochs.  Measured (model/data seeds 7/1, and two more seeds while tuning):
  // far 0.647 vs 0.127 without memory; segments 1-2 0.593 -> 6-7 0.668 (other seeds +0.077,
  // +0.094).
  const Comparison c = compare(1, 6);
  EXPECT_GT(c.mem.far, c.off.far + 0.3);
  EXPECT_GT(c.late, c.early + 0.03);
  EXPECT_GT(c.off.near, 0.9);  // the baseline is not broken: it answers inside its window
}

TEST(MemoryLearning, SlowTitansDeepMemoryRecallsBeyondTheWindow) {
  // The paper's deep (2-layer) memory: slower per step.  Measured: far 0.412 vs 0.123 without
  // memory; segments 1-2 0.379 -> 6-7 0.421.
  const Comparison c = compare(2, 6);
  EXPECT_GT(c.mem.far, c.off.far + 0.15);
  EXPECT_GT(c.late, c.early);
}
