// flash_attention (nn/ops_flash_attention.cpp): forward and backward equal the standard ops
// (multi_head_attention, sliding_window_attention) to 1e-5 over full / causal / windowed masks
// and tile sizes that do and do not divide L; finite-difference gradients; thread-count
// determinism; bounded memory at L = 16384 (no L x L buffer); one test per rejected input.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>

#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {

using testing::random_tensor;

struct Grads {
  Tensor out, dq, dk, dv;
};

// Forward + backward of sum(out * proj) for the standard or the flash op.
Grads run(bool flash, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& proj,
          const FlashOptions& o) {
  Var Q = parameter(q.clone()), K = parameter(k.clone()), V = parameter(v.clone());
  Var y;
  if (flash)
    y = flash_attention(Q, K, V, o);
  else if (o.window > 0)
    y = sliding_window_attention(Q, K, V, o.heads, o.window, o.causal);
  else
    y = multi_head_attention(Q, K, V, o.heads, o.causal);
  backward(sum(mul(y, constant(proj))));
  return {y.value().clone(), Q.grad().clone(), K.grad().clone(), V.grad().clone()};
}

void expect_all_close(const Tensor& a, const Tensor& b, float tol) {
  ASSERT_EQ(a.shape(), b.shape());
  for (std::int64_t i = 0; i < a.numel(); ++i)
    ASSERT_NEAR(a.data()[i], b.data()[i], tol) << "element " << i;
}

TEST(FlashAttention, EqualsStandardForwardAndBackward) {
  std::mt19937_64 rng(3);
  for (const int L : {1, 7, 33, 64}) {
    for (const bool causal : {false, true}) {
      for (const int window : {0, 1, 5}) {
        for (const auto& [bq, bk] : {std::pair{64, 64}, std::pair{4, 8}, std::pair{5, 3}}) {
          SCOPED_TRACE("L " + std::to_string(L) + " causal " + std::to_string(causal) + " window " +
                       std::to_string(window) + " tiles " + std::to_string(bq) + "x" +
                       std::to_string(bk));
          const Shape s{2, L, 8};
          const Tensor q = random_tensor(s, rng), k = random_tensor(s, rng),
                       v = random_tensor(s, rng), proj = random_tensor(s, rng);
          FlashOptions o{2, causal, window, bq, bk};
          const Grads a = run(false, q, k, v, proj, o), b = run(true, q, k, v, proj, o);
          expect_all_close(b.out, a.out, 1e-5f);
          expect_all_close(b.dq, a.dq, 1e-5f);
          expect_all_close(b.dk, a.dk, 1e-5f);
          expect_all_close(b.dv, a.dv, 1e-5f);
        }
      }
    }
  }
}

TEST(FlashAttention, CrossAttentionWithDifferentKeyLength) {
  std::mt19937_64 rng(4);
  const Tensor q = random_tensor(Shape{1, 5, 4}, rng), k = random_tensor(Shape{1, 9, 4}, rng),
               v = random_tensor(Shape{1, 9, 4}, rng), proj = random_tensor(Shape{1, 5, 4}, rng);
  FlashOptions o{2, false, 0, 2, 4};
  const Grads a = run(false, q, k, v, proj, o), b = run(true, q, k, v, proj, o);
  expect_all_close(b.out, a.out, 1e-5f);
  expect_all_close(b.dk, a.dk, 1e-5f);
}

TEST(FlashAttention, GradientsMatchFiniteDifferences) {
  std::mt19937_64 rng(5);
  for (const FlashOptions& o : {FlashOptions{2, false, 0, 3, 2}, FlashOptions{1, true, 0, 2, 2},
                                FlashOptions{2, true, 3, 4, 3}, FlashOptions{1, false, 2, 2, 5}}) {
    const Shape s{2, 6, 4};
    testing::expect_gradients_match(
        [o](const std::vector<Var>& v) { return flash_attention(v[0], v[1], v[2], o); },
        {random_tensor(s, rng), random_tensor(s, rng), random_tensor(s, rng)});
  }
}

TEST(FlashAttention, SameBitsWhateverTheThreadCount) {
  std::mt19937_64 rng(6);
  const Shape s{3, 40, 8};
  const Tensor q = random_tensor(s, rng), k = random_tensor(s, rng), v = random_tensor(s, rng),
               proj = random_tensor(s, rng);
  Grads one, many;
  {
    ThreadBudget b(1);
    one = run(true, q, k, v, proj, {4, true, 0, 16, 16});
  }
  {
    ThreadBudget b(4);
    many = run(true, q, k, v, proj, {4, true, 0, 16, 16});
  }
  for (std::int64_t i = 0; i < one.out.numel(); ++i) {
    ASSERT_EQ(one.out.data()[i], many.out.data()[i]);
    ASSERT_EQ(one.dq.data()[i], many.dq.data()[i]);
    ASSERT_EQ(one.dk.data()[i], many.dk.data()[i]);
  }
}

// Peak resident memory of this process in bytes since the last reset_peak_rss().
std::int64_t peak_rss() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}
std::int64_t current_rss() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}
// Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  return static_cast<bool>(f);
}

TEST(FlashAttention, LongSequenceRunsInBoundedMemory) {
  // L = 16384: one L x L float matrix is 1 GiB; flash forward + backward must stay within a few
  // MiB of the inputs (q, k, v, their gradients and the output: 6 x L x d floats = 3 MiB).
  const int L = 16384, d = 8;
  std::mt19937_64 rng(7);
  const Shape s{1, L, d};
  Var q = parameter(random_tensor(s, rng)), k = parameter(random_tensor(s, rng)),
      v = parameter(random_tensor(s, rng));
  if (!reset_peak_rss()) GTEST_SKIP() << "/proc/self/clear_refs not writable";
  const std::int64_t before = current_rss();
  Var y = flash_attention(q, k, v, {1, true, 0, 128, 128});
  backward(sum(y));
  const std::int64_t grown = peak_rss() - before;
  std::printf("flash L=%d: peak RSS grew by %.1f MiB (one L x L matrix: %.0f MiB)\n", L,
              grown / 1048576.0, double(L) * L * 4 / 1048576.0);
  EXPECT_LT(grown, 64LL << 20);
  EXPECT_TRUE(std::isfinite(q.grad().data()[0]));
}

TEST(FlashAttention, RejectsBadInputs) {
  const Var a = constant(Tensor::zeros(Shape{1, 4, 4}));
  const Var b = constant(Tensor::zeros(Shape{1, 5, 4}));
  testing::expect_invalid(
      [&] {
        flash_attention(a, a, a, {3, false, 0, 4, 4});
      },
      "flash_attention: heads 3 must be >= 1 and divide d_model 4");
  testing::expect_invalid(
      [&] {
        flash_attention(a, a, a, {1, false, -1, 4, 4});
      },
      "flash_attention: window must be >= 0 (0 = full), got -1");
  testing::expect_invalid(
      [&] {
        flash_attention(a, a, a, {1, false, 0, 0, 4});
      },
      "flash_attention: block sizes must be >= 1, got block_q 0, block_k 4");
  testing::expect_invalid(
      [&] {
        flash_attention(a, b, b, {1, true, 0, 4, 4});
      },
      "flash_attention: causal or windowed attention needs equal query and "
      "key lengths");
  testing::expect_invalid(
      [&] {
        flash_attention(a, b, a, {1, false, 0, 4, 4});
      },
      "flash_attention: k and v shapes differ");
  testing::expect_invalid(
      [&] {
        flash_attention(constant(Tensor::zeros(Shape{4, 4})), a, a, {1, false, 0, 4, 4});
      },
      "flash_attention: q, k, v must be [B, L, d_model]");
}

}  // namespace
}  // namespace hwnas::nn
