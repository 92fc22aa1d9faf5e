// The cfc and ltc block kinds (spaces/blocks/block_cfc.cpp, block_ltc.cpp): shape rule, workload
// counts against hand-computed values, parameter counts against the built module, gradient check
// through the built model, and the LTC's measured solver evaluations.
#include <gtest/gtest.h>

#include "nn/activity.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/spaces/block_test_util.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;
using namespace hwnas::spaces::testing;

namespace {

const hw::NodeWorkload& node_of(const hw::Workload& w) { return w.nodes.at(0); }

}  // namespace

TEST(BlockLiquid, ShapeRule) {
  const BlockKind& cfc = catalogue().at("cfc");
  const BlockKind& ltc = catalogue().at("ltc");
  const TensorType seq = TensorType::sequence(7, 5);
  EXPECT_EQ(cfc.infer({seq}, cfc.resolve({{"units", 6}})), TensorType::sequence(7, 6));
  EXPECT_EQ(cfc.infer({seq}, cfc.resolve({{"units", 6}, {"return_sequences", false}})),
            TensorType::vector(6));
  EXPECT_EQ(ltc.infer({seq}, ltc.resolve({{"units", 4}})), TensorType::sequence(7, 4));
  EXPECT_EQ(ltc.infer({seq}, ltc.resolve({{"units", 4}, {"return_sequences", false}})),
            TensorType::vector(4));
  EXPECT_FALSE(cfc.accepts_kind(DataKind::Image));
  try {
    cfc.infer({seq}, cfc.resolve({{"wiring", "ncp"}}));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cfc: wiring ncp needs backbone_layers 0, got 1"),
              std::string::npos)
        << e.what();
  }
  try {
    ltc.infer({seq}, ltc.resolve({{"wiring", "ncp"}, {"units", 2}}));
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("ltc: wiring ncp needs units >= 3, got 2"),
              std::string::npos)
        << e.what();
  }
}

TEST(BlockLiquid, CfcWorkloadCountsByHand) {
  // L = 7, F = 5, H = 6, U = 8, two backbone layers, default mode (4 heads).
  Genome g = one_block("cfc", TensorType::sequence(7, 5),
                       {{"units", 6}, {"backbone_units", 8}, {"backbone_layers", 2}});
  const hw::NodeWorkload w = node_of(build_workload(g));
  // Per step: x W_in (8*5) + h W_rec (8*6) + layer 2 (8*8) + heads (24*8).
  EXPECT_DOUBLE_EQ(w.macs, 7.0 * (40 + 48 + 64 + 192));
  // W_in + b_in + W_rec + layer 2 (64 + 8) + heads (192 + 24).
  EXPECT_DOUBLE_EQ(w.params, 40 + 8 + 48 + 72 + 216);
  // Biases (8 + 8 + 24), lecun_tanh on 2*8 units (6 each), heads 18*6.
  EXPECT_DOUBLE_EQ(w.other_flops, 7.0 * (40 + 96 + 108));
  EXPECT_EQ(w.category, hw::OpCategory::Recurrent);
  EXPECT_EQ(w.seq_len, 7);
  EXPECT_EQ(w.timesteps, 7);
  auto model = build_model(g, 3);
  EXPECT_EQ(model->num_parameters(), 40 + 8 + 48 + 72 + 216);

  // Pure mode without backbone: heads = first layer (P = H = 6), plus w_tau and A.
  Genome p = one_block("cfc", TensorType::sequence(3, 2),
                       {{"units", 6}, {"backbone_layers", 0}, {"mode", "pure"}});
  const hw::NodeWorkload wp = node_of(build_workload(p));
  EXPECT_DOUBLE_EQ(wp.macs, 3.0 * (12 + 36));
  EXPECT_DOUBLE_EQ(wp.params, 12 + 6 + 36 + 12);
  EXPECT_DOUBLE_EQ(wp.other_flops, 3.0 * (6 + 11 * 6));
  EXPECT_EQ(build_model(p, 1)->num_parameters(), 12 + 6 + 36 + 12);
}

TEST(BlockLiquid, LtcWorkloadCountsByHand) {
  // L = 4, F = 3, H = 5, K = 2 unfolds, dense.
  Genome g = one_block("ltc", TensorType::sequence(4, 3), {{"units", 5}, {"unfolds", 2}});
  const hw::NodeWorkload w = node_of(build_workload(g));
  EXPECT_DOUBLE_EQ(w.macs, 4.0 * (3 + 3 * 15 + 2 * (3 * 25 + 2 * 5)));
  EXPECT_DOUBLE_EQ(w.other_flops, 4.0 * (6 * 15 + 2 * (6 * 25 + 5 * 5) + 2 * 5));
  EXPECT_DOUBLE_EQ(w.params, 3 * 5 + 4 * 25 + 4 * 15 + 2 * 3);
  EXPECT_EQ(w.timesteps, 8);
  EXPECT_DOUBLE_EQ(w.synapses, 40);
  auto model = build_model(g, 2);
  // The module keeps every weight tensor dense (masked entries stay zero), so with dense wiring
  // the parameter count matches exactly.
  EXPECT_EQ(model->num_parameters(), 3 * 5 + 4 * 25 + 4 * 15 + 2 * 3);

  // NCP wiring: fewer synapses than dense, counted from the same seeded wiring.
  Genome n = one_block("ltc", TensorType::sequence(4, 3),
                       {{"units", 12}, {"unfolds", 2}, {"wiring", "ncp"}, {"density", 0.3}});
  const hw::NodeWorkload wn = node_of(build_workload(n));
  EXPECT_LT(wn.synapses, 12 * 12 + 3 * 12);
  EXPECT_DOUBLE_EQ(wn.params, 3 * 12 + 4 * wn.synapses + 2 * 3);
}

TEST(BlockLiquid, LtcRecordsSolverEvaluations) {
  Genome g = one_block("ltc", TensorType::sequence(5, 2), {{"units", 3}, {"unfolds", 4}});
  auto model = build_model(g, 1);
  nn::ActivityRecorder rec;
  nn::ForwardContext ctx;
  ctx.training = false;
  ctx.recorder = &rec;
  std::mt19937_64 rng(1);
  (void)model->forward(nn::constant(nn::testing::random_tensor(nn::Shape{3, 5, 2}, rng)), ctx);
  hw::Workload wl = build_workload(g, &rec);
  EXPECT_DOUBLE_EQ(node_of(wl).activity.scalar_or(nn::activity_key::kFunctionEvals, -1), 20.0);
}

TEST(BlockLiquid, GradientsThroughBuiltModels) {
  for (const json& spec :
       {json{{"kind", "cfc"}, {"p", {{"units", 3}, {"backbone_units", 4}}}},
        json{{"kind", "cfc"},
             {"p", {{"units", 4}, {"backbone_layers", 0}, {"wiring", "ncp"}, {"mode", "no_gate"}}}},
        json{{"kind", "ltc"}, {"p", {{"units", 3}, {"unfolds", 2}, {"return_sequences", false}}}},
        json{{"kind", "ltc"}, {"p", {{"units", 4}, {"unfolds", 2}, {"wiring", "ncp"}}}}}) {
    SCOPED_TRACE(spec.dump());
    Genome g = one_block(spec["kind"], TensorType::sequence(4, 3), spec["p"]);
    auto model = build_model(g, 5);
    std::vector<nn::Var> params;
    model->collect_parameters(params);
    std::mt19937_64 rng(9);
    nn::Var x = nn::parameter(nn::testing::random_tensor(nn::Shape{2, 4, 3}, rng));
    params.push_back(x);
    nn::ForwardContext ctx;
    const nn::Var out = model->forward(x, ctx);
    const nn::Tensor proj = nn::testing::random_tensor(out.shape(), rng, 0.5f, 1.5f);
    auto loss = [&] { return nn::sum(nn::mul(model->forward(x, ctx), nn::constant(proj))); };
    nn::backward(loss());
    // Central differences on a few elements of every parameter and of the input.
    for (std::size_t k = 0; k < params.size(); ++k) {
      nn::Tensor& t = params[k].value();
      const nn::Tensor g = params[k].grad().clone();
      ASSERT_FALSE(g.empty()) << "tensor " << k;
      for (std::int64_t i = 0; i < std::min<std::int64_t>(t.numel(), 6); ++i) {
        const std::int64_t e = (i * 7919) % t.numel();
        if (g.data()[e] == 0.0f) continue;  // masked-out NCP weights
        const float orig = t.data()[e], eps = 1e-2f * std::max(1.0f, std::fabs(orig));
        nn::NoGradGuard ng;
        t.data()[e] = orig + eps;
        const double fp = loss().value().item();
        t.data()[e] = orig - eps;
        const double fm = loss().value().item();
        t.data()[e] = orig;
        const double num = (fp - fm) / (2.0 * eps);
        EXPECT_NEAR(g.data()[e], num, 2e-3 + 2e-2 * std::fabs(num))
            << "tensor " << k << " elem " << e;
      }
    }
  }
}

// bits/prune compress the weight matrices in training (the outputs change), and the workload
// prices what is compressed: every CfC parameter, only the LTC's synaptic weights.
TEST(BlockLiquid, CompressionTrainsAndIsPriced) {
  std::mt19937_64 rng(4);
  const nn::Tensor x = nn::testing::random_tensor(nn::Shape{2, 5, 3}, rng);
  for (const std::string kind : {"cfc", "ltc"}) {
    SCOPED_TRACE(kind);
    const json base = {{"units", 4}, {"unfolds", 2}, {"backbone_units", 6}};
    auto out_of = [&](const json& extra) {
      json p = base;
      if (kind == "ltc") p.erase("backbone_units");
      if (kind == "cfc") p.erase("unfolds");
      p.update(extra);
      Genome g = one_block(kind, TensorType::sequence(5, 3), p);
      auto model = build_model(g, 3);
      nn::ForwardContext ctx;
      ctx.training = false;
      return std::make_pair(model->forward(nn::constant(x), ctx).value(),
                            node_of(build_workload(g)));
    };
    const auto [y32, w32] = out_of(json::object());
    const auto [y4, w4] = out_of({{"bits", 4}});
    const auto [yp, wp] = out_of({{"prune", 0.5}});
    double d4 = 0, dp = 0;
    for (std::int64_t i = 0; i < y32.numel(); ++i) {
      d4 = std::max(d4, static_cast<double>(std::fabs(y4.data()[i] - y32.data()[i])));
      dp = std::max(dp, static_cast<double>(std::fabs(yp.data()[i] - y32.data()[i])));
    }
    EXPECT_GT(d4, 1e-4);  // 4-bit weights change the function ...
    EXPECT_GT(dp, 1e-4);  // ... and so does dropping half of them
    EXPECT_EQ(w4.bits, 4);
    if (kind == "cfc") {
      EXPECT_DOUBLE_EQ(w4.weight_bytes, w32.params * 0.5);
      EXPECT_DOUBLE_EQ(wp.weight_bytes, w32.params * 0.5 * 4);
    } else {
      const double syn = 4 * 4 + 3 * 4;  // recurrent + sensory synaptic weights
      EXPECT_DOUBLE_EQ(w32.weight_bytes, w32.params * 4);
      EXPECT_DOUBLE_EQ(w4.weight_bytes, syn * 0.5 + (w32.params - syn) * 4);
      EXPECT_DOUBLE_EQ(wp.weight_bytes, syn * 0.5 * 4 + (w32.params - syn) * 4);
    }
  }
}

TEST(BlockLiquid, PruneOnNcpWiringIsRefused) {
  for (const std::string kind : {"cfc", "ltc"}) {
    const auto& k = catalogue().at(kind);
    json p = {{"units", 6}, {"wiring", "ncp"}, {"prune", 0.5}};
    if (kind == "cfc") p["backbone_layers"] = 0;
    try {
      k.infer({TensorType::sequence(5, 3)}, k.resolve(p));
      FAIL() << kind << " accepted prune on ncp wiring";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()),
                kind +
                    ": prune with wiring ncp is not supported (the wiring is the sparsity); "
                    "use prune 0 or wiring dense");
    }
  }
}

// State entries are named by role, so a saved state reads like the paper's symbols.
TEST(BlockLiquid, ParametersAreNamedByRole) {
  auto names_of = [](const std::string& kind, const json& p) {
    auto model = build_model(one_block(kind, TensorType::sequence(5, 3), p), 1);
    std::vector<std::string> out;
    for (const auto& np : model->named_parameters()) out.push_back(np.name);
    return out;
  };
  EXPECT_EQ(names_of("cfc", {{"units", 4}, {"backbone_layers", 2}}),
            (std::vector<std::string>{"n1.cfc.w_in", "n1.cfc.b_in", "n1.cfc.w_rec",
                                      "n1.cfc.backbone.1.weight", "n1.cfc.backbone.1.bias",
                                      "n1.cfc.heads.weight", "n1.cfc.heads.bias"}));
  EXPECT_EQ(names_of("cfc", {{"units", 4}, {"mode", "pure"}}).back(), "n1.cfc.a");
  const auto ltc = names_of("ltc", {{"units", 4}});
  ASSERT_EQ(ltc.size(), 13u);
  EXPECT_EQ(ltc[5], "n1.ltc.w");
  EXPECT_EQ(ltc[9], "n1.ltc.sensory_w");
  EXPECT_EQ(names_of("kan", {{"units", 4}}),
            (std::vector<std::string>{"n1.kan.base_weight", "n1.kan.spline_weight",
                                      "n1.kan.spline_scaler"}));
}
