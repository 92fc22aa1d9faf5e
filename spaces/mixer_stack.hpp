// A small residual stack of sequence mixers as a Genome, built through the block catalogue:
//   input [L, F] -> dense(width) -> (layer norm -> mixer -> + skip) x layers -> layer norm
//   -> head(outputs) per token
// so any sequence-mixer kind ([L, d] -> [L, d]: attention, s4d, mamba, ...) can be compared on
// per-token tasks (MQAR, selective copying) by the behaviour tests and bench/sequence_mixers.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "spaces/genome.hpp"

namespace hwnas::spaces {

// Throws std::invalid_argument for width or layers < 1, outputs < 1 or a non-sequence input;
// the mixer kind and its params are checked by the catalogue when the genome is validated.
Genome mixer_stack(const TensorType& input, int width, int layers, const std::string& kind,
                   const nlohmann::json& params, int outputs);

}  // namespace hwnas::spaces
