// Scaled dot-product attention over pre-projected q, k, v of shape [B, L, d_model].
//
// Heads are column slices of d_model, read in place as strided views (no split or transpose
// copies) by each pair's products (pair_gemm: nn's GEMM kernels or Eigen, by size).  Work is
// parallel over the B x heads (b, h) pairs; each pair writes only its own column slice of the
// output and of dq, dk, dv, so tasks never overlap and results do not depend on the thread count
// (even when q, k and v are the same Var).
//
// Full attention keeps the softmax probabilities [B, H, Lq, Lk] for backward.  Sliding-window
// attention keeps only a band [B, H, L, S] (S = 2*window-1, or window if causal) and computes in
// query tiles of T rows against the R <= T + S - 1 keys they can see, so time and memory are
// O(L * window * d) and no L x L matrix ever exists.
//
// GCC 12 flags Eigen's AVX-512 GEMM packing (_mm512_undefined_ps in a system header) as
// maybe-uninitialized once inlined here; it is a known false positive, silenced for this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"

namespace hwnas::nn {
namespace {

using Stride = Eigen::OuterStride<>;
using HeadMap = Eigen::Map<RowMatrix, 0, Stride>;
using ConstHeadMap = Eigen::Map<const RowMatrix, 0, Stride>;

using detail::parallel_range;
using detail::scratch;

struct AttnGeom {
  int b, lq, lk, d, heads, dh;
  float scale;
  // Head h of batch element bi of a [B, L, d] tensor: an [L, dh] block with row stride d.
  std::int64_t offset(int bi, int l, int h) const {
    return static_cast<std::int64_t>(bi) * l * d + h * dh;
  }
};

AttnGeom check_attention(const char* op, const Var& q, const Var& k, const Var& v, int heads,
                         bool causal) {
  const std::string name(op);
  if (!q.defined() || !k.defined() || !v.defined())
    throw std::invalid_argument(name + ": q, k, v must be defined");
  const std::string shapes =
      " (q " + q.shape().str() + ", k " + k.shape().str() + ", v " + v.shape().str() + ")";
  if (q.shape().rank() != 3 || k.shape().rank() != 3 || v.shape().rank() != 3)
    throw std::invalid_argument(name + ": q, k, v must be [B, L, d_model]" + shapes);
  if (k.shape() != v.shape())
    throw std::invalid_argument(name + ": k and v shapes differ" + shapes);
  if (q.dim(0) != k.dim(0) || q.dim(2) != k.dim(2))
    throw std::invalid_argument(name + ": q and k must share batch and d_model" + shapes);
  if (heads < 1)
    throw std::invalid_argument(name + ": heads must be >= 1, got " + std::to_string(heads));
  if (q.dim(2) % heads != 0)
    throw std::invalid_argument(name + ": d_model " + std::to_string(q.dim(2)) +
                                " not divisible by heads " + std::to_string(heads) + shapes);
  if (causal && q.dim(1) != k.dim(1))
    throw std::invalid_argument(name + ": causal attention needs equal query and key lengths" +
                                shapes);
  if (k.dim(1) < 1) throw std::invalid_argument(name + ": empty key sequence" + shapes);
  AttnGeom g{q.dim(0), q.dim(1), k.dim(1), q.dim(2), heads, q.dim(2) / heads, 0.0f};
  g.scale = 1.0f / std::sqrt(static_cast<float>(g.dh));
  return g;
}

// In-place softmax of scale * row[0, n) (scale > 0: its maximum is scale * max(row)).
template <class Row>
void softmax_row(Row&& row, float scale = 1.0f) {
  const float m = row.maxCoeff();
  row = (scale * (row.array() - m)).exp().matrix();
  row /= row.sum();
}

// Softmax backward in place, row by row (no temporaries): d <- scale * p o (d - <p, d>), the
// gradient of the scores when the softmax read scale * scores.
template <class PM, class DM>
void softmax_backward_rows(const PM& p, DM& d, float scale = 1.0f) {
  for (Eigen::Index i = 0; i < p.rows(); ++i) {
    const float r = p.row(i).dot(d.row(i));
    d.row(i) = scale * p.row(i).cwiseProduct(d.row(i) - Eigen::RowVectorXf::Constant(d.cols(), r));
  }
}

// One (batch, head) pair's product, one thread (the callers run the pairs in parallel):
// C [m, n] (=, or += when accumulating) = A [m, k] B [k, n], each operand a strided view {data,
// row step, column step}.  Long sequences go through nn's GEMM kernels (nn/gemm.hpp: run-time
// AVX-512 / AVX2; 1.2x the whole step of a 1-head, L = 256, d = 64 encoder); short ones through
// Eigen's product, whose fixed cost is lower (5 % faster steps at L = 28, d_head 16).  The choice
// depends on the sizes only.
void pair_gemm(std::int64_t m, std::int64_t n, std::int64_t k, detail::StridedMatrix a,
               detail::StridedMatrix b, float* c, std::int64_t ldc, bool accumulate) {
  constexpr std::int64_t kMinKernelMacs = std::int64_t{1} << 16;
  if (m * n * k >= kMinKernelMacs)
    detail::sgemm(m, n, k, a, b, c, ldc, accumulate);
  else
    detail::sgemm_eigen(m, n, k, a, b, c, ldc, accumulate);
}

bool keeps_graph(const Var& q, const Var& k, const Var& v) {
  return grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
}

// Output-gradient slices of the three parents; null when a parent needs no gradient.  If two
// parents are the same node they share a buffer, which is fine: each (b, h) task updates its own
// column slice serially.
struct AttnGrads {
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
};
AttnGrads grads_of(Node& self) {
  AttnGrads g;
  if (self.parents[0]->requires_grad) g.dq = grad_of(*self.parents[0]).data();
  if (self.parents[1]->requires_grad) g.dk = grad_of(*self.parents[1]).data();
  if (self.parents[2]->requires_grad) g.dv = grad_of(*self.parents[2]).data();
  return g;
}

}  // namespace

Var multi_head_attention(const Var& q, const Var& k, const Var& v, int heads, bool causal) {
  const AttnGeom g = check_attention("multi_head_attention", q, k, v, heads, causal);
  const bool keep = keeps_graph(q, k, v);
  const std::int64_t LL = static_cast<std::int64_t>(g.lq) * g.lk;
  const std::int64_t pairs = static_cast<std::int64_t>(g.b) * g.heads;
  // Probabilities are kept for backward only when a graph is being recorded.
  Tensor probs = keep ? Tensor(Shape{g.b, g.heads, g.lq, g.lk}) : Tensor();
  Tensor out(Shape{g.b, g.lq, g.d});
  const float* qd = q.value().data();
  const float* kd = k.value().data();
  const float* vd = v.value().data();
  float* od = out.data();
  float* pd = keep ? probs.data() : nullptr;
  parallel_range(pairs, 4 * LL * g.dh, [&](std::int64_t lo, std::int64_t hi) {
    float* tmp = keep ? nullptr : scratch(static_cast<std::size_t>(LL), 0);
    for (std::int64_t p = lo; p < hi; ++p) {
      const int bi = static_cast<int>(p / g.heads), h = static_cast<int>(p % g.heads);
      const float* Q = qd + g.offset(bi, g.lq, h);
      const float* K = kd + g.offset(bi, g.lk, h);
      const float* V = vd + g.offset(bi, g.lk, h);
      MatrixMap P(keep ? pd + p * LL : tmp, g.lq, g.lk);
      pair_gemm(g.lq, g.lk, g.dh, {Q, g.d, 1}, {K, 1, g.d}, P.data(), g.lk, false);  // Q K^T
      for (int i = 0; i < g.lq; ++i) {
        const int n = causal ? i + 1 : g.lk;  // causal: keys j <= i
        softmax_row(P.row(i).head(n), g.scale);
        if (n < g.lk) P.row(i).tail(g.lk - n).setZero();
      }
      pair_gemm(g.lq, g.dh, g.lk, {P.data(), g.lk, 1}, {V, g.d, 1}, od + g.offset(bi, g.lq, h), g.d,
                false);  // O = P V
    }
  });
  return make_result(std::move(out), {q, k, v}, [g, LL, pairs, probs](Node& self) {
    const AttnGrads gr = grads_of(self);
    const float* qd = self.parents[0]->value.data();
    const float* kd = self.parents[1]->value.data();
    const float* vd = self.parents[2]->value.data();
    const float* dod = self.grad.data();
    const float* pd = probs.data();
    parallel_range(pairs, 8 * LL * g.dh, [&](std::int64_t lo, std::int64_t hi) {
      MatrixMap dS(scratch(static_cast<std::size_t>(LL), 0), g.lq, g.lk);
      for (std::int64_t p = lo; p < hi; ++p) {
        const int bi = static_cast<int>(p / g.heads), h = static_cast<int>(p % g.heads);
        const std::int64_t oq = g.offset(bi, g.lq, h), ok = g.offset(bi, g.lk, h);
        const float *Q = qd + oq, *K = kd + ok, *V = vd + ok, *dO = dod + oq;
        ConstMatrixMap P(pd + p * LL, g.lq, g.lk);
        if (gr.dv)  // dV += P^T dO
          pair_gemm(g.lk, g.dh, g.lq, {P.data(), 1, g.lk}, {dO, g.d, 1}, gr.dv + ok, g.d, true);
        if (!gr.dq && !gr.dk) continue;
        // dS = scale P o (dP - rowsum(P o dP)) with dP = dO V^T; masked entries have P = 0.
        pair_gemm(g.lq, g.lk, g.dh, {dO, g.d, 1}, {V, 1, g.d}, dS.data(), g.lk, false);
        softmax_backward_rows(P, dS, g.scale);
        if (gr.dq)  // dQ += dS K
          pair_gemm(g.lq, g.dh, g.lk, {dS.data(), g.lk, 1}, {K, g.d, 1}, gr.dq + oq, g.d, true);
        if (gr.dk)  // dK += dS^T Q
          pair_gemm(g.lk, g.dh, g.lq, {dS.data(), 1, g.lk}, {Q, g.d, 1}, gr.dk + ok, g.d, true);
      }
    });
  });
}

Var detail::fused_qkv_attention(const Var& qkv, int heads, bool causal) {
  const Shape& s = qkv.shape();
  if (!qkv.defined() || s.rank() != 3 || s[2] % 3 != 0 || heads < 1 || (s[2] / 3) % heads != 0 ||
      s[1] < 1)
    throw std::invalid_argument(
        "fused_qkv_attention: qkv must be [B, L, 3*d_model] with heads dividing d_model, got " +
        (qkv.defined() ? s.str() : std::string("undefined")));
  const int B = s[0], L = s[1], d = s[2] / 3, ld = s[2];
  const int dh = d / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  const bool keep = grad_enabled() && qkv.requires_grad();
  const std::int64_t LL = static_cast<std::int64_t>(L) * L;
  const std::int64_t pairs = static_cast<std::int64_t>(B) * heads;
  Tensor probs = keep ? Tensor(Shape{B, heads, L, L}) : Tensor();
  Tensor out(Shape{B, L, d});
  // Head h of batch element bi: q at column h*dh, k at d + h*dh, v at 2d + h*dh, row stride ld.
  auto in_off = [L, ld, dh](int bi, int h) {
    return static_cast<std::int64_t>(bi) * L * ld + h * dh;
  };
  auto out_off = [L, d, dh](int bi, int h) {
    return static_cast<std::int64_t>(bi) * L * d + h * dh;
  };
  const float* xd = qkv.value().data();
  float* od = out.data();
  float* pd = keep ? probs.data() : nullptr;
  parallel_range(pairs, 4 * LL * dh, [&](std::int64_t lo, std::int64_t hi) {
    float* tmp = keep ? nullptr : scratch(static_cast<std::size_t>(LL), 0);
    for (std::int64_t p = lo; p < hi; ++p) {
      const int bi = static_cast<int>(p / heads), h = static_cast<int>(p % heads);
      const float* Q = xd + in_off(bi, h);
      const float *K = Q + d, *V = Q + 2 * d;
      MatrixMap P(keep ? pd + p * LL : tmp, L, L);
      pair_gemm(L, L, dh, {Q, ld, 1}, {K, 1, ld}, P.data(), L, false);  // Q K^T
      for (int i = 0; i < L; ++i) {
        const int n = causal ? i + 1 : L;
        softmax_row(P.row(i).head(n), scale);
        if (n < L) P.row(i).tail(L - n).setZero();
      }
      pair_gemm(L, dh, L, {P.data(), L, 1}, {V, ld, 1}, od + out_off(bi, h), d, false);
    }
  });
  return make_result(
      std::move(out), {qkv},
      [B, L, d, ld, dh, heads, scale, LL, pairs, probs, in_off, out_off](Node& self) {
        Node& nx = *self.parents[0];
        bool fresh = false;
        // Each (b, h) task writes its own q/k/v column slices exactly once, covering the whole
        // gradient, so a fresh buffer is assigned directly and an existing one added to.
        float* dx = detail::grad_buffer(nx, fresh);
        const float* xd = nx.value.data();
        const float* dod = self.grad.data();
        const float* pd = probs.data();
        parallel_range(pairs, 8 * LL * dh, [&](std::int64_t lo, std::int64_t hi) {
          MatrixMap dS(scratch(static_cast<std::size_t>(LL), 0), L, L);
          for (std::int64_t p = lo; p < hi; ++p) {
            const int bi = static_cast<int>(p / heads), h = static_cast<int>(p % heads);
            const std::int64_t io = in_off(bi, h);
            const float *Q = xd + io, *K = Q + d, *V = Q + 2 * d, *dO = dod + out_off(bi, h);
            float *dQ = dx + io, *dK = dQ + d, *dV = dQ + 2 * d;
            ConstMatrixMap P(pd + p * LL, L, L);
            const bool add = !fresh;
            pair_gemm(L, dh, L, {P.data(), 1, L}, {dO, d, 1}, dV, ld, add);    // P^T dO
            pair_gemm(L, L, dh, {dO, d, 1}, {V, 1, ld}, dS.data(), L, false);  // dO V^T
            softmax_backward_rows(P, dS, scale);
            pair_gemm(L, dh, L, {dS.data(), L, 1}, {K, ld, 1}, dQ, ld, add);  // dS K
            pair_gemm(L, dh, L, {dS.data(), 1, L}, {Q, ld, 1}, dK, ld, add);  // dS^T Q
          }
        });
      });
}

namespace {

struct Band {
  int w;      // effective window (clamped to L)
  int slots;  // S: 2w-1, or w if causal
  int ahead;  // keys visible after the query: w-1, or 0 if causal
  int tile;   // queries per tile
  // Keys visible to query i: [lo(i), hi(i)); slot s of query i is key i - (w-1) + s.
  int lo(int i) const { return std::max(0, i - (w - 1)); }
  int hi(int i, int l) const { return std::min(l, i + ahead + 1); }
};

Band make_band(int l, int window, bool causal) {
  Band bd{};
  bd.w = std::min(window, l);
  bd.slots = causal ? bd.w : 2 * bd.w - 1;
  bd.ahead = causal ? 0 : bd.w - 1;
  // Tiles about as tall as the band is wide keep the dense tile (T x (T+S-1)) within a constant
  // factor of the band's own work, while giving the GEMMs enough rows; 8..64 bounds the extremes.
  bd.tile = std::min(l, std::clamp(bd.slots, 8, 64));
  return bd;
}

}  // namespace

Var sliding_window_attention(const Var& q, const Var& k, const Var& v, int heads, int window,
                             bool causal) {
  const AttnGeom g = check_attention("sliding_window_attention", q, k, v, heads, causal);
  if (q.shape() != k.shape())
    throw std::invalid_argument("sliding_window_attention: q and k must have the same shape (q " +
                                q.shape().str() + ", k " + k.shape().str() + ")");
  if (window < 1)
    throw std::invalid_argument("sliding_window_attention: window must be >= 1, got " +
                                std::to_string(window));
  const int L = g.lq;
  const Band bd = make_band(L, window, causal);
  const std::int64_t band_size = static_cast<std::int64_t>(L) * bd.slots;
  const std::int64_t pairs = static_cast<std::int64_t>(g.b) * g.heads;
  const std::int64_t tile_cap = static_cast<std::int64_t>(bd.tile) * (bd.tile + bd.slots - 1);
  const bool keep = keeps_graph(q, k, v);
  Tensor probs = keep ? Tensor(Shape{g.b, g.heads, L, bd.slots}) : Tensor();
  Tensor out(Shape{g.b, L, g.d});
  const float* qd = q.value().data();
  const float* kd = k.value().data();
  const float* vd = v.value().data();
  float* od = out.data();
  float* pd = keep ? probs.data() : nullptr;
  parallel_range(pairs, 4 * band_size * g.dh, [&](std::int64_t lo, std::int64_t hi) {
    float* tile_buf = scratch(static_cast<std::size_t>(tile_cap), 0);
    for (std::int64_t p = lo; p < hi; ++p) {
      const int bi = static_cast<int>(p / g.heads), h = static_cast<int>(p % g.heads);
      const std::int64_t off = g.offset(bi, L, h);
      ConstHeadMap Q(qd + off, L, g.dh, Stride(g.d));
      ConstHeadMap K(kd + off, L, g.dh, Stride(g.d));
      ConstHeadMap V(vd + off, L, g.dh, Stride(g.d));
      HeadMap O(od + off, L, g.dh, Stride(g.d));
      float* band = keep ? pd + p * band_size : nullptr;
      for (int i0 = 0; i0 < L; i0 += bd.tile) {
        const int i1 = std::min(L, i0 + bd.tile), T = i1 - i0;
        const int kl = bd.lo(i0), kr = bd.hi(i1 - 1, L), R = kr - kl;
        MatrixMap S(tile_buf, T, R);
        S.noalias() = g.scale * (Q.middleRows(i0, T) * K.middleRows(kl, R).transpose());
        for (int r = 0; r < T; ++r) {
          const int i = i0 + r, a = bd.lo(i) - kl, e = bd.hi(i, L) - kl;
          auto row = S.row(r);
          softmax_row(row.segment(a, e - a));
          row.head(a).setZero();
          row.tail(R - e).setZero();
          if (band) {
            // Slot s <-> key i-(w-1)+s; slots off either end of the sequence stay zero.
            float* brow = band + static_cast<std::int64_t>(i) * bd.slots;
            const int s0 = bd.lo(i) - (i - (bd.w - 1));
            std::fill(brow, brow + bd.slots, 0.0f);
            std::copy(row.data() + a, row.data() + e, brow + s0);
          }
        }
        O.middleRows(i0, T).noalias() = S * V.middleRows(kl, R);
      }
    }
  });
  return make_result(
      std::move(out), {q, k, v}, [g, bd, L, band_size, pairs, tile_cap, probs](Node& self) {
        const AttnGrads gr = grads_of(self);
        const float* qd = self.parents[0]->value.data();
        const float* kd = self.parents[1]->value.data();
        const float* vd = self.parents[2]->value.data();
        const float* dod = self.grad.data();
        const float* pd = probs.data();
        parallel_range(pairs, 8 * band_size * g.dh, [&](std::int64_t lo, std::int64_t hi) {
          float* pbuf = scratch(static_cast<std::size_t>(tile_cap), 0);
          float* sbuf = scratch(static_cast<std::size_t>(tile_cap), 1);
          for (std::int64_t p = lo; p < hi; ++p) {
            const int bi = static_cast<int>(p / g.heads), h = static_cast<int>(p % g.heads);
            const std::int64_t off = g.offset(bi, L, h);
            ConstHeadMap Q(qd + off, L, g.dh, Stride(g.d));
            ConstHeadMap K(kd + off, L, g.dh, Stride(g.d));
            ConstHeadMap V(vd + off, L, g.dh, Stride(g.d));
            ConstHeadMap dO(dod + off, L, g.dh, Stride(g.d));
            const float* band = pd + p * band_size;
            // Tiles run in order within the task, so overlapping dk/dv key ranges accumulate
            // deterministically.
            for (int i0 = 0; i0 < L; i0 += bd.tile) {
              const int i1 = std::min(L, i0 + bd.tile), T = i1 - i0;
              const int kl = bd.lo(i0), kr = bd.hi(i1 - 1, L), R = kr - kl;
              MatrixMap P(pbuf, T, R);
              P.setZero();
              for (int r = 0; r < T; ++r) {
                const int i = i0 + r, a = bd.lo(i), e = bd.hi(i, L);
                const float* brow =
                    band + static_cast<std::int64_t>(i) * bd.slots + (a - (i - (bd.w - 1)));
                std::copy(brow, brow + (e - a), P.row(r).data() + (a - kl));
              }
              auto dOt = dO.middleRows(i0, T);
              if (gr.dv)
                HeadMap(gr.dv + off, L, g.dh, Stride(g.d)).middleRows(kl, R).noalias() +=
                    P.transpose() * dOt;
              if (!gr.dq && !gr.dk) continue;
              MatrixMap dS(sbuf, T, R);
              dS.noalias() = dOt * V.middleRows(kl, R).transpose();
              softmax_backward_rows(P, dS);
              if (gr.dq)
                HeadMap(gr.dq + off, L, g.dh, Stride(g.d)).middleRows(i0, T).noalias() +=
                    g.scale * (dS * K.middleRows(kl, R));
              if (gr.dk)
                HeadMap(gr.dk + off, L, g.dh, Stride(g.d)).middleRows(kl, R).noalias() +=
                    g.scale * (dS.transpose() * Q.middleRows(i0, T));
            }
          }
        });
      });
}

}  // namespace hwnas::nn
