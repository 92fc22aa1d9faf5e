// s4d: the S4D layer (Gu, Gupta, Goel & Re 2022) as a sequence mixer [L, d] -> [L, d]: the
// diagonal SSM over d channels (convolution with its ZOH kernel by FFT, plus the D skip), GELU,
// then the output transform of the reference block (state-spaces/s4 models/s4/s4d.py): a
// position-wise linear d -> 2d followed by a GLU (output "glu"), or a plain linear d -> d
// (output "linear").  Workload category Fft.  See docs/blocks/s4d.md.
#include <cmath>

#include "nn/ssm_layers.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {

nn::S4dOptions s4d_options(int channels, const json& p) {
  nn::S4dOptions o;
  o.channels = channels;
  o.state = pint(p, "d_state");
  o.init = pstr(p, "init") == "inv" ? nn::S4dInit::Inv : nn::S4dInit::Lin;
  o.dt_min = static_cast<float>(pfloat(p, "dt_min"));
  o.dt_max = static_cast<float>(pfloat(p, "dt_max"));
  return o;
}

bool glu_output(const json& p) { return pstr(p, "output") == "glu"; }

class S4dModule : public nn::Module {
 public:
  S4dModule(int d, const json& p, Rng& rng)
      : ssm_(s4d_options(d, p), rng), out_(d, glu_output(p) ? 2 * d : d, true, rng), d_(d) {}
  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    const nn::Var y = out_.forward(nn::gelu(ssm_.forward(in.at(0))));
    if (out_.weight.dim(0) == d_) return y;
    const auto ab = nn::split(y, {d_, d_}, 2);  // GLU: a * sigmoid(b)
    return nn::mul(ab[0], nn::sigmoid(ab[1]));
  }
  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    ssm_.append_named_parameters(prefix + "ssm.", out);
    out_.append_named_parameters(prefix + "output_linear.", out);
  }
  std::string name() const override { return "s4d"; }

 private:
  nn::S4dLayer ssm_;
  nn::Linear out_;
  int d_;
};

}  // namespace

void register_block_s4d(Catalogue& c) {
  BlockKind k;
  k.name = "s4d";
  k.description =
      "S4D diagonal state-space layer (long convolution with its ZOH kernel) + GELU + GLU or "
      "linear output, [L, d] -> [L, d]";
  k.params = {ParamSpec::int_set("d_state", {4, 8, 16, 32, 64}, 64,
                                 "state size N per channel (N/2 complex modes)"),
              ParamSpec::choice("init", {"lin", "inv"}, "lin",
                                "imaginary parts of A: S4D-Lin (pi n) or S4D-Inv"),
              ParamSpec::float_range("dt_min", 1e-4, 1.0, 1e-3, "smallest initial step size"),
              ParamSpec::float_range("dt_max", 1e-4, 1.0, 1e-1, "largest initial step size"),
              ParamSpec::choice(
                  "output", {"glu", "linear"}, "glu",
                  "output transform: linear d -> 2d + GLU (reference block) or linear d -> d")};
  k.accepts = {DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    // Trained in float32 on dense weights: refusing compression keeps the workload honest.
    if (bits_of(p) != 32 || prune_of(p) > 0)
      throw std::invalid_argument(
          "s4d: bits and prune are not supported yet; use bits 32, prune 0");
    if (pfloat(p, "dt_max") < pfloat(p, "dt_min"))
      throw std::invalid_argument("s4d: dt_max " + std::to_string(pfloat(p, "dt_max")) +
                                  " must be >= dt_min " + std::to_string(pfloat(p, "dt_min")));
    return single_input(in);
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<S4dModule>(in[0].dims[1], p, rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const double L = in[0].dims[0], H = in[0].dims[1], M = pint(p, "d_state") / 2;
    const double out_width = glu_output(p) ? 2 * H : H;
    // Kernel generation (Vandermonde product): per channel, mode and lag one complex multiply
    // by exp(dt A) (4 MACs) and the real part of C' p (2 MACs); per mode ~30 flops for
    // exp(dt A), (exp(dt A) - 1) / A and C' = C W.
    const double kernel_macs = 6 * H * M * L, kernel_other = 30 * H * M;
    // Three real FFTs of length 2L per channel (input, kernel, inverse) at 2.5 n log2 n flops
    // each, the spectral product ((L+1) complex multiplies: 4 MACs, 2 adds) and the D skip.
    const double n = 2 * L;
    const double fft_flops = 3 * 2.5 * n * std::log2(n) * H;
    const double spectral_macs = 4 * (L + 1) * H, spectral_other = 2 * (L + 1) * H;
    // Output: GELU (8 per element), linear d -> out_width with bias, GLU (sigmoid 4 + mul 1).
    const double out_macs = L * H * out_width;
    const double out_other = 8 * L * H + L * out_width + (glu_output(p) ? 5 * L * H : 0);
    w.category = hw::OpCategory::Fft;
    w.macs = kernel_macs + spectral_macs + L * H + out_macs;
    w.other_flops = kernel_other + fft_flops + spectral_other + out_other;
    w.params = 2 * H + 4 * H * M + H * out_width + out_width;
    // kernel generation, 3 FFTs, spectral product, skip + GELU, output linear (+ GLU)
    w.kernels = glu_output(p) ? 8 : 7;
    w.seq_len = static_cast<int>(L);
    weighted_mapping(w, L * H, H, H * out_width);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
