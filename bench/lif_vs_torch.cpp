// Forward+backward time of a LIF layer's neuron loop over T steps: hwnas's fused lif op
// (nn/lif.hpp, one graph node, hand-written BPTT) on a precomputed input current [B, T, N].
// bench/lif_vs_torch.py times the same loop written in PyTorch (snnTorch-style: a Python loop
// over t with a fast-sigmoid surrogate autograd.Function); bench/lif_vs_torch.sh runs both.
//
//   bench_lif_vs_torch [--batch B] [--steps T] [--neurons N] [--iters I] [--warmup W]
//                      [--threads K]
// Prints "hwnas_ms_per_iter <ms>".
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "nn/lif.hpp"
#include "nn/parallel.hpp"

using namespace hwnas::nn;

int main(int argc, char** argv) {
  int batch = 64, steps = 16, neurons = 1024, iters = 20, warmup = 3, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--batch")
      batch = v;
    else if (k == "--steps")
      steps = v;
    else if (k == "--neurons")
      neurons = v;
    else if (k == "--iters")
      iters = v;
    else if (k == "--warmup")
      warmup = v;
    else if (k == "--threads")
      threads = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  ThreadBudget budget(threads);
  std::mt19937_64 rng(0);
  std::uniform_real_distribution<float> u(-0.5f, 1.5f);
  Tensor cur(Shape{batch, steps, neurons});
  for (std::int64_t i = 0; i < cur.numel(); ++i) cur.data()[i] = u(rng);
  Tensor proj(cur.shape());
  for (std::int64_t i = 0; i < proj.numel(); ++i) proj.data()[i] = u(rng);
  const Var beta = constant(Tensor(Shape{1}, 0.9f));
  const Var th = constant(Tensor(Shape{1}, 1.0f));
  double spikes = 0;
  auto once = [&] {
    Var x = parameter(cur);
    const Var s = lif(x, beta, th, {});
    backward(sum(mul(s, constant(proj))));
    spikes = 0;
    for (std::int64_t i = 0; i < s.value().numel(); ++i) spikes += s.value().data()[i];
  };
  run_isolated([&] {
    for (int i = 0; i < warmup; ++i) once();
  });
  const auto t0 = std::chrono::steady_clock::now();
  run_isolated([&] {
    for (int i = 0; i < iters; ++i) once();
  });
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
      iters;
  std::printf("hwnas batch=%d steps=%d neurons=%d threads=%d spike_rate=%.4f\n", batch, steps,
              neurons, threads, spikes / static_cast<double>(cur.numel()));
  std::printf("hwnas_ms_per_iter %.3f\n", ms);
  return 0;
}
