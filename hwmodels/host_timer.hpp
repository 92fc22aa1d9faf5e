// Wall-clock timing of a callable on the host, for the "host" device family and for
// `hwnas hw measure`: warm-up runs, then the median of `reps` timed runs, with the calling
// thread pinned to the CPU it is on (sched_setaffinity) so that migrations do not add noise;
// the previous affinity mask is restored afterwards, also on exceptions.
#pragma once

#include <functional>

namespace hwnas::hw {

// Median wall time of run() in milliseconds.  warmup >= 0, reps >= 1 (else std::invalid_argument).
double measure_median_ms(const std::function<void()>& run, int warmup, int reps);

}  // namespace hwnas::hw
