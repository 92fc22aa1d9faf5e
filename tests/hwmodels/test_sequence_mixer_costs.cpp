// How the device families price the two op categories of the state-space mixers (s4d: Fft,
// mamba: Recurrent): every GPU and edge-CPU preset gives both an explicit, sourced efficiency;
// hand-computed latencies on the Raspberry Pi 4 preset; the Edge TPU hands them to its host CPU;
// an MCU runs them at its scalar fp32 rate.
#include <gtest/gtest.h>

#include "helpers.hpp"
#include "hwmodels/device.hpp"

using namespace hwnas::hw;
using hwnas::hw::test::node;

TEST(SequenceMixerCosts, PresetsPriceRecurrentAndFftExplicitlyWithSources) {
  for (const auto& name : preset_names()) {
    const nlohmann::json j = load_device(name)->to_json();
    const std::string family = j.at("family");
    if (family != "gpu" && family != "edge_cpu") continue;
    SCOPED_TRACE(name);
    for (const char* cat : {"recurrent", "fft"}) {
      ASSERT_TRUE(j.at("efficiency").contains(cat)) << cat;
      EXPECT_TRUE(j.at("sources").contains(std::string("efficiency.") + cat)) << cat;
    }
  }
}

TEST(SequenceMixerCosts, RaspberryPiScanAndFftByHand) {
  // rpi4_a72 (single-thread TFLite): peak 1 core x 1.5 GHz x 8 = 12 GFLOP/s, 5.5 GB/s, 5 us per
  // kernel.
  auto dev = load_device("rpi4_a72");
  Workload w;
  w.input_bytes = 400;
  // Scan: 1e8 MACs = 2e8 flops at 0.05 of peak -> 2e8 / 6e8 = 1/3 s (compute bound), 8 kernels.
  w.nodes.push_back(node("scan", OpCategory::Recurrent, 1e8, 4000, 4e5, 4e5, 32, 8));
  // FFT conv: 1e8 other flops at 0.2 of peak -> 1e8 / 2.4e9 s, 3 kernels.
  NodeWorkload f = node("fft", OpCategory::Fft, 0, 0, 4e5, 4e5, 32, 3);
  f.other_flops = 1e8;
  w.nodes.push_back(f);
  const Cost c = dev->estimate(w);
  ASSERT_EQ(c.nodes.size(), 2u);
  EXPECT_NEAR(c.nodes[0].latency_s, 2e8 / 6e8 + 8 * 5e-6, 1e-12);
  EXPECT_EQ(c.nodes[0].bound, "compute");
  EXPECT_NEAR(c.nodes[1].latency_s, 1e8 / 2.4e9 + 3 * 5e-6, 1e-12);
}

TEST(SequenceMixerCosts, EdgeTpuLeavesScansAndFftsToItsHost) {
  auto tpu = load_device("edgetpu_usb");
  EXPECT_FALSE(tpu->supports(OpCategory::Recurrent));
  EXPECT_FALSE(tpu->supports(OpCategory::Fft));
  Workload w;
  w.input_bytes = 64;
  w.nodes.push_back(node("conv", OpCategory::Conv, 1e5, 1000, 64, 64, 8));
  w.nodes.push_back(node("scan", OpCategory::Recurrent, 1e5, 1000, 64, 64, 8));
  const Cost c = tpu->estimate(w);
  EXPECT_EQ(c.nodes[1].bound, "fallback-cpu");
  EXPECT_EQ(c.extra["fallback_from"], "scan");
}

TEST(SequenceMixerCosts, McuRunsAFloatScanAtItsScalarRate) {
  // stm32f746: fp32 0.1 MAC/cycle at 216 MHz, 0.5 other ops/cycle, no per-op overhead.
  auto mcu = load_device("stm32f746");
  Workload w;
  w.input_bytes = 64;
  NodeWorkload n = node("scan", OpCategory::Recurrent, 1e6, 1000, 64, 64, 32, 8);
  n.other_flops = 2e5;
  w.nodes.push_back(n);
  const Cost c = mcu->estimate(w);
  EXPECT_NEAR(c.nodes[0].latency_s, 1e6 / (0.1 * 216e6) + 2e5 / (0.5 * 216e6), 1e-12);
}
