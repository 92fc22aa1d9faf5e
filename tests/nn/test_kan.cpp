// KAN layers: the fused B-spline basis against a textbook Cox-de Boor reference and by finite
// differences, the layer's gradients on inputs and every parameter, grid extension, the
// sparsity regulariser, curve export with symbolic fitting, and a seeded learning test.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <numbers>
#include <random>

#include "nn/kan.hpp"
#include "nn/op_registry.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_gradients_match;
using testing::expect_invalid;
using testing::random_tensor;

// Textbook recursion on the full knot vector t_j = lo + (j - k) h, j = 0..G+2k (double).
double reference_basis(double x, int b, int k, int g, double lo, double hi) {
  const double h = (hi - lo) / g;
  auto t = [&](int j) { return lo + (j - k) * h; };
  std::function<double(int, int)> rec = [&](int i, int d) -> double {
    if (d == 0) return (t(i) <= x && x < t(i + 1)) ? 1.0 : 0.0;
    return (x - t(i)) / (t(i + d) - t(i)) * rec(i, d - 1) +
           (t(i + d + 1) - x) / (t(i + d + 1) - t(i + 1)) * rec(i + 1, d - 1);
  };
  return rec(b, k);
}

TEST(BsplineBasis, MatchesCoxDeBoorReferenceAndPartitionOfUnity) {
  std::mt19937_64 rng(3);
  for (int k = 0; k <= 4; ++k)
    for (int g : {1, 3, 7}) {
      Tensor x = random_tensor(Shape{5, 6}, rng, -1.9f, 1.9f);
      Tensor b = bspline_basis(constant(x), g, k, -1.0f, 1.5f).value();
      ASSERT_EQ(b.shape(), (Shape{5, 6, g + k}));
      for (std::int64_t i = 0; i < x.numel(); ++i) {
        double total = 0;
        for (int m = 0; m < g + k; ++m) {
          const double ref = reference_basis(x.data()[i], m, k, g, -1.0, 1.5);
          EXPECT_NEAR(b.data()[i * (g + k) + m], ref, 2e-5)
              << "k=" << k << " g=" << g << " x=" << x.data()[i];
          total += b.data()[i * (g + k) + m];
        }
        if (x.data()[i] >= -1.0f && x.data()[i] <= 1.5f) {
          EXPECT_NEAR(total, 1.0, 1e-5);
        }
      }
    }
}

TEST(BsplineBasis, ZeroOutsideTheExtendedGrid) {
  // G = 4, k = 2 on [0, 1]: knots span [-0.5, 1.5).
  Tensor x = Tensor::from({4}, {-0.6f, 1.5f, 7.0f, std::nanf("")});
  Var xv = parameter(x);
  Var b = bspline_basis(xv, 4, 2, 0.0f, 1.0f);
  for (std::int64_t i = 0; i < b.value().numel(); ++i) EXPECT_EQ(b.value().data()[i], 0.0f);
  backward(sum(b));
  for (std::int64_t i = 0; i < 3; ++i) EXPECT_EQ(xv.grad().data()[i], 0.0f);
}

TEST(BsplineBasis, GradientsMatchFiniteDifferences) {
  std::mt19937_64 rng(4);
  for (int k : {3, 4}) {
    SCOPED_TRACE(k);
    expect_gradients_match(
        [k](const std::vector<Var>& v) { return bspline_basis(v[0], 6, k, -2.0f, 1.0f); },
        {random_tensor(Shape{4, 5}, rng, -3.0f, 2.0f)});
  }
  // Orders 1 and 2 have kinks in the value or in the slope at the knots (multiples of 0.5
  // here): keep inputs 0.1 off them so the central difference does not straddle one.
  Tensor x(Shape{12});
  for (int i = 0; i < 12; ++i)
    x.data()[i] = -1.7f + 0.25f * static_cast<float>(i) + 0.1f * (i % 2 ? 1.0f : -1.0f);
  for (int k : {1, 2}) {
    SCOPED_TRACE(k);
    expect_gradients_match(
        [k](const std::vector<Var>& v) { return bspline_basis(v[0], 4, k, -1.0f, 1.0f); }, {x});
  }
}

TEST(BsplineBasis, RejectsBadArguments) {
  Var x = constant(Tensor(Shape{2}, 0.0f));
  expect_invalid([&] { bspline_basis(x, 0, 3, -1, 1); }, "grid_size = 0");
  expect_invalid([&] { bspline_basis(x, 5, -1, -1, 1); }, "order = -1");
  expect_invalid([&] { bspline_basis(x, 5, 11, -1, 1); }, "order = 11");
  expect_invalid([&] { bspline_basis(x, 5, 3, 1, 1); }, "need lo < hi");
}

TEST(BsplineBasis, IsRegisteredOp) { EXPECT_TRUE(builtin_ops().contains("bspline_basis")); }

// ---- the layer ----

KanOptions opts(int g, int k, Activation a = Activation::Silu, bool scale = true) {
  KanOptions o;
  o.grid_size = g;
  o.order = k;
  o.base_activation = a;
  o.spline_scale = scale;
  o.noise_scale = 2.0f;  // visible curves so that the spline branch matters in the checks
  return o;
}

TEST(KanLinear, GradientsOnInputsAndEveryParameter) {
  for (bool scale : {true, false})
    for (Activation a : {Activation::Silu, Activation::Tanh, Activation::None}) {
      SCOPED_TRACE(scale);
      std::mt19937_64 rng(7);
      KanLinear layer(3, 4, opts(5, 3, a, scale), rng);
      std::vector<Tensor> inputs = {random_tensor(Shape{2, 2, 3}, rng, -1.2f, 1.2f),
                                    layer.base_weight.value(), layer.spline_weight.value()};
      if (scale) inputs.push_back(layer.spline_scaler.value());
      expect_gradients_match(
          [&](const std::vector<Var>& v) {
            Var ws = v[2];
            if (scale)
              ws = reshape(mul(reshape(v[2], Shape{4, 3, 8}), reshape(v[3], Shape{4, 3, 1})),
                           Shape{4, 24});
            return layer.forward_with(v[0], v[1], ws);
          },
          inputs);
      // The layer's own parameters receive the same gradients through forward().
      Var x = constant(inputs[0]);
      backward(sum(layer.forward(x)));
      EXPECT_FALSE(layer.base_weight.grad().empty());
      EXPECT_FALSE(layer.spline_weight.grad().empty());
      if (scale) {
        EXPECT_FALSE(layer.spline_scaler.grad().empty());
      }
    }
}

TEST(KanLinear, OutputIsTheSumOfEdgeActivations) {
  std::mt19937_64 rng(8);
  KanLinear layer(3, 2, opts(4, 2), rng);
  Tensor x = random_tensor(Shape{5, 3}, rng, -1.0f, 1.0f);
  NoGradGuard ng;
  Tensor y = layer.forward(constant(x)).value();
  Tensor phi = layer.edge_activations(constant(x)).value();  // [5, 2, 3]
  for (int n = 0; n < 5; ++n)
    for (int o = 0; o < 2; ++o) {
      double s = 0;
      for (int i = 0; i < 3; ++i) s += phi.data()[(n * 2 + o) * 3 + i];
      EXPECT_NEAR(y.data()[n * 2 + o], s, 1e-5);
    }
  // The exported curves are the same functions: edge (1, 2) at x = grid_lo + 0.3.
  auto curves = layer.edge_curves(11);
  ASSERT_EQ(curves.size(), 6u);
  const auto& c = curves[1 * 3 + 2];
  EXPECT_EQ(c.out, 1);
  EXPECT_EQ(c.in, 2);
  Tensor probe(Shape{1, 3}, c.x[3]);
  Tensor p = layer.edge_activations(constant(probe)).value();
  EXPECT_NEAR(c.y[3], p.data()[1 * 3 + 2], 1e-5);
}

TEST(KanLinear, RejectsBadArguments) {
  std::mt19937_64 rng(1);
  expect_invalid([&] { KanLinear(0, 2, KanOptions{}, rng); }, "in = 0");
  KanOptions o;
  o.grid_size = 0;
  expect_invalid([&] { KanLinear(2, 2, o, rng); }, "KanOptions.grid_size = 0");
  o = {};
  o.order = 12;
  expect_invalid([&] { KanLinear(2, 2, o, rng); }, "KanOptions.order = 12");
  o = {};
  o.grid_lo = 2.0f;
  expect_invalid([&] { KanLinear(2, 2, o, rng); }, "need grid_lo < grid_hi");
  KanLinear layer(2, 3, KanOptions{}, rng);
  expect_invalid([&] { layer.forward(constant(Tensor(Shape{4, 3}, 0.0f))); }, "in_features = 2");
  expect_invalid([&] { layer.extend_grid(0); }, "new_grid_size = 0");
  expect_invalid([&] { layer.edge_curves(1); }, "samples = 1");
}

// ---- grid extension ----

// Sets edge (o, i)'s curve to f on the grid range (least squares on the spline, base off).
void set_edge(KanLinear& layer, int o, int i, const std::function<double(double)>& f) {
  const int nb = layer.bases();
  auto curves = layer.edge_curves(400);
  // Basis at the sample points through the op itself.
  const auto& xs = curves[0].x;
  Tensor xt(Shape{static_cast<int>(xs.size()), 1});
  for (std::size_t s = 0; s < xs.size(); ++s) xt.data()[s] = xs[s];
  const auto& o_ = layer.options();
  Tensor b = bspline_basis(constant(xt), o_.grid_size, o_.order, o_.grid_lo, o_.grid_hi).value();
  // Normal equations in double (small, well conditioned on a dense sample).
  std::vector<double> ata(nb * nb, 0.0), aty(nb, 0.0);
  for (std::size_t s = 0; s < xs.size(); ++s)
    for (int p = 0; p < nb; ++p) {
      aty[p] += b.data()[s * nb + p] * f(xs[s]);
      for (int q = 0; q < nb; ++q) ata[p * nb + q] += b.data()[s * nb + p] * b.data()[s * nb + q];
    }
  for (int p = 0; p < nb; ++p) {  // Gauss-Jordan (SPD, no pivoting needed)
    for (int r = 0; r < nb; ++r) {
      if (r == p) continue;
      const double fct = ata[r * nb + p] / ata[p * nb + p];
      for (int q = 0; q < nb; ++q) ata[r * nb + q] -= fct * ata[p * nb + q];
      aty[r] -= fct * aty[p];
    }
  }
  const float scale = layer.spline_scaler.defined()
                          ? layer.spline_scaler.value().data()[o * layer.in_features() + i]
                          : 1.0f;
  for (int p = 0; p < nb; ++p)
    layer.spline_weight.value().data()[(o * layer.in_features() + i) * nb + p] =
        static_cast<float>(aty[p] / ata[p * nb + p] / scale);
  layer.base_weight.value().data()[o * layer.in_features() + i] = 0.0f;
}

double max_abs_diff_in_range(KanLinear& layer, const Tensor& x, const Tensor& before) {
  NoGradGuard ng;
  Tensor after = layer.forward(constant(x)).value();
  double worst = 0;
  for (std::int64_t i = 0; i < after.numel(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(after.data()[i] - before.data()[i])));
  return worst;
}

TEST(KanGridExtension, KeepsTheLearnedFunction) {
  std::mt19937_64 rng(9);
  KanLinear layer(3, 2, opts(5, 3), rng);
  Tensor x = random_tensor(Shape{200, 3}, rng, -1.0f, 1.0f);
  Tensor before;
  {
    NoGradGuard ng;
    before = layer.forward(constant(x)).value();
  }
  layer.extend_grid(10);  // nested grids: the old spline is exactly representable
  EXPECT_EQ(layer.options().grid_size, 10);
  EXPECT_EQ(layer.spline_weight.shape(), (Shape{2, 3 * 13}));
  EXPECT_LT(max_abs_diff_in_range(layer, x, before), 1e-4);
  layer.extend_grid(20);
  EXPECT_LT(max_abs_diff_in_range(layer, x, before), 1e-4);
}

TEST(KanGridExtension, NonNestedRefinementOfSmoothCurves) {
  // Every edge set to a smooth curve at G = 5, refined to G = 8 (grids not nested).
  std::mt19937_64 rng(10);
  KanLinear layer(2, 2, opts(5, 3), rng);
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < 2; ++i)
      set_edge(layer, o, i,
               [o, i](double x) { return 0.5 * std::sin(2.0 * x + o) + 0.2 * i * x * x; });
  Tensor x = random_tensor(Shape{200, 2}, rng, -1.0f, 1.0f);
  Tensor before;
  {
    NoGradGuard ng;
    before = layer.forward(constant(x)).value();
  }
  layer.extend_grid(8);
  EXPECT_LT(max_abs_diff_in_range(layer, x, before), 1e-3);
}

// ---- regulariser ----

TEST(KanRegularization, ValueMatchesDefinitionAndGradientsCheck) {
  std::mt19937_64 rng(11);
  KanLinear layer(3, 2, opts(5, 3), rng);
  Tensor x = random_tensor(Shape{6, 3}, rng, -1.0f, 1.0f);
  {
    NoGradGuard ng;
    Tensor phi = layer.edge_activations(constant(x)).value();
    std::vector<double> m(6, 0.0);
    double total = 0;
    for (int n = 0; n < 6; ++n)
      for (int e = 0; e < 6; ++e) m[e] += std::fabs(phi.data()[n * 6 + e]) / 6.0;
    for (double v : m) total += v;
    double ent = 0;
    for (double v : m) ent -= (v / total) * std::log(v / total);
    EXPECT_NEAR(layer.regularization(constant(x), 1.0f, 0.0f).value().item(), total, 1e-5);
    EXPECT_NEAR(layer.regularization(constant(x), 0.0f, 1.0f).value().item(), ent, 1e-5);
    EXPECT_NEAR(layer.regularization(constant(x), 0.3f, 2.0f).value().item(),
                0.3 * total + 2.0 * ent, 1e-5);
  }
  std::vector<Tensor> inputs = {x, layer.base_weight.value(), layer.spline_weight.value(),
                                layer.spline_scaler.value()};
  expect_gradients_match(
      [&](const std::vector<Var>& v) {
        KanLinear copy = layer;
        copy.base_weight = v[1];
        copy.spline_weight = v[2];
        copy.spline_scaler = v[3];
        return copy.regularization(v[0], 0.7f, 0.4f);
      },
      // |phi| has a kink where an edge activation crosses 0; a smaller step avoids straddling it.
      inputs,
      [] {
        testing::GradCheckOptions o;
        o.eps_scale = 1e-3f;
        return o;
      }());
}

// ---- curve export and symbolic fitting ----

TEST(KanSymbolic, SineEdgeIsRecognised) {
  std::mt19937_64 rng(12);
  KanOptions o = opts(10, 3);
  o.grid_lo = -2.0f;
  o.grid_hi = 2.0f;
  KanLinear layer(2, 2, o, rng);
  set_edge(layer, 1, 0, [](double x) { return 0.8 * std::sin(1.7 * x + 0.4) - 0.2; });
  set_edge(layer, 0, 1, [](double x) { return 0.3 * x * x + 0.1; });
  auto curves = layer.edge_curves(101);
  std::vector<SymbolicFit> all;
  SymbolicFit s = fit_symbolic(curves[1 * 2 + 0].x, curves[1 * 2 + 0].y, &all);
  EXPECT_EQ(s.name, "sin");
  EXPECT_GT(s.r2, 0.99);
  EXPECT_NEAR(std::fabs(s.b), 1.7, 0.05);
  EXPECT_EQ(all.size(), 7u);
  SymbolicFit q = fit_symbolic(curves[0 * 2 + 1].x, curves[0 * 2 + 1].y);
  EXPECT_GT(q.r2, 0.999);
  EXPECT_EQ(q.name, "x^2");
  expect_invalid([] { fit_symbolic({1, 2}, {1, 2}); }, "at least 3");
}

// ---- learning: f(x, y) = exp(sin(pi x) + y^2) on [-1, 1]^2 with a [2, 5, 1] KAN ----

double target(double x, double y) { return std::exp(std::sin(std::numbers::pi * x) + y * y); }

TEST(KanLearning, FitsExpSinPlusSquare) {
  const auto t0 = std::chrono::steady_clock::now();
  std::mt19937_64 rng(2024);
  auto make = [&](int n) {
    Tensor x = random_tensor(Shape{n, 2}, rng, -1.0f, 1.0f);
    Tensor y(Shape{n, 1});
    for (int i = 0; i < n; ++i)
      y.data()[i] = static_cast<float>(target(x.data()[2 * i], x.data()[2 * i + 1]));
    return std::pair{x, y};
  };
  auto [xtr, ytr] = make(1000);
  auto [xte, yte] = make(1000);
  KanOptions o1;
  o1.grid_size = 3;
  KanOptions o2 = o1;
  o2.grid_lo = -3.0f;  // the hidden sum sin(pi x) + y^2 lies in [-1, 2] (up to scale)
  o2.grid_hi = 3.0f;
  KanLinear l1(2, 5, o1, rng), l2(5, 1, o2, rng);
  auto model = [&](const Var& x) { return l2.forward(l1.forward(x)); };
  auto rmse = [&](const Tensor& x, const Tensor& y) {
    NoGradGuard ng;
    Tensor p = model(constant(x)).value();
    double s = 0;
    for (std::int64_t i = 0; i < p.numel(); ++i) s += std::pow(p.data()[i] - y.data()[i], 2);
    return std::sqrt(s / static_cast<double>(p.numel()));
  };
  const std::vector<int> grids = {3, 5, 10, 20};
  const std::vector<int> steps = {800, 800, 800, 1600};
  for (std::size_t stage = 0; stage < grids.size(); ++stage) {
    if (stage > 0) {
      l1.extend_grid(grids[stage]);
      l2.extend_grid(grids[stage]);
    }
    std::vector<Var> ps;
    l1.collect_parameters(ps);
    l2.collect_parameters(ps);
    AdamWOptions ao;
    ao.lr = 1e-2f;
    ao.weight_decay = 0.0f;
    AdamW opt(ps, ao);
    CosineSchedule sched;
    sched.base_lr = stage == 0 ? 2e-2f : 5e-3f;
    sched.warmup_steps = 10;
    sched.total_steps = steps[stage];
    sched.min_lr = 1e-4f;
    Var x = constant(xtr), y = constant(ytr);
    for (int s = 0; s < steps[stage]; ++s) {
      opt.set_lr(sched.lr_at(s));
      opt.zero_grad();
      backward(mse(model(x), y));
      opt.step();
    }
    std::printf("[kan] G=%d train RMSE %.5f test RMSE %.5f\n", grids[stage], rmse(xtr, ytr),
                rmse(xte, yte));
  }
  const double test_rmse = rmse(xte, yte);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[kan] final test RMSE %.5f in %.2f s\n", test_rmse, secs);
  EXPECT_LT(test_rmse, 1e-2);
}

}  // namespace
}  // namespace hwnas::nn
