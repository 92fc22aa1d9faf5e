#include "nn/kan.hpp"

#include <Eigen/Dense>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>

#include "nn/ops.hpp"

namespace hwnas::nn {

namespace {

// Basis values of one KanOptions grid at the points xs: [S, G+k] in double.
Eigen::MatrixXd basis_matrix(const std::vector<float>& xs, const KanOptions& o) {
  NoGradGuard ng;
  Tensor xt(Shape{static_cast<int>(xs.size()), 1});
  for (std::size_t s = 0; s < xs.size(); ++s) xt.data()[s] = xs[s];
  Tensor b = bspline_basis(constant(xt), o.grid_size, o.order, o.grid_lo, o.grid_hi).value();
  const int nb = o.grid_size + o.order;
  Eigen::MatrixXd m(static_cast<Eigen::Index>(xs.size()), nb);
  for (std::size_t s = 0; s < xs.size(); ++s)
    for (int j = 0; j < nb; ++j) m(static_cast<Eigen::Index>(s), j) = b.data()[s * nb + j];
  return m;
}

std::vector<float> linspace(float lo, float hi, int n) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i)
    v[static_cast<std::size_t>(i)] =
        n == 1 ? lo : lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(n - 1);
  return v;
}

double base_value(double x, Activation a) {
  switch (a) {
    case Activation::None:
      return x;
    case Activation::Relu:
      return x > 0 ? x : 0;
    case Activation::Silu:
      return x / (1 + std::exp(-x));
    case Activation::Tanh:
      return std::tanh(x);
    case Activation::Sigmoid:
      return 1 / (1 + std::exp(-x));
    case Activation::Gelu:
      return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
  }
  return x;
}

}  // namespace

void KanOptions::validate() const {
  if (grid_size < 1)
    throw std::invalid_argument("KanOptions.grid_size = " + std::to_string(grid_size) +
                                ", must be >= 1");
  if (order < 0 || order > 10)
    throw std::invalid_argument("KanOptions.order = " + std::to_string(order) +
                                ", must be in [0, 10]");
  if (!(grid_lo < grid_hi))
    throw std::invalid_argument("KanOptions.grid_lo/grid_hi = [" + std::to_string(grid_lo) + ", " +
                                std::to_string(grid_hi) + "], need grid_lo < grid_hi");
  if (!(noise_scale >= 0))
    throw std::invalid_argument("KanOptions.noise_scale = " + std::to_string(noise_scale) +
                                ", must be >= 0");
}

KanLinear::KanLinear(int in, int out, const KanOptions& opt, std::mt19937_64& rng)
    : in_(in), out_(out), opt_(opt) {
  if (in < 1 || out < 1)
    throw std::invalid_argument("KanLinear: in = " + std::to_string(in) +
                                ", out = " + std::to_string(out) + ", both must be >= 1");
  opt_.validate();
  const float bound = 1.0f / std::sqrt(static_cast<float>(in));
  std::uniform_real_distribution<float> ub(-bound, bound);
  Tensor wb(Shape{out, in});
  for (std::int64_t i = 0; i < wb.numel(); ++i) wb.data()[i] = ub(rng);
  // Small random curves: the spline branch starts near zero and the base branch carries the
  // signal, as in pykan/efficient-KAN (which fit the coefficients to such noise).
  const float noise = opt_.noise_scale / static_cast<float>(opt_.grid_size);
  std::uniform_real_distribution<float> un(-0.5f * noise, 0.5f * noise);
  Tensor ws(Shape{out, in * bases()});
  for (std::int64_t i = 0; i < ws.numel(); ++i) ws.data()[i] = un(rng);
  base_weight = parameter(std::move(wb));
  spline_weight = parameter(std::move(ws));
  if (opt_.spline_scale) spline_scaler = parameter(Tensor(Shape{out, in}, bound));
}

Var KanLinear::effective_spline_weight() const {
  if (!spline_scaler.defined()) return spline_weight;
  Var w = mul(reshape(spline_weight, Shape{out_, in_, bases()}),
              reshape(spline_scaler, Shape{out_, in_, 1}));
  return reshape(w, Shape{out_, in_ * bases()});
}

Var KanLinear::forward(const Var& x) {
  return forward_with(x, base_weight, effective_spline_weight());
}

Var KanLinear::forward_with(const Var& x, const Var& base_w, const Var& spline_w) const {
  const Shape& s = x.shape();
  if (s.rank() < 1 || s.back() != in_)
    throw std::invalid_argument(
        "KanLinear: input's last dim must be in_features = " + std::to_string(in_) +
        ", got shape of rank " + std::to_string(s.rank()) +
        (s.rank() ? " ending in " + std::to_string(s.back()) : std::string()));
  const int rows = static_cast<int>(s.numel() / in_);
  Var xf = reshape(x, Shape{rows, in_});
  Var base = linear(apply_activation(xf, opt_.base_activation), base_w, Var());
  Var basis = bspline_basis(xf, opt_.grid_size, opt_.order, opt_.grid_lo, opt_.grid_hi);
  Var spline = linear(reshape(basis, Shape{rows, in_ * bases()}), spline_w, Var());
  std::vector<int> dims = s.to_vector();
  dims.back() = out_;
  return reshape(add(base, spline), Shape(dims));
}

Var KanLinear::edge_activations(const Var& x) const {
  if (x.shape().rank() != 2 || x.shape()[1] != in_)
    throw std::invalid_argument("KanLinear::edge_activations: x must be [N, " +
                                std::to_string(in_) + "]");
  const int n = x.shape()[0];
  Var base = mul(reshape(apply_activation(x, opt_.base_activation), Shape{n, 1, in_}),
                 reshape(base_weight, Shape{1, out_, in_}));
  Var basis = reshape(bspline_basis(x, opt_.grid_size, opt_.order, opt_.grid_lo, opt_.grid_hi),
                      Shape{n, 1, in_, bases()});
  Var spline =
      sum_last(mul(basis, reshape(effective_spline_weight(), Shape{1, out_, in_, bases()})));
  return add(base, spline);
}

Var KanLinear::regularization(const Var& x, float lambda_l1, float lambda_entropy) const {
  Var mag = mean_dim(abs(edge_activations(x)), 0);  // [out, in]
  Var total = sum(mag);
  Var p = div(mag, reshape(total, Shape{1, 1}));
  // The tiny offset keeps 0 log 0 finite for an edge that is exactly zero.
  Var entropy = scale(sum(mul(p, log(add_scalar(p, 1e-12f)))), -1.0f);
  return add(scale(total, lambda_l1), scale(entropy, lambda_entropy));
}

void KanLinear::extend_grid(int new_grid_size) {
  if (new_grid_size < 1)
    throw std::invalid_argument("KanLinear::extend_grid: new_grid_size = " +
                                std::to_string(new_grid_size) + ", must be >= 1");
  KanOptions next = opt_;
  next.grid_size = new_grid_size;
  const int nb_old = bases(), nb_new = new_grid_size + opt_.order;
  // Every edge shares the grid, so one transfer matrix T [nb_new, nb_old] (least squares of the
  // new basis against the old one on dense in-range samples) maps all coefficient vectors.
  const auto xs = linspace(opt_.grid_lo, opt_.grid_hi, 8 * (nb_new + nb_old) + 64);
  const Eigen::MatrixXd a_old = basis_matrix(xs, opt_), a_new = basis_matrix(xs, next);
  const Eigen::MatrixXd t = a_new.colPivHouseholderQr().solve(a_old);
  Tensor ws(Shape{out_, in_ * nb_new});
  const float* old = spline_weight.value().data();
  for (int e = 0; e < out_ * in_; ++e) {
    Eigen::VectorXd c(nb_old);
    for (int m = 0; m < nb_old; ++m) c(m) = old[e * nb_old + m];
    Eigen::VectorXd cn = t * c;
    for (int m = 0; m < nb_new; ++m) ws.data()[e * nb_new + m] = static_cast<float>(cn(m));
  }
  spline_weight.value() = std::move(ws);
  spline_weight.grad() = Tensor();
  opt_ = next;
}

std::vector<KanEdgeCurve> KanLinear::edge_curves(int samples) const {
  if (samples < 2)
    throw std::invalid_argument("KanLinear::edge_curves: samples = " + std::to_string(samples) +
                                ", must be >= 2");
  const auto xs = linspace(opt_.grid_lo, opt_.grid_hi, samples);
  const Eigen::MatrixXd b = basis_matrix(xs, opt_);
  Tensor w;
  {
    NoGradGuard ng;
    w = effective_spline_weight().value();
  }
  const int nb = bases();
  std::vector<KanEdgeCurve> out;
  for (int o = 0; o < out_; ++o)
    for (int i = 0; i < in_; ++i) {
      KanEdgeCurve c{o, i, xs, std::vector<float>(xs.size())};
      const float wb = base_weight.value().data()[o * in_ + i];
      const float* coef = w.data() + (static_cast<std::int64_t>(o) * in_ + i) * nb;
      for (std::size_t s = 0; s < xs.size(); ++s) {
        double v = wb * base_value(xs[s], opt_.base_activation);
        for (int m = 0; m < nb; ++m) v += coef[m] * b(static_cast<Eigen::Index>(s), m);
        c.y[s] = static_cast<float>(v);
      }
      out.push_back(std::move(c));
    }
  return out;
}

void KanLinear::append_named_parameters(const std::string& prefix,
                                        std::vector<NamedParameter>& out) {
  out.push_back({prefix + "base_weight", base_weight});
  out.push_back({prefix + "spline_weight", spline_weight});
  if (spline_scaler.defined()) out.push_back({prefix + "spline_scaler", spline_scaler});
}

// ---- symbolic fitting ----

namespace {

struct LibraryFn {
  const char* name;
  double (*f)(double);
};

const LibraryFn kLibrary[] = {
    {"x", [](double z) { return z; }},
    {"x^2", [](double z) { return z * z; }},
    {"x^3", [](double z) { return z * z * z; }},
    {"exp", [](double z) { return std::exp(z); }},
    {"sin", [](double z) { return std::sin(z); }},
    {"tanh", [](double z) { return std::tanh(z); }},
    {"log", [](double z) { return std::log(std::max(std::fabs(z), 1e-4)); }},
};

// Linear least squares y ~ a z + d for fixed (b, c); returns R^2 (or -inf if z is constant).
double affine_fit(const LibraryFn& fn, double b, double c, const std::vector<double>& x,
                  const std::vector<double>& y, double ybar, double syy, double& a, double& d) {
  const std::size_t n = x.size();
  double zs = 0;
  thread_local std::vector<double> z;
  z.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    z[i] = fn.f(b * x[i] + c);
    if (!std::isfinite(z[i])) return -std::numeric_limits<double>::infinity();
    zs += z[i];
  }
  const double zbar = zs / static_cast<double>(n);
  double szz = 0, szy = 0;
  for (std::size_t i = 0; i < n; ++i) {
    szz += (z[i] - zbar) * (z[i] - zbar);
    szy += (z[i] - zbar) * (y[i] - ybar);
  }
  if (!(szz > 1e-12 * static_cast<double>(n))) return -std::numeric_limits<double>::infinity();
  a = szy / szz;
  d = ybar - a * zbar;
  if (syy <= 0) return 1.0;
  return 1.0 - (syy - a * szy) / syy;
}

}  // namespace

SymbolicFit fit_symbolic(const std::vector<float>& xf, const std::vector<float>& yf,
                         std::vector<SymbolicFit>* all) {
  if (xf.size() != yf.size() || xf.size() < 3)
    throw std::invalid_argument(
        "fit_symbolic: need equally many x and y samples, at least 3 (got " +
        std::to_string(xf.size()) + " and " + std::to_string(yf.size()) + ")");
  std::vector<double> x(xf.begin(), xf.end()), y(yf.begin(), yf.end());
  double ybar = 0;
  for (double v : y) ybar += v;
  ybar /= static_cast<double>(y.size());
  double syy = 0;
  for (double v : y) syy += (v - ybar) * (v - ybar);
  SymbolicFit best;
  best.r2 = -std::numeric_limits<double>::infinity();
  if (all) all->clear();
  for (const auto& fn : kLibrary) {
    SymbolicFit f;
    f.name = fn.name;
    f.r2 = -std::numeric_limits<double>::infinity();
    // Coarse-to-fine: a 41 x 41 grid of step 0.5 over [-10, 10]^2, then two zooms around the
    // best point with a tenth of the step each.
    double cb = 0, cc = 0, half = 10, steps = 20;
    for (int round = 0; round < 3; ++round) {
      const double step = half / steps;
      const double b0 = cb, c0 = cc;
      for (int ib = -static_cast<int>(steps); ib <= steps; ++ib)
        for (int ic = -static_cast<int>(steps); ic <= steps; ++ic) {
          const double b = b0 + ib * step, c = c0 + ic * step;
          double a = 0, d = 0;
          const double r2 = affine_fit(fn, b, c, x, y, ybar, syy, a, d);
          if (r2 > f.r2) f = {fn.name, a, b, c, d, r2};
        }
      cb = f.b;
      cc = f.c;
      half = step;
      steps = 10;
    }
    if (all) all->push_back(f);
    if (f.r2 > best.r2) best = f;
  }
  return best;
}

}  // namespace hwnas::nn
