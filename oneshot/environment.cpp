#include "oneshot/environment.hpp"

#include <mutex>
#include <ostream>
#include <stdexcept>

#include "hwmodels/device.hpp"
#include "oneshot/darts_search.hpp"

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
    if (!r_.unavailable.empty()) throw std::invalid_argument(r_.unavailable);
    if (req.method != "darts")
      throw std::invalid_argument("one-shot environment: unknown supernet method '" + req.method +
                                  "' (known: darts)");
    DartsOptions opt = DartsOptions::from_params(req.params, r_.train, req.seed);
    opt.candidates = req.candidates;
    std::unique_ptr<hw::Device> device = load_target(req.params.value("device", ""));
    if (r_.log && device)
      *r_.log << "darts: supernet phase on " << space.type() << ", hardware term "
              << opt.hardware_weight << " x E[" << opt.cost << "] on " << device->name()
              << std::endl;
    const eval::TrainValSplit data = r_.data();
    DartsOutcome o = run_darts(space, data, device.get(), opt, r_.log);
    if (r_.log) {
      *r_.log << "darts: derived " << o.report["arch"].get<std::string>();
      if (device) *r_.log << " (E[" << opt.cost << "] " << o.expected_cost << ")";
      *r_.log << (o.collapsed ? "; skip collapse detected at epoch " +
                                    std::to_string(o.collapse_epoch) + ", guard " + opt.skip_guard
                              : std::string("; no skip collapse"))
              << std::endl;
    }
    return {std::move(o.candidates), std::move(o.report)};
  }

 private:
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
