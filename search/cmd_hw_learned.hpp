// The learned-predictor side of `hwnas hw`:
//
//   hwnas hw measure --space FILE --n N --out m.csv --per-node [--batch B --reps R --seed S]
//       times every node of each sampled network on this host; writes m.csv (architecture,
//       latency_ms, sum_nodes_ms, unlisted_ms) and m.nodes.csv (architecture, node, name, kind,
//       category, the learned predictor's features, measured_ms)
//   hwnas hw fit --measurements m.csv [--measurements m2.csv ...] --out dev.json
//                [--holdout F] [--seed S] [--power-w P] [--name NAME]
//       fits a learned device (hwmodels/learned_predictor.hpp) to per-node measurements, prints
//       held-out Spearman rho, Kendall tau, MAPE and share within 10%, and writes dev.json and
//       its model file dev.model.json (atomically)
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "search/learned_fit.hpp"

namespace hwnas::search {

struct PerNodeMeasureArgs {
  std::string space, out;
  int n = 20, batch = 1, reps = 10, warmup = 2;
  std::uint64_t seed = 0;
};
// `hw measure --per-node`.
void measure_per_node(const PerNodeMeasureArgs& a);
// The per-node CSV written next to a network CSV: "m.csv" -> "m.nodes.csv".
std::string per_node_csv_path(const std::string& network_csv);
// Reads a network CSV and its per-node CSV back, resolving each genome (relative to the CSV)
// to its workload; throws std::invalid_argument naming the file, line and the fix.
std::vector<MeasuredNetwork> read_per_node_measurements(const std::string& network_csv, int batch);

// Adds `hw fit` to the `hw` command.
void add_hw_fit_command(CLI::App& hw_cmd);

}  // namespace hwnas::search
