// Weight compression applied in the forward pass of blocks with weights: unstructured magnitude
// pruning ("prune": a mask, shapes unchanged) and fake quantisation, both with straight-through
// gradients, so a candidate trained with "bits": 8 or "prune": 0.5 sees (approximately) the
// accuracy its compressed deployment would.
#pragma once

#include <cstdint>
#include <vector>

#include "nn/autograd.hpp"

namespace hwnas::spaces {

// Returns `w` with the smallest-magnitude fraction `prune` of its entries zeroed and the rest
// quantised to `bits` (symmetric, one scale per output channel, dim 0).  bits >= 16
// leaves values unquantised (float16 rounding is below training noise).  The gradient passes
// straight through to the kept entries and is zero for pruned ones.  With bits >= 16 and
// prune == 0 it returns `w` itself.
//
// On a leaf in grad mode (with no other update hook) the first call leaves an update hook on it
// (nn/autograd.hpp): from then on, while the calls keep asking for the same settings, each
// optimizer step compresses the rows of a trainable weight it has just updated, and the next call
// returns that result (the same values, the same storage on repeated calls: consumers must not
// write into it) instead of compressing again.  A frozen leaf (requires_grad false: LoRA's base
// weight) is compressed by the first call and served the same way until it is written.  It is
// served only while nothing visible wrote the weight since: the same storage, shared with no other
// live tensor, no non-const Var::value() access (Node::version) and no nn::weights_changed().  A
// write by any other path (a Tensor handle copied from the value or a reshaped view of it,
// Node::value, a raw pointer, or a reference or pointer obtained from value() before an earlier
// compress_weight call) must be announced with nn::weights_changed(), as loading a state dict
// does.
nn::Var compress_weight(const nn::Var& w, int bits, double prune);

// nn::linear(x, compress_weight(w, bits, prune), b): the same values and gradients.  While the
// optimizer step prepares w (see above) and this is w's only compressing consumer, the step
// writes no compressed copy of w: the layer's GEMMs prune and quantise w's entries as they pack
// them (nn::WeightView).  The copy is written by one thread and read by every GEMM thread, and
// on 2 threads writing it cost more than the selection of the pruning boundary (bench/README.md,
// stop 47).  Unlike compress_weight's graph, which keeps the forward pass's copy, the backward
// pass reads w again (for the mask and the input gradient): a graph kept across a write to w (an
// optimizer step) backpropagates through w's new values with the forward pass's rule and scales.
// Use compress_weight where a graph outlives a step.
nn::Var compressed_linear(const nn::Var& x, const nn::Var& w, const nn::Var& b, int bits,
                          double prune);

// Whether optimizer steps may prepare weights for compressed_linear without a compressed copy
// (default on).  Off, compressed_linear reads the copy as compress_weight's consumers do: the
// same results (the tests compare the two), for benches and tests.  Set it before training.
void set_packed_compression(bool on);

// Counters of compress_weight's pruning-boundary selections since the last reset, over every
// weight and thread: how often the remembered band of magnitudes held the boundary, and how many
// keys the serial part of a step looked at.  Diagnostics (the selection's cost, not its result,
// depends on them); bench_sampled_vs_torch and the tests read them.
struct PruneSelectionStats {
  std::uint64_t band_selections = 0;  // boundaries found inside the band
  std::uint64_t full_selections = 0;  // full passes: a weight's first step, or the band missed
  std::uint64_t band_keys = 0;        // keys the band selections collected, summed
  std::uint64_t bin_keys = 0;         // keys of the bin each boundary was selected in, summed
};
PruneSelectionStats prune_selection_stats();
void reset_prune_selection_stats();

// The quantisation scales compress_weight uses at `bits`: one per output channel (dim 0) of a
// weight of rank >= 2, one for a vector, each max|w_channel| / (2^(bits-1) - 1); an all-zero
// channel gets 1 (its zeros stay zeros), as does one whose max / qmax underflows to 0.  Empty when
// bits >= 16; bits < 2 (no symmetric levels) throws std::invalid_argument, as compress_weight
// does.  Exports write the same ones.
std::vector<float> quantisation_scales(const nn::Tensor& w, int bits);

// Structured channel pruning ("channel_prune" on conv, dense and moe): the output channels (units,
// expert hidden units) a layer declared with `full` keeps at pruning ratio `ratio`:
// max(1, round(full * (1 - ratio))).  Unlike the magnitude mask above, the pruned channels do not
// exist: the block is built and trained at the kept width (structured pruning as architecture,
// docs/blocks/compression.md), so shapes, MACs, parameters and every device's latency drop.
int kept_channels(int full, double ratio);

}  // namespace hwnas::spaces
