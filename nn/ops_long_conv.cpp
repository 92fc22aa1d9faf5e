// The per-channel causal long convolution of the S4D and Hyena mixers in two formulations, and
// the choice between them (causal_long_conv).
//
// Direct (causal_direct_conv): for each channel c, with u_c the [B, L] matrix of its inputs and
// T_c the [L, L] lower-triangular Toeplitz matrix of its filter (T[t, s] = k[t - s, c] for
// 0 <= t - s < taps),
//   y_c = u_c T_c^T,   du_c = dy_c T_c,   dk[d, c] = sum_{b, s} u_c[b, s] dy_c[b, s + d],
// three GEMMs on nn/gemm's kernels.  T is never built: a padded copy of the filter, kk[L - 1 + d]
// = k[d] (zero outside 0 <= d < taps), read with strides (1, -1) or (-1, 1) is T or T^T, and the
// packing routines take negative strides like any other.  Output columns go in blocks of kBlock
// whose inner dimension stops where T's band does, so the zero triangle above the diagonal (and
// below the band, for short filters) costs only its diagonal blocks.  Channels are independent
// and each is computed by one thread in a fixed order, so results do not depend on the threads.
// The operands are channel-major ([C, B, L], one transpose in and one out), so every GEMM reads
// and writes contiguous rows; channels-last, each channel's strided gather or scatter would touch
// every cache line of the tensor.
//
// FFT (causal_fft_conv, nn/ops_fft.cpp): O(L log L) per line on FFTW's scalar codelets.  At the
// sequence lengths of the example spaces (L = 256) the direct form's multiply-adds on the GEMM
// kernels take less time than the transforms; the cost model below picks per call.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>

#include "nn/conv_spectral.hpp"
#include "nn/gemm.hpp"
#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
using detail::parallel_range;
using detail::parent;
using detail::StridedMatrix;

namespace {

// Output columns per GEMM: the triangle's waste is half a block per block row; smaller blocks
// make narrower GEMMs (64 columns: two of the AVX-512 kernel's 32-wide panels).
constexpr std::int64_t kBlock = 64;

// [B, L, C] (rows B*L of C) -> [C, B*L], and back, split over rows or columns in parallel.
Tensor channel_major(const float* x, int B, int L, int C) {
  const std::int64_t rows = std::int64_t{B} * L;
  Tensor out(Shape{C, B, L});
  float* o = out.data();
  parallel_range(rows, C, [&](std::int64_t r0, std::int64_t r1) {
    detail::transpose(r1 - r0, C, x + r0 * C, C, o + r0, rows);
  });
  return out;
}
void channels_last(const float* x, std::int64_t rows, std::int64_t C, float* out) {
  parallel_range(rows, C, [&](std::int64_t r0, std::int64_t r1) {
    detail::transpose(C, r1 - r0, x + r0, rows, out + r0 * C, C);
  });
}

// kk[L - 1 + d] = k[d, c] for 0 <= d < taps, 0 elsewhere in [0, 2L - 1).
void padded_filter(const float* k, int taps, int C, int c, int L, float* kk) {
  std::fill(kk, kk + 2 * L - 1, 0.0f);
  for (int d = 0; d < taps; ++d) kk[L - 1 + d] = k[std::int64_t{d} * C + c];
}

// Multiply-adds of one of the three GEMMs of one channel, blocks and band included.
std::int64_t gemm_macs(std::int64_t B, std::int64_t L, std::int64_t taps) {
  std::int64_t inner = 0;
  for (std::int64_t t0 = 0; t0 < L; t0 += kBlock) {
    const std::int64_t t1 = std::min(L, t0 + kBlock);
    inner += (t1 - t0) * (t1 - std::max<std::int64_t>(0, t0 - taps + 1));
  }
  return B * inner;
}

}  // namespace

Var causal_direct_conv(const Var& u, const Var& k) {
  const Shape &su = u.shape(), &sk = k.shape();
  detail::check_causal_conv_shapes("causal_direct_conv", su, sk);
  const int B = su[0], L = su[1], C = su[2], taps = sk[0];
  const std::int64_t BL = std::int64_t{B} * L, cost = gemm_macs(B, L, taps);
  auto ut = std::make_shared<Tensor>(channel_major(u.value().data(), B, L, C));
  Tensor yt(Shape{C, B, L});
  const float* kv = k.value().data();
  parallel_range(C, cost, [&](std::int64_t c0, std::int64_t c1) {
    float* kk = detail::scratch(static_cast<std::size_t>(2 * L), 0);
    for (std::int64_t c = c0; c < c1; ++c) {
      padded_filter(kv, taps, C, static_cast<int>(c), L, kk);
      const float* uc = ut->data() + c * BL;
      float* yc = yt.data() + c * BL;
      // y[:, t0:t1] = u[:, s0:t1] T^T[s0:t1, t0:t1], T^T(s, t) = kk[L - 1 + t - s].
      for (std::int64_t t0 = 0; t0 < L; t0 += kBlock) {
        const std::int64_t t1 = std::min<std::int64_t>(L, t0 + kBlock),
                           s0 = std::max<std::int64_t>(0, t0 - taps + 1);
        detail::sgemm(B, t1 - t0, t1 - s0, StridedMatrix{uc + s0, L, 1},
                      StridedMatrix{kk + L - 1 + t0 - s0, -1, 1}, yc + t0, L, false);
      }
    }
  });
  Tensor y(su);
  channels_last(yt.data(), BL, C, y.data());
  if (!(grad_enabled() && k.requires_grad())) ut.reset();  // u channel-major is kept for dk only
  return make_result(std::move(y), {u, k}, [B, L, C, taps, BL, cost, ut](Node& self) {
    Node &nu = parent(self, 0), &nk = parent(self, 1);
    const bool want_k = nk.requires_grad && ut;
    if (!nu.requires_grad && !want_k) return;
    const Tensor dyt = channel_major(self.grad.data(), B, L, C);
    Tensor dut = nu.requires_grad ? Tensor(Shape{C, B, L}) : Tensor();
    Tensor dk = want_k ? Tensor(nk.value.shape()) : Tensor();  // (every entry is written)
    const float* kv = nk.value.data();
    parallel_range(C, 2 * cost, [&](std::int64_t c0, std::int64_t c1) {
      float* kk = detail::scratch(static_cast<std::size_t>(2 * L), 0);
      float* m = detail::scratch(static_cast<std::size_t>((kBlock + taps) * kBlock), 1);
      float* acc = detail::scratch(static_cast<std::size_t>(taps), 2);
      for (std::int64_t c = c0; c < c1; ++c) {
        const float* dyc = dyt.data() + c * BL;
        if (nu.requires_grad) {
          // du[:, s0:s1] = dy[:, s0:t1] T[s0:t1, s0:s1], T(t, s) = kk[L - 1 + t - s].
          padded_filter(kv, taps, C, static_cast<int>(c), L, kk);
          float* duc = dut.data() + c * BL;
          for (std::int64_t s0 = 0; s0 < L; s0 += kBlock) {
            const std::int64_t s1 = std::min<std::int64_t>(L, s0 + kBlock),
                               t1 = std::min<std::int64_t>(L, s1 + taps - 1);
            detail::sgemm(B, s1 - s0, t1 - s0, StridedMatrix{dyc + s0, L, 1},
                          StridedMatrix{kk + L - 1, 1, -1}, duc + s0, L, false);
          }
        }
        if (want_k) {
          // M = u[:, s0:t1]^T dy[:, t0:t1] per block of columns t; dk[t - s] += M(s, t) over the
          // band, in ascending t (blocks) then s (rows): a fixed order.
          const float* uc = ut->data() + c * BL;
          std::fill(acc, acc + taps, 0.0f);
          for (std::int64_t t0 = 0; t0 < L; t0 += kBlock) {
            const std::int64_t t1 = std::min<std::int64_t>(L, t0 + kBlock),
                               s0 = std::max<std::int64_t>(0, t0 - taps + 1), n = t1 - t0;
            detail::sgemm(t1 - s0, n, B, StridedMatrix{uc + s0, 1, L},
                          StridedMatrix{dyc + t0, L, 1}, m, n, false);
            for (std::int64_t s = s0; s < t1; ++s) {
              // Columns t with 0 <= t - s < taps: j in [max(0, s - t0), min(n, s - t0 + taps)).
              const std::int64_t j0 = std::max<std::int64_t>(0, s - t0),
                                 j1 = std::min<std::int64_t>(n, s - t0 + taps);
              const float* row = m + (s - s0) * n + j0;
              float* a = acc + (t0 + j0 - s);  // a[i] is dk[t0 + j0 + i - s]
              for (std::int64_t i = 0; i < j1 - j0; ++i) a[i] += row[i];
            }
          }
          for (int d = 0; d < taps; ++d) dk.data()[std::int64_t{d} * C + c] = acc[d];
        }
      }
    });
    if (nu.requires_grad) {
      Tensor du(nu.value.shape());
      channels_last(dut.data(), BL, C, du.data());
      detail::accumulate_owned(nu, std::move(du));
    }
    if (want_k) detail::accumulate_owned(nk, std::move(dk));
  });
}

bool direct_long_conv_pays(int B, int L, int C, int taps) {
  switch (detail::conv_algorithm()) {
    case detail::ConvAlgorithm::kDirect:
      return true;
    case detail::ConvAlgorithm::kSpectral:
      return false;
    case detail::ConvAlgorithm::kAuto:
      break;
  }
  // A speed choice: the portable fallback's GEMM (Eigen's, which takes the negative strides too:
  // Eigen >= 3.4) is far below the x86 kernels' rate that the direct form's estimate assumes.
  const detail::GemmIsa isa = detail::gemm_isa();
  if (isa == detail::GemmIsa::kEigen) return false;
  // Nanoseconds of one core per (batch, channel) line for one training step, fitted to
  // bench_long_conv_forms (batch 64, 64 channels, L = 32 ... 2048; bench/README.md, stop 44).
  // Direct: three GEMMs at ~30 multiply-adds per ns on the AVX-512 kernels (what these 64-row
  // products reach; 35-40 at L >= 1024), half that on the AVX2 ones, and four transposes.  FFT:
  // four length-2L transforms per line (u, y forward; dy, du backward) with their gathers,
  // products and scatters, 2.0-2.5 ns per n log2 n point in all.  Measured, they cross near
  // L = 1024 for a full-length filter (direct 2.7x faster at 256, FFT 1.6x at 2048).
  const double rate = isa == detail::GemmIsa::kAvx512 ? 30.0 : 15.0;
  const double n = 2.0 * L, lines = double(B) * C;
  const double direct = 3.0 * double(gemm_macs(B, L, taps)) * C / rate / lines + 4.0 * L * 0.5;
  const double fft = 2.3 * n * std::log2(n);
  return direct < fft;
}

Var causal_long_conv(const Var& u, const Var& k) {
  detail::check_causal_conv_shapes("causal_long_conv", u.shape(), k.shape());
  const Shape &su = u.shape(), &sk = k.shape();
  return direct_long_conv_pays(su[0], su[1], su[2], sk[0]) ? causal_direct_conv(u, k)
                                                           : causal_fft_conv(u, k);
}

}  // namespace hwnas::nn
