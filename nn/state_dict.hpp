// Module state: every named parameter and buffer of a module (nn/module.hpp), in memory and
// on disk.
//
// In memory a StateDict maps names to deep copies, so it is a snapshot: restoring the best
// weights for early stopping is `StateDict best = state_dict(model); ...;
// load_state_dict(model, best);`.  On disk it is nn/state_file.hpp's versioned container with
// the model-state magic, one float32 record per tensor, written to a temporary file and then
// renamed.
//
// Loading is strict and all-or-nothing: it refuses, with one std::invalid_argument and without
// changing the model, a missing tensor, an unexpected tensor, a mismatched shape
// ("n3.conv.weight: shape [8, 1, 3, 3] in file, [16, 1, 3, 3] in model"), and (from a file) a
// wrong magic or version, a truncated or corrupted file.  Values are copied into the module's
// existing tensors, so optimizers holding its parameters see them.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "nn/module.hpp"
#include "nn/state_file.hpp"

namespace hwnas::nn {

using StateDict = std::map<std::string, Tensor>;

// Deep copies of every parameter and buffer (frozen parameters included).  Throws
// std::logic_error if two tensors share a name (a module naming bug).
StateDict state_dict(Module& m);
// `source` names where the dict came from in errors: "... in file, ... in model".
void load_state_dict(Module& m, const StateDict& sd, const std::string& source = "state dict");

void save_state(Module& m, const std::string& path);
void load_state(Module& m, const std::string& path);

// The same, for a StateDict without a module.
void save_state_dict(const StateDict& sd, const std::string& path);
StateDict read_state_dict(const std::string& path);

// Records of a dict (one float32 each, in name order) and back; used by checkpoints, which
// store a model state among other records.  `prefix` is prepended / required and stripped.
void append_state_records(const StateDict& sd, const std::string& prefix,
                          std::vector<StateRecord>& out);
StateDict state_dict_from_records(const std::vector<StateRecord>& records,
                                  const std::string& prefix);

}  // namespace hwnas::nn
