// Spectral convolution (nn/conv_spectral.hpp has the algebra and the contract).
//
// Data layout: a batch of images' spectra is held frequency-major, spec[f][image] as complex
// (re, im) pairs, image = sample * channels + channel, so that one frequency's [batch, channels]
// matrix is contiguous and its GEMM reads it in place.  FFTW transforms chunks of 32 images
// between per-thread buffers, and a transpose moves each chunk's spectra to or from that layout.
#include "nn/conv_spectral.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>

#include "nn/fftw.hpp"
#include "nn/kernels.hpp"

namespace hwnas::nn::detail {

namespace {

// FFTW's 2-D r2c + c2r per image, scalar codelets (nn/fftw.hpp), one thread, chunks of 32
// contiguous images (bench_fft_backends, bench/README.md stop 43): 8 x 8 0.13 us, 12 x 12
// 0.33 us, 16 x 16 0.69 us, 18 x 18 2.4 us, 20 x 20 1.2 us; 24 and 30-32 points ran 2-14 us (SIMD
// codelets), past any gain.  Hence grids up to 20 points, and never 18 (20 is faster).
constexpr int kMaxSpectralGrid = 20;
constexpr int kSlowGrid = 18;

// Images per FFTW call: fixed, so that results do not depend on the thread count.
constexpr std::int64_t kChunkImages = 32;

// The smallest grid of at least `need` points whose size has only 2, 3 and 5 as factors
// (FFTW's fast codelets), or 0 past kMaxSpectralGrid.
int grid_points(int need) {
  for (int p = std::max(need, 1); p <= kMaxSpectralGrid; ++p) {
    if (p == kSlowGrid) continue;
    int r = p;
    for (int f : {2, 3, 5})
      while (r % f == 0) r /= f;
    if (r == 1) return p;
  }
  return 0;
}

struct Grid {
  int ph, pw;
  std::int64_t points() const { return std::int64_t{ph} * pw; }
  std::int64_t bins() const { return std::int64_t{ph} * (pw / 2 + 1); }  // r2c half spectrum
};

// The grid holds the image at its origin and the padding's wrap (P >= H + pad), the output
// (P >= Ho) and the kernel (P >= k).
Grid grid_of(const SpectralConvShape& s) {
  return {grid_points(std::max({s.h + s.pad, s.ho(), s.kh})),
          grid_points(std::max({s.w + s.pad, s.wo(), s.kw}))};
}

// Where tap u of a kernel axis sits on a grid of p points: shifted back by the padding,
// wrapped (w'[(u - pad) mod p] = w[u]).
int kernel_slot(int u, int pad, int p) { return (u - pad + p) % p; }

// A tensor for the spectra of `images` images: [images, 2 bins] floats, used as spec[f][image].
Tensor spectra_tensor(std::int64_t images, const Grid& g) {
  return Tensor(Shape{static_cast<int>(images), static_cast<int>(2 * g.bins())});
}

// ---- FFTW plans: one per (grid, images per call, direction) ----
//
// FFTW transforms a chunk of images between a grid buffer and a spectrum buffer, both contiguous
// per image; a transpose moves the chunk's spectra to or from the frequency-major layout.  FFTW
// writing that layout itself (output stride = the image count) took 1.7-1.9x as long on 16- and
// 20-point grids (scalar codelets, bench/README.md stop 43), and it needed a plan per image count.

using PlanKey = std::tuple<int, int, std::int64_t, bool>;

// Planned on the arrays of the first call (FFTW_ESTIMATE reads or writes no data); later calls
// pass other arrays of the same layout (new-array execute).  Never destroyed, as in
// nn/ops_fft.cpp.
fftwf_plan plan_for(const Grid& g, std::int64_t images, bool inverse, float* grid, float* spec) {
  const PlanKey key{g.ph, g.pw, images, inverse};
  // Each thread remembers the plans it used, so a chunk takes the planner's lock only the first
  // time a thread meets a layout.
  thread_local std::map<PlanKey, fftwf_plan> seen;
  if (auto it = seen.find(key); it != seen.end()) return it->second;
  static auto* cache = new std::map<PlanKey, fftwf_plan>;
  std::lock_guard<std::mutex> lock(fftw_planner_mutex());
  if (auto it = cache->find(key); it != cache->end()) return seen[key] = it->second;
  int dims[2] = {g.ph, g.pw};
  const int howmany = static_cast<int>(images), points = static_cast<int>(g.points()),
            bins = static_cast<int>(g.bins());
  auto* cspec = reinterpret_cast<fftwf_complex*>(spec);
  fftwf_plan p = inverse ? fftwf_plan_many_dft_c2r(2, dims, howmany, cspec, nullptr, 1, bins, grid,
                                                   nullptr, 1, points, kFftwPlanFlags)
                         : fftwf_plan_many_dft_r2c(2, dims, howmany, grid, nullptr, 1, points,
                                                   cspec, nullptr, 1, bins, kFftwPlanFlags);
  if (!p)
    throw std::runtime_error("conv2d: FFTW could not plan a " + std::to_string(g.ph) + "x" +
                             std::to_string(g.pw) + " transform");
  return seen[key] = cache->emplace(key, p).first->second;
}

// Per-thread buffers of one chunk: its grids (slot 0) and its spectra, image-major (slot 1).
struct ChunkScratch;
float* chunk_grids(const Grid& g) {
  return thread_scratch<ChunkScratch, 2>(static_cast<std::size_t>(kChunkImages * g.points()), 0);
}
float* chunk_spectra(const Grid& g) {
  return thread_scratch<ChunkScratch, 2>(static_cast<std::size_t>(kChunkImages * 2 * g.bins()), 1);
}

// FFTW's cost per image, in scalar-operation units of chunk_count: ~5 P log2 P flops.
std::int64_t transform_cost(const Grid& g) {
  return 5 * g.points() * static_cast<std::int64_t>(std::log2(static_cast<double>(g.points())) + 1);
}

// Moves a chunk's spectra between the image-major chunk buffer local[i][f] (i < count) and the
// frequency-major spec[f][i0 + i], where each frequency's count pairs are one contiguous run:
// into spec when kToSpec (Spec = float), else out of it (Spec = const float).
template <bool kToSpec, class Spec>
void move_chunk(Spec* spec, float* local, std::int64_t images, std::int64_t i0, std::int64_t count,
                std::int64_t bins) {
  for (std::int64_t f = 0; f < bins; ++f) {
    Spec* run = spec + 2 * (f * images + i0);
    for (std::int64_t i = 0; i < count; ++i) {
      float* pair = local + 2 * (i * bins + f);
      if constexpr (kToSpec) {
        run[2 * i] = pair[0];
        run[2 * i + 1] = pair[1];
      } else {
        pair[0] = run[2 * i];
        pair[1] = run[2 * i + 1];
      }
    }
  }
}

// Calls body(i0, count, grid, local) for the chunks of kChunkImages images (the last one may be
// shorter), in parallel, with the thread's chunk buffers.
template <class Body>
void for_chunks(const Grid& g, std::int64_t images, Body&& body) {
  const std::int64_t chunks = (images + kChunkImages - 1) / kChunkImages;
  parallel_range(chunks, kChunkImages * transform_cost(g), [&](std::int64_t c0, std::int64_t c1) {
    float* grid = chunk_grids(g);
    float* local = chunk_spectra(g);
    for (std::int64_t c = c0; c < c1; ++c) {
      const std::int64_t i0 = c * kChunkImages;
      body(i0, std::min(kChunkImages, images - i0), grid, local);
    }
  });
}

// spec[f][i] = the 2-D spectrum of image i (0 <= i < images) as fill(i, grid) writes it onto a
// zeroed grid (ph x pw floats; fill writes only its nonzeros).
template <class Fill>
void to_spectra(const Grid& g, std::int64_t images, float* spec, Fill&& fill) {
  for_chunks(g, images, [&](std::int64_t i0, std::int64_t count, float* grid, float* local) {
    std::fill(grid, grid + count * g.points(), 0.0f);
    for (std::int64_t i = 0; i < count; ++i) fill(i0 + i, grid + i * g.points());
    fftwf_execute_dft_r2c(plan_for(g, count, false, grid, local), grid,
                          reinterpret_cast<fftwf_complex*>(local));
    move_chunk<true>(spec, local, images, i0, count, g.bins());
  });
}

// The inverse: read(i, grid) receives image i's unnormalised c2r (ph x pw floats; scale by
// 1 / points).
template <class Read>
void from_spectra(const Grid& g, std::int64_t images, const float* spec, Read&& read) {
  for_chunks(g, images, [&](std::int64_t i0, std::int64_t count, float* grid, float* local) {
    move_chunk<false>(spec, local, images, i0, count, g.bins());
    // (c2r overwrites its input: the chunk's copy, not spec.)
    fftwf_execute_dft_c2r(plan_for(g, count, true, grid, local),
                          reinterpret_cast<fftwf_complex*>(local), grid);
    for (std::int64_t i = 0; i < count; ++i) read(i0 + i, grid + i * g.points());
  });
}

// ---- per-frequency complex products as real GEMMs on (re, im) pairs ----

// The real [2 cin, 2 cout] matrix that multiplies a row of (re, im) pairs x by conj(W)^T:
// (x W^H)_o = sum_c x_c conj(W_oc).  Its transpose multiplies by W: (d W)_c = sum_o d_o W_oc.
// wf: W's spectrum at one frequency, [cout][cin] pairs.
void conj_product_matrix(const float* wf, int cin, int cout, float* m) {
  const std::int64_t ld = 2 * std::int64_t{cout};
  for (int c = 0; c < cin; ++c) {
    float* re_row = m + 2 * c * ld;
    float* im_row = re_row + ld;
    for (int o = 0; o < cout; ++o) {
      const float wr = wf[2 * (std::int64_t{o} * cin + c)],
                  wi = wf[2 * (std::int64_t{o} * cin + c) + 1];
      re_row[2 * o] = wr;
      re_row[2 * o + 1] = -wi;
      im_row[2 * o] = wi;
      im_row[2 * o + 1] = wr;
    }
  }
}

// The cost model's constants (spectral_conv_pays).
constexpr double kDirectGflops = 165.0;        // direct kernels, a core
constexpr double kSpectralGemmGflops = 100.0;  // per-frequency complex GEMMs, a core
constexpr double kTransformNsPerPoint = 0.26;  // FFTW + transpose, per P log2 P point of an image
constexpr double kGemmCallNs = 1200.0;         // a per-frequency GEMM's fixed cost (packing)
constexpr double kSpectralMargin = 0.8;        // spectral only when clearly ahead
constexpr double kSpectraMemoryRatio = 2.0;    // kept spectra / the layer's tensors, at most

struct ProductScratch;
float* product_scratch(std::int64_t floats, int slot) {
  return thread_scratch<ProductScratch, 2>(static_cast<std::size_t>(floats), slot);
}

ConvAlgorithm initial_algorithm() {
  const char* env = std::getenv("HWNAS_CONV_ALGORITHM");
  return env && *env ? parse_conv_algorithm(env) : ConvAlgorithm::kAuto;
}

ConvAlgorithm& current_algorithm() {
  static ConvAlgorithm a = initial_algorithm();
  return a;
}

}  // namespace

ConvAlgorithm parse_conv_algorithm(const std::string& name) {
  if (name == "auto") return ConvAlgorithm::kAuto;
  if (name == "direct") return ConvAlgorithm::kDirect;
  if (name == "spectral") return ConvAlgorithm::kSpectral;
  throw std::invalid_argument("HWNAS_CONV_ALGORITHM: unknown value '" + name +
                              "' (use auto, direct or spectral, or unset it)");
}

ConvAlgorithm conv_algorithm() { return current_algorithm(); }
void set_conv_algorithm(ConvAlgorithm a) { current_algorithm() = a; }

bool spectral_conv_eligible(const SpectralConvShape& s) {
  if (s.kh < 2 || s.kw < 2 || s.pad > s.kh - 1 || s.pad > s.kw - 1) return false;
  const Grid g = grid_of(s);
  if (g.ph <= 0 || g.pw <= 0) return false;
  // FFTW takes image counts and strides as int, and the spectra are [images, 2 bins] tensors.
  const std::int64_t images = std::max(
      {std::int64_t{s.n} * s.cin, std::int64_t{s.n} * s.cout, std::int64_t{s.cin} * s.cout});
  return images <= std::numeric_limits<int>::max() / (2 * g.bins());
}

// Both forms' time for one training step of the layer (forward, input and weight gradients), in
// nanoseconds of one core.  Direct: the multiply-adds at the GEMM kernels' rate on convolutions
// (~165 GFLOP/s a core on the AVX-512 machines of bench/README.md).  Spectral: six transforms
// per image (x, w, y forward; dy, dx, dw backward) at ~0.26 ns per P log2 P point (FFTW and
// the chunk transposes), and three complex GEMMs per frequency at the rate the small per-frequency
// products reach plus a fixed cost per GEMM (with 12 channels a frequency's GEMM is 64 x 24 x 24:
// its packing costs more than its multiply-adds).  Calibrated on bench_conv_vs_onednn's FORMS lines
// (bench/README.md, stop 43).
bool spectral_conv_pays(const SpectralConvShape& s) {
  switch (conv_algorithm()) {
    case ConvAlgorithm::kDirect:
      return false;
    case ConvAlgorithm::kSpectral:
      return spectral_conv_eligible(s);
    case ConvAlgorithm::kAuto:
      break;
  }
  if (!spectral_conv_eligible(s)) return false;
  const Grid g = grid_of(s);
  const double ho = s.ho(), wo = s.wo();
  // The spectra of x and w live until the backward pass: at most kSpectraMemoryRatio times what
  // the layer's own x, w and y hold, so that memory estimates made from the tensors (the
  // trainer's memory guard) stay close.  Wide layers fail it first: ws is 2 bins / (kh kw) times
  // w (11.5x for 5x5 on a 16-point grid).
  const double spectra_floats =
      2.0 * static_cast<double>(g.bins()) * (double{1} * s.n * s.cin + double{1} * s.cin * s.cout);
  const double tensor_floats = double{1} * s.n * s.cin * s.h * s.w +
                               double{1} * s.cout * s.cin * s.kh * s.kw +
                               double{1} * s.n * s.cout * ho * wo;
  if (spectra_floats > kSpectraMemoryRatio * tensor_floats) return false;
  const double n = s.n, cin = s.cin, cout = s.cout;
  const int backward = (s.input_grad ? 1 : 0) + (s.weight_grad ? 1 : 0);
  const double direct_ns =
      (1 + backward) * 2 * n * cout * cin * ho * wo * s.kh * s.kw / kDirectGflops;
  // Forward: x, w and y; backward: dy, then dx and / or dw.
  const double images = n * cin + cin * cout + n * cout + (backward ? n * cout : 0) +
                        (s.input_grad ? n * cin : 0) + (s.weight_grad ? cin * cout : 0);
  const double points = static_cast<double>(g.points());
  const double transform_ns = images * kTransformNsPerPoint * points * std::log2(points);
  const double gemm_flops = (1 + backward) * 8 * static_cast<double>(g.bins()) * n * cin * cout;
  const double gemm_calls = (1 + backward) * static_cast<double>(g.bins());
  const double spectral_ns =
      transform_ns + gemm_flops / kSpectralGemmGflops + gemm_calls * kGemmCallNs;
  return spectral_ns < kSpectralMargin * direct_ns;
}

Var conv2d_spectral(const Var& x, const Var& w, const Var& b, const SpectralConvShape& s) {
  if (!spectral_conv_eligible(s))
    throw std::logic_error("conv2d_spectral: shape not eligible (caller must check)");
  const Grid g = grid_of(s);
  const int ho = s.ho(), wo = s.wo();
  const std::int64_t bins = g.bins(), n = s.n, cin = s.cin, cout = s.cout;
  const std::int64_t x_images = n * cin, w_images = cout * cin, y_images = n * cout;
  const float scale = 1.0f / static_cast<float>(g.points());
  // One frequency's GEMM: 8 flops per complex multiply-add.
  const std::int64_t product_flops = 8 * n * cin * cout;

  // Spectra of x (at the origin) and of the shifted kernel; both kept for the backward pass.
  Tensor xs = spectra_tensor(x_images, g);
  Tensor ws = spectra_tensor(w_images, g);
  {
    const float* xd = x.value().data();
    to_spectra(g, x_images, xs.data(), [&](std::int64_t i, float* grid) {
      const float* img = xd + i * s.h * s.w;
      for (int r = 0; r < s.h; ++r) std::copy_n(img + r * s.w, s.w, grid + r * g.pw);
    });
    const float* wd = w.value().data();
    to_spectra(g, w_images, ws.data(), [&](std::int64_t i, float* grid) {
      const float* k = wd + i * s.kh * s.kw;
      for (int u = 0; u < s.kh; ++u) {
        const int r = kernel_slot(u, s.pad, g.ph);
        for (int v = 0; v < s.kw; ++v)
          grid[r * g.pw + kernel_slot(v, s.pad, g.pw)] = k[u * s.kw + v];
      }
    });
  }

  Tensor y(Shape{s.n, s.cout, ho, wo});
  {
    Tensor yspec = spectra_tensor(y_images, g);
    const float* xsd = xs.data();
    const float* wsd = ws.data();
    float* ysd = yspec.data();
    parallel_range(bins, product_flops, [&](std::int64_t f0, std::int64_t f1) {
      float* m = product_scratch(4 * cin * cout, 0);
      for (std::int64_t f = f0; f < f1; ++f) {
        conj_product_matrix(wsd + 2 * f * w_images, s.cin, s.cout, m);
        sgemm(n, 2 * cout, 2 * cin, {xsd + 2 * f * x_images, 2 * cin, 1}, {m, 2 * cout, 1},
              ysd + 2 * f * y_images, 2 * cout, false);
      }
    });
    const float* bd = b.defined() ? b.value().data() : nullptr;
    float* yd = y.data();
    from_spectra(g, y_images, ysd, [&](std::int64_t i, const float* grid) {
      float* out = yd + i * ho * wo;
      const float bias = bd ? bd[i % cout] : 0.0f;
      for (int r = 0; r < ho; ++r)
        for (int c = 0; c < wo; ++c) out[r * wo + c] = grid[r * g.pw + c] * scale + bias;
    });
  }

  std::vector<Var> parents{x, w};
  if (b.defined()) parents.push_back(b);
  return make_result(
      std::move(y), parents,
      [s, g, ho, wo, bins, n, cin, cout, x_images, w_images, y_images, scale, product_flops,
       xs = std::move(xs), ws = std::move(ws), has_b = b.defined()](Node& self) {
        Node& xn = *self.parents[0];
        Node& wn = *self.parents[1];
        Node* bn = has_b ? self.parents[2].get() : nullptr;
        const bool need_x = xn.requires_grad, need_w = wn.requires_grad,
                   need_b = bn && bn->requires_grad;
        const float* dy = self.grad.data();
        const std::int64_t plane = std::int64_t{ho} * wo;
        if (need_b) {
          // Per channel, the batch summed in order: the same bits for any thread count.
          float* db = grad_of(*bn).data();
          parallel_range(cout, n * plane, [&](std::int64_t o0, std::int64_t o1) {
            for (std::int64_t o = o0; o < o1; ++o) {
              double acc = 0.0;
              for (std::int64_t i = 0; i < n; ++i) {
                const float* p = dy + (i * cout + o) * plane;
                float sum = 0.0f;
                for (std::int64_t q = 0; q < plane; ++q) sum += p[q];
                acc += sum;
              }
              db[o] += static_cast<float>(acc);
            }
          });
        }
        if (!need_x && !need_w) return;

        Tensor dys = spectra_tensor(y_images, g);
        to_spectra(g, y_images, dys.data(), [&](std::int64_t i, float* grid) {
          const float* img = dy + i * plane;
          for (int r = 0; r < ho; ++r) std::copy_n(img + r * wo, wo, grid + r * g.pw);
        });
        const float* dysd = dys.data();
        const float* xsd = xs.data();
        const float* wsd = ws.data();
        Tensor dxs = need_x ? spectra_tensor(x_images, g) : Tensor();
        Tensor dws = need_w ? spectra_tensor(w_images, g) : Tensor();
        const std::int64_t flops = product_flops * ((need_x ? 1 : 0) + (need_w ? 1 : 0));
        parallel_range(bins, flops, [&](std::int64_t f0, std::int64_t f1) {
          for (std::int64_t f = f0; f < f1; ++f) {
            const float* dyf = dysd + 2 * f * y_images;  // [n][cout] pairs
            const float* xf = xsd + 2 * f * x_images;    // [n][cin] pairs
            if (need_x) {
              // DX_f [n, cin] = DY_f [n, cout] W_f: the transpose of the forward's matrix.
              float* m = product_scratch(4 * cin * cout, 0);
              conj_product_matrix(wsd + 2 * f * w_images, s.cin, s.cout, m);
              sgemm(n, 2 * cin, 2 * cout, {dyf, 2 * cout, 1}, {m, 1, 2 * cout},
                    dxs.data() + 2 * f * x_images, 2 * cin, false);
            }
            if (need_w) {
              // DW_f [cout, cin] = sum_b conj(DY_f[b, o]) X_f[b, c], over K = the batch's
              // (re, im) pairs: a [cout, 2n] matrix of dy's pairs and a [2n, 2cin] one whose
              // rows are (xr, xi) and (xi, -xr).
              float* a = product_scratch(2 * n * cout + 4 * n * cin, 1);
              float* bm = a + 2 * n * cout;
              for (std::int64_t i = 0; i < n; ++i)
                for (std::int64_t o = 0; o < cout; ++o) {
                  a[o * 2 * n + 2 * i] = dyf[2 * (i * cout + o)];
                  a[o * 2 * n + 2 * i + 1] = dyf[2 * (i * cout + o) + 1];
                }
              for (std::int64_t i = 0; i < n; ++i) {
                const float* xr = xf + 2 * i * cin;
                float* re_row = bm + 2 * i * 2 * cin;
                float* im_row = re_row + 2 * cin;
                std::copy_n(xr, 2 * cin, re_row);
                for (std::int64_t c = 0; c < cin; ++c) {
                  im_row[2 * c] = xr[2 * c + 1];
                  im_row[2 * c + 1] = -xr[2 * c];
                }
              }
              sgemm(cout, 2 * cin, 2 * n, {a, 2 * n, 1}, {bm, 2 * cin, 1},
                    dws.data() + 2 * f * w_images, 2 * cin, false);
            }
          }
        });
        if (need_x) {
          bool fresh = false;
          float* dx = grad_buffer(xn, fresh);
          from_spectra(g, x_images, dxs.data(), [&](std::int64_t i, const float* grid) {
            float* out = dx + i * s.h * s.w;
            for (int r = 0; r < s.h; ++r)
              for (int c = 0; c < s.w; ++c) {
                const float v = grid[r * g.pw + c] * scale;
                out[r * s.w + c] = fresh ? v : out[r * s.w + c] + v;
              }
          });
        }
        if (need_w) {
          float* dw = grad_of(wn).data();
          from_spectra(g, w_images, dws.data(), [&](std::int64_t i, const float* grid) {
            float* out = dw + i * s.kh * s.kw;
            for (int u = 0; u < s.kh; ++u) {
              const int r = kernel_slot(u, s.pad, g.ph);
              for (int v = 0; v < s.kw; ++v)
                out[u * s.kw + v] += grid[r * g.pw + kernel_slot(v, s.pad, g.pw)] * scale;
            }
          });
        }
      });
}

}  // namespace hwnas::nn::detail
