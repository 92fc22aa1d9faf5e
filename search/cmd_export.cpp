#include "search/cmd_export.hpp"

#include <iostream>
#include <memory>

#include "deploy/export.hpp"
#include "nn/state_dict.hpp"
#include "search/arch_ref.hpp"
#include "spaces/model_builder.hpp"

namespace hwnas::search {
namespace {

struct ExportOptions {
  std::string db, arch, weights, format, out;
};

std::string pytorch_weights_path(const std::string& py) {
  const std::string stem =
      py.size() > 3 && py.compare(py.size() - 3, 3, ".py") == 0 ? py.substr(0, py.size() - 3) : py;
  return stem + ".weights.bin";
}

void run_export(const ExportOptions& o) {
  if (o.format != "onnx" && o.format != "pytorch")
    throw ArchRefError("--format: '" + o.format + "' is not one of onnx, pytorch");
  auto store = open_existing_store(o.db, /*read_only=*/true);
  const std::int64_t arch_id = resolve_arch_ref(*store, o.arch);
  const spaces::Genome genome = stored_genome(*store, arch_id);
  deploy::check_exportable(genome, o.format == "onnx" ? "ONNX" : "PyTorch");
  auto model = spaces::build_model(genome, 0);
  try {
    nn::load_state(*model, o.weights);
  } catch (const std::invalid_argument& e) {
    throw ArchRefError("--weights: " + std::string(e.what()) + " (architecture " +
                       std::to_string(arch_id) + ")");
  }
  const nn::StateDict weights = nn::state_dict(*model);
  if (o.format == "onnx") {
    deploy::export_onnx(genome, weights, o.out);
    std::cout << "architecture " << arch_id << " exported to " << o.out << " (ONNX opset 17)\n";
  } else {
    const std::string w = pytorch_weights_path(o.out);
    deploy::export_pytorch(genome, weights, o.out, w);
    std::cout << "architecture " << arch_id << " exported to " << o.out << " (PyTorch module) and "
              << w << " (its weights)\n";
  }
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto o = std::make_shared<ExportOptions>();
  auto* sub = app.add_subcommand(
      "export", "Export a trained architecture to ONNX or to a PyTorch module with its weights");
  sub->add_option("--db", o->db, "results database (SQLite file written by `hwnas search`)")
      ->required();
  sub->add_option("--arch", o->arch, "architecture id, or its hash (a unique prefix suffices)")
      ->required();
  sub->add_option("--weights", o->weights, "weights written by `hwnas train` (module state)")
      ->required();
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
