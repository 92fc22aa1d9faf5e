// Native precisions (device_base.hpp NativePrecisions): a node at a precision the device does not
// run natively runs at the narrowest native precision at least as wide, with that precision's
// rate and energy and its activation width, weights packed (int8 on the Edge TPU); with none
// wide enough the family decides (Edge TPU: host CPU).  Hand-computed; arithmetic in comments.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "helpers.hpp"
#include "hwmodels/device_base.hpp"

using namespace hwnas::hw;
using hwnas::hw::test::node;
using nlohmann::json;

namespace {

// Batch 2; fp32 1e12, fp16 4e12, int8 8e12 FLOP/s at efficiency 0.5; 1e11 B/s; 1 us launch.
json gpu() {
  return {{"name", "g"},
          {"family", "gpu"},
          {"batch", 2},
          {"peak_flops", {{"fp32", 1e12}, {"fp16", 4e12}, {"int8", 8e12}}},
          {"vector_flops", 1e12},
          {"mem_bw", 1e11},
          {"efficiency", {{"default", 0.5}}},
          {"launch_s", 1e-6},
          {"memory_bytes", 1e9},
          {"power", {{"idle_w", 10}, {"tdp_w", 110}}}};
}

json cpu() {
  return {
      {"name", "c"},
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

json tpu() {
  return {{"name", "tpu"},
          {"family", "edge_tpu"},
          {"peak_ops", 1e12},
          {"efficiency", {{"default", 0.5}}},
          {"param_cache_bytes", 1000},
          {"usb_bw", 1e6},
          {"active_power_w", 2},
          {"supported_categories", {"conv", "dense"}},
          {"host_cpu", cpu()}};
}

json mcu() {
  return {{"name", "m"},
          {"family", "mcu"},
          {"freq_hz", 1e8},
          {"macs_per_cycle", {{"fp32", 0.1}, {"int8", 0.5}}},
          {"other_ops_per_cycle", 1},
          {"sram_bytes", 1000},
          {"flash_bytes", 5000},
          {"active_power_w", 0.1}};
}

Workload one(const NodeWorkload& n, double input_bytes = 0) {
  Workload w;
  w.input_bytes = input_bytes;
  w.nodes.push_back(n);
  return w;
}

std::string error_of(const json& d) {
  try {
    make_device(d);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

std::string note_of(const Cost& c, const std::string& node) {
  if (!c.extra.contains("non_native_precision")) return "";
  return c.extra["non_native_precision"].value(node, "");
}

}  // namespace

TEST(NativePrecision, RunAsRule) {
  const auto n = NativePrecisions::of({Precision::Fp32, Precision::Int8});
  EXPECT_EQ(*n.run_as(Precision::Int4), Precision::Int8);
  EXPECT_EQ(*n.run_as(Precision::Int8), Precision::Int8);
  EXPECT_EQ(*n.run_as(Precision::Fp16), Precision::Fp32);
  EXPECT_EQ(n.list(), "fp32, int8");
  const auto tpu_only = NativePrecisions::of({Precision::Int8});
  EXPECT_FALSE(tpu_only.run_as(Precision::Fp16).has_value());
  EXPECT_EQ(precision_of_bits(4), Precision::Int4);
  EXPECT_EQ(precision_of_bits(8), Precision::Int8);
  EXPECT_EQ(precision_of_bits(16), Precision::Fp16);
}

TEST(NativePrecision, GpuWithoutInt4ChargesInt8AndSaysSo) {
  auto dev = make_device(gpu());  // native: the peak_flops keys fp32, fp16, int8
  // Compute only: batch 2 x 2e9 FLOPs / (0.5 x 8e12 int8) = 1e-3 s + 1 us launch.
  Cost c = dev->estimate(one(node("a", OpCategory::Dense, 1e9, 0, 0, 0, 4)));
  EXPECT_NEAR(c.latency_ms, (1e-3 + 1e-6) * 1e3, 1e-9);
  EXPECT_EQ(note_of(c, "a"), "int4 runs as int8 (native: fp32, fp16, int8)");
  // Memory only: activations 1e6 + 1e6 B at 4 bits move as int8, twice the bytes:
  // 2 x 2e6 x 2 / 1e11 = 8e-5 s + 1 us.
  Cost m = dev->estimate(one(node("e", OpCategory::Elementwise, 0, 0, 1e6, 1e6, 4)));
  EXPECT_NEAR(m.latency_ms, (8e-5 + 1e-6) * 1e3, 1e-9);
  // A native int4 rate of 16e12: 4e9 / 8e12 = 5e-4 s; activations at 4 bits: 4e-5 s.
  json d = gpu();
  d["peak_flops"]["int4"] = 16e12;
  auto d4 = make_device(d);
  Cost c4 = d4->estimate(one(node("a", OpCategory::Dense, 1e9, 0, 0, 0, 4)));
  EXPECT_NEAR(c4.latency_ms, (5e-4 + 1e-6) * 1e3, 1e-9);
  EXPECT_FALSE(c4.extra.contains("non_native_precision"));
  EXPECT_NEAR(d4->estimate(one(node("e", OpCategory::Elementwise, 0, 0, 1e6, 1e6, 4))).latency_ms,
              (4e-5 + 1e-6) * 1e3, 1e-9);
  // fp16 on a GPU without fp16 (native fp32, int8): the fp32 rate, 4e9 / 0.5e12 = 8e-3 s.
  json nf = gpu();
  nf["peak_flops"].erase("fp16");
  Cost f = make_device(nf)->estimate(one(node("h", OpCategory::Dense, 1e9, 0, 0, 0, 16)));
  EXPECT_NEAR(f.latency_ms, (8e-3 + 1e-6) * 1e3, 1e-9);
  EXPECT_EQ(note_of(f, "h"), "fp16 runs as fp32 (native: fp32, int8)");
}

TEST(NativePrecision, EdgeCpuFp16RunsAsFp32) {
  auto dev = make_device(cpu());  // native fp32, int8 (an ARMv8.0 core: no fp16 arithmetic)
  // fp16 node: compute at fp32, 2e6 / (0.5 x 8e9) = 5e-4 s; bytes 4e3 weights + 4e3 activations
  // moved at fp32 width (8e3) = 1.2e4 B -> 1.2e-5 s; + 1 us = 5.01e-4 s.  Energy at fp32:
  // 1e6 x 4.6 pJ + 1.2e4 B x 100 pJ + 1 W x 5.01e-4 s = 5.068e-4 J (the fp32 node's figure).
  Cost c = dev->estimate(one(node("c", OpCategory::Conv, 1e6, 4e3, 2e3, 2e3, 16)));
  EXPECT_NEAR(c.latency_ms, 0.501, 1e-12);
  EXPECT_NEAR(c.energy_mj, 0.5068, 1e-12);
  EXPECT_EQ(note_of(c, "c"), "fp16 runs as fp32 (native: fp32, int8)");
  // int4: the int8 rate 3.2e10 -> 2e6 / 1.6e10 = 1.25e-4 s + 1 us, 0.23 pJ per MAC.
  Cost i4 = dev->estimate(one(node("q", OpCategory::Conv, 1e6, 500, 500, 500, 4)));
  EXPECT_NEAR(i4.latency_ms, 0.126, 1e-12);
  EXPECT_NEAR(i4.energy_mj, (1e6 * 0.23e-12 + 2500 * 100e-12 + 1.26e-4) * 1e3, 1e-12);
}

TEST(NativePrecision, McuInt4AtInt8RateWeightsPackedActivationsInt8) {
  auto dev = make_device(mcu());
  // 1e6 MACs / (0.5 x 1e8) = 20 ms, as int8.  Activations 300 + 300 B at 4 bits are 1200 B as
  // int8 > 1000 B SRAM; the 2000 B of packed weights fit the 5000 B flash.
  Cost c = dev->estimate(one(node("c", OpCategory::Conv, 1e6, 2000, 300, 300, 4)));
  EXPECT_NEAR(c.latency_ms, 20.0, 1e-9);
  EXPECT_FALSE(c.feasible);
  EXPECT_EQ(c.infeasible_reason, "peak activations 1.2 kB > SRAM 1.0 kB");
  EXPECT_DOUBLE_EQ(c.extra["flash_bytes_used"].get<double>(), 2000);
  EXPECT_EQ(note_of(c, "c"), "int4 runs as int8 (native: fp32, int8)");
  // fp16 runs as fp32: 1e6 / (0.1 x 1e8) = 100 ms.
  Cost h = dev->estimate(one(node("h", OpCategory::Conv, 1e6, 2000, 200, 200, 16)));
  EXPECT_NEAR(h.latency_ms, 100.0, 1e-9);
  EXPECT_DOUBLE_EQ(h.memory_bytes, 800);
}

TEST(NativePrecision, EdgeTpuInt4StaysOnTpuAsInt8FloatFallsBack) {
  auto dev = make_device(tpu());
  // int4 conv: compute 2e6 / 0.5e12 = 4e-6 s.  Its 600 B of 4-bit weights are 1200 B as int8:
  // 1000 B cached, 200 B streamed; + 100 B input + 200 B output as int8 (400 B) over USB:
  // 700 B / 1e6 B/s = 7e-4 s (USB bound).
  Cost c = dev->estimate(one(node("n0", OpCategory::Conv, 1e6, 600, 100, 200, 4), 100));
  EXPECT_EQ(c.fallback_nodes, 0);
  EXPECT_NEAR(c.latency_ms, 0.7, 1e-12);
  EXPECT_EQ(note_of(c, "n0"), "int4 runs as int8 (native: int8)");
  // With native int4 the weights stay packed: 600 B cached; 100 + 200 B over USB: 3e-4 s.
  json d = tpu();
  d["native_precisions"] = {"int8", "int4"};
  Cost p = make_device(d)->estimate(one(node("n0", OpCategory::Conv, 1e6, 600, 100, 200, 4), 100));
  EXPECT_NEAR(p.latency_ms, 0.3, 1e-12);
  // fp16: no native precision wide enough; it and everything after it run on the host CPU.
  Cost f = dev->estimate(one(node("n0", OpCategory::Conv, 1e6, 600, 100, 200, 16), 100));
  EXPECT_EQ(f.fallback_nodes, 1);
  EXPECT_NE(f.fallback.find("fp16 is not native on the Edge TPU (native: int8)"), std::string::npos)
      << f.fallback;
  EXPECT_EQ(note_of(f, "n0"),
            "fp16: no native precision wide enough (native: int8); runs on host_cpu c");
}

TEST(NativePrecision, PresetsSayWhatTheyRunNatively) {
  Workload w = one(node("q", OpCategory::Conv, 1e6, 500, 500, 500, 4), 100);
  // int4 is native on Ampere/Ada tensor cores (Orin, A100, RTX 4090), not on Hopper (H100), the
  // TX2, the Cortex-A CPUs, the Cortex-M MCUs or the Edge TPU.
  for (const char* dev : {"jetson_orin_nano", "a100_sxm", "rtx_4090"})
    EXPECT_EQ(note_of(load_device(dev)->estimate(w), "q"), "") << dev;
  EXPECT_EQ(note_of(load_device("h100_sxm")->estimate(w), "q"),
            "int4 runs as int8 (native: fp32, fp16, int8)");
  EXPECT_EQ(note_of(load_device("jetson_tx2")->estimate(w), "q"),
            "int4 runs as fp16 (native: fp32, fp16)");
  EXPECT_EQ(note_of(load_device("stm32h743")->estimate(w), "q"),
            "int4 runs as int8 (native: fp32, int8)");
  EXPECT_EQ(note_of(load_device("rpi4_a72")->estimate(w), "q"),
            "int4 runs as int8 (native: fp32, int8)");
  EXPECT_EQ(note_of(load_device("edgetpu_usb")->estimate(w), "q"),
            "int4 runs as int8 (native: int8)");
  // Orin Nano: the int4 node is charged at the int4 rate, faster than the same node at int8.
  auto orin = load_device("jetson_orin_nano");
  Workload w8 = w;
  w8.nodes[0].bits = 8;
  w8.nodes[0].weight_bytes = 1000;
  w8.nodes[0].input_bytes = w8.nodes[0].output_bytes = 1000;
  EXPECT_LT(orin->estimate(w).latency_ms, orin->estimate(w8).latency_ms);
}

TEST(NativePrecision, BadFieldsNameDeviceFieldAndFix) {
  json d = gpu();
  d["native_precisions"] = {"fp32", "fp16", "int8", "int4"};
  EXPECT_EQ(error_of(d),
            "device 'g': field 'peak_flops.int4' is required: native_precisions lists int4 (give "
            "its rate here, or drop int4 from native_precisions)");
  d["native_precisions"] = {"fp32", "int8"};
  EXPECT_EQ(error_of(d),
            "device 'g': field 'peak_flops.fp16' is given but native_precisions does not list "
            "fp16 (add \"fp16\" to native_precisions, or remove this entry)");
  d["native_precisions"] = {"fp32", "int3"};
  EXPECT_NE(error_of(d).find("device 'g': field 'native_precisions' has \"int3\", not a "
                             "precision (a non-empty array of distinct names from fp32, fp16, "
                             "int8, int4"),
            std::string::npos)
      << error_of(d);
  d["native_precisions"] = "int8";
  EXPECT_NE(error_of(d).find("field 'native_precisions' must be (a non-empty array"),
            std::string::npos)
      << error_of(d);
  d["native_precisions"] = {"int8", "int8"};
  EXPECT_NE(error_of(d).find("lists \"int8\" twice"), std::string::npos) << error_of(d);
  json t = gpu();
  t["peak_flops"]["int2"] = 1e13;
  EXPECT_EQ(error_of(t),
            "device 'g': field 'peak_flops.int2' is not a precision (use fp32, fp16, int8, int4)");
  json e = tpu();
  e["native_precisions"] = {"fp32", "int8"};
  EXPECT_NE(error_of(e).find("field 'native_precisions' lists a float precision (native: fp32, "
                             "int8), but the Edge TPU runs integer ops only"),
            std::string::npos)
      << error_of(e);
  e["native_precisions"] = {"int4"};
  EXPECT_NE(error_of(e).find("must include int8"), std::string::npos) << error_of(e);
  // From a file, the error names the file too.
  const auto path = std::filesystem::temp_directory_path() / "hwnas_bad_native.json";
  json f = mcu();
  f["native_precisions"] = {"fp32", "int8", "int4"};
  std::ofstream(path) << f.dump();
  try {
    load_device(path.string());
    ADD_FAILURE() << "accepted a native int4 without a rate";
  } catch (const std::invalid_argument& ex) {
    const std::string msg = ex.what();
    EXPECT_NE(msg.find("field 'macs_per_cycle.int4' is required"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  }
  std::filesystem::remove(path);
}
