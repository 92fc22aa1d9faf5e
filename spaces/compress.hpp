// Weight compression applied in the forward pass of blocks with weights: magnitude pruning and
// fake quantisation, both with straight-through gradients, so a candidate trained with
// "bits": 8 or "prune": 0.5 sees (approximately) the accuracy its compressed deployment would.
#pragma once

#include "nn/autograd.hpp"

namespace hwnas::spaces {

// Returns `w` with the smallest-magnitude fraction `prune` of its entries zeroed and the rest
// quantised to `bits` (symmetric, one scale per output channel, dim 0).  bits >= 16
// leaves values unquantised (float16 rounding is below training noise).  The gradient passes
// straight through to the kept entries and is zero for pruned ones.  With bits >= 16 and
// prune == 0 it returns `w` itself.
nn::Var compress_weight(const nn::Var& w, int bits, double prune);

}  // namespace hwnas::spaces
