#include "hwmodels/calibration.hpp"

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

#include "hwmodels/csv.hpp"
#include "hwmodels/device_base.hpp"

namespace hwnas::hw {

namespace {

// Calibration CSVs are hand-edited: fields are trimmed of surrounding spaces.
std::vector<std::string> split_trimmed(const std::string& line) {
  std::vector<std::string> out = split_csv_line(line);
  for (auto& s : out) {
    auto b = s.find_first_not_of(" \t");
    auto e = s.find_last_not_of(" \t");
    s = b == std::string::npos ? "" : s.substr(b, e - b + 1);
  }
  return out;
}

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<std::size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](auto a, auto b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < idx.size();) {
    std::size_t j = i;
    while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double avg = 0.5 * double(i + j) + 1;
    for (std::size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

// Per-row features of the linear model: from the uncalibrated base device (body, kernels) and
// from the workload itself (nodes, FLOPs, bytes; scaled by the device's batch like
// DeviceBase::add_linear_terms does).  Fallback nodes are excluded and kept fixed.
struct Features {
  std::array<double, kNumCategories> body{};   // ms
  std::array<double, kNumCategories> flops{};  // FLOPs
  std::array<double, kNumCategories> bytes{};  // bytes
  double kernels = 0;
  double nodes = 0;
  double pruned_params = 0, quantized_params = 0;  // per forward pass
  double overhead_ms = 0;                          // base per-kernel overhead total
  double fixed_ms = 0;                             // fallback nodes
};

Features features(const Device& base, const Workload& w, double batch, bool eager) {
  Features f;
  Cost c = base.estimate(w);
  if (c.nodes.size() != w.nodes.size())
    throw std::invalid_argument("device '" + base.name() +
                                "' does not give an index-aligned per-node breakdown");
  for (std::size_t i = 0; i < w.nodes.size(); ++i) {
    const NodeCost& nc = c.nodes[i];
    if (nc.bound.rfind("fallback", 0) == 0) {
      f.fixed_ms += nc.latency_s * 1e3;
      continue;
    }
    const NodeWorkload& n = w.nodes[i];
    const std::size_t ci = cat_index(n.category);
    f.body[ci] += (nc.latency_s - nc.overhead_s) * 1e3;
    f.flops[ci] += batch * n.flops();
    f.bytes[ci] += n.weight_bytes + batch * (n.input_bytes + n.output_bytes);
    f.kernels += n.kernels_for(eager);  // under the device's fusion rule
    f.nodes += 1;
    if (n.sparsity > 0) f.pruned_params += n.params;
    if (n.bits < 16) f.quantized_params += n.params;
    f.overhead_ms += nc.overhead_s * 1e3;
  }
  // A per-invocation cost outside the nodes (the Edge TPU's) stays fixed, per sample like the
  // node terms.
  if (const auto it = c.extra.find("invoke_overhead_ms"); it != c.extra.end())
    f.fixed_ms += it->get<double>();
  return f;
}

// One unknown of the linear model and how it is written to the "calibration" block.
enum class Term { Scale, PerKernel, PerNode, Flop, Byte, PrunedParam, QuantizedParam };
struct Column {
  Term term;
  std::size_t cat = 0;
  double value(const Features& f) const {  // feature value; coefficient units ms / unit
    switch (term) {
      case Term::Scale:
        return f.body[cat];
      case Term::PerKernel:
        return f.kernels;
      case Term::PerNode:
        return f.nodes;
      case Term::Flop:
        return f.flops[cat];
      case Term::Byte:
        return f.bytes[cat];
      case Term::PrunedParam:
        return f.pruned_params;
      case Term::QuantizedParam:
        return f.quantized_params;
    }
    return 0;
  }
};

// A linear model with a fixed part, fitted on a subset of rows:
//   pred_i = F_i + X_i . th,  th_j >= lo_j,  ridge towards prior_j.
struct LinearFit {
  std::vector<std::vector<double>> X;  // per row (all rows; fits take an index subset)
  std::vector<double> y, fixed;
  std::vector<double> prior, lo;
  // Multiplicative coefficients (scales; prior > 0): ridge on log(th / prior), so a term the
  // rows barely see costs as much to move 1000x as a term they see well, and stays put.
  std::vector<char> multiplicative;
  CalibrationLoss loss = CalibrationLoss::Log;

  std::size_t cols() const { return prior.size(); }
  double predict(const std::vector<double>& th, std::size_t i) const {
    double v = fixed[i];
    for (std::size_t j = 0; j < th.size(); ++j) v += th[j] * X[i][j];
    return v;
  }
  // The per-row loss the fit minimises (log: saturates; relative: the old 1/y^2 weighting).
  double row_error(double pred, double y) const {
    if (loss == CalibrationLoss::Relative) return (pred - y) / y;
    return pred > 0 ? std::log(pred / y) : 1e3;  // a non-positive prediction: hopeless
  }
};

struct Solved {
  std::vector<double> th;
  double condition = 0;             // of the normalised design at th, without the ridge
  double condition_with_ridge = 0;  // what the solver actually inverts
};

// min over th >= lo of  sum_{i in idx} e_i(th)^2 + lambda * n * sum_j R_j(th_j),
// e_i the row error.  Log loss: R_j = log(th_j / prior_j)^2 for multiplicative terms, else
// (D_j (th_j - prior_j))^2 with D_j = RMS of X_ij / y_i (the ridge in units of relative error,
// lambda scale free); solved by Gauss-Newton (linearising log pred around the current fit gives
// weights 1 / pred^2) with a halving line search, each step a non-negative least-squares problem
// solved by projected coordinate descent.  Relative loss (the old fit, for comparison): one
// weighted solve with the quadratic ridge on every term.  Deterministic.
// min 0.5 x'Ax - b'x subject to x >= lb, A (p x p, row-major) symmetric positive definite: the
// Lawson-Hanson active-set method on y = x - lb >= 0.  Exact in at most a few p steps, where
// coordinate descent crawls on the ill-conditioned designs calibration meets (condition 1e4+).
std::vector<double> bounded_qp(const std::vector<double>& A, const std::vector<double>& b,
                               const std::vector<double>& lb, std::size_t p) {
  if (p == 0) return {};
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Am(
      A.data(), p, p);
  Eigen::VectorXd c = Eigen::Map<const Eigen::VectorXd>(b.data(), p) -
                      Am * Eigen::Map<const Eigen::VectorXd>(lb.data(), p);
  const double tol = 1e-13 * (1 + c.cwiseAbs().maxCoeff());
  Eigen::VectorXd y = Eigen::VectorXd::Zero(p);
  std::vector<bool> free(p, false);
  // Solves the free block of A s = c with the bound variables at 0.
  auto solve_free = [&]() {
    std::vector<std::size_t> f;
    for (std::size_t a = 0; a < p; ++a)
      if (free[a]) f.push_back(a);
    Eigen::MatrixXd Af(f.size(), f.size());
    Eigen::VectorXd cf(f.size());
    for (std::size_t i = 0; i < f.size(); ++i) {
      cf[i] = c[f[i]];
      for (std::size_t j = 0; j < f.size(); ++j) Af(i, j) = Am(f[i], f[j]);
    }
    const Eigen::VectorXd sf = Af.ldlt().solve(cf);
    Eigen::VectorXd s = Eigen::VectorXd::Zero(p);
    for (std::size_t i = 0; i < f.size(); ++i) s[f[i]] = sf[i];
    return s;
  };
  for (std::size_t outer = 0; outer < 3 * p + 3; ++outer) {
    const Eigen::VectorXd grad = c - Am * y;  // negative gradient
    std::size_t enter = p;
    double best = tol;
    for (std::size_t a = 0; a < p; ++a)
      if (!free[a] && grad[a] > best) best = grad[a], enter = a;
    if (enter == p) break;  // KKT: every bound variable's gradient points into its bound
    free[enter] = true;
    for (std::size_t inner = 0; inner <= p; ++inner) {
      const Eigen::VectorXd s = solve_free();
      double alpha = 1;
      for (std::size_t a = 0; a < p; ++a)
        if (free[a] && s[a] <= 0) alpha = std::min(alpha, y[a] / (y[a] - s[a]));
      if (alpha >= 1) {
        y = s;
        break;
      }
      y += alpha * (s - y);
      for (std::size_t a = 0; a < p; ++a)
        if (free[a] && y[a] <= tol * 1e-3) free[a] = false, y[a] = 0;
    }
  }
  std::vector<double> x(p);
  for (std::size_t a = 0; a < p; ++a) x[a] = lb[a] + std::max(0.0, y[a]);
  return x;
}

Solved solve(const LinearFit& f, const std::vector<std::size_t>& idx, double lambda) {
  const std::size_t p = f.cols(), n = idx.size();
  std::vector<double> norm(p, 0.0);
  for (auto i : idx)
    for (std::size_t a = 0; a < p; ++a) norm[a] += std::pow(f.X[i][a] / f.y[i], 2);
  for (auto& v : norm) v = v > 0 ? std::sqrt(v / double(n)) : 1.0;
  const double lam = (lambda + 1e-9) * double(n);
  std::vector<double> pr(p), lb(p), phi(p);  // normalised units: th_j = phi_j / norm_j
  for (std::size_t a = 0; a < p; ++a) {
    pr[a] = f.prior[a] * norm[a];
    lb[a] = f.lo[a] * norm[a];
    phi[a] = std::max(lb[a], pr[a]);
  }
  auto theta = [&](const std::vector<double>& ph) {
    std::vector<double> th(p);
    for (std::size_t a = 0; a < p; ++a) th[a] = ph[a] / norm[a];
    return th;
  };
  const bool log_loss = f.loss == CalibrationLoss::Log;
  auto log_ridge = [&](std::size_t a) { return log_loss && f.multiplicative[a] && pr[a] > 0; };
  auto objective = [&](const std::vector<double>& ph) {
    const auto th = theta(ph);
    double o = 0;
    for (auto i : idx) o += std::pow(f.row_error(f.predict(th, i), f.y[i]), 2);
    for (std::size_t a = 0; a < p; ++a)
      o += lam * (log_ridge(a) ? std::pow(std::log(ph[a] / pr[a]), 2)
                               : (ph[a] - pr[a]) * (ph[a] - pr[a]));
    return o;
  };
  // The ridge as a quadratic around `at`: weight rw_a, target rt_a (the log ridge linearised).
  std::vector<double> rw(p), rt(p);
  auto ridge_terms = [&](const std::vector<double>& at) {
    for (std::size_t a = 0; a < p; ++a) {
      if (log_ridge(a)) {
        rw[a] = lam / (at[a] * at[a]);
        rt[a] = at[a] * (1 - std::log(at[a] / pr[a]));
      } else {
        rw[a] = lam;
        rt[a] = pr[a];
      }
    }
  };
  // Weighted least squares with the ridge, th >= lo: min sum w_i (x_i . phi - t_i)^2 + ridge.
  auto wls = [&](const std::vector<double>& w, const std::vector<double>& t,
                 std::vector<double>* normal, std::vector<double>* with_ridge) {
    std::vector<double> A(p * p, 0.0), bv(p, 0.0);
    for (std::size_t k = 0; k < n; ++k) {
      const auto& x = f.X[idx[k]];
      for (std::size_t a = 0; a < p; ++a) {
        const double xa = x[a] / norm[a];
        bv[a] += w[k] * xa * t[k];
        for (std::size_t b = 0; b < p; ++b) A[a * p + b] += w[k] * xa * x[b] / norm[b];
      }
    }
    if (normal) *normal = A;
    for (std::size_t a = 0; a < p; ++a) {
      A[a * p + a] += rw[a];
      bv[a] += rw[a] * rt[a];
    }
    if (with_ridge) *with_ridge = A;
    return bounded_qp(A, bv, lb, p);
  };
  std::vector<double> w(n), t(n), normal, with_ridge;
  auto linearise = [&](const std::vector<double>& ph) {
    const auto th = theta(ph);
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = idx[k];
      const double y = f.y[i];
      if (f.loss == CalibrationLoss::Relative) {
        w[k] = 1 / (y * y);
        t[k] = y - f.fixed[i];
      } else {
        const double pred = std::max(f.predict(th, i), 1e-12 * y);
        w[k] = 1 / (pred * pred);
        t[k] = pred * (1 + std::log(y / pred)) - f.fixed[i];
      }
    }
  };
  if (!log_loss) {
    linearise(phi);
    ridge_terms(phi);
    phi = wls(w, t, nullptr, nullptr);
  } else {
    double obj = objective(phi);
    for (int it = 0; it < 200; ++it) {
      linearise(phi);
      ridge_terms(phi);
      const auto cand = wls(w, t, nullptr, nullptr);
      // The Gauss-Newton step may overshoot where log is strongly curved: halve it until the
      // true objective drops (convex combinations of feasible points stay >= lo).
      std::vector<double> next(p);
      double step = 1, next_obj = obj;
      for (int h = 0; h < 40; ++h, step *= 0.5) {
        for (std::size_t a = 0; a < p; ++a) next[a] = phi[a] + step * (cand[a] - phi[a]);
        next_obj = objective(next);
        if (next_obj <= obj) break;
      }
      if (!(next_obj <= obj)) break;
      const bool done = obj - next_obj <= 1e-14 * (1 + obj);
      phi = next;
      obj = next_obj;
      if (done) break;
    }
  }
  // Condition of the (weighted, normalised) design at the solution: the square root of the
  // eigenvalue ratio of its normal matrix.
  linearise(phi);
  ridge_terms(phi);
  wls(w, t, &normal, &with_ridge);
  auto condition = [&](const std::vector<double>& m) {
    if (p == 0) return 1.0;
    Eigen::MatrixXd M(p, p);
    for (std::size_t a = 0; a < p; ++a)
      for (std::size_t b = 0; b < p; ++b) M(a, b) = m[a * p + b];
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(M, Eigen::EigenvaluesOnly);
    const double lo_ev = es.eigenvalues().minCoeff(), hi_ev = es.eigenvalues().maxCoeff();
    return lo_ev > hi_ev * 1e-15 ? std::sqrt(hi_ev / lo_ev)
                                 : std::numeric_limits<double>::infinity();
  };
  Solved out;
  out.th = theta(phi);
  out.condition = condition(normal);
  out.condition_with_ridge = condition(with_ridge);
  return out;
}

// One global factor G on the prior (min sum_i e_i(F_i + G s_i)^2 over G > 0, golden section on
// log G), so the ridge pulls towards the base's *relative* costs at the measured level.
double global_factor(const LinearFit& f, const std::vector<std::size_t>& idx,
                     const std::vector<double>& base_total) {
  auto err = [&](double u) {
    double e = 0;
    for (auto i : idx)
      e += std::pow(f.row_error(f.fixed[i] + std::exp(u) * base_total[i], f.y[i]), 2);
    return e;
  };
  double lo = -30, hi = 30;
  const double r = 0.5 * (std::sqrt(5.0) - 1);
  double c = hi - r * (hi - lo), d = lo + r * (hi - lo), fc = err(c), fd = err(d);
  for (int it = 0; it < 200; ++it) {
    if (fc < fd) {
      hi = d;
      d = c;
      fd = fc;
      c = hi - r * (hi - lo);
      fc = err(c);
    } else {
      lo = c;
      c = d;
      fc = fd;
      d = lo + r * (hi - lo);
      fd = err(d);
    }
  }
  return std::exp(0.5 * (lo + hi));
}

// Ridge strength: given, or chosen by k-fold cross-validation (mean absolute row error) on the
// training rows from a fixed grid; folds by position, so deterministic.
double choose_ridge(const LinearFit& f, const std::vector<std::size_t>& train, double given) {
  if (given >= 0) return given;
  const std::vector<double> grid = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0};
  const std::size_t k = std::min<std::size_t>(5, train.size());
  double best = std::numeric_limits<double>::infinity(), lambda = grid.back();
  for (double lam : grid) {
    double err = 0;
    for (std::size_t fold = 0; fold < k; ++fold) {
      std::vector<std::size_t> tr, va;
      for (std::size_t q = 0; q < train.size(); ++q) (q % k == fold ? va : tr).push_back(train[q]);
      if (tr.empty() || va.empty()) continue;
      const auto th = solve(f, tr, lam).th;
      for (auto i : va) err += std::abs(f.row_error(f.predict(th, i), f.y[i]));
    }
    if (err < best * (1 - 1e-9)) {  // ties go to the smaller ridge
      best = err;
      lambda = lam;
    }
  }
  return lambda;
}

// A fitted multiplicative coefficient outside [0.05, 20] means the base model is off by more
// than 20x for that term, or the rows cannot tell it apart from others.
void check_range(const std::string& what, double v, double condition,
                 std::vector<std::string>& warnings) {
  if (v >= 0.05 && v <= 20) return;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s = %.3g is outside [0.05, 20]: either the base model is more than 20x off for "
                "it, or these rows cannot tell it apart from the other terms (design condition "
                "%.3g); measure more varied architectures, or check the base preset",
                what.c_str(), v, condition);
  warnings.emplace_back(buf);
}

}  // namespace

std::vector<MeasurementRow> read_measurements_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("cannot open measurements file '" + path + "'");
  std::string line;
  int lineno = 0;
  std::vector<std::string> header;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") != std::string::npos) break;
  }
  header = split_trimmed(line);
  int ia = -1, il = -1, ie = -1;
  for (std::size_t i = 0; i < header.size(); ++i) {
    if (header[i] == "architecture") ia = int(i);
    if (header[i] == "latency_ms") il = int(i);
    if (header[i] == "energy_mj") ie = int(i);
  }
  if (ia < 0 || il < 0)
    throw std::invalid_argument(path + ":" + std::to_string(lineno) +
                                ": header must name columns 'architecture' and 'latency_ms' "
                                "(optional 'energy_mj')");
  auto number = [&](const std::string& s, const char* col, int ln) {
    try {
      std::size_t pos = 0;
      double v = std::stod(s, &pos);
      if (pos != s.size() || !(v > 0) || !std::isfinite(v)) throw std::invalid_argument("");
      return v;
    } catch (const std::exception&) {
      throw std::invalid_argument(path + ":" + std::to_string(ln) + ": column '" + col +
                                  "' must be a positive number (got '" + s + "')");
    }
  };
  std::vector<MeasurementRow> rows;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos || line[0] == '#') continue;
    auto f = split_trimmed(line);
    // More fields than the header names is an error too: usually an unquoted comma in a
    // field, which would shift every column after it.
    if (f.size() != header.size())
      throw std::invalid_argument(path + ":" + std::to_string(lineno) + ": expected " +
                                  std::to_string(header.size()) + " columns, got " +
                                  std::to_string(f.size()) + " (quote a field that holds a comma)");
    MeasurementRow r;
    r.line = lineno;
    r.architecture = f[ia];
    if (r.architecture.empty())
      throw std::invalid_argument(path + ":" + std::to_string(lineno) +
                                  ": column 'architecture' is empty");
    r.latency_ms = number(f[il], "latency_ms", lineno);
    if (ie >= 0 && !f[ie].empty()) r.energy_mj = number(f[ie], "energy_mj", lineno);
    rows.push_back(std::move(r));
  }
  return rows;
}

double spearman_rho(const std::vector<double>& a, const std::vector<double>& b) {
  const std::size_t n = a.size();
  if (n != b.size() || n < 2) return 0;
  auto ra = ranks(a), rb = ranks(b);
  const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n;
  const double mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0;
}

double kendall_tau(const std::vector<double>& a, const std::vector<double>& b) {
  const std::size_t n = a.size();
  if (n != b.size() || n < 2) return 0;
  double concordant = 0, discordant = 0, ties_a = 0, ties_b = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j) {
      const double da = a[i] - a[j], db = b[i] - b[j];
      if (da == 0 && db == 0) continue;  // tied in both: in neither denominator term
      if (da == 0) {
        ++ties_a;
      } else if (db == 0) {
        ++ties_b;
      } else {
        ((da > 0) == (db > 0) ? concordant : discordant) += 1;
      }
    }
  const double n_a = concordant + discordant + ties_b;  // pairs not tied in a
  const double n_b = concordant + discordant + ties_a;  // pairs not tied in b
  return n_a > 0 && n_b > 0 ? (concordant - discordant) / std::sqrt(n_a * n_b) : 0;
}

FitQuality fit_quality(const std::vector<double>& pred, const std::vector<double>& y) {
  FitQuality q;
  q.rows = y.size();
  if (y.empty()) return q;
  q.spearman = spearman_rho(pred, y);
  q.kendall = kendall_tau(pred, y);
  std::size_t ok = 0;
  double ape = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    const double rel = std::abs(pred[i] - y[i]) / y[i];
    ok += rel <= 0.10;
    ape += rel;
  }
  q.within10 = double(ok) / y.size();
  q.mape = ape / y.size();
  return q;
}

nlohmann::json FitQuality::to_json() const {
  return {{"rows", rows},
          {"spearman", spearman},
          {"kendall", kendall},
          {"within_10pct", within10},
          {"mape", mape}};
}

std::string CalibrationResult::heldout_regression() const {
  if (heldout_before.rows < 2 || heldout_after.spearman >= heldout_before.spearman) return "";
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "held-out Spearman rho got worse: %.4f uncalibrated -> %.4f calibrated on %zu rows",
                heldout_before.spearman, heldout_after.spearman, heldout_before.rows);
  return buf;
}

nlohmann::json CalibrationResult::report() const {
  // JSON has no infinity: an unidentifiable design is reported as null.
  auto finite = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  nlohmann::json j = {
      {"train_rows", train_rows.size()},
      {"heldout_rows", heldout_rows.size()},
      {"dropped_rows", dropped_rows.size()},
      {"train", {{"before", train_before.to_json()}, {"after", train_after.to_json()}}},
      {"heldout", {{"before", heldout_before.to_json()}, {"after", heldout_after.to_json()}}},
      {"design_condition", finite(condition)},
      {"design_condition_with_ridge", finite(condition_with_ridge)},
      {"category_scale_range", {min_scale, max_scale}},
      {"warnings", warnings}};
  if (energy_fitted)
    j["energy"] = {
        {"train",
         {{"before", energy_train_before.to_json()}, {"after", energy_train_after.to_json()}}},
        {"heldout",
         {{"before", energy_heldout_before.to_json()}, {"after", energy_heldout_after.to_json()}}},
        {"ridge", energy_ridge},
        {"design_condition", finite(energy_condition)}};
  return j;
}

CalibrationResult calibrate(const nlohmann::json& base_desc,
                            const std::vector<Measurement>& all_rows,
                            const CalibrationOptions& opt) {
  if (!(opt.holdout_fraction >= 0 && opt.holdout_fraction < 1))
    throw std::invalid_argument("calibration: holdout fraction must be in [0, 1)");
  if (!(opt.min_ms >= 0)) throw std::invalid_argument("calibration: min_ms must be >= 0");
  CalibrationResult res;
  // Rows under the floor are dropped, not down-weighted: their relative error is timer noise.
  std::vector<std::size_t> kept;  // indices into all_rows of the rows fitted and evaluated
  for (std::size_t i = 0; i < all_rows.size(); ++i)
    (all_rows[i].latency_ms >= opt.min_ms && all_rows[i].latency_ms > 0 ? kept : res.dropped_rows)
        .push_back(i);
  if (kept.size() < 4)
    throw std::invalid_argument(
        "calibration needs at least 4 measured rows at or above " + std::to_string(opt.min_ms) +
        " ms (got " + std::to_string(kept.size()) + " of " + std::to_string(all_rows.size()) + ")");
  auto as_given = make_device(base_desc);
  nlohmann::json raw_desc = base_desc;
  raw_desc.erase("calibration");
  raw_desc.erase("calibration_report");
  auto raw = make_device(raw_desc);
  const auto* raw_base = dynamic_cast<const DeviceBase*>(raw.get());
  if (!raw_base || !raw_base->calibratable())
    throw std::invalid_argument("device '" + raw->name() + "' (family '" + raw->family() +
                                "') cannot be calibrated: its latency is not a sum of per-node "
                                "analytic terms");
  const bool fit_overhead = raw->family() != "lut";

  // Deterministic split of the kept rows: Fisher-Yates with our own index draw (std::shuffle is
  // not portable).  Indices below are into all_rows.
  const std::size_t n_rows = kept.size();
  std::vector<std::size_t> order = kept;
  std::mt19937_64 rng(opt.seed);
  for (std::size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
  std::size_t n_hold = static_cast<std::size_t>(std::lround(opt.holdout_fraction * n_rows));
  if (opt.holdout_fraction > 0) n_hold = std::clamp<std::size_t>(n_hold, 1, n_rows - 3);
  res.heldout_rows.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n_hold));
  res.train_rows.assign(order.begin() + static_cast<std::ptrdiff_t>(n_hold), order.end());
  std::sort(res.heldout_rows.begin(), res.heldout_rows.end());
  std::sort(res.train_rows.begin(), res.train_rows.end());

  const double batch = raw_desc.value("batch", 1);
  const bool eager = raw_desc.value("fusion", std::string("fused")) == "eager";
  std::vector<Features> feats(all_rows.size());
  for (auto i : kept) feats[i] = features(*raw, all_rows[i].workload, batch, eager);

  // Unknowns: a scale per category present in the training rows, the per-kernel term, then
  // (opt.workload_terms) a per-node term and per-category per-FLOP and per-byte terms.
  std::vector<Column> cols;
  auto present = [&](const Column& c) {
    for (auto i : res.train_rows)
      if (c.value(feats[i]) > 0) return true;
    return false;
  };
  for (std::size_t c = 0; c < kNumCategories; ++c)
    if (Column col{Term::Scale, c}; present(col)) cols.push_back(col);
  double k_sum = 0, o_sum = 0;
  for (auto i : res.train_rows) {
    k_sum += feats[i].kernels;
    o_sum += feats[i].overhead_ms;
  }
  const bool use_k = fit_overhead && k_sum > 0;
  if (use_k) cols.push_back({Term::PerKernel});
  if (opt.workload_terms) {
    if (Column col{Term::PerNode}; present(col)) cols.push_back(col);
    if (Column col{Term::PrunedParam}; present(col)) cols.push_back(col);
    if (Column col{Term::QuantizedParam}; present(col)) cols.push_back(col);
    for (std::size_t c = 0; c < kNumCategories; ++c) {
      if (Column col{Term::Flop, c}; present(col)) cols.push_back(col);
      if (Column col{Term::Byte, c}; present(col)) cols.push_back(col);
    }
  }
  const std::size_t p = cols.size();
  LinearFit lat;
  lat.loss = opt.loss;
  lat.X.resize(all_rows.size());
  lat.y.resize(all_rows.size());
  lat.fixed.resize(all_rows.size());
  std::vector<double> base_total(all_rows.size(), 0.0);  // the prior's latency at G = 1
  for (auto i : kept) {
    lat.X[i].resize(p);
    for (std::size_t j = 0; j < p; ++j) lat.X[i][j] = cols[j].value(feats[i]);
    lat.y[i] = all_rows[i].latency_ms;
    lat.fixed[i] = feats[i].fixed_ms;
    base_total[i] = use_k ? feats[i].overhead_ms : 0.0;
    for (std::size_t j = 0; j < p; ++j)
      if (cols[j].term == Term::Scale) base_total[i] += feats[i].body[cols[j].cat];
  }
  const double g = global_factor(lat, res.train_rows, base_total);
  lat.prior.assign(p, 0.0);
  lat.lo.assign(p, 0.0);
  lat.multiplicative.assign(p, 0);
  for (std::size_t j = 0; j < p; ++j) {
    if (cols[j].term == Term::Scale) {
      lat.prior[j] = g;
      lat.lo[j] = 1e-6;  // scales must stay positive
      lat.multiplicative[j] = 1;
    } else if (cols[j].term == Term::PerKernel) {
      lat.prior[j] = g * o_sum / k_sum;  // ms per kernel
      lat.multiplicative[j] = o_sum > 0;
      lat.lo[j] = 1e-6 * lat.prior[j];
    }
  }
  const double lambda = choose_ridge(lat, res.train_rows, opt.ridge);
  const Solved fit = solve(lat, res.train_rows, lambda);
  const std::vector<double>& th = fit.th;
  res.condition = fit.condition;
  res.condition_with_ridge = fit.condition_with_ridge;

  nlohmann::json tuned = raw_desc;
  nlohmann::json cal = {{"category_scale", nlohmann::json::object()}};
  res.min_scale = std::numeric_limits<double>::infinity();
  res.max_scale = 0;
  for (std::size_t j = 0; j < p; ++j) {
    const char* cat = op_category_name(static_cast<OpCategory>(cols[j].cat));
    switch (cols[j].term) {
      case Term::Scale:
        cal["category_scale"][cat] = th[j];
        res.min_scale = std::min(res.min_scale, th[j]);
        res.max_scale = std::max(res.max_scale, th[j]);
        check_range(std::string("category_scale.") + cat, th[j], fit.condition, res.warnings);
        break;
      case Term::PerKernel:
        cal["per_kernel_s"] = th[j] * 1e-3;
        if (o_sum > 0)
          check_range("per_kernel_s / the base's per-kernel overhead", th[j] * k_sum / o_sum,
                      fit.condition, res.warnings);
        break;
      case Term::PerNode:
        cal["per_node_s"] = th[j] * 1e-3;
        break;
      case Term::Flop:
        cal["s_per_flop"][cat] = th[j] * 1e-3;
        break;
      case Term::Byte:
        cal["s_per_byte"][cat] = th[j] * 1e-3;
        break;
      case Term::PrunedParam:
        cal["s_per_pruned_param"] = th[j] * 1e-3;
        break;
      case Term::QuantizedParam:
        cal["s_per_quantized_param"] = th[j] * 1e-3;
        break;
    }
  }
  if (!std::isfinite(res.min_scale)) res.min_scale = 0;
  tuned["calibration"] = cal;
  auto tuned_dev = make_device(tuned);

  // Energy: static power x the calibrated latency stays; the dynamic energy (the rest, per
  // category, of the latency-calibrated device) gets one scale per category, fitted like
  // latency on the training rows that carry energy.
  std::vector<std::size_t> e_train, e_held;
  for (auto i : res.train_rows)
    if (all_rows[i].energy_mj) e_train.push_back(i);
  for (auto i : res.heldout_rows)
    if (all_rows[i].energy_mj) e_held.push_back(i);
  if (e_train.size() >= 2) {
    const double p_static = dynamic_cast<const DeviceBase&>(*tuned_dev).static_power_w();
    LinearFit en;
    en.loss = opt.loss;
    en.X.assign(all_rows.size(), std::vector<double>(kNumCategories, 0.0));
    en.y.assign(all_rows.size(), 0.0);
    en.fixed.assign(all_rows.size(), 0.0);
    for (auto i : kept) {
      if (!all_rows[i].energy_mj) continue;
      const Cost c = tuned_dev->estimate(all_rows[i].workload);
      double dyn_total = 0;
      for (std::size_t k = 0; k < c.nodes.size() && k < all_rows[i].workload.nodes.size(); ++k) {
        const NodeCost& nc = c.nodes[k];
        if (nc.bound.rfind("fallback", 0) == 0) continue;
        const double d = std::max(0.0, nc.energy_j - p_static * nc.latency_s) * 1e3;  // mJ
        en.X[i][cat_index(all_rows[i].workload.nodes[k].category)] += d;
        dyn_total += d;
      }
      en.y[i] = *all_rows[i].energy_mj;
      en.fixed[i] = c.energy_mj - dyn_total;  // static x latency, fallback nodes, transfers
    }
    std::vector<std::size_t> ecat;  // categories with dynamic energy in the training rows
    for (std::size_t c = 0; c < kNumCategories; ++c)
      for (auto i : e_train)
        if (en.X[i][c] > 0) {
          ecat.push_back(c);
          break;
        }
    if (!ecat.empty()) {
      for (auto& x : en.X) {
        std::vector<double> sel;
        for (auto c : ecat) sel.push_back(x[c]);
        x = std::move(sel);
      }
      std::vector<double> dyn_total(all_rows.size(), 0.0);
      for (auto i : e_train)
        for (double v : en.X[i]) dyn_total[i] += v;
      const double ge = global_factor(en, e_train, dyn_total);
      en.prior.assign(ecat.size(), ge);
      en.lo.assign(ecat.size(), 1e-6);
      en.multiplicative.assign(ecat.size(), 1);
      res.energy_ridge = choose_ridge(en, e_train, opt.ridge);
      const Solved efit = solve(en, e_train, res.energy_ridge);
      res.energy_condition = efit.condition;
      for (std::size_t j = 0; j < ecat.size(); ++j) {
        const char* cat = op_category_name(static_cast<OpCategory>(ecat[j]));
        tuned["calibration"]["dynamic_energy_scale"][cat] = efit.th[j];
        check_range(std::string("dynamic_energy_scale.") + cat, efit.th[j], efit.condition,
                    res.warnings);
      }
      tuned_dev = make_device(tuned);
      res.energy_fitted = true;
    }
  }

  res.predicted_before.assign(all_rows.size(), 0.0);
  res.predicted_after.assign(all_rows.size(), 0.0);
  std::vector<double> e_before(all_rows.size(), 0.0), e_after(all_rows.size(), 0.0);
  for (auto i : kept) {
    const Cost b = as_given->estimate_total(all_rows[i].workload);
    const Cost a = tuned_dev->estimate_total(all_rows[i].workload);
    res.predicted_before[i] = b.latency_ms;
    res.predicted_after[i] = a.latency_ms;
    e_before[i] = b.energy_mj;
    e_after[i] = a.energy_mj;
  }
  auto quality = [&](const std::vector<double>& pred, const std::vector<std::size_t>& idx,
                     bool energy) {
    std::vector<double> pr, y;
    for (auto i : idx) {
      pr.push_back(pred[i]);
      y.push_back(energy ? *all_rows[i].energy_mj : all_rows[i].latency_ms);
    }
    return fit_quality(pr, y);
  };
  res.train_before = quality(res.predicted_before, res.train_rows, false);
  res.train_after = quality(res.predicted_after, res.train_rows, false);
  res.heldout_before = quality(res.predicted_before, res.heldout_rows, false);
  res.heldout_after = quality(res.predicted_after, res.heldout_rows, false);
  if (res.energy_fitted) {
    res.energy_train_before = quality(e_before, e_train, true);
    res.energy_train_after = quality(e_after, e_train, true);
    res.energy_heldout_before = quality(e_before, e_held, true);
    res.energy_heldout_after = quality(e_after, e_held, true);
  }
  res.ridge = lambda;
  tuned["name"] = raw_desc.value("name", std::string("device")) + "_calibrated";
  tuned["calibration_report"] = res.report();
  tuned["calibration_report"]["seed"] = opt.seed;
  tuned["calibration_report"]["ridge"] = lambda;
  tuned["calibration_report"]["ridge_chosen_by"] =
      opt.ridge < 0 ? "5-fold cross-validation" : "given";
  tuned["calibration_report"]["loss"] = opt.loss == CalibrationLoss::Log ? "log" : "relative";
  tuned["calibration_report"]["min_ms"] = opt.min_ms;
  res.tuned = std::move(tuned);
  return res;
}

}  // namespace hwnas::hw
