// The titans and svf blocks (spaces/blocks/block_titans.cpp, block_svf.cpp): shape rule and
// error messages, parameter counts against the built modules, workload counts by hand,
// finite-difference gradients on inputs and every parameter through the built models, and the
// Titans memory's associative loss falling along a sequence (activity series).  Training runs
// are in tests/evaluators/test_memory_learning.cpp (Titans) and tests/nn/test_svf.cpp (SVF).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "nn/activity.hpp"
#include "nn/titans.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/spaces/block_test_util.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;
using namespace hwnas::spaces::testing;

TEST(BlockMemory, TitansShapeRuleAndErrors) {
  const TensorType seq = TensorType::sequence(9, 6);
  const BlockKind& k = catalogue().at("titans");
  EXPECT_EQ(k.infer({seq}, k.resolve({{"heads", 2}})), seq);
  EXPECT_FALSE(k.accepts_kind(DataKind::Image));
  EXPECT_FALSE(k.accepts_kind(DataKind::Vector));
  nn::testing::expect_invalid(
      [&] {
        k.infer({seq}, k.resolve({{"bits", 8}}));
      },
      "titans: bits and prune are not supported yet; use bits 32, prune 0");
  nn::testing::expect_invalid(
      [&] {
        k.infer({seq}, k.resolve({{"heads", 4}}));
      },
      "titans: model dimension 6 not divisible by heads 4");
  nn::testing::expect_invalid(
      [&] {
        k.infer({seq}, k.resolve({{"segment", 8}, {"chunk", 16}}));
      },
      "titans: chunk 16 larger than segment 8; choose chunk <= segment");
  EXPECT_NE(k.check_params({{"persistent", 3}}).find("persistent"), std::string::npos);
  EXPECT_NE(k.check_params({{"memory_depth", 3}}).find("memory_depth"), std::string::npos);
}

TEST(BlockMemory, SvfShapeRuleAndErrors) {
  const BlockKind& k = catalogue().at("svf");
  EXPECT_EQ(k.infer({TensorType::sequence(9, 6)}, k.resolve({{"units", 5}})),
            TensorType::sequence(9, 5));
  EXPECT_EQ(k.infer({TensorType::vector(6)}, k.resolve({{"units", 3}})), TensorType::vector(3));
  EXPECT_FALSE(k.accepts_kind(DataKind::Image));
  nn::testing::expect_invalid(
      [&] {
        k.infer({TensorType::vector(6)}, k.resolve({{"experts", 2}, {"expert", 2}}));
      },
      "svf: expert 2 out of range for experts 2; choose expert < experts");
  nn::testing::expect_invalid(
      [&] {
        k.infer({TensorType::vector(6)}, k.resolve({{"prune", 0.5}}));
      },
      "svf: bits and prune are not supported yet");
  EXPECT_NE(k.check_params({{"experts", 3}}).find("experts"), std::string::npos);
  EXPECT_NE(k.check_params({{"dispatch", "prompt"}}).find("dispatch"), std::string::npos);
}

TEST(BlockMemory, TitansCountsByHand) {
  // L = 10, d = 4, segment 4 (segments of 4, 4, 2), chunk 2 (2 + 2 + 1 chunks), 4 persistent
  // tokens, depth 1.  Query i of an n-token segment sees 4 + 2 (i + 1) keys: 36, 36, 14 pairs.
  Genome g = one_block("titans", TensorType::sequence(10, 4),
                       {{"memory_depth", 1}, {"segment", 4}, {"chunk", 2}, {"persistent", 4}});
  const hw::NodeWorkload w = build_workload(g).nodes.at(0);
  const double d2 = 16, pairs = 36 + 36 + 14;
  const double attn = 4 * 10 * d2 + 2 * 4 * d2 + 2 * 10 * d2 + 2 * pairs * 4;
  const double mem = 4 * 10 * d2 + 3 * 10 * 4 + 2 * 10 * d2 + 2 * 10 * d2;
  EXPECT_DOUBLE_EQ(w.macs, attn + mem);
  const double params = (4 * d2 + 4) + 4 * 4 + (3 * d2 + 3 * 4 + 3) + d2;
  EXPECT_DOUBLE_EQ(w.params, params);
  EXPECT_EQ(build_model(g, 1)->num_parameters(), static_cast<std::int64_t>(params));
  EXPECT_EQ(w.category, hw::OpCategory::Memory);
  EXPECT_EQ(w.timesteps, 5);
  EXPECT_EQ(w.kernels, 7);
  EXPECT_EQ(w.seq_len, 10);
  EXPECT_GT(w.other_flops, 0);

  // Depth 2: the memory passes cost 2 d^2 per token and the inner step 5 d^2.
  Genome g2 = one_block("titans", TensorType::sequence(10, 4),
                        {{"memory_depth", 2}, {"segment", 4}, {"chunk", 2}, {"persistent", 4}});
  const hw::NodeWorkload w2 = build_workload(g2).nodes.at(0);
  EXPECT_DOUBLE_EQ(w2.macs, attn + 4 * 10 * d2 + 3 * 10 * 4 + 2 * 2 * 10 * d2 + 5 * 10 * d2);
  EXPECT_DOUBLE_EQ(w2.params, params + d2);
  EXPECT_EQ(build_model(g2, 1)->num_parameters(), static_cast<std::int64_t>(params + d2));

  // Without memory and persistent tokens: causal segment attention only (10 + 10 + 3 pairs).
  Genome g0 = one_block("titans", TensorType::sequence(10, 4),
                        {{"memory", false}, {"segment", 4}, {"chunk", 2}, {"persistent", 0}});
  const hw::NodeWorkload w0 = build_workload(g0).nodes.at(0);
  EXPECT_DOUBLE_EQ(w0.macs, 4 * 10 * d2 + 2 * 23 * 4);
  EXPECT_DOUBLE_EQ(w0.params, 4 * d2 + 4);
  EXPECT_EQ(build_model(g0, 1)->num_parameters(), 4 * 16 + 4);
  EXPECT_EQ(w0.timesteps, 1);
  EXPECT_EQ(w0.kernels, 3);
}

TEST(BlockMemory, SvfCountsByHand) {
  // Sequence 6 x 4 -> 3 units (rank 3), 2 experts with a classifier, relu, bias.
  Genome g = one_block("svf", TensorType::sequence(6, 4),
                       {{"units", 3}, {"experts", 2}, {"activation", "relu"}});
  const hw::NodeWorkload w = build_workload(g).nodes.at(0);
  // GEMM 6*4*3; classifier 4*2; mixture 2*3; reconstruction U diag V^T 3*4*3.
  EXPECT_DOUBLE_EQ(w.macs, 72 + 8 + 6 + 36);
  const double params = 2 * 3 + 4 * 2 + 2;
  EXPECT_DOUBLE_EQ(w.params, params);
  EXPECT_EQ(build_model(g, 1)->num_parameters(), static_cast<std::int64_t>(params));
  // Stored: U (3x3), sigma (3), V (4x3), experts + classifier (16), bias (3), fp32.
  EXPECT_DOUBLE_EQ(w.weight_bytes, (9 + 3 + 12 + 16 + 3) * 4.0);
  // Bias and relu per output, mean token, classifier bias, softmax, sigma * z.
  EXPECT_DOUBLE_EQ(w.other_flops, 6 * 3 * 2 + 6 * 4 + 2 + 5 * 2 + 3);
  EXPECT_EQ(w.category, hw::OpCategory::Dense);
  EXPECT_EQ(w.kernels, 4);
  EXPECT_EQ(w.kernels_eager(), 5);

  // A fixed expert: W' is built once at deployment; only the GEMM per input.
  Genome f = one_block(
      "svf", TensorType::vector(5),
      {{"units", 7}, {"experts", 4}, {"dispatch", "fixed"}, {"expert", 3}, {"bias", false}});
  const hw::NodeWorkload wf = build_workload(f).nodes.at(0);
  EXPECT_DOUBLE_EQ(wf.macs, 35);
  EXPECT_DOUBLE_EQ(wf.params, 4 * 5);
  EXPECT_EQ(build_model(f, 1)->num_parameters(), 20);
  EXPECT_DOUBLE_EQ(wf.weight_bytes, 35 * 4.0);
  EXPECT_EQ(wf.kernels, 1);
}

TEST(BlockMemory, GradientsThroughBuiltModels) {
  check_gradients("titans", {{"segment", 4}, {"chunk", 2}, {"persistent", 4}},
                  TensorType::sequence(7, 4));
  check_gradients(
      "titans",
      {{"heads", 1}, {"memory_depth", 1}, {"segment", 4}, {"chunk", 4}, {"persistent", 0}},
      TensorType::sequence(6, 4));
  check_gradients("titans", {{"memory", false}, {"segment", 4}, {"chunk", 2}},
                  TensorType::sequence(6, 4));
  check_gradients("svf", {{"units", 3}, {"experts", 2}, {"activation", "tanh"}},
                  TensorType::sequence(4, 5));
  check_gradients("svf", {{"units", 6}, {"experts", 4}}, TensorType::vector(3));
  check_gradients("svf", {{"units", 3}, {"experts", 2}, {"dispatch", "fixed"}, {"expert", 1}},
                  TensorType::vector(4));
}

TEST(BlockMemory, TitansAssociativeLossFallsAlongTheSequence) {
  // 256 tokens, chunks of 8 in segments of 32: the memory's loss ||M(k) - v||^2 before each
  // chunk's update, averaged over a batch (untrained block, random input).  Inside every
  // segment it falls chunk by chunk as the memory is written (the first chunk of a segment is
  // high again: its tokens' attention outputs y, hence keys and values, differ from the rest
  // of the segment's, since they see few tokens); and the first segment, read from the initial
  // memory, is above the later ones, read from a memory already written.
  Genome g = one_block("titans", TensorType::sequence(256, 16),
                       {{"segment", 32}, {"chunk", 8}, {"memory_depth", 1}});
  auto model = build_model(g, 3);
  std::mt19937_64 rng(5);
  nn::ActivityRecorder rec;
  nn::ForwardContext ctx;
  ctx.training = false;
  ctx.recorder = &rec;
  nn::NoGradGuard ng;
  (void)model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{4, 256, 16}, rng)), ctx);
  const hw::Workload wl = build_workload(g, &rec);
  const std::vector<double>* s = wl.nodes.at(0).activity.find_series(nn::kTitansInnerLoss);
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->size(), 32u);
  double first_chunk = 0, last_chunk = 0, first_segment = 0, later_segments = 0;
  for (int seg = 0; seg < 8; ++seg) {
    first_chunk += (*s)[seg * 4] / 8;
    last_chunk += (*s)[seg * 4 + 3] / 8;
    for (int c = 0; c < 4; ++c) (seg == 0 ? first_segment : later_segments) += (*s)[seg * 4 + c];
  }
  first_segment /= 4;
  later_segments /= 28;
  std::printf("titans associative loss per chunk:");
  for (double v : *s) std::printf(" %.3f", v);
  std::printf(
      "\ntitans associative loss: chunk 1 of 4 %.3f, chunk 4 of 4 %.3f (mean over segments); "
      "first segment %.3f, later segments %.3f\n",
      first_chunk, last_chunk, first_segment, later_segments);
  EXPECT_LT(last_chunk, 0.3 * first_chunk);
  EXPECT_LT(later_segments, 0.8 * first_segment);
}
