// `hwnas report`: one self-contained HTML file per run that works offline when copied
// elsewhere: the run's data (report/report_data.hpp) and Debian's Chart.js are inlined.
//
// Per device: every evaluated architecture as a point (metric against latency, energy or
// memory; switchable axis, log scale), the stored front highlighted and joined, infeasible
// candidates marked, hover for id / description / metrics / costs and click for all devices'
// figures; hypervolume and best metric over the evaluations; the front members as a table.
// Across devices: the front members' cost rank on every device and Kendall's tau between the
// devices' rankings (where devices disagree).  Then the run's config and status.
//
// After rendering, the page marks each device's chart container with data-points and
// data-front (counts drawn) and <body data-rendered="1">, which the browser test reads.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "db/store.hpp"
#include "report/report_data.hpp"

namespace hwnas::report {

struct ReportOptions {
  // Chart.js's UMD build as Debian's libjs-chart.js installs it.
  std::string chartjs_path = "/usr/share/javascript/chart.js/chart.min.js";
  // > 0: the page reloads itself every so many seconds (for --watch while a search runs).
  int refresh_seconds = 0;
};

// The HTML page for report data; throws std::invalid_argument when Chart.js is missing (naming
// the path and the package).
std::string render_html(const nlohmann::json& data, const ReportOptions& options = {});

// Collects run `run_id` and writes its page to `out_path` through a temporary file renamed into
// place, so a reader never sees half a report and a failed write leaves no file.  Throws
// std::invalid_argument for a bad run, std::runtime_error when the file cannot be written.
void write_report(const db::Store& store, std::int64_t run_id, const std::string& out_path,
                  const ReportOptions& options = {}, const GenomeSummary& summary = {});

}  // namespace hwnas::report
