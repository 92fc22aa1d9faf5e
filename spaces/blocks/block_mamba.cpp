// mamba: the Mamba mixer (Gu & Dao 2023; state-spaces/mamba modules/mamba_simple.py) as a
// sequence mixer [L, d] -> [L, d]: in_proj to x and z (E = expand d each), causal depthwise
// conv1d + SiLU on x, the fused selective scan (input-dependent delta, B, C; A = -exp(A_log)),
// D skip, gate y * SiLU(z), out_proj.  One workload node of category Recurrent (the scan sets
// the latency on every device); projections and conv are counted in its MACs.  See
// docs/blocks/mamba.md.
#include "nn/ssm_layers.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {

nn::MambaOptions mamba_options(int d_model, const json& p) {
  nn::MambaOptions o;
  o.d_model = d_model;
  o.d_state = pint(p, "d_state");
  o.expand = pint(p, "expand");
  o.d_conv = pint(p, "d_conv");
  o.dt_rank = pint(p, "dt_rank");
  o.dt_min = static_cast<float>(pfloat(p, "dt_min"));
  o.dt_max = static_cast<float>(pfloat(p, "dt_max"));
  return o;
}

class MambaModule : public nn::Module {
 public:
  MambaModule(int d, const json& p, Rng& rng) : mixer_(mamba_options(d, p), rng) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    return mixer_.forward(in.at(0));
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    mixer_.append_named_parameters(prefix, out);
  }
  std::string name() const override { return "mamba"; }

 private:
  nn::MambaMixer mixer_;
};

}  // namespace

void register_block_mamba(Catalogue& c) {
  BlockKind k;
  k.name = "mamba";
  k.description =
      "Mamba selective state-space mixer: gated in/out projections, causal depthwise conv and "
      "the fused input-dependent scan, [L, d] -> [L, d]";
  k.params = {
      ParamSpec::int_set("d_state", {4, 8, 16, 32, 64}, 16, "state size N per channel"),
      ParamSpec::int_set("expand", {1, 2, 3, 4}, 2, "inner width E = expand x d"),
      ParamSpec::int_range("d_conv", 1, 8, 4, "causal depthwise conv kernel"),
      ParamSpec::int_range("dt_rank", 0, 1024, 0,
                           "rank of the delta projection (0: ceil(d / 16), the paper's auto)"),
      ParamSpec::float_range("dt_min", 1e-4, 1.0, 1e-3, "smallest initial step size"),
      ParamSpec::float_range("dt_max", 1e-4, 1.0, 1e-1, "largest initial step size")};
  k.accepts = {DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    // Trained in float32 on dense weights: refusing compression keeps the workload honest.
    if (bits_of(p) != 32 || prune_of(p) > 0)
      throw std::invalid_argument(
          "mamba: bits and prune are not supported yet; use bits 32, prune 0");
    if (pfloat(p, "dt_max") < pfloat(p, "dt_min"))
      throw std::invalid_argument("mamba: dt_max " + std::to_string(pfloat(p, "dt_max")) +
                                  " must be >= dt_min " + std::to_string(pfloat(p, "dt_min")));
    return single_input(in);
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<MambaModule>(in[0].dims[1], p, rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const nn::MambaOptions o = mamba_options(in[0].dims[1], p);
    const double L = in[0].dims[0], d = o.d_model, E = o.inner(), N = o.d_state, R = o.rank(),
                 K = o.d_conv;
    // Dense: in_proj (2E d), x_proj (E (R + 2N)), dt_proj (R E), out_proj (E d) per token.
    const double dense_macs = L * (2 * E * d + E * (R + 2 * N) + R * E + E * d);
    // DepthwiseConv: K taps per channel and token.
    const double conv_macs = L * E * K;
    // Scan per token, channel and mode: delta A, (delta u) B, a h + ., C h (4 MACs) and the exp
    // (~4 flops); per token and channel delta u (1 MAC) and the D skip (1 MAC).
    const double scan_macs = L * E * (4 * N + 2), scan_other = 4 * L * E * N;
    // Biases (conv, dt_proj), SiLU on x and z (5 each), softplus (~4), gate multiply.
    const double other = L * E * (1 + 1 + 5 + 5 + 4 + 1);
    w.category = hw::OpCategory::Recurrent;
    w.macs = dense_macs + conv_macs + scan_macs;
    w.other_flops = scan_other + other;
    w.params = 2 * E * d + K * E + E + E * (R + 2 * N) + R * E + E + E * N + E + E * d;
    // in_proj, conv, SiLU, x_proj, dt_proj + softplus, scan, skip + gate, out_proj
    w.kernels = 8;
    w.seq_len = static_cast<int>(L);
    w.timesteps = static_cast<int>(L);  // the scan is sequential in L
    weighted_mapping(w, L * E, d, 3 * E * d);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
