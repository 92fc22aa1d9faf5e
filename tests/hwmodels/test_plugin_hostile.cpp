// A plugin that crashes, exits, hangs or returns figures that cannot be costs: every case is an
// infeasible cost naming the plugin and what went wrong, never a crash of hwnas and never a
// feasible cost (examples/plugins/hostile_plugin.c, steered by HWNAS_HOSTILE_MODE).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>

#include "helpers.hpp"
#include "hwmodels/device.hpp"

using namespace hwnas::hw;
using hwnas::hw::test::node;

namespace {
const std::string kHostile =
    std::string(HWNAS_BINARY_DIR) + "/examples/plugins/libhwnas_hostile_plugin.so";

Workload two_nodes() {
  Workload w;
  w.nodes.push_back(node("a", OpCategory::Dense, 1e6, 4e3, 10, 10));
  w.nodes.push_back(node("b", OpCategory::Elementwise, 0, 0, 10, 10));
  return w;
}

struct Mode {
  explicit Mode(const char* m) { ::setenv("HWNAS_HOSTILE_MODE", m, 1); }
  ~Mode() { ::unsetenv("HWNAS_HOSTILE_MODE"); }
};

Cost cost_in(const char* mode, const nlohmann::json& extra = nlohmann::json::object()) {
  nlohmann::json d = {{"name", "bad_accel"}, {"family", "plugin"}, {"path", kHostile}};
  d.update(extra);
  auto dev = make_device(d);
  Mode m(mode);
  return dev->estimate(two_nodes());
}

void expect_failed(const Cost& c, const std::string& what) {
  EXPECT_FALSE(c.feasible);
  EXPECT_TRUE(std::isnan(c.latency_ms));
  EXPECT_NE(c.infeasible_reason.find("plugin device 'bad_accel' (hostile)"), std::string::npos)
      << c.infeasible_reason;
  EXPECT_NE(c.infeasible_reason.find(what), std::string::npos) << c.infeasible_reason;
}
}  // namespace

TEST(PluginHostile, WellBehavedCallsStillWorkIsolated) {
  Cost c = cost_in("ok");
  EXPECT_TRUE(c.feasible) << c.infeasible_reason;
  EXPECT_NEAR(c.latency_ms, (1e-3 + 2e-6) * 1e3, 1e-9);
  ASSERT_EQ(c.nodes.size(), 2u);
  EXPECT_NEAR(c.nodes[0].latency_s, 1e-3 + 1e-6, 1e-15);
  // The same figures in-process.
  Cost d = cost_in("ok", {{"isolate", false}});
  EXPECT_DOUBLE_EQ(d.latency_ms, c.latency_ms);
}

TEST(PluginHostile, CrashesExitsAndHangsFailOnlyTheirCost) {
  expect_failed(cost_in("segv"), "crashed with signal 11");
  expect_failed(cost_in("abort"), "crashed with signal 6");
  expect_failed(cost_in("exit"), "exited with status 7 before returning a result");
  expect_failed(cost_in("hang", {{"timeout_s", 0.5}}),
                "did not return within timeout_s = 0.5 s and was killed");
}

TEST(PluginHostile, FiguresThatCannotBeCostsAreRefused) {
  for (bool isolate : {true, false}) {
    SCOPED_TRACE(isolate);
    const nlohmann::json opt = {{"isolate", isolate}};
    expect_failed(cost_in("nan", opt), "returned latency_s = nan; a cost must be a finite number");
    expect_failed(cost_in("inf", opt), "returned memory_bytes = inf");
    expect_failed(cost_in("negative", opt), "returned energy_j = -1");
    expect_failed(cost_in("node_nan", opt), "returned node_latency_s[0] = nan");
  }
}

TEST(PluginHostile, OptionsAreChecked) {
  nlohmann::json d = {
      {"name", "bad_accel"}, {"family", "plugin"}, {"path", kHostile}, {"timeout_s", -1}};
  try {
    make_device(d);
    FAIL() << "negative timeout accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("timeout_s"), std::string::npos) << e.what();
  }
}
