// LoRA adapters on the dense and attention blocks (lora_rank, lora_alpha): the base is frozen
// and the adapters train, the block starts at the base's function, gradients reach the input and
// the adapters, merging the attention adapters into the fused QKV and output weights gives the
// plain block's function, and the workload is the plain (merged) block's.
#include <gtest/gtest.h>

#include "nn/lora.hpp"
#include "nn/state_dict.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"
#include "tests/nn/gradcheck.hpp"
#include "tests/spaces/block_test_util.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;
using namespace hwnas::spaces::testing;

namespace {

int trainable(GenomeModel& m) {
  int n = 0;
  for (const auto& p : m.named_parameters())
    if (p.var.requires_grad()) n += static_cast<int>(p.var.value().numel());
  return n;
}

nn::Tensor run(GenomeModel& m, const nn::Tensor& x) {
  nn::NoGradGuard ng;
  nn::ForwardContext ctx;
  ctx.training = false;
  return m.forward(nn::constant(x), ctx).value();
}

}  // namespace

TEST(BlockLora, DenseFreezesTheBaseAndTrainsTheAdapter) {
  const TensorType in = TensorType::vector(32);
  Genome plain = one_block("dense", in, {{"units", 16}});
  Genome lora = one_block("dense", in, {{"units", 16}, {"lora_rank", 4}, {"lora_alpha", 8.0}});
  auto mp = build_model(plain, 5), ml = build_model(lora, 5);
  // Base 32 x 16 + 16 frozen; adapter A 4 x 32 + B 16 x 4 trains.
  EXPECT_EQ(ml->num_parameters(), 32 * 16 + 16 + 4 * 32 + 16 * 4);
  EXPECT_EQ(trainable(*ml), 4 * 32 + 16 * 4);
  EXPECT_EQ(trainable(*mp), 32 * 16 + 16);
  const auto names = ml->named_parameters();
  EXPECT_EQ(names.at(2).name, "n1.linear.lora_a");
  // Same seed, same base draws, B = 0: the same function as the plain block.
  std::mt19937_64 rng(2);
  const nn::Tensor x = nn::testing::random_tensor(nn::Shape{3, 32}, rng);
  nn::testing::expect_close(run(*ml, x), run(*mp, x), 1e-6f);
  // The devices see the merged layer: the plain block's workload.
  EXPECT_EQ(build_workload(lora).to_json(), build_workload(plain).to_json());
  EXPECT_EQ(catalogue().at("dense").check_params({{"lora_rank", 3}}),
            "param 'lora_rank' = 3 not in {0,2,4,8,16}");
}

TEST(BlockLora, AttentionAdaptersGetGradientsAndMergeIntoTheProjections) {
  const TensorType in = TensorType::sequence(5, 8);
  const json p = {{"heads", 2}, {"lora_rank", 2}, {"lora_alpha", 4.0}};
  Genome lora = one_block("attention", in, p);
  Genome plain = one_block("attention", in, {{"heads", 2}});
  auto ml = build_model(lora, 3), mp = build_model(plain, 3);
  // qkv 8 x 24 + 24 and out 8 x 8 + 8 frozen; four adapters of 2 x 8 + 8 x 2.
  EXPECT_EQ(trainable(*ml), 4 * 32);
  EXPECT_EQ(ml->num_parameters(), 8 * 24 + 24 + 64 + 8 + 4 * 32);
  EXPECT_EQ(build_workload(lora).to_json(), build_workload(plain).to_json());

  // Give B values, then check gradients on the input and on two adapters.
  std::map<std::string, nn::Var> by_name;
  for (const auto& np : ml->named_parameters()) by_name[np.name] = np.var;
  std::mt19937_64 rng(4);
  for (const char* b : {"n1.attn.lora_q.lora_b", "n1.attn.lora_k.lora_b", "n1.attn.lora_v.lora_b",
                        "n1.attn.lora_out.lora_b"})
    by_name.at(b).value() = nn::testing::random_tensor(nn::Shape{8, 2}, rng, -0.5f, 0.5f);
  const nn::Tensor x = nn::testing::random_tensor(nn::Shape{2, 5, 8}, rng);
  nn::Var& qa = by_name.at("n1.attn.lora_q.lora_a");
  nn::Var& ob = by_name.at("n1.attn.lora_out.lora_b");
  auto f = [&](const std::vector<nn::Var>& v) {
    nn::ForwardContext ctx;
    ctx.training = false;
    return ml->forward(v[0], ctx);
  };
  nn::testing::expect_gradients_match(f, {x});
  // The adapters get gradients, the frozen base none (their finite-difference checks are in
  // tests/nn/test_lora.cpp).
  for (auto& [name, v] : by_name) v.grad() = nn::Tensor();
  {
    nn::ForwardContext ctx;
    nn::backward(nn::sum(ml->forward(nn::constant(x), ctx)));
    EXPECT_FALSE(qa.grad().empty());
    EXPECT_FALSE(ob.grad().empty());
    EXPECT_TRUE(by_name.at("n1.attn.qkv.weight").grad().empty());  // frozen
  }

  // Merge: W_qkv rows [0, d) += s B_q A_q, [d, 2d) k, [2d, 3d) v; W_out += s B_o A_o.  The plain
  // block with the merged weights computes the LoRA block's function.
  const nn::Tensor want = run(*ml, x);
  nn::StateDict merged;
  for (const auto& [name, t] : nn::state_dict(*ml))
    if (name.find("lora_") == std::string::npos) merged[name] = t;
  const char* names[] = {"q", "k", "v", "out"};
  for (int i = 0; i < 4; ++i) {
    const std::string pre = std::string("n1.attn.lora_") + names[i] + ".";
    std::mt19937_64 unused(0);
    nn::LoraAdapter a(8, 8, 2, 4.0, unused);
    a.a.value() = by_name.at(pre + "lora_a").value();
    a.b.value() = by_name.at(pre + "lora_b").value();
    if (i < 3)
      a.merge_into(merged.at("n1.attn.qkv.weight"), 8 * i);
    else
      a.merge_into(merged.at("n1.attn.out.weight"));
  }
  nn::load_state_dict(*mp, merged);
  nn::testing::expect_close(run(*mp, x), want, 1e-5f);
}
