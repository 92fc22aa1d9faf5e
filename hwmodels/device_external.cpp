// External devices: a cost model in any language, run as a separate process that speaks a
// versioned JSON-lines protocol on its stdin/stdout (docs: docs/external_devices.md; a
// Python helper: examples/devices/external/hwnas_device.py).
//
// hwnas starts the command on first use and keeps it running:
//   -> {"type": "hello", "protocol": 1, "device": NAME}
//   <- {"type": "hello", "protocol": 1, "name": "...", "objectives": ["latency_ms", ...]}
//   -> {"type": "estimate", "id": N, "batch": B, "architecture": {genome} | null,
//       "workload": {...}}                                 (workload with measured activity)
//   <- {"type": "result", "id": N, "latency_ms": x, "energy_mj": y, "memory_bytes": z,
//       "feasible": true, "reason": ""}                    (objectives not offered: omitted)
//   <- {"type": "error", "id": N, "message": "..."}       (this architecture cannot be costed)
// A process whose hello says "batch": true (and optionally "max_batch": M, default 64) may be
// sent several requests in one line by estimate_many():
//   -> {"type": "estimate_batch", "id": B, "requests": [estimate requests]}
//   <- {"type": "results", "id": B, "results": [one result or error answer per request]}
// A process that crashes, runs past timeout_s (killed), answers something that is not the
// expected JSON line, or returns NaN / negative figures fails that cost with a message naming
// the device; a dead or misbehaving process is restarted for the next request; the search goes
// on.  Requests are serialised (one process per device).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <sstream>

#include "hwmodels/device_base.hpp"

namespace hwnas::hw {
namespace {

constexpr int kProtocol = 1;
constexpr double kHandshakeSeconds = 60;
using nlohmann::json;

// One running device process: a socket pair is its stdin and stdout (send() with MSG_NOSIGNAL,
// so writing to a process that died is an error, not a SIGPIPE).
class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() { stop(); }

  bool running() const { return pid_ > 0; }

  // Starts argv in `cwd` with `env` added; throws std::runtime_error when it cannot.
  void start(const std::vector<std::string>& argv, const std::string& cwd,
             const std::vector<std::pair<std::string, std::string>>& env) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      throw std::runtime_error("socketpair() failed");
    // exec failures are reported through a close-on-exec pipe: EOF means exec worked.
    int errpipe[2];
    if (::pipe2(errpipe, O_CLOEXEC) != 0) {
      ::close(sv[0]);
      ::close(sv[1]);
      throw std::runtime_error("pipe() failed");
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (int fd : {sv[0], sv[1], errpipe[0], errpipe[1]}) ::close(fd);
      throw std::runtime_error("fork() failed");
    }
    if (pid == 0) {
      ::dup2(sv[1], 0);
      ::dup2(sv[1], 1);
      if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
        const int e = errno;
        (void)!::write(errpipe[1], &e, sizeof e);
        ::_exit(127);
      }
      for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      ::signal(SIGPIPE, SIG_DFL);
      ::execvp(args[0], args.data());
      const int e = errno;
      (void)!::write(errpipe[1], &e, sizeof e);
      ::_exit(127);
    }
    ::close(sv[1]);
    ::close(errpipe[1]);
    int e = 0;
    const ssize_t k = ::read(errpipe[0], &e, sizeof e);
    ::close(errpipe[0]);
    if (k == sizeof e) {
      ::close(sv[0]);
      int status;
      ::waitpid(pid, &status, 0);
      throw std::runtime_error("cannot start '" + argv[0] + "'" +
                               (cwd.empty() ? "" : " in '" + cwd + "'") + ": " + std::strerror(e));
    }
    pid_ = pid;
    fd_ = sv[0];
    buffer_.clear();
  }

  void stop() {
    if (fd_ >= 0) ::close(fd_);  // the process sees EOF on stdin and may exit by itself
    fd_ = -1;
    if (pid_ > 0) {
      int status;
      // Give it a moment to exit on EOF, then kill it.
      for (int i = 0; i < 20; ++i) {
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          return;
        }
        ::usleep(5000);
      }
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
    pid_ = -1;
  }

  // Sends one line; false when the process is gone.
  bool send_line(const std::string& line) {
    std::string s = line + "\n";
    const char* p = s.data();
    std::size_t n = s.size();
    while (n > 0) {
      const ssize_t k = ::send(fd_, p, n, MSG_NOSIGNAL);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return false;
      p += k;
      n -= static_cast<std::size_t>(k);
    }
    return true;
  }

  enum class Read { Line, Eof, Timeout };
  // Reads one line (without the newline) within `timeout_s`.
  Read read_line(std::string& line, double timeout_s) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (true) {
      const auto nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return Read::Line;
      }
      const double left =
          std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return Read::Timeout;
      pollfd p{fd_, POLLIN, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(std::ceil(left * 1000)));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) return Read::Timeout;
      char buf[65536];
      const ssize_t k = ::recv(fd_, buf, sizeof buf, 0);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) return Read::Eof;
      buffer_.append(buf, static_cast<std::size_t>(k));
    }
  }

  // How the process ended (after EOF), in words; reaps it.
  std::string end_reason() {
    if (pid_ <= 0) return "is not running";
    int status = 0;
    pid_t r = -1;
    for (int i = 0; i < 100 && r != pid_; ++i) {
      r = ::waitpid(pid_, &status, WNOHANG);
      if (r != pid_) ::usleep(2000);
    }
    if (r != pid_) return "closed its output";
    pid_ = -1;
    if (WIFSIGNALED(status))
      return "crashed with signal " + std::to_string(WTERMSIG(status)) + " (" +
             strsignal(WTERMSIG(status)) + ")";
    return "exited with status " + std::to_string(WEXITSTATUS(status));
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buffer_;
};

// A failed cost: infeasible, figures not computed (NaN, stored as NULL).
Cost failed_cost(const std::string& why) {
  Cost c;
  c.feasible = false;
  c.infeasible_reason = why;
  c.latency_ms = c.energy_mj = c.memory_bytes = std::nan("");
  return c;
}

// One running device process and what its handshake said.
struct Worker {
  Process proc;
  std::vector<std::string> objectives;
  bool batch_capable = false;  // "batch": true in its hello
  std::size_t max_batch = 64;
};

class ExternalDevice final : public DeviceBase {
 public:
  explicit ExternalDevice(const json& d) : DeviceBase(d) {
    const auto& r = reader();
    const json* cmd = r.find("command");
    if (!cmd || !cmd->is_array() || cmd->empty())
      fail("command",
           "must be a non-empty array: the program and its arguments, e.g. "
           "[\"python3\", \"my_device.py\"]");
    for (const auto& a : *cmd) {
      if (!a.is_string() || a.get<std::string>().empty())
        fail("command", "every element must be a non-empty string");
      argv_.push_back(a.get<std::string>());
    }
    cwd_ = r.string_or("cwd", "");
    if (const json* e = r.find("env")) {
      if (!e->is_object()) fail("env", "must be an object {NAME: value}");
      for (const auto& [k, v] : e->items()) {
        if (!v.is_string()) fail("env." + k, "must be a string");
        env_.emplace_back(k, v.get<std::string>());
      }
    }
    timeout_s_ = r.positive_or("timeout_s", 60);
    batch_ = r.positive_int_or("batch", 1);
    cache_ = r.boolean_or("cache", true);
    concurrency_ = r.positive_int_or("concurrency", 1);
    workers_ = std::vector<Worker>(static_cast<std::size_t>(concurrency_));
    busy_.assign(workers_.size(), false);
  }

  bool supports(OpCategory) const override { return true; }
  bool calibratable() const override { return false; }
  // Calls are serialised here, so any thread may call.
  bool thread_safe() const override { return true; }
  bool wants_architecture() const override { return true; }
  bool caches_costs() const override { return cache_; }

 protected:
  // A free process for the duration of one request (or batch of requests).
  class Lease {
   public:
    explicit Lease(const ExternalDevice& d) : d_(d) {
      std::unique_lock<std::mutex> lock(d_.pool_mu_);
      d_.pool_cv_.wait(lock, [&] {
        for (std::size_t i = 0; i < d_.busy_.size(); ++i)
          if (!d_.busy_[i]) {
            index_ = i;
            return true;
          }
        return false;
      });
      d_.busy_[index_] = true;
    }
    ~Lease() {
      {
        std::lock_guard<std::mutex> lock(d_.pool_mu_);
        d_.busy_[index_] = false;
      }
      d_.pool_cv_.notify_one();
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Worker& worker() const { return d_.workers_[index_]; }

   private:
    const ExternalDevice& d_;
    std::size_t index_ = 0;
  };

  Cost run(const Workload& w, bool) const override {
    Lease lease(*this);
    Worker& wk = lease.worker();
    const std::string who = "external device '" + name_ + "'";
    if (!wk.proc.running()) {
      std::string why = start(wk);
      if (!why.empty()) return failed_cost(who + ": " + why);
    }
    const std::uint64_t id = ++next_id_;
    json a;
    if (std::string why = exchange(wk, request(w, id), "result", id, timeout_s_, a); !why.empty())
      return failed_cost(who + ": " + why);
    return answer_cost(wk, a, id, who);
  }

  // A process that said {"batch": true} in its handshake gets up to max_batch requests in one
  // {"type": "estimate_batch", "id": B, "requests": [...]} line and answers them in one
  // {"type": "results", "id": B, "results": [...]} line (each element a result or an error
  // answer of its request id); others get the requests one by one.
  std::vector<Cost> run_many(const std::vector<const Workload*>& ws) const override {
    Lease lease(*this);
    Worker& wk = lease.worker();
    const std::string who = "external device '" + name_ + "'";
    std::vector<Cost> out;
    out.reserve(ws.size());
    for (std::size_t first = 0; first < ws.size();) {
      if (!wk.proc.running()) {
        if (std::string why = start(wk); !why.empty()) {
          out.push_back(failed_cost(who + ": " + why));
          ++first;
          continue;
        }
      }
      const std::size_t n = wk.batch_capable ? std::min(wk.max_batch, ws.size() - first) : 1;
      std::vector<std::uint64_t> ids;
      json reqs = json::array();
      for (std::size_t i = 0; i < n; ++i) {
        ids.push_back(++next_id_);
        reqs.push_back(request(*ws[first + i], ids.back()));
      }
      if (!wk.batch_capable) {
        json a;
        std::string why = exchange(wk, reqs[0], "result", ids[0], timeout_s_, a);
        out.push_back(why.empty() ? answer_cost(wk, a, ids[0], who)
                                  : failed_cost(who + ": " + why));
        first += n;
        continue;
      }
      const std::uint64_t batch_id = ++next_id_;
      json a;
      std::string why =
          exchange(wk, json{{"type", "estimate_batch"}, {"id", batch_id}, {"requests", reqs}},
                   "results", batch_id, timeout_s_ * static_cast<double>(n), a);
      const json* results = a.is_object() ? &a["results"] : nullptr;
      if (why.empty() && (!results->is_array() || results->size() != n)) {
        wk.proc.stop();
        why = "answer to a batch of " + std::to_string(n) +
              " requests does not carry \"results\": an array of " + std::to_string(n) +
              " answers (the process was restarted)";
      }
      for (std::size_t i = 0; i < n; ++i)
        out.push_back(why.empty() ? answer_cost(wk, (*results)[i], ids[i], who)
                                  : failed_cost(who + ": " + why));
      first += n;
    }
    return out;
  }

 private:
  json request(const Workload& w, std::uint64_t id) const {
    return {{"type", "estimate"},
            {"id", id},
            {"batch", batch_},
            {"architecture", w.architecture.is_null() ? json(nullptr) : w.architecture},
            {"workload", w.to_json()}};
  }

  // Sends `msg` and reads the answer of type `type` (or "error") carrying `id` into `a`.
  // Returns "" or why there is no usable answer (the process is then stopped or gone).
  std::string exchange(Worker& wk, const json& msg, const std::string& type, std::uint64_t id,
                       double timeout_s, json& a) const {
    if (!wk.proc.send_line(msg.dump())) {
      std::string why = "the process " + wk.proc.end_reason() + " (restarted for the next request)";
      wk.proc.stop();
      return why;
    }
    std::string line;
    switch (wk.proc.read_line(line, timeout_s)) {
      case Process::Read::Timeout:
        wk.proc.stop();
        return "no answer within timeout_s = " + format(timeout_s) +
               " s; the process was killed (restarted for the next request)";
      case Process::Read::Eof: {
        std::string why = "the process " + wk.proc.end_reason() +
                          " before answering (restarted for the next request)";
        wk.proc.stop();
        return why;
      }
      case Process::Read::Line:
        break;
    }
    try {
      a = json::parse(line);
    } catch (const json::exception&) {  // parse_error, or out_of_range for a number like 1e400
      wk.proc.stop();
      return "answered a line that is not JSON: '" + clip(line) + "' (the process was restarted)";
    }
    if (!a.is_object() || a.value("id", json()) != json(id)) {
      wk.proc.stop();
      return "answer " + clip(a.dump()) + " is not the answer to request " + std::to_string(id) +
             " (the process was restarted)";
    }
    const std::string got = a.value("type", "");
    if (got != type && got != "error") {
      wk.proc.stop();
      return "answer type '" + got + "' where '" + type +
             "' or 'error' was expected (the process was restarted)";
    }
    if (got == "error") return a.value("message", std::string("error without a message"));
    return "";
  }

  // One result answer (already matched to its request) as a cost.
  Cost answer_cost(const Worker& wk, const json& a, std::uint64_t id,
                   const std::string& who) const {
    if (!a.is_object() || a.value("id", json()) != json(id))
      return failed_cost(who + ": answer " + clip(a.dump()) + " is not the answer to request " +
                         std::to_string(id));
    const std::string type = a.value("type", "");
    if (type == "error")
      return failed_cost(who + ": " + a.value("message", std::string("error without a message")));
    if (type != "result")
      return failed_cost(who + ": answer type '" + type + "' where 'result' was expected");
    Cost c;
    c.feasible = a.value("feasible", true);
    if (!c.feasible) c.infeasible_reason = a.value("reason", std::string("reported infeasible"));
    std::string bad;
    auto figure = [&](const char* key, double scale, double& out) {
      if (!a.contains(key)) {
        out = offers(wk, key) ? std::nan("") : 0;
        if (offers(wk, key) && bad.empty()) bad = std::string(key) + " missing";
        return;
      }
      const json& v = a[key];
      if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0) {
        if (bad.empty())
          bad = std::string(key) + " = " + clip(v.dump()) + " (must be a finite number >= 0)";
        out = std::nan("");
        return;
      }
      out = v.get<double>() * scale;
    };
    figure("latency_ms", 1.0, c.latency_ms);
    figure("energy_mj", energy_scale(), c.energy_mj);
    figure("memory_bytes", 1.0, c.memory_bytes);
    if (!bad.empty()) return failed_cost(who + ": answered " + bad);
    return c;
  }

 private:
  // Starts the process and does the handshake; returns "" or why it failed.
  std::string start(Worker& wk) const {
    try {
      wk.proc.start(argv_, cwd_, env_);
    } catch (const std::exception& e) {
      return e.what();
    }
    json hello = {{"type", "hello"}, {"protocol", kProtocol}, {"device", name_}};
    std::string line;
    // Starting may take longer than answering (an interpreter importing a framework on a busy
    // machine), so the hello gets at least kHandshakeSeconds.
    const double limit = std::max(timeout_s_, kHandshakeSeconds);
    const bool sent = wk.proc.send_line(hello.dump());
    const Process::Read got = sent ? wk.proc.read_line(line, limit) : Process::Read::Eof;
    if (got == Process::Read::Timeout) {
      wk.proc.stop();
      return "no hello within " + format(limit) + " s of starting (the process was killed)";
    }
    if (got == Process::Read::Eof) {
      const std::string why = "the process " + wk.proc.end_reason() + " during the handshake";
      wk.proc.stop();
      return why;
    }
    json a;
    try {
      a = json::parse(line);
    } catch (const json::exception&) {  // parse_error, or out_of_range for a number like 1e400
      wk.proc.stop();
      return "handshake answer is not JSON: '" + clip(line) + "'";
    }
    if (!a.is_object() || a.value("type", "") != "hello" || a.value("protocol", 0) != kProtocol) {
      wk.proc.stop();
      return "handshake answer " + clip(a.dump()) +
             " is not {\"type\": \"hello\", \"protocol\": " + std::to_string(kProtocol) +
             ", ...} (this hwnas speaks protocol version " + std::to_string(kProtocol) + ")";
    }
    wk.objectives.clear();
    for (const auto& o : a.value("objectives", json::array({"latency_ms"})))
      if (o.is_string()) wk.objectives.push_back(o.get<std::string>());
    wk.batch_capable = a.value("batch", false) == true;
    const json mb = a.value("max_batch", json(64));
    wk.max_batch = mb.is_number_integer() && mb.get<long long>() >= 1
                       ? static_cast<std::size_t>(mb.get<long long>())
                       : 64;
    return "";
  }

  static bool offers(const Worker& wk, const std::string& key) {
    return std::find(wk.objectives.begin(), wk.objectives.end(), key) != wk.objectives.end();
  }
  static std::string clip(const std::string& s) {
    return s.size() <= 200 ? s : s.substr(0, 200) + "...";
  }
  static std::string format(double v) {
    std::ostringstream s;
    s << v;
    return s.str();
  }

  std::vector<std::string> argv_;
  std::string cwd_;
  std::vector<std::pair<std::string, std::string>> env_;
  double timeout_s_ = 60;
  bool cache_ = true;
  int batch_ = 1;
  int concurrency_ = 1;
  // `concurrency_` processes, each serving one request at a time; a caller leases a free one.
  mutable std::vector<Worker> workers_;
  mutable std::vector<bool> busy_;
  mutable std::mutex pool_mu_;
  mutable std::condition_variable pool_cv_;
  mutable std::atomic<std::uint64_t> next_id_{0};
};

}  // namespace

std::unique_ptr<Device> make_external_device(const json& d) {
  return std::make_unique<ExternalDevice>(d);
}

}  // namespace hwnas::hw
