// What `hwnas train` and `hwnas export` share: opening a results database that must already
// exist, resolving an architecture reference (numeric id or hash prefix, as `hwnas show` does),
// picking the run whose config retrains it, and printing an architecture's held-out test figures
// in `hwnas show`.  Bad input throws ArchRefError (std::invalid_argument: exit code 2).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "db/export.hpp"
#include "db/store.hpp"
#include "search/config.hpp"
#include "spaces/genome.hpp"

namespace hwnas::search {

struct ArchRefError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Opens `path`; a missing file or one that is not an hwnas database is an ArchRefError (a
// read-write open would otherwise create an empty database).
std::unique_ptr<db::Store> open_existing_store(const std::string& path, bool read_only);

// "12" (an id) or "21f6547f" (a unique hash prefix) -> the architecture id.
std::int64_t resolve_arch_ref(const db::Store& store, const std::string& ref);

// The architecture's genome, validated.
spaces::Genome stored_genome(const db::Store& store, std::int64_t arch_id);

// `run` >= 0: that run (must exist); -1: the latest run that evaluated the architecture, else the
// latest run.  Returns the run's stored config, parsed and validated again.
struct RunConfig {
  std::int64_t run_id = 0;
  SearchConfig config;
};
RunConfig stored_run_config(const db::Store& store, std::int64_t arch_id, long long run);

// The label every printout of a test figure carries.
inline constexpr const char* kTestLabel = "TEST (held out; not used for selection)";

// `shown` (format_architecture's output) with the architecture's test results added: a labelled
// table (table format), a "test_results_held_out" object (json); csv is returned unchanged (it
// is the costs table, one table per file).  Unchanged when there are no results.
std::string with_test_results(const std::string& shown,
                              const std::vector<db::TestResultRecord>& results, db::Format f);

}  // namespace hwnas::search
