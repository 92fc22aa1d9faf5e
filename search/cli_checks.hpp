// Validators of numeric flags with readable ranges.  CLI11's NonNegativeNumber / PositiveNumber
// answer a bad value with a range up to DBL_MAX (a 300-digit number); these name the real one.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>

namespace hwnas::search {

// A stored run's id: 1 or more (0 and negative ids never mean "the latest").
inline CLI::Range run_id_range() { return CLI::Range(1LL, 999'999'999'999LL); }
// Seeds of searches and training: what the config accepts.
inline CLI::Range seed_range() { return CLI::Range(0LL, 4'294'967'295LL); }
// Evaluations of one search.
inline CLI::Range budget_range() { return CLI::Range(1, 100'000'000); }
// Concurrent local evaluations (0 = one per core).
inline CLI::Range workers_range() { return CLI::Range(0, 4096); }
// Seconds between rewrites of a watched report (0 = write once).
inline CLI::Range seconds_range() { return CLI::Range(0.0, 86'400.0); }

}  // namespace hwnas::search
