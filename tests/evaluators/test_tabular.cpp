// Tabular evaluator on a small fixture CSV of NAS-Bench-201 rows.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "evaluators/tabular.hpp"

using namespace hwnas;
using nlohmann::json;

namespace {
std::string fixture() { return std::string(HWNAS_TEST_DIR) + "/fixtures/nb201_small.csv"; }

std::shared_ptr<const spaces::Space> nb201() { return spaces::make_space({{"type", "nb201"}}); }

eval::TabularConfig config() {
  return eval::TabularConfig::from_json(
      {{"file", fixture()},
       {"metrics", {{"val_accuracy", "valid_acc_{epochs}"}, {"test_accuracy", "test_acc_200"}}}});
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(Tabular, LooksUpConfiguredColumnsByArchString) {
  auto space = nb201();
  eval::TabularEvaluator ev(space, config());
  EXPECT_EQ(ev.rows(), 3u);
  auto g = space->parse(
      "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_"
      "connect~2|");
  eval::Fidelity f;
  f.epochs = 200;
  auto r = ev.evaluate(g, f, 0);
  EXPECT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r.metrics.at("val_accuracy"), 91.2);
  EXPECT_DOUBLE_EQ(r.metrics.at("test_accuracy"), 93.76);
  EXPECT_GT(r.metrics.at("params"), 0);
  EXPECT_FALSE(r.workload.nodes.empty());
  f.epochs = 12;
  EXPECT_DOUBLE_EQ(ev.evaluate(g, f, 0).metrics.at("val_accuracy"), 86.5);
  // A genome without meta is described from its structure.
  auto bare = space->parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|");
  bare.meta() = json::object();
  f.epochs = 200;
  EXPECT_DOUBLE_EQ(ev.evaluate(bare, f, 0).metrics.at("test_accuracy"), 10.0);
}

TEST(Tabular, MissingArchitectureIsAClearError) {
  auto space = nb201();
  eval::TabularEvaluator ev(space, config());
  auto g = space->parse("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|");
  eval::Fidelity f;
  f.epochs = 200;
  try {
    ev.evaluate(g, f, 0);
    FAIL();
  } catch (const eval::TabularMissError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "architecture '|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|' not in"),
              std::string::npos)
        << e.what();
  }
  f.epochs = 50;
  auto known = space->parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|");
  EXPECT_NE(error_of([&] { ev.evaluate(known, f, 0); }).find("column 'valid_acc_50'"),
            std::string::npos);
}

TEST(Tabular, ConfigAndFileErrors) {
  auto space = nb201();
  EXPECT_NE(error_of([&] {
              eval::TabularConfig::from_json({{"file", fixture()}});
            }).find("tabular.metrics"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              eval::TabularConfig::from_json({{"metrics", {{"a", "b"}}}});
            }).find("tabular.file: missing"),
            std::string::npos);
  auto c = config();
  c.metrics["val_accuracy"] = "valid_accuracy";
  EXPECT_NE(error_of([&] {
              eval::TabularEvaluator(space, c);
            }).find("tabular.metrics.val_accuracy: column 'valid_accuracy' not in"),
            std::string::npos);
  c = config();
  c.key_column = "architecture";
  EXPECT_NE(error_of([&] {
              eval::TabularEvaluator(space, c);
            }).find("tabular.key: column 'architecture'"),
            std::string::npos);
  c = config();
  c.file = "/nonexistent.csv";
  EXPECT_NE(error_of([&] { eval::TabularEvaluator(space, c); }).find("cannot be opened"),
            std::string::npos);
  c = config();
  c.metrics = {{"note", "note"}};
  EXPECT_NE(error_of([&] {
              eval::TabularEvaluator(space, c);
            }).find("column 'note' = 'best-ish, quoted' is not a finite number"),
            std::string::npos);
}

// Cells that parse as numbers but are not finite, in a fixed or an {epochs} column, are refused
// at load naming the file, line and column; a template no column matches is named too.
TEST(Tabular, NonFiniteCellsAndUnmatchedTemplatesAreRefusedAtLoad) {
  auto space = nb201();
  const std::string dir = ::testing::TempDir();
  for (const auto& [cell, column] :
       std::vector<std::pair<std::string, std::string>>{{"nan", "valid_acc_12"},
                                                        {"inf", "valid_acc_12"},
                                                        {"1e400", "test_acc_200"},
                                                        {"-inf", "valid_acc_200"}}) {
    SCOPED_TRACE(cell);
    std::ifstream in(fixture());
    std::ostringstream text;
    text << in.rdbuf();
    std::string csv = text.str();
    // Line 3 (the all-none row): put the bad cell in the column.
    const std::string row = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10.0,10.0,10.0";
    std::string bad = column == "valid_acc_12"
                          ? "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|," + cell + ",10.0,10.0"
                      : column == "valid_acc_200"
                          ? "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10.0," + cell + ",10.0"
                          : "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,10.0,10.0," + cell;
    csv.replace(csv.find(row), row.size(), bad);
    const std::string path = dir + "/tabular_bad_" + std::to_string(cell.size()) + cell[1] + ".csv";
    std::ofstream(path) << csv;
    auto c = config();
    c.file = path;
    const std::string e = error_of([&] { eval::TabularEvaluator(space, c); });
    EXPECT_NE(e.find(path + ":3: column '" + column + "' = '" + cell + "' is not a finite number"),
              std::string::npos)
        << e;
  }
  auto c = config();
  c.metrics["val_accuracy"] = "valid_accuracy_{epochs}";
  EXPECT_NE(error_of([&] { eval::TabularEvaluator(space, c); })
                .find("tabular.metrics.val_accuracy: no column of " + fixture() +
                      " matches 'valid_accuracy_{epochs}'"),
            std::string::npos);
}
