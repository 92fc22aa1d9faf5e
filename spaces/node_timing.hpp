// Per-node host timing: how long each node of a built network takes on this machine, paired
// with the node's workload entry (spaces::build_workload) so that a time can be matched with its
// features (the learned latency predictor, hwmodels/learned_predictor.hpp).
//
// GenomeModel::set_node_hook installs a NodeHook that the model calls around every node's
// forward; without one the model makes no calls (zero cost when unused).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace hwnas::spaces {

class Genome;

class NodeHook {
 public:
  virtual ~NodeHook() = default;
  virtual void before(std::size_t node) = 0;  // genome node id, just before its forward
  virtual void after(std::size_t node) = 0;   // just after it
};

struct NodeTimes {
  // One entry per workload node (build_workload(g).nodes, same order): its name ("n3:conv")
  // and the median over the timed runs of its forward's wall time, ms.
  std::vector<std::string> names;
  std::vector<double> node_ms;
  double network_ms = 0;   // median whole forward (same runs, hook included)
  double unlisted_ms = 0;  // median time of nodes outside the workload (dead, zero-copy, none)
  double sum_node_ms() const;
};

// Times every node of g's inference forward pass on an input of `batch` samples (0.5 filled):
// `warmup` untimed runs, then `reps` timed ones, thread pinned (hw::measure_median_ms).
// warmup >= 0, reps >= 1.  min_timed_ms > 0 raises reps so that the timed runs last at least
// that long (estimated from the fastest warm-up run): a 20 us network timed 9 times is at the
// mercy of one context switch on a shared machine.
NodeTimes time_nodes_ms(const Genome& g, int batch, int warmup, int reps, std::uint64_t seed = 0,
                        double min_timed_ms = 0);

}  // namespace hwnas::spaces
