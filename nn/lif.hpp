// Leaky integrate-and-fire (LIF) neurons over T time steps as ONE fused autograd node, plus the
// spike encoders that turn analog inputs into T steps of drive.
//
// Per neuron, with input current I_t (t = 1..T), v_0 = 0 and a_t = 0 while refractory, else 1:
//   m_t = beta * v_{t-1} + a_t * I_t          membrane before reset
//   s_t = a_t * H(m_t - threshold)            spike (H(0) = 1, as nn::step)
//   v_t = m_t - threshold * s_t               reset by subtraction, or
//   v_t = m_t * (1 - s_t)                     reset to zero
// After a spike the neuron ignores its input and cannot fire for `refractory_steps` steps (its
// membrane keeps decaying).  The refractory mask a_t is a function of earlier spikes and, like
// the spikes themselves, has no gradient of its own.
//
// Why fused: built from primitive ops each step would add ~6 graph nodes (T x 6 per layer); the
// fused op runs the whole loop on raw buffers and replays back-propagation through time by hand,
// with the surrogate derivative of nn::step standing in for H'.  The input current for all T
// steps comes from one matmul/conv over the [B*T] batch before the call, so the loop itself
// only does the neuron update.  Gradients equal those of the same recurrence written with
// nn::step (tests/nn/test_lif.cpp checks this) — finite differences cannot see through H.
//
// Threading: batch rows are independent; each row's loop runs in one task and the beta and
// threshold gradients are summed per row and then in row order, so results are bit-identical
// whatever the thread count.
#pragma once

#include <cstdint>
#include <random>

#include "nn/autograd.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {

enum class LifReset {
  Subtract,  // v -= threshold after a spike: keeps the excess charge (better rate coding)
  Zero,      // v = 0 after a spike
};

struct LifOptions {
  LifReset reset = LifReset::Subtract;
  int refractory_steps = 0;  // steps a neuron stays silent (and ignores input) after a spike
  Surrogate surrogate = Surrogate::fast_sigmoid(25.0f);
};

// Throws std::invalid_argument for a negative refractory_steps or an invalid surrogate.
void validate(const LifOptions& o);

// current [B, T, N] (any N; conv layers flatten C*H*W); beta and threshold each a 1-element
// tensor (a parameter when learnable, a constant otherwise).  Returns the spikes [B, T, N].
// Throws std::invalid_argument naming "lif" and the offending input on a bad rank or size, a
// beta outside [0, 1] or a threshold that is not > 0.
Var lif(const Var& current, const Var& beta, const Var& threshold, const LifOptions& options = {});

// ---- encoders: analog input [B, F...] -> drive for T steps [B, T, F] (F = all non-batch dims
// flattened, since tensors stop at rank 4) ----
// Direct: the same analog input at every step (the first spiking layer's synapses see the real
// values; Rueckauer et al. 2017).  Differentiable (gradient summed over the steps).
Var encode_direct(const Var& x, int steps);
// Rate / Poisson: a Bernoulli spike with p = clamp(x, 0, 1) per element and step, drawn in
// order from `rng` (same seed, same spikes whatever the thread count).  No gradient (sampling).
Var encode_rate(const Var& x, int steps, std::mt19937_64& rng);

}  // namespace hwnas::nn
