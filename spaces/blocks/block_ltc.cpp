// ltc: a liquid time-constant (LTC) recurrent layer (Hasani et al. 2021) over a sequence
// [L, F] -> [L, units] (or the last state [units]), its semi-implicit solver run `unfolds` times
// per step inside the fused time loop.  Optional NCP sparse wiring.  When recording activity it
// reports the solver's function evaluations (unfolds x L per sample), which hardware models
// charge.  See docs/blocks/liquid.md.
#include "nn/activity.hpp"
#include "nn/liquid_cells.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {
bool is_ncp(const json& p) { return pstr(p, "wiring") == "ncp"; }
int motor_of(const json& p) { return std::max(1, pint(p, "units") / 4); }

class LtcModule : public nn::Module {
 public:
  LtcModule(int features, const json& p, Rng& rng)
      : ltc_({features, pint(p, "units"), pint(p, "unfolds"), false}, rng,
             is_ncp(p) ? static_cast<float>(pfloat(p, "density")) : 1.0f, motor_of(p),
             static_cast<std::uint64_t>(pint(p, "wiring_seed"))),
        sequences_(pbool(p, "return_sequences")),
        bits_(bits_of(p)),
        prune_(prune_of(p)) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    const nn::Var& x = in.at(0);
    // The synaptic weights (recurrent and sensory) go through the node's quantisation and
    // pruning; the neurons' biophysical constants (leak, capacitance, sigmoid centres and
    // slopes, reversal potentials) stay float32.
    std::vector<nn::Var> params = ltc_.params;
    for (int i : {nn::kLtcW, nn::kLtcSW})
      params[static_cast<std::size_t>(i)] =
          compress_weight(params[static_cast<std::size_t>(i)], bits_, prune_);
    nn::Recurrence r = nn::ltc(x, nn::Var(), nn::Var(), params, ltc_.cfg, ltc_.mask,
                               ltc_.sensory_mask, ltc_.options);
    if (ctx.activity)  // solver evaluations over the batch: unfolds per step and sample
      ctx.activity->add(nn::activity_key::kFunctionEvals,
                        static_cast<double>(ltc_.cfg.unfolds) * x.dim(1) * x.dim(0));
    return sequences_ ? r.outputs : r.final_state;
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    ltc_.append_named_parameters(prefix + "ltc.", out);
  }
  std::string name() const override { return "ltc"; }

 private:
  nn::Ltc ltc_;
  bool sequences_;
  int bits_;
  double prune_;
};

// Wired synapses: the mask's nonzero entries.
double ones(const nn::Tensor& t) {
  return static_cast<double>(nn::count_nonzero(t.data(), t.numel()));
}
}  // namespace

void register_block_ltc(Catalogue& c) {
  BlockKind k;
  k.name = "ltc";
  k.description = "liquid time-constant (LTC) recurrent layer with a fused semi-implicit solver";
  k.params = {ParamSpec::int_range("units", 1, 512, 16, "neurons (state / output width)"),
              ParamSpec::int_range("unfolds", 1, 16, 6, "solver steps per input step"),
              ParamSpec::choice("wiring", {"dense", "ncp"}, "dense", "dense, or sparse NCP wiring"),
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
          "ltc: prune with wiring ncp is not supported (the wiring is "
          "the sparsity); use prune 0 or wiring dense");
    const int units = pint(p, "units");
    if (is_ncp(p) && units < motor_of(p) + 2)
      throw std::invalid_argument("ltc: wiring ncp needs units >= 3, got " + std::to_string(units));
    return pbool(p, "return_sequences") ? TensorType::sequence(t.dims[0], units)
                                        : TensorType::vector(units);
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<LtcModule>(in[0].dims[1], p, rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const double L = in[0].dims[0], F = in[0].dims[1], H = pint(p, "units"), K = pint(p, "unfolds");
    double s_sens = F * H, s_rec = H * H;  // synapses
    if (is_ncp(p)) {
      const nn::NcpWiring nw =
          nn::make_ncp_wiring(static_cast<int>(F), static_cast<int>(H), motor_of(p),
                              static_cast<float>(pfloat(p, "density")),
                              static_cast<std::uint64_t>(pint(p, "wiring_seed")));
      s_sens = ones(nw.sensory);
      s_rec = ones(nw.adjacency);
    }
    // Per synapse evaluation: sigma*(v - mu), w*sigmoid, num += a*erev (3 MACs) and the
    // subtraction, sigmoid (4) and den += a (6 other).  Per neuron and unfold: cm_t*v and
    // gleak*vleak (2 MACs), three adds for the numerator/denominator sums and the division
    // (5 other).  Per step: the input affine map (F MACs) and cm_t = softplus(cm)*K/dt (2 per
    // neuron).
    w.category = hw::OpCategory::Recurrent;
    w.macs = L * (F + 3 * s_sens + K * (3 * s_rec + 2 * H));
    w.other_flops = L * (6 * s_sens + K * (6 * s_rec + 5 * H) + 2 * H);
    w.params = 3 * H + 4 * s_rec + 4 * s_sens + 2 * F;
    // Only the synaptic weights w are compressed (see LtcModule::forward); sigma, mu and erev
    // per synapse and the per-neuron constants stay float32.
    w.weight_bytes = (s_rec + s_sens) * (1.0 - prune_of(p)) * bits_of(p) / 8.0 +
                     (w.params - s_rec - s_sens) * 4.0;
    w.kernels = 1;  // the fused time loop
    w.seq_len = static_cast<int>(L);
    w.timesteps = static_cast<int>(L * K);
    weighted_mapping(w, H, (s_sens + s_rec) / H, s_sens + s_rec);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
