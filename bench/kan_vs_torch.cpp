// Training-step throughput of a KAN (nn/kan.hpp) against an efficient-KAN written in PyTorch
// (bench/kan_vs_torch.py, same formulation: SiLU base branch + B-spline basis contracted by
// one matmul, per-edge spline scale).  One step = forward, MSE against random targets,
// backward, Adam update, batch B, float32.  Run through bench/run_kan_vs_torch.sh.
//
//   bench_kan_vs_torch [--model mnist|tiny|all] [--steps N] [--warmup N] [--batch B]
//                      [--threads T]
//   mnist: 784 -> 64 -> 10, G = 5, k = 3;   tiny: 2 -> 5 -> 1, G = 5, k = 3.
// Prints one "RESULT model=.. impl=hwnas samples_per_s=.." line per model.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "nn/kan.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "nn/parallel.hpp"

using namespace hwnas;

namespace {

struct Args {
  std::string model = "all";
  int steps = 50, warmup = 5, batch = 64, threads = 2;
};

void run(const std::string& model, const std::vector<int>& widths, const Args& a) {
  std::mt19937_64 rng(1);
  nn::KanOptions o;
  o.grid_size = 5;
  o.order = 3;
  std::vector<nn::KanLinear> layers;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l)
    layers.emplace_back(widths[l], widths[l + 1], o, rng);
  std::vector<nn::Var> ps;
  for (auto& l : layers) l.collect_parameters(ps);
  nn::AdamWOptions ao;
  ao.weight_decay = 0.0f;
  nn::AdamW opt(ps, ao);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  nn::Tensor x(nn::Shape{a.batch, widths.front()}), y(nn::Shape{a.batch, widths.back()});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = u(rng);
  for (std::int64_t i = 0; i < y.numel(); ++i) y.data()[i] = u(rng);
  auto step = [&] {
    opt.zero_grad();
    nn::Var h = nn::constant(x);
    for (auto& l : layers) h = l.forward(h);
    nn::backward(nn::mse(h, nn::constant(y)));
    opt.step();
  };
  for (int s = 0; s < a.warmup; ++s) step();
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < a.steps; ++s) step();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("RESULT model=%s impl=hwnas samples_per_s=%.1f step_ms=%.3f\n", model.c_str(),
              a.steps * a.batch / secs, 1e3 * secs / a.steps);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      a.model = v;
    else if (k == "--steps")
      a.steps = std::atoi(v.c_str());
    else if (k == "--warmup")
      a.warmup = std::atoi(v.c_str());
    else if (k == "--batch")
      a.batch = std::atoi(v.c_str());
    else if (k == "--threads")
      a.threads = std::atoi(v.c_str());
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  nn::ThreadBudget budget(a.threads);
  return nn::run_isolated([&] {
    if (a.model == "mnist" || a.model == "all") run("mnist", {784, 64, 10}, a);
    if (a.model == "tiny" || a.model == "all") run("tiny", {2, 5, 1}, a);
    return 0;
  });
}
