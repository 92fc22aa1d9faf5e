// What every FFTW3 call in nn/ shares: the planner's lock and the planning flags.
#pragma once

#include <fftw3.h>

#include <mutex>

namespace hwnas::nn::detail {

// FFTW's planner is not thread-safe (executing a plan is): every planning call takes this mutex.
std::mutex& fftw_planner_mutex();

// FFTW_ESTIMATE: plans come from FFTW's operation counts, never from timings, so a size gets the
// same plan on every run.  FFTW_NO_SIMD: only the scalar codelets, which are the same on every
// x86-64 CPU.  The SIMD codelets FFTW registers depend on the CPU (SSE2, AVX2 with fused
// multiply-adds, AVX-512), and so would plans and rounding, against README's promise that a seed
// trains the same model on every machine of the build's ISA level.  The price (bench_fft_backends,
// bench/README.md stop 43): 1.5-2.3x per transform; 8-20 % of the step of an S4D or Hyena
// candidate (causal_fft_conv), part of the spectral convolution's gain (nn/conv_spectral.cpp).
inline constexpr unsigned kFftwPlanFlags = FFTW_ESTIMATE | FFTW_NO_SIMD;

}  // namespace hwnas::nn::detail
