// ttt: a TTT-Linear test-time-training layer (Sun et al. 2024, "Learning to (Learn at Test
// Time): RNNs with Expressive Hidden States"), [L, d] -> [L, d].  Per head, the hidden state is
// a linear model f(x; W, b) = x + LN(x W + b) (LayerNorm and residual as in the paper) trained
// while the sequence is read: on each mini-batch of b tokens, one gradient step of the
// self-supervised loss l(W; x_t) = ||LN(theta_K x_t W + b) - (theta_V x_t - theta_K x_t)||^2
// with a token-dependent learned rate eta_t = base_lr sigmoid(theta_lr x_t) / d_head, in the
// dual form of the reference implementation (test-time-training/ttt-lm-pytorch, ttt.py): all
// gradients of a mini-batch are taken at the mini-batch's starting W, and token i of the
// mini-batch reads W_i = W_0 - sum_{j <= i} eta_ij x_j g_j^T with eta_ij = tok_i lr_j, tok_i =
// 1/i + a learned offset.  Output z_t = f(theta_Q x_t; W_t), then a LayerNorm and theta_O.
// The inner steps are ordinary differentiable ops, so the outer loss trains theta_{Q,K,V,O},
// theta_lr, W_0, b_0, the inner LayerNorm and the token offsets through them.  RoPE and the
// optional gate of the reference are left out.  See docs/blocks/ttt.md.
//
// While recording activity it reports the inner (reconstruction) loss of each mini-batch
// before its update, as the series "ttt_inner_loss" (mean per token), which shows the layer
// adapting along the sequence.
#include <cmath>

#include "nn/activity.hpp"
#include "spaces/blocks/block_util.hpp"

namespace hwnas::spaces {
using namespace blocks;

namespace {

constexpr float kInnerEps = 1e-6f;

struct TttConfig {
  int d, heads, mini_batch;
  double base_lr;
  int dh() const { return d / heads; }
};

// a [B, H, m, k] x b [B, H, k, n] -> [B, H, m, n] through the batched bmm.
nn::Var bmm4(const nn::Var& a, const nn::Var& b) {
  const int B = a.dim(0), H = a.dim(1);
  nn::Var r = nn::bmm(nn::reshape(a, nn::Shape{B * H, a.dim(2), a.dim(3)}),
                      nn::reshape(b, nn::Shape{B * H, b.dim(2), b.dim(3)}));
  return nn::reshape(r, nn::Shape{B, H, a.dim(2), b.dim(3)});
}

// Mean over the last dim, kept as a trailing 1: [B, H, K, f] -> [B, H, K, 1].
nn::Var mean_last_keep(const nn::Var& x) {
  nn::Shape s = x.shape();
  std::vector<int> dims = s.to_vector();
  dims.back() = 1;
  return nn::reshape(nn::mean_dim(x, s.rank() - 1), nn::Shape(dims));
}

class TttModule : public nn::Module {
 public:
  TttModule(const TttConfig& c, Rng& rng)
      : c_(c),
        q_(c.d, c.d, false, rng),
        k_(c.d, c.d, false, rng),
        v_(c.d, c.d, false, rng),
        o_(c.d, c.d, false, rng),
        lr_gate_(c.d, c.heads, true, rng),
        post_norm_(c.d) {
    const int f = c.dh();
    std::normal_distribution<float> n002(0.0f, 0.02f);
    // W_0 ~ N(0, 1/f) rather than the reference's N(0, 0.02^2): the inner LayerNorm is scale
    // invariant, so a tiny W_0 only makes LN(X W_0) ill-conditioned (its gradient grows as
    // 1/|W_0|) without changing the function's range.
    std::normal_distribution<float> nw(0.0f, 1.0f / std::sqrt(static_cast<float>(f)));
    nn::Tensor w0(nn::Shape{c.heads, f, f}), lw(nn::Shape{c.heads, c.d});
    for (std::int64_t i = 0; i < w0.numel(); ++i) w0.data()[i] = nw(rng);
    for (std::int64_t i = 0; i < lw.numel(); ++i) lw.data()[i] = n002(rng);
    lr_gate_.weight.value() = std::move(lw);
    lr_gate_.bias.value() = nn::Tensor::zeros(nn::Shape{c.heads});
    w0_ = nn::parameter(std::move(w0));
    b0_ = nn::parameter(nn::Tensor::zeros(nn::Shape{c.heads, 1, f}));
    ln_gamma_ = nn::parameter(nn::Tensor(nn::Shape{c.heads, 1, f}, 1.0f));
    ln_beta_ = nn::parameter(nn::Tensor::zeros(nn::Shape{c.heads, 1, f}));
    token_offset_ = nn::parameter(nn::Tensor::zeros(nn::Shape{c.mini_batch}));
  }

  nn::Var forward(const std::vector<nn::Var>& in, nn::ForwardContext& ctx) override {
    const nn::Var& x = in.at(0);
    const int B = x.dim(0), L = x.dim(1), H = c_.heads, f = c_.dh();
    auto heads_of = [&](const nn::Var& t) {  // [B, L, d] -> [B, H, L, f]
      return nn::transpose(nn::reshape(t, nn::Shape{B, L, H, f}), 1, 2);
    };
    nn::Var XQ = heads_of(q_.forward(x)), XK = heads_of(k_.forward(x)),
            XV = heads_of(v_.forward(x));
    // Token rates lr_t = base_lr sigmoid(theta_lr x_t) / f, [B, H, L].
    nn::Var lr = nn::transpose(
        nn::scale(nn::sigmoid(lr_gate_.forward(x)), static_cast<float>(c_.base_lr / f)), 1, 2);
    // tok_i = max(0, 1/i + offset_i) for i = 1..b.
    nn::Tensor inv(nn::Shape{c_.mini_batch});
    for (int i = 0; i < c_.mini_batch; ++i) inv.data()[i] = 1.0f / static_cast<float>(i + 1);
    nn::Var tok = nn::clamp(nn::add(token_offset_, nn::constant(inv)), 0.0f, 1e30f);
    const nn::Var ones = nn::constant(nn::Tensor(nn::Shape{f}, 1.0f));
    const nn::Var zeros = nn::constant(nn::Tensor::zeros(nn::Shape{f}));
    nn::Var W = nn::add(nn::constant(nn::Tensor::zeros(nn::Shape{B, H, f, f})), w0_);
    nn::Var b = nn::add(nn::constant(nn::Tensor::zeros(nn::Shape{B, H, 1, f})), b0_);
    std::vector<nn::Var> outs;
    std::vector<double> inner_loss;
    for (int s = 0; s < L; s += c_.mini_batch) {
      const int e = std::min(L, s + c_.mini_batch), K = e - s;
      nn::Var Xq = nn::slice(XQ, 2, s, e), Xk = nn::slice(XK, 2, s, e), Xv = nn::slice(XV, 2, s, e);
      // Gradient of 0.5 ||LN(Z) - target||^2 w.r.t. Z = Xk W + b, written out (LayerNorm
      // backward) so that it stays differentiable for the outer loss.
      nn::Var Z = nn::add(bmm4(Xk, W), b);
      nn::Var target = nn::sub(Xv, Xk);
      nn::Var zc = nn::sub(Z, mean_last_keep(Z));
      nn::Var sd = nn::sqrt(nn::add_scalar(mean_last_keep(nn::mul(zc, zc)), kInnerEps));
      nn::Var xhat = nn::div(zc, sd);
      nn::Var gy = nn::sub(nn::add(nn::mul(xhat, ln_gamma_), ln_beta_), target);
      if (ctx.activity) {
        const nn::Tensor& t = gy.value();
        double acc = 0;
        for (std::int64_t i = 0; i < t.numel(); ++i) acc += double(t.data()[i]) * t.data()[i];
        inner_loss.push_back(acc / (static_cast<double>(B) * H * K));
      }
      nn::Var gx = nn::mul(gy, ln_gamma_);
      nn::Var grad = nn::div(nn::sub(nn::sub(nn::scale(gx, static_cast<float>(f)),
                                             nn::scale(mean_last_keep(gx), static_cast<float>(f))),
                                     nn::mul(xhat, nn::scale(mean_last_keep(nn::mul(gx, xhat)),
                                                             static_cast<float>(f)))),
                             nn::scale(sd, static_cast<float>(f)));
      // eta_ij = tok_i lr_j on j <= i.
      nn::Tensor tril = nn::Tensor::zeros(nn::Shape{K, K});
      for (int i = 0; i < K; ++i)
        for (int j = 0; j <= i; ++j) tril.data()[i * K + j] = 1.0f;
      nn::Var lr_k = nn::reshape(nn::slice(lr, 2, s, e), nn::Shape{B, H, 1, K});
      nn::Var tok_k = nn::reshape(nn::slice(tok, 0, 0, K), nn::Shape{K, 1});
      nn::Var eta = nn::mul(nn::mul(tok_k, lr_k), nn::constant(tril));  // [B, H, K, K]
      nn::Var attn = bmm4(Xq, nn::transpose(Xk, 2, 3));
      nn::Var b_bar = nn::sub(b, bmm4(eta, grad));
      nn::Var z_bar = nn::add(nn::sub(bmm4(Xq, W), bmm4(nn::mul(eta, attn), grad)), b_bar);
      nn::Var ln =
          nn::add(nn::mul(nn::layer_norm(z_bar, ones, zeros, kInnerEps), ln_gamma_), ln_beta_);
      outs.push_back(nn::add(Xq, ln));
      // The state after the mini-batch: W_K, b_K (last row of eta).
      nn::Var eta_last = nn::transpose(nn::slice(eta, 2, K - 1, K), 2, 3);  // [B, H, K, 1]
      W = nn::sub(W, bmm4(nn::transpose(nn::mul(eta_last, Xk), 2, 3), grad));
      b = nn::sub(b, bmm4(nn::transpose(eta_last, 2, 3), grad));
    }
    if (ctx.activity)
      for (std::size_t i = 0; i < inner_loss.size(); ++i)
        ctx.activity->add_at("ttt_inner_loss", i, inner_loss[i] * B);
    nn::Var z = outs.size() == 1 ? outs[0] : nn::concat(outs, 2);
    z = nn::reshape(nn::transpose(z, 1, 2), nn::Shape{B, L, c_.d});
    return o_.forward(post_norm_.forward(z));
  }

  void append_named_parameters(const std::string& prefix,
                               std::vector<nn::NamedParameter>& out) override {
    q_.append_named_parameters(prefix + "theta_q.", out);
    k_.append_named_parameters(prefix + "theta_k.", out);
    v_.append_named_parameters(prefix + "theta_v.", out);
    o_.append_named_parameters(prefix + "theta_o.", out);
    lr_gate_.append_named_parameters(prefix + "lr_gate.", out);
    out.push_back({prefix + "w0", w0_});
    out.push_back({prefix + "b0", b0_});
    out.push_back({prefix + "inner_norm.gamma", ln_gamma_});
    out.push_back({prefix + "inner_norm.beta", ln_beta_});
    out.push_back({prefix + "token_offset", token_offset_});
    post_norm_.append_named_parameters(prefix + "post_norm.", out);
  }
  std::string name() const override { return "ttt"; }

 private:
  TttConfig c_;
  nn::Linear q_, k_, v_, o_, lr_gate_;
  nn::LayerNorm post_norm_;
  nn::Var w0_, b0_, ln_gamma_, ln_beta_, token_offset_;
};

TttConfig config_of(int d, const json& p) {
  return {d, pint(p, "heads"), pint(p, "mini_batch"), pfloat(p, "inner_lr")};
}

}  // namespace

void register_block_ttt(Catalogue& c) {
  BlockKind k;
  k.name = "ttt";
  k.description =
      "TTT-Linear test-time-training layer: a per-head linear model trained on the sequence by "
      "mini-batch gradient steps (dual form)";
  k.params = {
      ParamSpec::int_set("heads", {1, 2, 4, 8}, 2, "heads (must divide d)"),
      ParamSpec::int_set("mini_batch", {1, 2, 4, 8, 16, 32}, 16, "tokens per inner gradient step"),
      ParamSpec::float_range("inner_lr", 0.01, 10.0, 1.0,
                             "base inner learning rate (scaled by a learned sigmoid "
                             "gate and 1 / d_head)")};
  k.accepts = {DataKind::Sequence};
  k.infer = [](const std::vector<TensorType>& in, const json& p) {
    if (bits_of(p) != 32 || prune_of(p) > 0)
      throw std::invalid_argument(
          "ttt: bits and prune are not supported yet; use bits 32, prune 0");
    const TensorType& t = single_input(in);
    if (t.dims[1] % pint(p, "heads") != 0)
      throw std::invalid_argument("ttt: model dimension " + std::to_string(t.dims[1]) +
                                  " not divisible by heads " + std::to_string(pint(p, "heads")));
    return t;
  };
  k.build = [](const std::vector<TensorType>& in, const json& p, Rng& rng) {
    return std::make_unique<TttModule>(config_of(in[0].dims[1], p), rng);
  };
  k.count = [](const std::vector<TensorType>& in, const TensorType&, const json& p,
               hw::NodeWorkload& w) {
    const TttConfig c = config_of(in[0].dims[1], p);
    const int len = in[0].dims[0];
    const double d = c.d, H = c.heads, f = c.dh();
    // The scan over mini-batches carries W from one to the next: a recurrent state update.
    w.category = hw::OpCategory::Recurrent;
    // theta_{Q,K,V,O} (4 L d^2) and the rate gate (L d H); per mini-batch of K tokens and head:
    // X_k W, X_q W and the W update (3 K f^2), X_q X_k^T, eta G for b and (eta o A) G (3 K^2 f),
    // the b update (K f).
    double macs = 4.0 * len * d * d + len * d * H, other = 0;
    for (int s = 0; s < len; s += c.mini_batch) {
      const double K = std::min(len, s + c.mini_batch) - s;
      macs += H * (3 * K * f * f + 3 * K * K * f + K * f);
      // LayerNorm forward + backward of the inner loss (~20 per element), the output
      // LayerNorm, residual and bias adds (~12 per element), eta and its masks (3 K^2).
      other += H * (32 * K * f + 3 * K * K);
    }
    // Sigmoid gate (4 per token and head) and the post LayerNorm (8 per element).
    w.macs = macs;
    w.other_flops = other + 4.0 * len * H + 8.0 * len * d;
    w.params = 4 * d * d + (d * H + H) + c.mini_batch + H * f * f + 3 * H * f + 2 * d;
    // Deployed as in the paper's kernels: fused QKV projection, rate gate, one fused scan,
    // post norm, output projection.
    w.kernels = 5;
    w.seq_len = len;
    w.timesteps = (len + c.mini_batch - 1) / c.mini_batch;
    weighted_mapping(w, len * d, d, 4 * d * d + H * f * f);
  };
  c.add(std::move(k));
}

}  // namespace hwnas::spaces
