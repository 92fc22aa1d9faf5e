// Optimizers, gradient clipping and the learning-rate schedule.
//
// Optimizers hold the parameter Vars they update (sharing their nodes, so updates are visible
// to the model) plus per-parameter state, and update values in place from the gradients that
// backward() accumulated.  Parameters that received no gradient in a step are skipped, and so
// are frozen ones (requires_grad false).  All updates are elementwise loops over each tensor:
// deterministic and cheap next to the forward/backward GEMMs.
//
// Parameters come in named groups, each with its own learning rate and options (LoRA adapters
// vs. a frozen base, "weights" vs. "architecture" in DARTS).  The single-list constructors
// build one group named "default".  Separate optimizers over disjoint parameter sets work as
// well (DARTS: AdamW on the weights, Adam on the architecture parameters).
//
// state()/load_state() export and restore everything a step depends on (moments, step
// counts, current rates), so that training continued from a checkpoint is bit-identical to
// training that never stopped (nn/checkpoint.hpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/autograd.hpp"

namespace hwnas::nn {

// A named set of parameters sharing a learning rate.
struct ParamGroup {
  std::string name = "default";
  std::vector<Var> params;
  float lr = 0.0f;          // current rate (schedules change it)
  float initial_lr = 0.0f;  // the rate given at construction; set_lr_factor scales it
};

// What an optimizer needs to continue exactly where it stopped.  Tensor names:
// "<group>.<param index>.<slot>" (slot: velocity, m, v) and "<group>.lr"; counters:
// "<group>.params" (group size, checked on load) and "<group>.step".
struct OptimizerState {
  std::string kind;  // "sgd", "adamw", "adam": load refuses another kind
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::int64_t> counters;
};

class Optimizer {
 public:
  // One group named "default".
  Optimizer(std::vector<Var> params, float lr);
  // Group names must be unique and non-empty; a parameter may appear in only one group.
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  // Clears the gradients of the optimised parameters.
  void zero_grad();
  float lr() const { return groups_.front().lr; }  // the first group's rate
  void set_lr(float lr);                           // every group, driven by a schedule
  void set_lr(const std::string& group, float lr);
  // Every group's lr = its initial_lr * factor: one schedule (CosineSchedule::factor_at) drives
  // groups that started from different rates.
  void set_lr_factor(float factor);
  // All parameters of all groups, in group order.
  const std::vector<Var>& params() const { return params_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  const ParamGroup& group(const std::string& name) const;

  virtual std::string kind() const = 0;
  // Deep copies: later steps do not change a state already taken.
  OptimizerState state() const;
  // Restores a state taken from an optimizer of the same kind over the same group layout
  // (names, sizes, parameter shapes); throws std::invalid_argument naming the first mismatch.
  void load_state(const OptimizerState& s);

 protected:
  std::size_t group_index(const std::string& name) const;
  // Per-parameter slots ("velocity"; "m", "v") of group g, parameter i; empty until first used.
  virtual std::vector<std::string> slot_names() const = 0;
  virtual Tensor& slot(std::size_t g, std::size_t i, std::size_t slot) = 0;
  std::vector<ParamGroup> groups_;
  std::vector<std::int64_t> steps_;  // step() calls per group
  std::vector<Var> params_;

 private:
  void validate_groups();
};

struct SgdOptions {
  float lr = 0.01f;
  float momentum = 0.0f;
  bool nesterov = false;      // needs momentum > 0
  float weight_decay = 0.0f;  // L2, added to the gradient (classic SGD coupling)
};

// A named parameter set and its options (their lr is the group's initial rate).
template <class Options>
struct OptimizerGroup {
  std::string name;
  std::vector<Var> params;
  Options options;
};

using SgdGroup = OptimizerGroup<SgdOptions>;

// v = momentum*v + g;  w -= lr * (nesterov ? g + momentum*v : v)  (PyTorch's formulation).
class Sgd : public Optimizer {
 public:
  Sgd(std::vector<Var> params, const SgdOptions& opt);
  explicit Sgd(std::vector<SgdGroup> groups);
  void step() override;
  std::string kind() const override { return "sgd"; }

 protected:
  std::vector<std::string> slot_names() const override { return {"velocity"}; }
  Tensor& slot(std::size_t g, std::size_t i, std::size_t) override { return velocity_[g][i]; }

 private:
  std::vector<SgdOptions> options_;
  std::vector<std::vector<Tensor>> velocity_;
};

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 1e-2f;  // decoupled: w -= lr*wd*w, not added to the gradient
};

struct AdamOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // L2, added to the gradient (coupled, as in the original Adam)
};

using AdamWGroup = OptimizerGroup<AdamWOptions>;
using AdamGroup = OptimizerGroup<AdamOptions>;

// Adam with bias correction (Kingma & Ba).  Shared by AdamW and Adam, which differ only in how
// weight decay enters:
//   AdamW: w -= lr*wd*w  (decoupled, Loshchilov & Hutter);   Adam: g += wd*w  (coupled L2)
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) +
//   eps)
// t counts step() calls per group.
class AdamBase : public Optimizer {
 public:
  void step() override;
  std::int64_t steps() const { return steps_.front(); }  // the first group's step count

 protected:
  struct Hyper {
    float beta1, beta2, eps, weight_decay;
  };
  AdamBase(std::vector<ParamGroup> groups, std::vector<Hyper> hyper, bool decoupled,
           const char* who);
  std::vector<std::string> slot_names() const override { return {"m", "v"}; }
  Tensor& slot(std::size_t g, std::size_t i, std::size_t s) override {
    return s == 0 ? m_[g][i] : v_[g][i];
  }

 private:
  std::vector<Hyper> hyper_;
  bool decoupled_;
  std::vector<std::vector<Tensor>> m_, v_;
};

class AdamW : public AdamBase {
 public:
  AdamW(std::vector<Var> params, const AdamWOptions& opt = {});
  explicit AdamW(std::vector<AdamWGroup> groups);
  std::string kind() const override { return "adamw"; }
};

class Adam : public AdamBase {
 public:
  Adam(std::vector<Var> params, const AdamOptions& opt = {});
  explicit Adam(std::vector<AdamGroup> groups);
  std::string kind() const override { return "adam"; }
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
// For several groups: opt.set_lr_factor(sched.factor_at(step)) with base_lr 1 scales each
// group's own initial rate, or set_lr(group, ...) from one schedule per group.
struct CosineSchedule {
  float base_lr = 1e-3f;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;
  float min_lr = 0.0f;
  float lr_at(std::int64_t step) const;
  float factor_at(std::int64_t step) const { return base_lr > 0 ? lr_at(step) / base_lr : 0.0f; }
};

}  // namespace hwnas::nn
