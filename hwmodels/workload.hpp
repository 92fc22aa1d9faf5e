// The workload IR: what an architecture asks of hardware, independent of any device.
//
// Built from a genome (static counts per node: MACs, bytes, parameters, precision) plus measured
// activity (spike counts, active experts, solver function evaluations) and stored with each
// evaluation, so a finished run can be re-costed on a new device without retraining.
// Counts are per *sample* (batch 1); devices scale by their own batch size.
#pragma once

#include <array>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace hwnas::hw {

// Op categories that device models assign efficiencies and support to.  Keep the name table
// in workload.cpp in sync (a static_assert checks the count).
enum class OpCategory {
  Dense,          // matmul / linear
  Conv,           // dense conv2d
  DepthwiseConv,  // grouped conv with groups == channels
  Pool,
  Norm,         // batch / layer norm
  Elementwise,  // add, mul, activations, residual adds
  Attention,    // softmax(QK^T)V part (projections are Dense)
  Embedding,    // table lookups
  Recurrent,    // time loops and scans (SSM, liquid, RNN)
  Fft,          // FFT long convolutions
  Spiking,      // integrate-and-fire neuron updates
  Routing,      // MoE gating / dispatch / combine
  Memory,       // retrieval, neural-memory reads and writes
  Other,
  kCount
};
const char* op_category_name(OpCategory c);
OpCategory op_category_from_name(const std::string& name);  // throws std::invalid_argument

// Measured activity of one node, per sample (averaged over the evaluation's validation pass):
// named scalars and named per-index vectors, open so a new block kind can report something new
// without an IR change.  Names used by the built-in producers and consumers:
//   activation_density  share of the node's outputs that are non-zero (every node)
//   input_density       share of the node's inputs that are non-zero (every node)
//   spikes, synaptic_ops  spikes emitted and spike deliveries (spiking nodes)
//   active_experts      mean experts active per token; function_evals  ODE solver evaluations
//   spikes_per_step, tokens_per_expert, retrieved_neighbours  (per-index vectors)
namespace activity_key {  // the same strings as nn/activity.hpp (hwmodels does not see nn/)
inline constexpr const char* kActivationDensity = "activation_density";
inline constexpr const char* kInputDensity = "input_density";
inline constexpr const char* kSpikes = "spikes";
inline constexpr const char* kSynapticOps = "synaptic_ops";
inline constexpr const char* kActiveExperts = "active_experts";
inline constexpr const char* kFunctionEvals = "function_evals";
inline constexpr const char* kSpikesPerStep = "spikes_per_step";
inline constexpr const char* kDatastoreBytesRead = "datastore_bytes_read";
}  // namespace activity_key

struct NodeActivity {
  double samples = 0;  // validation samples the averages cover (0: unknown, e.g. old files)
  std::map<std::string, double> scalars;
  std::map<std::string, std::vector<double>> series;

  bool measured() const { return !scalars.empty() || !series.empty(); }
  // Pointer to the named scalar, or null when it was not measured.
  const double* find(const std::string& name) const {
    auto it = scalars.find(name);
    return it == scalars.end() ? nullptr : &it->second;
  }
  double scalar_or(const std::string& name, double dflt) const {
    const double* v = find(name);
    return v ? *v : dflt;
  }
  const std::vector<double>* find_series(const std::string& name) const {
    auto it = series.find(name);
    return it == series.end() ? nullptr : &it->second;
  }
  bool operator==(const NodeActivity&) const = default;
};

struct NodeWorkload {
  std::string name;        // node label, e.g. "n3:conv"
  std::string block_kind;  // catalogue kind, e.g. "conv"
  OpCategory category = OpCategory::Other;

  double macs = 0;          // multiply-accumulates (1 MAC = 2 FLOPs)
  double other_flops = 0;   // non-MAC arithmetic (activations, softmax, norms, adds)
  double params = 0;        // trainable parameters
  double weight_bytes = 0;  // at the node's precision
  double input_bytes = 0;   // activations read
  double output_bytes = 0;  // activations written
  int bits = 32;            // numeric precision of weights and activations
  double sparsity = 0;      // fraction of weights pruned by magnitude (unstructured; 0 = dense)
  // Structured channel pruning ("channel_prune" on conv, dense, moe): the output channels (or
  // units, or expert hidden units) the node keeps and the width it was declared with; 0 for
  // both when the node has no prunable width.  macs, params and bytes are already counted at
  // the kept width (the pruned channels do not exist in the built model).  Stored as
  // "channels" and "channels_full" when set.
  double channels = 0;
  double channels_full = 0;
  // Kernels launched, by the runtime's fusion rule (a device's "fusion" field):
  //   kernels        fused runtimes (TensorRT, TFLite, edgetpu_compiler, TinyEngine): batch norm
  //                  folded into the conv before it, an activation fused into its producer;
  //   eager_kernels  eager frameworks (PyTorch eager): every conv, norm, activation and add is
  //                  its own kernel (-1: the same as kernels, the block has nothing to unfuse).
  int kernels = 1;
  int eager_kernels = -1;
  int seq_len = 0;  // tokens, for sequence ops
  // Sliding-window ops (conv, dwconv, pool): the window's side (k of a k x k kernel) and the
  // stride; 0 for other ops.  Kernel-level predictors need them (nn-Meter's conv features are
  // input size, channels, kernel size and stride); MACs alone mix k^2 with input channels.
  int window = 0;
  int stride = 0;
  // The kernel the runtime launches when one block kind runs different kernels by its params
  // ("max_pool" / "avg_pool" for pool: same counts, different kernels); empty: the block kind.
  std::string kernel_type;
  const std::string& kernel_type_or_kind() const {
    return kernel_type.empty() ? block_kind : kernel_type;
  }

  // Neuromorphic mapping (neurons this node emulates and their connectivity).
  double neurons = 0;
  double fan_in = 0;     // synapses into each neuron
  double fan_out = 0;    // synapses out of each neuron
  double synapses = 0;   // total weights as synapses
  bool spiking = false;  // node is a spiking neuron layer
  int timesteps = 1;     // simulation steps per sample for spiking/recurrent nodes

  double total_experts = 0;  // experts a routing node chooses from (static)
  // Routing nodes (moe): the experts each token is counted to run (k; 0: not a routing node)
  // and the part of macs and other_flops those experts do (the rest is the router).  When the
  // evaluation measured active_experts (k less the assignments dropped at capacity), devices
  // charge that part at measured / nominal (charge_measured_activity below); weight bytes keep
  // every expert.  Stored as "nominal_active_experts", "routed_macs", "routed_other_flops".
  double nominal_active_experts = 0;
  double routed_macs = 0;
  double routed_other_flops = 0;

  // Solver nodes (neural_ode): the function evaluations per sample that macs, other_flops and
  // kernels were counted at (0: not a solver node).  When the evaluation measured the real
  // count (activity function_evals), devices charge measured / nominal times that work
  // (charge_measured_function_evals below).  Stored as "nominal_function_evals".
  double nominal_function_evals = 0;

  // Retrieval nodes (retro): the datastore the node searches must be held (datastore_bytes:
  // keys, neighbour rows and the frozen embedding) or read over the device's host link; per
  // sample it makes datastore_lookups queries reading datastore_bytes_read (every key once per
  // exact search, plus the retrieved neighbours' rows).  When the evaluation measured
  // datastore_bytes_read, devices charge that (charge_measured_activity).  Devices charge the
  // datastore in DeviceBase (device_base.hpp), whatever the family.
  double datastore_bytes = 0;
  double datastore_lookups = 0;
  double datastore_bytes_read = 0;

  // What this node did in the evaluation's validation pass (empty: not measured).
  NodeActivity activity;

  double flops() const { return 2.0 * macs + other_flops; }
  int kernels_eager() const { return eager_kernels < 0 ? kernels : eager_kernels; }
  int kernels_for(bool eager) const { return eager ? kernels_eager() : kernels; }
  double bytes() const { return weight_bytes + input_bytes + output_bytes; }
};

struct Workload {
  std::vector<NodeWorkload> nodes;  // in execution (topological) order
  double input_bytes = 0;           // one sample's input
  // Measurements of the architecture on real hardware, by key (e.g. "host_latency_ms").
  std::map<std::string, double> measured;
  // The architecture itself (canonical genome JSON) when the caller knows it, for devices that
  // build the network (external devices that measure it).  Not part of to_json(): the store
  // keeps the genome once per architecture.
  nlohmann::json architecture;

  double total_macs() const;
  double total_params() const;
  double total_weight_bytes() const;
  // Largest live activation set in topological order, assuming each node's inputs and output
  // are live together (the usual lower bound that MCU deployers such as TinyEngine report).
  double peak_activation_bytes() const;

  nlohmann::json to_json() const;
  static Workload from_json(
      const nlohmann::json& j);  // throws std::invalid_argument naming the field
};

// Measured over nominal function evaluations of a solver node: the factor its macs, other_flops
// and kernels are charged at (1 for other nodes and for solver nodes without a measurement).
double function_eval_scale(const NodeWorkload& n);
// A copy of w with every measured solver node's macs, other_flops and kernels scaled by
// function_eval_scale (kernels rounded, at least 1) and its nominal count set to the measured
// one, so charging twice changes nothing; nothing when no node needs scaling (the
// caller then uses w itself, so ordinary workloads pay no copy).  Every device family costs
// the workload returned here (DeviceBase::estimate); activation and weight bytes stay: they
// describe the node's inputs, output and weights, which the number of evaluations does not change.
std::optional<Workload> charge_measured_function_evals(const Workload& w);
// Measured over nominal active experts per token of a routing node (1 for other nodes and for
// routing nodes without a measurement).
double active_expert_scale(const NodeWorkload& n);
// A copy of w with the measured activity charged: solver nodes as charge_measured_function_evals,
// every measured retrieval node's datastore_bytes_read set to the measured figure, and every
// measured routing node's routed_macs and routed_other_flops (inside macs and
// other_flops) scaled by active_expert_scale, its nominal count set to the measured one (so
// charging twice changes nothing).  Kernels and weight bytes stay: every expert is resident.
// Nothing when no node needs charging.  Every device family costs the workload returned here.
std::optional<Workload> charge_measured_activity(const Workload& w);
// Whether the solver nodes' evaluation counts were measured: "measured", "assumed" (nominal),
// "mixed", or "none" without solver nodes.
std::string function_evals_source(const Workload& w);

}  // namespace hwnas::hw
