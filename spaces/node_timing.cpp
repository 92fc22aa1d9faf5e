#include "spaces/node_timing.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <stdexcept>

#include "hwmodels/host_timer.hpp"
#include "nn/autograd.hpp"
#include "spaces/genome.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"

namespace hwnas::spaces {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  if (v.size() % 2 == 1) return *mid;
  return 0.5 * (*mid + *std::max_element(v.begin(), mid));
}

// Records each node's wall time of the current run; the caller collects after every run.
class StopwatchHook final : public NodeHook {
 public:
  explicit StopwatchHook(std::size_t nodes) : ms_(nodes, 0.0) {}
  void before(std::size_t) override { t0_ = std::chrono::steady_clock::now(); }
  void after(std::size_t node) override {
    const auto t1 = std::chrono::steady_clock::now();
    ms_[node] = std::chrono::duration<double, std::milli>(t1 - t0_).count();
  }
  const std::vector<double>& ms() const { return ms_; }

 private:
  std::vector<double> ms_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace

double NodeTimes::sum_node_ms() const {
  double s = 0;
  for (double t : node_ms) s += t;
  return s;
}

NodeTimes time_nodes_ms(const Genome& g, int batch, int warmup, int reps, std::uint64_t seed,
                        double min_timed_ms) {
  if (batch < 1) throw std::invalid_argument("time_nodes_ms: batch must be >= 1");
  const hw::Workload wl = build_workload(g);
  auto model = build_model(g, seed);
  // Workload nodes are named after their genome node ("n3:conv"): map genome id -> index.
  std::map<std::string, std::size_t> index_of_name;
  for (std::size_t i = 0; i < wl.nodes.size(); ++i) index_of_name[wl.nodes[i].name] = i;
  std::vector<long> index_of_node(g.num_nodes(), -1);
  for (std::size_t v = 0; v < g.num_nodes(); ++v) {
    if (v == g.input_node()) continue;
    auto it = index_of_name.find(workload_node_name(g, v));
    if (it != index_of_name.end()) index_of_node[v] = static_cast<long>(it->second);
  }

  std::vector<int> dims = {batch};
  for (int d : g.input_type().dims) dims.push_back(d);
  nn::Var x = nn::constant(nn::Tensor(nn::Shape(dims), 0.5f));
  nn::ForwardContext ctx;
  ctx.training = false;
  nn::NoGradGuard no_grad;
  StopwatchHook hook(g.num_nodes());
  model->set_node_hook(&hook);

  if (min_timed_ms > 0 && warmup > 0) {
    double fastest = 1e300;
    for (int i = 0; i < warmup; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      model->forward(x, ctx);
      fastest = std::min(
          fastest,
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    warmup = 0;
    reps = std::max(reps, static_cast<int>(std::min(1e5, std::ceil(min_timed_ms / fastest))));
  }
  std::vector<std::vector<double>> per_node(wl.nodes.size());
  std::vector<double> unlisted;
  int run = 0;
  NodeTimes out;
  out.network_ms = hw::measure_median_ms(
      [&] {
        model->forward(x, ctx);
        if (run++ < warmup) return;  // warm-up runs: caches, allocator, lazily built tables
        double other = 0;
        for (std::size_t v = 0; v < g.num_nodes(); ++v) {
          if (v == g.input_node()) continue;
          if (index_of_node[v] >= 0)
            per_node[static_cast<std::size_t>(index_of_node[v])].push_back(hook.ms()[v]);
          else
            other += hook.ms()[v];
        }
        unlisted.push_back(other);
      },
      warmup, reps);
  model->set_node_hook(nullptr);
  out.names.reserve(wl.nodes.size());
  for (std::size_t i = 0; i < wl.nodes.size(); ++i) {
    out.names.push_back(wl.nodes[i].name);
    out.node_ms.push_back(median(per_node[i]));
  }
  out.unlisted_ms = median(unlisted);
  return out;
}

}  // namespace hwnas::spaces
