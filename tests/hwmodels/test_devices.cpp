// Hand-computed costs for every family; the arithmetic is in the comments.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

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
          {"peak_flops", {{"fp32", 1e12}, {"fp16", 4e12}, {"int8", 8e12}}},
          {"vector_flops", 1e12},
          {"mem_bw", 1e11},
          {"mem_efficiency", 1.0},
          {"efficiency", {{"default", 0.5}}},
          {"launch_s", 1e-6},
          {"memory_bytes", 1e6},
          {"power", {{"idle_w", 10}, {"tdp_w", 110}}}};
}

json tiny_cpu() {
  return {
      {"name", "tiny_cpu"},
      {"family", "edge_cpu"},
      {"cores", 2},
      {"freq_hz", 1e9},
      {"flops_per_cycle", {{"fp32", 4}, {"int8", 16}}},
      {"mem_bw", 1e9},
      {"efficiency", {{"default", 0.5}}},
      {"op_overhead_s", 1e-6},
      {"memory_bytes", 1e9},
      {"energy", {{"process_nm", 45}, {"vdd", 0.9}, {"dram_pj_per_byte", 100}, {"static_w", 1}}}};
}

json tiny_neuro() {
  return {{"name", "tiny_neuro"},
          {"family", "neuromorphic"},
          {"neurons_per_core", 100},
          {"max_fan_in", 50},
          {"synapse_mem_bits_per_core", 8000},
          {"max_weight_bits", 8},
          {"cores_per_chip", 10},
          {"chips", 1},
          {"cores_per_router", 1},
          {"energy_pj", {{"synaptic_op", 10}, {"spike_out", 2}, {"hop", 3}, {"neuron_update", 1}}},
          {"time_ns", {{"synaptic_op", 1}, {"neuron_update", 2}, {"hop", 1}, {"sync", 100}}},
          {"static_power_per_core_w", 0.001},
          {"non_spiking", "infeasible"}};
}

NodeWorkload spiking_node(double neurons, double spikes, double sops) {
  auto n = node("lif", OpCategory::Spiking, neurons * 40, neurons * 4, 100, 100, 8);
  n.spiking = true;
  n.timesteps = 4;
  n.neurons = neurons;
  n.fan_in = 40;
  n.synapses = neurons * 4;
  n.activity.scalars = {{"spikes", spikes}, {"synaptic_ops", sops}};
  return n;
}

std::string error_of(const json& d) {
  try {
    make_device(d);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// ---- GPU roofline ---------------------------------------------------------------------------

TEST(GpuRoofline, HandComputed) {
  auto dev = make_device(tiny_gpu());
  Workload w;
  w.input_bytes = 1e4;
  // a: batch 2 x 2e6 FLOPs / (0.5 x 1e12) = 8e-6 s compute; memory (4e5 + 2 x 2e4) / 1e11 =
  //    4.4e-6 s -> compute bound; + 1 kernel x 1e-6 = 9e-6 s.
  w.nodes.push_back(node("a", OpCategory::Dense, 1e6, 4e5, 1e4, 1e4));
  // b: 2 x 1e4 / 0.5e12 = 4e-8 s compute; 2 x 2e6 / 1e11 = 4e-5 s memory -> memory bound;
  //    + 2 kernels -> 4.2e-5 s.
  auto b = node("b", OpCategory::Elementwise, 0, 0, 1e6, 1e6, 32, 2);
  b.other_flops = 1e4;
  w.nodes.push_back(b);
  Cost c = dev->estimate(w);
  EXPECT_NEAR(c.nodes[0].latency_s, 9e-6, 1e-15);
  EXPECT_EQ(c.nodes[0].bound, "compute");
  EXPECT_NEAR(c.nodes[1].latency_s, 4.2e-5, 1e-15);
  EXPECT_EQ(c.nodes[1].bound, "memory");
  EXPECT_NEAR(c.latency_ms, 0.051, 1e-12);
  // Energy: 10 W x 5.1e-5 s + (110 - 10) W x (8e-6 + 4e-5) s = 5.1e-4 + 4.8e-3 = 5.31e-3 J.
  EXPECT_NEAR(c.energy_mj, 5.31, 1e-9);
  // Memory: weights 4e5 + batch 2 x peak activation 2e6 (node b) = 4.4e6 B > 1e6 B.
  EXPECT_DOUBLE_EQ(c.memory_bytes, 4.4e6);
  EXPECT_FALSE(c.feasible);
  EXPECT_NE(c.infeasible_reason.find("> device memory"), std::string::npos);
  Cost t = dev->estimate_total(w);
  EXPECT_TRUE(t.nodes.empty());
  EXPECT_DOUBLE_EQ(t.latency_ms, c.latency_ms);
  EXPECT_DOUBLE_EQ(t.energy_mj, c.energy_mj);
}

TEST(GpuRoofline, PrecisionPicksPeak) {
  auto dev = make_device(tiny_gpu());
  Workload w;
  // Pure compute (no bytes): 2 x 2e9 / (0.5 x peak) + 1e-6.
  w.nodes.push_back(node("a", OpCategory::Dense, 1e9, 0, 0, 0, 16));
  EXPECT_NEAR(dev->estimate(w).latency_ms, (4e9 / 2e12 + 1e-6) * 1e3, 1e-9);  // fp16: 4e12
  w.nodes[0].bits = 8;
  EXPECT_NEAR(dev->estimate(w).latency_ms, (4e9 / 4e12 + 1e-6) * 1e3, 1e-9);  // int8: 8e12
  w.nodes[0].bits = 32;
  EXPECT_NEAR(dev->estimate(w).latency_ms, (4e9 / 0.5e12 + 1e-6) * 1e3, 1e-9);  // fp32: 1e12
  // Explicit TF32 for fp32 nodes.
  json d = tiny_gpu();
  d["tf32_for_fp32"] = true;
  d["tf32_flops"] = 2e12;
  EXPECT_NEAR(make_device(d)->estimate(w).latency_ms, (4e9 / 1e12 + 1e-6) * 1e3, 1e-9);
  // Elementwise ops use the vector peak even at fp16.
  w.nodes[0] = node("e", OpCategory::Elementwise, 1e9, 0, 0, 0, 16);
  EXPECT_NEAR(dev->estimate(w).latency_ms, (4e9 / 0.5e12 + 1e-6) * 1e3, 1e-9);
}

// Wider (x2 channels: MACs x4, activations x2, weights x4) or deeper never gets cheaper.
TEST(GpuRoofline, MonotoneInWidthAndDepthOnPresets) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.5, 2.0);
  for (const std::string name : {"h100_sxm", "a100_sxm", "rtx_4090", "jetson_orin_nano",
                                 "jetson_tx2", "rpi4_a72", "pixel3_a75", "stm32f746"}) {
    auto dev = load_device(name);
    for (int trial = 0; trial < 50; ++trial) {
      Workload w;
      int depth = 1 + trial % 6;
      for (int i = 0; i < depth; ++i) {
        double c = 16 * u(rng), hw = 32 * 32;
        auto cat = (i % 3 == 0)   ? OpCategory::Conv
                   : (i % 3 == 1) ? OpCategory::Elementwise
                                  : OpCategory::Dense;
        double macs = cat == OpCategory::Elementwise ? 0 : 9 * c * c * hw;
        w.nodes.push_back(
            node("n", cat, macs, 9 * c * c * 4, c * hw * 4, c * hw * 4, trial % 2 ? 8 : 32));
      }
      Workload wide = w;
      for (auto& n : wide.nodes) {
        n.macs *= 4;
        n.weight_bytes *= 4;
        n.input_bytes *= 2;
        n.output_bytes *= 2;
      }
      Workload deep = w;
      deep.nodes.push_back(w.nodes.back());
      Cost base = dev->estimate(w), cw = dev->estimate(wide), cd = dev->estimate(deep);
      EXPECT_GE(cw.latency_ms, base.latency_ms) << name;
      EXPECT_GE(cd.latency_ms, base.latency_ms) << name;
      EXPECT_GE(cw.energy_mj, base.energy_mj) << name;
      EXPECT_GE(cd.energy_mj, base.energy_mj) << name;
      EXPECT_GE(cw.memory_bytes, base.memory_bytes) << name;
    }
  }
}

// ---- Edge CPU -------------------------------------------------------------------------------

TEST(EdgeCpu, HandComputed) {
  auto dev = make_device(tiny_cpu());
  Workload w;
  // Peak fp32 = 2 cores x 1e9 Hz x 4 = 8e9 FLOP/s.  Compute 2e6 / (0.5 x 8e9) = 5e-4 s;
  // memory 1.2e4 B / 1e9 = 1.2e-5 s -> compute; + 1e-6 overhead = 5.01e-4 s.
  w.nodes.push_back(node("c", OpCategory::Conv, 1e6, 4e3, 4e3, 4e3));
  Cost c = dev->estimate(w);
  EXPECT_NEAR(c.latency_ms, 0.501, 1e-12);
  EXPECT_EQ(c.nodes[0].bound, "compute");
  // Energy (45 nm, 0.9 V: scale 1): 1e6 MAC x 4.6 pJ + 1.2e4 B x 100 pJ + 1 W x 5.01e-4 s
  //   = 4.6e-6 + 1.2e-6 + 5.01e-4 = 5.068e-4 J.
  EXPECT_NEAR(c.energy_mj, 0.5068, 1e-12);
  // int8: peak 2 x 1e9 x 16 = 3.2e10 -> 2e6 / 1.6e10 = 1.25e-4 s; energy per MAC 0.23 pJ.
  w.nodes[0].bits = 8;
  c = dev->estimate(w);
  EXPECT_NEAR(c.latency_ms, 0.126, 1e-12);
  EXPECT_NEAR(c.energy_mj, (1e6 * 0.23e-12 + 1.2e-6 + 1.26e-4) * 1e3, 1e-12);
}

// ---- Edge TPU -------------------------------------------------------------------------------

TEST(EdgeTpu, FallbackRuleAndHandComputed) {
  json d = {{"name", "tpu"},
            {"family", "edge_tpu"},
            {"peak_ops", 1e12},
            {"efficiency", {{"default", 0.5}}},
            {"param_cache_bytes", 1000},
            {"usb_bw", 1e6},
            {"op_overhead_s", 0},
            {"active_power_w", 2},
            {"supported_categories", {"conv", "dense"}},
            {"host_cpu", tiny_cpu()}};
  auto dev = make_device(d);
  Workload w;
  w.input_bytes = 100;
  // n0: compute 2e6 / 0.5e12 = 4e-6 s; weights 600 fit the 1000 B cache; the 100 B input
  //     crosses USB: 1e-4 s -> USB bound, 1e-4 s.
  w.nodes.push_back(node("n0", OpCategory::Conv, 1e6, 600, 100, 200, 8));
  // n1: 400 B of cache left, 200 B streamed + 50 B output back to the host (last TPU node):
  //     250 / 1e6 = 2.5e-4 s.
  w.nodes.push_back(node("n1", OpCategory::Dense, 1e5, 600, 200, 50, 8));
  // n2 unsupported -> CPU; n3 is a supported int8 conv but comes after n2 -> CPU as well.
  w.nodes.push_back(node("n2", OpCategory::Recurrent, 1e4, 40, 50, 50, 8));
  w.nodes.push_back(node("n3", OpCategory::Conv, 1e4, 40, 50, 50, 8));
  Cost c = dev->estimate(w);
  ASSERT_EQ(c.nodes.size(), 4u);
  EXPECT_NEAR(c.nodes[0].latency_s, 1e-4, 1e-15);
  EXPECT_EQ(c.nodes[0].bound, "usb");
  EXPECT_NEAR(c.nodes[1].latency_s, 2.5e-4, 1e-15);
  EXPECT_EQ(c.nodes[2].bound, "fallback-cpu");
  EXPECT_EQ(c.nodes[3].bound, "fallback-cpu");
  EXPECT_EQ(c.extra["nodes_on_tpu"], 2);
  EXPECT_EQ(c.extra["fallback_from"], "n2");
  Workload rest;
  rest.nodes = {w.nodes[2], w.nodes[3]};
  rest.input_bytes = 50;
  Cost h = make_device(tiny_cpu())->estimate(rest);
  EXPECT_NEAR(c.latency_ms, 0.35 + h.latency_ms, 1e-12);
  EXPECT_NEAR(c.energy_mj, 2 * 3.5e-4 * 1e3 + h.energy_mj, 1e-12);

  // A float node first: everything falls back.
  w.nodes[0].bits = 32;
  c = dev->estimate(w);
  EXPECT_EQ(c.extra["nodes_on_tpu"], 0);
  for (const auto& n : c.nodes) EXPECT_EQ(n.bound, "fallback-cpu");
  EXPECT_NE(c.extra["fallback_reason"].get<std::string>().find("not int8"), std::string::npos);
  EXPECT_TRUE(dev->supports(OpCategory::Conv));
  EXPECT_FALSE(dev->supports(OpCategory::Attention));
}

// ---- MCU ------------------------------------------------------------------------------------

TEST(Mcu, HandComputedAndInfeasibleReasons) {
  json d = {{"name", "m7"},
            {"family", "mcu"},
            {"freq_hz", 1e8},
            {"macs_per_cycle", {{"fp32", 0.1}, {"int8", 0.5}}},
            {"other_ops_per_cycle", 1},
            {"sram_bytes", 1000},
            {"flash_bytes", 5000},
            {"active_power_w", 0.1}};
  auto dev = make_device(d);
  Workload w;
  // 1e6 MAC / (0.5 x 1e8) = 0.02 s + 1e4 ops / (1 x 1e8) = 1e-4 s -> 20.1 ms; 0.1 W -> 2.01 mJ.
  auto n = node("c", OpCategory::Conv, 1e6, 2000, 300, 300, 8);
  n.other_flops = 1e4;
  w.nodes.push_back(n);
  Cost c = dev->estimate(w);
  EXPECT_TRUE(c.feasible) << c.infeasible_reason;
  EXPECT_NEAR(c.latency_ms, 20.1, 1e-9);
  EXPECT_NEAR(c.energy_mj, 2.01, 1e-9);
  EXPECT_DOUBLE_EQ(c.memory_bytes, 600);
  // 800 + 400 = 1200 B of activations > 1000 B SRAM.
  w.nodes[0].input_bytes = 800;
  w.nodes[0].output_bytes = 400;
  c = dev->estimate(w);
  EXPECT_FALSE(c.feasible);
  EXPECT_EQ(c.infeasible_reason, "peak activations 1.2 kB > SRAM 1.0 kB");
  // And weights 6000 B > 5000 B flash.
  w.nodes[0].weight_bytes = 6000;
  c = dev->estimate(w);
  EXPECT_EQ(c.infeasible_reason,
            "peak activations 1.2 kB > SRAM 1.0 kB; weights 6.0 kB > flash 5.0 kB");
  // The shipped STM32F746 preset: the MCUNet-512kB activation footprint (456 kB) does not fit 320
  // kB.
  auto f746 = load_device("stm32f746");
  Workload big;
  big.nodes.push_back(node("x", OpCategory::Conv, 1e6, 1e5, 256e3, 200e3, 8));
  Cost cb = f746->estimate(big);
  EXPECT_FALSE(cb.feasible);
  EXPECT_NE(cb.infeasible_reason.find("peak activations 456.0 kB > SRAM 327.7 kB"),
            std::string::npos)
      << cb.infeasible_reason;
}

// ---- Neuromorphic ---------------------------------------------------------------------------

TEST(Neuromorphic, HandComputed) {
  auto dev = make_device(tiny_neuro());
  Workload w;
  w.nodes.push_back(spiking_node(150, 60, 600));
  Cost c = dev->estimate(w);
  ASSERT_TRUE(c.feasible) << c.infeasible_reason;
  // cores = max(ceil(150/100)=2, ceil(600 syn x 8 bit / 8000)=1, 2 x ceil(40/50)=2) = 2.
  EXPECT_EQ(c.extra["cores_used"], 2);
  // hops = max(1, 2/3 sqrt(2)) = 1.  E = 600 x 10 + 60 x (2 + 1 x 3) + 4 x 150 x 1 = 6900 pJ.
  // step = (600 x 1 + 600 x 2 + 60 x 1) ns / (4 steps x 2 cores) + 100 ns sync = 332.5 ns;
  // latency = 4 x 332.5 = 1330 ns; static = 0.001 W x 2 cores x 1.33e-6 s = 2.66e-9 J.
  EXPECT_NEAR(c.latency_ms, 1.33e-3, 1e-15);
  EXPECT_NEAR(c.energy_mj, (6.9e-9 + 2.66e-9) * 1e3, 1e-15);
  EXPECT_DOUBLE_EQ(c.memory_bytes, 600);
}

TEST(Neuromorphic, EnergyGrowsWithSpikesCoresWithLayerSize) {
  auto dev = load_device("loihi");
  double prev = 0;
  for (double spikes : {10.0, 100.0, 1000.0, 10000.0}) {
    Workload w;
    w.nodes.push_back(spiking_node(500, spikes, spikes * 20));
    double e = dev->estimate(w).energy_mj;
    EXPECT_GT(e, prev);
    prev = e;
  }
  double prev_cores = 0;
  for (double neurons : {500.0, 2000.0, 5000.0, 20000.0}) {  // 1, 2, 5, 20 cores
    Workload w;
    w.nodes.push_back(spiking_node(neurons, 10, 100));
    double cores = dev->estimate(w).extra["cores_used"].get<double>();
    EXPECT_GT(cores, prev_cores);
    prev_cores = cores;
  }
  // Too large for one chip of 128 cores.
  Workload huge;
  huge.nodes.push_back(spiking_node(200000, 10, 100));
  Cost c = dev->estimate(huge);
  EXPECT_FALSE(c.feasible);
  EXPECT_NE(c.infeasible_reason.find("cores > 128"), std::string::npos) << c.infeasible_reason;
}

TEST(Neuromorphic, NonSpikingPolicy) {
  Workload w;
  w.nodes.push_back(node("fc", OpCategory::Dense, 1000, 4000, 40, 400));  // 100 fp32 outputs
  Cost c = make_device(tiny_neuro())->estimate(w);
  EXPECT_FALSE(c.feasible);
  EXPECT_NE(c.infeasible_reason.find("'fc' (dense) is not spiking"), std::string::npos);
  json d = tiny_neuro();
  d["non_spiking"] = "rate_code";
  d["rate_code"] = {{"timesteps", 5}, {"rate", 0.2}};
  c = make_device(d)->estimate(w);
  ASSERT_TRUE(c.feasible) << c.infeasible_reason;
  // neurons = 400 B x 8 / 32 = 100; spikes = 0.2 x 5 x 100 = 100; SOPs = 0.2 x 5 x 1000 = 1000;
  // updates = 5 x 100 = 500; synapses = params 1000 x 8 bit = 8000 bit -> 1 core; fan-in 10.
  // E = 1000 x 10 + 100 x (2 + 3) + 500 x 1 = 11000 pJ; step = (1000 + 1000 + 100) / 5 + 100 =
  // 520 ns; latency 2.6 us; static 0.001 x 1 x 2.6e-6 = 2.6e-9 J.
  EXPECT_NEAR(c.latency_ms, 2.6e-3, 1e-15);
  EXPECT_NEAR(c.energy_mj, (11e-9 + 2.6e-9) * 1e3, 1e-15);
  EXPECT_GT(c.energy_mj, 0);  // never silently zero
}

TEST(Neuromorphic, UnmeasuredSpikingNodeUsesStatedRate) {
  auto n = spiking_node(100, 0, 0);
  n.activity = NodeActivity{};  // not measured
  Workload w;
  w.nodes.push_back(n);
  Cost c = make_device(tiny_neuro())->estimate(w);
  ASSERT_TRUE(c.extra.contains("assumed_activity"));
  // default rate 0.1: spikes 0.1 x 4 x 100 = 40, SOPs 0.1 x 4 x MACs 4000 = 1600.
  EXPECT_DOUBLE_EQ(c.extra["spikes"].get<double>(), 40);
  EXPECT_DOUBLE_EQ(c.extra["synaptic_ops"].get<double>(), 1600);
}

// ---- Host, LUT ------------------------------------------------------------------------------

TEST(HostDevice, ReadsMeasurement) {
  auto dev = load_device("host");
  Workload w;
  w.nodes.push_back(node("a", OpCategory::Conv, 3e6, 100, 100, 100));
  w.nodes.push_back(node("b", OpCategory::Dense, 1e6, 100, 100, 100));
  Cost c = dev->estimate(w);
  EXPECT_FALSE(c.feasible);
  EXPECT_NE(c.infeasible_reason.find("host_latency_ms"), std::string::npos);
  w.measured["host_latency_ms"] = 2.0;
  c = dev->estimate(w);
  EXPECT_TRUE(c.feasible);
  EXPECT_DOUBLE_EQ(c.latency_ms, 2.0);
  EXPECT_DOUBLE_EQ(c.energy_mj, 65 * 2.0);         // 65 W x 2 ms
  EXPECT_DOUBLE_EQ(c.nodes[0].latency_s, 1.5e-3);  // apportioned 3:1 by FLOPs
}

TEST(LutDevice, TableScalingAndFallback) {
  json d = {{"name", "lut"},
            {"family", "lut"},
            {"power_w", 1},
            {"table",
             {{"conv", {{"latency_us", 100}, {"macs", 1e6}, {"energy_uj", 5}}},
              {"elementwise", {{"latency_us", 10}}}}}};
  auto dev = make_device(d);
  Workload w;
  w.nodes.push_back(node("c", OpCategory::Conv, 2e6, 0, 0, 0));       // 2 x 100 us, 2 x 5 uJ
  w.nodes.push_back(node("e", OpCategory::Elementwise, 0, 0, 0, 0));  // 10 us, 1 W x 10 us
  w.nodes[1].block_kind = "relu";  // not in table by kind -> matched by category
  Cost c = dev->estimate(w);
  EXPECT_NEAR(c.latency_ms, 0.21, 1e-12);
  EXPECT_NEAR(c.energy_mj, 0.02, 1e-12);
  w.nodes.push_back(node("d", OpCategory::Dense, 10, 0, 0, 0));
  c = dev->estimate(w);
  EXPECT_FALSE(c.feasible);
  EXPECT_NE(c.infeasible_reason.find("no lookup-table entry for node 'd'"), std::string::npos);
  d["fallback"] = tiny_cpu();
  c = make_device(d)->estimate(w);
  EXPECT_TRUE(c.feasible);
  ASSERT_EQ(c.nodes.size(), 3u);
  EXPECT_EQ(c.nodes[2].bound.rfind("fallback:", 0), 0u);
  EXPECT_EQ(c.nodes[2].name, "d");
}

// ---- Presets and validation -----------------------------------------------------------------

TEST(Presets, AllLoadRoundTripAndCostAWorkload) {
  auto names = preset_names();
  EXPECT_GE(names.size(), 15u);
  Workload w;
  w.input_bytes = 3072;
  w.nodes.push_back(node("stem", OpCategory::Conv, 442368, 432, 3072, 16384, 8));
  w.nodes.push_back(node("pool", OpCategory::Pool, 0, 0, 16384, 64, 8));
  w.nodes.push_back(node("fc", OpCategory::Dense, 640, 640, 64, 10, 8));
  w.nodes[1].other_flops = 16384;
  w.measured["host_latency_ms"] = 0.5;
  for (const auto& n : names) {
    SCOPED_TRACE(n);
    auto dev = load_device(n);
    EXPECT_EQ(dev->name(), n);
    json j = dev->to_json();
    EXPECT_TRUE(j.contains("sources") && j["sources"].is_object() && !j["sources"].empty());
    EXPECT_TRUE(j.contains("description"));
    EXPECT_EQ(make_device(j)->to_json(), j);
    Cost c = dev->estimate(w);
    EXPECT_TRUE(c.feasible) << c.infeasible_reason;
    EXPECT_GT(c.latency_ms, 0);
    EXPECT_GT(c.energy_mj, 0);
    EXPECT_GT(c.memory_bytes, 0);
    EXPECT_TRUE(std::isfinite(c.latency_ms) && std::isfinite(c.energy_mj));
    EXPECT_EQ(c.nodes.size(), w.nodes.size());
  }
}

TEST(Presets, UncertainValuesAreMarked) {
  // Every preset marks its uncertain constants, and every source entry carries a tag.
  for (const auto& n : preset_names()) {
    json s = load_device(n)->to_json()["sources"];
    for (auto it = s.begin(); it != s.end(); ++it) {
      std::string v = it->get<std::string>();
      bool tagged = v.find("[V") != std::string::npos || v.find("[S") != std::string::npos ||
                    v.find("[U") != std::string::npos || v.find("[D") != std::string::npos;
      EXPECT_TRUE(tagged) << n << ": " << it.key();
    }
  }
}

TEST(DeviceJson, ErrorsNameTheField) {
  json d = tiny_gpu();
  d["peak_flops"]["fp16"] = -1;
  EXPECT_EQ(error_of(d), "device 'tiny_gpu': field 'peak_flops.fp16' must be a positive number");
  d = tiny_gpu();
  d["peak_flops"].erase("fp32");
  EXPECT_EQ(error_of(d),
            "device 'tiny_gpu': field 'peak_flops.fp32' is required (a positive number)");
  d = tiny_gpu();
  d.erase("mem_bw");
  EXPECT_EQ(error_of(d), "device 'tiny_gpu': field 'mem_bw' is required (a positive number)");
  d = tiny_gpu();
  d["efficiency"]["convolution"] = 0.5;
  EXPECT_NE(error_of(d).find("field 'efficiency.convolution' is not an op category"),
            std::string::npos);
  d = tiny_gpu();
  d["efficiency"] = {{"dense", 1.5}, {"default", 0.5}};
  EXPECT_NE(error_of(d).find("field 'efficiency.dense' must be a number in (0, 1"),
            std::string::npos);
  d = tiny_gpu();
  d["efficiency"] = {{"dense", 0.5}};
  EXPECT_NE(error_of(d).find("field 'efficiency.default' is required"), std::string::npos);
  d = tiny_gpu();
  d["power"]["idle_w"] = 500;
  EXPECT_NE(error_of(d).find("field 'power.idle_w' must not exceed"), std::string::npos);
  d = tiny_gpu();
  d["batch"] = 0;
  EXPECT_EQ(error_of(d), "device 'tiny_gpu': field 'batch' must be a positive integer");
  d = tiny_gpu();
  d["family"] = "fpga";
  EXPECT_EQ(
      error_of(d),
      "device 'tiny_gpu': unknown device family 'fpga' (known: edge_cpu, edge_tpu, external, gpu, "
      "host, learned, lut, mcu, neuromorphic, plugin)");
  d = tiny_gpu();
  d.erase("name");
  EXPECT_EQ(error_of(d), "device description: field 'name' must be a non-empty string");
  d = tiny_neuro();
  d["non_spiking"] = "zero";
  EXPECT_NE(error_of(d).find("field 'non_spiking' must be one of \"infeasible\", \"rate_code\""),
            std::string::npos);
  d = tiny_neuro();
  d["non_spiking"] = "rate_code";
  EXPECT_NE(error_of(d).find("field 'rate_code.timesteps' is required"), std::string::npos);
  json m = {{"name", "m"},
            {"family", "mcu"},
            {"freq_hz", 1e8},
            {"macs_per_cycle", {{"fp32", 1}}},
            {"other_ops_per_cycle", 1},
            {"sram_bytes", "lots"},
            {"flash_bytes", 1},
            {"active_power_w", 1}};
  EXPECT_EQ(error_of(m), "device 'm': field 'sram_bytes' must be a positive number");
  json t = {{"name", "t"},
            {"family", "edge_tpu"},
            {"peak_ops", 1e12},
            {"efficiency", {{"default", 0.5}}},
            {"usb_bw", 1e6},
            {"active_power_w", 2},
            {"supported_categories", {"conv"}},
            {"host_cpu", "no_such_preset"}};
  EXPECT_NE(
      error_of(t).find("field 'host_cpu' is not a valid device: unknown device 'no_such_preset'"),
      std::string::npos);
  json p = {{"name", "p"}, {"family", "plugin"}};
  EXPECT_NE(error_of(p).find("field 'path'"), std::string::npos);
  d = tiny_gpu();
  d["calibration"] = {{"category_scale", {{"dense", -2}}}};
  EXPECT_NE(error_of(d).find("field 'calibration.category_scale.dense'"), std::string::npos);
}

TEST(DeviceJson, LoadDeviceErrors) {
  try {
    load_device("no_such_device");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("presets: "), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("h100_sxm"), std::string::npos);
  }
  auto path = std::filesystem::temp_directory_path() / "hwnas_bad_device.json";
  std::ofstream(path) << "{\"name\": \"x\", \"family\": ";
  try {
    load_device(path.string());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("is not valid JSON"), std::string::npos);
  }
  std::ofstream(path) << tiny_gpu().dump();
  EXPECT_EQ(load_device(path.string())->name(), "tiny_gpu");
  std::filesystem::remove(path);
}

TEST(DeviceJson, CalibrationBlockScalesNodes) {
  json d = tiny_gpu();
  d["calibration"] = {
      {"category_scale", {{"dense", 2.0}}}, {"per_kernel_s", 3e-6}, {"energy_scale", 0.5}};
  Workload w;
  w.nodes.push_back(node("a", OpCategory::Dense, 1e6, 4e5, 1e4, 1e4));
  // body 8e-6 x 2 + 1 kernel x 3e-6 = 1.9e-5 s.
  Cost c = make_device(d)->estimate(w);
  EXPECT_NEAR(c.latency_ms, 1.9e-2, 1e-12);
  // (10 x 1.9e-5 + 100 x 1.6e-5) x 0.5 = 8.95e-4 J.
  EXPECT_NEAR(c.energy_mj, 0.895, 1e-12);
}

TEST(Neuromorphic, RateCodedNodeUsesMeasuredDensities) {
  json d = tiny_neuro();
  d["non_spiking"] = "rate_code";
  d["rate_code"] = {{"timesteps", 5}, {"rate", 0.2}};
  auto dev = make_device(d);
  Workload w;
  w.nodes.push_back(node("fc", OpCategory::Dense, 1000, 4000, 40, 400));  // 100 fp32 outputs
  Cost assumed = dev->estimate(w);
  EXPECT_EQ(assumed.activity_source, "assumed");
  ASSERT_TRUE(assumed.extra.contains("assumed_activity"));
  EXPECT_EQ(assumed.extra["assumed_activity"][0], "fc");
  // Measured: half the outputs non-zero, a quarter of the inputs.
  // spikes = r d_out T neurons = 0.2 x 0.5 x 5 x 100 = 50; SOPs = r d_in T MACs =
  // 0.2 x 0.25 x 5 x 1000 = 250; updates 500.  E = 250 x 10 + 50 x (2 + 3) + 500 x 1 = 3250 pJ;
  // step = (250 x 1 + 500 x 2 + 50 x 1) / 5 + 100 = 360 ns; latency 1.8 us;
  // static 0.001 W x 1 core x 1.8e-6 s = 1.8e-9 J.
  w.nodes[0].activity.scalars = {{"activation_density", 0.5}, {"input_density", 0.25}};
  Cost measured = dev->estimate(w);
  EXPECT_EQ(measured.activity_source, "measured");
  EXPECT_FALSE(measured.extra.contains("assumed_activity"));
  EXPECT_DOUBLE_EQ(measured.extra["spikes"].get<double>(), 50);
  EXPECT_DOUBLE_EQ(measured.extra["synaptic_ops"].get<double>(), 250);
  EXPECT_NEAR(measured.latency_ms, 1.8e-3, 1e-15);
  EXPECT_NEAR(measured.energy_mj, (3.25e-9 + 1.8e-9) * 1e3, 1e-15);
  EXPECT_LT(measured.energy_mj, assumed.energy_mj);  // assumed = every neuron active
  // Only one density measured: the other is assumed (1), and the cost says "mixed".
  w.nodes[0].activity.scalars = {{"activation_density", 0.5}};
  Cost half = dev->estimate_total(w);
  EXPECT_EQ(half.activity_source, "mixed");
  EXPECT_DOUBLE_EQ(half.extra["cores_used"].get<double>(), 1);
}

TEST(Neuromorphic, ActivitySourceOfSpikingNodes) {
  auto dev = make_device(tiny_neuro());
  Workload w;
  w.nodes.push_back(spiking_node(100, 30, 600));
  EXPECT_EQ(dev->estimate(w).activity_source, "measured");
  // Spikes from a per-step series, SOPs from spikes x fan-out.
  auto n = spiking_node(100, 0, 0);
  n.activity = NodeActivity{};
  n.activity.series["spikes_per_step"] = {5, 10, 10, 5};
  n.fan_out = 3;
  Workload ws;
  ws.nodes.push_back(n);
  Cost c = dev->estimate(ws);
  EXPECT_EQ(c.activity_source, "measured");
  EXPECT_DOUBLE_EQ(c.extra["spikes"].get<double>(), 30);
  EXPECT_DOUBLE_EQ(c.extra["synaptic_ops"].get<double>(), 90);
  // One measured, one unmeasured node: mixed.
  auto u = spiking_node(100, 0, 0);
  u.name = "unmeasured";
  u.activity = NodeActivity{};
  w.nodes.push_back(u);
  EXPECT_EQ(dev->estimate(w).activity_source, "mixed");
  // Devices that do not use activity say so.
  EXPECT_EQ(load_device("h100_sxm")->estimate(w).activity_source, "none");
}

// ---- Batch size (issue 14) ------------------------------------------------------------------

TEST(Batch, EdgeCpuRunsTheBatchAsOnePass) {
  json d = tiny_cpu();
  d["batch"] = 2;
  auto dev = make_device(d);
  Workload w;
  w.nodes.push_back(node("c", OpCategory::Conv, 1e6, 4e3, 4e3, 4e3));
  Cost c = dev->estimate(w);
  EXPECT_EQ(c.batch, 2);
  // Compute 2 x 2e6 / (0.5 x 8e9) = 1e-3 s; memory (4e3 weights + 2 x 8e3) / 1e9 = 2e-5 s;
  // one dispatch (1e-6 s) for the batched op -> 1.001e-3 s (batch 1: 5.01e-4 s).
  EXPECT_NEAR(c.latency_ms, 1.001, 1e-12);
  // 2 x 1e6 MAC x 4.6 pJ + 2e4 B x 100 pJ + 1 W x 1.001e-3 s = 9.2e-6 + 2e-6 + 1.001e-3 J.
  EXPECT_NEAR(c.energy_mj, (9.2e-6 + 2e-6 + 1.001e-3) * 1e3, 1e-12);
  // Weights once, activations per sample: 4e3 + 2 x 8e3.
  EXPECT_DOUBLE_EQ(c.memory_bytes, 2e4);
}

TEST(Batch, SequentialFamiliesScaleLinearly) {
  // MCU (hand count in Mcu.HandComputedAndInfeasibleReasons: 20.1 ms, 2.01 mJ at batch 1).
  json m = {{"name", "m7"},
            {"family", "mcu"},
            {"batch", 3},
            {"freq_hz", 1e8},
            {"macs_per_cycle", {{"fp32", 0.1}, {"int8", 0.5}}},
            {"other_ops_per_cycle", 1},
            {"sram_bytes", 1000},
            {"flash_bytes", 5000},
            {"active_power_w", 0.1}};
  Workload w;
  auto n = node("c", OpCategory::Conv, 1e6, 2000, 300, 300, 8);
  n.other_flops = 1e4;
  w.nodes.push_back(n);
  Cost c = make_device(m)->estimate(w);
  EXPECT_NEAR(c.latency_ms, 3 * 20.1, 1e-9);
  EXPECT_NEAR(c.energy_mj, 3 * 2.01, 1e-9);
  EXPECT_DOUBLE_EQ(c.memory_bytes, 600);  // samples run one after another in the same arena
  EXPECT_EQ(c.batch, 3);

  // Neuromorphic (Neuromorphic.HandComputed: 1330 ns, 6900 pJ events at batch 1): two samples
  // take 2660 ns; events 2 x 6.9e-9 J; static 0.001 W x 2 cores x 2.66e-6 s = 5.32e-9 J.
  json nd = tiny_neuro();
  nd["batch"] = 2;
  Workload s;
  s.nodes.push_back(spiking_node(150, 60, 600));
  c = make_device(nd)->estimate(s);
  EXPECT_NEAR(c.latency_ms, 2.66e-3, 1e-15);
  EXPECT_NEAR(c.energy_mj, (2 * 6.9e-9 + 5.32e-9) * 1e3, 1e-15);
}

TEST(Batch, LoadDeviceAtBatchAndEdgeTpuInvocations) {
  auto one = load_device("edgetpu_usb");
  auto four = load_device("edgetpu_usb", 4);
  Workload w;
  w.input_bytes = 3072;
  w.nodes.push_back(node("c", OpCategory::Conv, 1e7, 4e4, 3072, 16384, 8));
  const Cost c1 = one->estimate(w), c4 = four->estimate(w);
  EXPECT_EQ(c4.batch, 4);
  EXPECT_NEAR(c4.latency_ms, 4 * c1.latency_ms, 1e-12);
  EXPECT_NEAR(c4.energy_mj, 4 * c1.energy_mj, 1e-12);
  EXPECT_EQ(four->to_json()["batch"], 4);
  // The GPU's batch is now the common field: batch 1 vs the tiny GPU's 2.
  json g = tiny_gpu();
  EXPECT_EQ(make_device(g)->estimate(w).batch, 2);
  EXPECT_THROW(load_device("rpi4_a72", 0), std::invalid_argument);
}

TEST(Batch, HostReadsTheMeasurementAtItsBatch) {
  json d = {{"name", "h"}, {"family", "host"}, {"power_w", 10}, {"batch", 4}};
  Workload w;
  w.measured = {{"host_latency_ms", 2.0}, {"host_latency_ms_b4", 5.0}};
  Cost c = make_device(d)->estimate(w);
  EXPECT_DOUBLE_EQ(c.latency_ms, 5.0);
  EXPECT_FALSE(c.extra.contains("batch_scaled_from_1"));
  d["batch"] = 3;  // no batch-3 measurement: 3 x the batch-1 one, and it says so
  c = make_device(d)->estimate(w);
  EXPECT_DOUBLE_EQ(c.latency_ms, 6.0);
  EXPECT_EQ(c.extra["batch_scaled_from_1"], true);
}

TEST(Fallback, EdgeTpuFallbackIsACostField) {
  json d = {{"name", "tpu"},
            {"family", "edge_tpu"},
            {"peak_ops", 1e12},
            {"efficiency", {{"default", 0.5}}},
            {"usb_bw", 1e6},
            {"active_power_w", 2},
            {"supported_categories", {"conv", "dense"}},
            {"host_cpu", tiny_cpu()}};
  Workload w;
  w.nodes.push_back(node("n0", OpCategory::Conv, 1e6, 600, 100, 200, 8));
  w.nodes.push_back(node("n1", OpCategory::Recurrent, 1e4, 40, 50, 50, 8));
  w.nodes.push_back(node("n2", OpCategory::Conv, 1e4, 40, 50, 50, 8));
  auto dev = make_device(d);
  Cost c = dev->estimate_total(w);  // the fast path carries it too (extra is empty there)
  EXPECT_EQ(c.fallback_nodes, 2);
  EXPECT_EQ(c.fallback,
            "2 of 3 nodes on host CPU tiny_cpu: node 'n1' (recurrent, 8-bit) is an unsupported op");
  w.nodes[1].category = OpCategory::Conv;
  c = dev->estimate_total(w);
  EXPECT_EQ(c.fallback_nodes, 0);
  EXPECT_TRUE(c.fallback.empty());
}
