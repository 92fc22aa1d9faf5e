// The registries from the command line: `hwnas strategies`, `hwnas config params`,
// `hwnas hw list|families`, `hwnas space types` print every registered entry with the
// parameters it declares; and the config validates and stores strategy parameters through the
// strategy registry.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "cli_util.hpp"
#include "hwmodels/device.hpp"
#include "search/config.hpp"
#include "spaces/space.hpp"
#include "strategies/registry.hpp"

using namespace hwnas;
using nlohmann::json;

namespace {

using hwnas::test::CommandResult;
CommandResult run(const std::string& args) { return hwnas::test::run_hwnas(args); }

json tiny_config() {
  std::ifstream in(std::string(HWNAS_TEST_DIR) + "/fixtures/tiny.json");
  json j = json::parse(in);
  j["space"] = std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json";
  return j;
}

std::string config_error(const json& strategy) {
  json j = tiny_config();
  j["strategy"] = strategy;
  try {
    (void)search::parse_config(j, "");
  } catch (const search::ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(RegistryCli, StrategiesListsEveryStrategyWithItsParameters) {
  auto r = run("strategies");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& [name, e] : strategies::strategy_registry().entries()) {
    EXPECT_NE(r.output.find(name + "  " + e.description), std::string::npos) << r.output;
    for (const auto& p : e.params) {
      EXPECT_NE(r.output.find(p.name), std::string::npos) << r.output;
      EXPECT_NE(r.output.find(p.domain_str()), std::string::npos) << r.output;
      EXPECT_NE(r.output.find(p.description), std::string::npos) << r.output;
    }
  }
  EXPECT_NE(r.output.find("population"), std::string::npos);
  EXPECT_NE(r.output.find("int [2, 100000]"), std::string::npos);

  auto js = run("strategies --json");
  ASSERT_EQ(js.exit_code, 0) << js.output;
  ASSERT_TRUE(json::accept(js.output)) << js.output;
  EXPECT_EQ(json::parse(js.output), strategies::strategies_json());
}

TEST(RegistryCli, ConfigParamsDocumentsStrategyParameters) {
  auto r = run("config params");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("budget.evaluations"), std::string::npos);  // the config table
  EXPECT_NE(r.output.find("strategy.type = \"regularized_evolution\""), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("strategy.population"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("strategy.sample_size"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("strategy.type = \"random\""), std::string::npos) << r.output;
}

TEST(RegistryCli, HwListAndFamiliesShowEveryFamily) {
  auto list = run("hw list");
  ASSERT_EQ(list.exit_code, 0) << list.output;
  auto fam = run("hw families");
  ASSERT_EQ(fam.exit_code, 0) << fam.output;
  for (const auto& [name, f] : hw::device_families().entries()) {
    EXPECT_NE(list.output.find(f.description), std::string::npos) << name << "\n" << list.output;
    EXPECT_NE(fam.output.find(name + "  " + f.description), std::string::npos) << fam.output;
  }
  EXPECT_NE(fam.output.find("power.tdp_w"), std::string::npos) << fam.output;
  EXPECT_NE(fam.output.find("energy_pj.synaptic_op"), std::string::npos) << fam.output;
  auto js = run("hw families --json");
  ASSERT_EQ(js.exit_code, 0) << js.output;
  ASSERT_TRUE(json::accept(js.output)) << js.output;
  EXPECT_EQ(json::parse(js.output).size(), hw::device_families().size());
}

TEST(RegistryCli, SpaceTypesShowsEveryType) {
  auto r = run("space types");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const auto& [name, t] : spaces::space_types().entries()) {
    EXPECT_NE(r.output.find(name + "  " + t.description), std::string::npos) << r.output;
    for (const auto& p : t.params)
      EXPECT_NE(r.output.find("space." + p.name), std::string::npos) << r.output;
  }
  auto js = run("space types --json");
  ASSERT_EQ(js.exit_code, 0) << js.output;
  ASSERT_TRUE(json::accept(js.output)) << js.output;
  EXPECT_EQ(json::parse(js.output).size(), spaces::space_types().names().size());
}

TEST(RegistryCli, MisspeltDeviceFieldIsOneErrorLine) {
  const std::string path = ::testing::TempDir() + "hwnas_cli_misspelt_device.json";
  std::ifstream in(hw::preset_dir() + "/rpi4_a72.json");
  json d = json::parse(in);
  d["mem_bandwidth"] = 1e9;
  std::ofstream(path) << d.dump();
  auto r = run("hw show " + path);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("error: device 'rpi4_a72': unknown field 'mem_bandwidth' (known: "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
  std::remove(path.c_str());
}

TEST(StrategyConfig, EachBadParameterNamesTheField) {
  EXPECT_EQ(config_error({{"type", "regularized_evolution"}, {"population", 1}}),
            "config.strategy.population: 1 not in int [2, 100000]");
  EXPECT_EQ(config_error({{"type", "regularized_evolution"}, {"sample_size", 32}}),
            "config.strategy.sample_size: 32 exceeds strategy.population (16)");
  EXPECT_EQ(config_error({{"type", "random"}, {"sample_size", 2}}),
            "config.strategy.sample_size: unknown parameter (known: none)");
  EXPECT_EQ(
      config_error({{"type", "anneal"}}),
      "config.strategy.type: unknown strategy 'anneal' (known: bananas, darts, hyperband, "
      "local_search, nsga2, random, regularized_evolution, reinforce, spos, successive_halving)");
  // Cross-field checks see the run's objectives: the MnasNet reward needs a latency objective.
  json j = tiny_config();
  j["strategy"] = {{"type", "reinforce"}, {"target", 5.0}};
  j["objectives"] = {"val_accuracy:max", "energy_mj:min"};
  try {
    (void)search::parse_config(j, "");
    ADD_FAILURE() << "a MnasNet target without a latency objective was accepted";
  } catch (const search::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "config.strategy.target: the MnasNet reward needs a latency objective after the "
              "accuracy (objectives: val_accuracy:max, energy_mj:min); add one or set target to "
              "0");
  }
  j["objectives"] = {"val_accuracy:max", "latency_ms:min"};
  EXPECT_NO_THROW(search::parse_config(j, ""));
}

TEST(StrategyConfig, ResolvedConfigStoresEveryStrategyParameter) {
  json j = tiny_config();
  j["strategy"] = {{"type", "regularized_evolution"}, {"population", 6}};
  const auto c = search::parse_config(j, "");
  const json expected = {{"type", "regularized_evolution"}, {"population", 6}, {"sample_size", 4}};
  EXPECT_EQ(c.strategy, expected);
  EXPECT_EQ(c.resolved["strategy"], expected);
}

}  // namespace
