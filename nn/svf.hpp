// Singular-value fine-tuning (SVF) of Transformer² (Sun, Cetin, Tang 2025, "Transformer²:
// Self-adaptive LLMs", arXiv:2501.06665).
//
// A base weight W [out, in] is decomposed once, W = U diag(sigma) V^T (Eigen's SVD, thin, rank
// r = min(in, out)); U, sigma, V and the base bias are frozen buffers.  The adapted weight is
// W' = U diag(sigma * z) V^T with a learned vector z in R^r (initialised to 1, so the layer
// starts as the base).  K expert vectors z_1..z_K are trained, each on its own task, and mixed
// at inference by a dispatcher: z = sum_k alpha_k z_k with alpha a softmax over a small
// classifier of the input's mean token (the paper's classification expert, with soft weights
// so that it can also be trained end to end), or a one-hot alpha for a fixed expert.
// Inference is two passes: pass 1 computes alpha from the input, pass 2 runs the adapted layer.
// Training and this CPU forward use the factored product ((x V) * (sigma z)) U^T, which equals
// x W'^T exactly; a deployment reconstructs W' once per adaptation (the workload counts that).
#pragma once

#include <random>
#include <vector>

#include "nn/layers.hpp"
#include "nn/module.hpp"

namespace hwnas::nn {

class SvfLinear : public Module {
 public:
  // weight [out, in]; bias [out] or an empty Tensor; experts >= 1.  Throws
  // std::invalid_argument naming the bad argument.
  SvfLinear(const Tensor& weight, const Tensor& bias, int experts);

  // x [.., in] -> [.., out].  mixture [B, K] (B = x.dim(0), rows of expert weights), or
  // undefined to use expert 0.
  Var forward(const Var& x, const Var& mixture);
  Var forward(const std::vector<Var>& in, ForwardContext&) override {
    return forward(in.at(0), Var());
  }
  // U diag(sigma * z) V^T for a vector z [r]: the adapted weight [out, in].
  Var adapted_weight(const Var& z) const;
  // Decomposes a new base (a pretrained weight of the same shape); the expert vectors stay.
  void rebase(const Tensor& weight);

  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  void append_named_buffers(const std::string& prefix, std::vector<NamedBuffer>& out) override;
  std::string name() const override { return "svf_linear"; }

  int in_features() const { return in_; }
  int out_features() const { return out_; }
  int rank() const { return r_; }
  int experts() const { return experts_vectors.dim(0); }
  const Tensor& u() const { return u_; }          // [out, r]
  const Tensor& sigma() const { return sigma_; }  // [r], descending
  const Tensor& v() const { return v_; }          // [in, r]

  Var experts_vectors;  // [K, r], the trainable z_k (one row per expert)

 private:
  int in_ = 0, out_ = 0, r_ = 0;
  Tensor u_, sigma_, v_, bias_;
};

// The dispatch classifier: logits = W mean_tokens(x) + b over the K experts.
class SvfDispatcher : public Module {
 public:
  SvfDispatcher(int features, int experts, std::mt19937_64& rng);
  // x [B, in] or [B, L, in] (averaged over L) -> [B, K]
  Var logits(const Var& x);
  Var mixture(const Var& x) { return softmax(logits(x)); }
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return mixture(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "svf_dispatcher"; }

  Linear classifier;
};

// A one-hot mixture [B, K] selecting `expert` for every row (throws if out of range).
Var svf_one_hot(int batch, int experts, int expert);

}  // namespace hwnas::nn
