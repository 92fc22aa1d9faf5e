// damped_oscillator: x'' + 2 zeta omega x' + omega^2 x = 0 with random omega, zeta (under-
// damped), start position and velocity.  The model sees obs_steps (position, velocity) states
// dt apart and predicts the next horizon positions.  The closed-form solution is used, so the
// targets carry no integration error.
#include <cmath>

#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval::tasks {
namespace {

Dataset make_oscillator(const json& p, int n, std::uint64_t seed) {
  const int obs = pint(p, "obs_steps"), horizon = pint(p, "horizon");
  const double dt = p.at("dt").get<double>();
  const float noise = pfloat(p, "noise");
  Dataset d = alloc_dataset(n, {obs, 2}, {horizon});
  std::mt19937_64 rng(seed);
  for (int s = 0; s < n; ++s) {
    const double w = seeded::uniform(rng, pfloat(p, "min_omega"), pfloat(p, "max_omega"));
    const double z = seeded::uniform(rng, 0.05f, pfloat(p, "max_zeta"));
    const double x0 = seeded::uniform(rng, -1.0f, 1.0f), v0 = seeded::uniform(rng, -1.0f, 1.0f);
    const double wd = w * std::sqrt(1.0 - z * z), decay = z * w;
    const double b = (v0 + decay * x0) / wd;
    float* in = d.x.data() + static_cast<std::int64_t>(s) * obs * 2;
    float* out = d.target.data() + static_cast<std::int64_t>(s) * horizon;
    for (int i = 0; i < obs + horizon; ++i) {
      const double t = i * dt, e = std::exp(-decay * t), c = std::cos(wd * t),
                   sn = std::sin(wd * t);
      const double x = e * (x0 * c + b * sn);
      const double v = e * ((b * wd - decay * x0) * c - (x0 * wd + decay * b) * sn);
      if (i < obs) {
        in[i * 2] = static_cast<float>(x) + noise * seeded::normal(rng);
        in[i * 2 + 1] = static_cast<float>(v) + noise * seeded::normal(rng);
      } else {
        out[i - obs] = static_cast<float>(x);
      }
    }
  }
  return d;
}

}  // namespace

void register_task_damped_oscillator(Registry<TaskEntry>& r) {
  TaskEntry e;
  e.name = "damped_oscillator";
  e.description =
      "damped harmonic oscillator with random frequency and damping: from obs_steps "
      "(position, velocity) states predict the next horizon positions (regression)";
  e.params = {
      ParamSpec::int_range("obs_steps", 1, 1024, 16, "observed states"),
      ParamSpec::int_range("horizon", 1, 1024, 8, "predicted positions"),
      ParamSpec::float_range("dt", 1e-3, 10, 0.2, "time between states"),
      ParamSpec::float_range("min_omega", 0.01, 100, 1.0, "lowest natural frequency (rad/s)"),
      ParamSpec::float_range("max_omega", 0.01, 100, 3.0, "highest natural frequency"),
      ParamSpec::float_range("max_zeta", 0.05, 0.99, 0.5,
                             "largest damping ratio (drawn from [0.05, max_zeta])"),
      ParamSpec::float_range("noise", 0, 10, 0.0, "std of noise on the observed states")};
  e.head = HeadKind::Regression;
  e.inputs = [](const json& p) {
    const int obs = pint(p, "obs_steps");
    return std::vector<TensorType>{TensorType::sequence(obs, 2), TensorType::vector(obs * 2)};
  };
  e.outputs = [](const json& p) { return pint(p, "horizon"); };
  e.generate = [](const json& p, const TensorType& input, std::uint64_t seed,
                  const SplitSizes& sizes) {
    require_param(pfloat(p, "min_omega") <= pfloat(p, "max_omega"), "damped_oscillator",
                  "max_omega",
                  p.at("max_omega").dump() + " must be >= min_omega " + p.at("min_omega").dump());
    return reshape_inputs(
        generated_split(sizes, 10000, seed,
                        [&](int n, std::uint64_t s) { return make_oscillator(p, n, s); }),
        input);
  };
  r.add(std::move(e));
}

}  // namespace hwnas::eval::tasks
