// Small hand-built genomes several test folders use.
#pragma once

#include <nlohmann/json.hpp>

#include "spaces/genome.hpp"

namespace hwnas::test {

// 1x28x28 image -> conv (channels, 3x3, stride 2) -> global pool -> head (10 classes).
inline spaces::Genome tiny_cnn(int channels) {
  spaces::Genome g(spaces::TensorType::image(1, 28, 28));
  auto c = g.add_node("conv", {{"channels", channels}, {"kernel", 3}, {"stride", 2}});
  auto p = g.add_node("global_pool", nlohmann::json::object());
  auto h = g.add_node("head", {{"outputs", 10}});
  g.add_edge(g.input_node(), c);
  g.add_edge(c, p);
  g.add_edge(p, h);
  g.validate();
  return g;
}

// 8-vector -> KAN (4 units) -> head (3 classes): a block kind ONNX and PyTorch exports refuse.
inline spaces::Genome tiny_kan() {
  spaces::Genome g(spaces::TensorType::vector(8));
  auto k = g.add_node("kan", {{"units", 4}});
  auto h = g.add_node("head", {{"outputs", 3}});
  g.add_edge(g.input_node(), k);
  g.add_edge(k, h);
  g.validate();
  return g;
}

}  // namespace hwnas::test
