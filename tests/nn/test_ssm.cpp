// The fused SSM ops (nn/ssm.hpp): selective_scan against a naive step-by-step scan built from
// existing ops (values and gradients, across chunk boundaries), s4d_kernel against its closed
// form, finite differences over longer sequences, thread-count independence and input checks.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>

#include "nn/parallel.hpp"
#include "nn/ssm.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_close;
using testing::expect_gradients_match;
using testing::expect_invalid;
using testing::random_tensor;

// The recurrence written with one autograd node per op and step (selective_scan_ref's loop).
Var naive_scan(const Var& u, const Var& delta, const Var& A, const Var& B, const Var& C) {
  const int Bt = u.dim(0), L = u.dim(1), E = u.dim(2), N = A.dim(1);
  Var h = constant(Tensor::zeros({Bt, E, N}));
  std::vector<Var> ys;
  for (int t = 0; t < L; ++t) {
    const Var d = reshape(slice(delta, 1, t, t + 1), Shape{Bt, E, 1});
    const Var x = reshape(slice(u, 1, t, t + 1), Shape{Bt, E, 1});
    const Var bt = reshape(slice(B, 1, t, t + 1), Shape{Bt, 1, N});
    const Var ct = reshape(slice(C, 1, t, t + 1), Shape{Bt, 1, N});
    h = add(mul(exp(mul(d, A)), h), mul(mul(d, x), bt));
    ys.push_back(reshape(sum_last(mul(h, ct)), Shape{Bt, 1, E}));
  }
  return concat(ys, 1);
}

struct ScanInputs {
  Tensor u, delta, A, B, C;
};

ScanInputs scan_inputs(int Bt, int L, int E, int N, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  ScanInputs s;
  s.u = random_tensor({Bt, L, E}, rng);
  s.delta = random_tensor({Bt, L, E}, rng, 0.05f, 0.6f);
  s.A = random_tensor({E, N}, rng, -2.0f, -0.2f);
  s.B = random_tensor({Bt, L, N}, rng);
  s.C = random_tensor({Bt, L, N}, rng);
  return s;
}

TEST(SelectiveScan, MatchesNaiveScanValuesAndGradients) {
  // L = 70 spans three backward chunks (32, 32, 6).
  const ScanInputs s = scan_inputs(2, 70, 3, 4, 11);
  std::vector<Var> fused{parameter(s.u), parameter(s.delta), parameter(s.A), parameter(s.B),
                         parameter(s.C)};
  std::vector<Var> naive{parameter(s.u), parameter(s.delta), parameter(s.A), parameter(s.B),
                         parameter(s.C)};
  const Var yf = selective_scan(fused[0], fused[1], fused[2], fused[3], fused[4]);
  const Var yn = naive_scan(naive[0], naive[1], naive[2], naive[3], naive[4]);
  expect_close(yf.value(), yn.value(), 1e-5f);
  std::mt19937_64 rng(3);
  const Tensor proj = random_tensor(yf.shape(), rng, 0.5f, 1.5f);
  backward(sum(mul(yf, constant(proj))));
  backward(sum(mul(yn, constant(proj))));
  for (std::size_t k = 0; k < fused.size(); ++k) {
    SCOPED_TRACE("input " + std::to_string(k));
    expect_close(fused[k].grad(), naive[k].grad(), 1e-4f);
  }
}

TEST(SelectiveScan, FiniteDifferencesAcrossChunks) {
  const ScanInputs s = scan_inputs(1, 40, 2, 3, 5);
  expect_gradients_match(
      [](const std::vector<Var>& v) { return selective_scan(v[0], v[1], v[2], v[3], v[4]); },
      {s.u, s.delta, s.A, s.B, s.C});
}

TEST(SelectiveScan, SameBitsWhateverTheThreadCount) {
  const ScanInputs s = scan_inputs(4, 64, 16, 8, 7);  // large enough to split into chunks
  auto run = [&](int threads) {
    ThreadBudget budget(threads);
    return run_isolated([&] {
      std::vector<Var> v{parameter(s.u), parameter(s.delta), parameter(s.A), parameter(s.B),
                         parameter(s.C)};
      Var y = selective_scan(v[0], v[1], v[2], v[3], v[4]);
      backward(sum(mul(y, y)));
      std::vector<Tensor> out{y.value().clone()};
      for (auto& x : v) out.push_back(x.grad().clone());
      return out;
    });
  };
  const auto one = run(1), four = run(4);
  for (std::size_t k = 0; k < one.size(); ++k)
    for (std::int64_t i = 0; i < one[k].numel(); ++i)
      ASSERT_EQ(one[k].data()[i], four[k].data()[i]) << "tensor " << k << " elem " << i;
}

TEST(SelectiveScan, RejectsMismatchedInputs) {
  const ScanInputs s = scan_inputs(2, 5, 3, 4, 1);
  auto c = [](const Tensor& t) { return constant(t); };
  expect_invalid([&] { selective_scan(c(s.B), c(s.delta), c(s.A), c(s.B), c(s.C)); },
                 "selective_scan: A must be [channels=4, state], got [3, 4]");
  expect_invalid([&] { selective_scan(c(s.u), c(s.B), c(s.A), c(s.B), c(s.C)); },
                 "selective_scan: delta has shape [2, 5, 4], expected [2, 5, 3]");
  expect_invalid([&] { selective_scan(c(s.u), c(s.delta), c(s.A), c(s.u), c(s.C)); },
                 "selective_scan: B has shape [2, 5, 3], expected [2, 5, 4]");
  expect_invalid([&] { selective_scan(c(s.u), c(s.delta), c(s.A), c(s.B), c(s.u)); },
                 "selective_scan: C has shape [2, 5, 3], expected [2, 5, 4]");
  expect_invalid([&] { selective_scan(c(s.A), c(s.A), c(s.A), c(s.B), c(s.C)); },
                 "selective_scan: u must be [batch, length, channels], got [3, 4]");
}

// K[h, l] = 2 Re sum_n C_n (e^{z_n} - 1) / A_n e^{z_n l}, term by term with std::exp.
Tensor closed_form_kernel(const Tensor& log_dt, const Tensor& lar, const Tensor& aim,
                          const Tensor& c, int L) {
  const int H = log_dt.dim(0), M = lar.dim(1);
  Tensor k(Shape{H, L});
  for (int h = 0; h < H; ++h)
    for (int l = 0; l < L; ++l) {
      double acc = 0;
      for (int m = 0; m < M; ++m) {
        const std::complex<double> a(-std::exp(lar.data()[h * M + m]), aim.data()[h * M + m]);
        const std::complex<double> z = std::exp(static_cast<double>(log_dt.data()[h])) * a;
        const std::complex<double> cm(c.data()[2 * (h * M + m)], c.data()[2 * (h * M + m) + 1]);
        acc += 2.0 * (cm * (std::exp(z) - 1.0) / a * std::exp(z * static_cast<double>(l))).real();
      }
      k.data()[h * L + l] = static_cast<float>(acc);
    }
  return k;
}

TEST(S4dKernel, MatchesClosedForm) {
  std::mt19937_64 rng(2);
  const Tensor log_dt = random_tensor({3}, rng, -4.0f, -1.0f);
  const Tensor lar = random_tensor({3, 5}, rng, -1.0f, 0.5f);
  const Tensor aim = random_tensor({3, 5}, rng, 0.0f, 10.0f);
  const Tensor c = random_tensor({3, 5, 2}, rng);
  const Var k = s4d_kernel(constant(log_dt), constant(lar), constant(aim), constant(c), 300);
  expect_close(k.value(), closed_form_kernel(log_dt, lar, aim, c, 300), 1e-5f);
}

TEST(S4dKernel, FiniteDifferencesOnEveryParameter) {
  std::mt19937_64 rng(4);
  expect_gradients_match(
      [](const std::vector<Var>& v) { return s4d_kernel(v[0], v[1], v[2], v[3], 24); },
      {random_tensor({2}, rng, -2.0f, -0.5f), random_tensor({2, 3}, rng, -1.0f, 0.0f),
       random_tensor({2, 3}, rng, 0.0f, 3.0f), random_tensor({2, 3, 2}, rng)});
}

TEST(S4dKernel, RejectsBadInputs) {
  auto z = [](Shape s) { return constant(Tensor::zeros(s)); };
  expect_invalid(
      [&] {
        s4d_kernel(z({2}), z({2, 3}), z({2, 3}), z({2, 3, 2}), 0);
      },
      "s4d_kernel: length must be >= 1, got 0");
  expect_invalid(
      [&] {
        s4d_kernel(z({2, 1}), z({2, 3}), z({2, 3}), z({2, 3, 2}), 4);
      },
      "s4d_kernel: log_dt must be [channels], got [2, 1]");
  expect_invalid(
      [&] {
        s4d_kernel(z({2}), z({3, 3}), z({2, 3}), z({2, 3, 2}), 4);
      },
      "s4d_kernel: log_a_real must be [channels=2, modes], got [3, 3]");
  expect_invalid(
      [&] {
        s4d_kernel(z({2}), z({2, 3}), z({2, 4}), z({2, 3, 2}), 4);
      },
      "s4d_kernel: a_imag has shape [2, 4], expected [2, 3]");
  expect_invalid(
      [&] {
        s4d_kernel(z({2}), z({2, 3}), z({2, 3}), z({2, 3}), 4);
      },
      "s4d_kernel: c has shape [2, 3], expected [2, 3, 2]");
}

}  // namespace
}  // namespace hwnas::nn
