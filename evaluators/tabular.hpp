// Tabular evaluator: metrics looked up, not trained, from a CSV keyed by architecture string
// (e.g. a NAS-Bench-201 export with columns arch, valid_acc_200, test_acc_200).  Search uses
// the validation column; reporting may add the test column under another metric name.
//
// Config (JSON): {"file": "nb201.csv", "key": "arch",
//                 "metrics": {"val_accuracy": "valid_acc_{epochs}", "test_accuracy":
//                 "test_acc_200"}}
// "{epochs}" in a column name is replaced by the fidelity's epochs, so one table serves several
// fidelities.  Keys are the space's describe() strings.  The workload is the genome's static one.
#pragma once

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "evaluators/evaluator.hpp"
#include "spaces/space.hpp"

namespace hwnas::eval {

struct TabularConfig {
  std::string file;
  std::string key_column = "arch";
  std::map<std::string, std::string> metrics;  // reported metric name -> CSV column (template)
  // Throws std::invalid_argument naming the field ("tabular.metrics: must be a non-empty object").
  static TabularConfig from_json(const nlohmann::json& j);
};

// The architecture is not in the table: a configuration error (wrong space or table), never a
// failed candidate.
struct TabularMissError : SetupError {
  using SetupError::SetupError;
};

class TabularEvaluator : public Evaluator {
 public:
  // Reads the whole CSV; throws std::invalid_argument for an unreadable file, a missing key or
  // metric column, a duplicate key, or a non-numeric metric cell (naming row and column).
  TabularEvaluator(std::shared_ptr<const spaces::Space> space, TabularConfig config);

  std::string name() const override { return "tabular"; }
  // Throws TabularMissError when the architecture is missing, std::invalid_argument when a
  // templated column does not exist for this fidelity.
  EvalResult evaluate(const spaces::Genome& g, const Fidelity& f, std::uint64_t seed) override;
  bool thread_safe() const override { return true; }  // read-only after construction

  // Metrics of one architecture string at `epochs` (for "{epochs}" columns).
  std::map<std::string, double> lookup(const std::string& arch, int epochs) const;
  std::size_t rows() const { return index_.size(); }

 private:
  std::string column_for(const std::string& templ, int epochs) const;

  std::shared_ptr<const spaces::Space> space_;
  TabularConfig config_;
  std::vector<std::string> header_;
  std::unordered_map<std::string, std::size_t> column_;  // name -> index
  std::unordered_map<std::string, std::size_t> index_;   // arch -> row
  std::vector<std::vector<std::string>> cells_;          // row -> raw cells
};

}  // namespace hwnas::eval
