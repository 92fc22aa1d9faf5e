// Training-step throughput of hwnas against PyTorch (bench/torch_reference.py) on three models:
//   mlp  784-256-128-10 on [B,784];
//   cnn  conv 1->16 3x3 +BN+ReLU+maxpool2, conv 16->32 3x3 +BN+ReLU+maxpool2, dense 1568->10;
//   attn 2-layer pre-norm encoder on [B,64,16]: in-proj 16->64, (LN, MHSA 4 heads, +res;
//        LN, FFN 64-128-64 GELU, +res) x2, final LN, mean over tokens, linear 64->2.
// One step = forward, cross-entropy, backward, AdamW update, on synthetic data of the right
// shape, batch 64, float32.  Run through bench/run_vs_pytorch.sh, which prints the comparison.
//
//   bench_train_vs_torch [--model mlp|cnn|attn|all] [--steps N] [--warmup N] [--batch B]
//                        [--threads T] [--profile]
// Prints one "RESULT ..." line per model.  --profile adds a per-segment forward/backward time
// table measured with probe nodes (identity ops that timestamp the tape as it runs).
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/models.hpp"
#include "nn/layers.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "nn/parallel.hpp"

using namespace hwnas;
using namespace hwnas::bench;  // Profiler, probe, Model, Mlp, Cnn

namespace {

struct EncoderLayer {
  nn::LayerNorm ln1, ln2;
  nn::MultiHeadSelfAttention attn;
  nn::Linear ff1, ff2;
  EncoderLayer(int d, int heads, int ffn, std::mt19937_64& rng)
      : ln1(d),
        ln2(d),
        attn(d, heads, false, 0, rng),
        ff1(d, ffn, true, rng),
        ff2(ffn, d, true, rng) {}
};

struct Encoder : Model {
  nn::Linear in_proj;
  std::vector<std::unique_ptr<EncoderLayer>> layers;
  nn::LayerNorm ln_f;
  nn::Linear head;
  Encoder(int d_in, int d, int heads, int ffn, int n_layers, int classes, std::mt19937_64& rng)
      : in_proj(d_in, d, true, rng), ln_f(d), head(d, classes, true, rng) {
    for (int i = 0; i < n_layers; ++i)
      layers.push_back(std::make_unique<EncoderLayer>(d, heads, ffn, rng));
  }
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    nn::Var x = P(in_proj.forward(P(in.at(0), "input")), "in_proj");
    for (auto& l : layers) {
      nn::Var h = P(l->ln1.forward(x), "ln1");
      x = P(nn::add(x, P(l->attn.forward(h), "mhsa")), "residual1");
      h = P(l->ln2.forward(x), "ln2");
      h = P(nn::gelu(l->ff1.forward(h)), "ffn1+gelu");
      x = P(nn::add(x, P(l->ff2.forward(h), "ffn2")), "residual2");
    }
    x = P(l_f(x), "ln_final");
    return P(head.forward(P(nn::mean_dim(x, 1), "meanpool")), "head");
  }
  nn::Var l_f(const nn::Var& x) { return ln_f.forward(x); }
  void collect_parameters(std::vector<nn::Var>& out) override {
    in_proj.collect_parameters(out);
    for (auto& l : layers) {
      l->ln1.collect_parameters(out);
      l->attn.collect_parameters(out);
      l->ln2.collect_parameters(out);
      l->ff1.collect_parameters(out);
      l->ff2.collect_parameters(out);
    }
    ln_f.collect_parameters(out);
    head.collect_parameters(out);
  }
  std::string name() const override { return "attn"; }
};

// Forward FLOPs per sample, counting 2 per multiply-accumulate of the matmuls, convolutions and
// attention products (norms, activations and pooling are ignored: < 2% here).  Training is
// counted as 3x forward (backward computes two products per forward product).
double forward_flops(const std::string& model) {
  if (model == "mlp") return 2.0 * (784 * 256 + 256 * 128 + 128 * 10);
  if (model == "cnn") return 2.0 * (28 * 28 * 16 * 9 * 1 + 14 * 14 * 32 * 16 * 9 + 32 * 7 * 7 * 10);
  const double L = 64, d = 64, ffn = 128, din = 16;
  const double layer = L * d * 3 * d + 2 * L * L * d + L * d * d + 2 * L * d * ffn;
  return 2.0 * (L * din * d + 2 * layer + d * 2);
}

struct Args {
  std::string model = "all";
  int steps = 50, warmup = 5, batch = 64, threads = 2;
  bool profile = false;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--model")
      a.model = val();
    else if (k == "--steps")
      a.steps = std::stoi(val());
    else if (k == "--warmup")
      a.warmup = std::stoi(val());
    else if (k == "--batch")
      a.batch = std::stoi(val());
    else if (k == "--threads")
      a.threads = std::stoi(val());
    else if (k == "--profile")
      a.profile = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--model mlp|cnn|attn|all] [--steps N] [--warmup N] [--batch B] "
                   "[--threads T] [--profile]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return a;
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

void run_model(const std::string& which, const Args& a) {
  std::mt19937_64 rng(1);
  std::unique_ptr<Model> model;
  nn::Shape in_shape;
  int classes = 10;
  if (which == "mlp") {
    model = std::make_unique<Mlp>(rng);
    in_shape = nn::Shape{a.batch, 784};
  } else if (which == "cnn") {
    model = std::make_unique<Cnn>(rng);
    in_shape = nn::Shape{a.batch, 1, 28, 28};
  } else if (which == "attn") {
    model = std::make_unique<Encoder>(16, 64, 4, 128, 2, 2, rng);
    in_shape = nn::Shape{a.batch, 64, 16};
    classes = 2;
  } else {
    std::fprintf(stderr, "unknown model '%s'\n", which.c_str());
    std::exit(2);
  }
  Profiler prof;
  std::vector<nn::Var> params;
  model->collect_parameters(params);
  std::int64_t n_params = 0;
  for (auto& p : params) n_params += p.value().numel();

  std::normal_distribution<float> nd(0.0f, 1.0f);
  nn::Tensor x(in_shape);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = nd(rng);
  std::vector<int> y(static_cast<std::size_t>(a.batch));
  for (auto& v : y) v = static_cast<int>(rng() % static_cast<std::uint64_t>(classes));

  nn::AdamWOptions ao;
  ao.lr = 1e-3f;
  ao.weight_decay = 0.01f;
  nn::AdamW opt(params, ao);
  nn::ForwardContext ctx;
  ctx.training = true;
  ctx.rng = &rng;
  double last_loss = 0;
  auto step = [&] {
    opt.zero_grad();
    nn::Var loss = nn::cross_entropy(model->forward({nn::constant(x)}, ctx), y);
    last_loss = loss.value().item();
    nn::backward(loss);
    opt.step();
  };
  nn::run_isolated([&] {
    for (int i = 0; i < a.warmup; ++i) step();
    auto t0 = Clock::now();
    for (int i = 0; i < a.steps; ++i) step();
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double sps = a.steps * a.batch / secs;
    const double gflops = sps * 3.0 * forward_flops(which) / 1e9;
    std::printf(
        "RESULT impl=hwnas model=%s params=%lld batch=%d threads=%d steps=%d seconds=%.4f "
        "samples_per_s=%.1f fwd_mflop_per_sample=%.4f gflops=%.2f rss_mb=%.1f loss=%.4f\n",
        which.c_str(), static_cast<long long>(n_params), a.batch, a.threads, a.steps, secs, sps,
        forward_flops(which) / 1e6, gflops, peak_rss_mb(), last_loss);
    std::fflush(stdout);

    if (a.profile) {
      model->prof = &prof;
      prof.on = true;
      const int n = std::max(5, a.steps / 2);
      double opt_ms = 0, total_ms = 0;
      for (int i = 0; i < n; ++i) {
        auto s0 = Clock::now();
        opt.zero_grad();
        prof.last_fwd = Clock::now();
        nn::Var logits = model->forward({nn::constant(x)}, ctx);
        nn::Var loss = nn::cross_entropy(logits, y);
        prof.record_fwd("loss");
        prof.last_bwd = Clock::now();
        prof.next_bwd_segment = "loss";
        nn::backward(loss);
        prof.record_bwd("");  // the first segment's backward ends with backward() itself
        auto s1 = Clock::now();
        opt.step();
        auto s2 = Clock::now();
        opt_ms += std::chrono::duration<double, std::milli>(s2 - s1).count();
        total_ms += std::chrono::duration<double, std::milli>(s2 - s0).count();
      }
      std::printf("PROFILE model=%s (ms per step, %d steps)\n", which.c_str(), n);
      std::printf("  %-14s %9s %9s\n", "segment", "forward", "backward");
      const auto& ord = prof.order;
      for (std::size_t i = 0; i < ord.size(); ++i) {
        double bwd = prof.bwd_ms.count(ord[i]) ? prof.bwd_ms[ord[i]] / n : 0;
        std::printf("  %-14s %9.3f %9.3f\n", ord[i].c_str(), prof.fwd_ms[ord[i]] / n, bwd);
      }
      std::printf("  %-14s %9.3f\n  %-14s %9.3f\n", "optimizer", opt_ms / n, "total step",
                  total_ms / n);
      model->prof = nullptr;
      prof.on = false;
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  nn::ThreadBudget budget(a.threads);
  std::vector<std::string> models = a.model == "all"
                                        ? std::vector<std::string>{"mlp", "cnn", "attn"}
                                        : std::vector<std::string>{a.model};
  for (const auto& m : models) run_model(m, a);
  return 0;
}
