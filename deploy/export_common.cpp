#include <algorithm>
#include <cmath>

#include "deploy/export.hpp"
#include "nn/lora.hpp"
#include "spaces/compress.hpp"

namespace hwnas::deploy {

const std::vector<std::string>& exportable_kinds() {
  static const std::vector<std::string> kinds{"activation",
                                              "add",
                                              "attention",
                                              "avg_pool_3x3",
                                              "concat",
                                              "conv",
                                              "dense",
                                              "dwconv",
                                              "flatten",
                                              "global_pool",
                                              "head",
                                              "nb201_reduction",
                                              "none",
                                              "nor_conv_1x1",
                                              "nor_conv_3x3",
                                              "norm",
                                              "pool",
                                              "skip_connect",
                                              "sliding_attention"};
  return kinds;
}

void check_exportable(const spaces::Genome& g, const std::string& format) {
  const auto& ok = exportable_kinds();
  for (auto v : g.topological_order()) {
    if (v == g.input_node()) continue;
    const std::string& kind = g.node(v).kind;
    if (std::find(ok.begin(), ok.end(), kind) == ok.end()) {
      std::string list;
      for (const auto& k : ok) list += (list.empty() ? "" : ", ") + k;
      throw ExportError("export to " + format + ": node " + std::to_string(v) + " is a '" + kind +
                        "' block, which has no faithful " + format +
                        " form (exportable block kinds: " + list + ")");
    }
  }
}

int merge_lora(spaces::Genome& g, nn::StateDict& weights) {
  int merged = 0;
  for (auto v : g.topological_order()) {
    if (v == g.input_node()) continue;
    spaces::BlockNode& node = g.node(v);
    const int rank = node.params.value("lora_rank", 0);
    if (rank <= 0) continue;
    const double alpha = node.params.value("lora_alpha", 8.0);
    // Training compresses the base weight and adds the float adapter; a merged export would
    // compress the sum instead, another network than the one scored: refuse it plainly.
    if (node.params.value("bits", 32) < 16 || node.params.value("prune", 0.0) > 0)
      throw ExportError("merge_lora: node " + std::to_string(v) + " combines lora_rank " +
                        std::to_string(rank) + " with bits " +
                        std::to_string(node.params.value("bits", 32)) + " / prune " +
                        node.params.value("prune", nlohmann::json(0.0)).dump() +
                        "; its merged weight would be compressed differently from training "
                        "(export it with bits 32 and prune 0, or without LoRA)");
    const std::string pre = "n" + std::to_string(v) + ".";
    // (adapter prefix, base weight, row offset) per adapter of the node.
    std::vector<std::tuple<std::string, std::string, int>> parts;
    if (node.kind == "dense") {
      parts.emplace_back(pre + "linear.", pre + "linear.weight", 0);
    } else {
      const int d = g.node(v).out.dims.back();
      const char* names[] = {"lora_q", "lora_k", "lora_v"};
      for (int i = 0; i < 3; ++i)
        parts.emplace_back(pre + "attn." + names[i] + ".", pre + "attn.qkv.weight", i * d);
      parts.emplace_back(pre + "attn.lora_out.", pre + "attn.out.weight", 0);
    }
    for (const auto& [ap, base, row] : parts) {
      auto a = weights.find(ap + "lora_a"), b = weights.find(ap + "lora_b");
      auto w = weights.find(base);
      if (a == weights.end() || b == weights.end() || w == weights.end())
        throw ExportError("merge_lora: node " + std::to_string(v) + " has lora_rank " +
                          std::to_string(rank) + " but the weights lack " + ap +
                          "lora_a/lora_b or " + base);
      std::mt19937_64 unused(0);
      nn::LoraAdapter adapter(a->second.shape()[1], b->second.shape()[0], rank, alpha, unused);
      adapter.a.value() = a->second;
      adapter.b.value() = b->second;
      w->second = w->second.clone();  // the caller's copy may share storage with a live model
      adapter.merge_into(w->second, row);
      weights.erase(a);
      weights.erase(ap + "lora_b");
      ++merged;
    }
    node.params.erase("lora_rank");
    node.params.erase("lora_alpha");
  }
  return merged;
}

nn::Tensor pruned_weight(const nn::Tensor& w, double prune) {
  if (prune <= 0) return w.clone();
  // bits 32: compress_weight only prunes; the same code the block ran, so the same entries.
  return spaces::compress_weight(nn::constant(w), 32, prune).value().clone();
}

std::vector<float> quant_scales(const nn::Tensor& w, int bits) {
  return spaces::quantisation_scales(w, bits);  // the very scales training used
}

}  // namespace hwnas::deploy
