// Training checkpoints: everything needed to continue a training run bit-identically after a
// stop (pre-emption, multi-fidelity promotion): the module state, each optimizer's state
// (moments, per-group step counts and rates), user counters (step, epoch) and RNG states.
//
// Plain data plus two file functions; the training loop decides what goes in:
//   TrainingCheckpoint ck;
//   ck.model = state_dict(model);
//   ck.optimizers["main"] = opt.state();
//   ck.counters["step"] = step;
//   ck.rng["dropout"] = rng_state(rng);
//   save_checkpoint(ck, path);
// and to continue, into a freshly built model and optimizer:
//   TrainingCheckpoint ck = read_checkpoint(path);
//   load_state_dict(model, ck.model, "checkpoint");
//   opt.load_state(ck.optimizers.at("main"));
//   step = ck.counters.at("step");
//   set_rng_state(rng, ck.rng.at("dropout"));
//
// On disk: nn/state_file.hpp's container with the checkpoint magic (a model-state file is
// refused and vice versa); records "model/<tensor>", "optim/<name>/kind",
// "optim/<name>/t/<tensor>", "optim/<name>/c/<counter>", "counter/<name>", "rng/<name>".
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>

#include "nn/optim.hpp"
#include "nn/state_dict.hpp"

namespace hwnas::nn {

struct TrainingCheckpoint {
  StateDict model;
  std::map<std::string, OptimizerState>
      optimizers;  // names without '/': "main"; "weights", "architecture"
  std::map<std::string, std::int64_t> counters;  // "step", "epoch", ...
  std::map<std::string, std::string> rng;        // rng_state() bytes by name
};

// Written to a temporary file, then renamed.  Throws std::invalid_argument on an optimizer name
// containing '/', std::runtime_error on I/O failure.
void save_checkpoint(const TrainingCheckpoint& ck, const std::string& path);
// Throws std::invalid_argument on a wrong magic or version, a truncated or corrupted file, or
// a record that belongs to no section.
TrainingCheckpoint read_checkpoint(const std::string& path);

// The full engine state as text bytes (the standard's operator<< form), and back; set_rng_state
// throws std::invalid_argument if the bytes are not an mt19937_64 state.
std::string rng_state(const std::mt19937_64& rng);
void set_rng_state(std::mt19937_64& rng, const std::string& state);

}  // namespace hwnas::nn
