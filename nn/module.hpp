// Trainable modules.  A Module owns its parameters (as Vars) and maps input Vars to an output
// Var.  Blocks in spaces/ build Modules; evaluators/ train them.  A Module may take several
// inputs (a DAG node with several predecessors).
#pragma once

#include <random>
#include <string>
#include <vector>

#include "nn/autograd.hpp"

namespace hwnas::nn {

// Measured activity a forward pass may report (the hardware models consume it later:
// spike counts, active experts, solver function evaluations).  Keyed by whatever the block
// chooses; values are accumulated over the forward passes of an evaluation.
struct Activity {
  double spikes = 0;             // total spikes emitted
  double synaptic_events = 0;    // spikes x fan-out actually delivered
  double neuron_updates = 0;
  double active_experts = 0;     // summed over tokens
  double function_evals = 0;     // ODE solver NFE
  double samples = 0;            // forward samples these counts cover
};

struct ForwardContext {
  bool training = true;
  std::mt19937_64* rng = nullptr;  // for dropout and other stochastic blocks
  Activity* activity = nullptr;    // may be null
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
