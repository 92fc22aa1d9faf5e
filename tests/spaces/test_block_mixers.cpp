// The hyena and ttt sequence mixers (spaces/blocks/block_hyena.cpp, block_ttt.cpp): shape rule
// and refused compression, parameter counts against the built modules, workload counts by hand,
// finite-difference gradients on inputs and every parameter through the built models, Hyena's
// causality and TTT's inner loss falling along a long sequence.  MQAR training runs are in
// tests/evaluators/test_mixer_learning.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "nn/activity.hpp"
#include "nn/parallel.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/spaces/block_test_util.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;
using namespace hwnas::spaces::testing;

TEST(BlockMixers, ShapeRuleAndRefusedCompression) {
  const TensorType seq = TensorType::sequence(9, 6);
  for (const std::string kind : {"hyena", "ttt"}) {
    const BlockKind& k = catalogue().at(kind);
    EXPECT_EQ(k.infer({seq}, k.resolve({{"heads", 2}})), seq) << kind;
    EXPECT_FALSE(k.accepts_kind(DataKind::Image));
    nn::testing::expect_invalid(
        [&] {
          k.infer({seq}, k.resolve({{"bits", 8}}));
        },
        kind +
            ": bits and prune are not supported yet; use bits 32, "
            "prune 0");
  }
  const BlockKind& t = catalogue().at("ttt");
  nn::testing::expect_invalid(
      [&] {
        t.infer({seq}, t.resolve({{"heads", 4}}));
      },
      "ttt: model dimension 6 not divisible by heads 4");
  EXPECT_NE(catalogue().at("hyena").check_params({{"order", 5}}).find("order"), std::string::npos);
}

TEST(BlockMixers, HyenaCountsByHand) {
  // L = 8, d = 4, order 2, FFN width 8, depth 1, emb 3, short kernel 3.
  Genome g = one_block("hyena", TensorType::sequence(8, 4),
                       {{"order", 2}, {"filter_width", 8}, {"filter_depth", 1}});
  const hw::NodeWorkload w = build_workload(g).nodes.at(0);
  const double P = 12, F = 4;  // projected channels (N+1) d, filter channels d (N-1)
  const double params =
      (4 * P + P) + (P * 3 + P) + (3 * 8 + 8) + (64 + 8) + 8 * F + 8 + F + (16 + 4);
  EXPECT_DOUBLE_EQ(w.params, params);
  EXPECT_EQ(build_model(g, 1)->num_parameters(), static_cast<std::int64_t>(params));
  EXPECT_DOUBLE_EQ(w.macs, 8 * P * 4 + 8 * 16 + 8 * P * 3 + 8 * (3 * 8 + 64 + 8 * F) + 8 * 4);
  // FFT of 16 points: 2.5 * 16 * 4 = 160 flops, three per channel.
  EXPECT_DOUBLE_EQ(w.other_flops, 8 * (P + 4) + 8 * P + 8 * 8 * 2 * 6 + 8 * F +
                                      (8 * 4 + 3 * 4 * 160 + 6 * 9 * 4 + 8 * 4) + 8 * 4);
  EXPECT_EQ(w.category, hw::OpCategory::Fft);
  EXPECT_EQ(w.kernels, 2 + 3 + 1 + 5 + 2);
  EXPECT_EQ(w.seq_len, 8);
}

TEST(BlockMixers, TttCountsByHand) {
  // L = 5, d = 4, 2 heads (f = 2), mini-batch 2: mini-batches of 2, 2, 1 tokens.
  Genome g = one_block("ttt", TensorType::sequence(5, 4), {{"heads", 2}, {"mini_batch", 2}});
  const hw::NodeWorkload w = build_workload(g).nodes.at(0);
  const double params = 4 * 16 + (8 + 2) + 2 + 2 * 4 + 3 * 2 * 2 + 8;
  EXPECT_DOUBLE_EQ(w.params, params);
  EXPECT_EQ(build_model(g, 1)->num_parameters(), static_cast<std::int64_t>(params));
  auto mb = [](double K) { return 2 * (3 * K * 4 + 3 * K * K * 2 + K * 2); };
  EXPECT_DOUBLE_EQ(w.macs, 4 * 5 * 16 + 5 * 4 * 2 + mb(2) + mb(2) + mb(1));
  EXPECT_EQ(w.category, hw::OpCategory::Recurrent);
  EXPECT_EQ(w.timesteps, 3);
}

TEST(BlockMixers, GradientsThroughBuiltModels) {
  check_gradients("hyena", {{"order", 2}, {"filter_width", 8}}, TensorType::sequence(6, 4));
  check_gradients("hyena", {{"order", 3}, {"filter_width", 8}, {"filter_depth", 0}, {"emb_dim", 5}},
                  TensorType::sequence(5, 2));
  check_gradients("ttt", {{"heads", 2}, {"mini_batch", 2}}, TensorType::sequence(5, 8));
  check_gradients("ttt", {{"heads", 1}, {"mini_batch", 4}, {"inner_lr", 3.0}},
                  TensorType::sequence(6, 4));
}

TEST(BlockMixers, HyenaIsCausal) {
  Genome g = one_block("hyena", TensorType::sequence(12, 4), {{"order", 3}});
  auto model = build_model(g, 2);
  std::mt19937_64 rng(4);
  nn::Tensor x = nn::testing::random_tensor(nn::Shape{1, 12, 4}, rng);
  nn::ForwardContext ctx;
  nn::NoGradGuard ng;
  const nn::Tensor y0 = model->forward(nn::constant(x), ctx).value().clone();
  for (int c = 0; c < 4; ++c) x.data()[8 * 4 + c] += 1.0f;  // change token 8
  const nn::Tensor y1 = model->forward(nn::constant(x), ctx).value();
  for (int t = 0; t < 12; ++t)
    for (int c = 0; c < 4; ++c) {
      const float diff = std::fabs(y1.data()[t * 4 + c] - y0.data()[t * 4 + c]);
      if (t < 8) {
        EXPECT_LT(diff, 1e-5f) << "token " << t;
      } else if (t == 8) {
        EXPECT_GT(diff, 0.0f);
      }
    }
}

TEST(BlockMixers, TttInnerLossFallsAlongTheSequence) {
  // A 256-token sequence, 16 mini-batches of 16: the layer's inner reconstruction loss before
  // each mini-batch's update, averaged over a batch of sequences, falls as W adapts.
  Genome g = one_block("ttt", TensorType::sequence(256, 16), {{"heads", 2}, {"mini_batch", 16}});
  auto model = build_model(g, 3);
  std::mt19937_64 rng(5);
  nn::ActivityRecorder rec;
  nn::ForwardContext ctx;
  ctx.training = false;
  ctx.recorder = &rec;
  nn::NoGradGuard ng;
  (void)model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{4, 256, 16}, rng)), ctx);
  const hw::Workload wl = build_workload(g, &rec);
  const std::vector<double>* s = wl.nodes.at(0).activity.find_series("ttt_inner_loss");
  ASSERT_NE(s, nullptr);
  ASSERT_EQ(s->size(), 16u);
  const double early = ((*s)[0] + (*s)[1]) / 2, late = ((*s)[14] + (*s)[15]) / 2;
  std::printf("ttt inner loss per mini-batch:");
  for (double v : *s) std::printf(" %.3f", v);
  std::printf("\nttt inner loss: first two %.4f, last two %.4f (ratio %.3f)\n", early, late,
              late / early);
  EXPECT_LT(late, 0.8 * early);
}
