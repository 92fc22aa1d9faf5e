// Small helpers several benches share.
#pragma once

#include <time.h>

#include <cstdio>
#include <string>

namespace hwnas::bench {

// CPU seconds of the calling thread (the search loop's coordinator runs on the bench's thread).
inline double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Runs `cmd` through the shell, returning its stdout and stderr; `status` is pclose's.
inline std::string run_command(const std::string& cmd, int& status) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) {
    status = -1;
    return out;
  }
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  status = ::pclose(p);
  return out;
}

}  // namespace hwnas::bench
