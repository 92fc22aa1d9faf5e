// Differentiable primitive ops.  Each returns a Var built with make_result(); shapes are checked
// and a mismatch throws std::invalid_argument naming the op and both shapes.
// Layouts: images NCHW, sequences [batch, length, features], matrices [rows, cols].
#pragma once

#include <cstdint>
#include <random>

#include "nn/autograd.hpp"

namespace hwnas::nn {

// ---- linear algebra ----
Var matmul(const Var& a, const Var& b);  // [.., m, k] x [k, n] -> [.., m, n]; also batched [B,m,k]x[B,k,n]
// x:[.., in] w:[out, in] b:[out] (b may be undefined) -> [.., out]; the fused dense layer.
Var linear(const Var& x, const Var& w, const Var& b);

// ---- elementwise / broadcast (numpy-style trailing-dimension broadcasting) ----
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var scale(const Var& a, float s);
Var add_scalar(const Var& a, float s);
Var relu(const Var& x);
Var gelu(const Var& x);  // tanh approximation
Var silu(const Var& x);
Var tanh(const Var& x);
Var sigmoid(const Var& x);
Var exp(const Var& x);
Var log(const Var& x);

// ---- reductions ----
Var sum(const Var& x);                 // -> scalar
Var mean(const Var& x);                // -> scalar
Var sum_last(const Var& x);            // reduce last dim: [.., n] -> [..]
Var mean_dim(const Var& x, int dim);   // reduce one dim (dim kept out of the shape)

// ---- normalisation / probabilities / losses ----
Var softmax(const Var& x);      // over the last dim
Var log_softmax(const Var& x);  // over the last dim
// logits [N, C], labels in [0, C); mean over the batch.
Var cross_entropy(const Var& logits, const std::vector<int>& labels);
Var mse(const Var& pred, const Var& target);  // mean squared error, -> scalar
// Per-token cross-entropy: logits [..., C] are read as rows of C (e.g. [B, L, C] -> B*L rows),
// one label per row; rows labelled `ignore_index` contribute neither loss nor gradient (the
// unlabelled positions of MQAR or selective copying).  Mean over the labelled rows; 0 with a
// zero gradient when no row is labelled.
Var token_cross_entropy(const Var& logits, const std::vector<int>& labels, int ignore_index = -1);
Var layer_norm(const Var& x, const Var& gamma, const Var& beta, float eps = 1e-5f);  // over last dim

struct BatchNormState {
  Tensor running_mean, running_var;  // [C]
  float momentum = 0.1f;
  float eps = 1e-5f;
};
// x: [N, C] or [N, C, H, W]; training uses batch statistics and updates the running ones.
Var batch_norm(const Var& x, const Var& gamma, const Var& beta, BatchNormState& state, bool training);
Var dropout(const Var& x, float p, bool training, std::mt19937_64& rng);

// ---- convolution / pooling (NCHW) ----
struct Conv2dOptions {
  int stride = 1;
  int padding = 0;
  int groups = 1;  // groups == C_in == C_out is depthwise
};
// x:[N,Cin,H,W] w:[Cout, Cin/groups, kh, kw] b:[Cout] or undefined.
Var conv2d(const Var& x, const Var& w, const Var& b, const Conv2dOptions& opt);
Var max_pool2d(const Var& x, int kernel, int stride, int padding = 0);
Var avg_pool2d(const Var& x, int kernel, int stride, int padding = 0);  // count_include_pad=false
Var global_avg_pool(const Var& x);  // [N,C,H,W] -> [N,C]

// ---- indexing / shape ----
Var embedding(const Var& table, const std::vector<int>& ids, const Shape& ids_shape);  // -> ids_shape + [d]
Var concat(const std::vector<Var>& xs, int dim);
std::vector<Var> split(const Var& x, const std::vector<int>& sizes, int dim);
Var reshape(const Var& x, const Shape& shape);
Var transpose(const Var& x, int d0, int d1);
Var flatten(const Var& x);  // [N, ...] -> [N, prod(...)]

// ---- attention ----
// q,k,v: [B, L, d_model] already projected; heads split d_model.  Returns [B, L, d_model].
Var multi_head_attention(const Var& q, const Var& k, const Var& v, int heads, bool causal);
// Each query attends only to keys within `window` positions (|i-j| < window, or j in
// (i-window, i] if causal).  Time and memory O(L * window), never materialising L x L.
Var sliding_window_attention(const Var& q, const Var& k, const Var& v, int heads, int window,
                             bool causal);

}  // namespace hwnas::nn
