// Static workload of a genome (per-sample counts from each block kind's counting rule), with
// measured activity merged in when given.
#pragma once

#include <map>
#include <string>

#include "hwmodels/workload.hpp"
#include "nn/module.hpp"
#include "spaces/genome.hpp"

namespace hwnas::spaces {

// `activity` (optional) holds per-node measured activity keyed by node name, already divided
// by the number of samples; it fills the NodeWorkload activity fields.
// Node names are "n<index>:<kind>" (genome numbering); activity maps use the same names.
std::string workload_node_name(const Genome& g, Genome::NodeId v);

hw::Workload build_workload(const Genome& g,
                            const std::map<std::string, nn::Activity>* activity = nullptr);

}  // namespace hwnas::spaces
