// GenomeModel::forward records each node's activity into its own sink when the context carries a
// recorder (output and input density for every node), and build_workload turns the recorder
// into per-sample NodeWorkload activity.
#include <gtest/gtest.h>

#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"

using namespace hwnas;
using namespace hwnas::spaces;

namespace {

// input vector(4) -> dense(6, relu) [node 1] -> head(2) [node 2]
Genome mlp() {
  Genome g(TensorType::vector(4));
  auto d = g.add_node("dense", {{"units", 6}, {"activation", "relu"}});
  auto h = g.add_node("head", {{"outputs", 2}});
  g.add_edge(g.input_node(), d);
  g.add_edge(d, h);
  g.validate();
  return g;
}

// Zero weights and bias [1, -1, 1, -1, -1, -1] on the dense layer: every sample's ReLU output is
// [1, 0, 1, 0, 0, 0], so its density is exactly 1/3.
void fix_dense_layer(GenomeModel& m) {
  std::vector<nn::Var> ps;
  m.collect_parameters(ps);
  nn::Tensor& w = ps.at(0).value();
  nn::Tensor& b = ps.at(1).value();
  ASSERT_EQ(w.numel(), 24);
  ASSERT_EQ(b.numel(), 6);
  for (std::int64_t i = 0; i < w.numel(); ++i) w.data()[i] = 0;
  const float bias[] = {1, -1, 1, -1, -1, -1};
  for (int i = 0; i < 6; ++i) b.data()[i] = bias[i];
}

}  // namespace

TEST(ActivityRecording, EveryNodeGetsItsOwnSinkWithDensities) {
  Genome g = mlp();
  auto model = build_model(g, 1);
  fix_dense_layer(*model);
  std::mt19937_64 rng(5);
  nn::ActivityRecorder rec;
  nn::ForwardContext ctx;
  ctx.training = false;
  ctx.recorder = &rec;
  for (int batch : {3, 5}) {
    nn::Tensor x = nn::testing::random_tensor(nn::Shape{batch, 4}, rng);  // no exact zeros
    (void)model->forward(nn::constant(x), ctx);
  }
  EXPECT_EQ(ctx.activity, nullptr);   // restored after the pass
  ASSERT_EQ(rec.sinks().size(), 2u);  // dense and head; the input node has no module
  const nn::ActivitySink* dense = rec.find(1);
  const nn::ActivitySink* head = rec.find(2);
  ASSERT_NE(dense, nullptr);
  ASSERT_NE(head, nullptr);
  EXPECT_DOUBLE_EQ(dense->samples(), 8);
  EXPECT_DOUBLE_EQ(head->samples(), 8);
  auto d = dense->per_sample();
  auto h = head->per_sample();
  EXPECT_NEAR(d.at(nn::activity_key::kActivationDensity), 1.0 / 3, 1e-12);
  EXPECT_NEAR(d.at(nn::activity_key::kInputDensity), 1.0, 1e-12);
  EXPECT_NEAR(h.at(nn::activity_key::kInputDensity), 1.0 / 3, 1e-12);
  EXPECT_NEAR(h.at(nn::activity_key::kActivationDensity), 1.0, 1e-12);

  hw::Workload wl = build_workload(g, &rec);
  ASSERT_EQ(wl.nodes.size(), 2u);
  EXPECT_DOUBLE_EQ(wl.nodes[0].activity.samples, 8);
  EXPECT_NEAR(wl.nodes[0].activity.scalar_or("activation_density", -1), 1.0 / 3, 1e-12);
  EXPECT_NEAR(wl.nodes[1].activity.scalar_or("input_density", -1), 1.0 / 3, 1e-12);
  // The static counts do not depend on the activity.
  hw::Workload bare = build_workload(g);
  EXPECT_FALSE(bare.nodes[0].activity.measured());
  EXPECT_EQ(bare.nodes[0].macs, wl.nodes[0].macs);
}

TEST(ActivityRecording, NothingRecordedWithoutRecorder) {
  Genome g = mlp();
  auto model = build_model(g, 1);
  std::mt19937_64 rng(5);
  nn::ActivitySink outer;  // a caller's own sink must survive the pass untouched
  nn::ForwardContext ctx;
  ctx.activity = &outer;
  (void)model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{2, 4}, rng)), ctx);
  EXPECT_TRUE(outer.empty());
  EXPECT_EQ(ctx.activity, &outer);
}
