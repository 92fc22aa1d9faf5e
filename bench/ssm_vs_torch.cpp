// hwnas's fused SSM ops against PyTorch implementations of the same math (bench/ssm_vs_torch.py,
// driven by bench/ssm_vs_torch.sh): one forward + backward per iteration of
//   scan  selective_scan over u, delta [B, L, E], A [E, N], B, C [B, L, N] with the loss
//         sum(y * w) for a fixed w, gradients to all five inputs;
//   s4d   the S4D layer (kernel by Vandermonde product, causal FFT convolution, D skip) over
//         u [B, L, H], gradients to u and every parameter.
// Prints "RESULT impl=hwnas-<op> ..." lines with the mean milliseconds per iteration.
//
//   bench_ssm_vs_torch [--batch 8] [--seq 512] [--inner 128] [--state 16] [--channels 128]
//                      [--s4d-state 64] [--iters 10] [--warmup 2] [--threads 2]
#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "nn/parallel.hpp"
#include "nn/ssm.hpp"
#include "nn/ssm_layers.hpp"

using namespace hwnas;

namespace {

struct Args {
  int batch = 8, seq = 512, inner = 128, state = 16, channels = 128, s4d_state = 64;
  int iters = 10, warmup = 2, threads = 2;
};

nn::Tensor randn(const nn::Shape& s, std::mt19937_64& rng, float mean = 0.0f, float sd = 1.0f) {
  std::normal_distribution<float> d(mean, sd);
  nn::Tensor t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = d(rng);
  return t;
}

template <class F>
double mean_ms(const Args& a, F&& iteration) {
  for (int i = 0; i < a.warmup; ++i) iteration();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < a.iters; ++i) iteration();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
         a.iters;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::stoi(argv[i + 1]);
    if (k == "--batch")
      a.batch = v;
    else if (k == "--seq")
      a.seq = v;
    else if (k == "--inner")
      a.inner = v;
    else if (k == "--state")
      a.state = v;
    else if (k == "--channels")
      a.channels = v;
    else if (k == "--s4d-state")
      a.s4d_state = v;
    else if (k == "--iters")
      a.iters = v;
    else if (k == "--warmup")
      a.warmup = v;
    else if (k == "--threads")
      a.threads = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 1;
    }
  }
  nn::ThreadBudget budget(a.threads);
  std::mt19937_64 rng(1);
  const int B = a.batch, L = a.seq, E = a.inner, N = a.state;

  // ---- selective scan
  std::vector<nn::Var> scan_in{
      nn::parameter(randn({B, L, E}, rng)),
      nn::parameter(randn({B, L, E}, rng, 0.0f, 0.1f)),  // delta = softplus of this, below
      nn::parameter(randn({E, N}, rng)), nn::parameter(randn({B, L, N}, rng)),
      nn::parameter(randn({B, L, N}, rng))};
  const nn::Var w = nn::constant(randn({B, L, E}, rng));
  // delta and A as the block feeds them (softplus, -exp) are part of both implementations.
  const double scan_ms = mean_ms(a, [&] {
    nn::zero_grad(scan_in);
    nn::run_isolated([&] {
      const nn::Var y =
          nn::selective_scan(scan_in[0], nn::softplus(scan_in[1]),
                             nn::scale(nn::exp(scan_in[2]), -1.0f), scan_in[3], scan_in[4]);
      nn::backward(nn::sum(nn::mul(y, w)));
    });
  });
  std::printf(
      "RESULT impl=hwnas-scan batch=%d seq=%d inner=%d state=%d threads=%d "
      "ms_per_iter=%.3f\n",
      B, L, E, N, a.threads, scan_ms);

  // ---- S4D layer
  nn::S4dOptions so;
  so.channels = a.channels;
  so.state = a.s4d_state;
  nn::S4dLayer layer(so, rng);
  std::vector<nn::Var> s4d_params;
  layer.collect_parameters(s4d_params);
  nn::Var u = nn::parameter(randn({B, L, a.channels}, rng));
  s4d_params.push_back(u);
  const nn::Var w2 = nn::constant(randn({B, L, a.channels}, rng));
  const double s4d_ms = mean_ms(a, [&] {
    nn::zero_grad(s4d_params);
    nn::run_isolated([&] { nn::backward(nn::sum(nn::mul(layer.forward(u), w2))); });
  });
  std::printf(
      "RESULT impl=hwnas-s4d batch=%d seq=%d channels=%d state=%d threads=%d "
      "ms_per_iter=%.3f\n",
      B, L, a.channels, a.s4d_state, a.threads, s4d_ms);
  return 0;
}
