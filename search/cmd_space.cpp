#include "search/cmd_space.hpp"

#include <iostream>
#include <memory>

#include "search/cli_checks.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/space.hpp"

namespace hwnas::search {

namespace {

void print_blocks(bool as_json) {
  const auto& cat = spaces::catalogue();
  if (as_json) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& n : cat.names()) all.push_back(cat.at(n).to_json());
    std::cout << all.dump(2) << "\n";
    return;
  }
  for (const auto& n : cat.names()) {
    const auto& k = cat.at(n);
    std::string accepts;
    for (auto a : k.accepts)
      accepts += (accepts.empty() ? "" : "|") + std::string(spaces::data_kind_name(a));
    std::string inputs = k.min_inputs == k.max_inputs
                             ? std::to_string(k.min_inputs)
                             : std::to_string(k.min_inputs) + ".." + std::to_string(k.max_inputs);
    std::cout << n << "  (" << accepts << ", inputs " << inputs << ")  " << k.description << "\n";
    for (const auto& p : k.params)
      std::cout << "    " << p.name << ": " << p.domain_str() << " = " << p.default_value.dump()
                << "  " << p.description << "\n";
  }
}

void print_space_types(bool as_json) {
  const auto& types = spaces::space_types();
  if (as_json) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& [name, t] : types.entries()) {
      nlohmann::json ps = nlohmann::json::array();
      for (const auto& p : t.params) ps.push_back(p.to_json());
      all.push_back({{"name", name}, {"description", t.description}, {"params", ps}});
    }
    std::cout << all.dump(2) << "\n";
    return;
  }
  for (const auto& [name, t] : types.entries())
    std::cout << name << "  " << t.description << "\n" << describe_params(t.params, "space.");
}

}  // namespace

void add_space_commands(CLI::App& app) {
  auto* space = app.add_subcommand("space", "inspect block kinds and search spaces");
  space->require_subcommand(1);

  auto* blocks =
      space->add_subcommand("blocks", "list block kinds with their hyperparameter domains");
  auto as_json = std::make_shared<bool>(false);
  blocks->add_flag("--json", *as_json, "print the catalogue as JSON");
  blocks->callback([as_json] { print_blocks(*as_json); });

  auto* types =
      space->add_subcommand("types", "list space types with their definition fields and defaults");
  auto types_json = std::make_shared<bool>(false);
  types->add_flag("--json", *types_json, "print the space types as JSON");
  types->callback([types_json] { print_space_types(*types_json); });

  auto* sample =
      space->add_subcommand("sample", "print N sampled genomes of a space as JSON lines");
  struct Opts {
    std::string file;
    int n = 5;
    std::uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  sample->add_option("FILE", o->file, "space definition (JSON)")->required();
  sample->add_option("--n", o->n, "number of genomes")->check(CLI::Range(1, 1000000));
  sample->add_option("--seed", o->seed, "random seed")->check(seed_range());
  sample->callback([o] {
    auto s = spaces::load_space(o->file);
    spaces::Rng rng(o->seed);
    for (int i = 0; i < o->n; ++i) {
      spaces::Genome g = s->sample(rng);
      nlohmann::json line{{"hash", g.hash()}, {"arch", s->describe(g)}, {"genome", g.to_json()}};
      std::cout << line.dump() << "\n";
    }
  });
}

}  // namespace hwnas::search
