// DARTS: derivation (argmax per edge without none, top-k inputs, the skip cap), the supernet,
// ops priced by the device model, the hardware term pulling the derived architecture's
// predicted latency down as its weight rises, and the darts strategy's determinism and
// save/restore with a one-shot environment.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <streambuf>

#include "nn/ops.hpp"
#include "oneshot/darts_search.hpp"
#include "oneshot/environment.hpp"
#include "oneshot/op_costs.hpp"
#include "spaces/workload_builder.hpp"
#include "strategies/registry.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/oneshot/tasks.hpp"

using namespace hwnas;
using namespace hwnas::oneshot;
using hwnas::oneshot::test::quadrant_task;
using nlohmann::json;

namespace {

std::unique_ptr<spaces::Space> nb201(int side = 8) {
  return spaces::make_space(
      {{"type", "nb201"}, {"input", {{"kind", "image"}, {"shape", {3, side, side}}}}});
}

// darts_cell's ops and 4 nodes with 2 inputs, on tiny stages and 8x8 images.
std::unique_ptr<spaces::Space> small_cell() {
  return spaces::make_space(
      {{"type", "cell"},
       {"input", {{"kind", "image"}, {"shape", {3, 8, 8}}}},
       {"outputs", 4},
       {"nodes", 4},
       {"inputs_per_node", 2},
       {"ops",
        {"none",
         "skip_connect",
         "nor_conv_1x1",
         "nor_conv_3x3",
         "avg_pool_3x3",
         {{"name", "dw_conv_5x5"}, {"kind", "dwconv"}, {"params", {{"kernel", 5}}}},
         {{"name", "max_pool_3x3"},
          {"kind", "pool"},
          {"params", {{"op", "max"}, {"kernel", 3}, {"stride", 1}}}}}},
       {"stages", {{{"cells", 1}, {"channels", 8}}, {{"cells", 1}, {"channels", 16}}}}});
}

EdgeProbs probs_from(const std::vector<std::vector<double>>& p) { return p; }

TEST(DartsDerive, Nb201TakesTheArgmaxPerEdgeWithoutNone) {
  auto space = nb201();
  const CellLayout l = cell_layout(*space);
  ASSERT_EQ(l.edges.size(), 6u);
  ASSERT_EQ(l.none_op, 0);
  ASSERT_EQ(l.skip_op, 1);
  // ops: none, skip, conv1x1, conv3x3, avgpool.  Edge 0 prefers none, then conv3x3.
  EdgeProbs p = probs_from({{0.6, 0.1, 0.05, 0.2, 0.05},
                            {0.1, 0.1, 0.5, 0.2, 0.1},
                            {0.1, 0.1, 0.1, 0.1, 0.6},
                            {0.1, 0.5, 0.1, 0.2, 0.1},
                            {0.1, 0.1, 0.1, 0.6, 0.1},
                            {0.1, 0.2, 0.2, 0.2, 0.3}});
  EXPECT_EQ(derive_decisions(l, p), (std::vector<int>{3, 2, 4, 1, 3, 4}));
  EXPECT_EQ(space->describe(space->decode(derive_decisions(l, p))),
            "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
            "avg_pool_3x3~2|");
}

TEST(DartsDerive, CellKeepsTheStrongestInputsAndCapsSkips) {
  auto space = small_cell();
  const CellLayout l = cell_layout(*space);
  ASSERT_EQ(l.edges.size(), 10u);  // 1 + 2 + 3 + 4
  // Every edge prefers skip (index 1) with strength 0.5 + e/100, next best nor_conv_3x3 (3).
  EdgeProbs p;
  for (std::size_t e = 0; e < l.edges.size(); ++e) {
    std::vector<double> row(l.ops.size(), 0.02);
    row[1] = 0.5 + e / 100.0;
    row[3] = 0.3;
    p.push_back(row);
  }
  int skips = 0;
  const auto d = derive_decisions(l, p, -1, &skips);
  EXPECT_EQ(skips, 7);  // nodes 1..4 keep 1 + 2 + 2 + 2 inputs
  // Node 3 (edges 3, 4, 5 from 0, 1, 2) keeps inputs 1 and 2; node 4 keeps 2 and 3.
  const std::string all_skips = space->describe(space->decode(d));
  EXPECT_EQ(all_skips,
            "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~1|skip_connect~2|+|"
            "skip_connect~2|skip_connect~3|");
  // P-DARTS cap: the two strongest skips (edges 9 and 8: node 4) stay, the rest take conv3x3.
  const auto capped = derive_decisions(l, p, 2, &skips);
  EXPECT_EQ(count_skips(l, capped), 2);
  EXPECT_EQ(space->describe(space->decode(capped)),
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~1|nor_conv_3x3~2|+|"
            "skip_connect~2|skip_connect~3|");
  // Draws are valid cells, seeded, and capped the same way.
  std::mt19937_64 a(1), b(1);
  for (int t = 0; t < 20; ++t) {
    const auto da = sample_decisions(l, p, 2, a);
    EXPECT_EQ(da, sample_decisions(l, p, 2, b));
    EXPECT_LE(count_skips(l, da), 2);
    EXPECT_NO_THROW(space->decode(da));
  }
}

TEST(DartsSupernet, RunsEverySpaceItSupportsAndSeparatesTheArchitectureParameters) {
  for (auto* make : {+[] { return nb201(8); }, +[] { return small_cell(); }}) {
    auto space = make();
    DartsSupernet net(cell_layout(*space), 1);
    const auto named = net.named_parameters();
    ASSERT_FALSE(named.empty());
    EXPECT_EQ(named.front().name, "arch.alpha");
    EXPECT_EQ(net.weight_parameters().size() + 1, named.size());
    nn::ForwardContext ctx;
    nn::Var x = nn::constant(nn::Tensor(nn::Shape{2, 3, 8, 8}, 0.3f));
    nn::Var y = net.forward({x}, ctx);
    EXPECT_EQ(y.shape(), (nn::Shape{2, space->num_outputs()})) << space->type();
  }
  auto macro = spaces::load_space(std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json");
  EXPECT_THROW(cell_layout(*macro), std::invalid_argument);
}

TEST(DartsOpCosts, ComeFromTheDeviceModel) {
  auto dev = hw::load_device("jetson_orin_nano");
  const auto t = spaces::TensorType::image(16, 8, 8);
  EXPECT_EQ(op_cost(*dev, {"none", "none", {}}, t, "latency_ms"), 0.0);
  EXPECT_EQ(op_cost(*dev, {"skip_connect", "skip_connect", {}}, t, "latency_ms"), 0.0);
  const double c1 = op_cost(*dev, {"c1", "nor_conv_1x1", {}}, t, "latency_ms");
  const double c3 = op_cost(*dev, {"c3", "nor_conv_3x3", {}}, t, "latency_ms");
  EXPECT_GT(c1, 0.0);
  EXPECT_GT(c3, c1);
  EXPECT_GT(op_cost(*dev, {"c3", "nor_conv_3x3", {}}, t, "energy_mj"), 0.0);
  // The op's own node in the device's breakdown of a whole network is the same figure.
  spaces::Genome g(t);
  g.add_edge(g.input_node(), g.add_node("nor_conv_3x3"));
  g.validate();
  const hw::Cost full = dev->estimate(spaces::build_workload(g));
  EXPECT_NEAR(full.nodes.back().latency_s * 1e3, c3, 1e-12);
}

DartsOptions small_options(double weight) {
  DartsOptions o;
  o.hardware_weight = weight;
  o.epochs = 4;
  o.steps_per_epoch = 12;
  o.batch_size = 16;
  o.w_optimizer = "adamw";
  o.w_lr = 3e-3f;
  o.alpha_lr = 3e-2f;
  o.skip_guard = "cap";
  o.max_skip = 2;
  o.seed = 5;
  return o;
}

double predicted_ms(const hw::Device& d, const spaces::Genome& g) {
  return d.estimate(spaces::build_workload(g)).latency_ms;
}

// The test: three hardware weights, the derived architecture's predicted latency on the
// target device falls as the weight rises.
TEST(DartsHardwareTerm, DerivedLatencyFallsAsTheWeightRises) {
  auto space = small_cell();
  const auto data = quadrant_task(256, 128, 1);
  auto dev = hw::load_device("jetson_orin_nano");
  std::vector<double> ms;
  for (double w : {0.0, 1.0, 10.0}) {
    const DartsOutcome o = run_darts(*space, data, dev.get(), small_options(w));
    ms.push_back(predicted_ms(*dev, o.candidates.front()));
    std::cout << "hardware_weight " << w << ": " << o.report["arch"].get<std::string>() << " "
              << ms.back() << " ms (E[cell] " << o.expected_cost << " ms)\n";
  }
  EXPECT_GT(ms[0], ms[1]);
  EXPECT_GT(ms[1], ms[2]);
}

TEST(DartsSearch, IsDeterministicAndReportsWhatItDid) {
  auto space = nb201(8);
  const auto data = quadrant_task(64, 32, 2);
  auto dev = hw::load_device("jetson_orin_nano");
  DartsOptions o = small_options(0.5);
  o.epochs = 2;
  o.steps_per_epoch = 3;
  o.candidates = 3;
  o.skip_guard = "early_stop";
  const DartsOutcome a = run_darts(*space, data, dev.get(), o);
  const DartsOutcome b = run_darts(*space, data, dev.get(), o);
  ASSERT_EQ(a.candidates.size(), 3u);
  for (std::size_t i = 0; i < a.candidates.size(); ++i)
    EXPECT_EQ(a.candidates[i].hash(), b.candidates[i].hash());
  EXPECT_EQ(a.probs, b.probs);
  EXPECT_EQ(a.report["epochs"].size(), static_cast<std::size_t>(a.epochs_run));
  EXPECT_EQ(a.report["op_costs"].size(), 5u);
  EXPECT_TRUE(a.report.contains("collapsed"));
  EXPECT_LE(count_skips(cell_layout(*space), a.decisions), 2);
  EXPECT_GT(a.report["derived_network_cost"].get<double>(), 0.0);
  o.seed = 6;
  const DartsOutcome c = run_darts(*space, data, dev.get(), o);
  EXPECT_NE(a.probs, c.probs);
}

// A log that throws once it is handed `marker`: a kill at that point of the run.
class KillAt : public std::streambuf {
 public:
  explicit KillAt(std::string marker) : marker_(std::move(marker)) {}

 protected:
  int overflow(int c) override {
    if (c != EOF) text_ += static_cast<char>(c);
    if (text_.find(marker_) != std::string::npos) throw std::runtime_error("killed");
    return c;
  }

 private:
  std::string marker_, text_;
};

// A run killed after its first epoch (the state of epoch 1 saved, epoch 2's not) continues from
// that state and ends exactly where an uninterrupted run ends: same alpha, same derived
// candidates, same per-epoch report.  Gumbel draws and a cap guard make every part of the state
// matter (the generator, both optimizers, the iterators' positions).
TEST(DartsSearch, AKilledPhaseContinuesFromItsLastEpochBitIdentically) {
  auto space = nb201(8);
  const auto data = quadrant_task(48, 40, 3);
  auto dev = hw::load_device("jetson_orin_nano");
  DartsOptions o = small_options(0.5);
  o.epochs = 3;
  o.steps_per_epoch = 4;  // the 48-row split wraps every 3 steps: the passes move mid-epoch
  o.candidates = 3;
  o.gumbel = true;
  const DartsOutcome whole = run_darts(*space, data, dev.get(), o);

  const std::string state = ::testing::TempDir() + "darts_phase.state";
  std::remove(state.c_str());
  o.state_path = state;
  KillAt kill("darts epoch 2/3");
  std::ostream killed_log(&kill);
  killed_log.exceptions(std::ios::badbit);
  EXPECT_THROW(run_darts(*space, data, dev.get(), o, &killed_log), std::runtime_error);
  ASSERT_TRUE(std::filesystem::exists(state));

  std::ostringstream log;
  const DartsOutcome resumed = run_darts(*space, data, dev.get(), o, &log);
  EXPECT_NE(log.str().find("darts: supernet resumed from " + state + " after epoch 1/3"),
            std::string::npos)
      << log.str();
  EXPECT_EQ(resumed.resumed_after_epoch, 1);
  EXPECT_EQ(resumed.probs, whole.probs);
  ASSERT_EQ(resumed.candidates.size(), whole.candidates.size());
  for (std::size_t i = 0; i < whole.candidates.size(); ++i)
    EXPECT_EQ(resumed.candidates[i].hash(), whole.candidates[i].hash());
  EXPECT_EQ(resumed.report["epochs"], whole.report["epochs"]);

  // A state from other options is not continued: said once, trained from the start.
  o.alpha_lr *= 2;
  std::ostringstream other;
  const DartsOutcome fresh = run_darts(*space, data, dev.get(), o, &other);
  EXPECT_NE(other.str().find("is unusable (it was written under other strategy options); "
                             "training the supernet from the start"),
            std::string::npos)
      << other.str();
  EXPECT_EQ(fresh.resumed_after_epoch, 0);
  std::remove(state.c_str());
}

TEST(DartsSearch, GumbelSoftmaxSearchIsSeededAndDiffersFromTheSoftmaxOne) {
  auto space = nb201(8);
  const auto data = quadrant_task(64, 32, 5);
  auto dev = hw::load_device("jetson_orin_nano");
  DartsOptions o = small_options(0.5);
  o.epochs = 2;
  o.steps_per_epoch = 2;
  o.gumbel = true;
  o.temperature = 2.0f;
  const DartsOutcome a = run_darts(*space, data, dev.get(), o);
  const DartsOutcome b = run_darts(*space, data, dev.get(), o);
  EXPECT_EQ(a.probs, b.probs);
  EXPECT_EQ(a.candidates.front().hash(), b.candidates.front().hash());
  o.gumbel = false;
  EXPECT_NE(run_darts(*space, data, dev.get(), o).probs, a.probs);
}

TEST(DartsSearch, EarlyStopGuardStopsAtTheCollapseAndKeepsTheEarlierParameters) {
  // A huge hardware weight drives every edge to the free ops (none, skip) within one epoch.
  auto space = nb201(8);
  const auto data = quadrant_task(64, 32, 3);
  auto dev = hw::load_device("jetson_orin_nano");
  DartsOptions o = small_options(1000.0);
  o.alpha_lr = 0.3f;
  o.epochs = 3;
  o.steps_per_epoch = 4;
  o.skip_guard = "early_stop";
  o.max_skip = 1;
  const DartsOutcome a = run_darts(*space, data, dev.get(), o);
  EXPECT_TRUE(a.collapsed);
  EXPECT_EQ(a.collapse_epoch, a.epochs_run);
  EXPECT_GE(a.collapse_step, 1);  // checked after every architecture step
  EXPECT_LT(a.epochs_run, 3);
  EXPECT_LE(count_skips(cell_layout(*space), a.decisions), 1);
  o.skip_guard = "off";
  const DartsOutcome b = run_darts(*space, data, dev.get(), o);
  EXPECT_TRUE(b.collapsed);  // reported, not prevented
  EXPECT_EQ(b.epochs_run, 3);
  EXPECT_GT(count_skips(cell_layout(*space), b.decisions), 1);
}

// ---- the strategy with a one-shot environment ----

struct Counted {
  std::shared_ptr<int> loads = std::make_shared<int>(0);
  std::shared_ptr<const strategies::OneShotEnvironment> env;
};

Counted environment() {
  Counted c;
  TaskResources r;
  auto loads = c.loads;
  r.data = [loads] {
    ++*loads;
    return quadrant_task(48, 32, 4);
  };
  r.train.batch_size = 16;
  r.train.optimizer = "adamw";
  r.train.lr = 3e-3f;
  r.devices = {"jetson_orin_nano"};
  c.env = make_task_environment(r);
  return c;
}

json darts_config() {
  return {{"type", "darts"},
          {"epochs", 2},
          {"steps_per_epoch", 2},
          {"candidates", 3},
          {"hardware_weight", 0.5}};
}

strategies::StrategyContext context(std::uint64_t seed, const Counted& c) {
  strategies::StrategyContext ctx;
  ctx.seed = seed;
  ctx.oneshot = c.env;
  return ctx;
}

strategies::Result ok_result(const strategies::Proposal& p) {
  strategies::Result r;
  r.id = p.id;
  r.objectives = {0.5};
  r.fitness = 0.5;
  return r;
}

TEST(DartsStrategy, ProposesTheDerivedArchitectureFirstDeterministicallyAndResumes) {
  auto space = nb201(8);
  Counted c = environment();
  auto run = [&](std::uint64_t seed, int n) {
    auto s = strategies::make_strategy(darts_config(), *space, context(seed, c));
    std::vector<std::string> seen;
    for (int i = 0; i < n; ++i) {
      auto p = s->ask(1).front();
      seen.push_back(space->describe(p.genome));
      s->tell(ok_result(p));
    }
    return seen;
  };
  const auto a = run(7, 6);
  EXPECT_EQ(*c.loads, 1);  // one supernet phase
  EXPECT_EQ(a, run(7, 6));
  // The first three are the distinct derived candidates, then mutations.
  EXPECT_NE(a[0], a[1]);
  EXPECT_NE(a[1], a[2]);
  EXPECT_NE(a[0], a[2]);

  // Saved after the phase: a restored strategy continues without training again.
  auto s = strategies::make_strategy(darts_config(), *space, context(7, c));
  for (int i = 0; i < 2; ++i) s->tell(ok_result(s->ask(1).front()));
  const json state = s->save_state();
  EXPECT_TRUE(state["state"]["phase_done"].get<bool>());
  EXPECT_EQ(state["state"]["candidates"].size(), 3u);
  const int loads = *c.loads;
  auto r = strategies::make_strategy(darts_config(), *space, context(99, c));
  r->restore_state(state);
  std::vector<std::string> rest;
  for (int i = 2; i < 6; ++i) {
    auto p = r->ask(1).front();
    rest.push_back(space->describe(p.genome));
    r->tell(ok_result(p));
  }
  EXPECT_EQ(*c.loads, loads);
  EXPECT_EQ(rest, std::vector<std::string>(a.begin() + 2, a.end()));
}

TEST(DartsStrategy, ExplainsWhatItNeeds) {
  auto space = nb201(8);
  // Built and validated without an environment (config checks), refused at the first ask.
  auto s = strategies::make_strategy(darts_config(), *space, {});
  nn::testing::expect_invalid([&] { s->ask(1); }, "no one-shot environment");
  auto mlp = spaces::load_space(std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json");
  nn::testing::expect_invalid([&] { strategies::make_strategy(darts_config(), *mlp, {}); },
                              "this space is 'macro'");
  json bad = darts_config();
  bad["warmup_epochs"] = 2;
  nn::testing::expect_invalid([&] { strategies::make_strategy(bad, *space, {}); },
                              "strategy.warmup_epochs");
  Counted c = environment();
  json dev = darts_config();
  dev["device"] = "toaster";
  auto t = strategies::make_strategy(dev, *space, context(1, c));
  nn::testing::expect_invalid([&] { t->ask(1); }, "strategy.device: 'toaster'");
  TaskResources none;
  none.unavailable = "evaluator 'tabular' has no training data";
  strategies::StrategyContext ctx;
  ctx.oneshot = make_task_environment(none);
  auto u = strategies::make_strategy(darts_config(), *space, ctx);
  nn::testing::expect_invalid([&] { u->ask(1); }, "evaluator 'tabular' has no training data");
}

}  // namespace
