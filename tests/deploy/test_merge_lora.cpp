// deploy::merge_lora: a genome with LoRA adapters on dense and attention nodes becomes the plain
// genome whose merged weights compute the same function, which is what the exporters write.
#include <gtest/gtest.h>

#include "deploy/export.hpp"
#include "nn/state_dict.hpp"
#include "spaces/model_builder.hpp"
#include "tests/nn/gradcheck.hpp"

using namespace hwnas;
using nlohmann::json;

TEST(MergeLora, MergedPlainGenomeComputesTheAdaptedFunction) {
  // input [4, 8] -> attention (LoRA r 2) -> dense 6 (LoRA r 4) -> dense 3 (plain)
  spaces::Genome g(spaces::TensorType::sequence(4, 8));
  auto a = g.add_node("attention", {{"heads", 2}, {"lora_rank", 2}, {"lora_alpha", 4.0}});
  auto d = g.add_node("dense", {{"units", 6}, {"activation", "tanh"}, {"lora_rank", 4}});
  auto e = g.add_node("dense", {{"units", 3}});
  g.add_edge(g.input_node(), a);
  g.add_edge(a, d);
  g.add_edge(d, e);
  g.validate();
  auto model = spaces::build_model(g, 2);
  // Trained adapters: B away from its zero initialisation.
  std::mt19937_64 rng(8);
  for (auto& p : model->named_parameters())
    if (p.name.find("lora_b") != std::string::npos)
      p.var.value() = nn::testing::random_tensor(p.var.shape(), rng, -0.5f, 0.5f);
  const nn::Tensor x = nn::testing::random_tensor(nn::Shape{2, 4, 8}, rng);
  auto run = [&](spaces::GenomeModel& m) {
    nn::NoGradGuard ng;
    nn::ForwardContext ctx;
    ctx.training = false;
    return m.forward(nn::constant(x), ctx).value();
  };
  const nn::Tensor want = run(*model);

  spaces::Genome merged = g;
  nn::StateDict weights = nn::state_dict(*model);
  EXPECT_EQ(deploy::merge_lora(merged, weights), 4 + 1);
  for (const auto& [name, t] : weights) EXPECT_EQ(name.find("lora_"), std::string::npos) << name;
  EXPECT_FALSE(merged.node(a).params.contains("lora_rank"));
  EXPECT_FALSE(merged.node(d).params.contains("lora_alpha"));
  merged.validate();
  auto plain = spaces::build_model(merged, 99);
  nn::load_state_dict(*plain, weights);  // strict: exactly the plain model's tensors
  nn::testing::expect_close(run(*plain), want, 1e-5f);
  // The live model's weights are untouched.
  nn::testing::expect_close(run(*model), want, 0.0f);
  // Nothing to merge in a plain genome.
  EXPECT_EQ(deploy::merge_lora(merged, weights), 0);
}

// Training compresses the base and adds the float adapter; a merged export would compress the
// sum, another network: refused with the node and the fix.
TEST(MergeLora, RefusesAdaptersOnACompressedBase) {
  spaces::Genome g(spaces::TensorType::vector(8));
  auto d = g.add_node("dense", {{"units", 6}, {"lora_rank", 4}, {"bits", 8}});
  g.add_edge(g.input_node(), d);
  g.validate();
  auto model = spaces::build_model(g, 2);
  nn::StateDict weights = nn::state_dict(*model);
  try {
    deploy::merge_lora(g, weights);
    FAIL() << "merged a LoRA node on an int8 base";
  } catch (const deploy::ExportError& e) {
    EXPECT_NE(std::string(e.what()).find("node 1 combines lora_rank 4 with bits 8"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("export it with bits 32 and prune 0"), std::string::npos)
        << e.what();
  }
}
