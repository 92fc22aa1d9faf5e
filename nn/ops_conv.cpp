// Convolution and pooling ops (NCHW).
//
// conv2d picks one of five formulations by shape (the second to fourth as GEMMs of nn/gemm.hpp
// over several samples at once):
//  - spectral (nn/conv_spectral.hpp: stride 1, ungrouped, kernels 2x2+ on maps up to ~18 wide)
//    where its cost model expects FFTs and per-frequency GEMMs to beat the direct forms below
//    (5x5 layers of 48+ channels on 7x7-14x14 maps: 1.5-2x faster; HWNAS_CONV_ALGORITHM=direct
//    turns it off);
//  - batch-minor (outputs up to 32 wide, stride 1 or 2): sub-batches of 16 samples laid out with
//    the sample innermost, so a tap's view of one output row is contiguous and nothing is dropped;
//  - the grid (wider stride-1 maps; 5x5+ stride 2 on the polyphase grid): taps are shifted views
//    of the padded sample, the columns between output rows computed and dropped;
//  - im2col + one GEMM per group over a batch of samples (the rest), and pointwise (1x1) without
//    im2col;
//  - depthwise (groups == Cin == Cout): direct kernels, since its im2col matrix would be kh*kw
//    times the input for a GEMM with a single output row; batch-minor (16 samples per vector) for
//    outputs up to 32 wide, per plane beyond.
// Each section below says when it runs and why.  Determinism: every parallel task writes a disjoint
// slice of the output/grad; the weight and bias gradients, which reduce over the batch, are summed
// into per-chunk partials whose chunk and batch boundaries depend only on the shapes, then added in
// chunk order.  Results are therefore bit-identical for any thread count.
//
// GCC 12 flags Eigen's AVX-512 GEMM packing (_mm512_undefined_ps in a system header) as
// maybe-uninitialized once inlined here; it is a known false positive, silenced for this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "nn/conv_spectral.hpp"
#include "nn/kernels.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"

namespace hwnas::nn {
namespace {

// Unaligned views for buffers that are not 64-byte aligned at their start (partials, planes).
using UArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstUArrayMap = Eigen::Map<const Eigen::ArrayXf>;

using detail::parallel_range;
using detail::scratch;

// Fixed chunking of [0, n) for reductions: depends only on n, never on the thread count.
constexpr int kMaxReduceChunks = 8;
std::int64_t chunk_begin(std::int64_t n, int chunks, int c) { return n * c / chunks; }

// Runs f(chunk, begin, end) for each fixed chunk, in parallel when worthwhile.
template <class F>
void for_each_chunk(std::int64_t n, int chunks, std::int64_t flops_per_item, F&& f) {
  auto body = [&](int c) { f(c, chunk_begin(n, chunks, c), chunk_begin(n, chunks, c + 1)); };
  if (chunks <= 1 || n * flops_per_item < kParallelGrainFlops) {
    for (int c = 0; c < chunks; ++c) body(c);
    return;
  }
  oneapi::tbb::parallel_for(0, chunks, body);
}

// Output index range [lo, hi) along one axis for which in = o*stride + off lies in [0, in_size).
inline void valid_range(int off, int stride, int in_size, int out_size, int& lo, int& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int last = in_size - 1 - off;
  hi = last < 0 ? 0 : std::min(out_size, last / stride + 1);
  if (hi < lo) hi = lo;
}

struct ConvGeom {
  int n, cin, h, w, cout, kh, kw, ho, wo, stride, pad, groups;
  int cin_g() const { return cin / groups; }
  int cout_g() const { return cout / groups; }
  std::int64_t k_g() const { return static_cast<std::int64_t>(cin_g()) * kh * kw; }
  std::int64_t p() const { return static_cast<std::int64_t>(ho) * wo; }
  bool pointwise() const { return kh == 1 && kw == 1 && stride == 1 && pad == 0; }
  bool depthwise() const { return groups == cin && groups == cout && groups > 1; }
};

// im2col works on a zero-padded copy of the sample so that its inner loops have no bounds
// checks and copy whole output rows inline: with small feature maps the rows are ~10-30 floats,
// and per-row memcpy/memset calls would cost about as much as the GEMM itself.
int padded_h(const ConvGeom& g) { return g.h + 2 * g.pad; }
int padded_w(const ConvGeom& g) { return g.w + 2 * g.pad; }
std::int64_t padded_size(const ConvGeom& g) {
  return static_cast<std::int64_t>(g.cin) * padded_h(g) * padded_w(g);
}

// Short-row copy / accumulate (rows of a feature map are often shorter than one vector):
// AVX-512 masked ops, or AVX2 8/4-wide ops and a scalar tail (AVX2's masked stores are
// microcoded and slow on AMD Zen) avoid the call and alignment-peeling overhead of memcpy or Eigen
// per row.
inline void copy_row(float* dst, const float* src, int n) {
#if defined(__AVX512F__)
  int t = 0;
  for (; t + 16 <= n; t += 16) _mm512_storeu_ps(dst + t, _mm512_loadu_ps(src + t));
  if (t < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - t)) - 1u);
    _mm512_mask_storeu_ps(dst + t, m, _mm512_maskz_loadu_ps(m, src + t));
  }
#elif defined(__AVX2__)
  int t = 0;
  for (; t + 8 <= n; t += 8) _mm256_storeu_ps(dst + t, _mm256_loadu_ps(src + t));
  if (t + 4 <= n) _mm_storeu_ps(dst + t, _mm_loadu_ps(src + t)), t += 4;
  for (; t < n; ++t) dst[t] = src[t];
#else
  UArrayMap(dst, n) = ConstUArrayMap(src, n);
#endif
}

inline void add_row(float* dst, const float* src, int n) {
#if defined(__AVX512F__)
  int t = 0;
  for (; t + 16 <= n; t += 16)
    _mm512_storeu_ps(dst + t, _mm512_add_ps(_mm512_loadu_ps(dst + t), _mm512_loadu_ps(src + t)));
  if (t < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - t)) - 1u);
    _mm512_mask_storeu_ps(
        dst + t, m,
        _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + t), _mm512_maskz_loadu_ps(m, src + t)));
  }
#elif defined(__AVX2__)
  int t = 0;
  for (; t + 8 <= n; t += 8)
    _mm256_storeu_ps(dst + t, _mm256_add_ps(_mm256_loadu_ps(dst + t), _mm256_loadu_ps(src + t)));
  if (t + 4 <= n)
    _mm_storeu_ps(dst + t, _mm_add_ps(_mm_loadu_ps(dst + t), _mm_loadu_ps(src + t))), t += 4;
  for (; t < n; ++t) dst[t] += src[t];
#else
  UArrayMap(dst, n) += ConstUArrayMap(src, n);
#endif
}

// Copies `whole` floats (a multiple of 8) in 8-wide moves: the overrunning copy of im2col.
inline void copy_row_overrun(float* dst, const float* src, int whole) {
#if defined(__AVX2__)
  for (int t = 0; t < whole; t += 8) _mm256_storeu_ps(dst + t, _mm256_loadu_ps(src + t));
#else
  std::copy(src, src + whole, dst);
#endif
}

// Returns x itself when there is no padding, else a padded copy written into buf.
const float* pad_sample(const float* x, const ConvGeom& g, float* buf) {
  if (g.pad == 0) return x;
  const int hp = padded_h(g), wp = padded_w(g);
  std::fill(buf, buf + padded_size(g), 0.0f);
  for (int c = 0; c < g.cin; ++c)
    for (int ih = 0; ih < g.h; ++ih) {
      const float* src = x + (static_cast<std::int64_t>(c) * g.h + ih) * g.w;
      float* dst = buf + (static_cast<std::int64_t>(c) * hp + ih + g.pad) * wp + g.pad;
      copy_row(dst, src, g.w);
    }
  return buf;
}

// col[(c*kh + i)*kw + j][oh*wo + ow] = xp[c][oh*s + i][ow*s + j] over the padded planes xp.
// `ld` is the row stride of col: a batch of samples shares one matrix, sample s in columns
// [s*P, (s+1)*P), so one GEMM covers the whole batch.
//
// Stride 1 copies each output row (often 7-28 floats) with whole 8-wide moves, letting the last
// one run past the row's end: what is written after it overwrites the excess.  `row_room` is how
// far a write may reach from the sample's block start in each col row (to the row's end when
// other samples' blocks, already written, follow it on the next row; unbounded for a lone
// sample, whose next col row comes later); no read may pass `xp_end`; col needs 8 floats of
// slack at its end.
void im2col(const float* xp, const float* xp_end, const ConvGeom& g, float* col, std::int64_t ld,
            std::int64_t row_room) {
  const int hp = padded_h(g), wp = padded_w(g);
  const int whole = (g.wo + 7) / 8 * 8;
  for (int c = 0; c < g.cin; ++c)
    for (int i = 0; i < g.kh; ++i)
      for (int j = 0; j < g.kw; ++j) {
        float* row = col + ((static_cast<std::int64_t>(c) * g.kh + i) * g.kw + j) * ld;
        const float* xc = xp + (static_cast<std::int64_t>(c) * hp + i) * wp + j;
        for (int oh = 0; oh < g.ho; ++oh) {
          const float* src = xc + static_cast<std::int64_t>(oh) * g.stride * wp;
          float* dst = row + static_cast<std::int64_t>(oh) * g.wo;
          if (g.stride == 1) {
            if (static_cast<std::int64_t>(oh) * g.wo + whole > row_room || xp_end - src < whole)
              copy_row(dst, src, g.wo);
            else
              copy_row_overrun(dst, src, whole);
          } else
            UArrayMap(dst, g.wo) = Eigen::Map<const Eigen::ArrayXf, 0, Eigen::InnerStride<>>(
                src, g.wo, Eigen::InnerStride<>(g.stride));
        }
      }
}

// The adjoint of im2col followed by pad_sample: dx += crop(scatter(dcol)).  dxp is scratch for
// the padded gradient (unused when there is no padding).
// With overwrite, dx = crop(scatter(dcol)) instead (dx's old contents are ignored).
void col2im_add(const float* col, std::int64_t ld, const ConvGeom& g, float* dx, float* dxp,
                bool overwrite) {
  const std::int64_t P = ld;
  const int hp = padded_h(g), wp = padded_w(g);
  float* acc = dx;
  if (g.pad > 0) {
    std::fill(dxp, dxp + padded_size(g), 0.0f);
    acc = dxp;
  } else if (overwrite) {
    std::fill(dx, dx + static_cast<std::int64_t>(g.cin) * g.h * g.w, 0.0f);
  }
  for (int c = 0; c < g.cin; ++c)
    for (int i = 0; i < g.kh; ++i)
      for (int j = 0; j < g.kw; ++j) {
        const float* row = col + ((static_cast<std::int64_t>(c) * g.kh + i) * g.kw + j) * P;
        float* ac = acc + (static_cast<std::int64_t>(c) * hp + i) * wp + j;
        for (int oh = 0; oh < g.ho; ++oh) {
          float* dst = ac + static_cast<std::int64_t>(oh) * g.stride * wp;
          const float* src = row + static_cast<std::int64_t>(oh) * g.wo;
          if (g.stride == 1)
            add_row(dst, src, g.wo);
          else
            Eigen::Map<Eigen::ArrayXf, 0, Eigen::InnerStride<>>(
                dst, g.wo, Eigen::InnerStride<>(g.stride)) += ConstUArrayMap(src, g.wo);
        }
      }
  if (g.pad == 0) return;
  for (int c = 0; c < g.cin; ++c)
    for (int ih = 0; ih < g.h; ++ih)
      (overwrite ? copy_row : add_row)(
          dx + (static_cast<std::int64_t>(c) * g.h + ih) * g.w,
          dxp + (static_cast<std::int64_t>(c) * hp + ih + g.pad) * wp + g.pad, g.w);
}

// ---- depthwise direct kernels (one [H, W] plane, one [kh, kw] filter) ----

void depthwise_forward_plane(const float* x, const float* wt, float bias, const ConvGeom& g,
                             float* y) {
  std::fill(y, y + g.p(), bias);
  for (int i = 0; i < g.kh; ++i) {
    int oh_lo, oh_hi;
    valid_range(i - g.pad, g.stride, g.h, g.ho, oh_lo, oh_hi);
    for (int j = 0; j < g.kw; ++j) {
      const float wv = wt[i * g.kw + j];
      int ow_lo, ow_hi;
      valid_range(j - g.pad, g.stride, g.w, g.wo, ow_lo, ow_hi);
      for (int oh = oh_lo; oh < oh_hi; ++oh) {
        float* yr = y + static_cast<std::int64_t>(oh) * g.wo;
        const float* xr =
            x + static_cast<std::int64_t>(oh * g.stride - g.pad + i) * g.w + (j - g.pad);
        if (g.stride == 1) {
          for (int ow = ow_lo; ow < ow_hi; ++ow) yr[ow] += wv * xr[ow];
        } else {
          for (int ow = ow_lo; ow < ow_hi; ++ow) yr[ow] += wv * xr[ow * g.stride];
        }
      }
    }
  }
}

// dx += W^T dy (if dx), dw += dy * x (if dw).
void depthwise_backward_plane(const float* x, const float* wt, const float* dy, const ConvGeom& g,
                              float* dx, float* dw) {
  for (int i = 0; i < g.kh; ++i) {
    int oh_lo, oh_hi;
    valid_range(i - g.pad, g.stride, g.h, g.ho, oh_lo, oh_hi);
    for (int j = 0; j < g.kw; ++j) {
      const float wv = wt[i * g.kw + j];
      int ow_lo, ow_hi;
      valid_range(j - g.pad, g.stride, g.w, g.wo, ow_lo, ow_hi);
      float acc = 0.0f;
      for (int oh = oh_lo; oh < oh_hi; ++oh) {
        const float* dyr = dy + static_cast<std::int64_t>(oh) * g.wo;
        const std::int64_t xoff =
            static_cast<std::int64_t>(oh * g.stride - g.pad + i) * g.w + (j - g.pad);
        const float* xr = x + xoff;
        if (dw)
          for (int ow = ow_lo; ow < ow_hi; ++ow) acc += dyr[ow] * xr[ow * g.stride];
        if (dx) {
          float* dxr = dx + xoff;
          for (int ow = ow_lo; ow < ow_hi; ++ow) dxr[ow * g.stride] += wv * dyr[ow];
        }
      }
      if (dw) dw[i * g.kw + j] += acc;
    }
  }
}

// Stride 1 works on the padded-width grid instead: output position t = oh*wp + ow, ow < wp, whose
// last kw-1 columns are garbage and dropped.  Each filter tap then becomes one long contiguous
// axpy (or dot) over the whole plane rather than ho short rows.
std::int64_t dw_padded_plane(const ConvGeom& g) {
  return static_cast<std::int64_t>(padded_h(g)) * padded_w(g) + g.kw;
}
std::int64_t dw_ext_plane(const ConvGeom& g) {
  return static_cast<std::int64_t>(g.ho) * padded_w(g);
}

// Zero-padded plane with kw floats of slack so the last taps' reads stay in bounds.
void pad_plane(const float* x, const ConvGeom& g, float* xp) {
  const int wp = padded_w(g);
  std::fill(xp, xp + dw_padded_plane(g), 0.0f);
  for (int ih = 0; ih < g.h; ++ih)
    copy_row(xp + static_cast<std::int64_t>(ih + g.pad) * wp + g.pad, x + ih * g.w, g.w);
}

void depthwise_forward_plane_s1(const float* x, const float* wt, float bias, const ConvGeom& g,
                                float* y, float* xp, float* ext) {
  const int wp = padded_w(g);
  const std::int64_t T = dw_ext_plane(g);
  pad_plane(x, g, xp);
  UArrayMap e(ext, T);
  e.setConstant(bias);
  for (int i = 0; i < g.kh; ++i)
    for (int j = 0; j < g.kw; ++j) e += wt[i * g.kw + j] * ConstUArrayMap(xp + i * wp + j, T);
  for (int oh = 0; oh < g.ho; ++oh)
    copy_row(y + oh * g.wo, ext + static_cast<std::int64_t>(oh) * wp, g.wo);
}

void depthwise_backward_plane_s1(const float* x, const float* wt, const float* dy,
                                 const ConvGeom& g, float* dx, float* dw, float* xp, float* ext,
                                 float* dxp) {
  const int wp = padded_w(g);
  const std::int64_t T = dw_ext_plane(g);
  // dy on the padded-width grid; zero garbage columns make their taps contribute nothing.
  for (int oh = 0; oh < g.ho; ++oh) {
    float* e = ext + static_cast<std::int64_t>(oh) * wp;
    copy_row(e, dy + oh * g.wo, g.wo);
    std::fill(e + g.wo, e + wp, 0.0f);
  }
  ConstUArrayMap e(ext, T);
  if (dw) {
    pad_plane(x, g, xp);
    for (int i = 0; i < g.kh; ++i)
      for (int j = 0; j < g.kw; ++j)
        dw[i * g.kw + j] += (e * ConstUArrayMap(xp + i * wp + j, T)).sum();
  }
  if (dx) {
    std::fill(dxp, dxp + dw_padded_plane(g), 0.0f);
    for (int i = 0; i < g.kh; ++i)
      for (int j = 0; j < g.kw; ++j) UArrayMap(dxp + i * wp + j, T) += wt[i * g.kw + j] * e;
    for (int ih = 0; ih < g.h; ++ih)
      add_row(dx + ih * g.w, dxp + static_cast<std::int64_t>(ih + g.pad) * wp + g.pad, g.w);
  }
}

std::string conv_shapes(const Var& x, const Var& w) {
  return "(x " + x.shape().str() + ", w " + w.shape().str() + ")";
}

ConvGeom check_conv(const Var& x, const Var& w, const Var& b, const Conv2dOptions& opt) {
  if (!x.defined() || !w.defined()) throw std::invalid_argument("conv2d: x and w must be defined");
  if (x.shape().rank() != 4)
    throw std::invalid_argument("conv2d: x must be [N, C, H, W], got " + x.shape().str());
  if (w.shape().rank() != 4)
    throw std::invalid_argument("conv2d: w must be [Cout, Cin/groups, kh, kw], got " +
                                w.shape().str());
  if (opt.stride < 1)
    throw std::invalid_argument("conv2d: stride must be >= 1, got " + std::to_string(opt.stride));
  if (opt.padding < 0)
    throw std::invalid_argument("conv2d: padding must be >= 0, got " + std::to_string(opt.padding));
  if (opt.groups < 1)
    throw std::invalid_argument("conv2d: groups must be >= 1, got " + std::to_string(opt.groups));
  ConvGeom g{};
  g.n = x.dim(0), g.cin = x.dim(1), g.h = x.dim(2), g.w = x.dim(3);
  g.cout = w.dim(0), g.kh = w.dim(2), g.kw = w.dim(3);
  g.stride = opt.stride, g.pad = opt.padding, g.groups = opt.groups;
  if (g.cin % g.groups != 0)
    throw std::invalid_argument("conv2d: input channels " + std::to_string(g.cin) +
                                " not divisible by groups " + std::to_string(g.groups) + " " +
                                conv_shapes(x, w));
  if (g.cout % g.groups != 0)
    throw std::invalid_argument("conv2d: output channels " + std::to_string(g.cout) +
                                " not divisible by groups " + std::to_string(g.groups) + " " +
                                conv_shapes(x, w));
  if (w.dim(1) != g.cin / g.groups)
    throw std::invalid_argument("conv2d: w dim 1 must be Cin/groups = " +
                                std::to_string(g.cin / g.groups) + " " + conv_shapes(x, w));
  if (g.kh < 1 || g.kw < 1)
    throw std::invalid_argument("conv2d: empty kernel " + conv_shapes(x, w));
  if (g.kh > g.h + 2 * g.pad || g.kw > g.w + 2 * g.pad)
    throw std::invalid_argument("conv2d: kernel " + std::to_string(g.kh) + "x" +
                                std::to_string(g.kw) + " larger than padded input " +
                                std::to_string(g.h + 2 * g.pad) + "x" +
                                std::to_string(g.w + 2 * g.pad) + " " + conv_shapes(x, w) +
                                ", padding " + std::to_string(g.pad));
  if (b.defined() && (b.shape().rank() != 1 || b.dim(0) != g.cout))
    throw std::invalid_argument("conv2d: bias must be [" + std::to_string(g.cout) + "], got " +
                                b.shape().str() + " " + conv_shapes(x, w));
  g.ho = (g.h + 2 * g.pad - g.kh) / g.stride + 1;
  g.wo = (g.w + 2 * g.pad - g.kw) / g.stride + 1;
  return g;
}

// dst[s * ld + p] += tile[p * lanes + s] for s < nb, p < P: a batch-minor tile added back into
// nb NCHW planes ld apart, transposed once (8 x 8 register blocks) through a per-thread buffer
// and then added plane by plane.
void add_from_minor(const float* tile, int nb, std::int64_t lanes, std::int64_t P, float* dst,
                    std::int64_t ld) {
  thread_local std::vector<float> planes;
  planes.resize(static_cast<std::size_t>(nb) * P);
  detail::transpose(P, nb, tile, lanes, planes.data(), P);
  for (int s = 0; s < nb; ++s)
    UArrayMap(dst + s * ld, P) += ConstUArrayMap(planes.data() + s * P, P);
}

// ---- depthwise, batch-minor (outputs up to 32 wide) ----
//
// A depthwise filter has a single output row per plane, so the plane kernels above are short
// axpys per tap and row, strided ones for stride 2 (a 3x3 stride-2 tap on a 7x7 map: 3-4 products
// per row): 2-4 GFLOP/s on the cnn space's strided layers, a third of oneDNN's jit_dw
// (bench/conv_vs_onednn).  With kDwLanes samples of one channel laid out [row][column][sample]
// and zero-padded, every tap of every output position is one kDwLanes-wide multiply-add whatever
// the stride, and the weight gradient keeps one kDwLanes-wide partial sum per tap, reduced once
// per channel by a fixed tree.  Each lane is one sample's arithmetic in the plane kernels' order
// (bias, then taps in (i, j) order), so the result depends on the shapes only.
constexpr int kDwLanes = 16;

// Every map of the example spaces.  bench_conv_vs_onednn on the cnn space's layers, batch 64, 2
// threads, ms per training step of the layer, plane kernels (e501c98) -> batch-minor (374330a):
// 5x5 stride 2 on 14x14 (16 channels) 1.53 -> 0.21, 3x3 stride 2 on 7x7 (24) 0.41 -> 0.10, 3x3
// on 14x14 (24) 0.70 -> 0.50, 5x5 on 14x14 (18) 0.91 -> 0.44, 5x5 on 7x7 (24) 0.65 -> 0.22;
// darts_cell's 5x5 on 32x32 (16) 3.86 -> 2.75 (bench/README.md has every layer).
bool depthwise_minor(const ConvGeom& g) { return g.wo <= 32; }

std::int64_t dw_minor_plane(const ConvGeom& g) {
  return static_cast<std::int64_t>(padded_h(g)) * padded_w(g) * kDwLanes;
}

// Channel c of samples [s0, s0 + nb) into xp = [hp][wp][kDwLanes]: zeros in the padding and in
// the lanes past nb.  The plane is transposed whole into tmp ([h * w][kDwLanes]: 8 x 8 register
// blocks even where a row is narrower than 8) and its rows copied into place.
void dw_pack(const float* x, const ConvGeom& g, int c, int s0, int nb, float* tmp, float* xp) {
  const int wp = padded_w(g);
  const std::int64_t HW = static_cast<std::int64_t>(g.h) * g.w, CHW = g.cin * HW,
                     row = static_cast<std::int64_t>(g.w) * kDwLanes;
  if (nb < kDwLanes) std::fill(tmp, tmp + HW * kDwLanes, 0.0f);
  detail::transpose(nb, HW, x + s0 * CHW + c * HW, CHW, tmp, kDwLanes);
  const std::int64_t pitch = static_cast<std::int64_t>(wp) * kDwLanes,
                     left = static_cast<std::int64_t>(g.pad) * kDwLanes;
  std::fill(xp, xp + g.pad * pitch, 0.0f);
  for (int ih = 0; ih < g.h; ++ih) {
    float* d = xp + (ih + g.pad) * pitch;
    std::fill(d, d + left, 0.0f);
    std::copy(tmp + ih * row, tmp + (ih + 1) * row, d + left);
    std::fill(d + left + row, d + pitch, 0.0f);
  }
  std::fill(xp + (g.h + g.pad) * pitch, xp + dw_minor_plane(g), 0.0f);
}

// kDwLanes floats as two 8-float GCC vectors (one AVX2 register each; a single 16-float vector
// type would be lowered through the stack where the build targets AVX2), at any float alignment.
typedef float DwHalf __attribute__((vector_size(8 * sizeof(float)), aligned(alignof(float))));
static_assert(kDwLanes == 16);
struct DwVec {
  DwHalf lo, hi;
  DwVec& operator+=(const DwVec& o) {
    lo += o.lo;
    hi += o.hi;
    return *this;
  }
};
inline DwVec dw_splat(float v) { return {DwHalf{} + v, DwHalf{} + v}; }
inline DwVec dw_load(const float* p) {
  return {*reinterpret_cast<const DwHalf*>(p), *reinterpret_cast<const DwHalf*>(p + 8)};
}
inline void dw_store(float* p, const DwVec& v) {
  *reinterpret_cast<DwHalf*>(p) = v.lo;
  *reinterpret_cast<DwHalf*>(p + 8) = v.hi;
}
inline DwVec operator*(float a, const DwVec& v) { return {a * v.lo, a * v.hi}; }
inline DwVec operator*(const DwVec& a, const DwVec& b) { return {a.lo * b.lo, a.hi * b.hi}; }
inline DwVec operator+(const DwVec& a, const DwVec& b) { return {a.lo + b.lo, a.hi + b.hi}; }

// The output positions of one channel, ym = [ho * wo][kDwLanes]: kDwOutBlock positions of a row
// at a time, whose independent sums keep the multiply-add units busy (one sum alone waits on each
// multiply-add's latency), then the row's last few one at a time.
constexpr int kDwOutBlock = 4;

// kB consecutive output positions of a row from row0 (their first tap's input) into out.
template <int kB>
void dw_forward_positions(const float* row0, const float* wt, float bias, const ConvGeom& g,
                          float* out) {
  const std::int64_t step = static_cast<std::int64_t>(g.stride) * kDwLanes,
                     pitch = static_cast<std::int64_t>(padded_w(g)) * kDwLanes;
  DwVec acc[kB];
  for (DwVec& a : acc) a = dw_splat(bias);
  for (int i = 0; i < g.kh; ++i) {
    const float* row = row0 + i * pitch;
    for (int j = 0; j < g.kw; ++j) {
      const float wv = wt[i * g.kw + j];
      for (int u = 0; u < kB; ++u) acc[u] += wv * dw_load(row + u * step + j * kDwLanes);
    }
  }
  for (int u = 0; u < kB; ++u) dw_store(out + u * kDwLanes, acc[u]);
}

void dw_forward_minor(const float* xp, const float* wt, float bias, const ConvGeom& g, float* ym) {
  const std::int64_t step = static_cast<std::int64_t>(g.stride) * kDwLanes;
  for (int oh = 0; oh < g.ho; ++oh) {
    const float* rows = xp + static_cast<std::int64_t>(oh * g.stride) * padded_w(g) * kDwLanes;
    float* out = ym + static_cast<std::int64_t>(oh) * g.wo * kDwLanes;
    int ow = 0;
    for (; ow + kDwOutBlock <= g.wo; ow += kDwOutBlock)
      dw_forward_positions<kDwOutBlock>(rows + ow * step, wt, bias, g, out + ow * kDwLanes);
    for (; ow < g.wo; ++ow)
      dw_forward_positions<1>(rows + ow * step, wt, bias, g, out + ow * kDwLanes);
  }
}

// dwacc[t] += dym * (tap t's view of xp), lane by lane, over every output position: one filter
// row of taps at a time, each dym vector loaded once for the row's kKw sums (kKw = 0: any width,
// one tap at a time).
template <int kKw>
void dw_weight_grad_rows(const float* xp, const float* dym, const ConvGeom& g, float* dwacc) {
  const int wp = padded_w(g);
  const std::int64_t step = static_cast<std::int64_t>(g.stride) * kDwLanes;
  for (int i = 0; i < g.kh; ++i) {
    if constexpr (kKw > 0) {
      float* out = dwacc + static_cast<std::int64_t>(i) * kKw * kDwLanes;
      DwVec acc[kKw];
      for (int j = 0; j < kKw; ++j) acc[j] = dw_load(out + j * kDwLanes);
      for (int oh = 0; oh < g.ho; ++oh) {
        const float* v = xp + static_cast<std::int64_t>(oh * g.stride + i) * wp * kDwLanes;
        const float* e = dym + static_cast<std::int64_t>(oh) * g.wo * kDwLanes;
        for (int ow = 0; ow < g.wo; ++ow, v += step, e += kDwLanes) {
          const DwVec d = dw_load(e);
          for (int j = 0; j < kKw; ++j) acc[j] += d * dw_load(v + j * kDwLanes);
        }
      }
      for (int j = 0; j < kKw; ++j) dw_store(out + j * kDwLanes, acc[j]);
    } else {
      for (int j = 0; j < g.kw; ++j) {
        float* out = dwacc + static_cast<std::int64_t>(i * g.kw + j) * kDwLanes;
        DwVec acc = dw_load(out);
        for (int oh = 0; oh < g.ho; ++oh) {
          const float* v = xp + (static_cast<std::int64_t>(oh * g.stride + i) * wp + j) * kDwLanes;
          const float* e = dym + static_cast<std::int64_t>(oh) * g.wo * kDwLanes;
          for (int ow = 0; ow < g.wo; ++ow, v += step, e += kDwLanes)
            acc += dw_load(e) * dw_load(v);
        }
        dw_store(out, acc);
      }
    }
  }
}

void dw_weight_grad_minor(const float* xp, const float* dym, const ConvGeom& g, float* dwacc) {
  if (g.kw == 3)
    dw_weight_grad_rows<3>(xp, dym, g, dwacc);
  else if (g.kw == 5)
    dw_weight_grad_rows<5>(xp, dym, g, dwacc);
  else
    dw_weight_grad_rows<0>(xp, dym, g, dwacc);
}

// Along one axis, the (tap, output) pairs that read input index x: x + pad = output * stride +
// tap, taps ascending; pairs [start[x], start[x + 1]) of `pairs`.
struct DwAxisTaps {
  std::vector<std::array<int, 2>> pairs;
  std::vector<int> start;
};
DwAxisTaps dw_axis_taps(int in_size, int out_size, int kernel, int stride, int pad) {
  DwAxisTaps t;
  for (int x = 0; x < in_size; ++x) {
    t.start.push_back(static_cast<int>(t.pairs.size()));
    const int r = x + pad;
    for (int tap = r % stride; tap < kernel && tap <= r; tap += stride)
      if ((r - tap) / stride < out_size) t.pairs.push_back({tap, (r - tap) / stride});
  }
  t.start.push_back(static_cast<int>(t.pairs.size()));
  return t;
}

// Whether input indices x, x + stride, ..., x + (kDwOutBlock - 1) * stride (all < in_size) are
// read by the same taps at consecutive outputs: then their sums run side by side.
bool dw_axis_block(const DwAxisTaps& t, int x, int stride, int in_size) {
  const int last = x + (kDwOutBlock - 1) * stride;
  if (last >= in_size) return false;
  const int count = t.start[x + 1] - t.start[x];
  for (int u = 1; u < kDwOutBlock; ++u) {
    const int y = x + u * stride;
    if (t.start[y + 1] - t.start[y] != count) return false;
    for (int b = 0; b < count; ++b) {
      const auto& p0 = t.pairs[t.start[x] + b];
      const auto& pu = t.pairs[t.start[y] + b];
      if (pu[0] != p0[0] || pu[1] != p0[1] + u) return false;
    }
  }
  return true;
}

// Input positions x = iw, iw + stride, ..., kB of them, of input row ih: their sums of W^T dym
// (the taps reading them, as rows and cols list) into out (row ih of dxm).
template <int kB>
void dw_input_grad_positions(const float* wt, const float* dym, const ConvGeom& g,
                             const DwAxisTaps& rows, const DwAxisTaps& cols, int ih, int iw,
                             float* out) {
  DwVec acc[kB];
  for (DwVec& a : acc) a = dw_splat(0.0f);
  for (int a = rows.start[ih]; a < rows.start[ih + 1]; ++a) {
    const float* w_row = wt + rows.pairs[a][0] * g.kw;
    const float* dy_row = dym + static_cast<std::int64_t>(rows.pairs[a][1]) * g.wo * kDwLanes;
    for (int b = cols.start[iw]; b < cols.start[iw + 1]; ++b) {
      const float wv = w_row[cols.pairs[b][0]];
      const float* d = dy_row + static_cast<std::int64_t>(cols.pairs[b][1]) * kDwLanes;
      for (int u = 0; u < kB; ++u) acc[u] += wv * dw_load(d + u * kDwLanes);
    }
  }
  for (int u = 0; u < kB; ++u)
    dw_store(out + static_cast<std::int64_t>(iw + u * g.stride) * kDwLanes, acc[u]);
}

// dxm = [h * w][kDwLanes] = W^T dym, gathered per input position (each sum stays in registers;
// scattering each product into a padded plane cost a load and a store per multiply-add), the
// positions x, x + stride, ... of a row kDwOutBlock at a time where the same taps read them.
void dw_input_grad_minor(const float* wt, const float* dym, const ConvGeom& g,
                         const DwAxisTaps& rows, const DwAxisTaps& cols, float* dxm) {
  const int st = g.stride;
  for (int ih = 0; ih < g.h; ++ih) {
    float* out = dxm + static_cast<std::int64_t>(ih) * g.w * kDwLanes;
    for (int phase = 0; phase < st && phase < g.w; ++phase)
      for (int iw = phase; iw < g.w; iw += st) {
        if (dw_axis_block(cols, iw, st, g.w)) {
          dw_input_grad_positions<kDwOutBlock>(wt, dym, g, rows, cols, ih, iw, out);
          iw += (kDwOutBlock - 1) * st;
        } else {
          dw_input_grad_positions<1>(wt, dym, g, rows, cols, ih, iw, out);
        }
      }
  }
}

// What a depthwise backward pass reads (dY, x, w) and writes (dx, dw, db: null where that input
// needs no gradient) of its node (parents x, w and the bias if has_b).
struct DepthwiseBackwardIo {
  const float *dy, *x, *w;
  float *dx, *dw, *db;
};
DepthwiseBackwardIo depthwise_backward_io(Node& self, bool has_b) {
  Node& xn = *self.parents[0];
  Node& wn = *self.parents[1];
  Node* bn = has_b ? self.parents[2].get() : nullptr;
  return {self.grad.data(),
          xn.value.data(),
          wn.value.data(),
          xn.requires_grad ? grad_of(xn).data() : nullptr,
          wn.requires_grad ? grad_of(wn).data() : nullptr,
          bn && bn->requires_grad ? grad_of(*bn).data() : nullptr};
}

// The lanes' sum by a fixed tree (the same bits on every machine and thread count).
float lane_sum(float* a) {
  for (int width = kDwLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) a[l] += a[l + width];
  return a[0];
}

Var conv2d_depthwise_minor(const Var& x, const Var& w, const Var& b, const ConvGeom& g) {
  Tensor y(Shape{g.n, g.cout, g.ho, g.wo});
  const std::int64_t P = g.p(), K = static_cast<std::int64_t>(g.kh) * g.kw,
                     subs = (g.n + kDwLanes - 1) / kDwLanes;
  {
    const float* xd = x.value().data();
    const float* wd = w.value().data();
    const float* bd = b.defined() ? b.value().data() : nullptr;
    float* yd = y.data();
    // One task per (channel, sub-batch): each writes its own output planes.
    parallel_range(g.cin * subs, 2 * P * K * kDwLanes, [&](std::int64_t lo, std::int64_t hi) {
      const std::int64_t HW = static_cast<std::int64_t>(g.h) * g.w;
      float* xp = scratch(static_cast<std::size_t>(dw_minor_plane(g) + (HW + P) * kDwLanes), 0);
      float* tmp = xp + dw_minor_plane(g);
      float* ym = tmp + HW * kDwLanes;
      for (std::int64_t item = lo; item < hi; ++item) {
        const int c = static_cast<int>(item % g.cin),
                  s0 = static_cast<int>(item / g.cin) * kDwLanes;
        const int nb = std::min(kDwLanes, g.n - s0);
        dw_pack(xd, g, c, s0, nb, tmp, xp);
        dw_forward_minor(xp, wd + c * K, bd ? bd[c] : 0.0f, g, ym);
        detail::transpose(P, nb, ym, kDwLanes, yd + (static_cast<std::int64_t>(s0) * g.cin + c) * P,
                          g.cin * P);
      }
    });
  }
  std::vector<Var> parents{x, w};
  if (b.defined()) parents.push_back(b);
  return make_result(std::move(y), parents, [g, P, K, subs, has_b = b.defined()](Node& self) {
    const auto [dy, xd, wd, dx, dw, db] = depthwise_backward_io(self, has_b);
    const std::int64_t plane = dw_minor_plane(g), HW = static_cast<std::int64_t>(g.h) * g.w,
                       CHW = g.cin * HW;
    const DwAxisTaps rows = dw_axis_taps(g.h, g.ho, g.kh, g.stride, g.pad),
                     cols = dw_axis_taps(g.w, g.wo, g.kw, g.stride, g.pad);
    // One task per channel: it owns dw[c], db[c] and channel c's dx planes, and sums over the
    // sub-batches in order.
    parallel_range(g.cin, 4 * P * K * g.n, [&](std::int64_t lo, std::int64_t hi) {
      float* xp = scratch(static_cast<std::size_t>(plane + (HW + P + K + 1) * kDwLanes), 0);
      float* dxm = xp + plane;
      float* dym = dxm + HW * kDwLanes;
      float* dwacc = dym + P * kDwLanes;
      float* bacc = dwacc + K * kDwLanes;
      for (std::int64_t c = lo; c < hi; ++c) {
        std::fill(dwacc, dwacc + (K + 1) * kDwLanes, 0.0f);
        for (std::int64_t sub = 0; sub < subs; ++sub) {
          const int s0 = static_cast<int>(sub) * kDwLanes, nb = std::min(kDwLanes, g.n - s0);
          if (nb < kDwLanes) std::fill(dym, dym + P * kDwLanes, 0.0f);  // (the lanes past nb)
          detail::transpose(nb, P, dy + (static_cast<std::int64_t>(s0) * g.cin + c) * P, g.cin * P,
                            dym, kDwLanes);
          if (db) {
            DwVec acc = dw_load(bacc);
            for (std::int64_t p = 0; p < P; ++p) acc += dw_load(dym + p * kDwLanes);
            dw_store(bacc, acc);
          }
          if (dw) {
            dw_pack(xd, g, static_cast<int>(c), s0, nb, dxm, xp);  // (dxm as scratch)
            dw_weight_grad_minor(xp, dym, g, dwacc);
          }
          if (dx) {
            dw_input_grad_minor(wd + c * K, dym, g, rows, cols, dxm);
            add_from_minor(dxm, nb, kDwLanes, HW, dx + s0 * CHW + c * HW, CHW);
          }
        }
        if (dw)
          for (std::int64_t t = 0; t < K; ++t) dw[c * K + t] += lane_sum(dwacc + t * kDwLanes);
        if (db) db[c] += lane_sum(bacc);
      }
    });
  });
}

Var conv2d_depthwise(const Var& x, const Var& w, const Var& b, const ConvGeom& g) {
  if (depthwise_minor(g)) return conv2d_depthwise_minor(x, w, b, g);
  Tensor y(Shape{g.n, g.cout, g.ho, g.wo});
  const std::int64_t HW = static_cast<std::int64_t>(g.h) * g.w, P = g.p(),
                     K = static_cast<std::int64_t>(g.kh) * g.kw;
  {
    const float* xd = x.value().data();
    const float* wd = w.value().data();
    const float* bd = b.defined() ? b.value().data() : nullptr;
    float* yd = y.data();
    const std::int64_t planes = static_cast<std::int64_t>(g.n) * g.cin;
    parallel_range(planes, 2 * P * K, [&](std::int64_t lo, std::int64_t hi) {
      float* xp =
          g.stride == 1 ? scratch(static_cast<std::size_t>(dw_padded_plane(g)), 0) : nullptr;
      float* ext = g.stride == 1 ? scratch(static_cast<std::size_t>(dw_ext_plane(g)), 1) : nullptr;
      for (std::int64_t pl = lo; pl < hi; ++pl) {
        int c = static_cast<int>(pl % g.cin);
        if (g.stride == 1)
          depthwise_forward_plane_s1(xd + pl * HW, wd + c * K, bd ? bd[c] : 0.0f, g, yd + pl * P,
                                     xp, ext);
        else
          depthwise_forward_plane(xd + pl * HW, wd + c * K, bd ? bd[c] : 0.0f, g, yd + pl * P);
      }
    });
  }
  std::vector<Var> parents{x, w};
  if (b.defined()) parents.push_back(b);
  return make_result(std::move(y), parents, [g, HW, P, K, has_b = b.defined()](Node& self) {
    const auto [dy, xd, wd, dx, dw, db] = depthwise_backward_io(self, has_b);
    // Parallel over channels: each task owns dw[c], db[c] and the dx planes of channel c, and
    // sums over the batch in order n = 0..N-1.
    parallel_range(g.cin, 4 * P * K * g.n, [&](std::int64_t lo, std::int64_t hi) {
      const bool s1 = g.stride == 1;
      float* xp = s1 ? scratch(static_cast<std::size_t>(dw_padded_plane(g)), 0) : nullptr;
      float* ext = s1 ? scratch(static_cast<std::size_t>(dw_ext_plane(g)), 1) : nullptr;
      float* dxp = s1 ? scratch(static_cast<std::size_t>(dw_padded_plane(g)), 2) : nullptr;
      for (std::int64_t c = lo; c < hi; ++c) {
        float bacc = 0.0f;
        for (int n = 0; n < g.n; ++n) {
          const std::int64_t pl = static_cast<std::int64_t>(n) * g.cin + c;
          if (s1)
            depthwise_backward_plane_s1(xd + pl * HW, wd + c * K, dy + pl * P, g,
                                        dx ? dx + pl * HW : nullptr, dw ? dw + c * K : nullptr, xp,
                                        ext, dxp);
          else
            depthwise_backward_plane(xd + pl * HW, wd + c * K, dy + pl * P, g,
                                     dx ? dx + pl * HW : nullptr, dw ? dw + c * K : nullptr);
          if (db) bacc += ConstUArrayMap(dy + pl * P, P).sum();
        }
        if (db) db[c] += bacc;
      }
    });
  });
}

// Samples per im2col batch: enough columns (S*P) that one GEMM amortises its packing, while the
// batch's im2col matrix (and its output/gradient tile) stays within 256 KB, inside a per-core L2
// (1<<18 floats, 1 MB, measured 2-4% slower on a 512 KB-L2 EPYC).  At most a quarter of the
// batch so that the batches still spread over the threads.  Depends only on the problem's
// shape, so results do not depend on the thread count.
// Pointwise convolutions on maps of 64+ positions go one sample per GEMM: the sample is its own
// column matrix and output, so nothing is copied, and N = P is already long enough.  Batch 64, 2
// threads, ms per training step of the layer, batched -> direct: 16->16 on 32x32 1.21-1.24 ->
// 0.67-0.88, 32->32 on 16x16 0.70-0.74 -> 0.45-0.52, 64->64 on 8x8 0.65-0.67 -> 0.36-0.39,
// 128->32 on 16x16 2.2-2.8 -> 1.5-1.8, 256->64 on 8x8 2.0-2.6 -> 1.4 (darts_cell genomes: median
// 1.13x faster steps).
constexpr std::int64_t kBatchColFloats = std::int64_t{1} << 16;
int samples_per_batch(const ConvGeom& g) {
  if (g.pointwise() && g.p() >= 64) return 1;
  const std::int64_t per_sample = std::max<std::int64_t>(g.groups * g.k_g(), g.cout) * g.p();
  const std::int64_t fit = std::max<std::int64_t>(1, kBatchColFloats / per_sample);
  const std::int64_t quarter = std::max(1, (g.n + 3) / 4);
  return static_cast<int>(std::min(fit, quarter));
}

// Reduction chunks of the batch (fixed by N and the batch size): each holds >= 1 im2col batch.
int conv_chunks(const ConvGeom& g, int spb) {
  return static_cast<int>(std::min<std::int64_t>(kMaxReduceChunks, (g.n + spb - 1) / spb));
}

// Per-thread buffers for the batched path (more slots than detail::scratch offers).
enum ConvSlot { kCol, kDcol, kPad, kTile, kConvSlots };
struct ConvScratch;
float* conv_scratch(std::int64_t n, ConvSlot slot) {
  return detail::thread_scratch<ConvScratch, kConvSlots>(static_cast<std::size_t>(n), slot);
}

// Fills col ([groups*Kg, s*P], row stride ld) with the im2col matrices of samples x[0..s).
// Pointwise convolutions need no im2col: their column block is the sample itself (copied).
void im2col_batch(const float* x, int s, const ConvGeom& g, float* col, std::int64_t ld,
                  float* pbuf) {
  const std::int64_t CHW = static_cast<std::int64_t>(g.cin) * g.h * g.w, P = g.p();
  for (int i = 0; i < s; ++i) {
    const float* xp = pad_sample(x + i * CHW, g, pbuf);
    const std::int64_t room = s > 1 ? ld - i * P : std::numeric_limits<std::int64_t>::max();
    im2col(xp, xp + padded_size(g), g, col + i * P, ld, room);
  }
}

// tile[r][i*P + p] = src[(i*rows + r)*P + p] for i < s: NCHW slab -> [rows, s*P] matrix.
void gather_rows(const float* src, int s, std::int64_t rows, std::int64_t P, float* tile) {
  const std::int64_t ld = s * P;
  for (int i = 0; i < s; ++i)
    for (std::int64_t r = 0; r < rows; ++r)
      UArrayMap(tile + r * ld + i * P, P) = ConstUArrayMap(src + (i * rows + r) * P, P);
}

}  // namespace

// Stride-1 convolutions skip im2col: on the padded plane's grid (row stride wp), output position
// t = oh*wp + ow reads tap (c, i, j) at xp_c[i*wp + j + t], so each row of the column matrix is
// a contiguous view of the padded sample and the GEMM packs straight from it (forward:
// sgemm_b_row_blocks over several samples; weight gradient: sgemm_b_cols).  The wp - wo columns
// between output rows are computed and dropped (about 7 % more multiply-adds on 28x28 maps, 27 % on
// 14x14 with 5x5 kernels), against im2col's copy of every input value kh*kw times.
bool on_grid(const ConvGeom& g) { return g.stride == 1 && !g.pointwise(); }

// Stride-2 convolutions' forward pass runs on a grid too, by polyphase decomposition: the padded
// sample splits into its four phases (even / odd rows x even / odd columns), each plane
// [hq, wq] = [ceil(hp / 2), ceil(wp / 2)], and output position t = oh*wq + ow reads tap (c, i, j)
// at phase (i % 2, j % 2) of channel c, offset (i / 2)*wq + j / 2 + t: a contiguous view again.
// Each input value is copied once, into its phase, where im2col copied it about kh*kw / 4 times.
// (The weight gradient runs on the phases too; the input gradient keeps im2col.)  It pays where
// im2col copied much (kernels of 16+ taps) and the wq - wo dropped columns per row are few (at
// most a quarter of the row): cnn genomes with 5x5 stride-2 layers on 28x28 / 14x14 maps run
// 3-13 % faster steps; 3x3 kernels and 5x5 on 7x7 maps ran 3-6 % slower on the grid, so they
// keep im2col.
int phase_h(const ConvGeom& g) { return (padded_h(g) + 1) / 2; }
int phase_w(const ConvGeom& g) { return (padded_w(g) + 1) / 2; }
bool on_phase_grid(const ConvGeom& g) {
  return g.stride == 2 && g.kh * g.kw >= 16 && 4 * (phase_w(g) - g.wo) <= phase_w(g);
}

// The grid's row pitch and one sample's planes (padded, or its four phases per channel).
int grid_pitch(const ConvGeom& g) { return g.stride == 1 ? padded_w(g) : phase_w(g); }
std::int64_t grid_plane_size(const ConvGeom& g) {
  return g.stride == 1 ? padded_size(g)
                       : static_cast<std::int64_t>(g.cin) * 4 * phase_h(g) * phase_w(g);
}
std::int64_t grid_len(const ConvGeom& g) {
  return static_cast<std::int64_t>(g.ho - 1) * grid_pitch(g) + g.wo;
}

// The four phases of sample x (padded by g.pad) into buf: plane (c, a, b) holds the padded
// positions (2r + a, 2s + b), zeros outside the input.
const float* split_phases(const float* x, const ConvGeom& g, float* buf) {
  const int hq = phase_h(g), wq = phase_w(g);
  const std::int64_t plane = static_cast<std::int64_t>(hq) * wq;
  std::fill(buf, buf + grid_plane_size(g), 0.0f);
  for (int c = 0; c < g.cin; ++c)
    for (int ih = 0; ih < g.h; ++ih) {
      const int r = ih + g.pad;
      const float* src = x + (static_cast<std::int64_t>(c) * g.h + ih) * g.w;
      float* rows[2];
      for (int b = 0; b < 2; ++b)
        rows[b] = buf + (static_cast<std::int64_t>(c) * 4 + (r % 2) * 2 + b) * plane +
                  static_cast<std::int64_t>(r / 2) * wq;
      for (int iw = 0; iw < g.w; ++iw) {
        const int col = iw + g.pad;
        rows[col % 2][col / 2] = src[iw];
      }
    }
  return buf;
}

// One sample's grid planes: the padded sample (stride 1; x itself without padding) or its phases.
const float* grid_planes(const float* x, const ConvGeom& g, float* buf) {
  return g.stride == 1 ? pad_sample(x, g, buf) : split_phases(x, g, buf);
}

// Appends to taps the start of each tap p = (c, i, j) of group gr's channels in a sample's grid
// planes, in p order (one sample's k_g() row pointers).
void append_grid_taps(const float* xp, const ConvGeom& g, int gr, std::vector<const float*>& taps) {
  if (g.stride == 1) {
    const int hp = padded_h(g), wp = padded_w(g);
    for (int c = 0; c < g.cin_g(); ++c)
      for (int i = 0; i < g.kh; ++i)
        for (int j = 0; j < g.kw; ++j)
          taps.push_back(xp + (static_cast<std::int64_t>(gr * g.cin_g() + c) * hp + i) * wp + j);
    return;
  }
  const int hq = phase_h(g), wq = phase_w(g);
  for (int c = 0; c < g.cin_g(); ++c)
    for (int i = 0; i < g.kh; ++i)
      for (int j = 0; j < g.kw; ++j) {
        const std::int64_t phase =
            static_cast<std::int64_t>(gr * g.cin_g() + c) * 4 + (i % 2) * 2 + (j % 2);
        taps.push_back(xp + (phase * hq + i / 2) * wq + j / 2);
      }
}

// y[lo, hi) (=, or += with accumulate) = the stride-1 (or phase-grid stride-2) convolution of
// x[lo, hi) on the grid, plus
// the bias (may be null).  Several samples per GEMM (their grids side by side), so the weights
// are packed once for all of them.  Each sample's outputs depend only on that sample.
void grid_conv_samples(const float* xd, const float* wd, const float* bd, const ConvGeom& g,
                       float* yd, std::int64_t lo, std::int64_t hi, bool accumulate) {
  if (accumulate && bd)
    throw std::logic_error(
        "grid_conv_samples: a bias is only added when writing, not accumulating");
  const std::int64_t CHW = static_cast<std::int64_t>(g.cin) * g.h * g.w, P = g.p(), Kg = g.k_g();
  const int Cg = g.cout_g();
  const std::int64_t T = grid_len(g), plane = grid_plane_size(g);
  const int wp = grid_pitch(g);
  // As many samples as keep both the output tile and the padded inputs within the im2col
  // batch's budget.
  const int per_gemm = static_cast<int>(std::clamp<std::int64_t>(
      kBatchColFloats / std::max(static_cast<std::int64_t>(Cg) * T, plane), 1, hi - lo));
  float* pbuf = g.pad || g.stride != 1 ? conv_scratch(per_gemm * plane, kPad) : nullptr;
  float* tile = conv_scratch(static_cast<std::int64_t>(Cg) * per_gemm * T, kTile);
  thread_local std::vector<const float*> taps, planes;
  for (std::int64_t n0 = lo; n0 < hi; n0 += per_gemm) {
    const int s = static_cast<int>(std::min<std::int64_t>(per_gemm, hi - n0));
    const std::int64_t ld = s * T;
    planes.resize(static_cast<std::size_t>(s));
    for (int i = 0; i < s; ++i)
      planes[static_cast<std::size_t>(i)] =
          grid_planes(xd + (n0 + i) * CHW, g, pbuf ? pbuf + i * plane : nullptr);
    for (int gr = 0; gr < g.groups; ++gr) {
      taps.clear();
      for (int i = 0; i < s; ++i)
        append_grid_taps(planes[static_cast<std::size_t>(i)], g, gr, taps);
      detail::sgemm_b_row_blocks(Cg, T, s, Kg, {wd + gr * Cg * Kg, Kg, 1}, taps.data(), tile, ld,
                                 false);
      for (int i = 0; i < s; ++i)
        for (int co = 0; co < Cg; ++co) {
          const int oc = gr * Cg + co;
          float* dst = yd + ((n0 + i) * g.cout + oc) * P;
          const float* src = tile + co * ld + i * T;
          for (int oh = 0; oh < g.ho; ++oh) {
            UArrayMap d(dst + static_cast<std::int64_t>(oh) * g.wo, g.wo);
            ConstUArrayMap t(src + static_cast<std::int64_t>(oh) * wp, g.wo);
            if (accumulate)
              d += t;
            else if (bd)
              d = t + bd[oc];
            else
              d = t;
          }
        }
    }
  }
}

// A stride-1 convolution's input gradient is itself a stride-1 convolution: of dY, padded by
// k - 1 - pad, with each group's weights transposed (Cin_g <-> Cout_g) and flipped in both
// spatial axes.  Running it through grid_conv_samples batches samples per GEMM and needs no
// col2im scatter.  Square kernels with pad <= k - 1 only (the transposed padding is one number).
bool grid_input_gradient(const ConvGeom& g) {
  return on_grid(g) && g.kh == g.kw && g.pad <= g.kh - 1;
}
ConvGeom transposed_geom(const ConvGeom& g) {
  ConvGeom t = g;
  t.cin = g.cout, t.h = g.ho, t.w = g.wo;
  t.cout = g.cin, t.ho = g.h, t.wo = g.w;
  t.pad = g.kh - 1 - g.pad;
  return t;
}
// wt[gr][ci][co][i][j] = w[gr][co][ci][kh-1-i][kw-1-j] (per group: [Cout_g, Cin_g] transposed).
void transpose_flip_weights(const float* w, const ConvGeom& g, float* wt) {
  const int Cg = g.cout_g(), Ig = g.cin_g(), kk = g.kh * g.kw;
  for (int gr = 0; gr < g.groups; ++gr)
    for (int co = 0; co < Cg; ++co)
      for (int ci = 0; ci < Ig; ++ci) {
        const float* src = w + ((static_cast<std::int64_t>(gr) * Cg + co) * Ig + ci) * kk;
        float* dst = wt + ((static_cast<std::int64_t>(gr) * Ig + ci) * Cg + co) * kk;
        for (int t = 0; t < kk; ++t) dst[t] = src[kk - 1 - t];
      }
}

// ---- batch-minor convolutions (maps up to 32 wide) ----
//
// On a small map the grid wastes much of each GEMM: a 5x5 kernel on 7x7 outputs computes 11
// columns per output row to keep 7 (+57 % multiply-adds).  With the sample index innermost
// instead (a sub-batch of nb samples laid out [channel][row][column][sample]), a tap's view for
// one output row is wo * nb contiguous floats and nothing between rows is computed: the GEMM for
// output row oh reads tap (c, i, j) at base(c, i, j) + oh * row_pitch.  Stride 2 works the same
// on the four phases of the padded planes.  The layout costs a transpose of the sub-batch in and
// of the output out; the weight gradient sums over (ow, sample) runs of wo * nb.
//
// Results depend only on the shapes: sub-batches of kMinorBatch samples from each chunk's start.
constexpr int kMinorBatch = 16;

// Whether conv2d runs g batch-minor: stride 1 or 2 with outputs up to 32 wide (the spaces'
// 28x28 and 32x32 inputs and everything below them).  Single thread, batch 128, forward /
// backward ms, grid -> batch-minor: 16->16 3x3 on 28x28 4.2-4.5 / 12.5-13.2 -> 3.2 / 10.7-11.2,
// 32->32 3x3 on 32x32 19.1-19.3 / 48.9-51.4 -> 15.2-16.3 / 42.3-45.3, 3->16 3x3 on 32x32 (no
// input gradient) 1.30-1.38 / 3.81-4.03 -> 1.48-1.57 / 3.55-3.59.  On 56x56 and 64x64 maps (batch
// 64) the two were within a few percent either way, and the grid needs less scratch there.
bool batch_minor(const ConvGeom& g) {
  return (g.stride == 1 || g.stride == 2) && !g.pointwise() && !g.depthwise() && g.wo <= 32;
}

// One sub-batch's planes, batch-minor: stride 1 the padded planes [c][hp][wp][nb]; stride 2 their
// phases [c][a][b][hq][wq][nb] (plane (a, b) holds padded positions (2r + a, 2q + b)).
struct MinorPlanes {
  const ConvGeom& g;
  int nb;
  int ph() const { return g.stride == 1 ? padded_h(g) : phase_h(g); }
  int pw() const { return g.stride == 1 ? padded_w(g) : phase_w(g); }
  std::int64_t plane() const { return static_cast<std::int64_t>(ph()) * pw() * nb; }
  std::int64_t size() const {
    return static_cast<std::int64_t>(g.cin) * (g.stride == 1 ? 1 : 4) * plane();
  }
  std::int64_t row_pitch() const { return static_cast<std::int64_t>(pw()) * nb; }
  // Offset of tap (c, i, j)'s view for output row 0.
  std::int64_t tap(int c, int i, int j) const {
    if (g.stride == 1)
      return (static_cast<std::int64_t>(c) * ph() + i) * row_pitch() +
             static_cast<std::int64_t>(j) * nb;
    const std::int64_t p = (static_cast<std::int64_t>(c) * 2 + i % 2) * 2 + j % 2;
    return p * plane() + (i / 2) * row_pitch() + static_cast<std::int64_t>(j / 2) * nb;
  }
};

// Walks the planes of mp row by row: fn(plane_row, y, q_lo, q_hi, x_lo) for plane row r of channel
// c's phase (a, b) (stride 1: the one plane), whose padded positions are (st*r + a, st*q + b):
// plane_row is the row's offset, y its input row (-1: a padding row), and columns [q_lo, q_hi)
// hold input columns x_lo, x_lo + st, ...; the others are padding.
template <class F>
void for_minor_rows(const MinorPlanes& mp, F&& fn) {
  const ConvGeom& g = mp.g;
  const int st = g.stride, ph = mp.ph(), pw = mp.pw();
  for (int c = 0; c < g.cin; ++c)
    for (int a = 0; a < st; ++a)
      for (int b = 0; b < st; ++b) {
        // Columns with pad <= st*q + b < pad + w: q in [ceil((pad - b) / st), ceil((pad + w - b) /
        // st)).
        const int q_lo = std::max(0, (g.pad - b + st - 1) / st);
        const int q_hi = std::min(pw, std::max(q_lo, (g.pad + g.w - b + st - 1) / st));
        const std::int64_t plane = ((static_cast<std::int64_t>(c) * st + a) * st + b) * mp.plane();
        for (int r = 0; r < ph; ++r) {
          const int y = st * r + a - g.pad;
          fn(c, plane + r * mp.row_pitch(), y >= 0 && y < g.h ? y : -1, q_lo, q_hi,
             st * q_lo + b - g.pad);
        }
      }
}

// Writes samples x[0..nb) (NCHW) into mp's layout at dst, zeros in the padding.
void pack_minor(const float* x, const MinorPlanes& mp, float* dst) {
  const ConvGeom& g = mp.g;
  const std::int64_t CHW = static_cast<std::int64_t>(g.cin) * g.h * g.w, HW = g.h * g.w;
  const int nb = mp.nb, st = g.stride, pw = mp.pw();
  // Stride 2: channel c's whole plane is transposed once ([h * w][nb], 8 x 8 register blocks
  // however narrow its rows) and each phase row copies nb-float runs out of it; element by
  // element from the NCHW rows this took a fifth of a 3x3 stride-2 layer's forward pass.
  thread_local std::vector<float> plane;
  if (st != 1) plane.resize(static_cast<std::size_t>(HW) * nb);
  int transposed = -1;
  for_minor_rows(mp, [&](int c, std::int64_t row, int y, int q_lo, int q_hi, int x_lo) {
    float* d = dst + row;
    if (y < 0) {
      std::fill(d, d + static_cast<std::int64_t>(pw) * nb, 0.0f);
      return;
    }
    std::fill(d, d + static_cast<std::int64_t>(q_lo) * nb, 0.0f);
    std::fill(d + static_cast<std::int64_t>(q_hi) * nb, d + static_cast<std::int64_t>(pw) * nb,
              0.0f);
    if (st == 1) {
      detail::transpose(nb, q_hi - q_lo, x + c * HW + static_cast<std::int64_t>(y) * g.w + x_lo,
                        CHW, d + static_cast<std::int64_t>(q_lo) * nb, nb);
      return;
    }
    if (c != transposed) {
      detail::transpose(nb, HW, x + c * HW, CHW, plane.data(), nb);
      transposed = c;
    }
    const float* src = plane.data() + (static_cast<std::int64_t>(y) * g.w + x_lo) * nb;
    for (int q = q_lo; q < q_hi; ++q)
      std::copy(src + static_cast<std::int64_t>(q - q_lo) * st * nb,
                src + (static_cast<std::int64_t>(q - q_lo) * st + 1) * nb,
                d + static_cast<std::int64_t>(q) * nb);
  });
}

// dx[s] (=, or += with accumulate) the unpadded part of mp's planes at src: pack_minor's adjoint.
void unpack_minor(const float* src, const MinorPlanes& mp, float* dx, bool accumulate) {
  const ConvGeom& g = mp.g;
  const std::int64_t CHW = static_cast<std::int64_t>(g.cin) * g.h * g.w, HW = g.h * g.w;
  const int nb = mp.nb, st = g.stride;
  if (st == 1 && !accumulate) {
    for_minor_rows(mp, [&](int c, std::int64_t row, int y, int q_lo, int q_hi, int x_lo) {
      if (y < 0) return;
      detail::transpose(q_hi - q_lo, nb, src + row + static_cast<std::int64_t>(q_lo) * nb, nb,
                        dx + c * HW + static_cast<std::int64_t>(y) * g.w + x_lo, CHW);
    });
    return;
  }
  // Otherwise (phases, or adding into dx) each channel's positions are gathered from its rows
  // into plane ([h * w][nb]: every position lies in exactly one phase row) in nb-float runs, and
  // the plane is transposed into dx once, as pack_minor does the other way.
  thread_local std::vector<float> plane;
  plane.resize(static_cast<std::size_t>(HW) * nb);
  auto flush = [&](int c) {
    if (accumulate)
      add_from_minor(plane.data(), nb, nb, HW, dx + c * HW, CHW);
    else
      detail::transpose(HW, nb, plane.data(), nb, dx + c * HW, CHW);
  };
  int current = -1;
  for_minor_rows(mp, [&](int c, std::int64_t row, int y, int q_lo, int q_hi, int x_lo) {
    if (c != current) {
      if (current >= 0) flush(current);
      current = c;
    }
    if (y < 0) return;
    const float* sr = src + row;
    float* d = plane.data() + (static_cast<std::int64_t>(y) * g.w + x_lo) * nb;
    for (int q = q_lo; q < q_hi; ++q)
      std::copy(sr + static_cast<std::int64_t>(q) * nb, sr + static_cast<std::int64_t>(q + 1) * nb,
                d + static_cast<std::int64_t>(q - q_lo) * st * nb);
  });
  if (current >= 0) flush(current);
}

// tile[c][p * nb + s] = src[s][c][p] for c < channels, p < P: an NCHW sub-batch batch-minor.
void to_minor(const float* src, int nb, int channels, std::int64_t P, float* tile) {
  for (int c = 0; c < channels; ++c)
    detail::transpose(nb, P, src + c * P, channels * P, tile + c * P * nb, nb);
}

// dst[s][c][p] (=, or += with accumulate) tile[c][p * nb + s] (+ bias[c]): back to NCHW.
void from_minor(const float* tile, int nb, int channels, std::int64_t P, const float* bias,
                float* dst, bool accumulate) {
  for (int c = 0; c < channels; ++c) {
    const float* t = tile + static_cast<std::int64_t>(c) * P * nb;
    if (accumulate) {
      add_from_minor(t, nb, nb, P, dst + c * P, channels * P);
      continue;
    }
    detail::transpose(P, nb, t, nb, dst + c * P, channels * P);
    if (bias)
      for (int s = 0; s < nb; ++s) {
        float* row = dst + (static_cast<std::int64_t>(s) * channels + c) * P;
        for (std::int64_t p = 0; p < P; ++p) row[p] += bias[c];
      }
  }
}

// Group gr's tap views for every output row: taps[oh * Kg + p] (the row blocks of
// sgemm_b_row_blocks; also the column pointers of the weight gradient, one row at a time).
void minor_taps(const float* planes, const MinorPlanes& mp, int gr,
                std::vector<const float*>& taps) {
  const ConvGeom& g = mp.g;
  const std::int64_t Kg = g.k_g();
  taps.resize(static_cast<std::size_t>(g.ho * Kg));
  std::size_t p = 0;
  for (int c = gr * g.cin_g(); c < (gr + 1) * g.cin_g(); ++c)
    for (int i = 0; i < g.kh; ++i)
      for (int j = 0; j < g.kw; ++j) taps[p++] = planes + mp.tap(c, i, j);
  for (int oh = 1; oh < g.ho; ++oh)
    for (std::int64_t q = 0; q < Kg; ++q)
      taps[static_cast<std::size_t>(oh * Kg + q)] =
          taps[static_cast<std::size_t>(q)] + oh * mp.row_pitch();
}

// Calls fn(n0, mp) for each sub-batch [n0, n0 + mp.nb) of [lo, hi).
template <class F>
void for_minor_sub_batches(const ConvGeom& g, std::int64_t lo, std::int64_t hi, F&& fn) {
  for (std::int64_t n0 = lo; n0 < hi; n0 += kMinorBatch)
    fn(n0, MinorPlanes{g, static_cast<int>(std::min<std::int64_t>(kMinorBatch, hi - n0))});
}

// Sub-batch n0's input planes, packed into this thread's padding scratch.
const float* minor_input(const float* xd, std::int64_t n0, const MinorPlanes& mp) {
  float* planes = conv_scratch(mp.size(), kPad);
  pack_minor(xd + n0 * static_cast<std::int64_t>(mp.g.cin) * mp.g.h * mp.g.w, mp, planes);
  return planes;
}

// y[lo, hi) (=, or += with accumulate) = conv(x[lo, hi)) + bias (may be null), batch-minor.
void minor_conv_samples(const float* xd, const float* wd, const float* bd, const ConvGeom& g,
                        float* yd, std::int64_t lo, std::int64_t hi, bool accumulate) {
  const std::int64_t P = g.p(), Kg = g.k_g();
  const int Cg = g.cout_g();
  thread_local std::vector<const float*> taps;
  for_minor_sub_batches(g, lo, hi, [&](std::int64_t n0, const MinorPlanes& mp) {
    const float* planes = minor_input(xd, n0, mp);
    float* tile = conv_scratch(g.cout * P * mp.nb, kTile);
    for (int gr = 0; gr < g.groups; ++gr) {
      minor_taps(planes, mp, gr, taps);
      detail::sgemm_b_row_blocks(Cg, g.wo * mp.nb, g.ho, Kg, {wd + gr * Cg * Kg, Kg, 1},
                                 taps.data(), tile + gr * Cg * P * mp.nb, P * mp.nb, false);
    }
    from_minor(tile, mp.nb, g.cout, P, bd, yd + n0 * g.cout * P, accumulate);
  });
}

// dw += the weight gradient of samples [lo, hi): dW_g[co][p] += the dot product of dY_g's row co
// with tap p's views, one segment of wo * nb per output row.  Up to kDotMaxRows output channels
// as dot products read in place (no packing); more as a GEMM per output row with the views
// packed, which then serve enough rows to pay for it.  Single thread, batch 128, backward ms,
// packed -> dot: 24->24 5x5 on 14x14 11.3-11.9 -> 10.1-10.4, 16->16 3x3 on 32x32 16.0-16.9 ->
// 13.2-14.0, 32->32 3x3 on 14x14 7.9-8.8 -> 7.2-8.3; but 48->48 5x5 on 7x7 10.7-11.1 ->
// 11.7-12.3 (each 4-row tile of dY sweeps all the views again).
constexpr int kDotMaxRows = 32;
void minor_weight_gradient(const float* xd, const float* dy, const ConvGeom& g, float* dw,
                           std::int64_t lo, std::int64_t hi) {
  const std::int64_t P = g.p(), Kg = g.k_g();
  const int Cg = g.cout_g();
  thread_local std::vector<const float*> taps;
  for_minor_sub_batches(g, lo, hi, [&](std::int64_t n0, const MinorPlanes& mp) {
    const float* planes = minor_input(xd, n0, mp);
    float* dym = conv_scratch(g.cout * P * mp.nb, kCol);
    to_minor(dy + n0 * g.cout * P, mp.nb, g.cout, P, dym);
    const std::int64_t run = static_cast<std::int64_t>(g.wo) * mp.nb, ld = P * mp.nb;
    for (int gr = 0; gr < g.groups; ++gr) {
      minor_taps(planes, mp, gr, taps);
      float* dw_g = dw + static_cast<std::int64_t>(gr) * Cg * Kg;
      if (Cg <= kDotMaxRows) {
        detail::sgemm_dot_segments(Cg, Kg, g.ho, run, dym + gr * Cg * ld, ld, run, taps.data(),
                                   dw_g, Kg, true);
        continue;
      }
      for (int oh = 0; oh < g.ho; ++oh)
        detail::sgemm_b_cols(Cg, Kg, run, {dym + gr * Cg * ld + oh * run, ld, 1},
                             taps.data() + oh * Kg, dw_g, Kg, true);
    }
  });
}

// dx[lo, hi) (=, or += with accumulate) the input gradient of samples [lo, hi) by columns
// (strided convolutions, whose transposed convolution is not one stride-1 convolution, and the
// stride-1 ones grid_input_gradient leaves out: non-square kernels, padding beyond k - 1): per
// output row, dcol_g = W_g^T dY_g[:, oh] [Kg, wo * nb], each tap's row added onto its view of
// the planes (contiguous, as in the forward pass), and the planes unpacked into dx.
void minor_input_gradient(const float* wd, const float* dy, const ConvGeom& g, float* dx,
                          std::int64_t lo, std::int64_t hi, bool accumulate) {
  const std::int64_t CHW = static_cast<std::int64_t>(g.cin) * g.h * g.w, P = g.p(), Kg = g.k_g();
  const int Cg = g.cout_g();
  for_minor_sub_batches(g, lo, hi, [&](std::int64_t n0, const MinorPlanes& mp) {
    const std::int64_t run = static_cast<std::int64_t>(g.wo) * mp.nb, ld = P * mp.nb;
    float* planes = conv_scratch(mp.size(), kPad);
    float* dym = conv_scratch(g.cout * ld, kCol);
    float* dcol = conv_scratch(Kg * run, kDcol);
    std::fill(planes, planes + mp.size(), 0.0f);
    to_minor(dy + n0 * g.cout * P, mp.nb, g.cout, P, dym);
    for (int gr = 0; gr < g.groups; ++gr)
      for (int oh = 0; oh < g.ho; ++oh) {
        detail::sgemm(Kg, run, Cg, {wd + gr * Cg * Kg, 1, Kg},
                      {dym + gr * Cg * ld + oh * run, ld, 1}, dcol, run, false);
        const float* row = dcol;
        for (int c = gr * g.cin_g(); c < (gr + 1) * g.cin_g(); ++c)
          for (int i = 0; i < g.kh; ++i)
            for (int j = 0; j < g.kw; ++j, row += run)
              UArrayMap(planes + mp.tap(c, i, j) + oh * mp.row_pitch(), run) +=
                  ConstUArrayMap(row, run);
      }
    unpack_minor(planes, mp, dx + n0 * CHW, accumulate);
  });
}

Var conv2d(const Var& x, const Var& w, const Var& b, const Conv2dOptions& opt) {
  const ConvGeom g = check_conv(x, w, b, opt);
  if (g.depthwise()) return conv2d_depthwise(x, w, b, g);
  if (g.stride == 1 && g.groups == 1) {
    const bool graph = grad_enabled();
    const detail::SpectralConvShape s{g.n,
                                      g.cin,
                                      g.h,
                                      g.w,
                                      g.cout,
                                      g.kh,
                                      g.kw,
                                      g.pad,
                                      graph && x.requires_grad(),
                                      graph && w.requires_grad()};
    if (detail::spectral_conv_pays(s)) return detail::conv2d_spectral(x, w, b, s);
  }

  const std::int64_t CHW = static_cast<std::int64_t>(g.cin) * g.h * g.w, P = g.p(), Kg = g.k_g();
  const int Cg = g.cout_g();
  const std::int64_t sample_flops = 2 * static_cast<std::int64_t>(g.cout) * Kg * P;
  // Batch-minor chunks hold whole sub-batches where the batch allows (short sub-batches make
  // short GEMM rows).
  const int spb = batch_minor(g) ? kMinorBatch : samples_per_batch(g);
  const int chunks = conv_chunks(g, spb);
  Tensor y(Shape{g.n, g.cout, g.ho, g.wo});
  {
    const float* xd = x.value().data();
    const float* bd = b.defined() ? b.value().data() : nullptr;
    const float* wd = w.value().data();
    float* yd = y.data();
    for_each_chunk(g.n, chunks, sample_flops, [&](int, std::int64_t lo, std::int64_t hi) {
      if (batch_minor(g)) {
        minor_conv_samples(xd, wd, bd, g, yd, lo, hi, false);
        return;
      }
      if (on_grid(g) || on_phase_grid(g)) {
        grid_conv_samples(xd, wd, bd, g, yd, lo, hi, false);
        return;
      }
      for (std::int64_t n0 = lo; n0 < hi; n0 += spb) {
        const int s = static_cast<int>(std::min<std::int64_t>(spb, hi - n0));
        const std::int64_t ld = s * P;
        // A single pointwise sample is its own column matrix and output: no copies at all.
        const bool direct = g.pointwise() && s == 1;
        const float* src = xd + n0 * CHW;
        if (!direct) {
          float* col = conv_scratch(g.groups * Kg * ld + 8, kCol);
          float* pbuf = g.pad ? conv_scratch(padded_size(g), kPad) : nullptr;
          im2col_batch(src, s, g, col, ld, pbuf);
          src = col;
        }
        float* out = s == 1 ? yd + n0 * g.cout * P : conv_scratch(g.cout * ld, kTile);
        for (int gr = 0; gr < g.groups; ++gr) {
          detail::sgemm(Cg, ld, Kg, {wd + gr * Cg * Kg, Kg, 1}, {src + gr * Kg * ld, ld, 1},
                        out + static_cast<std::int64_t>(gr) * Cg * ld, ld, false);
        }
        if (s == 1) {
          if (bd)
            MatrixMap(out, g.cout, P).colwise() += Eigen::Map<const Eigen::VectorXf>(bd, g.cout);
          continue;
        }
        // [Cout, s*P] tile -> NCHW, adding the bias on the way.
        for (int i = 0; i < s; ++i)
          for (int co = 0; co < g.cout; ++co) {
            UArrayMap dst(yd + ((n0 + i) * g.cout + co) * P, P);
            ConstUArrayMap t(out + co * ld + i * P, P);
            if (bd)
              dst = t + bd[co];
            else
              dst = t;
          }
      }
    });
  }

  std::vector<Var> parents{x, w};
  if (b.defined()) parents.push_back(b);
  return make_result(
      std::move(y), parents,
      [g, CHW, P, Kg, Cg, sample_flops, spb, chunks, has_b = b.defined()](Node& self) {
        Node& xn = *self.parents[0];
        Node& wn = *self.parents[1];
        Node* bn = has_b ? self.parents[2].get() : nullptr;
        const bool need_x = xn.requires_grad, need_w = wn.requires_grad,
                   need_b = bn && bn->requires_grad;
        const float* dy = self.grad.data();
        const float* xd = xn.value.data();
        const float* wd = wn.value.data();
        // A fresh dx is written sample by sample (no zero-fill pass over the whole gradient).
        bool dx_fresh = false;
        float* dx = need_x ? detail::grad_buffer(xn, dx_fresh) : nullptr;

        // Weight/bias gradients reduce over the batch: per-chunk partials, summed in chunk order.
        const std::int64_t wsize = static_cast<std::int64_t>(g.cout) * Kg;
        // Pooled buffer (a fresh zeroed vector this size would be mmap-backed: page faults per
        // step).
        Tensor dw_part_buf =
            need_w ? Tensor(Shape{static_cast<int>(chunks * wsize)}, 0.0f) : Tensor();
        float* dw_part_data = need_w ? dw_part_buf.data() : nullptr;
        std::vector<float> db_part(need_b ? static_cast<std::size_t>(chunks) * g.cout : 0, 0.0f);
        const std::int64_t flops = sample_flops * ((need_w ? 1 : 0) + (need_x ? 1 : 0)) + 1;
        // dX of a stride-1 convolution as the transposed convolution of dY (see
        // grid_input_gradient), batch-minor where the convolution itself is.
        const bool minor = batch_minor(g);
        const ConvGeom tg = transposed_geom(g);
        const bool dx_transposed = need_x && grid_input_gradient(g);
        const bool dx_minor = dx_transposed && minor && batch_minor(tg);
        const bool dx_on_grid = dx_transposed && !dx_minor;
        Tensor wt_buf = dx_transposed ? Tensor(Shape{static_cast<int>(g.cout * Kg)}) : Tensor();
        if (dx_transposed) transpose_flip_weights(wd, g, wt_buf.data());
        // dW batch-minor, or on the grid: stride 1 on the padded plane, stride 2 on the phases.
        const bool dw_minor = need_w && minor;
        const bool dw_on_grid = need_w && !minor && (on_grid(g) || on_phase_grid(g));
        // dY of a batch as one [Cout, s*P] matrix: the bias gradient and the im2col paths read
        // it; the grid and batch-minor paths read dY as it is.
        const bool dw_im2col = need_w && !dw_minor && !dw_on_grid;
        // Strided: by columns batch-minor for kernels of 4+ taps (single thread, batch 128: 5x5
        // 24->48 on 14x14 10.2 -> 8.4 ms, 3x3 16->32 on 28x28 8.6-9.1 -> 7.0-7.4 ms, 2x2 3.9-4.0
        // -> 3.4-3.5 ms), im2col for 1x1 (1.6 ms, 1.9 by columns).
        const bool dx_minor_columns = need_x && minor && !dx_transposed && g.kh * g.kw >= 4;
        const bool dx_im2col = need_x && !dx_transposed && !dx_minor_columns;
        const bool need_dyc = need_b || dw_im2col || dx_im2col;
        const bool per_batch = need_dyc || dw_on_grid;

        for_each_chunk(g.n, chunks, flops, [&](int c, std::int64_t lo, std::int64_t hi) {
          if (dx_on_grid) grid_conv_samples(dy, wt_buf.data(), nullptr, tg, dx, lo, hi, !dx_fresh);
          if (dx_minor) minor_conv_samples(dy, wt_buf.data(), nullptr, tg, dx, lo, hi, !dx_fresh);
          if (dx_minor_columns) minor_input_gradient(wd, dy, g, dx, lo, hi, !dx_fresh);
          if (dw_minor) minor_weight_gradient(xd, dy, g, dw_part_data + c * wsize, lo, hi);
          for (std::int64_t n0 = lo; per_batch && n0 < hi; n0 += spb) {
            const int s = static_cast<int>(std::min<std::int64_t>(spb, hi - n0));
            const std::int64_t ld = s * P;
            const bool direct = g.pointwise() && s == 1;
            // Padding scratch, also the grid planes of the weight gradient (one size for both:
            // a second request with a larger size would move the buffer).
            const std::int64_t pad_floats =
                std::max(g.pad ? padded_size(g) : 0,
                         dw_on_grid && (g.pad || g.stride != 1) ? grid_plane_size(g) : 0);
            float* pbuf = pad_floats ? conv_scratch(pad_floats, kPad) : nullptr;
            const float* dyc = dy + n0 * g.cout * P;
            if (s > 1 && need_dyc) {
              float* tile = conv_scratch(g.cout * ld, kTile);
              gather_rows(dyc, s, g.cout, P, tile);
              dyc = tile;
            }
            if (need_b) {
              Eigen::Map<Eigen::VectorXf> dbp(db_part.data() + static_cast<std::size_t>(c) * g.cout,
                                              g.cout);
              dbp += ConstMatrixMap(dyc, g.cout, ld).rowwise().sum();
            }
            if (dw_on_grid) {
              // dW_g += dY_g on the grid [Cg, T] (zeros between output rows) * taps^T [T, Kg]
              const std::int64_t T = grid_len(g);
              const int wp = grid_pitch(g);
              float* dyg = conv_scratch(g.cout * T, kCol);
              thread_local std::vector<const float*> taps;
              for (int i = 0; i < s; ++i) {
                const float* xp = grid_planes(xd + (n0 + i) * CHW, g, pbuf);
                std::fill(dyg, dyg + g.cout * T, 0.0f);
                for (int co = 0; co < g.cout; ++co)
                  for (int oh = 0; oh < g.ho; ++oh)
                    UArrayMap(dyg + co * T + static_cast<std::int64_t>(oh) * wp, g.wo) =
                        ConstUArrayMap(dy + ((n0 + i) * g.cout + co) * P + oh * g.wo, g.wo);
                for (int gr = 0; gr < g.groups; ++gr) {
                  taps.clear();
                  append_grid_taps(xp, g, gr, taps);
                  detail::sgemm_b_cols(
                      Cg, Kg, T, {dyg + static_cast<std::int64_t>(gr) * Cg * T, T, 1}, taps.data(),
                      dw_part_data + c * wsize + static_cast<std::int64_t>(gr) * Cg * Kg, Kg, true);
                }
              }
            } else if (dw_im2col) {
              const float* src = xd + n0 * CHW;
              if (!direct) {
                float* col = conv_scratch(g.groups * Kg * ld + 8, kCol);
                im2col_batch(src, s, g, col, ld, pbuf);
                src = col;
              }
              for (int gr = 0; gr < g.groups; ++gr) {
                // dW_g += dY_g [Cg, ld] * col_g^T [ld, Kg]
                detail::sgemm(Cg, Kg, ld, {dyc + static_cast<std::int64_t>(gr) * Cg * ld, ld, 1},
                              {src + gr * Kg * ld, 1, ld},
                              dw_part_data + c * wsize + static_cast<std::int64_t>(gr) * Cg * Kg,
                              Kg, true);
              }
            }
            if (dx_im2col) {
              // Direct pointwise: the GEMM writes dx itself.
              float* dst = direct ? dx + n0 * CHW : conv_scratch(g.groups * Kg * ld, kDcol);
              for (int gr = 0; gr < g.groups; ++gr) {
                // dcol_g [Kg, ld] (=, or += into an existing dx) W_g^T [Kg, Cg] * dY_g [Cg, ld]
                detail::sgemm(Kg, ld, Cg, {wd + gr * Cg * Kg, 1, Kg},
                              {dyc + static_cast<std::int64_t>(gr) * Cg * ld, ld, 1},
                              dst + gr * Kg * ld, ld, direct && !dx_fresh);
              }
              if (!direct)
                for (int i = 0; i < s; ++i)
                  col2im_add(dst + i * P, ld, g, dx + (n0 + i) * CHW, pbuf, dx_fresh);
            }
          }
        });
        if (need_w) {
          ArrayMap dw = grad_of(wn).array();
          for (int c = 0; c < chunks; ++c) dw += ConstUArrayMap(dw_part_data + c * wsize, wsize);
        }
        if (need_b) {
          ArrayMap db = grad_of(*bn).array();
          for (int c = 0; c < chunks; ++c)
            db += ConstUArrayMap(db_part.data() + static_cast<std::size_t>(c) * g.cout, g.cout);
        }
      });
}
// ---- pooling ----
namespace {

struct PoolGeom {
  int n, c, h, w, k, stride, pad, ho, wo;
  std::int64_t planes() const { return static_cast<std::int64_t>(n) * c; }
};

#if defined(__AVX2__) && !defined(__AVX512F__)
// 2x2 / stride-2 pooling, 8 windows at a time (the portable x86-64-v3 build): the even and odd
// floats of a row's next 2n (n <= 8) floats, in order, i.e. the windows' left and right
// columns.  Lanes past n hold zeros; the masked loads read nothing past the 2n floats.
// The first n of 8 floats at src (n <= 0: none), zeros in the other lanes; the masked load
// reads nothing past them.
inline __m256 load_lanes(const float* src, int n) {
  if (n >= 8) return _mm256_loadu_ps(src);
  if (n <= 0) return _mm256_setzero_ps();
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_maskload_ps(src, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes));
}

inline void split_window_columns(const float* row, int n, __m256& left, __m256& right) {
  const __m256 p0 = load_lanes(row, 2 * n);
  const __m256 p1 = 2 * n > 8 ? load_lanes(row + 8, 2 * n - 8) : _mm256_setzero_ps();
  left = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(p0, p1, _MM_SHUFFLE(2, 0, 2, 0))), 0xD8));
  right = _mm256_castpd_ps(_mm256_permute4x64_pd(
      _mm256_castps_pd(_mm256_shuffle_ps(p0, p1, _MM_SHUFFLE(3, 1, 3, 1))), 0xD8));
}

// Writes the first n lanes of v to dst (a whole vector when n == 8).
inline void store_lanes(float* dst, __m256 v, int n) {
  if (n == 8) return _mm256_storeu_ps(dst, v);
  alignas(32) float b[8];
  _mm256_store_ps(b, v);
  std::copy(b, b + n, dst);
}
inline void store_lanes(std::int32_t* dst, __m256i v, int n) {
  if (n == 8) return _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), v);
  alignas(32) std::int32_t b[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(b), v);
  std::copy(b, b + n, dst);
}

// row[2i] += v[i] and row[2i + 1] += v[i] for i < n: the adjoint of split_window_columns's
// columns summed.
inline void add_to_window_columns(float* row, __m256 v, int n) {
  const __m256 lo = _mm256_unpacklo_ps(v, v), hi = _mm256_unpackhi_ps(v, v);
  const __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20),  // v0 v0 v1 v1 v2 v2 v3 v3
      second = _mm256_permute2f128_ps(lo, hi, 0x31);          // v4 v4 ... v7 v7
  if (n == 8) {
    _mm256_storeu_ps(row, _mm256_add_ps(_mm256_loadu_ps(row), first));
    _mm256_storeu_ps(row + 8, _mm256_add_ps(_mm256_loadu_ps(row + 8), second));
    return;
  }
  alignas(32) float b[16];
  _mm256_store_ps(b, first);
  _mm256_store_ps(b + 8, second);
  for (int i = 0; i < 2 * n; ++i) row[i] += b[i];
}
#endif

PoolGeom check_pool(const char* op, const Var& x, int kernel, int stride, int padding) {
  const std::string name(op);
  if (!x.defined() || x.shape().rank() != 4)
    throw std::invalid_argument(name + ": x must be [N, C, H, W], got " +
                                (x.defined() ? x.shape().str() : std::string("undefined")));
  if (kernel < 1)
    throw std::invalid_argument(name + ": kernel must be >= 1, got " + std::to_string(kernel));
  if (stride < 1)
    throw std::invalid_argument(name + ": stride must be >= 1, got " + std::to_string(stride));
  // As in PyTorch: more padding than half a kernel would create windows with no real input.
  if (padding < 0 || 2 * padding > kernel)
    throw std::invalid_argument(name + ": padding " + std::to_string(padding) +
                                " must be in [0, kernel/2] for kernel " + std::to_string(kernel));
  PoolGeom g{x.dim(0), x.dim(1), x.dim(2), x.dim(3), kernel, stride, padding, 0, 0};
  if (kernel > g.h + 2 * padding || kernel > g.w + 2 * padding)
    throw std::invalid_argument(name + ": kernel " + std::to_string(kernel) +
                                " larger than padded input " + std::to_string(g.h + 2 * padding) +
                                "x" + std::to_string(g.w + 2 * padding) + " (x " + x.shape().str() +
                                ")");
  g.ho = (g.h + 2 * padding - kernel) / stride + 1;
  g.wo = (g.w + 2 * padding - kernel) / stride + 1;
  return g;
}

}  // namespace

Var max_pool2d(const Var& x, int kernel, int stride, int padding) {
  const PoolGeom g = check_pool("max_pool2d", x, kernel, stride, padding);
  const std::int64_t HW = static_cast<std::int64_t>(g.h) * g.w,
                     P = static_cast<std::int64_t>(g.ho) * g.wo;
  Tensor y(Shape{g.n, g.c, g.ho, g.wo});
  // Argmax index within the input plane, for routing the gradient in backward; only recorded
  // when a graph is being built.
  const bool keep = grad_enabled() && x.requires_grad();
  // Held in a (pooled, uninitialised) Tensor buffer, only ever accessed as int32: a fresh
  // zeroed std::vector this size would cost page faults and a memset on every step.
  Tensor argmax_buf = keep ? Tensor(Shape{static_cast<int>(g.planes() * P)}) : Tensor();
  auto* argmax_data = keep ? reinterpret_cast<std::int32_t*>(argmax_buf.data()) : nullptr;
  const float* xd = x.value().data();
  float* yd = y.data();
  const bool k2s2 = g.k == 2 && g.stride == 2 && g.pad == 0;
  parallel_range(g.planes(), P * g.k * g.k, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t pl = lo; pl < hi; ++pl) {
      const float* xp = xd + pl * HW;
      float* yp = yd + pl * P;
      std::int32_t* ap = keep ? argmax_data + pl * P : nullptr;
      if (k2s2) {
        // 2x2 windows, stride 2, all in bounds: the generic loop's scan order (a, b, c, d) and
        // strict '>' against -inf, branch-free so that the compiler vectorises it.
        for (int oh = 0; oh < g.ho; ++oh) {
          const float* r0 = xp + 2 * oh * g.w;
          const float* r1 = r0 + g.w;
          float* yr = yp + oh * g.wo;
          std::int32_t* ar = ap ? ap + oh * g.wo : nullptr;
          const std::int32_t base = 2 * oh * g.w;
          int ow = 0;
#if defined(__AVX512F__)
          {
            const __m512i even =
                _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
            const __m512i lane2 = _mm512_slli_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 1);
            const __m512i kb = _mm512_set1_epi32(1), kc = _mm512_set1_epi32(g.w),
                          kd = _mm512_set1_epi32(g.w + 1);
            for (; ow < g.wo; ow += 16) {
              const int n = std::min(16, g.wo - ow);
              const __mmask16 mo = static_cast<__mmask16>((1u << n) - 1u);
              const int n2 = 2 * n;
              const __mmask16 m0 = static_cast<__mmask16>(n2 >= 16 ? 0xFFFFu : (1u << n2) - 1u);
              const __mmask16 m1 = static_cast<__mmask16>(n2 <= 16 ? 0u : (1u << (n2 - 16)) - 1u);
              const __m512 x00 = _mm512_maskz_loadu_ps(m0, r0 + 2 * ow),
                           x01 = _mm512_maskz_loadu_ps(m1, r0 + 2 * ow + 16);
              const __m512 x10 = _mm512_maskz_loadu_ps(m0, r1 + 2 * ow),
                           x11 = _mm512_maskz_loadu_ps(m1, r1 + 2 * ow + 16);
              const __m512 a = _mm512_permutex2var_ps(x00, even, x01),
                           b = _mm512_permutex2var_ps(x00, odd, x01);
              const __m512 c = _mm512_permutex2var_ps(x10, even, x11),
                           d = _mm512_permutex2var_ps(x10, odd, x11);
              __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
              __m512i k = _mm512_setzero_si512();
              m = _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(a, m, _CMP_GT_OQ), a);
              __mmask16 t = _mm512_cmp_ps_mask(b, m, _CMP_GT_OQ);
              m = _mm512_mask_mov_ps(m, t, b), k = _mm512_mask_mov_epi32(k, t, kb);
              t = _mm512_cmp_ps_mask(c, m, _CMP_GT_OQ);
              m = _mm512_mask_mov_ps(m, t, c), k = _mm512_mask_mov_epi32(k, t, kc);
              t = _mm512_cmp_ps_mask(d, m, _CMP_GT_OQ);
              m = _mm512_mask_mov_ps(m, t, d), k = _mm512_mask_mov_epi32(k, t, kd);
              _mm512_mask_storeu_ps(yr + ow, mo, m);
              if (ar) {
                const __m512i idx =
                    _mm512_add_epi32(_mm512_add_epi32(k, lane2), _mm512_set1_epi32(base + 2 * ow));
                _mm512_mask_storeu_epi32(ar + ow, mo, idx);
              }
            }
          }
#elif defined(__AVX2__)
          // The same, 8 windows at a time (the portable x86-64-v3 build): the two rows' 16
          // floats are split into window columns a, b (row 0) and c, d (row 1).
          {
            const __m256i lane2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
            const __m256 kb = _mm256_castsi256_ps(_mm256_set1_epi32(1)),
                         kc = _mm256_castsi256_ps(_mm256_set1_epi32(g.w)),
                         kd = _mm256_castsi256_ps(_mm256_set1_epi32(g.w + 1));
            // Whole vectors, then the row's last n < 8 windows through a buffer (maps of 14 or
            // 7 columns have rows of 7 or 3 windows: without this they would all run scalar).
            for (; ow < g.wo; ow += 8) {
              const int n = std::min(8, g.wo - ow);
              __m256 a, b, c, d;
              split_window_columns(r0 + 2 * ow, n, a, b);
              split_window_columns(r1 + 2 * ow, n, c, d);
              __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
              __m256 k = _mm256_setzero_ps();  // window offsets, as int32 bits
              m = _mm256_blendv_ps(m, a, _mm256_cmp_ps(a, m, _CMP_GT_OQ));
              __m256 t = _mm256_cmp_ps(b, m, _CMP_GT_OQ);
              m = _mm256_blendv_ps(m, b, t), k = _mm256_blendv_ps(k, kb, t);
              t = _mm256_cmp_ps(c, m, _CMP_GT_OQ);
              m = _mm256_blendv_ps(m, c, t), k = _mm256_blendv_ps(k, kc, t);
              t = _mm256_cmp_ps(d, m, _CMP_GT_OQ);
              m = _mm256_blendv_ps(m, d, t), k = _mm256_blendv_ps(k, kd, t);
              const __m256i idx = _mm256_add_epi32(
                  _mm256_add_epi32(_mm256_castps_si256(k), lane2), _mm256_set1_epi32(base + 2 * ow));
              store_lanes(yr + ow, m, n);
              if (ar) store_lanes(ar + ow, idx, n);
            }
          }
#endif
          for (; ow < g.wo; ++ow) {
            const float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
            float m = -std::numeric_limits<float>::infinity();
            std::int32_t k = 0;
            if (a > m) m = a;
            k = b > m ? 1 : k;
            m = b > m ? b : m;
            k = c > m ? g.w : k;
            m = c > m ? c : m;
            k = d > m ? g.w + 1 : k;
            m = d > m ? d : m;
            yr[ow] = m;
            if (ar) ar[ow] = base + 2 * ow + k;
          }
        }
        continue;
      }
      for (int oh = 0; oh < g.ho; ++oh) {
        const int h0 = std::max(0, oh * g.stride - g.pad),
                  h1 = std::min(g.h, oh * g.stride - g.pad + g.k);
        for (int ow = 0; ow < g.wo; ++ow) {
          const int w0 = std::max(0, ow * g.stride - g.pad),
                    w1 = std::min(g.w, ow * g.stride - g.pad + g.k);
          float best = -std::numeric_limits<float>::infinity();
          std::int32_t bi = h0 * g.w + w0;
          for (int ih = h0; ih < h1; ++ih)
            for (int iw = w0; iw < w1; ++iw) {
              const float v = xp[ih * g.w + iw];
              if (v > best) best = v, bi = ih * g.w + iw;
            }
          yp[oh * g.wo + ow] = best;
          if (ap) ap[oh * g.wo + ow] = bi;
        }
      }
    }
  });
  return make_result(std::move(y), {x}, [g, HW, P, argmax_buf](Node& self) {
    Node& xn = *self.parents[0];
    bool fresh = false;
    float* dx = detail::grad_buffer(xn, fresh);
    const float* dy = self.grad.data();
    // Planes are disjoint, so overlapping windows only collide within one task's plane.  A fresh
    // gradient is zeroed one plane at a time just before its scatter (while it is in cache).
    parallel_range(g.planes(), P, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t pl = lo; pl < hi; ++pl) {
        const std::int32_t* ap = reinterpret_cast<const std::int32_t*>(argmax_buf.data()) + pl * P;
        float* dxp = dx + pl * HW;
        const float* dyp = dy + pl * P;
        if (fresh) std::fill(dxp, dxp + HW, 0.0f);
        for (std::int64_t o = 0; o < P; ++o) dxp[ap[o]] += dyp[o];
      }
    });
  });
}

// Average pooling is separable: a window sum is a sum over the window's rows of each row's
// horizontal window sum, and the count of real (unpadded) elements, by which
// count_include_pad=false divides, is rows x columns.  So each plane is summed along rows
// (k contiguous vector adds over a zero-padded copy of the row), then along columns (k row
// adds), instead of k*k scalar loads per output: several times faster on the 3x3 stride-1
// pools of cell spaces.  Backward is the adjoint of the same two passes.
namespace {

struct AvgPoolPlan {
  PoolGeom g;
  int wp;                                 // padded row length
  std::vector<float> inv_rows, inv_cols;  // 1 / real rows (per oh), 1 / real columns (per ow)
  std::vector<int> row_lo, row_hi;        // input rows [lo, hi) of output row oh
};

AvgPoolPlan plan_avg_pool(const PoolGeom& g) {
  AvgPoolPlan p{g, g.w + 2 * g.pad, {}, {}, {}, {}};
  for (int oh = 0; oh < g.ho; ++oh) {
    const int h0 = std::max(0, oh * g.stride - g.pad),
              h1 = std::min(g.h, oh * g.stride - g.pad + g.k);
    p.row_lo.push_back(h0);
    p.row_hi.push_back(h1);
    p.inv_rows.push_back(1.0f / static_cast<float>(h1 - h0));
  }
  for (int ow = 0; ow < g.wo; ++ow) {
    const int w0 = std::max(0, ow * g.stride - g.pad),
              w1 = std::min(g.w, ow * g.stride - g.pad + g.k);
    p.inv_cols.push_back(1.0f / static_cast<float>(w1 - w0));
  }
  return p;
}

// out[ow] = sum_j row[ow*stride + j], j < k (row zero-padded, wp long).
inline void window_sums(const float* row, const PoolGeom& g, float* out) {
  UArrayMap o(out, g.wo);
  if (g.stride == 1) {
    o = ConstUArrayMap(row, g.wo);
    for (int j = 1; j < g.k; ++j) o += ConstUArrayMap(row + j, g.wo);
    return;
  }
  using Strided = Eigen::Map<const Eigen::ArrayXf, 0, Eigen::InnerStride<>>;
  o = Strided(row, g.wo, Eigen::InnerStride<>(g.stride));
  for (int j = 1; j < g.k; ++j) o += Strided(row + j, g.wo, Eigen::InnerStride<>(g.stride));
}

// The adjoint: row[ow*stride + j] += d[ow] for j < k.
inline void window_sums_adjoint(const float* d, const PoolGeom& g, float* row) {
  ConstUArrayMap dm(d, g.wo);
  for (int j = 0; j < g.k; ++j) {
    if (g.stride == 1)
      UArrayMap(row + j, g.wo) += dm;
    else
      Eigen::Map<Eigen::ArrayXf, 0, Eigen::InnerStride<>>(row + j, g.wo,
                                                          Eigen::InnerStride<>(g.stride)) += dm;
  }
}

}  // namespace

Var avg_pool2d(const Var& x, int kernel, int stride, int padding) {
  const PoolGeom g = check_pool("avg_pool2d", x, kernel, stride, padding);
  const std::int64_t HW = static_cast<std::int64_t>(g.h) * g.w,
                     P = static_cast<std::int64_t>(g.ho) * g.wo;
  auto plan = std::make_shared<const AvgPoolPlan>(plan_avg_pool(g));
  Tensor y(Shape{g.n, g.c, g.ho, g.wo});
  const float* xd = x.value().data();
  float* yd = y.data();
#if defined(__AVX2__) && !defined(__AVX512F__)
  // 2x2 windows, stride 2, no padding (the cnn space's pools): 8 windows at a time, the same
  // sums in the same order as the separable path below, ((a + b) + (c + d)) * 0.25.
  const bool k2s2 = g.k == 2 && g.stride == 2 && g.pad == 0;
#else
  const bool k2s2 = false;
#endif
  parallel_range(g.planes(), P * g.k * 2, [&](std::int64_t lo, std::int64_t hi) {
    if (k2s2) {
#if defined(__AVX2__) && !defined(__AVX512F__)
      const __m256 quarter = _mm256_set1_ps(0.25f);
      for (std::int64_t p = lo; p < hi; ++p)
        for (int oh = 0; oh < g.ho; ++oh) {
          const float* r0 = xd + p * HW + static_cast<std::int64_t>(2 * oh) * g.w;
          float* yr = yd + p * P + static_cast<std::int64_t>(oh) * g.wo;
          for (int ow = 0; ow < g.wo; ow += 8) {
            const int n = std::min(8, g.wo - ow);
            __m256 a, b, c, d;
            split_window_columns(r0 + 2 * ow, n, a, b);
            split_window_columns(r0 + g.w + 2 * ow, n, c, d);
            const __m256 sum = _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d));
            store_lanes(yr + ow, _mm256_mul_ps(sum, quarter), n);
          }
        }
#endif
      return;
    }
    const AvgPoolPlan& pl = *plan;
    float* row = scratch(static_cast<std::size_t>(pl.wp), 0);
    float* hs = scratch(static_cast<std::size_t>(g.h) * g.wo, 1);  // horizontal sums per row
    std::fill(row, row + pl.wp, 0.0f);                             // the padding stays zero
    for (std::int64_t p = lo; p < hi; ++p) {
      const float* xp = xd + p * HW;
      for (int ih = 0; ih < g.h; ++ih) {
        copy_row(row + g.pad, xp + static_cast<std::int64_t>(ih) * g.w, g.w);
        window_sums(row, g, hs + static_cast<std::int64_t>(ih) * g.wo);
      }
      ConstUArrayMap inv_cols(pl.inv_cols.data(), g.wo);
      for (int oh = 0; oh < g.ho; ++oh) {
        UArrayMap out(yd + p * P + static_cast<std::int64_t>(oh) * g.wo, g.wo);
        out = ConstUArrayMap(hs + static_cast<std::int64_t>(pl.row_lo[oh]) * g.wo, g.wo);
        for (int ih = pl.row_lo[oh] + 1; ih < pl.row_hi[oh]; ++ih)
          out += ConstUArrayMap(hs + static_cast<std::int64_t>(ih) * g.wo, g.wo);
        out *= inv_cols * pl.inv_rows[oh];
      }
    }
  });
  return make_result(std::move(y), {x}, [g, HW, P, plan, k2s2](Node& self) {
    Node& xn = *self.parents[0];
    float* dx = grad_of(xn).data();
    const float* dy = self.grad.data();
    parallel_range(g.planes(), P * g.k * 2, [&](std::int64_t lo, std::int64_t hi) {
      if (k2s2) {
#if defined(__AVX2__) && !defined(__AVX512F__)
        // Each input of a window gets (dy * 1/2) * 1/2, as the separable adjoint gives it.
        const __m256 half = _mm256_set1_ps(0.5f);
        for (std::int64_t p = lo; p < hi; ++p)
          for (int oh = 0; oh < g.ho; ++oh) {
            float* r0 = dx + p * HW + static_cast<std::int64_t>(2 * oh) * g.w;
            const float* dr = dy + p * P + static_cast<std::int64_t>(oh) * g.wo;
            for (int ow = 0; ow < g.wo; ow += 8) {
              const int n = std::min(8, g.wo - ow);
              const __m256 v = _mm256_mul_ps(_mm256_mul_ps(load_lanes(dr + ow, n), half), half);
              add_to_window_columns(r0 + 2 * ow, v, n);
              add_to_window_columns(r0 + g.w + 2 * ow, v, n);
            }
          }
#endif
        return;
      }
      const AvgPoolPlan& pl = *plan;
      float* row = scratch(static_cast<std::size_t>(pl.wp), 0);
      float* dhs = scratch(static_cast<std::size_t>(g.h) * g.wo, 1);
      float* d = scratch(static_cast<std::size_t>(g.wo), 2);
      ConstUArrayMap inv_cols(pl.inv_cols.data(), g.wo);
      for (std::int64_t p = lo; p < hi; ++p) {
        std::fill(dhs, dhs + static_cast<std::int64_t>(g.h) * g.wo, 0.0f);
        for (int oh = 0; oh < g.ho; ++oh) {
          UArrayMap(d, g.wo) =
              ConstUArrayMap(dy + p * P + static_cast<std::int64_t>(oh) * g.wo, g.wo) * inv_cols *
              pl.inv_rows[oh];
          for (int ih = pl.row_lo[oh]; ih < pl.row_hi[oh]; ++ih)
            UArrayMap(dhs + static_cast<std::int64_t>(ih) * g.wo, g.wo) += ConstUArrayMap(d, g.wo);
        }
        float* dxp = dx + p * HW;
        for (int ih = 0; ih < g.h; ++ih) {
          std::fill(row, row + pl.wp, 0.0f);
          window_sums_adjoint(dhs + static_cast<std::int64_t>(ih) * g.wo, g, row);
          add_row(dxp + static_cast<std::int64_t>(ih) * g.w, row + g.pad, g.w);
        }
      }
    });
  });
}

Var global_avg_pool(const Var& x) {
  if (!x.defined() || x.shape().rank() != 4)
    throw std::invalid_argument("global_avg_pool: x must be [N, C, H, W], got " +
                                (x.defined() ? x.shape().str() : std::string("undefined")));
  const int n = x.dim(0), c = x.dim(1);
  const std::int64_t HW = static_cast<std::int64_t>(x.dim(2)) * x.dim(3);
  if (HW == 0)
    throw std::invalid_argument("global_avg_pool: empty spatial extent in " + x.shape().str());
  Tensor y(Shape{n, c});
  // Each row of the [N*C, HW] view is one plane.
  y.array() = ConstMatrixMap(x.value().data(), static_cast<std::int64_t>(n) * c, HW)
                  .rowwise()
                  .sum()
                  .array() /
              static_cast<float>(HW);
  return make_result(std::move(y), {x}, [HW](Node& self) {
    Node& xn = *self.parents[0];
    Tensor& dx = grad_of(xn);
    MatrixMap dxm(dx.data(), self.grad.numel(), HW);
    dxm.colwise() += self.grad.array().matrix() / static_cast<float>(HW);
  });
}

}  // namespace hwnas::nn
