#include "report/report_data.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

namespace hwnas::report {
namespace {

using nlohmann::json;

const std::set<std::string> kCostNames = {"latency_ms", "energy_mj", "memory_bytes"};

// "val_accuracy:max", "latency_ms@rpi4_a72:min" -> {"val_accuracy", "", true}.
struct Objective {
  std::string name, device;
  bool maximize = false;
};
Objective parse_objective(const std::string& s) {
  Objective o;
  std::string body = s;
  const auto colon = s.rfind(':');
  if (colon != std::string::npos) {
    body = s.substr(0, colon);
    o.maximize = s.substr(colon + 1) == "max";
  }
  const auto at = body.find('@');
  o.name = body.substr(0, at);
  if (at != std::string::npos) o.device = body.substr(at + 1);
  return o;
}

// NaN and infinities become null (JSON has no such numbers).
json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

double metric_of(const json& metrics, const std::string& name) {
  auto it = metrics.find(name);
  if (it == metrics.end() || !it->is_number()) return std::numeric_limits<double>::quiet_NaN();
  return it->get<double>();
}

double cost_field(const db::CostRecord& c, const std::string& name) {
  if (name == "latency_ms") return c.latency_ms;
  if (name == "energy_mj") return c.energy_mj;
  return c.memory_bytes;
}

}  // namespace

double hypervolume_2d(std::vector<std::pair<double, double>> points, double metric_ref,
                      double cost_ref) {
  // Sweep by cost ascending; each point adds the strip between its cost and the next better
  // metric seen so far.
  std::erase_if(points, [&](const auto& p) {
    return !std::isfinite(p.first) || !std::isfinite(p.second) || p.first <= metric_ref ||
           p.second >= cost_ref;
  });
  std::sort(points.begin(), points.end(), [](const auto& a, const auto& b) {
    return a.second < b.second || (a.second == b.second && a.first > b.first);
  });
  double area = 0, best = metric_ref;
  for (std::size_t i = 0; i < points.size(); ++i) {
    best = std::max(best, points[i].first);
    const double next_cost = i + 1 < points.size() ? points[i + 1].second : cost_ref;
    area += (best - metric_ref) * (next_cost - points[i].second);
  }
  return area;
}

double kendall_tau(const std::vector<double>& a, const std::vector<double>& b) {
  const std::size_t n = std::min(a.size(), b.size());
  if (n < 2) return std::numeric_limits<double>::quiet_NaN();
  double concordant = 0, discordant = 0, ties_a = 0, ties_b = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j) {
      const double da = a[i] - a[j], db = b[i] - b[j];
      if (da == 0 && db == 0) continue;
      if (da == 0) {
        ties_a += 1;
      } else if (db == 0) {
        ties_b += 1;
      } else if ((da > 0) == (db > 0)) {
        concordant += 1;
      } else {
        discordant += 1;
      }
    }
  const double denom =
      std::sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b));
  return denom > 0 ? (concordant - discordant) / denom : std::numeric_limits<double>::quiet_NaN();
}

json collect_run(const db::Store& store, std::int64_t run_id, const GenomeSummary& summary) {
  const auto info = store.run(run_id);
  if (!info)
    throw std::invalid_argument("no run " + std::to_string(run_id) + " in " + store.path());
  json out;
  out["run"] = {{"id", info->id},
                {"name", info->name},
                {"status", info->status},
                {"started_at", info->started_at},
                {"finished_at", info->finished_at},
                {"evaluations", info->evaluations},
                {"config", info->config}};

  // The metric and cost the run traded against each other.
  Objective metric{"val_accuracy", "", true};
  std::string cost;
  bool have_metric = false;
  if (info->config.contains("objectives") && info->config["objectives"].is_array())
    for (const auto& o : info->config["objectives"]) {
      if (!o.is_string()) continue;
      const Objective ob = parse_objective(o.get<std::string>());
      if (kCostNames.count(ob.name)) {
        if (cost.empty()) cost = ob.name;
      } else if (!have_metric) {
        metric = ob;
        have_metric = true;
      }
    }
  out["metric"] = {{"name", metric.name}, {"maximize", metric.maximize}};
  out["cost"] = cost;

  const std::vector<db::EvaluationRecord> evals =
      store.evaluations(run_id, /*with_workloads=*/false);
  std::vector<std::string> devices;
  for (const auto& e : evals)
    for (const auto& c : e.costs)
      if (std::find(devices.begin(), devices.end(), c.device) == devices.end())
        devices.push_back(c.device);
  out["devices"] = devices;

  std::map<std::int64_t, db::ArchitectureRow> archs;
  std::map<std::int64_t, std::string> summaries;
  json ev = json::array();
  for (const auto& e : evals) {
    if (!archs.count(e.arch_id))
      if (auto a = store.architecture(e.arch_id)) {
        archs[e.arch_id] = *a;
        std::string line = a->description;
        if (summary) {
          try {
            line = summary(a->genome);
          } catch (const std::exception&) {  // an unreadable genome keeps its description
          }
        }
        summaries[e.arch_id] = line;
      }
    const auto arch = archs.find(e.arch_id);
    json costs = json::object();
    for (const auto& c : e.costs)
      costs[c.device] = {
          {"latency_ms", number(c.latency_ms)},     {"energy_mj", number(c.energy_mj)},
          {"memory_bytes", number(c.memory_bytes)}, {"feasible", c.feasible},
          {"reason", c.infeasible_reason},          {"activity_source", c.activity_source}};
    ev.push_back({{"id", e.id},
                  {"arch_id", e.arch_id},
                  {"hash", arch != archs.end() ? arch->second.hash : ""},
                  {"description", arch != archs.end() ? arch->second.description : ""},
                  {"summary", arch != archs.end() ? summaries[e.arch_id] : ""},
                  {"status", e.status},
                  {"error", e.error},
                  {"wall_seconds", number(e.wall_seconds)},
                  {"metrics", e.metrics},
                  {"costs", costs}});
  }
  out["evaluations"] = ev;

  json fronts = json::object();
  for (const auto& d : store.pareto_devices(run_id)) {
    json ids = json::array();
    for (const auto& r : store.pareto(run_id, d)) ids.push_back(r.evaluation_id);
    fronts[d] = ids;
  }
  out["fronts"] = fronts;

  // Hypervolume and best metric after each evaluation, per device, on (metric, cost).  The
  // reference point is the worst metric and 1.1 x the worst feasible cost of the whole run, so
  // the curves of one report are comparable across evaluations.
  const std::string hv_cost = cost.empty() ? "latency_ms" : cost;
  const double sign = metric.maximize ? 1.0 : -1.0;  // maximise sign * metric
  json history = json::object();
  for (const auto& d : devices) {
    double metric_ref = std::numeric_limits<double>::infinity(), cost_ref = 0;
    for (const auto& e : evals) {
      const double m = sign * metric_of(e.metrics, metric.name);
      if (e.status != "ok" || !std::isfinite(m)) continue;
      for (const auto& c : e.costs)
        if (c.device == d && c.feasible && std::isfinite(cost_field(c, hv_cost))) {
          metric_ref = std::min(metric_ref, m);
          cost_ref = std::max(cost_ref, cost_field(c, hv_cost));
        }
    }
    cost_ref *= 1.1;
    std::vector<std::pair<double, double>> seen;
    json hv = json::array(), best = json::array();
    double best_m = -std::numeric_limits<double>::infinity();
    for (const auto& e : evals) {
      const double m = sign * metric_of(e.metrics, metric.name);
      if (e.status == "ok" && std::isfinite(m)) {
        for (const auto& c : e.costs)
          if (c.device == d && c.feasible) {
            seen.emplace_back(m, cost_field(c, hv_cost));
            best_m = std::max(best_m, m);
          }
      }
      // Shift the reference slightly below the worst metric so that point still counts.
      const double span = std::isfinite(metric_ref) ? std::max(1e-12, std::fabs(metric_ref)) : 1;
      hv.push_back(number(std::isfinite(metric_ref)
                              ? hypervolume_2d(seen, metric_ref - 1e-3 * span, cost_ref)
                              : std::numeric_limits<double>::quiet_NaN()));
      best.push_back(number(sign * best_m));
    }
    history[d] = {{"hypervolume", hv}, {"best", best}, {"cost", hv_cost}};
  }
  out["history"] = history;

  // Where devices disagree: Kendall's tau between their rankings of the same architectures by
  // the cost, over evaluations feasible on both (the first 2000, to bound the O(n^2) count).
  json tau = json::array();
  for (const auto& a : devices) {
    json row = json::array();
    for (const auto& b : devices) {
      std::vector<double> ca, cb;
      for (const auto& e : evals) {
        if (e.status != "ok" || ca.size() >= 2000) continue;
        const db::CostRecord *x = nullptr, *y = nullptr;
        for (const auto& c : e.costs) {
          if (c.device == a) x = &c;
          if (c.device == b) y = &c;
        }
        if (x && y && x->feasible && y->feasible) {
          ca.push_back(cost_field(*x, hv_cost));
          cb.push_back(cost_field(*y, hv_cost));
        }
      }
      row.push_back(number(kendall_tau(ca, cb)));
    }
    tau.push_back(row);
  }
  out["agreement"] = {{"devices", devices}, {"cost", hv_cost}, {"kendall_tau", tau}};
  return out;
}

}  // namespace hwnas::report
