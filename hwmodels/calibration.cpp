#include "hwmodels/calibration.hpp"

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

// Weighted NNLS with a ridge towards `prior`:
//   min sum_i ((x_i . th + F_i - y_i) / y_i)^2 + lambda * sum_j D_j (th_j - prior_j)^2
// D_j = mean weighted square of column j (so lambda is scale free); th_j >= lo_j.
// Columns are normalised internally; solved by projected coordinate descent (deterministic).
std::vector<double> fit_nnls(const std::vector<std::vector<double>>& X,
                             const std::vector<double>& y, const std::vector<double>& fixed,
                             const std::vector<double>& prior, const std::vector<double>& lo,
                             double lambda) {
  const std::size_t p = prior.size(), n = y.size();
  std::vector<double> A(p * p, 0.0), bv(p, 0.0), norm(p, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t a = 0; a < p; ++a) norm[a] += X[i][a] * X[i][a] / (y[i] * y[i]);
  for (auto& v : norm) v = v > 0 ? std::sqrt(v / double(n)) : 1.0;  // RMS of weighted column
  for (std::size_t i = 0; i < n; ++i) {
    const double wgt = 1.0 / (y[i] * y[i]);
    for (std::size_t a = 0; a < p; ++a) {
      const double xa = X[i][a] / norm[a];
      bv[a] += wgt * xa * (y[i] - fixed[i]);
      for (std::size_t b = 0; b < p; ++b) A[a * p + b] += wgt * xa * X[i][b] / norm[b];
    }
  }
  // In normalised units every column has D_j = 1 (or 0 for an all-zero column).
  std::vector<double> pr(p), lb(p), th(p);
  for (std::size_t a = 0; a < p; ++a) {
    pr[a] = prior[a] * norm[a];
    lb[a] = lo[a] * norm[a];
    const double lam = (lambda + 1e-9) * double(n);
    A[a * p + a] += lam;
    bv[a] += lam * pr[a];
    th[a] = std::max(lb[a], pr[a]);
  }
  for (int sweep = 0; sweep < 20000; ++sweep) {
    double change = 0;
    for (std::size_t a = 0; a < p; ++a) {
      double s = bv[a];
      for (std::size_t b = 0; b < p; ++b)
        if (b != a) s -= A[a * p + b] * th[b];
      const double nv = std::max(lb[a], s / A[a * p + a]);
      change = std::max(change, std::abs(nv - th[a]));
      th[a] = nv;
    }
    if (change < 1e-13) break;
  }
  for (std::size_t a = 0; a < p; ++a) th[a] /= norm[a];
  return th;
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

FitQuality fit_quality(const std::vector<double>& pred, const std::vector<double>& y) {
  FitQuality q;
  q.rows = y.size();
  if (y.empty()) return q;
  q.spearman = spearman_rho(pred, y);
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
  return {{"rows", rows}, {"spearman", spearman}, {"within_10pct", within10}, {"mape", mape}};
}

nlohmann::json CalibrationResult::report() const {
  return {{"train_rows", train_rows.size()},
          {"heldout_rows", heldout_rows.size()},
          {"train", {{"before", train_before.to_json()}, {"after", train_after.to_json()}}},
          {"heldout", {{"before", heldout_before.to_json()}, {"after", heldout_after.to_json()}}}};
}

CalibrationResult calibrate(const nlohmann::json& base_desc, const std::vector<Measurement>& rows,
                            const CalibrationOptions& opt) {
  if (rows.size() < 4)
    throw std::invalid_argument("calibration needs at least 4 measured rows (got " +
                                std::to_string(rows.size()) + ")");
  if (!(opt.holdout_fraction >= 0 && opt.holdout_fraction < 1))
    throw std::invalid_argument("calibration: holdout fraction must be in [0, 1)");
  auto as_given = make_device(base_desc);
  nlohmann::json raw_desc = base_desc;
  raw_desc.erase("calibration");
  raw_desc.erase("calibration_report");
  auto raw = make_device(raw_desc);
  if (auto* b = dynamic_cast<const DeviceBase*>(raw.get()); !b || !b->calibratable())
    throw std::invalid_argument("device '" + raw->name() + "' (family '" + raw->family() +
                                "') cannot be calibrated: its latency is not a sum of per-node "
                                "analytic terms");
  const bool fit_overhead = raw->family() != "lut";

  // Deterministic split: Fisher-Yates with our own index draw (std::shuffle is not portable).
  CalibrationResult res;
  std::vector<std::size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(opt.seed);
  for (std::size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
  std::size_t n_hold = static_cast<std::size_t>(std::lround(opt.holdout_fraction * rows.size()));
  if (opt.holdout_fraction > 0) n_hold = std::clamp<std::size_t>(n_hold, 1, rows.size() - 3);
  res.heldout_rows.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n_hold));
  res.train_rows.assign(order.begin() + static_cast<std::ptrdiff_t>(n_hold), order.end());
  std::sort(res.heldout_rows.begin(), res.heldout_rows.end());
  std::sort(res.train_rows.begin(), res.train_rows.end());

  const double batch = raw_desc.value("batch", 1);
  std::vector<Features> feats;
  feats.reserve(rows.size());
  const bool eager = raw_desc.value("fusion", std::string("fused")) == "eager";
  for (const auto& r : rows) feats.push_back(features(*raw, r.workload, batch, eager));

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
  const std::size_t n_scale = cols.size();
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
  auto row_x = [&](std::size_t i) {
    std::vector<double> x(p);
    for (std::size_t j = 0; j < p; ++j) x[j] = cols[j].value(feats[i]);
    return x;
  };
  // Prior: the base device rescaled by one global factor g (fitted first), so that a device
  // 10x faster or slower than the base is not pulled back to the base's absolute speed; the
  // workload terms have prior 0.
  double g = 1;
  {
    double sxy = 0, sxx = 0;
    for (auto i : res.train_rows) {
      double x = use_k ? feats[i].overhead_ms : 0.0;
      for (std::size_t j = 0; j < n_scale; ++j) x += feats[i].body[cols[j].cat];
      const double y = rows[i].latency_ms, wgt = 1.0 / (y * y);
      sxy += wgt * x * (y - feats[i].fixed_ms);
      sxx += wgt * x * x;
    }
    if (sxx > 0 && sxy > 0) g = sxy / sxx;
  }
  std::vector<double> prior(p, 0.0), lo(p, 0.0);
  for (std::size_t j = 0; j < p; ++j) {
    if (cols[j].term == Term::Scale) {
      prior[j] = g;
      lo[j] = 1e-6;  // scales must stay positive
    } else if (cols[j].term == Term::PerKernel) {
      prior[j] = g * o_sum / k_sum;  // ms per kernel
    }
  }
  auto solve = [&](const std::vector<std::size_t>& idx, double lambda) {
    std::vector<std::vector<double>> X;
    std::vector<double> y, fx;
    for (auto i : idx) {
      X.push_back(row_x(i));
      y.push_back(rows[i].latency_ms);
      fx.push_back(feats[i].fixed_ms);
    }
    return fit_nnls(X, y, fx, prior, lo, lambda);
  };
  auto predict = [&](const std::vector<double>& th, std::size_t i) {
    double v = feats[i].fixed_ms;
    auto x = row_x(i);
    for (std::size_t j = 0; j < p; ++j) v += th[j] * x[j];
    return v;
  };
  // Ridge strength: given, or chosen by k-fold cross-validation (mean absolute relative error)
  // on the training rows from a fixed grid; folds by position, so deterministic.
  double lambda = opt.ridge;
  if (lambda < 0) {
    const std::vector<double> grid = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0};
    const std::size_t k = std::min<std::size_t>(5, res.train_rows.size());
    double best = std::numeric_limits<double>::infinity();
    lambda = grid.back();
    for (double lam : grid) {
      double err = 0;
      for (std::size_t fold = 0; fold < k; ++fold) {
        std::vector<std::size_t> tr, va;
        for (std::size_t q = 0; q < res.train_rows.size(); ++q)
          (q % k == fold ? va : tr).push_back(res.train_rows[q]);
        if (tr.empty() || va.empty()) continue;
        auto th = solve(tr, lam);
        for (auto i : va) err += std::abs(predict(th, i) - rows[i].latency_ms) / rows[i].latency_ms;
      }
      if (err < best * (1 - 1e-9)) {  // ties go to the smaller ridge
        best = err;
        lambda = lam;
      }
    }
  }
  std::vector<double> th = solve(res.train_rows, lambda);

  nlohmann::json tuned = raw_desc;
  nlohmann::json cal = {{"category_scale", nlohmann::json::object()}};
  for (std::size_t j = 0; j < p; ++j) {
    const char* cat = op_category_name(static_cast<OpCategory>(cols[j].cat));
    switch (cols[j].term) {
      case Term::Scale:
        cal["category_scale"][cat] = th[j];
        break;
      case Term::PerKernel:
        cal["per_kernel_s"] = th[j] * 1e-3;
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
  tuned["calibration"] = cal;
  auto tuned_dev = make_device(tuned);

  // Energy: one multiplicative factor (geometric mean of measured / predicted) on train rows.
  double log_sum = 0;
  std::size_t n_e = 0;
  for (auto i : res.train_rows) {
    if (!rows[i].energy_mj) continue;
    const double pe = tuned_dev->estimate_total(rows[i].workload).energy_mj;
    if (pe > 0) {
      log_sum += std::log(*rows[i].energy_mj / pe);
      ++n_e;
    }
  }
  if (n_e > 0) {
    tuned["calibration"]["energy_scale"] = std::exp(log_sum / n_e);
    tuned_dev = make_device(tuned);
  }

  res.predicted_before.resize(rows.size());
  res.predicted_after.resize(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    res.predicted_before[i] = as_given->estimate_total(rows[i].workload).latency_ms;
    res.predicted_after[i] = tuned_dev->estimate_total(rows[i].workload).latency_ms;
  }
  auto quality = [&](const std::vector<double>& pred, const std::vector<std::size_t>& idx) {
    std::vector<double> pr, y;
    for (auto i : idx) {
      pr.push_back(pred[i]);
      y.push_back(rows[i].latency_ms);
    }
    return fit_quality(pr, y);
  };
  res.train_before = quality(res.predicted_before, res.train_rows);
  res.train_after = quality(res.predicted_after, res.train_rows);
  res.heldout_before = quality(res.predicted_before, res.heldout_rows);
  res.heldout_after = quality(res.predicted_after, res.heldout_rows);
  res.ridge = lambda;
  tuned["name"] = raw_desc.value("name", std::string("device")) + "_calibrated";
  tuned["calibration_report"] = res.report();
  tuned["calibration_report"]["seed"] = opt.seed;
  tuned["calibration_report"]["ridge"] = lambda;
  tuned["calibration_report"]["ridge_chosen_by"] =
      opt.ridge < 0 ? "5-fold cross-validation" : "given";
  res.tuned = std::move(tuned);
  return res;
}

}  // namespace hwnas::hw
