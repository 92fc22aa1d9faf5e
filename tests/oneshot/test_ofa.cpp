// Once-for-All progressive shrinking on the weight-sharing supernet: the kernel transformation
// matrices (identity = centre crop, gradients against finite differences), channel sorting
// (the full network's function survives it), the phases' elastic dimensions, determinism, the
// strategy's parameter errors, and the supernet state saved every epoch (a stopped training
// continues bit-identically).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "nn/autograd.hpp"
#include "oneshot/environment.hpp"
#include "oneshot/kernel_transform.hpp"
#include "oneshot/spos_search.hpp"
#include "strategies/registry.hpp"
#include "tests/oneshot/tasks.hpp"

using namespace hwnas;
using namespace hwnas::oneshot;
using hwnas::oneshot::test::pattern_task;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

nn::Tensor random_tensor(const nn::Shape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  nn::Tensor t(s);
  for (std::int64_t k = 0; k < t.numel(); ++k) t.data()[k] = n(rng);
  return t;
}

nn::Tensor identity(int s) {
  nn::Tensor m = nn::Tensor::zeros(nn::Shape{s * s, s * s});
  for (int a = 0; a < s * s; ++a) m.data()[a * s * s + a] = 1.0f;
  return m;
}

// Elastic kernel 3/5, depth, channels and width multiplier; conv or depthwise conv in stage 1
// with an optional residual add.
std::unique_ptr<spaces::Space> small_macro() {
  return spaces::make_space(
      {{"type", "macro"},
       {"input", {{"kind", "image"}, {"shape", {3, 8, 8}}}},
       {"outputs", 4},
       {"width_multipliers", {0.5, 1.0}},
       {"stages",
        {{{"blocks", {"conv"}},
          {"depth", {1, 2}},
          {"params", {{"channels", {4, 8}}, {"kernel", {5, 3}}, {"stride", 1}}}},
         {{"blocks", {"conv", "dwconv"}},
          {"depth", {0, 2}},
          {"skip", "optional"},
          {"params", {{"channels", {8, 16}}, {"kernel", {3, 5}}, {"stride", 2}}}}}}});
}

SposOptions progressive_options() {
  SposOptions o;
  o.schedule = "progressive";
  o.full_epochs = 1;
  o.kernel_epochs = 1;
  o.depth_epochs = 1;
  o.width_epochs = 2;
  o.steps_per_epoch = 3;
  o.batch_size = 16;
  o.sgd.lr = 0.05f;
  o.eval_samples = 0;
  o.population = 4;
  o.generations = 1;
  o.candidates = 2;
  o.seed = 11;
  return o;
}

std::map<std::string, std::vector<float>> all_banks(const SposSupernet& net) {
  std::map<std::string, std::vector<float>> out;
  for (const auto& n : net.bank_names()) {
    const nn::Tensor& t = net.bank(n);
    out[n] = std::vector<float>(t.data(), t.data() + t.numel());
  }
  return out;
}

// Outputs of g's subnet on x in evaluation mode (banked batch-norm statistics).
std::vector<float> outputs(SposSupernet& net, const spaces::Genome& g, const nn::Tensor& x) {
  auto m = net.subnet(g);
  nn::NoGradGuard no_grad;
  nn::ForwardContext ctx;
  ctx.training = false;
  const nn::Tensor y = m->forward(nn::constant(x), ctx).value();
  return std::vector<float>(y.data(), y.data() + y.numel());
}

json decisions_of(const spaces::Genome& g) { return g.meta().at("decisions"); }

}  // namespace

// ---- kernel transformation matrices ----

TEST(KernelTransform, IdentityMatricesCropTheCentre) {
  const nn::Tensor w = random_tensor(nn::Shape{2, 3, 7, 7}, 1);
  const nn::Tensor i5 = identity(5), i3 = identity(3);
  const nn::Tensor y = transform_kernel(w, {&i5, &i3}, {5, 3});
  ASSERT_EQ(y.shape().to_vector(), (std::vector<int>{2, 3, 3, 3}));
  for (int a = 0; a < 6; ++a)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c)
        EXPECT_EQ(y.data()[(a * 3 + r) * 3 + c], w.data()[(a * 7 + r + 2) * 7 + c + 2]);
  // A non-identity matrix mixes the centre: each output is that row times the matrix.
  nn::Tensor m = identity(3);
  m.data()[0 * 9 + 4] = 0.5f;  // output tap 4 (the centre) also takes 0.5 x tap 0
  const nn::Tensor z = transform_kernel(w, {&m}, {3});
  const float tap0 = w.data()[(0 * 7 + 2) * 7 + 2], tap4 = w.data()[(0 * 7 + 3) * 7 + 3];
  EXPECT_FLOAT_EQ(z.data()[4], tap4 + 0.5f * tap0);
  EXPECT_FLOAT_EQ(z.data()[0], tap0);
}

TEST(KernelTransform, GradientsOfKernelAndMatricesMatchFiniteDifferences) {
  const nn::Tensor w = random_tensor(nn::Shape{2, 2, 7, 7}, 2);
  nn::Tensor m5 = random_tensor(nn::Shape{25, 25}, 3), m3 = random_tensor(nn::Shape{9, 9}, 4);
  for (int a = 0; a < 25; ++a) m5.data()[a * 26] += 1.0f;
  const nn::Tensor g = random_tensor(nn::Shape{2, 2, 3, 3}, 5);  // L = sum(g * y)
  auto loss = [&](const nn::Tensor& ww, const nn::Tensor& a, const nn::Tensor& b) {
    const nn::Tensor y = transform_kernel(ww, {&a, &b}, {5, 3});
    double l = 0;
    for (std::int64_t k = 0; k < y.numel(); ++k)
      l += static_cast<double>(g.data()[k]) * y.data()[k];
    return l;
  };
  std::vector<nn::Tensor> mg = {nn::Tensor::zeros(m5.shape()), nn::Tensor::zeros(m3.shape())};
  const nn::Tensor gw = transform_kernel_backward(w, {&m5, &m3}, {5, 3}, g, mg);
  ASSERT_EQ(gw.shape().to_vector(), (std::vector<int>{2, 2, 5, 5}));
  const float eps = 1e-2f;
  auto check = [&](nn::Tensor& t, std::int64_t k, double analytic, const char* what) {
    const float keep = t.data()[k];
    t.data()[k] = keep + eps;
    const double up = loss(w, m5, m3);
    t.data()[k] = keep - eps;
    const double down = loss(w, m5, m3);
    t.data()[k] = keep;
    const double fd = (up - down) / (2 * eps);
    EXPECT_NEAR(analytic, fd, 2e-3 * (1 + std::fabs(fd))) << what << " element " << k;
  };
  nn::Tensor& wm = const_cast<nn::Tensor&>(w);
  for (std::int64_t k : {0, 7, 30, 60, 99}) {  // inputs: centre 5 of the 7x7 bank kernel
    const int a = static_cast<int>(k / 25), r = static_cast<int>(k % 25) / 5,
              c = static_cast<int>(k % 5);
    check(wm, (a * 7 + r + 1) * 7 + c + 1, gw.data()[k], "kernel");
  }
  check(wm, 0, 0.0, "kernel outside the centre");  // the ring is not read
  for (std::int64_t k : {0, 12, 26, 300, 624}) check(m5, k, mg[0].data()[k], "M5");
  for (std::int64_t k : {0, 4, 40, 80}) check(m3, k, mg[1].data()[k], "M3");
}

TEST(KernelTransform, SupernetStartsAtTheCentreAndLearnsItsMatrices) {
  auto space = small_macro();
  SposSupernet net(*space, 3);
  net.enable_kernel_transforms();
  EXPECT_EQ(net.kernel_sizes(), (std::vector<int>{5, 3}));
  std::mt19937_64 rng(1);
  const auto data = pattern_task(32, 8, 2);
  eval::BatchIterator it(data.train, 16, true, 1, true);
  it.start_epoch(0);
  eval::Batch b;
  it.next(b);
  // Train the largest network (kernel 5 banks), then a kernel-3 path reads transformed centres.
  for (int i = 0; i < 3; ++i)
    net.train_step(net.sample(rng, Elastic{false, false, false}), b, eval::HeadKind::Classes, {});
  spaces::Genome small;
  for (;;) {
    small = net.sample(rng, Elastic{true, false, false});
    if (decisions_of(small)["stages"][0]["params"]["kernel"] == 3) break;
  }
  const std::string bank = "s0.l0.conv.conv.weight";
  auto m = net.subnet(small);
  nn::Tensor sub;
  bool found = false;
  for (auto& p : m->named_parameters())
    if (!found && p.name.find(".conv.weight") != std::string::npos) {
      sub = p.var.value();
      found = true;
    }
  ASSERT_TRUE(found);
  EXPECT_EQ(centre_crop(net.bank(bank), 3).shape().to_vector()[2], 3);
  // Identity so far: the sub kernel is the bank's centre.
  const nn::Tensor centre = centre_crop(net.bank(bank), 3);
  for (std::int64_t k = 0; k < sub.numel(); ++k) ASSERT_EQ(sub.data()[k], centre.data()[k]);
  EXPECT_EQ(net.transform(bank, 3).data()[0], 1.0f);
  net.train_step(small, b, eval::HeadKind::Classes, {});
  const nn::Tensor& t = net.transform(bank, 3);
  double off = 0;
  for (std::int64_t k = 0; k < t.numel(); ++k)
    off += std::fabs(t.data()[k] - identity(3).data()[k]);
  EXPECT_GT(off, 0.0) << "the kernel-3 step did not train its transform";
}

// ---- channel sorting ----

TEST(ChannelSort, KeepsTheFullNetworkFunctionAndPutsImportantChannelsFirst) {
  auto space = small_macro();
  SposSupernet net(*space, 5);
  const auto data = pattern_task(64, 8, 3);
  SposOptions o = progressive_options();
  o.schedule = "uniform";
  o.epochs = 2;
  (void)train_supernet(net, data.train, o);
  // The largest networks of several kind / skip combinations, before and after the sort.
  std::mt19937_64 rng(9);
  std::map<std::string, spaces::Genome> largest;
  for (int i = 0; i < 40; ++i) {
    const auto g = net.largest(net.sample(rng));
    largest.emplace(g.hash(), g);
  }
  ASSERT_GE(largest.size(), 3u);
  const nn::Tensor x = data.val.x;
  std::map<std::string, std::vector<float>> before;
  for (const auto& [h, g] : largest) before[h] = outputs(net, g, x);
  const auto banks_before = all_banks(net);
  const json report = net.sort_channels();
  // Stage 0 and 1 channels meet (a depthwise conv passes stage 0's on; skips tie them): one
  // group, sizes 8 and 16, sorted; the input's 3 channels form their own, unmoved.
  bool stages_sorted = false;
  for (const auto& gr : report["groups"])
    if (gr["domains"] == json{"stage 0", "stage 1"} ||
        gr["domains"] == json{"stage 1", "stage 0"}) {
      EXPECT_TRUE(gr["sorted"].get<bool>()) << report.dump();
      EXPECT_EQ(gr["sizes"], (json{8, 16})) << report.dump();
      stages_sorted = true;
    }
  EXPECT_TRUE(stages_sorted) << report.dump();
  EXPECT_NE(all_banks(net), banks_before) << "nothing moved";
  for (const auto& [h, g] : largest) {
    const auto after = outputs(net, g, x);
    ASSERT_EQ(after.size(), before[h].size());
    for (std::size_t k = 0; k < after.size(); ++k)
      ASSERT_NEAR(after[k], before[h][k], 1e-4f * (1 + std::fabs(before[h][k])))
          << space->describe(g);
  }
  // Inside each segment ([0, 8), [8, 16)) the conv output channels are in descending L1 norm of
  // their weights summed over the stage's conv layers.
  auto l1 = [&](int c) {
    double s = 0;
    for (const auto& n : net.bank_names()) {
      const bool stage_conv = (n.rfind("s0.", 0) == 0 || n.rfind("s1.", 0) == 0) &&
                              n.find(".conv.conv.weight") != std::string::npos;
      if (!stage_conv) continue;
      const nn::Tensor& w = net.bank(n);
      if (c >= w.shape()[0]) continue;
      const std::int64_t per = w.numel() / w.shape()[0];
      for (std::int64_t k = 0; k < per; ++k) s += std::fabs(w.data()[c * per + k]);
    }
    return s;
  };
  for (int c = 0; c + 1 < 8; ++c) EXPECT_GE(l1(c), l1(c + 1) - 1e-4) << "channel " << c;
  for (int c = 8; c + 1 < 16; ++c) EXPECT_GE(l1(c), l1(c + 1) - 1e-4) << "channel " << c;
}

// ---- the schedule ----

TEST(ProgressiveShrinking, EachPhaseOpensExactlyItsElasticDimensions) {
  SposOptions o = progressive_options();
  const auto phases = o.phases();
  ASSERT_EQ(phases.size(), 4u);
  EXPECT_EQ(phases[0].name, "full");
  EXPECT_EQ(phases[0].elastic, (Elastic{false, false, false}));
  EXPECT_EQ(phases[1].name, "kernel");
  EXPECT_EQ(phases[1].elastic, (Elastic{true, false, false}));
  EXPECT_EQ(phases[2].name, "depth");
  EXPECT_EQ(phases[2].elastic, (Elastic{true, true, false}));
  EXPECT_EQ(phases[3].name, "width");
  EXPECT_EQ(phases[3].elastic, (Elastic{true, true, true}));
  EXPECT_EQ(phases[3].epochs, 2);
  o.schedule = "uniform";
  ASSERT_EQ(o.phases().size(), 1u);
  EXPECT_EQ(o.phases()[0].elastic, (Elastic{true, true, true}));

  // What each phase's draws vary, read off 300 decoded paths.
  auto space = small_macro();
  SposSupernet net(*space, 1);
  for (const auto& ph : phases) {
    std::mt19937_64 rng(4);
    std::set<json> kernels, depths, widths, channels, kinds;
    for (int i = 0; i < 300; ++i) {
      const json d = decisions_of(net.sample(rng, ph.elastic));
      widths.insert(d["width"]);
      for (const auto& st : d["stages"]) {
        depths.insert(st["depth"]);
        kinds.insert(st["block"]);
        if (st["params"].contains("kernel")) kernels.insert(st["params"]["kernel"]);
        if (st["params"].contains("channels")) channels.insert(st["params"]["channels"]);
      }
    }
    SCOPED_TRACE(ph.name);
    EXPECT_EQ(kernels.size() > 1, ph.elastic.kernel);
    EXPECT_EQ(depths.size() > 2, ph.elastic.depth);  // stage maxima 2 and 2: one value when fixed
    EXPECT_EQ(widths.size() > 1, ph.elastic.width);
    EXPECT_EQ(channels.size() > 2, ph.elastic.width);  // the stages' maxima 8 and 16 when fixed
    EXPECT_EQ(kinds.size(), 2u);                       // block kind is drawn in every phase
    if (!ph.elastic.kernel) {
      EXPECT_EQ(kernels, (std::set<json>{5}));
    }
    if (!ph.elastic.width) {
      EXPECT_EQ(widths, (std::set<json>{1.0}));
    }
    if (!ph.elastic.depth) {
      EXPECT_EQ(depths, (std::set<json>{2}));
    }
  }
}

TEST(ProgressiveShrinking, IsDeterministicUnderASeedWithAndWithoutDistillation) {
  auto space = small_macro();
  const auto data = pattern_task(96, 32, 6);
  const std::vector<SposObjective> obj = {{"val_accuracy:max", "val_accuracy", nullptr, true}};
  auto run = [&](bool kd, std::uint64_t seed) {
    SposOptions o = progressive_options();
    o.kd = kd;
    o.seed = seed;
    return run_spos(*space, data, obj, o);
  };
  const auto a = run(false, 11), b = run(false, 11), c = run(true, 11), d = run(true, 11);
  EXPECT_EQ(a.report["supernet_epoch_loss"], b.report["supernet_epoch_loss"]);
  EXPECT_EQ(a.report["picks"], b.report["picks"]);
  EXPECT_EQ(c.report["supernet_epoch_loss"], d.report["supernet_epoch_loss"]);
  EXPECT_EQ(c.report["picks"], d.report["picks"]);
  EXPECT_NE(a.report["supernet_epoch_loss"], c.report["supernet_epoch_loss"]);  // kd changes it
  EXPECT_EQ(a.report["supernet_epoch_loss"].size(), 5u);
  EXPECT_EQ(a.report["schedule"], "progressive");
  EXPECT_EQ(a.report["phases"].size(), 4u);
  EXPECT_FALSE(a.report["channel_sort"].is_null());
  EXPECT_NE(run(false, 12).report["supernet_epoch_loss"], a.report["supernet_epoch_loss"]);
}

// ---- the strategy's parameters ----

TEST(ProgressiveShrinking, BadParametersGiveOneClearError) {
  auto space = small_macro();
  strategies::StrategyContext ctx;
  ctx.objectives = {{"val_accuracy:max", true}};
  auto error = [&](json cfg) -> std::string {
    cfg["type"] = "spos";
    try {
      (void)strategies::make_strategy(cfg, *space, ctx);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_EQ(error({{"schedule", "shrink"}}),
            "strategy.schedule: \"shrink\" not in {uniform,progressive}");
  EXPECT_EQ(error({{"kd", true}}),
            "strategy.kd: in-place distillation is part of the progressive schedule; set "
            "strategy.schedule to \"progressive\" or strategy.kd to false");
  EXPECT_EQ(error({{"schedule", "progressive"},
                   {"full_epochs", 0},
                   {"kernel_epochs", 0},
                   {"depth_epochs", 0},
                   {"width_epochs", 0}}),
            "strategy.full_epochs, kernel_epochs, depth_epochs, width_epochs: the progressive "
            "schedule needs at least one epoch in one of its phases");
  EXPECT_EQ(error({{"schedule", "progressive"}, {"width_epochs", -1}}),
            "strategy.width_epochs: -1 not in int [0, 10000]");
  EXPECT_EQ(error({{"schedule", "progressive"}, {"kd_weight", "high"}}),
            "strategy.kd_weight: \"high\" is not a number; allowed float [0, 100]");
  EXPECT_EQ(error({{"schedule", "progressive"}, {"kd", true}, {"kd_weight", 0.5}}), "accepted");
}

// ---- the supernet state: saved every epoch, continued after a stop ----

TEST(SupernetState, AStoppedTrainingContinuesBitIdenticallyThroughEveryPhase) {
  auto space = small_macro();
  const auto data = pattern_task(64, 16, 7);
  const fs::path dir = fs::temp_directory_path() / ("hwnas_ofa_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  for (const bool progressive : {false, true}) {
    SCOPED_TRACE(progressive ? "progressive + kd" : "uniform");
    SposOptions o = progressive_options();
    if (!progressive) {
      o.schedule = "uniform";
      o.epochs = 4;
    }
    o.kd = progressive;
    SposSupernet whole(*space, 2);
    const SupernetTraining ref = train_supernet_phases(whole, data.train, o);

    o.state_path = (dir / (progressive ? "p.state" : "u.state")).string();
    std::ostringstream log;
    // Stopped after epoch 2 (kernel phase: transforms live) and after 4 (after the sort).
    for (const int stop : {2, 4}) {
      SposSupernet net(*space, 2);
      o.stop_after_epoch = stop;
      EXPECT_THROW(train_supernet_phases(net, data.train, o, &log), SupernetInterrupted);
      ASSERT_TRUE(fs::exists(o.state_path));
    }
    o.stop_after_epoch = 0;
    SposSupernet net(*space, 2);
    const SupernetTraining got = train_supernet_phases(net, data.train, o, &log);
    EXPECT_EQ(got.resumed_after_epoch, 4);
    EXPECT_NE(log.str().find("spos: supernet resumed from " + o.state_path + " after epoch 2/"),
              std::string::npos)
        << log.str();
    EXPECT_EQ(got.losses, ref.losses);
    EXPECT_EQ(got.channel_sort, ref.channel_sort);
    EXPECT_EQ(all_banks(net), all_banks(whole));
    if (progressive) {
      const std::string b = "s0.l0.conv.conv.weight";
      const nn::Tensor &t1 = net.transform(b, 3), &t2 = whole.transform(b, 3);
      EXPECT_EQ(std::vector<float>(t1.data(), t1.data() + t1.numel()),
                std::vector<float>(t2.data(), t2.data() + t2.numel()));
    }
    // A damaged state is reported and the training starts over, to the same end.
    { std::ofstream(o.state_path, std::ios::trunc) << "not a checkpoint"; }
    std::ostringstream log2;
    SposSupernet again(*space, 2);
    const SupernetTraining fresh = train_supernet_phases(again, data.train, o, &log2);
    EXPECT_NE(log2.str().find("warning: the supernet state " + o.state_path + " is unusable ("),
              std::string::npos)
        << log2.str();
    EXPECT_EQ(fresh.resumed_after_epoch, 0);
    EXPECT_EQ(fresh.losses, ref.losses);
  }
  fs::remove_all(dir);
}
