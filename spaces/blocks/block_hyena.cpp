// hyena: the Hyena operator (Poli et al. 2023, "Hyena Hierarchy"), a sequence mixer [L, d] ->
// [L, d] built from long implicit convolutions and multiplicative gating, O(L log L) in time.
// Follows the reference HyenaOperator of HazyResearch/safari (src/models/sequence/hyena.py):
//   p = in_proj(u) in R^{L x (N+1)d}, short causal depthwise conv on p, split into x_0..x_{N-1}, v;
//   h = FFN(z_t) . exp(-t |delta_c|)   (implicit filters, one per channel and order step)
//   for o = 0..N-2:  v = (v . x_{N-1-o}) * h_o + bias_o . (v . x_{N-1-o})   (causal long conv)
//   y = out_proj(v . x_0).
// The long convolutions run through nn::causal_long_conv (Toeplitz GEMMs at short lengths, FFTW
// with zero padding to 2L at long ones).
// See docs/blocks/hyena.md.
#include <cmath>

#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {

struct HyenaConfig {
  int d, order, width, depth, emb, kernel;
  int filters() const { return d * (order - 1); }  // long-filter channels
};

HyenaConfig config_of(int d, const json& p) {
  return {d,
          pint(p, "order"),
          pint(p, "filter_width"),
          pint(p, "filter_depth"),
          pint(p, "emb_dim"),
          pint(p, "short_kernel")};
}

// Positional features of the implicit filter, [L, emb]: t = l / (L - 1), then for the
// (emb - 1) / 2 bands f_b = linspace(1e-4, bands - 1) and w_l = 2 pi l / L the pair
// cos(f_b w_l), -sin(f_b w_l) (safari's PositionalEmbedding: real and imaginary parts of
// e^{-i f w}).
nn::Tensor positional_features(int len, int emb) {
  const int bands = (emb - 1) / 2;
  nn::Tensor z(nn::Shape{len, emb});
  for (int l = 0; l < len; ++l) {
    float* row = z.data() + static_cast<std::int64_t>(l) * emb;
    row[0] = len > 1 ? static_cast<float>(l) / static_cast<float>(len - 1) : 0.0f;
    const double w = 2.0 * M_PI * l / len;
    for (int b = 0; b < bands; ++b) {
      const double f = bands > 1 ? 1e-4 + (bands - 1 - 1e-4) * b / (bands - 1) : 1e-4;
      row[1 + b] = static_cast<float>(std::cos(f * w));
      row[1 + bands + b] = static_cast<float>(-std::sin(f * w));
    }
  }
  return z;
}

// Exponential decay window [L, C]: exp(-t_l |delta_c|), delta_c = linspace(ln(1e-2) / 1.5,
// ln(1e-2) / 0.3) over the C filter channels (safari's ExponentialModulation, fixed).
nn::Tensor decay_window(int len, int channels) {
  const double lo = std::log(1e-2) / 1.5, hi = std::log(1e-2) / 0.3;
  nn::Tensor m(nn::Shape{len, channels});
  for (int l = 0; l < len; ++l) {
    const double t = len > 1 ? static_cast<double>(l) / (len - 1) : 0.0;
    for (int c = 0; c < channels; ++c) {
      const double delta = channels > 1 ? lo + (hi - lo) * c / (channels - 1) : lo;
      m.data()[static_cast<std::int64_t>(l) * channels + c] =
          static_cast<float>(std::exp(-t * std::abs(delta)));
    }
  }
  return m;
}

class HyenaModule : public nn::Module {
 public:
  HyenaModule(const HyenaConfig& c, Rng& rng)
      : c_(c),
        in_proj_(c.d, (c.order + 1) * c.d, true, rng),
        out_proj_(c.d, c.d, true, rng),
        mlp_first_(c.emb, c.width, true, rng),
        mlp_last_(c.width, c.filters(), false, rng) {
    const int channels = (c.order + 1) * c.d;
    // Conv1d's default init: uniform(+-1/sqrt(fan_in)) with fan_in = kernel.
    std::uniform_real_distribution<float> u(-1.0f / std::sqrt(static_cast<float>(c.kernel)),
                                            1.0f / std::sqrt(static_cast<float>(c.kernel)));
    nn::Tensor w(nn::Shape{c.kernel, channels}), b(nn::Shape{channels});
    for (std::int64_t i = 0; i < w.numel(); ++i) w.data()[i] = u(rng);
    for (std::int64_t i = 0; i < b.numel(); ++i) b.data()[i] = u(rng);
    short_w_ = nn::parameter(std::move(w));
    short_b_ = nn::parameter(std::move(b));
    for (int k = c.kernel - 1; k >= 0; --k) torch_tap_order_.push_back(k);
    for (int i = 0; i < c.depth; ++i) mlp_inner_.emplace_back(c.width, c.width, true, rng);
    freq_ = nn::parameter(nn::Tensor(nn::Shape{c.width}, 1.0f));  // Sin(w = 1), shared
    std::normal_distribution<float> n01(0.0f, 1.0f);
    nn::Tensor fb(nn::Shape{c.filters()});
    for (std::int64_t i = 0; i < fb.numel(); ++i) fb.data()[i] = n01(rng);
    filter_bias_ = nn::parameter(std::move(fb));
  }

  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext&) override {
    const nn::Var& u = in.at(0);
    const int len = u.dim(1), d = c_.d, steps = c_.order - 1;
    nn::Var p = short_conv(in_proj_.forward(u));
    std::vector<nn::Var> parts = nn::split(p, std::vector<int>(c_.order + 1, d), 2);
    nn::Var v = parts.back();
    nn::Var h = filters(len);  // [L, d (N-1)], channel c = i (N-1) + o as in safari
    for (int o = 0; o < steps; ++o) {
      nn::Var k = nn::slice(h, 1, o, c_.filters(), steps);
      nn::Var bias = nn::slice(filter_bias_, 0, o, c_.filters(), steps);
      v = nn::mul(v, parts[static_cast<std::size_t>(c_.order - 1 - o)]);
      v = nn::add(nn::causal_long_conv(v, k), nn::mul(v, bias));
    }
    return out_proj_.forward(nn::mul(v, parts[0]));
  }

  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    in_proj_.append_named_parameters(prefix + "in_proj.", out);
    out.push_back({prefix + "short_conv.weight", short_w_});
    out.push_back({prefix + "short_conv.bias", short_b_});
    mlp_first_.append_named_parameters(prefix + "filter.0.", out);
    for (std::size_t i = 0; i < mlp_inner_.size(); ++i)
      mlp_inner_[i].append_named_parameters(prefix + "filter." + std::to_string(i + 1) + ".", out);
    mlp_last_.append_named_parameters(prefix + "filter.out.", out);
    out.push_back({prefix + "filter.freq", freq_});
    out.push_back({prefix + "filter.bias", filter_bias_});
    out_proj_.append_named_parameters(prefix + "out_proj.", out);
  }
  std::string name() const override { return "hyena"; }

 private:
  // Causal depthwise conv of kernel K on [B, L, C]: y_t = b + sum_j w_j . p_{t-j} (row j of
  // the weight is lag j; nn's op takes PyTorch's Conv1d order, lag K-1-k in row k).
  nn::Var short_conv(const nn::Var& p) const {
    return nn::causal_depthwise_conv1d(p, nn::index_select(short_w_, 0, torch_tap_order_),
                                       short_b_);
  }
  nn::Var sine(const nn::Var& x) const { return nn::sin(nn::mul(x, freq_)); }
  // The implicit long filters h [L, d (N - 1)] for this length.
  nn::Var filters(int len) {
    nn::Var z = nn::constant(positional_features(len, c_.emb));
    nn::Var a = sine(mlp_first_.forward(z));
    for (auto& l : mlp_inner_) a = sine(l.forward(a));
    nn::Var h = mlp_last_.forward(a);
    return nn::mul(h, nn::constant(decay_window(len, c_.filters())));
  }

  HyenaConfig c_;
  nn::Linear in_proj_, out_proj_, mlp_first_, mlp_last_;
  std::vector<nn::Linear> mlp_inner_;
  nn::Var short_w_, short_b_, freq_, filter_bias_;
  std::vector<int> torch_tap_order_;  // short_w_'s rows (lag 0..K-1) in Conv1d order: K-1..0
};

double log2_ceil(double n) { return std::ceil(std::log2(n)); }

}  // namespace

void register_block_hyena(Catalogue& c) {
  BlockKind k;
  k.name = "hyena";
  k.description = "Hyena operator: implicit long convolutions with order-N gating";
  k.params = {
      ParamSpec::int_set("order", {2, 3}, 2, "gates N (N - 1 long convolutions)"),
      ParamSpec::int_set("filter_width", {8, 16, 32, 64}, 16, "width of the implicit filter FFN"),
      ParamSpec::int_range("filter_depth", 0, 3, 1, "inner (width x width) layers of the FFN"),
      ParamSpec::int_set("emb_dim", {3, 5, 9, 17, 33}, 3,
                         "positional features of the filter FFN: t and (emb_dim - 1) / 2 sin/cos"),
      ParamSpec::int_range("short_kernel", 1, 7, 3, "kernel of the short causal depthwise conv")};
  k.accepts = {DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    if (bits_of(p) != 32 || prune_of(p) > 0)
      throw std::invalid_argument(
          "hyena: bits and prune are not supported yet; use bits 32, prune 0");
    return single_input(in);
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<HyenaModule>(config_of(in[0].dims[1], p), rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const HyenaConfig c = config_of(in[0].dims[1], p);
    const double L = in[0].dims[0], d = c.d, N = c.order, W = c.width, E = c.emb, F = c.filters();
    const double P = (N + 1) * d;  // projected channels
    // Real FFT of length n = 2L: 2.5 n log2 n flops (half a complex FFT's 5 n log2 n).
    const double fft = 2.5 * 2 * L * log2_ceil(2 * L);
    w.category = hw::OpCategory::Fft;
    // MACs: in/out projections, short conv, the filter FFN (once per sequence) and the bias term
    // of each long convolution.
    w.macs = L * P * d + L * d * d + L * P * c.kernel + L * (E * W + c.depth * W * W + W * F) +
             (N - 1) * L * d;
    // Other: projection and conv biases; FFN bias + frequency + sine (1 + 1 + 4) per hidden
    // unit; the decay window; per order step the gate, three FFTs per channel (v, h, inverse),
    // the complex product (6 per bin) and the bias add; the final gate.
    w.other_flops = L * (P + d) + L * P + L * W * (c.depth + 1) * 6 + L * F +
                    (N - 1) * (L * d + 3 * d * fft + 6 * (L + 1) * d + L * d) + L * d;
    w.params = (d * P + P) + (P * c.kernel + P) + (E * W + W) + c.depth * (W * W + W) + W * F + W +
               F + (d * d + d);
    // in_proj, short conv, FFN layers, decay, per step (gate, rfft v, rfft h, product, irfft),
    // final gate, out_proj.
    w.kernels = static_cast<int>(2 + (c.depth + 2) + 1 + 5 * (N - 1) + 2);
    w.seq_len = static_cast<int>(L);
    weighted_mapping(w, L * d, d, d * P + d * d);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
