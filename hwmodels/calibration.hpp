// Calibration of an analytic device model to measured latencies (`hwnas hw calibrate`).
//
// Model (per row i, summed over the nodes that run on the device):
//   latency_i ~ sum_cat a_cat * B_i,cat + b * K_i + g * N_i
//               + sum_cat (f_cat * FLOPs_i,cat + m_cat * Bytes_i,cat)
//               + q * P_i,pruned + u * P_i,quantized + F_i
// B_i,cat is the base device's per-category latency without per-kernel overhead (its roofline
// max(compute, memory) for most families), K_i the kernel count, N_i the node count, FLOPs and
// Bytes the workload's own counts (scaled by the device batch), P_i,pruned / P_i,quantized the
// parameters of pruned / sub-16-bit nodes (engines that compress weights on the fly, such as
// our own, pay per parameter on every forward pass), F_i the time of nodes that fell
// back to another device (kept fixed).  The base term lets a good analytic model stay; the
// per-node term and the *summed* compute and memory terms let a CPU running our own engine be
// represented (µs-scale per-op overhead, compute and memory that do not overlap).
//
// Fit: minimise sum_i (log pred_i - log y_i)^2 (relative error that saturates, so a glitched
// tiny measurement cannot dominate as it does under 1/y^2 weights) over coefficients >= 0
// (a_cat > 0), by Gauss-Newton with a non-negative least-squares step, plus a ridge towards
// the prior: the base device rescaled by one global factor G fitted first (a_cat = G,
// b = G * base overhead, workload terms 0).  So a category the rows cannot identify stays at
// the base's relative speed instead of running to 1e-6 or 8e4, and a device 10x off the base is
// not pulled back.  The ridge strength is chosen by 5-fold cross-validation on the training rows
// unless given.  Rows measured below `min_ms` are dropped (counted).  Rows are split into
// train / held-out by a seeded Fisher-Yates shuffle; everything is deterministic.
//
// Energy (rows with energy_mj): the latency-calibrated device's energy is split into static
// power x latency (DeviceBase::static_power_w(), kept as is) and per-category dynamic energy,
// whose scales e_cat are fitted the same way (log space, >= 0, ridge towards one global
// factor).  The result is written as the device's "calibration" block (see device_base.hpp).
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

enum class CalibrationLoss {
  Log,       // sum (log pred - log y)^2 (the default)
  Relative,  // sum ((pred - y) / y)^2: the old 1/y^2 weighting, kept for comparison
};

struct CalibrationOptions {
  double holdout_fraction = 0.25;
  std::uint64_t seed = 0;
  // Ridge strength relative to each feature's mean squared scale; < 0: chosen by 5-fold
  // cross-validation on the training rows from {1e-6 ... 10}.
  double ridge = -1;
  // Fit the per-node, per-FLOP and per-byte terms (false: only category scales + per-kernel).
  bool workload_terms = true;
  // Rows measured below this (ms) are dropped and counted: under timer resolution and call
  // overhead a measurement says nothing about the architecture.
  double min_ms = 1e-3;
  CalibrationLoss loss = CalibrationLoss::Log;
};

struct FitQuality {
  std::size_t rows = 0;
  double spearman = 0;  // rank correlation of predicted vs measured latency
  double kendall = 0;   // Kendall tau-b of the same
  double within10 = 0;  // share of rows with |pred - y| / y <= 10%
  double mape = 0;      // mean absolute percentage error
  nlohmann::json to_json() const;
};

struct CalibrationResult {
  nlohmann::json tuned;  // the calibrated device description
  FitQuality train_before, train_after, heldout_before, heldout_after;
  std::vector<std::size_t> train_rows, heldout_rows;      // indices into the input
  std::vector<double> predicted_before, predicted_after;  // ms, per input row
  double ridge = 0;                                       // ridge strength used
  std::vector<std::size_t> dropped_rows;  // measured below min_ms (not in train or held-out)
  // Condition number of the (column-normalised, log-linearised) latency design at the fit,
  // without the ridge; large: some terms cannot be told apart by these rows.
  double condition = 0;
  double condition_with_ridge = 0;      // what the solver inverts (finite whenever the ridge is on)
  double min_scale = 0, max_scale = 0;  // range of the fitted category scales
  std::vector<std::string> warnings;    // coefficients outside [0.05, 20] and why
  // Energy (when rows carry energy_mj): quality on the rows with energy, and the dynamic fit.
  bool energy_fitted = false;
  FitQuality energy_train_before, energy_train_after, energy_heldout_before, energy_heldout_after;
  double energy_ridge = 0, energy_condition = 0;
  // Empty if the calibrated model ranks the held-out rows at least as well as the uncalibrated
  // one (Spearman); else a message naming the metric (callers refuse to write it).
  std::string heldout_regression() const;
  nlohmann::json report() const;
};

// Throws std::invalid_argument when the base device is invalid or not calibratable, or when
// there are fewer than 4 usable rows (after dropping those below min_ms).
CalibrationResult calibrate(const nlohmann::json& base, const std::vector<Measurement>& rows,
                            const CalibrationOptions& opt = {});

// Spearman rank correlation with average ranks for ties (0 when undefined).
double spearman_rho(const std::vector<double>& a, const std::vector<double>& b);
// Kendall tau-b (ties in either variable corrected; 0 when undefined).  O(n^2): calibration sets
// are hundreds of rows.
double kendall_tau(const std::vector<double>& a, const std::vector<double>& b);
FitQuality fit_quality(const std::vector<double>& predicted, const std::vector<double>& measured);

}  // namespace hwnas::hw
