// Liquid cells on the fused time loop (nn/liquid_cells.hpp): finite-difference gradients on
// inputs, elapsed times, initial state and every parameter of CfC (each mode, backbone depth,
// wiring mask) and LTC (several unfolds, wiring masks); fused against an unfused reference built
// from nn ops step by step; bit-identical results for 1 and 2 threads; NCP wiring properties;
// one test per rejected input.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/liquid_cells.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {

using testing::expect_gradients_match;
using testing::expect_invalid;
using testing::random_tensor;

// ---------------------------------------------------------------- CfC case

struct CfcCase {
  CfcConfig cfg;
  int B = 2, T = 4, F = 3;
  bool dt = false;
  Tensor rec_mask, in_mask;
  // Wider than a vector register: checked against the unfused reference (values and gradients)
  // only, since at these widths float32 central differences sit at the tolerance.
  bool wide = false;
};

// Inputs in the order x, [dt], h0, w_in, b_in, params...
std::vector<Tensor> cfc_inputs(const CfcCase& c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int H = c.cfg.hidden, U = c.cfg.backbone_units, L = c.cfg.backbone_layers,
            P = c.cfg.first_width(), NH = c.cfg.heads() * H;
  std::vector<Tensor> in{random_tensor({c.B, c.T, c.F}, rng)};
  if (c.dt) in.push_back(random_tensor({c.B, c.T}, rng, 0.5f, 1.5f));
  in.push_back(random_tensor({c.B, H}, rng));
  in.push_back(random_tensor({P, c.F}, rng, -0.8f, 0.8f));
  in.push_back(random_tensor({P}, rng, -0.3f, 0.3f));
  in.push_back(random_tensor({P, H}, rng, -0.8f, 0.8f));
  for (int l = 2; l <= L; ++l) {
    in.push_back(random_tensor({U, U}, rng, -0.6f, 0.6f));
    in.push_back(random_tensor({U}, rng, -0.3f, 0.3f));
  }
  if (L > 0) {
    in.push_back(random_tensor({NH, U}, rng, -0.6f, 0.6f));
    in.push_back(random_tensor({NH}, rng, -0.3f, 0.3f));
  }
  if (c.cfg.mode == CfcMode::Pure) {
    in.push_back(testing::random_away_from_zero({H}, rng, 0.2f, 1.0f));
    in.push_back(random_tensor({H}, rng, 0.5f, 1.5f));
  }
  return in;
}

Recurrence cfc_call(const CfcCase& c, const std::vector<Var>& v, const RecurrenceOptions& o = {}) {
  std::size_t k = 0;
  const Var x = v[k++];
  const Var dt = c.dt ? v[k++] : Var();
  const Var h0 = v[k++], w_in = v[k++], b_in = v[k++];
  std::vector<Var> params(v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return cfc(x, dt, h0, w_in, b_in, params, c.cfg, c.rec_mask, c.in_mask, o);
}

// Output sequence and final state side by side, so one check covers both.
Var cfc_all(const CfcCase& c, const std::vector<Var>& v, const RecurrenceOptions& o = {}) {
  Recurrence r = cfc_call(c, v, o);
  const int B = v[0].dim(0), T = v[0].dim(1), H = c.cfg.hidden;
  return concat({reshape(r.outputs, Shape{B, T * H}), r.final_state}, 1);
}

Var lecun_ref(const Var& z) { return scale(tanh(scale(z, 0.666f)), 1.7159f); }

// The same CfC from nn ops, one step at a time.
Var cfc_unfused(const CfcCase& c, const std::vector<Var>& v) {
  std::size_t k = 0;
  const Var x = v[k++];
  const Var dt = c.dt ? v[k++] : Var();
  Var h = v[k++];
  const Var w_in = c.in_mask.empty() ? v[k] : mul(v[k], constant(c.in_mask));
  ++k;
  const Var b_in = v[k++];
  const Var w_rec = c.rec_mask.empty() ? v[k] : mul(v[k], constant(c.rec_mask));
  ++k;
  const int B = x.dim(0), T = x.dim(1), F = x.dim(2), H = c.cfg.hidden, L = c.cfg.backbone_layers;
  std::vector<Var> xs = split(x, std::vector<int>(static_cast<std::size_t>(T), 1), 1);
  std::vector<Var> dts;
  if (c.dt) dts = split(dt, std::vector<int>(static_cast<std::size_t>(T), 1), 1);
  std::vector<Var> outs;
  for (int t = 0; t < T; ++t) {
    const std::size_t st = static_cast<std::size_t>(t);
    Var z = add(linear(reshape(xs[st], Shape{B, F}), w_in, b_in), linear(h, w_rec, Var()));
    std::size_t p = k;
    if (L > 0) {
      Var a = lecun_ref(z);
      for (int l = 2; l <= L; ++l, p += 2) a = lecun_ref(linear(a, v[p], v[p + 1]));
      z = linear(a, v[p], v[p + 1]);
      p += 2;
    }
    const Var ts = c.dt ? dts[st] : constant(Tensor(Shape{B, 1}, 1.0f));
    if (c.cfg.mode == CfcMode::Pure) {
      const Var& wt = v[p];
      const Var& A = v[p + 1];
      Var e = exp(scale(mul(ts, add(abs(wt), abs(z))), -1.0f));
      h = sub(A, mul(mul(A, e), z));
    } else {
      std::vector<Var> hd = split(z, {H, H, H, H}, 1);
      Var f1 = tanh(hd[0]), f2 = tanh(hd[1]);
      Var g = sigmoid(add(mul(hd[2], ts), hd[3]));
      h = c.cfg.mode == CfcMode::Default
              ? add(mul(f1, add_scalar(scale(g, -1.0f), 1.0f)), mul(g, f2))
              : add(f1, mul(g, f2));
    }
    outs.push_back(reshape(h, Shape{B, 1, H}));
  }
  return concat({reshape(concat(outs, 1), Shape{B, T * H}), h}, 1);
}

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

bool bitwise_equal(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].shape() != b[i].shape() ||
        std::memcmp(a[i].data(), b[i].data(), sizeof(float) * a[i].numel()) != 0)
      return false;
  return true;
}

Tensor random_mask(const Shape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution coin(0.6);
  Tensor m(s, 0.0f);
  for (std::int64_t i = 0; i < m.numel(); ++i) m.data()[i] = coin(rng) ? 1.0f : 0.0f;
  return m;
}

std::vector<CfcCase> cfc_cases() {
  std::vector<CfcCase> cases;
  auto add = [&](CfcMode mode, int L, bool dt, int hidden, int units, bool wide) {
    CfcCase c;
    c.wide = wide;
    c.cfg.hidden = hidden;
    c.cfg.backbone_units = units;
    c.cfg.backbone_layers = L;
    c.cfg.mode = mode;
    c.dt = dt;
    cases.push_back(c);
  };
  for (CfcMode mode : {CfcMode::Default, CfcMode::NoGate, CfcMode::Pure})
    for (int L : {0, 1, 2})
      for (bool dt : {false, true}) add(mode, L, dt, 3, 4, false);
  // Wider than one vector (8 or 16 lanes), so the vectorised activations' full lanes and tails
  // are both checked, not only Eigen's scalar tail.
  for (CfcMode mode : {CfcMode::Default, CfcMode::NoGate, CfcMode::Pure})
    for (int L : {1, 2}) add(mode, L, true, 9, 19, true);
  CfcCase masked;  // NCP-style masks on the recurrent and input weights
  masked.cfg.hidden = 4;
  masked.cfg.backbone_layers = 0;
  masked.dt = true;
  masked.rec_mask = random_mask(Shape{16, 4}, 3);
  masked.in_mask = random_mask(Shape{16, 3}, 4);
  cases.push_back(masked);
  return cases;
}

std::string describe(const CfcCase& c) {
  return "mode=" + cfc_mode_name(c.cfg.mode) + " L=" + std::to_string(c.cfg.backbone_layers) +
         " dt=" + std::to_string(c.dt) + " masked=" + std::to_string(!c.rec_mask.empty());
}

TEST(LiquidCfc, GradientsMatchFiniteDifferences) {
  std::uint64_t seed = 100;
  for (const CfcCase& c : cfc_cases()) {
    if (c.wide) continue;
    SCOPED_TRACE(describe(c));
    for (int k : {0, 3}) {
      SCOPED_TRACE("checkpoint_every=" + std::to_string(k));
      expect_gradients_match(
          [&](const std::vector<Var>& v) { return cfc_all(c, v, RecurrenceOptions{k}); },
          cfc_inputs(c, seed++));
    }
  }
}

TEST(LiquidCfc, MatchesUnfusedReferenceValuesAndGradients) {
  std::uint64_t seed = 200;
  for (const CfcCase& c : cfc_cases()) {
    SCOPED_TRACE(describe(c));
    const std::vector<Tensor> in = cfc_inputs(c, seed++);
    const auto ref =
        values_and_grads([&](const std::vector<Var>& v) { return cfc_unfused(c, v); }, in);
    const auto got = values_and_grads([&](const std::vector<Var>& v) { return cfc_all(c, v); }, in);
    ASSERT_EQ(got.size(), ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      SCOPED_TRACE("tensor " + std::to_string(i));
      testing::expect_close(got[i], ref[i], 2e-5f);
    }
  }
}

// ---------------------------------------------------------------- LTC case

struct LtcCase {
  LtcConfig cfg;
  int B = 2, T = 3;
  bool dt = false;
  Tensor mask, smask;
};

// Inputs in the order x, [dt], h0, params (LtcParam order).
std::vector<Tensor> ltc_inputs(const LtcCase& c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int H = c.cfg.hidden, F = c.cfg.inputs;
  std::vector<Tensor> in{random_tensor({c.B, c.T, F}, rng)};
  if (c.dt) in.push_back(random_tensor({c.B, c.T}, rng, 0.5f, 1.5f));
  in.push_back(random_tensor({c.B, H}, rng, -0.5f, 0.5f));
  in.push_back(random_tensor({H}, rng));                  // gleak (raw)
  in.push_back(random_tensor({H}, rng, -0.3f, 0.3f));     // vleak
  in.push_back(random_tensor({H}, rng, -0.5f, 0.5f));     // cm (raw)
  in.push_back(random_tensor({H, H}, rng, 1.0f, 3.0f));   // sigma
  in.push_back(random_tensor({H, H}, rng, -0.3f, 0.3f));  // mu
  in.push_back(random_tensor({H, H}, rng));               // w (raw)
  in.push_back(random_tensor({H, H}, rng));               // erev
  in.push_back(random_tensor({F, H}, rng, 1.0f, 3.0f));   // sensory sigma
  in.push_back(random_tensor({F, H}, rng, -0.3f, 0.3f));  // sensory mu
  in.push_back(random_tensor({F, H}, rng));               // sensory w (raw)
  in.push_back(random_tensor({F, H}, rng));               // sensory erev
  in.push_back(random_tensor({F}, rng, 0.5f, 1.5f));      // input w
  in.push_back(random_tensor({F}, rng, -0.2f, 0.2f));     // input b
  return in;
}

Recurrence ltc_call(const LtcCase& c, const std::vector<Var>& v, const RecurrenceOptions& o = {}) {
  std::size_t k = 0;
  const Var x = v[k++];
  const Var dt = c.dt ? v[k++] : Var();
  const Var h0 = v[k++];
  std::vector<Var> params(v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return ltc(x, dt, h0, params, c.cfg, c.mask, c.smask, o);
}

Var ltc_all(const LtcCase& c, const std::vector<Var>& v, const RecurrenceOptions& o = {}) {
  Recurrence r = ltc_call(c, v, o);
  const int B = v[0].dim(0), T = v[0].dim(1), H = c.cfg.hidden;
  return concat({reshape(r.outputs, Shape{B, T * H}), r.final_state}, 1);
}

// sum over dim 1 of [B, n, H] -> [B, H]
Var sum_dim1(const Var& x) { return scale(mean_dim(x, 1), static_cast<float>(x.dim(1))); }

// Synaptic currents of a [B, n] presynaptic signal through [n, H] synapses: (sum_i a erev, sum_i a)
std::pair<Var, Var> synapses(const Var& pre, const Var& sig, const Var& mu, const Var& w_pos,
                             const Var& erev) {
  const int B = pre.dim(0), n = pre.dim(1);
  Var s = sigmoid(mul(sig, sub(reshape(pre, Shape{B, n, 1}), mu)));  // [B, n, H]
  Var a = mul(w_pos, s);
  return {sum_dim1(mul(a, erev)), sum_dim1(a)};
}

Var ltc_unfused(const LtcCase& c, const std::vector<Var>& v) {
  std::size_t k = 0;
  const Var x = v[k++];
  const Var dt = c.dt ? v[k++] : Var();
  Var h = v[k++];
  auto P = [&](int i) { return v[k + static_cast<std::size_t>(i)]; };
  const int B = x.dim(0), T = x.dim(1), F = x.dim(2), H = c.cfg.hidden, K = c.cfg.unfolds;
  Var w_pos = softplus(P(kLtcW)), sw_pos = softplus(P(kLtcSW));
  if (!c.mask.empty()) w_pos = mul(w_pos, constant(c.mask));
  if (!c.smask.empty()) sw_pos = mul(sw_pos, constant(c.smask));
  const Var gl = softplus(P(kLtcGleak)), cm = scale(softplus(P(kLtcCm)), static_cast<float>(K));
  std::vector<Var> xs = split(x, std::vector<int>(static_cast<std::size_t>(T), 1), 1);
  std::vector<Var> dts;
  if (c.dt) dts = split(dt, std::vector<int>(static_cast<std::size_t>(T), 1), 1);
  std::vector<Var> outs;
  for (int t = 0; t < T; ++t) {
    const std::size_t st = static_cast<std::size_t>(t);
    Var xp = add(mul(reshape(xs[st], Shape{B, F}), P(kLtcInW)), P(kLtcInB));
    auto [num_s, den_s] = synapses(xp, P(kLtcSSigma), P(kLtcSMu), sw_pos, P(kLtcSErev));
    const Var cmt = c.dt ? div(mul(constant(Tensor(Shape{B, H}, 1.0f)), cm), dts[st])
                         : mul(constant(Tensor(Shape{B, H}, 1.0f)), cm);
    for (int u = 0; u < K; ++u) {
      auto [num, den] = synapses(h, P(kLtcSigma), P(kLtcMu), w_pos, P(kLtcErev));
      Var N = add(add(mul(cmt, h), mul(gl, P(kLtcVleak))), add(num, num_s));
      Var D = add_scalar(add(add(cmt, gl), add(den, den_s)), 1e-8f);
      h = div(N, D);
    }
    outs.push_back(reshape(h, Shape{B, 1, H}));
  }
  return concat({reshape(concat(outs, 1), Shape{B, T * H}), h}, 1);
}

std::vector<LtcCase> ltc_cases() {
  std::vector<LtcCase> cases;
  for (int K : {1, 3})
    for (bool dt : {false, true}) {
      LtcCase c;
      c.cfg.inputs = 2;
      c.cfg.hidden = 3;
      c.cfg.unfolds = K;
      c.dt = dt;
      cases.push_back(c);
    }
  LtcCase wired;
  wired.cfg.inputs = 2;
  wired.cfg.hidden = 5;
  wired.cfg.unfolds = 2;
  wired.dt = true;
  const NcpWiring w = make_ncp_wiring(2, 1, 2, 2, 1, 1, 1, 1, 9);
  wired.mask = w.adjacency;
  wired.smask = w.sensory;
  cases.push_back(wired);
  return cases;
}

std::string describe(const LtcCase& c) {
  return "unfolds=" + std::to_string(c.cfg.unfolds) + " dt=" + std::to_string(c.dt) +
         " wired=" + std::to_string(!c.mask.empty());
}

TEST(LiquidLtc, GradientsMatchFiniteDifferences) {
  std::uint64_t seed = 300;
  for (const LtcCase& c : ltc_cases()) {
    SCOPED_TRACE(describe(c));
    for (int k : {0, 2}) {
      SCOPED_TRACE("checkpoint_every=" + std::to_string(k));
      testing::GradCheckOptions opt;
      opt.max_elements_per_input = 24;
      expect_gradients_match(
          [&](const std::vector<Var>& v) { return ltc_all(c, v, RecurrenceOptions{k}); },
          ltc_inputs(c, seed++), opt);
    }
  }
}

TEST(LiquidLtc, MatchesUnfusedReferenceValuesAndGradients) {
  std::uint64_t seed = 400;
  for (const LtcCase& c : ltc_cases()) {
    SCOPED_TRACE(describe(c));
    const std::vector<Tensor> in = ltc_inputs(c, seed++);
    const auto ref =
        values_and_grads([&](const std::vector<Var>& v) { return ltc_unfused(c, v); }, in);
    const auto got = values_and_grads([&](const std::vector<Var>& v) { return ltc_all(c, v); }, in);
    ASSERT_EQ(got.size(), ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) {
      SCOPED_TRACE("tensor " + std::to_string(i));
      testing::expect_close(got[i], ref[i], 5e-5f);
    }
  }
}

// ---------------------------------------------------------------- determinism

TEST(Liquid, BitIdenticalForOneAndTwoThreads) {
  CfcCase c;  // 64 rows: four batch chunks
  c.cfg.hidden = 8;
  c.cfg.backbone_units = 12;
  c.cfg.backbone_layers = 2;
  c.B = 64;
  c.T = 7;
  c.F = 5;
  c.dt = true;
  LtcCase l;
  l.cfg.inputs = 4;
  l.cfg.hidden = 6;
  l.cfg.unfolds = 3;
  l.B = 64;
  l.T = 5;
  const std::vector<Tensor> cin = cfc_inputs(c, 51), lin = ltc_inputs(l, 52);
  for (int k : {0, 3}) {
    SCOPED_TRACE("checkpoint_every=" + std::to_string(k));
    auto run = [&](int threads, bool is_cfc) {
      ThreadBudget budget(threads);
      if (is_cfc)
        return values_and_grads(
            [&](const std::vector<Var>& v) { return cfc_all(c, v, RecurrenceOptions{k}); }, cin);
      return values_and_grads(
          [&](const std::vector<Var>& v) { return ltc_all(l, v, RecurrenceOptions{k}); }, lin);
    };
    for (bool is_cfc : {true, false}) {
      SCOPED_TRACE(is_cfc ? "cfc" : "ltc");
      const auto one = run(1, is_cfc), two = run(2, is_cfc), again = run(2, is_cfc);
      EXPECT_TRUE(bitwise_equal(one, two));
      EXPECT_TRUE(bitwise_equal(two, again));
    }
  }
}

// ---------------------------------------------------------------- wiring

TEST(LiquidWiring, NcpIsSeededLayeredAndReachesEveryNeuron) {
  const NcpWiring a = make_ncp_wiring(6, 8, 5, 3, 3, 2, 4, 2, 77);
  const NcpWiring b = make_ncp_wiring(6, 8, 5, 3, 3, 2, 4, 2, 77);
  const NcpWiring c = make_ncp_wiring(6, 8, 5, 3, 3, 2, 4, 2, 78);
  EXPECT_EQ(std::memcmp(a.adjacency.data(), b.adjacency.data(), sizeof(float) * 256), 0);
  EXPECT_NE(std::memcmp(a.adjacency.data(), c.adjacency.data(), sizeof(float) * 256), 0);
  const int H = a.units(), motor = 3, command = 5;
  ASSERT_EQ(H, 16);
  // Layering: sensory feeds only inter neurons; motor neurons only read command neurons.
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < motor + command; ++j) EXPECT_EQ(a.sensory.data()[i * H + j], 0.0f);
  for (int i = 0; i < H; ++i)
    for (int j = 0; j < motor; ++j)
      if (a.adjacency.data()[i * H + j] != 0.0f) {
        EXPECT_GE(i, motor);
        EXPECT_LT(i, motor + command);
      }
  // Every non-motor-free neuron has an input; each motor neuron has exactly motor_fanin inputs.
  for (int j = 0; j < H; ++j) {
    float in = 0.0f;
    for (int i = 0; i < H; ++i) in += a.adjacency.data()[i * H + j];
    for (int i = 0; i < 6; ++i) in += a.sensory.data()[i * H + j];
    EXPECT_GT(in, 0.0f) << "neuron " << j;
    if (j < motor) {
      EXPECT_EQ(in, 2.0f);
    }
  }
  // Each sensory input feeds at least sensory_fanout inter neurons (more when it was picked to
  // reach an inter neuron nobody fed).
  for (int i = 0; i < 6; ++i) {
    float out = 0.0f;
    for (int j = 0; j < H; ++j) out += a.sensory.data()[i * H + j];
    EXPECT_GE(out, 3.0f);
  }
  const NcpWiring sparse = make_ncp_wiring(6, 16, 3, 0.3f, 1);
  EXPECT_LT(sparse.synapses(), 16 * 16 + 6 * 16);
}

TEST(LiquidWiring, ModulesApplyTheMasks) {
  std::mt19937_64 rng(3);
  CfcConfig cfg;
  cfg.hidden = 10;
  cfg.backbone_layers = 0;
  Cfc wired(4, cfg, rng, 0.4f, 2, 7);
  ASSERT_FALSE(wired.rec_mask.empty());
  EXPECT_EQ(wired.rec_mask.shape(), (Shape{40, 10}));
  Ltc ltc_wired({4, 10, 2, false}, rng, 0.4f, 2, 7);
  ASSERT_FALSE(ltc_wired.mask.empty());
  // Masked-out synapses get zero gradient.
  Var x = constant(random_tensor({3, 5, 4}, rng));
  backward(sum(ltc_wired.forward(x)));
  const Tensor& g = ltc_wired.params[kLtcW].grad();
  for (std::int64_t i = 0; i < g.numel(); ++i)
    if (ltc_wired.mask.data()[i] == 0.0f) {
      EXPECT_EQ(g.data()[i], 0.0f);
    }
}

// ---------------------------------------------------------------- errors

TEST(Liquid, RejectsBadInputs) {
  expect_invalid([] { parse_cfc_mode("gated"); }, "mode must be default, no_gate or pure");
  CfcConfig cfg;
  cfg.hidden = 0;
  expect_invalid([&] { CfcCell c(cfg); }, "cfc: hidden must be > 0, got 0");
  cfg.hidden = 2;
  cfg.backbone_layers = 1;
  cfg.backbone_units = 0;
  expect_invalid([&] { CfcCell c(cfg); }, "backbone_units must be > 0");
  cfg.backbone_layers = -1;
  expect_invalid([&] { CfcCell c(cfg); }, "backbone_layers must be >= 0, got -1");
  cfg.backbone_layers = 0;
  expect_invalid([&] { CfcCell c(cfg, Tensor(Shape{8, 2}, 0.5f)); }, "must hold only 0 and 1");
  expect_invalid([&] { CfcCell c(cfg, Tensor(Shape{3, 2}, 1.0f)); }, "rec_mask must be [8, 2]");
  expect_invalid([] { LtcCell c({2, 3, 0, false}); }, "ltc: unfolds must be >= 1, got 0");
  expect_invalid([] { LtcCell c({0, 3, 1, false}); }, "ltc: inputs and hidden must be > 0");
  expect_invalid([] { make_ncp_wiring(3, 10, 2, 0.0f, 1); }, "density must be in (0, 1]");
  expect_invalid([] { make_ncp_wiring(3, 3, 2, 0.5f, 1); }, "units >= motor + 2");
  expect_invalid([] { make_ncp_wiring(3, 4, 4, 2, 5, 1, 0, 1, 1); }, "sensory_fanout <= inter");
  std::mt19937_64 rng(1);
  CfcConfig bb;
  bb.hidden = 4;
  bb.backbone_units = 4;
  expect_invalid([&] { Cfc c(3, bb, rng, 0.5f); }, "NCP wiring needs backbone_layers 0, got 1");
  Cfc m(3, bb, rng);
  Var x = constant(Tensor(Shape{2, 4, 3}, 0.1f));
  expect_invalid(
      [&] {
        m.forward(constant(Tensor(Shape{2, 4, 5}, 0.1f)));
      },
      "cfc: x must be [batch, time, 3], got [2, 4, 5]");
  expect_invalid(
      [&] {
        m.forward(x, constant(Tensor(Shape{2, 3}, 1.0f)), Var());
      },
      "cfc: dt must be [batch, time] = [2, 4], got [2, 3]");
  expect_invalid(
      [&] {
        m.forward(x, Var(), constant(Tensor(Shape{2, 3}, 0.0f)));
      },
      "cfc: h0 must be [batch, hidden] = [2, 4], got [2, 3]");
  std::vector<Var> few(m.params.begin(), m.params.begin() + 1);
  expect_invalid([&] { cfc(x, Var(), Var(), m.w_in, m.b_in, few, bb); },
                 "cfc: expected 3 parameter tensors, got 1");
  expect_invalid([&] { cfc(x, Var(), Var(), m.b_in, m.b_in, m.params, bb); }, "cfc: w_in must be");
  Ltc l({3, 4, 2, false}, rng);
  std::vector<Var> bad = l.params;
  bad[kLtcMu] = constant(Tensor(Shape{4, 3}, 0.0f));
  expect_invalid([&] { ltc(x, Var(), Var(), bad, l.cfg); }, "ltc: mu must be [4, 4], got [4, 3]");
}

}  // namespace
}  // namespace hwnas::nn
