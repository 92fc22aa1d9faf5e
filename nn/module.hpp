// Trainable modules.  A Module owns its parameters (as Vars) and maps input Vars to an output
// Var.  Blocks in spaces/ build Modules; evaluators/ train them.  A Module may take several
// inputs (a DAG node with several predecessors).
#pragma once

#include <random>
#include <string>
#include <vector>

#include "nn/activity.hpp"
#include "nn/autograd.hpp"

namespace hwnas::nn {

struct ForwardContext {
  bool training = true;
  std::mt19937_64* rng = nullptr;  // for dropout and other stochastic blocks
  // Activity recording (nn/activity.hpp), null when not recording: the evaluator sets
  // `recorder` for its validation pass; a model made of nodes points `activity` at the current
  // node's sink before running it, and a block writes what it measured there when non-null.
  ActivityRecorder* recorder = nullptr;
  ActivitySink* activity = nullptr;
  // Auxiliary training losses (a mixture of experts' load-balancing loss), null when nobody
  // collects them: in training a block appends its already weighted scalar loss here and the
  // trainer adds the sum to the task loss of the same step.
  std::vector<Var>* aux_losses = nullptr;
};

// A parameter with its dotted path inside the module tree ("n3.conv.weight").
struct NamedParameter {
  std::string name;
  Var var;
};
// Non-trainable state that is part of the model (batch-norm running statistics).  Points into
// the owning module, so loading a state can overwrite it in place.
struct NamedBuffer {
  std::string name;
  Tensor* tensor;
};

// Every parameter and buffer has a stable dotted name, so that saved states, optimizer groups
// and freezing can address them (nn/state_dict.hpp).  A module reports its own tensors and
// recurses into its children with `prefix + "child."`.
//
// Compatibility: a module may override either append_named_parameters (preferred: names) or
// only collect_parameters (legacy: its parameters are then named by position, prefix + "0",
// "1", ...).  A module overriding neither has no parameters.
class Module {
 public:
  virtual ~Module() = default;
  virtual Var forward(const std::vector<Var>& inputs, ForwardContext& ctx) = 0;
  virtual std::string name() const = 0;

  // Appends this module's parameters (frozen ones included), each named prefix + local name.
  virtual void append_named_parameters(const std::string& prefix, std::vector<NamedParameter>& out);
  // Appends this module's buffers, each named prefix + local name.  Default: none.
  virtual void append_named_buffers(const std::string& /*prefix*/,
                                    std::vector<NamedBuffer>& /*out*/) {}
  // Appends the parameters' Vars in the order of append_named_parameters (kept for the many
  // callers that need no names).
  virtual void collect_parameters(std::vector<Var>& out);

  std::vector<NamedParameter> named_parameters();
  std::vector<NamedBuffer> named_buffers();
  // Freezes (requires_grad false: optimizers skip them, no gradient reaches them, gradients
  // still flow through them to their inputs) or unfreezes every parameter whose name is
  // `prefix` or starts with `prefix + "."`; "" selects all.  Returns how many matched; throws
  // std::invalid_argument if none did (a misspelt prefix must not silently freeze nothing).
  int freeze(const std::string& prefix = "");
  int unfreeze(const std::string& prefix = "");
};

// True if `name` is `prefix` or lies under it ("n3" covers "n3.conv.weight", not "n30.bias").
bool name_has_prefix(const std::string& name, const std::string& prefix);

}  // namespace hwnas::nn
