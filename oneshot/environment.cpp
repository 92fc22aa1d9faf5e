#include "oneshot/environment.hpp"

#include <functional>
#include <mutex>
#include <ostream>
#include <stdexcept>

#include "hwmodels/device.hpp"
#include "oneshot/darts_search.hpp"
#include "oneshot/spos_search.hpp"

namespace hwnas::oneshot {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

class TaskEnvironment final : public strategies::OneShotEnvironment {
 public:
  explicit TaskEnvironment(TaskResources r) : r_(std::move(r)) {}

  std::string unavailable() const override { return r_.unavailable; }

  strategies::SupernetOutcome run_supernet(const spaces::Space& space,
                                           const strategies::SupernetRequest& req) const override {
    // Under data parallelism every rank must reach the first gradient sum, or none may: a rank
    // whose setup throws (data, device, options) says so in the agreement before it rethrows.
    bool agreed = false;
    const auto ready = [&] {
      agreed = true;
      if (r_.shard.active() && !r_.shard.all_ok(true))
        throw std::runtime_error(
            "data-parallel supernet phase: another rank could not set it up (its error is on "
            "its stderr)");
    };
    try {
      return run_method(space, req, ready);
    } catch (...) {
      if (!agreed && r_.shard.active()) (void)r_.shard.all_ok(false);
      throw;
    }
  }

 private:
  // `ready` is called once the data are loaded, just before the training (the agreement).
  strategies::SupernetOutcome run_method(const spaces::Space& space,
                                         const strategies::SupernetRequest& req,
                                         const std::function<void()>& ready) const {
    if (!r_.unavailable.empty()) throw std::invalid_argument(r_.unavailable);
    if (req.method == "spos") return run_spos_phase(space, req, ready);
    if (req.method != "darts")
      throw std::invalid_argument("one-shot environment: unknown supernet method '" + req.method +
                                  "' (known: darts, spos)");
    DartsOptions opt = DartsOptions::from_params(req.params, r_.train, req.seed);
    opt.candidates = req.candidates;
    std::unique_ptr<hw::Device> device = load_target(req.params.value("device", ""));
    if (r_.log && device)
      *r_.log << "darts: supernet phase on " << space.type() << ", hardware term "
              << opt.hardware_weight << " x E[" << opt.cost << "] on " << device->name()
              << std::endl;
    const eval::TrainValSplit data = r_.data();
    ready();
    DartsOutcome o = run_darts(space, data, device.get(), opt, r_.log, r_.shard);
    if (r_.log) {
      *r_.log << "darts: derived " << o.report["arch"].get<std::string>();
      if (device) *r_.log << " (E[" << opt.cost << "] " << o.expected_cost << ")";
      *r_.log << (o.collapsed ? "; skip collapse detected at epoch " +
                                    std::to_string(o.collapse_epoch) + ", guard " + opt.skip_guard
                              : std::string("; no skip collapse"))
              << std::endl;
    }
    strategies::SupernetOutcome out;
    out.candidates = std::move(o.candidates);
    out.report = std::move(o.report);
    return out;
  }

  strategies::SupernetOutcome run_spos_phase(const spaces::Space& space,
                                             const strategies::SupernetRequest& req,
                                             const std::function<void()>& ready) const {
    SposOptions opt = SposOptions::from_params(req.params, r_.train, req.seed);
    opt.candidates = req.candidates;
    // The run's objectives, each read on its device (a cost without @DEVICE: the first one).
    std::vector<std::unique_ptr<hw::Device>> devices;
    std::vector<SposObjective> objectives;
    std::string names;
    for (const auto& o : req.objectives) {
      SposObjective so;
      so.name = o.name;
      so.maximize = o.maximize;
      std::string m = o.name;
      if (const auto colon = m.rfind(':'); colon != std::string::npos) m = m.substr(0, colon);
      std::string dev;
      if (const auto at = m.find('@'); at != std::string::npos) {
        dev = m.substr(at + 1);
        m = m.substr(0, at);
      }
      so.metric = m;
      if (m == "latency_ms" || m == "energy_mj" || m == "memory_bytes") {
        // A configured device at its configured batch, as the search loop costs candidates.
        std::size_t k = 0;
        while (k < r_.devices.size() && r_.devices[k] != dev) ++k;
        const int batch = k < r_.device_batches.size() ? r_.device_batches[k] : 0;
        devices.push_back(k < r_.devices.size() && batch > 0 ? hw::load_device(dev, batch)
                                                             : load_target(dev));
        if (!devices.back())
          throw std::invalid_argument("objective '" + o.name +
                                      "': spos ranks subnets on device costs, but the run has "
                                      "no device (config.devices)");
        so.device = devices.back().get();
      }
      objectives.push_back(so);
      names += (names.empty() ? "" : ", ") + o.name;
    }
    if (r_.log)
      *r_.log << "spos: supernet phase on " << space.type() << " ("
              << (opt.schedule == "progressive"
                      ? "progressive shrinking: " + std::to_string(opt.full_epochs) + " full, " +
                            std::to_string(opt.kernel_epochs) + " kernel, " +
                            std::to_string(opt.depth_epochs) + " depth, " +
                            std::to_string(opt.width_epochs) + " width epochs" +
                            (opt.kd ? ", in-place distillation" : "")
                      : std::to_string(opt.epochs) + " epochs of uniform single-path steps")
              << "), then evolution of " << opt.population << " x " << opt.generations
              << " generations on inherited " << names
              << (opt.recalibrate_bn ? ", batch-norm recalibrated" : "") << std::endl;
    const eval::TrainValSplit data = r_.data();
    ready();
    SposOutcome o = run_spos(space, data, objectives, opt, r_.log, r_.shard);
    if (r_.log && !o.candidates.empty())
      *r_.log << "spos: " << o.candidates.size() << " picks; the first has inherited "
              << o.candidate_metrics.front().dump() << " (" << space.describe(o.candidates.front())
              << ")" << std::endl;
    strategies::SupernetOutcome out;
    out.candidates = std::move(o.candidates);
    out.candidate_metrics = std::move(o.candidate_metrics);
    out.report = std::move(o.report);
    return out;
  }

  // The target device: the named one, else the run's first.
  std::unique_ptr<hw::Device> load_target(const std::string& name) const {
    if (name.empty()) {
      if (r_.devices.empty()) return nullptr;
      const int b = r_.device_batches.empty() ? 0 : r_.device_batches.front();
      return b > 0 ? hw::load_device(r_.devices.front(), b) : hw::load_device(r_.devices.front());
    }
    try {
      return hw::load_device(name);
    } catch (const std::exception& e) {
      throw std::invalid_argument("strategy.device: '" + name + "': " + e.what() +
                                  " (presets: " + join(hw::preset_names()) + ")");
    }
  }

  TaskResources r_;
};

}  // namespace

std::shared_ptr<const strategies::OneShotEnvironment> make_task_environment(TaskResources r) {
  return std::make_shared<TaskEnvironment>(std::move(r));
}

}  // namespace hwnas::oneshot
