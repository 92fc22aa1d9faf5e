// Peak memory of one Neural ODE forward+backward (nn/ode.hpp) at 10, 100 and 1000 RK4 steps,
// backprop through the solver against the adjoint method: the tape of backprop keeps every
// stage's activations, so its memory grows with the steps; the adjoint recomputes the
// trajectory backwards and stays flat.  D = 32, MLP 32-64-32 tanh, batch 64.
//
// Measure: each (mode, steps) pass runs in a freshly forked child; the figure is the child's
// resident-set high-water mark (VmHWM) after the pass minus its resident set (VmRSS) just
// before it, so the parent's allocations and the process-wide tensor buffer pool of earlier
// passes do not leak into it.  Prints a table.
//
//   bench_ode_memory [--batch 64] [--dim 32] [--hidden 64]
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>

#include "nn/ode.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"

using namespace hwnas;

namespace {

long status_kb(const char* key) {  // a "Key:   N kB" line of /proc/self/status
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(f, line))
    if (line.rfind(k, 0) == 0) return std::strtol(line.c_str() + k.size(), nullptr, 10);
  return -1;
}

// Runs in the child: one forward+backward; returns the peak growth in kB.
long measure(const char* mode, int steps, int batch, int dim, int hidden) {
  nn::ThreadBudget budget(1);
  std::mt19937_64 rng(1);
  nn::OdeFuncOptions fo;
  fo.dim = dim;
  fo.hidden = hidden;
  nn::OdeSolveOptions so;
  so.steps = steps;
  so.gradient = nn::ode_gradient_from_name(mode);
  nn::NeuralOde ode(fo, so, rng);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  nn::Tensor x0(nn::Shape{batch, dim}), tg(nn::Shape{batch, dim});
  for (std::int64_t i = 0; i < x0.numel(); ++i) {
    x0.data()[i] = nd(rng);
    tg.data()[i] = nd(rng);
  }
  nn::Var x = nn::parameter(x0);
  const nn::Var target = nn::constant(tg);
  const long before = status_kb("VmRSS");
  nn::backward(nn::mse(ode.forward(x), target));
  return status_kb("VmHWM") - before;
}

}  // namespace

int main(int argc, char** argv) {
  int batch = 64, dim = 32, hidden = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--batch")
      batch = v;
    else if (k == "--dim")
      dim = v;
    else if (k == "--hidden")
      hidden = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  std::printf(
      "peak RSS growth of one forward+backward (kB; fresh child per cell), "
      "batch %d, D %d, hidden %d\n",
      batch, dim, hidden);
  std::printf("%8s %12s %12s\n", "steps", "backprop", "adjoint");
  for (int steps : {10, 100, 1000}) {
    long kb[2] = {0, 0};
    const char* modes[2] = {"backprop", "adjoint"};
    for (int m = 0; m < 2; ++m) {
      int fd[2];
      if (pipe(fd) != 0) return 1;
      const pid_t pid = fork();
      if (pid == 0) {
        close(fd[0]);
        const long v = measure(modes[m], steps, batch, dim, hidden);
        if (write(fd[1], &v, sizeof v) != sizeof v) _exit(1);
        _exit(0);
      }
      close(fd[1]);
      if (read(fd[0], &kb[m], sizeof kb[m]) != sizeof kb[m]) kb[m] = -1;
      close(fd[0]);
      int st = 0;
      waitpid(pid, &st, 0);
    }
    std::printf("%8d %12ld %12ld\n", steps, kb[0], kb[1]);
  }
  return 0;
}
