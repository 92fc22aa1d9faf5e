// nn::MoeLayer (nn/moe.hpp): routed output against a dense reference over all experts masked to
// the selected ones, finite-difference gradients on the input, router and expert weights,
// capacity overflow (dropped and passed through, counted), the load-balancing loss, the
// recorded activity and the option checks.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/moe.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_gradients_match;
using testing::expect_invalid;
using testing::random_tensor;

MoeOptions opts(int experts, int k, int hidden, double capacity_factor,
                MoeOverflow overflow = MoeOverflow::Drop) {
  MoeOptions o;
  o.experts = experts;
  o.k = k;
  o.hidden = hidden;
  o.capacity_factor = capacity_factor;
  o.overflow = overflow;
  o.activation = Activation::Gelu;  // smooth: no kink for the finite differences
  return o;
}

// Router weights scaled up so that top-k choices are decided by clear margins.
void sharpen_router(MoeLayer& m, float factor) {
  Tensor& w = m.router.weight.value();
  for (std::int64_t i = 0; i < w.numel(); ++i) w.data()[i] *= factor;
}

// Smallest gap between the k-th and (k+1)-th router probability over the tokens of x [N, d].
float min_choice_margin(MoeLayer& m, const Tensor& x) {
  NoGradGuard ng;
  const Tensor p = softmax(linear(constant(x), m.router.weight, m.router.bias)).value();
  const int n = p.shape()[0], e = p.shape()[1], k = m.options().k;
  float margin = 1e9f;
  for (int t = 0; t < n; ++t) {
    std::vector<float> row(p.data() + t * e, p.data() + (t + 1) * e);
    std::sort(row.begin(), row.end(), std::greater<>());
    if (k < e) margin = std::min(margin, row[static_cast<std::size_t>(k - 1)] - row[k]);
  }
  return margin;
}

// Every expert on every token (the dense product), then masked to the router's top-k with the
// raw probabilities as gates: what routing must reproduce when nothing overflows.
Tensor dense_reference(MoeLayer& m, const Tensor& x) {
  NoGradGuard ng;
  const int n = x.shape()[0], d = x.shape()[1], E = m.options().experts, k = m.options().k;
  const Var xc = constant(x);
  const Tensor p = softmax(linear(xc, m.router.weight, m.router.bias)).value();
  std::vector<Tensor> all;
  for (int e = 0; e < E; ++e)
    all.push_back(
        linear(apply_activation(linear(xc, m.fc1[e].weight, m.fc1[e].bias), m.options().activation),
               m.fc2[e].weight, m.fc2[e].bias)
            .value());
  Tensor y = Tensor::zeros(Shape{n, d});
  for (int t = 0; t < n; ++t) {
    std::vector<int> order(static_cast<std::size_t>(E));
    for (int e = 0; e < E; ++e) order[static_cast<std::size_t>(e)] = e;
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return p.data()[t * E + a] > p.data()[t * E + b]; });
    for (int j = 0; j < E; ++j) {
      const int e = order[static_cast<std::size_t>(j)];
      const float mask = j < k ? 1.0f : 0.0f;
      for (int c = 0; c < d; ++c)
        y.data()[t * d + c] += mask * p.data()[t * E + e] * all[e].data()[t * d + c];
    }
  }
  return y;
}

}  // namespace

TEST(Moe, RoutedOutputEqualsDenseReferenceOnSelectedExperts) {
  for (int k : {1, 2}) {
    std::mt19937_64 rng(3 + k);
    MoeLayer m(6, opts(4, k, 10, 4.0), rng);  // factor E: capacity N k, nothing overflows
    const Tensor x = random_tensor(Shape{2, 9, 6}, rng);
    ForwardContext ctx;
    ctx.training = false;
    const Tensor y = m.forward(constant(x), ctx).value();
    EXPECT_EQ(y.shape(), x.shape());
    EXPECT_EQ(m.last_routing().overflowed, 0);
    EXPECT_EQ(m.last_routing().tokens, 18);
    const Tensor ref = dense_reference(
        m, Tensor::from(Shape{18, 6}, std::vector<float>(x.data(), x.data() + x.numel())));
    for (std::int64_t i = 0; i < ref.numel(); ++i)
      EXPECT_NEAR(y.data()[i], ref.data()[i], 1e-5f) << "k " << k << " element " << i;
    int processed = 0;
    for (int c : m.last_routing().processed_per_expert) processed += c;
    EXPECT_EQ(processed, 18 * k);
  }
}

TEST(Moe, GradientsReachInputRouterAndExperts) {
  for (int k : {1, 2}) {
    // A seed whose top-k choices have margins far above the finite-difference step.
    std::uint64_t seed = 10;
    std::unique_ptr<MoeLayer> m;
    Tensor x;
    for (;; ++seed) {
      std::mt19937_64 rng(seed);
      m = std::make_unique<MoeLayer>(4, opts(3, k, 5, 3.0), rng);
      sharpen_router(*m, 20.0f);
      x = random_tensor(Shape{6, 4}, rng);
      if (min_choice_margin(*m, x) > 0.05f) break;
      ASSERT_LT(seed, 200u) << "no seed with clear routing margins";
    }
    // The parameters of an expert that receives tokens (the others get no gradient).
    {
      ForwardContext probe;
      (void)m->forward(constant(x), probe);
    }
    std::size_t e = 0;
    while (m->last_routing().processed_per_expert[e] == 0) ++e;
    const Var rw = m->router.weight, rb = m->router.bias;
    const Var w1 = m->fc1[e].weight, w2 = m->fc2[e].weight, b2 = m->fc2[e].bias;
    auto f = [&](const std::vector<Var>& v) {
      m->router.weight = v[1];
      m->router.bias = v[2];
      m->fc1[e].weight = v[3];
      m->fc2[e].weight = v[4];
      m->fc2[e].bias = v[5];
      ForwardContext ctx;
      ctx.training = false;
      return m->forward(v[0], ctx);
    };
    expect_gradients_match(f, {x, rw.value(), rb.value(), w1.value(), w2.value(), b2.value()});
    // The load-balancing loss is differentiable in the router too.
    auto aux = [&](const std::vector<Var>& v) {
      m->router.weight = v[0];
      std::vector<Var> losses;
      ForwardContext ctx;
      ctx.aux_losses = &losses;
      (void)m->forward(constant(x), ctx);
      return losses.at(0);
    };
    expect_gradients_match(aux, {rw.value()});
  }
}

TEST(Moe, OverflowIsDroppedOrPassedAndCounted) {
  // Every token prefers expert 0: zero router weights and a bias favouring it.  16 tokens,
  // E = 4, k = 1, factor 0.5: capacity ceil(0.5 * 16 / 4) = 2, so 14 assignments overflow.
  for (MoeOverflow ov : {MoeOverflow::Drop, MoeOverflow::Pass}) {
    std::mt19937_64 rng(2);
    MoeLayer m(3, opts(4, 1, 4, 0.5, ov), rng);
    Tensor& w = m.router.weight.value();
    for (std::int64_t i = 0; i < w.numel(); ++i) w.data()[i] = 0;
    m.router.bias.value() = Tensor::from(Shape{4}, {2, 0, 0, 0});
    const Tensor x = random_tensor(Shape{2, 8, 3}, rng);
    ActivitySink sink;
    ForwardContext ctx;
    ctx.training = false;
    ctx.activity = &sink;
    const Tensor y = m.forward(constant(x), ctx).value();
    const MoeRouting& r = m.last_routing();
    EXPECT_EQ(r.capacity, 2);
    EXPECT_EQ(r.chosen_per_expert, (std::vector<int>{16, 0, 0, 0}));
    EXPECT_EQ(r.processed_per_expert, (std::vector<int>{2, 0, 0, 0}));
    EXPECT_EQ(r.overflowed, 14);
    // Tokens 0 and 1 (in token order) got the expert; the rest overflowed.
    const float gate = std::exp(2.0f) / (std::exp(2.0f) + 3.0f);
    for (int t = 2; t < 16; ++t)
      for (int c = 0; c < 3; ++c) {
        const float want = ov == MoeOverflow::Drop ? 0.0f : gate * x.data()[t * 3 + c];
        EXPECT_NEAR(y.data()[t * 3 + c], want, 1e-6f) << t;
      }
    // Batch totals: the model divides by its 2 samples.
    EXPECT_DOUBLE_EQ(sink.totals().at(activity_key::kDroppedTokens), 14);
    // 2 expert runs over 8 tokens per sample: 0.25 per token.
    EXPECT_DOUBLE_EQ(sink.totals().at(activity_key::kActiveExperts), 2.0 / 8.0);
    EXPECT_EQ(sink.series_totals().at(activity_key::kTokensPerExpert),
              (std::vector<double>{2, 0, 0, 0}));
  }
}

TEST(Moe, SecondChoicesYieldToFirstChoicesAtCapacity) {
  // k = 2, 4 tokens, E = 2, factor 0.5: capacity ceil(0.5 * 4 * 2 / 2) = 2.  Every token ranks
  // expert 0 first and 1 second: first choices fill expert 0 with tokens 0 and 1, second choices
  // fill expert 1 with tokens 0 and 1.
  std::mt19937_64 rng(4);
  MoeLayer m(2, opts(2, 2, 3, 0.5), rng);
  for (std::int64_t i = 0; i < m.router.weight.value().numel(); ++i)
    m.router.weight.value().data()[i] = 0;
  m.router.bias.value() = Tensor::from(Shape{2}, {1, 0});
  ForwardContext ctx;
  (void)m.forward(constant(random_tensor(Shape{4, 2}, rng)), ctx);
  EXPECT_EQ(m.last_routing().processed_per_expert, (std::vector<int>{2, 2}));
  EXPECT_EQ(m.last_routing().overflowed, 4);
}

TEST(Moe, LoadBalancingLossIsOneWhenUniformAndEWhenCollapsed) {
  // Uniform probabilities and a uniform dispatch: E * sum (1/E)(1/E) = 1.
  const Var uniform = constant(Tensor(Shape{4, 4}, 0.25f));
  const IndexTensor spread(Shape{4, 1}, {0, 1, 2, 3});
  EXPECT_NEAR(moe_load_balancing_loss(uniform, spread).value().item(), 1.0f, 1e-6f);
  // Everything on expert 0 with probability 1: E * 1 * 1 = E.
  Tensor onehot = Tensor::zeros(Shape{4, 4});
  for (int t = 0; t < 4; ++t) onehot.data()[t * 4] = 1;
  const IndexTensor collapsed(Shape{4, 1}, {0, 0, 0, 0});
  EXPECT_NEAR(moe_load_balancing_loss(constant(onehot), collapsed).value().item(), 4.0f, 1e-6f);
  expect_invalid(
      [&] {
        moe_load_balancing_loss(uniform, IndexTensor(Shape{3, 1}, {0, 1, 2}));
      },
      "chosen must be [N, k] with N = 4");
}

TEST(Moe, AuxLossOnlyInTrainingWithACollector) {
  std::mt19937_64 rng(6);
  MoeOptions o = opts(4, 2, 3, 1.0);
  o.aux_weight = 0.05;
  MoeLayer m(3, o, rng);
  const Var x = constant(random_tensor(Shape{5, 3}, rng));
  std::vector<Var> losses;
  ForwardContext ctx;
  ctx.aux_losses = &losses;
  ctx.training = false;
  (void)m.forward(x, ctx);
  EXPECT_TRUE(losses.empty());
  ctx.training = true;
  (void)m.forward(x, ctx);
  ASSERT_EQ(losses.size(), 1u);
  // Between the weight (balanced) and weight * E (collapsed).
  EXPECT_GE(losses[0].value().item(), 0.05f * 0.999f);
  EXPECT_LE(losses[0].value().item(), 0.05f * 4.0f);
  o.aux_weight = 0;
  MoeLayer off(3, o, rng);
  losses.clear();
  (void)off.forward(x, ctx);
  EXPECT_TRUE(losses.empty());
}

TEST(Moe, BadOptionsNameTheField) {
  std::mt19937_64 rng(1);
  expect_invalid([&] { MoeLayer(4, opts(2, 3, 4, 1.0), rng); },
                 "k = 3 must be between 1 and experts = 2");
  expect_invalid([&] { MoeLayer(4, opts(0, 1, 4, 1.0), rng); }, "experts must be >= 1");
  expect_invalid([&] { MoeLayer(4, opts(2, 1, 0, 1.0), rng); }, "hidden must be >= 1");
  expect_invalid([&] { MoeLayer(4, opts(2, 1, 4, 0.0), rng); }, "capacity_factor must be > 0");
  MoeOptions o = opts(2, 1, 4, 1.0);
  o.aux_weight = -1;
  expect_invalid([&] { MoeLayer(4, o, rng); }, "aux_weight must be >= 0");
  MoeLayer m(4, opts(2, 1, 4, 1.0), rng);
  ForwardContext ctx;
  expect_invalid(
      [&] {
        m.forward(constant(Tensor::zeros(Shape{2, 3})), ctx);
      },
      "MoeLayer: input must be [.., 4]");
  EXPECT_EQ(moe_capacity(10, 2, 4, 1.25), 7);  // ceil(6.25)
  EXPECT_EQ(moe_capacity(1, 1, 16, 1.0), 1);   // never 0
}

TEST(Moe, ParameterNamesCoverEveryExpert) {
  std::mt19937_64 rng(1);
  MoeLayer m(4, opts(3, 1, 5, 1.0), rng);
  const auto named = m.named_parameters();
  ASSERT_EQ(named.size(), 2u + 3 * 4);
  EXPECT_EQ(named[0].name, "router.weight");
  EXPECT_EQ(named[2].name, "experts.0.fc1.weight");
  EXPECT_EQ(named.back().name, "experts.2.fc2.bias");
  EXPECT_EQ(m.freeze("experts.1"), 4);
}

}  // namespace hwnas::nn
