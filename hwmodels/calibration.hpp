// Calibration of an analytic device model to measured latencies (`hwnas hw calibrate`).
//
// Model: measured latency_i ~ sum_cat a_cat * B_i,cat + b * K_i + F_i, where B_i,cat is the
// base device's per-category latency without per-kernel overhead, K_i the kernel count and F_i
// the time of nodes that fell back to another device (kept fixed).  a_cat >= 0 and b >= 0 are
// fitted by non-negative least squares on relative errors ((pred - y) / y), with a small ridge
// pulling each a_cat towards 1 and b towards the base overhead, so categories with little data
// stay near the prior.  Rows are split into train / held-out by a seeded Fisher-Yates shuffle.
// If energies are given, one energy scale is fitted as the geometric mean of measured/predicted.
// The result is written as the device's "calibration" block (see device_base.hpp).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hwmodels/workload.hpp"

namespace hwnas::hw {

struct Measurement {
  std::string architecture;  // as given in the CSV, for reports
  Workload workload;
  double latency_ms = 0;
  std::optional<double> energy_mj;
};

// One CSV row before the architecture is resolved to a workload.
struct MeasurementRow {
  std::string architecture;
  double latency_ms = 0;
  std::optional<double> energy_mj;
  int line = 0;
};
// Header "architecture,latency_ms[,energy_mj]" (any column order); fields may be "quoted".
// Throws std::invalid_argument naming the file, line and column.
std::vector<MeasurementRow> read_measurements_csv(const std::string& path);

struct CalibrationOptions {
  double holdout_fraction = 0.3;
  std::uint64_t seed = 0;
  double ridge = 1e-3;  // relative to the mean squared feature scale
};

struct FitQuality {
  std::size_t rows = 0;
  double spearman = 0;   // rank correlation of predicted vs measured latency
  double within10 = 0;   // share of rows with |pred - y| / y <= 10%
  double mape = 0;       // mean absolute percentage error
  nlohmann::json to_json() const;
};

struct CalibrationResult {
  nlohmann::json tuned;  // the calibrated device description
  FitQuality train_before, train_after, heldout_before, heldout_after;
  std::vector<std::size_t> train_rows, heldout_rows;  // indices into the input
  nlohmann::json report() const;
};

// Throws std::invalid_argument when the base device is invalid or not calibratable, or when
// there are fewer than 4 usable rows.
CalibrationResult calibrate(const nlohmann::json& base, const std::vector<Measurement>& rows,
                            const CalibrationOptions& opt = {});

// Spearman rank correlation with average ranks for ties (0 when undefined).
double spearman_rho(const std::vector<double>& a, const std::vector<double>& b);
FitQuality fit_quality(const std::vector<double>& predicted, const std::vector<double>& measured);

}  // namespace hwnas::hw
