// The mixed op of differentiable architecture search: every candidate op of one edge, run on the
// same input and summed with architecture weights (DARTS: softmax(alpha); FBNet/GDAS: a
// Gumbel-softmax sample).  The weights are an input, not a member, so that one set of
// architecture parameters drives the same edge in every stacked cell.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "nn/module.hpp"
#include "spaces/space.hpp"

namespace hwnas::oneshot {

// One candidate op: a catalogue block kind with its parameters, named as in the space ("none",
// "dw_conv_5x5").
struct CandidateOp {
  std::string name;
  std::string kind;
  nlohmann::json params = nlohmann::json::object();
};

class MixedOp : public nn::Module {
 public:
  // Builds every op from the block catalogue for input type `in` (ops must keep the shape).
  MixedOp(const std::vector<CandidateOp>& ops, const spaces::TensorType& in, spaces::Rng& rng);

  // sum_o weights[o] * op_o(x); weights: [ops] (a probability vector, or one row of one).  Ops
  // whose output is always zero ("none") are not run: their term is zero whatever the weight,
  // and their weight still receives gradient through the normalisation that produced it.
  nn::Var forward(const nn::Var& x, const nn::Var& weights, nn::ForwardContext& ctx);
  // Module interface: inputs {x, weights}.
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    return forward(in.at(0), in.at(1), ctx);
  }
  std::string name() const override { return "mixed_op"; }
  // Each op's tensors under its index: "3.conv.weight".
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override;
  void append_named_buffers(const std::string& prefix, std::vector<nn::NamedBuffer>& out) override;

  std::size_t size() const { return ops_.size(); }
  nn::Module& op(std::size_t i) { return *ops_[i]; }

 private:
  std::vector<std::unique_ptr<nn::Module>> ops_;
  std::vector<bool> zero_;  // the op outputs zeros (catalogue zero_output)
};

// Op weights from architecture logits alpha [E, O]: softmax over each row, or with gumbel a
// Gumbel-softmax sample softmax((alpha + g) / temperature), g ~ Gumbel(0, 1) drawn from rng
// (a constant: gradients flow to alpha only).
nn::Var op_weights(const nn::Var& alpha, bool gumbel, float temperature, std::mt19937_64* rng);

}  // namespace hwnas::oneshot
