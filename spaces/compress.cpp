#include "spaces/compress.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace hwnas::spaces {

nn::Var compress_weight(const nn::Var& w, int bits, double prune) {
  if (bits >= 16 && prune <= 0) return w;
  const nn::Tensor& x = w.value();
  const std::int64_t n = x.numel();
  nn::Tensor out = x.clone();
  nn::Tensor mask(x.shape(), 1.0f);
  if (prune > 0 && n > 0) {
    // Exact count: zero the k smallest magnitudes (ties broken by index for determinism).
    auto k = static_cast<std::int64_t>(std::floor(prune * static_cast<double>(n)));
    std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) idx[static_cast<std::size_t>(i)] = i;
    std::nth_element(idx.begin(), idx.begin() + k, idx.end(), [&](std::int64_t a, std::int64_t b) {
      float fa = std::fabs(x.data()[a]), fb = std::fabs(x.data()[b]);
      return fa < fb || (fa == fb && a < b);
    });
    for (std::int64_t i = 0; i < k; ++i) {
      out.data()[idx[static_cast<std::size_t>(i)]] = 0.0f;
      mask.data()[idx[static_cast<std::size_t>(i)]] = 0.0f;
    }
  }
  if (bits < 16) {
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
    float maxabs = out.array().abs().maxCoeff();
    if (maxabs > 0) {
      const float scale = maxabs / qmax;
      for (std::int64_t i = 0; i < n; ++i)
        out.data()[i] = std::round(out.data()[i] / scale) * scale;
    }
  }
  return nn::make_result(std::move(out), {w}, [mask](nn::Node& self) {
    nn::Tensor g = self.grad.clone();
    g.array() *= mask.array();
    nn::accumulate_grad(*self.parents[0], g);
  });
}

}  // namespace hwnas::spaces
