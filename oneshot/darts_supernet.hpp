// The DARTS supernet of a cell space: the space's own skeleton (stem, stages of stacked cells,
// reductions, classifier) with every cell replaced by a super-cell in which each edge i -> j
// (i < j) is a MixedOp over all candidate ops.  One matrix of architecture logits alpha [E, O]
// is shared by every cell, as the space shares one cell genotype across the network.
//
//   nb201: 4-node cell, the 6 edges of NAS-Bench-201, node 3 is the output.
//   cell:  N intermediate nodes; the super-cell has every edge i -> j (node j sees all j
//          earlier nodes, DARTS), the derived cell keeps the inputs_per_node strongest; output
//          = concat of nodes 1..N and the space's 1x1 conv back to the stage's channels.
//
// derive_decisions() turns op probabilities into the space's decision values (Space::decode):
// per edge the strongest op other than "none"; per cell node the top-k inputs by that strength.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "nn/module.hpp"
#include "oneshot/mixed_op.hpp"
#include "spaces/space.hpp"

namespace hwnas::oneshot {

struct CellLayout {
  std::string space_type;   // "nb201" | "cell"
  int nodes = 0;            // intermediate nodes 1..nodes (node 0 is the cell input)
  int inputs_per_node = 0;  // inputs a derived node keeps (nb201: all of them)
  std::vector<CandidateOp> ops;
  std::vector<std::pair<int, int>> edges;  // (from, to), ordered by to, then from
  bool concat_output = false;              // cell: concat + 1x1 conv; nb201: the last node
  struct Stage {
    int cells = 1;
    int channels = 16;
  };
  std::vector<Stage> stages;
  spaces::TensorType input;
  int outputs = 10;
  int none_op = -1;  // index of the zero op, -1 if absent
  int skip_op = -1;  // index of skip_connect, -1 if absent

  int fan(int j) const { return std::min(inputs_per_node, j); }
  // The input type of every cell of stage s.
  spaces::TensorType cell_type(std::size_t s) const;
};

// The layout of an nb201 or cell space; throws std::invalid_argument naming the space type
// for any other.
CellLayout cell_layout(const spaces::Space& space);

class DartsSupernet : public nn::Module {
 public:
  DartsSupernet(CellLayout layout, std::uint64_t seed);
  ~DartsSupernet() override;

  // Runs the network with op weights `weights` [E, O] (op_weights(alpha(), ...)).
  nn::Var forward(const nn::Var& x, const nn::Var& weights, nn::ForwardContext& ctx);
  // Module interface: the plain softmax of alpha.
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override;
  std::string name() const override { return "darts_supernet"; }
  // "arch.alpha", then each skeleton node's tensors under "n<node>." (a super-cell's edges
  // under "n<node>.e<edge>.<op>.").
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override;
  void append_named_buffers(const std::string& prefix, std::vector<nn::NamedBuffer>& out) override;

  const CellLayout& layout() const { return layout_; }
  nn::Var& alpha() { return alpha_; }
  std::vector<nn::Var> weight_parameters();  // everything but alpha
  std::vector<nn::Var> arch_parameters() { return {alpha_}; }

 private:
  struct Impl;
  CellLayout layout_;
  nn::Var alpha_;
  std::unique_ptr<Impl> impl_;
};

// Row-major op probabilities [E][O].
using EdgeProbs = std::vector<std::vector<double>>;
EdgeProbs probabilities(const nn::Var& alpha);

// Decision values (Space::decisions order) of the derived cell: per edge the strongest op that
// is not "none" (ties: lower index), per cell node the inputs_per_node inputs whose chosen op is
// strongest.  With max_skip >= 0, at most max_skip chosen edges keep skip_connect: the weakest
// extra ones take their next op (P-DARTS).  `skips` (optional) receives the skips before capping.
std::vector<int> derive_decisions(const CellLayout& layout, const EdgeProbs& p, int max_skip = -1,
                                  int* skips = nullptr);
// A draw from the distribution: per edge an op other than none by its renormalised probability,
// per cell node inputs drawn without replacement by their chosen op's probability.  Capped as
// derive_decisions.
std::vector<int> sample_decisions(const CellLayout& layout, const EdgeProbs& p, int max_skip,
                                  std::mt19937_64& rng);
// Skip connections in the cell the decision values describe.
int count_skips(const CellLayout& layout, const std::vector<int>& decisions);

}  // namespace hwnas::oneshot
