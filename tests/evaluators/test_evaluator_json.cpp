// Fidelity and EvalResult travel as JSON (MPI messages, the SQLite store): round trips must be
// exact, non-finite metrics must survive, and malformed fields must be named in the error.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "evaluators/evaluator.hpp"

using namespace hwnas;
using namespace hwnas::eval;

namespace {
std::string error_of(const nlohmann::json& j) {
  try {
    EvalResult::from_json(j);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(FidelityJson, RoundTripAndDefaults) {
  Fidelity f;
  f.epochs = 7;
  f.train_subset = 12000;
  f.max_seconds = 42.5;
  Fidelity g = Fidelity::from_json(f.to_json());
  EXPECT_EQ(g.epochs, 7);
  EXPECT_EQ(g.train_subset, 12000);
  EXPECT_DOUBLE_EQ(g.max_seconds, 42.5);
  // Missing fields take the defaults; the JSON survives a text round trip.
  Fidelity d = Fidelity::from_json(nlohmann::json::parse(R"({"epochs": 3})"));
  EXPECT_EQ(d.epochs, 3);
  EXPECT_EQ(d.train_subset, 0);
  EXPECT_EQ(d.max_seconds, 0.0);
  EXPECT_EQ(Fidelity::from_json(nlohmann::json::parse(f.to_json().dump())).train_subset, 12000);
}

TEST(FidelityJson, BadFieldsAreNamed) {
  auto msg = [](const char* text) {
    try {
      Fidelity::from_json(nlohmann::json::parse(text));
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg(R"({"epochs": "three"})").find("epochs"), std::string::npos);
  EXPECT_NE(msg(R"({"epochs": 1.5})").find("epochs"), std::string::npos);
  EXPECT_NE(msg(R"({"train_subset": -1})").find("train_subset"), std::string::npos);
  EXPECT_NE(msg(R"({"max_seconds": -2})").find("max_seconds"), std::string::npos);
  EXPECT_NE(msg(R"([1, 2])").find("object"), std::string::npos);
}

TEST(EvalResultJson, RoundTripKeepsEverything) {
  EvalResult r;
  r.metrics = {{"val_accuracy", 0.9123},
               {"val_loss", 0.25},
               {"params", 20538},
               {"train_seconds", 12.5},
               {"samples_per_s", 4321.0},
               {"diverged_loss", std::numeric_limits<double>::quiet_NaN()},
               {"big", std::numeric_limits<double>::infinity()}};
  r.loss_curve = {2.3, 1.1, 0.7, std::numeric_limits<double>::quiet_NaN()};
  hw::NodeWorkload n;
  n.name = "n1:conv";
  n.block_kind = "conv";
  n.category = hw::OpCategory::Conv;
  n.macs = 112896;
  n.params = 144;
  r.workload.nodes.push_back(n);
  r.workload.input_bytes = 3136;
  r.workload.measured["host_latency_ms"] = 0.8;
  r.wall_seconds = 13.25;
  r.error = "";

  const std::string text = r.to_json().dump();  // must be valid JSON text (no bare NaN)
  EvalResult b = EvalResult::from_json(nlohmann::json::parse(text));
  ASSERT_EQ(b.metrics.size(), r.metrics.size());
  for (const auto& [k, v] : r.metrics) {
    if (std::isnan(v))
      EXPECT_TRUE(std::isnan(b.metrics.at(k))) << k;
    else
      EXPECT_EQ(b.metrics.at(k), v) << k;
  }
  ASSERT_EQ(b.loss_curve.size(), 4u);
  EXPECT_EQ(b.loss_curve[1], 1.1);
  EXPECT_TRUE(std::isnan(b.loss_curve[3]));
  ASSERT_EQ(b.workload.nodes.size(), 1u);
  EXPECT_EQ(b.workload.nodes[0].name, "n1:conv");
  EXPECT_EQ(b.workload.nodes[0].macs, 112896);
  EXPECT_EQ(b.workload.measured.at("host_latency_ms"), 0.8);
  EXPECT_EQ(b.wall_seconds, 13.25);
  EXPECT_TRUE(b.ok());
  // Serialising the copy gives the same text: nothing drifts across hops.
  EXPECT_EQ(b.to_json().dump(), text);
}

TEST(EvalResultJson, ErrorResultsRoundTrip) {
  EvalResult r;
  r.error = "diverged: non-finite training loss at step 12";
  r.wall_seconds = 0.5;
  EvalResult b = EvalResult::from_json(r.to_json());
  EXPECT_FALSE(b.ok());
  EXPECT_EQ(b.error, r.error);
  EXPECT_TRUE(b.metrics.empty());
}

TEST(EvalResultJson, BadFieldsAreNamed) {
  EXPECT_NE(error_of(R"({"metrics": {"val_accuracy": "high"}})"_json).find("metrics.val_accuracy"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"metrics": [1]})"_json).find("metrics"), std::string::npos);
  EXPECT_NE(error_of(R"({"loss_curve": [1, true]})"_json).find("loss_curve[1]"), std::string::npos);
  EXPECT_NE(error_of(R"({"wall_seconds": "soon"})"_json).find("wall_seconds"), std::string::npos);
  EXPECT_NE(error_of(R"({"error": 3})"_json).find("error"), std::string::npos);
  EXPECT_NE(error_of(R"("x")"_json).find("object"), std::string::npos);
}
