// Helpers shared by the block files: typed param access, the batched nn shape of a type,
// convolution arithmetic and the conv unit ([pre-act] conv [BN] [act]) several blocks reuse.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/layers.hpp"
#include "nn/ops.hpp"
#include "spaces/catalogue.hpp"
#include "spaces/compress.hpp"

namespace hwnas::spaces::blocks {

using nlohmann::json;

inline int pint(const json& p, const char* k) { return p.at(k).get<int>(); }
inline double pfloat(const json& p, const char* k) { return p.at(k).get<double>(); }
inline bool pbool(const json& p, const char* k) { return p.at(k).get<bool>(); }
inline std::string pstr(const json& p, const char* k) { return p.at(k).get<std::string>(); }
inline int bits_of(const json& p) { return pint(p, "bits"); }
inline double prune_of(const json& p) { return pfloat(p, "prune"); }

// Structured channel pruning, declared by the kinds whose output width it removes (conv, dense,
// moe's expert hidden width): the layer is built at kept_channels(width, ratio).
inline ParamSpec channel_prune_param(const std::string& what) {
  return ParamSpec::float_range("channel_prune", 0.0, 0.9, 0.0,
                                "fraction of " + what +
                                    " removed (structured: the layer is built and trained at the "
                                    "kept width, so shapes, MACs and latency drop)");
}
// The kept width of a param `key` under the node's channel_prune (0 when the kind has none).
inline int kept_width(const json& p, const char* key) {
  const auto it = p.find("channel_prune");
  return kept_channels(pint(p, key), it == p.end() ? 0.0 : it->get<double>());
}
// Records the kept and declared width in the workload (NodeWorkload::channels).
inline void count_channels(const json& p, const char* key, hw::NodeWorkload& w) {
  w.channels = kept_width(p, key);
  w.channels_full = pint(p, key);
}

inline ParamSpec activation_param(const std::string& def) {
  return ParamSpec::choice("activation", {"relu", "gelu", "silu", "tanh", "sigmoid", "none"}, def,
                           "activation after the block");
}

inline nn::Activation activation_of(const std::string& name) {
  if (name == "relu") return nn::Activation::Relu;
  if (name == "gelu") return nn::Activation::Gelu;
  if (name == "silu") return nn::Activation::Silu;
  if (name == "tanh") return nn::Activation::Tanh;
  if (name == "sigmoid") return nn::Activation::Sigmoid;
  return nn::Activation::None;
}

// Approximate arithmetic per element of each activation, for the workload's other_flops.
inline double activation_flops(const std::string& name) {
  if (name == "none") return 0;
  if (name == "relu") return 1;
  if (name == "gelu") return 8;
  if (name == "silu") return 5;
  return 4;  // tanh, sigmoid
}

// LoRA adapters on the projections of a block (dense, attention): rank 0 means none.  With a
// rank the block's base weights are frozen (nn/lora.hpp), for fine-tuning a pretrained base.
struct LoraParams {
  int rank = 0;
  double alpha = 8.0;
};
inline ParamSpec lora_rank_param() {
  return ParamSpec::int_set("lora_rank", {0, 2, 4, 8, 16}, 0,
                            "LoRA adapter rank (0: none; > 0 freezes the base weights)");
}
inline ParamSpec lora_alpha_param() {
  return ParamSpec::float_range("lora_alpha", 1.0, 64.0, 8.0,
                                "LoRA scale numerator: the update is (alpha / rank) B A");
}
inline LoraParams lora_of(const json& p) { return {pint(p, "lora_rank"), pfloat(p, "lora_alpha")}; }

// "Same" padding for odd kernels; for a stride-2 pool with kernel 2 it is 0.
inline int same_padding(int kernel) { return (kernel - 1) / 2; }

inline int conv_out_size(int in, int kernel, int stride, int pad) {
  if (in + 2 * pad < kernel)
    throw std::invalid_argument("kernel " + std::to_string(kernel) + " larger than padded input " +
                                std::to_string(in + 2 * pad));
  return (in + 2 * pad - kernel) / stride + 1;
}

inline const TensorType& single_input(const std::vector<TensorType>& in) {
  if (in.size() != 1) throw std::invalid_argument("expects exactly one input");
  return in[0];
}

// [pre-activation] conv [batch norm] [post-activation], with the node's weight compression.
class ConvUnit {
 public:
  ConvUnit(int cin, int cout, int kernel, int stride, int groups, bool batch_norm,
           nn::Activation pre, nn::Activation post, int bits, double prune, Rng& rng)
      : conv_(cin, cout, kernel, nn::Conv2dOptions{stride, same_padding(kernel), groups},
              !batch_norm, rng),
        pre_(pre),
        post_(post),
        bits_(bits),
        prune_(prune) {
    if (batch_norm) bn_ = std::make_unique<nn::BatchNorm>(cout);
  }
  nn::Var forward(const nn::Var& x, bool training) {
    nn::Var h = nn::apply_activation(x, pre_);
    h = nn::conv2d(h, compress_weight(conv_.weight, bits_, prune_), conv_.bias, conv_.options);
    // Batch norm then ReLU (the cnn space's blocks) as one op: one activation pass less.
    if (bn_ && post_ == nn::Activation::Relu) return bn_->forward_relu(h, training);
    if (bn_) h = bn_->forward(h, training);
    return nn::apply_activation(h, post_);
  }
  // conv.weight, conv.bias (without batch norm), bn.gamma, bn.beta; buffers bn.running_*.
  void append_named_parameters(const std::string& prefix, std::vector<nn::NamedParameter>& out) {
    conv_.append_named_parameters(prefix + "conv.", out);
    if (bn_) bn_->append_named_parameters(prefix + "bn.", out);
  }
  void append_named_buffers(const std::string& prefix, std::vector<nn::NamedBuffer>& out) {
    if (bn_) bn_->append_named_buffers(prefix + "bn.", out);
  }

 private:
  nn::Conv2d conv_;
  std::unique_ptr<nn::BatchNorm> bn_;
  nn::Activation pre_, post_;
  int bits_;
  double prune_;
};

// A node module made of one ConvUnit.
class ConvModule : public nn::Module {
 public:
  ConvModule(std::string name, ConvUnit unit) : name_(std::move(name)), unit_(std::move(unit)) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    return unit_.forward(in.at(0), ctx.training);
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    unit_.append_named_parameters(prefix, out);
  }
  void append_named_buffers(const std::string& prefix, std::vector<nn::NamedBuffer>& out) override {
    unit_.append_named_buffers(prefix, out);
  }
  std::string name() const override { return name_; }

 private:
  std::string name_;
  ConvUnit unit_;
};

// Neuromorphic mapping and shared fields of a weighted node.
inline void weighted_mapping(hw::NodeWorkload& w, double neurons, double fan_in, double synapses) {
  w.neurons = neurons;
  w.fan_in = fan_in;
  w.synapses = synapses;
}

}  // namespace hwnas::spaces::blocks
