// kan: a Kolmogorov-Arnold layer (nn/kan.hpp) over the last dimension (vectors, or every
// position of a sequence): each input-output edge learns a B-spline curve plus a base branch.
#include "nn/kan.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
namespace {
using namespace blocks;

nn::KanOptions kan_options(const json& p) {
  nn::KanOptions o;
  o.grid_size = pint(p, "grid");
  o.order = pint(p, "order");
  const auto r = static_cast<float>(pfloat(p, "grid_range"));
  o.grid_lo = -r;
  o.grid_hi = r;
  o.base_activation = activation_of(pstr(p, "base_activation"));
  o.spline_scale = pbool(p, "spline_scale");
  return o;
}

class KanModule : public nn::Module {
 public:
  KanModule(int in, int out, const nn::KanOptions& o, int bits, double prune, Rng& rng)
      : layer_(in, out, o, rng), bits_(bits), prune_(prune) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    // Both weight matrices go through the node's quantisation and pruning, as dense does.
    return layer_.forward_with(in.at(0), compress_weight(layer_.base_weight, bits_, prune_),
                               compress_weight(layer_.effective_spline_weight(), bits_, prune_));
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    layer_.append_named_parameters(prefix + "kan.", out);
  }
  std::string name() const override { return "kan"; }

 private:
  nn::KanLinear layer_;
  int bits_;
  double prune_;
};
}  // namespace

void register_block_kan(Catalogue& c) {
  BlockKind k;
  k.name = "kan";
  k.description =
      "Kolmogorov-Arnold layer over the last dimension: a learned B-spline curve plus a base "
      "activation branch on every input-output edge (efficient-KAN: one basis, one matmul)";
  k.params = {
      ParamSpec::int_range("units", 1, 8192, 64, "output features"),
      ParamSpec::int_set("grid", {3, 5, 8, 10, 20}, 5, "spline intervals G over the grid range"),
      ParamSpec::int_set("order", {1, 2, 3}, 3, "spline order k (3 = cubic)"),
      ParamSpec::choice("base_activation", {"silu", "relu", "gelu", "tanh", "none"}, "silu",
                        "activation b(x) of the residual base branch (none = identity)"),
      ParamSpec::float_range("grid_range", 0.5, 8.0, 1.0,
                             "splines cover [-r, r]; outside it only the base branch acts"),
      ParamSpec::boolean("spline_scale", true, "learned per-edge scale of each spline")};
  k.accepts = {DataKind::Vector, DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    TensorType t = single_input(in);
    t.dims.back() = pint(p, "units");
    return t;
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<KanModule>(in[0].dims.back(), pint(p, "units"), kan_options(p),
                                       bits_of(p), prune_of(p), rng);
  };
  // Exact forward counts of KanLinear::forward_with, per row (position) r of the input:
  //   base matmul din dout MACs, spline matmul din (G+k) dout MACs;
  //   per input element: the basis recursion (nn::bspline_basis_flops(k)) and b(x);
  //   per output element: 1 add joining the branches; once per pass: din dout (G+k) products
  //   forming the scaled spline weights.
  k.count = [](const std::vector<TensorType>& in, const TensorType& out, const json& p,
               hw::NodeWorkload& w) {
    const double din = in[0].dims.back(), dout = pint(p, "units");
    const double rows = static_cast<double>(in[0].numel()) / din;
    const double nb = pint(p, "grid") + pint(p, "order");
    const bool scale = pbool(p, "spline_scale");
    w.category = hw::OpCategory::Dense;
    w.macs = rows * din * dout * (1 + nb);
    w.params = din * dout * (1 + nb) + (scale ? din * dout : 0);
    w.other_flops = rows * din *
                        (nn::bspline_basis_flops(pint(p, "order")) +
                         activation_flops(pstr(p, "base_activation"))) +
                    static_cast<double>(out.numel()) + (scale ? din * dout * nb : 0);
    weighted_mapping(w, static_cast<double>(out.numel()), din * (1 + nb), din * dout * (1 + nb));
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
