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
};

class Module {
 public:
  virtual ~Module() = default;
  virtual Var forward(const std::vector<Var>& inputs, ForwardContext& ctx) = 0;
  // Appends this module's trainable parameters.
  virtual void collect_parameters(std::vector<Var>& out) = 0;
  virtual std::string name() const = 0;
};

}  // namespace hwnas::nn
