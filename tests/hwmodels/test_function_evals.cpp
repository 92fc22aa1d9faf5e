// Solver nodes (neural_ode) are counted at a nominal number of function evaluations; every
// device charges the measured count instead when the evaluation recorded it.  Hand-computed
// GPU roofline and edge CPU costs; the JSON round trip of the nominal count.
#include <gtest/gtest.h>

#include "helpers.hpp"
#include "hwmodels/device.hpp"

using namespace hwnas::hw;
using hwnas::hw::test::node;
using nlohmann::json;

namespace {

json tiny_gpu() {
  return {{"name", "tiny_gpu"},
          {"family", "gpu"},
          {"batch", 2},
          {"peak_flops", {{"fp32", 1e12}}},
          {"vector_flops", 1e12},
          {"mem_bw", 1e11},
          {"efficiency", {{"default", 0.5}}},
          {"launch_s", 1e-6},
          {"memory_bytes", 1e9},
          {"power", {{"idle_w", 10}, {"tdp_w", 110}}}};
}

json tiny_cpu() {
  return {
      {"name", "tiny_cpu"},
      {"family", "edge_cpu"},
      {"cores", 2},
      {"freq_hz", 1e9},
      {"flops_per_cycle", {{"fp32", 4}}},
      {"mem_bw", 1e9},
      {"efficiency", {{"default", 0.5}}},
      {"op_overhead_s", 1e-6},
      {"memory_bytes", 1e9},
      {"energy", {{"process_nm", 45}, {"vdd", 0.9}, {"dram_pj_per_byte", 100}, {"static_w", 1}}}};
}

// One ODE node: 1e6 MACs and 10 kernels counted at 40 evaluations; no bytes, so compute-bound.
Workload ode_workload(const double* measured_evals) {
  Workload w;
  auto n = node("ode", OpCategory::Recurrent, 1e6, 0, 0, 0, 32, 10);
  n.block_kind = "neural_ode";
  n.nominal_function_evals = 40;
  if (measured_evals) n.activity.scalars["function_evals"] = *measured_evals;
  w.nodes.push_back(n);
  return w;
}

}  // namespace

TEST(FunctionEvals, ScaleAndChargedCopy) {
  const double twice = 80;
  Workload w = ode_workload(&twice);
  EXPECT_DOUBLE_EQ(function_eval_scale(w.nodes[0]), 2.0);
  auto charged = charge_measured_function_evals(w);
  ASSERT_TRUE(charged.has_value());
  EXPECT_DOUBLE_EQ(charged->nodes[0].macs, 2e6);
  EXPECT_EQ(charged->nodes[0].kernels, 20);
  EXPECT_DOUBLE_EQ(charged->nodes[0].nominal_function_evals, 80);
  EXPECT_FALSE(charge_measured_function_evals(*charged).has_value());  // idempotent
  EXPECT_EQ(function_evals_source(w), "measured");
  // Not measured, or not a solver node (an LTC reports evaluations already in its counts).
  EXPECT_FALSE(charge_measured_function_evals(ode_workload(nullptr)).has_value());
  EXPECT_EQ(function_evals_source(ode_workload(nullptr)), "assumed");
  Workload ltc;
  ltc.nodes.push_back(node("ltc", OpCategory::Recurrent, 1e6, 0, 0, 0));
  ltc.nodes[0].activity.scalars["function_evals"] = 12;
  EXPECT_FALSE(charge_measured_function_evals(ltc).has_value());
  EXPECT_EQ(function_evals_source(ltc), "none");
}

TEST(FunctionEvals, GpuRooflineChargesMeasuredEvaluations) {
  auto dev = make_device(tiny_gpu());
  // Nominal: batch 2 x 2e6 FLOPs / (0.5 x 1e12) = 8e-6 s + 10 kernels x 1e-6 s = 1.8e-5 s.
  Cost nominal = dev->estimate(ode_workload(nullptr));
  EXPECT_NEAR(nominal.latency_ms, 1.8e-2, 1e-12);
  EXPECT_EQ(nominal.activity_source, "assumed");
  // Measured 80 = 2 x nominal: 1.6e-5 + 20 x 1e-6 = 3.6e-5 s; measured 20: 4e-6 + 5e-6 = 9e-6.
  for (double evals : {80.0, 20.0}) {
    Cost c = dev->estimate(ode_workload(&evals));
    EXPECT_NEAR(c.latency_ms, 1.8e-2 * evals / 40, 1e-12) << evals;
    EXPECT_EQ(c.activity_source, "measured");
    Cost t = dev->estimate_total(ode_workload(&evals));
    EXPECT_DOUBLE_EQ(t.latency_ms, c.latency_ms);
    // Energy: 10 W x t + 100 W x busy, both proportional here.
    EXPECT_NEAR(c.energy_mj, nominal.energy_mj * evals / 40, 1e-12);
  }
}

TEST(FunctionEvals, EdgeCpuChargesMeasuredEvaluations) {
  auto dev = make_device(tiny_cpu());
  // Peak 2 cores x 1e9 Hz x 4 = 8e9 FLOP/s at efficiency 0.5: 2e6 FLOPs -> 5e-4 s, plus 10 op
  // dispatches x 1e-6 s = 5.1e-4 s; at 80 measured evaluations 1e-3 + 2e-5 = 1.02e-3 s.
  Cost nominal = dev->estimate(ode_workload(nullptr));
  EXPECT_NEAR(nominal.latency_ms, 0.51, 1e-12);
  const double twice = 80;
  Cost c = dev->estimate(ode_workload(&twice));
  EXPECT_NEAR(c.latency_ms, 1.02, 1e-12);
  EXPECT_EQ(c.activity_source, "measured");
  EXPECT_GT(c.energy_mj, 1.9 * nominal.energy_mj);
}

TEST(FunctionEvals, NominalCountRoundTripsAndOldFilesLoad) {
  Workload w = ode_workload(nullptr);
  Workload r = Workload::from_json(w.to_json());
  EXPECT_DOUBLE_EQ(r.nodes[0].nominal_function_evals, 40);
  EXPECT_EQ(r.to_json(), w.to_json());
  json old = w.to_json();
  old["nodes"][0].erase("nominal_function_evals");
  EXPECT_DOUBLE_EQ(Workload::from_json(old).nodes[0].nominal_function_evals, 0);
  EXPECT_FALSE(w.to_json()["nodes"][0].contains("function_evals"));  // not the legacy activity key
}
