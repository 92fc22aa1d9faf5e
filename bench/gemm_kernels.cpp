// Single-thread GFLOP/s of nn's SGEMM kernel families (AVX-512, AVX2+FMA, Eigen) on the shapes
// candidate training runs: the three GEMMs of a batched im2col convolution (forward, input
// gradient with W transposed, weight gradient with the column matrix transposed) and the three of
// a dense layer.  Prints each family's figure and its ratio to Eigen (the kernel used before the
// run-time dispatch), and with --ghz the fraction of the family's own FP32 peak at that clock
// (VMs often report the base clock while the cores run faster: the fraction can pass 100%).
//
//   bench_gemm_kernels [--ghz 2.6] [--seconds 0.3]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "nn/gemm.hpp"

namespace {

using hwnas::nn::detail::GemmIsa;
using hwnas::nn::detail::StridedMatrix;

struct Case {
  const char* what;
  std::int64_t m, n, k;
  bool a_transposed, b_transposed;
};

double gflops(const Case& cs, GemmIsa isa, double seconds) {
  hwnas::nn::detail::set_gemm_isa(isa);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> a(cs.m * cs.k), b(cs.k * cs.n), c(cs.m * cs.n);
  for (float& v : a) v = u(rng);
  for (float& v : b) v = u(rng);
  // A transposed: stored [k, m]; B transposed: stored [n, k].
  const StridedMatrix av =
      cs.a_transposed ? StridedMatrix{a.data(), 1, cs.m} : StridedMatrix{a.data(), cs.k, 1};
  const StridedMatrix bv =
      cs.b_transposed ? StridedMatrix{b.data(), 1, cs.k} : StridedMatrix{b.data(), cs.n, 1};
  auto run = [&] { hwnas::nn::detail::sgemm(cs.m, cs.n, cs.k, av, bv, c.data(), cs.n, false); };
  run();
  using Clock = std::chrono::steady_clock;
  long reps = 0;
  const auto t0 = Clock::now();
  double el = 0;
  do {
    run();
    ++reps;
    el = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (el < seconds);
  return 2.0 * cs.m * cs.n * cs.k * reps / el / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  double ghz = 0, seconds = 0.3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--ghz")
      ghz = std::atof(argv[i + 1]);
    else if (k == "--seconds")
      seconds = std::atof(argv[i + 1]);
  }
  const std::vector<Case> cases = {
      {"conv fwd 16x(16*3*3) x 8*196", 16, 1568, 144, false, false},
      {"conv fwd 24x(24*5*5) x 8*196", 24, 1568, 600, false, false},
      {"conv fwd 48x(32*3*3) x 8*49", 48, 392, 288, false, false},
      {"conv dcol W^T 600x24 x 8*196", 600, 1568, 24, true, false},
      {"conv dcol W^T 288x48 x 8*49", 288, 392, 48, true, false},
      {"conv dW 24x(8*196) x col^T", 24, 600, 1568, false, true},
      {"conv dW 48x(8*49) x col^T", 48, 288, 392, false, true},
      {"dense fwd 64x784 x W^T 784x512", 64, 512, 784, false, true},
      {"dense dx 64x512 x W 512x784", 64, 784, 512, false, false},
      {"dense dW g^T 512x64 x x 64x784", 512, 784, 64, true, false},
      {"dense fwd batch 1: 1x784 x W^T", 1, 512, 784, false, true},
      {"square 512", 512, 512, 512, false, false},
  };
  std::vector<GemmIsa> isas;
  for (GemmIsa isa : {GemmIsa::kEigen, GemmIsa::kAvx2, GemmIsa::kAvx512})
    if (hwnas::nn::detail::gemm_isa_supported(isa)) isas.push_back(isa);
  std::printf("[gemm] single thread, GFLOP/s (ratio to eigen)");
  if (ghz > 0)
    std::printf(", %% of the family's peak at %.2f GHz (eigen, avx2: 32 FLOP/cycle, avx512: 64)",
                ghz);
  std::printf("; kernel in use by default: %s\n",
              hwnas::nn::detail::gemm_isa_name(hwnas::nn::detail::gemm_isa()));
  std::printf("%-34s", "shape (m x k x n)");
  for (GemmIsa isa : isas)
    std::printf(" %*s", ghz > 0 ? 22 : 17, hwnas::nn::detail::gemm_isa_name(isa));
  std::printf("\n");
  for (const Case& cs : cases) {
    std::printf("%-34s", cs.what);
    double base = 0;
    for (GemmIsa isa : isas) {
      const double g = gflops(cs, isa, seconds);
      if (isa == GemmIsa::kEigen) base = g;
      std::printf("   %6.1f (%4.2fx)", g, base > 0 ? g / base : 1.0);
      if (ghz > 0) std::printf(" %3.0f%%", 100 * g / (ghz * (isa == GemmIsa::kAvx512 ? 64 : 32)));
    }
    std::printf("\n");
  }
  return 0;
}
