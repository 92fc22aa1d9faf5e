#include "nn/autograd.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "nn/kernels.hpp"

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
  if (g.numel() != node.value.numel())
    throw std::logic_error("accumulate_grad: gradient " + g.shape().str() + " for a value of " +
                           node.value.shape().str());
  if (node.grad.empty() || node.grad.shape() != node.value.shape()) {
    // A copy of g, on both threads when it is large (residual adds pass megabytes).  `keep`
    // holds g's buffer in case g is the gradient being replaced.
    const Tensor keep = g;
    node.grad = Tensor(node.value.shape());
    const float* src = keep.data();
    float* dst = node.grad.data();
    detail::parallel_range(g.numel(), 1, [&](std::int64_t i0, std::int64_t i1) {
      std::copy(src + i0, src + i1, dst + i0);
    });
    return;
  }
  detail::add_into(node.grad.data(), g.data(), g.numel());
}

namespace {
// Node::consumers (and a cleared masked_grad) for the op results of one backward pass (`order`),
// whose closures run except for those in `stops`: a returned gradient must stay the one its
// consumers wrote.  Leaves are left alone: parameters may be shared with other graphs.
void count_consumers(const std::vector<Node*>& order,
                     const std::unordered_map<Node*, std::size_t>* stops) {
  for (Node* n : order)
    if (n->backward_fn) {
      n->consumers = 0;
      n->masked_grad = nullptr;
    }
  for (Node* n : order) {
    if (stops && stops->count(n)) {
      if (n->backward_fn) n->consumers += 2;  // (more than one: see Node::grad_mask)
      continue;
    }
    for (auto& p : n->parents)
      if (p->requires_grad && p->backward_fn) ++p->consumers;
  }
}
}  // namespace

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
  count_consumers(order, nullptr);

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
      n->grad_mask = nullptr;  // (it may refer to the parents released here)
      for (auto& p : n->parents) release.push_back(std::move(p));
      n->parents.clear();
    }
  }
}

std::vector<Tensor> gradients(const Var& loss, const std::vector<Var>& wrt) {
  if (!loss.defined()) throw std::invalid_argument("gradients: undefined loss");
  if (loss.value().numel() != 1)
    throw std::invalid_argument("gradients: loss must be a scalar, got shape " +
                                loss.shape().str());
  std::unordered_map<Node*, std::size_t> target;
  for (std::size_t i = 0; i < wrt.size(); ++i) {
    if (!wrt[i].defined())
      throw std::invalid_argument("gradients: wrt[" + std::to_string(i) + "] is undefined");
    target.emplace(wrt[i].node(), i);
  }
  std::vector<Tensor> out(wrt.size());
  if (loss.requires_grad()) {
    std::vector<Node*> order;
    std::unordered_set<Node*> seen;
    std::vector<Node*> stack{loss.node()};
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      if (!seen.insert(n).second) continue;
      order.push_back(n);
      if (target.count(n)) continue;  // stop at the requested nodes
      for (auto& p : n->parents)
        if (p->requires_grad) stack.push_back(p.get());
    }
    std::sort(order.begin(), order.end(), [](Node* a, Node* b) { return a->seq > b->seq; });
    count_consumers(order, &target);
    // Every node a closure can write to is in `order`; park their gradients and restore them
    // afterwards, so this call is invisible to backward() and the optimizers.
    std::vector<Tensor> parked;
    parked.reserve(order.size());
    for (Node* n : order) parked.push_back(std::exchange(n->grad, Tensor()));
    grad_of(*loss.node()).fill(1.0f);
    for (Node* n : order)
      if (!target.count(n) && n->backward_fn && !n->grad.empty()) n->backward_fn(*n);
    for (Node* n : order) {
      auto it = target.find(n);
      if (it != target.end()) out[it->second] = n->grad;
    }
    for (std::size_t k = 0; k < order.size(); ++k) order[k]->grad = std::move(parked[k]);
  }
  for (std::size_t i = 0; i < wrt.size(); ++i) {
    const std::size_t first = target.at(wrt[i].node());  // a repeated entry shares the first's
    if (first != i)
      out[i] = out[first];
    else if (out[i].empty())
      out[i] = Tensor::zeros(wrt[i].shape());
  }
  return out;
}

void Var::set_requires_grad(bool on) {
  if (!node_) throw std::logic_error("set_requires_grad: undefined Var");
  if (node_->backward_fn || !node_->parents.empty())
    throw std::logic_error(
        "set_requires_grad: only leaves (parameters, constants) can be frozen or unfrozen");
  node_->requires_grad = on;
  if (!on) node_->grad = Tensor();
}

bool grad_enabled() { return t_grad_enabled; }
namespace {
thread_local std::uint64_t t_no_grad_session = 0;
}
std::uint64_t no_grad_session() { return t_grad_enabled ? 0 : t_no_grad_session; }
namespace {
std::atomic<std::uint64_t> g_weights_epoch{0};
}
void weights_changed() {
  ++t_no_grad_session;
  g_weights_epoch.fetch_add(1, std::memory_order_release);
}
std::uint64_t weights_epoch() { return g_weights_epoch.load(std::memory_order_acquire); }

void set_update_hook(const Var& p, std::shared_ptr<UpdateHook> hook) {
  p.node()->versioned.store(true, std::memory_order_relaxed);
  p.node()->update_hook = std::move(hook);
}
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) {
  t_grad_enabled = false;
  ++t_no_grad_session;
}
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }
EnableGradGuard::EnableGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = true; }
EnableGradGuard::~EnableGradGuard() { t_grad_enabled = previous_; }

}  // namespace hwnas::nn
