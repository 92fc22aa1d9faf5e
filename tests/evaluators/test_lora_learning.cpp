// Behaviour test of LoRA adapters on dense blocks (nn/lora.hpp): fine-tuning a frozen pretrained
// base with rank-4 adapters recovers most of full fine-tuning's accuracy with under 5% of its
// trainable parameters.  An MLP (784 -> 128 -> 128 -> 5) is pretrained on Fashion-MNIST classes
// 0-4 (task A), then fine-tuned on classes 5-9 (task B, relabelled 0-4) three ways from the same
// pretrained weights: every weight (full), rank-4 adapters on both hidden layers with the base
// frozen (LoRA; the new task's head trains in both), and the head alone (frozen features, the
// floor LoRA must beat).  Train and validation come from the 60k TRAIN split only.
#include <gtest/gtest.h>

#include <cstdio>

#include "evaluators/datasets.hpp"
#include "evaluators/trainer.hpp"
#include "nn/parallel.hpp"
#include "nn/state_dict.hpp"
#include "spaces/model_builder.hpp"

using namespace hwnas;
using nlohmann::json;

namespace {

// Samples whose label is in [lo, lo + 5), relabelled to 0..4.
eval::Dataset classes(const eval::Dataset& d, int lo) {
  std::vector<int> idx;
  for (int i = 0; i < d.size(); ++i)
    if (d.y[static_cast<std::size_t>(i)] >= lo && d.y[static_cast<std::size_t>(i)] < lo + 5)
      idx.push_back(i);
  eval::Dataset out = eval::take(d, idx);
  for (int& y : out.y) y -= lo;
  out.num_classes = 5;
  return out;
}

spaces::Genome mlp(int lora_rank) {
  spaces::Genome g(spaces::TensorType::vector(784));
  json p = {{"units", 128}, {"activation", "relu"}};
  if (lora_rank > 0) p.update({{"lora_rank", lora_rank}, {"lora_alpha", 8.0}});
  auto d1 = g.add_node("dense", p);
  auto d2 = g.add_node("dense", p);
  auto h = g.add_node("head", {{"outputs", 5}});
  g.add_edge(g.input_node(), d1);
  g.add_edge(d1, d2);
  g.add_edge(d2, h);
  g.validate();
  return g;
}

eval::TrainConfig config(int epochs, float lr) {
  eval::TrainConfig c;
  c.epochs = epochs;
  c.batch_size = 64;
  c.lr = lr;
  c.seed = 3;
  return c;
}

std::int64_t trainable(spaces::GenomeModel& m) {
  std::int64_t n = 0;
  for (const auto& p : m.named_parameters())
    if (p.var.requires_grad()) n += p.var.value().numel();
  return n;
}

// Every tensor of `from` that `m` has (the LoRA model's base), the rest of m's own state kept.
void load_base(spaces::GenomeModel& m, const nn::StateDict& from) {
  nn::StateDict sd = nn::state_dict(m);
  for (auto& [name, t] : sd)
    if (auto it = from.find(name); it != from.end()) t = it->second.clone();
  nn::load_state_dict(m, sd, "pretrained base");
}

}  // namespace

TEST(LoraLearning, RankFourAdaptersRecoverMostOfFullFineTuning) {
  nn::ThreadBudget budget(2);
  const eval::TrainValSplit fm = eval::load_fashion_mnist_train_val(4000, 11, 12000);
  const eval::Dataset train = eval::flatten_samples(fm.train), val = eval::flatten_samples(fm.val);
  const eval::Dataset a_train = classes(train, 0), a_val = classes(val, 0);
  const eval::Dataset b_train = classes(train, 5), b_val = classes(val, 5);

  for (std::uint64_t seed : {1, 2, 3}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    auto pretrained = spaces::build_model(mlp(0), seed);
    eval::TrainConfig pc = config(3, 2e-3f);
    pc.seed = seed;
    const eval::TrainReport pre =
        nn::run_isolated([&] { return eval::train(*pretrained, a_train, a_val, pc); });
    const nn::StateDict base = nn::state_dict(*pretrained);

    auto fine_tune = [&](int rank, bool head_only, std::int64_t* params, double* seconds) {
      auto m = spaces::build_model(mlp(rank), seed + 100);
      load_base(*m, base);
      if (head_only) {
        m->freeze("n1");
        m->freeze("n2");
      }
      *params = trainable(*m);
      eval::TrainConfig c = config(4, 3e-3f);
      c.seed = seed;
      const eval::TrainReport r =
          nn::run_isolated([&] { return eval::train(*m, b_train, b_val, c); });
      *seconds = r.seconds;
      return r.val_accuracy;
    };
    std::int64_t p_full = 0, p_lora = 0, p_head = 0;
    double s_full = 0, s_lora = 0, s_head = 0;
    const double full = fine_tune(0, false, &p_full, &s_full);
    const double lora = fine_tune(4, false, &p_lora, &s_lora);
    const double head = fine_tune(0, true, &p_head, &s_head);
    const double share = static_cast<double>(p_lora) / static_cast<double>(p_full);
    std::printf(
        "seed %llu: fashion-mnist A (classes 0-4) pretrain val accuracy %.3f (%.1f s); "
        "fine-tuning on B (classes 5-9), val accuracy: full %.3f (%lld trainable, %.1f s), LoRA "
        "r=4 %.3f (%lld trainable = %.2f%%, %.1f s), head only %.3f (%lld, %.1f s)\n",
        static_cast<unsigned long long>(seed), pre.val_accuracy, pre.seconds, full,
        static_cast<long long>(p_full), s_full, lora, static_cast<long long>(p_lora), 100 * share,
        s_lora, head, static_cast<long long>(p_head), s_head);
    EXPECT_LT(share, 0.05);
    // Most of full fine-tuning's accuracy, and of its gain over the frozen features + new head.
    EXPECT_GE(lora, 0.95 * full);
    EXPECT_GE(lora - head, 0.5 * (full - head));
  }
}
