// Running the hwnas binary from a test: exit code and stdout + stderr together.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace hwnas::test {

inline const std::string kHwnasBinary = std::string(HWNAS_BINARY_DIR) + "/hwnas";

struct CommandResult {
  int exit_code;
  std::string output;
};

// `hwnas ARGS` through the shell (ARGS may quote), stderr merged into the output.
inline CommandResult run_hwnas(const std::string& args) {
  const std::string full = kHwnasBinary + " " + args + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace hwnas::test
