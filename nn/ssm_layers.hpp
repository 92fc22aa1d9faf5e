// State-space sequence mixers built on the fused ops of nn/ssm.hpp: the S4D layer (Gu, Gupta,
// Goel & Re 2022) and the Mamba selective-scan mixer (Gu & Dao 2023).  Both map [B, L, d] ->
// [B, L, d]; spaces/blocks/block_s4d.cpp and block_mamba.cpp wrap them as block kinds.  See
// docs/blocks/s4d.md and docs/blocks/mamba.md for the equations and initialisations.
#pragma once

#include <random>
#include <string>

#include "nn/layers.hpp"
#include "nn/module.hpp"

namespace hwnas::nn {

// Initialisation of the imaginary parts of S4D's diagonal A (real parts start at -1/2):
//   Lin: a_imag_n = pi n;  Inv: a_imag_n = N / pi * (N / (2 n + 1) - 1)   (n = 0 .. N/2 - 1).
enum class S4dInit { Lin, Inv };

struct S4dOptions {
  int channels = 0;  // H
  int state = 64;    // N, even: N/2 complex modes per channel
  S4dInit init = S4dInit::Lin;
  float dt_min = 1e-3f;  // log step sizes start log-uniform in [dt_min, dt_max]
  float dt_max = 1e-1f;
};
// Throws std::invalid_argument naming the field (channels >= 1, state even >= 2,
// 0 < dt_min <= dt_max).
void validate(const S4dOptions& o);

// The S4D SSM over H independent channels: y = K * u (causal convolution with the ZOH kernel
// of length L, by FFT) + D u.  Parameters (named): log_dt [H], log_a_real [H, N/2],
// a_imag [H, N/2], c [H, N/2, 2] (complex C as re, im), d [H].
class S4dLayer : public Module {
 public:
  S4dLayer(const S4dOptions& o, std::mt19937_64& rng);
  // Convolutional mode (training): u [B, L, H] -> [B, L, H].
  Var forward(const Var& u);
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  // Recurrent mode (inference, no graph): the same outputs, one step at a time with the
  // discretised state h_t = exp(dt A) h_{t-1} + (exp(dt A) - 1) / A u_t, y_t = 2 Re(C h_t) + D u_t.
  Tensor forward_recurrent(const Tensor& u) const;
  // The convolution kernel K [H, L].
  Var kernel(int length) const;
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "s4d"; }

  S4dOptions options;
  Var log_dt, log_a_real, a_imag, c, d;
};

struct MambaOptions {
  int d_model = 0;
  int d_state = 16;  // N
  int expand = 2;    // E = expand * d_model
  int d_conv = 4;    // causal depthwise conv kernel
  int dt_rank = 0;   // 0: ceil(d_model / 16) as the paper's "auto"
  float dt_min = 1e-3f;
  float dt_max = 1e-1f;
  int inner() const { return expand * d_model; }
  int rank() const { return dt_rank > 0 ? dt_rank : (d_model + 15) / 16; }
};
// Throws std::invalid_argument naming the field.
void validate(const MambaOptions& o);

// The Mamba mixer (mamba_simple.py without the fast-path kernels):
//   [x, z] = in_proj(u);  x = silu(causal_dwconv(x));  [dt_low, B, C] = x_proj(x)
//   delta = softplus(dt_proj(dt_low));  y = selective_scan(x, delta, -exp(A_log), B, C) + D x
//   out = out_proj(y * silu(z))
// Named parameters: in_proj.weight [2E, d], conv1d.weight [d_conv, E], conv1d.bias [E],
// x_proj.weight [R + 2N, E], dt_proj.weight [E, R], dt_proj.bias [E], A_log [E, N], D [E],
// out_proj.weight [d, E].
class MambaMixer : public Module {
 public:
  MambaMixer(const MambaOptions& o, std::mt19937_64& rng);
  Var forward(const Var& u);  // [B, L, d] -> [B, L, d]
  Var forward(const std::vector<Var>& in, ForwardContext&) override { return forward(in.at(0)); }
  void append_named_parameters(const std::string& prefix,
                               std::vector<NamedParameter>& out) override;
  std::string name() const override { return "mamba"; }

  MambaOptions options;
  Linear in_proj, x_proj, dt_proj, out_proj;
  Var conv_weight, conv_bias, A_log, D;
};

}  // namespace hwnas::nn
