#include "strategies/strategy.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace hwnas::strategies {

nlohmann::json number_to_json(double x) {
  if (std::isnan(x)) return nullptr;
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}

double number_from_json(const nlohmann::json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    if (j == "inf") return std::numeric_limits<double>::infinity();
    if (j == "-inf") return -std::numeric_limits<double>::infinity();
  }
  return std::numeric_limits<double>::quiet_NaN();
}

nlohmann::json genome_to_json(const spaces::Genome& g) { return g.to_json(); }
spaces::Genome genome_from_json(const nlohmann::json& j) { return spaces::Genome::from_json(j); }

nlohmann::json Fidelity::to_json() const {
  nlohmann::json j = {{"epochs", epochs}, {"train_subset", train_subset}};
  // The promotion fields only where set: single-fidelity states stay as they were.
  if (schedule_epochs != 0) j["schedule_epochs"] = schedule_epochs;
  if (continue_from >= 0) j["continue_from"] = continue_from;
  if (seed_of >= 0) j["seed_of"] = seed_of;
  if (keep_checkpoint) j["keep_checkpoint"] = true;
  return j;
}

Fidelity Fidelity::from_json(const nlohmann::json& j) {
  Fidelity f;
  f.epochs = j.value("epochs", 0);
  f.train_subset = j.value("train_subset", 0);
  f.schedule_epochs = j.value("schedule_epochs", 0);
  f.continue_from = j.value("continue_from", std::int64_t{-1});
  f.seed_of = j.value("seed_of", std::int64_t{-1});
  f.keep_checkpoint = j.value("keep_checkpoint", false);
  return f;
}

bool Result::all_feasible() const {
  for (bool f : feasible)
    if (!f) return false;
  return true;
}

nlohmann::json Result::to_json() const {
  nlohmann::json objs = nlohmann::json::array(), feas = nlohmann::json::array();
  for (double v : objectives) objs.push_back(number_to_json(v));
  for (bool f : feasible) feas.push_back(f);
  return {{"id", id},
          {"ok", ok},
          {"objectives", objs},
          {"feasible", feas},
          {"violation", number_to_json(violation)},
          {"fitness", number_to_json(fitness)},
          {"fidelity", fidelity.to_json()}};
}

Result Result::from_json(const nlohmann::json& j) {
  Result r;
  r.id = j.at("id").get<std::uint64_t>();
  r.ok = j.at("ok").get<bool>();
  for (const auto& v : j.at("objectives")) r.objectives.push_back(number_from_json(v));
  for (const auto& f : j.at("feasible")) r.feasible.push_back(f.get<bool>());
  r.violation = number_from_json(j.at("violation"));
  r.fitness = number_from_json(j.at("fitness"));
  r.fidelity = Fidelity::from_json(j.at("fidelity"));
  return r;
}

bool scalar_better(const Result& a, const Result& b) {
  const bool fa = a.ok && a.violation <= 0, fb = b.ok && b.violation <= 0;
  if (fa != fb) return fa;
  if (!fa) {
    if (a.ok != b.ok) return a.ok;  // a failed evaluation is worse than any infeasible one
    return a.violation < b.violation;
  }
  return a.fitness > b.fitness;
}

Strategy::Strategy(const spaces::Space& space, StrategyContext context, nlohmann::json params)
    : space_(space),
      context_(std::move(context)),
      params_(std::move(params)),
      rng_(context_.seed) {}

std::vector<Proposal> Strategy::ask(std::size_t n) {
  std::vector<Proposal> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    Proposal p = propose();
    p.id = next_id_++;
    pending_.emplace(p.id, p);
    out.push_back(std::move(p));
  }
  return out;
}

void Strategy::tell(const Result& result) {
  auto it = pending_.find(result.id);
  if (it == pending_.end())
    throw std::invalid_argument(
        "tell: proposal id " + std::to_string(result.id) +
        (result.id < next_id_ ? " was already told" : " was never proposed") + " (strategy '" +
        name() + "')");
  if (result.objectives.size() != context_.objectives.size())
    throw std::invalid_argument("tell: result " + std::to_string(result.id) + " has " +
                                std::to_string(result.objectives.size()) +
                                " objectives, expected " +
                                std::to_string(context_.objectives.size()));
  if (result.feasible.size() != context_.constraints.size())
    throw std::invalid_argument("tell: result " + std::to_string(result.id) + " has " +
                                std::to_string(result.feasible.size()) +
                                " constraint verdicts, expected " +
                                std::to_string(context_.constraints.size()));
  Proposal p = std::move(it->second);
  pending_.erase(it);
  learn(p, result);
}

void Strategy::tell(const std::vector<Result>& results) {
  for (const auto& r : results) tell(r);
}

namespace {
constexpr const char* kFormat = "hwnas-strategy-state";
}

nlohmann::json Strategy::save_state() const {
  std::ostringstream rng;
  rng << rng_;
  nlohmann::json pending = nlohmann::json::array();
  for (const auto& [id, p] : pending_)
    pending.push_back(
        {{"id", id}, {"genome", genome_to_json(p.genome)}, {"fidelity", p.fidelity.to_json()}});
  return {{"format", kFormat},  {"version", kStateVersion}, {"strategy", name()},
          {"params", params_},  {"next_id", next_id_},      {"rng", rng.str()},
          {"pending", pending}, {"state", save_body()}};
}

void Strategy::restore_state(const nlohmann::json& s) {
  const std::string who = "restore_state (strategy '" + name() + "'): ";
  if (!s.is_object() || s.value("format", "") != kFormat)
    throw std::invalid_argument(who + "not a saved strategy state (no \"format\": \"" + kFormat +
                                "\")");
  if (!s.contains("version") || !s["version"].is_number_integer() ||
      s["version"].get<int>() != kStateVersion)
    throw std::invalid_argument(
        who + "state version " + (s.contains("version") ? s["version"].dump() : "missing") +
        " is not supported (this build reads version " + std::to_string(kStateVersion) + ")");
  const std::string saved = s.value("strategy", "");
  if (saved != name())
    throw std::invalid_argument(who + "the state was saved by strategy '" + saved + "'");
  if (s.value("params", nlohmann::json()) != params_)
    throw std::invalid_argument(who + "the state was saved with parameters " +
                                s.value("params", nlohmann::json()).dump() +
                                ", this strategy has " + params_.dump());
  try {
    std::istringstream rng(s.at("rng").get<std::string>());
    spaces::Rng r;
    rng >> r;
    if (!rng) throw std::invalid_argument("unreadable rng state");
    std::map<std::uint64_t, Proposal> pending;
    for (const auto& p : s.at("pending")) {
      Proposal q;
      q.id = p.at("id").get<std::uint64_t>();
      q.genome = genome_from_json(p.at("genome"));
      q.fidelity = Fidelity::from_json(p.at("fidelity"));
      pending.emplace(q.id, std::move(q));
    }
    const std::uint64_t next = s.at("next_id").get<std::uint64_t>();
    restore_body(s.at("state"));
    rng_ = r;
    pending_ = std::move(pending);
    next_id_ = next;
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(who + e.what());
  } catch (const std::exception& e) {
    throw std::invalid_argument(who + "malformed state: " + e.what());
  }
}

}  // namespace hwnas::strategies
