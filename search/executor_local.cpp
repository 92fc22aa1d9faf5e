#include <oneapi/tbb/concurrent_queue.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
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

bool test_hang_requested(int worker, int job) {
  static const std::pair<int, int> target = [] {
    std::pair<int, int> t{-1, -1};
    if (const char* v = std::getenv("HWNAS_TEST_HANG_WORKER"))
      if (std::sscanf(v, "%d:%d", &t.first, &t.second) != 2) t = {-1, -1};
    return t;
  }();
  return worker == target.first && job == target.second;
}

namespace {

using Clock = std::chrono::steady_clock;

// Hangs the calling thread for good (HWNAS_TEST_HANG_WORKER), as a stopped process would.
[[noreturn]] void hang_forever() {
  while (true) std::this_thread::sleep_for(std::chrono::hours(1));
}

class LocalExecutor final : public Executor {
 public:
  // One runner thread per evaluation slot; every runner enters the same task arena of `threads`
  // slots, reserved for the runners first, so the ops' inner parallel_for calls share one pool
  // of `threads` threads and concurrent candidates never oversubscribe the cores.  Runner
  // threads (rather than jobs enqueued as arena tasks) make the number of candidates in flight
  // exactly `workers`, independent of how many worker threads oneTBB's market grants.
  LocalExecutor(EvaluatorFactory factory, int workers, int threads)
      : factory_(std::move(factory)),
        workers_(std::max(
            1, workers > 0 ? workers : static_cast<int>(std::thread::hardware_concurrency()))),
        threads_(std::max(
            1, threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()))),
        shared_(std::make_shared<Shared>()) {
    shared_->arena = std::make_shared<oneapi::tbb::task_arena>(std::max(threads_, 1),
                                                               std::min(workers_, threads_));
    // All evaluators first: if one factory call throws, no runner thread exists yet.
    std::vector<std::unique_ptr<eval::Evaluator>> evaluators;
    for (int i = 0; i < workers_; ++i) evaluators.push_back(factory_());
    try {
      for (auto& ev : evaluators) start_runner(std::move(ev), shared_->arena);
    } catch (const std::system_error& e) {
      // Runners already started wait for jobs: stop and join them, or their std::thread
      // destructors would call std::terminate.
      const std::size_t started = runners_.size();
      stop_and_join();
      throw std::runtime_error(
          "could not start the local runner threads (" + std::to_string(started) + " of " +
          std::to_string(workers_) + " started; workers " + std::to_string(workers_) +
          ", threads " + std::to_string(threads_) + "): " + e.what() +
          "; lower --workers (or \"workers\"/\"threads\" in the config) or raise the "
          "process's thread or memory limit (ulimit -u, ulimit -v)");
    }
  }

  ~LocalExecutor() override {
    try {
      shutdown();
    } catch (...) {  // every runner given up: nothing left to drain
    }
    stop_and_join();
  }

  int slots() const override { return workers_; }

  void submit(Job job) override {
    ++in_flight_;
    shared_->jobs.push(std::move(job));
  }

  JobResult wait_next() override {
    std::unique_lock lock(shared_->mutex);
    while (shared_->results.empty()) {
      if (timeout_ <= 0) {
        shared_->ready.wait(lock);
        continue;
      }
      // Wake at the earliest deadline of a running candidate (or in a second, when none runs).
      Clock::time_point wake = Clock::now() + std::chrono::seconds(1);
      const auto limit =
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
      for (auto& r : runners_)
        if (r.state->job && !r.state->lost) wake = std::min(wake, r.state->since + limit);
      if (shared_->ready.wait_until(lock, wake) == std::cv_status::timeout &&
          shared_->results.empty())
        give_up_expired(lock, limit);
    }
    JobResult r = std::move(shared_->results.front());
    shared_->results.pop_front();
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

  void set_worker_timeout(double seconds) override { timeout_ = seconds; }
  int lost_workers() const override { return lost_; }

 private:
  // What a runner is doing, under Shared::mutex.  A runner given up keeps its state (and the
  // Shared block and arena) alive through shared_ptrs, so if it ever returns after the executor
  // is gone it touches nothing freed.
  struct RunnerState {
    int number = 0;          // 1, 2, ...: replacements get new numbers
    std::optional<Job> job;  // the candidate it is running
    Clock::time_point since;
    bool lost = false;      // given up: its answer is dropped and it takes no more jobs
    bool finished = false;  // its thread function has returned
  };
  struct Shared {
    std::mutex mutex;
    std::condition_variable ready;
    std::deque<JobResult> results;
    std::shared_ptr<oneapi::tbb::task_arena> arena;
    oneapi::tbb::concurrent_bounded_queue<std::optional<Job>> jobs;
  };
  struct Runner {
    std::thread thread;
    std::shared_ptr<RunnerState> state;
  };

  void start_runner(std::unique_ptr<eval::Evaluator> ev,
                    std::shared_ptr<oneapi::tbb::task_arena> arena) {
    auto state = std::make_shared<RunnerState>();
    state->number = ++runners_started_;
    std::thread t([shared = shared_, state, arena, ev = std::move(ev)]() mutable {
      serve(*ev, *shared, *state, *arena);
      std::lock_guard lock(shared->mutex);
      state->finished = true;
    });
    runners_.push_back({std::move(t), std::move(state)});
  }

  // Runs jobs until a stop token or until it is given up.  Static: a runner given up may
  // return after the executor is gone.
  static void serve(eval::Evaluator& evaluator, Shared& shared, RunnerState& state,
                    oneapi::tbb::task_arena& arena) {
    int served = 0;
    while (true) {
      std::optional<Job> job;
      shared.jobs.pop(job);
      if (!job) return;
      {
        std::lock_guard lock(shared.mutex);
        state.job = *job;
        state.since = Clock::now();
      }
      if (test_hang_requested(state.number, ++served)) hang_forever();
      JobResult r;
      arena.execute([&] {
        // Isolation keeps this thread from picking up another candidate's task while it waits
        // in a parallel op, which would interleave two training loops on one thread.
        r = nn::run_isolated([&] { return run_job(evaluator, *job, 0); });
      });
      std::lock_guard lock(shared.mutex);
      state.job.reset();
      if (state.lost) return;  // its candidate went to another runner: drop this answer
      shared.results.push_back(std::move(r));
      shared.ready.notify_one();
    }
  }

  // Gives up every runner whose candidate is past the limit: the candidate goes to a new
  // runner (once; a candidate that outlasts two runners fails instead, so one candidate that
  // hangs every evaluator cannot take every slot).  Called with the lock held.
  void give_up_expired(std::unique_lock<std::mutex>& lock, Clock::duration limit) {
    const auto now = Clock::now();
    std::vector<Job> resubmit;
    std::vector<std::string> events;  // reported after the lock is released: the sink stores
    for (auto& r : runners_) {
      RunnerState& s = *r.state;
      if (!s.job || s.lost || now - s.since < limit) continue;
      s.lost = true;
      ++lost_;
      const std::uint64_t id = s.job->id;
      std::string what = "local runner " + std::to_string(s.number) + " gave no answer for " +
                         "candidate " + std::to_string(id) + " within " + seconds_text() +
                         "; runner given up";
      if (given_up_before_.insert(id).second) {
        resubmit.push_back(*s.job);
        what += ", candidate re-submitted to a new runner";
      } else {
        JobResult failed;
        failed.id = id;
        failed.result.error = "no answer within " + seconds_text() + " on two workers";
        shared_->results.push_back(std::move(failed));
        what += ", candidate failed (no answer on two workers)";
      }
      s.job.reset();
      events.push_back(std::move(what));
    }
    if (events.empty()) return;
    lock.unlock();
    for (const auto& what : events) event(what);
    for (auto& job : resubmit) {
      // The stuck runner may hold its arena slots for good: the new runner gets its own arena
      // of the per-runner share of the threads.
      try {
        start_runner(factory_(), std::make_shared<oneapi::tbb::task_arena>(
                                     std::max(1, threads_ / workers_), 1));
      } catch (const std::exception& e) {
        lock.lock();
        throw WorkersLost("could not start a runner in place of one given up: " +
                          std::string(e.what()));
      }
      shared_->jobs.push(std::move(job));
    }
    lock.lock();
  }

  std::string seconds_text() const {
    std::ostringstream os;
    os << timeout_ << " s (worker_timeout_seconds)";
    return os.str();
  }

  // Stop tokens for the runners still serving; joins them, and leaves the ones given up (and
  // still stuck) running on their own: they cannot be interrupted, and join would wait forever.
  void stop_and_join() {
    int serving = 0;
    for (auto& r : runners_) {
      std::lock_guard lock(shared_->mutex);
      if (!r.state->lost) ++serving;
    }
    for (int i = 0; i < serving; ++i) shared_->jobs.push(std::nullopt);
    for (auto& r : runners_) {
      if (!r.thread.joinable()) continue;
      bool stuck;
      {
        std::lock_guard lock(shared_->mutex);
        stuck = r.state->lost && !r.state->finished;
      }
      if (stuck)
        r.thread.detach();
      else
        r.thread.join();
    }
  }

  EvaluatorFactory factory_;
  int workers_;
  int threads_;
  std::shared_ptr<Shared> shared_;
  std::vector<Runner> runners_;
  int runners_started_ = 0;
  int in_flight_ = 0;
  double timeout_ = 0;
  int lost_ = 0;
  std::set<std::uint64_t> given_up_before_;  // candidates already re-submitted once
};

}  // namespace

std::unique_ptr<Executor> make_local_executor(EvaluatorFactory factory, int workers, int threads) {
  return std::make_unique<LocalExecutor>(std::move(factory), workers, threads);
}

}  // namespace hwnas::search
