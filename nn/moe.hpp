// Mixture-of-experts feed-forward layer with a top-k router (Shazeer et al. 2017; GShard,
// Lepikhin et al. 2021; Switch Transformer, Fedus et al. 2022).
//
// Every token x (a row of the input's last dimension) is scored by a linear router,
// p(x) = softmax(x Wr^T + br) over E experts, and sent to its k most probable experts.  The
// output is y(x) = sum_{i in topk(p(x))} p_i(x) E_i(x) with the raw router probabilities as gates
// (not renormalised over the k chosen, as Switch's eq. 2: with k = 1 a renormalised gate would be
// the constant 1 and the router would learn only from the auxiliary loss).  Each expert is an FFN
// E_i(x) = W2_i act(W1_i x + b1_i) + b2_i, d -> hidden -> d.
//
// Routing is real: the tokens of each expert are gathered (index_select), only that expert's FFN
// runs on them, and the gated outputs are scatter-added back; no dense product over all experts is
// ever formed.  Each expert takes at most capacity = ceil(capacity_factor * tokens * k / E)
// assignments per forward pass (tokens = all rows of the batch); assignments are granted first
// choices before second choices, each in token order (GShard's priority).  An assignment over
// capacity is dropped (contributes 0; the residual connection around the block carries the token,
// as in Switch) or, with overflow "pass", replaced by the identity weighted by its gate.
//
// The load-balancing loss (Switch eq. 4) is aux_weight * E * sum_i f_i P_i, where f_i is the
// share of the N k token-expert assignments the router chose for expert i (before capacity) and
// P_i the mean router probability of expert i over the tokens.  It equals aux_weight for uniform
// routing.  In training, when ForwardContext::aux_losses is set and aux_weight > 0, the layer
// appends it there.
#pragma once

#include <functional>
#include <random>
#include <vector>

#include "nn/layers.hpp"

namespace hwnas::nn {

enum class MoeOverflow { Drop, Pass };

struct MoeOptions {
  int experts = 4;
  int k = 1;
  int hidden = 64;
  double capacity_factor = 1.25;
  MoeOverflow overflow = MoeOverflow::Drop;
  double aux_weight = 0.01;
  Activation activation = Activation::Relu;
};

// What one forward pass dispatched.
struct MoeRouting {
  int tokens = 0;                         // rows routed (batch x length)
  int capacity = 0;                       // assignments each expert accepts
  std::vector<int> chosen_per_expert;     // assignments the router chose, before capacity
  std::vector<int> processed_per_expert;  // assignments each expert computed
  int overflowed = 0;                     // assignments over capacity (dropped or passed)
};

// ceil(factor * tokens * k / experts), at least 1.
int moe_capacity(int tokens, int k, int experts, double factor);

// Unweighted Switch load-balancing loss E * sum_i f_i P_i for router probabilities probs [N, E]
// and the router's choices `chosen` [N, k]; differentiable through probs (f is a count).
Var moe_load_balancing_loss(const Var& probs, const IndexTensor& chosen);

class MoeLayer : public Module {
 public:
  // Throws std::invalid_argument naming the option for experts < 1, k outside [1, experts],
  // hidden < 1, capacity_factor <= 0 or aux_weight < 0.
  MoeLayer(int d, const MoeOptions& options, std::mt19937_64& rng);
  Var forward(const Var& x, ForwardContext& ctx);  // [.., d] -> [.., d]
  Var forward(const std::vector<Var>& in, ForwardContext& ctx) override {
    return forward(in.at(0), ctx);
  }
  // router.weight, router.bias, experts.<i>.fc1.*, experts.<i>.fc2.*
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "moe"; }

  const MoeOptions& options() const { return opt_; }
  const MoeRouting& last_routing() const { return routing_; }
  // Applied to every weight matrix before use (the search's quantisation and pruning); identity
  // when empty.
  std::function<Var(const Var&)> weight_transform;

  Linear router;
  std::vector<Linear> fc1, fc2;  // one per expert

 private:
  Var w(const Var& weight) const { return weight_transform ? weight_transform(weight) : weight; }
  MoeOptions opt_;
  int d_;
  MoeRouting routing_;
};

}  // namespace hwnas::nn
