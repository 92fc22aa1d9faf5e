// SPOS: weight slicing (a subnet computes what the same architecture built alone with the
// copied weights computes), uniform single-path sampling, batch-norm recalibration, the spos
// strategy's determinism, save/restore and inherited metrics, and the ranking correlation
// between inherited-weight and stand-alone accuracy.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <set>

#include "evaluators/trainer.hpp"
#include "nn/ops.hpp"
#include "oneshot/environment.hpp"
#include "oneshot/spos_search.hpp"
#include "strategies/oneshot.hpp"
#include "strategies/registry.hpp"
#include "tests/oneshot/tasks.hpp"

using namespace hwnas;
using namespace hwnas::oneshot;
using hwnas::oneshot::test::pattern_task;
using nlohmann::json;

namespace {

// Elastic depth, width multiplier, channels, kernel size and block kind on 8x8 images.
std::unique_ptr<spaces::Space> small_macro() {
  return spaces::make_space(
      {{"type", "macro"},
       {"input", {{"kind", "image"}, {"shape", {3, 8, 8}}}},
       {"outputs", 4},
       {"width_multipliers", {0.5, 1.0}},
       {"stages",
        {{{"blocks", {"conv"}},
          {"depth", {1, 2}},
          {"params", {{"channels", {4, 8}}, {"kernel", {3, 5}}, {"stride", 1}}}},
         {{"blocks", {"conv", "dwconv"}},
          {"depth", {0, 2}},
          {"skip", "optional"},
          {"params", {{"channels", {8, 16}}, {"kernel", {3, 5}}, {"stride", 2}}}}}}});
}

SposOptions small_options() {
  SposOptions o;
  o.epochs = 3;
  o.batch_size = 32;
  o.sgd.lr = 0.05f;
  o.bn_batches = 4;
  o.eval_samples = 0;
  o.population = 6;
  o.generations = 2;
  o.candidates = 3;
  o.seed = 5;
  return o;
}

// The slice of `bank` a subnet tensor of shape `sub` reads, written out by hand: the first
// entries of every dimension, and the centre of dims 2, 3 of 4-D convolution weights.
nn::Tensor hand_slice(const nn::Tensor& bank, const nn::Shape& sub) {
  nn::Tensor out(sub);
  const auto B = bank.shape().to_vector();
  const auto S = sub.to_vector();
  if (S.size() == 4) {
    const int o2 = (B[2] - S[2]) / 2, o3 = (B[3] - S[3]) / 2;
    for (int a = 0; a < S[0]; ++a)
      for (int b = 0; b < S[1]; ++b)
        for (int c = 0; c < S[2]; ++c)
          for (int d = 0; d < S[3]; ++d)
            out.data()[((a * S[1] + b) * S[2] + c) * S[3] + d] =
                bank.data()[((a * B[1] + b) * B[2] + c + o2) * B[3] + d + o3];
  } else if (S.size() == 2) {
    for (int a = 0; a < S[0]; ++a)
      for (int b = 0; b < S[1]; ++b) out.data()[a * S[1] + b] = bank.data()[a * B[1] + b];
  } else {
    EXPECT_EQ(S.size(), 1u);
    for (int a = 0; a < S[0]; ++a) out.data()[a] = bank.data()[a];
  }
  return out;
}

std::string bank_name(const spaces::Genome& g, const std::string& tensor) {
  const auto keys = supernet_node_keys(g);
  const auto dot = tensor.find('.');
  return keys.at(std::stoul(tensor.substr(1, dot - 1))) + tensor.substr(dot + 1);
}

TEST(SposSupernet, SlicedSubnetEqualsTheStandAloneArchitectureWithCopiedWeights) {
  auto space = small_macro();
  const auto data = pattern_task(128, 32, 1);
  SposSupernet net(*space, 3);
  SposOptions o = small_options();
  o.epochs = 2;
  (void)train_supernet(net, data.train, o);
  std::mt19937_64 rng(11);
  eval::Batch x;
  x.x = nn::Tensor(nn::Shape{8, 3, 8, 8}, 0.0f);
  std::copy(data.val.x.data(), data.val.x.data() + x.x.numel(), x.x.data());
  int kernels_sliced = 0;
  for (int i = 0; i < 12; ++i) {
    const spaces::Genome g = net.sample(rng);
    auto sub = net.subnet(g);
    // The same architecture built alone (other initial weights), then given the hand-cut slices.
    auto alone = spaces::build_model(g, 999 + i);
    for (auto& p : alone->named_parameters()) {
      const nn::Tensor& b = net.bank(bank_name(g, p.name));
      if (p.var.value().shape().rank() == 4 && p.var.value().dim(2) < b.dim(2)) ++kernels_sliced;
      const nn::Tensor s = hand_slice(b, p.var.value().shape());
      std::copy(s.data(), s.data() + s.numel(), p.var.value().data());
    }
    for (auto& buf : alone->named_buffers()) {
      const nn::Tensor s = hand_slice(net.bank(bank_name(g, buf.name)), buf.tensor->shape());
      std::copy(s.data(), s.data() + s.numel(), buf.tensor->data());
    }
    nn::NoGradGuard ng;
    nn::ForwardContext ctx;
    ctx.training = false;
    const nn::Tensor a = sub->forward(nn::constant(x.x), ctx).value();
    const nn::Tensor b = alone->forward(nn::constant(x.x), ctx).value();
    ASSERT_EQ(a.shape(), b.shape());
    for (std::int64_t k = 0; k < a.numel(); ++k)
      ASSERT_EQ(a.data()[k], b.data()[k]) << space->describe(g) << " output " << k;
  }
  EXPECT_GT(kernels_sliced, 0);  // some subnet read the centre of a larger kernel
}

TEST(SposSupernet, BlockKindsHaveTheirOwnBanksAndLayersShareAcrossWidths) {
  auto space = small_macro();
  const auto data = pattern_task(256, 32, 2);
  SposSupernet net(*space, 3);
  SposOptions o = small_options();
  o.epochs = 2;
  (void)train_supernet(net, data.train, o);
  const auto names = net.bank_names();
  auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  EXPECT_TRUE(has("s1.l0.conv.conv.weight"));
  EXPECT_TRUE(has("s1.l0.dwconv.conv.weight"));
  EXPECT_TRUE(has("tail.head.linear.weight") || has("tail.head.weight") ||
              std::any_of(names.begin(), names.end(),
                          [](const std::string& n) { return n.rfind("tail.head.", 0) == 0; }));
  // Stage 0's first conv holds the largest width (8 channels) and kernel (5) seen.
  const nn::Tensor& w = net.bank("s0.l0.conv.conv.weight");
  EXPECT_EQ(w.dim(0), 8);
  EXPECT_EQ(w.dim(2), 5);
}

// Pearson's chi-square of observed counts against a uniform distribution.
double chi_square(const std::vector<int>& counts) {
  double n = 0;
  for (int c : counts) n += c;
  const double e = n / static_cast<double>(counts.size());
  double x = 0;
  for (int c : counts) x += (c - e) * (c - e) / e;
  return x;
}

TEST(SposSampling, IsUniformOverEveryChoice) {
  auto space = small_macro();
  SposSupernet net(*space, 0);
  const auto ds = space->decisions();
  // 0.1 % critical values of chi-square with 1..3 degrees of freedom.
  const std::map<int, double> critical = {{2, 10.83}, {3, 13.82}, {4, 16.27}};
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    std::mt19937_64 rng(seed);
    std::map<std::string, std::vector<int>> counts;
    const int n = 4000;
    for (int i = 0; i < n; ++i) {
      const auto v = space->encode_decisions(net.sample(rng));
      for (std::size_t k = 0; k < ds.size(); ++k) {
        const std::string& name = ds[k].name;
        // Choices that every path makes (block, depth, width, stage 0's always-conv params).
        const bool always = name == "width" || name.ends_with(".block") ||
                            name.ends_with(".depth") || name.rfind("stages[0].params.", 0) == 0;
        if (!always || ds[k].choices < 2) continue;
        auto& c = counts[name];
        c.resize(static_cast<std::size_t>(ds[k].choices));
        ++c[static_cast<std::size_t>(v[k])];
      }
    }
    ASSERT_GE(counts.size(), 6u);
    for (const auto& [name, c] : counts) {
      const double x = chi_square(c);
      EXPECT_LT(x, critical.at(static_cast<int>(c.size()))) << name << " seed " << seed;
    }
  }
}

TEST(SposBatchNorm, RecalibrationChangesRunningStatsAndImprovesInheritedAccuracy) {
  auto space = small_macro();
  const auto data = pattern_task(1024, 256, 3);
  SposSupernet net(*space, 4);
  SposOptions o = small_options();
  o.epochs = 6;
  (void)train_supernet(net, data.train, o);
  InheritedScorer scorer(net, data, o);
  std::mt19937_64 rng(21);
  double with = 0, without = 0;
  const int n = 10;
  std::vector<eval::Batch> batches;
  eval::BatchIterator it(data.train, 32, true, 1, true);
  it.start_epoch(0);
  eval::Batch b;
  for (int i = 0; i < 4 && it.next(b); ++i) batches.push_back(b);
  for (int i = 0; i < n; ++i) {
    const spaces::Genome g = net.sample(rng);
    auto m = net.subnet(g);
    std::vector<nn::Tensor> before;
    for (auto& buf : m->named_buffers()) before.push_back(buf.tensor->clone());
    ASSERT_FALSE(before.empty());
    EXPECT_EQ(recalibrate_batch_norm(*m, batches), static_cast<int>(before.size()));
    double change = 0;
    auto bufs = m->named_buffers();
    for (std::size_t k = 0; k < bufs.size(); ++k)
      for (std::int64_t j = 0; j < before[k].numel(); ++j)
        change += std::abs(bufs[k].tensor->data()[j] - before[k].data()[j]);
    EXPECT_GT(change, 1e-3) << space->describe(g);
    with += scorer.score(g, true).at("accuracy");
    without += scorer.score(g, false).at("accuracy");
  }
  std::cout << "inherited accuracy over " << n << " subnets: recalibrated " << with / n
            << ", supernet's banked statistics " << without / n << "\n";
  EXPECT_GT(with, without);
}

// ---- the strategy ----

struct Counted {
  std::shared_ptr<int> loads = std::make_shared<int>(0);
  std::shared_ptr<const strategies::OneShotEnvironment> env;
};

Counted environment() {
  Counted c;
  TaskResources r;
  auto loads = c.loads;
  r.data = [loads] {
    ++*loads;
    return pattern_task(128, 64, 4);
  };
  r.train.batch_size = 32;
  r.devices = {"jetson_orin_nano"};
  c.env = make_task_environment(r);
  return c;
}

json spos_config() {
  return {{"type", "spos"},   {"epochs", 2},     {"population", 4},
          {"generations", 1}, {"candidates", 3}, {"eval_samples", 0}};
}

strategies::StrategyContext context(std::uint64_t seed, const Counted& c) {
  strategies::StrategyContext ctx;
  ctx.seed = seed;
  ctx.objectives = {{"val_accuracy:max", true}, {"latency_ms:min", false}};
  ctx.oneshot = c.env;
  return ctx;
}

strategies::Result ok_result(const strategies::Proposal& p) {
  strategies::Result r;
  r.id = p.id;
  r.objectives = {0.5, 1.0};
  r.fitness = 0.5;
  return r;
}

TEST(SposStrategy, ProposesThePicksDeterministicallyWithInheritedMetricsAndResumes) {
  auto space = small_macro();
  Counted c = environment();
  auto run = [&](std::uint64_t seed, int n) {
    auto s = strategies::make_strategy(spos_config(), *space, context(seed, c));
    const auto* pm = dynamic_cast<const strategies::ProposalMetrics*>(s.get());
    EXPECT_NE(pm, nullptr);
    std::vector<std::string> seen;
    for (int i = 0; i < n; ++i) {
      auto p = s->ask(1).front();
      const json m = pm->proposal_metrics(p.genome);
      if (i < 3) {
        EXPECT_TRUE(m.contains("inherited_val_accuracy")) << m.dump();
        EXPECT_EQ(m.value("inherited_rank", -1), i);
      }
      seen.push_back(space->describe(p.genome) + m.dump());
      s->tell(ok_result(p));
    }
    return seen;
  };
  const auto a = run(7, 5);
  EXPECT_EQ(*c.loads, 1);  // one supernet phase
  EXPECT_EQ(a, run(7, 5));
  EXPECT_NE(a[0], a[1]);
  EXPECT_NE(a[1], a[2]);

  // Saved after the phase: a restored strategy continues without training again.
  auto s = strategies::make_strategy(spos_config(), *space, context(7, c));
  for (int i = 0; i < 2; ++i) s->tell(ok_result(s->ask(1).front()));
  const json state = s->save_state();
  EXPECT_TRUE(state["state"]["phase_done"].get<bool>());
  EXPECT_EQ(state["state"]["candidates"].size(), 3u);
  EXPECT_EQ(state["state"]["candidate_metrics"].size(), 3u);
  const int loads = *c.loads;
  auto r = strategies::make_strategy(spos_config(), *space, context(99, c));
  r->restore_state(state);
  const auto* pm = dynamic_cast<const strategies::ProposalMetrics*>(r.get());
  std::vector<std::string> rest;
  for (int i = 2; i < 5; ++i) {
    auto p = r->ask(1).front();
    rest.push_back(space->describe(p.genome) + pm->proposal_metrics(p.genome).dump());
    r->tell(ok_result(p));
  }
  EXPECT_EQ(*c.loads, loads);
  EXPECT_EQ(rest, std::vector<std::string>(a.begin() + 2, a.end()));
}

TEST(SposStrategy, ExplainsWhatItNeeds) {
  auto nb =
      spaces::make_space({{"type", "nb201"}, {"input", {{"kind", "image"}, {"shape", {3, 8, 8}}}}});
  try {
    (void)strategies::make_strategy(spos_config(), *nb, {});
    FAIL() << "spos accepted an nb201 space";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("macro space"), std::string::npos) << e.what();
  }
  auto space = small_macro();
  strategies::StrategyContext ctx;
  ctx.objectives = {{"val_accuracy:max", true}, {"host_latency_ms:min", false}};
  try {
    (void)strategies::make_strategy(spos_config(), *space, ctx);
    FAIL() << "spos accepted an objective it cannot read on a subnet";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("host_latency_ms"), std::string::npos) << e.what();
  }
  ctx.objectives = {{"val_accuracy:max", true}};
  auto s = strategies::make_strategy(spos_config(), *space, ctx);
  try {
    (void)s->ask(1);
    FAIL() << "spos proposed without a one-shot environment";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("hwnas search"), std::string::npos) << e.what();
  }
}

// ---- ranking: inherited-weight vs stand-alone accuracy ----

double kendall_tau(const std::vector<double>& a, const std::vector<double>& b) {
  int conc = 0, disc = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = i + 1; j < a.size(); ++j) {
      const double s = (a[i] - a[j]) * (b[i] - b[j]);
      if (s > 0) ++conc;
      if (s < 0) ++disc;
    }
  const double pairs = static_cast<double>(a.size() * (a.size() - 1) / 2);
  return (conc - disc) / pairs;
}

TEST(SposRanking, InheritedAccuracyRanksLikeStandAloneAccuracy) {
  auto space = small_macro();
  const auto data = pattern_task(1024, 512, 6);
  SposSupernet net(*space, 8);
  SposOptions o = small_options();
  o.epochs = 6;
  (void)train_supernet(net, data.train, o);
  InheritedScorer scorer(net, data, o);
  std::mt19937_64 rng(31);
  std::vector<double> inherited, alone;
  std::map<std::string, int> seen;
  while (inherited.size() < 20) {
    const spaces::Genome g = net.sample(rng);
    if (seen[g.hash()]++) continue;
    inherited.push_back(scorer.score(g).at("accuracy"));
    auto m = spaces::build_model(g, 77);
    eval::TrainConfig tc;
    tc.optimizer = "sgd";
    tc.lr = 0.05f;
    tc.epochs = 3;
    tc.batch_size = 32;
    const auto rep = eval::train(*m, data.train, data.val, tc);
    alone.push_back(rep.val_accuracy);
  }
  const double tau = kendall_tau(inherited, alone);
  std::cout << "Kendall tau (inherited vs stand-alone accuracy, 20 subnets): " << tau << "\n";
  for (std::size_t i = 0; i < inherited.size(); ++i)
    std::cout << "  inherited " << inherited[i] << "  stand-alone " << alone[i] << "\n";
  EXPECT_GT(tau, 0.0);
}

}  // namespace

namespace {

// The figure: a small Fashion-MNIST macro space (elastic depth, width, channels, kernel,
// conv vs depthwise conv), 20 distinct subnets, inherited (recalibrated) vs stand-alone
// accuracy.  Prints the table; asserts only that the correlation is positive.
TEST(SposRankingSlow, FashionMnistKendallTauOverTwentySubnets) {
  auto space = spaces::make_space(
      {{"type", "macro"},
       {"input", {{"kind", "image"}, {"shape", {1, 28, 28}}}},
       {"outputs", 10},
       {"width_multipliers", {0.5, 1.0}},
       {"stages",
        {{{"blocks", {"conv"}},
          {"depth", {1, 2}},
          {"params", {{"channels", {8, 16}}, {"kernel", {3, 5}}, {"stride", 2}}}},
         {{"blocks", {"conv", "dwconv"}},
          {"depth", {0, 2}},
          {"skip", "optional"},
          {"params", {{"channels", {16, 32}}, {"kernel", {3, 5}}, {"stride", 2}}}}}}});
  const auto data = eval::load_fashion_mnist_train_val(1000, 1, 4000);
  SposSupernet net(*space, 8);
  SposOptions o;
  o.epochs = 8;
  o.batch_size = 64;
  o.sgd.lr = 0.2f;
  o.bn_batches = 4;
  o.eval_samples = 0;
  o.seed = 5;
  const auto t0 = std::chrono::steady_clock::now();
  (void)train_supernet(net, data.train, o, &std::cout);
  const double supernet_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  InheritedScorer scorer(net, data, o);
  std::mt19937_64 rng(31);
  std::vector<double> inherited, banked, alone;
  std::map<std::string, int> seen;
  double alone_s = 0;
  while (inherited.size() < 20) {
    const spaces::Genome g = net.sample(rng);
    if (seen[g.hash()]++) continue;
    inherited.push_back(scorer.score(g, true).at("accuracy"));
    banked.push_back(scorer.score(g, false).at("accuracy"));
    auto m = spaces::build_model(g, 77);
    eval::TrainConfig tc;
    tc.optimizer = "sgd";
    tc.lr = 0.05f;
    tc.epochs = 2;
    tc.batch_size = 64;
    const auto rep = eval::train(*m, data.train, data.val, tc);
    alone.push_back(rep.val_accuracy);
    alone_s += rep.seconds;
  }
  const double tau = kendall_tau(inherited, alone), tau_banked = kendall_tau(banked, alone);
  double mi = 0, mb = 0, ma = 0;
  for (std::size_t i = 0; i < alone.size(); ++i) {
    mi += inherited[i] / 20;
    mb += banked[i] / 20;
    ma += alone[i] / 20;
    std::cout << "  inherited " << inherited[i] << "  (banked BN " << banked[i] << ")  stand-alone "
              << alone[i] << "\n";
  }
  std::cout << "Fashion-MNIST, 20 subnets: Kendall tau inherited (recalibrated) vs stand-alone "
            << tau << ", with the supernet's banked BN statistics " << tau_banked
            << "; mean accuracy inherited " << mi << ", banked " << mb << ", stand-alone " << ma
            << "; supernet " << supernet_s << " s, stand-alone training " << alone_s << " s\n";
  EXPECT_GT(tau, 0.0);
}

}  // namespace

namespace {

// Emerging block kinds on one input kind: a residual stack whose mixer slot chooses between
// attention, sliding-window attention, S4D, Mamba and Hyena (sequence_mixers.json, shrunk).
// Each kind has its own bank at each position; widths (units, heads, state sizes) slice.
TEST(SposSupernet, TrainsSequenceMixersWithABankPerKind) {
  auto space = spaces::make_space(
      {{"type", "macro"},
       {"input", {{"kind", "sequence"}, {"shape", {16, 8}}}},
       {"outputs", 2},
       {"stages",
        {{{"blocks", {"dense"}}, {"params", {{"units", {8, 16}}, {"activation", "none"}}}},
         {{"blocks", {"attention", "sliding_attention", "s4d", "mamba", "hyena"}},
          {"depth", {1, 2}},
          {"skip", true},
          {"params",
           {{"heads", {1, 2}},
            {"window", {4, 8}},
            {"d_state", {4, 8}},
            {"expand", {1, 2}},
            {"order", {2}},
            {"filter_width", {8, 16}}}}},
         {{"blocks", {"norm"}}, {"params", {{"type", "layer"}}}}}}});
  std::mt19937_64 drng(3);
  std::normal_distribution<float> nz(0.0f, 1.0f);
  eval::Dataset d;
  d.num_classes = 2;
  d.x = nn::Tensor(nn::Shape{64, 16, 8}, 0.0f);
  for (int i = 0; i < 64; ++i) {
    float s = 0;
    for (int k = 0; k < 16 * 8; ++k) {
      const float v = nz(drng);
      d.x.data()[i * 128 + k] = v;
      if (k % 8 == 0) s += v;
    }
    d.y.push_back(s > 0 ? 1 : 0);
  }
  SposSupernet net(*space, 1);
  SposOptions o = small_options();
  o.epochs = 4;
  o.batch_size = 16;
  const auto losses = train_supernet(net, d, o);
  for (double l : losses) EXPECT_TRUE(std::isfinite(l));
  std::set<std::string> kinds;
  for (const auto& n : net.bank_names())
    if (n.rfind("s1.l0.", 0) == 0) kinds.insert(n.substr(6, n.find('.', 6) - 6));
  EXPECT_GE(kinds.size(), 4u);  // 16 uniform draws over 5 kinds
  // A subnet still computes what its stand-alone build with the same weights computes.
  std::mt19937_64 rng(5);
  for (int i = 0; i < 6; ++i) {
    const spaces::Genome g = net.sample(rng);
    auto a = net.subnet(g);
    auto b = spaces::build_model(g, 4242);
    auto pa = a->named_parameters();
    auto pb = b->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (std::size_t k = 0; k < pa.size(); ++k)
      std::copy(pa[k].var.value().data(), pa[k].var.value().data() + pa[k].var.value().numel(),
                pb[k].var.value().data());
    nn::NoGradGuard ng;
    nn::ForwardContext ctx;
    ctx.training = false;
    nn::Tensor x(nn::Shape{4, 16, 8}, 0.0f);
    std::copy(d.x.data(), d.x.data() + x.numel(), x.data());
    const nn::Tensor ya = a->forward(nn::constant(x), ctx).value();
    const nn::Tensor yb = b->forward(nn::constant(x), ctx).value();
    for (std::int64_t k = 0; k < ya.numel(); ++k)
      ASSERT_EQ(ya.data()[k], yb.data()[k]) << space->describe(g);
  }
}

}  // namespace
