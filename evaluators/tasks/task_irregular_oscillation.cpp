// irregular_oscillation: classify the frequency of a noisy sine wave observed at irregular,
// random times (the setting of ODE-RNNs and CfCs, where the time stamps are an input).  Class k
// of K has frequency f_k, log-spaced over [min_freq, max_freq] cycles per unit time; amplitude
// and phase are random.  Each token is [value, time stamp, time since the previous sample].
#include <algorithm>
#include <cmath>

#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval::tasks {
namespace {

Dataset make_oscillation(const json& p, int n, std::uint64_t seed) {
  const int len = pint(p, "seq_len"), classes = pint(p, "classes");
  const float fmin = pfloat(p, "min_freq"), fmax = pfloat(p, "max_freq"),
              noise = pfloat(p, "noise");
  Dataset d = alloc_dataset(n, {len, 3});
  d.num_classes = classes;
  d.y.resize(static_cast<std::size_t>(n));
  std::mt19937_64 rng(seed);
  std::vector<float> t(static_cast<std::size_t>(len));
  for (int s = 0; s < n; ++s) {
    const int k = seeded::uniform_int(rng, 0, classes - 1);
    const float f = fmin * std::pow(fmax / fmin, classes > 1 ? float(k) / (classes - 1) : 0.0f);
    const float amp = seeded::uniform(rng, 0.5f, 1.5f);
    const float phase = seeded::uniform(rng, 0.0f, 6.2831853f);
    for (float& v : t) v = seeded::uniform01(rng);
    std::sort(t.begin(), t.end());
    float* x = d.x.data() + static_cast<std::int64_t>(s) * len * 3;
    for (int i = 0; i < len; ++i) {
      const float ti = t[static_cast<std::size_t>(i)];
      x[i * 3] = amp * std::sin(6.2831853f * f * ti + phase) + noise * seeded::normal(rng);
      x[i * 3 + 1] = ti;
      x[i * 3 + 2] = i ? ti - t[static_cast<std::size_t>(i - 1)] : ti;
    }
    d.y[static_cast<std::size_t>(s)] = k;
  }
  return d;
}

}  // namespace

void register_task_irregular_oscillation(Registry<TaskEntry>& r) {
  TaskEntry e;
  e.name = "irregular_oscillation";
  e.description =
      "irregularly sampled time series: classify a noisy oscillation's frequency from samples "
      "at random times (tokens [value, t, dt])";
  e.params = {ParamSpec::int_range("seq_len", 2, 4096, 64, "samples per series"),
              ParamSpec::int_range("classes", 2, 64, 4, "frequency classes"),
              ParamSpec::float_range("min_freq", 0.1, 1000, 1.0,
                                     "lowest class frequency (cycles per unit time)"),
              ParamSpec::float_range("max_freq", 0.1, 1000, 6.0, "highest class frequency"),
              ParamSpec::float_range("noise", 0, 10, 0.1, "std of additive gaussian noise")};
  e.head = HeadKind::Classes;
  e.inputs = [](const json& p) {
    return std::vector<TensorType>{TensorType::sequence(pint(p, "seq_len"), 3)};
  };
  e.outputs = [](const json& p) { return pint(p, "classes"); };
  e.generate = [](const json& p, const TensorType&, std::uint64_t seed, const SplitSizes& sizes) {
    require_param(pfloat(p, "min_freq") < pfloat(p, "max_freq"), "irregular_oscillation",
                  "max_freq",
                  p.at("max_freq").dump() + " must exceed min_freq " + p.at("min_freq").dump());
    return generated_split(sizes, 10000, seed,
                           [&](int n, std::uint64_t s) { return make_oscillation(p, n, s); });
  };
  r.add(std::move(e));
}

}  // namespace hwnas::eval::tasks
