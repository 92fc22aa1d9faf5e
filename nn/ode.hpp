// Neural ordinary differential equations (Chen et al. 2018, "Neural Ordinary Differential
// Equations", NeurIPS): a state h [B, D] evolves as dh/dt = f(h, t) from t0 to t1, with f a
// small MLP, and the block's output is h(t1).
//
// Solvers: fixed-step classical RK4 (`steps` equal steps), and adaptive Dormand-Prince 5(4)
// (dopri5, FSAL, Hairer's initial step, torchdiffeq's error ratio and step-size controller).
// The whole batch shares one step size: the error norm is taken over every element of the batch
// state (as torchdiffeq does), so with dopri5 a sample's result depends, to within the
// tolerance, on what else is in its batch.
//
// Gradients, two ways:
//   backprop  every stage of every accepted step is recorded on the autograd tape (nn::linear,
//             activations, one fused linear-combination node per stage), so backward() is the
//             exact derivative of the discrete solver (step sizes treated as constants); memory
//             grows with the number of steps.
//   adjoint   one graph node; its backward integrates the augmented system
//             [h, a, g] with dh/dt = f, da/dt = -a^T df/dh, dg/dt = -a^T df/dtheta from t1 back
//             to t0 (recomputing h backwards instead of storing it), so memory does not grow
//             with the number of steps.  rk4 uses the same step grid backwards; dopri5 chooses
//             its own adaptive steps with the same rtol/atol and a mixed norm (the max of the
//             RMS norms of h, a and each parameter's gradient, torchdiffeq's default).
//   The vector-Jacobian products of the adjoint use hand-written backward passes of the MLP on
//   Eigen matrices (no tape), which is both faster and allocation-free per evaluation.
//
// Function evaluations (NFE, one f over the whole batch) are counted: forward and backward
// separately (OdeStats).  Thread-safety: one NeuralOde per training loop, like any Module.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "nn/module.hpp"

namespace hwnas::nn {

// Smooth activations only: the adjoint and the adaptive step control assume a smooth f.
enum class OdeActivation { Tanh, Softplus, Silu, Sigmoid };
// "tanh" | "softplus" | "silu" | "sigmoid"; throws std::invalid_argument naming the choices.
OdeActivation ode_activation_from_name(const std::string& name);
const char* ode_activation_name(OdeActivation a);

enum class OdeSolver { Rk4, Dopri5 };
OdeSolver ode_solver_from_name(const std::string& name);  // "rk4" | "dopri5"
enum class OdeGradient { Backprop, Adjoint };
OdeGradient ode_gradient_from_name(const std::string& name);  // "backprop" | "adjoint"

// f(h, t): D -> hidden (x layers) -> D, activation after every hidden layer.  With
// time_dependent, t enters the first layer as one more input feature (a learned weight per
// first-layer unit times t).
struct OdeFuncOptions {
  int dim = 2;      // D, state width (>= 1)
  int hidden = 32;  // hidden units per layer (>= 1)
  int layers = 1;   // hidden layers, 1..3
  OdeActivation activation = OdeActivation::Tanh;
  bool time_dependent = false;
  void validate() const;  // throws std::invalid_argument naming the field
};

struct OdeSolveOptions {
  OdeSolver solver = OdeSolver::Rk4;
  OdeGradient gradient = OdeGradient::Backprop;
  double t0 = 0.0, t1 = 1.0;        // t1 > t0
  int steps = 10;                   // rk4: equal steps over [t0, t1] (>= 1)
  double rtol = 1e-3, atol = 1e-4;  // dopri5 tolerances (> 0)
  int max_steps = 10000;            // dopri5: attempted steps per solve before giving up (>= 1)
  // dopri5 step-size controller (torchdiffeq's defaults): dt *= clamp(safety / ratio^(1/5),
  // dfactor, ifactor), never shrinking after an accepted step.
  double safety = 0.9, ifactor = 10.0, dfactor = 0.2;
  void validate() const;  // throws std::invalid_argument naming the field
};

// ---- solvers on a plain vector field (no gradients) ----
// The layer's adjoint path runs its forward and backward solves through these; they also
// integrate any ODE given as a function.  `from` > `to` integrates backwards in time.
using OdeField = std::function<void(double t, const Eigen::VectorXf& y, Eigen::VectorXf& dy)>;
struct OdeCounts {
  std::int64_t evals = 0, steps = 0, rejected = 0;  // added to, never reset
};
// `steps` equal classical RK4 steps (4 evaluations each); y is updated in place.
void rk4_integrate(const OdeField& f, Eigen::VectorXf& y, double from, double to, int steps,
                   OdeCounts& counts);
// Adaptive dopri5 with opt's rtol, atol, max_steps and controller.  The error norm is the
// maximum over consecutive segments of y (their lengths; empty: one segment) of the RMS of the
// scaled error.  Throws std::runtime_error past max_steps or on step-size underflow.
void dopri5_integrate(const OdeField& f, Eigen::VectorXf& y, double from, double to,
                      const OdeSolveOptions& opt, std::vector<std::int64_t> norm_segments,
                      OdeCounts& counts);

// Function evaluations (each one f over the whole batch) and solver steps.
struct OdeStats {
  std::int64_t forward_evals = 0;   // last forward solve
  std::int64_t forward_steps = 0;   // accepted steps of the last forward solve
  std::int64_t rejected_steps = 0;  // dopri5 rejections in the last forward solve
  std::int64_t backward_evals = 0;  // last adjoint backward solve (0 in backprop mode)
  std::int64_t backward_steps = 0;  // accepted steps of the last adjoint backward solve
};

// The MLP f.  Parameters: l<i>.weight [out, in], l<i>.bias [out] for i = 0..layers (the last is
// the output layer), and time_weight [hidden] with time_dependent.  Init: PyTorch's Linear
// default (uniform +-1/sqrt(fan_in)), except the output layer scaled by 0.1 so that the
// initial flow is close to the identity map.
class OdeFunc : public Module {
 public:
  OdeFunc(const OdeFuncOptions& opt, std::mt19937_64& rng);
  // Uses the given parameters (in parameters() order), e.g. to share weights or to check
  // gradients; throws std::invalid_argument on a wrong count or shape.
  OdeFunc(const OdeFuncOptions& opt, std::vector<Var> params);
  // f(h, t) on the tape: h [B, D] -> [B, D].
  Var forward(const Var& h, double t) const;
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0), 0); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "ode_func"; }

  const OdeFuncOptions& options() const { return opt_; }
  // Parameters in the flat order the adjoint uses (l0.weight, l0.bias, [time_weight], l1...).
  const std::vector<Var>& parameters() const { return params_; }
  // Multiply-adds and other flops of one evaluation per sample (row of h).
  double macs_per_eval() const;

 private:
  OdeFuncOptions opt_;
  std::vector<Var> weights_, biases_;
  Var time_weight_;
  std::vector<Var> params_;
};

// A Neural ODE layer: h0 [B, D] -> h(t1) [B, D].
class NeuralOde : public Module {
 public:
  NeuralOde(const OdeFuncOptions& f, const OdeSolveOptions& solve, std::mt19937_64& rng);
  Var forward(const Var& h0);
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "neural_ode"; }

  OdeFunc& func() { return func_; }
  const OdeSolveOptions& solve_options() const { return solve_; }
  // Counters of the last forward solve and of the last adjoint backward solve.
  const OdeStats& stats() const { return *stats_; }

 private:
  OdeFunc func_;
  OdeSolveOptions solve_;
  std::shared_ptr<OdeStats> stats_;  // shared with pending adjoint backward closures
};

// Solves dh/dt = f(h, t) over [opt.t0, opt.t1] from h0 [B, D] (D = f's dim) and returns h(t1),
// differentiable per opt.gradient.  `stats` (may be null) receives the counters; with the
// adjoint it must outlive the graph's backward (NeuralOde shares ownership for that reason).
// Throws std::invalid_argument for a bad h0 shape or options, std::runtime_error when dopri5
// exceeds max_steps or its step size underflows.
Var odeint(const OdeFunc& f, const Var& h0, const OdeSolveOptions& opt,
           const std::shared_ptr<OdeStats>& stats = nullptr);

// dopri5's nominal function evaluations per solve for cost models that cannot run it: the two
// of the initial-step selection plus six per step (FSAL) over `steps` steps.
constexpr double dopri5_nominal_evals(int steps) { return 2.0 + 6.0 * steps; }

}  // namespace hwnas::nn
