// The fused SSM ops (nn/ssm.hpp): selective_scan against a naive step-by-step scan built from
// existing ops (values and gradients, across chunk boundaries), s4d_kernel against its closed
// form, finite differences over longer sequences, thread-count independence and input checks.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>

#include "nn/parallel.hpp"
#include "nn/ssm.hpp"
#include "nn/ssm_layers.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_close;
using testing::expect_gradients_match;
using testing::expect_invalid;
using testing::random_tensor;

// The recurrence written with one autograd node per op and step (selective_scan_ref's loop).
Var naive_scan(const Var& u, const Var& delta, const Var& A, const Var& B, const Var& C) {
  const int Bt = u.dim(0), L = u.dim(1), E = u.dim(2), N = A.dim(1);
  Var h = constant(Tensor::zeros({Bt, E, N}));
  std::vector<Var> ys;
  for (int t = 0; t < L; ++t) {
    const Var d = reshape(slice(delta, 1, t, t + 1), Shape{Bt, E, 1});
    const Var x = reshape(slice(u, 1, t, t + 1), Shape{Bt, E, 1});
    const Var bt = reshape(slice(B, 1, t, t + 1), Shape{Bt, 1, N});
    const Var ct = reshape(slice(C, 1, t, t + 1), Shape{Bt, 1, N});
    h = add(mul(exp(mul(d, A)), h), mul(mul(d, x), bt));
    ys.push_back(reshape(sum_last(mul(h, ct)), Shape{Bt, 1, E}));
  }
  return concat(ys, 1);
}

struct ScanInputs {
  Tensor u, delta, A, B, C;
};

ScanInputs scan_inputs(int Bt, int L, int E, int N, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  ScanInputs s;
  s.u = random_tensor({Bt, L, E}, rng);
  s.delta = random_tensor({Bt, L, E}, rng, 0.05f, 0.6f);
  s.A = random_tensor({E, N}, rng, -2.0f, -0.2f);
  s.B = random_tensor({Bt, L, N}, rng);
  s.C = random_tensor({Bt, L, N}, rng);
  return s;
}

TEST(SelectiveScan, MatchesNaiveScanValuesAndGradients) {
  // L = 70 spans three backward chunks (32, 32, 6).
  const ScanInputs s = scan_inputs(2, 70, 3, 4, 11);
  std::vector<Var> fused{parameter(s.u), parameter(s.delta), parameter(s.A), parameter(s.B),
                         parameter(s.C)};
  std::vector<Var> naive{parameter(s.u), parameter(s.delta), parameter(s.A), parameter(s.B),
                         parameter(s.C)};
  const Var yf = selective_scan(fused[0], fused[1], fused[2], fused[3], fused[4]);
  const Var yn = naive_scan(naive[0], naive[1], naive[2], naive[3], naive[4]);
  expect_close(yf.value(), yn.value(), 1e-5f);
  std::mt19937_64 rng(3);
  const Tensor proj = random_tensor(yf.shape(), rng, 0.5f, 1.5f);
  backward(sum(mul(yf, constant(proj))));
  backward(sum(mul(yn, constant(proj))));
  for (std::size_t k = 0; k < fused.size(); ++k) {
    SCOPED_TRACE("input " + std::to_string(k));
    expect_close(fused[k].grad(), naive[k].grad(), 1e-4f);
  }
}

TEST(SelectiveScan, FiniteDifferencesAcrossChunks) {
  const ScanInputs s = scan_inputs(1, 40, 2, 3, 5);
  expect_gradients_match(
      [](const std::vector<Var>& v) { return selective_scan(v[0], v[1], v[2], v[3], v[4]); },
      {s.u, s.delta, s.A, s.B, s.C});
}

TEST(SelectiveScan, SameBitsWhateverTheThreadCount) {
  const ScanInputs s = scan_inputs(4, 64, 16, 8, 7);  // large enough to split into chunks
  auto run = [&](int threads) {
    ThreadBudget budget(threads);
    return run_isolated([&] {
      std::vector<Var> v{parameter(s.u), parameter(s.delta), parameter(s.A), parameter(s.B),
                         parameter(s.C)};
      Var y = selective_scan(v[0], v[1], v[2], v[3], v[4]);
      backward(sum(mul(y, y)));
      std::vector<Tensor> out{y.value().clone()};
      for (auto& x : v) out.push_back(x.grad().clone());
      return out;
    });
  };
  const auto one = run(1), four = run(4);
  for (std::size_t k = 0; k < one.size(); ++k)
    for (std::int64_t i = 0; i < one[k].numel(); ++i)
      ASSERT_EQ(one[k].data()[i], four[k].data()[i]) << "tensor " << k << " elem " << i;
}

TEST(SelectiveScan, RejectsMismatchedInputs) {
  const ScanInputs s = scan_inputs(2, 5, 3, 4, 1);
  auto c = [](const Tensor& t) { return constant(t); };
  expect_invalid([&] { selective_scan(c(s.B), c(s.delta), c(s.A), c(s.B), c(s.C)); },
                 "selective_scan: A must be [channels=4, state], got [3, 4]");
  expect_invalid([&] { selective_scan(c(s.u), c(s.B), c(s.A), c(s.B), c(s.C)); },
                 "selective_scan: delta has shape [2, 5, 4], expected [2, 5, 3]");
  expect_invalid([&] { selective_scan(c(s.u), c(s.delta), c(s.A), c(s.u), c(s.C)); },
                 "selective_scan: B has shape [2, 5, 3], expected [2, 5, 4]");
  expect_invalid([&] { selective_scan(c(s.u), c(s.delta), c(s.A), c(s.B), c(s.u)); },
                 "selective_scan: C has shape [2, 5, 3], expected [2, 5, 4]");
  expect_invalid([&] { selective_scan(c(s.A), c(s.A), c(s.A), c(s.B), c(s.C)); },
                 "selective_scan: u must be [batch, length, channels], got [3, 4]");
}

// K[h, l] = 2 Re sum_n C_n (e^{z_n} - 1) / A_n e^{z_n l}, term by term with std::exp.
Tensor closed_form_kernel(const Tensor& log_dt, const Tensor& lar, const Tensor& aim,
                          const Tensor& c, int L) {
  const int H = log_dt.dim(0), M = lar.dim(1);
  Tensor k(Shape{H, L});
  for (int h = 0; h < H; ++h)
    for (int l = 0; l < L; ++l) {
      double acc = 0;
      for (int m = 0; m < M; ++m) {
        const std::complex<double> a(-std::exp(lar.data()[h * M + m]), aim.data()[h * M + m]);
        const std::complex<double> z = std::exp(static_cast<double>(log_dt.data()[h])) * a;
        const std::complex<double> cm(c.data()[2 * (h * M + m)], c.data()[2 * (h * M + m) + 1]);
        acc += 2.0 * (cm * (std::exp(z) - 1.0) / a * std::exp(z * static_cast<double>(l))).real();
      }
      k.data()[h * L + l] = static_cast<float>(acc);
    }
  return k;
}

TEST(S4dKernel, MatchesClosedForm) {
  std::mt19937_64 rng(2);
  const Tensor log_dt = random_tensor({3}, rng, -4.0f, -1.0f);
  const Tensor lar = random_tensor({3, 5}, rng, -1.0f, 0.5f);
  const Tensor aim = random_tensor({3, 5}, rng, 0.0f, 10.0f);
  const Tensor c = random_tensor({3, 5, 2}, rng);
  const Var k = s4d_kernel(constant(log_dt), constant(lar), constant(aim), constant(c), 300);
  expect_close(k.value(), closed_form_kernel(log_dt, lar, aim, c, 300), 1e-5f);
}

TEST(S4dKernel, FiniteDifferencesOnEveryParameter) {
  std::mt19937_64 rng(4);
  expect_gradients_match(
      [](const std::vector<Var>& v) { return s4d_kernel(v[0], v[1], v[2], v[3], 24); },
      {random_tensor({2}, rng, -2.0f, -0.5f), random_tensor({2, 3}, rng, -1.0f, 0.0f),
       random_tensor({2, 3}, rng, 0.0f, 3.0f), random_tensor({2, 3, 2}, rng)});
}

TEST(S4dKernel, RejectsBadInputs) {
  auto z = [](Shape s) { return constant(Tensor::zeros(s)); };
  expect_invalid(
      [&] {
        s4d_kernel(z({2}), z({2, 3}), z({2, 3}), z({2, 3, 2}), 0);
      },
      "s4d_kernel: length must be >= 1, got 0");
  expect_invalid(
      [&] {
        s4d_kernel(z({2, 1}), z({2, 3}), z({2, 3}), z({2, 3, 2}), 4);
      },
      "s4d_kernel: log_dt must be [channels], got [2, 1]");
  expect_invalid(
      [&] {
        s4d_kernel(z({2}), z({3, 3}), z({2, 3}), z({2, 3, 2}), 4);
      },
      "s4d_kernel: log_a_real must be [channels=2, modes], got [3, 3]");
  expect_invalid(
      [&] {
        s4d_kernel(z({2}), z({2, 3}), z({2, 4}), z({2, 3, 2}), 4);
      },
      "s4d_kernel: a_imag has shape [2, 4], expected [2, 3]");
  expect_invalid(
      [&] {
        s4d_kernel(z({2}), z({2, 3}), z({2, 3}), z({2, 3}), 4);
      },
      "s4d_kernel: c has shape [2, 3], expected [2, 3, 2]");
}

}  // namespace
}  // namespace hwnas::nn

namespace hwnas::nn {
namespace {

TEST(S4dLayer, ConvolutionalAndRecurrentModesAgree) {
  for (S4dInit init : {S4dInit::Lin, S4dInit::Inv}) {
    std::mt19937_64 rng(8);
    S4dOptions o;
    o.channels = 3;
    o.state = 8;
    o.init = init;
    o.dt_min = 0.01f;
    o.dt_max = 0.5f;
    S4dLayer layer(o, rng);
    const Tensor u = random_tensor({2, 37, 3}, rng);
    NoGradGuard ng;
    expect_close(layer.forward(constant(u)).value(), layer.forward_recurrent(u), 1e-4f);
  }
}

TEST(S4dLayer, InitialisationFollowsTheReference) {
  std::mt19937_64 rng(1);
  S4dOptions o;
  o.channels = 4;
  o.state = 8;
  o.dt_min = 0.01f;
  o.dt_max = 0.1f;
  S4dLayer lin(o, rng);
  o.init = S4dInit::Inv;
  S4dLayer inv(o, rng);
  for (int h = 0; h < 4; ++h) {
    const float dt = std::exp(lin.log_dt.value().data()[h]);
    EXPECT_GE(dt, 0.01f - 1e-6f);
    EXPECT_LE(dt, 0.1f + 1e-6f);
    for (int m = 0; m < 4; ++m) {
      EXPECT_FLOAT_EQ(lin.log_a_real.value().data()[h * 4 + m], std::log(0.5f));
      EXPECT_FLOAT_EQ(lin.a_imag.value().data()[h * 4 + m], static_cast<float>(M_PI * m));
      // S4D-Inv: N / pi (N / (2n + 1) - 1) with N = 8.
      EXPECT_FLOAT_EQ(inv.a_imag.value().data()[h * 4 + m],
                      static_cast<float>(8.0 / M_PI * (8.0 / (2 * m + 1) - 1)));
    }
  }
  expect_invalid([&] { S4dLayer bad({3, 5}, rng); }, "s4d: state must be an even number >= 2");
  expect_invalid(
      [&] {
        S4dLayer bad({3, 4, S4dInit::Lin, 0.1f, 0.01f}, rng);
      },
      "s4d: dt_max must be finite and >= dt_min");
}

TEST(S4dLayer, GradientsOnInputsAndEveryParameter) {
  std::mt19937_64 rng(5);
  S4dLayer layer({2, 4, S4dInit::Lin, 0.05f, 0.5f}, rng);
  std::vector<Tensor> inputs{random_tensor({2, 6, 2}, rng),    layer.log_dt.value().clone(),
                             layer.log_a_real.value().clone(), layer.a_imag.value().clone(),
                             layer.c.value().clone(),          layer.d.value().clone()};
  expect_gradients_match(
      [&](const std::vector<Var>& v) {
        layer.log_dt = v[1];
        layer.log_a_real = v[2];
        layer.a_imag = v[3];
        layer.c = v[4];
        layer.d = v[5];
        return layer.forward(v[0]);
      },
      inputs);
}

TEST(MambaMixer, GradientsOnInputsAndEveryParameter) {
  std::mt19937_64 rng(6);
  MambaOptions o;
  o.d_model = 3;
  o.d_state = 2;
  o.expand = 2;
  o.d_conv = 3;
  MambaMixer m(o, rng);
  std::vector<NamedParameter> named;
  m.append_named_parameters("", named);
  std::vector<std::string> names;
  for (const auto& p : named) names.push_back(p.name);
  EXPECT_EQ(names, (std::vector<std::string>{"in_proj.weight", "conv1d.weight", "conv1d.bias",
                                             "x_proj.weight", "dt_proj.weight", "dt_proj.bias",
                                             "A_log", "D", "out_proj.weight"}));
  std::vector<Tensor> inputs{random_tensor({2, 5, 3}, rng)};
  for (const auto& p : named) inputs.push_back(p.var.value().clone());
  expect_gradients_match(
      [&](const std::vector<Var>& v) {
        // Swap the gradcheck's copies in as the mixer's parameters.
        std::vector<Var*> slots{&m.in_proj.weight, &m.conv_weight,  &m.conv_bias, &m.x_proj.weight,
                                &m.dt_proj.weight, &m.dt_proj.bias, &m.A_log,     &m.D,
                                &m.out_proj.weight};
        for (std::size_t k = 0; k < slots.size(); ++k) *slots[k] = v[k + 1];
        return m.forward(v[0]);
      },
      inputs);
}

TEST(MambaMixer, IsCausalAndInitialisedAsThePaper) {
  std::mt19937_64 rng(2);
  MambaOptions o;
  o.d_model = 4;
  o.d_state = 3;
  MambaMixer m(o, rng);
  EXPECT_EQ(o.rank(), 1);  // ceil(4 / 16)
  for (int e = 0; e < 8; ++e) {
    // softplus(dt bias) lies in [dt_min, dt_max]; A = -(1, 2, 3); D = 1.
    const float b = m.dt_proj.bias.value().data()[e];
    const float dt = std::log1p(std::exp(b));
    EXPECT_GE(dt, 1e-3f * 0.999f);
    EXPECT_LE(dt, 1e-1f * 1.001f);
    for (int n = 0; n < 3; ++n)
      EXPECT_FLOAT_EQ(std::exp(m.A_log.value().data()[e * 3 + n]), static_cast<float>(n + 1));
    EXPECT_EQ(m.D.value().data()[e], 1.0f);
  }
  // Changing the last position leaves every earlier output unchanged.
  Tensor u = random_tensor({1, 9, 4}, rng);
  NoGradGuard ng;
  const Tensor y0 = m.forward(constant(u)).value().clone();
  for (int f = 0; f < 4; ++f) u.data()[8 * 4 + f] += 1.0f;
  const Tensor y1 = m.forward(constant(u)).value();
  for (int i = 0; i < 8 * 4; ++i) EXPECT_EQ(y0.data()[i], y1.data()[i]) << i;
  EXPECT_NE(y0.data()[8 * 4], y1.data()[8 * 4]);
  expect_invalid([&] { MambaMixer bad({4, 0}, rng); }, "mamba: d_state must be >= 1, got 0");
  expect_invalid(
      [&] {
        m.forward(constant(Tensor::zeros({1, 3, 5})));
      },
      "mamba: input must be [batch, length, 4], got [1, 3, 5]");
}

TEST(CausalDepthwiseConv1d, MatchesTheSumByHandAndItsGradients) {
  const Tensor x = Tensor::from({1, 3, 2}, {1, 2, 3, 4, 5, 6});
  const Tensor w = Tensor::from({2, 2}, {10, 20, 1, 2});  // tap 0 reads t-1, tap 1 reads t
  const Tensor b = Tensor::from({2}, {0.5f, -0.5f});
  const Tensor y = causal_depthwise_conv1d(constant(x), constant(w), constant(b)).value();
  // t=0: 1*1+.5, 2*2-.5; t=1: 10*1+1*3+.5, 20*2+2*4-.5; t=2: 10*3+5+.5, 20*4+12-.5
  const std::vector<float> want{1.5f, 3.5f, 13.5f, 47.5f, 35.5f, 91.5f};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(y.data()[i], want[static_cast<std::size_t>(i)]);
  std::mt19937_64 rng(3);
  expect_gradients_match(
      [](const std::vector<Var>& v) { return causal_depthwise_conv1d(v[0], v[1], v[2]); },
      {random_tensor({2, 5, 3}, rng), random_tensor({3, 3}, rng), random_tensor({3}, rng)});
}

// y[b, t, e] = bias[e] + sum_k w[k, e] x[b, t - (K-1) + k, e], zeros before the start.
Tensor direct_depthwise(const Tensor& x, const Tensor& w, const Tensor* b) {
  const int B = x.dim(0), L = x.dim(1), E = x.dim(2), K = w.dim(0);
  Tensor y(x.shape(), 0.0f);
  for (int n = 0; n < B; ++n)
    for (int t = 0; t < L; ++t)
      for (int e = 0; e < E; ++e) {
        double acc = b ? b->data()[e] : 0.0;
        for (int k = 0; k < K; ++k) {
          const int src = t - (K - 1) + k;
          if (src >= 0)
            acc += static_cast<double>(w.data()[k * E + e]) * x.data()[(n * L + src) * E + e];
        }
        y.data()[(n * L + t) * E + e] = static_cast<float>(acc);
      }
  return y;
}

TEST(CausalDepthwiseConv1d, KernelsLongerThanTheSequenceNoBiasAndFrozenInputs) {
  std::mt19937_64 rng(5);
  for (auto [L, K] : {std::pair{1, 4}, {3, 5}, {6, 1}}) {
    const Tensor x = random_tensor({2, L, 3}, rng), w = random_tensor({K, 3}, rng),
                 b = random_tensor({3}, rng);
    expect_close(causal_depthwise_conv1d(constant(x), constant(w), constant(b)).value(),
                 direct_depthwise(x, w, &b), 1e-5f);
    expect_close(causal_depthwise_conv1d(constant(x), constant(w), Var()).value(),
                 direct_depthwise(x, w, nullptr), 1e-5f);
    expect_gradients_match(
        [](const std::vector<Var>& v) { return causal_depthwise_conv1d(v[0], v[1], v[2]); },
        {x, w, b});
    expect_gradients_match(
        [](const std::vector<Var>& v) { return causal_depthwise_conv1d(v[0], v[1], Var()); },
        {x, w});
  }
  // Only the bias trains (x and w constant): its gradient is dy summed over batch and length.
  const Tensor x = random_tensor({2, 4, 3}, rng), w = random_tensor({2, 3}, rng);
  Var b = parameter(Tensor::zeros({3}));
  backward(sum(causal_depthwise_conv1d(constant(x), constant(w), b)));
  for (int e = 0; e < 3; ++e) EXPECT_FLOAT_EQ(b.grad().data()[e], 8.0f);
  expect_invalid(
      [] {
        causal_depthwise_conv1d(constant(Tensor::zeros({1, 2, 3})), constant(Tensor::zeros({0, 3})),
                                Var());
      },
      "causal_depthwise_conv1d: x must be [B, L, E], w [K >= 1, E] and b [E]");
}

TEST(CausalDepthwiseConv1d, BitIdenticalAcrossThreadCounts) {
  std::mt19937_64 rng(6);
  const Tensor x = random_tensor({5, 40, 24}, rng), w = random_tensor({4, 24}, rng),
               b = random_tensor({24}, rng);
  auto run = [&](int threads) {
    ThreadBudget budget(threads);
    Var px = parameter(x), pw = parameter(w), pb = parameter(b);
    Var y = causal_depthwise_conv1d(px, pw, pb);
    backward(sum(mul(y, y)));
    std::vector<float> all = y.value().to_vector();
    for (const Var* v : {&px, &pw, &pb}) {
      auto g = v->grad().to_vector();
      all.insert(all.end(), g.begin(), g.end());
    }
    return all;
  };
  EXPECT_TRUE(run(1) == run(2));
  EXPECT_TRUE(run(2) == run(3));
}

}  // namespace
}  // namespace hwnas::nn
