// Leftovers of nn::write_file_atomically, which writes `path` through a temporary sibling named
// path + ".tmp.<pid>.<n>" (one per writer) and renames it.
#pragma once

#include <filesystem>
#include <string>

namespace hwnas::test {

// True when a temporary file of an atomic write of `path` is still beside it.
inline bool temp_sibling_exists(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  const std::string prefix = p.filename().string() + ".tmp";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0) return true;
  return false;
}

// Removes every such temporary file.
inline void remove_temp_siblings(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  const std::string prefix = p.filename().string() + ".tmp";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind(prefix, 0) == 0) fs::remove(e.path(), ec);
}

}  // namespace hwnas::test
