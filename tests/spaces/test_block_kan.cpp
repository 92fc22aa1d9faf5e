// The "kan" block kind: domain, shape rule, hand-computed workload counts, bad params, and a
// finite-difference gradient check through the module the catalogue builds.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/optim.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;

namespace {

Genome kan_genome(const TensorType& in, const json& params) {
  Genome g(in);
  auto v = g.add_node("kan", params);
  g.add_edge(0, v);
  g.validate();
  return g;
}

TEST(BlockKan, DomainAndDefaults) {
  const BlockKind& k = catalogue().at("kan");
  EXPECT_EQ(k.find_param("grid")->domain_str(), "{3,5,8,10,20}");
  EXPECT_EQ(k.find_param("order")->domain_str(), "{1,2,3}");
  EXPECT_EQ(k.find_param("base_activation")->domain_str(), "{silu,relu,gelu,tanh,none}");
  EXPECT_NE(k.find_param("units"), nullptr);
  EXPECT_NE(k.find_param("grid_range"), nullptr);
  EXPECT_NE(k.find_param("bits"), nullptr);
  EXPECT_NE(k.find_param("prune"), nullptr);
  EXPECT_FALSE(k.accepts_kind(DataKind::Image));
}

TEST(BlockKan, ShapeRuleOnVectorsAndSequences) {
  Genome v = kan_genome(TensorType::vector(6), {{"units", 4}});
  EXPECT_EQ(v.node(v.output_node()).out, TensorType::vector(4));
  Genome s = kan_genome(TensorType::sequence(5, 6), {{"units", 3}});
  EXPECT_EQ(s.node(s.output_node()).out, TensorType::sequence(5, 3));
  auto model = build_model(s, 1);
  std::mt19937_64 rng(1);
  nn::ForwardContext ctx;
  ctx.rng = &rng;
  nn::Var y =
      model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{2, 5, 6}, rng)), ctx);
  EXPECT_EQ(y.shape(), (nn::Shape{2, 5, 3}));
}

TEST(BlockKan, RejectsParamsOutsideTheDomain) {
  const BlockKind& k = catalogue().at("kan");
  EXPECT_NE(k.check_params({{"grid", 4}}).find("grid"), std::string::npos);
  EXPECT_NE(k.check_params({{"order", 5}}).find("order"), std::string::npos);
  EXPECT_NE(k.check_params({{"base_activation", "softmax"}}).find("base_activation"),
            std::string::npos);
  EXPECT_NE(k.check_params({{"grid_range", 0.1}}).find("grid_range"), std::string::npos);
}

TEST(BlockKan, WorkloadByHand) {
  // in 10 -> 4 units, G = 5, k = 3 (8 bases), silu base, per-edge scale.
  Genome g = kan_genome(TensorType::vector(10), {{"units", 4}, {"grid", 5}, {"order", 3}});
  hw::NodeWorkload w = build_workload(g).nodes.back();
  EXPECT_EQ(w.category, hw::OpCategory::Dense);
  EXPECT_EQ(w.macs, 10 * 4 + 10 * 8 * 4);    // base + spline matmul
  EXPECT_EQ(w.params, 10 * 4 * 9 + 10 * 4);  // base + spline + scales
  // per input: basis 4 + 3*3*4 = 40, silu 5; per output: 1 add; 10*4*8 weight scalings.
  EXPECT_EQ(w.other_flops, 10 * (40 + 5) + 4 + 320);
  EXPECT_EQ(w.neurons, 4);
  EXPECT_EQ(w.fan_in, 10 * 9);
  EXPECT_EQ(w.synapses, 10 * 4 * 9);
  EXPECT_EQ(w.name, "n1:kan");
  // A sequence of 7 positions shares the weights; order 1 without scale, identity base.
  Genome s = kan_genome(TensorType::sequence(7, 10), {{"units", 4},
                                                      {"grid", 3},
                                                      {"order", 1},
                                                      {"base_activation", "none"},
                                                      {"spline_scale", false}});
  hw::NodeWorkload ws = build_workload(s).nodes.back();
  EXPECT_EQ(ws.macs, 7 * (10 * 4 + 10 * 4 * 4));
  EXPECT_EQ(ws.params, 10 * 4 * 5);
  EXPECT_EQ(ws.other_flops, 7 * 10 * (4 + 6) + 7 * 4);
  EXPECT_EQ(ws.seq_len, 7);
}

TEST(BlockKan, GradientsThroughTheBuiltModule) {
  for (const json& p : {json{{"units", 3}},
                        json{{"units", 2}, {"order", 2}, {"grid", 8}, {"base_activation", "tanh"}},
                        json{{"units", 3}, {"grid_range", 2.0}, {"spline_scale", false}}}) {
    SCOPED_TRACE(p.dump());
    Genome g = kan_genome(TensorType::sequence(3, 4), p);
    auto model = build_model(g, 11);
    std::vector<nn::Var> params;
    model->collect_parameters(params);
    std::mt19937_64 rng(5);
    nn::ForwardContext ctx;
    ctx.rng = &rng;
    nn::Tensor x = nn::testing::random_tensor(nn::Shape{2, 3, 4}, rng, -0.95f, 0.95f);
    nn::testing::expect_gradients_match(
        [&](const std::vector<nn::Var>& v) { return model->forward(v[0], ctx); }, {x});
    // Parameters: the model's own parameter Vars, perturbed in place for the central differences.
    std::mt19937_64 prng(9);
    nn::Tensor proj =
        nn::testing::random_tensor(nn::Shape{2, 3, p.at("units").get<int>()}, prng, 0.5f, 1.5f);
    auto loss = [&] {
      return nn::sum(nn::mul(model->forward(nn::constant(x), ctx), nn::constant(proj)));
    };
    nn::zero_grad(params);  // the input check above accumulated into them
    nn::backward(loss());
    for (std::size_t k = 0; k < params.size(); ++k) {
      ASSERT_FALSE(params[k].grad().empty()) << "parameter " << k;
      nn::Tensor& w = params[k].value();
      for (std::int64_t i = 0; i < std::min<std::int64_t>(w.numel(), 40); ++i) {
        const float orig = w.data()[i], eps = 1e-2f * std::max(1.0f, std::fabs(orig));
        double fp, fm;
        {
          nn::NoGradGuard ng;
          w.data()[i] = orig + eps;
          fp = loss().value().item();
          w.data()[i] = orig - eps;
          fm = loss().value().item();
        }
        w.data()[i] = orig;
        const double numeric = (fp - fm) / (2.0 * eps), analytic = params[k].grad().data()[i];
        EXPECT_NEAR(analytic, numeric,
                    2e-3 + 2e-2 * std::max(std::fabs(analytic), std::fabs(numeric)))
            << "parameter " << k << " element " << i;
      }
    }
  }
}

}  // namespace
