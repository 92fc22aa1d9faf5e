// Softmax family, losses, normalisation layers and dropout.
#include <algorithm>
#include <cmath>

#include "nn/kernels.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn {
using detail::accumulate_owned;
using detail::parallel_range;
using detail::parent;
using detail::shape_error;

namespace {
using RowArray = Eigen::Map<Eigen::Array<float, 1, Eigen::Dynamic>>;
using ConstRowArray = Eigen::Map<const Eigen::Array<float, 1, Eigen::Dynamic>>;

void require_rank1(const char* op, const Shape& s) {
  if (s.rank() < 1) shape_error(op, s, "needs rank >= 1");
}
}  // namespace

Var softmax(const Var& x) {
  require_rank1("softmax", x.shape());
  Tensor out(x.shape());
  const std::int64_t n = x.shape().back(-1);
  const std::int64_t rows = n ? out.numel() / n : 0;
  const float* px = x.value().data();
  float* po = out.data();
  parallel_range(rows, 20 * n, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      ConstRowArray in(px + r * n, n);
      RowArray o(po + r * n, n);
      o = (in - in.maxCoeff()).exp();
      o /= o.sum();
    }
  });
  return make_result(std::move(out), {x}, [n, rows](Node& self) {
    Node& nx = parent(self, 0);
    Tensor gx(nx.value.shape());
    const float* pg = self.grad.data();
    const float* py = self.value.data();
    float* po = gx.data();
    parallel_range(rows, 4 * n, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        ConstRowArray g(pg + r * n, n), y(py + r * n, n);
        RowArray(po + r * n, n) = y * (g - (g * y).sum());
      }
    });
    accumulate_owned(nx, std::move(gx));
  });
}

Var log_softmax(const Var& x) {
  require_rank1("log_softmax", x.shape());
  Tensor out(x.shape());
  const std::int64_t n = x.shape().back(-1);
  const std::int64_t rows = n ? out.numel() / n : 0;
  const float* px = x.value().data();
  float* po = out.data();
  parallel_range(rows, 20 * n, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      ConstRowArray in(px + r * n, n);
      const float m = in.maxCoeff();
      const float lse = m + std::log((in - m).exp().sum());
      RowArray(po + r * n, n) = in - lse;
    }
  });
  return make_result(std::move(out), {x}, [n, rows](Node& self) {
    Node& nx = parent(self, 0);
    Tensor gx(nx.value.shape());
    const float* pg = self.grad.data();
    const float* py = self.value.data();
    float* po = gx.data();
    parallel_range(rows, 20 * n, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        ConstRowArray g(pg + r * n, n), y(py + r * n, n);
        RowArray(po + r * n, n) = g - y.exp() * g.sum();
      }
    });
    accumulate_owned(nx, std::move(gx));
  });
}

Var cross_entropy(const Var& logits, const std::vector<int>& labels) {
  const Shape& s = logits.shape();
  if (s.rank() != 2) shape_error("cross_entropy", s, "logits must be [N, C]");
  const int n = s[0], c = s[1];
  if (static_cast<int>(labels.size()) != n)
    shape_error("cross_entropy", s, Shape{static_cast<int>(labels.size())},
                "one label per row needed");
  if (n == 0) shape_error("cross_entropy", s, "empty batch");
  for (int y : labels)
    if (y < 0 || y >= c)
      throw std::invalid_argument("cross_entropy: label " + std::to_string(y) +
                                  " out of range [0, " + std::to_string(c) + ") for logits " +
                                  s.str());
  // One pass per row: softmax probabilities (kept for backward) and the row's NLL.
  Tensor probs(s);
  std::vector<float> row_loss(static_cast<std::size_t>(n));
  const float* px = logits.value().data();
  float* pp = probs.data();
  parallel_range(n, 20LL * c, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      ConstRowArray in(px + r * c, c);
      RowArray p(pp + r * c, c);
      const float m = in.maxCoeff();
      p = (in - m).exp();
      const float z = p.sum();
      p /= z;
      row_loss[static_cast<std::size_t>(r)] =
          m + std::log(z) - in(labels[static_cast<std::size_t>(r)]);
    }
  });
  double total = 0;  // fixed-order sum: deterministic
  for (float l : row_loss) total += l;
  Tensor out = Tensor::scalar(static_cast<float>(total / n));
  return make_result(std::move(out), {logits}, [probs, labels, n, c](Node& self) {
    Node& nx = parent(self, 0);
    const float g = self.grad.item() / static_cast<float>(n);
    // d loss / d logits = (softmax - onehot) / N, written straight into a fresh buffer.
    Tensor gx(nx.value.shape());
    gx.array() = probs.array() * g;
    for (int r = 0; r < n; ++r)
      gx.data()[static_cast<std::int64_t>(r) * c + labels[static_cast<std::size_t>(r)]] -= g;
    accumulate_owned(nx, std::move(gx));
  });
}

Var token_cross_entropy(const Var& logits, const std::vector<int>& labels, int ignore_index) {
  const Shape& s = logits.shape();
  if (s.rank() < 2) shape_error("token_cross_entropy", s, "logits must be [..., C] with rank >= 2");
  const std::int64_t c = s.back(-1);
  const std::int64_t rows = c ? logits.value().numel() / c : 0;
  if (static_cast<std::int64_t>(labels.size()) != rows)
    shape_error("token_cross_entropy", s, Shape{static_cast<int>(labels.size())},
                "one label per row of the last dim needed");
  if (rows == 0) shape_error("token_cross_entropy", s, "empty batch");
  std::int64_t counted = 0;
  for (int y : labels) {
    if (y == ignore_index) continue;
    if (y < 0 || y >= c)
      throw std::invalid_argument("token_cross_entropy: label " + std::to_string(y) +
                                  " out of range [0, " + std::to_string(c) + ") for logits " +
                                  s.str() + " (ignore_index " + std::to_string(ignore_index) + ")");
    ++counted;
  }
  Tensor probs(s);
  std::vector<float> row_loss(static_cast<std::size_t>(rows), 0.0f);
  const float* px = logits.value().data();
  float* pp = probs.data();
  parallel_range(rows, 20LL * c, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const int y = labels[static_cast<std::size_t>(r)];
      RowArray p(pp + r * c, c);
      if (y == ignore_index) {
        p.setZero();  // ignored rows get no gradient
        continue;
      }
      ConstRowArray in(px + r * c, c);
      const float m = in.maxCoeff();
      p = (in - m).exp();
      const float z = p.sum();
      p /= z;
      row_loss[static_cast<std::size_t>(r)] = m + std::log(z) - in(y);
    }
  });
  double total = 0;  // fixed-order sum: deterministic
  for (float l : row_loss) total += l;
  const float denom = static_cast<float>(std::max<std::int64_t>(counted, 1));
  Tensor out = Tensor::scalar(static_cast<float>(total / denom));
  return make_result(std::move(out), {logits},
                     [probs, labels, c, rows, denom, ignore_index](Node& self) {
                       Node& nx = parent(self, 0);
                       const float g = self.grad.item() / denom;
                       Tensor gx(nx.value.shape());
                       gx.array() = probs.array() * g;
                       for (std::int64_t r = 0; r < rows; ++r) {
                         const int y = labels[static_cast<std::size_t>(r)];
                         if (y != ignore_index) gx.data()[r * c + y] -= g;
                       }
                       accumulate_owned(nx, std::move(gx));
                     });
}

Var mse(const Var& pred, const Var& target) {
  if (pred.shape() != target.shape())
    shape_error("mse", pred.shape(), target.shape(), "shapes differ");
  const std::int64_t n = pred.value().numel();
  if (n == 0) shape_error("mse", pred.shape(), "empty tensor");
  Tensor out = Tensor::scalar((pred.value().array() - target.value().array()).square().sum() /
                              static_cast<float>(n));
  return make_result(std::move(out), {pred, target}, [n](Node& self) {
    Node& np = parent(self, 0);
    Node& nt = parent(self, 1);
    const float k = 2.0f * self.grad.item() / static_cast<float>(n);
    Tensor d(np.value.shape());
    d.array() = (np.value.array() - nt.value.array()) * k;
    if (nt.requires_grad) {
      Tensor dt(nt.value.shape());
      dt.array() = -d.array();
      accumulate_owned(nt, std::move(dt));
    }
    if (np.requires_grad) accumulate_owned(np, std::move(d));
  });
}

Var layer_norm(const Var& x, const Var& gamma, const Var& beta, float eps) {
  const Shape& s = x.shape();
  require_rank1("layer_norm", s);
  const int d = s.back(-1);
  if (gamma.shape() != Shape{d})
    shape_error("layer_norm", s, gamma.shape(), "gamma must be [last dim]");
  if (beta.shape() != Shape{d})
    shape_error("layer_norm", s, beta.shape(), "beta must be [last dim]");
  const std::int64_t rows = d ? x.value().numel() / d : 0;
  // Only the per-row mean and 1/std are kept: backward recomputes xhat = (x - mean) * rstd from
  // x (kept by the graph anyway) instead of storing a second activation-sized tensor.
  Tensor out(s), mean_r(Shape{static_cast<int>(rows)}), rstd(Shape{static_cast<int>(rows)});
  const float* px = x.value().data();
  float* po = out.data();
  float* pm = mean_r.data();
  float* pr = rstd.data();
  const float* pgm = gamma.value().data();
  const float* pbt = beta.value().data();
  parallel_range(rows, 8LL * d, [&](std::int64_t r0, std::int64_t r1) {
    ConstRowArray gm(pgm, d), bt(pbt, d);
    for (std::int64_t r = r0; r < r1; ++r) {
      ConstRowArray in(px + r * d, d);
      const float mu = in.mean();
      const float var = (in - mu).square().mean();
      const float rs = 1.0f / std::sqrt(var + eps);
      pm[r] = mu;
      pr[r] = rs;
      RowArray(po + r * d, d) = ((in - mu) * rs) * gm + bt;
    }
  });
  return make_result(std::move(out), {x, gamma, beta}, [mean_r, rstd, rows, d](Node& self) {
    Node& nx = parent(self, 0);
    Node& ng = parent(self, 1);
    Node& nb = parent(self, 2);
    const float* pg = self.grad.data();
    const float* pxv = nx.value.data();
    const float* pmu = mean_r.data();
    const bool need_g = ng.requires_grad, need_b = nb.requires_grad, need_x = nx.requires_grad;
    // One pass over g and x (xhat recomputed): dx rows, plus per-chunk partial column sums for
    // dgamma/dbeta (chunks fixed by the size only; partials added in chunk order: deterministic).
    float* po = nullptr;
    bool fresh = false;
    if (need_x) po = detail::grad_buffer(nx, fresh);
    const std::int64_t max_chunks = detail::kMaxChunks;
    Eigen::ArrayXXf part = Eigen::ArrayXXf::Zero(d, (need_g || need_b) ? 2 * max_chunks : 0);
    const float* pgm = ng.value.data();
    const float* pr = rstd.data();
    const std::int64_t chunks = detail::parallel_chunks(
        rows, 10LL * d, [&](std::int64_t c, std::int64_t r0, std::int64_t r1) {
          ConstRowArray gm(pgm, d);
          Eigen::Array<float, 1, Eigen::Dynamic> dh(d), h(d);
          float* sg = (need_g || need_b) ? part.col(2 * c).data() : nullptr;
          float* sb = (need_g || need_b) ? part.col(2 * c + 1).data() : nullptr;
          for (std::int64_t r = r0; r < r1; ++r) {
            ConstRowArray g(pg + r * d, d);
            h = (ConstRowArray(pxv + r * d, d) - pmu[r]) * pr[r];
            if (sg) {
              RowArray(sg, d) += g * h;
              RowArray(sb, d) += g;
            }
            if (!need_x) continue;
            dh = g * gm;
            const float m1 = dh.mean();
            const float m2 = (dh * h).mean();
            if (fresh)
              RowArray(po + r * d, d) = pr[r] * (dh - m1 - h * m2);
            else
              RowArray(po + r * d, d) += pr[r] * (dh - m1 - h * m2);
          }
        });
    if (need_g || need_b) {
      for (std::int64_t c = 1; c < chunks; ++c) {
        part.col(0) += part.col(2 * c);
        part.col(1) += part.col(2 * c + 1);
      }
      if (need_g) Eigen::Map<Eigen::ArrayXf>(grad_of(ng).data(), d) += part.col(0);
      if (need_b) Eigen::Map<Eigen::ArrayXf>(grad_of(nb).data(), d) += part.col(1);
    }
  });
}

namespace {

Var batch_norm_impl(const Var& x, const Var& gamma, const Var& beta, BatchNormState& state,
                    bool training, bool relu) {
  const Shape& s = x.shape();
  if (s.rank() != 2 && s.rank() != 4)
    shape_error("batch_norm", s, "input must be [N,C] or [N,C,H,W]");
  const int n = s[0], c = s[1];
  const std::int64_t hw = s.rank() == 4 ? std::int64_t{s[2]} * s[3] : 1;
  const std::int64_t count = n * hw;  // elements per channel
  if (gamma.shape() != Shape{c}) shape_error("batch_norm", s, gamma.shape(), "gamma must be [C]");
  if (beta.shape() != Shape{c}) shape_error("batch_norm", s, beta.shape(), "beta must be [C]");
  if (state.running_mean.empty()) state.running_mean = Tensor::zeros(Shape{c});
  if (state.running_var.empty()) state.running_var = Tensor(Shape{c}, 1.0f);
  if (state.running_mean.shape() != Shape{c} || state.running_var.shape() != Shape{c})
    shape_error("batch_norm", s, state.running_mean.shape(), "running statistics must be [C]");
  if (training && count < 2)
    shape_error("batch_norm", s, "training needs more than one value per channel");

  // Per-channel mean and inverse std, from the batch (training) or the running stats (eval).
  Tensor mean_c(Shape{c}), rstd_c(Shape{c});
  const float* px = x.value().data();
  if (training) {
    parallel_range(c, 3 * count, [&](std::int64_t c0, std::int64_t c1) {
      for (std::int64_t ch = c0; ch < c1; ++ch) {
        double s1 = 0;
        for (int i = 0; i < n; ++i)
          s1 += Eigen::Map<const Eigen::ArrayXf>(px + (i * c + ch) * hw, hw).sum();
        const double mu = s1 / static_cast<double>(count);
        double s2 = 0;
        for (int i = 0; i < n; ++i)
          s2 += (Eigen::Map<const Eigen::ArrayXf>(px + (i * c + ch) * hw, hw) -
                 static_cast<float>(mu))
                    .square()
                    .sum();
        const double var = s2 / static_cast<double>(count);  // biased: used to normalise
        mean_c.data()[ch] = static_cast<float>(mu);
        rstd_c.data()[ch] = static_cast<float>(1.0 / std::sqrt(var + state.eps));
        const double unbiased = s2 / static_cast<double>(count - 1);
        float& rm = state.running_mean.data()[ch];
        float& rv = state.running_var.data()[ch];
        rm = (1.0f - state.momentum) * rm + state.momentum * static_cast<float>(mu);
        rv = (1.0f - state.momentum) * rv + state.momentum * static_cast<float>(unbiased);
      }
    });
  } else {
    mean_c.array() = state.running_mean.array();
    rstd_c.array() = (state.running_var.array() + state.eps).rsqrt();
  }
  // xhat = (x - mean) * rstd is not stored: backward recomputes it from x (kept by the graph
  // anyway), which saves writing and re-reading a second activation-sized tensor.
  Tensor out(s);
  {
    float* po = out.data();
    const float* pgm = gamma.value().data();
    const float* pbt = beta.value().data();
    parallel_range(std::int64_t{n} * c, 3 * hw, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        const std::int64_t ch = b % c;
        Eigen::Map<Eigen::ArrayXf> o(po + b * hw, hw);
        o = ((Eigen::Map<const Eigen::ArrayXf>(px + b * hw, hw) - mean_c.data()[ch]) *
             rstd_c.data()[ch]) *
                pgm[ch] +
            pbt[ch];
        if (relu) o = o.max(0.0f);  // as relu(): the block is still in cache
      }
    });
  }
  return make_result(
      std::move(out), {x, gamma, beta},
      [mean_c, rstd_c, n, c, hw, count, training, relu](Node& self) {
        Node& nx = parent(self, 0);
        Node& ng = parent(self, 1);
        Node& nb = parent(self, 2);
        // With the ReLU, batch norm's output gradient is dY where the output is positive, else
        // 0 (relu()'s backward), made once here so both passes below read it.
        Tensor masked;
        if (relu) {
          masked = Tensor(self.grad.shape());
          const float* pdy = self.grad.data();
          const float* py = self.value.data();
          float* pm = masked.data();
          parallel_range(self.grad.numel(), 1, [&](std::int64_t i0, std::int64_t i1) {
            const std::int64_t len = i1 - i0;
            Eigen::Map<Eigen::ArrayXf>(pm + i0, len) =
                (Eigen::Map<const Eigen::ArrayXf>(py + i0, len) > 0.0f)
                    .select(Eigen::Map<const Eigen::ArrayXf>(pdy + i0, len), 0.0f);
          });
        }
        const float* pg = relu ? masked.data() : self.grad.data();
        const float* px = nx.value.data();
        const float* pmu = mean_c.data();
        const float* prs = rstd_c.data();
        // Per-channel sums of g and g*xhat, each channel reduced serially in a fixed order.
        std::vector<double> sg(static_cast<std::size_t>(c)), sgh(static_cast<std::size_t>(c));
        parallel_range(c, 2 * count, [&](std::int64_t c0, std::int64_t c1) {
          for (std::int64_t ch = c0; ch < c1; ++ch) {
            double a = 0, b = 0;
            for (int i = 0; i < n; ++i) {
              Eigen::Map<const Eigen::ArrayXf> g(pg + (i * c + ch) * hw, hw),
                  xv(px + (i * c + ch) * hw, hw);
              a += g.sum();
              b += (g * ((xv - pmu[ch]) * prs[ch])).sum();
            }
            sg[static_cast<std::size_t>(ch)] = a;
            sgh[static_cast<std::size_t>(ch)] = b;
          }
        });
        if (ng.requires_grad) {
          Tensor& gg = grad_of(ng);
          for (int ch = 0; ch < c; ++ch)
            gg.data()[ch] += static_cast<float>(sgh[static_cast<std::size_t>(ch)]);
        }
        if (nb.requires_grad) {
          Tensor& gb = grad_of(nb);
          for (int ch = 0; ch < c; ++ch)
            gb.data()[ch] += static_cast<float>(sg[static_cast<std::size_t>(ch)]);
        }
        if (!nx.requires_grad) return;
        bool fresh = false;
        float* po = detail::grad_buffer(nx, fresh);
        const float* pgm = ng.value.data();
        parallel_range(std::int64_t{n} * c, 4 * hw, [&](std::int64_t b0, std::int64_t b1) {
          for (std::int64_t b = b0; b < b1; ++b) {
            const auto ch = static_cast<std::size_t>(b % c);
            const float k = pgm[ch] * prs[ch];
            Eigen::Map<const Eigen::ArrayXf> g(pg + b * hw, hw), xv(px + b * hw, hw);
            Eigen::Map<Eigen::ArrayXf> o(po + b * hw, hw);
            if (training) {
              // dx = gamma*rstd * (g - mean(g) - xhat*mean(g*xhat)), means over the channel.
              const auto m1 = static_cast<float>(sg[ch] / static_cast<double>(count));
              const auto m2 = static_cast<float>(sgh[ch] / static_cast<double>(count));
              if (fresh)
                o = k * (g - m1 - ((xv - pmu[ch]) * prs[ch]) * m2);
              else
                o += k * (g - m1 - ((xv - pmu[ch]) * prs[ch]) * m2);
            } else {
              if (fresh)
                o = k * g;  // running stats are constants
              else
                o += k * g;
            }
          }
        });
      });
}

}  // namespace

Var batch_norm(const Var& x, const Var& gamma, const Var& beta, BatchNormState& state,
               bool training) {
  return batch_norm_impl(x, gamma, beta, state, training, false);
}

Var batch_norm_relu(const Var& x, const Var& gamma, const Var& beta, BatchNormState& state,
                    bool training) {
  return batch_norm_impl(x, gamma, beta, state, training, true);
}

Var dropout(const Var& x, float p, bool training, std::mt19937_64& rng) {
  if (!(p >= 0.0f && p < 1.0f))
    throw std::invalid_argument("dropout: p must be in [0, 1), got " + std::to_string(p));
  if (!training || p == 0.0f) return x;
  const std::int64_t n = x.value().numel();
  const float keep_scale = 1.0f / (1.0f - p);
  // Mask holds 0 or 1/(1-p) (inverted dropout: eval needs no rescaling).  Drawn serially from
  // the caller's rng, so the mask is reproducible for a seed.
  Tensor mask(x.shape());
  float* pm = mask.data();
  const auto threshold =
      static_cast<std::uint64_t>(static_cast<double>(p) * 9007199254740992.0);  // p * 2^53
  for (std::int64_t i = 0; i < n; ++i) pm[i] = (rng() >> 11) >= threshold ? keep_scale : 0.0f;
  Tensor out(x.shape());
  out.array() = x.value().array() * mask.array();
  return make_result(std::move(out), {x}, [mask](Node& self) {
    Tensor g(self.grad.shape());
    g.array() = self.grad.array() * mask.array();
    accumulate_owned(parent(self, 0), std::move(g));
  });
}

}  // namespace hwnas::nn
