// Exports: CSV quoting (parsed back with an RFC 4180 reader), JSON parse-back, table alignment.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "db/export.hpp"

using namespace hwnas::db;
using nlohmann::json;

namespace {

// Minimal RFC 4180 reader: enough to prove what we write reads back field for field.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, field_started = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char ch = text[i];
    if (quoted) {
      if (ch == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field += ch;
      }
    } else if (ch == '"' && !field_started) {
      quoted = field_started = true;
    } else if (ch == ',') {
      row.push_back(field);
      field.clear();
      field_started = false;
    } else if (ch == '\n') {
      row.push_back(field);
      rows.push_back(row);
      row.clear();
      field.clear();
      field_started = false;
    } else {
      field += ch;
      field_started = true;
    }
  }
  EXPECT_FALSE(quoted) << "unterminated quoted field";
  EXPECT_TRUE(row.empty() && field.empty()) << "last line lacks a newline";
  return rows;
}

std::vector<ParetoRow> sample_rows() {
  ParetoRow a;
  a.evaluation_id = 7;
  a.arch_id = 3;
  a.arch_hash = "0123456789abcdef0123";
  a.arch_description = "conv3x3(32), \"spiky\" LIF →\nmamba";
  a.metrics = {{"val_accuracy", 0.9123456789}, {"params", 12345}, {"val_loss", 0.3}};
  a.cost.device = "jetson-orin";
  a.cost.latency_ms = 1.5;
  a.cost.energy_mj = 0.1 + 0.2;  // 0.30000000000000004: must round-trip exactly in CSV/JSON
  a.cost.memory_bytes = 1048576;
  ParetoRow b;
  b.evaluation_id = 12;
  b.arch_id = 4;
  b.arch_hash = "ffff";
  b.arch_description = "plain";
  b.metrics = {{"val_accuracy", 0.5}, {"params", 99}};
  b.cost.device = "jetson-orin";
  b.cost.feasible = false;
  b.cost.infeasible_reason = "too big, sorry";
  b.cost.latency_ms = std::numeric_limits<double>::quiet_NaN();
  b.cost.energy_mj = 2;
  b.cost.memory_bytes = 3e9;
  return {a, b};
}

TEST(Export, ParseFormat) {
  EXPECT_EQ(parse_format("table"), Format::Table);
  EXPECT_EQ(parse_format("json"), Format::Json);
  EXPECT_EQ(parse_format("csv"), Format::Csv);
  EXPECT_THROW(parse_format("xml"), std::invalid_argument);
  EXPECT_STREQ(format_name(Format::Csv), "csv");
}

TEST(Export, CsvFieldQuoting) {
  EXPECT_EQ(csv_field("plain"), "plain");
  EXPECT_EQ(csv_field(""), "");
  EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_field("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(csv_field("cr\r"), "\"cr\r\"");
  EXPECT_EQ(csv_field(" padded"), "\" padded\"");
  EXPECT_EQ(csv_field("→ unicode"), "→ unicode");
}

TEST(Export, ParetoCsvParsesBackFieldForField) {
  auto rows = sample_rows();
  auto csv = format_pareto(rows, Format::Csv);
  auto parsed = parse_csv(csv);
  ASSERT_EQ(parsed.size(), 3u);
  const auto& h = parsed[0];
  auto col = [&](const std::string& name) {
    auto it = std::find(h.begin(), h.end(), name);
    EXPECT_NE(it, h.end()) << name;
    return static_cast<std::size_t>(it - h.begin());
  };
  for (const auto& r : parsed) ASSERT_EQ(r.size(), h.size());
  EXPECT_EQ(parsed[1][col("description")], rows[0].arch_description);
  EXPECT_EQ(parsed[1][col("hash")], rows[0].arch_hash);  // full hash in CSV
  EXPECT_EQ(std::stod(parsed[1][col("val_accuracy")]), 0.9123456789);
  EXPECT_EQ(std::stod(parsed[1][col("energy_mj")]), 0.1 + 0.2);
  EXPECT_EQ(parsed[1][col("val_loss")], "0.3");
  EXPECT_EQ(parsed[2][col("val_loss")], "");    // missing metric: empty field
  EXPECT_EQ(parsed[2][col("latency_ms")], "");  // NaN: empty field
  EXPECT_EQ(parsed[2][col("reason")], "too big, sorry");
  EXPECT_EQ(parsed[2][col("feasible")], "no");
  EXPECT_EQ(parsed[2][col("memory_bytes")], "3000000000");
  EXPECT_EQ(parsed[2][col("evaluation")], "12");
}

TEST(Export, ParetoJsonParsesBack) {
  auto rows = sample_rows();
  json j = json::parse(format_pareto(rows, Format::Json));
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["evaluation_id"], 7);
  EXPECT_EQ(j[0]["arch_hash"], rows[0].arch_hash);
  EXPECT_EQ(j[0]["description"], rows[0].arch_description);
  EXPECT_EQ(j[0]["metrics"], rows[0].metrics);
  EXPECT_EQ(j[0]["cost"]["energy_mj"].get<double>(), 0.1 + 0.2);
  EXPECT_FALSE(j[0]["cost"].contains("detail"));
  EXPECT_TRUE(j[1]["cost"]["latency_ms"].is_null());
  EXPECT_EQ(j[1]["cost"]["feasible"], false);
  EXPECT_EQ(j[1]["cost"]["reason"], "too big, sorry");
  EXPECT_EQ(json::parse(format_pareto({}, Format::Json)), json::array());
}

TEST(Export, TableIsAligned) {
  auto t = format_pareto(sample_rows(), Format::Table);
  std::istringstream in(t);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 4u);  // header, rule, two rows (the description newline is flattened)
  // Columns line up: every "position"/"evaluation" cell ends where the header word ends.
  auto eval_end = lines[0].find("evaluation") + std::string("evaluation").size();
  EXPECT_EQ(lines[2].substr(0, eval_end).back(), '7');
  EXPECT_EQ(lines[3].substr(0, eval_end).back(), '2');
  EXPECT_NE(lines[1].find("----------"), std::string::npos);
  EXPECT_NE(lines[2].find("0123456789ab "), std::string::npos);  // hash shortened to 12
  EXPECT_EQ(lines[2].find("0123456789abc"), std::string::npos);
  EXPECT_NE(lines[2].find("0.912346"), std::string::npos);  // 6 significant digits
  EXPECT_NE(lines[3].find(" - "), std::string::npos);       // NaN latency
  EXPECT_EQ(lines[0].find("val_loss"), std::string::npos);  // table keeps headline metrics only
}

TEST(Export, RenderTableRightAlignsNumbers) {
  auto t = render_table({"name", "n"}, {{"a", "5"}, {"bbbb", "123"}});
  EXPECT_EQ(t, "name    n\n----  ---\na       5\nbbbb  123\n");
}

TEST(Export, Numbers) {
  EXPECT_EQ(exact_number(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(exact_number(std::nan("")), "");
  EXPECT_EQ(table_number(1048576), "1048576");
  EXPECT_EQ(table_number(0.123456789), "0.123457");
  EXPECT_EQ(table_number(std::nan("")), "-");
}

TEST(Export, RunsInAllFormats) {
  RunInfo r;
  r.id = 1;
  r.name = "exp, \"one\"";
  r.config = {{"seed", 3}};
  r.seed = 3;
  r.status = "running";
  r.started_at = "2024-01-01T00:00:00Z";
  r.evaluations = 5;
  auto parsed = parse_csv(format_runs({r}, Format::Csv));
  ASSERT_EQ(parsed.size(), 2u);
  EXPECT_EQ(parsed[1][1], r.name);
  EXPECT_EQ(parsed[1][4], "5");
  json j = json::parse(format_runs({r}, Format::Json));
  EXPECT_EQ(j[0]["name"], r.name);
  EXPECT_EQ(j[0]["config"], r.config);
  EXPECT_TRUE(j[0]["finished_at"].is_null());
  auto t = format_runs({r}, Format::Table);
  EXPECT_NE(t.find("running"), std::string::npos);
}

TEST(Export, ArchitectureReport) {
  ArchitectureRow a{5, "abcdef", "conv → lif", {{"nodes", json::array({1})}}};
  EvaluationRecord e;
  e.id = 9;
  e.run_id = 1;
  e.arch_id = 5;
  e.metrics = {{"val_accuracy", 0.8}};
  e.costs.push_back(sample_rows()[0].cost);
  e.loss_curve = {1.0, std::nan("")};
  json j = json::parse(format_architecture(a, {e}, Format::Json));
  EXPECT_EQ(j["genome"], a.genome);
  EXPECT_EQ(j["evaluations"][0]["costs"][0]["device"], "jetson-orin");
  EXPECT_TRUE(j["evaluations"][0]["loss_curve"][1].is_null());
  auto text = format_architecture(a, {e}, Format::Table);
  EXPECT_NE(text.find("architecture 5"), std::string::npos);
  EXPECT_NE(text.find("conv → lif"), std::string::npos);
  EXPECT_NE(text.find("jetson-orin"), std::string::npos);
  auto csv = parse_csv(format_architecture(a, {e}, Format::Csv));
  ASSERT_EQ(csv.size(), 2u);
  EXPECT_EQ(csv[1][3], "jetson-orin");
}

}  // namespace
