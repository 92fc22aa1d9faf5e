// neural_ode: a Neural ODE block (Chen et al. 2018, nn/ode.hpp) on vectors: h(0) = x [D],
// dh/dt = f(h, t) with f a small MLP, output h(t1) [D].  RK4 with a fixed step count or adaptive
// dopri5; gradients by backprop through the solver or by the adjoint method.  The workload is
// counted at a nominal number of function evaluations (4 x steps for rk4; 2 + 6 x 10 for
// dopri5, an assumed 10 steps); the validation pass records the solver's real count, and every
// device charges that instead (hw::charge_measured_function_evals).  See docs/blocks/neural_ode.md.
#include "nn/ode.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {

// dopri5's step count is decided at run time; the static count assumes this many.
constexpr int kDopri5NominalSteps = 10;

nn::OdeFuncOptions func_options(int dim, const json& p) {
  nn::OdeFuncOptions o;
  o.dim = dim;
  o.hidden = pint(p, "hidden");
  o.layers = pint(p, "layers");
  o.activation = nn::ode_activation_from_name(pstr(p, "activation"));
  o.time_dependent = pbool(p, "time_dependent");
  return o;
}

nn::OdeSolveOptions solve_options(const json& p) {
  nn::OdeSolveOptions o;
  o.solver = nn::ode_solver_from_name(pstr(p, "solver"));
  o.gradient = nn::ode_gradient_from_name(pstr(p, "gradient"));
  o.t0 = 0.0;
  o.t1 = pfloat(p, "t1");
  o.steps = pint(p, "steps");
  o.rtol = pfloat(p, "rtol");
  o.atol = pfloat(p, "atol");
  o.max_steps = pint(p, "max_steps");
  return o;
}

class NeuralOdeModule : public nn::Module {
 public:
  NeuralOdeModule(int dim, const json& p, Rng& rng)
      : ode_(func_options(dim, p), solve_options(p), rng) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    const nn::Var& x = in.at(0);
    nn::Var y = ode_.forward(x);
    // One solve covers the batch, so each sample saw every evaluation: NFE x batch in total.
    if (ctx.activity)
      ctx.activity->add(nn::activity_key::kFunctionEvals,
                        static_cast<double>(ode_.stats().forward_evals) * x.dim(0));
    return y;
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    ode_.append_named_parameters(prefix, out);
  }
  std::string name() const override { return "neural_ode"; }

 private:
  nn::NeuralOde ode_;
};

}  // namespace

void register_block_neural_ode(Catalogue& c) {
  BlockKind k;
  k.name = "neural_ode";
  k.description =
      "Neural ODE on vectors: h(0) = x, dh/dt = f(h, t) with an MLP f, output h(t1); RK4 or "
      "adaptive dopri5, backprop through the solver or adjoint gradients";
  k.params = {
      ParamSpec::int_range("hidden", 1, 512, 32, "hidden units per layer of f"),
      ParamSpec::int_range("layers", 1, 3, 1, "hidden layers of f"),
      ParamSpec::choice("activation", {"tanh", "softplus", "silu", "sigmoid"}, "tanh",
                        "activation of f's hidden layers (smooth ones only)"),
      ParamSpec::choice("solver", {"rk4", "dopri5"}, "rk4",
                        "fixed-step RK4 or adaptive Dormand-Prince 5(4)"),
      ParamSpec::int_range("steps", 1, 256, 8, "rk4: equal steps over [0, t1]"),
      ParamSpec::float_range("rtol", 1e-7, 0.1, 1e-3, "dopri5: relative tolerance"),
      ParamSpec::float_range("atol", 1e-8, 0.1, 1e-4, "dopri5: absolute tolerance"),
      ParamSpec::int_range("max_steps", 1, 100000, 1000,
                           "dopri5: attempted steps per solve before the solve fails"),
      ParamSpec::float_range("t1", 0.01, 100, 1.0, "integration horizon: output h(t1)"),
      ParamSpec::choice("gradient", {"backprop", "adjoint"}, "backprop",
                        "backprop through the solver (memory grows with steps) or the adjoint "
                        "method (constant memory, a second solve backwards)"),
      ParamSpec::boolean("time_dependent", false, "f also sees t (f(h, t) rather than f(h))")};
  k.accepts = {DataKind::Vector};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    // The solver integrates float32 dense weights; refusing compression keeps the workload
    // honest (it would otherwise price a precision or sparsity training never used).
    if (bits_of(p) != 32 || prune_of(p) > 0)
      throw std::invalid_argument(
          "neural_ode: bits and prune are not supported yet; use bits 32, prune 0");
    return single_input(in);  // out = in
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<NeuralOdeModule>(in[0].dims[0], p, rng);
  };
  // Per sample (one row of h), per function evaluation: the MLP's 2DH + (L-1)H^2 MACs (+H for
  // t times the time weights), its biases and activations (L H (1 + act) + D other flops).
  // Per step, the stage combinations: rk4 7D MACs (three stage inputs, the 4-term update);
  // dopri5 20D (six stage inputs over the tableau's nonzero entries) + 6D (error estimate) MACs
  // and 5D other flops (error ratio).  NFE: rk4 4 x steps; dopri5 2 + 6 x 10 (the initial step
  // selection, then FSAL), scaled by devices to the measured count.  Kernels per evaluation:
  // L + 1 GEMMs with bias, L activations, 1 stage combination.
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const double D = in[0].dims[0], H = pint(p, "hidden"), L = pint(p, "layers");
    const bool tdep = pbool(p, "time_dependent");
    const bool rk4 = pstr(p, "solver") == "rk4";
    const double steps = rk4 ? pint(p, "steps") : kDopri5NominalSteps;
    const double nfe = rk4 ? 4 * steps : nn::dopri5_nominal_evals(kDopri5NominalSteps);
    const double mlp_macs = 2 * D * H + (L - 1) * H * H + (tdep ? H : 0);
    const double mlp_other = L * H * (1 + activation_flops(pstr(p, "activation"))) + D;
    w.category = hw::OpCategory::Recurrent;
    w.macs = nfe * mlp_macs + steps * (rk4 ? 7 * D : 26 * D);
    w.other_flops = nfe * mlp_other + (rk4 ? 0 : steps * 5 * D);
    w.params = D * H + H + (L - 1) * (H * H + H) + H * D + D + (tdep ? H : 0);
    w.kernels = static_cast<int>(nfe * (2 * L + 2));
    w.timesteps = static_cast<int>(steps);
    w.nominal_function_evals = nfe;
    const double synapses = 2 * D * H + (L - 1) * H * H;
    weighted_mapping(w, L * H + D, synapses / (L * H + D), synapses);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
