// A workload (hw::Workload::to_json: {"nodes": [{..., "activity": {...}}], "input_bytes": x,
// "measured": {...}}) has two parts of different owners:
//  - the architecture part, everything but the nodes' "activity" and the top-level "measured",
//    which follows from the architecture alone, so the store keeps it once per architecture;
//  - the evaluation part, what one evaluation measured: {"from_architecture": true,
//    "activity": {"<node index>": {...}}, "measured": {...}} (the last two only when present).
// An evaluation row stores the evaluation part when its architecture's part is stored, so a
// million evaluations of a tabular search take a few bytes of workload each instead of the
// whole per-node table.  Reading merges the two back into the whole workload.
#pragma once

#include <nlohmann/json.hpp>

namespace hwnas::db {

nlohmann::json architecture_workload_part(const nlohmann::json& workload);
nlohmann::json evaluation_workload_part(const nlohmann::json& workload);
// The evaluation part of a workload that measured nothing.
nlohmann::json empty_evaluation_workload_part();
bool is_evaluation_workload_part(const nlohmann::json& stored);
// The whole workload from the two parts.
nlohmann::json merge_workload_parts(const nlohmann::json& architecture_part,
                                    nlohmann::json evaluation_part);

}  // namespace hwnas::db
