// One device's costs of evaluated architectures, as the search, `hwnas rescore` and a resumed
// search get them:
//  - an exception from the model becomes an infeasible cost that says so (one bad model or
//    workload never ends a search);
//  - a device whose costs take seconds (hw::Device::caches_costs(): an external measuring
//    device) is asked once per (architecture hash, device fingerprint, batch) per database:
//    the answer is kept in the store's cost cache and reused by later evaluations of the same
//    architecture, rescores and other runs in the file.  Failed costs (a crash, a timeout, an
//    error answer: no latency) are not kept, so the next evaluation asks again.
#pragma once

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "db/store.hpp"
#include "hwmodels/device.hpp"
#include "spaces/genome.hpp"

namespace hwnas::search {

// `store` may be null (no cache).  Workloads carry the genome only if the caller set it.  The
// cost records the device's fingerprint (hw::device_fingerprint; pass it when known: it hashes
// the device's description).
db::CostRecord cost_on_device(const hw::Device& device, const hw::Workload& w,
                              const std::string& arch_hash, db::Store* store,
                              const std::string& fingerprint = "");

// The same for many architectures (arch_hashes[i] is ws[i]'s); the ones not cached are asked in
// one hw::Device::estimate_many call, so an external device may get them batched.
std::vector<db::CostRecord> costs_on_device(const hw::Device& device,
                                            const std::vector<hw::Workload>& ws,
                                            const std::vector<std::string>& arch_hashes,
                                            db::Store* store);

// A search's costs on all its devices.  Caching devices (the slow ones) start measuring a
// candidate when it is dispatched, on a thread of their own, from the architecture's static
// workload (which is all such a device may read), so the measurement overlaps the training and a
// slow device does not hold up the coordinator handing out work.  Cache look-ups and writes stay
// on the coordinator's thread (the store is single-threaded).
class SearchCosts {
 public:
  SearchCosts(const std::vector<std::unique_ptr<hw::Device>>& devices, db::Store& store);
  ~SearchCosts();  // waits for measurements still running
  // At dispatch: starts the caching devices' measurements the cost cache cannot answer.
  void start(std::uint64_t id, const spaces::Genome& genome);
  // At the result: the costs of proposal `id` on every device, in device order.  `evaluated`
  // is the workload the evaluation measured (with activity); it carries the genome when a
  // device wants it.  `static_key` (non-zero) says the workload measured nothing, so it is the
  // architecture's alone, and identifies it (search_loop.hpp's architecture_workload_key): a
  // device model is then asked once per (architecture, key) in this search, and repeats of an
  // architecture, which are most evaluations of a long search, cost a look-up.
  std::vector<db::CostRecord> finish(std::uint64_t id, const hw::Workload& evaluated,
                                     const std::string& arch_hash, std::uint64_t static_key = 0);
  // A failed evaluation: drops its measurements (they still run to completion).
  void forget(std::uint64_t id);

 private:
  const std::vector<std::unique_ptr<hw::Device>>& devices_;
  db::Store& store_;
  std::vector<std::string> fingerprints_;  // per device
  std::vector<int> batches_;               // per device
  std::vector<std::size_t> caching_;       // indices of devices that cache
  // Writes a cost to the cache (not failed ones; a cache write that fails is ignored).
  void keep(const std::string& arch_hash, std::size_t device, const db::CostRecord& c);
  // Moves finished measurements to done_ and into the cache right away.
  void harvest();

  // Shared: candidates of one architecture in flight together wait for one measurement.
  struct Measuring {
    std::string arch_hash;
    std::shared_future<hw::Cost> answer;
  };
  using Key = std::pair<std::uint64_t, std::size_t>;  // (proposal id, device index)
  std::map<Key, Measuring> running_;
  std::map<Key, db::CostRecord> done_;  // ready for finish(): cache hits and harvested answers
  std::vector<std::shared_future<hw::Cost>> abandoned_;  // of failed evaluations
  // Costs of workloads without measurements: (architecture hash, static key, device index).
  // Bounded: cleared when full, so a search over millions of architectures stays small.
  static constexpr std::size_t kRepeatCostsMax = 1 << 16;
  std::map<std::tuple<std::string, std::uint64_t, std::size_t>, db::CostRecord> repeat_costs_;
};

}  // namespace hwnas::search
