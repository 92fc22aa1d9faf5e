// Cost what runs: dead ops, zero-copy ops and kernel counts under each runtime's fusion rule,
// against hand counts on small NAS-Bench-201 networks (input image[3,8,8], so the three stages
// run at 16 ch x 8x8, 32 ch x 4x4 and 64 ch x 2x2, five cells each).
#include <gtest/gtest.h>

#include <limits>
#include <map>
#include <random>
#include <set>

#include "hwmodels/device.hpp"
#include "nn/activity.hpp"
#include "nn/ops.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"

namespace hwnas::spaces {
namespace {

hw::Workload nb201(const std::string& arch) {
  static const auto space = make_space(
      {{"type", "nb201"}, {"input", {{"kind", "image"}, {"shape", {3, 8, 8}}}}, {"outputs", 2}});
  return build_workload(space->parse(arch));
}

std::map<std::string, int> kinds(const hw::Workload& w) {
  std::map<std::string, int> k;
  for (const auto& n : w.nodes) ++k[n.block_kind];
  return k;
}

double macs_of(const hw::Workload& w, const std::string& kind) {
  double m = 0;
  for (const auto& n : w.nodes)
    if (n.block_kind == kind) m += n.macs;
  return m;
}

int kernels(const hw::Workload& w, bool eager) {
  int k = 0;
  for (const auto& n : w.nodes) k += n.kernels_for(eager);
  return k;
}

// Per cell, per stage: conv 3x3 = C*C*9*H*W MACs, conv 1x1 = C*C*H*W:
//   16*16*9*64 = 32*32*9*16 = 64*64*9*4 = 147456;  16*16*64 = 32*32*16 = 64*64*4 = 16384.
constexpr double kConv3PerCell = 147456, kConv1PerCell = 16384;

TEST(WorkloadLiveness, OpOnlyFeedingNoneIsDead) {
  // Node 1 = conv3x3(x) feeds only none edges: dead.  Node 2 = conv3x3(x) + none: an add of one
  // tensor, zero-copy.  Node 3 = skip(x) + none + conv1x1(node 2): a two-input add.
  const hw::Workload w =
      nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|");
  auto k = kinds(w);
  EXPECT_EQ(k["nor_conv_3x3"], 15);  // not 30: the dead one is gone from every cell
  EXPECT_EQ(k["nor_conv_1x1"], 15);
  EXPECT_EQ(k["add"], 15);  // node 3 only; node 2 is the conv's own output
  EXPECT_EQ(k.count("none"), 0u);
  EXPECT_EQ(k.count("skip_connect"), 0u);
  EXPECT_DOUBLE_EQ(macs_of(w, "nor_conv_3x3"), 15 * kConv3PerCell);
  EXPECT_DOUBLE_EQ(macs_of(w, "nor_conv_1x1"), 15 * kConv1PerCell);
  // The add reads two tensors (the none term is dropped): 2 x C*H*W floats.
  double add_in = 0, add_flops = 0;
  for (const auto& n : w.nodes)
    if (n.block_kind == "add") {
      add_in += n.input_bytes;
      add_flops += n.other_flops;
      EXPECT_EQ(n.kernels, 1);
    }
  EXPECT_DOUBLE_EQ(add_flops, 5 * (1024 + 512 + 256));  // one add per element
  EXPECT_DOUBLE_EQ(add_in, 5 * 2 * 4 * (1024 + 512 + 256));
  // The same network with node 1's edge set to none costs exactly the same.
  const hw::Workload same =
      nb201("|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|");
  ASSERT_EQ(same.nodes.size(), w.nodes.size());
  EXPECT_DOUBLE_EQ(same.total_macs(), w.total_macs());
  EXPECT_EQ(kernels(same, true), kernels(w, true));
}

TEST(WorkloadLiveness, OutputReachedThroughOneEdge) {
  // Node 3 = none + none + skip(node 2): only the skip edge carries anything, so node 3 is node 2
  // itself (zero-copy); node 1 = conv3x3(x) and node 2 = pool(x) + conv1x1(node 1) run.
  const hw::Workload w =
      nb201("|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|");
  auto k = kinds(w);
  EXPECT_EQ(k["nor_conv_3x3"], 15);
  EXPECT_EQ(k["nor_conv_1x1"], 15);
  EXPECT_EQ(k["avg_pool_3x3"], 15);
  EXPECT_EQ(k["add"], 15);
  EXPECT_DOUBLE_EQ(macs_of(w, "nor_conv_3x3") + macs_of(w, "nor_conv_1x1"),
                   15 * (kConv3PerCell + kConv1PerCell));
}

TEST(WorkloadLiveness, CellCutByNoneKillsEverythingBeforeIt) {
  // Every edge into node 3 is none: each cell outputs zeros, so nothing before the last cell can
  // reach the output; only the classifier tail runs (on a zero tensor).
  const hw::Workload w =
      nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|");
  auto k = kinds(w);
  EXPECT_EQ(w.nodes.size(), 4u);
  EXPECT_EQ(k["norm"], 1);
  EXPECT_EQ(k["activation"], 1);
  EXPECT_EQ(k["global_pool"], 1);
  EXPECT_EQ(k["head"], 1);
}

// Batch prediction builds one workload per nb201_live_index: every cell with a dead op must give
// exactly the workload of its live form (names, counts, fusion, fan-out: the whole JSON).
TEST(WorkloadLiveness, CellsDifferingInDeadOpsHaveOneWorkload) {
  EXPECT_EQ(nb201_live_index(nb201_index(
                "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|")),
            0);
  EXPECT_EQ(nb201_live_index(nb201_index(
                "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|")),
            nb201_index("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"));
  std::set<int> distinct;
  int with_dead_ops = 0;
  for (int i = 0; i < 15625; ++i) {
    const int live = nb201_live_index(i);
    distinct.insert(live);
    EXPECT_EQ(nb201_live_index(live), live);
    if (live == i) continue;
    ++with_dead_ops;
    ASSERT_EQ(nb201(nb201_string(i)).to_json(), nb201(nb201_string(live)).to_json())
        << nb201_string(i) << " vs its live form " << nb201_string(live);
  }
  EXPECT_EQ(distinct.size(), 12205u);
  EXPECT_EQ(with_dead_ops, 15625 - 12205);
}

// NB201 arch 0 (HW-NAS-Bench's reference): node 1 = pool(x); node 2 = conv1x1(x) + skip(node 1);
// node 3 = conv1x1(x) + skip(node 1) + skip(node 2).
const char* kArch0 =
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~"
    "2|";

TEST(WorkloadFusion, KernelCountsUnderEagerAndFusedRules) {
  const hw::Workload w = nb201(kArch0);
  auto k = kinds(w);
  EXPECT_EQ(k.count("skip_connect"), 0u);  // zero-copy
  EXPECT_EQ(k["add"], 30);
  // Per cell, fused: pool 1 + 2 x nor_conv (ReLU; conv+BN) 2 + add(2 inputs) 1 + add(3) 2 = 8;
  //           eager: pool 1 + 2 x nor_conv (ReLU, conv, BN) 3 + 1 + 2 = 10.
  // Skeleton, fused: stem conv+BN 1, two reductions 6 each, tail BN 1 (after an add: nothing to
  //   fold into), ReLU 0 (fused into the BN), global pool 1, head 1 = 16.
  //         eager: stem 2, reductions 9 each, BN 1, ReLU 1, pool 1, head 1 = 24.
  EXPECT_EQ(kernels(w, false), 15 * 8 + 16);
  EXPECT_EQ(kernels(w, true), 15 * 10 + 24);

  // A launch-bound GPU (peaks so high the bodies are ~1e-12 s) costs kernels x launch_s.
  nlohmann::json gpu = {
      {"name", "launch_only"}, {"family", "gpu"},      {"peak_flops", {{"fp32", 1e30}}},
      {"vector_flops", 1e30},  {"mem_bw", 1e30},       {"efficiency", {{"default", 1.0}}},
      {"launch_s", 1e-5},      {"memory_bytes", 1e12}, {"power", {{"tdp_w", 10}}}};
  EXPECT_NEAR(hw::make_device(gpu)->estimate(w).latency_ms, 136 * 1e-2, 1e-9);
  gpu["fusion"] = "eager";
  EXPECT_NEAR(hw::make_device(gpu)->estimate(w).latency_ms, 174 * 1e-2, 1e-9);
}

TEST(WorkloadFusion, ActivationAfterConvFusesOnlyWhenItIsTheOnlyConsumer) {
  Genome g(TensorType::image(3, 8, 8));
  auto c = g.add_node("conv", {{"channels", 4}, {"kernel", 3}, {"activation", "none"}});
  g.add_edge(g.input_node(), c);
  auto a = g.add_node("activation", {{"fn", "relu"}});
  g.add_edge(c, a);
  auto f = g.add_node("flatten");
  g.add_edge(a, f);
  auto h = g.add_node("head", {{"outputs", 2}});
  g.add_edge(f, h);
  hw::Workload w = build_workload(g);
  ASSERT_EQ(w.nodes.size(), 3u);  // conv, activation, head: flatten is a view
  EXPECT_EQ(w.nodes[0].kernels, 1);
  EXPECT_EQ(w.nodes[0].kernels_eager(), 2);  // conv, BN
  EXPECT_EQ(w.nodes[1].kernels, 0);          // fused into the conv
  EXPECT_EQ(w.nodes[1].kernels_eager(), 1);
  // A second consumer of the conv output: the activation no longer fuses.
  auto p = g.add_node("pool", {{"kernel", 2}});
  g.add_edge(c, p);
  auto f2 = g.add_node("flatten");
  g.add_edge(p, f2);
  auto h2 = g.add_node("head", {{"outputs", 2}});
  g.add_edge(f2, h2);
  auto sum = g.add_node("add");
  g.add_edge(h, sum);
  g.add_edge(h2, sum);
  w = build_workload(g);
  for (const auto& n : w.nodes)
    if (n.block_kind == "activation") EXPECT_EQ(n.kernels, 1);

  // Fan-out passes through a view: conv -> flatten -> head, each of the conv's 4*8*8 neurons
  // drives the head's 2 outputs.
  Genome v(TensorType::image(3, 8, 8));
  auto vc = v.add_node("conv", {{"channels", 4}, {"kernel", 3}, {"activation", "none"}});
  v.add_edge(v.input_node(), vc);
  auto vf = v.add_node("flatten");
  v.add_edge(vc, vf);
  auto vh = v.add_node("head", {{"outputs", 2}});
  v.add_edge(vf, vh);
  EXPECT_DOUBLE_EQ(build_workload(v).nodes.at(0).fan_out, 2);
}

// The model runs what the workload charges: a dead node and a zero node are not computed, and no
// gradient flows into the dead path.  NaN weights on the dead conv prove it: computed and
// multiplied by none's zero, they would turn the output into NaN (0 * NaN).
TEST(ModelLiveness, DeadAndZeroNodesAreNotComputed) {
  static const auto space = make_space(
      {{"type", "nb201"}, {"input", {{"kind", "image"}, {"shape", {3, 8, 8}}}}, {"outputs", 2}});
  const Genome g = space->parse(
      "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|");
  auto model = build_model(g, 3);
  // Cell node 1 (the conv that feeds only none) of every cell.
  const hw::Workload w = build_workload(g);
  std::set<std::string> live;
  for (const auto& n : w.nodes) live.insert(n.name.substr(0, n.name.find(':')));
  int poisoned = 0;
  for (auto& p : model->named_parameters()) {
    const std::string node = p.name.substr(0, p.name.find('.'));
    if (g.node(static_cast<Genome::NodeId>(std::stoi(node.substr(1)))).kind == "nor_conv_3x3" &&
        !live.count(node)) {
      p.var.value().array() = std::numeric_limits<float>::quiet_NaN();
      ++poisoned;
    }
  }
  ASSERT_GT(poisoned, 0) << "the test needs dead conv parameters";
  nn::Tensor x(nn::Shape{2, 3, 8, 8}, 0.5f);
  nn::ForwardContext ctx;
  ctx.training = true;
  const nn::Var y = model->forward(nn::constant(x), ctx);
  ASSERT_TRUE(y.value().array().isFinite().all());
  nn::backward(nn::sum(y));
  for (auto& p : model->named_parameters()) {
    const std::string node = p.name.substr(0, p.name.find('.'));
    if (live.count(node) || !p.var.grad().empty())
      EXPECT_TRUE(p.var.grad().empty() || p.var.grad().array().isFinite().all()) << p.name;
  }
}

// Zero terms are not made: an add passes its one live term on, also through a chain of such adds,
// and the network computes exactly what the same cell without them computes.  In A node 3 is
// skip(node 1); in B node 2 is skip(node 1) (none + skip) and node 3 is skip(node 2): both cells
// output conv(node 0), with the same parameters (none and skip draw nothing from the seed).
TEST(ModelLiveness, AddsDropZeroTermsAndPassTheirOneLiveTermOn) {
  static const auto space = make_space(
      {{"type", "nb201"}, {"input", {{"kind", "image"}, {"shape", {3, 8, 8}}}}, {"outputs", 2}});
  const Genome a = space->parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|");
  const Genome b =
      space->parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|");
  std::mt19937_64 rng(4);
  nn::Tensor x(nn::Shape{2, 3, 8, 8});
  std::uniform_real_distribution<float> u(-1, 1);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = u(rng);
  nn::ForwardContext ctx;
  ctx.training = true;
  auto ma = build_model(a, 9), mb = build_model(b, 9);
  const nn::Var ya = ma->forward(nn::constant(x.clone()), ctx);
  const nn::Var yb = mb->forward(nn::constant(x.clone()), ctx);
  ASSERT_EQ(ya.value().numel(), yb.value().numel());
  for (std::int64_t i = 0; i < ya.value().numel(); ++i)
    ASSERT_EQ(ya.value().data()[i], yb.value().data()[i]) << i;

  // An evaluation pass records a zero node that was not made: all of its elements are zero.
  nn::ActivityRecorder rec;
  nn::ForwardContext ectx;
  ectx.recorder = &rec;
  (void)ma->forward(nn::constant(x.clone()), ectx);
  int zero_nodes = 0;
  for (Genome::NodeId v = 0; v < a.num_nodes(); ++v)
    if (a.node(v).kind == "none") {
      const nn::ActivitySink* s = rec.find(static_cast<std::int64_t>(v));
      ASSERT_NE(s, nullptr) << v;
      EXPECT_DOUBLE_EQ(s->samples(), 2);
      EXPECT_DOUBLE_EQ(s->per_sample().at(nn::activity_key::kActivationDensity), 0);
      ++zero_nodes;
    }
  EXPECT_GT(zero_nodes, 0);
}

}  // namespace
}  // namespace hwnas::spaces
