// Fused LIF loop (nn/lif.hpp): forward keeps the pre-reset membrane m_t and, with refractory
// steps, the active mask a_t; backward replays the steps in reverse per batch row.
#include "nn/lif.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/kernels.hpp"

namespace hwnas::nn {
using detail::parallel_range;
using detail::parent;

void validate(const LifOptions& o) {
  if (o.refractory_steps < 0)
    throw std::invalid_argument("lif: refractory_steps must be >= 0, got " +
                                std::to_string(o.refractory_steps));
  validate(o.surrogate);
}

namespace {

float scalar_of(const Var& v, const char* what) {
  if (!v.defined() || v.value().numel() != 1)
    throw std::invalid_argument(std::string("lif: ") + what + " must be a 1-element tensor, got " +
                                (v.defined() ? v.value().shape().str() : std::string("undefined")));
  return v.value().data()[0];
}

// Membrane after reset, from the pre-reset value and the spike.
inline float after_reset(LifReset reset, float m, float s, float threshold) {
  return reset == LifReset::Subtract ? m - threshold * s : m * (1.0f - s);
}

}  // namespace

Var lif(const Var& current, const Var& beta, const Var& threshold, const LifOptions& options) {
  validate(options);
  if (current.value().rank() != 3)
    throw std::invalid_argument("lif: current must be [B, T, N], got " +
                                current.value().shape().str());
  const float b = scalar_of(beta, "beta");
  const float th = scalar_of(threshold, "threshold");
  if (!(b >= 0.0f && b <= 1.0f))
    throw std::invalid_argument("lif: beta (membrane decay) must be in [0, 1], got " +
                                std::to_string(b));
  if (!(th > 0.0f) || !std::isfinite(th))
    throw std::invalid_argument("lif: threshold must be a finite value > 0, got " +
                                std::to_string(th));
  const int B = current.dim(0), T = current.dim(1), N = current.dim(2);
  const std::int64_t per_row = static_cast<std::int64_t>(T) * N;
  const LifReset reset = options.reset;
  const int refractory = options.refractory_steps;

  Tensor spikes(current.shape());
  auto mem = std::make_shared<Tensor>(current.shape());  // m_t, pre-reset
  // Active mask only exists with refractory steps (else a_t = 1 everywhere).
  auto active = std::make_shared<std::vector<std::uint8_t>>(
      refractory > 0 ? static_cast<std::size_t>(B) * per_row : 0);
  {
    const float* pi = current.value().data();
    float* ps = spikes.data();
    float* pm = mem->data();
    std::uint8_t* pa = active->data();
    parallel_range(B, per_row * 4, [&](std::int64_t r0, std::int64_t r1) {
      std::vector<float> v(N);
      std::vector<int> wait(refractory > 0 ? N : 0);
      for (std::int64_t r = r0; r < r1; ++r) {
        std::fill(v.begin(), v.end(), 0.0f);
        std::fill(wait.begin(), wait.end(), 0);
        for (int t = 0; t < T; ++t) {
          const std::int64_t o = r * per_row + static_cast<std::int64_t>(t) * N;
          if (refractory == 0) {
            for (int n = 0; n < N; ++n) {
              const float m = b * v[n] + pi[o + n];
              const float s = m - th >= 0.0f ? 1.0f : 0.0f;
              pm[o + n] = m;
              ps[o + n] = s;
              v[n] = after_reset(reset, m, s, th);
            }
          } else {
            for (int n = 0; n < N; ++n) {
              const bool on = wait[n] == 0;
              const float m = on ? b * v[n] + pi[o + n] : b * v[n];
              const float s = on && m - th >= 0.0f ? 1.0f : 0.0f;
              pm[o + n] = m;
              ps[o + n] = s;
              pa[o + n] = on ? 1 : 0;
              v[n] = after_reset(reset, m, s, th);
              wait[n] = s > 0.0f ? refractory : (on ? 0 : wait[n] - 1);
            }
          }
        }
      }
    });
  }

  const Surrogate sur = options.surrogate;
  return make_result(std::move(spikes), {current, beta, threshold}, [=](Node& self) {
    Node& ni = parent(self, 0);
    Node& nb = parent(self, 1);
    Node& nt = parent(self, 2);
    const float* pg = self.grad.data();
    const float* ps = self.value.data();
    const float* pm = mem->data();
    const std::uint8_t* pa = active->empty() ? nullptr : active->data();
    bool fresh = false;
    float* pdi = ni.requires_grad ? detail::grad_buffer(ni, fresh) : nullptr;
    // Per-row partial sums of the scalar gradients, combined in row order (thread-independent).
    std::vector<double> dbeta(B, 0.0), dth(B, 0.0);
    parallel_range(B, per_row * 8, [&](std::int64_t r0, std::int64_t r1) {
      std::vector<float> dv(N);
      for (std::int64_t r = r0; r < r1; ++r) {
        std::fill(dv.begin(), dv.end(), 0.0f);  // dL/dv_T = 0: nothing reads the final membrane
        double acc_b = 0.0, acc_t = 0.0;
        for (int t = T - 1; t >= 0; --t) {
          const std::int64_t o = r * per_row + static_cast<std::int64_t>(t) * N;
          for (int n = 0; n < N; ++n) {
            const float m = pm[o + n], s = ps[o + n];
            const bool on = pa == nullptr || pa[o + n] != 0;
            const float sg = on ? surrogate_grad(sur, m - th) : 0.0f;
            float dm, ds_total;
            if (reset == LifReset::Subtract) {
              ds_total = pg[o + n] - th * dv[n];
              dm = dv[n] + ds_total * sg;
              acc_t += -s * dv[n] - ds_total * sg;
            } else {
              ds_total = pg[o + n] - m * dv[n];
              dm = dv[n] * (1.0f - s) + ds_total * sg;
              acc_t += -ds_total * sg;
            }
            if (pdi) {
              const float di = on ? dm : 0.0f;
              pdi[o + n] = fresh ? di : pdi[o + n] + di;
            }
            if (t > 0) {
              const std::int64_t p = o - N;
              acc_b += static_cast<double>(after_reset(reset, pm[p + n], ps[p + n], th)) * dm;
            }
            dv[n] = b * dm;
          }
        }
        dbeta[r] = acc_b;
        dth[r] = acc_t;
      }
    });
    auto add_scalar_grad = [](Node& node, const std::vector<double>& parts) {
      if (!node.requires_grad) return;
      double total = 0.0;
      for (double x : parts) total += x;
      Tensor g(node.value.shape());
      g.data()[0] = static_cast<float>(total);
      accumulate_grad(node, g);
    };
    add_scalar_grad(nb, dbeta);
    add_scalar_grad(nt, dth);
  });
}

Var encode_direct(const Var& x, int steps) {
  if (steps < 1)
    throw std::invalid_argument("encode_direct: steps must be >= 1, got " + std::to_string(steps));
  if (x.value().rank() < 2)
    throw std::invalid_argument("encode_direct: input must be [B, F...], got " +
                                x.value().shape().str());
  const Shape& s = x.shape();
  const int B = s[0];
  const int F = static_cast<int>(x.value().numel() / B);
  Tensor ones(Shape{steps, F});
  std::fill(ones.data(), ones.data() + ones.numel(), 1.0f);
  return mul(reshape(x, Shape{B, 1, F}), constant(std::move(ones)));
}

Var encode_rate(const Var& x, int steps, std::mt19937_64& rng) {
  if (steps < 1)
    throw std::invalid_argument("encode_rate: steps must be >= 1, got " + std::to_string(steps));
  if (x.value().rank() < 2)
    throw std::invalid_argument("encode_rate: input must be [B, F...], got " +
                                x.value().shape().str());
  const Shape& s = x.shape();
  const std::int64_t B = s[0], F = x.value().numel() / B;
  Tensor spikes(Shape{s[0], steps, static_cast<int>(F)});
  const float* px = x.value().data();
  float* po = spikes.data();
  // Drawn serially in [B, T, F] order: the spike train depends only on the seed.
  std::uniform_real_distribution<float> u01(0.0f, 1.0f);
  for (std::int64_t b = 0; b < B; ++b)
    for (int t = 0; t < steps; ++t)
      for (std::int64_t f = 0; f < F; ++f) {
        const float p = std::clamp(px[b * F + f], 0.0f, 1.0f);
        po[(b * steps + t) * F + f] = u01(rng) < p ? 1.0f : 0.0f;
      }
  return constant(std::move(spikes));
}

}  // namespace hwnas::nn
