#include "spaces/mixer_stack.hpp"

#include <stdexcept>

namespace hwnas::spaces {

Genome mixer_stack(const TensorType& input, int width, int layers, const std::string& kind,
                   const nlohmann::json& params, int outputs) {
  if (input.kind != DataKind::Sequence)
    throw std::invalid_argument("mixer_stack: input must be a sequence [L, F]");
  if (width < 1 || layers < 1 || outputs < 1)
    throw std::invalid_argument("mixer_stack: width, layers and outputs must be >= 1, got " +
                                std::to_string(width) + ", " + std::to_string(layers) + ", " +
                                std::to_string(outputs));
  Genome g(input);
  Genome::NodeId h = g.add_node("dense", {{"units", width}, {"activation", "none"}});
  g.add_edge(g.input_node(), h);
  for (int i = 0; i < layers; ++i) {
    // Pre-norm residual block, as the Mamba and S4 reference models stack their mixers.
    const auto norm = g.add_node("norm", {{"type", "layer"}});
    g.add_edge(h, norm);
    const auto mixer = g.add_node(kind, params);
    g.add_edge(norm, mixer);
    const auto sum = g.add_node("add");
    g.add_edge(h, sum);
    g.add_edge(mixer, sum);
    h = sum;
  }
  const auto norm = g.add_node("norm", {{"type", "layer"}});
  g.add_edge(h, norm);
  const auto head = g.add_node("head", {{"outputs", outputs}});
  g.add_edge(norm, head);
  g.validate();
  return g;
}

}  // namespace hwnas::spaces
