#include "search/cmd_train.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <numeric>
#include <sstream>

#include "evaluators/sequence_tasks.hpp"
#include "evaluators/task_registry.hpp"
#include "evaluators/trainer.hpp"
#include "hwmodels/host_timer.hpp"
#include "nn/state_dict.hpp"
#include "search/arch_ref.hpp"
#include "search/cli_checks.hpp"
#include "spaces/model_builder.hpp"

namespace hwnas::search {
namespace {

struct TrainOptions {
  std::string db, arch, out;
  long long run = -1;
  int epochs = 0;  // 0: the config's
  long long seed = -1;
  int train_subset = 0;  // hidden: tests and quick looks
};

// Generated tasks have no test files: a fresh sample from a seed the search never uses
// (generated_split draws train and validation from seed * 2 + 1 and seed * 2 + 2).
constexpr std::uint64_t kTestSeedSalt = 0x7e57'5e7d'0000'0001ull;

// Zero-pads [N,1,28,28] to [N,C,32,32] with the normalised black value, repeating the grey
// channel, exactly as the fashion_mnist task feeds 32x32 skeletons.
eval::Dataset pad_to_32(const eval::Dataset& d, int channels) {
  const int n = d.size();
  eval::Dataset out;
  out.y = d.y;
  out.num_classes = d.num_classes;
  const float background = (0.0f - eval::kFashionMnistMean) / eval::kFashionMnistStd;
  out.x = nn::Tensor(nn::Shape{n, channels, 32, 32}, background);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < channels; ++c)
      for (int r = 0; r < 28; ++r)
        std::copy(
            d.x.data() + (static_cast<std::int64_t>(i) * 28 + r) * 28,
            d.x.data() + (static_cast<std::int64_t>(i) * 28 + r) * 28 + 28,
            out.x.data() + ((static_cast<std::int64_t>(i) * channels + c) * 32 + r + 2) * 32 + 2);
  return out;
}

// The task's held-out test split, shaped for `input`.  The only caller of the test loader.
eval::Dataset held_out_test_set(const eval::TaskSpec& task, const spaces::TensorType& input,
                                std::uint64_t seed, int val_size) {
  if (task.name() == "fashion_mnist") {
    eval::Dataset t = eval::load_fashion_mnist_test();
    if (input.dims.size() == 3 && input.dims[1] == 32) t = pad_to_32(t, input.dims[0]);
    return t;
  }
  if (task.name() == "fashion_mnist_rows") {
    const std::uint64_t perm = task.params.value("permute", false) ? seed * 2 + 3 : 0;
    return eval::sequential_image_rows(eval::load_fashion_mnist_test(), perm);
  }
  eval::SplitSizes sizes{1, std::max(1, val_size)};
  return eval::make_task_data(task, input, seed ^ kTestSeedSalt, sizes).val;
}

std::string clock_text(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm%02lds", s / 3600, s / 60 % 60, s % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

std::string bar(int done, int total) {
  constexpr int kWidth = 20;
  const int filled = total > 0 ? done * kWidth / total : kWidth;
  return "[" + std::string(static_cast<std::size_t>(filled), '#') +
         std::string(static_cast<std::size_t>(kWidth - filled), '.') + "]";
}

std::string default_out(std::int64_t arch_id) {
  return "arch" + std::to_string(arch_id) + ".weights.bin";
}

int run_train(const TrainOptions& o) {
  auto store = open_existing_store(o.db, /*read_only=*/false);
  const std::int64_t arch_id = resolve_arch_ref(*store, o.arch);
  const spaces::Genome genome = stored_genome(*store, arch_id);
  const RunConfig rc = stored_run_config(*store, arch_id, o.run);
  const SearchConfig& c = rc.config;
  if (c.evaluator != "train")
    throw ArchRefError("run " + std::to_string(rc.run_id) + " uses evaluator '" + c.evaluator +
                       "', which does not train; hwnas train needs a run whose evaluator is "
                       "'train' (pick one with --run)");
  if (o.epochs < 0) throw ArchRefError("--epochs: must be >= 1, got " + std::to_string(o.epochs));
  const int epochs = o.epochs > 0 ? o.epochs : c.epochs;
  const std::uint64_t seed = o.seed >= 0 ? static_cast<std::uint64_t>(o.seed) : c.seed;
  const std::string out = o.out.empty() ? default_out(arch_id) : o.out;

  const eval::TaskSpec task = eval::resolve_task(c.dataset, c.task_params);
  const spaces::TensorType input = genome.input_type();
  // Full fidelity: train 0 = every sample the task offers besides the held-out validation.
  eval::SplitSizes sizes{0, c.val_size};
  eval::TrainValSplit data = eval::make_task_data(task, input, c.seed, sizes);
  if (o.train_subset > 0 && o.train_subset < data.train.size()) {
    std::vector<int> idx(static_cast<std::size_t>(o.train_subset));
    std::iota(idx.begin(), idx.end(), 0);
    data.train = eval::take(data.train, idx);
  }

  // The same recipe as the search's train evaluator (search/evaluator_factory.cpp), over the
  // full budget.
  eval::TrainConfig tc;
  tc.head = task.entry->head;
  tc.monitor_primary = true;
  tc.optimizer = c.optimizer;
  tc.lr = static_cast<float>(c.lr);
  tc.weight_decay = static_cast<float>(c.weight_decay);
  tc.momentum = static_cast<float>(c.momentum);
  tc.batch_size = c.batch_size;
  tc.epochs = epochs;
  tc.warmup_epochs = epochs > 1 ? 0.2f : 0.05f;
  tc.clip_grad_norm = 5.0f;
  tc.eval_every_epoch = true;  // the progress line shows validation accuracy
  tc.seed = seed;
  const int steps_per_epoch = (data.train.size() + tc.batch_size - 1) / tc.batch_size;
  tc.log_every_steps = std::max(1, steps_per_epoch * epochs / 10);
  const std::string primary = task.entry->primary_metric();

  auto model = spaces::build_model(genome, seed);
  std::cout << "hwnas train: architecture " << arch_id << " (" << genome.hash()
            << "), config of run " << rc.run_id << ": task " << task.name() << ", "
            << data.train.size() << " training samples, " << data.val.size() << " validation, "
            << epochs << " epoch" << (epochs == 1 ? "" : "s") << ", " << tc.optimizer << " lr "
            << tc.lr << ", batch " << tc.batch_size << ", seed " << seed << ", "
            << model->num_parameters() << " parameters" << std::endl;
  const auto t0 = std::chrono::steady_clock::now();
  // On a terminal, a bar redrawn in place about 200 times over the run; in a log, epoch lines only.
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  tc.on_epoch_end = [&](int epoch, double train_loss, double, double val_primary) {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double eta = elapsed / epoch * (epochs - epoch);
    char buf[160];
    std::snprintf(buf, sizeof buf, " epoch %d/%d train_loss %.4f val_%s %.4f | elapsed %s | ETA %s",
                  epoch, epochs, train_loss, primary.c_str(), val_primary,
                  clock_text(elapsed).c_str(), clock_text(eta).c_str());
    std::cout << (tty ? "\r\033[K" : "") << bar(epoch, epochs) << buf << std::endl;
  };
  if (tty)
    tc.on_step_end = [&, next = std::int64_t{0}](std::int64_t step, std::int64_t total) mutable {
      if (step < next && step != total) return;
      next = step + std::max<std::int64_t>(1, total / 200);
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double eta = elapsed / static_cast<double>(step) * static_cast<double>(total - step);
      std::cout << "\r" << bar(static_cast<int>(step * 1000 / total), 1000) << " step " << step
                << "/" << total << " | elapsed " << clock_text(elapsed) << " | ETA "
                << clock_text(eta) << "   " << std::flush;
    };
  const eval::TrainReport rep = eval::train(*model, data.train, data.val, tc);
  if (rep.stopped_reason == "diverged") {
    std::cerr << "error: training diverged (non-finite loss) at epoch " << rep.epochs_run
              << "; nothing stored\n";
    return 1;
  }

  nn::save_state(*model, out);

  // Exactly one pass over the test split, after training is over.
  const eval::Dataset test = held_out_test_set(task, input, c.seed, c.val_size);
  const eval::EvalMetrics tm = eval::evaluate(*model, test, tc.eval_batch_size, nullptr, tc.head);

  double host_ms = 0;
  {
    std::vector<int> dims = data.val.sample_dims();
    dims.insert(dims.begin(), 1);
    nn::Tensor x{nn::Shape(dims)};
    std::copy(data.val.x.data(), data.val.x.data() + x.numel(), x.data());
    nn::NoGradGuard no_grad;
    nn::ForwardContext ctx;
    ctx.training = false;
    nn::Var in = nn::constant(x);
    host_ms = hw::measure_median_ms([&] { (void)model->forward(in, ctx); }, 3,
                                    std::max(10, c.host_latency_reps));
  }

  db::TestResultRecord r;
  r.arch_id = arch_id;
  r.run_id = rc.run_id;
  r.epochs = rep.epochs_run;
  r.weights_path = std::filesystem::absolute(out).lexically_normal().string();
  for (const auto& [k, v] : tm.metrics) r.metrics["test_" + k] = v;
  r.metrics["test_loss"] = tm.loss;
  r.metrics["test_samples"] = tm.samples;
  for (const auto& [k, v] : rep.val_metrics) r.metrics["val_" + k] = v;
  r.metrics["val_loss"] = rep.val_loss;
  r.metrics["train_samples"] = data.train.size();
  if (o.train_subset > 0) r.metrics["train_subset"] = o.train_subset;
  r.metrics["train_seconds"] = rep.train_seconds;
  r.metrics["host_latency_ms"] = host_ms;
  r.metrics["params"] = static_cast<double>(model->num_parameters());
  r.metrics["seed"] = seed;
  const std::int64_t id = store->add_test_result(r);

  std::cout << "weights saved to " << out << "\n"
            << "validation: val_" << primary << " " << rep.val_accuracy << ", val_loss "
            << rep.val_loss << "\n"
            << kTestLabel << ": test_" << primary << " " << tm.accuracy << ", test_loss " << tm.loss
            << " on " << tm.samples << " samples (stored as test result " << id << ")\n"
            << "host latency (batch 1, median): " << host_ms << " ms\n";
  return 0;
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto* sub = app.add_subcommand(
      "train",
      "Retrain a stored architecture at full fidelity, score the held-out test split once, save "
      "its weights");
  sub->add_option("--db", o->db, "results database (SQLite file written by `hwnas search`)")
      ->check(db_path())
      ->required();
  sub->add_option("--arch", o->arch, "architecture id, or its hash (a unique prefix suffices)")
      ->required();
  sub->add_option("--run", o->run,
                  "run whose config (task, schedule, seed) to use (default: the latest run that "
                  "evaluated the architecture)")
      ->check(run_id_range());
  sub->add_option("--epochs", o->epochs, "training epochs (default: the config's)");
  sub->add_option("--seed", o->seed, "initialisation and shuffling seed (default: the run's)")
      ->check(seed_range());
  sub->add_option("--out", o->out, "weights file to write (default: arch<ID>.weights.bin)");
  sub->add_option("--train-subset", o->train_subset,
                  "train on the first N training samples only (tests)")
      ->group("");
  sub->callback([o] {
    int code = 0;
    try {
      code = run_train(*o);
    } catch (const std::invalid_argument& e) {
      std::cerr << "error: " << e.what() << "\n";
      code = 2;
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      code = 1;
    }
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace hwnas::search
