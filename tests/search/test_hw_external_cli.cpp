// External devices from the command line: `hwnas hw predict` hands them the genome, and
// `hwnas hw calibrate --reference` fits an analytic model to a device that measures (here the
// Python roofline example stands in for one: its figures are the truth to fit).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli_util.hpp"
#include "hwmodels/device.hpp"
#include "spaces/genome.hpp"
#include "tests/test_genomes.hpp"

using namespace hwnas;
using namespace hwnas::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kExamples = std::string(HWNAS_SOURCE_DIR) + "/examples/";

CommandResult run(const std::string& args) { return run_hwnas(args); }

class HwExternalCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("hwnas_hw_external_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

}  // namespace

TEST_F(HwExternalCli, PredictHandsTheGenomeToTheDevice) {
  // Latency = the number of nodes in the genome it was sent (0 when none was sent).
  std::ofstream(dir_ / "nodes_device.py") << R"PY(
import os, sys
sys.path.insert(0, os.environ["HWNAS_EXAMPLES"])
from hwnas_device import serve
serve(lambda arch, workload, batch: {"latency_ms": len(arch["nodes"]) if arch else 0.0},
      name="nodes", objectives=["latency_ms"])
)PY";
  std::ofstream(dir_ / "nodes.json")
      << json{{"name", "nodes"},
              {"family", "external"},
              {"command", {"python3", "nodes_device.py"}},
              {"env", {{"HWNAS_EXAMPLES", kExamples + "devices/external"}}}}
             .dump();
  const spaces::Genome g = test::tiny_cnn(4);
  std::ofstream(dir_ / "g.json") << g.to_json().dump();
  const auto r = run("hw predict --device " + (dir_ / "nodes.json").string() + " " +
                     (dir_ / "g.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::size_t nodes = json::parse(g.canonical_json())["nodes"].size();
  char expected[64];
  std::snprintf(expected, sizeof expected, "latency %.4f ms", static_cast<double>(nodes));
  EXPECT_NE(r.output.find(expected), std::string::npos) << r.output;
  // An NB201 string is a genome too.
  const auto nb = run("hw predict --device " + (dir_ / "nodes.json").string() +
                      " '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|'");
  ASSERT_EQ(nb.exit_code, 0) << nb.output;
  EXPECT_EQ(nb.output.find("latency 0.0000 ms"), std::string::npos) << nb.output;
}

TEST_F(HwExternalCli, CalibrateAgainstAReferenceDevice) {
  const std::string out = (dir_ / "tuned.json").string();
  const auto r = run("hw calibrate --device rpi4_a72 --reference " + kExamples +
                     "devices/external/py_roofline.json --space " + kExamples +
                     "spaces/cnn.json --n 40 --seed 3 --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("on py_roofline"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("calibrated rpi4_a72 on"), std::string::npos) << r.output;
  // The fit moves the model towards the reference on held-out architectures.
  auto mape = [&](const std::string& label) {
    const auto at = r.output.find(label);
    EXPECT_NE(at, std::string::npos) << r.output;
    const auto m = r.output.find("MAPE", at);
    return std::stod(r.output.substr(m + 4, r.output.find('%', m) - m - 4));
  };
  EXPECT_LT(mape("held-out after"), mape("held-out before")) << r.output;
  // The tuned model is a device like any other.
  EXPECT_EQ(hw::load_device(out)->family(), "edge_cpu");

  // Bad combinations are one clear error each.
  auto both =
      run("hw calibrate --device rpi4_a72 --measurements m.csv --reference x.json "
          "--space s.json --out " +
          out);
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.output.find("--measurements CSV, or --reference DEVICE"), std::string::npos)
      << both.output;
  auto no_space = run("hw calibrate --device rpi4_a72 --reference " + kExamples +
                      "devices/external/py_roofline.json --out " + out);
  EXPECT_NE(no_space.exit_code, 0);
  EXPECT_NE(no_space.output.find("--reference needs --space"), std::string::npos)
      << no_space.output;
}
