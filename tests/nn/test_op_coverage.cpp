// Every registered op (nn/op_registry.hpp) has a gradient case here, and every case names a
// registered op.  Each case is checked by finite differences on all its inputs; ops registered
// with a surrogate backward are checked against their analytic formula instead.
// To add an op: one r.add(...) line in nn/op_registry.cpp and one row in kCases below.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <set>

#include "nn/kernels.hpp"
#include "nn/lif.hpp"
#include "nn/liquid_cells.hpp"
#include "nn/op_registry.hpp"
#include "nn/ops.hpp"
#include "nn/recurrent_cells.hpp"
#include "nn/ssm.hpp"
#include "tests/nn/gradcheck.hpp"

namespace hwnas::nn {
namespace {
using testing::expect_gradients_match;

using V = std::vector<Var>;
using OpFn = std::function<Var(const V&)>;

// How a case's inputs are drawn (all inputs of a case alike).
enum class Init {
  Uniform,       // uniform in [lo, hi]
  AwayFromZero,  // magnitude in [lo, hi], random sign (kinks or poles at 0)
  Distinct,      // distinct values 0.1 apart across all inputs (max/min/top-k/clamp kinks)
};

struct OpCase {
  std::string op;
  std::vector<Shape> shapes;
  OpFn f;
  Init init = Init::Uniform;
  float lo = -1.0f, hi = 1.0f;
};

Conv2dOptions conv_opt(int stride, int padding, int groups) {
  Conv2dOptions o;
  o.stride = stride;
  o.padding = padding;
  o.groups = groups;
  return o;
}

const Tensor kMask23 = Tensor::from({2, 3}, {1, 0, 1, 0, 0, 1});

// Small shapes; inputs kept away from kinks by their Init.  Several rows may name one op.
const std::vector<OpCase> kCases = {
    // ---- linear algebra
    {"matmul", {Shape{2, 3}, Shape{3, 4}}, [](const V& v) { return matmul(v[0], v[1]); }},
    {"matmul", {Shape{2, 2, 3}, Shape{3, 4}}, [](const V& v) { return matmul(v[0], v[1]); }},
    {"matmul", {Shape{2, 2, 3}, Shape{2, 3, 4}}, [](const V& v) { return matmul(v[0], v[1]); }},
    {"bmm", {Shape{3, 2, 3}, Shape{3, 3, 2}}, [](const V& v) { return bmm(v[0], v[1]); }},
    {"linear",
     {Shape{3, 4}, Shape{5, 4}, Shape{5}},
     [](const V& v) { return linear(v[0], v[1], v[2]); }},
    // ---- elementwise / broadcast
    {"add", {Shape{2, 3, 4}, Shape{3, 1}}, [](const V& v) { return add(v[0], v[1]); }},
    {"sub", {Shape{2, 3}, Shape{2, 1}}, [](const V& v) { return sub(v[0], v[1]); }},
    {"mul", {Shape{2, 3}, Shape{3}}, [](const V& v) { return mul(v[0], v[1]); }},
    {"div",
     {Shape{2, 3}, Shape{2, 3}},
     [](const V& v) { return div(v[0], v[1]); },
     Init::AwayFromZero,
     0.5f,
     1.5f},
    {"div",
     {Shape{2, 1, 3}, Shape{4, 1}},
     [](const V& v) { return div(v[0], v[1]); },
     Init::AwayFromZero,
     0.5f,
     1.5f},
    {"sin", {Shape{2, 3}}, [](const V& v) { return sin(v[0]); }, Init::Uniform, -3.0f, 3.0f},
    {"pow", {Shape{2, 3}}, [](const V& v) { return pow(v[0], 3.0f); }},
    {"pow", {Shape{2, 3}}, [](const V& v) { return pow(v[0], -1.5f); }, Init::Uniform, 0.5f, 2.0f},
    {"pow", {Shape{2, 3}}, [](const V& v) { return pow(v[0], 2.0f); }},
    {"pow",
     {Shape{2, 3}, Shape{3}},
     [](const V& v) { return pow(v[0], v[1]); },
     Init::Uniform,
     0.5f,
     2.0f},
    {"maximum",
     {Shape{2, 3}, Shape{2, 3}},
     [](const V& v) { return maximum(v[0], v[1]); },
     Init::Distinct},
    {"maximum",
     {Shape{2, 3}, Shape{3}},
     [](const V& v) { return maximum(v[0], v[1]); },
     Init::Distinct},
    {"minimum",
     {Shape{2, 3}, Shape{2, 1}},
     [](const V& v) { return minimum(v[0], v[1]); },
     Init::Distinct},
    {"where", {Shape{2, 3}, Shape{2, 3}}, [](const V& v) { return where(kMask23, v[0], v[1]); }},
    {"where", {Shape{3}, Shape{2, 1}}, [](const V& v) { return where(kMask23, v[0], v[1]); }},
    {"scale", {Shape{2, 3}}, [](const V& v) { return scale(v[0], -2.5f); }},
    {"add_scalar", {Shape{2, 3}}, [](const V& v) { return add_scalar(v[0], 3.0f); }},
    {"sqrt", {Shape{2, 3}}, [](const V& v) { return sqrt(v[0]); }, Init::Uniform, 0.5f, 2.0f},
    {"abs", {Shape{2, 3}}, [](const V& v) { return abs(v[0]); }, Init::AwayFromZero},
    {"clamp", {Shape{3, 4}}, [](const V& v) { return clamp(v[0], -0.55f, 0.45f); }, Init::Distinct},
    {"exp", {Shape{2, 3}}, [](const V& v) { return exp(v[0]); }},
    {"log", {Shape{2, 3}}, [](const V& v) { return log(v[0]); }, Init::Uniform, 0.5f, 3.0f},
    {"relu", {Shape{2, 3}}, [](const V& v) { return relu(v[0]); }, Init::AwayFromZero},
    {"gelu", {Shape{2, 3}}, [](const V& v) { return gelu(v[0]); }, Init::Uniform, -3.0f, 3.0f},
    {"silu", {Shape{2, 3}}, [](const V& v) { return silu(v[0]); }, Init::Uniform, -3.0f, 3.0f},
    {"tanh", {Shape{2, 3}}, [](const V& v) { return tanh(v[0]); }, Init::Uniform, -2.0f, 2.0f},
    {"sigmoid",
     {Shape{2, 3}},
     [](const V& v) { return sigmoid(v[0]); },
     Init::Uniform,
     -3.0f,
     3.0f},
    {"softplus",
     {Shape{2, 3}},
     [](const V& v) { return softplus(v[0], 2.0f, 20.0f); },
     Init::Uniform,
     -3.0f,
     3.0f},
    {"softplus",
     {Shape{2, 3}},
     [](const V& v) { return softplus(v[0], 1.0f, 1.0f); },
     Init::Uniform,
     1.5f,
     3.0f},
    // ---- reductions and scans
    {"sum", {Shape{3, 4}}, [](const V& v) { return sum(v[0]); }},
    {"mean", {Shape{3, 4}}, [](const V& v) { return mean(v[0]); }},
    {"sum_last", {Shape{2, 3, 4}}, [](const V& v) { return sum_last(v[0]); }},
    {"mean_dim", {Shape{2, 3, 4}}, [](const V& v) { return mean_dim(v[0], 1); }},
    {"cumsum", {Shape{2, 3, 4}}, [](const V& v) { return cumsum(v[0], 0); }},
    {"cumsum", {Shape{2, 3, 4}}, [](const V& v) { return cumsum(v[0], 1); }},
    {"cumsum", {Shape{2, 3, 4}}, [](const V& v) { return cumsum(v[0], -1); }},
    // ---- normalisation / probabilities / losses
    {"softmax",
     {Shape{3, 5}},
     [](const V& v) { return softmax(v[0]); },
     Init::Uniform,
     -2.0f,
     2.0f},
    {"log_softmax",
     {Shape{2, 2, 5}},
     [](const V& v) { return log_softmax(v[0]); },
     Init::Uniform,
     -2.0f,
     2.0f},
    {"cross_entropy",
     {Shape{4, 5}},
     [](const V& v) {
       return cross_entropy(v[0], {1, 0, 4, 2});
     }},
    {"mse", {Shape{3, 4}, Shape{3, 4}}, [](const V& v) { return mse(v[0], v[1]); }},
    {"layer_norm",
     {Shape{2, 3, 6}, Shape{6}, Shape{6}},
     [](const V& v) { return layer_norm(v[0], v[1], v[2]); }},
    {"batch_norm",
     {Shape{2, 3, 2, 2}, Shape{3}, Shape{3}},
     [](const V& v) {
       BatchNormState st;  // fresh per call: the finite differences must not see updated statistics
       st.running_mean = Tensor::zeros({3});
       st.running_var = Tensor(Shape{3}, 1.0f);
       return batch_norm(v[0], v[1], v[2], st, true);
     }},
    {"batch_norm_relu",
     {Shape{2, 3, 2, 2}, Shape{3}, Shape{3}},
     [](const V& v) {
       BatchNormState st;
       st.running_mean = Tensor::zeros({3});
       st.running_var = Tensor(Shape{3}, 1.0f);
       return batch_norm_relu(v[0], v[1], v[2], st, true);
     }},
    {"dropout",
     {Shape{4, 6}},
     [](const V& v) {
       std::mt19937_64 rng(11);  // the same mask for every evaluation
       return dropout(v[0], 0.4f, true, rng);
     }},
    // ---- convolution / pooling
    {"conv2d",
     {Shape{2, 2, 5, 5}, Shape{4, 2, 3, 3}, Shape{4}},
     [](const V& v) { return conv2d(v[0], v[1], v[2], conv_opt(2, 1, 1)); }},
    {"conv2d",
     {Shape{1, 4, 4, 4}, Shape{4, 2, 3, 3}, Shape{4}},
     [](const V& v) { return conv2d(v[0], v[1], v[2], conv_opt(1, 1, 2)); }},
    {"max_pool2d",
     {Shape{1, 2, 4, 4}},
     [](const V& v) { return max_pool2d(v[0], 2, 2); },
     Init::Distinct},
    {"avg_pool2d", {Shape{1, 2, 5, 5}}, [](const V& v) { return avg_pool2d(v[0], 3, 2, 1); }},
    {"global_avg_pool", {Shape{2, 3, 2, 2}}, [](const V& v) { return global_avg_pool(v[0]); }},
    // ---- shape / indexing
    {"reshape",
     {Shape{2, 6}},
     [](const V& v) {
       return reshape(v[0], {4, 3});
     }},
    {"flatten", {Shape{2, 3, 2}}, [](const V& v) { return flatten(v[0]); }},
    {"transpose", {Shape{2, 3, 4}}, [](const V& v) { return transpose(v[0], 0, 2); }},
    {"concat",
     {Shape{2, 3, 2}, Shape{2, 1, 2}},
     [](const V& v) {
       return concat({v[0], v[1], v[0]}, 1);
     }},
    {"split",
     {Shape{2, 5}},
     [](const V& v) {
       auto p = split(v[0], {2, 3}, 1);
       return concat({mul(p[0], p[0]), p[1]}, 1);
     }},
    {"slice", {Shape{3, 7}}, [](const V& v) { return slice(v[0], 1, 1, 7, 2); }},
    {"slice", {Shape{4, 2, 3}}, [](const V& v) { return slice(v[0], 0, -3, -1); }},
    {"embedding",
     {Shape{4, 3}},
     [](const V& v) { return embedding(v[0], {3, 1, 3, 0}, Shape{2, 2}); }},
    {"gather",
     {Shape{3, 4}},
     [](const V& v) { return gather(v[0], 1, IndexTensor({3, 2}, {0, 3, 1, 1, 2, 0})); }},
    {"scatter_add",
     {Shape{3, 4}, Shape{2, 4}},
     [](const V&
            v) { return scatter_add(v[0], 0, IndexTensor({2, 3}, {2, 0, 2, 2, 1, 2}), v[1]); }},
    {"index_select", {Shape{3, 4, 2}}, [](const V& v) { return index_select(v[0], 1, {3, 0, 3}); }},
    {"topk", {Shape{2, 3, 5}}, [](const V& v) { return topk(v[0], 3).values; }, Init::Distinct},
    {"topk", {Shape{4, 5}}, [](const V& v) { return topk(v[0], 2, false).values; }, Init::Distinct},
    // ---- spectral
    // ---- state-space models: positive steps and negative A as the blocks feed them
    {"selective_scan",
     {Shape{2, 5, 3}, Shape{2, 5, 3}, Shape{3, 4}, Shape{2, 5, 4}, Shape{2, 5, 4}},
     [](const V& v) {
       return selective_scan(v[0], softplus(v[1]), scale(exp(v[2]), -1.0f), v[3], v[4]);
     }},
    {"s4d_kernel",
     {Shape{2}, Shape{2, 3}, Shape{2, 3}, Shape{2, 3, 2}},
     [](const V& v) { return s4d_kernel(v[0], v[1], v[2], v[3], 6); }},
    {"rfft", {Shape{2, 8}}, [](const V& v) { return rfft(v[0], 1); }},
    {"rfft", {Shape{7, 2}}, [](const V& v) { return rfft(v[0], 0, 9); }},
    {"irfft", {Shape{2, 5, 2}}, [](const V& v) { return irfft(v[0], 1); }},
    {"irfft", {Shape{4, 3, 2}}, [](const V& v) { return irfft(v[0], 0, 7); }},
    {"causal_fft_conv", {Shape{2, 7, 3}, Shape{5, 3}},
     [](const V& v) { return causal_fft_conv(v[0], v[1]); }},
    {"causal_direct_conv", {Shape{2, 7, 3}, Shape{5, 3}},
     [](const V& v) { return causal_direct_conv(v[0], v[1]); }},
    {"causal_direct_conv", {Shape{3, 70, 2}, Shape{70, 2}},  // two column blocks, full band
     [](const V& v) { return causal_direct_conv(v[0], v[1]); }},
    {"causal_long_conv", {Shape{2, 7, 3}, Shape{7, 3}},
     [](const V& v) { return causal_long_conv(v[0], v[1]); }},
    {"causal_depthwise_conv1d", {Shape{2, 5, 3}, Shape{4, 3}, Shape{3}},
     [](const V& v) { return causal_depthwise_conv1d(v[0], v[1], v[2]); }},
    {"bspline_basis",
     {Shape{3, 4}},
     [](const V& v) { return bspline_basis(v[0], 5, 3, -1, 1); },
     Init::Uniform,
     -1.3f,
     1.3f},
    // ---- attention
    {"multi_head_attention",
     {Shape{2, 3, 4}, Shape{2, 3, 4}, Shape{2, 3, 4}},
     [](const V& v) { return multi_head_attention(v[0], v[1], v[2], 2, true); }},
    {"rope", {Shape{2, 5, 8}}, [](const V& v) { return rope(v[0], 2); }},
    {"rope", {Shape{7, 4}}, [](const V& v) { return rope(v[0], 1, 3.0); }},
    {"sliding_window_attention",
     {Shape{1, 5, 4}, Shape{1, 5, 4}, Shape{1, 5, 4}},
     [](const V& v) { return sliding_window_attention(v[0], v[1], v[2], 2, 2, false); }},
    {"fused_qkv_attention",
     {Shape{2, 3, 12}},
     [](const V& v) { return detail::fused_qkv_attention(v[0], 2, false); }},
    {"flash_attention",
     {Shape{2, 5, 4}, Shape{2, 5, 4}, Shape{2, 5, 4}},
     [](const V& v) { return flash_attention(v[0], v[1], v[2], {2, true, 0, 2, 3}); }},
    {"flash_attention",
     {Shape{1, 7, 4}, Shape{1, 7, 4}, Shape{1, 7, 4}},
     [](const V& v) { return flash_attention(v[0], v[1], v[2], {1, false, 2, 3, 2}); }},
    // ---- fused time loops (x, h0, c0, W_ih, W_hh, b_ih, b_hh); checkpointed replay as well
    {"time_loop",
     {Shape{2, 3, 3}, Shape{2, 4}, Shape{2, 4}, Shape{16, 3}, Shape{16, 4}, Shape{16}, Shape{16}},
     [](const V& v) { return lstm(v[0], v[1], v[2], v[3], v[4], v[5], v[6]).output; }},
    {"time_loop",
     {Shape{2, 5, 3}, Shape{2, 4}, Shape{4, 3}, Shape{4, 4}, Shape{4}, Shape{4}},
     [](const V& v) {
       RecurrenceOptions o;
       o.checkpoint_every = 2;
       return rnn_tanh(v[0], v[1], v[2], v[3], v[4], v[5], o).output;
     }},
    // liquid cells (nn/liquid_cells.hpp): CfC (x, h0, w_in, b_in, w_rec, w_head, b_head) and
    // LTC with 2 unfolds and elapsed times (x, dt, h0, 13 parameters)
    {"time_loop",
     {Shape{2, 3, 3}, Shape{2, 2}, Shape{4, 3}, Shape{4}, Shape{4, 2}, Shape{8, 4}, Shape{8}},
     [](const V& v) {
       CfcConfig c;
       c.hidden = 2;
       c.backbone_units = 4;
       return cfc(v[0], Var(), v[1], v[2], v[3], {v[4], v[5], v[6]}, c).outputs;
     }},
    {"time_loop",
     {Shape{2, 3, 2}, Shape{2, 3}, Shape{2, 2}, Shape{2}, Shape{2}, Shape{2}, Shape{2, 2},
      Shape{2, 2}, Shape{2, 2}, Shape{2, 2}, Shape{2, 2}, Shape{2, 2}, Shape{2, 2}, Shape{2, 2},
      Shape{2}, Shape{2}},
     [](const V& v) {
       const Var dt = add_scalar(mul(v[1], v[1]), 0.5f);  // elapsed times > 0
       return ltc(v[0], dt, v[2], std::vector<Var>(v.begin() + 3, v.end()), LtcConfig{2, 2, 2})
           .outputs;
     }},
    {"time_loop_final_state",
     {Shape{2, 3, 3}, Shape{2, 4}, Shape{2, 4}, Shape{16, 3}, Shape{16, 4}, Shape{16}, Shape{16}},
     [](const V& v) { return lstm(v[0], v[1], v[2], v[3], v[4], v[5], v[6]).c_n; }},
};

// Ops whose backward is a surrogate by design: forward checked exactly, backward against the
// analytic derivative it is documented to apply.
struct SurrogateCase {
  std::string op;
  std::function<Var(const Var&)> f;
  std::function<float(float)> forward;   // exact forward value
  std::function<float(float)> backward;  // d out / d x as the surrogate defines it
};

const std::vector<SurrogateCase> kSurrogateCases = {
    {"step", [](const Var& x) { return step(x, Surrogate::fast_sigmoid(25.0f)); },
     [](float x) { return x >= 0.0f ? 1.0f : 0.0f; },
     [](float x) { return 1.0f / std::pow(25.0f * std::fabs(x) + 1.0f, 2.0f); }},
    {"step", [](const Var& x) { return step(x, Surrogate::arctan(2.0f)); },
     [](float x) { return x >= 0.0f ? 1.0f : 0.0f; },
     [](float x) {
       return 1.0f / (1.0f + std::pow(3.14159265f * x, 2.0f));
     }},  // alpha = 2: 1/(1+(pi x)^2)
    {"step", [](const Var& x) { return step(x, Surrogate::straight_through(1.0f)); },
     [](float x) { return x >= 0.0f ? 1.0f : 0.0f; },
     [](float x) { return std::fabs(x) <= 0.5f ? 1.0f : 0.0f; }},
    // One LIF step (T = 1): a step at the threshold; multi-step BPTT is in tests/nn/test_lif.cpp.
    {"lif",
     [](const Var& x) {
       const Var y = lif(reshape(x, Shape{x.dim(0), 1, x.dim(1)}), constant(Tensor(Shape{1}, 0.9f)),
                         constant(Tensor(Shape{1}, 0.3f)), {});
       return reshape(y, x.shape());
     },
     [](float x) { return x >= 0.3f ? 1.0f : 0.0f; },
     [](float x) { return 1.0f / std::pow(25.0f * std::fabs(x - 0.3f) + 1.0f, 2.0f); }},
};

std::vector<Tensor> make_inputs(const OpCase& c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  if (c.init == Init::Distinct) return testing::spaced_distinct(c.shapes, rng);
  std::vector<Tensor> in;
  for (const Shape& s : c.shapes)
    in.push_back(c.init == Init::AwayFromZero ? testing::random_away_from_zero(s, rng, c.lo, c.hi)
                                              : testing::random_tensor(s, rng, c.lo, c.hi));
  return in;
}

class OpGradient : public ::testing::TestWithParam<std::size_t> {};

TEST_P(OpGradient, MatchesFiniteDifferences) {
  const OpCase& c = kCases[GetParam()];
  SCOPED_TRACE("op " + c.op);
  expect_gradients_match(c.f, make_inputs(c, 100 + GetParam()), {.max_elements_per_input = 100});
}

INSTANTIATE_TEST_SUITE_P(AllOps, OpGradient, ::testing::Range<std::size_t>(0, kCases.size()),
                         [](const ::testing::TestParamInfo<std::size_t>& info) {
                           return kCases[info.param].op + "_" + std::to_string(info.param);
                         });

// Mismatches between a registry and the case tables, one message per problem, each naming the op.
std::vector<std::string> coverage_problems(const OpRegistry& reg) {
  std::vector<std::string> problems;
  std::set<std::string> exact, surrogate;
  for (const auto& c : kCases) exact.insert(c.op);
  for (const auto& c : kSurrogateCases) surrogate.insert(c.op);
  for (const auto& [name, info] : reg.ops()) {
    if (info.backward == OpBackward::Exact && !exact.count(name))
      problems.push_back("registered op '" + name + "' has no gradient case in kCases");
    if (info.backward == OpBackward::Surrogate && !surrogate.count(name))
      problems.push_back("surrogate op '" + name + "' has no case in kSurrogateCases");
  }
  for (const auto& name : exact) {
    const OpInfo* info = reg.find(name);
    if (!info)
      problems.push_back("case names op '" + name + "', which is not registered");
    else if (info->backward != OpBackward::Exact)
      problems.push_back("op '" + name + "' has a surrogate backward but a finite-difference case");
  }
  for (const auto& name : surrogate) {
    const OpInfo* info = reg.find(name);
    if (!info)
      problems.push_back("surrogate case names op '" + name + "', which is not registered");
    else if (info->backward != OpBackward::Surrogate)
      problems.push_back("op '" + name + "' is registered as exact but has a surrogate case");
  }
  return problems;
}

TEST(OpCoverage, EveryRegisteredOpHasACaseAndEveryCaseARegisteredOp) {
  for (const std::string& p : coverage_problems(builtin_ops())) ADD_FAILURE() << p;
}

TEST(OpCoverage, CheckCatchesMissingCasesAndUnregisteredOps) {
  // A registry with one op too many and one too few: both gaps are reported by name.
  OpRegistry r;
  for (const auto& [name, info] : builtin_ops().ops())
    if (name != "cumsum") r.add(info);
  r.add({"phantom_op", "an op nobody wrote a case for"});
  const auto problems = coverage_problems(r);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0], "registered op 'phantom_op' has no gradient case in kCases");
  EXPECT_EQ(problems[1], "case names op 'cumsum', which is not registered");
}

TEST(OpCoverage, RegistryRejectsDuplicatesAndEmptyNames) {
  OpRegistry r;
  register_builtin_ops(r);
  EXPECT_THROW(r.add({"matmul", "again"}), std::logic_error);
  EXPECT_THROW(r.add({"", "nameless"}), std::logic_error);
  EXPECT_EQ(r.size(), builtin_ops().size());
  EXPECT_FALSE(builtin_ops().find("no_such_op"));
  for (const auto& [name, info] : r.ops()) EXPECT_FALSE(info.description.empty()) << name;
}

TEST(OpCoverage, SurrogateOpsMatchTheirFormula) {
  for (const auto& c : kSurrogateCases) {
    SCOPED_TRACE("op " + c.op);
    std::mt19937_64 rng(5);
    Tensor xt = testing::random_tensor(Shape{4, 25}, rng, -1.0f, 1.0f);
    xt.data()[0] = 0.0f;  // the step's own edge: forward is 1 there
    xt.data()[1] = -0.0f;
    Tensor proj = testing::random_tensor(xt.shape(), rng, 0.5f, 1.5f);
    Var x = parameter(xt);
    Var y = c.f(x);
    backward(sum(mul(y, constant(proj))));
    for (std::int64_t i = 0; i < xt.numel(); ++i) {
      const float v = xt.data()[i];
      ASSERT_EQ(y.value().data()[i], c.forward(v)) << "forward at x = " << v;
      ASSERT_NEAR(x.grad().data()[i], proj.data()[i] * c.backward(v),
                  1e-5f * std::max(1.0f, std::fabs(c.backward(v))))
          << "backward at x = " << v;
    }
  }
}

}  // namespace
}  // namespace hwnas::nn
