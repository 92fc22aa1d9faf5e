// Forward+backward throughput of hwnas's fused CfC (nn/liquid_cells.hpp) sized like an LSTM:
// hidden H with no backbone has four heads of [H, F] and [H, H] weights, exactly the shapes of
// an LSTM's four gates, so the two do the same GEMM work per step and differ only in the cell's
// elementwise maths.  One iteration = forward over [B, T, F], MSE against a fixed target,
// backward to the input and every parameter.  Prints one "RESULT impl=hwnas-cfc ..." line;
// bench/cfc_vs_torch.sh runs it next to torch.nn.LSTM (bench/cfc_vs_torch.py).
//
//   bench_cfc_vs_torch [--batch 32] [--seq 256] [--input 128] [--hidden 128] [--iters 20]
//                      [--warmup 3] [--threads 2]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "nn/liquid_cells.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"

using namespace hwnas;

int main(int argc, char** argv) {
  int batch = 32, seq = 256, input = 128, hidden = 128, iters = 20, warmup = 3, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--batch")
      batch = v;
    else if (k == "--seq")
      seq = v;
    else if (k == "--input")
      input = v;
    else if (k == "--hidden")
      hidden = v;
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
  nn::ThreadBudget budget(threads);
  std::mt19937_64 rng(1);
  nn::CfcConfig cfg;
  cfg.hidden = hidden;
  cfg.backbone_layers = 0;
  nn::Cfc layer(input, cfg, rng);
  std::vector<nn::Var> params;
  layer.collect_parameters(params);
  std::int64_t n_params = 0;
  for (const nn::Var& p : params) n_params += p.value().numel();
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto randn = [&](const nn::Shape& s) {
    nn::Tensor t(s);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = nd(rng);
    return t;
  };
  nn::Var x = nn::parameter(randn(nn::Shape{batch, seq, input}));
  const nn::Var target = nn::constant(randn(nn::Shape{batch, seq, hidden}));
  auto iteration = [&] {
    for (nn::Var& p : params) p.grad() = nn::Tensor();
    x.grad() = nn::Tensor();
    nn::backward(nn::mse(layer.forward(x), target));
  };
  nn::run_isolated([&] {
    for (int i = 0; i < warmup; ++i) iteration();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) iteration();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "RESULT impl=hwnas-cfc batch=%d seq=%d input=%d hidden=%d threads=%d params=%lld "
        "ms_per_iter=%.3f samples_per_s=%.1f\n",
        batch, seq, input, hidden, threads, static_cast<long long>(n_params), 1e3 * secs / iters,
        batch * iters / secs);
  });
  return 0;
}
