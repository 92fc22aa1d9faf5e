// The learned kernel-level latency predictor: regressors, model file, device family, per-node
// host timing and `hwnas hw fit` end to end.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "../search/cli_util.hpp"
#include "common/hash.hpp"
#include "hwmodels/device.hpp"
#include "hwmodels/learned_predictor.hpp"
#include "search/learned_fit.hpp"
#include "spaces/node_timing.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"

namespace fs = std::filesystem;
using namespace hwnas;
using namespace hwnas::hw::learned;
using hwnas::test::run_hwnas;

namespace {

fs::path temp_dir(const std::string& name) {
  const fs::path d =
      fs::temp_directory_path() / ("hwnas_learned_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_text(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

std::string error_of_load(const fs::path& p) {
  try {
    load_model_file(p.string());
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// A function with an interaction and a threshold: no single split or line fits it.
double target(double a, double b) { return std::sin(2 * a) + (b > 0.3 ? a * b : -b); }

void sample_function(int n, std::uint64_t seed, std::vector<std::vector<double>>& x,
                     std::vector<double>& y) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.5, 1.5);
  for (int i = 0; i < n; ++i) {
    const double a = u(rng), b = u(rng);
    x.push_back({a, b, u(rng)});  // the third feature is noise the model must ignore
    y.push_back(target(a, b));
  }
}

double rmse(const std::vector<double>& p, const std::vector<double>& y) {
  double s = 0;
  for (std::size_t i = 0; i < y.size(); ++i) s += (p[i] - y[i]) * (p[i] - y[i]);
  return std::sqrt(s / static_cast<double>(y.size()));
}

double stddev(const std::vector<double>& y) {
  double m = 0, s = 0;
  for (double v : y) m += v / static_cast<double>(y.size());
  for (double v : y) s += (v - m) * (v - m) / static_cast<double>(y.size());
  return std::sqrt(s);
}

// A GBDT that predicts a constant: base only.
KernelModel constant_model(double ms) {
  KernelModel k;
  k.chosen = "gbdt";
  k.gbdt.base = std::log(ms);
  k.train_nodes = 10;
  return k;
}

hw::NodeWorkload node(const std::string& kind, hw::OpCategory c, double macs, int kernels = 1) {
  hw::NodeWorkload n;
  n.name = "n:" + kind;
  n.block_kind = kind;
  n.category = c;
  n.macs = macs;
  n.input_bytes = 4096;
  n.output_bytes = 4096;
  n.kernels = kernels;
  n.eager_kernels = 1;
  return n;
}

// conv nodes 2 ms, pool (by category) 0.5 ms, anything else 0.25 ms; network = 1.5 x sum +
// 0.1 ms + 0.01 ms per node.
LearnedModel hand_model() {
  LearnedModel m;
  m.per_work = false;  // constant regressors are then the node times themselves
  m.by_kind["conv"] = constant_model(2.0);
  m.by_category["pool"] = constant_model(0.5);
  m.global = constant_model(0.25);
  m.net_scale = 1.5;
  m.net_offset_ms = 0.1;
  m.net_per_node_ms = 0.01;
  return m;
}

hw::Workload hand_workload() {
  hw::Workload w;
  w.nodes = {node("conv", hw::OpCategory::Conv, 1e6), node("conv", hw::OpCategory::Conv, 2e6),
             node("avg_pool_3x3", hw::OpCategory::Pool, 0),
             node("activation", hw::OpCategory::Elementwise, 0, /*kernels=*/0)};
  return w;
}

}  // namespace

TEST(LearnedGbdt, FitsAKnownNonlinearFunction) {
  std::vector<std::vector<double>> x, xt;
  std::vector<double> y, yt;
  sample_function(1500, 1, x, y);
  sample_function(400, 2, xt, yt);
  const Gbdt g = fit_gbdt(x, y);
  std::vector<double> p;
  for (const auto& r : xt) p.push_back(g.predict(r));
  // A constant scores the spread itself (stddev ~1.2); the trees must explain nearly all of it
  // (measured: 3.7% of the spread).
  EXPECT_LT(rmse(p, yt), 0.06 * stddev(yt)) << "spread " << stddev(yt);
  // Same data, same trees.
  const Gbdt again = fit_gbdt(x, y);
  EXPECT_EQ(again.to_json(), g.to_json());
  // Depth limit: no tree deeper than asked, so at most 2^(depth+1) - 1 nodes.
  GbdtOptions shallow;
  shallow.depth = 2;
  shallow.trees = 5;
  for (const auto& t : fit_gbdt(x, y, shallow).trees) EXPECT_LE(t.feature.size(), 7u);
  EXPECT_THROW(fit_gbdt({}, {}), std::invalid_argument);
  EXPECT_THROW(fit_gbdt({{1.0}, {1.0, 2.0}}, {1, 2}), std::invalid_argument);
}

TEST(LearnedMlp, LearnsAKnownNonlinearFunction) {
  std::vector<std::vector<double>> x, xt;
  std::vector<double> y, yt;
  sample_function(1500, 3, x, y);
  sample_function(400, 4, xt, yt);
  search::LearnedFitOptions opt;
  opt.mlp_steps = 1500;
  const Mlp m = search::train_mlp(x, y, opt);
  std::vector<double> p;
  for (const auto& r : xt) p.push_back(m.predict(r));
  // measured: 7.4% of the spread (a constant: 100%).
  EXPECT_LT(rmse(p, yt), 0.12 * stddev(yt)) << "spread " << stddev(yt);
  // Seeded: the same fit twice.
  EXPECT_EQ(search::train_mlp(x, y, opt).to_json(), m.to_json());
}

TEST(LearnedModelFile, RoundTripGivesIdenticalPredictions) {
  const fs::path dir = temp_dir("roundtrip");
  LearnedModel m = hand_model();
  // A fitted GBDT and MLP as well, so every regressor's fields travel.
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  const hw::Workload w = hand_workload();
  for (int i = 0; i < 60; ++i) {
    hw::NodeWorkload n = node("dense", hw::OpCategory::Dense, 1e4 * (i + 1));
    x.push_back(node_features(n, 1, true));
    y.push_back(std::log(1e-3 * (i + 1)));
  }
  m.by_kind["dense"].chosen = "gbdt";
  m.by_kind["dense"].gbdt = fit_gbdt(x, y);
  search::LearnedFitOptions opt;
  opt.mlp_steps = 50;
  m.by_kind["mlp_kind"].chosen = "mlp";
  m.by_kind["mlp_kind"].mlp = search::train_mlp(x, y, opt);
  write_text(dir / "m.json", model_file_text(m));
  const LearnedModel back = load_model_file((dir / "m.json").string());
  EXPECT_EQ(back.to_json(), m.to_json());
  hw::Workload w2 = w;
  w2.nodes.push_back(node("dense", hw::OpCategory::Dense, 3e4));
  w2.nodes.push_back(node("mlp_kind", hw::OpCategory::Dense, 3e4));
  EXPECT_EQ(back.network_ms(w2, 1, true), m.network_ms(w2, 1, true));
  for (const auto& n : w2.nodes) EXPECT_EQ(back.node_ms(n, 1, true), m.node_ms(n, 1, true));
  fs::remove_all(dir);
}

TEST(LearnedModelFile, EachBadFileGivesOneClearError) {
  const fs::path dir = temp_dir("bad");
  const std::string good = model_file_text(hand_model());
  const std::string refit = "write it again with `hwnas hw fit`";
  auto who = [&](const char* f) { return "learned model '" + (dir / f).string() + "': "; };

  EXPECT_EQ(error_of_load(dir / "missing.json"),
            who("missing.json") +
                "cannot open the file: give the path of a model written by `hwnas hw fit` "
                "(relative to the device JSON)");

  write_text(dir / "truncated.json", good.substr(0, good.size() / 2));
  const std::string t = error_of_load(dir / "truncated.json");
  EXPECT_EQ(
      t.rfind(who("truncated.json") + "not valid JSON, the file is truncated or corrupted (", 0),
      0u)
      << t;
  EXPECT_EQ(t.substr(t.size() - refit.size() - 3), "): " + refit) << t;

  nlohmann::json j = nlohmann::json::parse(good);
  j["version"] = 1;  // before the window / stride features and the per-work target
  write_text(dir / "version.json", j.dump());
  EXPECT_EQ(
      error_of_load(dir / "version.json"),
      who("version.json") + "version 1, this hwnas reads version 2: " + refit + " of this hwnas");

  j = nlohmann::json::parse(good);
  j["format"] = "something-else";
  write_text(dir / "format.json", j.dump());
  EXPECT_EQ(error_of_load(dir / "format.json"),
            who("format.json") +
                "not a learned latency model (field 'format' is not \"hwnas-learned-latency\"): "
                "give the model file `hwnas hw fit` wrote");

  j = nlohmann::json::parse(good);
  const std::string stored = j["checksum"];
  j["model"]["net_scale"] = 2.5;  // a hand edit
  write_text(dir / "edited.json", j.dump());
  EXPECT_EQ(error_of_load(dir / "edited.json"),
            who("edited.json") + "checksum mismatch (file says " + stored + ", contents hash to " +
                hex16(fnv1a64(j["model"].dump())) + "): the file was edited or corrupted; " +
                refit);

  // A consistent checksum over a model missing a field (a file from a broken writer).
  j = nlohmann::json::parse(good);
  j["model"].erase("net_scale");
  j["checksum"] = hex16(fnv1a64(j["model"].dump()));
  write_text(dir / "field.json", j.dump());
  const std::string f = error_of_load(dir / "field.json");
  EXPECT_EQ(f.rfind(who("field.json") + "a field is missing or has the wrong type (", 0), 0u) << f;
  EXPECT_NE(f.find("net_scale"), std::string::npos) << f;

  // A target this hwnas does not predict.
  j = nlohmann::json::parse(good);
  j["model"]["target"] = "log_seconds";
  j["checksum"] = hex16(fnv1a64(j["model"].dump()));
  write_text(dir / "target.json", j.dump());
  const std::string tg = error_of_load(dir / "target.json");
  EXPECT_NE(tg.find("field 'target' is 'log_seconds' (log_ms_per_work or log_ms)"),
            std::string::npos)
      << tg;
  fs::remove_all(dir);
}

// Kernel types: max and average pools have the same counts (so the same features) but run
// different kernels.  With average pools 3x slower, a model that groups nodes by block kind
// predicts their mean for both; grouping by kernel type predicts each within a few percent.
// Times grow with the pool's size, which the per-work target (log ms - log_work) absorbs.
TEST(LearnedFit, SeparatesKernelTypesThatShareTheirCounts) {
  std::vector<search::MeasuredNetwork> nets;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> size(1e3, 1e5), noise(-0.01, 0.01);
  auto pool = [](const char* type, double elems) {
    hw::NodeWorkload n = node("pool", hw::OpCategory::Pool, 0);
    n.kernel_type = type;
    n.window = 2;
    n.stride = 2;
    n.input_bytes = 4 * elems;
    n.output_bytes = elems;
    n.other_flops = elems;
    return n;
  };
  auto ms_of = [](const char* type, double elems) {
    return (type[0] == 'a' ? 3e-5 : 1e-5) * elems;
  };
  for (int i = 0; i < 80; ++i) {
    search::MeasuredNetwork m;
    m.architecture = "net" + std::to_string(i);
    for (const char* t : {"max_pool", "avg_pool"}) {
      const double e = size(rng);
      m.workload.nodes.push_back(pool(t, e));
      m.node_ms.push_back(ms_of(t, e) * (1 + noise(rng)));
    }
    m.network_ms = m.node_ms[0] + m.node_ms[1];
    nets.push_back(std::move(m));
  }
  search::LearnedFitOptions opt;
  opt.seed = 3;
  const LearnedModel model = search::fit_learned_model(nets, opt);
  EXPECT_TRUE(model.by_kind.count("max_pool"));
  EXPECT_TRUE(model.by_kind.count("avg_pool"));
  EXPECT_FALSE(model.by_kind.count("pool"));
  for (double e : {2e3, 2e4, 8e4})
    for (const char* t : {"max_pool", "avg_pool"})
      EXPECT_NEAR(model.node_ms(pool(t, e), 1, true) / ms_of(t, e), 1.0, 0.08) << t << " " << e;
}

TEST(LearnedDevice, SumsNodePredictionsUnderTheFusionRule) {
  const fs::path dir = temp_dir("device");
  write_text(dir / "hand.model.json", model_file_text(hand_model()));
  const nlohmann::json d = {{"name", "hand"},
                            {"family", "learned"},
                            {"model", "hand.model.json"},
                            {"fusion", "eager"},
                            {"power_w", 10.0}};
  write_text(dir / "hand.json", d.dump());
  auto dev = hw::load_device((dir / "hand.json").string());
  EXPECT_EQ(dev->family(), "learned");
  const hw::Workload w = hand_workload();
  // Eager: 2 + 2 + 0.5 + 0.25 = 4.75 ms of nodes; 1.5 x 4.75 + 0.1 + 4 x 0.01 = 7.265 ms.
  const hw::Cost c = dev->estimate(w);
  EXPECT_NEAR(c.latency_ms, 7.265, 1e-9);
  EXPECT_NEAR(c.energy_mj, 72.65, 1e-9);  // 10 W x 7.265 ms
  ASSERT_EQ(c.nodes.size(), 4u);
  EXPECT_NEAR(c.nodes[0].latency_s, (1.5 * 2 + 0.01) * 1e-3, 1e-12);
  EXPECT_EQ(c.nodes[0].bound, "learned-kind");
  EXPECT_EQ(c.nodes[2].bound, "learned-category");
  EXPECT_EQ(c.nodes[3].bound, "learned-global");
  // Fused: the activation runs inside its producer's kernel: 1.5 x 4.5 + 0.1 + 0.04 = 6.89 ms.
  nlohmann::json fused = dev->to_json();
  fused["fusion"] = "fused";
  EXPECT_NEAR(hw::make_device(fused)->estimate_total(w).latency_ms, 6.89, 1e-9);
  // Round trip: the description (model path made absolute when loaded) rebuilds the device.
  auto again = hw::make_device(dev->to_json());
  EXPECT_EQ(again->estimate(w).latency_ms, c.latency_ms);
  EXPECT_EQ(hw::device_fingerprint(*again), hw::device_fingerprint(*dev));
  // Without power_w energy is not reported.
  nlohmann::json no_power = dev->to_json();
  no_power.erase("power_w");
  const hw::Cost np = hw::make_device(no_power)->estimate(w);
  EXPECT_EQ(np.energy_mj, 0);
  EXPECT_EQ(np.extra.at("energy"), "not reported: the device states no power_w");
  // A bad model file fails the device, naming the device, the field and the file.
  nlohmann::json bad = dev->to_json();
  bad["model"] = (dir / "nope.json").string();
  try {
    hw::make_device(bad);
    FAIL() << "accepted a missing model file";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind("device 'hand': field 'model' learned model '" +
                                              (dir / "nope.json").string() + "': cannot open",
                                          0),
              0u)
        << e.what();
  }
  fs::remove_all(dir);
}

TEST(NodeTiming, TimesEveryWorkloadNodeOfARealNetwork) {
  for (const char* name : {"cnn", "nb201"}) {
    auto space =
        spaces::load_space(std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/" + name + ".json");
    spaces::Rng rng(3);
    const spaces::Genome g = space->sample(rng);
    const hw::Workload w = spaces::build_workload(g);
    const spaces::NodeTimes t = spaces::time_nodes_ms(g, 1, 1, 3);
    ASSERT_EQ(t.node_ms.size(), w.nodes.size()) << name;
    for (std::size_t i = 0; i < w.nodes.size(); ++i) {
      EXPECT_EQ(t.names[i], w.nodes[i].name) << name;
      EXPECT_GT(t.node_ms[i], 0) << name << " " << t.names[i];
    }
    EXPECT_GT(t.network_ms, 0);
    // Node medians and the network median come from the same runs: the nodes cannot take
    // more than the network (small slack: medians of parts need not add up).
    EXPECT_LT(t.sum_node_ms(), 1.2 * t.network_ms + 0.01) << name;
  }
}

TEST(HwFit, MeasuresPerNodeFitsAndPredictsEndToEnd) {
  const fs::path dir = temp_dir("fit");
  const std::string space = std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/cnn.json";
  const fs::path csv = dir / "m.csv";
  auto r = run_hwnas("hw measure --space " + space + " --n 12 --reps 3 --warmup 1 --seed 5 " +
                     "--per-node --rounds 2 --min-ms 0.2 --out " + csv.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(dir / "m.nodes.csv")) << r.output;
  EXPECT_NE(r.output.find("mean sum of node times / network time"), std::string::npos);
  // The per-node CSV: a header with the features, one row per workload node.
  const std::string nodes = read_text(dir / "m.nodes.csv");
  EXPECT_EQ(nodes.rfind("architecture,node,name,kind,category,log_batch,log_macs,", 0), 0u);
  EXPECT_NE(nodes.find(",measured_ms\n"), std::string::npos);

  const fs::path dev = dir / "host_learned.json";
  r = run_hwnas("hw fit -m " + csv.string() + " --out " + dev.string() +
                " --holdout 0.25 --min-nodes 6 --seed 2 --power-w 30");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("held-out  rows    3  spearman "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("kind     conv"), std::string::npos) << r.output;
  ASSERT_TRUE(fs::exists(dir / "host_learned.model.json"));
  const auto dj = nlohmann::json::parse(read_text(dev));
  EXPECT_EQ(dj["family"], "learned");
  EXPECT_EQ(dj["model"], "host_learned.model.json");
  const auto model = load_model_file((dir / "host_learned.model.json").string());
  EXPECT_EQ(model.report.at("train_architectures"), 9);

  // The device predicts anywhere a device is: hw predict on a measured genome, from another cwd.
  std::string genome;
  for (const auto& e : fs::directory_iterator(dir / "m.csv.genomes")) genome = e.path().string();
  r = run_hwnas("hw predict --device " + dev.string() + " " + genome + " --format json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto pj = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_GT(pj.at("latency_ms").get<double>(), 0) << r.output;

  // Bad input: a per-node CSV that does not match the architectures.
  write_text(dir / "m.nodes.csv", "architecture,node,name,measured_ms\n");
  r = run_hwnas("hw fit -m " + csv.string() + " --out " + (dir / "x.json").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("but " + (dir / "m.nodes.csv").string() +
                          " lists 0 for it: measure again with `hwnas hw measure --per-node`"),
            std::string::npos)
      << r.output;
  fs::remove(dir / "m.nodes.csv");
  r = run_hwnas("hw fit -m " + csv.string() + " --out " + (dir / "x.json").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(
      r.output.find("cannot open per-node measurements '" + (dir / "m.nodes.csv").string() + "'"),
      std::string::npos)
      << r.output;
  fs::remove_all(dir);
}
