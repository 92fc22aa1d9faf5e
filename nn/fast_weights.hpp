// Fast weights: a weight tensor a layer updates with its own inner gradient steps while it
// runs, in training, evaluation and inference alike (test-time training layers such as
// TTT-Linear, Titans' neural memory).  The inner steps ignore the global no-grad mode
// (NoGradGuard) and leave every stored gradient alone; reset() restarts from the initial value
// at the start of each sequence.
//
// The initial value is either a trainable parameter (the outer loop learns where the inner loop
// starts; report it from the owning module's append_named_parameters) or a constant buffer.
// In grad mode with a trainable initial value, the Var handed to the forward pass passes its
// gradient straight to the initial parameter (first-order: the inner steps' own dependence on
// it is not differentiated).
#pragma once

#include <cstdint>
#include <functional>

#include "nn/autograd.hpp"

namespace hwnas::nn {

class FastWeights {
 public:
  // Throws std::invalid_argument if `initial` is undefined.
  explicit FastWeights(Var initial);

  const Var& initial() const { return initial_; }
  const Tensor& current() const { return current_; }
  std::int64_t steps_since_reset() const { return steps_; }

  // current = a copy of the initial value; call at the start of every sequence.
  void reset();
  // The Var a forward pass reads (value: current()).
  Var var() const;
  // One inner SGD step: loss = loss_fn(w) with w = var(), recorded even under a NoGradGuard;
  // current -= lr * d loss / d w.  Only the fast weights change: no other parameter receives
  // a gradient.  Returns the loss before the step.  Throws std::invalid_argument for lr < 0 or
  // a non-scalar loss.
  float sgd_step(const std::function<Var(const Var& w)>& loss_fn, float lr);

 private:
  Var initial_;
  Tensor current_;  // replaced, never written in place: Vars from earlier steps keep their values
  std::int64_t steps_ = 0;
};

}  // namespace hwnas::nn
