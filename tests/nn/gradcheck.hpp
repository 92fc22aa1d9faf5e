// Finite-difference gradient checking for ops and blocks.
//
// For a scalar function f of some parameter Vars, compares the autodiff gradient against the
// central difference (f(x+eps) - f(x-eps)) / 2eps, element by element.
// Tolerance policy (float32): eps = 1e-2 * max(1, |x|) balances truncation error O(eps^2)
// against rounding error O(u/eps) with u ~ 6e-8 for values of order one; an element passes if
// |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|) with atol = 2e-3, rtol = 2e-2.
// Functions with kinks (ReLU, max-pool) must be evaluated away from them: tests choose inputs
// whose distance to any kink exceeds eps.  The reduction used for the check is a fixed random
// projection sum(f(x) * r), so every output element contributes with a distinct weight.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/autograd.hpp"
#include "nn/ops.hpp"

namespace hwnas::nn::testing {

inline Tensor random_tensor(const Shape& s, std::mt19937_64& rng, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  Tensor t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = d(rng);
  return t;
}

// Element-wise comparison with a relative tolerance (absolute below magnitude 1).
inline void expect_close(const Tensor& a, const Tensor& b, float tol) {
  ASSERT_EQ(a.shape(), b.shape());
  for (std::int64_t i = 0; i < a.numel(); ++i)
    ASSERT_NEAR(a.data()[i], b.data()[i], tol * std::max(1.0f, std::fabs(b.data()[i])))
        << "element " << i;
}

// f() must throw std::invalid_argument whose message contains `fragment`.
template <class F>
void expect_invalid(F&& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected std::invalid_argument containing '" << fragment << "'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << "message: " << e.what();
  }
}

struct GradCheckOptions {
  float eps_scale = 1e-2f;
  float atol = 2e-3f;
  float rtol = 2e-2f;
  int max_elements_per_input = 64;  // checks a random subset of elements of large inputs
  std::uint64_t seed = 1234;
};

// f maps the inputs to any Var; it is reduced with a fixed random projection to a scalar.
inline void expect_gradients_match(const std::function<Var(const std::vector<Var>&)>& f,
                                   std::vector<Tensor> inputs, const GradCheckOptions& opt = {}) {
  std::mt19937_64 rng(opt.seed);
  std::vector<Var> vars;
  for (auto& t : inputs) vars.push_back(parameter(t));
  Var out = f(vars);
  Tensor proj = random_tensor(out.shape(), rng, 0.5f, 1.5f);
  auto reduce = [&](const Var& y) { return sum(mul(y, constant(proj))); };
  backward(reduce(out));

  auto eval = [&]() {
    NoGradGuard ng;
    std::vector<Var> cs;
    for (auto& t : inputs) cs.push_back(constant(t));
    return reduce(f(cs)).value().item();
  };
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    ASSERT_FALSE(vars[k].grad().empty()) << "input " << k << " received no gradient";
    std::vector<std::int64_t> idx(static_cast<std::size_t>(x.numel()));
    for (std::int64_t i = 0; i < x.numel(); ++i) idx[static_cast<std::size_t>(i)] = i;
    std::shuffle(idx.begin(), idx.end(), rng);
    if (static_cast<int>(idx.size()) > opt.max_elements_per_input)
      idx.resize(opt.max_elements_per_input);
    for (std::int64_t i : idx) {
      float orig = x.data()[i];
      float eps = opt.eps_scale * std::max(1.0f, std::fabs(orig));
      x.data()[i] = orig + eps;
      double fp = eval();
      x.data()[i] = orig - eps;
      double fm = eval();
      x.data()[i] = orig;
      double numeric = (fp - fm) / (2.0 * eps);
      double analytic = vars[k].grad().data()[i];
      double tol = opt.atol + opt.rtol * std::max(std::fabs(analytic), std::fabs(numeric));
      EXPECT_NEAR(analytic, numeric, tol) << "input " << k << " element " << i;
    }
  }
}

// ---- input generators for ops with kinks, ties or restricted domains ----

// Magnitudes uniform in [lo, hi] with random signs: keeps every value at least lo away from a kink
// at 0 (ReLU, abs, step), and from a pole at 0 (division).
inline Tensor random_away_from_zero(const Shape& s, std::mt19937_64& rng, float lo = 0.1f,
                                    float hi = 1.0f) {
  Tensor t = random_tensor(s, rng, lo, hi);
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (rng() & 1) t.data()[i] = -t.data()[i];
  return t;
}

// Distinct values gap * (k - total/2) for k = 0..total-1, shuffled and dealt out over the given
// shapes in order: no ties inside or across the tensors, and every gap exceeds the gradcheck
// step, so max/min/top-k selections never flip.  Values are multiples of gap (total even).
inline std::vector<Tensor> spaced_distinct(const std::vector<Shape>& shapes, std::mt19937_64& rng,
                                           float gap = 0.1f) {
  std::int64_t total = 0;
  for (const Shape& s : shapes) total += s.numel();
  total += total % 2;
  std::vector<std::int64_t> order(static_cast<std::size_t>(total));
  for (std::int64_t i = 0; i < total; ++i) order[static_cast<std::size_t>(i)] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<Tensor> out;
  std::size_t k = 0;
  for (const Shape& s : shapes) {
    Tensor t(s);
    for (std::int64_t i = 0; i < t.numel(); ++i)
      t.data()[i] = gap * static_cast<float>(order[k++] - total / 2);
    out.push_back(t);
  }
  return out;
}

}  // namespace hwnas::nn::testing
