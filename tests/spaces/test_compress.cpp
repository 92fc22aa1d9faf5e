// Weight compression: exact against a plain definition on every path (unfused, fused into the
// optimizer step, each vector-kernel family); inference sessions reuse the compressed weights.
#include <gtest/gtest.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nn/gemm.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "spaces/compress.hpp"

using namespace hwnas;

TEST(Compress, InferenceSessionReusesCompressedWeightsTrainingDoesNot) {
  nn::Var w =
      nn::parameter(nn::Tensor::from(nn::Shape{2, 3}, {0.1f, -0.9f, 0.5f, 0.02f, -0.3f, 0.7f}));
  {
    nn::NoGradGuard session;
    nn::Var a = spaces::compress_weight(w, 8, 0.5);
    nn::Var b = spaces::compress_weight(w, 8, 0.5);
    EXPECT_EQ(a.node(), b.node()) << "same session, same weights: compressed once";
    // Half the entries (the 3 smallest magnitudes) are pruned.
    int zeros = 0;
    for (float v : a.value().to_vector()) zeros += v == 0.0f;
    EXPECT_EQ(zeros, 3);
    EXPECT_NE(spaces::compress_weight(w, 4, 0.5).node(), a.node()) << "other settings, other entry";
  }
  // An optimizer step between sessions changes the weights: the next session sees the new ones.
  w.value().data()[3] = 2.0f;  // 0.02 -> 2.0: no longer among the smallest
  nn::Var c;
  {
    nn::NoGradGuard session;
    c = spaces::compress_weight(w, 8, 0.5);
  }
  EXPECT_NE(c.value().data()[3], 0.0f);
  // With grad on, every call builds a fresh node that routes gradients to the kept entries.
  nn::Var t1 = spaces::compress_weight(w, 8, 0.5);
  nn::Var t2 = spaces::compress_weight(w, 8, 0.5);
  EXPECT_NE(t1.node(), t2.node());
  EXPECT_TRUE(t1.requires_grad());
}

// Each output channel (dim 0) has its own scale: a channel of small weights keeps its values
// instead of rounding to zero next to a large one (per-tensor int4 would zero row 1 entirely).
TEST(Compress, Int4ScalesPerOutputChannel) {
  nn::Var w =
      nn::parameter(nn::Tensor::from(nn::Shape{2, 3}, {1.0f, 0.6f, -0.25f, 0.01f, 0.02f, -0.03f}));
  const auto q = spaces::compress_weight(w, 4, 0).value().to_vector();
  const float s0 = 1.0f / 7, s1 = 0.03f / 7;  // max |w| of each row over qmax = 7
  // 0.6 * 7 = 4.2 -> 4, -0.25 * 7 = -1.75 -> -2; 0.01 / s1 = 2.33 -> 2, 0.02 / s1 = 4.67 -> 5.
  const std::vector<float> expected = {7 * s0, 4 * s0, -2 * s0, 2 * s1, 5 * s1, -7 * s1};
  ASSERT_EQ(q.size(), expected.size());
  for (std::size_t i = 0; i < q.size(); ++i) EXPECT_NEAR(q[i], expected[i], 1e-7f) << i;
  // A vector (a bias) has a single scale.
  nn::Var b = nn::parameter(nn::Tensor::from(nn::Shape{3}, {1.0f, 0.01f, -0.6f}));
  const auto qb = spaces::compress_weight(b, 4, 0).value().to_vector();
  EXPECT_FLOAT_EQ(qb[1], 0.0f);
  EXPECT_FLOAT_EQ(qb[2], -4.0f / 7);
}

namespace {

std::vector<std::uint32_t> bit_patterns(const std::vector<float>& v) {
  std::vector<std::uint32_t> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = std::bit_cast<std::uint32_t>(v[i]);
  return out;
}

// The definition, written the plain way: zero the k = floor(prune * n) smallest |w| (ties by
// index), then quantise the rest per output channel with quantisation_scales of the pruned weight.
// Returns the values and the gradient mask.
std::pair<std::vector<float>, std::vector<float>> reference_compress(const nn::Tensor& w, int bits,
                                                                     double prune) {
  const std::int64_t n = w.numel();
  std::vector<float> out = w.to_vector(), mask(static_cast<std::size_t>(n), 1.0f);
  const auto k = static_cast<std::int64_t>(std::floor(prune * static_cast<double>(n)));
  std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  // |w| order by the magnitude bits (NaN above inf, by payload), ties by index: a strict order
  // even with NaN entries, and the one compress_weight documents.
  auto magnitude = [&](std::int64_t i) {
    return std::bit_cast<std::uint32_t>(out[i]) & 0x7fffffffu;
  };
  std::sort(idx.begin(), idx.end(), [&](std::int64_t a, std::int64_t b) {
    return magnitude(a) < magnitude(b) || (magnitude(a) == magnitude(b) && a < b);
  });
  for (std::int64_t i = 0; i < k; ++i) out[idx[i]] = 0.0f, mask[idx[i]] = 0.0f;
  nn::Tensor pruned = nn::Tensor::from(w.shape(), out);
  const std::vector<float> scales = spaces::quantisation_scales(pruned, bits);
  if (!scales.empty()) {
    const std::int64_t per = n / static_cast<std::int64_t>(scales.size());
    for (std::int64_t i = 0; i < n; ++i) {
      const float s = scales[static_cast<std::size_t>(i / per)];
      out[i] = std::round(out[i] / s) * s;
    }
  }
  return {out, mask};
}

// A [rows, cols] weight of standard normal draws from std::mt19937(seed).
nn::Tensor normal_weight(int rows, int cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  nn::Tensor t(nn::Shape{rows, cols});
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = g(rng);
  return t;
}

// Whether `compressed` holds the definition's bits for w at these settings.  w is read through a
// const Var, so the check itself counts no write (Node::version) that would stop a served weight.
bool matches_definition(const nn::Var& compressed, const nn::Var& w, int bits, double prune) {
  return bit_patterns(compressed.value().to_vector()) ==
         bit_patterns(reference_compress(w.value(), bits, prune).first);
}

// Backpropagates a random upstream gradient through `out` (the compressed w) and checks that w's
// gradient is that gradient times the definition's mask, bit for bit.
::testing::AssertionResult gradient_is_masked(const nn::Var& w, const nn::Var& out,
                                              const std::vector<float>& mask, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  nn::Tensor up(out.shape());
  for (std::int64_t i = 0; i < up.numel(); ++i) up.data()[i] = g(rng);
  nn::backward(nn::sum(nn::mul(out, nn::constant(up))));
  for (std::int64_t i = 0; i < up.numel(); ++i) {
    const float want = up.data()[i] * mask[static_cast<std::size_t>(i)];
    if (std::bit_cast<std::uint32_t>(w.grad().data()[i]) != std::bit_cast<std::uint32_t>(want))
      return ::testing::AssertionFailure()
             << "entry " << i << ": gradient " << w.grad().data()[i] << ", want " << want;
  }
  return ::testing::AssertionSuccess();
}

// Runs body(name) once per vector-kernel family this CPU has: the compression passes follow
// gemm_isa() (AVX-512 or AVX2 loops), and both must give the definition's bits.
template <class F>
void for_each_kernel_family(F&& body) {
  const nn::detail::GemmIsa saved = nn::detail::gemm_isa();
  for (nn::detail::GemmIsa isa : {nn::detail::GemmIsa::kAvx512, nn::detail::GemmIsa::kAvx2})
    if (nn::detail::gemm_isa_supported(isa)) {
      nn::detail::set_gemm_isa(isa);
      body(std::string(nn::detail::gemm_isa_name(isa)));
    }
  nn::detail::set_gemm_isa(saved);
}

// The loss the linear-mask tests backpropagate: sum(linear(x, weight) * up), plus
// sum(weight * other) when other is given (a second consumer of the weight).
nn::Var linear_loss(const nn::Var& weight, const nn::Tensor& x, const nn::Tensor& up,
                    const nn::Tensor* other) {
  nn::Var y = nn::linear(nn::constant(x), weight, nn::Var());
  nn::Var loss = nn::sum(nn::mul(y, nn::constant(up)));
  if (other) loss = nn::add(loss, nn::sum(nn::mul(weight, nn::constant(*other))));
  return loss;
}

}  // namespace

// The fast path (a remembered band of magnitudes around the pruning boundary, a vectorised
// rounding) gives exactly the definition's values and gradient mask, step after step, as the
// weights drift slowly (the band holds) or jump (it is rebuilt), with ties at the boundary
// (weights on a coarse grid) and whole channels pruned.
TEST(Compress, FastPathEqualsTheDefinitionBitForBitAcrossTrainingSteps) {
  for_each_kernel_family([](const std::string& family) {
    std::mt19937 rng(5);
    // The last three exceed one parallel piece (2^13 entries): the passes split across threads.
    const std::vector<nn::Shape> shapes = {nn::Shape{37},          nn::Shape{8, 50},
                                           nn::Shape{16, 3, 3, 3}, nn::Shape{64, 300},
                                           nn::Shape{70000},       nn::Shape{40, 1000}};
    for (const nn::Shape& shape : shapes)
      for (int bits : {32, 8, 4})
        for (double prune : {0.0, 0.25, 0.5, 0.9, 1.0})
          for (bool coarse : {false, true}) {
            std::normal_distribution<float> g(0.0f, 1.0f);
            nn::Tensor init(shape);
            for (std::int64_t i = 0; i < init.numel(); ++i)
              init.data()[i] = coarse ? std::round(4 * g(rng)) / 4 : g(rng);
            if (shape.rank() >= 2)  // a whole small channel: pruned entirely at high ratios
              for (int i = 0; i < shape.numel() / shape[0]; ++i) init.data()[i] *= 1e-3f;
            nn::Var w = nn::parameter(init);
            for (int step = 0; step < 6; ++step) {
              // Small drifts keep the boundary inside the band; step 3 jumps past it.
              const float size = step == 3 ? 1.0f : 1e-3f;
              if (step > 0)
                for (std::int64_t i = 0; i < w.value().numel(); ++i)
                  w.value().data()[i] += coarse ? 0.0f : size * g(rng);
              const auto [want, mask] = reference_compress(w.value(), bits, prune);
              w.grad() = nn::Tensor();
              nn::Var out = spaces::compress_weight(w, bits, prune);
              // Bit patterns, not ==: -0.0 (round(-0.3) * s) must stay -0.0.
              ASSERT_EQ(bit_patterns(out.value().to_vector()), bit_patterns(want))
                  << family << " " << shape.str() << " bits " << bits << " prune " << prune
                  << " coarse " << coarse << " step " << step;
              if (bits >= 16 && prune <= 0) continue;  // w itself: no gradient mask to check
              ASSERT_TRUE(gradient_is_masked(w, out, mask, rng))
                  << family << " " << shape.str() << " bits " << bits << " prune " << prune
                  << " step " << step;
            }
          }
  });
}

// A compressed weight whose only consumer is a linear layer gets its gradient masked by that
// layer's weight-gradient GEMM, block by block as it is written (Node::grad_mask), instead of by
// one more pass: the same bits as the definition, mask * (g^T x), for column-split, row-split and
// batch-split GEMMs.  With a second consumer, the mask is applied to the sum as before; and
// gradients() asked for the compressed weight itself returns it unmasked.
TEST(Compress, LinearMasksTheWeightGradientAsItWritesIt) {
  for_each_kernel_family([](const std::string& family) {
    unsigned seed = 23;
    struct Case {
      int out, in, batch;
    };
    // 64 x 300 splits the columns of dW, 300 x 64 its rows, a batch of 2048 the reduction.
    for (const Case c : {Case{64, 300, 64}, Case{300, 64, 64}, Case{16, 32, 2048}})
      for (int bits : {32, 8, 4})
        for (double prune : {0.25, 0.5})
          for (int consumers : {1, 2}) {
            const std::string where =
                family + " " + std::to_string(c.out) + "x" + std::to_string(c.in) + " batch " +
                std::to_string(c.batch) + " bits " + std::to_string(bits) + " prune " +
                std::to_string(prune) + " consumers " + std::to_string(consumers);
            nn::Var w = nn::parameter(normal_weight(c.out, c.in, seed++));
            const nn::Tensor x = normal_weight(c.batch, c.in, seed++);
            const nn::Tensor up = normal_weight(c.batch, c.out, seed++);
            const nn::Tensor other = normal_weight(c.out, c.in, seed++);
            auto loss_of = [&](const nn::Var& weight) {
              return linear_loss(weight, x, up, consumers == 2 ? &other : nullptr);
            };
            // The reference: the same loss on a plain parameter holding the compressed values,
            // its gradient times the definition's mask.
            const auto [values, mask] = reference_compress(w.value(), bits, prune);
            nn::Var plain = nn::parameter(nn::Tensor::from(w.shape(), values));
            nn::backward(loss_of(plain));
            std::vector<float> want = plain.grad().to_vector();
            for (std::size_t i = 0; i < want.size(); ++i) want[i] *= mask[i];

            nn::Var compressed = spaces::compress_weight(w, bits, prune);
            nn::backward(loss_of(compressed));
            ASSERT_EQ(bit_patterns(w.grad().to_vector()), bit_patterns(want)) << where;

            // gradients() for the compressed weight itself: the unmasked g^T x (+ other).
            w.grad() = nn::Tensor();
            nn::Var again = spaces::compress_weight(w, bits, prune);
            const std::vector<nn::Tensor> got = nn::gradients(loss_of(again), {again, w});
            ASSERT_EQ(bit_patterns(got[0].to_vector()), bit_patterns(plain.grad().to_vector()))
                << where << " (gradients of the compressed weight)";
            EXPECT_TRUE(w.grad().empty()) << where << ": gradients() wrote a stored gradient";
            // ... and for w alone: masked.
            nn::Var third = spaces::compress_weight(w, bits, prune);
            ASSERT_EQ(bit_patterns(nn::gradients(loss_of(third), {w})[0].to_vector()),
                      bit_patterns(want))
                << where << " (gradients of w)";
          }
  });
}

// The same through the optimizer step's prepared weight, whose gradient mask is a byte per entry
// written by the band pass (spaces/compress.cpp, KeepBytes): the dW GEMM's block mask and the
// closure's own pass both read it, with ties on a coarse grid and a graph kept across the next
// optimizer step (which must not overwrite the bytes that graph still masks with).
TEST(Compress, FusedMaskBytesEqualTheDefinitionThroughLinearAcrossSteps) {
  for_each_kernel_family([](const std::string& family) {
    unsigned seed = 41;
    struct Case {
      int out, in;
    };
    for (const Case c : {Case{32, 300}, Case{16, 784}, Case{300, 64}})
      for (int bits : {32, 8})
        for (double prune : {0.25, 0.5})
          for (bool coarse : {false, true})
            for (int consumers : {1, 2}) {
              const std::string where =
                  family + " " + std::to_string(c.out) + "x" + std::to_string(c.in) + " bits " +
                  std::to_string(bits) + " prune " + std::to_string(prune) +
                  (coarse ? " coarse" : "") + " consumers " + std::to_string(consumers);
              nn::Tensor init = normal_weight(c.out, c.in, seed++);
              if (coarse)  // many exact ties at the boundary, settled by index
                for (std::int64_t i = 0; i < init.numel(); ++i)
                  init.data()[i] = std::round(4 * init.data()[i]) / 4;
              // (Its own storage: a weight sharing storage with a live tensor is never served.)
              nn::Var w = nn::parameter(init.clone());
              const nn::Tensor x = normal_weight(64, c.in, seed++);
              const nn::Tensor up = normal_weight(64, c.out, seed++);
              const nn::Tensor other = normal_weight(c.out, c.in, seed++);
              auto loss_of = [&](const nn::Var& weight) {
                return linear_loss(weight, x, up, consumers == 2 ? &other : nullptr);
              };
              // The definition's gradient for w at its current value: the same loss on a plain
              // parameter holding the compressed values, times the mask.
              auto want_now = [&] {
                const auto [values, mask] =
                    reference_compress(std::as_const(w).value(), bits, prune);
                nn::Var plain = nn::parameter(nn::Tensor::from(w.shape(), values));
                nn::backward(loss_of(plain));
                std::vector<float> want = plain.grad().to_vector();
                for (std::size_t i = 0; i < want.size(); ++i) want[i] *= mask[i];
                return want;
              };
              nn::AdamW opt(std::vector<nn::Var>{w}, nn::AdamWOptions{0.01f});
              nn::Var kept_loss;
              std::vector<float> kept_want;
              for (int step = 0; step < 6; ++step) {
                const std::vector<float> want = want_now();
                nn::Var out = spaces::compress_weight(w, bits, prune);
                if (step == 3) {  // a graph kept past the next step, backpropagated after it
                  kept_loss = loss_of(out);
                  kept_want = want;
                  const float* first = out.value().data();
                  out = spaces::compress_weight(w, bits, prune);
                  ASSERT_EQ(out.value().data(), first) << where << ": not the prepared weight";
                }
                opt.zero_grad();
                nn::backward(loss_of(out));
                ASSERT_EQ(bit_patterns(w.grad().to_vector()), bit_patterns(want))
                    << where << " step " << step;
                opt.step();
                if (step == 4) {
                  opt.zero_grad();
                  nn::backward(kept_loss);
                  ASSERT_EQ(bit_patterns(w.grad().to_vector()), bit_patterns(kept_want))
                      << where << " (the graph kept from step 3)";
                }
              }
            }
  });
}

// compressed_linear: once an optimizer step has prepared the weight, the layer's GEMMs prune and
// quantise it as they pack it (no compressed copy: the linear node's parent is the weight
// itself), and the output and every gradient stay the definition's, bit for bit: the forward
// x W^T under each split of the GEMM (by K, rows, columns, none), the input gradient g W and the
// weight gradient's mask, with ties at the boundary, values on the rounding's half-integers, a
// subnormal row scale and every entry pruned, in each kernel family and Eigen's fallback.  With
// set_packed_compression(false) the compressed copy is read instead, with the same bits.
TEST(Compress, PackedLinearEqualsTheDefinitionAcrossSteps) {
  // (Restored however the test ends: a failed assertion returns early.)
  struct Restore {
    nn::detail::GemmIsa isa = nn::detail::gemm_isa();
    ~Restore() {
      spaces::set_packed_compression(true);
      nn::detail::set_gemm_isa(isa);
    }
  } restore;
  for (nn::detail::GemmIsa isa :
       {nn::detail::GemmIsa::kAvx512, nn::detail::GemmIsa::kAvx2, nn::detail::GemmIsa::kEigen}) {
    if (!nn::detail::gemm_isa_supported(isa)) continue;
    nn::detail::set_gemm_isa(isa);
    unsigned seed = 91;
    struct Case {
      int batch, out, in;
    };
    // 64x32x784: the forward split by K (the mlp space's first layer); 64x300x64: by columns;
    // 256x24x200: by rows; 16x1024x64: the input gradient split by K; 1x32x784 and 1x16x20: batch
    // 1 (Eigen's matrix-vector products); 5x3x7: one chunk of less than a vector.
    for (const Case c : {Case{64, 32, 784}, Case{64, 300, 64}, Case{256, 24, 200},
                         Case{16, 1024, 64}, Case{1, 32, 784}, Case{1, 16, 20}, Case{5, 3, 7}})
      for (int bits : {32, 8, 4})
        for (double prune : {0.0, 0.3, 1.0})
          for (int data : {0, 1, 2})  // normal draws; on a coarse grid; half-integer quotients
            for (bool packing : {true, false}) {
              if ((bits >= 16 && prune <= 0) || (data == 2 && bits >= 16)) continue;
              spaces::set_packed_compression(packing);
              const std::string where = std::string(nn::detail::gemm_isa_name(isa)) + " " +
                                        std::to_string(c.batch) + "x" + std::to_string(c.out) +
                                        "x" + std::to_string(c.in) + " bits " +
                                        std::to_string(bits) + " prune " + std::to_string(prune) +
                                        " data " + std::to_string(data) + (packing ? "" : " copy");
              nn::Tensor init = normal_weight(c.out, c.in, seed++);
              const float qmax = bits < 16 ? static_cast<float>((1 << (bits - 1)) - 1) : 0.0f;
              for (std::int64_t i = 0; i < init.numel(); ++i) {
                float& v = init.data()[i];
                if (data == 1)  // many exact ties at the boundary, settled by index
                  v = std::round(4 * v) / 4;
                if (data == 2)  // each row's largest is qmax (scale 1), the rest k + 1/2
                  v = i % c.in == 0 ? qmax
                                    : std::copysign(std::floor(std::fabs(v) * qmax / 4) + 0.5f, v);
                if (data == 2 && i / c.in == 1)  // a row whose scale is subnormal: divided
                  v *= 1e-40f;
              }
              nn::Var w = nn::parameter(init.clone());
              nn::Var b = nn::parameter(normal_weight(1, c.out, seed++).reshaped(nn::Shape{c.out}));
              const nn::Tensor x = normal_weight(c.batch, c.in, seed++);
              const nn::Tensor up = normal_weight(c.batch, c.out, seed++);
              // (lr 0 keeps the half-integers where they are for the packed steps.)
              nn::AdamW opt(std::vector<nn::Var>{w, b}, nn::AdamWOptions{data == 2 ? 0.0f : 0.01f});
              for (int step = 0; step < 6; ++step) {
                // The definition: a plain linear layer over the compressed values, its weight
                // gradient times the mask.
                const auto [values, mask] =
                    reference_compress(std::as_const(w).value(), bits, prune);
                nn::Var plain = nn::parameter(nn::Tensor::from(w.shape(), values));
                nn::Var x_ref = nn::parameter(x.clone()), b_ref = nn::parameter(b.value().clone());
                nn::Var y_ref = nn::linear(x_ref, plain, b_ref);
                nn::backward(nn::sum(nn::mul(y_ref, nn::constant(up))));
                std::vector<float> want_dw = plain.grad().to_vector();
                for (std::size_t i = 0; i < want_dw.size(); ++i) want_dw[i] *= mask[i];

                opt.zero_grad();
                nn::Var xv = nn::parameter(x.clone());
                nn::Var y = spaces::compressed_linear(xv, w, b, bits, prune);
                // (Step 0 installs the hook, step 1 confirms the settings, its update prepares.)
                if (step >= 2) {
                  ASSERT_EQ(y.node()->parents[1].get() == w.node(), packing)
                      << where << " step " << step << ": packed " << !packing;
                }
                ASSERT_EQ(bit_patterns(y.value().to_vector()),
                          bit_patterns(y_ref.value().to_vector()))
                    << where << " step " << step << ": forward";
                nn::backward(nn::sum(nn::mul(y, nn::constant(up))));
                ASSERT_EQ(bit_patterns(w.grad().to_vector()), bit_patterns(want_dw))
                    << where << " step " << step << ": weight gradient";
                ASSERT_EQ(bit_patterns(xv.grad().to_vector()),
                          bit_patterns(x_ref.grad().to_vector()))
                    << where << " step " << step << ": input gradient";
                ASSERT_EQ(bit_patterns(b.grad().to_vector()),
                          bit_patterns(b_ref.grad().to_vector()))
                    << where << " step " << step << ": bias gradient";
                opt.step();
              }
            }
  }
}

// A compressed weight kept past backward() is a leaf from then on (backward() freed its graph):
// used again, it gets the whole gradient, not the mask of the weight it was made from.
TEST(Compress, CompressedWeightKeptPastBackwardGetsItsWholeGradient) {
  nn::Var w = nn::parameter(normal_weight(8, 50, 3));
  const nn::Tensor x = normal_weight(4, 50, 4), up = normal_weight(4, 8, 5);
  auto loss_of = [&](const nn::Var& weight) {
    return nn::sum(nn::mul(nn::linear(nn::constant(x), weight, nn::Var()), nn::constant(up)));
  };
  nn::Var kept = spaces::compress_weight(w, 32, 0.5);
  nn::backward(loss_of(kept));
  nn::backward(loss_of(kept));
  nn::Var plain = nn::parameter(kept.value().clone());
  nn::backward(loss_of(plain));
  EXPECT_EQ(bit_patterns(kept.grad().to_vector()), bit_patterns(plain.grad().to_vector()));
}

// Training piles magnitudes up at the pruning boundary (pruned weights stop moving): the band
// pass then cuts at the last boundary and selects among finer bins of the pile, and the entries
// the boundary moved past since are rewritten, kept again (quantised with their row's scale) or
// pruned.  A pile of a third of the entries within a few hundred ulps of the median magnitude,
// jittered by a few ulps each step and shifted up and down as a whole, must still give the
// definition's bits, on the unfused path and in the optimizer's fused pass.
TEST(Compress, BoundaryInsideAPileOfNearlyEqualMagnitudes) {
  for_each_kernel_family([](const std::string& family) {
    for (int bits : {32, 4})
      for (bool fused : {false, true}) {
        std::mt19937 rng(17);
        std::normal_distribution<float> g(0.0f, 1.0f);
        std::uniform_int_distribution<int> ulps(-300, 300), jitter(-3, 3), coin(0, 2);
        nn::Tensor init(nn::Shape{64, 300});
        std::vector<bool> in_pile(static_cast<std::size_t>(init.numel()));
        for (std::int64_t i = 0; i < init.numel(); ++i) {
          in_pile[static_cast<std::size_t>(i)] = coin(rng) == 0;
          float v = g(rng);
          if (in_pile[static_cast<std::size_t>(i)])  // |v| = 0.6745 (about the median) + ulps
            v = std::copysign(
                std::bit_cast<float>(std::bit_cast<std::uint32_t>(0.6745f) + ulps(rng)), v);
          init.data()[i] = v;
        }
        nn::Var w = nn::parameter(init.clone());
        // A plain SGD step of lr 1 applies exactly the gradient set below: the drift.
        nn::Sgd opt(std::vector<nn::Var>{w}, nn::SgdOptions{1.0f, 0.0f, false, 0.0f});
        const std::string where =
            family + " bits " + std::to_string(bits) + (fused ? " fused" : " unfused");
        for (int step = 0; step < 10; ++step) {
          const auto [want, mask] = reference_compress(std::as_const(w).value(), bits, 0.5);
          nn::Var out = spaces::compress_weight(w, bits, 0.5);
          ASSERT_EQ(bit_patterns(out.value().to_vector()), bit_patterns(want))
              << where << " step " << step;
          // The next values: pile entries move a few ulps (steps 4 and 7: the whole pile moves
          // 200 ulps up, then down), the rest stay.
          const std::vector<float> now = std::as_const(w).value().to_vector();
          std::vector<float> next = now;
          for (std::size_t i = 0; i < next.size(); ++i)
            if (in_pile[i]) {
              const int move = step == 4 ? 200 : step == 7 ? -200 : jitter(rng);
              const auto bits_of = static_cast<std::int64_t>(std::bit_cast<std::uint32_t>(now[i]));
              next[i] = std::bit_cast<float>(static_cast<std::uint32_t>(bits_of + move));
            }
          if (fused) {
            opt.zero_grad();
            w.grad() = nn::Tensor(w.shape());
            for (std::size_t i = 0; i < next.size(); ++i)
              w.grad().data()[i] = now[i] - next[i];  // w - 1 * (now - next): next, up to rounding
            opt.step();
          } else {
            for (std::size_t i = 0; i < next.size(); ++i) w.value().data()[i] = next[i];
          }
        }
      }
  });
}

// The optimizer compresses each weight right after updating it (the fused update hook), and the
// next forward pass takes that result: it must be the definition's, bit for bit, for every
// optimizer, shape, bit width and pruning ratio, also when a step moves the weights far (the band
// misses), and it must not be served once anything else has written the weights.
TEST(Compress, OptimizerStepCompressesTheUpdatedWeightExactly) {
  for_each_kernel_family([](const std::string& family) {
    std::mt19937 rng(11);
    const std::vector<nn::Shape> shapes = {nn::Shape{37},          nn::Shape{8, 50},
                                           nn::Shape{16, 3, 3, 3}, nn::Shape{64, 300},
                                           nn::Shape{4, 8192},     nn::Shape{70000}};
    for (const nn::Shape& shape : shapes)
      for (int bits : {32, 8, 4})
        for (double prune : {0.0, 0.25, 0.5, 1.0})
          for (bool adam : {true, false}) {
            if (bits >= 16 && prune <= 0) continue;  // nothing to compress
            std::normal_distribution<float> g(0.0f, 1.0f);
            nn::Tensor init(shape);
            for (std::int64_t i = 0; i < init.numel(); ++i) init.data()[i] = g(rng);
            // (Its own storage: a weight whose storage another tensor shares is never served a
            // prepared result, as that tensor could be written unseen.)
            nn::Var w = nn::parameter(init.clone());
            std::unique_ptr<nn::Optimizer> opt;
            if (adam)
              opt = std::make_unique<nn::AdamW>(std::vector<nn::Var>{w}, nn::AdamWOptions{0.01f});
            else
              opt = std::make_unique<nn::Sgd>(std::vector<nn::Var>{w},
                                              nn::SgdOptions{0.05f, 0.9f, false, 1e-4f});
            const std::string where = family + " " + shape.str() + " bits " + std::to_string(bits) +
                                      " prune " + std::to_string(prune) +
                                      (adam ? " adamw" : " sgd");
            for (int step = 0; step < 7; ++step) {
              if (step == 4) opt->set_lr(adam ? 1.0f : 5.0f);  // a jump past the band
              if (step == 5) opt->set_lr(adam ? 0.01f : 0.05f);
              // (A const read: a non-const Var::value() counts as a write and retires the
              // prepared weight.)
              const auto [want, mask] = reference_compress(std::as_const(w).value(), bits, prune);
              nn::Var out = spaces::compress_weight(w, bits, prune);
              ASSERT_EQ(bit_patterns(out.value().to_vector()), bit_patterns(want))
                  << where << " step " << step;
              // From step 2 on the last step prepared it (step 0's call installs the hook, step
              // 1's confirms the settings): a second call in this step takes it too.  (Unless a
              // long quantised weight has fewer rows, one scale each, than the optimizer has
              // threads to keep busy: the hook then sits out.)
              const std::int64_t rows = shape.rank() >= 2 ? shape[0] : 1;
              const bool too_few_rows = bits < 16 && shape.numel() > 4096 &&
                                        rows < oneapi::tbb::this_task_arena::max_concurrency();
              if (step > 1 && !too_few_rows) {
                EXPECT_EQ(spaces::compress_weight(w, bits, prune).value().data(),
                          out.value().data())
                    << where;
              }
              opt->zero_grad();
              ASSERT_TRUE(gradient_is_masked(w, out, mask, rng)) << where << " step " << step;
              opt->step();
            }
            // Written outside an optimizer step, as loading a state dict does (weights_changed),
            // or replaced by a new tensor: the prepared weight is not served.
            for (std::int64_t i = 0; i < w.value().numel(); ++i) w.value().data()[i] = g(rng);
            nn::weights_changed();
            ASSERT_EQ(bit_patterns(spaces::compress_weight(w, bits, prune).value().to_vector()),
                      bit_patterns(reference_compress(w.value(), bits, prune).first))
                << where << " after weights_changed";
            opt->zero_grad();
            nn::backward(nn::sum(spaces::compress_weight(w, bits, prune)));
            opt->step();
            w.value() = w.value().clone();
            w.value().data()[0] += 1.0f;
            ASSERT_EQ(bit_patterns(spaces::compress_weight(w, bits, prune).value().to_vector()),
                      bit_patterns(reference_compress(w.value(), bits, prune).first))
                << where << " after the value was replaced";
          }
  });
}

// The band holds the pruning boundary while training piles the pruned magnitudes up just under
// it (AdamW's weight decay shrinks them together, and each step adds the kept entries that fell
// through), and the boundary is selected among a bin's few keys, not among the pile.  A 32 x 784
// pruned dense layer, as in the mlp space, trained on one fixed batch: over the last 1,600 of
// 2,000 steps the boundary's bin held 31 keys per step and 4 steps ran the full selection; with
// the band's bins equal over its whole width (before the split at the last boundary), 353 keys
// and 16 full selections.  The result stays the definition's.
TEST(Compress, PruningBandHoldsTheBoundaryWhileMagnitudesPileUp) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int out_f = 32, in_f = 784, batch = 64;
  nn::Tensor init(nn::Shape{out_f, in_f}), x(nn::Shape{batch, in_f});
  for (std::int64_t i = 0; i < init.numel(); ++i) init.data()[i] = 0.036f * g(rng);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = g(rng);
  std::vector<int> labels(batch);
  for (int& y : labels) y = static_cast<int>(rng() % out_f);
  nn::Var w = nn::parameter(init.clone());  // (its own storage: see the test above)
  nn::AdamWOptions options;
  options.lr = 1e-3f;
  options.weight_decay = 0.01f;
  nn::AdamW opt({w}, options);
  const int steps = 2000, settle = 400;
  for (int step = 0; step < steps; ++step) {
    if (step == settle) spaces::reset_prune_selection_stats();
    opt.zero_grad();
    nn::backward(nn::cross_entropy(
        nn::linear(nn::constant(x), spaces::compress_weight(w, 32, 0.25), nn::Var()), labels));
    opt.step();
  }
  const spaces::PruneSelectionStats stats = spaces::prune_selection_stats();
  const std::uint64_t selections = stats.band_selections + stats.full_selections;
  EXPECT_EQ(selections, static_cast<std::uint64_t>(steps - settle));
  EXPECT_LE(stats.full_selections, 8u);
  ASSERT_GT(stats.band_selections, 0u);
  EXPECT_LE(stats.bin_keys / stats.band_selections, 64u);
  EXPECT_LE(stats.band_keys / stats.band_selections, 2000u);
  EXPECT_TRUE(matches_definition(spaces::compress_weight(w, 32, 0.25), w, 32, 0.25));
}

// What the optimizer prepared is never served once the weight may have changed outside that step:
// an in-place write through Var::value() (no weights_changed() needed), another parameter over
// the same storage updated by its own optimizer, or settings that changed since the step.
TEST(Compress, PreparedWeightIsNotServedAfterOtherWrites) {
  const nn::Tensor init = normal_weight(16, 40, 3);
  auto compresses_exactly = [](const nn::Var& w, int bits, double prune) {
    return matches_definition(spaces::compress_weight(w, bits, prune), w, bits, prune);
  };
  auto train_step = [](nn::Optimizer& opt, const nn::Var& w, int bits, double prune) {
    opt.zero_grad();
    nn::backward(nn::sum(
        nn::mul(spaces::compress_weight(w, bits, prune), spaces::compress_weight(w, bits, prune))));
    opt.step();
  };
  {  // an in-place write after the step, then a training forward and an inference session
    nn::Var w = nn::parameter(init.clone());
    nn::AdamW opt({w}, nn::AdamWOptions{0.01f});
    for (int s = 0; s < 3; ++s) train_step(opt, w, 8, 0.5);
    w.value().data()[5] = 7.0f;
    EXPECT_TRUE(compresses_exactly(w, 8, 0.5));
    train_step(opt, w, 8, 0.5);
    w.value().data()[6] = -7.0f;
    nn::NoGradGuard session;
    EXPECT_TRUE(compresses_exactly(w, 8, 0.5));
  }
  {  // two parameters over one storage, each with its own optimizer
    nn::Var a = nn::parameter(init.clone());
    nn::Var b = nn::parameter(a.value());
    nn::AdamW opt_a({a}, nn::AdamWOptions{0.01f}), opt_b({b}, nn::AdamWOptions{0.05f});
    for (int s = 0; s < 3; ++s) {
      train_step(opt_a, a, 4, 0.25);
      train_step(opt_b, b, 32, 0.0);  // (b's own compression is off: plain training)
      EXPECT_TRUE(compresses_exactly(a, 4, 0.25)) << "step " << s;
    }
  }
  {  // settings that alternate between steps (a supernet's), and a change after the step
    nn::Var w = nn::parameter(init.clone());
    nn::Sgd opt({w}, nn::SgdOptions{0.05f, 0.9f, false, 0.0f});
    for (int s = 0; s < 4; ++s) {
      train_step(opt, w, s % 2 ? 8 : 4, 0.5);
      EXPECT_TRUE(compresses_exactly(w, s % 2 ? 4 : 8, 0.5)) << "step " << s;
    }
    train_step(opt, w, 8, 0.5);
    train_step(opt, w, 8, 0.5);
    EXPECT_TRUE(compresses_exactly(w, 8, 0.25));
    EXPECT_TRUE(compresses_exactly(w, 4, 0.5));
  }
}

// A frozen weight (LoRA's base) is compressed once and served while nothing writes it; a write
// through its Var, weights_changed() or new settings make the next forward pass compress again.
TEST(Compress, FrozenWeightIsCompressedOnceAndServedWhileUnchanged) {
  const nn::Tensor init = normal_weight(24, 50, 5);
  nn::Var w = nn::constant(init.clone());
  ASSERT_FALSE(w.requires_grad());
  const nn::Var first = spaces::compress_weight(w, 4, 0.5);
  EXPECT_TRUE(matches_definition(first, w, 4, 0.5));
  EXPECT_FALSE(first.requires_grad());
  const nn::Var second = spaces::compress_weight(w, 4, 0.5);
  EXPECT_EQ(second.value().data(), first.value().data()) << "served, not compressed again";
  // A write through the Var (counted), then weights_changed(): compressed again, exactly.
  w.value().data()[7] = 9.0f;
  const nn::Var after_write = spaces::compress_weight(w, 4, 0.5);
  EXPECT_NE(after_write.value().data(), first.value().data());
  EXPECT_TRUE(matches_definition(after_write, w, 4, 0.5));
  EXPECT_EQ(spaces::compress_weight(w, 4, 0.5).value().data(), after_write.value().data());
  const_cast<float*>(std::as_const(w).value().data())[8] = -9.0f;  // an uncounted write...
  nn::weights_changed();                                           // ...announced
  const nn::Var after_announce = spaces::compress_weight(w, 4, 0.5);
  EXPECT_TRUE(matches_definition(after_announce, w, 4, 0.5));
  // Other settings are compressed for themselves.
  EXPECT_TRUE(matches_definition(spaces::compress_weight(w, 8, 0.25), w, 8, 0.25));
  EXPECT_TRUE(matches_definition(spaces::compress_weight(w, 4, 0.5), w, 4, 0.5));
  // A trainable weight next to it still trains through its own compression.
  nn::Var v = nn::parameter(init.clone());
  nn::AdamW opt({v}, nn::AdamWOptions{0.01f});
  for (int s = 0; s < 3; ++s) {
    opt.zero_grad();
    nn::backward(
        nn::sum(nn::mul(spaces::compress_weight(v, 4, 0.5), spaces::compress_weight(w, 4, 0.5))));
    opt.step();
    EXPECT_TRUE(matches_definition(spaces::compress_weight(v, 4, 0.5), v, 4, 0.5)) << s;
  }
  EXPECT_TRUE(matches_definition(spaces::compress_weight(w, 4, 0.5), w, 4, 0.5));
}

// A frozen weight unfrozen, trained and frozen again, with settings that alternate and no-grad
// sessions in between: every result is the definition's.
TEST(Compress, FrozenWeightAcrossUnfreezingSettingsAndSessions) {
  nn::Var w = nn::constant(normal_weight(32, 64, 6));
  auto fresh = [&](int bits, double prune) {
    return matches_definition(spaces::compress_weight(w, bits, prune), w, bits, prune);
  };
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(fresh(4, 0.5));
  w.set_requires_grad(true);
  nn::Sgd opt({w}, nn::SgdOptions{0.5f, 0.9f, false, 0.0f});
  for (int s = 0; s < 4; ++s) {
    opt.zero_grad();
    nn::Var c = spaces::compress_weight(w, 4, 0.5);
    nn::backward(nn::sum(nn::mul(c, c)));
    opt.step();
    EXPECT_TRUE(fresh(4, 0.5)) << "trained, step " << s;
  }
  w.set_requires_grad(false);
  for (int s = 0; s < 6; ++s) {
    const int bits = s % 2 ? 8 : 4;
    const double prune = s % 3 ? 0.25 : 0.5;
    EXPECT_TRUE(fresh(bits, prune)) << s;
    {  // (a session holds its weights fixed: writes go between sessions)
      nn::NoGradGuard session;
      EXPECT_TRUE(fresh(bits, prune)) << s;
      EXPECT_TRUE(fresh(8, 0.25)) << s;
    }
    w.value().data()[s] += 3.0f;  // (counted)
    EXPECT_TRUE(fresh(bits, prune)) << s;
    EXPECT_TRUE(fresh(8, 0.25)) << s;
  }
}

// Quantisation multiplies by the reciprocal of the scale and divides only where the product lies
// within a few ulp of a half-integer: values at, just under and just over (j + 1/2) * scale, for
// every level j and every bit width, round exactly as std::round(v / scale) does.
TEST(Compress, QuantisationRoundsHalfIntegersAsDivisionDoes) {
  for_each_kernel_family([](const std::string& family) {
    for (int bits : {2, 4, 8, 12, 15}) {
      const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
      for (float maxabs : {1.0f, 0.7f, 0.0123f, 3.3e-3f, 1.7e-37f}) {
        const float scale = maxabs / qmax;
        std::vector<float> row = {maxabs};
        for (int j = -static_cast<int>(qmax); j < static_cast<int>(qmax); ++j) {
          const float v = (static_cast<float>(j) + 0.5f) * scale;
          for (float u : {v, std::nextafter(v, 0.0f), std::nextafter(v, 2 * v),
                          std::nextafter(std::nextafter(v, 0.0f), 0.0f)})
            if (std::fabs(u) <= maxabs) row.push_back(u);
        }
        const auto n = static_cast<std::int64_t>(row.size());
        nn::Var w = nn::parameter(nn::Tensor::from(nn::Shape{1, static_cast<int>(n)}, row));
        const std::vector<float> got = spaces::compress_weight(w, bits, 0.0).value().to_vector();
        for (std::int64_t i = 0; i < n; ++i) {
          const float want = std::round(row[i] / scale) * scale;
          ASSERT_EQ(std::bit_cast<std::uint32_t>(got[i]), std::bit_cast<std::uint32_t>(want))
              << family << " bits " << bits << " maxabs " << maxabs << " v " << row[i];
        }
      }
    }
  });
}

// 1 bit has no symmetric levels (2^0 - 1 = 0): one clear error instead of unquantised or NaN
// values.  2 bits (levels -1, 0, 1) is the fewest allowed.
TEST(Compress, OneBitIsRejectedWithTheFix) {
  nn::Var w = nn::parameter(nn::Tensor::from(nn::Shape{2, 2}, {0.5f, -0.25f, 0.1f, 1.0f}));
  try {
    spaces::compress_weight(w, 1, 0.0);
    FAIL() << "1 bit accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("bits 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("use 2 to 8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(spaces::quantisation_scales(w.value(), 0), std::invalid_argument);
  EXPECT_EQ(spaces::compress_weight(w, 2, 0.0).value().to_vector(),
            (std::vector<float>{0.5f, -0.5f, 0.0f, 1.0f}));
}

// A channel whose largest magnitude is a subnormal (max / qmax flushes to 0) gets scale 1, as an
// all-zero one: its entries round to zero instead of becoming NaN, in the scales and in the
// compressed weight alike, pruned or not.
TEST(Compress, SubnormalChannelRoundsToZeroNotNan) {
  const float tiny = std::numeric_limits<float>::denorm_min();
  nn::Var w =
      nn::parameter(nn::Tensor::from(nn::Shape{2, 3}, {tiny, 2 * tiny, -tiny, 1.0f, -0.5f, 0.25f}));
  EXPECT_EQ(spaces::quantisation_scales(w.value(), 8)[0], 1.0f);
  for (double prune : {0.0, 1.0 / 6}) {
    const std::vector<float> q = spaces::compress_weight(w, 8, prune).value().to_vector();
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(std::fabs(q[i]), 0.0f) << "prune " << prune << " entry " << i;
    EXPECT_EQ(q[3], 1.0f);
  }
}
