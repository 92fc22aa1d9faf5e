#include <oneapi/tbb/concurrent_queue.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "nn/parallel.hpp"
#include "search/executor.hpp"

namespace hwnas::search {

nlohmann::json Job::to_json() const {
  return {{"id", id}, {"genome", genome.to_json()}, {"fidelity", fidelity.to_json()}, {"seed", seed}};
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
  }
  r.result.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

namespace {

class LocalExecutor final : public Executor {
 public:
  LocalExecutor(EvaluatorFactory factory, int workers, int threads)
      : workers_(workers > 0 ? workers : static_cast<int>(std::thread::hardware_concurrency())),
        threads_(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency())),
        // The coordinating thread only waits on the result queue, so the arena reserves no slot
        // for it and the global limit counts it on top of the pool.
        control_(oneapi::tbb::global_control::max_allowed_parallelism,
                 static_cast<std::size_t>(threads_) + 1),
        arena_(threads_, 0) {
    if (workers_ < 1) workers_ = 1;
    for (int i = 0; i < workers_; ++i) free_.push_back(factory());
  }

  ~LocalExecutor() override { shutdown(); }

  int slots() const override { return workers_; }

  void submit(Job job) override {
    ++in_flight_;
    arena_.enqueue([this, job = std::move(job)]() {
      std::unique_ptr<eval::Evaluator> ev = acquire();
      // Isolation keeps this thread from picking up another candidate's task while it waits in
      // a parallel op, which would interleave two training loops on one thread.
      JobResult r = nn::run_isolated([&] { return run_job(*ev, job, 0); });
      release(std::move(ev));
      results_.push(std::move(r));
    });
  }

  JobResult wait_next() override {
    JobResult r;
    results_.pop(r);
    --in_flight_;
    return r;
  }

  void shutdown() override {
    // Drain what is still running so no task outlives the executor.
    while (in_flight_ > 0) (void)wait_next();
  }

  std::string describe() const override {
    return "local oneTBB: " + std::to_string(workers_) + " concurrent evaluations on " +
           std::to_string(threads_) + " threads";
  }

 private:
  std::unique_ptr<eval::Evaluator> acquire() {
    std::lock_guard<std::mutex> lock(mutex_);
    auto ev = std::move(free_.back());
    free_.pop_back();
    return ev;
  }
  void release(std::unique_ptr<eval::Evaluator> ev) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(ev));
  }

  int workers_;
  int threads_;
  oneapi::tbb::global_control control_;
  oneapi::tbb::task_arena arena_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<eval::Evaluator>> free_;
  oneapi::tbb::concurrent_bounded_queue<JobResult> results_;
  int in_flight_ = 0;
};

}  // namespace

std::unique_ptr<Executor> make_local_executor(EvaluatorFactory factory, int workers, int threads) {
  return std::make_unique<LocalExecutor>(std::move(factory), workers, threads);
}

}  // namespace hwnas::search
