// Forward+backward throughput of an RK4 Neural ODE solve (nn/ode.hpp): state D, f = MLP
// D -> H -> D with tanh, batch B, `steps` RK4 steps over [0, 1].  One iteration = the solve,
// MSE against a fixed target, backward to h0 and every parameter.  Runs both gradient modes
// (backprop through the solver's tape, and the adjoint) and prints one "RESULT impl=..." line
// each; bench/ode_vs_torch.sh runs it next to the same maths in PyTorch (bench/ode_vs_torch.py).
//
//   bench_ode_vs_torch [--batch 64] [--dim 32] [--hidden 64] [--steps 20] [--iters 200]
//                      [--warmup 20] [--threads 2]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "nn/ode.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"

using namespace hwnas;

int main(int argc, char** argv) {
  int batch = 64, dim = 32, hidden = 64, steps = 20, iters = 200, warmup = 20, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--batch")
      batch = v;
    else if (k == "--dim")
      dim = v;
    else if (k == "--hidden")
      hidden = v;
    else if (k == "--steps")
      steps = v;
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
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const char* mode : {"backprop", "adjoint"}) {
    std::mt19937_64 rng(1);
    nn::OdeFuncOptions fo;
    fo.dim = dim;
    fo.hidden = hidden;
    fo.layers = 1;
    fo.activation = nn::OdeActivation::Tanh;
    nn::OdeSolveOptions so;
    so.solver = nn::OdeSolver::Rk4;
    so.gradient = nn::ode_gradient_from_name(mode);
    so.steps = steps;
    nn::NeuralOde ode(fo, so, rng);
    std::vector<nn::Var> params;
    ode.collect_parameters(params);
    std::int64_t n_params = 0;
    for (const nn::Var& p : params) n_params += p.value().numel();
    auto randn = [&](const nn::Shape& s) {
      nn::Tensor t(s);
      for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = nd(rng);
      return t;
    };
    nn::Var x = nn::parameter(randn(nn::Shape{batch, dim}));
    const nn::Var target = nn::constant(randn(nn::Shape{batch, dim}));
    auto iteration = [&] {
      for (nn::Var& p : params) p.grad() = nn::Tensor();
      x.grad() = nn::Tensor();
      nn::backward(nn::mse(ode.forward(x), target));
    };
    nn::run_isolated([&] {
      for (int i = 0; i < warmup; ++i) iteration();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) iteration();
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf(
          "RESULT impl=hwnas-%s batch=%d dim=%d hidden=%d steps=%d threads=%d params=%lld "
          "ms_per_iter=%.4f samples_per_s=%.1f\n",
          mode, batch, dim, hidden, steps, threads, static_cast<long long>(n_params),
          1e3 * secs / iters, batch * iters / secs);
    });
  }
  return 0;
}
