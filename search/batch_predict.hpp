// Batch prediction of NAS-Bench-201 networks (`hwnas hw predict --all / --sample / -`, and
// bench/hw_predict): a network's cost depends only on its cell, of which there are 15,625, and
// cells differing only in dead ops (spaces::nb201_live_index) have the same workload, so each of
// the 12,205 distinct workloads is built (genome -> workload) and costed once and every later
// architecture string is a parse (spaces::nb201_index, no allocation) and a table lookup.
#pragma once

#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "hwmodels/device.hpp"
#include "spaces/space.hpp"

namespace hwnas::search {

class Nb201CostCache {
 public:
  // `space` must be an nb201 space (its at() numbering is nb201_index's); both must outlive this.
  Nb201CostCache(const spaces::Space& space, const hw::Device& device);
  // Totals (estimate_total) of cell `index` in [0, 15625), computed on first use.
  const hw::Cost& at(int index);
  // The cost of an NB201 arch string, or null when the string is not one.
  const hw::Cost* find(std::string_view arch) {
    const int i = spaces::nb201_index(arch);
    return i < 0 ? nullptr : &at(i);
  }
  // Workloads built and costed so far (one per live cell, or per cell for external devices).
  std::size_t computed() const { return computed_; }

 private:
  const spaces::Space& space_;
  const hw::Device& device_;
  std::vector<std::optional<hw::Cost>> table_;  // by live index (by cell for external devices)
  // Each cell's entry once looked up, so a repeat lookup skips the liveness analysis.
  std::vector<const hw::Cost*> resolved_;
  std::size_t computed_ = 0;
};

}  // namespace hwnas::search
