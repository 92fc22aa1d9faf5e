// spiral: 2-D spiral trajectory regression, the system of torchdiffeq's ode_demo
// (dy/dt = (y^3) A with A = [[-0.1, 2], [-2, -0.1]], there from y0 = (2, 0)).  Each sample
// starts from a random point on the circle of radius [min_radius, max_radius]; the model sees
// obs_steps states dt apart and predicts the next horizon states, flattened
// [x1, y1, x2, y2, ...].  Integrated with RK4 (substeps per dt) in double precision.
#include <cmath>

#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval::tasks {
namespace {

void rk4_step(double& x, double& y, double h) {
  auto f = [](double a, double b, double& da, double& db) {
    const double a3 = a * a * a, b3 = b * b * b;
    da = -0.1 * a3 - 2.0 * b3;  // row vector y^3 times A
    db = 2.0 * a3 - 0.1 * b3;
  };
  double k1x, k1y, k2x, k2y, k3x, k3y, k4x, k4y;
  f(x, y, k1x, k1y);
  f(x + h / 2 * k1x, y + h / 2 * k1y, k2x, k2y);
  f(x + h / 2 * k2x, y + h / 2 * k2y, k3x, k3y);
  f(x + h * k3x, y + h * k3y, k4x, k4y);
  x += h / 6 * (k1x + 2 * k2x + 2 * k3x + k4x);
  y += h / 6 * (k1y + 2 * k2y + 2 * k3y + k4y);
}

Dataset make_spiral(const json& p, int n, std::uint64_t seed) {
  const int obs = pint(p, "obs_steps"), horizon = pint(p, "horizon");
  const double dt = p.at("dt").get<double>();
  const float rmin = pfloat(p, "min_radius"), rmax = pfloat(p, "max_radius"),
              noise = pfloat(p, "noise");
  constexpr int kSub = 10;
  Dataset d = alloc_dataset(n, {obs, 2}, {horizon * 2});
  std::mt19937_64 rng(seed);
  for (int s = 0; s < n; ++s) {
    const double radius = seeded::uniform(rng, rmin, rmax);
    const double angle = seeded::uniform(rng, 0.0f, 6.2831853f);
    double x = radius * std::cos(angle), y = radius * std::sin(angle);
    float* in = d.x.data() + static_cast<std::int64_t>(s) * obs * 2;
    float* out = d.target.data() + static_cast<std::int64_t>(s) * horizon * 2;
    for (int i = 0; i < obs + horizon; ++i) {
      if (i) {
        for (int k = 0; k < kSub; ++k) rk4_step(x, y, dt / kSub);
      }
      float* dst = i < obs ? in + i * 2 : out + (i - obs) * 2;
      dst[0] = static_cast<float>(x);
      dst[1] = static_cast<float>(y);
      if (i < obs) {  // noisy observations, clean targets
        dst[0] += noise * seeded::normal(rng);
        dst[1] += noise * seeded::normal(rng);
      }
    }
  }
  return d;
}

}  // namespace

void register_task_spiral(Registry<TaskEntry>& r) {
  TaskEntry e;
  e.name = "spiral";
  e.description =
      "2-D spiral ODE (torchdiffeq's ode_demo system) from random starts: from obs_steps states "
      "predict the next horizon states (regression)";
  e.params = {ParamSpec::int_range("obs_steps", 1, 1024, 16, "observed states"),
              ParamSpec::int_range("horizon", 1, 1024, 8, "predicted states (2 values each)"),
              ParamSpec::float_range("dt", 1e-3, 10, 0.1, "time between states"),
              ParamSpec::float_range("min_radius", 0.1, 5, 0.5, "smallest start radius"),
              ParamSpec::float_range("max_radius", 0.1, 5, 2.0, "largest start radius"),
              ParamSpec::float_range("noise", 0, 10, 0.0, "std of noise on the observed states")};
  e.head = HeadKind::Regression;
  e.inputs = [](const json& p) {
    const int obs = pint(p, "obs_steps");
    return std::vector<TensorType>{TensorType::sequence(obs, 2), TensorType::vector(obs * 2)};
  };
  e.outputs = [](const json& p) { return 2 * pint(p, "horizon"); };
  e.generate = [](const json& p, const TensorType& input, std::uint64_t seed,
                  const SplitSizes& sizes) {
    require_param(
        pfloat(p, "min_radius") <= pfloat(p, "max_radius"), "spiral", "max_radius",
        p.at("max_radius").dump() + " must be >= min_radius " + p.at("min_radius").dump());
    return reshape_inputs(
        generated_split(sizes, 10000, seed,
                        [&](int n, std::uint64_t s) { return make_spiral(p, n, s); }),
        input);
  };
  r.add(std::move(e));
}

}  // namespace hwnas::eval::tasks
