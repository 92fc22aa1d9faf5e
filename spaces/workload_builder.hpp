// Static workload of a genome (per-sample counts from each block kind's counting rule), with
// measured activity merged in when given.  Only what runs enters it: zero-output nodes ("none"),
// nodes whose output reaches the network output only through them (dead), and zero-copy nodes
// (skip_connect, flatten, an add left with one non-zero input) are left out, so every device
// family charges them nothing.  An add drops its zero inputs.  A batch norm or activation that a
// fused runtime merges into its producer gets kernels 0 (eager_kernels keeps its own launch).
#pragma once

#include <string>

#include "hwmodels/workload.hpp"
#include "nn/activity.hpp"
#include "spaces/genome.hpp"

namespace hwnas::spaces {

// Node names are "n<index>:<kind>" (genome numbering).
std::string workload_node_name(const Genome& g, Genome::NodeId v);

// `activity` (optional) is what an evaluation pass recorded, one sink per genome node id
// (GenomeModel::forward with ForwardContext::recorder set); each node's sink becomes its
// NodeWorkload::activity as per-sample averages.  Nodes without a sink stay unmeasured.
hw::Workload build_workload(const Genome& g, const nn::ActivityRecorder* activity = nullptr);

// The same, carrying the canonical genome in Workload::architecture, for the models that read it
// (hw::Device::wants_architecture(): external devices that build the network to time it).
hw::Workload build_workload_with_genome(const Genome& g);

}  // namespace hwnas::spaces
