#include "db/workload_parts.hpp"

#include <string>

namespace hwnas::db {

namespace {
constexpr const char* kMarker = "from_architecture";
constexpr const char* kNodeActivity = "activity";
constexpr const char* kMeasured = "measured";
}  // namespace

nlohmann::json architecture_workload_part(const nlohmann::json& workload) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : workload.items()) {
    if (key == kMeasured) continue;
    if (key != "nodes" || !value.is_array()) {
      out[key] = value;
      continue;
    }
    nlohmann::json nodes = nlohmann::json::array();
    for (const auto& node : value) {
      nlohmann::json n = node;
      if (n.is_object()) n.erase(kNodeActivity);
      nodes.push_back(std::move(n));
    }
    out["nodes"] = std::move(nodes);
  }
  return out;
}

nlohmann::json empty_evaluation_workload_part() { return {{kMarker, true}}; }

nlohmann::json evaluation_workload_part(const nlohmann::json& workload) {
  nlohmann::json out = empty_evaluation_workload_part();
  if (auto it = workload.find(kMeasured); it != workload.end()) out[kMeasured] = *it;
  if (auto nodes = workload.find("nodes"); nodes != workload.end() && nodes->is_array()) {
    nlohmann::json activity = nlohmann::json::object();
    for (std::size_t i = 0; i < nodes->size(); ++i)
      if (const auto& node = (*nodes)[i]; node.is_object())
        if (auto a = node.find(kNodeActivity); a != node.end()) activity[std::to_string(i)] = *a;
    if (!activity.empty()) out[kNodeActivity] = std::move(activity);
  }
  return out;
}

bool is_evaluation_workload_part(const nlohmann::json& stored) {
  return stored.is_object() && stored.contains(kMarker);
}

nlohmann::json merge_workload_parts(const nlohmann::json& architecture_part,
                                    nlohmann::json evaluation_part) {
  if (!is_evaluation_workload_part(evaluation_part)) return evaluation_part;
  nlohmann::json w = architecture_part;
  if (auto m = evaluation_part.find(kMeasured); m != evaluation_part.end())
    w[kMeasured] = std::move(*m);
  if (auto a = evaluation_part.find(kNodeActivity); a != evaluation_part.end() && a->is_object()) {
    auto& nodes = w["nodes"];
    for (auto& [index, activity] : a->items()) {
      const std::size_t i = std::stoul(index);
      if (nodes.is_array() && i < nodes.size()) nodes[i][kNodeActivity] = std::move(activity);
    }
  }
  return w;
}

}  // namespace hwnas::db
