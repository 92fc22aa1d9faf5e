// Flash-style attention (Dao et al. 2022, "FlashAttention: Fast and Memory-Efficient Exact
// Attention with IO-Awareness"): the same result as multi_head_attention /
// sliding_window_attention, computed in Br x Bc tiles with an online softmax.
//
// Forward, per (batch, head) pair and query tile of Br rows: running row maxima m, row sums l and
// an unnormalised output accumulator O~ visit the key tiles of Bc columns in order,
//   S = scale Q_t K_j^T,  m' = max(m, rowmax S),  P = exp(S - m'),
//   l = l e^{m - m'} + rowsum P,  O~ = O~ e^{m - m'} + P V_j,
// and finally O = O~ / l, lse = m + log l.  Only O and the per-row log-sum-exp are kept.
// Backward recomputes each tile's P = exp(S - lse) and applies
//   dV += P^T dO,  dP = dO V^T,  dS = P o (dP - D)  with D = rowsum(dO o O),
//   dQ += scale dS K,  dK += scale dS^T Q.
// So no buffer ever has more than Br x Bc scores: memory O(L d) instead of O(L^2), at the price
// of recomputing QK^T and the exponentials in backward.  Tiles wholly outside the causal or
// sliding-window mask are skipped.
//
// Determinism: parallel over (b, h) pairs; each pair writes only its own column slices, and its
// tiles run in a fixed order, so results do not depend on the thread count.
#include <cmath>
#include <limits>
#include <string>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
namespace {

using detail::parallel_range;
using Stride = Eigen::OuterStride<>;
using HeadMap = Eigen::Map<RowMatrix, 0, Stride>;
using ConstHeadMap = Eigen::Map<const RowMatrix, 0, Stride>;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Which keys query i sees: [lo(i), hi(i)).
struct Visibility {
  int lk = 0, window = 0;
  bool causal = false;
  int lo(int i) const { return window > 0 ? std::max(0, i - window + 1) : 0; }
  int hi(int i) const {
    if (causal) return std::min(lk, i + 1);
    return window > 0 ? std::min(lk, i + window) : lk;
  }
};

struct FlashGeom {
  int b, lq, lk, d, heads, dh, br, bc;
  float scale;
  Visibility vis;
  std::int64_t off(int bi, int l, int h) const {
    return static_cast<std::int64_t>(bi) * l * d + static_cast<std::int64_t>(h) * dh;
  }
};

FlashGeom check_flash(const Var& q, const Var& k, const Var& v, const FlashOptions& o) {
  const std::string name = "flash_attention";
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
  if (o.heads < 1 || q.dim(2) % o.heads != 0)
    throw std::invalid_argument(name + ": heads " + std::to_string(o.heads) +
                                " must be >= 1 and divide d_model " + std::to_string(q.dim(2)));
  if ((o.causal || o.window > 0) && q.dim(1) != k.dim(1))
    throw std::invalid_argument(
        name + ": causal or windowed attention needs equal query and key lengths" + shapes);
  if (k.dim(1) < 1) throw std::invalid_argument(name + ": empty key sequence" + shapes);
  if (o.window < 0)
    throw std::invalid_argument(name + ": window must be >= 0 (0 = full), got " +
                                std::to_string(o.window));
  if (o.block_q < 1 || o.block_k < 1)
    throw std::invalid_argument(name + ": block sizes must be >= 1, got block_q " +
                                std::to_string(o.block_q) + ", block_k " +
                                std::to_string(o.block_k));
  FlashGeom g{q.dim(0),           q.dim(1),  k.dim(1),  q.dim(2), o.heads,
              q.dim(2) / o.heads, o.block_q, o.block_k, 0.0f,     {}};
  g.scale = 1.0f / std::sqrt(static_cast<float>(g.dh));
  g.vis = Visibility{g.lk, o.window, o.causal};
  return g;
}

// Key tile range [first, end) that query rows [i0, i1) can see, aligned to Bc.
void key_tiles(const FlashGeom& g, int i0, int i1, int& first, int& end) {
  first = (g.vis.lo(i0) / g.bc) * g.bc;
  end = g.vis.hi(i1 - 1);
}

// True when some (row, key) of the tile is masked, so the tile needs an element-wise mask.
bool tile_masked(const FlashGeom& g, int i0, int i1, int j0, int j1) {
  return g.vis.lo(i1 - 1) > j0 || g.vis.hi(i0) < j1;
}

template <class M>
void apply_mask(const FlashGeom& g, M& s, int i0, int j0) {
  for (Eigen::Index r = 0; r < s.rows(); ++r) {
    const int i = i0 + static_cast<int>(r);
    const int a = std::clamp(g.vis.lo(i) - j0, 0, static_cast<int>(s.cols()));
    const int e = std::clamp(g.vis.hi(i) - j0, 0, static_cast<int>(s.cols()));
    s.row(r).head(a).setConstant(kNegInf);
    s.row(r).tail(s.cols() - e).setConstant(kNegInf);
  }
}

}  // namespace

Var flash_attention(const Var& q, const Var& k, const Var& v, const FlashOptions& opt) {
  const FlashGeom g = check_flash(q, k, v, opt);
  const std::int64_t pairs = static_cast<std::int64_t>(g.b) * g.heads;
  const bool keep = grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  Tensor out(Shape{g.b, g.lq, g.d});
  Tensor lse = keep ? Tensor(Shape{g.b, g.heads, g.lq}) : Tensor();
  const float* qd = q.value().data();
  const float* kd = k.value().data();
  const float* vd = v.value().data();
  float* od = out.data();
  float* ld = keep ? lse.data() : nullptr;
  const std::int64_t cost = 4LL * g.lq * g.lk * g.dh;
  parallel_range(pairs, cost, [&](std::int64_t p0, std::int64_t p1) {
    RowMatrix s(g.br, g.bc), acc(g.br, g.dh);
    Eigen::VectorXf m(g.br), l(g.br);
    for (std::int64_t p = p0; p < p1; ++p) {
      const int bi = static_cast<int>(p / g.heads), h = static_cast<int>(p % g.heads);
      ConstHeadMap Q(qd + g.off(bi, g.lq, h), g.lq, g.dh, Stride(g.d));
      ConstHeadMap K(kd + g.off(bi, g.lk, h), g.lk, g.dh, Stride(g.d));
      ConstHeadMap V(vd + g.off(bi, g.lk, h), g.lk, g.dh, Stride(g.d));
      HeadMap O(od + g.off(bi, g.lq, h), g.lq, g.dh, Stride(g.d));
      for (int i0 = 0; i0 < g.lq; i0 += g.br) {
        const int i1 = std::min(g.lq, i0 + g.br), T = i1 - i0;
        auto A = acc.topRows(T);
        A.setZero();
        m.head(T).setConstant(kNegInf);
        l.head(T).setZero();
        int jf, je;
        key_tiles(g, i0, i1, jf, je);
        for (int j0 = jf; j0 < je; j0 += g.bc) {
          const int j1 = std::min(g.lk, j0 + g.bc), R = j1 - j0;
          auto S = s.topLeftCorner(T, R);
          S.noalias() = g.scale * (Q.middleRows(i0, T) * K.middleRows(j0, R).transpose());
          if (tile_masked(g, i0, i1, j0, j1)) apply_mask(g, S, i0, j0);
          for (int r = 0; r < T; ++r) {
            const float mn = std::max(m[r], S.row(r).maxCoeff());
            if (mn == kNegInf) {  // no visible key in this tile yet
              S.row(r).setZero();
              continue;
            }
            S.row(r) = (S.row(r).array() - mn).exp().matrix();
            const float alpha = std::exp(m[r] - mn);  // 0 on the first visible tile
            l[r] = l[r] * alpha + S.row(r).sum();
            A.row(r) *= alpha;
            m[r] = mn;
          }
          A.noalias() += S * V.middleRows(j0, R);
        }
        for (int r = 0; r < T; ++r) {
          O.row(i0 + r) = A.row(r) / l[r];
          if (ld) ld[p * g.lq + i0 + r] = m[r] + std::log(l[r]);
        }
      }
    }
  });
  if (!keep) return make_result(std::move(out), {q, k, v}, nullptr);
  return make_result(std::move(out), {q, k, v}, [g, pairs, lse, cost](Node& self) {
    float* dq = self.parents[0]->requires_grad ? grad_of(*self.parents[0]).data() : nullptr;
    float* dk = self.parents[1]->requires_grad ? grad_of(*self.parents[1]).data() : nullptr;
    float* dv = self.parents[2]->requires_grad ? grad_of(*self.parents[2]).data() : nullptr;
    const float* qd = self.parents[0]->value.data();
    const float* kd = self.parents[1]->value.data();
    const float* vd = self.parents[2]->value.data();
    const float* od = self.value.data();
    const float* dod = self.grad.data();
    const float* ld = lse.data();
    parallel_range(pairs, 2 * cost, [&](std::int64_t p0, std::int64_t p1) {
      RowMatrix P(g.br, g.bc), dS(g.br, g.bc), dQacc(g.br, g.dh);
      Eigen::VectorXf D(g.lq);
      for (std::int64_t p = p0; p < p1; ++p) {
        const int bi = static_cast<int>(p / g.heads), h = static_cast<int>(p % g.heads);
        const std::int64_t oq = g.off(bi, g.lq, h), ok = g.off(bi, g.lk, h);
        ConstHeadMap Q(qd + oq, g.lq, g.dh, Stride(g.d));
        ConstHeadMap K(kd + ok, g.lk, g.dh, Stride(g.d));
        ConstHeadMap V(vd + ok, g.lk, g.dh, Stride(g.d));
        ConstHeadMap O(od + oq, g.lq, g.dh, Stride(g.d));
        ConstHeadMap dO(dod + oq, g.lq, g.dh, Stride(g.d));
        const float* lrow = ld + p * g.lq;
        for (int i = 0; i < g.lq; ++i) D[i] = dO.row(i).dot(O.row(i));
        for (int i0 = 0; i0 < g.lq; i0 += g.br) {
          const int i1 = std::min(g.lq, i0 + g.br), T = i1 - i0;
          auto dQa = dQacc.topRows(T);
          dQa.setZero();
          int jf, je;
          key_tiles(g, i0, i1, jf, je);
          for (int j0 = jf; j0 < je; j0 += g.bc) {
            const int j1 = std::min(g.lk, j0 + g.bc), R = j1 - j0;
            auto Pt = P.topLeftCorner(T, R);
            Pt.noalias() = g.scale * (Q.middleRows(i0, T) * K.middleRows(j0, R).transpose());
            if (tile_masked(g, i0, i1, j0, j1)) apply_mask(g, Pt, i0, j0);
            for (int r = 0; r < T; ++r)
              Pt.row(r) = (Pt.row(r).array() - lrow[i0 + r]).exp().matrix();
            auto dOt = dO.middleRows(i0, T);
            if (dv)
              HeadMap(dv + ok, g.lk, g.dh, Stride(g.d)).middleRows(j0, R).noalias() +=
                  Pt.transpose() * dOt;
            if (!dq && !dk) continue;
            auto dSt = dS.topLeftCorner(T, R);
            dSt.noalias() = dOt * V.middleRows(j0, R).transpose();
            for (int r = 0; r < T; ++r)
              dSt.row(r) = Pt.row(r).cwiseProduct((dSt.row(r).array() - D[i0 + r]).matrix());
            if (dq) dQa.noalias() += g.scale * (dSt * K.middleRows(j0, R));
            if (dk)
              HeadMap(dk + ok, g.lk, g.dh, Stride(g.d)).middleRows(j0, R).noalias() +=
                  g.scale * (dSt.transpose() * Q.middleRows(i0, T));
          }
          if (dq) HeadMap(dq + oq, g.lq, g.dh, Stride(g.d)).middleRows(i0, T) += dQa;
        }
      }
    });
  });
}

}  // namespace hwnas::nn
