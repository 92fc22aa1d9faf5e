// Executors run evaluations; the search loop does not know whether they are oneTBB tasks in
// this process or MPI worker ranks.  The loop is the only caller (one thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "evaluators/evaluator.hpp"
#include "spaces/genome.hpp"

namespace hwnas::search {

struct Job {
  std::uint64_t id = 0;
  spaces::Genome genome;
  eval::Fidelity fidelity;
  std::uint64_t seed = 0;
  nlohmann::json to_json() const;
  static Job from_json(const nlohmann::json& j);
};

struct JobResult {
  std::uint64_t id = 0;
  int worker_rank = 0;
  eval::EvalResult result;
  std::string fatal;  // an eval::SetupError: the search must stop with this message
};

// Runs one job with the evaluator, turning any exception into a failed result (a bad candidate
// must never end the search); an eval::SetupError becomes JobResult::fatal instead.
JobResult run_job(eval::Evaluator& evaluator, const Job& job, int worker_rank);

// Thrown by Executor::wait_next when the search was asked to stop and the executor cannot
// wait for its running jobs (under mpirun, Ctrl-C sends SIGTERM to every worker rank too).
struct ExecutorInterrupted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Thrown by Executor::wait_next when every worker was given up (no answer within the worker
// timeout): the search cannot go on here, but what is stored is a run to resume.
struct WorkersLost : ExecutorInterrupted {
  using ExecutorInterrupted::ExecutorInterrupted;
};

// Called (on the loop's thread, from inside wait_next) when a worker is given up and its
// candidate re-submitted; the line says which worker, which candidate and why.
using WorkerEventSink = std::function<void(const std::string&)>;

class Executor {
 public:
  virtual ~Executor() = default;
  virtual int slots() const = 0;             // evaluations that can run at once
  virtual void submit(Job job) = 0;          // only while fewer than slots() are in flight
  virtual JobResult wait_next() = 0;         // blocks until some submitted job finishes
  virtual void shutdown() = 0;               // no more submits; idempotent
  virtual std::string describe() const = 0;  // "local: 2 workers x 1 threads"

  // A worker that has not answered its candidate within `seconds` (0 = never) is given up: it
  // gets no more work, its candidate goes to another worker with the same id and seed (so the
  // result is the one it would have given), and a late answer from it is dropped.  With every
  // worker given up, wait_next throws WorkersLost.
  virtual void set_worker_timeout(double seconds) = 0;
  void set_event_sink(WorkerEventSink sink) { sink_ = std::move(sink); }
  // Workers given up so far: a process that still has some must not wait for them at exit.
  virtual int lost_workers() const = 0;

 protected:
  void event(const std::string& what) const {
    if (sink_) sink_(what);
  }

 private:
  WorkerEventSink sink_;
};

using EvaluatorFactory = std::function<std::unique_ptr<eval::Evaluator>()>;

// oneTBB executor: `workers` evaluations at once inside one arena of `threads` threads, so ops'
// inner parallel_for share the same pool and the machine is never oversubscribed.
// Throws std::system_error (with a message naming `workers`/`threads`) when the runner threads
// cannot be created.
std::unique_ptr<Executor> make_local_executor(EvaluatorFactory factory, int workers, int threads);

// Test hook: HWNAS_TEST_HANG_WORKER=W:K makes worker W (an MPI rank, or local runner W counted
// from 1) hang forever on its K-th job, as a stopped process or a hung node would.  Returns
// whether worker `worker`'s `job`-th job (from 1) should hang.
bool test_hang_requested(int worker, int job);

}  // namespace hwnas::search
