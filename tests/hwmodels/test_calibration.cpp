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
        case 0:
          w.nodes.push_back(node("c", OpCategory::Conv, 9 * c * c * hw, 9 * c * c * 2, c * hw * 2,
                                 c * hw * 2, 16));
          break;
        case 1:
          w.nodes.push_back(node("e", OpCategory::Elementwise, 0, 0, c * hw * 2, c * hw * 2, 16));
          w.nodes.back().other_flops = c * hw;
          break;
        default:
          w.nodes.push_back(
              node("d", OpCategory::Dense, c * c * 64, c * c * 2, c * 128, c * 128, 16));
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
  // Energy: the dynamic part is fitted per category; static power x latency is kept as given.
  EXPECT_TRUE(r.energy_fitted);
  EXPECT_TRUE(r.tuned["calibration"].contains("dynamic_energy_scale"));
  EXPECT_FALSE(r.tuned["calibration"].contains("energy_scale"));
  EXPECT_LT(r.energy_heldout_after.mape, r.energy_heldout_before.mape);
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
  // An unquoted comma shifts the columns: more fields than the header is refused, not cut.
  std::ofstream(path) << "architecture,latency_ms\n|a|,b|,1.5\n";
  try {
    read_measurements_csv(path.string());
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(":2: expected 2 columns, got 3 (quote a field that holds "
                                         "a comma)"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::remove(path);
}

namespace {

// CNN-like stacks as our own engine runs them on a host CPU: many small nodes (per-op overhead
// matters), convs of widely varying size, depthwise convs, norms, activations, pooling, a head.
std::vector<Workload> cnn_like_workloads(int n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> blocks(2, 12), kind(0, 3), chan_exp(3, 7), res_exp(2, 5);
  std::vector<Workload> out;
  for (int i = 0; i < n; ++i) {
    Workload w;
    const double hw = std::pow(2.0, 2 * res_exp(rng));  // 16 .. 1024 pixels
    const int nb = blocks(rng);
    for (int b = 0; b < nb; ++b) {
      const double c = std::pow(2.0, chan_exp(rng)), act = c * hw * 4;
      switch (kind(rng)) {
        case 0:  // conv + bn + relu
          w.nodes.push_back(
              node("conv", OpCategory::Conv, 9 * c * c * hw, 9 * c * c * 4, act, act));
          w.nodes.push_back(node("bn", OpCategory::Norm, 0, 2 * c * 4, act, act));
          w.nodes.push_back(node("relu", OpCategory::Elementwise, 0, 0, act, act));
          break;
        case 1:  // depthwise + pointwise
          w.nodes.push_back(node("dw", OpCategory::DepthwiseConv, 9 * c * hw, 9 * c * 4, act, act));
          w.nodes.push_back(node("pw", OpCategory::Conv, c * c * hw, c * c * 4, act, act));
          break;
        case 2:  // residual add
          w.nodes.push_back(node("add", OpCategory::Elementwise, 0, 0, 2 * act, act));
          break;
        default:
          w.nodes.push_back(node("pool", OpCategory::Pool, 0, 0, act, act / 4));
      }
      for (auto& nd : w.nodes)
        if (nd.other_flops == 0 && nd.macs == 0) nd.other_flops = nd.output_bytes / 4;
    }
    w.nodes.push_back(node("fc", OpCategory::Dense, 256 * 10, 256 * 10 * 4, 256 * 4, 40));
    out.push_back(std::move(w));
  }
  return out;
}

// The "true" host: per node 6 us, conv 12 GFLOP/s, depthwise 2 GFLOP/s, dense 4 GFLOP/s,
// 3 GB/s for everything's bytes (compute and memory add up, they do not overlap).
double true_host_ms(const Workload& w) {
  double s = 0;
  for (const auto& n : w.nodes) {
    double rate = 12e9;
    if (n.category == OpCategory::DepthwiseConv) rate = 2e9;
    if (n.category == OpCategory::Dense) rate = 4e9;
    s += 6e-6 + n.flops() / rate + n.bytes() / 3e9;
  }
  return s * 1e3;
}

}  // namespace

TEST(Calibration, FitsHostLikeMeasurementsWithPerNodeOverheadAndNoise) {
  auto ws = cnn_like_workloads(120, 5);
  std::mt19937_64 rng(17);
  std::normal_distribution<double> noise(0, 0.06);  // 6% multiplicative measurement noise
  std::vector<Measurement> rows;
  for (std::size_t i = 0; i < ws.size(); ++i) {
    Measurement m;
    m.architecture = "h" + std::to_string(i);
    m.workload = ws[i];
    m.latency_ms = true_host_ms(ws[i]) * std::exp(noise(rng));
    rows.push_back(std::move(m));
  }
  const json base = load_device("rpi4_a72")->to_json();
  CalibrationResult r = calibrate(base, rows, {0.3, 7});
  std::cout << "host-like calibration report: " << r.report().dump() << "\n";
  EXPECT_EQ(r.heldout_rows.size(), 36u);
  EXPECT_LT(r.heldout_after.mape, 0.15);
  EXPECT_LT(r.heldout_after.mape, 0.7 * r.heldout_before.mape);
  EXPECT_GE(r.heldout_after.within10, 0.5);
  EXPECT_GT(r.heldout_after.spearman, 0.95);
  // The fitted per-node overhead is µs-scale, like the truth (6 us), not launch-scale.
  ASSERT_TRUE(r.tuned["calibration"].contains("per_node_s"));
  const double per_op = r.tuned["calibration"]["per_node_s"].get<double>() +
                        r.tuned["calibration"].value("per_kernel_s", 0.0);
  EXPECT_GT(per_op, 3e-6);
  EXPECT_LT(per_op, 12e-6);
  // The tuned device predicts with the fitted model (estimate and estimate_total agree with
  // the reported predictions), and the old-form fit (scales only) is clearly worse here.
  auto tuned = make_device(r.tuned);
  for (auto i : r.heldout_rows) {
    EXPECT_NEAR(tuned->estimate(rows[i].workload).latency_ms, r.predicted_after[i],
                1e-9 * r.predicted_after[i]);
    EXPECT_NEAR(tuned->estimate_total(rows[i].workload).latency_ms, r.predicted_after[i],
                1e-9 * r.predicted_after[i]);
  }
  CalibrationOptions old_form{0.3, 7};
  old_form.workload_terms = false;
  CalibrationResult r_old = calibrate(base, rows, old_form);
  EXPECT_LT(r.heldout_after.mape, r_old.heldout_after.mape);
  // Deterministic.
  EXPECT_EQ(calibrate(base, rows, {0.3, 7}).tuned, r.tuned);
}

TEST(Calibration, DeviceAppliesWorkloadTermsAndLoadsOldBlocks) {
  json d = load_device("rpi4_a72")->to_json();
  Workload w;
  w.nodes.push_back(node("c", OpCategory::Conv, 1e6, 4e3, 8e3, 8e3));
  w.nodes.push_back(node("e", OpCategory::Elementwise, 0, 0, 8e3, 8e3));
  d["calibration"] = {{"category_scale", {{"conv", 2.0}}}, {"per_kernel_s", 3e-6}};
  const double old_ms = make_device(d)->estimate(w).latency_ms;  // old block: unchanged meaning
  d["calibration"]["per_node_s"] = 1e-6;
  d["calibration"]["s_per_flop"] = {{"conv", 1e-10}};
  d["calibration"]["s_per_byte"] = {{"elementwise", 1e-9}};
  auto dev = make_device(d);
  const double want = old_ms + (2e-6 + 2e6 * 1e-10 + 16e3 * 1e-9) * 1e3;
  EXPECT_NEAR(dev->estimate(w).latency_ms, want, 1e-12);
  EXPECT_NEAR(dev->estimate_total(w).latency_ms, want, 1e-12);
  d["calibration"]["s_per_byte"] = {{"bogus", 1e-9}};
  EXPECT_THROW(make_device(d), std::invalid_argument);
  d["calibration"]["s_per_byte"] = {{"conv", -1}};
  EXPECT_THROW(make_device(d), std::invalid_argument);
}

TEST(Calibration, KendallTauByHand) {
  // 6 pairs; (2,3) is the one discordant pair: (5 - 1) / 6.
  EXPECT_NEAR(kendall_tau({1, 2, 3, 4}, {1, 3, 2, 4}), 4.0 / 6, 1e-12);
  EXPECT_DOUBLE_EQ(kendall_tau({1, 2, 3}, {3, 2, 1}), -1.0);
  // tau-b with a tie in b: concordant 2, discordant 0, n0 = 3, ties in b 1 ->
  // 2 / sqrt(3 * 2).
  EXPECT_NEAR(kendall_tau({1, 2, 3}, {1, 2, 2}), 2 / std::sqrt(6.0), 1e-12);
  EXPECT_DOUBLE_EQ(kendall_tau({1, 1, 1}, {1, 2, 3}), 0.0);  // undefined -> 0
}

TEST(Calibration, CategoriesTheRowsCannotTellApartStayAtTheBaseRatio) {
  // Every row has conv and dense in the same proportion: their scales are not identified (the
  // design is singular), so the ridge must keep them together instead of sending one to 1e-6
  // and the other to 1e4.
  auto truth = base_gpu();
  truth["efficiency"] = {{"default", 0.25}, {"dense", 0.25}, {"conv", 0.2}};
  auto true_dev = make_device(truth);
  std::vector<Measurement> rows;
  for (int i = 0; i < 40; ++i) {
    const double c = 16 + 4 * i;
    Measurement m;
    m.architecture = std::to_string(i);
    // Compute bound (few bytes): each node's base latency is proportional to c^2.
    m.workload.nodes.push_back(node("c", OpCategory::Conv, 9 * c * c * 1024, 64, 64, 64, 16));
    m.workload.nodes.push_back(node("d", OpCategory::Dense, 9 * c * c * 1024, 64, 64, 64, 16));
    m.latency_ms = true_dev->estimate(m.workload).latency_ms;
    rows.push_back(std::move(m));
  }
  CalibrationOptions opt;
  opt.workload_terms = false;
  const CalibrationResult r = calibrate(base_gpu(), rows, opt);
  EXPECT_FALSE(std::isfinite(r.condition)) << "conv and dense are collinear: singular design";
  EXPECT_TRUE(std::isfinite(r.condition_with_ridge));
  EXPECT_LT(r.max_scale / r.min_scale, 3.0) << r.report().dump();
  EXPECT_LT(r.heldout_after.mape, 0.05) << r.report().dump();  // the sum is still identified
}

TEST(Calibration, EnergyKeepsStaticPowerAndFitsTheDynamicPart) {
  // Truth: the base's static power (idle 50 W) and 0.4x its dynamic energy per inference.
  auto ws = random_workloads(60, 5);
  auto base_dev = make_device(base_gpu());
  std::vector<Measurement> rows;
  for (std::size_t i = 0; i < ws.size(); ++i) {
    Measurement m;
    m.architecture = std::to_string(i);
    m.workload = ws[i];
    const Cost c = base_dev->estimate(ws[i]);
    const double static_mj = 50 * c.latency_ms;
    m.latency_ms = c.latency_ms;
    m.energy_mj = static_mj + 0.4 * (c.energy_mj - static_mj);
    rows.push_back(std::move(m));
  }
  const CalibrationResult r = calibrate(base_gpu(), rows, {0.25, 9, 1e-3});
  ASSERT_TRUE(r.energy_fitted);
  EXPECT_LT(r.energy_heldout_after.mape, 0.05) << r.report().dump();
  EXPECT_GT(r.energy_heldout_before.mape, 0.2) << r.report().dump();
  auto tuned = make_device(r.tuned);
  for (const auto& w : ws) {
    const Cost c = tuned->estimate(w);
    EXPECT_GE(c.energy_mj, 50 * c.latency_ms * (1 - 1e-9));  // static power never scaled away
  }
}

TEST(Calibration, HeldOutRegressionNamesTheMetricAndTheFigures) {
  CalibrationResult r;
  r.heldout_before.rows = r.heldout_after.rows = 12;
  r.heldout_before.spearman = 0.9;
  r.heldout_after.spearman = 0.95;
  EXPECT_EQ(r.heldout_regression(), "");
  r.heldout_after.spearman = 0.8;
  EXPECT_EQ(r.heldout_regression(),
            "held-out Spearman rho got worse: 0.9000 uncalibrated -> 0.8000 calibrated on 12 rows");
}
