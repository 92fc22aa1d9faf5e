#include "spaces/compress.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <unordered_map>
#include <vector>

namespace hwnas::spaces {

namespace {

// Inference reuses the compressed weights within one no-grad session (validation, latency
// timing), as a deployed model would hold them, instead of re-pruning on every forward pass;
// that per-pass cost would otherwise inflate the measured host latency of compressed nets.
struct CacheEntry {
  std::weak_ptr<nn::Node> source;  // expired or different: the weights it was made from are gone
  std::uint64_t session = 0;
  int bits = 0;
  double prune = 0;
  nn::Var compressed;
};
thread_local std::unordered_map<const nn::Node*, CacheEntry> t_cache;

nn::Var compress_uncached(const nn::Var& w, int bits, double prune);

}  // namespace

std::vector<float> quantisation_scales(const nn::Tensor& w, int bits) {
  if (bits >= 16 || w.numel() == 0) return {};
  // Per output channel (dim 0 of a dense [out, in] or conv [out, in/g, kh, kw] weight), as
  // int8/int4 deployment runtimes quantise weights: one large channel no longer flattens
  // every other channel's values onto a few levels.  Vectors (biases, scales) get one scale.
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  const std::int64_t channels = w.shape().rank() >= 2 ? w.shape()[0] : 1;
  const std::int64_t per = w.numel() / channels;
  std::vector<float> scales(static_cast<std::size_t>(channels));
  for (std::int64_t c = 0; c < channels; ++c) {
    float maxabs = 0;
    for (std::int64_t i = 0; i < per; ++i)
      maxabs = std::max(maxabs, std::fabs(w.data()[c * per + i]));
    scales[static_cast<std::size_t>(c)] = maxabs > 0 ? maxabs / qmax : 1.0f;
  }
  return scales;
}

int kept_channels(int full, double ratio) {
  return std::max(1, static_cast<int>(std::lround(full * (1.0 - ratio))));
}

nn::Var compress_weight(const nn::Var& w, int bits, double prune) {
  if (bits >= 16 && prune <= 0) return w;
  const std::uint64_t session = nn::no_grad_session();
  if (session == 0) return compress_uncached(w, bits, prune);
  if (t_cache.size() > 4096) t_cache.clear();  // bound it when many models come and go
  CacheEntry& e = t_cache[w.node()];
  if (e.session == session && e.bits == bits && e.prune == prune && e.source.lock() == w.node_ptr())
    return e.compressed;
  e = CacheEntry{w.node_ptr(), session, bits, prune, compress_uncached(w, bits, prune)};
  return e.compressed;
}

namespace {

nn::Var compress_uncached(const nn::Var& w, int bits, double prune) {
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
  const std::vector<float> scales = quantisation_scales(out, bits);
  if (!scales.empty()) {
    const std::int64_t per = n / static_cast<std::int64_t>(scales.size());
    for (std::size_t c = 0; c < scales.size(); ++c) {
      float* row = out.data() + static_cast<std::int64_t>(c) * per;
      for (std::int64_t i = 0; i < per; ++i) row[i] = std::round(row[i] / scales[c]) * scales[c];
    }
  }
  return nn::make_result(std::move(out), {w}, [mask](nn::Node& self) {
    nn::Tensor g = self.grad.clone();
    g.array() *= mask.array();
    nn::accumulate_grad(*self.parents[0], g);
  });
}

}  // namespace

}  // namespace hwnas::spaces
