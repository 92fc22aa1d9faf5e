// Pareto utilities: dominance with mixed directions, hand-made fronts, duplicates, crowding
// distance, hand-computed hypervolumes (2-D and 3-D), and randomized checks over many seeds
// (front membership against brute force; hypervolume against lattice-cell counting).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "strategies/pareto.hpp"

using namespace hwnas::strategies;
using Points = std::vector<std::vector<double>>;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(Pareto, DominanceWithMixedDirections) {
  const std::vector<bool> acc_max_lat_min{true, false};
  EXPECT_TRUE(dominates({0.9, 5}, {0.8, 6}, acc_max_lat_min));
  EXPECT_FALSE(dominates({0.8, 6}, {0.9, 5}, acc_max_lat_min));
  EXPECT_TRUE(dominates({0.9, 5}, {0.9, 6}, acc_max_lat_min));   // equal in one, better in other
  EXPECT_FALSE(dominates({0.9, 7}, {0.8, 6}, acc_max_lat_min));  // trade-off
  EXPECT_FALSE(dominates({0.8, 6}, {0.9, 7}, acc_max_lat_min));
  EXPECT_FALSE(dominates({0.9, 5}, {0.9, 5}, acc_max_lat_min));  // identical: neither
  EXPECT_TRUE(dominates({1, 1}, {2, 2}, {false, false}));
  EXPECT_TRUE(dominates({2, 2}, {1, 1}, {true, true}));
  EXPECT_TRUE(dominates({1, -kInf}, {1, 0}, {false, false}));
}

TEST(Pareto, MaximizeFlags) {
  std::vector<Objective> objs{{"val_accuracy", true}, {"latency_ms", false}};
  EXPECT_EQ(maximize_flags(objs), (std::vector<bool>{true, false}));
}

TEST(Pareto, HandMadeFrontsAndLayers) {
  // (accuracy max, latency min)
  Points p{{0.90, 10},   // 0 front
           {0.80, 5},    // 1 front
           {0.70, 9},    // 2 dominated by 1 only
           {0.95, 20},   // 3 front
           {0.85, 11},   // 4 dominated by 0 only
           {0.60, 30}};  // 5 dominated by everyone
  std::vector<bool> mx{true, false};
  EXPECT_EQ(pareto_front(p, mx), (std::vector<std::size_t>{0, 1, 3}));
  auto fronts = non_dominated_sort(p, mx);
  ASSERT_EQ(fronts.size(), 3u);
  EXPECT_EQ(fronts[0], (std::vector<std::size_t>{0, 1, 3}));
  EXPECT_EQ(fronts[1], (std::vector<std::size_t>{2, 4}));
  EXPECT_EQ(fronts[2], (std::vector<std::size_t>{5}));
}

TEST(Pareto, DuplicatePointsShareTheFront) {
  Points p{{1, 2}, {1, 2}, {2, 1}, {3, 3}, {3, 3}};
  std::vector<bool> mn{false, false};
  EXPECT_EQ(pareto_front(p, mn), (std::vector<std::size_t>{0, 1, 2}));
  auto fronts = non_dominated_sort(p, mn);
  ASSERT_EQ(fronts.size(), 2u);
  EXPECT_EQ(fronts[1], (std::vector<std::size_t>{3, 4}));
  // All identical: one front holding everything.
  Points same(5, {0.5, 0.5, 0.5});
  EXPECT_EQ(non_dominated_sort(same, {true, false, true}).size(), 1u);
  EXPECT_EQ(pareto_front(same, {true, false, true}).size(), 5u);
}

TEST(Pareto, EdgeCasesAndBadInput) {
  EXPECT_TRUE(pareto_front({}, {true}).empty());
  EXPECT_TRUE(non_dominated_sort({}, {true}).empty());
  EXPECT_EQ(pareto_front({{3}}, {true}), (std::vector<std::size_t>{0}));
  EXPECT_THROW(pareto_front({{1, 2}, {1}}, {true, true}), std::invalid_argument);  // ragged
  EXPECT_THROW(pareto_front({{1, 2}}, {true}), std::invalid_argument);             // wrong dims
  EXPECT_THROW(pareto_front({{1}}, {}), std::invalid_argument);                    // no objectives
  EXPECT_THROW(non_dominated_sort({{1, std::nan("")}}, {true, true}), std::invalid_argument);
  EXPECT_THROW(dominates({1, 2}, {1}, {true, true}), std::invalid_argument);
  EXPECT_THROW(hypervolume({{1, 2}}, {false, false}, {3}), std::invalid_argument);
  EXPECT_THROW(hypervolume({{1, kInf}}, {false, false}, {3, 3}), std::invalid_argument);
  EXPECT_THROW(crowding_distance({{1, 2}}, {3}), std::invalid_argument);  // index out of range
}

TEST(Pareto, CrowdingDistance) {
  // A straight front: interior points get (gap/range) summed over both objectives = 2/3 + 2/3.
  Points line{{1, 4}, {2, 3}, {3, 2}, {4, 1}};
  auto d = crowding_distance(line);
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d[0], kInf);
  EXPECT_EQ(d[3], kInf);
  EXPECT_DOUBLE_EQ(d[1], 4.0 / 3.0);
  EXPECT_DOUBLE_EQ(d[2], 4.0 / 3.0);
  // Uneven spacing: the point in the crowded region gets the smaller distance.
  Points uneven{{0, 10}, {1, 9}, {2, 8}, {10, 0}};
  auto u = crowding_distance(uneven);
  EXPECT_LT(u[1], u[2]);
  // Small sets are all boundary.
  EXPECT_EQ(crowding_distance({{1, 1}, {2, 0}}), (std::vector<double>{kInf, kInf}));
  EXPECT_EQ(crowding_distance({{1, 1}}), (std::vector<double>{kInf}));
  EXPECT_TRUE(crowding_distance(Points{}).empty());
  // A constant objective adds nothing and does not divide by zero.
  auto c = crowding_distance({{1, 5}, {2, 5}, {4, 5}});
  EXPECT_EQ(c[0], kInf);
  EXPECT_EQ(c[2], kInf);
  EXPECT_TRUE(std::isfinite(c[1]));
  // Subset form: distances of members in the given order.
  Points mixed{{100, 100}, {1, 4}, {2, 3}, {3, 2}, {4, 1}};
  auto s = crowding_distance(mixed, {1, 2, 3, 4});
  EXPECT_EQ(s, d);
}

TEST(Pareto, Hypervolume2DHandComputed) {
  // Minimise both: staircase (1,5), (2,3), (4,1) against (5,6): 4 + 6 + 2 = 12.
  EXPECT_DOUBLE_EQ(hypervolume({{1, 5}, {2, 3}, {4, 1}}, {false, false}, {5, 6}), 12.0);
  // Order, duplicates and dominated points change nothing.
  EXPECT_DOUBLE_EQ(hypervolume({{4, 1}, {3, 4}, {1, 5}, {2, 3}, {2, 3}}, {false, false}, {5, 6}),
                   12.0);
  // Accuracy max, latency min: (0.9, 10), (0.8, 5) against (0.5, 20):
  // 0.4 * 10 + 0.3 * 5 = 5.5.
  std::vector<bool> mx{true, false};
  EXPECT_NEAR(hypervolume({{0.9, 10}, {0.8, 5}}, mx, {0.5, 20}), 5.5, 1e-12);
  // A point beyond the reference in one objective contributes nothing.
  EXPECT_NEAR(hypervolume({{0.9, 10}, {0.8, 5}, {0.4, 1}}, mx, {0.5, 20}), 5.5, 1e-12);
  EXPECT_EQ(hypervolume({}, mx, {0.5, 20}), 0.0);
  EXPECT_EQ(hypervolume({{0.5, 20}}, mx, {0.5, 20}), 0.0);  // on the reference: zero volume
  // One dimension: a length.
  EXPECT_DOUBLE_EQ(hypervolume({{3}, {1}}, {false}, {5}), 4.0);
}

TEST(Pareto, Hypervolume3DHandComputed) {
  std::vector<bool> mn{false, false, false};
  EXPECT_DOUBLE_EQ(hypervolume({{1, 1, 1}}, mn, {2, 2, 2}), 1.0);
  // Two boxes 2*2*1 and 1*1*2 overlapping in a unit cube: 4 + 2 - 1 = 5.
  EXPECT_DOUBLE_EQ(hypervolume({{0, 0, 1}, {1, 1, 0}}, mn, {2, 2, 2}), 5.0);
  // Three boxes of 2 pairwise overlapping in the same unit cube: 6 - 3 + 1 = 4.
  EXPECT_DOUBLE_EQ(hypervolume({{0, 1, 1}, {1, 0, 1}, {1, 1, 0}}, mn, {2, 2, 2}), 4.0);
  // Maximising all three mirrors the same case.
  EXPECT_DOUBLE_EQ(
      hypervolume({{0, -1, -1}, {-1, 0, -1}, {-1, -1, 0}}, {true, true, true}, {-2, -2, -2}), 4.0);
  // Mixed directions: acc max, latency min, energy min.
  // (0.9, 2, 3) and (0.8, 1, 1) vs ref (0.5, 4, 4): boxes 0.4*2*1 = 0.8 and 0.3*3*3 = 2.7,
  // overlap (0.8, 2, 3) -> 0.3*2*1 = 0.6; total 2.9.
  EXPECT_NEAR(hypervolume({{0.9, 2, 3}, {0.8, 1, 1}}, {true, false, false}, {0.5, 4, 4}), 2.9,
              1e-12);
}

// Brute force: count unit lattice cells [c, c+1)^d inside [0, ref)^d dominated by some point
// (minimisation, integer coordinates).
double lattice_volume(const Points& pts, int ref, std::size_t d) {
  std::vector<int> c(d, 0);
  double count = 0;
  while (true) {
    for (const auto& p : pts) {
      bool covers = true;
      for (std::size_t k = 0; k < d && covers; ++k) covers = p[k] <= c[k];
      if (covers) {
        ++count;
        break;
      }
    }
    std::size_t k = 0;
    while (k < d && ++c[k] == ref) c[k++] = 0;
    if (k == d) break;
  }
  return count;
}

TEST(Pareto, HypervolumeMatchesLatticeCountOverManySeeds) {
  for (unsigned seed = 0; seed < 200; ++seed) {
    std::mt19937 rng(seed);
    const std::size_t d = 2 + seed % 3;  // 2, 3 and 4 objectives
    const int ref = 6;
    std::uniform_int_distribution<int> coord(0, ref + 1);  // some points beyond the reference
    std::uniform_int_distribution<int> count(0, 12);
    Points pts(count(rng), std::vector<double>(d));
    for (auto& p : pts)
      for (auto& v : p) v = coord(rng);
    double expected = lattice_volume(pts, ref, d);
    double got = hypervolume(pts, std::vector<bool>(d, false), std::vector<double>(d, ref));
    ASSERT_DOUBLE_EQ(got, expected) << "seed " << seed << " d " << d;
    // Maximisation form of the same instance gives the same volume.
    Points neg = pts;
    for (auto& p : neg)
      for (auto& v : p) v = -v;
    ASSERT_DOUBLE_EQ(hypervolume(neg, std::vector<bool>(d, true), std::vector<double>(d, -ref)),
                     expected)
        << "seed " << seed;
  }
}

TEST(Pareto, RandomizedFrontsAgreeWithBruteForce) {
  for (unsigned seed = 0; seed < 300; ++seed) {
    std::mt19937 rng(seed);
    const std::size_t d = 1 + seed % 4;
    std::uniform_int_distribution<int> n_dist(0, 60);
    const std::size_t n = n_dist(rng);
    std::vector<bool> mx(d);
    for (std::size_t k = 0; k < d; ++k) mx[k] = rng() & 1;
    // Half the seeds draw from a coarse grid so ties and duplicates are common.
    const bool coarse = seed % 2 == 0;
    std::uniform_int_distribution<int> grid(0, 4);
    std::uniform_real_distribution<double> real(-1, 1);
    Points p(n, std::vector<double>(d));
    for (auto& pt : p)
      for (auto& v : pt) v = coarse ? grid(rng) : real(rng);

    auto front = pareto_front(p, mx);
    std::vector<bool> on(n, false);
    for (auto i : front) on[i] = true;
    for (std::size_t i = 0; i < n; ++i) {
      bool dominated = false;
      for (std::size_t j = 0; j < n; ++j) dominated = dominated || dominates(p[j], p[i], mx);
      ASSERT_EQ(on[i], !dominated) << "seed " << seed << " point " << i;
    }

    auto fronts = non_dominated_sort(p, mx);
    ASSERT_TRUE(n == 0 || fronts.at(0) == front) << "seed " << seed;
    std::vector<int> layer(n, -1);
    for (std::size_t f = 0; f < fronts.size(); ++f) {
      ASSERT_FALSE(fronts[f].empty());
      ASSERT_TRUE(std::is_sorted(fronts[f].begin(), fronts[f].end()));
      for (auto i : fronts[f]) {
        ASSERT_EQ(layer[i], -1) << "point in two fronts, seed " << seed;
        layer[i] = static_cast<int>(f);
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_GE(layer[i], 0) << "point in no front, seed " << seed;
      bool by_previous = layer[i] == 0;
      for (std::size_t j = 0; j < n; ++j) {
        if (!dominates(p[j], p[i], mx)) continue;
        ASSERT_LT(layer[j], layer[i]) << "dominated by a point of the same or a later front";
        by_previous = by_previous || layer[j] == layer[i] - 1;
      }
      ASSERT_TRUE(by_previous) << "not dominated by the previous front, seed " << seed;
    }
    // first_fronts: the same leading fronts, up to the one that reaches `enough` points.
    for (std::size_t enough : {std::size_t{1}, n / 3, n, n + 5}) {
      const auto first = first_fronts(p, mx, enough);
      std::size_t total = 0, k = 0;
      while (k < fronts.size() && total < enough) total += fronts[k++].size();
      ASSERT_EQ(first, std::vector<std::vector<std::size_t>>(fronts.begin(), fronts.begin() + k))
          << "seed " << seed << " enough " << enough;
    }
  }
}

}  // namespace

namespace {

TEST(Pareto, ConstraintDominationDeb2000) {
  std::vector<bool> mx{true, false};
  // Feasible beats infeasible whatever the objectives.
  EXPECT_TRUE(constrained_dominates({0.1, 9}, 0, {0.9, 1}, 0.5, mx));
  EXPECT_FALSE(constrained_dominates({0.9, 1}, 0.5, {0.1, 9}, 0, mx));
  // Two infeasible: the smaller violation wins.
  EXPECT_TRUE(constrained_dominates({0.1, 9}, 0.2, {0.9, 1}, 0.5, mx));
  EXPECT_FALSE(constrained_dominates({0.1, 9}, 0.5, {0.9, 1}, 0.5, mx));
  // Two feasible: ordinary dominance.
  EXPECT_TRUE(constrained_dominates({0.9, 1}, 0, {0.8, 2}, 0, mx));
  EXPECT_FALSE(constrained_dominates({0.9, 3}, 0, {0.8, 2}, 0, mx));
  EXPECT_THROW(constrained_dominates({0.9, 1}, -1, {0.8, 2}, 0, mx), std::invalid_argument);
}

TEST(Pareto, ConstrainedSortPutsFeasibleFrontsFirstThenViolationLevels) {
  std::vector<bool> mx{true, false};
  Points pts{{0.9, 1}, {0.5, 5}, {0.99, 0.5}, {0.7, 2}, {0.95, 0.1}, {0.6, 3}};
  std::vector<double> viol{0, 0, 0.3, 0, 0.1, 0.3};
  auto fronts = constrained_non_dominated_sort(pts, viol, mx);
  // feasible: 0 dominates 1 and 3; 3 dominates 1 -> {0}, {3}, {1}; then {4} (0.1), {2, 5} (0.3).
  ASSERT_EQ(fronts.size(), 5u);
  EXPECT_EQ(fronts[0], (std::vector<std::size_t>{0}));
  EXPECT_EQ(fronts[1], (std::vector<std::size_t>{3}));
  EXPECT_EQ(fronts[2], (std::vector<std::size_t>{1}));
  EXPECT_EQ(fronts[3], (std::vector<std::size_t>{4}));
  EXPECT_EQ(fronts[4], (std::vector<std::size_t>{2, 5}));
  // Only the leading fronts when `enough` points are covered by them.
  EXPECT_EQ(constrained_non_dominated_sort(pts, viol, mx, 2),
            (std::vector<std::vector<std::size_t>>{{0}, {3}}));
  EXPECT_EQ(constrained_non_dominated_sort(pts, viol, mx, 3), fronts);  // not enough feasible
  // Unavailable objectives (NaN) are fine on infeasible points.
  Points with_nan{{0.9, 1}, {std::nan(""), std::nan("")}};
  auto f2 = constrained_non_dominated_sort(with_nan, {0, 1}, mx);
  ASSERT_EQ(f2.size(), 2u);
  EXPECT_EQ(f2[1], (std::vector<std::size_t>{1}));
  EXPECT_THROW(constrained_non_dominated_sort(pts, {0, 0}, mx), std::invalid_argument);
}

TEST(Pareto, MonteCarloHypervolumeAgreesWithExactAndIsSeeded) {
  std::vector<bool> mn{false, false, false};
  // The three-box case of Hypervolume3DHandComputed: exactly 4.
  Points pts{{0, 1, 1}, {1, 0, 1}, {1, 1, 0}};
  const double a = hypervolume_monte_carlo(pts, mn, {2, 2, 2}, 200000, 7);
  EXPECT_NEAR(a, 4.0, 0.05);  // box 8, p = 0.5: standard error 8 * sqrt(.25 / 2e5) ~ 0.009
  EXPECT_EQ(a, hypervolume_monte_carlo(pts, mn, {2, 2, 2}, 200000, 7));
  EXPECT_NE(a, hypervolume_monte_carlo(pts, mn, {2, 2, 2}, 200000, 8));
  // Four objectives: the unit hypercube corner (1,1,1,1) against (2,2,2,2) plus (0,0,0,0)
  // dominating it: exactly 2^4 = 16, and every sample hits.
  EXPECT_DOUBLE_EQ(hypervolume_monte_carlo({{0, 0, 0, 0}, {1, 1, 1, 1}},
                                           {false, false, false, false}, {2, 2, 2, 2}, 1000, 1),
                   16.0);
  // Four objectives, two disjoint-ish boxes: 1*2*2*2 + 2*1*2*2 - 1*1*2*2 = 8 + 8 - 4 = 12.
  Points p4{{1, 0, 0, 0}, {0, 1, 0, 0}};
  EXPECT_NEAR(hypervolume_auto(p4, {false, false, false, false}, {2, 2, 2, 2}, 3), 12.0, 0.15);
  EXPECT_DOUBLE_EQ(hypervolume_auto(pts, mn, {2, 2, 2}), 4.0);  // exact up to 3
  EXPECT_THROW(hypervolume_monte_carlo(pts, mn, {2, 2, 2}, 0, 1), std::invalid_argument);
}

TEST(Pareto, InvertedGenerationalDistanceHandComputed) {
  Points truth{{0, 1}, {1, 0}};
  EXPECT_DOUBLE_EQ(igd(truth, truth), 0.0);
  // Approximation {(0,1)}: distances 0 and sqrt(2) -> mean sqrt(2)/2.
  EXPECT_DOUBLE_EQ(igd({{0, 1}}, truth), std::sqrt(2.0) / 2);
  // Approximation {(0.5, 0.5)}: both at sqrt(0.5).
  EXPECT_DOUBLE_EQ(igd({{0.5, 0.5}}, truth), std::sqrt(0.5));
  // Extra approximation points never hurt.
  EXPECT_DOUBLE_EQ(igd({{0, 1}, {1, 0}, {5, 5}}, truth), 0.0);
  EXPECT_THROW(igd({}, truth), std::invalid_argument);
  EXPECT_THROW(igd({{1, 2, 3}}, truth), std::invalid_argument);
}

}  // namespace
