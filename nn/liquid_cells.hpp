// Liquid (continuous-time) recurrent cells on the fused time loop (nn/time_loop.hpp): one graph
// node per sequence, hand-written backward per step.  Equations in docs/blocks/liquid.md.
//
// CfC, closed-form continuous-time cell (Hasani et al. 2022, Nature Machine Intelligence),
// following the reference ncps CfCCell:
//   z_1 = x W_in^T + b_in + h W_rec^T           (the loop's input GEMM does the x part)
//   backbone: a_1 = lecun_tanh(z_1), a_l = lecun_tanh(a_{l-1} W_l^T + b_l), heads = a_L W_hd^T +
//   b_hd (backbone_layers == 0: heads = z_1 directly) default: f1 = tanh(head0), f2 = tanh(head1),
//   g = sigma(head2 * dt + head3)
//            h' = f1 * (1 - g) + g * f2;      no_gate: h' = f1 + g * f2
//   pure:    h' = A - A * exp(-dt * (|w_tau| + |head0|)) * head0
// LTC, liquid time-constant cell (Hasani et al. 2021, AAAI), with the reference's fused
// semi-implicit (implicit-Euler-like) solver run `unfolds` times per input step:
//   x' = x * in_w + in_b
//   sensory: a_ij = softplus(sw_ij) sigma(ssig_ij (x'_i - smu_ij)) m^s_ij, num_s_j = sum_i a_ij
//   serev_ij,
//            den_s_j = sum_i a_ij
//   cm_t = softplus(cm) * unfolds / dt
//   repeat unfolds: a_ij = softplus(w_ij) sigma(sig_ij (v_i - mu_ij)) m_ij
//            v_j <- (cm_t v_j + softplus(gleak) vleak + sum_i a_ij erev_ij + num_s_j)
//                   / (cm_t + softplus(gleak) + sum_i a_ij + den_s_j + 1e-8)
// The masks m, m^s are fixed 0/1 wiring (dense = all ones; make_ncp_wiring for NCP sparsity).
// With a time input the last input column is the elapsed time dt of each step (irregular
// sampling); otherwise dt = 1.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "nn/module.hpp"
#include "nn/time_loop.hpp"

namespace hwnas::nn {

enum class CfcMode { Default, NoGate, Pure };
CfcMode parse_cfc_mode(const std::string& s);  // "default" | "no_gate" | "pure"
std::string cfc_mode_name(CfcMode m);

struct CfcConfig {
  int hidden = 0;           // H, state and output width
  int backbone_units = 0;   // U (ignored when backbone_layers == 0)
  int backbone_layers = 1;  // L >= 0
  CfcMode mode = CfcMode::Default;
  bool time_input = false;  // last drive column is dt
  int heads() const { return mode == CfcMode::Pure ? 1 : 4; }
  // Width of the first layer's pre-activation (the drive from the input GEMM, without dt).
  int first_width() const { return backbone_layers > 0 ? backbone_units : heads() * hidden; }
};

// params: {w_rec [P, H]}, then for l = 2..L {w_l [U, U], b_l [U]}, then when L >= 1
// {w_head [heads*H, U], b_head [heads*H]}, then for pure {w_tau [H], a [H]}.
// rec_mask: empty (dense) or a 0/1 [P, H] tensor multiplying w_rec.
class CfcCell : public RecurrentCell {
 public:
  CfcCell(const CfcConfig& cfg, Tensor rec_mask = Tensor());
  std::string name() const override { return "cfc"; }
  int input_size() const override { return cfg_.first_width() + (cfg_.time_input ? 1 : 0); }
  int state_size() const override { return cfg_.hidden; }
  int output_size() const override { return cfg_.hidden; }
  int saved_size() const override;
  bool backward_needs_input() const override { return cfg_.time_input; }
  int param_count() const;  // number of parameter tensors
  void check_params(const std::vector<Tensor>& params) const override;
  void forward_step(const std::vector<Tensor>& params, const StepForward& io) const override;
  void backward_step(const std::vector<Tensor>& params, const StepBackward& io) const override;
  void accumulate_param_grads(const std::vector<Tensor>& params, const SampleSpan& span,
                              std::vector<Tensor>& grads) const override;

 private:
  RowMatrix effective_rec(const Tensor& w_rec) const;
  CfcConfig cfg_;
  Tensor mask_;
};

struct LtcConfig {
  int inputs = 0;   // F sensory inputs (without dt)
  int hidden = 0;   // H neurons
  int unfolds = 6;  // solver steps per input step
  bool time_input = false;
};

// Index of each LTC parameter in the params vector.
enum LtcParam : int {
  kLtcGleak,
  kLtcVleak,
  kLtcCm,  // [H]
  kLtcSigma,
  kLtcMu,
  kLtcW,
  kLtcErev,  // [H, H], synapse i -> j at [i, j]
  kLtcSSigma,
  kLtcSMu,
  kLtcSW,
  kLtcSErev,  // [F, H], sensory i -> neuron j
  kLtcInW,
  kLtcInB,  // [F] input affine map
  kLtcParamCount
};

// masks: empty (dense) or 0/1 [H, H] and [F, H].
class LtcCell : public RecurrentCell {
 public:
  LtcCell(const LtcConfig& cfg, Tensor mask = Tensor(), Tensor sensory_mask = Tensor());
  std::string name() const override { return "ltc"; }
  int input_size() const override { return cfg_.inputs + (cfg_.time_input ? 1 : 0); }
  int state_size() const override { return cfg_.hidden; }
  int output_size() const override { return cfg_.hidden; }
  int saved_size() const override { return (cfg_.unfolds + 2) * cfg_.hidden; }
  bool backward_needs_input() const override { return true; }
  void check_params(const std::vector<Tensor>& params) const override;
  void forward_step(const std::vector<Tensor>& params, const StepForward& io) const override;
  void backward_step(const std::vector<Tensor>& params, const StepBackward& io) const override;
  void accumulate_param_grads(const std::vector<Tensor>&, const SampleSpan&,
                              std::vector<Tensor>&) const override {}

 private:
  LtcConfig cfg_;
  Tensor mask_, smask_;
};

// NCP wiring (Lechner et al. 2020, ncps.wirings.NCP): neurons are ordered motor, command, inter
// (motor first, so the first `motor` states are the outputs).  Sensory inputs feed
// sensory_fanout inter neurons each; inter neurons feed inter_fanout command neurons each;
// recurrent_command random command->command synapses; each motor neuron reads motor_fanin
// command neurons.  Neurons left without input get random ones, so every neuron is reachable.
struct NcpWiring {
  int inputs = 0, inter = 0, command = 0, motor = 0;
  Tensor adjacency;  // [H, H] 0/1, synapse i -> j at [i, j]
  Tensor sensory;    // [F, H] 0/1
  int units() const { return inter + command + motor; }
  std::int64_t synapses() const;  // ones in both masks
};
NcpWiring make_ncp_wiring(int inputs, int inter, int command, int motor, int sensory_fanout,
                          int inter_fanout, int recurrent_command, int motor_fanin,
                          std::uint64_t seed);
// A default NCP for `units` neurons: motor = outputs, the rest split 60/40 inter/command, fan-outs
// from `density` in (0, 1] (fraction of the possible synapses between consecutive layers).
NcpWiring make_ncp_wiring(int inputs, int units, int motor, float density, std::uint64_t seed);

// Functional forms.  x [B, T, F]; dt [B, T] or undefined (dt = 1); h0 [B, H] or undefined.
// cfc: w_in [P, F], b_in [P] (P = cfg.first_width()), the input mask (empty or [P, F]) multiplies
// w_in; params as CfcCell.  ltc: params as LtcParam.
Recurrence cfc(const Var& x, const Var& dt, const Var& h0, const Var& w_in, const Var& b_in,
               const std::vector<Var>& params, const CfcConfig& cfg,
               const Tensor& rec_mask = Tensor(), const Tensor& in_mask = Tensor(),
               const RecurrenceOptions& options = {});
Recurrence ltc(const Var& x, const Var& dt, const Var& h0, const std::vector<Var>& params,
               const LtcConfig& cfg, const Tensor& mask = Tensor(),
               const Tensor& sensory_mask = Tensor(), const RecurrenceOptions& options = {});

// Module wrappers: forward(x [B, T, F]) -> [B, T, H] from a zero state.
// wiring_density 1 = dense; < 1 = NCP wiring with that density (CfC: backbone_layers must be 0,
// the NCP masks the recurrent and input weights of every head).
class Cfc : public Module {
 public:
  Cfc(int input_size, const CfcConfig& cfg, std::mt19937_64& rng, float wiring_density = 1.0f,
      int motor = 0, std::uint64_t wiring_seed = 1, RecurrenceOptions options = {});
  Var forward(const Var& x);
  Recurrence forward(const Var& x, const Var& dt, const Var& h0);
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "cfc"; }
  CfcConfig cfg;
  Var w_in, b_in;
  std::vector<Var> params;
  Tensor rec_mask, in_mask;
  RecurrenceOptions options;
};

class Ltc : public Module {
 public:
  Ltc(const LtcConfig& cfg, std::mt19937_64& rng, float wiring_density = 1.0f, int motor = 0,
      std::uint64_t wiring_seed = 1, RecurrenceOptions options = {});
  Var forward(const Var& x);
  Recurrence forward(const Var& x, const Var& dt, const Var& h0);
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "ltc"; }
  LtcConfig cfg;
  std::vector<Var> params;
  Tensor mask, sensory_mask;
  RecurrenceOptions options;
};

}  // namespace hwnas::nn
