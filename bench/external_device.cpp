// External devices (docs/external_devices.md): what the JSON-lines protocol costs per request,
// and how the torch_cpu example device (PyTorch on this CPU) ranks networks against hwnas's own
// host measurement.
//
//   build/bench/bench_external_device [n_cnns=30]
//
// 1. Protocol overhead: NB201 cells (~100 workload nodes each) costed by the Python roofline
//    example (twenty lines of arithmetic, so the time is the protocol: JSON encoding of the
//    request, the pipe round trip, Python's decode and encode), against the same roofline in C++
//    (the gpu family).  Requests include the genome, as in a search.
// 2. torch_cpu vs host: CNNs sampled from examples/spaces/cnn.json, batch 1, one thread each;
//    Spearman rho of the two latencies, and the time each device took per architecture.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "hwmodels/calibration.hpp"
#include "hwmodels/device.hpp"
#include "hwmodels/host_timer.hpp"
#include "nn/autograd.hpp"
#include "nn/parallel.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"

using namespace hwnas;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kSource = HWNAS_SOURCE_DIR;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void protocol_overhead() {
  auto space = spaces::load_space(kSource + "/examples/spaces/nb201.json");
  spaces::Rng rng(1);
  std::vector<hw::Workload> ws;
  for (int i = 0; i < 400; ++i)
    ws.push_back(spaces::build_workload_with_genome(space->sample(rng)));
  auto py = hw::load_device(kSource + "/examples/devices/external/py_roofline.json");
  auto cpp = hw::load_device("jetson_orin_nano");
  py->estimate(ws[0]);  // start the process and do the handshake outside the timing
  auto t0 = Clock::now();
  double sink = 0;
  for (const auto& w : ws) sink += py->estimate(w).latency_ms;
  const double py_ms = seconds_since(t0) * 1e3 / ws.size();
  t0 = Clock::now();
  for (const auto& w : ws) sink += cpp->estimate_total(w).latency_ms;
  const double cpp_ms = seconds_since(t0) * 1e3 / ws.size();
  std::printf("protocol overhead (NB201 cells, %zu nodes, request %.1f kB with the genome):\n",
              ws[0].nodes.size(),
              ws[0].to_json().dump().size() / 1024.0 + ws[0].architecture.dump().size() / 1024.0);
  std::printf("  external Python roofline  %8.3f ms per request\n", py_ms);
  std::printf("  in-process C++ roofline   %8.4f ms per estimate\n", cpp_ms);
  std::printf("  => protocol + Python cost %.3f ms per request (%.0fx the in-process model)\n",
              py_ms - cpp_ms, py_ms / cpp_ms);
  if (sink < 0) std::printf("%f\n", sink);
}

double host_ms(const spaces::Genome& g) { return spaces::time_forward_ms(g, 1, 3, 15); }

void torch_vs_host(int n) {
  nn::ThreadBudget one_thread(1);
  auto space = spaces::load_space(kSource + "/examples/spaces/cnn.json");
  std::ifstream in(kSource + "/examples/devices/torch_cpu/torch_cpu.json");
  nlohmann::json d = nlohmann::json::parse(in);
  d["cwd"] = kSource + "/examples/devices/torch_cpu";
  d["env"] = {{"HWNAS_BIN", std::string(HWNAS_BINARY_DIR) + "/hwnas"}};
  auto torch_cpu = hw::make_device(d);
  spaces::Rng rng(2026);
  std::vector<double> t_ms, h_ms;
  double t_wall = 0, h_wall = 0;
  std::printf(
      "\ntorch_cpu vs hwnas host measurement, %d CNNs from examples/spaces/cnn.json, "
      "batch 1, one thread:\n  %-18s %10s %10s\n",
      n, "architecture", "torch ms", "hwnas ms");
  for (int i = 0; i < n; ++i) {
    const spaces::Genome g = space->sample(rng);
    auto t0 = Clock::now();
    const hw::Cost c = torch_cpu->estimate(spaces::build_workload_with_genome(g));
    t_wall += seconds_since(t0);
    if (!c.feasible) {
      std::printf("  %s: %s\n", g.hash().c_str(), c.infeasible_reason.c_str());
      continue;
    }
    t0 = Clock::now();
    const double h = host_ms(g);
    h_wall += seconds_since(t0);
    t_ms.push_back(c.latency_ms);
    h_ms.push_back(h);
    std::printf("  %-18s %10.4f %10.4f\n", g.hash().c_str(), c.latency_ms, h);
  }
  double ratio = 0;
  for (std::size_t i = 0; i < t_ms.size(); ++i) ratio += h_ms[i] / t_ms[i];
  std::printf("  Spearman rho %.3f over %zu architectures; hwnas/torch latency ratio mean %.2f\n",
              hw::spearman_rho(t_ms, h_ms), t_ms.size(), ratio / t_ms.size());
  std::printf(
      "  device time per architecture: torch_cpu %.2f s (export + import + timing), "
      "host %.2f s\n",
      t_wall / n, h_wall / n);
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 30;
  protocol_overhead();
  torch_vs_host(n > 0 ? n : 30);
  return 0;
}
