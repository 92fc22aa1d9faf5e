// Objectives and constraints of a search, as written in the config, and how one evaluation's
// metrics and device costs turn into objective values and constraint verdicts.
//
//  objective:  METRIC[@DEVICE]:max|min       "val_accuracy:max", "latency_ms@jetson_orin_nano:min"
//  constraint: METRIC[@DEVICE] OP NUMBER     "latency_ms@rpi4_a72 <= 20", "params <= 1e6"
//              (OP one of <=, <, >=, >)      "feasible@stm32f746" (the device can run it)
//
// METRIC is an evaluator metric or a device cost (latency_ms, energy_mj, memory_bytes).  A cost
// without @DEVICE is read on the "default device": the device whose front is being built when
// no objective names a device (one front per configured device, the behaviour before devices
// could be named), else the first configured device.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "db/store.hpp"

namespace hwnas::search {

bool is_cost_metric(const std::string& metric);  // latency_ms, energy_mj, memory_bytes

struct ObjectiveSpec {
  std::string metric;  // an evaluation metric ("val_accuracy") or a device cost ("latency_ms")
  std::string device;  // "" = the default device (see above)
  bool maximize = false;
  bool is_cost() const;
  std::string str() const;  // "latency_ms@rpi4_a72:min"
  // Inverse of str(); throws std::invalid_argument naming the part that is wrong.
  static ObjectiveSpec parse(const std::string& s);
};

struct ConstraintSpec {
  enum class Op { Le, Lt, Ge, Gt, Feasible };
  std::string metric;  // empty for Feasible
  std::string device;  // required for Feasible; "" = the default device for costs
  Op op = Op::Le;
  double bound = 0;
  bool is_cost() const;
  std::string str() const;  // "latency_ms@rpi4_a72 <= 20"
  // Throws std::invalid_argument naming the part that is wrong.
  static ConstraintSpec parse(const std::string& s);
};

// The cost of `device` in `costs`, or nullptr.
const db::CostRecord* find_cost(const std::vector<db::CostRecord>& costs,
                                const std::string& device);

// An objective's value for one evaluation; NaN when unavailable (metric missing, no cost for
// the device, or the architecture is infeasible on it).
double objective_value(const ObjectiveSpec& o, const nlohmann::json& metrics,
                       const std::vector<db::CostRecord>& costs, const std::string& default_device);

struct ConstraintVerdict {
  bool satisfied = true;
  // 0 when satisfied; else the excess over the bound divided by max(|bound|, 1e-12), or 1 when
  // the value is unavailable or the device infeasible.
  double violation = 0;
};
ConstraintVerdict check_constraint(const ConstraintSpec& c, const nlohmann::json& metrics,
                                   const std::vector<db::CostRecord>& costs,
                                   const std::string& default_device);

}  // namespace hwnas::search
