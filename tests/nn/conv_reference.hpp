// Convolution by its definition (loops summed in double), for the conv tests: the forward pass
// and the three gradients of sum(conv2d(x, w, b) * up).
#pragma once

#include <vector>

#include "nn/ops.hpp"

namespace hwnas::nn::testing {

inline Tensor naive_conv2d(const Tensor& x, const Tensor& w, const Tensor* b,
                           const Conv2dOptions& o) {
  const int N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int Co = w.dim(0), Cg = w.dim(1), kh = w.dim(2), kw = w.dim(3);
  const int Ho = (H + 2 * o.padding - kh) / o.stride + 1,
            Wo = (W + 2 * o.padding - kw) / o.stride + 1;
  const int cog = Co / o.groups;
  (void)C;
  Tensor y = Tensor::zeros(Shape{N, Co, Ho, Wo});
  for (int n = 0; n < N; ++n)
    for (int co = 0; co < Co; ++co)
      for (int oh = 0; oh < Ho; ++oh)
        for (int ow = 0; ow < Wo; ++ow) {
          double s = b ? b->data()[co] : 0.0;
          const int gr = co / cog;
          for (int cl = 0; cl < Cg; ++cl)
            for (int i = 0; i < kh; ++i)
              for (int j = 0; j < kw; ++j) {
                const int ih = oh * o.stride - o.padding + i, iw = ow * o.stride - o.padding + j;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const int ci = gr * Cg + cl;
                s += static_cast<double>(x.data()[((n * x.dim(1) + ci) * H + ih) * W + iw]) *
                     w.data()[((co * Cg + cl) * kh + i) * kw + j];
              }
          y.data()[((n * Co + co) * Ho + oh) * Wo + ow] = static_cast<float>(s);
        }
  return y;
}

// The gradients of sum(conv2d(x, w, b) * up) by their definition, summed in double: dx, dw, db
// (db empty without a bias).
struct ConvGrads {
  std::vector<double> dx, dw, db;
};
inline ConvGrads naive_conv2d_grads(const Tensor& x, const Tensor& w, bool bias, const Tensor& up,
                                    const Conv2dOptions& o) {
  const int N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int Co = w.dim(0), Cg = w.dim(1), kh = w.dim(2), kw = w.dim(3);
  const int Ho = up.dim(2), Wo = up.dim(3), cog = Co / o.groups;
  ConvGrads g{std::vector<double>(static_cast<std::size_t>(x.numel())),
              std::vector<double>(static_cast<std::size_t>(w.numel())),
              std::vector<double>(bias ? static_cast<std::size_t>(Co) : 0)};
  for (int n = 0; n < N; ++n)
    for (int co = 0; co < Co; ++co)
      for (int oh = 0; oh < Ho; ++oh)
        for (int ow = 0; ow < Wo; ++ow) {
          const double u = up.data()[((n * Co + co) * Ho + oh) * Wo + ow];
          if (bias) g.db[static_cast<std::size_t>(co)] += u;
          for (int cl = 0; cl < Cg; ++cl)
            for (int i = 0; i < kh; ++i)
              for (int j = 0; j < kw; ++j) {
                const int ih = oh * o.stride - o.padding + i, iw = ow * o.stride - o.padding + j;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const std::size_t xi = static_cast<std::size_t>(
                                      ((n * C + co / cog * Cg + cl) * H + ih) * W + iw),
                                  wi = static_cast<std::size_t>(((co * Cg + cl) * kh + i) * kw + j);
                g.dx[xi] += u * w.data()[wi];
                g.dw[wi] += u * x.data()[xi];
              }
        }
  return g;
}

}  // namespace hwnas::nn::testing
