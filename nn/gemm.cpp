// Blocked SGEMM (Goto / BLIS structure): B is packed in [kc x nc] blocks of NR-wide column
// panels, A in [mc x kc] blocks of MR-tall row panels, and a register-tiled micro-kernel computes
// each MR x NR tile of C from one A panel and one B panel.  Panels are zero-padded to full
// MR / NR, so edge tiles run the same kernel (into a small tile, then copied): each output
// element's arithmetic never depends on where the tile edges fall.  A GEMM one row block tall
// (most convolutions, dense layers at small batch) is instead walked panel by panel
// (panel_gemm), with the same blocks and order of terms.
#include "nn/gemm.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "nn/scratch.hpp"
#include "nn/x86_targets.hpp"

namespace hwnas::nn::detail {
namespace {

using Index = std::int64_t;

// ---- packing (its cost is O(mk + kn) against the kernel's O(mnk); plain C++ except the
// transposing copies, which would otherwise cost as much as a thin GEMM itself) ----

#if defined(HWNAS_X86_TARGETS)
// Transposes the 8 x 8 block r (r[t] = 8 consecutive k of source vector t) and stores row q of
// the result (k = q: one value per source vector) at dst + q * ld, for q < rows.
__attribute__((target("avx2"), always_inline)) inline void store_transposed_8x8(const __m256* r,
                                                                                float* dst,
                                                                                Index ld,
                                                                                int rows = 8) {
  __m256 lo[4], hi[4];
#pragma GCC unroll 4
  for (int t = 0; t < 4; ++t) {
    lo[t] = _mm256_unpacklo_ps(r[2 * t], r[2 * t + 1]);
    hi[t] = _mm256_unpackhi_ps(r[2 * t], r[2 * t + 1]);
  }
  __m256 q[8];
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {  // rows 0-3 (h = 0) and 4-7 (h = 1)
    q[4 * h + 0] = _mm256_shuffle_ps(lo[2 * h], lo[2 * h + 1], _MM_SHUFFLE(1, 0, 1, 0));
    q[4 * h + 1] = _mm256_shuffle_ps(lo[2 * h], lo[2 * h + 1], _MM_SHUFFLE(3, 2, 3, 2));
    q[4 * h + 2] = _mm256_shuffle_ps(hi[2 * h], hi[2 * h + 1], _MM_SHUFFLE(1, 0, 1, 0));
    q[4 * h + 3] = _mm256_shuffle_ps(hi[2 * h], hi[2 * h + 1], _MM_SHUFFLE(3, 2, 3, 2));
  }
#pragma GCC unroll 4
  for (int t = 0; t < 4; ++t) {
    if (t < rows) _mm256_storeu_ps(dst + t * ld, _mm256_permute2f128_ps(q[t], q[4 + t], 0x20));
    if (4 + t < rows)
      _mm256_storeu_ps(dst + (4 + t) * ld, _mm256_permute2f128_ps(q[t], q[4 + t], 0x31));
  }
}

// Lanes [0, n) set (n <= 8), for masked loads and stores of a row's last n values (masked-off
// lanes are neither read nor written, and cannot fault).
__attribute__((target("avx2"), always_inline)) inline __m256i first_lanes(Index n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// dst[p * ld + t] = row(t)[p] for t < 8, p < kc: eight k-contiguous vectors interleaved into the
// k-major panel layout, 8 x 8 blocks transposed in registers.  AVX only (any CPU that runs the
// AVX2 or AVX-512 kernels has it); pure data movement, so the kernels' numbers are unchanged.
template <class Row>
__attribute__((target("avx2"), always_inline)) inline void transpose_pack_8_rows(const Row& row,
                                                                                 Index kc,
                                                                                 float* dst,
                                                                                 Index ld) {
  Index p = 0;
  for (; p + 8 <= kc; p += 8) {
    __m256 r[8];
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) r[t] = _mm256_loadu_ps(row(t) + p);
    store_transposed_8x8(r, dst + p * ld, ld);
  }
  // The last kc % 8 (a 14-wide feature-map row: 6 of 14) as a masked block rather than 8
  // scalar copies each.
  if (p < kc) {
    const __m256i mask = first_lanes(kc - p);
    __m256 r[8];
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) r[t] = _mm256_maskload_ps(row(t) + p, mask);
    store_transposed_8x8(r, dst + p * ld, ld, static_cast<int>(kc - p));
  }
}

// Source vector t at src + t * stride.
__attribute__((target("avx2"))) void transpose_pack_8(const float* src, Index stride, Index kc,
                                                      float* dst, Index ld) {
  transpose_pack_8_rows([src, stride](int t) { return src + t * stride; }, kc, dst, ld);
}

// Eight separate source vectors: dst[p * ld + t] = src[t][p].
__attribute__((target("avx2"))) void transpose_pack_8(const float* const* src, Index kc, float* dst,
                                                      Index ld) {
  transpose_pack_8_rows([src](int t) { return src[t]; }, kc, dst, ld);
}

// dst[p * ld + t] = src[t * stride + p] for t < n < 8, p < kc: transpose_pack_8 for the last
// rows % 8 source rows of a transpose (the output rows are n wide: masked stores).
__attribute__((target("avx2"))) void transpose_tail_rows(Index n, Index kc, const float* src,
                                                         Index stride, float* dst, Index ld) {
  const __m256i rows = first_lanes(n);
  alignas(32) float block[8 * 8];
  for (Index p = 0; p < kc; p += 8) {
    const Index w = std::min<Index>(8, kc - p);
    const __m256i cols = first_lanes(w);
    __m256 r[8];
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t)
      r[t] = t < n ? _mm256_maskload_ps(src + t * stride + p, cols) : _mm256_setzero_ps();
    store_transposed_8x8(r, block, 8, static_cast<int>(w));
    for (Index q = 0; q < w; ++q)
      _mm256_maskstore_ps(dst + (p + q) * ld, rows, _mm256_load_ps(block + q * 8));
  }
}
#endif

// B given by row pointers, in blocks of block_n columns side by side, each with its own table
// of k row pointers: B(p, q*block_n + j) = rows[q*k + p][j].  A panel's NR columns are copied
// as runs that each stay within one block.
template <int NR>
void pack_b_row_blocks(const float* const* rows, Index k, Index block_n, Index pc, Index kc,
                       Index jc, Index nc, float* dst) {
  struct Run {
    const float* const* table;  // the block's row pointers
    Index offset;               // first column within the block
    int at, len;                // position and width in the panel
  };
  Run runs[NR];
  for (Index j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
    const int nr = static_cast<int>(std::min<Index>(NR, nc - j0));
    int count = 0;
    for (int t = 0; t < nr;) {
      const Index col = jc + j0 + t, q = col / block_n, j = col % block_n;
      const int len = static_cast<int>(std::min<Index>(nr - t, block_n - j));
      runs[count++] = {rows + q * k, j, t, len};
      t += len;
    }
    if (count == 1 && nr == NR) {  // the common case: one whole run, copied inline (no call)
      const float* const* table = runs[0].table + pc;
      for (Index p = 0; p < kc; ++p)
        std::memcpy(dst + p * NR, table[p] + runs[0].offset, NR * sizeof(float));
      continue;
    }
    for (Index p = 0; p < kc; ++p) {
      for (int r = 0; r < count; ++r)
        std::memcpy(dst + p * NR + runs[r].at, runs[r].table[pc + p] + runs[r].offset,
                    static_cast<std::size_t>(runs[r].len) * sizeof(float));
      if (nr < NR) std::fill(dst + p * NR + nr, dst + (p + 1) * NR, 0.0f);
    }
  }
}

// B given by column pointers: column j of the block is cols[jc + j] + pc (contiguous in k).
template <int NR>
void pack_b_cols(const float* const* cols, Index pc, Index kc, Index jc, Index nc, float* dst) {
  for (Index j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
    const int nr = static_cast<int>(std::min<Index>(NR, nc - j0));
    if (nr < NR) std::fill(dst, dst + NR * kc, 0.0f);
    int jj = 0;
#if defined(HWNAS_X86_TARGETS)
    for (; jj + 8 <= nr; jj += 8) {
      const float* src[8];
      for (int t = 0; t < 8; ++t) src[t] = cols[jc + j0 + jj + t] + pc;
      transpose_pack_8(src, kc, dst + jj, NR);
    }
#endif
    for (; jj < nr; ++jj) {
      const float* col = cols[jc + j0 + jj] + pc;
      for (Index p = 0; p < kc; ++p) dst[p * NR + jj] = col[p];
    }
  }
}

// dst[r][p * MR + ii] = a(i0 + r*MR + ii, p) for each MR-row panel r of the [mc, kc] block,
// zero for rows past mc.
template <int MR>
void pack_a(const float* a, Index rs, Index cs, Index mc, Index kc, float* dst) {
  for (Index i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
    const int mr = static_cast<int>(std::min<Index>(MR, mc - i0));
    const float* src = a + i0 * rs;
    if (mr < MR) std::fill(dst, dst + MR * kc, 0.0f);
    if (cs == 1) {  // row-major A: read rows, write strided
#if defined(HWNAS_X86_TARGETS)
      if constexpr (MR == 8)
        if (mr == MR) {
          transpose_pack_8(src, rs, kc, dst, MR);
          continue;
        }
#endif
      for (int ii = 0; ii < mr; ++ii) {
        const float* row = src + ii * rs;
        for (Index p = 0; p < kc; ++p) dst[p * MR + ii] = row[p];
      }
    } else if (rs == 1 && mr == MR) {  // column-major A (a transpose): MR contiguous per k
      for (Index p = 0; p < kc; ++p) std::memcpy(dst + p * MR, src + p * cs, MR * sizeof(float));
    } else {
      for (Index p = 0; p < kc; ++p)
        for (int ii = 0; ii < mr; ++ii) dst[p * MR + ii] = src[ii * rs + p * cs];
    }
  }
}

// dst[r][p * NR + jj] = b(p, j0 + r*NR + jj) for each NR-column panel r of the [kc, nc] block,
// zero for columns past nc.
template <int NR>
void pack_b(const float* b, Index rs, Index cs, Index kc, Index nc, float* dst) {
  for (Index j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
    const int nr = static_cast<int>(std::min<Index>(NR, nc - j0));
    const float* src = b + j0 * cs;
    if (cs == 1) {  // row-major B: NR contiguous per k
      if (nr == NR) {
        for (Index p = 0; p < kc; ++p) std::memcpy(dst + p * NR, src + p * rs, NR * sizeof(float));
      } else {
        for (Index p = 0; p < kc; ++p) {
          std::memcpy(dst + p * NR, src + p * rs, nr * sizeof(float));
          std::fill(dst + p * NR + nr, dst + (p + 1) * NR, 0.0f);
        }
      }
      continue;
    }
    if (nr < NR) std::fill(dst, dst + NR * kc, 0.0f);
    if (rs == 1) {  // column-major B (a transpose): read columns, write strided
      int jj = 0;
#if defined(HWNAS_X86_TARGETS)
      for (; jj + 8 <= nr; jj += 8) transpose_pack_8(src + jj * cs, cs, kc, dst + jj, NR);
#endif
      for (; jj < nr; ++jj) {
        const float* col = src + jj * cs;
        for (Index p = 0; p < kc; ++p) dst[p * NR + jj] = col[p];
      }
    } else {
      for (Index p = 0; p < kc; ++p)
        for (int jj = 0; jj < nr; ++jj) dst[p * NR + jj] = src[p * rs + jj * cs];
    }
  }
}

// Per-thread packing buffers (slot 0: A, 1: B), 64-byte aligned: the kernels load B panels
// with aligned loads.
struct GemmPacking;
float* pack_buffer(std::size_t n, int slot) { return thread_scratch<GemmPacking, 2>(n, slot); }

// Adds (or stores) a computed tile's valid part into C.
void apply_tile(const float* tile, int tile_ld, int mr, int nr, float* c, Index ldc, bool first) {
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      const float t = tile[i * tile_ld + j];
      c[i * ldc + j] = first ? t : c[i * ldc + j] + t;
    }
}

// A B panel read in place: row p of the panel is rows[p] + col (the kernel's NR floats).
struct RowsB {
  const float* const* rows;
  Index col;
};

// Calls K::template rows<R>(...) for R = r (1 <= r <= K::kMr): edge tiles with fewer rows (a
// batch-1 dense layer is a 1-row GEMM) run only their rows, with the same arithmetic per element.
// B is a packed panel (const float*) or a RowsB, read in place.
template <class K, class BSource, int R = K::kMr>
void rows_of(int r, Index kc, const float* a, BSource b, float* c, Index ldc, bool first) {
  if constexpr (R >= 1) {
    if (r == R) return K::template rows<R>(kc, a, b, c, ldc, first);
    rows_of<K, BSource, R - 1>(r, kc, a, b, c, ldc, first);
  }
}

// A GEMM one row block tall (m <= K::kMc: a convolution's output channels, a dense layer's batch)
// gets nothing from packing B a block at a time, since each packed value serves that one block
// only; but a [kc, NC] block (up to 2 MB) outgrows L2, so the kernels read back from L3 what was
// just packed, and C is read and written again for every K block.  Here A is packed whole, once
// (at most kPanelGemmMaxA floats: panel_gemm_fits), and B is taken one [kc, NR] panel at a time,
// which stays in L1 while every row tile reads it:
//   for each NR-column panel: for each kc block of K: fetch the panel; every row tile.
// Each C tile stays in cache across its K blocks.  The K blocks and the order of terms are those
// of the blocked path, so the numbers are bit for bit the same.
// Columns come as `blocks` blocks of block_n (the row blocks of sgemm_b_row_blocks; one block
// otherwise), each split into panels from its start.  with_panel(pc, kc, q, j0, nr, bp, run)
// calls run(b) with block q's panel at column j0 (nr wide, kc deep from pc) as a BSource: packed
// into bp (zeros past nr) or read in place.
constexpr Index kPanelGemmMaxA = Index{1} << 17;  // 512 KB packed, within a per-core L2

// Whether panel_gemm takes an m x k GEMM for kernel K: one row block, and A's packed size (its
// rows padded to whole MR panels, so MR * k floats for m = 1) within kPanelGemmMaxA, since the
// whole of it is read again for every NR panel.
template <class K>
bool panel_gemm_fits(Index m, Index k) {
  return m <= K::kMc && (m + K::kMr - 1) / K::kMr * K::kMr * k <= kPanelGemmMaxA;
}

template <class K, class WithPanel>
void panel_gemm(Index m, Index block_n, Index blocks, Index k, StridedMatrix a,
                const WithPanel& with_panel, float* c, Index ldc, bool accumulate,
                const BlockDone& done = {}) {
  constexpr int MR = K::kMr, NR = K::kNr;
  constexpr Index KC = kGemmKc;
  const Index panels_a = (m + MR - 1) / MR;
  float* ap = pack_buffer(static_cast<std::size_t>(panels_a * MR * k), 0);
  float* bp = pack_buffer(static_cast<std::size_t>(KC * NR), 1);
  // A's K blocks one after another, each [panels_a][kc][MR] as blocked_gemm packs them.
  for (Index pc = 0; pc < k; pc += KC)
    pack_a<MR>(a.data + pc * a.cs, a.rs, a.cs, m, std::min(KC, k - pc), ap + pc * panels_a * MR);
  alignas(64) float tile[MR * NR];
  for (Index q = 0; q < blocks; ++q)
    for (Index j0 = 0; j0 < block_n; j0 += NR) {
      const int nr = static_cast<int>(std::min<Index>(NR, block_n - j0));
      float* cpanel = c + q * block_n + j0;
      for (Index pc = 0; pc < k; pc += KC) {
        const Index kc = std::min(KC, k - pc);
        const bool first = !accumulate && pc == 0;
        const float* ablock = ap + pc * panels_a * MR;
        with_panel(pc, kc, q, j0, nr, bp, [&](auto b) {
          for (Index ir = 0; ir < m; ir += MR) {
            const int mr = static_cast<int>(std::min<Index>(MR, m - ir));
            const float* apanel = ablock + ir * kc;
            if (nr == NR) {
              rows_of<K>(mr, kc, apanel, b, cpanel + ir * ldc, ldc, first);
            } else {
              rows_of<K>(mr, kc, apanel, b, tile, NR, true);
              apply_tile(tile, NR, mr, nr, cpanel + ir * ldc, ldc, first);
            }
          }
        });
      }
      done(0, m, q * block_n + j0, q * block_n + j0 + nr);  // the panel's last K block is in
    }
}

// panel_gemm's with_panel over a block packer (pack_b_block(pc, kc, jc, nc, dst) as blocked_gemm
// takes it): each panel packed.
template <class PackB>
auto packed_panels(const PackB& pack_b_block) {
  return [&pack_b_block](Index pc, Index kc, Index, Index j0, int nr, float* bp, auto run) {
    pack_b_block(pc, kc, j0, nr, bp);
    run(static_cast<const float*>(bp));
  };
}

// The loop nest around a micro-kernel K (K::kMr x K::kNr tiles):
//   for each nc-column block: for each kc block of K: pack B; for each mc-row block: pack A;
//   then every tile of the block.  `first` (store rather than add) holds for the first K block
//   when not accumulating, so C is never read before it is written.
// GEMMs one row block tall go to panel_gemm (same K blocks and terms).
// pack_b_block(pc, kc, jc, nc, dst) packs B's [kc, nc] block at (pc, jc) into NR-wide panels.
template <class K, class PackB>
void blocked_gemm(Index m, Index n, Index k, StridedMatrix a, const PackB& pack_b_block, float* c,
                  Index ldc, bool accumulate, const BlockDone& done) {
  constexpr int MR = K::kMr, NR = K::kNr;
  constexpr Index MC = K::kMc, NC = K::kNc, KC = kGemmKc;
  if (panel_gemm_fits<K>(m, k))
    return panel_gemm<K>(m, n, 1, k, a, packed_panels(pack_b_block), c, ldc, accumulate, done);
  float* ap = pack_buffer(static_cast<std::size_t>(MC * KC), 0);
  float* bp = pack_buffer(static_cast<std::size_t>(KC * ((NC + NR - 1) / NR) * NR), 1);
  alignas(64) float tile[MR * NR];
  for (Index jc = 0; jc < n; jc += NC) {
    const Index nc = std::min(NC, n - jc);
    for (Index pc = 0; pc < k; pc += KC) {
      const Index kc = std::min(KC, k - pc);
      const bool first = !accumulate && pc == 0;
      pack_b_block(pc, kc, jc, nc, bp);
      for (Index ic = 0; ic < m; ic += MC) {
        const Index mc = std::min(MC, m - ic);
        pack_a<MR>(a.data + ic * a.rs + pc * a.cs, a.rs, a.cs, mc, kc, ap);
        for (Index jr = 0; jr < nc; jr += NR) {
          const int nr = static_cast<int>(std::min<Index>(NR, nc - jr));
          const float* bpanel = bp + jr * kc;
          for (Index ir = 0; ir < mc; ir += MR) {
            const int mr = static_cast<int>(std::min<Index>(MR, mc - ir));
            const float* apanel = ap + ir * kc;
            float* ct = c + (ic + ir) * ldc + jc + jr;
            if (nr == NR) {
              rows_of<K>(mr, kc, apanel, bpanel, ct, ldc, first);
            } else {
              rows_of<K>(mr, kc, apanel, bpanel, tile, NR, true);
              apply_tile(tile, NR, mr, nr, ct, ldc, first);
            }
          }
          if (pc + kc == k) done(ic, ic + mc, jc + jr, jc + jr + nr);
        }
      }
    }
  }
}

// panel_gemm's with_panel for B given by row pointers in column blocks (sgemm_b_row_blocks): a
// block's full NR-wide panels read straight from its rows, unpacked (kc rows of NR floats: they
// stay in L1 across the row tiles, so a copy would only add its stores); its last, partial panel
// packed with zero padding.  Same kernels and order of terms, so the same bits as packing.
template <int NR>
auto row_block_panels(const float* const* b_rows, Index k) {
  return [b_rows, k](Index pc, Index kc, Index q, Index j0, int nr, float* bp, auto run) {
    const float* const* rows = b_rows + q * k + pc;
    if (nr == NR) return run(RowsB{rows, j0});
    for (Index p = 0; p < kc; ++p) {
      std::memcpy(bp + p * NR, rows[p] + j0, static_cast<std::size_t>(nr) * sizeof(float));
      std::fill(bp + p * NR + nr, bp + (p + 1) * NR, 0.0f);
    }
    run(static_cast<const float*>(bp));
  };
}

#if defined(HWNAS_X86_TARGETS)

// Each kernel: acc(i, j) = sum over p of a(i, p) * b(p, j), one fused multiply-add per p in
// ascending order from zero; then C = acc (first) or C + acc.  Both ISAs do exactly this per
// element, so they agree bit for bit.

// AVX-512: 8 x 32 tile, 16 zmm accumulators (latency 4 x 2 FMA pipes needs >= 8 in flight).
struct Avx512Kernel {
  static constexpr int kMr = 8, kNr = 32;
  static constexpr Index kMc = 96, kNc = 2048;
  // R <= kMr rows of the tile; the A panel holds kMr values per k.
  // B is a packed panel (aligned loads) or rows read in place (unaligned loads).
  template <int R, class BSource>
  __attribute__((target("avx512f"))) static void rows(Index kc, const float* a, BSource b, float* c,
                                                      Index ldc, bool first) {
    __m512 acc0[R], acc1[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
    for (Index p = 0; p < kc; ++p, a += kMr) {
      __m512 b0, b1;
      if constexpr (std::is_same_v<BSource, RowsB>) {
        const float* row = b.rows[p] + b.col;
        b0 = _mm512_loadu_ps(row);
        b1 = _mm512_loadu_ps(row + 16);
      } else {
        b0 = _mm512_load_ps(b + p * kNr);
        b1 = _mm512_load_ps(b + p * kNr + 16);
      }
#pragma GCC unroll 8
      for (int i = 0; i < R; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i]);
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      float* row = c + i * ldc;
      if (first) {
        _mm512_storeu_ps(row, acc0[i]);
        _mm512_storeu_ps(row + 16, acc1[i]);
      } else {
        _mm512_storeu_ps(row, _mm512_add_ps(_mm512_loadu_ps(row), acc0[i]));
        _mm512_storeu_ps(row + 16, _mm512_add_ps(_mm512_loadu_ps(row + 16), acc1[i]));
      }
    }
  }
};

// AVX2 + FMA: 6 x 16 tile, 12 ymm accumulators (the classic Haswell / Zen shape).
struct Avx2Kernel {
  static constexpr int kMr = 6, kNr = 16;
  static constexpr Index kMc = 96, kNc = 2048;
  template <int R, class BSource>
  __attribute__((target("avx2,fma"))) static void rows(Index kc, const float* a, BSource b,
                                                       float* c, Index ldc, bool first) {
    __m256 acc0[R], acc1[R];
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) acc0[i] = acc1[i] = _mm256_setzero_ps();
    for (Index p = 0; p < kc; ++p, a += kMr) {
      __m256 b0, b1;
      if constexpr (std::is_same_v<BSource, RowsB>) {
        const float* row = b.rows[p] + b.col;
        b0 = _mm256_loadu_ps(row);
        b1 = _mm256_loadu_ps(row + 8);
      } else {
        b0 = _mm256_load_ps(b + p * kNr);
        b1 = _mm256_load_ps(b + p * kNr + 8);
      }
#pragma GCC unroll 6
      for (int i = 0; i < R; ++i) {
        const __m256 ai = _mm256_broadcast_ss(a + i);
        acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
        acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
      }
    }
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      float* row = c + i * ldc;
      if (first) {
        _mm256_storeu_ps(row, acc0[i]);
        _mm256_storeu_ps(row + 8, acc1[i]);
      } else {
        _mm256_storeu_ps(row, _mm256_add_ps(_mm256_loadu_ps(row), acc0[i]));
        _mm256_storeu_ps(row + 8, _mm256_add_ps(_mm256_loadu_ps(row + 8), acc1[i]));
      }
    }
  }
};

#endif  // HWNAS_X86_TARGETS

// Fallback for CPUs without AVX2+FMA and non-x86 builds: Eigen's product on mapped views.  An
// operand with unit stride one way is mapped with that stride known at compile time, which keeps
// Eigen's packing fast (a dynamic inner stride made small attention products 5 % slower).
void eigen_gemm(Index m, Index n, Index k, StridedMatrix a, StridedMatrix b, float* c, Index ldc,
                bool accumulate) {
  using Row = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Col = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using Outer = Eigen::OuterStride<>;
  using Strides = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
  auto with_map = [](StridedMatrix x, Index rows, Index cols, auto&& f) {
    if (x.cs == 1)
      f(Eigen::Map<const Row, 0, Outer>(x.data, rows, cols, Outer(x.rs)));
    else if (x.rs == 1)
      f(Eigen::Map<const Col, 0, Outer>(x.data, rows, cols, Outer(x.cs)));
    else  // row-major maps: outer stride = row stride, inner stride = column stride
      f(Eigen::Map<const Row, 0, Strides>(x.data, rows, cols, Strides(x.rs, x.cs)));
  };
  Eigen::Map<Row, 0, Outer> cm(c, m, n, Outer(ldc));
  with_map(a, m, k, [&](const auto& am) {
    with_map(b, k, n, [&](const auto& bm) {
      if (accumulate)
        cm.noalias() += am * bm;
      else
        cm.noalias() = am * bm;
    });
  });
}

bool cpu_supports(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::kEigen:
      return true;
#if defined(HWNAS_X86_TARGETS)
    case GemmIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case GemmIsa::kAvx512:
      return __builtin_cpu_supports("avx512f");
#else
    default:
      return false;
#endif
  }
  return false;
}

GemmIsa parse_isa(const std::string& s) {
  if (s == "eigen") return GemmIsa::kEigen;
  if (s == "avx2") return GemmIsa::kAvx2;
  if (s == "avx512") return GemmIsa::kAvx512;
  throw std::invalid_argument("HWNAS_GEMM_ISA: unknown kernel family '" + s +
                              "' (use avx512, avx2 or eigen, or unset it to pick the CPU's best)");
}

GemmIsa initial_isa() {
  if (const char* env = std::getenv("HWNAS_GEMM_ISA"); env && *env) {
    const GemmIsa want = parse_isa(env);
    if (!cpu_supports(want))
      throw std::invalid_argument(std::string("HWNAS_GEMM_ISA=") + env +
                                  ": this CPU cannot run it (unset HWNAS_GEMM_ISA)");
    return want;
  }
  for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2})
    if (cpu_supports(isa)) return isa;
  return GemmIsa::kEigen;
}

GemmIsa& current_isa() {
  static GemmIsa isa = initial_isa();
  return isa;
}

}  // namespace

GemmIsa gemm_isa() { return current_isa(); }

bool gemm_isa_supported(GemmIsa isa) { return cpu_supports(isa); }

void transpose(Index rows, Index cols, const float* src, Index lds, float* dst, Index ldd) {
  Index i = 0;
#if defined(HWNAS_X86_TARGETS)
  static const bool avx2 = cpu_supports(GemmIsa::kAvx2);
  if (avx2) {
    for (; i + 8 <= rows; i += 8) transpose_pack_8(src + i * lds, lds, cols, dst + i, ldd);
    if (i < rows) return transpose_tail_rows(rows - i, cols, src + i * lds, lds, dst + i, ldd);
  }
#endif
  for (; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

void set_gemm_isa(GemmIsa isa) {
  if (!cpu_supports(isa))
    throw std::invalid_argument(std::string("set_gemm_isa: this CPU cannot run ") +
                                gemm_isa_name(isa));
  current_isa() = isa;
}

const char* gemm_isa_name(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::kAvx512:
      return "avx512";
    case GemmIsa::kAvx2:
      return "avx2";
    case GemmIsa::kEigen:
      return "eigen";
  }
  return "?";
}

namespace {

// True when there is nothing to multiply (C is then zeroed, or kept when accumulating).
bool trivial_gemm(Index m, Index n, Index k, float* c, Index ldc, bool accumulate) {
  if (m <= 0 || n <= 0) return true;
  if (k > 0) return false;
  if (!accumulate)
    for (Index i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
  return true;
}

// Runs the blocked GEMM with the CPU's kernel, B packed by make_packer(NR)(pc, kc, jc, nc, dst);
// returns false when no x86 kernel applies (the caller falls back to Eigen).
template <class MakePacker>
bool dispatch(Index m, Index n, Index k, StridedMatrix a, const MakePacker& make_packer, float* c,
              Index ldc, bool accumulate, const BlockDone& done = {}) {
#if defined(HWNAS_X86_TARGETS)
  switch (current_isa()) {
    case GemmIsa::kAvx512:
      blocked_gemm<Avx512Kernel>(m, n, k, a, make_packer.template operator()<Avx512Kernel::kNr>(),
                                 c, ldc, accumulate, done);
      return true;
    case GemmIsa::kAvx2:
      blocked_gemm<Avx2Kernel>(m, n, k, a, make_packer.template operator()<Avx2Kernel::kNr>(), c,
                               ldc, accumulate, done);
      return true;
    default:
      break;
  }
#endif
  return false;
}

}  // namespace

void sgemm(Index m, Index n, Index k, StridedMatrix a, StridedMatrix b, float* c, Index ldc,
           bool accumulate, const BlockDone& done) {
  if (trivial_gemm(m, n, k, c, ldc, accumulate)) return done(0, m, 0, n);
  auto packer = [&]<int NR>() {
    return [&](Index pc, Index kc, Index jc, Index nc, float* dst) {
      pack_b<NR>(b.data + pc * b.rs + jc * b.cs, b.rs, b.cs, kc, nc, dst);
    };
  };
  if (dispatch(m, n, k, a, packer, c, ldc, accumulate, done)) return;
  eigen_gemm(m, n, k, a, b, c, ldc, accumulate);
  done(0, m, 0, n);
}

void sgemm_transformed(Index m, Index n, Index k, StridedMatrix a, StridedMatrix b,
                       const PackTransform& transform, Index p_base, Index j_base, float* c,
                       Index ldc, bool accumulate, const BlockDone& done) {
  if (trivial_gemm(m, n, k, c, ldc, accumulate)) return done(0, m, 0, n);
  auto packer = [&]<int NR>() {
    return [&](Index pc, Index kc, Index jc, Index nc, float* dst) {
      pack_b<NR>(b.data + pc * b.rs + jc * b.cs, b.rs, b.cs, kc, nc, dst);
      transform.apply(p_base + pc, kc, j_base + jc, nc, NR, dst);
    };
  };
  if (dispatch(m, n, k, a, packer, c, ldc, accumulate, done)) return;
  // Eigen: B copied whole as one panel and transformed, then laid out with b's own strides:
  // Eigen's product picks its algorithm (and order of terms) by the operands' storage order.
  std::vector<float> panel(static_cast<std::size_t>(k * n));
  for (Index p = 0; p < k; ++p)
    for (Index j = 0; j < n; ++j)
      panel[static_cast<std::size_t>(p * n + j)] = b.data[p * b.rs + j * b.cs];
  transform.apply(p_base, k, j_base, n, static_cast<int>(n), panel.data());
  std::vector<float> same_layout(static_cast<std::size_t>((k - 1) * b.rs + (n - 1) * b.cs + 1));
  for (Index p = 0; p < k; ++p)
    for (Index j = 0; j < n; ++j)
      same_layout[static_cast<std::size_t>(p * b.rs + j * b.cs)] =
          panel[static_cast<std::size_t>(p * n + j)];
  eigen_gemm(m, n, k, a, {same_layout.data(), b.rs, b.cs}, c, ldc, accumulate);
  done(0, m, 0, n);
}

void sgemm_eigen(Index m, Index n, Index k, StridedMatrix a, StridedMatrix b, float* c, Index ldc,
                 bool accumulate) {
  if (trivial_gemm(m, n, k, c, ldc, accumulate)) return;
  eigen_gemm(m, n, k, a, b, c, ldc, accumulate);
}

void sgemm_b_row_blocks(Index m, Index block_n, Index blocks, Index k, StridedMatrix a,
                        const float* const* b_rows, float* c, Index ldc, bool accumulate) {
  const Index n = block_n * blocks;
  if (trivial_gemm(m, n, k, c, ldc, accumulate)) return;
#if defined(HWNAS_X86_TARGETS)
  // One row block tall: B's rows read in place, panel by panel (panel_gemm).  Conv forward ms,
  // 2 threads, batch 64, packed [kc, 2048] blocks (stop 37) -> this: 64->64 5x5 on 14x14
  // 7.5 -> 7.0, 96->96 3x3 on 14x14 5.9 -> 5.5, 40->40 3x3 on 28x28 5.4 -> 4.4; equal at
  // 16->16 3x3 on 28x28 and 48->48 5x5 on 7x7 (batch 128).
  auto in_place = [&]<class K>() {
    if (!panel_gemm_fits<K>(m, k)) return false;
    panel_gemm<K>(m, block_n, blocks, k, a, row_block_panels<K::kNr>(b_rows, k), c, ldc,
                  accumulate);
    return true;
  };
  switch (current_isa()) {
    case GemmIsa::kAvx512:
      if (in_place.template operator()<Avx512Kernel>()) return;
      break;
    case GemmIsa::kAvx2:
      if (in_place.template operator()<Avx2Kernel>()) return;
      break;
    default:
      break;
  }
#endif
  auto packer = [&]<int NR>() {
    return [&](Index pc, Index kc, Index jc, Index nc, float* dst) {
      pack_b_row_blocks<NR>(b_rows, k, block_n, pc, kc, jc, nc, dst);
    };
  };
  if (dispatch(m, n, k, a, packer, c, ldc, accumulate)) return;
  std::vector<float> b(static_cast<std::size_t>(k * n));  // Eigen: B copied whole
  for (Index q = 0; q < blocks; ++q)
    for (Index p = 0; p < k; ++p)
      std::copy(b_rows[q * k + p], b_rows[q * k + p] + block_n, b.data() + p * n + q * block_n);
  eigen_gemm(m, n, k, a, {b.data(), n, 1}, c, ldc, accumulate);
}

void sgemm_b_cols(Index m, Index n, Index k, StridedMatrix a, const float* const* b_cols, float* c,
                  Index ldc, bool accumulate) {
  if (trivial_gemm(m, n, k, c, ldc, accumulate)) return;
  auto packer = [&]<int NR>() {
    return [&](Index pc, Index kc, Index jc, Index nc, float* dst) {
      pack_b_cols<NR>(b_cols, pc, kc, jc, nc, dst);
    };
  };
  if (dispatch(m, n, k, a, packer, c, ldc, accumulate)) return;
  std::vector<float> b(static_cast<std::size_t>(k * n));  // Eigen: B^T copied whole
  for (Index j = 0; j < n; ++j) std::copy(b_cols[j], b_cols[j] + k, b.data() + j * k);
  eigen_gemm(m, n, k, a, {b.data(), 1, k}, c, ldc, accumulate);
}

}  // namespace hwnas::nn::detail
