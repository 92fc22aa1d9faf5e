// Analytic hardware prediction throughput: NB201-size workloads (5 cells x 3 stages = 15 cells,
// 6 edges each as relu-conv-bn triples plus node sums = ~20 nodes per cell, + stem, 2 residual
// reduction blocks, pooling and classifier: ~320 nodes), costed with Device::estimate_total on
// one core, then the same on real NB201 genomes built by spaces/.  Target: >= 100,000
// architectures/s (issue requirement 6).  Then end to end from NB201 arch strings (issue 14:
// parse -> genome -> workload -> estimate, target 1,000,000 architectures/s per core): once
// uncached (every string through the whole pipeline), once through search::Nb201CostCache
// (each of the 15,625 cells built and costed once, then parse + lookup), cold and warm.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "hwmodels/device.hpp"
#include "search/batch_predict.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"

using namespace hwnas::hw;

namespace {

NodeWorkload mk(const char* name, OpCategory c, double macs, double wbytes, double in, double out,
                double other = 0) {
  NodeWorkload n;
  n.name = name;
  n.block_kind = op_category_name(c);
  n.category = c;
  n.macs = macs;
  n.other_flops = other;
  n.weight_bytes = wbytes;
  n.params = wbytes / 4;
  n.input_bytes = in;
  n.output_bytes = out;
  return n;
}

// One random NB201 architecture (ops per edge: none, skip, conv1x1, conv3x3, avgpool3x3) on
// 32x32 CIFAR input, channels 16/32/64, fp32.
Workload nb201_like(std::mt19937_64& rng) {
  Workload w;
  w.input_bytes = 3 * 32 * 32 * 4;
  w.nodes.reserve(330);
  std::uniform_int_distribution<int> op(0, 4);
  int ops[6];
  for (int& o : ops) o = op(rng);
  w.nodes.push_back(
      mk("stem", OpCategory::Conv, 27.0 * 16 * 1024, 27 * 16 * 4, 3 * 1024 * 4, 16 * 1024 * 4));
  w.nodes.push_back(
      mk("stem_bn", OpCategory::Norm, 0, 64 * 4, 16 * 1024 * 4, 16 * 1024 * 4, 2 * 16 * 1024));
  for (int stage = 0; stage < 3; ++stage) {
    const double C = 16 << stage, HW = 1024 >> (2 * stage), act = C * HW * 4;
    if (stage > 0) {  // residual reduction block: conv3x3 s2, conv3x3, shortcut pool + conv1x1
      const double Cin = C / 2, inb = Cin * HW * 4 * 4;
      w.nodes.push_back(mk("red_a", OpCategory::Conv, 9 * Cin * C * HW, 9 * Cin * C * 4, inb, act));
      w.nodes.push_back(mk("red_b", OpCategory::Conv, 9 * C * C * HW, 9 * C * C * 4, act, act));
      w.nodes.push_back(mk("red_pool", OpCategory::Pool, 0, 0, inb, Cin * HW * 4, 4 * Cin * HW));
      w.nodes.push_back(
          mk("red_sc", OpCategory::Conv, Cin * C * HW, Cin * C * 4, Cin * HW * 4, act));
      w.nodes.push_back(mk("red_add", OpCategory::Elementwise, 0, 0, 2 * act, act, C * HW));
    }
    for (int cell = 0; cell < 5; ++cell) {
      for (int e = 0; e < 6; ++e) {
        switch (ops[e]) {
          case 0:
            break;  // none
          case 1:
            break;  // skip: no kernel
          case 2:
          case 3: {
            const double k = ops[e] == 3 ? 9 : 1;
            w.nodes.push_back(mk("relu", OpCategory::Elementwise, 0, 0, act, act, C * HW));
            w.nodes.push_back(
                mk("conv", OpCategory::Conv, k * C * C * HW, k * C * C * 4, act, act));
            w.nodes.push_back(mk("bn", OpCategory::Norm, 0, 2 * C * 4, act, act, 2 * C * HW));
            break;
          }
          default:
            w.nodes.push_back(mk("avgpool", OpCategory::Pool, 0, 0, act, act, 9 * C * HW));
        }
      }
      for (int s = 0; s < 3; ++s)
        w.nodes.push_back(mk("sum", OpCategory::Elementwise, 0, 0, 2 * act, act, C * HW));
    }
  }
  w.nodes.push_back(
      mk("lastbn", OpCategory::Norm, 0, 128 * 4, 64 * 64 * 4, 64 * 64 * 4, 2 * 64 * 64));
  w.nodes.push_back(mk("gap", OpCategory::Pool, 0, 0, 64 * 64 * 4, 64 * 4, 64 * 64));
  w.nodes.push_back(mk("fc", OpCategory::Dense, 640, 650 * 4, 64 * 4, 40));
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string device = argc > 1 ? argv[1] : "h100_sxm";
  // A pool of distinct architectures that stays cache-resident, as in a search where each
  // freshly built workload is costed right away (a 2000-pool mostly measures DRAM bandwidth).
  const int n_arch = argc > 2 ? std::stoi(argv[2]) : 100;
  std::mt19937_64 rng(1);
  std::vector<Workload> ws;
  double nodes = 0;
  for (int i = 0; i < n_arch; ++i) {
    ws.push_back(nb201_like(rng));
    nodes += ws.back().nodes.size();
  }
  auto dev = load_device(device);
  double sink = 0;
  for (const auto& w : ws) sink += dev->estimate_total(w).latency_ms;  // warm-up
  const int rounds = 2000000 / n_arch;
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < rounds; ++r)
    for (const auto& w : ws) sink += dev->estimate_total(w).latency_ms;
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double rate = rounds * double(n_arch) / s;
  auto t1 = std::chrono::steady_clock::now();
  for (const auto& w : ws) sink += dev->estimate(w).latency_ms;
  double s_full = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::printf("device %s: %.0f nodes/architecture (NB201-size)\n", device.c_str(), nodes / n_arch);
  std::printf("estimate_total: %.0f architectures/s on one core (target 100000: %s)\n", rate,
              rate >= 1e5 ? "met" : "NOT met");
  std::printf("estimate with per-node breakdown: %.0f architectures/s\n", n_arch / s_full);
  // The same on real NAS-Bench-201 genomes: workloads built by spaces::build_workload from
  // evenly spaced cells of the 15625-cell space (the synthetic pool above isolates the device
  // model; this one is what a search or a rescore actually costs).
  auto space = hwnas::spaces::make_space(nlohmann::json::parse(
      R"({"type":"nb201","input":{"kind":"image","shape":[3,32,32]},"outputs":10})"));
  std::vector<Workload> real;
  double real_nodes = 0;
  for (int i = 0; i < n_arch; ++i) {
    real.push_back(
        hwnas::spaces::build_workload(space->at(static_cast<std::uint64_t>(i) * 15625 / n_arch)));
    real_nodes += real.back().nodes.size();
  }
  auto t2 = std::chrono::steady_clock::now();
  for (int r = 0; r < rounds; ++r)
    for (const auto& w : real) sink += dev->estimate_total(w).latency_ms;
  double s_real = std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
  const double rate_real = rounds * double(n_arch) / s_real;
  std::printf(
      "real NB201 genomes (%.0f nodes/architecture): %.0f architectures/s (target 100000: %s)\n",
      real_nodes / n_arch, rate_real, rate_real >= 1e5 ? "met" : "NOT met");

  // End to end from strings.  A million random arch strings (stored first, as a batch file).
  std::uniform_int_distribution<int> cell(0, 15624);
  const int n_str = argc > 3 ? std::stoi(argv[3]) : 1000000;
  std::vector<std::string> strs;
  strs.reserve(static_cast<std::size_t>(n_str));
  for (int i = 0; i < n_str; ++i) strs.push_back(hwnas::spaces::nb201_string(cell(rng)));
  const int n_full = std::min(300, n_str);
  auto t3 = std::chrono::steady_clock::now();
  for (int i = 0; i < n_full; ++i)
    sink += dev->estimate_total(
                   hwnas::spaces::build_workload(space->parse(strs[static_cast<std::size_t>(i)])))
                .latency_ms;
  const double rate_full =
      n_full / std::chrono::duration<double>(std::chrono::steady_clock::now() - t3).count();
  std::printf("strings, uncached (parse, genome, workload, estimate each): %.0f architectures/s\n",
              rate_full);
  {
    // Where an uncached architecture's time goes (the cache's cold pass pays it once per
    // distinct cell): the same loop on the next strings (the ones above are in the genome
    // memos now), each stage's time summed.
    using clock = std::chrono::steady_clock;
    double stage[3] = {0, 0, 0};
    const int n_stage = std::max(0, std::min(n_full, n_str - n_full));
    for (int i = 0; i < n_stage; ++i) {
      const auto a = clock::now();
      const hwnas::spaces::Genome g = space->parse(strs[static_cast<std::size_t>(n_full + i)]);
      const auto b = clock::now();
      const Workload w = hwnas::spaces::build_workload(g);
      const auto c = clock::now();
      sink += dev->estimate_total(w).latency_ms;
      const auto d = clock::now();
      stage[0] += std::chrono::duration<double>(b - a).count();
      stage[1] += std::chrono::duration<double>(c - b).count();
      stage[2] += std::chrono::duration<double>(d - c).count();
    }
    if (n_stage > 0)
      std::printf(
          "  per architecture: parse + genome %.1f us, workload %.1f us, estimate %.1f us\n",
          1e6 * stage[0] / n_stage, 1e6 * stage[1] / n_stage, 1e6 * stage[2] / n_stage);
  }
  hwnas::search::Nb201CostCache cache(*space, *dev);
  for (int pass = 0; pass < 2; ++pass) {
    auto t4 = std::chrono::steady_clock::now();
    for (const auto& a : strs) sink += cache.find(a)->latency_ms;
    const double rate_c =
        n_str / std::chrono::duration<double>(std::chrono::steady_clock::now() - t4).count();
    std::printf(
        "strings, per-cell cache %s (%zu distinct workloads built and costed): %.0f "
        "architectures/s on one core "
        "(target 1000000: %s)\n",
        pass == 0 ? "cold" : "warm", cache.computed(), rate_c, rate_c >= 1e6 ? "met" : "NOT met");
  }
  std::printf("(checksum %.6g)\n", sink);
  return rate >= 1e5 && rate_real >= 1e5 ? 0 : 1;
}
