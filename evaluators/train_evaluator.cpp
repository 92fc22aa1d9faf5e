#include "evaluators/train_evaluator.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>

#include "hwmodels/host_timer.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"

namespace hwnas::eval {

TrainEvaluator::TrainEvaluator(std::shared_ptr<const TrainValSplit> data,
                               TrainEvaluatorOptions options)
    : data_(std::move(data)), options_(std::move(options)) {
  options_.train.validate();
}

std::vector<std::string> TrainEvaluator::metric_names(HeadKind head) {
  std::vector<std::string> names;
  for (const auto& m : head_metric_names(head)) names.push_back("val_" + m);
  for (const char* m : {"val_loss", "train_loss_first", "train_loss_last", "params",
                        "train_seconds", "samples_per_s", "epochs_run", "host_latency_ms"})
    names.emplace_back(m);
  return names;
}

const std::vector<std::string>& TrainEvaluator::metric_names() {
  static const std::vector<std::string> names = metric_names(HeadKind::Classes);
  return names;
}

EvalResult TrainEvaluator::evaluate(const spaces::Genome& g, const Fidelity& f,
                                    std::uint64_t seed) {
  EvalResult r;
  auto model = spaces::build_model(g, seed);

  // A fidelity subset takes the first n training rows: the split was already shuffled by its
  // seed, so this is a uniform subset and the same for every candidate of a run.
  const Dataset* train_set = &data_->train;
  Dataset subset;
  if (f.train_subset > 0 && f.train_subset < data_->train.size()) {
    std::vector<int> idx(static_cast<std::size_t>(f.train_subset));
    std::iota(idx.begin(), idx.end(), 0);
    subset = take(data_->train, idx);
    train_set = &subset;
  }

  TrainConfig tc = options_.train;
  tc.epochs = f.epochs;
  if (f.max_seconds > 0) tc.max_seconds = f.max_seconds;
  tc.seed = seed;
  tc.schedule_epochs = f.schedule_epochs;
  // A promotion continues its previous rung's checkpoint; if that file is gone (another
  // machine, cleaned up) the candidate trains from scratch: slower, the same weights.
  std::error_code ec;
  if (!f.resume_from.empty() && std::filesystem::exists(f.resume_from, ec))
    tc.resume_from = f.resume_from;
  tc.checkpoint_out = f.checkpoint_out;
  // About ten points on the loss curve whatever the budget, so first and last windows differ.
  const int steps_per_epoch = (train_set->size() + tc.batch_size - 1) / tc.batch_size;
  tc.log_every_steps = std::max(1, steps_per_epoch * tc.epochs / 10);
  TrainReport rep = train(*model, *train_set, data_->val, tc);

  for (const auto& [m, v] : rep.val_metrics) r.metrics["val_" + m] = v;
  r.metrics["val_loss"] = rep.val_loss;
  r.metrics["train_loss_first"] = rep.train_loss_first;
  r.metrics["train_loss_last"] = rep.train_loss_last;
  r.metrics["params"] = static_cast<double>(model->num_parameters());
  r.metrics["train_seconds"] = rep.train_seconds;
  r.metrics["samples_per_s"] = rep.samples_per_s;
  r.metrics["epochs_run"] = rep.epochs_run;
  for (const auto& p : rep.step_loss) r.loss_curve.push_back(p.loss);
  if (r.loss_curve.empty()) r.loss_curve = rep.epoch_loss;
  if (rep.stopped_reason == "diverged" || !std::isfinite(rep.val_loss))
    r.error = "training diverged (non-finite loss)";

  // The final validation pass recorded each node's activity; it travels with the workload so
  // the devices (and a later rescore) cost what the model really did.
  r.workload = spaces::build_workload(g, &rep.val_activity);
  if (options_.host_latency_reps > 0) {
    // Batch-1 inference latency on this machine: the one ground truth available here.
    std::vector<int> dims = data_->val.sample_dims();
    dims.insert(dims.begin(), 1);
    nn::Tensor x{nn::Shape(dims)};
    std::copy(data_->val.x.data(), data_->val.x.data() + x.numel(), x.data());
    nn::NoGradGuard no_grad;
    nn::ForwardContext ctx;
    ctx.training = false;
    nn::Var input = nn::constant(x);
    double ms = hw::measure_median_ms([&] { (void)model->forward(input, ctx); },
                                      /*warmup=*/3, options_.host_latency_reps);
    r.metrics["host_latency_ms"] = ms;
    r.workload.measured["host_latency_ms"] = ms;
    for (int b : options_.host_latency_batches) {
      if (b <= 1) continue;
      // b validation samples (cycled when there are fewer), one forward pass over the batch.
      std::vector<int> bd = data_->val.sample_dims();
      bd.insert(bd.begin(), b);
      nn::Tensor xb{nn::Shape(bd)};
      const std::size_t per = x.numel(), have = data_->val.x.numel() / per;
      for (int i = 0; i < b; ++i)
        std::copy(data_->val.x.data() + (static_cast<std::size_t>(i) % have) * per,
                  data_->val.x.data() + (static_cast<std::size_t>(i) % have + 1) * per,
                  xb.data() + static_cast<std::size_t>(i) * per);
      nn::Var in_b = nn::constant(xb);
      r.workload.measured["host_latency_ms_b" + std::to_string(b)] = hw::measure_median_ms(
          [&] { (void)model->forward(in_b, ctx); }, /*warmup=*/3, options_.host_latency_reps);
    }
  }
  return r;
}

}  // namespace hwnas::eval
