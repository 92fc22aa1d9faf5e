#include "nn/autograd.hpp"

#include <algorithm>
#include <atomic>
#include <unordered_set>

namespace hwnas::nn {
namespace {
std::atomic<std::uint64_t> g_next_seq{1};
thread_local bool t_grad_enabled = true;

std::shared_ptr<Node> new_node(Tensor value, bool requires_grad) {
  auto n = std::make_shared<Node>();
  n->value = std::move(value);
  n->requires_grad = requires_grad;
  n->seq = g_next_seq.fetch_add(1, std::memory_order_relaxed);
  return n;
}
}  // namespace

Var parameter(Tensor value) { return Var(new_node(std::move(value), true)); }
Var constant(Tensor value) { return Var(new_node(std::move(value), false)); }

Var make_result(Tensor value, std::vector<Var> parents, std::function<void(Node&)> backward_fn) {
  bool needs = false;
  if (t_grad_enabled)
    for (const Var& p : parents) needs = needs || p.requires_grad();
  auto n = new_node(std::move(value), needs);
  if (needs) {
    n->parents.reserve(parents.size());
    for (Var& p : parents) n->parents.push_back(p.node_ptr());
    n->backward_fn = std::move(backward_fn);
  }
  return Var(std::move(n));
}

Tensor& grad_of(Node& node) {
  if (node.grad.empty() || node.grad.shape() != node.value.shape())
    node.grad = Tensor::zeros(node.value.shape());
  return node.grad;
}

void accumulate_grad(Node& node, const Tensor& g) {
  if (!node.requires_grad) return;
  if (node.grad.empty() || node.grad.shape() != node.value.shape()) {
    node.grad = g.clone();
    if (node.grad.shape() != node.value.shape()) node.grad = node.grad.reshaped(node.value.shape());
    return;
  }
  node.grad.array() += g.array();
}

void backward(const Var& loss) {
  if (!loss.defined()) throw std::logic_error("backward: undefined loss");
  if (loss.value().numel() != 1)
    throw std::logic_error("backward: loss must be a scalar, got shape " + loss.shape().str());
  if (!loss.requires_grad()) return;

  // Collect reachable interior nodes (iterative DFS), then replay in reverse creation order.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack{loss.node()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    order.push_back(n);
    for (auto& p : n->parents)
      if (p->requires_grad) stack.push_back(p.get());
  }
  std::sort(order.begin(), order.end(), [](Node* a, Node* b) { return a->seq > b->seq; });

  grad_of(*loss.node()).fill(1.0f);
  for (Node* n : order) {
    if (n->backward_fn && !n->grad.empty()) n->backward_fn(*n);
  }
  // Free interior gradients and closures: the graph is single-use, parameters keep theirs.
  // Parent links are moved into `release` rather than cleared in place: clearing could free a
  // node that is still listed further on in `order`, and destroying them only after the loop,
  // each with its own links already cut, also avoids deep recursive destructor chains.
  std::vector<std::shared_ptr<Node>> release;
  for (Node* n : order) {
    if (n->backward_fn) {
      n->grad = Tensor();
      n->backward_fn = nullptr;
      for (auto& p : n->parents) release.push_back(std::move(p));
      n->parents.clear();
    }
  }
}

bool grad_enabled() { return t_grad_enabled; }
namespace {
thread_local std::uint64_t t_no_grad_session = 0;
}
std::uint64_t no_grad_session() { return t_grad_enabled ? 0 : t_no_grad_session; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) {
  t_grad_enabled = false;
  ++t_no_grad_session;
}
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

}  // namespace hwnas::nn
