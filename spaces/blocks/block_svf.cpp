// svf: a Transformer² singular-value fine-tuned linear layer (Sun, Cetin, Tang 2025,
// "Transformer²: Self-adaptive LLMs"), over the last dimension of a vector or sequence, then an
// activation.  The base weight (He-initialised here, or a pretrained one loaded into the
// buffers) is frozen as U diag(sigma) V^T; only the K expert vectors z_k (scaling the singular
// values) and the dispatcher train.  dispatch = classifier: pass 1 mixes the experts with a
// softmax over a linear classifier of the mean token, pass 2 runs W' = U diag(sigma z) V^T;
// dispatch = fixed: expert `expert` always.  The layer is nn::SvfLinear (nn/svf.hpp).  See
// docs/blocks/svf.md.
#include "nn/svf.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
namespace {
using namespace blocks;

bool has_classifier(const json& p) {
  return pstr(p, "dispatch") == "classifier" && pint(p, "experts") > 1;
}

class SvfModule : public nn::Module {
 public:
  SvfModule(int in, const json& p, Rng& rng)
      : svf_(nn::he_normal(nn::Shape{pint(p, "units"), in}, in, rng),
             pbool(p, "bias") ? nn::Tensor::zeros(nn::Shape{pint(p, "units")}) : nn::Tensor(),
             pint(p, "experts")),
        act_(activation_of(pstr(p, "activation"))),
        expert_(pint(p, "expert")) {
    if (has_classifier(p))
      dispatcher_ = std::make_unique<nn::SvfDispatcher>(in, svf_.experts(), rng);
  }
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    const nn::Var& x = in.at(0);
    nn::Var alpha =
        dispatcher_ ? dispatcher_->mixture(x) : nn::svf_one_hot(x.dim(0), svf_.experts(), expert_);
    return nn::apply_activation(svf_.forward(x, alpha), act_);
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    svf_.append_named_parameters(prefix + "svf.", out);
    if (dispatcher_) dispatcher_->append_named_parameters(prefix + "dispatch.", out);
  }
  void append_named_buffers(const std::string& prefix, std::vector<nn::NamedBuffer>& out) override {
    svf_.append_named_buffers(prefix + "svf.", out);
  }
  std::string name() const override { return "svf"; }

 private:
  nn::SvfLinear svf_;
  std::unique_ptr<nn::SvfDispatcher> dispatcher_;
  nn::Activation act_;
  int expert_;
};

}  // namespace

void register_block_svf(Catalogue& c) {
  BlockKind k;
  k.name = "svf";
  k.description =
      "Transformer² SVF linear layer: a frozen base weight U diag(sigma) V^T whose singular "
      "values are scaled by expert vectors, mixed per input by a dispatch classifier";
  k.params = {ParamSpec::int_range("units", 1, 8192, 64, "output features"),
              ParamSpec::int_set("experts", {1, 2, 4}, 2, "expert vectors z_k"),
              ParamSpec::choice("dispatch", {"classifier", "fixed"}, "classifier",
                                "classifier: softmax mixture from a linear classifier of the "
                                "mean token (pass 1); fixed: always expert `expert`"),
              ParamSpec::int_range("expert", 0, 3, 0, "the expert used by dispatch fixed"),
              activation_param("none"),
              ParamSpec::boolean("bias", true, "frozen base bias")};
  k.accepts = {DataKind::Vector, DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    if (bits_of(p) != 32 || prune_of(p) > 0)
      throw std::invalid_argument(
          "svf: bits and prune are not supported yet; use bits 32, prune 0");
    if (pint(p, "expert") >= pint(p, "experts"))
      throw std::invalid_argument("svf: expert " + std::to_string(pint(p, "expert")) +
                                  " out of range for experts " +
                                  std::to_string(pint(p, "experts")) + "; choose expert < experts");
    TensorType t = single_input(in);
    t.dims.back() = pint(p, "units");
    return t;
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<SvfModule>(in[0].dims.back(), p, rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    const double din = in[0].dims.back(), dout = pint(p, "units"), K = pint(p, "experts");
    const double r = std::min(din, dout), rows = static_cast<double>(in[0].numel()) / din;
    const bool bias = pbool(p, "bias"), cls = has_classifier(p);
    w.category = hw::OpCategory::Dense;
    // Pass 2, what devices see: the GEMM with the adapted weight.
    w.macs = rows * din * dout;
    w.other_flops = static_cast<double>(out.numel()) *
                    ((bias ? 1 : 0) + activation_flops(pstr(p, "activation")));
    if (cls) {
      // Pass 1, once per input: the mean token (about rows din adds and divides for a
      // sequence), the classifier (din K MACs, K bias adds), softmax (5 K), the mixture
      // z = alpha Z (K r); then the adaptation: sigma * z (r) and W' = U diag(sigma z) V^T
      // (dout din r).
      w.macs += din * K + K * r + dout * din * r;
      w.other_flops += (rows > 1 ? rows * din : 0) + K + 5 * K + r;
    }
    // A fixed expert's W' is built once at deployment, so it costs nothing per input.
    w.params = K * r + (cls ? din * K + K : 0);  // trainable: expert vectors and classifier
    // Stored: with a classifier U, sigma, V, the experts and the classifier (W' is rebuilt per
    // input); with a fixed expert only W'.  Plus the frozen bias.
    const double stored =
        (cls ? dout * r + r + din * r + w.params : din * dout) + (bias ? dout : 0);
    w.weight_bytes = stored * (1.0 - w.sparsity) * w.bits / 8.0;
    w.kernels = cls ? 4 : 1;  // mean, classifier + softmax, reconstruction, GEMM (+ activation)
    w.eager_kernels = w.kernels + (pstr(p, "activation") != "none" ? 1 : 0);
    weighted_mapping(w, static_cast<double>(out.numel()), din, din * dout);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
