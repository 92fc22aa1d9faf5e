// Portable draws for generated tasks.  The distributions of <random> are implementation-
// defined; these use only the raw output of std::mt19937_64 (which the standard fixes), so a
// generated task is bit-identical for a seed on every standard library.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace hwnas::eval::seeded {

inline int uniform_int(std::mt19937_64& rng, int lo, int hi) {  // inclusive
  const std::uint64_t span = static_cast<std::uint64_t>(hi - lo) + 1;
  return lo + static_cast<int>(rng() % span);
}
inline float uniform01(std::mt19937_64& rng) {
  return static_cast<float>((rng() >> 40) * 0x1.0p-24);
}
inline double uniform01_double(std::mt19937_64& rng) { return (rng() >> 11) * 0x1.0p-53; }
inline float uniform(std::mt19937_64& rng, float lo, float hi) {
  return lo + (hi - lo) * uniform01(rng);
}
inline float normal(std::mt19937_64& rng) {  // Box-Muller, one value per call
  float u1 = std::max(uniform01(rng), 1e-7f), u2 = uniform01(rng);
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
}
inline void shuffle(std::vector<int>& v, std::mt19937_64& rng) {  // Fisher-Yates
  for (int i = static_cast<int>(v.size()) - 1; i > 0; --i)
    std::swap(v[static_cast<std::size_t>(i)], v[static_cast<std::size_t>(uniform_int(rng, 0, i))]);
}

}  // namespace hwnas::eval::seeded
