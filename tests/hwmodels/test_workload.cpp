#include <gtest/gtest.h>

#include "helpers.hpp"
#include "hwmodels/workload.hpp"

using namespace hwnas::hw;
using hwnas::hw::test::node;

TEST(Workload, CategoryNamesRoundTrip) {
  for (int i = 0; i < static_cast<int>(OpCategory::kCount); ++i) {
    auto c = static_cast<OpCategory>(i);
    EXPECT_EQ(op_category_from_name(op_category_name(c)), c);
  }
  try {
    op_category_from_name("convolution");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("depthwise_conv"), std::string::npos);  // lists known
  }
}

TEST(Workload, TotalsAndPeakActivation) {
  Workload w;
  w.input_bytes = 3000;
  w.nodes.push_back(node("a", OpCategory::Conv, 100, 40, 3000, 2000));
  w.nodes.push_back(node("b", OpCategory::Dense, 50, 20, 2000, 500));
  EXPECT_DOUBLE_EQ(w.total_macs(), 150);
  EXPECT_DOUBLE_EQ(w.total_weight_bytes(), 60);
  EXPECT_DOUBLE_EQ(w.total_params(), 15);  // 40*8/32 + 20*8/32
  EXPECT_DOUBLE_EQ(w.peak_activation_bytes(), 5000);  // node a: 3000 in + 2000 out
}

TEST(Workload, JsonRoundTripKeepsEmergingFields) {
  Workload w;
  w.input_bytes = 784;
  auto s = node("lif1", OpCategory::Spiking, 1000, 1000, 784, 400, 8);
  s.spiking = true;
  s.timesteps = 4;
  s.neurons = 100;
  s.fan_in = 10;
  s.fan_out = 20;
  s.synapses = 1000;
  s.has_activity = true;
  s.spikes = 37.5;
  s.synaptic_ops = 750;
  s.seq_len = 16;
  s.sparsity = 0.25;
  w.nodes.push_back(s);
  auto m = node("moe", OpCategory::Routing, 10, 0, 10, 10, 16, 3);
  m.has_activity = true;
  m.active_experts = 2;
  m.total_experts = 8;
  m.function_evals = 12;
  m.other_flops = 7;
  w.nodes.push_back(m);
  w.measured["host_latency_ms"] = 1.25;
  Workload r = Workload::from_json(w.to_json());
  EXPECT_EQ(r.to_json(), w.to_json());
  EXPECT_EQ(r.nodes[0].timesteps, 4);
  EXPECT_TRUE(r.nodes[0].spiking);
  EXPECT_DOUBLE_EQ(r.nodes[0].spikes, 37.5);
  EXPECT_DOUBLE_EQ(r.nodes[1].active_experts, 2);
  EXPECT_EQ(r.nodes[1].category, OpCategory::Routing);
  EXPECT_EQ(r.nodes[1].bits, 16);
  EXPECT_DOUBLE_EQ(r.measured.at("host_latency_ms"), 1.25);
}

static std::string from_json_error(const nlohmann::json& j) {
  try {
    Workload::from_json(j);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Workload, FromJsonErrorsNameTheField) {
  EXPECT_NE(from_json_error({{"input_bytes", 1}}).find("'nodes'"), std::string::npos);
  EXPECT_NE(from_json_error({{"nodes", {{{"macs", "many"}}}}}).find("node 0: field 'macs'"),
            std::string::npos);
  EXPECT_NE(from_json_error({{"nodes", {{{"category", "blob"}}}}}).find("field 'category'"),
            std::string::npos);
  EXPECT_NE(from_json_error({{"nodes", {{{"bits", 0}}}}}).find("field 'bits'"), std::string::npos);
  EXPECT_NE(from_json_error({{"nodes", {{{"macs", -1}}}}}).find(">= 0"), std::string::npos);
  EXPECT_NE(from_json_error({{"nodes", nlohmann::json::array()}, {"measured", {{"x", "y"}}}})
                .find("measured.x"),
            std::string::npos);
}
