// Transformer² SVF (nn/svf.hpp): the SVD gives the base weight back, z = 1 is the base layer,
// the factored forward equals the reconstructed adapted weight, finite-difference gradients on
// the input, the expert vectors, the mixture and the dispatcher, argument errors, and the
// two-task behaviour: expert vectors trained per task and a dispatcher trained on which-task
// beat every single vector on the mixed set.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>

#include "nn/layers.hpp"
#include "nn/optim.hpp"
#include "nn/svf.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_close;
using testing::expect_invalid;
using testing::random_tensor;

// Two 4-class tasks on x in R^8: x_0 is a task cue (+2 for task 0, -2 for task 1, noise 0.5),
// x_1..x_7 ~ N(0, 1), and the label is argmax(A_task x_{1..7}) with a different random map per
// task.  With hide_cue the cue is replaced by N(0, 1) noise: the pretraining mixture in which
// the task is not visible, as for a general model that does not know which task it serves.
struct TaskData {
  Tensor x;
  std::vector<int> label, task;
};

TaskData make_tasks(int n, const std::vector<Tensor>& maps, int only_task, bool hide_cue,
                    std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  TaskData d{Tensor(Shape{n, 8}), {}, {}};
  for (int i = 0; i < n; ++i) {
    const int t = only_task >= 0 ? only_task : i % 2;
    float* x = d.x.data() + i * 8;
    x[0] = hide_cue ? nd(rng) : (t == 0 ? 2.0f : -2.0f) + 0.5f * nd(rng);
    for (int j = 1; j < 8; ++j) x[j] = nd(rng);
    int best = 0;
    float best_v = -1e30f;
    for (int c = 0; c < 4; ++c) {
      float v = 0;
      for (int j = 0; j < 7; ++j) v += maps[t].data()[c * 7 + j] * x[j + 1];
      if (v > best_v) best_v = v, best = c;
    }
    d.label.push_back(best);
    d.task.push_back(t);
  }
  return d;
}

Tensor rows(const Tensor& x, const std::vector<int>& idx) {
  const int f = x.dim(1);
  Tensor out(Shape{static_cast<int>(idx.size()), f});
  for (std::size_t i = 0; i < idx.size(); ++i)
    std::copy(x.data() + idx[i] * f, x.data() + (idx[i] + 1) * f, out.data() + i * f);
  return out;
}

// Mini-batch Adam on a cross-entropy; loss(x_batch, labels_batch) builds the graph.
void fit(const std::vector<Var>& params, const Tensor& x, const std::vector<int>& labels,
         const std::function<Var(const Var&, const std::vector<int>&)>& loss, int epochs, float lr,
         std::uint64_t seed) {
  Adam opt(params, AdamOptions{lr});
  std::mt19937_64 rng(seed);
  std::vector<int> order(labels.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  for (int e = 0; e < epochs; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t s = 0; s + 64 <= order.size(); s += 64) {
      std::vector<int> idx(order.begin() + s, order.begin() + s + 64), y;
      for (int i : idx) y.push_back(labels[i]);
      opt.zero_grad();
      backward(loss(constant(rows(x, idx)), y));
      opt.step();
    }
  }
}

double accuracy(const Tensor& logits, const std::vector<int>& labels, const std::vector<int>& task,
                int only_task) {
  int hit = 0, n = 0;
  const int c = logits.dim(1);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (only_task >= 0 && task[i] != only_task) continue;
    const float* l = logits.data() + i * c;
    hit += static_cast<int>(std::max_element(l, l + c) - l) == labels[i];
    ++n;
  }
  return static_cast<double>(hit) / n;
}

}  // namespace

TEST(Svf, SvdReconstructsTheBaseWeight) {
  std::mt19937_64 rng(1);
  for (auto [out, in] : {std::pair{5, 3}, std::pair{3, 7}, std::pair{6, 6}}) {
    const Tensor w = random_tensor(Shape{out, in}, rng);
    SvfLinear svf(w, Tensor(), 2);
    const int r = std::min(out, in);
    EXPECT_EQ(svf.rank(), r);
    EXPECT_EQ(svf.u().shape(), (Shape{out, r}));
    EXPECT_EQ(svf.v().shape(), (Shape{in, r}));
    for (int i = 1; i < r; ++i) EXPECT_GE(svf.sigma().data()[i - 1], svf.sigma().data()[i]);
    NoGradGuard ng;
    expect_close(svf.adapted_weight(constant(Tensor(Shape{r}, 1.0f))).value(), w, 1e-5f);
    // U and V have orthonormal columns.
    const Eigen::MatrixXf utu = svf.u().matrix().transpose() * svf.u().matrix();
    const Eigen::MatrixXf vtv = svf.v().matrix().transpose() * svf.v().matrix();
    EXPECT_TRUE(utu.isIdentity(1e-5f));
    EXPECT_TRUE(vtv.isIdentity(1e-5f));
  }
}

TEST(Svf, UnitVectorIsTheBaseLinearAndTheFactoredFormIsTheAdaptedWeight) {
  std::mt19937_64 rng(2);
  const Tensor w = random_tensor(Shape{5, 4}, rng), b = random_tensor(Shape{5}, rng);
  SvfLinear svf(w, b, 3);
  NoGradGuard ng;
  for (const Shape& s : {Shape{3, 4}, Shape{2, 6, 4}}) {
    const Var x = constant(random_tensor(s, rng));
    expect_close(svf.forward(x, Var()).value(), linear(x, constant(w), constant(b)).value(), 1e-5f);
    // A mixture of non-trivial vectors equals x W'^T + b with W' rebuilt from sigma * z.
    svf.experts_vectors.value() = random_tensor(Shape{3, 4}, rng, 0.2f, 2.0f);
    Tensor alpha = Tensor::zeros(Shape{s[0], 3});
    for (int i = 0; i < s[0]; ++i) alpha.data()[i * 3 + (i % 3)] = 1.0f;
    const Tensor y = svf.forward(x, constant(alpha)).value();
    for (int i = 0; i < s[0]; ++i) {
      const Var z = slice(svf.experts_vectors, 0, i % 3, i % 3 + 1);
      const Var wi = svf.adapted_weight(reshape(z, Shape{4}));
      const Var yi = linear(slice(x, 0, i, i + 1), wi, constant(b));
      const Tensor got = slice(constant(y), 0, i, i + 1).value();
      expect_close(got, yi.value(), 1e-5f);
    }
    svf.experts_vectors.value() = Tensor(Shape{3, 4}, 1.0f);
  }
}

TEST(Svf, GradientsOnInputExpertVectorsMixtureAndDispatcher) {
  std::mt19937_64 rng(3);
  SvfLinear svf(random_tensor(Shape{4, 5}, rng), random_tensor(Shape{4}, rng), 3);
  SvfDispatcher disp(5, 3, rng);
  // x [2, 3, 5], z [3, 4], dispatcher weight [3, 5] and bias [3].
  testing::expect_gradients_match(
      [&](const std::vector<Var>& v) {
        svf.experts_vectors = v[1];
        disp.classifier.weight = v[2];
        disp.classifier.bias = v[3];
        return svf.forward(v[0], disp.mixture(v[0]));
      },
      {random_tensor(Shape{2, 3, 5}, rng), random_tensor(Shape{3, 4}, rng, 0.5f, 1.5f),
       random_tensor(Shape{3, 5}, rng), random_tensor(Shape{3}, rng)});
  // A free mixture on vector inputs.
  testing::expect_gradients_match(
      [&](const std::vector<Var>& v) {
        svf.experts_vectors = v[1];
        return svf.forward(v[0], v[2]);
      },
      {random_tensor(Shape{3, 5}, rng), random_tensor(Shape{3, 4}, rng, 0.5f, 1.5f),
       random_tensor(Shape{3, 3}, rng, 0.0f, 1.0f)});
}

TEST(Svf, ArgumentErrors) {
  std::mt19937_64 rng(4);
  const Tensor w = random_tensor(Shape{3, 2}, rng);
  expect_invalid([&] { SvfLinear(w, Tensor(), 0); }, "SvfLinear: experts must be >= 1, got 0");
  expect_invalid([&] { SvfLinear(w, Tensor::zeros(Shape{2}), 1); },
                 "SvfLinear: bias must be [3], got [2]");
  SvfLinear svf(w, Tensor(), 2);
  expect_invalid(
      [&] {
        svf.forward(constant(Tensor::zeros(Shape{4, 3})), Var());
      },
      "SvfLinear: expects [batch, .., 2], got [4, 3]");
  expect_invalid(
      [&] {
        svf.forward(constant(Tensor::zeros(Shape{4, 2})), svf_one_hot(3, 2, 0));
      },
      "SvfLinear: mixture must be [4, 2], got [3, 2]");
  expect_invalid([&] { svf_one_hot(1, 2, 2); },
                 "svf: expert 2 out of range for 2 experts; choose 0 <= expert < experts");
  expect_invalid(
      [&] {
        svf.rebase(Tensor::zeros(Shape{2, 3}));
      },
      "SvfLinear::rebase: weight must be [3, 2], got [2, 3]");
}

}  // namespace hwnas::nn

namespace hwnas::nn {

TEST(Svf, DispatcherPicksTheTaskExpertAndBeatsEverySingleVector) {
  std::mt19937_64 rng(7);
  const std::vector<Tensor> maps = {random_tensor(Shape{4, 7}, rng),
                                    random_tensor(Shape{4, 7}, rng)};
  // 1. A base MLP 8 -> 32 -> 4 pretrained on the mixture with the task hidden.
  Linear l1(8, 32, true, rng), l2(32, 4, true, rng);
  const TaskData pre = make_tasks(4000, maps, -1, true, rng);
  fit(
      {l1.weight, l1.bias, l2.weight, l2.bias}, pre.x, pre.label,
      [&](const Var& x, const std::vector<int>& y) {
        return cross_entropy(l2.forward(relu(l1.forward(x))), y);
      },
      10, 1e-2f, 1);
  // 2. Both layers reparameterised by their SVD; expert k trained on task k only.
  SvfLinear s1(l1.weight.value(), l1.bias.value(), 2), s2(l2.weight.value(), l2.bias.value(), 2);
  auto model = [&](const Var& x, const Var& alpha) {
    return s2.forward(relu(s1.forward(x, alpha)), alpha);
  };
  for (int k = 0; k < 2; ++k) {
    const TaskData t = make_tasks(3000, maps, k, false, rng);
    fit(
        {s1.experts_vectors, s2.experts_vectors}, t.x, t.label,
        [&](const Var& x, const std::vector<int>& y) {
          return cross_entropy(model(x, svf_one_hot(x.dim(0), 2, k)), y);
        },
        30, 3e-2f, 10 + k);
  }
  // 3. The dispatcher: a classifier of the input trained on which-task labels.
  SvfDispatcher disp(8, 2, rng);
  const TaskData mixed = make_tasks(3000, maps, -1, false, rng);
  fit(
      {disp.classifier.weight, disp.classifier.bias}, mixed.x, mixed.task,
      [&](const Var& x, const std::vector<int>& y) { return cross_entropy(disp.logits(x), y); }, 5,
      1e-2f, 3);
  // 4. Held-out mixed set.
  const TaskData test = make_tasks(4000, maps, -1, false, rng);
  NoGradGuard ng;
  const Var x = constant(test.x);
  const double dispatch_acc = accuracy(disp.logits(x).value(), test.task, test.task, -1);
  double single[2][3];  // [vector][task 0, task 1, mixed]
  for (int k = 0; k < 2; ++k) {
    const Tensor lg = model(x, svf_one_hot(x.dim(0), 2, k)).value();
    for (int t = 0; t < 2; ++t) single[k][t] = accuracy(lg, test.label, test.task, t);
    single[k][2] = accuracy(lg, test.label, test.task, -1);
  }
  const double base = accuracy(l2.forward(relu(l1.forward(x))).value(), test.label, test.task, -1);
  const double dispatched = accuracy(model(x, disp.mixture(x)).value(), test.label, test.task, -1);
  std::printf(
      "svf two tasks: dispatch accuracy %.3f; mixed-set accuracy: base %.3f, z_1 alone %.3f "
      "(task 1 %.3f, task 2 %.3f), z_2 alone %.3f (task 1 %.3f, task 2 %.3f), dispatched %.3f\n",
      dispatch_acc, base, single[0][2], single[0][0], single[0][1], single[1][2], single[1][0],
      single[1][1], dispatched);
  EXPECT_GT(dispatch_acc, 0.97);
  EXPECT_GT(single[0][0], single[1][0]);  // each vector is better on its own task
  EXPECT_GT(single[1][1], single[0][1]);
  EXPECT_GT(dispatched, single[0][2] + 0.05);
  EXPECT_GT(dispatched, single[1][2] + 0.05);
}

}  // namespace hwnas::nn
