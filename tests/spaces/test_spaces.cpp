// Spaces from JSON: the example spaces (sampling, mutation, crossover, neighbours, encodings,
// built models), the NAS-Bench-201 space, and every definition error.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <unordered_set>

#include "spaces/model_builder.hpp"
#include "spaces/space.hpp"
#include "tests/nn/gradcheck.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;

namespace {

std::string example(const std::string& name) {
  return std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/" + name + ".json";
}

const std::vector<std::string> kExamples = {
    "cnn",   "mlp",     "attention",       "darts_cell",
    "nb201", "spiking", "continuous_time", "spiking_vs_classic"};

std::string load_error(const json& def) {
  try {
    make_space(def);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

json cnn_def() {
  return json::parse(
      R"({"type": "macro", "input": {"kind": "image", "shape": [1, 28, 28]}, "outputs": 10,
    "stages": [{"blocks": ["conv"], "depth": [1, 2], "params": {"channels": [8, 16], "stride": 2}}]})");
}

}  // namespace

TEST(Spaces, ExamplesLoad) {
  for (const auto& name : kExamples) {
    auto s = load_space(example(name));
    EXPECT_EQ(s->num_outputs(), 10) << name;
    EXPECT_EQ(make_space(s->to_json())->type(), s->type()) << name;
  }
}

// 10,000 samples and 10,000 mutations per example space, all valid and inside the space.
TEST(Spaces, SamplesAndMutationsAreValidSlow) {
  for (const auto& name : kExamples) {
    SCOPED_TRACE(name);
    auto s = load_space(example(name));
    Rng rng(42);
    const int n = 10000;
    Genome g = s->sample(rng);
    std::unordered_set<std::string> seen;
    for (int i = 0; i < n; ++i) {
      Genome a = s->sample(rng);
      ASSERT_TRUE(a.is_valid()) << s->describe(a);
      ASSERT_EQ(a.input_type(), s->input_type());
      g = s->mutate(g, rng);
      ASSERT_TRUE(g.is_valid()) << s->describe(g);
      if (i < 50) {
        EXPECT_TRUE(s->contains(a)) << s->describe(a);
        EXPECT_TRUE(s->contains(g)) << s->describe(g);
      }
      if (i < 300) seen.insert(s->describe(a));
    }
    EXPECT_GT(seen.size(), 20u);  // sampling explores
  }
}

TEST(Spaces, SamplingIsDeterministicPerSeed) {
  for (const auto& name : kExamples) {
    auto s = load_space(example(name));
    Rng a(7), b(7);
    for (int i = 0; i < 20; ++i)
      EXPECT_EQ(s->describe(s->sample(a)), s->describe(s->sample(b))) << name;
  }
}

TEST(Spaces, MutationChangesOneDecision) {
  for (const auto& name : kExamples) {
    auto s = load_space(example(name));
    Rng rng(3);
    for (int i = 0; i < 50; ++i) {
      Genome g = s->sample(rng);
      Genome m = s->mutate(g, rng);
      EXPECT_NE(s->describe(g), s->describe(m)) << name;
    }
  }
}

TEST(Spaces, CrossoverNeighboursEncodingsDescribe) {
  for (const auto& name : kExamples) {
    SCOPED_TRACE(name);
    auto s = load_space(example(name));
    Rng rng(9);
    std::size_t onehot_len = 0, path_len = 0;
    for (int i = 0; i < 30; ++i) {
      Genome a = s->sample(rng), b = s->sample(rng);
      Genome c = s->crossover(a, b, rng);
      EXPECT_TRUE(c.is_valid());
      EXPECT_TRUE(s->contains(c));
      // describe/parse round trip, also through the genome's JSON.
      EXPECT_EQ(s->parse(s->describe(a)).hash(), a.hash());
      Genome a2 = Genome::from_json(a.to_json());
      EXPECT_EQ(s->describe(a2), s->describe(a));
      auto oh = s->encode_onehot(a), pe = s->encode_path(a);
      if (i == 0) {
        onehot_len = oh.size();
        path_len = pe.size();
      }
      EXPECT_EQ(oh.size(), onehot_len);
      EXPECT_EQ(pe.size(), path_len);
      if (i < 3) {
        auto nbrs = s->neighbours(a);
        EXPECT_FALSE(nbrs.empty());
        std::set<std::string> hashes;
        for (const auto& nb : nbrs) {
          EXPECT_TRUE(nb.is_valid());
          EXPECT_NE(s->describe(nb), s->describe(a));
        }
      }
    }
    EXPECT_GT(onehot_len, 0u);
    EXPECT_GT(path_len, 0u);
  }
}

TEST(Spaces, BuiltModelsProduceLogits) {
  for (const auto& name : kExamples) {
    SCOPED_TRACE(name);
    auto s = load_space(example(name));
    Rng rng(1);
    Genome g = s->sample(rng);
    auto model = build_model(g, 1);
    std::vector<int> dims{2};
    for (int d : s->input_type().dims) dims.push_back(d);
    std::mt19937_64 r(1);
    nn::ForwardContext ctx;
    ctx.rng = &r;
    nn::Var y = model->forward(nn::constant(nn::testing::random_tensor(nn::Shape(dims), r)), ctx);
    EXPECT_EQ(y.shape(), (nn::Shape{2, 10}));
    EXPECT_GT(model->num_parameters(), 0);
  }
}

TEST(Spaces, SequenceBlocksOnlyWhereTheyFit) {
  auto def = cnn_def();
  def["stages"][0]["blocks"] = {"conv", "attention"};
  std::string e = load_error(def);
  EXPECT_NE(e.find("space.stages[0].blocks[1]: 'attention' does not accept image data here "
                   "(accepts sequence)"),
            std::string::npos)
      << e;
  // After flattening, image blocks cannot follow.
  def = cnn_def();
  def["stages"].push_back({{"blocks", {"dense"}}});
  def["stages"].push_back({{"blocks", {"conv"}}});
  e = load_error(def);
  EXPECT_NE(e.find("space.stages[2].blocks[0]: 'conv' does not accept vector data here"),
            std::string::npos)
      << e;
}

TEST(SpaceErrors, EachFieldNamed) {
  auto expect = [](json def, const std::string& what) {
    std::string e = load_error(def);
    EXPECT_NE(e.find(what), std::string::npos) << "got: " << e;
  };
  auto d = cnn_def();
  d.erase("type");
  expect(d, "space.type: missing");
  d = cnn_def();
  d["type"] = "grid";
  expect(d, "space.type: unknown space type 'grid' (known: cell, macro, nb201, union)");
  d = cnn_def();
  d["stages"] = json::array();
  expect(d, "space.stages: must be a non-empty array");
  d = cnn_def();
  d["stages"][0]["params"]["channels"] = {8, -8};
  expect(d, "space.stages[0].params.channels[1]: conv: -8 not in int [1, 4096]");
  d = cnn_def();
  d["stages"][0]["blocks"] = {"convv"};
  expect(d, "space.stages[0].blocks[0]: unknown block kind 'convv' (known: activation, add");
  d = cnn_def();
  d["stages"][0]["blocks"] = {"add"};
  expect(d, "takes several inputs");
  d = cnn_def();
  d["stages"][0]["depth"] = {3, 1};
  expect(d, "space.stages[0].depth: [3,1] must be an integer or [min, max]");
  d = cnn_def();
  d["stages"][0]["params"]["units"] = 8;
  expect(d, "space.stages[0].params.units: no block of the stage has a param 'units'");
  d = cnn_def();
  d["stages"][0]["params"]["bits"] = 8;
  expect(d, "space-level 'bits'");
  d = cnn_def();
  d["stages"][0]["skip"] = "sometimes";
  expect(d, "space.stages[0].skip");
  d = cnn_def();
  d["stages"][0]["widht"] = 2;
  expect(d, "space.stages[0].widht: unknown field");
  d = cnn_def();
  d["bits"] = {32, 7};
  expect(d, "space.bits[1]: 7 must be one of 32, 16, 8, 4");
  d = cnn_def();
  d["prune"] = {0.95};
  expect(d, "space.prune[0]");
  d = cnn_def();
  d["width_multipliers"] = {-1};
  expect(d, "space.width_multipliers[0]");
  d = cnn_def();
  d["outputs"] = 0;
  expect(d, "space.outputs: 0 must be an integer in [1, 100000]");
  d = cnn_def();
  d["input"] = {{"kind", "image"}, {"shape", {1, 28}}};
  expect(d, "space.input.shape: a image needs 3 dimensions");
  d = cnn_def();
  d["input"]["kind"] = "graph";
  expect(d, "space.input.kind: unknown data kind 'graph'");
  // Choices that can produce invalid genomes are found at load.
  d = json::parse(R"({"type": "macro", "input": {"kind": "sequence", "shape": [8, 6]}, "outputs": 2,
      "stages": [{"blocks": ["attention"], "params": {"heads": [1, 4]}}]})");
  expect(d, "the choices allow invalid architectures");
}

TEST(SpaceErrors, CellSpace) {
  auto base =
      json::parse(R"({"type": "cell", "input": {"kind": "image", "shape": [3, 8, 8]}, "outputs": 10,
      "nodes": 2, "ops": ["nor_conv_3x3", "skip_connect"], "stages": [{"cells": 1, "channels": 4}]})");
  EXPECT_EQ(load_error(base), "(no error)");
  auto d = base;
  d["ops"] = json::array();
  EXPECT_NE(load_error(d).find("space.ops: must be a non-empty array"), std::string::npos);
  d = base;
  d["ops"] = {"conv"};
  EXPECT_NE(load_error(d).find("space.ops[0]: 'conv' changes image[4,8,8] to image[16,8,8]"),
            std::string::npos)
      << load_error(d);
  d = base;
  d["input"]["kind"] = "sequence";
  d["input"]["shape"] = {8, 8};
  EXPECT_NE(load_error(d).find("space.input.kind: cell spaces need image input"),
            std::string::npos);
  d = base;
  d["nodes"] = 0;
  EXPECT_NE(load_error(d).find("space.nodes"), std::string::npos);
}

TEST(Cell, SizeAndEnumerationAgree) {
  auto def =
      json::parse(R"({"type": "cell", "input": {"kind": "image", "shape": [3, 8, 8]}, "outputs": 10,
      "nodes": 3, "inputs_per_node": 2, "ops": ["none", "nor_conv_1x1", "avg_pool_3x3"],
      "stages": [{"cells": 1, "channels": 4}, {"cells": 1, "channels": 8}]})");
  auto s = make_space(def);
  // node1: 1 input x 3 ops; node2: C(2,2) x 9; node3: C(3,2) x 9.
  ASSERT_EQ(s->size().value(), 3u * 9 * 27);
  auto all = s->enumerate();
  ASSERT_EQ(all.size(), 729u);
  std::set<std::string> strings, hashes;
  for (const auto& g : all) {
    strings.insert(s->describe(g));
    hashes.insert(g.hash());
  }
  EXPECT_EQ(strings.size(), 729u);
  EXPECT_EQ(hashes.size(), 729u);
  EXPECT_EQ(
      s->describe(s->parse("|avg_pool_3x3~0|+|none~0|nor_conv_1x1~1|+|none~1|avg_pool_3x3~2|")),
      "|avg_pool_3x3~0|+|none~0|nor_conv_1x1~1|+|none~1|avg_pool_3x3~2|");
  EXPECT_THROW(s->parse("|avg_pool_3x3~0|+|none~0|nor_conv_1x1~0|+|none~1|avg_pool_3x3~2|"),
               std::invalid_argument);
}

TEST(Macro, SmallSpaceEnumeratesItsSize) {
  auto def = cnn_def();
  def["bits"] = {32, 8};
  auto s = make_space(def);
  // 2 channel choices x (depth 1: 2 bit choices + depth 2: 4) = 12.
  ASSERT_EQ(s->size().value(), 12u);
  auto all = s->enumerate();
  EXPECT_EQ(all.size(), 12u);
  std::set<std::string> hashes;
  for (const auto& g : all) hashes.insert(g.hash());
  EXPECT_EQ(hashes.size(), 12u);
}

// A shared choice is taken once per architecture and given to every layer that has the param.
TEST(Macro, SharedChoiceReachesEveryLayer) {
  auto def = json::parse(
      R"({"type": "macro", "input": {"kind": "image", "shape": [1, 28, 28]}, "outputs": 10,
          "shared": {"timesteps": [2, 4]}, "readout": "none",
          "stages": [{"blocks": ["spike_encoder"]},
                     {"blocks": ["spiking_conv"], "depth": [0, 1], "params": {"channels": [4, 8], "stride": 2}},
                     {"blocks": ["spiking_dense"], "params": {"units": [16, 32]}},
                     {"blocks": ["spike_readout"], "params": {"outputs": 10}}]})");
  auto s = make_space(def);
  // Decision sets: 2 timesteps x (2 channel choices x depths 0 and 1) x 2 units = 16; the
  // channel choice means nothing at depth 0, so 2 x (1 + 2) x 2 = 12 distinct architectures.
  ASSERT_EQ(s->size().value(), 16u);
  auto all = s->enumerate();
  ASSERT_EQ(all.size(), 16u);
  std::set<std::string> hashes;
  for (const auto& g : all) hashes.insert(g.hash());
  EXPECT_EQ(hashes.size(), 12u);
  std::set<int> seen;
  for (const auto& g : all) {
    std::set<int> steps;  // every timed node of one genome agrees
    for (Genome::NodeId v = 0; v < g.num_nodes(); ++v)
      if (g.node(v).params.contains("timesteps"))
        steps.insert(g.node(v).params["timesteps"].get<int>());
    ASSERT_EQ(steps.size(), 1u) << s->describe(g);
    seen.insert(*steps.begin());
    // readout none: the spike readout is the output node, no head after it.
    EXPECT_EQ(g.node(g.output_node()).kind, "spike_readout");
    EXPECT_EQ(s->parse(s->describe(g)).hash(), g.hash());
  }
  EXPECT_EQ(seen, (std::set<int>{2, 4}));
  // Mutation can change the shared choice; neighbours include both values.
  Rng rng(3);
  auto g = s->sample(rng);
  bool other = false;
  for (const auto& n : s->neighbours(g))
    other |= json::parse(s->describe(n))["shared"] != json::parse(s->describe(g))["shared"];
  EXPECT_TRUE(other);
  EXPECT_EQ(s->encode_onehot(g).size(), s->encode_onehot(all.front()).size());
}

TEST(Macro, PerTokenReadoutKeepsTheSequence) {
  auto def = json::parse(
      R"({"type": "macro", "input": {"kind": "sequence", "shape": [16, 6]}, "outputs": 5,
          "readout": "per_token",
          "stages": [{"blocks": ["dense"], "params": {"units": [8]}},
                     {"blocks": ["attention"], "params": {"heads": [1, 2]}}]})");
  auto s = make_space(def);
  Rng rng(1);
  auto g = s->sample(rng);
  EXPECT_EQ(g.node(g.output_node()).kind, "head");
  EXPECT_EQ(g.node(g.output_node()).out, TensorType::sequence(16, 5));
}

TEST(SpaceErrors, SharedAndReadout) {
  auto expect = [](json def, const std::string& what) {
    std::string e = load_error(def);
    EXPECT_NE(e.find(what), std::string::npos) << "got: " << e;
  };
  auto d = cnn_def();
  d["readout"] = "tokens";
  expect(d, R"(space.readout: "tokens" must be "pool", "per_token" or "none")");
  d = cnn_def();
  d["readout"] = "per_token";
  expect(d, "space.readout: per_token needs the last stage to give a sequence");
  d = cnn_def();
  d["readout"] = "none";
  expect(d, "readout none needs the last block to give vector[10]");
  d = cnn_def();
  d["shared"] = {{"timesteps", {4}}};
  expect(d, "space.shared.timesteps: no block of any stage has a param 'timesteps'");
  d = cnn_def();
  d["shared"] = {{"kernel", {3, 4}}};
  expect(d, "space.shared.kernel[1]: conv: 4 not in");
  d = cnn_def();
  d["shared"] = {{"channels", {8}}};
  expect(d, "space.shared.channels: cannot be shared");
  d = cnn_def();
  d["shared"] = {{"kernel", {3}}};
  d["stages"][0]["params"]["kernel"] = 3;
  expect(d, "space.stages[0].params.kernel: 'kernel' is a shared choice of the space");
}

// ---- union ----

namespace {
json union_def() {
  return json::parse(R"({"type": "union", "spaces": [
    {"type": "macro", "input": {"kind": "image", "shape": [1, 28, 28]}, "outputs": 10,
     "stages": [{"blocks": ["dense", "kan"], "params": {"units": [16, 32]}}]},
    {"type": "macro", "input": {"kind": "image", "shape": [1, 28, 28]}, "outputs": 10,
     "shared": {"timesteps": [2, 4]}, "readout": "none",
     "stages": [{"blocks": ["spike_encoder"]},
                {"blocks": ["spiking_dense"], "params": {"units": [16, 32]}},
                {"blocks": ["spike_readout"], "params": {"outputs": 10}}]}]})");
}
}  // namespace

TEST(Union, BranchesSampledMutatedAndRoundTripped) {
  auto s = make_space(union_def());
  EXPECT_EQ(s->type(), "union");
  // Branch sizes 4 and 4 decision sets.
  ASSERT_EQ(s->size().value(), 8u);
  auto all = s->enumerate();
  ASSERT_EQ(all.size(), 8u);
  const std::size_t len = s->encode_onehot(all.front()).size();
  for (const auto& g : all) {
    EXPECT_TRUE(s->contains(g));
    EXPECT_EQ(s->parse(s->describe(g)).hash(), g.hash());
    EXPECT_EQ(s->encode_onehot(g).size(), len);
    EXPECT_EQ(s->encode_path(g).size(), s->encode_path(all.front()).size());
  }
  Rng rng(7);
  std::set<std::size_t> branches, mutated_to;
  for (int i = 0; i < 50; ++i) {
    Genome g = s->sample(rng);
    const std::size_t b = g.meta()["branch"].get<std::size_t>();
    branches.insert(b);
    Genome m = s->mutate(g, rng);
    EXPECT_TRUE(s->contains(m));
    if (m.meta()["branch"].get<std::size_t>() != b) mutated_to.insert(b);
    for (const auto& n : s->neighbours(g)) EXPECT_EQ(n.meta()["branch"].get<std::size_t>(), b);
    Genome c = s->crossover(g, s->sample(rng), rng);
    EXPECT_TRUE(s->contains(c));
  }
  EXPECT_EQ(branches, (std::set<std::size_t>{0, 1}));
  EXPECT_FALSE(mutated_to.empty());  // switch_probability 0.2: some of 50 mutations jump
  // A genome of a branch alone (no union meta) is not in the union.
  auto branch = make_space(union_def()["spaces"][0]);
  EXPECT_FALSE(s->contains(branch->sample(rng)));
  // The weights steer sampling.
  auto d = union_def();
  d["weights"] = {0, 1};
  auto only_spiking = make_space(d);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(only_spiking->sample(rng).meta()["branch"], 1);
}

TEST(SpaceErrors, UnionSpace) {
  auto expect = [](json def, const std::string& what) {
    std::string e = load_error(def);
    EXPECT_NE(e.find(what), std::string::npos) << "got: " << e;
  };
  auto d = union_def();
  d["spaces"].erase(1);
  expect(d, "space.spaces: must be an array of at least two space definitions");
  d = union_def();
  d["spaces"][1]["outputs"] = 5;
  d["spaces"][1]["stages"][2]["params"]["outputs"] = 5;
  expect(d, "space.spaces[1].outputs: 5 differs from spaces[0]'s 10");
  d = union_def();
  d["spaces"][1]["stages"][1]["blocks"] = {"spiking_dens"};
  expect(d, "space.spaces[1].stages[1].blocks[0]: unknown block kind 'spiking_dens'");
  d = union_def();
  d["spaces"][0] = union_def();
  expect(d, "space.spaces[0].type: a union cannot hold another union");
  d = union_def();
  d["weights"] = {1};
  expect(d, "space.weights: must list one weight per space (2)");
  d = union_def();
  d["weights"] = {0, 0};
  expect(d, "space.weights: at least one weight must be positive");
  d = union_def();
  d["switch_probability"] = 2;
  expect(d, "space.switch_probability: 2 must be a number in [0, 1]");
  d = union_def();
  d["spaces"][1]["input"]["shape"] = {1, 14, 14};
  expect(d, "space.spaces[1].input: image[1,14,14] differs from spaces[0]'s image[1,28,28]");
}

// ---- NAS-Bench-201 ----

TEST(Nb201, ArchStringRoundTrip) {
  auto s = load_space(example("nb201"));
  const std::string arch =
      "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_"
      "connect~2|";
  Genome g = s->parse(arch);
  EXPECT_EQ(s->describe(g), arch);
  // describe reads the structure, not only meta.
  Genome bare = g;
  bare.meta() = json::object();
  EXPECT_EQ(s->describe(bare), arch);
  EXPECT_TRUE(s->contains(bare));
  EXPECT_EQ(s->encode_onehot(g).size(), 30u);
  EXPECT_EQ(s->encode_path(g).size(), 84u);
  for (const char* bad :
       {"|nor_conv_3x3~0|+|nor_conv_3x3~0|",
        "|conv~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
        "|nor_conv_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_"
        "connect~2|"})
    EXPECT_THROW(s->parse(bad), std::invalid_argument) << bad;
}

TEST(Nb201, SkeletonIsExact) {
  auto s = load_space(example("nb201"));
  Genome g = s->parse(
      "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_"
      "3x3~2|");
  std::map<std::string, int> kinds;
  for (std::size_t v = 0; v < g.num_nodes(); ++v) kinds[g.node(v).kind]++;
  EXPECT_EQ(kinds["nor_conv_3x3"], 6 * 15);
  EXPECT_EQ(kinds["add"], 2 * 15);
  EXPECT_EQ(kinds["nb201_reduction"], 2);
  EXPECT_EQ(kinds["conv"], 1);
  EXPECT_EQ(kinds["head"], 1);
  auto stem = g.outputs_of(0).at(0);
  EXPECT_EQ(g.node(stem).out.str(), "image[16,32,32]");
  EXPECT_EQ(g.node(g.output_node()).out.str(), "vector[10]");
  // NB201's API reports 1.531546 MB of parameters for the all-conv3x3 cell and 0.073306 MB for
  // the all-none cell on CIFAR-10 (the extremes of its 15625 architectures).
  EXPECT_EQ(build_model(g, 1)->num_parameters(), 1531546);
  auto empty = s->parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|");
  EXPECT_EQ(build_model(empty, 1)->num_parameters(), 73306);
}

TEST(Nb201, NeighboursAndSize) {
  auto s = load_space(example("nb201"));
  ASSERT_EQ(s->size().value(), 15625u);
  Rng rng(1);
  Genome g = s->sample(rng);
  auto n = s->neighbours(g);
  EXPECT_EQ(n.size(), 24u);
}

// Every one of the 15625 cells: its string parses back to the same genome, and strings and
// genome hashes are all distinct.
TEST(Nb201, EnumerationRoundTripsEveryStringSlow) {
  auto s = load_space(example("nb201"));
  std::unordered_set<std::string> strings, hashes;
  for (std::uint64_t i = 0; i < *s->size(); ++i) {
    Genome g = s->at(i);
    std::string arch = s->describe(g);
    ASSERT_TRUE(strings.insert(arch).second) << arch;
    ASSERT_EQ(s->describe(s->parse(arch)), arch);
    if (i % 16 == 0) {
      Genome bare = g;
      bare.meta() = json::object();
      ASSERT_EQ(s->describe(bare), arch);
    }
    hashes.insert(g.hash());
  }
  EXPECT_EQ(strings.size(), 15625u);
  EXPECT_EQ(hashes.size(), 15625u);
}
