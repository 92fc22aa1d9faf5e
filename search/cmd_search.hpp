// `hwnas search`, `hwnas rescore` and `hwnas config` subcommands.
//
// `hwnas search CONFIG [--resume [--run ID]]`: a new run, or the continuation of a killed,
// interrupted or failed one (search/resume.hpp says which runs qualify).  Exit codes, the same
// locally and under mpirun: 0 finished; 2 bad input (config, --resume refused); 1 other
// failures (a failed run: fix the cause and --resume it); 128 + signal number when SIGINT
// (130), SIGTERM (143) or SIGHUP (129) interrupted it: the run is stored as interrupted with
// its fronts, and stderr says how to resume it.  SIGPIPE is ignored: progress or fronts written
// to a closed pipe are dropped and the search goes on.
#pragma once

#include <CLI/CLI.hpp>

namespace hwnas::search {

void add_search_commands(CLI::App& app);

// The error type every subcommand throws for bad user input: main prints "error: <what>" on
// one line and exits with kUsageExitCode.
inline constexpr int kUsageExitCode = 2;

}  // namespace hwnas::search
