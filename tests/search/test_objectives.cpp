// Objectives that name devices, constraints, and the fronts built from them: parsing and the
// one-line errors for each wrong part, the config checks, fronts that list each architecture
// once and never an infeasible one, proposal ids and hypervolume history in the store, every
// strategy from a config (locally and under mpirun).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "db/store.hpp"
#include "hwmodels/device.hpp"
#include "search/config.hpp"
#include "search/evaluator_factory.hpp"
#include "search/fronts.hpp"
#include "search/search_loop.hpp"
#include "spaces/space.hpp"
#include "spaces/workload_builder.hpp"
#include "strategies/registry.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hwnas;
using namespace hwnas::search;

namespace {

const std::string kBinary = std::string(HWNAS_BINARY_DIR) + "/hwnas";
const std::string kExamples = std::string(HWNAS_SOURCE_DIR) + "/examples/";

fs::path temp_dir(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("hwnas_objectives_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string run_command(const std::string& cmd, int* code) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = ::pclose(p);
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// ---- parsing ----

TEST(ObjectiveSpec, ParsesDevicesAndRoundTrips) {
  for (const std::string s : {"val_accuracy:max", "latency_ms@jetson_orin_nano:min",
                              "energy_mj@loihi2:min", "memory_bytes@stm32h743:min"})
    EXPECT_EQ(ObjectiveSpec::parse(s).str(), s);
  auto o = ObjectiveSpec::parse("latency_ms@rpi4_a72:min");
  EXPECT_EQ(o.metric, "latency_ms");
  EXPECT_EQ(o.device, "rpi4_a72");
  EXPECT_FALSE(o.maximize);
  EXPECT_TRUE(o.is_cost());
}

TEST(ConstraintSpec, ParsesEveryForm) {
  auto c = ConstraintSpec::parse("latency_ms@rpi4_a72 <= 20");
  EXPECT_EQ(c.metric, "latency_ms");
  EXPECT_EQ(c.device, "rpi4_a72");
  EXPECT_EQ(c.op, ConstraintSpec::Op::Le);
  EXPECT_EQ(c.bound, 20);
  EXPECT_EQ(c.str(), "latency_ms@rpi4_a72 <= 20");
  auto f = ConstraintSpec::parse("feasible@stm32f746");
  EXPECT_EQ(f.op, ConstraintSpec::Op::Feasible);
  EXPECT_EQ(f.device, "stm32f746");
  EXPECT_EQ(f.str(), "feasible@stm32f746");
  auto p = ConstraintSpec::parse("params<=1e6");
  EXPECT_EQ(p.metric, "params");
  EXPECT_EQ(p.bound, 1e6);
  EXPECT_EQ(ConstraintSpec::parse("val_accuracy > 0.5").op, ConstraintSpec::Op::Gt);
  EXPECT_EQ(ConstraintSpec::parse("val_accuracy >= 0.5").op, ConstraintSpec::Op::Ge);
  EXPECT_EQ(ConstraintSpec::parse("energy_mj@loihi2 < 2").op, ConstraintSpec::Op::Lt);
}

struct BadString {
  std::string text, expected;
};

TEST(ObjectiveSpec, EachWrongPartIsNamed) {
  for (const auto& [text, expected] :
       std::vector<BadString>{{"val_accuracy", "'val_accuracy' must be METRIC:max or METRIC:min"},
                              {"val_accuracy:maximum", "direction 'maximum' must be max or min"},
                              {":max", "the metric is missing"},
                              {"latency_ms@:min", "the device after '@' is missing"},
                              {"latency ms:min", "metric 'latency ms' is not a name"},
                              {"latency_ms@a@b:min", "device 'a@b' is not a name"}}) {
    try {
      (void)ObjectiveSpec::parse(text);
      ADD_FAILURE() << "accepted '" << text << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

TEST(ConstraintSpec, EachWrongPartIsNamed) {
  for (const auto& [text, expected] :
       std::vector<BadString>{{"latency_ms", "must be METRIC[@DEVICE] <= NUMBER"},
                              {"latency_ms == 3", "operator '==' must be <=, <, >= or >"},
                              {"latency_ms <= fast", "bound 'fast' is not a finite number"},
                              {"latency_ms <=", "the bound after '<=' is missing"},
                              {"<= 3", "the metric is missing"},
                              {"latency_ms@ <= 3", "the device after '@' is missing"},
                              {"feasible", "feasible needs a device, feasible@DEVICE"},
                              {"feasible@", "the device after '@' is missing"},
                              {"params <= inf", "bound 'inf' is not a finite number"}}) {
    try {
      (void)ConstraintSpec::parse(text);
      ADD_FAILURE() << "accepted '" << text << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
}

// ---- verdicts and fronts ----

db::CostRecord cost(const std::string& device, double latency, bool feasible = true) {
  db::CostRecord c;
  c.device = device;
  c.latency_ms = latency;
  c.energy_mj = 2 * latency;
  c.feasible = feasible;
  return c;
}

TEST(Constraints, VerdictsAndViolations) {
  const json metrics = {{"val_accuracy", 0.8}, {"params", 2e6}};
  const std::vector<db::CostRecord> costs = {cost("a", 30), cost("b", 5, false)};
  auto v = check_constraint(ConstraintSpec::parse("latency_ms@a <= 20"), metrics, costs, "");
  EXPECT_FALSE(v.satisfied);
  EXPECT_DOUBLE_EQ(v.violation, 0.5);  // (30 - 20) / 20
  EXPECT_TRUE(check_constraint(ConstraintSpec::parse("latency_ms <= 40"), metrics, costs, "a")
                  .satisfied);  // the default device
  EXPECT_DOUBLE_EQ(
      check_constraint(ConstraintSpec::parse("params <= 1e6"), metrics, costs, "").violation, 1.0);
  EXPECT_TRUE(check_constraint(ConstraintSpec::parse("feasible@a"), metrics, costs, "").satisfied);
  EXPECT_FALSE(check_constraint(ConstraintSpec::parse("feasible@b"), metrics, costs, "").satisfied);
  EXPECT_FALSE(check_constraint(ConstraintSpec::parse("feasible@c"), metrics, costs, "").satisfied);
  // A cost on an infeasible device is unavailable: violated, as is a missing metric.
  EXPECT_FALSE(
      check_constraint(ConstraintSpec::parse("latency_ms@b <= 100"), metrics, costs, "").satisfied);
  EXPECT_FALSE(
      check_constraint(ConstraintSpec::parse("val_loss <= 1"), metrics, costs, "").satisfied);
  EXPECT_TRUE(
      std::isnan(objective_value(ObjectiveSpec::parse("latency_ms@b:min"), metrics, costs, "")));
}

db::EvaluationRecord evaluation(std::int64_t id, std::int64_t arch, double acc, double lat_a,
                                bool feasible_b = true) {
  db::EvaluationRecord e;
  e.id = id;
  e.arch_id = arch;
  e.metrics = {{"val_accuracy", acc}};
  e.costs = {cost("a", lat_a), cost("b", lat_a / 2, feasible_b)};
  return e;
}

TEST(Fronts, EachArchitectureOnceAndNeverAnInfeasibleOne) {
  const std::vector<ObjectiveSpec> objs = {ObjectiveSpec::parse("val_accuracy:max"),
                                           ObjectiveSpec::parse("latency_ms@a:min")};
  const std::vector<ConstraintSpec> cons = {ConstraintSpec::parse("feasible@b")};
  std::vector<db::EvaluationRecord> evals = {
      evaluation(1, 10, 0.9, 5),          // on the front
      evaluation(2, 10, 0.9, 5),          // the same architecture again: not listed twice
      evaluation(3, 11, 0.95, 1, false),  // best of all but infeasible on b: never listed
      evaluation(4, 12, 0.7, 2),          // on the front
      evaluation(5, 13, 0.6, 9),          // dominated
  };
  evals[4].status = "ok";
  const FrontSpec joint{kJointFront, "a", false};
  EXPECT_EQ(compute_front(evals, objs, cons, joint), (std::vector<std::int64_t>{1, 4}));
  // Without the constraint the infeasible-on-b architecture dominates both.
  EXPECT_EQ(compute_front(evals, objs, {}, joint), (std::vector<std::int64_t>{3}));
  // A per-device front on b excludes what b cannot run even without constraints.
  const std::vector<ObjectiveSpec> legacy = {ObjectiveSpec::parse("val_accuracy:max"),
                                             ObjectiveSpec::parse("latency_ms:min")};
  EXPECT_EQ(compute_front(evals, legacy, {}, FrontSpec{"b", "b", true}),
            (std::vector<std::int64_t>{1, 4}));
  evals[0].status = "failed";  // failed evaluations never count
  EXPECT_EQ(compute_front(evals, objs, cons, joint), (std::vector<std::int64_t>{2, 4}));
}

// ---- searches on a synthetic NAS-Bench-201 table ----

// A made-up table over all 15625 cells (not the benchmark's numbers).
std::string write_table(const fs::path& dir) {
  auto space = spaces::load_space(kExamples + "spaces/nb201.json");
  fs::path csv = dir / "table.csv";
  std::ofstream out(csv);
  // Also 3 and 6 epochs, for the multi-fidelity strategies' lower rungs.
  out << "arch,valid_acc_3,valid_acc_6,valid_acc_12,test_acc_200\n";
  for (std::uint64_t i = 0; i < *space->size(); ++i) {
    std::string arch = space->describe(space->at(i));
    double score = 50;
    for (const auto& [op, gain] : std::vector<std::pair<std::string, double>>{
             {"nor_conv_3x3", 6}, {"nor_conv_1x1", 4}, {"skip_connect", 1.5}})
      for (std::size_t p = 0; (p = arch.find(op, p)) != std::string::npos; ++p) score += gain;
    const double noise = 0.01 * static_cast<double>(i % 97);
    out << '"' << arch << "\"," << score - 6 + 3 * noise << "," << score - 2 + 2 * noise << ","
        << score + noise << "," << score << "\n";
  }
  return csv.string();
}

// A strategy's config for the generated table: the multi-fidelity strategies climb its 3-, 6-
// and 12-epoch columns.
json strategy_for_table(const std::string& type) {
  if (type == "successive_halving" || type == "hyperband")
    return {{"type", type}, {"min_epochs", 3}, {"max_epochs", 12}, {"eta", 2}};
  return {{"type", type}};
}

json tabular_config(const fs::path& dir, const std::string& csv) {
  std::ifstream in(kExamples + "search_nb201_tabular.json");
  json j = json::parse(in);
  j["space"] = kExamples + j["space"].get<std::string>();
  j["evaluator"]["csv"] = csv;
  j["db"] = (dir / "t.db").string();
  j["budget"]["evaluations"] = 60;
  j["workers"] = 2;
  return j;
}

SearchSummary run(const json& j, db::Store& store) {
  SearchConfig c = parse_config(j, "");
  auto executor = make_local_executor(make_evaluator_factory(c), 2, 2);
  std::ostringstream progress;
  return run_search(c, *executor, store, progress);
}

class TabularSearch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = temp_dir("tabular");
    csv_ = write_table(dir_);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static fs::path dir_;
  static std::string csv_;
};
fs::path TabularSearch::dir_;
std::string TabularSearch::csv_;

TEST_F(TabularSearch, MultiDeviceObjectivesAndConstraintsNeverPutAnInfeasibleOnTheFront) {
  // The bound: the median pixel3 latency over a sample, so about half the cells violate it.
  auto space = spaces::load_space(kExamples + "spaces/nb201.json");
  auto pixel = hw::load_device("pixel3_a75");
  std::vector<double> lat;
  spaces::Rng rng(1);
  for (int i = 0; i < 101; ++i)
    lat.push_back(pixel->estimate(spaces::build_workload(space->sample(rng))).latency_ms);
  std::nth_element(lat.begin(), lat.begin() + 50, lat.end());
  const double bound = lat[50];

  json j = tabular_config(dir_, csv_);
  j["db"] = (dir_ / "multi.db").string();
  j["strategy"] = {{"type", "nsga2"}, {"population", 12}};
  j["devices"] = {"pixel3_a75", "jetson_tx2", "edgetpu_usb"};
  j["objectives"] = {"val_accuracy:max", "latency_ms@pixel3_a75:min", "energy_mj@jetson_tx2:min"};
  j["constraints"] = {"latency_ms@pixel3_a75 <= " + std::to_string(bound), "feasible@edgetpu_usb"};
  db::Store store(j["db"].get<std::string>());
  auto s = run(j, store);
  EXPECT_EQ(s.evaluated, 60);
  ASSERT_EQ(store.pareto_devices(s.run_id), (std::vector<std::string>{"joint"}));
  auto front = store.pareto(s.run_id, "joint");
  ASSERT_FALSE(front.empty());
  const auto evals = store.evaluations(s.run_id);
  std::map<std::int64_t, const db::EvaluationRecord*> by_id;
  int violated = 0;
  std::set<std::int64_t> proposal_ids;
  for (const auto& e : evals) {
    by_id[e.id] = &e;
    const auto* c = find_cost(e.costs, "pixel3_a75");
    violated += c->latency_ms > bound;
    proposal_ids.insert(e.proposal_id);
  }
  EXPECT_GT(violated, 0) << "the constraint must bite for the test to mean something";
  // Proposal ids 0..59, each once.
  EXPECT_EQ(proposal_ids.size(), 60u);
  EXPECT_EQ(*proposal_ids.begin(), 0);
  EXPECT_EQ(*proposal_ids.rbegin(), 59);
  std::set<std::int64_t> archs;
  for (const auto& m : front) {
    const auto& e = *by_id.at(m.evaluation_id);
    EXPECT_LE(find_cost(e.costs, "pixel3_a75")->latency_ms, bound) << m.evaluation_id;
    EXPECT_TRUE(find_cost(e.costs, "edgetpu_usb")->feasible) << m.evaluation_id;
    EXPECT_TRUE(archs.insert(m.arch_id).second) << "architecture listed twice";
  }
  // The hypervolume history: recorded, non-decreasing (one fixed reference), last = summary.
  auto h = store.hypervolume_history(s.run_id, "joint");
  ASSERT_GE(h.size(), 2u);
  for (std::size_t i = 1; i < h.size(); ++i) EXPECT_GE(h[i].hypervolume, h[i - 1].hypervolume);
  EXPECT_EQ(h.back().evaluations, 60);
  EXPECT_EQ(h.back().reference.size(), 3u);
  EXPECT_DOUBLE_EQ(h.back().hypervolume, s.hypervolume.at("joint"));
  EXPECT_GT(h.back().hypervolume, 0);

  int code = 0;
  auto out = run_command(kBinary + " pareto --db " + j["db"].get<std::string>(), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("Pareto front on joint"), std::string::npos) << out;
  EXPECT_NE(out.find("hypervolume over the run"), std::string::npos) << out;
  out = run_command(kBinary + " runs --db " + j["db"].get<std::string>(), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("joint = "), std::string::npos) << out;
}

// A device whose costs take seconds (an external one) is asked once per architecture per
// database: a re-evaluated cell, a rescore and a second run read the store's cost cache.
TEST_F(TabularSearch, ExternalDeviceIsAskedOncePerArchitecture) {
  const fs::path dir = dir_ / "cache";
  fs::create_directories(dir);
  const fs::path log = dir / "requests.log";
  // Logs each request's genome; the latency is a function of the genome only (its node and
  // edge counts).
  std::ofstream(dir / "counting_device.py") << R"PY(
import json, os, sys
sys.path.insert(0, os.environ["HWNAS_EXAMPLES"])
from hwnas_device import serve
def estimate(arch, workload, batch):
    text = json.dumps(arch, sort_keys=True)
    with open(os.environ["LOG"], "a") as f:
        f.write(text + "\n")
    return {"latency_ms": len(arch["nodes"]) + len(arch["edges"]) / 1000.0}
serve(estimate, name="counting", objectives=["latency_ms"])
)PY";
  std::ofstream(dir / "counting.json")
      << json{{"name", "counting"},
              {"family", "external"},
              {"command", {"python3", "counting_device.py"}},
              {"env", {{"HWNAS_EXAMPLES", kExamples + "devices/external"}, {"LOG", log.string()}}}}
             .dump();
  auto requests = [&] {
    std::ifstream in(log);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  };

  json j = tabular_config(dir_, csv_);
  j["db"] = (dir / "cache.db").string();
  j["strategy"] = {{"type", "regularized_evolution"}, {"population", 8}, {"sample_size", 3}};
  j["devices"] = {"pixel3_a75", (dir / "counting.json").string()};
  j["objectives"] = {"val_accuracy:max", "latency_ms@counting:min"};
  std::set<std::int64_t> archs;
  {
    db::Store store(j["db"].get<std::string>());
    auto s = run(j, store);
    EXPECT_EQ(s.evaluated, 60);
    for (const auto& e : store.evaluations(s.run_id)) {
      archs.insert(e.arch_id);
      const auto* c = find_cost(e.costs, "counting");
      ASSERT_NE(c, nullptr);
      ASSERT_TRUE(c->feasible) << c->infeasible_reason;
      const auto a = store.architecture(e.arch_id);
      EXPECT_DOUBLE_EQ(c->latency_ms,
                       a->genome["nodes"].size() + a->genome["edges"].size() / 1000.0)
          << e.id;
    }
  }
  // One request per distinct architecture, also where evolution evaluated one twice.
  EXPECT_EQ(requests().size(), archs.size());

  int code = 0;
  const std::string out = run_command(kBinary + " rescore --db " + j["db"].get<std::string>() +
                                          " --device " + (dir / "counting.json").string(),
                                      &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(requests().size(), archs.size()) << "rescore asked the device again";

  // A second run in the same file (same seed: the same architectures) asks nothing.
  {
    db::Store store(j["db"].get<std::string>());
    auto s = run(j, store);
    EXPECT_EQ(s.evaluated, 60);
  }
  const auto lines = requests();
  EXPECT_EQ(lines.size(), archs.size());
  EXPECT_EQ(std::set<std::string>(lines.begin(), lines.end()).size(), lines.size());
}

// A device process that crashes, hangs, answers garbage or NaN fails that candidate's cost on it,
// with the reason stored; the search finishes and the next candidates are costed again.
TEST_F(TabularSearch, MisbehavingExternalDeviceFailsOnlyItsCosts) {
  const fs::path dir = dir_ / "hostile";
  fs::create_directories(dir);
  std::ofstream(dir / "hostile_device.py") << R"PY(
import os, sys, time
sys.path.insert(0, os.environ["HWNAS_EXAMPLES"])
from hwnas_device import serve
state = os.environ["STATE"]
def estimate(arch, workload, batch):
    count = int(open(state).read()) + 1 if os.path.exists(state) else 1
    open(state, "w").write(str(count))
    mode = ["ok", "nan", "negative", "crash", "hang", "error"][count % 6]
    if mode == "nan": return {"latency_ms": float("nan")}  # Python writes NaN: not JSON
    if mode == "negative": return {"latency_ms": -1.0}
    if mode == "crash": os._exit(3)
    if mode == "hang": time.sleep(60)
    if mode == "error": raise RuntimeError("no such kernel")
    return {"latency_ms": 1.0 + len(workload["nodes"])}
serve(estimate, name="hostile", objectives=["latency_ms"])
)PY";
  std::ofstream(dir / "hostile.json") << json{
      {"name", "hostile"},
      {"family", "external"},
      {"command", {"python3", "hostile_device.py"}},
      {"timeout_s", 1},
      {"cache", false},
      {"env",
       {{"HWNAS_EXAMPLES", kExamples + "devices/external"},
        {"STATE",
         (dir / "count").string()}}}}.dump();
  json j = tabular_config(dir_, csv_);
  j["db"] = (dir / "hostile.db").string();
  j["budget"]["evaluations"] = 14;
  j["devices"] = {"pixel3_a75", (dir / "hostile.json").string()};
  j["objectives"] = {"val_accuracy:max", "latency_ms@hostile:min"};
  db::Store store(j["db"].get<std::string>());
  auto s = run(j, store);
  EXPECT_EQ(s.evaluated, 14);
  EXPECT_EQ(store.run(s.run_id)->status, "finished");
  std::map<std::string, int> reasons;
  std::set<std::int64_t> ok;
  for (const auto& e : store.evaluations(s.run_id)) {
    const auto* c = find_cost(e.costs, "hostile");
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(find_cost(e.costs, "pixel3_a75")->feasible);  // the other device is untouched
    if (c->feasible) {
      ok.insert(e.id);
      EXPECT_GT(c->latency_ms, 1.0);
      continue;
    }
    EXPECT_NE(c->infeasible_reason.find("external device 'hostile'"), std::string::npos)
        << c->infeasible_reason;
    for (const char* what : {"not JSON", "latency_ms = -1", "exited with status 3",
                             "no answer within timeout_s = 1 s", "RuntimeError: no such kernel"})
      if (c->infeasible_reason.find(what) != std::string::npos) ++reasons[what];
  }
  EXPECT_GE(ok.size(), 2u);
  EXPECT_EQ(reasons.size(), 5u) << "each kind of misbehaviour seen and named";
  // A failed cost is never on the front.
  for (const auto& row : store.pareto(s.run_id, "joint"))
    EXPECT_TRUE(ok.count(row.evaluation_id)) << row.evaluation_id;
}

TEST_F(TabularSearch, SingleObjectiveWithoutDevices) {
  json j = tabular_config(dir_, csv_);
  j["db"] = (dir_ / "single.db").string();
  j["devices"] = json::array();
  j["objectives"] = {"val_accuracy:max"};
  j["hypervolume"] = {{"reference", {50}}};
  db::Store store(j["db"].get<std::string>());
  auto s = run(j, store);
  EXPECT_EQ(s.evaluated, 60);
  auto front = store.pareto(s.run_id, "joint");
  ASSERT_GE(front.size(), 1u);
  // One objective: the front is the best architecture(s), and the hypervolume its gain over 50.
  EXPECT_NEAR(s.hypervolume.at("joint"), s.best_metrics.at("val_accuracy") - 50, 1e-9);
}

TEST_F(TabularSearch, PerDeviceFrontsKeepTheirMeaning) {
  json j = tabular_config(dir_, csv_);
  j["db"] = (dir_ / "legacy.db").string();
  j["constraints"] = {"params <= 1e12"};
  j["evaluator"]["metrics"]["params"] = "valid_acc_12";  // any numeric column will do here
  db::Store store(j["db"].get<std::string>());
  auto s = run(j, store);
  EXPECT_EQ(store.pareto_devices(s.run_id),
            (std::vector<std::string>{"edgetpu_usb", "h100_sxm", "jetson_tx2", "pixel3_a75"}));
  for (const auto& d : store.pareto_devices(s.run_id))
    EXPECT_FALSE(store.hypervolume_history(s.run_id, d).empty()) << d;
}

TEST_F(TabularSearch, MultiDeviceExampleRuns) {
  std::ifstream in(kExamples + "search_nb201_multi_device.json");
  json j = json::parse(in);
  j["space"] = kExamples + j["space"].get<std::string>();
  j["evaluator"]["csv"] = csv_;
  j["db"] = (dir_ / "example.db").string();
  j["budget"]["evaluations"] = 40;
  db::Store store(j["db"].get<std::string>());
  auto s = run(j, store);
  EXPECT_EQ(s.evaluated, 40);
  EXPECT_FALSE(store.pareto(s.run_id, "joint").empty());
}

// One-shot strategies (darts) need a task with training data for their supernet phase; these
// tabular runs have none (config validation refuses the pairing).  A darts search from a config
// with real training is tests/search/test_darts_search.cpp.
std::vector<std::string> multi_trial_strategy_names() {
  std::vector<std::string> out;
  for (const auto& [name, e] : strategies::strategy_registry().entries())
    if (!e.one_shot) out.push_back(name);
  return out;
}

class EveryStrategyFromConfig : public TabularSearch,
                                public ::testing::WithParamInterface<std::string> {};

TEST_P(EveryStrategyFromConfig, RunsLocallyWithAConstraint) {
  json j = tabular_config(dir_, csv_);
  j["db"] = (dir_ / ("s_" + GetParam() + ".db")).string();
  j["strategy"] = strategy_for_table(GetParam());
  j["devices"] = {"pixel3_a75", "jetson_tx2"};
  j["objectives"] = {"val_accuracy:max", "latency_ms@pixel3_a75:min", "latency_ms@jetson_tx2:min"};
  j["constraints"] = {"feasible@jetson_tx2"};
  db::Store store(j["db"].get<std::string>());
  auto s = run(j, store);
  EXPECT_EQ(s.evaluated, 60);
  EXPECT_EQ(s.failed, 0);
  EXPECT_FALSE(store.pareto(s.run_id, "joint").empty());
}

TEST_F(TabularSearch, OneShotStrategiesAreRefusedWithoutATrainedTask) {
  json j = tabular_config(dir_, csv_);
  j["strategy"] = {{"type", "darts"}};
  try {
    (void)parse_config(j, "");
    ADD_FAILURE() << "a darts search on a tabular evaluator was accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "config.strategy.type: 'darts' trains a supernet on the task's data; it needs "
              "evaluator 'train' (this config's evaluator is 'tabular')");
  }
}

INSTANTIATE_TEST_SUITE_P(Registered, EveryStrategyFromConfig,
                         ::testing::ValuesIn(multi_trial_strategy_names()),
                         [](const auto& info) { return info.param; });

// ---- config errors: one line naming the field and the wrong part ----

json tiny() {
  std::ifstream in(std::string(HWNAS_TEST_DIR) + "/fixtures/tiny.json");
  json j = json::parse(in);
  j["space"] = kExamples + "spaces/mlp.json";
  return j;
}

std::string config_error(const std::function<void(json&)>& edit) {
  json j = tiny();
  edit(j);
  try {
    (void)parse_config(j, "");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ObjectiveConfig, EachMistakeGetsOneClearError) {
  auto has = [](const std::string& msg, const std::string& part) {
    return msg.find(part) != std::string::npos;
  };
  std::string e = config_error([](json& j) {
    j["objectives"] = {"val_accuracy:max", "latency_ms@rpi4_a72:min"};
  });
  EXPECT_TRUE(has(e,
                  "config.objectives[1]: device 'rpi4_a72' in 'latency_ms@rpi4_a72:min' is "
                  "not one of the configured devices (h100_sxm, host)"))
      << e;
  e = config_error([](json& j) { j["objectives"] = {"val_accuracy@h100_sxm:max"}; });
  EXPECT_TRUE(has(e, "config.objectives[0]: 'val_accuracy@h100_sxm:max': only device costs")) << e;
  e = config_error([](json& j) {
    j["devices"] = json::array();
    j["objectives"] = {"val_accuracy:max", "latency_ms:min"};
  });
  EXPECT_TRUE(has(e,
                  "config.objectives[1]: 'latency_ms:min' is a device cost but no device is "
                  "configured"))
      << e;
  e = config_error([](json& j) { j["objectives"] = {"val_accuracy:max", "val_accuracy:min"}; });
  EXPECT_TRUE(has(e, "config.objectives[1]: 'val_accuracy:min' repeats objectives[0]")) << e;
  e = config_error([](json& j) { j["objectives"] = json::array(); });
  EXPECT_TRUE(has(e, "config.objectives: needs between 1 and 8 entries")) << e;
  e = config_error([](json& j) { j["constraints"] = {"latency_ms@h100_sxm <= 1", "flops <= 3"}; });
  EXPECT_TRUE(has(e, "config.constraints[1]: unknown metric 'flops' for evaluator 'train'")) << e;
  e = config_error([](json& j) { j["constraints"] = {"feasible@stm32f746"}; });
  EXPECT_TRUE(has(e,
                  "config.constraints[0]: device 'stm32f746' in 'feasible@stm32f746' is not "
                  "one of the configured devices"))
      << e;
  e = config_error([](json& j) { j["constraints"] = {"latency_ms@h100_sxm =< 3"}; });
  EXPECT_TRUE(has(e, "config.constraints[0]: 'latency_ms@h100_sxm =< 3': operator '=' must be"))
      << e;
  e = config_error([](json& j) { j["constraints"] = {"params <= lots"}; });
  EXPECT_TRUE(has(e,
                  "config.constraints[0]: 'params <= lots': bound 'lots' is not a finite "
                  "number"))
      << e;
  e = config_error([](json& j) { j["constraints"] = {"val_accuracy@host >= 0.5"}; });
  EXPECT_TRUE(has(e, "config.constraints[0]: 'val_accuracy@host >= 0.5': only device costs")) << e;
  e = config_error([](json& j) { j["hypervolume"] = {{"reference", {0.5}}}; });
  EXPECT_TRUE(has(e, "config.hypervolume.reference: has 1 values for 2 objectives")) << e;
  e = config_error([](json& j) { j["hypervolume"] = {{"reference", {0.5, "x"}}}; });
  EXPECT_TRUE(has(e, "config.hypervolume.reference[1]: must be a finite number")) << e;
  // What is allowed: params, named devices, one objective.
  EXPECT_EQ(config_error([](json& j) {
              j["objectives"] = {"val_accuracy:max", "latency_ms@h100_sxm:min"};
              j["constraints"] = {"params <= 1e6", "latency_ms@host < 1000", "feasible@h100_sxm"};
            }),
            "");
  EXPECT_EQ(config_error([](json& j) { j["objectives"] = {"val_accuracy:max"}; }), "");
}

// ---- under mpirun ----

std::string mpi_unavailable() {
#ifndef HWNAS_WITH_MPI
  return "built with HWNAS_WITH_MPI=OFF";
#else
  return std::system("command -v mpirun > /dev/null 2>&1") == 0 ? "" : "mpirun not installed";
#endif
}

class EveryStrategyUnderMpi : public TabularSearch,
                              public ::testing::WithParamInterface<std::string> {};

TEST_P(EveryStrategyUnderMpi, MultiDeviceObjectiveAndConstraint) {
  if (auto why = mpi_unavailable(); !why.empty()) GTEST_SKIP() << why;
  json j = tabular_config(dir_, csv_);
  const std::string db = (dir_ / ("mpi_" + GetParam() + ".db")).string();
  j["db"] = db;
  j["budget"]["evaluations"] = 24;
  j["strategy"] = strategy_for_table(GetParam());
  if (GetParam() == "nsga2") j["strategy"]["population"] = 8;
  j["devices"] = {"pixel3_a75", "jetson_tx2", "edgetpu_usb"};
  j["objectives"] = {"val_accuracy:max", "latency_ms@pixel3_a75:min", "energy_mj@jetson_tx2:min"};
  j["constraints"] = {"latency_ms@pixel3_a75 <= 8", "feasible@edgetpu_usb"};
  const std::string cfg = (dir_ / ("mpi_" + GetParam() + ".json")).string();
  std::ofstream(cfg) << j.dump();
  int code = 0;
  auto out = run_command(
      "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
      "OMPI_MCA_btl_vader_single_copy_mechanism=none timeout 300 mpirun --oversubscribe "
      "--allow-run-as-root -n 3 " +
          kBinary + " search " + cfg,
      &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("2 worker ranks"), std::string::npos) << out;
  EXPECT_NE(out.find("Pareto front (joint)"), std::string::npos) << out;
  db::Store store(db, true);
  auto run_id = *store.latest_run_id();
  const auto evals = store.evaluations(run_id);
  EXPECT_EQ(evals.size(), 24u);
  std::map<std::int64_t, const db::EvaluationRecord*> by_id;
  for (const auto& e : evals) {
    by_id[e.id] = &e;
    EXPECT_NE(e.worker_rank, 0);
  }
  const auto front = store.pareto(run_id, "joint");
  EXPECT_FALSE(front.empty());
  for (const auto& m : front) {
    const auto& e = *by_id.at(m.evaluation_id);
    EXPECT_LE(find_cost(e.costs, "pixel3_a75")->latency_ms, 8.0);
    EXPECT_TRUE(find_cost(e.costs, "edgetpu_usb")->feasible);
  }
}

INSTANTIATE_TEST_SUITE_P(Registered, EveryStrategyUnderMpi,
                         ::testing::ValuesIn(multi_trial_strategy_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
