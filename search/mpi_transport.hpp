// MPI as a transport (LightGBM-style facade): rank 0 coordinates and is the only SQLite writer;
// ranks 1..n-1 are workers that receive jobs as JSON messages and send results back.  Compiled
// only with HWNAS_WITH_MPI; without mpirun the same binary never touches MPI.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "search/executor.hpp"

namespace hwnas::search {

// True when this process was started by an MPI launcher (mpirun/srun/hydra), judged from the
// launcher's environment so a plain `hwnas search` never initialises MPI.
bool launched_under_mpi();

// Throws std::runtime_error("MPI <what> failed: <MPI's message>") unless rc is MPI_SUCCESS (the
// communicator returns errors instead of aborting, so the coordinator can still store).
void check_mpi(int rc, const char* what);

// RAII over MPI_Init_thread / MPI_Finalize for the lifetime of main() (never from a destructor
// of a global: finalisation order matters).
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank 0's string reaches every rank.
  std::string broadcast(const std::string& from_root) const;
  // Ends the whole job with a nonzero code (used when rank 0 fails before workers are released).
  [[noreturn]] void abort(int code) const;

 private:
  int rank_ = 0, size_ = 1;
};

// Coordinator side: one slot per worker rank.
std::unique_ptr<Executor> make_mpi_executor(const MpiSession& session);

// Worker side: serves jobs until the coordinator says stop.  Returns the process exit code.
// A non-empty setup_error (or a factory that throws) makes every answer fatal with it.  A
// supernet-phase request (search/mpi_data_parallel.hpp) is handed to `join_phase`, which returns
// when the phase is over; then the worker serves jobs again.
int run_mpi_worker(const MpiSession& session, const EvaluatorFactory& factory,
                   const std::string& setup_error = "",
                   const std::function<void(const std::string& request)>& join_phase = {});

// Threads each worker rank should use so the ranks on one node share its cores.
int worker_threads_per_rank();

}  // namespace hwnas::search
