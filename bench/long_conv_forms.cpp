// The causal long convolution's two forms (nn/ops_long_conv.cpp) across sequence lengths: one
// training step (forward, du, dk) of u [B, L, C] with a full-length filter, each form timed in
// turn, and which form causal_long_conv's cost model picks.
//
//   bench_long_conv_forms [--batch 64] [--channels 64] [--threads 2] [--reps 5]
//                         [--lengths 64,128,256,512,1024,2048]
//
// One "FORM L=... direct_ms=... fft_ms=... picked=... faster=..." line per length; the model
// should pick the faster form wherever the two differ by more than the machine's noise.
#include <oneapi/tbb/global_control.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "nn/conv_spectral.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"

using namespace hwnas;

namespace {

double step_ms(nn::Var (*conv)(const nn::Var&, const nn::Var&), const nn::Tensor& u,
               const nn::Tensor& k, int reps) {
  double best = 1e300;
  nn::run_isolated([&] {
    for (int r = 0; r < reps + 1; ++r) {  // (the first is a warm-up)
      nn::Var pu = nn::parameter(u), pk = nn::parameter(k);
      const auto t0 = std::chrono::steady_clock::now();
      nn::backward(nn::sum(conv(pu, pk)));
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) best = std::min(best, ms);
    }
  });
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int batch = 64, channels = 64, threads = 2, reps = 5;
  std::vector<int> lengths{64, 128, 256, 512, 1024, 2048};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], val = argv[i + 1];
    if (key == "--batch") {
      batch = std::stoi(val);
    } else if (key == "--channels") {
      channels = std::stoi(val);
    } else if (key == "--threads") {
      threads = std::stoi(val);
    } else if (key == "--reps") {
      reps = std::stoi(val);
    } else if (key == "--lengths") {
      lengths.clear();
      std::stringstream ss(val);
      for (std::string item; std::getline(ss, item, ',');) lengths.push_back(std::stoi(item));
    } else {
      std::fprintf(stderr, "unknown option %s\n", key.c_str());
      return 2;
    }
  }
  oneapi::tbb::global_control gc(oneapi::tbb::global_control::max_allowed_parallelism,
                                 static_cast<std::size_t>(threads));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (int L : lengths) {
    nn::Tensor u(nn::Shape{batch, L, channels}), k(nn::Shape{L, channels});
    for (std::int64_t i = 0; i < u.numel(); ++i) u.data()[i] = nd(rng);
    for (std::int64_t i = 0; i < k.numel(); ++i) k.data()[i] = nd(rng) / static_cast<float>(L);
    const double direct = step_ms(&nn::causal_direct_conv, u, k, reps);
    const double fft = step_ms(&nn::causal_fft_conv, u, k, reps);
    const bool picked_direct = nn::direct_long_conv_pays(batch, L, channels, L);
    std::printf("FORM L=%d batch=%d channels=%d direct_ms=%.2f fft_ms=%.2f picked=%s faster=%s\n",
                L, batch, channels, direct, fft, picked_direct ? "direct" : "fft",
                direct < fft ? "direct" : "fft");
    std::fflush(stdout);
  }
  return 0;
}
