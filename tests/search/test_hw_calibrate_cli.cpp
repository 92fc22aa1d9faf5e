// `hwnas hw calibrate` end to end on NB201 architecture strings: it refuses to write a model that
// ranks the held-out rows worse than the uncalibrated one (unless --force), and drops and counts
// rows measured below --min-ms.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "cli_util.hpp"
#include "tests/temp_files.hpp"

namespace fs = std::filesystem;
using hwnas::test::run_hwnas;
using hwnas::test::TempDir;

namespace {

std::string random_nb201(std::mt19937_64& rng) {
  static const char* ops[] = {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                              "avg_pool_3x3"};
  std::uniform_int_distribution<int> op(0, 4);
  std::string s;
  for (int node = 1; node <= 3; ++node) {
    s += node == 1 ? "|" : "+|";
    for (int from = 0; from < node; ++from)
      s += std::string(ops[op(rng)]) + "~" + std::to_string(from) + "|";
  }
  return s;
}

// Latencies that have nothing to do with the architectures: whether calibration helps the
// held-out ranking is then a coin toss per split seed.
void write_noise_csv(const fs::path& path, int rows, std::uint64_t seed, double tiny_share = 0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> ms(1.0, 5.0), u(0, 1);
  std::ofstream out(path);
  out << "architecture,latency_ms\n";
  for (int i = 0; i < rows; ++i)
    out << "\"" << random_nb201(rng) << "\"," << (u(rng) < tiny_share ? 1e-4 : ms(rng)) << "\n";
}

}  // namespace

TEST(HwCalibrateCli, RefusesAModelThatRanksTheHeldOutRowsWorseUnlessForced) {
  TempDir d("calib_refuse");
  const fs::path csv = d.path / "m.csv", out = d.path / "tuned.json";
  write_noise_csv(csv, 40, 7);
  // Find a split seed under which the fit makes the held-out ranking worse (about half of them).
  int refused_seed = -1;
  std::string refusal;
  for (int seed = 0; seed < 20 && refused_seed < 0; ++seed) {
    const auto r =
        run_hwnas("hw calibrate --device rpi4_a72 --holdout 0.4 --seed " + std::to_string(seed) +
                  " -m " + csv.string() + " --out " + out.string());
    if (r.exit_code != 0) {
      refused_seed = seed;
      refusal = r.output;
    } else {
      fs::remove(out);
    }
  }
  ASSERT_GE(refused_seed, 0) << "no split made the held-out ranking worse in 20 seeds";
  EXPECT_NE(refusal.find("held-out Spearman rho got worse"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("--force"), std::string::npos) << refusal;
  EXPECT_FALSE(fs::exists(out)) << "a refused model must not be written";
  // --force writes it anyway, a valid device that loads.
  const auto forced =
      run_hwnas("hw calibrate --device rpi4_a72 --holdout 0.4 --force --seed " +
                std::to_string(refused_seed) + " -m " + csv.string() + " --out " + out.string());
  ASSERT_EQ(forced.exit_code, 0) << forced.output;
  ASSERT_TRUE(fs::exists(out));
  const auto shown = run_hwnas("hw show " + out.string());
  EXPECT_EQ(shown.exit_code, 0) << shown.output;
}

TEST(HwCalibrateCli, RowsBelowMinMsAreDroppedAndCounted) {
  TempDir d("calib_min_ms");
  const fs::path csv = d.path / "m.csv", out = d.path / "tuned.json";
  std::mt19937_64 rng(3);
  std::ofstream f(csv);
  f << "architecture,latency_ms\n";
  for (int i = 0; i < 30; ++i)
    f << "\"" << random_nb201(rng) << "\"," << (i < 5 ? 1e-4 : 2.0 + i * 0.1) << "\n";
  f.close();
  const auto r = run_hwnas("hw calibrate --device rpi4_a72 --force --min-ms 0.01 -m " +
                           csv.string() + " --out " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto tuned = nlohmann::json::parse(std::ifstream(out));
  EXPECT_EQ(tuned.at("calibration_report").at("dropped_rows"), 5) << tuned.dump();
  // With every row under the floor, one error says how many rows were usable.
  const auto none = run_hwnas("hw calibrate --device rpi4_a72 --min-ms 100 -m " + csv.string() +
                              " --out " + out.string() + ".2");
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.output.find("calibration needs at least 4 measured rows at or above 100"),
            std::string::npos)
      << none.output;
  EXPECT_NE(none.output.find("(got 0 of 30)"), std::string::npos) << none.output;
}
