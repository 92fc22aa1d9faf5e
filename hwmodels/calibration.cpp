#include "hwmodels/calibration.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

#include "hwmodels/device_base.hpp"

namespace hwnas::hw {

namespace {

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char ch = line[i];
    if (quoted) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cur += '"';
        ++i;
      } else if (ch == '"') {
        quoted = false;
      } else {
        cur += ch;
      }
    } else if (ch == '"') {
      quoted = true;
    } else if (ch == ',') {
      out.push_back(cur);
      cur.clear();
    } else if (ch != '\r') {
      cur += ch;
    }
  }
  out.push_back(cur);
  for (auto& s : out) {  // trim spaces
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

// Per-row features of the linear model, from the uncalibrated base device.
struct Features {
  std::array<double, kNumCategories> body{};  // ms
  double kernels = 0;
  double overhead_ms = 0;  // base per-kernel overhead total
  double fixed_ms = 0;     // fallback nodes
};

Features features(const Device& base, const Workload& w) {
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
    f.body[cat_index(w.nodes[i].category)] += (nc.latency_s - nc.overhead_s) * 1e3;
    f.kernels += w.nodes[i].kernels;
    f.overhead_ms += nc.overhead_s * 1e3;
  }
  return f;
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
  header = split_csv_line(line);
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
    auto f = split_csv_line(line);
    if (f.size() < header.size())
      throw std::invalid_argument(path + ":" + std::to_string(lineno) + ": expected " +
                                  std::to_string(header.size()) + " columns, got " +
                                  std::to_string(f.size()));
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

  std::vector<Features> feats;
  feats.reserve(rows.size());
  for (const auto& r : rows) feats.push_back(features(*raw, r.workload));

  // Unknowns: one scale per category present in the training rows, then the per-kernel term.
  std::vector<std::size_t> cats;
  for (std::size_t c = 0; c < kNumCategories; ++c)
    for (auto i : res.train_rows)
      if (feats[i].body[c] > 0) {
        cats.push_back(c);
        break;
      }
  double k_sum = 0, o_sum = 0;
  for (auto i : res.train_rows) {
    k_sum += feats[i].kernels;
    o_sum += feats[i].overhead_ms;
  }
  const bool use_k = fit_overhead && k_sum > 0;
  const std::size_t p = cats.size() + (use_k ? 1 : 0);
  std::vector<double> prior(p, 1.0);
  if (use_k) prior[p - 1] = o_sum / k_sum;  // ms per kernel
  auto row_x = [&](std::size_t i) {
    std::vector<double> x(p);
    for (std::size_t j = 0; j < cats.size(); ++j) x[j] = feats[i].body[cats[j]];
    if (use_k) x[p - 1] = feats[i].kernels;
    return x;
  };
  // Normal equations of the relative-error objective, weights 1/y^2.
  std::vector<double> A(p * p, 0.0), bv(p, 0.0), scale2(p, 0.0);
  for (auto i : res.train_rows) {
    const double y = rows[i].latency_ms, wgt = 1.0 / (y * y);
    auto x = row_x(i);
    for (std::size_t a = 0; a < p; ++a) {
      bv[a] += wgt * x[a] * (y - feats[i].fixed_ms);
      for (std::size_t b = 0; b < p; ++b) A[a * p + b] += wgt * x[a] * x[b];
    }
  }
  for (std::size_t a = 0; a < p; ++a) {
    // Ridge towards the prior, scaled by the feature's own magnitude.
    const double lam = opt.ridge * std::max(A[a * p + a], 1e-30);
    A[a * p + a] += lam;
    bv[a] += lam * prior[a];
  }
  // Projected coordinate descent (NNLS on a small, positive-definite system).
  std::vector<double> th = prior;
  for (int sweep = 0; sweep < 2000; ++sweep) {
    double change = 0;
    for (std::size_t a = 0; a < p; ++a) {
      double s = bv[a];
      for (std::size_t b = 0; b < p; ++b)
        if (b != a) s -= A[a * p + b] * th[b];
      const double lo = a < cats.size() ? 1e-6 : 0.0;  // scales must stay positive
      const double nv = std::max(lo, s / A[a * p + a]);
      change = std::max(change, std::abs(nv - th[a]) / std::max(1e-12, std::abs(th[a])));
      th[a] = nv;
    }
    if (change < 1e-12) break;
  }

  nlohmann::json tuned = raw_desc;
  nlohmann::json cal = {{"category_scale", nlohmann::json::object()}};
  for (std::size_t j = 0; j < cats.size(); ++j)
    cal["category_scale"][op_category_name(static_cast<OpCategory>(cats[j]))] = th[j];
  if (use_k) cal["per_kernel_s"] = th[p - 1] * 1e-3;
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

  auto quality = [&](const Device& d, const std::vector<std::size_t>& idx) {
    std::vector<double> pr, y;
    for (auto i : idx) {
      pr.push_back(d.estimate_total(rows[i].workload).latency_ms);
      y.push_back(rows[i].latency_ms);
    }
    return fit_quality(pr, y);
  };
  res.train_before = quality(*as_given, res.train_rows);
  res.train_after = quality(*tuned_dev, res.train_rows);
  res.heldout_before = quality(*as_given, res.heldout_rows);
  res.heldout_after = quality(*tuned_dev, res.heldout_rows);
  tuned["name"] = raw_desc.value("name", std::string("device")) + "_calibrated";
  tuned["calibration_report"] = res.report();
  tuned["calibration_report"]["seed"] = opt.seed;
  res.tuned = std::move(tuned);
  return res;
}

}  // namespace hwnas::hw
