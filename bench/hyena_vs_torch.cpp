// Forward+backward throughput of the hyena block (spaces/blocks/block_hyena.cpp, built through
// the catalogue) on [B, L, d]: one iteration = forward, sum of the output as loss, backward to
// the input and every parameter.  Prints one "RESULT impl=hwnas-hyena ..." line;
// bench/hyena_vs_torch.sh runs it next to the same math in PyTorch (bench/hyena_vs_torch.py).
//
//   bench_hyena_vs_torch [--batch 8] [--seq 1024] [--width 64] [--order 2] [--filter-width 64]
//                        [--iters 10] [--warmup 2] [--threads 2]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "nn/parallel.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"

using namespace hwnas;

int main(int argc, char** argv) {
  int batch = 8, seq = 1024, width = 64, order = 2, fw = 64, iters = 10, warmup = 2, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--batch")
      batch = v;
    else if (k == "--seq")
      seq = v;
    else if (k == "--width")
      width = v;
    else if (k == "--order")
      order = v;
    else if (k == "--filter-width")
      fw = v;
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
  spaces::Genome g(spaces::TensorType::sequence(seq, width));
  auto v = g.add_node("hyena", {{"order", order},
                                {"filter_width", fw},
                                {"filter_depth", 2},
                                {"emb_dim", 3},
                                {"short_kernel", 3}});
  g.add_edge(0, v);
  g.validate();
  auto model = spaces::build_model(g, 1);
  std::vector<nn::Var> params;
  model->collect_parameters(params);
  std::int64_t n_params = 0;
  for (const nn::Var& p : params) n_params += p.value().numel();
  std::mt19937_64 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  nn::Tensor xt(nn::Shape{batch, seq, width});
  for (std::int64_t i = 0; i < xt.numel(); ++i) xt.data()[i] = nd(rng);
  double total = 0;
  for (int i = 0; i < warmup + iters; ++i) {
    nn::zero_grad(params);
    nn::Var x = nn::parameter(xt.clone());
    nn::ForwardContext ctx;
    const auto t0 = std::chrono::steady_clock::now();
    nn::backward(nn::sum(model->forward(x, ctx)));
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= warmup) total += std::chrono::duration<double>(t1 - t0).count();
  }
  const double ms = total / iters * 1e3;
  std::printf("RESULT impl=hwnas-hyena params=%lld ms_per_iter=%.3f samples_per_s=%.2f\n",
              static_cast<long long>(n_params), ms, batch / (ms / 1e3));
  return 0;
}
