// Builds the evaluator a search config asks for.  Shared data (the training images) is loaded
// once per process and shared by every evaluator the factory makes.
#pragma once

#include "search/config.hpp"
#include "search/executor.hpp"

namespace hwnas::search {

EvaluatorFactory make_evaluator_factory(const SearchConfig& config);

}  // namespace hwnas::search
