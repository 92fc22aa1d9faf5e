// Small seeded image tasks shared by the one-shot tests.
#pragma once

#include <cstdint>
#include <random>

#include "evaluators/datasets.hpp"
#include "nn/tensor.hpp"

namespace hwnas::oneshot::test {

// A seeded 4-class task of [3, 8, 8] images: each pixel is N(0, noise_sd) plus
// signal(cls, channel, row, col), the class drawn uniformly per sample.
template <class Signal>
hwnas::eval::TrainValSplit image_task(int train, int val, std::uint64_t seed, float noise_sd,
                                      Signal signal) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, noise_sd);
  auto make = [&](int n) {
    hwnas::eval::Dataset d;
    d.num_classes = 4;
    d.x = hwnas::nn::Tensor(hwnas::nn::Shape{n, 3, 8, 8}, 0.0f);
    for (int i = 0; i < n; ++i) {
      const int cls = static_cast<int>(rng() % 4);
      d.y.push_back(cls);
      for (int c = 0; c < 3; ++c)
        for (int r = 0; r < 8; ++r)
          for (int k = 0; k < 8; ++k)
            d.x.data()[((i * 3 + c) * 8 + r) * 8 + k] = noise(rng) + signal(cls, c, r, k);
    }
    return d;
  };
  return {make(train), make(val)};
}

// A 4-class task that global pooling does not erase: channel 0 holds horizontal stripes,
// vertical stripes, a checkerboard or nothing, under noise; the other channels are noise.
inline hwnas::eval::TrainValSplit pattern_task(int train, int val, std::uint64_t seed) {
  return image_task(train, val, seed, 0.8f, [](int cls, int c, int r, int k) {
    const float pattern = cls == 0 ? (r % 2) : cls == 1 ? (k % 2) : cls == 2 ? (r + k) % 2 : 0.5f;
    return c == 0 ? 1.2f * pattern : 0.0f;
  });
}

// A 4-class task a small network learns quickly: the class is the quadrant with the brightest
// mean in channel 0, plus noise.
inline hwnas::eval::TrainValSplit quadrant_task(int train, int val, std::uint64_t seed) {
  return image_task(train, val, seed, 0.5f, [](int cls, int c, int r, int k) {
    const int q = (r >= 4) * 2 + (k >= 4);
    return c == 0 && q == cls ? 1.0f : 0.0f;
  });
}

}  // namespace hwnas::oneshot::test
