#include "search/cmd_report.hpp"

#include <chrono>
#include <iostream>
#include <memory>
#include <thread>

#include "db/store.hpp"
#include "report/html_report.hpp"
#include "search/cli_checks.hpp"
#include "search/search_loop.hpp"

namespace hwnas::search {
namespace {

struct ReportOptions {
  std::string db, out = "report.html";
  long long run = -1;  // -1: the latest
  int watch = 0;
};

int run_report(const ReportOptions& o) {
  std::unique_ptr<db::Store> store;
  try {
    store = std::make_unique<db::Store>(o.db, /*read_only=*/true);
  } catch (const db::DbError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  std::int64_t run = o.run;
  if (run < 0) {
    const auto latest = store->latest_run_id();
    if (!latest) {
      std::cerr << "error: " << o.db << " has no runs\n";
      return 2;
    }
    run = *latest;
  }
  report::ReportOptions ro;
  ro.refresh_seconds = o.watch;
  while (true) {
    const auto info = store->run(run);
    const bool running = info && info->status == "running";
    if (!running) ro.refresh_seconds = 0;  // the final page stops reloading
    try {
      report::write_report(*store, run, o.out, ro, summarize_genome);
    } catch (const std::invalid_argument& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 2;
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 1;
    }
    std::cout << "report of run " << run << " (" << (info ? info->status : "?") << ") written to "
              << o.out << std::endl;
    if (o.watch <= 0 || !running) return 0;
    std::this_thread::sleep_for(std::chrono::seconds(o.watch));
  }
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto o = std::make_shared<ReportOptions>();
  auto* sub = app.add_subcommand(
      "report",
      "Write a run's self-contained HTML report: Pareto plots per device, history, "
      "cross-device ranks, config");
  sub->add_option("--db", o->db, "results database (SQLite file written by `hwnas search`)")
      ->check(db_path())
      ->required();
  sub->add_option("--run", o->run, "run id (default: the latest)")->check(run_id_range());
  sub->add_option("--out", o->out, "HTML file to write")->capture_default_str();
  sub->add_option("--watch", o->watch,
                  "rewrite every SECONDS while the run is running (the page reloads itself)")
      ->check(seconds_range());
  sub->callback([o] {
    const int code = run_report(*o);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace hwnas::search
