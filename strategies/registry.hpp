// Strategy registry and the small config-reading helpers strategies share.
// Adding a strategy: one .cpp file defining make_<name>(), plus one row in registry.cpp.
#pragma once

#include <initializer_list>
#include <string>

#include "strategies/strategy.hpp"

namespace hwnas::strategies {

// Throws std::invalid_argument "strategy.<field>: ..." for a missing/ill-typed/out-of-range value.
int get_int(const nlohmann::json& config, const char* field, int fallback, int lo, int hi);
double get_double(const nlohmann::json& config, const char* field, double fallback, double lo,
                  double hi);
// Rejects fields a strategy does not know (catches typos such as "populaton").
void check_known_fields(const nlohmann::json& config, std::initializer_list<const char*> known);

std::unique_ptr<Strategy> make_random_search(const nlohmann::json& config, const spaces::Space& space);
std::unique_ptr<Strategy> make_regularized_evolution(const nlohmann::json& config,
                                                     const spaces::Space& space);

}  // namespace hwnas::strategies
