// The spectral (FFT) form of conv2d (nn/conv_spectral.hpp): forward values and all three
// gradients against the definition on random eligible shapes (rectangular kernels and maps,
// every padding up to k - 1, image counts that leave a partial transform chunk), finite
// differences, gradients added into existing ones, frozen operands, bit-identical results across
// thread counts and GEMM kernel families, and the cost model's choice on the shapes it was
// calibrated on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "nn/conv_spectral.hpp"
#include "nn/gemm.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "tests/nn/conv_reference.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {

using detail::ConvAlgorithm;
using detail::SpectralConvShape;
using testing::expect_close;
using testing::naive_conv2d;
using testing::naive_conv2d_grads;
using testing::random_tensor;

// Forces a formulation for one test and restores the previous one.
class AlgorithmScope {
 public:
  explicit AlgorithmScope(ConvAlgorithm a) : saved_(detail::conv_algorithm()) {
    detail::set_conv_algorithm(a);
  }
  ~AlgorithmScope() { detail::set_conv_algorithm(saved_); }
  AlgorithmScope(const AlgorithmScope&) = delete;
  AlgorithmScope& operator=(const AlgorithmScope&) = delete;

 private:
  ConvAlgorithm saved_;
};

void expect_grad(const Tensor& got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(static_cast<std::size_t>(got.numel()), want.size()) << what;
  for (std::size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got.data()[i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << what << " " << i;
}

TEST(SpectralConv, RandomShapesMatchTheDefinition) {
  AlgorithmScope spectral(ConvAlgorithm::kSpectral);
  std::mt19937_64 rng(4242);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int checked = 0;
  for (int it = 0; it < 300; ++it) {
    const int n = pick(1, 40), c = pick(1, 6), cout = pick(1, 6);
    const int h = pick(1, 16), w = pick(1, 16), kh = pick(2, 5), kw = pick(2, 5);
    const int pad = pick(0, std::min(kh, kw) - 1);
    if (kh > h + 2 * pad || kw > w + 2 * pad) continue;
    const SpectralConvShape s{n, c, h, w, cout, kh, kw, pad};
    if (!detail::spectral_conv_eligible(s)) continue;
    const bool bias = pick(0, 1) == 1;
    const Conv2dOptions o{1, pad, 1};
    const Tensor x = random_tensor(Shape{n, c, h, w}, rng);
    const Tensor wt = random_tensor(Shape{cout, c, kh, kw}, rng);
    const Tensor b = random_tensor(Shape{cout}, rng);
    const int ho = h + 2 * pad - kh + 1, wo = w + 2 * pad - kw + 1;
    const Tensor up = random_tensor(Shape{n, cout, ho, wo}, rng);
    SCOPED_TRACE("n " + std::to_string(n) + " c " + std::to_string(c) + " -> " +
                 std::to_string(cout) + " on " + std::to_string(h) + "x" + std::to_string(w) +
                 ", kernel " + std::to_string(kh) + "x" + std::to_string(kw) + ", padding " +
                 std::to_string(pad));
    Var xv = parameter(x), wv = parameter(wt), bv = parameter(b);
    Var y = conv2d(xv, wv, bias ? bv : Var(), o);
    expect_close(y.value(), naive_conv2d(x, wt, bias ? &b : nullptr, o), 1e-4f);
    backward(sum(mul(y, constant(up))));
    const testing::ConvGrads ref = naive_conv2d_grads(x, wt, bias, up, o);
    expect_grad(xv.grad(), ref.dx, "dx");
    expect_grad(wv.grad(), ref.dw, "dw");
    if (bias) expect_grad(bv.grad(), ref.db, "db");
    ++checked;
  }
  EXPECT_GT(checked, 200);
}

TEST(SpectralConv, GradientsMatchFiniteDifferences) {
  AlgorithmScope spectral(ConvAlgorithm::kSpectral);
  struct Case {
    int n, cin, h, w, cout, kh, kw, pad;
  };
  for (const Case& c :
       {Case{2, 3, 6, 5, 4, 3, 3, 1}, Case{3, 2, 7, 9, 3, 5, 3, 2}, Case{2, 2, 5, 5, 2, 4, 2, 0}}) {
    SCOPED_TRACE(std::to_string(c.kh) + "x" + std::to_string(c.kw));
    ASSERT_TRUE(detail::spectral_conv_eligible({c.n, c.cin, c.h, c.w, c.cout, c.kh, c.kw, c.pad}));
    std::mt19937_64 rng(17);
    std::vector<Tensor> in{random_tensor(Shape{c.n, c.cin, c.h, c.w}, rng),
                           random_tensor(Shape{c.cout, c.cin, c.kh, c.kw}, rng),
                           random_tensor(Shape{c.cout}, rng)};
    testing::expect_gradients_match(
        [&](const std::vector<Var>& v) {
          return conv2d(v[0], v[1], v[2], {1, c.pad, 1});
        },
        in);
  }
}

// Two spectral convolutions of the same x: the second one's input gradient is added to the
// first's, and a frozen weight or a constant input gets none.
TEST(SpectralConv, AddsIntoExistingGradientsAndSkipsFrozenOperands) {
  AlgorithmScope spectral(ConvAlgorithm::kSpectral);
  std::mt19937_64 rng(23);
  const Conv2dOptions o{1, 2, 1};
  const Tensor x = random_tensor(Shape{9, 4, 8, 8}, rng);
  const Tensor w1 = random_tensor(Shape{5, 4, 5, 5}, rng),
               w2 = random_tensor(Shape{5, 4, 5, 5}, rng);
  const Tensor u1 = random_tensor(Shape{9, 5, 8, 8}, rng),
               u2 = random_tensor(Shape{9, 5, 8, 8}, rng);
  Var xv = parameter(x), w1v = parameter(w1), w2v = constant(w2);
  backward(add(sum(mul(conv2d(xv, w1v, Var(), o), constant(u1))),
               sum(mul(conv2d(xv, w2v, Var(), o), constant(u2)))));
  const testing::ConvGrads r1 = naive_conv2d_grads(x, w1, false, u1, o),
                           r2 = naive_conv2d_grads(x, w2, false, u2, o);
  std::vector<double> dx(r1.dx.size());
  for (std::size_t i = 0; i < dx.size(); ++i) dx[i] = r1.dx[i] + r2.dx[i];
  expect_grad(xv.grad(), dx, "dx");
  expect_grad(w1v.grad(), r1.dw, "dw");
  EXPECT_TRUE(w2v.grad().empty());

  Var xc = constant(x), wv = parameter(w1);
  backward(sum(mul(conv2d(xc, wv, Var(), o), constant(u1))));
  expect_grad(wv.grad(), r1.dw, "dw with a constant input");
  EXPECT_TRUE(xc.grad().empty());
}

// A weight and bias used by two convolutions: the second backward adds its dW and db into the
// first's (grad_of's +=, not =).
TEST(SpectralConv, SharedWeightAndBiasGradientsAdd) {
  AlgorithmScope spectral(ConvAlgorithm::kSpectral);
  std::mt19937_64 rng(29);
  const Conv2dOptions o{1, 1, 1};
  const Tensor x1 = random_tensor(Shape{3, 4, 6, 7}, rng),
               x2 = random_tensor(Shape{3, 4, 6, 7}, rng);
  const Tensor w = random_tensor(Shape{5, 4, 3, 2}, rng), b = random_tensor(Shape{5}, rng);
  const Tensor u1 = random_tensor(Shape{3, 5, 6, 8}, rng),
               u2 = random_tensor(Shape{3, 5, 6, 8}, rng);
  Var wv = parameter(w), bv = parameter(b);
  backward(add(sum(mul(conv2d(constant(x1), wv, bv, o), constant(u1))),
               sum(mul(conv2d(constant(x2), wv, bv, o), constant(u2)))));
  const testing::ConvGrads r1 = naive_conv2d_grads(x1, w, true, u1, o),
                           r2 = naive_conv2d_grads(x2, w, true, u2, o);
  std::vector<double> dw(r1.dw.size()), db(r1.db.size());
  for (std::size_t i = 0; i < dw.size(); ++i) dw[i] = r1.dw[i] + r2.dw[i];
  for (std::size_t i = 0; i < db.size(); ++i) db[i] = r1.db[i] + r2.db[i];
  expect_grad(wv.grad(), dw, "dw");
  expect_grad(bv.grad(), db, "db");
}

std::vector<float> spectral_step(int threads) {
  ThreadBudget budget(threads);
  AlgorithmScope spectral(ConvAlgorithm::kSpectral);
  std::mt19937_64 rng(31);
  Var x = parameter(random_tensor(Shape{37, 12, 14, 14}, rng));
  Var w = parameter(random_tensor(Shape{16, 12, 5, 5}, rng));
  Var b = parameter(random_tensor(Shape{16}, rng));
  Var y = conv2d(x, w, b, {1, 2, 1});
  backward(sum(mul(y, y)));
  std::vector<float> all = y.value().to_vector();
  for (const Var* v : {&x, &w, &b}) {
    auto g = v->grad().to_vector();
    all.insert(all.end(), g.begin(), g.end());
  }
  return all;
}

TEST(SpectralConv, BitIdenticalAcrossRunsAndThreadCounts) {
  const auto a = spectral_step(2), b = spectral_step(2), c = spectral_step(1);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin()));
  EXPECT_TRUE(std::equal(a.begin(), a.end(), c.begin()));
}

// The numbers must not depend on the CPU either (README: a seed trains the same model on every
// machine of the build's ISA level): the per-frequency GEMMs share one summation order on AVX2
// and AVX-512, and FFTW runs its scalar codelets (nn/fftw.hpp), the same on every x86-64 CPU.
TEST(SpectralConv, BitIdenticalAcrossGemmKernelFamilies) {
  if (!detail::gemm_isa_supported(detail::GemmIsa::kAvx512))
    GTEST_SKIP() << "needs a CPU with AVX-512 (to run both kernels)";
  const detail::GemmIsa saved = detail::gemm_isa();
  detail::set_gemm_isa(detail::GemmIsa::kAvx512);
  const auto wide = spectral_step(2);
  detail::set_gemm_isa(detail::GemmIsa::kAvx2);
  const auto narrow = spectral_step(2);
  detail::set_gemm_isa(saved);
  ASSERT_EQ(wide.size(), narrow.size());
  EXPECT_TRUE(std::equal(wide.begin(), wide.end(), narrow.begin()));
}

// The cost model (calibrated in bench/README.md, stop 43) takes the spectral form where it needs
// a fraction of the work and leaves small-channel, 2x2 and large-map layers to the direct
// kernels; "direct" and "spectral" override it, the latter only where the form applies.
TEST(SpectralConv, CostModelChoosesBySize) {
  AlgorithmScope automatic(ConvAlgorithm::kAuto);
  EXPECT_TRUE(detail::spectral_conv_pays({64, 64, 14, 14, 64, 5, 5, 2}));
  EXPECT_TRUE(detail::spectral_conv_pays({64, 48, 7, 7, 48, 5, 5, 2}));
  EXPECT_FALSE(detail::spectral_conv_pays({64, 1, 28, 28, 16, 3, 3, 1}));       // one input channel
  EXPECT_FALSE(detail::spectral_conv_pays({64, 32, 28, 28, 32, 3, 3, 1}));      // grid past 20
  EXPECT_FALSE(detail::spectral_conv_pays({64, 16, 14, 14, 16, 3, 3, 3}));      // padding >= k
  EXPECT_FALSE(detail::spectral_conv_eligible({64, 16, 14, 14, 16, 1, 1, 0}));  // pointwise
  // Eligible and fewer operations, but w's spectra (2 bins / 25 = 11.5x w) would hold more than
  // twice the layer's tensors.
  EXPECT_TRUE(detail::spectral_conv_eligible({64, 512, 14, 14, 512, 5, 5, 2}));
  EXPECT_FALSE(detail::spectral_conv_pays({64, 512, 14, 14, 512, 5, 5, 2}));
  // Spectra past FFTW's int sizes are never eligible, even when forced.
  EXPECT_FALSE(detail::spectral_conv_eligible({1 << 20, 4096, 8, 8, 8, 3, 3, 1}));
  {
    AlgorithmScope direct(ConvAlgorithm::kDirect);
    EXPECT_FALSE(detail::spectral_conv_pays({64, 64, 14, 14, 64, 5, 5, 2}));
  }
  AlgorithmScope spectral(ConvAlgorithm::kSpectral);
  EXPECT_TRUE(detail::spectral_conv_pays({64, 1, 14, 14, 16, 3, 3, 1}));
  EXPECT_FALSE(detail::spectral_conv_pays({64, 32, 28, 28, 32, 3, 3, 1}));
}

TEST(SpectralConv, UnknownAlgorithmNameIsRejected) {
  testing::expect_invalid(
      [] { detail::parse_conv_algorithm("fft"); },
      "HWNAS_CONV_ALGORITHM: unknown value 'fft' (use auto, direct or spectral");
  EXPECT_EQ(detail::parse_conv_algorithm("spectral"), ConvAlgorithm::kSpectral);
  EXPECT_EQ(detail::parse_conv_algorithm("direct"), ConvAlgorithm::kDirect);
  EXPECT_EQ(detail::parse_conv_algorithm("auto"), ConvAlgorithm::kAuto);
}

}  // namespace
}  // namespace hwnas::nn
