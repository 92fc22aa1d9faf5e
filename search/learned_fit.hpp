// Fitting the learned kernel-level latency predictor (hwmodels/learned_predictor.hpp) to
// per-node host measurements: `hwnas hw fit` and bench/host_fidelity.cpp.
//
// Per kernel type (block kind with at least min_nodes training nodes; else its op category;
// else the global regressor) both a GBDT and an MLP (trained here with nn/) are fitted on the
// training architectures less a seeded selection share, scored on that share (mean |log error|
// of node latency), and the better is refitted on every training node of the type.  Then the
// per-network affine term (scale, offset) is fitted on the training networks' totals in
// relative error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hwmodels/calibration.hpp"
#include "hwmodels/learned_predictor.hpp"
#include "hwmodels/workload.hpp"

namespace hwnas::search {

// One measured architecture: its workload, the whole forward's time and each workload node's
// time (node_ms[i] belongs to workload.nodes[i]).
struct MeasuredNetwork {
  std::string architecture;  // genome path or string, for reports
  hw::Workload workload;
  double network_ms = 0;
  std::vector<double> node_ms;
};

struct LearnedFitOptions {
  std::uint64_t seed = 0;
  int batch = 1;                 // the batch the measurements were taken at
  std::string fusion = "eager";  // our engine runs every block as its own kernels
  int min_nodes = 12;            // training nodes a kind or category needs for its own regressor
  bool per_work = true;          // regress log time per unit of work (LearnedModel::per_work)
  double selection_share = 0.2;  // training architectures held back to choose GBDT or MLP
  // Depth 3: kernel types have tens to a few hundred training nodes; on the host fidelity bench's
  // measurements depth 3 beat 2, 4, 5 and 7 (mean share within +-10 % over 8 splits).
  hw::learned::GbdtOptions gbdt{.trees = 200, .depth = 3};
  int mlp_hidden = 32;
  int mlp_steps = 500;
  int mlp_batch = 256;
  float mlp_lr = 3e-3f;
};

// Fits on every given network.  Throws std::invalid_argument with fewer than 4 networks or a
// network whose node_ms does not match its workload.
hw::learned::LearnedModel fit_learned_model(const std::vector<MeasuredNetwork>& train,
                                            const LearnedFitOptions& opt);

// A small MLP (2 ReLU hidden layers) on log targets, trained with nn/ (Adam, minibatch MSE on
// standardised inputs and targets).  Deterministic for a seed.
hw::learned::Mlp train_mlp(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
                           const LearnedFitOptions& opt);

// Held-out evaluation of `fit_learned_model` for `hwnas hw fit`: a seeded share of the
// architectures is held out; the model is fitted on the rest and scored on them.
struct LearnedFitReport {
  hw::learned::LearnedModel model;
  std::vector<std::size_t> train_rows, heldout_rows;
  hw::FitQuality train_quality, heldout_quality;
  std::vector<double> predicted_ms;  // per network
};
LearnedFitReport fit_learned_with_holdout(const std::vector<MeasuredNetwork>& nets, double holdout,
                                          const LearnedFitOptions& opt);

// A seeded shuffle of 0..n-1 (Fisher-Yates with std::mt19937_64), for train / held-out splits.
std::vector<std::size_t> seeded_permutation(std::size_t n, std::uint64_t seed);

}  // namespace hwnas::search
