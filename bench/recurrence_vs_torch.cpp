// Forward + backward throughput of the fused time loop (nn/time_loop.hpp) against PyTorch's
// nn.LSTM / nn.RNN (bench/recurrence_vs_torch.py) on the same single-layer recurrence.
// One iteration = forward over [B, T, F], MSE loss against a fixed target [B, T, H], backward to
// the input and every parameter (no optimizer step: the optimizer is not what is measured).
// Run through bench/run_recurrence_vs_torch.sh, which prints the comparison.
//
//   bench_recurrence_vs_torch [--cell lstm|rnn] [--batch 32] [--seq 256] [--input 128]
//                             [--hidden 128] [--iters 20] [--warmup 3] [--threads 2]
//                             [--checkpoint K]
// Prints one "RESULT ..." line.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "nn/recurrent_cells.hpp"

using namespace hwnas;

namespace {

struct Args {
  std::string cell = "lstm";
  int batch = 32, seq = 256, input = 128, hidden = 128, iters = 20, warmup = 3, threads = 2,
      checkpoint = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--cell")
      a.cell = val();
    else if (k == "--batch")
      a.batch = std::stoi(val());
    else if (k == "--seq")
      a.seq = std::stoi(val());
    else if (k == "--input")
      a.input = std::stoi(val());
    else if (k == "--hidden")
      a.hidden = std::stoi(val());
    else if (k == "--iters")
      a.iters = std::stoi(val());
    else if (k == "--warmup")
      a.warmup = std::stoi(val());
    else if (k == "--threads")
      a.threads = std::stoi(val());
    else if (k == "--checkpoint")
      a.checkpoint = std::stoi(val());
    else {
      std::fprintf(
          stderr,
          "usage: %s [--cell lstm|rnn] [--batch B] [--seq T] [--input F] [--hidden H] [--iters N] "
          "[--warmup N] [--threads N] [--checkpoint K]\n",
          argv[0]);
      std::exit(2);
    }
  }
  if (a.cell != "lstm" && a.cell != "rnn") {
    std::fprintf(stderr, "unknown cell '%s' (lstm or rnn)\n", a.cell.c_str());
    std::exit(2);
  }
  return a;
}

// CPU seconds (user + system, all threads) this process has used: on a shared, loaded machine
// wall time includes waiting for a core, CPU time does not.
double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  nn::ThreadBudget budget(a.threads);
  std::mt19937_64 rng(1);
  const nn::RecurrenceOptions opt{a.checkpoint};
  std::unique_ptr<nn::Module> layer;
  if (a.cell == "lstm")
    layer = std::make_unique<nn::Lstm>(a.input, a.hidden, true, rng, opt);
  else
    layer = std::make_unique<nn::ElmanRnn>(a.input, a.hidden, true, rng, opt);
  std::vector<nn::Var> params;
  layer->collect_parameters(params);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto randn = [&](const nn::Shape& s) {
    nn::Tensor t(s);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = nd(rng);
    return t;
  };
  // The input needs a gradient too, as it would inside a deeper model.
  nn::Var x = nn::parameter(randn(nn::Shape{a.batch, a.seq, a.input}));
  const nn::Var target = nn::constant(randn(nn::Shape{a.batch, a.seq, a.hidden}));
  nn::ForwardContext ctx;
  double last_loss = 0;
  auto iteration = [&] {
    for (nn::Var& p : params) p.grad() = nn::Tensor();
    x.grad() = nn::Tensor();
    nn::Var loss = nn::mse(layer->forward({x}, ctx), target);
    last_loss = loss.value().item();
    nn::backward(loss);
  };
  const double rss_base = peak_rss_mb();  // layer and data built, nothing run yet
  nn::run_isolated([&] {
    for (int i = 0; i < a.warmup; ++i) iteration();
    const double cpu0 = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < a.iters; ++i) iteration();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu_ms_iter = 1e3 * (cpu_seconds() - cpu0) / a.iters;
    const double ms_iter = 1e3 * secs / a.iters;
    std::printf(
        "RESULT impl=hwnas cell=%s batch=%d seq=%d input=%d hidden=%d threads=%d checkpoint=%d "
        "iters=%d "
        "ms_per_iter=%.3f cpu_ms_per_iter=%.3f us_per_timestep=%.2f samples_per_s=%.1f rss_mb=%.1f "
        "rss_base_mb=%.1f "
        "loss=%.6f\n",
        a.cell.c_str(), a.batch, a.seq, a.input, a.hidden, a.threads, a.checkpoint, a.iters,
        ms_iter, cpu_ms_iter, 1e3 * ms_iter / a.seq, a.batch * a.iters / secs, peak_rss_mb(),
        rss_base, last_loss);
  });
  return 0;
}
