// Fused SSM ops (nn/ssm.hpp).
//
// selective_scan backward, per batch row and channel, with a_t = exp(delta_t A) and the state
// adjoint g_t = dL/dh_t (through y_t and h_{t+1}):
//   g_t = dy_t C_t + a_{t+1} g_{t+1}
//   dC_t += dy_t h_t,  dB_t += g_t delta_t u_t,  du_t = delta_t sum_n g_t B_t
//   ddelta_t = sum_n g_t (h_{t-1} a_t A + B_t u_t),  dA += g_t h_{t-1} a_t delta_t
// The states h_t are recomputed chunk by chunk from the states saved at chunk starts.  B and C
// are shared by the channels of a token, so their gradients are summed over channels: channels
// are split into a fixed number of groups (a function of the sizes only), each group sums into
// its own buffer, and the buffers are added in group order, so results are thread-count
// independent.
//
// s4d_kernel backward, per channel and mode with W = (e^z - 1) / A, Ct = C W, p_l = e^{z l},
// S = sum_l G_l p_l and T = sum_l G_l l p_l (G = dL/dK):
//   dL = 2 Re(S W dC + (Ct T + S C e^z / A) dz - S C (e^z - 1) / A^2 dA),  dz = A ddt + dt dA
// and a real parameter x entering as dX = dx (or i dx) takes 2 Re(P) (or -2 Im(P)).
#include "nn/ssm.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <complex>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/kernels.hpp"

namespace hwnas::nn {
using detail::parallel_range;
using detail::parent;

namespace {

void require_shape(const char* op, const char* what, const Var& v, const Shape& want) {
  if (!v.defined())
    throw std::invalid_argument(std::string(op) + ": " + what + " is undefined, expected " +
                                want.str());
  if (v.shape() != want)
    throw std::invalid_argument(std::string(op) + ": " + what + " has shape " + v.shape().str() +
                                ", expected " + want.str());
}

// Adds `g` into a node's gradient when it needs one.
void add_grad(Node& node, const Tensor& g) {
  if (node.requires_grad) accumulate_grad(node, g);
}

// exp(delta A_e) over the N modes of one channel with Eigen's vectorised exp.  The buffers are
// Eigen-aligned and the same size every call, so the split between vector and scalar lanes,
// and so every bit of the result, is the same in forward and in backward's recomputation.
class ModeDecay {
 public:
  explicit ModeDecay(int n) : arg_(n), out_(n) {}
  const float* operator()(float delta, const float* a_row) {
    arg_ = delta * Eigen::Map<const Eigen::ArrayXf>(a_row, arg_.size());
    out_ = arg_.exp();
    return out_.data();
  }

 private:
  Eigen::ArrayXf arg_, out_;
};

// Channel groups of the scan backward: enough items (batch x groups) to fill a pool of 16,
// never more groups than channels.  Depends on the sizes only.
int scan_groups(int batch, int channels) {
  return std::max(1, std::min(channels, (16 + batch - 1) / batch));
}

}  // namespace

Var selective_scan(const Var& u, const Var& delta, const Var& A, const Var& B, const Var& C) {
  constexpr const char* op = "selective_scan";
  if (!u.defined() || u.value().rank() != 3)
    throw std::invalid_argument(std::string(op) + ": u must be [batch, length, channels], got " +
                                (u.defined() ? u.shape().str() : std::string("undefined")));
  const int Bt = u.dim(0), L = u.dim(1), E = u.dim(2);
  if (!A.defined() || A.value().rank() != 2 || A.dim(0) != E)
    throw std::invalid_argument(std::string(op) + ": A must be [channels=" + std::to_string(E) +
                                ", state], got " +
                                (A.defined() ? A.shape().str() : std::string("undefined")));
  const int N = A.dim(1);
  require_shape(op, "delta", delta, u.shape());
  require_shape(op, "B", B, Shape{Bt, L, N});
  require_shape(op, "C", C, Shape{Bt, L, N});

  const int chunks = (L + kScanChunk - 1) / kScanChunk;
  const bool keep = grad_enabled() && (u.requires_grad() || delta.requires_grad() ||
                                       A.requires_grad() || B.requires_grad() || C.requires_grad());
  // State at the start of every chunk, [Bt, E, chunks, N] (only when backward will run).
  auto saved = std::make_shared<std::vector<float>>(
      keep ? static_cast<std::size_t>(Bt) * E * chunks * N : 0);

  Tensor y(u.shape());
  {
    const float *pu = u.value().data(), *pd = delta.value().data(), *pa = A.value().data(),
                *pb = B.value().data(), *pc = C.value().data();
    float* py = y.data();
    float* ps = saved->data();
    parallel_range(std::int64_t{Bt} * E, std::int64_t{L} * N * 6,
                   [&](std::int64_t i0, std::int64_t i1) {
                     std::vector<float> h(static_cast<std::size_t>(N));
                     ModeDecay decay(N);
                     for (std::int64_t i = i0; i < i1; ++i) {
                       const std::int64_t b = i / E, e = i % E;
                       std::fill(h.begin(), h.end(), 0.0f);
                       for (int t = 0; t < L; ++t) {
                         if (keep && t % kScanChunk == 0)
                           std::copy(h.begin(), h.end(), ps + (i * chunks + t / kScanChunk) * N);
                         const std::int64_t o = (b * L + t) * E + e;
                         const float d = pd[o], du = d * pu[o];
                         const float* bt = pb + (b * L + t) * N;
                         const float* ct = pc + (b * L + t) * N;
                         const float* a = decay(d, pa + e * N);
                         for (int n = 0; n < N; ++n) h[n] = a[n] * h[n] + du * bt[n];
                         float acc = 0.0f;
                         for (int n = 0; n < N; ++n) acc += ct[n] * h[n];
                         py[o] = acc;
                       }
                     }
                   });
  }

  return make_result(std::move(y), {u, delta, A, B, C}, [=](Node& self) {
    Node &nu = parent(self, 0), &nd = parent(self, 1), &na = parent(self, 2), &nb = parent(self, 3),
         &nc = parent(self, 4);
    const float *pu = nu.value.data(), *pd = nd.value.data(), *pa = na.value.data(),
                *pb = nb.value.data(), *pc = nc.value.data(), *pg = self.grad.data();
    const float* ps = saved->data();
    const int G = scan_groups(Bt, E);
    const std::int64_t bln = std::int64_t{Bt} * L * N;
    Tensor du(nu.value.shape()), dd(nd.value.shape());
    // Per-(row, channel) dA sums and per-group dB / dC sums.
    std::vector<double> da_rows(static_cast<std::size_t>(Bt) * E * N, 0.0);
    std::vector<float> db_groups(static_cast<std::size_t>(G) * bln, 0.0f);
    std::vector<float> dc_groups(static_cast<std::size_t>(G) * bln, 0.0f);
    float *pdu = du.data(), *pdd = dd.data();
    parallel_range(std::int64_t{Bt} * G, std::int64_t{L} * N * E / G * 24,
                   [&](std::int64_t i0, std::int64_t i1) {
                     std::vector<float> hs(static_cast<std::size_t>(kScanChunk + 1) * N);
                     std::vector<float> as(static_cast<std::size_t>(kScanChunk) * N);
                     std::vector<float> gnext(static_cast<std::size_t>(N)), gsum(gnext.size()),
                         gdec(gnext.size());
                     ModeDecay decay(N);
                     for (std::int64_t item = i0; item < i1; ++item) {
                       const std::int64_t b = item / G, grp = item % G;
                       float* dbg = db_groups.data() + grp * bln;
                       float* dcg = dc_groups.data() + grp * bln;
                       for (std::int64_t e = E * grp / G; e < E * (grp + 1) / G; ++e) {
                         const std::int64_t row = b * E + e;
                         const float* ae = pa + e * N;
                         double* dae = da_rows.data() + row * N;
                         std::fill(gnext.begin(), gnext.end(), 0.0f);
                         for (int c = chunks - 1; c >= 0; --c) {
                           const int t0 = c * kScanChunk, t1 = std::min(L, t0 + kScanChunk);
                           // Recompute h_{t0-1} .. h_{t1-1} into hs[0 .. t1-t0].
                           std::copy(ps + (row * chunks + c) * N, ps + (row * chunks + c + 1) * N,
                                     hs.begin());
                           for (int t = t0; t < t1; ++t) {
                             const std::int64_t o = (b * L + t) * E + e;
                             const float d = pd[o], dux = d * pu[o];
                             const float* bt = pb + (b * L + t) * N;
                             const float* hp = hs.data() + static_cast<std::size_t>(t - t0) * N;
                             float* hc = hs.data() + static_cast<std::size_t>(t - t0 + 1) * N;
                             float* at = as.data() + static_cast<std::size_t>(t - t0) * N;
                             std::copy_n(decay(d, ae), N, at);
                             for (int n = 0; n < N; ++n) hc[n] = at[n] * hp[n] + dux * bt[n];
                           }
                           for (int t = t1 - 1; t >= t0; --t) {
                             const std::int64_t o = (b * L + t) * E + e;
                             const std::int64_t tn = (b * L + t) * N;
                             const float gy = pg[o], d = pd[o], x = pu[o], dux = d * x;
                             const float* hp = hs.data() + static_cast<std::size_t>(t - t0) * N;
                             const float* hc = hp + N;
                             const float* at = as.data() + static_cast<std::size_t>(t - t0) * N;
                             // Elementwise part first (vectorises), then the two sums over
                             // modes in a fixed order.
                             for (int n = 0; n < N; ++n) {
                               const float gh = gy * pc[tn + n] + gnext[n];
                               dcg[tn + n] += gy * hc[n];
                               dbg[tn + n] += gh * dux;
                               gsum[n] = gh;
                               gdec[n] = gh * hp[n] * at[n];  // dL/d(delta A) for this mode
                               dae[n] += static_cast<double>(gdec[n]) * d;
                               gnext[n] = gh * at[n];
                             }
                             float g_du = 0.0f, g_d = 0.0f;
                             for (int n = 0; n < N; ++n) {
                               g_du += gsum[n] * pb[tn + n];
                               g_d += gdec[n] * ae[n];
                             }
                             pdu[o] = g_du * d;
                             pdd[o] = g_d + g_du * x;
                           }
                         }
                       }
                     }
                   });
    add_grad(nu, du);
    add_grad(nd, dd);
    if (na.requires_grad) {
      Tensor ga(na.value.shape());
      for (std::int64_t k = 0; k < std::int64_t{E} * N; ++k) {
        double s = 0.0;
        for (int b = 0; b < Bt; ++b) s += da_rows[static_cast<std::size_t>(b) * E * N + k];
        ga.data()[k] = static_cast<float>(s);
      }
      accumulate_grad(na, ga);
    }
    auto reduce_groups = [&](Node& node, const std::vector<float>& parts) {
      if (!node.requires_grad) return;
      Tensor g(node.value.shape());
      std::copy(parts.begin(), parts.begin() + bln, g.data());
      for (int grp = 1; grp < G; ++grp)
        for (std::int64_t k = 0; k < bln; ++k) g.data()[k] += parts[grp * bln + k];
      accumulate_grad(node, g);
    };
    reduce_groups(nb, db_groups);
    reduce_groups(nc, dc_groups);
  });
}

Var s4d_kernel(const Var& log_dt, const Var& log_a_real, const Var& a_imag, const Var& c,
               int length) {
  constexpr const char* op = "s4d_kernel";
  if (length < 1)
    throw std::invalid_argument(std::string(op) + ": length must be >= 1, got " +
                                std::to_string(length));
  if (!log_dt.defined() || log_dt.value().rank() != 1)
    throw std::invalid_argument(std::string(op) + ": log_dt must be [channels], got " +
                                (log_dt.defined() ? log_dt.shape().str() : "undefined"));
  const int H = log_dt.dim(0);
  if (!log_a_real.defined() || log_a_real.value().rank() != 2 || log_a_real.dim(0) != H)
    throw std::invalid_argument(
        std::string(op) + ": log_a_real must be [channels=" + std::to_string(H) + ", modes], got " +
        (log_a_real.defined() ? log_a_real.shape().str() : "undefined"));
  const int M = log_a_real.dim(1);
  require_shape(op, "a_imag", a_imag, Shape{H, M});
  require_shape(op, "c", c, Shape{H, M, 2});
  const int L = length;
  using cd = std::complex<double>;

  Tensor k(Shape{H, L});
  {
    const float *pdt = log_dt.value().data(), *pr = log_a_real.value().data(),
                *pi = a_imag.value().data(), *pc = c.value().data();
    float* pk = k.data();
    parallel_range(H, std::int64_t{M} * L * 8, [&](std::int64_t h0, std::int64_t h1) {
      std::vector<double> acc(static_cast<std::size_t>(L));
      for (std::int64_t h = h0; h < h1; ++h) {
        std::fill(acc.begin(), acc.end(), 0.0);
        const double dt = std::exp(static_cast<double>(pdt[h]));
        for (int m = 0; m < M; ++m) {
          const std::int64_t hm = h * M + m;
          const cd a(-std::exp(static_cast<double>(pr[hm])), pi[hm]);
          const cd ez = std::exp(dt * a);
          const cd ct = cd(pc[2 * hm], pc[2 * hm + 1]) * (ez - 1.0) / a;
          cd p(1.0, 0.0);
          for (int l = 0; l < L; ++l) {
            acc[static_cast<std::size_t>(l)] += 2.0 * (ct * p).real();
            p *= ez;
          }
        }
        for (int l = 0; l < L; ++l) pk[h * L + l] = static_cast<float>(acc[l]);
      }
    });
  }

  return make_result(std::move(k), {log_dt, log_a_real, a_imag, c}, [=](Node& self) {
    Node &ndt = parent(self, 0), &nr = parent(self, 1), &ni = parent(self, 2),
         &nc = parent(self, 3);
    const float *pdt = ndt.value.data(), *pr = nr.value.data(), *pi = ni.value.data(),
                *pc = nc.value.data(), *pg = self.grad.data();
    Tensor gdt(ndt.value.shape()), gr(nr.value.shape()), gi(ni.value.shape()), gc(nc.value.shape());
    float *qdt = gdt.data(), *qr = gr.data(), *qi = gi.data(), *qc = gc.data();
    parallel_range(H, std::int64_t{M} * L * 12, [&](std::int64_t h0, std::int64_t h1) {
      for (std::int64_t h = h0; h < h1; ++h) {
        const double dt = std::exp(static_cast<double>(pdt[h]));
        double g_dt = 0.0;
        for (int m = 0; m < M; ++m) {
          const std::int64_t hm = h * M + m;
          const cd a(-std::exp(static_cast<double>(pr[hm])), pi[hm]);
          const cd ez = std::exp(dt * a);
          const cd cc(pc[2 * hm], pc[2 * hm + 1]);
          const cd w = (ez - 1.0) / a;
          cd p(1.0, 0.0), s(0.0, 0.0), tsum(0.0, 0.0);
          for (int l = 0; l < L; ++l) {
            const double g = pg[h * L + l];
            s += g * p;
            tsum += (g * l) * p;
            p *= ez;
          }
          const cd sw = s * w;
          qc[2 * hm] = static_cast<float>(2.0 * sw.real());
          qc[2 * hm + 1] = static_cast<float>(-2.0 * sw.imag());
          const cd pz = cc * w * tsum + s * cc * ez / a;
          const cd pa = pz * dt - s * cc * (ez - 1.0) / (a * a);
          g_dt += 2.0 * (pz * a).real();
          qr[hm] = static_cast<float>(2.0 * pa.real() * a.real());  // dA_re/dlog_a_real = A_re
          qi[hm] = static_cast<float>(-2.0 * pa.imag());
        }
        qdt[h] = static_cast<float>(g_dt * dt);
      }
    });
    add_grad(ndt, gdt);
    add_grad(nr, gr);
    add_grad(ni, gi);
    add_grad(nc, gc);
  });
}

}  // namespace hwnas::nn
