// MPI scaling of the search loop: the `synthetic` evaluator (sleeps a seeded duration, trains
// nothing) under `mpirun -n R` for R = 2..64 ranks (oversubscribed: sleeping workers use no
// CPU), printing the parallel efficiency of each run:
//   efficiency = (sum of the evaluations' wall seconds) / (workers x the search's wall seconds)
// i.e. the share of the workers' time spent inside evaluations rather than waiting for the
// coordinator.  MPI start-up is outside the search's wall time (it is printed separately).
// Target (issue 13): at least 90% at 64 ranks with 1-second evaluations.
//
//   build/bench/bench_mpi_scaling [seconds=1] [rounds=4] [ranks=2,4,8,16,32,64]
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"

namespace fs = std::filesystem;

namespace {

double sum_wall_seconds(const fs::path& db) {
  sqlite3* h = nullptr;
  double total = 0;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, "SELECT total(wall_seconds) FROM evaluations", -1, &st, nullptr) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      total = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 4;
  std::vector<int> ranks = {2, 4, 8, 16, 32, 64};
  if (argc > 3) {
    ranks.clear();
    std::stringstream ss(argv[3]);
    for (std::string r; std::getline(ss, r, ',');) ranks.push_back(std::atoi(r.c_str()));
  }
  const fs::path dir =
      fs::temp_directory_path() / ("hwnas_bench_mpi_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::printf("synthetic evaluations of %.2f s, %d per worker, nb201 space, random search\n",
              seconds, rounds);
  std::printf("%6s %8s %12s %12s %12s %11s\n", "ranks", "workers", "evaluations", "search s",
              "mpirun s", "efficiency");
  for (int r : ranks) {
    const int workers = r - 1;
    const fs::path db = dir / ("r" + std::to_string(r) + ".db");
    const nlohmann::json config = {{"name", "mpi_scaling"},
                                   {"seed", 1},
                                   {"space",
                                    {{"type", "nb201"},
                                     {"input", {{"kind", "image"}, {"shape", {3, 32, 32}}}},
                                     {"outputs", 10}}},
                                   {"task", {{"name", "synthetic"}}},
                                   {"evaluator", {{"type", "synthetic"}, {"seconds", seconds}}},
                                   {"strategy", {{"type", "random"}}},
                                   {"budget", {{"evaluations", workers * rounds}}},
                                   {"devices", {"jetson_orin_nano"}},
                                   {"objectives", {"val_accuracy:max", "latency_ms:min"}},
                                   {"db", db.string()}};
    const fs::path cfg = dir / ("r" + std::to_string(r) + ".json");
    std::ofstream(cfg) << config.dump(2);
    const std::string cmd = "mpirun --allow-run-as-root --oversubscribe -n " + std::to_string(r) +
                            " " + HWNAS_BINARY_DIR + "/hwnas search " + cfg.string();
    const auto t0 = std::chrono::steady_clock::now();
    int status = 0;
    const std::string out = hwnas::bench::run_command(cmd, status);
    const double total =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::smatch m;
    static const std::regex done(R"(: (\d+) candidates \(\d+ failed\) in ([0-9.eE+-]+) s)");
    if (status != 0 || !std::regex_search(out, m, done)) {
      std::printf("%6d  mpirun failed (status %d):\n%s\n", r, status, out.c_str());
      return 1;
    }
    const int evaluated = std::stoi(m[1]);
    const double search_s = std::stod(m[2]);
    const double busy = sum_wall_seconds(db);
    std::printf("%6d %8d %12d %12.2f %12.2f %10.1f%%\n", r, workers, evaluated, search_s, total,
                100.0 * busy / (workers * search_s));
    std::fflush(stdout);
  }
  fs::remove_all(dir);
  return 0;
}
