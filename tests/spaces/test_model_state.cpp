// Genome models name every parameter and buffer after its node ("n3.conv.weight"), and their
// state round-trips bit-exactly into a model built from another seed.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "nn/state_dict.hpp"
#include "spaces/model_builder.hpp"
#include "tests/nn/gradcheck.hpp"

using namespace hwnas;
using namespace hwnas::spaces;

namespace {
// input image [1, 8, 8] -> conv(4, BN) -> nb201_reduction(6) -> norm(layer) -> global_pool
// -> dense(5) -> head(3); attention is covered by a sequence genome below.
Genome image_genome() {
  Genome g(TensorType::image(1, 8, 8));
  auto c = g.add_node("conv", {{"channels", 4}, {"kernel", 3}, {"batch_norm", true}});
  auto r = g.add_node("nb201_reduction", {{"channels", 6}});
  auto n = g.add_node("norm", {{"type", "batch"}});
  auto p = g.add_node("global_pool");
  auto d = g.add_node("dense", {{"units", 5}});
  auto h = g.add_node("head", {{"outputs", 3}});
  g.add_edge(0, c);
  g.add_edge(c, r);
  g.add_edge(r, n);
  g.add_edge(n, p);
  g.add_edge(p, d);
  g.add_edge(d, h);
  g.validate();
  return g;
}

std::set<std::string> keys(const nn::StateDict& sd) {
  std::set<std::string> out;
  for (const auto& [k, v] : sd) out.insert(k);
  return out;
}
}  // namespace

TEST(ModelState, NodesPrefixTheirTensorNames) {
  auto model = build_model(image_genome(), 1);
  const std::set<std::string> expected{
      "n1.conv.weight",       "n1.bn.gamma",          "n1.bn.beta",          "n1.bn.running_mean",
      "n1.bn.running_var",    "n2.a.conv.weight",     "n2.a.bn.gamma",       "n2.a.bn.beta",
      "n2.a.bn.running_mean", "n2.a.bn.running_var",  "n2.b.conv.weight",    "n2.b.bn.gamma",
      "n2.b.bn.beta",         "n2.b.bn.running_mean", "n2.b.bn.running_var", "n2.shortcut.weight",
      "n3.bn.gamma",          "n3.bn.beta",           "n3.bn.running_mean",  "n3.bn.running_var",
      "n5.linear.weight",     "n5.linear.bias",       "n6.linear.weight",    "n6.linear.bias"};
  EXPECT_EQ(keys(nn::state_dict(*model)), expected);
  // Every parameter collect_parameters reports has a name (and in the same order).
  std::vector<nn::Var> ps;
  model->collect_parameters(ps);
  const auto named = model->named_parameters();
  ASSERT_EQ(ps.size(), named.size());
  for (std::size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(ps[i].node(), named[i].var.node());
}

TEST(ModelState, AttentionAndLayerNormNames) {
  Genome g(TensorType::sequence(5, 4));
  auto a = g.add_node("attention", {{"heads", 2}});
  auto n = g.add_node("norm", {{"type", "layer"}});
  g.add_edge(0, a);
  g.add_edge(a, n);
  g.validate();
  auto model = build_model(g, 2);
  EXPECT_EQ(keys(nn::state_dict(*model)),
            (std::set<std::string>{"n1.attn.qkv.weight", "n1.attn.qkv.bias", "n1.attn.out.weight",
                                   "n1.attn.out.bias", "n2.ln.gamma", "n2.ln.beta"}));
}

TEST(ModelState, RoundTripGivesBitIdenticalOutputs) {
  auto a = build_model(image_genome(), 1);
  auto b = build_model(image_genome(), 2);
  std::mt19937_64 rng(3);
  nn::ForwardContext train;
  train.rng = &rng;
  // A training-mode pass moves the batch-norm running statistics away from their start.
  a->forward(nn::constant(nn::testing::random_tensor(nn::Shape{4, 1, 8, 8}, rng)), train);
  nn::load_state_dict(*b, nn::state_dict(*a));
  nn::ForwardContext eval;
  eval.training = false;
  const nn::Tensor x = nn::testing::random_tensor(nn::Shape{3, 1, 8, 8}, rng);
  nn::NoGradGuard ng;
  const nn::Tensor ya = a->forward(nn::constant(x), eval).value();
  const nn::Tensor yb = b->forward(nn::constant(x), eval).value();
  ASSERT_EQ(ya.shape(), yb.shape());
  EXPECT_EQ(std::memcmp(ya.data(), yb.data(), sizeof(float) * static_cast<std::size_t>(ya.numel())),
            0);
}

TEST(ModelState, FreezingANodeByItsPrefix) {
  auto model = build_model(image_genome(), 1);
  EXPECT_EQ(model->freeze("n2"), 7);  // a: conv + bn(2), b: conv + bn(2), shortcut
  EXPECT_FALSE(model->named_parameters()[3].var.requires_grad());  // n2.a.conv.weight
  EXPECT_TRUE(model->named_parameters()[0].var.requires_grad());   // n1.conv.weight
}
