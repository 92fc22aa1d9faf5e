// Helpers the block kinds' tests share: a one-node genome, an error-message check, the batched
// shape of a type and a finite-difference gradient check of a built one-block model on its
// input and every parameter.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/ops.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::spaces::testing {

// input -> one `kind` node with params `p`, validated.
inline Genome one_block(const std::string& kind, const TensorType& in, const nlohmann::json& p) {
  Genome g(in);
  auto v = g.add_node(kind, p);
  g.add_edge(0, v);
  g.validate();
  return g;
}

// `f` throws std::invalid_argument whose message contains `msg`.
inline void expect_message(const std::function<void()>& f, const std::string& msg) {
  try {
    f();
    ADD_FAILURE() << "no exception, expected: " << msg;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << e.what();
  }
}

// [n, dims...]: the nn shape of a batch of n samples of type t.
inline std::vector<int> batched(const TensorType& t, int n) {
  std::vector<int> d{n};
  d.insert(d.end(), t.dims.begin(), t.dims.end());
  return d;
}

// Central differences of sum(model(x) * proj) against the backward pass, on the input and on
// five entries of every parameter of the one-block model.
inline void check_gradients(const std::string& kind, const nlohmann::json& p,
                            const TensorType& in) {
  SCOPED_TRACE(kind + " " + p.dump());
  Genome g = one_block(kind, in, p);
  auto model = build_model(g, 5);
  std::vector<nn::Var> params;
  model->collect_parameters(params);
  std::mt19937_64 rng(9);
  nn::Var x = nn::parameter(nn::testing::random_tensor(nn::Shape(batched(in, 2)), rng));
  params.push_back(x);
  nn::ForwardContext ctx;
  const nn::Tensor proj =
      nn::testing::random_tensor(model->forward(x, ctx).shape(), rng, 0.5f, 1.5f);
  auto loss = [&] { return nn::sum(nn::mul(model->forward(x, ctx), nn::constant(proj))); };
  nn::backward(loss());
  for (std::size_t k = 0; k < params.size(); ++k) {
    nn::Tensor& t = params[k].value();
    const nn::Tensor gr = params[k].grad().clone();
    ASSERT_FALSE(gr.empty()) << "tensor " << k;
    for (std::int64_t i = 0; i < std::min<std::int64_t>(t.numel(), 5); ++i) {
      const std::int64_t e = (i * 7919) % t.numel();
      const float orig = t.data()[e], eps = 1e-2f * std::max(1.0f, std::fabs(orig));
      nn::NoGradGuard ng;
      t.data()[e] = orig + eps;
      const double fp = loss().value().item();
      t.data()[e] = orig - eps;
      const double fm = loss().value().item();
      t.data()[e] = orig;
      const double num = (fp - fm) / (2.0 * eps);
      EXPECT_NEAR(gr.data()[e], num, 3e-3 + 3e-2 * std::fabs(num))
          << "tensor " << k << " elem " << e;
    }
  }
}

}  // namespace hwnas::spaces::testing
