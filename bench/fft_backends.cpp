// Times a real forward + inverse FFT (r2c then c2r) with the two candidate backends for nn's
// rfft/irfft: Eigen's unsupported FFT module (kissfft inside) and FFTW3 (single precision,
// fftwf_*).  nn/ops_fft.cpp uses the faster one; rerun this after a toolchain or library change.
// Then FFTW's SIMD codelets against its scalar ones (FFTW_NO_SIMD, nn/fftw.hpp): the 1-D line at
// that length, and the 2-D grids of the spectral convolution (nn/conv_spectral.cpp), chunks of
// 32 images of 4,096, spectra written frequency-major by FFTW or contiguously.
//   bench_fft_backends [length=4096] [rows=64] [repeats=200]
#include <fftw3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <unsupported/Eigen/FFT>
#include <vector>

#include "nn/ops.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// Best of `trials` timings of `repeats` calls of f, in microseconds per call (best-of filters out
// noise from other processes on a shared machine).
template <class F>
double time_us(int repeats, F&& f) {
  double best = 1e300;
  for (int trial = 0; trial < 5; ++trial) {
    const auto t0 = Clock::now();
    for (int r = 0; r < repeats; ++r) f();
    const double us =
        std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / repeats;
    best = std::min(best, us);
  }
  return best;
}

// Forward + inverse per line (1-D, length n) with the given planner flags, in microseconds.
double line_us(int n, unsigned flags, int repeats) {
  float* real = fftwf_alloc_real(static_cast<std::size_t>(n));
  fftwf_complex* spec = fftwf_alloc_complex(static_cast<std::size_t>(n / 2 + 1));
  for (int i = 0; i < n; ++i) real[i] = std::sin(0.1f * static_cast<float>(i));
  fftwf_plan fwd = fftwf_plan_dft_r2c_1d(n, real, spec, flags);
  fftwf_plan inv = fftwf_plan_dft_c2r_1d(n, spec, real, flags);
  const float inv_n = 1.0f / static_cast<float>(n);
  const double us = time_us(repeats, [&] {
    fftwf_execute(fwd);
    fftwf_execute(inv);
    for (int i = 0; i < n; ++i) real[i] *= inv_n;  // keep the values bounded
  });
  fftwf_destroy_plan(fwd);
  fftwf_destroy_plan(inv);
  fftwf_free(real);
  fftwf_free(spec);
  return us;
}

// Forward + inverse per image of a p x p grid, chunks of 32 images, in us: spectra written
// frequency-major by FFTW itself (stride = the image count; strided) or image by image
// (contiguous, what nn/conv_spectral.cpp runs before its transpose).
double grid_us(int p, unsigned flags, bool contiguous) {
  constexpr int kImages = 4096, kChunk = 32;
  const int points = p * p, bins = p * (p / 2 + 1);
  float* grid = fftwf_alloc_real(static_cast<std::size_t>(kChunk) * points);
  fftwf_complex* spec = fftwf_alloc_complex(static_cast<std::size_t>(bins) * kImages);
  for (int i = 0; i < kChunk * points; ++i) grid[i] = std::sin(0.1f * static_cast<float>(i));
  int dims[2] = {p, p};
  const int stride = contiguous ? 1 : kImages, dist = contiguous ? bins : 1,
            chunk_offset = contiguous ? kChunk * bins : kChunk;
  fftwf_plan fwd = fftwf_plan_many_dft_r2c(2, dims, kChunk, grid, nullptr, 1, points, spec, nullptr,
                                           stride, dist, flags);
  fftwf_plan inv = fftwf_plan_many_dft_c2r(2, dims, kChunk, spec, nullptr, stride, dist, grid,
                                           nullptr, 1, points, flags);
  const double us = time_us(1, [&] {
    for (int c = 0; c < kImages / kChunk; ++c)
      fftwf_execute_dft_r2c(fwd, grid, spec + c * chunk_offset);
    for (int c = 0; c < kImages / kChunk; ++c)
      fftwf_execute_dft_c2r(inv, spec + c * chunk_offset, grid);
    for (int i = 0; i < kChunk * points; ++i) grid[i] /= static_cast<float>(points);
  });
  fftwf_destroy_plan(fwd);
  fftwf_destroy_plan(inv);
  fftwf_free(grid);
  fftwf_free(spec);
  return us / kImages;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 4096;
  const int rows = argc > 2 ? std::atoi(argv[2]) : 64;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 200;
  const int bins = n / 2 + 1;
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(static_cast<std::size_t>(n) * rows);
  for (float& v : x) v = u(rng);

  // ---- Eigen (kissfft) ----
  Eigen::FFT<float> eig;
  eig.SetFlag(Eigen::FFT<float>::HalfSpectrum);
  std::vector<std::complex<float>> espec(static_cast<std::size_t>(bins));
  std::vector<float> eout(static_cast<std::size_t>(n));
  double echeck = 0;
  auto eigen_rows = [&](int count) {
    for (int r = 0; r < count; ++r) {
      eig.fwd(espec.data(), x.data() + static_cast<std::size_t>(r) * n, n);
      eig.inv(eout.data(), espec.data(), n);
    }
    echeck += eout[1];
  };

  // ---- FFTW (plans made once, as nn caches them per size) ----
  float* fin = fftwf_alloc_real(static_cast<std::size_t>(n));
  fftwf_complex* fspec = fftwf_alloc_complex(static_cast<std::size_t>(bins));
  float* fout = fftwf_alloc_real(static_cast<std::size_t>(n));
  fftwf_plan fwd = fftwf_plan_dft_r2c_1d(n, fin, fspec, FFTW_ESTIMATE);
  fftwf_plan inv = fftwf_plan_dft_c2r_1d(n, fspec, fout, FFTW_ESTIMATE);
  double fcheck = 0;
  auto fftw_rows = [&](int count) {
    for (int r = 0; r < count; ++r) {
      std::copy_n(x.data() + static_cast<std::size_t>(r) * n, n, fin);  // nn copies lines too
      fftwf_execute_dft_r2c(fwd, fin, fspec);
      fftwf_execute_dft_c2r(inv, fspec, fout);
    }
    fcheck += fout[1] / static_cast<float>(n);
  };

  // Same results (the c2r output is unnormalised in FFTW, scaled by 1/n in Eigen).
  eigen_rows(1);
  fftw_rows(1);
  std::printf("check: eigen out[1]=%.6f fftw out[1]/n=%.6f input[1]=%.6f\n", eout[1],
              fout[1] / static_cast<float>(n), x[1]);

  const double e1 = time_us(repeats, [&] { eigen_rows(1); });
  const double f1 = time_us(repeats, [&] { fftw_rows(1); });
  const double eb = time_us(std::max(1, repeats / rows), [&] { eigen_rows(rows); });
  const double fb = time_us(std::max(1, repeats / rows), [&] { fftw_rows(rows); });
  std::printf(
      "rfft+irfft length %d, 1 row : eigen/kissfft %9.1f us   fftw3f %9.1f us   (eigen/fftw "
      "%.2fx)\n",
      n, e1, f1, e1 / f1);
  std::printf(
      "rfft+irfft length %d, %d rows: eigen/kissfft %9.1f us   fftw3f %9.1f us   (eigen/fftw "
      "%.2fx)\n",
      n, rows, eb, fb, eb / fb);
  std::printf("(checksums %g %g)\n", echeck, fcheck);

  // The nn ops themselves (FFTW inside, lines copied through per-thread buffers, all threads).
  {
    hwnas::nn::NoGradGuard no_grad;
    hwnas::nn::Tensor xt(hwnas::nn::Shape{rows, n});
    std::copy(x.begin(), x.end(), xt.data());
    const hwnas::nn::Var xv = hwnas::nn::constant(xt);
    const double op = time_us(std::max(1, repeats / rows), [&] {
      hwnas::nn::Var y = hwnas::nn::irfft(hwnas::nn::rfft(xv, 1), 1, n);
      fcheck += y.value().data()[1];
    });
    std::printf("nn::rfft+irfft [%d, %d] (all threads): %9.1f us\n", rows, n, op);
  }
  fftwf_destroy_plan(fwd);
  fftwf_destroy_plan(inv);
  fftwf_free(fin);
  fftwf_free(fspec);
  fftwf_free(fout);

  // SIMD codelets (what causal_fft_conv plans with) against the scalar ones (the spectral
  // convolution's, for the same numbers on every CPU: nn/fftw.hpp).
  const unsigned simd = FFTW_ESTIMATE, scalar = FFTW_ESTIMATE | FFTW_NO_SIMD;
  for (int len : {512, n}) {
    const double v = line_us(len, simd, repeats), sc = line_us(len, scalar, repeats);
    std::printf("fftw3f 1-D line %5d: SIMD %8.2f us  scalar %8.2f us  (scalar / SIMD %.2fx)\n", len,
                v, sc, sc / v);
  }
  for (int p : {8, 9, 10, 12, 15, 16, 18, 20}) {
    const double v = grid_us(p, simd, false), sc = grid_us(p, scalar, false),
                 scc = grid_us(p, scalar, true);
    std::printf(
        "fftw3f 2-D grid %2dx%-2d, an image: strided SIMD %7.3f us  scalar %7.3f us (%.2fx);  "
        "contiguous scalar %7.3f us\n",
        p, p, v, sc, sc / v, scc);
  }
  return 0;
}
