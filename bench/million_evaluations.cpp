// Scale of one search file: a tabular NAS-Bench-201 search of N evaluations (default one
// million) through the whole search loop (strategy, four device models, store, fronts), then
//  - bytes stored per evaluation (the database file after a checkpoint, divided by N; and the
//    evaluations, costs and architectures tables' own bytes where SQLite's dbstat is built in),
//  - the coordinator thread's CPU per evaluation,
//  - the wall time of `hwnas pareto` and `hwnas runs` on the file.
// Targets (issues 12 and 13): at most 4 KB stored and under 0.5 ms coordinator CPU per
// evaluation.  The synthetic table is tests/strategies/nb201_bench.hpp's (all 15,625 cells).
//
//   build/bench/bench_million_evaluations [evaluations=1000000] [strategy=regularized_evolution]
//                                          [keep_dir]
#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bench/bench_util.hpp"
#include "bench/nb201_tabular.hpp"
#include "db/store.hpp"
#include "search/config.hpp"
#include "search/evaluator_factory.hpp"
#include "search/search_loop.hpp"
#include "tests/strategies/nb201_bench.hpp"

using namespace hwnas;
namespace fs = std::filesystem;

namespace {

// Bytes of one table and its indexes (dbstat), or -1 when this SQLite lacks dbstat.
double table_bytes(const fs::path& db, const std::string& table) {
  sqlite3* h = nullptr;
  double bytes = -1;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    const std::string sql =
        "SELECT total(pgsize) FROM dbstat WHERE name = ?1 OR name IN (SELECT name FROM "
        "sqlite_master WHERE type = 'index' AND tbl_name = ?1)";
    if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
      sqlite3_bind_text(st, 1, table.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(st) == SQLITE_ROW) bytes = sqlite3_column_double(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return bytes;
}

double timed_command(const std::string& cmd) {
  const auto t0 = std::chrono::steady_clock::now();
  const int status = std::system((cmd + " > /dev/null").c_str());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (status != 0) std::printf("  (command failed with status %d: %s)\n", status, cmd.c_str());
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const int evaluations = argc > 1 ? std::atoi(argv[1]) : 1000000;
  const std::string strategy = argc > 2 ? argv[2] : "regularized_evolution";
  const bool keep = argc > 3;
  const fs::path dir =
      keep ? fs::path(argv[3])
           : fs::temp_directory_path() / ("hwnas_bench_million_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path table = bench::write_nb201_table(dir);
  const fs::path db_path = dir / "million.db";
  fs::remove(db_path);
  nlohmann::json strategy_config = {{"type", strategy}};
  if (strategy == "regularized_evolution")
    strategy_config.update({{"population", 50}, {"sample_size", 10}});
  const nlohmann::json j =
      bench::nb201_tabular_search("million", table, strategy_config, evaluations, db_path);
  search::SearchConfig c = search::parse_config(j, "");
  double cpu = 0;
  search::SearchSummary s;
  {
    auto executor = search::make_local_executor(search::make_evaluator_factory(c), 2, 1);
    db::Store store(c.db_path);
    std::ostringstream progress;  // a million progress lines are not the point
    const double t0 = bench::thread_cpu_seconds();
    s = search::run_search(c, *executor, store, progress);
    cpu = bench::thread_cpu_seconds() - t0;
  }
  // The store is closed: SQLite folded its write-ahead log into the file.
  const double file = static_cast<double>(fs::file_size(db_path));
  std::printf("tabular NB201 search, %s, 4 devices, 2 workers: %d evaluations in %.1f s\n",
              strategy.c_str(), s.evaluated, s.seconds);
  std::printf("coordinator CPU      %.3f ms per evaluation (target < 0.5)\n",
              1e3 * cpu / s.evaluated);
  std::printf("file                 %.0f bytes per evaluation (target <= 4096), %.1f MB\n",
              file / s.evaluated, file / 1e6);
  for (const char* t : {"evaluations", "costs", "architectures"}) {
    const double bytes = table_bytes(db_path, t);
    if (bytes >= 0) std::printf("  %-18s %.0f bytes per evaluation\n", t, bytes / s.evaluated);
  }
  const std::string hwnas = std::string(HWNAS_BINARY_DIR) + "/hwnas";
  std::printf("hwnas pareto         %.2f s\n",
              timed_command(hwnas + " pareto --db " + db_path.string() + " --device jetson_tx2"));
  std::printf("hwnas runs           %.2f s\n",
              timed_command(hwnas + " runs --db " + db_path.string()));
  if (!keep) fs::remove_all(dir);
  return 0;
}
