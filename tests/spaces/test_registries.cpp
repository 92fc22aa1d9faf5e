// The space-type and block-kind registries: built-ins listed, the standard unknown-name
// message, and each space type's documented fields agreeing with what its factory accepts
// (the same set of keys, required fields really required, optional ones really optional).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "spaces/catalogue.hpp"
#include "spaces/space.hpp"

using namespace hwnas;
using namespace hwnas::spaces;
using nlohmann::json;

namespace {

json example(const std::string& name) {
  std::ifstream in(std::string(HWNAS_SOURCE_DIR) + "/examples/spaces/" + name + ".json");
  return json::parse(in);
}

// One valid definition per space type.
json example_of(const std::string& type) {
  if (type == "macro") return example("cnn");
  if (type == "cell") return example("darts_cell");
  if (type == "union") return example("spiking_vs_classic");
  return example("nb201");
}

std::string error_of(const json& def) {
  try {
    (void)make_space(def);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(SpaceTypes, ListsTheBuiltins) {
  const auto& types = space_types();
  EXPECT_EQ(types.family(), "space type");
  EXPECT_EQ(types.names(), (std::vector<std::string>{"cell", "macro", "nb201", "union"}));
  for (const auto& [name, t] : types.entries()) {
    EXPECT_FALSE(t.description.empty()) << name;
    EXPECT_TRUE(t.make) << name;
    for (const auto& p : t.params) {
      EXPECT_FALSE(p.description.empty()) << name << "." << p.name;
      if (!p.default_value.is_null()) {
        EXPECT_EQ(p.check(p.default_value), "") << name << "." << p.name;
      }
    }
    EXPECT_EQ(make_space(example_of(name))->type(), name);
  }
  Registry<SpaceType> again("space type");
  register_builtin_space_types(again);
  EXPECT_THROW(register_builtin_space_types(again), std::logic_error);
}

TEST(SpaceTypes, UnknownOrMissingTypeGivesTheStandardMessage) {
  json d = example("nb201");
  d["type"] = "grid";
  EXPECT_EQ(error_of(d),
            "space.type: unknown space type 'grid' (known: cell, macro, nb201, union)");
  d.erase("type");
  EXPECT_EQ(error_of(d), "space.type: missing (known: cell, macro, nb201, union)");
}

TEST(SpaceTypes, DocumentedFieldsAreTheAcceptedFields) {
  for (const auto& [name, t] : space_types().entries()) {
    // The factory lists the keys it allows when it meets an unknown one.
    json d = example_of(name);
    d["zzz"] = 1;
    const std::string e = error_of(d);
    const std::string marker = "space.zzz: unknown field (allowed: ";
    ASSERT_EQ(e.rfind(marker, 0), 0u) << e;
    std::string allowed = e.substr(marker.size(), e.size() - marker.size() - 1);
    std::vector<std::string> documented{"type"};
    for (const auto& p : t.params) documented.push_back(p.name);
    std::sort(documented.begin(), documented.end());
    std::string doc_list;
    for (const auto& n : documented) doc_list += (doc_list.empty() ? "" : ", ") + n;
    EXPECT_EQ(allowed, doc_list) << name;

    // Required fields are required; the others may be left out.
    for (const auto& p : t.params) {
      json without = example_of(name);
      without.erase(p.name);
      const std::string err = error_of(without);
      if (p.default_value.is_null()) {
        EXPECT_NE(err.find("space." + p.name), std::string::npos)
            << name << "." << p.name << ": " << err;
      } else {
        EXPECT_EQ(err, "") << name << "." << p.name;
      }
    }
  }
}

TEST(BlockRegistry, CatalogueIsTheBlockKindRegistry) {
  const Catalogue& cat = catalogue();
  EXPECT_EQ(cat.registry().family(), "block kind");
  EXPECT_EQ(cat.registry().names(), cat.names());
  EXPECT_EQ(cat.registry().size(), cat.names().size());
  for (const char* k : {"conv", "dense", "attention", "nb201_reduction", "nor_conv_3x3", "none"})
    EXPECT_NE(cat.find(k), nullptr) << k;
  try {
    cat.at("teleporter");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()),
              "unknown block kind 'teleporter' (known: " + cat.known_list() + ")");
  }
}

}  // namespace
