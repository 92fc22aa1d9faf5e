// The strategy registry: built-ins listed, the standard unknown-name message, each strategy's
// parameters validated from its ParamSpecs (one test per bad parameter), defaults filled, and
// the documentation generated from the same declarations.
#include <gtest/gtest.h>

#include <set>

#include "spaces/space.hpp"
#include "strategies/registry.hpp"

using namespace hwnas;
using namespace hwnas::strategies;
using nlohmann::json;

namespace {

const spaces::Space& mlp_space() {
  static const auto s =
      spaces::load_space(std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/mlp.json");
  return *s;
}

std::string error_of(const json& config) {
  try {
    (void)make_strategy(config, mlp_space());
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(StrategyRegistry, ListsTheBuiltins) {
  const auto& reg = strategy_registry();
  EXPECT_EQ(reg.family(), "strategy");
  EXPECT_EQ(reg.names(), (std::vector<std::string>{"bananas", "darts", "hyperband", "local_search",
                                                   "nsga2", "random", "regularized_evolution",
                                                   "reinforce", "spos", "successive_halving"}));
  EXPECT_EQ(strategy_names(), reg.names());
  for (const auto& [name, e] : reg.entries()) {
    EXPECT_FALSE(e.description.empty()) << name;
    EXPECT_TRUE(e.make) << name;
    for (const auto& p : e.params) {
      EXPECT_FALSE(p.description.empty()) << name << "." << p.name;
      EXPECT_EQ(p.check(p.default_value), "") << name << "." << p.name;
    }
  }
  // Each built-in builds with all defaults and names itself as registered.
  // darts searches cell spaces, spos macro spaces (each refuses the other kind: tests/oneshot).
  const auto nb201 = spaces::make_space({{"type", "nb201"}});
  for (const auto& n : reg.names())
    EXPECT_EQ(make_strategy({{"type", n}}, n == "darts" ? *nb201 : mlp_space())->name(), n);
}

TEST(StrategyRegistry, RegisteringTwiceIsRejected) {
  Registry<StrategyEntry> r("strategy");
  register_builtin_strategies(r);
  EXPECT_THROW(register_builtin_strategies(r), std::logic_error);
}

TEST(StrategyRegistry, UnknownOrMissingTypeGivesTheStandardMessage) {
  EXPECT_EQ(
      error_of({{"type", "telepathy"}}),
      "strategy.type: unknown strategy 'telepathy' (known: bananas, darts, hyperband, "
      "local_search, nsga2, random, regularized_evolution, reinforce, spos, successive_halving)");
  EXPECT_EQ(error_of({{"population", 4}}),
            "strategy.type: missing (known: bananas, darts, hyperband, local_search, nsga2, "
            "random, regularized_evolution, reinforce, spos, successive_halving)");
  EXPECT_EQ(error_of({{"type", 3}}),
            "strategy.type: missing (known: bananas, darts, hyperband, local_search, nsga2, "
            "random, regularized_evolution, reinforce, spos, successive_halving)");
  EXPECT_EQ(
      error_of("random"),
      "strategy: must be an object {\"type\": ..., params} (known: bananas, darts, hyperband, "
      "local_search, nsga2, random, regularized_evolution, reinforce, spos, successive_halving)");
}

TEST(StrategyParams, RandomTakesNone) {
  EXPECT_EQ(error_of({{"type", "random"}, {"population", 4}}),
            "strategy.population: unknown parameter (known: none)");
}

TEST(StrategyParams, RegularizedEvolutionEachBadParameter) {
  const json base = {{"type", "regularized_evolution"}};
  auto with = [&](const char* key, json v) {
    json j = base;
    j[key] = std::move(v);
    return error_of(j);
  };
  EXPECT_EQ(with("populaton", 8),
            "strategy.populaton: unknown parameter (known: population, sample_size)");
  EXPECT_EQ(with("population", 1), "strategy.population: 1 not in int [2, 100000]");
  EXPECT_EQ(with("population", 100001), "strategy.population: 100001 not in int [2, 100000]");
  EXPECT_EQ(with("population", 8.5),
            "strategy.population: 8.5 is not an integer; allowed int [2, 100000]");
  EXPECT_EQ(with("population", "big"),
            "strategy.population: \"big\" is not an integer; allowed int [2, 100000]");
  EXPECT_EQ(with("sample_size", 0), "strategy.sample_size: 0 not in int [1, 100000]");
  EXPECT_EQ(with("sample_size", 17), "strategy.sample_size: 17 exceeds strategy.population (16)");
  json ok = base;
  ok["population"] = 4;
  ok["sample_size"] = 4;
  EXPECT_EQ(error_of(ok), "");
}

TEST(StrategyParams, ResolveFillsDefaultsAndKeepsType) {
  json r = resolve_strategy_config({{"type", "regularized_evolution"}, {"population", 8}});
  EXPECT_EQ(r, (json{{"type", "regularized_evolution"}, {"population", 8}, {"sample_size", 4}}));
  EXPECT_EQ(resolve_strategy_config({{"type", "random"}}), (json{{"type", "random"}}));
  EXPECT_THROW(resolve_strategy_config({{"type", "regularized_evolution"}, {"population", 1}}),
               std::invalid_argument);
}

TEST(StrategyParams, ResolvedParametersDriveTheStrategy) {
  // After two tells, population 2 is full, so the next proposal is a mutation; with the default
  // population 16 it is still a uniform sample (the same draw as space.sample on that seed).
  auto after_two_tells = [](const json& config) {
    StrategyContext ctx;
    ctx.seed = 11;
    auto s = make_strategy(config, mlp_space(), ctx);
    for (int i = 0; i < 2; ++i) {
      Result r;
      r.id = s->ask(1).front().id;
      r.objectives = {static_cast<double>(i)};
      r.fitness = i;
      s->tell(r);
    }
    return s->ask(1).front().genome;
  };
  // The strategy's own RNG, seeded 11, has drawn two samples before the third.
  spaces::Rng b(11);
  (void)mlp_space().sample(b);
  (void)mlp_space().sample(b);
  const spaces::Genome sampled = mlp_space().sample(b);
  EXPECT_EQ(after_two_tells({{"type", "regularized_evolution"}}).hash(), sampled.hash());
  const spaces::Genome evolved =
      after_two_tells({{"type", "regularized_evolution"}, {"population", 2}, {"sample_size", 2}});
  EXPECT_TRUE(mlp_space().contains(evolved));
  EXPECT_NE(evolved.hash(), sampled.hash());
}

TEST(StrategyDocs, EveryParameterIsDocumented) {
  const std::string params = describe_strategy_params();
  const std::string listing = describe_strategies();
  const json js = strategies_json();
  ASSERT_EQ(js.size(), strategy_registry().size());
  for (const auto& [name, e] : strategy_registry().entries()) {
    EXPECT_NE(params.find("strategy.type = \"" + name + "\""), std::string::npos) << params;
    EXPECT_NE(listing.find(name + "  " + e.description), std::string::npos) << listing;
    for (const auto& p : e.params) {
      EXPECT_NE(params.find("strategy." + p.name), std::string::npos) << params;
      EXPECT_NE(params.find(p.domain_str()), std::string::npos) << params;
      EXPECT_NE(listing.find(p.description), std::string::npos) << listing;
    }
  }
  EXPECT_NE(params.find("(no parameters)"), std::string::npos) << params;  // random
  EXPECT_EQ(js[6]["name"], "regularized_evolution");
  EXPECT_EQ(js[6]["params"][0]["name"], "population");
  EXPECT_EQ(js[6]["params"][0]["default"], 16);
  EXPECT_EQ(js[6]["params"][0]["range"], (json{2, 100000}));
}

}  // namespace
