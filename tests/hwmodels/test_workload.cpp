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
  EXPECT_DOUBLE_EQ(w.total_params(), 15);             // 40*8/32 + 20*8/32
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
  s.activity.samples = 500;
  s.activity.scalars = {{"spikes", 37.5}, {"synaptic_ops", 750}, {"activation_density", 0.25}};
  s.activity.series["spikes_per_step"] = {10, 9.5, 9, 9};
  s.seq_len = 16;
  s.sparsity = 0.25;
  w.nodes.push_back(s);
  auto pool = node("pool", OpCategory::Pool, 0, 0, 4096, 1024, 32);
  pool.window = 3;
  pool.stride = 2;
  pool.kernel_type = "avg_pool";
  w.nodes.push_back(pool);
  auto m = node("moe", OpCategory::Routing, 10, 0, 10, 10, 16, 3);
  m.activity.scalars = {{"active_experts", 2}, {"function_evals", 12}};
  m.activity.series["tokens_per_expert"] = {0.5, 0, 1.5, 0, 0, 0, 0, 0};
  m.total_experts = 8;
  m.other_flops = 7;
  w.nodes.push_back(m);
  w.measured["host_latency_ms"] = 1.25;
  Workload r = Workload::from_json(w.to_json());
  EXPECT_EQ(r.to_json(), w.to_json());
  EXPECT_EQ(r.nodes[0].timesteps, 4);
  EXPECT_TRUE(r.nodes[0].spiking);
  EXPECT_DOUBLE_EQ(r.nodes[0].activity.scalar_or("spikes", 0), 37.5);
  EXPECT_EQ(r.nodes[0].activity, s.activity);
  EXPECT_DOUBLE_EQ(r.nodes[0].activity.samples, 500);
  EXPECT_EQ(r.nodes[1].window, 3);
  EXPECT_EQ(r.nodes[1].stride, 2);
  EXPECT_EQ(r.nodes[1].kernel_type, "avg_pool");
  EXPECT_EQ(r.nodes[1].kernel_type_or_kind(), "avg_pool");
  EXPECT_EQ(r.nodes[0].kernel_type_or_kind(), r.nodes[0].block_kind);  // no variant: the kind
  EXPECT_DOUBLE_EQ(r.nodes[2].activity.scalar_or("active_experts", 0), 2);
  EXPECT_EQ(r.nodes[2].activity.find_series("tokens_per_expert")->size(), 8u);
  EXPECT_DOUBLE_EQ(r.nodes[2].total_experts, 8);
  EXPECT_EQ(r.nodes[2].category, OpCategory::Routing);
  EXPECT_EQ(r.nodes[2].bits, 16);
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
  EXPECT_NE(from_json_error({{"nodes", {{{"window", -3}}}}}).find("node 0: field 'window'"),
            std::string::npos);
  EXPECT_NE(from_json_error({{"nodes", {{{"stride", 1.5}}}}}).find("field 'stride'"),
            std::string::npos);
  EXPECT_NE(from_json_error({{"nodes", {{{"kernel_type", 7}}}}}).find("field 'kernel_type'"),
            std::string::npos);
  EXPECT_NE(from_json_error({{"nodes", nlohmann::json::array()}, {"measured", {{"x", "y"}}}})
                .find("measured.x"),
            std::string::npos);
}

TEST(Workload, UnmeasuredNodeWritesNoActivity) {
  Workload w;
  w.nodes.push_back(node("a", OpCategory::Dense, 10, 4, 4, 4));
  EXPECT_FALSE(w.nodes[0].activity.measured());
  nlohmann::json j = w.to_json();
  EXPECT_FALSE(j["nodes"][0].contains("activity"));
  EXPECT_FALSE(Workload::from_json(j).nodes[0].activity.measured());
}

TEST(Workload, ReadsOldFixedActivityFields) {
  // The format before activity became open: four fixed fields behind "has_activity".
  nlohmann::json old = {{"input_bytes", 10},
                        {"nodes",
                         {{{"name", "n1:lif"},
                           {"macs", 100},
                           {"spiking", true},
                           {"has_activity", true},
                           {"spikes", 12.5},
                           {"synaptic_ops", 250},
                           {"active_experts", 0},
                           {"total_experts", 4},
                           {"function_evals", 3}},
                          {{"name", "n2:dense"}, {"macs", 5}, {"total_experts", 0}}}}};
  Workload w = Workload::from_json(old);
  const NodeActivity& a = w.nodes[0].activity;
  EXPECT_TRUE(a.measured());
  EXPECT_DOUBLE_EQ(a.scalar_or("spikes", -1), 12.5);
  EXPECT_DOUBLE_EQ(a.scalar_or("synaptic_ops", -1), 250);
  EXPECT_DOUBLE_EQ(a.scalar_or("active_experts", -1), 0);
  EXPECT_DOUBLE_EQ(a.scalar_or("function_evals", -1), 3);
  EXPECT_DOUBLE_EQ(a.samples, 0);  // not recorded then
  EXPECT_DOUBLE_EQ(w.nodes[0].total_experts, 4);
  EXPECT_FALSE(w.nodes[1].activity.measured());
  // Written back in the new form, and read again unchanged.
  nlohmann::json j = w.to_json();
  EXPECT_FALSE(j["nodes"][0].contains("has_activity"));
  EXPECT_DOUBLE_EQ(j["nodes"][0]["activity"]["scalars"]["spikes"].get<double>(), 12.5);
  EXPECT_EQ(Workload::from_json(j).nodes[0].activity, a);
}

TEST(Workload, ActivityJsonErrorsNameTheField) {
  auto with_activity = [](nlohmann::json a) {
    return nlohmann::json{{"nodes", {{{"name", "x"}, {"activity", std::move(a)}}}}};
  };
  EXPECT_NE(from_json_error(with_activity(3)).find("node 0: field 'activity' must be an object"),
            std::string::npos);
  EXPECT_NE(from_json_error(with_activity({{"rates", 1}})).find("'activity.rates' is unknown"),
            std::string::npos);
  EXPECT_NE(from_json_error(with_activity({{"scalars", {{"spikes", "many"}}}}))
                .find("field 'activity.scalars.spikes' must be a number"),
            std::string::npos);
  EXPECT_NE(from_json_error(with_activity({{"series", {{"spikes_per_step", 2}}}}))
                .find("field 'activity.series.spikes_per_step' must be an array"),
            std::string::npos);
  EXPECT_NE(from_json_error(with_activity({{"series", {{"s", {1, "x"}}}}}))
                .find("field 'activity.series.s' must be a number"),
            std::string::npos);
  EXPECT_NE(from_json_error(with_activity({{"samples", -2}})).find("field 'samples' must be >= 0"),
            std::string::npos);
}
