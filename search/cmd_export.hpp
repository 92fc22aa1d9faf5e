// `hwnas export --db F --arch ID --weights W --format onnx|pytorch --out PATH`: writes a trained
// architecture (weights from `hwnas train`, module-state format) in a deployment format
// (deploy/export.hpp).  onnx: PATH is the .onnx file.  pytorch: PATH is the module source (.py);
// its weights go next to it as PATH without ".py" plus ".weights.bin".
// The weights are loaded into a freshly built model of the stored genome first, so a file that
// belongs to another architecture is refused (missing, unexpected or mis-shaped tensors).
// Errors: one "error: ..." line; exit 2 for bad input (missing database, unknown architecture,
// unreadable or mismatched weights, unknown format, a block kind the format cannot express).
#pragma once

#include <CLI/CLI.hpp>

namespace hwnas::search {

void add_export_command(CLI::App& app);

}  // namespace hwnas::search
