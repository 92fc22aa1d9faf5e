// External devices (device_external.cpp): the JSON-lines protocol with the Python example, and
// a process that crashes, hangs, answers garbage or NaN fails only that cost, naming the device,
// and is restarted for the next request.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "helpers.hpp"
#include "hwmodels/device.hpp"

using namespace hwnas::hw;
using hwnas::hw::test::node;
namespace fs = std::filesystem;

namespace {
Workload one_node() {
  Workload w;
  w.nodes.push_back(node("a", OpCategory::Dense, 1e6, 4e3, 10, 10));
  return w;
}

// A Python device whose answer depends on the request count: ok, nan, garbage, crash, hang, ok.
std::string hostile_script(const fs::path& dir) {
  const fs::path p = dir / "hostile_device.py";
  std::ofstream(p) << R"PY(
import json, os, sys, time
sys.path.insert(0, os.environ["HWNAS_EXAMPLES"])
from hwnas_device import serve
count = int(open(os.environ["STATE"]).read()) if os.path.exists(os.environ["STATE"]) else 0
def estimate(arch, workload, batch):
    global count
    count += 1
    open(os.environ["STATE"], "w").write(str(count))
    mode = os.environ["MODES"].split(",")[count - 1]
    if mode == "nan": return {"latency_ms": -1.0}
    if mode == "garbage": sys.stdout.write("not json\n"); sys.stdout.flush(); return {"latency_ms": 1.0}
    if mode == "crash": os._exit(9)
    if mode == "hang": time.sleep(100)
    if mode == "error": raise ValueError("cannot cost this")
    return {"latency_ms": 2.5 * batch}
serve(estimate, name="hostile", objectives=["latency_ms"])
)PY";
  return p.string();
}
}  // namespace

TEST(ExternalDevice, PythonRooflineRoundTrip) {
  auto dev =
      load_device(std::string(HWNAS_SOURCE_DIR) + "/examples/devices/external/py_roofline.json");
  EXPECT_EQ(dev->family(), "external");
  Cost c = dev->estimate(one_node());
  ASSERT_TRUE(c.feasible) << c.infeasible_reason;
  // 2e6 flops at 50 GFLOP/s = 40 us vs 4020 B at 10 GB/s = 0.4 us; + 5 us per kernel.
  EXPECT_NEAR(c.latency_ms, 0.045, 1e-9);
  EXPECT_NEAR(c.energy_mj, 0.09, 1e-9);
  EXPECT_DOUBLE_EQ(c.memory_bytes, 4e3);
}

TEST(ExternalDevice, MisbehavingProcessFailsOnlyThatCost) {
  const fs::path dir = fs::temp_directory_path() / ("hwnas_ext_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  nlohmann::json d = {
      {"name", "ext"},
      {"family", "external"},
      {"command", {"python3", hostile_script(dir)}},
      {"timeout_s", 2},
      {"batch", 2},
      {"env",
       {{"HWNAS_EXAMPLES", std::string(HWNAS_SOURCE_DIR) + "/examples/devices/external"},
        {"STATE", (dir / "count").string()},
        {"MODES", "ok,nan,garbage,crash,hang,error,ok"}}}};
  auto dev = make_device(d);
  auto expect_failed = [&](const std::string& what) {
    Cost c = dev->estimate(one_node());
    EXPECT_FALSE(c.feasible);
    EXPECT_TRUE(std::isnan(c.latency_ms));
    EXPECT_NE(c.infeasible_reason.find("external device 'ext'"), std::string::npos)
        << c.infeasible_reason;
    EXPECT_NE(c.infeasible_reason.find(what), std::string::npos) << c.infeasible_reason;
  };
  Cost ok = dev->estimate(one_node());
  EXPECT_TRUE(ok.feasible) << ok.infeasible_reason;
  EXPECT_DOUBLE_EQ(ok.latency_ms, 5.0);  // batch 2 reached the process
  expect_failed("answered latency_ms = -1.0 (must be a finite number >= 0)");
  expect_failed("answered a line that is not JSON: 'not json'");
  expect_failed("the process exited with status 9 before answering");
  expect_failed("no answer within timeout_s = 2 s");
  expect_failed("ValueError: cannot cost this");
  Cost again = dev->estimate(one_node());  // restarted, back to normal
  EXPECT_TRUE(again.feasible) << again.infeasible_reason;
  fs::remove_all(dir);
}

TEST(ExternalDevice, BadDescriptionsAreNamed) {
  auto error_of = [](const nlohmann::json& d) {
    try {
      make_device(d);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(
      error_of({{"name", "x"}, {"family", "external"}, {"command", "python3"}}).find("command"),
      std::string::npos);
  nlohmann::json d = {{"name", "x"}, {"family", "external"}, {"command", {"/nonexistent/prog"}}};
  Cost c = make_device(d)->estimate(one_node());
  EXPECT_FALSE(c.feasible);
  EXPECT_NE(c.infeasible_reason.find("cannot start '/nonexistent/prog'"), std::string::npos)
      << c.infeasible_reason;
}
