// symbolic: fit a named closed-form function of two variables on [-1, 1]^2 (the function
// fitting benchmarks of KANs), e.g. f(x, y) = exp(sin(pi x) + y^2).  Points are uniform in the
// square; optional gaussian noise on the training and validation targets.
#include <cmath>
#include <numbers>

#include "evaluators/tasks/task_util.hpp"

namespace hwnas::eval::tasks {
namespace {

double symbolic_function(const std::string& f, double x, double y) {
  using std::numbers::pi;
  if (f == "exp_sin") return std::exp(std::sin(pi * x) + y * y);
  if (f == "sin_cos") return std::sin(pi * x) * std::cos(pi * y);
  if (f == "product") return x * y;
  if (f == "gaussian") return std::exp(-2.0 * (x * x + y * y));
  if (f == "bessel_like") return std::sin(5.0 * std::hypot(x, y)) / (1.0 + 5.0 * std::hypot(x, y));
  throw std::logic_error("symbolic: unknown function " + f);  // the ParamSpec allows only these
}

Dataset make_symbolic(const json& p, int n, std::uint64_t seed) {
  const std::string f = p.at("function").get<std::string>();
  const float noise = pfloat(p, "noise");
  Dataset d = alloc_dataset(n, {2}, {1});
  std::mt19937_64 rng(seed);
  for (int s = 0; s < n; ++s) {
    const float x = seeded::uniform(rng, -1.0f, 1.0f), y = seeded::uniform(rng, -1.0f, 1.0f);
    d.x.data()[2 * s] = x;
    d.x.data()[2 * s + 1] = y;
    d.target.data()[s] = static_cast<float>(symbolic_function(f, x, y)) +
                         (noise > 0 ? noise * seeded::normal(rng) : 0.0f);
  }
  return d;
}

}  // namespace

void register_task_symbolic(Registry<TaskEntry>& r) {
  TaskEntry e;
  e.name = "symbolic";
  e.description =
      "symbolic function fitting on [-1,1]^2, e.g. exp_sin: f(x,y) = exp(sin(pi x) + y^2) "
      "(regression, 1 output)";
  e.params = {
      ParamSpec::choice("function", {"exp_sin", "sin_cos", "product", "gaussian", "bessel_like"},
                        "exp_sin",
                        "exp_sin: exp(sin(pi x)+y^2); sin_cos: sin(pi x)cos(pi y); product: xy; "
                        "gaussian: exp(-2(x^2+y^2)); bessel_like: sin(5r)/(1+5r)"),
      ParamSpec::float_range("noise", 0, 10, 0.0, "std of gaussian noise on the targets")};
  e.head = HeadKind::Regression;
  e.inputs = [](const json&) { return std::vector<TensorType>{TensorType::vector(2)}; };
  e.outputs = [](const json&) { return 1; };
  e.generate = [](const json& p, const TensorType&, std::uint64_t seed, const SplitSizes& sizes) {
    return generated_split(sizes, 10000, seed,
                           [&](int n, std::uint64_t s) { return make_symbolic(p, n, s); });
  };
  r.add(std::move(e));
}

}  // namespace hwnas::eval::tasks
