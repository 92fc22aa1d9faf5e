// `hwnas space`: inspect the block catalogue and search spaces.
//
//   hwnas space blocks [--json]                 every block kind with its hyperparameter domains
//   hwnas space types [--json]                  every space type with its definition's fields
//   hwnas space sample FILE [--n N] [--seed S]  N valid genomes of the space in FILE, one JSON
//                                               line each: {"hash", "arch", "genome"}
//
// Errors in FILE (unreadable, invalid JSON, bad field) throw std::invalid_argument naming the
// field; main prints it as one "error: ..." line and exits with code 2.
#pragma once

#include <CLI/CLI.hpp>

namespace hwnas::search {

void add_space_commands(CLI::App& app);

}  // namespace hwnas::search
