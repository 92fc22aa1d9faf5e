// conv2d, max/avg pooling and global average pooling: forward values against naive loops written
// here, finite-difference gradients for every option combination that changes the code path
// (im2col, 1x1 pointwise, grouped, depthwise direct kernel; stride, padding, bias), bit-identical
// results across runs and thread counts, and one test per rejected input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <string>

#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "tests/nn/conv_reference.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {

using testing::ConvGrads;
using testing::expect_gradients_match;
using testing::naive_conv2d;
using testing::naive_conv2d_grads;
using testing::random_tensor;

// ---- naive references ----

Tensor naive_pool(const Tensor& x, int k, int s, int p, bool is_max) {
  const int N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
  Tensor y(Shape{N, C, Ho, Wo});
  for (int nc = 0; nc < N * C; ++nc)
    for (int oh = 0; oh < Ho; ++oh)
      for (int ow = 0; ow < Wo; ++ow) {
        double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
        int count = 0;
        for (int i = 0; i < k; ++i)
          for (int j = 0; j < k; ++j) {
            const int ih = oh * s - p + i, iw = ow * s - p + j;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            const double v = x.data()[(nc * H + ih) * W + iw];
            acc = is_max ? std::max(acc, v) : acc + v;
            ++count;
          }
        y.data()[(nc * Ho + oh) * Wo + ow] = static_cast<float>(is_max ? acc : acc / count);
      }
  return y;
}

// This file's default tolerance for value comparisons.
void expect_close(const Tensor& a, const Tensor& b, float tol = 1e-4f) {
  testing::expect_close(a, b, tol);
}
using testing::expect_invalid;

// Distinct values spaced 0.1 apart in random order: no ties, and every gap exceeds the
// finite-difference step (at most 1e-2 * 5 here), so max-pool's argmax never flips.
Tensor distinct_tensor(const Shape& s, std::mt19937_64& rng) {
  Tensor t(s);
  std::vector<int> order(static_cast<std::size_t>(t.numel()));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const float mid = 0.5f * static_cast<float>(t.numel());
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] = 0.1f * (static_cast<float>(order[i]) - mid);
  return t;
}

// ---- conv2d ----

struct ConvCase {
  const char* name;
  int n, cin, h, w, cout, kh, kw;
  Conv2dOptions opt;
  bool bias;
};

const ConvCase kConvCases[] = {
    {"plain", 2, 3, 6, 5, 4, 3, 3, {1, 0, 1}, true},
    {"no_bias", 2, 3, 6, 5, 4, 3, 3, {1, 0, 1}, false},
    {"stride2", 2, 2, 7, 7, 3, 3, 3, {2, 0, 1}, true},
    {"padding", 2, 2, 5, 6, 3, 3, 3, {1, 1, 1}, true},
    {"stride2_pad1", 2, 2, 7, 6, 3, 3, 2, {2, 1, 1}, false},
    {"groups2", 2, 4, 5, 5, 6, 3, 3, {1, 1, 2}, true},
    {"groups2_stride2", 2, 4, 6, 6, 4, 2, 3, {2, 1, 2}, false},
    {"pointwise", 2, 3, 4, 5, 5, 1, 1, {1, 0, 1}, true},
    {"pointwise_groups", 2, 4, 3, 3, 2, 1, 1, {1, 0, 2}, false},
    {"depthwise", 2, 3, 6, 6, 3, 3, 3, {1, 1, 3}, true},
    {"depthwise_stride2", 2, 3, 7, 6, 3, 3, 3, {2, 1, 3}, false},
    {"depthwise_big_pad", 2, 2, 4, 4, 2, 5, 3, {1, 2, 2}, true},
    {"depthwise_multiplier", 2, 2, 5, 5, 4, 3, 3, {1, 1, 2}, true},  // groups == Cin < Cout: im2col
                                                                     // path
    {"depthwise_nopad", 2, 3, 5, 6, 3, 3, 2, {1, 0, 3}, true},
    // Rows wider than one 16-float vector (full-vector + masked-tail row copies).
    {"wide_rows", 1, 2, 4, 21, 2, 3, 3, {1, 1, 1}, true},
    {"depthwise_wide_rows", 1, 2, 4, 19, 2, 3, 3, {1, 1, 2}, false},
    // Stride-1 input gradients run as the transposed convolution of dY (5x5 "same", as the cnn
    // space's), except for non-square kernels and padding beyond k - 1 (im2col / col2im).
    {"k5_same", 2, 3, 7, 7, 4, 5, 5, {1, 2, 1}, true},
    // stride 2 on the phase grid (16+ taps, few dropped columns): odd and even sizes, an even
    // kernel, groups; and ones that keep im2col (few taps, or a small map)
    {"k5_stride2_same", 2, 3, 14, 15, 4, 5, 5, {2, 2, 1}, true},
    {"k4_stride2", 2, 2, 9, 8, 3, 4, 4, {2, 1, 1}, false},
    {"k5_stride2_groups", 1, 4, 12, 12, 4, 5, 5, {2, 2, 2}, true},
    {"k5_stride2_small_map", 2, 2, 8, 9, 3, 5, 5, {2, 2, 1}, true},
    {"k2x3_stride2", 2, 2, 6, 7, 3, 2, 3, {2, 0, 1}, true},
    {"rect_kernel_stride1", 2, 2, 5, 6, 3, 3, 2, {1, 1, 1}, true},
    {"pad_beyond_kernel", 2, 2, 3, 4, 3, 2, 2, {1, 2, 1}, false},
    // Outputs wider than 32 keep the grid and im2col paths (narrower ones run batch-minor):
    // stride-1 grid with the transposed input gradient, stride-2 phase grid (forward and weight
    // gradient), and a 3x3 stride-2 convolution through im2col.
    {"grid_k5_same_wide", 1, 2, 5, 34, 3, 5, 5, {1, 2, 1}, true},
    {"phase_grid_k5_stride2_wide", 1, 2, 7, 66, 3, 5, 5, {2, 2, 1}, false},
    {"im2col_k3_stride2_wide", 1, 2, 6, 66, 3, 3, 3, {2, 1, 1}, true},
    // Depthwise outputs wider than 32 keep the plane kernels (narrower ones run batch-minor):
    // stride 1 on the padded-width grid, stride 2 by strided rows.
    {"depthwise_stride3_rect", 2, 3, 10, 9, 3, 2, 3, {3, 1, 3}, true},
    {"depthwise_plane_wide", 2, 2, 4, 35, 2, 3, 3, {1, 1, 2}, true},
    {"depthwise_plane_stride2_wide", 1, 3, 5, 70, 3, 5, 5, {2, 2, 3}, false},
};

class Conv2dTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv2dTest, ForwardMatchesNaive) {
  const ConvCase& c = GetParam();
  std::mt19937_64 rng(7);
  Tensor x = random_tensor(Shape{c.n, c.cin, c.h, c.w}, rng);
  Tensor w = random_tensor(Shape{c.cout, c.cin / c.opt.groups, c.kh, c.kw}, rng);
  Tensor b = random_tensor(Shape{c.cout}, rng);
  Var y = conv2d(constant(x), constant(w), c.bias ? constant(b) : Var(), c.opt);
  expect_close(y.value(), naive_conv2d(x, w, c.bias ? &b : nullptr, c.opt));
}

TEST_P(Conv2dTest, GradientsMatchFiniteDifferences) {
  const ConvCase& c = GetParam();
  std::mt19937_64 rng(11);
  std::vector<Tensor> in{random_tensor(Shape{c.n, c.cin, c.h, c.w}, rng),
                         random_tensor(Shape{c.cout, c.cin / c.opt.groups, c.kh, c.kw}, rng)};
  if (c.bias) in.push_back(random_tensor(Shape{c.cout}, rng));
  expect_gradients_match(
      [&](const std::vector<Var>& v) { return conv2d(v[0], v[1], c.bias ? v[2] : Var(), c.opt); },
      in);
}

INSTANTIATE_TEST_SUITE_P(Cases, Conv2dTest, ::testing::ValuesIn(kConvCases),
                         [](const ::testing::TestParamInfo<ConvCase>& i) {
                           return std::string(i.param.name);
                         });

TEST(Conv2d, InputWithoutGradientStillGivesWeightGradients) {
  std::mt19937_64 rng(3);
  Var x = constant(random_tensor(Shape{2, 1, 5, 5}, rng));
  Var w = parameter(random_tensor(Shape{2, 1, 3, 3}, rng));
  Var b = parameter(random_tensor(Shape{2}, rng));
  backward(sum(conv2d(x, w, b, {1, 1, 1})));
  EXPECT_FALSE(w.grad().empty());
  // d sum / d b = number of output pixels per sample times the batch.
  EXPECT_FLOAT_EQ(b.grad().data()[0], 2 * 25);
}

// Batches of 9 or more samples run im2col/GEMM over several samples at once (one matrix with
// S*Ho*Wo columns), with a ragged last batch; checked against the naive convolution and finite
// differences for padded, strided, grouped and pointwise shapes.
TEST(Conv2d, BatchedSamplesMatchNaiveAndGradients) {
  const ConvCase cases[] = {
      {"padding", 11, 2, 5, 6, 3, 3, 3, {1, 1, 1}, true},
      {"stride2_pad1", 9, 2, 7, 6, 3, 3, 2, {2, 1, 1}, false},
      {"groups2", 10, 4, 5, 5, 6, 3, 3, {1, 1, 2}, true},
      {"pointwise", 13, 3, 4, 5, 5, 1, 1, {1, 0, 1}, true},
      {"pointwise_groups", 9, 4, 3, 3, 2, 1, 1, {1, 0, 2}, false},
      // 2x2 / 1x3 outputs: im2col's 8-wide row copies overrun several output rows and sample
      // blocks, which later copies must overwrite before the GEMM reads them.
      {"tiny_output", 12, 3, 4, 4, 5, 3, 3, {1, 0, 1}, true},
      {"tiny_output_padded", 10, 2, 1, 3, 4, 3, 3, {1, 1, 1}, false},
      // Batch-minor sub-batches of 8-9 samples: the strided input gradient by columns (5x5, 3x3)
      // and by im2col (1x1), the transposed one with groups, a non-square kernel (by columns),
      // wider rows.
      {"minor_k5_stride2", 17, 3, 9, 10, 4, 5, 5, {2, 2, 1}, true},
      {"minor_k3_stride2", 18, 2, 8, 8, 3, 3, 3, {2, 1, 1}, false},
      {"minor_k1_stride2", 17, 3, 8, 9, 4, 1, 1, {2, 0, 1}, true},
      {"minor_k5_same_groups", 17, 4, 7, 7, 4, 5, 5, {1, 2, 2}, true},
      {"minor_rect_kernel", 17, 2, 6, 5, 3, 3, 2, {1, 2, 1}, false},
      // rows of 12: 8x8 register transposes in and out, with a scalar edge
      {"minor_k3_same_wide_rows", 17, 2, 9, 12, 3, 3, 3, {1, 1, 1}, true},
      // more than 32 output channels: the weight gradient as packed GEMMs, not dot products
      {"minor_many_channels", 9, 2, 5, 5, 36, 3, 3, {1, 1, 1}, true},
  };
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::mt19937_64 rng(17);
    std::vector<Tensor> in{random_tensor(Shape{c.n, c.cin, c.h, c.w}, rng),
                           random_tensor(Shape{c.cout, c.cin / c.opt.groups, c.kh, c.kw}, rng)};
    if (c.bias) in.push_back(random_tensor(Shape{c.cout}, rng));
    expect_close(
        conv2d(constant(in[0]), constant(in[1]), c.bias ? constant(in[2]) : Var(), c.opt).value(),
        naive_conv2d(in[0], in[1], c.bias ? &in[2] : nullptr, c.opt));
    expect_gradients_match(
        [&](const std::vector<Var>& v) { return conv2d(v[0], v[1], c.bias ? v[2] : Var(), c.opt); },
        in);
  }
}

// A batch whose chunks hold a full batch-minor sub-batch (16 samples) and a ragged one (n = 150:
// chunks of 18-19 samples): outputs match the naive convolution, each sample's input gradient
// and the weight gradient match those of the samples run one at a time.
TEST(Conv2d, BatchMinorSubBatchesMatchSamplesAlone) {
  std::mt19937_64 rng(23);
  const Conv2dOptions opt{2, 2, 1};
  const int n = 150, cin = 3, h = 9, cout = 4;
  const Tensor x = random_tensor(Shape{n, cin, h, h}, rng);
  const Tensor w = random_tensor(Shape{cout, cin, 5, 5}, rng);
  const Tensor up = random_tensor(Shape{n, cout, 5, 5}, rng);
  Var xv = parameter(x), wv = parameter(w);
  Var y = conv2d(xv, wv, Var(), opt);
  expect_close(y.value(), naive_conv2d(x, w, nullptr, opt));
  backward(sum(mul(y, constant(up))));
  const std::int64_t in_per = static_cast<std::int64_t>(cin) * h * h, out_per = cout * 25;
  std::vector<float> dw_sum(static_cast<std::size_t>(w.numel()), 0.0f);
  for (int s = 0; s < n; ++s) {
    const std::vector<float> xs(x.data() + s * in_per, x.data() + (s + 1) * in_per);
    const std::vector<float> us(up.data() + s * out_per, up.data() + (s + 1) * out_per);
    Var xs_v = parameter(Tensor::from(Shape{1, cin, h, h}, xs)), ws_v = parameter(w);
    backward(
        sum(mul(conv2d(xs_v, ws_v, Var(), opt), constant(Tensor::from(Shape{1, cout, 5, 5}, us)))));
    for (std::int64_t i = 0; i < in_per; ++i)
      ASSERT_NEAR(xv.grad().data()[s * in_per + i], xs_v.grad().data()[i], 1e-4f) << "sample " << s;
    for (std::int64_t i = 0; i < w.numel(); ++i)
      dw_sum[static_cast<std::size_t>(i)] += ws_v.grad().data()[i];
  }
  for (std::int64_t i = 0; i < w.numel(); ++i)
    EXPECT_NEAR(wv.grad().data()[i], dw_sum[static_cast<std::size_t>(i)], 1e-3f) << "weight " << i;
}

// Batch-minor depthwise runs 16 samples per lane group: a ragged batch (two full groups and 5)
// gives each sample the result it gets alone, for strides 1 and 2, 3x3 and 5x5, with a bias.
TEST(Conv2d, DepthwiseSubBatchesMatchSamplesAlone) {
  std::mt19937_64 rng(29);
  const int n = 37, c = 3, h = 9;
  for (const auto& [k, stride] : {std::pair{3, 2}, std::pair{5, 1}, std::pair{5, 2}}) {
    const Conv2dOptions opt{stride, (k - 1) / 2, c};
    const int ho = (h + 2 * opt.padding - k) / stride + 1;
    const Tensor x = random_tensor(Shape{n, c, h, h}, rng);
    const Tensor w = random_tensor(Shape{c, 1, k, k}, rng);
    const Tensor b = random_tensor(Shape{c}, rng);
    const Tensor up = random_tensor(Shape{n, c, ho, ho}, rng);
    Var xv = parameter(x), wv = parameter(w), bv = parameter(b);
    Var y = conv2d(xv, wv, bv, opt);
    expect_close(y.value(), naive_conv2d(x, w, &b, opt));
    backward(sum(mul(y, constant(up))));
    const std::int64_t in_per = static_cast<std::int64_t>(c) * h * h,
                       out_per = static_cast<std::int64_t>(c) * ho * ho;
    std::vector<float> dw_sum(static_cast<std::size_t>(w.numel()), 0.0f), db_sum(c, 0.0f);
    for (int s = 0; s < n; ++s) {
      const std::vector<float> xs(x.data() + s * in_per, x.data() + (s + 1) * in_per);
      const std::vector<float> us(up.data() + s * out_per, up.data() + (s + 1) * out_per);
      Var xs_v = parameter(Tensor::from(Shape{1, c, h, h}, xs)), ws_v = parameter(w),
          bs_v = parameter(b);
      backward(
          sum(mul(conv2d(xs_v, ws_v, bs_v, opt), constant(Tensor::from(Shape{1, c, ho, ho}, us)))));
      for (std::int64_t i = 0; i < in_per; ++i)
        ASSERT_NEAR(xv.grad().data()[s * in_per + i], xs_v.grad().data()[i], 1e-4f)
            << "k " << k << " stride " << stride << " sample " << s;
      for (std::int64_t i = 0; i < w.numel(); ++i)
        dw_sum[static_cast<std::size_t>(i)] += ws_v.grad().data()[i];
      for (int i = 0; i < c; ++i) db_sum[static_cast<std::size_t>(i)] += bs_v.grad().data()[i];
    }
    for (std::int64_t i = 0; i < w.numel(); ++i)
      EXPECT_NEAR(wv.grad().data()[i], dw_sum[static_cast<std::size_t>(i)], 1e-3f)
          << "k " << k << " stride " << stride << " weight " << i;
    for (int i = 0; i < c; ++i)
      EXPECT_NEAR(bv.grad().data()[i], db_sum[static_cast<std::size_t>(i)], 1e-3f) << "bias " << i;
  }
}

// Random geometries through every path (depthwise any stride, pointwise, dense and grouped, one
// input channel per group with several outputs, strides 1-3, rectangular kernels, padding up to
// the kernel, ragged batches): the forward pass against the naive convolution and all three
// gradients against their definition.
TEST(Conv2d, RandomShapesMatchTheDefinition) {
  std::mt19937_64 rng(98765);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int checked = 0;
  for (int it = 0; it < 600; ++it) {
    // depthwise, pointwise, dense, grouped, depthwise with a channel multiplier
    const int kind = pick(0, 4);
    const int n = pick(1, 40), c = kind == 0 || kind == 4 ? pick(2, 6)
                                   : kind == 3            ? 2 * pick(1, 3)
                                                          : pick(1, 5);
    const int h = pick(1, 18), w = pick(1, 18);
    const int kh = kind == 1 ? 1 : pick(1, 5), kw = kind == 1 ? 1 : pick(1, 5);
    const int stride = kind == 1 ? 1 : pick(1, 3);
    const int pad = kind == 1 ? 0 : pick(0, std::max(kh, kw));
    if (kh > h + 2 * pad || kw > w + 2 * pad) continue;
    const int groups = kind == 0 || kind == 4 ? c : kind == 3 ? 2 : 1;
    const int cout = kind == 0   ? c
                     : kind == 3 ? 2 * pick(1, 3)
                     : kind == 4 ? c * pick(2, 3)
                                 : pick(1, 6);
    const Conv2dOptions o{stride, pad, groups};
    const bool bias = pick(0, 1) == 1;
    const Tensor x = random_tensor(Shape{n, c, h, w}, rng);
    const Tensor wt = random_tensor(Shape{cout, c / groups, kh, kw}, rng);
    const Tensor b = random_tensor(Shape{cout}, rng);
    const int ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
    const Tensor up = random_tensor(Shape{n, cout, ho, wo}, rng);
    SCOPED_TRACE("n " + std::to_string(n) + " c " + std::to_string(c) + " -> " +
                 std::to_string(cout) + " on " + std::to_string(h) + "x" + std::to_string(w) +
                 ", kernel " + std::to_string(kh) + "x" + std::to_string(kw) + ", stride " +
                 std::to_string(stride) + ", padding " + std::to_string(pad) + ", groups " +
                 std::to_string(groups));
    Var xv = parameter(x), wv = parameter(wt), bv = parameter(b);
    Var y = conv2d(xv, wv, bias ? bv : Var(), o);
    expect_close(y.value(), naive_conv2d(x, wt, bias ? &b : nullptr, o));
    backward(sum(mul(y, constant(up))));
    const ConvGrads ref = naive_conv2d_grads(x, wt, bias, up, o);
    auto expect_grad = [](const Tensor& got, const std::vector<double>& want, const char* what) {
      for (std::size_t i = 0; i < want.size(); ++i)
        ASSERT_NEAR(got.data()[i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << what << " " << i;
    };
    expect_grad(xv.grad(), ref.dx, "dx");
    expect_grad(wv.grad(), ref.dw, "dw");
    if (bias) expect_grad(bv.grad(), ref.db, "db");
    ++checked;
  }
  EXPECT_GT(checked, 450);
}

// The batched path (pointwise and padded 3x3 at batch 64) is bit-identical across pool sizes.
std::vector<float> batched_conv_grads(int threads) {
  ThreadBudget budget(threads);
  std::mt19937_64 rng(8);
  Var x = parameter(random_tensor(Shape{64, 6, 7, 7}, rng));
  Var w = parameter(random_tensor(Shape{12, 6, 3, 3}, rng));
  Var b = parameter(random_tensor(Shape{12}, rng));
  Var wp = parameter(random_tensor(Shape{8, 12, 1, 1}, rng));
  Var y = conv2d(conv2d(x, w, b, {1, 1, 1}), wp, Var(), {1, 0, 1});
  backward(sum(mul(y, y)));
  std::vector<float> all = y.value().to_vector();
  for (const Var* v : {&x, &w, &b, &wp}) {
    auto g = v->grad().to_vector();
    all.insert(all.end(), g.begin(), g.end());
  }
  return all;
}

TEST(Conv2d, BatchedPathDeterministicAcrossThreadCounts) {
  const auto a = batched_conv_grads(2), b = batched_conv_grads(2), c = batched_conv_grads(1);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin()));
  EXPECT_TRUE(std::equal(a.begin(), a.end(), c.begin()));
}

// Bit-identical gradients run to run and across pool sizes (fixed reduction order).
std::vector<float> conv_grads(int threads) {
  ThreadBudget budget(threads);
  std::mt19937_64 rng(5);
  Var x = parameter(random_tensor(Shape{64, 4, 14, 14}, rng));
  Var w = parameter(random_tensor(Shape{8, 4, 3, 3}, rng));
  Var b = parameter(random_tensor(Shape{8}, rng));
  Var dw_x = parameter(random_tensor(Shape{64, 4, 14, 14}, rng));
  Var dw_w = parameter(random_tensor(Shape{4, 1, 3, 3}, rng));
  // (and a pointwise layer on an 8x8 map, one sample per GEMM, whose weight gradient sums the
  // samples over 16 chunks)
  Var pw_x = parameter(random_tensor(Shape{40, 8, 8, 8}, rng));
  Var pw_w = parameter(random_tensor(Shape{6, 8, 1, 1}, rng));
  Var pw_b = parameter(random_tensor(Shape{6}, rng));
  // (and a strided 5x5 depthwise with a bias on a ragged batch: 16-sample lane groups)
  Var s2_x = parameter(random_tensor(Shape{45, 6, 14, 14}, rng));
  Var s2_w = parameter(random_tensor(Shape{6, 1, 5, 5}, rng));
  Var s2_b = parameter(random_tensor(Shape{6}, rng));
  Var y = conv2d(x, w, b, {1, 1, 1});
  Var z = conv2d(dw_x, dw_w, Var(), {1, 1, 4});
  Var s2 = conv2d(s2_x, s2_w, s2_b, {2, 2, 6});
  Var pw = conv2d(pw_x, pw_w, pw_b, {1, 0, 1});
  backward(add(add(add(sum(mul(y, y)), sum(mul(z, z))), sum(mul(s2, s2))), sum(mul(pw, pw))));
  std::vector<float> all;
  for (const Var* v : {&x, &w, &b, &dw_x, &dw_w, &s2_x, &s2_w, &s2_b, &pw_x, &pw_w, &pw_b}) {
    auto g = v->grad().to_vector();
    all.insert(all.end(), g.begin(), g.end());
  }
  return all;
}

TEST(Conv2d, DeterministicAcrossRunsAndThreadCounts) {
  const auto a = conv_grads(2), b = conv_grads(2), c = conv_grads(1);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin()));
  EXPECT_TRUE(std::equal(a.begin(), a.end(), c.begin()));
}

TEST(Conv2d, LargeBatchMatchesNaive) {  // exercises the parallel path
  std::mt19937_64 rng(9);
  Tensor x = random_tensor(Shape{16, 3, 12, 12}, rng);
  Tensor w = random_tensor(Shape{8, 3, 3, 3}, rng);
  Tensor b = random_tensor(Shape{8}, rng);
  Conv2dOptions o{1, 1, 1};
  expect_close(conv2d(constant(x), constant(w), constant(b), o).value(), naive_conv2d(x, w, &b, o));
  Tensor wd = random_tensor(Shape{3, 1, 3, 3}, rng);
  Conv2dOptions od{2, 1, 3};
  expect_close(conv2d(constant(x), constant(wd), Var(), od).value(),
               naive_conv2d(x, wd, nullptr, od));
  // Stride-1 layers run several samples' grids per GEMM, as many as fit a 64k-float tile: at 32
  // channels on 28x28 that is two, and 20 samples in 8 reduction chunks of 2 or 3 samples make
  // groups of 2 and ragged groups of 1 after a 2.
  // Pointwise on 64+ positions: one sample per GEMM, no copies.
  const Conv2dOptions o0{1, 0, 1};
  Tensor xp = random_tensor(Shape{20, 5, 8, 8}, rng);
  Tensor wp = random_tensor(Shape{7, 5, 1, 1}, rng);
  Tensor bp = random_tensor(Shape{7}, rng);
  expect_close(conv2d(constant(xp), constant(wp), constant(bp), o0).value(),
               naive_conv2d(xp, wp, &bp, o0));
  Tensor xl = random_tensor(Shape{20, 2, 28, 28}, rng);
  Tensor wl = random_tensor(Shape{32, 2, 3, 3}, rng);
  Tensor bl = random_tensor(Shape{32}, rng);
  expect_close(conv2d(constant(xl), constant(wl), constant(bl), o).value(),
               naive_conv2d(xl, wl, &bl, o));
}

TEST(Conv2d, RejectsBadInputs) {
  auto x = constant(Tensor::zeros(Shape{1, 4, 5, 5}));
  auto w = constant(Tensor::zeros(Shape{2, 4, 3, 3}));
  auto call = [](Var xx, Var ww, Var bb, Conv2dOptions o) {
    return [=] { conv2d(xx, ww, bb, o); };
  };
  expect_invalid(call(constant(Tensor::zeros(Shape{4, 5, 5})), w, Var(), {}),
                 "conv2d: x must be [N, C, H, W]");
  expect_invalid(call(x, constant(Tensor::zeros(Shape{2, 4, 9})), Var(), {}), "conv2d: w must be");
  expect_invalid(call(x, w, Var(), {0, 0, 1}), "conv2d: stride must be >= 1");
  expect_invalid(call(x, w, Var(), {1, -1, 1}), "conv2d: padding must be >= 0");
  expect_invalid(call(x, w, Var(), {1, 0, 0}), "conv2d: groups must be >= 1");
  expect_invalid(
      call(x, constant(Tensor::zeros(Shape{2, 1, 3, 3})), Var(), {1, 0, 3}),
      "conv2d: input channels 4 not divisible by groups 3 (x [1, 4, 5, 5], w [2, 1, 3, 3])");
  expect_invalid(call(x, constant(Tensor::zeros(Shape{3, 2, 3, 3})), Var(), {1, 0, 2}),
                 "conv2d: output channels 3 not divisible by groups 2");
  expect_invalid(call(x, constant(Tensor::zeros(Shape{2, 3, 3, 3})), Var(), {}),
                 "conv2d: w dim 1 must be Cin/groups = 4");
  expect_invalid(call(x, constant(Tensor::zeros(Shape{2, 4, 6, 3})), Var(), {}),
                 "conv2d: kernel 6x3 larger than padded input 5x5");
  expect_invalid(call(x, constant(Tensor::zeros(Shape{2, 4, 8, 8})), Var(), {1, 1, 1}),
                 "larger than padded input 7x7");
  expect_invalid(call(x, w, constant(Tensor::zeros(Shape{3})), {}),
                 "conv2d: bias must be [2], got [3]");
}

// ---- pooling ----

struct PoolCase {
  const char* name;
  int k, s, p;
};
const PoolCase kPoolCases[] = {
    {"k2s2", 2, 2, 0},   {"k3s1", 3, 1, 0},   {"k3s2p1", 3, 2, 1},
    {"k2s1p1", 2, 1, 1}, {"k3s3p1", 3, 3, 1},
};

class PoolTest : public ::testing::TestWithParam<PoolCase> {};

TEST_P(PoolTest, MaxForwardMatchesNaive) {
  const PoolCase& c = GetParam();
  std::mt19937_64 rng(21);
  Tensor x = distinct_tensor(Shape{2, 3, 7, 6}, rng);
  expect_close(max_pool2d(constant(x), c.k, c.s, c.p).value(), naive_pool(x, c.k, c.s, c.p, true));
}

TEST_P(PoolTest, AvgForwardMatchesNaiveWithoutPadCount) {
  const PoolCase& c = GetParam();
  std::mt19937_64 rng(22);
  Tensor x = random_tensor(Shape{2, 3, 7, 6}, rng);
  expect_close(avg_pool2d(constant(x), c.k, c.s, c.p).value(), naive_pool(x, c.k, c.s, c.p, false));
}

TEST_P(PoolTest, MaxGradients) {
  const PoolCase& c = GetParam();
  std::mt19937_64 rng(23);
  expect_gradients_match([&](const std::vector<Var>& v) { return max_pool2d(v[0], c.k, c.s, c.p); },
                         {distinct_tensor(Shape{2, 2, 5, 5}, rng)},
                         {.max_elements_per_input = 100});
}

TEST_P(PoolTest, AvgGradients) {
  const PoolCase& c = GetParam();
  std::mt19937_64 rng(24);
  expect_gradients_match([&](const std::vector<Var>& v) { return avg_pool2d(v[0], c.k, c.s, c.p); },
                         {random_tensor(Shape{2, 2, 5, 5}, rng)}, {.max_elements_per_input = 100});
}

INSTANTIATE_TEST_SUITE_P(Cases, PoolTest, ::testing::ValuesIn(kPoolCases),
                         [](const ::testing::TestParamInfo<PoolCase>& i) {
                           return std::string(i.param.name);
                         });

TEST(AvgPool2d, CornerWindowDividesByRealElementsOnly) {
  Tensor x(Shape{1, 1, 2, 2}, 1.0f);
  Var y = avg_pool2d(constant(x), 2, 1, 1);  // 3x3 windows, corners see one real element
  for (float v : y.value().to_vector()) EXPECT_FLOAT_EQ(v, 1.0f);
}

TEST(GlobalAvgPool, ForwardAndGradients) {
  std::mt19937_64 rng(25);
  Tensor x = random_tensor(Shape{3, 4, 5, 2}, rng);
  Var y = global_avg_pool(constant(x));
  ASSERT_EQ(y.shape(), (Shape{3, 4}));
  for (int nc = 0; nc < 12; ++nc) {
    double s = 0;
    for (int i = 0; i < 10; ++i) s += x.data()[nc * 10 + i];
    EXPECT_NEAR(y.value().data()[nc], s / 10, 1e-5);
  }
  expect_gradients_match([](const std::vector<Var>& v) { return global_avg_pool(v[0]); }, {x});
}

TEST(Pooling, LargeInputMatchesNaive) {  // exercises the parallel path
  std::mt19937_64 rng(26);
  Tensor x = random_tensor(Shape{32, 8, 16, 16}, rng);
  expect_close(max_pool2d(constant(x), 2, 2).value(), naive_pool(x, 2, 2, 0, true));
  expect_close(avg_pool2d(constant(x), 3, 2, 1).value(), naive_pool(x, 3, 2, 1, false));
}

// 2x2 / stride-2 max pooling runs 8 (AVX2) or 16 (AVX-512) windows at a time plus a scalar
// tail: rows of 17 windows exercise both, and ties go to the first element in scan order
// (a, b, c, d), as in the generic loop.
TEST(MaxPool2d, VectorisedWindowsMatchNaiveAndRouteTiesToTheFirstElement) {
  std::mt19937_64 rng(27);
  Tensor x = distinct_tensor(Shape{2, 3, 6, 35}, rng);
  expect_close(max_pool2d(constant(x), 2, 2).value(), naive_pool(x, 2, 2, 0, true));
  expect_gradients_match([&](const std::vector<Var>& v) { return max_pool2d(v[0], 2, 2); }, {x},
                         {.max_elements_per_input = 200});
  Var flat = parameter(Tensor(Shape{1, 1, 4, 34}, 1.0f));
  backward(sum(max_pool2d(flat, 2, 2)));
  const float* g = flat.grad().data();
  for (int h = 0; h < 4; ++h)
    for (int w = 0; w < 34; ++w)
      EXPECT_EQ(g[h * 34 + w], h % 2 == 0 && w % 2 == 0 ? 1.0f : 0.0f) << h << "," << w;
}

// 2x2 / stride-2 average pooling has its own vectorised path: bit-identical to the separable
// path's sums, ((a + b) + (c + d)) * 0.25, and each input's gradient dy * 0.5 * 0.5, on rows of
// 17 windows (whole vectors and a tail) with an odd row and column left out of every window.
TEST(AvgPool2d, TwoByTwoWindowsAreExactAndRouteAQuarterOfTheGradient) {
  std::mt19937_64 rng(28);
  const int H = 7, W = 35, Ho = 3, Wo = 17;
  Var x = parameter(random_tensor(Shape{2, 3, H, W}, rng));
  Var y = avg_pool2d(x, 2, 2);
  ASSERT_EQ(y.shape(), (Shape{2, 3, Ho, Wo}));
  Tensor dy = random_tensor(y.shape(), rng);
  backward(sum(mul(y, constant(dy))));
  const float* xd = x.value().data();
  const float* g = x.grad().data();
  for (int p = 0; p < 6; ++p)
    for (int h = 0; h < H; ++h)
      for (int w = 0; w < W; ++w) {
        const float* xp = xd + p * H * W;
        const int oh = h / 2, ow = w / 2;
        if (oh < Ho && ow < Wo && h % 2 == 0 && w % 2 == 0) {
          const float a = xp[h * W + w], b = xp[h * W + w + 1], c = xp[(h + 1) * W + w],
                      d = xp[(h + 1) * W + w + 1];
          EXPECT_EQ(y.value().data()[(p * Ho + oh) * Wo + ow], ((a + b) + (c + d)) * 0.25f);
        }
        const float expected =
            oh < Ho && ow < Wo ? dy.data()[(p * Ho + oh) * Wo + ow] * 0.5f * 0.5f : 0.0f;
        EXPECT_EQ(g[(p * H + h) * W + w], expected) << p << " " << h << " " << w;
      }
}

// The vectorised and transposed-convolution backward paths add into a gradient another
// consumer wrote first (here the skip term of a residual add, whose backward runs first).
TEST(Conv2d, GridInputGradientAddsToAnExistingGradient) {
  std::mt19937_64 rng(29);
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        return add(conv2d(v[0], v[1], v[2], {1, 1, 1}), v[0]);  // [2, 3, 5, 5] -> same
      },
      {random_tensor(Shape{2, 3, 5, 5}, rng), random_tensor(Shape{3, 3, 3, 3}, rng),
       random_tensor(Shape{3}, rng)});
}

TEST(Pooling, TwoByTwoBackwardAddsToAnExistingGradient) {
  std::mt19937_64 rng(30);
  expect_gradients_match(
      [](const std::vector<Var>& v) { return add(max_pool2d(v[0], 2, 2), avg_pool2d(v[0], 2, 2)); },
      {distinct_tensor(Shape{2, 2, 7, 7}, rng)}, {.max_elements_per_input = 100});
}

// Rows of 3 windows (the masked tail only) with an odd last row, and windows of -inf: the
// maximum is -inf and the gradient goes to the window's first element, as in the scalar loop.
TEST(MaxPool2d, TailOnlyRowsAndMinusInfinityWindows) {
  std::mt19937_64 rng(31);
  Tensor x = distinct_tensor(Shape{1, 2, 7, 7}, rng);
  for (int i : {0, 1, 7, 8}) x.data()[i] = -std::numeric_limits<float>::infinity();
  Var xv = parameter(x);
  Var y = max_pool2d(xv, 2, 2);
  const Tensor want = naive_pool(x, 2, 2, 0, true);  // a maximum is one of its inputs: exact
  ASSERT_EQ(y.value().numel(), want.numel());
  for (std::int64_t i = 0; i < want.numel(); ++i) EXPECT_EQ(y.value().data()[i], want.data()[i]);
  EXPECT_EQ(y.value().data()[0], -std::numeric_limits<float>::infinity());
  backward(sum(y));
  EXPECT_EQ(xv.grad().data()[0], 1.0f);
  EXPECT_EQ(xv.grad().data()[1] + xv.grad().data()[7] + xv.grad().data()[8], 0.0f);
}

TEST(Pooling, RejectsBadInputs) {
  auto x = constant(Tensor::zeros(Shape{1, 2, 4, 4}));
  expect_invalid(
      [&] {
        max_pool2d(constant(Tensor::zeros(Shape{2, 4, 4})), 2, 2);
      },
      "max_pool2d: x must be [N, C, H, W], got [2, 4, 4]");
  expect_invalid([&] { avg_pool2d(x, 0, 1); }, "avg_pool2d: kernel must be >= 1, got 0");
  expect_invalid([&] { max_pool2d(x, 2, 0); }, "max_pool2d: stride must be >= 1, got 0");
  expect_invalid([&] { max_pool2d(x, 2, 2, 2); },
                 "max_pool2d: padding 2 must be in [0, kernel/2] for kernel 2");
  expect_invalid([&] { avg_pool2d(x, 2, 2, -1); }, "avg_pool2d: padding -1 must be in");
  expect_invalid([&] { avg_pool2d(x, 5, 1); },
                 "avg_pool2d: kernel 5 larger than padded input 4x4 (x [1, 2, 4, 4])");
  expect_invalid(
      [&] {
        global_avg_pool(constant(Tensor::zeros(Shape{2, 4})));
      },
      "global_avg_pool: x must be [N, C, H, W], got [2, 4]");
}

}  // namespace
}  // namespace hwnas::nn
