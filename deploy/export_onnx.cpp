// ONNX export: one graph node sequence per genome node, in topological order, with the genome's
// input as "input" [batch, ...] and the sink's output as "output".  Opset 17 (what Debian's
// onnx 1.12 checks); GELU is composed from its tanh form (the Gelu operator arrives in opset 20).
#include <onnx/onnx_pb.h>

#include <cmath>
#include <limits>

#include "deploy/export.hpp"
#include "nn/ops.hpp"
#include "nn/state_file.hpp"
#include "spaces/catalogue.hpp"

namespace hwnas::deploy {
namespace {

using nlohmann::json;
using spaces::DataKind;
using spaces::TensorType;

constexpr int kOpset = 17;
constexpr float kNormEps = 1e-5f;  // nn::BatchNormState and nn::layer_norm defaults

class GraphWriter {
 public:
  explicit GraphWriter(onnx::GraphProto* g) : g_(g) {}
  onnx::GraphProto* g() { return g_; }

  std::string fresh(const std::string& hint) { return hint + "_" + std::to_string(counter_++); }

  onnx::NodeProto* op(const std::string& type, const std::vector<std::string>& inputs,
                      const std::string& output) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(type);
    n->set_name(output);
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(output);
    return n;
  }
  // A single-output op whose output gets a fresh name; returns that name.
  std::string apply(const std::string& type, const std::vector<std::string>& inputs,
                    const std::string& hint, onnx::NodeProto** node = nullptr) {
    std::string out = fresh(hint);
    onnx::NodeProto* n = op(type, inputs, out);
    if (node) *node = n;
    return out;
  }

  std::string floats(const std::string& name, const std::vector<std::int64_t>& dims,
                     const float* data) {
    onnx::TensorProto* t = g_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    std::int64_t n = 1;
    for (auto d : dims) {
      t->add_dims(d);
      n *= d;
    }
    t->set_raw_data(std::string(reinterpret_cast<const char*>(data),
                                static_cast<std::size_t>(n) * sizeof(float)));
    return name;
  }
  std::string tensor(const std::string& name, const nn::Tensor& x) {
    std::vector<std::int64_t> dims;
    for (int d : x.shape().to_vector()) dims.push_back(d);
    return floats(name, dims, x.data());
  }
  std::string scalar(float v) { return floats(fresh("const"), {}, &v); }
  std::string int64s(const std::vector<std::int64_t>& v) {
    onnx::TensorProto* t = g_->add_initializer();
    std::string name = fresh("shape");
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<std::int64_t>(v.size()));
    for (auto x : v) t->add_int64_data(x);
    return name;
  }
  // A zero point of 0: a scalar (n == 0) or a vector of n zeros for per-axis quantisation.
  std::string int8_zero(std::int64_t n = 0) {
    onnx::TensorProto* t = g_->add_initializer();
    std::string name = fresh("zero_point");
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT8);
    if (n > 0) t->add_dims(n);
    for (std::int64_t i = 0; i < std::max<std::int64_t>(n, 1); ++i) t->add_int32_data(0);
    return name;
  }

  static void attr(onnx::NodeProto* n, const std::string& name, std::int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& name,
                   const std::vector<std::int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }

 private:
  onnx::GraphProto* g_;
  int counter_ = 0;
};

// Emits one genome node.
class NodeEmitter {
 public:
  NodeEmitter(GraphWriter& w, const nn::StateDict& sd, std::string prefix, const json& params)
      : w_(w), sd_(sd), prefix_(std::move(prefix)), p_(params) {}

  const nn::Tensor& state(const std::string& name) const {
    auto it = sd_.find(prefix_ + name);
    if (it == sd_.end()) throw ExportError("export to ONNX: weights lack '" + prefix_ + name + "'");
    return it->second;
  }
  int bits() const { return p_.value("bits", 32); }
  double prune() const { return p_.value("prune", 0.0); }

  // The weight as the block uses it: pruned, then fake-quantised through QDQ when bits < 16.
  // `transpose` stores a [out, in] matrix as [in, out] for MatMul (same values, same scale).
  std::string weight(const std::string& name, bool transpose = false) {
    nn::Tensor t = pruned_weight(state(name), prune());
    const std::vector<float> scales = quant_scales(t, bits());  // per row of [out, ...]
    if (transpose) {
      const int r = t.dim(0), c = t.dim(1);
      nn::Tensor tt(nn::Shape{c, r});
      for (int i = 0; i < r; ++i)
        for (int j = 0; j < c; ++j) tt.data()[j * r + i] = t.data()[i * c + j];
      t = tt;
    }
    std::string init = w_.tensor(prefix_ + name + (transpose ? ".T" : ""), t);
    if (scales.empty()) return init;
    const auto channels = static_cast<std::int64_t>(scales.size());
    // Per-axis QDQ (opset 13): the output channel is axis 0, or 1 once transposed.
    const std::string s =
        w_.floats(prefix_ + name + ".scale",
                  channels > 1 ? std::vector<std::int64_t>{channels} : std::vector<std::int64_t>{},
                  scales.data());
    const std::string zp = w_.int8_zero(channels > 1 ? channels : 0);
    onnx::NodeProto* qn = nullptr;
    onnx::NodeProto* dqn = nullptr;
    const std::string q = w_.apply("QuantizeLinear", {init, s, zp}, prefix_ + name + ".q", &qn);
    const std::string dq = w_.apply("DequantizeLinear", {q, s, zp}, prefix_ + name + ".dq", &dqn);
    if (channels > 1) {
      GraphWriter::attr(qn, "axis", std::int64_t{transpose ? 1 : 0});
      GraphWriter::attr(dqn, "axis", std::int64_t{transpose ? 1 : 0});
    }
    return dq;
  }
  std::string plain(const std::string& name) { return w_.tensor(prefix_ + name, state(name)); }

  std::string activation(const std::string& x, const std::string& fn) {
    if (fn == "none") return x;
    if (fn == "relu") return w_.apply("Relu", {x}, "relu");
    if (fn == "sigmoid") return w_.apply("Sigmoid", {x}, "sigmoid");
    if (fn == "tanh") return w_.apply("Tanh", {x}, "tanh");
    if (fn == "silu") return w_.apply("Mul", {x, w_.apply("Sigmoid", {x}, "sigmoid")}, "silu");
    if (fn == "gelu") {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), nn/ops_basic.cpp's form.
      const std::string x3 = w_.apply("Mul", {w_.apply("Mul", {x, x}, "sq"), x}, "cube");
      const std::string inner =
          w_.apply("Add", {x, w_.apply("Mul", {x3, w_.scalar(0.044715f)}, "c")}, "inner");
      const std::string t =
          w_.apply("Tanh", {w_.apply("Mul", {inner, w_.scalar(0.7978845608028654f)}, "k")}, "tanh");
      const std::string half = w_.apply("Mul", {x, w_.scalar(0.5f)}, "half");
      return w_.apply("Mul", {half, w_.apply("Add", {t, w_.scalar(1.0f)}, "one_plus")}, "gelu");
    }
    throw ExportError("export to ONNX: unknown activation '" + fn + "'");
  }

  std::string batch_norm(const std::string& x, const std::string& bn) {
    onnx::NodeProto* n = nullptr;
    std::string y = w_.apply("BatchNormalization",
                             {x, plain(bn + "gamma"), plain(bn + "beta"),
                              plain(bn + "running_mean"), plain(bn + "running_var")},
                             "bn", &n);
    GraphWriter::attr(n, "epsilon", kNormEps);
    return y;
  }

  // spaces/blocks/block_util.hpp ConvUnit: [pre-act] conv [BN] [post-act].
  std::string conv_unit(const std::string& x, const std::string& unit, int kernel, int stride,
                        int groups, bool bn, const std::string& pre, const std::string& post) {
    std::string h = activation(x, pre);
    std::vector<std::string> in{h, weight(unit + "conv.weight")};
    if (sd_.count(prefix_ + unit + "conv.bias")) in.push_back(plain(unit + "conv.bias"));
    onnx::NodeProto* n = nullptr;
    h = w_.apply("Conv", in, "conv", &n);
    const std::int64_t pad = (kernel - 1) / 2;
    GraphWriter::attr(n, "kernel_shape", std::vector<std::int64_t>{kernel, kernel});
    GraphWriter::attr(n, "strides", std::vector<std::int64_t>{stride, stride});
    GraphWriter::attr(n, "pads", std::vector<std::int64_t>{pad, pad, pad, pad});
    GraphWriter::attr(n, "group", static_cast<std::int64_t>(groups));
    if (bn) h = batch_norm(h, unit + "bn.");
    return activation(h, post);
  }

  std::string linear(const std::string& x, const std::string& lin) {
    std::string y = w_.apply("MatMul", {x, weight(lin + "weight", true)}, "matmul");
    if (sd_.count(prefix_ + lin + "bias")) y = w_.apply("Add", {y, plain(lin + "bias")}, "bias");
    return y;
  }

  std::string pool(const std::string& x, bool max, int kernel, int stride, int pad) {
    onnx::NodeProto* n = nullptr;
    std::string y = w_.apply(max ? "MaxPool" : "AveragePool", {x}, max ? "maxpool" : "avgpool", &n);
    GraphWriter::attr(n, "kernel_shape", std::vector<std::int64_t>{kernel, kernel});
    GraphWriter::attr(n, "strides", std::vector<std::int64_t>{stride, stride});
    GraphWriter::attr(n, "pads", std::vector<std::int64_t>{pad, pad, pad, pad});
    if (!max) GraphWriter::attr(n, "count_include_pad", std::int64_t{0});
    return y;
  }

  std::string transpose(const std::string& x, const std::vector<std::int64_t>& perm) {
    onnx::NodeProto* n = nullptr;
    std::string y = w_.apply("Transpose", {x}, "transpose", &n);
    GraphWriter::attr(n, "perm", perm);
    return y;
  }

  // nn::rope on a [N, L, d] query or key: channel pairs (2j, 2j+1) viewed as [N, L, d/2, 2],
  // split, rotated with nn::rope_cos_sin's tables (pair j of head h uses angle i = j mod d_h/2)
  // and put back.  Sub is written as an add of -sin so that only Mul / Add are needed.
  std::string rope(const std::string& x, std::int64_t len, std::int64_t d, int heads) {
    const std::int64_t dh = d / heads, half = dh / 2;
    std::vector<float> c, s;
    nn::rope_cos_sin(static_cast<int>(len), static_cast<int>(dh), nn::kRopeBase, c, s);
    std::vector<float> cos_t(static_cast<std::size_t>(len * d / 2)), sin_t(cos_t.size()),
        neg_sin_t(cos_t.size());
    for (std::int64_t m = 0; m < len; ++m)
      for (std::int64_t j = 0; j < d / 2; ++j) {
        const auto at = static_cast<std::size_t>(m * half + j % half);
        const auto to = static_cast<std::size_t>(m * (d / 2) + j);
        cos_t[to] = c[at];
        sin_t[to] = s[at];
        neg_sin_t[to] = -s[at];
      }
    const std::string pairs = w_.apply("Reshape", {x, w_.int64s({0, len, d / 2, 2})}, "pairs");
    onnx::NodeProto* n = w_.g()->add_node();
    n->set_op_type("Split");
    n->add_input(pairs);
    n->add_input(w_.int64s({1, 1}));
    const std::string x0 = w_.fresh("rope_even"), x1 = w_.fresh("rope_odd");
    n->add_output(x0);
    n->add_output(x1);
    n->set_name(x0);
    GraphWriter::attr(n, "axis", std::int64_t{3});
    const std::vector<std::int64_t> dims{len, d / 2, 1};
    const std::string cs = w_.floats(w_.fresh("rope_cos"), dims, cos_t.data());
    const std::string sn = w_.floats(w_.fresh("rope_sin"), dims, sin_t.data());
    const std::string nsn = w_.floats(w_.fresh("rope_neg_sin"), dims, neg_sin_t.data());
    const std::string y0 = w_.apply(
        "Add", {w_.apply("Mul", {x0, cs}, "rope"), w_.apply("Mul", {x1, nsn}, "rope")}, "rope");
    const std::string y1 = w_.apply(
        "Add", {w_.apply("Mul", {x0, sn}, "rope"), w_.apply("Mul", {x1, cs}, "rope")}, "rope");
    onnx::NodeProto* cat = nullptr;
    const std::string joined = w_.apply("Concat", {y0, y1}, "rope", &cat);
    GraphWriter::attr(cat, "axis", std::int64_t{3});
    return w_.apply("Reshape", {joined, w_.int64s({0, len, d})}, "rope");
  }

  // nn::MultiHeadSelfAttention with compressed projections (spaces/blocks/block_attention.cpp):
  // per head softmax(scale * Q K^T + mask) V, the mask holding -inf where a key is not seen;
  // with rope, queries and keys rotated first.
  std::string attention(const std::string& x, const TensorType& t, int heads, bool causal,
                        int window, bool with_rope) {
    const std::int64_t len = t.dims[0], d = t.dims[1], dh = d / heads;
    const std::string qkv = linear(x, "attn.qkv.");
    onnx::NodeProto* n = w_.g()->add_node();
    n->set_op_type("Split");
    n->add_input(qkv);
    n->add_input(w_.int64s({d, d, d}));
    std::string parts[3];
    for (auto& p : parts) {
      p = w_.fresh("qkv_part");
      n->add_output(p);
    }
    n->set_name(parts[0]);
    GraphWriter::attr(n, "axis", std::int64_t{2});
    const std::string heads_shape = w_.int64s({0, len, heads, dh});
    auto split_heads = [&](const std::string& y, const std::vector<std::int64_t>& perm) {
      return transpose(w_.apply("Reshape", {y, heads_shape}, "heads"), perm);
    };
    if (with_rope) {
      parts[0] = rope(parts[0], len, d, heads);
      parts[1] = rope(parts[1], len, d, heads);
    }
    const std::string q = split_heads(parts[0], {0, 2, 1, 3});   // [N, H, L, dh]
    const std::string kt = split_heads(parts[1], {0, 2, 3, 1});  // [N, H, dh, L]
    const std::string v = split_heads(parts[2], {0, 2, 1, 3});   // [N, H, L, dh]
    const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
    std::string s =
        w_.apply("Mul", {w_.apply("MatMul", {q, kt}, "qk"), w_.scalar(scale)}, "scores");
    if (causal || window > 0) {
      std::vector<float> mask(static_cast<std::size_t>(len * len), 0.0f);
      for (std::int64_t i = 0; i < len; ++i)
        for (std::int64_t j = 0; j < len; ++j) {
          bool seen = causal ? j <= i : true;
          if (window > 0) seen = seen && (causal ? i - j < window : std::llabs(i - j) < window);
          if (!seen)
            mask[static_cast<std::size_t>(i * len + j)] = -std::numeric_limits<float>::infinity();
        }
      s = w_.apply("Add", {s, w_.floats(prefix_ + "attn.mask", {len, len}, mask.data())}, "masked");
    }
    onnx::NodeProto* sm = nullptr;
    const std::string p = w_.apply("Softmax", {s}, "softmax", &sm);
    GraphWriter::attr(sm, "axis", std::int64_t{-1});
    const std::string o = transpose(w_.apply("MatMul", {p, v}, "pv"), {0, 2, 1, 3});
    const std::string merged = w_.apply("Reshape", {o, w_.int64s({0, len, d})}, "merge");
    return linear(merged, "attn.out.");
  }

 private:
  GraphWriter& w_;
  const nn::StateDict& sd_;
  std::string prefix_;
  json p_;
};

std::string emit_node(GraphWriter& w, const nn::StateDict& sd, const spaces::Genome& g,
                      spaces::Genome::NodeId v, const std::vector<std::string>& ins) {
  const spaces::BlockNode& b = g.node(v);
  const json p = spaces::catalogue().at(b.kind).resolve(b.params);
  const std::string& kind = b.kind;
  NodeEmitter e(w, sd, "n" + std::to_string(v) + ".", p);
  const TensorType in_type = g.node(g.inputs_of(v).at(0)).out;
  auto s = [&](const char* k) { return p.at(k).get<std::string>(); };
  auto i = [&](const char* k) { return p.at(k).get<int>(); };
  if (kind == "conv")
    return e.conv_unit(ins[0], "", i("kernel"), i("stride"), 1, p.at("batch_norm").get<bool>(),
                       "none", s("activation"));
  if (kind == "dwconv")
    return e.conv_unit(ins[0], "", i("kernel"), i("stride"), in_type.dims[0],
                       p.at("batch_norm").get<bool>(), "none", s("activation"));
  if (kind == "nor_conv_1x1" || kind == "nor_conv_3x3")
    return e.conv_unit(ins[0], "", kind == "nor_conv_1x1" ? 1 : 3, 1, 1, true, "relu", "none");
  if (kind == "nb201_reduction") {
    const std::string y = e.conv_unit(e.conv_unit(ins[0], "a.", 3, 2, 1, true, "relu", "none"),
                                      "b.", 3, 1, 1, true, "relu", "none");
    onnx::NodeProto* n = nullptr;
    const std::string sc =
        w.apply("Conv", {e.pool(ins[0], false, 2, 2, 0), e.weight("shortcut.weight")}, "conv", &n);
    GraphWriter::attr(n, "kernel_shape", std::vector<std::int64_t>{1, 1});
    return w.apply("Add", {y, sc}, "residual");
  }
  if (kind == "dense") return e.activation(e.linear(ins[0], "linear."), s("activation"));
  if (kind == "head") return e.linear(ins[0], "linear.");
  if (kind == "activation") return e.activation(ins[0], s("fn"));
  if (kind == "norm") {
    const bool image = in_type.kind == DataKind::Image;
    if (s("type") == "batch") {
      if (in_type.kind != DataKind::Sequence) return e.batch_norm(ins[0], "bn.");
      return e.transpose(e.batch_norm(e.transpose(ins[0], {0, 2, 1}), "bn."), {0, 2, 1});
    }
    const std::string x = image ? e.transpose(ins[0], {0, 3, 2, 1}) : ins[0];
    onnx::NodeProto* n = nullptr;
    std::string y =
        w.apply("LayerNormalization", {x, e.plain("ln.gamma"), e.plain("ln.beta")}, "ln", &n);
    GraphWriter::attr(n, "axis", std::int64_t{-1});
    GraphWriter::attr(n, "epsilon", kNormEps);
    return image ? e.transpose(y, {0, 3, 2, 1}) : y;
  }
  if (kind == "pool")
    return e.pool(ins[0], s("op") == "max", i("kernel"), i("stride"), (i("kernel") - 1) / 2);
  if (kind == "avg_pool_3x3") return e.pool(ins[0], false, 3, 1, 1);
  if (kind == "global_pool") {
    if (in_type.kind == DataKind::Image) {
      onnx::NodeProto* n = nullptr;
      const std::string y =
          w.apply("Flatten", {w.apply("GlobalAveragePool", {ins[0]}, "gap")}, "flatten", &n);
      GraphWriter::attr(n, "axis", std::int64_t{1});
      return y;
    }
    onnx::NodeProto* n = nullptr;
    const std::string y = w.apply("ReduceMean", {ins[0]}, "mean", &n);
    GraphWriter::attr(n, "axes", std::vector<std::int64_t>{1});
    GraphWriter::attr(n, "keepdims", std::int64_t{0});
    return y;
  }
  if (kind == "flatten") {
    onnx::NodeProto* n = nullptr;
    const std::string y = w.apply("Flatten", {ins[0]}, "flatten", &n);
    GraphWriter::attr(n, "axis", std::int64_t{1});
    return y;
  }
  if (kind == "add") {
    std::string y = ins[0];
    for (std::size_t k = 1; k < ins.size(); ++k) y = w.apply("Add", {y, ins[k]}, "add");
    return y;
  }
  if (kind == "concat") {
    onnx::NodeProto* n = nullptr;
    const std::string y = w.apply("Concat", ins, "concat", &n);
    GraphWriter::attr(n, "axis", std::int64_t{in_type.kind == DataKind::Image ? 1 : -1});
    return y;
  }
  if (kind == "none") return w.apply("Mul", {ins[0], w.scalar(0.0f)}, "zero");
  if (kind == "skip_connect") return w.apply("Identity", {ins[0]}, "identity");
  if (kind == "attention" || kind == "sliding_attention")
    return e.attention(ins[0], in_type, i("heads"), p.at("causal").get<bool>(),
                       kind == "sliding_attention" ? i("window") : 0, p.at("rope").get<bool>());
  throw ExportError("export to ONNX: node " + std::to_string(v) + " is a '" + kind +
                    "' block, which has no faithful ONNX form");
}

void set_value_info(onnx::ValueInfoProto* vi, const std::string& name, const TensorType& t) {
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = tt->mutable_shape();
  shape->add_dim()->set_dim_param("batch");
  for (int d : t.dims) shape->add_dim()->set_dim_value(d);
}

}  // namespace

void export_onnx(const spaces::Genome& genome, const nn::StateDict& trained,
                 const std::string& path) {
  spaces::Genome g = genome;
  g.validate();
  nn::StateDict weights = trained;  // LoRA adapters folded into their base weights
  merge_lora(g, weights);
  check_exportable(g, "ONNX");
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("hwnas");
  model.set_model_version(1);
  model.set_doc_string("hwnas architecture " + g.hash());
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("hwnas_" + g.hash());
  GraphWriter w(graph);

  std::vector<std::string> name_of(g.num_nodes());
  name_of[g.input_node()] = "input";
  set_value_info(graph->add_input(), "input", g.input_type());
  for (auto v : g.topological_order()) {
    if (v == g.input_node()) continue;
    std::vector<std::string> ins;
    for (auto u : g.inputs_of(v)) ins.push_back(name_of[u]);
    name_of[v] = emit_node(w, weights, g, v, ins);
  }
  const auto out = g.output_node();
  graph->add_node()->CopyFrom(onnx::NodeProto());
  onnx::NodeProto* id = graph->mutable_node(graph->node_size() - 1);
  id->set_op_type("Identity");
  id->set_name("output");
  id->add_input(name_of[out]);
  id->add_output("output");
  set_value_info(graph->add_output(), "output", g.node(out).out);

  std::string bytes;
  if (!model.SerializeToString(&bytes))
    throw std::runtime_error("export to ONNX: protobuf serialisation failed");
  nn::write_file_atomically(path, bytes);
}

}  // namespace hwnas::deploy
