#include "search/mpi_data_parallel.hpp"

#include <mpi.h>

#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "nn/parallel.hpp"
#include "search/mpi_transport.hpp"
#include "search/oneshot_env.hpp"
#include "spaces/space.hpp"

namespace hwnas::search {
namespace {

nlohmann::json request_to_json(const strategies::SupernetRequest& r) {
  nlohmann::json objectives = nlohmann::json::array();
  for (const auto& o : r.objectives) objectives.push_back({{"name", o.name}, {"max", o.maximize}});
  return {{"method", r.method},
          {"params", r.params},
          {"seed", r.seed},
          {"candidates", r.candidates},
          {"objectives", objectives}};
}

strategies::SupernetRequest request_from_json(const nlohmann::json& j) {
  strategies::SupernetRequest r;
  r.method = j.at("method").get<std::string>();
  r.params = j.at("params");
  r.seed = j.at("seed").get<std::uint64_t>();
  r.candidates = j.at("candidates").get<int>();
  for (const auto& o : j.at("objectives"))
    r.objectives.push_back({o.at("name").get<std::string>(), o.at("max").get<bool>()});
  return r;
}

class DataParallelEnvironment final : public strategies::OneShotEnvironment {
 public:
  DataParallelEnvironment(const SearchConfig& c, std::ostream& progress, const MpiSession& s)
      : inner_(make_oneshot_environment(c, progress, make_mpi_shard())),
        session_(s),
        progress_(progress) {}

  std::string unavailable() const override { return inner_->unavailable(); }

  strategies::SupernetOutcome run_supernet(const spaces::Space& space,
                                           const strategies::SupernetRequest& req) const override {
    // A phase that cannot run fails here alone; the workers were never asked (so no
    // collective may follow: the inner environment's agreement would wait for them).
    if (const std::string why = inner_->unavailable(); !why.empty())
      throw std::invalid_argument(why);
    const std::string payload = request_to_json(req).dump();
    for (int r = 1; r < session_.size(); ++r)
      check_mpi(MPI_Send(payload.data(), static_cast<int>(payload.size()), MPI_CHAR, r,
                         kTagSupernetPhase, MPI_COMM_WORLD),
                "send");
    const int threads = phase_threads_per_rank();
    progress_ << req.method << ": supernet phase data-parallel on " << session_.size()
              << " ranks x " << threads << " threads (each a shard of every batch)" << std::endl;
    nn::ThreadBudget budget(threads);
    return inner_->run_supernet(space, req);
  }

 private:
  std::shared_ptr<const strategies::OneShotEnvironment> inner_;
  const MpiSession& session_;
  std::ostream& progress_;
};

}  // namespace

oneshot::DataShard make_mpi_shard() {
  oneshot::DataShard s;
  MPI_Comm_rank(MPI_COMM_WORLD, &s.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &s.ranks);
  s.all_reduce_sum = [](std::vector<float>& v) {
    // The reduction combines the ranks' buffers in one fixed order for every rank (Open MPI and
    // MPICH reduce commutative ops in rank order), so the sums, and the weights, are bitwise
    // the same everywhere; tests/search/test_data_parallel.cpp checks it.
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_FLOAT, MPI_SUM,
                            MPI_COMM_WORLD),
              "allreduce");
  };
  s.all_ok = [](bool ok) {
    int mine = ok ? 1 : 0, all = 0;
    check_mpi(MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "allreduce");
    return all == 1;
  };
  return s;
}

int phase_threads_per_rank() {
  if (const char* s = std::getenv("HWNAS_PHASE_THREADS"); s && std::atoi(s) > 0)
    return std::atoi(s);
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  int local = 1;
  if (const char* s = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) local = std::max(1, std::atoi(s));
  return std::max(1, cores / local);
}

std::shared_ptr<const strategies::OneShotEnvironment> make_data_parallel_environment(
    const SearchConfig& config, std::ostream& progress, const MpiSession& session) {
  return std::make_shared<DataParallelEnvironment>(config, progress, session);
}

void join_data_parallel_phase(const SearchConfig* config, const std::string& request, int rank) {
  const oneshot::DataShard shard = make_mpi_shard();
  bool in_environment = false;  // from there on the environment keeps the agreement
  try {
    if (!config) throw std::runtime_error("the worker has no valid config");
    const strategies::SupernetRequest req = request_from_json(nlohmann::json::parse(request));
    // The same space the search loop builds on rank 0 (search_loop.cpp: make_space(config.space)).
    const auto space = spaces::make_space(config->space);
    static std::ostream null_stream(nullptr);
    const auto env = make_oneshot_environment(*config, null_stream, shard);
    nn::ThreadBudget budget(phase_threads_per_rank());
    in_environment = true;
    (void)env->run_supernet(*space, req);  // rank 0 keeps the outcome
  } catch (const std::invalid_argument& e) {
    // A bad request (batch smaller than the ranks, unknown device) fails on rank 0 the same way
    // and rank 0 reports it: one error, not one per rank.
    if (!in_environment) (void)shard.all_ok(false);
  } catch (const std::exception& e) {
    // Known gap: a failure on this rank alone after the agreement (e.g. out of memory in a
    // step) leaves the other ranks waiting in the next all-reduce; mpirun's own teardown (or
    // the user) ends the job, and the run stays resumable.
    if (!in_environment) (void)shard.all_ok(false);
    std::cerr << "worker rank " << rank << ": supernet phase: " << e.what() << std::endl;
  }
}

}  // namespace hwnas::search
