// DARTS with a hardware term: the derived architecture's predicted latency as the hardware
// weight rises.  For each weight, trains the supernet of a cell space on Fashion-MNIST (padded
// to the space's input; validation held out of the TRAIN split) and prints the derived cell,
// its predicted latency on the target device (whole network, the device model), the expected
// cell cost under the final op probabilities, the skip count and whether the skip guard fired.
//
//   build/bench/bench_darts_hardware_weight [space=examples/spaces/darts_cell.json]
//       [weights=0,1,10] [epochs=2] [steps=20] [guard=cap] [max_skip=2]
//       [device=jetson_orin_nano] [batch=32] [train=2000] [val=1000] [seed=1]
//   (key=value arguments, any order)
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

#include "evaluators/task_registry.hpp"
#include "oneshot/darts_search.hpp"
#include "spaces/workload_builder.hpp"

using namespace hwnas;

int main(int argc, char** argv) {
  std::map<std::string, std::string> a = {
      {"space", std::string(HWNAS_BENCH_SOURCE_DIR) + "/examples/spaces/darts_cell.json"},
      {"weights", "0,1,10"},
      {"epochs", "2"},
      {"steps", "20"},
      {"guard", "cap"},
      {"max_skip", "2"},
      {"device", "jetson_orin_nano"},
      {"batch", "32"},
      {"train", "2000"},
      {"val", "1000"},
      {"seed", "1"},
      {"alpha_lr", "0.03"}};
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    const auto eq = s.find('=');
    if (eq == std::string::npos || !a.count(s.substr(0, eq))) {
      std::cerr << "usage: key=value with key in";
      for (const auto& [k, v] : a) std::cerr << " " << k;
      std::cerr << "\n";
      return 2;
    }
    a[s.substr(0, eq)] = s.substr(eq + 1);
  }
  auto space = spaces::load_space(a["space"]);
  auto device = hw::load_device(a["device"]);
  const eval::TaskSpec task = eval::resolve_task("fashion_mnist");
  const eval::TrainValSplit data =
      eval::make_task_data(task, space->input_type(), std::stoull(a["seed"]),
                           {std::stoi(a["train"]), std::stoi(a["val"])});

  std::printf("space %s, device %s, %s epochs x %s steps, batch %s, guard %s (max_skip %s)\n",
              a["space"].c_str(), device->name().c_str(), a["epochs"].c_str(), a["steps"].c_str(),
              a["batch"].c_str(), a["guard"].c_str(), a["max_skip"].c_str());
  std::printf("%8s %12s %14s %6s %9s %8s  %s\n", "weight", "latency_ms", "E[cells]_ms", "skips",
              "collapse", "seconds", "derived cell");
  std::stringstream ws(a["weights"]);
  for (std::string w; std::getline(ws, w, ',');) {
    oneshot::DartsOptions o;
    o.hardware_weight = std::stod(w);
    o.epochs = std::stoi(a["epochs"]);
    o.steps_per_epoch = std::stoi(a["steps"]);
    o.batch_size = std::stoi(a["batch"]);
    o.w_optimizer = "adamw";
    o.w_lr = 3e-3f;
    o.alpha_lr = std::stof(a["alpha_lr"]);
    o.skip_guard = a["guard"];
    o.max_skip = std::stoi(a["max_skip"]);
    o.seed = std::stoull(a["seed"]);
    const oneshot::DartsOutcome r = oneshot::run_darts(*space, data, device.get(), o);
    const auto& g = r.candidates.front();
    const double ms = device->estimate(spaces::build_workload(g)).latency_ms;
    std::printf("%8s %12.4f %14.4f %6d %9s %8.1f  %s\n", w.c_str(), ms, r.expected_cost,
                oneshot::count_skips(oneshot::cell_layout(*space), r.decisions),
                r.collapsed ? ("ep " + std::to_string(r.collapse_epoch)).c_str() : "no",
                r.report["seconds"].get<double>(), space->describe(g).c_str());
    std::fflush(stdout);
  }
  return 0;
}
