// Conv2d and MultiHeadSelfAttention layers: thin wrappers over the conv/attention ops
// (nn/ops_conv.cpp, nn/ops_attention.cpp), kept apart from layers.cpp so that binaries using
// only dense layers link without those ops.
#include <cmath>
#include <stdexcept>

#include "nn/kernels.hpp"
#include "nn/layers.hpp"

namespace hwnas::nn {

Conv2d::Conv2d(int in_channels, int out_channels, int kernel, const Conv2dOptions& opt, bool bias,
               std::mt19937_64& rng)
    : options(opt) {
  if (in_channels <= 0 || out_channels <= 0 || kernel <= 0)
    throw std::invalid_argument("Conv2d: channels and kernel must be > 0");
  if (opt.groups <= 0 || in_channels % opt.groups != 0 || out_channels % opt.groups != 0)
    throw std::invalid_argument("Conv2d: groups " + std::to_string(opt.groups) +
                                " must divide in_channels " + std::to_string(in_channels) +
                                " and out_channels " + std::to_string(out_channels));
  const int cin_g = in_channels / opt.groups;
  weight = parameter(
      he_normal(Shape{out_channels, cin_g, kernel, kernel}, cin_g * kernel * kernel, rng));
  if (bias) this->bias = parameter(Tensor::zeros(Shape{out_channels}));
}

Var Conv2d::forward(const Var& x) { return conv2d(x, weight, bias, options); }

void Conv2d::append_named_parameters(const std::string& prefix, std::vector<NamedParameter>& out) {
  out.push_back({prefix + "weight", weight});
  if (bias.defined()) out.push_back({prefix + "bias", bias});
}

namespace {
Linear xavier_linear(int in, int out, std::mt19937_64& rng) {
  Linear l(in, out, true, rng);
  l.weight.value() = xavier_uniform(Shape{out, in}, in, out, rng);
  return l;
}
// Validates before any member is built; returns d_model.
int checked_d_model(int d_model, int heads) {
  if (d_model <= 0 || heads <= 0 || d_model % heads != 0)
    throw std::invalid_argument("MultiHeadSelfAttention: heads " + std::to_string(heads) +
                                " must divide d_model " + std::to_string(d_model));
  return d_model;
}
}  // namespace

MultiHeadSelfAttention::MultiHeadSelfAttention(int d_model, int heads, bool causal, int window,
                                               std::mt19937_64& rng)
    : qkv(xavier_linear(checked_d_model(d_model, heads), 3 * d_model, rng)),
      out(xavier_linear(d_model, d_model, rng)),
      heads(heads),
      causal(causal),
      window(window) {
  if (window < 0) throw std::invalid_argument("MultiHeadSelfAttention: window must be >= 0");
}

Var MultiHeadSelfAttention::forward(const Var& x) {
  const int d = x.dim(-1);
  if (window == 0 && x.shape().rank() == 3 && d > 0 && d % heads == 0 && x.dim(1) > 0 &&
      qkv.weight.dim(0) == 3 * d)
    return out.forward(detail::fused_qkv_attention(qkv.forward(x), heads, causal));
  std::vector<Var> parts = split(qkv.forward(x), {d, d, d}, -1);
  Var y = window > 0 ? sliding_window_attention(parts[0], parts[1], parts[2], heads, window, causal)
                     : multi_head_attention(parts[0], parts[1], parts[2], heads, causal);
  return out.forward(y);
}

void MultiHeadSelfAttention::append_named_parameters(const std::string& prefix,
                                                     std::vector<NamedParameter>& out_params) {
  qkv.append_named_parameters(prefix + "qkv.", out_params);
  out.append_named_parameters(prefix + "out.", out_params);
}

}  // namespace hwnas::nn
