#include "oneshot/kernel_transform.hpp"

#include <stdexcept>
#include <string>

namespace hwnas::oneshot {
namespace {

void check_kernel(const nn::Tensor& w, const char* what) {
  if (w.shape().rank() != 4 || w.shape()[2] != w.shape()[3])
    throw std::logic_error(std::string("kernel transform: ") + what +
                           " is not a square 4-D kernel tensor");
}

// Writes g [O, I, s, s] into the centre of a zero [O, I, K, K] tensor (adjoint of centre_crop).
nn::Tensor centre_pad(const nn::Tensor& g, int k) {
  const auto& sh = g.shape();
  const int o = sh[0], i = sh[1], s = sh[2], off = (k - s) / 2;
  nn::Tensor out = nn::Tensor::zeros(nn::Shape{o, i, k, k});
  for (int a = 0; a < o * i; ++a)
    for (int r = 0; r < s; ++r)
      for (int c = 0; c < s; ++c)
        out.data()[(static_cast<std::int64_t>(a) * k + r + off) * k + c + off] =
            g.data()[(static_cast<std::int64_t>(a) * s + r) * s + c];
  return out;
}

}  // namespace

nn::Tensor centre_crop(const nn::Tensor& w, int s) {
  check_kernel(w, "the bank kernel");
  const auto& sh = w.shape();
  const int o = sh[0], i = sh[1], k = sh[2];
  if (s > k || (k - s) % 2 != 0)
    throw std::logic_error("kernel transform: no centre " + std::to_string(s) + " in a kernel " +
                           std::to_string(k));
  const int off = (k - s) / 2;
  nn::Tensor out(nn::Shape{o, i, s, s});
  for (int a = 0; a < o * i; ++a)
    for (int r = 0; r < s; ++r)
      for (int c = 0; c < s; ++c)
        out.data()[(static_cast<std::int64_t>(a) * s + r) * s + c] =
            w.data()[(static_cast<std::int64_t>(a) * k + r + off) * k + c + off];
  return out;
}

nn::Tensor apply_kernel_transform(const nn::Tensor& w, const nn::Tensor& m) {
  check_kernel(w, "the kernel");
  const int n = w.shape()[2] * w.shape()[2];
  if (m.shape().rank() != 2 || m.shape()[0] != n || m.shape()[1] != n)
    throw std::logic_error("kernel transform: the matrix of a kernel " +
                           std::to_string(w.shape()[2]) + " must be " + std::to_string(n) + "x" +
                           std::to_string(n));
  nn::Tensor y = nn::Tensor::zeros(w.shape());
  const std::int64_t rows = w.numel() / n;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* x = w.data() + r * n;
    float* out = y.data() + r * n;
    for (int a = 0; a < n; ++a)
      for (int b = 0; b < n; ++b) out[b] += x[a] * m.data()[a * n + b];
  }
  return y;
}

nn::Tensor transform_kernel(const nn::Tensor& big, const std::vector<const nn::Tensor*>& mats,
                            const std::vector<int>& sizes) {
  if (mats.size() != sizes.size()) throw std::logic_error("kernel transform: one matrix per size");
  nn::Tensor cur = big.clone();
  for (std::size_t j = 0; j < sizes.size(); ++j)
    cur = apply_kernel_transform(centre_crop(cur, sizes[j]), *mats[j]);
  return cur;
}

nn::Tensor transform_kernel_backward(const nn::Tensor& big,
                                     const std::vector<const nn::Tensor*>& mats,
                                     const std::vector<int>& sizes, const nn::Tensor& grad_out,
                                     std::vector<nn::Tensor>& mat_grads) {
  if (sizes.empty()) throw std::logic_error("kernel transform: backward of an empty chain");
  if (mat_grads.size() != sizes.size())
    throw std::logic_error("kernel transform: one gradient per matrix");
  // The forward again, keeping each step's input (the cropped kernel x_j).
  std::vector<nn::Tensor> inputs;
  nn::Tensor cur = big.clone();
  for (std::size_t j = 0; j < sizes.size(); ++j) {
    inputs.push_back(centre_crop(cur, sizes[j]));
    cur = apply_kernel_transform(inputs.back(), *mats[j]);
  }
  nn::Tensor gy = grad_out.clone();
  for (std::size_t jj = sizes.size(); jj-- > 0;) {
    const nn::Tensor& x = inputs[jj];
    const nn::Tensor& m = *mats[jj];
    const int n = sizes[jj] * sizes[jj];
    const std::int64_t rows = x.numel() / n;
    nn::Tensor gx = nn::Tensor::zeros(x.shape());
    float* gm = mat_grads[jj].data();
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* xr = x.data() + r * n;
      const float* gr = gy.data() + r * n;
      float* gxr = gx.data() + r * n;
      for (int a = 0; a < n; ++a)
        for (int b = 0; b < n; ++b) {
          gm[a * n + b] += xr[a] * gr[b];         // dL/dM[a,b] = sum_rows x[a] gy[b]
          gxr[a] += m.data()[a * n + b] * gr[b];  // dL/dx = gy M^T
        }
    }
    // The step's input was the centre of the previous step's output: pad back to its size.
    gy = jj > 0 ? centre_pad(gx, sizes[jj - 1]) : std::move(gx);
  }
  return gy;
}

}  // namespace hwnas::oneshot
