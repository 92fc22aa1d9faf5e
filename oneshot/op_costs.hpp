// Prices every candidate op of a supernet's cell on a device model (the hardware term of FBNet
// and ProxylessNAS, but from the device model instead of a measured lookup table).
//
// An op is priced in place: a one-node network (the cell's input type -> the op) is turned into
// a workload by the same builder that prices whole candidates, the device estimates it, and the
// op's own node in the per-node breakdown is its cost (network-level overheads such as the input
// transfer are not the op's).  Ops the workload builder drops ("none", "skip_connect") cost 0,
// as they do inside a derived network.  A device without a per-node breakdown is charged the
// difference between the one-op network and an identity network.
#pragma once

#include <string>
#include <vector>

#include "hwmodels/device.hpp"
#include "oneshot/darts_supernet.hpp"

namespace hwnas::oneshot {

// What one op costs on one device: "latency_ms" or "energy_mj", per inference at the device's
// batch.  Throws std::invalid_argument for another cost name.
double op_cost(const hw::Device& device, const CandidateOp& op, const spaces::TensorType& in,
               const std::string& cost);

// cost[e][o]: op o on edge e summed over every cell of the network (all cells share alpha, so
// an edge's op runs once per cell, at that cell's stage shape).
std::vector<std::vector<double>> edge_op_costs(const CellLayout& layout, const hw::Device& device,
                                               const std::string& cost);

}  // namespace hwnas::oneshot
