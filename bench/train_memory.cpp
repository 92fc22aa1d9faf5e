// The training evaluator's memory estimate (evaluators/train_evaluator.hpp) against the real
// peak: each candidate is built and trained for a few steps on random Fashion-MNIST-shaped data
// (AdamW, the evaluator's own trainer) in a forked child, whose peak RSS growth (VmHWM after
// training minus VmRSS before the model is built) is compared with the estimate.  The ratio
// says how much of a candidate's real footprint the guard sees.
//
//   bench_train_memory [--threads 1] [--batch 128]
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "evaluators/train_evaluator.hpp"
#include "nn/parallel.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"

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

// input 1x28x28 -> conv (channels, stride 1) x convs -> max pool 2 -> flatten -> dense -> head.
spaces::Genome cnn(int channels, int convs, int units) {
  spaces::Genome g(spaces::TensorType::image(1, 28, 28));
  int last = g.input_node();
  for (int i = 0; i < convs; ++i) {
    const int c = g.add_node("conv", {{"channels", channels}, {"kernel", 3}, {"stride", 1}});
    g.add_edge(last, c);
    last = c;
  }
  const int p = g.add_node("pool", {{"op", "max"}, {"kernel", 2}, {"stride", 2}});
  const int f = g.add_node("flatten", {});
  const int d = g.add_node("dense", {{"units", units}});
  const int h = g.add_node("head", {{"outputs", 10}});
  g.add_edge(last, p);
  g.add_edge(p, f);
  g.add_edge(f, d);
  g.add_edge(d, h);
  g.validate();
  return g;
}

eval::Dataset random_images(int n, std::uint64_t seed) {
  eval::Dataset d;
  d.x = nn::Tensor(nn::Shape{n, 1, 28, 28});
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (std::int64_t i = 0; i < d.x.numel(); ++i) d.x.data()[i] = nd(rng);
  d.y.resize(n);
  for (int i = 0; i < n; ++i) d.y[i] = static_cast<int>(rng() % 10);
  d.num_classes = 10;
  return d;
}

// Peak RSS growth in MB of building and training `g`, measured in a child process.
double peak_growth_mb(const spaces::Genome& g, const eval::TrainConfig& tc, int threads) {
  int fd[2];
  if (pipe(fd) != 0) std::exit(1);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    nn::ThreadBudget budget(threads);
    const eval::Dataset train = random_images(4 * tc.batch_size, 1), val = random_images(64, 2);
    { std::ofstream("/proc/self/clear_refs") << "5"; }  // resets VmHWM to the current RSS
    const std::int64_t base = status_kb("VmRSS:");
    auto model = spaces::build_model(g, 1);
    eval::train(*model, train, val, tc);
    const double mb = (status_kb("VmHWM:") - base) / 1024.0;
    if (write(fd[1], &mb, sizeof mb) != static_cast<ssize_t>(sizeof mb)) _exit(1);
    _exit(0);
  }
  close(fd[1]);
  double mb = NAN;
  if (read(fd[0], &mb, sizeof mb) != static_cast<ssize_t>(sizeof mb)) mb = NAN;
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return mb;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, batch = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--threads") threads = std::atoi(argv[i + 1]);
    if (k == "--batch") batch = std::atoi(argv[i + 1]);
  }
  eval::TrainConfig tc;
  tc.batch_size = batch;
  tc.eval_batch_size = 64;
  tc.epochs = 1;
  std::printf("%-28s %10s %12s %12s %8s\n", "candidate", "params", "estimate_MB", "peak_RSS_MB",
              "ratio");
  struct Case {
    const char* name;
    int channels, convs, units;
  };
  for (const Case c :
       {Case{"conv16 x1, dense 64", 16, 1, 64}, Case{"conv32 x2, dense 128", 32, 2, 128},
        Case{"conv64 x2, dense 256", 64, 2, 256}, Case{"conv64 x3, dense 512", 64, 3, 512}}) {
    const spaces::Genome g = cnn(c.channels, c.convs, c.units);
    const hw::Workload w = spaces::build_workload(g);
    const double est = eval::estimate_training_memory(w, tc).total_bytes() / (1 << 20);
    const double real = peak_growth_mb(g, tc, threads);
    std::printf("%-28s %10.0f %12.1f %12.1f %8.2f\n", c.name, w.total_params(), est, real,
                real / est);
  }
  return 0;
}
