// Data-parallel supernet training under MPI (search/mpi_data_parallel.hpp): the wall time of a
// fixed number of SPOS supernet steps (uniform single-path, SGD) on Fashion-MNIST over the
// examples' small CNN macro space (examples/spaces/cnn.json) at 1, 2 and 4 ranks, one thread per
// rank, each rank a shard of every batch with the gradients summed by MPI_Allreduce.  Prints the
// speed-up over 1 rank and the load average before and after each run (the ranks share the
// machine's cores with whatever else runs: read the speed-up against the cores actually free).
//
//   build/bench/bench_supernet_data_parallel [steps=60] [batch=128] [ranks=1,2,4]
//
// Without mpirun it launches itself under `mpirun --oversubscribe -n R` for each R; a rank
// process (under mpirun) trains and rank 0 prints one "phase_seconds S loss L" line.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include "evaluators/task_registry.hpp"
#include "nn/parallel.hpp"
#include "oneshot/spos_search.hpp"
#include "search/mpi_data_parallel.hpp"
#include "spaces/space.hpp"

namespace {

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five;
  in >> one >> five;
  return one + "/" + five;
}

int rank_main(int steps, int batch) {
  MPI_Init(nullptr, nullptr);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int code = 0;
  try {
    hwnas::nn::ThreadBudget one_thread(1);
    const auto space = hwnas::spaces::make_space(nlohmann::json::parse(
        std::ifstream(std::string(HWNAS_BENCH_SOURCE_DIR) + "/examples/spaces/cnn.json")));
    const auto data = hwnas::eval::make_task_data(hwnas::eval::resolve_task("fashion_mnist"),
                                                  space->input_type(), 1, {4096, 256});
    hwnas::oneshot::SposOptions o;
    o.epochs = 1;
    o.steps_per_epoch = steps;
    o.batch_size = batch;
    o.seed = 7;
    hwnas::oneshot::SposSupernet net(*space, 11);
    hwnas::oneshot::DataShard shard = hwnas::search::make_mpi_shard();
    // Time and volume inside the all-reduce (waiting for the slowest rank included).
    double reduce_s = 0, floats = 0;
    shard.all_reduce_sum = [&, sum = shard.all_reduce_sum](std::vector<float>& v) {
      const auto t = std::chrono::steady_clock::now();
      sum(v);
      reduce_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
      floats += static_cast<double>(v.size());
    };
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = std::chrono::steady_clock::now();
    const auto losses = hwnas::oneshot::train_supernet(net, data.train, o, nullptr, shard);
    MPI_Barrier(MPI_COMM_WORLD);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (rank == 0)
      std::printf("phase_seconds %.4f loss %.6f allreduce_seconds %.4f kb_per_step %.1f\n", s,
                  losses.front(), reduce_s, floats * 4 / 1024 / steps);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    code = 1;
  }
  MPI_Finalize();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 60;
  const int batch = argc > 2 ? std::atoi(argv[2]) : 128;
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE"))
    return rank_main(steps, batch);
  std::vector<int> ranks = {1, 2, 4};
  if (argc > 3) {
    ranks.clear();
    std::stringstream ss(argv[3]);
    for (std::string t; std::getline(ss, t, ',');) ranks.push_back(std::atoi(t.c_str()));
  }
  std::printf(
      "SPOS supernet phase, %d steps of batch %d on Fashion-MNIST (cnn.json), 1 thread "
      "per rank\n",
      steps, batch);
  std::printf("%6s %10s %9s %12s %12s %9s %16s %16s\n", "ranks", "phase s", "speed-up",
              "allreduce s", "KB/step", "loss", "load 1/5 before", "load 1/5 after");
  double base = 0;
  for (int r : ranks) {
    const std::string before = load_average();
    int status = 0;
    const std::string out = hwnas::bench::run_command(
        "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
        "OMPI_MCA_btl_vader_single_copy_mechanism=none mpirun --oversubscribe --allow-run-as-root "
        "-n " +
            std::to_string(r) + " " + argv[0] + " " + std::to_string(steps) + " " +
            std::to_string(batch),
        status);
    std::smatch m;
    if (status != 0 ||
        !std::regex_search(out, m,
                           std::regex(R"(phase_seconds ([0-9.]+) loss ([0-9.]+) )"
                                      R"(allreduce_seconds ([0-9.]+) kb_per_step ([0-9.]+))"))) {
      std::fprintf(stderr, "%d ranks failed:\n%s\n", r, out.c_str());
      return 1;
    }
    const double s = std::stod(m[1].str());
    if (base == 0) base = s;
    std::printf("%6d %10.3f %8.2fx %12.3f %12.1f %9.4f %16s %16s\n", r, s, base / s,
                std::stod(m[3].str()), std::stod(m[4].str()), std::stod(m[2].str()), before.c_str(),
                load_average().c_str());
    std::fflush(stdout);
  }
  return 0;
}
