// S4D layer and Mamba mixer (nn/ssm_layers.hpp).  Initialisations follow the reference code:
// state-spaces/s4 models/s4/s4d.py and models/s4/s4.py (S4D-Lin / S4D-Inv), and
// state-spaces/mamba modules/mamba_simple.py (dt bias, dt_proj weight, S4D-Real A_log, D = 1).
#include "nn/ssm_layers.hpp"

#include <cmath>
#include <complex>
#include <numbers>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"
#include "nn/ssm.hpp"

namespace hwnas::nn {

namespace {

[[noreturn]] void bad(const char* who, const std::string& field, const std::string& what) {
  throw std::invalid_argument(std::string(who) + ": " + field + " " + what);
}

void check_dt(const char* who, float dt_min, float dt_max) {
  if (!(dt_min > 0.0f) || !std::isfinite(dt_min))
    bad(who, "dt_min", "must be a finite value > 0, got " + std::to_string(dt_min));
  if (!(dt_max >= dt_min) || !std::isfinite(dt_max))
    bad(who, "dt_max",
        "must be finite and >= dt_min (" + std::to_string(dt_min) + "), got " +
            std::to_string(dt_max));
}

// Step sizes log-uniform in [dt_min, dt_max].
float draw_log_dt(float dt_min, float dt_max, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u01(0.0f, 1.0f);
  const float lo = std::log(dt_min), hi = std::log(dt_max);
  return lo + u01(rng) * (hi - lo);
}

}  // namespace

void validate(const S4dOptions& o) {
  if (o.channels < 1) bad("s4d", "channels", "must be >= 1, got " + std::to_string(o.channels));
  if (o.state < 2 || o.state % 2 != 0)
    bad("s4d", "state", "must be an even number >= 2, got " + std::to_string(o.state));
  check_dt("s4d", o.dt_min, o.dt_max);
}

S4dLayer::S4dLayer(const S4dOptions& o, std::mt19937_64& rng) : options(o) {
  validate(o);
  const int H = o.channels, M = o.state / 2;
  Tensor tdt(Shape{H}), tar(Shape{H, M}), tai(Shape{H, M}), tc(Shape{H, M, 2}), td(Shape{H});
  for (int h = 0; h < H; ++h) tdt.data()[h] = draw_log_dt(o.dt_min, o.dt_max, rng);
  const double pi = std::numbers::pi, n_full = o.state;
  for (int h = 0; h < H; ++h)
    for (int m = 0; m < M; ++m) {
      tar.data()[h * M + m] = std::log(0.5f);
      tai.data()[h * M + m] = static_cast<float>(
          o.init == S4dInit::Lin ? pi * m : n_full / pi * (n_full / (2.0 * m + 1.0) - 1.0));
    }
  // C ~ complex standard normal (variance 1: each part has variance 1/2), D ~ N(0, 1).
  std::normal_distribution<float> half(0.0f, std::sqrt(0.5f)), unit(0.0f, 1.0f);
  for (std::int64_t i = 0; i < tc.numel(); ++i) tc.data()[i] = half(rng);
  for (int h = 0; h < H; ++h) td.data()[h] = unit(rng);
  log_dt = parameter(std::move(tdt));
  log_a_real = parameter(std::move(tar));
  a_imag = parameter(std::move(tai));
  c = parameter(std::move(tc));
  d = parameter(std::move(td));
}

Var S4dLayer::kernel(int length) const { return s4d_kernel(log_dt, log_a_real, a_imag, c, length); }

Var S4dLayer::forward(const Var& u) {
  if (u.value().rank() != 3 || u.dim(2) != options.channels)
    throw std::invalid_argument("s4d: input must be [batch, length, " +
                                std::to_string(options.channels) + "], got " + u.shape().str());
  // y = K * u, the causal convolution (as Toeplitz GEMMs or by FFT, whichever is faster at this
  // length), plus the D skip.
  const Var y = causal_long_conv(u, transpose(kernel(u.dim(1)), 0, 1));
  return add(y, mul(u, d));
}

Tensor S4dLayer::forward_recurrent(const Tensor& u) const {
  if (u.rank() != 3 || u.dim(2) != options.channels)
    throw std::invalid_argument("s4d: input must be [batch, length, " +
                                std::to_string(options.channels) + "], got " + u.shape().str());
  using cd = std::complex<double>;
  const int Bt = u.dim(0), L = u.dim(1), H = options.channels, M = options.state / 2;
  // Discretised diagonal system per channel and mode: decay exp(dt A) and input gain W.
  std::vector<cd> decay(static_cast<std::size_t>(H) * M), gain(decay.size()), cm(decay.size());
  for (int h = 0; h < H; ++h) {
    const double dt = std::exp(static_cast<double>(log_dt.value().data()[h]));
    for (int m = 0; m < M; ++m) {
      const std::size_t k = static_cast<std::size_t>(h) * M + m;
      const cd a(-std::exp(static_cast<double>(log_a_real.value().data()[k])),
                 a_imag.value().data()[k]);
      decay[k] = std::exp(dt * a);
      gain[k] = (decay[k] - 1.0) / a;
      cm[k] = cd(c.value().data()[2 * k], c.value().data()[2 * k + 1]);
    }
  }
  Tensor y(u.shape());
  std::vector<cd> state(decay.size());
  for (int b = 0; b < Bt; ++b) {
    std::fill(state.begin(), state.end(), cd(0.0, 0.0));
    for (int t = 0; t < L; ++t)
      for (int h = 0; h < H; ++h) {
        const std::int64_t o = (static_cast<std::int64_t>(b) * L + t) * H + h;
        const double x = u.data()[o];
        double acc = d.value().data()[h] * x;
        for (int m = 0; m < M; ++m) {
          const std::size_t k = static_cast<std::size_t>(h) * M + m;
          state[k] = decay[k] * state[k] + gain[k] * x;
          acc += 2.0 * (cm[k] * state[k]).real();
        }
        y.data()[o] = static_cast<float>(acc);
      }
  }
  return y;
}

void S4dLayer::append_named_parameters(const std::string& prefix,
                                       std::vector<NamedParameter>& out) {
  out.push_back({prefix + "log_dt", log_dt});
  out.push_back({prefix + "log_a_real", log_a_real});
  out.push_back({prefix + "a_imag", a_imag});
  out.push_back({prefix + "c", c});
  out.push_back({prefix + "d", d});
}

void validate(const MambaOptions& o) {
  if (o.d_model < 1) bad("mamba", "d_model", "must be >= 1, got " + std::to_string(o.d_model));
  if (o.d_state < 1) bad("mamba", "d_state", "must be >= 1, got " + std::to_string(o.d_state));
  if (o.expand < 1) bad("mamba", "expand", "must be >= 1, got " + std::to_string(o.expand));
  if (o.d_conv < 1) bad("mamba", "d_conv", "must be >= 1, got " + std::to_string(o.d_conv));
  if (o.dt_rank < 0)
    bad("mamba", "dt_rank", "must be >= 0 (0 = auto), got " + std::to_string(o.dt_rank));
  check_dt("mamba", o.dt_min, o.dt_max);
}

namespace {
const MambaOptions& checked(const MambaOptions& o) {
  validate(o);
  return o;
}
}  // namespace

MambaMixer::MambaMixer(const MambaOptions& o, std::mt19937_64& rng)
    : options(checked(o)),
      in_proj(o.d_model, 2 * o.inner(), false, rng),
      x_proj(o.inner(), o.rank() + 2 * o.d_state, false, rng),
      dt_proj(o.rank(), o.inner(), true, rng),
      out_proj(o.inner(), o.d_model, false, rng) {
  const int E = o.inner(), N = o.d_state, R = o.rank(), K = o.d_conv;
  // dt_proj weight U(+-R^-1/2) keeps delta's variance at initialisation; its bias is the
  // inverse softplus of step sizes drawn log-uniform in [dt_min, dt_max] (floored at 1e-4).
  std::uniform_real_distribution<float> wdist(-1.0f / std::sqrt(static_cast<float>(R)),
                                              1.0f / std::sqrt(static_cast<float>(R)));
  for (std::int64_t i = 0; i < dt_proj.weight.value().numel(); ++i)
    dt_proj.weight.value().data()[i] = wdist(rng);
  for (int e = 0; e < E; ++e) {
    const float dt = std::max(1e-4f, std::exp(draw_log_dt(o.dt_min, o.dt_max, rng)));
    dt_proj.bias.value().data()[e] = dt + std::log(-std::expm1(-dt));
  }
  // Depthwise conv as torch's default: U(+-1/sqrt(fan_in)), fan_in = K.
  const float cb = 1.0f / std::sqrt(static_cast<float>(K));
  std::uniform_real_distribution<float> cdist(-cb, cb);
  Tensor cw(Shape{K, E}), cbias(Shape{E}), alog(Shape{E, N}), dskip(Shape{E}, 1.0f);
  for (std::int64_t i = 0; i < cw.numel(); ++i) cw.data()[i] = cdist(rng);
  for (int e = 0; e < E; ++e) cbias.data()[e] = cdist(rng);
  // S4D-Real: A = -(1, 2, ..., N) for every channel.
  for (int e = 0; e < E; ++e)
    for (int n = 0; n < N; ++n) alog.data()[e * N + n] = std::log(static_cast<float>(n + 1));
  conv_weight = parameter(std::move(cw));
  conv_bias = parameter(std::move(cbias));
  A_log = parameter(std::move(alog));
  D = parameter(std::move(dskip));
}

// One fused op (the composition of K shifted slices, broadcast muls and adds copied the input
// K times and reduced the weight's broadcast gradients over B x L).  Rows are vectorised over
// the channels; the backward works one sample per task, the weight and bias gradients summed
// over the samples in order afterwards, so results do not depend on the threads.
Var causal_depthwise_conv1d(const Var& x, const Var& w, const Var& b) {
  if (x.value().rank() != 3 || w.value().rank() != 2 || w.dim(1) != x.dim(2) || w.dim(0) < 1 ||
      (b.defined() && (b.value().rank() != 1 || b.dim(0) != x.dim(2))))
    throw std::invalid_argument(
        "causal_depthwise_conv1d: x must be [B, L, E], w [K >= 1, E] and b [E], got " +
        x.shape().str() + ", " + w.shape().str() +
        (b.defined() ? " and " + b.shape().str() : " and no bias"));
  const int Bt = x.dim(0), L = x.dim(1), E = x.dim(2), K = w.dim(0);
  const std::int64_t row_cost = std::int64_t{L} * E * K;
  Tensor y(x.shape());
  {
    const float *px = x.value().data(), *pw = w.value().data(),
                *pb = b.defined() ? b.value().data() : nullptr;
    float* py = y.data();
    detail::parallel_range(Bt, row_cost, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t n = b0; n < b1; ++n)
        for (int t = 0; t < L; ++t) {
          float* __restrict out = py + (n * L + t) * E;
          if (pb)
            std::copy_n(pb, E, out);
          else
            std::fill_n(out, E, 0.0f);
          // Tap k reads x_{t - (K-1) + k}.
          for (int k = std::max(0, K - 1 - t); k < K; ++k) {
            const float* __restrict in = px + (n * L + t - (K - 1) + k) * E;
            const float* __restrict wk = pw + std::int64_t{k} * E;
            for (int e = 0; e < E; ++e) out[e] += wk[e] * in[e];
          }
        }
    });
  }
  std::vector<Var> parents{x, w};
  if (b.defined()) parents.push_back(b);
  return make_result(std::move(y), std::move(parents), [Bt, L, E, K, row_cost](Node& self) {
    Node &nx = detail::parent(self, 0), &nw = detail::parent(self, 1);
    Node* nb = self.parents.size() > 2 ? &detail::parent(self, 2) : nullptr;
    const bool want_b = nb && nb->requires_grad, want_w = nw.requires_grad || want_b;
    const float *dy = self.grad.data(), *px = nx.value.data(), *pw = nw.value.data();
    Tensor dx = nx.requires_grad ? Tensor(nx.value.shape(), 0.0f) : Tensor();
    // Per sample: K rows of dw, then db.
    std::vector<float> part(want_w ? static_cast<std::size_t>(Bt) * (K + 1) * E : 0, 0.0f);
    detail::parallel_range(Bt, 2 * row_cost, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t n = b0; n < b1; ++n) {
        float* pd = want_w ? part.data() + n * (K + 1) * E : nullptr;
        for (int t = 0; t < L; ++t) {
          const float* __restrict g = dy + (n * L + t) * E;
          if (pd)
            for (int e = 0; e < E; ++e) pd[std::int64_t{K} * E + e] += g[e];
          for (int k = std::max(0, K - 1 - t); k < K; ++k) {
            const std::int64_t src = (n * L + t - (K - 1) + k) * E;
            if (pd) {
              float* __restrict dwk = pd + std::int64_t{k} * E;
              const float* __restrict in = px + src;
              for (int e = 0; e < E; ++e) dwk[e] += g[e] * in[e];
            }
            if (nx.requires_grad) {
              float* __restrict dxi = dx.data() + src;
              const float* __restrict wk = pw + std::int64_t{k} * E;
              for (int e = 0; e < E; ++e) dxi[e] += wk[e] * g[e];
            }
          }
        }
      }
    });
    if (nx.requires_grad) detail::accumulate_owned(nx, std::move(dx));
    if (!want_w) return;
    Tensor dw(nw.value.shape(), 0.0f), db(Shape{E}, 0.0f);
    for (int n = 0; n < Bt; ++n) {
      const float* pd = part.data() + std::int64_t{n} * (K + 1) * E;
      for (std::int64_t i = 0; i < std::int64_t{K} * E; ++i) dw.data()[i] += pd[i];
      for (int e = 0; e < E; ++e) db.data()[e] += pd[std::int64_t{K} * E + e];
    }
    if (nw.requires_grad) detail::accumulate_owned(nw, std::move(dw));
    if (want_b) detail::accumulate_owned(*nb, std::move(db));
  });
}

Var MambaMixer::forward(const Var& u) {
  const MambaOptions& o = options;
  if (u.value().rank() != 3 || u.dim(2) != o.d_model)
    throw std::invalid_argument("mamba: input must be [batch, length, " +
                                std::to_string(o.d_model) + "], got " + u.shape().str());
  const int E = o.inner(), N = o.d_state, R = o.rank();
  const auto xz = split(in_proj.forward(u), {E, E}, 2);
  const Var x = silu(causal_depthwise_conv1d(xz[0], conv_weight, conv_bias));
  const auto dbc = split(x_proj.forward(x), {R, N, N}, 2);
  const Var delta = softplus(dt_proj.forward(dbc[0]));
  const Var A = scale(exp(A_log), -1.0f);
  const Var y = add(selective_scan(x, delta, A, dbc[1], dbc[2]), mul(x, D));
  return out_proj.forward(mul(y, silu(xz[1])));
}

void MambaMixer::append_named_parameters(const std::string& prefix,
                                         std::vector<NamedParameter>& out) {
  in_proj.append_named_parameters(prefix + "in_proj.", out);
  out.push_back({prefix + "conv1d.weight", conv_weight});
  out.push_back({prefix + "conv1d.bias", conv_bias});
  x_proj.append_named_parameters(prefix + "x_proj.", out);
  dt_proj.append_named_parameters(prefix + "dt_proj.", out);
  out.push_back({prefix + "A_log", A_log});
  out.push_back({prefix + "D", D});
  out_proj.append_named_parameters(prefix + "out_proj.", out);
}

}  // namespace hwnas::nn
