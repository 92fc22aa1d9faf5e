// Learning test of the neural_ode block (spaces/blocks/block_neural_ode.cpp): a genome made of
// one Neural ODE fits the spiral task (torchdiffeq's ode_demo system, evaluators/tasks/
// task_spiral.cpp) one interval ahead through the ordinary trainer, seeded, in a few seconds,
// and beats predicting the per-output mean, and predicting "no motion", by a wide margin.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "evaluators/task_registry.hpp"
#include "evaluators/trainer.hpp"
#include "nn/parallel.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"

using namespace hwnas;
using namespace hwnas::eval;
using nlohmann::json;

namespace {

// RMSE on val of predicting each output's training mean.
double mean_baseline_rmse(const Dataset& train, const Dataset& val) {
  const int k = train.target.dim(1);
  std::vector<double> mean(static_cast<std::size_t>(k), 0.0);
  for (int i = 0; i < train.size(); ++i)
    for (int j = 0; j < k; ++j) mean[static_cast<std::size_t>(j)] += train.target.data()[i * k + j];
  for (double& m : mean) m /= train.size();
  double s = 0;
  for (int i = 0; i < val.size(); ++i)
    for (int j = 0; j < k; ++j) {
      const double d = val.target.data()[i * k + j] - mean[static_cast<std::size_t>(j)];
      s += d * d;
    }
  return std::sqrt(s / (static_cast<double>(val.size()) * k));
}

// RMSE on val of predicting the observed state itself (no motion).
double identity_baseline_rmse(const Dataset& val) {
  double s = 0;
  for (std::int64_t i = 0; i < val.target.numel(); ++i) {
    const double d = val.target.data()[i] - val.x.data()[i];
    s += d * d;
  }
  return std::sqrt(s / static_cast<double>(val.target.numel()));
}

}  // namespace

TEST(NeuralOdeLearning, FitsTheSpiralBeatingTrivialBaselines) {
  nn::ThreadBudget budget(1);
  // One observed state, the next one 0.3 later: a rotation whose speed grows with r^3.
  TaskSpec t = resolve_task(
      "spiral",
      {{"obs_steps", 1}, {"horizon", 1}, {"dt", 0.3}, {"min_radius", 0.5}, {"max_radius", 1.5}});
  const spaces::TensorType in = spaces::TensorType::vector(2);
  TrainValSplit s = make_task_data(t, in, 3, {2000, 500});
  spaces::Genome g(in);
  auto v = g.add_node("neural_ode", {{"hidden", 32}, {"steps", 4}, {"gradient", "adjoint"}});
  g.add_edge(0, v);
  g.validate();
  auto model = spaces::build_model(g, 7);
  TrainConfig c;
  c.head = HeadKind::Regression;
  c.epochs = 60;
  c.batch_size = 32;
  c.lr = 1e-2f;
  c.seed = 1;
  TrainReport r = train(*model, s.train, s.val, c);
  const double rmse = r.val_metrics.at("rmse");
  const double mean_b = mean_baseline_rmse(s.train, s.val);
  const double ident_b = identity_baseline_rmse(s.val);
  std::cout << "neural_ode on spiral (dt 0.3, rk4 x 4, adjoint): val rmse " << rmse
            << " vs mean baseline " << mean_b << ", no-motion baseline " << ident_b << " ("
            << r.seconds << " s)\n";
  EXPECT_LT(rmse, 0.05 * mean_b);
  EXPECT_LT(rmse, 0.1 * ident_b);
  // The validation pass recorded the solver's evaluations: 4 x 4 per sample.
  hw::Workload wl = spaces::build_workload(g, &r.val_activity);
  EXPECT_DOUBLE_EQ(wl.nodes.at(0).activity.scalar_or("function_evals", -1), 16.0);
}
