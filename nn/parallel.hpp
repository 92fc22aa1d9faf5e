// Thread policy.
//
// hwnas uses one oneTBB pool for everything: the executor runs several candidates' training
// loops as TBB tasks, and ops parallelise over batch or channels with tbb::parallel_for inside
// the same pool.  Because both levels share one arena, the total number of busy threads never
// exceeds the pool size set by ThreadBudget (default: all cores), so parallel candidates do not
// oversubscribe the machine.  Eigen is compiled with EIGEN_DONT_PARALLELIZE so it never spawns
// threads of its own.  A training loop must run inside run_isolated() so that a thread waiting
// in a parallel op only picks up work of its own loop (grad mode is thread-local).
#pragma once

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <cstdint>
#include <memory>

namespace hwnas::nn {

// Caps the pool for its lifetime (RAII over tbb::global_control).  0 = all cores.
class ThreadBudget {
 public:
  explicit ThreadBudget(int threads);
  int threads() const { return threads_; }

 private:
  int threads_;
  std::unique_ptr<oneapi::tbb::global_control> control_;
};

template <class F>
auto run_isolated(F&& f) {
  return oneapi::tbb::this_task_arena::isolate(std::forward<F>(f));
}

// Below this many scalar operations an op runs serially: task overhead would dominate.
constexpr std::int64_t kParallelGrainFlops = 1 << 15;

}  // namespace hwnas::nn
