// Spiking blocks (spike_encoder, spiking_dense, spiking_conv, spike_readout): shape rules,
// workload counts by hand, recorded spike counts against a hand-simulated network with fixed
// weights, and neuromorphic energy from the measured counts versus the assumed spike rate.
#include <gtest/gtest.h>

#include "hwmodels/device.hpp"
#include "nn/optim.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;

namespace {

TensorType infer(const std::string& kind, const TensorType& in, const json& p) {
  const BlockKind& k = catalogue().at(kind);
  return k.infer({in}, k.resolve(p));
}

// vector(3) -> spike_encoder(T=4, direct) [n1] -> spiking_dense(2 units) [n2]
Genome tiny_snn() {
  Genome g(TensorType::vector(3));
  auto e = g.add_node("spike_encoder", {{"timesteps", 4}});
  auto d = g.add_node(
      "spiking_dense",
      {{"units", 2}, {"timesteps", 4}, {"beta", 0.5}, {"threshold", 1.0}, {"reset", "subtract"}});
  g.add_edge(g.input_node(), e);
  g.add_edge(e, d);
  g.validate();
  return g;
}

// W = [[1, 0, 0], [0.5, 0.5, 0]], no bias current.
void fix_weights(GenomeModel& m) {
  std::vector<nn::Var> ps;
  m.collect_parameters(ps);
  ASSERT_EQ(ps.size(), 2u);
  const float w[] = {1, 0, 0, 0.5f, 0.5f, 0};
  std::copy(w, w + 6, ps[0].value().data());
  std::fill(ps[1].value().data(), ps[1].value().data() + 2, 0.0f);
}

nn::ActivityRecorder record(GenomeModel& m, const std::vector<float>& x, int batch) {
  nn::ActivityRecorder rec;
  nn::ForwardContext ctx;
  ctx.training = false;
  ctx.recorder = &rec;
  nn::NoGradGuard no_grad;
  (void)m.forward(nn::constant(nn::Tensor::from(nn::Shape{batch, 3}, x)), ctx);
  return rec;
}

}  // namespace

TEST(SpikingBlocks, ShapeRule) {
  EXPECT_EQ(infer("spike_encoder", TensorType::image(1, 28, 28), {{"timesteps", 4}}),
            TensorType::image(4, 28, 28));
  EXPECT_EQ(infer("spike_encoder", TensorType::vector(10), {{"timesteps", 8}}),
            TensorType::sequence(8, 10));
  EXPECT_EQ(infer("spiking_dense", TensorType::image(4, 28, 28), {{"timesteps", 4}, {"units", 7}}),
            TensorType::sequence(4, 7));
  EXPECT_EQ(infer("spiking_dense", TensorType::sequence(2, 5), {{"timesteps", 2}, {"units", 3}}),
            TensorType::sequence(2, 3));
  EXPECT_EQ(infer("spiking_conv", TensorType::image(8, 10, 10),
                  {{"timesteps", 4}, {"channels", 3}, {"kernel", 3}, {"stride", 2}}),
            TensorType::image(12, 5, 5));
  EXPECT_EQ(infer("spike_readout", TensorType::sequence(4, 9), {{"timesteps", 4}, {"outputs", 10}}),
            TensorType::vector(10));
  nn::testing::expect_invalid(
      [] {
        infer("spiking_dense", TensorType::sequence(3, 5), {{"timesteps", 4}});
      },
      "spiking_dense: input sequence[3,5] has 3 time steps, timesteps = 4");
  nn::testing::expect_invalid(
      [] {
        infer("spiking_conv", TensorType::image(6, 4, 4), {{"timesteps", 4}});
      },
      "spiking_conv: input image[6,4,4] has 6 channels, not a multiple of timesteps = 4");
  nn::testing::expect_invalid(
      [] {
        infer("spike_readout", TensorType::vector(6), {{"timesteps", 2}});
      },
      "spike_readout: input vector[6] is not spiking");
  EXPECT_NE(catalogue().at("spiking_dense").check_params({{"timesteps", 3}}), "");
  EXPECT_EQ(catalogue().at("spiking_dense").find_param("timesteps")->domain_str(), "{1,2,4,8,16}");
}

TEST(SpikingBlocks, ModelsRunAndKeepTheirShapes) {
  Genome g(TensorType::image(1, 8, 8));
  auto e = g.add_node("spike_encoder", {{"timesteps", 2}, {"encoding", "rate"}});
  auto c = g.add_node("spiking_conv",
                      {{"timesteps", 2}, {"channels", 3}, {"stride", 2}, {"refractory", 1}});
  auto d = g.add_node("spiking_dense", {{"timesteps", 2}, {"units", 5}, {"surrogate", "arctan"}});
  auto r = g.add_node("spike_readout", {{"timesteps", 2}, {"outputs", 4}, {"mode", "count"}});
  g.add_edge(g.input_node(), e);
  g.add_edge(e, c);
  g.add_edge(c, d);
  g.add_edge(d, r);
  g.validate();
  auto model = build_model(g, 3);
  std::mt19937_64 rng(1);
  nn::ForwardContext ctx;
  ctx.rng = &rng;
  nn::Var x = nn::constant(nn::testing::random_tensor(nn::Shape{2, 1, 8, 8}, rng, 0.0f, 1.0f));
  nn::Var y = model->forward(x, ctx);
  EXPECT_EQ(y.shape(), (nn::Shape{2, 4}));
  nn::backward(nn::sum(y));  // surrogate gradients reach every layer's weights
  std::vector<nn::Var> ps;
  model->collect_parameters(ps);
  for (auto& p : ps) EXPECT_FALSE(p.grad().empty());
}

TEST(SpikingBlocks, WorkloadCountsByHand) {
  Genome g(TensorType::image(1, 8, 8));
  auto e = g.add_node("spike_encoder", {{"timesteps", 4}});
  auto c = g.add_node("spiking_conv", {{"timesteps", 4}, {"channels", 3}, {"kernel", 3}});
  auto d = g.add_node("spiking_dense", {{"timesteps", 4}, {"units", 10}});
  auto r = g.add_node("spike_readout", {{"timesteps", 4}, {"outputs", 5}});
  g.add_edge(g.input_node(), e);
  g.add_edge(e, c);
  g.add_edge(c, d);
  g.add_edge(d, r);
  g.validate();
  const hw::Workload wl = build_workload(g);
  ASSERT_EQ(wl.nodes.size(), 4u);
  const hw::NodeWorkload& enc = wl.nodes[0];
  EXPECT_TRUE(enc.spiking);
  EXPECT_EQ(enc.timesteps, 4);
  EXPECT_EQ(enc.neurons, 64);
  EXPECT_EQ(enc.macs, 0);
  // conv: 3 x 8 x 8 = 192 neurons, fan-in 1 x 3 x 3 = 9, 27 synapses; MACs 192 x 9 x 4 steps.
  const hw::NodeWorkload& conv = wl.nodes[1];
  EXPECT_EQ(conv.category, hw::OpCategory::Spiking);
  EXPECT_TRUE(conv.spiking);
  EXPECT_EQ(conv.timesteps, 4);
  EXPECT_EQ(conv.neurons, 192);
  EXPECT_EQ(conv.fan_in, 9);
  EXPECT_EQ(conv.synapses, 27);
  EXPECT_EQ(conv.params, 30);
  EXPECT_EQ(conv.macs, 192.0 * 9 * 4);
  EXPECT_EQ(conv.other_flops, 4.0 * 192 * 4);
  // Each conv neuron drives all 10 dense neurons.
  EXPECT_EQ(conv.fan_out, 10);
  // dense: 10 neurons, fan-in 192, 1920 synapses, MACs 1920 x 4.
  const hw::NodeWorkload& dense = wl.nodes[2];
  EXPECT_EQ(dense.neurons, 10);
  EXPECT_EQ(dense.fan_in, 192);
  EXPECT_EQ(dense.synapses, 1920);
  EXPECT_EQ(dense.params, 1930);
  EXPECT_EQ(dense.macs, 1920.0 * 4);
  EXPECT_EQ(dense.fan_out, 5);
  const hw::NodeWorkload& out = wl.nodes[3];
  EXPECT_EQ(out.neurons, 5);
  EXPECT_EQ(out.synapses, 50);
  EXPECT_EQ(out.macs, 200);
  // The tiny network: 3 inputs x 2 units per step, x 4 steps.
  EXPECT_EQ(build_workload(tiny_snn()).nodes[1].macs, 3.0 * 2 * 4);
}

TEST(SpikingBlocks, RecordedSpikesEqualHandSimulation) {
  Genome g = tiny_snn();
  auto model = build_model(g, 1);
  fix_weights(*model);
  // Sample 1, x = [0.6, 0.2, 0]: neuron 0 gets 0.6 per step: m = 0.6, 0.9, 1.05 (spike, v = 0.05),
  // 0.625 -> one spike at t = 2; neuron 1 gets 0.4: 0.4, 0.6, 0.7, 0.75 -> none.
  // Sample 2, x = [1.2, 0.9, 0.3]: neuron 0 gets 1.2: 1.2, 1.3, 1.35, 1.375 (subtracting 1 after
  // each spike) -> 4 spikes; neuron 1 gets 1.05: 1.05, 1.075, 1.0875, 1.09375 -> 4 spikes.
  const nn::ActivityRecorder rec = record(*model, {0.6f, 0.2f, 0.0f, 1.2f, 0.9f, 0.3f}, 2);
  const nn::ActivitySink* dense = rec.find(2);
  ASSERT_NE(dense, nullptr);
  EXPECT_EQ(dense->samples(), 2);
  EXPECT_EQ(dense->totals().at("spikes"), 9);
  EXPECT_EQ(dense->series_totals().at("spikes_per_step"), (std::vector<double>{2, 2, 3, 2}));
  // Synaptic events: non-zero inputs x steps x 2 units = (2 + 3) x 4 x 2.
  EXPECT_EQ(dense->totals().at("synaptic_ops"), 40);
  const nn::ActivitySink* enc = rec.find(1);
  ASSERT_NE(enc, nullptr);
  EXPECT_EQ(enc->totals().at("spikes"), 20);  // direct: non-zero analog inputs x 4 steps

  const hw::Workload wl = build_workload(g, &rec);
  EXPECT_DOUBLE_EQ(wl.nodes[1].activity.scalar_or("spikes", -1), 4.5);
  EXPECT_DOUBLE_EQ(wl.nodes[1].activity.scalar_or("synaptic_ops", -1), 20);
}

TEST(SpikingBlocks, NeuromorphicEnergyFollowsMeasuredSpikes) {
  Genome g = tiny_snn();
  auto model = build_model(g, 1);
  fix_weights(*model);
  for (const char* device : {"loihi", "loihi2"}) {
    SCOPED_TRACE(device);
    auto dev = hw::load_device(device);
    const double assumed = dev->estimate(build_workload(g)).energy_mj;
    // Strong input: 8 spikes per sample from 2 neurons x 4 steps (rate 1), far above the
    // assumed default rate of 0.1, so the measured energy is higher.
    const nn::ActivityRecorder busy = record(*model, {1.2f, 0.9f, 0.3f, 1.2f, 0.9f, 0.3f}, 2);
    EXPECT_GT(dev->estimate(build_workload(g, &busy)).energy_mj, assumed);
    // Silent input: no spikes and no synaptic events, so the measured energy is lower.
    const nn::ActivityRecorder quiet = record(*model, {0, 0, 0, 0, 0, 0}, 2);
    ASSERT_EQ(quiet.find(2)->totals().at("spikes"), 0);
    EXPECT_LT(dev->estimate(build_workload(g, &quiet)).energy_mj, assumed);
  }
}

// learn_beta / learn_threshold make the layer's decay and threshold trained scalars: named under
// the layer, reached by the surrogate gradient, counted as parameters, and clamped into the
// range the LIF op accepts (a value pushed outside gets no gradient, as nn::clamp).
TEST(SpikingBlocks, LearnedBetaAndThreshold) {
  Genome g(TensorType::vector(6));
  auto e = g.add_node("spike_encoder", {{"timesteps", 4}});
  auto d = g.add_node("spiking_dense", {{"timesteps", 4},
                                        {"units", 5},
                                        {"threshold", 0.3},
                                        {"learn_beta", true},
                                        {"learn_threshold", true}});
  auto r = g.add_node("spike_readout", {{"timesteps", 4}, {"outputs", 3}});
  g.add_edge(g.input_node(), e);
  g.add_edge(e, d);
  g.add_edge(d, r);
  g.validate();
  auto model = build_model(g, 2);
  nn::Var beta, threshold;
  for (const auto& np : model->named_parameters()) {
    if (np.name == "n2.lif.beta") beta = np.var;
    if (np.name == "n2.lif.threshold") threshold = np.var;
  }
  ASSERT_TRUE(beta.defined() && threshold.defined());
  EXPECT_FLOAT_EQ(beta.value().data()[0], 0.9f);  // the searched value is the start
  EXPECT_FLOAT_EQ(threshold.value().data()[0], 0.3f);

  std::mt19937_64 rng(5);
  const nn::Tensor x = nn::testing::random_tensor(nn::Shape{8, 6}, rng, 0.0f, 1.0f);
  const nn::Tensor proj = nn::testing::random_tensor(nn::Shape{8, 3}, rng, 0.5f, 1.5f);
  auto grads = [&] {
    nn::zero_grad({beta, threshold});
    nn::ForwardContext ctx;
    nn::backward(nn::sum(nn::mul(model->forward(nn::constant(x), ctx), nn::constant(proj))));
    return std::make_pair(beta.grad().data()[0], threshold.grad().data()[0]);
  };
  const auto [gb, gt] = grads();
  EXPECT_TRUE(std::isfinite(gb) && std::isfinite(gt));
  EXPECT_NE(gb, 0.0f);
  EXPECT_NE(gt, 0.0f);
  // Pushed out of range, the values are clamped (the forward still runs) and get no gradient.
  beta.value().data()[0] = 1.5f;
  threshold.value().data()[0] = -1.0f;
  const auto [gb2, gt2] = grads();
  EXPECT_EQ(gb2, 0.0f);
  EXPECT_EQ(gt2, 0.0f);

  const hw::Workload wl = build_workload(g);
  EXPECT_DOUBLE_EQ(wl.nodes.at(1).params, 6 * 5 + 5 + 2);
}
