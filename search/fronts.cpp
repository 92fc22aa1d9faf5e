#include "search/fronts.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "strategies/pareto.hpp"

namespace hwnas::search {

std::optional<std::vector<double>> front_point(const std::vector<ObjectiveSpec>& objectives,
                                               const std::vector<ConstraintSpec>& constraints,
                                               const FrontSpec& front, bool ok,
                                               const nlohmann::json& metrics,
                                               const std::vector<db::CostRecord>& costs) {
  if (!ok) return std::nullopt;
  if (front.require_default_feasible) {
    const db::CostRecord* c = find_cost(costs, front.default_device);
    if (!c || !c->feasible) return std::nullopt;
  }
  for (const auto& k : constraints)
    if (!check_constraint(k, metrics, costs, front.default_device).satisfied) return std::nullopt;
  std::vector<double> p;
  p.reserve(objectives.size());
  for (const auto& o : objectives) {
    const double v = objective_value(o, metrics, costs, front.default_device);
    if (!std::isfinite(v)) return std::nullopt;
    p.push_back(v);
  }
  return p;
}

FrontArchive::FrontArchive(std::vector<bool> maximize)
    : maximize_(std::move(maximize)),
      nadir_(maximize_.size(), std::numeric_limits<double>::quiet_NaN()) {}

bool FrontArchive::offer(std::int64_t evaluation_id, std::int64_t arch_id,
                         const std::vector<double>& point) {
  ++offered_;
  for (std::size_t k = 0; k < point.size(); ++k) {
    const double worse = std::isnan(nadir_[k]) ? point[k]
                         : maximize_[k]        ? std::min(nadir_[k], point[k])
                                               : std::max(nadir_[k], point[k]);
    nadir_[k] = worse;
  }
  for (const auto& m : members_) {
    if (m.arch_id == arch_id) return false;  // each architecture once
    if (strategies::dominates(m.point, point, maximize_)) return false;
  }
  std::erase_if(members_,
                [&](const Member& m) { return strategies::dominates(point, m.point, maximize_); });
  members_.push_back({evaluation_id, arch_id, point});
  return true;
}

std::vector<std::int64_t> FrontArchive::evaluation_ids() const {
  std::vector<Member> sorted = members_;
  std::sort(sorted.begin(), sorted.end(),
            [](const Member& a, const Member& b) { return a.evaluation_id < b.evaluation_id; });
  std::vector<std::int64_t> out;
  for (const auto& m : sorted) out.push_back(m.evaluation_id);
  return out;
}

std::vector<std::vector<double>> FrontArchive::points() const {
  std::vector<Member> sorted = members_;
  std::sort(sorted.begin(), sorted.end(),
            [](const Member& a, const Member& b) { return a.evaluation_id < b.evaluation_id; });
  std::vector<std::vector<double>> out;
  for (const auto& m : sorted) out.push_back(m.point);
  return out;
}

std::vector<std::int64_t> compute_front(const std::vector<db::EvaluationRecord>& evaluations,
                                        const std::vector<ObjectiveSpec>& objectives,
                                        const std::vector<ConstraintSpec>& constraints,
                                        const FrontSpec& front) {
  std::vector<bool> maximize;
  for (const auto& o : objectives) maximize.push_back(o.maximize);
  FrontArchive archive(maximize);
  for (const auto& e : evaluations)
    if (auto p = front_point(objectives, constraints, front, e.status == "ok", e.metrics, e.costs))
      archive.offer(e.id, e.arch_id, *p);
  return archive.evaluation_ids();
}

double front_hypervolume(const std::vector<std::vector<double>>& points,
                         const std::vector<bool>& maximize, const std::vector<double>& reference,
                         std::uint64_t seed) {
  if (points.empty()) return 0;
  return strategies::hypervolume_auto(points, maximize, reference, seed);
}

}  // namespace hwnas::search
