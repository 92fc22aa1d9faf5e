#include <algorithm>
#include <cmath>

#include "deploy/export.hpp"
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

nn::Tensor pruned_weight(const nn::Tensor& w, double prune) {
  if (prune <= 0) return w.clone();
  // bits 32: compress_weight only prunes; the same code the block ran, so the same entries.
  return spaces::compress_weight(nn::constant(w), 32, prune).value().clone();
}

float quant_scale(const nn::Tensor& w, int bits) {
  if (bits >= 16 || w.numel() == 0) return 0;
  const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
  const float maxabs = w.array().abs().maxCoeff();
  return maxabs > 0 ? maxabs / qmax : 0.0f;
}

}  // namespace hwnas::deploy
