#include "search/cmd_export.hpp"

#include <fstream>
#include <iostream>
#include <memory>

#include "common/json_file.hpp"
#include "deploy/export.hpp"
#include "nn/state_dict.hpp"
#include "search/arch_ref.hpp"
#include "search/cli_checks.hpp"
#include "spaces/model_builder.hpp"

namespace hwnas::search {
namespace {

struct ExportOptions {
  std::string db, arch, genome, weights, format, out;
  std::uint64_t seed = 0;
};

// The architecture to export: a stored one (--db, --arch) or a genome JSON file (--genome).
spaces::Genome genome_to_export(const ExportOptions& o, std::string& label) {
  if (!o.genome.empty()) {
    if (!o.db.empty() || !o.arch.empty())
      throw ArchRefError("--genome: give either --genome FILE or --db FILE --arch ID, not both");
    nlohmann::json j;
    try {
      j = read_json_file(o.genome);
    } catch (const JsonFileError& e) {
      throw ArchRefError(std::string("--genome: ") + e.what());
    }
    try {
      spaces::Genome g = spaces::Genome::from_json(j);
      label = "architecture " + g.hash().substr(0, 16) + " (" + o.genome + ")";
      return g;
    } catch (const std::exception& e) {
      throw ArchRefError("--genome: '" + o.genome + "' is not a valid genome: " + e.what());
    }
  }
  if (o.db.empty() || o.arch.empty())
    throw ArchRefError("give the architecture to export: --db FILE --arch ID, or --genome FILE");
  if (o.weights.empty())
    throw ArchRefError("--weights is required with --db/--arch: the weights `hwnas train` wrote");
  auto store = open_existing_store(o.db, /*read_only=*/true);
  const std::int64_t arch_id = resolve_arch_ref(*store, o.arch);
  label = "architecture " + std::to_string(arch_id);
  return stored_genome(*store, arch_id);
}

std::string pytorch_weights_path(const std::string& py) {
  const std::string stem =
      py.size() > 3 && py.compare(py.size() - 3, 3, ".py") == 0 ? py.substr(0, py.size() - 3) : py;
  return stem + ".weights.bin";
}

void run_export(const ExportOptions& o) {
  if (o.format != "onnx" && o.format != "pytorch")
    throw ArchRefError("--format: '" + o.format + "' is not one of onnx, pytorch");
  std::string label;
  const spaces::Genome genome = genome_to_export(o, label);
  deploy::check_exportable(genome, o.format == "onnx" ? "ONNX" : "PyTorch");
  // Without --weights (only allowed with --genome) the network keeps the initial weights of
  // build_model(genome, seed): enough to time it or to check a runtime accepts the graph.
  auto model = spaces::build_model(genome, o.seed);
  if (!o.weights.empty()) {
    try {
      nn::load_state(*model, o.weights);
    } catch (const std::invalid_argument& e) {
      throw ArchRefError("--weights: " + std::string(e.what()) + " (" + label + ")");
    }
  }
  const nn::StateDict weights = nn::state_dict(*model);
  const std::string which =
      o.weights.empty() ? " with untrained initial weights (seed " + std::to_string(o.seed) + ")"
                        : "";
  if (o.format == "onnx") {
    deploy::export_onnx(genome, weights, o.out);
    std::cout << label << " exported to " << o.out << " (ONNX opset 17)" << which << "\n";
  } else {
    const std::string w = pytorch_weights_path(o.out);
    deploy::export_pytorch(genome, weights, o.out, w);
    std::cout << label << " exported to " << o.out << " (PyTorch module) and " << w
              << " (its weights)" << which << "\n";
  }
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto o = std::make_shared<ExportOptions>();
  auto* sub = app.add_subcommand(
      "export", "Export a trained architecture to ONNX or to a PyTorch module with its weights");
  sub->add_option("--db", o->db, "results database (SQLite file written by `hwnas search`)")
      ->check(db_path());
  sub->add_option("--arch", o->arch, "architecture id, or its hash (a unique prefix suffices)");
  sub->add_option("--genome", o->genome,
                  "a genome JSON file instead of --db/--arch (e.g. to time an architecture "
                  "in another runtime)");
  sub->add_option("--weights", o->weights,
                  "weights written by `hwnas train` (module state); required with --db/--arch, "
                  "optional with --genome (default: untrained initial weights)");
  sub->add_option("--seed", o->seed, "seed of the initial weights when --weights is not given")
      ->check(seed_range());
  sub->add_option("--format", o->format, "onnx or pytorch")->required();
  sub->add_option("--out", o->out, "file to write (.onnx, or the module's .py)")->required();
  sub->callback([o] {
    int code = 0;
    try {
      run_export(*o);
    } catch (const std::invalid_argument& e) {
      std::cerr << "error: " << e.what() << "\n";
      code = 2;
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      code = 1;
    }
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace hwnas::search
