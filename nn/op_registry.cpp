#include "nn/op_registry.hpp"

#include <stdexcept>

namespace hwnas::nn {

void OpRegistry::add(OpInfo info) {
  if (info.name.empty()) throw std::logic_error("op registered without a name");
  std::string name = info.name;
  if (!ops_.emplace(name, std::move(info)).second)
    throw std::logic_error("op '" + name + "' registered twice");
}

const OpInfo* OpRegistry::find(const std::string& name) const {
  auto it = ops_.find(name);
  return it == ops_.end() ? nullptr : &it->second;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [n, info] : ops_) out.push_back(n);
  return out;
}

void register_builtin_ops(OpRegistry& r) {
  // ---- linear algebra
  r.add({"matmul", "[.., m, k] x [k, n] or batched [B, m, k] x [B, k, n] matrix product"});
  r.add({"bmm", "strict batched matrix product [B, m, k] x [B, k, n]"});
  r.add({"linear", "x W^T + b, the fused dense layer"});
  // ---- elementwise / broadcast
  r.add({"add", "a + b with broadcasting"});
  r.add({"sub", "a - b with broadcasting"});
  r.add({"mul", "a * b with broadcasting"});
  r.add({"div", "a / b with broadcasting"});
  r.add({"pow", "x^p for a scalar p, or a^b elementwise with broadcasting"});
  r.add({"maximum", "elementwise max(a, b) with broadcasting; ties split the gradient"});
  r.add({"minimum", "elementwise min(a, b) with broadcasting; ties split the gradient"});
  r.add({"where", "mask ? a : b with broadcasting; the mask gets no gradient"});
  r.add({"scale", "x * s for a scalar s"});
  r.add({"add_scalar", "x + s for a scalar s"});
  r.add({"sqrt", "elementwise square root"});
  r.add({"sin", "elementwise sine"});
  r.add({"abs", "elementwise |x|"});
  r.add({"clamp", "elementwise clamp to [lo, hi]"});
  r.add({"exp", "elementwise e^x"});
  r.add({"log", "elementwise natural log"});
  r.add({"relu", "max(x, 0)"});
  r.add({"gelu", "GELU, tanh approximation"});
  r.add({"silu", "x * sigmoid(x)"});
  r.add({"tanh", "hyperbolic tangent"});
  r.add({"sigmoid", "logistic sigmoid"});
  r.add({"softplus", "log(1 + e^(beta x)) / beta, linear above threshold"});
  // ---- reductions and scans
  r.add({"sum", "sum of all elements -> scalar"});
  r.add({"mean", "mean of all elements -> scalar"});
  r.add({"sum_last", "sum over the last dim"});
  r.add({"mean_dim", "mean over one dim"});
  r.add({"cumsum", "inclusive prefix sum along a dim"});
  // ---- normalisation / probabilities / losses
  r.add({"softmax", "softmax over the last dim"});
  r.add({"log_softmax", "log-softmax over the last dim"});
  r.add({"cross_entropy", "mean cross-entropy of logits [N, C] against labels"});
  r.add({"mse", "mean squared error -> scalar"});
  r.add({"layer_norm", "normalisation over the last dim with gain and bias"});
  r.add({"batch_norm", "batch normalisation over N (and H, W), training or running statistics"});
  r.add({"batch_norm_relu", "relu(batch_norm(x)) in one op (the conv blocks' BN -> ReLU)"});
  r.add({"dropout", "inverted dropout with a seeded mask"});
  // ---- convolution / pooling
  r.add({"conv2d", "2-D convolution NCHW with stride, padding and groups"});
  r.add({"max_pool2d", "2-D max pooling"});
  r.add({"avg_pool2d", "2-D average pooling (padding excluded from the count)"});
  r.add({"global_avg_pool", "[N, C, H, W] -> [N, C] spatial mean"});
  // ---- shape / indexing
  r.add({"reshape", "same elements, new shape"});
  r.add({"flatten", "[N, ...] -> [N, prod(...)]"});
  r.add({"transpose", "swap two dims"});
  r.add({"concat", "join tensors along a dim"});
  r.add({"split", "cut a tensor into parts along a dim"});
  r.add({"slice", "x[start:end:step] along a dim"});
  r.add({"embedding", "rows of a table picked by ids"});
  r.add({"gather", "torch.gather along a dim"});
  r.add({"scatter_add", "torch.scatter_add along a dim (out of place)"});
  r.add({"index_select", "positions picked along a dim"});
  r.add({"topk", "k largest/smallest along the last dim (values differentiable)"});
  // ---- spectral
  r.add({"rfft", "real-to-complex FFT along an axis, complex as a trailing dim of 2"});
  r.add({"irfft", "complex-to-real inverse FFT along an axis, scaled by 1/n"});
  r.add({"causal_fft_conv", "per-channel causal long convolution by FFT (S4D, Hyena)"});
  r.add({"causal_direct_conv",
         "per-channel causal long convolution as Toeplitz GEMMs (S4D, Hyena, short sequences)"});
  r.add({"causal_long_conv", "causal_direct_conv or causal_fft_conv, by a cost model"});
  r.add({"causal_depthwise_conv1d",
         "short causal depthwise 1-D conv along the length (Mamba, Hyena)"});
  // ---- attention
  r.add({"multi_head_attention", "scaled dot-product multi-head attention, optional causal mask"});
  r.add({"rope", "rotary position embedding of queries / keys (RoFormer), per head"});
  r.add({"sliding_window_attention", "multi-head attention restricted to a local window"});
  r.add({"fused_qkv_attention", "multi-head self-attention on a fused [B, L, 3 d] projection"});
  r.add({"flash_attention",
         "tiled online-softmax attention (full or windowed), backward recomputes score tiles"});
  // ---- fused time loops (nn/time_loop.hpp; cells in nn/recurrent_cells.hpp)
  r.add({"time_loop", "T recurrent steps of a cell in one node, hand-written BPTT backward"});
  r.add({"time_loop_final_state", "the final state of a fused time loop"});
  // ---- state-space models (nn/ssm.hpp)
  r.add({"selective_scan",
         "Mamba selective scan h_t = exp(delta A) h + delta B u, y = C h in one node, "
         "chunk-recomputing backward"});
  r.add({"s4d_kernel", "S4D convolution kernel (ZOH diagonal complex SSM, Vandermonde product)"});
  // ---- Kolmogorov-Arnold networks
  r.add({"bspline_basis",
         "order-k B-spline basis on a uniform extended grid, [.., n] -> [.., n, G+k]"});
  // ---- spiking
  r.add({"step", "Heaviside spike x >= 0 with a surrogate gradient", OpBackward::Surrogate});
  r.add({"lif",
         "leaky integrate-and-fire neurons over T steps in one node (nn/lif.hpp), BPTT "
         "through the spike surrogate",
         OpBackward::Surrogate});
}

const OpRegistry& builtin_ops() {
  static const OpRegistry r = [] {
    OpRegistry reg;
    register_builtin_ops(reg);
    return reg;
  }();
  return r;
}

}  // namespace hwnas::nn
