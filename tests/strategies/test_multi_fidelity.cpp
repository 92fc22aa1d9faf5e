// successive_halving (ASHA) and hyperband (strategies/multi_fidelity.cpp): the rung ladder and
// Hyperband's bracket proportions, which candidate is promoted and with which checkpoint and
// seed, failed candidates never promoted, the proposer told at the first rung, and bad
// parameters refused.  Determinism and save/restore are covered for every strategy by
// EveryStrategy (test_strategies.cpp).
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "nb201_bench.hpp"
#include "strategies/registry.hpp"

using namespace hwnas;
using namespace hwnas::strategies;
using nlohmann::json;

namespace {

StrategyContext one_objective(std::uint64_t seed = 1) {
  StrategyContext ctx;
  ctx.seed = seed;
  ctx.objectives = {{"val_accuracy", true}};
  return ctx;
}

Result scored(const Proposal& p, double fitness, bool ok = true) {
  Result r;
  r.id = p.id;
  r.ok = ok;
  r.objectives = {ok ? fitness : std::numeric_limits<double>::quiet_NaN()};
  if (ok) r.fitness = fitness;
  r.fidelity = p.fidelity;
  return r;
}

std::unique_ptr<Strategy> make(const json& c) {
  return make_strategy(c, test::nb201_space(), one_objective());
}

void expect_error(const json& c, const std::string& msg) {
  try {
    make(c);
    ADD_FAILURE() << "accepted " << c.dump();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(MultiFidelity, HyperbandBracketsInHyperbandProportions) {
  // eta 3 over 1..9 epochs: rungs 1, 3, 9; brackets start at 1 (9 new candidates per cycle),
  // 3 (5) and 9 (3): Hyperband's n_s = ceil(3 / (s+1) * 3^s) for s = 2, 1, 0.
  auto s = make({{"type", "hyperband"}, {"min_epochs", 1}, {"max_epochs", 9}, {"eta", 3}});
  const auto ps = s->ask(17);
  std::map<int, int> by_epochs;
  for (const auto& p : ps) {
    ++by_epochs[p.fidelity.epochs];
    EXPECT_EQ(p.fidelity.schedule_epochs, 9) << "every rung trains under the top rung's schedule";
    EXPECT_EQ(p.fidelity.continue_from, -1);
    EXPECT_EQ(p.fidelity.seed_of, -1);
    EXPECT_EQ(p.fidelity.keep_checkpoint, p.fidelity.epochs < 9);
  }
  EXPECT_EQ(by_epochs, (std::map<int, int>{{1, 9}, {3, 5}, {9, 3}}));
  // The cycle starts again with the most aggressive bracket.
  EXPECT_EQ(s->ask(1).front().fidelity.epochs, 1);
}

TEST(MultiFidelity, LadderRoundsDownFromTheTopAndStopsAtMinEpochs) {
  auto s = make({{"type", "hyperband"}, {"min_epochs", 2}, {"max_epochs", 20}, {"eta", 3}});
  std::map<int, int> by_epochs;
  for (const auto& p : s->ask(40)) ++by_epochs[p.fidelity.epochs];
  // 20, 20/3 -> 7, 20/9 -> 2: three rungs.
  EXPECT_EQ(by_epochs.size(), 3u);
  EXPECT_TRUE(by_epochs.count(2) && by_epochs.count(7) && by_epochs.count(20));
}

TEST(MultiFidelity, AshaPromotesTheTopThirdFromItsCheckpointWithItsSeed) {
  auto s = make({{"type", "successive_halving"}, {"min_epochs", 1}, {"max_epochs", 9}, {"eta", 3}});
  auto first = s->ask(3);
  for (const auto& p : first) EXPECT_EQ(p.fidelity.epochs, 1);
  s->tell(scored(first[0], 0.1));
  s->tell(scored(first[1], 0.5));
  s->tell(scored(first[2], 0.3));

  // Three results at rung 0: the best (id 1) continues to 3 epochs from its own checkpoint.
  const Proposal up = s->ask(1).front();
  EXPECT_EQ(up.fidelity.epochs, 3);
  EXPECT_EQ(up.fidelity.continue_from, 1);
  EXPECT_EQ(up.fidelity.seed_of, 1);
  EXPECT_TRUE(up.fidelity.keep_checkpoint);
  EXPECT_EQ(up.genome.canonical_json(), first[1].genome.canonical_json());

  // Nothing else is promotable (top 1 of 3 already went): a new candidate at rung 0.
  const Proposal fresh = s->ask(1).front();
  EXPECT_EQ(fresh.fidelity.epochs, 1);
  EXPECT_EQ(fresh.fidelity.continue_from, -1);

  // Rung 1 collects three results (the first promoted scores best); then the highest rung is
  // served first: the best of rung 1 goes to the top rung, which saves no checkpoint.
  s->tell(scored(up, 0.9));
  s->tell(scored(fresh, 0.2));
  int rung1_told = 1;
  while (rung1_told < 3) {
    const Proposal p = s->ask(1).front();
    ASSERT_NE(p.fidelity.epochs, 9);
    if (p.fidelity.epochs == 3) {
      ++rung1_told;
      s->tell(scored(p, 0.6));
    } else {
      s->tell(scored(p, 0.01 * rung1_told));
    }
  }
  const Proposal top = s->ask(1).front();
  EXPECT_EQ(top.fidelity.epochs, 9);
  EXPECT_EQ(top.fidelity.continue_from, static_cast<std::int64_t>(up.id));
  EXPECT_EQ(top.fidelity.seed_of, 1);
  EXPECT_FALSE(top.fidelity.keep_checkpoint);
}

TEST(MultiFidelity, TrainSubsetRungsGrowTheSamplesAndPromotionsTrainAgain) {
  auto s = make({{"type", "successive_halving"},
                 {"resource", "train_subset"},
                 {"min_train_subset", 1000},
                 {"max_train_subset", 9000},
                 {"eta", 3}});
  auto first = s->ask(3);
  for (const auto& p : first) {
    EXPECT_EQ(p.fidelity.train_subset, 1000);
    EXPECT_EQ(p.fidelity.epochs, 0) << "the run's epochs at every rung";
    EXPECT_EQ(p.fidelity.schedule_epochs, 0);
    EXPECT_FALSE(p.fidelity.keep_checkpoint) << "weights from a smaller subset are not continued";
  }
  s->tell(scored(first[0], 0.1));
  s->tell(scored(first[1], 0.5));
  s->tell(scored(first[2], 0.3));
  const Proposal up = s->ask(1).front();
  EXPECT_EQ(up.fidelity.train_subset, 3000);
  EXPECT_EQ(up.fidelity.continue_from, -1) << "a promotion trains again on the larger subset";
  EXPECT_EQ(up.fidelity.seed_of, 1) << "with the candidate's first seed";
  EXPECT_EQ(up.genome.canonical_json(), first[1].genome.canonical_json());

  // Hyperband over samples: brackets at 1000, 3000 and 9000 samples in Hyperband's shares.
  auto h = make({{"type", "hyperband"},
                 {"resource", "train_subset"},
                 {"min_train_subset", 1000},
                 {"max_train_subset", 9000}});
  std::map<int, int> by_subset;
  for (const auto& p : h->ask(17)) ++by_subset[p.fidelity.train_subset];
  EXPECT_EQ(by_subset, (std::map<int, int>{{1000, 9}, {3000, 5}, {9000, 3}}));
}

TEST(MultiFidelity, FailedAndInfeasibleCandidatesAreNeverPromoted) {
  auto s = make({{"type", "successive_halving"}, {"min_epochs", 1}, {"max_epochs", 4}, {"eta", 2}});
  for (const auto& p : s->ask(6)) s->tell(scored(p, 0, /*ok=*/false));
  for (const auto& p : s->ask(4)) {
    EXPECT_EQ(p.fidelity.epochs, 1);
    Result r = scored(p, 0.9);
    r.violation = 0.5;  // violates a constraint: more epochs will not fix a latency bound
    s->tell(r);
  }
  for (const auto& p : s->ask(4)) EXPECT_EQ(p.fidelity.epochs, 1);
}

TEST(MultiFidelity, ParetoPromotionSpreadsAlongTheFrontInsteadOfTakingTheMostAccurate) {
  // Six first-rung results (accuracy max, latency min), eta 3: two are promoted.  On the
  // non-dominated front {a, b, c, f}, a and c are the extremes (infinite crowding distance);
  // "fitness" (accuracy) promotes a and b, the two most accurate and slowest.
  StrategyContext ctx = one_objective();
  ctx.objectives.push_back({"latency_ms", false});
  const std::vector<std::pair<double, double>> scores = {{0.90, 10.0}, {0.89, 9.9}, {0.50, 1.0},
                                                         {0.85, 12.0}, {0.40, 2.0}, {0.70, 5.0}};
  auto promoted_of = [&](const std::string& rule) {
    auto s = make_strategy({{"type", "successive_halving"},
                            {"min_epochs", 1},
                            {"max_epochs", 9},
                            {"eta", 3},
                            {"promotion", rule}},
                           test::nb201_space(), ctx);
    const auto first = s->ask(6);
    std::map<std::string, int> index_of;
    for (std::size_t i = 0; i < first.size(); ++i) {
      index_of[first[i].genome.canonical_json()] = static_cast<int>(i);
      Result r = scored(first[i], scores[i].first);
      r.objectives = {scores[i].first, scores[i].second};
      s->tell(r);
    }
    std::set<int> promoted;
    for (const auto& p : s->ask(3))
      if (p.fidelity.epochs == 3) promoted.insert(index_of.at(p.genome.canonical_json()));
    return promoted;
  };
  EXPECT_EQ(promoted_of("pareto"), (std::set<int>{0, 2}));
  EXPECT_EQ(promoted_of("fitness"), (std::set<int>{0, 1}));
}

TEST(MultiFidelity, EvolutionProposerLearnsFromFirstRungResults) {
  StrategyContext ctx = one_objective();
  ctx.objectives.push_back({"latency_ms", false});  // nb201_quick_result's two objectives
  auto s = make_strategy({{"type", "successive_halving"},
                          {"max_epochs", 4},
                          {"eta", 2},
                          {"proposer", {{"type", "regularized_evolution"}, {"population", 4}}}},
                         test::nb201_space(), ctx);
  for (int i = 0; i < 40; ++i) {
    const Proposal p = s->ask(1).front();
    s->tell(test::nb201_quick_result(p));
  }
  const json state = s->save_state();
  const json& inner = state.at("state").at("proposers").at(0);  // one bracket
  EXPECT_EQ(inner.at("strategy"), "regularized_evolution");
  EXPECT_EQ(inner.at("state").at("members").size(), 4u) << "the proposer's population filled";
  EXPECT_TRUE(inner.at("pending").empty()) << "every candidate's first rung was told";
}

TEST(MultiFidelity, BadParametersNameTheField) {
  expect_error({{"type", "hyperband"}, {"min_epochs", 5}, {"max_epochs", 2}},
               "strategy.max_epochs: 2 is below strategy.min_epochs (5)");
  expect_error({{"type", "hyperband"}, {"proposer", {{"type", "hyperband"}}}},
               "strategy.proposer: 'hyperband' cannot propose");
  expect_error({{"type", "successive_halving"}, {"proposer", {{"type", "anneal"}}}},
               "strategy.proposer: strategy.type: unknown strategy 'anneal'");
  expect_error({{"type", "successive_halving"},
                {"proposer", {{"type", "regularized_evolution"}, {"population", 1}}}},
               "strategy.proposer: strategy.population");
  expect_error({{"type", "successive_halving"}, {"eta", 1}}, "strategy.eta");
  expect_error({{"type", "successive_halving"}, {"promotion", "nsga"}}, "strategy.promotion");
  // A one-shot proposer would train its supernet while other brackets' candidates train (under
  // mpirun its collectives would wait for busy workers).
  expect_error({{"type", "hyperband"}, {"proposer", {{"type", "spos"}}}},
               "strategy.proposer: 'spos' cannot propose");
  expect_error({{"type", "successive_halving"}, {"proposer", {{"type", "darts"}}}},
               "strategy.proposer: 'darts' cannot propose");
  expect_error({{"type", "hyperband"}, {"resource", "train_subset"}},
               "strategy.max_train_subset: required with resource \"train_subset\"");
  expect_error({{"type", "successive_halving"},
                {"resource", "train_subset"},
                {"min_train_subset", 5000},
                {"max_train_subset", 100}},
               "strategy.max_train_subset: 100 is below strategy.min_train_subset (5000)");
  expect_error({{"type", "hyperband"}, {"resource", "samples"}}, "strategy.resource");
}
