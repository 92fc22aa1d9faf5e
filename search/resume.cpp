#include "search/resume.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>

namespace hwnas::search {

std::string this_host() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

bool pid_alive(std::int64_t pid) {
  if (pid <= 0) return false;
  // EPERM: it exists but belongs to someone else (still alive).
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  // A zombie is dead: a coordinator killed under mpirun stays one until something reaps it
  // (in a container whose init does not reap, for good).  /proc/PID/stat: "pid (comm) S ...".
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (std::getline(stat, line))
    if (auto close = line.rfind(')'); close != std::string::npos && close + 2 < line.size())
      return line[close + 2] != 'Z';
  return true;
}

namespace {

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// True when the run's coordinator is known to be gone; runs stored before schema version 5
// (no host, no heartbeat) cannot be judged and count as alive.
bool coordinator_gone(const db::RunInfo& r) {
  if (r.host.empty() && r.heartbeat == 0) return false;
  if (r.host == this_host() && !pid_alive(r.pid)) return true;
  return r.heartbeat > 0 && unix_now() - r.heartbeat > kStaleAfterSeconds;
}

void flatten(const nlohmann::json& j, const std::string& prefix,
             std::map<std::string, nlohmann::json>& out) {
  if (j.is_object() && !j.empty()) {
    for (const auto& [k, v] : j.items()) flatten(v, prefix.empty() ? k : prefix + "." + k, out);
  } else {
    out[prefix] = j;
  }
}

}  // namespace

std::string displayed_status(const db::RunInfo& run) {
  if (run.status == "running" && coordinator_gone(run)) return "stale";
  return run.status;
}

std::string config_differences(const nlohmann::json& stored, const nlohmann::json& now) {
  static const std::set<std::string> execution_only = {"db", "workers", "threads",
                                                       "worker_timeout_seconds"};
  std::map<std::string, nlohmann::json> a, b;
  flatten(stored, "", a);
  flatten(now, "", b);
  std::set<std::string> keys;
  for (const auto& [k, v] : a) keys.insert(k);
  for (const auto& [k, v] : b) keys.insert(k);
  std::string out;
  for (const auto& k : keys) {
    if (execution_only.count(k.substr(0, k.find('.')))) continue;
    auto ia = a.find(k), ib = b.find(k);
    if (ia != a.end() && ib != b.end() && ia->second == ib->second) continue;
    out += "\n  " + k + ": " + (ib == b.end() ? std::string("absent") : ib->second.dump()) +
           " here, " + (ia == a.end() ? std::string("absent") : ia->second.dump()) + " in the run";
  }
  return out;
}

std::int64_t find_resumable_run(const db::Store& store, const SearchConfig& config,
                                std::optional<std::int64_t> run_id) {
  const std::string db = store.path();
  std::optional<db::RunInfo> run;
  if (run_id) {
    run = store.run(*run_id);
    if (!run)
      throw std::invalid_argument("--run: no run " + std::to_string(*run_id) + " in " + db +
                                  " (see `hwnas runs --db " + db + "`)");
  } else {
    int finished = 0;
    for (const auto& r : store.runs()) {
      if (r.name != config.name) continue;
      if (r.status == "finished")
        ++finished;
      else
        run = r;  // runs() is in id order: the last one wins
    }
    if (!run)
      throw std::invalid_argument(
          "--resume: no run named '" + config.name + "' to resume in " + db +
          (finished ? " (its " + std::to_string(finished) + " run(s) all finished)" : "") +
          "; start it without --resume");
  }
  const std::string what = "run " + std::to_string(run->id) + " ('" + run->name + "')";
  if (run->status == "finished")
    throw std::invalid_argument("--resume: " + what +
                                " already finished; nothing to resume (start a new run without "
                                "--resume)");
  if (run->status == "running" && displayed_status(*run) == "running")
    throw std::invalid_argument("--resume: " + what + " is still running (coordinator pid " +
                                std::to_string(run->pid) + " on " +
                                (run->host.empty() ? std::string("an unknown host") : run->host) +
                                "); stop it first, or wait " + std::to_string(kStaleAfterSeconds) +
                                " s after its last heartbeat if that machine is gone");
  const std::string diff = config_differences(run->config, config.resolved);
  if (!diff.empty())
    throw std::invalid_argument("--resume: the config differs from " + what +
                                "'s stored config (a resumed run must be the same search):" + diff);
  return run->id;
}

}  // namespace hwnas::search
