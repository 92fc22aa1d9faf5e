// The training loop on tiny problems: learning, early stopping, time budget, divergence,
// determinism, configuration errors and concurrent use from TBB tasks.
#include <gtest/gtest.h>
#include <oneapi/tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "evaluators/trainer.hpp"
#include "nn/layers.hpp"
#include "nn/parallel.hpp"

using namespace hwnas;
using namespace hwnas::eval;

namespace {

struct TinyMlp : nn::Module {
  nn::Linear l1, l2;
  TinyMlp(int in, int hidden, int classes, std::uint64_t seed)
      : TinyMlp(in, hidden, classes, std::make_unique<std::mt19937_64>(seed)) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    return l2.forward(nn::relu(l1.forward(in.at(0))));
  }
  void collect_parameters(std::vector<nn::Var>& out) override {
    l1.collect_parameters(out);
    l2.collect_parameters(out);
  }
  std::string name() const override { return "tiny_mlp"; }

 private:
  TinyMlp(int in, int hidden, int classes, std::unique_ptr<std::mt19937_64> rng)
      : l1(in, hidden, true, *rng), l2(hidden, classes, true, *rng) {}
};

// Three well-separated Gaussian blobs in `dim` dimensions.
Dataset blobs(int n, int dim, std::uint64_t seed, bool random_labels = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  Dataset d;
  d.num_classes = 3;
  d.x = nn::Tensor(nn::Shape{n, dim});
  for (int i = 0; i < n; ++i) {
    int c = static_cast<int>(rng() % 3);
    for (int j = 0; j < dim; ++j)
      d.x.data()[i * dim + j] = noise(rng) * 0.7f + (j % 3 == c ? 2.5f : 0.0f);
    d.y.push_back(random_labels ? static_cast<int>(rng() % 3) : c);
  }
  return d;
}

}  // namespace

TEST(Trainer, LossDecreasesAndValidationAccuracyIsHigh) {
  nn::ThreadBudget budget(1);
  Dataset tr = blobs(600, 8, 1), va = blobs(200, 8, 2);
  TinyMlp m(8, 16, 3, 3);
  TrainConfig c;
  c.epochs = 5;
  c.lr = 1e-2f;
  c.batch_size = 32;
  c.log_every_steps = 5;
  c.warmup_steps = 5;
  c.clip_grad_norm = 5.0f;
  TrainReport r = train(m, tr, va, c);
  EXPECT_EQ(r.stopped_reason, "epochs");
  EXPECT_EQ(r.epochs_run, 5);
  EXPECT_EQ(r.steps, 5 * 19);  // ceil(600/32) batches per epoch
  EXPECT_EQ(r.samples, 5 * 600);
  ASSERT_EQ(r.epoch_loss.size(), 5u);
  EXPECT_LT(r.epoch_loss.back(), r.epoch_loss.front());
  EXPECT_LT(r.train_loss_last, 0.5 * r.train_loss_first);
  EXPECT_EQ(r.step_loss.size(), 19u);  // 95 steps in windows of 5
  EXPECT_GT(r.val_accuracy, 0.9);
  EXPECT_NEAR(evaluate_accuracy(m, va), r.val_accuracy, 1e-12);
  EXPECT_GT(r.samples_per_s, 0);
  EXPECT_GE(r.seconds, r.train_seconds);
}

TEST(Trainer, SgdMomentumAlsoLearns) {
  nn::ThreadBudget budget(1);
  Dataset tr = blobs(600, 8, 1), va = blobs(200, 8, 2);
  TinyMlp m(8, 16, 3, 3);
  TrainConfig c;
  c.optimizer = "sgd";
  c.lr = 0.05f;
  c.momentum = 0.9f;
  c.weight_decay = 1e-4f;
  c.epochs = 4;
  c.log_every_steps = 5;
  TrainReport r = train(m, tr, va, c);
  EXPECT_LT(r.train_loss_last, 0.5 * r.train_loss_first);
  EXPECT_GT(r.val_accuracy, 0.9);
}

TEST(Trainer, EarlyStoppingOnValidationLoss) {
  nn::ThreadBudget budget(1);
  // Random labels: nothing generalises, the network memorises and val loss climbs.
  Dataset tr = blobs(200, 8, 5, true), va = blobs(200, 8, 6, true);
  TinyMlp m(8, 64, 3, 7);
  TrainConfig c;
  c.epochs = 200;
  c.lr = 3e-2f;
  c.cosine = false;
  c.patience = 3;
  TrainReport r = train(m, tr, va, c);
  EXPECT_EQ(r.stopped_reason, "early_stop");
  EXPECT_LT(r.epochs_run, 200);
  ASSERT_EQ(r.epoch_val_loss.size(), static_cast<std::size_t>(r.epochs_run));
  ASSERT_GE(r.best_epoch, 1);
  EXPECT_EQ(r.epochs_run, r.best_epoch + c.patience);
  for (int e = r.best_epoch; e < r.epochs_run; ++e)
    EXPECT_GE(r.epoch_val_loss[static_cast<std::size_t>(e)],
              r.epoch_val_loss[static_cast<std::size_t>(r.best_epoch - 1)]);
  EXPECT_DOUBLE_EQ(r.val_loss, r.epoch_val_loss.back());
}

TEST(Trainer, TimeBudgetIsRespected) {
  nn::ThreadBudget budget(1);
  Dataset tr = blobs(2000, 32, 1), va = blobs(100, 32, 2);
  TinyMlp m(32, 64, 3, 3);
  TrainConfig c;
  c.epochs = 0;  // time only
  c.max_seconds = 0.3;
  TrainReport r = train(m, tr, va, c);
  EXPECT_EQ(r.stopped_reason, "time");
  EXPECT_GT(r.steps, 0);
  EXPECT_LT(r.seconds, 0.3 + 0.5);
  EXPECT_GE(r.train_seconds, 0.0);

  c.epochs = 1000000;  // both set: time ends first
  const std::string ck = ::testing::TempDir() + "/hwnas_trainer_time_stop.ckpt";
  std::filesystem::remove(ck);
  c.checkpoint_out = ck;
  TinyMlp m2(32, 64, 3, 3);
  TrainReport r2 = train(m2, tr, va, c);
  EXPECT_EQ(r2.stopped_reason, "time");
  EXPECT_LT(r2.seconds, 0.3 + 0.5);
  // Stopped inside an epoch: no checkpoint, which a continuation would misread.
  EXPECT_FALSE(std::filesystem::exists(ck));
}

TEST(Trainer, NonFiniteLossStopsAsDiverged) {
  nn::ThreadBudget budget(1);
  Dataset tr = blobs(100, 4, 1), va = blobs(50, 4, 2);
  TinyMlp m(4, 8, 3, 3);
  m.l2.weight.value().data()[0] = std::numeric_limits<float>::quiet_NaN();
  TrainConfig c;
  c.epochs = 3;
  TrainReport r = train(m, tr, va, c);
  EXPECT_EQ(r.stopped_reason, "diverged");
  EXPECT_EQ(r.steps, 0);
}

TEST(Trainer, SameSeedSameLossCurve) {
  nn::ThreadBudget budget(1);
  Dataset tr = blobs(300, 8, 1), va = blobs(100, 8, 2);
  TrainConfig c;
  c.epochs = 3;
  c.log_every_steps = 1;
  c.seed = 42;
  auto run = [&](std::uint64_t seed) {
    TinyMlp m(8, 16, 3, 9);
    TrainConfig cc = c;
    cc.seed = seed;
    return train(m, tr, va, cc);
  };
  TrainReport a = run(42), b = run(42), other = run(43);
  ASSERT_EQ(a.step_loss.size(), b.step_loss.size());
  for (std::size_t i = 0; i < a.step_loss.size(); ++i)
    EXPECT_EQ(a.step_loss[i].loss, b.step_loss[i].loss) << "step " << i;
  EXPECT_EQ(a.val_loss, b.val_loss);
  EXPECT_NE(a.step_loss[5].loss, other.step_loss[5].loss);  // the shuffle order differs
}

TEST(Trainer, ConcurrentTrainingFromTbbTasks) {
  nn::ThreadBudget budget(2);
  Dataset tr = blobs(400, 8, 1), va = blobs(100, 8, 2);
  std::vector<TrainReport> reports(4);
  oneapi::tbb::parallel_for(0, 4, [&](int i) {
    TinyMlp m(8, 16, 3, static_cast<std::uint64_t>(i));
    TrainConfig c;
    c.epochs = 10;
    c.lr = 1e-2f;
    c.batch_size = 32;
    c.seed = static_cast<std::uint64_t>(i);
    reports[static_cast<std::size_t>(i)] = train(m, tr, va, c);
  });
  for (const TrainReport& r : reports) {
    EXPECT_EQ(r.stopped_reason, "epochs");
    EXPECT_GT(r.val_accuracy, 0.85);
  }
}

TEST(Trainer, BadConfigNamesTheField) {
  Dataset tr = blobs(10, 4, 1), va = blobs(10, 4, 2);
  TinyMlp m(4, 8, 3, 3);
  auto message = [&](TrainConfig c) {
    try {
      train(m, tr, va, c);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  TrainConfig c;
  c.optimizer = "adam";
  EXPECT_NE(message(c).find("optimizer"), std::string::npos);
  c = TrainConfig{};
  c.lr = -1;
  EXPECT_NE(message(c).find("lr"), std::string::npos);
  c = TrainConfig{};
  c.batch_size = 0;
  EXPECT_NE(message(c).find("batch_size"), std::string::npos);
  c = TrainConfig{};
  c.momentum = 1.5f;
  EXPECT_NE(message(c).find("momentum"), std::string::npos);
  c = TrainConfig{};
  c.epochs = 0;
  EXPECT_NE(message(c).find("epochs"), std::string::npos);
  Dataset empty;
  empty.num_classes = 3;
  empty.x = nn::Tensor(nn::Shape{0, 4});
  EXPECT_THROW(train(m, empty, va, TrainConfig{}), std::invalid_argument);
}

TEST(Trainer, EvaluateReportsLossAndAccuracy) {
  Dataset va = blobs(50, 4, 2);
  TinyMlp m(4, 8, 3, 3);
  EvalMetrics e = evaluate(m, va, 16);
  EXPECT_EQ(e.samples, 50);
  EXPECT_GE(e.accuracy, 0.0);
  EXPECT_LE(e.accuracy, 1.0);
  EXPECT_GT(e.loss, 0.0);
  EXPECT_TRUE(std::isfinite(e.loss));
}

namespace {
std::vector<float> flat_parameters(nn::Module& m) {
  std::vector<nn::Var> ps;
  m.collect_parameters(ps);
  std::vector<float> out;
  for (const auto& p : ps) {
    const auto v = p.value().to_vector();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}
}  // namespace

// Multi-fidelity promotion continues a candidate instead of retraining it: 2 epochs, a
// checkpoint, then a fresh model resumed to 4 epochs equals 4 epochs straight, bit for bit.
TEST(Trainer, ResumeFromCheckpointEqualsStraightRun) {
  nn::ThreadBudget budget(1);
  Dataset tr = blobs(300, 8, 1), va = blobs(100, 8, 2);
  TrainConfig c;
  c.cosine = false;  // the schedule must not depend on the epoch budget for exact equality
  c.warmup_steps = 3;
  c.seed = 9;
  c.epochs = 4;
  TinyMlp straight(8, 16, 3, 3);
  TrainReport full = train(straight, tr, va, c);

  const std::string ck = ::testing::TempDir() + "/hwnas_trainer_resume.ckpt";
  TinyMlp first(8, 16, 3, 3);
  TrainConfig c2 = c;
  c2.epochs = 2;
  c2.checkpoint_out = ck;
  train(first, tr, va, c2);

  TinyMlp resumed(8, 16, 3, 77);  // different initialisation: the checkpoint must replace it
  TrainConfig c4 = c;
  c4.resume_from = ck;
  TrainReport rest = train(resumed, tr, va, c4);
  EXPECT_EQ(flat_parameters(resumed), flat_parameters(straight));
  EXPECT_EQ(rest.steps, full.steps);
  EXPECT_EQ(rest.val_loss, full.val_loss);
  EXPECT_EQ(rest.epochs_run, 2);

  TrainConfig done = c;
  done.epochs = 2;
  done.resume_from = ck;
  TinyMlp again(8, 16, 3, 3);
  try {
    train(again, tr, va, done);
    FAIL() << "resuming past the budget must be refused";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("already has 2 epochs; epochs (2) must be larger"),
              std::string::npos)
        << e.what();
  }
}

// With the cosine schedule on, a rung trained under the top rung's horizon (schedule_epochs)
// and continued later is still the straight run: what successive halving relies on.
TEST(Trainer, ScheduleHorizonMakesACosineRungAPrefixOfTheFullRun) {
  nn::ThreadBudget budget(1);
  Dataset tr = blobs(300, 8, 1), va = blobs(100, 8, 2);
  TrainConfig c;
  c.cosine = true;
  c.seed = 4;
  c.epochs = 3;
  TinyMlp straight(8, 16, 3, 3);
  const TrainReport full = train(straight, tr, va, c);

  const std::string ck = ::testing::TempDir() + "/hwnas_trainer_horizon.ckpt";
  TinyMlp first(8, 16, 3, 3);
  TrainConfig rung = c;
  rung.epochs = 1;
  rung.schedule_epochs = 3;
  rung.checkpoint_out = ck;
  train(first, tr, va, rung);
  TinyMlp promoted(8, 16, 3, 5);
  TrainConfig next = c;
  next.schedule_epochs = 3;
  next.resume_from = ck;
  const TrainReport rest = train(promoted, tr, va, next);
  EXPECT_EQ(flat_parameters(promoted), flat_parameters(straight));
  EXPECT_EQ(rest.val_loss, full.val_loss);
  EXPECT_EQ(rest.epochs_run, 2);

  // Without the horizon the first rung decays to zero within its one epoch: not a prefix.
  TinyMlp own(8, 16, 3, 3);
  TrainConfig short_schedule = c;
  short_schedule.epochs = 1;
  short_schedule.checkpoint_out = ck;
  train(own, tr, va, short_schedule);
  TinyMlp continued(8, 16, 3, 5);
  TrainConfig resumed = c;
  resumed.resume_from = ck;
  train(continued, tr, va, resumed);
  EXPECT_NE(flat_parameters(continued), flat_parameters(straight));
}

// restore_best ends on the best evaluated epoch's weights, so the reported validation loss is
// the lowest of the per-epoch ones even when later epochs overfit (random labels).
TEST(Trainer, RestoreBestEndsOnTheBestEpoch) {
  nn::ThreadBudget budget(1);
  Dataset tr = blobs(120, 8, 1, /*random_labels=*/true), va = blobs(200, 8, 2, true);
  TinyMlp m(8, 64, 3, 3);
  TrainConfig c;
  c.epochs = 12;
  c.lr = 3e-2f;
  c.eval_every_epoch = true;
  c.restore_best = true;
  TrainReport r = train(m, tr, va, c);
  ASSERT_EQ(r.epoch_val_loss.size(), 12u);
  const double best = *std::min_element(r.epoch_val_loss.begin(), r.epoch_val_loss.end());
  EXPECT_NE(r.best_epoch, 12) << "the run did not overfit; the test needs a worse last epoch";
  EXPECT_NEAR(r.val_loss, best, 1e-9);
  EXPECT_GT(r.epoch_val_loss.back(), r.val_loss);
}

// train_stages: each stage's fresh model starts from the weights the previous stage ended with.
TEST(Trainer, StagesContinueFromThePreviousStagesWeights) {
  nn::ThreadBudget budget(1);
  Dataset tr = blobs(600, 8, 1), va = blobs(200, 8, 2);
  TrainConfig learn;
  learn.epochs = 5;
  learn.lr = 1e-2f;
  learn.batch_size = 32;
  TrainConfig hold = learn;  // a step too small to move the weights
  hold.epochs = 1;
  hold.lr = 1e-12f;
  std::vector<std::size_t> seen;
  std::vector<double> accuracy;
  const TrainReport r = train_stages(
      {{&tr, &va, learn}, {&tr, &va, hold}},
      // Stage 2's own initialisation (seed 99) must be replaced by stage 1's weights.
      [](std::size_t i) { return std::make_unique<TinyMlp>(8, 16, 3, i == 0 ? 3 : 99); },
      [&](std::size_t i, nn::Module& m, const TrainReport& rep) {
        seen.push_back(i);
        accuracy.push_back(evaluate_accuracy(m, va));
        EXPECT_NEAR(accuracy.back(), rep.val_accuracy, 1e-12);
      });
  EXPECT_EQ(seen, (std::vector<std::size_t>{0, 1}));
  EXPECT_GT(accuracy[0], 0.9);
  EXPECT_NEAR(accuracy[1], accuracy[0], 1e-12);
  EXPECT_NEAR(r.val_accuracy, accuracy[0], 1e-12);
  TinyMlp fresh(8, 16, 3, 99);
  EXPECT_LT(evaluate_accuracy(fresh, va), 0.9);
}

TEST(Trainer, StagesRefuseWeightsOfAnotherShapeNamingTheStage) {
  nn::ThreadBudget budget(1);
  Dataset tr = blobs(50, 8, 1), va = blobs(20, 8, 2);
  TrainConfig c;
  try {
    train_stages({{&tr, &va, c}, {&tr, &va, c}}, [](std::size_t i) {
      return std::make_unique<TinyMlp>(8, i == 0 ? 16 : 32, 3, 3);
    });
    FAIL() << "a hidden width of 32 took stage 1's width-16 weights";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("in stage 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(train_stages({}, [](std::size_t) { return std::make_unique<TinyMlp>(8, 16, 3, 3); }),
               std::invalid_argument);
}
