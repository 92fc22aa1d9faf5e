#include "search/mpi_transport.hpp"

#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

#include "nn/parallel.hpp"
#include "search/mpi_data_parallel.hpp"
#include "search/search_loop.hpp"

namespace hwnas::search {
namespace {

enum Tag : int { kTagJob = 1, kTagResult = 2, kTagStop = 3 };
static_assert(kTagSupernetPhase > kTagStop, "the phase tag must not collide with the job tags");

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string("MPI ") + what + " failed: " + std::string(msg, len));
  }
}

void send_string(const std::string& s, int dest, int tag) {
  check(MPI_Send(s.data(), static_cast<int>(s.size()), MPI_CHAR, dest, tag, MPI_COMM_WORLD),
        "send");
}

// Waits for a message without MPI's busy polling: on a 2-core machine a spinning coordinator
// would take a whole core from the workers.
MPI_Status wait_for_message(int source, int tag, const std::atomic<bool>* stop = nullptr) {
  MPI_Status status;
  int flag = 0;
  auto sleep = std::chrono::microseconds(50);
  while (true) {
    // Checked before probing: once the launcher has signalled the workers, probing a dead peer
    // may fail.
    if (stop && stop->load()) throw ExecutorInterrupted("stop requested");
    check(MPI_Iprobe(source, tag, MPI_COMM_WORLD, &flag, &status), "probe");
    if (flag) return status;
    std::this_thread::sleep_for(sleep);
    if (sleep < std::chrono::milliseconds(5)) sleep *= 2;
  }
}

std::string receive_string(const MPI_Status& probed) {
  int count = 0;
  MPI_Get_count(&probed, MPI_CHAR, &count);
  std::string s(static_cast<std::size_t>(count), '\0');
  check(MPI_Recv(s.data(), count, MPI_CHAR, probed.MPI_SOURCE, probed.MPI_TAG, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE),
        "recv");
  return s;
}

class MpiExecutor final : public Executor {
 public:
  explicit MpiExecutor(const MpiSession& s) : session_(s) {
    for (int r = s.size() - 1; r >= 1; --r) idle_.push_back(r);
  }
  ~MpiExecutor() override { shutdown(); }

  int slots() const override { return session_.size() - 1; }

  void submit(Job job) override {
    if (idle_.empty()) throw std::logic_error("MpiExecutor::submit with no idle worker");
    int rank = idle_.back();
    idle_.pop_back();
    send_string(job.to_json().dump(), rank, kTagJob);
    ++in_flight_;
  }

  JobResult wait_next() override {
    // A stop request (SIGINT/SIGTERM; mpirun forwards Ctrl-C as SIGTERM to every rank, so the
    // workers are gone) ends the wait instead of waiting for results that never come.
    MPI_Status st = wait_for_message(MPI_ANY_SOURCE, kTagResult, &g_stop_requested);
    std::string payload = receive_string(st);
    --in_flight_;
    idle_.push_back(st.MPI_SOURCE);
    auto j = nlohmann::json::parse(payload);
    JobResult r;
    r.id = j.at("id").get<std::uint64_t>();
    r.worker_rank = st.MPI_SOURCE;
    r.result = eval::EvalResult::from_json(j.at("result"));
    r.fatal = j.value("fatal", std::string());
    return r;
  }

  void shutdown() override {
    if (stopped_) return;
    if (g_stop_requested) {  // the launcher signalled the workers too: nothing left to drain
      stopped_ = true;
      return;
    }
    while (in_flight_ > 0) (void)wait_next();
    for (int r = 1; r < session_.size(); ++r) send_string("", r, kTagStop);
    stopped_ = true;
  }

  std::string describe() const override {
    // mpirun answers Ctrl-C by killing every rank at once; SIGTERM to the coordinator alone
    // stops the search cleanly (fronts stored, run marked interrupted), so say where it is.
    return "MPI: coordinator rank 0 (pid " + std::to_string(::getpid()) +
           ", stop cleanly with kill -TERM) + " + std::to_string(slots()) + " worker ranks x " +
           std::to_string(worker_threads_per_rank()) + " threads";
  }

 private:
  const MpiSession& session_;
  std::vector<int> idle_;
  int in_flight_ = 0;
  bool stopped_ = false;
};

}  // namespace

bool launched_under_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "init");
  // Errors come back as codes (check() turns them into exceptions) instead of aborting the
  // job, so the coordinator can still store what it has when a worker dies.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiSession::~MpiSession() { MPI_Finalize(); }

std::string MpiSession::broadcast(const std::string& from_root) const {
  unsigned long long n = from_root.size();
  check(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD), "bcast");
  std::string s = rank_ == 0 ? from_root : std::string(n, '\0');
  check(MPI_Bcast(s.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD), "bcast");
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
  while (true) {
    MPI_Status st = wait_for_message(0, MPI_ANY_TAG);
    std::string payload = receive_string(st);
    if (st.MPI_TAG == kTagStop) return 0;
    if (st.MPI_TAG == kTagSupernetPhase) {
      if (join_phase) join_phase(payload);
      continue;
    }
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
