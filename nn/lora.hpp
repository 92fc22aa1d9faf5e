// Low-rank adaptation (LoRA; Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
// Models").  A frozen pretrained projection W [out, in] is adapted by a trainable low-rank
// update: h = x W^T + b + (alpha / r) x A^T B^T with A [r, in] drawn Kaiming-normal and B
// [out, r] zero, so training starts from the pretrained function exactly (paper, section 4.1).
// Only A and B train (r (in + out) parameters instead of in * out).  For inference the update is
// merged, W' = W + (alpha / r) B A, leaving a plain linear layer with no extra latency: that
// merged layer is what the hardware models see.
#pragma once

#include <functional>
#include <random>

#include "nn/layers.hpp"

namespace hwnas::nn {

// The trainable update of one projection.  Parameter names lora_a, lora_b.
class LoraAdapter {
 public:
  // Throws std::invalid_argument for rank < 1, in or out < 1, or alpha <= 0.
  LoraAdapter(int in, int out, int rank, double alpha, std::mt19937_64& rng);
  // (alpha / r) x A^T B^T: [.., in] -> [.., out].
  Var delta(const Var& x) const;
  // (alpha / r) B A added to rows [row_offset, row_offset + out) of weight [rows, in] (a fused
  // projection such as attention's QKV holds several), in place and outside autograd.
  void merge_into(Tensor& weight, int row_offset = 0) const;
  void append_named_parameters(const std::string& prefix, std::vector<NamedParameter>& out);
  int rank() const { return rank_; }
  float scaling() const { return scaling_; }
  Var a, b;  // [r, in], [out, r]

 private:
  int rank_;
  float scaling_;
};

// A linear layer with an optional adapter (rank 0: a plain Linear, same parameters and the same
// draws from rng).  With rank > 0 the base weight and bias are frozen (requires_grad false).
// Parameter names: weight, bias, and lora_a, lora_b with an adapter, so a plain layer's state
// names its base.
class LoraLinear : public Module {
 public:
  LoraLinear(int in, int out, bool bias, int rank, double alpha, std::mt19937_64& rng);
  // x W^T + b, plus the adapter's update until merged.  `weight_transform` (quantisation,
  // pruning) applies to W, not to the small adapter; identity when empty.
  Var forward(const Var& x, const std::function<Var(const Var&)>& weight_transform = {});
  // The same with the base projection computed by base_linear(x, W, b) instead of linear(x, W, b)
  // (spaces::compressed_linear); the adapter's update is added as above.
  Var forward_through(const Var& x,
                      const std::function<Var(const Var&, const Var&, const Var&)>& base_linear);
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  // Folds the update into W (W += (alpha / r) B A) and drops the adapter from the forward pass;
  // a second call does nothing.  The layer then computes the same function as before (to
  // float rounding) as one plain linear layer.
  void merge();
  bool merged() const { return merged_; }
  bool has_adapter() const { return adapter_ != nullptr; }
  LoraAdapter* adapter() { return adapter_.get(); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "lora_linear"; }

  Linear base;

 private:
  std::unique_ptr<LoraAdapter> adapter_;
  bool merged_ = false;
};

}  // namespace hwnas::nn
