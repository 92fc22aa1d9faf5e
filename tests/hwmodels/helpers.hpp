// Small builders for hand-written workloads in the hwmodels tests.
#pragma once

#include <string>

#include "hwmodels/workload.hpp"

namespace hwnas::hw::test {

inline NodeWorkload node(std::string name, OpCategory c, double macs, double weight_bytes,
                         double in_bytes, double out_bytes, int bits = 32, int kernels = 1) {
  NodeWorkload n;
  n.name = std::move(name);
  n.block_kind = op_category_name(c);
  n.category = c;
  n.macs = macs;
  n.weight_bytes = weight_bytes;
  n.params = weight_bytes * 8 / bits;
  n.input_bytes = in_bytes;
  n.output_bytes = out_bytes;
  n.bits = bits;
  n.kernels = kernels;
  return n;
}

}  // namespace hwnas::hw::test
