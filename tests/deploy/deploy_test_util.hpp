// Shared by the deploy tests: temporary folders, running a command (the hwnas binary, python3)
// with its exit code, stdout and stderr, and the Python packages the checks need.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace deploy_test {

namespace fs = std::filesystem;

inline const std::string kBinary = std::string(HWNAS_BINARY_DIR) + "/hwnas";
inline const std::string kPython = "/usr/bin/python3";

inline fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() /
               ("hwnas_deploy_" + name + "_" + std::to_string(static_cast<long>(::getpid())));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct CommandResult {
  int code = -1;
  std::string out, err;
};

// Runs `cmd` through the shell; stdout and stderr are captured separately.
inline CommandResult run_command(const std::string& cmd, const fs::path& dir) {
  const fs::path out = dir / "cmd.out", err = dir / "cmd.err";
  const int status =
      std::system((cmd + " > '" + out.string() + "' 2> '" + err.string() + "'").c_str());
  CommandResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// "" when `import <module>` works in Debian's python3, else what is missing and how to get it.
inline std::string python_module_missing(const std::string& module, const std::string& package) {
  const std::string cmd = kPython + " -c 'import " + module + "' > /dev/null 2>&1";
  if (std::system(cmd.c_str()) == 0) return "";
  return "python3 cannot import " + module + ": install Debian's " + package +
         " (bash scripts/setup.sh installs it)";
}

inline int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace deploy_test
