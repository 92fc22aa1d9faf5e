#include "evaluators/evaluator.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace hwnas::eval {

namespace {
using nlohmann::json;

// JSON has no NaN or infinity: non-finite metrics (a diverged loss) travel as strings.
json number_to_json(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

double number_from_json(const json& j, const std::string& field) {
  if (j.is_number()) return j.get<double>();
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
  }
  throw std::invalid_argument("EvalResult JSON: field '" + field + "' must be a number, got " +
                              j.dump());
}

template <class T>
T get_field(const json& j, const char* owner, const char* field, T fallback) {
  if (!j.contains(field)) return fallback;
  const json& v = j.at(field);
  if constexpr (std::is_same_v<T, int>) {
    if (!v.is_number_integer())
      throw std::invalid_argument(std::string(owner) + " JSON: field '" + field +
                                  "' must be an integer, got " + v.dump());
    return v.get<int>();
  } else if constexpr (std::is_same_v<T, double>) {
    if (!v.is_number())
      throw std::invalid_argument(std::string(owner) + " JSON: field '" + field +
                                  "' must be a number, got " + v.dump());
    return v.get<double>();
  } else {
    if (!v.is_string())
      throw std::invalid_argument(std::string(owner) + " JSON: field '" + field +
                                  "' must be a string, got " + v.dump());
    return v.get<std::string>();
  }
}
}  // namespace

nlohmann::json Fidelity::to_json() const {
  nlohmann::json j = {
      {"epochs", epochs}, {"train_subset", train_subset}, {"max_seconds", max_seconds}};
  if (schedule_epochs != 0) j["schedule_epochs"] = schedule_epochs;
  if (!resume_from.empty()) j["resume_from"] = resume_from;
  if (!checkpoint_out.empty()) j["checkpoint_out"] = checkpoint_out;
  return j;
}

Fidelity Fidelity::from_json(const nlohmann::json& j) {
  if (!j.is_object())
    throw std::invalid_argument("Fidelity JSON: expected an object, got " + j.dump());
  Fidelity f;
  f.epochs = get_field<int>(j, "Fidelity", "epochs", f.epochs);
  f.train_subset = get_field<int>(j, "Fidelity", "train_subset", f.train_subset);
  f.max_seconds = get_field<double>(j, "Fidelity", "max_seconds", f.max_seconds);
  f.schedule_epochs = get_field<int>(j, "Fidelity", "schedule_epochs", f.schedule_epochs);
  f.resume_from = get_field<std::string>(j, "Fidelity", "resume_from", f.resume_from);
  f.checkpoint_out = get_field<std::string>(j, "Fidelity", "checkpoint_out", f.checkpoint_out);
  if (f.epochs < 0) throw std::invalid_argument("Fidelity JSON: field 'epochs' must be >= 0");
  if (f.train_subset < 0)
    throw std::invalid_argument("Fidelity JSON: field 'train_subset' must be >= 0");
  if (f.max_seconds < 0)
    throw std::invalid_argument("Fidelity JSON: field 'max_seconds' must be >= 0");
  if (f.schedule_epochs < 0)
    throw std::invalid_argument("Fidelity JSON: field 'schedule_epochs' must be >= 0");
  return f;
}

nlohmann::json EvalResult::to_json() const {
  json m = json::object();
  for (const auto& [k, v] : metrics) m[k] = number_to_json(v);
  json curve = json::array();
  for (double v : loss_curve) curve.push_back(number_to_json(v));
  return {{"metrics", m},
          {"loss_curve", curve},
          {"workload", workload.to_json()},
          {"wall_seconds", wall_seconds},
          {"error", error}};
}

EvalResult EvalResult::from_json(const nlohmann::json& j) {
  if (!j.is_object())
    throw std::invalid_argument("EvalResult JSON: expected an object, got " + j.dump());
  EvalResult r;
  if (j.contains("metrics")) {
    const json& m = j.at("metrics");
    if (!m.is_object())
      throw std::invalid_argument("EvalResult JSON: field 'metrics' must be an object");
    for (auto it = m.begin(); it != m.end(); ++it)
      r.metrics[it.key()] = number_from_json(it.value(), "metrics." + it.key());
  }
  if (j.contains("loss_curve")) {
    const json& c = j.at("loss_curve");
    if (!c.is_array())
      throw std::invalid_argument("EvalResult JSON: field 'loss_curve' must be an array");
    for (std::size_t i = 0; i < c.size(); ++i)
      r.loss_curve.push_back(number_from_json(c[i], "loss_curve[" + std::to_string(i) + "]"));
  }
  if (j.contains("workload")) r.workload = hw::Workload::from_json(j.at("workload"));
  r.wall_seconds = get_field<double>(j, "EvalResult", "wall_seconds", 0.0);
  r.error = get_field<std::string>(j, "EvalResult", "error", std::string());
  return r;
}

}  // namespace hwnas::eval
