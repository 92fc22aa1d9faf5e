// The data-parallel supernet phase under mpirun (issue 16 item 3).  A one-shot strategy's phase
// runs on rank 0, inside the search loop; here it takes every rank along: rank 0 sends each worker
// the phase's request (tag kTagSupernetPhase), every rank builds the same environment from the
// broadcast config, and all of them train the supernet on their shard of every batch with the
// gradients summed by MPI_Allreduce (oneshot/data_shard.hpp says what is exchanged and how batch
// norm is treated).  Rank 0 then ranks and proposes alone and keeps SQLite; the workers go back
// to serving evaluation jobs.
//
// The phase runs at the strategy's first ask, before any job is submitted, so every worker is
// idle in its job loop when the request arrives.
#pragma once

#include <iosfwd>
#include <memory>
#include <string>

#include "oneshot/data_shard.hpp"
#include "search/config.hpp"
#include "strategies/oneshot.hpp"

namespace hwnas::search {

class MpiSession;

// The worker-loop tag of a phase request (mpi_transport.cpp's tags are 1-3).
constexpr int kTagSupernetPhase = 4;

// The two collectives over MPI_COMM_WORLD (every rank of the job takes part).
oneshot::DataShard make_mpi_shard();

// Threads per rank while every rank of the node computes (cores / local ranks, at least 1;
// HWNAS_PHASE_THREADS overrides, e.g. 1 for scaling measurements).
int phase_threads_per_rank();

// Coordinator: the one-shot environment of `config` whose phase runs on all ranks of `session`.
std::shared_ptr<const strategies::OneShotEnvironment> make_data_parallel_environment(
    const SearchConfig& config, std::ostream& progress, const MpiSession& session);

// Worker: takes part in the phase `request` (the payload of a kTagSupernetPhase message) and
// returns when it is over.  `config` is null when the worker could not parse it; then it only
// tells the other ranks so (they stop the phase with an error instead of waiting).  Never throws:
// a bad request (std::invalid_argument) fails on rank 0 the same way, which reports it; any other
// failure is written to stderr, and rank 0 learns of it from the agreement.
void join_data_parallel_phase(const SearchConfig* config, const std::string& request, int rank);

}  // namespace hwnas::search
