// `hwnas runs`, `hwnas pareto` and `hwnas show`: read-only queries of a results database, safe
// to run while a search is writing the same file (WAL; the database is opened read-only and is
// never created when missing).
//
//   hwnas runs   --db F [--format table|json|csv]   (a "running" run whose coordinator is gone
//                shows as "stale": search/resume.hpp; json adds host, pid, heartbeat)
//   hwnas pareto --db F [--run ID] --device NAME [--format table|json|csv]   (default: latest run;
//                a killed run that stored no fronts gets them computed from its evaluations)
//   hwnas show   --db F ARCH [--format table|json|csv]    (ARCH: numeric id or hash / hash prefix)
//
// Output goes to stdout.  Errors: each subcommand prints exactly one line "error: <what>" to
// stderr itself and then throws CLI::RuntimeError carrying the exit code, which main returns
// without printing anything more:
//   exit 2 (kUsageExitCode): bad input — missing or non-hwnas database file, schema newer than
//          this build, unknown run / device / architecture, ambiguous hash prefix, bad --format;
//   exit 1: anything else failing while querying (I/O error, corrupt rows).
// Missing or malformed options (e.g. no --db) are CLI11 parse errors, reported by main.
#pragma once

#include <CLI/CLI.hpp>

namespace hwnas::search {

void add_db_commands(CLI::App& app);

}  // namespace hwnas::search
