// Small seeded image tasks shared by the one-shot tests.
#pragma once

#include <cstdint>
#include <random>

#include "evaluators/datasets.hpp"
#include "nn/tensor.hpp"

namespace hwnas::oneshot::test {

// A 4-class task that global pooling does not erase: channel 0 holds horizontal stripes,
// vertical stripes, a checkerboard or nothing, under noise; the other channels are noise.
inline hwnas::eval::TrainValSplit pattern_task(int train, int val, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.8f);
  auto make = [&](int n) {
    hwnas::eval::Dataset d;
    d.num_classes = 4;
    d.x = hwnas::nn::Tensor(hwnas::nn::Shape{n, 3, 8, 8}, 0.0f);
    for (int i = 0; i < n; ++i) {
      const int cls = static_cast<int>(rng() % 4);
      d.y.push_back(cls);
      for (int c = 0; c < 3; ++c)
        for (int r = 0; r < 8; ++r)
          for (int k = 0; k < 8; ++k) {
            const float pattern = cls == 0   ? (r % 2)
                                  : cls == 1 ? (k % 2)
                                  : cls == 2 ? (r + k) % 2
                                             : 0.5f;
            d.x.data()[((i * 3 + c) * 8 + r) * 8 + k] =
                noise(rng) + (c == 0 ? 1.2f * pattern : 0.0f);
          }
    }
    return d;
  };
  return {make(train), make(val)};
}

}  // namespace hwnas::oneshot::test
