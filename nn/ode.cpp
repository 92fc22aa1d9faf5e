#include "nn/ode.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <stdexcept>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
namespace {

using Vec = Eigen::VectorXf;
using Mat = RowMatrix;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::invalid_argument(where + ": " + what);
}
std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// ---- Dormand-Prince 5(4) tableau (Dormand & Prince 1980; torchdiffeq's, Shampine's error) ----
constexpr double kAlpha[6] = {1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0, 1.0};
constexpr double kBeta[6][6] = {
    {1.0 / 5},
    {3.0 / 40, 9.0 / 40},
    {44.0 / 45, -56.0 / 15, 32.0 / 9},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
    {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}};  // = the solution
constexpr double kErr[7] = {35.0 / 384 - 1951.0 / 21600,
                            0,
                            500.0 / 1113 - 22642.0 / 50085,
                            125.0 / 192 - 451.0 / 720,
                            -2187.0 / 6784 - -12231.0 / 42400,
                            11.0 / 84 - 649.0 / 6300,
                            -1.0 / 60};

// ---- the MLP without the tape: forward with saved activations, and its VJP ----

float act(OdeActivation a, float z) {
  switch (a) {
    case OdeActivation::Tanh:
      return std::tanh(z);
    case OdeActivation::Sigmoid:
      return 1.0f / (1.0f + std::exp(-z));
    case OdeActivation::Silu:
      return z / (1.0f + std::exp(-z));
    case OdeActivation::Softplus:
      return z > 20.0f ? z : std::log1p(std::exp(z));
  }
  return z;
}

// Derivative from the pre-activation z and the activation y = act(z).
float act_grad(OdeActivation a, float z, float y) {
  switch (a) {
    case OdeActivation::Tanh:
      return 1.0f - y * y;
    case OdeActivation::Sigmoid:
      return y * (1.0f - y);
    case OdeActivation::Silu: {
      const float s = 1.0f / (1.0f + std::exp(-z));
      return s * (1.0f + z * (1.0f - s));
    }
    case OdeActivation::Softplus:
      return z > 20.0f ? 1.0f : 1.0f / (1.0f + std::exp(-z));
  }
  return 1.0f;
}

void apply_act(OdeActivation a, const Mat& z, Mat& y) {
  if (a == OdeActivation::Tanh) {
    y = z.array().tanh().matrix();
    return;
  }
  const float* zp = z.data();
  float* yp = y.data();
  for (Eigen::Index i = 0; i < z.size(); ++i) yp[i] = act(a, zp[i]);
}

// Reads the parameter tensors of an OdeFunc (sharing storage: values at call time).
struct MlpKernel {
  OdeFuncOptions opt;
  std::vector<Tensor> w, b;           // per linear layer
  Tensor tw;                          // time weight or empty
  std::vector<std::int64_t> offsets;  // of each parameter in the flat gradient, in param order
  std::int64_t param_count = 0;

  explicit MlpKernel(const OdeFunc& f) : opt(f.options()) {
    const auto& ps = f.parameters();
    std::size_t i = 0;
    for (int l = 0; l <= opt.layers; ++l) {
      w.push_back(ps[i++].value());
      b.push_back(ps[i++].value());
      if (l == 0 && opt.time_dependent) tw = ps[i++].value();
    }
    for (const Var& p : ps) {
      offsets.push_back(param_count);
      param_count += p.value().numel();
    }
  }
  ConstMatrixMap W(int l) const { return w[static_cast<std::size_t>(l)].matrix(); }
  Eigen::Map<const Eigen::RowVectorXf> bias(int l) const {
    const Tensor& t = b[static_cast<std::size_t>(l)];
    return {t.data(), t.numel()};
  }
};

// Per-solve scratch: pre-activations z[l] and activations y[l] of the hidden layers.
struct MlpWork {
  std::vector<Mat> z, y;
  Mat delta, delta_prev;
  Eigen::RowVectorXf b0;
  MlpWork(const MlpKernel& k, int rows) {
    z.assign(static_cast<std::size_t>(k.opt.layers), Mat(rows, k.opt.hidden));
    y = z;
    delta = Mat(rows, k.opt.hidden);
    delta_prev = delta;
  }
};

// out = f(h, t); h and out [rows, D].
void mlp_eval(const MlpKernel& k, double t, const float* h, float* out, int rows, MlpWork& w) {
  const int D = k.opt.dim, L = k.opt.layers;
  ConstMatrixMap hm(h, rows, D);
  w.b0 = k.bias(0);
  if (k.opt.time_dependent)
    w.b0 += static_cast<float>(t) * Eigen::Map<const Eigen::RowVectorXf>(k.tw.data(), k.tw.numel());
  detail::gemm(w.z[0], hm, k.W(0).transpose(), false, w.b0.data());
  apply_act(k.opt.activation, w.z[0], w.y[0]);
  for (int l = 1; l < L; ++l) {
    const auto li = static_cast<std::size_t>(l);
    detail::gemm(w.z[li], w.y[li - 1], k.W(l).transpose(), false, k.bias(l).data());
    apply_act(k.opt.activation, w.z[li], w.y[li]);
  }
  MatrixMap om(out, rows, D);
  detail::gemm(om, w.y[static_cast<std::size_t>(L - 1)], k.W(L).transpose(), false,
               k.bias(L).data());
}

// After mlp_eval at (h, t): dh = v^T df/dh and dtheta = v^T df/dtheta (flat, param order),
// both overwritten.  v [rows, D].
void mlp_vjp(const MlpKernel& k, double t, const float* h, const float* v, float* dh, float* dtheta,
             int rows, MlpWork& w) {
  const int D = k.opt.dim, H = k.opt.hidden, L = k.opt.layers;
  ConstMatrixMap hm(h, rows, D), vm(v, rows, D);
  // Parameter slots: layer l's weight and bias, and the time weight after layer 0's bias.
  auto slot = [&](int l, int which) {  // which: 0 weight, 1 bias, 2 time weight
    std::size_t idx = static_cast<std::size_t>(2 * l + which);
    if (k.opt.time_dependent && l > 0) ++idx;
    return dtheta + k.offsets[idx];
  };
  const std::size_t last = static_cast<std::size_t>(L - 1);
  detail::gemm(MatrixMap(slot(L, 0), D, H), vm.transpose(), w.y[last], false);
  Eigen::Map<Eigen::RowVectorXf>(slot(L, 1), D) = vm.colwise().sum();
  detail::gemm(w.delta, vm, k.W(L), false);
  for (int l = L - 1; l >= 0; --l) {
    const auto li = static_cast<std::size_t>(l);
    float* dp = w.delta.data();
    const float* zp = w.z[li].data();
    const float* yp = w.y[li].data();
    for (Eigen::Index i = 0; i < w.delta.size(); ++i)
      dp[i] *= act_grad(k.opt.activation, zp[i], yp[i]);
    const int in = l == 0 ? D : H;
    if (l == 0)
      detail::gemm(MatrixMap(slot(0, 0), H, in), w.delta.transpose(), hm, false);
    else
      detail::gemm(MatrixMap(slot(l, 0), H, in), w.delta.transpose(), w.y[li - 1], false);
    Eigen::Map<Eigen::RowVectorXf> gb(slot(l, 1), H);
    gb = w.delta.colwise().sum();
    if (l == 0 && k.opt.time_dependent)
      Eigen::Map<Eigen::RowVectorXf>(slot(0, 2), H) = static_cast<float>(t) * gb;
    if (l > 0) {
      detail::gemm(w.delta_prev, w.delta, k.W(l), false);
      std::swap(w.delta, w.delta_prev);
    } else {
      detail::gemm(MatrixMap(dh, rows, D), w.delta, k.W(0), false);
    }
  }
}

// ---- step-size control shared by every dopri5 path ----

// max over segments of the RMS of x (a single segment: plain RMS).
double mixed_rms(const float* x, const std::vector<std::int64_t>& segments) {
  double worst = 0;
  std::int64_t at = 0;
  for (std::int64_t n : segments) {
    double s = 0;
    for (std::int64_t i = 0; i < n; ++i) s += static_cast<double>(x[at + i]) * x[at + i];
    if (n > 0) worst = std::max(worst, std::sqrt(s / static_cast<double>(n)));
    at += n;
  }
  return worst;
}

struct Controller {
  const OdeSolveOptions& opt;
  std::vector<std::int64_t> segments;
  Vec scratch;

  // norm(err / (atol + rtol max(|y0|, |y1|)))
  double error_ratio(const Vec& err, const float* y0, const float* y1) {
    scratch.resize(err.size());
    for (Eigen::Index i = 0; i < err.size(); ++i)
      scratch[i] = static_cast<float>(
          err[i] / (opt.atol + opt.rtol * std::max(std::fabs(y0[i]), std::fabs(y1[i]))));
    return mixed_rms(scratch.data(), segments);
  }
  double next_step(double dt, double ratio) const {
    if (ratio == 0) return dt * opt.ifactor;
    const double dfactor = ratio < 1 ? 1.0 : opt.dfactor;
    const double factor =
        std::min(opt.ifactor, std::max(opt.safety / std::pow(ratio, 0.2), dfactor));
    return dt * factor;
  }
  // Hairer, Norsett & Wanner, Solving ODEs I, II.4 (torchdiffeq's _select_initial_step, order
  // 4 exponent 1/5).  eval(t, y, out) computes one more f.  Returns |dt|.
  double initial_step(double t0, double dir, const float* y0, const float* f0, Eigen::Index n,
                      const std::function<void(double, const Vec&, Vec&)>& eval) {
    Vec a(n), b(n);
    for (Eigen::Index i = 0; i < n; ++i) {
      const double scale = opt.atol + std::fabs(y0[i]) * opt.rtol;
      a[i] = static_cast<float>(y0[i] / scale);
      b[i] = static_cast<float>(f0[i] / scale);
    }
    const double d0 = mixed_rms(a.data(), segments), d1 = mixed_rms(b.data(), segments);
    const double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    Vec y1(n), f1(n);
    for (Eigen::Index i = 0; i < n; ++i) y1[i] = static_cast<float>(y0[i] + dir * h0 * f0[i]);
    eval(t0 + dir * h0, y1, f1);
    for (Eigen::Index i = 0; i < n; ++i) {
      const double scale = opt.atol + std::fabs(y0[i]) * opt.rtol;
      a[i] = static_cast<float>((f1[i] - f0[i]) / scale);
    }
    const double d2 = mixed_rms(a.data(), segments) / h0;
    const double h1 = (d1 <= 1e-15 && d2 <= 1e-15) ? std::max(1e-6, h0 * 1e-3)
                                                   : std::pow(0.01 / std::max(d1, d2), 1.0 / 5.0);
    return std::min(100 * h0, h1);
  }
};

[[noreturn]] void too_many_steps(const OdeSolveOptions& o, double t, double from, double to) {
  throw std::runtime_error(
      "odeint: dopri5 needed more than max_steps = " + std::to_string(o.max_steps) +
      " steps (reached t = " + num(t) + " integrating from " + num(from) + " to " + num(to) +
      " with rtol " + num(o.rtol) + ", atol " + num(o.atol) +
      "); loosen rtol/atol, shorten t1 or raise max_steps");
}
void check_underflow(double dt, double t, double from, double to) {
  if (std::fabs(dt) < 1e-12 * std::max(1.0, std::fabs(to - from)) || t + dt == t)
    throw std::runtime_error("odeint: dopri5 step size underflow (dt = " + num(dt) + " at t = " +
                             num(t) + "); the dynamics are too stiff for the tolerances");
}

}  // namespace

// ---- solvers on flat float vectors (the adjoint's forward and backward solves) ----

// Integrates y from `from` to `to` (either direction) in place.
void rk4_integrate(const OdeField& f, Vec& y, double from, double to, int steps, OdeCounts& c) {
  if (steps < 1) bad("rk4_integrate", "steps must be >= 1, got " + std::to_string(steps));
  const double dt = (to - from) / steps;
  const Eigen::Index n = y.size();
  Vec k1(n), k2(n), k3(n), k4(n), tmp(n);
  for (int s = 0; s < steps; ++s) {
    const double t = from + s * dt;
    const float h = static_cast<float>(dt), h2 = static_cast<float>(dt / 2);
    f(t, y, k1);
    tmp = y + h2 * k1;
    f(t + dt / 2, tmp, k2);
    tmp = y + h2 * k2;
    f(t + dt / 2, tmp, k3);
    tmp = y + h * k3;
    f(t + dt, tmp, k4);
    y += (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4);
    c.evals += 4;
    ++c.steps;
  }
}

void dopri5_integrate(const OdeField& f, Vec& y, double from, double to, const OdeSolveOptions& opt,
                      std::vector<std::int64_t> segments, OdeCounts& c) {
  if (segments.empty()) segments.push_back(y.size());
  const Eigen::Index n = y.size();
  const double dir = to > from ? 1.0 : -1.0;
  Controller ctl{opt, std::move(segments), {}};
  std::vector<Vec> k(7, Vec(n));
  Vec tmp(n), y1(n), err(n);
  f(from, y, k[0]);
  ++c.evals;
  double dt = dir * ctl.initial_step(from, dir, y.data(), k[0].data(), n,
                                     [&](double t, const Vec& yy, Vec& out) {
                                       f(t, yy, out);
                                       ++c.evals;
                                     });
  double t = from;
  int attempts = 0;
  while (dir * (to - t) > 0) {
    if (++attempts > opt.max_steps) too_many_steps(opt, t, from, to);
    if (dir * (t + dt - to) > 0) dt = to - t;
    check_underflow(dt, t, from, to);
    for (int i = 0; i < 6; ++i) {
      tmp = y;
      for (int j = 0; j <= i; ++j)
        if (kBeta[i][j] != 0)
          tmp += static_cast<float>(dt * kBeta[i][j]) * k[static_cast<std::size_t>(j)];
      if (i == 5) y1 = tmp;
      f(t + kAlpha[i] * dt, tmp, k[static_cast<std::size_t>(i + 1)]);
      ++c.evals;
    }
    err.setZero();
    for (int j = 0; j < 7; ++j)
      if (kErr[j] != 0) err += static_cast<float>(dt * kErr[j]) * k[static_cast<std::size_t>(j)];
    const double ratio = ctl.error_ratio(err, y.data(), y1.data());
    if (ratio <= 1) {
      t = (dir * (t + dt - to) >= 0) ? to : t + dt;
      y = y1;
      std::swap(k[0], k[6]);  // FSAL
      ++c.steps;
    } else {
      ++c.rejected;
    }
    dt = ctl.next_step(dt, ratio);
  }
}

namespace {

// ---- the tape path (backprop through the solver) ----

// y + sum_j c_j k_j as one graph node (zero coefficients skipped by the caller).
Var linear_combination(const Var& y, const std::vector<Var>& ks, const std::vector<float>& cs) {
  Tensor out = y.value().clone();
  auto o = out.array();
  for (std::size_t j = 0; j < ks.size(); ++j) o += cs[j] * ks[j].value().array();
  std::vector<Var> parents{y};
  parents.insert(parents.end(), ks.begin(), ks.end());
  return make_result(std::move(out), std::move(parents), [cs](Node& self) {
    accumulate_grad(*self.parents[0], self.grad);
    for (std::size_t j = 0; j < cs.size(); ++j) {
      Node& p = *self.parents[j + 1];
      if (p.requires_grad) grad_of(p).array() += cs[j] * self.grad.array();
    }
  });
}

Var apply_ode_activation(const Var& x, OdeActivation a) {
  switch (a) {
    case OdeActivation::Tanh:
      return tanh(x);
    case OdeActivation::Sigmoid:
      return sigmoid(x);
    case OdeActivation::Silu:
      return silu(x);
    case OdeActivation::Softplus:
      return softplus(x);
  }
  return x;
}

// Values of one f evaluation outside the tape (initial-step selection of the tape path).
void eval_values(const OdeFunc& f, double t, const Vec& y, Vec& out, const Shape& shape) {
  NoGradGuard ng;
  Tensor yt(shape);
  std::copy(y.data(), y.data() + y.size(), yt.data());
  Var r = f.forward(constant(yt), t);
  out = Eigen::Map<const Vec>(r.value().data(), y.size());
}

Var rk4_tape(const OdeFunc& f, Var y, const OdeSolveOptions& o, OdeStats& st) {
  const double dt = (o.t1 - o.t0) / o.steps;
  const auto h = static_cast<float>(dt), h2 = static_cast<float>(dt / 2);
  for (int s = 0; s < o.steps; ++s) {
    const double t = o.t0 + s * dt;
    Var k1 = f.forward(y, t);
    Var k2 = f.forward(linear_combination(y, {k1}, {h2}), t + dt / 2);
    Var k3 = f.forward(linear_combination(y, {k2}, {h2}), t + dt / 2);
    Var k4 = f.forward(linear_combination(y, {k3}, {h}), t + dt);
    y = linear_combination(y, {k1, k2, k3, k4}, {h / 6, h / 3, h / 3, h / 6});
  }
  st.forward_evals = 4LL * o.steps;
  st.forward_steps = o.steps;
  return y;
}

Var dopri5_tape(const OdeFunc& f, Var y, const OdeSolveOptions& o, OdeStats& st) {
  const Eigen::Index n = y.value().numel();
  const Shape shape = y.shape();
  Controller ctl{o, {n}, {}};
  auto values = [n](const Var& v) { return Eigen::Map<const Vec>(v.value().data(), n); };
  Var k0 = f.forward(y, o.t0);
  std::int64_t evals = 1, steps = 0, rejected = 0;
  double dt = ctl.initial_step(o.t0, 1.0, y.value().data(), k0.value().data(), n,
                               [&](double t, const Vec& yy, Vec& out) {
                                 eval_values(f, t, yy, out, shape);
                                 ++evals;
                               });
  double t = o.t0;
  int attempts = 0;
  std::vector<Var> k(7);
  Vec err(n);
  while (t < o.t1) {
    if (++attempts > o.max_steps) too_many_steps(o, t, o.t0, o.t1);
    if (t + dt > o.t1) dt = o.t1 - t;
    check_underflow(dt, t, o.t0, o.t1);
    k[0] = k0;
    Var y1;
    for (int i = 0; i < 6; ++i) {
      std::vector<Var> ks;
      std::vector<float> cs;
      for (int j = 0; j <= i; ++j)
        if (kBeta[i][j] != 0) {
          ks.push_back(k[static_cast<std::size_t>(j)]);
          cs.push_back(static_cast<float>(dt * kBeta[i][j]));
        }
      Var yi = linear_combination(y, ks, cs);
      if (i == 5) y1 = yi;
      k[static_cast<std::size_t>(i + 1)] = f.forward(yi, t + kAlpha[i] * dt);
      ++evals;
    }
    err.setZero();
    for (int j = 0; j < 7; ++j)
      if (kErr[j] != 0)
        err += static_cast<float>(dt * kErr[j]) * values(k[static_cast<std::size_t>(j)]);
    const double ratio = ctl.error_ratio(err, y.value().data(), y1.value().data());
    if (ratio <= 1) {
      t = (t + dt >= o.t1) ? o.t1 : t + dt;
      y = y1;
      k0 = k[6];  // FSAL
      ++steps;
    } else {
      ++rejected;
    }
    dt = ctl.next_step(dt, ratio);
  }
  st.forward_evals = evals;
  st.forward_steps = steps;
  st.rejected_steps = rejected;
  return y;
}

// ---- the adjoint path: one node, forward and backward solves without the tape ----

void solve_flat(const OdeField& field, Vec& y, double from, double to, const OdeSolveOptions& o,
                std::vector<std::int64_t> segments, OdeCounts& c) {
  if (o.solver == OdeSolver::Rk4)
    rk4_integrate(field, y, from, to, o.steps, c);
  else
    dopri5_integrate(field, y, from, to, o, std::move(segments), c);
}

Var adjoint_solve(const OdeFunc& f, const Var& h0, const OdeSolveOptions& o,
                  const std::shared_ptr<OdeStats>& st) {
  auto kernel = std::make_shared<const MlpKernel>(f);
  const int rows = h0.dim(0);
  const Eigen::Index n = h0.value().numel();
  Vec y = Eigen::Map<const Vec>(h0.value().data(), n);
  OdeCounts c;
  {
    MlpWork w(*kernel, rows);
    const OdeField field = [&](double t, const Vec& yy, Vec& dy) {
      mlp_eval(*kernel, t, yy.data(), dy.data(), rows, w);
    };
    solve_flat(field, y, o.t0, o.t1, o, {n}, c);
  }
  *st = OdeStats{};
  st->forward_evals = c.evals;
  st->forward_steps = c.steps;
  st->rejected_steps = c.rejected;
  Tensor out(h0.shape());
  std::copy(y.data(), y.data() + n, out.data());
  std::vector<Var> parents{h0};
  for (const Var& p : f.parameters()) parents.push_back(p);
  return make_result(out, std::move(parents), [kernel, o, st, h1 = out, rows, n](Node& self) {
    const MlpKernel& k = *kernel;
    const Eigen::Index P = k.param_count;
    Vec aug(2 * n + P);
    aug.head(n) = Eigen::Map<const Vec>(h1.data(), n);
    aug.segment(n, n) = Eigen::Map<const Vec>(self.grad.data(), n);
    aug.tail(P).setZero();
    MlpWork w(k, rows);
    // d/dt [h, a, g] = [f, -a^T df/dh, -a^T df/dtheta]
    const OdeField field = [&](double t, const Vec& yy, Vec& dy) {
      mlp_eval(k, t, yy.data(), dy.data(), rows, w);
      mlp_vjp(k, t, yy.data(), yy.data() + n, dy.data() + n, dy.data() + 2 * n, rows, w);
      dy.tail(n + P) *= -1.0f;
    };
    std::vector<std::int64_t> segments{n, n};
    for (std::size_t i = 1; i < self.parents.size(); ++i)
      segments.push_back(self.parents[i]->value.numel());
    OdeCounts c;
    solve_flat(field, aug, o.t1, o.t0, o, std::move(segments), c);
    st->backward_evals = c.evals;
    st->backward_steps = c.steps;
    Node& h0n = *self.parents[0];
    if (h0n.requires_grad) Eigen::Map<Vec>(grad_of(h0n).data(), n) += aug.segment(n, n);
    for (std::size_t i = 1; i < self.parents.size(); ++i) {
      Node& p = *self.parents[i];
      if (!p.requires_grad) continue;
      const Eigen::Index m = p.value.numel();
      Eigen::Map<Vec>(grad_of(p).data(), m) += aug.segment(2 * n + k.offsets[i - 1], m);
    }
  });
}

}  // namespace

// ---- names and validation ----

OdeActivation ode_activation_from_name(const std::string& name) {
  if (name == "tanh") return OdeActivation::Tanh;
  if (name == "softplus") return OdeActivation::Softplus;
  if (name == "silu") return OdeActivation::Silu;
  if (name == "sigmoid") return OdeActivation::Sigmoid;
  bad("ode activation", "unknown '" + name + "' (allowed: tanh, softplus, silu, sigmoid)");
}
const char* ode_activation_name(OdeActivation a) {
  switch (a) {
    case OdeActivation::Tanh:
      return "tanh";
    case OdeActivation::Softplus:
      return "softplus";
    case OdeActivation::Silu:
      return "silu";
    case OdeActivation::Sigmoid:
      return "sigmoid";
  }
  return "?";
}
OdeSolver ode_solver_from_name(const std::string& name) {
  if (name == "rk4") return OdeSolver::Rk4;
  if (name == "dopri5") return OdeSolver::Dopri5;
  bad("ode solver", "unknown '" + name + "' (allowed: rk4, dopri5)");
}
OdeGradient ode_gradient_from_name(const std::string& name) {
  if (name == "backprop") return OdeGradient::Backprop;
  if (name == "adjoint") return OdeGradient::Adjoint;
  bad("ode gradient", "unknown '" + name + "' (allowed: backprop, adjoint)");
}

void OdeFuncOptions::validate() const {
  const std::string w = "ode func";
  if (dim < 1) bad(w, "dim must be >= 1, got " + std::to_string(dim));
  if (hidden < 1) bad(w, "hidden must be >= 1, got " + std::to_string(hidden));
  if (layers < 1 || layers > 3) bad(w, "layers must be in [1, 3], got " + std::to_string(layers));
}

void OdeSolveOptions::validate() const {
  const std::string w = "odeint";
  if (!std::isfinite(t0) || !std::isfinite(t1) || !(t1 > t0))
    bad(w, "t1 must be finite and > t0, got t0 " + num(t0) + ", t1 " + num(t1));
  if (steps < 1) bad(w, "steps must be >= 1, got " + std::to_string(steps));
  if (!(rtol > 0) || !std::isfinite(rtol)) bad(w, "rtol must be > 0, got " + num(rtol));
  if (!(atol > 0) || !std::isfinite(atol)) bad(w, "atol must be > 0, got " + num(atol));
  if (max_steps < 1) bad(w, "max_steps must be >= 1, got " + std::to_string(max_steps));
  if (!(safety > 0 && safety <= 1)) bad(w, "safety must be in (0, 1], got " + num(safety));
  if (!(ifactor >= 1) || !std::isfinite(ifactor))
    bad(w, "ifactor must be >= 1, got " + num(ifactor));
  if (!(dfactor > 0 && dfactor <= 1)) bad(w, "dfactor must be in (0, 1], got " + num(dfactor));
}

// ---- OdeFunc ----

OdeFunc::OdeFunc(const OdeFuncOptions& opt, std::mt19937_64& rng) : opt_(opt) {
  opt_.validate();
  const int D = opt_.dim, H = opt_.hidden, L = opt_.layers;
  auto uniform = [&](const Shape& s, double bound) {
    std::uniform_real_distribution<float> d(static_cast<float>(-bound), static_cast<float>(bound));
    Tensor t(s);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = d(rng);
    return t;
  };
  for (int l = 0; l <= L; ++l) {
    const int in = l == 0 ? D : H, out = l == L ? D : H;
    const double fan_in = in + (l == 0 && opt_.time_dependent ? 1 : 0);
    const double bound = (l == L ? 0.1 : 1.0) / std::sqrt(fan_in);
    weights_.push_back(parameter(uniform(Shape{out, in}, bound)));
    biases_.push_back(parameter(uniform(Shape{out}, bound)));
    params_.push_back(weights_.back());
    params_.push_back(biases_.back());
    if (l == 0 && opt_.time_dependent) {
      time_weight_ = parameter(uniform(Shape{H}, bound));
      params_.push_back(time_weight_);
    }
  }
}

OdeFunc::OdeFunc(const OdeFuncOptions& opt, std::vector<Var> params) : opt_(opt) {
  opt_.validate();
  const int D = opt_.dim, H = opt_.hidden, L = opt_.layers;
  const std::size_t expected = 2 * static_cast<std::size_t>(L + 1) + (opt_.time_dependent ? 1 : 0);
  if (params.size() != expected)
    bad("ode func", "expects " + std::to_string(expected) + " parameters, got " +
                        std::to_string(params.size()));
  std::size_t i = 0;
  auto take = [&](const Shape& s, const char* role) {
    const Var& v = params[i++];
    if (!v.defined() || v.shape() != s)
      bad("ode func", std::string("parameter ") + std::to_string(i - 1) + " (" + role +
                          ") must have shape " + s.str() +
                          (v.defined() ? ", got " + v.shape().str() : ", got undefined"));
    return v;
  };
  for (int l = 0; l <= L; ++l) {
    const int in = l == 0 ? D : H, out = l == L ? D : H;
    weights_.push_back(take(Shape{out, in}, "weight"));
    biases_.push_back(take(Shape{out}, "bias"));
    if (l == 0 && opt_.time_dependent) time_weight_ = take(Shape{H}, "time_weight");
  }
  params_ = std::move(params);
}

Var OdeFunc::forward(const Var& h, double t) const {
  Var b0 = biases_[0];
  if (opt_.time_dependent) b0 = add(b0, scale(time_weight_, static_cast<float>(t)));
  Var x = apply_ode_activation(linear(h, weights_[0], b0), opt_.activation);
  for (int l = 1; l < opt_.layers; ++l)
    x = apply_ode_activation(
        linear(x, weights_[static_cast<std::size_t>(l)], biases_[static_cast<std::size_t>(l)]),
        opt_.activation);
  const auto L = static_cast<std::size_t>(opt_.layers);
  return linear(x, weights_[L], biases_[L]);
}

void OdeFunc::append_named_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  for (int l = 0; l <= opt_.layers; ++l) {
    const auto li = static_cast<std::size_t>(l);
    out.push_back({prefix + "l" + std::to_string(l) + ".weight", weights_[li]});
    out.push_back({prefix + "l" + std::to_string(l) + ".bias", biases_[li]});
    if (l == 0 && opt_.time_dependent) out.push_back({prefix + "time_weight", time_weight_});
  }
}

double OdeFunc::macs_per_eval() const {
  const double D = opt_.dim, H = opt_.hidden;
  return 2 * D * H + (opt_.layers - 1) * H * H + (opt_.time_dependent ? H : 0);
}

// ---- NeuralOde and odeint ----

NeuralOde::NeuralOde(const OdeFuncOptions& f, const OdeSolveOptions& solve, std::mt19937_64& rng)
    : func_(f, rng), solve_(solve), stats_(std::make_shared<OdeStats>()) {
  solve_.validate();
}

Var NeuralOde::forward(const Var& h0) { return odeint(func_, h0, solve_, stats_); }

void NeuralOde::append_named_parameters(const std::string& prefix,
                                        std::vector<NamedParameter>& out) {
  func_.append_named_parameters(prefix + "func.", out);
}

Var odeint(const OdeFunc& f, const Var& h0, const OdeSolveOptions& opt,
           const std::shared_ptr<OdeStats>& stats) {
  opt.validate();
  if (!h0.defined()) bad("odeint", "h0 is undefined");
  if (h0.value().rank() != 2 || h0.dim(1) != f.options().dim)
    bad("odeint",
        "h0 must be [batch, " + std::to_string(f.options().dim) + "], got " + h0.shape().str());
  const std::shared_ptr<OdeStats> st = stats ? stats : std::make_shared<OdeStats>();
  bool tape = grad_enabled() && h0.requires_grad();
  for (const Var& p : f.parameters()) tape = tape || (grad_enabled() && p.requires_grad());
  if (opt.gradient == OdeGradient::Backprop && tape) {
    *st = OdeStats{};
    return opt.solver == OdeSolver::Rk4 ? rk4_tape(f, h0, opt, *st) : dopri5_tape(f, h0, opt, *st);
  }
  // The adjoint node; also the inference path of backprop mode (no tape is needed there).
  return adjoint_solve(f, h0, opt, st);
}

}  // namespace hwnas::nn
