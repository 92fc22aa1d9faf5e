// Standard trainable layers built from nn/ops.hpp.  Blocks in spaces/ and the benchmarks use
// these rather than calling ops directly, so initialisation and parameter layout live in one place.
// Parameter names: weight, bias (Linear, Conv2d); gamma, beta (norms, plus the batch-norm buffers
// running_mean, running_var); qkv.*, out.* (attention).
// Initialisation: He (Kaiming) normal for layers followed by ReLU-like activations, Xavier
// uniform for attention projections, zeros for biases; all draws come from the given rng.
#pragma once

#include <memory>
#include <random>
#include <vector>

#include "nn/module.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {

enum class Activation { None, Relu, Gelu, Silu, Tanh, Sigmoid };
Activation activation_from_name(const std::string& name);  // throws std::invalid_argument
Var apply_activation(const Var& x, Activation a);

Tensor he_normal(const Shape& shape, int fan_in, std::mt19937_64& rng);
Tensor xavier_uniform(const Shape& shape, int fan_in, int fan_out, std::mt19937_64& rng);

class Linear : public Module {
 public:
  Linear(int in, int out, bool bias, std::mt19937_64& rng);
  Var forward(const Var& x);  // [.., in] -> [.., out]
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "linear"; }
  Var weight, bias;  // weight [out, in]; bias [out] or undefined
};

class Conv2d : public Module {
 public:
  Conv2d(int in_channels, int out_channels, int kernel, const Conv2dOptions& opt, bool bias,
         std::mt19937_64& rng);
  Var forward(const Var& x);
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "conv2d"; }
  Var weight, bias;
  Conv2dOptions options;
};

class BatchNorm : public Module {  // over channels of [N,C] or [N,C,H,W]
 public:
  explicit BatchNorm(int channels);
  Var forward(const Var& x, bool training);
  Var forward(const std::vector<Var>& in, ForwardContext& ctx) override {
    return forward(in.at(0), ctx.training);
  }
  // relu(forward(x)) in one op (nn::batch_norm_relu).
  Var forward_relu(const Var& x, bool training);
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  // running_mean, running_var
  void append_named_buffers(const std::string& prefix, std::vector<NamedBuffer>& out) override;
  std::string name() const override { return "batch_norm"; }
  Var gamma, beta;
  BatchNormState state;
};

class LayerNorm : public Module {  // over the last dimension
 public:
  explicit LayerNorm(int features);
  Var forward(const Var& x);
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "layer_norm"; }
  Var gamma, beta;
};

// Self-attention over [B, L, d_model] with fused QKV projection and output projection.
// window == 0 means full attention; window > 0 uses sliding_window_attention.
class MultiHeadSelfAttention : public Module {
 public:
  MultiHeadSelfAttention(int d_model, int heads, bool causal, int window, std::mt19937_64& rng);
  Var forward(const Var& x);
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "mhsa"; }
  Linear qkv, out;
  int heads;
  bool causal;
  int window;
};

}  // namespace hwnas::nn
