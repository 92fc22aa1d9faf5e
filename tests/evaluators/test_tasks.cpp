// The task registry: every generated task is a pure function of (params, seed), shaped as it
// declares; MQAR and selective-copying labels checked by decoders written independently of the
// generators; the old associative_recall data is unchanged; errors name the task and field.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "evaluators/sequence_tasks.hpp"
#include "evaluators/task_registry.hpp"

using namespace hwnas;
using namespace hwnas::eval;
using nlohmann::json;

namespace {

bool same_bytes(const nn::Tensor& a, const nn::Tensor& b) {
  if (a.empty() || b.empty()) return a.empty() == b.empty();
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.numel()) * sizeof(float)) == 0;
}
bool same(const Dataset& a, const Dataset& b) {
  return same_bytes(a.x, b.x) && a.y == b.y && same_bytes(a.target, b.target);
}

bool fashion_mnist_installed() {
  return std::filesystem::exists(fashion_mnist_dir() + "/train-images-idx3-ubyte.gz");
}

// Small parameters so every task generates in milliseconds.
json small_params(const std::string& task) {
  if (task == "mqar") return {{"seq_len", 32}, {"num_kv_pairs", 6}, {"vocab_size", 32}};
  if (task == "selective_copying") return {{"seq_len", 24}, {"num_tokens", 5}, {"vocab_size", 6}};
  if (task == "associative_recall") return {{"seq_len", 16}, {"pairs", 4}};
  if (task == "marked_majority") return {{"seq_len", 16}, {"features", 4}, {"max_marked", 9}};
  if (task == "irregular_oscillation") return {{"seq_len", 20}};
  if (task == "spiral" || task == "damped_oscillator") return {{"obs_steps", 6}, {"horizon", 3}};
  return json::object();
}

// Tokens of a one-hot sequence sample (argmax per position; -1 if the row is all zero).
std::vector<int> decode_one_hot(const Dataset& d, int sample) {
  const int len = d.x.dim(1), width = d.x.dim(2);
  std::vector<int> tokens;
  for (int t = 0; t < len; ++t) {
    const float* row = d.x.data() + (static_cast<std::int64_t>(sample) * len + t) * width;
    int tok = -1, ones = 0;
    for (int k = 0; k < width; ++k)
      if (row[k] == 1.0f) {
        tok = k;
        ++ones;
      }
    EXPECT_EQ(ones, 1) << "position " << t << " is not one-hot";
    tokens.push_back(tok);
  }
  return tokens;
}

}  // namespace

TEST(TaskRegistry, ListsEveryTask) {
  const auto names = task_registry().names();
  for (const char* t :
       {"fashion_mnist", "fashion_mnist_rows", "associative_recall", "mqar", "selective_copying",
        "marked_majority", "irregular_oscillation", "spiral", "damped_oscillator", "symbolic"})
    EXPECT_TRUE(task_registry().contains(t)) << t;
  EXPECT_EQ(names.size(), 10u);
}

TEST(TaskRegistry, GeneratedTasksAreDeterministicAndShapedAsDeclared) {
  for (const auto& name : task_registry().names()) {
    if (name.starts_with("fashion_mnist")) continue;  // read from disk, not generated
    SCOPED_TRACE(name);
    TaskSpec t = resolve_task(name, small_params(name));
    const SplitSizes sizes{40, 24};
    for (const auto& input : t.inputs()) {
      TrainValSplit a = make_task_data(t, input, 5, sizes);
      TrainValSplit b = make_task_data(t, input, 5, sizes);
      TrainValSplit c = make_task_data(t, input, 6, sizes);
      EXPECT_TRUE(same(a.train, b.train) && same(a.val, b.val)) << "same seed, different data";
      EXPECT_FALSE(same(a.train, c.train)) << "a different seed gave the same data";
      EXPECT_FALSE(same(a.train, a.val)) << "train and validation must be different draws";
      for (const Dataset* d : {&a.train, &a.val}) {
        const int n = d == &a.train ? 40 : 24;
        EXPECT_EQ(d->size(), n);
        std::vector<int> want = input.dims;
        want.insert(want.begin(), n);
        EXPECT_EQ(d->x.shape(), nn::Shape(want));
        for (std::int64_t i = 0; i < d->x.numel(); ++i) ASSERT_TRUE(std::isfinite(d->x.data()[i]));
        switch (t.entry->head) {
          case HeadKind::Classes:
            EXPECT_FALSE(d->has_target());
            EXPECT_EQ(d->num_classes, t.outputs());
            for (int y : d->y) EXPECT_TRUE(y >= 0 && y < t.outputs());
            break;
          case HeadKind::TokenClasses:
            EXPECT_TRUE(d->y.empty());
            EXPECT_EQ(d->target.shape(), (nn::Shape{n, input.dims[0]}));
            for (std::int64_t i = 0; i < d->target.numel(); ++i) {
              const float v = d->target.data()[i];
              EXPECT_TRUE(v == kIgnoreTarget || (v >= 0 && v < t.outputs() && v == std::floor(v)));
            }
            break;
          case HeadKind::Regression:
            EXPECT_EQ(d->target.shape(), (nn::Shape{n, t.outputs()}));
            for (std::int64_t i = 0; i < d->target.numel(); ++i)
              ASSERT_TRUE(std::isfinite(d->target.data()[i]));
            break;
        }
      }
    }
  }
}

TEST(TaskRegistry, TrainSubsetZeroMeansTheTaskDefault) {
  TaskSpec t = resolve_task("symbolic");
  TrainValSplit s = make_task_data(t, spaces::TensorType::vector(2), 1, {0, 100});
  EXPECT_EQ(s.train.size(), t.entry->default_train);
  EXPECT_EQ(s.val.size(), 100);
}

TEST(TaskRegistry, AssociativeRecallKeepsTheDataOfOlderConfigs) {
  // Before the registry: make_sequence_task(name, n, seed * 2 + 1) for train, + 2 for val.
  TaskSpec t = resolve_task("associative_recall");
  ASSERT_EQ(t.inputs().front(), spaces::TensorType::sequence(64, 25));
  TrainValSplit s = make_task_data(t, t.inputs().front(), 3, {50, 20});
  EXPECT_TRUE(same(s.train, make_sequence_task("associative_recall", 50, 7)));
  EXPECT_TRUE(same(s.val, make_sequence_task("associative_recall", 20, 8)));
  TaskSpec m = resolve_task("marked_majority");
  TrainValSplit sm = make_task_data(m, m.inputs().front(), 3, {50, 20});
  EXPECT_TRUE(same(sm.train, make_sequence_task("marked_majority", 50, 7)));
}

// position_features appends sin / cos of t / 10000^(2j/F) after the one-hot token; the tokens
// and labels are those of the same seed without them.
TEST(Mqar, PositionFeaturesFollowTheOneHotToken) {
  const int len = 32, kv = 4, vocab = 16, pf = 6;
  TaskSpec plain =
      resolve_task("mqar", {{"seq_len", len}, {"num_kv_pairs", kv}, {"vocab_size", vocab}});
  TaskSpec pos = resolve_task(
      "mqar",
      {{"seq_len", len}, {"num_kv_pairs", kv}, {"vocab_size", vocab}, {"position_features", pf}});
  EXPECT_EQ(pos.inputs().front(), spaces::TensorType::sequence(len, vocab + pf));
  EXPECT_EQ(pos.outputs(), vocab);
  Dataset a = make_task_data(plain, plain.inputs().front(), 5, {3, 1}).train;
  Dataset b = make_task_data(pos, pos.inputs().front(), 5, {3, 1}).train;
  ASSERT_EQ(a.target.to_vector(), b.target.to_vector());
  for (int s = 0; s < 3; ++s)
    for (int t = 0; t < len; ++t) {
      const float* ra = a.x.data() + (static_cast<std::int64_t>(s) * len + t) * vocab;
      const float* rb = b.x.data() + (static_cast<std::int64_t>(s) * len + t) * (vocab + pf);
      for (int c = 0; c < vocab; ++c) ASSERT_EQ(ra[c], rb[c]) << "token one-hot at " << t;
      for (int j = 0; j < pf / 2; ++j) {
        const double angle = t / std::pow(10000.0, 2.0 * j / pf);  // j = 0: angle t
        EXPECT_FLOAT_EQ(rb[vocab + 2 * j], static_cast<float>(std::sin(angle)));
        EXPECT_FLOAT_EQ(rb[vocab + 2 * j + 1], static_cast<float>(std::cos(angle)));
      }
    }
}

TEST(Mqar, LabelsAreTheValuesOfTheQueriedKeys) {
  const int len = 64, kv = 8, vocab = 40;
  for (bool random_fill : {true, false}) {
    TaskSpec t = resolve_task("mqar", {{"seq_len", len},
                                       {"num_kv_pairs", kv},
                                       {"vocab_size", vocab},
                                       {"random_non_queries", random_fill}});
    EXPECT_EQ(t.inputs().front(), spaces::TensorType::sequence(len, vocab));
    EXPECT_EQ(t.outputs(), vocab);
    Dataset d = make_task_data(t, t.inputs().front(), 11, {200, 10}).train;
    int early = 0, queries = 0;
    for (int s = 0; s < d.size(); ++s) {
      const std::vector<int> tok = decode_one_hot(d, s);
      // Context: k1 v1 k2 v2 ... with keys in [1, V/2), values in [V/2, V), all distinct.
      std::map<int, int> value_of;
      std::set<int> values;
      for (int i = 0; i < kv; ++i) {
        const int k = tok[static_cast<std::size_t>(2 * i)],
                  v = tok[static_cast<std::size_t>(2 * i + 1)];
        ASSERT_TRUE(k >= 1 && k < vocab / 2) << "key " << k;
        ASSERT_TRUE(v >= vocab / 2 && v < vocab) << "value " << v;
        ASSERT_TRUE(value_of.emplace(k, v).second) << "duplicate key";
        ASSERT_TRUE(values.insert(v).second) << "duplicate value";
      }
      // Every labelled position holds a key of the context; its label is that key's value;
      // every key is asked exactly once, after the context, at an even offset.
      std::set<int> asked;
      for (int p = 0; p < len; ++p) {
        const float label = d.target.data()[static_cast<std::int64_t>(s) * len + p];
        if (label == kIgnoreTarget) continue;
        ++queries;
        ASSERT_GE(p, 2 * kv);
        ASSERT_EQ((p - 2 * kv) % 2, 0);
        const int k = tok[static_cast<std::size_t>(p)];
        ASSERT_TRUE(value_of.count(k)) << "query token " << k << " is not a key";
        EXPECT_EQ(static_cast<int>(label), value_of[k]);
        EXPECT_TRUE(asked.insert(k).second);
        early += (p - 2 * kv) / 2 < (len - 2 * kv) / 4;
      }
      EXPECT_EQ(asked.size(), static_cast<std::size_t>(kv));
      if (!random_fill) {  // unused positions are token 0
        for (int p = 2 * kv; p < len; ++p) {
          if (d.target.data()[static_cast<std::int64_t>(s) * len + p] == kIgnoreTarget) {
            EXPECT_EQ(tok[static_cast<std::size_t>(p)], 0);
          }
        }
      }
    }
    // power_a = 0.01 favours small gaps: most queries sit in the first half of the query region.
    EXPECT_GT(early, queries * 6 / 10);
  }
}

TEST(SelectiveCopying, MarkersAskForTheDataTokensInOrder) {
  const int region = 30, k = 6, vocab = 5;
  TaskSpec t = resolve_task("selective_copying",
                            {{"seq_len", region}, {"num_tokens", k}, {"vocab_size", vocab}});
  EXPECT_EQ(t.inputs().front(), spaces::TensorType::sequence(region + k, vocab + 2));
  Dataset d = make_task_data(t, t.inputs().front(), 4, {100, 10}).train;
  const int len = region + k;
  for (int s = 0; s < d.size(); ++s) {
    const std::vector<int> tok = decode_one_hot(d, s);
    std::vector<int> data;  // the non-noise tokens of the region, left to right
    for (int p = 0; p < region; ++p)
      if (tok[static_cast<std::size_t>(p)] != vocab)
        data.push_back(tok[static_cast<std::size_t>(p)]);
    ASSERT_EQ(data.size(), static_cast<std::size_t>(k));
    for (int p = 0; p < len; ++p) {
      const float label = d.target.data()[static_cast<std::int64_t>(s) * len + p];
      if (p < region) {
        EXPECT_EQ(label, kIgnoreTarget);
      } else {
        EXPECT_EQ(tok[static_cast<std::size_t>(p)], vocab + 1) << "marker expected";
        EXPECT_EQ(static_cast<int>(label), data[static_cast<std::size_t>(p - region)]);
      }
    }
  }
}

TEST(Symbolic, TargetsAreTheNamedFunction) {
  TaskSpec t = resolve_task("symbolic");
  Dataset d = make_task_data(t, spaces::TensorType::vector(2), 2, {64, 10}).train;
  for (int i = 0; i < d.size(); ++i) {
    const double x = d.x.data()[2 * i], y = d.x.data()[2 * i + 1];
    ASSERT_TRUE(std::abs(x) <= 1 && std::abs(y) <= 1);
    EXPECT_NEAR(d.target.data()[i], std::exp(std::sin(M_PI * x) + y * y), 1e-5);
  }
  TaskSpec p = resolve_task("symbolic", {{"function", "product"}});
  Dataset q = make_task_data(p, spaces::TensorType::vector(2), 2, {16, 10}).train;
  for (int i = 0; i < q.size(); ++i)
    EXPECT_NEAR(q.target.data()[i], q.x.data()[2 * i] * q.x.data()[2 * i + 1], 1e-6);
}

TEST(DampedOscillator, ObservedPositionsFollowTheVelocities) {
  // Without noise, x(t+dt) - x(t) ~ dt * (v(t) + v(t+dt)) / 2 (trapezoid rule, dt = 0.02).
  TaskSpec t = resolve_task("damped_oscillator", {{"obs_steps", 10}, {"horizon", 2}, {"dt", 0.02}});
  Dataset d = make_task_data(t, t.inputs().front(), 1, {20, 10}).train;
  for (int s = 0; s < d.size(); ++s)
    for (int i = 0; i + 1 < 10; ++i) {
      const float* a = d.x.data() + (s * 10 + i) * 2;
      EXPECT_NEAR(a[2] - a[0], 0.01f * (a[1] + a[3]), 2e-4f);
    }
}

TEST(Spiral, TrajectoriesContinueSmoothlyIntoTheTargets) {
  TaskSpec t = resolve_task("spiral", {{"obs_steps", 4}, {"horizon", 2}, {"dt", 0.01}});
  Dataset d = make_task_data(t, spaces::TensorType::vector(8), 1, {20, 10}).train;
  EXPECT_EQ(d.x.shape(), (nn::Shape{20, 8}));
  for (int s = 0; s < d.size(); ++s) {
    const float* last = d.x.data() + s * 8 + 6;
    const float* next = d.target.data() + s * 4;
    EXPECT_LT(std::hypot(next[0] - last[0], next[1] - last[1]), 0.2f);  // speed * dt
    const float r0 = std::hypot(d.x.data()[s * 8], d.x.data()[s * 8 + 1]);
    EXPECT_TRUE(r0 >= 0.5f - 1e-3f && r0 <= 2.0f + 0.2f);
  }
}

TEST(TaskRegistry, BadNamesAndParametersNameTheField) {
  auto msg = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no exception";
  };
  EXPECT_NE(msg([] { resolve_task("telepathy"); }).find("task: unknown task 'telepathy' (known: "),
            std::string::npos);
  EXPECT_NE(msg([] {
              resolve_task_section(json{{"name", "mqar"}, {"seq_len", 3}});
            }).find("task.seq_len: 3 not in int [4, 4096]"),
            std::string::npos);
  EXPECT_NE(msg([] {
              resolve_task_section(json{{"name", "mqar"}, {"seq_lenn", 3}});
            }).find("task.seq_lenn: unknown parameter (known: seq_len"),
            std::string::npos);
  EXPECT_NE(msg([] {
              resolve_task_section(json{{"dataset", "mqar"}, {"name", "spiral"}});
            }).find("disagree"),
            std::string::npos);
  EXPECT_NE(msg([] {
              resolve_task_section(json{{"train_subset", 3}});
            }).find("task.name: missing"),
            std::string::npos);
  EXPECT_NE(msg([] {
              resolve_task_section(json{{"name", "symbolic"}, {"function", "tan"}});
            }).find("task.function: \"tan\" not in {exp_sin,"),
            std::string::npos);
  // Parameters valid alone but not together: the generator names the field.
  TaskSpec t = resolve_task("mqar", {{"seq_len", 16}, {"num_kv_pairs", 5}});
  EXPECT_NE(msg([&] {
              make_task_data(t, t.inputs().front(), 0, {10, 10});
            }).find("task mqar.num_kv_pairs: 5 pairs and their queries need 4 * 5 <= seq_len (16)"),
            std::string::npos);
  TaskSpec odd = resolve_task("mqar", {{"seq_len", 33}});
  EXPECT_NE(msg([&] {
              make_task_data(odd, odd.inputs().front(), 0, {10, 10});
            }).find("task mqar.seq_len: 33 must be even"),
            std::string::npos);
  TaskSpec oddpos = resolve_task("mqar", {{"position_features", 3}});
  EXPECT_NE(msg([&] {
              make_task_data(oddpos, oddpos.inputs().front(), 0, {10, 10});
            }).find("task mqar.position_features: 3 must be even (a sin and a cos per frequency)"),
            std::string::npos);
  TaskSpec sc = resolve_task("selective_copying", {{"seq_len", 4}, {"num_tokens", 5}});
  EXPECT_NE(msg([&] {
              make_task_data(sc, sc.inputs().front(), 0, {10, 10});
            }).find("task selective_copying.num_tokens: 5 must be <= seq_len (4)"),
            std::string::npos);
  // An input type the task cannot feed.
  TaskSpec sym = resolve_task("symbolic");
  EXPECT_NE(msg([&] {
              make_task_data(sym, spaces::TensorType::vector(3), 0, {10, 10});
            }).find("task 'symbolic' cannot feed input vector[3] (it feeds vector[2])"),
            std::string::npos);
  EXPECT_NE(msg([&] {
              make_task_data(sym, spaces::TensorType::vector(2), 0, {10, 0});
            }).find("val_size 0"),
            std::string::npos);
}

TEST(TaskRegistry, CheckTaskFitsNamesInputHeadAndOutputs) {
  TaskSpec sym = resolve_task("symbolic");
  EXPECT_NO_THROW(check_task_fits(sym, spaces::TensorType::vector(2), 1));
  try {
    check_task_fits(sym, spaces::TensorType::vector(2), 10);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("space input vector[2] with 10 outputs does not fit task "
                                         "'symbolic' (needs vector[2] with 1 outputs, head "
                                         "regression)"),
              std::string::npos)
        << e.what();
  }
  TaskSpec mqar = resolve_task("mqar");
  const auto in = spaces::TensorType::sequence(64, 64);
  const auto pooled = spaces::TensorType::vector(64),
             per_token = spaces::TensorType::sequence(64, 64);
  EXPECT_NO_THROW(check_task_fits(mqar, in, 64, &per_token));
  try {
    check_task_fits(mqar, in, 64, &pooled);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("space output vector[64] does not fit task 'mqar' (head "
                                         "token_classes needs one output per token"),
              std::string::npos)
        << e.what();
  }
}

TEST(TaskRegistry, DescribeTasksListsParametersAndHeads) {
  const std::string s = describe_tasks();
  for (const char* frag :
       {"mqar: multi-query associative recall", "task.num_kv_pairs", "head token_classes",
        "primary metric val_rmse (min)", "primary metric val_accuracy (max)", "task.function"})
    EXPECT_NE(s.find(frag), std::string::npos) << frag;
}

TEST(TaskRegistry, FashionMnistTasksFeedTheirInputs) {
  if (!fashion_mnist_installed()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  TaskSpec fm = resolve_task("fashion_mnist");
  TrainValSplit s = make_task_data(fm, spaces::TensorType::image(3, 32, 32), 1, {100, 100});
  EXPECT_EQ(s.train.x.shape(), (nn::Shape{100, 3, 32, 32}));
  TaskSpec rows = resolve_task("fashion_mnist_rows", {{"permute", true}});
  TrainValSplit r1 = make_task_data(rows, spaces::TensorType::sequence(28, 28), 1, {100, 100});
  TrainValSplit r2 = make_task_data(rows, spaces::TensorType::sequence(28, 28), 1, {100, 100});
  EXPECT_EQ(r1.train.x.shape(), (nn::Shape{100, 28, 28}));
  EXPECT_TRUE(same(r1.train, r2.train));
}
