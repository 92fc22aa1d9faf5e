// Exporters of a trained genome model to deployment formats, one file per format:
//
//   export_onnx.cpp     an ONNX model (opset 17) through Debian's libonnx protobuf classes, with
//                       the standard operator for every block kind that has one; layers with
//                       bits < 16 carry QuantizeLinear/DequantizeLinear around their weight
//                       (int8, symmetric per-tensor scale max|w| / (2^(bits-1) - 1), exactly the
//                       grid spaces/compress.cpp trains with; 4-bit values are a subset of it).
//   export_pytorch.cpp  a PyTorch module source file (.py) that rebuilds the network with
//                       torch.nn.functional ops and reads its weights from an hwnas module-state
//                       file (nn/state_file.hpp; the .py parses that documented format itself).
//
// Both reproduce the evaluation-mode forward pass of spaces/model_builder.cpp: batch norm with
// running statistics, pruning applied to the weights, fake quantisation as trained.  A block
// kind with no faithful form in the format (kan, cfc, ltc, spiking ..., or any kind added later)
// is refused with an ExportError naming the node and the kind; nothing is written then.
// Files are written to a temporary name and renamed when complete.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "nn/state_dict.hpp"
#include "spaces/genome.hpp"

namespace hwnas::deploy {

struct ExportError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Block kinds both exporters reproduce exactly.
const std::vector<std::string>& exportable_kinds();
// Throws ExportError naming the first node whose kind is not exportable to `format`.
void check_exportable(const spaces::Genome& g, const std::string& format);

// Folds every LoRA adapter (dense and attention nodes with lora_rank > 0, nn/lora.hpp) into its
// base weight, W += (lora_alpha / lora_rank) B A (QKV rows q, k, v in order), removes the
// adapters' tensors from `weights` and the LoRA params from the nodes: the plain network that
// computes the same function.  The exporters call it first, so a fine-tuned model deploys as
// the merged layers the hardware models cost.  Returns the number of adapters merged.
int merge_lora(spaces::Genome& g, nn::StateDict& weights);

// `weights` must be the complete state of build_model(g, ...) (load it with nn::load_state into
// a freshly built model first: that checks every name and shape).
void export_onnx(const spaces::Genome& g, const nn::StateDict& weights, const std::string& path);

// Writes `py_path` and the weights it loads, `weights_path` (module-state format).  The .py
// loads, by default, the file with weights_path's file name from its own folder.
void export_pytorch(const spaces::Genome& g, const nn::StateDict& weights,
                    const std::string& py_path, const std::string& weights_path);

// The weight a block uses in its forward pass before quantisation: pruned by magnitude as
// spaces::compress_weight does (ties by index).  Unchanged when prune == 0.
nn::Tensor pruned_weight(const nn::Tensor& w, double prune);
// The quantisation scales of a (pruned) weight at `bits`, as spaces::compress_weight uses them:
// one per output channel (dim 0) of a weight of rank >= 2, one for a vector, each
// max|w_channel| / (2^(bits-1) - 1); an all-zero channel gets 1 (its zeros stay zeros).  Empty
// when bits >= 16 (no quantisation).
std::vector<float> quant_scales(const nn::Tensor& w, int bits);

}  // namespace hwnas::deploy
