// Pareto fronts of a search: which evaluations are eligible for a front, the incremental
// non-dominated archive the search loop keeps while it runs (so the final fronts need no
// re-read of the run), and the hypervolume history of each front.
//
// A front lists each architecture once: an architecture evaluated twice keeps its first
// evaluation that reached the front.  An evaluation is eligible for a front when it succeeded,
// every objective has a value (a cost on a device where the architecture is infeasible has
// none), every constraint holds and, for a per-device front, the architecture is feasible on
// that device.  So an infeasible architecture never appears on a stored front.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "db/store.hpp"
#include "search/objectives.hpp"

namespace hwnas::search {

// The key a front is stored under when the objectives name their devices.
inline constexpr const char* kJointFront = "joint";

struct FrontSpec {
  std::string key;                        // device name, or kJointFront
  std::string default_device;             // where costs without @DEVICE are read ("" = none)
  bool require_default_feasible = false;  // per-device fronts: feasible on `key`
};

// One evaluation's point on a front (objective values in config order), or nullopt when it is
// not eligible.
std::optional<std::vector<double>> front_point(const std::vector<ObjectiveSpec>& objectives,
                                               const std::vector<ConstraintSpec>& constraints,
                                               const FrontSpec& front, bool ok,
                                               const nlohmann::json& metrics,
                                               const std::vector<db::CostRecord>& costs);

// The non-dominated set of every point offered so far, one evaluation per architecture.
class FrontArchive {
 public:
  explicit FrontArchive(std::vector<bool> maximize);
  // Returns whether the evaluation joined the front (it may leave it again later).
  bool offer(std::int64_t evaluation_id, std::int64_t arch_id, const std::vector<double>& point);
  std::vector<std::int64_t> evaluation_ids() const;  // ascending
  std::vector<std::vector<double>> points() const;   // same order
  // The worst value of each objective over every point offered (NaN before the first).
  const std::vector<double>& nadir() const { return nadir_; }
  std::size_t offered() const { return offered_; }
  const std::vector<bool>& maximize() const { return maximize_; }

 private:
  struct Member {
    std::int64_t evaluation_id, arch_id;
    std::vector<double> point;
  };
  std::vector<bool> maximize_;
  std::vector<Member> members_;
  std::vector<double> nadir_;
  std::size_t offered_ = 0;
};

// The front of a stored run's evaluations (in id order), as the search loop builds it.
std::vector<std::int64_t> compute_front(const std::vector<db::EvaluationRecord>& evaluations,
                                        const std::vector<ObjectiveSpec>& objectives,
                                        const std::vector<ConstraintSpec>& constraints,
                                        const FrontSpec& front);

// Hypervolume of a front's points against a reference (exact up to 3 objectives, seeded
// Monte-Carlo beyond); 0 for an empty front.
double front_hypervolume(const std::vector<std::vector<double>>& points,
                         const std::vector<bool>& maximize, const std::vector<double>& reference,
                         std::uint64_t seed);

}  // namespace hwnas::search
