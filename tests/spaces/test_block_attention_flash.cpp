// The `impl` choice of the attention blocks (spaces/blocks/block_attention.cpp): flash builds the
// same function as standard (outputs and gradients of the built models agree), its workload moves
// O(L d) bytes instead of O(L^2) in three kernels, and a roofline GPU prices the difference at
// L = 4096 exactly as computed by hand below.
#include <gtest/gtest.h>

#include "hwmodels/device.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/spaces/block_test_util.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;
using namespace hwnas::spaces::testing;

namespace {

struct Out {
  nn::Tensor y;
  std::vector<nn::Tensor> grads;
};

Out forward_backward(const std::string& kind, json p, const std::string& impl,
                     const nn::Tensor& x) {
  p["impl"] = impl;
  Genome g = one_block(kind, TensorType::sequence(x.dim(1), x.dim(2)), p);
  auto model = build_model(g, 11);  // same seed: same weights for both impls
  nn::ForwardContext ctx;
  nn::Var xv = nn::parameter(x.clone());
  nn::Var y = model->forward(xv, ctx);
  std::mt19937_64 rng(2);
  nn::backward(nn::sum(nn::mul(y, nn::constant(nn::testing::random_tensor(y.shape(), rng)))));
  Out o{y.value().clone(), {xv.grad().clone()}};
  std::vector<nn::Var> params;
  model->collect_parameters(params);
  for (const auto& q : params) o.grads.push_back(q.grad().clone());
  return o;
}

}  // namespace

TEST(AttentionImpl, FlashIsTheSameFunctionAsStandard) {
  std::mt19937_64 rng(1);
  const nn::Tensor x = nn::testing::random_tensor(nn::Shape{2, 70, 8}, rng);
  for (const auto& [kind, p] :
       {std::pair<std::string, json>{"attention", {{"heads", 2}}},
        std::pair<std::string, json>{"attention", {{"heads", 4}, {"causal", true}}},
        std::pair<std::string, json>{"sliding_attention", {{"heads", 2}, {"window", 9}}},
        std::pair<std::string, json>{"sliding_attention",
                                     {{"heads", 1}, {"window", 3}, {"causal", true}}}}) {
    SCOPED_TRACE(kind + " " + p.dump());
    const Out a = forward_backward(kind, p, "standard", x);
    const Out b = forward_backward(kind, p, "flash", x);
    nn::testing::expect_close(b.y, a.y, 1e-5f);
    ASSERT_EQ(a.grads.size(), b.grads.size());
    for (std::size_t i = 0; i < a.grads.size(); ++i)
      nn::testing::expect_close(b.grads[i], a.grads[i], 1e-4f);
  }
}

TEST(AttentionImpl, ParamDomainAndBadValue) {
  const BlockKind& k = catalogue().at("attention");
  EXPECT_EQ(k.find_param("impl")->domain_str(), "{standard,flash}");
  EXPECT_NE(k.check_params({{"impl", "fast"}}).find("impl"), std::string::npos);
}

TEST(AttentionImpl, WorkloadBytesAndKernelsByHand) {
  // L = 6, D = 8, heads 2, full: 36 pairs.  Standard adds S and P written and read (2 heads x
  // 36 pairs x 4 bytes, twice each way); flash moves only the sequence in and out.
  const TensorType seq = TensorType::sequence(6, 8);
  const hw::NodeWorkload s =
      build_workload(one_block("attention", seq, {{"heads", 2}})).nodes.at(0);
  const hw::NodeWorkload f =
      build_workload(one_block("attention", seq, {{"heads", 2}, {"impl", "flash"}})).nodes.at(0);
  EXPECT_DOUBLE_EQ(s.input_bytes, 6 * 8 * 4 + 2 * 2 * 36 * 4);
  EXPECT_DOUBLE_EQ(s.output_bytes, 6 * 8 * 4 + 2 * 2 * 36 * 4);
  EXPECT_DOUBLE_EQ(f.input_bytes, 6 * 8 * 4);
  EXPECT_DOUBLE_EQ(f.output_bytes, 6 * 8 * 4);
  EXPECT_EQ(s.kernels, 5);
  EXPECT_EQ(f.kernels, 3);
  EXPECT_DOUBLE_EQ(f.macs, s.macs);
  // One query tile x one key tile of 6 rows, 2 heads, (4 + 3) per rescale.
  EXPECT_DOUBLE_EQ(f.other_flops - s.other_flops, 2.0 * 6 * (4 + 3));
  EXPECT_EQ(f.category, hw::OpCategory::Attention);
}

TEST(AttentionImpl, RooflineGpuLatencyAtL4096ByHand) {
  const json gpu = {{"name", "hand_gpu"},
                    {"family", "gpu"},
                    {"batch", 1},
                    {"peak_flops", {{"fp32", 1e14}, {"fp16", 4e14}, {"int8", 8e14}}},
                    {"vector_flops", 1e13},
                    {"mem_bw", 1e12},
                    {"mem_efficiency", 1.0},
                    {"efficiency", {{"default", 0.5}}},
                    {"launch_s", 5e-6},
                    {"memory_bytes", 1e12},
                    {"power", {{"idle_w", 10}, {"tdp_w", 110}}}};
  auto dev = hw::make_device(gpu);
  const TensorType seq = TensorType::sequence(4096, 64);
  const double L = 4096, d = 64, H = 4;
  // Both: MACs 4 L d^2 + 2 L^2 d = 2214592512; other 5 L^2 H + 4 L d = 336592896.
  const double macs = 4 * L * d * d + 2 * L * L * d, other = 5 * L * L * H + 4 * L * d;
  ASSERT_DOUBLE_EQ(macs, 2214592512.0);
  const double weights = (4 * d * d + 4 * d) * 4;  // 66560 bytes
  // Standard: memory bound.  bytes = weights + 2 (L d 4 + 2 H L^2 4) = 1075905536;
  // t = 1075905536 / 1e12 + 5 kernels x 5 us = 1.100905536 ms.
  const double std_bytes = weights + 2 * (L * d * 4 + 2 * H * L * L * 4);
  ASSERT_DOUBLE_EQ(std_bytes, 1075905536.0);
  const double std_ms = (std_bytes / 1e12 + 5 * 5e-6) * 1e3;
  // Flash: compute bound.  Rescales: 64 query tiles x 64 key tiles x 64 rows x 4 heads x
  // (16 + 3) = 19922944 flops; t = (2 macs + other + rescale) / (0.5 x 1e14) + 3 x 5 us
  // = 0.110714 ms.
  const double flash_flops = 2 * macs + other + 64.0 * 64 * 64 * H * (d / H + 3);
  const double flash_ms = (flash_flops / (0.5 * 1e14) + 3 * 5e-6) * 1e3;
  const double std_model =
      dev->estimate(build_workload(one_block("attention", seq, {{"heads", 4}}))).latency_ms;
  const double flash_model =
      dev->estimate(build_workload(one_block("attention", seq, {{"heads", 4}, {"impl", "flash"}})))
          .latency_ms;
  std::printf("L=4096 roofline: standard %.4f ms, flash %.4f ms\n", std_model, flash_model);
  EXPECT_NEAR(std_model, std_ms, 1e-9);
  EXPECT_NEAR(std_model, 1.100905536, 1e-9);
  EXPECT_NEAR(flash_model, flash_ms, 1e-9);
  EXPECT_NEAR(flash_model, 0.11071401728, 1e-9);
  EXPECT_GT(std_model / flash_model, 9.0);
}
