// The fused time loop (nn/time_loop.hpp) with its LSTM and Elman cells (nn/recurrent_cells.hpp):
// finite-difference gradients on inputs, initial state and every parameter (with and without
// checkpointed recomputation), the fused LSTM against an unfused one built from primitive ops,
// bit-identical results for 1 and 2 threads, O(1) graph nodes for long loops, and one test per
// rejected input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "nn/recurrent_cells.hpp"
#include "nn/time_loop.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {

using testing::expect_gradients_match;
using testing::expect_invalid;
using testing::random_tensor;

void expect_close(const Tensor& a, const Tensor& b, float tol = 2e-5f) {
  testing::expect_close(a, b, tol);
}

// Inputs of one LSTM call, in the order x, h0, c0, w_ih, w_hh, b_ih, b_hh.
std::vector<Tensor> lstm_inputs(int B, int T, int F, int H, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  return {random_tensor({B, T, F}, rng),
          random_tensor({B, H}, rng),
          random_tensor({B, H}, rng),
          random_tensor({4 * H, F}, rng, -0.8f, 0.8f),
          random_tensor({4 * H, H}, rng, -0.8f, 0.8f),
          random_tensor({4 * H}, rng, -0.5f, 0.5f),
          random_tensor({4 * H}, rng, -0.5f, 0.5f)};
}

// Output sequence, h_n and c_n side by side in one [B, T*H + 2H] Var, so that one check covers
// every output of the loop.
Var lstm_all_outputs(const std::vector<Var>& v, const RecurrenceOptions& opt) {
  LstmOutput o = lstm(v[0], v[1], v[2], v[3], v[4], v[5], v[6], opt);
  const int B = v[0].dim(0), T = v[0].dim(1), H = v[4].dim(1);
  return concat({reshape(o.output, Shape{B, T * H}), o.h_n, o.c_n}, 1);
}

// The same LSTM from primitive ops, one step at a time.
Var lstm_unfused(const std::vector<Var>& v) {
  const Var &x = v[0], &w_ih = v[3], &w_hh = v[4], &b_ih = v[5], &b_hh = v[6];
  const int B = x.dim(0), T = x.dim(1), F = x.dim(2), H = w_hh.dim(1);
  Var h = v[1], c = v[2];
  std::vector<Var> xs = split(x, std::vector<int>(static_cast<std::size_t>(T), 1), 1);
  std::vector<Var> outs;
  for (int t = 0; t < T; ++t) {
    Var gates = add(linear(reshape(xs[static_cast<std::size_t>(t)], Shape{B, F}), w_ih, b_ih),
                    linear(h, w_hh, b_hh));
    std::vector<Var> g = split(gates, {H, H, H, H}, 1);
    c = add(mul(sigmoid(g[1]), c), mul(sigmoid(g[0]), tanh(g[2])));
    h = mul(sigmoid(g[3]), tanh(c));
    outs.push_back(reshape(h, Shape{B, 1, H}));
  }
  return concat({reshape(concat(outs, 1), Shape{B, T * H}), h, c}, 1);
}

TEST(TimeLoopLstm, GradientsMatchFiniteDifferences) {
  for (int k : {0, 2}) {  // every step kept; checkpoint every 2 steps (runs of 2, 2, 1)
    SCOPED_TRACE("checkpoint_every=" + std::to_string(k));
    RecurrenceOptions opt{k};
    expect_gradients_match([&](const std::vector<Var>& v) { return lstm_all_outputs(v, opt); },
                           lstm_inputs(2, 5, 3, 3, 11));
  }
}

TEST(TimeLoopLstm,
     GradientsThroughFinalStateAlone) {  // a classifier on h_n: outputs get no gradient
  for (int k : {0, 3}) {
    RecurrenceOptions opt{k};
    expect_gradients_match(
        [&](const std::vector<Var>& v) {
          return lstm(v[0], v[1], v[2], v[3], v[4], v[5], v[6], opt).h_n;
        },
        lstm_inputs(3, 4, 2, 2, 12));
  }
}

TEST(TimeLoopLstm, WithoutBiasesOrInitialState) {
  std::mt19937_64 rng(13);
  std::vector<Tensor> in{random_tensor({2, 4, 3}, rng), random_tensor({8, 3}, rng),
                         random_tensor({8, 2}, rng)};
  expect_gradients_match(
      [](const std::vector<Var>& v) {
        return lstm(v[0], Var(), Var(), v[1], v[2], Var(), Var()).output;
      },
      in);
}

TEST(TimeLoopRnn, GradientsMatchFiniteDifferences) {
  for (int k : {0, 2}) {
    SCOPED_TRACE("checkpoint_every=" + std::to_string(k));
    std::mt19937_64 rng(21);
    const int B = 2, T = 5, F = 3, H = 3;
    std::vector<Tensor> in{random_tensor({B, T, F}, rng), random_tensor({B, H}, rng),
                           random_tensor({H, F}, rng),    random_tensor({H, H}, rng),
                           random_tensor({H}, rng),       random_tensor({H}, rng)};
    expect_gradients_match(
        [&](const std::vector<Var>& v) {
          RnnOutput o = rnn_tanh(v[0], v[1], v[2], v[3], v[4], v[5], RecurrenceOptions{k});
          return concat({reshape(o.output, Shape{B, T * H}), o.h_n}, 1);
        },
        in);
  }
}

TEST(TimeLoopRnn, WithoutInputProjectionTheCellIsDrivenByX) {
  std::mt19937_64 rng(22);
  const int H = 3;
  std::vector<Tensor> in{random_tensor({2, 4, H}, rng), random_tensor({2, H}, rng),
                         random_tensor({H, H}, rng), random_tensor({H}, rng)};
  auto cell = std::make_shared<ElmanCell>(H, true);
  for (int k : {0, 3})
    expect_gradients_match(
        [&](const std::vector<Var>& v) {
          Recurrence r =
              run_recurrence(cell, v[0], v[1], Var(), Var(), {v[2], v[3]}, RecurrenceOptions{k});
          return concat({reshape(r.outputs, Shape{2, 4 * H}), r.final_state}, 1);
        },
        in);
}

// A cell whose backward needs its drive u (the path LstmCell and ElmanCell never take):
// s_t = a * tanh(u_t) * s_{t-1} + u_t, y_t = s_t, with one parameter a [H].  Plain loops.
class GatedIntegratorCell : public RecurrentCell {
 public:
  explicit GatedIntegratorCell(int h) : h_(h) {}
  std::string name() const override { return "gated_integrator"; }
  int input_size() const override { return h_; }
  int state_size() const override { return h_; }
  int output_size() const override { return h_; }
  bool backward_needs_input() const override { return true; }
  void check_params(const std::vector<Tensor>& p) const override {
    if (p.size() != 1 || p[0].shape() != Shape{h_})
      throw std::invalid_argument("gated_integrator: a must be [H]");
  }
  void forward_step(const std::vector<Tensor>& p, const StepForward& io) const override {
    for (int r = 0; r < io.rows; ++r)
      for (int j = 0; j < h_; ++j) {
        const float u = io.u.row(r)[j];
        io.s.row(r)[j] = io.y.row(r)[j] = p[0].data()[j] * std::tanh(u) * io.s_prev.row(r)[j] + u;
      }
  }
  void backward_step(const std::vector<Tensor>& p, const StepBackward& io) const override {
    float* da = (*io.grads)[0].data();
    for (int r = 0; r < io.rows; ++r)
      for (int j = 0; j < h_; ++j) {
        const float u = io.u.row(r)[j], th = std::tanh(u), a = p[0].data()[j],
                    sp = io.s_prev.row(r)[j];
        const float ds = io.ds.row(r)[j] + io.dy.row(r)[j];
        io.ds_prev.row(r)[j] = ds * a * th;
        io.du.row(r)[j] = ds * (a * (1.0f - th * th) * sp + 1.0f);
        da[j] += ds * th * sp;  // needs dL/ds_t: accumulated per step, not from du
      }
  }
  void accumulate_param_grads(const std::vector<Tensor>&, const SampleSpan&,
                              std::vector<Tensor>&) const override {}

 private:
  int h_;
};

TEST(TimeLoop, CellWhoseBackwardNeedsItsInput) {
  // Covers the facility's paths for backward_needs_input() (u kept, or recomputed per run from
  // x when checkpointing) and per-step parameter gradients through StepBackward::grads.
  std::mt19937_64 rng(23);
  const int B = 2, T = 5, F = 3, H = 2;
  std::vector<Tensor> in{random_tensor({B, T, F}, rng), random_tensor({B, H}, rng),
                         random_tensor({H, F}, rng), random_tensor({H}, rng),
                         random_tensor({H}, rng, 0.5f, 0.9f)};
  auto cell = std::make_shared<GatedIntegratorCell>(H);
  for (int k : {0, 2}) {
    SCOPED_TRACE("checkpoint_every=" + std::to_string(k));
    expect_gradients_match(
        [&](const std::vector<Var>& v) {
          Recurrence r = run_recurrence(cell, v[0], v[1], v[2], v[3], {v[4]}, RecurrenceOptions{k});
          return concat({reshape(r.outputs, Shape{B, T * H}), r.final_state}, 1);
        },
        in);
  }
  // Without an input projection the cell is driven by x itself, kept whole when checkpointing.
  std::vector<Tensor> direct{random_tensor({B, T, H}, rng), random_tensor({B, H}, rng),
                             random_tensor({H}, rng, 0.5f, 0.9f)};
  for (int k : {0, 3})
    expect_gradients_match(
        [&](const std::vector<Var>& v) {
          return run_recurrence(cell, v[0], v[1], Var(), Var(), {v[2]}, RecurrenceOptions{k})
              .outputs;
        },
        direct);
}

// Runs f on fresh parameters built from `in`, backpropagates sum(out * proj) and returns the
// output followed by every input's gradient.
std::vector<Tensor> values_and_grads(const std::function<Var(const std::vector<Var>&)>& f,
                                     const std::vector<Tensor>& in) {
  std::vector<Var> v;
  for (const Tensor& t : in) v.push_back(parameter(t.clone()));
  Var out = f(v);
  std::mt19937_64 rng(5);
  backward(sum(mul(out, constant(random_tensor(out.shape(), rng, 0.5f, 1.5f)))));
  std::vector<Tensor> r{out.value()};
  for (const Var& p : v) r.push_back(p.grad());
  return r;
}

TEST(TimeLoopLstm, MatchesUnfusedReferenceValuesAndGradients) {
  const std::vector<Tensor> in = lstm_inputs(5, 9, 6, 7, 31);
  const auto ref = values_and_grads(lstm_unfused, in);
  for (int k : {0, 4}) {
    SCOPED_TRACE("checkpoint_every=" + std::to_string(k));
    const auto got = values_and_grads(
        [&](const std::vector<Var>& v) { return lstm_all_outputs(v, RecurrenceOptions{k}); }, in);
    ASSERT_EQ(got.size(), ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      SCOPED_TRACE("tensor " + std::to_string(i));
      expect_close(got[i], ref[i]);
    }
  }
}

TEST(TimeLoopLstm, InferenceMatchesTrainingForward) {
  const std::vector<Tensor> in = lstm_inputs(3, 6, 4, 5, 32);
  std::vector<Var> v;
  for (const Tensor& t : in) v.push_back(parameter(t));
  const Tensor train = lstm_all_outputs(v, {}).value();
  NoGradGuard ng;
  const Tensor infer = lstm_all_outputs(v, {}).value();
  EXPECT_EQ(std::memcmp(train.data(), infer.data(), sizeof(float) * train.numel()), 0);
}

bool bitwise_equal(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].shape() != b[i].shape() ||
        std::memcmp(a[i].data(), b[i].data(), sizeof(float) * a[i].numel()) != 0)
      return false;
  return true;
}

TEST(TimeLoopLstm, BitIdenticalForOneAndTwoThreads) {
  // 64 rows: four batch chunks, so two threads really split the loop.
  const std::vector<Tensor> in = lstm_inputs(64, 12, 16, 16, 41);
  for (int k : {0, 5}) {
    SCOPED_TRACE("checkpoint_every=" + std::to_string(k));
    auto run = [&](int threads) {
      ThreadBudget budget(threads);
      return values_and_grads(
          [&](const std::vector<Var>& v) { return lstm_all_outputs(v, RecurrenceOptions{k}); }, in);
    };
    const auto one = run(1), two = run(2), two_again = run(2);
    EXPECT_TRUE(bitwise_equal(one, two));
    EXPECT_TRUE(bitwise_equal(two, two_again));
  }
}

TEST(TimeLoopLstm, CheckpointingKeepsForwardExactAndGradientsClose) {
  const std::vector<Tensor> in = lstm_inputs(20, 17, 8, 8, 42);
  auto run = [&](int k) {
    return values_and_grads(
        [&](const std::vector<Var>& v) { return lstm_all_outputs(v, RecurrenceOptions{k}); }, in);
  };
  const auto full = run(0);
  for (int k : {1, 4, 16, 17, 100}) {
    SCOPED_TRACE("checkpoint_every=" + std::to_string(k));
    const auto ck = run(k);
    EXPECT_EQ(std::memcmp(full[0].data(), ck[0].data(), sizeof(float) * full[0].numel()), 0);
    for (std::size_t i = 1; i < full.size(); ++i) expect_close(ck[i], full[i]);
  }
}

// Graph nodes reachable from v (leaves included).
std::size_t count_nodes(const Var& v) {
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack{v.node()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (!seen.insert(n).second) continue;
    for (auto& p : n->parents) stack.push_back(p.get());
  }
  return seen.size();
}

TEST(TimeLoopLstm, GraphSizeDoesNotGrowWithSequenceLength) {
  std::mt19937_64 rng(51);
  Lstm layer(4, 8, true, rng);
  auto nodes_for = [&](int T) {
    Var x = parameter(random_tensor({2, T, 4}, rng));
    LstmOutput o = layer.forward(x, Var(), Var());
    return count_nodes(sum(add(mean_dim(o.output, 1), o.h_n)));
  };
  const std::size_t short_loop = nodes_for(4), long_loop = nodes_for(256);
  EXPECT_EQ(short_loop, long_loop);
  EXPECT_LE(long_loop, 16u);  // x, 4 parameters, loop, final state, split, mean, add, sum
}

TEST(TimeLoopLstm, ModuleShapesAndParameters) {
  std::mt19937_64 rng(52);
  Lstm layer(5, 6, true, rng, RecurrenceOptions{8});
  std::vector<Var> params;
  layer.collect_parameters(params);
  ASSERT_EQ(params.size(), 4u);
  EXPECT_EQ(params[0].shape(), (Shape{24, 5}));
  EXPECT_EQ(params[1].shape(), (Shape{24, 6}));
  for (const Var& p : params)  // PyTorch's init range 1/sqrt(H)
    EXPECT_LE(p.value().array().abs().maxCoeff(), 1.0f / std::sqrt(6.0f));
  ForwardContext ctx;
  Var y = layer.forward({constant(Tensor::zeros(Shape{3, 10, 5}))}, ctx);
  EXPECT_EQ(y.shape(), (Shape{3, 10, 6}));
  ElmanRnn rnn(5, 6, false, rng);
  params.clear();
  rnn.collect_parameters(params);
  EXPECT_EQ(params.size(), 2u);
  EXPECT_EQ(rnn.forward({constant(Tensor::zeros(Shape{3, 10, 5}))}, ctx).shape(),
            (Shape{3, 10, 6}));
}

TEST(TimeLoop, RejectsBadInputs) {
  auto cell = std::make_shared<LstmCell>(2, true);
  const Var x = constant(Tensor::zeros(Shape{3, 4, 5}));
  const Var w_in = constant(Tensor::zeros(Shape{8, 5})), b_in = constant(Tensor::zeros(Shape{8}));
  const std::vector<Var> p{constant(Tensor::zeros(Shape{8, 2})), constant(Tensor::zeros(Shape{8}))};
  expect_invalid([&] { run_recurrence(nullptr, x, Var(), w_in, b_in, p); }, "cell is null");
  expect_invalid(
      [&] {
        run_recurrence(cell, constant(Tensor::zeros(Shape{3, 5})), Var(), w_in, b_in, p);
      },
      "x must be [batch, time, features], got [3, 5]");
  expect_invalid(
      [&] {
        run_recurrence(cell, constant(Tensor::zeros(Shape{3, 0, 5})), Var(), w_in, b_in, p);
      },
      "at least one sample, step and feature");
  expect_invalid(
      [&] {
        run_recurrence(cell, x, Var(), constant(Tensor::zeros(Shape{8, 4})), b_in, p);
      },
      "w_in must be [input_size, features] = [8, 5], got [8, 4]");
  expect_invalid(
      [&] { run_recurrence(cell, x, Var(), w_in, constant(Tensor::zeros(Shape{4})), p); },
      "b_in must be [input_size] = [8], got [4]");
  expect_invalid([&] { run_recurrence(cell, x, Var(), Var(), b_in, p); },
                 "b_in given without w_in");
  expect_invalid([&] { run_recurrence(cell, x, Var(), Var(), Var(), p); },
                 "without w_in, x's features must equal the cell's input size 8");
  expect_invalid(
      [&] {
        run_recurrence(cell, x, constant(Tensor::zeros(Shape{3, 2})), w_in, b_in, p);
      },
      "s0 must be [batch, state_size] = [3, 4], got [3, 2]");
  expect_invalid([&] { run_recurrence(cell, x, Var(), w_in, b_in, p, RecurrenceOptions{-1}); },
                 "checkpoint_every must be >= 0 (0 keeps every step), got -1");
  expect_invalid([&] { run_recurrence(cell, x, Var(), w_in, b_in, {p[0]}); },
                 "lstm: expected 2 parameters (w_hh, b_hh), got 1");
  expect_invalid(
      [&] {
        run_recurrence(cell, x, Var(), w_in, b_in, {constant(Tensor::zeros(Shape{2, 8})), p[1]});
      },
      "lstm: w_hh must be [8, 2], got [2, 8]");
  expect_invalid(
      [&] {
        run_recurrence(cell, x, Var(), w_in, b_in, {p[0], constant(Tensor::zeros(Shape{2}))});
      },
      "lstm: b_hh must be [8], got [2]");
  expect_invalid(
      [&] {
        run_recurrence(cell, x, Var(), w_in, b_in, {p[0], Var()});
      },
      "a cell parameter is undefined");
  expect_invalid([] { LstmCell(0, true); }, "LstmCell: hidden must be > 0, got 0");
  expect_invalid([] { ElmanCell(-1, true); }, "ElmanCell: hidden must be > 0, got -1");
}

TEST(TimeLoopLstm, RejectsBadLayerArguments) {
  const Var x = constant(Tensor::zeros(Shape{3, 4, 5}));
  const Var w_ih = constant(Tensor::zeros(Shape{8, 5})),
            w_hh = constant(Tensor::zeros(Shape{8, 2}));
  expect_invalid(
      [&] {
        lstm(x, Var(), Var(), w_ih, constant(Tensor::zeros(Shape{8, 3})), Var(), Var());
      },
      "lstm: w_hh must be [4*hidden, hidden], got [8, 3]");
  expect_invalid(
      [&] {
        lstm(x, Var(), Var(), constant(Tensor::zeros(Shape{8, 4})), w_hh, Var(), Var());
      },
      "lstm: w_ih must be [4*hidden, features] = [8, 5], got [8, 4]");
  expect_invalid(
      [&] {
        lstm(constant(Tensor::zeros(Shape{3, 5})), Var(), Var(), w_ih, w_hh, Var(), Var());
      },
      "lstm: x must be [batch, time, features], got [3, 5]");
  expect_invalid(
      [&] {
        lstm(x, constant(Tensor::zeros(Shape{2, 2})), Var(), w_ih, w_hh, Var(), Var());
      },
      "lstm: h0 must be [batch, hidden] = [3, 2], got [2, 2]");
  expect_invalid(
      [&] {
        lstm(x, Var(), constant(Tensor::zeros(Shape{3, 3})), w_ih, w_hh, Var(), Var());
      },
      "lstm: c0 must be [batch, hidden] = [3, 2], got [3, 3]");
  expect_invalid([&] { rnn_tanh(x, Var(), w_ih, w_hh, Var(), Var()); },
                 "rnn_tanh: w_hh must be [1*hidden, hidden], got [8, 2]");
  std::mt19937_64 rng(1);
  expect_invalid([&] { Lstm(0, 4, true, rng); },
                 "Lstm: input_size and hidden_size must be > 0, got 0, 4");
  expect_invalid([&] { ElmanRnn(3, 0, true, rng); },
                 "ElmanRnn: input_size and hidden_size must be > 0, got 3, 0");
}

}  // namespace
}  // namespace hwnas::nn
