#include "oneshot/mixed_op.hpp"

#include <cmath>
#include <stdexcept>

#include "nn/ops.hpp"
#include "spaces/catalogue.hpp"

namespace hwnas::oneshot {

MixedOp::MixedOp(const std::vector<CandidateOp>& ops, const spaces::TensorType& in,
                 spaces::Rng& rng) {
  if (ops.empty()) throw std::invalid_argument("mixed op: no candidate ops");
  const auto& cat = spaces::catalogue();
  for (const auto& o : ops) {
    const spaces::BlockKind& kind = cat.at(o.kind);
    const nlohmann::json params = kind.resolve(o.params);
    const spaces::TensorType out = kind.infer({in}, params);
    if (!(out == in))
      throw std::invalid_argument("mixed op: candidate '" + o.name + "' changes " + in.str() +
                                  " to " + out.str() + "; every op of an edge must keep the shape");
    ops_.push_back(kind.build({in}, params, rng));
    zero_.push_back(kind.zero_output);
  }
}

nn::Var MixedOp::forward(const nn::Var& x, const nn::Var& weights, nn::ForwardContext& ctx) {
  const auto n = static_cast<int>(ops_.size());
  if (weights.value().numel() != n)
    throw std::invalid_argument("mixed op: " + std::to_string(weights.value().numel()) +
                                " weights for " + std::to_string(n) + " ops");
  const nn::Var w = nn::reshape(weights, nn::Shape{n});
  nn::Var sum;
  for (int o = 0; o < n; ++o) {
    if (zero_[static_cast<std::size_t>(o)]) continue;
    // A one-element weight broadcasts over the whole output.
    nn::Var term =
        nn::mul(ops_[static_cast<std::size_t>(o)]->forward({x}, ctx), nn::slice(w, 0, o, o + 1));
    sum = sum.defined() ? nn::add(sum, term) : term;
  }
  if (!sum.defined()) return nn::constant(nn::Tensor::zeros(x.shape()));
  return sum;
}

void MixedOp::append_named_parameters(const std::string& prefix,
                                      std::vector<nn::NamedParameter>& out) {
  for (std::size_t i = 0; i < ops_.size(); ++i)
    ops_[i]->append_named_parameters(prefix + std::to_string(i) + ".", out);
}

void MixedOp::append_named_buffers(const std::string& prefix, std::vector<nn::NamedBuffer>& out) {
  for (std::size_t i = 0; i < ops_.size(); ++i)
    ops_[i]->append_named_buffers(prefix + std::to_string(i) + ".", out);
}

nn::Var op_weights(const nn::Var& alpha, bool gumbel, float temperature, std::mt19937_64* rng) {
  if (!gumbel) return nn::softmax(alpha);
  if (!rng) throw std::invalid_argument("op_weights: Gumbel-softmax needs an rng");
  if (!(temperature > 0)) throw std::invalid_argument("op_weights: temperature must be > 0");
  nn::Tensor g(alpha.shape());
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (std::int64_t i = 0; i < g.numel(); ++i) {
    // Keep u away from 0 and 1 so -log(-log(u)) stays finite.
    const double v = std::min(std::max(u(*rng), 1e-12), 1.0 - 1e-12);
    g.data()[i] = static_cast<float>(-std::log(-std::log(v)));
  }
  return nn::softmax(nn::scale(nn::add(alpha, nn::constant(g)), 1.0f / temperature));
}

}  // namespace hwnas::oneshot
