#include "evaluators/trainer.hpp"

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>

#include "evaluators/metrics.hpp"
#include "nn/checkpoint.hpp"
#include "nn/ops.hpp"
#include "nn/optim.hpp"
#include "nn/parallel.hpp"
#include "nn/state_dict.hpp"

namespace hwnas::eval {

namespace {
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void bad(const std::string& field, const std::string& why) {
  throw std::invalid_argument("TrainConfig: " + field + " " + why);
}

nn::Var output_of(nn::Module& model, const Batch& b, HeadKind head, nn::ForwardContext& ctx) {
  nn::Var out = model.forward({nn::constant(b.x)}, ctx);
  check_head_output(head, out.shape(), b, model.name());
  return out;
}

void check_dataset(const Dataset& d, const char* which, HeadKind head) {
  if (d.size() == 0) throw std::invalid_argument(std::string("train: ") + which + " set is empty");
  if (d.x.empty() || d.x.dim(0) != d.size())
    throw std::invalid_argument(std::string("train: ") + which + " set has " +
                                std::to_string(d.size()) + " labels but x shape " +
                                d.x.shape().str());
  check_head_targets(head, d, which);
}
}  // namespace

void TrainConfig::validate() const {
  if (optimizer != "adamw" && optimizer != "sgd")
    bad("optimizer", "'" + optimizer + "' is not one of adamw, sgd");
  if (!(lr > 0) || !std::isfinite(lr)) bad("lr", "must be positive and finite");
  if (weight_decay < 0) bad("weight_decay", "must be >= 0");
  if (momentum < 0 || momentum >= 1) bad("momentum", "must be in [0, 1)");
  if (batch_size <= 0) bad("batch_size", "must be positive");
  if (epochs <= 0 && max_seconds <= 0) bad("epochs", "must be positive (or set max_seconds)");
  if (epochs < 0) bad("epochs", "must be >= 0");
  if (max_seconds < 0) bad("max_seconds", "must be >= 0");
  if (warmup_steps < 0) bad("warmup_steps", "must be >= 0");
  if (warmup_epochs < 0) bad("warmup_epochs", "must be >= 0");
  if (min_lr_ratio < 0 || min_lr_ratio > 1) bad("min_lr_ratio", "must be in [0, 1]");
  if (clip_grad_norm < 0) bad("clip_grad_norm", "must be >= 0");
  if (patience < 0) bad("patience", "must be >= 0");
  if (schedule_epochs < 0) bad("schedule_epochs", "must be >= 0");
  if (log_every_steps <= 0) bad("log_every_steps", "must be positive");
  if (eval_batch_size <= 0) bad("eval_batch_size", "must be positive");
}

EvalMetrics evaluate(nn::Module& model, const Dataset& data, int batch_size,
                     nn::ActivityRecorder* activity, HeadKind head) {
  if (data.size() > 0) check_head_targets(head, data, "evaluation");
  return nn::run_isolated([&] {
    nn::NoGradGuard no_grad;
    nn::ForwardContext ctx;
    ctx.training = false;
    ctx.recorder = activity;
    std::mt19937_64 rng(0);  // stochastic blocks are deterministic at eval; give them a source
    ctx.rng = &rng;
    BatchIterator it(data, batch_size, /*shuffle=*/false, 0);
    Batch b;
    double loss_sum = 0;
    MetricAccumulator acc(head);
    while (it.next(b)) {
      nn::Var out = output_of(model, b, head, ctx);
      loss_sum += static_cast<double>(head_loss(head, out, b).value().item()) * b.size();
      acc.add(out.value(), b);
    }
    EvalMetrics r;
    r.samples = data.size();
    r.loss = loss_sum / std::max(1, data.size());
    r.metrics = acc.result();
    r.accuracy = r.metrics.at(head_primary_metric(head));
    return r;
  });
}

double evaluate_accuracy(nn::Module& model, const Dataset& data, int batch_size) {
  return evaluate(model, data, batch_size).accuracy;
}

TrainReport train(nn::Module& model, const Dataset& train_set, const Dataset& val_set,
                  const TrainConfig& cfg) {
  cfg.validate();
  check_dataset(train_set, "training", cfg.head);
  check_dataset(val_set, "validation", cfg.head);
  // Isolated: while this thread waits inside a parallel op it must not pick up another
  // candidate's loop (grad mode and the graph are per thread).
  return nn::run_isolated([&] {
    const auto t_start = Clock::now();
    TrainReport rep;

    std::vector<nn::Var> params;
    model.collect_parameters(params);
    if (params.empty())
      throw std::invalid_argument("train: model '" + model.name() + "' has no parameters");

    BatchIterator it(train_set, cfg.batch_size, /*shuffle=*/true, cfg.seed, cfg.drop_last);
    const int per_epoch = std::max(1, it.batches_per_epoch());
    // Without an epoch budget (time only) the schedule still needs a horizon; use a generous one.
    const int epoch_budget = cfg.epochs > 0 ? std::max(cfg.epochs, cfg.schedule_epochs)
                                            : std::numeric_limits<int>::max() / per_epoch;
    const std::int64_t total_steps = static_cast<std::int64_t>(epoch_budget) * per_epoch;
    const std::int64_t warmup =
        cfg.warmup_steps + static_cast<std::int64_t>(std::llround(cfg.warmup_epochs * per_epoch));

    nn::CosineSchedule sched;
    sched.base_lr = cfg.lr;
    sched.warmup_steps = warmup;
    // No cosine: a horizon beyond any reachable step keeps the rate at base_lr after warm-up.
    sched.total_steps = cfg.cosine ? std::max<std::int64_t>(total_steps, warmup + 1)
                                   : std::numeric_limits<std::int64_t>::max();
    sched.min_lr = cfg.cosine ? cfg.lr * cfg.min_lr_ratio : cfg.lr;

    std::unique_ptr<nn::Optimizer> opt;
    if (cfg.optimizer == "adamw") {
      nn::AdamWOptions o;
      o.lr = cfg.lr;
      o.weight_decay = cfg.weight_decay;
      opt = std::make_unique<nn::AdamW>(params, o);
    } else {
      nn::SgdOptions o;
      o.lr = cfg.lr;
      o.momentum = cfg.momentum;
      o.weight_decay = cfg.weight_decay;
      opt = std::make_unique<nn::Sgd>(params, o);
    }

    std::mt19937_64 rng(cfg.seed ^ 0x9e3779b97f4a7c15ull);  // dropout and stochastic blocks
    int first_epoch = 0;
    if (!cfg.resume_from.empty()) {
      const nn::TrainingCheckpoint ck = nn::read_checkpoint(cfg.resume_from);
      nn::load_state_dict(model, ck.model, cfg.resume_from);
      opt->load_state(ck.optimizers.at("main"));
      nn::set_rng_state(rng, ck.rng.at("dropout"));
      rep.steps = ck.counters.at("step");
      first_epoch = static_cast<int>(ck.counters.at("epoch"));
      if (cfg.epochs > 0 && first_epoch >= cfg.epochs)
        throw std::invalid_argument("train: resume_from '" + cfg.resume_from + "' already has " +
                                    std::to_string(first_epoch) + " epochs; epochs (" +
                                    std::to_string(cfg.epochs) + ") must be larger to continue");
    }
    int epochs_done = first_epoch;  // completed epochs, what a checkpoint records
    // Stopped inside an epoch (time, divergence): a checkpoint would record its partial steps
    // under the last whole epoch and a continuation would replay that epoch from its first
    // batch on the changed weights; so none is written (a promotion then starts afresh).
    bool mid_epoch = false;
    nn::StateDict best_state;  // restore_best: weights of the best evaluated epoch
    nn::ForwardContext ctx;
    ctx.training = true;
    ctx.rng = &rng;
    std::vector<nn::Var> aux_losses;  // blocks' auxiliary losses of the current step
    ctx.aux_losses = &aux_losses;

    // Early stopping watches the loss or the head's primary metric; as "lower is better".
    const double sign = cfg.monitor_primary && head_primary_maximize(cfg.head) ? -1.0 : 1.0;
    auto monitored = [&](const EvalMetrics& m) {
      return sign * (cfg.monitor_primary ? m.accuracy : m.loss);
    };
    double best_val = std::numeric_limits<double>::infinity();
    int bad_epochs = 0;
    bool evaluated_final = false;  // val metrics describe the current weights
    double window_sum = 0;
    int window_n = 0;
    double train_time = 0;
    const bool per_epoch_eval = cfg.eval_every_epoch || cfg.patience > 0;

    auto out_of_time = [&] { return cfg.max_seconds > 0 && since(t_start) >= cfg.max_seconds; };

    for (int epoch = first_epoch; cfg.epochs == 0 || epoch < cfg.epochs; ++epoch) {
      if (out_of_time()) {
        rep.stopped_reason = "time";
        break;
      }
      it.start_epoch(epoch);
      ++rep.epochs_run;
      double epoch_sum = 0;
      int epoch_n = 0;
      Batch b;
      while (it.next(b)) {
        if (b.size() < 2) continue;  // BatchNorm cannot normalise a single sample
        const auto t_step = Clock::now();
        opt->set_lr(sched.lr_at(rep.steps));
        opt->zero_grad();
        aux_losses.clear();
        nn::Var loss = head_loss(cfg.head, output_of(model, b, cfg.head, ctx), b);
        const double l = loss.value().item();  // the task loss is what the curve reports
        for (const nn::Var& a : aux_losses) loss = nn::add(loss, a);
        if (!std::isfinite(l) || !std::isfinite(loss.value().item())) {
          rep.stopped_reason = "diverged";
          mid_epoch = true;
          break;
        }
        nn::backward(loss);
        if (cfg.clip_grad_norm > 0) nn::clip_grad_norm(params, cfg.clip_grad_norm);
        opt->step();
        train_time += since(t_step);
        evaluated_final = false;

        ++rep.steps;
        rep.samples += b.size();
        if (cfg.on_step_end) cfg.on_step_end(rep.steps, total_steps);
        epoch_sum += l;
        ++epoch_n;
        window_sum += l;
        ++window_n;
        if (window_n == cfg.log_every_steps) {
          rep.step_loss.push_back({rep.steps, window_sum / window_n});
          window_sum = 0;
          window_n = 0;
        }
        if (out_of_time()) {
          rep.stopped_reason = "time";
          mid_epoch = true;
          break;
        }
      }
      if (epoch_n) rep.epoch_loss.push_back(epoch_sum / epoch_n);
      if (!rep.stopped_reason.empty()) break;
      epochs_done = epoch + 1;
      const double nan = std::numeric_limits<double>::quiet_NaN();
      double epoch_val_loss = nan, epoch_val_acc = nan;

      if (per_epoch_eval) {
        rep.val_activity.clear();
        EvalMetrics m = evaluate(model, val_set, cfg.eval_batch_size, &rep.val_activity, cfg.head);
        rep.epoch_val_loss.push_back(m.loss);
        rep.epoch_val_accuracy.push_back(m.accuracy);
        rep.epoch_val_primary.push_back(m.accuracy);
        rep.val_loss = epoch_val_loss = m.loss;
        rep.val_accuracy = epoch_val_acc = m.accuracy;
        rep.val_metrics = m.metrics;
        evaluated_final = true;
        const double v = monitored(m);
        if (v < best_val - cfg.min_delta) {
          best_val = v;
          rep.best_epoch = epoch + 1;
          bad_epochs = 0;
          if (cfg.restore_best) best_state = nn::state_dict(model);
        } else if (cfg.patience > 0 && ++bad_epochs >= cfg.patience) {
          rep.stopped_reason = "early_stop";
        }
      }
      if (cfg.on_epoch_end)
        cfg.on_epoch_end(epoch + 1, epoch_n ? epoch_sum / epoch_n : nan, epoch_val_loss,
                         epoch_val_acc);
      if (!rep.stopped_reason.empty()) break;
    }
    if (rep.stopped_reason.empty()) rep.stopped_reason = "epochs";
    if (window_n) rep.step_loss.push_back({rep.steps, window_sum / window_n});
    if (!rep.step_loss.empty()) {
      rep.train_loss_first = rep.step_loss.front().loss;
      rep.train_loss_last = rep.step_loss.back().loss;
    } else {
      rep.train_loss_first = rep.train_loss_last = std::numeric_limits<double>::quiet_NaN();
    }

    if (!cfg.checkpoint_out.empty() && !mid_epoch) {
      nn::TrainingCheckpoint ck;
      ck.model = nn::state_dict(model);
      ck.optimizers["main"] = opt->state();
      ck.counters["step"] = rep.steps;
      ck.counters["epoch"] = epochs_done;
      ck.rng["dropout"] = nn::rng_state(rng);
      nn::save_checkpoint(ck, cfg.checkpoint_out);
    }
    if (cfg.restore_best && !best_state.empty() && rep.best_epoch != epochs_done) {
      nn::load_state_dict(model, best_state, "best epoch");
      evaluated_final = false;
    }

    // The reported numbers always describe the final model; the activity pass is the final one.
    if (!evaluated_final) {
      rep.val_activity.clear();
      EvalMetrics m = evaluate(model, val_set, cfg.eval_batch_size, &rep.val_activity, cfg.head);
      rep.val_loss = m.loss;
      rep.val_accuracy = m.accuracy;
      rep.val_metrics = m.metrics;
    }

    rep.train_seconds = train_time;
    rep.samples_per_s = train_time > 0 ? rep.samples / train_time : 0;
    rep.seconds = since(t_start);
    return rep;
  });
}

TrainReport train_stages(
    const std::vector<TrainStage>& stages,
    const std::function<std::unique_ptr<nn::Module>(std::size_t stage)>& build,
    const std::function<void(std::size_t stage, nn::Module&, const TrainReport&)>& after_stage) {
  if (stages.empty()) throw std::invalid_argument("train_stages: no stages");
  nn::StateDict carried;  // the weights one stage hands to the next
  TrainReport report;
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const TrainStage& st = stages[i];
    if (!st.train_set || !st.val_set)
      throw std::invalid_argument("train_stages: stage " + std::to_string(i + 1) +
                                  " has no training or validation set");
    const std::unique_ptr<nn::Module> model = build(i);
    if (i > 0) nn::load_state_dict(*model, carried, "stage " + std::to_string(i));
    report = train(*model, *st.train_set, *st.val_set, st.config);
    if (after_stage) after_stage(i, *model, report);
    if (i + 1 < stages.size()) carried = nn::state_dict(*model);
  }
  return report;
}

}  // namespace hwnas::eval
