// The neural_ode block kind (spaces/blocks/block_neural_ode.cpp): shape rule, workload counts
// against hand-computed values, parameter counts against the built module, the measured solver
// evaluations stored as activity, gradients through the built model, and refused compression.
// The learning test (spiral through the trainer) is tests/evaluators/test_neural_ode_learning.cpp.
#include <gtest/gtest.h>

#include "nn/activity.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;

namespace {

Genome one_block(const TensorType& in, const json& p) {
  Genome g(in);
  auto v = g.add_node("neural_ode", p);
  g.add_edge(0, v);
  g.validate();
  return g;
}

const hw::NodeWorkload& node_of(const hw::Workload& w) { return w.nodes.at(0); }

std::size_t parameter_count(nn::Module& m) {
  std::vector<nn::Var> ps;
  m.collect_parameters(ps);
  std::size_t n = 0;
  for (const auto& p : ps) n += static_cast<std::size_t>(p.value().numel());
  return n;
}

}  // namespace

TEST(BlockNeuralOde, ShapeRuleAndAcceptedKinds) {
  const BlockKind& k = catalogue().at("neural_ode");
  EXPECT_EQ(k.infer({TensorType::vector(7)}, k.resolve({{"hidden", 6}})), TensorType::vector(7));
  EXPECT_TRUE(k.accepts_kind(DataKind::Vector));
  EXPECT_FALSE(k.accepts_kind(DataKind::Sequence));
  EXPECT_FALSE(k.accepts_kind(DataKind::Image));
  EXPECT_EQ(k.find_param("layers")->domain_str(), "int [1, 3]");
  EXPECT_EQ(k.find_param("solver")->domain_str(), "{rk4,dopri5}");
  EXPECT_EQ(k.find_param("gradient")->domain_str(), "{backprop,adjoint}");
  EXPECT_EQ(k.find_param("activation")->domain_str(), "{tanh,softplus,silu,sigmoid}");
}

TEST(BlockNeuralOde, Rk4WorkloadCountsByHand) {
  // D = 2, H = 8, L = 2, time-dependent, rk4 5 steps, tanh (4 flops).
  Genome g = one_block(TensorType::vector(2),
                       {{"hidden", 8}, {"layers", 2}, {"steps", 5}, {"time_dependent", true}});
  const hw::NodeWorkload w = node_of(build_workload(g));
  // Per evaluation: 2*2*8 + 8*8 + 8 = 104 MACs; 2*8*(1+4) + 2 = 82 other flops.
  // 20 evaluations; 7 D = 14 stage MACs per step.
  EXPECT_DOUBLE_EQ(w.nominal_function_evals, 20);
  EXPECT_DOUBLE_EQ(w.macs, 20 * 104 + 5 * 14);
  EXPECT_DOUBLE_EQ(w.other_flops, 20 * 82);
  // 2*8 + 8 (l0) + 8 (time) + 8*8 + 8 (l1) + 8*2 + 2 (l2) = 122.
  EXPECT_DOUBLE_EQ(w.params, 122);
  EXPECT_DOUBLE_EQ(w.weight_bytes, 122 * 4);
  EXPECT_EQ(w.kernels, 20 * 6);
  EXPECT_EQ(w.timesteps, 5);
  EXPECT_EQ(w.category, hw::OpCategory::Recurrent);
  EXPECT_DOUBLE_EQ(w.input_bytes, 8);
  EXPECT_DOUBLE_EQ(w.output_bytes, 8);
  auto model = build_model(g, 3);
  EXPECT_EQ(parameter_count(*model), 122u);
}

TEST(BlockNeuralOde, Dopri5WorkloadIsNominal) {
  // D = 3, H = 4, L = 1, softplus (4 flops): nominal 10 steps -> 2 + 60 = 62 evaluations.
  Genome g = one_block(TensorType::vector(3),
                       {{"hidden", 4}, {"solver", "dopri5"}, {"activation", "softplus"}});
  const hw::NodeWorkload w = node_of(build_workload(g));
  EXPECT_DOUBLE_EQ(w.nominal_function_evals, 62);
  EXPECT_DOUBLE_EQ(w.macs, 62 * (2 * 3 * 4) + 10 * 26 * 3);
  EXPECT_DOUBLE_EQ(w.other_flops, 62 * (4 * 5 + 3) + 10 * 5 * 3);
  EXPECT_DOUBLE_EQ(w.params, 3 * 4 + 4 + 4 * 3 + 3);
  EXPECT_EQ(w.kernels, 62 * 4);
}

TEST(BlockNeuralOde, RecordsMeasuredSolverEvaluations) {
  for (const json& p :
       {json{{"hidden", 5}, {"steps", 3}},
        json{{"hidden", 5}, {"solver", "dopri5"}, {"rtol", 1e-4}, {"atol", 1e-5}}}) {
    Genome g = one_block(TensorType::vector(2), p);
    auto model = build_model(g, 1);
    nn::ActivityRecorder rec;
    nn::ForwardContext ctx;
    ctx.training = false;
    ctx.recorder = &rec;
    std::mt19937_64 rng(1);
    nn::NoGradGuard ng;
    (void)model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{4, 2}, rng)), ctx);
    (void)model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{2, 2}, rng)), ctx);
    hw::Workload wl = build_workload(g, &rec);
    const double nfe = node_of(wl).activity.scalar_or(nn::activity_key::kFunctionEvals, -1);
    if (p.at("hidden") == 5 && !p.contains("solver")) {
      EXPECT_DOUBLE_EQ(nfe, 12.0);  // 4 x 3 steps per solve, whatever the batch
    } else {
      EXPECT_GT(nfe, 2 + 6.0);
      EXPECT_EQ(static_cast<long>(nfe - 2) % 6, 0) << nfe;  // each solve: 2 + 6 x attempts
    }
    // Devices charge the measured count: scale = measured / nominal.
    EXPECT_DOUBLE_EQ(hw::function_eval_scale(node_of(wl)),
                     nfe / node_of(wl).nominal_function_evals);
  }
}

TEST(BlockNeuralOde, GradientsThroughBuiltModels) {
  for (const json& p : {json{{"hidden", 4}, {"steps", 3}, {"gradient", "adjoint"}},
                        json{{"hidden", 4},
                             {"layers", 2},
                             {"solver", "dopri5"},
                             {"rtol", 1e-5},
                             {"atol", 1e-6},
                             {"time_dependent", true}}}) {
    SCOPED_TRACE(p.dump());
    Genome g = one_block(TensorType::vector(3), p);
    auto model = build_model(g, 5);
    nn::ForwardContext ctx;
    std::mt19937_64 rng(2);
    nn::testing::expect_gradients_match(
        [&](const std::vector<nn::Var>& v) { return model->forward(v[0], ctx); },
        {nn::testing::random_tensor(nn::Shape{2, 3}, rng)});
    // Parameters too: one backward, then every parameter received a gradient.
    std::vector<nn::Var> ps;
    model->collect_parameters(ps);
    nn::Var y = model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{2, 3}, rng)), ctx);
    nn::backward(nn::sum(nn::mul(y, y)));
    for (const auto& q : ps) EXPECT_FALSE(q.grad().empty());
  }
}

TEST(BlockNeuralOde, CompressionIsRefused) {
  const BlockKind& k = catalogue().at("neural_ode");
  nn::testing::expect_invalid(
      [&] {
        k.infer({TensorType::vector(3)}, k.resolve({{"bits", 8}}));
      },
      "neural_ode: bits and prune are not supported yet; use bits 32, prune 0");
  nn::testing::expect_invalid(
      [] {
        one_block(TensorType::vector(3), {{"layers", 4}});
      },
      "param 'layers' = 4 not in int [1, 3]");
}
