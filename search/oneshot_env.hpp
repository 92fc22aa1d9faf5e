// The one-shot environment of a search (strategies/oneshot.hpp): what the search loop lends a
// one-shot strategy (DARTS) for its supernet phase, made from the config.
#pragma once

#include <filesystem>
#include <functional>
#include <iosfwd>
#include <memory>

#include "oneshot/data_shard.hpp"
#include "search/config.hpp"
#include "strategies/oneshot.hpp"

namespace hwnas::search {

// The task's train/validation split (the candidates' own: same seed, subset and validation
// size), the train evaluator's settings and the configured devices.  With another evaluator
// (tabular) the environment says why no supernet can be trained.  Data are loaded only when a
// strategy runs its phase.  Progress lines go to `progress`, which must outlive the result.
// With an active `shard` the phase trains data-parallel (search/mpi_data_parallel.hpp).
std::shared_ptr<const strategies::OneShotEnvironment> make_oneshot_environment(
    const SearchConfig& config, std::ostream& progress, oneshot::DataShard shard = {});

// Keeps each finished supernet phase's outcome (candidates, their metrics, the report) in
// `dir()`/supernet-<request hash>.json, written to a temporary file and renamed, with a checksum;
// a phase asked again with the same request (a resumed run: same config, same strategy seed)
// returns the kept outcome instead of training the supernet again.  A kept file that does not
// read back intact is reported on `progress` and the phase runs again.  During the phase (spos
// and darts) the supernet's training state is saved after every epoch to `dir()`/supernet-
// <request hash>.state (req.params["supernet_state"], oneshot/spos_search.hpp and
// darts_search.hpp), so a kill during the phase continues from the last finished epoch,
// bit-identically; the state file is removed once the outcome is kept.
std::shared_ptr<const strategies::OneShotEnvironment> keep_phase_outcomes(
    std::shared_ptr<const strategies::OneShotEnvironment> inner,
    std::function<std::filesystem::path()> dir, std::ostream& progress);

}  // namespace hwnas::search
