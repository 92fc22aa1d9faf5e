#include <oneapi/tbb/concurrent_queue.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "nn/parallel.hpp"
#include "search/executor.hpp"

namespace hwnas::search {

nlohmann::json Job::to_json() const {
  return {
      {"id", id}, {"genome", genome.to_json()}, {"fidelity", fidelity.to_json()}, {"seed", seed}};
}

Job Job::from_json(const nlohmann::json& j) {
  Job job;
  job.id = j.at("id").get<std::uint64_t>();
  job.genome = spaces::Genome::from_json(j.at("genome"));
  job.fidelity = eval::Fidelity::from_json(j.at("fidelity"));
  job.seed = j.at("seed").get<std::uint64_t>();
  return job;
}

JobResult run_job(eval::Evaluator& evaluator, const Job& job, int worker_rank) {
  JobResult r;
  r.id = job.id;
  r.worker_rank = worker_rank;
  auto t0 = std::chrono::steady_clock::now();
  try {
    r.result = evaluator.evaluate(job.genome, job.fidelity, job.seed);
  } catch (const eval::SetupError& e) {
    r.fatal = e.what();
  } catch (const std::exception& e) {
    r.result = eval::EvalResult{};
    r.result.error = std::string("evaluation threw: ") + e.what();
  } catch (...) {
    r.result = eval::EvalResult{};
    r.result.error = "evaluation threw a non-standard exception";
  }
  r.result.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

namespace {

class LocalExecutor final : public Executor {
 public:
  // One runner thread per evaluation slot; every runner enters the same task arena of `threads`
  // slots, reserved for the runners first, so the ops' inner parallel_for calls share one pool
  // of `threads` threads and concurrent candidates never oversubscribe the cores.  Runner
  // threads (rather than jobs enqueued as arena tasks) make the number of candidates in flight
  // exactly `workers`, independent of how many worker threads oneTBB's market grants.
  LocalExecutor(EvaluatorFactory factory, int workers, int threads)
      : workers_(std::max(
            1, workers > 0 ? workers : static_cast<int>(std::thread::hardware_concurrency()))),
        threads_(std::max(
            1, threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()))),
        arena_(std::max(threads_, 1), std::min(workers_, threads_)) {
    // All evaluators first: if one factory call throws, no runner thread exists yet.
    std::vector<std::unique_ptr<eval::Evaluator>> evaluators;
    for (int i = 0; i < workers_; ++i) evaluators.push_back(factory());
    for (auto& ev : evaluators)
      runners_.emplace_back([this, ev = std::move(ev)]() mutable { serve(*ev); });
  }

  ~LocalExecutor() override {
    shutdown();
    for (int i = 0; i < workers_; ++i) jobs_.push(std::nullopt);  // one stop token per runner
    for (auto& t : runners_) t.join();
  }

  int slots() const override { return workers_; }

  void submit(Job job) override {
    ++in_flight_;
    jobs_.push(std::move(job));
  }

  JobResult wait_next() override {
    JobResult r;
    results_.pop(r);
    --in_flight_;
    return r;
  }

  void shutdown() override {
    // Drain what is still running so no evaluation outlives the search.
    while (in_flight_ > 0) (void)wait_next();
  }

  std::string describe() const override {
    return "local oneTBB: " + std::to_string(workers_) + " concurrent evaluations on " +
           std::to_string(threads_) + " threads";
  }

 private:
  void serve(eval::Evaluator& evaluator) {
    while (true) {
      std::optional<Job> job;
      jobs_.pop(job);
      if (!job) return;
      JobResult r;
      arena_.execute([&] {
        // Isolation keeps this thread from picking up another candidate's task while it waits
        // in a parallel op, which would interleave two training loops on one thread.
        r = nn::run_isolated([&] { return run_job(evaluator, *job, 0); });
      });
      results_.push(std::move(r));
    }
  }

  int workers_;
  int threads_;
  oneapi::tbb::task_arena arena_;
  oneapi::tbb::concurrent_bounded_queue<std::optional<Job>> jobs_;
  oneapi::tbb::concurrent_bounded_queue<JobResult> results_;
  std::vector<std::thread> runners_;
  int in_flight_ = 0;
};

}  // namespace

std::unique_ptr<Executor> make_local_executor(EvaluatorFactory factory, int workers, int threads) {
  return std::make_unique<LocalExecutor>(std::move(factory), workers, threads);
}

}  // namespace hwnas::search
