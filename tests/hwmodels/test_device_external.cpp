// External devices (device_external.cpp): the JSON-lines protocol with the Python example, and
// a process that crashes, hangs, answers garbage or NaN fails only that cost, naming the device,
// and is restarted for the next request.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>

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
    if mode == "overflow": sys.stdout.write('{"latency_ms": 1e400}\n'); sys.stdout.flush(); return {"latency_ms": 1.0}
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
        {"MODES", "ok,nan,garbage,overflow,crash,hang,error,ok"}}}};
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
  // nlohmann answers a number beyond the double range with out_of_range, not parse_error.
  expect_failed("answered a line that is not JSON: '{\"latency_ms\": 1e400}'");
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

// estimate_many: a device that says "batch": true gets requests max_batch at a time, in one line
// each, and its answers come back in order; a wrong-sized batch answer fails that batch only.
TEST(ExternalDevice, BatchedRequests) {
  const fs::path dir =
      fs::temp_directory_path() / ("hwnas_ext_batch_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "batch_device.py") << R"PY(
import os, sys
sys.path.insert(0, os.environ["HWNAS_EXAMPLES"])
from hwnas_device import serve
calls = 0
def one(arch, workload, batch):
    return {"latency_ms": workload["nodes"][0]["macs"] / 1e6}
def many(requests):
    global calls
    calls += 1
    with open(os.environ["LOG"], "a") as f:
        f.write("%d\n" % len(requests))
    out = [one(*r) for r in requests]
    return out[:-1] if calls == int(os.environ.get("SHORT", "0")) else out
serve(one, name="b", objectives=["latency_ms"], estimate_batch=many, max_batch=3)
)PY";
  auto device = [&](const std::string& log, const std::string& short_call) {
    return make_device(
        {{"name", "b"},
         {"family", "external"},
         {"command", {"python3", (dir / "batch_device.py").string()}},
         {"env",
          {{"HWNAS_EXAMPLES", std::string(HWNAS_SOURCE_DIR) + "/examples/devices/external"},
           {"LOG", (dir / log).string()},
           {"SHORT", short_call}}}});
  };
  std::vector<Workload> ws;
  for (int i = 1; i <= 7; ++i) {
    Workload w;
    w.nodes.push_back(node("a", OpCategory::Dense, i * 1e6, 4e3, 10, 10));
    ws.push_back(w);
  }
  auto log_lines = [&](const std::string& log) {
    std::ifstream in(dir / log);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  };

  const auto costs = device("a.log", "0")->estimate_many(ws);
  ASSERT_EQ(costs.size(), 7u);
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(costs[i].feasible) << costs[i].infeasible_reason;
    EXPECT_DOUBLE_EQ(costs[i].latency_ms, i + 1.0);  // in request order
  }
  EXPECT_EQ(log_lines("a.log"), (std::vector<std::string>{"3", "3", "1"}));

  // The helper answers a batch whose estimate_batch returned too few results one by one.
  const auto fallback = device("b.log", "2")->estimate_many(ws);
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(fallback[i].feasible) << i << ": " << fallback[i].infeasible_reason;
    EXPECT_DOUBLE_EQ(fallback[i].latency_ms, i + 1.0);
  }

  // A process (no helper) whose second batch answer is one short: that batch's three costs fail,
  // naming the problem; the process is restarted and the other costs stand.
  std::ofstream(dir / "raw_device.py") << R"PY(
import json, sys
batches = 0
for line in sys.stdin:
    m = json.loads(line)
    if m["type"] == "hello":
        r = {"type": "hello", "protocol": 1, "objectives": ["latency_ms"], "batch": True,
             "max_batch": 3}
    else:
        batches += 1
        rs = [{"type": "result", "id": q["id"], "latency_ms": q["workload"]["nodes"][0]["macs"] / 1e6}
              for q in m["requests"]]
        r = {"type": "results", "id": m["id"], "results": rs[:-1] if batches == 2 else rs}
    sys.stdout.write(json.dumps(r) + "\n")
    sys.stdout.flush()
)PY";
  const auto mixed = make_device({{"name", "raw"},
                                  {"family", "external"},
                                  {"command", {"python3", (dir / "raw_device.py").string()}}})
                         ->estimate_many(ws);
  for (int i = 0; i < 7; ++i) {
    if (i >= 3 && i < 6) {
      EXPECT_FALSE(mixed[i].feasible);
      EXPECT_NE(mixed[i].infeasible_reason.find("an array of 3 answers"), std::string::npos)
          << mixed[i].infeasible_reason;
    } else {
      EXPECT_TRUE(mixed[i].feasible) << i << ": " << mixed[i].infeasible_reason;
      EXPECT_DOUBLE_EQ(mixed[i].latency_ms, i + 1.0);
    }
  }
  fs::remove_all(dir);
}

// "concurrency": N processes; requests from several threads are answered by different processes
// at the same time (each answer carries the pid that gave it), one process when N = 1.
TEST(ExternalDevice, ConcurrencyStartsThatManyProcesses) {
  const fs::path dir = fs::temp_directory_path() / ("hwnas_ext_conc_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "pid_device.py") << R"PY(
import os, sys, time
sys.path.insert(0, os.environ["HWNAS_EXAMPLES"])
from hwnas_device import serve
def estimate(arch, workload, batch):
    time.sleep(0.5)
    return {"latency_ms": 1.0, "memory_bytes": float(os.getpid())}
serve(estimate, name="pids", objectives=["latency_ms", "memory_bytes"])
)PY";
  auto pids_with = [&](int concurrency) {
    auto dev = make_device(
        {{"name", "pids"},
         {"family", "external"},
         {"concurrency", concurrency},
         {"command", {"python3", (dir / "pid_device.py").string()}},
         {"env",
          {{"HWNAS_EXAMPLES", std::string(HWNAS_SOURCE_DIR) + "/examples/devices/external"}}}});
    std::vector<std::future<Cost>> calls;
    for (int i = 0; i < 4; ++i)
      calls.push_back(std::async(std::launch::async, [&] { return dev->estimate(one_node()); }));
    std::set<double> pids;
    for (auto& c : calls) {
      const Cost cost = c.get();
      EXPECT_TRUE(cost.feasible) << cost.infeasible_reason;
      pids.insert(cost.memory_bytes);
    }
    return pids.size();
  };
  EXPECT_EQ(pids_with(1), 1u);
  EXPECT_EQ(pids_with(2), 2u);
  fs::remove_all(dir);
}
