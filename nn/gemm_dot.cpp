// Products whose two operands both run along K: C[i][j] = sum_k a_i[k] * b_j[k], computed as
// register-blocked dot products straight from the operands, with no packing.  A batch-minor
// convolution's weight gradient is such a product (rows of dY against the taps' views, both
// contiguous along (column, sample)); as a packed GEMM its B operand (every tap view, the
// im2col volume) had to be transposed into panels first, for only Cout rows of use each.
//
// Same numbers on every CPU: each C element sums its terms in 16 interleaved partial sums (term k
// of a segment into lane k % 16, one fused multiply-add each, segments and k ascending; lanes
// past a segment's end add 0 * 0), then adds the lanes in one fixed tree:
//   s8[l] = v[l] + v[l + 8], s4[l] = s8[l] + s8[l + 4], s2[l] = s4[l] + s4[l + 2], s2[0] + s2[1].
// The AVX-512 kernel holds a lane set in one register, AVX2 in two, the fallback in an array.
// (NaNs aside: where two NaNs meet, which one's sign survives depends on the instructions'
// operand order, so a NaN result's sign may differ between families; finite values, infinities
// and signed zeros do not.)
// GCC 12 flags AVX-512 intrinsics whose masked builtins take _mm512_undefined_ps() (here the
// lane shuffle of the reduction) as reading an uninitialised value once inlined: a known false
// positive in a system header, silenced for this file as in ops_conv.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <cmath>

#include "nn/gemm.hpp"
#include "nn/x86_targets.hpp"

namespace hwnas::nn::detail {
namespace {

using Index = std::int64_t;

struct DotProblem {
  Index n, segments, len;
  const float* a;
  Index lda, a_step;
  const float* const* b_rows;
  float* c;
  Index ldc;
  bool accumulate;
  const float* a_at(Index i, Index s) const { return a + i * lda + s * a_step; }
  const float* b_at(Index j, Index s) const { return b_rows[s * n + j]; }
  void store(Index i, Index j, float r) const {
    float& out = c[i * ldc + j];
    out = accumulate ? out + r : r;
  }
};

float reduce_lanes(const float* v) {
  float s8[8], s4[4], s2[2];
  for (int l = 0; l < 8; ++l) s8[l] = v[l] + v[l + 8];
  for (int l = 0; l < 4; ++l) s4[l] = s8[l] + s8[l + 4];
  for (int l = 0; l < 2; ++l) s2[l] = s4[l] + s4[l + 2];
  return s2[0] + s2[1];
}

void dot_portable(const DotProblem& p, Index i0, Index i1, Index j0, Index j1) {
  for (Index i = i0; i < i1; ++i)
    for (Index j = j0; j < j1; ++j) {
      float v[16] = {};
      for (Index s = 0; s < p.segments; ++s) {
        const float *x = p.a_at(i, s), *y = p.b_at(j, s);
        for (Index k0 = 0; k0 < p.len; k0 += 16)
          for (int l = 0; l < 16; ++l) {
            const Index k = k0 + l;
            v[l] = std::fma(k < p.len ? x[k] : 0.0f, k < p.len ? y[k] : 0.0f, v[l]);
          }
      }
      p.store(i, j, reduce_lanes(v));
    }
}

#if defined(HWNAS_X86_TARGETS)

__attribute__((target("avx2"))) inline float reduce_halves(__m256 lo, __m256 hi) {
  const __m256 s8 = _mm256_add_ps(lo, hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

// An MT x NT tile of C, one register of 16 lanes per element.
template <int MT, int NT>
__attribute__((target("avx512f"))) void tile_avx512(const DotProblem& p, Index i0, Index j0) {
  __m512 v[MT][NT];
  for (int t = 0; t < MT; ++t)
    for (int u = 0; u < NT; ++u) v[t][u] = _mm512_setzero_ps();
  for (Index s = 0; s < p.segments; ++s) {
    const float* x[MT];
    const float* y[NT];
    for (int t = 0; t < MT; ++t) x[t] = p.a_at(i0 + t, s);
    for (int u = 0; u < NT; ++u) y[u] = p.b_at(j0 + u, s);
    Index k = 0;
    for (; k + 16 <= p.len; k += 16) {
      __m512 b[NT];
      for (int u = 0; u < NT; ++u) b[u] = _mm512_loadu_ps(y[u] + k);
      for (int t = 0; t < MT; ++t) {
        const __m512 a = _mm512_loadu_ps(x[t] + k);
        for (int u = 0; u < NT; ++u) v[t][u] = _mm512_fmadd_ps(a, b[u], v[t][u]);
      }
    }
    if (k < p.len) {
      const __mmask16 m = static_cast<__mmask16>((1u << (p.len - k)) - 1);
      __m512 b[NT];
      for (int u = 0; u < NT; ++u) b[u] = _mm512_maskz_loadu_ps(m, y[u] + k);
      for (int t = 0; t < MT; ++t) {
        const __m512 a = _mm512_maskz_loadu_ps(m, x[t] + k);
        for (int u = 0; u < NT; ++u) v[t][u] = _mm512_fmadd_ps(a, b[u], v[t][u]);
      }
    }
  }
  for (int t = 0; t < MT; ++t)
    for (int u = 0; u < NT; ++u) {
      const __m512 w = v[t][u];
      const __m256 lo = _mm512_castps512_ps256(w);
      // Lanes 8-15 brought down by a 128-bit-lane shuffle.
      const __m256 hi = _mm512_castps512_ps256(_mm512_shuffle_f32x4(w, w, 0xEE));
      p.store(i0 + t, j0 + u, reduce_halves(lo, hi));
    }
}

// The same with each element's 16 lanes in two 8-lane registers (lanes 0-7, 8-15).
template <int MT, int NT>
__attribute__((target("avx2,fma"))) void tile_avx2(const DotProblem& p, Index i0, Index j0) {
  __m256 lo[MT][NT], hi[MT][NT];
  for (int t = 0; t < MT; ++t)
    for (int u = 0; u < NT; ++u) lo[t][u] = hi[t][u] = _mm256_setzero_ps();
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (Index s = 0; s < p.segments; ++s) {
    const float* x[MT];
    const float* y[NT];
    for (int t = 0; t < MT; ++t) x[t] = p.a_at(i0 + t, s);
    for (int u = 0; u < NT; ++u) y[u] = p.b_at(j0 + u, s);
    for (Index k = 0; k < p.len; k += 16) {
      const Index rest = p.len - k;
      if (rest >= 16) {
        for (int u = 0; u < NT; ++u) {
          const __m256 b0 = _mm256_loadu_ps(y[u] + k), b1 = _mm256_loadu_ps(y[u] + k + 8);
          for (int t = 0; t < MT; ++t) {
            lo[t][u] = _mm256_fmadd_ps(_mm256_loadu_ps(x[t] + k), b0, lo[t][u]);
            hi[t][u] = _mm256_fmadd_ps(_mm256_loadu_ps(x[t] + k + 8), b1, hi[t][u]);
          }
        }
      } else {
        const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rest)), lane);
        const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rest) - 8), lane);
        for (int u = 0; u < NT; ++u) {
          const __m256 b0 = _mm256_maskload_ps(y[u] + k, m0),
                       b1 = _mm256_maskload_ps(y[u] + k + 8, m1);
          for (int t = 0; t < MT; ++t) {
            lo[t][u] = _mm256_fmadd_ps(_mm256_maskload_ps(x[t] + k, m0), b0, lo[t][u]);
            hi[t][u] = _mm256_fmadd_ps(_mm256_maskload_ps(x[t] + k + 8, m1), b1, hi[t][u]);
          }
        }
      }
    }
  }
  for (int t = 0; t < MT; ++t)
    for (int u = 0; u < NT; ++u) p.store(i0 + t, j0 + u, reduce_halves(lo[t][u], hi[t][u]));
}

// Covers C[0, m) x [0, n) with MT x NT tiles, the edges with MT x 1, 1 x NT and 1 x 1 ones.
template <int MT, int NT, void (*Full)(const DotProblem&, Index, Index),
          void (*Column)(const DotProblem&, Index, Index),
          void (*Row)(const DotProblem&, Index, Index),
          void (*One)(const DotProblem&, Index, Index)>
void tiled(const DotProblem& p, Index m) {
  const Index m_full = m / MT * MT, n_full = p.n / NT * NT;
  for (Index i = 0; i < m_full; i += MT) {
    for (Index j = 0; j < n_full; j += NT) Full(p, i, j);
    for (Index j = n_full; j < p.n; ++j) Column(p, i, j);
  }
  for (Index i = m_full; i < m; ++i) {
    for (Index j = 0; j < n_full; j += NT) Row(p, i, j);
    for (Index j = n_full; j < p.n; ++j) One(p, i, j);
  }
}

#endif  // HWNAS_X86_TARGETS

}  // namespace

void sgemm_dot_segments(Index m, Index n, Index segments, Index len, const float* a, Index lda,
                        Index a_step, const float* const* b_rows, float* c, Index ldc,
                        bool accumulate) {
  if (m <= 0 || n <= 0) return;
  const DotProblem p{n, segments, len, a, lda, a_step, b_rows, c, ldc, accumulate};
#if defined(HWNAS_X86_TARGETS)
  switch (gemm_isa()) {
    case GemmIsa::kAvx512:
      // 24 accumulators, 6 B vectors and one A vector: 31 of the 32 registers.
      return tiled<4, 6, tile_avx512<4, 6>, tile_avx512<4, 1>, tile_avx512<1, 6>,
                   tile_avx512<1, 1>>(p, m);
    case GemmIsa::kAvx2:
      return tiled<2, 3, tile_avx2<2, 3>, tile_avx2<2, 1>, tile_avx2<1, 3>, tile_avx2<1, 1>>(p, m);
    default:
      break;
  }
#endif
  dot_portable(p, 0, m, 0, n);
}

}  // namespace hwnas::nn::detail
