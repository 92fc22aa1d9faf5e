// Executors run evaluations; the search loop does not know whether they are oneTBB tasks in
// this process or MPI worker ranks.  The loop is the only caller (one thread).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

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

class Executor {
 public:
  virtual ~Executor() = default;
  virtual int slots() const = 0;             // evaluations that can run at once
  virtual void submit(Job job) = 0;          // only while fewer than slots() are in flight
  virtual JobResult wait_next() = 0;         // blocks until some submitted job finishes
  virtual void shutdown() = 0;               // no more submits; idempotent
  virtual std::string describe() const = 0;  // "local: 2 workers x 1 threads"
};

using EvaluatorFactory = std::function<std::unique_ptr<eval::Evaluator>()>;

// oneTBB executor: `workers` evaluations at once inside one arena of `threads` threads, so ops'
// inner parallel_for share the same pool and the machine is never oversubscribed.
std::unique_ptr<Executor> make_local_executor(EvaluatorFactory factory, int workers, int threads);

}  // namespace hwnas::search
