// Kolmogorov-Arnold network layers (Liu et al. 2024, "KAN: Kolmogorov-Arnold Networks",
// arXiv:2404.19756), in the efficient-KAN formulation: every edge (o, i) carries a learned 1-D
// function phi_oi(x) = w_base[o,i] b(x) + s[o,i] sum_m c[o,i,m] B_m(x), and the layer output is
// y_o = sum_i phi_oi(x_i).  Because the B-spline basis B(x) does not depend on the edge, it is
// computed once per input (nn::bspline_basis) and all edges are contracted with ONE matmul:
//   y = b(x) W_base^T + B(x) W_spline^T,   B(x) flattened to [N, in (G+k)],
// with W_spline [out, in (G+k)] optionally scaled per edge by s [out, in].
// Besides the layer: grid extension (refine G keeping the learned function, fitted by least
// squares), the paper's sparsity regulariser, and export of every edge's curve with a fit
// against a small symbolic library (pykan's auto_symbolic, by grid search + linear fit).
#pragma once

#include <random>
#include <string>
#include <vector>

#include "nn/layers.hpp"
#include "nn/module.hpp"

namespace hwnas::nn {

struct KanOptions {
  int grid_size = 5;                              // G: spline intervals over [grid_lo, grid_hi]
  int order = 3;                                  // k: spline order (3 = cubic)
  float grid_lo = -1.0f, grid_hi = 1.0f;          // the range where the splines are expressive
  Activation base_activation = Activation::Silu;  // b(x) of the residual base branch
  bool spline_scale = true;                       // learned per-edge scale s (efficient-KAN)
  float noise_scale = 0.1f;                       // initial spline coefficients ~ U(+-noise / 2G)
  // Throws std::invalid_argument naming the bad field.
  void validate() const;
};

// One edge's learned function sampled on [grid_lo, grid_hi].
struct KanEdgeCurve {
  int out = 0, in = 0;
  std::vector<float> x, y;
};

// y ~ a f(b x + c) + d for a library function f, with its coefficient of determination.
struct SymbolicFit {
  std::string name;  // "x", "x^2", "x^3", "exp", "sin", "tanh", "log"
  double a = 0, b = 0, c = 0, d = 0;
  double r2 = 0;
};

class KanLinear : public Module {
 public:
  KanLinear(int in, int out, const KanOptions& opt, std::mt19937_64& rng);

  Var forward(const Var& x);  // [.., in] -> [.., out]
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  // The same map with weights supplied by the caller (e.g. fake-quantised or pruned copies of
  // base_weight and effective_spline_weight()).
  Var forward_with(const Var& x, const Var& base_w, const Var& spline_w) const;
  // W_spline times the per-edge scale, [out, in (G+k)] (just spline_weight without a scale).
  Var effective_spline_weight() const;

  // Every edge's activation phi_oi(x_ni): [N, in] -> [N, out, in] (memory N out in (G+k)).
  Var edge_activations(const Var& x) const;
  // The paper's sparsity regulariser on a batch x [N, in]:
  //   lambda_l1 sum_oi |phi_oi|_1 + lambda_entropy S,  |phi|_1 = mean_n |phi(x_n)|,
  //   S = -sum_oi p_oi log p_oi,  p_oi = |phi_oi|_1 / sum |phi|_1.   Differentiable.
  Var regularization(const Var& x, float lambda_l1, float lambda_entropy) const;

  // Refines the grid to new_grid_size intervals over the same range, refitting each edge's
  // spline coefficients by least squares on samples of the old spline, so the layer's function
  // is kept (exactly when G divides new G, else to the spline's approximation error).
  void extend_grid(int new_grid_size);

  // Each edge's curve phi_oi sampled at `samples` points across [grid_lo, grid_hi], row-major
  // over (out, in).
  std::vector<KanEdgeCurve> edge_curves(int samples = 101) const;

  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "kan_linear"; }

  int in_features() const { return in_; }
  int out_features() const { return out_; }
  int bases() const { return opt_.grid_size + opt_.order; }
  const KanOptions& options() const { return opt_; }

  Var base_weight;    // [out, in]
  Var spline_weight;  // [out, in (G+k)], coefficients of edge (o, i) at columns i (G+k) ..
  Var spline_scaler;  // [out, in], undefined without KanOptions::spline_scale

 private:
  int in_, out_;
  KanOptions opt_;
};

// Best fit of the samples against the library x, x^2, x^3, exp, sin, tanh, log (log|z| clipped
// at 1e-4): for each f, (b, c) by a coarse-to-fine grid search over [-10, 10]^2 and (a, d) by
// linear least squares; the highest R^2 wins (ties go to the earlier, simpler entry).
// `all`, when given, receives the best fit of every library function.
SymbolicFit fit_symbolic(const std::vector<float>& x, const std::vector<float>& y,
                         std::vector<SymbolicFit>* all = nullptr);

}  // namespace hwnas::nn
