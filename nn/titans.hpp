// Titans neural long-term memory in its memory-as-context (MAC) form (Behrouz, Zhong, Mirrokni
// 2025, "Titans: Learning to Memorize at Test Time", arXiv:2501.00663), [B, L, d] -> [B, L, d].
//
// The memory M is a small MLP whose weights are a per-sequence state, written at test time by
// gradient steps on the associative loss  l_c = mean_{t in c} theta_t ||M(k_t) - v_t||^2  with
// momentum ("surprise") and a forgetting gate (depth 2 divides each token's term by
// 1 + ||hidden||^2, a normalised step that keeps the update from overshooting):
//     S_c = eta_c S_{c-1} - G_c,   M_c = (1 - alpha_c) M_{c-1} + S_c,
// where G_c is the gradient of the chunk's loss at the chunk's starting weights M_{c-1} (the
// paper's tensorised mini-batch form) and eta_c, alpha_c are the chunk means of data-dependent
// sigmoid gates (the paper lets them be chunk-wise for fast training; chunk 1 is per token).
// MAC per segment S of `segment` tokens: h = M*(q(S)) is read without an update; causal
// attention over [persistent tokens | h | S] gives y; y is written into the memory chunk by
// chunk, and the output is W_O (y * sigmoid(M*(q(y)))), each token reading the memory as of
// the end of the previous chunk, so no token sees a later one.  The inner steps are ordinary
// differentiable ops: the outer loss trains every parameter through the unrolled updates.
// See docs/blocks/titans.md for the equations and what differs from the paper.
#pragma once

#include <random>
#include <vector>

#include "nn/layers.hpp"
#include "nn/module.hpp"

namespace hwnas::nn {

struct TitansConfig {
  int d = 16;             // model width (= memory key/value width)
  int heads = 2;          // attention heads (divide d)
  int memory_depth = 2;   // 1: M(k) = k W;  2: M(k) = silu(k W1) W2 with hidden width d
  int segment = 32;       // tokens per attention segment
  int persistent = 4;     // learned persistent-memory tokens prepended to every segment
  int chunk = 8;          // tokens per memory update (<= segment)
  float inner_lr = 1.0f;  // theta_t = inner_lr * sigmoid(w_theta . y_t + b_theta)
  bool memory = true;     // false: the same block without the neural memory (ablation)
  // Throws std::invalid_argument naming the field and the fix.
  void validate() const;
};

// One activity series the layer reports while recording: the associative loss
// ||M(k) - v||^2 per token of every memory chunk before its update (series over chunks).
inline constexpr const char* kTitansInnerLoss = "titans_inner_loss";

class TitansMemoryLayer : public Module {
 public:
  TitansMemoryLayer(const TitansConfig& c, std::mt19937_64& rng);
  Var forward(const Var& x, ForwardContext& ctx);  // [B, L, d] -> [B, L, d]
  Var forward(const std::vector<Var>& in, ForwardContext& ctx) override {
    return forward(in.at(0), ctx);
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "titans"; }
  const TitansConfig& config() const { return c_; }

  // The memory weights at the end of the last forward pass, per sample ([B, d, d] each; one
  // for depth 1, two for depth 2), for tests and inspection.  Every forward starts again from
  // the learned initial memory, so nothing carries over from one sequence to the next.
  const std::vector<Tensor>& last_memory() const { return last_memory_; }
  // The learned initial memory M_0 ([d, d] each).
  std::vector<Tensor> initial_memory() const;

 private:
  struct State {
    std::vector<Var> w;  // memory weights, [B, d, d] each
    std::vector<Var> s;  // surprise (momentum), same shapes
  };
  Var memory_read(const State& st, const Var& q) const;  // [B, n, d] -> [B, n, d]
  // Gradient of sum_j theta_j ||M(k_j) - v_j||^2 at st.w; also returns the per-token loss sum.
  std::vector<Var> memory_grad(const State& st, const Var& k, const Var& v, const Var& theta,
                               double* loss_sum) const;
  Var segment_attention(const Var& keys_in, const Var& x_seg, int s_len, bool with_h) const;

  TitansConfig c_;
  Linear mq_, mk_, mv_, gates_;  // memory projections and the (theta, eta, alpha) gates
  Linear aq_, akv_, out_;        // segment attention and output projection
  std::vector<Var> m0_;          // initial memory weights [d, d]
  Var persistent_;               // [N_p, d] (undefined when N_p = 0)
  std::vector<Tensor> last_memory_;
};

}  // namespace hwnas::nn
