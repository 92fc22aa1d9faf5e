// `hwnas hw ...`: hardware models from the command line.
//
//   hwnas hw list                                   presets (name, family, description) and
//                                                   the families with their descriptions
//   hwnas hw families [--json]                      every family's JSON fields: domain,
//                                                   default, meaning (DeviceFamily registry)
//   hwnas hw show DEVICE                            the device's JSON with sources
//   hwnas hw predict --device D ARCH [--format table|json]
//                                                   per-node time, energy, bound + totals
//   hwnas hw calibrate --device base.json --measurements m.csv --out tuned.json
//                      [--seed S] [--holdout F]     fit per-category scales + overhead
//   hwnas hw measure --space FILE --n N --out m.csv [--batch B] [--reps R] [--seed S]
//                                                   host latencies for calibration
//   hwnas hw measure ... --per-node; hwnas hw fit -m m.csv --out dev.json
//                                                   learned device (search/cmd_hw_learned.hpp)
//
// DEVICE: a preset name, a device JSON path or a plugin .so.  ARCH: an NB201 string
// ("|nor_conv_3x3~0|+|...|"), "SPACE_FILE:ARCH_STRING", a genome JSON path, or a workload JSON
// path (nodes with "category"), which needs no space at all.  User errors throw
// std::invalid_argument (main prints one "error:" line, exit 2).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "hwmodels/workload.hpp"

namespace hwnas::search {

void add_hw_commands(CLI::App& app);

// The adapter between spaces/ and hwmodels/: resolves an ARCH argument (forms above) to its
// static workload.  Kept here so that hwmodels never includes spaces.
hw::Workload resolve_architecture_workload(const std::string& arch);

}  // namespace hwnas::search
