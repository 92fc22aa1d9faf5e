// An optional capability of a space: its search operators and encodings on decision vectors,
// without building genomes.
//
// A genome is a validated graph (an NB201 network is ~150 nodes, ~0.1 ms to build and infer);
// strategies that look at many candidates and propose few (BANANAS scores 100 mutations per
// round and proposes 15; NSGA-II drops children it proposed before) only need a candidate's
// decisions, its encoding and its name until they choose it.  A space implements this interface
// next to Space where its decision vector is the architecture (every decision read, no
// conditional choices), and strategies find it with dynamic_cast (strategies/drafts.hpp), so
// spaces without it keep working through genomes.
//
// Contract (tested per space): for a canonical vector v = encode_decisions(g) and the same RNG
// state, each operator returns encode_decisions() of the genome operator's result and draws the
// same random numbers, so a strategy proposes the same architectures on either path.
#pragma once

#include <string>
#include <vector>

#include "spaces/space.hpp"

namespace hwnas::spaces {

class DecisionOperators {
 public:
  virtual ~DecisionOperators() = default;
  virtual std::vector<int> sample_decisions(Rng& rng) const = 0;
  virtual std::vector<int> mutate_decisions(const std::vector<int>& v, Rng& rng) const = 0;
  virtual std::vector<int> crossover_decisions(const std::vector<int>& a, const std::vector<int>& b,
                                               Rng& rng) const = 0;
  // Equal to Space::encode_onehot / encode_path / describe of decode(v).
  virtual std::vector<float> encode_onehot_decisions(const std::vector<int>& v) const = 0;
  virtual std::vector<float> encode_path_decisions(const std::vector<int>& v) const = 0;
  virtual std::string describe_decisions(const std::vector<int>& v) const = 0;
};

}  // namespace hwnas::spaces
