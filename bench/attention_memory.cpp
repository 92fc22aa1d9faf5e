// Training cost of the attention implementations: forward + backward time and peak memory of
// the attention block (spaces/blocks/block_attention.cpp) with impl standard, impl flash, and
// sliding_attention (window 64, standard kernel), at L = 256..4096, width 64, 4 heads, batch 1,
// built through the catalogue exactly as a search builds it.  Each measurement runs in a forked
// child process so that peak RSS (VmHWM, minus the RSS after the model and input exist) belongs
// to that one configuration.  Prints a table and the growth exponents fitted by least squares
// on log(metric) vs log(L).
//
//   bench_attention_memory [--threads 2] [--reps 3] [--max-len 4096]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "nn/parallel.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"

using namespace hwnas;

namespace {

std::int64_t status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k(key);
  while (std::getline(f, line))
    if (line.rfind(k, 0) == 0) return std::stoll(line.substr(k.size()));
  return -1;
}

struct Result {
  double ms = 0;       // best forward+backward time
  double peak_mb = 0;  // peak RSS growth
};

Result measure(const std::string& kind, const nlohmann::json& p, int len, int threads, int reps) {
  nn::ThreadBudget budget(threads);
  spaces::Genome g(spaces::TensorType::sequence(len, 64));
  auto v = g.add_node(kind, p);
  g.add_edge(0, v);
  g.validate();
  auto model = spaces::build_model(g, 1);
  std::mt19937_64 rng(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  nn::Tensor xt(nn::Shape{1, len, 64});
  for (std::int64_t i = 0; i < xt.numel(); ++i) xt.data()[i] = nd(rng);
  std::vector<nn::Var> params;
  model->collect_parameters(params);
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  const std::int64_t base = status_kb("VmRSS:");
  Result r;
  r.ms = 1e30;
  for (int i = 0; i < reps; ++i) {
    nn::zero_grad(params);
    nn::Var x = nn::parameter(xt.clone());
    nn::ForwardContext ctx;
    const auto t0 = std::chrono::steady_clock::now();
    nn::Var y = model->forward(x, ctx);
    nn::backward(nn::sum(y));
    const auto t1 = std::chrono::steady_clock::now();
    r.ms = std::min(r.ms, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  r.peak_mb = (status_kb("VmHWM:") - base) / 1024.0;
  return r;
}

// Runs measure() in a child process and reads its result back through a pipe.
Result forked(const std::string& kind, const nlohmann::json& p, int len, int threads, int reps) {
  int fd[2];
  if (pipe(fd) != 0) std::exit(1);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    const Result r = measure(kind, p, len, threads, reps);
    if (write(fd[1], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) _exit(1);
    _exit(0);
  }
  close(fd[1]);
  Result r{};
  if (read(fd[0], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) r = {NAN, NAN};
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return r;
}

double slope(const std::vector<double>& x, const std::vector<double>& y) {
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < x.size(); ++i) mx += std::log(x[i]), my += std::log(y[i]);
  mx /= x.size();
  my /= y.size();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    num += (std::log(x[i]) - mx) * (std::log(y[i]) - my);
    den += (std::log(x[i]) - mx) * (std::log(x[i]) - mx);
  }
  return num / den;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 3, max_len = 4096;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--threads")
      threads = v;
    else if (k == "--reps")
      reps = v;
    else if (k == "--max-len")
      max_len = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  struct Impl {
    const char* label;
    const char* kind;
    nlohmann::json p;
  };
  const std::vector<Impl> impls = {
      {"standard", "attention", {{"heads", 4}, {"impl", "standard"}}},
      {"flash", "attention", {{"heads", 4}, {"impl", "flash"}}},
      {"sliding(w=64)", "sliding_attention", {{"heads", 4}, {"window", 64}}}};
  std::vector<int> lens;
  for (int l = 256; l <= max_len; l *= 2) lens.push_back(l);
  std::printf("attention forward+backward, width 64, 4 heads, batch 1, %d threads, best of %d\n",
              threads, reps);
  std::printf("%-14s %6s %10s %12s\n", "impl", "L", "ms", "peak MiB");
  for (const Impl& im : impls) {
    std::vector<double> xs, ts, ms;
    for (int len : lens) {
      const Result r = forked(im.kind, im.p, len, threads, reps);
      std::printf("%-14s %6d %10.2f %12.2f\n", im.label, len, r.ms, r.peak_mb);
      std::fflush(stdout);
      xs.push_back(len);
      ts.push_back(r.ms);
      ms.push_back(std::max(r.peak_mb, 1e-3));
    }
    std::printf("%-14s growth exponent: time L^%.2f, peak memory L^%.2f\n", im.label, slope(xs, ts),
                slope(xs, ms));
  }
  return 0;
}
