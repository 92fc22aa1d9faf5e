// `hwnas search`, `hwnas rescore` and `hwnas config` subcommands.
//
// `hwnas search CONFIG [--resume [--run ID]]`: a new run, or the continuation of a killed,
// interrupted or failed one (search/resume.hpp says which runs qualify).  Exit codes, the same
// locally and under mpirun: 0 finished; 2 bad input (config, --resume refused); 1 other
// failures (a failed run: fix the cause and --resume it); 128 + signal number when SIGINT
// (130), SIGTERM (143) or SIGHUP (129) interrupted it: the run is stored as interrupted with
// its fronts, and stderr says how to resume it; 75 (EX_TEMPFAIL) when every worker was given up
// (worker_timeout_seconds) or a worker rank died: stored as interrupted, resume it the same way; 3
// when the run finished on the workers left after some were given up (every result stored; see
// kWorkersGivenUpExitCode).  SIGPIPE is ignored: progress or fronts written
// to a closed pipe are dropped and the search goes on.
#pragma once

#include <CLI/CLI.hpp>

namespace hwnas::search {

void add_search_commands(CLI::App& app);

// The error type every subcommand throws for bad user input: main prints "error: <what>" on
// one line and exits with kUsageExitCode.
inline constexpr int kUsageExitCode = 2;
// A search that stopped because every worker was given up (no answer within
// worker_timeout_seconds) or a worker rank died: EX_TEMPFAIL, the run is stored as interrupted
// and resumable.
inline constexpr int kWorkersLostExitCode = 75;
// A search that finished, every result stored, after some workers were given up.  Not 0: under
// mpirun the coordinator cannot call MPI_Finalize (it waits for every rank, a stopped one too)
// and a rank that exits 0 without it makes mpirun fail the job, so the coordinator exits with
// this code, and the local run with the same one.
inline constexpr int kWorkersGivenUpExitCode = 3;

}  // namespace hwnas::search
