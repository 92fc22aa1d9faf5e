// Times a real forward + inverse FFT (r2c then c2r) with the two candidate backends for nn's
// rfft/irfft: Eigen's unsupported FFT module (kissfft inside) and FFTW3 (single precision,
// fftwf_*).  nn/ops_fft.cpp uses the faster one; rerun this after a toolchain or library change.
//   bench_fft_backends [length=4096] [rows=64] [repeats=200]
#include <fftw3.h>

#include <algorithm>
#include <chrono>
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
  return 0;
}
