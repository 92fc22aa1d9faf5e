// Stable content hashes: the same bytes give the same hash on every machine and build (unlike
// std::hash), so they can name things stored in a database.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace hwnas {

// 64-bit FNV-1a.
inline std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// 16 lowercase hex digits.
inline std::string hex16(std::uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace hwnas
