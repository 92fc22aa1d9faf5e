// `hwnas report --db F [--run ID] --out report.html [--watch SECONDS]`: writes a run's
// self-contained HTML report (report/html_report.hpp).  With --watch it rewrites the file
// every SECONDS while the run is still running (the page reloads itself), then once more.
// Errors: one "error: ..." line; exit 2 for bad input (missing database, unknown run), 1 when
// the file cannot be written.
#pragma once

#include <CLI/CLI.hpp>

namespace hwnas::search {

void add_report_command(CLI::App& app);

}  // namespace hwnas::search
