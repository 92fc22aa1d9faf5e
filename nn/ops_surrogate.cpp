// Heaviside step with a surrogate gradient, for spiking neurons.
//
// Surrogate formulas follow the published SNN libraries so that hyperparameters transfer:
//  - FastSigmoid (SuperSpike, Zenke & Ganguli 2018), as snnTorch's surrogate.fast_sigmoid:
//      grad = 1 / (slope * |x| + 1)^2                       (snntorch/surrogate.py, FastSigmoid)
//  - ArcTan (Fang et al. 2021), as SpikingJelly's surrogate.ATan and snnTorch's surrogate.atan:
//      grad = alpha / 2 / (1 + (pi / 2 * alpha * x)^2)      (spikingjelly activation_based/
//                                                             surrogate.py, atan_backward)
//    the derivative of atan(pi/2 alpha x) / pi + 1/2, so it integrates to 1 like the true step.
//  - StraightThrough: 1, optionally only inside |x| <= width / 2.
#include <cmath>
#include <numbers>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
using detail::parallel_range;
using detail::parent;

void validate(const Surrogate& s) {
  if (!(s.slope > 0.0f) || !std::isfinite(s.slope))
    throw std::invalid_argument("step: surrogate slope must be a finite value > 0, got " +
                                std::to_string(s.slope));
  if (!(s.width >= 0.0f) || !std::isfinite(s.width))
    throw std::invalid_argument(
        "step: surrogate width must be a finite value >= 0 (0 = no clipping), got " +
        std::to_string(s.width));
}

float surrogate_grad(const Surrogate& s, float x) {
  switch (s.kind) {
    case SurrogateKind::StraightThrough:
      return (s.width == 0.0f || std::fabs(x) <= 0.5f * s.width) ? 1.0f : 0.0f;
    case SurrogateKind::FastSigmoid: {
      const float d = s.slope * std::fabs(x) + 1.0f;
      return 1.0f / (d * d);
    }
    case SurrogateKind::ArcTan: {
      const float u = std::numbers::pi_v<float> / 2.0f * s.slope * x;
      return s.slope / 2.0f / (1.0f + u * u);
    }
  }
  return 0.0f;
}

Var step(const Var& x, const Surrogate& surrogate) {
  validate(surrogate);
  Tensor out(x.shape());
  {
    const float* px = x.value().data();
    float* po = out.data();
    parallel_range(out.numel(), 1, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) po[i] = px[i] >= 0.0f ? 1.0f : 0.0f;
    });
  }
  return make_result(std::move(out), {x}, [surrogate](Node& self) {
    Node& nx = parent(self, 0);
    bool fresh = false;
    float* pgx = detail::grad_buffer(nx, fresh);
    const float* pg = self.grad.data();
    const float* px = nx.value.data();
    const Surrogate s = surrogate;
    // One loop per kind so that each is a plain, vectorisable loop without a per-element switch.
    parallel_range(nx.value.numel(), 4, [&](std::int64_t i0, std::int64_t i1) {
      auto run = [&](auto&& d) {
        if (fresh)
          for (std::int64_t i = i0; i < i1; ++i) pgx[i] = pg[i] * d(px[i]);
        else
          for (std::int64_t i = i0; i < i1; ++i) pgx[i] += pg[i] * d(px[i]);
      };
      switch (s.kind) {
        case SurrogateKind::StraightThrough: {
          const float half = s.width == 0.0f ? INFINITY : 0.5f * s.width;
          run([half](float v) { return std::fabs(v) <= half ? 1.0f : 0.0f; });
          break;
        }
        case SurrogateKind::FastSigmoid:
          run([k = s.slope](float v) {
            const float d = k * std::fabs(v) + 1.0f;
            return 1.0f / (d * d);
          });
          break;
        case SurrogateKind::ArcTan:
          run([k = s.slope](float v) {
            const float u = std::numbers::pi_v<float> / 2.0f * k * v;
            return k / 2.0f / (1.0f + u * u);
          });
          break;
      }
    });
  });
}

}  // namespace hwnas::nn
