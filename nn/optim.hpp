// Optimizers, gradient clipping and the learning-rate schedule.
//
// Optimizers hold the parameter Vars they update (sharing their nodes, so updates are visible
// to the model) plus per-parameter state, and update values in place from the gradients that
// backward() accumulated.  Parameters that received no gradient in a step are skipped.  All
// updates are serial elementwise loops over each tensor: deterministic and cheap next to the
// forward/backward GEMMs.
#pragma once

#include <cstdint>
#include <vector>

#include "nn/autograd.hpp"

namespace hwnas::nn {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Var> params, float lr);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  // Clears the gradients of the optimised parameters.
  void zero_grad();
  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }  // driven by a schedule, once per step
  const std::vector<Var>& params() const { return params_; }

 protected:
  std::vector<Var> params_;
  float lr_;
};

struct SgdOptions {
  float lr = 0.01f;
  float momentum = 0.0f;
  bool nesterov = false;      // needs momentum > 0
  float weight_decay = 0.0f;  // L2, added to the gradient (classic SGD coupling)
};

// v = momentum*v + g;  w -= lr * (nesterov ? g + momentum*v : v)  (PyTorch's formulation).
class Sgd : public Optimizer {
 public:
  Sgd(std::vector<Var> params, const SgdOptions& opt);
  void step() override;

 private:
  SgdOptions opt_;
  std::vector<Tensor> velocity_;
};

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 1e-2f;  // decoupled: w -= lr*wd*w, not added to the gradient
};

// Adam with bias correction and decoupled weight decay (Loshchilov & Hutter):
//   w -= lr*wd*w;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Var> params, const AdamWOptions& opt = {});
  void step() override;
  std::int64_t steps() const { return t_; }

 private:
  AdamWOptions opt_;
  std::vector<Tensor> m_, v_;
  std::int64_t t_ = 0;
};

// Scales all gradients in place so that their global L2 norm is at most max_norm; returns the
// norm before clipping.  Parameters without a gradient are ignored.
float clip_grad_norm(const std::vector<Var>& params, float max_norm);
// Resets the gradient of every parameter (to an empty tensor: the next backward allocates).
void zero_grad(const std::vector<Var>& params);

// Linear warm-up then cosine decay to min_lr.  Steps count from 0:
//   step < warmup:           base_lr * (step + 1) / warmup   (reaches base_lr at step warmup-1)
//   warmup <= step < total:  min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2,
//                            p = (step - warmup) / (total - warmup)
//   step >= total:           min_lr
struct CosineSchedule {
  float base_lr = 1e-3f;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;
  float min_lr = 0.0f;
  float lr_at(std::int64_t step) const;
};

}  // namespace hwnas::nn
