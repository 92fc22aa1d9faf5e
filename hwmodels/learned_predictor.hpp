// A learned kernel-level latency predictor (nn-Meter style): every node of a workload is a
// kernel whose latency a regressor predicts from the node's features; a network's latency is
// the sum of its node predictions, corrected by a per-network linear term fitted on whole
// networks (scale, constant, per node: time the engine spends outside the workload's nodes,
// such as dead and zero-copy nodes and the forward's own bookkeeping between nodes).
//
// One regressor per kernel type (the node's kernel_type_or_kind(): its block kind, e.g. "conv",
// "nor_conv_3x3", or the kernel a kind runs by its params, e.g. "max_pool"); a kind with
// too few training nodes falls back to its op category's regressor and then to a global one.
// Each regressor is either gradient-boosted regression trees (GBDT, written here: depth-limited,
// histogram splits, shrinkage, fitted in log latency) or a small MLP (trained with nn/ by
// search/learned_fit.cpp; inference here, so hwmodels does not need nn/).  Both are measured on
// held-out architectures when fitting and the better is kept, per kernel type; the model file
// says which and why ("chosen", "heldout_log_mae").
//
// Model file (written by `hwnas hw fit`, read by the "learned" device family):
//   {"format": "hwnas-learned-latency", "version": 1, "checksum": "<fnv1a64 of model.dump()>",
//    "model": {...}}
// Loading a truncated, corrupted, hand-edited or other-version file fails with one message
// naming the file and the fix.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hwmodels/workload.hpp"

namespace hwnas::hw::learned {

inline constexpr const char* kFormat = "hwnas-learned-latency";
inline constexpr int kVersion = 2;  // 2: window and stride features, the per-work target

// Names of the per-node features, in the order node_features() returns them.
const std::vector<std::string>& feature_names();
// The features of one node at `batch` samples.  Counts enter as log1p (latency spans decades);
// besides the window and stride of sliding-window ops, ratios carry the shape: MACs per output
// element (k x k x C_in / groups for a conv) and input over output bytes (stride^2 x C_in / C_out
// for a conv).  `eager` picks the kernel count of the runtime's fusion rule.
std::vector<double> node_features(const NodeWorkload& n, int batch, bool eager);

// log(1 + batch x (FLOPs + activation elements read and written)): the node's work.  Regressors
// predict log(ms) - log_work, the log time per unit of work: a tree's piecewise-constant leaves
// then scale with a node's size instead of capping it at the largest training node's time.
double log_work(const NodeWorkload& n, int batch);

// A regression tree in arrays; a leaf has feature < 0 and its prediction in value.
struct Tree {
  std::vector<int> feature, left, right;
  std::vector<double> threshold, value;
  double predict(const std::vector<double>& x) const;
};

struct Gbdt {
  double base = 0;  // initial prediction (mean target)
  std::vector<Tree> trees;
  double predict(const std::vector<double>& x) const;
  nlohmann::json to_json() const;
  static Gbdt from_json(const nlohmann::json& j);
};

struct GbdtOptions {
  int trees = 200;
  int depth = 5;
  double shrinkage = 0.1;
  int min_leaf = 4;
  int bins = 64;  // split candidates per feature (quantiles of the training values)
};
// Least-squares gradient boosting of y on the rows of x (all the same length).  Deterministic.
// Throws std::invalid_argument when x is empty or ragged.
Gbdt fit_gbdt(const std::vector<std::vector<double>>& x, const std::vector<double>& y,
              const GbdtOptions& opt = {});

// Inputs standardised by (x - mean) / scale, ReLU hidden layers, one linear output, then
// out * y_scale + y_mean.  Layer l: w [out x in] row-major, b [out].
struct Mlp {
  std::vector<double> mean, scale;
  struct Layer {
    int in = 0, out = 0;
    std::vector<double> w, b;
  };
  std::vector<Layer> layers;
  double y_mean = 0, y_scale = 1;
  double predict(const std::vector<double>& x) const;
  nlohmann::json to_json() const;
  static Mlp from_json(const nlohmann::json& j);
};

// The regressor of one kernel type: predicts log(ms) of a node.
struct KernelModel {
  std::string chosen = "gbdt";  // "gbdt" or "mlp"
  Gbdt gbdt;
  Mlp mlp;
  int train_nodes = 0;
  // Held-out mean |log pred - log measured| of each candidate when it was chosen (-1: not run).
  double heldout_gbdt = -1, heldout_mlp = -1;
  double predict_log_ms(const std::vector<double>& x) const {
    return chosen == "mlp" ? mlp.predict(x) : gbdt.predict(x);
  }
  nlohmann::json to_json() const;
  static KernelModel from_json(const nlohmann::json& j);
};

struct LearnedModel {
  int batch = 1;                 // the batch the training measurements were taken at
  std::string fusion = "eager";  // the fusion rule the features' kernel counts followed
  // What the regressors predict: log(ms) - log_work(node) ("log_ms_per_work", what `hw fit`
  // writes) or log(ms) ("log_ms").
  bool per_work = true;
  std::map<std::string, KernelModel> by_kind, by_category;
  KernelModel global;
  // Network latency = net_scale x sum of node predictions + net_offset_ms
  //                   + net_per_node_ms x nodes (the engine's own work between nodes).
  double net_scale = 1, net_offset_ms = 0, net_per_node_ms = 0;
  nlohmann::json report = nlohmann::json::object();  // fit quality, seed, sizes (not read)

  // The regressor a node uses and which level it came from ("kind", "category", "global").
  const KernelModel& model_for(const NodeWorkload& n, std::string* level = nullptr) const;
  double node_ms(const NodeWorkload& n, int batch, bool eager) const;
  double network_ms(const Workload& w, int batch, bool eager) const;

  nlohmann::json to_json() const;
  static LearnedModel from_json(const nlohmann::json& j);  // throws naming the field
};

// The model file's text (format above).
std::string model_file_text(const LearnedModel& m);
// Reads and checks a model file; every failure throws std::invalid_argument
// "learned model 'PATH': <what>: <fix>".
LearnedModel load_model_file(const std::string& path);

}  // namespace hwnas::hw::learned
