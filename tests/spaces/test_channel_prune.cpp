// Structured channel pruning ("channel_prune" on conv, dense and moe): the pruned channels do
// not exist, so output shapes, downstream shapes, MACs, parameters and the built model shrink,
// and the workload reports the kept and declared width.  The unstructured magnitude "prune"
// keeps shapes unchanged.
#include <gtest/gtest.h>

#include <set>

#include "spaces/compress.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/spaces/block_test_util.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using namespace hwnas::spaces::testing;
using nlohmann::json;

namespace {

std::int64_t parameter_count(const Genome& g) {
  auto model = build_model(g, 1);
  std::vector<nn::Var> ps;
  model->collect_parameters(ps);
  std::int64_t n = 0;
  for (const auto& p : ps) n += p.value().numel();
  return n;
}

// input 3x8x8 -> conv(16, k3, channel_prune r) -> conv(16, k3) -> global_pool -> head(10)
Genome conv_chain(double ratio) {
  Genome g(TensorType::image(3, 8, 8));
  auto a = g.add_node("conv", {{"channels", 16}, {"kernel", 3}, {"channel_prune", ratio}});
  auto b = g.add_node("conv", {{"channels", 16}, {"kernel", 3}});
  auto p = g.add_node("global_pool");
  auto h = g.add_node("head", {{"outputs", 10}});
  g.add_edge(g.input_node(), a);
  g.add_edge(a, b);
  g.add_edge(b, p);
  g.add_edge(p, h);
  g.validate();
  return g;
}

}  // namespace

TEST(ChannelPrune, KeptChannelsRule) {
  EXPECT_EQ(kept_channels(16, 0.0), 16);
  EXPECT_EQ(kept_channels(16, 0.5), 8);
  EXPECT_EQ(kept_channels(16, 0.75), 4);
  EXPECT_EQ(kept_channels(10, 0.25), 8);  // 7.5 rounds half away from zero
  EXPECT_EQ(kept_channels(3, 0.9), 1);    // never below one channel
}

TEST(ChannelPrune, DeclaredOnConvDenseMoeOnly) {
  for (const char* k : {"conv", "dense", "moe"})
    EXPECT_NE(catalogue().at(k).find_param("channel_prune"), nullptr) << k;
  // A depthwise conv's width is its input's (groups == channels): it follows its producer's
  // pruning and has no ratio of its own; a head's outputs are the classes.
  for (const char* k : {"dwconv", "head", "pool"})
    EXPECT_EQ(catalogue().at(k).find_param("channel_prune"), nullptr) << k;
}

TEST(ChannelPrune, ConvRemovesChannelsAndDownstreamShapesFollow) {
  const Genome full = conv_chain(0.0), half = conv_chain(0.5);
  EXPECT_EQ(full.node(1).out.dims[0], 16);
  EXPECT_EQ(half.node(1).out.dims[0], 8);
  EXPECT_EQ(half.node(2).out.dims[0], 16);  // the next conv keeps its width, reads 8 channels
  const hw::Workload wf = build_workload(full), wh = build_workload(half);
  // Node 1: 16 x 8x8 x 3 x 9 = 27648 MACs -> 8 x 64 x 27 = 13824; node 2: 16 x 64 x 16 x 9 =
  // 147456 -> 16 x 64 x 8 x 9 = 73728.
  EXPECT_DOUBLE_EQ(wf.nodes[0].macs, 27648);
  EXPECT_DOUBLE_EQ(wh.nodes[0].macs, 13824);
  EXPECT_DOUBLE_EQ(wf.nodes[1].macs, 147456);
  EXPECT_DOUBLE_EQ(wh.nodes[1].macs, 73728);
  // Parameters: conv 8 x 27 + 2 x 8 (batch norm) = 232; the next conv 16 x 8 x 9 + 32 = 1184.
  EXPECT_DOUBLE_EQ(wh.nodes[0].params, 232);
  EXPECT_DOUBLE_EQ(wh.nodes[1].params, 1184);
  EXPECT_DOUBLE_EQ(wh.nodes[0].output_bytes, 8 * 64 * 4);
  // Remaining and declared channels are in the workload (and survive its JSON).
  EXPECT_DOUBLE_EQ(wh.nodes[0].channels, 8);
  EXPECT_DOUBLE_EQ(wh.nodes[0].channels_full, 16);
  EXPECT_DOUBLE_EQ(wh.nodes[1].channels, 16);
  EXPECT_DOUBLE_EQ(wh.nodes[1].channels_full, 16);
  const hw::Workload back = hw::Workload::from_json(wh.to_json());
  EXPECT_DOUBLE_EQ(back.nodes[0].channels, 8);
  EXPECT_DOUBLE_EQ(back.nodes[0].channels_full, 16);
  EXPECT_EQ(back.nodes[0].bits, 32);
  // The built model really has fewer parameters: conv 232 + conv 1184 + head 170 (10 x 16 + 10)
  // against 464 + 2336 + 170.
  EXPECT_EQ(parameter_count(half), 232 + 1184 + 170);
  EXPECT_EQ(parameter_count(full), 464 + 2336 + 170);
  // And a forward pass gives [batch, 10].
  auto model = build_model(half, 2);
  nn::ForwardContext ctx;
  std::mt19937_64 rng(1);
  nn::Var y =
      model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{2, 3, 8, 8}, rng)), ctx);
  EXPECT_EQ(y.value().shape(), (nn::Shape{2, 10}));
}

TEST(ChannelPrune, DenseUnitsAndMoeHiddenWidth) {
  Genome d = one_block("dense", TensorType::vector(20),
                       {{"units", 64}, {"channel_prune", 0.25}, {"bits", 8}});
  EXPECT_EQ(d.node(1).out.dims[0], 48);
  hw::NodeWorkload w = build_workload(d).nodes[0];
  EXPECT_DOUBLE_EQ(w.macs, 20 * 48);
  EXPECT_DOUBLE_EQ(w.params, 20 * 48 + 48);
  EXPECT_DOUBLE_EQ(w.weight_bytes, 20 * 48 + 48);  // int8: one byte each
  EXPECT_EQ(w.bits, 8);
  EXPECT_DOUBLE_EQ(w.channels, 48);
  EXPECT_DOUBLE_EQ(w.channels_full, 64);
  // MoE: the experts' hidden width shrinks, the layer's width d stays.
  const json moe = {{"experts", 4}, {"k", 1}, {"hidden", 32}};
  json pruned = moe;
  pruned["channel_prune"] = 0.5;
  Genome mf = one_block("moe", TensorType::sequence(5, 8), moe);
  Genome mh = one_block("moe", TensorType::sequence(5, 8), pruned);
  EXPECT_EQ(mh.node(1).out, mf.node(1).out);
  const hw::NodeWorkload a = build_workload(mf).nodes[0], b = build_workload(mh).nodes[0];
  // Routed: 5 tokens x k 1 x 2 x d 8 x h -> 2560 at h = 32, 1280 at h = 16.
  EXPECT_DOUBLE_EQ(a.routed_macs, 2560);
  EXPECT_DOUBLE_EQ(b.routed_macs, 1280);
  EXPECT_DOUBLE_EQ(b.channels, 16);
  EXPECT_DOUBLE_EQ(b.channels_full, 32);
  EXPECT_LT(parameter_count(mh), parameter_count(mf));
  // A layer without a prunable width reports none.
  EXPECT_DOUBLE_EQ(
      build_workload(one_block("pool", TensorType::image(2, 4, 4), {})).nodes[0].channels_full, 0);
}

TEST(ChannelPrune, MagnitudePruneKeepsShapes) {
  Genome g = one_block("dense", TensorType::vector(20), {{"units", 64}, {"prune", 0.5}});
  EXPECT_EQ(g.node(1).out.dims[0], 64);
  const hw::NodeWorkload w = build_workload(g).nodes[0];
  EXPECT_DOUBLE_EQ(w.macs, 20 * 64);  // dense count; the mask only thins stored weights
  EXPECT_DOUBLE_EQ(w.sparsity, 0.5);
  EXPECT_DOUBLE_EQ(w.channels, 64);
  EXPECT_DOUBLE_EQ(w.channels_full, 64);
}

TEST(ChannelPrune, GradientsOfPrunedBlocks) {
  // Smooth activations and no batch norm, so central differences do not straddle a kink.
  check_gradients("conv",
                  {{"channels", 6},
                   {"kernel", 3},
                   {"channel_prune", 0.5},
                   {"batch_norm", false},
                   {"activation", "tanh"}},
                  TensorType::image(2, 5, 5));
  check_gradients("dense", {{"units", 8}, {"channel_prune", 0.75}, {"activation", "tanh"}},
                  TensorType::vector(5));
}

TEST(ChannelPrune, BadRatioAndBadWorkloadNameTheField) {
  expect_message(
      [] {
        one_block("conv", TensorType::image(1, 4, 4), {{"channel_prune", 0.95}});
      },
      "param 'channel_prune'");
  hw::Workload w;
  w.nodes.resize(1);
  w.nodes[0].name = "n1:conv";
  w.nodes[0].block_kind = "conv";
  w.nodes[0].channels = 9;
  w.nodes[0].channels_full = 8;
  try {
    hw::Workload::from_json(w.to_json());
    ADD_FAILURE() << "accepted channels > channels_full";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("channels"), std::string::npos) << e.what();
  }
}

// examples/spaces/compression.json: bits, channel pruning, LoRA rank and MoE experts / k are
// genes next to the classic choices, and sampled architectures really differ in them.
TEST(ChannelPrune, CompressionExampleSpaceHasTheGenes) {
  auto s = load_space(std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/compression.json");
  std::set<std::string> genes;
  for (const auto& d : s->decisions()) {
    const std::string n = d.name;
    for (const char* g : {"channel_prune", "bits", "lora_rank", "experts", ".k", "hidden",
                          "channels", "units", "kernel", "depth"})
      if (n.find(g) != std::string::npos) genes.insert(g);
  }
  EXPECT_EQ(genes.size(), 10u);
  Rng rng(5);
  std::set<double> kept_ratios;
  std::set<int> bit_widths;
  int moe = 0;
  for (int i = 0; i < 60; ++i) {
    Genome g = s->sample(rng);
    g.validate();
    for (const auto& n : build_workload(g).nodes) {
      if (n.channels_full > 0) kept_ratios.insert(n.channels / n.channels_full);
      bit_widths.insert(n.bits);
      moe += n.block_kind == "moe";
    }
  }
  EXPECT_GE(kept_ratios.size(), 4u);
  EXPECT_EQ(bit_widths, (std::set<int>{4, 8, 32}));
  EXPECT_GT(moe, 0);
}
