// examples/search_compression.json shrunk (a few candidates, 256 training images) and run
// through the hwnas binary: bits, channel pruning, LoRA rank and MoE experts / k are genes; the
// run stores one front per device (stm32h743, edgetpu_usb, jetson_orin_nano) and no front holds
// an architecture that is infeasible on its device (weights over the MCU's flash, activations
// over its SRAM).  Float layers on the int8-only Edge TPU run on its host CPU.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "cli_util.hpp"
#include "db/store.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;

TEST(CompressionExample, ShrunkSearchThroughTheCliHasOneFeasibleFrontPerDevice) {
  const std::string examples = std::string(HWNAS_SOURCE_DIR) + "/examples/";
  const fs::path dir =
      fs::temp_directory_path() / ("hwnas_compression_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  json j = json::parse(std::ifstream(examples + "search_compression.json"));
  j["space"] = examples + j["space"].get<std::string>();
  j["budget"]["evaluations"] = 8;
  j["strategy"]["population"] = 4;
  j["task"]["train_subset"] = 256;
  j["task"]["val_size"] = 128;
  j["evaluator"]["epochs"] = 1;
  j["evaluator"]["batch_size"] = 64;
  j["db"] = (dir / "c.db").string();
  std::ofstream(dir / "c.json") << j.dump(2);

  const auto r = test::run_hwnas("search " + (dir / "c.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;

  db::Store store(j["db"].get<std::string>(), /*read_only=*/true);
  const std::int64_t run = *store.latest_run_id();
  const std::vector<std::string> devices = j["devices"];
  auto fronts = store.pareto_devices(run);
  std::sort(fronts.begin(), fronts.end());
  std::vector<std::string> want = devices;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(fronts, want) << "one front per device";

  // The genes vary across the evaluated architectures, and every evaluation is costed on every
  // device; count the infeasible ones per device.
  std::map<std::string, std::set<std::int64_t>> infeasible;
  std::set<std::string> kinds;
  int ok = 0;
  for (const auto& e : store.evaluations(run)) {
    ASSERT_EQ(e.status, "ok") << e.error;
    ++ok;
    for (const auto& n : e.workload["nodes"]) kinds.insert(n["block_kind"].get<std::string>());
    ASSERT_EQ(e.costs.size(), devices.size());
    for (const auto& c : e.costs)
      if (!c.feasible) infeasible[c.device].insert(e.id);
  }
  EXPECT_EQ(ok, 8);
  // With this seed an architecture with 3.5 MB of weights is proposed: over the MCU's 2 MB flash.
  EXPECT_FALSE(infeasible["stm32h743"].empty()) << "the MCU front shows a memory-infeasible one";
  EXPECT_TRUE(kinds.count("conv") && kinds.count("dense")) << "conv and dense stages";
  for (const auto& d : devices) {
    const auto front = store.pareto(run, d);
    EXPECT_FALSE(front.empty()) << d;
    for (const auto& row : front) {
      EXPECT_EQ(row.cost.device, d);
      EXPECT_TRUE(row.cost.feasible) << d << ": " << row.cost.infeasible_reason;
      EXPECT_EQ(infeasible[d].count(row.evaluation_id), 0u) << d;
    }
    std::printf("%s: front of %zu, %zu of %d evaluations infeasible\n", d.c_str(), front.size(),
                infeasible[d].size(), ok);
  }
  // The CLI answers for each device's front.
  const auto p = test::run_hwnas("pareto --db " + j["db"].get<std::string>() +
                                 " --device stm32h743 --format json");
  EXPECT_EQ(p.exit_code, 0) << p.output;
  fs::remove_all(dir);
}
