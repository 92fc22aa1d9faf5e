// Activity sinks and the recorder: accumulation, per-sample averages, per-index vectors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "nn/activity.hpp"
#include "nn/module.hpp"

using namespace hwnas::nn;

TEST(ActivitySink, PerSampleAveragesOfScalarsAndSeries) {
  ActivitySink s;
  EXPECT_TRUE(s.empty());
  EXPECT_TRUE(s.per_sample().empty());  // nothing recorded, no samples: no averages
  // Two batches (4 and 6 samples): totals add up, averages divide by all 10 samples.
  s.add(activity_key::kSpikes, 40);
  s.add_at(activity_key::kSpikesPerStep, 1, 8);
  s.add_samples(4);
  s.add(activity_key::kSpikes, 60);
  s.add_at(activity_key::kSpikesPerStep, 0, 5);
  s.add_at(activity_key::kSpikesPerStep, 2, 7);
  s.add_samples(6);
  EXPECT_FALSE(s.empty());
  EXPECT_DOUBLE_EQ(s.samples(), 10);
  EXPECT_DOUBLE_EQ(s.totals().at("spikes"), 100);
  auto avg = s.per_sample();
  EXPECT_DOUBLE_EQ(avg.at("spikes"), 10);
  auto series = s.series_per_sample();
  ASSERT_EQ(series.at("spikes_per_step").size(), 3u);  // grown with zeros to index 2
  EXPECT_DOUBLE_EQ(series.at("spikes_per_step")[0], 0.5);
  EXPECT_DOUBLE_EQ(series.at("spikes_per_step")[1], 0.8);
  EXPECT_DOUBLE_EQ(series.at("spikes_per_step")[2], 0.7);
  s.clear();
  EXPECT_TRUE(s.empty());
  EXPECT_DOUBLE_EQ(s.samples(), 0);
}

TEST(ActivitySink, SamplesWithoutCountsGiveNoAverages) {
  ActivitySink s;
  s.add("x", 3);  // recorded but no samples: an average would be meaningless
  EXPECT_TRUE(s.per_sample().empty());
  EXPECT_TRUE(s.series_per_sample().empty());
}

TEST(ActivityRecorder, OneSinkPerNode) {
  ActivityRecorder r;
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.find(3), nullptr);
  r.sink(3).add("a", 1);
  r.sink(1).add("a", 2);
  r.sink(3).add("a", 4);
  ASSERT_NE(r.find(3), nullptr);
  EXPECT_DOUBLE_EQ(r.find(3)->totals().at("a"), 5);
  EXPECT_DOUBLE_EQ(r.find(1)->totals().at("a"), 2);
  EXPECT_EQ(r.sinks().size(), 2u);
  r.clear();
  EXPECT_TRUE(r.empty());
}

TEST(Activity, CountNonzero) {
  const float v[] = {0.0f, 1.0f, -0.0f, -2.5f, std::numeric_limits<float>::quiet_NaN(), 1e-30f};
  EXPECT_EQ(count_nonzero(v, 6), 4);  // -0 is zero; NaN and denormal-ish tiny values are not
  EXPECT_EQ(count_nonzero(v, 0), 0);
}

TEST(Activity, ForwardContextRecordsNothingByDefault) {
  ForwardContext ctx;
  EXPECT_EQ(ctx.recorder, nullptr);
  EXPECT_EQ(ctx.activity, nullptr);
}
