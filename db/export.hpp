// Rendering of stored results for people and scripts: Pareto fronts, runs and one architecture
// as an aligned text table, JSON, or CSV (RFC 4180 quoting).  Pure formatting over the plain
// structs of db/store.hpp; no SQLite here, so the same functions serve the CLI and reports.
//
// Numbers: JSON and CSV carry the shortest text that round-trips the double (integral values
// below 2^53 in full, never in exponent form); tables show 6
// significant digits (integral values in full).  NaN (a figure that was not computed) is null in
// JSON, an empty field in CSV and "-" in tables.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "db/store.hpp"

namespace hwnas::db {

enum class Format { Table, Json, Csv };

// "table", "json" or "csv"; throws std::invalid_argument naming the accepted values.
Format parse_format(std::string_view name);
const char* format_name(Format f);

// ---- building blocks --------------------------------------------------------------------------
// One CSV field: quoted (with inner quotes doubled) when it holds a comma, quote, CR, LF or
// leading/trailing space; otherwise unchanged.
std::string csv_field(std::string_view s);
// Header line plus one line per row, each line ending in '\n'.
std::string render_csv(const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows);
// Columns padded to their widest cell (UTF-8 aware); numeric columns right-aligned; a dashed
// rule under the header.  Newlines and tabs inside cells become spaces.
std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows);
// Shortest round-trip text ("" for NaN); table_number: 6 significant digits ("-" for NaN).
std::string exact_number(double v);
std::string table_number(double v);

// ---- JSON forms (also what --format json prints) ----------------------------------------------
nlohmann::json to_json(const RunInfo& r);
nlohmann::json to_json(const CostRecord& c);
nlohmann::json to_json(const ParetoRow& p);  // without the cost's per-node detail
nlohmann::json to_json(const EvaluationRecord& e);

// ---- whole documents ---------------------------------------------------------------------------
// Columns: position, evaluation, arch, hash, metrics (every scalar metric in JSON/CSV, the main
// ones in a table), device, feasible, latency_ms, energy_mj, memory_bytes, reason, description.
std::string format_pareto(const std::vector<ParetoRow>& rows, Format f);
// Columns: id, name, status, seed, evaluations, started_at, finished_at (JSON adds config).
std::string format_runs(const std::vector<RunInfo>& runs, Format f);
// An architecture and its evaluations with costs.  Table: a readable report (genome pretty
// JSON, an evaluations table, a costs table); CSV: one line per (evaluation, device) cost.
std::string format_architecture(const ArchitectureRow& arch,
                                const std::vector<EvaluationRecord>& evals, Format f);

}  // namespace hwnas::db
