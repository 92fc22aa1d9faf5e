// Genome: JSON round trip, canonical form and hash, and each invalid-genome error.
#include <gtest/gtest.h>

#include "spaces/catalogue.hpp"
#include "spaces/genome.hpp"

using namespace hwnas::spaces;
using nlohmann::json;

namespace {

// input -> conv -> {dwconv, pool(stride 1)} -> add -> global_pool -> head
Genome diamond(bool swap_branches, bool swap_add_inputs) {
  Genome g(TensorType::image(1, 8, 8));
  auto conv = g.add_node("conv", {{"channels", 4}});
  g.add_edge(0, conv);
  Genome::NodeId a, b;
  if (!swap_branches) {
    a = g.add_node("dwconv", {{"kernel", 5}});
    b = g.add_node("pool", {{"stride", 1}, {"kernel", 3}});
  } else {
    b = g.add_node("pool", {{"stride", 1}, {"kernel", 3}});
    a = g.add_node("dwconv", {{"kernel", 5}});
  }
  g.add_edge(conv, a);
  g.add_edge(conv, b);
  auto add = g.add_node("add");
  if (!swap_add_inputs) {
    g.add_edge(a, add);
    g.add_edge(b, add);
  } else {
    g.add_edge(b, add);
    g.add_edge(a, add);
  }
  auto gp = g.add_node("global_pool");
  g.add_edge(add, gp);
  auto head = g.add_node("head", {{"outputs", 3}});
  g.add_edge(gp, head);
  g.validate();
  return g;
}

std::string error_of(Genome g) {
  try {
    g.validate();
  } catch (const GenomeError& e) {
    return e.what();
  }
  return "(no error)";
}

Genome chain(const std::string& kind, json params, TensorType in = TensorType::image(2, 8, 8)) {
  Genome g(in);
  auto v = g.add_node(kind, params);
  g.add_edge(0, v);
  return g;
}

}  // namespace

TEST(Genome, ValidateInfersShapes) {
  Genome g = diamond(false, false);
  EXPECT_EQ(g.node(1).out.str(), "image[4,8,8]");
  EXPECT_EQ(g.node(4).out.str(), "image[4,8,8]");
  EXPECT_EQ(g.node(g.output_node()).out.str(), "vector[3]");
  EXPECT_TRUE(g.is_valid());
}

TEST(Genome, JsonRoundTripKeepsStructureAndMeta) {
  Genome g = diamond(false, false);
  g.meta() = {{"space", "test"}};
  Genome h = Genome::from_json(g.to_json());
  EXPECT_EQ(h.to_json(), g.to_json());
  EXPECT_EQ(h.hash(), g.hash());
  EXPECT_EQ(h.meta()["space"], "test");
}

TEST(Genome, IsomorphicGenomesHashEqual) {
  Genome a = diamond(false, false), b = diamond(true, false), c = diamond(false, true);
  EXPECT_NE(a.to_json(), b.to_json());  // numbered differently
  EXPECT_EQ(a.canonical_json(), b.canonical_json());
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(a.hash(), c.hash());  // add is commutative
  EXPECT_EQ(a.hash().size(), 16u);
  // Meta and explicitly spelled defaults are not part of the architecture.
  Genome d = a;
  d.meta() = {{"x", 1}};
  d.node(1).params["kernel"] = 3;
  d.node(1).params["bits"] = 32;
  EXPECT_EQ(a.hash(), d.hash());
}

TEST(Genome, DifferentGenomesHashDiffer) {
  Genome a = diamond(false, false);
  Genome b = a;
  b.node(2).params["kernel"] = 3;
  EXPECT_NE(a.hash(), b.hash());
  Genome c = a;
  c.node(1).params["bits"] = 8;
  EXPECT_NE(a.hash(), c.hash());
}

TEST(Genome, CanonicalCacheFollowsEveryKindOfChange) {
  // The cache must never answer for a genome that changed after it was filled: through a held
  // node reference, an edge change, a copy or a change that makes the genome invalid.
  Genome g = diamond(false, false);
  const std::string before = g.hash();
  BlockNode& dw = g.node(2);
  EXPECT_EQ(g.hash(), before);
  dw.params["kernel"] = 3;
  const std::string kernel3 = g.hash();
  EXPECT_NE(kernel3, before);
  Genome fresh = Genome::from_json(g.to_json());
  EXPECT_EQ(fresh.canonical_json(), g.canonical_json());  // equals an uncached computation

  Genome copy = g;
  copy.node(2).params["kernel"] = 7;
  EXPECT_EQ(g.hash(), kernel3);
  EXPECT_NE(copy.hash(), kernel3);

  g.add_edge(1, 4);  // the conv output also feeds the add: valid, a different architecture
  EXPECT_NE(g.hash(), kernel3);
  g.remove_edge(1, 4);
  EXPECT_EQ(g.hash(), kernel3);
  dw.params["kernel"] = 4;  // outside the domain: the cached form must not hide it
  EXPECT_THROW(g.hash(), GenomeError);
}

TEST(Genome, ContentValidatedBeforeGetsTheSameOutputTypesAndStaysItsOwn) {
  // The second build of a content validated before takes its output types from the process's
  // memo of validated graphs instead of inferring them: the same types, and a graph of its own
  // (a change through a node reference changes this genome only).
  const Genome first = diamond(false, false);
  Genome again = diamond(false, false);
  ASSERT_EQ(again.num_nodes(), first.num_nodes());
  for (Genome::NodeId v = 0; v < first.num_nodes(); ++v)
    EXPECT_EQ(again.node(v).out.str(), first.node(v).out.str()) << "node " << v;
  EXPECT_NE(&again.graph(), &first.graph());
  BlockNode& dw = again.node(2);
  dw.params["kernel"] = 3;
  EXPECT_NE(again.hash(), first.hash());
  EXPECT_EQ(first.node(2).params.at("kernel"), 5);
  EXPECT_EQ(diamond(false, false).hash(), first.hash());  // the memo's copy is untouched
}

TEST(Genome, ConcatInputOrderMatters) {
  auto make = [](bool swap) {
    Genome g(TensorType::image(1, 8, 8));
    auto a = g.add_node("conv", {{"channels", 2}});
    auto b = g.add_node("conv", {{"channels", 3}});
    g.add_edge(0, a);
    g.add_edge(0, b);
    auto cat = g.add_node("concat");
    g.add_edge(swap ? b : a, cat);
    g.add_edge(swap ? a : b, cat);
    g.validate();
    return g;
  };
  EXPECT_EQ(make(false).node(3).out.str(), "image[5,8,8]");
  EXPECT_NE(make(false).hash(), make(true).hash());
}

TEST(Genome, IdenticalParallelBranchesAreCanonical) {
  // Two identical branches (automorphic): renumbering must not change the canonical form.
  auto make = [](bool order) {
    Genome g(TensorType::vector(4));
    auto a = g.add_node("dense", {{"units", 5}});
    auto b = g.add_node("dense", {{"units", 5}});
    auto c = g.add_node("dense", {{"units", 6}});
    g.add_edge(0, a);
    g.add_edge(0, b);
    g.add_edge(order ? a : b, c);
    auto cat = g.add_node("concat");
    g.add_edge(order ? b : a, cat);
    g.add_edge(c, cat);
    g.validate();
    return g;
  };
  EXPECT_EQ(make(true).hash(), make(false).hash());
}

TEST(Genome, RemoveEdgeRenumbersSlots) {
  Genome g(TensorType::vector(4));
  auto a = g.add_node("dense", {{"units", 4}});
  auto b = g.add_node("dense", {{"units", 4}});
  auto c = g.add_node("dense", {{"units", 4}});
  for (auto v : {a, b, c}) g.add_edge(0, v);
  auto add = g.add_node("add");
  for (auto v : {a, b, c}) g.add_edge(v, add);
  g.remove_edge(a, add);
  EXPECT_EQ(g.inputs_of(add), (std::vector<Genome::NodeId>{b, c}));
  EXPECT_THROW(g.remove_edge(a, add), GenomeError);
}

TEST(GenomeErrors, Cycle) {
  Genome g = chain("dense", {{"units", 4}}, TensorType::vector(4));
  auto b = g.add_node("dense", {{"units", 4}});
  auto add = g.add_node("add");
  g.add_edge(1, add);
  g.add_edge(b, add);
  g.add_edge(add, b);
  EXPECT_NE(error_of(g).find("cycle"), std::string::npos) << error_of(g);
}

TEST(GenomeErrors, UnknownKindListsKnown) {
  std::string e = error_of(chain("convv", json::object()));
  EXPECT_NE(e.find("node 1 (convv): unknown block kind 'convv'"), std::string::npos) << e;
  EXPECT_NE(e.find("dense"), std::string::npos) << e;
}

TEST(GenomeErrors, ParamOutsideDomainNamesNodeAndField) {
  std::string e = error_of(chain("conv", {{"kernel", 4}}));
  EXPECT_NE(e.find("node 1 (conv): param 'kernel' = 4 not in {1,3,5,7}"), std::string::npos) << e;
  e = error_of(chain("conv", {{"channels", -8}}));
  EXPECT_NE(e.find("param 'channels' = -8"), std::string::npos) << e;
  e = error_of(chain("conv", {{"prune", 0.95}}));
  EXPECT_NE(e.find("param 'prune'"), std::string::npos) << e;
  e = error_of(chain("conv", {{"bits", 7}}));
  EXPECT_NE(e.find("param 'bits' = 7"), std::string::npos) << e;
  e = error_of(chain("conv", {{"kernel", "3"}}));
  EXPECT_NE(e.find("not an integer"), std::string::npos) << e;
}

// validate() remembers contents it passed; params that take every default ({}) hash to one
// constant there, which an empty array (not an object, so invalid) must not share.
TEST(GenomeErrors, EmptyArrayParamsAreNotTheDefaultsValidatedBefore) {
  Genome ok = chain("global_pool", json::object());
  ok.validate();
  Genome bad = chain("global_pool", json::object());
  bad.node(1).params = json::array();
  EXPECT_NE(error_of(bad).find("params must be a JSON object"), std::string::npos) << error_of(bad);
}

TEST(GenomeErrors, UnknownParam) {
  std::string e = error_of(chain("conv", {{"kernal", 3}}));
  EXPECT_NE(e.find("node 1 (conv): unknown param 'kernal'"), std::string::npos) << e;
}

TEST(GenomeErrors, IncompatibleShapes) {
  Genome g(TensorType::image(1, 8, 8));
  auto a = g.add_node("conv", {{"channels", 4}});
  auto b = g.add_node("conv", {{"channels", 8}});
  g.add_edge(0, a);
  g.add_edge(0, b);
  auto add = g.add_node("add");
  g.add_edge(a, add);
  g.add_edge(b, add);
  std::string e = error_of(g);
  EXPECT_NE(e.find("node 3 (add): inputs must have identical types"), std::string::npos) << e;
}

TEST(GenomeErrors, WrongDataKind) {
  std::string e = error_of(chain("attention", json::object()));
  EXPECT_NE(e.find("node 1 (attention): input 0 from node 0 is image[2,8,8], accepts sequence"),
            std::string::npos)
      << e;
  e = error_of(chain("dense", json::object()));
  EXPECT_NE(e.find("accepts vector, sequence"), std::string::npos) << e;
}

TEST(GenomeErrors, AttentionHeadsMustDivide) {
  std::string e = error_of(chain("attention", {{"heads", 4}}, TensorType::sequence(5, 6)));
  EXPECT_NE(e.find("node 1 (attention): model dimension 6 not divisible by heads 4"),
            std::string::npos)
      << e;
}

TEST(GenomeErrors, SeveralSinks) {
  Genome g = chain("conv", json::object());
  auto b = g.add_node("conv", json::object());
  g.add_edge(0, b);
  std::string e = error_of(g);
  EXPECT_NE(e.find("exactly one output"), std::string::npos) << e;
}

TEST(GenomeErrors, NodeWithoutInputs) {
  Genome g = chain("conv", json::object());
  auto b = g.add_node("conv", json::object());
  auto add = g.add_node("add");
  g.add_edge(1, add);
  g.add_edge(b, add);
  std::string e = error_of(g);
  EXPECT_NE(e.find("node 2 (conv): has no inputs"), std::string::npos) << e;
}

TEST(GenomeErrors, WrongInputCount) {
  Genome g = chain("add", json::object());
  std::string e = error_of(g);
  EXPECT_NE(e.find("node 1 (add): has 1 inputs, needs 2..8"), std::string::npos) << e;
}

TEST(GenomeErrors, ShapeTooSmall) {
  Genome g = chain("pool", {{"kernel", 3}, {"stride", 2}}, TensorType::image(1, 1, 1));
  auto p = g.add_node("pool", {{"kernel", 2}});
  g.add_edge(1, p);
  std::string e = error_of(g);
  EXPECT_NE(e.find("node 2 (pool): kernel 2 larger than padded input 1"), std::string::npos) << e;
}

TEST(GenomeErrors, FromJsonNamesField) {
  try {
    Genome::from_json(
        json{{"input", {{"kind", "image"}, {"shape", {1, 8}}}}, {"nodes", json::array()}});
    FAIL();
  } catch (const GenomeError& e) {
    EXPECT_NE(std::string(e.what()).find("genome.input.shape"), std::string::npos) << e.what();
  }
  try {
    Genome::from_json(json{{"input", {{"kind", "vector"}, {"shape", {4}}}},
                           {"nodes", {{{"kind", "input"}}, {{"kind", "dense"}}}},
                           {"edges", {{0, 5}}}});
    FAIL();
  } catch (const GenomeError& e) {
    EXPECT_NE(std::string(e.what()).find("genome.edges[0]"), std::string::npos) << e.what();
  }
}
