#include "oneshot/darts_search.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <ostream>
#include <set>
#include <stdexcept>

#include "common/hash.hpp"
#include "evaluators/task_head.hpp"
#include "nn/checkpoint.hpp"
#include "nn/ops.hpp"
#include "nn/parallel.hpp"
#include "oneshot/op_costs.hpp"
#include "spaces/workload_builder.hpp"

namespace hwnas::oneshot {

DartsOptions DartsOptions::from_params(const nlohmann::json& p, const eval::TrainConfig& train,
                                       std::uint64_t seed) {
  DartsOptions o;
  o.hardware_weight = p.at("hardware_weight").get<double>();
  o.cost = p.at("cost").get<std::string>();
  o.epochs = p.at("epochs").get<int>();
  o.steps_per_epoch = p.at("steps_per_epoch").get<int>();
  o.warmup_epochs = p.at("warmup_epochs").get<int>();
  o.batch_size =
      p.at("batch_size").get<int>() > 0 ? p.at("batch_size").get<int>() : train.batch_size;
  const std::string wo = p.at("w_optimizer").get<std::string>();
  o.w_optimizer = wo == "evaluator" ? train.optimizer : wo;
  o.w_lr =
      p.at("w_lr").get<double>() > 0 ? static_cast<float>(p.at("w_lr").get<double>()) : train.lr;
  o.w_weight_decay = train.weight_decay;
  o.w_momentum = train.momentum;
  o.alpha_lr = static_cast<float>(p.at("alpha_lr").get<double>());
  o.alpha_weight_decay = static_cast<float>(p.at("alpha_weight_decay").get<double>());
  o.gumbel = p.at("gumbel").get<bool>();
  o.temperature = static_cast<float>(p.at("temperature").get<double>());
  o.temperature_decay = static_cast<float>(p.at("temperature_decay").get<double>());
  o.skip_guard = p.at("skip_guard").get<std::string>();
  o.max_skip = p.at("max_skip").get<int>();
  o.candidates = p.at("candidates").get<int>();
  o.clip_grad_norm = train.clip_grad_norm > 0 ? train.clip_grad_norm : 5.0f;
  o.head = train.head;
  o.seed = seed;
  o.state_path = p.value("supernet_state", std::string());
  return o;
}

namespace {

// What a saved state must agree with to be continued: every option that changes the training.
std::int64_t options_fingerprint(const DartsOptions& o, int steps) {
  const nlohmann::json j = {o.hardware_weight,
                            o.cost,
                            o.epochs,
                            steps,
                            o.warmup_epochs,
                            o.batch_size,
                            o.w_optimizer,
                            o.w_lr,
                            o.w_weight_decay,
                            o.w_momentum,
                            o.alpha_lr,
                            o.alpha_weight_decay,
                            o.gumbel,
                            o.temperature,
                            o.temperature_decay,
                            o.skip_guard,
                            o.max_skip,
                            o.clip_grad_norm,
                            static_cast<int>(o.head),
                            o.seed};
  return static_cast<std::int64_t>(fnv1a64(j.dump()));
}

}  // namespace

// ---- hardware term ----

HardwareTerm::HardwareTerm(std::vector<std::vector<double>> c, double w, int none_op)
    : cost(std::move(c)), weight(w) {
  const int n = cost.empty() ? 0 : static_cast<int>(cost.front().size());
  for (int o = 0; o < n; ++o)
    if (o != none_op) ops.push_back(o);
  if (!cost.empty() && ops.empty())
    throw std::invalid_argument("hardware term: no op other than 'none' to price");
  double total = 0;
  for (const auto& row : cost)
    for (int o : ops) total += row[static_cast<std::size_t>(o)] / static_cast<double>(ops.size());
  // An all-free cell (every op costs 0) has nothing to trade: keep the term at zero.
  reference = total > 0 ? total : 1;
}

nn::Var HardwareTerm::expected(const nn::Var& alpha) const {
  const int rows = static_cast<int>(cost.size()), cols = static_cast<int>(ops.size());
  nn::Tensor c(nn::Shape{rows, cols});
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < cols; ++k)
      c.data()[r * cols + k] =
          static_cast<float>(cost[static_cast<std::size_t>(r)]
                                 [static_cast<std::size_t>(ops[static_cast<std::size_t>(k)])]);
  const nn::Var p = nn::softmax(nn::index_select(alpha, 1, ops));
  return nn::sum(nn::mul(p, nn::constant(c)));
}

double HardwareTerm::expected(const EdgeProbs& p) const {
  double s = 0;
  for (std::size_t e = 0; e < cost.size(); ++e) {
    double z = 0, num = 0;
    for (int o : ops) {
      z += p[e][static_cast<std::size_t>(o)];
      num += p[e][static_cast<std::size_t>(o)] * cost[e][static_cast<std::size_t>(o)];
    }
    s += z > 0 ? num / z : 0;
  }
  return s;
}

nn::Var HardwareTerm::loss(const nn::Var& alpha) const {
  return nn::scale(expected(alpha), static_cast<float>(weight / reference));
}

// ---- one bilevel step ----

BilevelOptimizers make_bilevel_optimizers(DartsSupernet& net, const DartsOptions& o) {
  BilevelOptimizers b;
  const auto w = net.weight_parameters();
  if (o.w_optimizer == "sgd") {
    nn::SgdOptions s;
    s.lr = o.w_lr;
    s.momentum = o.w_momentum;
    s.weight_decay = o.w_weight_decay;
    b.weights = std::make_unique<nn::Sgd>(w, s);
  } else if (o.w_optimizer == "adamw") {
    nn::AdamWOptions a;
    a.lr = o.w_lr;
    a.weight_decay = o.w_weight_decay;
    b.weights = std::make_unique<nn::AdamW>(w, a);
  } else {
    throw std::invalid_argument("strategy.w_optimizer: '" + o.w_optimizer +
                                "' is not sgd or adamw");
  }
  // DARTS's architecture optimizer: Adam, betas (0.5, 0.999), coupled L2 decay.
  nn::AdamOptions a;
  a.lr = o.alpha_lr;
  a.beta1 = 0.5f;
  a.weight_decay = o.alpha_weight_decay;
  b.arch = std::make_unique<nn::Adam>(net.arch_parameters(), a);
  return b;
}

namespace {

void set_trainable(const std::vector<nn::Var>& ps, bool on) {
  for (auto p : ps) p.set_requires_grad(on);
}

}  // namespace

StepStats bilevel_step(DartsSupernet& net, BilevelOptimizers& opt, const eval::Batch& train,
                       const eval::Batch& val, const HardwareTerm& hw, const StepSettings& s,
                       std::mt19937_64& rng, const GradientHook& after_backward) {
  StepStats st;
  st.val_loss = std::numeric_limits<double>::quiet_NaN();
  st.hw_cost = std::numeric_limits<double>::quiet_NaN();
  nn::ForwardContext ctx;
  ctx.training = true;
  ctx.rng = &rng;
  const auto weights = net.weight_parameters();
  const DataShard one;
  const DataShard& shard = s.shard ? *s.shard : one;
  const eval::Batch train_rows = shard_batch(train, shard), val_rows = shard_batch(val, shard);
  if (s.update_arch) {
    // Architecture step on validation data; the weights are frozen so that no weight gradient
    // is computed (first order: w is a constant here).
    set_trainable(weights, false);
    opt.arch->zero_grad();
    nn::Var p = op_weights(net.alpha(), s.gumbel, s.temperature, &rng);
    nn::Var loss = eval::head_loss(s.head, net.forward(nn::constant(val_rows.x), p, ctx), val_rows);
    st.val_loss = loss.value().item();
    if (hw.active()) {
      st.hw_cost = hw.expected(nn::constant(net.alpha().value())).value().item();
      loss = nn::add(loss, hw.loss(net.alpha()));
    }
    // Each rank's share of the whole loss, the hardware term included, so the sum over the ranks
    // is the one-process gradient.
    const float share = shard.share(val.size());
    if (shard.active()) loss = nn::scale(loss, share);
    nn::backward(loss);
    set_trainable(weights, true);
    if (shard.active()) {
      std::vector<float> extra = {static_cast<float>(st.val_loss * share)};
      all_reduce_gradients(net.arch_parameters(), extra, shard);
      st.val_loss = extra[0];
    }
    if (after_backward) after_backward(net.arch_parameters());
    opt.arch->step();
  }
  // Weight step on training data with the op weights held constant.
  opt.weights->zero_grad();
  nn::Var p = op_weights(net.alpha(), s.gumbel, s.temperature, &rng);
  const nn::Var pc = nn::constant(p.value());
  nn::Var loss =
      eval::head_loss(s.head, net.forward(nn::constant(train_rows.x), pc, ctx), train_rows);
  const float share = shard.share(train.size());
  if (shard.active()) loss = nn::scale(loss, share);
  st.train_loss = loss.value().item();
  nn::backward(loss);
  if (shard.active()) {
    std::vector<float> extra = {static_cast<float>(st.train_loss)};
    all_reduce_gradients(weights, extra, shard);
    st.train_loss = extra[0];
  }
  if (after_backward) after_backward(weights);
  if (s.clip_grad_norm > 0) nn::clip_grad_norm(weights, s.clip_grad_norm);
  opt.weights->step();
  return st;
}

// ---- the search ----

namespace {

// Sum of the derived cell's op costs over its kept edges (all cells).
double cell_cost(const CellLayout& l, const std::vector<int>& d, const HardwareTerm& hw) {
  if (!hw.active()) return 0;
  double s = 0;
  std::size_t k = 0;
  for (int j = 1; j <= l.nodes; ++j)
    for (int slot = 0; slot < l.fan(j); ++slot) {
      int from = slot, op = 0;
      if (l.space_type == "nb201") {
        op = d[k++];
      } else {
        from = d[k] + slot;  // sorted inputs: rank + slot (to_decisions)
        op = d[k + 1];
        k += 2;
      }
      for (std::size_t e = 0; e < l.edges.size(); ++e)
        if (l.edges[e] == std::make_pair(from, j)) s += hw.cost[e][static_cast<std::size_t>(op)];
    }
  return s;
}

nlohmann::json probs_json(const EdgeProbs& p) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : p) {
    nlohmann::json row = nlohmann::json::array();
    for (double v : r) row.push_back(std::round(v * 1e6) / 1e6);
    j.push_back(row);
  }
  return j;
}

}  // namespace

DartsOutcome run_darts(const spaces::Space& space, const eval::TrainValSplit& data,
                       const hw::Device* device, const DartsOptions& o, std::ostream* log,
                       const DataShard& shard) {
  if (o.skip_guard != "early_stop" && o.skip_guard != "cap" && o.skip_guard != "off")
    throw std::invalid_argument("strategy.skip_guard: '" + o.skip_guard +
                                "' is not early_stop, cap or off");
  if (o.warmup_epochs >= o.epochs)
    throw std::invalid_argument("strategy.warmup_epochs: must be smaller than strategy.epochs");
  const CellLayout layout = cell_layout(space);
  if (!device && o.hardware_weight > 0)
    throw std::invalid_argument("strategy.device: the hardware term needs a device model");
  if (data.train.size() < 2 || data.val.size() < 2)
    throw std::invalid_argument(
        "darts: the task's train and validation splits need at least 2 "
        "samples each (task.train_subset, task.val_size)");

  std::mt19937_64 seeds(o.seed);
  const std::uint64_t net_seed = seeds(), train_seed = seeds(), val_seed = seeds(),
                      step_seed = seeds(), sample_seed = seeds();
  DartsSupernet net(layout, net_seed);
  HardwareTerm hw;
  if (device)
    hw = HardwareTerm(edge_op_costs(layout, *device, o.cost), o.hardware_weight, layout.none_op);
  BilevelOptimizers opt = make_bilevel_optimizers(net, o);

  const int batch = std::min({o.batch_size, data.train.size(), data.val.size()});
  if (batch < shard.ranks)
    throw std::invalid_argument("darts: a supernet batch of " + std::to_string(batch) +
                                " rows cannot be split over " + std::to_string(shard.ranks) +
                                " ranks (raise strategy.batch_size or use fewer ranks)");
  eval::BatchIterator train_it(data.train, batch, true, train_seed, true);
  eval::BatchIterator val_it(data.val, batch, true, val_seed, true);
  const int steps = o.steps_per_epoch > 0 ? o.steps_per_epoch : train_it.batches_per_epoch();
  nn::CosineSchedule sched;
  sched.base_lr = 1.0f;
  sched.total_steps = static_cast<std::int64_t>(steps) * o.epochs;
  std::mt19937_64 step_rng(step_seed);
  const int max_skip = o.skip_guard == "off" ? -1 : o.max_skip;

  DartsOutcome out;
  nlohmann::json epochs = nlohmann::json::array();
  // The last alpha whose derived cell held at most max_skip skips (early_stop goes back to it).
  nn::Tensor last_ok_alpha = net.alpha().value().clone();
  bool stop = false;
  int train_epoch = 0, val_epoch = 0;
  int train_taken = 0, val_taken = 0;  // batches taken from the iterators' current passes
  std::int64_t step = 0;
  int done = 0;  // finished epochs
  const std::int64_t fingerprint = options_fingerprint(o, steps);

  // Continue a saved state: everything is read and checked before anything is changed.
  std::error_code ec;
  if (!o.state_path.empty() && std::filesystem::exists(o.state_path, ec)) {
    try {
      const nn::TrainingCheckpoint ck = nn::read_checkpoint(o.state_path);
      if (ck.counters.at("options_fingerprint") != fingerprint)
        throw std::invalid_argument("it was written under other strategy options");
      nn::StateDict model = ck.model;
      const auto last_ok = model.find("darts/last_ok_alpha");
      if (last_ok == model.end()) throw std::invalid_argument("record 'last_ok_alpha' is missing");
      const nn::Tensor kept_last_ok = last_ok->second.clone();
      model.erase(last_ok);
      std::mt19937_64 kept_rng;
      nn::set_rng_state(kept_rng, ck.rng.at("step"));
      const nlohmann::json kept_epochs = nlohmann::json::parse(ck.rng.at("epochs_report"));
      const int kept_done = static_cast<int>(ck.counters.at("epochs_done"));
      const std::int64_t kept_step = ck.counters.at("step");
      const int kept_train_pass = static_cast<int>(ck.counters.at("train_pass"));
      const int kept_val_pass = static_cast<int>(ck.counters.at("val_pass"));
      const int kept_train_taken = static_cast<int>(ck.counters.at("train_taken"));
      const int kept_val_taken = static_cast<int>(ck.counters.at("val_taken"));
      const bool kept_collapsed = ck.counters.at("collapsed") != 0;
      const int kept_collapse_epoch = static_cast<int>(ck.counters.at("collapse_epoch"));
      const int kept_collapse_step = static_cast<int>(ck.counters.at("collapse_step"));
      const nn::OptimizerState& w_state = ck.optimizers.at("weights");
      const nn::OptimizerState& a_state = ck.optimizers.at("architecture");
      // Last, and all or nothing: the supernet and both optimizers are put back on failure.
      const nn::StateDict before = nn::state_dict(net);
      const nn::OptimizerState w_before = opt.weights->state(), a_before = opt.arch->state();
      try {
        load_state_dict(net, model, o.state_path);
        opt.weights->load_state(w_state);
        opt.arch->load_state(a_state);
      } catch (...) {
        load_state_dict(net, before, "the supernet before resuming");
        opt.weights->load_state(w_before);
        opt.arch->load_state(a_before);
        throw;
      }
      step_rng = kept_rng;
      last_ok_alpha = kept_last_ok;
      epochs = kept_epochs;
      done = kept_done;
      step = kept_step;
      train_epoch = kept_train_pass;
      val_epoch = kept_val_pass;
      train_taken = kept_train_taken;
      val_taken = kept_val_taken;
      out.collapsed = kept_collapsed;
      out.collapse_epoch = kept_collapse_epoch;
      out.collapse_step = kept_collapse_step;
      out.epochs_run = done;
      out.resumed_after_epoch = done;
      if (log)
        *log << "darts: supernet resumed from " << o.state_path << " after epoch " << done << "/"
             << o.epochs << std::endl;
    } catch (const std::exception& e) {
      if (log)
        *log << "warning: the supernet state " << o.state_path << " is unusable (" << e.what()
             << "); training the supernet from the start" << std::endl;
    }
  }
  eval::Batch tb, vb;
  train_it.start_epoch(train_epoch);
  val_it.start_epoch(val_epoch);
  for (int k = 0; k < train_taken; ++k) train_it.next(tb);
  for (int k = 0; k < val_taken; ++k) val_it.next(vb);

  auto save = [&] {
    if (o.state_path.empty() || shard.rank != 0) return;
    nn::TrainingCheckpoint ck;
    ck.model = nn::state_dict(net);
    ck.model["darts/last_ok_alpha"] = last_ok_alpha.clone();
    ck.optimizers["weights"] = opt.weights->state();
    ck.optimizers["architecture"] = opt.arch->state();
    ck.rng["step"] = nn::rng_state(step_rng);
    // Not a generator: the checkpoint's only string records, so the epoch report rides there.
    ck.rng["epochs_report"] = epochs.dump();
    ck.counters["options_fingerprint"] = fingerprint;
    ck.counters["epochs_done"] = done;
    ck.counters["step"] = step;
    ck.counters["train_pass"] = train_epoch;
    ck.counters["val_pass"] = val_epoch;
    ck.counters["train_taken"] = train_taken;
    ck.counters["val_taken"] = val_taken;
    ck.counters["collapsed"] = out.collapsed ? 1 : 0;
    ck.counters["collapse_epoch"] = out.collapse_epoch;
    ck.counters["collapse_step"] = out.collapse_step;
    std::filesystem::create_directories(std::filesystem::path(o.state_path).parent_path(), ec);
    nn::save_checkpoint(ck, o.state_path);
  };

  const auto start = std::chrono::steady_clock::now();
  nn::run_isolated([&] {
    for (int e = done + 1; e <= o.epochs; ++e) {
      StepSettings s;
      s.update_arch = e > o.warmup_epochs;
      s.gumbel = o.gumbel;
      s.temperature = o.temperature * std::pow(o.temperature_decay, static_cast<float>(e - 1));
      s.clip_grad_norm = o.clip_grad_norm;
      s.head = o.head;
      s.shard = &shard;
      double tl = 0, vl = 0, hc = 0;
      int n = 0, nv = 0;
      for (int k = 0; k < steps; ++k, ++step) {
        // Both iterators wrap around: an epoch of steps may be shorter or longer than a pass.
        if (!train_it.next(tb)) {
          train_it.start_epoch(++train_epoch);
          train_taken = 0;
          train_it.next(tb);
        }
        ++train_taken;
        if (!val_it.next(vb)) {
          val_it.start_epoch(++val_epoch);
          val_taken = 0;
          val_it.next(vb);
        }
        ++val_taken;
        opt.weights->set_lr_factor(sched.factor_at(step));
        const StepStats st = bilevel_step(net, opt, tb, vb, hw, s, step_rng);
        tl += st.train_loss;
        ++n;
        if (s.update_arch) {
          vl += st.val_loss;
          if (hw.active()) hc += st.hw_cost;
          ++nv;
        }
        if (!std::isfinite(st.train_loss))
          throw std::runtime_error("darts: the supernet's training loss diverged at epoch " +
                                   std::to_string(e) + " (lower strategy.w_lr)");
        if (s.update_arch && !out.collapsed) {
          // Checked after every architecture step (deriving costs microseconds), so early_stop
          // keeps the parameters of the step just before the collapse, not of an epoch ago.
          int sk = 0;
          (void)derive_decisions(layout, probabilities(net.alpha()), -1, &sk);
          if (sk > o.max_skip) {
            out.collapsed = true;
            out.collapse_epoch = e;
            out.collapse_step = static_cast<int>(step) + 1;
            if (o.skip_guard == "early_stop") {
              net.alpha().value() = last_ok_alpha.clone();
              stop = true;
              if (log)
                *log << "darts: skip collapse at step " << step + 1 << " (epoch " << e << ", " << sk
                     << " skips > max_skip " << o.max_skip
                     << "); stopping with the previous step's architecture parameters" << std::endl;
              break;
            }
          } else {
            last_ok_alpha = net.alpha().value().clone();
          }
        }
      }
      const EdgeProbs p = probabilities(net.alpha());
      int skips = 0;
      const std::vector<int> d = derive_decisions(layout, p, -1, &skips);
      nlohmann::json ej = {{"epoch", e},
                           {"train_loss", tl / n},
                           {"val_loss", nv ? vl / nv : 0.0},
                           {"expected_cost", hw.active() ? hw.expected(p) : 0.0},
                           {"arch", space.describe(space.decode(d))},
                           {"skips", skips}};
      epochs.push_back(ej);
      out.epochs_run = e;
      if (log)
        *log << "darts epoch " << e << "/" << o.epochs << ": train loss " << std::fixed
             << std::setprecision(4) << tl / n << ", val loss " << (nv ? vl / nv : 0.0) << ", E["
             << o.cost << "] " << (hw.active() ? hw.expected(p) : 0.0) << ", "
             << ej["arch"].get<std::string>() << " (" << skips << " skips)" << std::endl;
      if (stop) break;
      done = e;
      // A failed save loses only the ability to continue mid-phase, never the run.
      try {
        save();
      } catch (const std::exception& ex) {
        if (log)
          *log << "warning: could not save the supernet state to " << o.state_path << " ("
               << ex.what() << "); a killed run would train it from the start" << std::endl;
      }
    }
  });

  out.probs = probabilities(net.alpha());
  out.decisions = derive_decisions(layout, out.probs, max_skip);
  spaces::Genome derived = space.decode(out.decisions);
  out.expected_cost = hw.active() ? hw.expected(out.probs) : 0.0;
  out.derived_cost = cell_cost(layout, out.decisions, hw);
  // Further candidates: distinct draws from the learned distribution.
  std::set<std::string> seen = {derived.hash()};
  out.candidates.push_back(derived);
  std::mt19937_64 sample_rng(sample_seed);
  for (int tries = 0;
       static_cast<int>(out.candidates.size()) < o.candidates && tries < 50 * o.candidates;
       ++tries) {
    spaces::Genome g = space.decode(sample_decisions(layout, out.probs, max_skip, sample_rng));
    if (seen.insert(g.hash()).second) out.candidates.push_back(std::move(g));
  }

  nlohmann::json ops = nlohmann::json::array(), edges = nlohmann::json::array();
  for (const auto& op : layout.ops) ops.push_back(op.name);
  for (const auto& [f, t] : layout.edges) edges.push_back({f, t});
  out.report = {
      {"method", "darts (first order)"},
      {"space", space.type()},
      {"ops", ops},
      {"edges", edges},
      {"probabilities", probs_json(out.probs)},
      {"decisions", out.decisions},
      {"arch", space.describe(derived)},
      {"hardware_weight", o.hardware_weight},
      {"cost", o.cost},
      {"device", device ? device->name() : ""},
      {"op_costs", hw.active() ? nlohmann::json(hw.cost.front()) : nlohmann::json()},
      {"expected_cost", out.expected_cost},
      {"derived_cell_cost", out.derived_cost},
      {"skip_guard", o.skip_guard},
      {"max_skip", o.max_skip},
      {"collapsed", out.collapsed},
      {"collapse_epoch", out.collapse_epoch},
      {"collapse_step", out.collapse_step},
      {"epochs_run", out.epochs_run},
      {"resumed_after_epoch", out.resumed_after_epoch},
      {"epochs", epochs},
      {"candidates", out.candidates.size()},
      {"ranks", shard.ranks},
      {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}};
  if (device) {
    const hw::Cost c = device->estimate(spaces::build_workload(derived));
    out.report["derived_network_cost"] = o.cost == "latency_ms" ? c.latency_ms : c.energy_mj;
  }
  return out;
}

}  // namespace hwnas::oneshot
