#include <gtest/gtest.h>

#include <optional>

#include "common/params.hpp"
#include "common/registry.hpp"

namespace hwnas {
namespace {

std::vector<ParamSpec> specs() {
  return {ParamSpec::int_range("population", 2, 1000, 50, "aging population"),
          ParamSpec::float_range("mutation_rate", 0, 1, 0.5, "per-gene mutation probability"),
          ParamSpec::choice("mode", {"fast", "slow"}, "fast", "speed"),
          ParamSpec::string("label", "x", "free text"),
          ParamSpec::any_json("extra", nlohmann::json::object(), "nested options"),
          ParamSpec{"required_k", ParamType::Int, {}, 1, 8, nullptr, "must be given"}};
}

std::string error_of(const nlohmann::json& given) {
  try {
    resolve_params(specs(), given, "strategy");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Params, ResolveFillsDefaultsAndKeepsType) {
  auto r =
      resolve_params(specs(), {{"type", "x"}, {"required_k", 3}, {"mode", "slow"}}, "strategy");
  EXPECT_EQ(r["population"], 50);
  EXPECT_EQ(r["mode"], "slow");
  EXPECT_EQ(r["required_k"], 3);
  EXPECT_EQ(r["type"], "x");
  EXPECT_TRUE(r["extra"].is_object());
}

TEST(Params, EachBadInputNamesFieldAndDomain) {
  EXPECT_EQ(error_of({{"required_k", 3}, {"populaton", 5}}),
            "strategy.populaton: unknown parameter (known: population, mutation_rate, mode, "
            "label, extra, required_k)");
  EXPECT_EQ(error_of({{"required_k", 3}, {"population", 1}}),
            "strategy.population: 1 not in int [2, 1000]");
  EXPECT_EQ(error_of({{"required_k", 3}, {"population", 2.5}}),
            "strategy.population: 2.5 is not an integer; allowed int [2, 1000]");
  EXPECT_EQ(error_of({{"required_k", 3}, {"mode", "medium"}}),
            "strategy.mode: \"medium\" not in {fast,slow}");
  EXPECT_EQ(error_of({{"required_k", 3}, {"label", 4}}), "strategy.label: 4 is not a string");
  EXPECT_EQ(error_of(nlohmann::json::object()),
            "strategy.required_k: missing (must be given; int [1, 8])");
  EXPECT_EQ(error_of(nlohmann::json::array()), "strategy: must be a JSON object, got []");
}

TEST(Params, DescribeListsEveryParameter) {
  std::string d = describe_params(specs(), "strategy.");
  for (const auto& p : specs()) EXPECT_NE(d.find("strategy." + p.name), std::string::npos);
  EXPECT_NE(d.find("(required)"), std::string::npos);
}

struct Thing {
  std::string name, description;
  std::vector<ParamSpec> params;
  int value = 0;
};

TEST(Registry, FindAtNamesAndErrors) {
  Registry<Thing> r("widget");
  r.add({"b", "second", {}, 2});
  r.add({"a", "first", {}, 1});
  EXPECT_EQ(r.at("a").value, 1);
  EXPECT_EQ(r.find("zz"), nullptr);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"a", "b"}));
  try {
    r.at("c");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "unknown widget 'c' (known: a, b)");
  }
  EXPECT_THROW(r.add({"a", "dup", {}, 3}), std::logic_error);
  EXPECT_THROW(r.add({"", "anon", {}, 3}), std::logic_error);
}

// Lookups go through a hashed index into the registry's own entries: a copy must index its own
// (the original may be gone), a moved-to registry keeps working, and a copy-assigned one too.
TEST(Registry, CopiesAndMovesLookUpTheirOwnEntries) {
  auto made = [] {
    Registry<Thing> r("widget");
    r.add({"a", "first", {}, 1});
    r.add({"b", "second", {}, 2});
    return r;
  };
  std::optional<Registry<Thing>> original(made());
  const Registry<Thing> copy = *original;
  Registry<Thing> assigned("other");
  assigned = *original;
  original.reset();
  for (const Registry<Thing>* r : {&copy, static_cast<const Registry<Thing>*>(&assigned)}) {
    ASSERT_NE(r->find("b"), nullptr);
    EXPECT_EQ(r->find("b")->value, 2);
    EXPECT_EQ(&r->at("a"), &r->entries().at("a"));
  }
  Registry<Thing> moved = std::move(assigned);
  EXPECT_EQ(moved.at("a").value, 1);
  EXPECT_EQ(&moved.at("a"), &moved.entries().at("a"));
}

}  // namespace
}  // namespace hwnas
