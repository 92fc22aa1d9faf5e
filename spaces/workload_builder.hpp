// Static workload of a genome (per-sample counts from each block kind's counting rule), with
// measured activity merged in when given.  Only what runs enters it: zero-output nodes ("none"),
// nodes whose output reaches the network output only through them (dead), and zero-copy nodes
// (skip_connect, flatten, an add left with one non-zero input) are left out, so every device
// family charges them nothing.  An add drops its zero inputs.  A batch norm or activation that a
// fused runtime merges into its producer gets kernels 0 (eager_kernels keeps its own launch).
#pragma once

#include <string>
#include <vector>

#include "hwmodels/workload.hpp"
#include "nn/activity.hpp"
#include "spaces/genome.hpp"

namespace hwnas::spaces {

// What each node does when the network runs (cost what runs).  Zero: its output is zero
// whatever the input ("none", or an add of zeros).  Dead: its output reaches the network output
// only through zero nodes (a NAS-Bench-201 cell path cut by none).  ZeroCopy: a view or identity
// (skip_connect, flatten, an add left with one non-zero input).  The workload charges only Runs;
// the model (spaces/model_builder.hpp) computes neither Zero nor Dead nodes.  Indexed by node id;
// `order` is g.topological_order().
enum class NodeRole { Input, Runs, ZeroCopy, Zero, Dead };
std::vector<NodeRole> node_roles(const Genome& g, const std::vector<Genome::NodeId>& order);

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
