// Differentiable primitive ops.  Each returns a Var built with make_result(); shapes are checked
// and a mismatch throws std::invalid_argument naming the op and both shapes.
// Layouts: images NCHW, sequences [batch, length, features], matrices [rows, cols].
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "nn/autograd.hpp"

namespace hwnas::nn {

// ---- linear algebra ----
Var matmul(const Var& a,
           const Var& b);  // [.., m, k] x [k, n] -> [.., m, n]; also batched [B,m,k]x[B,k,n]
// x:[.., in] w:[out, in] b:[out] (b may be undefined) -> [.., out]; the fused dense layer.
Var linear(const Var& x, const Var& w, const Var& b);

// An elementwise function f of a weight that linear's GEMMs apply as they pack it, instead of
// reading a transformed copy (spaces/compress.cpp prunes and quantises weights this way: no
// compressed copy is written by one thread and read by every other).
class WeightView {
 public:
  virtual ~WeightView() = default;
  // Rewrites a packed block of W [out, in] (transposed: of W^T [in, out]) in place with f, in
  // the layout of nn/gemm.hpp's PackTransform::apply: rows [p0, p0 + kc) and columns
  // [j0, j0 + nc) of that matrix, in panels nr wide (zero padding past nc stays zero).
  virtual void pack(bool transposed, std::int64_t p0, std::int64_t kc, std::int64_t j0,
                    std::int64_t nc, int nr, float* dst) const = 0;
  // Multiplies rows [r0, r1) x columns [c0, c1) of a gradient of W (row stride ld) by f's
  // derivative, entry by entry.
  virtual void mask_gradient(float* g, std::int64_t ld, std::int64_t r0, std::int64_t r1,
                             std::int64_t c0, std::int64_t c1) const = 0;
};
// linear(x, f(w), b) for `view`'s f, with w's gradient through f; plain linear when view is null.
// The backward pass applies f to w's values at that time (as linear reads w there too).
Var linear(const Var& x, const Var& w, const Var& b, std::shared_ptr<const WeightView> view);

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
Var sum(const Var& x);                // -> scalar
Var mean(const Var& x);               // -> scalar
Var sum_last(const Var& x);           // reduce last dim: [.., n] -> [..]
Var mean_dim(const Var& x, int dim);  // reduce one dim (dim kept out of the shape)

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
Var layer_norm(const Var& x, const Var& gamma, const Var& beta,
               float eps = 1e-5f);  // over last dim

struct BatchNormState {
  Tensor running_mean, running_var;  // [C]
  float momentum = 0.1f;
  float eps = 1e-5f;
};
// x: [N, C] or [N, C, H, W]; training uses batch statistics and updates the running ones.
Var batch_norm(const Var& x, const Var& gamma, const Var& beta, BatchNormState& state,
               bool training);
// relu(batch_norm(...)) as one op: the ReLU is applied in the normalising pass and its mask in
// batch norm's backward passes, saving an activation-sized pass each way (conv -> BN -> ReLU
// blocks).  Same values as the two ops.
Var batch_norm_relu(const Var& x, const Var& gamma, const Var& beta, BatchNormState& state,
                    bool training);
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
Var global_avg_pool(const Var& x);                                      // [N,C,H,W] -> [N,C]

// ---- indexing / shape ----
Var embedding(const Var& table, const std::vector<int>& ids,
              const Shape& ids_shape);  // -> ids_shape + [d]
Var concat(const std::vector<Var>& xs, int dim);
std::vector<Var> split(const Var& x, const std::vector<int>& sizes, int dim);
Var reshape(const Var& x, const Shape& shape);
Var transpose(const Var& x, int d0, int d1);
Var flatten(const Var& x);  // [N, ...] -> [N, prod(...)]

// ---- attention ----
// q,k,v: [B, L, d_model] already projected; heads split d_model.  Returns [B, L, d_model].
Var multi_head_attention(const Var& q, const Var& k, const Var& v, int heads, bool causal);
// Rotary position embedding (RoFormer, Su et al. 2021): in each of `heads` heads of the last
// dim, channel pairs (2i, 2i+1) at sequence position m (dim -2) are rotated by m * base^(-2i /
// d_head).  Applied to queries and keys, scores depend on positions only through their
// difference.  x: [..., L, D]; D / heads must be even.  No parameters.
inline constexpr double kRopeBase = 10000.0;  // RoFormer's base, the attention blocks' choice
Var rope(const Var& x, int heads, double base = kRopeBase);
// The cos and sin of rope's angles m * base^(-2i / d_head), [len, d_head / 2] row-major, as
// rope computes them (exporters write these tables).
void rope_cos_sin(int len, int d_head, double base, std::vector<float>& cos,
                  std::vector<float>& sin);
// Each query attends only to keys within `window` positions (|i-j| < window, or j in
// (i-window, i] if causal).  Time and memory O(L * window), never materialising L x L.
Var sliding_window_attention(const Var& q, const Var& k, const Var& v, int heads, int window,
                             bool causal);
// Flash-style attention (nn/ops_flash_attention.cpp; Dao et al. 2022): the values of
// multi_head_attention (window 0) or sliding_window_attention (window > 0), computed in
// block_q x block_k tiles with an online softmax.  Keeps only the output and one log-sum-exp per
// query row for backward, which recomputes the scores tile by tile: memory O(L d), no L x L
// buffer, at the cost of recomputing QK^T once in backward.
struct FlashOptions {
  int heads = 1;
  bool causal = false;
  int window = 0;    // 0: full attention; > 0: |i - j| < window (j in (i - window, i] if causal)
  int block_q = 64;  // Br: query rows per tile
  int block_k = 64;  // Bc: keys per tile
};
Var flash_attention(const Var& q, const Var& k, const Var& v, const FlashOptions& options);

// =============================================================================================
// ---- more elementwise / broadcast math (nn/ops_math.cpp) ----
// Binary ops broadcast like add/mul (numpy-style, trailing dimensions).  Gradients follow
// PyTorch's conventions at kinks and ties (noted per op).
Var div(const Var& a, const Var& b);  // a / b
Var sqrt(const Var& x);
Var sin(const Var& x);                // periodic activation of Hyena's implicit filters
Var abs(const Var& x);                // gradient sign(x), 0 at x == 0
Var pow(const Var& x, float p);       // x^p (gradient p x^(p-1))
Var pow(const Var& a, const Var& b);  // a^b; d/db = a^b log(a), so a must be > 0 where b needs grad
Var clamp(const Var& x, float lo, float hi);  // lo <= hi; gradient 1 inside [lo, hi] (inclusive)
// mask ? a : b, elementwise; mask is a non-differentiable tensor (nonzero = take a), and mask, a
// and b broadcast together.
Var where(const Tensor& mask, const Var& a, const Var& b);
Var maximum(const Var& a, const Var& b);  // ties split the gradient equally (as PyTorch)
Var minimum(const Var& a, const Var& b);
// log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (PyTorch's Softplus).
Var softplus(const Var& x, float beta = 1.0f, float threshold = 20.0f);
// Inclusive prefix sum along `dim` (negative counts from the back); backward is the reverse cumsum.
Var cumsum(const Var& x, int dim);

// =============================================================================================
// ---- indexing (nn/ops_index.cpp) ----
// Integer indices travel as an IndexTensor: row-major int values with a shape, never as floats
// (indices are not differentiable and must stay exact).  Every index is range-checked; an out of
// range one throws std::invalid_argument naming the op, the index and the allowed bound.
struct IndexTensor {
  Shape shape;
  std::vector<int> values;  // numel(shape) entries, row-major
  IndexTensor() = default;
  // Throws std::invalid_argument if values.size() != shape.numel().
  IndexTensor(const Shape& shape, std::vector<int> values);
  std::int64_t numel() const { return static_cast<std::int64_t>(values.size()); }
};

// x[start:end:step] along `dim` (negative dim/start/end count from the back, as in Python).
// Requires 0 <= start <= end <= size after that, and step >= 1.
Var slice(const Var& x, int dim, int start, int end, int step = 1);
// torch.gather: out[i][j][k] = x[i][index[i][j][k]][k] (dim = 1); out has index's shape, which
// must have x's rank and be no larger than x outside `dim`.
Var gather(const Var& x, int dim, const IndexTensor& index);
// torch.scatter_add (out of place): out = x, then out[i][index[i][j][k]][k] += src[i][j][k] for
// every position of index (dim = 1).  index: rank of x, no larger than src anywhere and than x
// outside `dim`.  Gradients reach both x and src.
Var scatter_add(const Var& x, int dim, const IndexTensor& index, const Var& src);
// Picks the listed positions along `dim` (repeats allowed): out.shape[dim] = indices.size().
Var index_select(const Var& x, int dim, const std::vector<int>& indices);

// k largest (or smallest) entries along the last dim, sorted (largest first, or smallest first);
// ties go to the lower index first.  values: [.., k], differentiable (the gradient lands on the
// selected positions); indices: [.., k] positions in the last dim.
struct TopK {
  Var values;
  IndexTensor indices;
};
TopK topk(const Var& x, int k, bool largest = true);

// Strict batched matmul: a [B, m, k] x b [B, k, n] -> [B, m, n] (matmul() also accepts this and
// a 2-D right operand shared by the batch); parallel over the batch.
Var bmm(const Var& a, const Var& b);

// =============================================================================================
// ---- real FFT (nn/ops_fft.cpp, FFTW3 single precision) ----
// Complex values are stored as a trailing dimension of 2 (re, im), like torch.view_as_real, so a
// spectrum is an ordinary Var and every op above applies to it.  The Shape rank limit (4) means
// rfft accepts x of rank <= 3.  Normalisation as PyTorch's default ("backward"): rfft is
// unnormalised, irfft scales by 1/n.
//
// rfft: x [.., L, ..] (axis of length L) -> [.., n/2+1, .., 2].  n = -1 uses L; a smaller n
// truncates x along the axis, a larger one zero-pads it.
Var rfft(const Var& x, int axis, int n = -1);
// irfft: X [.., m, .., 2] (axis counts dims of X without the trailing 2) -> real [.., n, ..].
// n = -1 means 2 (m - 1).  Uses bins 0..n/2 (missing ones are zero); the imaginary parts of bin 0
// and, for even n, bin n/2 do not affect the result (Hermitian symmetry), so they get no gradient.
Var irfft(const Var& X, int axis, int n = -1);
// Per-channel causal long convolution, the S4D and Hyena mixers' core: u [B, L, C], k [taps, C]
// (1 <= taps <= L) -> y [B, L, C], y[b, t, c] = sum_{s <= t} k[s, c] u[b, t - s, c], by FFT of
// length 2L in one fused op (hand-written backward, O(L log L)).
Var causal_fft_conv(const Var& u, const Var& k);
// The same convolution as three GEMMs per channel on the filter's Toeplitz matrix (O(L^2) per
// line on the GEMM kernels; nn/ops_long_conv.cpp): the same values up to float rounding, which
// differs because the terms are summed in another order.
Var causal_direct_conv(const Var& u, const Var& k);
// The same convolution in whichever of the two forms a cost model expects to train faster at
// this shape (the direct one up to about L = 1000 on AVX-512); HWNAS_CONV_ALGORITHM=direct /
// spectral forces one, as it does for conv2d (nn/conv_spectral.hpp).  What the S4D and Hyena blocks
// call.
Var causal_long_conv(const Var& u, const Var& k);
// Whether causal_long_conv takes the direct form for u [B, L, C] and k [taps, C].
bool direct_long_conv_pays(int B, int L, int C, int taps);
// Causal depthwise 1-D convolution along the length, the short conv of Mamba and Hyena (one
// fused op, nn/ssm_layers.cpp): x [B, L, E], w [K, E] (K >= 1, PyTorch Conv1d's tap order),
// b [E] or undefined: y_t = b + sum_k w_k x_{t - (K-1) + k}, zeros before the start.
Var causal_depthwise_conv1d(const Var& x, const Var& w, const Var& b);

// =============================================================================================
// ---- spike step with surrogate gradient (nn/ops_surrogate.cpp) ----
// Forward: Heaviside, 1 where x >= 0 else 0 (spiking neurons call it with x = v - threshold).
// Backward: the true derivative is a Dirac delta, so a smooth surrogate stands in for it.
enum class SurrogateKind {
  StraightThrough,  // 1, or 1 only where |x| <= width / 2 when width > 0
  FastSigmoid,      // SuperSpike (Zenke & Ganguli 2018): 1 / (1 + slope |x|)^2
  ArcTan,           // slope / 2 / (1 + (pi/2 slope x)^2), the derivative of atan(pi/2 slope x)/pi
};
struct Surrogate {
  SurrogateKind kind = SurrogateKind::FastSigmoid;
  float slope = 25.0f;  // FastSigmoid and ArcTan; snnTorch's defaults are 25 and 2
  float width = 0.0f;   // StraightThrough window; 0 = no clipping
  static Surrogate straight_through(float width = 0.0f) {
    return {SurrogateKind::StraightThrough, 1.0f, width};
  }
  static Surrogate fast_sigmoid(float slope = 25.0f) {
    return {SurrogateKind::FastSigmoid, slope, 0.0f};
  }
  static Surrogate arctan(float slope = 2.0f) { return {SurrogateKind::ArcTan, slope, 0.0f}; }
};
// Throws std::invalid_argument unless slope > 0 and width >= 0 (both finite).
void validate(const Surrogate& s);
// The surrogate derivative at x (the formula backward applies elementwise).
float surrogate_grad(const Surrogate& s, float x);
Var step(const Var& x, const Surrogate& surrogate = {});

// ---- Kolmogorov-Arnold networks (nn/ops_kan.cpp) ----
// B-spline basis of order k (degree k) on a uniform grid: `grid_size` G intervals over [lo, hi],
// extended by k knots on each side, so knots t_j = lo + (j - k) h for j = 0..G+2k, h = (hi-lo)/G.
// x [.., n] -> [.., n, G + k]: entry b is the Cox-de Boor basis B_b of order k, supported on
// [t_b, t_{b+k+1}); all entries are 0 outside [t_0, t_{G+2k}).  Inside [lo, hi] they sum to 1.
// Only the k + 1 bases that are nonzero at x are computed (local de Boor recursion,
// 4 + 3 k (k + 1) flops per element).  Backward: dB_b/dx = (B_b^{k-1} - B_{b+1}^{k-1}) / h.
// Throws std::invalid_argument for grid_size < 1, order outside [0, 10] or lo >= hi.
Var bspline_basis(const Var& x, int grid_size, int order, float lo, float hi);
// Forward flops per input element of bspline_basis (the workload counts use this).
constexpr double bspline_basis_flops(int order) { return 4.0 + 3.0 * order * (order + 1); }

}  // namespace hwnas::nn
