// Liveness of runs and the choice of a run to resume (`hwnas search CONFIG --resume [--run ID]`).
//
// A run records its coordinator's host, pid and a heartbeat (db/store.hpp, schema version 5).
// A run stored as "running" whose coordinator is gone is shown as "stale": on the same host when
// that pid no longer exists, anywhere when the heartbeat is older than kStaleAfterSeconds.  A
// stale, interrupted or failed run can be resumed; a finished one or a live one cannot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "db/store.hpp"
#include "search/config.hpp"

namespace hwnas::search {

// The search loop bumps the heartbeat at least this often (and with every stored evaluation).
inline constexpr int kHeartbeatSeconds = 10;
// A heartbeat older than this means the coordinator is gone (six missed beats: a loaded machine
// or a slow disk never makes a live run look dead).
inline constexpr int kStaleAfterSeconds = 60;

// This machine's host name, as recorded with each run.
std::string this_host();
// Whether process `pid` on this host is alive (a zombie is not).
bool pid_alive(std::int64_t pid);

// The status to show: the stored one, or "stale" for a "running" run whose coordinator is gone.
std::string displayed_status(const db::RunInfo& run);

// Why two resolved configs are not the same search ("" when they are): one line per differing
// field, "seed: 8 here, 7 in the run".  Fields that only say how to execute (db, workers,
// threads) may differ.
std::string config_differences(const nlohmann::json& stored, const nlohmann::json& now);

// The run `hwnas search --resume` continues: `run_id`, or the latest resumable run of the
// config's name.  Throws std::invalid_argument with a message naming the problem: no such run,
// run already finished, run still alive, config differs.
std::int64_t find_resumable_run(const db::Store& store, const SearchConfig& config,
                                std::optional<std::int64_t> run_id);

}  // namespace hwnas::search
