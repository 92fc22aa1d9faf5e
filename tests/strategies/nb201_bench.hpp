// A synthetic tabular benchmark over the NAS-Bench-201 cell space (all 15,625 cells): a MADE-UP
// accuracy with interactions between edges (not the benchmark's numbers) and the latency the
// pixel3_a75 device model gives each cell's static workload.  Enumerating it gives the true
// Pareto front, so a strategy's hypervolume can be compared with the best possible.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <unordered_map>
#include <vector>

#include "hwmodels/device.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"
#include "strategies/pareto.hpp"
#include "strategies/strategy.hpp"

namespace hwnas::test {

inline const spaces::Space& nb201_space() {
  static const auto space = spaces::make_space(
      {{"type", "nb201"}, {"input", {{"kind", "image"}, {"shape", {3, 32, 32}}}}, {"outputs", 10}});
  return *space;
}

// Edge ops of "|a~0|+|b~0|c~1|+|d~0|e~1|f~2|" in that order: edges 0->1, 0->2, 1->2, 0->3,
// 1->3, 2->3.
inline std::array<std::string, 6> nb201_ops(const std::string& arch) {
  std::array<std::string, 6> ops;
  std::size_t k = 0, pos = 0;
  while (k < 6 && (pos = arch.find('|', pos)) != std::string::npos) {
    std::size_t end = arch.find('|', pos + 1);
    std::string tok = arch.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tok.empty() || tok == "+") continue;
    ops[k++] = tok.substr(0, tok.find('~'));
  }
  return ops;
}

// Made-up accuracy: per-edge op values, a residual bonus, conv-after-conv bonuses along paths,
// a pooling penalty, broken cells (no path to the output) at chance, and a little deterministic
// per-cell noise.
inline double nb201_accuracy(const std::array<std::string, 6>& ops, std::uint64_t index) {
  auto conv = [](const std::string& o) { return o == "nor_conv_3x3" || o == "nor_conv_1x1"; };
  auto live = [](const std::string& o) { return o != "none"; };
  // node reachability from the input through non-none edges
  bool r1 = live(ops[0]);
  bool r2 = live(ops[1]) || (r1 && live(ops[2]));
  bool r3 = live(ops[3]) || (r1 && live(ops[4])) || (r2 && live(ops[5]));
  if (!r3) return 10.0;
  static const std::unordered_map<std::string, double> value = {{"none", 0.0},
                                                                {"skip_connect", 1.0},
                                                                {"nor_conv_1x1", 2.5},
                                                                {"nor_conv_3x3", 4.0},
                                                                {"avg_pool_3x3", 0.5}};
  static const double weight[6] = {1.0, 0.8, 1.2, 0.6, 1.0, 1.4};
  double acc = 55;
  for (int e = 0; e < 6; ++e) acc += weight[e] * value.at(ops[e]);
  if (ops[3] == "skip_connect" && (conv(ops[4]) || conv(ops[5]))) acc += 3.0;  // residual
  if (conv(ops[0]) && conv(ops[2])) acc += 1.5;                                // conv chain 0->1->2
  if (conv(ops[2]) && conv(ops[5])) acc += 1.5;                                // 1->2->3
  if (conv(ops[0]) && conv(ops[4])) acc += 1.0;                                // 0->1->3
  int pools = 0;
  for (const auto& o : ops) pools += o == "avg_pool_3x3";
  if (pools >= 3) acc -= 4.0;
  if (ops[5] == "none") acc -= 2.0;  // the last node's only direct feed matters most
  acc += 0.3 * static_cast<double>((index * 2654435761u) % 1000) / 1000.0;
  return acc;
}

struct Nb201Bench {
  std::unordered_map<std::string, std::size_t> row;  // describe() string -> index
  std::vector<double> accuracy, latency;
  std::vector<std::vector<double>> points;  // {accuracy, latency}
  std::vector<double> reference;            // {median accuracy, worst latency}
  double true_hypervolume = 0;
  double max_accuracy = 0;

  const std::vector<bool> maximize = {true, false};
};

inline const Nb201Bench& nb201_bench() {
  static const Nb201Bench b = [] {
    Nb201Bench b;
    const auto& space = nb201_space();
    auto device = hw::load_device("pixel3_a75");
    const std::uint64_t n = *space.size();
    for (std::uint64_t i = 0; i < n; ++i) {
      spaces::Genome g = space.at(i);
      const std::string arch = space.describe(g);
      b.row[arch] = b.accuracy.size();
      b.accuracy.push_back(nb201_accuracy(nb201_ops(arch), i));
      b.latency.push_back(device->estimate(spaces::build_workload(g)).latency_ms);
      b.points.push_back({b.accuracy.back(), b.latency.back()});
    }
    std::vector<double> acc = b.accuracy;
    std::nth_element(acc.begin(), acc.begin() + acc.size() / 2, acc.end());
    b.reference = {acc[acc.size() / 2], *std::max_element(b.latency.begin(), b.latency.end())};
    b.true_hypervolume = strategies::hypervolume(b.points, b.maximize, b.reference);
    b.max_accuracy = *std::max_element(b.accuracy.begin(), b.accuracy.end());
    return b;
  }();
  return b;
}

// The result the benchmark gives a proposal: objectives {accuracy, latency}, fitness accuracy.
inline strategies::Result nb201_result(const strategies::Proposal& p) {
  const auto& b = nb201_bench();
  const std::size_t i = b.row.at(nb201_space().describe(p.genome));
  strategies::Result r;
  r.id = p.id;
  r.objectives = {b.accuracy[i], b.latency[i]};
  r.fitness = b.accuracy[i];
  r.fidelity = p.fidelity;
  return r;
}

// The same accuracy without the table (and a made-up latency from the op counts): for tests
// that need deterministic results but not the true front, so they skip building the table.
inline strategies::Result nb201_quick_result(const strategies::Proposal& p) {
  const auto ops = nb201_ops(nb201_space().describe(p.genome));
  double latency = 1;
  for (const auto& o : ops)
    latency += o == "nor_conv_3x3"   ? 3.0
               : o == "nor_conv_1x1" ? 1.0
               : o == "avg_pool_3x3" ? 0.5
                                     : 0;
  strategies::Result r;
  r.id = p.id;
  r.objectives = {nb201_accuracy(ops, 0), latency};
  r.fitness = r.objectives[0];
  r.fidelity = p.fidelity;
  return r;
}

}  // namespace hwnas::test
