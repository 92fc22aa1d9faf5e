#include "nn/lora.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace hwnas::nn {

LoraAdapter::LoraAdapter(int in, int out, int rank, double alpha, std::mt19937_64& rng)
    : rank_(rank), scaling_(static_cast<float>(alpha / rank)) {
  if (rank < 1)
    throw std::invalid_argument("LoraAdapter: rank must be >= 1, got " + std::to_string(rank));
  if (in < 1 || out < 1)
    throw std::invalid_argument("LoraAdapter: in and out must be >= 1, got " + std::to_string(in) +
                                ", " + std::to_string(out));
  if (!(alpha > 0) || !std::isfinite(alpha))
    throw std::invalid_argument("LoraAdapter: alpha must be > 0, got " + std::to_string(alpha));
  a = parameter(he_normal(Shape{rank, in}, in, rng));
  b = parameter(Tensor::zeros(Shape{out, rank}));
}

Var LoraAdapter::delta(const Var& x) const {
  // Through the rank-r bottleneck: r (in + out) MACs per row instead of in * out.
  return scale(linear(linear(x, a, Var()), b, Var()), scaling_);
}

void LoraAdapter::merge_into(Tensor& weight, int row_offset) const {
  const Tensor& A = a.value();
  const Tensor& B = b.value();
  const int out = B.shape()[0], in = A.shape()[1];
  if (weight.shape().rank() != 2 || weight.shape()[1] != in || row_offset < 0 ||
      row_offset + out > weight.shape()[0])
    throw std::invalid_argument("LoraAdapter::merge_into: weight " + weight.shape().str() +
                                " cannot take a [" + std::to_string(out) + ", " +
                                std::to_string(in) + "] update at row " +
                                std::to_string(row_offset));
  for (int o = 0; o < out; ++o) {
    float* w = weight.data() + static_cast<std::int64_t>(row_offset + o) * in;
    for (int r = 0; r < rank_; ++r) {
      const float s = scaling_ * B.data()[o * rank_ + r];
      const float* ar = A.data() + static_cast<std::int64_t>(r) * in;
      for (int i = 0; i < in; ++i) w[i] += s * ar[i];
    }
  }
}

void LoraAdapter::append_named_parameters(const std::string& prefix,
                                          std::vector<NamedParameter>& out) {
  out.push_back({prefix + "lora_a", a});
  out.push_back({prefix + "lora_b", b});
}

LoraLinear::LoraLinear(int in, int out, bool bias, int rank, double alpha, std::mt19937_64& rng)
    : base(in, out, bias, rng) {
  if (rank < 0)
    throw std::invalid_argument("LoraLinear: rank must be >= 0 (0: no adapter), got " +
                                std::to_string(rank));
  if (rank == 0) return;
  adapter_ = std::make_unique<LoraAdapter>(in, out, rank, alpha, rng);
  base.weight.set_requires_grad(false);
  if (base.bias.defined()) base.bias.set_requires_grad(false);
}

Var LoraLinear::forward(const Var& x, const std::function<Var(const Var&)>& weight_transform) {
  const Var w = weight_transform ? weight_transform(base.weight) : base.weight;
  return forward_through(
      x, [&w](const Var& in, const Var&, const Var& b) { return linear(in, w, b); });
}

Var LoraLinear::forward_through(
    const Var& x, const std::function<Var(const Var&, const Var&, const Var&)>& base_linear) {
  Var y = base_linear(x, base.weight, base.bias);
  if (adapter_ && !merged_) y = add(y, adapter_->delta(x));
  return y;
}

void LoraLinear::merge() {
  if (!adapter_ || merged_) return;
  adapter_->merge_into(base.weight.value());
  merged_ = true;
  weights_changed();  // caches of compressed weights must not serve the unmerged W
}

void LoraLinear::append_named_parameters(const std::string& prefix,
                                         std::vector<NamedParameter>& out) {
  base.append_named_parameters(prefix, out);
  if (adapter_) adapter_->append_named_parameters(prefix, out);
}

}  // namespace hwnas::nn
