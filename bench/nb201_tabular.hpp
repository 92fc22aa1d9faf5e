// The tabular NB201 search the coordinator benches run: tests/strategies/nb201_bench.hpp's
// synthetic table (all 15,625 cells) written as a CSV, searched through the whole loop with four
// devices and two local workers.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/strategies/nb201_bench.hpp"

namespace hwnas::bench {

// Writes the table to dir/table.csv and returns its path.
inline std::filesystem::path write_nb201_table(const std::filesystem::path& dir) {
  const std::filesystem::path csv_path = dir / "table.csv";
  std::ofstream csv(csv_path);
  csv << "arch,valid_acc_12\n";
  const auto& b = test::nb201_bench();
  const auto& space = test::nb201_space();
  for (std::uint64_t i = 0; i < *space.size(); ++i)
    csv << '"' << space.describe(space.at(i)) << "\"," << b.accuracy[i] << "\n";
  return csv_path;
}

// A search config over that table.
inline nlohmann::json nb201_tabular_search(const std::string& name,
                                           const std::filesystem::path& table,
                                           const nlohmann::json& strategy, int evaluations,
                                           const std::filesystem::path& db) {
  return {{"name", name},
          {"seed", 1},
          {"space",
           {{"type", "nb201"},
            {"input", {{"kind", "image"}, {"shape", {3, 32, 32}}}},
            {"outputs", 10}}},
          {"task", {{"dataset", "tabular"}}},
          {"evaluator",
           {{"type", "tabular"},
            {"csv", table.string()},
            {"metrics", {{"val_accuracy", "valid_acc_{epochs}"}}},
            {"epochs", 12}}},
          {"strategy", strategy},
          {"budget", {{"evaluations", evaluations}}},
          {"devices", {"h100_sxm", "jetson_tx2", "edgetpu_usb", "pixel3_a75"}},
          {"objectives", {"val_accuracy:max", "latency_ms:min"}},
          {"workers", 2},
          {"db", db.string()}};
}

}  // namespace hwnas::bench
