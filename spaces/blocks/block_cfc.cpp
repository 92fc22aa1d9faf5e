// cfc: a closed-form continuous-time (CfC) recurrent layer (Hasani et al. 2022) over a sequence
// [L, F] -> [L, units] (or the last state [units]), on the fused time loop: one graph node per
// sequence.  Optional NCP sparse wiring (backbone_layers must then be 0).  See
// docs/blocks/liquid.md for the equations and how each hyperparameter changes the cost.
#include "nn/activity.hpp"
#include "nn/liquid_cells.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
nn::CfcConfig cfc_config(const json& p) {
  nn::CfcConfig c;
  c.hidden = pint(p, "units");
  c.backbone_units = pint(p, "backbone_units");
  c.backbone_layers = pint(p, "backbone_layers");
  c.mode = nn::parse_cfc_mode(pstr(p, "mode"));
  return c;
}
bool is_ncp(const json& p) { return pstr(p, "wiring") == "ncp"; }
int motor_of(const json& p) { return std::max(1, pint(p, "units") / 4); }

class CfcModule : public nn::Module {
 public:
  CfcModule(int features, const json& p, Rng& rng)
      : cfc_(features, cfc_config(p), rng,
             is_ncp(p) ? static_cast<float>(pfloat(p, "density")) : 1.0f, motor_of(p),
             static_cast<std::uint64_t>(pint(p, "wiring_seed"))),
        sequences_(pbool(p, "return_sequences")),
        bits_(bits_of(p)),
        prune_(prune_of(p)) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    // Every weight matrix goes through the node's quantisation and pruning, as dense does;
    // biases and the pure solution's per-neuron vectors stay float32.
    std::vector<nn::Var> params;
    for (const nn::Var& w : cfc_.params)
      params.push_back(w.shape().rank() == 2 ? compress_weight(w, bits_, prune_) : w);
    nn::Recurrence r =
        nn::cfc(in.at(0), nn::Var(), nn::Var(), compress_weight(cfc_.w_in, bits_, prune_),
                cfc_.b_in, params, cfc_.cfg, cfc_.rec_mask, cfc_.in_mask, cfc_.options);
    return sequences_ ? r.outputs : r.final_state;
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    cfc_.append_named_parameters(prefix + "cfc.", out);
  }
  std::string name() const override { return "cfc"; }

 private:
  nn::Cfc cfc_;
  bool sequences_;
  int bits_;
  double prune_;
};

// Wired synapses: the mask's nonzero entries.
double ones(const nn::Tensor& t) {
  return static_cast<double>(nn::count_nonzero(t.data(), t.numel()));
}
}  // namespace

void register_block_cfc(Catalogue& c) {
  BlockKind k;
  k.name = "cfc";
  k.description = "closed-form continuous-time (CfC) liquid recurrent layer over a sequence";
  k.params = {
      ParamSpec::int_range("units", 1, 1024, 32, "state / output width"),
      ParamSpec::int_range("backbone_units", 1, 1024, 64, "width of each backbone layer"),
      ParamSpec::int_range("backbone_layers", 0, 4, 1, "backbone depth (0: heads read [x, h])"),
      ParamSpec::choice("mode", {"default", "no_gate", "pure"}, "default",
                        "gated interpolation, ungated sum, or the pure closed-form solution"),
      ParamSpec::choice("wiring", {"dense", "ncp"}, "dense",
                        "dense, or sparse NCP wiring (needs backbone_layers 0)"),
      ParamSpec::float_range("density", 0.05, 1.0, 0.5, "NCP fan-out share (wiring ncp)"),
      ParamSpec::int_range("wiring_seed", 0, 1000000, 1, "seed of the NCP wiring"),
      ParamSpec::boolean("return_sequences", true,
                         "output every step [L, units] or the last [units]")};
  k.accepts = {DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    const TensorType& t = single_input(in);
    // NCP wiring is already the layer's sparsity; magnitude pruning on top would count
    // synapses the wiring never made.
    if (is_ncp(p) && prune_of(p) > 0)
      throw std::invalid_argument(
          "cfc: prune with wiring ncp is not supported (the wiring is "
          "the sparsity); use prune 0 or wiring dense");
    if (is_ncp(p) && pint(p, "backbone_layers") != 0)
      throw std::invalid_argument("cfc: wiring ncp needs backbone_layers 0, got " +
                                  std::to_string(pint(p, "backbone_layers")));
    if (is_ncp(p) && pint(p, "units") < motor_of(p) + 2)
      throw std::invalid_argument("cfc: wiring ncp needs units >= 3, got " +
                                  std::to_string(pint(p, "units")));
    const int units = pint(p, "units");
    return pbool(p, "return_sequences") ? TensorType::sequence(t.dims[0], units)
                                        : TensorType::vector(units);
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<CfcModule>(in[0].dims[1], p, rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const nn::CfcConfig cfg = cfc_config(p);
    const double L = in[0].dims[0], F = in[0].dims[1], H = cfg.hidden, U = cfg.backbone_units,
                 Lb = cfg.backbone_layers, P = cfg.first_width(), NH = cfg.heads() * H;
    // Weights of the first layer on x and on h (NCP: only the wired ones).
    double w_x = P * F, w_h = P * H;
    if (is_ncp(p)) {
      const nn::NcpWiring nw = nn::make_ncp_wiring(
          static_cast<int>(F), cfg.hidden, motor_of(p), static_cast<float>(pfloat(p, "density")),
          static_cast<std::uint64_t>(pint(p, "wiring_seed")));
      w_x = cfg.heads() * ones(nw.sensory);
      w_h = cfg.heads() * ones(nw.adjacency);
    }
    const double backbone = Lb > 0 ? (Lb - 1) * U * U + NH * U : 0;
    w.category = hw::OpCategory::Recurrent;
    w.macs = L * (w_x + w_h + backbone);
    w.params = w_x + P + w_h + (Lb > 0 ? (Lb - 1) * (U * U + U) + NH * U + NH : 0) +
               (cfg.mode == nn::CfcMode::Pure ? 2 * H : 0);
    // Per step: biases, lecun_tanh (tanh 4 + two scalings) on every backbone unit, and the
    // heads' elementwise maths (see docs/blocks/liquid.md).
    const double head_flops = cfg.mode == nn::CfcMode::Default  ? 18 * H
                              : cfg.mode == nn::CfcMode::NoGate ? 16 * H
                                                                : 11 * H;
    const double biases = P + (Lb > 0 ? (Lb - 1) * U + NH : 0);
    w.other_flops = L * (biases + 6 * Lb * U + head_flops);
    w.kernels = 2;  // input projection GEMM, fused time loop
    w.seq_len = static_cast<int>(L);
    w.timesteps = static_cast<int>(L);
    weighted_mapping(w, H, (w_x + w_h) / H, w_x + w_h);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
