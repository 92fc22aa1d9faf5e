#include "strategies/pareto.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>

namespace hwnas::strategies {

namespace {

using Point = std::vector<double>;

void validate(const std::vector<Point>& points, std::size_t dims, const char* who) {
  if (dims == 0) throw std::invalid_argument(std::string(who) + ": no objectives");
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (points[i].size() != dims)
      throw std::invalid_argument(std::string(who) + ": point " + std::to_string(i) + " has " +
                                  std::to_string(points[i].size()) + " values, expected " +
                                  std::to_string(dims));
    for (std::size_t k = 0; k < dims; ++k)
      if (std::isnan(points[i][k]))
        throw std::invalid_argument(std::string(who) + ": point " + std::to_string(i) +
                                    " is NaN in objective " + std::to_string(k));
  }
}

// +1: a dominates b, -1: b dominates a, 0: neither (incomparable or identical).  One pass, so the
// O(N^2) sort compares each pair once.
int compare(const Point& a, const Point& b, const std::vector<bool>& maximize) {
  bool a_better = false, b_better = false;
  for (std::size_t k = 0; k < a.size(); ++k) {
    double x = a[k], y = b[k];
    if (x == y) continue;
    if ((x > y) == static_cast<bool>(maximize[k]))
      a_better = true;
    else
      b_better = true;
    if (a_better && b_better) return 0;
  }
  return a_better ? 1 : (b_better ? -1 : 0);
}

// ---- hypervolume, all points in minimisation form -----------------------------------------------

bool weakly_dominates_min(const Point& a, const Point& b) {
  for (std::size_t k = 0; k < a.size(); ++k)
    if (a[k] > b[k]) return false;
  return true;
}

// Keeps one copy of each point that no other point weakly dominates: duplicates and dominated
// points add no volume and only slow WFG down.
std::vector<Point> nondominated_min(const std::vector<Point>& pts) {
  std::vector<Point> out;
  for (const auto& p : pts) {
    bool covered = std::any_of(out.begin(), out.end(),
                               [&](const Point& q) { return weakly_dominates_min(q, p); });
    if (covered) continue;
    std::erase_if(out, [&](const Point& q) { return weakly_dominates_min(p, q); });
    out.push_back(p);
  }
  return out;
}

double box_volume(const Point& p, const Point& ref) {
  double v = 1;
  for (std::size_t k = 0; k < p.size(); ++k) v *= ref[k] - p[k];
  return v;
}

double hv2d(std::vector<Point> pts, const Point& ref) {
  // Sweep by x ascending: each point that lowers the best y so far adds the strip between its
  // y and the previous best y, from its x to the reference (earlier points do not reach the strip).
  std::sort(pts.begin(), pts.end());
  double best_y = ref[1], area = 0;
  for (const auto& p : pts) {
    if (p[1] >= best_y) continue;
    area += (ref[0] - p[0]) * (best_y - p[1]);
    best_y = p[1];
  }
  return area;
}

double wfg(std::vector<Point> pts, const Point& ref) {
  if (pts.empty()) return 0;
  const std::size_t d = ref.size();
  if (d == 1) {
    double lo = ref[0];
    for (const auto& p : pts) lo = std::min(lo, p[0]);
    return ref[0] - lo;
  }
  if (d == 2) return hv2d(std::move(pts), ref);
  // Worst-last-objective first keeps the limit sets of the early points small.
  std::sort(pts.begin(), pts.end(),
            [](const Point& a, const Point& b) { return a.back() > b.back(); });
  double total = 0;
  std::vector<Point> limit;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    // Exclusive volume of pts[i] w.r.t. the later points = its box minus the volume of the later
    // points clipped to its box (the "limit set").
    limit.clear();
    for (std::size_t j = i + 1; j < pts.size(); ++j) {
      Point q(d);
      for (std::size_t k = 0; k < d; ++k) q[k] = std::max(pts[i][k], pts[j][k]);
      limit.push_back(std::move(q));
    }
    total += box_volume(pts[i], ref) - wfg(nondominated_min(limit), ref);
  }
  return total;
}

}  // namespace

std::vector<bool> maximize_flags(const std::vector<Objective>& objectives) {
  std::vector<bool> out;
  out.reserve(objectives.size());
  for (const auto& o : objectives) out.push_back(o.maximize);
  return out;
}

bool dominates(const std::vector<double>& a, const std::vector<double>& b,
               const std::vector<bool>& maximize) {
  validate({a, b}, maximize.size(), "dominates");
  return compare(a, b, maximize) > 0;
}

std::vector<std::vector<std::size_t>> non_dominated_sort(const std::vector<Point>& points,
                                                         const std::vector<bool>& maximize) {
  validate(points, maximize.size(), "non_dominated_sort");
  const std::size_t n = points.size();
  std::vector<std::vector<std::size_t>> dominated_by(n);  // S_p: the points p dominates
  std::vector<std::size_t> dom_count(n, 0);               // n_p: how many points dominate p
  for (std::size_t p = 0; p < n; ++p)
    for (std::size_t q = p + 1; q < n; ++q) {
      int c = compare(points[p], points[q], maximize);
      if (c > 0) {
        dominated_by[p].push_back(q);
        ++dom_count[q];
      } else if (c < 0) {
        dominated_by[q].push_back(p);
        ++dom_count[p];
      }
    }
  std::vector<std::vector<std::size_t>> fronts;
  std::vector<std::size_t> current;
  for (std::size_t p = 0; p < n; ++p)
    if (dom_count[p] == 0) current.push_back(p);
  while (!current.empty()) {
    std::vector<std::size_t> next;
    for (std::size_t p : current)
      for (std::size_t q : dominated_by[p])
        if (--dom_count[q] == 0) next.push_back(q);
    std::sort(next.begin(), next.end());
    fronts.push_back(std::move(current));
    current = std::move(next);
  }
  return fronts;
}

std::vector<std::vector<std::size_t>> first_fronts(const std::vector<Point>& points,
                                                   const std::vector<bool>& maximize,
                                                   std::size_t enough) {
  validate(points, maximize.size(), "first_fronts");
  std::vector<std::size_t> remaining(points.size());
  std::iota(remaining.begin(), remaining.end(), 0);
  std::vector<std::vector<std::size_t>> fronts;
  std::size_t collected = 0;
  while (!remaining.empty() && collected < enough) {
    // The non-dominated set of what remains, kept as an archive: a point enters unless a member
    // dominates it, and evicts the members it dominates.
    std::vector<std::size_t> front;
    for (std::size_t p : remaining) {
      bool dominated = false;
      for (std::size_t q : front)
        if (compare(points[q], points[p], maximize) > 0) {
          dominated = true;
          break;
        }
      if (dominated) continue;
      std::erase_if(front,
                    [&](std::size_t q) { return compare(points[p], points[q], maximize) > 0; });
      front.push_back(p);
    }
    std::sort(front.begin(), front.end());
    std::vector<std::size_t> rest;
    rest.reserve(remaining.size() - front.size());
    std::set_difference(remaining.begin(), remaining.end(), front.begin(), front.end(),
                        std::back_inserter(rest));
    remaining = std::move(rest);
    collected += front.size();
    fronts.push_back(std::move(front));
  }
  return fronts;
}

std::vector<std::size_t> pareto_front(const std::vector<Point>& points,
                                      const std::vector<bool>& maximize) {
  validate(points, maximize.size(), "pareto_front");
  // O(N^2) without the bookkeeping of the full sort.
  std::vector<std::size_t> front;
  for (std::size_t i = 0; i < points.size(); ++i) {
    bool dominated = false;
    for (std::size_t j = 0; j < points.size() && !dominated; ++j)
      dominated = j != i && compare(points[j], points[i], maximize) > 0;
    if (!dominated) front.push_back(i);
  }
  return front;
}

std::vector<double> crowding_distance(const std::vector<Point>& points,
                                      const std::vector<std::size_t>& members) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::size_t n = members.size();
  for (std::size_t m : members)
    if (m >= points.size())
      throw std::invalid_argument("crowding_distance: member index " + std::to_string(m) +
                                  " out of range (" + std::to_string(points.size()) + " points)");
  if (n == 0) return {};
  const std::size_t dims = points[members[0]].size();
  std::vector<Point> subset;
  subset.reserve(n);
  for (std::size_t m : members) subset.push_back(points[m]);
  validate(subset, dims, "crowding_distance");
  std::vector<double> dist(n, 0.0);
  if (n <= 2) return std::vector<double>(n, inf);
  std::vector<std::size_t> order(n);
  for (std::size_t k = 0; k < dims; ++k) {
    std::iota(order.begin(), order.end(), 0);
    // stable: equal values keep index order, so the result is deterministic with duplicates.
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return subset[a][k] < subset[b][k]; });
    dist[order.front()] = inf;
    dist[order.back()] = inf;
    double range = subset[order.back()][k] - subset[order.front()][k];
    if (!(range > 0) || !std::isfinite(range)) continue;
    for (std::size_t i = 1; i + 1 < n; ++i)
      dist[order[i]] += (subset[order[i + 1]][k] - subset[order[i - 1]][k]) / range;
  }
  return dist;
}

std::vector<double> crowding_distance(const std::vector<Point>& points) {
  std::vector<std::size_t> all(points.size());
  std::iota(all.begin(), all.end(), 0);
  return crowding_distance(points, all);
}

double hypervolume(const std::vector<Point>& points, const std::vector<bool>& maximize,
                   const std::vector<double>& reference) {
  const std::size_t d = maximize.size();
  validate(points, d, "hypervolume");
  if (reference.size() != d)
    throw std::invalid_argument("hypervolume: reference has " + std::to_string(reference.size()) +
                                " values, expected " + std::to_string(d));
  for (std::size_t k = 0; k < d; ++k)
    if (!std::isfinite(reference[k]))
      throw std::invalid_argument("hypervolume: reference is not finite in objective " +
                                  std::to_string(k));
  // Work in minimisation form: negate maximized objectives in points and reference alike.
  Point ref(d);
  for (std::size_t k = 0; k < d; ++k) ref[k] = maximize[k] ? -reference[k] : reference[k];
  std::vector<Point> pts;
  for (std::size_t i = 0; i < points.size(); ++i) {
    Point p(d);
    bool inside = true;
    for (std::size_t k = 0; k < d; ++k) {
      if (!std::isfinite(points[i][k]))
        throw std::invalid_argument("hypervolume: point " + std::to_string(i) +
                                    " is not finite in objective " + std::to_string(k));
      p[k] = maximize[k] ? -points[i][k] : points[i][k];
      inside = inside && p[k] < ref[k];
    }
    if (inside) pts.push_back(std::move(p));
  }
  return wfg(nondominated_min(pts), ref);
}

bool constrained_dominates(const std::vector<double>& a, double va, const std::vector<double>& b,
                           double vb, const std::vector<bool>& maximize) {
  if (std::isnan(va) || std::isnan(vb) || va < 0 || vb < 0)
    throw std::invalid_argument("constrained_dominates: violations must be >= 0, got " +
                                std::to_string(va) + " and " + std::to_string(vb));
  const bool fa = va == 0, fb = vb == 0;
  if (fa != fb) return fa;
  if (!fa) return va < vb;
  return dominates(a, b, maximize);
}

std::vector<std::vector<std::size_t>> constrained_non_dominated_sort(
    const std::vector<Point>& points, const std::vector<double>& violations,
    const std::vector<bool>& maximize, std::size_t enough) {
  if (violations.size() != points.size())
    throw std::invalid_argument(
        "constrained_non_dominated_sort: " + std::to_string(violations.size()) +
        " violations for " + std::to_string(points.size()) + " points");
  std::vector<std::size_t> feasible, infeasible;
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (std::isnan(violations[i]) || violations[i] < 0)
      throw std::invalid_argument("constrained_non_dominated_sort: violation of point " +
                                  std::to_string(i) + " must be >= 0");
    (violations[i] == 0 ? feasible : infeasible).push_back(i);
  }
  std::vector<std::vector<std::size_t>> fronts;
  if (!feasible.empty()) {
    std::vector<Point> fp;
    fp.reserve(feasible.size());
    for (std::size_t i : feasible) fp.push_back(points[i]);
    for (auto& f : enough >= fp.size() ? non_dominated_sort(fp, maximize)
                                       : first_fronts(fp, maximize, enough)) {
      for (auto& k : f) k = feasible[k];
      fronts.push_back(std::move(f));
    }
    if (enough < fp.size()) {  // the feasible fronts alone hold enough points
      for (auto& f : fronts) std::sort(f.begin(), f.end());
      return fronts;
    }
  }
  std::stable_sort(infeasible.begin(), infeasible.end(),
                   [&](std::size_t a, std::size_t b) { return violations[a] < violations[b]; });
  for (std::size_t i = 0; i < infeasible.size(); ++i) {
    if (i == 0 || violations[infeasible[i]] != violations[infeasible[i - 1]]) fronts.emplace_back();
    fronts.back().push_back(infeasible[i]);
  }
  for (auto& f : fronts) std::sort(f.begin(), f.end());
  return fronts;
}

namespace {

// Points strictly inside the reference box, in minimisation form (shared by the estimators).
std::vector<Point> to_min_inside(const std::vector<Point>& points,
                                 const std::vector<bool>& maximize,
                                 const std::vector<double>& reference, Point& ref,
                                 const char* who) {
  const std::size_t d = maximize.size();
  validate(points, d, who);
  if (reference.size() != d)
    throw std::invalid_argument(std::string(who) + ": reference has " +
                                std::to_string(reference.size()) + " values, expected " +
                                std::to_string(d));
  ref.assign(d, 0);
  for (std::size_t k = 0; k < d; ++k) {
    if (!std::isfinite(reference[k]))
      throw std::invalid_argument(std::string(who) + ": reference is not finite in objective " +
                                  std::to_string(k));
    ref[k] = maximize[k] ? -reference[k] : reference[k];
  }
  std::vector<Point> pts;
  for (std::size_t i = 0; i < points.size(); ++i) {
    Point p(d);
    bool inside = true;
    for (std::size_t k = 0; k < d; ++k) {
      if (!std::isfinite(points[i][k]))
        throw std::invalid_argument(std::string(who) + ": point " + std::to_string(i) +
                                    " is not finite in objective " + std::to_string(k));
      p[k] = maximize[k] ? -points[i][k] : points[i][k];
      inside = inside && p[k] < ref[k];
    }
    if (inside) pts.push_back(std::move(p));
  }
  return pts;
}

}  // namespace

double hypervolume_monte_carlo(const std::vector<Point>& points, const std::vector<bool>& maximize,
                               const std::vector<double>& reference, std::size_t samples,
                               std::uint64_t seed) {
  if (samples == 0) throw std::invalid_argument("hypervolume_monte_carlo: samples must be > 0");
  Point ref;
  std::vector<Point> pts =
      nondominated_min(to_min_inside(points, maximize, reference, ref, "hypervolume_monte_carlo"));
  if (pts.empty()) return 0;
  const std::size_t d = ref.size();
  Point lo = pts[0];
  for (const auto& p : pts)
    for (std::size_t k = 0; k < d; ++k) lo[k] = std::min(lo[k], p[k]);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::size_t hits = 0;
  Point x(d);
  for (std::size_t s = 0; s < samples; ++s) {
    for (std::size_t k = 0; k < d; ++k) x[k] = lo[k] + u(rng) * (ref[k] - lo[k]);
    for (const auto& p : pts)
      if (weakly_dominates_min(p, x)) {
        ++hits;
        break;
      }
  }
  return box_volume(lo, ref) * static_cast<double>(hits) / static_cast<double>(samples);
}

double hypervolume_auto(const std::vector<Point>& points, const std::vector<bool>& maximize,
                        const std::vector<double>& reference, std::uint64_t seed,
                        std::size_t exact_up_to) {
  if (maximize.size() <= exact_up_to) return hypervolume(points, maximize, reference);
  return hypervolume_monte_carlo(points, maximize, reference, 100000, seed);
}

double igd(const std::vector<Point>& approximation, const std::vector<Point>& reference_front) {
  if (approximation.empty() || reference_front.empty())
    throw std::invalid_argument("igd: the approximation and the reference front must be non-empty");
  const std::size_t d = reference_front[0].size();
  validate(reference_front, d, "igd (reference front)");
  validate(approximation, d, "igd (approximation)");
  double sum = 0;
  for (const auto& r : reference_front) {
    double best = std::numeric_limits<double>::infinity();
    for (const auto& a : approximation) {
      double s = 0;
      for (std::size_t k = 0; k < d; ++k) s += (a[k] - r[k]) * (a[k] - r[k]);
      best = std::min(best, s);
    }
    sum += std::sqrt(best);
  }
  return sum / static_cast<double>(reference_front.size());
}

}  // namespace hwnas::strategies
