// The moe block kind (spaces/blocks/block_moe.cpp): shape rule and refused parameters, workload
// counts by hand, parameters against the built module, activity recorded through a model into
// the workload, and what the devices charge: k of E experts' compute, every expert's weights.
#include <gtest/gtest.h>

#include <functional>

#include "hwmodels/device.hpp"
#include "nn/moe.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/spaces/block_test_util.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;
using namespace hwnas::spaces::testing;

TEST(BlockMoe, ShapeRuleAndRefusedParams) {
  const BlockKind& k = catalogue().at("moe");
  const TensorType seq = TensorType::sequence(7, 5), vec = TensorType::vector(6);
  EXPECT_EQ(k.infer({seq}, k.resolve(json::object())), seq);
  EXPECT_EQ(k.infer({vec}, k.resolve({{"experts", 8}, {"k", 2}})), vec);
  EXPECT_FALSE(k.accepts_kind(DataKind::Image));
  EXPECT_EQ(k.check_params({{"experts", 3}}), "param 'experts' = 3 not in {2,4,8,16}");
  EXPECT_EQ(k.check_params({{"k", 4}}), "param 'k' = 4 not in {1,2}");
  EXPECT_NE(k.check_params({{"overflow", "reroute"}}), "");
  EXPECT_NE(k.check_params({{"capacity_factor", 0.5}}), "");
  EXPECT_EQ(k.infer({seq}, k.resolve({{"experts", 2}, {"k", 2}})), seq);  // k == experts is fine
}

TEST(BlockMoe, KLargerThanExpertsIsRefusedWithTheFix) {
  // The domains allow k = 2 with experts = 2 only; a hand-written genome may still ask for more
  // through the layer, which says what to change.
  std::mt19937_64 rng(1);
  nn::MoeOptions o;
  o.experts = 2;
  o.k = 3;
  expect_message([&] { nn::MoeLayer(4, o, rng); }, "choose fewer active experts or more experts");
}

TEST(BlockMoe, WorkloadCountsByHand) {
  // L = 8, d = 16, E = 8, k = 2, hidden 64, relu.
  Genome g =
      one_block("moe", TensorType::sequence(8, 16), {{"experts", 8}, {"k", 2}, {"hidden", 64}});
  const hw::NodeWorkload w = build_workload(g).nodes.at(0);
  EXPECT_EQ(w.category, hw::OpCategory::Routing);
  // Router 8 * 16 * 8 = 1024; experts 8 tokens * 2 * (16*64 + 64*16) = 32768.
  EXPECT_DOUBLE_EQ(w.routed_macs, 32768);
  EXPECT_DOUBLE_EQ(w.macs, 1024 + 32768);
  // All eight experts would compute 8 * 8 * 2048 = 131072: the routed part is k / E of it.
  EXPECT_DOUBLE_EQ(w.routed_macs / 131072, 2.0 / 8.0);
  // Per chosen expert and token: biases 64 + 16, relu 64, gate and combine 2 * 16 = 176;
  // router: 8 tokens * 8 logits * (5 + k) = 448.
  EXPECT_DOUBLE_EQ(w.routed_other_flops, 8 * 2 * 176);
  EXPECT_DOUBLE_EQ(w.other_flops, 448 + 8 * 2 * 176);
  // Router 16 * 8 + 8, each expert 2 * 16 * 64 + 64 + 16 = 2128: all eight are held.
  EXPECT_DOUBLE_EQ(w.params, 136 + 8 * 2128);
  EXPECT_DOUBLE_EQ(w.weight_bytes, (136 + 8 * 2128) * 4.0);
  EXPECT_DOUBLE_EQ(w.total_experts, 8);
  EXPECT_DOUBLE_EQ(w.nominal_active_experts, 2);
  EXPECT_EQ(w.kernels, 4 + 2 * 8);
  EXPECT_EQ(w.eager_kernels, 5 + 8 * 4);
  EXPECT_EQ(w.seq_len, 8);
  EXPECT_EQ(build_model(g, 1)->num_parameters(), 136 + 8 * 2128);

  // A single vector token with k = 1 of 4 experts: only one expert's kernels.
  Genome v = one_block("moe", TensorType::vector(16), {{"experts", 4}, {"hidden", 8}});
  const hw::NodeWorkload wv = build_workload(v).nodes.at(0);
  EXPECT_DOUBLE_EQ(wv.macs, 16 * 4 + 2 * 16 * 8);
  EXPECT_EQ(wv.kernels, 4 + 2);
  EXPECT_EQ(wv.seq_len, 0);
}

TEST(BlockMoe, ModelRecordsRoutingActivityIntoTheWorkload) {
  Genome g =
      one_block("moe", TensorType::sequence(6, 4), {{"experts", 4}, {"k", 2}, {"hidden", 5}});
  auto model = build_model(g, 3);
  std::mt19937_64 rng(5);
  nn::ActivityRecorder rec;
  nn::ForwardContext ctx;
  ctx.training = false;
  ctx.recorder = &rec;
  (void)model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{3, 6, 4}, rng)), ctx);
  const hw::Workload wl = build_workload(g, &rec);
  const hw::NodeActivity& a = wl.nodes.at(0).activity;
  ASSERT_NE(a.find_series("tokens_per_expert"), nullptr);
  double per_sample = 0;
  for (double t : *a.find_series("tokens_per_expert")) per_sample += t;
  const double dropped = a.scalar_or("dropped_tokens", -1);
  // 6 tokens x 2 choices per sample, each processed or overflowed.
  EXPECT_NEAR(per_sample + dropped, 12, 1e-9);
  EXPECT_NEAR(a.scalar_or("active_experts", -1), per_sample / 6, 1e-9);
  EXPECT_LE(a.scalar_or("active_experts", -1), 2.0);
}

TEST(BlockMoe, DevicesChargeMeasuredActiveExpertsButHoldEveryExpert) {
  Genome g =
      one_block("moe", TensorType::sequence(8, 16), {{"experts", 8}, {"k", 2}, {"hidden", 64}});
  hw::Workload wl = build_workload(g);
  EXPECT_FALSE(hw::charge_measured_activity(wl).has_value());  // nothing measured
  // Measured 1.5 experts per token (a quarter of the second choices dropped at capacity).
  wl.nodes[0].activity.scalars["active_experts"] = 1.5;
  EXPECT_DOUBLE_EQ(hw::active_expert_scale(wl.nodes[0]), 0.75);
  const auto charged = hw::charge_measured_activity(wl);
  ASSERT_TRUE(charged.has_value());
  const hw::NodeWorkload& c = charged->nodes[0];
  EXPECT_DOUBLE_EQ(c.macs, 1024 + 0.75 * 32768);
  EXPECT_DOUBLE_EQ(c.other_flops, 448 + 0.75 * 8 * 2 * 176);
  EXPECT_DOUBLE_EQ(c.weight_bytes, wl.nodes[0].weight_bytes);
  EXPECT_EQ(c.kernels, wl.nodes[0].kernels);
  EXPECT_FALSE(hw::charge_measured_activity(*charged).has_value());  // idempotent
  // Round trip of the routing fields.
  EXPECT_EQ(hw::Workload::from_json(wl.to_json()).to_json(), wl.to_json());

  // On the MCU, compute at fp32 (0.1 MAC/cycle at 480 MHz) follows the charged MACs.
  auto mcu = hw::load_device("stm32h743");
  const double nominal_ms = mcu->estimate(build_workload(g)).latency_ms;
  const double measured_ms = mcu->estimate(wl).latency_ms;
  const double other_s = 1.0 / (0.5 * 480e6);
  EXPECT_NEAR(nominal_ms, ((1024 + 32768) / 48e6 + (448 + 2816) * other_s) * 1e3, 1e-9);
  EXPECT_NEAR(measured_ms, ((1024 + 24576) / 48e6 + (448 + 2112) * other_s) * 1e3, 1e-9);
}

TEST(BlockMoe, ManyExpertsOverflowMcuFlashWhileComputeStaysFlat) {
  // int8, L = 16, d = 128, hidden 512, k = 1: each expert holds 2*128*512 + 512 + 128 = 131712
  // bytes.  8 experts (1.05 MB) fit the STM32H743's 2 MB flash, 16 (2.11 MB) do not; the compute
  // per token is one expert either way (the router grows by 16 d MACs per token).
  auto mcu = hw::load_device("stm32h743");
  auto cost = [&](int experts) {
    return mcu->estimate(
        build_workload(one_block("moe", TensorType::sequence(16, 128),
                                 {{"experts", experts}, {"k", 1}, {"hidden", 512}, {"bits", 8}})));
  };
  const hw::Cost e2 = cost(2), e8 = cost(8), e16 = cost(16);
  EXPECT_TRUE(e2.feasible);
  EXPECT_TRUE(e8.feasible) << e8.infeasible_reason;
  EXPECT_FALSE(e16.feasible);
  EXPECT_NE(e16.infeasible_reason.find("> flash"), std::string::npos) << e16.infeasible_reason;
  EXPECT_NEAR(e16.extra.at("flash_bytes_used").get<double>(), 128 * 16 + 16 + 16 * 131712.0, 1);
  EXPECT_LT(e16.latency_ms / e2.latency_ms, 1.02);  // 8x the experts, < 2% more time
}

TEST(BlockMoe, VectorInputsAndCompressedExpertsTrain) {
  // Vectors [B, d]: every sample is one token.  With bits 8 and prune 0.5 every expert and the
  // router run through compress_weight, and the pruned half of a weight gets no gradient.
  Genome g = one_block("moe", TensorType::vector(6),
                       {{"experts", 2},
                        {"k", 2},
                        {"hidden", 4},
                        {"activation", "tanh"},
                        {"bits", 8},
                        {"prune", 0.5}});
  auto model = build_model(g, 4);
  std::mt19937_64 rng(3);
  nn::ActivityRecorder rec;
  nn::ForwardContext ctx;
  ctx.recorder = &rec;
  nn::Var y = model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{5, 6}, rng)), ctx);
  EXPECT_EQ(y.shape(), (nn::Shape{5, 6}));
  nn::backward(nn::sum(y));
  for (const auto& p : model->named_parameters()) {
    if (p.name.find("weight") == std::string::npos) continue;
    ASSERT_FALSE(p.var.grad().empty()) << p.name;
    int zeros = 0;
    for (std::int64_t i = 0; i < p.var.grad().numel(); ++i) zeros += p.var.grad().data()[i] == 0.0f;
    EXPECT_EQ(zeros, p.var.grad().numel() / 2) << p.name;
  }
  // k = E = 2 and capacity ceil(1.25 * 5 * 2 / 2) = 7 >= 5: both experts run for every token.
  const hw::Workload wl = build_workload(g, &rec);
  EXPECT_DOUBLE_EQ(wl.nodes.at(0).activity.scalar_or("active_experts", -1), 2.0);
  EXPECT_DOUBLE_EQ(wl.nodes.at(0).activity.scalar_or("dropped_tokens", -1), 0.0);
}
