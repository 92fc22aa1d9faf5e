// Fused state-space model (SSM) ops with hand-written backward passes: the selective scan of
// Mamba (Gu & Dao 2023) and the convolution kernel of S4D (Gu, Gupta, Goel & Re 2022).
//
// Both replace what would otherwise be an autograd graph with one node per time step (or one
// complex op per mode and lag): their forward and backward cost grows linearly with the
// sequence length, and their memory stays O(L / chunk) per channel (the scan keeps the state at
// chunk boundaries and recomputes the states inside a chunk during backward).  Results do not
// depend on the thread count (work splits into fixed chunks; cross-channel sums are reduced in
// a fixed order).  See docs/blocks/mamba.md and docs/blocks/s4d.md.
#pragma once

#include "nn/autograd.hpp"

namespace hwnas::nn {

// Selective scan (Mamba, Algorithm 2 with zero-order-hold A and Euler B, as selective_scan_ref):
// for every batch row b and channel e, with state h in R^N starting at 0,
//   h_t = exp(delta_t A_e) * h_{t-1} + delta_t B_t u_t      (elementwise over the N modes)
//   y_t = sum_n C_t[n] h_t[n]
// u, delta: [Bt, L, E]; A: [E, N] (real; Mamba keeps it negative, A = -exp(A_log)); B, C:
// [Bt, L, N] (shared by the E channels of a token).  Returns y [Bt, L, E].  delta should be
// positive (softplus of a projection); the D skip and the gate stay outside.  Throws
// std::invalid_argument naming the mismatched input.
Var selective_scan(const Var& u, const Var& delta, const Var& A, const Var& B, const Var& C);

// Steps per saved state in selective_scan's backward recomputation: memory per channel is
// N * (L / kScanChunk + kScanChunk) floats instead of N * L.
inline constexpr int kScanChunk = 32;

// S4D convolution kernel K [H, L] of a diagonal SSM with N2 complex modes per channel, zero-order
// hold discretisation with step dt_h = exp(log_dt_h):
//   A = -exp(log_a_real) + i a_imag,  z = dt A,  K[h, l] = 2 Re sum_n C_n (exp(z_n) - 1) / A_n
//   * exp(z_n l)
// (the "2 Re" stands for the conjugate half of the 2 N2 real-valued modes).  log_dt: [H];
// log_a_real, a_imag: [H, N2]; c: [H, N2, 2] (re, im).  length >= 1.  Computed in double
// precision by repeated multiplication with exp(z_n) (one complex MAC per mode and lag).
Var s4d_kernel(const Var& log_dt, const Var& log_a_real, const Var& a_imag, const Var& c,
               int length);

}  // namespace hwnas::nn
