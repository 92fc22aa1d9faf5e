// The exporters (deploy/): the PyTorch module gives hwnas's logits on the same inputs (max abs
// difference <= 1e-4) for a CNN, an MLP, an attention genome, an int8 genome and a NAS-Bench-201
// style genome and a channel-pruned genome; every exported ONNX model passes onnx.checker (full
// check, with shape inference); block kinds without a faithful form are refused naming the kind.
// The Python checks FAIL (never skip) when python3-torch / python3-onnx are missing.
#include <gtest/gtest.h>

#include <random>

#include "deploy/export.hpp"
#include "deploy_test_util.hpp"
#include "nn/state_dict.hpp"
#include "spaces/model_builder.hpp"
#include "tests/temp_files.hpp"

using namespace hwnas;
using namespace deploy_test;
using nlohmann::json;
using spaces::Genome;
using spaces::TensorType;

namespace {

// A chain of nodes: each entry feeds the next.
Genome chain(TensorType in, const std::vector<std::pair<std::string, json>>& nodes) {
  Genome g(in);
  Genome::NodeId prev = g.input_node();
  for (const auto& [kind, params] : nodes) {
    auto v = g.add_node(kind, params);
    g.add_edge(prev, v);
    prev = v;
  }
  g.validate();
  return g;
}

Genome cnn() {
  return chain(
      TensorType::image(1, 28, 28),
      {{"conv", {{"channels", 8}, {"kernel", 3}, {"activation", "relu"}}},
       {"pool", {{"op", "max"}, {"kernel", 2}, {"stride", 2}}},
       {"dwconv", {{"kernel", 3}, {"stride", 2}, {"activation", "silu"}}},
       {"conv", {{"channels", 12}, {"kernel", 5}, {"activation", "gelu"}, {"batch_norm", false}}},
       {"norm", {{"type", "layer"}}},
       {"pool", {{"op", "avg"}, {"kernel", 3}, {"stride", 1}}},
       {"global_pool", json::object()},
       {"norm", {{"type", "batch"}}},
       {"head", {{"outputs", 10}}}});
}

Genome mlp() {
  return chain(TensorType::image(1, 28, 28),
               {{"flatten", json::object()},
                {"dense", {{"units", 64}, {"activation", "relu"}, {"prune", 0.3}}},
                {"norm", {{"type", "batch"}}},
                {"dense", {{"units", 32}, {"activation", "tanh"}, {"bias", false}}},
                {"dense", {{"units", 16}, {"activation", "sigmoid"}}},
                {"norm", {{"type", "layer"}}},
                {"head", {{"outputs", 10}}}});
}

// Full, causal and sliding attention (one of them int8) with a residual add and both norms.
Genome attention() {
  Genome g(TensorType::sequence(12, 16));
  auto d = g.add_node("dense", {{"units", 16}, {"activation", "gelu"}});
  auto a = g.add_node("attention", {{"heads", 2}});
  auto add = g.add_node("add");
  auto ln = g.add_node("norm", {{"type", "layer"}});
  auto c = g.add_node("attention", {{"heads", 4}, {"causal", true}, {"bits", 8}, {"rope", true}});
  auto s = g.add_node("sliding_attention", {{"heads", 2}, {"window", 3}, {"rope", true}});
  auto sc = g.add_node("sliding_attention", {{"heads", 1}, {"window", 2}, {"causal", true}});
  auto bn = g.add_node("norm", {{"type", "batch"}});
  auto gp = g.add_node("global_pool");
  auto h = g.add_node("head", {{"outputs", 5}});
  g.add_edge(g.input_node(), d);
  g.add_edge(d, a);
  g.add_edge(d, add);
  g.add_edge(a, add);
  for (auto [u, v] : std::vector<std::pair<Genome::NodeId, Genome::NodeId>>{
           {add, ln}, {ln, c}, {c, s}, {s, sc}, {sc, bn}, {bn, gp}, {gp, h}})
    g.add_edge(u, v);
  g.validate();
  return g;
}

Genome int8() {
  return chain(
      TensorType::image(1, 28, 28),
      {{"conv", {{"channels", 6}, {"kernel", 3}, {"bits", 8}}},
       {"pool", {{"op", "max"}, {"kernel", 2}, {"stride", 2}}},
       {"conv", {{"channels", 8}, {"kernel", 3}, {"stride", 2}, {"bits", 4}, {"prune", 0.5}}},
       {"dwconv", {{"kernel", 3}, {"bits", 8}}},
       {"flatten", json::object()},
       {"dense", {{"units", 32}, {"bits", 8}, {"activation", "relu"}}},
       {"head", {{"outputs", 10}, {"bits", 8}}}});
}

// Structured channel pruning: the pruned convs and dense layers are built at their kept width
// (16 -> 8, 12 -> 9 channels; 32 -> 8 units), the dwconv follows its producer's 8 channels, and
// the exports take those shapes from the weights; mixed with int8 / int4 and a magnitude mask.
Genome channel_pruned() {
  return chain(TensorType::image(1, 28, 28),
               {{"conv", {{"channels", 16}, {"kernel", 3}, {"stride", 2}, {"channel_prune", 0.5}}},
                {"dwconv", {{"kernel", 3}, {"bits", 8}}},
                {"conv", {{"channels", 12}, {"kernel", 3}, {"channel_prune", 0.25}, {"bits", 8}}},
                {"pool", {{"op", "max"}, {"kernel", 2}, {"stride", 2}}},
                {"flatten", json::object()},
                {"dense",
                 {{"units", 32},
                  {"channel_prune", 0.75},
                  {"bits", 4},
                  {"prune", 0.3},
                  {"activation", "relu"}}},
                {"head", {{"outputs", 10}}}});
}

// NAS-Bench-201's operations: a cell-like join of every edge op, concat, the reduction block.
Genome nb201() {
  Genome g(TensorType::image(1, 16, 16));
  auto stem = g.add_node("conv", {{"channels", 4}, {"kernel", 3}});
  auto c3 = g.add_node("nor_conv_3x3");
  auto c1 = g.add_node("nor_conv_1x1");
  auto ap = g.add_node("avg_pool_3x3");
  auto sk = g.add_node("skip_connect");
  auto z = g.add_node("none");
  auto sum = g.add_node("add");
  auto cat = g.add_node("concat");
  auto red = g.add_node("nb201_reduction", {{"channels", 8}});
  auto act = g.add_node("activation", {{"fn", "relu"}});
  auto gp = g.add_node("global_pool");
  auto h = g.add_node("head", {{"outputs", 10}});
  g.add_edge(g.input_node(), stem);
  for (auto v : {c3, c1, ap, sk, z}) g.add_edge(stem, v);
  for (auto v : {c3, c1, ap, z}) g.add_edge(v, sum);
  g.add_edge(sum, cat);
  g.add_edge(sk, cat);
  for (auto [u, v] : std::vector<std::pair<Genome::NodeId, Genome::NodeId>>{
           {cat, red}, {red, act}, {act, gp}, {gp, h}})
    g.add_edge(u, v);
  g.validate();
  return g;
}

// Weights and batch-norm statistics far from their initial values, so that every tensor matters.
void randomise(nn::Module& m, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.4f);
  std::uniform_real_distribution<float> var(0.5f, 2.0f);
  nn::StateDict sd = nn::state_dict(m);
  for (auto& [name, t] : sd) {
    const bool is_var = name.find("running_var") != std::string::npos;
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = is_var ? var(rng) : normal(rng);
  }
  nn::load_state_dict(m, sd);
}

void write_floats(const fs::path& p, const nn::Tensor& t) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(t.data()),
            static_cast<std::streamsize>(t.numel() * sizeof(float)));
}

constexpr const char* kCompareScript = R"py(
import importlib.util, sys
import numpy as np, torch
spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
shape = [int(v) for v in sys.argv[4].split(",")]
x = np.fromfile(sys.argv[2], dtype="<f4").reshape(shape)
want = np.fromfile(sys.argv[3], dtype="<f4")
net = mod.Net().eval()
with torch.no_grad():
    got = net(torch.from_numpy(x)).numpy().reshape(-1)
assert got.shape == want.shape, (got.shape, want.shape)
print("max_abs_diff %.6e" % float(np.abs(got - want).max()))
)py";

struct ExportCase {
  std::string name;
  Genome (*make)();
};

class Exported : public ::testing::TestWithParam<ExportCase> {
 protected:
  // A model with random weights and statistics, a random batch of 3 inputs written to x.bin and
  // hwnas's evaluation-mode outputs written to y.bin; returns the input shape "3,1,28,28".
  std::string reference(const fs::path& dir, Genome& g, std::unique_ptr<spaces::GenomeModel>& m,
                        std::int64_t& outputs) {
    g = GetParam().make();
    m = spaces::build_model(g, 11);
    randomise(*m, 5);
    std::vector<int> dims = g.input_type().dims;
    dims.insert(dims.begin(), 3);
    nn::Tensor x{nn::Shape(dims)};
    std::mt19937_64 rng(9);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = normal(rng);
    nn::NoGradGuard no_grad;
    nn::ForwardContext ctx;
    ctx.training = false;
    const nn::Tensor logits = m->forward(nn::constant(x), ctx).value().clone();
    outputs = logits.numel();
    write_floats(dir / "x.bin", x);
    write_floats(dir / "y.bin", logits);
    std::string shape;
    for (int d : dims) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    return shape;
  }
  // Runs `script model x.bin y.bin shape`; returns the max abs difference it prints.
  double compare(const fs::path& dir, const std::string& script, const fs::path& model,
                 const std::string& shape) {
    const auto r =
        run_command(kPython + " " + script + " " + model.string() + " " + (dir / "x.bin").string() +
                        " " + (dir / "y.bin").string() + " " + shape,
                    dir);
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    const auto pos = r.out.find("max_abs_diff ");
    if (r.code != 0 || pos == std::string::npos) {
      ADD_FAILURE() << "no max_abs_diff in: " << r.out << r.err;
      return 1e9;
    }
    return std::stod(r.out.substr(pos + 13));
  }
};

TEST_P(Exported, PyTorchModuleGivesHwnasLogits) {
  const std::string missing = python_module_missing("torch", "python3-torch");
  ASSERT_EQ(missing, "") << missing;
  const fs::path dir = temp_dir("pt_" + GetParam().name);
  Genome g;
  std::unique_ptr<spaces::GenomeModel> model;
  std::int64_t outputs = 0;
  const std::string shape = reference(dir, g, model, outputs);
  std::ofstream(dir / "compare.py") << kCompareScript;
  deploy::export_pytorch(g, nn::state_dict(*model), (dir / "net.py").string(),
                         (dir / "net.weights.bin").string());
  const double diff = compare(dir, (dir / "compare.py").string(), dir / "net.py", shape);
  std::cout << "[export equality] pytorch " << GetParam().name << ": max abs difference " << diff
            << " over " << outputs << " outputs\n";
  RecordProperty("max_abs_diff", std::to_string(diff));
  EXPECT_LE(diff, 1e-4) << GetParam().name;
  fs::remove_all(dir);
}

// Debian has no onnxruntime: tests/deploy/onnx_reference.py runs the ONNX graph op by op after
// the operator specifications, so the ONNX file is checked for its numbers, not only its form.
TEST_P(Exported, OnnxGraphGivesHwnasLogits) {
  for (const auto& [module, package] :
       {std::pair<std::string, std::string>{"onnx", "python3-onnx"}, {"torch", "python3-torch"}}) {
    const std::string missing = python_module_missing(module, package);
    ASSERT_EQ(missing, "") << missing;
  }
  const fs::path dir = temp_dir("onnxref_" + GetParam().name);
  Genome g;
  std::unique_ptr<spaces::GenomeModel> model;
  std::int64_t outputs = 0;
  const std::string shape = reference(dir, g, model, outputs);
  deploy::export_onnx(g, nn::state_dict(*model), (dir / "net.onnx").string());
  const double diff =
      compare(dir, std::string(HWNAS_TEST_DIR) + "/onnx_reference.py", dir / "net.onnx", shape);
  std::cout << "[export equality] onnx " << GetParam().name << ": max abs difference " << diff
            << " over " << outputs << " outputs\n";
  RecordProperty("max_abs_diff", std::to_string(diff));
  EXPECT_LE(diff, 1e-4) << GetParam().name;
  fs::remove_all(dir);
}

TEST_P(Exported, OnnxPassesTheChecker) {
  const std::string missing = python_module_missing("onnx", "python3-onnx");
  ASSERT_EQ(missing, "") << missing;
  const fs::path dir = temp_dir("onnx_" + GetParam().name);
  const Genome g = GetParam().make();
  auto model = spaces::build_model(g, 3);
  const fs::path path = dir / "net.onnx";
  deploy::export_onnx(g, nn::state_dict(*model), path.string());
  const auto r =
      run_command(kPython +
                      " -c \"import onnx, sys; m = onnx.load(sys.argv[1]); "
                      "onnx.checker.check_model(m, full_check=True); "
                      "print(len(m.graph.node), sorted({n.op_type for n in m.graph.node}))\" " +
                      path.string(),
                  dir);
  EXPECT_EQ(r.code, 0) << r.err;
  std::cout << "[onnx] " << GetParam().name << ": " << r.out;
  if (GetParam().name == "int8") {
    EXPECT_NE(r.out.find("QuantizeLinear"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("DequantizeLinear"), std::string::npos) << r.out;
  }
  if (GetParam().name == "attention") {
    EXPECT_NE(r.out.find("Softmax"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("QuantizeLinear"), std::string::npos) << r.out;
  }
  EXPECT_FALSE(hwnas::test::temp_sibling_exists(path.string()));
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Genomes, Exported,
                         ::testing::Values(ExportCase{"cnn", cnn}, ExportCase{"mlp", mlp},
                                           ExportCase{"attention", attention},
                                           ExportCase{"int8", int8}, ExportCase{"nb201", nb201},
                                           ExportCase{"channel_pruned", channel_pruned}),
                         [](const auto& info) { return info.param.name; });

TEST(ExportRefusal, KindWithoutFaithfulFormIsNamed) {
  const Genome g =
      chain(TensorType::vector(8), {{"kan", {{"units", 4}}}, {"head", {{"outputs", 3}}}});
  auto model = spaces::build_model(g, 1);
  const fs::path dir = temp_dir("refuse");
  for (const std::string format : {"onnx", "pytorch"}) {
    try {
      if (format == "onnx")
        deploy::export_onnx(g, nn::state_dict(*model), (dir / "x.onnx").string());
      else
        deploy::export_pytorch(g, nn::state_dict(*model), (dir / "x.py").string(),
                               (dir / "x.weights.bin").string());
      FAIL() << format << " exported a kan block";
    } catch (const deploy::ExportError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("node 1 is a 'kan' block"), std::string::npos) << msg;
      EXPECT_NE(msg.find("no faithful"), std::string::npos) << msg;
    }
  }
  EXPECT_TRUE(fs::is_empty(dir));  // nothing written
  fs::remove_all(dir);
}

TEST(ExportWeights, PrunedWeightAndScaleMatchTheTrainingCompression) {
  nn::Tensor w(nn::Shape{2, 3});
  const float v[] = {0.1f, -0.5f, 0.05f, 2.0f, -0.2f, 1.0f};
  std::copy(v, v + 6, w.data());
  const nn::Tensor p = deploy::pruned_weight(w, 0.5);  // the 3 smallest magnitudes go
  const float want[] = {0.0f, -0.5f, 0.0f, 2.0f, 0.0f, 1.0f};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(p.data()[i], want[i]) << i;
  // One scale per output channel (row): max |row| / qmax.
  EXPECT_EQ(deploy::quant_scales(p, 8), (std::vector<float>{0.5f / 127.0f, 2.0f / 127.0f}));
  EXPECT_EQ(deploy::quant_scales(p, 4), (std::vector<float>{0.5f / 7.0f, 2.0f / 7.0f}));
  EXPECT_TRUE(deploy::quant_scales(p, 16).empty());
  // A vector has one scale; an all-zero one gets 1 (its zeros stay zeros).
  EXPECT_EQ(deploy::quant_scales(nn::Tensor(nn::Shape{3}, 0.0f), 8), (std::vector<float>{1.0f}));
}

}  // namespace
