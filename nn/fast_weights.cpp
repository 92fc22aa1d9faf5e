#include "nn/fast_weights.hpp"

#include <stdexcept>
#include <string>

namespace hwnas::nn {

FastWeights::FastWeights(Var initial) : initial_(std::move(initial)) {
  if (!initial_.defined()) throw std::invalid_argument("FastWeights: initial value is undefined");
  reset();
}

void FastWeights::reset() {
  current_ = initial_.value().clone();
  steps_ = 0;
}

Var FastWeights::var() const {
  if (!grad_enabled()) return constant(current_);
  if (initial_.requires_grad())
    return make_result(current_, {initial_},
                       [](Node& self) { accumulate_grad(*self.parents[0], self.grad); });
  // A leaf of its own, so that the inner step can differentiate with respect to it.
  return parameter(current_);
}

float FastWeights::sgd_step(const std::function<Var(const Var& w)>& loss_fn, float lr) {
  if (!(lr >= 0.0f))
    throw std::invalid_argument("FastWeights::sgd_step: lr must be >= 0, got " +
                                std::to_string(lr));
  EnableGradGuard record;
  const Var w = var();
  const Var loss = loss_fn(w);
  if (!loss.defined() || loss.value().numel() != 1)
    throw std::invalid_argument("FastWeights::sgd_step: loss must be a scalar, got shape " +
                                (loss.defined() ? loss.shape().str() : std::string("undefined")));
  const Tensor g = gradients(loss, {w})[0];
  Tensor next = current_.clone();
  next.array() -= lr * g.array();
  current_ = std::move(next);
  ++steps_;
  return loss.value().item();
}

}  // namespace hwnas::nn
