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
// represented (µs-scale per-op overhead, compute and memory that do not overlap).  All
// coefficients are >= 0 (a_cat > 0), fitted by NNLS on relative errors ((pred - y) / y) with a
// ridge towards a prior: the base device rescaled by one fitted global factor (a_cat = g,
// b = g * base overhead, workload terms 0), so a device 10x off the base is not pulled back.
// The ridge strength is chosen by 5-fold cross-validation on the training rows unless given.
// Rows are split into train / held-out by a seeded Fisher-Yates shuffle; everything is
// deterministic.  If energies are given, one energy scale is fitted as the geometric mean of
// measured/predicted.  The result is written as the device's "calibration" block (see
// device_base.hpp), which the tuned device applies in estimate().
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
  // Ridge strength relative to each feature's mean squared scale; < 0: chosen by 5-fold
  // cross-validation on the training rows from {1e-6 ... 10}.
  double ridge = -1;
  // Fit the per-node, per-FLOP and per-byte terms (false: only category scales + per-kernel).
  bool workload_terms = true;
};

struct FitQuality {
  std::size_t rows = 0;
  double spearman = 0;  // rank correlation of predicted vs measured latency
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
