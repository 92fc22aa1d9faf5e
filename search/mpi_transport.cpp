#include "search/mpi_transport.hpp"

#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "nn/parallel.hpp"
#include "search/mpi_data_parallel.hpp"
#include "search/resume.hpp"
#include "search/search_loop.hpp"

namespace hwnas::search {
namespace {

enum Tag : int { kTagJob = 1, kTagResult = 2, kTagStop = 3 };
static_assert(kTagSupernetPhase > kTagStop, "the phase tag must not collide with the job tags");

void send_string(const std::string& s, int dest, int tag) {
  check_mpi(MPI_Send(s.data(), static_cast<int>(s.size()), MPI_CHAR, dest, tag, MPI_COMM_WORLD),
            "send");
}

// Waits for a message without MPI's busy polling: on a 2-core machine a spinning coordinator
// would take a whole core from the workers.
MPI_Status wait_for_message(int source, int tag) {
  MPI_Status status;
  int flag = 0;
  auto sleep = std::chrono::microseconds(50);
  while (true) {
    check_mpi(MPI_Iprobe(source, tag, MPI_COMM_WORLD, &flag, &status), "probe");
    if (flag) return status;
    std::this_thread::sleep_for(sleep);
    if (sleep < std::chrono::milliseconds(5)) sleep *= 2;
  }
}

std::string receive_string(const MPI_Status& probed) {
  int count = 0;
  MPI_Get_count(&probed, MPI_CHAR, &count);
  std::string s(static_cast<std::size_t>(count), '\0');
  check_mpi(MPI_Recv(s.data(), count, MPI_CHAR, probed.MPI_SOURCE, probed.MPI_TAG, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE),
            "recv");
  return s;
}

// Every rank's host and pid, gathered on rank 0 once at start (run_mpi_worker's first call
// matches make_mpi_executor's).
constexpr int kPeerBytes = 256;

std::vector<std::pair<std::string, long>> gather_peers(const MpiSession& s) {
  std::string mine = this_host() + " " + std::to_string(::getpid());
  mine.resize(kPeerBytes - 1);
  mine.push_back('\0');
  std::vector<char> all(s.rank() == 0 ? static_cast<std::size_t>(kPeerBytes) * s.size() : 0);
  check_mpi(MPI_Gather(mine.data(), kPeerBytes, MPI_CHAR, all.data(), kPeerBytes, MPI_CHAR, 0,
                       MPI_COMM_WORLD),
            "gather");
  std::vector<std::pair<std::string, long>> out;
  for (int r = 0; s.rank() == 0 && r < s.size(); ++r) {
    const std::string entry(all.data() + static_cast<std::size_t>(r) * kPeerBytes);
    const auto space = entry.rfind(' ');
    out.emplace_back(entry.substr(0, space), std::atol(entry.c_str() + space + 1));
  }
  return out;
}

class MpiExecutor final : public Executor {
 public:
  explicit MpiExecutor(const MpiSession& s) : session_(s) {
    for (int r = s.size() - 1; r >= 1; --r) idle_.push_back(r);
    // Worker ranks on this node can be watched directly: without ULFM (Open MPI 4) a rank that
    // dies is never reported through MPI, and mpirun kills the whole job one second after
    // (SIGCONT, a second, then SIGTERM and SIGKILL at once), too soon for a SIGTERM handler.
    const auto peers = gather_peers(s);
    for (int r = 1; r < s.size(); ++r)
      if (peers[r].first == peers[0].first) local_pids_[r] = peers[r].second;
  }
  ~MpiExecutor() override {
    try {
      shutdown();
    } catch (...) {  // every worker given up: nothing to drain, nobody to release
    }
  }

  int slots() const override { return session_.size() - 1; }

  void submit(Job job) override {
    ++in_flight_;
    // With workers given up there are fewer ranks than slots: the job waits for a free one.
    queued_.push_back(std::move(job));
    try {
      send_queued();
    } catch (const std::runtime_error& e) {
      peer_failed(e);
    }
  }

  JobResult wait_next() override {
    try {
      return wait_next_unchecked();
    } catch (const ExecutorInterrupted&) {
      throw;
    } catch (const std::runtime_error& e) {
      peer_failed(e);
    }
  }

  JobResult wait_next_unchecked() {
    auto sleep = std::chrono::microseconds(50);
    while (true) {
      // A stop request (SIGINT/SIGTERM; mpirun forwards Ctrl-C as SIGTERM to every rank, so
      // the workers are gone) ends the wait instead of waiting for results that never come.
      if (g_stop_requested.load()) throw ExecutorInterrupted("stop requested");
      int flag = 0;
      MPI_Status st;
      check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, kTagResult, MPI_COMM_WORLD, &flag, &st), "probe");
      if (flag) {
        std::string payload = receive_string(st);
        const int rank = st.MPI_SOURCE;
        if (lost_.count(rank)) continue;  // a late answer of a rank given up: already redone
        if (auto it = busy_.find(rank); it != busy_.end()) {
          // Answered, so the job was received: the send is complete.
          check_mpi(MPI_Wait(&it->second.request, MPI_STATUS_IGNORE), "send");
          busy_.erase(it);
        }
        idle_.push_back(rank);
        --in_flight_;
        send_queued();
        auto j = nlohmann::json::parse(payload);
        JobResult r;
        r.id = j.at("id").get<std::uint64_t>();
        r.worker_rank = rank;
        r.result = eval::EvalResult::from_json(j.at("result"));
        r.fatal = j.value("fatal", std::string());
        return r;
      }
      if (!failed_.empty()) {  // a candidate that outlasted two ranks
        JobResult r = std::move(failed_.front());
        failed_.pop_front();
        --in_flight_;
        return r;
      }
      if (timeout_ > 0) give_up_expired(Clock::now());
      check_local_workers_alive();
      std::this_thread::sleep_for(sleep);
      if (sleep < std::chrono::milliseconds(5)) sleep *= 2;
    }
  }

  void shutdown() override {
    if (stopped_) return;
    stopped_ = true;
    // The launcher signalled the workers too (stop request), or no rank is left to answer:
    // nothing to drain.
    if (g_stop_requested || live_workers() == 0) return;
    while (in_flight_ > 0) (void)wait_next();
    // Ranks given up get the stop too: one that was only stopped (SIGSTOP) and resumes reads
    // it after its late answer and exits.
    for (int r = 1; r < session_.size(); ++r) send_string("", r, kTagStop);
  }

  std::string describe() const override {
    // mpirun answers Ctrl-C by killing every rank at once; SIGTERM to the coordinator alone
    // stops the search cleanly (fronts stored, run marked interrupted), so say where it is.
    return "MPI: coordinator rank 0 (pid " + std::to_string(::getpid()) +
           ", stop cleanly with kill -TERM) + " + std::to_string(slots()) + " worker ranks x " +
           std::to_string(worker_threads_per_rank()) + " threads";
  }

  void set_worker_timeout(double seconds) override { timeout_ = seconds; }
  int lost_workers() const override { return static_cast<int>(lost_.size()); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Dispatched {
    Job job;
    Clock::time_point since;
    // The job's message, sent without waiting: above the eager limit a send completes only
    // when the worker receives it, never for a stopped one.  Its own allocation, so the buffer
    // stays put while the request is pending, also after the rank is given up.
    std::unique_ptr<std::string> payload;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  int live_workers() const { return session_.size() - 1 - static_cast<int>(lost_.size()); }

  // Under Open MPI 4 an MPI error on the coordinator means a worker rank has died (mpirun is
  // about to end the job): the search stops as interrupted, resumable, not failed.
  [[noreturn]] void peer_failed(const std::runtime_error& e) {
    if (dynamic_cast<const ExecutorInterrupted*>(&e)) throw;
    last_alive_check_ = {};
    check_local_workers_alive();  // the specific message when a local rank is gone
    throw WorkersLost(std::string(e.what()) + "; a worker rank has probably died");
  }

  // A worker rank on this node that has died ends the search at once (stored as interrupted,
  // resumable) while mpirun still lets the coordinator run; checked every 50 ms.
  void check_local_workers_alive() {
    const auto now = Clock::now();
    if (now - last_alive_check_ < std::chrono::milliseconds(50)) return;
    last_alive_check_ = now;
    for (const auto& [rank, pid] : local_pids_)
      if (!lost_.count(rank) && !pid_alive(pid))
        throw WorkersLost("worker rank " + std::to_string(rank) + " (pid " + std::to_string(pid) +
                          ") died; under mpirun the job ends with it");
  }

  void send_queued() {
    while (!queued_.empty() && !idle_.empty()) {
      const int rank = idle_.back();
      idle_.pop_back();
      auto payload = std::make_unique<std::string>(queued_.front().to_json().dump());
      Dispatched& d = busy_[rank];
      d = {std::move(queued_.front()), Clock::now(), std::move(payload), MPI_REQUEST_NULL};
      queued_.pop_front();
      check_mpi(MPI_Isend(d.payload->data(), static_cast<int>(d.payload->size()), MPI_CHAR, rank,
                          kTagJob, MPI_COMM_WORLD, &d.request),
                "send");
    }
  }

  // Ranks whose candidate is past the limit are given up for good (a stopped process or a hung
  // node cannot be told apart from a slow one, and a late answer must not be stored twice);
  // the candidate goes to the next free rank, once: a candidate that outlasts two ranks fails,
  // so one candidate that hangs every worker cannot take them all.
  void give_up_expired(Clock::time_point now) {
    const auto limit =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
    for (auto it = busy_.begin(); it != busy_.end();) {
      if (now - it->second.since < limit) {
        ++it;
        continue;
      }
      const int rank = it->first;
      Job job = std::move(it->second.job);
      abandoned_sends_.push_back(std::move(it->second));  // its send may never complete
      it = busy_.erase(it);
      lost_.insert(rank);
      std::ostringstream what;
      what << "worker rank " << rank << " gave no answer for candidate " << job.id << " within "
           << timeout_ << " s (worker_timeout_seconds); rank given up";
      if (given_up_before_.insert(job.id).second) {
        what << ", candidate re-submitted to another rank";
        queued_.push_front(std::move(job));
      } else {
        what << ", candidate failed (no answer on two ranks)";
        JobResult r;
        r.id = job.id;
        r.worker_rank = rank;
        r.result.error = "no answer within " + std::to_string(timeout_) + " s on two ranks";
        failed_.push_back(std::move(r));
      }
      event(what.str());
    }
    if (live_workers() == 0)
      throw WorkersLost("every worker rank was given up (no answer within " +
                        std::to_string(timeout_) + " s, worker_timeout_seconds)");
    send_queued();
  }

  const MpiSession& session_;
  std::vector<int> idle_;
  std::map<int, Dispatched> busy_;  // by rank: the candidate it runs and since when
  std::deque<Job> queued_;          // submitted, waiting for a free rank
  std::deque<JobResult> failed_;    // candidates given up on two ranks, to report as failed
  std::set<int> lost_;
  std::set<std::uint64_t> given_up_before_;
  std::vector<Dispatched> abandoned_sends_;  // to ranks given up: buffers kept, never waited
  std::map<int, long> local_pids_;           // worker ranks on this node
  Clock::time_point last_alive_check_{};
  int in_flight_ = 0;
  double timeout_ = 0;
  bool stopped_ = false;
};

}  // namespace

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string("MPI ") + what + " failed: " + std::string(msg, len));
  }
}

bool launched_under_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "init");
  // Errors come back as codes (check_mpi() turns them into exceptions) instead of aborting the
  // job, so the coordinator can still store what it has when a worker dies.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiSession::~MpiSession() { MPI_Finalize(); }

std::string MpiSession::broadcast(const std::string& from_root) const {
  unsigned long long n = from_root.size();
  check_mpi(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD), "bcast");
  std::string s = rank_ == 0 ? from_root : std::string(n, '\0');
  check_mpi(MPI_Bcast(s.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD), "bcast");
  return s;
}

void MpiSession::abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

std::unique_ptr<Executor> make_mpi_executor(const MpiSession& session) {
  if (session.size() < 2)
    throw std::invalid_argument("mpirun needs at least 2 ranks (1 coordinator + workers), got " +
                                std::to_string(session.size()));
  return std::make_unique<MpiExecutor>(session);
}

int worker_threads_per_rank() {
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  int local = 1;
  if (const char* s = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) local = std::max(1, std::atoi(s));
  // The coordinator mostly sleeps, so it is not counted unless it is alone with one worker.
  int workers_here = std::max(1, local - 1);
  return std::max(1, cores / workers_here);
}

int run_mpi_worker(const MpiSession& session, const EvaluatorFactory& factory,
                   const std::string& setup_error,
                   const std::function<void(const std::string&)>& join_phase) {
  (void)gather_peers(session);  // matches the coordinator's make_mpi_executor
  nn::ThreadBudget budget(worker_threads_per_rank());
  // A worker that cannot set up (dataset missing, table unreadable) keeps serving and answers
  // every job with the error as fatal, so rank 0 ends the search cleanly with that message
  // instead of waiting forever for a dead rank.
  std::string fatal = setup_error;
  std::unique_ptr<eval::Evaluator> evaluator;
  if (fatal.empty()) {
    try {
      evaluator = factory();
    } catch (const std::exception& e) {
      fatal = std::string("worker rank ") + std::to_string(session.rank()) + ": " + e.what();
    }
  }
  int served = 0;
  while (true) {
    MPI_Status st = wait_for_message(0, MPI_ANY_TAG);
    std::string payload = receive_string(st);
    if (st.MPI_TAG == kTagStop) return 0;
    if (st.MPI_TAG == kTagSupernetPhase) {
      if (join_phase) join_phase(payload);
      continue;
    }
    if (test_hang_requested(session.rank(), ++served))
      while (true) std::this_thread::sleep_for(std::chrono::hours(1));
    JobResult r;
    try {
      Job job = Job::from_json(nlohmann::json::parse(payload));
      r.id = job.id;
      if (fatal.empty())
        r = nn::run_isolated([&] { return run_job(*evaluator, job, session.rank()); });
      else
        r.fatal = fatal;
    } catch (const std::exception& e) {
      // A malformed job still gets an answer so the coordinator's slot accounting holds.
      r.result.error = std::string("worker could not run the job: ") + e.what();
    }
    nlohmann::json out = {{"id", r.id}, {"result", r.result.to_json()}, {"fatal", r.fatal}};
    send_string(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 0, kTagResult);
  }
}

}  // namespace hwnas::search
