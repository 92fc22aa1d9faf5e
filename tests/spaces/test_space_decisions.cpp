// The categorical decision encoding every space type gives RL controllers (Space::decisions,
// decode, encode_decisions): a fixed list per space, every genome round-trips through its values,
// every in-range value vector decodes (macro spaces may refuse a combination they cannot
// build), and bad vectors are refused naming the decision.
#include <gtest/gtest.h>

#include <set>

#include "spaces/decision_operators.hpp"
#include "spaces/space.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;

namespace {

std::string example(const std::string& name) {
  return std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/" + name + ".json";
}

// Every example space: macro, cell, nb201 and union types.
const std::vector<std::string> kExamples = {
    "cnn",        "mlp",     "mlp_2d",          "attention",          "darts_cell",
    "nb201",      "spiking", "continuous_time", "spiking_vs_classic", "sequence_mixers",
    "compression"};

std::vector<int> random_values(const std::vector<Decision>& ds, Rng& rng) {
  std::vector<int> v;
  for (const auto& d : ds) v.push_back(std::uniform_int_distribution<int>(0, d.choices - 1)(rng));
  return v;
}

std::string decode_error(const Space& s, const std::vector<int>& v) {
  try {
    s.decode(v);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Decisions, EveryExampleSpaceRoundTripsItsSamples) {
  for (const auto& name : kExamples) {
    SCOPED_TRACE(name);
    auto s = load_space(example(name));
    const auto ds = s->decisions();
    ASSERT_FALSE(ds.empty());
    std::set<std::string> names;
    for (const auto& d : ds) {
      EXPECT_GE(d.choices, 1) << d.name;
      names.insert(d.name);
    }
    EXPECT_EQ(names.size(), ds.size()) << "decision names are unique";
    Rng rng(3);
    for (int i = 0; i < 60; ++i) {
      Genome g = i % 2 ? s->mutate(s->sample(rng), rng) : s->sample(rng);
      const auto v = s->encode_decisions(g);
      ASSERT_EQ(v.size(), ds.size());
      for (std::size_t k = 0; k < v.size(); ++k) {
        EXPECT_GE(v[k], 0) << ds[k].name;
        EXPECT_LT(v[k], ds[k].choices) << ds[k].name;
      }
      Genome back = s->decode(v);
      EXPECT_EQ(back.canonical_json(), g.canonical_json());
      EXPECT_EQ(s->describe(back), s->describe(g));
      EXPECT_TRUE(s->contains(back));
    }
  }
}

TEST(Decisions, RandomValuesDecodeInsideTheSpace) {
  for (const auto& name : kExamples) {
    SCOPED_TRACE(name);
    auto s = load_space(example(name));
    const auto ds = s->decisions();
    Rng rng(11);
    int ok = 0;
    for (int i = 0; i < 100; ++i) {
      const auto v = random_values(ds, rng);
      try {
        Genome g = s->decode(v);
        EXPECT_TRUE(s->contains(g));
        // Ignored choices are zeroed by encoding, and the canonical genome is unchanged.
        EXPECT_EQ(s->decode(s->encode_decisions(g)).canonical_json(), g.canonical_json());
        ++ok;
      } catch (const std::invalid_argument& e) {
        // Only macro spaces may refuse a combination, and only as an unbuildable architecture.
        EXPECT_NE(s->type(), "nb201") << e.what();
        EXPECT_NE(s->type(), "cell") << e.what();
      }
    }
    // Load-time checks make invalid combinations rare.
    EXPECT_GE(ok, 80);
  }
}

TEST(Decisions, Nb201IsOneOpPerEdgeInIndexOrder) {
  auto s = load_space(example("nb201"));
  const auto ds = s->decisions();
  ASSERT_EQ(ds.size(), 6u);
  for (const auto& d : ds) EXPECT_EQ(d.choices, 5);
  EXPECT_EQ(ds[5].name, "edge[5](2->3).op");
  // at(i) reads the index as base-5 digits, edge 0 most significant.
  EXPECT_EQ(s->decode({0, 0, 0, 0, 0, 1}).hash(), s->at(1).hash());
  EXPECT_EQ(s->decode({4, 3, 2, 1, 0, 4}).hash(),
            s->at(((((4 * 5 + 3) * 5 + 2) * 5 + 1) * 5 + 0) * 5 + 4).hash());
  EXPECT_EQ(s->encode_decisions(s->at(7)), (std::vector<int>{0, 0, 0, 0, 1, 2}));
}

TEST(Decisions, CellDecodesEveryValueAndCoversTheSpace) {
  auto s = make_space(
      json::parse(R"({"type": "cell", "input": {"kind": "image", "shape": [3, 8, 8]}, "outputs": 10,
      "nodes": 3, "inputs_per_node": 2, "ops": ["none", "nor_conv_1x1", "avg_pool_3x3"],
      "stages": [{"cells": 1, "channels": 4}]})"));
  const auto ds = s->decisions();
  // node 1: one input (1 way) + op; nodes 2 and 3: two inputs each (j, j-1 ways) + ops.
  ASSERT_EQ(ds.size(), 10u);
  EXPECT_EQ(ds[0].choices, 1);
  EXPECT_EQ(ds[6].name, "node[3].input[0].from");
  EXPECT_EQ(ds[6].choices, 3);
  EXPECT_EQ(ds[8].choices, 2);
  // Every value vector is a valid cell, and together they reach all 729 architectures.
  std::set<std::string> reached;
  std::vector<int> v(ds.size(), 0);
  while (true) {
    reached.insert(s->describe(s->decode(v)));
    std::size_t k = 0;
    while (k < v.size() && ++v[k] == ds[k].choices) v[k++] = 0;
    if (k == v.size()) break;
  }
  EXPECT_EQ(reached.size(), 729u);
  for (const auto& g : s->enumerate())
    EXPECT_EQ(s->describe(s->decode(s->encode_decisions(g))), s->describe(g));
}

TEST(Decisions, MacroIgnoresChoicesPastTheDepthAndOfOtherBlocks) {
  auto s = make_space(json::parse(
      R"({"type": "macro", "input": {"kind": "image", "shape": [1, 28, 28]}, "outputs": 10,
      "bits": [32, 8],
      "stages": [{"blocks": ["conv", "dwconv"], "depth": [1, 3], "skip": "optional",
                  "params": {"channels": [8, 16], "kernel": [3, 5]}}]})"));
  const auto ds = s->decisions();
  std::vector<std::string> names;
  for (const auto& d : ds) names.push_back(d.name);
  // width, block, depth, 2 options, skip, 3 layers x (bits, prune)
  ASSERT_EQ(ds.size(), 12u);
  EXPECT_EQ(names[1], "stages[0].block");
  EXPECT_EQ(names[2], "stages[0].depth");
  EXPECT_EQ(names[11], "stages[0].layers[2].prune");
  // depth 1: the bits of layers 1 and 2 do not matter.
  std::vector<int> a = {0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0};
  std::vector<int> b = a;
  b[8] = 1;
  b[10] = 1;
  EXPECT_EQ(s->decode(a).hash(), s->decode(b).hash());
  EXPECT_EQ(s->encode_decisions(s->decode(b)), a);
  // depth 3 (value 2): now they do.
  a[2] = b[2] = 2;
  EXPECT_NE(s->decode(a).hash(), s->decode(b).hash());
}

TEST(Decisions, UnionReadsOnlyTheChosenBranch) {
  auto s = make_space(json::parse(R"({"type": "union", "spaces": [
    {"type": "macro", "input": {"kind": "image", "shape": [1, 28, 28]}, "outputs": 10,
     "stages": [{"blocks": ["dense", "kan"], "params": {"units": [16, 32]}}]},
    {"type": "nb201", "input": {"kind": "image", "shape": [1, 28, 28]}, "outputs": 10}]})"));
  const auto ds = s->decisions();
  // branch; width, block, depth, units, skip, bits and prune of the one layer; 6 edges
  ASSERT_EQ(ds.size(), 1u + 7u + 6u);
  EXPECT_EQ(ds[0].name, "branch");
  EXPECT_EQ(ds[5].name, "spaces[0].stages[0].skip");
  EXPECT_EQ(ds[8].name, "spaces[1].edge[0](0->1).op");
  std::vector<int> v = {1, 0, 1, 0, 1, 0, 0, 0, 3, 3, 3, 3, 3, 3};
  ASSERT_EQ(v.size(), ds.size());
  Genome g = s->decode(v);
  EXPECT_EQ(g.meta()["branch"], 1);
  EXPECT_EQ(
      s->describe(g),
      R"({"arch":"|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|","branch":1})");
  // The macro branch's values are ignored and encode as zeros.
  EXPECT_EQ(s->encode_decisions(g), (std::vector<int>{1, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3}));
}

TEST(Decisions, BadValuesNameTheDecision) {
  auto s = load_space(example("nb201"));
  EXPECT_EQ(decode_error(*s, {0, 0, 0}),
            "nb201 decisions: got 3 values, the space has 6 decisions");
  EXPECT_EQ(decode_error(*s, {0, 0, 7, 0, 0, 0}),
            "nb201 decisions: edge[2](1->2).op = 7 not in [0, 5)");
  auto cnn = load_space(example("cnn"));
  std::vector<int> v(cnn->decisions().size(), 0);
  v[0] = -1;
  EXPECT_NE(decode_error(*cnn, v).find("macro decisions: width = -1 not in [0, "),
            std::string::npos)
      << decode_error(*cnn, v);
}

// DecisionOperators' contract, on every example space that offers them: from the same RNG
// state each decision operator gives encode_decisions() of the genome operator's result and
// leaves the RNG where the genome operator leaves it (a strategy proposes the same
// architectures on either path), and the encodings and names equal the genome's.
TEST(Decisions, DecisionOperatorsMatchTheGenomeOperatorsDrawForDraw) {
  int spaces_with_operators = 0;
  for (const auto& name : kExamples) {
    SCOPED_TRACE(name);
    auto s = load_space(example(name));
    const auto* ops = dynamic_cast<const DecisionOperators*>(s.get());
    if (!ops) continue;
    ++spaces_with_operators;
    Rng pick(11);
    for (int i = 0; i < 200; ++i) {
      const Genome a = s->sample(pick), b = s->sample(pick);
      const auto va = s->encode_decisions(a), vb = s->encode_decisions(b);
      EXPECT_EQ(ops->encode_onehot_decisions(va), s->encode_onehot(a));
      EXPECT_EQ(ops->encode_path_decisions(va), s->encode_path(a));
      EXPECT_EQ(ops->describe_decisions(va), s->describe(a));

      const std::uint64_t seed = pick();
      Rng r1(seed), r2(seed);
      EXPECT_EQ(ops->sample_decisions(r1), s->encode_decisions(s->sample(r2)));
      EXPECT_EQ(ops->mutate_decisions(va, r1), s->encode_decisions(s->mutate(a, r2)));
      EXPECT_EQ(ops->crossover_decisions(va, vb, r1), s->encode_decisions(s->crossover(a, b, r2)));
      EXPECT_EQ(r1(), r2()) << "the two paths drew different amounts of randomness";
    }
    Rng r(1);
    EXPECT_THROW(ops->mutate_decisions({0, 1, 2}, r), std::invalid_argument);
    EXPECT_THROW(ops->describe_decisions({0, 0, 0, 0, 0, 9}), std::invalid_argument);
  }
  EXPECT_GE(spaces_with_operators, 1) << "nb201 implements DecisionOperators";
}
