// Linear, BatchNorm, LayerNorm, activations and initialisers.  Conv2d and
// MultiHeadSelfAttention live in layers_conv_attention.cpp so that binaries using only these
// layers do not need the conv/attention ops linked in.
#include "nn/layers.hpp"

#include <cmath>
#include <stdexcept>

namespace hwnas::nn {

Activation activation_from_name(const std::string& name) {
  if (name == "none" || name == "identity" || name == "linear") return Activation::None;
  if (name == "relu") return Activation::Relu;
  if (name == "gelu") return Activation::Gelu;
  if (name == "silu" || name == "swish") return Activation::Silu;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  throw std::invalid_argument("activation_from_name: unknown activation '" + name +
                              "' (expected none, relu, gelu, silu, tanh or sigmoid)");
}

Var apply_activation(const Var& x, Activation a) {
  switch (a) {
    case Activation::None:
      return x;
    case Activation::Relu:
      return relu(x);
    case Activation::Gelu:
      return gelu(x);
    case Activation::Silu:
      return silu(x);
    case Activation::Tanh:
      return tanh(x);
    case Activation::Sigmoid:
      return sigmoid(x);
  }
  return x;
}

Tensor he_normal(const Shape& shape, int fan_in, std::mt19937_64& rng) {
  if (fan_in <= 0)
    throw std::invalid_argument("he_normal: fan_in must be > 0, got " + std::to_string(fan_in));
  // std = sqrt(2 / fan_in) keeps activation variance constant through ReLU layers.
  std::normal_distribution<float> d(0.0f, std::sqrt(2.0f / static_cast<float>(fan_in)));
  Tensor t(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = d(rng);
  return t;
}

Tensor xavier_uniform(const Shape& shape, int fan_in, int fan_out, std::mt19937_64& rng) {
  if (fan_in <= 0 || fan_out <= 0)
    throw std::invalid_argument("xavier_uniform: fans must be > 0, got " + std::to_string(fan_in) +
                                ", " + std::to_string(fan_out));
  const float limit = std::sqrt(6.0f / static_cast<float>(fan_in + fan_out));
  std::uniform_real_distribution<float> d(-limit, limit);
  Tensor t(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = d(rng);
  return t;
}

Linear::Linear(int in, int out, bool bias, std::mt19937_64& rng) {
  if (in <= 0 || out <= 0)
    throw std::invalid_argument("Linear: in and out must be > 0, got " + std::to_string(in) + ", " +
                                std::to_string(out));
  weight = parameter(he_normal(Shape{out, in}, in, rng));
  if (bias) this->bias = parameter(Tensor::zeros(Shape{out}));
}

Var Linear::forward(const Var& x) { return linear(x, weight, bias); }

void Linear::append_named_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  out.push_back({prefix + "weight", weight});
  if (bias.defined()) out.push_back({prefix + "bias", bias});
}

BatchNorm::BatchNorm(int channels) {
  if (channels <= 0) throw std::invalid_argument("BatchNorm: channels must be > 0");
  gamma = parameter(Tensor(Shape{channels}, 1.0f));
  beta = parameter(Tensor::zeros(Shape{channels}));
  state.running_mean = Tensor::zeros(Shape{channels});
  state.running_var = Tensor(Shape{channels}, 1.0f);
}

Var BatchNorm::forward(const Var& x, bool training) {
  return batch_norm(x, gamma, beta, state, training);
}

Var BatchNorm::forward_relu(const Var& x, bool training) {
  return batch_norm_relu(x, gamma, beta, state, training);
}

void BatchNorm::append_named_parameters(const std::string& prefix,
                                        std::vector<NamedParameter>& out) {
  out.push_back({prefix + "gamma", gamma});
  out.push_back({prefix + "beta", beta});
}

void BatchNorm::append_named_buffers(const std::string& prefix, std::vector<NamedBuffer>& out) {
  out.push_back({prefix + "running_mean", &state.running_mean});
  out.push_back({prefix + "running_var", &state.running_var});
}

LayerNorm::LayerNorm(int features) {
  if (features <= 0) throw std::invalid_argument("LayerNorm: features must be > 0");
  gamma = parameter(Tensor(Shape{features}, 1.0f));
  beta = parameter(Tensor::zeros(Shape{features}));
}

Var LayerNorm::forward(const Var& x) { return layer_norm(x, gamma, beta); }

void LayerNorm::append_named_parameters(const std::string& prefix,
                                        std::vector<NamedParameter>& out) {
  out.push_back({prefix + "gamma", gamma});
  out.push_back({prefix + "beta", beta});
}

}  // namespace hwnas::nn
