#include "evaluators/tabular.hpp"

#include <chrono>
#include <cmath>
#include <fstream>

#include "hwmodels/csv.hpp"
#include "spaces/workload_builder.hpp"

namespace hwnas::eval {

namespace {

using hw::split_csv_line;

// A finite number and nothing else: "nan", "inf" and "1e400" are refused, since a metric that
// is not a number would silently win or lose every comparison.
bool parse_double(const std::string& s, double& v) {
  try {
    std::size_t used = 0;
    v = std::stod(s, &used);
    return used == s.size() && std::isfinite(v);
  } catch (const std::exception&) {
    return false;
  }
}

// Whether `col` is `templ` with "{epochs}" replaced by a non-negative integer.
bool matches_template(const std::string& templ, const std::string& col) {
  const auto pos = templ.find("{epochs}");
  const std::string pre = templ.substr(0, pos), post = templ.substr(pos + 8);
  if (col.size() <= pre.size() + post.size() || col.compare(0, pre.size(), pre) != 0 ||
      col.compare(col.size() - post.size(), post.size(), post) != 0)
    return false;
  const std::string mid = col.substr(pre.size(), col.size() - pre.size() - post.size());
  return mid.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

TabularConfig TabularConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object())
    throw std::invalid_argument("tabular: config must be an object {file, key, metrics}");
  for (const auto& [k, v] : j.items())
    if (k != "file" && k != "key" && k != "metrics")
      throw std::invalid_argument("tabular." + k + ": unknown field (allowed: file, key, metrics)");
  TabularConfig c;
  if (!j.contains("file") || !j["file"].is_string() || j["file"].get<std::string>().empty())
    throw std::invalid_argument("tabular.file: missing; path of the CSV table");
  c.file = j["file"].get<std::string>();
  if (j.contains("key")) {
    if (!j["key"].is_string()) throw std::invalid_argument("tabular.key: must be a column name");
    c.key_column = j["key"].get<std::string>();
  }
  if (!j.contains("metrics") || !j["metrics"].is_object() || j["metrics"].empty())
    throw std::invalid_argument("tabular.metrics: must be a non-empty object {metric: column}");
  for (const auto& [k, v] : j["metrics"].items()) {
    if (!v.is_string())
      throw std::invalid_argument("tabular.metrics." + k + ": must be a column name");
    c.metrics[k] = v.get<std::string>();
  }
  return c;
}

TabularEvaluator::TabularEvaluator(std::shared_ptr<const spaces::Space> space, TabularConfig config)
    : space_(std::move(space)), config_(std::move(config)) {
  if (!space_) throw std::invalid_argument("tabular: no search space given");
  if (config_.metrics.empty())
    throw std::invalid_argument("tabular.metrics: must name at least one column");
  std::ifstream in(config_.file);
  if (!in) throw std::invalid_argument("tabular.file: '" + config_.file + "' cannot be opened");
  std::string line;
  if (!std::getline(in, line))
    throw std::invalid_argument("tabular.file: '" + config_.file + "' is empty");
  header_ = split_csv_line(line);
  for (std::size_t i = 0; i < header_.size(); ++i) column_[header_[i]] = i;
  std::string cols;
  for (const auto& h : header_) cols += (cols.empty() ? "" : ", ") + h;
  if (!column_.count(config_.key_column))
    throw std::invalid_argument("tabular.key: column '" + config_.key_column + "' not in " +
                                config_.file + " (columns: " + cols + ")");
  // The columns each metric reads: its own, or every column its {epochs} template matches.
  std::vector<std::pair<std::string, std::size_t>> numeric;  // (column, index) checked per row
  for (const auto& [metric, col] : config_.metrics) {
    if (col.find("{epochs}") == std::string::npos) {
      if (!column_.count(col))
        throw std::invalid_argument("tabular.metrics." + metric + ": column '" + col + "' not in " +
                                    config_.file + " (columns: " + cols + ")");
      numeric.emplace_back(col, column_[col]);
      continue;
    }
    std::size_t matched = 0;
    for (std::size_t i = 0; i < header_.size(); ++i)
      if (matches_template(col, header_[i])) {
        numeric.emplace_back(header_[i], i);
        ++matched;
      }
    if (matched == 0)
      throw std::invalid_argument("tabular.metrics." + metric + ": no column of " + config_.file +
                                  " matches '" + col + "' ({epochs} stands for a number of " +
                                  "epochs; columns: " + cols + ")");
  }
  const std::size_t key = column_[config_.key_column];
  std::size_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line == "\r") continue;
    auto cells = split_csv_line(line);
    if (cells.size() != header_.size())
      throw std::invalid_argument(config_.file + ":" + std::to_string(line_no) + ": " +
                                  std::to_string(cells.size()) + " fields, header has " +
                                  std::to_string(header_.size()));
    // Every metric cell is checked here, once, so a search never meets a bad one.
    for (const auto& [col, i] : numeric) {
      double v;
      if (!parse_double(cells[i], v))
        throw std::invalid_argument(config_.file + ":" + std::to_string(line_no) + ": column '" +
                                    col + "' = '" + cells[i] +
                                    "' is not a finite number (fix or drop the row)");
    }
    if (!index_.emplace(cells[key], cells_.size()).second)
      throw std::invalid_argument(config_.file + ":" + std::to_string(line_no) +
                                  ": duplicate architecture '" + cells[key] + "'");
    cells_.push_back(std::move(cells));
  }
}

std::string TabularEvaluator::column_for(const std::string& templ, int epochs) const {
  std::string col = templ;
  auto pos = col.find("{epochs}");
  if (pos != std::string::npos) col.replace(pos, 8, std::to_string(epochs));
  if (!column_.count(col))
    throw std::invalid_argument("tabular: column '" + col + "' (from '" + templ + "' at " +
                                std::to_string(epochs) + " epochs) not in " + config_.file);
  return col;
}

std::map<std::string, double> TabularEvaluator::lookup(const std::string& arch, int epochs) const {
  auto it = index_.find(arch);
  if (it == index_.end())
    throw TabularMissError("tabular: architecture '" + arch + "' not in " + config_.file + " (" +
                           std::to_string(index_.size()) + " rows keyed by column '" +
                           config_.key_column + "')");
  std::map<std::string, double> out;
  for (const auto& [metric, templ] : config_.metrics) {
    std::string col = column_for(templ, epochs);
    const std::string& cell = cells_[it->second][column_.at(col)];
    double v;
    if (!parse_double(cell, v))
      throw std::invalid_argument("tabular: '" + arch + "' column '" + col + "' = '" + cell +
                                  "' is not a number");
    out[metric] = v;
  }
  return out;
}

EvalResult TabularEvaluator::evaluate(const spaces::Genome& g, const Fidelity& f, std::uint64_t) {
  auto t0 = std::chrono::steady_clock::now();
  EvalResult r;
  r.metrics = lookup(space_->describe(g), f.epochs);
  r.workload = spaces::build_workload(g);
  if (!r.metrics.count("params")) {
    double params = 0;
    for (const auto& n : r.workload.nodes) params += n.params;
    r.metrics["params"] = params;
  }
  r.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace hwnas::eval
