#include "oneshot/op_costs.hpp"

#include <stdexcept>

#include "spaces/workload_builder.hpp"

namespace hwnas::oneshot {
namespace {

double cost_of(const hw::Cost& c, const std::string& cost) {
  return cost == "latency_ms" ? c.latency_ms : c.energy_mj;
}

hw::Cost estimate(const hw::Device& device, const spaces::Genome& g) {
  return device.estimate(device.wants_architecture() ? spaces::build_workload_with_genome(g)
                                                     : spaces::build_workload(g));
}

}  // namespace

double op_cost(const hw::Device& device, const CandidateOp& op, const spaces::TensorType& in,
               const std::string& cost) {
  if (cost != "latency_ms" && cost != "energy_mj")
    throw std::invalid_argument("op cost: '" + cost + "' is not latency_ms or energy_mj");
  spaces::Genome g(in);
  const auto v = g.add_node(op.kind, op.params);
  g.add_edge(g.input_node(), v);
  g.validate();
  const hw::Cost c = estimate(device, g);
  const std::string own = spaces::workload_node_name(g, v);
  if (!c.nodes.empty()) {
    double sum = 0;
    bool found = false;
    for (const auto& n : c.nodes)
      if (n.name == own) {
        sum += cost == "latency_ms" ? n.latency_s * 1e3 : n.energy_j * 1e3;
        found = true;
      }
    if (found || spaces::build_workload(g).nodes.empty()) return sum;
  }
  spaces::Genome id(in);
  id.add_edge(id.input_node(), id.add_node("skip_connect"));
  id.validate();
  return std::max(0.0, cost_of(c, cost) - cost_of(estimate(device, id), cost));
}

std::vector<std::vector<double>> edge_op_costs(const CellLayout& l, const hw::Device& device,
                                               const std::string& cost) {
  std::vector<double> per_op(l.ops.size(), 0.0);
  for (std::size_t s = 0; s < l.stages.size(); ++s)
    for (std::size_t o = 0; o < l.ops.size(); ++o)
      per_op[o] += l.stages[s].cells * op_cost(device, l.ops[o], l.cell_type(s), cost);
  return std::vector<std::vector<double>>(l.edges.size(), per_op);
}

}  // namespace hwnas::oneshot
