// The MLP and small CNN shared by the benchmarks (bench_train_vs_torch, bench_fmnist_accuracy),
// with an optional per-segment profiler.
//   mlp  784-256-128-10;
//   cnn  conv 1->w1 3x3 +BN+ReLU+maxpool2, conv w1->w2 3x3 +BN+ReLU+maxpool2, dense w2*7*7->10
//        (w1 = 16, w2 = 32 by default: 20,538 parameters).
#pragma once

#include <chrono>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "nn/layers.hpp"
#include "nn/ops.hpp"

namespace hwnas::bench {

using Clock = std::chrono::steady_clock;

// ---- optional per-segment profiler ----
// probe(x, "name") is an identity op that ends segment "name" (the ops since the previous
// probe).  Its forward charges the time since the previous probe to "name".  Backward replays
// nodes in reverse creation order, so when a probe's backward runs, the ops of the segment that
// follows it have just finished their backward: the time since the previous backward probe is
// charged to that following segment.
struct Profiler {
  bool on = false;
  Clock::time_point last_fwd, last_bwd;
  std::string next_bwd_segment;
  std::map<std::string, double> fwd_ms, bwd_ms;
  std::vector<std::string> order;
  void record_fwd(const std::string& name) {
    auto now = Clock::now();
    if (!fwd_ms.count(name)) order.push_back(name);
    fwd_ms[name] += std::chrono::duration<double, std::milli>(now - last_fwd).count();
    last_fwd = now;
  }
  void record_bwd(const std::string& probe_name) {
    auto now = Clock::now();
    bwd_ms[next_bwd_segment] += std::chrono::duration<double, std::milli>(now - last_bwd).count();
    last_bwd = now;
    next_bwd_segment = probe_name;
  }
};

inline nn::Var probe(Profiler& p, const nn::Var& x, const std::string& name) {
  if (!p.on) return x;
  p.record_fwd(name);
  return nn::make_result(x.value(), {x}, [&p, name](nn::Node& self) {
    p.record_bwd(name);
    nn::accumulate_grad(*self.parents[0], self.grad);
  });
}

struct Model : nn::Module {
  Profiler* prof = nullptr;
  nn::Var P(const nn::Var& x, const char* name) { return prof ? probe(*prof, x, name) : x; }
};

struct Mlp : Model {
  nn::Linear l1, l2, l3;
  explicit Mlp(std::mt19937_64& rng)
      : l1(784, 256, true, rng), l2(256, 128, true, rng), l3(128, 10, true, rng) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    nn::Var x = P(in.at(0), "input");
    x = P(nn::relu(l1.forward(x)), "linear1+relu");
    x = P(nn::relu(l2.forward(x)), "linear2+relu");
    return P(l3.forward(x), "linear3");
  }
  void collect_parameters(std::vector<nn::Var>& out) override {
    l1.collect_parameters(out);
    l2.collect_parameters(out);
    l3.collect_parameters(out);
  }
  std::string name() const override { return "mlp"; }
};

struct Cnn : Model {
  nn::Conv2d c1, c2;
  nn::BatchNorm b1, b2;
  nn::Linear fc;
  explicit Cnn(std::mt19937_64& rng, int w1 = 16, int w2 = 32)
      : c1(1, w1, 3, nn::Conv2dOptions{1, 1, 1}, false, rng),
        c2(w1, w2, 3, nn::Conv2dOptions{1, 1, 1}, false, rng),
        b1(w1),
        b2(w2),
        fc(w2 * 7 * 7, 10, true, rng) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    nn::Var x = P(in.at(0), "input");
    x = P(c1.forward(x), "conv1");
    x = P(nn::relu(b1.forward(x, ctx.training)), "bn1+relu");
    x = P(nn::max_pool2d(x, 2, 2), "pool1");
    x = P(c2.forward(x), "conv2");
    x = P(nn::relu(b2.forward(x, ctx.training)), "bn2+relu");
    x = P(nn::max_pool2d(x, 2, 2), "pool2");
    return P(fc.forward(nn::flatten(x)), "flatten+fc");
  }
  void collect_parameters(std::vector<nn::Var>& out) override {
    c1.collect_parameters(out);
    b1.collect_parameters(out);
    c2.collect_parameters(out);
    b2.collect_parameters(out);
    fc.collect_parameters(out);
  }
  std::string name() const override { return "cnn"; }
};

}  // namespace hwnas::bench
