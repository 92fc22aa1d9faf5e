// rfft / irfft (nn/ops_fft.cpp): forward against a naive O(n^2) DFT on every axis, with
// truncation and zero-padding; round trips; hand-written adjoints by finite differences;
// determinism across thread counts; errors.  Both forms of the causal long convolution
// (causal_fft_conv, causal_direct_conv) against the direct sum, their gradients against finite
// differences and against the unfused rfft / irfft chain; causal_long_conv's choice.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>

#include "nn/conv_spectral.hpp"
#include "nn/gemm.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_close;
using testing::expect_gradients_match;
using testing::expect_invalid;
using V = std::vector<Var>;

Tensor rnd(const Shape& s, std::uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 rng(seed);
  return testing::random_tensor(s, rng, lo, hi);
}

void outer_inner(const Shape& s, int axis, int end, std::int64_t& outer, std::int64_t& inner) {
  outer = inner = 1;
  for (int i = 0; i < axis; ++i) outer *= s[i];
  for (int i = axis + 1; i < end; ++i) inner *= s[i];
}

// X_k = sum_{t < n} x_t e^{-2 pi i k t / n} (x truncated / zero-padded to n), in double.
Tensor naive_rfft(const Tensor& x, int axis, int n) {
  const Shape& s = x.shape();
  std::int64_t outer, inner;
  outer_inner(s, axis, s.rank(), outer, inner);
  const int len = s[axis], bins = n / 2 + 1;
  std::vector<int> od = s.to_vector();
  od[static_cast<std::size_t>(axis)] = bins;
  od.push_back(2);
  Tensor out{Shape(od)};
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t i = 0; i < inner; ++i)
      for (int k = 0; k < bins; ++k) {
        double re = 0, im = 0;
        for (int t = 0; t < std::min(len, n); ++t) {
          const double th = 2 * std::numbers::pi * k * t / n;
          const double v = x.data()[(o * len + t) * inner + i];
          re += v * std::cos(th);
          im -= v * std::sin(th);
        }
        float* d = out.data() + ((o * bins + k) * inner + i) * 2;
        d[0] = static_cast<float>(re);
        d[1] = static_cast<float>(im);
      }
  return out;
}

// y_t = (1/n) sum_{k < n} Y_k e^{2 pi i k t / n}, Y the Hermitian extension of bins 0..n/2 (the
// imaginary parts of bin 0 and of bin n/2 for even n dropped, missing bins zero), in double.
Tensor naive_irfft(const Tensor& X, int axis, int n) {
  const Shape& s = X.shape();
  std::int64_t outer, inner;
  outer_inner(s, axis, s.rank() - 1, outer, inner);
  const int m = s[axis];
  std::vector<int> od = s.to_vector();
  od.pop_back();
  od[static_cast<std::size_t>(axis)] = n;
  Tensor out{Shape(od)};
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t i = 0; i < inner; ++i)
      for (int t = 0; t < n; ++t) {
        double acc = 0;
        for (int k = 0; k < n; ++k) {
          const int b = k <= n / 2 ? k : n - k;  // Y_{n-k} = conj(Y_k)
          if (b >= m) continue;
          const float* z = X.data() + ((o * m + b) * inner + i) * 2;
          double re = z[0], im = k <= n / 2 ? z[1] : -z[1];
          if (b == 0 || (n % 2 == 0 && b == n / 2)) im = 0;
          const double th = 2 * std::numbers::pi * k * t / n;
          acc += re * std::cos(th) - im * std::sin(th);
        }
        out.data()[(o * n + t) * inner + i] = static_cast<float>(acc / n);
      }
  return out;
}

struct FftCase {
  Shape shape;
  int axis;
  int n;  // -1 = the axis length
};

class FftTest : public ::testing::TestWithParam<FftCase> {};

TEST_P(FftTest, RfftMatchesNaiveDft) {
  const FftCase& c = GetParam();
  const Tensor x = rnd(c.shape, 1);
  const int a = c.axis < 0 ? c.axis + c.shape.rank() : c.axis;
  const int n = c.n < 0 ? c.shape[a] : c.n;
  expect_close(rfft(constant(x), c.axis, c.n).value(), naive_rfft(x, a, n),
               1e-4f * std::sqrt(static_cast<float>(n)));
}

TEST_P(FftTest, IrfftMatchesNaiveInverse) {
  const FftCase& c = GetParam();
  // Spectrum with the case's shape as the complex shape; n as the output length.
  std::vector<int> sd = c.shape.to_vector();
  if (sd.size() == 4) return;  // no room for the (re, im) dim
  sd.push_back(2);
  const Tensor X = rnd(Shape(sd), 2);
  const int a = c.axis < 0 ? c.axis + c.shape.rank() : c.axis;
  const int n = c.n < 0 ? 2 * (c.shape[a] - 1) : c.n;
  if (n < 1) return;
  expect_close(irfft(constant(X), c.axis, c.n).value(), naive_irfft(X, a, n), 1e-5f);
}

TEST_P(FftTest, GradientsMatchFiniteDifferences) {
  const FftCase& c = GetParam();
  expect_gradients_match([c](const V& v) { return rfft(v[0], c.axis, c.n); }, {rnd(c.shape, 3)},
                         {.max_elements_per_input = 100});
  std::vector<int> sd = c.shape.to_vector();
  sd.push_back(2);
  const int a = c.axis < 0 ? c.axis + c.shape.rank() : c.axis;
  if (c.n < 0 && c.shape[a] < 2) return;
  expect_gradients_match([c](const V& v) { return irfft(v[0], c.axis, c.n); }, {rnd(Shape(sd), 4)},
                         {.max_elements_per_input = 100});
}

INSTANTIATE_TEST_SUITE_P(AxesAndLengths, FftTest,
                         ::testing::Values(FftCase{{8}, 0, -1}, FftCase{{7}, 0, -1},
                                           FftCase{{1}, 0, -1}, FftCase{{2}, 0, -1},
                                           FftCase{{3, 8}, 1, -1}, FftCase{{3, 8}, -1, 5},
                                           FftCase{{3, 8}, 1, 12}, FftCase{{6, 3}, 0, -1},
                                           FftCase{{6, 3}, 0, 4}, FftCase{{6, 3}, 0, 9},
                                           FftCase{{2, 5, 3}, 1, -1}, FftCase{{2, 5, 3}, 0, 3},
                                           FftCase{{2, 3, 6}, 2, 6}, FftCase{{2, 3, 6}, 2, 7}));

TEST(Fft, RoundTripRecoversInput) {
  for (int n : {1, 2, 5, 16, 64, 100, 4096}) {
    SCOPED_TRACE("n " + std::to_string(n));
    const Tensor x = rnd({3, n}, 5);
    expect_close(irfft(rfft(constant(x), 1), 1, n).value(), x, 1e-5f);
  }
  const Tensor x = rnd({6, 4, 3}, 6);
  expect_close(irfft(rfft(constant(x), 0), 0, 6).value(), x, 1e-5f);
}

TEST(Fft, KnownSpectra) {
  // A constant has only a DC bin; a cosine at bin 2 puts n/2 into bins 2.
  Tensor y = rfft(constant(Tensor(Shape{8}, 1.0f)), 0).value();
  for (int k = 0; k < 5; ++k) {
    EXPECT_NEAR(y.data()[2 * k], k == 0 ? 8.0f : 0.0f, 1e-5f);
    EXPECT_NEAR(y.data()[2 * k + 1], 0.0f, 1e-5f);
  }
  Tensor c(Shape{8});
  for (int t = 0; t < 8; ++t)
    c.data()[t] = static_cast<float>(std::cos(2 * std::numbers::pi * 2 * t / 8));
  y = rfft(constant(c), 0).value();
  EXPECT_NEAR(y.data()[4], 4.0f, 1e-5f);
  EXPECT_NEAR(y.data()[0], 0.0f, 1e-5f);
}

TEST(Fft, EdgeBinImaginaryPartsGetNoGradient) {
  Var X = parameter(rnd({5, 2}, 7));
  backward(sum(mul(irfft(X, 0, 8), constant(rnd({8}, 8)))));
  EXPECT_EQ(X.grad().data()[1], 0.0f);  // Im bin 0
  EXPECT_EQ(X.grad().data()[9], 0.0f);  // Im bin 4 = n/2
  EXPECT_NE(X.grad().data()[3], 0.0f);
}

TEST(Fft, LargeBatchBitIdenticalAcrossThreadCounts) {
  const Tensor x = rnd({64, 4096}, 9);
  auto run = [&](int threads) {
    ThreadBudget budget(threads);
    Var p = parameter(x);
    Var X = rfft(p, 1);
    Var y = irfft(mul(X, X), 1, 4096);
    backward(sum(mul(y, y)));
    std::vector<float> all = y.value().to_vector();
    auto g = p.grad().to_vector();
    all.insert(all.end(), g.begin(), g.end());
    return all;
  };
  EXPECT_TRUE(run(1) == run(2));
  EXPECT_TRUE(run(2) == run(4));
}

TEST(Fft, ErrorsNameOpAndValues) {
  Var x = constant(Tensor::zeros({2, 3}));
  expect_invalid([&] { rfft(x, 2); }, "rfft: bad shape [2, 3] (axis 2 out of range)");
  expect_invalid([&] { rfft(x, 1, 0); }, "rfft: n must be >= 1 (or -1 for the axis length), got 0");
  expect_invalid(
      [&] {
        rfft(constant(Tensor::zeros({1, 2, 3, 4})), 0);
      },
      "rfft: bad shape [1, 2, 3, 4] (rank must be 1..3");
  expect_invalid([&] { irfft(x, 0); }, "irfft: bad shape [2, 3] (input must be complex");
  expect_invalid(
      [&] {
        irfft(constant(Tensor::zeros({3, 2})), 1);
      },
      "irfft: bad shape [3, 2] (axis 1 out of range)");
  expect_invalid(
      [&] {
        irfft(constant(Tensor::zeros({1, 2})), 0);
      },
      "irfft: output length n must be >= 1, got 0 (the default 2 (m - 1) needs m >= 2 bins)");
}

// y[b, t, c] = sum_{s <= t, s < taps} k[s, c] u[b, t - s, c], in double.
Tensor direct_causal_conv(const Tensor& u, const Tensor& k) {
  const int B = u.dim(0), L = u.dim(1), C = u.dim(2), taps = k.dim(0);
  Tensor y(u.shape());
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < L; ++t)
      for (int c = 0; c < C; ++c) {
        double acc = 0;
        for (int s = 0; s <= t && s < taps; ++s)
          acc += static_cast<double>(k.data()[s * C + c]) * u.data()[(b * L + t - s) * C + c];
        y.data()[(b * L + t) * C + c] = static_cast<float>(acc);
      }
  return y;
}

// The two forms of the causal long convolution; every CausalLongConv test runs both.
using CausalConv = Var (*)(const Var&, const Var&);
const std::pair<const char*, CausalConv> kCausalForms[] = {
    {"causal_fft_conv", &causal_fft_conv}, {"causal_direct_conv", &causal_direct_conv}};

TEST(CausalLongConv, MatchesTheDirectSum) {
  // Lengths past the direct form's 64-column blocks, with filters shorter than the length (the
  // band ends inside the blocks) and as long.
  for (auto [name, conv] : kCausalForms)
    for (auto [L, taps] :
         {std::pair{1, 1}, {7, 7}, {9, 4}, {64, 64}, {33, 1}, {200, 70}, {130, 130}, {129, 2}}) {
      SCOPED_TRACE(std::string(name) + " L " + std::to_string(L) + " taps " + std::to_string(taps));
      const Tensor u = rnd({3, L, 5}, 11), k = rnd({taps, 5}, 12);
      expect_close(conv(constant(u), constant(k)).value(), direct_causal_conv(u, k), 1e-5f);
    }
}

// The direct form reads the filter as a Toeplitz matrix through negative strides: every GEMM
// kernel family this machine runs (the Eigen fallback included) takes them, forward and backward.
TEST(CausalLongConv, DirectFormOnEveryGemmKernelFamily) {
  const Tensor u = rnd({3, 130, 4}, 29), k = rnd({100, 4}, 30), w = rnd({3, 130, 4}, 31);
  const detail::GemmIsa saved = detail::gemm_isa();
  std::vector<std::vector<Tensor>> results;
  for (auto isa : {detail::GemmIsa::kEigen, detail::GemmIsa::kAvx2, detail::GemmIsa::kAvx512}) {
    if (!detail::gemm_isa_supported(isa)) continue;
    SCOPED_TRACE(detail::gemm_isa_name(isa));
    detail::set_gemm_isa(isa);
    Var pu = parameter(u), pk = parameter(k);
    Var y = causal_direct_conv(pu, pk);
    backward(sum(mul(y, constant(w))));
    expect_close(y.value(), direct_causal_conv(u, k), 1e-5f);
    Var qu = parameter(u), qk = parameter(k);
    backward(sum(mul(causal_fft_conv(qu, qk), constant(w))));
    expect_close(pu.grad(), qu.grad(), 1e-4f);
    expect_close(pk.grad(), qk.grad(), 1e-4f);
    results.push_back({y.value(), pu.grad(), pk.grad()});
  }
  detail::set_gemm_isa(saved);
  // The x86 families sum in one order: the same bits on AVX2 and AVX-512 machines.
  if (results.size() == 3)
    for (std::size_t i = 0; i < 3; ++i) expect_close(results[1][i], results[2][i], 0.0f);
}

TEST(CausalLongConv, GradientsMatchFiniteDifferencesAndTheUnfusedChain) {
  for (auto [name, conv] : kCausalForms) {
    SCOPED_TRACE(name);
    expect_gradients_match([conv](const V& v) { return conv(v[0], v[1]); },
                           {rnd({2, 6, 2}, 13), rnd({6, 2}, 14)});
    expect_gradients_match([conv](const V& v) { return conv(v[0], v[1]); },
                           {rnd({1, 9, 3}, 15), rnd({2, 3}, 16)});
  }
  // Past one block of the direct form, with a band that ends inside the blocks.
  expect_gradients_match([](const V& v) { return causal_direct_conv(v[0], v[1]); },
                         {rnd({2, 150, 2}, 25), rnd({90, 2}, 26)});
  // The same convolution as the blocks used to spell it: rfft both (n = 2L), complex product
  // by slices, irfft, first L positions.
  const Tensor u = rnd({4, 32, 3}, 17), k = rnd({32, 3}, 18), w = rnd({4, 32, 3}, 19);
  auto grads = [&](CausalConv conv) {
    Var pu = parameter(u), pk = parameter(k);
    Var y;
    if (conv) {
      y = conv(pu, pk);
    } else {
      Var uf = rfft(pu, 1, 64), kf = rfft(pk, 0, 64);
      Var ur = slice(uf, 3, 0, 1), ui = slice(uf, 3, 1, 2);
      Var kr = slice(kf, 2, 0, 1), ki = slice(kf, 2, 1, 2);
      Var re = sub(mul(ur, kr), mul(ui, ki)), im = add(mul(ur, ki), mul(ui, kr));
      y = slice(irfft(concat({re, im}, 3), 1, 64), 1, 0, 32);
    }
    backward(sum(mul(y, constant(w))));
    return std::vector<Tensor>{y.value(), pu.grad(), pk.grad()};
  };
  const auto unfused = grads(nullptr);
  for (auto [name, conv] : kCausalForms) {
    SCOPED_TRACE(name);
    const auto fused = grads(conv);
    for (std::size_t i = 0; i < fused.size(); ++i) expect_close(fused[i], unfused[i], 1e-5f);
  }
}

TEST(CausalLongConv, GradientsFlowToWhicheverInputNeedsThemAndAdd) {
  for (auto [name, causal_fft_conv] : kCausalForms) {  // (shadows the op: each form in turn)
    SCOPED_TRACE(name);
    const Tensor u = rnd({2, 16, 3}, 22), k = rnd({16, 3}, 23), w = rnd({2, 16, 3}, 24);
    auto loss = [&](const Var& y) { return sum(mul(y, constant(w))); };
    Var pu = parameter(u), pk = parameter(k);
    backward(loss(causal_fft_conv(pu, pk)));
    const Tensor du = pu.grad().clone(), dk = pk.grad().clone();
    // Only u trains (a frozen filter), then only k (a constant input, as S4D's first layer sees).
    Var qu = parameter(u);
    backward(loss(causal_fft_conv(qu, constant(k))));
    expect_close(qu.grad(), du, 1e-6f);
    Var qk = parameter(k);
    backward(loss(causal_fft_conv(constant(u), qk)));
    expect_close(qk.grad(), dk, 1e-6f);
    // The same filter used twice: its gradients add.
    Var rk = parameter(k);
    backward(add(loss(causal_fft_conv(constant(u), rk)), loss(causal_fft_conv(constant(u), rk))));
    Tensor twice = dk.clone();
    for (std::int64_t i = 0; i < twice.numel(); ++i) twice.data()[i] *= 2.0f;
    expect_close(rk.grad(), twice, 1e-5f);
    // Without grad mode nothing is kept for a backward.
    {
      NoGradGuard no_grad;
      expect_close(causal_fft_conv(pu, pk).value(),
                   causal_fft_conv(constant(u), constant(k)).value(), 0.0f);
    }
  }
}

TEST(CausalLongConv, BitIdenticalAcrossThreadCounts) {
  for (auto [name, causal_fft_conv] : kCausalForms) {  // (shadows the op: each form in turn)
    SCOPED_TRACE(name);
    const Tensor u = rnd({16, 128, 24}, 20), k = rnd({128, 24}, 21);
    auto run = [&, causal_fft_conv](int threads) {
      ThreadBudget budget(threads);
      Var pu = parameter(u), pk = parameter(k);
      Var y = causal_fft_conv(pu, pk);
      backward(sum(mul(y, y)));
      std::vector<float> all = y.value().to_vector();
      for (const Tensor* g : {&pu.grad(), &pk.grad()}) {
        auto v = g->to_vector();
        all.insert(all.end(), v.begin(), v.end());
      }
      return all;
    };
    EXPECT_TRUE(run(1) == run(2));
    EXPECT_TRUE(run(2) == run(3));
  }
}

TEST(CausalLongConv, ErrorsNameTheShapes) {
  for (auto [name, conv] : kCausalForms) {
    expect_invalid(
        [conv] {
          conv(constant(Tensor::zeros({2, 3})), constant(Tensor::zeros({3, 1})));
        },
        std::string(name) + ": bad shape [2, 3] (u must be [batch, length, channels])");
    expect_invalid(
        [conv] {
          conv(constant(Tensor::zeros({2, 3, 4})), constant(Tensor::zeros({4, 4})));
        },
        std::string(name) +
            ": bad shape [4, 4] (k must be [taps, channels] with 1 <= taps <= length, "
            "for u [2, 3, 4])");
  }
}

// causal_long_conv runs exactly one of the two forms: the one HWNAS_CONV_ALGORITHM forces, else
// the cost model's (direct at the example spaces' lengths, FFT at long ones).
TEST(CausalLongConv, TakesTheFormTheSettingOrTheCostModelPicks) {
  const Tensor u = rnd({4, 96, 3}, 27), k = rnd({96, 3}, 28);
  const Tensor fft = causal_fft_conv(constant(u), constant(k)).value(),
               direct = causal_direct_conv(constant(u), constant(k)).value();
  const auto saved = detail::conv_algorithm();
  detail::set_conv_algorithm(detail::ConvAlgorithm::kSpectral);
  expect_close(causal_long_conv(constant(u), constant(k)).value(), fft, 0.0f);
  detail::set_conv_algorithm(detail::ConvAlgorithm::kDirect);
  expect_close(causal_long_conv(constant(u), constant(k)).value(), direct, 0.0f);
  detail::set_conv_algorithm(detail::ConvAlgorithm::kAuto);
  if (detail::gemm_isa() != detail::GemmIsa::kEigen) {
    EXPECT_TRUE(direct_long_conv_pays(64, 256, 64, 256));
    EXPECT_FALSE(direct_long_conv_pays(64, 8192, 64, 8192));
  } else {
    EXPECT_FALSE(direct_long_conv_pays(64, 256, 64, 256));  // (needs nn/gemm's own kernels)
  }
  detail::set_conv_algorithm(saved);
}

}  // namespace
}  // namespace hwnas::nn
