// What a report shows about one run, gathered from the results database into one JSON document
// that the HTML page renders (report/html_report.hpp) and that scripts may read directly.
//
// {"run": {id, name, status, started_at, finished_at, evaluations, config},
//  "metric": {"name": "val_accuracy", "maximize": true},   the run's first objective on a metric
//  "cost": "latency_ms",                                  the cost objective ("" if none)
//  "devices": [...],
//  "evaluations": [{id, arch_id, hash, description, summary, status, error, wall_seconds, metrics,
//                   "costs": {device: {latency_ms, energy_mj, memory_bytes, feasible, reason,
//                                      activity_source}}}],          in evaluation order
//  "fronts": {device: [evaluation ids]},                  as stored by the search
//  "history": {device: {"hypervolume": [...], "best": [...]}},  after each evaluation
//  "agreement": {"devices": [...], "kendall_tau": [[...]]}}     cost rankings compared
//
// Figures that were not computed (NaN) are null.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "db/store.hpp"

namespace hwnas::report {

// One line per architecture from its stored genome JSON (e.g. "conv c16 s2 | pool | dense");
// the search's own summariser is passed in, since this folder does not see the search.
using GenomeSummary = std::function<std::string(const nlohmann::json& genome)>;

// The report's data for `run_id`; throws std::invalid_argument when the run does not exist.
// Without `summary`, an architecture's summary is its stored description.
nlohmann::json collect_run(const db::Store& store, std::int64_t run_id,
                           const GenomeSummary& summary = {});

// Area dominated by `points` (metric to maximise, cost to minimise) and bounded by the
// reference point (metric_ref, cost_ref): points with metric <= metric_ref or cost >= cost_ref
// add nothing.  Exact, O(n log n).
double hypervolume_2d(std::vector<std::pair<double, double>> points, double metric_ref,
                      double cost_ref);

// Kendall's tau-b between two rankings of the same items (values, lower = better); ties count
// half as in tau-b.  NaN when fewer than two items.
double kendall_tau(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace hwnas::report
