#include "nn/optim.hpp"

#include "nn/kernels.hpp"

// GCC 12 false positive inside AVX-512 intrinsics inlined from Eigen (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cmath>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#include <numbers>
#include <stdexcept>
#include <string>

namespace hwnas::nn {
namespace {
// Flush-to-zero / denormals-are-zero for the current thread while in scope.  Moments of
// parameters whose gradient stays zero (dead ReLU units) decay geometrically into the denormal
// range, where every arithmetic op costs ~100 cycles; flushing them to zero changes nothing
// measurable and keeps the step fast.  Deterministic: the same inputs flush the same way.
class FlushDenormals {
 public:
#if defined(__SSE__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ | DAZ
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#endif
};
}  // namespace

Optimizer::Optimizer(std::vector<Var> params, float lr) : params_(std::move(params)), lr_(lr) {
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (!params_[i].defined())
      throw std::invalid_argument("optimizer: parameter " + std::to_string(i) + " is undefined");
  if (!(lr >= 0.0f)) throw std::invalid_argument("optimizer: lr must be >= 0, got " + std::to_string(lr));
}

void Optimizer::zero_grad() { nn::zero_grad(params_); }

Sgd::Sgd(std::vector<Var> params, const SgdOptions& opt) : Optimizer(std::move(params), opt.lr), opt_(opt) {
  if (opt.momentum < 0.0f) throw std::invalid_argument("Sgd: momentum must be >= 0");
  if (opt.nesterov && opt.momentum <= 0.0f) throw std::invalid_argument("Sgd: nesterov needs momentum > 0");
  velocity_.resize(params_.size());
}

void Sgd::step() {
  Eigen::ArrayXf decayed;  // gradient plus L2 term; the stored gradient is left untouched
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Var& p = params_[i];
    if (p.grad().empty()) continue;
    auto w = p.value().array();
    const float* gp = p.grad().data();
    if (opt_.weight_decay != 0.0f) {
      decayed = p.grad().array() + opt_.weight_decay * w;
      gp = decayed.data();
    }
    Eigen::Map<const Eigen::ArrayXf> g(gp, w.size());
    if (opt_.momentum == 0.0f) {
      w -= lr_ * g;
      continue;
    }
    Tensor& v = velocity_[i];
    if (v.empty()) {
      v = Tensor(p.shape());
      v.array() = g;  // first step: v = g (PyTorch's convention)
    } else {
      v.array() = opt_.momentum * v.array() + g;
    }
    if (opt_.nesterov) w -= lr_ * (g + opt_.momentum * v.array());
    else w -= lr_ * v.array();
  }
}

AdamW::AdamW(std::vector<Var> params, const AdamWOptions& opt)
    : Optimizer(std::move(params), opt.lr), opt_(opt) {
  if (!(opt.beta1 >= 0.0f && opt.beta1 < 1.0f)) throw std::invalid_argument("AdamW: beta1 must be in [0, 1)");
  if (!(opt.beta2 >= 0.0f && opt.beta2 < 1.0f)) throw std::invalid_argument("AdamW: beta2 must be in [0, 1)");
  if (!(opt.eps > 0.0f)) throw std::invalid_argument("AdamW: eps must be > 0");
  m_.resize(params_.size());
  v_.resize(params_.size());
}

void AdamW::step() {
  ++t_;
  const double bc1 = 1.0 - std::pow(static_cast<double>(opt_.beta1), static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(static_cast<double>(opt_.beta2), static_cast<double>(t_));
  // Folding the corrections into the step size and eps: lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
  const auto step_size = static_cast<float>(lr_ / bc1);
  const auto inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float b1 = opt_.beta1, b2 = opt_.beta2;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Var& p = params_[i];
    if (p.grad().empty()) continue;
    if (m_[i].empty()) {
      m_[i] = Tensor::zeros(p.shape());
      v_[i] = Tensor::zeros(p.shape());
    }
    // Vectorised passes over cache-sized chunks, in parallel for big tensors; elements are
    // independent, so the result does not depend on the chunking.
    float* w = p.value().data();
    const float* g = p.grad().data();
    float* m = m_[i].data();
    float* v = v_[i].data();
    const float decay = 1.0f - lr_ * opt_.weight_decay;
    const float eps = opt_.eps;
    detail::parallel_range(p.value().numel(), 16, [&](std::int64_t i0, std::int64_t i1) {
      FlushDenormals ftz;
      const std::int64_t len = i1 - i0;
      Eigen::Map<Eigen::ArrayXf> wj(w + i0, len), mj(m + i0, len), vj(v + i0, len);
      Eigen::Map<const Eigen::ArrayXf> gj(g + i0, len);
      mj = b1 * mj + (1.0f - b1) * gj;
      vj = b2 * vj + (1.0f - b2) * gj.square();
      wj = wj * decay - step_size * mj / (vj.sqrt() * inv_sqrt_bc2 + eps);
    });
  }
}

float clip_grad_norm(const std::vector<Var>& params, float max_norm) {
  double sq = 0;  // in double, in parameter order: deterministic
  for (const Var& p : params)
    if (p.defined() && !p.grad().empty()) sq += p.grad().array().cast<double>().square().sum();
  const double norm = std::sqrt(sq);
  if (norm > max_norm && norm > 0) {
    const auto s = static_cast<float>(max_norm / (norm + 1e-6));
    for (const Var& p : params)
      if (p.defined() && !p.grad().empty()) p.node()->grad.array() *= s;
  }
  return static_cast<float>(norm);
}

void zero_grad(const std::vector<Var>& params) {
  for (const Var& p : params)
    if (p.defined()) p.node()->grad = Tensor();
}

float CosineSchedule::lr_at(std::int64_t step) const {
  if (step < 0) step = 0;
  if (step < warmup_steps)
    return base_lr * static_cast<float>(step + 1) / static_cast<float>(warmup_steps);
  if (step >= total_steps) return min_lr;
  const double p = static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
  return static_cast<float>(min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * p)));
}

}  // namespace hwnas::nn
