#include <gtest/gtest.h>

#include "helpers.hpp"
#include "hwmodels/device.hpp"

using namespace hwnas::hw;
using hwnas::hw::test::node;

namespace {
const std::string kPluginDir = std::string(HWNAS_BINARY_DIR) + "/examples/plugins/";
const std::string kExample = kPluginDir + "libhwnas_example_plugin.so";
const std::string kBadAbi = kPluginDir + "libhwnas_bad_abi_plugin.so";

std::string load_error(const std::string& path) {
  try {
    load_device(path);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(Plugin, LoadsAndEstimates) {
  auto dev = load_device(kExample);
  EXPECT_EQ(dev->name(), "example_accel");
  EXPECT_EQ(dev->family(), "plugin");
  EXPECT_TRUE(dev->supports(OpCategory::Dense));
  EXPECT_FALSE(dev->supports(OpCategory::Pool));
  EXPECT_TRUE(dev->thread_safe());
  Workload w;
  // 1e9 MAC at 1 GMAC/s + 1 us, plus an empty node (1 us); 1 nJ/MAC -> 1 J.
  w.nodes.push_back(node("a", OpCategory::Dense, 1e9, 4e6, 10, 10));
  w.nodes.push_back(node("b", OpCategory::Elementwise, 0, 0, 10, 10));
  Cost c = dev->estimate(w);
  EXPECT_TRUE(c.feasible);
  EXPECT_NEAR(c.latency_ms, 1000.002, 1e-9);
  EXPECT_NEAR(c.energy_mj, 1000, 1e-9);
  EXPECT_DOUBLE_EQ(c.memory_bytes, 4e6);
  ASSERT_EQ(c.nodes.size(), 2u);
  EXPECT_NEAR(c.nodes[1].latency_s, 1e-6, 1e-18);
  // Infeasibility reason comes through.
  w.nodes[0].weight_bytes = 2e9;
  c = dev->estimate_total(w);
  EXPECT_FALSE(c.feasible);
  EXPECT_NE(c.infeasible_reason.find("> 1 GB"), std::string::npos);
}

TEST(Plugin, ByJsonDescription) {
  nlohmann::json d = {{"name", "my_accel"}, {"family", "plugin"}, {"path", kExample}};
  auto dev = make_device(d);
  EXPECT_EQ(dev->name(), "my_accel");
  EXPECT_EQ(make_device(dev->to_json())->to_json(), d);
}

TEST(Plugin, WrongAbiAndBadLibrariesGiveClearErrors) {
  std::string e = load_error(kBadAbi);
  EXPECT_NE(e.find("ABI version 99"), std::string::npos) << e;
  EXPECT_NE(e.find("supports version 1"), std::string::npos) << e;
  e = load_error(kPluginDir + "libdoes_not_exist.so");
  EXPECT_NE(e.find("cannot load plugin"), std::string::npos) << e;
  // A real shared library that is not a plugin.
  e = load_error("libm.so.6");
  EXPECT_NE(e.find("does not export hwnas_plugin_v1_get"), std::string::npos) << e;
}

namespace {
const std::string kActivityPlugin = kPluginDir + "libhwnas_example_activity_plugin.so";
}

TEST(Plugin, V1PluginStillWorksAndSeesFixedActivityFields) {
  auto dev = load_device(kExample);  // built against the v1 descriptor
  Workload w;
  auto n = node("a", OpCategory::Dense, 1e6, 10, 10, 10);
  n.activity.scalars = {{"input_density", 0.5}, {"spikes", 3}};
  w.nodes.push_back(n);
  Cost c = dev->estimate(w);
  EXPECT_NEAR(c.energy_mj, 1, 1e-12);    // 1e6 MAC x 1 nJ: v1 ignores the open activity
  EXPECT_EQ(c.activity_source, "none");  // a v1 plugin cannot say
}

TEST(Plugin, V2PluginReceivesActivity) {
  auto dev = load_device(kActivityPlugin);
  EXPECT_EQ(dev->name(), "example_event_accel");
  EXPECT_TRUE(dev->thread_safe());
  Workload w;
  w.nodes.push_back(node("a", OpCategory::Dense, 1e6, 10, 10, 10));
  w.nodes.push_back(node("b", OpCategory::Dense, 2e6, 10, 10, 10));
  // Nothing measured: every MAC counts (assumed).  E = 3e6 x 1 nJ = 3 mJ.
  Cost c = dev->estimate(w);
  EXPECT_NEAR(c.energy_mj, 3, 1e-12);
  EXPECT_EQ(c.activity_source, "assumed");
  // Node a measured at input density 0.25: E = (0.25e6 + 2e6) nJ; mixed.
  w.nodes[0].activity.scalars = {{"activation_density", 0.9}, {"input_density", 0.25}};
  w.nodes[0].activity.series["spikes_per_step"] = {1, 2};
  c = dev->estimate(w);
  EXPECT_NEAR(c.energy_mj, 2.25, 1e-12);
  EXPECT_EQ(c.activity_source, "mixed");
  ASSERT_EQ(c.nodes.size(), 2u);
  EXPECT_NEAR(c.nodes[0].energy_j, 0.25e-3, 1e-15);
  EXPECT_NEAR(c.nodes[0].latency_s, 1e-6 + 0.25e-3, 1e-15);
  // Both measured.
  w.nodes[1].activity.scalars = {{"input_density", 0.5}};
  c = dev->estimate_total(w);
  EXPECT_NEAR(c.energy_mj, 1.25, 1e-12);
  EXPECT_EQ(c.activity_source, "measured");
}
