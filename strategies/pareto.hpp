// Pareto utilities for multi-objective search: dominance, fast non-dominated sorting (Deb et al.
// 2002, NSGA-II), the first front, crowding distance and exact hypervolume.  Pure functions over
// plain vectors (no SQLite, no MPI) so strategies, the search loop and the CLI share them.
//
// Conventions:
//  - a point is one value per objective; `maximize[k]` says whether objective k is maximized;
//  - a dominates b when a is no worse in every objective and strictly better in at least one, so
//    identical points never dominate each other and both land on the same front;
//  - index lists (fronts) are ascending point indices;
//  - malformed input (ragged points, a dimension that disagrees with `maximize`, NaN) throws
//    std::invalid_argument naming the point and objective; failed candidates must be filtered
//    out by the caller, not smuggled in as NaN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hwnas::strategies {

struct Objective {
  std::string name;
  bool maximize = false;
};

// The maximize flags of a list of objectives, in order.
std::vector<bool> maximize_flags(const std::vector<Objective>& objectives);

bool dominates(const std::vector<double>& a, const std::vector<double>& b,
               const std::vector<bool>& maximize);

// All fronts, best first: fronts[0] is the non-dominated set, fronts[1] is non-dominated once
// fronts[0] is removed, and so on.  Every point index appears in exactly one front.
// O(M N^2) time, O(N^2) memory.
std::vector<std::vector<std::size_t>> non_dominated_sort(
    const std::vector<std::vector<double>>& points, const std::vector<bool>& maximize);
// Only the first fronts, up to and including the one that brings their total to `enough` points
// (all fronts if there are fewer points): the same fronts as non_dominated_sort, peeled one at a
// time in O(M N F) for fronts of size F, for callers that need the best few (parent selection
// over a long history) and not the whole order.
std::vector<std::vector<std::size_t>> first_fronts(const std::vector<std::vector<double>>& points,
                                                   const std::vector<bool>& maximize,
                                                   std::size_t enough);

// The first front only (indices of the points no other point dominates).
std::vector<std::size_t> pareto_front(const std::vector<std::vector<double>>& points,
                                      const std::vector<bool>& maximize);

// NSGA-II crowding distance of each point within the given set (normally one front), in the
// same order.  Per objective, the extreme points get +infinity and interior points add the gap
// between their neighbours divided by the objective's range; an objective with zero range adds
// nothing.  Sets of one or two points are all +infinity.  Independent of maximize/minimize.
std::vector<double> crowding_distance(const std::vector<std::vector<double>>& points);
// The same for the subset `members` of `points`; result[i] belongs to points[members[i]].
std::vector<double> crowding_distance(const std::vector<std::vector<double>>& points,
                                      const std::vector<std::size_t>& members);

// Exact hypervolume dominated by `points` and bounded by `reference` (a point worse than every
// point of interest in every objective).  Points that are not strictly better than the reference
// in every objective add nothing.  2-D: O(N log N) sweep; 1-D: a length; 3+ D: the WFG algorithm
// (While, Bradstreet & Barone 2012), exact and fine for fronts of up to a few hundred points.
// Points and reference must be finite.
double hypervolume(const std::vector<std::vector<double>>& points,
                   const std::vector<bool>& maximize, const std::vector<double>& reference);

// Constraint domination (Deb 2000, "An efficient constraint handling method for genetic
// algorithms"): with violations va, vb >= 0 (0 = feasible), a constraint-dominates b when a is
// feasible and b is not, or both are infeasible and va < vb, or both are feasible and a
// dominates b.
bool constrained_dominates(const std::vector<double>& a, double va, const std::vector<double>& b,
                           double vb, const std::vector<bool>& maximize);

// non_dominated_sort under constraint domination: the feasible points' fronts first (as
// non_dominated_sort orders them), then the infeasible points, one front per distinct violation,
// smallest first.  `violations` has one entry per point (>= 0, not NaN).  With `enough` set, only
// the first fronts holding at least that many points (as first_fronts).
std::vector<std::vector<std::size_t>> constrained_non_dominated_sort(
    const std::vector<std::vector<double>>& points, const std::vector<double>& violations,
    const std::vector<bool>& maximize, std::size_t enough = SIZE_MAX);

// Hypervolume by Monte-Carlo sampling of the box between the ideal point of `points` and the
// reference: the fraction of `samples` uniform points that some point weakly dominates, times
// the box volume.  Seeded, so the same inputs give the same estimate; the standard error is
// about volume * sqrt(p (1 - p) / samples).  For 4+ objectives where WFG gets slow.
double hypervolume_monte_carlo(const std::vector<std::vector<double>>& points,
                               const std::vector<bool>& maximize,
                               const std::vector<double>& reference, std::size_t samples,
                               std::uint64_t seed);

// Hypervolume with the exact algorithm up to `exact_up_to` objectives (default 3) and
// Monte-Carlo (100000 samples, the given seed) beyond.
double hypervolume_auto(const std::vector<std::vector<double>>& points,
                        const std::vector<bool>& maximize, const std::vector<double>& reference,
                        std::uint64_t seed = 0, std::size_t exact_up_to = 3);

// Inverted generational distance: the mean, over the points of the reference (true) front, of
// the Euclidean distance to the nearest point of the approximation.  Objectives are compared as
// given (normalise them first when their scales differ).  0 when the approximation covers the
// reference front; throws std::invalid_argument for an empty approximation or reference.
double igd(const std::vector<std::vector<double>>& approximation,
           const std::vector<std::vector<double>>& reference_front);

}  // namespace hwnas::strategies
