// Spectral (FFT) convolution: conv2d's fifth formulation, for stride-1 dense convolutions with
// 2x2+ kernels on small maps, where it needs a fraction of the direct form's multiply-adds
// (64->64 5x5 on 14x14: 302 MFLOP of complex GEMMs per pass against 2,570 MFLOP direct).
// Internal to nn/: nn/ops_conv.cpp calls it when spectral_conv_pays() says so.
//
// The algebra (one image axis; the other is the same).  With x at the origin of a zero grid of
// P >= H + pad points and the kernel stored shifted, w'[(u - pad) mod P] = w[u], the layer's
// cross-correlation y[i] = sum_u x[i + u - pad] w[u] is the circular correlation of x with w',
// and every index either stays on the grid or wraps onto zeros:
//   forward   Y  = X . conj(W')                 (y = the first Ho points)
//   input     DX = DY . W'                      (dx = the first H points; dy at the origin)
//   weight    DW = X . conj(DY)                 (dw[u] = point (u - pad) mod P)
// per frequency, summed over channels (forward, input) or over the batch (weight): one complex
// GEMM per frequency for each pass, written as a real GEMM on interleaved (re, im) pairs.
// Transforms are FFTW3's 2-D r2c / c2r with nn/fftw.hpp's flags (estimated plans, scalar
// codelets: the same plan and the same numbers on every x86-64 machine).
//
// Determinism: images are transformed in fixed chunks and each frequency's GEMM runs on one
// thread (nn/gemm.hpp's fixed summation order, the same on AVX2 and AVX-512), so results depend
// on neither the thread count nor the CPU.  They differ from the direct kernels' in the last
// bits (rounding of the transforms, about 1e-6 of the output's scale), so where the cost model
// picks a form by batch size and by the gradients needed, a layer's training and validation
// passes may round differently.  An output whose receptive field is all zeros comes out as that
// rounding, not an exact 0 (a measured activation density counts it as nonzero).
#pragma once

#include <cstdint>
#include <string>

#include "nn/autograd.hpp"

namespace hwnas::nn::detail {

// A stride-1, ungrouped convolution with symmetric zero padding, and which gradients its
// backward pass computes (the cost model's passes; none in inference).
struct SpectralConvShape {
  int n, cin, h, w, cout, kh, kw, pad;
  bool input_grad = true, weight_grad = true;
  int ho() const { return h + 2 * pad - kh + 1; }  // output height
  int wo() const { return w + 2 * pad - kw + 1; }  // output width
};

// Whether the spectral form applies (stride 1 and groups 1 are the caller's to check): padding
// below the kernel size, transform grids no larger than kMaxSpectralGrid a side, where FFTW's
// small transforms are fast, and image counts whose spectra FFTW's int sizes can address.
bool spectral_conv_eligible(const SpectralConvShape& s);

// Whether the spectral form is expected to train this layer faster than the direct kernels
// (a cost model of both; see the .cpp) while its kept spectra stay within twice the layer's own
// tensors, or HWNAS_CONV_ALGORITHM / set_conv_algorithm forces one.
bool spectral_conv_pays(const SpectralConvShape& s);

// conv2d(x, w, b, stride 1, padding s.pad) in the spectral form, with its backward pass.
// Requires spectral_conv_eligible(s).
Var conv2d_spectral(const Var& x, const Var& w, const Var& b, const SpectralConvShape& s);

// Which formulation conv2d uses for eligible layers, and causal_long_conv (S4D, Hyena) for every
// call (kDirect: causal_direct_conv, kSpectral: causal_fft_conv): kAuto follows the cost models.
// Read from HWNAS_CONV_ALGORITHM (auto, direct, spectral) on first use (the hwnas CLI calls
// conv_algorithm() at start-up, so a bad value is one error before any work); set_conv_algorithm
// is for tests and benches (not thread-safe against running convolutions).
enum class ConvAlgorithm { kAuto, kDirect, kSpectral };
ConvAlgorithm conv_algorithm();
void set_conv_algorithm(ConvAlgorithm a);
// The value of HWNAS_CONV_ALGORITHM; throws std::invalid_argument naming the variable and the
// accepted values.
ConvAlgorithm parse_conv_algorithm(const std::string& name);

}  // namespace hwnas::nn::detail
