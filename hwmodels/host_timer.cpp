#include "hwmodels/host_timer.hpp"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <vector>

namespace hwnas::hw {

namespace {
// Pins the calling thread to its current CPU for the guard's lifetime.
class PinGuard {
 public:
  PinGuard() {
    CPU_ZERO(&old_);
    if (sched_getaffinity(0, sizeof old_, &old_) != 0) return;
    const int cpu = sched_getcpu();
    if (cpu < 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pinned_ = sched_setaffinity(0, sizeof one, &one) == 0;
  }
  ~PinGuard() {
    if (pinned_) sched_setaffinity(0, sizeof old_, &old_);
  }
  PinGuard(const PinGuard&) = delete;
  PinGuard& operator=(const PinGuard&) = delete;

 private:
  cpu_set_t old_;
  bool pinned_ = false;
};
}  // namespace

double measure_median_ms(const std::function<void()>& run, int warmup, int reps) {
  if (warmup < 0) throw std::invalid_argument("measure_median_ms: warmup must be >= 0");
  if (reps < 1) throw std::invalid_argument("measure_median_ms: reps must be >= 1");
  PinGuard pin;
  for (int i = 0; i < warmup; ++i) run();
  std::vector<double> ms(static_cast<std::size_t>(reps));
  for (auto& m : ms) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    auto t1 = std::chrono::steady_clock::now();
    m = std::chrono::duration<double, std::milli>(t1 - t0).count();
  }
  auto mid = ms.begin() + static_cast<std::ptrdiff_t>(ms.size() / 2);
  std::nth_element(ms.begin(), mid, ms.end());
  if (ms.size() % 2 == 1) return *mid;
  const double hi = *mid;
  const double lo = *std::max_element(ms.begin(), mid);
  return 0.5 * (lo + hi);
}

}  // namespace hwnas::hw
