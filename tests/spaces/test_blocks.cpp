// The block catalogue: every kind registered with its domain, a JSON round trip, a built model
// and a finite-difference gradient check per kind, and workload counts checked by hand.
#include <gtest/gtest.h>

#include <set>

#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;

namespace {

struct Case {
  std::string kind;
  TensorType in;
  json params;
  int inputs = 1;
};

// One small, valid use of every built-in kind.
std::vector<Case> cases() {
  auto img = TensorType::image(2, 6, 6);
  auto seq = TensorType::sequence(5, 4);
  auto vec = TensorType::vector(6);
  return {
      {"dense", vec, {{"units", 3}, {"activation", "tanh"}}},
      {"kan", vec, {{"units", 3}, {"grid", 3}}},
      {"conv", img, {{"channels", 3}, {"kernel", 3}, {"stride", 2}, {"activation", "tanh"}}},
      {"dwconv", img, {{"kernel", 3}, {"activation", "silu"}}},
      {"pool", img, {{"op", "avg"}, {"kernel", 3}, {"stride", 1}}},
      {"global_pool", img, json::object()},
      {"flatten", seq, json::object()},
      {"norm", TensorType::image(4, 3, 3), {{"type", "layer"}}},
      {"activation", vec, {{"fn", "gelu"}}},
      {"attention", seq, {{"heads", 2}}},
      {"sliding_attention", seq, {{"heads", 2}, {"window", 2}, {"causal", true}}},
      {"add", vec, json::object(), 2},
      {"concat", seq, json::object(), 3},
      {"head", vec, {{"outputs", 4}}},
      {"skip_connect", img, json::object()},
      {"none", img, json::object()},
      {"nor_conv_1x1", img, json::object()},
      {"nor_conv_3x3", img, json::object()},
      {"avg_pool_3x3", img, json::object()},
      {"nb201_reduction", img, {{"channels", 3}}},
      {"cfc", seq, {{"units", 3}, {"backbone_units", 4}}},
      {"ltc", seq, {{"units", 3}, {"unfolds", 2}}},
      {"neural_ode", vec, {{"hidden", 4}, {"steps", 2}, {"time_dependent", true}}},
      {"hyena", seq, {{"order", 3}, {"filter_width", 8}, {"emb_dim", 5}}},
      {"ttt", seq, {{"heads", 1}, {"mini_batch", 2}}},
      {"titans", seq, {{"segment", 4}, {"chunk", 2}}},
      {"svf", vec, {{"units", 3}, {"activation", "tanh"}}},
      {"s4d", seq, {{"d_state", 4}}},
      {"mamba", seq, {{"d_state", 4}, {"d_conv", 3}}},
      {"spike_encoder", img, {{"timesteps", 2}}},
      {"spiking_dense", TensorType::sequence(2, 4), {{"timesteps", 2}, {"units", 3}}},
      {"spiking_conv", TensorType::image(4, 6, 6), {{"timesteps", 2}, {"channels", 3}}},
      {"spike_readout", TensorType::sequence(2, 4), {{"timesteps", 2}, {"outputs", 3}}},
      // k = E: every token goes to both experts, so no routing choice flips under the finite
      // differences (tests/nn/test_moe.cpp checks k < E with clear margins).
      {"moe", seq, {{"experts", 2}, {"k", 2}, {"hidden", 3}, {"activation", "tanh"}}},
      // Without a datastore file the block is the identity (tests/spaces/test_block_retro.cpp
      // checks it with one).
      {"retro", seq, {{"chunk", 2}, {"encoder_width", 8}}},
      {"dense", vec, {{"units", 3}, {"activation", "tanh"}, {"lora_rank", 2}}},
      {"attention", seq, {{"heads", 2}, {"lora_rank", 2}}},
      {"attention", seq, {{"heads", 2}, {"rope", true}, {"causal", true}}},
      {"sliding_attention", seq, {{"heads", 1}, {"rope", true}, {"window", 2}}},
  };
}

// input -> (k parallel tanh dense/identity feeders when needed) -> block
Genome genome_for(const Case& c) {
  Genome g(c.in);
  std::vector<Genome::NodeId> feeders;
  if (c.inputs == 1) {
    feeders.push_back(0);
  } else {
    for (int i = 0; i < c.inputs; ++i) {
      auto f = g.add_node("activation", {{"fn", i % 2 ? "tanh" : "sigmoid"}});
      g.add_edge(0, f);
      feeders.push_back(f);
    }
  }
  auto v = g.add_node(c.kind, c.params);
  for (auto f : feeders) g.add_edge(f, v);
  g.validate();
  return g;
}

nn::Shape batched(const TensorType& t, int n) {
  std::vector<int> d{n};
  d.insert(d.end(), t.dims.begin(), t.dims.end());
  return nn::Shape(d);
}

}  // namespace

TEST(Catalogue, EveryCaseCoversEveryKind) {
  std::set<std::string> covered;
  for (const auto& c : cases()) covered.insert(c.kind);
  for (const auto& n : catalogue().names())
    EXPECT_TRUE(covered.count(n)) << "no test case for block kind " << n;
}

TEST(Catalogue, KindsHaveDomainsAndCommonParams) {
  const Catalogue& cat = catalogue();
  for (const auto& n : cat.names()) {
    const BlockKind& k = cat.at(n);
    EXPECT_FALSE(k.description.empty()) << n;
    ASSERT_NE(k.find_param("bits"), nullptr) << n;
    ASSERT_NE(k.find_param("prune"), nullptr) << n;
    for (const auto& p : k.params) EXPECT_EQ(p.check(p.default_value), "") << n << "." << p.name;
  }
  EXPECT_EQ(cat.at("conv").find_param("kernel")->domain_str(), "{1,3,5,7}");
  EXPECT_EQ(cat.at("norm").find_param("type")->domain_str(), "{batch,layer}");
  EXPECT_EQ(cat.at("dense").find_param("units")->domain_str(), "int [1, 8192]");
  try {
    cat.at("nope");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("known: activation, add, attention"), std::string::npos)
        << e.what();
  }
}

TEST(Catalogue, DuplicateRegistrationIsRejected) {
  Catalogue c;
  register_builtin_blocks(c);
  EXPECT_THROW(register_builtin_blocks(c), std::logic_error);
}

TEST(Blocks, JsonRoundTripEveryKind) {
  for (const auto& c : cases()) {
    Genome g = genome_for(c);
    Genome h = Genome::from_json(json::parse(g.to_json().dump()));
    EXPECT_EQ(h.to_json(), g.to_json()) << c.kind;
    EXPECT_EQ(h.hash(), g.hash()) << c.kind;
    EXPECT_EQ(h.node(h.output_node()).out, g.node(g.output_node()).out) << c.kind;
  }
}

TEST(Blocks, ModelOutputMatchesInferredShape) {
  for (const auto& c : cases()) {
    Genome g = genome_for(c);
    auto model = build_model(g, 7);
    nn::ForwardContext ctx;
    std::mt19937_64 rng(1);
    ctx.rng = &rng;
    nn::Var x = nn::constant(nn::testing::random_tensor(batched(c.in, 3), rng));
    nn::Var y = model->forward(x, ctx);
    EXPECT_EQ(y.shape(), batched(g.node(g.output_node()).out, 3)) << c.kind;
  }
}

TEST(Blocks, GradientsMatchFiniteDifferences) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.kind);
    Genome g = genome_for(c);
    auto model = build_model(g, 11);
    std::mt19937_64 rng(5);
    nn::ForwardContext ctx;
    ctx.rng = &rng;
    // Batch statistics over 2 samples put many post-BN values next to the following ReLU's
    // kink; the residual block is checked with running statistics (an affine BN) instead.
    ctx.training = c.kind != "nb201_reduction";
    if (c.kind == "none") continue;  // zero output: no gradient to check (its gradient is zero)
    // Spiking layers' backward is a surrogate (finite differences see a step function); their
    // LIF op is checked against the same recurrence from nn::step ops in tests/nn/test_lif.cpp.
    if (c.kind == "spiking_dense" || c.kind == "spiking_conv") continue;
    nn::Tensor x = nn::testing::random_tensor(batched(c.in, 2), rng);
    // Keep inputs away from ReLU's kink at 0 (the finite difference straddles it otherwise).
    for (std::int64_t i = 0; i < x.numel(); ++i)
      x.data()[i] = std::copysign(0.2f + 0.8f * std::fabs(x.data()[i]), x.data()[i]);
    nn::testing::expect_gradients_match(
        [&](const std::vector<nn::Var>& v) { return model->forward(v[0], ctx); }, {x});
  }
}

TEST(Blocks, FakeQuantisedAndPrunedWeightsStillTrain) {
  Case c{"dense", TensorType::vector(6), {{"units", 5}, {"bits", 4}, {"prune", 0.5}}};
  Genome g = genome_for(c);
  auto model = build_model(g, 3);
  std::vector<nn::Var> ps;
  model->collect_parameters(ps);
  std::mt19937_64 rng(2);
  nn::ForwardContext ctx;
  nn::Var y = model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{4, 6}, rng)), ctx);
  nn::backward(nn::sum(y));
  ASSERT_FALSE(ps[0].grad().empty());
  // Half the weights are pruned: exactly 15 of 30 receive a zero gradient.
  int zeros = 0;
  for (std::int64_t i = 0; i < ps[0].grad().numel(); ++i) zeros += ps[0].grad().data()[i] == 0.0f;
  EXPECT_EQ(zeros, 15);
}

// ---- workload counts by hand ----

namespace {
hw::NodeWorkload count_of(const Case& c) {
  Genome g = genome_for(c);
  auto wl = build_workload(g);
  return wl.nodes.back();
}
}  // namespace

TEST(Workload, DenseByHand) {
  auto w = count_of({"dense", TensorType::vector(100), {{"units", 10}}});
  EXPECT_EQ(w.macs, 1000);
  EXPECT_EQ(w.params, 1010);
  EXPECT_EQ(w.weight_bytes, 1010 * 4);
  EXPECT_EQ(w.input_bytes, 400);
  EXPECT_EQ(w.output_bytes, 40);
  EXPECT_EQ(w.other_flops, 20);  // bias + relu
  EXPECT_EQ(w.category, hw::OpCategory::Dense);
  EXPECT_EQ(w.neurons, 10);
  EXPECT_EQ(w.fan_in, 100);
  EXPECT_EQ(w.synapses, 1000);
  EXPECT_EQ(w.name, "n1:dense");
  // On a sequence the weights are shared across the L positions.
  auto s = count_of({"dense", TensorType::sequence(7, 100), {{"units", 10}}});
  EXPECT_EQ(s.macs, 7000);
  EXPECT_EQ(s.params, 1010);
  EXPECT_EQ(s.seq_len, 7);
}

TEST(Workload, BitsAndPruneScaleBytes) {
  auto w =
      count_of({"dense", TensorType::vector(100), {{"units", 10}, {"bits", 8}, {"prune", 0.5}}});
  EXPECT_EQ(w.bits, 8);
  EXPECT_DOUBLE_EQ(w.sparsity, 0.5);
  EXPECT_DOUBLE_EQ(w.weight_bytes, 1010 * 0.5);
  EXPECT_EQ(w.input_bytes, 100);
  EXPECT_EQ(w.macs, 1000);  // dense count; devices apply sparsity
}

TEST(Workload, ConvByHand) {
  // Cout*Hout*Wout*(Cin/groups)*k^2 = 8*4*4*3*9 with stride 2 on 8x8.
  auto w = count_of(
      {"conv", TensorType::image(3, 8, 8), {{"channels", 8}, {"kernel", 3}, {"stride", 2}}});
  EXPECT_EQ(w.macs, 8 * 4 * 4 * 3 * 9);
  EXPECT_EQ(w.params, 8 * 3 * 9 + 2 * 8);  // weights + BN gamma/beta
  EXPECT_EQ(w.output_bytes, 8 * 4 * 4 * 4);
  EXPECT_EQ(w.category, hw::OpCategory::Conv);
  EXPECT_EQ(w.fan_in, 27);
  EXPECT_EQ(w.window, 3);
  EXPECT_EQ(w.stride, 2);
  EXPECT_EQ(w.kernel_type_or_kind(), "conv");
  auto nobn = count_of({"conv",
                        TensorType::image(3, 8, 8),
                        {{"channels", 8}, {"kernel", 5}, {"batch_norm", false}}});
  EXPECT_EQ(nobn.macs, 8 * 8 * 8 * 3 * 25);
  EXPECT_EQ(nobn.params, 8 * 3 * 25 + 8);
}

TEST(Workload, DepthwiseConvByHand) {
  auto w = count_of({"dwconv", TensorType::image(6, 10, 10), {{"kernel", 5}}});
  EXPECT_EQ(w.macs, 6 * 10 * 10 * 25);
  EXPECT_EQ(w.params, 6 * 25 + 12);
  EXPECT_EQ(w.category, hw::OpCategory::DepthwiseConv);
  EXPECT_EQ(w.window, 5);
  EXPECT_EQ(w.stride, 1);
}

TEST(Workload, PoolByHand) {
  auto w = count_of({"pool", TensorType::image(4, 8, 8), {{"kernel", 2}, {"stride", 2}}});
  EXPECT_EQ(w.macs, 0);
  EXPECT_EQ(w.other_flops, 4 * 4 * 4 * 4);
  EXPECT_EQ(w.params, 0);
  EXPECT_EQ(w.category, hw::OpCategory::Pool);
  EXPECT_EQ(w.window, 2);
  EXPECT_EQ(w.stride, 2);
  // Max and average pools count alike but run different kernels.
  EXPECT_EQ(w.kernel_type, "max_pool");
  auto avg =
      count_of({"pool", TensorType::image(4, 8, 8), {{"op", "avg"}, {"kernel", 3}, {"stride", 1}}});
  EXPECT_EQ(avg.kernel_type, "avg_pool");
  EXPECT_EQ(avg.window, 3);
  EXPECT_EQ(avg.other_flops, 4 * 8 * 8 * 9);
  // A layer's prune ratio describes weights: a pool has none, so its workload is dense.
  auto pruned = count_of({"pool", TensorType::image(4, 8, 8), {{"prune", 0.5}, {"bits", 8}}});
  EXPECT_EQ(pruned.sparsity, 0);
  EXPECT_EQ(pruned.bits, 8);  // its activations are 8-bit
  EXPECT_EQ(pruned.input_bytes, 4 * 8 * 8);
}

TEST(Workload, AttentionByHand) {
  const double L = 6, D = 8;
  auto full = count_of({"attention", TensorType::sequence(6, 8), {{"heads", 2}}});
  EXPECT_EQ(full.macs, 4 * L * D * D + 2 * L * L * D);
  EXPECT_EQ(full.params, 4 * D * D + 4 * D);
  EXPECT_EQ(full.category, hw::OpCategory::Attention);
  EXPECT_EQ(full.seq_len, 6);
  auto causal = count_of({"attention", TensorType::sequence(6, 8), {{"causal", true}}});
  EXPECT_EQ(causal.macs, 4 * L * D * D + 2 * (L * (L + 1) / 2) * D);
  // window 2, both sides: keys per query 2,3,3,3,3,2 = 16 pairs.
  auto win = count_of({"sliding_attention", TensorType::sequence(6, 8), {{"window", 2}}});
  EXPECT_EQ(win.macs, 4 * L * D * D + 2 * 16 * D);
  // causal window 2: 1,2,2,2,2,2 = 11 pairs.
  auto cwin = count_of(
      {"sliding_attention", TensorType::sequence(6, 8), {{"window", 2}, {"causal", true}}});
  EXPECT_EQ(cwin.macs, 4 * L * D * D + 2 * 11 * D);
  // Kernel variants: causal masks and the flash kernel are their own kernel types.
  EXPECT_EQ(full.kernel_type_or_kind(), "attention");
  EXPECT_EQ(causal.kernel_type, "causal_attention");
  EXPECT_EQ(win.kernel_type_or_kind(), "sliding_attention");
  EXPECT_EQ(cwin.kernel_type, "causal_sliding_attention");
  auto flash = count_of({"attention", TensorType::sequence(6, 8), {{"impl", "flash"}}});
  EXPECT_EQ(flash.kernel_type, "flash_attention");
  auto cflash =
      count_of({"attention", TensorType::sequence(6, 8), {{"impl", "flash"}, {"causal", true}}});
  EXPECT_EQ(cflash.kernel_type, "causal_flash_attention");
  // Rotary embedding: 3 FLOPs per element of q and k, and two eager kernels; MACs unchanged.
  auto rope = count_of({"attention", TensorType::sequence(6, 8), {{"heads", 2}, {"rope", true}}});
  EXPECT_EQ(rope.macs, full.macs);
  EXPECT_EQ(rope.other_flops, full.other_flops + 6 * L * D);
  EXPECT_EQ(rope.kernels, full.kernels);
  EXPECT_EQ(rope.kernels_eager(), full.kernels_eager() + 2);
}

// Rotary embedding rotates channel pairs within a head: an odd head size is refused by name.
TEST(Blocks, RopeNeedsAnEvenHeadSize) {
  Genome g(TensorType::sequence(4, 6));
  const auto a = g.add_node("attention", {{"heads", 2}, {"rope", true}});
  g.add_edge(g.input_node(), a);
  try {
    g.validate();
    FAIL() << "validated rope with head size 3";
  } catch (const GenomeError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "rope needs an even head size: model dimension 6 / heads 2 is odd"),
              std::string::npos)
        << e.what();
  }
}

TEST(Workload, Nb201OpsByHand) {
  auto c3 = count_of({"nor_conv_3x3", TensorType::image(16, 32, 32), json::object()});
  EXPECT_EQ(c3.macs, 16.0 * 32 * 32 * 16 * 9);
  EXPECT_EQ(c3.window, 3);
  EXPECT_EQ(c3.stride, 1);
  auto ap = count_of({"avg_pool_3x3", TensorType::image(16, 32, 32), json::object()});
  EXPECT_EQ(ap.window, 3);
  EXPECT_EQ(ap.stride, 1);
  auto red = count_of({"nb201_reduction", TensorType::image(16, 32, 32), {{"channels", 32}}});
  EXPECT_EQ(red.macs, 32.0 * 16 * 16 * (16 * 9 + 32 * 9 + 16));
  // none outputs zeros whatever its input, and skip_connect is its input: neither runs, so
  // neither is in the workload (WorkloadLiveness in test_workload_liveness.cpp for whole cells).
  EXPECT_TRUE(build_workload(genome_for({"none", TensorType::image(16, 32, 32), json::object()}))
                  .nodes.empty());
  EXPECT_TRUE(
      build_workload(genome_for({"skip_connect", TensorType::image(16, 32, 32), json::object()}))
          .nodes.empty());
  // Kernels by fusion rule: ReLU, conv, BN eager (3); ReLU, conv+BN fused (2).
  EXPECT_EQ(c3.kernels, 2);
  EXPECT_EQ(c3.kernels_eager(), 3);
  EXPECT_EQ(red.kernels, 6);
  EXPECT_EQ(red.kernels_eager(), 9);
}

TEST(Workload, TotalsAndFanOut) {
  Genome g(TensorType::vector(4));
  auto a = g.add_node("dense", {{"units", 5}});
  auto b = g.add_node("dense", {{"units", 3}});
  g.add_edge(0, a);
  g.add_edge(a, b);
  g.validate();
  auto wl = build_workload(g);
  ASSERT_EQ(wl.nodes.size(), 2u);
  EXPECT_EQ(wl.input_bytes, 16);
  EXPECT_EQ(wl.nodes[0].fan_out, 3);  // each of a's 5 neurons drives 3 synapses
  EXPECT_EQ(wl.nodes[0].macs + wl.nodes[1].macs, 20 + 15);
}
