// nn::LoraAdapter and nn::LoraLinear (nn/lora.hpp): finite-difference gradients on the input
// and on A and B, the frozen base left untouched by an optimizer step, merge equivalence, rank 0
// as a plain Linear, and the argument checks.
#include <gtest/gtest.h>

#include "nn/lora.hpp"
#include "nn/optim.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_close;
using testing::expect_gradients_match;
using testing::expect_invalid;
using testing::random_tensor;

// B is zero at initialisation (so dL/dA is zero); give it values to check A's gradient too.
void randomise_b(LoraLinear& l, std::mt19937_64& rng) {
  l.adapter()->b.value() = random_tensor(l.adapter()->b.shape(), rng);
}
bool same(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    if (a.data()[i] != b.data()[i]) return false;
  return true;
}
}  // namespace

TEST(Lora, GradientsOnInputAndAdapter) {
  std::mt19937_64 rng(1);
  LoraLinear l(5, 3, true, 2, 4.0, rng);
  randomise_b(l, rng);
  const Tensor x = random_tensor(Shape{4, 5}, rng);
  auto f = [&](const std::vector<Var>& v) {
    l.adapter()->a = v[1];
    l.adapter()->b = v[2];
    return l.forward(v[0]);
  };
  expect_gradients_match(f, {x, l.adapter()->a.value(), l.adapter()->b.value()});
}

TEST(Lora, StartsAtTheBaseFunctionAndFreezesIt) {
  std::mt19937_64 r1(7), r2(7);
  Linear plain(6, 4, true, r1);
  LoraLinear l(6, 4, true, 4, 8.0, r2);  // same draws for the base, then A
  EXPECT_TRUE(same(l.base.weight.value(), plain.weight.value()));
  std::mt19937_64 rng(3);
  const Var x = constant(random_tensor(Shape{3, 6}, rng));
  expect_close(l.forward(x).value(), plain.forward(x).value(), 1e-6f);  // B = 0
  EXPECT_FALSE(l.base.weight.requires_grad());
  EXPECT_FALSE(l.base.bias.requires_grad());
  EXPECT_TRUE(l.adapter()->a.requires_grad());

  // One AdamW step on every parameter: W and b unchanged, B moved.
  std::vector<Var> params;
  l.collect_parameters(params);
  ASSERT_EQ(params.size(), 4u);
  const Tensor w0 = l.base.weight.value().clone(), b0 = l.base.bias.value().clone();
  const Tensor bb0 = l.adapter()->b.value().clone();
  AdamW opt(params, AdamWOptions{});
  opt.zero_grad();
  backward(sum(mul(l.forward(x), l.forward(x))));
  opt.step();
  EXPECT_TRUE(same(l.base.weight.value(), w0));
  EXPECT_TRUE(same(l.base.bias.value(), b0));
  EXPECT_FALSE(same(l.adapter()->b.value(), bb0));
}

TEST(Lora, MergedLayerComputesTheSameFunction) {
  std::mt19937_64 rng(2);
  LoraLinear l(7, 5, true, 4, 16.0, rng);
  randomise_b(l, rng);
  const Var x = constant(random_tensor(Shape{2, 3, 7}, rng));
  const Tensor before = l.forward(x).value();
  // W' = W + (alpha / r) B A by hand.
  Tensor want = l.base.weight.value().clone();
  const Tensor& A = l.adapter()->a.value();
  const Tensor& B = l.adapter()->b.value();
  for (int o = 0; o < 5; ++o)
    for (int i = 0; i < 7; ++i)
      for (int r = 0; r < 4; ++r)
        want.data()[o * 7 + i] += 4.0f * B.data()[o * 4 + r] * A.data()[r * 7 + i];
  l.merge();
  EXPECT_TRUE(l.merged());
  expect_close(l.base.weight.value(), want, 1e-6f);
  expect_close(l.forward(x).value(), before, 1e-5f);
  l.merge();  // idempotent
  expect_close(l.forward(x).value(), before, 1e-5f);
  // Into rows of a fused weight (attention's QKV).
  Tensor fused = Tensor::zeros(Shape{12, 7});
  l.adapter()->merge_into(fused, 5);
  for (int i = 0; i < 5 * 7; ++i) EXPECT_FLOAT_EQ(fused.data()[i], 0.0f);
  expect_invalid([&] { l.adapter()->merge_into(fused, 8); },
                 "cannot take a [5, 7] update at row 8");
}

TEST(Lora, RankZeroIsAPlainLinear) {
  std::mt19937_64 r1(9), r2(9);
  Linear plain(4, 3, false, r1);
  LoraLinear l(4, 3, false, 0, 8.0, r2);
  EXPECT_FALSE(l.has_adapter());
  EXPECT_TRUE(l.base.weight.requires_grad());
  EXPECT_TRUE(same(l.base.weight.value(), plain.weight.value()));
  EXPECT_EQ(r1(), r2());  // no extra draws
  const auto named = l.named_parameters();
  ASSERT_EQ(named.size(), 1u);
  EXPECT_EQ(named[0].name, "weight");
  std::mt19937_64 rng(1);
  LoraLinear with(4, 3, true, 2, 8.0, rng);
  const auto n2 = with.named_parameters();
  ASSERT_EQ(n2.size(), 4u);
  EXPECT_EQ(n2[2].name, "lora_a");
  EXPECT_EQ(n2[3].name, "lora_b");
}

TEST(Lora, BadArgumentsNameTheField) {
  std::mt19937_64 rng(1);
  expect_invalid([&] { LoraLinear(4, 3, true, -1, 8.0, rng); }, "LoraLinear: rank must be >= 0");
  expect_invalid([&] { LoraAdapter(4, 3, 0, 8.0, rng); }, "LoraAdapter: rank must be >= 1");
  expect_invalid([&] { LoraAdapter(4, 3, 2, 0.0, rng); }, "LoraAdapter: alpha must be > 0");
}

}  // namespace hwnas::nn
