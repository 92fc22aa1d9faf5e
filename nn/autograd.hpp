// Reverse-mode automatic differentiation.
//
// Every op returns a Var whose Node holds the forward value, its parents and a closure that,
// given the node's output gradient, accumulates gradients into the parents (Flashlight style).
// Nodes carry a creation sequence number; backward() collects the nodes reachable from the loss
// and replays them in reverse creation order, which is exactly the order of a recorded tape
// without any global or thread-local tape to clear.
//
// Threading: a graph belongs to one training loop.  Grad mode is thread-local, so a training loop
// that runs inside a TBB task must run under tbb::this_task_arena::isolate (nn/parallel.hpp's
// run_isolated) so that the thread never steals another candidate's task while it waits inside
// a parallel op.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "nn/tensor.hpp"

namespace hwnas::nn {

struct Node;

// Work an optimizer does on a parameter right after updating its values, on the threads that
// wrote them, chunk by chunk: a value derived from the parameter once per step (its compressed
// copy, spaces/compress.cpp) is made there, not read back from memory in the next forward pass.
// Optimizers update the parameter in chunks of whole granules and call
//   before(node, chunks);  chunk(node, c, begin, end) once per non-empty chunk c, from any
//   thread, after node.value[begin, end) has its new entries;  after(node), when all are done.
// No other parameter is updated concurrently with a hook's calls.  chunk() must not throw (the
// parameter would be left half updated): a hook that fails gives up its result instead.  An
// update may skip the hook (granule 0, or rows too long to keep the update's threads busy).
// Whether its result is still current at the next forward pass is the hook's business:
// Node::version counts the non-const Var::value() accesses since, and weights_epoch() the
// writes announced by weights_changed(); a write by any other path (a Tensor handle copied
// from the value, a reshaped view, Node::value itself) is seen by neither.
class UpdateHook {
 public:
  virtual ~UpdateHook() = default;
  // The entries one chunk() must cover whole (a weight's output-channel row): chunk boundaries
  // fall on multiples of it.  0: the hook sits this update out (not called at all).
  virtual std::int64_t granule(const Node& node) const = 0;
  virtual void before(const Node& node, std::int64_t chunks) = 0;
  virtual void chunk(const Node& node, std::int64_t c, std::int64_t begin,
                     std::int64_t end) noexcept = 0;
  virtual void after(const Node& node) = 0;
};

struct Node {
  Tensor value;
  Tensor grad;  // allocated lazily by grad_of(); same shape as value
  bool requires_grad = false;
  std::uint64_t seq = 0;
  std::vector<std::shared_ptr<Node>> parents;
  // Reads self.grad and accumulates into parents' grads (use accumulate_grad()).
  std::function<void(Node& self)> backward_fn;
  // Run by optimizers after each update of this (parameter) node; see UpdateHook.  Set it with
  // set_update_hook, which also turns on `version`.
  std::shared_ptr<UpdateHook> update_hook;
  // Counts non-const accesses to the value through Var::value() (optimizers' updates, and the
  // in-place writes made through a parameter's Var), once `versioned` is on: a cache of a value
  // derived from this node keeps the count it was made at.  Off, the accessor costs one relaxed
  // load.  Writes through other handles to the storage are not counted (see UpdateHook).
  std::atomic<std::uint64_t> version{0};
  std::atomic<bool> versioned{false};

  // Set by backward() and gradients() on every op result they visit, before any closure runs:
  // how many parent slots of the visited nodes whose closures run point to this node (a node
  // gradients() returns counts as having more than one).  Not kept on leaves.
  int consumers = 0;
  // A mask that this node's closure multiplies its gradient by before passing it on (a
  // straight-through pruning estimator).  Its only consumer, writing this node's gradient into a
  // fresh buffer, may apply it to each block it writes (the rows [r0, r1) and columns [c0, c1) of
  // the gradient seen as rows of ld floats) while the block is still in cache, and set
  // masked_grad to the buffer: the closure then skips its own pass over it.
  std::function<void(float* grad, std::int64_t ld, std::int64_t r0, std::int64_t r1,
                     std::int64_t c0, std::int64_t c1)>
      grad_mask;
  const float* masked_grad = nullptr;
};

class Var {
 public:
  Var() = default;
  explicit Var(std::shared_ptr<Node> node) : node_(std::move(node)) {}

  const Tensor& value() const { return node_->value; }
  Tensor& value() {  // (counted: the caller may write; see Node::version)
    if (node_->versioned.load(std::memory_order_relaxed))
      node_->version.fetch_add(1, std::memory_order_relaxed);
    return node_->value;
  }
  const Shape& shape() const { return node_->value.shape(); }
  int dim(int i) const { return node_->value.dim(i); }
  bool requires_grad() const { return node_ && node_->requires_grad; }
  // Freezes (false) or unfreezes (true) a leaf such as a parameter: ops record no gradient
  // path into a frozen leaf, while gradients still flow to their other inputs.  Throws
  // std::logic_error on an op result (its flag is derived from its inputs).
  void set_requires_grad(bool on);
  // Gradient accumulated by backward(); empty tensor if none reached this Var.
  const Tensor& grad() const { return node_->grad; }
  Tensor& grad() { return node_->grad; }
  bool defined() const { return static_cast<bool>(node_); }
  Node* node() const { return node_.get(); }
  const std::shared_ptr<Node>& node_ptr() const { return node_; }

 private:
  std::shared_ptr<Node> node_;
};

// A trainable leaf: accumulates gradients across backward() calls until zero_grad().
Var parameter(Tensor value);
// A leaf that never receives gradients (inputs, labels, masks).
Var constant(Tensor value);

// Creates the output node of an op.  If grad mode is off or no parent requires grad, the
// backward closure and parents are dropped, so inference builds no graph.
Var make_result(Tensor value, std::vector<Var> parents,
                std::function<void(Node& self)> backward_fn);

// grad += g, allocating grad (zeros) on first use.  Safe to call on nodes that need no grad.
void accumulate_grad(Node& node, const Tensor& g);
// The node's gradient buffer, zero-initialised on first use (for ops that write in place).
Tensor& grad_of(Node& node);

// Backpropagates from a scalar (1-element) loss, seeding d loss / d loss = 1.
void backward(const Var& loss);

// d loss / d wrt[i] for each i, without touching any node's stored gradient and without
// freeing the graph (a later backward() through the same graph still works).  Gradients stop
// at the wrt nodes: nothing upstream of them is visited, so an inner optimisation loop (test-
// time training) gives no gradient to the outer parameters.  wrt may hold leaves or op results;
// a wrt node the loss does not depend on gets zeros.  Throws std::invalid_argument on an
// undefined or non-scalar loss or an undefined wrt entry.
std::vector<Tensor> gradients(const Var& loss, const std::vector<Var>& wrt);

bool grad_enabled();
// Identifies the current no-grad session of this thread: a new value for every NoGradGuard
// constructed, 0 while grad mode is on.  Weights cannot change inside one session (optimizers
// do not run there), so inference-only caches of derived weights key on it.
std::uint64_t no_grad_session();
// Starts a new no-grad session in this thread (when inside one), so that caches keyed on
// no_grad_session() drop what they derived from the old weights, and advances weights_epoch().
// Called by whatever overwrites parameter values outside an optimizer step (loading a state
// dict, merging an adapter).
void weights_changed();
// A process-wide count of weights_changed() calls: a value derived from a parameter in an
// optimizer step (UpdateHook) is stale once it moved.
std::uint64_t weights_epoch();
// Installs `hook` on parameter p (replacing any) and turns on p's write counting
// (Node::version).  Not thread-safe against optimizers or forward passes using p.
void set_update_hook(const Var& p, std::shared_ptr<UpdateHook> hook);
// Disables graph recording in this thread for its lifetime (evaluation, inference timing).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Re-enables graph recording in this thread for its lifetime, even inside a NoGradGuard: the
// inner gradient steps of fast-weight layers (TTT, Titans) run during evaluation and inference.
// Use nn::gradients() inside, so the steps leave every other gradient untouched.
class EnableGradGuard {
 public:
  EnableGradGuard();
  ~EnableGradGuard();
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace hwnas::nn
