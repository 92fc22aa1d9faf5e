// The s4d and mamba block kinds (spaces/blocks/block_s4d.cpp, block_mamba.cpp): shape rule,
// refused inputs, workload counts against hand-computed values, and parameter counts against
// the built modules.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "spaces/catalogue.hpp"
#include "spaces/mixer_stack.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/spaces/block_test_util.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;
using namespace hwnas::spaces::testing;

TEST(BlockSsm, ShapeRuleAndRefusedInputs) {
  const TensorType seq = TensorType::sequence(7, 5);
  for (const std::string kind : {"s4d", "mamba"}) {
    const BlockKind& k = catalogue().at(kind);
    EXPECT_EQ(k.infer({seq}, k.resolve(json::object())), seq);
    EXPECT_FALSE(k.accepts_kind(DataKind::Image));
    EXPECT_FALSE(k.accepts_kind(DataKind::Vector));
    expect_message(
        [&] {
          k.infer({seq}, k.resolve({{"bits", 8}}));
        },
        kind + ": bits and prune are not supported yet; use bits 32, prune 0");
    expect_message(
        [&] {
          k.infer({seq}, k.resolve({{"prune", 0.5}}));
        },
        kind + ": bits and prune are not supported yet; use bits 32, prune 0");
    expect_message(
        [&] {
          k.infer({seq}, k.resolve({{"dt_min", 0.2}, {"dt_max", 0.1}}));
        },
        kind + ": dt_max 0.100000 must be >= dt_min 0.200000");
  }
  EXPECT_EQ(catalogue().at("s4d").check_params({{"d_state", 6}}),
            "param 'd_state' = 6 not in {4,8,16,32,64}");
}

TEST(BlockSsm, S4dWorkloadCountsByHand) {
  // L = 8, H = 4, N = 8 (M = 4 modes), GLU output.
  Genome g = one_block("s4d", TensorType::sequence(8, 4), {{"d_state", 8}});
  const hw::NodeWorkload w = build_workload(g).nodes.at(0);
  EXPECT_EQ(w.category, hw::OpCategory::Fft);
  // Kernel 6 H M L = 768, spectral product 4 (L+1) H = 144, D skip L H = 32, output L H 2H = 256.
  EXPECT_DOUBLE_EQ(w.macs, 768 + 144 + 32 + 256);
  // Per-mode setup 30 H M = 480; 3 FFTs of n = 16: 3 * 2.5 * 16 * 4 * H = 1920; spectral adds
  // 2 (L+1) H = 72; GELU 8 L H = 256; output bias L 2H = 64; GLU 5 L H = 160.
  EXPECT_DOUBLE_EQ(w.other_flops, 480 + 1920 + 72 + 256 + 64 + 160);
  // log_dt, D (2H) + A real, A imag, C re/im (4 H M) + output 2H x H + 2H.
  EXPECT_DOUBLE_EQ(w.params, 8 + 64 + 32 + 8);
  EXPECT_EQ(w.kernels, 8);
  EXPECT_EQ(w.seq_len, 8);
  EXPECT_EQ(build_model(g, 1)->num_parameters(), 8 + 64 + 32 + 8);

  Genome lin = one_block("s4d", TensorType::sequence(8, 4), {{"d_state", 8}, {"output", "linear"}});
  const hw::NodeWorkload wl = build_workload(lin).nodes.at(0);
  EXPECT_DOUBLE_EQ(wl.macs, 768 + 144 + 32 + 128);
  EXPECT_DOUBLE_EQ(wl.other_flops, 480 + 1920 + 72 + 256 + 32);
  EXPECT_DOUBLE_EQ(wl.params, 8 + 64 + 16 + 4);
  EXPECT_EQ(wl.kernels, 7);
  EXPECT_EQ(build_model(lin, 1)->num_parameters(), 8 + 64 + 16 + 4);
}

TEST(BlockSsm, MambaWorkloadCountsByHand) {
  // L = 6, d = 4, E = 8, N = 4, R = ceil(4/16) = 1, K = 2.
  Genome g = one_block("mamba", TensorType::sequence(6, 4), {{"d_state", 4}, {"d_conv", 2}});
  const hw::NodeWorkload w = build_workload(g).nodes.at(0);
  EXPECT_EQ(w.category, hw::OpCategory::Recurrent);
  // Dense per token: in_proj 2*8*4 = 64, x_proj 8*(1+8) = 72, dt_proj 8, out_proj 32 -> 176.
  // Conv 6*8*2 = 96.  Scan 6*8*(4*4 + 2) = 864.
  EXPECT_DOUBLE_EQ(w.macs, 6 * 176 + 96 + 864);
  // exp 4 L E N = 768; biases, SiLU x2, softplus, gate: 17 L E = 816.
  EXPECT_DOUBLE_EQ(w.other_flops, 768 + 816);
  // in_proj 64, conv 16 + 8, x_proj 72, dt_proj 8 + 8, A_log 32, D 8, out_proj 32.
  const double params = 64 + 16 + 8 + 72 + 8 + 8 + 32 + 8 + 32;
  EXPECT_DOUBLE_EQ(w.params, params);
  EXPECT_EQ(w.kernels, 8);
  EXPECT_EQ(w.timesteps, 6);
  EXPECT_EQ(w.seq_len, 6);
  EXPECT_EQ(build_model(g, 1)->num_parameters(), params);
}

TEST(BlockSsm, MixerStackWiresAResidualStack) {
  const Genome g = mixer_stack(TensorType::sequence(10, 6), 8, 2, "mamba", json::object(), 5);
  // input, dense, 2 x (norm, mixer, add), norm, head
  EXPECT_EQ(g.num_nodes(), 1u + 1 + 6 + 2);
  auto model = build_model(g, 1);
  nn::NoGradGuard ng;
  nn::ForwardContext ctx;
  const nn::Var y = model->forward(nn::constant(nn::Tensor::zeros({3, 10, 6})), ctx);
  EXPECT_EQ(y.shape(), (nn::Shape{3, 10, 5}));
  expect_message([] { mixer_stack(TensorType::vector(4), 8, 2, "s4d", json::object(), 5); },
                 "mixer_stack: input must be a sequence [L, F]");
  expect_message([] { mixer_stack(TensorType::sequence(4, 2), 0, 2, "s4d", json::object(), 5); },
                 "mixer_stack: width, layers and outputs must be >= 1, got 0, 2, 5");
}
