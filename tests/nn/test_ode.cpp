// Neural ODE (nn/ode.hpp): the solvers against closed-form solutions, dopri5's tolerance and step
// control, finite-difference gradients (inputs and parameters) for every solver x gradient
// mode, adjoint against backprop-through-the-solver, function-evaluation counts and errors.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <iostream>
#include <unsupported/Eigen/MatrixFunctions>

#include "nn/ode.hpp"
#include "tests/nn/gradcheck.hpp"

using namespace hwnas;
using namespace hwnas::nn;

namespace {

// dh/dt = A h for a fixed A (a damped rotation plus a coupling), on a flat vector.
Eigen::Matrix3d linear_system() {
  Eigen::Matrix3d a;
  a << -0.1, 2.0, 0.0,  //
      -2.0, -0.1, 0.3,  //
      0.0, -0.3, -0.5;
  return a;
}

OdeField linear_field(const Eigen::Matrix3d& a) {
  const Eigen::MatrixXf af = a.cast<float>();
  return [af](double, const Eigen::VectorXf& y, Eigen::VectorXf& dy) { dy = af * y; };
}

OdeFuncOptions small_func(bool time_dependent, OdeActivation act = OdeActivation::Tanh) {
  OdeFuncOptions f;
  f.dim = 3;
  f.hidden = 5;
  f.layers = 2;
  f.activation = act;
  f.time_dependent = time_dependent;
  return f;
}

OdeSolveOptions solve_opts(OdeSolver s, OdeGradient g) {
  OdeSolveOptions o;
  o.solver = s;
  o.gradient = g;
  o.t0 = 0.0;
  o.t1 = 0.8;
  o.steps = 8;
  o.rtol = 1e-5;
  o.atol = 1e-6;
  return o;
}

// Parameters of an OdeFunc as tensors (deep copies), in parameters() order.
std::vector<Tensor> param_tensors(const OdeFunc& f, float gain = 1.0f) {
  std::vector<Tensor> out;
  for (const Var& p : f.parameters()) {
    Tensor t = p.value().clone();
    t.array() *= gain;
    out.push_back(t);
  }
  return out;
}

// FD check of h0 and every parameter through odeint.
void check_gradients(OdeSolver solver, OdeGradient grad, bool time_dependent,
                     OdeActivation act = OdeActivation::Tanh) {
  std::mt19937_64 rng(3);
  const OdeFuncOptions fo = small_func(time_dependent, act);
  OdeFunc init(fo, rng);
  std::vector<Tensor> inputs{nn::testing::random_tensor(Shape{2, 3}, rng)};
  // Larger output weights than the identity-like init, so the flow actually bends.
  for (const Tensor& t : param_tensors(init, 3.0f)) inputs.push_back(t);
  const OdeSolveOptions so = solve_opts(solver, grad);
  nn::testing::GradCheckOptions gc;
  gc.eps_scale = 5e-3f;
  nn::testing::expect_gradients_match(
      [&](const std::vector<Var>& v) {
        OdeFunc f(fo, std::vector<Var>(v.begin() + 1, v.end()));
        return odeint(f, v[0], so);
      },
      inputs, gc);
}

// Gradients of sum(h(t1) * r) with respect to h0 and the parameters.
std::vector<Tensor> gradients_of(OdeSolver solver, OdeGradient grad, int steps, double rtol,
                                 std::shared_ptr<OdeStats> stats = nullptr) {
  std::mt19937_64 rng(9);
  const OdeFuncOptions fo = small_func(true);
  OdeFunc init(fo, rng);
  std::vector<Var> params;
  for (const Tensor& t : param_tensors(init, 3.0f)) params.push_back(parameter(t));
  OdeFunc f(fo, params);
  Var h0 = parameter(nn::testing::random_tensor(Shape{4, 3}, rng));
  OdeSolveOptions so = solve_opts(solver, grad);
  so.steps = steps;
  so.rtol = rtol;
  so.atol = rtol * 0.1;
  Tensor r = nn::testing::random_tensor(Shape{4, 3}, rng, 0.5f, 1.5f);
  backward(sum(mul(odeint(f, h0, so, stats), constant(r))));
  std::vector<Tensor> g{h0.grad()};
  for (const Var& p : params) g.push_back(p.grad());
  return g;
}

double max_rel_diff(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::int64_t j = 0; j < a[i].numel(); ++j) {
      const double x = a[i].data()[j], y = b[i].data()[j];
      worst = std::max(worst, std::fabs(x - y) / std::max(1.0, std::fabs(y)));
    }
  return worst;
}

}  // namespace

TEST(Ode, Rk4MatchesTheMatrixExponential) {
  const Eigen::Matrix3d a = linear_system();
  const Eigen::Vector3d y0(1.0, -0.5, 0.25);
  const double T = 1.5;
  const Eigen::Vector3d exact = (a * T).exp() * y0;
  Eigen::VectorXf y = y0.cast<float>();
  OdeCounts c;
  rk4_integrate(linear_field(a), y, 0.0, T, 100, c);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(y[i], exact[i], 1e-5) << i;
  EXPECT_EQ(c.evals, 400);
  EXPECT_EQ(c.steps, 100);
  // Backwards in time returns to the start.
  rk4_integrate(linear_field(a), y, T, 0.0, 100, c);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(y[i], y0[i], 1e-5) << i;
}

TEST(Ode, Dopri5MeetsItsTolerancesAndLooserTakesFewerSteps) {
  const Eigen::Matrix3d a = linear_system();
  const Eigen::Vector3d y0(1.0, -0.5, 0.25);
  const double T = 3.0;
  const Eigen::Vector3d exact = (a * T).exp() * y0;
  std::int64_t previous_steps = 1 << 30;
  for (double tol : {1e-6, 1e-4, 1e-2}) {
    OdeSolveOptions o;
    o.rtol = tol;
    o.atol = tol;
    Eigen::VectorXf y = y0.cast<float>();
    OdeCounts c;
    dopri5_integrate(linear_field(a), y, 0.0, T, o, {}, c);
    // Global error within a small multiple of the local tolerance (plus float32 rounding).
    for (int i = 0; i < 3; ++i)
      EXPECT_NEAR(y[i], exact[i], 10 * tol * (1 + std::fabs(exact[i])) + 1e-5) << tol;
    EXPECT_EQ(c.evals, 2 + 6 * (c.steps + c.rejected)) << tol;  // FSAL + initial step
    EXPECT_LT(c.steps, previous_steps) << tol;
    previous_steps = c.steps;
  }
}

TEST(Ode, Dopri5IntegratesBackwardsToo) {
  const Eigen::Matrix3d a = linear_system();
  const Eigen::Vector3d y1(0.3, 0.2, -0.4);
  const Eigen::Vector3d exact = (a * -1.0).exp() * y1;  // y(0) from y(1)
  OdeSolveOptions o;
  o.rtol = 1e-6;
  o.atol = 1e-7;
  Eigen::VectorXf y = y1.cast<float>();
  OdeCounts c;
  dopri5_integrate(linear_field(a), y, 1.0, 0.0, o, {}, c);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(y[i], exact[i], 2e-5) << i;
}

TEST(Ode, BackpropAndAdjointForwardAgree) {
  for (OdeSolver s : {OdeSolver::Rk4, OdeSolver::Dopri5}) {
    std::mt19937_64 rng(4);
    OdeFunc f(small_func(true), rng);
    Var h0 = parameter(nn::testing::random_tensor(Shape{3, 3}, rng));
    Var a = odeint(f, h0, solve_opts(s, OdeGradient::Backprop));
    Var b = odeint(f, h0, solve_opts(s, OdeGradient::Adjoint));
    nn::testing::expect_close(a.value(), b.value(), 1e-5f);
  }
}

TEST(Ode, GradientsMatchFiniteDifferencesRk4Backprop) {
  check_gradients(OdeSolver::Rk4, OdeGradient::Backprop, true);
  check_gradients(OdeSolver::Rk4, OdeGradient::Backprop, false, OdeActivation::Softplus);
}
TEST(Ode, GradientsMatchFiniteDifferencesRk4Adjoint) {
  check_gradients(OdeSolver::Rk4, OdeGradient::Adjoint, true);
  check_gradients(OdeSolver::Rk4, OdeGradient::Adjoint, true, OdeActivation::Silu);
  check_gradients(OdeSolver::Rk4, OdeGradient::Adjoint, false, OdeActivation::Sigmoid);
  check_gradients(OdeSolver::Rk4, OdeGradient::Adjoint, false, OdeActivation::Softplus);
}
TEST(Ode, GradientsMatchFiniteDifferencesDopri5Backprop) {
  check_gradients(OdeSolver::Dopri5, OdeGradient::Backprop, true);
}
TEST(Ode, GradientsMatchFiniteDifferencesDopri5Adjoint) {
  check_gradients(OdeSolver::Dopri5, OdeGradient::Adjoint, true);
}

TEST(Ode, AdjointMatchesBackpropThroughTheSolver) {
  // rk4, same step grid: the continuous adjoint differs from the discrete gradient by O(dt^4).
  const auto bp = gradients_of(OdeSolver::Rk4, OdeGradient::Backprop, 40, 1e-5);
  const auto adj = gradients_of(OdeSolver::Rk4, OdeGradient::Adjoint, 40, 1e-5);
  std::cout << "rk4 adjoint vs backprop: max rel diff " << max_rel_diff(adj, bp) << "\n";
  EXPECT_LT(max_rel_diff(adj, bp), 2e-5);
  // dopri5: each solve within its tolerance.
  const auto bp5 = gradients_of(OdeSolver::Dopri5, OdeGradient::Backprop, 1, 1e-6);
  const auto adj5 = gradients_of(OdeSolver::Dopri5, OdeGradient::Adjoint, 1, 1e-6);
  std::cout << "dopri5 adjoint vs backprop: max rel diff " << max_rel_diff(adj5, bp5)
            << " (vs rk4 backprop " << max_rel_diff(adj5, bp) << ")\n";
  EXPECT_LT(max_rel_diff(adj5, bp5), 1e-3);
  EXPECT_LT(max_rel_diff(adj5, bp), 1e-3);
}

TEST(Ode, FunctionEvaluationsAreCounted) {
  auto stats = std::make_shared<OdeStats>();
  gradients_of(OdeSolver::Rk4, OdeGradient::Adjoint, 7, 1e-5, stats);
  EXPECT_EQ(stats->forward_evals, 28);
  EXPECT_EQ(stats->forward_steps, 7);
  EXPECT_EQ(stats->backward_evals, 28);  // the same grid backwards
  gradients_of(OdeSolver::Rk4, OdeGradient::Backprop, 5, 1e-5, stats);
  EXPECT_EQ(stats->forward_evals, 20);
  EXPECT_EQ(stats->backward_evals, 0);  // the tape, no solve
  for (OdeGradient g : {OdeGradient::Backprop, OdeGradient::Adjoint}) {
    gradients_of(OdeSolver::Dopri5, g, 1, 1e-4, stats);
    EXPECT_GT(stats->forward_steps, 1);
    EXPECT_EQ(stats->forward_evals, 2 + 6 * (stats->forward_steps + stats->rejected_steps));
  }
  EXPECT_GT(stats->backward_evals, 0);
  // A looser tolerance needs fewer evaluations.
  gradients_of(OdeSolver::Dopri5, OdeGradient::Adjoint, 1, 1e-7, stats);
  const auto tight = stats->forward_evals;
  gradients_of(OdeSolver::Dopri5, OdeGradient::Adjoint, 1, 1e-2, stats);
  EXPECT_LT(stats->forward_evals, tight);
}

TEST(Ode, NeuralOdeModuleNamesItsParametersAndKeepsStats) {
  std::mt19937_64 rng(1);
  OdeSolveOptions so;
  so.steps = 3;
  NeuralOde ode(small_func(true), so, rng);
  const auto named = ode.named_parameters();
  ASSERT_EQ(named.size(), 7u);
  EXPECT_EQ(named[0].name, "func.l0.weight");
  EXPECT_EQ(named[2].name, "func.time_weight");
  EXPECT_EQ(named[6].name, "func.l2.bias");
  Var y = ode.forward(constant(nn::testing::random_tensor(Shape{2, 3}, rng)));
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(ode.stats().forward_evals, 12);
  EXPECT_EQ(ode.func().macs_per_eval(), 3 * 5 + 5 * 5 + 5 * 3 + 5);
}

TEST(Ode, BadConfigurationIsNamed) {
  std::mt19937_64 rng(1);
  OdeFuncOptions f = small_func(false);
  f.layers = 4;
  nn::testing::expect_invalid([&] { OdeFunc x(f, rng); }, "layers must be in [1, 3], got 4");
  f = small_func(false);
  f.hidden = 0;
  nn::testing::expect_invalid([&] { OdeFunc x(f, rng); }, "hidden must be >= 1, got 0");
  nn::testing::expect_invalid([] { ode_activation_from_name("relu"); },
                              "unknown 'relu' (allowed: tanh, softplus, silu, sigmoid)");
  nn::testing::expect_invalid([] { ode_solver_from_name("euler"); },
                              "unknown 'euler' (allowed: rk4, dopri5)");
  nn::testing::expect_invalid([] { ode_gradient_from_name("x"); },
                              "unknown 'x' (allowed: backprop, adjoint)");
  OdeFunc fn(small_func(false), rng);
  Var h = constant(Tensor::zeros(Shape{2, 3}));
  auto with = [&](auto change) {
    OdeSolveOptions o;
    change(o);
    return [&fn, &h, o] { odeint(fn, h, o); };
  };
  nn::testing::expect_invalid(with([](OdeSolveOptions& o) { o.t1 = 0; }),
                              "t1 must be finite and > t0, got t0 0, t1 0");
  nn::testing::expect_invalid(with([](OdeSolveOptions& o) { o.steps = 0; }),
                              "steps must be >= 1, got 0");
  nn::testing::expect_invalid(with([](OdeSolveOptions& o) { o.rtol = 0; }),
                              "rtol must be > 0, got 0");
  nn::testing::expect_invalid(with([](OdeSolveOptions& o) { o.atol = -1; }),
                              "atol must be > 0, got -1");
  nn::testing::expect_invalid(with([](OdeSolveOptions& o) { o.max_steps = 0; }),
                              "max_steps must be >= 1, got 0");
  nn::testing::expect_invalid(with([](OdeSolveOptions& o) { o.safety = 2; }),
                              "safety must be in (0, 1], got 2");
  nn::testing::expect_invalid(with([](OdeSolveOptions& o) { o.dfactor = 0; }),
                              "dfactor must be in (0, 1], got 0");
  nn::testing::expect_invalid(with([](OdeSolveOptions& o) { o.ifactor = 0.5; }),
                              "ifactor must be >= 1, got 0.5");
  nn::testing::expect_invalid(
      [&] {
        odeint(fn, constant(Tensor::zeros(Shape{2, 4})), {});
      },
      "h0 must be [batch, 3], got [2, 4]");
  nn::testing::expect_invalid([&] { OdeFunc x(small_func(false), std::vector<Var>{}); },
                              "expects 6 parameters, got 0");
  std::vector<Var> ps = fn.parameters();
  ps[1] = parameter(Tensor::zeros(Shape{4}));
  nn::testing::expect_invalid([&] { OdeFunc x(small_func(false), ps); },
                              "parameter 1 (bias) must have shape [5], got [4]");
}

TEST(Ode, Dopri5GivesUpPastMaxSteps) {
  OdeSolveOptions o;
  o.solver = OdeSolver::Dopri5;
  o.rtol = 1e-8;
  o.atol = 1e-8;
  o.max_steps = 3;
  Eigen::VectorXf y = Eigen::VectorXf::Ones(3);
  OdeCounts c;
  try {
    dopri5_integrate(linear_field(linear_system() * 10.0), y, 0.0, 5.0, o, {}, c);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("dopri5 needed more than max_steps = 3 steps"),
              std::string::npos)
        << e.what();
  }
}
