#include "db/export.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <stdexcept>

namespace hwnas::db {

Format parse_format(std::string_view name) {
  if (name == "table") return Format::Table;
  if (name == "json") return Format::Json;
  if (name == "csv") return Format::Csv;
  throw std::invalid_argument("unknown format '" + std::string(name) +
                              "' (expected table, json or csv)");
}

const char* format_name(Format f) {
  switch (f) {
    case Format::Table:
      return "table";
    case Format::Json:
      return "json";
    case Format::Csv:
      return "csv";
  }
  return "?";
}

std::string csv_field(std::string_view s) {
  bool quote = s.find_first_of(",\"\r\n") != std::string_view::npos ||
               (!s.empty() && (s.front() == ' ' || s.back() == ' '));
  if (!quote) return std::string(s);
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  out += '"';
  return out;
}

std::string render_csv(const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows) {
  auto line = [](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (i) out += ',';
      out += csv_field(cells[i]);
    }
    out += '\n';
    return out;
  };
  std::string out = line(header);
  for (const auto& r : rows) out += line(r);
  return out;
}

namespace {

// Display width in code points: good enough for the arrows and Greek letters in descriptions.
std::size_t display_width(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char ch : s)
    if ((ch & 0xC0) != 0x80) ++n;
  return n;
}

std::string flatten(std::string_view s) {
  std::string out(s);
  for (char& ch : out)
    if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
  return out;
}

bool looks_numeric(const std::string& s) {
  if (s.empty() || s == "-") return true;  // blanks do not decide a column's alignment
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

}  // namespace

std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows) {
  const std::size_t ncol = header.size();
  std::vector<std::size_t> width(ncol);
  std::vector<bool> right(ncol, true);
  for (std::size_t c = 0; c < ncol; ++c) width[c] = display_width(header[c]);
  std::vector<std::vector<std::string>> cells;
  cells.reserve(rows.size());
  for (const auto& r : rows) {
    std::vector<std::string> flat(ncol);
    for (std::size_t c = 0; c < ncol && c < r.size(); ++c) {
      flat[c] = flatten(r[c]);
      width[c] = std::max(width[c], display_width(flat[c]));
      if (!looks_numeric(flat[c])) right[c] = false;
    }
    cells.push_back(std::move(flat));
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (std::size_t c = 0; c < ncol; ++c) {
      std::size_t pad = width[c] - display_width(r[c]);
      bool last = c + 1 == ncol;
      if (right[c]) out.append(pad, ' ');
      out += r[c];
      if (!right[c] && !last) out.append(pad, ' ');
      if (!last) out += "  ";
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();  // empty last cells
    out += '\n';
    return out;
  };
  std::string out = line(header);
  std::vector<std::string> rule(ncol);
  for (std::size_t c = 0; c < ncol; ++c) rule[c] = std::string(width[c], '-');
  out += line(rule);
  for (const auto& r : cells) out += line(r);
  return out;
}

std::string exact_number(double v) {
  if (std::isnan(v)) return "";
  char buf[64];
  // Integral values (byte counts, parameter counts) print in full rather than as 3e+09.
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

std::string table_number(double v) {
  if (std::isnan(v)) return "-";
  char buf[64];
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

namespace {

nlohmann::json number_json(double v) {
  // JSON has no NaN or infinity; null says "not computed" explicitly.
  if (!std::isfinite(v)) return nullptr;
  return v;
}

std::string metric_cell(const nlohmann::json& metrics, const std::string& key, bool table) {
  if (!metrics.is_object() || !metrics.contains(key)) return "";
  const auto& v = metrics.at(key);
  if (v.is_number()) return table ? table_number(v.get<double>()) : exact_number(v.get<double>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return table ? "-" : "";
  return v.dump();
}

// Scalar metric keys over all rows: the usual headline metrics first, the rest alphabetically.
std::vector<std::string> metric_columns(const std::vector<const nlohmann::json*>& all, bool table) {
  static const std::vector<std::string> headline{"val_accuracy", "val_loss", "params"};
  // inherited_val_accuracy: a weight-sharing strategy's (spos) accuracy of the same architecture
  // with supernet weights, stored next to its stand-alone val_accuracy.
  static const std::vector<std::string> table_headline{"val_accuracy", "inherited_val_accuracy",
                                                       "params"};
  std::set<std::string> keys;
  for (const auto* m : all)
    if (m->is_object())
      for (auto it = m->begin(); it != m->end(); ++it)
        if (it.value().is_primitive()) keys.insert(it.key());
  std::vector<std::string> out;
  for (const auto& k : table ? table_headline : headline)
    if (keys.count(k)) out.push_back(k);
  if (table && !out.empty()) return out;  // a table stays narrow; JSON/CSV have everything
  for (const auto& k : keys)
    if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
  return out;
}

std::string dump_pretty(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

nlohmann::json to_json(const RunInfo& r) {
  return {{"id", r.id},
          {"name", r.name},
          {"status", r.status},
          {"seed", r.seed},
          {"evaluations", r.evaluations},
          {"started_at", r.started_at},
          {"finished_at",
           r.finished_at.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.finished_at)},
          {"host", r.host},
          {"pid", r.pid},
          {"heartbeat", r.heartbeat},
          {"config", r.config}};
}

nlohmann::json to_json(const CostRecord& c) {
  nlohmann::json j = {{"device", c.device},
                      {"feasible", c.feasible},
                      {"reason", c.infeasible_reason},
                      {"latency_ms", number_json(c.latency_ms)},
                      {"energy_mj", number_json(c.energy_mj)},
                      {"memory_bytes", number_json(c.memory_bytes)},
                      {"detail", c.detail}};
  if (!c.activity_source.empty()) j["activity_source"] = c.activity_source;
  return j;
}

nlohmann::json to_json(const ParetoRow& p) {
  nlohmann::json cost = to_json(p.cost);
  cost.erase("detail");  // per-node breakdowns are large; `hwnas show` has them
  return {{"evaluation_id", p.evaluation_id},  {"arch_id", p.arch_id}, {"arch_hash", p.arch_hash},
          {"description", p.arch_description}, {"metrics", p.metrics}, {"cost", cost}};
}

nlohmann::json to_json(const EvaluationRecord& e) {
  nlohmann::json costs = nlohmann::json::array();
  for (const auto& c : e.costs) costs.push_back(to_json(c));
  nlohmann::json curve = nlohmann::json::array();
  for (double v : e.loss_curve) curve.push_back(number_json(v));
  return {{"id", e.id},
          {"run_id", e.run_id},
          {"arch_id", e.arch_id},
          {"status", e.status},
          {"error", e.error},
          {"metrics", e.metrics},
          {"fidelity", e.fidelity},
          {"wall_seconds", number_json(e.wall_seconds)},
          {"worker_rank", e.worker_rank},
          {"proposal_id", e.proposal_id >= 0 ? nlohmann::json(e.proposal_id) : nlohmann::json()},
          {"created_at", e.created_at},
          {"loss_curve", curve},
          {"workload", e.workload},
          {"costs", costs}};
}

std::string format_pareto(const std::vector<ParetoRow>& rows, Format f) {
  if (f == Format::Json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : rows) arr.push_back(to_json(r));
    return dump_pretty(arr);
  }
  const bool table = f == Format::Table;
  std::vector<const nlohmann::json*> all;
  for (const auto& r : rows) all.push_back(&r.metrics);
  auto mcols = metric_columns(all, table);
  auto num = [&](double v) { return table ? table_number(v) : exact_number(v); };

  std::vector<std::string> header{"position", "evaluation", "arch", "hash"};
  header.insert(header.end(), mcols.begin(), mcols.end());
  for (const char* h :
       {"device", "feasible", "latency_ms", "energy_mj", "memory_bytes", "reason", "description"})
    header.push_back(h);
  std::vector<std::vector<std::string>> cells;
  std::size_t pos = 0;
  for (const auto& r : rows) {
    std::vector<std::string> row{std::to_string(pos++), std::to_string(r.evaluation_id),
                                 std::to_string(r.arch_id),
                                 table ? r.arch_hash.substr(0, 12) : r.arch_hash};
    for (const auto& k : mcols) row.push_back(metric_cell(r.metrics, k, table));
    row.push_back(r.cost.device);
    row.push_back(r.cost.feasible ? "yes" : "no");
    row.push_back(num(r.cost.latency_ms));
    row.push_back(num(r.cost.energy_mj));
    row.push_back(num(r.cost.memory_bytes));
    row.push_back(r.cost.infeasible_reason);
    // Tables stay readable: long descriptions (a macro space's decision JSON) are cut; csv and
    // json keep them whole, and `hwnas show` prints the full genome.
    std::string desc = r.arch_description;
    if (table && desc.size() > 60) desc = desc.substr(0, 57) + "...";
    row.push_back(desc);
    cells.push_back(std::move(row));
  }
  return table ? render_table(header, cells) : render_csv(header, cells);
}

std::string format_runs(const std::vector<RunInfo>& runs, Format f) {
  if (f == Format::Json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : runs) arr.push_back(to_json(r));
    return dump_pretty(arr);
  }
  std::vector<std::string> header{"id",          "name",       "status",     "seed",
                                  "evaluations", "started_at", "finished_at"};
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : runs)
    cells.push_back({std::to_string(r.id), r.name, r.status, std::to_string(r.seed),
                     std::to_string(r.evaluations), r.started_at, r.finished_at});
  return f == Format::Table ? render_table(header, cells) : render_csv(header, cells);
}

std::string format_architecture(const ArchitectureRow& arch,
                                const std::vector<EvaluationRecord>& evals, Format f) {
  if (f == Format::Json) {
    nlohmann::json ev = nlohmann::json::array();
    for (const auto& e : evals) ev.push_back(to_json(e));
    return dump_pretty({{"id", arch.id},
                        {"hash", arch.hash},
                        {"description", arch.description},
                        {"genome", arch.genome},
                        {"evaluations", ev}});
  }
  if (f == Format::Csv) {
    std::vector<std::string> header{"evaluation", "run",       "status",       "device", "feasible",
                                    "latency_ms", "energy_mj", "memory_bytes", "reason"};
    std::vector<std::vector<std::string>> cells;
    for (const auto& e : evals)
      for (const auto& c : e.costs)
        cells.push_back({std::to_string(e.id), std::to_string(e.run_id), e.status, c.device,
                         c.feasible ? "yes" : "no", exact_number(c.latency_ms),
                         exact_number(c.energy_mj), exact_number(c.memory_bytes),
                         c.infeasible_reason});
    return render_csv(header, cells);
  }

  std::string out = "architecture " + std::to_string(arch.id) + "  hash " + arch.hash + "\n";
  out += "description: " + (arch.description.empty() ? std::string("-") : arch.description) + "\n";
  out += "genome:\n" + dump_pretty(arch.genome);

  std::vector<const nlohmann::json*> all;
  for (const auto& e : evals) all.push_back(&e.metrics);
  auto mcols = metric_columns(all, true);
  std::vector<std::string> header{"evaluation", "run", "status"};
  header.insert(header.end(), mcols.begin(), mcols.end());
  for (const char* h : {"wall_s", "rank", "created_at", "error"}) header.push_back(h);
  std::vector<std::vector<std::string>> cells;
  std::vector<std::vector<std::string>> cost_cells;
  for (const auto& e : evals) {
    std::vector<std::string> row{std::to_string(e.id), std::to_string(e.run_id), e.status};
    for (const auto& k : mcols) row.push_back(metric_cell(e.metrics, k, true));
    row.push_back(table_number(e.wall_seconds));
    row.push_back(std::to_string(e.worker_rank));
    row.push_back(e.created_at);
    row.push_back(e.error);
    cells.push_back(std::move(row));
    for (const auto& c : e.costs)
      cost_cells.push_back({std::to_string(e.id), c.device, c.feasible ? "yes" : "no",
                            table_number(c.latency_ms), table_number(c.energy_mj),
                            table_number(c.memory_bytes), c.infeasible_reason});
  }
  out += "\nevaluations (" + std::to_string(evals.size()) + "):\n";
  if (!evals.empty()) out += render_table(header, cells);
  out += "\ncosts (" + std::to_string(cost_cells.size()) + "):\n";
  if (!cost_cells.empty())
    out += render_table(
        {"evaluation", "device", "feasible", "latency_ms", "energy_mj", "memory_bytes", "reason"},
        cost_cells);
  return out;
}

}  // namespace hwnas::db
