// Real FFT along one axis (rfft / irfft) on FFTW3 single precision, with hand-written adjoints.
//
// Backend choice (bench/fft_backends.cpp, forward + inverse at length 4096, one thread): FFTW3
// 10-16 us per row vs 170-190 us for Eigen's kissfft, 11-17x faster across runs, and the same
// ratio for a batch of 64 rows (0.7-0.8 ms vs 8.9-11.5 ms).  Plans use nn/fftw.hpp's flags:
// FFTW's scalar codelets, the same numbers on every CPU, at about twice the SIMD codelets' time
// (19 against 9 us at 4096, stop 43), still about 9x kissfft.
//
// FFTW's planner is not thread-safe but executing a plan is (new-array execute), so plans are
// made once per length under a mutex and cached for the life of the process; every line is
// copied into a per-thread SIMD-aligned scratch buffer (also what makes strided axes work), so
// the alignment FFTW planned for always holds.  Lines are independent, so results do not depend
// on the thread count.
//
// Adjoints (C = FFTW's unnormalised c2r, R = r2c, theta = 2 pi k t / n):
//   rfft:  X_k = sum_t x_t e^{-i theta}  =>  dx_t = sum_k Re(G_k e^{i theta}) = C(Y)_t with
//          Y_k = G_k on bin 0 and (even n) bin n/2, G_k / 2 on the bins in between (C counts
//          those twice and ignores the imaginary parts of the edge bins, as the sum does).
//   irfft: y_t = (1/n) C(X)_t  =>  dX_k = (c_k / n) R(g)_k with c_k = 2 on the inner bins and
//          1 on the edge bins, whose imaginary parts have no effect and get no gradient.
#include <fftw3.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "nn/fftw.hpp"
#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
using detail::parallel_range;
using detail::parent;
using detail::shape_error;

namespace {

struct Plans {
  fftwf_plan r2c;
  fftwf_plan c2r;
};

// Plans for length n, made on first use.  Never destroyed: ops may run during static teardown.
const Plans& plans_for(int n) {
  static auto* cache = new std::map<int, Plans>;
  std::lock_guard<std::mutex> lock(detail::fftw_planner_mutex());
  auto it = cache->find(n);
  if (it != cache->end()) return it->second;
  const auto bins = static_cast<std::size_t>(n / 2 + 1);
  float* real = fftwf_alloc_real(static_cast<std::size_t>(n));
  fftwf_complex* spec = fftwf_alloc_complex(bins);
  Plans p{fftwf_plan_dft_r2c_1d(n, real, spec, detail::kFftwPlanFlags),
          fftwf_plan_dft_c2r_1d(n, spec, real, detail::kFftwPlanFlags)};
  fftwf_free(real);
  fftwf_free(spec);
  if (!p.r2c || !p.c2r)
    throw std::runtime_error("rfft: FFTW could not plan length " + std::to_string(n));
  return cache->emplace(n, p).first->second;
}

// Per-thread aligned line buffers (contents never carry over between uses).
struct Scratch {
  float* real = nullptr;
  fftwf_complex* spec = nullptr;
  int n = 0;
  ~Scratch() {
    fftwf_free(real);
    fftwf_free(spec);
  }
  void reserve(int len) {
    if (len <= n) return;
    fftwf_free(real);
    fftwf_free(spec);
    real = fftwf_alloc_real(static_cast<std::size_t>(len));
    spec = fftwf_alloc_complex(static_cast<std::size_t>(len / 2 + 1));
    n = len;
  }
};
Scratch& scratch_for(int n) {
  thread_local Scratch s;
  s.reserve(n);
  return s;
}

// Per-bin factors: bin 0, bins 1..ceil(n/2)-1, and bin n/2 for even n.  `edge_imag` false zeroes
// the imaginary part of the edge bins (an output that has no effect).
struct BinWeights {
  float edge = 1.0f;
  float inner = 1.0f;
  bool edge_imag = true;
};

bool is_edge(int k, int n) { return k == 0 || (n % 2 == 0 && k == n / 2); }

std::int64_t fft_cost(int n) {
  int lg = 1;
  while ((1 << lg) < n) ++lg;
  return std::int64_t{5} * n * lg;
}

// Spectrum (n/2 + 1 bins) of one line of a [outer, len, inner] tensor (x at the line's first
// entry, stride `inner`), zero-padded to n, into s.spec (len <= n).
void line_spectrum(const Plans& plan, Scratch& s, const float* x, int len, std::int64_t inner,
                   int n) {
  for (int t = 0; t < len; ++t) s.real[t] = x[std::int64_t{t} * inner];
  std::fill(s.real + len, s.real + n, 0.0f);
  fftwf_execute_dft_r2c(plan.r2c, s.real, s.spec);
}

// The first `keep` positions of FFTW's (unnormalised) c2r of s.spec, times `scale`, into x with
// stride `inner`; s.spec is consumed.
void line_inverse(const Plans& plan, Scratch& s, float* x, int keep, std::int64_t inner,
                  float scale) {
  fftwf_execute_dft_c2r(plan.c2r, s.spec, s.real);
  for (int t = 0; t < keep; ++t) x[std::int64_t{t} * inner] = s.real[t] * scale;
}

// Lines of a [outer, in_len, inner] real tensor -> [outer, out_bins, inner, 2] spectra of length n
// (each line truncated or zero-padded to n; bins >= n/2+1 written as zero).
void r2c_lines(const float* in, std::int64_t outer, std::int64_t inner, int in_len, int n,
               float* out, int out_bins, const BinWeights& w) {
  const Plans& plan = plans_for(n);
  const int bins = n / 2 + 1;
  const int copy = std::min(in_len, n);
  parallel_range(outer * inner, fft_cost(n), [&](std::int64_t l0, std::int64_t l1) {
    Scratch& s = scratch_for(n);
    for (std::int64_t l = l0; l < l1; ++l) {
      const std::int64_t o = l / inner, i = l % inner;
      line_spectrum(plan, s, in + o * in_len * inner + i, copy, inner, n);
      float* dst = out + (o * out_bins * inner + i) * 2;
      for (int k = 0; k < out_bins; ++k) {
        float* d = dst + std::int64_t{k} * inner * 2;
        if (k >= bins) {
          d[0] = d[1] = 0.0f;
          continue;
        }
        const bool edge = is_edge(k, n);
        const float f = edge ? w.edge : w.inner;
        d[0] = s.spec[k][0] * f;
        d[1] = (edge && !w.edge_imag) ? 0.0f : s.spec[k][1] * f;
      }
    }
  });
}

// Spectra [outer, in_bins, inner, 2] -> real lines [outer, out_len, inner]: bins weighted, missing
// ones zero, c2r of length n, scaled by `scale`; positions n..out_len-1 written as zero.
void c2r_lines(const float* in, std::int64_t outer, std::int64_t inner, int in_bins, int n,
               float* out, int out_len, const BinWeights& w, float scale) {
  const Plans& plan = plans_for(n);
  const int bins = n / 2 + 1;
  const int copy = std::min(in_bins, bins);
  const int keep = std::min(out_len, n);
  parallel_range(outer * inner, fft_cost(n), [&](std::int64_t l0, std::int64_t l1) {
    Scratch& s = scratch_for(n);
    for (std::int64_t l = l0; l < l1; ++l) {
      const std::int64_t o = l / inner, i = l % inner;
      const float* src = in + (o * in_bins * inner + i) * 2;
      for (int k = 0; k < copy; ++k) {
        const float f = is_edge(k, n) ? w.edge : w.inner;
        s.spec[k][0] = src[std::int64_t{k} * inner * 2] * f;
        s.spec[k][1] = src[std::int64_t{k} * inner * 2 + 1] * f;
      }
      for (int k = copy; k < bins; ++k) s.spec[k][0] = s.spec[k][1] = 0.0f;
      float* dst = out + o * out_len * inner + i;
      line_inverse(plan, s, dst, keep, inner, scale);
      for (int t = keep; t < out_len; ++t) dst[std::int64_t{t} * inner] = 0.0f;
    }
  });
}

void outer_inner(const Shape& s, int axis, int end, std::int64_t& outer, std::int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int i = 0; i < axis; ++i) outer *= s[i];
  for (int i = axis + 1; i < end; ++i) inner *= s[i];
}

}  // namespace

Var rfft(const Var& x, int axis, int n) {
  const Shape& s = x.shape();
  const int r = s.rank();
  if (r < 1 || r > 3)
    shape_error("rfft", s, "rank must be 1..3 (the output adds a trailing (re, im) dim)");
  const int a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r) shape_error("rfft", s, "axis " + std::to_string(axis) + " out of range");
  const int len = s[a];
  if (n == -1) n = len;
  if (n < 1)
    throw std::invalid_argument("rfft: n must be >= 1 (or -1 for the axis length), got " +
                                std::to_string(n));
  const int bins = n / 2 + 1;
  std::vector<int> od = s.to_vector();
  od[static_cast<std::size_t>(a)] = bins;
  od.push_back(2);
  std::int64_t outer, inner;
  outer_inner(s, a, r, outer, inner);
  Tensor out{Shape(od)};
  r2c_lines(x.value().data(), outer, inner, len, n, out.data(), bins, BinWeights{});
  return make_result(std::move(out), {x}, [outer, inner, len, n, bins](Node& self) {
    Node& nx = parent(self, 0);
    Tensor gx(nx.value.shape());
    c2r_lines(self.grad.data(), outer, inner, bins, n, gx.data(), len, BinWeights{1.0f, 0.5f, true},
              1.0f);
    detail::accumulate_owned(nx, std::move(gx));
  });
}

Var irfft(const Var& X, int axis, int n) {
  const Shape& s = X.shape();
  const int r = s.rank();
  if (r < 2 || s.back(-1) != 2)
    shape_error("irfft", s, "input must be complex: rank >= 2 with a trailing (re, im) dim of 2");
  const int rc = r - 1;  // rank of the complex tensor
  const int a = axis < 0 ? axis + rc : axis;
  if (a < 0 || a >= rc) shape_error("irfft", s, "axis " + std::to_string(axis) + " out of range");
  const int m = s[a];
  if (n == -1) n = 2 * (m - 1);
  if (n < 1)
    throw std::invalid_argument("irfft: output length n must be >= 1, got " + std::to_string(n) +
                                " (the default 2 (m - 1) needs m >= 2 bins)");
  std::vector<int> od = s.to_vector();
  od.pop_back();
  od[static_cast<std::size_t>(a)] = n;
  std::int64_t outer, inner;
  outer_inner(s, a, rc, outer, inner);
  Tensor out{Shape(od)};
  const float inv_n = 1.0f / static_cast<float>(n);
  c2r_lines(X.value().data(), outer, inner, m, n, out.data(), n, BinWeights{}, inv_n);
  return make_result(std::move(out), {X}, [outer, inner, m, n, inv_n](Node& self) {
    Node& nx = parent(self, 0);
    Tensor gx(nx.value.shape());
    r2c_lines(self.grad.data(), outer, inner, n, n, gx.data(), m,
              BinWeights{inv_n, 2.0f * inv_n, false});
    detail::accumulate_owned(nx, std::move(gx));
  });
}

// ---------------------------------------------------------------- causal long convolution
//
// One (b, c) line at a time, all in the thread's scratch: gather, r2c, complex product, c2r,
// scatter.  The unfused chain (rfft, slices, four broadcast muls, concat, irfft, slice) made
// [B, L+1, C, 2] intermediates and reduced the filter's broadcast gradients over the batch; it
// was most of the S4D and Hyena blocks' time.
//
// Adjoints (n = 2L, conj = complex conjugate, IDFT with 1/n): y = IDFT(U K) on the first L
// positions, so du = IDFT(DY conj(K)) and dk = sum_b IDFT(DY_b conj(U_b)), each on its first L
// (resp. Lk) positions: the zero padding keeps the wrapped-around terms out, since a shift of up
// to L - 1 either way lands in the padded half.

namespace {

using Complex = float[2];

// a * b or a * conj(b), over `bins` complex values.
inline void complex_product(const Complex* a, const Complex* b, Complex* out, int bins,
                            bool conj_b) {
  const float sign = conj_b ? -1.0f : 1.0f;
  for (int k = 0; k < bins; ++k) {
    const float ar = a[k][0], ai = a[k][1], br = b[k][0], bi = sign * b[k][1];
    out[k][0] = ar * br - ai * bi;
    out[k][1] = ar * bi + ai * br;
  }
}

}  // namespace

Var causal_fft_conv(const Var& u, const Var& k) {
  const Shape &su = u.shape(), &sk = k.shape();
  detail::check_causal_conv_shapes("causal_fft_conv", su, sk);
  const int B = su[0], L = su[1], C = su[2], taps = sk[0], n = 2 * L, bins = n / 2 + 1;
  const float inv_n = 1.0f / static_cast<float>(n);  // FFTW's c2r is unnormalised
  const Plans& plan = plans_for(n);
  const std::int64_t line_cost = 2 * fft_cost(n);
  // Filter spectra [C, bins], once per call.  Tensors, not vectors: pooled and left uninitialised
  // (a fresh zeroed vector of the input spectra, 8 MB at batch 64, L 256 and 64 channels,
  // page-faulted on every call).
  Tensor kf(Shape{C, 2 * bins});
  parallel_range(C, line_cost, [&](std::int64_t c0, std::int64_t c1) {
    Scratch& s = scratch_for(n);
    for (std::int64_t c = c0; c < c1; ++c) {
      line_spectrum(plan, s, k.value().data() + c, taps, C, n);
      std::copy_n(&s.spec[0][0], 2 * bins, kf.data() + c * bins * 2);
    }
  });
  // The input spectra are kept for dk when k will need a gradient.
  const bool keep_u = grad_enabled() && k.requires_grad();
  Tensor uf = keep_u ? Tensor(Shape{B, C, 2 * bins}) : Tensor();
  Tensor y(su);
  parallel_range(std::int64_t{B} * C, line_cost, [&](std::int64_t l0, std::int64_t l1) {
    Scratch& s = scratch_for(n);
    for (std::int64_t l = l0; l < l1; ++l) {
      const std::int64_t b = l / C, c = l % C;
      line_spectrum(plan, s, u.value().data() + b * L * C + c, L, C, n);
      if (keep_u) std::copy_n(&s.spec[0][0], 2 * bins, uf.data() + l * bins * 2);
      complex_product(s.spec, reinterpret_cast<const Complex*>(kf.data() + c * bins * 2), s.spec,
                      bins, false);
      line_inverse(plan, s, y.data() + b * L * C + c, L, C, inv_n);
    }
  });
  return make_result(
      std::move(y), {u, k}, [B, L, C, taps, n, inv_n, bins, kf, uf, keep_u](Node& self) {
        Node &nu = parent(self, 0), &nk = parent(self, 1);
        const Plans& plan = plans_for(n);
        const bool want_k = keep_u && nk.requires_grad;
        Tensor du = nu.requires_grad ? Tensor(nu.value.shape()) : Tensor();
        Tensor dk = want_k ? Tensor(nk.value.shape()) : Tensor();
        const float* dy = self.grad.data();
        // Tasks own ranges of channels: du's and dk's entries of those channels, dk summed over the
        // batch in order, so the result does not depend on the threads.  Within a task the batch is
        // the outer loop, so neighbouring channels' strided gathers share cache lines.
        parallel_range(C, std::int64_t{B} * 3 * fft_cost(n), [&](std::int64_t c0, std::int64_t c1) {
          Scratch& s = scratch_for(n);
          const std::int64_t line = std::int64_t{bins} * 2;
          std::vector<float> dyf(static_cast<std::size_t>(line)),
              acc(want_k ? static_cast<std::size_t>((c1 - c0) * line) : 0, 0.0f);
          auto* dyc = reinterpret_cast<Complex*>(dyf.data());
          for (int b = 0; b < B; ++b)
            for (std::int64_t c = c0; c < c1; ++c) {
              line_spectrum(plan, s, dy + std::int64_t{b} * L * C + c, L, C, n);
              std::copy_n(&s.spec[0][0], line, dyf.data());
              if (nu.requires_grad) {
                complex_product(dyc, reinterpret_cast<const Complex*>(kf.data() + c * line), s.spec,
                                bins, true);
                line_inverse(plan, s, du.data() + std::int64_t{b} * L * C + c, L, C, inv_n);
              }
              if (want_k) {
                const auto* ub =
                    reinterpret_cast<const Complex*>(uf.data() + (std::int64_t{b} * C + c) * line);
                float* a = acc.data() + (c - c0) * line;
                for (int q = 0; q < bins; ++q) {  // acc += DY conj(U)
                  a[2 * q] += dyc[q][0] * ub[q][0] + dyc[q][1] * ub[q][1];
                  a[2 * q + 1] += dyc[q][1] * ub[q][0] - dyc[q][0] * ub[q][1];
                }
              }
            }
          if (want_k)
            for (std::int64_t c = c0; c < c1; ++c) {
              std::copy_n(acc.data() + (c - c0) * line, line, &s.spec[0][0]);
              line_inverse(plan, s, dk.data() + c, taps, C, inv_n);
            }
        });
        if (nu.requires_grad) detail::accumulate_owned(nu, std::move(du));
        if (want_k) detail::accumulate_owned(nk, std::move(dk));
      });
}

}  // namespace hwnas::nn
