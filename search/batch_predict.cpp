#include "search/batch_predict.hpp"

#include <stdexcept>

#include "spaces/workload_builder.hpp"

namespace hwnas::search {

Nb201CostCache::Nb201CostCache(const spaces::Space& space, const hw::Device& device)
    : space_(space), device_(device), table_(15625), resolved_(15625, nullptr) {
  if (space.type() != "nb201")
    throw std::invalid_argument("Nb201CostCache: space type '" + space.type() + "' is not nb201");
}

const hw::Cost& Nb201CostCache::at(int index) {
  if (index < 0 || index >= 15625)
    throw std::out_of_range("nb201 cell index " + std::to_string(index) + " outside [0, 15625)");
  if (const hw::Cost* known = resolved_[static_cast<std::size_t>(index)]) return *known;
  // External devices build (and may time) the network itself, dead ops included: each cell
  // is its own entry for them.
  const bool whole_network = device_.wants_architecture();
  const int key = whole_network ? index : spaces::nb201_live_index(index);
  auto& slot = table_[static_cast<std::size_t>(key)];
  if (!slot) {
    const spaces::Genome g = space_.at(static_cast<std::uint64_t>(key));
    slot = device_.estimate_total(whole_network ? spaces::build_workload_with_genome(g)
                                                : spaces::build_workload(g));
    ++computed_;
  }
  resolved_[static_cast<std::size_t>(index)] = &*slot;  // table_ never reallocates
  return *slot;
}

}  // namespace hwnas::search
