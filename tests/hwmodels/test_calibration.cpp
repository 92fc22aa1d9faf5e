#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "helpers.hpp"
#include "hwmodels/calibration.hpp"
#include "hwmodels/device.hpp"

using namespace hwnas::hw;
using hwnas::hw::test::node;
using nlohmann::json;

namespace {

json base_gpu() {
  json d = json::parse(R"({
    "name": "cal_gpu", "family": "gpu", "batch": 8,
    "peak_flops": {"fp32": 2e13, "fp16": 1.5e14}, "vector_flops": 2e13,
    "mem_bw": 1e12, "mem_efficiency": 0.8,
    "efficiency": {"default": 0.5, "dense": 0.5, "conv": 0.4},
    "launch_s": 5e-6, "memory_bytes": 4e10,
    "power": {"idle_w": 50, "tdp_w": 300}})");
  return d;
}

// Random conv/dense/elementwise stacks, from tiny (launch bound) to large (compute bound).
std::vector<Workload> random_workloads(int n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> lw(1.0, 4.0);
  std::uniform_int_distribution<int> depth(3, 30);
  std::vector<Workload> out;
  for (int i = 0; i < n; ++i) {
    Workload w;
    int d = depth(rng);
    for (int k = 0; k < d; ++k) {
      double c = std::pow(2.0, lw(rng)) * 8, hw = 32 * 32;
      switch (k % 3) {
        case 0: w.nodes.push_back(node("c", OpCategory::Conv, 9 * c * c * hw, 9 * c * c * 2, c * hw * 2, c * hw * 2, 16)); break;
        case 1: w.nodes.push_back(node("e", OpCategory::Elementwise, 0, 0, c * hw * 2, c * hw * 2, 16)); w.nodes.back().other_flops = c * hw; break;
        default: w.nodes.push_back(node("d", OpCategory::Dense, c * c * 64, c * c * 2, c * 128, c * 128, 16));
      }
    }
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace

TEST(Calibration, SpearmanAndQuality) {
  EXPECT_DOUBLE_EQ(spearman_rho({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(spearman_rho({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
  EXPECT_NEAR(spearman_rho({1, 2, 2, 3}, {1, 2, 3, 4}), 0.9486832980505138, 1e-12);
  auto q = fit_quality({1.05, 2.5, 3}, {1, 2, 3});
  EXPECT_NEAR(q.within10, 2.0 / 3, 1e-12);
  EXPECT_NEAR(q.mape, (0.05 + 0.25 + 0) / 3, 1e-12);
}

TEST(Calibration, LowersHeldOutErrorOnSyntheticMeasurements) {
  // "True" device: lower efficiencies and a slower launch than the base model assumes.
  json truth = base_gpu();
  truth["efficiency"] = {{"default", 0.3}, {"dense", 0.2}, {"conv", 0.15}};
  truth["launch_s"] = 12e-6;
  auto true_dev = make_device(truth);
  auto ws = random_workloads(80, 3);
  std::mt19937_64 rng(11);
  std::normal_distribution<double> noise(0, 0.02);  // 2% measurement noise
  std::vector<Measurement> rows;
  for (std::size_t i = 0; i < ws.size(); ++i) {
    Measurement m;
    m.architecture = "w" + std::to_string(i);
    m.workload = ws[i];
    Cost c = true_dev->estimate(ws[i]);
    m.latency_ms = c.latency_ms * (1 + noise(rng));
    m.energy_mj = c.energy_mj * 0.7;
    rows.push_back(std::move(m));
  }
  CalibrationResult r = calibrate(base_gpu(), rows, {0.3, 42, 1e-3});
  std::cout << "calibration report: " << r.report().dump() << "\n";
  EXPECT_EQ(r.heldout_rows.size(), 24u);
  EXPECT_LT(r.heldout_after.mape, r.heldout_before.mape);
  EXPECT_LT(r.heldout_after.mape, 0.10);
  EXPECT_GE(r.heldout_after.within10, 0.8);
  EXPECT_GE(r.heldout_after.within10, r.heldout_before.within10);
  EXPECT_GT(r.heldout_after.spearman, 0.9);
  // The tuned description is a valid device, round-trips, and keeps the base's fields.
  auto tuned = make_device(r.tuned);
  EXPECT_EQ(tuned->name(), "cal_gpu_calibrated");
  EXPECT_EQ(make_device(tuned->to_json())->to_json(), r.tuned);
  EXPECT_TRUE(r.tuned["calibration"].contains("per_kernel_s"));
  EXPECT_GT(r.tuned["calibration"]["per_kernel_s"].get<double>(), 5e-6);  // found the slower launch
  EXPECT_TRUE(r.tuned["calibration"].contains("energy_scale"));
  // Same seed -> same split and result.
  CalibrationResult r2 = calibrate(base_gpu(), rows, {0.3, 42, 1e-3});
  EXPECT_EQ(r2.tuned, r.tuned);
  EXPECT_EQ(r2.heldout_rows, r.heldout_rows);
}

TEST(Calibration, RefusesWhatItCannotFit) {
  std::vector<Measurement> rows(2);
  EXPECT_THROW(calibrate(base_gpu(), rows), std::invalid_argument);
  rows.resize(10);
  for (auto& r : rows) r.latency_ms = 1;
  try {
    calibrate(load_device("loihi")->to_json(), rows);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be calibrated"), std::string::npos);
  }
}

TEST(Calibration, ReadsCsvAndReportsBadRows) {
  auto path = std::filesystem::temp_directory_path() / "hwnas_meas.csv";
  std::ofstream(path) << "architecture,latency_ms,energy_mj\n"
                      << "\"|nor_conv_3x3~0|+|skip_connect~0|none~1|\",1.5,\n"
                      << "genomes/a.json, 2.25 ,3\n";
  auto rows = read_measurements_csv(path.string());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].architecture, "|nor_conv_3x3~0|+|skip_connect~0|none~1|");
  EXPECT_DOUBLE_EQ(rows[0].latency_ms, 1.5);
  EXPECT_FALSE(rows[0].energy_mj);
  EXPECT_DOUBLE_EQ(*rows[1].energy_mj, 3);
  std::ofstream(path) << "architecture,latency_ms\nx,fast\n";
  try {
    read_measurements_csv(path.string());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(":2: column 'latency_ms' must be a positive number"),
              std::string::npos)
        << e.what();
  }
  std::ofstream(path) << "arch,latency\nx,1\n";
  EXPECT_THROW(read_measurements_csv(path.string()), std::invalid_argument);
  std::filesystem::remove(path);
}
