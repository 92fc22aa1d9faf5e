// multi_head_attention and sliding_window_attention: forward values against a naive masked
// reference written here, finite-difference gradients (causal / non-causal, several windows,
// several query tiles), equality of the sliding window with full attention once window >= L,
// determinism, and one test per rejected input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {

using testing::expect_gradients_match;
using testing::random_tensor;

// Naive attention: query i sees key j iff allowed(i, j).  window <= 0 means no window.
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal,
                       int window) {
  const int B = q.dim(0), Lq = q.dim(1), Lk = k.dim(1), D = q.dim(2), dh = D / heads;
  Tensor out = Tensor::zeros(Shape{B, Lq, D});
  std::vector<double> s(static_cast<std::size_t>(Lk));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < Lq; ++i) {
        double mx = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < Lk; ++j) {
          bool ok = !(causal && j > i) && !(window > 0 && std::abs(i - j) >= window);
          double d = -std::numeric_limits<double>::infinity();
          if (ok) {
            d = 0;
            for (int c = 0; c < dh; ++c)
              d += static_cast<double>(q.data()[(b * Lq + i) * D + h * dh + c]) *
                   k.data()[(b * Lk + j) * D + h * dh + c];
            d /= std::sqrt(static_cast<double>(dh));
          }
          s[static_cast<std::size_t>(j)] = d;
          mx = std::max(mx, d);
        }
        double z = 0;
        for (double& d : s) z += (d = std::exp(d - mx));
        for (int c = 0; c < dh; ++c) {
          double acc = 0;
          for (int j = 0; j < Lk; ++j)
            acc += s[static_cast<std::size_t>(j)] / z * v.data()[(b * Lk + j) * D + h * dh + c];
          out.data()[(b * Lq + i) * D + h * dh + c] = static_cast<float>(acc);
        }
      }
  return out;
}

// This file's default tolerance for value comparisons.
void expect_close(const Tensor& a, const Tensor& b, float tol = 1e-5f) {
  testing::expect_close(a, b, tol);
}
using testing::expect_invalid;

struct Qkv {
  Tensor q, k, v;
};
Qkv random_qkv(int b, int lq, int lk, int d, std::uint64_t seed, float range = 1.0f) {
  std::mt19937_64 rng(seed);
  return {random_tensor(Shape{b, lq, d}, rng, -range, range),
          random_tensor(Shape{b, lk, d}, rng, -range, range),
          random_tensor(Shape{b, lk, d}, rng, -range, range)};
}

// ---- multi_head_attention ----

TEST(MultiHeadAttention, ForwardMatchesNaive) {
  for (bool causal : {false, true})
    for (int heads : {1, 2, 4}) {
      Qkv t = random_qkv(2, 9, 9, 8, 100 + heads, 2.0f);
      Var y = multi_head_attention(constant(t.q), constant(t.k), constant(t.v), heads, causal);
      expect_close(y.value(), naive_attention(t.q, t.k, t.v, heads, causal, 0));
    }
}

TEST(MultiHeadAttention, CrossAttentionWithDifferentLengths) {
  Qkv t = random_qkv(2, 5, 7, 6, 3);
  Var y = multi_head_attention(constant(t.q), constant(t.k), constant(t.v), 3, false);
  expect_close(y.value(), naive_attention(t.q, t.k, t.v, 3, false, 0));
  expect_gradients_match(
      [](const std::vector<Var>& x) { return multi_head_attention(x[0], x[1], x[2], 3, false); },
      {t.q, t.k, t.v});
}

TEST(MultiHeadAttention, GradientsNonCausal) {
  Qkv t = random_qkv(2, 6, 6, 8, 4);
  expect_gradients_match(
      [](const std::vector<Var>& x) { return multi_head_attention(x[0], x[1], x[2], 2, false); },
      {t.q, t.k, t.v});
}

TEST(MultiHeadAttention, GradientsCausal) {
  Qkv t = random_qkv(2, 6, 6, 8, 5);
  expect_gradients_match(
      [](const std::vector<Var>& x) { return multi_head_attention(x[0], x[1], x[2], 4, true); },
      {t.q, t.k, t.v});
}

TEST(MultiHeadAttention, GradientsWhenQKVAreOneVar) {  // gradients from three roles accumulate
  Qkv t = random_qkv(2, 5, 5, 4, 6);
  for (bool causal : {false, true})
    expect_gradients_match(
        [causal](const std::vector<Var>& x) {
          return multi_head_attention(x[0], x[0], x[0], 2, causal);
        },
        {t.q});
}

TEST(MultiHeadAttention, LargeBatchMatchesNaiveAndIsDeterministic) {  // parallel path
  Qkv t = random_qkv(8, 32, 32, 16, 7);
  auto run = [&](int threads) {
    ThreadBudget budget(threads);
    Var q = parameter(t.q), k = parameter(t.k), v = parameter(t.v);
    Var y = multi_head_attention(q, k, v, 4, true);
    backward(sum(mul(y, y)));
    std::vector<float> all = y.value().to_vector();
    for (const Var* p : {&q, &k, &v}) {
      auto g = p->grad().to_vector();
      all.insert(all.end(), g.begin(), g.end());
    }
    return all;
  };
  const auto a = run(2), b = run(2), c = run(1);
  EXPECT_TRUE(a == b);
  EXPECT_TRUE(a == c);
  Var y = multi_head_attention(constant(t.q), constant(t.k), constant(t.v), 4, true);
  expect_close(y.value(), naive_attention(t.q, t.k, t.v, 4, true, 0));
}

// Pairs of >= 64k multiply-adds (here L = 64, d_head 16) run their products through nn's GEMM
// kernels, smaller ones through Eigen: the kernel path against the naive sum, and its gradients
// against the same attention computed as two query halves (32 x 64 pairs: the Eigen path).
TEST(MultiHeadAttention, KernelPathMatchesNaiveAndTheSmallPairPath) {
  Qkv t = random_qkv(2, 64, 64, 64, 11);
  std::mt19937_64 rng(12);
  const Tensor w = random_tensor(Shape{2, 64, 64}, rng);
  for (bool causal : {false, true}) {
    Var y = multi_head_attention(constant(t.q), constant(t.k), constant(t.v), 4, causal);
    expect_close(y.value(), naive_attention(t.q, t.k, t.v, 4, causal, 0));
  }
  auto grads = [&](bool halves) {
    Var q = parameter(t.q), k = parameter(t.k), v = parameter(t.v);
    Var y = halves ? concat({multi_head_attention(slice(q, 1, 0, 32), k, v, 4, false),
                             multi_head_attention(slice(q, 1, 32, 64), k, v, 4, false)},
                            1)
                   : multi_head_attention(q, k, v, 4, false);
    backward(sum(mul(y, constant(w))));
    return std::vector<Tensor>{y.value(), q.grad(), k.grad(), v.grad()};
  };
  const auto whole = grads(false), halves = grads(true);
  for (std::size_t i = 0; i < whole.size(); ++i) expect_close(whole[i], halves[i], 1e-4f);
}

// The fused-QKV op on the kernel path against split q, k, v through multi_head_attention, and a
// second backward into the same parameter (the fused op then adds to an existing gradient).
TEST(FusedQkvAttention, KernelPathMatchesSplitAttentionAndAddsGradients) {
  std::mt19937_64 rng(13);
  const Tensor x = random_tensor(Shape{2, 64, 192}, rng), w = random_tensor(Shape{2, 64, 64}, rng);
  for (bool causal : {false, true}) {
    auto run = [&](bool fused, int passes) {
      Var p = parameter(x);
      for (int i = 0; i < passes; ++i) {
        Var y = fused ? detail::fused_qkv_attention(p, 4, causal)
                      : multi_head_attention(slice(p, 2, 0, 64), slice(p, 2, 64, 128),
                                             slice(p, 2, 128, 192), 4, causal);
        backward(sum(mul(y, constant(w))));
      }
      return p.grad().clone();
    };
    const Tensor once = run(true, 1);
    expect_close(once, run(false, 1), 1e-4f);
    Tensor twice = once.clone();
    for (std::int64_t i = 0; i < twice.numel(); ++i) twice.data()[i] *= 2.0f;
    expect_close(run(true, 2), twice, 1e-5f);
  }
}

TEST(MultiHeadAttention, RejectsBadInputs) {
  auto x = constant(Tensor::zeros(Shape{2, 5, 8}));
  expect_invalid(
      [&] {
        multi_head_attention(constant(Tensor::zeros(Shape{5, 8})), x, x, 2, false);
      },
      "multi_head_attention: q, k, v must be [B, L, d_model] (q [5, 8], k [2, 5, 8], v [2, 5, 8])");
  expect_invalid(
      [&] {
        multi_head_attention(x, x, constant(Tensor::zeros(Shape{2, 4, 8})), 2, false);
      },
      "multi_head_attention: k and v shapes differ");
  expect_invalid(
      [&] {
        multi_head_attention(x, constant(Tensor::zeros(Shape{3, 5, 8})),
                             constant(Tensor::zeros(Shape{3, 5, 8})), 2, false);
      },
      "multi_head_attention: q and k must share batch and d_model");
  expect_invalid([&] { multi_head_attention(x, x, x, 0, false); },
                 "multi_head_attention: heads must be >= 1, got 0");
  expect_invalid([&] { multi_head_attention(x, x, x, 3, false); },
                 "multi_head_attention: d_model 8 not divisible by heads 3");
  auto kv = constant(Tensor::zeros(Shape{2, 4, 8}));
  expect_invalid([&] { multi_head_attention(x, kv, kv, 2, true); },
                 "multi_head_attention: causal attention needs equal query and key lengths");
}

// ---- sliding_window_attention ----

TEST(SlidingWindowAttention, EqualsFullAttentionWhenWindowCoversSequence) {
  for (bool causal : {false, true})
    for (int window : {7, 8, 100}) {  // L = 7
      Qkv t = random_qkv(2, 7, 7, 8, 30 + window);
      Var q = parameter(t.q), k = parameter(t.k), v = parameter(t.v);
      Var q2 = parameter(t.q), k2 = parameter(t.k), v2 = parameter(t.v);
      Var a = sliding_window_attention(q, k, v, 2, window, causal);
      Var b = multi_head_attention(q2, k2, v2, 2, causal);
      expect_close(a.value(), b.value());
      backward(sum(mul(a, a)));
      backward(sum(mul(b, b)));
      expect_close(q.grad(), q2.grad());
      expect_close(k.grad(), k2.grad());
      expect_close(v.grad(), v2.grad());
    }
}

TEST(SlidingWindowAttention, ForwardMatchesMaskedNaive) {
  // Lengths and windows chosen to give one tile, several tiles, and ragged last tiles.
  for (bool causal : {false, true})
    for (int L : {5, 20, 150})
      for (int window : {1, 2, 3, 17, 40}) {
        Qkv t = random_qkv(2, L, L, 8, static_cast<std::uint64_t>(L * 100 + window), 2.0f);
        Var y = sliding_window_attention(constant(t.q), constant(t.k), constant(t.v), 2, window,
                                         causal);
        SCOPED_TRACE("L=" + std::to_string(L) + " window=" + std::to_string(window) +
                     " causal=" + std::to_string(causal));
        expect_close(y.value(), naive_attention(t.q, t.k, t.v, 2, causal, window));
      }
}

struct WindowCase {
  const char* name;
  int l, window;
  bool causal;
};
const WindowCase kWindowCases[] = {
    {"w1", 6, 1, false},        {"w1_causal", 6, 1, true},
    {"w2_tiles", 20, 2, false}, {"w2_tiles_causal", 20, 2, true},
    {"w3", 9, 3, false},        {"w5_causal", 12, 5, true},
};

class SlidingWindowGradTest : public ::testing::TestWithParam<WindowCase> {};

TEST_P(SlidingWindowGradTest, GradientsMatchFiniteDifferences) {
  const WindowCase& c = GetParam();
  Qkv t = random_qkv(2, c.l, c.l, 4, static_cast<std::uint64_t>(c.l + c.window));
  expect_gradients_match(
      [&](const std::vector<Var>& x) {
        return sliding_window_attention(x[0], x[1], x[2], 2, c.window, c.causal);
      },
      {t.q, t.k, t.v}, {.max_elements_per_input = 160});
}

INSTANTIATE_TEST_SUITE_P(Cases, SlidingWindowGradTest, ::testing::ValuesIn(kWindowCases),
                         [](const ::testing::TestParamInfo<WindowCase>& i) {
                           return std::string(i.param.name);
                         });

TEST(SlidingWindowAttention, GradientsMatchMaskedFullAttentionOnManyTiles) {
  // Gradients across many tiles against full attention on a sequence no longer than the window.
  Qkv t = random_qkv(1, 70, 70, 8, 77);
  Var q = parameter(t.q), k = parameter(t.k), v = parameter(t.v);
  Var q2 = parameter(t.q), k2 = parameter(t.k), v2 = parameter(t.v);
  backward(sum(mul(sliding_window_attention(q, k, v, 2, 70, true), constant(t.v))));
  backward(sum(mul(multi_head_attention(q2, k2, v2, 2, true), constant(t.v))));
  expect_close(q.grad(), q2.grad(), 1e-4f);
  expect_close(k.grad(), k2.grad(), 1e-4f);
  expect_close(v.grad(), v2.grad(), 1e-4f);
}

TEST(SlidingWindowAttention, LongSequenceNeverMaterialisesScores) {
  // L x L scores would be 16 GiB here; the band is L * (2w - 1) floats, so this runs in
  // milliseconds with a few MiB.
  const int L = 1 << 16;
  Qkv t = random_qkv(1, L, L, 8, 8);
  Var q = parameter(t.q), k = parameter(t.k), v = parameter(t.v);
  Var y = sliding_window_attention(q, k, v, 2, 4, false);
  backward(sum(y));
  // Spot-check one row against the window definition.
  Tensor qs(Shape{1, 9, 8}), ks(Shape{1, 9, 8}), vs(Shape{1, 9, 8});
  const int i0 = L / 2 - 4;
  std::copy(t.q.data() + i0 * 8, t.q.data() + (i0 + 9) * 8, qs.data());
  std::copy(t.k.data() + i0 * 8, t.k.data() + (i0 + 9) * 8, ks.data());
  std::copy(t.v.data() + i0 * 8, t.v.data() + (i0 + 9) * 8, vs.data());
  Tensor ref = naive_attention(qs, ks, vs, 2, false, 4);  // row 4 sees the full window
  for (int c = 0; c < 8; ++c)
    EXPECT_NEAR(y.value().data()[(L / 2) * 8 + c], ref.data()[4 * 8 + c], 1e-5);
  EXPECT_EQ(k.grad().numel(), static_cast<std::int64_t>(L) * 8);
}

TEST(SlidingWindowAttention, DeterministicAcrossThreadCounts) {
  Qkv t = random_qkv(8, 64, 64, 16, 9);
  auto run = [&](int threads) {
    ThreadBudget budget(threads);
    Var q = parameter(t.q), k = parameter(t.k), v = parameter(t.v);
    Var y = sliding_window_attention(q, k, v, 4, 5, false);
    backward(sum(mul(y, y)));
    std::vector<float> all = y.value().to_vector();
    for (const Var* p : {&q, &k, &v}) {
      auto g = p->grad().to_vector();
      all.insert(all.end(), g.begin(), g.end());
    }
    return all;
  };
  const auto a = run(2), b = run(2), c = run(1);
  EXPECT_TRUE(a == b);
  EXPECT_TRUE(a == c);
}

TEST(SlidingWindowAttention, RejectsBadInputs) {
  auto x = constant(Tensor::zeros(Shape{2, 5, 8}));
  expect_invalid([&] { sliding_window_attention(x, x, x, 2, 0, false); },
                 "sliding_window_attention: window must be >= 1, got 0");
  auto kv = constant(Tensor::zeros(Shape{2, 6, 8}));
  expect_invalid(
      [&] { sliding_window_attention(x, kv, kv, 2, 2, false); },
      "sliding_window_attention: q and k must have the same shape (q [2, 5, 8], k [2, 6, 8])");
  expect_invalid([&] { sliding_window_attention(x, x, x, 3, 2, false); },
                 "sliding_window_attention: d_model 8 not divisible by heads 3");
  expect_invalid(
      [&] {
        sliding_window_attention(x, x, constant(Tensor::zeros(Shape{2, 5, 4})), 2, 2, false);
      },
      "sliding_window_attention: k and v shapes differ");
}

}  // namespace
}  // namespace hwnas::nn
