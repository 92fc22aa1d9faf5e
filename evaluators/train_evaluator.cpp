#include "evaluators/train_evaluator.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <thread>

#include "hwmodels/device.hpp"
#include "hwmodels/host_timer.hpp"
#include "spaces/model_builder.hpp"
#include "spaces/workload_builder.hpp"

namespace hwnas::eval {

TrainEvaluator::TrainEvaluator(std::shared_ptr<const TrainValSplit> data,
                               TrainEvaluatorOptions options)
    : data_(std::move(data)), options_(std::move(options)) {
  options_.train.validate();
}

std::string TrainingMemoryEstimate::describe() const {
  using hw::format_bytes;
  return format_bytes(total_bytes()) + " (weights " + format_bytes(weights_bytes) + ", gradients " +
         format_bytes(gradients_bytes) + ", optimizer state " + format_bytes(optimizer_bytes) +
         ", activations " + format_bytes(activations_bytes) + ")";
}

TrainingMemoryEstimate estimate_training_memory(const hw::Workload& w, const TrainConfig& c) {
  constexpr double kFloat = 4;  // training runs in float32 whatever precision a node deploys at
  TrainingMemoryEstimate e;
  double params = 0, kept = w.input_bytes, columns = 0, widest = w.input_bytes;
  for (const auto& n : w.nodes) {
    params += n.params;
    // A node's bytes are at its deployed precision; training keeps them as floats.
    const double to_float = n.bits > 0 ? 32.0 / n.bits : 1.0;
    // Autograd keeps what each of the block's eager kernels wrote (a conv block: the conv, its
    // norm and its activation outputs), about one output's size each.
    kept += n.output_bytes * to_float * n.kernels_eager();
    // A convolution's im2col columns (in channels x k x k per output position, i.e. MACs per
    // output channel) exist for one conv at a time.
    if (n.category == hw::OpCategory::Conv && n.channels > 0)
      columns = std::max(columns, n.macs / n.channels * kFloat);
    widest = std::max(widest, (n.input_bytes + n.output_bytes) * to_float);
  }
  e.weights_bytes = params * kFloat;
  e.gradients_bytes = params * kFloat;
  const double states = c.optimizer == "adamw" ? 2 : (c.momentum > 0 ? 1 : 0);
  e.optimizer_bytes = states * params * kFloat;
  e.activations_bytes =
      std::max(c.batch_size * (kept + columns), static_cast<double>(c.eval_batch_size) * widest);
  return e;
}

double default_memory_limit_bytes(int workers) {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return 0;  // unknown: no limit rather than a made-up one
  if (workers <= 0) workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return kDefaultMemoryShare * static_cast<double>(pages) * static_cast<double>(page) / workers;
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
  if (options_.memory_limit_bytes > 0) {
    // Before anything is allocated: a candidate too big for its share of memory fails alone
    // instead of taking the machine (and every other worker) down with it.
    hw::Workload w = spaces::build_workload(g);
    const TrainingMemoryEstimate m = estimate_training_memory(w, options_.train);
    if (m.total_bytes() > options_.memory_limit_bytes) {
      r.error = "training memory estimate " + hw::format_bytes(m.total_bytes()) +
                " exceeds the limit " + hw::format_bytes(options_.memory_limit_bytes) +
                " (evaluator.memory_limit_mb; 0 = " +
                std::to_string(static_cast<int>(kDefaultMemoryShare * 100)) +
                "% of physical memory / workers): " + m.describe() + " at batch " +
                std::to_string(options_.train.batch_size);
      r.workload = std::move(w);
      return r;
    }
  }
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
