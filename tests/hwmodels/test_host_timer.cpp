#include <gtest/gtest.h>
#include <sched.h>

#include <chrono>
#include <thread>

#include "hwmodels/host_timer.hpp"

using namespace hwnas::hw;

TEST(HostTimer, MedianOfSleepsAndAffinityRestored) {
  cpu_set_t before, after;
  ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  int calls = 0;
  double ms = measure_median_ms(
      [&] {
        ++calls;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      },
      2, 5);
  EXPECT_EQ(calls, 7);
  EXPECT_GE(ms, 2.0);
  EXPECT_LT(ms, 50.0);
  ASSERT_EQ(sched_getaffinity(0, sizeof after, &after), 0);
  EXPECT_TRUE(CPU_EQUAL(&before, &after));
  EXPECT_THROW(measure_median_ms([] {}, -1, 3), std::invalid_argument);
  EXPECT_THROW(measure_median_ms([] {}, 0, 0), std::invalid_argument);
}
